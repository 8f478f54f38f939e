//! The set of revoked node certificate serials that the node API checks during each handshake.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

/// Serial numbers (hex) of revoked certificates, shared between clones.
///
/// Serials are compared after normalisation: lowercase, colons removed and leading `00` bytes
/// dropped, so `00:AB:CD` and `abcd` are the same serial.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    serials: Arc<RwLock<HashSet<String>>>,
}

impl Revocations {
    /// Creates an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one serial; returns `false` when it was already revoked.
    pub fn insert(&self, serial: &str) -> bool {
        let serial = normalize_serial(serial);
        self.serials
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(serial)
    }

    /// Replaces the whole set, as after reloading it from the database.
    pub fn replace_all<I, S>(&self, serials: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let fresh: HashSet<String> = serials
            .into_iter()
            .map(|serial| normalize_serial(serial.as_ref()))
            .collect();
        *self.serials.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// Reports whether `serial` is revoked.
    pub fn contains(&self, serial: &str) -> bool {
        let serial = normalize_serial(serial);
        self.serials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&serial)
    }

    /// Counts the revoked serials.
    pub fn len(&self) -> usize {
        self.serials.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Reports whether no serial is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalize_serial(serial: &str) -> String {
    let digits: String = serial
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut rest = digits.as_str();
    while rest.len() > 2 && rest.starts_with("00") {
        rest = &rest[2..];
    }
    rest.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_spellings_match() {
        let revocations = Revocations::new();
        assert!(revocations.insert("00:AB:CD"));
        assert!(revocations.contains("abcd"));
        assert!(revocations.contains("ABCD"));
        assert!(!revocations.insert("abcd"));
        assert!(!revocations.contains("abce"));
    }

    #[test]
    fn replace_all_drops_old_serials() {
        let revocations = Revocations::new();
        revocations.insert("01");
        let clone = revocations.clone();
        clone.replace_all(["02", "03"]);
        assert!(!revocations.contains("01"));
        assert!(revocations.contains("02"));
        assert_eq!(revocations.len(), 2);
    }
}

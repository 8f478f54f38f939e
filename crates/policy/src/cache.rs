//! Compiled policy sets per organisation, keyed by the stored version, so a process compiles
//! each organisation's policy once per change. The caller reads the version (and, on a miss,
//! the text) from storage; this type does no I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::{PolicyErrors, PolicySet};

/// A compiled set and the stored version it came from.
type Versioned = (i64, Arc<PolicySet>);

/// Shared between request handlers; cheap to clone.
#[derive(Clone, Default)]
pub struct PolicyCache {
    compiled: Arc<Mutex<HashMap<Uuid, Versioned>>>,
}

impl PolicyCache {
    /// Returns the organisation's compiled policies at `version`. On a miss, `text` is asked for the
    /// stored text (`None` meaning the defaults) and compiled.
    pub fn get_or_compile(
        &self,
        org: Uuid,
        version: i64,
        text: impl FnOnce() -> Option<String>,
    ) -> Result<Arc<PolicySet>, PolicyErrors> {
        if let Some(set) = self.get(org, version) {
            return Ok(set);
        }
        let set = Arc::new(match text() {
            Some(text) => PolicySet::compile(&text)?,
            None => PolicySet::defaults(),
        });
        self.insert(org, version, Arc::clone(&set));
        Ok(set)
    }

    /// Returns the cached set if it was compiled from `version`.
    pub fn get(&self, org: Uuid, version: i64) -> Option<Arc<PolicySet>> {
        let compiled = self.compiled.lock().unwrap_or_else(|poison| poison.into_inner());
        compiled
            .get(&org)
            .filter(|(cached, _)| *cached == version)
            .map(|(_, set)| Arc::clone(set))
    }

    pub fn insert(&self, org: Uuid, version: i64, set: Arc<PolicySet>) {
        self.compiled
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(org, (version, set));
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn recompiles_only_when_the_version_changes() {
        let cache = PolicyCache::default();
        let org = Uuid::from_u128(1);
        let mut calls = 0;
        cache
            .get_or_compile(org, 0, || {
                calls += 1;
                None
            })
            .unwrap();
        cache
            .get_or_compile(org, 0, || {
                calls += 1;
                None
            })
            .unwrap();
        assert_eq!(calls, 1);
        assert!(cache.get(org, 1).is_none());
        assert!(cache.get_or_compile(org, 1, || Some("permit(".into())).is_err());
        assert!(cache.get(org, 0).is_some(), "a failed compile keeps the last good set");
    }
}

//! Keyset pagination: a list returns at most `limit` items and a cursor naming the last one;
//! the next request continues after it. Cursors are opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::StoreError;

/// One page of a list and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Position after the last item of a page: the sort key of that item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    pub fn decode(raw: &str) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim())
            .map_err(|_| StoreError::InvalidCursor)?;
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|_| StoreError::InvalidCursor)
    }
}

/// Turns `limit + 1` fetched rows into a page: the extra row only says that more exist.
pub(crate) fn paginate<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|last| Cursor(key(last)));
        Page { items: rows, next }
    } else {
        Page {
            items: rows,
            next: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let cursor = Cursor("Zoë:1".into());
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(matches!(Cursor::decode("!!"), Err(StoreError::InvalidCursor)));
    }

    #[test]
    fn extra_row_means_more() {
        let page = paginate(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, Some(Cursor("2".into())));
        assert!(paginate(vec![1, 2], 2, |n| n.to_string()).next.is_none());
    }
}

//! The audit chain: each organisation's records form one hash chain, so removing, reordering or
//! editing a stored record breaks every hash after it. This module defines the hash; the store
//! appends records and the verifier recomputes the chain.

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::OrgId;

/// Hash that precedes the first record of every chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    ApiKey,
    Worker,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::Worker => "worker",
            Self::System => "system",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::User, Self::ApiKey, Self::Worker, Self::System]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }
}

/// How the audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused by authentication or policy.
    Denied,
    /// Allowed, but it did not complete.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Ok, Self::Denied, Self::Failed]
            .into_iter()
            .find(|outcome| outcome.as_str() == raw)
    }
}

/// One audit record as it is hashed. `at` must already be truncated to whole microseconds
/// (see [`truncate_to_micros`]) because PostgreSQL stores no finer time.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFields<'a> {
    pub org: OrgId,
    pub seq: i64,
    pub at: OffsetDateTime,
    pub actor_kind: ActorKind,
    pub actor_id: Option<uuid::Uuid>,
    pub actor_name: Option<&'a str>,
    pub action: &'a str,
    pub object_kind: &'a str,
    pub object_id: Option<&'a str>,
    pub outcome: Outcome,
    pub reason: Option<&'a str>,
    pub details: &'a Value,
}

/// Drops the sub-microsecond part of a time.
pub fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let micros = at.nanosecond() / 1_000 * 1_000;
    at.replace_nanosecond(micros).unwrap_or(at)
}

/// SHA-256 over the previous hash and every field, each length-prefixed so that no two
/// different records encode alike. `details` is hashed in canonical form (sorted keys), so the
/// JSON text PostgreSQL hands back hashes the same as the value that was written.
pub fn chain_hash(prev: &[u8; 32], record: &AuditFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"rdp-proxy audit v1");
    hasher.update(prev);
    let micros = record.at.unix_timestamp_nanos() / 1_000;
    let details = canonical_json(record.details);
    let fields: [Option<&[u8]>; 11] = [
        Some(record.org.0.as_bytes()),
        Some(&record.seq.to_be_bytes()),
        Some(&micros.to_be_bytes()),
        Some(record.actor_kind.as_str().as_bytes()),
        record.actor_id.as_ref().map(|id| id.as_bytes().as_slice()),
        record.actor_name.map(str::as_bytes),
        Some(record.action.as_bytes()),
        Some(record.object_kind.as_bytes()),
        record.object_id.map(str::as_bytes),
        Some(record.outcome.as_str().as_bytes()),
        record.reason.map(str::as_bytes),
    ];
    for field in fields {
        match field {
            Some(bytes) => {
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
            None => hasher.update(u64::MAX.to_be_bytes()),
        }
    }
    hasher.update((details.len() as u64).to_be_bytes());
    hasher.update(details.as_bytes());
    hasher.finalize().into()
}

/// JSON text with object keys sorted at every level.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Re-inserting in sorted order gives sorted output whether or not serde_json keeps
    // insertion order.
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn record<'a>(details: &'a Value, reason: Option<&'a str>) -> AuditFields<'a> {
        AuditFields {
            org: OrgId(Uuid::from_u128(1)),
            seq: 1,
            at: truncate_to_micros(OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap()),
            actor_kind: ActorKind::User,
            actor_id: Some(Uuid::from_u128(2)),
            actor_name: Some("Zoë"),
            action: "target.create",
            object_kind: "target",
            object_id: Some("t1"),
            outcome: Outcome::Ok,
            reason,
            details,
        }
    }

    #[test]
    fn hash_ignores_key_order_but_not_content() {
        let a = json!({"b": 1, "a": {"y": 2, "x": 3}});
        let b: Value = serde_json::from_str(r#"{"a": {"x": 3, "y": 2}, "b": 1}"#).unwrap();
        assert_eq!(
            chain_hash(&GENESIS, &record(&a, None)),
            chain_hash(&GENESIS, &record(&b, None))
        );
        let c = json!({"b": 2, "a": {"y": 2, "x": 3}});
        assert_ne!(
            chain_hash(&GENESIS, &record(&a, None)),
            chain_hash(&GENESIS, &record(&c, None))
        );
    }

    #[test]
    fn absent_and_empty_fields_differ() {
        let details = json!({});
        assert_ne!(
            chain_hash(&GENESIS, &record(&details, None)),
            chain_hash(&GENESIS, &record(&details, Some("")))
        );
    }

    #[test]
    fn hash_depends_on_previous_link() {
        let details = json!({});
        let first = chain_hash(&GENESIS, &record(&details, None));
        assert_ne!(chain_hash(&first, &record(&details, None)), first);
    }

    #[test]
    fn truncation_keeps_microseconds() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(truncate_to_micros(at).nanosecond(), 123_456_000);
    }
}

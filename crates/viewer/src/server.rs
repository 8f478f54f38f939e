//! Messages the worker sends to the browser as JSON text frames.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// Current controller of a session, as shown on the viewer's state line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlInfo {
    pub user: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Ready {
        session_id: Uuid,
        viewer_id: Uuid,
        width: u16,
        height: u16,
        fence: u64,
        user: String,
    },
    State {
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        control: Option<ControlInfo>,
    },
    ControlLost {
        by: String,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    Resize {
        width: u16,
        height: u16,
    },
    Error {
        code: String,
        message: String,
    },
    Pong,
}

impl ServerMessage {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"type":"error","code":"internal"}"#))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn control_lost_wire_form() {
        let message = ServerMessage::ControlLost {
            by: "admin".into(),
            at: datetime!(2026-12-04 12:00 UTC),
        };
        assert_eq!(
            message.to_json(),
            r#"{"type":"control_lost","by":"admin","at":"2026-12-04T12:00:00Z"}"#
        );
    }

    #[test]
    fn state_omits_missing_fields() {
        let message = ServerMessage::State {
            state: "detached".into(),
            reason: None,
            control: None,
        };
        assert_eq!(message.to_json(), r#"{"type":"state","state":"detached"}"#);
    }
}

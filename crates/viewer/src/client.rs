//! Messages the browser sends: the hello with the attach token, input, and keep-alives.
//! Everything is validated here so the worker only ever sees well-formed input.

use rdp_proxy_core::{InputEvent, MouseButton};
use serde::Deserialize;

/// Largest text message accepted from a browser, in bytes.
pub const MAX_CLIENT_MESSAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Hello { token: String },
    Input(InputEvent),
    Resize { width: u16, height: u16 },
    Ping,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is {size} bytes; the limit is {MAX_CLIENT_MESSAGE}")]
    TooLarge { size: usize },
    #[error("message is not valid JSON of a known type: {0}")]
    Malformed(String),
    #[error("{field} is out of range")]
    OutOfRange { field: &'static str },
    #[error("binary messages are not accepted from viewers")]
    Binary,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    Hello {
        token: String,
    },
    Key {
        scancode: u16,
        extended: bool,
        down: bool,
    },
    Unicode {
        ch: String,
        down: bool,
    },
    Mouse {
        x: i64,
        y: i64,
    },
    Button {
        button: MouseButton,
        down: bool,
        x: i64,
        y: i64,
    },
    Wheel {
        dy: i64,
        dx: Option<i64>,
    },
    ReleaseAll,
    Resize {
        width: u32,
        height: u32,
    },
    Ping,
}

/// Parses one text message from a browser.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_CLIENT_MESSAGE {
        return Err(ProtocolError::TooLarge { size: text.len() });
    }
    let wire: Wire = serde_json::from_str(text).map_err(|error| ProtocolError::Malformed(error.to_string()))?;
    let message = match wire {
        Wire::Hello { token } => ClientMessage::Hello { token },
        Wire::Key {
            scancode,
            extended,
            down,
        } => {
            let scancode = u8::try_from(scancode).map_err(|_| ProtocolError::OutOfRange { field: "scancode" })?;
            ClientMessage::Input(InputEvent::Key {
                scancode,
                extended,
                down,
            })
        }
        Wire::Unicode { ch, down } => {
            let mut chars = ch.chars();
            let (Some(ch), None) = (chars.next(), chars.next()) else {
                return Err(ProtocolError::OutOfRange { field: "ch" });
            };
            ClientMessage::Input(InputEvent::Unicode { ch, down })
        }
        Wire::Mouse { x, y } => ClientMessage::Input(InputEvent::MouseMove {
            x: coordinate(x, "x")?,
            y: coordinate(y, "y")?,
        }),
        Wire::Button { button, down, x, y } => ClientMessage::Input(InputEvent::MouseButton {
            button,
            down,
            x: coordinate(x, "x")?,
            y: coordinate(y, "y")?,
        }),
        Wire::Wheel { dy, dx } => ClientMessage::Input(InputEvent::Wheel {
            vertical: wheel(dy, "dy")?,
            horizontal: wheel(dx.unwrap_or(0), "dx")?,
        }),
        Wire::ReleaseAll => ClientMessage::Input(InputEvent::ReleaseAll),
        Wire::Resize { width, height } => ClientMessage::Resize {
            width: dimension(width, "width")?,
            height: dimension(height, "height")?,
        },
        Wire::Ping => ClientMessage::Ping,
    };
    Ok(message)
}

fn coordinate(value: i64, field: &'static str) -> Result<u16, ProtocolError> {
    u16::try_from(value).map_err(|_| ProtocolError::OutOfRange { field })
}

/// Wheel deltas beyond ±32 notches in one message are rejected rather than clamped.
fn wheel(value: i64, field: &'static str) -> Result<i16, ProtocolError> {
    if value.abs() > 120 * 32 {
        return Err(ProtocolError::OutOfRange { field });
    }
    i16::try_from(value).map_err(|_| ProtocolError::OutOfRange { field })
}

fn dimension(value: u32, field: &'static str) -> Result<u16, ProtocolError> {
    match u16::try_from(value) {
        Ok(value) if (200..=8192).contains(&value) => Ok(value),
        _ => Err(ProtocolError::OutOfRange { field }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_each_input_kind() {
        let cases = [
            (
                r#"{"type":"key","scancode":30,"extended":false,"down":true}"#,
                ClientMessage::Input(InputEvent::Key {
                    scancode: 30,
                    extended: false,
                    down: true,
                }),
            ),
            (
                r#"{"type":"unicode","ch":"é","down":false}"#,
                ClientMessage::Input(InputEvent::Unicode { ch: 'é', down: false }),
            ),
            (
                r#"{"type":"mouse","x":10,"y":20}"#,
                ClientMessage::Input(InputEvent::MouseMove { x: 10, y: 20 }),
            ),
            (
                r#"{"type":"button","button":"right","down":true,"x":1,"y":2}"#,
                ClientMessage::Input(InputEvent::MouseButton {
                    button: MouseButton::Right,
                    down: true,
                    x: 1,
                    y: 2,
                }),
            ),
            (
                r#"{"type":"wheel","dy":-120}"#,
                ClientMessage::Input(InputEvent::Wheel {
                    vertical: -120,
                    horizontal: 0,
                }),
            ),
            (
                r#"{"type":"release_all"}"#,
                ClientMessage::Input(InputEvent::ReleaseAll),
            ),
            (
                r#"{"type":"resize","width":1280,"height":720}"#,
                ClientMessage::Resize {
                    width: 1280,
                    height: 720,
                },
            ),
            (r#"{"type":"ping"}"#, ClientMessage::Ping),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_client_message(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_bad_messages() {
        let cases = [
            r#"{"type":"key","scancode":300,"extended":false,"down":true}"#,
            r#"{"type":"unicode","ch":"ab","down":true}"#,
            r#"{"type":"unicode","ch":"","down":true}"#,
            r#"{"type":"mouse","x":-1,"y":0}"#,
            r#"{"type":"mouse","x":70000,"y":0}"#,
            r#"{"type":"wheel","dy":100000}"#,
            r#"{"type":"resize","width":10,"height":720}"#,
            r#"{"type":"launch_missiles"}"#,
            "not json",
            "",
        ];
        for text in cases {
            assert!(parse_client_message(text).is_err(), "{text}");
        }
    }

    #[test]
    fn rejects_oversized() {
        let text = format!(r#"{{"type":"hello","token":"{}"}}"#, "a".repeat(MAX_CLIENT_MESSAGE));
        assert_eq!(
            parse_client_message(&text),
            Err(ProtocolError::TooLarge { size: text.len() })
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse_client_message(&text);
        }
    }
}

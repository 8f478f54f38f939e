//! Input events a viewer sends towards the remote desktop, independent of RDP encoding.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MouseButton {
    Left,
    Middle,
    Right,
}

/// One input event in desktop pixel coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    /// A PC/AT set-1 scancode; `extended` marks the 0xE0 prefix.
    Key {
        scancode: u8,
        extended: bool,
        down: bool,
    },
    /// A character the viewer could not map to a scancode.
    Unicode {
        ch: char,
        down: bool,
    },
    MouseMove {
        x: u16,
        y: u16,
    },
    MouseButton {
        button: MouseButton,
        down: bool,
        x: u16,
        y: u16,
    },
    /// Wheel rotation in RDP units, 120 per notch; positive is away from the user (up) or to the right.
    Wheel {
        vertical: i16,
        horizontal: i16,
    },
    /// Releases every key and button the viewer pressed, sent when a viewer leaves or loses focus.
    ReleaseAll,
}

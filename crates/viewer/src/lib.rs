//! The viewer wire protocol (see `docs/viewer-protocol.md`): JSON control messages, binary
//! screen rectangles, and parsing of browser input into [`rdp_proxy_core::InputEvent`].

mod client;
mod encode;
mod server;

pub use client::{ClientMessage, MAX_CLIENT_MESSAGE, ProtocolError, parse_client_message};
pub use encode::{EncodeError, Encoding, encode_batch_end, encode_rect};
pub use server::{ControlInfo, ServerMessage};

/// WebSocket close codes the worker uses.
pub mod close_code {
    /// The session was terminated; a `state` message with the reason precedes the close.
    pub const TERMINATED: u16 = 4000;
    /// Someone detached the session through the API; the viewer should not reconnect.
    pub const DETACHED: u16 = 4001;
    pub const BAD_MESSAGE: u16 = 4400;
    pub const BAD_TOKEN: u16 = 4401;
    /// The organisation's policy or membership no longer allows this viewer.
    pub const FORBIDDEN: u16 = 4403;
    pub const SESSION_GONE: u16 = 4404;
    pub const CONTROL_HELD: u16 = 4409;
}

//! RDP client that keeps one remote desktop session open for a worker.
//!
//! [`connect`] runs the connection sequence against a target and returns a [`Connection`].
//! [`Connection::run`] then decodes the server's updates into a [`SharedScreen`] that
//! viewers read from, and sends viewer input to the server. Built on IronRDP.

mod active;
mod config;
mod connect;
mod damage;
mod error;
mod input;
mod screen;
mod tls;

pub use active::{Connection, ResizeHandle, SessionEnded};
pub use config::{ConnectConfig, Secret, SecurityMode};
pub use connect::connect;
pub use damage::Damage;
pub use error::{ConnectError, ConnectErrorKind, EndReason};
pub use screen::SharedScreen;

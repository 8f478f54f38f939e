//! Harness for the end-to-end tests: starts PostgreSQL, Redis, the real `rdp-proxy` control plane
//! and worker processes on loopback, and drives the public API, raw viewer WebSockets and Chromium.

pub mod api;
pub mod browser;
pub mod nodes;
pub mod stack;
pub mod viewer;

pub use api::{Api, ApiFailure};
pub use stack::{Service, Stack};

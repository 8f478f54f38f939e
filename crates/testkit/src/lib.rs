//! Test support for rdp-proxy: starts real components on loopback for
//! integration tests, end-to-end tests and benchmarks.
//!
//! Each starter returns a guard that owns its processes and a temporary
//! directory. Dropping the guard stops the processes by PID (`SIGTERM`, then
//! `SIGKILL` after five seconds) and deletes the directory. Ports come from
//! [`free_port`] and X display numbers are picked at run time, so tests can
//! run in parallel.
//!
//! | starter | component | Debian packages |
//! |---|---|---|
//! | [`Postgres`] | PostgreSQL cluster with trust auth | `postgresql` |
//! | [`Redis`] | Redis without persistence | `redis-server` |
//! | [`Xvfb`] | virtual X display at depth 24 | `xvfb x11-utils x11-xserver-utils x11-apps imagemagick xterm` |
//! | [`ShadowServer`] | `freerdp-shadow-cli` serving an [`Xvfb`] | `freerdp2-shadow-x11 winpr-utils` |
//! | [`Xrdp`] | xrdp with Xorg sessions, needs root | `xrdp xorgxrdp` |
//! | [`Chromium`] | chromedriver and headless Chromium | `chromium chromium-driver` |
//! | [`Xfreerdp`] | xfreerdp on its own [`Xvfb`] | `freerdp2-x11` |
//!
//! # Blocking
//!
//! Starting and dropping are synchronous: they spawn processes and poll
//! until the component is ready, which takes from milliseconds (Redis) to a
//! few seconds (`initdb`, xrdp), and fail after at most 30 seconds (two
//! minutes for `initdb`). Drop blocks while processes shut down. In
//! `#[tokio::test(flavor = "multi_thread")]` tests, call the starters
//! directly or through `tokio::task::spawn_blocking`; on the default
//! current-thread runtime they stall other tasks while they run. Only
//! [`Chromium::new_client`] is `async`.

mod chromium;
mod ports;
mod postgres;
mod process;
mod redis;
mod screenshot;
mod shadow;
mod x11;
mod xfreerdp;
mod xrdp;

pub use chromium::{CHROMIUM_BINARY, Chromium, WINDOW_SIZE};
pub use ports::{free_port, is_listening, wait_for_listener, wait_for_port};
pub use postgres::Postgres;
pub use process::ProcessGuard;
pub use redis::Redis;
pub use screenshot::{Screenshot, colors_near, parse_hex_color};
pub use shadow::{ACCEPTED_CLIENT_LINE, ACTIVATED_CLIENT_LINE, AUTHENTICATION_FAILURE_LINE, ShadowMode, ShadowServer};
pub use x11::Xvfb;
pub use xfreerdp::{Xfreerdp, connect_and_time_first_frame};
pub use xrdp::{XRDP_BACKGROUND, Xrdp};

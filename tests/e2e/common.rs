//! Set-up shared by the end-to-end test files: a desktop served by freerdp-shadow on Xvfb with
//! an xterm to type into, and the rdp-proxy stack with a member and an admin.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdp_proxy_e2e::Stack;
use rdp_proxy_testkit::{ProcessGuard, ShadowMode, ShadowServer, Xvfb};

pub const MEMBER: (&str, &str) = ("alice", "alice-password-1");
pub const OTHER_MEMBER: (&str, &str) = ("bob", "bob-password-12");
pub const ADMIN: (&str, &str) = ("carol", "carol-admin-pass");
pub const DESKTOP_USER: &str = "desk";
pub const DESKTOP_PASSWORD: &str = "Desk-Secret-4711";
pub const BACKGROUND: &str = "#2266cc";
pub const BACKGROUND_RGB: [u8; 3] = [0x22, 0x66, 0xcc];

/// A shadow-served desktop; the xterm runs a shell in `shell_dir`, so typed commands can be
/// observed as files.
pub struct Desktop {
    pub xterm: ProcessGuard,
    pub shadow: ShadowServer,
    pub xvfb: Xvfb,
    pub shell_dir: tempfile::TempDir,
}

impl Desktop {
    pub fn start(mode: ShadowMode) -> Result<Self> {
        let xvfb = Xvfb::start(1280, 800)?;
        xvfb.set_background(BACKGROUND)?;
        let shell_dir = tempfile::Builder::new().prefix("rdp-proxy-e2e-shell-").tempdir()?;
        let shell = format!("cd '{}' && exec bash --norc --noprofile", shell_dir.path().display());
        let xterm = xvfb.spawn_xterm(&[
            "-geometry",
            "80x20+300+200",
            "-bg",
            "yellow",
            "-fg",
            "black",
            "-e",
            "bash",
            "-c",
            &shell,
        ])?;
        let shadow = ShadowServer::start(&xvfb, mode)?;
        Ok(Self {
            xterm,
            shadow,
            xvfb,
            shell_dir,
        })
    }

    pub fn nla() -> Result<Self> {
        Self::start(ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.shell_dir.path().join(name)
    }

    /// Established TCP connections to the shadow server's port.
    pub fn established_connections(&self) -> usize {
        established_to(self.shadow.port())
    }
}

pub fn start_stack() -> Result<Stack> {
    let stack = Stack::start(Path::new(env!("CARGO_BIN_EXE_rdp-proxy")))?;
    stack.add_user(MEMBER.0, MEMBER.1, "member")?;
    stack.add_user(OTHER_MEMBER.0, OTHER_MEMBER.1, "member")?;
    stack.add_user(ADMIN.0, ADMIN.1, "admin")?;
    Ok(stack)
}

/// Counts established TCP connections whose local or remote port is `port`, with `ss`.
pub fn established_to(port: u16) -> usize {
    let output = std::process::Command::new("ss")
        .args(["-Htn", "state", "established"])
        .output();
    let Ok(output) = output else { return usize::MAX };
    let needle = format!("127.0.0.1:{port} ");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|local| format!("{local} ") == needle)
        })
        .count()
}

/// Polls `condition` every 100 ms until it holds or `limit` passes.
pub async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub fn near(actual: [u8; 3], expected: [u8; 3], tolerance: u8) -> bool {
    actual.iter().zip(expected).all(|(a, e)| a.abs_diff(e) <= tolerance)
}

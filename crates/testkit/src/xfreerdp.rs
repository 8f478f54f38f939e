//! xfreerdp (FreeRDP 2.11) as a baseline RDP client for benchmarks and tests.
//!
//! The client draws on its own [`Xvfb`], whose root window starts black, and
//! xfreerdp's window stays exactly black until it paints what the server
//! sent. So the first frame is detected by capturing that display with
//! `xwd -root` in a loop until any pixel is not black. In five runs against
//! the shadow server, that happened 450 to 700 ms after the server logged the
//! client as activated.
//!
//! The measured time runs from launching xfreerdp to that capture, so it
//! includes xfreerdp's own start-up. It overshoots by at most one capture:
//! at 1920x1080 a capture took about 25 ms in a release build and 60 ms in a
//! debug build on a 2-core machine. An all-black desktop is detected only
//! through codec noise in its first frame, so give the server a coloured
//! background.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::{POLL_INTERVAL, ProcessGuard, require_program, tail};
use crate::screenshot::xwd_has_non_black_pixel;
use crate::x11::Xvfb;

/// Maximum time [`connect_and_time_first_frame`] waits for the first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status of xfreerdp 2.11 both when the connection is refused and when
/// NLA rejects the credentials.
const EXIT_CONNECT_FAILED: i32 = 147;

/// A running xfreerdp on a private [`Xvfb`], stopped on drop.
#[derive(Debug)]
pub struct Xfreerdp {
    target_port: u16,
    process: ProcessGuard,
    screen: Xvfb,
    launched_at: Instant,
    _dir: TempDir,
}

impl Xfreerdp {
    /// Starts a `width`x`height` Xvfb and runs `xfreerdp /v:127.0.0.1:PORT
    /// /cert:ignore /size:WIDTHxHEIGHT /u:USER /p:PASSWORD` on it under
    /// `stdbuf -oL -eL`, followed by `extra_args`. An empty `user` leaves out
    /// `/u:` and `/p:`. Returns once xfreerdp is launched, without waiting
    /// for the connection.
    ///
    /// `HOME` and `XDG_CONFIG_HOME` point into a private directory, so the
    /// client's certificate store stays out of the caller's home.
    pub fn connect(
        target_port: u16,
        user: &str,
        password: &str,
        width: u32,
        height: u32,
        extra_args: &[&str],
    ) -> Result<Self> {
        require_program("xfreerdp", "freerdp2-x11")?;
        require_program("stdbuf", "coreutils")?;
        require_program("xwd", "x11-apps")?;
        let screen = Xvfb::start(width, height)?;
        let dir = tempfile::Builder::new()
            .prefix("rdp-proxy-testkit-xfreerdp-")
            .tempdir()?;
        for subdir in ["home", "config"] {
            std::fs::create_dir(dir.path().join(subdir))?;
        }

        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "-eL", "xfreerdp"])
            .arg(format!("/v:127.0.0.1:{target_port}"))
            .arg("/cert:ignore")
            .arg(format!("/size:{width}x{height}"));
        if !user.is_empty() {
            command.arg(format!("/u:{user}")).arg(format!("/p:{password}"));
        }
        command
            .args(extra_args)
            .env("DISPLAY", screen.display())
            .env("HOME", dir.path().join("home"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .current_dir(dir.path());
        let log_path = dir.path().join("xfreerdp.log");
        let launched_at = Instant::now();
        let process = ProcessGuard::spawn_logged(&format!("xfreerdp to port {target_port}"), &mut command, &log_path)?;
        Ok(Self {
            target_port,
            process,
            screen,
            launched_at,
            _dir: dir,
        })
    }

    /// Returns the client's display.
    pub fn screen(&self) -> &Xvfb {
        &self.screen
    }

    /// Returns when xfreerdp was launched.
    pub fn launched_at(&self) -> Instant {
        self.launched_at
    }

    /// Returns xfreerdp's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Returns xfreerdp's exit status once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// Waits up to `timeout` for xfreerdp to exit by itself, as it does with
    /// `+auth-only`, and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if !self.process.wait_exit(timeout) {
            bail!(
                "xfreerdp to port {} still runs after {timeout:?}; last log lines:\n{}",
                self.target_port,
                tail(&self.log_text(), 20)
            );
        }
        self.process
            .exit_status()
            .context("xfreerdp exited but has no exit status")
    }

    /// Waits until the client's display shows a non-black pixel and returns
    /// the time since launch; see the module documentation for the method.
    /// Fails if xfreerdp exits first or `timeout` passes.
    pub fn wait_first_frame(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = self.launched_at + timeout;
        loop {
            if let Some(status) = self.process.exit_status() {
                let hint = if status.code() == Some(EXIT_CONNECT_FAILED) {
                    " (connection refused or NLA credentials rejected; check the server log)"
                } else {
                    ""
                };
                bail!(
                    "xfreerdp to port {} exited with {status}{hint} before the first frame; last log lines:\n{}",
                    self.target_port,
                    tail(&self.log_text(), 20)
                );
            }
            let capture = self
                .screen
                .command("xwd")
                .args(["-root", "-silent"])
                .output()
                .context("failed to run xwd")?;
            if capture.status.success() && xwd_has_non_black_pixel(&capture.stdout)? {
                return Ok(self.launched_at.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for xfreerdp's first frame from port {}; last log lines:\n{}",
                    self.target_port,
                    tail(&self.log_text(), 20)
                );
            }
            std::thread::sleep(POLL_INTERVAL / 5);
        }
    }
}

/// Connects xfreerdp to `127.0.0.1:target_port` on a private display of
/// `width`x`height`, returns the time from launch to the first frame, and
/// stops the client. Blocks for up to 30 seconds.
pub fn connect_and_time_first_frame(
    target_port: u16,
    user: &str,
    password: &str,
    width: u32,
    height: u32,
) -> Result<Duration> {
    let mut client = Xfreerdp::connect(target_port, user, password, width, height, &[])?;
    client.wait_first_frame(FIRST_FRAME_TIMEOUT)
}

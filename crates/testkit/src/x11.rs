//! Xvfb virtual displays for RDP servers and clients to draw on.
//!
//! Display numbers are chosen at run time: a random start in 100..900, then
//! upward past numbers that have a socket in `/tmp/.X11-unix`, a lock file
//! `/tmp/.X<n>-lock`, or a reservation in this process. Another process can
//! still take a number between the check and Xvfb's start, so a start that
//! fails because the display is in use is retried on the next number.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rand::Rng;
use tempfile::TempDir;

use crate::process::{ProcessGuard, START_TIMEOUT, is_alive, poll_until, require_program, run_output};
use crate::screenshot::{Screenshot, parse_hex_color};

/// Lowest display number handed out; lower numbers are left to desktops and xrdp's default.
const FIRST_DISPLAY: u32 = 100;

/// One past the highest display number handed out.
const END_DISPLAY: u32 = 900;

/// Number of times [`Xvfb::start`] moves to another display after a collision.
const START_ATTEMPTS: usize = 5;

/// Maximum time [`Xvfb`]'s drop waits for the X socket to disappear.
const SOCKET_REMOVAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Display numbers reserved by this process.
static RESERVED_DISPLAYS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Path of the Unix socket of X display `number`.
pub(crate) fn socket_path(number: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X11-unix/X{number}"))
}

/// Path of the lock file of X display `number`; it contains the server's PID.
pub(crate) fn lock_path(number: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X{number}-lock"))
}

/// Returns the PID written in the lock file of display `number`.
pub(crate) fn lock_owner(number: u32) -> Option<u32> {
    std::fs::read_to_string(lock_path(number)).ok()?.trim().parse().ok()
}

fn display_in_use(number: u32) -> bool {
    socket_path(number).exists() || lock_path(number).exists()
}

/// A block of consecutive display numbers reserved in this process until drop.
#[derive(Debug)]
pub(crate) struct DisplayReservation {
    first: u32,
    count: u32,
}

impl DisplayReservation {
    /// Reserves `count` consecutive display numbers that are currently unused.
    pub(crate) fn new(count: u32) -> Result<Self> {
        let mut reserved = RESERVED_DISPLAYS.lock().unwrap_or_else(PoisonError::into_inner);
        let span = END_DISPLAY - FIRST_DISPLAY - count;
        let offset = rand::thread_rng().gen_range(0..span);
        for step in 0..span {
            let first = FIRST_DISPLAY + (offset + step) % span;
            let block = first..first + count;
            if block.clone().all(|n| !reserved.contains(&n) && !display_in_use(n)) {
                reserved.extend(block);
                return Ok(Self { first, count });
            }
        }
        bail!(
            "no {count} consecutive free X display numbers in {FIRST_DISPLAY}..{END_DISPLAY}; \
             remove stale /tmp/.X<n>-lock files and /tmp/.X11-unix/X<n> sockets"
        )
    }

    pub(crate) fn first(&self) -> u32 {
        self.first
    }

    pub(crate) fn numbers(&self) -> std::ops::Range<u32> {
        self.first..self.first + self.count
    }
}

impl Drop for DisplayReservation {
    fn drop(&mut self) {
        let mut reserved = RESERVED_DISPLAYS.lock().unwrap_or_else(PoisonError::into_inner);
        for number in self.numbers() {
            reserved.remove(&number);
        }
    }
}

/// Removes the lock file and socket of display `number` if the lock names
/// one of `owners` and that process is gone, as after a `SIGKILL`.
pub(crate) fn remove_stale_display_files(number: u32, owners: &[u32]) {
    let Some(owner) = lock_owner(number) else {
        return;
    };
    if owners.contains(&owner) && !is_alive(owner) {
        tracing::debug!(display = number, owner, "removing stale X lock file and socket");
        let _ = std::fs::remove_file(lock_path(number));
        let _ = std::fs::remove_file(socket_path(number));
    }
}

/// A running Xvfb server at depth 24, stopped on drop.
///
/// Drop sends `SIGTERM` and then waits up to five seconds for the socket in
/// `/tmp/.X11-unix` to disappear. With Xvfb 21 on Debian 12, starting a new
/// server within a second of killing the old one on the same display left
/// the display unusable.
#[derive(Debug)]
pub struct Xvfb {
    number: u32,
    width: u32,
    height: u32,
    process: ProcessGuard,
    dir: TempDir,
    spawned: AtomicU32,
    _reservation: DisplayReservation,
}

impl Xvfb {
    /// Starts `Xvfb :N -screen 0 WIDTHxHEIGHTx24 -nolisten tcp -noreset` on a
    /// free display and waits until `xdpyinfo` connects to it. Blocks for up
    /// to 30 seconds.
    pub fn start(width: u32, height: u32) -> Result<Self> {
        ensure!(width > 0 && height > 0, "invalid Xvfb size {width}x{height}");
        require_program("Xvfb", "xvfb")?;
        require_program("xdpyinfo", "x11-utils")?;
        let dir = tempfile::Builder::new().prefix("rdp-proxy-testkit-xvfb-").tempdir()?;

        for _ in 0..START_ATTEMPTS {
            let reservation = DisplayReservation::new(1)?;
            let number = reservation.first();
            let log_path = dir.path().join(format!("xvfb-{number}.log"));
            let mut process = ProcessGuard::spawn_logged(
                &format!("Xvfb :{number}"),
                Command::new("Xvfb").args([
                    &format!(":{number}"),
                    "-screen",
                    "0",
                    &format!("{width}x{height}x24"),
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ]),
                &log_path,
            )?;
            match wait_until_ready(&mut process, number)? {
                Readiness::Ready => {
                    tracing::debug!(display = number, width, height, pid = process.pid(), "Xvfb ready");
                    return Ok(Self {
                        number,
                        width,
                        height,
                        process,
                        dir,
                        spawned: AtomicU32::new(0),
                        _reservation: reservation,
                    });
                }
                Readiness::DisplayTaken => {
                    tracing::debug!(display = number, "display taken by another X server; trying another");
                }
            }
        }
        bail!("Xvfb found no free display after {START_ATTEMPTS} attempts")
    }

    /// Returns the display name, for example `:123`.
    pub fn display(&self) -> String {
        format!(":{}", self.number)
    }

    /// Returns the display number, for example `123`.
    pub fn display_number(&self) -> u32 {
        self.number
    }

    /// Returns the screen width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Returns the screen height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Returns the PID of the Xvfb process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Returns a command for `program` with `DISPLAY` set to this display.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", self.display());
        command
    }

    /// Fills the root window with `color`, given as `#rrggbb`, using `xsetroot`.
    pub fn set_background(&self, color: &str) -> Result<()> {
        parse_hex_color(color)?;
        require_program("xsetroot", "x11-xserver-utils")?;
        run_output(self.command("xsetroot").args(["-solid", color]))?;
        Ok(())
    }

    /// Starts `xterm` with `args` on this display. The returned guard stops it
    /// on drop. The window can appear a moment after this returns.
    pub fn spawn_xterm(&self, args: &[&str]) -> Result<ProcessGuard> {
        require_program("xterm", "xterm")?;
        let index = self.spawned.fetch_add(1, Ordering::Relaxed);
        let log_path = self.dir.path().join(format!("xterm-{index}.log"));
        ProcessGuard::spawn_logged(
            &format!("xterm on {}", self.display()),
            self.command("xterm").args(args),
            &log_path,
        )
    }

    /// Reads the colour of one pixel with ImageMagick's
    /// `import -window root -crop 1x1+X+Y`.
    pub fn pixel(&self, x: u32, y: u32) -> Result<[u8; 3]> {
        ensure!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) is outside the {}x{} screen",
            self.width,
            self.height
        );
        require_program("import", "imagemagick")?;
        let output = self
            .command("import")
            .args(["-window", "root", "-depth", "8", "-crop"])
            .arg(format!("1x1+{x}+{y}"))
            .arg("rgb:-")
            .output()
            .context("failed to run import")?;
        ensure!(
            output.status.success(),
            "import exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        match output.stdout.as_slice() {
            [red, green, blue] => Ok([*red, *green, *blue]),
            other => bail!("import returned {} bytes for one RGB pixel; expected 3", other.len()),
        }
    }

    /// Captures the whole screen with `xwd -root`.
    pub fn capture(&self) -> Result<Screenshot> {
        require_program("xwd", "x11-apps")?;
        let output = self
            .command("xwd")
            .args(["-root", "-silent"])
            .output()
            .context("failed to run xwd")?;
        ensure!(
            output.status.success(),
            "xwd exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Screenshot::from_xwd(&output.stdout)
    }

    /// Writes the whole screen to `path` as PNG with ImageMagick's `import`.
    pub fn screenshot_png(&self, path: &Path) -> Result<()> {
        require_program("import", "imagemagick")?;
        let mut target = std::ffi::OsString::from("png:");
        target.push(path);
        run_output(self.command("import").args(["-window", "root"]).arg(target))?;
        Ok(())
    }

    /// Returns Xvfb's own log (its stderr).
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let pid = self.process.pid();
        self.process.stop();
        remove_stale_display_files(self.number, &[pid]);
        let socket = socket_path(self.number);
        let removed = poll_until(SOCKET_REMOVAL_TIMEOUT, "the X socket to disappear", || {
            Ok((!socket.exists()).then_some(()))
        });
        if let Err(error) = removed {
            tracing::warn!(display = self.number, %error, "X socket still present after Xvfb stopped");
        }
    }
}

enum Readiness {
    Ready,
    DisplayTaken,
}

/// Waits until `xdpyinfo` connects to display `number` and the display's
/// lock file names our Xvfb, so that another server on the same number is
/// never mistaken for ours.
fn wait_until_ready(process: &mut ProcessGuard, number: u32) -> Result<Readiness> {
    let display = format!(":{number}");
    poll_until(START_TIMEOUT, &format!("Xvfb on display {display}"), || {
        if process.exit_status().is_some() {
            let log = process.log_text();
            if log.contains("already active") || log.contains("lock file") {
                return Ok(Some(Readiness::DisplayTaken));
            }
            process.ensure_running()?;
        }
        if lock_owner(number) != Some(process.pid()) {
            return Ok(None);
        }
        let probe = Command::new("xdpyinfo")
            .args(["-display", &display])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("failed to run xdpyinfo")?;
        Ok(probe.success().then_some(Readiness::Ready))
    })
}

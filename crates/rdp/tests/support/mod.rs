//! Real desktops and RDP servers for the integration tests: an Xvfb display painted a known
//! colour, FreeRDP's shadow server serving it, and helpers to poll the X server.
//!
//! Every process is started with a guard whose `Drop` kills it by PID, display numbers and
//! ports are chosen at run time, and temporary directories are removed on drop.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdp_proxy_rdp::{ConnectConfig, Secret, SecurityMode};
use sha2::{Digest as _, Sha256};

/// The background colour painted on every test desktop, as R, G, B.
pub const BACKGROUND: [u8; 3] = [0x22, 0x66, 0xcc];
/// How long to wait for a process or condition before failing the test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

static UNIQUE: AtomicU32 = AtomicU32::new(0);

fn unique_number() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    u64::from(std::process::id()) * 1_000_003 + u64::from(nanos) + u64::from(UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// A temporary directory, removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("rdp-proxy-rdp-{label}-{}", unique_number()));
        fs::create_dir_all(&path).expect("create temporary directory");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A child process that is killed by PID and reaped on drop.
pub struct ProcessGuard {
    child: Child,
}

impl ProcessGuard {
    fn spawn(name: &str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {name}: {error}"));
        Self { child }
    }

    /// Returns whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if !self.has_exited() {
            self.kill();
        }
    }
}

/// Polls `condition` every 50 ms until it returns `Some` or [`WAIT_LIMIT`] passes.
pub fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `condition` every 50 ms without blocking the runtime, until it returns `Some` or
/// [`WAIT_LIMIT`] passes.
pub async fn eventually<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An Xvfb server on a display number chosen at run time, painted [`BACKGROUND`].
pub struct Desktop {
    pub display: String,
    pub width: u16,
    pub height: u16,
    _xvfb: ProcessGuard,
}

impl Desktop {
    pub fn start(width: u16, height: u16) -> Self {
        let base = 200 + unique_number() % 600;
        for offset in 0..100 {
            let number = base + offset;
            if Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
                || Path::new(&format!("/tmp/.X{number}-lock")).exists()
            {
                continue;
            }
            let display = format!(":{number}");
            let mut xvfb = ProcessGuard::spawn(
                "Xvfb",
                Command::new("Xvfb")
                    .arg(&display)
                    .args(["-screen", "0", &format!("{width}x{height}x24")])
                    .args(["-nolisten", "tcp", "-noreset"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            let ready = wait_until_ready(&mut xvfb, &display);
            if !ready {
                // Another process took this display first; try the next number.
                continue;
            }
            let desktop = Self {
                display,
                width,
                height,
                _xvfb: xvfb,
            };
            let status = desktop
                .command("xsetroot")
                .args(["-solid", "#2266cc"])
                .status()
                .expect("run xsetroot");
            assert!(status.success(), "xsetroot failed on {}", desktop.display);
            return desktop;
        }
        panic!("no free X display number found from :{base}");
    }

    /// Returns a command with `DISPLAY` set to this desktop.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", &self.display);
        command
    }

    /// Starts an xterm of 60×20 characters running `sh` in `directory`, with its top-left
    /// corner at (0, 0).
    pub fn start_xterm(&self, directory: &Path) -> ProcessGuard {
        let xterm = ProcessGuard::spawn(
            "xterm",
            self.command("xterm")
                .args(["-geometry", "60x20+0+0", "-e", "/bin/sh"])
                .current_dir(directory)
                .env("SHELL", "/bin/sh")
                .env("HOME", directory)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for("the xterm window", || {
            let output = self
                .command("xdotool")
                .args(["search", "--class", "xterm"])
                .output()
                .ok()?;
            (output.status.success() && !output.stdout.is_empty()).then_some(())
        });
        xterm
    }

    /// Returns the pointer position reported by the X server.
    pub fn pointer_position(&self) -> Option<(u16, u16)> {
        let output = self.command("xdotool").arg("getmouselocation").output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut x = None;
        let mut y = None;
        for field in text.split_whitespace() {
            if let Some(value) = field.strip_prefix("x:") {
                x = value.parse().ok();
            } else if let Some(value) = field.strip_prefix("y:") {
                y = value.parse().ok();
            }
        }
        Some((x?, y?))
    }
}

fn wait_until_ready(xvfb: &mut ProcessGuard, display: &str) -> bool {
    let deadline = Instant::now() + WAIT_LIMIT;
    while Instant::now() < deadline {
        if xvfb.has_exited() {
            return false;
        }
        let probe = Command::new("xdpyinfo")
            .args(["-display", display])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if probe.is_ok_and(|status| status.success()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// How the shadow server authenticates clients.
pub enum ShadowAuth {
    /// `/sec:tls -auth`: TLS only, no credential check.
    TlsOnly,
    /// `-auth` with no `/sec`: the server's default protocols, no credential check.
    NoAuth,
    /// `/sec:nla` with a SAM file containing one user.
    NlaOnly { user: String, password: String },
}

/// `freerdp-shadow-cli` serving a [`Desktop`] on a loopback port chosen at run time.
pub struct ShadowServer {
    pub port: u16,
    pub config_dir: TempDir,
    process: ProcessGuard,
}

impl ShadowServer {
    pub fn start(desktop: &Desktop, auth: ShadowAuth) -> Self {
        let config_dir = TempDir::new("shadow");
        let mut args: Vec<String> = Vec::new();
        match &auth {
            ShadowAuth::TlsOnly => {
                args.push("/sec:tls".to_owned());
                args.push("-auth".to_owned());
            }
            ShadowAuth::NoAuth => args.push("-auth".to_owned()),
            ShadowAuth::NlaOnly { user, password } => {
                let sam = config_dir.path().join("sam");
                let output = Command::new("winpr-hash")
                    .args(["-u", user, "-p", password, "-f", "sam"])
                    .output()
                    .expect("run winpr-hash");
                assert!(output.status.success(), "winpr-hash failed");
                fs::write(&sam, &output.stdout).expect("write SAM file");
                args.push("/sec:nla".to_owned());
                args.push(format!("/sam-file:{}", sam.display()));
            }
        }

        for _attempt in 0..3 {
            let port = free_port();
            let log = fs::File::create(config_dir.path().join("shadow.log")).expect("create shadow log");
            let mut process = ProcessGuard::spawn(
                "freerdp-shadow-cli",
                desktop
                    .command("freerdp-shadow-cli")
                    .arg("/bind-address:127.0.0.1")
                    .arg(format!("/port:{port}"))
                    .args(&args)
                    .env("XDG_CONFIG_HOME", config_dir.path())
                    .stdout(log.try_clone().expect("clone log handle"))
                    .stderr(log),
            );
            if wait_for_port(&mut process, port) {
                return Self {
                    port,
                    config_dir,
                    process,
                };
            }
        }
        panic!(
            "freerdp-shadow-cli did not start; log:\n{}",
            fs::read_to_string(config_dir.path().join("shadow.log")).unwrap_or_default()
        );
    }

    /// SHA-256 of the server's DER certificate, read from the PEM file it wrote.
    pub fn certificate_sha256(&self) -> [u8; 32] {
        let pem =
            fs::read_to_string(self.config_dir.path().join("freerdp/shadow/shadow.crt")).expect("read shadow.crt");
        // FreeRDP 2.11 ends the file with a NUL byte, so keep only base64 characters.
        let base64_body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .flat_map(str::chars)
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64_body)
            .expect("decode shadow.crt");
        Sha256::digest(der).into()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// A configuration for this server with a generous timeout for loaded test machines.
    pub fn config(&self, security: SecurityMode, username: &str, password: &str) -> ConnectConfig {
        ConnectConfig {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            username: username.to_owned(),
            password: Secret::new(password),
            domain: None,
            security,
            width: 1280,
            height: 720,
            connect_timeout: WAIT_LIMIT,
            cert_sha256: None,
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("read the bound port").port()
}

fn wait_for_port(process: &mut ProcessGuard, port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + WAIT_LIMIT;
    while Instant::now() < deadline {
        if process.has_exited() {
            return false;
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Whether two colours differ by at most `tolerance` in every channel. RemoteFX is lossy, so
/// decoded colours may be a few steps off.
pub fn close_to(actual: &[u8], expected: [u8; 3], tolerance: u8) -> bool {
    actual
        .iter()
        .zip(expected)
        .all(|(actual, expected)| actual.abs_diff(expected) <= tolerance)
}

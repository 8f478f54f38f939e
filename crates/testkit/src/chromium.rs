//! Headless Chromium driven over WebDriver, for browser tests of the viewer.
//!
//! [`Chromium::start`] runs `chromedriver`. Each [`Chromium::new_client`]
//! opens a WebDriver session that launches a separate Chromium with a fresh
//! profile directory, so every client is a new browser without cookies or
//! storage.
//!
//! Capabilities used for every session (see [`Chromium::capabilities`]):
//! binary [`CHROMIUM_BINARY`] with `--headless=new --no-sandbox --disable-gpu
//! --disable-quic --no-first-run --disable-background-networking
//! --disable-component-update --disable-sync --user-data-dir=<fresh dir>
//! --window-size=1600,1000`, plus `--host-resolver-rules` that make every
//! host name except `localhost` unresolvable, so a test page cannot reach
//! other hosts by name. `--no-sandbox` is needed because tests run as root.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use fantoccini::wd::Capabilities;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{
    ProcessGuard, START_TIMEOUT, STOP_GRACE, descendants, poll_until, require_program, tail, terminate_all,
};

/// Chromium launcher the sessions use.
pub const CHROMIUM_BINARY: &str = "/usr/bin/chromium";

/// Number of ports tried when the chosen port was taken before chromedriver bound it.
const START_ATTEMPTS: usize = 3;

/// Browser window size in pixels, width by height.
pub const WINDOW_SIZE: (u32, u32) = (1600, 1000);

/// A running `chromedriver` on 127.0.0.1, stopped on drop with every
/// browser it launched.
///
/// Drop stops the descendants of `chromedriver` (the browsers and their
/// helpers) and every process whose command line names this guard's private
/// directory, which catches helpers that were re-parented, then
/// `chromedriver` itself. Clients still open at that point stop working.
#[derive(Debug)]
pub struct Chromium {
    port: u16,
    process: ProcessGuard,
    profiles: Mutex<Vec<TempDir>>,
    dir: TempDir,
}

impl Chromium {
    /// Starts `chromedriver --port=P` on a free port and waits until it
    /// listens. Blocks for up to 30 seconds.
    pub fn start() -> Result<Self> {
        require_program("chromedriver", "chromium-driver")?;
        require_program(CHROMIUM_BINARY, "chromium")?;
        let dir = tempfile::Builder::new()
            .prefix("rdp-proxy-testkit-chromium-")
            .tempdir()?;
        // Chromium's crash handler keeps its database under $HOME/.config and
        // outlives the browser briefly. A private HOME keeps it out of the
        // caller's home and puts this directory on its command line, where
        // drop finds it.
        let home = dir.path().join("home");
        std::fs::create_dir(&home)?;

        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log_path = dir.path().join(format!("chromedriver-{port}.log"));
            let mut command = Command::new("chromedriver");
            command
                .arg(format!("--port={port}"))
                .env("HOME", &home)
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("XDG_CACHE_HOME")
                .current_dir(dir.path());
            let name = format!("chromedriver :{port}");
            let mut process = ProcessGuard::spawn_logged(&name, &mut command, &log_path)?;

            // The log line, unlike a listener check, proves that this
            // chromedriver bound the port and not another process.
            let started_line = format!("ChromeDriver was started successfully on port {port}.");
            let started = poll_until(
                START_TIMEOUT,
                &format!("chromedriver log line {started_line:?}"),
                || {
                    if process.exit_status().is_some() {
                        return Ok(Some(false));
                    }
                    Ok(process.log_text().contains(&started_line).then_some(true))
                },
            )?;
            if started {
                tracing::debug!(port, pid = process.pid(), "chromedriver ready");
                return Ok(Self {
                    port,
                    process,
                    profiles: Mutex::new(Vec::new()),
                    dir,
                });
            }
            // The usual cause is another process binding the port first.
            last_log = process.log_text();
            tracing::debug!(port, "chromedriver exited during start-up; retrying on another port");
        }
        bail!(
            "chromedriver exited during start-up {START_ATTEMPTS} times; last log lines:\n{}",
            tail(&last_log, 20)
        )
    }

    /// Returns the WebDriver endpoint, `http://127.0.0.1:PORT`.
    pub fn webdriver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the PIDs of the browsers and helpers chromedriver launched so far.
    pub fn browser_pids(&self) -> Vec<u32> {
        descendants(self.process.pid())
    }

    /// Returns chromedriver's log.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Returns the WebDriver capabilities for a headless Chromium that keeps
    /// its profile in `user_data_dir`. The module documentation lists them.
    pub fn capabilities(user_data_dir: &Path) -> Capabilities {
        let (width, height) = WINDOW_SIZE;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1".to_owned(),
            format!("--user-data-dir={}", user_data_dir.display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM_BINARY,
                "args": args,
            },
        });
        match capabilities {
            Value::Object(map) => map,
            _ => Capabilities::new(),
        }
    }

    /// Opens a WebDriver session in a new Chromium with a fresh profile
    /// directory, deleted when this guard drops. Call
    /// [`fantoccini::Client::close`] to end the browser earlier.
    pub async fn new_client(&self) -> Result<fantoccini::Client> {
        let profile = tempfile::Builder::new()
            .prefix("profile-")
            .tempdir_in(self.dir.path())
            .context("failed to create a Chromium profile directory")?;
        let capabilities = Self::capabilities(profile.path());
        self.profiles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(profile);
        // chromedriver speaks plain HTTP on loopback, so no TLS connector is needed.
        let client = fantoccini::ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.webdriver_url())
            .await
            .with_context(|| {
                format!(
                    "failed to open a WebDriver session at {}; chromedriver log:\n{}",
                    self.webdriver_url(),
                    tail(&self.log_text(), 20)
                )
            })?;
        Ok(client)
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let mut pids = descendants(self.process.pid());
        pids.extend(processes_mentioning(self.dir.path()));
        pids.retain(|&pid| pid != self.process.pid());
        terminate_all(&pids, STOP_GRACE);
        self.process.stop();
    }
}

/// Returns the processes whose command line contains `path`.
fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|window| window == needle)
                .then_some(pid)
        })
        .collect()
}

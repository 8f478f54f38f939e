//! A throwaway Redis server on loopback with persistence switched off.

use std::process::Command;

use anyhow::{Result, bail};
use tempfile::TempDir;

use crate::ports::{free_port, is_listening};
use crate::process::{ProcessGuard, START_TIMEOUT, poll_until, require_program, tail};

/// Log line Redis 7 writes once it accepts connections.
const READY_LINE: &str = "Ready to accept connections";

/// Number of ports tried when the chosen port was taken before Redis bound it.
const START_ATTEMPTS: usize = 3;

/// A running `redis-server` on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    process: Option<ProcessGuard>,
    dir: TempDir,
    starts: u32,
}

impl Redis {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no`
    /// in a private directory and waits until it accepts connections. Blocks
    /// for up to 30 seconds.
    pub fn start() -> Result<Self> {
        require_program("redis-server", "redis-server")?;
        let dir = tempfile::Builder::new().prefix("rdp-proxy-testkit-redis-").tempdir()?;
        let mut redis = Self {
            port: 0,
            process: None,
            dir,
            starts: 0,
        };
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            redis.port = free_port();
            match redis.spawn()? {
                None => return Ok(redis),
                Some(log) => last_log = log,
            }
        }
        bail!(
            "redis-server exited during start-up {START_ATTEMPTS} times; last log lines:\n{}",
            tail(&last_log, 20)
        )
    }

    /// Returns the URL `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Returns the TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the current server's log.
    pub fn log_text(&self) -> String {
        self.process.as_ref().map(ProcessGuard::log_text).unwrap_or_default()
    }

    /// Returns true while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ProcessGuard::is_running)
    }

    /// Stops the server with `SIGTERM`. [`Redis::restart_empty`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Kills the server with `SIGKILL` and starts a new one on the same port
    /// with no data, as when a Redis host is lost and replaced. Blocks for up
    /// to 30 seconds. Fails if another process took the port in between.
    pub fn restart_empty(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        poll_until(START_TIMEOUT, &format!("port {} to be released", self.port), || {
            Ok((!is_listening(self.port)).then_some(()))
        })?;
        if let Some(log) = self.spawn()? {
            bail!(
                "redis-server failed to start again on port {}; last log lines:\n{}",
                self.port,
                tail(&log, 20)
            );
        }
        Ok(())
    }

    /// Starts a server on `self.port` and waits for it. Returns `None` when it
    /// is ready, or its log when it exited during start-up.
    fn spawn(&mut self) -> Result<Option<String>> {
        self.starts += 1;
        let data_dir = self.dir.path().join(format!("data-{}", self.starts));
        std::fs::create_dir(&data_dir)?;

        let log_path = self.dir.path().join(format!("redis-{}.log", self.starts));
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--dir"])
            .arg(&data_dir);
        let mut process = ProcessGuard::spawn_logged(&format!("redis-server :{port}"), &mut command, &log_path)?;

        let ready = poll_until(START_TIMEOUT, &format!("redis-server on port {port}"), || {
            if process.exit_status().is_some() {
                return Ok(Some(false));
            }
            let ready = process.log_text().contains(READY_LINE) && is_listening(self.port);
            Ok(ready.then_some(true))
        })?;
        if !ready {
            return Ok(Some(process.log_text()));
        }

        tracing::debug!(port = self.port, pid = process.pid(), "redis-server ready");
        self.process = Some(process);
        Ok(None)
    }
}

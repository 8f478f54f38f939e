//! FreeRDP's shadow server (`freerdp-shadow-cli`, FreeRDP 2.11) serving an
//! [`Xvfb`] display as an RDP target.
//!
//! The server runs with `WLOG_LEVEL=INFO` under `stdbuf -oL -eL`, so each log
//! line reaches the log file as it is written. Without `stdbuf` the lines are
//! block-buffered and lost when the server is killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{ProcessGuard, START_TIMEOUT, poll_until, require_program, run_output, tail};
use crate::x11::Xvfb;

/// Log line the server writes once per client connection, after security
/// negotiation (and CredSSP under NLA) when it accepts the MCS Connect
/// Initial PDU. A bare TCP probe or a rejected NLA password does not write it.
pub const ACCEPTED_CLIENT_LINE: &str = "[com.freerdp.core.connection] - Accepted client:";

/// Log line written when a connection finishes the RDP connection sequence,
/// for example `Client from 127.0.0.1 is activated (1024x768@32)`.
pub const ACTIVATED_CLIENT_LINE: &str = "is activated (";

/// Log line written when NLA rejects a client's credentials.
pub const AUTHENTICATION_FAILURE_LINE: &str = "client authentication failure";

/// Number of ports tried when the chosen port was taken before the server bound it.
const START_ATTEMPTS: usize = 3;

/// Security and authentication settings of a [`ShadowServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShadowMode {
    /// `/sec:tls -auth`: TLS only, any credentials accepted. A client that
    /// offers only NLA fails with a security negotiation error.
    NoAuthTls,
    /// `-auth` with no `/sec`: the server offers TLS and standard RDP
    /// security but not NLA, and accepts any credentials. xfreerdp negotiates TLS.
    NoAuthAny,
    /// `/sec:nla /sam-file:FILE`: NLA with one account, checked against a SAM
    /// file written by `winpr-hash -u USER -p PASS -f sam`. Any domain matches.
    Nla {
        /// User name, case-sensitive.
        user: String,
        /// Password.
        password: String,
    },
}

impl ShadowMode {
    /// Returns [`ShadowMode::Nla`] for `user` and `password`.
    pub fn nla(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Nla {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// A running `freerdp-shadow-cli` bound to 127.0.0.1, stopped on drop.
///
/// The server captures the display it was started on; keep that [`Xvfb`]
/// alive for as long as the server.
#[derive(Debug)]
pub struct ShadowServer {
    port: u16,
    mode: ShadowMode,
    display: String,
    process: ProcessGuard,
    dir: TempDir,
}

impl ShadowServer {
    /// Starts the shadow server for `xvfb` on a free loopback port and waits
    /// until it logs that it listens. Blocks for up to 30 seconds.
    ///
    /// The server's configuration directory (`XDG_CONFIG_HOME`, where it
    /// creates its self-signed certificate) and `HOME` are private to this
    /// guard.
    pub fn start(xvfb: &Xvfb, mode: ShadowMode) -> Result<Self> {
        require_program("freerdp-shadow-cli", "freerdp2-shadow-x11")?;
        require_program("stdbuf", "coreutils")?;
        let dir = tempfile::Builder::new().prefix("rdp-proxy-testkit-shadow-").tempdir()?;
        for subdir in ["config", "home"] {
            std::fs::create_dir(dir.path().join(subdir))?;
        }
        let security_args = security_args(&mode, dir.path())?;

        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log_path = dir.path().join(format!("shadow-{port}.log"));
            let mut command = Command::new("stdbuf");
            command
                .args(["-oL", "-eL", "freerdp-shadow-cli", "/bind-address:127.0.0.1"])
                .arg(format!("/port:{port}"))
                .args(&security_args)
                .env("DISPLAY", xvfb.display())
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .env("HOME", dir.path().join("home"))
                .env("WLOG_LEVEL", "INFO")
                .current_dir(dir.path());
            let name = format!("freerdp-shadow-cli :{port}");
            let mut process = ProcessGuard::spawn_logged(&name, &mut command, &log_path)?;

            let listening = format!("Listening on [127.0.0.1]:{port}");
            let started = poll_until(START_TIMEOUT, &format!("shadow server log line {listening:?}"), || {
                if process.exit_status().is_some() {
                    return Ok(Some(false));
                }
                Ok(process.log_text().contains(&listening).then_some(true))
            })?;
            if started {
                tracing::debug!(port, display = %xvfb.display(), ?mode, pid = process.pid(), "shadow server ready");
                return Ok(Self {
                    port,
                    mode,
                    display: xvfb.display(),
                    process,
                    dir,
                });
            }
            // The usual cause is another process binding the port first.
            last_log = process.log_text();
            tracing::debug!(port, "shadow server exited during start-up; retrying on another port");
        }
        bail!(
            "freerdp-shadow-cli exited during start-up {START_ATTEMPTS} times; last log lines:\n{}",
            tail(&last_log, 20)
        )
    }

    /// Returns the TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the mode the server was started in.
    pub fn mode(&self) -> &ShadowMode {
        &self.mode
    }

    /// Returns the X display the server captures.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Returns the server's PID, which is also the PID of the `stdbuf` that `exec`s it.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Returns the server's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Counts the log lines that contain `needle`.
    pub fn count_log_lines(&self, needle: &str) -> usize {
        self.log_text().lines().filter(|line| line.contains(needle)).count()
    }

    /// Counts client connections the server accepted: lines containing
    /// [`ACCEPTED_CLIENT_LINE`], written once per connection after security
    /// negotiation and authentication.
    pub fn connections_accepted(&self) -> usize {
        self.count_log_lines(ACCEPTED_CLIENT_LINE)
    }

    /// Counts connections that completed the RDP connection sequence
    /// ([`ACTIVATED_CLIENT_LINE`]).
    pub fn clients_activated(&self) -> usize {
        self.count_log_lines(ACTIVATED_CLIENT_LINE)
    }

    /// Counts NLA logons rejected for wrong credentials ([`AUTHENTICATION_FAILURE_LINE`]).
    pub fn authentication_failures(&self) -> usize {
        self.count_log_lines(AUTHENTICATION_FAILURE_LINE)
    }

    /// Waits until [`ShadowServer::connections_accepted`] reaches `count`.
    pub fn wait_for_connections(&self, count: usize, timeout: Duration) -> Result<()> {
        poll_until(
            timeout,
            &format!("{count} accepted connections on port {}", self.port),
            || Ok((self.connections_accepted() >= count).then_some(())),
        )
    }

    /// Returns the path of the server's certificate,
    /// `$XDG_CONFIG_HOME/freerdp/shadow/shadow.crt`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("config/freerdp/shadow/shadow.crt")
    }

    /// Returns the server's certificate in DER form, decoded from its PEM file.
    pub fn cert_der(&self) -> Result<Vec<u8>> {
        let path = self.cert_path();
        let pem = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
        pem_certificate_to_der(&pem).with_context(|| format!("invalid certificate in {}", path.display()))
    }

    /// Returns the SHA-256 digest of the server's DER certificate, the value a
    /// client pins.
    pub fn cert_sha256(&self) -> Result<[u8; 32]> {
        Ok(Sha256::digest(self.cert_der()?).into())
    }
}

/// Returns the shadow server's command-line flags for `mode`, writing the
/// SAM file into `dir` for NLA.
fn security_args(mode: &ShadowMode, dir: &Path) -> Result<Vec<String>> {
    Ok(match mode {
        ShadowMode::NoAuthTls => vec!["/sec:tls".into(), "-auth".into()],
        ShadowMode::NoAuthAny => vec!["-auth".into()],
        ShadowMode::Nla { user, password } => {
            let sam_path = dir.join("sam");
            std::fs::write(&sam_path, sam_line(user, password)?)
                .with_context(|| format!("failed to write {}", sam_path.display()))?;
            vec!["/sec:nla".into(), format!("/sam-file:{}", sam_path.display())]
        }
    })
}

/// Returns a SAM file line `user:::LMHASH:NTHASH:::` from `winpr-hash`.
pub(crate) fn sam_line(user: &str, password: &str) -> Result<String> {
    ensure!(!user.is_empty(), "invalid NLA user: empty");
    for (what, value) in [("user", user), ("password", password)] {
        ensure!(
            !value.contains([':', '\n', '\r']),
            "invalid NLA {what}: a SAM file cannot contain ':' or line breaks"
        );
    }
    require_program("winpr-hash", "winpr-utils")?;
    let line = run_output(Command::new("winpr-hash").args(["-u", user, "-p", password, "-f", "sam"]))?;
    ensure!(
        line.starts_with(&format!("{user}:")),
        "winpr-hash returned an unexpected SAM line: {line:?}"
    );
    Ok(line)
}

/// Decodes the first `CERTIFICATE` block of a PEM file.
fn pem_certificate_to_der(pem: &str) -> Result<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let Some(start) = pem.find(BEGIN) else {
        bail!("missing {BEGIN}");
    };
    let body = &pem[start + BEGIN.len()..];
    let end = body.find(END).with_context(|| format!("missing {END}"))?;
    let base64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .context("certificate body is not valid base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_decodes_certificate_body() -> Result<()> {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificate_to_der(pem)?, vec![0, 1, 2, 3, 4]);
        Ok(())
    }

    #[test]
    fn pem_without_certificate_is_rejected() {
        assert!(pem_certificate_to_der("-----BEGIN PRIVATE KEY-----\nAA==\n").is_err());
    }

    #[test]
    fn sam_line_rejects_colon_in_user() {
        assert!(sam_line("a:b", "pw").is_err());
    }
}

//! Checks that no log line carries a password, at TRACE level and including IronRDP's logs.
//!
//! This is its own test binary because it installs a global log subscriber: a thread-local
//! one misses events when other tests in the same process register the same callsites.

// This binary uses only part of the shared helpers.
#[allow(dead_code)]
mod support;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use rdp_proxy_rdp::{ConnectErrorKind, SecurityMode};
use support::{Desktop, ShadowAuth, ShadowServer};

const USER: &str = "alice";
const PASSWORD: &str = "Pw-7f3a9c!secret";

/// Collects formatted log lines so the test can search them.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nla_logons_never_log_password() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");

    let desktop = Desktop::start(800, 600);
    let server = ShadowServer::start(
        &desktop,
        ShadowAuth::NlaOnly {
            user: USER.to_owned(),
            password: PASSWORD.to_owned(),
        },
    );

    let wrong_password = "Wrong-pw-93k2!";
    let error = rdp_proxy_rdp::connect(&server.config(SecurityMode::Nla, USER, wrong_password))
        .await
        .expect_err("a wrong password is rejected");
    assert_eq!(error.kind(), ConnectErrorKind::LogonFailed, "{error}");

    // A successful logon runs every step, so it logs the most.
    let connection = rdp_proxy_rdp::connect(&server.config(SecurityMode::Nla, USER, PASSWORD))
        .await
        .expect("the right password is accepted");
    drop(connection);

    let text = logs.text();
    assert!(text.contains("Connected to RDP target"), "logs were captured");
    assert!(text.contains("CredSSP"), "IronRDP's CredSSP logs were captured");
    assert!(!text.contains(wrong_password), "a log line contains the wrong password");
    assert!(!text.contains(PASSWORD), "a log line contains the password");
}

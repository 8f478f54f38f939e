//! The `connecting` phase: load the target, open the RDP connection, record the outcome.
//! A terminate that arrives meanwhile cancels the attempt.

use std::time::Duration;

use rdp_proxy_core::SessionState;
use rdp_proxy_core::session::EventKind;
use rdp_proxy_rdp::{ConnectConfig, ConnectErrorKind, Connection, Secret, SecurityMode};
use rdp_proxy_store::{SessionRecord, Transition};
use tokio::sync::mpsc;

use super::{AttachError, Command, CommandError};
use crate::Shared;
use crate::api::TargetSpec;

/// Returns the connected session, or `None` after recording why it failed or was terminated.
pub(super) async fn connect_phase(
    shared: &Shared,
    record: SessionRecord,
    target: &TargetSpec,
    commands: &mut mpsc::Receiver<Command>,
) -> Option<(SessionRecord, Connection)> {
    let attempt = connect_target(shared, &record, target);
    tokio::pin!(attempt);
    let outcome = loop {
        tokio::select! {
            outcome = &mut attempt => break outcome,
            command = commands.recv() => match command {
                Some(Command::Terminate { actor, reply }) => {
                    let change = Transition::new(SessionState::Terminated, EventKind::Terminated)
                        .actor(actor.user_id)
                        .reason(format!("{} (while connecting)", actor.reason));
                    let result = shared.record(record.org, record.id, change).await.map(drop)
                        .map_err(|error| CommandError::Store(error.to_string()));
                    let _ = reply.send(result);
                    return None;
                }
                Some(Command::EndedElsewhere { .. }) | None => return None,
                Some(Command::Attach { reply, .. }) => {
                    let _ = reply.send(Err(AttachError::NotAttachable(SessionState::Connecting)));
                }
                Some(Command::Detach { reply, .. }) => {
                    let _ = reply.send(Err(CommandError::NotHeld(SessionState::Connecting)));
                }
                Some(Command::ViewerGone { .. } | Command::Input { .. } | Command::Resize { .. }) => {}
            },
        }
    };
    match outcome {
        Ok(connection) => {
            let (width, height) = connection.size();
            let mut change = Transition::new(SessionState::Detached, EventKind::Connected)
                .reason(format!("connected at {width}x{height}; no viewer attached"));
            change.size = Some((width, height));
            match shared.record(record.org, record.id, change).await {
                Ok(record) => {
                    tracing::info!(width, height, "Session connected");
                    Some((record, connection))
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Connected, but the session can no longer be held; disconnecting");
                    None
                }
            }
        }
        Err(reason) => {
            tracing::info!(reason = %reason, "Session failed to connect");
            let change = Transition::new(SessionState::Failed, EventKind::Failed).reason(reason);
            if let Err(error) = shared.record(record.org, record.id, change).await {
                tracing::warn!(error = %error, "Could not record the failed connect");
            }
            None
        }
    }
}

/// Opens the RDP connection; the error is a sentence for the session history.
async fn connect_target(shared: &Shared, record: &SessionRecord, target: &TargetSpec) -> Result<Connection, String> {
    let security = match target.security.as_str() {
        "tls" => SecurityMode::Tls,
        "nla" => SecurityMode::Nla,
        _ => SecurityMode::Auto,
    };
    let cert_sha256 = target
        .cert_sha256
        .as_deref()
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    let config = ConnectConfig {
        host: target.host.clone(),
        port: target.port,
        username: target.username.clone(),
        password: Secret::new(target.password.clone()),
        domain: target.domain.clone(),
        security,
        width: record.width,
        height: record.height,
        connect_timeout: shared.settings.get().connect_timeout,
        cert_sha256,
    };
    let started = std::time::Instant::now();
    let result = rdp_proxy_rdp::connect(&config).await;
    let elapsed = started.elapsed();
    result
        .inspect(|_| tracing::info!(elapsed_ms = millis(elapsed), "RDP connection established"))
        .map_err(|error| describe_failure(error.kind(), &error.to_string()))
}

fn describe_failure(kind: ConnectErrorKind, detail: &str) -> String {
    let summary = match kind {
        ConnectErrorKind::Unreachable => "target unreachable",
        ConnectErrorKind::TimedOut => "connection to the target timed out",
        ConnectErrorKind::LogonFailed => "logon failed: the target rejected the user name or password",
        ConnectErrorKind::SecurityMismatch => {
            "security mismatch: the target requires another security mode (TLS or NLA)"
        }
        ConnectErrorKind::CertificateMismatch => "the target's TLS certificate does not match the pinned fingerprint",
        ConnectErrorKind::Protocol => "RDP protocol error",
    };
    format!("{summary} ({detail})")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

//! Connection failures and session end reasons, worded for operators.
//!
//! IronRDP reports failures with terse context strings ("read frame by hint", "custom
//! error"). The helpers here walk an error's source chain, so callers can classify it and
//! print it in one line.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// The kind of failure that ended a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectErrorKind {
    /// The host name did not resolve, or nothing accepted the TCP connection.
    Unreachable,
    /// The connection sequence did not finish within `connect_timeout`.
    TimedOut,
    /// The server rejected the credentials.
    LogonFailed,
    /// The server requires a security protocol the configuration disabled: NLA when only
    /// TLS is allowed, or plain TLS when only NLA is allowed.
    SecurityMismatch,
    /// The server's TLS certificate does not match the pinned SHA-256 fingerprint.
    CertificateMismatch,
    /// Any other failure of the RDP, TLS or CredSSP exchange.
    Protocol,
}

/// A failed [`crate::connect`]. `Display` names the target, the step that failed and the
/// cause, and never the password.
#[derive(Debug, Clone)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    message: String,
}

impl ConnectError {
    pub(crate) fn new(kind: ConnectErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConnectError {}

/// Why [`crate::Connection::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The caller cancelled the stop token.
    Stopped,
    /// The server ended the session, for the reason given in plain words.
    ServerDisconnected(String),
    /// The session failed on this side or on the wire.
    Error(String),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Stopped => f.write_str("stopped by the proxy"),
            EndReason::ServerDisconnected(reason) => write!(f, "server disconnected: {reason}"),
            EndReason::Error(reason) => write!(f, "session failed: {reason}"),
        }
    }
}

/// Formats an error and all of its sources as one line, outermost first.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some wrappers repeat their source's message, so print it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Returns the first `io::Error` in the chain of `error`, including `error` itself.
pub(crate) fn find_io_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(candidate) = current {
        if let Some(io_error) = candidate.downcast_ref::<io::Error>() {
            return Some(io_error);
        }
        current = candidate.source();
    }
    None
}

/// Returns whether the chain of `error` shows that the peer closed or reset the connection.
pub(crate) fn is_connection_closed(error: &(dyn StdError + 'static)) -> bool {
    find_io_error(error).is_some_and(|io_error| {
        matches!(
            io_error.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("read frame")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_joins_sources() {
        let error = Wrapper(io::Error::new(io::ErrorKind::UnexpectedEof, "not enough bytes"));
        assert_eq!(error_chain(&error), "read frame: not enough bytes");
    }

    #[test]
    fn closed_connection_is_found_in_chain() {
        let error = Wrapper(io::Error::new(io::ErrorKind::UnexpectedEof, "not enough bytes"));
        assert!(is_connection_closed(&error));
        let other = Wrapper(io::Error::other("bad data"));
        assert!(!is_connection_closed(&other));
    }

    #[test]
    fn end_reason_display() {
        assert_eq!(EndReason::Stopped.to_string(), "stopped by the proxy");
        assert_eq!(
            EndReason::ServerDisconnected("user logged off".to_owned()).to_string(),
            "server disconnected: user logged off"
        );
    }
}

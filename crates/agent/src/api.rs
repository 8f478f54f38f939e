//! Client of the control plane's node API (`/node/v1/...`) and the classification of its
//! failures.

use std::error::Error as StdError;

use rdp_proxy_core::node::wire::{
    IssuedCertificate, JoinRequest, JoinResponse, NodeApiError, NodeInstructions, NodeReport, RenewRequest,
};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Error code the control plane sends with HTTP 403 when the node's certificate is revoked.
pub const NODE_REVOKED: &str = "node_revoked";
/// Error code of the node API when the presented certificate itself was revoked.
pub const CERTIFICATE_REVOKED: &str = "certificate_revoked";

/// A failed node API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The control plane responded 4xx with an error body.
    #[error("{code}: {message} (HTTP {status})")]
    Rejected {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The TLS handshake failed because the control plane rejected the node's certificate as
    /// revoked (TLS alert `certificate_revoked`).
    #[error("the control plane rejected the node certificate as revoked: {0}")]
    CertificateRevoked(String),
    /// The TLS handshake failed for another reason, such as an untrusted server certificate.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The control plane could not be reached, timed out, responded 5xx or sent an unreadable
    /// response.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// Returns whether the control plane has revoked this node, by HTTP status or by TLS alert.
    pub fn is_revocation(&self) -> bool {
        match self {
            Self::CertificateRevoked(_) => true,
            Self::Rejected { status, code, .. } => {
                *status == StatusCode::FORBIDDEN && (code == NODE_REVOKED || code == CERTIFICATE_REVOKED)
            }
            Self::Tls(_) | Self::Unavailable(_) => false,
        }
    }
}

/// The node API at one control-plane URL, called through one HTTP client. Connect and request
/// timeouts are those of the client (`rdp_proxy_pki::http_client`).
#[derive(Debug, Clone)]
pub struct NodeApi {
    base: Url,
    client: reqwest::Client,
}

impl NodeApi {
    pub fn new(base: Url, client: reqwest::Client) -> Self {
        Self { base, client }
    }

    /// `POST /node/v1/join`, made with a client that trusts only the pinned CA.
    pub async fn join(&self, request: &JoinRequest) -> Result<JoinResponse, ApiError> {
        self.post("join", request).await
    }

    /// `POST /node/v1/report`, with the node's client certificate.
    pub async fn report(&self, report: &NodeReport) -> Result<NodeInstructions, ApiError> {
        self.post("report", report).await
    }

    /// `POST /node/v1/renew`, with the node's current client certificate.
    pub async fn renew(&self, request: &RenewRequest) -> Result<IssuedCertificate, ApiError> {
        self.post("renew", request).await
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(&self, endpoint: &str, body: &Req) -> Result<Resp, ApiError> {
        let url = endpoint_url(&self.base, endpoint);
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|error| classify_transport(&error))?;
        let status = response.status();
        if status.is_success() {
            return response.json::<Resp>().await.map_err(|error| {
                ApiError::Unavailable(format!("unreadable response to {endpoint}: {}", chain(&error)))
            });
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<NodeApiError>(&text).ok();
        if status.is_client_error() {
            let (code, message) = match body {
                Some(body) => (body.code, body.message),
                None => ("unknown".to_owned(), truncate(&text)),
            };
            return Err(ApiError::Rejected { status, code, message });
        }
        let detail = body.map_or_else(|| truncate(&text), |body| format!("{}: {}", body.code, body.message));
        Err(ApiError::Unavailable(format!(
            "HTTP {status} from {endpoint}: {detail}"
        )))
    }
}

/// `{base}/node/v1/{endpoint}`, keeping any path prefix of `base`.
pub fn endpoint_url(base: &Url, endpoint: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/node/v1/{endpoint}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// Parses the control plane's node API URL, which must be `https://`.
pub fn parse_control_url(raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).map_err(|error| anyhow::anyhow!("--control-url {raw:?} is invalid: {error}"))?;
    anyhow::ensure!(
        url.scheme() == "https",
        "--control-url {raw:?} must start with https://: the node API is served only over TLS"
    );
    anyhow::ensure!(url.host().is_some(), "--control-url {raw:?} has no host");
    anyhow::ensure!(
        url.query().is_none() && url.fragment().is_none(),
        "--control-url {raw:?} must not have a query or fragment"
    );
    Ok(url)
}

/// Classifies a request that got no HTTP response as a TLS failure or an unreachable control
/// plane.
fn classify_transport(error: &reqwest::Error) -> ApiError {
    let detail = chain(error);
    match find_tls_error(error) {
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked)) => {
            ApiError::CertificateRevoked(detail)
        }
        Some(_) => ApiError::Tls(detail),
        None => ApiError::Unavailable(detail),
    }
}

/// Finds a rustls error among the causes of `error`.
fn find_tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = next_cause(error);
    }
    None
}

/// Returns the error that caused `error`. For an `io::Error` that wraps another error this is
/// the wrapped error itself, because `io::Error::source` skips it and returns the wrapped
/// error's own source. TLS failures arrive as a rustls error inside one or two `io::Error`s.
fn next_cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        Some(wrapped) => Some(wrapped),
        None => error.source(),
    }
}

/// Formats an error with all its causes, separated by `: `, leaving out a cause whose text
/// the previous one already ends with.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = next_cause(error);
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = next_cause(cause);
    }
    text
}

/// Shortens an unexpected error body for a log line.
fn truncate(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let text = text.trim();
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn endpoint_urls() {
        let base = Url::parse("https://127.0.0.1:8443").expect("url");
        assert_eq!(
            endpoint_url(&base, "join").as_str(),
            "https://127.0.0.1:8443/node/v1/join"
        );
        let prefixed = Url::parse("https://127.0.0.1:8443/cluster/").expect("url");
        assert_eq!(
            endpoint_url(&prefixed, "report").as_str(),
            "https://127.0.0.1:8443/cluster/node/v1/report"
        );
    }

    #[test]
    fn control_url_checks() {
        assert!(parse_control_url("https://127.0.0.1:8443").is_ok());
        let plain = parse_control_url("http://127.0.0.1:8443").expect_err("plain HTTP");
        assert!(plain.to_string().contains("https://"), "{plain}");
        assert!(parse_control_url("127.0.0.1:8443").is_err());
        assert!(parse_control_url("https://127.0.0.1:8443/?x=1").is_err());
    }

    #[test]
    fn revocation_by_status_and_code() {
        let revoked = ApiError::Rejected {
            status: StatusCode::FORBIDDEN,
            code: NODE_REVOKED.into(),
            message: "node revoked".into(),
        };
        assert!(revoked.is_revocation());
        let other = ApiError::Rejected {
            status: StatusCode::FORBIDDEN,
            code: "org_mismatch".into(),
            message: "no".into(),
        };
        assert!(!other.is_revocation());
        assert!(ApiError::CertificateRevoked("alert".into()).is_revocation());
        assert!(!ApiError::Unavailable("refused".into()).is_revocation());
    }

    /// An error whose source is `inner`, like the layers hyper and reqwest put around I/O errors.
    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Outer {
        #[source]
        inner: io::Error,
    }

    #[test]
    fn tls_alert_found_inside_io_errors() {
        let alert = || rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked);
        let once = Outer {
            inner: io::Error::new(io::ErrorKind::InvalidData, alert()),
        };
        // hyper-util wraps the connector's io::Error in another one.
        let twice = Outer {
            inner: io::Error::other(io::Error::new(io::ErrorKind::InvalidData, alert())),
        };
        for error in [once, twice] {
            let found = find_tls_error(&error);
            assert!(
                matches!(
                    found,
                    Some(rustls::Error::AlertReceived(
                        rustls::AlertDescription::CertificateRevoked
                    ))
                ),
                "{error:?}"
            );
        }
        let plain = Outer {
            inner: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(find_tls_error(&plain).is_none());
    }

    #[test]
    fn error_chain_lists_causes() {
        let error = Outer {
            inner: io::Error::other("connection refused"),
        };
        assert_eq!(chain(&error), "request failed: connection refused");
    }

    #[test]
    fn long_bodies_are_truncated() {
        let long = "x".repeat(500);
        let short = truncate(&long);
        assert_eq!(short.chars().count(), 201);
        assert_eq!(truncate(" short \n"), "short");
    }
}

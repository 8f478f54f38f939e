//! Prometheus metrics of the control plane, every series labelled with its organisation. Served
//! at `GET /metrics` to callers presenting the cluster secret as a bearer token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::AppState;

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) logins: IntCounterVec,
    pub(crate) denials: IntCounterVec,
    pub(crate) sessions_requested: IntCounterVec,
    pub(crate) attach_tokens: IntCounterVec,
    pub(crate) decision_seconds: HistogramVec,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new_custom(Some("rdp_proxy_control".into()), None).unwrap_or_default();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            let _ = registry.register(Box::new(metric.clone()));
            metric
        };
        let logins = counter(
            "logins_total",
            "Login attempts of known users, by organisation and result",
            &["org_id", "result"],
        );
        let denials = counter(
            "denials_total",
            "Requests the policies denied, by organisation and action",
            &["org_id", "action"],
        );
        let sessions_requested = counter(
            "sessions_requested_total",
            "Desktops opened, by organisation",
            &["org_id"],
        );
        let attach_tokens = counter(
            "attach_tokens_total",
            "Attach tokens issued, by organisation and mode",
            &["org_id", "mode"],
        );
        let decision_seconds = HistogramVec::new(
            HistogramOpts::new(
                "authorization_seconds",
                "Time to load the policies and decide, by organisation",
            )
            .buckets(vec![0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05]),
            &["org_id"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(decision_seconds.clone()));
        Self {
            registry,
            logins,
            denials,
            sessions_requested,
            attach_tokens,
            decision_seconds,
        }
    }

    fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// `GET /metrics`: the text exposition, for a scraper holding the cluster secret.
/// Compares the request's `Authorization: Bearer` value with `expected` in constant time.
pub(crate) fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = expected.as_bytes();
    presented.len() == expected.len() && presented.bytes().zip(expected).fold(0_u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub(crate) async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !bearer_matches(&headers, &state.config.cluster_secret) {
        return crate::ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "metrics need 'Authorization: Bearer <cluster secret>'",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

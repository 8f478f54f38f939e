//! Prometheus metrics of the worker, every series labelled with its organisation. Served on the
//! internal API (`GET /internal/v1/metrics`, cluster secret required).

use std::collections::BTreeMap;

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::registry;

pub(crate) struct Metrics {
    registry: Registry,
    sessions: IntGaugeVec,
    viewers: IntGaugeVec,
    attaches: IntCounterVec,
    refusals: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new_custom(Some("rdp_proxy_worker".into()), None).unwrap_or_default();
        let sessions = IntGaugeVec::new(
            Opts::new("sessions", "Sessions this worker holds, by organisation and state"),
            &["org_id", "state"],
        )
        .expect("valid metric");
        let viewers = IntGaugeVec::new(
            Opts::new("viewers", "Viewers attached to this worker's sessions, by organisation"),
            &["org_id"],
        )
        .expect("valid metric");
        let attaches = IntCounterVec::new(
            Opts::new("viewer_attaches_total", "Viewers attached, by organisation and mode"),
            &["org_id", "mode"],
        )
        .expect("valid metric");
        let refusals = IntCounterVec::new(
            Opts::new(
                "viewer_refusals_total",
                "Viewers refused, by organisation and reason code",
            ),
            &["org_id", "code"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(sessions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(viewers.clone()),
            Box::new(attaches.clone()),
            Box::new(refusals.clone()),
        ] {
            let _ = registry.register(collector);
        }
        Self {
            registry,
            sessions,
            viewers,
            attaches,
            refusals,
        }
    }

    pub(crate) fn attached(&self, org: &str, mode: &str) {
        self.attaches.with_label_values(&[org, mode]).inc();
    }

    /// `org` is "unknown" when the viewer was refused before its session was found.
    pub(crate) fn refused(&self, org: &str, code: &str) {
        self.refusals.with_label_values(&[org, code]).inc();
    }

    /// Renders the text exposition, with the session and viewer gauges taken from `held` now.
    pub(crate) fn render(&self, held: &[(rdp_proxy_core::SessionId, registry::Handle)]) -> String {
        self.sessions.reset();
        self.viewers.reset();
        let mut viewers: BTreeMap<String, i64> = BTreeMap::new();
        for (_, handle) in held {
            let org = handle.org.to_string();
            let state = handle.state.borrow().to_string();
            self.sessions.with_label_values(&[org.as_str(), state.as_str()]).inc();
            *viewers.entry(org).or_default() += i64::try_from(*handle.viewers.borrow()).unwrap_or(i64::MAX);
        }
        for (org, count) in viewers {
            self.viewers.with_label_values(&[org.as_str()]).set(count);
        }
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

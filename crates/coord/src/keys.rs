//! Redis key layout. Tenant data is prefixed by organisation; worker keys are cluster-wide.

use rdp_proxy_core::{NodeId, OrgId, SessionId, WorkerId};

const PREFIX: &str = "rdpp";

pub(crate) fn worker(worker: WorkerId) -> String {
    format!("{PREFIX}:worker:{worker}")
}

pub(crate) fn worker_pattern() -> String {
    format!("{PREFIX}:worker:*")
}

pub(crate) fn node(node: NodeId) -> String {
    format!("{PREFIX}:node:{node}")
}

pub(crate) fn route(org: OrgId, session: SessionId) -> String {
    format!("{PREFIX}:org:{org}:session:{session}:route")
}

pub(crate) fn control(org: OrgId, session: SessionId) -> String {
    format!("{PREFIX}:org:{org}:session:{session}:control")
}

pub(crate) fn attach_token(org: OrgId, token_hash: &str) -> String {
    format!("{PREFIX}:org:{org}:attach:{token_hash}")
}

pub(crate) fn login_failures(name_digest: &str) -> String {
    format!("{PREFIX}:login-failures:{name_digest}")
}

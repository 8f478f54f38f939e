//! The organisation's policy document: read, validate, save with optimistic concurrency.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::{Action, DEFAULT_POLICIES, PolicyErrors, PolicySet};

use crate::auth::Authenticated;
use crate::authz::{self};
use crate::extract::Json;
use crate::views::{DefaultPolicyView, PolicyView, ProblemView, SavePolicy, ValidatePolicy, ValidationView};
use crate::{ApiError, AppState};

/// Largest policy document accepted.
const MAX_POLICY_BYTES: usize = 256 * 1024;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/policy", get(get_policy).put(save_policy))
        .route("/api/v1/policy/validate", post(validate_policy))
        .route("/api/v1/policy/default", get(default_policy))
}

fn problems(errors: &PolicyErrors) -> Vec<ProblemView> {
    errors
        .problems
        .iter()
        .map(|problem| ProblemView {
            line: problem.line,
            column: problem.column,
            message: problem.message.clone(),
        })
        .collect()
}

fn check_size(text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(ApiError::bad_request(
            "policy_too_large",
            "policy text is larger than 256 KiB",
        ));
    }
    Ok(())
}

/// Returns the organisation's policy, or the default one (version 0) when none was saved.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy", security(("bearer" = [])),
    responses((status = 200, body = PolicyView), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<PolicyView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManagePolicies).await?;
    let stored = state.store.org_tx(caller.org).await?.policy().await?;
    Ok(Json(match stored {
        Some(record) => PolicyView {
            text: record.text,
            version: record.version,
            updated_at: record.updated_at,
            updated_by: record.updated_by_name,
        },
        None => PolicyView {
            text: DEFAULT_POLICIES.to_owned(),
            version: 0,
            updated_at: None,
            updated_by: None,
        },
    }))
}

/// Replaces the policy. The text is parsed and validated against the schema first; on any
/// problem nothing is saved and the answer lists each problem with its line and column. A save
/// based on an older version than the stored one answers 409.
#[utoipa::path(put, path = "/api/v1/policy", tag = "policy", security(("bearer" = [])), request_body = SavePolicy,
    responses((status = 200, body = PolicyView), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn save_policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(input): Json<SavePolicy>,
) -> Result<Response, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManagePolicies).await?;
    check_size(&input.text)?;
    if let Err(errors) = PolicySet::compile(&input.text) {
        let entry = caller
            .audit("policy.update", "policy", Outcome::Failed)
            .reason(format!("invalid policy: {errors}"));
        authz::audit_ok(&state, &caller, entry).await;
        let body = serde_json::json!({"error": {
            "code": "invalid_policy",
            "message": format!("the policy was not saved: {errors}"),
            "problems": problems(&errors),
        }});
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response());
    }
    let by = caller.user.map(|user| (user, caller.name()));
    let mut tx = state.store.org_tx(caller.org).await?;
    let record = tx.save_policy(&input.text, input.version, by).await?;
    tx.audit(
        &caller
            .audit("policy.update", "policy", Outcome::Ok)
            .details(serde_json::json!({"version": record.version, "sha256": hex::encode(crate::auth::sha256(input.text.as_bytes()))})),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(org.id = %caller.org, version = record.version, "Policy saved");
    Ok(axum::Json(PolicyView {
        text: record.text,
        version: record.version,
        updated_at: record.updated_at,
        updated_by: record.updated_by_name,
    })
    .into_response())
}

/// Checks policy text without saving it.
#[utoipa::path(post, path = "/api/v1/policy/validate", tag = "policy", security(("bearer" = [])), request_body = ValidatePolicy,
    responses((status = 200, body = ValidationView), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn validate_policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(input): Json<ValidatePolicy>,
) -> Result<Json<ValidationView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManagePolicies).await?;
    check_size(&input.text)?;
    Ok(Json(match PolicySet::compile(&input.text) {
        Ok(_) => ValidationView {
            valid: true,
            problems: Vec::new(),
        },
        Err(errors) => ValidationView {
            valid: false,
            problems: problems(&errors),
        },
    }))
}

/// The default policy every organisation starts with.
#[utoipa::path(get, path = "/api/v1/policy/default", tag = "policy", security(("bearer" = [])),
    responses((status = 200, body = DefaultPolicyView)))]
pub(crate) async fn default_policy(Authenticated(_caller): Authenticated) -> Json<DefaultPolicyView> {
    Json(DefaultPolicyView {
        text: DEFAULT_POLICIES.to_owned(),
    })
}

//! Organisations end to end: tokens that expire, are tampered with, replayed or revoked; API
//! keys; members trying admin actions; Unicode names; policy validation, conflicts and their
//! effect on who may open what; revoking a member while they hold a session; observers; and
//! the idle-detach limit of a policy.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use rdp_proxy_e2e::stack::TOKEN_SIGNING_KEY;
use rdp_proxy_e2e::viewer::{self, Hello};
use rdp_proxy_e2e::{Api, Stack};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const OWNER: (&str, &str) = ("olga", "olga-owner-pass");
const AUDITOR: (&str, &str) = ("aude", "aude-auditor-pw");

async fn stack() -> Result<Stack> {
    tokio::task::spawn_blocking(|| {
        let stack = start_stack()?;
        stack.add_user(OWNER.0, OWNER.1, "owner")?;
        stack.add_user(AUDITOR.0, AUDITOR.1, "auditor")?;
        Ok(stack)
    })
    .await?
}

async fn stack_and_desktop() -> Result<(Stack, Desktop)> {
    let stack = stack().await?;
    let desktop = tokio::task::spawn_blocking(Desktop::nla).await??;
    Ok((stack, desktop))
}

fn error_code(result: &(u16, Value)) -> (u16, String) {
    (
        result.0,
        result.1["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Decodes the claims of a signed token without checking the signature.
fn claims(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

/// Signs `claims` with the stack's own key, as the control plane would.
fn sign(claims: &Value, key_seed: &str) -> Result<String> {
    let key = rdp_proxy_secrets::SigningKey::from_seed_base64(key_seed)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.key_id());
    Ok(jsonwebtoken::encode(&header, claims, &key.encoding_key())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_expire_are_checked_and_can_be_revoked() -> Result<()> {
    let stack = stack().await?;
    let base = stack.base_url();
    let member = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    member.get("/api/v1/me").await?;

    // Expired: the same claims, signed by the right key, with a past expiry.
    let mut expired = claims(member.token())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 600);
    let expired = Api::with_token(&base, &sign(&expired, TOKEN_SIGNING_KEY)?);
    assert_eq!(
        error_code(&expired.raw("GET", "/api/v1/me", None).await?),
        (401, "token_expired".into())
    );

    // Tampered: the payload names another user, the signature is the original one.
    let mut parts: Vec<String> = member.token().split('.').map(str::to_owned).collect();
    let mut forged = claims(member.token())?;
    forged["sub"] = json!(uuid::Uuid::new_v4());
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = Api::with_token(&base, &parts.join("."));
    assert_eq!(
        error_code(&tampered.raw("GET", "/api/v1/me", None).await?),
        (401, "token_invalid".into())
    );

    // Signed by a key the control plane does not know.
    let (_, other_key) = rdp_proxy_secrets::SigningKey::generate();
    let foreign = Api::with_token(&base, &sign(&claims(member.token())?, &other_key)?);
    assert_eq!(
        error_code(&foreign.raw("GET", "/api/v1/me", None).await?),
        (401, "token_invalid".into())
    );

    // Refresh rotates; the spent refresh token presented again revokes the whole login.
    let first_refresh = member.login["refresh_token"]
        .as_str()
        .context("no refresh token")?
        .to_owned();
    let http = reqwest::Client::new();
    let refresh = |token: String| {
        let http = http.clone();
        let url = format!("{base}/api/v1/auth/refresh");
        async move {
            let response = http.post(url).json(&json!({ "refresh_token": token })).send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    let (status, rotated) = refresh(first_refresh.clone()).await?;
    assert_eq!(status, 200, "{rotated}");
    let rotated_api = Api::with_token(&base, rotated["access_token"].as_str().context("no token")?);
    rotated_api.get("/api/v1/me").await?;
    assert_ne!(rotated["refresh_token"], json!(first_refresh));
    let replay = refresh(first_refresh).await?;
    assert_eq!(
        (replay.0, replay.1["error"]["code"].clone()),
        (401, json!("token_revoked"))
    );
    assert_eq!(
        error_code(&rotated_api.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );
    assert_eq!(
        error_code(&member.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );
    let unknown = refresh(format!("rpr_{}_{}", uuid::Uuid::new_v4().simple(), "00".repeat(32))).await?;
    assert_eq!(unknown.0, 401);

    // Logout ends a login at once.
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    member.post("/api/v1/logout", json!({})).await.ok();
    assert_eq!(
        error_code(&member.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );

    // Changing the password ends the user's other logins and keeps this one.
    let first = Api::login(&base, OTHER_MEMBER.0, OTHER_MEMBER.1).await?;
    let second = Api::login(&base, OTHER_MEMBER.0, OTHER_MEMBER.1).await?;
    let wrong = second
        .raw(
            "POST",
            "/api/v1/me/password",
            Some(json!({"current_password": "nope", "new_password": "a-new-long-password"})),
        )
        .await?;
    assert_eq!(wrong.0, 403);
    let changed = second
        .raw(
            "POST",
            "/api/v1/me/password",
            Some(json!({"current_password": OTHER_MEMBER.1, "new_password": "a-new-long-password"})),
        )
        .await?;
    assert_eq!(changed.0, 204, "{}", changed.1);
    second.get("/api/v1/me").await?;
    assert_eq!(
        error_code(&first.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );
    assert!(Api::login(&base, OTHER_MEMBER.0, OTHER_MEMBER.1).await.is_err());
    Api::login(&base, OTHER_MEMBER.0, "a-new-long-password").await?;

    // API keys: usable for automation, never above the creator's role, refused once revoked.
    let owner = Api::login(&base, OWNER.0, OWNER.1).await?;
    let key = owner
        .post("/api/v1/api-keys", json!({ "name": "ci-bot", "role": "operator" }))
        .await?;
    let secret = key["key"].as_str().context("key shown once")?.to_owned();
    let listed = owner.get("/api/v1/api-keys").await?;
    assert!(
        !listed.to_string().contains(&secret),
        "the key is shown only when created"
    );
    let bot = Api::with_token(&base, &secret);
    let me = bot.get("/api/v1/me").await?;
    assert_eq!(me["kind"], "api_key");
    bot.get("/api/v1/sessions").await?;
    let cannot_connect = bot
        .raw(
            "POST",
            "/api/v1/sessions",
            Some(json!({"target_id": uuid::Uuid::new_v4()})),
        )
        .await?;
    assert_eq!(cannot_connect.0, 403, "{}", cannot_connect.1);
    let admin = Api::login(&base, ADMIN.0, ADMIN.1).await?;
    let too_high = admin
        .raw("POST", "/api/v1/api-keys", Some(json!({"name": "x", "role": "owner"})))
        .await?;
    assert_eq!(too_high.0, 403);
    owner
        .delete(&format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap_or_default()))
        .await?;
    assert_eq!(
        error_code(&bot.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );
    let logs = stack.logs();
    assert!(!logs.contains(&secret), "an API key appeared in a log");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_policies_and_names() -> Result<()> {
    let stack = stack().await?;
    let base = stack.base_url();
    let owner = Api::login(&base, OWNER.0, OWNER.1).await?;
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let admin = Api::login(&base, ADMIN.0, ADMIN.1).await?;

    // A member trying an admin action gets 403, and the denial is audited.
    let denied = member
        .raw(
            "POST",
            "/api/v1/credentials",
            Some(json!({"name": "x", "username": "u", "password": "p"})),
        )
        .await?;
    assert_eq!(error_code(&denied), (403, "forbidden".into()));
    for path in ["/api/v1/members", "/api/v1/policy", "/api/v1/audit", "/api/v1/api-keys"] {
        assert_eq!(member.raw("GET", path, None).await?.0, 403, "{path}");
    }
    let auditor = Api::login(&base, AUDITOR.0, AUDITOR.1).await?;
    let audit = auditor.get("/api/v1/audit?result=denied").await?;
    let member_id = member.login["user"]["id"].as_str().unwrap_or_default().to_owned();
    assert!(
        audit["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|record| record["actor_id"] == json!(member_id) && record["action"] == "org.manage_targets"),
        "the member's denial is in the audit trail: {audit}"
    );

    // Unicode names: a decomposed "ë" is stored composed and logs in either way.
    let decomposed = "zoe\u{308}-пётр-山田";
    let composed = "zo\u{eb}-пётр-山田";
    let added = owner
        .post(
            "/api/v1/members",
            json!({"username": decomposed, "role": "member", "password": "unicode-password-1"}),
        )
        .await?;
    assert_eq!(added["name"], composed);
    Api::login(&base, composed, "unicode-password-1").await?;
    Api::login(&base, decomposed, "unicode-password-1").await?;
    let credential = owner
        .post(
            "/api/v1/credentials",
            json!({"name": "Caf\u{65}\u{301} 東京", "username": "desk", "password": "Known-Credential-9"}),
        )
        .await?;
    assert_eq!(credential["name"], "Caf\u{e9} 東京");
    assert!(!credential.to_string().contains("Known-Credential-9"));
    let prod = owner
        .post(
            "/api/v1/targets",
            json!({"name": "東京デスク", "host": "127.0.0.1", "port": 1, "security": "nla",
                   "labels": {"env": "prod"}, "credential_id": credential["id"]}),
        )
        .await?;
    assert_eq!(prod["name"], "東京デスク");
    let lab = owner
        .post(
            "/api/v1/targets",
            json!({"name": "lab", "host": "127.0.0.1", "port": 1, "labels": {"env": "lab"},
                   "credential_id": credential["id"]}),
        )
        .await?;

    // An existing user of another organisation is invited, not enrolled: nothing changes for
    // them until they accept.
    tokio::task::block_in_place(|| stack.add_user_in("elsewhere", "ivan", "ivan-password-12", "member"))?;
    let invited = owner
        .post("/api/v1/members", json!({"username": "ivan", "role": "operator"}))
        .await?;
    assert_eq!(invited["status"], "invited", "{invited}");
    let ivan = Api::login(&base, "ivan", "ivan-password-12").await?;
    let default_org = owner.org_id();
    let me = ivan.get("/api/v1/me").await?;
    assert_eq!(me["invitations"][0]["id"], json!(default_org), "{me}");
    assert!(
        !me["orgs"].to_string().contains(&default_org),
        "not a member before accepting"
    );
    assert_eq!(
        ivan.switch(&default_org).await.err().map(|error| error.status),
        Some(404)
    );
    let accepted = ivan
        .post(&format!("/api/v1/invitations/{default_org}/accept"), json!({}))
        .await?;
    assert!(accepted["orgs"].to_string().contains(&default_org), "{accepted}");
    let ivan_here = ivan.switch(&default_org).await?;
    assert_eq!(ivan_here.get("/api/v1/me").await?["org"]["role"], "operator");
    let again = ivan
        .raw(
            "POST",
            &format!("/api/v1/invitations/{default_org}/accept"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(again.0, 404, "an accepted invitation cannot be accepted twice");

    // Only an owner may touch the owner role, and the last owner stays.
    let owner_id = owner.login["user"]["id"].as_str().unwrap_or_default().to_owned();
    let promote = admin
        .raw(
            "PATCH",
            &format!("/api/v1/members/{member_id}"),
            Some(json!({"role": "owner"})),
        )
        .await?;
    assert_eq!(promote.0, 403, "{}", promote.1);
    let demote_self = owner
        .raw(
            "PATCH",
            &format!("/api/v1/members/{owner_id}"),
            Some(json!({"role": "admin"})),
        )
        .await?;
    assert_eq!(error_code(&demote_self), (409, "last_owner".into()));

    // Policy text that does not validate is refused with its line; the old policy stays.
    let current = owner.get("/api/v1/policy").await?;
    assert_eq!(current["version"], 0);
    let broken = "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"bad\")\npermit (principal, action == RdpProxy::Action::\"fly\", resource);\n";
    let refused = owner
        .raw("PUT", "/api/v1/policy", Some(json!({"text": broken, "version": 0})))
        .await?;
    assert_eq!(refused.0, 422, "{}", refused.1);
    let problems = refused.1["error"]["problems"].as_array().cloned().unwrap_or_default();
    assert!(problems.iter().any(|problem| problem["line"] == 5), "{problems:?}");
    let unparsable = owner
        .raw(
            "PUT",
            "/api/v1/policy",
            Some(json!({"text": "@id(\"x\")\npermit (principal, action resource);", "version": 0})),
        )
        .await?;
    assert_eq!(unparsable.0, 422);
    assert_eq!(unparsable.1["error"]["problems"][0]["line"], 2, "{}", unparsable.1);
    assert_eq!(
        owner.get("/api/v1/policy").await?["version"],
        0,
        "a refused policy changes nothing"
    );

    // A label rule: members may not open production desktops. Two admins save at once from
    // the same version; one wins, the other gets a conflict.
    let default_text = current["text"].as_str().context("policy text")?.to_owned();
    let restricted = format!(
        "{default_text}\n@id(\"no-prod-for-members\")\nforbid (principal, action == RdpProxy::Action::\"connect\", resource)\nwhen {{ principal.role == \"member\" && resource.labels.contains(\"env=prod\") }};\n"
    );
    let (first, second) = tokio::join!(
        owner.raw("PUT", "/api/v1/policy", Some(json!({"text": restricted, "version": 0}))),
        admin.raw("PUT", "/api/v1/policy", Some(json!({"text": restricted, "version": 0}))),
    );
    let mut statuses = [first?.0, second?.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let visible = member.get("/api/v1/targets").await?;
    let names: Vec<&str> = visible["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"lab"), "{names:?}");
    assert!(!names.contains(&"東京デスク"), "{names:?}");
    let blocked = member
        .raw("POST", "/api/v1/sessions", Some(json!({"target_id": prod["id"]})))
        .await?;
    assert_eq!(error_code(&blocked), (404, "not_found".into()));
    let allowed = member
        .raw("POST", "/api/v1/sessions", Some(json!({"target_id": lab["id"]})))
        .await?;
    assert!(allowed.0 == 201 || allowed.0 == 503, "{}", allowed.1);
    let all = owner.get("/api/v1/targets").await?;
    assert!(
        all.to_string().contains("東京デスク"),
        "those who manage targets see every target"
    );

    // A policy that forbids managing policies cannot lock the owners out: they can still fix it.
    let version = owner.get("/api/v1/policy").await?["version"].as_i64().unwrap_or(0);
    let lockout = format!(
        "{default_text}\n@id(\"nobody-edits\")\nforbid (principal, action == RdpProxy::Action::\"manage_policies\", resource);\n"
    );
    let saved = owner
        .put("/api/v1/policy", json!({"text": lockout, "version": version}))
        .await?;
    assert_eq!(
        admin.raw("GET", "/api/v1/policy", None).await?.0,
        403,
        "the policy binds admins"
    );
    let restored = owner
        .put(
            "/api/v1/policy",
            json!({"text": default_text, "version": saved["version"]}),
        )
        .await?;
    assert!(restored["version"].as_i64() > saved["version"].as_i64());

    // Look-alike names are refused, and user names do not depend on case.
    let hidden = owner
        .raw(
            "POST",
            "/api/v1/members",
            Some(json!({"username": "ali\u{200B}ce", "role": "member", "password": "hidden-space-pass"})),
        )
        .await?;
    assert_eq!(error_code(&hidden), (400, "invalid_name".into()));
    let shouting = owner
        .raw(
            "POST",
            "/api/v1/members",
            Some(json!({"username": MEMBER.0.to_uppercase(), "role": "member", "password": "another-password-1"})),
        )
        .await?;
    assert_eq!(shouting.0, 409, "{}", shouting.1);
    Api::login(&base, &MEMBER.0.to_uppercase(), MEMBER.1).await?;

    // An owner invitation can be withdrawn even while the organisation has a single owner.
    tokio::task::block_in_place(|| stack.add_user_in("elsewhere", "oskar", "oskar-password-1", "member"))?;
    let oskar = owner
        .post("/api/v1/members", json!({"username": "oskar", "role": "owner"}))
        .await?;
    owner
        .delete(&format!(
            "/api/v1/members/{}",
            oskar["user_id"].as_str().unwrap_or_default()
        ))
        .await?;

    // API keys made by a member stop working when that member is disabled.
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "admin-bot", "role": "member"}))
        .await?;
    let bot = Api::with_token(&base, key["key"].as_str().context("key")?);
    bot.get("/api/v1/me").await?;
    let admin_id = admin.login["user"]["id"].as_str().unwrap_or_default().to_owned();
    owner
        .patch(&format!("/api/v1/members/{admin_id}"), json!({"disabled": true}))
        .await?;
    assert_eq!(
        error_code(&bot.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );

    let misspelt = auditor.raw("GET", "/api/v1/audit?actor=someone", None).await?;
    assert_eq!(
        error_code(&misspelt).0,
        400,
        "an unknown filter is refused, not ignored"
    );

    let check = auditor.get("/api/v1/audit/verify").await?;
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["checked"].as_u64().unwrap_or(0) > 5);
    let offline = stack.admin(&["audit-verify", "--org", "default"])?;
    assert_eq!(offline["ok"], true, "{offline}");

    // Metrics carry the organisation and need the cluster secret.
    let http = reqwest::Client::new();
    let refused = http.get(format!("{base}/metrics")).send().await?;
    assert_eq!(refused.status().as_u16(), 401);
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(rdp_proxy_e2e::stack::CLUSTER_SECRET)
        .send()
        .await?
        .text()
        .await?;
    let org = owner.org_id();
    let has = |name: &str| {
        text.lines()
            .any(|line| line.starts_with(name) && line.contains(&format!("org_id=\"{org}\"")))
    };
    assert!(has("rdp_proxy_control_logins_total"), "{text}");
    assert!(has("rdp_proxy_control_denials_total"), "{text}");
    assert!(has("rdp_proxy_control_authorization_seconds"), "{text}");
    Ok(())
}

async fn attach(api: &Api, id: &str, mode: &str) -> Result<Box<viewer::Socket>> {
    let grant = api.attach(id, mode).await?;
    match viewer::connect(
        grant["ws_url"].as_str().context("no ws_url")?,
        grant["token"].as_str().context("no token")?,
    )
    .await?
    {
        Hello::Ready { socket, .. } => Ok(socket),
        Hello::Rejected { code, message, .. } => anyhow::bail!("attach rejected: {code}: {message}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_a_member_takes_their_control_away() -> Result<()> {
    let (stack, desktop) = stack_and_desktop().await?;
    let base = stack.base_url();
    let target = stack.add_target("desk", desktop.shadow.port(), "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let owner = Api::login(&base, OWNER.0, OWNER.1).await?;
    let session = member.create_session(&target).await?;
    let id = session["id"].as_str().context("no id")?.to_owned();
    member.wait_for_state(&id, "detached", LONG).await?;
    let mut controller = attach(&member, &id, "control").await?;
    member.wait_for_state(&id, "active", LONG).await?;

    // An observer watches without taking control; its input is dropped.
    let admin = Api::login(&base, ADMIN.0, ADMIN.1).await?;
    let mut observer = attach(&admin, &id, "observe").await?;
    let mut canvas = viewer::Canvas::new(1280, 800);
    viewer::read_batches(&mut observer, &mut canvas, 1).await?;
    viewer::send_json(
        &mut observer,
        json!({"type": "key", "scancode": 30, "extended": false, "down": true}),
    )
    .await?;
    let refusal = viewer::next_of_type(&mut observer, "error").await?;
    assert_eq!(refusal["code"], "not_in_control", "{refusal}");
    let still = member.session(&id).await?;
    assert_eq!(
        still["control"]["user"], MEMBER.0,
        "observing leaves control where it was"
    );
    assert_eq!(desktop.shadow.connections_accepted(), 1);

    // The worker's metrics count the organisation's sessions and viewers.
    let metrics = reqwest::Client::new()
        .get(format!("http://{}/internal/v1/metrics", stack.workers[0].addr))
        .header("x-rdp-proxy-cluster-secret", rdp_proxy_e2e::stack::CLUSTER_SECRET)
        .send()
        .await?
        .text()
        .await?;
    let org = member.org_id();
    assert!(
        metrics.lines().any(|line| line.starts_with("rdp_proxy_worker_sessions")
            && line.contains(&format!("org_id=\"{org}\""))
            && line.contains("state=\"active\"")),
        "{metrics}"
    );
    assert!(metrics.contains("rdp_proxy_worker_viewer_attaches_total"), "{metrics}");

    // Disabling the member ends their viewer and their login; the desktop keeps running.
    let member_id = member.login["user"]["id"].as_str().unwrap_or_default().to_owned();
    owner
        .patch(&format!("/api/v1/members/{member_id}"), json!({"disabled": true}))
        .await?;
    let code = tokio::time::timeout(LONG, viewer::next_close(&mut controller)).await?;
    assert_eq!(code, Some(4001), "the member's viewer is detached");
    assert_eq!(
        error_code(&member.raw("GET", "/api/v1/me", None).await?),
        (401, "token_revoked".into())
    );
    let detached = owner.wait_for_state(&id, "detached", LONG).await?;
    assert!(
        detached["reason"].as_str().unwrap_or_default().contains("disabled"),
        "{detached}"
    );
    assert_eq!(desktop.established_connections(), 1, "the desktop stays connected");
    let refused = Api::login(&base, MEMBER.0, MEMBER.1).await;
    assert!(refused.is_err(), "a disabled member cannot log in");

    // Enabled again, they reattach to the same desktop without a new RDP connection.
    owner
        .patch(&format!("/api/v1/members/{member_id}"), json!({"disabled": false}))
        .await?;
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let _again = attach(&member, &id, "control").await?;
    member.wait_for_state(&id, "active", LONG).await?;
    assert_eq!(desktop.shadow.connections_accepted(), 1);

    let logs = stack.logs();
    assert!(
        !logs.contains(DESKTOP_PASSWORD),
        "the target password appeared in a log"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_detach_limit_ends_a_detached_session() -> Result<()> {
    let (stack, desktop) = stack_and_desktop().await?;
    let base = stack.base_url();
    let target = stack.add_target("desk", desktop.shadow.port(), "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let owner = Api::login(&base, OWNER.0, OWNER.1).await?;
    let text = owner.get("/api/v1/policy/default").await?["text"]
        .as_str()
        .context("default text")?
        .replace("@idle_detach_minutes(\"480\")", "@idle_detach_minutes(\"1\")");
    owner.put("/api/v1/policy", json!({"text": text, "version": 0})).await?;
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let session = member.create_session(&target).await?;
    assert_eq!(session["idle_detach_secs"], 60, "{session}");
    let id = session["id"].as_str().context("no id")?.to_owned();
    member.wait_for_state(&id, "detached", LONG).await?;
    let ended = member
        .wait_for_state(&id, "terminated", Duration::from_secs(120))
        .await?;
    let reason = ended["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("idle-detach"), "{reason}");
    common::eventually("the RDP connection to close", LONG, || {
        desktop.established_connections() == 0
    })
    .await?;
    Ok(())
}

//! Bad input and faults against the running stack: wrong credentials, security mismatches,
//! unreachable and silent targets, replayed and foreign tokens, competing viewers, malformed
//! messages, a killed worker and Redis restarted empty.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use rdp_proxy_e2e::viewer::{self, Hello};
use rdp_proxy_e2e::{Api, Stack};
use rdp_proxy_testkit::ShadowMode;
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

async fn stack_and_desktop(mode: ShadowMode) -> Result<(Stack, Desktop)> {
    tokio::task::spawn_blocking(move || Ok((start_stack()?, Desktop::start(mode)?))).await?
}

/// Creates a session on `target` and waits until it leaves `connecting`.
async fn open(api: &Api, target: &str) -> Result<(String, serde_json::Value)> {
    let session = api.create_session(target).await?;
    let id = session["id"].as_str().context("no id")?.to_owned();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let current = api.session(&id).await?;
        if !matches!(current["state"].as_str(), Some("requested" | "connecting"))
            || std::time::Instant::now() > deadline
        {
            return Ok((id, current));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attach_raw(api: &Api, id: &str, mode: &str) -> Result<Hello> {
    let grant = api.attach(id, mode).await?;
    viewer::connect(
        grant["ws_url"].as_str().context("no ws_url")?,
        grant["token"].as_str().context("no token")?,
    )
    .await
}

fn ready(hello: Hello) -> Result<Box<viewer::Socket>> {
    match hello {
        Hello::Ready { socket, .. } => Ok(socket),
        Hello::Rejected { code, message, .. } => anyhow::bail!("attach rejected: {code}: {message}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_failures_are_recorded_with_reasons() -> Result<()> {
    let (stack, nla_desktop) = stack_and_desktop(ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD)).await?;
    let tls_desktop = tokio::task::spawn_blocking(|| Desktop::start(ShadowMode::NoAuthTls)).await??;
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_port = silent.local_addr()?.port();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let nla_port = nla_desktop.shadow.port();
    let cases = [
        ("wrong-password", nla_port, "nla", "Not-The-Password", "logon failed"),
        (
            "tls-for-nla-target",
            nla_port,
            "tls",
            DESKTOP_PASSWORD,
            "security mismatch",
        ),
        (
            "nla-for-tls-target",
            tls_desktop.shadow.port(),
            "nla",
            DESKTOP_PASSWORD,
            "security mismatch",
        ),
        ("unreachable", closed_port, "auto", DESKTOP_PASSWORD, "unreachable"),
        ("silent", silent_port, "auto", DESKTOP_PASSWORD, "timed out"),
    ];
    let member = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    for (name, port, security, password, expected) in cases {
        let target = stack.add_target(name, port, security, DESKTOP_USER, password)?;
        let (id, session) = open(&member, &target).await?;
        assert_eq!(session["state"], "failed", "{name}: {session}");
        let reason = session["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(expected),
            "{name}: reason {reason:?} should mention {expected:?}"
        );
        let events = member.events(&id).await?;
        assert_eq!(
            events.last().map(|event| event["kind"].clone()),
            Some(json!("failed")),
            "{name}"
        );
        let attach = member
            .attach(&id, "control")
            .await
            .expect_err("a failed session cannot be attached");
        assert_eq!(attach.status, 409, "{name}");
    }
    assert_eq!(
        nla_desktop.established_connections(),
        0,
        "failed attempts must not leave connections"
    );
    assert!(
        !stack.logs().contains(DESKTOP_PASSWORD),
        "the target password appeared in a log"
    );
    drop(silent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_viewers_and_messages_are_checked() -> Result<()> {
    let (stack, desktop) = stack_and_desktop(ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD)).await?;
    let target = stack.add_target("desk", desktop.shadow.port(), "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let base = stack.base_url();
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let other = Api::login(&base, OTHER_MEMBER.0, OTHER_MEMBER.1).await?;
    let admin = Api::login(&base, ADMIN.0, ADMIN.1).await?;
    let (id, session) = open(&member, &target).await?;
    assert_eq!(session["state"], "detached", "{session}");
    let (other_id, _) = open(&other, &target).await?;

    // Another member's session answers like a missing one; takeover needs the admin role.
    assert_eq!(other.session(&id).await.expect_err("hidden").status, 404);
    assert_eq!(other.attach(&id, "control").await.expect_err("hidden").status, 404);
    assert_eq!(other.attach(&id, "takeover").await.expect_err("hidden").status, 404);
    assert_eq!(other.terminate(&id, "no").await.expect_err("hidden").status, 404);

    // A token is single use: the replay is rejected.
    let grant = member.attach(&id, "control").await?;
    let (ws_url, token) = (
        grant["ws_url"].as_str().unwrap_or_default(),
        grant["token"].as_str().unwrap_or_default(),
    );
    let mut holder = ready(viewer::connect(ws_url, token).await?)?;
    let ready_state = viewer::next_of_type(&mut holder, "state").await?;
    assert_eq!(ready_state["state"], "active");
    match viewer::connect(ws_url, token).await? {
        Hello::Rejected { code, close_code, .. } => {
            assert_eq!(code, "invalid_token");
            assert_eq!(close_code, Some(4401));
        }
        Hello::Ready { .. } => panic!("a replayed token was accepted"),
    }

    // A token for another session is rejected on this session's endpoint.
    let foreign = other.attach(&other_id, "control").await?;
    let foreign_token = foreign["token"].as_str().unwrap_or_default();
    assert!(
        matches!(viewer::connect(ws_url, foreign_token).await?, Hello::Rejected { .. }),
        "foreign token accepted"
    );

    // A second viewer without takeover is refused by the API and by the worker, naming the holder.
    let refused = member.attach(&id, "control").await.expect_err("control is held");
    assert_eq!(refused.code, "control_held");
    assert!(refused.message.contains(MEMBER.0), "{}", refused.message);

    // Malformed and oversized messages get errors; the session survives them.
    viewer::send_json(&mut holder, json!({"type": "launch"})).await?;
    assert_eq!(viewer::next_of_type(&mut holder, "error").await?["code"], "bad_message");
    let oversized = json!({"type": "unicode", "ch": "x".repeat(5000), "down": true});
    viewer::send_json(&mut holder, oversized).await?;
    assert_eq!(viewer::next_of_type(&mut holder, "error").await?["code"], "bad_message");

    // Takeover: the holder is told who took control and its input is rejected from then on.
    let mut admin_viewer = ready(attach_raw(&admin, &id, "takeover").await?)?;
    let lost = viewer::next_of_type(&mut holder, "control_lost").await?;
    assert_eq!(lost["by"], ADMIN.0);
    viewer::send_json(
        &mut holder,
        json!({"type": "key", "scancode": 30, "extended": false, "down": true}),
    )
    .await?;
    assert_eq!(
        viewer::next_of_type(&mut holder, "error").await?["code"],
        "not_in_control"
    );
    viewer::send_json(&mut admin_viewer, json!({"type": "ping"})).await?;
    viewer::next_of_type(&mut admin_viewer, "pong").await?;

    // Eight malformed messages close the socket with 4400; the session stays held.
    for _ in 0..8 {
        viewer::send_json(&mut admin_viewer, json!({"type": "mouse", "x": -5, "y": 0})).await?;
    }
    assert_eq!(viewer::next_close(&mut admin_viewer).await, Some(4400));
    let after = member.wait_for_state(&id, "detached", LONG).await?;
    assert!(after["control"].is_null(), "{after}");
    assert_eq!(desktop.shadow.connections_accepted(), 2, "one connection per session");

    // An expired token (its Redis key gone) is rejected like a replay.
    let grant = member.attach(&id, "control").await?;
    let _ = stack.redis.url();
    flush_tokens(&stack)?;
    let expired = viewer::connect(
        grant["ws_url"].as_str().unwrap_or_default(),
        grant["token"].as_str().unwrap_or_default(),
    )
    .await?;
    assert!(
        matches!(
            expired,
            Hello::Rejected {
                close_code: Some(4401),
                ..
            }
        ),
        "{expired:?}"
    );
    drop(holder);
    Ok(())
}

/// Deletes every attach-token key, as their TTL would.
fn flush_tokens(stack: &Stack) -> Result<()> {
    let port = stack.redis.port().to_string();
    let keys = std::process::Command::new("redis-cli")
        .args(["-p", &port, "--scan", "--pattern", "rdpp:org:*:attach:*"])
        .output()?;
    for key in String::from_utf8_lossy(&keys.stdout).lines() {
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "DEL", key])
            .output()?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_worker_and_empty_redis() -> Result<()> {
    let (mut stack, desktop) = stack_and_desktop(ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD)).await?;
    let target = stack.add_target("desk", desktop.shadow.port(), "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let member = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    let (id, session) = open(&member, &target).await?;
    assert_eq!(session["state"], "detached");

    // Redis restarted empty: the worker re-asserts its heartbeat and routes, and attach works.
    tokio::task::block_in_place(|| stack.redis.restart_empty())?;
    let mut attached = None;
    for _ in 0..50 {
        match member.attach(&id, "control").await {
            Ok(grant) => {
                attached = Some(grant);
                break;
            }
            Err(failure) if failure.status == 503 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(failure) => return Err(failure.into()),
        }
    }
    let grant = attached.context("attach never worked again after Redis restarted")?;
    let socket = ready(
        viewer::connect(
            grant["ws_url"].as_str().unwrap_or_default(),
            grant["token"].as_str().unwrap_or_default(),
        )
        .await?,
    )?;
    assert_eq!(member.session(&id).await?["state"], "active");
    assert_eq!(
        desktop.shadow.connections_accepted(),
        1,
        "losing Redis must not reconnect the session"
    );
    drop(socket);
    member.wait_for_state(&id, "detached", LONG).await?;

    // A worker killed with SIGKILL while a viewer holds control: until the sweep marks the session
    // lost, attach says the worker is unavailable (retryable), not that control is held.
    let _viewer = ready(attach_raw(&member, &id, "control").await?)?;
    let worker = stack.workers.first_mut().context("no worker")?;
    worker.process.kill();
    let mut codes = Vec::new();
    for _ in 0..100 {
        match member.attach(&id, "control").await {
            Err(failure) if failure.code == "session_not_attachable" => break,
            Err(failure) => codes.push(failure.code),
            Ok(_) => codes.push("ok".to_owned()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        codes.iter().any(|code| code == "worker_unavailable"),
        "attach answers after the kill: {codes:?}"
    );
    let lost = member.wait_for_state(&id, "lost", LONG).await?;
    assert!(
        lost["reason"].as_str().unwrap_or_default().contains("heartbeat"),
        "{lost}"
    );
    let refused = member
        .attach(&id, "control")
        .await
        .expect_err("a lost session cannot be attached");
    assert_eq!(refused.code, "session_not_attachable");

    // A new worker takes new sessions; the lost one stays lost.
    tokio::task::block_in_place(|| stack.add_worker())?;
    let mut reopened = None;
    for _ in 0..50 {
        match member.create_session(&target).await {
            Ok(session) => {
                reopened = Some(session);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let reopened = reopened.context("no new session after the worker restart")?;
    let new_id = reopened["id"].as_str().unwrap_or_default();
    member.wait_for_state(new_id, "detached", LONG).await?;
    assert_eq!(member.session(&id).await?["state"], "lost");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_receives_the_current_screen() -> Result<()> {
    let (stack, desktop) = stack_and_desktop(ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD)).await?;
    let target = stack.add_target("desk", desktop.shadow.port(), "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let member = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    let session = member.create_session(&target).await?;
    let id = session["id"].as_str().context("no id")?.to_owned();
    // Attach waits for the connection and attaches at once, before the target's first update.
    let hello = attach_raw(&member, &id, "control").await?;
    let Hello::Ready { mut socket, ready } = hello else {
        anyhow::bail!("attach rejected: {hello:?}")
    };
    let width = ready["width"].as_u64().context("no width")? as usize;
    let height = ready["height"].as_u64().context("no height")? as usize;
    let mut canvas = viewer::Canvas::new(width, height);
    let mut corner = [0; 3];
    for _ in 0..20 {
        viewer::read_batches(&mut socket, &mut canvas, 1).await?;
        corner = canvas.pixel(5, 5);
        if near(corner, BACKGROUND_RGB, 16) {
            break;
        }
    }
    assert!(
        near(corner, BACKGROUND_RGB, 16),
        "corner is {corner:?} after the first updates"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_errors_carry_codes() -> Result<()> {
    let stack = tokio::task::spawn_blocking(start_stack).await??;
    let base = stack.base_url();
    let http = reqwest::Client::new();
    let error_of = |body: serde_json::Value| body["error"]["code"].as_str().unwrap_or_default().to_owned();

    let wrong = Api::login(&base, MEMBER.0, "not-the-password").await;
    let failure = wrong.err().context("wrong password accepted")?;
    assert!(failure.to_string().contains("401"), "{failure}");

    let cases = [
        ("POST", "/api/v1/login", Some("{not json"), None, 400, "invalid_body"),
        ("GET", "/api/v1/sessions", None, None, 401, "unauthenticated"),
        ("GET", "/api/v1/sessions", None, Some("garbage"), 401, "token_invalid"),
        (
            "GET",
            "/api/v1/sessions",
            None,
            Some("rpk_garbage"),
            401,
            "token_invalid",
        ),
        ("GET", "/test/browser.test.mjs", None, None, 404, "not_found"),
        ("GET", "/README.md", None, None, 404, "not_found"),
    ];
    for (method, path, body, bearer, status, code) in cases {
        let mut request = http.request(method.parse()?, format!("{base}{path}"));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await?;
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(error_of(response.json().await?), code, "{method} {path}");
    }

    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let missing = member.session("not-a-uuid").await.expect_err("invalid id");
    assert_eq!((missing.status, missing.code.as_str()), (404, "not_found"));
    let unknown_target = member
        .create_session("00000000-0000-0000-0000-000000000000")
        .await
        .expect_err("no target");
    assert_eq!(unknown_target.status, 404);
    let bad_size = member
        .post(
            "/api/v1/sessions",
            json!({"target_id": uuid_zero(), "width": 5, "height": 5}),
        )
        .await;
    assert_eq!(bad_size.expect_err("tiny desktop").code, "invalid_size");
    let bad_mode = member
        .post(
            &format!("/api/v1/sessions/{}/attach", uuid_zero()),
            json!({"mode": "sideways"}),
        )
        .await;
    assert_eq!(bad_mode.expect_err("unknown mode").code, "invalid_mode");

    let openapi: serde_json::Value = http
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    for path in [
        "/api/v1/login",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}/attach",
        "/api/v1/sessions/{id}/terminate",
    ] {
        assert!(openapi["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    // Repeated wrong passwords lock the user name for a while, even against the right password.
    for _ in 0..10 {
        let failure = Api::login(&base, OTHER_MEMBER.0, "guess-guess")
            .await
            .err()
            .context("wrong password accepted")?;
        assert!(failure.to_string().contains("401"), "{failure}");
    }
    let locked = Api::login(&base, OTHER_MEMBER.0, OTHER_MEMBER.1)
        .await
        .err()
        .context("locked user logged in")?;
    assert!(locked.to_string().contains("too_many_attempts"), "{locked}");
    Api::login(&base, MEMBER.0, MEMBER.1)
        .await
        .context("another user is not locked")?;

    let logs = stack.logs();
    for secret in [MEMBER.1, ADMIN.1, member.token()] {
        assert!(!logs.contains(secret), "a password or token appeared in a log");
    }
    Ok(())
}

fn uuid_zero() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}

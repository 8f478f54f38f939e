//! The session foundation in a real browser: connect, type, detach by closing the tab, reattach
//! from a new browser, take over as admin, terminate, against freerdp-shadow and xrdp.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use fantoccini::key::Key;
use rdp_proxy_e2e::Api;
use rdp_proxy_e2e::browser::{
    canvas_samples, click_session_button, difference, login, open_desktop, type_into_canvas, wait_canvas_pixel,
    wait_frames, wait_viewer_state,
};
use rdp_proxy_testkit::{Chromium, XRDP_BACKGROUND, Xrdp, parse_hex_color};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_lifecycle_in_chromium() -> Result<()> {
    let (stack, desktop, chromium) = tokio::task::spawn_blocking(|| -> Result<_> {
        let stack = start_stack()?;
        let desktop = Desktop::nla()?;
        let chromium = Chromium::start()?;
        Ok((stack, desktop, chromium))
    })
    .await??;
    stack.add_target(
        "office-desktop",
        desktop.shadow.port(),
        "nla",
        DESKTOP_USER,
        DESKTOP_PASSWORD,
    )?;
    let base = stack.base_url();
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let admin = Api::login(&base, ADMIN.0, ADMIN.1).await?;

    // Connect: the member opens the desktop from the portal and sees the real screen.
    let first = chromium.new_client().await?;
    login(&first, &base, MEMBER.0, MEMBER.1).await?;
    open_desktop(&first, "office-desktop").await?;
    wait_viewer_state(&first, "active", LONG).await?;
    wait_frames(&first, 1, LONG).await?;
    let corner = wait_canvas_pixel(&first, (5, 5), BACKGROUND_RGB, 16, LONG).await?;
    assert!(
        near(corner, BACKGROUND_RGB, 16),
        "canvas corner is {corner:?}, expected the desktop background"
    );
    let sessions = member.get("/api/v1/sessions").await?;
    let session_id = sessions["items"][0]["id"]
        .as_str()
        .context("no session listed")?
        .to_owned();
    assert_eq!(sessions["items"][0]["state"], "active");

    // Typing in the browser reaches the desktop: the xterm's shell runs the typed command.
    type_into_canvas(&first, &format!("touch typed-in-browser{}", char::from(Key::Enter))).await?;
    eventually("typed command to run on the desktop", LONG, || {
        desktop.file("typed-in-browser").exists()
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, before) = canvas_samples(&first, 8).await?;

    // Detach: closing the tab leaves the session detached and the RDP connection open.
    first.close().await?;
    member.wait_for_state(&session_id, "detached", LONG).await?;
    assert_eq!(desktop.shadow.connections_accepted(), 1);
    assert_eq!(
        desktop.established_connections(),
        1,
        "the target connection must stay open while detached"
    );

    // Reattach from a new browser: the same desktop, still one RDP connection.
    let second = chromium.new_client().await?;
    login(&second, &base, MEMBER.0, MEMBER.1).await?;
    click_session_button(&second, &session_id, "Reattach").await?;
    wait_viewer_state(&second, "active", LONG).await?;
    wait_frames(&second, 1, LONG).await?;
    let (_, _, after) = canvas_samples(&second, 8).await?;
    let changed = difference(&before, &after, 16);
    assert!(
        changed < 0.01,
        "{:.1}% of the screen changed across detach and reattach",
        changed * 100.0
    );
    assert_eq!(
        desktop.shadow.connections_accepted(),
        1,
        "reattach must not open a new RDP connection"
    );

    // A second viewer without takeover is refused, naming who holds control.
    let refused = member
        .attach(&session_id, "control")
        .await
        .expect_err("second viewer must be refused");
    assert_eq!(refused.status, 409);
    assert!(
        refused.message.contains(MEMBER.0),
        "refusal names the holder: {}",
        refused.message
    );

    // Takeover: the admin takes control from the portal; the member's viewer is told.
    let third = chromium.new_client().await?;
    login(&third, &base, ADMIN.0, ADMIN.1).await?;
    click_session_button(&third, &session_id, "Take over").await?;
    wait_viewer_state(&third, "active", LONG).await?;
    let told = wait_viewer_state(&second, "control_lost", LONG).await?;
    assert!(
        told.contains(ADMIN.0),
        "the previous viewer is told who took control: {told:?}"
    );
    let events = member.events(&session_id).await?;
    let takeover = events
        .iter()
        .find(|event| event["kind"] == "taken_over")
        .context("no taken_over event")?;
    assert_eq!(takeover["actor"], ADMIN.0);

    // Terminate: the admin ends the session; the viewer shows it and the target connection closes.
    admin.terminate(&session_id, "end of test").await?;
    wait_viewer_state(&third, "terminated", LONG).await?;
    let ended = member.wait_for_state(&session_id, "terminated", LONG).await?;
    assert!(
        ended["reason"].as_str().unwrap_or_default().contains(ADMIN.0),
        "reason names who ended it: {ended}"
    );
    eventually("target connection to close", LONG, || {
        desktop.established_connections() == 0
    })
    .await?;
    let leftover = redis_keys(&stack, &format!("*{session_id}*"))?;
    assert!(
        leftover.is_empty(),
        "routing or lease keys left in Redis after terminate: {leftover:?}"
    );
    assert!(
        !stack.logs().contains(DESKTOP_PASSWORD),
        "the target password appeared in a log"
    );
    second.close().await?;
    third.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xrdp_lifecycle_in_chromium() -> Result<()> {
    const XRDP_USER: &str = "rdpproxye2e";
    const XRDP_PASSWORD: &str = "Xrdp-Pass-8123";
    let (stack, xrdp, chromium) = tokio::task::spawn_blocking(|| -> Result<_> {
        Ok((
            start_stack()?,
            Xrdp::start(XRDP_USER, XRDP_PASSWORD)?,
            Chromium::start()?,
        ))
    })
    .await??;
    stack.add_target("xrdp-desktop", xrdp.port(), "tls", XRDP_USER, XRDP_PASSWORD)?;
    let base = stack.base_url();
    let member = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let background = parse_hex_color(XRDP_BACKGROUND)?;
    let shows_background = |pixel: [u8; 3]| near(pixel, background, 16);

    let first = chromium.new_client().await?;
    login(&first, &base, MEMBER.0, MEMBER.1).await?;
    open_desktop(&first, "xrdp-desktop").await?;
    wait_viewer_state(&first, "active", LONG).await?;
    let corner = wait_canvas_pixel(&first, (5, 5), background, 16, LONG).await?;
    assert!(
        shows_background(corner),
        "xrdp desktop background not drawn; corner is {corner:?}"
    );
    let session_id = member.get("/api/v1/sessions").await?["items"][0]["id"]
        .as_str()
        .context("no session")?
        .to_owned();

    first.close().await?;
    member.wait_for_state(&session_id, "detached", LONG).await?;
    let second = chromium.new_client().await?;
    login(&second, &base, MEMBER.0, MEMBER.1).await?;
    click_session_button(&second, &session_id, "Reattach").await?;
    wait_viewer_state(&second, "active", LONG).await?;
    wait_frames(&second, 1, LONG).await?;
    let corner = wait_canvas_pixel(&second, (5, 5), background, 16, LONG).await?;
    assert!(shows_background(corner), "reattached xrdp desktop shows {corner:?}");
    assert_eq!(
        xrdp.sessions_started(),
        1,
        "reattach must not start another xrdp session"
    );

    // Detach through the API: the viewer is told and stays detached; the desktop keeps running.
    member.detach(&session_id).await?;
    wait_viewer_state(&second, "detached", LONG).await?;
    assert_eq!(member.session(&session_id).await?["state"], "detached");
    assert_eq!(established_to(xrdp.port()), 1, "detach must keep the target connection");

    member.terminate(&session_id, "done").await?;
    member.wait_for_state(&session_id, "terminated", LONG).await?;
    eventually("xrdp connection to close", LONG, || established_to(xrdp.port()) == 0).await?;
    second.close().await?;
    Ok(())
}

/// Redis keys matching `pattern`, read with `redis-cli --scan`.
fn redis_keys(stack: &rdp_proxy_e2e::Stack, pattern: &str) -> Result<Vec<String>> {
    let port = stack.redis.port().to_string();
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port, "--scan", "--pattern", pattern])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

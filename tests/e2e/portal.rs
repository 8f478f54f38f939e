//! The organisation portal in a real browser: a user in two organisations sees only the current
//! one's desktops and sessions, reattaches a detached session, an admin takes it over, and a user
//! of the other organisation can neither see nor open it.

#[path = "common.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::*;
use fantoccini::Locator;
use rdp_proxy_e2e::Api;
use rdp_proxy_e2e::browser::{
    click_session_button, close_tab_for_portal, current_org_name, login, open_desktop, org_choices, save_screenshot,
    session_in_url, session_row_ids, switch_org, target_names, wait_frames, wait_session_row, wait_sessions_empty,
    wait_target_listed, wait_viewer_state,
};
use rdp_proxy_testkit::Chromium;

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(15);

const ACME: &str = "Acme";
const GLOBEX: &str = "Globex";
const ACME_TARGET: &str = "acme-desk";
const GLOBEX_TARGET: &str = "globex-desk";
/// Member of both organisations.
const DANA: (&str, &str) = ("dana", "dana-password-12");
/// Admin of Acme only.
const ERIN: (&str, &str) = ("erin", "erin-password-12");
/// Admin of Globex only. An admin sees every session of Globex, so the check that Acme's
/// sessions stay hidden from him is not trivially met by "members see only their own".
const FRANK: (&str, &str) = ("frank", "frank-password-1");

const SCREENSHOT: &str = "/tmp/rp/shots/portal-e2e.png";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portal_isolates_organisations_in_chromium() -> Result<()> {
    let (stack, desktop, chromium) = tokio::task::spawn_blocking(|| -> Result<_> {
        let stack = rdp_proxy_e2e::Stack::start(Path::new(env!("CARGO_BIN_EXE_rdp-proxy")))?;
        let desktop = Desktop::nla()?;
        let chromium = Chromium::start()?;
        Ok((stack, desktop, chromium))
    })
    .await??;
    stack.add_user_in(ACME, DANA.0, DANA.1, "member")?;
    stack.add_user_in(GLOBEX, DANA.0, DANA.1, "member")?;
    stack.add_user_in(ACME, ERIN.0, ERIN.1, "admin")?;
    stack.add_user_in(GLOBEX, FRANK.0, FRANK.1, "admin")?;
    let port = desktop.shadow.port();
    let acme_target = stack.add_target_in(ACME, ACME_TARGET, port, "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    stack.add_target_in(GLOBEX, GLOBEX_TARGET, port, "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;

    let base = stack.base_url();
    let first_login = Api::login(&base, DANA.0, DANA.1).await?;
    let acme_id = org_id_named(&first_login, ACME)?;
    let globex_id = org_id_named(&first_login, GLOBEX)?;
    let dana_acme = Api::login_to(&base, DANA.0, DANA.1, Some(&acme_id)).await?;
    let dana_globex = Api::login_to(&base, DANA.0, DANA.1, Some(&globex_id)).await?;
    let erin = Api::login(&base, ERIN.0, ERIN.1).await?;
    let frank = Api::login(&base, FRANK.0, FRANK.1).await?;
    assert_eq!(erin.org_id(), acme_id, "erin belongs to Acme only");
    assert_eq!(frank.org_id(), globex_id, "frank belongs to Globex only");

    // Dana signs in and lands in one of her organisations. The desktops list shows only its target.
    let dana = chromium.new_client().await?;
    login(&dana, &base, DANA.0, DANA.1).await?;
    let landed = current_org_name(&dana).await?;
    let (landed_target, other, other_id, other_target) = match landed.as_str() {
        ACME => (ACME_TARGET, GLOBEX, globex_id.as_str(), GLOBEX_TARGET),
        GLOBEX => (GLOBEX_TARGET, ACME, acme_id.as_str(), ACME_TARGET),
        name => bail!("dana landed in {name:?}, expected {ACME} or {GLOBEX}"),
    };
    let choices = org_choices(&dana).await?;
    let choice_ids: Vec<&str> = choices.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(choices.len(), 2, "the picker offers both organisations: {choices:?}");
    assert!(
        choice_ids.contains(&acme_id.as_str()),
        "Acme missing from the picker: {choices:?}"
    );
    assert!(
        choice_ids.contains(&globex_id.as_str()),
        "Globex missing from the picker: {choices:?}"
    );
    wait_target_listed(&dana, landed_target, SHORT).await?;
    assert_eq!(target_names(&dana).await?, [landed_target], "desktops in {landed}");

    // Switching with the picker replaces the list with the other organisation's target.
    switch_org(&dana, other_id, other).await?;
    wait_target_listed(&dana, other_target, SHORT).await?;
    assert_eq!(target_names(&dana).await?, [other_target], "desktops in {other}");
    if other != GLOBEX {
        switch_org(&dana, &globex_id, GLOBEX).await?;
        wait_target_listed(&dana, GLOBEX_TARGET, SHORT).await?;
    }

    // In Globex, dana opens a desktop and leaves it detached by closing the viewer tab.
    open_desktop(&dana, GLOBEX_TARGET).await?;
    wait_viewer_state(&dana, "active", LONG).await?;
    let globex_session = session_in_url(&dana)
        .await?
        .context("viewer address has no session id")?;
    close_tab_for_portal(&dana, &base).await?;
    dana_globex.wait_for_state(&globex_session, "detached", LONG).await?;
    wait_session_row(&dana, &globex_session, SHORT).await?;
    assert_eq!(
        session_row_ids(&dana).await?,
        [globex_session.as_str()],
        "sessions in Globex"
    );

    // In Acme the Globex session is not listed, before and after dana opens acme-desk there.
    switch_org(&dana, &acme_id, ACME).await?;
    wait_target_listed(&dana, ACME_TARGET, SHORT).await?;
    assert_eq!(target_names(&dana).await?, [ACME_TARGET], "desktops in Acme");
    wait_sessions_empty(&dana, SHORT).await?;
    open_desktop(&dana, ACME_TARGET).await?;
    wait_viewer_state(&dana, "active", LONG).await?;
    wait_frames(&dana, 1, LONG).await?;
    let acme_session = session_in_url(&dana)
        .await?
        .context("viewer address has no session id")?;
    assert_ne!(acme_session, globex_session, "acme-desk opened a new session");
    desktop.shadow.wait_for_connections(2, LONG)?;
    assert_eq!(
        desktop.shadow.connections_accepted(),
        2,
        "one RDP connection per session"
    );

    // Closing the viewer tab detaches the Acme session, which is the only one listed in Acme.
    close_tab_for_portal(&dana, &base).await?;
    dana_acme.wait_for_state(&acme_session, "detached", LONG).await?;
    wait_session_row(&dana, &acme_session, SHORT).await?;
    assert_eq!(
        session_row_ids(&dana).await?,
        [acme_session.as_str()],
        "sessions in Acme"
    );

    // Back in Globex only the Globex session is listed, then Acme again.
    switch_org(&dana, &globex_id, GLOBEX).await?;
    wait_session_row(&dana, &globex_session, SHORT).await?;
    assert_eq!(
        session_row_ids(&dana).await?,
        [globex_session.as_str()],
        "sessions in Globex"
    );
    switch_org(&dana, &acme_id, ACME).await?;
    wait_session_row(&dana, &acme_session, SHORT).await?;
    assert_eq!(
        session_row_ids(&dana).await?,
        [acme_session.as_str()],
        "sessions in Acme"
    );
    save_screenshot(&dana, Path::new(SCREENSHOT)).await?;

    // Each organisation's API hides the other's session as if it did not exist.
    let hidden = dana_globex
        .session(&acme_session)
        .await
        .expect_err("Acme session seen from Globex");
    assert_eq!(hidden.status, 404, "Acme session from Globex: {hidden}");
    let hidden = dana_acme
        .session(&globex_session)
        .await
        .expect_err("Globex session seen from Acme");
    assert_eq!(hidden.status, 404, "Globex session from Acme: {hidden}");

    // Reattach from the portal: the same session becomes active, with no new RDP connection.
    click_session_button(&dana, &acme_session, "Reattach").await?;
    wait_viewer_state(&dana, "active", LONG).await?;
    wait_frames(&dana, 1, LONG).await?;
    assert_eq!(
        session_in_url(&dana).await?.as_deref(),
        Some(acme_session.as_str()),
        "Reattach opens the same session"
    );
    let reattached = dana_acme.session(&acme_session).await?;
    assert_eq!(reattached["state"], "active");
    assert_eq!(reattached["control"]["user"], DANA.0);
    assert_eq!(
        desktop.shadow.connections_accepted(),
        2,
        "reattach must not open a new RDP connection"
    );
    assert_eq!(
        desktop.established_connections(),
        2,
        "each session keeps exactly one connection to the desktop"
    );
    assert_eq!(
        dana_globex.session(&globex_session).await?["state"],
        "detached",
        "the Globex session is untouched"
    );

    // Erin, admin of Acme, sees dana's Acme session but not her Globex one, and takes it over.
    let erin_browser = chromium.new_client().await?;
    login(&erin_browser, &base, ERIN.0, ERIN.1).await?;
    assert_eq!(current_org_name(&erin_browser).await?, ACME);
    let erin_choices = org_choices(&erin_browser).await?;
    assert_eq!(
        erin_choices.len(),
        1,
        "erin's picker offers Acme only: {erin_choices:?}"
    );
    wait_target_listed(&erin_browser, ACME_TARGET, SHORT).await?;
    assert_eq!(target_names(&erin_browser).await?, [ACME_TARGET], "erin's desktops");
    wait_session_row(&erin_browser, &acme_session, SHORT).await?;
    assert_eq!(
        session_row_ids(&erin_browser).await?,
        [acme_session.as_str()],
        "erin's sessions list"
    );
    click_session_button(&erin_browser, &acme_session, "Take over").await?;
    wait_viewer_state(&erin_browser, "active", LONG).await?;
    let control_lost_text = wait_viewer_state(&dana, "control_lost", LONG).await?;
    assert!(
        control_lost_text.contains(ERIN.0),
        "dana's viewer names who took control: {control_lost_text:?}"
    );
    let after_takeover = erin.session(&acme_session).await?;
    assert_eq!(after_takeover["state"], "active");
    assert_eq!(after_takeover["control"]["user"], ERIN.0);
    let events = erin.events(&acme_session).await?;
    let takeover = events
        .iter()
        .find(|event| event["kind"] == "taken_over")
        .context("no taken_over event")?;
    assert_eq!(takeover["actor"], ERIN.0);
    assert_eq!(
        desktop.shadow.connections_accepted(),
        2,
        "takeover must not open a new RDP connection"
    );
    let hidden = erin
        .session(&globex_session)
        .await
        .expect_err("Globex session seen by erin");
    assert_eq!(hidden.status, 404, "Globex session for erin: {hidden}");
    dana.close().await?;
    erin_browser.close().await?;
    erin.wait_for_state(&acme_session, "detached", LONG).await?;

    // Frank, of Globex only, sees Globex's target and session, never Acme's.
    let frank_browser = chromium.new_client().await?;
    login(&frank_browser, &base, FRANK.0, FRANK.1).await?;
    assert_eq!(current_org_name(&frank_browser).await?, GLOBEX);
    let frank_choices = org_choices(&frank_browser).await?;
    assert_eq!(
        frank_choices.len(),
        1,
        "frank's picker offers Globex only: {frank_choices:?}"
    );
    wait_target_listed(&frank_browser, GLOBEX_TARGET, SHORT).await?;
    assert_eq!(target_names(&frank_browser).await?, [GLOBEX_TARGET], "frank's desktops");
    wait_session_row(&frank_browser, &globex_session, SHORT).await?;
    assert_eq!(
        session_row_ids(&frank_browser).await?,
        [globex_session.as_str()],
        "frank's sessions list"
    );

    // Typing the Acme session's viewer address gives "not found", not the desktop.
    frank_browser
        .goto(&format!("{base}/viewer.html?session={acme_session}&mode=control"))
        .await?;
    let error = wait_viewer_state(&frank_browser, "error", LONG).await?;
    assert!(
        error.to_lowercase().contains("not found"),
        "viewer error for another organisation's session: {error:?}"
    );
    let frames = frank_browser
        .execute("return window.rdpViewer ? window.rdpViewer.framesDrawn : -1", vec![])
        .await?;
    assert_eq!(frames, 0, "the viewer drew no frame of the Acme desktop");
    let hidden = frank
        .session(&acme_session)
        .await
        .expect_err("Acme session seen by frank");
    assert_eq!(hidden.status, 404, "Acme session for frank: {hidden}");
    let hidden = frank
        .attach(&acme_session, "takeover")
        .await
        .expect_err("frank attached to Acme");
    assert_eq!(hidden.status, 404, "attach to the Acme session for frank: {hidden}");
    let hidden = frank
        .get(&format!("/api/v1/targets/{acme_target}"))
        .await
        .expect_err("frank read Acme's target");
    assert_eq!(hidden.status, 404, "Acme target read by frank: {hidden}");
    let hidden = frank
        .create_session(&acme_target)
        .await
        .expect_err("frank opened Acme's target");
    assert_eq!(hidden.status, 404, "Acme target opened by frank: {hidden}");
    let after_attempts = erin.session(&acme_session).await?;
    assert_eq!(
        after_attempts["state"], "detached",
        "frank's attempts left the Acme session as it was"
    );
    let events = erin.events(&acme_session).await?;
    let by_frank: Vec<_> = events.iter().filter(|event| event["actor"] == FRANK.0).collect();
    assert!(by_frank.is_empty(), "frank acted on the Acme session: {by_frank:?}");
    assert_eq!(
        desktop.shadow.connections_accepted(),
        2,
        "frank's attempts opened no connection"
    );

    assert!(
        !stack.logs().contains(DESKTOP_PASSWORD),
        "the target password appeared in a log"
    );
    frank_browser.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_back_link_detaches_session() -> Result<()> {
    let (stack, desktop, chromium) = tokio::task::spawn_blocking(|| -> Result<_> {
        let stack = rdp_proxy_e2e::Stack::start(Path::new(env!("CARGO_BIN_EXE_rdp-proxy")))?;
        let desktop = Desktop::nla()?;
        let chromium = Chromium::start()?;
        Ok((stack, desktop, chromium))
    })
    .await??;
    stack.add_user_in(ACME, DANA.0, DANA.1, "member")?;
    let port = desktop.shadow.port();
    stack.add_target_in(ACME, ACME_TARGET, port, "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let base = stack.base_url();
    let dana_api = Api::login(&base, DANA.0, DANA.1).await?;

    let dana = chromium.new_client().await?;
    login(&dana, &base, DANA.0, DANA.1).await?;
    open_desktop(&dana, ACME_TARGET).await?;
    wait_viewer_state(&dana, "active", LONG).await?;
    wait_frames(&dana, 1, LONG).await?;
    let session = session_in_url(&dana)
        .await?
        .context("viewer address has no session id")?;

    // NOTE: Chromium 156 can keep a page it puts in the back/forward cache alive with its
    // WebSocket open, so this passes only if the viewer closes its socket when the page is hidden.
    dana.find(Locator::LinkText("Back to sessions")).await?.click().await?;
    wait_target_listed(&dana, ACME_TARGET, SHORT).await?;
    let detached = dana_api
        .wait_for_state(&session, "detached", Duration::from_secs(10))
        .await;
    assert!(
        detached.is_ok(),
        "leaving the viewer by its Back to sessions link must detach the session: {detached:?}"
    );
    click_session_button(&dana, &session, "Reattach").await?;
    wait_viewer_state(&dana, "active", LONG).await?;
    assert_eq!(
        desktop.shadow.connections_accepted(),
        1,
        "reattach must not open a new RDP connection"
    );
    dana.close().await?;
    Ok(())
}

/// Returns the id of the organisation called `name` from a login response's `orgs`.
fn org_id_named(api: &Api, name: &str) -> Result<String> {
    api.login["orgs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|org| org["name"] == name)
        .and_then(|org| org["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("login lists no organisation {name}: {}", api.login["orgs"]))
}

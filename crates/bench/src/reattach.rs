//! Figure 1: reattach to a held session until the first full frame, beside a fresh xfreerdp
//! connection and a fresh proxied session to the same 1920x1080 target.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use rdp_proxy_e2e::Api;
use rdp_proxy_testkit::{Xfreerdp, connect_and_time_first_frame};

use crate::desktop::{self, DESKTOP_PASSWORD, DESKTOP_USER, Desktop, HEIGHT, MEMBER, WIDTH, teardown};
use crate::proxy::{self, AttachTiming};

/// Pause between two measurements, so the previous client's teardown is over.
const SETTLE: Duration = Duration::from_secs(1);
/// Limit for xfreerdp's first frame, as in testkit's `connect_and_time_first_frame`.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ReattachResults {
    /// Reattach to the held, detached session; times from the attach request.
    pub reattach: Vec<AttachTiming>,
    /// A fresh proxied session; times from the create request.
    pub fresh: Vec<AttachTiming>,
    /// xfreerdp with its defaults from launch to the first non-black pixel on its display.
    pub xfreerdp: Vec<Duration>,
    /// The same with `/rfx` (RemoteFX), the faster codec in figure 4.
    pub xfreerdp_rfx: Vec<Duration>,
}

pub async fn run(binary: &Path, runs: usize) -> Result<ReattachResults> {
    let desktop = tokio::task::block_in_place(Desktop::start)?;
    let (stack, target) = tokio::task::block_in_place(|| desktop::start_stack(binary, &desktop))?;
    let api = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    let reference = &desktop.reference;

    // The held session: connected once, shown once, then detached like a closed tab.
    let held_id = proxy::open_detached(&api, &target, reference).await?;
    tracing::info!(session.id = %held_id, "held session is detached");

    let mut results = ReattachResults {
        reattach: Vec::new(),
        fresh: Vec::new(),
        xfreerdp: Vec::new(),
        xfreerdp_rfx: Vec::new(),
    };
    let port = desktop.shadow.port();
    for run in 1..=runs {
        tokio::time::sleep(SETTLE).await;
        let xfreerdp = tokio::task::spawn_blocking(move || {
            connect_and_time_first_frame(port, DESKTOP_USER, DESKTOP_PASSWORD, WIDTH, HEIGHT)
        })
        .await??;

        tokio::time::sleep(SETTLE).await;
        let xfreerdp_rfx = tokio::task::spawn_blocking(move || -> Result<Duration> {
            let mut client = Xfreerdp::connect(port, DESKTOP_USER, DESKTOP_PASSWORD, WIDTH, HEIGHT, &["/rfx"])?;
            client.wait_first_frame(FIRST_FRAME_TIMEOUT)
        })
        .await??;

        tokio::time::sleep(SETTLE).await;
        let started = Instant::now();
        let fresh_id = proxy::create_session(&api, &target).await?;
        let (socket, fresh) = proxy::attach_until_full_frame(&api, &fresh_id, reference, started).await?;
        drop(socket);
        proxy::terminate(&api, &fresh_id).await?;

        tokio::time::sleep(SETTLE).await;
        let started = Instant::now();
        let (socket, reattach) = proxy::attach_until_full_frame(&api, &held_id, reference, started).await?;
        proxy::detach(&api, &held_id, socket).await?;

        tracing::info!(
            run,
            reattach_ms = millis(reattach.full_frame),
            fresh_ms = millis(fresh.full_frame),
            xfreerdp_ms = millis(xfreerdp),
            xfreerdp_rfx_ms = millis(xfreerdp_rfx),
            "reattach run finished"
        );
        results.reattach.push(reattach);
        results.fresh.push(fresh);
        results.xfreerdp.push(xfreerdp);
        results.xfreerdp_rfx.push(xfreerdp_rfx);
    }
    // Reattach must reuse the held RDP connection: one connection for the held session, plus
    // one fresh session and two xfreerdp per run.
    let connections = desktop.shadow.connections_accepted();
    let expected = 1 + 3 * runs;
    if connections != expected {
        tracing::warn!(
            connections,
            expected,
            "the shadow server accepted an unexpected number of connections; a reattach may have reconnected"
        );
    }
    teardown((stack, desktop));
    Ok(results)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

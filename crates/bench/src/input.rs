//! Figure 4: a key press until the typed character changes pixels, through rdp-proxy in
//! headless Chromium beside xfreerdp connected straight to the target (`direct.rs`).
//!
//! Both sides press `x` in the target's xterm and watch the xterm's region of the screen (found
//! on the target from its yellow background) until any pixel in it changes. The same region of
//! the target's own display is polled too, which splits each time into the input path (until
//! the target drew the character) and the rest. After each press the key is released,
//! Backspace erases the character and the screen settles before the next press. One press
//! before the timed ones warms up every path and is not counted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, Locator};
use rdp_proxy_e2e::Api;
use rdp_proxy_e2e::browser::{login, open_desktop, wait_canvas_pixel, wait_frames, wait_viewer_state};
use rdp_proxy_testkit::{Chromium, colors_near};
use serde_json::{Value, json};

use crate::desktop::{self, COLOR_TOLERANCE, Desktop, HEIGHT, MEMBER, TARGET_NAME, WIDTH, teardown};
use crate::direct::{self, DirectResults};
use crate::xclient::{Region, XConnection};

/// Limit for one key press to change the screen.
pub const PRESS_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after erasing the character, so the erase has reached every screen.
pub const SETTLE: Duration = Duration::from_millis(700);
/// Limit for logging in, connecting and the first frame.
pub const LONG: Duration = Duration::from_secs(30);
const YELLOW: [u8; 3] = [255, 255, 0];
/// Pause between two polls of an X display. Busy polling would take a whole core from the
/// shadow server and the clients, which matters on a 2-core machine.
pub const POLL_PAUSE: Duration = Duration::from_millis(1);

/// In-page measurement of one key press. It saves the region's pixels, dispatches `keydown`
/// for `x` on the canvas (the viewer's input handler sends it to the worker), and then
/// detects the change in two ways:
/// - `drawnAt`: the viewer's batch-end callback, which increments `rdpViewer.framesDrawn` right
///   after a batch was drawn, is wrapped with a property setter that compares the region.
/// - `seenAt`: a `requestAnimationFrame` loop compares the region once per animation frame.
///
/// Both are `performance.now()` values, like `startedAt`. `frameTimes` lets the caller compute
/// the animation-frame interval, which is the resolution of `seenAt`.
const MEASURE_PRESS_SCRIPT: &str = r#"
const [x, y, width, height, timeoutMs] = arguments;
const done = arguments[arguments.length - 1];
const canvas = document.getElementById("screen");
const context = canvas.getContext("2d");
const baseline = context.getImageData(x, y, width, height).data;
const differs = () => {
  const pixels = context.getImageData(x, y, width, height).data;
  for (let i = 0; i < pixels.length; i += 1) {
    if (pixels[i] !== baseline[i]) {
      return true;
    }
  }
  return false;
};
const key = (type, code, text) =>
  canvas.dispatchEvent(new KeyboardEvent(type, { code, key: text, bubbles: true, cancelable: true }));
const stats = window.rdpViewer;
let framesDrawn = stats.framesDrawn;
let drawnAt = null;
Object.defineProperty(stats, "framesDrawn", {
  configurable: true,
  enumerable: true,
  get: () => framesDrawn,
  set: (value) => {
    framesDrawn = value;
    if (drawnAt === null && differs()) {
      drawnAt = performance.now();
    }
  },
});
const frameTimes = [];
let startedAt = 0;
const finish = (seenAt) => {
  delete stats.framesDrawn;
  stats.framesDrawn = framesDrawn;
  key("keyup", "KeyX", "x");
  done({ startedAt, drawnAt, seenAt, frameTimes });
};
const onFrame = (frameTime) => {
  frameTimes.push(frameTime);
  if (differs()) {
    finish(performance.now());
  } else if (performance.now() - startedAt > timeoutMs) {
    finish(null);
  } else {
    requestAnimationFrame(onFrame);
  }
};
startedAt = performance.now();
key("keydown", "KeyX", "x");
requestAnimationFrame(onFrame);
"#;

const ERASE_SCRIPT: &str = r#"
const canvas = document.getElementById("screen");
for (const type of ["keydown", "keyup"]) {
  canvas.dispatchEvent(new KeyboardEvent(type, { code: "Backspace", key: "Backspace", bubbles: true, cancelable: true }));
}
"#;

/// xfreerdp configurations of the baseline. With its defaults xfreerdp 2.11 opens the RDP 8
/// graphics pipeline, and the shadow server's log then shows it encoding with libx264 (H.264).
/// `/rfx` (RemoteFX) was the fastest of `/rfx`, `/gfx:RFX` and `-gfx` in a trial of three
/// presses against this shadow server.
pub const DIRECT_CONFIGURATIONS: [(&str, &[&str]); 2] = [("xfreerdp defaults", &[]), ("xfreerdp /rfx", &["/rfx"])];

pub struct InputResults {
    /// Through rdp-proxy: keydown until the changed pixels were drawn on the canvas.
    pub browser_drawn: Vec<Duration>,
    /// Through rdp-proxy: keydown until an animation frame saw the changed pixels.
    pub browser_seen: Vec<Duration>,
    /// Through rdp-proxy: start of the WebDriver call that dispatches the keydown until the
    /// target's own display changed. Includes the WebDriver call's delay.
    pub browser_target: Vec<Duration>,
    /// Median interval between animation frames during the presses.
    pub browser_frame_interval: Option<Duration>,
    /// Mean interval between two polls of the target display during the browser presses.
    pub browser_target_poll_interval: Option<Duration>,
    /// The baseline once per xfreerdp configuration in [`DIRECT_CONFIGURATIONS`].
    pub direct: Vec<(&'static str, DirectResults)>,
    /// The polled region, in desktop pixels.
    pub region: Region,
}

pub async fn run(binary: &Path, runs: usize) -> Result<InputResults> {
    let desktop = tokio::task::block_in_place(Desktop::start)?;
    let (stack, _target) = tokio::task::block_in_place(|| desktop::start_stack(binary, &desktop))?;
    let chromium = tokio::task::block_in_place(Chromium::start)?;
    let region = desktop.xterm_region;
    tracing::info!(?region, "xterm region on the target");

    let base = stack.base_url();
    let client = chromium.new_client().await?;
    let browser = measure_in_browser(&client, &base, &desktop, runs).await;
    let _ = client.close().await;
    teardown(chromium);
    let browser = browser?;

    // The proxied session would decode every change the direct client causes, so it ends first.
    let api = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let sessions = api.get("/api/v1/sessions").await?;
    for session in sessions["items"].as_array().cloned().unwrap_or_default() {
        if let Some(id) = session["id"].as_str()
            && session["state"] != "terminated"
        {
            crate::proxy::terminate(&api, id).await?;
        }
    }
    teardown(stack);

    let port = desktop.shadow.port();
    let target_display = desktop.xvfb.display_number();
    let mut direct = Vec::new();
    for (label, extra_args) in DIRECT_CONFIGURATIONS {
        let reference = desktop.reference.clone();
        let results = tokio::task::spawn_blocking(move || {
            direct::measure(port, extra_args, target_display, region, &reference, runs)
        })
        .await??;
        direct.push((label, results));
    }
    teardown(desktop);
    Ok(InputResults {
        browser_drawn: browser.drawn,
        browser_seen: browser.seen,
        browser_target: browser.target,
        browser_frame_interval: browser.frame_interval,
        browser_target_poll_interval: browser.target_poll_interval,
        direct,
        region,
    })
}

struct BrowserMeasurements {
    drawn: Vec<Duration>,
    seen: Vec<Duration>,
    target: Vec<Duration>,
    frame_interval: Option<Duration>,
    target_poll_interval: Option<Duration>,
}

/// Logs in through the portal, opens the desktop, clicks the canvas and times `runs` presses.
async fn measure_in_browser(
    client: &Client,
    base: &str,
    desktop: &Desktop,
    runs: usize,
) -> Result<BrowserMeasurements> {
    login(client, base, MEMBER.0, MEMBER.1).await?;
    open_desktop(client, TARGET_NAME).await?;
    wait_viewer_state(client, "active", LONG).await?;
    wait_frames(client, 1, LONG).await?;
    let size = client
        .execute(
            "const c = document.getElementById('screen'); return [c.width, c.height];",
            vec![],
        )
        .await?;
    if size != json!([WIDTH, HEIGHT]) {
        bail!("the viewer canvas is {size}, expected [{WIDTH}, {HEIGHT}]; the target did not keep its size");
    }
    let region = desktop.xterm_region;
    // A point inside the xterm, below the lines the shell writes to.
    let inside = (
        u32::from(region.x + region.width - 20),
        u32::from(region.y + region.height - 20),
    );
    let pixel = wait_canvas_pixel(client, inside, YELLOW, COLOR_TOLERANCE, LONG).await?;
    if !colors_near(pixel, YELLOW, COLOR_TOLERANCE) {
        bail!("the viewer does not show the xterm: pixel {inside:?} is {pixel:?}");
    }
    // The click lands at the centre of the desktop, inside the xterm, so it gets the keys.
    client.find(Locator::Id("screen")).await?.click().await?;
    tokio::time::sleep(SETTLE).await;

    let mut target = XConnection::connect(desktop.xvfb.display_number())?;
    let mut measurements = BrowserMeasurements {
        drawn: Vec::with_capacity(runs),
        seen: Vec::with_capacity(runs),
        target: Vec::with_capacity(runs),
        frame_interval: None,
        target_poll_interval: None,
    };
    let mut intervals = Vec::new();
    let (mut polls, mut polling) = (0u64, Duration::ZERO);
    for press in 0..=runs {
        let baseline = tokio::task::block_in_place(|| target.get_image(region))?;
        let started = Instant::now();
        let watch = tokio::task::spawn_blocking(move || {
            let change = wait_for_change(&mut target, region, &baseline, started);
            (target, change)
        });
        let args = vec![
            json!(region.x),
            json!(region.y),
            json!(region.width),
            json!(region.height),
            json!(PRESS_TIMEOUT.as_millis() as u64),
        ];
        let result = client.execute_async(MEASURE_PRESS_SCRIPT, args).await;
        let (returned, change) = watch.await?;
        target = returned;
        let result = result?;
        client.execute(ERASE_SCRIPT, vec![]).await?;
        tokio::time::sleep(SETTLE).await;

        let started_at = result["startedAt"].as_f64().context("no startedAt")?;
        let seen_at = result["seenAt"]
            .as_f64()
            .with_context(|| format!("press {press}: the canvas did not change within {PRESS_TIMEOUT:?}"))?;
        // The batch-end hook misses only a change drawn without a batch end. The worker ends
        // every batch, so this fallback to the animation frame is not expected to run.
        let drawn_at = result["drawnAt"].as_f64().unwrap_or(seen_at);
        let change = change?.with_context(|| format!("press {press}: the target did not change"))?;
        intervals.extend(frame_intervals(&result["frameTimes"]));
        if press == 0 {
            continue;
        }
        polls += change.polls;
        polling += change.at;
        tracing::info!(
            press,
            drawn_ms = drawn_at - started_at,
            seen_ms = seen_at - started_at,
            target_ms = change.at.as_secs_f64() * 1000.0,
            "browser press"
        );
        measurements
            .drawn
            .push(Duration::from_secs_f64((drawn_at - started_at) / 1000.0));
        measurements
            .seen
            .push(Duration::from_secs_f64((seen_at - started_at) / 1000.0));
        measurements.target.push(change.at);
    }
    measurements.frame_interval =
        crate::report::Summary::of(&intervals).map(|summary| Duration::from_secs_f64(summary.median / 1000.0));
    measurements.target_poll_interval = (polls > 0).then(|| polling / polls as u32);
    Ok(measurements)
}

/// Differences in milliseconds between consecutive animation-frame timestamps.
fn frame_intervals(times: &Value) -> Vec<f64> {
    let times: Vec<f64> = times
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

/// When a polled region first differed from its baseline.
pub struct Change {
    /// Time from the start to the poll that saw the change.
    pub at: Duration,
    /// Polls made, including that one.
    pub polls: u64,
}

/// Polls `region` until it differs from `baseline`; `None` after [`PRESS_TIMEOUT`].
pub fn wait_for_change(
    connection: &mut XConnection,
    region: Region,
    baseline: &[u8],
    started: Instant,
) -> Result<Option<Change>> {
    let mut polls = 0;
    loop {
        let pixels = connection.get_image(region)?;
        polls += 1;
        if pixels != baseline {
            return Ok(Some(Change {
                at: started.elapsed(),
                polls,
            }));
        }
        if started.elapsed() > PRESS_TIMEOUT {
            return Ok(None);
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

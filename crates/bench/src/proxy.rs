//! Sessions through the rdp-proxy API and the raw viewer WebSocket, timed up to the first
//! full frame.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use rdp_proxy_e2e::Api;
use rdp_proxy_e2e::viewer::{self, Canvas, Hello, Socket};
use rdp_proxy_testkit::Screenshot;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::desktop::{self, HEIGHT, WIDTH};

/// Maximum share of sampled pixels that may differ from the target's screen in a full frame.
const FULL_FRAME_TOLERANCE: f64 = 0.01;
/// Distance in pixels between two sampled pixels, in both directions.
const SAMPLE_STEP: usize = 8;
/// Limit for one session to connect, attach or change state.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// First byte of the binary message that ends a batch (docs/viewer-protocol.md).
const BATCH_END: u8 = 2;

/// Times of one attach, each measured from the same start.
#[derive(Clone, Copy, Debug)]
pub struct AttachTiming {
    /// The attach response with the token arrived.
    pub token: Duration,
    /// The worker's `ready` arrived on the viewer socket.
    pub ready: Duration,
    /// The first batch end arrived.
    pub first_batch: Duration,
    /// The batch end arrived after which the reconstructed screen matched the target's screen.
    /// Batches are decoded only after their end arrived, so decoding is not part of the time.
    pub full_frame: Duration,
    /// Batches received up to and including the full frame.
    pub batches: usize,
    /// Bytes of binary messages received up to and including the full frame.
    pub bytes: usize,
}

/// Creates a 1920x1080 session on `target` and returns its id.
pub async fn create_session(api: &Api, target: &str) -> Result<String> {
    let session = api
        .post(
            "/api/v1/sessions",
            json!({ "target_id": target, "width": WIDTH, "height": HEIGHT }),
        )
        .await?;
    Ok(session["id"]
        .as_str()
        .context("the create response has no session id")?
        .to_owned())
}

/// Attaches to session `id` and reads screen updates until the reconstructed screen matches
/// `reference`. Times are measured from `started`, which the caller takes before its first
/// request. Returns the open viewer socket with the times.
pub async fn attach_until_full_frame(
    api: &Api,
    id: &str,
    reference: &Screenshot,
    started: Instant,
) -> Result<(Box<Socket>, AttachTiming)> {
    let grant = api.attach(id, "control").await?;
    let token_at = started.elapsed();
    let ws_url = grant["ws_url"].as_str().context("the attach response has no ws_url")?;
    let token = grant["token"].as_str().context("the attach response has no token")?;
    let (mut socket, ready) = match viewer::connect(ws_url, token).await? {
        Hello::Ready { socket, ready } => (socket, ready),
        Hello::Rejected { code, message, .. } => {
            bail!("the worker rejected the viewer of session {id}: {code}: {message}")
        }
    };
    let ready_at = started.elapsed();

    let width = ready["width"].as_u64().context("ready has no width")? as usize;
    let height = ready["height"].as_u64().context("ready has no height")? as usize;
    if (width, height) != (WIDTH as usize, HEIGHT as usize) {
        bail!("session {id} has a {width}x{height} desktop; the benchmark needs {WIDTH}x{HEIGHT}");
    }

    let mut canvas = Canvas::new(width, height);
    let mut first_batch = None;
    let mut batches = 0;
    let mut bytes = 0;
    loop {
        let batch = read_batch(&mut socket).await?;
        let batch_at = started.elapsed();
        batches += 1;
        first_batch.get_or_insert(batch_at);
        bytes += batch.iter().map(Bytes::len).sum::<usize>();
        for message in &batch {
            canvas.apply(message)?;
        }
        let share = desktop::differing_share(&canvas.rgba, width, reference, SAMPLE_STEP);
        if share <= FULL_FRAME_TOLERANCE {
            let timing = AttachTiming {
                token: token_at,
                ready: ready_at,
                first_batch: first_batch.unwrap_or(batch_at),
                full_frame: batch_at,
                batches,
                bytes,
            };
            return Ok((socket, timing));
        }
        if batch_at > STEP_TIMEOUT {
            bail!(
                "session {id}: after {batches} batches in {batch_at:?}, {:.1}% of sampled pixels still differ from the target's screen",
                share * 100.0
            );
        }
    }
}

/// Reads messages up to and including the next batch end and returns the binary ones.
pub async fn read_batch(socket: &mut Socket) -> Result<Vec<Bytes>> {
    let mut messages = Vec::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message? {
                Message::Binary(bytes) => {
                    let end = bytes.first() == Some(&BATCH_END);
                    messages.push(bytes);
                    if end {
                        return Ok(());
                    }
                }
                Message::Close(frame) => bail!("the worker closed the viewer socket: {frame:?}"),
                _ => {}
            }
        }
        bail!("the viewer socket ended without a close frame")
    };
    tokio::time::timeout(STEP_TIMEOUT, read)
        .await
        .with_context(|| format!("no batch end within {STEP_TIMEOUT:?}"))??;
    Ok(messages)
}

/// Closes the viewer socket without a close frame, like a closed tab, and waits until the
/// session is `detached`.
pub async fn detach(api: &Api, id: &str, socket: Box<Socket>) -> Result<()> {
    drop(socket);
    api.wait_for_state(id, "detached", STEP_TIMEOUT).await?;
    Ok(())
}

/// Terminates session `id` and waits until it is `terminated`.
pub async fn terminate(api: &Api, id: &str) -> Result<()> {
    api.terminate(id, "benchmark step finished").await?;
    api.wait_for_state(id, "terminated", STEP_TIMEOUT).await?;
    Ok(())
}

/// Creates a session, waits for its first full frame and detaches; returns the session id.
pub async fn open_detached(api: &Api, target: &str, reference: &Screenshot) -> Result<String> {
    let id = create_session(api, target).await?;
    let (socket, _) = attach_until_full_frame(api, &id, reference, Instant::now()).await?;
    detach(api, &id, socket).await?;
    Ok(id)
}

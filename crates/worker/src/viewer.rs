//! The viewer WebSocket: redeem the attach token, attach to the session's actor, then stream
//! screen updates out and input in until either side leaves.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use rdp_proxy_core::token::AttachToken;
use rdp_proxy_core::{FencingToken, Rect, SessionId, ViewerId};
use rdp_proxy_rdp::SharedScreen;
use rdp_proxy_viewer::{
    ClientMessage, Encoding, ProtocolError, ServerMessage, close_code, encode_batch_end, encode_rect,
    parse_client_message,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::Shared;
use crate::session::{AttachError, Attachment, Command, ViewerEvent};

/// Transport-level cap on one incoming WebSocket message; the protocol limit is checked after.
const MAX_FRAME: usize = 64 * 1024;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Minimum time between two screen-update batches to one viewer (about 30 per second).
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// Malformed messages tolerated before the socket is closed.
const MAX_BAD_MESSAGES: u32 = 8;
/// Height of the bands a full-screen update is split into, so the browser can start drawing early.
const FULL_FRAME_BAND: u16 = 128;

pub(crate) fn router() -> Router<Shared> {
    Router::new().route("/v1/sessions/{session_id}/viewer", get(upgrade))
}

async fn upgrade(ws: WebSocketUpgrade, Path(session_id): Path<SessionId>, State(shared): State<Shared>) -> Response {
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| serve(socket, shared, session_id))
}

async fn serve(mut socket: WebSocket, shared: Shared, session_id: SessionId) {
    let viewer = ViewerId::new_random();
    let attachment = match handshake(&mut socket, &shared, session_id, viewer).await {
        Ok(attachment) => attachment,
        Err(Rejection {
            close_code,
            code,
            message,
        }) => {
            let org = shared
                .registry
                .get(session_id)
                .map_or_else(|| "unknown".to_owned(), |handle| handle.org.to_string());
            tracing::info!(org.id = %org, session.id = %session_id, viewer.id = %viewer, code, reason = %message, "Viewer rejected");
            shared.metrics.refused(&org, code);
            let _ = socket.send(text(&ServerMessage::error(code, message.clone()))).await;
            let _ = socket.send(close(close_code, &message)).await;
            return;
        }
    };
    let commands = attachment.commands.clone();
    let org = shared
        .registry
        .get(session_id)
        .map(|handle| handle.org.to_string())
        .unwrap_or_default();
    let span = tracing::info_span!("viewer", org.id = %org, session.id = %session_id, viewer.id = %viewer);
    let _ = tracing::Instrument::instrument(stream(socket, attachment, viewer, shared.traffic.clone()), span).await;
    let _ = commands.send(Command::ViewerGone { viewer }).await;
}

struct Rejection {
    close_code: u16,
    code: &'static str,
    message: String,
}

impl Rejection {
    fn new(close_code: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            close_code,
            code,
            message: message.into(),
        }
    }
}

/// Reads the hello, redeems its token and attaches; then sends `ready`.
async fn handshake(
    socket: &mut WebSocket,
    shared: &Shared,
    session_id: SessionId,
    viewer: ViewerId,
) -> Result<Attachment, Rejection> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
        .await
        .map_err(|_| Rejection::new(close_code::BAD_MESSAGE, "hello_timeout", "no hello message within 10 s"))?;
    let Some(Ok(Message::Text(first))) = first else {
        return Err(Rejection::new(
            close_code::BAD_MESSAGE,
            "bad_message",
            "the first message must be a text hello",
        ));
    };
    let token = match parse_client_message(first.as_str()) {
        Ok(ClientMessage::Hello { token }) => token,
        Ok(_) => {
            return Err(Rejection::new(
                close_code::BAD_MESSAGE,
                "bad_message",
                "the first message must be a hello",
            ));
        }
        Err(error) => {
            return Err(Rejection::new(
                close_code::BAD_MESSAGE,
                "bad_message",
                error.to_string(),
            ));
        }
    };
    let token = AttachToken::parse(&token)
        .map_err(|error| Rejection::new(close_code::BAD_TOKEN, "invalid_token", error.to_string()))?;
    let handle = shared.registry.get(session_id).ok_or_else(|| {
        Rejection::new(
            close_code::SESSION_GONE,
            "session_not_found",
            "this worker does not hold that session; request a new attach",
        )
    })?;
    let grant = shared
        .tokens
        .redeem(handle.org, &token)
        .await
        .map_err(|error| {
            Rejection::new(
                close_code::BAD_TOKEN,
                "token_store_unavailable",
                format!("could not check the token: {error}"),
            )
        })?
        .map_err(|error| {
            Rejection::new(
                close_code::BAD_TOKEN,
                "invalid_token",
                format!("{error}; request a new attach"),
            )
        })?;
    grant
        .verify(shared.id, session_id, OffsetDateTime::now_utc())
        .map_err(|error| Rejection::new(close_code::BAD_TOKEN, "invalid_token", error.to_string()))?;
    if grant.org != handle.org {
        return Err(Rejection::new(
            close_code::BAD_TOKEN,
            "invalid_token",
            "attach token belongs to another session",
        ));
    }
    if let Some(served) = shared.config.node_org
        && grant.org != served
    {
        return Err(Rejection::new(
            close_code::FORBIDDEN,
            "org_not_served",
            "this node serves another organisation",
        ));
    }
    crate::authz::check_attach(shared, &grant)
        .await
        .map_err(|reason| Rejection::new(close_code::FORBIDDEN, "forbidden", reason))?;
    let user = grant.user_name.clone();
    let (reply, answer) = oneshot::channel();
    let gone = || Rejection::new(close_code::SESSION_GONE, "session_not_found", "the session has ended");
    handle
        .commands
        .send(Command::Attach { grant, viewer, reply })
        .await
        .map_err(|_| gone())?;
    let attachment = answer.await.map_err(|_| gone())?.map_err(|error| match error {
        AttachError::Held { .. } => Rejection::new(close_code::CONTROL_HELD, "control_held", error.to_string()),
        AttachError::NotAttachable(_) => {
            Rejection::new(close_code::SESSION_GONE, "session_not_attachable", error.to_string())
        }
        AttachError::Store(_) => Rejection::new(close_code::SESSION_GONE, "internal", error.to_string()),
    })?;
    let (width, height) = attachment.screen.size();
    let ready = ServerMessage::Ready {
        session_id: session_id.0,
        viewer_id: viewer.0,
        width,
        height,
        fence: attachment.fence.0,
        user,
    };
    // A failed send here surfaces as a closed socket in `stream`.
    let _ = socket.send(text(&ready)).await;
    Ok(attachment)
}

/// Runs the attached viewer until the socket closes or the actor closes it.
async fn stream(socket: WebSocket, attachment: Attachment, viewer: ViewerId, traffic: crate::load::Traffic) {
    let Attachment {
        fence,
        screen,
        mut events,
        commands,
    } = attachment;
    let (mut sink, incoming) = socket.split();
    let (replies, mut reply_rx) = mpsc::channel::<ServerMessage>(16);
    let mut reader = tokio::spawn(read_input(incoming, commands, viewer, fence, replies));
    let mut updates = screen.subscribe();
    let mut pump = FramePump::new(Arc::clone(&screen));
    let mut dirty = true;
    let mut next_frame = Instant::now();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(ViewerEvent::Send(message)) => {
                    if sink.send(text(&message)).await.is_err() { break; }
                }
                Some(ViewerEvent::Close { code, reason }) => {
                    let _ = sink.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
            Some(message) = reply_rx.recv() => {
                if sink.send(text(&message)).await.is_err() { break; }
            }
            changed = updates.changed(), if !dirty => {
                if changed.is_err() { break; }
                dirty = true;
            }
            _ = tokio::time::sleep_until(next_frame), if dirty => {
                dirty = false;
                next_frame = Instant::now() + FRAME_INTERVAL;
                match pump.next_batch().await {
                    Ok(batch) => {
                        let mut failed = false;
                        for message in batch {
                            traffic.add(message_len(&message));
                            if sink.send(message).await.is_err() { failed = true; break; }
                        }
                        if failed { break; }
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "Could not encode a screen update");
                        break;
                    }
                }
            }
            end = &mut reader => {
                if let Ok(ReaderEnd::TooManyBadMessages) = end {
                    let _ = sink.send(close(close_code::BAD_MESSAGE, "too many malformed messages")).await;
                }
                break;
            }
        }
    }
    reader.abort();
}

enum ReaderEnd {
    Closed,
    TooManyBadMessages,
}

/// Forwards the viewer's input to the session actor; replies to pings and to malformed messages.
async fn read_input(
    mut incoming: futures::stream::SplitStream<WebSocket>,
    commands: mpsc::Sender<Command>,
    viewer: ViewerId,
    fence: FencingToken,
    replies: mpsc::Sender<ServerMessage>,
) -> ReaderEnd {
    let mut bad_messages = 0;
    while let Some(message) = incoming.next().await {
        let parsed = match message {
            Ok(Message::Text(text)) => parse_client_message(text.as_str()),
            Ok(Message::Binary(_)) => Err(ProtocolError::Binary),
            Ok(Message::Close(_)) | Err(_) => return ReaderEnd::Closed,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
        };
        let command = match parsed {
            Ok(ClientMessage::Input(event)) => Command::Input { viewer, fence, event },
            Ok(ClientMessage::Resize { width, height }) => Command::Resize {
                viewer,
                fence,
                width,
                height,
            },
            Ok(ClientMessage::Ping) => {
                let _ = replies.try_send(ServerMessage::Pong);
                continue;
            }
            Ok(ClientMessage::Hello { .. }) => {
                let _ = replies.try_send(ServerMessage::error("bad_message", "hello was already received"));
                continue;
            }
            Err(error) => {
                bad_messages += 1;
                tracing::debug!(error = %error, count = bad_messages, "Malformed viewer message");
                let _ = replies.try_send(ServerMessage::error("bad_message", error.to_string()));
                if bad_messages >= MAX_BAD_MESSAGES {
                    tracing::info!(count = bad_messages, "Closing viewer after repeated malformed messages");
                    return ReaderEnd::TooManyBadMessages;
                }
                continue;
            }
        };
        if commands.send(command).await.is_err() {
            return ReaderEnd::Closed;
        }
    }
    ReaderEnd::Closed
}

/// Turns screen damage into encoded WebSocket messages for one viewer.
struct FramePump {
    screen: Arc<SharedScreen>,
    seq: u64,
    size: (u16, u16),
    first: bool,
}

impl FramePump {
    fn new(screen: Arc<SharedScreen>) -> Self {
        let size = screen.size();
        Self {
            screen,
            seq: 0,
            size,
            first: true,
        }
    }

    /// Encodes what changed since the last batch (everything, the first time) on a blocking
    /// thread, and returns the messages ending with a batch-end marker.
    async fn next_batch(&mut self) -> Result<Vec<Message>, String> {
        let screen = Arc::clone(&self.screen);
        let since = if self.first { 0 } else { self.seq };
        let force_full = self.first;
        let known_size = self.size;
        let batch = tokio::task::spawn_blocking(move || encode_damage(&screen, since, force_full, known_size))
            .await
            .map_err(|error| format!("encoder task failed: {error}"))??;
        self.first = false;
        self.seq = batch.seq;
        self.size = batch.size;
        Ok(batch.messages)
    }
}

/// Messages for one batch, with the sequence number and screen size they reflect.
struct Batch {
    seq: u64,
    size: (u16, u16),
    messages: Vec<Message>,
}

fn encode_damage(screen: &SharedScreen, since: u64, force_full: bool, known_size: (u16, u16)) -> Result<Batch, String> {
    let damage = screen.damage_since(since);
    let size = screen.size();
    let mut messages = Vec::new();
    if size != known_size {
        messages.push(text(&ServerMessage::Resize {
            width: size.0,
            height: size.1,
        }));
    }
    let rects = if force_full || damage.full || size != known_size {
        full_screen_bands(size)
    } else {
        damage.rects
    };
    if rects.is_empty() {
        return Ok(Batch {
            seq: damage.seq,
            size,
            messages,
        });
    }
    let mut pixels = Vec::new();
    for rect in rects {
        let Some(rect) = rect.clip_to(size.0, size.1) else {
            continue;
        };
        screen.read_rgba(rect, &mut pixels);
        let mut encoded = Vec::new();
        encode_rect(rect, &pixels, Encoding::ZlibRgba, &mut encoded).map_err(|error| error.to_string())?;
        messages.push(Message::Binary(encoded.into()));
    }
    messages.push(Message::Binary(encode_batch_end().into()));
    Ok(Batch {
        seq: damage.seq,
        size,
        messages,
    })
}

fn full_screen_bands((width, height): (u16, u16)) -> Vec<Rect> {
    (0..height)
        .step_by(usize::from(FULL_FRAME_BAND))
        .map(|y| Rect::new(0, y, width, FULL_FRAME_BAND.min(height - y)))
        .collect()
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::from(message.to_json()))
}

fn close(code: u16, reason: &str) -> Message {
    // Close reasons are limited to 123 bytes by RFC 6455.
    let mut reason = reason.to_owned();
    while reason.len() > 120 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

fn message_len(message: &Message) -> u64 {
    let len = match message {
        Message::Binary(bytes) => bytes.len(),
        Message::Text(text) => text.len(),
        _ => 0,
    };
    u64::try_from(len).unwrap_or(u64::MAX)
}

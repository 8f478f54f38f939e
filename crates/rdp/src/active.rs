//! The active stage of a session: decoding server updates into the shared screen, sending
//! viewer input and the responses the server expects, and the Deactivation-Reactivation
//! Sequence.

use std::sync::Arc;
use std::time::Duration;

use ironrdp_connector::connection_activation::{ConnectionActivationFactory, ConnectionActivationState};
use ironrdp_core::WriteBuf;
use ironrdp_displaycontrol::pdu::MonitorLayoutEntry;
use ironrdp_pdu::Action;
use ironrdp_pdu::input::InputEventPdu;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent};
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason, McsMessage};
use ironrdp_pdu::rdp::capability_sets::InputFlags;
use ironrdp_pdu::rdp::headers::ShareDataPdu;
use ironrdp_pdu::x224::X224;
use ironrdp_session::{ActiveStage, ActiveStageOutput};
use ironrdp_tokio::{FramedWrite as _, TokioFramed, single_sequence_step_read};
use rdp_proxy_core::InputEvent;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{EndReason, error_chain, is_connection_closed};
use crate::input::{InputTranslator, MAX_EVENTS_PER_PDU, to_slow_path};
use crate::screen::SharedScreen;

/// Maximum number of queued viewer events sent together in one batch.
const MAX_INPUT_BATCH: usize = 64;
/// How long a stopping session may spend telling the server it disconnects.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the connection sequence hands over to the active stage.
pub(crate) struct Transport {
    pub(crate) framed: TokioFramed<TlsStream<TcpStream>>,
    pub(crate) active_stage: ActiveStage,
    pub(crate) screen: Arc<SharedScreen>,
    pub(crate) activation_factory: ConnectionActivationFactory,
    pub(crate) input_flags: InputFlags,
    pub(crate) refresh_rect_support: bool,
    pub(crate) suppress_output_support: bool,
    /// `host:port`, for logs and messages.
    pub(crate) target: String,
}

/// The newest requested desktop size. A watch channel rather than a queue, because only
/// the latest request matters when several arrive before the server can apply one.
type ResizeRequests = watch::Sender<Option<(u16, u16)>>;

/// An RDP session past the connection sequence, ready to [`run`](Self::run).
pub struct Connection {
    transport: Transport,
    resize_requests: Arc<ResizeRequests>,
    resize_receiver: watch::Receiver<Option<(u16, u16)>>,
}

impl Connection {
    pub(crate) fn new(transport: Transport) -> Self {
        let (resize_requests, resize_receiver) = watch::channel(None);
        Self {
            transport,
            resize_requests: Arc::new(resize_requests),
            resize_receiver,
        }
    }

    /// Desktop size the server chose, in pixels.
    pub fn size(&self) -> (u16, u16) {
        self.transport.screen.size()
    }

    pub fn screen(&self) -> Arc<SharedScreen> {
        Arc::clone(&self.transport.screen)
    }

    /// Returns a handle that requests desktop size changes while [`Self::run`] is running.
    pub fn resize_handle(&self) -> ResizeHandle {
        ResizeHandle {
            requests: Arc::clone(&self.resize_requests),
        }
    }

    /// Runs the active stage until the server disconnects, `stop` is cancelled, or an error
    /// happens. It keeps decoding into the screen whether or not anyone watches. When
    /// `input` closes, the session continues without input.
    pub async fn run(self, input: mpsc::Receiver<InputEvent>, stop: CancellationToken) -> EndReason {
        let Connection {
            transport,
            resize_requests,
            resize_receiver,
        } = self;
        // Only handles handed out earlier keep the resize channel open.
        drop(resize_requests);

        let target = transport.target.clone();
        let mut session = Session {
            translator: InputTranslator::new(transport.input_flags),
            transport,
            pending_resize: None,
        };
        let reason = session.run(input, resize_receiver, &stop).await;
        // The caller receives the reason as well, so this is the only log line for it.
        info!(target_address = %target, reason = %reason, "RDP session ended");
        reason
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.transport.target)
            .field("screen", &self.transport.screen)
            .finish_non_exhaustive()
    }
}

/// Requests desktop size changes over the Display Control Virtual Channel ([MS-RDPEDISP]).
#[derive(Debug, Clone)]
pub struct ResizeHandle {
    requests: Arc<ResizeRequests>,
}

/// Returned by [`ResizeHandle::resize`] when the session has ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resize: the RDP session has ended")]
pub struct SessionEnded;

impl ResizeHandle {
    /// Asks the server to change the desktop to `width`×`height` pixels.
    ///
    /// The size is adjusted to the protocol's limits: 200 to 8192 pixels, even width. The
    /// request waits until the server has opened the Display Control channel and is
    /// replaced by any newer request. The screen changes size only when the server
    /// reactivates the session with the new size. Servers without the channel, such as
    /// FreeRDP's shadow server, never apply it.
    ///
    /// NOTE: no test covers a server that applies the request, because the shadow server
    /// used by the tests never opens the channel.
    pub fn resize(&self, width: u16, height: u16) -> Result<(), SessionEnded> {
        if self.requests.is_closed() {
            return Err(SessionEnded);
        }
        self.requests.send_replace(Some((width, height)));
        Ok(())
    }
}

struct Session {
    transport: Transport,
    translator: InputTranslator,
    pending_resize: Option<(u16, u16)>,
}

impl Session {
    async fn run(
        &mut self,
        mut input: mpsc::Receiver<InputEvent>,
        mut resize_requests: watch::Receiver<Option<(u16, u16)>>,
        stop: &CancellationToken,
    ) -> EndReason {
        let mut input_open = true;
        let mut resize_open = true;
        let mut events: Vec<InputEvent> = Vec::with_capacity(MAX_INPUT_BATCH);

        loop {
            let step = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    self.disconnect().await;
                    return EndReason::Stopped;
                }
                received = input.recv_many(&mut events, MAX_INPUT_BATCH), if input_open => {
                    if received == 0 {
                        debug!(target_address = %self.transport.target, "Input channel closed, so the session continues without input");
                        input_open = false;
                        Ok(())
                    } else {
                        let result = self.send_input(&events).await;
                        events.clear();
                        result
                    }
                }
                changed = resize_requests.changed(), if resize_open => {
                    if changed.is_err() {
                        // Every ResizeHandle was dropped.
                        resize_open = false;
                        Ok(())
                    } else {
                        self.pending_resize = *resize_requests.borrow_and_update();
                        self.send_pending_resize(true).await
                    }
                }
                frame = self.transport.framed.read_pdu() => {
                    match frame {
                        Ok((action, frame)) => self.process_frame(action, &frame, stop).await,
                        Err(error) if is_connection_closed(&error) => {
                            Err(EndReason::ServerDisconnected("the server closed the connection".to_owned()))
                        }
                        Err(error) => Err(EndReason::Error(format!(
                            "reading from {} failed: {}",
                            self.transport.target,
                            error_chain(&error)
                        ))),
                    }
                }
            };
            if let Err(reason) = step {
                return reason;
            }
        }
    }

    async fn process_frame(&mut self, action: Action, frame: &[u8], stop: &CancellationToken) -> Result<(), EndReason> {
        let received_at = self.transport.framed.last_read_at();
        let transport = &mut self.transport;
        let processed = transport
            .screen
            .with_image(|image| transport.active_stage.process(image, action, frame, received_at));
        let regions = transport.active_stage.take_damage_regions();
        transport.screen.commit(&regions);

        let outputs = processed.map_err(|error| {
            EndReason::Error(format!(
                "processing a frame from {} failed: {}",
                self.transport.target,
                error_chain(&error)
            ))
        })?;

        for output in outputs {
            match output {
                ActiveStageOutput::ResponseFrame(response) => self.write(&response).await?,
                ActiveStageOutput::Terminate(reason) => {
                    return Err(EndReason::ServerDisconnected(reason.description()));
                }
                ActiveStageOutput::DeactivateAll => self.reactivate(stop).await?,
                ActiveStageOutput::ServerRedirection(_) => {
                    return Err(EndReason::Error(
                        "the server redirected the session to another server, which is not supported".to_owned(),
                    ));
                }
                ActiveStageOutput::LogonErrors(errors) => {
                    info!(target_address = %self.transport.target, logon_errors = ?errors, "Server reported a logon notification");
                }
                ActiveStageOutput::SaveSessionInfo { logon_complete } => {
                    debug!(target_address = %self.transport.target, logon_complete, "Server saved session information");
                }
                // Graphics are tracked through damage regions. Pointer shapes are ignored
                // because viewers draw their own cursor, and auto-reconnect cookies are
                // dropped because the proxy reconnects with credentials.
                _ => {}
            }
        }

        if self.transport.active_stage.take_bitmap_recovery_request() {
            self.request_full_redraw().await?;
        }
        if self.pending_resize.is_some() {
            self.send_pending_resize(false).await?;
        }
        Ok(())
    }

    async fn send_input(&mut self, events: &[InputEvent]) -> Result<(), EndReason> {
        let mut rdp_events: Vec<FastPathInputEvent> = Vec::with_capacity(events.len() * 2);
        for event in events {
            self.translator.translate(event, &mut rdp_events);
        }

        for chunk in rdp_events.chunks(MAX_EVENTS_PER_PDU) {
            let frame = if self.translator.uses_fast_path() {
                FastPathInput::new(chunk.to_vec())
                    .map_err(|error| error.to_string())
                    .and_then(|pdu| ironrdp_core::encode_vec(&pdu).map_err(|error| error.to_string()))
            } else {
                let mut buf = WriteBuf::new();
                self.transport
                    .active_stage
                    .encode_static(&mut buf, ShareDataPdu::Input(InputEventPdu(to_slow_path(chunk))))
                    .map(|_| buf.into_inner())
                    .map_err(|error| error_chain(&error))
            };
            let frame = frame.map_err(|reason| EndReason::Error(format!("encoding input failed: {reason}")))?;
            self.write(&frame).await?;
        }
        Ok(())
    }

    /// Sends the pending resize request once the Display Control channel is ready. It is
    /// retried after every frame, and `log_deferral` logs only the first wait.
    async fn send_pending_resize(&mut self, log_deferral: bool) -> Result<(), EndReason> {
        let Some((width, height)) = self.pending_resize else {
            return Ok(());
        };
        let (width, height) = MonitorLayoutEntry::adjust_display_size(u32::from(width), u32::from(height));
        // Checked first because IronRDP logs every encode attempt that finds the channel
        // missing, and this runs after every frame.
        let ready = self.transport.active_stage.display_control_ready() == Some(true);
        let encoded = if ready {
            self.transport.active_stage.encode_resize(width, height, None, None)
        } else {
            None
        };
        let Some(encoded) = encoded else {
            if log_deferral {
                debug!(target_address = %self.transport.target, width, height, "Resize deferred until the Display Control channel is ready");
            }
            return Ok(());
        };
        self.pending_resize = None;
        match encoded {
            Ok(frame) => {
                info!(target_address = %self.transport.target, width, height, "Requested desktop resize");
                self.write(&frame).await
            }
            Err(error) => {
                warn!(target_address = %self.transport.target, width, height, error = %error_chain(&error), "Could not encode a resize request");
                Ok(())
            }
        }
    }

    async fn request_full_redraw(&mut self) -> Result<(), EndReason> {
        let (width, height) = self.transport.screen.size();
        let frames = self
            .transport
            .active_stage
            .request_full_redraw(
                width,
                height,
                self.transport.refresh_rect_support,
                self.transport.suppress_output_support,
            )
            .map_err(|error| EndReason::Error(format!("encoding a redraw request failed: {}", error_chain(&error))))?;
        debug!(target_address = %self.transport.target, "Requested a full redraw after a malformed bitmap");
        for frame in frames {
            self.write(&frame).await?;
        }
        Ok(())
    }

    /// Runs the Deactivation-Reactivation Sequence, after which the desktop may have a new
    /// size.
    async fn reactivate(&mut self, stop: &CancellationToken) -> Result<(), EndReason> {
        let mut sequence = self.transport.activation_factory.create();
        let mut buf = WriteBuf::new();
        loop {
            let written = tokio::select! {
                () = stop.cancelled() => return Err(EndReason::Stopped),
                written = single_sequence_step_read(&mut self.transport.framed, &mut sequence, &mut buf) => written,
            };
            let written = written.map_err(|error| {
                if is_connection_closed(&error) {
                    EndReason::ServerDisconnected("the server closed the connection during reactivation".to_owned())
                } else {
                    EndReason::Error(format!("session reactivation failed: {}", error_chain(&error)))
                }
            })?;
            if written.size().is_some() {
                let response = buf.filled().to_vec();
                self.write(&response).await?;
            }

            if let ConnectionActivationState::Finalized {
                desktop_size,
                share_id,
                input_flags,
                static_channel_chunk_size,
                enable_server_pointer,
                pointer_software_rendering,
                refresh_rect_support,
                suppress_output_support,
                window_support_level,
            } = sequence.connection_activation_state()
            {
                let transport = &mut self.transport;
                let reactivated = transport.active_stage.reactivate(
                    sequence.io_channel_id(),
                    sequence.user_channel_id(),
                    share_id,
                    enable_server_pointer,
                    pointer_software_rendering,
                    static_channel_chunk_size,
                );
                if !reactivated {
                    return Err(EndReason::Error(
                        "the server sent an invalid virtual channel chunk size during reactivation".to_owned(),
                    ));
                }
                transport.active_stage.set_window_support_level(window_support_level);
                transport.refresh_rect_support = refresh_rect_support;
                transport.suppress_output_support = suppress_output_support;
                self.translator.set_flags(input_flags);
                transport.screen.resize(desktop_size.width, desktop_size.height);
                info!(
                    target_address = %transport.target,
                    width = desktop_size.width,
                    height = desktop_size.height,
                    "Session reactivated"
                );
                return Ok(());
            }
        }
    }

    async fn write(&mut self, frame: &[u8]) -> Result<(), EndReason> {
        if frame.is_empty() {
            return Ok(());
        }
        self.transport.framed.write_all(frame).await.map_err(|error| {
            if is_connection_closed(&error) {
                EndReason::ServerDisconnected("the server closed the connection".to_owned())
            } else {
                EndReason::Error(format!("writing to {} failed: {error}", self.transport.target))
            }
        })
    }

    /// Tells the server the user ended the session, then closes TLS. Failures only get logged
    /// because the session is ending anyway.
    async fn disconnect(&mut self) {
        let ultimatum = X224(McsMessage::DisconnectProviderUltimatum(
            DisconnectProviderUltimatum::from_reason(DisconnectReason::UserRequested),
        ));
        let result = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
            let frame = ironrdp_core::encode_vec(&ultimatum).map_err(|error| error.to_string())?;
            self.transport
                .framed
                .write_all(&frame)
                .await
                .map_err(|error| error.to_string())?;
            let (stream, _) = self.transport.framed.get_inner_mut();
            stream.shutdown().await.map_err(|error| error.to_string())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                debug!(target_address = %self.transport.target, error = %error, "Could not disconnect cleanly")
            }
            Err(_) => debug!(target_address = %self.transport.target, "Disconnecting timed out"),
        }
    }
}

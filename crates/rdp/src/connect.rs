//! The RDP connection sequence: TCP, X.224 security negotiation, TLS, CredSSP (NLA),
//! then IronRDP's capability exchange and finalization.
//!
//! Each step is run separately so that a failure can be classified by where it happened:
//! a closed connection during CredSSP means rejected credentials, a negotiation failure
//! means the configured security protocol is not the one the server requires.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ironrdp_connector::credssp::CredsspSequence;
use ironrdp_connector::sspi::generator::NetworkRequest;
use ironrdp_connector::{
    BitmapConfig, ClientConnector, ClientConnectorState, ConnectionOutcome, ConnectionResult, ConnectorError,
    ConnectorErrorExt as _, ConnectorErrorKind, ConnectorResult, Credentials, DesktopSize, ServerName,
};
use ironrdp_core::WriteBuf;
use ironrdp_displaycontrol::client::DisplayControlClient;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_pdu::gcc::{ConnectionType, KeyboardType};
use ironrdp_pdu::nego::FailureCode;
use ironrdp_pdu::rdp::capability_sets::{MajorPlatformType, RailSupportLevel, client_codecs_capabilities};
use ironrdp_pdu::rdp::client_info::{PerformanceFlags, TimezoneInfo};
use ironrdp_session::ActiveStageBuilder;
use ironrdp_tokio::{NetworkClient, TokioFramed};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::active::{Connection, Transport};
use crate::config::{ConnectConfig, SecurityMode};
use crate::error::{ConnectError, ConnectErrorKind, error_chain, is_connection_closed};
use crate::screen::SharedScreen;
use crate::tls;

/// Name the client reports to the server (at most 15 characters are sent).
const CLIENT_NAME: &str = "rdp-proxy";

/// Connection steps, in order, for error messages and timeout reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tcp,
    Negotiation,
    Tls,
    Credssp,
    Finalization,
}

impl Step {
    fn description(self) -> &'static str {
        match self {
            Step::Tcp => "the TCP connect",
            Step::Negotiation => "security negotiation",
            Step::Tls => "the TLS handshake",
            Step::Credssp => "NLA (CredSSP) authentication",
            Step::Finalization => "capability exchange and finalization",
        }
    }
}

/// Connects to the target and runs the RDP connection sequence up to the active stage.
///
/// The whole sequence is bounded by `cfg.connect_timeout`. On success the returned
/// [`Connection`] has a black framebuffer of the size the server chose. Call
/// [`Connection::run`] to start decoding.
pub async fn connect(cfg: &ConnectConfig) -> Result<Connection, ConnectError> {
    let target = if cfg.host.contains(':') {
        format!("[{}]:{}", cfg.host, cfg.port)
    } else {
        format!("{}:{}", cfg.host, cfg.port)
    };
    let started = Instant::now();
    let step = Mutex::new(Step::Tcp);

    let result = match tokio::time::timeout(cfg.connect_timeout, connect_steps(cfg, &target, &step)).await {
        Ok(result) => result,
        Err(_) => {
            let step = *step.lock().unwrap_or_else(PoisonError::into_inner);
            Err(ConnectError::new(
                ConnectErrorKind::TimedOut,
                format!(
                    "connecting to {target} timed out after {} ms during {}",
                    cfg.connect_timeout.as_millis(),
                    step.description()
                ),
            ))
        }
    };

    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match &result {
        Ok(connection) => {
            let (width, height) = connection.size();
            info!(target_address = %target, width, height, elapsed_ms, "Connected to RDP target");
        }
        Err(error) => {
            debug!(target_address = %target, kind = ?error.kind(), elapsed_ms, error = %error, "RDP connection failed");
        }
    }
    result
}

async fn connect_steps(cfg: &ConnectConfig, target: &str, step: &Mutex<Step>) -> Result<Connection, ConnectError> {
    let enter = |next: Step| {
        *step.lock().unwrap_or_else(PoisonError::into_inner) = next;
        debug!(target_address = %target, step = next.description(), "Starting connection step");
    };

    enter(Step::Tcp);
    let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|error| ConnectError::new(ConnectErrorKind::Unreachable, format!("cannot reach {target}: {error}")))?;
    // Input events are small and latency-sensitive.
    if let Err(error) = tcp.set_nodelay(true) {
        debug!(target_address = %target, error = %error, "Could not disable Nagle's algorithm");
    }
    let client_addr = tcp.local_addr().map_err(|error| {
        ConnectError::new(
            ConnectErrorKind::Unreachable,
            format!("cannot read the local address of the connection to {target}: {error}"),
        )
    })?;

    let mut connector = build_connector(cfg, client_addr)?;
    let mut framed = TokioFramed::new(tcp);

    enter(Step::Negotiation);
    let should_upgrade = ironrdp_tokio::connect_begin(&mut framed, &mut connector)
        .await
        .map_err(|error| classify_negotiation_error(&error, cfg.security, target))?;
    let (tcp, leftover) = framed.into_inner();
    if !leftover.is_empty() {
        return Err(ConnectError::new(
            ConnectErrorKind::Protocol,
            format!("{target} sent unexpected data before the TLS handshake"),
        ));
    }

    enter(Step::Tls);
    let upgraded_stream = tls::upgrade(tcp, &cfg.host, target, cfg.cert_sha256).await?;
    let upgraded = ironrdp_tokio::mark_as_upgraded(should_upgrade, &mut connector);
    let mut framed = TokioFramed::new(upgraded_stream.stream);
    let server_name = ServerName::new(cfg.host.clone());

    if connector.should_perform_credssp() {
        enter(Step::Credssp);
        run_credssp(
            &mut connector,
            &mut framed,
            server_name.clone(),
            upgraded_stream.server_public_key.clone(),
        )
        .await
        .map_err(|error| classify_credssp_error(&error, &cfg.username, target))?;
    }

    enter(Step::Finalization);
    let outcome = ironrdp_tokio::connect_finalize(
        upgraded,
        connector,
        &mut framed,
        &mut RejectingNetworkClient,
        server_name,
        upgraded_stream.server_public_key,
        None,
    )
    .await
    .map_err(|error| classify_finalization_error(&error, target))?;

    let result = match outcome {
        ConnectionOutcome::Connected(result) => result,
        ConnectionOutcome::Redirected(_) => {
            return Err(ConnectError::new(
                ConnectErrorKind::Protocol,
                format!("{target} redirected the connection to another server, which is not supported"),
            ));
        }
    };
    Ok(into_connection(result, framed, target))
}

fn build_connector(cfg: &ConnectConfig, client_addr: SocketAddr) -> Result<ClientConnector, ConnectError> {
    let codecs = client_codecs_capabilities(&[]).map_err(|reason| {
        ConnectError::new(
            ConnectErrorKind::Protocol,
            format!("cannot build the bitmap codec list: {reason}"),
        )
    })?;

    let config = ironrdp_connector::Config {
        desktop_size: DesktopSize {
            width: cfg.width,
            height: cfg.height,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: cfg.security != SecurityMode::Nla,
        enable_credssp: cfg.security != SecurityMode::Tls,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: cfg.username.clone(),
            password: cfg.password.expose().to_owned(),
        },
        domain: cfg.domain.clone(),
        client_build: 0,
        client_name: CLIENT_NAME.to_owned(),
        keyboard_type: KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        // NOTE: 0 sends no input locale, as IronRDP's own client does. Which layout a
        // Windows server then applies to the scancodes is untested.
        keyboard_layout: 0,
        connection_type: ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: Some(BitmapConfig {
            lossy_compression: false,
            color_depth: 32,
            codecs,
        }),
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        // Servers without NLA, such as xrdp, log the user on from the Client Info PDU.
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: PerformanceFlags::default(),
        license_cache: None,
        timezone_info: TimezoneInfo::default(),
        compression_type: None,
        // Viewers draw their own cursor, so the server's pointer shape is not tracked.
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    };

    let display_control = DisplayControlClient::new(|_capabilities| Ok(Vec::new()));
    Ok(ClientConnector::new(config, client_addr)
        .with_static_channel(DrdynvcClient::new().with_dynamic_channel(display_control)))
}

/// Runs the CredSSP exchange on its own so that its failures can be distinguished from later ones.
async fn run_credssp(
    connector: &mut ClientConnector,
    framed: &mut TokioFramed<tokio_rustls::client::TlsStream<TcpStream>>,
    server_name: ServerName,
    server_public_key: Vec<u8>,
) -> ConnectorResult<()> {
    let ClientConnectorState::Credssp { selected_protocol } = connector.state else {
        return Err(ConnectorError::general("connector is not in the CredSSP state"));
    };
    let (sequence, ts_request) = CredsspSequence::init(
        connector.config.credentials.clone(),
        connector.config.domain.as_deref(),
        selected_protocol,
        server_name,
        server_public_key,
        None,
    )?;
    let mut buf = WriteBuf::new();
    ironrdp_tokio::perform_credssp(framed, &mut RejectingNetworkClient, &mut buf, sequence, ts_request).await?;
    connector.mark_credssp_as_done();
    Ok(())
}

fn into_connection(
    result: ConnectionResult,
    framed: TokioFramed<tokio_rustls::client::TlsStream<TcpStream>>,
    target: &str,
) -> Connection {
    let ConnectionResult {
        io_channel_id,
        user_channel_id,
        message_channel_id,
        share_id,
        static_channels,
        desktop_size,
        input_flags,
        enable_server_pointer,
        pointer_software_rendering,
        refresh_rect_support,
        suppress_output_support,
        activation_factory,
        compression_type,
        ..
    } = result;

    let active_stage = ActiveStageBuilder {
        static_channels,
        user_channel_id,
        io_channel_id,
        message_channel_id,
        share_id,
        compression_type,
        enable_server_pointer,
        pointer_software_rendering,
    }
    .build();

    debug!(
        target_address = %target,
        width = desktop_size.width,
        height = desktop_size.height,
        input_flags = ?input_flags,
        "Connection sequence finished"
    );

    Connection::new(Transport {
        framed,
        active_stage,
        screen: Arc::new(SharedScreen::new(desktop_size.width, desktop_size.height)),
        activation_factory,
        input_flags,
        refresh_rect_support,
        suppress_output_support,
        target: target.to_owned(),
    })
}

/// A network client for CredSSP that rejects every request. NTLM, the only package used
/// without a Kerberos configuration, never makes one.
struct RejectingNetworkClient;

impl NetworkClient for RejectingNetworkClient {
    async fn send(&mut self, _request: &NetworkRequest) -> ConnectorResult<Vec<u8>> {
        Err(ConnectorError::general(
            "network requests during CredSSP are not supported (Kerberos is not configured)",
        ))
    }
}

fn classify_negotiation_error(error: &ConnectorError, security: SecurityMode, target: &str) -> ConnectError {
    if let ConnectorErrorKind::Negotiation(failure) = error.kind() {
        // IronRDP's wording for SSL_REQUIRED_BY_SERVER ("TLS or CredSSP") reads as if NLA
        // would do, but servers send it when they allow plain TLS and not NLA.
        let requirement = match failure.code() {
            FailureCode::SSL_REQUIRED_BY_SERVER => "the server requires TLS security without NLA".to_owned(),
            FailureCode::HYBRID_REQUIRED_BY_SERVER => "the server requires NLA (CredSSP)".to_owned(),
            FailureCode::SSL_NOT_ALLOWED_BY_SERVER => {
                "the server allows only Standard RDP Security, which this client does not support".to_owned()
            }
            _ => failure.to_string(),
        };
        return ConnectError::new(
            ConnectErrorKind::SecurityMismatch,
            format!(
                "{target} rejected the offered security protocols ({}): {requirement}",
                offered_protocols(security)
            ),
        );
    }
    if is_connection_closed(error) && security != SecurityMode::Auto {
        return ConnectError::new(
            ConnectErrorKind::SecurityMismatch,
            format!(
                "{target} closed the connection during security negotiation; it probably does not allow {}",
                offered_protocols(security)
            ),
        );
    }
    ConnectError::new(
        ConnectErrorKind::Protocol,
        format!("security negotiation with {target} failed: {}", error_chain(error)),
    )
}

fn classify_credssp_error(error: &ConnectorError, username: &str, target: &str) -> ConnectError {
    let rejected = match error.kind() {
        ConnectorErrorKind::AccessDenied => true,
        ConnectorErrorKind::Credssp(sspi_error) => {
            use ironrdp_connector::sspi::ErrorKind as SspiErrorKind;
            sspi_error.nstatus.is_some()
                || matches!(
                    sspi_error.error_type,
                    SspiErrorKind::LogonDenied
                        | SspiErrorKind::UnknownCredentials
                        | SspiErrorKind::NoCredentials
                        | SspiErrorKind::MessageAltered
                        | SspiErrorKind::IncompleteCredentials
                )
        }
        _ => false,
    };
    if rejected {
        return ConnectError::new(
            ConnectErrorKind::LogonFailed,
            format!(
                "{target} rejected the NLA logon of user {username:?}: {}",
                error_chain(error)
            ),
        );
    }
    if is_connection_closed(error) {
        return ConnectError::new(
            ConnectErrorKind::LogonFailed,
            format!(
                "{target} closed the connection during NLA authentication of user {username:?}, \
                 which usually means the user name or password is wrong"
            ),
        );
    }
    ConnectError::new(
        ConnectErrorKind::Protocol,
        format!("NLA authentication with {target} failed: {}", error_chain(error)),
    )
}

fn classify_finalization_error(error: &ConnectorError, target: &str) -> ConnectError {
    if matches!(error.kind(), ConnectorErrorKind::AccessDenied) {
        return ConnectError::new(
            ConnectErrorKind::LogonFailed,
            format!("{target} denied access: {}", error_chain(error)),
        );
    }
    if is_connection_closed(error) {
        return ConnectError::new(
            ConnectErrorKind::Protocol,
            format!(
                "{target} closed the connection during {}",
                Step::Finalization.description()
            ),
        );
    }
    ConnectError::new(
        ConnectErrorKind::Protocol,
        format!(
            "{} with {target} failed: {}",
            Step::Finalization.description(),
            error_chain(error)
        ),
    )
}

fn offered_protocols(security: SecurityMode) -> &'static str {
    match security {
        SecurityMode::Auto => "TLS or NLA",
        SecurityMode::Tls => "TLS without NLA",
        SecurityMode::Nla => "NLA only",
    }
}

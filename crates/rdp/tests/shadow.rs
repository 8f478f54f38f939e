//! Integration tests against FreeRDP's shadow server serving an Xvfb desktop.
//!
//! Each test starts its own display and server, so tests run in parallel and in any order.
//! They need `Xvfb`, `xdpyinfo`, `xsetroot`, `xdotool`, `xterm`, `freerdp-shadow-cli` and
//! `winpr-hash` on `PATH`.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use rdp_proxy_core::{InputEvent, Rect};
use rdp_proxy_rdp::{ConnectErrorKind, Connection, EndReason, SecurityMode, SessionEnded};
use support::{BACKGROUND, Desktop, ShadowAuth, ShadowServer, TempDir, close_to, eventually, free_port};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const USER: &str = "alice";
const PASSWORD: &str = "Pw-7f3a9c!secret";

/// A running session with the handles a test needs to drive and end it.
struct RunningSession {
    input: mpsc::Sender<InputEvent>,
    stop: CancellationToken,
    task: JoinHandle<EndReason>,
}

impl RunningSession {
    fn start(connection: Connection) -> Self {
        let (input, input_receiver) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let task = tokio::spawn(connection.run(input_receiver, stop.clone()));
        Self { input, stop, task }
    }

    async fn send(&self, event: InputEvent) {
        self.input.send(event).await.expect("session accepts input");
    }

    async fn stop(self) -> EndReason {
        self.stop.cancel();
        self.task.await.expect("session task does not panic")
    }
}

fn center_pixel(connection_screen: &rdp_proxy_rdp::SharedScreen) -> Vec<u8> {
    let (width, height) = connection_screen.size();
    let mut pixel = Vec::new();
    connection_screen.read_rgba(Rect::new(width / 2, height / 2, 1, 1), &mut pixel);
    pixel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_session_shows_background() {
    let desktop = Desktop::start(1024, 768);
    let server = ShadowServer::start(&desktop, ShadowAuth::TlsOnly);

    let connection = rdp_proxy_rdp::connect(&server.config(SecurityMode::Tls, USER, ""))
        .await
        .expect("TLS connection succeeds");
    // The shadow server serves its own size whatever the client asks for.
    assert_eq!(connection.size(), (desktop.width, desktop.height));

    let screen = connection.screen();
    let updates = screen.subscribe();
    let session = RunningSession::start(connection);

    let pixel = eventually("the background colour at the screen centre", || {
        let pixel = center_pixel(&screen);
        close_to(&pixel, BACKGROUND, 16).then_some(pixel)
    })
    .await;
    assert_eq!(pixel[3], 255, "alpha is forced to 255");
    assert!(*updates.borrow() > 0, "the sequence number advanced");

    let damage = screen.damage_since(0);
    assert!(!damage.rects.is_empty(), "damage reports the painted area");
    assert_eq!(damage.seq, screen.seq());

    let mut frame = Vec::new();
    screen.read_rgba(Rect::new(0, 0, desktop.width, desktop.height), &mut frame);
    assert_eq!(
        frame.len(),
        usize::from(desktop.width) * usize::from(desktop.height) * 4
    );
    assert!(frame.chunks_exact(4).all(|pixel| pixel[3] == 255));

    assert_eq!(session.stop().await, EndReason::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nla_session_connects_with_sam_user() {
    let desktop = Desktop::start(800, 600);
    let server = ShadowServer::start(
        &desktop,
        ShadowAuth::NlaOnly {
            user: USER.to_owned(),
            password: PASSWORD.to_owned(),
        },
    );

    for security in [SecurityMode::Nla, SecurityMode::Auto] {
        let connection = rdp_proxy_rdp::connect(&server.config(security, USER, PASSWORD))
            .await
            .unwrap_or_else(|error| panic!("NLA connection with {security:?} fails: {error}"));
        assert_eq!(connection.size(), (desktop.width, desktop.height));

        let screen = connection.screen();
        let session = RunningSession::start(connection);
        eventually("the background colour over NLA", || {
            close_to(&center_pixel(&screen), BACKGROUND, 16).then_some(())
        })
        .await;
        assert_eq!(session.stop().await, EndReason::Stopped);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_nla_password_is_logon_failed() {
    let desktop = Desktop::start(800, 600);
    let server = ShadowServer::start(
        &desktop,
        ShadowAuth::NlaOnly {
            user: USER.to_owned(),
            password: PASSWORD.to_owned(),
        },
    );

    let wrong_password = "Wrong-pw-93k2!";
    for security in [SecurityMode::Nla, SecurityMode::Auto] {
        let config = server.config(security, USER, wrong_password);
        let error = rdp_proxy_rdp::connect(&config)
            .await
            .expect_err("a wrong password is rejected");
        assert_eq!(error.kind(), ConnectErrorKind::LogonFailed, "{security:?}: {error}");

        let message = error.to_string();
        assert!(message.contains(USER), "the message names the user: {message}");
        assert!(!message.contains(wrong_password), "{message}");
        assert!(!format!("{error:?}").contains(wrong_password));
        assert!(!format!("{config:?}").contains(wrong_password));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_config_against_nla_server_is_mismatch() {
    let desktop = Desktop::start(640, 480);
    let server = ShadowServer::start(
        &desktop,
        ShadowAuth::NlaOnly {
            user: USER.to_owned(),
            password: PASSWORD.to_owned(),
        },
    );

    let error = rdp_proxy_rdp::connect(&server.config(SecurityMode::Tls, USER, PASSWORD))
        .await
        .expect_err("an NLA-only server rejects TLS");
    assert_eq!(error.kind(), ConnectErrorKind::SecurityMismatch, "{error}");
    assert!(error.to_string().contains("NLA"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nla_config_against_tls_server_is_mismatch() {
    let desktop = Desktop::start(640, 480);
    let server = ShadowServer::start(&desktop, ShadowAuth::TlsOnly);

    let error = rdp_proxy_rdp::connect(&server.config(SecurityMode::Nla, USER, PASSWORD))
        .await
        .expect_err("a TLS-only server rejects NLA");
    assert_eq!(error.kind(), ConnectErrorKind::SecurityMismatch, "{error}");
    assert!(error.to_string().contains("TLS"), "{error}");
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = free_port();
    let mut config = support_config(port);
    config.connect_timeout = Duration::from_secs(10);

    let error = rdp_proxy_rdp::connect(&config)
        .await
        .expect_err("nothing listens on the port");
    assert_eq!(error.kind(), ConnectErrorKind::Unreachable, "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[tokio::test]
async fn silent_listener_times_out() {
    // The kernel completes the TCP handshake, and nothing is ever sent back.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let port = listener.local_addr().expect("listener address").port();
    let mut config = support_config(port);
    config.connect_timeout = Duration::from_millis(500);

    let error = rdp_proxy_rdp::connect(&config)
        .await
        .expect_err("a silent server never completes the sequence");
    assert_eq!(error.kind(), ConnectErrorKind::TimedOut, "{error}");
    assert!(error.to_string().contains("security negotiation"), "{error}");
    drop(listener);
}

fn support_config(port: u16) -> rdp_proxy_rdp::ConnectConfig {
    rdp_proxy_rdp::ConnectConfig {
        host: "127.0.0.1".to_owned(),
        port,
        username: USER.to_owned(),
        password: rdp_proxy_rdp::Secret::new(PASSWORD),
        domain: None,
        security: SecurityMode::Auto,
        width: 800,
        height: 600,
        connect_timeout: support::WAIT_LIMIT,
        cert_sha256: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_certificate_is_enforced() {
    let desktop = Desktop::start(640, 480);
    let server = ShadowServer::start(&desktop, ShadowAuth::NoAuth);
    let fingerprint = server.certificate_sha256();

    let mut config = server.config(SecurityMode::Auto, USER, "");
    config.cert_sha256 = Some(fingerprint);
    let connection = rdp_proxy_rdp::connect(&config)
        .await
        .expect("the pinned certificate is accepted");
    drop(connection);

    let mut wrong = fingerprint;
    wrong[0] ^= 0xFF;
    config.cert_sha256 = Some(wrong);
    let error = rdp_proxy_rdp::connect(&config)
        .await
        .expect_err("another fingerprint is rejected");
    assert_eq!(error.kind(), ConnectErrorKind::CertificateMismatch, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mouse_move_reaches_desktop() {
    let desktop = Desktop::start(800, 600);
    let server = ShadowServer::start(&desktop, ShadowAuth::TlsOnly);
    let connection = rdp_proxy_rdp::connect(&server.config(SecurityMode::Tls, USER, ""))
        .await
        .expect("connection succeeds");
    let session = RunningSession::start(connection);

    for (x, y) in [(123, 234), (700, 50)] {
        session.send(InputEvent::MouseMove { x, y }).await;
        eventually("the X pointer at the sent position", || {
            (desktop.pointer_position() == Some((x, y))).then_some(())
        })
        .await;
    }

    assert_eq!(session.stop().await, EndReason::Stopped);
}

/// Set-1 scancodes for `touch ok` followed by Enter.
const TOUCH_OK: [u8; 9] = [0x14, 0x18, 0x16, 0x2E, 0x23, 0x39, 0x18, 0x25, 0x1C];
const LEFT_SHIFT: u8 = 0x2A;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_xterm_after_release_all() {
    let desktop = Desktop::start(800, 600);
    let work_dir = TempDir::new("xterm");
    let _xterm = desktop.start_xterm(work_dir.path());
    let server = ShadowServer::start(&desktop, ShadowAuth::TlsOnly);
    let connection = rdp_proxy_rdp::connect(&server.config(SecurityMode::Tls, USER, ""))
        .await
        .expect("connection succeeds");
    let session = RunningSession::start(connection);

    // Without a window manager, keyboard focus follows the pointer.
    session.send(InputEvent::MouseMove { x: 100, y: 100 }).await;
    eventually("the pointer over the xterm", || {
        (desktop.pointer_position() == Some((100, 100))).then_some(())
    })
    .await;

    // A Shift left pressed would turn the command into `TOUCH OK`, which fails.
    session
        .send(InputEvent::Key {
            scancode: LEFT_SHIFT,
            extended: false,
            down: true,
        })
        .await;
    session.send(InputEvent::ReleaseAll).await;

    for scancode in TOUCH_OK {
        for down in [true, false] {
            session
                .send(InputEvent::Key {
                    scancode,
                    extended: false,
                    down,
                })
                .await;
        }
    }

    let marker = work_dir.path().join("ok");
    eventually("the file created by the typed command", || {
        marker.exists().then_some(())
    })
    .await;

    assert_eq!(session.stop().await, EndReason::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_ends_session() {
    let desktop = Desktop::start(640, 480);
    let mut server = ShadowServer::start(&desktop, ShadowAuth::TlsOnly);
    let connection = rdp_proxy_rdp::connect(&server.config(SecurityMode::Tls, USER, ""))
        .await
        .expect("connection succeeds");
    let screen = connection.screen();
    let session = RunningSession::start(connection);
    eventually("the first update", || (screen.seq() > 0).then_some(())).await;

    server.kill();
    let reason = session.task.await.expect("session task does not panic");
    assert!(
        matches!(reason, EndReason::ServerDisconnected(_)),
        "unexpected end: {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_without_display_control_is_deferred() {
    let desktop = Desktop::start(640, 480);
    let server = ShadowServer::start(&desktop, ShadowAuth::TlsOnly);
    let connection = rdp_proxy_rdp::connect(&server.config(SecurityMode::Tls, USER, ""))
        .await
        .expect("connection succeeds");
    let screen = connection.screen();
    let resize = connection.resize_handle();
    let session = RunningSession::start(connection);

    // The shadow server never opens the Display Control channel, so the request waits and
    // the session keeps running at the old size.
    assert_eq!(resize.resize(1024, 768), Ok(()));
    session.send(InputEvent::MouseMove { x: 10, y: 10 }).await;
    eventually("the pointer to move after the resize request", || {
        (desktop.pointer_position() == Some((10, 10))).then_some(())
    })
    .await;
    assert_eq!(screen.size(), (desktop.width, desktop.height));

    assert_eq!(session.stop().await, EndReason::Stopped);
    assert_eq!(resize.resize(800, 600), Err(SessionEnded));
}

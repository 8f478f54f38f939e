//! Starts real RDP servers (freerdp-shadow-cli, xrdp) and connects xfreerdp to them.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_testkit::{
    ShadowMode, ShadowServer, XRDP_BACKGROUND, Xfreerdp, Xrdp, Xvfb, colors_near, connect_and_time_first_frame,
    is_listening, parse_hex_color,
};

const DESKTOP_COLOR: &str = "#2266cc";

/// Colour tolerance per channel, because the H.264 graphics pipeline shifts colours slightly.
const TOLERANCE: u8 = 16;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn desktop() -> Result<Xvfb> {
    let xvfb = Xvfb::start(1024, 768)?;
    xvfb.set_background(DESKTOP_COLOR)?;
    Ok(xvfb)
}

/// Polls the client's screen until the pixel at (`x`, `y`) is near `color`.
fn wait_for_pixel(client: &Xfreerdp, x: u32, y: u32, color: [u8; 3]) -> Result<()> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        let pixel = client.screen().pixel(x, y)?;
        if colors_near(pixel, color, TOLERANCE) {
            return Ok(());
        }
        last = Some(pixel);
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "client pixel ({x}, {y}) is {last:?}, not near {color:?}; xfreerdp log:\n{}",
        client.log_text()
    )
}

#[test]
fn shadow_tls_counts_one_connection() -> Result<()> {
    let xvfb = desktop()?;
    let server = ShadowServer::start(&xvfb, ShadowMode::NoAuthTls)?;
    // A bare TCP connection is accepted but is not an RDP connection.
    drop(TcpStream::connect(("127.0.0.1", server.port()))?);

    let mut client = Xfreerdp::connect(server.port(), "", "", 800, 600, &[])?;
    client.wait_first_frame(CONNECT_TIMEOUT)?;
    wait_for_pixel(&client, 10, 10, parse_hex_color(DESKTOP_COLOR)?)?;
    server.wait_for_connections(1, CONNECT_TIMEOUT)?;

    assert_eq!(server.connections_accepted(), 1, "log:\n{}", server.log_text());
    assert_eq!(server.clients_activated(), 1, "log:\n{}", server.log_text());
    assert_eq!(server.authentication_failures(), 0);
    Ok(())
}

#[test]
fn shadow_tls_rejects_nla_only_client() -> Result<()> {
    let xvfb = desktop()?;
    let server = ShadowServer::start(&xvfb, ShadowMode::NoAuthTls)?;

    let mut client = Xfreerdp::connect(server.port(), "u", "p", 640, 480, &["/sec:nla"])?;
    let status = client.wait_exit(CONNECT_TIMEOUT)?;

    assert!(!status.success());
    assert_eq!(server.connections_accepted(), 0, "log:\n{}", server.log_text());
    Ok(())
}

#[test]
fn shadow_any_security_serves_frames() -> Result<()> {
    let xvfb = desktop()?;
    let server = ShadowServer::start(&xvfb, ShadowMode::NoAuthAny)?;

    connect_and_time_first_frame(server.port(), "anyone", "anything", 640, 480)?;
    server.wait_for_connections(1, CONNECT_TIMEOUT)?;

    assert_eq!(server.connections_accepted(), 1, "log:\n{}", server.log_text());
    Ok(())
}

#[test]
fn shadow_nla_accepts_right_password() -> Result<()> {
    let xvfb = desktop()?;
    let server = ShadowServer::start(&xvfb, ShadowMode::nla("alice", "s3cret-pw"))?;

    let mut client = Xfreerdp::connect(server.port(), "alice", "s3cret-pw", 640, 480, &["+auth-only"])?;
    let status = client.wait_exit(CONNECT_TIMEOUT)?;

    assert!(
        status.success(),
        "xfreerdp exited with {status}; log:\n{}",
        client.log_text()
    );
    assert_eq!(server.authentication_failures(), 0, "log:\n{}", server.log_text());
    Ok(())
}

#[test]
fn shadow_nla_rejects_wrong_password() -> Result<()> {
    let xvfb = desktop()?;
    let server = ShadowServer::start(&xvfb, ShadowMode::nla("alice", "s3cret-pw"))?;

    let mut client = Xfreerdp::connect(server.port(), "alice", "wrong", 640, 480, &["+auth-only"])?;
    let status = client.wait_exit(CONNECT_TIMEOUT)?;

    assert_eq!(status.code(), Some(147));
    assert_eq!(server.authentication_failures(), 1, "log:\n{}", server.log_text());
    assert_eq!(server.connections_accepted(), 0, "log:\n{}", server.log_text());
    Ok(())
}

#[test]
fn shadow_nla_first_frame_is_timed() -> Result<()> {
    let xvfb = desktop()?;
    let server = ShadowServer::start(&xvfb, ShadowMode::nla("alice", "s3cret-pw"))?;

    let elapsed = connect_and_time_first_frame(server.port(), "alice", "s3cret-pw", 800, 600)?;
    server.wait_for_connections(1, CONNECT_TIMEOUT)?;

    assert!(elapsed > Duration::ZERO);
    assert_eq!(server.connections_accepted(), 1, "log:\n{}", server.log_text());
    Ok(())
}

#[test]
fn shadow_cert_sha256_matches_openssl() -> Result<()> {
    let xvfb = Xvfb::start(64, 64)?;
    let server = ShadowServer::start(&xvfb, ShadowMode::NoAuthTls)?;

    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(server.cert_path())
        .output()
        .context("failed to run openssl")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let expected = text
        .trim()
        .rsplit('=')
        .next()
        .context("openssl printed no fingerprint")?
        .replace(':', "")
        .to_lowercase();

    let actual: String = server.cert_sha256()?.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(actual, expected);
    Ok(())
}

#[test]
fn xrdp_session_paints_and_cleans_up() -> Result<()> {
    const USER: &str = "rdpproxy-test";
    let mut xrdp = Xrdp::start(USER, "xrdp-pw-1")?;
    assert!(is_listening(xrdp.port()));
    assert!(is_listening(xrdp.sesman_port()));

    let client = Xfreerdp::connect(xrdp.port(), USER, "xrdp-pw-1", 800, 600, &[])?;
    wait_for_pixel(&client, 5, 5, parse_hex_color(XRDP_BACKGROUND)?)?;
    assert_eq!(xrdp.sessions_started(), 1, "log:\n{}", xrdp.log_text());
    assert!(!processes_of_user(USER)?.is_empty());

    drop(client);
    xrdp.stop();

    assert!(!is_listening(xrdp.port()));
    assert_eq!(processes_of_user(USER)?, Vec::<u32>::new());
    Ok(())
}

/// Lists the PIDs of live processes owned by `user`.
fn processes_of_user(user: &str) -> Result<Vec<u32>> {
    let output = Command::new("ps")
        .args(["-u", user, "-o", "pid=,stat="])
        .output()
        .context("failed to run ps")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            let state = fields.next()?;
            (!state.starts_with('Z')).then_some(pid)
        })
        .collect())
}

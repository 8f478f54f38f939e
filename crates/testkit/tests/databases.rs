//! Starts real PostgreSQL and Redis servers and queries them with their command-line clients.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use rdp_proxy_testkit::{Postgres, Redis, is_listening};

fn redis_cli(port: u16, args: &[&str]) -> Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("failed to run redis-cli")?;
    ensure!(
        output.status.success(),
        "redis-cli {args:?} exited with {}",
        output.status
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn postgres_select_one_succeeds() -> Result<()> {
    let postgres = Postgres::start()?;

    assert_eq!(postgres.psql("postgres", "SELECT 1")?.trim(), "1");
    assert_eq!(
        postgres.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", postgres.port())
    );
    Ok(())
}

#[test]
fn postgres_creates_database() -> Result<()> {
    let postgres = Postgres::start()?;

    let url = postgres.create_database("tenant_a")?;

    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/tenant_a", postgres.port())
    );
    assert_eq!(
        postgres.psql("tenant_a", "SELECT current_database()")?.trim(),
        "tenant_a"
    );
    assert!(postgres.create_database("bad\"name").is_err());
    Ok(())
}

#[test]
fn postgres_stop_closes_port() -> Result<()> {
    let mut postgres = Postgres::start()?;
    let port = postgres.port();
    assert!(is_listening(port));

    postgres.stop();

    assert!(!is_listening(port));
    assert!(postgres.psql("postgres", "SELECT 1").is_err());
    Ok(())
}

#[test]
fn redis_ping_returns_pong() -> Result<()> {
    let redis = Redis::start()?;

    assert_eq!(redis_cli(redis.port(), &["PING"])?, "PONG");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    Ok(())
}

#[test]
fn redis_restart_empty_drops_data() -> Result<()> {
    let mut redis = Redis::start()?;
    let port = redis.port();
    assert_eq!(redis_cli(port, &["SET", "lease", "worker-1"])?, "OK");
    assert_eq!(redis_cli(port, &["GET", "lease"])?, "worker-1");

    redis.restart_empty()?;

    assert_eq!(redis.port(), port);
    assert_eq!(redis_cli(port, &["PING"])?, "PONG");
    assert_eq!(redis_cli(port, &["GET", "lease"])?, "");
    assert_eq!(redis_cli(port, &["DBSIZE"])?, "0");
    Ok(())
}

#[test]
fn redis_stop_then_restart() -> Result<()> {
    let mut redis = Redis::start()?;
    let port = redis.port();

    redis.stop();
    assert!(!redis.is_running());
    assert!(!is_listening(port));

    redis.restart_empty()?;
    assert_eq!(redis_cli(port, &["PING"])?, "PONG");
    Ok(())
}

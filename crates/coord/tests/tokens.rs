//! Attach tokens and routing against a real Redis.

use std::time::Duration;

use rdp_proxy_coord::{Coord, TokenStore, WorkerBeat};
use rdp_proxy_core::lease::AttachMode;
use rdp_proxy_core::token::{AttachGrant, TokenError};
use rdp_proxy_core::{OrgId, SessionId, UserId, WorkerId};
use rdp_proxy_testkit::Redis;
use time::OffsetDateTime;

fn grant(org: OrgId) -> AttachGrant {
    AttachGrant {
        org,
        user: UserId::new_random(),
        user_name: "alice".into(),
        session: SessionId::new_random(),
        worker: WorkerId::new_random(),
        mode: AttachMode::Control,
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(30),
    }
}

async fn start() -> anyhow::Result<(Redis, Coord)> {
    let redis = tokio::task::spawn_blocking(Redis::start).await??;
    let coord = Coord::connect(&redis.url()).await?;
    Ok((redis, coord))
}

#[tokio::test(flavor = "multi_thread")]
async fn token_redeems_once_under_concurrency() -> anyhow::Result<()> {
    let (_redis, coord) = start().await?;
    let tokens = TokenStore::new(coord);
    let org = OrgId::new_random();
    let issued = grant(org);
    let token = tokens.issue(&issued, OffsetDateTime::now_utc()).await?;
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (tokens, token) = (tokens.clone(), token.clone());
        handles.push(tokio::spawn(async move { tokens.redeem(org, &token).await }));
    }
    let mut redeemed = 0;
    for handle in handles {
        match handle.await?? {
            Ok(grant) => {
                assert_eq!(grant, issued);
                redeemed += 1;
            }
            Err(error) => assert_eq!(error, TokenError::NotFound),
        }
    }
    assert_eq!(redeemed, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_scoped_to_its_organisation() -> anyhow::Result<()> {
    let (_redis, coord) = start().await?;
    let tokens = TokenStore::new(coord);
    let org = OrgId::new_random();
    let token = tokens.issue(&grant(org), OffsetDateTime::now_utc()).await?;
    assert_eq!(
        tokens.redeem(OrgId::new_random(), &token).await?,
        Err(TokenError::NotFound)
    );
    assert!(
        tokens.redeem(org, &token).await?.is_ok(),
        "a foreign redeem must not consume the token"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn token_expires_with_its_grant() -> anyhow::Result<()> {
    let (_redis, coord) = start().await?;
    let tokens = TokenStore::new(coord);
    let org = OrgId::new_random();
    let mut short = grant(org);
    short.expires_at = OffsetDateTime::now_utc() + time::Duration::milliseconds(200);
    let token = tokens.issue(&short, OffsetDateTime::now_utc()).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(tokens.redeem(org, &token).await?, Err(TokenError::NotFound));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_and_routes_expire_and_survive_restart() -> anyhow::Result<()> {
    let (mut redis, coord) = start().await?;
    let beat = WorkerBeat {
        id: WorkerId::new_random(),
        viewer_url: "ws://127.0.0.1:1".into(),
        internal_url: "http://127.0.0.1:1".into(),
        sessions: 0,
        version: "test".into(),
        node: None,
        load: None,
        config_version: None,
    };
    coord.beat(&beat, Duration::from_millis(300)).await?;
    assert_eq!(coord.live_workers().await?, vec![beat.clone()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        coord.live_workers().await?.is_empty(),
        "a heartbeat expires without renewal"
    );

    let (org, session) = (OrgId::new_random(), SessionId::new_random());
    coord.set_route(org, session, beat.id, Duration::from_secs(30)).await?;
    tokio::task::block_in_place(|| redis.restart_empty())?;
    let mut route = Err(None);
    for _ in 0..50 {
        // The connection manager reconnects by itself; the first requests may fail meanwhile.
        match coord.route(org, session).await {
            Ok(found) => {
                route = Ok(found);
                break;
            }
            Err(error) => route = Err(Some(error.to_string())),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        route,
        Ok(None),
        "Redis restarted empty has no route until the worker re-asserts it"
    );
    coord.set_route(org, session, beat.id, Duration::from_secs(30)).await?;
    assert_eq!(coord.route(org, session).await?, Some(beat.id));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn login_failures_block_after_limit() -> anyhow::Result<()> {
    let (_redis, coord) = start().await?;
    for _ in 0..rdp_proxy_coord::MAX_LOGIN_FAILURES - 1 {
        coord.record_login_failure("Alice").await?;
    }
    assert_eq!(coord.login_blocked_for("alice").await?, None, "below the limit");
    coord.record_login_failure(" alice ").await?;
    let wait = coord.login_blocked_for("ALICE").await?.expect("blocked at the limit");
    assert!(
        wait <= rdp_proxy_coord::FAILURE_WINDOW.as_secs(),
        "wait {wait} s exceeds the window"
    );
    assert_eq!(
        coord.login_blocked_for("bob").await?,
        None,
        "other names are not blocked"
    );
    coord.clear_login_failures("alice").await?;
    assert_eq!(
        coord.login_blocked_for("alice").await?,
        None,
        "a successful login clears the count"
    );
    Ok(())
}

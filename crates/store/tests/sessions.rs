//! Session storage against a real PostgreSQL: lifecycle rules, versioned transitions that fail
//! cleanly on a race, the event history and organisation scoping.

mod common;

use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{FencingToken, OrgId, SessionState, TransitionError, WorkerId};
use rdp_proxy_store::{ControlUpdate, SessionRecord, Store, StoreError, TargetFilter, Transition};

struct Fixture {
    store: Store,
    org: OrgId,
    session: SessionRecord,
    _db: common::Db,
}

async fn fixture() -> anyhow::Result<Fixture> {
    let db = common::database().await?;
    let tenant = common::tenant(&db.store, "default").await?;
    let session = common::session(&db.store, &tenant).await?;
    Ok(Fixture {
        store: db.store.clone(),
        org: tenant.org,
        session,
        _db: db,
    })
}

fn to(state: SessionState, kind: EventKind) -> Transition {
    Transition::new(state, kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_records_versions_and_events() -> anyhow::Result<()> {
    let f = fixture().await?;
    assert_eq!(f.session.state, SessionState::Requested);
    assert_eq!(f.session.version, 1);
    let mut connecting = to(SessionState::Connecting, EventKind::Connecting).expect_version(1);
    connecting.worker = Some(WorkerId::new_random());
    let record = f.store.transition(f.org, f.session.id, connecting).await?;
    assert_eq!((record.state, record.version), (SessionState::Connecting, 2));
    let mut connected = to(SessionState::Detached, EventKind::Connected);
    connected.size = Some((1920, 1080));
    let record = f.store.transition(f.org, f.session.id, connected).await?;
    assert_eq!((record.width, record.height), (1920, 1080));
    let mut attached = to(SessionState::Active, EventKind::Attached);
    attached.control = Some(Some(ControlUpdate {
        user: f.session.owner,
        fence: FencingToken(1),
        since: time::OffsetDateTime::now_utc(),
    }));
    let record = f.store.transition(f.org, f.session.id, attached).await?;
    assert_eq!(record.control_user_name.as_deref(), Some("default-alice"));
    assert_eq!(record.control_fence, FencingToken(1));
    let record = f
        .store
        .transition(
            f.org,
            f.session.id,
            to(SessionState::Terminated, EventKind::Terminated).reason("done"),
        )
        .await?;
    assert!(record.ended_at.is_some());
    assert_eq!(record.control_user, None, "a final session has no controller");
    assert_eq!(record.control_fence, FencingToken(1), "the fencing token is kept");
    let kinds: Vec<String> = f
        .store
        .session_events(f.org, f.session.id)
        .await?
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds,
        ["requested", "connecting", "connected", "attached", "terminated"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn illegal_and_final_transitions_fail_without_change() -> anyhow::Result<()> {
    let f = fixture().await?;
    let error = f
        .store
        .transition(f.org, f.session.id, to(SessionState::Active, EventKind::Attached))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Transition(TransitionError::NotAllowed { .. })),
        "{error:?}"
    );
    f.store
        .transition(f.org, f.session.id, to(SessionState::Failed, EventKind::Failed))
        .await?;
    let error = f
        .store
        .transition(f.org, f.session.id, to(SessionState::Connecting, EventKind::Connecting))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Transition(TransitionError::Final { .. })),
        "{error:?}"
    );
    let events = f.store.session_events(f.org, f.session.id).await?;
    assert_eq!(events.len(), 2, "rejected transitions add no event");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_get_exactly_one_winner() -> anyhow::Result<()> {
    let f = fixture().await?;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = f.store.clone();
        let id = f.session.id;
        let org = f.org;
        handles.push(tokio::spawn(async move {
            store
                .transition(
                    org,
                    id,
                    Transition::new(SessionState::Connecting, EventKind::Connecting).expect_version(1),
                )
                .await
        }));
    }
    let mut winners = 0;
    for handle in handles {
        match handle.await? {
            Ok(_) => winners += 1,
            Err(StoreError::Transition(TransitionError::VersionConflict { expected: 1, found: 2 })) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(f.store.get_session(f.org, f.session.id).await?.version, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn other_organisation_sees_nothing() -> anyhow::Result<()> {
    let f = fixture().await?;
    let other = f.store.ensure_org("other").await?;
    let error = f.store.get_session(other, f.session.id).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { what: "session" }));
    assert!(
        f.store
            .list_sessions(other, None, None, None, 100)
            .await?
            .items
            .is_empty()
    );
    let requested = f
        .store
        .list_sessions(f.org, None, Some(SessionState::Requested), None, 100)
        .await?
        .items;
    assert_eq!(requested.len(), 1, "the state filter keeps matching sessions");
    let active = f
        .store
        .list_sessions(f.org, None, Some(SessionState::Active), None, 100)
        .await?
        .items;
    assert!(active.is_empty(), "the state filter drops other states");
    assert!(f.store.session_events(other, f.session.id).await?.is_empty());
    let mut tx = f.store.org_tx(other).await?;
    assert!(tx.all_targets(&TargetFilter::default()).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fencing_token_never_goes_back() -> anyhow::Result<()> {
    let f = fixture().await?;
    f.store
        .transition(f.org, f.session.id, to(SessionState::Connecting, EventKind::Connecting))
        .await?;
    f.store
        .transition(f.org, f.session.id, to(SessionState::Detached, EventKind::Connected))
        .await?;
    let control = |fence| {
        Some(Some(ControlUpdate {
            user: f.session.owner,
            fence: FencingToken(fence),
            since: time::OffsetDateTime::now_utc(),
        }))
    };
    let mut attach = to(SessionState::Active, EventKind::Attached);
    attach.control = control(5);
    f.store.transition(f.org, f.session.id, attach).await?;
    let mut stale = to(SessionState::Active, EventKind::TakenOver);
    stale.control = control(4);
    assert!(f.store.transition(f.org, f.session.id, stale).await.is_err());
    assert_eq!(
        f.store.get_session(f.org, f.session.id).await?.control_fence,
        FencingToken(5)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_of_a_lost_worker_are_fenced() -> anyhow::Result<()> {
    let f = fixture().await?;
    let worker = WorkerId::new_random();
    let fence = f.store.register_worker(worker, None).await?;
    let mut claim = to(SessionState::Connecting, EventKind::Connecting)
        .expect_version(1)
        .held_by(worker, fence);
    claim.worker = Some(worker);
    let record = f.store.transition(f.org, f.session.id, claim).await?;
    assert_eq!(record.worker_fence, Some(fence));

    // Another live worker cannot write to a session it does not hold.
    let other = WorkerId::new_random();
    let other_fence = f.store.register_worker(other, None).await?;
    let stolen = f
        .store
        .transition(
            f.org,
            f.session.id,
            to(SessionState::Detached, EventKind::Connected).held_by(other, other_fence),
        )
        .await;
    assert!(matches!(stolen, Err(StoreError::StaleFence { .. })), "{stolen:?}");

    // Declared lost: its writes are refused, and registering again does not revive the claim.
    assert!(f.store.end_worker(worker, true, "no heartbeat").await?);
    let late = f
        .store
        .transition(
            f.org,
            f.session.id,
            to(SessionState::Detached, EventKind::Connected).held_by(worker, fence),
        )
        .await;
    assert!(matches!(late, Err(StoreError::StaleFence { .. })), "{late:?}");
    let again = f.store.register_worker(worker, None).await?;
    assert!(again > fence);
    let revived = f
        .store
        .transition(
            f.org,
            f.session.id,
            to(SessionState::Detached, EventKind::Connected).held_by(worker, again),
        )
        .await;
    assert!(matches!(revived, Err(StoreError::StaleFence { .. })), "{revived:?}");
    let unchanged = f.store.get_session(f.org, f.session.id).await?;
    assert_eq!(unchanged.state, SessionState::Connecting);

    // Pruning deletes only registrations that ended.
    assert!(f.store.end_worker(other, false, "stopped").await?);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(f.store.prune_worker_registrations(std::time::Duration::ZERO).await?, 1);
    assert!(f.store.worker_registration(other).await?.is_none());
    assert!(f.store.worker_registration(worker).await?.is_some_and(|r| r.live));
    Ok(())
}

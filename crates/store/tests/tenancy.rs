//! The walls between organisations as PostgreSQL enforces them, the audit chain, policy
//! versions and refresh-token rotation, against a real server.

mod common;

use rdp_proxy_core::audit::{ActorKind, Outcome};
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{SessionState, TargetId};
use rdp_proxy_store::{AuditEntry, AuditFilter, RefreshOutcome, Store, StoreError, TargetFilter, Transition};
use sqlx::Row;

/// Every table that holds an organisation's data.
const TENANT_TABLES: [&str; 12] = [
    "memberships",
    "targets",
    "credentials",
    "org_keys",
    "sessions",
    "session_events",
    "policies",
    "logins",
    "refresh_tokens",
    "api_keys",
    "audit_events",
    "audit_heads",
];

#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_hides_rows_without_an_organisation() -> anyhow::Result<()> {
    let db = common::database().await?;
    let a = common::tenant(&db.store, "org-a").await?;
    let session = common::session(&db.store, &a).await?;
    db.store
        .transition(
            a.org,
            session.id,
            Transition::new(SessionState::Failed, EventKind::Failed).reason("test"),
        )
        .await?;

    // The owner sees the rows, so they exist.
    for table in TENANT_TABLES {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(db.owner.pool())
            .await?;
        if !matches!(
            table,
            "org_keys" | "policies" | "logins" | "refresh_tokens" | "api_keys"
        ) {
            assert!(count > 0, "{table} should have rows for this test");
        }
    }

    // The service login, with no organisation named, reads nothing from any of them.
    let service = sqlx::PgPool::connect(&db.service_url).await?;
    for table in TENANT_TABLES {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&service)
            .await?;
        assert_eq!(count, 0, "{table} leaked rows without an organisation set");
    }

    // Naming another organisation shows nothing of this one either, and writing this
    // organisation's rows from there is refused.
    let b = db.store.ensure_org("org-b").await?;
    let mut tx = service.begin().await?;
    sqlx::query("SELECT set_config('rdp_proxy.org_id', $1, true)")
        .bind(b.0.to_string())
        .execute(&mut *tx)
        .await?;
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(visible, 0);
    let updated = sqlx::query("UPDATE sessions SET reason = 'tampered'")
        .execute(&mut *tx)
        .await?;
    assert_eq!(updated.rows_affected(), 0);
    let insert = sqlx::query("INSERT INTO policies (org_id, text, version) VALUES ($1, 'x', 1)")
        .bind(a.org.0)
        .execute(&mut *tx)
        .await;
    let error = insert.expect_err("a row for another organisation must be refused");
    assert!(error.to_string().contains("row-level security"), "{error}");
    drop(tx);

    // The service role cannot switch the wall off.
    let result = sqlx::query("SET row_security = off; SELECT count(*) FROM sessions")
        .execute(&service)
        .await;
    if result.is_ok() {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&service)
            .await?;
        assert_eq!(count, 0);
    }
    let error = sqlx::query("ALTER TABLE sessions DISABLE ROW LEVEL SECURITY")
        .execute(&service)
        .await
        .expect_err("the service role must not own the tables");
    assert!(error.to_string().contains("owner"), "{error}");

    // Services refuse to start with a login that would bypass the policies.
    let error = db.owner.check_service_login().await.unwrap_err();
    assert!(error.to_string().contains("superuser"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_chain_verifies_and_detects_tampering() -> anyhow::Result<()> {
    let db = common::database().await?;
    let a = common::tenant(&db.store, "org-a").await?;
    let b = common::tenant(&db.store, "org-b").await?;
    for n in 0..5 {
        let entry = AuditEntry::new("target.update", "target", Outcome::Ok)
            .actor(ActorKind::User, Some(a.user.0), Some("Zoë Ünïcode 山田".into()))
            .object(a.target.0)
            .details(serde_json::json!({"n": n, "nested": {"b": 1, "a": [1, 2]}}));
        db.store.audit(a.org, &entry).await?;
    }
    db.store
        .audit(
            b.org,
            &AuditEntry::new("login", "user", Outcome::Denied).reason("wrong password"),
        )
        .await?;
    let check = db.store.verify_audit(a.org).await?;
    assert_eq!((check.checked, check.first_bad_seq), (5, None), "{check:?}");
    assert_eq!(db.store.verify_audit(b.org).await?.checked, 1);

    // Records are append-only, even for the service role with the right organisation set.
    let mut tx = db.store.org_tx(a.org).await?;
    let page = tx.list_audit(&AuditFilter::default(), None, 2).await?;
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].seq, 5, "newest first");
    let next = tx.list_audit(&AuditFilter::default(), page.next.as_ref(), 10).await?;
    assert_eq!(next.items.first().map(|record| record.seq), Some(3));
    drop(tx);
    let service = sqlx::PgPool::connect(&db.service_url).await?;
    let mut tx = service.begin().await?;
    sqlx::query("SELECT set_config('rdp_proxy.org_id', $1, true)")
        .bind(a.org.0.to_string())
        .execute(&mut *tx)
        .await?;
    let error = sqlx::query("UPDATE audit_events SET reason = 'edited' WHERE seq = 2")
        .execute(&mut *tx)
        .await
        .expect_err("updates must be refused");
    assert!(error.to_string().contains("permission denied"), "{error}");
    drop(tx);

    // Someone with the owner's rights edits a record behind the product's back: the chain shows it.
    sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        .execute(db.owner.pool())
        .await?;
    sqlx::query("UPDATE audit_events SET reason = 'edited' WHERE org_id = $1 AND seq = 3")
        .bind(a.org.0)
        .execute(db.owner.pool())
        .await?;
    let check = db.store.verify_audit(a.org).await?;
    assert_eq!(check.first_bad_seq, Some(3), "{check:?}");
    assert_eq!(db.store.verify_audit(b.org).await?.first_bad_seq, None);

    // Deleting the last record is caught by the chain head.
    sqlx::query("DELETE FROM audit_events WHERE org_id = $1 AND seq = 1")
        .bind(b.org.0)
        .execute(db.owner.pool())
        .await?;
    assert_eq!(db.store.verify_audit(b.org).await?.first_bad_seq, Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn session_changes_are_audited_in_the_same_transaction() -> anyhow::Result<()> {
    let db = common::database().await?;
    let a = common::tenant(&db.store, "org-a").await?;
    let session = common::session(&db.store, &a).await?;
    // A refused transition leaves neither an event nor an audit record.
    assert!(
        db.store
            .transition(
                a.org,
                session.id,
                Transition::new(SessionState::Active, EventKind::Attached)
            )
            .await
            .is_err()
    );
    let mut tx = db.store.org_tx(a.org).await?;
    let actions: Vec<String> = tx
        .list_audit(&AuditFilter::default(), None, 50)
        .await?
        .items
        .into_iter()
        .map(|record| record.action)
        .collect();
    assert_eq!(actions, ["session.requested"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_policy_edits_have_one_winner() -> anyhow::Result<()> {
    let db = common::database().await?;
    let a = common::tenant(&db.store, "org-a").await?;
    let save = |store: Store, text: &'static str, version: i64| async move {
        let mut tx = store.org_tx(a.org).await?;
        let result = tx.save_policy(text, version, None).await;
        if result.is_ok() {
            tx.commit().await?;
        }
        Ok::<_, StoreError>(result)
    };
    let (first, second) = tokio::join!(save(db.store.clone(), "one", 0), save(db.store.clone(), "two", 0));
    let results = [first?, second?];
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|result| matches!(result, Err(StoreError::Conflict(message)) if message.contains("version 0")))
    );
    let saved = db.store.org_tx(a.org).await?.policy().await?.unwrap();
    assert_eq!(saved.version, 1);
    let stale = save(db.store.clone(), "three", 0).await?;
    assert!(matches!(stale, Err(StoreError::Conflict(_))));
    let next = save(db.store.clone(), "three", 1).await??;
    assert_eq!((next.version, next.text.as_str()), (2, "three"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_refresh_token_revokes_the_login() -> anyhow::Result<()> {
    let db = common::database().await?;
    let a = common::tenant(&db.store, "org-a").await?;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let mut tx = db.store.org_tx(a.org).await?;
    let login = tx.create_login(a.user, expires).await?;
    tx.insert_refresh_token(login, &[7; 32], expires).await?;
    tx.commit().await?;

    let mut tx = db.store.org_tx(a.org).await?;
    assert!(matches!(
        tx.use_refresh_token(&[7; 32]).await?,
        RefreshOutcome::Rotated { .. }
    ));
    tx.commit().await?;
    let mut tx = db.store.org_tx(a.org).await?;
    assert!(matches!(
        tx.use_refresh_token(&[7; 32]).await?,
        RefreshOutcome::Replayed { .. }
    ));
    tx.commit().await?;
    let mut tx = db.store.org_tx(a.org).await?;
    let state = tx.login_state(login, a.user).await?;
    assert!(
        matches!(state, rdp_proxy_store::LoginState::Revoked { .. }),
        "{state:?}"
    );
    assert_eq!(tx.use_refresh_token(&[8; 32]).await?, RefreshOutcome::Unknown);
    drop(tx);

    // Another organisation cannot spend this organisation's token.
    let b = db.store.ensure_org("org-b").await?;
    let mut tx = db.store.org_tx(a.org).await?;
    tx.insert_refresh_token(login, &[9; 32], expires).await?;
    tx.commit().await?;
    let mut tx = db.store.org_tx(b).await?;
    assert_eq!(tx.use_refresh_token(&[9; 32]).await?, RefreshOutcome::Unknown);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_reference_only_their_own_organisations_credentials() -> anyhow::Result<()> {
    let db = common::database().await?;
    let a = common::tenant(&db.store, "org-a").await?;
    let b = common::tenant(&db.store, "org-b").await?;
    let b_credential: uuid::Uuid = {
        let mut tx = db.store.org_tx(b.org).await?;
        tx.get_target(b.target).await?.credential_id
    };
    let mut tx = db.store.org_tx(a.org).await?;
    let update = rdp_proxy_store::TargetUpdate {
        credential_id: Some(b_credential),
        ..Default::default()
    };
    let error = tx.update_target(a.target, &update).await.unwrap_err();
    assert!(
        matches!(error, StoreError::NotFound { what: "credential" }),
        "{error:?}"
    );
    drop(tx);
    let mut tx = db.store.org_tx(a.org).await?;
    assert!(matches!(
        tx.get_target(b.target).await,
        Err(StoreError::NotFound { what: "target" })
    ));
    assert!(matches!(
        tx.delete_target(TargetId(b.target.0)).await,
        Err(StoreError::NotFound { .. })
    ));
    let labels = TargetFilter {
        labels: [("env".to_owned(), "prod".to_owned())].into(),
    };
    assert!(tx.all_targets(&labels).await?.is_empty());
    drop(tx);
    let row = sqlx::query("SELECT deleted_at FROM targets WHERE id = $1")
        .bind(b.target.0)
        .fetch_one(db.owner.pool())
        .await?;
    assert!(row.get::<Option<time::OffsetDateTime>, _>("deleted_at").is_none());
    Ok(())
}

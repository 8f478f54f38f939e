//! Upgrading a database written by the first schema version: targets' passwords, stored in
//! clear then, become sealed credentials and still open to the same password.

use rdp_proxy_control::Vault;
use rdp_proxy_core::TargetId;
use rdp_proxy_secrets::MasterKey;
use rdp_proxy_store::Store;
use rdp_proxy_testkit::Postgres;

const FIRST_MIGRATION: &str = include_str!("../../store/migrations/20261204000001_foundation.sql");

#[tokio::test(flavor = "multi_thread")]
async fn clear_passwords_are_sealed_on_upgrade() -> anyhow::Result<()> {
    let (postgres, url) = tokio::task::spawn_blocking(|| -> anyhow::Result<_> {
        let postgres = Postgres::start()?;
        let url = postgres.create_database("upgrade_test")?;
        Ok((postgres, url))
    })
    .await??;
    // The database as the first release left it: only migration 1, one target with a password.
    let old = tempfile::tempdir()?;
    std::fs::write(old.path().join("20261204000001_foundation.sql"), FIRST_MIGRATION)?;
    let pool = sqlx::PgPool::connect(&url).await?;
    sqlx::migrate::Migrator::new(old.path()).await?.run(&pool).await?;
    let org = uuid::Uuid::new_v4();
    let target = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, 'default')")
        .bind(org)
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO targets (id, org_id, name, host, port, security, username, password)
         VALUES ($1, $2, 'desk', '127.0.0.1', 3389, 'nla', 'desk-user', 'Old-Clear-Password')",
    )
    .bind(target)
    .bind(org)
    .execute(&pool)
    .await?;

    let store = Store::connect(&url, 2).await?;
    store.migrate().await?;
    let (master, _) = MasterKey::generate();
    let vault = Vault::new(master);
    assert_eq!(vault.seal_legacy(&store).await?, 1);
    assert_eq!(vault.seal_legacy(&store).await?, 0, "sealing twice changes nothing");

    let mut tx = store.org_tx(rdp_proxy_core::OrgId(org)).await?;
    let record = tx.get_target(TargetId(target)).await?;
    assert_eq!(record.name, "desk");
    let secret = tx.credential_secret(record.credential_id).await?;
    assert!(secret.legacy_password.is_none(), "the clear copy is gone");
    assert_eq!(secret.username, "desk-user");
    let password = vault.open(&mut tx, &secret).await?;
    assert_eq!(password.as_str(), "Old-Clear-Password");
    let stored: Vec<String> = sqlx::query_scalar("SELECT coalesce(legacy_password, '') FROM credentials")
        .fetch_all(&pool)
        .await?;
    assert_eq!(stored, [""]);
    drop(postgres);
    Ok(())
}

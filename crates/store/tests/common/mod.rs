//! A PostgreSQL with the schema applied, reached the way services reach it: as a login that is a
//! member of the service role, so row-level security applies to every query.

#![allow(dead_code)]

use rdp_proxy_core::access::Role;
use rdp_proxy_core::{OrgId, TargetId, UserId};
use rdp_proxy_store::{NewCredential, NewSession, NewTarget, SessionLimits, SessionRecord, Store};
use rdp_proxy_testkit::Postgres;

pub const SERVICE_LOGIN: &str = "rdp_proxy_app";

pub struct Db {
    /// The service login's store.
    pub store: Store,
    /// The owner's store, for set-up that services may not do.
    pub owner: Store,
    pub service_url: String,
    pub postgres: Postgres,
}

pub async fn database() -> anyhow::Result<Db> {
    let (postgres, url) = tokio::task::spawn_blocking(|| -> anyhow::Result<_> {
        let postgres = Postgres::start()?;
        let url = postgres.create_database("store_test")?;
        Ok((postgres, url))
    })
    .await??;
    let owner = Store::connect(&url, 4).await?;
    owner.migrate().await?;
    owner.migrate().await?;
    owner.ensure_service_login(SERVICE_LOGIN, "service-password").await?;
    let service_url = url.replace("postgres@", &format!("{SERVICE_LOGIN}:service-password@"));
    let store = Store::connect(&service_url, 8).await?;
    store.check_service_login().await?;
    Ok(Db {
        store,
        owner,
        service_url,
        postgres,
    })
}

/// An organisation with one member and one target.
pub struct Tenant {
    pub org: OrgId,
    pub user: UserId,
    pub target: TargetId,
}

pub async fn tenant(store: &Store, name: &str) -> anyhow::Result<Tenant> {
    let org = store.ensure_org(name).await?;
    let user = store
        .upsert_user(&format!("{name}-alice"), "$argon2id$placeholder")
        .await?;
    store.set_membership(org, user, Role::Member).await?;
    let mut tx = store.org_tx(org).await?;
    let credential = tx
        .insert_credential(&NewCredential {
            id: uuid::Uuid::new_v4(),
            name: "login".into(),
            username: "u".into(),
            domain: None,
            sealed: vec![1, 2, 3],
        })
        .await?;
    tx.commit().await?;
    let target = NewTarget {
        name: "t".into(),
        host: "127.0.0.1".into(),
        port: 3389,
        security: "auto".into(),
        labels: Default::default(),
        max_width: None,
        max_height: None,
        credential_id: credential.id,
        cert_sha256: None,
    };
    let target = store.upsert_target(org, &target).await?;
    Ok(Tenant { org, user, target })
}

pub async fn session(store: &Store, tenant: &Tenant) -> anyhow::Result<SessionRecord> {
    Ok(store
        .insert_session(
            &NewSession {
                org: tenant.org,
                owner: tenant.user,
                target: tenant.target,
                width: 1280,
                height: 720,
                limits: SessionLimits::default(),
            },
            "alice",
        )
        .await?)
}

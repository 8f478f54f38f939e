//! `rdp-proxy admin …`: create users and targets directly in the database, for bootstrapping
//! before any admin can log in.

use anyhow::Context;
use clap::Subcommand;
use rdp_proxy_control::Vault;
use rdp_proxy_core::access::Role;
use rdp_proxy_store::{NewCredential, NewTarget, Store};

use crate::serve::DatabaseArgs;

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Create a user (or reset its password) and give it a role in an organisation.
    UserAdd {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        name: String,
        /// Password of a new user (at least 12 characters); read from RDP_PROXY_NEW_PASSWORD when
        /// omitted. An existing user keeps their password unless --reset-password is given.
        #[arg(long, env = "RDP_PROXY_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Replace an existing user's password and end their logins in every organisation.
        #[arg(long, requires = "password")]
        reset_password: bool,
        /// `owner`, `admin`, `operator`, `member` or `auditor`.
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long, default_value = "default")]
        org: String,
    },
    /// Recompute every organisation's audit hash chain (or one's) and report the first broken
    /// record; exits non-zero when a chain is broken.
    AuditVerify {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Only this organisation (by name).
        #[arg(long)]
        org: Option<String>,
    },
    /// Create or update an RDP target in an organisation.
    TargetAdd {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 3389)]
        port: u16,
        /// `auto`, `tls` or `nla`.
        #[arg(long, default_value = "auto")]
        security: String,
        #[arg(long)]
        username: String,
        /// The target account's password; read from RDP_PROXY_TARGET_PASSWORD when omitted.
        #[arg(long, env = "RDP_PROXY_TARGET_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        domain: Option<String>,
        /// SHA-256 of the target's TLS certificate (64 hex digits) to pin it.
        #[arg(long)]
        cert_sha256: Option<String>,
        #[arg(long, default_value = "default")]
        org: String,
        /// Master key that encrypts the password (the control plane's --master-key).
        #[arg(long, env = "RDP_PROXY_MASTER_KEY", hide_env_values = true)]
        master_key: String,
    },
}

pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::AuditVerify { database, org } => {
            let store = connect(&database).await?;
            let orgs = match org {
                Some(name) => vec![store.find_org(&name).await?],
                None => store.org_ids().await?,
            };
            let mut broken = 0;
            for org in orgs {
                let name = store.org_name(org).await?;
                let check = store.verify_audit(org).await?;
                if check.first_bad_seq.is_some() {
                    broken += 1;
                }
                println!(
                    "{}",
                    serde_json::json!({
                        "org": name, "org_id": org.to_string(), "ok": check.first_bad_seq.is_none(),
                        "checked": check.checked, "first_bad_seq": check.first_bad_seq, "problem": check.problem,
                    })
                );
            }
            anyhow::ensure!(broken == 0, "{broken} organisation(s) have a broken audit chain");
        }
        AdminCommand::UserAdd {
            database,
            name,
            password,
            role,
            org,
            reset_password,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("--role {role:?} is unknown; use owner, admin, operator, member or auditor")
            })?;
            let store = connect(&database).await?;
            let id = add_user(&store, &org, &name, password.as_deref(), role, reset_password).await?;
            println!(
                "{}",
                serde_json::json!({ "user_id": id.to_string(), "name": name, "role": role.as_str(), "org": org })
            );
        }
        AdminCommand::TargetAdd {
            database,
            name,
            host,
            port,
            security,
            username,
            password,
            domain,
            cert_sha256,
            org,
            master_key,
        } => {
            anyhow::ensure!(
                ["auto", "tls", "nla"].contains(&security.as_str()),
                "--security must be auto, tls or nla"
            );
            let cert_sha256 = cert_sha256.map(|raw| parse_fingerprint(&raw)).transpose()?;
            let master = rdp_proxy_secrets::MasterKey::from_base64(&master_key)
                .context("--master-key must be 32 bytes in standard base64")?;
            let store = connect(&database).await?;
            let org_id = store.ensure_org(&org).await?;
            let login = TargetLogin {
                username,
                password,
                domain,
            };
            let target = NewTarget {
                name: name.clone(),
                host,
                port,
                security,
                labels: Default::default(),
                max_width: None,
                max_height: None,
                credential_id: uuid::Uuid::nil(),
                cert_sha256,
            };
            let id = add_target(&store, &Vault::new(master), org_id, target, &login).await?;
            println!(
                "{}",
                serde_json::json!({ "target_id": id.to_string(), "name": name, "org": org })
            );
        }
    }
    Ok(())
}

async fn connect(database: &DatabaseArgs) -> anyhow::Result<Store> {
    Store::connect(&database.database_url, 2)
        .await
        .context("could not connect to PostgreSQL")
}

/// The account a target logs in with.
pub(crate) struct TargetLogin {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) domain: Option<String>,
}

/// Creates or updates a target and its credential (named after the target, password sealed
/// with the organisation's key).
pub(crate) async fn add_target(
    store: &Store,
    vault: &Vault,
    org: rdp_proxy_core::OrgId,
    mut target: NewTarget,
    login: &TargetLogin,
) -> anyhow::Result<rdp_proxy_core::TargetId> {
    let credential_name = format!("{} login", target.name);
    let mut tx = store.org_tx(org).await?;
    let existing: Option<uuid::Uuid> = tx
        .all_targets(&Default::default())
        .await?
        .into_iter()
        .find(|existing| existing.name == target.name)
        .map(|existing| existing.credential_id);
    let credential = match existing {
        Some(id) => {
            let sealed = vault.seal(&mut tx, id, &login.password).await?;
            tx.update_credential(
                id,
                None,
                Some(&login.username),
                Some(login.domain.as_deref()),
                Some(&sealed),
            )
            .await?
            .id
        }
        None => {
            let id = uuid::Uuid::new_v4();
            let sealed = vault.seal(&mut tx, id, &login.password).await?;
            tx.insert_credential(&NewCredential {
                id,
                name: credential_name,
                username: login.username.clone(),
                domain: login.domain.clone(),
                sealed,
            })
            .await?
            .id
        }
    };
    tx.commit().await?;
    target.credential_id = credential;
    Ok(store.upsert_target(org, &target).await?)
}

/// Creates the user (Argon2id hash of `password`) or finds the existing one, gives it `role` in
/// organisation `org` (created when missing) and audits the change there. An existing user's
/// password changes only with `reset`, which also ends their logins everywhere.
pub(crate) async fn add_user(
    store: &Store,
    org: &str,
    name: &str,
    password: Option<&str>,
    role: Role,
    reset: bool,
) -> anyhow::Result<rdp_proxy_core::UserId> {
    let name = rdp_proxy_control::text::user_name(name).map_err(|error| anyhow::anyhow!(error.message))?;
    let org_name =
        rdp_proxy_control::text::name("organisation", org, 100).map_err(|error| anyhow::anyhow!(error.message))?;
    let hash = match password {
        Some(password) => {
            rdp_proxy_control::text::password(password).map_err(|error| anyhow::anyhow!(error.message))?;
            let password = password.to_owned();
            Some(
                tokio::task::spawn_blocking(move || rdp_proxy_control::hash_password(&password))
                    .await?
                    .map_err(|error| anyhow::anyhow!("could not hash the password: {error}"))?,
            )
        }
        None => None,
    };
    let org_id = store.ensure_org(&org_name).await?;
    let (id, created, reset_done) = match store.find_user_by_name(&name).await? {
        Some(existing) => {
            if let (true, Some(hash)) = (reset, &hash) {
                store.set_password_hash(existing.id, hash).await?;
                for membership in store.user_orgs(existing.id).await? {
                    let mut tx = store.org_tx(membership.org).await?;
                    tx.revoke_user_logins(existing.id, "password reset by an operator")
                        .await?;
                    tx.commit().await?;
                }
                (existing.id, false, true)
            } else {
                (existing.id, false, false)
            }
        }
        None => {
            let hash = hash.context("a new user needs --password or RDP_PROXY_NEW_PASSWORD")?;
            (store.create_user(&name, &hash).await?, true, false)
        }
    };
    store.set_membership(org_id, id, role).await?;
    let entry = rdp_proxy_store::AuditEntry::new("member.add", "user", rdp_proxy_core::audit::Outcome::Ok)
        .actor(
            rdp_proxy_core::audit::ActorKind::System,
            None,
            Some("rdp-proxy admin".into()),
        )
        .object(id.0)
        .details(serde_json::json!({
            "name": name, "role": role.as_str(), "account_created": created, "password_reset": reset_done,
        }));
    store.audit(org_id, &entry).await?;
    Ok(id)
}

fn parse_fingerprint(raw: &str) -> anyhow::Result<Vec<u8>> {
    let cleaned: String = raw.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).context("--cert-sha256 must be hex digits")?;
    anyhow::ensure!(bytes.len() == 32, "--cert-sha256 must be 32 bytes (64 hex digits)");
    Ok(bytes)
}

//! `rdp-proxy admin …`: create users and targets directly in the database, for bootstrapping
//! before any admin can log in.

use anyhow::Context;
use clap::Subcommand;
use rdp_proxy_core::access::Role;
use rdp_proxy_store::{NewTarget, Store, TargetSecret};

use crate::serve::DatabaseArgs;

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Create a user (or reset its password) and give it a role in an organisation.
    UserAdd {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        name: String,
        /// The user's password; read from RDP_PROXY_NEW_PASSWORD when omitted.
        #[arg(long, env = "RDP_PROXY_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        /// `member` or `admin`.
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long, default_value = "default")]
        org: String,
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
    },
}

pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::UserAdd {
            database,
            name,
            password,
            role,
            org,
        } => {
            let role =
                Role::parse(&role).with_context(|| format!("--role {role:?} is unknown; use member or admin"))?;
            let store = connect(&database).await?;
            let id = add_user(&store, &org, &name, &password, role).await?;
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
        } => {
            anyhow::ensure!(
                ["auto", "tls", "nla"].contains(&security.as_str()),
                "--security must be auto, tls or nla"
            );
            let cert_sha256 = cert_sha256.map(|raw| parse_fingerprint(&raw)).transpose()?;
            let store = connect(&database).await?;
            let org_id = store.ensure_org(&org).await?;
            let secret = TargetSecret {
                username,
                password,
                domain,
                cert_sha256,
            };
            let id = store
                .upsert_target(
                    org_id,
                    &NewTarget {
                        name: name.clone(),
                        host,
                        port,
                        security,
                        secret,
                    },
                )
                .await?;
            println!(
                "{}",
                serde_json::json!({ "target_id": id.to_string(), "name": name, "org": org })
            );
        }
    }
    Ok(())
}

async fn connect(database: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&database.database_url, 2)
        .await
        .context("could not connect to PostgreSQL")?;
    store.migrate().await.context("could not apply database migrations")?;
    Ok(store)
}

/// Creates or updates a user with an Argon2id hash of `password` and sets its role in `org`.
pub(crate) async fn add_user(
    store: &Store,
    org: &str,
    name: &str,
    password: &str,
    role: Role,
) -> anyhow::Result<rdp_proxy_core::UserId> {
    anyhow::ensure!(password.len() >= 8, "password must be at least 8 characters");
    let org_id = store.ensure_org(org).await?;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || rdp_proxy_control::hash_password(&password))
        .await?
        .map_err(|error| anyhow::anyhow!("could not hash the password: {error}"))?;
    let id = store.upsert_user(name, &hash).await?;
    store.set_membership(org_id, id, role).await?;
    Ok(id)
}

fn parse_fingerprint(raw: &str) -> anyhow::Result<Vec<u8>> {
    let cleaned: String = raw.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).context("--cert-sha256 must be hex digits")?;
    anyhow::ensure!(bytes.len() == 32, "--cert-sha256 must be 32 bytes (64 hex digits)");
    Ok(bytes)
}

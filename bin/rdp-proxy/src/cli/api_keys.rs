//! `rdp-proxy api-keys …`: /api/v1/api-keys.

use clap::Subcommand;
use serde_json::json;

use super::client::Client;
use super::{PageArgs, parse_uuid, print_json};

#[derive(Subcommand)]
pub(crate) enum ApiKeysCommand {
    /// List the organisation's API keys, revoked ones included (never the keys themselves).
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Create an API key. The output's `key` is shown only this once; use it as
    /// RDP_PROXY_API_KEY or as the bearer token.
    Create {
        #[arg(long)]
        name: String,
        /// admin, operator, member or auditor; at most your own role.
        #[arg(long)]
        role: String,
        /// Days until the key stops working (1 to 3650); it does not expire when omitted.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API key by id.
    Revoke {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
}

pub(crate) async fn run(command: ApiKeysCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    match command {
        ApiKeysCommand::List { page } => print_json(&client.list("/api/v1/api-keys", &[], &page).await?),
        ApiKeysCommand::Create {
            name,
            role,
            expires_in_days,
        } => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(days) = expires_in_days {
                body["expires_in_days"] = json!(days);
            }
            print_json(&client.post("/api/v1/api-keys", body).await?)
        }
        ApiKeysCommand::Revoke { id } => {
            client.delete(&format!("/api/v1/api-keys/{id}")).await?;
            Ok(())
        }
    }
}

//! `rdp-proxy members …`: /api/v1/members.

use clap::{ArgGroup, Subcommand};
use serde_json::{Map, Value, json};

use super::client::Client;
use super::{PageArgs, print_json, read_secret};

#[derive(Subcommand)]
pub(crate) enum MembersCommand {
    /// List the organisation's members, ordered by name.
    List {
        /// Only members with this role: owner, admin, operator, member or auditor.
        #[arg(long)]
        role: Option<String>,
        /// Only members with this status: active, disabled or invited.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one member (by user id or name).
    Get { user: String },
    /// Add a user to the organisation. A new user name creates the account, which needs
    /// --password-stdin. An existing user is invited without a password and becomes a member on
    /// accepting (`rdp-proxy orgs accept`).
    Add {
        username: String,
        /// owner, admin, operator, member or auditor.
        #[arg(long)]
        role: String,
        /// Read the new account's password (at least 12 characters) as one line of stdin, or
        /// from a prompt when stdin is a terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a member's role, or disable or enable them (by user id or name).
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["role", "disable", "enable"])))]
    Set {
        user: String,
        /// New role: owner, admin, operator, member or auditor.
        #[arg(long)]
        role: Option<String>,
        /// Disable the member: their logins are revoked and they lose control of sessions.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable a disabled member.
        #[arg(long)]
        enable: bool,
    },
    /// Remove a member from the organisation (by user id or name). The account stays for
    /// their other organisations.
    Remove { user: String },
}

const MEMBERS: &str = "/api/v1/members";

pub(crate) async fn run(command: MembersCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    let output = match command {
        MembersCommand::List { role, status, page } => {
            client
                .list(MEMBERS, &[("role", role), ("status", status)], &page)
                .await?
        }
        MembersCommand::Get { user } => {
            let id = resolve(&mut client, &user).await?;
            client.get(&format!("{MEMBERS}/{id}")).await?
        }
        MembersCommand::Add {
            username,
            role,
            password_stdin,
        } => {
            let mut body = json!({ "username": username, "role": role });
            if password_stdin {
                body["password"] = json!(read_secret(None, &format!("Password for {username}: "))?);
            }
            client.post(MEMBERS, body).await?
        }
        MembersCommand::Set {
            user,
            role,
            disable,
            enable,
        } => {
            let id = resolve(&mut client, &user).await?;
            let mut body = Map::new();
            if let Some(role) = role {
                body.insert("role".into(), json!(role));
            }
            if disable || enable {
                body.insert("disabled".into(), json!(disable));
            }
            client.patch(&format!("{MEMBERS}/{id}"), Value::Object(body)).await?
        }
        MembersCommand::Remove { user } => {
            let id = resolve(&mut client, &user).await?;
            client.delete(&format!("{MEMBERS}/{id}")).await?
        }
    };
    if !output.is_null() {
        print_json(&output)?;
    }
    Ok(())
}

async fn resolve(client: &mut Client, user: &str) -> anyhow::Result<String> {
    client.resolve(MEMBERS, "user_id", user, "member").await
}

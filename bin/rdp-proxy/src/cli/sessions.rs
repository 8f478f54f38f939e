//! `rdp-proxy sessions …`: /api/v1/sessions.

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::targets::resolve_target;
use super::{PageArgs, parse_uuid, print_json};

#[derive(Subcommand)]
pub(crate) enum SessionsCommand {
    /// List sessions, newest first: your own, or all of the organisation for those the policies
    /// let see them all.
    List {
        /// Only sessions in this state: requested, connecting, active, detached, terminated,
        /// failed or lost.
        #[arg(long)]
        state: Option<String>,
        /// Only your own sessions, even when you may see all.
        #[arg(long)]
        mine: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one session.
    Get {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Show a session's history, oldest first.
    Events {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Open a desktop on a target (by id or name).
    Create {
        target: String,
        /// Desktop width in pixels (the server uses 1280 when omitted).
        #[arg(long)]
        width: Option<u16>,
        /// Desktop height in pixels (the server uses 720 when omitted).
        #[arg(long)]
        height: Option<u16>,
    },
    /// Get a single-use attach token and the viewer URL.
    Attach {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Get a single-use token to watch the session without keyboard and mouse.
    Observe {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Take control from the current viewer; the organisation's policies decide whose sessions
    /// you may take over.
    Takeover {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Disconnect the viewers; the desktop keeps running.
    Detach {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// End the session and its RDP connection.
    Terminate {
        #[arg(value_parser = parse_uuid)]
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

const SESSIONS: &str = "/api/v1/sessions";

pub(crate) async fn run(command: SessionsCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    let output = match command {
        SessionsCommand::List { state, mine, page } => {
            let mine = mine.then(|| "true".to_owned());
            client
                .list(SESSIONS, &[("state", state), ("mine", mine)], &page)
                .await?
        }
        SessionsCommand::Get { id } => client.get(&format!("{SESSIONS}/{id}")).await?,
        SessionsCommand::Events { id } => client.get(&format!("{SESSIONS}/{id}/events")).await?,
        SessionsCommand::Create { target, width, height } => {
            let target_id = resolve_target(&mut client, &target).await?;
            client
                .post(
                    SESSIONS,
                    json!({ "target_id": target_id, "width": width, "height": height }),
                )
                .await?
        }
        SessionsCommand::Attach { id } => attach(&mut client, &id, "control").await?,
        SessionsCommand::Observe { id } => attach(&mut client, &id, "observe").await?,
        SessionsCommand::Takeover { id } => attach(&mut client, &id, "takeover").await?,
        SessionsCommand::Detach { id } => client.post(&format!("{SESSIONS}/{id}/detach"), json!({})).await?,
        SessionsCommand::Terminate { id, reason } => {
            client
                .post(&format!("{SESSIONS}/{id}/terminate"), json!({ "reason": reason }))
                .await?
        }
    };
    if !output.is_null() {
        print_json(&output)?;
    }
    Ok(())
}

/// Requests an attach token and adds `viewer_page`, the viewer URL made absolute.
async fn attach(client: &mut Client, id: &str, mode: &str) -> anyhow::Result<Value> {
    let mut grant = client
        .post(&format!("{SESSIONS}/{id}/attach"), json!({ "mode": mode }))
        .await?;
    if let Some(page) = grant["viewer_url"].as_str() {
        grant["viewer_page"] = Value::String(format!("{}{page}", client.server()));
    }
    Ok(grant)
}

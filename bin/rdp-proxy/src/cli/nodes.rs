//! `rdp-proxy nodes …`: /api/v1/nodes, the organisation's own customer-managed nodes. The
//! operator manages every node with `rdp-proxy cluster …` instead.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::Client;
use super::{CliError, ErrorKind, confirm, needs_confirmation, parse_label, parse_uuid, print_json};

#[derive(Subcommand)]
pub(crate) enum NodesCommand {
    /// List the organisation's nodes with their state, capabilities, workers and live figures.
    List,
    /// Create a single-use join token for a node of this organisation. The output's `token` is
    /// shown only this once; pass it to `rdp-proxy-agent --join-token` or RDP_PROXY_JOIN_TOKEN.
    JoinToken(JoinTokenArgs),
    /// Stop placing new sessions on a node; its running sessions continue.
    Drain {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Let a drained node take new sessions again.
    Resume {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Revoke a node, which is final: its certificate is rejected from now on, its services
    /// stop and its running sessions end. Asks for confirmation when stdin is a terminal.
    Revoke {
        #[arg(value_parser = parse_uuid)]
        id: String,
        /// Revoke without asking for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Remove a revoked node from the list.
    Remove {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
}

/// Options of a new join token, shared with `rdp-proxy cluster join-token`.
#[derive(Args)]
pub(crate) struct JoinTokenArgs {
    /// Seconds until the token expires, 60 to 604800 (the server uses 3600 when omitted).
    #[arg(long, value_name = "SECONDS")]
    ttl_secs: Option<u64>,
    /// Label the node gets when it joins, as KEY=VALUE; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Service the node runs: worker, relay or connector; repeat for several (the server uses
    /// worker alone when omitted).
    #[arg(long = "service", value_name = "SERVICE", value_parser = ["worker", "relay", "connector"])]
    services: Vec<String>,
}

impl JoinTokenArgs {
    /// Builds the request body of `POST …/join-tokens`, leaving out the options not given.
    pub(crate) fn body(self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(ttl) = self.ttl_secs {
            body.insert("ttl_secs".into(), json!(ttl));
        }
        if !self.labels.is_empty() {
            let labels: Map<String, Value> = self
                .labels
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect();
            body.insert("labels".into(), Value::Object(labels));
        }
        if !self.services.is_empty() {
            body.insert("services".into(), json!(self.services));
        }
        body
    }
}

const NODES: &str = "/api/v1/nodes";

pub(crate) async fn run(command: NodesCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    let output = match command {
        NodesCommand::List => client.get(NODES).await?,
        NodesCommand::JoinToken(args) => {
            client
                .post(&format!("{NODES}/join-tokens"), Value::Object(args.body()))
                .await?
        }
        NodesCommand::Drain { id } => client.post(&format!("{NODES}/{id}/drain"), json!({})).await?,
        NodesCommand::Resume { id } => client.post(&format!("{NODES}/{id}/resume"), json!({})).await?,
        NodesCommand::Revoke { id, yes } => {
            if needs_confirmation(yes) {
                let node = find_node(&mut client, &id).await?;
                confirm(&revoke_question(&node, &id))?;
            }
            client.post(&format!("{NODES}/{id}/revoke"), json!({})).await?
        }
        NodesCommand::Remove { id } => client.delete(&format!("{NODES}/{id}")).await?,
    };
    if !output.is_null() {
        print_json(&output)?;
    }
    Ok(())
}

/// Returns the view of the organisation's node `id` from the node list, which is the only way
/// the organisation API shows a single node.
async fn find_node(client: &mut Client, id: &str) -> anyhow::Result<Value> {
    let nodes = client.get(NODES).await?;
    nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|node| node["id"] == id)
        .cloned()
        .ok_or_else(|| {
            CliError::new(
                ErrorKind::NotFound,
                format!("node {id} not found in this organisation; `rdp-proxy nodes list` shows its nodes"),
            )
            .into()
        })
}

/// Builds the confirmation question for revoking `node`, with its name, state and session count.
pub(crate) fn revoke_question(node: &Value, id: &str) -> String {
    let name = node["name"].as_str().unwrap_or("?");
    let state = node["state"].as_str().unwrap_or("unknown");
    let sessions: u64 = node["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|worker| worker["sessions"].as_u64())
        .sum();
    format!(
        "Revoke node {name:?} ({id}, state {state}, {sessions} sessions held)? Its certificate is \
         rejected from now on, its services stop and its sessions end. This cannot be undone."
    )
}

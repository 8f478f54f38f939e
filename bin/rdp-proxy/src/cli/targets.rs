//! `rdp-proxy targets …`: /api/v1/targets.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::Client;
use super::{PageArgs, parse_label, print_json};

#[derive(Subcommand)]
pub(crate) enum TargetsCommand {
    /// List targets: all of them for those who manage targets, otherwise those you may open.
    List {
        /// Only targets with this label, as KEY=VALUE.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
        label: Option<(String, String)>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one target (by id or name).
    Get { target: String },
    /// Create a target.
    Create(CreateTarget),
    /// Change a target (by id or name); options left out keep their value.
    Update {
        target: String,
        #[command(flatten)]
        fields: UpdateTarget,
    },
    /// Delete a target (by id or name). Sessions already open on it keep running.
    Delete { target: String },
}

#[derive(Args)]
pub(crate) struct CreateTarget {
    #[arg(long)]
    name: String,
    /// Host name or IP address of the RDP server.
    #[arg(long)]
    host: String,
    /// TCP port of the RDP server (the server uses 3389 when omitted).
    #[arg(long)]
    port: Option<u16>,
    /// auto, tls or nla (the server uses auto when omitted).
    #[arg(long)]
    security: Option<String>,
    /// Label as KEY=VALUE; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Largest desktop width in pixels a session may request (200 to 8192).
    #[arg(long)]
    max_width: Option<u16>,
    /// Largest desktop height in pixels a session may request (200 to 8192).
    #[arg(long)]
    max_height: Option<u16>,
    /// Credential the target logs in with, by id or name.
    #[arg(long)]
    credential: String,
    /// SHA-256 of the target's TLS certificate (64 hex digits) to pin.
    #[arg(long)]
    cert_sha256: Option<String>,
}

#[derive(Args)]
#[group(required = true, multiple = true)]
pub(crate) struct UpdateTarget {
    #[arg(long)]
    name: Option<String>,
    /// Host name or IP address of the RDP server.
    #[arg(long)]
    host: Option<String>,
    /// TCP port of the RDP server.
    #[arg(long)]
    port: Option<u16>,
    /// auto, tls or nla.
    #[arg(long)]
    security: Option<String>,
    /// Label as KEY=VALUE; repeat for several. The given labels replace all current ones.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label, conflicts_with = "clear_labels")]
    labels: Vec<(String, String)>,
    /// Remove all labels.
    #[arg(long)]
    clear_labels: bool,
    /// Largest desktop width in pixels a session may request (200 to 8192).
    #[arg(long, conflicts_with = "no_max_width")]
    max_width: Option<u16>,
    /// Remove the width limit.
    #[arg(long)]
    no_max_width: bool,
    /// Largest desktop height in pixels a session may request (200 to 8192).
    #[arg(long, conflicts_with = "no_max_height")]
    max_height: Option<u16>,
    /// Remove the height limit.
    #[arg(long)]
    no_max_height: bool,
    /// Credential the target logs in with, by id or name.
    #[arg(long)]
    credential: Option<String>,
    /// SHA-256 of the target's TLS certificate (64 hex digits) to pin.
    #[arg(long, conflicts_with = "no_cert_sha256")]
    cert_sha256: Option<String>,
    /// Remove the certificate pin.
    #[arg(long)]
    no_cert_sha256: bool,
}

const TARGETS: &str = "/api/v1/targets";

pub(crate) async fn run(command: TargetsCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    let output = match command {
        TargetsCommand::List { label, page } => {
            let label = label.map(|(key, value)| format!("{key}={value}"));
            client.list(TARGETS, &[("label", label)], &page).await?
        }
        TargetsCommand::Get { target } => {
            let id = resolve_target(&mut client, &target).await?;
            client.get(&format!("{TARGETS}/{id}")).await?
        }
        TargetsCommand::Create(fields) => {
            let body = create_body(&mut client, fields).await?;
            client.post(TARGETS, body).await?
        }
        TargetsCommand::Update { target, fields } => {
            let id = resolve_target(&mut client, &target).await?;
            let body = update_body(&mut client, fields).await?;
            client.patch(&format!("{TARGETS}/{id}"), body).await?
        }
        TargetsCommand::Delete { target } => {
            let id = resolve_target(&mut client, &target).await?;
            client.delete(&format!("{TARGETS}/{id}")).await?
        }
    };
    if !output.is_null() {
        print_json(&output)?;
    }
    Ok(())
}

/// Id of a target given by id or name.
pub(crate) async fn resolve_target(client: &mut Client, target: &str) -> anyhow::Result<String> {
    client.resolve(TARGETS, "id", target, "target").await
}

async fn resolve_credential(client: &mut Client, credential: &str) -> anyhow::Result<String> {
    client
        .resolve("/api/v1/credentials", "id", credential, "credential")
        .await
}

fn labels_json(labels: Vec<(String, String)>) -> Value {
    Value::Object(labels.into_iter().map(|(key, value)| (key, json!(value))).collect())
}

async fn create_body(client: &mut Client, fields: CreateTarget) -> anyhow::Result<Value> {
    let credential_id = resolve_credential(client, &fields.credential).await?;
    let mut body = Map::new();
    body.insert("name".into(), json!(fields.name));
    body.insert("host".into(), json!(fields.host));
    body.insert("labels".into(), labels_json(fields.labels));
    body.insert("credential_id".into(), json!(credential_id));
    let optional = [
        ("port", fields.port.map(|port| json!(port))),
        ("security", fields.security.map(|security| json!(security))),
        ("max_width", fields.max_width.map(|width| json!(width))),
        ("max_height", fields.max_height.map(|height| json!(height))),
        ("cert_sha256", fields.cert_sha256.map(|pin| json!(pin))),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            body.insert(name.into(), value);
        }
    }
    Ok(Value::Object(body))
}

async fn update_body(client: &mut Client, fields: UpdateTarget) -> anyhow::Result<Value> {
    let credential_id = match &fields.credential {
        Some(credential) => Some(resolve_credential(client, credential).await?),
        None => None,
    };
    let labels = if fields.clear_labels {
        Some(json!({}))
    } else if fields.labels.is_empty() {
        None
    } else {
        Some(labels_json(fields.labels))
    };
    // `null` removes a limit or the pin; a missing field keeps it.
    let clearable = |value: Option<Value>, clear: bool| if clear { Some(Value::Null) } else { value };
    let changes = [
        ("name", fields.name.map(|name| json!(name))),
        ("host", fields.host.map(|host| json!(host))),
        ("port", fields.port.map(|port| json!(port))),
        ("security", fields.security.map(|security| json!(security))),
        ("labels", labels),
        (
            "max_width",
            clearable(fields.max_width.map(|width| json!(width)), fields.no_max_width),
        ),
        (
            "max_height",
            clearable(fields.max_height.map(|height| json!(height)), fields.no_max_height),
        ),
        ("credential_id", credential_id.map(|id| json!(id))),
        (
            "cert_sha256",
            clearable(fields.cert_sha256.map(|pin| json!(pin)), fields.no_cert_sha256),
        ),
    ];
    let body: Map<String, Value> = changes
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
        .collect();
    Ok(Value::Object(body))
}

//! `rdp-proxy cluster …`: the operator's cluster API under /cluster/v1, authenticated with the
//! operator token instead of a login. The secret comes from RDP_PROXY_OPERATOR_TOKEN, else from
//! a prompt when stdin is a terminal, else as one line of stdin. It is never a command-line
//! argument, so it stays out of shell history and process lists.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{self, normalize_server};
use super::nodes::{JoinTokenArgs, revoke_question};
use super::{
    CliError, DEFAULT_SERVER, ErrorKind, api_error, confirm, needs_confirmation, parse_uuid, print_json, read_secret,
};

/// Environment variable with the operator token, the same one `rdp-proxy control` reads.
const SECRET_ENV: &str = "RDP_PROXY_OPERATOR_TOKEN";

#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// Base URL of the control plane.
    #[arg(long, env = "RDP_PROXY_SERVER", default_value = DEFAULT_SERVER, global = true)]
    server: String,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// List every node, platform and customer-managed, with state, workers and live figures.
    Nodes,
    /// Show one node.
    Node {
        #[arg(value_parser = parse_uuid)]
        id: String,
    },
    /// Create a single-use join token, for a platform node or with --org for a node of one
    /// organisation. The output's `token` is shown only this once; pass it to
    /// `rdp-proxy-agent --join-token` or RDP_PROXY_JOIN_TOKEN.
    JoinToken {
        /// Organisation id whose customer-managed node this token joins; a platform node when
        /// omitted.
        #[arg(long, value_name = "ORG_ID", value_parser = parse_uuid)]
        org: Option<String>,
        #[command(flatten)]
        options: JoinTokenArgs,
    },
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
    /// Show or publish the configuration distributed to every node.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Explain where a new session of an organisation would be placed, and why.
    Placement {
        /// Organisation id.
        #[arg(long, value_name = "ORG_ID", value_parser = parse_uuid)]
        org: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Show the latest published configuration and its version (`null` when none is published).
    Show,
    /// Publish a JSON configuration document as the next version. Fields left out take their
    /// defaults, and unknown fields are rejected.
    Set {
        /// JSON file; `-` reads stdin. When stdin is not a terminal, the token must then come
        /// from RDP_PROXY_OPERATOR_TOKEN.
        file: PathBuf,
    },
}

const NODES: &str = "/cluster/v1/nodes";

/// One cluster API request, as a command maps to it before the token is read.
struct Request {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    /// Node id and `--yes` flag of a revoke, which asks for confirmation on a terminal unless
    /// `--yes` was given.
    revoke: Option<(String, bool)>,
    /// Whether a `null` response is printed. `config show` prints it because the API returns
    /// `null` when no configuration is published.
    print_null: bool,
    /// Whether the body came from stdin, so the token cannot.
    body_from_stdin: bool,
}

impl Request {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            revoke: None,
            print_null: false,
            body_from_stdin: false,
        }
    }

    fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let server = normalize_server(&args.server);
    // Built before the token is read, so that a bad configuration file fails without a prompt.
    let request = request_for(args.command)?;
    let cluster = ClusterClient::new(server, read_operator_token(request.body_from_stdin)?)?;
    if let Some((id, yes)) = &request.revoke
        && needs_confirmation(*yes)
    {
        let node = cluster.send(Method::GET, &format!("{NODES}/{id}"), &[], None).await?;
        confirm(&revoke_question(&node, id))?;
    }
    let output = cluster
        .send(request.method, &request.path, &request.query, request.body.as_ref())
        .await?;
    if request.print_null || !output.is_null() {
        print_json(&output)?;
    }
    Ok(())
}

/// Maps a command to its request, reading the document of `config set`.
fn request_for(command: ClusterCommand) -> anyhow::Result<Request> {
    let empty = json!({});
    let request = match command {
        ClusterCommand::Nodes => Request::new(Method::GET, NODES),
        ClusterCommand::Node { id } => Request::new(Method::GET, format!("{NODES}/{id}")),
        ClusterCommand::JoinToken { org, options } => {
            let mut body = options.body();
            if let Some(org) = org {
                body.insert("org_id".into(), json!(org));
            }
            Request::new(Method::POST, "/cluster/v1/join-tokens").with_body(Value::Object(body))
        }
        ClusterCommand::Drain { id } => Request::new(Method::POST, format!("{NODES}/{id}/drain")).with_body(empty),
        ClusterCommand::Resume { id } => Request::new(Method::POST, format!("{NODES}/{id}/resume")).with_body(empty),
        ClusterCommand::Revoke { id, yes } => {
            let mut request = Request::new(Method::POST, format!("{NODES}/{id}/revoke")).with_body(empty);
            request.revoke = Some((id, yes));
            request
        }
        ClusterCommand::Remove { id } => Request::new(Method::DELETE, format!("{NODES}/{id}")),
        ClusterCommand::Config(ConfigCommand::Show) => {
            let mut request = Request::new(Method::GET, "/cluster/v1/config");
            request.print_null = true;
            request
        }
        ClusterCommand::Config(ConfigCommand::Set { file }) => {
            let mut request = Request::new(Method::PUT, "/cluster/v1/config").with_body(read_document(&file)?);
            request.body_from_stdin = file == Path::new("-");
            request
        }
        ClusterCommand::Placement { org } => {
            let mut request = Request::new(Method::GET, "/cluster/v1/placement");
            request.query.push(("org", org));
            request
        }
    };
    Ok(request)
}

/// Reads the operator token. When stdin carries a configuration document, the secret can only
/// come from the environment or a terminal prompt.
fn read_operator_token(stdin_in_use: bool) -> anyhow::Result<String> {
    let from_env = std::env::var(SECRET_ENV).is_ok();
    if stdin_in_use && !from_env && !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            ErrorKind::Usage,
            format!("stdin carries the configuration, so set {SECRET_ENV} to the operator token"),
        )
        .into());
    }
    let secret = read_secret(Some(SECRET_ENV), "Operator token: ")?;
    if secret.is_empty() {
        return Err(CliError::new(
            ErrorKind::Usage,
            format!("the operator token is empty; set {SECRET_ENV} or enter it at the prompt"),
        )
        .into());
    }
    Ok(secret)
}

/// Reads and parses the JSON document of `cluster config set`; `-` reads stdin.
fn read_document(file: &Path) -> anyhow::Result<Value> {
    let (name, text) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the configuration from stdin")?;
        ("<stdin>".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the configuration file {}", file.display()))?;
        (file.display().to_string(), text)
    };
    serde_json::from_str(&text).map_err(|error| {
        CliError::new(
            ErrorKind::Invalid,
            format!("{name} is not valid JSON: {error}; the configuration must be one JSON object"),
        )
        .into()
    })
}

/// HTTP client of the cluster API: the control plane's base URL and the operator token.
struct ClusterClient {
    http: reqwest::Client,
    server: String,
    secret: String,
}

impl ClusterClient {
    fn new(server: String, secret: String) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().build()?,
            server,
            secret,
        })
    }

    /// Sends one request with the operator token as the bearer and returns the JSON body
    /// (`null` when empty). A rejected secret keeps its API error, so the exit status stays 3.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let result = client::call(&self.http, method, &self.server, path, query, Some(&self.secret), body).await;
        result.map_err(|error| {
            if api_error(&error).is_some_and(|api| api.status == 401) {
                error.context(format!(
                    "the control plane at {} rejected the operator token; check {SECRET_ENV}",
                    self.server
                ))
            } else {
                error
            }
        })
    }
}

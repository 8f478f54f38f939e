//! The command-line client of the public API: `login`, `logout`, `me`, `orgs`, `members`,
//! `targets`, `credentials`, `policy`, `api-keys`, `audit`, `sessions` and `nodes`, and the
//! operator's `cluster` commands, which use the operator token instead of a login. Each command
//! prints the API's JSON (pretty), so scripts can pipe it to `jq`. Errors go to stderr as the
//! API's error code and message, and the exit status identifies the kind of failure (see
//! [`ErrorKind`]).

mod account;
mod api_keys;
mod audit;
mod client;
mod cluster;
mod credentials;
mod login_file;
mod members;
mod nodes;
mod policy;
mod sessions;
mod targets;

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use serde_json::Value;

/// Control plane the CLI talks to when neither `--server` nor `RDP_PROXY_SERVER` names one.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Log in to a control plane and store the tokens for the other commands.
    Login(account::LoginArgs),
    /// End the stored login on the server and delete the credentials file.
    Logout,
    /// Show the caller, the current organisation and the caller's permissions there.
    Me,
    /// List your organisations or switch the stored login to another one.
    #[command(subcommand)]
    Orgs(account::OrgsCommand),
    /// List, add, change and remove members of the organisation.
    #[command(subcommand)]
    Members(members::MembersCommand),
    /// List, show, create, change and delete RDP targets (desktops).
    #[command(subcommand)]
    Targets(targets::TargetsCommand),
    /// List, show, create, change and delete the credentials targets log in with.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Show, validate and save the organisation's access policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// List, create and revoke API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(api_keys::ApiKeysCommand),
    /// List audit records and verify their hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// List, open, attach to, observe, detach, take over and terminate sessions.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// List the organisation's own nodes, create join tokens, and drain, resume, revoke and
    /// remove nodes.
    #[command(subcommand)]
    Nodes(nodes::NodesCommand),
    /// Operator commands for every node, join tokens, the node configuration and placement,
    /// authenticated with the operator token (RDP_PROXY_OPERATOR_TOKEN or a prompt).
    Cluster(cluster::ClusterArgs),
}

/// Runs one CLI command. On failure it prints the error to stderr and exits the process with
/// the status of the error's [`ErrorKind`].
pub(crate) async fn run(command: Command) {
    let result = match command {
        Command::Login(args) => account::login(args).await,
        Command::Logout => account::logout().await,
        Command::Me => account::me().await,
        Command::Orgs(command) => account::orgs(command).await,
        Command::Members(command) => members::run(command).await,
        Command::Targets(command) => targets::run(command).await,
        Command::Credentials(command) => credentials::run(command).await,
        Command::Policy(command) => policy::run(command).await,
        Command::ApiKeys(command) => api_keys::run(command).await,
        Command::Audit(command) => audit::run(command).await,
        Command::Sessions(command) => sessions::run(command).await,
        Command::Nodes(command) => nodes::run(command).await,
        Command::Cluster(args) => cluster::run(args).await,
    };
    if let Err(error) = result {
        let _ = std::io::stdout().flush();
        eprintln!("error: {error:#}");
        std::process::exit(exit_status(&error));
    }
}

/// Kind of failure, one exit status each. clap exits with 2 on its own usage errors too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Network, server and local file failures, and anything not listed below.
    Other = 1,
    /// Invalid arguments.
    Usage = 2,
    /// Not logged in, or the login, token, API key or operator token was rejected (HTTP 401).
    Unauthenticated = 3,
    /// Forbidden (HTTP 403) or not found (HTTP 404, or no object with the given name).
    NotFound = 4,
    /// Conflict (HTTP 409) or invalid input (HTTP 400, 413, 415 and 422), an invalid policy
    /// or configuration file, or an audit chain that does not verify.
    Invalid = 5,
}

/// A failure the CLI detects itself, without an API error response.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// An error response of the API: `{"error": {"code", "message", …}}` with its HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
    /// The whole response body, for details such as the problems of an invalid policy.
    pub(crate) body: Value,
}

impl ApiError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self.status {
            401 => ErrorKind::Unauthenticated,
            403 | 404 => ErrorKind::NotFound,
            400 | 409 | 413 | 415 | 422 => ErrorKind::Invalid,
            _ => ErrorKind::Other,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {} (HTTP {})", self.code, self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

/// Exit status for `error`: that of the API error or CLI error it contains, else 1.
fn exit_status(error: &anyhow::Error) -> i32 {
    let kind = if let Some(api) = error.downcast_ref::<ApiError>() {
        api.kind()
    } else if let Some(cli) = error.downcast_ref::<CliError>() {
        cli.kind
    } else {
        ErrorKind::Other
    };
    kind as i32
}

/// Returns the API error inside `error`, if it has one.
pub(crate) fn api_error(error: &anyhow::Error) -> Option<&ApiError> {
    error.downcast_ref::<ApiError>()
}

/// Paging options shared by the list commands.
#[derive(Args)]
pub(crate) struct PageArgs {
    /// Items per page, 1 to 200 (the server uses 50 when omitted).
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// Start at this page: the `next_cursor` of the previous page.
    #[arg(long)]
    pub(crate) cursor: Option<String>,
    /// Follow `next_cursor` to the last page and print all items as one JSON array.
    #[arg(long)]
    pub(crate) all: bool,
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Reads a secret: from the environment variable `env` when it is set, else from a prompt on
/// the terminal without echo when stdin is a terminal, else as one line of stdin.
pub(crate) fn read_secret(env: Option<&str>, prompt: &str) -> anyhow::Result<String> {
    if let Some(value) = env.and_then(|name| std::env::var(name).ok()) {
        return Ok(value);
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(prompt)?);
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line)?;
    if read == 0 {
        let source = env.map_or_else(String::new, |name| format!("set {name} or "));
        return Err(CliError::new(
            ErrorKind::Usage,
            format!("stdin is empty; {source}write the secret as one line to stdin"),
        )
        .into());
    }
    let secret = line.strip_suffix('\n').unwrap_or(&line);
    Ok(secret.strip_suffix('\r').unwrap_or(secret).to_owned())
}

/// Whether a destructive command asks before it acts: only without `--yes` and when stdin is a
/// terminal. Without a terminal nobody could answer, so scripts run without asking.
pub(crate) fn needs_confirmation(yes: bool) -> bool {
    !yes && std::io::stdin().is_terminal()
}

/// Prints `question` on stderr and reads the reply as one line of stdin. Returns `Ok` for `y` or
/// `yes` (any case), and for any other reply an error saying that nothing was changed.
pub(crate) fn confirm(question: &str) -> anyhow::Result<()> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut reply = String::new();
    std::io::stdin().lock().read_line(&mut reply)?;
    let reply = reply.trim().to_ascii_lowercase();
    if reply == "y" || reply == "yes" {
        return Ok(());
    }
    Err(CliError::new(
        ErrorKind::Other,
        "cancelled; nothing was changed (pass --yes to skip the question)",
    )
    .into())
}

/// Parses `KEY=VALUE` for `--label`.
pub(crate) fn parse_label(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("label {raw:?} must be KEY=VALUE"))
}

/// Checks that an argument is a UUID, so it can go into a URL path as it is.
pub(crate) fn parse_uuid(raw: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| format!("{raw:?} is not an id (a UUID such as 0b9f4c1e-6f6d-4f5e-9a54-2d3c1f0e8a77)"))
}

pub(crate) fn is_uuid(raw: &str) -> bool {
    uuid::Uuid::parse_str(raw).is_ok()
}

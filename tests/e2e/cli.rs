//! The command-line client against a running control plane. Covered: login with the password on
//! stdin, the commands of every resource, JSON on stdout, and error codes on stderr with their
//! exit statuses. Also covered: invitations, token refresh before expiry (also from parallel
//! processes sharing one credentials file), API keys from the environment, and logout. The
//! `nodes` and `cluster` commands are covered against a control plane that serves the node API,
//! with one real node agent joined through them. Each command runs the real binary as a
//! subprocess with its own XDG_CONFIG_HOME. No RDP server is needed, because the one session
//! opened points at a closed loopback port. The retry after a
//! 401 `token_expired` needs an access token that expired on the server, at least 60 s after
//! login, so the unit tests in `bin/rdp-proxy/src/cli/client.rs` cover it against a mock server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_e2e::nodes::{AgentStart, start_agent};
use rdp_proxy_e2e::stack::OPERATOR_TOKEN;
use rdp_proxy_e2e::{Api, Stack};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const OWNER: (&str, &str) = ("olivia", "olivia-owner-pass");
const NEW_MEMBER: (&str, &str) = ("dave", "dave-password-123");
/// Users of the organisation `branch` whom the owner invites into `default`.
const INVITEE: (&str, &str) = ("erin", "erin-password-123");
const DECLINER: (&str, &str) = ("frank", "frank-password-12");
const CREDENTIAL_PASSWORD: &str = "Target-Secret-9931";
/// An admin and a member of the organisation `default` in the nodes test.
const NODE_ADMIN: (&str, &str) = ("nadia", "nadia-admin-pass");
const NODE_MEMBER: (&str, &str) = ("mark", "mark-member-pass");
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A well-formed node id that no node has.
const UNKNOWN_NODE: &str = "00000000-0000-4000-8000-000000000000";
/// How long a joined agent may take to report and become `ready`.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

const INVALID_POLICY: &str = r#"@id("typo")
permit (principal, action, resource)
when { principal.rol == "owner" };
"#;

/// Exit statuses the CLI promises.
const EXIT_USAGE: i32 = 2;
const EXIT_UNAUTHENTICATED: i32 = 3;
const EXIT_NOT_FOUND: i32 = 4;
const EXIT_INVALID: i32 = 5;

/// One CLI user: the binary with its own config directory and server.
struct Cli {
    binary: PathBuf,
    server: String,
    config: tempfile::TempDir,
}

/// Exit status and output of one command.
struct Run {
    args: String,
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout as JSON, after checking that the command succeeded.
    fn json(&self) -> Value {
        assert_eq!(self.status, 0, "{self}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self}"))
    }

    fn expect_status(&self, status: i32) -> &Self {
        assert_eq!(self.status, status, "{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "`rdp-proxy {}` exited with {}\nstdout: {}\nstderr: {}",
            self.args, self.status, self.stdout, self.stderr
        )
    }
}

impl Cli {
    fn new(binary: &Path, server: &str) -> Result<Self> {
        Ok(Self {
            binary: binary.to_path_buf(),
            server: server.to_owned(),
            config: tempfile::Builder::new().prefix("rdp-proxy-cli-").tempdir()?,
        })
    }

    fn credentials_path(&self) -> PathBuf {
        self.config.path().join("rdp-proxy").join("credentials.json")
    }

    fn stored(&self) -> Result<Value> {
        let text = std::fs::read_to_string(self.credentials_path())?;
        Ok(serde_json::from_str(&text)?)
    }

    fn store(&self, login: &Value) -> Result<()> {
        std::fs::write(self.credentials_path(), serde_json::to_string_pretty(login)?)?;
        Ok(())
    }

    async fn run(&self, args: &[&str]) -> Result<Run> {
        self.run_with(args, None, &[]).await
    }

    /// Runs `rdp-proxy ARGS` with `stdin` (or an empty, closed stdin) and extra environment.
    async fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Result<Run> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env("HOME", self.config.path())
            .env("RDP_PROXY_SERVER", &self.server)
            .env("RDP_PROXY_LOG", "warn")
            .env_remove("RDP_PROXY_API_KEY")
            .env_remove("RDP_PROXY_PASSWORD")
            .env_remove("RDP_PROXY_CREDENTIAL_PASSWORD")
            .env_remove("RDP_PROXY_OPERATOR_TOKEN")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn()?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await?;
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("rdp-proxy {args:?} did not finish within {COMMAND_TIMEOUT:?}"))??;
        Ok(Run {
            args: args.join(" "),
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    async fn login(&self, user: &str, password: &str) -> Result<Run> {
        self.run_with(&["login", "--user", user], Some(&format!("{password}\n")), &[])
            .await
    }
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rdp-proxy"))
}

fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rdp-proxy-agent"))
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["name"].as_str().map(str::to_owned))
        .collect()
}

/// Sends `GET /api/v1/me` with `token` and returns the status and the error code.
async fn probe(base: &str, token: &str) -> Result<(u16, String)> {
    let (status, body) = Api::with_token(base, token).raw("GET", "/api/v1/me", None).await?;
    Ok((status, body["error"]["code"].as_str().unwrap_or_default().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_mirrors_the_api() -> Result<()> {
    let stack = tokio::task::spawn_blocking(|| -> Result<Stack> {
        let stack = Stack::start(binary())?;
        stack.add_user(OWNER.0, OWNER.1, "owner")?;
        stack.add_user_in("branch", OWNER.0, OWNER.1, "admin")?;
        stack.add_user_in("branch", INVITEE.0, INVITEE.1, "member")?;
        stack.add_user_in("branch", DECLINER.0, DECLINER.1, "member")?;
        Ok(stack)
    })
    .await??;
    let base = stack.base_url();
    let cli = Cli::new(binary(), &base)?;

    // Not logged in, wrong password, then the password on stdin.
    cli.run(&["me"]).await?.expect_status(EXIT_UNAUTHENTICATED);
    let wrong = cli.login(OWNER.0, "not-the-password").await?;
    wrong.expect_status(EXIT_UNAUTHENTICATED);
    assert!(wrong.stderr.contains("login_failed"), "{wrong}");
    let login = cli.login(OWNER.0, OWNER.1).await?;
    let summary = login.json();
    assert_eq!(summary["user"]["name"], OWNER.0, "{login}");
    assert_eq!(summary["org"]["name"], "default", "{login}");
    assert!(!login.stdout.contains("access_token"), "tokens printed: {login}");
    assert!(!login.stdout.contains("refresh_token"), "tokens printed: {login}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(cli.credentials_path())?.permissions());
    assert_eq!(mode & 0o777, 0o600, "credentials file mode");
    let stored = cli.stored()?;
    for field in ["server", "access_token", "expires_at", "refresh_token", "org"] {
        assert!(!stored[field].is_null(), "credentials file lacks {field}: {stored}");
    }

    // me and orgs.
    let me = cli.run(&["me"]).await?.json();
    assert_eq!(me["user"]["name"], OWNER.0);
    assert_eq!(me["permissions"]["manage_members"], true);
    let orgs = cli.run(&["orgs", "list"]).await?.json();
    assert_eq!(names(&orgs).len(), 2, "{orgs}");
    let before_switch = cli.stored()?["access_token"].as_str().unwrap_or_default().to_owned();
    let switched = cli.run(&["orgs", "switch", "branch"]).await?.json();
    assert_eq!(switched["org"]["name"], "branch");
    assert_eq!(cli.run(&["me"]).await?.json()["org"]["name"], "branch");
    assert_eq!(
        probe(&base, &before_switch).await?,
        (401, "token_revoked".to_owned()),
        "the login in the previous organisation should be ended"
    );
    cli.run(&["orgs", "switch", "no-such-org"])
        .await?
        .expect_status(EXIT_NOT_FOUND);
    let back = cli.run(&["orgs", "switch", "default"]).await?.json();
    assert_eq!(back["org"]["name"], "default");
    let by_name = Cli::new(binary(), &base)?;
    let branch_login = by_name
        .run_with(
            &["login", "--user", OWNER.0, "--org", "branch"],
            None,
            &[("RDP_PROXY_PASSWORD", OWNER.1)],
        )
        .await?
        .json();
    assert_eq!(branch_login["org"]["name"], "branch");
    by_name
        .run_with(
            &["login", "--user", OWNER.0, "--org", "nowhere"],
            None,
            &[("RDP_PROXY_PASSWORD", OWNER.1)],
        )
        .await?
        .expect_status(EXIT_NOT_FOUND);

    // Members: add with a password on stdin, change role, disable, enable, remove.
    let added = cli
        .run_with(
            &["members", "add", NEW_MEMBER.0, "--role", "member", "--password-stdin"],
            Some(&format!("{}\n", NEW_MEMBER.1)),
            &[],
        )
        .await?
        .json();
    assert_eq!(added["name"], NEW_MEMBER.0);
    assert_eq!(added["role"], "member");
    let dave = Cli::new(binary(), &base)?;
    dave.login(NEW_MEMBER.0, NEW_MEMBER.1).await?.json();
    let promoted = cli
        .run(&["members", "set", NEW_MEMBER.0, "--role", "operator"])
        .await?
        .json();
    assert_eq!(promoted["role"], "operator");
    let operators = cli.run(&["members", "list", "--role", "operator"]).await?.json();
    assert_eq!(names(&operators["items"]), vec![NEW_MEMBER.0.to_owned()], "{operators}");
    let disabled = cli.run(&["members", "set", NEW_MEMBER.0, "--disable"]).await?.json();
    assert_eq!(disabled["status"], "disabled");
    dave.run(&["me"]).await?.expect_status(EXIT_UNAUTHENTICATED);
    let enabled = cli.run(&["members", "set", NEW_MEMBER.0, "--enable"]).await?.json();
    assert_eq!(enabled["status"], "active");
    cli.run(&["members", "set", NEW_MEMBER.0])
        .await?
        .expect_status(EXIT_USAGE);
    let removed = cli.run(&["members", "remove", NEW_MEMBER.0]).await?;
    removed.expect_status(0);
    assert!(removed.stdout.is_empty(), "{removed}");
    let everyone = cli.run(&["members", "list", "--all"]).await?.json();
    assert!(everyone.is_array(), "--all prints one array: {everyone}");
    assert!(!names(&everyone).contains(&NEW_MEMBER.0.to_owned()), "{everyone}");
    cli.run(&["members", "get", NEW_MEMBER.0])
        .await?
        .expect_status(EXIT_NOT_FOUND);

    // Invitations: adding an existing user invites them; one accepts, the other declines.
    for user in [INVITEE.0, DECLINER.0] {
        let invited = cli.run(&["members", "add", user, "--role", "member"]).await?.json();
        assert_eq!(invited["status"], "invited", "{invited}");
    }
    let invitee = Cli::new(binary(), &base)?;
    invitee.login(INVITEE.0, INVITEE.1).await?.json();
    let invitations = invitee.run(&["orgs", "invitations"]).await?.json();
    assert_eq!(names(&invitations), vec!["default"], "{invitations}");
    invitee
        .run(&["orgs", "accept", "nowhere"])
        .await?
        .expect_status(EXIT_NOT_FOUND);
    let accepted = invitee.run(&["orgs", "accept", "default"]).await?.json();
    assert!(names(&accepted["orgs"]).contains(&"default".to_owned()), "{accepted}");
    let member = cli.run(&["members", "get", INVITEE.0]).await?.json();
    assert_eq!(member["status"], "active", "{member}");
    let decliner = Cli::new(binary(), &base)?;
    decliner.login(DECLINER.0, DECLINER.1).await?.json();
    let declined = decliner.run(&["orgs", "decline", "default"]).await?;
    declined.expect_status(0);
    assert!(declined.stdout.is_empty(), "{declined}");
    cli.run(&["members", "get", DECLINER.0])
        .await?
        .expect_status(EXIT_NOT_FOUND);

    // Credentials: the password comes from the environment or stdin and is never printed.
    let credential_env = [("RDP_PROXY_CREDENTIAL_PASSWORD", CREDENTIAL_PASSWORD)];
    let created = cli
        .run_with(
            &[
                "credentials",
                "create",
                "--name",
                "desk-cred",
                "--username",
                "deskuser",
                "--domain",
                "CORP",
            ],
            None,
            &credential_env,
        )
        .await?;
    let credential = created.json();
    assert_eq!(credential["username"], "deskuser");
    assert!(credential.get("password").is_none(), "{created}");
    assert!(!created.stdout.contains(CREDENTIAL_PASSWORD), "{created}");
    assert!(!created.stderr.contains(CREDENTIAL_PASSWORD), "{created}");
    let from_stdin = cli
        .run_with(
            &["credentials", "create", "--name", "spare-cred", "--username", "spare"],
            Some(&format!("{CREDENTIAL_PASSWORD}\n")),
            &[],
        )
        .await?;
    from_stdin.json();
    assert!(!from_stdin.stdout.contains(CREDENTIAL_PASSWORD), "{from_stdin}");
    let listed = cli.run(&["credentials", "list"]).await?;
    assert_eq!(names(&listed.json()["items"]), vec!["desk-cred", "spare-cred"]);
    assert!(!listed.stdout.contains(CREDENTIAL_PASSWORD), "{listed}");
    let renamed = cli
        .run(&[
            "credentials",
            "update",
            "spare-cred",
            "--no-domain",
            "--username",
            "spare2",
        ])
        .await?
        .json();
    assert_eq!(renamed["username"], "spare2");
    cli.run(&["credentials", "delete", "spare-cred"])
        .await?
        .expect_status(0);

    // Targets: create with labels and a credential by name, filter by label, update, delete.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let web1 = cli
        .run(&[
            "targets",
            "create",
            "--name",
            "web-1",
            "--host",
            "127.0.0.1",
            "--port",
            &closed_port,
            "--label",
            "env=prod",
            "--label",
            "team=web",
            "--credential",
            "desk-cred",
        ])
        .await?
        .json();
    assert_eq!(web1["labels"]["env"], "prod");
    assert_eq!(web1["credential_name"], "desk-cred");
    cli.run(&[
        "targets",
        "create",
        "--name",
        "web-2",
        "--host",
        "127.0.0.1",
        "--port",
        &closed_port,
        "--label",
        "env=dev",
        "--credential",
        "desk-cred",
        "--max-width",
        "1920",
    ])
    .await?
    .json();
    let prod = cli.run(&["targets", "list", "--label", "env=prod"]).await?.json();
    assert_eq!(names(&prod["items"]), vec!["web-1"], "{prod}");
    let all_targets = cli.run(&["targets", "list", "--all", "--limit", "1"]).await?.json();
    assert_eq!(
        names(&all_targets),
        vec!["web-1", "web-2"],
        "--all should follow the cursor"
    );
    let first_page = cli.run(&["targets", "list", "--limit", "1"]).await?.json();
    assert!(first_page["next_cursor"].is_string(), "{first_page}");
    let updated = cli
        .run(&["targets", "update", "web-2", "--no-max-width", "--label", "env=qa"])
        .await?
        .json();
    assert!(updated["max_width"].is_null(), "{updated}");
    assert_eq!(updated["labels"], serde_json::json!({ "env": "qa" }));
    assert_eq!(cli.run(&["targets", "get", "web-1"]).await?.json()["id"], web1["id"]);
    cli.run(&["targets", "get", "no-such-target"])
        .await?
        .expect_status(EXIT_NOT_FOUND);
    cli.run(&["targets", "list", "--label", "novalue"])
        .await?
        .expect_status(EXIT_USAGE);
    cli.run(&["targets", "delete", "web-2"]).await?.expect_status(0);
    let in_use = cli.run(&["credentials", "delete", "desk-cred"]).await?;
    in_use.expect_status(EXIT_INVALID);
    assert!(in_use.stderr.contains("HTTP 409"), "{in_use}");

    // Sessions: list, then observe a session whose target port is closed.
    let mine = cli.run(&["sessions", "list", "--mine"]).await?.json();
    assert!(mine["items"].is_array(), "{mine}");
    let session = cli.run(&["sessions", "create", "web-1"]).await?.json();
    let session_id = session["id"].as_str().context("session without id")?.to_owned();
    let observe = cli.run(&["sessions", "observe", &session_id]).await?;
    observe.expect_status(EXIT_INVALID);
    assert!(observe.stderr.contains("HTTP 409"), "{observe}");
    let events = cli.run(&["sessions", "events", &session_id]).await?.json();
    assert!(!events["items"].as_array().is_none_or(Vec::is_empty), "{events}");

    // Policy: an invalid file is rejected with FILE:LINE:COLUMN problems, a valid one saved.
    let policy_dir = tempfile::Builder::new().prefix("rdp-proxy-cli-policy-").tempdir()?;
    let invalid_file = policy_dir.path().join("invalid.cedar");
    std::fs::write(&invalid_file, INVALID_POLICY)?;
    let invalid_name = invalid_file.display().to_string();
    let rejected = cli.run(&["policy", "save", &invalid_name]).await?;
    rejected.expect_status(EXIT_INVALID);
    assert!(rejected.stderr.contains("invalid_policy"), "{rejected}");
    let problem_prefix = format!("{invalid_name}:3:");
    let problem_line = rejected
        .stderr
        .lines()
        .find(|line| line.starts_with(&problem_prefix))
        .unwrap_or_else(|| panic!("no {problem_prefix}COLUMN: line: {rejected}"));
    let column = problem_line[problem_prefix.len()..]
        .split(':')
        .next()
        .unwrap_or_default();
    assert!(column.parse::<u32>().is_ok(), "no column in {problem_line:?}");
    let validated = cli.run(&["policy", "validate", &invalid_name]).await?;
    validated.expect_status(EXIT_INVALID);
    assert!(validated.stderr.contains(&problem_prefix), "{validated}");
    let default_text = cli.run(&["policy", "default", "--text"]).await?;
    default_text.expect_status(0);
    let valid_file = policy_dir.path().join("valid.cedar");
    std::fs::write(&valid_file, &default_text.stdout)?;
    let valid_name = valid_file.display().to_string();
    let valid = cli.run(&["policy", "validate", &valid_name]).await?.json();
    assert_eq!(valid["valid"], true, "{valid}");
    let saved = cli.run(&["policy", "save", &valid_name]).await?.json();
    assert_eq!(saved["version"], 1, "{saved}");
    let saved_from_stdin = cli
        .run_with(&["policy", "save", "-"], Some(&default_text.stdout), &[])
        .await?
        .json();
    assert_eq!(saved_from_stdin["version"], 2, "{saved_from_stdin}");
    assert_eq!(cli.run(&["policy", "get"]).await?.json()["version"], 2);
    let text = cli.run(&["policy", "get", "--text"]).await?;
    assert_eq!(text.stdout, default_text.stdout);
    let stale = cli.run(&["policy", "save", &valid_name, "--version", "1"]).await?;
    stale.expect_status(EXIT_INVALID);
    assert!(stale.stderr.contains("HTTP 409"), "{stale}");

    // API keys: a new key works from RDP_PROXY_API_KEY without any stored login.
    let key = cli
        .run(&[
            "api-keys",
            "create",
            "--name",
            "ci",
            "--role",
            "admin",
            "--expires-in-days",
            "7",
        ])
        .await?
        .json();
    let secret = key["key"]
        .as_str()
        .context("api-keys create printed no key")?
        .to_owned();
    let key_id = key["id"].as_str().context("api-keys create printed no id")?.to_owned();
    let automation = Cli::new(binary(), &base)?;
    let key_env = [("RDP_PROXY_API_KEY", secret.as_str())];
    let with_key = automation.run_with(&["targets", "list"], None, &key_env).await?.json();
    assert_eq!(names(&with_key["items"]), vec!["web-1"], "{with_key}");
    let key_me = automation.run_with(&["me"], None, &key_env).await?.json();
    assert_eq!(key_me["kind"], "api_key");
    let keys = cli.run(&["api-keys", "list"]).await?;
    assert!(!keys.stdout.contains(&secret), "api-keys list printed the key: {keys}");
    cli.run(&["api-keys", "revoke", &key_id]).await?.expect_status(0);
    let revoked = automation.run_with(&["targets", "list"], None, &key_env).await?;
    revoked.expect_status(EXIT_UNAUTHENTICATED);
    assert!(revoked.stderr.contains("token_revoked"), "{revoked}");

    // Audit.
    let verify = cli.run(&["audit", "verify"]).await?.json();
    assert_eq!(verify["ok"], true, "{verify}");
    let additions = cli
        .run(&["audit", "list", "--action", "member.add", "--all"])
        .await?
        .json();
    // Three members added through the CLI, and the owner added by `rdp-proxy admin` at set-up.
    assert_eq!(additions.as_array().map(Vec::len), Some(4), "{additions}");
    assert_eq!(additions[3]["actor_name"], "rdp-proxy admin", "{additions}");

    // An access token stored as expired is refreshed first, and the old refresh token is spent.
    let mut login = cli.stored()?;
    let old_refresh = login["refresh_token"].clone();
    login["expires_at"] = Value::from("2000-01-01T00:00:00Z");
    cli.store(&login)?;
    assert_eq!(cli.run(&["me"]).await?.json()["user"]["name"], OWNER.0);
    let refreshed = cli.stored()?;
    assert_ne!(refreshed["refresh_token"], old_refresh, "refresh token not rotated");
    assert_ne!(refreshed["expires_at"], "2000-01-01T00:00:00Z");

    // A garbage access token with a valid refresh token, refreshed by parallel commands: only
    // one may spend the refresh token, or the server revokes the login.
    let mut login = cli.stored()?;
    login["access_token"] = Value::from("garbage");
    login["expires_at"] = Value::from("2000-01-01T00:00:00Z");
    cli.store(&login)?;
    let parallel = tokio::join!(cli.run(&["me"]), cli.run(&["me"]), cli.run(&["me"]), cli.run(&["me"]));
    for run in [parallel.0?, parallel.1?, parallel.2?, parallel.3?] {
        assert_eq!(run.json()["user"]["name"], OWNER.0);
    }
    assert_eq!(cli.run(&["me"]).await?.json()["user"]["name"], OWNER.0);

    // Logout ends the login on the server and deletes the file.
    let last_token = cli.stored()?["access_token"].as_str().unwrap_or_default().to_owned();
    let logout = cli.run(&["logout"]).await?;
    logout.expect_status(0);
    assert!(!cli.credentials_path().exists(), "credentials file kept after logout");
    assert_eq!(probe(&base, &last_token).await?, (401, "token_revoked".to_owned()));
    cli.run(&["me"]).await?.expect_status(EXIT_UNAUTHENTICATED);
    cli.run(&["logout"]).await?.expect_status(EXIT_UNAUTHENTICATED);

    let logs = stack.logs();
    assert!(
        !logs.contains(CREDENTIAL_PASSWORD),
        "a target password appeared in a log"
    );
    assert!(!logs.contains(NEW_MEMBER.1), "a member's password appeared in a log");
    Ok(())
}

/// Runs `rdp-proxy cluster ARGS` with the right operator token in the environment.
async fn cluster(cli: &Cli, args: &[&str]) -> Result<Run> {
    let mut full = vec!["cluster"];
    full.extend_from_slice(args);
    cli.run_with(&full, None, &[("RDP_PROXY_OPERATOR_TOKEN", OPERATOR_TOKEN)])
        .await
}

/// Polls `rdp-proxy cluster node ID` until the node's state is `state`; returns its view.
async fn wait_node_state(cli: &Cli, id: &str, state: &str) -> Result<Value> {
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    loop {
        let node = cluster(cli, &["node", id]).await?.json();
        if node["state"] == state {
            return Ok(node);
        }
        if Instant::now() > deadline {
            bail!("node {id} did not become {state} within {NODE_READY_TIMEOUT:?}: {node:#}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_manages_nodes_and_cluster() -> Result<()> {
    let stack = tokio::task::spawn_blocking(|| -> Result<Stack> {
        let stack = Stack::start_cluster(binary())?;
        stack.add_user(NODE_ADMIN.0, NODE_ADMIN.1, "admin")?;
        stack.add_user(NODE_MEMBER.0, NODE_MEMBER.1, "member")?;
        Ok(stack)
    })
    .await??;
    let base = stack.base_url();
    let operator = Cli::new(binary(), &base)?;
    let admin = Cli::new(binary(), &base)?;
    admin.login(NODE_ADMIN.0, NODE_ADMIN.1).await?.json();
    let member = Cli::new(binary(), &base)?;
    member.login(NODE_MEMBER.0, NODE_MEMBER.1).await?.json();
    let org_id = admin.run(&["me"]).await?.json()["org"]["id"]
        .as_str()
        .context("me printed no organisation id")?
        .to_owned();

    // Cluster join tokens and the empty node list.
    let platform_token = cluster(&operator, &["join-token", "--label", "zone=a"]).await?.json();
    let token = platform_token["token"].as_str().unwrap_or_default();
    assert!(token.starts_with("rpj1_"), "{platform_token}");
    assert_eq!(platform_token["owner"]["kind"], "platform", "{platform_token}");
    let short = cluster(&operator, &["join-token", "--ttl-secs", "10"]).await?;
    short.expect_status(EXIT_INVALID);
    assert!(short.stderr.contains("invalid_ttl"), "{short}");
    cluster(&operator, &["join-token", "--service", "printer"])
        .await?
        .expect_status(EXIT_USAGE);
    assert_eq!(cluster(&operator, &["nodes"]).await?.json(), json!([]));
    let placement = cluster(&operator, &["placement", "--org", &org_id]).await?.json();
    assert!(placement["chosen"].is_null(), "no worker runs yet: {placement}");

    // The operator token: a wrong one is an authentication failure, a missing one a usage error.
    let wrong = operator
        .run_with(
            &["cluster", "nodes"],
            None,
            &[("RDP_PROXY_OPERATOR_TOKEN", "not-the-operator-token")],
        )
        .await?;
    wrong.expect_status(EXIT_UNAUTHENTICATED);
    assert!(wrong.stderr.contains("unauthenticated"), "{wrong}");
    assert!(!wrong.stderr.contains("not-the-operator-token"), "{wrong}");
    operator.run(&["cluster", "nodes"]).await?.expect_status(EXIT_USAGE);
    let from_stdin = operator
        .run_with(&["cluster", "nodes"], Some(&format!("{OPERATOR_TOKEN}\n")), &[])
        .await?;
    assert_eq!(from_stdin.json(), json!([]));

    // Node configuration: a valid file is published and shown; invalid ones are rejected.
    let config_dir = tempfile::Builder::new().prefix("rdp-proxy-cli-config-").tempdir()?;
    let config = json!({ "report_interval_secs": 1, "worker_max_sessions": 8, "worker_connect_timeout_secs": 10 });
    let valid_file = config_dir.path().join("valid.json");
    std::fs::write(&valid_file, serde_json::to_string_pretty(&config)?)?;
    let valid_name = valid_file.display().to_string();
    let published = cluster(&operator, &["config", "set", &valid_name]).await?.json();
    assert_eq!(published["version"], 1, "{published}");
    let current = cluster(&operator, &["config", "show"]).await?.json();
    assert_eq!(current["version"], 1, "{current}");
    assert_eq!(current["body"], config, "{current}");
    for (name, text) in [
        ("zero.json", r#"{ "report_interval_secs": 0 }"#),
        ("unknown.json", r#"{ "report_every": 5 }"#),
    ] {
        let file = config_dir.path().join(name);
        std::fs::write(&file, text)?;
        let rejected = cluster(&operator, &["config", "set", &file.display().to_string()]).await?;
        rejected.expect_status(EXIT_INVALID);
        assert!(rejected.stderr.contains("invalid_config"), "{rejected}");
    }
    let malformed = config_dir.path().join("malformed.json");
    std::fs::write(&malformed, "{ report_interval_secs: 1 }")?;
    let rejected = cluster(&operator, &["config", "set", &malformed.display().to_string()]).await?;
    rejected.expect_status(EXIT_INVALID);
    assert!(rejected.stderr.contains("not valid JSON"), "{rejected}");
    let piped = operator
        .run_with(
            &["cluster", "config", "set", "-"],
            Some(&config.to_string()),
            &[("RDP_PROXY_OPERATOR_TOKEN", OPERATOR_TOKEN)],
        )
        .await?
        .json();
    assert_eq!(piped["version"], 2, "{piped}");
    operator
        .run_with(&["cluster", "config", "set", "-"], Some(&config.to_string()), &[])
        .await?
        .expect_status(EXIT_USAGE);
    assert_eq!(cluster(&operator, &["config", "show"]).await?.json()["version"], 2);

    // The organisation's nodes: admins create join tokens, members may not even list.
    let org_token = admin
        .run(&["nodes", "join-token", "--ttl-secs", "600", "--label", "site=lab"])
        .await?
        .json();
    let token = org_token["token"]
        .as_str()
        .context("nodes join-token printed no token")?;
    assert!(token.starts_with("rpj1_"), "{org_token}");
    assert_eq!(org_token["owner"]["kind"], "org", "{org_token}");
    assert_eq!(org_token["owner"]["org_id"], org_id.as_str(), "{org_token}");
    assert_eq!(admin.run(&["nodes", "list"]).await?.json(), json!([]));
    let forbidden = member.run(&["nodes", "list"]).await?;
    forbidden.expect_status(EXIT_NOT_FOUND);
    assert!(forbidden.stderr.contains("forbidden"), "{forbidden}");
    member
        .run(&["nodes", "join-token"])
        .await?
        .expect_status(EXIT_NOT_FOUND);

    // A real agent joins with the organisation's token; both command groups drain and resume it.
    let agent = start_agent(
        &stack,
        agent_binary(),
        "lab-1",
        AgentStart {
            token: Some(token),
            org: Some(&org_id),
            data_dir: None,
        },
    )?;
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    let node_id = loop {
        if let Ok(id) = agent.node_id() {
            break id;
        }
        if Instant::now() > deadline {
            bail!(
                "agent did not join within {NODE_READY_TIMEOUT:?}:\n{}",
                agent.process.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let node = wait_node_state(&operator, &node_id, "ready").await?;
    assert_eq!(node["name"], "lab-1", "{node}");
    assert_eq!(node["labels"]["site"], "lab", "{node}");
    let listed = admin.run(&["nodes", "list"]).await?.json();
    assert_eq!(names(&listed), vec!["lab-1"], "{listed}");
    let all_nodes = cluster(&operator, &["nodes"]).await?.json();
    assert_eq!(names(&all_nodes), vec!["lab-1"], "{all_nodes}");

    let drained = admin.run(&["nodes", "drain", &node_id]).await?.json();
    assert_eq!(drained["state"], "draining", "{drained}");
    assert_eq!(drained["drain_requested"], true, "{drained}");
    let resumed = cluster(&operator, &["resume", &node_id]).await?.json();
    assert_eq!(resumed["state"], "ready", "{resumed}");
    let drained = cluster(&operator, &["drain", &node_id]).await?.json();
    assert_eq!(drained["state"], "draining", "{drained}");
    let resumed = admin.run(&["nodes", "resume", &node_id]).await?.json();
    assert_eq!(resumed["state"], "ready", "{resumed}");
    member
        .run(&["nodes", "drain", &node_id])
        .await?
        .expect_status(EXIT_NOT_FOUND);

    // Removing needs a revoked node; revoking without a terminal does not ask.
    let early = admin.run(&["nodes", "remove", &node_id]).await?;
    early.expect_status(EXIT_INVALID);
    assert!(early.stderr.contains("node_not_revoked"), "{early}");
    let revoked = admin.run(&["nodes", "revoke", &node_id]).await?.json();
    assert_eq!(revoked["node"]["state"], "revoked", "{revoked}");
    cluster(&operator, &["drain", &node_id])
        .await?
        .expect_status(EXIT_INVALID);
    let removed = cluster(&operator, &["remove", &node_id]).await?;
    removed.expect_status(0);
    assert!(removed.stdout.is_empty(), "{removed}");
    cluster(&operator, &["node", &node_id])
        .await?
        .expect_status(EXIT_NOT_FOUND);
    cluster(&operator, &["revoke", "--yes", UNKNOWN_NODE])
        .await?
        .expect_status(EXIT_NOT_FOUND);
    cluster(&operator, &["drain", "lab-1"]).await?.expect_status(EXIT_USAGE);
    assert_eq!(cluster(&operator, &["nodes"]).await?.json(), json!([]));

    assert!(
        !stack.logs().contains(OPERATOR_TOKEN),
        "the operator token appeared in a log"
    );
    drop(agent);
    Ok(())
}

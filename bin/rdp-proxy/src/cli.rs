//! `rdp-proxy login` and `rdp-proxy sessions …`: a thin client of the public API. Output is the
//! API's JSON, so scripts can pipe it to `jq`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Args)]
pub(crate) struct LoginArgs {
    /// Base URL of the control plane.
    #[arg(long, env = "RDP_PROXY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long, short)]
    user: String,
    /// Password; read from RDP_PROXY_PASSWORD when omitted.
    #[arg(long, env = "RDP_PROXY_PASSWORD", hide_env_values = true)]
    password: String,
}

#[derive(Subcommand)]
pub(crate) enum SessionsCommand {
    /// List sessions (your own, or all of the organisation for an admin).
    List {
        /// Only sessions in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one session.
    Get { id: String },
    /// Show a session's history.
    Events { id: String },
    /// Open a desktop on a target (by id or name).
    Create {
        target: String,
        #[arg(long)]
        width: Option<u16>,
        #[arg(long)]
        height: Option<u16>,
    },
    /// Get a single-use attach token and the viewer URL.
    Attach { id: String },
    /// Take control from the current viewer (another user's session needs the admin role).
    Takeover { id: String },
    /// Disconnect the viewers; the desktop keeps running.
    Detach { id: String },
    /// End the session and its RDP connection.
    Terminate {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
struct Credentials {
    server: String,
    access_token: String,
    expires_at: String,
}

fn credentials_path() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(base.join("rdp-proxy").join("credentials.json"))
}

pub(crate) async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let server = args.server.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{server}/api/v1/login"))
        .json(&json!({ "username": args.user, "password": args.password }))
        .send()
        .await
        .with_context(|| format!("could not reach {server}"))?;
    let body = read_body(response).await?;
    let credentials = Credentials {
        server,
        access_token: body["access_token"]
            .as_str()
            .context("login response has no access_token")?
            .to_owned(),
        expires_at: body["expires_at"].as_str().unwrap_or_default().to_owned(),
    };
    let path = credentials_path()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&credentials)?)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    println!("{}", serde_json::to_string_pretty(&body["user"])?);
    eprintln!(
        "Logged in until {}; token stored in {}",
        credentials.expires_at,
        path.display()
    );
    Ok(())
}

pub(crate) async fn sessions(command: SessionsCommand) -> anyhow::Result<()> {
    let path = credentials_path()?;
    let raw = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "not logged in ({} missing); run `rdp-proxy login` first",
            path.display()
        )
    })?;
    let credentials: Credentials =
        serde_json::from_str(&raw).context("stored credentials are unreadable; run `rdp-proxy login` again")?;
    let api = Api {
        client: reqwest::Client::new(),
        credentials,
    };
    let result = match command {
        SessionsCommand::List { state } => {
            let query = state.map(|state| format!("?state={state}")).unwrap_or_default();
            api.get(&format!("/api/v1/sessions{query}")).await?
        }
        SessionsCommand::Get { id } => api.get(&format!("/api/v1/sessions/{id}")).await?,
        SessionsCommand::Events { id } => api.get(&format!("/api/v1/sessions/{id}/events")).await?,
        SessionsCommand::Create { target, width, height } => {
            let target_id = api.resolve_target(&target).await?;
            api.post(
                "/api/v1/sessions",
                json!({ "target_id": target_id, "width": width, "height": height }),
            )
            .await?
        }
        SessionsCommand::Attach { id } => api.attach(&id, "control").await?,
        SessionsCommand::Takeover { id } => api.attach(&id, "takeover").await?,
        SessionsCommand::Detach { id } => api.post(&format!("/api/v1/sessions/{id}/detach"), json!({})).await?,
        SessionsCommand::Terminate { id, reason } => {
            api.post(&format!("/api/v1/sessions/{id}/terminate"), json!({ "reason": reason }))
                .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

struct Api {
    client: reqwest::Client,
    credentials: Credentials,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.client.get(format!("{}{path}", self.credentials.server));
        self.send(request).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let request = self
            .client
            .post(format!("{}{path}", self.credentials.server))
            .json(&body);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.credentials.access_token)
            .send()
            .await
            .with_context(|| format!("could not reach {}", self.credentials.server))?;
        read_body(response).await
    }

    async fn attach(&self, id: &str, mode: &str) -> anyhow::Result<Value> {
        let mut body = self
            .post(&format!("/api/v1/sessions/{id}/attach"), json!({ "mode": mode }))
            .await?;
        if let Some(page) = body["viewer_url"].as_str() {
            body["viewer_page"] = Value::String(format!("{}{page}", self.credentials.server));
        }
        Ok(body)
    }

    async fn resolve_target(&self, target: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(target).is_ok() {
            return Ok(target.to_owned());
        }
        let targets = self.get("/api/v1/targets").await?;
        let items = targets["items"].as_array().cloned().unwrap_or_default();
        match items.iter().find(|item| item["name"] == target) {
            Some(item) => Ok(item["id"].as_str().unwrap_or_default().to_owned()),
            None => bail!("no target named {target:?}; `rdp-proxy sessions` needs a target id or an existing name"),
        }
    }
}

/// Returns the JSON body, or an error carrying the API's code and message.
async fn read_body(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let code = body["error"]["code"].as_str().unwrap_or("unknown");
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    bail!("{message} ({code}, HTTP {})", status.as_u16())
}

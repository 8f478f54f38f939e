//! Node agents and the operator's cluster API for the multi-node tests: each agent is a real
//! `rdp-proxy-agent` process with its own data directory, joined with a real token, running a
//! real worker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_testkit::ProcessGuard;
use serde_json::{Value, json};

use crate::stack::{CLUSTER_SECRET, OPERATOR_TOKEN, Stack};

/// A running (or exited) node agent.
pub struct Agent {
    pub name: String,
    pub process: ProcessGuard,
    pub data_dir: PathBuf,
}

impl Agent {
    /// Returns the node id the agent stored after joining.
    pub fn node_id(&self) -> Result<String> {
        let raw = std::fs::read_to_string(self.data_dir.join("node.json"))
            .with_context(|| format!("agent {} has no node.json yet", self.name))?;
        let value: Value = serde_json::from_str(&raw)?;
        value["node_id"]
            .as_str()
            .map(str::to_owned)
            .context("node.json without node_id")
    }

    /// Waits for the agent to exit and returns its exit code.
    pub fn wait_exit_code(&mut self, limit: Duration) -> Result<i32> {
        if !self.process.wait_exit(limit) {
            bail!(
                "agent {} still runs after {limit:?}:\n{}",
                self.name,
                self.process.log_text()
            );
        }
        self.process
            .exit_status()
            .and_then(|status| status.code())
            .context("agent ended by a signal")
    }

    /// Reads a file of the agent's data directory.
    pub fn file(&self, name: &str) -> Result<String> {
        std::fs::read_to_string(self.data_dir.join(name)).with_context(|| format!("agent {} has no {name}", self.name))
    }
}

/// Options of one agent start.
#[derive(Default)]
pub struct AgentStart<'a> {
    pub token: Option<&'a str>,
    pub org: Option<&'a str>,
    /// Reuse this data directory (an agent restarting with its identity).
    pub data_dir: Option<&'a Path>,
}

/// Starts `rdp-proxy-agent` against the stack's node API. The worker it runs logs in to the
/// stack's databases with the same environment as every other service.
pub fn start_agent(stack: &Stack, agent_binary: &Path, name: &str, options: AgentStart<'_>) -> Result<Agent> {
    let data_dir = match options.data_dir {
        Some(dir) => dir.to_path_buf(),
        None => stack.log_dir().join(format!("agent-{name}")),
    };
    let mut command = Command::new(agent_binary);
    command
        .args(["--control-url", &format!("https://{}", stack.node_api_addr()?)])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--name", name])
        .arg("--worker-bin")
        .arg(&stack.env.binary)
        .env("RDP_PROXY_DATABASE_URL", &stack.env.database_url)
        .env("RDP_PROXY_REDIS_URL", &stack.env.redis_url)
        .env("RDP_PROXY_CLUSTER_SECRET", CLUSTER_SECRET)
        .env("RDP_PROXY_LOG", "info,rdp_proxy_worker=debug,rdp_proxy_agent=debug");
    if let Some(token) = options.token {
        command.env("RDP_PROXY_JOIN_TOKEN", token);
    }
    if let Some(org) = options.org {
        command.args(["--org", org]);
    }
    let log = stack.log_dir().join(format!("agent-{name}-{}.log", unique()));
    let process = ProcessGuard::spawn_logged(&format!("agent-{name}"), &mut command, &log)?;
    Ok(Agent {
        name: name.to_owned(),
        process,
        data_dir,
    })
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// The operator's cluster API, authenticated with the operator token.
#[derive(Clone)]
pub struct Cluster {
    base: String,
    http: reqwest::Client,
}

impl Cluster {
    pub fn new(stack: &Stack) -> Self {
        Self {
            base: stack.base_url(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request and returns the status and the JSON body (`null` when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(OPERATOR_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, value))
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, value) = self.call(method, path, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: HTTP {status} {value}");
        }
        Ok(value)
    }

    /// Creates a join token for the platform (`org` = None) or for one organisation.
    pub async fn join_token(&self, org: Option<&str>) -> Result<String> {
        let body = match org {
            Some(org) => json!({ "org_id": org }),
            None => json!({}),
        };
        let value = self.ok("POST", "/cluster/v1/join-tokens", Some(body)).await?;
        value["token"].as_str().map(str::to_owned).context("no token")
    }

    pub async fn nodes(&self) -> Result<Vec<Value>> {
        let value = self.ok("GET", "/cluster/v1/nodes", None).await?;
        value.as_array().cloned().context("nodes is not a list")
    }

    pub async fn node(&self, id: &str) -> Result<Value> {
        self.ok("GET", &format!("/cluster/v1/nodes/{id}"), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.ok("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.ok("PUT", path, Some(body)).await
    }

    pub async fn explain(&self, org: &str) -> Result<Value> {
        self.ok("GET", &format!("/cluster/v1/placement?org={org}"), None).await
    }

    /// Waits until `check` accepts the node's view.
    pub async fn wait_node(
        &self,
        id: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let node = self.node(id).await?;
            if check(&node) {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!("node {id} did not become {what} within {limit:?}: {node:#}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Maps each live worker id to the name of its node.
    pub async fn worker_nodes(&self) -> Result<std::collections::HashMap<String, String>> {
        let mut map = std::collections::HashMap::new();
        for node in self.nodes().await? {
            for worker in node["workers"].as_array().into_iter().flatten() {
                if let (Some(id), Some(name)) = (worker["id"].as_str(), node["name"].as_str()) {
                    map.insert(id.to_owned(), name.to_owned());
                }
            }
        }
        Ok(map)
    }
}

/// Returns the first running worker of a node view: its id and the PID the agent reported.
pub fn node_worker(node: &Value) -> Option<(String, u32)> {
    let id = node["workers"].as_array()?.first()?["id"].as_str()?.to_owned();
    let pid = node["services"]
        .as_array()?
        .iter()
        .find(|service| service["kind"] == "worker")?["pid"]
        .as_u64()?;
    Some((id, u32::try_from(pid).ok()?))
}

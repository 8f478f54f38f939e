//! Nodes end to end: one control plane and real `rdp-proxy-agent` processes, each running a real
//! worker, on loopback. Covers joining with single-use tokens, node certificates (foreign CA,
//! revoked, none), absurd reports, organisation scope in placement and in the worker itself,
//! placement by load, drain, revoke, a worker killed with SIGKILL, one paused with SIGSTOP past
//! the grace period, Redis restarted empty and the control plane restarted.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::*;
use rdp_proxy_e2e::nodes::{Agent, AgentStart, Cluster, node_worker, start_agent};
use rdp_proxy_e2e::{Api, Stack};
use rdp_proxy_testkit::ShadowMode;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(45);
const B_ADMIN: (&str, &str) = ("bea", "bea-admin-password");
const B_MEMBER: (&str, &str) = ("ben", "ben-member-password");

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rdp-proxy"))
}

fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rdp-proxy-agent"))
}

fn str_of<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value[field].as_str().with_context(|| format!("no {field} in {value}"))
}

/// Publishes a configuration with one-second reports and returns its version.
async fn fast_reports(cluster: &Cluster) -> Result<i64> {
    let config = cluster
        .put(
            "/cluster/v1/config",
            json!({ "report_interval_secs": 1, "worker_max_sessions": 6, "worker_connect_timeout_secs": 10 }),
        )
        .await?;
    config["version"].as_i64().context("config without version")
}

/// Waits until the named node is ready, its agent reports, its worker beats and runs
/// configuration `version`; returns the node view.
async fn wait_ready(cluster: &Cluster, agent: &mut Agent, version: i64) -> Result<Value> {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        if let Ok(id) = agent.node_id() {
            let node = cluster.node(&id).await?;
            let worker_current = node["workers"]
                .as_array()
                .and_then(|workers| workers.first())
                .is_some_and(|worker| worker["config_version"] == version);
            if node["state"] == "ready"
                && node["report_live"] == true
                && node["config_version"] == version
                && worker_current
            {
                return Ok(node);
            }
        }
        if !agent.process.is_running() {
            bail!("agent {} exited:\n{}", agent.name, agent.process.log_text());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "agent {} did not become ready:\n{}",
                agent.name,
                agent.process.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs an agent that must be refused at join; returns its log.
async fn refused_join(stack: &Stack, name: &str, token: &str, org: Option<&str>) -> Result<String> {
    let mut agent = start_agent(
        stack,
        agent_binary(),
        name,
        AgentStart {
            token: Some(token),
            org,
            data_dir: None,
        },
    )?;
    let code = tokio::task::block_in_place(|| agent.wait_exit_code(LONG))?;
    let log = agent.process.log_text();
    ensure!(code == 1, "agent {name} exited with {code}, expected 1:\n{log}");
    ensure!(agent.node_id().is_err(), "agent {name} stored an identity:\n{log}");
    Ok(log)
}

/// Builds an HTTP client that presents the agent's node certificate.
fn node_client(agent: &Agent) -> Result<reqwest::Client> {
    let config = rdp_proxy_pki::client_config(
        &agent.file("ca.crt")?,
        Some((&agent.file("node.crt")?, &agent.file("node.key")?)),
    )?;
    Ok(rdp_proxy_pki::http_client_builder(config).no_proxy().build()?)
}

fn report_body(cores: u64) -> Value {
    json!({
        "capabilities": { "cores": cores, "memory_bytes": 8u64 << 30, "network_bits_per_sec": null,
                          "rdp": true, "relay": false, "connector": false },
        "agent_version": "0.1.0",
        "services": [],
        "config_version": null,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_join_once_and_are_known_by_their_certificates() -> Result<()> {
    let stack = tokio::task::spawn_blocking(|| -> Result<Stack> {
        let stack = Stack::start_cluster(binary())?;
        stack.add_user(ADMIN.0, ADMIN.1, "admin")?;
        stack.add_user_in("beta", B_ADMIN.0, B_ADMIN.1, "admin")?;
        Ok(stack)
    })
    .await??;
    let cluster = Cluster::new(&stack);
    let base = stack.base_url();
    let admin_a = Api::login(&base, ADMIN.0, ADMIN.1).await?;
    let admin_b = Api::login(&base, B_ADMIN.0, B_ADMIN.1).await?;
    let (org_a, org_b) = (admin_a.org_id(), admin_b.org_id());
    let version = fast_reports(&cluster).await?;

    // The cluster API is for the operator only.
    let (status, _) = Api::with_token(&base, admin_a.token())
        .raw("GET", "/cluster/v1/nodes", None)
        .await?;
    assert_eq!(
        status, 401,
        "an organisation admin's token must not open the cluster API"
    );
    let (status, _) = Api::with_token(&base, rdp_proxy_e2e::stack::CLUSTER_SECRET)
        .raw("GET", "/cluster/v1/nodes", None)
        .await?;
    assert_eq!(
        status, 401,
        "the cluster secret, which workers hold, must not open the cluster API"
    );

    let token = cluster.join_token(None).await?;
    let mut p1 = start_agent(
        &stack,
        agent_binary(),
        "p1",
        AgentStart {
            token: Some(&token),
            ..Default::default()
        },
    )?;
    let node = wait_ready(&cluster, &mut p1, version).await?;
    assert_eq!(node["owner"]["kind"], "platform");
    assert_eq!(node["capabilities"]["rdp"], true);
    assert!(node["capabilities"]["cores"].as_u64().unwrap_or(0) >= 1, "{node}");
    let p1_id = p1.node_id()?;

    // A join token works once; a forged one, an expired one and one of another CA never.
    let log = refused_join(&stack, "p1-again", &token, None).await?;
    assert!(log.contains("join_token_used"), "{log}");
    let fingerprint = token.split('_').nth(1).context("token without fingerprint")?;
    let forged = format!("rpj1_{fingerprint}_{}", "5a".repeat(24));
    let log = refused_join(&stack, "forged", &forged, None).await?;
    assert!(log.contains("join_token_invalid"), "{log}");
    let secret = token.rsplit('_').next().context("token without secret")?;
    refused_join(&stack, "other-ca", &format!("rpj1_{}_{secret}", "00".repeat(32)), None).await?;
    let late = cluster.join_token(None).await?;
    stack.postgres.psql(
        "rdp_proxy",
        "UPDATE join_tokens SET expires_at = now() - interval '1 minute' WHERE used_at IS NULL",
    )?;
    let log = refused_join(&stack, "late", &late, None).await?;
    assert!(log.contains("join_token_expired"), "{log}");

    // A node claiming another organisation than its token's is refused, and the token stays
    // usable for the right node.
    let token_b = cluster.join_token(Some(&org_b)).await?;
    let log = refused_join(&stack, "claims-a", &token_b, Some(&org_a)).await?;
    assert!(log.contains("org_mismatch"), "{log}");
    let mut cb = start_agent(
        &stack,
        agent_binary(),
        "cb",
        AgentStart {
            token: Some(&token_b),
            org: Some(&org_b),
            data_dir: None,
        },
    )?;
    let node = wait_ready(&cluster, &mut cb, version).await?;
    assert_eq!(node["owner"]["kind"], "org");
    assert_eq!(node["owner"]["org_id"], org_b.as_str());
    let cb_id = cb.node_id()?;

    // Organisations see and manage only their own nodes; another organisation's answers 404.
    let listed_b = admin_b.get("/api/v1/nodes").await?;
    let names: Vec<&str> = listed_b
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["cb"]);
    let listed_a = admin_a.get("/api/v1/nodes").await?;
    assert_eq!(listed_a.as_array().map(Vec::len), Some(0), "{listed_a}");
    for path in [
        format!("/api/v1/nodes/{cb_id}/drain"),
        format!("/api/v1/nodes/{p1_id}/drain"),
    ] {
        let (status, body) = admin_a.raw("POST", &path, Some(json!({}))).await?;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let drained = admin_b.post(&format!("/api/v1/nodes/{cb_id}/drain"), json!({})).await?;
    assert_eq!(drained["state"], "draining");
    let resumed = admin_b
        .post(&format!("/api/v1/nodes/{cb_id}/resume"), json!({}))
        .await?;
    assert_eq!(resumed["state"], "ready");
    let audit = admin_b.get("/api/v1/audit").await?;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|record| record["action"].as_str())
        .collect();
    for action in ["node.join", "node.drain", "node.resume"] {
        assert!(
            actions.contains(&action),
            "{action} missing from B's audit trail: {actions:?}"
        );
    }
    let issued = admin_b
        .post("/api/v1/nodes/join-tokens", json!({ "ttl_secs": 600 }))
        .await?;
    assert!(str_of(&issued, "token")?.starts_with("rpj1_"));
    assert_eq!(issued["owner"]["org_id"], org_b.as_str());

    // The node API: absurd figures are refused by name, a request without a certificate or
    // with one from another CA gets nowhere.
    let node_api = format!("https://{}", stack.node_api_addr()?);
    let client = node_client(&p1)?;
    let response = client
        .post(format!("{node_api}/node/v1/report"))
        .json(&report_body(1_000_000))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "invalid_figures", "{body}");
    assert!(str_of(&body, "message")?.contains("cores"), "{body}");

    let anonymous = rdp_proxy_pki::http_client_builder(rdp_proxy_pki::client_config(&p1.file("ca.crt")?, None)?)
        .no_proxy()
        .build()?;
    let response = anonymous
        .post(format!("{node_api}/node/v1/report"))
        .json(&report_body(4))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 401);

    let foreign_ca = rdp_proxy_pki::ClusterCa::generate("someone else")?;
    let key = rdp_proxy_pki::NodeKey::generate()?;
    let identity = rdp_proxy_pki::NodeIdentity {
        node: p1_id.parse()?,
        owner: rdp_proxy_core::node::NodeOwner::Platform,
    };
    let forged_cert = foreign_ca.issue_node(
        &key.csr_pem("p1")?,
        &identity,
        "p1",
        Duration::from_secs(600),
        time::OffsetDateTime::now_utc(),
    )?;
    let forged_client = rdp_proxy_pki::http_client_builder(rdp_proxy_pki::client_config(
        &p1.file("ca.crt")?,
        Some((&forged_cert.cert_pem, &key.key_pem())),
    )?)
    .no_proxy()
    .build()?;
    let attempt = forged_client
        .post(format!("{node_api}/node/v1/report"))
        .json(&report_body(4))
        .send()
        .await;
    assert!(
        attempt.is_err(),
        "a certificate of another CA was accepted: {attempt:?}"
    );

    // Revoke: the agent stops its worker and exits with code 3; its certificate is refused.
    let revoked = cluster
        .post(&format!("/cluster/v1/nodes/{p1_id}/revoke"), json!({}))
        .await?;
    assert_eq!(revoked["node"]["state"], "revoked");
    let code = tokio::task::block_in_place(|| p1.wait_exit_code(LONG))?;
    assert_eq!(code, 3, "{}", p1.process.log_text());
    let attempt = client
        .post(format!("{node_api}/node/v1/report"))
        .json(&report_body(4))
        .send()
        .await;
    match attempt {
        Err(_) => {}
        Ok(response) => assert_eq!(response.status().as_u16(), 403, "a revoked certificate was accepted"),
    }
    let restarted = start_agent(
        &stack,
        agent_binary(),
        "p1",
        AgentStart {
            data_dir: Some(&p1.data_dir),
            ..Default::default()
        },
    );
    if let Ok(mut restarted) = restarted {
        let code = tokio::task::block_in_place(|| restarted.wait_exit_code(LONG))?;
        assert_ne!(
            code,
            0,
            "a revoked node's agent kept running:\n{}",
            restarted.process.log_text()
        );
    }
    let (status, _) = cluster
        .call("DELETE", &format!("/cluster/v1/nodes/{cb_id}"), None)
        .await?;
    assert_eq!(status, 409, "a node that is not revoked must not be removed");
    let (status, _) = cluster
        .call("DELETE", &format!("/cluster/v1/nodes/{p1_id}"), None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = cluster.call("GET", &format!("/cluster/v1/nodes/{p1_id}"), None).await?;
    assert_eq!(status, 404);
    Ok(())
}

/// Returns the name of the node a session runs on.
async fn placed_on(cluster: &Cluster, api: &Api, session: &str) -> Result<String> {
    let view = api.session(session).await?;
    let worker = str_of(&view, "worker_id")?.to_owned();
    let nodes = cluster.worker_nodes().await?;
    nodes
        .get(&worker)
        .cloned()
        .with_context(|| format!("worker {worker} is on no node: {nodes:?}"))
}

/// Opens a session and waits until it is held (`detached`).
async fn open(api: &Api, target: &str) -> Result<String> {
    let session = api.create_session(target).await?;
    let id = str_of(&session, "id")?.to_owned();
    api.wait_for_state(&id, "detached", LONG).await?;
    Ok(id)
}

/// State and version of each session, to prove others were not disturbed.
async fn snapshot(api: &Api, ids: &[String]) -> Result<Vec<(String, Value, Value)>> {
    let mut rows = Vec::new();
    for id in ids {
        let view = api.session(id).await?;
        rows.push((id.clone(), view["state"].clone(), view["version"].clone()));
    }
    Ok(rows)
}

fn signal(pid: u32, name: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_placed_by_scope_and_load_and_survive_node_faults() -> Result<()> {
    let (mut stack, desktop) = tokio::task::spawn_blocking(|| -> Result<(Stack, Desktop)> {
        let stack = Stack::start_cluster(binary())?;
        stack.add_user(MEMBER.0, MEMBER.1, "member")?;
        stack.add_user_in("beta", B_MEMBER.0, B_MEMBER.1, "member")?;
        Ok((stack, Desktop::start(ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD))?))
    })
    .await??;
    let port = desktop.shadow.port();
    let target_a = stack.add_target("desk-a", port, "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let target_b = stack.add_target_in("beta", "desk-b", port, "nla", DESKTOP_USER, DESKTOP_PASSWORD)?;
    let cluster = Cluster::new(&stack);
    let version = fast_reports(&cluster).await?;
    let base = stack.base_url();
    let api_a = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let api_b = Api::login(&base, B_MEMBER.0, B_MEMBER.1).await?;
    let org_b = api_b.org_id();

    let mut agents = Vec::new();
    for (name, org) in [("p1", None), ("p2", None), ("cb", Some(org_b.as_str()))] {
        let token = cluster.join_token(org).await?;
        let mut agent = start_agent(
            &stack,
            agent_binary(),
            name,
            AgentStart {
                token: Some(&token),
                org,
                data_dir: None,
            },
        )?;
        wait_ready(&cluster, &mut agent, version).await?;
        agents.push(agent);
    }
    let node_ids: HashMap<String, String> = agents
        .iter()
        .map(|agent| Ok((agent.name.clone(), agent.node_id()?)))
        .collect::<Result<_>>()?;
    let first_serials: HashMap<String, String> = agents
        .iter()
        .map(|agent| Ok((agent.name.clone(), serial(agent)?)))
        .collect::<Result<_>>()?;

    // Organisation A never lands on B's node; successive sessions spread over the platform nodes.
    let a1 = open(&api_a, &target_a).await?;
    let a2 = open(&api_a, &target_a).await?;
    let (n1, n2) = (
        placed_on(&cluster, &api_a, &a1).await?,
        placed_on(&cluster, &api_a, &a2).await?,
    );
    assert!(
        n1 != "cb" && n2 != "cb",
        "organisation A placed on B's node: {n1}, {n2}"
    );
    assert_ne!(n1, n2, "the second session went to the node that already had one");
    let explained = cluster.explain(&api_a.org_id()).await?;
    let cb_filtered = explained["filtered"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["node_name"] == "cb")
        .with_context(|| format!("cb not filtered for A: {explained:#}"))?;
    assert_eq!(cb_filtered["reason"]["code"], "other_organisation");
    assert_eq!(explained["ranked"].as_array().map(Vec::len), Some(2), "{explained:#}");

    // Organisation B may use its own node, the least loaded one now.
    let b1 = open(&api_b, &target_b).await?;
    assert_eq!(placed_on(&cluster, &api_b, &b1).await?, "cb");

    // A crafted request straight to B's worker for an A session is refused by the worker.
    let cb_view = cluster.node(&node_ids["cb"]).await?;
    let cb_internal = cb_view["workers"][0]["internal_url"]
        .as_str()
        .context("cb worker without internal_url")?;
    let crafted = reqwest::Client::new()
        .post(format!("{cb_internal}/internal/v1/sessions"))
        .header("x-rdp-proxy-cluster-secret", rdp_proxy_e2e::stack::CLUSTER_SECRET)
        .json(&json!({
            "session_id": a1, "org_id": api_a.org_id(),
            "target": { "host": "127.0.0.1", "port": port, "security": "nla", "cert_sha256": null,
                        "username": DESKTOP_USER, "password": DESKTOP_PASSWORD, "domain": null },
        }))
        .send()
        .await?;
    assert_eq!(crafted.status().as_u16(), 403);
    let body: Value = crafted.json().await?;
    assert_eq!(body["code"], "org_not_served", "{body}");

    // Drain: no new sessions on the drained node, held ones continue.
    let drained_name = n2.clone();
    let drained_id = &node_ids[&drained_name];
    let before = snapshot(&api_a, &[a1.clone(), a2.clone()]).await?;
    cluster
        .post(&format!("/cluster/v1/nodes/{drained_id}/drain"), json!({}))
        .await?;
    let a3 = open(&api_a, &target_a).await?;
    assert_eq!(
        placed_on(&cluster, &api_a, &a3).await?,
        n1,
        "a session was placed on a draining node"
    );
    assert_eq!(
        snapshot(&api_a, &[a1.clone(), a2.clone()]).await?,
        before,
        "draining disturbed held sessions"
    );
    cluster
        .post(&format!("/cluster/v1/nodes/{drained_id}/resume"), json!({}))
        .await?;

    // kill -9 the worker of n1: its sessions become lost with the reason; nothing else moves;
    // the agent survives and starts a new worker.
    let n1_view = cluster.node(&node_ids[&n1]).await?;
    let (killed_worker, killed_pid) = node_worker(&n1_view).context("n1 runs no worker")?;
    let others_a = snapshot(&api_a, std::slice::from_ref(&a2)).await?;
    let others_b = snapshot(&api_b, std::slice::from_ref(&b1)).await?;
    signal(killed_pid, "KILL")?;
    for id in [&a1, &a3] {
        let lost = api_a.wait_for_state(id, "lost", LONG).await?;
        let reason = str_of(&lost, "reason")?;
        assert!(
            reason.contains(&killed_worker),
            "lost without naming the worker: {reason}"
        );
    }
    assert_eq!(snapshot(&api_a, std::slice::from_ref(&a2)).await?, others_a);
    assert_eq!(snapshot(&api_b, std::slice::from_ref(&b1)).await?, others_b);
    let n1_agent = agents.iter_mut().find(|agent| agent.name == n1).context("n1 agent")?;
    assert!(n1_agent.process.is_running(), "the agent died with its worker");
    cluster
        .wait_node(&node_ids[&n1], "running a new worker", LONG, |node| {
            node_worker(node).is_some_and(|(id, pid)| id != killed_worker && pid != killed_pid)
        })
        .await?;

    // SIGSTOP the worker of n2 past the grace period: its session is lost; after SIGCONT the
    // worker finds its fencing number stale, drops the session and takes new work.
    let n2_view = cluster.node(&node_ids[&n2]).await?;
    let (paused_worker, paused_pid) = node_worker(&n2_view).context("n2 runs no worker")?;
    signal(paused_pid, "STOP")?;
    let lost = api_a.wait_for_state(&a2, "lost", LONG).await;
    signal(paused_pid, "CONT")?;
    lost?;
    cluster
        .wait_node(
            &node_ids[&n2],
            "back with the same worker and no session",
            LONG,
            |node| node["workers"][0]["id"] == paused_worker.as_str() && node["workers"][0]["sessions"] == 0,
        )
        .await?;
    let n2_log = agents
        .iter()
        .find(|agent| agent.name == n2)
        .map(|agent| agent.process.log_text())
        .unwrap_or_default();
    assert!(
        n2_log.contains("fencing number is stale"),
        "the returning worker did not notice:\n{n2_log}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api_a.session(&a2).await?["state"],
        "lost",
        "a returning worker resumed a lost session"
    );
    assert_eq!(snapshot(&api_b, std::slice::from_ref(&b1)).await?, others_b);
    let a4 = open(&api_a, &target_a).await?;

    // Redis restarted empty: held sessions stay, nodes report again, new sessions are placed.
    let held = snapshot(&api_a, std::slice::from_ref(&a4)).await?;
    tokio::task::block_in_place(|| stack.redis.restart_empty())?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        snapshot(&api_a, std::slice::from_ref(&a4)).await?,
        held,
        "Redis restart disturbed a session"
    );
    assert_eq!(snapshot(&api_b, std::slice::from_ref(&b1)).await?, others_b);
    for id in node_ids.values() {
        cluster
            .wait_node(id, "reporting again", LONG, |node| {
                node["state"] == "ready" && node["report_live"] == true
            })
            .await?;
    }
    let a5 = open(&api_a, &target_a).await?;

    // The control plane restarted: agents and workers carry on.
    tokio::task::block_in_place(|| stack.restart_control())?;
    let api_a = Api::login(&base, MEMBER.0, MEMBER.1).await?;
    let api_b = Api::login(&base, B_MEMBER.0, B_MEMBER.1).await?;
    assert_eq!(snapshot(&api_a, &[a4.clone(), a5.clone()]).await?.len(), 2);
    assert_eq!(api_b.session(&b1).await?["state"], "detached");
    let b2 = open(&api_b, &target_b).await?;
    assert!(
        agents.iter_mut().all(|agent| agent.process.is_running()),
        "an agent died with the control plane"
    );

    // B's agent crashes: its worker keeps the desktops and takes no new session, and the
    // restarted agent runs a new worker beside it.
    let cb_index = agents.iter().position(|agent| agent.name == "cb").context("cb agent")?;
    let (old_worker, old_pid) = node_worker(&cluster.node(&node_ids["cb"]).await?).context("cb runs no worker")?;
    let held_b = snapshot(&api_b, &[b1.clone(), b2.clone()]).await?;
    tokio::task::block_in_place(|| agents[cb_index].process.kill());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        snapshot(&api_b, &[b1.clone(), b2.clone()]).await?,
        held_b,
        "an agent crash ended desktops"
    );
    assert!(
        Path::new(&format!("/proc/{old_pid}")).exists(),
        "the worker died with its agent"
    );
    let data_dir = agents[cb_index].data_dir.clone();
    agents[cb_index] = start_agent(
        &stack,
        agent_binary(),
        "cb",
        AgentStart {
            data_dir: Some(&data_dir),
            ..Default::default()
        },
    )?;
    cluster
        .wait_node(&node_ids["cb"], "running a new worker", LONG, |node| {
            node["workers"]
                .as_array()
                .is_some_and(|workers| workers.iter().any(|worker| worker["id"] != old_worker.as_str()))
        })
        .await?;

    // Revoke B's node: its sessions end with the reason, its agent exits 3, A is untouched.
    let held_a = snapshot(&api_a, &[a4.clone(), a5.clone()]).await?;
    let revoked = cluster
        .post(&format!("/cluster/v1/nodes/{}/revoke", node_ids["cb"]), json!({}))
        .await?;
    assert_eq!(revoked["node"]["state"], "revoked");
    for id in [&b1, &b2] {
        if placed_on(&cluster, &api_b, id).await.ok().as_deref() == Some("cb")
            || api_b.session(id).await?["state"] != "detached"
        {
            let ended = api_b.wait_for_state(id, "terminated", LONG).await?;
            assert!(str_of(&ended, "reason")?.contains("revoked"), "{ended}");
        }
    }
    let cb_agent = agents.iter_mut().find(|agent| agent.name == "cb").context("cb agent")?;
    let code = tokio::task::block_in_place(|| cb_agent.wait_exit_code(LONG))?;
    assert_eq!(code, 3, "{}", cb_agent.process.log_text());
    assert_eq!(
        snapshot(&api_a, &[a4, a5]).await?,
        held_a,
        "revoking B's node disturbed A's sessions"
    );

    // Certificates last 45 s here: the platform agents renew theirs and keep reporting.
    for agent in agents.iter().filter(|agent| agent.name != "cb") {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while serial(agent)? == first_serials[&agent.name] {
            ensure!(
                std::time::Instant::now() < deadline,
                "agent {} did not renew its certificate:\n{}",
                agent.name,
                agent.process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let node = cluster.node(&node_ids[&agent.name]).await?;
        assert_eq!(
            node["report_live"], true,
            "agent {} stopped reporting after renewal: {node}",
            agent.name
        );
        assert_eq!(node["state"], "ready");
    }
    drop(desktop);
    Ok(())
}

/// Returns the serial number of the agent's current certificate, from its `node.json`.
fn serial(agent: &Agent) -> Result<String> {
    let record: Value = serde_json::from_str(&agent.file("node.json")?)?;
    Ok(str_of(&record, "serial")?.to_owned())
}

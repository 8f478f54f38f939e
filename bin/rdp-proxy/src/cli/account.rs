//! `rdp-proxy login`, `logout`, `me` and `orgs`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{self, Client};
use super::login_file::{self, StoredLogin};
use super::{CliError, DEFAULT_SERVER, ErrorKind, api_error, is_uuid, print_json, read_secret};

#[derive(Args)]
pub(crate) struct LoginArgs {
    /// Base URL of the control plane.
    #[arg(long, env = "RDP_PROXY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// User name. The password is read from RDP_PROXY_PASSWORD, else from a prompt when stdin
    /// is a terminal, else as one line of stdin.
    #[arg(long, short)]
    user: String,
    /// Organisation to log in to, by id or name; the user's first organisation when omitted.
    #[arg(long)]
    org: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum OrgsCommand {
    /// List the organisations you belong to (the `orgs` of `rdp-proxy me`).
    List,
    /// Move the stored login to another of your organisations (by id or name). The login in
    /// the current organisation is ended.
    Switch { org: String },
    /// List the organisations that invited you (the `invitations` of `rdp-proxy me`).
    Invitations,
    /// Accept an organisation's invitation (by id or name) and become its member.
    Accept { org: String },
    /// Decline an organisation's invitation (by id or name).
    Decline { org: String },
}

pub(crate) async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let server = client::normalize_server(&args.server);
    let password = read_secret(Some("RDP_PROXY_PASSWORD"), &format!("Password for {}: ", args.user))?;
    let http = reqwest::Client::new();
    let mut request = json!({ "username": args.user, "password": password });
    let requested_org = args.org.as_deref();
    if let Some(id) = requested_org.filter(|org| is_uuid(org)) {
        request["org_id"] = json!(id);
    }
    let mut tokens = client::call(&http, Method::POST, &server, "/api/v1/login", &[], None, Some(&request)).await?;
    if let Some(name) = requested_org.filter(|org| !is_uuid(org)) {
        tokens = enter_org_by_name(&http, &server, tokens, name).await?;
    }
    let path = login_file::path()?;
    let login = StoredLogin::from_tokens(&server, &tokens)?;
    {
        let _lock = login_file::lock(&path)?;
        login_file::write(&path, &login)?;
    }
    print_json(&without_tokens(&tokens))?;
    eprintln!(
        "Logged in as {} in organisation {}; credentials stored in {}",
        tokens["user"]["name"].as_str().unwrap_or("?"),
        tokens["org"]["name"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// Moves a fresh login to the organisation called `name` and ends the first one, which the
/// login request opened in the user's first organisation because it takes only an id.
async fn enter_org_by_name(http: &reqwest::Client, server: &str, tokens: Value, name: &str) -> anyhow::Result<Value> {
    if tokens["org"]["name"] == name {
        return Ok(tokens);
    }
    let first_token = tokens["access_token"].as_str().unwrap_or_default().to_owned();
    let end_first = || async {
        let ended = client::call(
            http,
            Method::POST,
            server,
            "/api/v1/logout",
            &[],
            Some(&first_token),
            None,
        )
        .await;
        if let Err(error) = ended {
            eprintln!("warning: could not end the login in the first organisation: {error:#}");
        }
    };
    let org_id = tokens["orgs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|org| org["name"] == name)
        .and_then(|org| org["id"].as_str())
        .map(str::to_owned);
    let Some(org_id) = org_id else {
        end_first().await;
        return Err(not_a_member(name, &tokens["orgs"]).into());
    };
    let switched = client::call(
        http,
        Method::POST,
        server,
        "/api/v1/auth/switch",
        &[],
        Some(&first_token),
        Some(&json!({ "org_id": org_id })),
    )
    .await;
    end_first().await;
    switched
}

fn not_a_member(org: &str, orgs: &Value) -> CliError {
    let names: Vec<&str> = orgs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|org| org["name"].as_str())
        .collect();
    CliError::new(
        ErrorKind::NotFound,
        format!(
            "you are not a member of an organisation called {org:?}; yours are: {}",
            names.join(", ")
        ),
    )
}

/// Copies a token response without the access and refresh tokens, which belong only in the
/// credentials file.
fn without_tokens(tokens: &Value) -> Value {
    let mut summary = tokens.clone();
    if let Some(object) = summary.as_object_mut() {
        object.shift_remove("access_token");
        object.shift_remove("refresh_token");
    }
    summary
}

pub(crate) async fn logout() -> anyhow::Result<()> {
    let path = login_file::path()?;
    let mut client = Client::from_stored_login()?;
    match client.post("/api/v1/logout", json!({})).await {
        Ok(_) => {}
        Err(error) if api_error(&error).is_some_and(|api| api.status == 401) => {
            eprintln!("The login had already ended on the server ({error:#})");
        }
        Err(error) => {
            return Err(error.context(format!(
                "logging out failed, so {} was kept; retry `rdp-proxy logout`",
                path.display()
            )));
        }
    }
    {
        let _lock = login_file::lock(&path)?;
        login_file::remove(&path)?;
    }
    eprintln!("Logged out; deleted {}", path.display());
    Ok(())
}

pub(crate) async fn me() -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    print_json(&client.get("/api/v1/me").await?)
}

pub(crate) async fn orgs(command: OrgsCommand) -> anyhow::Result<()> {
    match command {
        OrgsCommand::List => {
            let mut client = Client::from_environment()?;
            let me = client.get("/api/v1/me").await?;
            print_json(&me["orgs"])
        }
        OrgsCommand::Switch { org } => switch(&org).await,
        OrgsCommand::Invitations => {
            let mut client = Client::from_environment()?;
            let me = client.get("/api/v1/me").await?;
            print_json(&me["invitations"])
        }
        OrgsCommand::Accept { org } => {
            let mut client = Client::from_environment()?;
            let org_id = invitation(&mut client, &org).await?;
            let me = client
                .post(&format!("/api/v1/invitations/{org_id}/accept"), json!({}))
                .await?;
            print_json(&me)
        }
        OrgsCommand::Decline { org } => {
            let mut client = Client::from_environment()?;
            let org_id = invitation(&mut client, &org).await?;
            client.delete(&format!("/api/v1/invitations/{org_id}")).await?;
            Ok(())
        }
    }
}

/// Returns the id of the organisation in `orgs` whose id or name is `org`.
fn find_org(orgs: &Value, org: &str) -> Option<String> {
    orgs.as_array()
        .into_iter()
        .flatten()
        .find(|candidate| candidate["id"] == org || candidate["name"] == org)
        .and_then(|candidate| candidate["id"].as_str())
        .map(str::to_owned)
}

/// Returns the id of the organisation, given by id or name, that invited the caller.
async fn invitation(client: &mut Client, org: &str) -> anyhow::Result<String> {
    let me = client.get("/api/v1/me").await?;
    find_org(&me["invitations"], org).ok_or_else(|| {
        let pending: Vec<&str> = me["invitations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|invitation| invitation["name"].as_str())
            .collect();
        CliError::new(
            ErrorKind::NotFound,
            format!(
                "no pending invitation from an organisation called {org:?}; pending: {}",
                if pending.is_empty() {
                    "none".to_owned()
                } else {
                    pending.join(", ")
                }
            ),
        )
        .into()
    })
}

async fn switch(org: &str) -> anyhow::Result<()> {
    let mut client = Client::from_stored_login()?;
    let me = client.get("/api/v1/me").await?;
    let org_id = find_org(&me["orgs"], org).ok_or_else(|| not_a_member(org, &me["orgs"]))?;

    let tokens = client.post("/api/v1/auth/switch", json!({ "org_id": org_id })).await?;
    // Read after the request, which may have refreshed the previous login's tokens.
    let previous_token = client
        .stored_login()
        .map(|login| login.access_token.clone())
        .unwrap_or_default();
    client.store_tokens(&tokens)?;

    let ended = client::call(
        client.http(),
        Method::POST,
        client.server(),
        "/api/v1/logout",
        &[],
        Some(&previous_token),
        None,
    )
    .await;
    if let Err(error) = ended {
        eprintln!("warning: could not end the login in the previous organisation: {error:#}");
    }

    print_json(&without_tokens(&tokens))?;
    eprintln!(
        "Switched to organisation {}",
        tokens["org"]["name"].as_str().unwrap_or("?")
    );
    Ok(())
}

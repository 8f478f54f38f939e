//! `rdp-proxy credentials …`: /api/v1/credentials. Passwords are read from
//! RDP_PROXY_CREDENTIAL_PASSWORD, a prompt or stdin, and no API response contains them.

use clap::{ArgGroup, Subcommand};
use serde_json::{Map, Value, json};

use super::client::Client;
use super::{PageArgs, print_json, read_secret};

const PASSWORD_ENV: &str = "RDP_PROXY_CREDENTIAL_PASSWORD";

#[derive(Subcommand)]
pub(crate) enum CredentialsCommand {
    /// List the organisation's credentials (names, user names and domains only).
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one credential (by id or name), without its password.
    Get { credential: String },
    /// Store a credential. The password is read from RDP_PROXY_CREDENTIAL_PASSWORD, else from a
    /// prompt when stdin is a terminal, else as one line of stdin.
    Create {
        #[arg(long)]
        name: String,
        /// Account the target logs in as.
        #[arg(long)]
        username: String,
        /// Windows domain of the account.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Change a credential (by id or name); options left out keep their value.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["name", "username", "domain", "no_domain", "set_password"])))]
    Update {
        credential: String,
        #[arg(long)]
        name: Option<String>,
        /// Account the target logs in as.
        #[arg(long)]
        username: Option<String>,
        /// Windows domain of the account.
        #[arg(long, conflicts_with = "no_domain")]
        domain: Option<String>,
        /// Remove the domain.
        #[arg(long)]
        no_domain: bool,
        /// Replace the password with one read from RDP_PROXY_CREDENTIAL_PASSWORD, else from a
        /// prompt when stdin is a terminal, else as one line of stdin.
        #[arg(long)]
        set_password: bool,
    },
    /// Delete a credential (by id or name) that no target uses.
    Delete { credential: String },
}

const CREDENTIALS: &str = "/api/v1/credentials";

pub(crate) async fn run(command: CredentialsCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    let output = match command {
        CredentialsCommand::List { page } => client.list(CREDENTIALS, &[], &page).await?,
        CredentialsCommand::Get { credential } => {
            let id = resolve(&mut client, &credential).await?;
            client.get(&format!("{CREDENTIALS}/{id}")).await?
        }
        CredentialsCommand::Create { name, username, domain } => {
            let password = read_secret(Some(PASSWORD_ENV), &format!("Password of {username} for {name}: "))?;
            let mut body = json!({ "name": name, "username": username, "password": password });
            if let Some(domain) = domain {
                body["domain"] = json!(domain);
            }
            client.post(CREDENTIALS, body).await?
        }
        CredentialsCommand::Update {
            credential,
            name,
            username,
            domain,
            no_domain,
            set_password,
        } => {
            let id = resolve(&mut client, &credential).await?;
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            if let Some(username) = username {
                body.insert("username".into(), json!(username));
            }
            if let Some(domain) = domain {
                body.insert("domain".into(), json!(domain));
            }
            if no_domain {
                body.insert("domain".into(), Value::Null);
            }
            if set_password {
                let password = read_secret(Some(PASSWORD_ENV), &format!("New password for {credential}: "))?;
                body.insert("password".into(), json!(password));
            }
            client
                .patch(&format!("{CREDENTIALS}/{id}"), Value::Object(body))
                .await?
        }
        CredentialsCommand::Delete { credential } => {
            let id = resolve(&mut client, &credential).await?;
            client.delete(&format!("{CREDENTIALS}/{id}")).await?
        }
    };
    if !output.is_null() {
        print_json(&output)?;
    }
    Ok(())
}

async fn resolve(client: &mut Client, credential: &str) -> anyhow::Result<String> {
    client.resolve(CREDENTIALS, "id", credential, "credential").await
}

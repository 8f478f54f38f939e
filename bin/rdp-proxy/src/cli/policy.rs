//! `rdp-proxy policy …`: /api/v1/policy. Problems in a policy file are printed to stderr as
//! `FILE:LINE:COLUMN: message`, the form editors and CI logs link to.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::{CliError, ErrorKind, api_error, print_json};

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Show the organisation's policy: text, version, and the time and user of the last save.
    Get {
        /// Print only the policy text.
        #[arg(long)]
        text: bool,
    },
    /// Check a policy file without saving it; exits with 5 when it has problems.
    Validate {
        /// Policy file; `-` reads stdin.
        file: PathBuf,
    },
    /// Replace the organisation's policy with a file. Nothing is saved when it has problems.
    Save {
        /// Policy file; `-` reads stdin.
        file: PathBuf,
        /// Version the file was edited from; the save fails with a conflict when the stored
        /// policy is newer. Defaults to the version stored now.
        #[arg(long)]
        version: Option<i64>,
    },
    /// Show the default policy every organisation starts with.
    Default {
        /// Print only the policy text.
        #[arg(long)]
        text: bool,
    },
}

const POLICY: &str = "/api/v1/policy";

pub(crate) async fn run(command: PolicyCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    match command {
        PolicyCommand::Get { text } => {
            let policy = client.get(POLICY).await?;
            print_policy(&policy, text)
        }
        PolicyCommand::Default { text } => {
            let policy = client.get(&format!("{POLICY}/default")).await?;
            print_policy(&policy, text)
        }
        PolicyCommand::Validate { file } => {
            let text = read_policy(&file)?;
            let result = client
                .post(&format!("{POLICY}/validate"), json!({ "text": text }))
                .await?;
            print_json(&result)?;
            if result["valid"] == true {
                return Ok(());
            }
            print_problems(&file, &result["problems"]);
            Err(CliError::new(
                ErrorKind::Invalid,
                format!("{} is not a valid policy", display_name(&file)),
            )
            .into())
        }
        PolicyCommand::Save { file, version } => {
            let text = read_policy(&file)?;
            let version = match version {
                Some(version) => version,
                None => client.get(POLICY).await?["version"]
                    .as_i64()
                    .context("the server's policy has no version")?,
            };
            let saved = client.put(POLICY, json!({ "text": text, "version": version })).await;
            match saved {
                Ok(policy) => print_json(&policy),
                Err(error) => {
                    if let Some(api) = api_error(&error).filter(|api| api.status == 422) {
                        print_problems(&file, &api.body["error"]["problems"]);
                    }
                    Err(error)
                }
            }
        }
    }
}

fn print_policy(policy: &Value, text_only: bool) -> anyhow::Result<()> {
    if !text_only {
        return print_json(policy);
    }
    let text = policy["text"].as_str().context("the server's policy has no text")?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn read_policy(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the policy from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading the policy file {}", file.display()))
}

fn display_name(file: &Path) -> String {
    if file == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    }
}

/// Prints each `{line, column, message}` of `problems` to stderr as `FILE:LINE:COLUMN: message`.
fn print_problems(file: &Path, problems: &Value) {
    let name = display_name(file);
    for problem in problems.as_array().into_iter().flatten() {
        eprintln!(
            "{name}:{}:{}: {}",
            problem["line"],
            problem["column"],
            problem["message"].as_str().unwrap_or_default()
        );
    }
}

//! `rdp-proxy audit …`: /api/v1/audit.

use clap::Subcommand;

use super::client::Client;
use super::{CliError, ErrorKind, PageArgs, print_json};

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// List audit records, newest first.
    List {
        /// Only records of this action, such as `login` or `member.add`.
        #[arg(long)]
        action: Option<String>,
        /// Only records with this result: ok, denied or failed.
        #[arg(long)]
        result: Option<String>,
        /// Only records of this actor (a user or API key id).
        #[arg(long, value_name = "ID")]
        actor: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Recompute the audit hash chain; exits with 5 when a record does not match.
    Verify,
}

pub(crate) async fn run(command: AuditCommand) -> anyhow::Result<()> {
    let mut client = Client::from_environment()?;
    match command {
        AuditCommand::List {
            action,
            result,
            actor,
            page,
        } => {
            let filters = [("action", action), ("result", result), ("actor_id", actor)];
            print_json(&client.list("/api/v1/audit", &filters, &page).await?)
        }
        AuditCommand::Verify => {
            let check = client.get("/api/v1/audit/verify").await?;
            print_json(&check)?;
            if check["ok"] == true {
                return Ok(());
            }
            Err(CliError::new(
                ErrorKind::Invalid,
                format!(
                    "the audit chain is broken at record {}: {}",
                    check["first_bad_seq"],
                    check["problem"].as_str().unwrap_or("no details")
                ),
            )
            .into())
        }
    }
}

//! The credentials file that `rdp-proxy login` writes: server, access token and its expiry,
//! refresh token, user and organisation. It is readable only by its owner (mode 0600) and is
//! replaced atomically. Token refreshes hold an exclusive lock on a file beside it, because a
//! refresh token works once: two processes refreshing with the same token would make the server
//! revoke the whole login.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{CliError, ErrorKind};

/// An access token this close to its expiry is refreshed before use.
const REFRESH_MARGIN: time::Duration = time::Duration::seconds(60);

/// One stored login.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredLogin {
    /// Base URL of the control plane that issued the tokens.
    pub(crate) server: String,
    pub(crate) access_token: String,
    /// RFC 3339 time at which the access token expires, as the server sent it.
    pub(crate) expires_at: String,
    /// Single-use token for `POST /api/v1/auth/refresh`.
    pub(crate) refresh_token: String,
    /// RFC 3339 time after which the login cannot be refreshed any more.
    pub(crate) refresh_expires_at: String,
    /// `{id, name}` of the logged-in user.
    pub(crate) user: Value,
    /// `{id, name, role}` of the organisation the tokens are for.
    pub(crate) org: Value,
}

impl StoredLogin {
    /// Builds a login from a `TokenResponse` of login, refresh or switch.
    pub(crate) fn from_tokens(server: &str, tokens: &Value) -> anyhow::Result<Self> {
        let field = |name: &str| {
            tokens[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("the server's token response has no {name}"))
        };
        Ok(Self {
            server: server.to_owned(),
            access_token: field("access_token")?,
            expires_at: field("expires_at")?,
            refresh_token: field("refresh_token")?,
            refresh_expires_at: field("refresh_expires_at")?,
            user: tokens["user"].clone(),
            org: tokens["org"].clone(),
        })
    }

    /// Checks whether the access token expires within [`REFRESH_MARGIN`]. An expiry that does
    /// not parse counts as expired.
    pub(crate) fn expires_soon(&self) -> bool {
        OffsetDateTime::parse(&self.expires_at, &Rfc3339).map_or(true, |expires_at| {
            expires_at - OffsetDateTime::now_utc() < REFRESH_MARGIN
        })
    }
}

/// Path of the credentials file: `$XDG_CONFIG_HOME/rdp-proxy/credentials.json`, or
/// `$HOME/.config/rdp-proxy/credentials.json` when XDG_CONFIG_HOME is not set.
pub(crate) fn path() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set, so there is no place for the credentials file")?;
    Ok(base.join("rdp-proxy").join("credentials.json"))
}

/// Reads the stored login; a missing file is an `Unauthenticated` error.
pub(crate) fn read(path: &Path) -> anyhow::Result<StoredLogin> {
    read_optional(path)?.ok_or_else(|| {
        CliError::new(
            ErrorKind::Unauthenticated,
            format!(
                "not logged in ({} does not exist); run `rdp-proxy login` or set RDP_PROXY_API_KEY",
                path.display()
            ),
        )
        .into()
    })
}

/// Reads the stored login, or `None` when the file does not exist.
pub(crate) fn read_optional(path: &Path) -> anyhow::Result<Option<StoredLogin>> {
    let raw = match std::fs::read_to_string(path) {
        Ok(raw) => raw,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let login = serde_json::from_str(&raw).map_err(|error| {
        CliError::new(
            ErrorKind::Unauthenticated,
            format!(
                "{} is not a credentials file of this version ({error}); run `rdp-proxy login` again",
                path.display()
            ),
        )
    })?;
    Ok(Some(login))
}

/// Replaces the credentials file with `login`: written to a temporary file created with mode
/// 0600 in the same directory, then renamed over the old one.
pub(crate) fn write(path: &Path, login: &StoredLogin) -> anyhow::Result<()> {
    let directory = path.parent().context("the credentials path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let temporary = directory.join(format!(".credentials.json.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    // A file left by an earlier process with the same id keeps its old mode; reset it.
    std::fs::set_permissions(&temporary, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(serde_json::to_string_pretty(login)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Deletes the credentials file; a missing file is not an error.
pub(crate) fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("deleting {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Takes the exclusive lock that serialises writers of the credentials file, waiting for other
/// processes that hold it. The lock is released when the returned file is dropped.
pub(crate) fn lock(path: &Path) -> anyhow::Result<File> {
    let directory = path.parent().context("the credentials path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let lock_path = path.with_extension("json.lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    Ok(file)
}

//! The agent's data directory: the node's key and certificate, the cluster CA, `node.json` with
//! the node's identity and certificate dates, and the configuration document the worker reads.
//!
//! Every file is replaced by writing a staged copy (`<name>.next`), syncing it and renaming it
//! over the old one. The identity files change together: all four staged copies are written
//! before the first rename, and `node.json` is written last and renamed last, so a staged
//! `node.json.next` means the set is complete. [`DataDir::recover_staged`] finishes or discards
//! a write that a crash interrupted.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rdp_proxy_core::NodeId;
use rdp_proxy_core::node::NodeOwner;
use rdp_proxy_core::node::wire::ConfigDocument;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const KEY_FILE: &str = "node.key";
pub const CERT_FILE: &str = "node.crt";
pub const CA_FILE: &str = "ca.crt";
pub const NODE_FILE: &str = "node.json";
pub const WORKER_CONFIG_FILE: &str = "worker-config.json";
pub const LOCK_FILE: &str = "agent.lock";

/// Identity files in the order they are renamed into place; `node.json` must stay last.
const IDENTITY_FILES: [&str; 4] = [KEY_FILE, CERT_FILE, CA_FILE, NODE_FILE];
const STAGED_SUFFIX: &str = ".next";

/// Contents of `node.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: NodeId,
    pub owner: NodeOwner,
    pub name: String,
    /// Serial number of the current certificate, hex.
    pub serial: String,
    /// When the agent received the current certificate.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl NodeRecord {
    /// Returns whether less than a third of the certificate's lifetime remains at `now`.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        let lifetime = self.not_after - self.issued_at;
        let remaining = self.not_after - now;
        remaining < lifetime / 3
    }
}

/// The node's identity: its record, key, certificate and the cluster CA. `Debug` omits the key.
#[derive(Clone)]
pub struct Identity {
    pub record: NodeRecord,
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Result of [`DataDir::recover_staged`] for an interrupted identity write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was staged.
    Clean,
    /// Every staged file had been written, so the renames were finished.
    Completed,
    /// The staged set was incomplete and was removed; the previous identity stays.
    Discarded,
}

/// The agent's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens `root`, creating it with mode 0700 when it does not exist.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    fn staged(&self, file: &str) -> PathBuf {
        self.root.join(format!("{file}{STAGED_SUFFIX}"))
    }

    /// Locks the directory for this process until the returned file is dropped or the process
    /// ends, so two agents never share one identity.
    pub fn lock(&self) -> anyhow::Result<File> {
        let path = self.path(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "data directory {} is in use by another rdp-proxy-agent (PID {}); stop it first or pass another --data-dir",
                self.root.display(),
                holder.trim()
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(file)
    }

    /// Finishes or discards an identity write that a crash interrupted.
    pub fn recover_staged(&self) -> io::Result<Recovery> {
        let staged: Vec<&str> = IDENTITY_FILES
            .into_iter()
            .filter(|file| self.staged(file).exists())
            .collect();
        if staged.is_empty() {
            return Ok(Recovery::Clean);
        }
        let recovery = if staged.contains(&NODE_FILE) {
            for file in staged {
                std::fs::rename(self.staged(file), self.path(file))?;
            }
            Recovery::Completed
        } else {
            for file in staged {
                std::fs::remove_file(self.staged(file))?;
            }
            Recovery::Discarded
        };
        sync_dir(&self.root)?;
        Ok(recovery)
    }

    /// Loads the identity, or `None` when the node has not joined (no `node.json`).
    pub fn load_identity(&self) -> anyhow::Result<Option<Identity>> {
        let node_path = self.path(NODE_FILE);
        let record = match std::fs::read(&node_path) {
            Ok(bytes) => serde_json::from_slice::<NodeRecord>(&bytes)
                .with_context(|| format!("{} is not a valid node record", node_path.display()))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("failed to read {}", node_path.display()));
            }
        };
        let read = |file: &str| {
            let path = self.path(file);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "the identity in {} is incomplete: failed to read {}; restore the file, or join \
                     again with a new token and an empty data directory",
                    self.root.display(),
                    path.display()
                )
            })
        };
        let identity = Identity {
            record,
            key_pem: read(KEY_FILE)?,
            cert_pem: read(CERT_FILE)?,
            ca_pem: read(CA_FILE)?,
        };
        let key_mode = std::fs::metadata(self.path(KEY_FILE))?.permissions().mode();
        if key_mode & 0o077 != 0 {
            tracing::warn!(
                path = %self.path(KEY_FILE).display(),
                mode = format!("{:o}", key_mode & 0o777),
                "Node key is readable by other users; run chmod 600 on it"
            );
        }
        Ok(Some(identity))
    }

    /// Replaces the identity files together (see the module documentation).
    pub fn save_identity(&self, identity: &Identity) -> anyhow::Result<()> {
        let record = serde_json::to_vec_pretty(&identity.record)?;
        let contents: [(&str, &[u8], u32); 4] = [
            (KEY_FILE, identity.key_pem.as_bytes(), 0o600),
            (CERT_FILE, identity.cert_pem.as_bytes(), 0o644),
            (CA_FILE, identity.ca_pem.as_bytes(), 0o644),
            (NODE_FILE, &record, 0o644),
        ];
        for (file, bytes, mode) in contents {
            let staged = self.staged(file);
            write_synced(&staged, bytes, mode).with_context(|| format!("failed to write {}", staged.display()))?;
        }
        for file in IDENTITY_FILES {
            std::fs::rename(self.staged(file), self.path(file))
                .with_context(|| format!("failed to move {} into place", self.path(file).display()))?;
        }
        sync_dir(&self.root)?;
        Ok(())
    }

    /// Loads `worker-config.json`, or `None` when it does not exist.
    pub fn load_worker_config(&self) -> anyhow::Result<Option<ConfigDocument>> {
        let path = self.path(WORKER_CONFIG_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a valid configuration document", path.display())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("failed to read {}", path.display())),
        }
    }

    /// Replaces `worker-config.json`, which the worker re-reads.
    pub fn save_worker_config(&self, document: &ConfigDocument) -> anyhow::Result<()> {
        let path = self.path(WORKER_CONFIG_FILE);
        let staged = self.staged(WORKER_CONFIG_FILE);
        let json = serde_json::to_vec_pretty(document)?;
        write_synced(&staged, &json, 0o644).with_context(|| format!("failed to write {}", staged.display()))?;
        std::fs::rename(&staged, &path).with_context(|| format!("failed to move {} into place", path.display()))?;
        sync_dir(&self.root)?;
        Ok(())
    }
}

/// Writes `bytes` to a new file at `path` with permissions `mode` (less the umask) and syncs it.
/// A file left at `path` by an earlier attempt is removed first so that `mode` applies.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs a directory so the renames in it survive a power loss.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use rdp_proxy_core::OrgId;
    use rdp_proxy_core::node::wire::NodeConfig;
    use time::macros::datetime;

    use super::*;

    fn identity(serial: &str) -> Identity {
        Identity {
            record: NodeRecord {
                node_id: NodeId::new_random(),
                owner: NodeOwner::Org(OrgId::new_random()),
                name: "edge-1".into(),
                serial: serial.into(),
                issued_at: datetime!(2026-01-01 00:00 UTC),
                not_after: datetime!(2026-01-31 00:00 UTC),
            },
            key_pem: format!("KEY {serial}"),
            cert_pem: format!("CERT {serial}"),
            ca_pem: "CA".into(),
        }
    }

    fn assert_same(loaded: &Identity, expected: &Identity) {
        assert_eq!(loaded.record, expected.record);
        assert_eq!(loaded.key_pem, expected.key_pem);
        assert_eq!(loaded.cert_pem, expected.cert_pem);
        assert_eq!(loaded.ca_pem, expected.ca_pem);
    }

    #[test]
    fn identity_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(&dir.path().join("state")).expect("open data dir");
        assert!(data.load_identity().expect("load empty").is_none());

        let saved = identity("01");
        data.save_identity(&saved).expect("save");
        let loaded = data.load_identity().expect("load").expect("identity present");
        assert_same(&loaded, &saved);

        let key_mode = std::fs::metadata(data.path(KEY_FILE))
            .expect("key metadata")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(data.root())
            .expect("dir metadata")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(!data.staged(NODE_FILE).exists());
    }

    #[test]
    fn identity_replacement_overwrites() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        data.save_identity(&identity("01")).expect("save first");
        let renewed = identity("02");
        data.save_identity(&renewed).expect("save second");
        let loaded = data.load_identity().expect("load").expect("identity present");
        assert_same(&loaded, &renewed);
    }

    #[test]
    fn node_json_layout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        let saved = identity("0a");
        data.save_identity(&saved).expect("save");
        let text = std::fs::read_to_string(data.path(NODE_FILE)).expect("read node.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("node.json is JSON");
        assert_eq!(json["node_id"], saved.record.node_id.to_string());
        assert_eq!(json["owner"]["kind"], "org");
        assert_eq!(json["name"], "edge-1");
        assert_eq!(json["serial"], "0a");
        assert_eq!(json["issued_at"], "2026-01-01T00:00:00Z");
        assert_eq!(json["not_after"], "2026-01-31T00:00:00Z");
    }

    #[test]
    fn incomplete_identity_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        data.save_identity(&identity("01")).expect("save");
        std::fs::remove_file(data.path(KEY_FILE)).expect("remove key");
        let error = data.load_identity().expect_err("key is missing");
        assert!(format!("{error:#}").contains("node.key"), "{error:#}");
    }

    /// Stages a full identity write, then performs only the first `renamed` renames.
    fn interrupt_save(data: &DataDir, identity: &Identity, renamed: usize) {
        let record = serde_json::to_vec(&identity.record).expect("record JSON");
        let contents: [(&str, &[u8]); 4] = [
            (KEY_FILE, identity.key_pem.as_bytes()),
            (CERT_FILE, identity.cert_pem.as_bytes()),
            (CA_FILE, identity.ca_pem.as_bytes()),
            (NODE_FILE, &record),
        ];
        for (file, bytes) in contents {
            write_synced(&data.staged(file), bytes, 0o600).expect("stage");
        }
        for file in &IDENTITY_FILES[..renamed] {
            std::fs::rename(data.staged(file), data.path(file)).expect("rename");
        }
    }

    #[test]
    fn recovery_finishes_staged_set() {
        for renamed in 0..IDENTITY_FILES.len() {
            let dir = tempfile::tempdir().expect("temp dir");
            let data = DataDir::open(dir.path()).expect("open data dir");
            data.save_identity(&identity("01")).expect("save first");
            let renewed = identity("02");
            interrupt_save(&data, &renewed, renamed);

            assert_eq!(
                data.recover_staged().expect("recover"),
                Recovery::Completed,
                "renamed {renamed}"
            );
            let loaded = data.load_identity().expect("load").expect("identity present");
            assert_same(&loaded, &renewed);
        }
    }

    #[test]
    fn recovery_discards_partial_staging() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        let first = identity("01");
        data.save_identity(&first).expect("save first");
        // A crash while staging: node.json.next was never written.
        write_synced(&data.staged(KEY_FILE), b"KEY 02", 0o600).expect("stage key");
        write_synced(&data.staged(CERT_FILE), b"CERT 02", 0o644).expect("stage cert");

        assert_eq!(data.recover_staged().expect("recover"), Recovery::Discarded);
        assert!(!data.staged(KEY_FILE).exists());
        assert!(!data.staged(CERT_FILE).exists());
        let loaded = data.load_identity().expect("load").expect("identity present");
        assert_same(&loaded, &first);
        assert_eq!(data.recover_staged().expect("recover again"), Recovery::Clean);
    }

    #[test]
    fn worker_config_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        assert_eq!(data.load_worker_config().expect("load missing"), None);
        let document = ConfigDocument {
            version: 7,
            body: NodeConfig {
                report_interval_secs: 2,
                ..NodeConfig::default()
            },
        };
        data.save_worker_config(&document).expect("save");
        assert_eq!(data.load_worker_config().expect("load"), Some(document));
    }

    #[test]
    fn second_lock_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        let held = data.lock().expect("first lock");
        let error = data.lock().expect_err("second lock");
        assert!(error.to_string().contains(&std::process::id().to_string()), "{error}");
        drop(held);
        assert!(data.lock().is_ok());
    }

    #[test]
    fn renewal_due_after_two_thirds() {
        let record = identity("01").record;
        // Issued on 1 January for 30 days: due once fewer than 10 days remain.
        assert!(!record.renewal_due(datetime!(2026-01-02 00:00 UTC)));
        assert!(!record.renewal_due(datetime!(2026-01-20 23:59 UTC)));
        assert!(record.renewal_due(datetime!(2026-01-21 00:01 UTC)));
        assert!(record.renewal_due(datetime!(2026-02-05 00:00 UTC)));
    }
}

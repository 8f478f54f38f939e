//! Child-process supervision for `rdp-proxy dev`: restarts a crashed worker or Redis with
//! backoff, cleans up children a previous run left behind, and keeps two runs from sharing one
//! data directory.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A child that ran this long before exiting restarts after the shortest delay again.
const STABLE_RUN: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Locks `root` for this process; the lock is released when the returned file is dropped or the
/// process ends, however it ends.
pub(crate) fn lock_data_dir(root: &Path) -> anyhow::Result<File> {
    let path = root.join("dev.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "data directory {} is in use by another `rdp-proxy dev` (PID {}); stop it first or pass another --data-dir",
            root.display(),
            holder.trim()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Stops a process recorded in `pid_file` by an earlier run that ended without cleaning up, but
/// only when its command line contains `marker` or its working directory is `marker`, so an
/// unrelated process that reused the PID is left alone.
pub(crate) async fn stop_stale(pid_file: &Path, marker: &str) {
    let Ok(raw) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let _ = std::fs::remove_file(pid_file);
    let Ok(pid) = raw.trim().parse::<u32>() else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // Redis rewrites its process title, so its working directory (`--dir`) is checked too.
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains(marker) && cwd != Path::new(marker) {
        return;
    }
    tracing::warn!(pid, marker, "Stopping a process left over from an earlier run");
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps a child running until `shutdown`: starts it with `spawn`, and restarts it with
/// exponential backoff (1 s up to 30 s) whenever it exits or fails to start. Its PID is kept in
/// `pid_file` while it runs.
pub(crate) async fn supervise<F, Fut>(name: &str, pid_file: PathBuf, shutdown: CancellationToken, mut spawn: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Child>>,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match spawn().await {
            Ok(mut child) => {
                if let Some(pid) = child.id() {
                    let _ = std::fs::write(&pid_file, pid.to_string());
                }
                tokio::select! {
                    status = child.wait() => {
                        let status = status.map(|status| status.to_string()).unwrap_or_else(|error| error.to_string());
                        if shutdown.is_cancelled() {
                            let _ = std::fs::remove_file(&pid_file);
                            return;
                        }
                        tracing::warn!(service = name, status, "Service exited; restarting");
                    }
                    () = shutdown.cancelled() => {
                        stop_child(&mut child).await;
                        let _ = std::fs::remove_file(&pid_file);
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(service = name, error = %format!("{error:#}"), "Service did not start; retrying")
            }
        }
        if started.elapsed() > STABLE_RUN {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sends SIGTERM, waits up to 15 s for a clean exit, then kills.
pub(crate) async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Waits for the first stdout line of a service started with piped stdout and checks that it
/// announces the listening address.
pub(crate) async fn wait_until_listening(child: &mut Child, name: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let stdout = child.stdout.take().context("service stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .with_context(|| format!("the {name} did not start within 30 s"))??;
    anyhow::ensure!(
        first.is_some_and(|line| line.contains("listening")),
        "the {name} exited during start-up"
    );
    // Keep reading so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(())
}

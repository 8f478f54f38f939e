//! Supervision of one service process: start it, watch its first stdout line, restart it with
//! backoff whenever it exits or fails to start, and stop it with SIGTERM, then SIGKILL.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdp_proxy_core::node::{ServiceKind, ServiceReport, ServiceRun};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Limit for `<program> --version`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Program, arguments and environment of a service process.
#[derive(Debug, Clone)]
pub struct ServiceCommand {
    pub kind: ServiceKind,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to the agent's own environment, which the process inherits.
    pub env: Vec<(OsString, OsString)>,
    /// Removed from the inherited environment.
    pub env_remove: Vec<OsString>,
}

/// Restart and stop timings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A run at least this long resets the backoff to `initial_backoff`.
    pub stable_run: Duration,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            stable_run: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(15),
        }
    }
}

/// Keeps one service process running until [`Supervisor::stop`].
#[derive(Debug)]
pub struct Supervisor {
    report: watch::Receiver<ServiceReport>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising `command` on the current Tokio runtime.
    pub fn start(command: ServiceCommand, timing: Timing) -> Self {
        let (report_tx, report) = watch::channel(ServiceReport {
            kind: command.kind,
            run: ServiceRun::Starting,
            version: None,
            pid: None,
            restarts: 0,
            last_exit: None,
            address: None,
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(command, timing, report_tx, cancel.clone()));
        Self { report, cancel, task }
    }

    /// Returns the current state of the service.
    pub fn report(&self) -> ServiceReport {
        self.report.borrow().clone()
    }

    /// Returns a receiver that is notified of every change of [`Supervisor::report`].
    pub fn subscribe(&self) -> watch::Receiver<ServiceReport> {
        self.report.clone()
    }

    /// Stops the process (SIGTERM, then SIGKILL after the stop timeout) and ends supervision.
    /// Returns the final report, with run state `Stopped`.
    pub async fn stop(mut self) -> ServiceReport {
        self.cancel.cancel();
        if let Err(error) = (&mut self.task).await {
            tracing::error!(%error, "Supervisor task failed");
        }
        let mut report = self.report.borrow().clone();
        report.run = ServiceRun::Stopped;
        report.pid = None;
        report.address = None;
        report
    }
}

impl Drop for Supervisor {
    /// Starts stopping the process without waiting for it, so a supervisor dropped without
    /// [`Supervisor::stop`] does not keep restarting its service.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// End of one run of the process.
enum RunEnd {
    /// The process exited by itself, or could not be started; the text describes which.
    Exited(String),
    /// Supervision was cancelled and the process was stopped.
    Stopped,
}

async fn supervise(
    command: ServiceCommand,
    timing: Timing,
    report: watch::Sender<ServiceReport>,
    cancel: CancellationToken,
) {
    let kind = command.kind;
    let mut backoff = Backoff::new(timing.initial_backoff, timing.max_backoff);
    let mut first_start = true;
    loop {
        if report.borrow().version.is_none() {
            let version = read_version(&command).await;
            report.send_modify(|report| report.version = version);
        }
        report.send_modify(|report| {
            report.run = ServiceRun::Starting;
            report.pid = None;
            report.address = None;
            if !first_start {
                report.restarts += 1;
            }
        });
        first_start = false;

        let started = Instant::now();
        let end = match spawn(&command) {
            Ok(child) => run(child, kind, &report, &cancel, timing.stop_timeout).await,
            Err(error) => RunEnd::Exited(format!("failed to start: {error}")),
        };
        let exit = match end {
            RunEnd::Stopped => break,
            RunEnd::Exited(_) if cancel.is_cancelled() => break,
            RunEnd::Exited(exit) => exit,
        };

        if started.elapsed() >= timing.stable_run {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let restarts = report.borrow().restarts;
        tracing::warn!(
            service = %kind,
            program = %command.program.display(),
            exit,
            restarts,
            retry_in_ms = delay.as_millis(),
            "Service ended; restarting after a delay"
        );
        report.send_modify(|report| {
            report.run = ServiceRun::Backoff;
            report.pid = None;
            report.address = None;
            report.last_exit = Some(exit);
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => break,
        }
    }
    report.send_modify(|report| {
        report.run = ServiceRun::Stopped;
        report.pid = None;
        report.address = None;
    });
}

fn spawn(command: &ServiceCommand) -> std::io::Result<Child> {
    let mut process = Command::new(&command.program);
    for key in &command.env_remove {
        process.env_remove(key);
    }
    process
        .args(&command.args)
        .envs(command.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so a Ctrl-C in the agent's terminal reaches only the agent,
        // which then stops the service in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

/// Waits for the child to exit or for cancellation, marking it `Running` once it announces
/// that it is listening.
async fn run(
    mut child: Child,
    kind: ServiceKind,
    report: &watch::Sender<ServiceReport>,
    cancel: &CancellationToken,
    stop_timeout: Duration,
) -> RunEnd {
    let pid = child.id();
    report.send_modify(|report| {
        report.pid = pid;
        report.address = None;
    });
    tracing::info!(service = %kind, pid, "Service started");

    let (listening_tx, mut listening_rx) = oneshot::channel();
    let mut listening_pending = false;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(read_stdout(stdout, kind, listening_tx));
        listening_pending = true;
    }
    loop {
        tokio::select! {
            status = child.wait() => {
                return RunEnd::Exited(match status {
                    Ok(status) => describe_exit(status),
                    Err(error) => format!("failed to wait for the process: {error}"),
                });
            }
            listening = &mut listening_rx, if listening_pending => {
                listening_pending = false;
                if let Ok(address) = listening {
                    report.send_modify(|report| {
                        report.run = ServiceRun::Running;
                        report.address = address;
                    });
                }
            }
            () = cancel.cancelled() => {
                stop_child(&mut child, kind, stop_timeout).await;
                return RunEnd::Stopped;
            }
        }
    }
}

/// Reads the service's stdout until it closes, so the service never blocks on a full pipe.
/// The first line must be the JSON event `{"event":"listening",...}`; it is logged and
/// reported through `listening` with the `addr` it names.
async fn read_stdout(stdout: ChildStdout, kind: ServiceKind, listening: oneshot::Sender<Option<String>>) {
    let mut lines = BufReader::new(stdout).lines();
    let mut listening = Some(listening);
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(service = %kind, %error, "Failed to read service stdout");
                return;
            }
        };
        let Some(sender) = listening.take() else {
            tracing::debug!(service = %kind, line, "Service stdout");
            continue;
        };
        let event: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        if event
            .as_ref()
            .and_then(|event| event.get("event"))
            .and_then(|event| event.as_str())
            == Some("listening")
        {
            tracing::info!(service = %kind, announcement = line, "Service is listening");
            let address = event
                .as_ref()
                .and_then(|event| event.get("addr"))
                .and_then(|addr| addr.as_str())
                .map(str::to_owned);
            let _ = sender.send(address);
        } else {
            tracing::warn!(
                service = %kind,
                line,
                "Service's first stdout line is not the listening event, so it stays reported as starting"
            );
        }
    }
}

/// Sends SIGTERM, waits up to `timeout`, then kills the process.
async fn stop_child(child: &mut Child, kind: ServiceKind, timeout: Duration) {
    let Some(pid) = child.id() else {
        // Already reaped.
        return;
    };
    let target = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    if let Some(target) = target
        && let Err(error) = rustix::process::kill_process(target, rustix::process::Signal::TERM)
    {
        tracing::warn!(service = %kind, pid, %error, "Failed to send SIGTERM to the service");
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            tracing::info!(service = %kind, pid, exit = describe_exit(status), "Service stopped");
            return;
        }
        Ok(Err(error)) => tracing::warn!(service = %kind, pid, %error, "Failed to wait for the service"),
        Err(_) => tracing::warn!(
            service = %kind,
            pid,
            timeout_secs = timeout.as_secs_f64(),
            "Service did not exit after SIGTERM; killing it"
        ),
    }
    if let Err(error) = child.kill().await {
        tracing::warn!(service = %kind, pid, %error, "Failed to kill the service");
    }
}

/// Describes an exit status as `exit status N` or `signal N`.
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(signal) = status.signal() {
        format!("signal {signal}")
    } else {
        status.to_string()
    }
}

/// Runs `<program> --version` and returns the last word of its first line (`rdp-proxy 0.1.0`
/// gives `0.1.0`), or `None` when the program is missing, fails or prints nothing.
async fn read_version(command: &ServiceCommand) -> Option<String> {
    let output = Command::new(&command.program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(VERSION_TIMEOUT, output).await {
        Ok(Ok(output)) if output.status.success() => output,
        Ok(Ok(output)) => {
            tracing::debug!(service = %command.kind, exit = describe_exit(output.status), "--version failed");
            return None;
        }
        Ok(Err(error)) => {
            tracing::debug!(service = %command.kind, %error, "--version did not start");
            return None;
        }
        Err(_) => {
            tracing::warn!(service = %command.kind, "--version timed out");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().next()?.split_whitespace().last().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    fn fast_timing() -> Timing {
        Timing {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            stable_run: Duration::from_secs(30),
            stop_timeout: Duration::from_millis(500),
        }
    }

    /// Writes an executable shell script that prints `9.9.9` for `--version` and otherwise runs
    /// `body`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        let text = format!("#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"stand-in 9.9.9\"; exit 0; fi\n{body}\n");
        std::fs::write(&path, text).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
        path
    }

    fn command(program: PathBuf) -> ServiceCommand {
        ServiceCommand {
            kind: ServiceKind::Worker,
            program,
            args: vec!["worker".into()],
            env: vec![("RDP_PROXY_TEST_MARKER".into(), "from-agent".into())],
            env_remove: vec!["HOME".into()],
        }
    }

    async fn wait_for(
        receiver: &mut watch::Receiver<ServiceReport>,
        what: &str,
        condition: impl FnMut(&ServiceReport) -> bool,
    ) -> ServiceReport {
        let result = tokio::time::timeout(TEST_TIMEOUT, receiver.wait_for(condition))
            .await
            .map(|result| result.map(|report| report.clone()));
        match result {
            Ok(Ok(report)) => report,
            Ok(Err(_)) => panic!("supervisor ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; last report {:?}", *receiver.borrow()),
        }
    }

    fn process_exists(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn running_service_is_reported_and_stopped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env_file = dir.path().join("env");
        let body = format!(
            "echo \"$RDP_PROXY_TEST_MARKER $1 home=$HOME\" > {}\necho '{{\"event\":\"listening\",\"addr\":\"127.0.0.1:1\"}}'\nexec sleep 600",
            env_file.display()
        );
        let supervisor = Supervisor::start(command(script(dir.path(), "worker", &body)), fast_timing());
        let mut receiver = supervisor.subscribe();
        let report = wait_for(&mut receiver, "running", |report| report.run == ServiceRun::Running).await;

        let pid = report.pid.expect("pid while running");
        assert!(process_exists(pid));
        assert_eq!(report.version.as_deref(), Some("9.9.9"));
        assert_eq!(report.restarts, 0);
        assert_eq!(report.last_exit, None);
        let env = std::fs::read_to_string(&env_file).expect("script wrote its environment");
        assert_eq!(env.trim(), "from-agent worker home=");

        let stopped = supervisor.stop().await;
        assert_eq!(stopped.run, ServiceRun::Stopped);
        assert_eq!(stopped.pid, None);
        assert!(!process_exists(pid), "process {pid} still exists after stop");
    }

    #[tokio::test]
    async fn crashing_service_restarts_with_backoff() {
        let dir = tempfile::tempdir().expect("temp dir");
        let program = script(dir.path(), "worker", "echo '{\"event\":\"listening\"}'\nexit 1");
        let supervisor = Supervisor::start(command(program), fast_timing());
        let mut receiver = supervisor.subscribe();

        let report = wait_for(&mut receiver, "three restarts", |report| report.restarts >= 3).await;
        assert_eq!(report.last_exit.as_deref(), Some("exit status 1"));
        assert_eq!(report.version.as_deref(), Some("9.9.9"));

        let stopped = supervisor.stop().await;
        assert_eq!(stopped.run, ServiceRun::Stopped);
    }

    #[tokio::test]
    async fn killed_service_reports_signal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let program = script(dir.path(), "worker", "echo '{\"event\":\"listening\"}'\nexec sleep 600");
        let supervisor = Supervisor::start(command(program), fast_timing());
        let mut receiver = supervisor.subscribe();
        let report = wait_for(&mut receiver, "running", |report| report.run == ServiceRun::Running).await;
        let pid = report.pid.expect("pid while running");

        let target = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("valid pid");
        rustix::process::kill_process(target, rustix::process::Signal::KILL).expect("kill the stand-in worker");

        let report = wait_for(&mut receiver, "restart after the kill", |report| {
            report.restarts == 1 && report.run == ServiceRun::Running
        })
        .await;
        assert_eq!(report.last_exit.as_deref(), Some("signal 9"));
        assert_ne!(report.pid, Some(pid));
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn missing_program_keeps_retrying() {
        let dir = tempfile::tempdir().expect("temp dir");
        let supervisor = Supervisor::start(command(dir.path().join("absent")), fast_timing());
        let mut receiver = supervisor.subscribe();
        let report = wait_for(&mut receiver, "two failed starts", |report| {
            report.restarts >= 2 && report.run == ServiceRun::Backoff
        })
        .await;
        let last_exit = report.last_exit.unwrap_or_default();
        assert!(last_exit.starts_with("failed to start"), "{last_exit}");
        assert_eq!(report.version, None);
        assert_eq!(report.pid, None);
        assert_eq!(supervisor.stop().await.run, ServiceRun::Stopped);
    }

    #[tokio::test]
    async fn service_ignoring_sigterm_is_killed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let body = "trap '' TERM\necho '{\"event\":\"listening\"}'\nexec sleep 600";
        let supervisor = Supervisor::start(command(script(dir.path(), "worker", body)), fast_timing());
        let mut receiver = supervisor.subscribe();
        let report = wait_for(&mut receiver, "running", |report| report.run == ServiceRun::Running).await;
        let pid = report.pid.expect("pid while running");

        let started = Instant::now();
        supervisor.stop().await;
        assert!(started.elapsed() >= fast_timing().stop_timeout);
        assert!(!process_exists(pid), "process {pid} survived SIGKILL");
    }

    #[tokio::test]
    async fn silent_service_stays_starting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let program = script(dir.path(), "worker", "echo 'not json'\nexec sleep 600");
        let supervisor = Supervisor::start(command(program), fast_timing());
        let mut receiver = supervisor.subscribe();
        let report = wait_for(&mut receiver, "a pid", |report| report.pid.is_some()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(supervisor.report().run, ServiceRun::Starting);
        assert_eq!(report.restarts, 0);
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn dropped_supervisor_stops_service() {
        let dir = tempfile::tempdir().expect("temp dir");
        let program = script(dir.path(), "worker", "echo '{\"event\":\"listening\"}'\nexec sleep 600");
        let supervisor = Supervisor::start(command(program), fast_timing());
        let mut receiver = supervisor.subscribe();
        let report = wait_for(&mut receiver, "running", |report| report.run == ServiceRun::Running).await;
        let pid = report.pid.expect("pid while running");

        drop(supervisor);
        wait_for(&mut receiver, "stopped", |report| report.run == ServiceRun::Stopped).await;
        assert!(
            !process_exists(pid),
            "process {pid} still exists after the supervisor was dropped"
        );
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exit status 0");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal 9");
    }
}

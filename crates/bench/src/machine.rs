//! The machine the benchmark runs on, and per-process memory and CPU use read from `/proc`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Facts about the machine, printed with the results.
pub struct Machine {
    /// Output of `nproc`: processing units available to this process.
    pub nproc: String,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in bytes.
    pub mem_total: u64,
    /// Output of `date`.
    pub date: String,
    /// Output of `uname -sr`.
    pub kernel: String,
    /// `git describe --always --dirty` of the current directory, when it is a checkout.
    pub revision: Option<String>,
}

impl Machine {
    pub fn read() -> Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("failed to read /proc/cpuinfo")?;
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown (no model name in /proc/cpuinfo)".to_owned());
        Ok(Self {
            nproc: command_output("nproc", &[])?,
            cpu_model,
            mem_total: meminfo_bytes("MemTotal")?,
            date: command_output("date", &[])?,
            kernel: command_output("uname", &["-sr"])?,
            revision: command_output("git", &["describe", "--always", "--dirty"]).ok(),
        })
    }
}

/// Runs `program` with `args` and returns its trimmed stdout.
fn command_output(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("failed to run {program}"))?;
    if !output.status.success() {
        bail!("{program} {args:?} exited with {}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Reads a `kB` field of `/proc/meminfo` and returns it in bytes.
pub fn meminfo_bytes(field: &str) -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("failed to read /proc/meminfo")?;
    kilobyte_field(&text, field).with_context(|| format!("no {field} in /proc/meminfo"))
}

/// Returns the load averages over 1, 5 and 15 minutes from `/proc/loadavg`.
pub fn load_average() -> Result<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").context("failed to read /proc/loadavg")?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut load = [0.0; 3];
    for value in &mut load {
        *value = fields
            .next()
            .context("/proc/loadavg has fewer than three fields")?
            .context("invalid number in /proc/loadavg")?;
    }
    Ok(load)
}

/// Returns the resident set size (`VmRSS` in `/proc/PID/status`) of `pid` in bytes.
pub fn resident_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    kilobyte_field(&text, "VmRSS").with_context(|| format!("no VmRSS in {path}"))
}

/// Parses a line `FIELD:   1234 kB` of a `/proc` status file and returns the value in bytes.
fn kilobyte_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key != field {
            return None;
        }
        let kilobytes: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kilobytes * 1024)
    })
}

/// Returns the CPU time `pid` has used, user plus system (`utime` + `stime` in `/proc/PID/stat`).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    let ticks = stat_cpu_ticks(&text).with_context(|| format!("unexpected format of {path}: {text}"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
}

/// Length of one CPU-time tick in `/proc/PID/stat`, which bounds the resolution of [`cpu_time`].
pub fn cpu_tick() -> Duration {
    Duration::from_secs_f64(1.0 / clock_ticks_per_second() as f64)
}

fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// Returns `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
fn stat_cpu_ticks(text: &str) -> Option<u64> {
    // The command name is in parentheses and may contain spaces, so the fields are counted
    // from the last ')'. After it come state (field 3) … utime (14) and stime (15).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU use of one process over a wall-clock interval.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub cpu: Duration,
    pub wall: Duration,
}

impl CpuUse {
    /// CPU time as a percentage of one core over the interval.
    pub fn percent_of_core(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// Measures the CPU time each of `pids` uses over the next `interval`, sleeping meanwhile.
pub fn measure_cpu(pids: &[u32], interval: Duration) -> Result<Vec<CpuUse>> {
    let started = Instant::now();
    let before: Vec<Duration> = pids.iter().map(|&pid| cpu_time(pid)).collect::<Result<_>>()?;
    std::thread::sleep(interval);
    let after: Vec<Duration> = pids.iter().map(|&pid| cpu_time(pid)).collect::<Result<_>>()?;
    let wall = started.elapsed();
    Ok(before
        .iter()
        .zip(after)
        .map(|(before, after)| CpuUse {
            cpu: after.saturating_sub(*before),
            wall,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_with_spaces_in_name() {
        let text = "1234 (rdp proxy) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 9 0 100 1000 200";
        assert_eq!(stat_cpu_ticks(text), Some(280));
    }

    #[test]
    fn kilobyte_field_in_status() {
        let text = "Name:\trdp-proxy\nVmRSS:\t   20480 kB\nVmSwap:\t0 kB\n";
        assert_eq!(kilobyte_field(text, "VmRSS"), Some(20480 * 1024));
        assert_eq!(kilobyte_field(text, "VmHWM"), None);
    }

    #[test]
    fn own_process_is_measurable() -> Result<()> {
        let pid = std::process::id();
        assert!(resident_bytes(pid)? > 0);
        cpu_time(pid)?;
        Ok(())
    }
}

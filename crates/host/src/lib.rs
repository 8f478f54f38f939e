//! Measurements of this machine and of one process, read from /proc and /sys: what the node
//! could run ([`capabilities`]) and how busy it and one service are ([`Sampler`]). Linux only.

mod parse;

use std::io;
use std::path::Path;
use std::time::Instant;

use rdp_proxy_core::node::Capabilities;

use parse::{CpuTimes, ProcessTimes};

/// Measures cores, memory and the fastest network link, and records which services the caller
/// can run.
///
/// `cores` counts the CPUs this process may use (affinity and cgroup quota apply);
/// `memory_bytes` is the kernel's `MemTotal`.
// NOTE: a cgroup memory limit is not applied, so inside a memory-limited container
// `memory_bytes` is the host's memory.
pub fn capabilities(rdp: bool, relay: bool, connector: bool) -> io::Result<Capabilities> {
    let cores = std::thread::available_parallelism()?.get();
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let memory_bytes = parse::parse_meminfo_bytes(&meminfo, "MemTotal")
        .ok_or_else(|| invalid_data("/proc/meminfo has no MemTotal line"))?;
    Ok(Capabilities {
        cores: u32::try_from(cores).unwrap_or(u32::MAX),
        memory_bytes,
        network_bits_per_sec: fastest_link_bits_per_sec(Path::new("/sys/class/net")),
        rdp,
        relay,
        connector,
    })
}

/// Returns the highest `speed` among the interfaces under `class_net`, skipping loopback and
/// interfaces whose speed is unreadable or unknown (down links and most virtual devices).
fn fastest_link_bits_per_sec(class_net: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(class_net).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() != "lo")
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("speed")).ok())
        .filter_map(|text| parse::parse_link_speed_bits(&text))
        .max()
}

/// Returns the kernel's host name, from /proc/sys/kernel/hostname.
pub fn hostname() -> io::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(name.trim().to_owned())
}

/// Node-wide figures from one [`Sampler::sample_node`] call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeSample {
    /// Fraction of CPU time spent busy (all processes) since the previous sample, 0.0–1.0.
    pub cpu_busy: f64,
    /// The kernel's `MemAvailable`, in bytes.
    pub memory_available_bytes: u64,
}

/// Figures for one process from one [`Sampler::sample_process`] call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// CPU used since the previous sample, in cores: 1.5 means one and a half cores busy.
    pub cpu_cores: f64,
    /// Resident set size, in bytes.
    pub memory_bytes: u64,
}

/// The previous CPU sample of one process.
#[derive(Debug, Clone, Copy)]
struct ProcessCpu {
    pid: u32,
    cpu_ticks: u64,
    at: Instant,
}

/// Turns cumulative CPU counters into rates by keeping the previous sample of the node and of
/// one process.
#[derive(Debug)]
pub struct Sampler {
    clock_ticks_per_second: u64,
    page_size: u64,
    previous_node: Option<CpuTimes>,
    previous_process: Option<ProcessCpu>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        Self {
            clock_ticks_per_second: rustix::param::clock_ticks_per_second().max(1),
            page_size: u64::try_from(rustix::param::page_size()).unwrap_or(4096),
            previous_node: None,
            previous_process: None,
        }
    }

    /// Samples node CPU and available memory. The first call reports the CPU busy fraction
    /// since boot; later calls report it since the previous call.
    pub fn sample_node(&mut self) -> io::Result<NodeSample> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let times = parse::parse_proc_stat(&stat).ok_or_else(|| invalid_data("/proc/stat has no readable cpu line"))?;
        let earlier = self
            .previous_node
            .replace(times)
            .unwrap_or(CpuTimes { busy: 0, total: 0 });

        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        let memory_available_bytes = parse::parse_meminfo_bytes(&meminfo, "MemAvailable")
            .ok_or_else(|| invalid_data("/proc/meminfo has no MemAvailable line"))?;

        Ok(NodeSample {
            cpu_busy: times.busy_fraction_since(earlier),
            memory_available_bytes,
        })
    }

    /// Samples CPU use and resident memory of process `pid`.
    ///
    /// The first call for a PID reports the average CPU use since the process started. Later
    /// calls for the same PID report it since the previous call, and a call for another PID
    /// starts over.
    pub fn sample_process(&mut self, pid: u32) -> io::Result<ProcessSample> {
        let now = Instant::now();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let times = parse::parse_process_stat(&stat)
            .ok_or_else(|| invalid_data(format!("/proc/{pid}/stat has an unexpected layout")))?;
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
        let resident_pages = parse::parse_statm_resident_pages(&statm)
            .ok_or_else(|| invalid_data(format!("/proc/{pid}/statm has an unexpected layout")))?;

        let cpu_cores = match self.previous_process {
            Some(previous) if previous.pid == pid => {
                let ticks = times.cpu_ticks.saturating_sub(previous.cpu_ticks);
                self.cores_over(ticks, now.duration_since(previous.at).as_secs_f64())
            }
            _ => self.lifetime_cores(times)?,
        };
        self.previous_process = Some(ProcessCpu {
            pid,
            cpu_ticks: times.cpu_ticks,
            at: now,
        });

        Ok(ProcessSample {
            cpu_cores,
            memory_bytes: resident_pages.saturating_mul(self.page_size),
        })
    }

    /// Average cores a process used since it started.
    fn lifetime_cores(&self, times: ProcessTimes) -> io::Result<f64> {
        let uptime = std::fs::read_to_string("/proc/uptime")?;
        let uptime_secs =
            parse::parse_uptime_secs(&uptime).ok_or_else(|| invalid_data("/proc/uptime has an unexpected layout"))?;
        let started_secs = times.start_ticks as f64 / self.clock_ticks_per_second as f64;
        Ok(self.cores_over(times.cpu_ticks, uptime_secs - started_secs))
    }

    fn cores_over(&self, ticks: u64, wall_secs: f64) -> f64 {
        if wall_secs <= 0.0 {
            return 0.0;
        }
        let cpu_secs = ticks as f64 / self.clock_ticks_per_second as f64;
        (cpu_secs / wall_secs).max(0.0)
    }
}

fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_proc_measurements() {
        let capabilities = capabilities(true, false, false).expect("capabilities");
        assert!(capabilities.cores >= 1);
        assert_eq!(capabilities.validate(), Ok(()));
        assert!(capabilities.rdp);
        assert!(!capabilities.relay);

        let mut sampler = Sampler::new();
        let first = sampler.sample_node().expect("first node sample");
        assert!((0.0..=1.0).contains(&first.cpu_busy));
        assert!(first.memory_available_bytes > 0);
        assert!(first.memory_available_bytes <= capabilities.memory_bytes);

        let pid = std::process::id();
        let process = sampler.sample_process(pid).expect("first process sample");
        assert!(process.memory_bytes > 0);

        // Keep one core busy for a moment so the second sample has CPU time to count.
        let deadline = Instant::now() + std::time::Duration::from_millis(300);
        let mut spins = 0u64;
        while Instant::now() < deadline {
            spins = std::hint::black_box(spins + 1);
        }
        let second = sampler.sample_node().expect("second node sample");
        assert!((0.0..=1.0).contains(&second.cpu_busy));
        let process = sampler.sample_process(pid).expect("second process sample");
        assert!(process.cpu_cores > 0.0, "cpu_cores = {}", process.cpu_cores);
        assert!(process.cpu_cores <= f64::from(capabilities.cores) * 1.05);
    }

    #[test]
    fn missing_process_is_an_error() {
        let mut sampler = Sampler::new();
        // PIDs stop below 2^22 on Linux, so this one never exists.
        let error = sampler.sample_process(u32::MAX - 1).expect_err("no such process");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn link_speed_skips_loopback_and_unknown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let interfaces = [
            ("lo", Some("100000")),
            ("eth0", Some("1000")),
            ("eth1", Some("-1")),
            ("br0", None),
        ];
        for (name, speed) in interfaces {
            let interface = dir.path().join(name);
            std::fs::create_dir_all(&interface).expect("create interface dir");
            if let Some(speed) = speed {
                std::fs::write(interface.join("speed"), format!("{speed}\n")).expect("write speed");
            }
        }
        assert_eq!(fastest_link_bits_per_sec(dir.path()), Some(1_000_000_000));
        assert_eq!(fastest_link_bits_per_sec(&dir.path().join("missing")), None);
    }
}

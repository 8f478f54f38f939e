//! Parsers for the /proc and /sys files the measurements read. Each takes the file's text and
//! returns `None` when the text does not have the expected layout.

/// Aggregate CPU time of the node, in clock ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Ticks spent neither idle nor waiting for I/O.
    pub busy: u64,
    pub total: u64,
}

impl CpuTimes {
    /// Busy fraction of the ticks between `earlier` and `self`, 0.0–1.0.
    pub fn busy_fraction_since(self, earlier: CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(earlier.busy);
        (busy as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// Reads the aggregate `cpu` line of /proc/stat: user, nice, system, idle, iowait, irq, softirq,
/// steal. Guest time is left out because the kernel already counts it in user and nice.
pub(crate) fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let mut fields = Vec::with_capacity(8);
    for field in line.split_whitespace().skip(1).take(8) {
        fields.push(field.parse::<u64>().ok()?);
    }
    // Kernels before 2.6 have only user, nice, system and idle.
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// CPU time and start time of one process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessTimes {
    /// utime + stime.
    pub cpu_ticks: u64,
    /// Start time after boot.
    pub start_ticks: u64,
}

/// Reads utime, stime and starttime (fields 14, 15 and 22) of /proc/PID/stat.
pub(crate) fn parse_process_stat(text: &str) -> Option<ProcessTimes> {
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so the numbered fields are counted from the last closing parenthesis.
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(ProcessTimes {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// Reads the resident set size in pages (second field) of /proc/PID/statm.
pub(crate) fn parse_statm_resident_pages(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Reads the seconds since boot (first field) of /proc/uptime.
pub(crate) fn parse_uptime_secs(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Reads one field of /proc/meminfo, such as `MemTotal`, in bytes.
pub(crate) fn parse_meminfo_bytes(text: &str, field: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|line| line.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let mut parts = line[field.len() + 1..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Reads /sys/class/net/IFACE/speed (megabits per second) as bits per second. The kernel
/// reports -1 when the link is down or its driver does not know the speed.
pub(crate) fn parse_link_speed_bits(text: &str) -> Option<u64> {
    let megabits: i64 = text.trim().parse().ok()?;
    let megabits = u64::try_from(megabits).ok().filter(|&speed| speed > 0)?;
    megabits.checked_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_STAT: &str = "cpu  4705 356 584 3699 23 23 0 0 0 0\n\
                             cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n\
                             intr 1462898\n";

    #[test]
    fn proc_stat_busy_and_total() {
        let times = parse_proc_stat(PROC_STAT);
        // total = 4705 + 356 + 584 + 3699 + 23 + 23 + 0 + 0; idle = 3699 + 23.
        assert_eq!(
            times,
            Some(CpuTimes {
                busy: 5668,
                total: 9390
            })
        );
    }

    #[test]
    fn proc_stat_old_kernel_layout() {
        let times = parse_proc_stat("cpu 10 0 10 80\n");
        assert_eq!(times, Some(CpuTimes { busy: 20, total: 100 }));
    }

    #[test]
    fn proc_stat_rejects_garbage() {
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 x 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
    }

    #[test]
    fn busy_fraction_between_samples() {
        let earlier = CpuTimes { busy: 100, total: 400 };
        let later = CpuTimes { busy: 150, total: 600 };
        assert_eq!(later.busy_fraction_since(earlier), 0.25);
        assert_eq!(earlier.busy_fraction_since(earlier), 0.0);
        // Counters that went backwards (a wrapped or reset counter) give 0, not a panic.
        assert_eq!(earlier.busy_fraction_since(later), 0.0);
    }

    #[test]
    fn process_stat_with_parentheses_in_name() {
        let text = "1234 (rdp (proxy) x) S 1 1234 1234 0 -1 4194560 2219 0 0 0 \
                    150 50 0 0 20 0 12 0 98765 1000000 2000 18446744073709551615";
        let times = parse_process_stat(text);
        assert_eq!(
            times,
            Some(ProcessTimes {
                cpu_ticks: 200,
                start_ticks: 98765
            })
        );
    }

    #[test]
    fn process_stat_truncated() {
        assert_eq!(parse_process_stat("1234 (sh) S 1 1234"), None);
        assert_eq!(parse_process_stat("no parenthesis"), None);
    }

    #[test]
    fn statm_resident_pages() {
        assert_eq!(parse_statm_resident_pages("5000 1200 300 10 0 900 0\n"), Some(1200));
        assert_eq!(parse_statm_resident_pages("5000\n"), None);
    }

    #[test]
    fn uptime_seconds() {
        assert_eq!(parse_uptime_secs("350735.47 234388.90\n"), Some(350735.47));
        assert_eq!(parse_uptime_secs(""), None);
    }

    #[test]
    fn meminfo_fields_in_bytes() {
        let text = "MemTotal:       16318524 kB\nMemFree:         1024 kB\n\
                    MemAvailable:    8000000 kB\nHugePages_Total:       0\n";
        assert_eq!(parse_meminfo_bytes(text, "MemTotal"), Some(16_318_524 * 1024));
        assert_eq!(parse_meminfo_bytes(text, "MemAvailable"), Some(8_000_000 * 1024));
        assert_eq!(parse_meminfo_bytes(text, "HugePages_Total"), Some(0));
        // `Mem` is a prefix of every field above but not a field itself.
        assert_eq!(parse_meminfo_bytes(text, "Mem"), None);
        assert_eq!(parse_meminfo_bytes(text, "SwapTotal"), None);
    }

    #[test]
    fn link_speed_values() {
        assert_eq!(parse_link_speed_bits("1000\n"), Some(1_000_000_000));
        assert_eq!(parse_link_speed_bits("25000"), Some(25_000_000_000));
        assert_eq!(parse_link_speed_bits("-1\n"), None);
        assert_eq!(parse_link_speed_bits("0"), None);
        assert_eq!(parse_link_speed_bits(""), None);
    }
}

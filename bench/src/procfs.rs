//! Process accounting from /proc: CPU time of this process or of other
//! processes (utime + stime of all their threads, from `/proc/PID/stat`), the
//! whole machine's busy CPU time (first line of `/proc/stat`, to see what other
//! processes took on a shared machine) and any process's resident memory
//! (`VmRSS` from `/proc/PID/status`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Clock ticks per second used by /proc (`USER_HZ`, 100 on all Linux ABIs).
const USER_HZ: f64 = 100.0;

/// utime + stime in clock ticks from the contents of a `/proc/PID/stat` file.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is 11, stime (15) is 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the contents of a `/proc/PID/status` file.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].split_whitespace().next()?.parse().ok()
}

/// Resident set size of `pid` (this process if `None`), in KiB.
pub fn vm_rss_kib(pid: Option<u32>) -> Result<u64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |p| format!("/proc/{p}/status"));
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss_kib(&s).with_context(|| format!("{path}: no VmRSS"))
}

/// Busy ticks of all CPUs (user + nice + system + irq + softirq + steal) from the
/// contents of `/proc/stat`.
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?)
}

/// CPU ticks of `pid` (this process if `None`).
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| parse_stat_cpu_ticks(&s))
}

/// A point in time and the CPU ticks of one or more processes then.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    ticks: Option<u64>,
}

impl CpuMark {
    /// Reads this process's CPU time now (None if /proc is unreadable).
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            ticks: cpu_ticks(None),
        }
    }

    /// Reads the summed CPU time of `pids` now (None if there are none or one
    /// is unreadable, e.g. it exited).
    pub fn of(pids: &[u32]) -> Self {
        let ticks = if pids.is_empty() {
            None
        } else {
            pids.iter().try_fold(0u64, |sum, p| Some(sum + cpu_ticks(Some(*p))?))
        };
        Self {
            at: Instant::now(),
            ticks,
        }
    }

    /// Reads the whole machine's busy CPU time now (None if /proc/stat is unreadable).
    pub fn machine() -> Self {
        let ticks = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_machine_busy_ticks(&s));
        Self {
            at: Instant::now(),
            ticks,
        }
    }

    /// CPU used since `self`, as a percentage of one core (may exceed 100).
    pub fn percent_since(&self, later: &Self) -> Option<f64> {
        let ticks = later.ticks?.checked_sub(self.ticks?)?;
        let wall = later.at.duration_since(self.at);
        (wall > Duration::ZERO).then(|| ticks as f64 / USER_HZ / wall.as_secs_f64() * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 999 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_machine_stat() {
        let stat = "cpu  100 5 50 9000 7 3 2 1 0 0\ncpu0 50 2 25 4500 3 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(161));
        assert_eq!(parse_machine_busy_ticks("cpu0 1 2 3\n"), None);
        assert!(CpuMark::machine().ticks.is_some());
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss_kib(status), Some(1536));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn reads_own_process() -> Result<()> {
        assert!(vm_rss_kib(None)? > 0);
        assert!(vm_rss_kib(Some(std::process::id()))? > 0);
        let a = CpuMark::now();
        assert!(a.ticks.is_some());
        assert!(CpuMark::of(&[std::process::id()]).ticks.is_some());
        assert!(CpuMark::of(&[]).ticks.is_none());
        Ok(())
    }
}

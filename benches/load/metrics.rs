//! Measurements: this process's (and its children's) CPU time and resident memory, how busy the
//! machine was, statistics over rounds, and flushing the disks so that one measurement does
//! not pay for the last.

use std::{process::Command, time::Duration};

/// CPU time of this process (user + system, every thread), in microseconds from `getrusage`
/// (/proc counts in 10 ms ticks: a microsecond per transfer over 10,000 of them).
pub fn cpu_time() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// Resident memory of this process, in bytes.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Write back every dirty page (untimed), so that a measurement does not pay for the disk
/// work of the one before it.
pub fn flush_disks() {
    let _ = Command::new("sync").status();
}

/// CPU time (user + system) of this process's children that have ended and been waited for
/// (a client run as a child process: its CPU is the difference around its run).
pub fn children_cpu_time() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: `getrusage` fills the zeroed struct it is given and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The machine's CPU counters (/proc/stat's `cpu` line), to tell how busy it was during a
/// run: other work and, under a hypervisor, time stolen by other guests.
#[derive(Clone, Copy, Default)]
pub struct CpuTicks {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTicks {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        let total: u64 = (0..8).map(at).sum();
        CpuTicks {
            busy: total - at(3) - at(4),
            steal: at(7),
            total,
        }
    }

    /// Since `earlier`: the share of CPU time busy and the share stolen, in percent.
    pub fn since(&self, earlier: &CpuTicks) -> (f64, f64) {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        (
            100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total,
            100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total,
        )
    }
}

/// How long the calling thread has waited, runnable, for a CPU since it started (the second
/// field of /proc/thread-self/schedstat); `None` where the kernel does not say.
pub fn run_queue_wait() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The 1-minute load average (/proc/loadavg).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

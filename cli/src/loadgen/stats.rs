//! Latency samples, percentiles, and the server's CPU and memory from /proc.

use std::time::Duration;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// Percentiles of `samples` (nanoseconds); sorts them. `None` when empty.
pub fn percentiles(samples: &mut [u64]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i] as f64 / 1000.0
    };
    Some(Percentiles { p50: at(0.5), p99: at(0.99), p999: at(0.999), max: at(1.0) })
}

/// Nanoseconds in `d`, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time a process has used, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// In user space.
    pub user: Duration,
    /// In the kernel, on the process's behalf (system calls, the network
    /// stack's work they do).
    pub system: Duration,
}

impl CpuTime {
    /// User and system time together.
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// What was used from `earlier` to `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime { user: self.user.saturating_sub(earlier.user), system: self.system.saturating_sub(earlier.system) }
    }
}

/// CPU time (user and system) a process has used, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(CpuTime { user: Duration::from_millis(utime * 10), system: Duration::from_millis(stime * 10) })
}

/// Resident memory (KiB) and thread count of a process, from
/// `/proc/PID/status`.
pub fn rss_and_threads(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let mut v: Vec<u64> = (1..=1000).rev().map(|i| i * 1000).collect();
        let p = percentiles(&mut v).unwrap();
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
        assert!(percentiles(&mut []).is_none());
    }

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        // Spin until the clock (10 ms ticks) has counted some user time.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_time(pid).unwrap().since(before).user.is_zero() && start.elapsed() < Duration::from_secs(10) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let used = cpu_time(pid).unwrap().since(before);
        assert!(!used.user.is_zero(), "10 s of spinning counted no user time");
        assert_eq!(used.total(), used.user + used.system);
        let (rss, threads) = rss_and_threads(pid).unwrap();
        assert!(rss > 0 && threads >= 1);
    }
}

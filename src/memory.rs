//! The process-wide memory budget: bytes held for peers, counted across all
//! connections of the process.
//!
//! Limits per connection ([`Config::max_message_size`],
//! [`Config::queue_max_bytes`]) bound one peer; they do not bound a few
//! hundred peers that each start a large message and never finish it. What
//! a peer makes the process hold beyond its read buffer, the buffer of a
//! message still arriving and the messages queued for it, is charged here
//! before it is allocated, one atomic add per buffer growth (not per byte),
//! and given back when the buffer is freed. A growth that would take the
//! total past [`Config::memory_budget`] is refused: that connection is
//! closed with 1013 (try again later: the limit is the server's, and it
//! passes), the others are untouched.
//!
//! Small messages, which arrive whole in the read buffer, and the batch of
//! one write are not charged: they are bounded per connection and freed at
//! once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

#[cfg(doc)]
use crate::config::Config;
use crate::error::{Error, Limit, Result};

/// Bytes charged now, by every connection of the process.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently held for peers across the whole process: buffers of
/// messages still arriving and messages queued for sending.
///
/// ```
/// println!("{} bytes held for peers", syncws::memory_held());
/// ```
pub fn memory_held() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// Takes `n` bytes from the budget if the total stays within `limit`.
pub(crate) fn try_take(n: usize, limit: usize) -> Result<()> {
    let mut held = HELD.load(Ordering::Relaxed);
    loop {
        let total = held.saturating_add(n);
        if total > limit {
            return Err(Error::Capacity { what: Limit::MemoryBudget, size: total as u64, max: limit as u64 });
        }
        match HELD.compare_exchange_weak(held, total, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(()),
            Err(now) => held = now,
        }
    }
}

/// Gives back `n` bytes taken with [`try_take`].
pub(crate) fn give(n: usize) {
    if n > 0 {
        HELD.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Bytes one buffer has charged to the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    bytes: usize,
    limit: usize,
}

impl Charge {
    pub(crate) fn new(limit: usize) -> Self {
        Charge { bytes: 0, limit }
    }

    /// Makes `buf` able to hold `len` bytes without reallocating, charging
    /// the growth first. Grows as `Vec` does (at least doubling), so a
    /// message arriving in many pieces costs few charges. Fails with
    /// [`Error::Capacity`] ([`Limit::MemoryBudget`]) when the budget or the
    /// allocator refuses; `buf` is then unchanged.
    pub(crate) fn reserve(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<()> {
        if len <= buf.capacity() {
            return Ok(());
        }
        let mut target = len.max(buf.capacity().saturating_mul(2));
        if try_take(target.saturating_sub(self.bytes), self.limit).is_err() {
            // Doubling does not fit: the exact size may.
            target = len;
            try_take(target.saturating_sub(self.bytes), self.limit)?;
        }
        let more = target.saturating_sub(self.bytes);
        if buf.try_reserve_exact(target - buf.len()).is_err() {
            give(more);
            let max = self.limit as u64;
            return Err(Error::Capacity { what: Limit::MemoryBudget, size: target as u64, max });
        }
        self.bytes += more;
        Ok(())
    }

    /// Like [`reserve`](Self::reserve), but never makes `buf` able to hold
    /// more than `most` bytes (`len` is at most `most`): for a buffer whose
    /// growth is bounded by a limit, such as an inflated message, where
    /// doubling past the limit would hold memory the limit forbids.
    #[cfg(feature = "deflate")]
    pub(crate) fn reserve_at_most(&mut self, buf: &mut Vec<u8>, len: usize, most: usize) -> Result<()> {
        let len = len.min(most);
        if len <= buf.capacity() {
            return Ok(());
        }
        let target = len.max(buf.capacity().saturating_mul(2).min(most));
        try_take(target.saturating_sub(self.bytes), self.limit)?;
        let more = target.saturating_sub(self.bytes);
        if buf.try_reserve_exact(target - buf.len()).is_err() {
            give(more);
            let max = self.limit as u64;
            return Err(Error::Capacity { what: Limit::MemoryBudget, size: target as u64, max });
        }
        self.bytes += more;
        Ok(())
    }

    /// Gives everything back (the buffer was freed or handed on).
    pub(crate) fn release(&mut self) {
        give(std::mem::take(&mut self.bytes));
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

/// The default [`Config::memory_budget`]: a quarter of the machine's memory
/// (the cgroup's limit where there is one, else the total), at most 1 GiB.
pub(crate) fn default_budget() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        const CAP: usize = 1 << 30;
        machine_memory().map_or(CAP, |m| (m / 4).min(CAP as u64) as usize)
    })
}

/// The memory this process may use: the cgroup's limit if one is set,
/// else the machine's total.
fn machine_memory() -> Option<u64> {
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|s| s.trim().parse::<u64>().ok());
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    match (cgroup, total) {
        // cgroup v1 reports "no limit" as a huge number.
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_charged_before_it_happens_and_given_back() {
        // Other tests of this binary hold memory too: compare against a
        // limit far above what they hold, and count this charge's own bytes.
        let mut charge = Charge::new(usize::MAX);
        let mut buf = Vec::new();
        charge.reserve(&mut buf, 1000).unwrap();
        assert!(buf.capacity() >= 1000);
        assert_eq!(charge.bytes, 1000);
        charge.reserve(&mut buf, 1001).unwrap();
        assert_eq!(charge.bytes, 2000, "doubles, as Vec does");
        charge.reserve(&mut buf, 1500).unwrap();
        assert_eq!(charge.bytes, 2000, "no growth, no charge");
        drop(charge);
    }

    #[test]
    fn a_growth_past_the_limit_is_refused_and_leaves_the_buffer_alone() {
        let mut charge = Charge::new(memory_held() + (64 << 10));
        let mut buf = Vec::new();
        let err = charge.reserve(&mut buf, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::Capacity { what: Limit::MemoryBudget, .. }), "{err}");
        assert_eq!((buf.capacity(), charge.bytes), (0, 0));
        assert_eq!(err.close_code(), Some(crate::CloseCode::AGAIN));
    }

    #[test]
    fn the_default_is_a_quarter_of_the_machine_at_most_one_gib() {
        let budget = default_budget();
        assert!(budget <= 1 << 30 && budget > 0);
        if let Some(m) = machine_memory() {
            assert_eq!(budget as u64, (m / 4).min(1 << 30));
        }
    }
}

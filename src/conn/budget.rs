//! A byte budget for one connection's outbound queue: the threads that
//! queue messages take from it, the writer thread gives back what it wrote.
//! What it holds is charged to the process-wide budget too
//! ([`crate::memory`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::error::Error;
use crate::memory;

/// What [`Budget::take`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The bytes are taken; give them back once written (or not queued).
    Yes,
    /// No room, now or by the deadline.
    Full,
    /// The connection ended while waiting.
    Closed,
    /// The process-wide memory budget has no room: `size` bytes held in all
    /// with this message, `max` allowed.
    OverBudget { size: u64, max: u64 },
}

/// Bytes queued and not yet written, bounded by `max`.
///
/// A message larger than the whole budget is still taken when nothing else
/// is held, so it can go, alone. Waiting is rare (a peer that reads slower
/// than the application sends), so the writer only takes the lock to wake
/// somebody when somebody waits.
#[derive(Debug)]
pub(crate) struct Budget {
    max: usize,
    /// `Config::memory_budget`: the process-wide limit.
    process_max: usize,
    used: AtomicUsize,
    /// The part of `used` also charged to the process-wide budget.
    owned: AtomicUsize,
    waiters: AtomicUsize,
    closed: AtomicBool,
    lock: Mutex<()>,
    room: Condvar,
}

impl Budget {
    pub(crate) fn new(max: usize, process_max: usize) -> Self {
        Budget {
            max,
            process_max,
            used: AtomicUsize::new(0),
            owned: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }

    /// Takes `n` bytes, `owned` of them also from the process-wide budget
    /// (the rest is memory shared with other queues), waiting for room
    /// until `deadline` (`None`: not at all).
    pub(crate) fn take(&self, n: usize, owned: usize, deadline: Option<Instant>) -> Taken {
        loop {
            if self.try_take(n) {
                if let Err(e) = memory::try_take(owned, self.process_max) {
                    self.give(n);
                    let Error::Capacity { size, max, .. } = e else { return Taken::Full };
                    return Taken::OverBudget { size, max };
                }
                if owned > 0 {
                    self.owned.fetch_add(owned, SeqCst);
                }
                return Taken::Yes;
            }
            if self.closed.load(SeqCst) {
                return Taken::Closed;
            }
            let now = Instant::now();
            match deadline {
                Some(deadline) if now < deadline => {
                    // Registered before the check under the lock, so a
                    // `give` that frees room after the check sees a waiter
                    // and wakes it.
                    self.waiters.fetch_add(1, SeqCst);
                    let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
                    if !self.fits(n) && !self.closed.load(SeqCst) {
                        drop(self.room.wait_timeout(guard, deadline - now).unwrap_or_else(|p| p.into_inner()));
                    }
                    self.waiters.fetch_sub(1, SeqCst);
                }
                _ => return Taken::Full,
            }
        }
    }

    /// Gives back `n` bytes taken earlier.
    pub(crate) fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, SeqCst);
        self.wake();
    }

    /// Gives back `n` bytes taken earlier, `owned` of them to the
    /// process-wide budget too: their messages were written or dropped.
    pub(crate) fn release(&self, n: usize, owned: usize) {
        if owned > 0 {
            self.owned.fetch_sub(owned, SeqCst);
            memory::give(owned);
        }
        self.give(n);
    }

    /// The connection ended: waiters stop waiting, later takes fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.wake();
    }

    /// True once [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(SeqCst)
    }

    /// Whether `n` more bytes fit beside `used`.
    fn fits_beside(&self, used: usize, n: usize) -> bool {
        used == 0 || used.saturating_add(n) <= self.max
    }

    fn fits(&self, n: usize) -> bool {
        self.fits_beside(self.used.load(SeqCst), n)
    }

    fn try_take(&self, n: usize) -> bool {
        if self.closed.load(SeqCst) {
            return false;
        }
        let mut used = self.used.load(SeqCst);
        loop {
            if !self.fits_beside(used, n) {
                return false;
            }
            match self.used.compare_exchange(used, used + n, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn wake(&self) {
        if self.waiters.load(SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.room.notify_all();
        }
    }
}

impl Drop for Budget {
    /// Bytes still counted belong to messages dropped with the queue: the
    /// process-wide budget gets them back.
    fn drop(&mut self) {
        memory::give(*self.owned.get_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Returns once a thread waits on `b` (bounded: 60 s).
    fn until_waiting(b: &Budget) {
        for _ in 0..6000 {
            if b.waiters.load(SeqCst) > 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn takes_what_fits_and_one_oversized_message_alone() {
        let b = Budget::new(100, usize::MAX);
        assert_eq!(b.take(60, 60, None), Taken::Yes);
        assert_eq!(b.take(40, 40, None), Taken::Yes);
        assert_eq!(b.take(1, 1, None), Taken::Full);
        b.give(100);
        // Larger than the whole budget: taken when nothing else is held.
        assert_eq!(b.take(500, 500, None), Taken::Yes);
        assert_eq!(b.take(1, 1, None), Taken::Full);
        b.give(500);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_waiting_sender_gets_room_when_the_writer_gives_it_back() {
        let b = Arc::new(Budget::new(100, usize::MAX));
        assert_eq!(b.take(100, 100, None), Taken::Yes);
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.take(50, 50, Some(Instant::now() + Duration::from_secs(60))))
        };
        // Give back only once the other thread waits.
        until_waiting(&b);
        b.give(100);
        assert_eq!(waiter.join().unwrap(), Taken::Yes);
        assert_eq!(b.used(), 50);
    }

    #[test]
    fn waiting_ends_at_the_deadline_or_when_the_connection_closes() {
        let b = Arc::new(Budget::new(10, usize::MAX));
        assert_eq!(b.take(10, 10, None), Taken::Yes);
        assert_eq!(b.take(5, 5, Some(Instant::now() + Duration::from_millis(20))), Taken::Full);
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.take(5, 5, Some(Instant::now() + Duration::from_secs(60))))
        };
        until_waiting(&b);
        b.close();
        assert_eq!(waiter.join().unwrap(), Taken::Closed);
        assert_eq!(b.take(0, 0, None), Taken::Closed);
    }
}

//! One publish spread over the machine's cores.
//!
//! Each delivery is a non-blocking write of the shared frame on its
//! subscriber's socket. Nearly all of its cost is the kernel's: the TCP
//! send and, on loopback, the receiver's side and its wake-up, measured
//! at 4-9 µs a delivery on this project's 2-core machine
//! (`bench-results/notes.md`). One thread delivering to 10,000 subscribers
//! so keeps the last one waiting some 50-90 ms while the other cores may
//! idle; an async server spreads the same writes over its worker threads.
//!
//! From a topic's parallel threshold on ([`DEFAULT_PARALLEL_FROM`], set by
//! [`Hub::set_parallel_from`](super::Hub::set_parallel_from)), the
//! subscribers are cut into contiguous chunks of at least half that many:
//! the publishing thread delivers the first, the threads of a small pool
//! the others (one fewer than the cores the process may use, at most
//! [`MAX_HELPERS`]; started by such a publish, never for small topics, and
//! ended after the listener's idle wait without work), and the publish
//! returns when every chunk is done. A subscriber is in one chunk only and
//! the next publish of the same thread starts after this one ended, so
//! each publisher's messages still reach every subscriber in order. The
//! helpers only run [`deliver`], which never blocks: a publisher waits for
//! CPU work, never for a subscriber.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver as JobRx, RecvTimeoutError, Sender as JobTx};
use log::warn;

use super::{deliver, BacklogPolicy, Published};
use crate::conn::Sender;

/// Subscribers from which a publish is spread, by default: 2,048 (some
/// 10-25 ms of writes on one thread). Below it, the other cores are
/// better left to the application's other threads: measured with the load
/// generator on the same 2 cores, spreading a publish to 1,000 subscribers
/// made delivery no faster (the cores were already busy), to 10,000 it cut
/// the p99 by about a tenth (`bench-results/notes.md`).
pub(crate) const DEFAULT_PARALLEL_FROM: usize = 2048;

/// Most helper threads, whatever the number of cores.
pub(crate) const MAX_HELPERS: usize = 7;

/// What the chunks of one publish share.
struct Publish {
    members: Arc<[Sender]>,
    frame: Arc<[u8]>,
    max_backlog: usize,
    policy: BacklogPolicy,
    done: Latch,
}

impl Publish {
    fn deliver(&self, range: Range<usize>) -> Published {
        deliver_each(&self.members[range], &self.frame, self.max_backlog, self.policy)
    }
}

/// Counts chunks still running, adds up their reports, and wakes the
/// publisher when the last one is in.
struct Latch {
    state: Mutex<(usize, Published)>,
    all_in: Condvar,
}

impl Latch {
    fn new(chunks: usize) -> Latch {
        Latch { state: Mutex::new((chunks, Published::default())), all_in: Condvar::new() }
    }

    fn finish(&self, part: &Published) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 -= 1;
        add(&mut st.1, part);
        if st.0 == 0 {
            self.all_in.notify_one();
        }
    }

    fn wait(&self) -> Published {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.0 > 0 {
            st = self.all_in.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut st.1)
    }
}

fn add(total: &mut Published, part: &Published) {
    total.delivered += part.delivered;
    total.dropped += part.dropped;
    total.closed += part.closed;
    total.gone += part.gone;
}

/// A chunk handed to a helper; reports in even if it panics (it does not:
/// [`deliver`] has no panicking path), so a publisher is never left
/// waiting.
struct Job {
    publish: Arc<Publish>,
    range: Range<usize>,
}

impl Job {
    fn run(self) {
        let part = catch_unwind(AssertUnwindSafe(|| self.publish.deliver(self.range.clone())));
        let part = part.unwrap_or_else(|_| {
            warn!("a fan-out helper panicked delivering {} subscribers", self.range.len());
            Published::default()
        });
        self.publish.done.finish(&part);
    }
}

/// How long a helper waits for work before it ends: the listener's own
/// wait for idle threads, so a quiet process keeps no thread for this.
const HELPER_IDLE: Duration = crate::listener::IDLE_THREAD_WAIT;

/// The helper threads, started on demand, behind one queue of chunks.
struct Pool {
    /// Helpers alive. A helper ends only under this lock and with the
    /// queue empty, and chunks are queued under it: a queued chunk always
    /// has a helper to run it.
    live: Mutex<usize>,
    jobs: JobTx<Job>,
    rx: JobRx<Job>,
    /// Most helpers: one fewer than the cores, at most [`MAX_HELPERS`].
    most: usize,
}

/// The process's pool.
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, rx) = unbounded::<Job>();
        Pool { live: Mutex::new(0), jobs, rx, most: cores.saturating_sub(1).min(MAX_HELPERS) }
    })
}

impl Pool {
    fn live(&self) -> MutexGuard<'_, usize> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts helpers until `wanted` are alive (fewer if the system says
    /// no); returns how many are.
    fn start(&'static self, live: &mut usize, wanted: usize) -> usize {
        while *live < wanted.min(self.most) {
            let started =
                thread::Builder::new().name("syncws-fanout".into()).stack_size(256 << 10).spawn(move || self.help());
            match started {
                Ok(_) => *live += 1,
                Err(e) => {
                    warn!("cannot start a fan-out helper thread: {e}");
                    break;
                }
            }
        }
        *live
    }

    fn help(&self) {
        loop {
            match self.rx.recv_timeout(HELPER_IDLE) {
                Ok(job) => job.run(),
                Err(RecvTimeoutError::Timeout) => {
                    let mut live = self.live();
                    if self.rx.is_empty() {
                        *live -= 1;
                        return;
                    }
                }
                // Not while the pool lives: it holds a sender.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Where each of `chunks` contiguous chunks of `n` subscribers starts and
/// ends (sizes differ by at most one).
pub(crate) fn split(n: usize, chunks: usize) -> Vec<Range<usize>> {
    let chunks = chunks.clamp(1, n.max(1));
    let (base, extra) = (n / chunks, n % chunks);
    let mut start = 0;
    (0..chunks)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// How many chunks `n` subscribers are worth with `helpers` helpers, when
/// topics are spread from `parallel_from` subscribers on (chunks of at
/// least half that).
pub(crate) fn chunks_for(n: usize, helpers: usize, parallel_from: usize) -> usize {
    if n < parallel_from.max(2) {
        return 1;
    }
    (n / (parallel_from / 2).max(1)).clamp(1, helpers + 1)
}

/// Delivers `frame` to every one of `members`, spread over the pool when
/// there are enough of them; returns what happened to each.
pub(crate) fn deliver_all(
    members: Arc<[Sender]>,
    frame: &Arc<[u8]>,
    max_backlog: usize,
    policy: BacklogPolicy,
    parallel_from: usize,
) -> Published {
    let wanted = chunks_for(members.len(), MAX_HELPERS, parallel_from) - 1;
    // The pool is made only by the first publish that needs it.
    let Some(pool) = (wanted > 0).then(pool).filter(|p| p.most > 0) else {
        return deliver_each(&members, frame, max_backlog, policy);
    };
    let mut live = pool.live();
    let helpers = pool.start(&mut live, wanted);
    let chunks = chunks_for(members.len(), helpers, parallel_from);
    let mut ranges = split(members.len(), chunks).into_iter();
    let mine = ranges.next().unwrap_or_default();
    let publish =
        Arc::new(Publish { members, frame: Arc::clone(frame), max_backlog, policy, done: Latch::new(chunks) });
    for range in ranges {
        let job = Job { publish: Arc::clone(&publish), range };
        if let Err(returned) = pool.jobs.send(job) {
            // Not while the pool lives (it holds the receiver).
            returned.into_inner().run();
        }
    }
    drop(live);
    let part = publish.deliver(mine);
    publish.done.finish(&part);
    publish.done.wait()
}

/// Delivers `frame` to each of `members` in order, on this thread. Each
/// subscriber's state is hinted to the CPU ahead of its turn, in two steps
/// (its outbound state two turns ahead, the write side that state points
/// to one turn ahead), so that the loads run during the sends before it:
/// server CPU per delivery to 1,000 subscribers 5.2-5.8 -> 4.5-4.9 µs, p99
/// 6.7-8.4 -> 5.9-6.5 ms (bench-results/notes.md).
fn deliver_each(members: &[Sender], frame: &Arc<[u8]>, max_backlog: usize, policy: BacklogPolicy) -> Published {
    let mut report = Published::default();
    for (i, sender) in members.iter().enumerate() {
        if let Some(next) = members.get(i + 2) {
            next.prefetch_out();
        }
        if let Some(next) = members.get(i + 1) {
            next.prefetch_write();
        }
        deliver(sender, frame, max_backlog, policy, &mut report);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_subscriber_once() {
        for n in [0, 1, 2, 255, 256, 257, 1000, 10_001] {
            for chunks in 1..=8 {
                let ranges = split(n, chunks);
                assert!(!ranges.is_empty());
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges.last().unwrap().end, n, "n={n} chunks={chunks}");
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len().abs_diff(w[1].len()) <= 1);
                }
            }
        }
    }

    #[test]
    fn small_topics_stay_on_the_publishing_thread() {
        let from = DEFAULT_PARALLEL_FROM;
        assert_eq!(chunks_for(0, 3, from), 1);
        assert_eq!(chunks_for(from - 1, 3, from), 1);
        assert_eq!(chunks_for(from, 3, from), 2);
        assert_eq!(chunks_for(from + from / 2 - 1, 3, from), 2);
        assert_eq!(chunks_for(100 * from, 1, from), 2);
        assert_eq!(chunks_for(100 * from, 3, from), 4);
        assert_eq!(chunks_for(100 * from, 0, from), 1);
        // Never spread, and spread from the first subscribers on.
        assert_eq!(chunks_for(1 << 20, 3, usize::MAX), 1);
        assert_eq!(chunks_for(1, 3, 0), 1);
        assert_eq!(chunks_for(2, 3, 0), 2);
        assert_eq!(chunks_for(300, 1, 256), 2);
    }
}

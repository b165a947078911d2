//! The connection threads: each serves the connection it is handed, then
//! waits (bounded) for another; one that exits takes itself out of the
//! pool and joins the one that exited before it.

use std::collections::HashMap;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel as cb;

use super::Shared;

/// Most connection threads kept waiting for a next connection.
pub(crate) const IDLE_THREADS_MAX: usize = 64;
/// How long a connection thread waits for a next connection before exiting.
pub(super) const IDLE_THREAD_WAIT: Duration = Duration::from_secs(5);

/// A connection to serve, handed to a connection thread.
pub(super) type Job = Box<dyn RunJob>;

/// Work for a connection thread. Run in place from its box: a boxed
/// closure would be moved onto the thread's stack to be called, and the
/// stack pages a connection thread touches stay resident for its life.
pub(super) trait RunJob: Send {
    fn run(self: Box<Self>);
}

/// The connection threads.
pub(super) struct Pool {
    /// Threads waiting for a connection and not yet handed one.
    pub(super) idle: usize,
    /// Hands connections to waiting threads; `None` once shutting down.
    pub(super) jobs: Option<cb::Sender<Job>>,
    pub(super) rx: cb::Receiver<Job>,
    /// Running threads, each removed by the thread itself as it exits.
    pub(super) workers: HashMap<ThreadId, JoinHandle<()>>,
    /// The thread that exited last, joined by the next one to exit (or at
    /// shutdown): at most one exited thread is left unjoined.
    pub(super) exited: Option<JoinHandle<()>>,
}

/// A connection thread: serves the connection it is handed on `first`,
/// then waits (bounded) for another.
///
/// Always inlined into its one caller, the thread's closure: its frame
/// sits under every connection's, and one frame more there (about 150
/// bytes, when unrelated changes moved the compiler's inlining choices)
/// took an idle connection's stack into a third page, 4 KiB more per
/// connection (`tests/idle_memory.rs`).
#[inline(always)]
pub(super) fn worker(first: cb::Receiver<Job>, shared: &Shared) {
    let _exit = Exit(shared);
    // The accept loop sends the connection, or drops the sender, right
    // after starting the thread.
    let Ok(mut job) = first.recv() else { return };
    drop(first);
    let rx = shared.pool().rx.clone();
    loop {
        job.run();
        {
            let mut pool = shared.pool();
            if pool.jobs.is_none() || pool.idle >= IDLE_THREADS_MAX {
                return;
            }
            pool.idle += 1;
        }
        job = match rx.recv_timeout(IDLE_THREAD_WAIT) {
            Ok(next) => next,
            Err(_) => {
                // A connection may have been handed over just before the
                // lock was taken: take it rather than leave it unserved.
                let mut pool = shared.pool();
                match rx.try_recv() {
                    Ok(next) => next,
                    Err(_) => {
                        pool.idle -= 1;
                        return;
                    }
                }
            }
        };
    }
}

/// Run as a connection thread exits (or unwinds): takes its own handle out
/// of the pool, leaves it for the next thread to exit, and joins the one
/// left by the thread before. Each thread joins only threads that exited
/// before it, so the chain always ends.
struct Exit<'a>(&'a Shared);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        let earlier = {
            let mut pool = self.0.pool();
            match pool.workers.remove(&thread::current().id()) {
                Some(me) => pool.exited.replace(me),
                // Shutting down: `close_all` holds every handle and joins them.
                None => None,
            }
        };
        if let Some(earlier) = earlier {
            let _ = earlier.join();
        }
    }
}

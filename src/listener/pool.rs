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
pub(crate) const IDLE_THREAD_WAIT: Duration = Duration::from_secs(5);

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
/// connection (`tests/idle_memory.rs`). For the same reason the waiting
/// is out of line ([`first_job`], [`next_job`]): inlined, the channel
/// code's locals sat in this frame under every connection, and its size
/// moved with inlining choices made elsewhere (adding permessage-deflate's
/// channels of another message type grew it by 112 bytes, a third page
/// again).
#[inline(always)]
pub(super) fn worker(first: cb::Receiver<Job>, shared: &Shared) {
    let _exit = Exit(shared);
    let Some(mut job) = first_job(first, shared) else { return };
    let rx = shared.pool().rx.clone();
    loop {
        job.run();
        match next_job(&rx, shared) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// The thread's first connection: the accept loop sends it, or drops the
/// sender, right after starting the thread.
#[inline(never)]
fn first_job(first: cb::Receiver<Job>, _shared: &Shared) -> Option<Job> {
    first.recv().ok()
}

/// After a connection ended: waits (bounded) to be handed another, or
/// says the thread should exit (shutting down, enough idle threads, or
/// nothing came in time).
#[inline(never)]
fn next_job(rx: &cb::Receiver<Job>, shared: &Shared) -> Option<Job> {
    {
        let mut pool = shared.pool();
        if pool.jobs.is_none() || pool.idle >= IDLE_THREADS_MAX {
            return None;
        }
        pool.idle += 1;
    }
    match rx.recv_timeout(IDLE_THREAD_WAIT) {
        Ok(next) => Some(next),
        Err(_) => {
            // A connection may have been handed over just before the lock
            // was taken: take it rather than leave it unserved.
            let mut pool = shared.pool();
            match rx.try_recv() {
                Ok(next) => Some(next),
                Err(_) => {
                    pool.idle -= 1;
                    None
                }
            }
        }
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

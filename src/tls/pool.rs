//! The shared threads that run the CPU-heavy steps of TLS handshakes (see
//! `TlsReader::absorb_handshake`). A step is pure computation on records
//! already read: it never waits for the network, so a peer that stalls its
//! handshake holds no handshake thread. There are as many threads as
//! cores (at most 4), started on first use.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use crossbeam_channel as cb;

use super::session::{give_records, Shared};

/// Stack of a handshake thread: rustls and ring use a small part of it.
const STACK: usize = 256 << 10;

/// Handshake records read from the socket, `buf[start..end]`, for
/// `shared`'s session; `start` advances as the session takes them.
pub(super) struct Job {
    pub(super) shared: Arc<Shared>,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// The job's buffer and how far the session took it, and the outcome.
pub(super) type Done = (Vec<u8>, usize, io::Result<()>);
/// Where jobs go, each with the channel its answer comes back on.
type Queue = cb::Sender<(Job, cb::Sender<Done>)>;

/// Runs `job` on a handshake thread, or on this one if none can be
/// started.
pub(super) fn run(mut job: Job) -> Done {
    static POOL: OnceLock<Option<Queue>> = OnceLock::new();
    if let Some(pool) = POOL.get_or_init(start) {
        let (reply_tx, reply_rx) = cb::bounded(1);
        match pool.send((job, reply_tx)) {
            Ok(()) => {
                // Every job is answered (a panic included); only a
                // thread that died outright loses one.
                return reply_rx
                    .recv()
                    .unwrap_or_else(|_| (Vec::new(), 0, Err(io::Error::other("a TLS handshake thread died"))));
            }
            Err(cb::SendError((back, _))) => job = back,
        }
    }
    let result = absorb(&mut job);
    (job.buf, job.start, result)
}

fn start() -> Option<Queue> {
    let (tx, rx) = cb::unbounded::<(Job, cb::Sender<Done>)>();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let mut started = 0;
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("syncws-tls-{i}")).stack_size(STACK).spawn(move || {
            for (mut job, reply) in rx {
                let result = catch_unwind(AssertUnwindSafe(|| absorb(&mut job)))
                    .unwrap_or_else(|_| Err(io::Error::other("a TLS handshake step panicked")));
                let _ = reply.send((job.buf, job.start, result));
            }
        });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => log::warn!("cannot start a TLS handshake thread: {e}"),
        }
    }
    (started > 0).then_some(tx)
}

/// Gives the session the records held while it is handshaking.
fn absorb(job: &mut Job) -> io::Result<()> {
    let mut session = job.shared.session();
    while job.start < job.end && session.is_handshaking() {
        give_records(&mut session, &job.buf[..job.end], &mut job.start)?;
    }
    Ok(())
}

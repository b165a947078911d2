//! The rustls session both halves of a [`TlsStream`](super::TlsStream)
//! share, the records waiting to be written, and the steps that move
//! ciphertext in and out of the session (see "Locking" in the module docs
//! of [`tls`](super)).

use std::io::{self, IoSliceMut, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rustls::Connection;

use super::io_error;

/// Limit on the session's outgoing plaintext and TLS buffers (rustls'
/// default, set explicitly: `None` would make them unbounded).
pub(super) const SEND_BUFFER_LIMIT: usize = 64 << 10;
/// The records buffer is freed after a write that grew it past this.
const PENDING_KEEP: usize = 16 << 10;
/// Longest a [`Closer`](crate::transport::Closer) waits to send `close_notify`.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_millis(250);
/// The answer to a plaintext HTTP request on a TLS port.
const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 47\r\n\r\nthis port speaks TLS: use https:// or wss://.\r\n";

/// What both halves share.
pub(super) struct Shared {
    pub(super) socket: TcpStream,
    session: Mutex<Connection>,
    /// Held while TLS records are taken from the session and written to
    /// the socket: the order records are made in is the order they leave.
    pub(super) out: Mutex<Outgoing>,
    /// A plaintext request was answered in plaintext: no TLS alert may
    /// follow the answer.
    quiet: AtomicBool,
}

/// Records taken from the session and not yet written (all of them after a
/// write that failed part-way; they go out first next time).
pub(super) struct Outgoing {
    pub(super) pending: Vec<u8>,
    sent: usize,
    /// The socket's write timeout, as last set through the write half.
    pub(super) write_timeout: Option<Duration>,
}

/// Locks `m`. The state behind these locks stays consistent between
/// statements (a panic can at worst leave records unsent, which fails the
/// connection's next write), so a poisoned lock means nothing more.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Moves every record the session has to send into `out`.
pub(super) fn take_records(session: &mut Connection, out: &mut Vec<u8>) {
    while session.wants_write() {
        // Writing into a Vec cannot fail or stop short.
        match session.write_tls(out) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

impl Outgoing {
    /// Writes the pending records to the socket.
    pub(super) fn send(&mut self, socket: &TcpStream) -> io::Result<()> {
        let mut socket = socket;
        while self.sent < self.pending.len() {
            match socket.write(&self.pending[self.sent..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the peer stopped accepting data")),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.sent = 0;
        if self.pending.capacity() > PENDING_KEEP {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        Ok(())
    }
}

impl Shared {
    /// The state of a stream just split: nothing pending, no write timeout.
    pub(super) fn new(socket: TcpStream, session: Connection) -> Shared {
        Shared {
            socket,
            session: Mutex::new(session),
            out: Mutex::new(Outgoing { pending: Vec::new(), sent: 0, write_timeout: None }),
            quiet: AtomicBool::new(false),
        }
    }

    pub(super) fn session(&self) -> MutexGuard<'_, Connection> {
        lock(&self.session)
    }

    /// Writes the pending records and whatever else the session has to
    /// send, then lets go of `out`.
    pub(super) fn flush(&self, mut out: MutexGuard<'_, Outgoing>) -> io::Result<()> {
        loop {
            out.send(&self.socket)?;
            let mut session = self.session();
            if !session.wants_write() {
                // Released while the session is held: a thread that queues
                // records after this finds `out` free, or held by a thread
                // that will look at the session again before letting go.
                drop(out);
                return Ok(());
            }
            take_records(&mut session, &mut out.pending);
        }
    }

    /// Sends what the session has to send, unless a writer is busy: it will
    /// send it before letting go.
    pub(super) fn flush_if_idle(&self) -> io::Result<()> {
        match try_lock(&self.out) {
            Some(out) => self.flush(out),
            None => Ok(()),
        }
    }

    /// Sends `close_notify` if no write is in progress, waiting at most
    /// [`CLOSE_NOTIFY_WAIT`].
    pub(super) fn close_notify(&self) {
        if self.quiet.load(Ordering::Acquire) {
            return;
        }
        let Some(mut out) = try_lock(&self.out) else { return };
        {
            let mut session = self.session();
            if session.is_handshaking() {
                return;
            }
            session.send_close_notify();
            take_records(&mut session, &mut out.pending);
        }
        let normal = out.write_timeout;
        let wait = normal.map_or(CLOSE_NOTIFY_WAIT, |t| t.min(CLOSE_NOTIFY_WAIT));
        // Only holders of `out` write to the socket, so the timeout changed
        // here affects no other write.
        if self.socket.set_write_timeout(Some(wait)).is_ok() {
            let _ = out.send(&self.socket);
            let _ = self.socket.set_write_timeout(normal);
        }
    }

    /// Answers a plaintext HTTP request in plaintext.
    pub(super) fn refuse_plaintext(&self) {
        self.quiet.store(true, Ordering::Release);
        let mut out = lock(&self.out);
        out.pending.extend_from_slice(PLAINTEXT_REFUSAL);
        let _ = out.send(&self.socket);
    }
}

/// Gives the session what it takes of the ciphertext `held[*start..]`,
/// advancing `start`, and has it process the records.
pub(super) fn give_records(session: &mut Connection, held: &[u8], start: &mut usize) -> io::Result<()> {
    let mut rest = &held[*start..];
    match session.read_tls(&mut rest)? {
        // After close_notify the session takes nothing more.
        0 => *start = held.len(),
        n => *start += n,
    }
    session.process_new_packets().map_err(io_error)?;
    Ok(())
}

/// Takes plaintext out of the session into `bufs`: `Some(0)` at the end
/// of the stream, `None` when there is none yet.
///
/// The end of TCP without `close_notify` counts as the end of the stream:
/// everything syncws reads over TLS (HTTP heads and bodies with a length,
/// WebSocket frames) delimits itself, so a truncation is noticed above, and
/// many peers never send `close_notify`.
pub(super) fn take_plaintext(session: &mut Connection, bufs: &mut [IoSliceMut<'_>]) -> io::Result<Option<usize>> {
    let mut total = 0;
    for buf in bufs.iter_mut().filter(|b| !b.is_empty()) {
        match session.reader().read(buf) {
            Ok(0) => return Ok(Some(total)),
            Ok(n) => {
                total += n;
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(total)),
            Err(e) if total > 0 => {
                log::debug!("tls read after {total} bytes: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((total > 0).then_some(total))
}

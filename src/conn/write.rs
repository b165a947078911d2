//! The write side of a connection, shared by every thread that writes to it.
//!
//! Frames are encoded under a short-held lock and written with one system
//! call per batch: small frames are copied into one buffer, large payloads
//! go out with `write_vectored` straight from the message's own memory.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::message::OwnedMessage;
use crate::protocol::{MaskGen, OutFrame, Role};
use crate::transport::{is_timeout, Closer, WriteHalf};

/// Frames up to this size are copied into the batch buffer; larger ones are
/// written from their own buffer.
const COPY_LIMIT: usize = 16 << 10;
/// The batch buffer is freed back to this after a burst.
const BATCH_KEEP: usize = 64 << 10;

struct WriteState {
    io: Box<dyn WriteHalf>,
    /// Boxed: its 1 KiB key pool would otherwise sit in every server
    /// connection's state, and in the stack frames that build it.
    masks: Option<Box<MaskGen>>,
    batch: Vec<u8>,
    failed: bool,
    shared: Arc<Shared>,
}

/// What other threads may look at or do without waiting for a write that
/// is in progress.
struct Shared {
    closer: Closer,
    close_sent: Mutex<Option<Instant>>,
    /// Signalled when a Close frame is written.
    close_written: Condvar,
}

/// A cloneable handle on the write half of one connection.
#[derive(Clone)]
pub(crate) struct WriteSide {
    state: Arc<Mutex<WriteState>>,
    shared: Arc<Shared>,
}

impl WriteSide {
    pub(crate) fn new(mut io: Box<dyn WriteHalf>, role: Role, timeout: Duration) -> Result<Self> {
        io.set_write_timeout(Some(timeout))?;
        let masks = (role == Role::Client).then(|| Box::new(MaskGen::new()));
        let shared =
            Arc::new(Shared { closer: io.closer(), close_sent: Mutex::new(None), close_written: Condvar::new() });
        let state = WriteState { io, masks, batch: Vec::new(), failed: false, shared: Arc::clone(&shared) };
        Ok(WriteSide { state: Arc::new(Mutex::new(state)), shared })
    }

    fn lock(&self) -> MutexGuard<'_, WriteState> {
        lock(&self.state)
    }

    /// Encodes and writes `msgs` in order, in as few system calls as the
    /// sizes allow. Messages after a Close are refused with
    /// [`Error::AlreadyClosed`].
    pub(crate) fn send_all(&self, msgs: &mut dyn Iterator<Item = OwnedMessage>) -> Result<()> {
        let mut st = self.lock();
        let result = st.send_all(msgs);
        if let Err(e) = &result {
            if !matches!(e, Error::AlreadyClosed | Error::Send(_) | Error::Capacity { .. }) {
                st.failed = true;
                (self.shared.closer)(Shutdown::Both);
            }
        }
        result
    }

    /// Encodes and writes one message.
    pub(crate) fn send(&self, msg: OwnedMessage) -> Result<()> {
        self.send_all(&mut std::iter::once(msg))
    }

    /// When a Close frame was written, if one was. Never waits for a write
    /// in progress.
    pub(crate) fn close_sent(&self) -> Option<Instant> {
        *lock(&self.shared.close_sent)
    }

    /// Waits until a Close frame has been written or `deadline` passes;
    /// true if one was written.
    pub(crate) fn wait_close_sent(&self, deadline: Instant) -> bool {
        let mut sent = lock(&self.shared.close_sent);
        while sent.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            sent = match self.shared.close_written.wait_timeout(sent, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Shuts down the connection in the given direction(s), at once, even
    /// while another thread is blocked writing.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        (self.shared.closer)(how)
    }
}

/// Locks `m`. A panic while holding one of these locks leaves at most bytes
/// half-written, after which the connection is marked failed, so a poisoned
/// lock carries no further meaning.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WriteState {
    fn send_all(&mut self, msgs: &mut dyn Iterator<Item = OwnedMessage>) -> Result<()> {
        if self.failed {
            return Err(Error::AlreadyClosed);
        }
        for msg in msgs {
            if lock(&self.shared.close_sent).is_some() {
                self.flush()?;
                return Err(Error::AlreadyClosed);
            }
            let key = self.masks.as_mut().map(|m| m.next_key());
            let frame = OutFrame::new(msg, key)?;
            if frame.is_close() {
                *lock(&self.shared.close_sent) = Some(Instant::now());
                self.shared.close_written.notify_all();
            }
            if frame.wire_len() <= COPY_LIMIT {
                frame.write_to(&mut self.batch);
                if self.batch.len() >= BATCH_KEEP {
                    self.flush()?;
                }
            } else {
                let batch = std::mem::take(&mut self.batch);
                let mut parts = [IoSlice::new(&batch), IoSlice::new(frame.header()), IoSlice::new(frame.payload())];
                let result = write_all_vectored(&mut *self.io, &mut parts);
                self.batch = batch;
                self.batch.clear();
                result?;
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let result = write_all_vectored(&mut *self.io, &mut [IoSlice::new(&self.batch)]);
        self.batch.clear();
        if self.batch.capacity() > BATCH_KEEP {
            self.batch = Vec::new();
        }
        result
    }
}

fn write_all_vectored(io: &mut dyn WriteHalf, mut parts: &mut [IoSlice<'_>]) -> Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match io.write_vectored(parts) {
            Ok(0) => {
                return Err(Error::Io(io::Error::new(io::ErrorKind::WriteZero, "the peer stopped accepting data")))
            }
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(Error::Timeout { phase: "write" }),
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(())
}

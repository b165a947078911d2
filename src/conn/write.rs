//! The write side of a connection, shared by every thread that writes to it.
//!
//! Frames are encoded under a short-held lock and written with one system
//! call per batch: small frames are copied into one buffer, large payloads
//! go out with `write_vectored` straight from the message's own memory.
//!
//! [`WriteSide::try_send_now`] is the cross-thread fast path: a thread that
//! is not the connection's own writes a small frame itself with a
//! non-blocking write when nothing is queued or being written. Bytes it
//! could not write stay at the front of the batch buffer, and every later
//! write, whoever makes it, sends them first: frames never interleave.
//!
//! What is written is an [`Item`]: a message, encoded here, or a frame
//! encoded once elsewhere and shared ([`Item::Frame`]: a publish to many
//! connections). A shared frame is a server's, unmasked, so its bytes are
//! valid on every server connection as they are; they are written from
//! the shared buffer itself, or copied into the batch buffer when small,
//! never copied into a buffer of their own.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use crate::conn::state::{Event, Life, State};
use crate::error::{Error, Phase, Result};
use crate::handshake::extensions::Negotiated;
use crate::message::OwnedMessage;
#[cfg(feature = "deflate")]
use crate::protocol::deflate::Compressor;
use crate::protocol::{append_data_frame, spare, MaskGen, OutFrame, Role, MAX_HEADER_LEN};
#[cfg(feature = "deflate")]
use crate::protocol::{OpCode, RSV1};
use crate::stats::Counters;
use crate::transport::{Closer, Released, WriteHalf};

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
    /// Encoded frames not yet written. Between calls it is empty, or holds
    /// the unwritten end of a frame [`WriteSide::try_send_now`] began, or
    /// the frames the connection's own thread encoded
    /// ([`WriteSide::frame_now`]) and writes before it next waits.
    batch: Vec<u8>,
    /// The transport has no non-blocking write (`try_write` answered
    /// `Unsupported`): cross-thread sends always go to the writer thread.
    no_try_write: bool,
    /// permessage-deflate's sending side, once negotiated. Under the write
    /// lock, as the frames it makes must be written in the order it made
    /// them (with context takeover, each refers to those before).
    #[cfg(feature = "deflate")]
    deflate: Option<Box<Compressor>>,
    shared: Arc<Shared>,
}

/// What other threads may look at or do without waiting for a write that
/// is in progress.
struct Shared {
    /// `None` once the connection ended and let its socket go.
    closer: Mutex<Option<Closer>>,
    /// The connection's state: our Close is stepped in under the write
    /// lock, so no frame follows it; every message checks it without a
    /// lock.
    life: Life,
    /// The counters the connection adds to: messages and bytes written per
    /// batch, its close code once it ends.
    metrics: Arc<Counters>,
    /// The code of the Close that began the close handshake, ours or the
    /// peer's ([`NO_CODE`] for one without a code), or [`NO_CLOSE_YET`].
    close_code: AtomicU32,
    /// The connection's end was counted.
    counted: AtomicBool,
    /// A client's connection: its frames are masked, so a shared frame
    /// ([`Item::Frame`]) may not be written on it.
    client: bool,
}

/// [`Shared::close_code`] before either side's Close.
const NO_CLOSE_YET: u32 = 0;
/// [`Shared::close_code`] for a Close without a code: 1005, "no status
/// received" (RFC 6455 §7.1.5), a code never sent on the wire.
const NO_CODE: u32 = 1005;

/// One thing to write: a message, or a frame encoded once and shared by
/// many connections' queues.
pub(crate) enum Item {
    /// A message, encoded when written (compressed, if the connection
    /// negotiated permessage-deflate and it is over the threshold).
    Msg(OwnedMessage),
    /// A message, encoded when written and never compressed
    /// (`send_uncompressed`). Without permessage-deflate, the same as
    /// `Msg`.
    Plain(OwnedMessage),
    /// A whole, final, unmasked Text or Binary frame (header and
    /// payload), as a server sends it. With permessage-deflate it is an
    /// uncompressed frame (RSV1 clear), which the extension allows on any
    /// connection that negotiated it.
    Frame(Arc<[u8]>),
}

impl Item {
    /// Bytes it counts for in the connection's queue budget: the payload
    /// of a message, the whole frame of a shared one.
    pub(crate) fn len(&self) -> usize {
        match self {
            Item::Msg(msg) | Item::Plain(msg) => msg.len(),
            Item::Frame(frame) => frame.len(),
        }
    }

    /// Bytes it counts for in the process-wide memory budget: a message's
    /// payload, which it owns; none for a shared frame, whose memory is
    /// one buffer however many queues hold it.
    pub(crate) fn owned_len(&self) -> usize {
        match self {
            Item::Msg(msg) | Item::Plain(msg) => msg.len(),
            Item::Frame(_) => 0,
        }
    }

    pub(crate) fn is_close(&self) -> bool {
        matches!(self, Item::Msg(OwnedMessage::Close(_)) | Item::Plain(OwnedMessage::Close(_)))
    }

    /// A Text or Binary message, or a shared frame, small enough to be
    /// copied into the batch ([`COPY_LIMIT`]).
    #[inline]
    fn is_small(&self) -> bool {
        match self {
            Item::Msg(msg) | Item::Plain(msg) => is_small_data(msg),
            Item::Frame(frame) => frame.len() <= COPY_LIMIT,
        }
    }
}

/// What [`WriteSide::try_send_now`] did with a message.
pub(crate) enum Now {
    /// The whole frame was written.
    Sent,
    /// Part of the frame was written; the rest waits in the batch buffer
    /// and must be flushed by a thread that may block
    /// ([`WriteSide::flush_pending`]).
    Pending,
    /// Nothing was written; the item is handed back to be queued.
    Queue(Item),
}

/// A cloneable handle on the write half of one connection.
#[derive(Clone)]
pub(crate) struct WriteSide {
    state: Arc<Mutex<WriteState>>,
    shared: Arc<Shared>,
}

impl WriteSide {
    /// A write side counted in the process-wide [`Counters`], with no
    /// extension.
    #[cfg(test)]
    pub(crate) fn new(io: Box<dyn WriteHalf>, role: Role, timeout: Duration) -> Result<Self> {
        WriteSide::counted(io, role, timeout, &Negotiated::default(), Arc::clone(Counters::global()))
    }

    /// The write side of `role`'s connection over `io`, compressing as
    /// `negotiated` says; its messages and bytes, and close code at the
    /// end, count in `metrics`.
    pub(crate) fn counted(
        mut io: Box<dyn WriteHalf>,
        role: Role,
        timeout: Duration,
        negotiated: &Negotiated,
        metrics: Arc<Counters>,
    ) -> Result<Self> {
        io.set_write_timeout(Some(timeout))?;
        let masks = (role == Role::Client).then(|| Box::new(MaskGen::new()));
        let shared = Arc::new(Shared {
            closer: Mutex::new(Some(io.closer())),
            life: Life::new(),
            metrics,
            close_code: AtomicU32::new(NO_CLOSE_YET),
            counted: AtomicBool::new(false),
            client: role == Role::Client,
        });
        #[cfg(feature = "deflate")]
        let deflate =
            negotiated.deflate.as_ref().map(|(params, config)| Box::new(Compressor::new(role, params, config)));
        #[cfg(not(feature = "deflate"))]
        let _ = negotiated;
        let state = WriteState {
            io,
            masks,
            batch: Vec::new(),
            no_try_write: false,
            #[cfg(feature = "deflate")]
            deflate,
            shared: Arc::clone(&shared),
        };
        Ok(WriteSide { state: Arc::new(Mutex::new(state)), shared })
    }

    /// Asks the CPU to start loading the write state and the shared
    /// state (see [`Sender::prefetch_out`](crate::conn::Sender)).
    pub(crate) fn prefetch(&self) {
        crate::conn::prefetch::object(Arc::as_ptr(&self.state));
        crate::conn::prefetch::object(Arc::as_ptr(&self.shared));
    }

    fn lock(&self) -> MutexGuard<'_, WriteState> {
        lock(&self.state)
    }

    /// The connection's state, shared with everything that uses it.
    pub(crate) fn life(&self) -> &Life {
        &self.shared.life
    }

    /// The counters the connection adds to.
    pub(crate) fn metrics(&self) -> &Counters {
        &self.shared.metrics
    }

    /// A client's connection (its frames are masked).
    pub(crate) fn is_client(&self) -> bool {
        self.shared.client
    }

    /// The peer's Close arrived, with `code`: if no Close came before it,
    /// the connection counts under this code when it ends.
    pub(crate) fn peer_close_code(&self, code: Option<u16>) {
        self.shared.note_close(code);
    }

    /// Counts the connection's end, under its close code; once, whether
    /// [`end`](Self::end) or the drop of an unfinished connection comes
    /// first.
    pub(crate) fn count_end(&self) {
        if self.shared.counted.swap(true, Ordering::Relaxed) {
            return;
        }
        let code = match self.shared.close_code.load(Ordering::Relaxed) {
            NO_CLOSE_YET => None,
            code => u16::try_from(code).ok(),
        };
        self.shared.metrics.websocket_closed(code);
        match code {
            Some(code) => log::debug!("websocket closed: {code}"),
            None => log::debug!("websocket closed without a close frame"),
        }
    }

    /// Encodes and writes `msgs` in order, in as few system calls as the
    /// sizes allow. Messages after a Close, or after a failure, are refused
    /// with [`Error::AlreadyClosed`].
    pub(crate) fn send_all(&self, msgs: &mut dyn Iterator<Item = Item>) -> Result<()> {
        self.send_framed(0, msgs)
    }

    /// [`send_all`](Self::send_all) after `framed` messages that
    /// [`frame_now`](Self::frame_now) put in the batch: they are written
    /// first, and counted with the rest.
    pub(crate) fn send_framed(&self, framed: usize, msgs: &mut dyn Iterator<Item = Item>) -> Result<()> {
        let mut st = self.lock();
        let result = st.send_all(framed, msgs);
        self.check(&mut st, result)
    }

    /// Encodes a small data message (or a small shared frame) sent on the
    /// connection's own thread into the batch at once, without writing
    /// it: [`send_all`](Self::send_all) writes it with what follows, before
    /// that thread next waits for the network. The message's memory is
    /// freed here, so the next message read reuses it while it is still
    /// in the cache. Anything else comes back as `Err(item)` for the
    /// caller's own batch; so does every message once the batch holds
    /// [`BATCH_KEEP`] bytes, which the caller then writes.
    ///
    /// Only when the state allows a message; otherwise the send's error.
    #[inline]
    pub(crate) fn frame_now(&self, item: Item) -> Result<std::result::Result<(), Item>> {
        if !item.is_small() {
            return Ok(Err(item));
        }
        let mut st = self.lock();
        if !self.shared.life.may_send() {
            return Err(self.shared.life.get().refusal());
        }
        if st.batch.len() >= BATCH_KEEP {
            return Ok(Err(item));
        }
        let result = st.append(item);
        self.check(&mut st, result).map(Ok)
    }

    /// Writes what [`try_send_now`](Self::try_send_now) left unwritten, if
    /// anything; blocks up to the write timeout.
    pub(crate) fn flush_pending(&self) -> Result<()> {
        self.send_all(&mut std::iter::empty())
    }

    /// After a failed write (not a refused message), marks the connection
    /// failed and shuts it down.
    fn check(&self, st: &mut WriteState, result: Result<()>) -> Result<()> {
        match result {
            Err(e) if !matches!(e, Error::AlreadyClosed | Error::Send(_) | Error::Capacity { .. }) => {
                Err(self.fail(st, e))
            }
            other => other,
        }
    }

    /// Marks the connection failed (the caller holds the write lock) and
    /// shuts it down.
    fn fail(&self, _locked: &mut WriteState, err: Error) -> Error {
        self.shared.life.apply(Event::Fail);
        self.shutdown(Shutdown::Both);
        err
    }

    /// Ends the connection for an error: writes `close` first if a message
    /// may still be sent, then marks the connection failed. Both under the
    /// write lock, so no other thread's frame is being committed meanwhile
    /// or follows.
    pub(crate) fn fail_with(&self, close: Option<OwnedMessage>) {
        let mut st = self.lock();
        if let Some(close) = close.filter(|_| self.shared.life.may_send()) {
            let _ = st.send_all(0, &mut std::iter::once(Item::Msg(close)));
        }
        self.shared.life.apply(Event::Fail);
    }

    /// Marks the connection ended, under the write lock (see
    /// [`fail_with`](Self::fail_with)), and lets the socket go: the
    /// application may keep [`Sender`](crate::Sender)s (and with them this
    /// side) long after, and they must not keep the descriptor open.
    pub(crate) fn end(&self) -> State {
        let mut st = self.lock();
        let state = self.shared.life.apply(Event::End);
        st.io = Box::new(Released);
        st.batch = Vec::new();
        lock(&self.shared.closer).take();
        drop(st);
        self.count_end();
        state
    }

    /// The fast path for a send from another thread than the connection's
    /// own: writes `msg` at once with one non-blocking write
    /// ([`WriteHalf::try_write`]), never waiting for the lock, the socket or
    /// a slow peer.
    ///
    /// Only a Text or Binary message small enough to be copied
    /// ([`COPY_LIMIT`]) is tried, and only when no other thread holds the
    /// write side, no earlier frame is partly written, no Close was sent,
    /// and `queued` (messages queued for the writer thread and not yet
    /// written, read under the lock) is 0, so the frame cannot overtake
    /// anything sent before it. Otherwise, or when the socket takes no
    /// byte, the message comes back as [`Now::Queue`]. A Close always
    /// does: its writer thread also keeps the close timeout.
    pub(crate) fn try_send_now(&self, item: Item, queued: &AtomicUsize) -> Result<Now> {
        let mut st = match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Now::Queue(item)),
        };
        if !item.is_small()
            || st.no_try_write
            || !st.batch.is_empty()
            || queued.load(Ordering::Acquire) != 0
            || !self.shared.life.may_send()
        {
            return Ok(Now::Queue(item));
        }
        // A message compressed here is never handed back: the compressor
        // has taken it into its context, so its frame stays in the batch
        // buffer, and the writer thread writes it (`Now::Pending`).
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut compressed = false;
        let written = match &item {
            Item::Msg(msg) | Item::Plain(msg) => {
                let key = st.masks.as_mut().map(|m| m.next_key());
                #[cfg(feature = "deflate")]
                match st.compressed_frame(&item, key) {
                    Ok(Some(frame)) => {
                        frame.write_to(&mut st.batch);
                        compressed = true;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(self.fail(&mut st, e)),
                }
                if !compressed {
                    append_data_frame(msg, key, &mut st.batch);
                }
                let WriteState { io, batch, no_try_write, .. } = &mut *st;
                try_write(&mut **io, batch, no_try_write).inspect(|&n| {
                    batch.drain(..n);
                })
            }
            // Written from the shared buffer; only an unwritten end is
            // copied, into the batch buffer, for the next write.
            Item::Frame(frame) => {
                let WriteState { io, batch, no_try_write, .. } = &mut *st;
                try_write(&mut **io, frame, no_try_write).inspect(|&n| {
                    if n > 0 {
                        batch.extend_from_slice(&frame[n..]);
                    }
                })
            }
        };
        match written {
            Ok(0) if compressed => {
                // Committed: the writer thread writes it (its bytes are
                // counted then).
                self.shared.metrics.messages_out(1);
                Ok(Now::Pending)
            }
            Ok(0) => {
                st.batch.clear();
                Ok(Now::Queue(item))
            }
            Ok(n) => {
                self.shared.metrics.messages_out(1);
                self.shared.metrics.bytes_out(n);
                Ok(if st.batch.is_empty() { Now::Sent } else { Now::Pending })
            }
            Err(e) => {
                st.batch.clear();
                Err(self.fail(&mut st, e))
            }
        }
    }

    /// Encodes and writes one message.
    pub(crate) fn send(&self, msg: OwnedMessage) -> Result<()> {
        self.send_all(&mut std::iter::once(Item::Msg(msg)))
    }

    /// Encodes and writes one message, never compressed.
    pub(crate) fn send_uncompressed(&self, msg: OwnedMessage) -> Result<()> {
        self.send_all(&mut std::iter::once(Item::Plain(msg)))
    }

    /// Shuts down the connection in the given direction(s), at once, even
    /// while another thread is blocked writing.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        // Cloned out of the lock: a shutdown never waits for another.
        let closer = lock(&self.shared.closer).clone();
        if let Some(close) = closer {
            close(how);
        }
    }
}

impl Shared {
    /// Keeps `code` as the connection's close code if no Close came
    /// before.
    fn note_close(&self, code: Option<u16>) {
        let code = code.map_or(NO_CODE, u32::from);
        let _ = self.close_code.compare_exchange(NO_CLOSE_YET, code, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Locks `m`. A panic while holding one of these locks leaves at most bytes
/// half-written, after which the connection is marked failed, so a poisoned
/// lock carries no further meaning.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One non-blocking write of `buf`: the bytes written, 0 if the socket
/// took none (or the transport has no such write: `no_try_write` is then
/// set).
fn try_write(io: &mut dyn WriteHalf, buf: &[u8], no_try_write: &mut bool) -> Result<usize> {
    loop {
        match io.try_write(buf) {
            Ok(n) => return Ok(n.min(buf.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                *no_try_write = true;
                return Ok(0);
            }
            Err(e) => return Err(Error::from(e)),
        }
    }
}

impl WriteState {
    /// The frame of `item` compressed, if the connection compresses and
    /// this message is to be (a data message over the threshold, not sent
    /// uncompressed, that compresses to something smaller); `None` to send
    /// it as it is.
    #[cfg(feature = "deflate")]
    #[inline]
    fn compressed_frame(&mut self, item: &Item, key: Option<[u8; 4]>) -> Result<Option<OutFrame>> {
        match (self.deflate.as_deref_mut(), item) {
            (Some(c), Item::Msg(msg)) if msg.is_data() && c.wants(msg.len()) => compress_frame(c, msg, key),
            _ => Ok(None),
        }
    }

    /// Copies `frame` into the batch, or writes it (after the batch) from
    /// its own memory if it is large.
    #[inline]
    fn write_frame(&mut self, frame: &OutFrame) -> Result<()> {
        if frame.wire_len() <= COPY_LIMIT {
            frame.write_to(&mut self.batch);
            self.flush_if_full()
        } else {
            self.write_large(frame)
        }
    }

    /// Encodes a small data message or shared frame into the batch
    /// ([`WriteSide::frame_now`]).
    #[inline]
    fn append(&mut self, item: Item) -> Result<()> {
        let key = self.masks.as_mut().map(|m| m.next_key());
        #[cfg(feature = "deflate")]
        if let Some(frame) = self.compressed_frame(&item, key)? {
            return self.write_frame(&frame);
        }
        match item {
            // `frame_now` takes data messages only.
            Item::Msg(msg) | Item::Plain(msg) => {
                append_data_frame(&msg, key, &mut self.batch);
                spare::give_message(msg);
            }
            Item::Frame(frame) => self.batch.extend_from_slice(&frame),
        }
        Ok(())
    }

    fn send_all(&mut self, framed: usize, msgs: &mut dyn Iterator<Item = Item>) -> Result<()> {
        if self.shared.life.is_over() {
            return Err(Error::AlreadyClosed);
        }
        // Messages committed to the batch or written; counted once, when
        // the batch is written.
        let mut count = framed;
        for item in msgs {
            if !self.shared.life.may_send() {
                self.flush()?;
                self.count_messages(count);
                return Err(Error::AlreadyClosed);
            }
            if let Item::Frame(frame) = &item {
                count += 1;
                self.write_shared(frame)?;
                continue;
            }
            let key = self.masks.as_mut().map(|m| m.next_key());
            count += 1;
            #[cfg(feature = "deflate")]
            if let Some(frame) = self.compressed_frame(&item, key)? {
                self.write_frame(&frame)?;
                continue;
            }
            let msg = match item {
                Item::Msg(msg) | Item::Plain(msg) => msg,
                Item::Frame(_) => continue,
            };
            if is_small_data(&msg) {
                // Most messages: header and payload copied into the batch
                // at once, the message then freed.
                append_data_frame(&msg, key, &mut self.batch);
                self.flush_if_full()?;
                continue;
            }
            let close = match &msg {
                OwnedMessage::Close(data) => Some(data.as_ref().map(|c| c.status_code)),
                _ => None,
            };
            let frame = OutFrame::new(msg, key)?;
            if let Some(code) = close {
                // Under the write lock, as every transition that stops
                // sending is: no frame can follow it.
                self.shared.note_close(code);
                self.shared.life.apply(Event::CloseWritten);
            }
            self.write_frame(&frame)?;
        }
        self.flush()?;
        self.count_messages(count);
        Ok(())
    }

    fn count_messages(&self, count: usize) {
        if count > 0 {
            self.shared.metrics.messages_out(count);
        }
    }

    /// Writes the batch once it has grown to [`BATCH_KEEP`].
    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.len() >= BATCH_KEEP {
            return self.flush();
        }
        Ok(())
    }

    /// Adds a shared frame: copied into the batch when small, else written
    /// from the shared buffer after the batch. Out of line, off the
    /// path of the connection's own messages.
    #[inline(never)]
    fn write_shared(&mut self, frame: &[u8]) -> Result<()> {
        if frame.len() <= COPY_LIMIT {
            self.batch.extend_from_slice(frame);
            return self.flush_if_full();
        }
        let batch = std::mem::take(&mut self.batch);
        let mut parts = [IoSlice::new(&batch), IoSlice::new(frame)];
        let result = write_all_vectored(&mut *self.io, &mut parts);
        if result.is_ok() {
            self.shared.metrics.bytes_out(batch.len() + frame.len());
        }
        self.batch = batch;
        self.batch.clear();
        result
    }

    /// Writes the batch, then `frame` from its own memory (a frame too
    /// large to copy); out of line, off the small messages' path.
    #[inline(never)]
    fn write_large(&mut self, frame: &OutFrame) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let mut parts = [IoSlice::new(&batch), IoSlice::new(frame.header()), IoSlice::new(frame.payload())];
        let result = write_all_vectored(&mut *self.io, &mut parts);
        if result.is_ok() {
            self.shared.metrics.bytes_out(batch.len() + frame.wire_len());
        }
        self.batch = batch;
        self.batch.clear();
        result
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let result = write_all(&mut *self.io, &self.batch);
        if result.is_ok() {
            self.shared.metrics.bytes_out(self.batch.len());
        }
        self.batch.clear();
        if self.batch.capacity() > BATCH_KEEP {
            self.batch = Vec::new();
        }
        result
    }
}

/// The frame of data message `msg` compressed by `c`, masked with `key`;
/// `None` if it is better sent as it is. Out of line: the uncompressed
/// path does not carry it.
#[cfg(feature = "deflate")]
#[inline(never)]
fn compress_frame(c: &mut Compressor, msg: &OwnedMessage, key: Option<[u8; 4]>) -> Result<Option<OutFrame>> {
    let (opcode, payload) = match msg {
        OwnedMessage::Text(s) => (OpCode::Text, s.as_bytes()),
        OwnedMessage::Binary(b) => (OpCode::Binary, b.as_slice()),
        _ => return Ok(None),
    };
    Ok(c.compress(payload)?.map(|z| OutFrame::from_payload(opcode, RSV1, z, key)))
}

/// A Text or Binary message whose frame is copied into the batch buffer
/// rather than written from the message's own memory.
fn is_small_data(msg: &OwnedMessage) -> bool {
    msg.is_data() && msg.len() <= COPY_LIMIT - MAX_HEADER_LEN
}

/// Writes all of `buf` (the batch), however many system calls it takes.
fn write_all(io: &mut dyn WriteHalf, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        if let Some(n) = progress(io.write(buf))? {
            buf = &buf[n.min(buf.len())..];
        }
    }
    Ok(())
}

/// Writes all of `parts` (a large frame, after the batch) with vectored
/// writes.
fn write_all_vectored(io: &mut dyn WriteHalf, mut parts: &mut [IoSlice<'_>]) -> Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        if let Some(n) = progress(io.write_vectored(parts))? {
            IoSlice::advance_slices(&mut parts, n);
        }
    }
    Ok(())
}

/// What a write system call did: `Some(n)` bytes written, `None` to try
/// again (interrupted), or the error that ends the connection.
fn progress(written: io::Result<usize>) -> Result<Option<usize>> {
    match written {
        Ok(0) => Err(Error::Io(io::Error::new(io::ErrorKind::WriteZero, "the peer stopped accepting data"))),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(Error::from_io(e, Phase::Write)),
    }
}

/// A transport for unit tests: blocking writes land in a shared buffer;
/// `try_write` follows a plan, one entry per call, cycled: `None` takes
/// everything, `Some(n)` at most `n` bytes (`Some(0)`: would block). A
/// mock made with [`Mock::without_try_write`] answers `Unsupported`, as a
/// transport that keeps the trait's default does.
#[cfg(test)]
pub(crate) mod mock {
    use std::io::{self, Write};
    use std::net::Shutdown;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::config::Config;
    use crate::message::OwnedMessage;
    use crate::protocol::{MessageDecoder, Role};
    use crate::transport::{Closer, WriteHalf};

    pub(crate) struct Mock {
        pub(crate) out: Arc<Mutex<Vec<u8>>>,
        pub(crate) plan: Vec<Option<usize>>,
        calls: usize,
        try_write: bool,
    }

    impl Mock {
        pub(crate) fn new(plan: Vec<Option<usize>>) -> (Mock, Arc<Mutex<Vec<u8>>>) {
            let out = Arc::new(Mutex::new(Vec::new()));
            (Mock { out: Arc::clone(&out), plan, calls: 0, try_write: true }, out)
        }

        pub(crate) fn without_try_write() -> (Mock, Arc<Mutex<Vec<u8>>>) {
            let (mut mock, out) = Mock::new(Vec::new());
            mock.try_write = false;
            (mock, out)
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl WriteHalf for Mock {
        fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn closer(&self) -> Closer {
            Arc::new(|_: Shutdown| {})
        }
        fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.try_write {
                return Err(io::ErrorKind::Unsupported.into());
            }
            let step = self.plan.get(self.calls % self.plan.len().max(1)).copied().flatten();
            self.calls += 1;
            match step.map_or(buf.len(), |n| n.min(buf.len())) {
                0 => Err(io::ErrorKind::WouldBlock.into()),
                n => self.write(&buf[..n]),
            }
        }
    }

    /// The messages in `wire`, decoded as a client reads a server's frames.
    pub(crate) fn decode(wire: &[u8]) -> Vec<OwnedMessage> {
        let mut decoder = MessageDecoder::new(Role::Client, &Config::default());
        let mut rest = wire.to_vec();
        let mut at = 0;
        let mut msgs = Vec::new();
        while at < rest.len() {
            let (used, msg) = decoder.feed(&mut rest[at..]).expect("well-formed frames");
            at += used;
            match msg {
                Some(m) => msgs.push(m),
                None => assert!(used > 0, "a frame is cut off"),
            }
        }
        msgs
    }
}

#[cfg(test)]
mod tests {
    use super::mock::{decode, Mock};
    use super::*;

    fn text(s: &str) -> OwnedMessage {
        OwnedMessage::Text(s.to_owned())
    }

    fn side(plan: Vec<Option<usize>>) -> (WriteSide, Arc<Mutex<Vec<u8>>>) {
        let (mock, out) = Mock::new(plan);
        (WriteSide::new(Box::new(mock), Role::Server, Duration::from_secs(5)).unwrap(), out)
    }

    #[test]
    fn fast_path_writes_a_whole_frame_or_hands_the_message_back() {
        let none = AtomicUsize::new(0);
        let (ws, out) = side(vec![None, Some(0)]);
        assert!(matches!(ws.try_send_now(Item::Msg(text("a")), &none), Ok(Now::Sent)));
        // The socket takes nothing: the message comes back untouched.
        match ws.try_send_now(Item::Msg(OwnedMessage::Binary(vec![1, 2, 3])), &none) {
            Ok(Now::Queue(Item::Msg(m))) => assert_eq!(m, OwnedMessage::Binary(vec![1, 2, 3])),
            _ => panic!("expected Queue"),
        }
        // Not tried: something is queued, a control frame, a large message.
        assert!(matches!(ws.try_send_now(Item::Msg(text("b")), &AtomicUsize::new(1)), Ok(Now::Queue(_))));
        assert!(matches!(ws.try_send_now(Item::Msg(OwnedMessage::Ping(vec![])), &none), Ok(Now::Queue(_))));
        assert!(matches!(ws.try_send_now(Item::Msg(OwnedMessage::Close(None)), &none), Ok(Now::Queue(_))));
        let big = OwnedMessage::Binary(vec![0; COPY_LIMIT]);
        assert!(matches!(ws.try_send_now(Item::Msg(big), &none), Ok(Now::Queue(_))));
        assert_eq!(decode(&out.lock().unwrap()), [text("a")]);
    }

    #[test]
    fn a_transport_without_try_write_keeps_the_queue_and_is_not_asked_again() {
        let (mock, out) = Mock::without_try_write();
        let ws = WriteSide::new(Box::new(mock), Role::Server, Duration::from_secs(5)).unwrap();
        let none = AtomicUsize::new(0);
        for i in 0..3 {
            match ws.try_send_now(Item::Msg(text(&format!("m{i}"))), &none) {
                Ok(Now::Queue(Item::Msg(m))) => assert_eq!(m, text(&format!("m{i}"))),
                _ => panic!("expected the message back for the queue"),
            }
            assert!(lock(&ws.state).no_try_write, "Unsupported is remembered");
        }
        assert!(out.lock().unwrap().is_empty());
        ws.send(text("queued")).unwrap();
        assert_eq!(decode(&out.lock().unwrap()), [text("queued")]);
    }

    #[test]
    fn a_partly_written_frame_is_finished_before_anything_else() {
        let none = AtomicUsize::new(0);
        let (ws, out) = side(vec![Some(3), None]);
        assert!(matches!(ws.try_send_now(Item::Msg(text("hello world")), &none), Ok(Now::Pending)));
        assert_eq!(out.lock().unwrap().len(), 3);
        // Nothing may be written by the fast path while the rest waits.
        assert!(matches!(ws.try_send_now(Item::Msg(text("next")), &none), Ok(Now::Queue(_))));
        ws.send_all(&mut [text("next"), OwnedMessage::Close(None)].into_iter().map(Item::Msg)).unwrap();
        // Nothing after the Close, by either path.
        assert!(matches!(ws.try_send_now(Item::Msg(text("late")), &none), Ok(Now::Queue(_))));
        assert!(matches!(ws.send(text("late")), Err(Error::AlreadyClosed)));
        let msgs = decode(&out.lock().unwrap());
        assert_eq!(msgs, [text("hello world"), text("next"), OwnedMessage::Close(None)]);
    }

    #[test]
    fn flush_pending_writes_the_rest_of_a_frame() {
        let none = AtomicUsize::new(0);
        let (ws, out) = side(vec![Some(1), Some(4)]);
        assert!(matches!(ws.try_send_now(Item::Msg(text("abcdef")), &none), Ok(Now::Pending)));
        ws.flush_pending().unwrap();
        ws.flush_pending().unwrap();
        // Partial again, and finished by the owner's next batch.
        assert!(matches!(ws.try_send_now(Item::Msg(text("ghijkl")), &none), Ok(Now::Pending)));
        ws.send(text("own")).unwrap();
        assert_eq!(decode(&out.lock().unwrap()), [text("abcdef"), text("ghijkl"), text("own")]);
    }

    /// permessage-deflate on the write side: what is compressed, what is
    /// not, in order, by both paths.
    #[cfg(feature = "deflate")]
    mod deflate {
        use super::*;
        use crate::config::{Config, DeflateConfig};
        use crate::protocol::{DeflateParams, FrameHeader, MessageDecoder};

        fn deflate_side(plan: Vec<Option<usize>>, params: DeflateParams) -> (WriteSide, Arc<Mutex<Vec<u8>>>) {
            let (mock, out) = Mock::new(plan);
            let negotiated = Negotiated { deflate: Some((params, DeflateConfig::default())) };
            (
                WriteSide::counted(
                    Box::new(mock),
                    Role::Server,
                    Duration::from_secs(5),
                    &negotiated,
                    Arc::clone(Counters::global()),
                )
                .unwrap(),
                out,
            )
        }

        /// Each frame's RSV1 bit, and the messages a client decodes.
        fn frames(wire: &[u8], params: &DeflateParams) -> (Vec<bool>, Vec<OwnedMessage>) {
            let mut rsv1 = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let (h, n) = FrameHeader::parse(&wire[at..]).unwrap().unwrap();
                rsv1.push(h.rsv == RSV1);
                at += n + h.payload_len as usize;
            }
            let mut dec = MessageDecoder::with_deflate(Role::Client, &Config::default(), params);
            let mut rest = wire.to_vec();
            let mut at = 0;
            let mut msgs = Vec::new();
            while at < rest.len() {
                let (used, msg) = dec.feed(&mut rest[at..]).unwrap();
                at += used;
                msgs.extend(msg);
            }
            (rsv1, msgs)
        }

        #[test]
        fn over_the_threshold_is_compressed_unless_sent_uncompressed() {
            for params in
                [DeflateParams::default(), DeflateParams { server_no_context_takeover: true, ..Default::default() }]
            {
                let (ws, out) = deflate_side(vec![None], params);
                let big = text(&"compress me, ".repeat(200));
                let huge = OwnedMessage::Binary(b"0123456789".repeat(10_000));
                ws.send(big.clone()).unwrap();
                ws.send(text("small")).unwrap();
                ws.send_uncompressed(big.clone()).unwrap();
                ws.send(huge.clone()).unwrap();
                ws.send(OwnedMessage::Ping(vec![7; 125])).unwrap();
                ws.send(big.clone()).unwrap();
                let (rsv1, msgs) = frames(&out.lock().unwrap(), &params);
                assert_eq!(rsv1, [true, false, false, true, false, true], "{params:?}");
                assert_eq!(
                    msgs,
                    [big.clone(), text("small"), big.clone(), huge, OwnedMessage::Ping(vec![7; 125]), big]
                );
                assert!(out.lock().unwrap().len() < 4000, "compressed: {} bytes", out.lock().unwrap().len());
            }
        }

        #[test]
        fn window_bits_8_sends_everything_uncompressed() {
            let params = DeflateParams { server_max_window_bits: 8, ..Default::default() };
            let (ws, out) = deflate_side(vec![None], params);
            let big = text(&"compress me, ".repeat(200));
            ws.send(big.clone()).unwrap();
            let (rsv1, msgs) = frames(&out.lock().unwrap(), &params);
            assert_eq!((rsv1, msgs), (vec![false], vec![big]));
        }

        /// A message the fast path compressed is never handed back to be
        /// queued: the compressor's context has it. Its frame waits in the
        /// batch for the next write, ahead of everything else.
        #[test]
        fn the_fast_path_keeps_what_it_compressed() {
            let none = AtomicUsize::new(0);
            let params = DeflateParams::default();
            let (ws, out) = deflate_side(vec![Some(0), None], params);
            let big = text(&"compress me, ".repeat(200));
            assert!(matches!(ws.try_send_now(Item::Msg(big.clone()), &none), Ok(Now::Pending)));
            assert!(out.lock().unwrap().is_empty());
            // Small messages are handed back as before.
            assert!(matches!(ws.try_send_now(Item::Msg(text("tiny")), &none), Ok(Now::Queue(_))));
            ws.send(big.clone()).unwrap();
            let (rsv1, msgs) = frames(&out.lock().unwrap(), &params);
            assert_eq!((rsv1, msgs), (vec![true, true], vec![big.clone(), big]));
        }
    }
}

//! The read side of a connection: a small buffer for frame headers, payloads
//! read straight into their messages, the decoder, and read deadlines armed
//! with as few system calls as possible.

use std::io::{self, ErrorKind, IoSliceMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::handshake::extensions::Negotiated;
use crate::message::OwnedMessage;
use crate::protocol::{MessageDecoder, Role, MAX_HEADER_LEN};
use crate::stats::Counters;
use crate::transport::{self, is_timeout, ReadHalf, Released};

/// A read that puts at least this much payload in place reads only a frame
/// header's worth after it ([`tail_len`]).
const LARGE_PAYLOAD: usize = 16 << 10;
/// The most payload one read system call puts straight into a message.
const MAX_READ_CHUNK: usize = 256 << 10;
/// While reads keep filling the buffer, it doubles up to this (or
/// `Config::read_buffer_size` if larger), so a burst takes few system calls.
const BURST_READ_SIZE: usize = 4 << 10;
/// While reads keep filling the buffer with small messages (at least one
/// per [`SMALL_MESSAGE`] bytes read, e.g. from a pipelining client), it goes
/// on doubling up to this. Large messages would only be copied through a
/// buffer this size instead of being read straight into their own memory,
/// so a read that fills it with fewer messages takes it back to
/// [`BURST_READ_SIZE`].
const SMALL_MESSAGES_READ_SIZE: usize = 64 << 10;
/// See [`SMALL_MESSAGES_READ_SIZE`].
const SMALL_MESSAGE: usize = 8 << 10;
/// A grown buffer goes back to the base size after this many reads in a
/// row that brought less than the base size (or at once after a read
/// timed out). One short read is no sign of a quiet peer: a pipelining
/// client's batch often ends with a read of a payload's last bytes, and
/// shrinking there made the next batch arrive through a 512-byte buffer
/// doubling again, a read and a reply write per doubling, which the
/// client then answered in as many pieces (bench-results/notes.md).
const QUIET_READS: u8 = 4;

/// What a bounded read produced.
#[derive(Debug)]
pub(crate) enum Read {
    /// A complete message (data or control).
    Message(OwnedMessage),
    /// The deadline passed before a message completed. Bytes read so far
    /// are kept.
    Deadline,
}

pub(crate) struct ReadSide {
    io: Box<dyn ReadHalf>,
    /// `io` may read payloads into uninitialised message memory, saving
    /// the zero fill ([`ReadHalf::read_uninit`]): true until it first says
    /// it cannot.
    uninit: bool,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `Config::read_buffer_size`: the size of the buffer of an idle
    /// connection, kept small since every connection has one.
    base_size: usize,
    /// Largest size reads that fill the buffer double it to.
    burst_size: usize,
    /// Largest size reads that fill the buffer with small messages double
    /// it to.
    small_messages_size: usize,
    /// Messages decoded from the bytes of the last read.
    read_msgs: usize,
    /// Messages decoded and not yet added to `metrics`: they are added
    /// before the thread next waits for the network (or when the side is
    /// dropped), one shared counter update per batch instead of per
    /// message. At most the messages of one read, so a `u32`, which fits
    /// in the padding beside the one-byte fields: a `usize` made every
    /// connection's state larger and cost an idle connection 0.65 KiB
    /// (`tests/idle_memory.rs`).
    uncounted: u32,
    /// Bytes the last read returned (zero after a timeout).
    last_read: usize,
    /// Reads in a row that brought less than `base_size`, up to
    /// [`QUIET_READS`] (set to it by a timeout).
    short_reads: u8,
    decoder: MessageDecoder,
    /// The read timeout currently set on the socket (`None`: blocking).
    armed: Option<Duration>,
    /// When bytes last arrived from the peer, as of the last wait: read
    /// from the clock the next time the connection goes back to waiting,
    /// once their messages are handled (one clock read per system call).
    pub(crate) last_activity: Instant,
    /// Bytes arrived since the clock was last read for `last_activity`.
    active: bool,
    /// Where messages and bytes read are counted.
    metrics: Arc<Counters>,
}

impl Drop for ReadSide {
    /// Messages of the last batch still count when the connection ends
    /// before its thread waits again (an error, a Close).
    fn drop(&mut self) {
        self.count_messages();
    }
}

impl ReadSide {
    /// `leftover` holds bytes that arrived with the handshake;
    /// `negotiated` says whether messages may arrive compressed; `now` is
    /// when the connection opened, the caller's clock read (here, a level
    /// deeper, the clock's call was the deepest a connection thread went:
    /// `tests/idle_memory.rs`); messages and bytes read count in
    /// `metrics`.
    pub(crate) fn new(
        io: Box<dyn ReadHalf>,
        role: Role,
        config: &Config,
        leftover: Vec<u8>,
        negotiated: &Negotiated,
        now: Instant,
        metrics: Arc<Counters>,
    ) -> Self {
        let base_size = config.read_buffer_size;
        let end = leftover.len();
        metrics.bytes_in(end);
        let mut buf = leftover;
        if buf.len() < base_size {
            if buf.capacity() > base_size {
                // The handshake read in larger chunks: an idle connection
                // keeps only the base size.
                let mut small = Vec::with_capacity(base_size);
                small.extend_from_slice(&buf);
                buf = small;
            }
            buf.resize(base_size, 0);
        }
        ReadSide {
            io,
            uninit: true,
            buf,
            start: 0,
            end,
            base_size,
            burst_size: base_size.max(BURST_READ_SIZE),
            small_messages_size: base_size.max(SMALL_MESSAGES_READ_SIZE),
            read_msgs: 0,
            uncounted: 0,
            last_read: 0,
            short_reads: 0,
            decoder: decoder(role, config, negotiated),
            armed: Some(Duration::MAX),
            last_activity: now,
            active: false,
            metrics,
        }
    }

    /// Reads until a message completes or the deadline passes.
    /// `before_block` runs each time the call is about to wait for the
    /// network (the caller flushes queued replies there, so replies to a
    /// burst of messages leave in one write); `deadline` then tells when the
    /// wait must end, from this side's state (`last_activity` is up to date
    /// by then).
    ///
    /// Inlined into its one caller, the loop of every connection: a call
    /// per message costs more than the code it would save.
    #[inline(always)]
    pub(crate) fn read(
        &mut self,
        deadline: &mut dyn FnMut(&ReadSide) -> Option<Instant>,
        before_block: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Read> {
        loop {
            if self.start < self.end {
                let (used, msg) = self.decoder.feed(&mut self.buf[self.start..self.end])?;
                self.start += used;
                if let Some(msg) = msg {
                    self.read_msgs += 1;
                    self.uncounted += 1;
                    return Ok(Read::Message(msg));
                }
            }
            self.count_messages();
            self.make_room();
            before_block()?;
            let now = Instant::now();
            if std::mem::take(&mut self.active) {
                self.last_activity = now;
            }
            let deadline = deadline(self);
            if let Some(d) = deadline {
                if d <= now {
                    return Ok(Read::Deadline);
                }
            }
            self.arm(deadline.map(|d| d - now))?;
            let (result, uninit) = self.read_some();
            match result {
                Ok((0, 0)) => {
                    return Err(Error::Io(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the peer closed the connection without a close frame",
                    )))
                }
                Ok((direct, buffered)) => {
                    self.metrics.bytes_in(direct + buffered);
                    self.end += buffered;
                    self.last_read = direct + buffered;
                    self.short_reads =
                        if self.last_read < self.base_size { (self.short_reads + 1).min(QUIET_READS) } else { 0 };
                    self.read_msgs = 0;
                    self.active = true;
                    if direct > 0 {
                        let msg = if uninit {
                            // SAFETY: `read_some` had `read_uninit` read
                            // `direct` bytes into the start of the space the
                            // decoder handed out. Only syncws's own halves
                            // answer it (its token is sealed), and they
                            // initialise what they count.
                            #[allow(unsafe_code)]
                            unsafe {
                                self.decoder.payload_received_uninit(direct)?
                            }
                        } else {
                            self.decoder.payload_received(direct)?
                        };
                        if let Some(msg) = msg {
                            self.read_msgs += 1;
                            self.uncounted += 1;
                            return Ok(Read::Message(msg));
                        }
                    }
                }
                Err(e) if is_timeout(&e) => {
                    self.armed = Some(Duration::ZERO);
                    self.last_read = 0;
                    self.short_reads = QUIET_READS;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
    }

    /// Adds the messages decoded since the last count to the metrics.
    #[inline]
    fn count_messages(&mut self) {
        if self.uncounted > 0 {
            self.metrics.messages_in(std::mem::take(&mut self.uncounted) as usize);
        }
    }

    /// One read system call. Between reads the buffer holds at most a
    /// partial header. Inside a data frame's payload it is empty: the
    /// payload is read straight into the message (no copy), and what
    /// follows the frame into the buffer, in the same system call: as much
    /// as it holds after a short rest of payload, a header's worth after a
    /// long one ([`tail_len`]).
    ///
    /// Returns the bytes that went to the payload and to the buffer, and
    /// whether the payload's space was uninitialised memory (read with
    /// [`ReadHalf::read_uninit`]).
    fn read_some(&mut self) -> (io::Result<(usize, usize)>, bool) {
        let split = |direct: usize| move |n: usize| (n.min(direct), n.saturating_sub(direct));
        if self.end == 0 {
            if self.uninit {
                if let Some(space) = self.decoder.payload_space_uninit(MAX_READ_CHUNK) {
                    let direct = space.len();
                    let tail = tail_len(direct, self.buf.len());
                    match self.io.read_uninit(space, &mut self.buf[..tail], transport::SEALED) {
                        Some(result) => return (result.map(split(direct)), true),
                        // Asked once: the zero-filled space below from now on.
                        None => self.uninit = false,
                    }
                }
            }
            if let Some(space) = self.decoder.payload_space(MAX_READ_CHUNK) {
                let direct = space.len();
                let tail = tail_len(direct, self.buf.len());
                let mut bufs = [IoSliceMut::new(space), IoSliceMut::new(&mut self.buf[..tail])];
                return (self.io.read_vectored(&mut bufs).map(split(direct)), false);
            }
        }
        (self.io.read(&mut self.buf[self.end..]).map(|n| (0, n)), false)
    }

    /// Compacts the buffer and sizes it before a read. Payloads are read
    /// straight into their messages, so the buffer holds frame headers and
    /// small frames: it doubles while reads keep filling it, up to the burst
    /// size, or further while they fill it with small messages, and goes
    /// back to the base size after [`QUIET_READS`] short reads in a row or a
    /// timeout.
    fn make_room(&mut self) {
        // Every call leaves free space at the end, so a full buffer means the
        // read since the last call filled it: more bytes are likely waiting.
        let filled = self.end == self.buf.len();
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if !filled && self.buf.len() > self.base_size && self.short_reads >= QUIET_READS {
                self.buf = vec![0; self.base_size];
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // A read of a large payload's rest takes only a header's worth into
        // the buffer ([`tail_len`]), so large messages need not fill it to
        // be seen.
        if filled || self.last_read >= LARGE_PAYLOAD {
            let small_messages = self.read_msgs * SMALL_MESSAGE >= self.last_read;
            let limit = if small_messages { self.small_messages_size } else { self.burst_size };
            if filled && self.buf.len() < limit {
                self.buf.resize((self.buf.len() * 2).min(limit), 0);
            } else if self.buf.len() > limit && self.end < limit {
                // Large messages now: read them into their own memory.
                self.buf.truncate(limit);
                self.buf.shrink_to_fit();
            }
        }
        if self.end == self.buf.len() {
            // Only a partial header can be left unconsumed, and the buffer is
            // always larger than a header: this is a safety net.
            self.buf.resize(self.buf.len().max(16) * 2, 0);
        }
    }

    /// Sets the socket's read timeout so the next read returns by `wait`,
    /// skipping the system call when the timeout already set is close enough
    /// (it may then fire a little late, by at most the slack).
    fn arm(&mut self, wait: Option<Duration>) -> Result<()> {
        let wanted = match (wait, self.armed) {
            (None, None) => return Ok(()),
            (None, Some(_)) => None,
            (Some(w), Some(a)) if a <= w + slack(w) && a > Duration::ZERO && a + slack(w) >= w => return Ok(()),
            (Some(w), _) => Some(w.max(Duration::from_millis(1))),
        };
        self.io.set_read_timeout(wanted)?;
        self.armed = wanted;
        Ok(())
    }

    /// Lets the socket go (the connection ended): later reads fail.
    pub(crate) fn release(&mut self) {
        self.io = Box::new(Released);
        self.buf = Vec::new();
        self.start = 0;
        self.end = 0;
    }

    /// After the close handshake: reads and discards until the peer closes
    /// TCP or `deadline` passes, so our last frames are not lost to a reset.
    pub(crate) fn drain_until_eof(&mut self, deadline: Instant) {
        let mut scratch = [0u8; 1024];
        loop {
            let now = Instant::now();
            if now >= deadline || self.arm(Some(deadline - now)).is_err() {
                return;
            }
            match self.io.read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => self.armed = Some(Duration::ZERO),
                Err(_) => return,
            }
        }
    }
}

/// How much of the read buffer a read that puts `direct` bytes of payload
/// in place may fill after them: all of it (`buf_len`) after a short rest
/// of payload, a frame header's worth after a long one. Large messages come
/// one after another: the next one's header is all the buffer needs, and
/// the next read then puts its payload in place too, where bytes read into
/// the buffer would be copied into the message.
#[inline]
fn tail_len(direct: usize, buf_len: usize) -> usize {
    if direct >= LARGE_PAYLOAD {
        MAX_HEADER_LEN.min(buf_len)
    } else {
        buf_len
    }
}

/// The decoder for what the handshake negotiated.
///
/// Inlined into [`ReadSide::new`], the decoder with deflate out of line:
/// built there, its temporaries took the frame of every connection's
/// deepest call (opening, under the handshake's frames) into a third stack
/// page (`tests/idle_memory.rs`).
#[inline(always)]
fn decoder(role: Role, config: &Config, negotiated: &Negotiated) -> MessageDecoder {
    #[cfg(feature = "deflate")]
    if let Some((params, _)) = &negotiated.deflate {
        return deflate_decoder(role, config, params);
    }
    let _ = negotiated;
    MessageDecoder::new(role, config)
}

#[cfg(feature = "deflate")]
#[inline(never)]
fn deflate_decoder(role: Role, config: &Config, params: &crate::protocol::DeflateParams) -> MessageDecoder {
    MessageDecoder::with_deflate(role, config, params)
}

/// How late a deadline may fire to save re-arming the timeout on every read:
/// 1/8 of the wait, at most 50 ms.
fn slack(wait: Duration) -> Duration {
    (wait / 8).min(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use std::io::IoSliceMut;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::protocol::OutFrame;

    /// A peer that has sent `bytes`: every read takes as much as it is given
    /// room for, like a socket with all of it waiting. The test keeps a
    /// handle on `bytes` to send more.
    struct Waiting {
        bytes: Arc<Mutex<Vec<u8>>>,
        at: usize,
    }

    impl io::Read for Waiting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.read_vectored(&mut [IoSliceMut::new(buf)])
        }

        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            let bytes = self.bytes.lock().unwrap();
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(bytes.len() - self.at);
                buf[..take].copy_from_slice(&bytes[self.at..self.at + take]);
                self.at += take;
                n += take;
            }
            Ok(n)
        }
    }

    impl ReadHalf for Waiting {
        fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn client_frames(count: usize, size: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        for i in 0..count {
            let f = OutFrame::new(OwnedMessage::Binary(vec![i as u8; size]), Some([1, 2, 3, 4])).unwrap();
            wire.extend_from_slice(f.header());
            wire.extend_from_slice(f.payload());
        }
        wire
    }

    /// A server's read side on `io`, default configuration.
    fn server_side(io: Box<dyn ReadHalf>) -> ReadSide {
        ReadSide::new(
            io,
            Role::Server,
            &Config::default(),
            Vec::new(),
            &Negotiated::default(),
            Instant::now(),
            Arc::clone(Counters::global()),
        )
    }

    /// Reads `count` messages of `size` bytes; returns the largest buffer
    /// seen before each read.
    fn read_messages(side: &mut ReadSide, count: usize, size: usize) -> usize {
        read_messages_from(side, 0, count, size)
    }

    /// [`read_messages`] where the first message is filled with `first`.
    fn read_messages_from(side: &mut ReadSide, first: usize, count: usize, size: usize) -> usize {
        let mut largest = 0;
        for i in first..first + count {
            largest = largest.max(side.buf.len());
            let far = Instant::now() + Duration::from_secs(60);
            match side.read(&mut |_| Some(far), &mut || Ok(())).unwrap() {
                Read::Message(OwnedMessage::Binary(b)) => assert_eq!(b, vec![i as u8; size]),
                other => panic!("{other:?}"),
            }
        }
        largest
    }

    #[test]
    fn messages_count_before_the_thread_waits_and_when_the_side_ends() {
        let side_with = |count: usize, metrics: &Arc<Counters>| {
            let io = Box::new(Waiting { bytes: Arc::new(Mutex::new(client_frames(count, 100))), at: 0 });
            let config = Config::default();
            ReadSide::new(
                io,
                Role::Server,
                &config,
                Vec::new(),
                &Negotiated::default(),
                Instant::now(),
                Arc::clone(metrics),
            )
        };
        let metrics = Arc::new(Counters::default());
        let mut side = side_with(3, &metrics);
        read_messages(&mut side, 3, 100);
        // Counted by the time the thread writes its replies and waits.
        let far = Instant::now() + Duration::from_secs(60);
        let mut seen = None;
        let end = side.read(&mut |_| Some(far), &mut || {
            seen = Some(metrics.snapshot().messages_in);
            Ok(())
        });
        assert!(end.is_err(), "the peer has nothing more");
        assert_eq!(seen, Some(3));
        // A connection that ends in the middle of a batch counts what it read.
        let metrics = Arc::new(Counters::default());
        let mut side = side_with(3, &metrics);
        read_messages(&mut side, 2, 100);
        drop(side);
        assert_eq!(metrics.snapshot().messages_in, 2);
    }

    #[test]
    fn buffer_grows_for_small_messages_and_not_for_large_ones() {
        let mut wire = client_frames(300, 1000);
        wire.extend(client_frames(6, 64 << 10));
        let wire = Arc::new(Mutex::new(wire));
        let io = Box::new(Waiting { bytes: Arc::clone(&wire), at: 0 });
        let mut side = server_side(io);
        assert_eq!(side.buf.len(), 512);

        // A burst of small messages: few reads, each bringing dozens.
        assert_eq!(read_messages(&mut side, 300, 1000), SMALL_MESSAGES_READ_SIZE);
        // Large messages: read into their own memory, not through the
        // buffer, which goes back to the burst size.
        read_messages(&mut side, 6, 64 << 10);
        assert!(side.buf.len() <= BURST_READ_SIZE, "{}", side.buf.len());

        // A quiet peer again: back to the base size after a few short
        // reads in a row, not after the first.
        for i in 0..QUIET_READS {
            wire.lock().unwrap().extend(client_frames(1, 10));
            read_messages(&mut side, 1, 10);
            if i + 1 < QUIET_READS {
                assert!(side.buf.len() > 512, "shrunk after {} short reads", i + 1);
            }
        }
        let far = Instant::now() + Duration::from_secs(60);
        assert!(side.read(&mut |_| Some(far), &mut || Ok(())).is_err(), "the mock's end reads as EOF");
        assert_eq!(side.buf.len(), 512);
    }

    /// Large messages one after another, all waiting: each read puts a
    /// whole payload in place and takes only the next header into the
    /// buffer, so no payload byte is copied through it. Small messages
    /// after them still arrive dozens to a read.
    #[test]
    fn after_a_large_payload_a_read_takes_only_the_next_header() {
        let mut wire = client_frames(5, 64 << 10);
        wire.extend(client_frames(300, 1000));
        let io = Box::new(Waiting { bytes: Arc::new(Mutex::new(wire)), at: 0 });
        let mut side = server_side(io);
        for i in 0..5 {
            read_messages_from(&mut side, i, 1, 64 << 10);
            // The next frame's header (14 bytes for 64 KiB, 6 for 1,000).
            assert!(side.end - side.start <= MAX_HEADER_LEN, "message {i}: {} bytes buffered", side.end - side.start);
            if i > 0 {
                assert_eq!(side.last_read, (64 << 10) + MAX_HEADER_LEN, "message {i} took more than one read");
            }
        }
        assert_eq!(read_messages(&mut side, 300, 1000), SMALL_MESSAGES_READ_SIZE);
    }

    /// A pipelining peer's batches: each ends with a read of only the last
    /// payload's tail. The next batch must still arrive in one read
    /// through the grown buffer, not through the base size doubling again
    /// (a read, and a reply write, per doubling).
    #[test]
    fn a_short_read_at_a_batchs_end_keeps_the_grown_buffer() {
        let wire = Arc::new(Mutex::new(Vec::new()));
        let io = Box::new(Waiting { bytes: Arc::clone(&wire), at: 0 });
        let mut side = server_side(io);
        let far = Instant::now() + Duration::from_secs(60);
        for batch in 0..6 {
            let frames = client_frames(32, 1000);
            let (most, tail) = frames.split_at(frames.len() - 100);
            wire.lock().unwrap().extend_from_slice(most);
            // Every message but the last comes from what is waiting now.
            for i in 0..31 {
                match side.read(&mut |_| Some(far), &mut || Ok(())).unwrap() {
                    Read::Message(OwnedMessage::Binary(b)) => assert_eq!(b, vec![i as u8; 1000]),
                    other => panic!("{other:?}"),
                }
                if i == 0 && batch >= 2 {
                    assert_eq!(side.last_read, most.len(), "batch {batch} took more than one read");
                }
            }
            // The last payload's tail arrives alone: a short read.
            wire.lock().unwrap().extend_from_slice(tail);
            match side.read(&mut |_| Some(far), &mut || Ok(())).unwrap() {
                Read::Message(OwnedMessage::Binary(b)) => assert_eq!(b, vec![31; 1000]),
                other => panic!("{other:?}"),
            }
            assert!(side.last_read < 512, "the tail came alone");
        }
    }

    /// Over TCP, payloads are read into uninitialised message memory
    /// (where the platform allows; elsewhere the half says it cannot, once).
    #[test]
    fn tcp_payloads_are_read_into_uninitialised_memory() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let (io, _writer) = crate::Transport::split(socket).unwrap();
        let mut side = server_side(io);
        let wire = client_frames(3, 100 << 10);
        let writer = std::thread::spawn(move || io::Write::write_all(&mut peer, &wire).map(|()| peer));
        read_messages(&mut side, 3, 100 << 10);
        assert_eq!(side.uninit, cfg!(any(target_os = "linux", target_os = "android")));
        drop(writer.join().unwrap().unwrap());
    }
}

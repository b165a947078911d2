//! permessage-deflate's codec (RFC 7692 §7.2), without I/O: a message's
//! payload to its compressed form and back, with the context kept between
//! messages or reset, and a running limit on what inflating may produce.
//!
//! # Memory
//!
//! A connection holds no zlib state until its first compressed message in
//! a direction. Then:
//!
//! - **without context takeover** on that side (each message compressed
//!   from scratch), the state is borrowed from a small process-wide pool
//!   for the one message and handed back, reset, after it: the connection
//!   keeps nothing, and the pool holds about as many states as threads
//!   compress (or inflate) at once, up to [`POOL_KEEP`] each;
//! - **with context takeover**, the connection keeps its own state from its
//!   first compressed message to its end: a compressor is about 370 KiB
//!   with a 15-bit window (zlib-rs allocates, and zeroes, a 128 KiB hash
//!   table whatever the window and a 64 KiB window and chain each at 15
//!   bits; flate2 fixes memLevel at 8), an inflater about 40 KiB (a 32 KiB
//!   window: inflating always uses 15 bits, so any peer window is read).
//!
//! # Bombs
//!
//! Inflating writes into a buffer that grows in steps (doubling, charged to
//! the process's [memory budget](crate::Config::memory_budget) before each
//! step) and never past `max_message_size + 1` bytes: one byte over the
//! limit is how the limit is found exceeded, and the message fails with
//! [`Error::Capacity`] ([`Limit::Message`], close 1009) without anything
//! larger ever being allocated, however much the input would expand.

use std::sync::{Mutex, MutexGuard, OnceLock};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::config::{Config, DeflateConfig};
use crate::error::{Error, Limit, Result};
use crate::memory::Charge;
use crate::protocol::utf8::Utf8Validator;
use crate::protocol::Role;

/// The end of a sync flush, stripped from every compressed message by its
/// sender and appended again by its receiver (§7.2.1, §7.2.2).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Idle states each pool keeps at most, beyond which a returned one is
/// freed: enough for the threads that compress at once on most machines
/// (a miss only costs allocating a state), few enough that an idle pool
/// stays small (about 3 MiB of compressors at 15 bits).
pub(crate) const POOL_KEEP: usize = 8;

/// The first room an inflated message gets, at most: it then doubles as
/// needed, so a small message costs one small allocation and a large one
/// a handful.
const FIRST_INFLATE_ROOM: usize = 16 << 10;

/// What permessage-deflate negotiation settled for a connection
/// (RFC 7692 §7.1), in the RFC's terms: `server_*` is about what the
/// server sends, `client_*` about what the client sends.
///
/// ```
/// use syncws::protocol::DeflateParams;
/// let p = DeflateParams::default();
/// assert_eq!((p.server_max_window_bits, p.client_no_context_takeover), (15, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The largest window (base-2 logarithm, 8 to 15) the server compresses
    /// with; 15 when the answer did not limit it.
    pub server_max_window_bits: u8,
    /// The largest window (8 to 15) the client compresses with.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// Everything the RFC allows by default: context takeover both ways,
    /// 15-bit windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// Whether the side `role` resets its compressor after every message,
    /// and the window it may compress with.
    fn sender(&self, role: Role) -> (bool, u8) {
        match role {
            Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        }
    }

    /// Whether the peer of `role` resets its compressor after every
    /// message: then our inflater need not keep its window between them.
    fn peer_resets(&self, role: Role) -> bool {
        match role {
            Role::Server => self.client_no_context_takeover,
            Role::Client => self.server_no_context_takeover,
        }
    }
}

/// A pool of idle zlib states shared by every connection of the process.
struct Pool<T> {
    idle: OnceLock<Mutex<Vec<T>>>,
}

impl<T> Pool<T> {
    const fn new() -> Self {
        Pool { idle: OnceLock::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        let idle = self.idle.get_or_init(|| Mutex::new(Vec::new()));
        idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle state that `fits`, if the pool has one.
    fn take(&self, fits: impl Fn(&T) -> bool) -> Option<T> {
        let mut idle = self.lock();
        let at = idle.iter().rposition(fits)?;
        Some(idle.swap_remove(at))
    }

    /// Keeps a (reset) state for the next message, unless the pool is full.
    fn give(&self, state: T) {
        let mut idle = self.lock();
        if idle.len() < POOL_KEEP {
            idle.push(state);
        } else {
            // The oldest goes: states of a window or level no longer used
            // do not stay forever.
            idle.remove(0);
            idle.push(state);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A compressor with the window and level it was made with.
struct Deflater {
    window_bits: u8,
    level: u32,
    zlib: Compress,
}

static DEFLATERS: Pool<Box<Deflater>> = Pool::new();
static INFLATERS: Pool<Box<Decompress>> = Pool::new();

impl Deflater {
    fn new(window_bits: u8, level: u32) -> Box<Deflater> {
        // Checked by `Compressor::new`: flate2 asserts 9..=15.
        debug_assert!((9..=15).contains(&window_bits) && level <= 9);
        let zlib = Compress::new_with_window_bits(Compression::new(level), false, window_bits);
        Box::new(Deflater { window_bits, level, zlib })
    }
}

/// One connection's sending side of the extension: which messages to
/// compress, and the compressor (its own, or one from the pool per
/// message).
pub(crate) struct Compressor {
    /// Messages shorter than this go uncompressed.
    threshold: usize,
    level: u32,
    /// The window to compress with, 9 to 15; 0 when the peer allowed only
    /// 8 bits, which zlib cannot produce: nothing is compressed then.
    window_bits: u8,
    /// Reset after every message (no context takeover): the state comes
    /// from the pool and goes back to it.
    reset: bool,
    /// The compressor kept between messages (context takeover), made at
    /// the first compressed message.
    own: Option<Box<Deflater>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("reset", &self.reset)
            .field("allocated", &self.own.is_some())
            .finish()
    }
}

impl Compressor {
    /// The compressor of side `role` for what negotiation settled.
    pub(crate) fn new(role: Role, params: &DeflateParams, config: &DeflateConfig) -> Compressor {
        let (reset, bits) = params.sender(role);
        Compressor {
            threshold: config.threshold,
            level: config.level.min(9),
            window_bits: if (9..=15).contains(&bits) { bits } else { 0 },
            reset,
            own: None,
        }
    }

    /// Whether a data message of `len` bytes is to be compressed.
    #[inline]
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold && self.window_bits != 0
    }

    /// Whether the connection holds a compressor now.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.own.is_some()
    }

    /// `payload` compressed as one message (§7.2.1: raw DEFLATE, a sync
    /// flush, its trailing `00 00 ff ff` removed). `None` when the message
    /// is better sent as it is: compressed from scratch, it did not come
    /// out smaller. (With context takeover it is always sent compressed:
    /// the compressor's window now holds it, and the peer's must too.)
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.reset {
            let (bits, level) = (self.window_bits, self.level);
            let mut d = DEFLATERS
                .take(|d| d.window_bits == bits && d.level == level)
                .unwrap_or_else(|| Deflater::new(bits, level));
            let out = deflate(&mut d.zlib, payload);
            d.zlib.reset();
            DEFLATERS.give(d);
            let out = out?;
            return Ok((out.len() < payload.len()).then_some(out));
        }
        let (bits, level) = (self.window_bits, self.level);
        let d = self.own.get_or_insert_with(|| Deflater::new(bits, level));
        match deflate(&mut d.zlib, payload) {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                // A failed compressor's state is unknown: the next message
                // must not use it (the connection is failing anyway).
                self.own = None;
                Err(e)
            }
        }
    }
}

/// Compresses `input` with a sync flush and strips the trailer.
fn deflate(zlib: &mut Compress, input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let mut rest = input;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before = zlib.total_in();
        zlib.compress_vec(rest, &mut out, FlushCompress::Sync)
            .map_err(|e| Error::Io(std::io::Error::other(format!("deflate failed: {e}"))))?;
        let used = usize::try_from(zlib.total_in() - before).unwrap_or(rest.len());
        rest = &rest[used.min(rest.len())..];
        // Done once every byte went in and the flush left room unused.
        if rest.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    Ok(out)
}

/// One connection's receiving side of the extension: inflates compressed
/// messages within the message limit.
pub(crate) struct Inflater {
    /// The peer resets its context after every message: our state comes
    /// from the pool for one message.
    peer_resets: bool,
    /// The state kept between messages (context takeover), made at the
    /// first compressed message.
    own: Option<Box<Decompress>>,
    max_message: usize,
    memory_budget: usize,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("peer_resets", &self.peer_resets)
            .field("allocated", &self.own.is_some())
            .finish()
    }
}

impl Inflater {
    /// The inflater of side `role`, with `config`'s limits.
    pub(crate) fn new(role: Role, params: &DeflateParams, config: &Config) -> Inflater {
        Inflater {
            peer_resets: params.peer_resets(role),
            own: None,
            max_message: config.max_message_size,
            memory_budget: config.memory_budget,
        }
    }

    /// Whether the connection holds an inflater now.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.own.is_some()
    }

    /// The message whose compressed payload is `input`, checked as UTF-8
    /// if it is `text` (as it grows, so bad text fails early).
    ///
    /// Fails with [`Error::Deflate`] (close 1007) for data that is not
    /// DEFLATE (data merely cut short inside a block cannot be told from a
    /// shorter message: it inflates to a prefix, as with zlib in Python
    /// websockets and Node's ws; RFC 7692 asks for no more), [`Error::Capacity`] with [`Limit::Message`] (1009) past
    /// `max_message_size`, [`Error::Utf8`] for bad text.
    pub(crate) fn inflate(&mut self, input: &[u8], text: bool) -> Result<Vec<u8>> {
        if self.peer_resets {
            let mut zlib = INFLATERS.take(|_| true).unwrap_or_else(new_inflater);
            let out = inflate(&mut zlib, input, text, self.max_message, self.memory_budget);
            zlib.reset(false);
            INFLATERS.give(zlib);
            return out;
        }
        let zlib = self.own.get_or_insert_with(new_inflater);
        let out = inflate(zlib, input, text, self.max_message, self.memory_budget);
        if out.is_err() {
            self.own = None;
        }
        out
    }
}

/// Always a 15-bit window: it reads any window the peer used (§7.1.2),
/// and no peer's value reaches flate2.
fn new_inflater() -> Box<Decompress> {
    Box::new(Decompress::new_with_window_bits(false, 15))
}

/// Inflates `input` and the trailer into a buffer that grows in steps,
/// never past `max + 1` bytes.
fn inflate(zlib: &mut Decompress, input: &[u8], text: bool, max: usize, budget: usize) -> Result<Vec<u8>> {
    let most = max.saturating_add(1);
    let over = |size: usize| Error::Capacity { what: Limit::Message, size: size as u64, max: max as u64 };
    let mut charge = Charge::new(budget);
    let mut out = Vec::new();
    charge.reserve_at_most(&mut out, input.len().saturating_mul(4).clamp(64, FIRST_INFLATE_ROOM), most)?;
    let mut utf8 = Utf8Validator::default();
    let mut parts = [input, &TRAILER[..]];
    let mut part = 0;
    loop {
        let (before_in, before_out) = (zlib.total_in(), zlib.total_out());
        let status = zlib
            .decompress_vec(parts[part], &mut out, FlushDecompress::Sync)
            .map_err(|e| Error::Deflate(format!("compressed data could not be inflated: {e}")))?;
        let used = usize::try_from(zlib.total_in() - before_in).unwrap_or(usize::MAX).min(parts[part].len());
        let made = zlib.total_out() - before_out;
        parts[part] = &parts[part][used..];
        if out.len() > max {
            return Err(over(out.len()));
        }
        if text {
            utf8.feed(&out)?;
        }
        if status == Status::StreamEnd {
            // The peer ended the stream (a final block): whatever follows
            // is not part of it, and the next message starts a new one.
            zlib.reset(false);
            break;
        }
        if parts[part].is_empty() && part + 1 < parts.len() {
            part += 1;
            continue;
        }
        if out.len() < out.capacity() {
            // Room left over: the inflater gave all it had for this input.
            if parts[part].is_empty() {
                break;
            }
            if used == 0 && made == 0 {
                return Err(Error::Deflate("compressed data could not be inflated: no progress".into()));
            }
            continue;
        }
        // Full: more may be waiting. One byte past `max` is enough to know.
        let want = out.len() + 1;
        charge.reserve_at_most(&mut out, want, most)?;
        if out.len() == out.capacity() {
            return Err(over(out.len() + 1));
        }
    }
    if text {
        utf8.finish(&out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DeflateParams {
        DeflateParams::default()
    }

    fn pair(p: DeflateParams, config: &Config) -> (Compressor, Inflater) {
        let d = DeflateConfig::default().threshold(0);
        (Compressor::new(Role::Server, &p, &d), Inflater::new(Role::Client, &p, config))
    }

    /// RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
    #[test]
    fn rfc_7692_hello() {
        let mut inf = Inflater::new(Role::Client, &params(), &Config::default());
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inf.inflate(&hello, true).unwrap(), b"Hello");
        // §7.2.3.2: the same again, with context takeover, is shorter.
        assert_eq!(inf.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], true).unwrap(), b"Hello");
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        let mut fresh = Inflater::new(Role::Client, &params(), &Config::default());
        assert_eq!(fresh.inflate(&stored, false).unwrap(), b"Hello");
        // §7.2.3.5: two DEFLATE blocks in one message.
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        let mut fresh = Inflater::new(Role::Client, &params(), &Config::default());
        assert_eq!(fresh.inflate(&two, false).unwrap(), b"Hello");
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        let text = "{\"user\":\"ada\",\"text\":\"hello, world\",\"n\":12345}".repeat(40);
        for takeover in [true, false] {
            let p = DeflateParams {
                server_no_context_takeover: !takeover,
                client_no_context_takeover: !takeover,
                ..params()
            };
            let (mut c, mut i) = pair(p, &Config::default());
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let z = c.compress(text.as_bytes()).unwrap().expect("compressible");
                assert!(!z.ends_with(&TRAILER));
                sizes.push(z.len());
                assert_eq!(i.inflate(&z, true).unwrap(), text.as_bytes());
            }
            if takeover {
                assert!(sizes[1] < sizes[0] / 2, "the second message refers to the first: {sizes:?}");
                assert!(c.is_allocated() && i.is_allocated());
            } else {
                assert_eq!(sizes[0], sizes[1]);
                assert!(!c.is_allocated() && !i.is_allocated(), "pooled states are handed back");
            }
        }
    }

    #[test]
    fn incompressible_data_goes_as_it_is_without_takeover() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let p = DeflateParams { server_no_context_takeover: true, ..params() };
        let (mut c, _) = pair(p, &Config::default());
        assert_eq!(c.compress(&noise).unwrap(), None);
        let (mut c, mut i) = pair(params(), &Config::default());
        let z = c.compress(&noise).unwrap().expect("takeover always compresses");
        assert_eq!(i.inflate(&z, false).unwrap(), noise);
    }

    #[test]
    fn every_window_and_level_round_trips() {
        let text = b"abcabcabcabd ".repeat(500);
        for bits in 9..=15 {
            for level in [0, 1, 6, 9] {
                let p = DeflateParams { server_max_window_bits: bits, ..params() };
                let d = DeflateConfig::default().threshold(0).level(level);
                let mut c = Compressor::new(Role::Server, &p, &d);
                let mut i = Inflater::new(Role::Client, &p, &Config::default());
                let z = c.compress(&text).unwrap().unwrap();
                assert_eq!(i.inflate(&z, false).unwrap(), text, "bits {bits} level {level}");
            }
        }
    }

    /// §7.1.2.1: zlib cannot produce an 8-bit window; such a connection
    /// sends everything uncompressed, and flate2 never sees the 8.
    #[test]
    fn window_bits_8_sends_uncompressed() {
        let p = DeflateParams { server_max_window_bits: 8, ..params() };
        let c = Compressor::new(Role::Server, &p, &DeflateConfig::default().threshold(0));
        assert!(!c.wants(10_000));
        let c = Compressor::new(Role::Client, &p, &DeflateConfig::default().threshold(0));
        assert!(c.wants(10_000), "the client's window is 15");
        let c = Compressor::new(Role::Server, &params(), &DeflateConfig::default());
        assert!(!c.wants(1023) && c.wants(1024), "the default threshold");
    }

    #[test]
    fn a_bomb_stops_one_byte_past_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let (mut c, _) = pair(params(), &Config::default());
        let z = c.compress(&zeros).unwrap().unwrap();
        assert!(z.len() < 128 << 10, "{}", z.len());
        for max in [1usize, 1000, 1 << 20, (8 << 20) - 1] {
            let mut i = Inflater::new(Role::Client, &params(), &Config::default().max_message_size(max));
            match i.inflate(&z, false) {
                Err(Error::Capacity { what: Limit::Message, size, max: m }) => {
                    assert_eq!((size, m), (max as u64 + 1, max as u64));
                }
                other => panic!("{other:?}"),
            }
        }
        let mut i = Inflater::new(Role::Client, &params(), &Config::default().max_message_size(8 << 20));
        assert_eq!(i.inflate(&z, false).unwrap().len(), 8 << 20, "exactly the limit is fine");
    }

    #[test]
    fn garbage_and_bad_text_fail() {
        let mut i = Inflater::new(Role::Client, &params(), &Config::default());
        // BTYPE 11 is reserved.
        assert!(matches!(i.inflate(&[0xff, 0xff, 0xff], false), Err(Error::Deflate(_))));
        let (mut c, _) = pair(DeflateParams { server_no_context_takeover: true, ..params() }, &Config::default());
        let mut bad = b"valid text ".repeat(20);
        bad.push(0xff);
        let z = c.compress(&bad).unwrap().unwrap();
        let mut i = Inflater::new(Role::Client, &params(), &Config::default());
        assert!(matches!(i.inflate(&z, true), Err(Error::Utf8)));
        assert_eq!(i.inflate(&z, false).unwrap(), bad);
    }

    #[test]
    fn a_final_block_ends_the_stream_and_the_next_message_starts_afresh() {
        let mut z = Compress::new_with_window_bits(Compression::default(), false, 15);
        let mut out = Vec::with_capacity(100);
        z.compress_vec(b"Hello", &mut out, FlushCompress::Finish).unwrap();
        let mut i = Inflater::new(Role::Client, &params(), &Config::default());
        assert_eq!(i.inflate(&out, true).unwrap(), b"Hello");
        assert_eq!(i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true).unwrap(), b"Hello");
    }

    #[test]
    fn the_pool_keeps_a_bounded_number() {
        let states: Vec<_> = (0..POOL_KEEP + 3).map(|_| new_inflater()).collect();
        for s in states {
            INFLATERS.give(s);
        }
        assert!(INFLATERS.len() <= POOL_KEEP);
    }
}

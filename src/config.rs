//! Every limit and timeout of syncws, in one place.

use std::time::Duration;

use crate::error::{Error, Result};

/// Upper bound on the number of request or response headers parsed in a
/// handshake (the size of the fixed header array handed to httparse).
pub const MAX_HEADERS_LIMIT: usize = 128;

/// What happens when the application sends faster than the peer reads and the
/// outbound queue of a connection is full ([`Config::queue_capacity`]
/// messages or [`Config::queue_max_bytes`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueuePolicy {
    /// The sending thread waits up to this long for room, then gets
    /// [`Error::Send`]`(`[`SendError::QueueFull`](crate::SendError::QueueFull)`)` and the message is not sent.
    Block(Duration),
    /// The message is dropped at once and the sender gets
    /// [`Error::Send`]`(`[`SendError::QueueFull`](crate::SendError::QueueFull)`)`; the connection stays open.
    Drop,
    /// The connection is closed with 1008 (policy violation) and the sender
    /// gets [`Error::Send`]`(`[`SendError::QueueFull`](crate::SendError::QueueFull)`)`.
    Close,
}

/// Which `Origin` headers a server accepts on an upgrade request.
///
/// Browsers send `Origin` on every WebSocket request and let any page open a
/// WebSocket to any address, including `localhost` and LAN hosts: checking it
/// is the defence against cross-site WebSocket hijacking. Clients that are not
/// browsers usually send no `Origin` at all; every policy lets those through.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// Accept any origin.
    Any,
    /// Accept a request only if its `Origin` host (and port) equals its
    /// `Host` header. The default.
    ///
    /// It refuses (403) what a newcomer's first test page often is: a page
    /// served from another port (a dev server on `localhost:3000` talking
    /// to `ws://localhost:8080`), a page opened from a file (`file://`,
    /// sent as `Origin: null`), and a page opened as `localhost` talking to
    /// `ws://127.0.0.1:...` (two different hosts to the browser). Name such
    /// origins with [`AllowList`](OriginPolicy::AllowList), or use
    /// [`Any`](OriginPolicy::Any) while developing; the 403's body says
    /// which origin was refused.
    ///
    /// ```
    /// use syncws::{Config, OriginPolicy};
    /// let dev = Config::default().origin(OriginPolicy::AllowList(vec!["http://localhost:3000".into()]));
    /// # dev.validate().unwrap();
    /// ```
    SameHost,
    /// Accept only these origins, compared case-insensitively with the whole
    /// header value (e.g. `"https://example.com"`).
    AllowList(Vec<String>),
}

/// Limits and timeouts for connections, handshakes and listeners.
///
/// Every field has a safe default, stated in its documentation. Change fields
/// directly or with the chainable setters of the same name:
///
/// ```
/// use std::time::Duration;
/// use syncws::Config;
/// let config = Config::default()
///     .max_message_size(1 << 20)
///     .idle_timeout(Some(Duration::from_secs(30)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of a single frame. Default 16 MiB. A header declaring
    /// more is refused (close 1009) before anything is allocated for it.
    pub max_frame_size: usize,
    /// Largest message after reassembly of fragments. Default 64 MiB
    /// (Autobahn's largest case is 16 MiB). Close 1009 past it.
    pub max_message_size: usize,
    /// Most frames in one fragmented message. Default 100,000 (Autobahn
    /// 9.3.1 sends 4 MiB in 65,537 frames); close 1008 past it, which bounds
    /// the work a flood of tiny or empty fragments can cause.
    pub max_fragments: usize,
    /// Largest HTTP head (request line or status line plus headers).
    /// Default 16 KiB; 431 past it.
    pub max_head_size: usize,
    /// Most headers in an HTTP head. Default 64, at most
    /// [`MAX_HEADERS_LIMIT`]; 431 past it.
    pub max_headers: usize,
    /// Largest plain HTTP request body (`Content-Length`) read for an
    /// `HttpTrait` handler. Default 1 MiB; 413 past it.
    pub max_http_body: usize,
    /// Deadline for the whole handshake head to arrive (and the client's
    /// connect plus handshake). Default 10 s; 408 when it expires.
    pub handshake_timeout: Duration,
    /// Close the connection when nothing at all arrives for this long.
    /// Default 120 s. With `ping_interval` set, a live peer always answers
    /// within it.
    pub idle_timeout: Option<Duration>,
    /// Send a Ping after this long without traffic from the peer.
    /// Default 30 s.
    pub ping_interval: Option<Duration>,
    /// How long to wait for the peer's Close reply after sending Close,
    /// and for it to close TCP after the handshake. Default 5 s.
    pub close_timeout: Duration,
    /// Deadline for one write to the socket; a peer that stops reading is
    /// dropped when it expires. Default 10 s.
    pub write_timeout: Duration,
    /// Outbound queue capacity per connection, in messages. Default 1024.
    pub queue_capacity: usize,
    /// Outbound queue capacity per connection, in payload bytes queued and
    /// not yet written. Default 16 MiB. A send that would go over it is
    /// treated like one to a full queue ([`Config::queue_policy`]); a
    /// message larger than this still goes when nothing else is queued.
    pub queue_max_bytes: usize,
    /// What a send from another thread does when the queue is full (in
    /// messages or in bytes). Default `QueuePolicy::Block(5 s)`.
    pub queue_policy: QueuePolicy,
    /// Most live connections a listener serves at once; connections over it
    /// are answered 503. Default 16,384.
    pub max_connections: usize,
    /// Most live connections from one IP address. Default none. Not
    /// applied on a Unix socket (`serve_unix`), whose peers have no
    /// address.
    pub max_connections_per_ip: Option<usize>,
    /// Stack size of each connection thread. Default 128 KiB (only touched
    /// pages cost memory).
    pub thread_stack_size: usize,
    /// Read buffer size of a quiet connection. Default 512 bytes, enough for
    /// the small frames of most applications: every connection, idle ones
    /// included, keeps a buffer of this size. It doubles while reads keep
    /// filling it (a burst of frames), up to 4 KiB or this size if larger;
    /// up to 64 KiB while those reads bring small messages (at least one
    /// per 8 KiB, e.g. from a client that pipelines), so that one read
    /// system call takes dozens of them. It shrinks back to this size after
    /// four reads in a row bring less than this size, or a read times out
    /// (one short read, such as the last bytes of a pipelined batch, is no
    /// sign that traffic has become small). The payload of a frame that
    /// does not fit is read straight into its message, not through this
    /// buffer.
    pub read_buffer_size: usize,
    /// Which `Origin` headers the server accepts. Default
    /// [`OriginPolicy::SameHost`]: a browser page from another host or
    /// port, or opened from `file://`, is refused with 403 (see there);
    /// non-browser clients send no `Origin` and pass.
    pub origin: OriginPolicy,
    /// Most bytes the whole process holds for peers: buffers of messages
    /// still arriving (fragmented, or larger than the read buffer) and
    /// messages queued for sending, over every connection. Default a
    /// quarter of the machine's memory (the cgroup's limit where one is
    /// set, else the total), at most 1 GiB. A connection whose buffer or
    /// queue would take the total past it is closed with 1013 (try again
    /// later) before anything is allocated, and gets
    /// [`Error::Capacity`]`(`[`Limit::MemoryBudget`](crate::Limit::MemoryBudget)`)`;
    /// the others go on. Each connection checks the total against its own
    /// `Config`'s value; [`memory_held`](crate::memory_held) reads the
    /// total.
    pub memory_budget: usize,
    /// permessage-deflate (RFC 7692; feature `deflate`): `Some` makes a
    /// server accept the extension when a client offers it and a client
    /// offer it; `None` (the default) leaves every message uncompressed
    /// and the extension unanswered. See [`DeflateConfig`] for the knobs
    /// and what each costs in memory and CPU.
    #[cfg(feature = "deflate")]
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 100_000,
            max_head_size: 16 << 10,
            max_headers: 64,
            max_http_body: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(120)),
            ping_interval: Some(Duration::from_secs(30)),
            close_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            queue_capacity: 1024,
            queue_max_bytes: 16 << 20,
            queue_policy: QueuePolicy::Block(Duration::from_secs(5)),
            max_connections: 16_384,
            max_connections_per_ip: None,
            thread_stack_size: 128 << 10,
            read_buffer_size: 512,
            origin: OriginPolicy::SameHost,
            memory_budget: crate::memory::default_budget(),
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl Config {
    setters! {
        /// Sets [`Config::max_frame_size`].
        max_frame_size: usize;
        /// Sets [`Config::max_message_size`].
        max_message_size: usize;
        /// Sets [`Config::max_fragments`].
        max_fragments: usize;
        /// Sets [`Config::max_head_size`].
        max_head_size: usize;
        /// Sets [`Config::max_headers`].
        max_headers: usize;
        /// Sets [`Config::max_http_body`].
        max_http_body: usize;
        /// Sets [`Config::handshake_timeout`].
        handshake_timeout: Duration;
        /// Sets [`Config::idle_timeout`].
        idle_timeout: Option<Duration>;
        /// Sets [`Config::ping_interval`].
        ping_interval: Option<Duration>;
        /// Sets [`Config::close_timeout`].
        close_timeout: Duration;
        /// Sets [`Config::write_timeout`].
        write_timeout: Duration;
        /// Sets [`Config::queue_capacity`].
        queue_capacity: usize;
        /// Sets [`Config::queue_max_bytes`].
        queue_max_bytes: usize;
        /// Sets [`Config::queue_policy`].
        queue_policy: QueuePolicy;
        /// Sets [`Config::max_connections`].
        max_connections: usize;
        /// Sets [`Config::max_connections_per_ip`].
        max_connections_per_ip: Option<usize>;
        /// Sets [`Config::thread_stack_size`].
        thread_stack_size: usize;
        /// Sets [`Config::read_buffer_size`].
        read_buffer_size: usize;
        /// Sets [`Config::origin`].
        origin: OriginPolicy;
        /// Sets [`Config::memory_budget`].
        memory_budget: usize;
    }

    /// Sets [`Config::deflate`].
    ///
    /// ```
    /// use syncws::{Config, DeflateConfig};
    /// let config = Config::default().deflate(Some(DeflateConfig::default()));
    /// # config.validate().unwrap();
    /// ```
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn deflate(mut self, value: Option<DeflateConfig>) -> Self {
        self.deflate = value;
        self
    }

    /// Checks that the values fit together; every entry point calls this.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::Config(s.to_owned()));
        if self.max_frame_size == 0 || self.max_message_size == 0 {
            return bad("max_frame_size and max_message_size must be above 0");
        }
        if self.max_fragments == 0 {
            return bad("max_fragments must be above 0");
        }
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS_LIMIT {
            return bad("max_headers must be between 1 and MAX_HEADERS_LIMIT");
        }
        if self.max_head_size < 256 {
            return bad("max_head_size must be at least 256 bytes");
        }
        if self.queue_capacity == 0 || self.queue_max_bytes == 0 {
            return bad("queue_capacity and queue_max_bytes must be above 0");
        }
        if self.memory_budget == 0 {
            return bad("memory_budget must be above 0");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be above 0");
        }
        if self.read_buffer_size < 256 {
            return bad("read_buffer_size must be at least 256 bytes");
        }
        if self.thread_stack_size < 32 << 10 {
            return bad("thread_stack_size must be at least 32 KiB");
        }
        let zero = Duration::ZERO;
        if self.handshake_timeout == zero || self.close_timeout == zero || self.write_timeout == zero {
            return bad("timeouts must be above zero");
        }
        if self.idle_timeout == Some(zero) || self.ping_interval == Some(zero) {
            return bad("idle_timeout and ping_interval must be above zero when set");
        }
        #[cfg(feature = "deflate")]
        if let Some(d) = &self.deflate {
            d.validate()?;
        }
        Ok(())
    }
}

/// permessage-deflate (RFC 7692) settings, for [`Config::deflate`]
/// (feature `deflate`).
///
/// One value serves both sides. The parameter names are RFC 7692's, which
/// name the compressing side: `server_*` is about what the server sends,
/// `client_*` about what the client sends. A server answers them, a client
/// offers them.
///
/// What it costs. A connection that has not yet sent or received a
/// compressed message holds no compression state at all. After traffic:
///
/// - with `*_no_context_takeover` (the default, both directions), every
///   compressed message is compressed (or inflated) from scratch by a
///   state borrowed from a small process-wide pool and handed back after
///   the message: the connection keeps nothing, at the cost of a worse
///   ratio for runs of small similar messages;
/// - with context takeover, a connection that sent a compressed message
///   keeps its compressor (about 370 KiB for a 15-bit window, 240 KiB for
///   9 bits: zlib-rs's hash table alone is 128 KiB), and one that received
///   one keeps its inflater (about 40 KiB). The README's limits table has
///   the measured figures.
///
/// ```
/// use syncws::{Config, DeflateConfig};
/// let deflate = DeflateConfig::default().threshold(4096).server_no_context_takeover(false);
/// let config = Config::default().deflate(Some(deflate));
/// # config.validate().unwrap();
/// ```
#[cfg(feature = "deflate")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Text and Binary messages shorter than this many bytes are sent
    /// uncompressed. Default 1024 (as Node's `ws`). Measured on JSON-like
    /// text at level 1, compressed from scratch: 128 bytes come out at
    /// 96 %, 256 at 71 %, 512 at 55 %, 1 KiB at 45 %, while every
    /// compressed message costs at least about 3 µs (resetting zlib-rs's
    /// 128 KiB hash table) plus the peer's inflating, which doubles the
    /// CPU of sending a small message; from 1 KiB on, each message saves
    /// over 500 bytes. 0 compresses every message.
    /// A single message can also skip compression with
    /// [`Sender::send_uncompressed`](crate::Sender::send_uncompressed).
    pub threshold: usize,
    /// zlib compression level, 0 (stored) to 9 (smallest). Default 1,
    /// the fastest that compresses: on 16 KiB JSON-like texts it leaves
    /// 28 % of the bytes for 47 µs per message, where zlib's own default
    /// of 6 (what Node's ws, Python websockets and browsers use) leaves 19 %
    /// for 190 µs (zlib-rs on this project's 2-core machine). A server
    /// whose bandwidth costs more than its CPU sets 6 or more.
    pub level: u32,
    /// The server resets its compression context after every message.
    /// Default true. A server with it answers `server_no_context_takeover`
    /// (allowed unasked, RFC 7692 §7.1.1.1) and keeps no compressor
    /// between messages; a client with it asks the server for it (with a
    /// second offer without it, for servers that refuse) so that it keeps
    /// no inflater between messages. A server always honours a client that
    /// asks for it.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    /// Default true. A server with it answers `client_no_context_takeover`
    /// (allowed unasked, §7.1.1.2) and keeps no inflater between messages;
    /// a client with it offers `client_no_context_takeover` and keeps no
    /// compressor between messages. A client always honours a server that
    /// asks for it.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (base-2 logarithm, 8 to 15) the server
    /// compresses with. Default `None`: 15, or what the client asks for.
    /// A server announces it (`server_max_window_bits`, §7.1.2.1); a client
    /// asks for it. A window of 8 cannot be produced by zlib: a server
    /// asked for it sends that connection's messages uncompressed.
    pub server_max_window_bits: Option<u8>,
    /// Largest LZ77 window (8 to 15) the client compresses with. Default
    /// `None`: 15, or what the server asks for. A client offers
    /// `client_max_window_bits` with this value (bare when `None`: it
    /// accepts whatever the server says); a server asks for it only when
    /// the client offered the parameter. Inflating always uses a 15-bit
    /// window, so this saves the peer memory, not us.
    pub client_max_window_bits: Option<u8>,
}

#[cfg(feature = "deflate")]
impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            threshold: 1024,
            level: 1,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: None,
            client_max_window_bits: None,
        }
    }
}

#[cfg(feature = "deflate")]
impl DeflateConfig {
    setters! {
        /// Sets [`DeflateConfig::threshold`].
        threshold: usize;
        /// Sets [`DeflateConfig::level`].
        level: u32;
        /// Sets [`DeflateConfig::server_no_context_takeover`].
        server_no_context_takeover: bool;
        /// Sets [`DeflateConfig::client_no_context_takeover`].
        client_no_context_takeover: bool;
        /// Sets [`DeflateConfig::server_max_window_bits`].
        server_max_window_bits: Option<u8>;
        /// Sets [`DeflateConfig::client_max_window_bits`].
        client_max_window_bits: Option<u8>;
    }

    /// Checks the values; [`Config::validate`] calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::Config(s.to_owned()));
        if self.level > 9 {
            return bad("deflate level must be between 0 and 9");
        }
        for bits in [self.server_max_window_bits, self.client_max_window_bits].into_iter().flatten() {
            if !(8..=15).contains(&bits) {
                return bad("deflate window bits must be between 8 and 15");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_admits_autobahn() {
        let c = Config::default();
        c.validate().unwrap();
        assert!(c.max_message_size >= 16 << 20);
        assert!(c.max_fragments >= 65_536);
        assert!(c.max_connections >= 10_000);
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(Config::default().max_frame_size(0).validate().is_err());
        assert!(Config::default().max_headers(MAX_HEADERS_LIMIT + 1).validate().is_err());
        assert!(Config::default().idle_timeout(Some(Duration::ZERO)).validate().is_err());
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn deflate_values_are_checked() {
        let with = |d: DeflateConfig| Config::default().deflate(Some(d)).validate();
        with(DeflateConfig::default()).unwrap();
        with(DeflateConfig::default().server_max_window_bits(Some(8)).client_max_window_bits(Some(15))).unwrap();
        assert!(with(DeflateConfig::default().level(10)).is_err());
        assert!(with(DeflateConfig::default().server_max_window_bits(Some(7))).is_err());
        assert!(with(DeflateConfig::default().client_max_window_bits(Some(16))).is_err());
    }
}

//! Counters for operators, always on: connections accepted, open and
//! refused (by reason), closed (by close code), messages and bytes each
//! way, messages dropped for a full queue or the memory budget.
//!
//! One set of [`AtomicU64`]s per [`Listener`](crate::Listener) (and per
//! `serve_unix` server), shared by its connections through an `Arc`, updated with `Relaxed` adds (nothing
//! is ordered by them; a snapshot reads each counter on its own).
//! Connections that no listener made ([`Server::new`](crate::Server::new),
//! [`accept`](crate::accept), [`accept_with`](crate::accept_with),
//! [`upgrade`](crate::upgrade()), [`Client`](crate::Client), ...) count in
//! one process-wide set, [`Metrics::global`].
//!
//! # Cost, and why the counts are live
//!
//! Counting on the connection's thread in plain fields and adding them to
//! the shared counters when the connection ends would cost no atomic
//! operation per message, but an operator would see a long-lived
//! connection's traffic only once it ended: a dashboard of messages per
//! second would show nothing for hours, then a spike. So the counts that
//! move while a connection lives are added as they happen, batched where
//! the I/O already is:
//!
//! - read side: one add per message, one per read system call (its bytes);
//! - write side: one add per batch written (its messages, however many)
//!   and one per write system call (its bytes), never per byte;
//! - per connection: a handful of adds (accepted, open, opened, closed),
//!   and one compare-and-swap for the first Close.
//!
//! An uncontended `Relaxed` add is one instruction (`lock xadd` on x86);
//! the ping-pong and 64 KiB echo of `benches/callgrind.sh` cost as many
//! instructions per message as without counters, within the ±1 % by which
//! code layout moves them (1831 and 21800, against 1827 and 21893).
//!
//! Uncontended is the point: an add to a cache line another core wrote
//! last waits for the line to move, which costs more than the add. So the
//! message and byte counters, the ones that move per message, are spread
//! over [`SHARDS`] cache lines ([`Shard`]), each thread adding to its own
//! (handed out round robin, [`thread_shard`]), and a snapshot sums them.
//! With one line for all, 64 connections in ping-pong on two cores moved
//! it between the cores for most messages: spread, the server's user
//! time per message went from 0.85 to 0.75 µs (medians of 10 rounds,
//! bench-results/notes.md). Within a shard the read side's counters and
//! the write side's sit on lines of their own ([`Flow`]), as a
//! connection's two sides may run on different threads.
//!
//! [`Metrics`] is the live handle, [`Stats`] a snapshot of it, and
//! [`Stats::to_prometheus`] renders one in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// Why a connection was refused, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// [`Config::max_connections`](crate::Config::max_connections).
    Connections,
    /// [`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip).
    ConnectionsPerIp,
    /// The upgrade's `Origin` failed [`Config::origin`](crate::Config::origin).
    Origin,
    /// A malformed, oversized or incomplete request, or an invalid upgrade.
    Handshake,
    /// Out of file descriptors.
    Descriptors,
    /// No thread could be started.
    Threads,
}

impl Refusal {
    const COUNT: usize = 6;
}

/// The close codes counted apart; any other goes to `other`.
const CODES: [u16; 9] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013];
/// Buckets: [`CODES`], then other, then none.
const BUCKETS: usize = CODES.len() + 2;
const OTHER: usize = CODES.len();
const NONE: usize = CODES.len() + 1;

/// The bucket of a close code (`None`: no code was exchanged).
fn bucket(code: Option<u16>) -> usize {
    match code {
        None => NONE,
        Some(c) => CODES.iter().position(|&k| k == c).unwrap_or(OTHER),
    }
}

/// Two counters on a cache line of their own: the read side's and the write
/// side's adds, made by different threads, do not contend for one line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Flow {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// The message and byte counters are spread over this many cache-line
/// pairs: a thread per connection means as many threads as connections, and
/// 64 keeps threads that share a shard few at the connection counts where
/// they run often (8 KiB per listener).
const SHARDS: usize = 64;

/// One thread's share of the message and byte counters.
#[derive(Debug, Default)]
struct Shard {
    input: Flow,
    output: Flow,
}

/// The shard the calling thread adds to: handed out round robin when the
/// thread first counts, then the same for the thread's life.
#[inline(always)]
fn thread_shard() -> usize {
    thread_local! {
        static SHARD: std::cell::Cell<u8> = const { std::cell::Cell::new(u8::MAX) };
    }
    let shard = SHARD.get();
    if usize::from(shard) < SHARDS {
        return usize::from(shard);
    }
    new_thread_shard(&SHARD)
}

/// [`thread_shard`] for a thread that has none yet.
#[cold]
fn new_thread_shard(slot: &'static std::thread::LocalKey<std::cell::Cell<u8>>) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let shard = NEXT.fetch_add(1, Relaxed) % SHARDS;
    // SHARDS fits in a u8 (checked at compile time below).
    slot.set(shard as u8);
    shard
}

const _: () = assert!(SHARDS < u8::MAX as usize);

/// Every thread's [`Shard`].
#[derive(Debug)]
struct Shards([Shard; SHARDS]);

impl Default for Shards {
    fn default() -> Self {
        Shards(std::array::from_fn(|_| Shard::default()))
    }
}

/// The counters themselves, shared by a listener, its acceptor and its
/// connections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    flows: Shards,
    accepted: AtomicU64,
    open: AtomicU64,
    websockets_opened: AtomicU64,
    refused: [AtomicU64; Refusal::COUNT],
    closed: [AtomicU64; BUCKETS],
    queue_full: AtomicU64,
    memory_budget: AtomicU64,
}

impl Counters {
    /// The calling thread's share of the message and byte counters.
    #[inline(always)]
    fn flow(&self) -> &Shard {
        &self.flows.0[thread_shard()]
    }

    /// The process-wide counters, for connections no listener made.
    pub(crate) fn global() -> &'static Arc<Counters> {
        static GLOBAL: OnceLock<Arc<Counters>> = OnceLock::new();
        GLOBAL.get_or_init(Arc::default)
    }

    /// `n` messages were read.
    #[inline(always)]
    pub(crate) fn messages_in(&self, n: usize) {
        self.flow().input.messages.fetch_add(n as u64, Relaxed);
    }

    /// A read system call returned `n` bytes.
    #[inline(always)]
    pub(crate) fn bytes_in(&self, n: usize) {
        self.flow().input.bytes.fetch_add(n as u64, Relaxed);
    }

    /// `n` messages were written.
    #[inline(always)]
    pub(crate) fn messages_out(&self, n: usize) {
        self.flow().output.messages.fetch_add(n as u64, Relaxed);
    }

    /// `n` bytes were written.
    #[inline(always)]
    pub(crate) fn bytes_out(&self, n: usize) {
        self.flow().output.bytes.fetch_add(n as u64, Relaxed);
    }

    /// A listener took a connection on (it has a thread).
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// A listener counts a connection against its caps: it is open until
    /// [`ended`](Self::ended).
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
    }

    /// A connection [`opened`](Self::opened) ended (or never started).
    pub(crate) fn ended(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    /// A WebSocket handshake completed.
    pub(crate) fn websocket_opened(&self) {
        self.websockets_opened.fetch_add(1, Relaxed);
    }

    /// A WebSocket connection ended; its close handshake began with `code`
    /// (`None`: no Close was sent or received).
    pub(crate) fn websocket_closed(&self, code: Option<u16>) {
        self.closed[bucket(code)].fetch_add(1, Relaxed);
    }

    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// A send was refused with [`SendError::QueueFull`](crate::SendError::QueueFull).
    pub(crate) fn queue_full(&self) {
        self.queue_full.fetch_add(1, Relaxed);
    }

    /// A message (sent or arriving) was refused for the memory budget.
    pub(crate) fn memory_budget(&self) {
        self.memory_budget.fetch_add(1, Relaxed);
    }

    /// One message or byte counter, summed over the shards.
    fn sum(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.flows.0.iter().map(|f| counter(f).load(Relaxed)).fold(0, u64::wrapping_add)
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Relaxed);
        let r = |why: Refusal| get(&self.refused[why as usize]);
        Stats {
            accepted: get(&self.accepted),
            open: get(&self.open),
            websockets_opened: get(&self.websockets_opened),
            refused: Refused {
                connections: r(Refusal::Connections),
                connections_per_ip: r(Refusal::ConnectionsPerIp),
                origin: r(Refusal::Origin),
                handshake: r(Refusal::Handshake),
                descriptors: r(Refusal::Descriptors),
                threads: r(Refusal::Threads),
            },
            closed: Closed { counts: std::array::from_fn(|i| get(&self.closed[i])) },
            messages_in: self.sum(|f| &f.input.messages),
            bytes_in: self.sum(|f| &f.input.bytes),
            messages_out: self.sum(|f| &f.output.messages),
            bytes_out: self.sum(|f| &f.output.bytes),
            queue_full: get(&self.queue_full),
            memory_budget: get(&self.memory_budget),
        }
    }
}

/// The live counters of a [`Listener`](crate::Listener) and its
/// connections, or the process-wide ones ([`Metrics::global`]). Cheap to
/// clone; [`snapshot`](Metrics::snapshot) reads them.
///
/// ```
/// let listener = syncws::Listener::bind("127.0.0.1:0")?;
/// let metrics = listener.metrics(); // before spawn: the callbacks may use it
/// let running = listener.spawn(|_server| { /* callbacks */ })?;
/// // Later, from any thread:
/// println!("{} connections open", metrics.snapshot().open);
/// running.shutdown();
/// assert_eq!(metrics.snapshot().open, 0);
/// # Ok::<(), syncws::Error>(())
/// ```
#[derive(Clone)]
pub struct Metrics(pub(crate) Arc<Counters>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&self.snapshot()).finish()
    }
}

impl Metrics {
    /// The process-wide counters: every WebSocket connection that no
    /// [`Listener`](crate::Listener) (or `serve_unix` server) made counts
    /// here, server side ([`Server::new`](crate::Server::new),
    /// [`accept`](crate::accept), [`accept_with`](crate::accept_with),
    /// [`upgrade`](crate::upgrade()),
    /// [`WebSocket::from_upgraded`](crate::WebSocket::from_upgraded)) and
    /// client side ([`Client`](crate::Client)) alike. `accepted` and `open`
    /// stay 0 (they are a listener's), as do the refusals only a listener
    /// makes (caps, descriptors, threads).
    pub fn global() -> Metrics {
        Metrics(Arc::clone(Counters::global()))
    }

    /// A snapshot of the counters. Each is read on its own (`Relaxed`), so
    /// a snapshot taken while connections run may be a few events apart
    /// between counters; every counter only grows, except `open`.
    pub fn snapshot(&self) -> Stats {
        self.0.snapshot()
    }
}

/// A snapshot of a listener's counters, from [`Running::stats`](crate::Running::stats)
/// or [`Metrics::snapshot`]. Every field counts since the listener was bound
/// (or the process started, for [`Metrics::global`]), except `open`.
///
/// A connection that arrives is either refused at once (the caps, out of
/// descriptors or threads: [`Refused::connections`],
/// [`connections_per_ip`](Refused::connections_per_ip),
/// [`descriptors`](Refused::descriptors), [`threads`](Refused::threads)) or
/// `accepted`. An accepted connection serves plain HTTP requests, or is
/// refused at its handshake ([`Refused::origin`], [`Refused::handshake`]),
/// or becomes a WebSocket connection (`websockets_opened`), which is
/// counted in [`closed`](Stats::closed) once it ends.
///
/// ```
/// let stats = syncws::Metrics::global().snapshot();
/// let open_websockets = stats.websockets_open();
/// assert_eq!(stats.closed.total() + open_websockets, stats.websockets_opened);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// TCP connections the listener took on (not refused at once).
    pub accepted: u64,
    /// Of those, connections being served now, HTTP or WebSocket: a gauge,
    /// the same count as [`Running::connections`](crate::Running::connections).
    pub open: u64,
    /// WebSocket handshakes completed (on a client: connections made).
    pub websockets_opened: u64,
    /// Connections refused, by reason.
    pub refused: Refused,
    /// WebSocket connections ended, by the code of the Close that began
    /// their close handshake.
    pub closed: Closed,
    /// Messages read, control messages (Ping, Pong, Close) included.
    /// Counted per batch: the messages of one read count before the
    /// connection's thread writes its replies and waits for more (or when
    /// the connection ends), so a snapshot taken meanwhile may not have
    /// the batch being handled; `messages_out` counts per written batch
    /// alike.
    pub messages_in: u64,
    /// Bytes read after the handshakes, as on the wire (frame headers
    /// included; TLS records not).
    pub bytes_in: u64,
    /// Messages written, control messages included.
    pub messages_out: u64,
    /// Bytes written after the handshakes, as on the wire.
    pub bytes_out: u64,
    /// Messages dropped because the connection's outbound queue was full:
    /// sends that returned [`SendError::QueueFull`](crate::SendError::QueueFull),
    /// whatever the [`QueuePolicy`](crate::QueuePolicy) (`Drop` at once,
    /// `Block` after its wait, `Close` closing the connection too).
    pub queue_full: u64,
    /// Messages dropped for the process-wide memory budget
    /// ([`Limit::MemoryBudget`](crate::Limit::MemoryBudget)): a send whose
    /// queue would grow past it, or an arriving message whose buffer would;
    /// each closes its connection with 1013.
    pub memory_budget: u64,
}

/// Connections refused, by reason: a field of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refused {
    /// At [`Config::max_connections`](crate::Config::max_connections): answered 503.
    pub connections: u64,
    /// At [`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip): answered 503.
    pub connections_per_ip: u64,
    /// Upgrades whose `Origin` the [`Config::origin`](crate::Config::origin)
    /// policy refused: answered 403.
    pub origin: u64,
    /// Requests that were malformed, too large, incomplete at the
    /// handshake deadline, or invalid upgrades: answered 4xx. (A peer that
    /// sends nothing at all before the deadline is not counted, nor an
    /// upgrade the application refuses in
    /// [`WsTrait::on_request`](crate::WsTrait::on_request).)
    pub handshake: u64,
    /// Out of file descriptors: answered 503 with the spare descriptor.
    pub descriptors: u64,
    /// No connection thread could be started: answered 503.
    pub threads: u64,
}

impl Refused {
    /// Refusals of every reason.
    pub fn total(&self) -> u64 {
        self.connections + self.connections_per_ip + self.origin + self.handshake + self.descriptors + self.threads
    }
}

/// WebSocket connections ended, by close code: a field of [`Stats`].
///
/// A connection counts under the code of the Close that began its close
/// handshake, whichever side sent it: the peer's code when the peer closed
/// first, ours when we did (1001 at shutdown, 1002 for a protocol
/// violation, 1009 for a message too big, ...). The codes of
/// [`CODES`](Closed::CODES) are counted apart; any other code counts in
/// [`other`](Closed::other). A Close without a code counts as 1005 (RFC
/// 6455 §7.1.5), so in `other` too. Connections that ended with no Close
/// at all, either way (the peer vanished: TCP reset or end of stream; an
/// I/O error; a write timeout), count in [`none`](Closed::none).
///
/// ```
/// let closed = syncws::Metrics::global().snapshot().closed;
/// for (label, count) in closed.iter() {
///     println!("closed with {label}: {count}");
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    counts: [u64; BUCKETS],
}

impl Closed {
    /// The codes counted apart.
    pub const CODES: [u16; 9] = CODES;

    /// Connections closed with `code`, if it is one of [`CODES`](Closed::CODES);
    /// for any other code, the count of [`other`](Closed::other).
    pub fn code(&self, code: u16) -> u64 {
        self.counts[bucket(Some(code))]
    }

    /// Connections closed with a code not in [`CODES`](Closed::CODES).
    pub fn other(&self) -> u64 {
        self.counts[OTHER]
    }

    /// Connections that ended without a Close frame, sent or received.
    pub fn none(&self) -> u64 {
        self.counts[NONE]
    }

    /// Connections ended, whatever the code.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every bucket with its label: the code (`"1000"`, ...), then
    /// `"other"` and `"none"`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        const LABELS: [&str; BUCKETS] =
            ["1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "1013", "other", "none"];
        LABELS.into_iter().zip(self.counts)
    }
}

impl Stats {
    /// WebSocket connections open now: opened and not yet closed.
    pub fn websockets_open(&self) -> u64 {
        self.websockets_opened.saturating_sub(self.closed.total())
    }

    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4; serve it as `text/plain; version=0.0.4`): `# HELP` and
    /// `# TYPE` lines, names prefixed `syncws_`, counters ending in
    /// `_total`, labels `reason` and `code`.
    ///
    /// | metric | type | labels |
    /// | --- | --- | --- |
    /// | `syncws_connections_accepted_total` | counter | |
    /// | `syncws_connections_open` | gauge | |
    /// | `syncws_connections_refused_total` | counter | `reason`: `max_connections`, `max_connections_per_ip`, `origin`, `handshake`, `descriptors`, `threads` |
    /// | `syncws_websockets_opened_total` | counter | |
    /// | `syncws_websockets_open` | gauge | |
    /// | `syncws_websockets_closed_total` | counter | `code`: `1000`, `1001`, `1002`, `1003`, `1007`, `1008`, `1009`, `1011`, `1013`, `other`, `none` |
    /// | `syncws_received_messages_total`, `syncws_sent_messages_total` | counter | |
    /// | `syncws_received_bytes_total`, `syncws_sent_bytes_total` | counter | |
    /// | `syncws_dropped_messages_total` | counter | `reason`: `queue_full`, `memory_budget` |
    ///
    /// ```
    /// let text = syncws::Metrics::global().snapshot().to_prometheus();
    /// assert!(text.contains("# TYPE syncws_connections_open gauge\n"));
    /// assert!(text.contains("syncws_websockets_closed_total{code=\"1000\"} "));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP syncws_{name} {help}");
            let _ = writeln!(out, "# TYPE syncws_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "syncws_{name}{labels} {value}");
            }
        };
        let r = &self.refused;
        one("connections_accepted_total", "counter", "TCP connections taken on.", &[("", self.accepted)]);
        one("connections_open", "gauge", "Connections being served now, HTTP or WebSocket.", &[("", self.open)]);
        one(
            "connections_refused_total",
            "counter",
            "Connections refused, by reason.",
            &[
                ("{reason=\"max_connections\"}", r.connections),
                ("{reason=\"max_connections_per_ip\"}", r.connections_per_ip),
                ("{reason=\"origin\"}", r.origin),
                ("{reason=\"handshake\"}", r.handshake),
                ("{reason=\"descriptors\"}", r.descriptors),
                ("{reason=\"threads\"}", r.threads),
            ],
        );
        one("websockets_opened_total", "counter", "WebSocket handshakes completed.", &[("", self.websockets_opened)]);
        one("websockets_open", "gauge", "WebSocket connections open now.", &[("", self.websockets_open())]);
        let labels: Vec<(String, u64)> =
            self.closed.iter().map(|(code, n)| (format!("{{code=\"{code}\"}}"), n)).collect();
        let closed: Vec<(&str, u64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        one(
            "websockets_closed_total",
            "counter",
            "WebSocket connections ended, by the code of the Close that began the close handshake.",
            &closed,
        );
        one(
            "received_messages_total",
            "counter",
            "Messages read, control messages included.",
            &[("", self.messages_in)],
        );
        one(
            "sent_messages_total",
            "counter",
            "Messages written, control messages included.",
            &[("", self.messages_out)],
        );
        one("received_bytes_total", "counter", "WebSocket bytes read, as on the wire.", &[("", self.bytes_in)]);
        one("sent_bytes_total", "counter", "WebSocket bytes written, as on the wire.", &[("", self.bytes_out)]);
        one(
            "dropped_messages_total",
            "counter",
            "Messages dropped: sends to a full outbound queue, messages over the memory budget.",
            &[("{reason=\"queue_full\"}", self.queue_full), ("{reason=\"memory_budget\"}", self.memory_budget)],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads add to shards of their own; a snapshot still sees every
    /// count, whichever thread made it.
    #[test]
    fn counts_from_many_threads_add_up() {
        let c = Arc::new(Counters::default());
        let threads = SHARDS + 6; // some threads share a shard
        let shards: Vec<usize> = (0..threads)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        c.messages_in(1);
                        c.bytes_in(t + 1);
                        c.messages_out(2);
                        c.bytes_out(3);
                    }
                    thread_shard()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let s = c.snapshot();
        assert_eq!(s.messages_in, 100 * threads as u64);
        assert_eq!(s.bytes_in, 100 * (threads * (threads + 1) / 2) as u64);
        assert_eq!((s.messages_out, s.bytes_out), (200 * threads as u64, 300 * threads as u64));
        // Round robin: the threads spread over the shards (other tests'
        // threads may take some turns in between, so not necessarily all).
        let mut distinct = shards.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= SHARDS / 2, "{shards:?}");
    }

    #[test]
    fn close_codes_fall_in_their_buckets() {
        let c = Counters::default();
        for code in [Some(1000), Some(1000), Some(1002), Some(4000), Some(1010), None] {
            c.websocket_closed(code);
        }
        let closed = c.snapshot().closed;
        assert_eq!((closed.code(1000), closed.code(1002), closed.code(1001)), (2, 1, 0));
        assert_eq!((closed.other(), closed.none(), closed.total()), (2, 1, 6));
        assert_eq!(closed.code(4000), closed.other(), "an unlisted code reads its bucket");
        assert_eq!(closed.iter().count(), Closed::CODES.len() + 2);
    }

    #[test]
    fn the_prometheus_text_has_help_type_and_one_sample_per_label() {
        let c = Counters::default();
        c.accepted();
        c.accepted();
        c.opened();
        c.refused(Refusal::Origin);
        c.websocket_opened();
        c.messages_in(1);
        c.bytes_in(11);
        let text = c.snapshot().to_prometheus();
        assert!(text.ends_with('\n'));
        for line in [
            "# HELP syncws_connections_open Connections being served now, HTTP or WebSocket.",
            "# TYPE syncws_connections_open gauge",
            "syncws_connections_open 1",
            "# TYPE syncws_connections_accepted_total counter",
            "syncws_connections_accepted_total 2",
            "syncws_connections_refused_total{reason=\"origin\"} 1",
            "syncws_connections_refused_total{reason=\"threads\"} 0",
            "syncws_websockets_open 1",
            "syncws_websockets_closed_total{code=\"none\"} 0",
            "syncws_received_messages_total 1",
            "syncws_received_bytes_total 11",
            "syncws_dropped_messages_total{reason=\"memory_budget\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        // Every sample belongs to a family announced just before it; every
        // counter's name ends in `_total`.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "gauge" || name.ends_with("_total"), "{line}");
                family = name.to_owned();
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
                line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
            }
        }
    }
}

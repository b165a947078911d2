//! A connection after its handshake, and what every connection does the
//! same way, whether driven by callbacks ([`runner`](super::runner)) or by
//! plain `read()` calls ([`WebSocket`](super::WebSocket)): the one
//! constructor, keepalive and idle deadlines, the answer to a Close, the
//! Close that reports an error, and the end of TCP. Each step goes through
//! the connection's [state machine](super::state).

use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

use crate::config::Config;
use crate::conn::read::{Read, ReadSide};
use crate::conn::sender::Sender;
use crate::conn::state::{Event, Life, State};
use crate::conn::write::WriteSide;
use crate::error::{Error, Limit, Phase, Result};
use crate::handshake::extensions::Negotiated;
use crate::message::{CloseData, OwnedMessage};
use crate::protocol::Role;
use crate::stats::Counters;
use crate::transport::{ReadHalf, WriteHalf};

/// The connection's [`Config`]. With the `deflate` feature, where
/// `Config` is larger, it is shared: a listener hands every connection the
/// same one, so an idle connection holds no copy (a boxed copy cost each
/// about 0.6 KiB of heap; by value in the connection, which `open` builds
/// on the stack under the handshake's frames, it took an idle
/// connection's stack into a third page, 4 KiB more:
/// `tests/idle_memory.rs`). Without the feature a copy by value fits, and
/// measured 0.15 KiB less per idle connection than the shared one (the
/// connection's box and the allocator's size classes).
#[cfg(feature = "deflate")]
type ConnConfig = Arc<Config>;
#[cfg(not(feature = "deflate"))]
type ConnConfig = Config;

#[cfg(feature = "deflate")]
fn conn_config(config: Arc<Config>) -> ConnConfig {
    config
}

#[cfg(not(feature = "deflate"))]
fn conn_config(config: Arc<Config>) -> ConnConfig {
    Arc::unwrap_or_clone(config)
}

/// A connection after its handshake.
pub(crate) struct Connection {
    pub(crate) role: Role,
    pub(crate) read: ReadSide,
    pub(crate) write: WriteSide,
    pub(crate) config: ConnConfig,
    keepalive: Keepalive,
    /// The callback runner's [`Sender`]: the connection's own replies are
    /// batched with the application's sends on its thread. `None` for the
    /// plain API, which writes at once.
    sender: Option<Sender>,
}

impl Connection {
    /// The one way a connection opens after a handshake, on either side:
    /// `leftover` holds bytes that arrived with the handshake (the first
    /// frames); `negotiated`, the extensions the handshake settled.
    ///
    /// Boxed, and out of line ([`open_counted`](Self::open_counted)): the
    /// connection's state is large, and a connection thread keeps every
    /// stack page it once touched, so it is built there rather than in the
    /// (longer-lived) callers' frames.
    ///
    /// The connection counts in the process-wide counters
    /// ([`Metrics::global`](crate::Metrics::global)).
    pub(crate) fn open(
        reader: Box<dyn ReadHalf>,
        writer: Box<dyn WriteHalf>,
        leftover: Vec<u8>,
        role: Role,
        config: &Config,
        negotiated: &Negotiated,
    ) -> Result<Box<Connection>> {
        let config = Arc::new(config.clone());
        Connection::open_counted(reader, writer, leftover, role, config, negotiated, Arc::clone(Counters::global()))
    }

    /// [`open`](Self::open), counting the connection, its messages and
    /// bytes, and its close code in `metrics` (a listener's, or the
    /// process-wide ones).
    #[inline(never)]
    pub(crate) fn open_counted(
        reader: Box<dyn ReadHalf>,
        writer: Box<dyn WriteHalf>,
        leftover: Vec<u8>,
        role: Role,
        config: Arc<Config>,
        negotiated: &Negotiated,
        metrics: Arc<Counters>,
    ) -> Result<Box<Connection>> {
        let write = WriteSide::counted(writer, role, config.write_timeout, negotiated, Arc::clone(&metrics))?;
        metrics.websocket_opened();
        let read = ReadSide::new(reader, role, &config, leftover, negotiated, Instant::now(), metrics);
        let keepalive = Keepalive::new(&config);
        Ok(Box::new(Connection { role, read, write, config: conn_config(config), keepalive, sender: None }))
    }

    /// Gives the connection a [`Sender`] for callbacks, and returns it.
    pub(crate) fn sender(&mut self) -> Sender {
        let write = &self.write;
        let config = &self.config;
        self.sender.get_or_insert_with(|| Sender::new(write.clone(), config)).clone()
    }

    /// Where the connection is in its life.
    pub(crate) fn state(&self) -> State {
        self.write.life().get()
    }

    /// Whether the close handshake is complete or the connection failed or
    /// ended: nothing more is read from it.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.state();
        state == State::Closed || state.is_over()
    }

    /// Reads the next message, sending keepalive pings and keeping the idle
    /// and close deadlines meanwhile. `until` is a deadline of the
    /// caller's (the callback interval): [`Read::Deadline`] once it passes.
    ///
    /// Before each wait for the network, what the callbacks sent on this
    /// thread is written, in one batch.
    pub(crate) fn next(&mut self, until: Option<Instant>) -> Result<Read> {
        loop {
            let (keepalive, life, sender) = (&self.keepalive, self.write.life(), &self.sender);
            let mut deadline = |read: &ReadSide| earliest(until, keepalive.next(read, life));
            let mut flush = || match sender {
                Some(sender) => sender.flush_local(),
                None => Ok(()),
            };
            match self.read.read(&mut deadline, &mut flush) {
                Ok(Read::Message(msg)) => return Ok(Read::Message(msg)),
                Ok(Read::Deadline) => {}
                Err(e) => return Err(self.read_failed(e)),
            }
            if self.on_deadline(until)? {
                return Ok(Read::Deadline);
            }
        }
    }

    /// Counts a message refused for the memory budget as it arrived.
    #[cold]
    #[inline(never)]
    fn read_failed(&self, err: Error) -> Error {
        if matches!(err, Error::Capacity { what: Limit::MemoryBudget, .. }) {
            self.write.metrics().memory_budget();
        }
        err
    }

    /// A deadline passed: a keepalive ping is sent if one is due, an error
    /// returned if the close reply or the idle timeout is overdue; true if
    /// `until` has passed.
    #[inline(never)]
    fn on_deadline(&mut self, until: Option<Instant>) -> Result<bool> {
        let now = Instant::now();
        if self.keepalive.check(now, &self.read, self.write.life())? {
            self.send_own(OwnedMessage::Ping(Vec::new()))?;
        }
        Ok(until.is_some_and(|u| now >= u))
    }

    /// Sends a message of the connection's own (a pong, a close reply, a
    /// keepalive ping). One the connection can no longer send is dropped:
    /// it is closing.
    pub(crate) fn send_own(&self, msg: OwnedMessage) -> Result<()> {
        let sent = match &self.sender {
            Some(sender) => sender.send(msg),
            None => self.write.send(msg),
        };
        match sent {
            Err(Error::Send(_) | Error::AlreadyClosed) => Ok(()),
            other => other,
        }
    }

    /// Writes what the callbacks sent on this thread.
    pub(crate) fn flush(&self) -> Result<()> {
        match &self.sender {
            Some(sender) => sender.flush_local(),
            None => Ok(()),
        }
    }

    /// The peer's Close arrived. Unless the application answers it
    /// (`defer`), it is answered with the same code (RFC 6455 §5.5.1) when
    /// our own Close has not been sent already; returns once the answer is
    /// written.
    pub(crate) fn peer_closed(&mut self, reason: &Option<CloseData>, defer: bool) -> Result<()> {
        self.write.peer_close_code(reason.as_ref().map(|c| c.status_code));
        if self.write.life().apply(Event::CloseRead) == State::CloseReceived && !defer {
            self.send_own(close_reply(reason))?;
        }
        self.flush()
    }

    /// The peer closed and the application answers it
    /// (`WsOption::defer_close_reply`): nothing more comes from the peer,
    /// so instead of reading, wait until the application's Close is
    /// written, or answer it ourselves after the close timeout.
    #[inline(never)]
    pub(crate) fn await_close_reply(&mut self, reason: &Option<CloseData>) {
        let _ = self.flush();
        let deadline = Instant::now() + self.config.close_timeout;
        if self.write.life().wait_while(State::CloseReceived, deadline) == State::CloseReceived {
            debug!("the application did not answer the peer's close in time; answering it");
            let _ = self.write.send(close_reply(reason));
        }
    }

    /// An error ends the connection: replies to the messages before it go
    /// out first, then a Close with the error's code, where it has one and
    /// our Close was not sent yet.
    #[inline(never)]
    pub(crate) fn fail(&mut self, err: &Error) {
        let _ = self.flush();
        self.write.fail_with(close_for(err));
    }

    /// Ends the connection: what is batched goes out, the writer thread
    /// stops, TCP ends the way RFC 6455 §7.1.1 asks (a server shuts its
    /// write side first; both then wait, bounded, for the peer's EOF, so the
    /// last frames are not lost to a reset), the state becomes
    /// [`State::Ended`], and the socket is let go, even while the
    /// application still holds [`Sender`]s.
    pub(crate) fn end(&mut self) {
        if let Some(sender) = &self.sender {
            let _ = sender.flush_local();
            sender.end();
        }
        let wait = Instant::now() + self.config.close_timeout.min(Duration::from_secs(2));
        if self.role == Role::Server {
            self.write.shutdown(Shutdown::Write);
        }
        self.read.drain_until_eof(wait);
        self.write.shutdown(Shutdown::Both);
        self.write.end();
        self.read.release();
    }

    /// The plain API has told its caller the connection ended.
    pub(crate) fn report(&self) -> State {
        self.write.life().apply(Event::Report)
    }
}

impl Drop for Connection {
    /// A connection dropped before it ended (the plain API's caller let
    /// it go) counts as ended now; one that ended was counted then.
    fn drop(&mut self) {
        self.write.count_end();
    }
}

/// Keepalive ping, idle timeout and close timeout of one connection.
struct Keepalive {
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    close_timeout: Duration,
    last_ping: Option<Instant>,
}

impl Keepalive {
    fn new(config: &Config) -> Self {
        Keepalive {
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            close_timeout: config.close_timeout,
            last_ping: None,
        }
    }

    /// When the next keepalive ping is due: `ping_interval` after the later
    /// of the peer's last byte and our last ping.
    fn ping_due(&self, last_activity: Instant) -> Option<Instant> {
        let since = self.last_ping.map_or(last_activity, |p| p.max(last_activity));
        self.ping_interval.map(|p| since + p)
    }

    /// The nearest of the keepalive, idle and close deadlines.
    fn next(&self, read: &ReadSide, life: &Life) -> Option<Instant> {
        let idle = self.idle_timeout.map(|t| read.last_activity + t);
        let close = life.awaiting_close_reply().map(|at| at + self.close_timeout);
        earliest(earliest(self.ping_due(read.last_activity), idle), close)
    }

    /// Checks the deadlines at `now`: an error when the close reply or the
    /// idle timeout is overdue; `true` when a keepalive ping is due (it is
    /// then counted as sent).
    fn check(&mut self, now: Instant, read: &ReadSide, life: &Life) -> Result<bool> {
        if life.awaiting_close_reply().is_some_and(|at| now >= at + self.close_timeout) {
            return Err(Error::Timeout { phase: Phase::Close });
        }
        if self.idle_timeout.is_some_and(|t| now >= read.last_activity + t) {
            return Err(Error::Timeout { phase: Phase::Idle });
        }
        if self.ping_due(read.last_activity).is_some_and(|due| now >= due) {
            self.last_ping = Some(now);
            return Ok(true);
        }
        Ok(false)
    }
}

/// The earlier of two deadlines, either of which may be absent. Written
/// out: this runs before every wait, and an iterator over an array of
/// options costs several times as many instructions.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The Close frame that tells the peer about `err`, if it has a close code.
fn close_for(err: &Error) -> Option<OwnedMessage> {
    let code = err.close_code()?;
    let text = err.to_string();
    let mut cut = text.len().min(123);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(OwnedMessage::Close(Some(CloseData::new(code, &text[..cut]))))
}

/// The answer to a peer's Close: the same code (RFC 6455 §5.5.1), no reason.
fn close_reply(reason: &Option<CloseData>) -> OwnedMessage {
    OwnedMessage::Close(reason.as_ref().map(|c| CloseData { status_code: c.status_code, reason: String::new() }))
}

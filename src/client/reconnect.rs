//! [`Reconnecting`]: a callback client that connects again after a drop,
//! with capped exponential backoff and full jitter, calls `on_open` again
//! (so the application resubscribes), gives up as its
//! [`ReconnectPolicy`] says, and keeps within a bound, or refuses, what is
//! sent between connections ([`Offline`]).
//!
//! ```text
//!                 connect ok        on_open returned,
//!   Connecting ─────────────▶ Opening ─ backlog sent ─▶ Open
//!     ▲   │ connect fails                               │ drop: no Close (1006), I/O error,
//!     │   │ (retryable)                                 │ deadline; or Close 1001/1012/1013
//!     │   ▼                                             ▼
//!     └── backoff ◀─────────────────────────────────────┘
//!          │ give up (max_attempts, max_elapsed); a refusal (4xx, url, tls);
//!          │ a Close the policy does not retry (1000, 1008, ...); the application's close
//!          ▼
//!       Stopped: run() returns Ended, with what was never sent
//! ```
//!
//! What a send is promised ([`ReconnectSender::send`]):
//!
//! - connected: the message goes to the current connection, as with a
//!   [`Sender`]; `Ok` means it was written or queued for writing;
//! - between connections (from the moment the drop is detected until the
//!   next connection's `on_open` has returned): it is queued, within the
//!   bound of [`Offline::Queue`], and sent on the next connection, in
//!   order, after what `on_open` sent; or it fails with
//!   [`SendError::Disconnected`] ([`Offline::Fail`]) or
//!   [`SendError::QueueFull`]. A message is queued once and sent once;
//!   when the client stops, what is still queued is handed back in
//!   [`Ended::unsent`], never dropped unsaid;
//! - what a connection had already accepted when its peer died (frames in
//!   the kernel's socket buffer, in a write in progress, or in that
//!   connection's outbound queue) may be lost: TCP does not say what the
//!   peer read. Only an acknowledgement from the application at the other
//!   end proves delivery; resend what was not acknowledged from `on_open`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel as cb;
use log::{debug, info, warn};

use crate::callback::WsTrait;
use crate::client::{Client, ClientBuilder};
use crate::conn::runner::{self, End};
use crate::conn::Sender;
use crate::error::{Error, ProxyError, Result, SendError};
use crate::message::{CloseCode, CloseData, OwnedMessage};

/// When and how often a [`Reconnecting`] client tries again, when it gives
/// up, and what becomes of messages sent between connections.
///
/// The delay before attempt *n* (counting failures in a row: failed
/// connects, and connections that did not stay open for `max_delay`) is
/// drawn uniformly from `0..=min(max_delay, initial_delay × multiplier^(n-1))`
/// ("full jitter": clients dropped together by one server restart do not
/// come back together). Without jitter it is that cap itself.
///
/// ```
/// use std::time::Duration;
/// use syncws::{Offline, ReconnectPolicy};
/// let policy = ReconnectPolicy::default()
///     .initial_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(5))
///     .max_elapsed(Some(Duration::from_secs(60)))
///     .close_codes(vec![1001, 1011, 1012, 1013]) // also after a server error
///     .offline(Offline::Fail);
/// policy.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The largest delay before the first retry. Default 500 ms.
    pub initial_delay: Duration,
    /// The largest delay between attempts, whatever the count. Default
    /// 30 s. A connection that stays open this long resets the count of
    /// failures: the next drop is retried within `initial_delay` again.
    pub max_delay: Duration,
    /// How much the delay's cap grows with each failure in a row. Default
    /// 2.0; at least 1.0.
    pub multiplier: f64,
    /// Full jitter: each delay drawn from zero to its cap (the operating
    /// system's randomness, as for masks). Default on. Off: the cap
    /// itself, for tests that want a fixed pace.
    pub jitter: bool,
    /// Give up after this many connect attempts in a row fail, counted
    /// from the last connection that opened (or from the start). Default
    /// `None`: no limit. `Some(0)`: never reconnect.
    pub max_attempts: Option<u32>,
    /// Give up when the next attempt would start more than this long
    /// after the connection was lost (or after the start, if none ever
    /// opened). Default `None`: no limit.
    pub max_elapsed: Option<Duration>,
    /// The Close codes from the server after which to reconnect. Default
    /// 1001 (going away: a server shutting down or restarting), 1012
    /// (service restart) and 1013 (try again later). Not 1000 (the server
    /// ended the conversation on purpose) nor 1008 (policy: retrying is
    /// refused again); add 1000 to reconnect after any Close, or 1011 to
    /// retry after a server error. 1005 stands for a Close without a
    /// code.
    ///
    /// A connection that ends without a Close (1006: the peer vanished,
    /// an I/O or TLS error, a deadline such as the idle timeout) is
    /// always reconnected; one this side closes for a protocol violation
    /// by the server (1002, 1007, 1009) or for a callback's error (1011)
    /// is not, since trying again would meet the same fault.
    pub close_codes: Vec<u16>,
    /// What a send between connections does. Default
    /// `Offline::Queue { max_messages: 1024, max_bytes: 16 MiB }`.
    pub offline: Offline,
}

/// What [`ReconnectSender::send`] does between connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offline {
    /// Keep up to `max_messages` messages and `max_bytes` payload bytes
    /// (a single message larger than `max_bytes` is kept when nothing else
    /// is), and send them, in order, once the next connection's `on_open`
    /// has returned. A send past either bound fails with
    /// [`Error::Send`]`(`[`SendError::QueueFull`]`)` and keeps nothing.
    Queue {
        /// Most messages kept.
        max_messages: usize,
        /// Most payload bytes kept.
        max_bytes: usize,
    },
    /// Keep nothing: a send fails at once with
    /// [`Error::Send`]`(`[`SendError::Disconnected`]`)`.
    Fail,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
            max_attempts: None,
            max_elapsed: None,
            close_codes: vec![CloseCode::AWAY.0, CloseCode::RESTART.0, CloseCode::AGAIN.0],
            offline: Offline::Queue { max_messages: 1024, max_bytes: 16 << 20 },
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

impl ReconnectPolicy {
    setters! {
        /// Sets [`ReconnectPolicy::initial_delay`].
        initial_delay: Duration;
        /// Sets [`ReconnectPolicy::max_delay`].
        max_delay: Duration;
        /// Sets [`ReconnectPolicy::multiplier`].
        multiplier: f64;
        /// Sets [`ReconnectPolicy::jitter`].
        jitter: bool;
        /// Sets [`ReconnectPolicy::max_attempts`].
        max_attempts: Option<u32>;
        /// Sets [`ReconnectPolicy::max_elapsed`].
        max_elapsed: Option<Duration>;
        /// Sets [`ReconnectPolicy::close_codes`].
        close_codes: Vec<u16>;
        /// Sets [`ReconnectPolicy::offline`].
        offline: Offline;
    }

    /// Checks that the values fit together;
    /// [`ClientBuilder::reconnect`] calls it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero `initial_delay`, a `max_delay` below
    /// it, a `multiplier` below 1 (or not finite), or an
    /// [`Offline::Queue`] bound of zero.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::Config(s.to_owned()));
        if self.initial_delay.is_zero() {
            return bad("initial_delay must be above zero");
        }
        if self.max_delay < self.initial_delay {
            return bad("max_delay must be at least initial_delay");
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return bad("multiplier must be a finite number of at least 1");
        }
        if let Offline::Queue { max_messages, max_bytes } = self.offline {
            if max_messages == 0 || max_bytes == 0 {
                return bad("Offline::Queue bounds must be above 0 (use Offline::Fail to keep nothing)");
            }
        }
        Ok(())
    }

    /// The delay before the next attempt after `failures` failures in a
    /// row (at least 1), with `unit` a random number in `[0, 1)`.
    pub(crate) fn delay(&self, failures: u32, unit: f64) -> Duration {
        let exp = i32::try_from(failures.saturating_sub(1).min(1_000)).unwrap_or(1_000);
        let max = self.max_delay.as_secs_f64();
        let cap = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        let cap = if cap.is_finite() { cap.min(max) } else { max };
        let secs = if self.jitter { cap * unit.clamp(0.0, 1.0) } else { cap };
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay).min(self.max_delay)
    }
}

/// A random number in `[0, 1)`, from the operating system (as the masks'
/// keys are); from the clock should that fail, which is good enough to
/// spread retries.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if let Err(e) = getrandom::getrandom(&mut bytes) {
        debug!("the OS random source failed ({e}); jitter from the clock");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        bytes = u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes();
    }
    // The top 53 bits: every value exactly representable.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a [`Reconnecting`] client is, as [`ReconnectSender::state`] sees
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// Between connections: connecting, waiting out a backoff delay, or
    /// connected but still in `on_open` or sending the backlog. Sends are
    /// kept or refused as the [`Offline`] policy says.
    Connecting,
    /// Connected: sends go to the connection.
    Open,
    /// [`Reconnecting::run`] has returned (or is returning): sends fail
    /// with [`SendError::Closed`].
    Stopped,
}

/// Why [`Reconnecting::run`] returned.
#[derive(Debug)]
#[non_exhaustive]
pub enum EndReason {
    /// The application closed: [`ReconnectSender::close`] or
    /// [`stop`](ReconnectSender::stop), or the Close of a connection's own
    /// [`Sender`].
    Closed,
    /// The server closed with a code the policy does not reconnect on
    /// ([`ReconnectPolicy::close_codes`]); `None` for a Close without a
    /// code, when 1005 is not in the list.
    ServerClosed(Option<CloseData>),
    /// An error retrying would not mend: the server refused the upgrade
    /// with a 4xx (other than 408 and 429), the URL or the config cannot
    /// be used, TLS failed (an untrusted certificate), the proxy refused
    /// the credentials; or this side closed a connection for a protocol
    /// violation by the server or an error of a callback.
    Failed(Error),
    /// The policy's [`max_attempts`](ReconnectPolicy::max_attempts) or
    /// [`max_elapsed`](ReconnectPolicy::max_elapsed) ran out. The error of
    /// the last attempt, if it failed with one (`None` when the limit was
    /// reached right after a drop).
    GaveUp(Option<Error>),
}

/// What [`Reconnecting::run`] returns.
#[derive(Debug)]
#[non_exhaustive]
pub struct Ended {
    /// Why it stopped.
    pub reason: EndReason,
    /// How many connections opened during the run.
    pub connections: u32,
    /// Messages sent between connections and never handed to one, in the
    /// order they were sent (the application's Close among them, last,
    /// if it was queued).
    pub unsent: Vec<OwnedMessage>,
}

/// What [`WsTrait::on_reconnect`] is told before each wait.
#[derive(Debug)]
#[non_exhaustive]
pub struct Retry {
    /// The attempt about to be made, counted from the last connection that
    /// opened: 1 for the first retry after a drop.
    pub attempt: u32,
    /// How long the client waits before it.
    pub delay: Duration,
    /// Why the last connection or attempt ended, if an error did it (the
    /// connect error, or the I/O error or deadline that dropped the
    /// connection).
    pub error: Option<Error>,
    /// The server's Close, if the last connection ended with one (1001,
    /// 1012, ...).
    pub close: Option<CloseData>,
}

/// A client that reconnects: made by [`ClientBuilder::reconnect`], run by
/// [`run`](Reconnecting::run) on a thread of the application's, sent to
/// from any thread with its [`ReconnectSender`].
///
/// Each connection runs the same [`WsTrait`] handler, as
/// [`Client::wait_ws_operate`] does: `on_open` once it opens (again after
/// each reconnect, with [`WsHandshake::reconnects`](crate::WsHandshake::reconnects)
/// counting the connections before it: resubscribe there), `on_close`
/// once it ends, [`on_reconnect`](WsTrait::on_reconnect) before each wait.
/// The module docs ("What a send is promised") say what becomes of
/// messages sent around a drop.
///
/// ```no_run
/// use std::time::Duration;
/// use syncws::{Client, EndReason, OwnedMessage, ReconnectPolicy, Result, WsHandshake, WsOption, WsTrait};
///
/// struct Feed;
/// impl WsTrait for Feed {
///     fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
///         // Again after every reconnect: the server forgot us.
///         shake.sender.send(OwnedMessage::Text(r#"{"subscribe":"prices"}"#.into()))?;
///         Ok(None)
///     }
///     fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
///         println!("{msg:?}");
///         Ok(())
///     }
/// }
///
/// let reconnecting = Client::builder().url("ws://127.0.0.1:8081/feed")?.reconnect(ReconnectPolicy::default())?;
/// let sender = reconnecting.sender(); // outlives each connection
/// let runner = std::thread::spawn(move || reconnecting.run(&mut Feed));
/// sender.send(OwnedMessage::Text("hello".into()))?; // queued if between connections
/// std::thread::sleep(Duration::from_secs(60));
/// sender.close(syncws::CloseCode::NORMAL, "done")?;
/// let ended = runner.join().expect("runner");
/// assert!(matches!(ended.reason, EndReason::Closed));
/// # Ok::<(), syncws::Error>(())
/// ```
pub struct Reconnecting {
    builder: ClientBuilder,
    policy: ReconnectPolicy,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting").field("policy", &self.policy).field("state", &self.shared.state()).finish()
    }
}

/// Sends on whichever connection a [`Reconnecting`] client has, and keeps
/// or refuses what is sent between connections; clone it freely and use
/// it from any thread.
///
/// ```no_run
/// # fn demo(sender: syncws::ReconnectSender) {
/// use syncws::{Error, SendError};
/// match sender.send("tick".into()) {
///     Ok(()) => {}
///     Err(Error::Send(SendError::Disconnected)) => eprintln!("offline, not kept (Offline::Fail)"),
///     Err(Error::Send(SendError::QueueFull)) => eprintln!("offline too long: the backlog is full"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct ReconnectSender {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReconnectSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectSender").field("state", &self.shared.state()).finish()
    }
}

/// What the runner and every [`ReconnectSender`] share.
struct Shared {
    link: Mutex<Link>,
    offline: Offline,
    /// Wakes the runner from a backoff wait (the application stopped it).
    wake: (cb::Sender<()>, cb::Receiver<()>),
}

/// The connection of the moment and the backlog, under one lock, so that
/// a message is either sent on a connection or queued, never both, and
/// the backlog goes out before anything sent after it.
#[derive(Default)]
struct Link {
    conn: Conn,
    /// Messages kept between connections, oldest first.
    queue: VecDeque<OwnedMessage>,
    /// Payload bytes of the data messages in `queue`.
    bytes: usize,
    /// The application's Close was sent or queued: nothing may follow it.
    closing: bool,
    /// That Close is in `queue`, behind the backlog.
    close_queued: bool,
    /// The application asked to stop now ([`ReconnectSender::stop`], or a
    /// Close with nothing to deliver before it).
    stopping: bool,
}

/// The connection of the moment.
#[derive(Default)]
enum Conn {
    /// None: connecting, or waiting to.
    #[default]
    Down,
    /// Open, and `on_open` is running on `thread` (whose sends go to the
    /// connection, ahead of the backlog) or the backlog is being sent.
    Opening { sender: Sender, thread: ThreadId },
    /// Open, the backlog sent.
    Open(Sender),
    /// The runner has finished.
    Stopped,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Link> {
        lock(&self.link)
    }

    fn state(&self) -> LinkState {
        match &self.lock().conn {
            Conn::Open(sender) if !sender.is_closed() => LinkState::Open,
            Conn::Stopped => LinkState::Stopped,
            _ => LinkState::Connecting,
        }
    }

    fn wake(&self) {
        let _ = self.wake.0.try_send(());
    }

    /// `on_open` has returned: the backlog goes out on `sender`, behind
    /// what `on_open` sent, then sends go straight to the connection.
    fn opened(&self, sender: &Sender) {
        let mut link = self.lock();
        while let Some(msg) = link.queue.pop_front() {
            let is_close = matches!(msg, OwnedMessage::Close(_));
            let len = if is_close { 0 } else { msg.len() };
            match sender.send_if_open(msg) {
                Ok(Ok(())) => {
                    link.bytes = link.bytes.saturating_sub(len);
                    link.close_queued &= !is_close;
                }
                Ok(Err(e)) => {
                    // Handed to a connection that failed as it took it:
                    // lost with it, as anything in flight on a dropped
                    // connection is.
                    link.bytes = link.bytes.saturating_sub(len);
                    link.close_queued &= !is_close;
                    warn!("a message kept while disconnected could not be sent: {e}");
                }
                Err(msg) => {
                    // Already dropped again: the rest waits for the next.
                    link.queue.push_front(msg);
                    return;
                }
            }
        }
        if link.stopping {
            let _ = sender.close(CloseCode::NORMAL, "");
        }
        link.conn = Conn::Open(sender.clone());
    }

    /// Ends the run: sends fail from now on; what is queued is handed
    /// back.
    fn finish(&self, reason: EndReason, connections: u32) -> Ended {
        let mut link = self.lock();
        link.conn = Conn::Stopped;
        link.bytes = 0;
        link.close_queued = false;
        let unsent: Vec<_> = link.queue.drain(..).collect();
        if !unsent.is_empty() {
            warn!("stopped reconnecting with {} message(s) never sent", unsent.len());
        }
        Ended { reason, connections, unsent }
    }
}

impl Link {
    /// The sender a send should go to: the open connection's, or during
    /// `on_open` the connection's for its own thread; `None` between
    /// connections.
    fn usable_sender(&self) -> Option<Sender> {
        match &self.conn {
            Conn::Open(sender) if !sender.is_closed() => Some(sender.clone()),
            Conn::Opening { sender, thread } if *thread == thread::current().id() && !sender.is_closed() => {
                Some(sender.clone())
            }
            _ => None,
        }
    }

    /// Keeps `msg` for the next connection, or refuses it, as `offline`
    /// says. The application's Close is kept behind the backlog whatever
    /// the bound; with no backlog to deliver it stops the run instead
    /// (the return is then `true`: wake the runner).
    fn keep(&mut self, msg: OwnedMessage, offline: Offline) -> Result<bool> {
        if matches!(self.conn, Conn::Stopped) {
            return Err(Error::Send(SendError::Closed));
        }
        if matches!(msg, OwnedMessage::Close(_)) {
            if self.queue.is_empty() {
                self.stopping = true;
                return Ok(true);
            }
            self.queue.push_back(msg);
            self.close_queued = true;
            return Ok(false);
        }
        match offline {
            Offline::Fail => Err(Error::Send(SendError::Disconnected)),
            Offline::Queue { max_messages, max_bytes } => {
                let len = msg.len();
                let over = !self.queue.is_empty() && self.bytes.saturating_add(len) > max_bytes;
                if self.queue.len() >= max_messages || over {
                    return Err(Error::Send(SendError::QueueFull));
                }
                self.bytes = self.bytes.saturating_add(len);
                self.queue.push_back(msg);
                Ok(false)
            }
        }
    }
}

impl ReconnectSender {
    /// Sends `msg` on the current connection, or keeps it for the next
    /// one (or refuses it) as the [`Offline`] policy says; see the
    /// promises in [`Reconnecting`]'s module docs. Messages sent from one
    /// thread arrive in the order they were sent, across reconnects too.
    /// A Close is [`close`](ReconnectSender::close).
    ///
    /// # Errors
    ///
    /// Between connections: [`SendError::Disconnected`] with
    /// [`Offline::Fail`], [`SendError::QueueFull`] past the bound of
    /// [`Offline::Queue`]. After the application's Close:
    /// [`SendError::CloseSent`]; once the run has ended:
    /// [`SendError::Closed`]. Connected: what [`Sender::send`] returns.
    pub fn send(&self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Close(data) = msg {
            return self.close_with(data);
        }
        if lock(&self.shared.link).closing {
            return Err(Error::Send(SendError::CloseSent));
        }
        self.deliver(msg)
    }

    /// Closes politely, and stops reconnecting once the Close went out:
    /// connected, the Close follows what was sent before it; between
    /// connections, it is kept behind the backlog, which is delivered on
    /// the next connection before it; with no backlog (or with
    /// [`Offline::Fail`]) the run stops at once.
    /// [`Reconnecting::run`] then returns [`EndReason::Closed`].
    ///
    /// # Errors
    ///
    /// [`SendError::InvalidCloseCode`] for a code that may not be sent;
    /// [`SendError::CloseSent`] if the application already closed;
    /// [`SendError::Closed`] once the run has ended.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.close_with(Some(CloseData::new(code, reason)))
    }

    fn close_with(&self, data: Option<CloseData>) -> Result<()> {
        if let Some(c) = &data {
            if !c.code().is_allowed() {
                return Err(Error::Send(SendError::InvalidCloseCode(c.status_code)));
            }
        }
        {
            let mut link = self.shared.lock();
            if matches!(link.conn, Conn::Stopped) {
                return Err(Error::Send(SendError::Closed));
            }
            if link.closing {
                return Err(Error::Send(SendError::CloseSent));
            }
            link.closing = true;
        }
        self.deliver(OwnedMessage::Close(data))
    }

    /// Sends on the connection, or keeps (or refuses) between connections.
    fn deliver(&self, mut msg: OwnedMessage) -> Result<()> {
        loop {
            let sender = {
                let mut link = self.shared.lock();
                match link.usable_sender() {
                    Some(sender) => sender,
                    None => {
                        let wake = link.keep(msg, self.shared.offline)?;
                        drop(link);
                        if wake {
                            self.shared.wake();
                        }
                        return Ok(());
                    }
                }
            };
            // Outside the lock: a send may wait for room in the
            // connection's queue ([`Config::queue_policy`](crate::Config::queue_policy)).
            match sender.send_if_open(msg) {
                Ok(sent) => return sent,
                // The connection dropped since: the next turn keeps it.
                Err(back) => msg = back,
            }
        }
    }

    /// Stops reconnecting now: the current connection, if any, is closed
    /// with 1000 (after what was sent to it), no further attempt is made
    /// (a backoff wait ends at once; an attempt under way is finished
    /// first), and what is queued is handed back in [`Ended::unsent`].
    /// Does nothing once the run has ended.
    pub fn stop(&self) {
        let mut link = self.shared.lock();
        if matches!(link.conn, Conn::Stopped) {
            return;
        }
        link.stopping = true;
        if let Conn::Open(sender) | Conn::Opening { sender, .. } = &link.conn {
            let _ = sender.close(CloseCode::NORMAL, "");
        }
        drop(link);
        self.shared.wake();
    }

    /// Where the client is: connected, between connections, or stopped.
    pub fn state(&self) -> LinkState {
        self.shared.state()
    }

    /// True while a connection is open and its backlog sent: a send goes
    /// to it.
    pub fn is_connected(&self) -> bool {
        self.state() == LinkState::Open
    }

    /// How many messages are kept for the next connection.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

/// What to do after a connection ended.
enum Next {
    /// Stop, for this reason.
    Stop(EndReason),
    /// Connect again; why it ended.
    Retry { error: Option<Error>, close: Option<CloseData> },
}

impl Reconnecting {
    pub(crate) fn new(builder: ClientBuilder, policy: ReconnectPolicy) -> Reconnecting {
        let shared = Shared { link: Mutex::new(Link::default()), offline: policy.offline, wake: cb::bounded(1) };
        Reconnecting { builder, policy, shared: Arc::new(shared) }
    }

    /// A sender that sends on whichever connection is open, and keeps or
    /// refuses messages between connections (see [`ReconnectSender`]).
    /// Usable before [`run`](Reconnecting::run) starts: what it sends
    /// then waits for the first connection, as after a drop.
    pub fn sender(&self) -> ReconnectSender {
        ReconnectSender { shared: Arc::clone(&self.shared) }
    }

    /// The policy it runs with.
    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Connects, runs `handler` on each connection on this thread, and
    /// reconnects after each drop as the policy says, until the
    /// application closes, the server closes with a code the policy does
    /// not retry, an error that retrying would not mend, or the policy
    /// gives up; returns why, with what was never sent.
    ///
    /// The first connect is retried as a reconnect is (a client may start
    /// before its server), apart from errors that retrying would not mend
    /// ([`EndReason::Failed`]). Each attempt has the builder's connect
    /// deadline ([`ClientBuilder::connect_timeout`]).
    pub fn run(self, handler: &mut dyn WsTrait) -> Ended {
        let Reconnecting { builder, policy, shared } = self;
        // Connect attempts since the last connection opened.
        let mut attempt = 0u32;
        // Failures in a row, for the backoff: failed attempts, and
        // connections that did not stay open for `max_delay`.
        let mut failures = 0u32;
        let mut connections = 0u32;
        let mut down_since = Instant::now();
        loop {
            if lock(&shared.link).stopping {
                return shared.finish(EndReason::Closed, connections);
            }
            attempt += 1;
            let (error, close) = match builder.clone().connect() {
                Err(e) if is_final(&e) => {
                    warn!("not reconnecting: {e}");
                    return shared.finish(EndReason::Failed(e), connections);
                }
                Err(e) => {
                    debug!("connect attempt {attempt} failed: {e}");
                    failures = failures.saturating_add(1);
                    (Some(e), None)
                }
                Ok(client) => {
                    attempt = 0;
                    let began = Instant::now();
                    let end = serve(&shared, client, handler, connections);
                    connections = connections.saturating_add(1);
                    down_since = Instant::now();
                    let next = {
                        let mut link = shared.lock();
                        link.conn = Conn::Down;
                        decide(&policy, &link, end)
                    };
                    match next {
                        Next::Stop(reason) => return shared.finish(reason, connections),
                        Next::Retry { error, close } => {
                            if began.elapsed() >= policy.max_delay {
                                failures = 0;
                            }
                            failures = failures.saturating_add(1);
                            (error, close)
                        }
                    }
                }
            };
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                info!("giving up after {attempt} failed attempt(s)");
                return shared.finish(EndReason::GaveUp(error), connections);
            }
            let delay = policy.delay(failures, random_unit());
            if policy.max_elapsed.is_some_and(|max| down_since.elapsed().saturating_add(delay) > max) {
                info!("giving up: disconnected for {:?}", down_since.elapsed());
                return shared.finish(EndReason::GaveUp(error), connections);
            }
            let retry = Retry { attempt: attempt + 1, delay, error, close };
            let _ = runner::guard(|| {
                handler.on_reconnect(&retry);
                Ok(())
            });
            if lock(&shared.link).stopping {
                continue;
            }
            // Woken early only to stop; the loop's start checks.
            let _ = shared.wake.1.recv_timeout(delay);
        }
    }
}

/// Runs `handler` on one connection until it ends.
fn serve(shared: &Shared, mut client: Client, handler: &mut dyn WsTrait, connections: u32) -> End {
    let (mut conn, mut shake) = match client.callback_parts() {
        Ok(parts) => parts,
        Err(e) => return End { error: Some(e), ..End::default() },
    };
    shake.reconnects = connections;
    {
        let mut link = shared.lock();
        link.conn = Conn::Opening { sender: shake.sender.clone(), thread: thread::current().id() };
        if link.stopping {
            let _ = shake.sender.close(CloseCode::NORMAL, "");
        }
    }
    // A wake-up left from before is stale: stopping is a flag, checked.
    while shared.wake.1.try_recv().is_ok() {}
    runner::run_with(&mut conn, handler, Box::new(shake), &mut |sender| shared.opened(sender))
}

/// What to do after a connection ended as `end` says.
fn decide(policy: &ReconnectPolicy, link: &Link, end: End) -> Next {
    if link.stopping || (link.closing && !link.close_queued) || end.ours_first {
        return Next::Stop(EndReason::Closed);
    }
    if let Some(close) = end.peer_close {
        let code = close.as_ref().map_or(CloseCode::NO_STATUS.0, |c| c.status_code);
        if policy.close_codes.contains(&code) {
            info!("the server closed with {code}: reconnecting");
            return Next::Retry { error: None, close };
        }
        info!("the server closed with {code}: not reconnecting");
        return Next::Stop(EndReason::ServerClosed(close));
    }
    match end.error {
        Some(e) if is_drop(&e) => {
            info!("connection lost ({e}): reconnecting");
            Next::Retry { error: Some(e), close: None }
        }
        Some(e) => {
            warn!("not reconnecting after {e}");
            Next::Stop(EndReason::Failed(e))
        }
        None => Next::Retry { error: None, close: None },
    }
}

/// An error that ended an open connection without fault of either
/// program: the network, the peer gone, a deadline, the memory budget.
fn is_drop(e: &Error) -> bool {
    matches!(
        e,
        Error::Io(_)
            | Error::Tls(_)
            | Error::Timeout { .. }
            | Error::ConnectionClosed
            | Error::AlreadyClosed
            | Error::Capacity { what: crate::Limit::MemoryBudget, .. }
    )
}

/// A connect error that trying again would meet again.
fn is_final(e: &Error) -> bool {
    match e {
        Error::Url(_) | Error::Config(_) | Error::Tls(_) | Error::Application(_) => true,
        Error::Handshake { status, .. } => !matches!(status, 408 | 429 | 500..=599),
        Error::Proxy(p) => match p {
            ProxyError::AuthRequired | ProxyError::AuthFailed | ProxyError::Unsupported(_) => true,
            ProxyError::Refused { status, .. } => !matches!(status, 408 | 429 | 500..=599),
            // Not allowed by its rules, command or address type unsupported.
            ProxyError::SocksRefused { reply } => matches!(reply, 2 | 7 | 8),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_grows_to_its_cap_and_jitter_stays_under_it() {
        let p = ReconnectPolicy::default().initial_delay(ms(100)).max_delay(ms(1000)).jitter(false);
        let caps: Vec<_> = (1..=6).map(|n| p.delay(n, 0.5)).collect();
        assert_eq!(caps, vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        // Far past any exponent a float holds: still the cap, no panic.
        assert_eq!(p.delay(u32::MAX, 0.5), ms(1000));
        let jittered = p.clone().jitter(true);
        assert_eq!(jittered.delay(3, 0.0), Duration::ZERO);
        assert_eq!(jittered.delay(3, 0.5), ms(200));
        assert!(jittered.delay(10, 0.999_999) <= ms(1000));
        for _ in 0..1000 {
            let d = jittered.delay(2, random_unit());
            assert!(d <= ms(200), "{d:?}");
        }
        let forever = p.clone().max_delay(Duration::MAX).jitter(true);
        assert!(forever.delay(u32::MAX, 0.999) <= Duration::MAX);
        let flat = p.multiplier(1.0);
        assert_eq!(flat.delay(9, 0.0), ms(100));
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mut sorted = draws.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        assert!(sorted.len() > 90);
    }

    #[test]
    fn validate_rejects_nonsense() {
        ReconnectPolicy::default().validate().unwrap();
        assert!(ReconnectPolicy::default().initial_delay(Duration::ZERO).validate().is_err());
        assert!(ReconnectPolicy::default().max_delay(ms(1)).validate().is_err());
        assert!(ReconnectPolicy::default().multiplier(0.5).validate().is_err());
        assert!(ReconnectPolicy::default().multiplier(f64::NAN).validate().is_err());
        let empty = Offline::Queue { max_messages: 0, max_bytes: 10 };
        assert!(ReconnectPolicy::default().offline(empty).validate().is_err());
    }

    #[test]
    fn the_backlog_is_bounded_in_messages_and_bytes_and_the_close_goes_last() {
        let offline = Offline::Queue { max_messages: 3, max_bytes: 10 };
        let mut link = Link::default();
        // One message larger than the bound is kept when alone.
        link.keep(OwnedMessage::Binary(vec![0; 12]), offline).unwrap();
        assert!(matches!(link.keep("x".into(), offline), Err(Error::Send(SendError::QueueFull))));
        let mut link = Link::default();
        link.keep("12345".into(), offline).unwrap();
        link.keep("12345".into(), offline).unwrap();
        assert!(matches!(link.keep("1".into(), offline), Err(Error::Send(SendError::QueueFull))));
        assert_eq!((link.queue.len(), link.bytes), (2, 10));
        // The Close goes behind the backlog, whatever the bound.
        assert!(!link.keep(OwnedMessage::Close(None), offline).unwrap());
        assert!(link.close_queued && link.queue.len() == 3);
        // Nothing to deliver: a Close stops at once.
        let mut empty = Link::default();
        assert!(empty.keep(OwnedMessage::Close(None), offline).unwrap());
        assert!(empty.stopping && empty.queue.is_empty());
        // Offline::Fail keeps nothing.
        let mut failing = Link::default();
        assert!(matches!(failing.keep("x".into(), Offline::Fail), Err(Error::Send(SendError::Disconnected))));
        failing.conn = Conn::Stopped;
        assert!(matches!(failing.keep("x".into(), Offline::Fail), Err(Error::Send(SendError::Closed))));
    }

    #[test]
    fn which_ends_are_retried() {
        let policy = ReconnectPolicy::default();
        let link = Link::default();
        let closed = |code| End { peer_close: Some(Some(CloseData::new(CloseCode(code), ""))), ..End::default() };
        for code in [1001, 1012, 1013] {
            assert!(matches!(decide(&policy, &link, closed(code)), Next::Retry { .. }), "{code}");
        }
        for code in [1000, 1008, 1011, 4000] {
            assert!(matches!(decide(&policy, &link, closed(code)), Next::Stop(EndReason::ServerClosed(_))), "{code}");
        }
        let no_code = End { peer_close: Some(None), ..End::default() };
        assert!(matches!(decide(&policy, &link, no_code), Next::Stop(_)));
        let failed = |e| End { error: Some(e), ..End::default() };
        let reset = Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(decide(&policy, &link, failed(reset)), Next::Retry { .. }));
        assert!(matches!(decide(&policy, &link, failed(Error::ConnectionClosed)), Next::Retry { .. }));
        let idle = Error::Timeout { phase: crate::Phase::Idle };
        assert!(matches!(decide(&policy, &link, failed(idle)), Next::Retry { .. }));
        let violation = Error::Protocol(crate::ProtocolError::MaskedFrame);
        assert!(matches!(decide(&policy, &link, failed(violation)), Next::Stop(EndReason::Failed(_))));
        // Our own Close first: the application ended it.
        let ours =
            End { peer_close: Some(Some(CloseData::new(CloseCode::AWAY, ""))), ours_first: true, ..End::default() };
        assert!(matches!(decide(&policy, &link, ours), Next::Stop(EndReason::Closed)));
        // 1000 too, when the policy says so.
        let always = policy.close_codes(vec![1000, 1001]);
        assert!(matches!(decide(&always, &link, closed(1000)), Next::Retry { .. }));
    }

    #[test]
    fn which_connect_errors_are_final() {
        let refused = |status| Error::Handshake { status, reason: String::new(), response: None };
        for status in [400, 401, 403, 404, 101] {
            assert!(is_final(&refused(status)), "{status}");
        }
        for status in [408, 429, 500, 502, 503] {
            assert!(!is_final(&refused(status)), "{status}");
        }
        assert!(is_final(&Error::Url("x".into())));
        assert!(is_final(&Error::Proxy(ProxyError::AuthFailed)));
        assert!(!is_final(&Error::Proxy(ProxyError::SocksRefused { reply: 5 })));
        assert!(!is_final(&Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        assert!(!is_final(&Error::Timeout { phase: crate::Phase::Connect }));
    }
}

//! [`Sender`]: send on a connection from any thread.
//!
//! Sends made on the connection's own thread (inside a callback) are batched
//! and written by that thread just before it next waits for the network: an
//! echo costs no thread hand-off, and replies to a burst of messages leave in
//! one write. A small Text or Binary message is encoded into the write
//! side's batch as it is sent ([`WriteSide::frame_now`]) and its memory
//! freed at once, so the next message read reuses that memory while it is
//! still in the cache (pipelined 1 KiB: about 10 % less server CPU per
//! message than keeping the messages until the write,
//! `bench-results/notes.md`); anything else waits in the thread's own
//! batch, behind them.
//!
//! A send from another thread first tries the fast path
//! ([`WriteSide::try_send_now`]): when nothing is queued or being written
//! for the connection, the sending thread writes the frame itself with one
//! non-blocking write, so a broadcast to many connections costs a system
//! call per connection and no thread wake-up. Otherwise (the socket is
//! full, a write is in progress, messages are queued, a large message or a
//! Close) the message goes through a bounded crossbeam channel to a writer
//! thread, started on first need, which writes at once. The end of a frame
//! the fast path could only partly write is left with the write side, and
//! the writer thread is asked to flush it; nothing overtakes it.
//!
//! Order: messages sent from one thread leave in the order sent. The fast
//! path is taken only when the count of queued, unwritten messages is 0
//! (read under the write lock; a message is counted before it is pushed
//! and uncounted after it is written), so a thread's message cannot pass
//! one it queued earlier.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use log::{debug, warn};

use crate::config::{Config, QueuePolicy};
use crate::conn::budget::{Budget, Taken};
use crate::conn::write::{Item, Now, WriteSide};
use crate::error::{Error, Limit, Result, SendError};
use crate::message::{CloseCode, CloseData, OwnedMessage};

/// The owner thread's emptied batch is kept for reuse up to this many
/// messages' room; a larger one is freed.
const LOCAL_KEEP_MSGS: usize = 64;

/// Messages the writer thread writes in one batch at most.
const WRITE_BATCH: usize = 64;

/// A number that identifies the calling thread, never reused within the
/// process. Cheaper than `thread::current().id()`, which touches the
/// thread handle's reference count: it is read on every send.
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TOKEN.with(|t| *t)
}

/// A number that identifies a connection's [`Sender`], never reused within
/// the process.
fn next_sender_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Something told when a connection ends (a hub that forgets its
/// subscriptions), registered with [`Sender::watch_end`].
pub(crate) trait EndHook: Send + Sync {
    /// The connection whose [`Sender::id`] is `id` ended.
    fn ended(&self, id: u64);
}

/// The hooks a connection calls when it ends.
#[derive(Default)]
struct Watchers {
    /// The connection ended: hooks registered from now on are refused.
    ended: bool,
    hooks: Vec<Weak<dyn EndHook>>,
}

/// How a send may wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As [`Config::queue_policy`] says, and the owner thread's batch is
    /// written when full.
    Policy,
    /// Never: a full queue or batch refuses the message at once
    /// ([`Sender::try_send`]).
    Try,
}

/// Why [`Sender::enqueue`] did not queue a message.
enum Refused {
    /// The connection's queue is full (in messages or bytes).
    Full,
    /// The process-wide memory budget has no room.
    OverBudget { size: u64, max: u64 },
    /// The writer thread is gone: the connection ended.
    Gone,
}

/// Instructions from the connection thread to the writer thread.
pub(crate) enum Control {
    /// Also send what arrives on this receiver (`WsOption::set_receiver`).
    AddReceiver(cb::Receiver<OwnedMessage>),
    /// Write the end of a frame the fast path could only partly write.
    Flush,
}

/// Shared state of one connection's outbound path.
pub(crate) struct Outbound {
    /// The bounded queue to the writer thread, made when that thread starts:
    /// a crossbeam array channel allocates and writes all its slots up front,
    /// which an idle connection, or one that only replies from its own
    /// thread, never needs (the memory saved: `bench-results/notes.md`).
    queue: OnceLock<(cb::Sender<Item>, cb::Receiver<Item>)>,
    queue_capacity: usize,
    /// Messages pushed on `queue` and not yet written (counted before the
    /// push, uncounted after the write): the fast path waits for 0.
    queued: AtomicUsize,
    /// Payload bytes pushed on `queue` and not yet written.
    bytes: Budget,
    /// [`Sender::id`].
    id: u64,
    /// Told when the connection ends.
    watchers: Mutex<Watchers>,
    /// A [`Control::Flush`] is on its way to the writer thread.
    flush_asked: AtomicBool,
    /// A Close is on the writer thread's queue, or the connection is being
    /// shut down ([`Sender::close_now`]): later sends are refused at once,
    /// before the write side's state says so.
    close_queued: AtomicBool,
    write: WriteSide,
    policy: QueuePolicy,
    close_timeout: Duration,
    stack_size: usize,
    /// The thread running the connection's callbacks ([`thread_token`]).
    owner: u64,
    /// Messages sent on the owner thread, written before it next blocks.
    local: Mutex<Local>,
    local_limit: usize,
    /// Writer thread control channel; `None` until the thread is started.
    control: Mutex<Option<cb::Sender<Control>>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

/// The owner thread's batch.
#[derive(Default)]
struct Local {
    /// Messages encoded into the write side's batch already
    /// ([`WriteSide::frame_now`]); they come before `msgs`.
    framed: usize,
    /// Messages to encode when the batch is written: large ones, control
    /// frames, and whatever follows one of them.
    msgs: Vec<Item>,
    /// A Close is in `msgs`: nothing may follow it.
    closing: bool,
}

impl Local {
    /// Messages in the batch.
    fn len(&self) -> usize {
        self.framed + self.msgs.len()
    }
}

/// Sends messages on one connection; clone it freely and use it from any
/// thread.
///
/// Obtained from [`WsHandshake::sender`](crate::WsHandshake::sender). A send
/// returns once the message is written or queued (or, on the connection's
/// own thread, batched); it fails with [`Error::Send`] when the connection
/// has ended, or when the outbound queue is full and
/// [`Config::queue_policy`] says so. From another thread, a small Text or
/// Binary message is written at once by the sending thread when the
/// socket has room and nothing is queued ahead of it, without ever waiting
/// for a slow peer; anything else goes through the queue. Either way,
/// messages sent from one thread arrive in the order they were sent, and
/// nothing is written after a Close.
///
/// Each connection's `Sender`s share one [`id`](Self::id): they compare
/// equal and hash alike, so a `HashSet<Sender>` or a `HashMap` keyed by
/// `Sender` holds each connection once.
///
/// ```no_run
/// # fn demo(sender: syncws::Sender) -> syncws::Result<()> {
/// let s = sender.clone();
/// std::thread::spawn(move || s.send(syncws::OwnedMessage::Text("from a worker".into())));
/// sender.send("hello".into())?;
/// assert_eq!(sender.id(), sender.clone().id());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sender {
    out: Arc<Outbound>,
}

impl PartialEq for Sender {
    fn eq(&self, other: &Sender) -> bool {
        self.out.id == other.out.id
    }
}

impl Eq for Sender {}

impl std::hash::Hash for Sender {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.out.id.hash(state);
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("id", &self.out.id).field("state", &self.out.write.life().get()).finish()
    }
}

impl Sender {
    pub(crate) fn new(write: WriteSide, config: &Config) -> Sender {
        let out = Outbound {
            queue: OnceLock::new(),
            queue_capacity: config.queue_capacity,
            queued: AtomicUsize::new(0),
            bytes: Budget::new(config.queue_max_bytes, config.memory_budget),
            id: next_sender_id(),
            watchers: Mutex::new(Watchers::default()),
            flush_asked: AtomicBool::new(false),
            close_queued: AtomicBool::new(false),
            write,
            policy: config.queue_policy,
            close_timeout: config.close_timeout,
            stack_size: config.thread_stack_size,
            owner: thread_token(),
            local: Mutex::new(Local::default()),
            local_limit: config.queue_capacity,
            control: Mutex::new(None),
            writer: Mutex::new(None),
        };
        Sender { out: Arc::new(out) }
    }

    /// Sends `msg` on the connection.
    ///
    /// With permessage-deflate negotiated (feature `deflate`), a Text or
    /// Binary message of at least `DeflateConfig::threshold` bytes is
    /// compressed; [`send_uncompressed`](Self::send_uncompressed) sends one
    /// as it is.
    #[inline]
    pub fn send(&self, msg: OwnedMessage) -> Result<()> {
        self.send_item(Item::Msg(msg), Mode::Policy)
    }

    /// Sends `msg` uncompressed, whatever the connection negotiated: for a
    /// message known not to compress (already compressed data, an image,
    /// random bytes), or one whose latency matters more than its size.
    /// Otherwise as [`send`](Self::send); without permessage-deflate the
    /// two are the same.
    ///
    /// ```no_run
    /// # fn demo(sender: syncws::Sender, jpeg: Vec<u8>) -> syncws::Result<()> {
    /// sender.send_uncompressed(syncws::OwnedMessage::Binary(jpeg))?;
    /// # Ok(()) }
    /// ```
    pub fn send_uncompressed(&self, msg: OwnedMessage) -> Result<()> {
        self.send_item(Item::Plain(msg), Mode::Policy)
    }

    /// Sends `msg` without ever waiting: not for room in the queue
    /// (whatever [`Config::queue_policy`] says), nor for a slow peer. A
    /// message that does not fit at once is dropped, counted in
    /// [`Stats::queue_full`](crate::Stats::queue_full), and the send fails
    /// with [`SendError::QueueFull`]; the connection goes on (the policy's
    /// `Close` is the caller's choice here, with [`close`](Self::close) or
    /// [`terminate`](Self::terminate)).
    ///
    /// On the connection's own thread (inside a callback) the message is
    /// batched as [`send`](Self::send) batches it; a batch that is full
    /// ([`Config::queue_capacity`] messages) refuses more until the thread
    /// writes it, before it next waits for the network.
    ///
    /// ```no_run
    /// # fn demo(sender: syncws::Sender) {
    /// use syncws::{Error, SendError};
    /// match sender.try_send("tick".into()) {
    ///     Ok(()) => {}
    ///     Err(Error::Send(SendError::QueueFull)) => { /* this peer lags: skip it this time */ }
    ///     Err(_) => { /* the connection ended */ }
    /// }
    /// # }
    /// ```
    pub fn try_send(&self, msg: OwnedMessage) -> Result<()> {
        self.send_item(Item::Msg(msg), Mode::Try)
    }

    /// [`try_send`](Self::try_send) of a frame encoded once and shared
    /// (a publish): the same bytes go in every connection's queue.
    /// Refused on a client's connection, whose frames must be masked.
    pub(crate) fn try_send_frame(&self, frame: &Arc<[u8]>) -> Result<()> {
        if self.out.write.is_client() {
            return Err(Error::Send(SendError::Closed));
        }
        self.send_item(Item::Frame(Arc::clone(frame)), Mode::Try)
    }

    /// A client's connection (its frames are masked).
    pub(crate) fn is_client(&self) -> bool {
        self.out.write.is_client()
    }

    /// Counts a message not sent for a full queue or backlog.
    pub(crate) fn count_queue_full(&self) {
        self.out.write.metrics().queue_full();
    }

    /// Asks the CPU to start loading this connection's outbound state, so
    /// that a delivery to it a little later does not wait for memory: a
    /// publish calls it a few subscribers ahead ([`crate::hub`]). The
    /// first of two steps; [`prefetch_write`](Self::prefetch_write) is the
    /// second, once this one's lines have arrived.
    pub(crate) fn prefetch_out(&self) {
        crate::conn::prefetch::object(Arc::as_ptr(&self.out));
    }

    /// The second step of [`prefetch_out`](Self::prefetch_out): the write
    /// side's two allocations, whose addresses are in the outbound state.
    pub(crate) fn prefetch_write(&self) {
        self.out.write.prefetch();
    }

    /// This connection's identity: the same for every clone of its
    /// `Sender`, and never given to another connection in this process.
    pub fn id(&self) -> u64 {
        self.out.id
    }

    /// Bytes queued for the connection's writer thread and not yet written
    /// (a peer that reads slower than it is sent to): the payloads of
    /// queued messages, the whole frames of queued publishes. Messages
    /// written at once, or batched on the connection's own thread, are
    /// not counted. Bounded by [`Config::queue_max_bytes`] (one message
    /// larger than that is let in alone). A message counts until the
    /// write that carries it returns, so on a busy machine, where the
    /// writer thread may wait for a core between its write and the count,
    /// the figure can include bytes the peer has already read.
    ///
    /// ```no_run
    /// # fn demo(sender: syncws::Sender) -> syncws::Result<()> {
    /// if sender.queued_bytes() < 64 << 10 {
    ///     sender.send("next chunk".into())?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn queued_bytes(&self) -> usize {
        self.out.bytes.used()
    }

    fn send_item(&self, item: Item, mode: Mode) -> Result<()> {
        let out = &*self.out;
        if !out.write.life().may_send() {
            return Err(out.write.life().get().refusal());
        }
        if out.close_queued.load(Ordering::Acquire) {
            return Err(Error::Send(SendError::CloseSent));
        }
        if thread_token() == out.owner {
            let full = {
                let mut local = lock(&out.local);
                if local.closing {
                    return Err(Error::Send(SendError::CloseSent));
                }
                if mode == Mode::Try && local.len() >= out.local_limit {
                    out.write.metrics().queue_full();
                    return Err(Error::Send(SendError::QueueFull));
                }
                // Encoded at once when nothing waits in the batch ahead of
                // it (the common case: an echo, replies to a burst).
                let left = if local.msgs.is_empty() { out.write.frame_now(item)?.err() } else { Some(item) };
                match left {
                    None => local.framed += 1,
                    Some(item) => {
                        local.closing = item.is_close();
                        local.msgs.push(item);
                    }
                }
                local.len() >= out.local_limit
            };
            return if full && mode == Mode::Policy { self.flush_local() } else { Ok(()) };
        }
        let item = match out.write.try_send_now(item, &out.queued) {
            Ok(Now::Sent) => return Ok(()),
            Ok(Now::Pending) => return self.ask_flush(),
            Ok(Now::Queue(item)) => item,
            Err(e) => {
                debug!("send: {e}");
                return Err(Error::Send(SendError::Closed));
            }
        };
        self.ensure_writer()?;
        let policy = match mode {
            Mode::Policy => out.policy,
            Mode::Try => QueuePolicy::Drop,
        };
        match self.enqueue(item, policy) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => {
                out.write.metrics().queue_full();
                if policy == QueuePolicy::Close {
                    warn!("outbound queue full: closing the connection (policy Close)");
                    self.close_now(CloseCode::POLICY, "outbound queue full");
                }
                Err(Error::Send(SendError::QueueFull))
            }
            Err(Refused::OverBudget { size, max }) => {
                out.write.metrics().memory_budget();
                warn!(
                    "the process's memory budget ({max} bytes) is used up: closing a connection whose queue would grow"
                );
                self.close_now(CloseCode::AGAIN, "server memory budget exceeded");
                Err(Error::Capacity { what: Limit::MemoryBudget, size, max })
            }
            Err(Refused::Gone) => Err(Error::Send(SendError::Closed)),
        }
    }

    /// Has `hook` told when this connection ends (once, even if asked
    /// again); false, registering nothing, if it has ended already.
    pub(crate) fn watch_end(&self, hook: Weak<dyn EndHook>) -> bool {
        let mut w = lock(&self.out.watchers);
        if w.ended {
            return false;
        }
        w.hooks.retain(|h| h.strong_count() > 0);
        if !w.hooks.iter().any(|h| Weak::ptr_eq(h, &hook)) {
            w.hooks.push(hook);
        }
        true
    }

    /// [`send`](Self::send), unless the connection can no longer send
    /// (a Close was sent, or it failed or ended): the message is then
    /// handed back untouched, for a reconnecting client to queue it for
    /// the next connection.
    pub(crate) fn send_if_open(&self, msg: OwnedMessage) -> std::result::Result<Result<()>, OwnedMessage> {
        if self.is_closed() {
            return Err(msg);
        }
        Ok(self.send(msg))
    }

    /// Closes a connection whose peer does not read: the Close frame may
    /// never leave, so the socket is shut down, which ends the connection
    /// either way.
    pub(crate) fn close_now(&self, code: CloseCode, reason: &str) {
        self.out.close_queued.store(true, Ordering::Release);
        let close = CloseData::new(code, reason);
        let _ = self.ensure_writer();
        let _ = self.enqueue(Item::Msg(OwnedMessage::Close(Some(close))), QueuePolicy::Drop);
        self.out.write.shutdown(Shutdown::Both);
    }

    /// Pushes `msg` on the writer thread's queue, counted in `queued` and
    /// in the byte budgets, waiting for room (in the connection's) as
    /// `policy` says.
    fn enqueue(&self, msg: Item, policy: QueuePolicy) -> std::result::Result<(), Refused> {
        let out = &*self.out;
        let tx = &out.queue().0;
        let deadline = match policy {
            QueuePolicy::Block(wait) => Some(Instant::now() + wait),
            QueuePolicy::Drop | QueuePolicy::Close => None,
        };
        let (len, owned, is_close) = (msg.len(), msg.owned_len(), msg.is_close());
        match out.bytes.take(len, owned, deadline) {
            Taken::Yes => {}
            Taken::Full => return Err(Refused::Full),
            Taken::Closed => return Err(Refused::Gone),
            Taken::OverBudget { size, max } => return Err(Refused::OverBudget { size, max }),
        }
        out.queued.fetch_add(1, Ordering::AcqRel);
        let pushed = match deadline {
            Some(deadline) => tx.send_deadline(msg, deadline).map_err(|e| e.is_timeout()),
            None => tx.try_send(msg).map_err(|e| e.is_full()),
        };
        match pushed {
            Ok(()) => {
                if is_close {
                    self.out.close_queued.store(true, Ordering::Release);
                }
                Ok(())
            }
            Err(full) => {
                out.queued.fetch_sub(1, Ordering::AcqRel);
                out.bytes.release(len, owned);
                Err(if full { Refused::Full } else { Refused::Gone })
            }
        }
    }

    /// The fast path left part of a frame unwritten: has the writer thread
    /// write it (the sender never blocks on a slow peer). The message is
    /// sent as far as the caller is concerned.
    fn ask_flush(&self) -> Result<()> {
        if self.out.flush_asked.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let asked = self.ensure_writer().and_then(|()| match lock(&self.out.control).as_ref() {
            Some(ctl) if ctl.send(Control::Flush).is_ok() => Ok(()),
            _ => Err(Error::Send(SendError::Closed)),
        });
        if asked.is_err() {
            // Half a frame is on the wire and nobody will finish it: the
            // connection cannot go on.
            self.out.write.shutdown(Shutdown::Both);
        }
        asked
    }

    /// Sends a Close frame with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.send(OwnedMessage::Close(Some(CloseData::new(code, reason))))
    }

    /// Ends the connection at once, without a close handshake: the socket
    /// is shut down in both directions, whatever is queued is dropped, and
    /// the connection's own thread reports the end (`on_error`, then
    /// `on_close`; or an error from `read`). For a peer that must go now
    /// (it stopped reading, or what it was paired with went away); otherwise
    /// [`close`](Self::close) is the polite way. Does nothing once the
    /// connection has ended.
    ///
    /// ```no_run
    /// # fn demo(sender: syncws::Sender) {
    /// if sender.send("are you there?".into()).is_err() {
    ///     sender.terminate();
    /// }
    /// # }
    /// ```
    pub fn terminate(&self) {
        self.out.write.shutdown(Shutdown::Both);
    }

    /// True once nothing more can be sent: a Close was written, or queued
    /// from another thread for the writer thread (so a send right after
    /// [`close`](Self::close) is refused, not silently dropped behind it),
    /// or the connection is being shut down for a full queue or the memory
    /// budget, or it failed or ended. Sends then fail with [`Error::Send`].
    /// A Close batched on the connection's own thread counts once written,
    /// just before that thread next waits; sends after it are refused
    /// already.
    pub fn is_closed(&self) -> bool {
        !self.out.write.life().may_send() || self.out.close_queued.load(Ordering::Acquire)
    }

    /// Writes what the owner thread batched. Called by the connection
    /// thread before it blocks.
    pub(crate) fn flush_local(&self) -> Result<()> {
        // Only the owner thread uses `local`, and `send_all` calls no
        // application code, so holding the lock across the write is safe.
        let mut local = lock(&self.out.local);
        if local.len() == 0 {
            return Ok(());
        }
        local.closing = false;
        let framed = std::mem::take(&mut local.framed);
        let result = self.out.write.send_framed(framed, &mut local.msgs.drain(..));
        // The emptied batch stays for the next one: an echo then costs no
        // allocation for it. A batch that grew large is freed.
        if local.msgs.capacity() > LOCAL_KEEP_MSGS {
            local.msgs = Vec::new();
        }
        if matches!(result, Err(Error::AlreadyClosed)) && !self.out.write.life().is_over() {
            // Another thread's Close went out first: what followed it is
            // dropped, as anything sent after a Close is.
            debug!("messages sent after the connection's Close were dropped");
            return Ok(());
        }
        result
    }

    /// Hands the writer thread a receiver of the application's.
    pub(crate) fn add_receiver(&self, rx: cb::Receiver<OwnedMessage>) -> Result<()> {
        self.ensure_writer()?;
        if let Some(ctl) = lock(&self.out.control).as_ref() {
            let _ = ctl.send(Control::AddReceiver(rx));
        }
        Ok(())
    }

    /// Stops the writer thread and waits for it; called by the code that
    /// ends the connection, when no more message can be sent.
    pub(crate) fn end(&self) {
        self.out.bytes.close();
        // Whatever watches the connection (a hub) forgets it, before the
        // application hears of the end.
        let hooks = {
            let mut w = lock(&self.out.watchers);
            w.ended = true;
            std::mem::take(&mut w.hooks)
        };
        for hook in hooks.iter().filter_map(Weak::upgrade) {
            hook.ended(self.out.id);
        }
        lock(&self.out.control).take();
        let writer = lock(&self.out.writer).take();
        if let Some(handle) = writer {
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
        // What was queued and never written is freed now, not when the
        // application drops its last Sender.
        if let Some((_, rx)) = self.out.queue.get() {
            for msg in rx.try_iter() {
                self.out.queued.fetch_sub(1, Ordering::AcqRel);
                self.out.bytes.release(msg.len(), msg.owned_len());
            }
        }
    }

    fn ensure_writer(&self) -> Result<()> {
        let mut control = lock(&self.out.control);
        if control.is_some() {
            return Ok(());
        }
        if self.out.bytes.is_closed() {
            return Err(Error::Send(SendError::Closed));
        }
        self.out.queue();
        let (ctl_tx, ctl_rx) = cb::unbounded();
        let out = Arc::clone(&self.out);
        let name = thread::current().name().map_or("syncws-writer".to_owned(), |n| format!("{n}-w"));
        let handle = thread::Builder::new()
            .name(name)
            .stack_size(self.out.stack_size)
            .spawn(move || writer_loop(&out, &ctl_rx))
            .map_err(Error::Io)?;
        *control = Some(ctl_tx);
        *lock(&self.out.writer) = Some(handle);
        Ok(())
    }
}

impl Outbound {
    /// The queue to the writer thread, made on first use.
    fn queue(&self) -> &(cb::Sender<Item>, cb::Receiver<Item>) {
        self.queue.get_or_init(|| cb::bounded(self.queue_capacity))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: waits on the queue, the application's receivers and
/// the control channel; writes whatever arrives, batched.
fn writer_loop(out: &Outbound, control: &cb::Receiver<Control>) {
    let mut extra: Vec<cb::Receiver<OwnedMessage>> = Vec::new();
    let rx = &out.queue().1;
    loop {
        let mut sel = cb::Select::new();
        let ctl_index = sel.recv(control);
        let main_index = sel.recv(rx);
        for rx in &extra {
            sel.recv(rx);
        }
        let op = sel.select();
        let index = op.index();
        if index == ctl_index {
            match op.recv(control) {
                Ok(Control::AddReceiver(rx)) => extra.push(rx),
                Ok(Control::Flush) => {
                    // Cleared before the flush: a frame left over after it
                    // asks again.
                    out.flush_asked.store(false, Ordering::Release);
                    if let Err(e) = out.write.flush_pending() {
                        if !e.is_closed() {
                            debug!("writer: {e}");
                        }
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        let mut batch = Vec::new();
        if index == main_index {
            let Ok(first) = op.recv(rx) else { return };
            batch.push(first);
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
        } else {
            let source = &extra[index - 2];
            match op.recv(source) {
                Ok(msg) => batch.push(Item::Msg(msg)),
                Err(_) => {
                    // The application dropped every sender of its
                    // receiver; the connection goes on.
                    debug!("an application receiver was disconnected");
                    extra.remove(index - 2);
                    continue;
                }
            }
            while batch.len() < WRITE_BATCH {
                match source.try_recv() {
                    Ok(m) => batch.push(Item::Msg(m)),
                    Err(_) => break,
                }
            }
        }
        let has_close = batch.iter().any(Item::is_close);
        let count = batch.len();
        let bytes: usize = batch.iter().map(Item::len).sum();
        let owned: usize = batch.iter().map(Item::owned_len).sum();
        if let Err(e) = out.write.send_all(&mut batch.into_iter()) {
            if !e.is_closed() {
                debug!("writer: {e}");
            }
        }
        if index == main_index {
            // Only now: until these are written the fast path must wait.
            out.queued.fetch_sub(count, Ordering::AcqRel);
            out.bytes.release(bytes, owned);
        }
        if has_close {
            // Give the peer the close timeout to answer, then end the
            // connection so the reading thread wakes up.
            if let Err(cb::RecvTimeoutError::Timeout) = wait_ended(control, out.close_timeout) {
                debug!("no close reply within {:?}: shutting the socket down", out.close_timeout);
                out.write.shutdown(Shutdown::Both);
            }
            return;
        }
    }
}

fn wait_ended(control: &cb::Receiver<Control>, wait: Duration) -> std::result::Result<(), cb::RecvTimeoutError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match control.recv_deadline(deadline) {
            Ok(_) => continue,
            Err(cb::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// For unit tests, here and in other modules: a server connection's write
/// side and sender over a mock socket that takes every byte; the bytes
/// written.
#[cfg(test)]
pub(crate) fn mock_server(config: &Config) -> (WriteSide, Sender, Arc<Mutex<Vec<u8>>>) {
    let (mock, out) = crate::conn::write::mock::Mock::new(vec![None]);
    let write = WriteSide::new(Box::new(mock), crate::protocol::Role::Server, Duration::from_secs(5)).unwrap();
    let sender = Sender::new(write.clone(), config);
    (write, sender, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::state::State;
    use crate::conn::write::mock::{decode, Mock};
    use crate::protocol::Role;

    /// Source and number from a test message such as `"t1:42"`.
    fn parse(msg: &OwnedMessage) -> (String, usize) {
        let OwnedMessage::Text(s) = msg else { panic!("unexpected {msg:?}") };
        let (src, n) = s.split_once(':').expect("src:n");
        (src.to_owned(), n.parse().expect("number"))
    }

    #[test]
    fn partial_and_refused_fast_writes_keep_each_threads_order() {
        // The socket takes everything, nothing, a few bytes, ... in turn.
        let (mock, out) = Mock::new(vec![None, Some(0), Some(3), None, Some(1), Some(7), None]);
        let write = WriteSide::new(Box::new(mock), Role::Server, Duration::from_secs(5)).unwrap();
        let sender = Sender::new(write.clone(), &Config::default());
        const EACH: usize = 300;
        thread::scope(|s| {
            for t in 0..3 {
                let sender = sender.clone();
                s.spawn(move || {
                    for i in 0..EACH {
                        sender.send(OwnedMessage::Text(format!("t{t}:{i}"))).unwrap();
                    }
                });
            }
            // The owner thread batches its own and flushes now and then.
            for i in 0..EACH {
                sender.send(OwnedMessage::Text(format!("own:{i}"))).unwrap();
                if i % 7 == 0 {
                    sender.flush_local().unwrap();
                }
            }
            sender.flush_local().unwrap();
        });
        // Last, from another thread: the Close goes behind everything queued.
        thread::scope(|s| {
            s.spawn(|| sender.close(CloseCode::NORMAL, "done").unwrap());
        });
        let far = std::time::Instant::now() + Duration::from_secs(60);
        assert_eq!(write.life().wait_while(State::Open, far), State::CloseSent);
        // Waits for the writer thread's write in progress, if any.
        write.flush_pending().unwrap();
        sender.end();

        let msgs = decode(&out.lock().unwrap());
        let (close, data) = msgs.split_last().unwrap();
        assert!(matches!(close, OwnedMessage::Close(Some(c)) if c.reason == "done"));
        let mut next = std::collections::HashMap::new();
        for msg in data {
            let (src, n) = parse(msg);
            let want = next.entry(src.clone()).or_insert(0);
            assert_eq!(n, *want, "{src}: out of order or lost");
            *want += 1;
        }
        assert_eq!(next.len(), 4);
        assert!(next.values().all(|&n| n == EACH), "{next:?}");
    }

    #[test]
    fn nothing_is_sent_after_a_close_and_the_sender_says_why() {
        let (write, sender, out) = mock_server(&Config::default());
        // On the connection's own thread, a send after a batched Close is
        // refused at once, not dropped later.
        sender.send(OwnedMessage::Text("before".into())).unwrap();
        sender.close(CloseCode::NORMAL, "bye").unwrap();
        assert!(!sender.is_closed(), "the Close is batched, not written yet");
        assert!(matches!(sender.send("after".into()), Err(Error::Send(SendError::CloseSent))));
        sender.flush_local().unwrap();
        assert!(sender.is_closed());
        // From another thread, once the Close is written.
        thread::scope(|s| {
            s.spawn(|| assert!(matches!(sender.send("late".into()), Err(Error::Send(SendError::CloseSent)))));
        });
        // Once the connection failed, sends say it is closed.
        write.fail_with(None);
        assert!(matches!(sender.send("failed".into()), Err(Error::Send(SendError::Closed))));
        sender.end();
        let msgs = decode(&out.lock().unwrap());
        assert_eq!(msgs.len(), 2);
        assert!(matches!(&msgs[1], OwnedMessage::Close(Some(c)) if c.reason == "bye"));
    }

    #[test]
    fn a_send_after_a_queued_close_is_refused_before_the_close_is_written() {
        // A Close the application sends from another thread, and the one
        // that ends a connection whose queue or memory budget is full.
        type Closer = fn(&Sender);
        let closers: [(&str, Closer); 2] = [
            ("bye", |s| s.close(CloseCode::NORMAL, "bye").unwrap()),
            ("budget", |s| s.close_now(CloseCode::AGAIN, "budget")),
        ];
        for (reason, close) in closers {
            let (write, sender, out) = mock_server(&Config::default());
            // Holding the mock's buffer keeps the writer thread inside its
            // write of a large message: the Close stays queued behind it.
            let held = out.lock().unwrap();
            thread::scope(|s| {
                s.spawn(|| {
                    sender.send(OwnedMessage::Binary(vec![1; 1 << 20])).unwrap();
                    close(&sender);
                });
            });
            thread::scope(|s| {
                s.spawn(|| {
                    assert!(sender.is_closed(), "{reason}: a Close is queued, nothing more can be sent");
                    let after = sender.send("after".into());
                    assert!(matches!(after, Err(Error::Send(SendError::CloseSent))), "{reason}: {after:?}");
                    assert!(sender.try_send("after".into()).is_err(), "{reason}");
                });
            });
            drop(held);
            let far = std::time::Instant::now() + Duration::from_secs(60);
            assert_eq!(write.life().wait_while(State::Open, far), State::CloseSent);
            write.flush_pending().unwrap();
            sender.end();
            let msgs = decode(&out.lock().unwrap());
            assert_eq!(msgs.len(), 2, "{reason}: the large message and the Close, nothing after it");
            assert!(matches!(&msgs[1], OwnedMessage::Close(Some(c)) if c.reason == reason));
        }
    }

    #[test]
    fn a_batch_overtaken_by_another_threads_close_is_dropped_not_an_error() {
        let (write, sender, out) = mock_server(&Config::default());
        // A small message is encoded at once: it was sent before the other
        // thread's Close, and goes out before it. A large one waits in the
        // owner's batch until the flush.
        sender.send("encoded".into()).unwrap();
        sender.send(OwnedMessage::Binary(vec![2; 100 << 10])).unwrap();
        thread::scope(|s| {
            s.spawn(|| sender.close(CloseCode::AWAY, "going").unwrap());
        });
        let far = std::time::Instant::now() + Duration::from_secs(60);
        assert_eq!(write.life().wait_while(State::Open, far), State::CloseSent);
        // The owner's flush finds the Close already out: what it still
        // held is dropped, and the connection goes on waiting for the
        // peer's reply.
        sender.flush_local().unwrap();
        sender.end();
        let msgs = decode(&out.lock().unwrap());
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0], OwnedMessage::Text("encoded".into()));
        assert!(matches!(&msgs[1], OwnedMessage::Close(Some(c)) if c.reason == "going"));
    }

    #[test]
    fn the_owners_messages_are_encoded_at_once_and_written_in_one_batch() {
        let config = Config::default().queue_capacity(8);
        let (_, sender, out) = mock_server(&config);
        // Small, large, small: the large one and what follows it wait in
        // the owner's batch, behind the encoded frames, in order.
        sender.send("one".into()).unwrap();
        sender.send(OwnedMessage::Binary(vec![7; 20 << 10])).unwrap();
        sender.send("three".into()).unwrap();
        assert!(out.lock().unwrap().is_empty(), "nothing is written before the flush");
        sender.flush_local().unwrap();
        let msgs = decode(&out.lock().unwrap());
        assert_eq!(
            msgs,
            [
                OwnedMessage::Text("one".into()),
                OwnedMessage::Binary(vec![7; 20 << 10]),
                OwnedMessage::Text("three".into())
            ]
        );
        // A full batch (`queue_capacity` messages) refuses `try_send` and
        // is written by `send`.
        for i in 0..8 {
            sender.try_send(OwnedMessage::Text(format!("{i}"))).unwrap();
        }
        assert!(matches!(sender.try_send("nine".into()), Err(Error::Send(SendError::QueueFull))));
        assert_eq!(decode(&out.lock().unwrap()).len(), 3);
        sender.send("nine".into()).unwrap();
        assert_eq!(decode(&out.lock().unwrap()).len(), 3 + 9, "the full batch was written");
        sender.flush_local().unwrap();
        sender.end();
    }

    #[test]
    fn a_shared_frame_goes_out_as_it_is_by_every_path() {
        // Whole, refused, partly written: the fast path, the queue, the
        // flush of a frame's end.
        let (mock, out) = Mock::new(vec![None, Some(0), Some(2)]);
        let write = WriteSide::new(Box::new(mock), Role::Server, Duration::from_secs(5)).unwrap();
        let sender = Sender::new(write.clone(), &Config::default());
        let prepared = crate::Prepared::text("shared");
        thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..5 {
                    sender.try_send_prepared(&prepared).unwrap();
                }
            });
        });
        // On the connection's own thread: batched.
        sender.try_send_prepared(&prepared).unwrap();
        sender.flush_local().unwrap();
        thread::scope(|s| {
            s.spawn(|| sender.close(CloseCode::NORMAL, "done").unwrap());
        });
        let far = std::time::Instant::now() + Duration::from_secs(60);
        assert_eq!(write.life().wait_while(State::Open, far), State::CloseSent);
        write.flush_pending().unwrap();
        sender.end();
        let msgs = decode(&out.lock().unwrap());
        assert_eq!(msgs.len(), 7, "{msgs:?}");
        assert!(msgs[..6].iter().all(|m| *m == OwnedMessage::Text("shared".into())));
        assert_eq!(sender.queued_bytes(), 0);
        // Nothing kept a copy, nor a reference.
        assert_eq!(Arc::strong_count(prepared.shared()), 1);
    }

    #[test]
    fn a_client_refuses_shared_frames_and_senders_compare_by_connection() {
        let (mock, _out) = Mock::new(vec![None]);
        let write = WriteSide::new(Box::new(mock), Role::Client, Duration::from_secs(5)).unwrap();
        let sender = Sender::new(write, &Config::default());
        let other = {
            let (mock, _out) = Mock::new(vec![None]);
            Sender::new(
                WriteSide::new(Box::new(mock), Role::Server, Duration::from_secs(5)).unwrap(),
                &Config::default(),
            )
        };
        assert!(sender.try_send_prepared(&crate::Prepared::text("x")).is_err());
        assert_eq!(sender, sender.clone());
        assert_ne!(sender, other);
        assert_ne!(sender.id(), other.id());
        // Hash and Eq read only the id, which never changes.
        #[allow(clippy::mutable_key_type)]
        let set: std::collections::HashSet<Sender> = [sender.clone(), sender.clone(), other.clone()].into();
        assert_eq!(set.len(), 2);
        sender.end();
        other.end();
    }
}

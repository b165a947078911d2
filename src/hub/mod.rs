//! [`Hub`]: publish and subscribe over named topics, for every server
//! connection of this process.
//!
//! A published message is framed once ([`Prepared`]) and the same bytes,
//! shared, go into every subscriber's outbound queue: a server's frames
//! are unmasked (RFC 6455 §5.1), so one frame is valid on every
//! connection, over plain TCP and TLS alike (TLS encrypts on each
//! connection's writer, from the shared bytes). With permessage-deflate
//! negotiated, the shared frame is an uncompressed one (RSV1 clear),
//! which the extension allows as it is.
//!
//! A publisher never waits for a subscriber: each delivery is a
//! [`Sender::try_send`] of the shared frame (a non-blocking write when
//! nothing is queued, else a push on a bounded queue). A subscriber whose
//! backlog (bytes queued and not yet written,
//! [`Sender::queued_bytes`]) would pass the hub's limit, or whose queue is
//! full, gets the hub's [`BacklogPolicy`], and [`Published`] says what
//! happened to each. Memory per subscriber is so bounded by the limit
//! (and the kernel's socket buffers), whatever it does.
//!
//! A large topic's deliveries are spread over the cores: the publishing
//! thread writes to the first share of the subscribers and a small pool
//! of helper threads (one fewer than the cores) to the others, in
//! parallel, and `publish` returns when all are written or queued. Topics
//! under 2,048 subscribers stay on the publishing thread
//! ([`Hub::set_parallel_from`]).
//!
//! Order: subscribers see each publishing thread's messages in the order
//! that thread published them (the order of [`Sender`]'s sends).
//!
//! Cost: a publish to a topic whose subscribers have not changed since
//! the last one takes one reference to the list that publish made (a
//! subscribe, unsubscribe or end makes the next publish build it again),
//! and walks the subscribers in the order their connections opened,
//! which is the order their sockets lie in the kernel's memory: walked in
//! a hash map's order instead, the same sends to 10,000 subscribers took
//! a sixth more system time.
//!
//! A connection that ends leaves all its topics by itself: the hub is told
//! from the connection's end path, before `on_close` runs.
//!
//! With the `redis` feature, a hub can be joined to the hubs of other
//! processes (`Hub::join_redis`, the `cluster` module): a publish then
//! reaches every node's subscribers.
//!
//! This is the design of uWebSockets' topics (`subscribe`, `publish`,
//! `maxBackpressure`, `closeOnBackpressureLimit`), without its one event
//! loop: a publish may come from any thread, a connection's callbacks
//! included.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use log::{debug, warn};

use crate::conn::{EndHook, Sender};
use crate::error::{Error, SendError};
use crate::message::{CloseCode, OwnedMessage};
use crate::protocol::{FrameHeader, OpCode, MAX_HEADER_LEN};

mod fanout;

pub(crate) use fanout::{deliver_all, DEFAULT_PARALLEL_FROM};

/// A Text or Binary message framed once, for sending the same bytes to many
/// server connections ([`Hub::publish`], [`Sender::try_send_prepared`],
/// [`Running::broadcast`](crate::Running::broadcast)). Cloning it clones a
/// reference, not the bytes.
///
/// ```
/// use syncws::{OwnedMessage, Prepared};
/// let hello = Prepared::text("hello");
/// assert_eq!(hello.wire_len(), 2 + 5); // a 2-byte header, unmasked
/// let same = Prepared::from_message(&OwnedMessage::Text("hello".into())).unwrap();
/// assert_eq!(hello.as_bytes(), same.as_bytes());
/// assert!(Prepared::from_message(&OwnedMessage::Ping(vec![])).is_none());
/// ```
#[derive(Clone)]
pub struct Prepared {
    frame: Arc<[u8]>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("wire_len", &self.frame.len()).finish()
    }
}

impl Prepared {
    /// A Text message.
    pub fn text(text: &str) -> Prepared {
        Prepared::frame(OpCode::Text, text.as_bytes())
    }

    /// A Binary message.
    pub fn binary(data: &[u8]) -> Prepared {
        Prepared::frame(OpCode::Binary, data)
    }

    /// `msg` if it is Text or Binary; `None` for a control message, which
    /// goes to each connection on its own ([`Sender::send`]).
    pub fn from_message(msg: &OwnedMessage) -> Option<Prepared> {
        match msg {
            OwnedMessage::Text(s) => Some(Prepared::text(s)),
            OwnedMessage::Binary(b) => Some(Prepared::binary(b)),
            _ => None,
        }
    }

    /// The whole frame's length on the wire: header and payload.
    pub fn wire_len(&self) -> usize {
        self.frame.len()
    }

    /// The frame as it goes on the wire (a server's: unmasked).
    pub fn as_bytes(&self) -> &[u8] {
        &self.frame
    }

    fn frame(opcode: OpCode, payload: &[u8]) -> Prepared {
        let h = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = h.encode(&mut header);
        // Built in place: the payload is copied once, into the shared
        // buffer.
        let frame: Arc<[u8]> = header[..header_len].iter().chain(payload).copied().collect();
        Prepared { frame }
    }

    pub(crate) fn shared(&self) -> &Arc<[u8]> {
        &self.frame
    }

    /// The message's type and payload, read back from the frame.
    #[cfg(feature = "redis")]
    pub(crate) fn opcode_and_payload(&self) -> (OpCode, &[u8]) {
        let opcode = if self.frame[0] & 0x0F == 0x1 { OpCode::Text } else { OpCode::Binary };
        // Unmasked, length in 7, 7+16 or 7+64 bits (RFC 6455 §5.2).
        let header_len = match self.frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        (opcode, &self.frame[header_len..])
    }
}

impl Sender {
    /// [`try_send`](Sender::try_send) of a [`Prepared`] message: the
    /// shared frame goes in this connection's queue as it is, without a
    /// copy. Never waits; fails with [`SendError::QueueFull`] when the
    /// queue has no room, and with [`SendError::Closed`] on a client's
    /// connection (whose frames must be masked, so cannot be shared).
    ///
    /// ```no_run
    /// # fn demo(members: &[syncws::Sender]) {
    /// let news = syncws::Prepared::text("news");
    /// for m in members {
    ///     let _ = m.try_send_prepared(&news); // the same bytes for each
    /// }
    /// # }
    /// ```
    pub fn try_send_prepared(&self, msg: &Prepared) -> crate::Result<()> {
        self.try_send_frame(msg.shared())
    }
}

/// What a [`Hub`] does with a subscriber whose backlog is over the hub's
/// limit (or whose outbound queue is full) when a message is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BacklogPolicy {
    /// Close the subscriber's connection with 1008 (policy violation) and
    /// the reason "subscriber too slow"; its socket is shut down at once,
    /// so the Close frame may not reach a peer that does not read. The
    /// default, as uWebSockets' `closeOnBackpressureLimit`: a subscriber
    /// either has every message, in order, or is gone.
    #[default]
    Close,
    /// Skip this message for that subscriber and count it
    /// ([`Published::dropped`], and
    /// [`Stats::queue_full`](crate::Stats::queue_full)); it gets later
    /// messages once its backlog drains, with a gap.
    Skip,
}

/// Whether a publish was passed on to other processes (a hub joined to
/// Redis, feature `redis`: `Hub::join_redis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Forwarded {
    /// The hub has not joined a cluster: local subscribers only.
    #[default]
    Local,
    /// Queued for Redis, to reach the other nodes (at most once).
    Queued,
    /// Not forwarded: the buffer of messages waiting for Redis was full
    /// (Redis unreachable or slower than the publishers), or the cluster
    /// was being left. Other nodes see a gap in this node's sequence
    /// numbers and count it as lost.
    Dropped,
}

/// What a publish did, one count per subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Published {
    /// Subscribers the message was written or queued for.
    pub delivered: usize,
    /// Subscribers that skipped it ([`BacklogPolicy::Skip`]).
    pub dropped: usize,
    /// Subscribers closed for their backlog ([`BacklogPolicy::Close`]).
    pub closed: usize,
    /// Subscribers whose connection had already ended or was closing
    /// (they leave the topic by themselves).
    pub gone: usize,
    /// Whether the message went on to other nodes too.
    pub forwarded: Forwarded,
}

impl Published {
    /// All the subscribers the publish found.
    pub fn subscribers(&self) -> usize {
        self.delivered + self.dropped + self.closed + self.gone
    }
}

/// Topics that connections subscribe to, and publish to from any thread.
///
/// Cheap to clone (a reference); every clone is the same hub. Subscribers
/// are server connections, by their [`Sender`]; a connection leaves all
/// its topics when it ends, without the application doing anything. See
/// the [module docs](crate::hub) for the guarantees.
///
/// ```no_run
/// use syncws::{Hub, Listener, OwnedMessage, Prepared, Result, Sender, WsHandshake, WsOption, WsTrait};
///
/// struct Member { hub: Hub, topic: String, me: Option<Sender> }
///
/// impl WsTrait for Member {
///     fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
///         self.topic = shake.request.path.trim_start_matches('/').to_owned();
///         self.hub.subscribe(&shake.sender, &self.topic);
///         self.me = Some(shake.sender);
///         Ok(None)
///     }
///     fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
///         if let Some(msg) = Prepared::from_message(&msg) {
///             let report = self.hub.publish(&self.topic, &msg);
///             log::debug!("{} delivered, {} closed", report.delivered, report.closed);
///         }
///         Ok(())
///     }
/// }
///
/// let hub = Hub::new();
/// let h = hub.clone();
/// let running = Listener::bind("127.0.0.1:9001")?
///     .spawn(move |server| server.set_callback_ws(Box::new(Member { hub: h.clone(), topic: String::new(), me: None })))?;
/// // Any thread may publish too.
/// hub.publish("news", &Prepared::text("hello, subscribers"));
/// # running.shutdown();
/// # Ok::<(), syncws::Error>(())
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("max_backlog", &self.inner.max_backlog)
            .field("policy", &self.inner.policy)
            .field("topics", &self.inner.read().topics.len())
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

struct Inner {
    state: RwLock<State>,
    max_backlog: usize,
    policy: BacklogPolicy,
    /// Subscribers from which a publish is spread over the cores.
    parallel_from: AtomicUsize,
    /// Itself, for the connections to tell it when they end.
    me: Weak<Inner>,
}

#[derive(Default)]
struct State {
    /// Each topic's subscribers. A topic with none is removed.
    topics: HashMap<Arc<str>, Topic>,
    /// Each subscribed connection's topics.
    by_conn: HashMap<u64, Vec<Arc<str>>>,
    /// The link to Redis, once the hub has joined a cluster.
    #[cfg(feature = "redis")]
    link: Option<Arc<crate::cluster::link::Link>>,
}

/// One topic's subscribers.
#[derive(Default)]
struct Topic {
    /// By [`Sender::id`]. Ids grow with each connection, so a publish
    /// visits the subscribers about in the order their connections opened,
    /// which is the order the kernel allocated their sockets in: the
    /// sends then walk the kernel's memory in order. In a hash map's order
    /// the same sends cost a sixth more system time (broadcast to 10,000,
    /// `bench-results/notes.md`).
    members: BTreeMap<u64, Sender>,
    /// `members` as a list, made by the first publish after a change and
    /// shared by the publishes until the next change: a publish then takes
    /// one reference, not one per subscriber.
    list: OnceLock<Arc<[Sender]>>,
}

impl Topic {
    /// The members as a list, made now if a change dropped it.
    fn list(&self) -> Arc<[Sender]> {
        Arc::clone(self.list.get_or_init(|| self.members.values().cloned().collect()))
    }

    /// Adds `sender` under `id`; false if it was a member.
    fn insert(&mut self, id: u64, sender: &Sender, dropped: &mut Vec<Arc<[Sender]>>) -> bool {
        let Entry::Vacant(slot) = self.members.entry(id) else { return false };
        slot.insert(sender.clone());
        dropped.extend(self.list.take());
        true
    }

    /// Removes `id`; false if it was not a member.
    fn remove(&mut self, id: u64, dropped: &mut Vec<Arc<[Sender]>>) -> bool {
        if self.members.remove(&id).is_none() {
            return false;
        }
        dropped.extend(self.list.take());
        true
    }
}

impl State {
    /// Tells the link to Redis, if any, that a topic appeared or went.
    fn topics_changed(&self) {
        #[cfg(feature = "redis")]
        if let Some(link) = &self.link {
            link.topics_changed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Hub {
    /// The default limit on a subscriber's backlog: 1 MiB.
    pub const DEFAULT_MAX_BACKLOG: usize = 1 << 20;

    /// A hub with the default backlog limit
    /// ([`DEFAULT_MAX_BACKLOG`](Self::DEFAULT_MAX_BACKLOG)) and policy
    /// ([`BacklogPolicy::Close`]).
    pub fn new() -> Hub {
        Hub::with_backlog(Hub::DEFAULT_MAX_BACKLOG, BacklogPolicy::default())
    }

    /// A hub where a subscriber may have up to `max_backlog` bytes queued
    /// and not yet written (published frames, headers included, and its
    /// other queued messages); a publish that would pass it gets `policy`.
    /// A message is still queued for a subscriber with nothing queued,
    /// however large. The connection's own limits
    /// ([`Config::queue_max_bytes`](crate::Config::queue_max_bytes),
    /// [`Config::queue_capacity`](crate::Config::queue_capacity)) apply
    /// too, with the same policy.
    ///
    /// ```
    /// use syncws::{BacklogPolicy, Hub};
    /// let hub = Hub::with_backlog(256 << 10, BacklogPolicy::Skip);
    /// assert_eq!(hub.max_backlog(), 256 << 10);
    /// ```
    pub fn with_backlog(max_backlog: usize, policy: BacklogPolicy) -> Hub {
        let inner = Arc::new_cyclic(|me| Inner {
            state: RwLock::new(State::default()),
            max_backlog,
            policy,
            parallel_from: AtomicUsize::new(fanout::DEFAULT_PARALLEL_FROM),
            me: me.clone(),
        });
        Hub { inner }
    }

    /// Topics with at least `subscribers` subscribers are delivered in
    /// parallel: the publishing thread writes to a first share of them and
    /// helper threads (one fewer than the cores, started on demand, ended
    /// after 5 s without work) to the others, and `publish` returns when
    /// all are done (each publisher's order holds). Default 2,048, where a
    /// publish takes one thread some 10-25 ms of socket writes; lower it
    /// on a machine with idle cores, `usize::MAX` keeps every publish on
    /// its thread.
    ///
    /// ```
    /// let hub = syncws::Hub::new();
    /// assert_eq!(hub.parallel_from(), 2048);
    /// hub.set_parallel_from(usize::MAX); // never spread
    /// assert_eq!(hub.parallel_from(), usize::MAX);
    /// ```
    pub fn set_parallel_from(&self, subscribers: usize) {
        self.inner.parallel_from.store(subscribers, Ordering::Relaxed);
    }

    /// From how many subscribers a topic's publishes are spread over the
    /// cores ([`set_parallel_from`](Self::set_parallel_from)).
    pub fn parallel_from(&self) -> usize {
        self.inner.parallel_from.load(Ordering::Relaxed)
    }

    /// The limit on a subscriber's backlog, in bytes.
    pub fn max_backlog(&self) -> usize {
        self.inner.max_backlog
    }

    /// What happens to a subscriber over the limit.
    pub fn policy(&self) -> BacklogPolicy {
        self.inner.policy
    }

    /// Subscribes the connection of `sender` to `topic`. True if it was
    /// not subscribed before; false if it was, or if the connection has
    /// ended (nothing is then kept) or is a client's (whose frames cannot
    /// be shared).
    pub fn subscribe(&self, sender: &Sender, topic: &str) -> bool {
        if sender.is_closed() || sender.is_client() {
            return false;
        }
        let id = sender.id();
        // A list a change makes stale is dropped after the lock: dropping
        // it releases a reference per subscriber.
        let mut stale = Vec::new();
        {
            let mut st = self.inner.write();
            let key = match st.topics.get_key_value(topic) {
                Some((key, _)) => Arc::clone(key),
                None => Arc::from(topic),
            };
            let entry = st.topics.entry(Arc::clone(&key)).or_default();
            if !entry.insert(id, sender, &mut stale) {
                return false;
            }
            if entry.members.len() == 1 {
                st.topics_changed();
            }
            st.by_conn.entry(id).or_default().push(key);
        }
        drop(stale);
        // After the insert: a connection that ends from here on finds the
        // hook and removes what was inserted; one that ended before
        // refuses the hook, and the insert is undone here.
        let hook: Weak<dyn EndHook> = self.inner.me.clone();
        if !sender.watch_end(hook) {
            self.inner.ended(id);
            return false;
        }
        true
    }

    /// Unsubscribes the connection of `sender` from `topic`; true if it was
    /// subscribed.
    pub fn unsubscribe(&self, sender: &Sender, topic: &str) -> bool {
        let id = sender.id();
        let mut stale = Vec::new();
        let mut st = self.inner.write();
        let Some(entry) = st.topics.get_mut(topic) else { return false };
        if !entry.remove(id, &mut stale) {
            return false;
        }
        if entry.members.is_empty() {
            st.topics.remove(topic);
            st.topics_changed();
        }
        if let Some(topics) = st.by_conn.get_mut(&id) {
            topics.retain(|t| &**t != topic);
            if topics.is_empty() {
                st.by_conn.remove(&id);
            }
        }
        drop(st);
        drop(stale);
        true
    }

    /// Unsubscribes the connection of `sender` from every topic; what a
    /// connection's end does by itself.
    pub fn unsubscribe_all(&self, sender: &Sender) {
        self.inner.ended(sender.id());
    }

    /// Whether the connection of `sender` is subscribed to `topic`.
    pub fn is_subscribed(&self, sender: &Sender, topic: &str) -> bool {
        self.inner.read().topics.get(topic).is_some_and(|t| t.members.contains_key(&sender.id()))
    }

    /// The number of subscribers of `topic`.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.inner.read().topics.get(topic).map_or(0, |t| t.members.len())
    }

    /// Every topic with at least one subscriber, and its subscriber count,
    /// sorted by name.
    ///
    /// ```
    /// assert!(syncws::Hub::new().topics().is_empty());
    /// ```
    pub fn topics(&self) -> Vec<(String, usize)> {
        let st = self.inner.read();
        let sorted: BTreeMap<&str, usize> = st.topics.iter().map(|(name, t)| (&**name, t.members.len())).collect();
        sorted.into_iter().map(|(t, n)| (t.to_owned(), n)).collect()
    }

    /// Publishes `msg` to every subscriber of `topic`, without waiting for
    /// any: see [`BacklogPolicy`] for a subscriber over the backlog limit.
    /// From any thread, a connection's callbacks included (the publishing
    /// connection, if subscribed, gets the message too). On a hub joined
    /// to Redis (feature `redis`), the message is also queued for the
    /// other nodes, never waiting for Redis ([`Published::forwarded`]).
    ///
    /// ```
    /// let hub = syncws::Hub::new();
    /// let report = hub.publish("nobody-listens", &syncws::Prepared::text("hi"));
    /// assert_eq!(report.subscribers(), 0);
    /// assert_eq!(report.forwarded, syncws::Forwarded::Local);
    /// ```
    pub fn publish(&self, topic: &str, msg: &Prepared) -> Published {
        // A snapshot, with the link to Redis if any, under one read lock:
        // no lock is held while sending, so subscribing and publishing
        // never wait for each other's sends.
        let st = self.inner.read();
        let members = st.topics.get(topic).map(Topic::list);
        #[cfg(feature = "redis")]
        let link = st.link.clone();
        drop(st);
        #[allow(unused_mut)] // set below with the `redis` feature
        let mut report = members.map_or_else(Published::default, |m| self.deliver_all(m, msg));
        #[cfg(feature = "redis")]
        if let Some(link) = link {
            report.forwarded = link.forward(topic, msg);
        }
        report
    }

    /// [`publish`](Self::publish) to this process's subscribers only.
    #[cfg(feature = "redis")]
    pub(crate) fn publish_local(&self, topic: &str, msg: &Prepared) -> Published {
        let Some(members) = self.inner.read().topics.get(topic).map(Topic::list) else {
            return Published::default();
        };
        self.deliver_all(members, msg)
    }

    fn deliver_all(&self, members: Arc<[Sender]>, msg: &Prepared) -> Published {
        fanout::deliver_all(members, msg.shared(), self.inner.max_backlog, self.inner.policy, self.parallel_from())
    }

    /// Makes `link` the hub's link to Redis; false if it has one.
    #[cfg(feature = "redis")]
    pub(crate) fn link(&self, link: &Arc<crate::cluster::link::Link>) -> bool {
        let mut st = self.inner.write();
        if st.link.is_some() {
            return false;
        }
        st.link = Some(Arc::clone(link));
        true
    }

    /// Removes `link`, if it is the hub's link to Redis.
    #[cfg(feature = "redis")]
    pub(crate) fn unlink(&self, link: &Arc<crate::cluster::link::Link>) {
        let mut st = self.inner.write();
        if st.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            st.link = None;
        }
    }
}

/// Sends `frame` to one subscriber, or applies `policy` if its backlog
/// would pass `max_backlog` or its queue is full; counts the outcome.
pub(crate) fn deliver(
    sender: &Sender,
    frame: &Arc<[u8]>,
    max_backlog: usize,
    policy: BacklogPolicy,
    report: &mut Published,
) {
    if sender.is_closed() {
        report.gone += 1;
        return;
    }
    let queued = sender.queued_bytes();
    let result = if queued > 0 && queued.saturating_add(frame.len()) > max_backlog {
        sender.count_queue_full();
        Err(Error::Send(SendError::QueueFull))
    } else {
        sender.try_send_frame(frame)
    };
    match result {
        Ok(()) => report.delivered += 1,
        Err(Error::Send(SendError::QueueFull)) => match policy {
            BacklogPolicy::Skip => report.dropped += 1,
            BacklogPolicy::Close => {
                warn!("subscriber {} too slow ({queued} bytes queued): closing it with 1008", sender.id());
                sender.close_now(CloseCode::POLICY, "subscriber too slow");
                report.closed += 1;
            }
        },
        Err(e) => {
            debug!("subscriber {}: {e}", sender.id());
            report.gone += 1;
        }
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl EndHook for Inner {
    fn ended(&self, id: u64) {
        let mut stale = Vec::new();
        let mut st = self.write();
        let Some(topics) = st.by_conn.remove(&id) else { return };
        for topic in topics {
            if let Some(entry) = st.topics.get_mut(&topic) {
                entry.remove(id, &mut stale);
                if entry.members.is_empty() {
                    st.topics.remove(&topic);
                    st.topics_changed();
                }
            }
        }
        drop(st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::conn::{mock, mock_server};

    /// The messages a mock connection was sent.
    fn received(out: &std::sync::Mutex<Vec<u8>>) -> Vec<OwnedMessage> {
        mock::decode(&out.lock().unwrap())
    }

    fn text(s: &str) -> OwnedMessage {
        OwnedMessage::Text(s.into())
    }

    #[test]
    fn each_publish_reaches_the_members_of_its_moment() {
        // The list a publish makes is shared by the next ones only until
        // the members change.
        let hub = Hub::new();
        let (_, a, a_out) = mock_server(&Config::default());
        let (_, b, b_out) = mock_server(&Config::default());
        assert!(hub.subscribe(&a, "t"));
        assert_eq!(hub.publish("t", &Prepared::text("1")).delivered, 1);
        assert_eq!(hub.publish("t", &Prepared::text("2")).delivered, 1);
        assert!(hub.subscribe(&b, "t"));
        assert_eq!(hub.publish("t", &Prepared::text("3")).delivered, 2);
        assert!(hub.unsubscribe(&a, "t"));
        assert_eq!(hub.publish("t", &Prepared::text("4")).delivered, 1);
        hub.unsubscribe_all(&b);
        assert_eq!(hub.publish("t", &Prepared::text("5")).subscribers(), 0);
        assert!(hub.subscribe(&a, "t"));
        assert_eq!(hub.publish("t", &Prepared::text("6")).delivered, 1);
        // This thread made the senders, so it is their connections' own
        // thread, whose sends wait for the end of its turn.
        a.flush_local().unwrap();
        b.flush_local().unwrap();
        assert_eq!(received(&a_out), [text("1"), text("2"), text("3"), text("6")]);
        assert_eq!(received(&b_out), [text("3"), text("4")]);
    }

    #[test]
    fn a_change_releases_the_list_publishes_shared() {
        let hub = Hub::new();
        let (_, a, _) = mock_server(&Config::default());
        let (_, b, _) = mock_server(&Config::default());
        hub.subscribe(&a, "t");
        hub.subscribe(&b, "t");
        hub.publish("t", &Prepared::text("x"));
        let list = hub.inner.read().topics["t"].list();
        assert_eq!(Arc::strong_count(&list), 2, "the hub keeps the list it made");
        assert!(Arc::ptr_eq(&list, &hub.inner.read().topics["t"].list()), "and shares it");
        // A connection that ends leaves the topic; the hub lets the list go
        // and with it the connection's sender.
        hub.inner.ended(b.id());
        assert_eq!(Arc::strong_count(&list), 1);
        assert_eq!(hub.subscribers("t"), 1);
        let again = hub.inner.read().topics["t"].list();
        assert_eq!(again.iter().map(Sender::id).collect::<Vec<_>>(), [a.id()]);
    }

    #[test]
    fn publishes_visit_subscribers_in_connection_order() {
        // Subscribed in a scrambled order, delivered in the order the
        // connections' senders were made (their sockets' order in memory).
        let senders: Vec<Sender> = (0..64).map(|_| mock_server(&Config::default()).1).collect();
        let hub = Hub::new();
        for i in 0..senders.len() {
            assert!(hub.subscribe(&senders[(i * 37) % senders.len()], "t"));
        }
        let mut ids: Vec<u64> = senders.iter().map(Sender::id).collect();
        ids.sort_unstable();
        let list = hub.inner.read().topics["t"].list();
        assert_eq!(list.iter().map(Sender::id).collect::<Vec<_>>(), ids);
    }

    #[test]
    fn a_prepared_frame_is_the_encoders_frame() {
        for len in [0, 5, 125, 126, 65535, 65536, 70000] {
            let payload = vec![7u8; len];
            let p = Prepared::binary(&payload);
            let mut want = Vec::new();
            crate::protocol::OutFrame::new(OwnedMessage::Binary(payload), None).unwrap().write_to(&mut want);
            assert_eq!(p.as_bytes(), &want[..], "{len}");
        }
    }
}

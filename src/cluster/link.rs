//! What a [`Hub`](crate::Hub) joined to Redis shares with its two Redis
//! threads: the bounded buffer of envelopes waiting to be published, the
//! node's sequence numbers, the counters, and the stop flag.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::envelope;
use super::{ClusterStats, RedisConfig};
use crate::hub::Forwarded;
use crate::hub::Prepared;

/// Topics whose sequence numbers a node keeps; past it the table starts
/// again (receivers see the numbers restart, which they accept without
/// counting a loss).
pub(crate) const MAX_SEQ_TOPICS: usize = 1 << 16;

/// One envelope waiting for its PUBLISH.
pub(crate) struct Outgoing {
    pub(crate) channel: Vec<u8>,
    pub(crate) envelope: Vec<u8>,
}

impl Outgoing {
    fn bytes(&self) -> usize {
        self.channel.len() + self.envelope.len()
    }
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    /// The next sequence number of each topic this node published to.
    seqs: HashMap<Box<str>, u64>,
    stopped: bool,
}

/// The counters behind [`ClusterStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) own: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) foreign: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) subscribed: AtomicUsize,
    pub(crate) publisher_up: AtomicBool,
    pub(crate) subscriber_up: AtomicBool,
}

/// Shared by the hub (which forwards publishes and says when its topics
/// change), the [`Cluster`](super::Cluster) handle and the two threads.
pub(crate) struct Link {
    pub(crate) config: RedisConfig,
    pub(crate) node: u64,
    pending: Mutex<Pending>,
    /// Wakes the publisher: something queued, or stop.
    queued: Condvar,
    /// Wakes a thread pausing between connection attempts: stop.
    stop_lock: Mutex<bool>,
    stop_cv: Condvar,
    /// Set when the hub's set of topics changed; the subscriber thread
    /// then brings its Redis subscriptions in line.
    pub(crate) topics_changed: AtomicBool,
    pub(crate) counters: Counters,
}

impl Link {
    pub(crate) fn new(config: RedisConfig, node: u64) -> Link {
        Link {
            config,
            node,
            pending: Mutex::new(Pending::default()),
            queued: Condvar::new(),
            stop_lock: Mutex::new(false),
            stop_cv: Condvar::new(),
            topics_changed: AtomicBool::new(true),
            counters: Counters::default(),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Redis channel of `topic`.
    pub(crate) fn channel(&self, topic: &str) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.config.prefix.len() + topic.len());
        c.extend_from_slice(self.config.prefix.as_bytes());
        c.extend_from_slice(topic.as_bytes());
        c
    }

    /// The topic of a Redis channel, if it has the prefix.
    pub(crate) fn topic<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(self.config.prefix.as_str())
    }

    /// Queues `msg` for other nodes, never waiting: refused at once when
    /// the buffer would pass its byte limit or the cluster has stopped. A
    /// refused message still takes its sequence number, so other nodes see
    /// the gap.
    pub(crate) fn forward(&self, topic: &str, msg: &Prepared) -> Forwarded {
        let (opcode, payload) = msg.opcode_and_payload();
        // Built outside the lock; only the sequence number is set under it.
        let mut out = Outgoing { channel: self.channel(topic), envelope: envelope::encode(self.node, opcode, payload) };
        let size = out.bytes();
        let mut p = self.pending();
        if p.stopped {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Forwarded::Dropped;
        }
        if p.seqs.len() >= MAX_SEQ_TOPICS && !p.seqs.contains_key(topic) {
            p.seqs.clear();
        }
        let seq = match p.seqs.get_mut(topic) {
            Some(s) => {
                *s += 1;
                *s
            }
            None => {
                p.seqs.insert(topic.into(), 1);
                1
            }
        };
        if p.bytes.saturating_add(size) > self.config.max_pending_bytes {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Forwarded::Dropped;
        }
        envelope::set_seq(&mut out.envelope, seq);
        p.bytes += size;
        p.queue.push_back(out);
        drop(p);
        self.queued.notify_one();
        Forwarded::Queued
    }

    /// Waits up to `wait` for envelopes, then takes up to `max_count` of
    /// them (at least one, whatever its size, if any). Empty when stopped
    /// or nothing came.
    pub(crate) fn take_batch(&self, wait: Duration, max_count: usize, max_bytes: usize) -> Vec<Outgoing> {
        let mut p = self.pending();
        if p.queue.is_empty() && !p.stopped {
            p = self.queued.wait_timeout(p, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < max_count {
            if !batch.is_empty() && p.queue.front().is_some_and(|f| bytes + f.bytes() > max_bytes) {
                break;
            }
            let Some(out) = p.queue.pop_front() else { break };
            bytes += out.bytes();
            batch.push(out);
        }
        p.bytes -= bytes;
        batch
    }

    /// Envelopes waiting, and their bytes.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let p = self.pending();
        (p.queue.len(), p.bytes)
    }

    /// Stops both threads: wakes them from any wait; what is still queued
    /// is counted as failed and let go.
    pub(crate) fn stop(&self) {
        {
            let mut p = self.pending();
            p.stopped = true;
            let left = p.queue.len() as u64;
            if left > 0 {
                log::warn!("leaving the cluster: {left} message(s) never published to Redis");
                self.counters.failed.fetch_add(left, Ordering::Relaxed);
            }
            p.queue.clear();
            p.bytes = 0;
        }
        self.queued.notify_all();
        *self.stop_lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop_cv.notify_all();
    }

    pub(crate) fn stopped(&self) -> bool {
        *self.stop_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps `d`, or less if stopped meanwhile; true if stopped.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        let guard = self.stop_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) =
            self.stop_cv.wait_timeout_while(guard, d, |stopped| !*stopped).unwrap_or_else(|e| e.into_inner());
        *guard
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        let c = &self.counters;
        let (pending, pending_bytes) = self.backlog();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterStats {
            connected: c.publisher_up.load(Ordering::Relaxed) && c.subscriber_up.load(Ordering::Relaxed),
            published: get(&c.published),
            dropped: get(&c.dropped),
            failed: get(&c.failed),
            pending,
            pending_bytes,
            received: get(&c.received),
            own: get(&c.own),
            lost: get(&c.lost),
            foreign: get(&c.foreign),
            malformed: get(&c.malformed),
            reconnects: get(&c.reconnects),
            subscribed: c.subscribed.load(Ordering::Relaxed),
        }
    }
}

/// What one of the two Redis threads does with each connection it gets.
pub(crate) trait Session {
    /// The thread's name in the log ("redis publisher").
    const WHO: &'static str;

    /// Uses `con` until stopped (`Ok`) or the connection fails (`Err`).
    fn serve(&mut self, link: &Link, con: &mut redis::Connection) -> redis::RedisResult<()>;

    /// Runs before each attempt to connect, and once at the end.
    fn between(&mut self, _link: &Link) {}
}

/// Connects to Redis until stopped, and hands each connection to
/// `session`: the first failure to connect is a warning (the next ones
/// debug lines until one succeeds), attempts wait out a [`Backoff`], a
/// connection that failed within a second of being made waits too (a
/// Redis that accepts and does not answer), one that served a while is
/// made again at once. Counts reconnections.
pub(crate) fn keep_connected<S: Session>(link: &Link, client: &redis::Client, session: &mut S) {
    let mut backoff = Backoff::new(&link.config);
    let mut ever_connected = false;
    let mut warned = false;
    while !link.stopped() {
        session.between(link);
        let mut con = match super::connect(client, &link.config) {
            Ok(con) => con,
            Err(e) => {
                if !warned {
                    warn!("{}: cannot reach {}: {e}; retrying", S::WHO, link.config.shown());
                    warned = true;
                } else {
                    debug!("{}: {e}", S::WHO);
                }
                if link.pause(backoff.next_delay()) {
                    break;
                }
                continue;
            }
        };
        warned = false;
        if ever_connected {
            link.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        ever_connected = true;
        let since = Instant::now();
        match session.serve(link, &mut con) {
            Ok(()) => break,
            Err(e) => {
                warn!("{}: {e}; reconnecting", S::WHO);
                if since.elapsed() < Duration::from_secs(1) {
                    if link.pause(backoff.next_delay()) {
                        break;
                    }
                } else {
                    backoff.reset();
                }
            }
        }
    }
    session.between(link);
}

/// Delays between connection attempts: from [`RedisConfig::backoff_min`]
/// doubling up to [`RedisConfig::backoff_max`], each drawn between half and
/// all of that (so nodes that lost Redis together do not all retry at once).
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &RedisConfig) -> Backoff {
        Backoff { min: config.backoff_min, max: config.backoff_max, next: config.backoff_min }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let mut r = [0u8; 4];
        let frac = match getrandom::getrandom(&mut r) {
            Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        d / 2 + d.mul_f64(frac / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(max: usize) -> Link {
        Link::new(RedisConfig::new("redis://127.0.0.1:1/").max_pending_bytes(max), 9)
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_and_refused_messages_leave_a_gap() {
        let l = link(200);
        let msg = Prepared::binary(&[1; 50]);
        let mut queued = 0;
        while l.forward("t", &msg) == Forwarded::Queued {
            queued += 1;
        }
        assert!(queued >= 1 && l.backlog().1 <= 200, "{queued} {:?}", l.backlog());
        assert_eq!(l.stats().dropped, 1);
        let batch = l.take_batch(Duration::ZERO, 100, 1 << 20);
        assert_eq!(batch.len(), queued);
        assert_eq!(l.backlog(), (0, 0));
        l.forward("t", &msg);
        let next = l.take_batch(Duration::ZERO, 100, 1 << 20);
        // queued messages 1..=queued, one refused, then this one.
        match envelope::decode(&next[0].envelope) {
            envelope::Incoming::Message { node: 9, seq, .. } => assert_eq!(seq, queued as u64 + 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(next[0].channel, b"syncws:t");
    }

    #[test]
    fn stop_refuses_and_wakes() {
        let l = link(1 << 20);
        l.forward("t", &Prepared::text("x"));
        l.stop();
        assert_eq!(l.stats().failed, 1);
        assert_eq!(l.forward("t", &Prepared::text("y")), Forwarded::Dropped);
        assert!(l.pause(Duration::from_secs(60)));
        assert!(l.take_batch(Duration::from_secs(60), 10, 10).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let config = RedisConfig::new("redis://x/")
            .backoff_min(Duration::from_millis(100))
            .backoff_max(Duration::from_millis(800));
        let mut b = Backoff::new(&config);
        let bounds = [100, 200, 400, 800, 800];
        for ms in bounds {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(ms / 2) && d <= Duration::from_millis(ms), "{d:?} {ms}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

//! The subscriber thread: keeps one Redis subscription per topic that has
//! local subscribers, and delivers what other nodes publish there to them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::envelope::{self, Body, Incoming};
use super::link::{keep_connected, Link, Session};
use crate::hub::{Hub, Prepared};

/// How long one wait for a message lasts before the thread looks at the
/// hub's topics and the stop flag: the delay before a new topic is
/// subscribed in Redis, at most.
const POLL: Duration = Duration::from_millis(50);
/// A quiet connection is checked (PING) this often, so a Redis that is
/// gone without closing the socket is found.
const KEEPALIVE: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE or UNSUBSCRIBE.
const CHUNK: usize = 256;
/// (topic, node) pairs whose last sequence number is remembered; past it
/// the table starts again (no loss is counted for a pair's first message).
const MAX_SEEN: usize = 1 << 16;

pub(crate) fn run(link: Arc<Link>, client: redis::Client, hub: Hub) {
    keep_connected(&link, &client, &mut Subscriber { hub, seen: Seen::default() });
}

struct Subscriber {
    hub: Hub,
    seen: Seen,
}

impl Session for Subscriber {
    const WHO: &'static str = "redis subscriber";

    fn serve(&mut self, link: &Link, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let result = serve(link, &self.hub, con, &mut self.seen);
        link.counters.subscriber_up.store(false, Ordering::Relaxed);
        link.counters.subscribed.store(0, Ordering::Relaxed);
        self.seen.report(link, true);
        result
    }
}

/// Subscribes to the hub's topics and delivers until stopped (`Ok`) or
/// the connection fails (`Err`).
fn serve(link: &Link, hub: &Hub, con: &mut redis::Connection, seen: &mut Seen) -> redis::RedisResult<()> {
    let io = Some(link.config.io_timeout);
    let mut ps = con.as_pubsub();
    let mut subscribed: HashSet<String> = HashSet::new();
    link.topics_changed.store(true, Ordering::Relaxed);
    let mut first = true;
    let mut last_heard = Instant::now();
    loop {
        if link.stopped() {
            return Ok(());
        }
        if link.topics_changed.swap(false, Ordering::Relaxed) {
            ps.set_read_timeout(io)?;
            reconcile(link, hub, &mut ps, &mut subscribed, seen)?;
            ps.set_read_timeout(Some(POLL))?;
            if first {
                info!(
                    "redis subscriber connected to {}: {} topic(s) subscribed",
                    link.config.shown(),
                    subscribed.len()
                );
                link.counters.subscriber_up.store(true, Ordering::Relaxed);
                first = false;
            }
        }
        match ps.get_message() {
            Ok(msg) => {
                last_heard = Instant::now();
                deliver(link, hub, msg.get_channel_name(), msg.get_payload_bytes(), seen);
            }
            Err(e) if e.is_timeout() => {
                if last_heard.elapsed() >= KEEPALIVE {
                    ps.set_read_timeout(io)?;
                    ps.ping::<redis::Value>()?;
                    ps.set_read_timeout(Some(POLL))?;
                    last_heard = Instant::now();
                }
            }
            Err(e) => return Err(e),
        }
        seen.report(link, false);
    }
}

/// Subscribes to the hub's topics that are not yet subscribed, and
/// unsubscribes from those the hub no longer has.
fn reconcile(
    link: &Link,
    hub: &Hub,
    ps: &mut redis::PubSub<'_>,
    subscribed: &mut HashSet<String>,
    seen: &mut Seen,
) -> redis::RedisResult<()> {
    let wanted: HashSet<String> = hub.topics().into_iter().map(|(t, _)| t).collect();
    let add: Vec<&String> = wanted.difference(subscribed).collect();
    for chunk in add.chunks(CHUNK) {
        let channels: Vec<Vec<u8>> = chunk.iter().map(|t| link.channel(t)).collect();
        ps.subscribe(channels)?;
    }
    let remove: Vec<String> = subscribed.difference(&wanted).cloned().collect();
    for chunk in remove.chunks(CHUNK) {
        let channels: Vec<Vec<u8>> = chunk.iter().map(|t| link.channel(t)).collect();
        ps.unsubscribe(channels)?;
    }
    if !add.is_empty() || !remove.is_empty() {
        debug!("redis subscriber: +{} -{} topic(s)", add.len(), remove.len());
    }
    for t in &remove {
        seen.forget(t);
    }
    *subscribed = wanted;
    link.counters.subscribed.store(subscribed.len(), Ordering::Relaxed);
    Ok(())
}

/// Delivers one payload from Redis to the local subscribers of its topic.
fn deliver(link: &Link, hub: &Hub, channel: &str, payload: &[u8], seen: &mut Seen) {
    let c = &link.counters;
    let Some(topic) = link.topic(channel) else {
        debug!("redis subscriber: a message on {channel:?}, not one of ours");
        return;
    };
    let msg = match envelope::decode(payload) {
        Incoming::Message { node, .. } if node == link.node => {
            // Delivered locally when it was published.
            c.own.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Incoming::Message { node, seq, body } => {
            seen.check(link, topic, node, seq);
            c.received.fetch_add(1, Ordering::Relaxed);
            match body {
                Body::Text(t) => Prepared::text(t),
                Body::Binary(b) => Prepared::binary(b),
            }
        }
        Incoming::Foreign(bytes) => {
            c.foreign.fetch_add(1, Ordering::Relaxed);
            match std::str::from_utf8(bytes) {
                Ok(t) => Prepared::text(t),
                Err(_) => Prepared::binary(bytes),
            }
        }
        Incoming::Malformed => {
            c.malformed.fetch_add(1, Ordering::Relaxed);
            debug!("redis subscriber: a malformed envelope ({} bytes) on {channel:?}, dropped", payload.len());
            return;
        }
    };
    hub.publish_local(topic, &msg);
}

/// The last sequence number seen from each node on each topic, to count
/// the messages lost in between.
#[derive(Default)]
struct Seen {
    last: HashMap<(Box<str>, u64), u64>,
    unreported: u64,
    reported_at: Option<Instant>,
}

impl Seen {
    fn check(&mut self, link: &Link, topic: &str, node: u64, seq: u64) {
        if self.last.len() >= MAX_SEEN && !self.last.contains_key(&(topic.into(), node)) {
            self.last.clear();
        }
        let prev = self.last.insert((topic.into(), node), seq);
        // A number at or below the last one: the node started its
        // numbering again (its table was full); nothing to count.
        if let Some(prev) = prev.filter(|&p| seq > p + 1) {
            let gap = seq - prev - 1;
            link.counters.lost.fetch_add(gap, Ordering::Relaxed);
            self.unreported += gap;
        }
    }

    fn forget(&mut self, topic: &str) {
        self.last.retain(|(t, _), _| &**t != topic);
    }

    /// Logs the messages lost since the last line, at most once a second
    /// unless `now`.
    fn report(&mut self, link: &Link, now: bool) {
        if self.unreported == 0 || (!now && self.reported_at.is_some_and(|t| t.elapsed() < Duration::from_secs(1))) {
            return;
        }
        warn!(
            "redis subscriber: {} message(s) from other nodes lost (gaps in their sequence numbers); {} in all",
            self.unreported,
            link.counters.lost.load(Ordering::Relaxed)
        );
        self.unreported = 0;
        self.reported_at = Some(Instant::now());
    }
}

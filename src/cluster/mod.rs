//! A [`Hub`] joined to the hubs of other processes through Redis pub/sub
//! (feature `redis`): a publish on any node reaches the subscribers of that
//! topic on every node.
//!
//! ```no_run
//! use syncws::cluster::RedisConfig;
//! use syncws::{Hub, Prepared};
//!
//! let hub = Hub::new();
//! let cluster = hub.join_redis(RedisConfig::new("redis://127.0.0.1:6379/"))?;
//! // Serve connections on `hub` as without Redis (`Hub::subscribe`, ...).
//! hub.publish("news", &Prepared::text("to every node")); // local subscribers now, other nodes through Redis
//! println!("{:?}", cluster.stats());
//! cluster.shutdown(); // or drop it: the hub is local again
//! # Ok::<(), syncws::Error>(())
//! ```
//!
//! # How
//!
//! Each node runs two threads with a Redis connection each (the `redis`
//! crate's blocking connection; no async runtime):
//!
//! - the **subscriber** holds one Redis subscription per topic that has
//!   local subscribers, on the channel `<prefix><topic>` (`syncws:news`;
//!   [`RedisConfig::prefix`]): a topic's first subscriber subscribes the
//!   node within 50 ms, its last one leaving unsubscribes it. What arrives
//!   is published to the local subscribers
//!   ([`BacklogPolicy`](crate::BacklogPolicy) applies as for any publish);
//! - the **publisher** takes what [`Hub::publish`] queued and sends it,
//!   pipelined, with `PUBLISH`.
//!
//! [`Hub::publish`] delivers to the node's own subscribers at once, as
//! without Redis, and queues the message for the publisher thread; it never
//! touches a socket, so a callback that publishes never waits for Redis.
//!
//! # The envelope
//!
//! A node publishes each message as a 21-byte header and the payload: a
//! magic (`FF 'S' 'W' 01`), the message type (1 Text, 2 Binary), the node's
//! id (a random `u64` unless [`RedisConfig::node_id`] sets it) and a
//! sequence number (per node and topic, from 1), both big-endian. A node
//! skips its own messages when Redis sends them back (it delivered them
//! when they were published, and never twice), and counts the gaps in
//! every other node's numbers as lost messages ([`ClusterStats::lost`],
//! and a `warn` line at most once a second).
//!
//! A payload without the envelope, such as `redis-cli PUBLISH syncws:news
//! hello`, is delivered too, as it is: Text if it is valid UTF-8, else
//! Binary ([`ClusterStats::foreign`]). Text cannot be mistaken for an
//! envelope (UTF-8 never starts with `0xFF`); a foreign Binary payload
//! that begins with the magic is read as one, and dropped as malformed if
//! it is not ([`ClusterStats::malformed`]).
//!
//! # Guarantees
//!
//! - **At most once.** Redis pub/sub keeps nothing: a node that is not
//!   subscribed when a message is published (Redis down, reconnecting, a
//!   topic's subscription not yet made) never gets it. Nothing is
//!   retried; what is lost is counted and logged as numbers.
//! - **Order.** One node's messages to a topic reach every other node in
//!   the order they were published on it (one queue, one connection, one
//!   Redis channel); with several threads publishing on a node, that is the
//!   order in which their [`Hub::publish`] calls queued them. Messages of
//!   different nodes interleave in the order Redis received them.
//! - **Bounded.** Messages wait for the publisher thread in a buffer of
//!   at most [`RedisConfig::max_pending_bytes`] bytes (channel names and
//!   envelopes). While Redis is unreachable they wait there (and are
//!   published when it is back, if they still fit); a publish that would
//!   pass the limit is not forwarded ([`Forwarded::Dropped`](crate::Forwarded::Dropped)
//!   in its [`Published`](crate::Published), counted in
//!   [`ClusterStats::dropped`]); local subscribers get it all the same.
//! - **Deadlines.** Every Redis call has one: connecting
//!   ([`RedisConfig::connect_timeout`]), each command's reply and each
//!   write ([`RedisConfig::io_timeout`]). An idle connection is pinged
//!   every second or two, so a Redis that stopped answering is left.
//! - **Faults.** Redis down at start, restarted, or too slow: the node
//!   keeps serving its local connections and publishes locally; both
//!   threads reconnect, with a capped backoff ([`RedisConfig::backoff_max`],
//!   1 s by default), and the subscriber subscribes every local topic
//!   again. A batch whose `PUBLISH` failed with the connection is counted
//!   in [`ClusterStats::failed`].
//!
//! Redis disconnects a subscriber that falls behind (its
//! `client-output-buffer-limit pubsub`, 32 MB by default); the subscriber
//! thread never waits for a local subscriber (the hub's publish does not),
//! so only a node too slow to read at all is disconnected.
//!
//! Pub/sub channels are not in a database: the `/DB` of the URL, if any,
//! does not separate clusters; the prefix does.

mod envelope;
pub(crate) mod link;
mod publisher;
mod subscriber;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hub::Hub;
use link::Link;

/// Where the cluster's Redis is, and the limits and deadlines of the
/// node's Redis connections. Chainable setters; each documents its default.
///
/// ```
/// use std::time::Duration;
/// use syncws::cluster::RedisConfig;
/// let config = RedisConfig::new("redis://127.0.0.1:6379/")
///     .prefix("chat:")
///     .max_pending_bytes(4 << 20)
///     .backoff_max(Duration::from_millis(500));
/// assert_eq!(config.url(), "redis://127.0.0.1:6379/");
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) node_id: Option<u64>,
    pub(crate) max_pending_bytes: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.shown())
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

impl RedisConfig {
    /// The default [`max_pending_bytes`](Self::max_pending_bytes): 4 MiB.
    pub const DEFAULT_MAX_PENDING_BYTES: usize = 4 << 20;

    /// The Redis at `url`: `redis://[:PASSWORD@]HOST[:PORT][/DB]`,
    /// `rediss://` not supported (the `redis` crate is built without TLS),
    /// or `redis+unix:///path`. Checked by [`Hub::join_redis`].
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "syncws:".into(),
            node_id: None,
            max_pending_bytes: RedisConfig::DEFAULT_MAX_PENDING_BYTES,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
        }
    }

    /// The URL given to [`new`](Self::new).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as logs, errors and `Debug` show it: without a password.
    pub(crate) fn shown(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('/').map_or(rest, |(authority, _)| authority).rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => self.url.clone(),
            },
            None => self.url.clone(),
        }
    }

    /// The start of every channel name: topic `t` is channel
    /// `<prefix>t`. Default `syncws:`. Nodes of one cluster must agree;
    /// two clusters on one Redis need two prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// This node's id in the envelopes. Default: random (the OS's
    /// randomness), a new one each time a hub joins. Two nodes with one id
    /// skip each other's messages, so set it only to ids known unique.
    pub fn node_id(mut self, id: u64) -> RedisConfig {
        self.node_id = Some(id);
        self
    }

    /// Bytes of messages (envelopes and channel names) that may wait for
    /// the publisher thread; past it a publish is not forwarded to other
    /// nodes. Default [`DEFAULT_MAX_PENDING_BYTES`](Self::DEFAULT_MAX_PENDING_BYTES):
    /// about 1 s of a busy node's traffic, and what a node may hold while
    /// Redis is down.
    pub fn max_pending_bytes(mut self, bytes: usize) -> RedisConfig {
        self.max_pending_bytes = bytes;
        self
    }

    /// Deadline to connect to Redis: TCP (each address of the host) and
    /// the connection's setup commands (AUTH, SELECT). Default 2 s. The
    /// host name's lookup, if the URL has a name, is the system resolver's
    /// and bounded by its own timeouts; an IP address avoids it.
    pub fn connect_timeout(mut self, d: Duration) -> RedisConfig {
        self.connect_timeout = d;
        self
    }

    /// Deadline for each reply from Redis and each write to it; a
    /// connection that misses it is dropped and made again. Default 2 s.
    pub fn io_timeout(mut self, d: Duration) -> RedisConfig {
        self.io_timeout = d;
        self
    }

    /// The first delay before connecting again after a failed attempt.
    /// Default 50 ms.
    pub fn backoff_min(mut self, d: Duration) -> RedisConfig {
        self.backoff_min = d;
        self
    }

    /// The longest delay between attempts to connect (the delay doubles
    /// from [`backoff_min`](Self::backoff_min) up to it, each drawn between
    /// half and all of it). Default 1 s: a node is back in the cluster
    /// within about a second of Redis accepting again.
    pub fn backoff_max(mut self, d: Duration) -> RedisConfig {
        self.backoff_max = d;
        self
    }

    fn validate(&self) -> Result<redis::Client> {
        for (name, d) in [("connect_timeout", self.connect_timeout), ("io_timeout", self.io_timeout)] {
            if d.is_zero() {
                return Err(Error::Config(format!("RedisConfig::{name} must be above zero")));
            }
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(Error::Config("RedisConfig: backoff_min must be above zero and at most backoff_max".into()));
        }
        redis::Client::open(self.url.as_str()).map_err(|e| Error::Url(format!("{}: {e}", self.shown())))
    }
}

/// What a node's link to Redis has done so far ([`Cluster::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Both Redis connections are up (the subscriber's with every local
    /// topic subscribed at least once).
    pub connected: bool,
    /// Messages published to Redis (their `PUBLISH` answered).
    pub published: u64,
    /// Messages not forwarded: the buffer was full
    /// ([`RedisConfig::max_pending_bytes`]) or the cluster was left.
    pub dropped: u64,
    /// Messages lost on the way to Redis, or whose fate is unknown: in a
    /// batch whose `PUBLISH` failed with its connection (some may have
    /// reached Redis before it failed), or still queued when the cluster
    /// was left.
    pub failed: u64,
    /// Messages waiting for the publisher thread now.
    pub pending: usize,
    /// Their bytes, at most [`RedisConfig::max_pending_bytes`].
    pub pending_bytes: usize,
    /// Other nodes' messages delivered to this node's subscribers.
    pub received: u64,
    /// This node's messages that Redis sent back, skipped.
    pub own: u64,
    /// Other nodes' messages that never arrived: the gaps in their
    /// sequence numbers, on topics this node is subscribed to.
    pub lost: u64,
    /// Payloads without the envelope (published by something other than
    /// a node), delivered as they are.
    pub foreign: u64,
    /// Envelopes that could not be read, dropped.
    pub malformed: u64,
    /// Connections to Redis made again after one was lost (both threads).
    pub reconnects: u64,
    /// Channels the node is subscribed to now.
    pub subscribed: usize,
}

/// A hub's membership of a cluster, from [`Hub::join_redis`]. Keep it:
/// dropping it (or [`shutdown`](Self::shutdown)) leaves the cluster.
#[must_use = "dropping the Cluster leaves the cluster at once"]
pub struct Cluster {
    link: Arc<Link>,
    hub: Hub,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.link.node).field("url", &self.link.config.shown()).finish()
    }
}

impl Cluster {
    /// This node's id in the envelopes.
    pub fn node_id(&self) -> u64 {
        self.link.node
    }

    /// What the link to Redis has done so far.
    pub fn stats(&self) -> ClusterStats {
        self.link.stats()
    }

    /// Leaves the cluster: the hub publishes locally only from now on,
    /// messages still queued for Redis are let go (counted as failed and
    /// logged), and both threads are joined, within the connect or I/O
    /// deadline of a Redis call in progress.
    pub fn shutdown(mut self) {
        self.leave();
    }

    fn leave(&mut self) {
        self.hub.unlink(&self.link);
        self.link.stop();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                log::error!("a redis thread panicked (a bug of syncws)");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Hub {
    /// Joins this hub to the other hubs that use the same Redis (and
    /// prefix): from now on a publish on any of them reaches the
    /// subscribers on all. Feature `redis`; see the [`cluster`](crate::cluster)
    /// module for the guarantees.
    ///
    /// Redis need not be up: the node serves its local connections and
    /// connects when it can. Fails only for a URL the `redis` crate does
    /// not take ([`Error::Url`]), a zero deadline ([`Error::Config`]), a
    /// hub already joined ([`Error::Config`]), or threads that cannot be
    /// started ([`Error::Io`]).
    pub fn join_redis(&self, config: RedisConfig) -> Result<Cluster> {
        let client = config.validate()?;
        let node = config.node_id.unwrap_or_else(random_node_id);
        let link = Arc::new(Link::new(config, node));
        if !self.link(&link) {
            return Err(Error::Config("this hub has already joined a cluster".into()));
        }
        let mut cluster = Cluster { link: Arc::clone(&link), hub: self.clone(), threads: Vec::new() };
        let (l, c) = (Arc::clone(&link), client.clone());
        cluster
            .threads
            .push(std::thread::Builder::new().name("syncws-redis-pub".into()).spawn(move || publisher::run(l, c))?);
        let (l, h) = (Arc::clone(&link), self.clone());
        cluster.threads.push(
            std::thread::Builder::new().name("syncws-redis-sub".into()).spawn(move || subscriber::run(l, client, h))?,
        );
        log::info!("node {node:016x} joining the cluster at {}", link.config.shown());
        Ok(cluster)
    }
}

/// A connection to Redis with every deadline set.
fn connect(client: &redis::Client, config: &RedisConfig) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(config.connect_timeout)?;
    con.set_read_timeout(Some(config.io_timeout))?;
    con.set_write_timeout(Some(config.io_timeout))?;
    Ok(con)
}

fn random_node_id() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // A process-unique value from std's hasher seed and the clock.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.write_u32(std::process::id());
        return h.finish();
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs_and_debug() {
        let c = RedisConfig::new("redis://user:s3cret@db.example:6379/2");
        assert_eq!(c.shown(), "redis://***@db.example:6379/2");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(RedisConfig::new("redis://127.0.0.1:6379/").shown(), "redis://127.0.0.1:6379/");
        assert_eq!(RedisConfig::new("redis://h/x@y").shown(), "redis://h/x@y");
        let err = Hub::new().join_redis(RedisConfig::new("redis://:pw@[bad/")).unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

//! The publisher thread: takes envelopes from the bounded buffer and
//! publishes them in pipelined batches on its own Redis connection, in
//! the order they were queued.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::link::{keep_connected, Link, Session};

/// Envelopes sent in one pipeline, at most.
const BATCH_COUNT: usize = 512;
/// Bytes sent in one pipeline, at most (one larger envelope goes alone).
const BATCH_BYTES: usize = 1 << 20;
/// How long the thread waits for envelopes before it checks on the
/// connection and the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// An idle connection is checked (PING) this often, so a Redis that went
/// away is found before a batch is lost to it.
const KEEPALIVE: Duration = Duration::from_secs(1);

pub(crate) fn run(link: Arc<Link>, client: redis::Client) {
    keep_connected(&link, &client, &mut Publisher { drops: DropLog::default() });
}

struct Publisher {
    drops: DropLog,
}

impl Session for Publisher {
    const WHO: &'static str = "redis publisher";

    fn serve(&mut self, link: &Link, con: &mut redis::Connection) -> redis::RedisResult<()> {
        info!("redis publisher connected to {}", link.config.shown());
        link.counters.publisher_up.store(true, Ordering::Relaxed);
        let result = serve(link, con, &mut self.drops);
        link.counters.publisher_up.store(false, Ordering::Relaxed);
        result
    }

    fn between(&mut self, link: &Link) {
        self.drops.report(link);
    }
}

/// Publishes until stopped (`Ok`) or the connection fails (`Err`, the
/// batch in flight counted as failed).
fn serve(link: &Link, con: &mut redis::Connection, drops: &mut DropLog) -> redis::RedisResult<()> {
    let mut last_used = Instant::now();
    loop {
        drops.report(link);
        let batch = link.take_batch(IDLE_WAIT, BATCH_COUNT, BATCH_BYTES);
        if batch.is_empty() {
            if link.stopped() {
                return Ok(());
            }
            if last_used.elapsed() >= KEEPALIVE {
                redis::cmd("PING").exec(con)?;
                last_used = Instant::now();
            }
            continue;
        }
        let mut pipe = redis::pipe();
        for out in &batch {
            pipe.cmd("PUBLISH").arg(&out.channel).arg(&out.envelope).ignore();
        }
        let n = batch.len() as u64;
        if let Err(e) = pipe.exec(con) {
            warn!("redis publisher: {n} message(s) lost with the connection");
            link.counters.failed.fetch_add(n, Ordering::Relaxed);
            return Err(e);
        }
        link.counters.published.fetch_add(n, Ordering::Relaxed);
        last_used = Instant::now();
    }
}

/// Says, at most once a second, how many messages were refused because
/// the buffer was full (Redis unreachable or slower than the publishers).
#[derive(Default)]
struct DropLog {
    reported: u64,
    at: Option<Instant>,
}

impl DropLog {
    fn report(&mut self, link: &Link) {
        let dropped = link.counters.dropped.load(Ordering::Relaxed);
        if dropped == self.reported || self.at.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        warn!(
            "redis publisher: {} message(s) not forwarded to other nodes (buffer of {} bytes full or cluster left); {dropped} in all",
            dropped - self.reported,
            link.config.max_pending_bytes
        );
        self.reported = dropped;
        self.at = Some(Instant::now());
    }
}

//! The hub over real sockets: fan-out in publish order, isolated topics,
//! the backlog policy for a subscriber that never reads (while the others
//! get everything), racing subscriptions and closes that leave nothing
//! behind, and `Running::broadcast`.
//!
//! Waits are bounded polls or reads with timeouts; nothing depends on
//! timing.

mod support;

use std::io::{BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender as ChanSender};
use support::*;
use syncws::{
    BacklogPolicy, Config, Hub, Listener, OwnedMessage, Prepared, Result, Running, Sender, WsHandshake, WsOption,
    WsTrait,
};

/// Subscribes each connection to the topic its path names, and reports
/// its sender.
struct Sub {
    hub: Hub,
    opened: ChanSender<(String, Sender)>,
}

impl WsTrait for Sub {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let topic = shake.request.path.trim_start_matches('/').to_owned();
        assert!(self.hub.subscribe(&shake.sender, &topic));
        let _ = self.opened.send((topic, shake.sender));
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

fn hub_server(hub: &Hub) -> (Running, Receiver<(String, Sender)>) {
    init_log();
    let (tx, rx) = unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", Config::default()).expect("bind");
    let hub = hub.clone();
    let running = listener
        .spawn(move |server| server.set_callback_ws(Box::new(Sub { hub: hub.clone(), opened: tx.clone() })))
        .expect("spawn");
    (running, rx)
}

/// `n` raw clients subscribed to `topic`, once the hub has them all; and
/// their server-side senders, in the same order.
fn subscribers(
    addr: SocketAddr,
    opened: &Receiver<(String, Sender)>,
    topic: &str,
    n: usize,
) -> Vec<(TcpStream, Sender)> {
    (0..n)
        .map(|_| {
            let s = raw_ws_at(addr, &format!("/{topic}"));
            let (t, sender) = opened.recv_timeout(WAIT).expect("on_open");
            assert_eq!(t, topic);
            (s, sender)
        })
        .collect()
}

/// Polls `cond` until it holds; panics after [`WAIT`].
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads one server frame from a buffered reader: (first byte, payload).
fn frame(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    r.read_exact(&mut payload)?;
    Ok((h[0], payload))
}

/// A message carrying its sequence number first, padded to `size` bytes.
fn numbered(seq: u64, size: usize) -> Prepared {
    let mut b = seq.to_be_bytes().to_vec();
    b.resize(size.max(8), 0xab);
    Prepared::binary(&b)
}

fn seq_of(payload: &[u8]) -> u64 {
    u64::from_be_bytes(payload[..8].try_into().unwrap())
}

/// Subscribers and messages of the fan-out test: 300 x 300 by default
/// (2 shared cores in CI; enough subscribers for a publish to be spread
/// over the cores); `SYNCWS_HUB_FULL=1` runs the 1,000 x 1,000 of the
/// issue.
fn fan_out_size() -> usize {
    if std::env::var_os("SYNCWS_HUB_FULL").is_some() {
        1000
    } else {
        300
    }
}

/// Tests take it shared; the one that counts the process's threads takes
/// it alone, so that no other test's connections are counted.
static THREADS: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    THREADS.read().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn every_subscriber_gets_every_message_in_publish_order() {
    let _shared = shared();
    let n = fan_out_size();
    let hub = Hub::new();
    // Spread from 256 subscribers on (2,048 by default), so the parallel
    // path runs here.
    hub.set_parallel_from(256);
    let (running, opened) = hub_server(&hub);
    let subs = subscribers(running.local_addr(), &opened, "fan", n);
    assert_eq!(hub.subscribers("fan"), n);
    // Readers run meanwhile: a subscriber's messages are not all held by
    // the kernel at 1,000 x 1,000.
    let readers: Vec<_> = subs
        .into_iter()
        .map(|(s, _sender)| {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                for want in 0..n as u64 {
                    let (first, payload) = frame(&mut r).expect("a message");
                    assert_eq!(first, 0x82);
                    assert_eq!(seq_of(&payload), want, "out of order or lost");
                }
            })
        })
        .collect();
    let mut helpers = 0;
    for i in 0..n as u64 {
        let report = hub.publish("fan", &numbered(i, 16));
        assert_eq!(report.delivered, n, "{report:?}");
        if i % 50 == 0 {
            helpers = helpers.max(threads_named("syncws-fanout"));
        }
    }
    for r in readers {
        r.join().expect("reader");
    }
    running.shutdown();
    // The publishes were spread over the cores, and the helpers end once
    // idle (after 5 s).
    if std::thread::available_parallelism().map_or(1, |c| c.get()) > 1 {
        assert!(helpers >= 1, "no fan-out helper ran for {n} subscribers");
    }
    until("the fan-out helpers to end", || threads_named("syncws-fanout") == 0);
}

#[test]
fn topics_are_isolated() {
    let _shared = shared();
    let hub = Hub::new();
    let (running, opened) = hub_server(&hub);
    let addr = running.local_addr();
    let mut a = subscribers(addr, &opened, "a", 3);
    let mut b = subscribers(addr, &opened, "b", 3);
    assert_eq!(hub.topics(), [("a".to_owned(), 3), ("b".to_owned(), 3)]);
    for i in 0..10 {
        assert_eq!(hub.publish("a", &Prepared::text(&format!("a{i}"))).delivered, 3);
    }
    assert_eq!(hub.publish("b", &Prepared::text("b-first")).delivered, 3);
    assert_eq!(hub.publish("nobody", &Prepared::text("x")).subscribers(), 0);
    for (s, _) in &mut a {
        for i in 0..10 {
            assert_eq!(read_server_frame(s), (0x81, format!("a{i}").into_bytes()));
        }
    }
    // The first thing a `b` subscriber sees is `b`'s first message.
    for (s, _) in &mut b {
        assert_eq!(read_server_frame(s), (0x81, b"b-first".to_vec()));
    }
    // Unsubscribing one leaves the others.
    assert!(hub.unsubscribe(&b[0].1, "b"));
    assert!(!hub.unsubscribe(&b[0].1, "b"));
    assert_eq!(hub.publish("b", &Prepared::text("b-second")).delivered, 2);
    running.shutdown();
}

#[test]
fn a_connection_leaves_its_topics_when_it_ends() {
    let _shared = shared();
    let hub = Hub::new();
    let (running, opened) = hub_server(&hub);
    let mut subs = subscribers(running.local_addr(), &opened, "t", 2);
    let (_, sender) = &subs[0];
    assert!(hub.subscribe(sender, "other"));
    assert!(!hub.subscribe(sender, "other"), "already subscribed");
    assert!(hub.is_subscribed(sender, "other"));
    let (gone, gone_sender) = subs.remove(0);
    drop(gone);
    until("the ended connection to leave its topics", || hub.subscribers("t") == 1);
    assert_eq!(hub.topics(), [("t".to_owned(), 1)]);
    // An ended connection cannot subscribe again.
    until("the connection to end", || gone_sender.is_closed());
    until("the connection's thread to finish", || running.connections() == 1);
    assert!(!hub.subscribe(&gone_sender, "late"));
    assert_eq!(hub.subscribers("late"), 0);
    running.shutdown();
    assert!(hub.topics().is_empty());
}

/// 50 subscribers that read, paced so that each is never more than one
/// message behind, and one that never reads: it gets `policy`, its
/// backlog never passes the limit, and the 50 get every message in order.
fn slow_subscriber(policy: BacklogPolicy) {
    const READERS: usize = 50;
    const SIZE: usize = 32 << 10;
    const MAX_BACKLOG: usize = 256 << 10;
    const MAX_MESSAGES: u64 = 3000;
    let hub = Hub::with_backlog(MAX_BACKLOG, policy);
    let (running, opened) = hub_server(&hub);
    let addr = running.local_addr();
    let subs = subscribers(addr, &opened, "feed", READERS);
    let (mut slow, slow_sender) = subscribers(addr, &opened, "feed", 1).pop().unwrap();
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(k, (s, _))| {
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(64 << 10, s);
                let mut want = 0;
                // Until the test's end marker (a text frame).
                loop {
                    let (first, payload) = frame(&mut r).expect("a reader's message");
                    if first == 0x81 {
                        return want;
                    }
                    if seq_of(&payload) == u64::MAX {
                        continue; // the skip test's marker
                    }
                    assert_eq!(seq_of(&payload), want, "reader {k}: out of order or lost");
                    want += 1;
                    progress[k].store(want as usize, Ordering::Release);
                }
            })
        })
        .collect();
    let mut hit = None;
    let mut seq = 0;
    while seq < MAX_MESSAGES {
        // Every reader is at most one message behind, so its backlog stays
        // under the limit whatever the scheduling: a message counts in the
        // backlog until the writer thread's write of it returns, and a
        // writer thread kept off the cores right after a write still counts
        // what the reader has read. At most two messages written but still
        // counted, two queued and this one: 5 x 32 KiB, under 256 KiB.
        // (With 4 behind that came to 10, and a busy machine closed a
        // reader.)
        let floor = seq.saturating_sub(1) as usize;
        until("the readers to catch up", || progress.iter().all(|p| p.load(Ordering::Acquire) >= floor));
        let report = hub.publish("feed", &numbered(seq, SIZE));
        seq += 1;
        assert!(slow_sender.queued_bytes() <= MAX_BACKLOG, "backlog {} over the limit", slow_sender.queued_bytes());
        let hit_now = match policy {
            BacklogPolicy::Close => report.closed,
            _ => report.dropped,
        };
        if hit_now > 0 {
            assert_eq!(hit_now, 1, "{report:?}");
            assert_eq!(report.delivered, READERS, "{report:?}");
            hit.get_or_insert(seq);
        }
        if hit.is_some_and(|at| seq >= at + 20) {
            break;
        }
    }
    assert!(hit.is_some(), "the slow subscriber never got the policy");
    assert!(running.stats().queue_full >= 1);
    match policy {
        BacklogPolicy::Close => {
            until("the closed subscriber to leave the topic", || hub.subscribers("feed") == READERS);
            // What it reads ends: a cut connection (the Close frame, if it
            // made it, is the 1008).
            slow.set_read_timeout(Some(WAIT)).unwrap();
            let mut r = BufReader::new(&mut slow);
            loop {
                match frame(&mut r) {
                    Ok((0x88, payload)) => {
                        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
                        break;
                    }
                    Ok((0x82, _)) => {}
                    Ok(other) => panic!("unexpected frame {:?}", other.0),
                    Err(e) => {
                        assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "the connection was not cut");
                        break;
                    }
                }
            }
        }
        _ => {
            assert_eq!(hub.subscribers("feed"), READERS + 1, "skip keeps the subscriber");
            // Now it reads: increasing numbers, with a gap where messages
            // were skipped, up to a marker published once its backlog
            // drained.
            let stream = slow.try_clone().unwrap();
            let reader = std::thread::spawn(move || {
                let mut r = BufReader::new(stream);
                let (mut last, mut gaps, mut n) = (None::<u64>, 0, 0);
                loop {
                    let (first, payload) = frame(&mut r).expect("a skipped subscriber's message");
                    assert_eq!(first, 0x82);
                    let s = seq_of(&payload);
                    if s == u64::MAX {
                        return (n, gaps);
                    }
                    if let Some(l) = last {
                        assert!(s > l, "out of order: {s} after {l}");
                        gaps += usize::from(s != l + 1);
                    }
                    last = Some(s);
                    n += 1;
                }
            });
            until("the backlog to drain", || slow_sender.queued_bytes() == 0);
            let marker = hub.publish("feed", &numbered(u64::MAX, 8));
            assert_eq!((marker.delivered, marker.dropped), (READERS + 1, 0), "{marker:?}");
            let (n, gaps) = reader.join().expect("slow reader");
            assert!(gaps >= 1 || n < seq, "skipped messages left no gap ({n} of {seq} read)");
            assert!(n < seq, "every message arrived though some were skipped");
        }
    }
    let end = hub.publish("feed", &Prepared::text("end"));
    assert_eq!(end.delivered, READERS + usize::from(policy == BacklogPolicy::Skip));
    for r in readers {
        assert_eq!(r.join().expect("reader"), seq);
    }
    running.shutdown();
}

#[test]
fn a_subscriber_that_never_reads_is_closed_and_costs_bounded_memory() {
    let _shared = shared();
    slow_subscriber(BacklogPolicy::Close);
}

#[test]
fn a_subscriber_that_never_reads_skips_messages_and_costs_bounded_memory() {
    let _shared = shared();
    slow_subscriber(BacklogPolicy::Skip);
}

#[test]
fn racing_subscriptions_publishes_and_closes_leave_nothing_behind() {
    let _alone = THREADS.write().unwrap_or_else(|p| p.into_inner());
    const CONNS: usize = 40;
    const OPS: usize = 10_000;
    const TOPICS: usize = 8;
    let hub = Hub::with_backlog(64 << 10, BacklogPolicy::Skip);
    let (running, opened) = hub_server(&hub);
    let addr = running.local_addr();
    let subs = subscribers(addr, &opened, "base", CONNS);
    let senders: Vec<Sender> = subs.iter().map(|(_, s)| s.clone()).collect();
    // Clients read and discard until their connection ends.
    let readers: Vec<_> = subs
        .into_iter()
        .map(|(s, _)| {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                let mut buf = [0u8; 4096];
                while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
            })
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let (hub, done) = (hub.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !done.load(Ordering::Acquire) {
                    hub.publish(&format!("t{}", i % TOPICS), &Prepared::text(&format!("p{p}:{i}")));
                    i += 1;
                }
            })
        })
        .collect();
    let closed = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (hub, senders, closed) = (hub.clone(), senders.clone(), Arc::clone(&closed));
            std::thread::spawn(move || {
                // A small deterministic generator per worker.
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1);
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                for _ in 0..OPS / 4 {
                    let r = next();
                    let sender = &senders[(r % CONNS as u64) as usize];
                    let topic = format!("t{}", (r >> 8) % TOPICS as u64);
                    match (r >> 16) % 100 {
                        0 => {
                            sender.terminate();
                            closed.lock().unwrap().push(sender.id());
                        }
                        1..=55 => {
                            hub.subscribe(sender, &topic);
                        }
                        _ => {
                            hub.unsubscribe(sender, &topic);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    // Connections closed during the race have left every topic.
    let closed = closed.lock().unwrap().clone();
    until("closed connections to end", || running.connections() == CONNS - count_unique(&closed));
    for s in senders.iter().filter(|s| closed.contains(&s.id())) {
        for t in 0..TOPICS {
            assert!(!hub.is_subscribed(s, &format!("t{t}")), "a closed connection is still subscribed");
        }
    }
    // The subscriptions left are exactly those of live connections.
    let live: usize = hub.topics().iter().map(|(_, n)| n).sum();
    let expected: usize = senders
        .iter()
        .filter(|s| !closed.contains(&s.id()))
        .map(|s| {
            (0..TOPICS).filter(|t| hub.is_subscribed(s, &format!("t{t}"))).count()
                + usize::from(hub.is_subscribed(s, "base"))
        })
        .sum();
    assert_eq!(live, expected);
    // Now everything closes: nothing is left.
    for s in &senders {
        s.terminate();
    }
    until("every connection to end", || running.connections() == 0);
    done.store(true, Ordering::Release);
    for p in publishers {
        p.join().expect("publisher");
    }
    assert!(hub.topics().is_empty(), "stale subscriptions: {:?}", hub.topics());
    for r in readers {
        r.join().expect("reader");
    }
    running.shutdown();
    until("no syncws thread left", || threads_named("syncws") == 0);
}

fn count_unique(ids: &[u64]) -> usize {
    let set: std::collections::HashSet<_> = ids.iter().collect();
    set.len()
}

#[test]
fn running_broadcast_reaches_every_connection() {
    let _shared = shared();
    let hub = Hub::new();
    let (running, opened) = hub_server(&hub);
    let addr = running.local_addr();
    let mut subs = subscribers(addr, &opened, "x", 3);
    subs.extend(subscribers(addr, &opened, "y", 2));
    let report = running.broadcast(&Prepared::text("to all"));
    assert_eq!(report.delivered, 5, "{report:?}");
    for (s, _) in &mut subs {
        assert_eq!(read_server_frame(s), (0x81, b"to all".to_vec()));
    }
    running.shutdown();
}

//! What Redis adds to a publish: latency of one message published on a
//! node to a WebSocket subscriber of the same node, and to one of another
//! node through Redis (p50 and p99), then the messages per second one node
//! pushes through Redis to another node's subscriber.
//!
//! ```sh
//! redis-server --port 16379 --save '' --appendonly no &
//! cargo run --release --features redis --example cluster_bench -- redis://127.0.0.1:16379/ [ROUNDS] [MESSAGES]
//! ```
//!
//! Both nodes run in this process, each a `Hub` with its own listener and
//! its own two Redis connections, as two processes would have; the
//! subscribers are `syncws::Client`s on loopback.

use std::time::{Duration, Instant};

use syncws::cluster::RedisConfig;
use syncws::{
    Client, Forwarded, Hub, Listener, OwnedMessage, Prepared, Request, Response, Result, Running, WsHandshake,
    WsOption, WsTrait,
};

struct Subscriber(Hub, String);

impl WsTrait for Subscriber {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        self.1 = req.path.trim_start_matches('/').to_owned();
        WsHandshake::build_request(req)
    }
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.0.subscribe(&shake.sender, &self.1);
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

fn node(hub: &Hub) -> Running {
    let h = hub.clone();
    Listener::bind("127.0.0.1:0")
        .expect("bind")
        .spawn(move |s| s.set_callback_ws(Box::new(Subscriber(h.clone(), String::new()))))
        .expect("spawn")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Publishes `rounds` messages one at a time on `from`, each once the
/// previous one reached `to`; the latencies, sorted.
fn latencies(from: &Hub, to: &mut Client, topic: &str, tag: &str, rounds: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(rounds);
    for k in 0..rounds + rounds / 10 {
        let text = format!("{tag}{k}");
        let started = Instant::now();
        from.publish(topic, &Prepared::text(&text));
        loop {
            match to.read_timeout(Duration::from_secs(5)).expect("read") {
                Some(OwnedMessage::Text(t)) if t == text => break,
                Some(_) => {}
                None => panic!("message {k} lost"),
            }
        }
        // The first tenth warms up.
        if k >= rounds / 10 {
            out.push(started.elapsed());
        }
    }
    out.sort();
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let rounds: usize = args.next().map_or(5000, |s| s.parse().expect("ROUNDS"));
    let messages: usize = args.next().map_or(200_000, |s| s.parse().expect("MESSAGES"));

    let (a, b) = (Hub::new(), Hub::new());
    let ca = a.join_redis(RedisConfig::new(&url)).expect("join a");
    let cb = b.join_redis(RedisConfig::new(&url)).expect("join b");
    let (ra, rb) = (node(&a), node(&b));
    // Same node: a's subscriber only (a still forwards every publish to
    // Redis, as a node of a cluster does).
    let mut local = Client::connect(&format!("ws://{}/lat", ra.local_addr())).expect("connect a");
    wait_until("subscribed in Redis", || ca.stats().subscribed == 1);
    wait_until("connected", || ca.stats().connected && cb.stats().connected);
    let one = latencies(&a, &mut local, "lat", "L", rounds);
    drop(local);
    // Other node: b's subscriber only.
    let mut remote = Client::connect(&format!("ws://{}/lat", rb.local_addr())).expect("connect b");
    wait_until("subscribed in Redis", || cb.stats().subscribed == 1 && a.subscribers("lat") == 0);
    let cross = latencies(&a, &mut remote, "lat", "R", rounds);
    println!("latency, publish to a subscriber's read, {rounds} messages of up to 5 bytes, one at a time:");
    println!("  same node:           p50 {:7.1} µs  p99 {:7.1} µs", pct(&one, 0.5), pct(&one, 0.99));
    println!("  other node (Redis):  p50 {:7.1} µs  p99 {:7.1} µs", pct(&cross, 0.5), pct(&cross, 0.99));
    println!(
        "  added by Redis:      p50 {:7.1} µs  p99 {:7.1} µs",
        pct(&cross, 0.5) - pct(&one, 0.5),
        pct(&cross, 0.99) - pct(&one, 0.99)
    );

    // Throughput: one node publishes as fast as the buffer lets it (a
    // refused publish is retried), another node's subscriber reads all.
    let mut sink = Client::connect(&format!("ws://{}/flood", rb.local_addr())).expect("connect b");
    wait_until("subscribed in Redis", || cb.stats().subscribed == 2);
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while n < messages {
            match sink.read_timeout(Duration::from_secs(10)).expect("read") {
                Some(OwnedMessage::Text(_)) => n += 1,
                Some(_) => {}
                None => break,
            }
        }
        (n, Instant::now())
    });
    let payload = "m".repeat(64);
    let msg = Prepared::text(&payload);
    let started = Instant::now();
    let mut retries = 0u64;
    for _ in 0..messages {
        while a.publish("flood", &msg).forwarded == Forwarded::Dropped {
            retries += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let (got, done) = reader.join().expect("reader");
    let secs = (done - started).as_secs_f64();
    println!(
        "throughput: {messages} messages of 64 bytes from one node, {got} read on the other in {secs:.2} s: {:.0} messages/s ({retries} publishes retried on a full buffer)",
        got as f64 / secs
    );
    let (sa, sb) = (ca.stats(), cb.stats());
    println!("node a: {sa:?}\nnode b: {sb:?}");
    ca.shutdown();
    cb.shutdown();
    ra.shutdown();
    rb.shutdown();
}

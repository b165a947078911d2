//! A listener's counters (`Running::stats`), checked exactly against a few
//! connections whose every byte the test writes and reads itself.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use syncws::{
    Config, Error, Listener, OwnedMessage, QueuePolicy, Result, Running, SendError, WsHandshake, WsOption, WsTrait,
};

/// Waits (bounded) until the listener serves no connection: every count a
/// connection makes is made by then.
fn until_idle(running: &Running) {
    until_serving(running, 0);
}

/// Waits (bounded) until the listener serves `n` connections. A connection
/// counts its end before it leaves the listener's registry, so the counts
/// of one that left are all made.
fn until_serving(running: &Running, n: usize) {
    let deadline = Instant::now() + WAIT;
    while running.connections() != n {
        assert!(Instant::now() < deadline, "{} connections, not {n}", running.connections());
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `done` holds for the listener's counters, which
/// connection threads may still be updating.
fn until_counted(running: &Running, what: &str, done: impl Fn(&syncws::Stats) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = running.stats();
        if done(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "not counted: {what}: {stats:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends one masked Text message on a raw connection and reads its echo.
fn echo_once(s: &mut TcpStream, text: &str) {
    s.write_all(&client_frame(true, 0, 1, text.as_bytes(), true)).unwrap();
    assert_eq!(read_server_frame(s), (0x81, text.as_bytes().to_vec()));
}

/// A plain TCP connection that sends `request` and returns the answer's head.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    read_head(&mut s)
}

#[test]
fn a_listeners_counters_add_up_exactly() {
    init_log();
    let config = Config::default().max_connections_per_ip(Some(1));
    let listener = Listener::bind_with_config("127.0.0.1:0", config).expect("bind");
    let metrics = listener.metrics();
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).expect("spawn");
    let addr = running.local_addr();

    // A: three echoes and a clean close; while it is open, a second
    // connection from the same address is over the per-IP cap.
    let mut a = raw_ws(addr);
    let refused = http(addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    for _ in 0..3 {
        a.write_all(&client_frame(true, 0, 1, b"hello", true)).unwrap(); // 6 + 5 bytes
        assert_eq!(read_server_frame(&mut a), (0x81, b"hello".to_vec())); // 2 + 5 bytes
    }
    a.write_all(&client_frame(true, 0, 8, &1000u16.to_be_bytes(), true)).unwrap(); // 6 + 2 bytes
    assert_eq!(read_server_frame(&mut a), (0x88, 1000u16.to_be_bytes().to_vec())); // 2 + 2 bytes
    drop(a);
    until_idle(&running);

    // B: an unmasked frame, a protocol violation: closed with 1002.
    let mut b = raw_ws(addr);
    b.write_all(&client_frame(true, 0, 1, b"", false)).unwrap(); // 2 bytes
    let (first, close) = read_server_frame(&mut b);
    assert_eq!((first, u16::from_be_bytes([close[0], close[1]])), (0x88, 1002));
    drop(b);
    until_idle(&running);

    // C: an upgrade from a foreign page, refused by the Origin policy.
    let head = http(addr, &upgrade_request("/", &["Origin: http://evil.example"]));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    until_idle(&running);

    // D: not HTTP at all.
    let head = http(addr, "HELLO THERE\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    until_idle(&running);

    let stats = running.stats();
    assert_eq!(stats, metrics.snapshot(), "the listener's handle reads the same counters");
    assert_eq!((stats.accepted, stats.open), (4, 0));
    let r = stats.refused;
    assert_eq!((r.connections_per_ip, r.origin, r.handshake), (1, 1, 1));
    assert_eq!((r.connections, r.descriptors, r.threads, r.total()), (0, 0, 0, 3));
    assert_eq!((stats.websockets_opened, stats.websockets_open()), (2, 0));
    let c = stats.closed;
    assert_eq!((c.code(1000), c.code(1002), c.other(), c.none(), c.total()), (1, 1, 0, 0, 2));
    assert_eq!((stats.messages_in, stats.bytes_in), (3 + 1, 3 * 11 + 8 + 2));
    assert_eq!((stats.messages_out, stats.bytes_out), (3 + 1 + 1, (3 * 7 + 4) + (2 + close.len() as u64)));
    assert_eq!((stats.queue_full, stats.memory_budget), (0, 0));

    let text = stats.to_prometheus();
    for line in [
        "syncws_connections_accepted_total 4",
        "syncws_connections_open 0",
        "syncws_connections_refused_total{reason=\"max_connections_per_ip\"} 1",
        "syncws_connections_refused_total{reason=\"origin\"} 1",
        "syncws_websockets_closed_total{code=\"1002\"} 1",
        "syncws_received_messages_total 4",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    running.shutdown();
}

#[test]
fn shutdown_counts_1001_a_vanished_peer_none_and_the_cap_its_refusal() {
    init_log();
    let listener = Listener::bind_with_config("127.0.0.1:0", Config::default().max_connections(2)).expect("bind");
    let metrics = listener.metrics();
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).expect("spawn");
    let addr = running.local_addr();

    let mut stays = raw_ws(addr);
    echo_once(&mut stays, "one");
    let mut vanishes = raw_ws(addr);
    echo_once(&mut vanishes, "two");
    // Both open: a third is over `max_connections`.
    let refused = http(addr, &upgrade_request("/", &[]));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let live = running.stats();
    assert_eq!((live.accepted, live.open, live.websockets_opened, live.websockets_open()), (2, 2, 2, 2));
    // Counted while the connections live: a message read before its
    // callback runs, so before its echo; an echo once its write returned,
    // which may be just after the peer has it.
    assert_eq!(live.messages_in, 2);
    until_counted(&running, "two echoes sent", |s| s.messages_out == 2);

    // The second peer goes away without a Close: counted under "none".
    drop(vanishes);
    until_serving(&running, 1);
    assert_eq!(running.stats().closed.none(), 1);

    // Shutdown closes the first with 1001; the peer answers it.
    let peer = thread::spawn(move || {
        let (first, close) = read_server_frame(&mut stays);
        assert_eq!((first, u16::from_be_bytes([close[0], close[1]])), (0x88, 1001));
        stays.write_all(&client_frame(true, 0, 8, &1001u16.to_be_bytes(), true)).unwrap();
        let _ = stays.read_to_end(&mut Vec::new());
        close.len() as u64
    });
    running.shutdown();
    let close_len = peer.join().unwrap();

    let stats = metrics.snapshot();
    assert_eq!((stats.accepted, stats.open, stats.refused.connections, stats.refused.total()), (2, 0, 1, 1));
    let c = stats.closed;
    assert_eq!((c.code(1001), c.none(), c.total(), stats.websockets_open()), (1, 1, 2, 0));
    // Two echoes and the peer's Close in; two echoes and our Close out.
    assert_eq!((stats.messages_in, stats.messages_out), (3, 3));
    assert_eq!(stats.bytes_in, 2 * (6 + 3) + (6 + 2));
    assert_eq!(stats.bytes_out, 2 * (2 + 3) + (2 + close_len));
    let text = stats.to_prometheus();
    assert!(text.lines().any(|l| l == "syncws_websockets_closed_total{code=\"1001\"} 1"), "{text}");
    assert!(text.lines().any(|l| l == "syncws_websockets_closed_total{code=\"none\"} 1"), "{text}");
    assert!(text.lines().any(|l| l == "syncws_connections_refused_total{reason=\"max_connections\"} 1"), "{text}");
}

/// Sends 64 KiB messages from a thread of its own to a peer that never
/// reads, until the queue has refused `REFUSALS` of them (the writer thread
/// may make room in between: the kernel's buffers grow); reports how many
/// sends were refused with `QueueFull`.
struct Flooder(crossbeam_channel::Sender<usize>);

const REFUSALS: usize = 5;

impl WsTrait for Flooder {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let (sender, report) = (shake.sender, self.0.clone());
        thread::spawn(move || {
            let chunk = vec![0u8; 64 << 10];
            let mut full = 0;
            for _ in 0..100_000 {
                match sender.send(OwnedMessage::Binary(chunk.clone())) {
                    Ok(()) => {}
                    Err(Error::Send(SendError::QueueFull)) => full += 1,
                    Err(e) => panic!("{e}"),
                }
                if full == REFUSALS {
                    break;
                }
            }
            let _ = report.send(full);
        });
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

#[test]
fn each_message_the_drop_policy_drops_is_counted() {
    init_log();
    let config = Config::default().queue_capacity(8).queue_policy(QueuePolicy::Drop).write_timeout(WAIT);
    let (tx, rx) = crossbeam_channel::unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", config).expect("bind");
    let running = listener.spawn(move |server| server.set_callback_ws(Box::new(Flooder(tx.clone())))).expect("spawn");
    let _silent = raw_ws(running.local_addr());
    // Counted on the sending thread before its send returned: the report
    // comes after.
    let dropped = rx.recv_timeout(WAIT).expect("the queue must fill");
    assert_eq!(dropped, REFUSALS);
    let stats = running.stats();
    assert_eq!((stats.queue_full, stats.memory_budget), (dropped as u64, 0));
    assert_eq!(stats.open, 1, "the drop policy keeps the connection");
    let text = stats.to_prometheus();
    let line = format!("syncws_dropped_messages_total{{reason=\"queue_full\"}} {dropped}");
    assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
}

/// The plain API counts in the process-wide counters (no other test of
/// this binary uses them: its clients are raw sockets).
#[test]
fn the_plain_api_counts_in_the_global_counters() {
    init_log();
    let before = syncws::Metrics::global().snapshot();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        // A foreign page's upgrade, refused by `accept`...
        let (stream, _) = listener.accept().unwrap();
        assert!(syncws::accept(stream).is_err());
        // ... and by `upgrade`, behind another server that parsed it.
        let (mut stream, _) = listener.accept().unwrap();
        let head = read_head(&mut stream);
        let (request, _) = syncws::Request::parse(head.as_bytes(), &Config::default()).unwrap().unwrap();
        assert!(syncws::upgrade(&request, Vec::new(), stream, Config::default()).is_err());
        // Then one connection: an echo and the peer's Close.
        let (stream, _) = listener.accept().unwrap();
        let mut ws = syncws::accept(stream).unwrap();
        let msg = ws.read().unwrap();
        ws.send(msg).unwrap();
        // The peer's Close, answered by the library; then the end.
        assert!(matches!(ws.read(), Ok(OwnedMessage::Close(_))));
        assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    });
    let foreign = upgrade_request("/", &["Origin: http://evil.example"]);
    assert!(http(addr, &foreign).starts_with("HTTP/1.1 403"));
    assert!(http(addr, &foreign).starts_with("HTTP/1.1 403"));
    let mut ws = raw_ws(addr);
    echo_once(&mut ws, "plain");
    ws.write_all(&client_frame(true, 0, 8, &1000u16.to_be_bytes(), true)).unwrap();
    assert_eq!(read_close_code(&mut ws), Some(1000));
    drop(ws);
    server.join().unwrap();

    let after = syncws::Metrics::global().snapshot();
    assert_eq!(after.refused.origin - before.refused.origin, 2);
    assert_eq!(after.websockets_opened - before.websockets_opened, 1);
    assert_eq!(after.closed.code(1000) - before.closed.code(1000), 1);
    assert_eq!(after.messages_in - before.messages_in, 2, "the echo and the Close");
    assert_eq!((after.accepted, after.open), (0, 0), "a listener's counts only");
}

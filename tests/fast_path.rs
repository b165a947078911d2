//! The cross-thread fast path of `Sender` (a thread other than the
//! connection's own writes the frame itself, without blocking): whatever
//! path each message takes (written at once, partly written and finished by
//! the writer thread, queued), every message a send accepted arrives, in
//! the order its thread sent it, intact, and nothing follows a Close.
//! No test depends on timing: the assertions hold for every interleaving.

mod support;

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use crossbeam_channel::unbounded;
use support::*;
use syncws::{CloseCode, Config, OwnedMessage, QueuePolicy, Running, Sender};

/// `"{src}:{n}"`, as sent by these tests.
fn parse(text: &str) -> (String, usize) {
    let (src, n) = text.split_once(':').expect("src:n");
    (src.to_owned(), n.parse().expect("number"))
}

/// Checks that each source's numbers are 0, 1, 2, ... as they arrive.
#[derive(Default)]
struct Order(HashMap<String, usize>);

impl Order {
    fn see(&mut self, text: &str) {
        let (src, n) = parse(text);
        let next = self.0.entry(src.clone()).or_insert(0);
        assert_eq!(n, *next, "{src}: message {n} arrived when {next} was due");
        *next += 1;
    }
}

/// A recording server with `config` (echoing if `echo`), a tungstenite
/// client connected to it, and the connection's `Sender`.
fn connected(config: Config, echo: bool) -> (Running, crossbeam_channel::Receiver<Event>, Tung, Sender) {
    let (server, events) = recording_server(config, echo, None);
    let ws = tung_client(server.local_addr(), "/");
    let sender = match wait_for(&events, "open", |e| matches!(e, Event::Open(..))) {
        Event::Open(sender, _) => sender,
        _ => unreachable!(),
    };
    (server, events, ws, sender)
}

#[test]
fn threads_sending_beside_the_owner_thread_keep_each_ones_order() {
    const THREADS: usize = 4;
    const EACH: usize = 1000;
    const OWN: usize = 300;
    let config = Config::default().queue_policy(QueuePolicy::Block(WAIT));
    let (server, _events, mut ws, sender) = connected(config, true);

    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let sender = sender.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    sender.send(OwnedMessage::Text(format!("t{t}:{i}"))).expect("send");
                }
            })
        })
        .collect();
    // The connection's own thread sends too: it echoes these, one at a
    // time, from its local batch.
    let mut own_sent = 1;
    ws.send(tungstenite::Message::text("own:0")).unwrap();
    let mut order = Order::default();
    for _ in 0..THREADS * EACH + OWN {
        match tung_next(&mut ws) {
            tungstenite::Message::Text(t) => {
                order.see(t.as_str());
                if t.starts_with("own:") && own_sent < OWN {
                    ws.send(tungstenite::Message::text(format!("own:{own_sent}"))).unwrap();
                    own_sent += 1;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(order.0.len(), THREADS + 1);
    assert_eq!(order.0["own"], OWN);
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    server.shutdown();
}

/// A binary message numbered `n` whose size varies from 1 B to 12 KiB (the
/// fast path's range), with every 97th one over the copy limit (always
/// queued).
fn numbered(n: u32) -> Vec<u8> {
    let size = if n % 97 == 0 { 40 << 10 } else { 4 + (n as usize * 7919) % (12 << 10) };
    let mut b = bytes(size, u64::from(n));
    b[..4].copy_from_slice(&n.to_be_bytes());
    b
}

fn check_numbered(b: &[u8]) -> u32 {
    let n = u32::from_be_bytes(b[..4].try_into().unwrap());
    assert_eq!(b, numbered(n), "message {n} corrupted");
    n
}

/// Sends numbered messages from `*n` on until `stop(n, refused so far)`;
/// returns the numbers of those accepted.
fn send_phase(sender: &Sender, n: &mut u32, stop: &dyn Fn(u32, usize) -> bool) -> Vec<u32> {
    let (mut accepted, mut refused) = (Vec::new(), 0);
    while !stop(*n, refused) {
        match sender.send(OwnedMessage::Binary(numbered(*n))) {
            Ok(()) => accepted.push(*n),
            Err(e) => {
                assert_eq!(e.to_string(), syncws::Error::Send(syncws::SendError::QueueFull).to_string());
                refused += 1;
            }
        }
        *n += 1;
    }
    accepted
}

#[test]
fn a_receiver_that_stops_reading_gets_every_accepted_message_in_order() {
    // A small queue that drops when full: once the peer's socket is full,
    // sends fail, which tells the sending thread it has filled it (the
    // fast path then met a full socket: nothing or part of a frame taken).
    let config = Config::default()
        .queue_capacity(4)
        .queue_policy(QueuePolicy::Drop)
        .write_timeout(Duration::from_secs(120))
        .ping_interval(None)
        .idle_timeout(None);
    let (server, _events, mut ws, sender) = connected(config, true);

    let (accepted_tx, accepted_rx) = unbounded::<Vec<u32>>();
    let (go_tx, go_rx) = unbounded::<()>();
    let worker = thread::spawn(move || {
        let mut n = 0u32;
        // Until the socket and the queue are full (bounded: 20,000 messages
        // of 6 KiB on average are far more than loopback buffers hold).
        let first = send_phase(&sender, &mut n, &|n, refused| refused >= 300 || n >= 20_000);
        accepted_tx.send(first).unwrap();
        go_rx.recv().unwrap();
        // The peer reads again: small ones, which mostly go out at once.
        let start = n;
        let second = send_phase(&sender, &mut n, &|n, _| n >= start + 200);
        accepted_tx.send(second).unwrap();
    });

    let first = accepted_rx.recv_timeout(WAIT * 3).expect("first phase");
    assert!(first.len() > 10, "the first sends were accepted");
    // The owner thread answers these while the socket is still full: its
    // batch must wait behind any half-written frame, not cut into it.
    for i in 0..5 {
        ws.send(tungstenite::Message::text(format!("echo:{i}"))).unwrap();
    }
    let mut order = Order::default();
    let mut got = Vec::new();
    while got.len() < first.len() || order.0.get("echo") != Some(&5) {
        match tung_next(&mut ws) {
            tungstenite::Message::Binary(b) => got.push(check_numbered(&b)),
            tungstenite::Message::Text(t) => order.see(t.as_str()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, first, "accepted messages arrive, in order, and refused ones do not");

    go_tx.send(()).unwrap();
    let second = accepted_rx.recv_timeout(WAIT).expect("second phase");
    got.clear();
    while got.len() < second.len() {
        match tung_next(&mut ws) {
            tungstenite::Message::Binary(b) => got.push(check_numbered(&b)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, second);
    worker.join().unwrap();
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) | Ok(tungstenite::Message::Ping(_)) => {}
            Ok(other) => panic!("nothing may follow: {other:?}"),
            Err(_) => break,
        }
    }
    server.shutdown();
}

#[test]
fn close_from_another_thread_comes_after_its_fast_sends_and_nothing_follows() {
    const THREADS: usize = 3;
    let config = Config::default().queue_policy(QueuePolicy::Block(WAIT));
    let (server, events, mut ws, sender) = connected(config, false);

    // Other threads send until the Close stops them (bounded).
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let sender = sender.clone();
            thread::spawn(move || {
                for i in 0..5_000 {
                    if sender.send(OwnedMessage::Text(format!("t{t}:{i}"))).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    // This thread (not the connection's) sends its own, then closes.
    for i in 0..100 {
        sender.send(OwnedMessage::Text(format!("main:{i}"))).unwrap();
    }
    sender.close(CloseCode::NORMAL, "bye").unwrap();
    // Refused, at once or by the writer thread: it may not follow the Close.
    let _ = sender.send(OwnedMessage::Text("main:100".into()));

    let mut order = Order::default();
    let reason = loop {
        match tung_next(&mut ws) {
            tungstenite::Message::Text(t) => order.see(t.as_str()),
            tungstenite::Message::Close(reason) => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(reason.as_ref().map(|r| r.reason.as_str()), Some("bye"));
    // Everything this thread sent before its Close came before it.
    assert_eq!(order.0.get("main"), Some(&100));
    // After the Close: only the end of the connection, no frame.
    match ws.read() {
        Ok(other) => panic!("a frame after the close: {other:?}"),
        Err(tungstenite::Error::ConnectionClosed) => {}
        Err(e) => panic!("unexpected {e}"),
    }
    for s in senders {
        s.join().unwrap();
    }
    wait_for(&events, "close", |e| matches!(e, Event::Close(_)));
    server.shutdown();
}

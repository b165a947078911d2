//! The process-wide memory budget (`Config::memory_budget`): many peers that
//! each start a large message and never finish it cannot take the server's
//! memory. Its own test binary, so the process's RSS is this test's alone.
#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use syncws::Config;

const MIB: usize = 1 << 20;

/// Peak and current resident memory of this process, in bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| -> usize {
        let line = status.lines().find(|l| l.starts_with(name)).expect("a status line");
        line.split_whitespace().nth(1).and_then(|n| n.parse::<usize>().ok()).expect("a size in kB") * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// What became of one peer that sent part of a large message.
#[derive(Debug, PartialEq)]
enum Fate {
    /// The server closed it with this code.
    Closed(Option<u16>),
    /// The server still holds it.
    Held,
}

/// A peer that sends `total` bytes of one fragmented message, in frames of
/// `frame` bytes, without its last frame; stops once the server closes.
fn greedy_peer(addr: std::net::SocketAddr, total: usize, frame: usize) -> thread::JoinHandle<Fate> {
    thread::spawn(move || {
        let mut s = raw_ws(addr);
        let mut reader = s.try_clone().unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let watcher = {
            let closed = Arc::clone(&closed);
            thread::spawn(move || {
                reader.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                let mut first = [0u8; 2];
                let code = match reader.read_exact(&mut first) {
                    Ok(()) if first[0] & 0x0f == 0x8 && first[1] >= 2 => {
                        let mut code = [0u8; 2];
                        reader.read_exact(&mut code).ok().map(|()| u16::from_be_bytes(code))
                    }
                    _ => None,
                };
                closed.store(true, Ordering::SeqCst);
                code
            })
        };
        let payload = vec![7u8; frame];
        let first = client_frame(false, 0, 2, &payload, true);
        let more = client_frame(false, 0, 0, &payload, true);
        let mut sent = 0;
        while sent < total && !closed.load(Ordering::SeqCst) {
            let bytes = if sent == 0 { &first } else { &more };
            if s.write_all(bytes).is_err() {
                break;
            }
            sent += frame;
        }
        // Sent it all and still open: the server holds it. Otherwise the
        // watcher has the Close (or the end of the connection).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !closed.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if !closed.load(Ordering::SeqCst) {
            let _ = s.shutdown(std::net::Shutdown::Both);
            let _ = watcher.join();
            return Fate::Held;
        }
        Fate::Closed(watcher.join().unwrap())
    })
}

/// The tests read the process-wide total: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn unfinished_large_messages_cannot_take_more_than_the_budget() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    const BUDGET: usize = 64 * MIB;
    const PEERS: usize = 16;
    const EACH: usize = 60 * MIB;
    let server = echo_server(Config::default().memory_budget(BUDGET));
    let addr = server.local_addr();
    // Connections that only chat: the budget must leave them alone.
    let mut bystanders: Vec<_> = (0..4).map(|_| tung_client(addr, "/")).collect();
    let (_, before) = rss();

    // 16 peers × 60 MiB = 960 MiB if nothing stopped them.
    let peers: Vec<_> = (0..PEERS).map(|_| greedy_peer(addr, EACH, MIB)).collect();
    let fates: Vec<Fate> = peers.into_iter().map(|p| p.join().unwrap()).collect();
    let (peak, _) = rss();

    let grew = peak.saturating_sub(before);
    eprintln!("peak RSS grew by {} MiB; fates: {fates:?}", grew / MIB);
    assert!(grew <= BUDGET + 256 * MIB, "RSS grew by {} MiB with a {} MiB budget", grew / MIB, BUDGET / MIB);
    let again = fates.iter().filter(|f| **f == Fate::Closed(Some(1013))).count();
    assert!(again >= 1, "no peer was closed with 1013: {fates:?}");
    let held = fates.iter().filter(|f| **f == Fate::Held).count();
    assert!(held * EACH <= BUDGET, "{held} peers hold 60 MiB each within a 64 MiB budget?");
    for f in &fates {
        assert!(matches!(f, Fate::Held | Fate::Closed(Some(1013))), "unexpected end: {f:?}");
    }

    for (i, ws) in bystanders.iter_mut().enumerate() {
        let text = format!("bystander {i}");
        ws.send(tungstenite::Message::text(text.clone())).unwrap();
        assert_eq!(tung_next(ws).into_text().unwrap().as_str(), text);
    }
    still_serves(addr);

    // Every byte comes back once the connections end.
    drop(bystanders);
    let deadline = Instant::now() + Duration::from_secs(30);
    while syncws::memory_held() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(syncws::memory_held(), 0, "bytes still charged after every connection ended");
    server.shutdown();
}

/// A queue that grows past the budget: the sender gets the budget error and
/// the connection is closed (with 1013 if the frame can still leave).
#[test]
fn an_outbound_queue_past_the_budget_closes_its_connection_with_1013() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel();
    let config =
        Config::default().memory_budget(4 * MIB).queue_max_bytes(64 * MIB).queue_policy(syncws::QueuePolicy::Drop);
    let listener = syncws::Listener::bind_with_config("127.0.0.1:0", config).unwrap();
    let running = listener
        .spawn(move |server| {
            let (recorder, events) = Recorder::new(false);
            server.set_callback_ws(Box::new(recorder));
            let _ = tx.send(events);
        })
        .unwrap();
    let addr = running.local_addr();
    let mut peer = raw_ws(addr);
    let events = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let Event::Open(sender, _) = next(&events, "open") else { panic!("expected open") };
    // The peer reads nothing: sends from this thread queue up until the
    // budget refuses one.
    let chunk = vec![1u8; 256 << 10];
    let mut refused = None;
    for _ in 0..1000 {
        match sender.send(syncws::OwnedMessage::Binary(chunk.clone())) {
            Ok(()) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("the budget refused a send");
    assert!(matches!(err, syncws::Error::Capacity { what: syncws::Limit::MemoryBudget, .. }), "{err}");
    assert!(sender.send("after".into()).is_err(), "the connection is closing");
    // The connection ends: its socket was shut down, whatever the peer
    // does not read.
    peer.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut all = Vec::new();
    let _ = peer.read_to_end(&mut all);
    wait_for(&events, "close", |e| matches!(e, Event::Close(_)));
    running.shutdown();
    let deadline = Instant::now() + Duration::from_secs(30);
    while syncws::memory_held() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(syncws::memory_held(), 0);
}

//! The reconnecting client over real loopback sockets: a server killed and
//! started again on the same port, an abrupt drop, the Close codes that
//! end reconnecting, giving up, stopping, and the bound on what is kept
//! between connections. No test waits on a clock: every wait is for an
//! event, bounded by a generous watchdog; backoff delays are small.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender as ChanSender};
use support::{init_log, WAIT};
use syncws::{
    Client, CloseCode, CloseData, EndReason, Ended, Error, Listener, Offline, OwnedMessage, ReconnectPolicy,
    ReconnectSender, Result, Retry, Running, SendError, Sender, WsHandshake, WsOption, WsTrait,
};

/// What the client's handler saw.
#[derive(Debug)]
enum Seen {
    Open(u32),
    Message(String),
    Close(Option<CloseData>),
    Retry { attempt: u32, error: bool, close: Option<u16> },
}

/// The client's handler: reports every callback, and resubscribes in
/// `on_open` (`sub:N`, N counting the connections before this one), with
/// the connection's sender or, if given, the reconnecting one.
struct App {
    events: ChanSender<Seen>,
    via: Option<ReconnectSender>,
}

impl WsTrait for App {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let sub = OwnedMessage::Text(format!("sub:{}", shake.reconnects));
        match &self.via {
            Some(sender) => sender.send(sub)?,
            None => shake.sender.send(sub)?,
        }
        let _ = self.events.send(Seen::Open(shake.reconnects));
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Text(s) = msg {
            let _ = self.events.send(Seen::Message(s));
        }
        Ok(())
    }
    fn on_close(&mut self, reason: &Option<CloseData>) {
        let _ = self.events.send(Seen::Close(reason.clone()));
    }
    fn on_reconnect(&mut self, retry: &Retry) {
        let close = retry.close.as_ref().map(|c| c.status_code);
        let _ = self.events.send(Seen::Retry { attempt: retry.attempt, error: retry.error.is_some(), close });
    }
}

fn next<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Waits for the first event `pick` accepts, skipping the others.
fn wait_for<T, U>(rx: &Receiver<T>, what: &str, pick: impl Fn(T) -> Option<U>) -> U {
    loop {
        if let Some(u) = pick(next(rx, what)) {
            return u;
        }
    }
}

/// Small, fixed-pace delays: a test waits for events, never for a clock.
fn quick() -> ReconnectPolicy {
    ReconnectPolicy::default().initial_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(50))
}

/// Starts a reconnecting client to `url` on a thread of its own.
fn start(url: &str, policy: ReconnectPolicy) -> (ReconnectSender, Receiver<Seen>, JoinHandle<Ended>) {
    start_with(url, policy, false)
}

/// [`start`], the handler resubscribing through the reconnecting sender
/// if `via_reconnect_sender`.
fn start_with(
    url: &str,
    policy: ReconnectPolicy,
    via_reconnect_sender: bool,
) -> (ReconnectSender, Receiver<Seen>, JoinHandle<Ended>) {
    init_log();
    let reconnecting = Client::builder().url(url).unwrap().reconnect(policy).unwrap();
    let sender = reconnecting.sender();
    let (tx, rx) = unbounded();
    let via = via_reconnect_sender.then(|| sender.clone());
    let run = thread::spawn(move || reconnecting.run(&mut App { events: tx, via }));
    (sender, rx, run)
}

fn join(run: JoinHandle<Ended>) -> Ended {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        let _ = tx.send(run.join());
    });
    next(&rx, "the reconnecting client to return").expect("the runner panicked")
}

/// Waits, by polling with a bound, until the client sends on a connection.
fn wait_connected(sender: &ReconnectSender) {
    let deadline = std::time::Instant::now() + WAIT;
    while !sender.is_connected() {
        assert!(std::time::Instant::now() < deadline, "never connected");
        thread::yield_now();
    }
}

/// Server side: every text message, and each connection's end, as
/// `(generation, text)`; `None` for the end.
struct Recorder {
    generation: u32,
    events: ChanSender<(u32, Option<String>)>,
    sender: Option<Sender>,
}

impl WsTrait for Recorder {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.sender = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Text(s) = msg {
            let _ = self.events.send((self.generation, Some(s.clone())));
            if let Some(sender) = &self.sender {
                sender.send(OwnedMessage::Text(format!("ack:{s}")))?;
            }
        }
        Ok(())
    }
    fn on_close(&mut self, _reason: &Option<CloseData>) {
        let _ = self.events.send((self.generation, None));
    }
}

fn recording_server(addr: &str, generation: u32, events: ChanSender<(u32, Option<String>)>) -> Running {
    let listener = Listener::bind(addr).expect("bind (again) on the same port");
    listener
        .spawn(move |server| {
            let recorder = Recorder { generation, events: events.clone(), sender: None };
            server.set_callback_ws(Box::new(recorder));
        })
        .expect("spawn")
}

/// What generation `generation` of the server received, up to the end of
/// its one connection.
fn received(rx: &Receiver<(u32, Option<String>)>, generation: u32) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match next(rx, "the server's messages") {
            (g, Some(text)) => {
                assert_eq!(g, generation, "{text:?} reached the wrong server");
                got.push(text);
            }
            (g, None) => {
                assert_eq!(g, generation);
                return got;
            }
        }
    }
}

fn texts(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[test]
fn a_restarted_server_gets_on_open_again_and_the_backlog_once_in_order() {
    init_log();
    let (tx, server_rx) = unbounded();
    let first = recording_server("127.0.0.1:0", 1, tx.clone());
    let addr = first.local_addr();
    let (sender, seen, run) = start(&format!("ws://{addr}/feed"), quick());
    wait_for(&seen, "the first open", |e| matches!(e, Seen::Open(0)).then_some(()));
    wait_connected(&sender);
    for m in texts(0..5) {
        sender.send(OwnedMessage::Text(m)).unwrap();
    }
    // Every message acknowledged: all of them reached the first server.
    wait_for(&seen, "the last ack", |e| matches!(e, Seen::Message(s) if s == "ack:m4").then_some(()));

    // Killed: the listener stops and closes its connection with 1001.
    first.shutdown();
    let mut want = vec!["sub:0".to_owned()];
    want.extend(texts(0..5));
    assert_eq!(received(&server_rx, 1), want);
    let close = wait_for(&seen, "the client's on_close", |e| match e {
        Seen::Close(c) => Some(c),
        _ => None,
    });
    assert_eq!(close.map(|c| c.status_code), Some(1001));

    // Sent while no server listens: kept, in order.
    for m in texts(5..10) {
        sender.send(OwnedMessage::Text(m)).unwrap();
    }
    assert_eq!(sender.queued(), 5);
    assert!(!sender.is_connected());
    // The client keeps trying (refused) meanwhile.
    let retry = wait_for(&seen, "a retry", |e| match e {
        Seen::Retry { attempt, error, close } => Some((attempt, error, close)),
        _ => None,
    });
    assert_eq!(retry, (1, false, Some(1001)), "the first retry follows the server's 1001");

    // Started again on the same port.
    let second = recording_server(&addr.to_string(), 2, tx);
    wait_for(&seen, "on_open after the reconnect", |e| matches!(e, Seen::Open(1)).then_some(()));
    wait_for(&seen, "the backlog's last ack", |e| matches!(e, Seen::Message(s) if s == "ack:m9").then_some(()));
    assert_eq!(sender.queued(), 0);
    sender.send(OwnedMessage::Text("m10".into())).unwrap();
    sender.close(CloseCode::NORMAL, "done").unwrap();
    assert!(matches!(sender.send("late".into()), Err(Error::Send(SendError::CloseSent))));

    // The resubscription first, then the backlog, then the rest: each once.
    let mut want = vec!["sub:1".to_owned()];
    want.extend(texts(5..11));
    assert_eq!(received(&server_rx, 2), want);
    let ended = join(run);
    assert!(matches!(ended.reason, EndReason::Closed), "{:?}", ended.reason);
    assert_eq!(ended.connections, 2);
    assert!(ended.unsent.is_empty());
    assert!(matches!(sender.send("after".into()), Err(Error::Send(SendError::CloseSent | SendError::Closed))));
    second.shutdown();
}

#[test]
fn a_connection_dropped_without_a_close_is_reconnected() {
    init_log();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (got_tx, got) = unbounded();
    let server = thread::spawn(move || {
        // First connection: one message, then the socket is dropped
        // without a Close (1006 for the client).
        let (stream, _) = socket.accept().unwrap();
        let mut ws = syncws::accept(stream).unwrap();
        got_tx.send(ws.read().unwrap()).unwrap();
        drop(ws);
        // Second: read until the client's Close.
        let (stream, _) = socket.accept().unwrap();
        let mut ws = syncws::accept(stream).unwrap();
        while let Ok(msg) = ws.read() {
            got_tx.send(msg).unwrap();
        }
    });
    // on_open resubscribes through the reconnecting sender: that goes
    // straight to the new connection, ahead of what was kept.
    let (sender, seen, run) = start_with(&format!("ws://{addr}/"), quick(), true);
    wait_for(&seen, "the first open", |e| matches!(e, Seen::Open(0)).then_some(()));
    assert_eq!(next(&got, "sub:0"), OwnedMessage::Text("sub:0".into()));
    let retry = wait_for(&seen, "the retry", |e| match e {
        Seen::Retry { attempt, error, close } => Some((attempt, error, close)),
        _ => None,
    });
    assert_eq!(retry, (1, true, None), "a drop without a Close is an error, and retried");
    // Kept (or, if the client is back already, sent): after sub:1 either way.
    sender.send("kept".into()).unwrap();
    wait_for(&seen, "the second open", |e| matches!(e, Seen::Open(1)).then_some(()));
    assert_eq!(next(&got, "sub:1"), OwnedMessage::Text("sub:1".into()));
    assert_eq!(next(&got, "kept"), OwnedMessage::Text("kept".into()));
    wait_connected(&sender);
    sender.send("after".into()).unwrap();
    assert_eq!(next(&got, "after"), OwnedMessage::Text("after".into()));
    sender.close(CloseCode::NORMAL, "").unwrap();
    let ended = join(run);
    assert!(matches!(ended.reason, EndReason::Closed), "{:?}", ended.reason);
    assert_eq!(ended.connections, 2);
    server.join().unwrap();
}

/// A server that closes every connection at once with `code`.
struct Closer(CloseCode);

impl WsTrait for Closer {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        shake.sender.close(self.0, "bye")?;
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

#[test]
fn closes_1000_and_1008_and_a_403_end_reconnecting() {
    init_log();
    for code in [CloseCode::NORMAL, CloseCode::POLICY] {
        let running = Listener::bind("127.0.0.1:0").unwrap().spawn(move |s| s.set_callback_ws(Box::new(Closer(code))));
        let running = running.unwrap();
        let (_sender, _seen, run) = start(&format!("ws://{}/", running.local_addr()), quick());
        let ended = join(run);
        match ended.reason {
            EndReason::ServerClosed(Some(c)) => assert_eq!(c.status_code, code.0),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(ended.connections, 1);
        running.shutdown();
    }

    // Refused by the Origin check: 403, not worth retrying.
    let running =
        Listener::bind("127.0.0.1:0").unwrap().spawn(|s| s.set_callback_ws(Box::new(Closer(CloseCode::NORMAL))));
    let running = running.unwrap();
    let reconnecting = Client::builder()
        .url(&format!("ws://{}/", running.local_addr()))
        .unwrap()
        .header("Origin", "http://evil.example")
        .reconnect(quick())
        .unwrap();
    let (tx, _seen) = unbounded();
    let ended = reconnecting.run(&mut App { events: tx, via: None });
    assert!(matches!(ended.reason, EndReason::Failed(Error::Handshake { status: 403, .. })), "{:?}", ended.reason);
    assert_eq!(ended.connections, 0);
    running.shutdown();
}

#[test]
fn a_listed_close_code_is_reconnected() {
    // 1012 (service restart) is in the default list: the client comes
    // back, and is closed again, until it gives up.
    init_log();
    let running =
        Listener::bind("127.0.0.1:0").unwrap().spawn(|s| s.set_callback_ws(Box::new(Closer(CloseCode::RESTART))));
    let running = running.unwrap();
    let (_sender, seen, run) = start(&format!("ws://{}/", running.local_addr()), quick().max_elapsed(Some(WAIT)));
    wait_for(&seen, "a reconnect", |e| matches!(e, Seen::Open(2)).then_some(()));
    // Stopped by the application while the server keeps closing.
    _sender.stop();
    let ended = join(run);
    assert!(matches!(ended.reason, EndReason::Closed), "{:?}", ended.reason);
    assert!(ended.connections >= 3);
    running.shutdown();
}

fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn it_gives_up_after_max_attempts_and_hands_back_what_it_kept() {
    let policy = quick().max_attempts(Some(3)).offline(Offline::Queue { max_messages: 2, max_bytes: 1 << 10 });
    init_log();
    let reconnecting = Client::builder().url(&format!("ws://{}/", dead_addr())).unwrap().reconnect(policy).unwrap();
    let sender = reconnecting.sender();
    // Before the first connection: kept, within the bound.
    sender.send("one".into()).unwrap();
    sender.send("two".into()).unwrap();
    assert!(matches!(sender.send("three".into()), Err(Error::Send(SendError::QueueFull))));
    let (tx, seen) = unbounded();
    let ended = reconnecting.run(&mut App { events: tx, via: None });
    assert!(matches!(ended.reason, EndReason::GaveUp(Some(Error::Io(_)))), "{:?}", ended.reason);
    assert_eq!(ended.connections, 0);
    assert_eq!(ended.unsent, vec![OwnedMessage::Text("one".into()), OwnedMessage::Text("two".into())]);
    let retries: Vec<u32> = seen
        .try_iter()
        .filter_map(|e| match e {
            Seen::Retry { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(retries, vec![2, 3], "three attempts, two waits between them");
    assert!(matches!(sender.send("after".into()), Err(Error::Send(SendError::Closed))));
}

#[test]
fn offline_fail_refuses_and_stop_ends_a_long_wait() {
    // A long, fixed delay: only stop() can end the wait in time.
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_secs(3600))
        .max_delay(Duration::from_secs(3600))
        .jitter(false)
        .offline(Offline::Fail);
    let (sender, seen, run) = start(&format!("ws://{}/", dead_addr()), policy);
    assert!(matches!(sender.send("now".into()), Err(Error::Send(SendError::Disconnected))));
    wait_for(&seen, "the first wait", |e| matches!(e, Seen::Retry { attempt: 2, .. }).then_some(()));
    sender.stop();
    let ended = join(run);
    assert!(matches!(ended.reason, EndReason::Closed), "{:?}", ended.reason);
    assert!(ended.unsent.is_empty());
}

#[test]
fn it_gives_up_when_the_next_wait_would_pass_max_elapsed() {
    // Every wait is an hour: the first one would already overrun a
    // one-minute max_elapsed, so the client gives up instead of waiting.
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_secs(3600))
        .max_delay(Duration::from_secs(3600))
        .jitter(false)
        .max_elapsed(Some(Duration::from_secs(60)));
    // Never connected: the failed connect's error comes back.
    let (_sender, seen, run) = start(&format!("ws://{}/", dead_addr()), policy.clone());
    let ended = join(run);
    assert!(matches!(ended.reason, EndReason::GaveUp(Some(Error::Io(_)))), "{:?}", ended.reason);
    assert_eq!(ended.connections, 0);
    assert!(!seen.try_iter().any(|e| matches!(e, Seen::Retry { .. })), "it waited");

    // Connected, then dropped with 1001 (a close it reconnects on): it
    // gives up at once rather than wait past the bound.
    let running =
        Listener::bind("127.0.0.1:0").unwrap().spawn(|s| s.set_callback_ws(Box::new(Closer(CloseCode::AWAY))));
    let running = running.unwrap();
    let (_sender, seen, run) = start(&format!("ws://{}/", running.local_addr()), policy);
    let ended = join(run);
    assert!(matches!(ended.reason, EndReason::GaveUp(None)), "{:?}", ended.reason);
    assert_eq!(ended.connections, 1);
    assert!(seen.try_iter().any(|e| matches!(e, Seen::Open(0))));
    running.shutdown();
}

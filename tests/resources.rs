//! Resources come back (issue 21): what a connection holds is released
//! when it ends, without waiting for another accept; out of descriptors or
//! threads, the server answers 503, logs a summary, and serves again once
//! they are back.
//!
//! The tests that count a whole process's descriptors and threads run in
//! a child process of this test binary, alone, so that other tests'
//! threads and sockets do not count; the out-of-descriptors one runs it
//! under `ulimit -n`. Deadlines are generous and polled: a slow, busy
//! machine makes them slower, not failed.

#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use syncws::{Acceptor, Config, Listener};
use tungstenite::Message;

/// Set in a child process to the test it is to run.
const CHILD: &str = "SYNCWS_RESOURCES_CHILD";

fn fd_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("Threads:")).expect("a Threads line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a thread count")
}

/// Polls `done` every 20 ms until it holds or `limit` passes; returns how
/// long it took, or `None`.
fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// This test binary running test `name` alone, with [`CHILD`] set, through
/// `sh -c` with `shell_prefix` (such as `ulimit -n 64;`) before the exec.
fn child(name: &str, shell_prefix: &str) -> Child {
    let exe = std::env::current_exe().expect("the test binary");
    Command::new("sh")
        .arg("-c")
        .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child test process")
}

/// Collects a pipe's lines on a thread of its own (a child must never
/// block writing to a pipe nobody reads).
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child test process did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs test `name` in a child process and checks that it passed.
fn run_alone(name: &str) {
    let mut child = child(name, "");
    drop(child.stdin.take());
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let status = wait_exit(&mut child, Duration::from_secs(300));
    thread::sleep(Duration::from_millis(50));
    for line in out.try_iter().chain(err.try_iter()) {
        println!("child: {line}");
    }
    assert!(status.success(), "the child test {name} failed: {status}");
}

/// Opens `n` WebSocket connections at once, echoes one message on each,
/// then closes them all (close handshake, then the socket).
fn batch(addr: SocketAddr, n: usize, round: usize) {
    let mut clients: Vec<Tung> = (0..n).map(|_| tung_client(addr, "/")).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        let text = format!("round {round} client {i}");
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(tung_next(ws).into_text().unwrap().as_str(), text);
    }
    for ws in &mut clients {
        let _ = ws.close(None);
    }
    for mut ws in clients {
        while ws.read().is_ok() {}
    }
}

#[test]
fn thousand_connections_give_back_descriptors_and_threads_without_another_accept() {
    run_alone("child_thousand_connections");
}

#[test]
#[ignore = "run in a child process by thousand_connections_give_back_descriptors_and_threads_without_another_accept"]
fn child_thousand_connections() {
    if std::env::var(CHILD).as_deref() != Ok("child_thousand_connections") {
        return;
    }
    let server = echo_server(Config::default());
    let addr = server.local_addr();
    let (fds_before, threads_before) = (fd_count("self"), thread_count());
    for round in 0..20 {
        batch(addr, 50, round);
    }
    // No connection is made from here on: nothing else can free them.
    let fds_back = poll(Duration::from_secs(10), || fd_count("self") <= fds_before);
    let fds_after = fd_count("self");
    // Finished connections' threads wait up to 5 s for a next one.
    let threads_back = poll(Duration::from_secs(20), || thread_count() <= threads_before);
    let threads_after = thread_count();
    println!(
        "1000 connections: descriptors {fds_before} -> {fds_after} (back after {fds_back:?}), \
         threads {threads_before} -> {threads_after} (back after {threads_back:?})"
    );
    assert!(fds_back.is_some(), "descriptors held: {fds_before} before, {fds_after} after");
    assert!(threads_back.is_some(), "threads held: {threads_before} before, {threads_after} after");
    assert_eq!(server.connections(), 0);
    still_serves(addr);
    server.shutdown();
}

#[test]
fn senders_the_application_keeps_do_not_keep_sockets_open() {
    run_alone("child_senders_kept");
}

/// Echoes, and keeps every connection's `Sender` for ever, as a chat room
/// that never prunes its members would.
struct KeepSenders(Arc<Mutex<Vec<syncws::Sender>>>, Option<syncws::Sender>);

impl syncws::WsTrait for KeepSenders {
    fn on_open(&mut self, shake: syncws::WsHandshake) -> syncws::Result<Option<syncws::WsOption>> {
        self.0.lock().unwrap().push(shake.sender.clone());
        self.1 = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: syncws::OwnedMessage) -> syncws::Result<()> {
        self.1.as_ref().expect("opened").send(msg)
    }
}

#[test]
#[ignore = "run in a child process by senders_the_application_keeps_do_not_keep_sockets_open"]
fn child_senders_kept() {
    if std::env::var(CHILD).as_deref() != Ok("child_senders_kept") {
        return;
    }
    let kept = Arc::new(Mutex::new(Vec::new()));
    let listener = Listener::bind_with_config("127.0.0.1:0", Config::default()).unwrap();
    let for_handlers = Arc::clone(&kept);
    let server = listener
        .spawn(move |server| server.set_callback_ws(Box::new(KeepSenders(Arc::clone(&for_handlers), None))))
        .unwrap();
    let addr = server.local_addr();
    let fds_before = fd_count("self");
    for round in 0..4 {
        batch(addr, 50, round);
    }
    let fds_back = poll(Duration::from_secs(10), || fd_count("self") <= fds_before);
    let fds_after = fd_count("self");
    let senders = kept.lock().unwrap();
    println!("200 connections, their senders kept: descriptors {fds_before} -> {fds_after} ({fds_back:?})");
    assert_eq!(senders.len(), 200);
    assert!(fds_back.is_some(), "kept senders hold sockets: {fds_before} descriptors before, {fds_after} after");
    for sender in senders.iter() {
        assert!(sender.is_closed());
        let sent = sender.send("too late".into());
        assert!(matches!(sent, Err(syncws::Error::Send(syncws::SendError::Closed))), "{sent:?}");
    }
    drop(senders);
    server.shutdown();
}

/// Reads a response head, or what came before the connection ended.
fn head_or_end(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn burst_past_the_descriptor_limit_gets_503_and_the_server_recovers() {
    let mut child = child("child_low_fd_limit", "ulimit -n 64 &&");
    let pid = child.id().to_string();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        match out.recv_timeout(WAIT) {
            Ok(line) => {
                // libtest may have begun the line ("test child_low_fd_limit ... ").
                if let Some((_, addr)) = line.split_once("ADDR ") {
                    break addr.trim().parse().expect("an address");
                }
            }
            Err(e) => panic!("the child printed no address: {e}"),
        }
    };
    let fds_before = fd_count(&pid);

    // 150 connections at once against 64 descriptors.
    let mut burst = Vec::new();
    let mut other = 0;
    for _ in 0..150 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.write_all(upgrade_request("/", &[]).as_bytes());
                burst.push(s);
            }
            Err(_) => other += 1,
        }
    }
    let (mut upgraded, mut unavailable) = (0, 0);
    for s in &mut burst {
        let head = head_or_end(s);
        if head.starts_with("HTTP/1.1 101") {
            upgraded += 1;
        } else if head.starts_with("HTTP/1.1 503") {
            assert!(head.contains("Connection: close") && head.contains("Retry-After:"), "{head}");
            unavailable += 1;
        } else {
            other += 1;
        }
    }
    let fds_full = fd_count(&pid);
    println!("burst of 150 at 64 descriptors: {upgraded} upgraded, {unavailable} answered 503, {other} cut; child descriptors {fds_before} -> {fds_full}");
    assert!(upgraded > 0 && upgraded < 64, "{upgraded} upgraded");
    assert!(unavailable > 0, "no 503 in the burst");

    // The burst leaves; a fresh client is served and echoed.
    drop(burst);
    let started = Instant::now();
    let served = poll(Duration::from_secs(10), || {
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else { return false };
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let Ok((mut ws, _)) = tungstenite::client::client(format!("ws://{addr}/").as_str(), stream) else {
            return false;
        };
        let ok = ws.send(Message::text("back?")).is_ok()
            && matches!(ws.read(), Ok(Message::Text(t)) if t.as_str() == "back?");
        let _ = ws.close(None);
        while ws.read().is_ok() {}
        ok
    });
    assert!(served.is_some(), "no client served within 10 s after the burst left");
    let served_after = started.elapsed();
    let fds_back = poll(Duration::from_secs(10), || fd_count(&pid) <= fds_before);
    let fds_after = fd_count(&pid);
    println!(
        "fresh client echoed {served_after:?} after the burst left; child descriptors {fds_after} (back after {fds_back:?})"
    );
    assert!(fds_back.is_some(), "child descriptors {fds_before} before the burst, {fds_after} after");

    drop(child.stdin.take());
    let status = wait_exit(&mut child, Duration::from_secs(60));
    thread::sleep(Duration::from_millis(50));
    let log: Vec<String> = err.try_iter().collect();
    for line in &log {
        println!("child log: {line}");
    }
    assert!(status.success(), "child: {status}");
    assert!(log.len() < 50, "{} log lines", log.len());
    assert!(log.iter().any(|l| l.contains("out of descriptors")), "no summary line in the log");
}

#[test]
#[ignore = "run in a child process under ulimit -n by burst_past_the_descriptor_limit_gets_503_and_the_server_recovers"]
fn child_low_fd_limit() {
    if std::env::var(CHILD).as_deref() != Ok("child_low_fd_limit") {
        return;
    }
    env_logger::builder().filter_level(log::LevelFilter::Warn).target(env_logger::Target::Stderr).init();
    let listener = Listener::bind("127.0.0.1:0").expect("bind");
    println!("ADDR {}", listener.local_addr());
    std::io::stdout().flush().unwrap();
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).expect("spawn");
    // Serves until the parent closes standard input (or goes away).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    running.shutdown();
}

#[test]
fn a_connection_without_a_thread_gets_503_and_the_next_one_is_served() {
    init_log();
    let listener = Listener::bind("127.0.0.1:0").expect("bind");
    listener.fail_next_spawns(1);
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).expect("spawn");
    let addr = running.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request("/", &[]).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("Connection: close") && head.contains("Retry-After: 1"), "{head}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(String::from_utf8_lossy(&rest).contains("out of resources"));
    still_serves(addr);
    assert!(poll(WAIT, || running.connections() == 0).is_some());
    running.shutdown();
}

#[test]
fn acceptor_answers_503_when_it_cannot_spawn() {
    let mut acceptor = Acceptor::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = acceptor.listener().local_addr().unwrap();
    acceptor.fail_next_spawns(1);
    let server = thread::spawn(move || {
        let mut started = Vec::new();
        while started.len() < 2 {
            let Some((stream, _)) = acceptor.accept() else { continue };
            started.push(acceptor.spawn(stream, thread::Builder::new(), |mut s| {
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }));
        }
        started
    });
    for expected in ["HTTP/1.1 503", "HTTP/1.1 204"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with(expected), "{head}");
    }
    assert_eq!(server.join().unwrap(), [false, true]);
}

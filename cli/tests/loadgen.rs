//! The load generator against real servers on loopback: a correct echo
//! counts messages and no errors; a broken echo is counted as errors, never
//! as messages. No timing is asserted.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use clap::Parser;
use syncws_cli::loadgen::{run, Args};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn args(url: &str, extra: &[&str]) -> Args {
    let mut argv = vec!["bench", "--url", url, "--duration", "30", "--warmup", "0", "--timeout", "5"];
    argv.extend_from_slice(extra);
    Cli::parse_from(argv).args
}

/// A syncws echo server on an ephemeral port.
fn syncws_echo() -> String {
    let running = syncws_cli::echo::spawn("127.0.0.1:0", syncws::Config::default()).unwrap();
    let url = format!("ws://{}/", running.local_addr());
    std::mem::forget(running);
    url
}

/// A server that answers the handshake, then sends back each frame
/// unmasked with the last payload byte flipped.
fn corrupting_echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head);
                let key =
                    text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or("").trim().to_owned();
                let accept = syncws::handshake::accept_key(&key);
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if s.write_all(resp.as_bytes()).is_err() {
                    return;
                }
                // Small client frames only: 2-byte header, 4-byte mask.
                loop {
                    let mut h = [0u8; 6];
                    if s.read_exact(&mut h).is_err() {
                        return;
                    }
                    let len = usize::from(h[1] & 0x7f);
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).is_err() {
                        return;
                    }
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= h[2 + (i & 3)];
                    }
                    if let Some(last) = payload.last_mut() {
                        *last ^= 1;
                    }
                    let mut frame = vec![h[0], len as u8];
                    frame.extend_from_slice(&payload);
                    if s.write_all(&frame).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[test]
fn correct_echo_counts_messages_without_errors() {
    let url = syncws_echo();
    for mode in ["ping-pong", "pipelined"] {
        for kind in [&[][..], &["--text"][..]] {
            let mut extra = vec!["--mode", mode, "--conns", "2", "--count", "50", "--in-flight", "8", "--size", "100"];
            extra.extend_from_slice(kind);
            let report = run(&args(&url, &extra)).unwrap();
            assert_eq!(report.errors, 0, "{mode}: {:?}", report.first_error);
            assert_eq!(report.msgs, 100, "{mode}");
            assert_eq!(report.bytes, 100 * 100);
            assert!(report.latency.is_some());
            assert!(report.to_json().starts_with("{\"mode\""));
        }
    }
}

/// With `--server-pid`, the server's CPU per message is reported, in all
/// and split into user and system time that add up to it.
#[test]
fn server_cpu_is_reported_in_all_and_split_into_user_and_system() {
    // The echo runs in this process, so its pid is the server's.
    let url = syncws_echo();
    let pid = std::process::id().to_string();
    let extra = [
        "--mode",
        "pipelined",
        "--conns",
        "2",
        "--count",
        "2000",
        "--in-flight",
        "8",
        "--size",
        "1000",
        "--server-pid",
        &pid,
    ];
    let report = run(&args(&url, &extra)).unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    let cpu = report.server_cpu_us_per_msg().expect("server CPU per message");
    let (user, sys) = report.server_user_sys_us_per_msg().expect("user and system parts");
    assert!(user >= 0.0 && sys >= 0.0, "user {user}, system {sys}");
    assert!((user + sys - cpu).abs() < 1e-6, "user {user} + system {sys} != {cpu}");
    let json = report.to_json();
    assert!(json.contains("\"server_user_us_per_msg\":") && json.contains("\"server_sys_us_per_msg\":"), "{json}");
    assert!(report
        .summary()
        .contains(&format!("server CPU {cpu:.2} µs per message (user {user:.2}, system {sys:.2})")));
}

#[test]
fn corrupted_echo_is_an_error_not_a_message() {
    let url = corrupting_echo();
    for mode in ["ping-pong", "pipelined"] {
        let report = run(&args(&url, &["--mode", mode, "--conns", "2", "--count", "20", "--size", "40"])).unwrap();
        assert_eq!(report.msgs, 0, "{mode}");
        assert_eq!(report.errors, 2, "{mode}: one per connection");
        assert!(report.first_error.unwrap().contains("differs"));
    }
}

#[test]
fn refused_connections_are_errors() {
    // A port with nothing listening: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let report = run(&args(&format!("ws://127.0.0.1:{port}/"), &["--mode", "ping-pong", "--conns", "3"])).unwrap();
    assert_eq!((report.connected, report.msgs, report.errors), (0, 0, 3));
}

#[test]
fn idle_and_connect_modes_verify_each_connection() {
    let url = syncws_echo();
    let report = run(&args(&url, &["--mode", "idle", "--conns", "20", "--hold", "0"])).unwrap();
    assert_eq!((report.connected, report.msgs, report.errors), (20, 20, 0));
    let report = run(&args(&url, &["--mode", "connect", "--conns", "20", "--threads", "2"])).unwrap();
    assert_eq!((report.connected, report.errors), (20, 0));
}

#[test]
fn event_driven_threads_and_broadcast_verify_every_message() {
    let url = syncws_echo();
    // Several connections on one and on two client threads.
    for threads in ["1", "2"] {
        let extra = ["--mode", "pipelined", "--conns", "5", "--count", "40", "--in-flight", "4", "--threads", threads];
        let report = run(&args(&url, &extra)).unwrap();
        assert_eq!((report.msgs, report.errors), (200, 0), "{:?}", report.first_error);
        assert_eq!(report.client_threads, threads.parse::<usize>().unwrap());
        assert!(report.to_json().contains("\"client_cpu_pct\""));
    }
    // A corrupted echo among several connections on one thread: one error
    // per connection, nothing counted.
    let bad = corrupting_echo();
    let report = run(&args(&bad, &["--mode", "pipelined", "--conns", "4", "--count", "10", "--threads", "1"])).unwrap();
    assert_eq!((report.msgs, report.errors), (0, 4));
    // A server that sends a frame longer than any echo: an error, not an
    // allocation of what the header declares.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let huge = format!("ws://{}/", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head);
            let key = text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or("").trim().to_owned();
            let accept = syncws::handshake::accept_key(&key);
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            let _ = s.write_all(resp.as_bytes());
            // A binary frame declaring 2^62 bytes.
            let _ = s.write_all(&[0x82, 127, 0x40, 0, 0, 0, 0, 0, 0, 0]);
            std::mem::forget(s);
        }
    });
    let report = run(&args(&huge, &["--mode", "ping-pong", "--conns", "1", "--count", "1"])).unwrap();
    assert_eq!((report.msgs, report.errors), (0, 1));
    assert!(report.first_error.unwrap().contains("more than"));
}

#[test]
fn broadcast_mode_is_verified_at_every_receiver() {
    // `syncws pubsub` publishes to every subscriber of the path, the sender
    // included (the sender ignores its own copies).
    let hub = syncws::Hub::new();
    let running = syncws_cli::pubsub::spawn(
        "127.0.0.1:0",
        syncws::Config::default(),
        None,
        syncws_cli::common::HttpFlags::default(),
        hub,
    )
    .unwrap();
    let url = format!("ws://{}/", running.local_addr());
    for threads in ["1", "2"] {
        let extra = ["--mode", "broadcast", "--conns", "20", "--count", "30", "--threads", threads];
        let report = run(&args(&url, &extra)).unwrap();
        assert_eq!((report.connected, report.msgs, report.errors), (20, 20 * 30, 0), "{:?}", report.first_error);
        assert!(report.latency.is_some());
    }
}

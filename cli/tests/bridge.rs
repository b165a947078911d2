//! `syncws bridge`: ws2tcp and tcp2ws through their library entry points,
//! on loopback.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use crossbeam_channel::unbounded;
use support::*;
use syncws::{
    Client, CloseCode, CloseData, Config, Error, Listener, OwnedMessage, Request, Response, Result, WebSocket,
    WsHandshake, WsOption, WsTrait,
};
use syncws_cli::bridge::{tcp2ws, ws2tcp, Tcp2WsOptions, Ws2TcpOptions};

const MIB: usize = 1 << 20;

fn ws_connect(url: &str) -> WebSocket {
    let config = Config::default().handshake_timeout(WAIT);
    Client::builder().url(url).unwrap().config(config).connect().expect("connect").into_websocket().unwrap()
}

/// Sends `data` as binary messages of uneven sizes on one thread while
/// another reads `data.len()` bytes back; then closes with 1000 and expects
/// the reply. Returns what came back.
fn ws_round_trip(ws: WebSocket, data: Vec<u8>) -> Vec<u8> {
    let (mut reader, writer) = ws.split();
    let len = data.len();
    let w = writer.clone();
    let sending = thread::spawn(move || {
        let mut at = 0;
        let mut step = 3000;
        while at < data.len() {
            let end = (at + step).min(data.len());
            w.send(OwnedMessage::Binary(data[at..end].to_vec())).expect("ws send");
            at = end;
            step = step * 13 % 70_001 + 1;
        }
    });
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        match reader.read().expect("ws read") {
            OwnedMessage::Binary(b) => {
                assert!(b.len() <= syncws_cli::bridge::DEFAULT_CHUNK, "message over the chunk limit");
                got.extend_from_slice(&b);
            }
            OwnedMessage::Ping(_) | OwnedMessage::Pong(_) => {}
            other => panic!("unexpected {other:?} after {} bytes", got.len()),
        }
    }
    sending.join().expect("sender");
    writer.close(CloseCode::NORMAL, "done").unwrap();
    loop {
        match reader.read() {
            Ok(OwnedMessage::Close(c)) => {
                assert_eq!(c.map(|c| c.status_code), Some(1000));
                break;
            }
            Ok(OwnedMessage::Binary(b)) => panic!("{} bytes more than sent", b.len()),
            Ok(_) => {}
            Err(e) => panic!("no close reply: {e}"),
        }
    }
    got
}

fn ws2tcp_to(target: std::net::SocketAddr) -> syncws::Running {
    init_log();
    ws2tcp(Ws2TcpOptions::new("127.0.0.1:0", &target.to_string())).expect("ws2tcp")
}

#[test]
fn ws2tcp_carries_10_mib_each_way() {
    let bridge = ws2tcp_to(tcp_echo());
    let url = format!("ws://{}/", bridge.local_addr());
    let data = random_bytes(10 * MIB, 7);
    let sum = checksum(&data);
    let got = within("10 MiB through ws2tcp", move || ws_round_trip(ws_connect(&url), data));
    assert_eq!(got.len(), 10 * MIB);
    assert_eq!(checksum(&got), sum);
    bridge.shutdown();
}

#[test]
fn ws2tcp_serves_many_connections_at_once() {
    let bridge = ws2tcp_to(tcp_echo());
    let url = format!("ws://{}/", bridge.local_addr());
    let (tx, rx) = unbounded();
    for i in 0..24u64 {
        let (url, tx) = (url.clone(), tx.clone());
        thread::spawn(move || {
            let data = random_bytes(256 << 10, i + 100);
            let sum = checksum(&data);
            let got = ws_round_trip(ws_connect(&url), data);
            let _ = tx.send(checksum(&got) == sum);
        });
    }
    for _ in 0..24 {
        assert!(recv(&rx, "a concurrent ws2tcp connection"), "bytes differ");
    }
    bridge.shutdown();
}

#[test]
fn ws2tcp_close_becomes_eof_and_eof_becomes_close() {
    // Close from the client: the target reads every byte, then EOF.
    let (tx, rx) = unbounded();
    let target = tcp_service(move |mut s: TcpStream| {
        let mut got = Vec::new();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let eof = s.read_to_end(&mut got).is_ok();
        let _ = tx.send((got, eof));
    });
    let bridge = ws2tcp_to(target);
    let url = format!("ws://{}/", bridge.local_addr());
    let reply = within("close through ws2tcp", move || {
        let mut ws = ws_connect(&url);
        ws.send(OwnedMessage::Binary(b"abc".to_vec())).unwrap();
        ws.send(OwnedMessage::Text("def".into())).unwrap();
        ws.close(CloseCode::NORMAL, "").unwrap();
        loop {
            if let OwnedMessage::Close(c) = ws.read().expect("close reply") {
                return c;
            }
        }
    });
    assert_eq!(reply.map(|c| c.status_code), Some(1000));
    assert_eq!(recv(&rx, "the target's EOF"), (b"abcdef".to_vec(), true));
    bridge.shutdown();

    // EOF from the target: the client gets the bytes, then Close 1000.
    let target = tcp_service(|mut s: TcpStream| {
        s.write_all(b"greetings").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    let bridge = ws2tcp_to(target);
    let url = format!("ws://{}/", bridge.local_addr());
    let (bytes, close) = within("EOF through ws2tcp", move || {
        let mut ws = ws_connect(&url);
        binary_until_close(&mut ws)
    });
    assert_eq!(bytes, b"greetings");
    assert_eq!(close.map(|c| c.status_code), Some(1000));
    bridge.shutdown();
}

#[test]
fn ws2tcp_answers_502_when_the_target_is_down_and_checks_the_path() {
    init_log();
    let mut opts = Ws2TcpOptions::new("127.0.0.1:0", &dead_addr().to_string());
    opts.path = Some("/tcp".into());
    let bridge = ws2tcp(opts).expect("ws2tcp");
    let addr = bridge.local_addr();
    let status = |path: &str| match Client::connect(&format!("ws://{addr}{path}")) {
        Err(Error::Handshake { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(status("/tcp"), 502);
    assert_eq!(status("/elsewhere"), 404);
    bridge.shutdown();
}

/// A WebSocket echo server that reports each request's path and Host, and
/// the close reason each connection ended with.
struct Reporting {
    events: crossbeam_channel::Sender<String>,
    sender: Option<syncws::Sender>,
}

impl WsTrait for Reporting {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        let _ = self.events.send(format!("path {} host {}", req.path, req.header("host").unwrap_or("")));
        WsHandshake::build_request(req)
    }
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.sender = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if msg == OwnedMessage::Binary(b"close please".to_vec()) {
            return self.sender.as_ref().unwrap().close(CloseCode::NORMAL, "as you wish");
        }
        self.sender.as_ref().unwrap().send(msg)
    }
    fn on_close(&mut self, reason: &Option<CloseData>) {
        let _ = self.events.send(format!("close {:?}", reason.as_ref().map(|c| c.status_code)));
    }
}

fn reporting_server() -> (syncws::Running, crossbeam_channel::Receiver<String>) {
    init_log();
    let (tx, rx) = unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", Config::default()).unwrap();
    let running = listener
        .spawn(move |server| server.set_callback_ws(Box::new(Reporting { events: tx.clone(), sender: None })))
        .unwrap();
    (running, rx)
}

/// Collects binary payloads until the Close; returns them and the Close body.
fn binary_until_close(ws: &mut syncws::WebSocket) -> (Vec<u8>, Option<syncws::CloseData>) {
    let mut bytes = Vec::new();
    loop {
        match ws.read().expect("read") {
            OwnedMessage::Binary(b) => bytes.extend(b),
            OwnedMessage::Close(c) => return (bytes, c),
            _ => {}
        }
    }
}

/// Writes 10 MiB of random bytes to a TCP connection to `addr`, shuts the
/// write side, reads until EOF, and checks the same bytes came back.
fn round_trip_10_mib(addr: std::net::SocketAddr, seed: u64, what: &'static str) {
    let data = random_bytes(10 * MIB, seed);
    let sum = checksum(&data);
    let got = within(what, move || {
        let tcp = TcpStream::connect(addr).unwrap();
        let w = tcp.try_clone().unwrap();
        let writer = thread::spawn(move || write_then_eof(w, data));
        let got = read_to_eof(tcp);
        writer.join().unwrap();
        got
    });
    assert_eq!(got.len(), 10 * MIB);
    assert_eq!(checksum(&got), sum);
}

fn ws_echo() -> syncws::Running {
    init_log();
    syncws_cli::echo::spawn("127.0.0.1:0", Config::default()).expect("echo")
}

#[test]
fn tcp2ws_carries_10_mib_each_way_and_eof_both_ways() {
    let echo = ws_echo();
    let bridge = tcp2ws(Tcp2WsOptions::new("127.0.0.1:0", &format!("ws://{}/", echo.local_addr()))).unwrap();
    let addr = bridge.local_addr();
    // The client's EOF becomes Close 1000; the echo server's Close reply,
    // after every echoed byte, becomes EOF here.
    round_trip_10_mib(addr, 11, "10 MiB through tcp2ws");
    bridge.shutdown();
    echo.shutdown();
}

#[test]
fn tcp2ws_serves_many_connections_at_once() {
    let echo = ws_echo();
    let bridge = tcp2ws(Tcp2WsOptions::new("127.0.0.1:0", &format!("ws://{}/", echo.local_addr()))).unwrap();
    let addr = bridge.local_addr();
    let (tx, rx) = unbounded();
    for i in 0..24u64 {
        let tx = tx.clone();
        thread::spawn(move || {
            let data = random_bytes(256 << 10, i + 500);
            let sum = checksum(&data);
            let tcp = TcpStream::connect(addr).unwrap();
            let w = tcp.try_clone().unwrap();
            let writer = thread::spawn(move || write_then_eof(w, data));
            let got = read_to_eof(tcp);
            writer.join().unwrap();
            let _ = tx.send(checksum(&got) == sum);
        });
    }
    for _ in 0..24 {
        assert!(recv(&rx, "a concurrent tcp2ws connection"), "bytes differ");
    }
    bridge.shutdown();
    echo.shutdown();
}

#[test]
fn tcp2ws_keeps_path_and_host_and_carries_close_both_ways() {
    let (server, events) = reporting_server();
    let url = format!("ws://{}/deep/path?x=1", server.local_addr());
    let bridge = tcp2ws(Tcp2WsOptions::new("127.0.0.1:0", &url)).unwrap();
    let addr = bridge.local_addr();

    // TCP EOF -> Close 1000 at the server.
    let echoed = within("tcp2ws eof", move || {
        let tcp = TcpStream::connect(addr).unwrap();
        write_then_eof(tcp.try_clone().unwrap(), b"ping".to_vec());
        read_to_eof(tcp)
    });
    assert_eq!(echoed, b"ping");
    let expected_host = format!("host {}", server.local_addr());
    let first = recv(&events, "the upgrade request");
    assert!(first.starts_with("path /deep/path?x=1 "), "{first}");
    assert!(first.ends_with(&expected_host), "{first}");
    assert_eq!(recv(&events, "the server's close"), "close Some(1000)");

    // Close from the server -> EOF at the TCP client.
    let rest = within("tcp2ws close", move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(b"close please").unwrap();
        read_to_eof(tcp)
    });
    assert!(rest.is_empty(), "{rest:?}");
    recv(&events, "the second upgrade request");
    assert_eq!(recv(&events, "the server's close"), "close Some(1000)");
    bridge.shutdown();
    server.shutdown();
}

#[test]
fn tcp2ws_closes_the_tcp_connection_when_the_server_is_down() {
    init_log();
    let bridge = tcp2ws(Tcp2WsOptions::new("127.0.0.1:0", &format!("ws://{}/", dead_addr()))).unwrap();
    let addr = bridge.local_addr();
    let n = within("tcp2ws with the server down", move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        match tcp.read(&mut [0u8; 16]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("expected the connection closed, got {e}"),
        }
    });
    assert_eq!(n, 0);
    bridge.shutdown();
}

#[test]
fn chained_tcp2ws_ws2tcp_round_trip() {
    let inner = ws2tcp_to(tcp_echo());
    let outer = tcp2ws(Tcp2WsOptions::new("127.0.0.1:0", &format!("ws://{}/", inner.local_addr()))).unwrap();
    let addr = outer.local_addr();
    // The client writes everything and shuts its write side at once: the
    // EOF travels the chain as Close 1000 and the echo's last bytes still
    // come back before EOF (half-close kept end to end).
    round_trip_10_mib(addr, 99, "tcp -> tcp2ws -> ws2tcp -> tcp echo and back");
    outer.shutdown();
    inner.shutdown();
}

#[test]
fn ws2tcp_keeps_sending_the_targets_bytes_after_the_clients_close() {
    // The target answers only after the client's EOF.
    let target = tcp_service(|mut s: TcpStream| {
        let mut got = Vec::new();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.read_to_end(&mut got).unwrap();
        got.reverse();
        s.write_all(&got).unwrap();
    });
    let bridge = ws2tcp_to(target);
    let url = format!("ws://{}/", bridge.local_addr());
    let (bytes, close) = within("the answer after Close", move || {
        let mut ws = ws_connect(&url);
        ws.send(OwnedMessage::Binary(b"stressed".to_vec())).unwrap();
        ws.close(CloseCode::NORMAL, "").unwrap();
        binary_until_close(&mut ws)
    });
    assert_eq!(bytes, b"desserts");
    assert_eq!(close.map(|c| c.status_code), Some(1000));
    bridge.shutdown();
}

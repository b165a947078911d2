//! Every kind of bad input over a real socket: the exact close code or HTTP
//! status comes back, nothing large is allocated, and the server goes on
//! serving fresh clients.

#[path = "support/largest_alloc.rs"]
mod largest_alloc;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use support::*;
use syncws::{
    Client, Config, Error, Listener, OriginPolicy, OwnedMessage, ProtocolError, Result, SendError, WsHandshake,
    WsOption, WsTrait,
};

fn server() -> (syncws::Running, SocketAddr) {
    let s = echo_server(Config::default());
    let addr = s.local_addr();
    (s, addr)
}

/// Sends `bytes` after the handshake and expects a Close with `code`.
fn expect_close(bytes: &[u8], code: u16) {
    let (_server, addr) = server();
    let mut s = raw_ws(addr);
    s.write_all(bytes).unwrap();
    assert_eq!(read_close_code(&mut s), Some(code), "for {:x?}", &bytes[..bytes.len().min(16)]);
    still_serves(addr);
}

#[test]
fn unmasked_client_frame_1002() {
    expect_close(&client_frame(true, 0, 1, b"hi", false), 1002);
}

#[test]
fn reserved_opcode_1002() {
    expect_close(&client_frame(true, 0, 3, b"", true), 1002);
    expect_close(&client_frame(true, 0, 0xb, b"", true), 1002);
}

#[test]
fn rsv_bits_1002() {
    expect_close(&client_frame(true, 0b100, 1, b"x", true), 1002);
    expect_close(&client_frame(true, 0b001, 2, b"x", true), 1002);
}

#[test]
fn oversized_control_frame_1002() {
    expect_close(&client_frame(true, 0, 9, &[7; 126], true), 1002);
}

#[test]
fn fragmented_control_frame_1002() {
    expect_close(&client_frame(false, 0, 9, b"p", true), 1002);
}

#[test]
fn continuation_without_start_1002() {
    expect_close(&client_frame(true, 0, 0, b"x", true), 1002);
}

#[test]
fn invalid_utf8_1007_in_one_frame_and_across_fragments() {
    expect_close(&client_frame(true, 0, 1, &[b'a', 0xff, b'b'], true), 1007);
    let mut split = client_frame(false, 0, 1, &[0xe2, 0x82], true);
    split.extend(client_frame(true, 0, 0, &[0x28], true));
    expect_close(&split, 1007);
}

#[test]
fn invalid_close_code_1002() {
    for code in [0u16, 999, 1005, 1006, 1015, 2000, 5000] {
        expect_close(&client_frame(true, 0, 8, &code.to_be_bytes(), true), 1002);
    }
}

#[test]
fn one_byte_close_payload_1002() {
    expect_close(&client_frame(true, 0, 8, &[3], true), 1002);
}

#[test]
fn declared_200_mb_frame_1009_without_allocating_it() {
    let (_server, addr) = server();
    let mut s = raw_ws(addr);
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(200u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header.extend_from_slice(&[0; 1000]);
    s.write_all(&header).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1009));
    still_serves(addr);
    let largest = largest_alloc::largest();
    assert!(largest < 32 << 20, "largest allocation was {largest} bytes");
}

#[test]
fn hundred_thousand_one_byte_fragments_1008() {
    let (_server, addr) = server();
    let mut s = raw_ws(addr);
    let mut flood = client_frame(false, 0, 2, b"x", true);
    for _ in 0..100_000 {
        flood.extend(client_frame(false, 0, 0, b"x", true));
    }
    // The server may stop reading mid-flood; write from another thread.
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&flood);
    });
    assert_eq!(read_close_code(&mut s), Some(1008));
    drop(s);
    writer.join().unwrap();
    still_serves(addr);
}

/// Sends a raw request head and returns the response head.
fn http_status(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    read_head(&mut s)
}

#[test]
fn oversized_head_431() {
    let (_server, addr) = server();
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let head = http_status(addr, &upgrade_request("/", &[&big]));
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    still_serves(addr);
}

#[test]
fn too_many_headers_431() {
    let (_server, addr) = server();
    let lines: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let head = http_status(addr, &upgrade_request("/", &refs));
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    still_serves(addr);
}

#[test]
fn missing_key_400() {
    let (_server, addr) = server();
    let req =
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let head = http_status(addr, req);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    still_serves(addr);
}

#[test]
fn wrong_version_426_names_13() {
    let (_server, addr) = server();
    let req = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let head = http_status(addr, req);
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{head}");
    still_serves(addr);
}

#[test]
fn connection_header_is_case_insensitive_and_a_list() {
    let (_server, addr) = server();
    let req = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let head = http_status(addr, req);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn bad_origin_403_same_host_and_allow_list() {
    let (_server, addr) = server();
    let head = http_status(addr, &upgrade_request("/", &["Origin: http://evil.example"]));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let head = http_status(addr, &upgrade_request("/", &["Origin: http://127.0.0.1"]));
    assert!(head.starts_with("HTTP/1.1 101"), "same origin is fine: {head}");

    let allow = OriginPolicy::AllowList(vec!["https://app.example".into()]);
    let listed = echo_server(Config::default().origin(allow));
    let head = http_status(listed.local_addr(), &upgrade_request("/", &["Origin: https://app.example"]));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let head = http_status(listed.local_addr(), &upgrade_request("/", &["Origin: https://other.example"]));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    still_serves(addr);
}

#[test]
fn slow_handshake_408() {
    let s = echo_server(Config::default().handshake_timeout(Duration::from_millis(300)));
    let addr = s.local_addr();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    // Part of a head, then nothing: the deadline covers the whole head.
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    still_serves(addr);
}

#[test]
fn idle_peer_is_closed_with_1001() {
    let config = Config::default().idle_timeout(Some(Duration::from_millis(300))).ping_interval(None);
    let s = echo_server(config);
    let mut c = raw_ws(s.local_addr());
    assert_eq!(read_close_code(&mut c), Some(1001));
    still_serves(s.local_addr());
}

#[test]
fn keepalive_pings_keep_a_live_peer_open() {
    // 30 pings 100 ms apart outlast the 2 s idle limit by half; the limit is
    // generous so a busy machine's scheduling delays do not end the test.
    let config =
        Config::default().idle_timeout(Some(Duration::from_secs(2))).ping_interval(Some(Duration::from_millis(100)));
    let s = echo_server(config);
    // tungstenite answers pings while it reads; it sends nothing itself.
    let mut ws = tung_client(s.local_addr(), "/");
    let mut pings = 0;
    while pings < 30 {
        match ws.read().unwrap() {
            tungstenite::Message::Ping(_) => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    ws.send(tungstenite::Message::text("alive")).unwrap();
    assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), "alive");
}

/// What the flooding sender was told, after how many accepted messages.
type Told = (usize, Result<()>);

/// On `/flood`, pushes 64 KiB messages from a worker thread at a peer that
/// never reads, and reports how many were accepted and how it ended;
/// elsewhere echoes.
struct Flooder(crossbeam_channel::Sender<Told>, Option<syncws::Sender>);

impl WsTrait for Flooder {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let sender = shake.sender;
        if shake.request.path != "/flood" {
            self.1 = Some(sender);
            return Ok(None);
        }
        let report = self.0.clone();
        thread::spawn(move || {
            let chunk = vec![0u8; 64 << 10];
            for sent in 0..100_000 {
                if let Err(e) = sender.send(OwnedMessage::Binary(chunk.clone())) {
                    let _ = report.send((sent, Err(e)));
                    return;
                }
            }
            let _ = report.send((100_000, Ok(())));
        });
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        match &self.1 {
            Some(s) => s.send(msg),
            None => Ok(()),
        }
    }
}

/// Starts a flooding server with `policy`, connects a peer that never
/// reads, and returns what the flooding sender was told.
fn flood(policy: syncws::QueuePolicy, write_timeout: Duration) -> (syncws::Running, Result<()>, TcpStream) {
    let config = Config::default().write_timeout(write_timeout).queue_capacity(8).queue_policy(policy);
    let (running, (_, told), silent) = flood_with(config);
    (running, told, silent)
}

/// [`flood`] with any config.
fn flood_with(config: Config) -> (syncws::Running, Told, TcpStream) {
    init_log();
    let (tx, rx) = crossbeam_channel::unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", config).unwrap();
    let running = listener.spawn(move |server| server.set_callback_ws(Box::new(Flooder(tx.clone(), None)))).unwrap();
    let silent = raw_ws_at(running.local_addr(), "/flood");
    let told = rx.recv_timeout(WAIT).expect("the sender must learn it cannot send");
    (running, told, silent)
}

#[test]
fn peer_that_never_reads_is_dropped_and_the_sender_is_told() {
    let block = syncws::QueuePolicy::Block(Duration::from_millis(100));
    let (running, told, _silent) = flood(block, Duration::from_millis(300));
    assert!(matches!(told, Err(Error::Send(_))), "{told:?}");
    still_serves(running.local_addr());
}

#[test]
fn drop_policy_refuses_at_once_and_keeps_the_connection() {
    let (running, told, _silent) = flood(syncws::QueuePolicy::Drop, Duration::from_secs(60));
    assert!(matches!(told, Err(Error::Send(SendError::QueueFull))), "{told:?}");
    assert_eq!(running.connections(), 1, "the slow peer stays connected");
    still_serves(running.local_addr());
}

#[test]
fn close_policy_refuses_and_ends_the_connection() {
    let (running, told, mut silent) = flood(syncws::QueuePolicy::Close, Duration::from_secs(60));
    assert!(matches!(told, Err(Error::Send(SendError::QueueFull))), "{told:?}");
    // The peer finally reads: what was queued, then the end of the stream.
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match silent.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the server kept the connection open")
            }
            Err(_) => break, // reset: closed too
        }
    }
    still_serves(running.local_addr());
}

#[test]
fn the_outbound_queue_is_bounded_in_bytes_too() {
    // Room for 10,000 messages, but only 1 MiB of them.
    let config =
        Config::default().queue_capacity(10_000).queue_max_bytes(1 << 20).queue_policy(syncws::QueuePolicy::Drop);
    let (running, (sent, told), _silent) = flood_with(config);
    assert!(matches!(told, Err(Error::Send(SendError::QueueFull))), "{told:?}");
    eprintln!("{sent} messages of 64 KiB accepted before \"queue full\"");
    // 1 MiB queued, plus what the kernel's socket buffers took (a few MiB
    // on loopback); far from the 10,000 messages (625 MiB) the message count
    // alone would allow.
    assert!(sent * (64 << 10) <= (1 << 20) + (32 << 20), "{sent} messages of 64 KiB accepted");
    assert_eq!(running.connections(), 1, "the slow peer stays connected (policy Drop)");
}

struct Panicker;

impl WsTrait for Panicker {
    fn on_open(&mut self, _shake: WsHandshake) -> Result<Option<WsOption>> {
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if msg == OwnedMessage::Text("boom".into()) {
            panic!("handler bug");
        }
        Ok(())
    }
}

#[test]
fn callback_panic_closes_1011_and_only_that_connection() {
    init_log();
    let listener = Listener::bind("127.0.0.1:0").unwrap();
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Panicker))).unwrap();
    let mut other = tung_client(running.local_addr(), "/");
    let mut s = raw_ws(running.local_addr());
    s.write_all(&client_frame(true, 0, 1, b"boom", true)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1011));
    // The other connection is untouched.
    other.send(tungstenite::Message::Ping(b"ok".to_vec().into())).unwrap();
    assert!(matches!(other.read().unwrap(), tungstenite::Message::Pong(p) if p.as_ref() == b"ok"));
}

#[test]
fn connection_flood_over_the_cap_gets_503() {
    let s = echo_server(Config::default().max_connections(3));
    let addr = s.local_addr();
    let held: Vec<_> = (0..3).map(|_| tung_client(addr, "/")).collect();
    let head = http_status(addr, &upgrade_request("/", &[]));
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    drop(held);
    // Capacity frees up as the held connections end.
    for _ in 0..200 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.write_all(upgrade_request("/", &[]).as_bytes()).unwrap();
        if read_head(&mut c).starts_with("HTTP/1.1 101") {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("capacity never came back");
}

#[test]
fn per_ip_cap_gets_503() {
    let s = echo_server(Config::default().max_connections_per_ip(Some(2)));
    let addr = s.local_addr();
    let _held: Vec<_> = (0..2).map(|_| tung_client(addr, "/")).collect();
    let head = http_status(addr, &upgrade_request("/", &[]));
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
}

/// A fake server that completes the handshake, then sends `frame`.
fn fake_server(frame: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let head = read_head(&mut s);
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").or_else(|| l.strip_prefix("sec-websocket-key: ")))
            .expect("key")
            .trim()
            .to_owned();
        let accept = syncws::handshake::accept_key(&key);
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        s.write_all(resp.as_bytes()).unwrap();
        s.write_all(&frame).unwrap();
        // The client's close frame is masked; read its header and code.
        let mut h = [0u8; 2];
        s.read_exact(&mut h).ok()?;
        let mut key = [0u8; 4];
        s.read_exact(&mut key).ok()?;
        let mut code = [0u8; 2];
        s.read_exact(&mut code).ok()?;
        (h[0] & 0x0f == 8).then(|| u16::from_be_bytes([code[0] ^ key[0], code[1] ^ key[1]]))
    });
    (addr, handle)
}

#[test]
fn client_refuses_a_masked_server_frame_with_1002() {
    init_log();
    let (addr, server) = fake_server(client_frame(true, 0, 1, b"masked!", true));
    let mut client = Client::connect(&format!("ws://{addr}/")).unwrap();
    match client.read() {
        Err(Error::Protocol(ProtocolError::MaskedFrame)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(server.join().unwrap(), Some(1002));
}

#[test]
fn client_checks_sec_websocket_accept() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        read_head(&mut s);
        let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n";
        s.write_all(resp.as_bytes()).unwrap();
    });
    let err = Client::connect(&format!("ws://{addr}/")).unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err:?}");
    assert!(err.to_string().contains("Sec-WebSocket-Accept"), "{err}");
    server.join().unwrap();
}

#[test]
#[cfg(not(feature = "tls"))]
fn client_refuses_wss_instead_of_sending_plaintext() {
    let err = Client::builder().url("wss://127.0.0.1:1/").unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err:?}");
}

/// With TLS, the first bytes on the wire are a TLS record (a ClientHello),
/// never the upgrade request.
#[test]
#[cfg(feature = "tls")]
fn client_never_sends_wss_in_plaintext() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut first = [0u8; 3];
        s.read_exact(&mut first).unwrap();
        first
    });
    // The server hangs up after the first bytes: the client fails.
    Client::connect(&format!("wss://{addr}/")).unwrap_err();
    let first = server.join().unwrap();
    assert_eq!(first[0], 0x16, "not a TLS handshake record: {first:?}");
}

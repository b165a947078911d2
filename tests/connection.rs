//! The connection layer: HTTP and WebSocket on one port, concurrency, sends
//! from other threads, timers, close bookkeeping, shutdown.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use support::*;
use syncws::{Config, HttpTrait, Listener, OwnedMessage, Request, Response, Result};
use tungstenite::Message;

struct Hello;

impl HttpTrait for Hello {
    fn operate(&mut self, req: &mut Request) -> Result<Response> {
        let body = format!("{} {} {}", req.method, req.path, String::from_utf8_lossy(&req.body));
        Ok(Response::text(200, &body))
    }
}

/// Reads one HTTP response with a Content-Length body from `s`.
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "head cut short: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn http_and_websocket_on_the_same_port() {
    init_log();
    let listener = Listener::bind("127.0.0.1:0").unwrap();
    let running = listener
        .spawn(|server| {
            server.set_callback_http(Box::new(Hello));
            server.set_callback_ws(Box::new(Echo(None)));
        })
        .unwrap();
    let addr = running.local_addr();

    // Two requests on one keep-alive connection, the second with a body.
    let mut http = TcpStream::connect(addr).unwrap();
    http.set_read_timeout(Some(WAIT)).unwrap();
    http.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let (head, body) = read_response(&mut http);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "GET /a ");
    let (head, body) = read_response(&mut http);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "POST /b hello");

    // A WebSocket on the same port at the same time.
    let mut ws = tung_client(addr, "/ws");
    ws.send(Message::text("over websocket")).unwrap();
    assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), "over websocket");

    // Connection: close ends the HTTP connection after the answer.
    http.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut http);
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    assert_eq!(http.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn websocket_only_server_answers_plain_http_with_426() {
    let server = echo_server(Config::default());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{head}");
    assert!(body.contains("WebSocket"), "{body}");
}

#[test]
fn two_hundred_clients_hundred_round_trips_each() {
    let server = echo_server(Config::default());
    let addr = server.local_addr();
    let clients: Vec<_> = (0..200u64)
        .map(|c| {
            thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mut ws = tung_client(addr, "/");
                    for i in 0..100u64 {
                        let data = bytes(1 + ((c * 31 + i * 7) % 300) as usize, c * 1000 + i);
                        ws.send(Message::binary(data.clone())).unwrap();
                        assert_eq!(tung_next(&mut ws).into_data().as_ref(), &data[..]);
                    }
                    ws.close(None).unwrap();
                    while ws.read().is_ok() {}
                })
                .unwrap()
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
}

#[test]
fn sender_from_another_thread_reaches_a_blocked_reader() {
    let (server, events) = recording_server(Config::default(), false, None);
    let mut ws = tung_client(server.local_addr(), "/");
    let Event::Open(sender, _) = next(&events, "open") else { panic!("open first") };
    // The connection thread is blocked in read (the client sends nothing);
    // the message must still leave at once, not at the next timer.
    let worker = thread::spawn(move || {
        for i in 0..3 {
            sender.send(OwnedMessage::Text(format!("push {i}"))).unwrap();
        }
    });
    worker.join().unwrap();
    for i in 0..3 {
        assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), format!("push {i}"));
    }
}

#[test]
fn terminate_from_another_thread_ends_the_connection_without_a_close() {
    let (server, events) = recording_server(Config::default(), false, None);
    let mut ws = tung_client(server.local_addr(), "/");
    let Event::Open(sender, _) = next(&events, "open") else { panic!("open first") };
    let other = sender.clone();
    thread::spawn(move || other.terminate()).join().unwrap();
    // The peer sees the stream end, with no Close frame.
    match ws.read() {
        Err(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake))
        | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected the stream to end without a Close, got {other:?}"),
    }
    // The application hears of it on the connection's thread, once.
    wait_for(&events, "the error", |e| matches!(e, Event::Error(_)));
    wait_for(&events, "on_close", |e| matches!(e, Event::Close(None)));
    assert!(sender.is_closed());
    assert!(sender.send("gone".into()).is_err());
    sender.terminate(); // nothing left to end: a no-op
}

#[test]
fn interval_fires_repeatedly_and_on_close_runs_once() {
    let (server, events) = recording_server(Config::default(), false, Some(Duration::from_millis(20)));
    let mut ws = tung_client(server.local_addr(), "/");
    next(&events, "open");
    for _ in 0..3 {
        assert!(matches!(next(&events, "interval"), Event::Interval));
    }
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    let mut closes = 0;
    loop {
        match next(&events, "drop") {
            Event::Close(_) => closes += 1,
            Event::Dropped => break,
            _ => {}
        }
    }
    assert_eq!(closes, 1);
}

#[test]
fn interval_fires_during_steady_traffic() {
    let (server, events) = recording_server(Config::default(), true, Some(Duration::from_millis(30)));
    let mut ws = tung_client(server.local_addr(), "/");
    next(&events, "open");
    let mut intervals = 0;
    for i in 0..100_000u32 {
        ws.send(Message::text(i.to_string())).unwrap();
        tung_next(&mut ws);
        intervals += events.try_iter().filter(|e| matches!(e, Event::Interval)).count();
        if intervals >= 2 {
            return;
        }
    }
    panic!("on_interval did not fire while messages flowed");
}

#[test]
fn shutdown_closes_every_connection_with_1001_and_ends_threads() {
    let server = echo_server(Config::default());
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..5).map(|_| tung_client(addr, "/")).collect();
    for ws in &mut clients {
        ws.send(Message::text("up")).unwrap();
        tung_next(ws);
    }
    assert_eq!(server.connections(), 5);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            thread::spawn(move || match tung_next(&mut ws) {
                Message::Close(Some(c)) => u16::from(c.code),
                other => panic!("{other:?}"),
            })
        })
        .collect();
    let handle = server.handle();
    server.shutdown();
    for r in readers {
        assert_eq!(r.join().unwrap(), 1001);
    }
    assert_eq!(handle.connections(), 0);
    assert!(
        TcpStream::connect(addr)
            .map(|mut s| {
                s.set_read_timeout(Some(WAIT)).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
                let mut b = [0u8; 1];
                s.read(&mut b).unwrap_or(0)
            })
            .unwrap_or(0)
            == 0,
        "nothing serves after shutdown"
    );
}

#[test]
fn a_frame_sent_with_the_handshake_is_not_lost() {
    let server = echo_server(Config::default());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut bytes = upgrade_request("/", &[]).into_bytes();
    bytes.extend(client_frame(true, 0, 1, b"early bird", true));
    s.write_all(&bytes).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    let mut frame = [0u8; 12];
    s.read_exact(&mut frame).unwrap();
    assert_eq!(&frame, b"\x81\x0aearly bird");
}

struct Picky;

impl syncws::WsTrait for Picky {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        let resp = syncws::WsHandshake::build_request(req)?;
        Ok(if req.protocols().contains(&"chat.v2") {
            resp.with_header("Sec-WebSocket-Protocol", "chat.v2")
        } else {
            resp
        })
    }
    fn on_open(&mut self, _shake: syncws::WsHandshake) -> Result<Option<syncws::WsOption>> {
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

#[test]
fn subprotocol_is_echoed_only_when_the_application_chooses_one() {
    init_log();
    let running = Listener::bind("127.0.0.1:0").unwrap().spawn(|s| s.set_callback_ws(Box::new(Picky))).unwrap();
    let url = format!("ws://{}/", running.local_addr());
    let chosen =
        syncws::Client::builder().url(&url).unwrap().protocol("chat.v1").protocol("chat.v2").connect().unwrap();
    assert_eq!(chosen.protocol(), Some("chat.v2"));
    let none = syncws::Client::builder().url(&url).unwrap().protocol("other").connect().unwrap();
    assert_eq!(none.protocol(), None, "never a protocol the server did not choose");
    assert!(none.response().headers.get("sec-websocket-protocol").is_none());
}

/// Hands its `WsOption` receiver's sender to the test.
struct OwnChannel(crossbeam_channel::Sender<(crossbeam_channel::Sender<OwnedMessage>, syncws::Sender)>);

impl syncws::WsTrait for OwnChannel {
    fn on_open(&mut self, shake: syncws::WsHandshake) -> Result<Option<syncws::WsOption>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut option = syncws::WsOption::default();
        option.set_receiver(rx);
        let _ = self.0.send((tx, shake.sender));
        Ok(Some(option))
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

#[test]
fn own_receiver_works_beside_the_handshake_sender_and_outlives_its_senders() {
    init_log();
    let (tx, rx) = crossbeam_channel::unbounded();
    let running = Listener::bind("127.0.0.1:0")
        .unwrap()
        .spawn(move |s| s.set_callback_ws(Box::new(OwnChannel(tx.clone()))))
        .unwrap();
    let mut ws = tung_client(running.local_addr(), "/");
    let (own, handshake_sender) = rx.recv_timeout(WAIT).unwrap();
    own.send(OwnedMessage::Text("via own channel".into())).unwrap();
    assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), "via own channel");
    drop(own);
    // Every sender of the application's channel is gone: the connection
    // stays open and the handshake sender still works.
    handshake_sender.send(OwnedMessage::Text("via handshake sender".into())).unwrap();
    assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), "via handshake sender");
    ws.send(Message::Ping(b"alive".to_vec().into())).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Pong(p) if p.as_ref() == b"alive"));
}

#[test]
fn plain_websocket_api_split_reader_and_writer_threads() {
    init_log();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = syncws::accept(stream).unwrap();
        while let Ok(msg) = ws.read() {
            if msg.is_data() {
                ws.send(msg).unwrap();
            }
        }
    });
    let client = syncws::Client::connect(&format!("ws://{addr}/")).unwrap();
    let (mut reader, writer) = client.into_websocket().unwrap().split();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            thread::spawn(move || {
                for i in 0..50 {
                    w.send(OwnedMessage::Text(format!("{t}:{i}"))).unwrap();
                }
            })
        })
        .collect();
    let mut got = std::collections::HashSet::new();
    while got.len() < 200 {
        match reader.read().unwrap() {
            OwnedMessage::Text(t) => assert!(got.insert(t)),
            other => panic!("{other:?}"),
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    writer.close(syncws::CloseCode::NORMAL, "done").unwrap();
    assert!(matches!(reader.read().unwrap(), OwnedMessage::Close(Some(c)) if c.status_code == 1000));
    assert!(reader.read().unwrap_err().is_closed());
    server.join().unwrap();
}

/// The read buffer starts at `read_buffer_size`, doubles while bursts of
/// small frames fill it, grows for a large frame and shrinks back: every
/// message of each phase comes back intact and in order.
#[test]
fn read_buffer_grows_and_shrinks_with_traffic() {
    let running = echo_server(Config::default().read_buffer_size(256));
    let mut ws = tung_client(running.local_addr(), "/");
    let mut round = |sizes: &[usize], seed: u64| {
        let sent: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| bytes(n, seed + i as u64)).collect();
        for p in &sent {
            ws.write(Message::binary(p.clone())).unwrap();
        }
        ws.flush().unwrap();
        for p in &sent {
            assert_eq!(tung_next(&mut ws), Message::binary(p.clone()));
        }
    };
    round(&[40; 500], 1);
    round(&[300_000], 2);
    round(&[7, 200, 3, 1000, 90], 3);
    round(&[40; 500], 4);
    round(&[5000, 20, 70_000, 1], 5);
    drop(ws);
    running.shutdown();
}

/// Payloads go from the socket straight into the message's memory, in as
/// many reads as the peer's pieces take. Pieces of every size, with pauses
/// so that reads come back short, and pieces that end one frame and start
/// the next, must give back exactly the messages sent.
#[test]
fn payloads_arriving_in_odd_pieces_echo_whole() {
    let server = echo_server(Config::default());
    let mut s = raw_ws(server.local_addr());
    let big = bytes(300_000, 7);
    let text = "é€x".repeat(15_000);
    // The text is cut inside a character, between two fragments.
    let cut = 20_001;
    let mut stream = client_frame(true, 0, 0x2, &big, true);
    stream.extend(client_frame(false, 0, 0x1, &text.as_bytes()[..cut], true));
    stream.extend(client_frame(true, 0, 0x9, b"between", true));
    stream.extend(client_frame(true, 0, 0x0, &text.as_bytes()[cut..], true));
    stream.extend(client_frame(true, 0, 0x2, b"tail!", true));
    let sizes = [1, 7, 1500, 65_537, 3, 40_000, 200, 9000];
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            let mut at = 0;
            for (i, size) in sizes.iter().cycle().enumerate() {
                if at == stream.len() {
                    break;
                }
                let end = (at + size).min(stream.len());
                s.write_all(&stream[at..end]).unwrap();
                at = end;
                if i % 3 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 4 {
        got.push(read_server_frame(&mut s));
    }
    writer.join().unwrap();
    assert_eq!((got[0].0, got[0].1.len()), (0x82, big.len()));
    assert!(got[0].1 == big, "binary payload differs");
    assert_eq!(got[1], (0x8a, b"between".to_vec()), "the ping between the fragments is answered first");
    assert_eq!(got[2].0, 0x81);
    assert!(got[2].1 == text.as_bytes(), "text payload differs");
    assert_eq!(got[3], (0x82, b"tail!".to_vec()));
}

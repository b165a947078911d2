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

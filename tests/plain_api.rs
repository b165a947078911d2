//! The plain blocking API over real sockets on 127.0.0.1, port 0:
//! `accept_with` (the application answers the upgrade), the connection's
//! request, subprotocol and peer address, and a `Listener` made from a
//! `std::net::TcpListener`.
//!
//! Every wait is bounded by [`WAIT`]; no assertion depends on how fast
//! the machine is.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use support::*;
use syncws::{Client, Config, Error, Listener, OwnedMessage, Request, Response, Result, WebSocket, WsHandshake};

/// A listener on 127.0.0.1, port 0.
fn local() -> (TcpListener, SocketAddr) {
    init_log();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one connection on a thread of its own and runs `accept_with`
/// on it with `on_request`; the result comes back when joined.
fn serve_one<F>(listener: TcpListener, on_request: F) -> thread::JoinHandle<Result<WebSocket>>
where
    F: FnOnce(&Request) -> Result<Response> + Send + 'static,
{
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        syncws::accept_with(stream, Config::default(), on_request)
    })
}

/// The application of the tests: `/chat` only, with a token, choosing
/// `chat.v2` when offered.
fn chat_endpoint(req: &Request) -> Result<Response> {
    if req.path.split('?').next() != Some("/chat") {
        return Ok(Response::text(404, "no such endpoint\n"));
    }
    if req.header("authorization") != Some("Bearer let-me-in") {
        return Ok(Response::text(401, "a token is needed\n").with_header("WWW-Authenticate", "Bearer"));
    }
    let mut resp = WsHandshake::build_request(req)?;
    if req.protocols().contains(&"chat.v2") {
        resp.headers.insert("Sec-WebSocket-Protocol", "chat.v2");
    }
    Ok(resp)
}

fn handshake_status<T: std::fmt::Debug>(r: Result<T>) -> (u16, Option<Box<Response>>) {
    match r {
        Err(Error::Handshake { status, response, .. }) => (status, response),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

/// The callback sees the path, query and headers and chooses the
/// subprotocol; both ends then know the request, the protocol and the
/// peer's address, and the client's timed read works too.
#[test]
fn accept_with_sees_the_request_and_chooses_the_protocol() {
    let (listener, addr) = local();
    let server = serve_one(listener, chat_endpoint);
    let mut client = Client::builder()
        .url(&format!("ws://{addr}/chat?room=7"))
        .unwrap()
        .header("Authorization", "Bearer let-me-in")
        .protocol("chat.v1")
        .protocol("chat.v2")
        .connect()
        .expect("connect");
    let mut ws = server.join().unwrap().expect("accepted");

    assert_eq!(ws.request().path, "/chat?room=7");
    assert_eq!(ws.request().header("authorization"), Some("Bearer let-me-in"));
    assert_eq!(ws.protocol(), Some("chat.v2"));
    let peer = ws.peer_addr().expect("a TCP peer has an address");
    assert!(peer.ip().is_loopback(), "{peer}");
    assert_eq!(client.protocol(), Some("chat.v2"));
    assert_eq!(client.request().path, "/chat?room=7");
    assert_eq!(client.peer_addr(), Some(addr));

    client.send(OwnedMessage::Text("ping?".into())).unwrap();
    assert_eq!(ws.read().unwrap(), OwnedMessage::Text("ping?".into()));
    ws.send(OwnedMessage::Text("pong!".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("pong!".into()));

    // The plain WebSocket taken out of the client keeps what it knew.
    let plain = client.into_websocket().unwrap();
    assert_eq!(plain.request().path, "/chat?room=7");
    assert_eq!(plain.protocol(), Some("chat.v2"));
    assert_eq!(plain.peer_addr(), Some(addr));
    let (reader, _writer) = plain.split();
    assert_eq!(reader.protocol(), Some("chat.v2"));
    assert_eq!(reader.request().path, "/chat?room=7");
    assert_eq!(reader.peer_addr(), Some(addr));
}

/// `accept` without a callback keeps the request too, and agrees on no
/// subprotocol.
#[test]
fn accept_keeps_the_request() {
    let (listener, addr) = local();
    let server = thread::spawn(move || syncws::accept(listener.accept().unwrap().0));
    let client = Client::builder().url(&format!("ws://{addr}/feed")).unwrap().protocol("x").connect().unwrap();
    let ws = server.join().unwrap().expect("accepted");
    assert_eq!(ws.request().path, "/feed");
    assert_eq!(ws.protocol(), None);
    assert_eq!(client.protocol(), None);
    assert!(ws.peer_addr().is_some());
}

/// A refusal the callback returns is written as given, with its headers
/// and body, and both sides get its status.
#[test]
fn refusals_from_the_callback_are_answered_and_returned() {
    let cases: [(&str, Option<&str>, u16, &str); 3] = [
        ("/elsewhere", Some("Bearer let-me-in"), 404, "no such endpoint"),
        ("/chat", None, 401, "a token is needed"),
        ("/chat", Some("Bearer wrong"), 401, "a token is needed"),
    ];
    for (path, token, want, body) in cases {
        let (listener, addr) = local();
        let server = serve_one(listener, chat_endpoint);
        let mut builder = Client::builder().url(&format!("ws://{addr}{path}")).unwrap();
        if let Some(token) = token {
            builder = builder.header("Authorization", token);
        }
        let (status, response) = handshake_status(builder.connect());
        assert_eq!(status, want, "{path} {token:?}");
        let response = response.expect("the client keeps the refusal");
        assert_eq!(String::from_utf8_lossy(&response.body), format!("{body}\n"));
        assert_eq!(response.header("connection"), Some("close"));
        if want == 401 {
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        }
        match server.join().unwrap() {
            Err(Error::Handshake { status, reason, .. }) => {
                assert_eq!(status, want);
                assert!(reason.contains(body), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// A 101 the client would reject is never sent: the client gets a 500
/// and the server's caller [`Error::Handshake`] with 500; an error from
/// the callback is answered 500 and returned as it was.
#[test]
fn an_invalid_101_from_the_callback_is_a_500() {
    type Callback = fn(&Request) -> Result<Response>;
    let cases: [(Callback, u16); 4] = [
        // A protocol the client did not offer.
        (|req| Ok(WsHandshake::build_request(req)?.with_header("Sec-WebSocket-Protocol", "other")), 500),
        // An extension: syncws negotiates none.
        (|req| Ok(WsHandshake::build_request(req)?.with_header("Sec-WebSocket-Extensions", "permessage-deflate")), 500),
        // A wrong accept key.
        (|req| Ok(WsHandshake::build_request(req)?.with_header("Sec-WebSocket-Accept", "bm9wZQ==")), 500),
        // An error that is not a handshake refusal.
        (|_| Err(Error::Application("the database is down".into())), 500),
    ];
    for (i, (callback, want)) in cases.into_iter().enumerate() {
        let (listener, addr) = local();
        let server = serve_one(listener, callback);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(upgrade_request("/", &["Sec-WebSocket-Protocol: chat"]).as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with(&format!("HTTP/1.1 {want} ")), "case {i}: {head}");
        assert!(!head.contains("Sec-WebSocket-Accept"), "case {i}: {head}");
        match server.join().unwrap() {
            // The callback's own error comes back as it was.
            Err(Error::Application(why)) => assert_eq!(why, "the database is down"),
            other => assert_eq!(handshake_status(other).0, want, "case {i}"),
        }
    }
}

/// A browser page from another origin is refused before the callback
/// runs, and the 403 says what to do about it.
#[test]
fn the_origin_refusal_says_what_to_do() {
    let (listener, addr) = local();
    let server = serve_one(listener, |_| panic!("the callback must not run for a refused origin"));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request("/", &["Origin: http://localhost:3000"]).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let body = read_to_end(&mut s);
    assert!(body.contains("http://localhost:3000"), "{body}");
    assert!(body.contains("--origin"), "{body}");
    assert!(body.contains("OriginPolicy"), "{body}");
    assert_eq!(handshake_status(server.join().unwrap()).0, 403);
}

fn read_to_end(s: &mut TcpStream) -> String {
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(s, &mut body);
    body
}

/// A `Listener` from a socket bound elsewhere serves on it, even one left
/// in non-blocking mode.
#[test]
fn listener_from_std_serves_on_a_socket_bound_elsewhere() {
    for nonblocking in [false, true] {
        let (socket, addr) = local();
        socket.set_nonblocking(nonblocking).unwrap();
        let listener = Listener::from_std_with_config(socket, Config::default()).expect("from_std");
        assert_eq!(listener.local_addr(), addr);
        let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
        assert_eq!(running.local_addr(), addr);
        still_serves(addr);
        running.shutdown();
    }
    let (socket, addr) = local();
    let running =
        Listener::from_std(socket).unwrap().spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
    still_serves(addr);
    running.shutdown();
}

//! The plain blocking API over real sockets on 127.0.0.1, port 0:
//! `accept_with` (the application answers the upgrade), the connection's
//! request, subprotocol and peer address, the timed read, and a
//! `Listener` made from a `std::net::TcpListener`.
//!
//! Every wait is bounded by [`WAIT`]; no assertion depends on how fast
//! the machine is.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use syncws::{Client, Config, Error, Listener, OwnedMessage, Phase, Request, Response, Result, WebSocket, WsHandshake};

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

    // Nothing sent yet: the client's timed read says so and goes on.
    assert_eq!(client.read_timeout(Duration::from_millis(20)).unwrap(), None);
    client.send(OwnedMessage::Text("ping?".into())).unwrap();
    assert_eq!(ws.read().unwrap(), OwnedMessage::Text("ping?".into()));
    ws.send(OwnedMessage::Text("pong!".into())).unwrap();
    assert_eq!(client.read_timeout(WAIT).unwrap(), Some(OwnedMessage::Text("pong!".into())));

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

/// A server-side plain connection and the raw client on its other end.
fn plain_pair(config: Config) -> (WebSocket, TcpStream) {
    let (listener, addr) = local();
    let client = thread::spawn(move || raw_ws(addr));
    let (stream, _) = listener.accept().unwrap();
    let ws = syncws::accept_with_config(stream, config).expect("accepted");
    (ws, client.join().unwrap())
}

/// Calls `read_timeout` until a message comes, for at most [`WAIT`].
fn read_within_wait(ws: &mut WebSocket) -> OwnedMessage {
    let give_up = Instant::now() + WAIT;
    while Instant::now() < give_up {
        if let Some(msg) = ws.read_timeout(Duration::from_millis(50)).unwrap() {
            return msg;
        }
    }
    panic!("no message within {WAIT:?}");
}

/// Nothing arrives: `None`, and the connection goes on; a message that
/// arrives later is returned; a Close is returned, then the end.
#[test]
fn read_timeout_says_nothing_yet_then_returns_what_arrives() {
    let (mut ws, mut peer) = plain_pair(Config::default());
    for timeout in [Duration::ZERO, Duration::from_millis(30)] {
        let started = Instant::now();
        assert_eq!(ws.read_timeout(timeout).unwrap(), None);
        assert!(started.elapsed() < WAIT, "read_timeout({timeout:?}) took {:?}", started.elapsed());
    }
    peer.write_all(&client_frame(true, 0, 1, b"late", true)).unwrap();
    assert_eq!(read_within_wait(&mut ws), OwnedMessage::Text("late".into()));
    // A ping is answered and returned, as by `read`.
    peer.write_all(&client_frame(true, 0, 9, b"are you there", true)).unwrap();
    assert_eq!(read_within_wait(&mut ws), OwnedMessage::Ping(b"are you there".to_vec()));
    assert_eq!(read_server_frame(&mut peer), (0x8a, b"are you there".to_vec()));

    peer.write_all(&client_frame(true, 0, 8, &1000u16.to_be_bytes(), true)).unwrap();
    assert!(matches!(read_within_wait(&mut ws), OwnedMessage::Close(Some(c)) if c.status_code == 1000));
    assert!(matches!(ws.read_timeout(Duration::from_millis(10)), Err(Error::ConnectionClosed)));
    assert_eq!(read_close_code(&mut peer), Some(1000));
}

/// A message whose bytes arrive in pieces, between timed reads that each
/// return `None`, is returned whole: a frame cut inside its header and
/// again inside its payload, and a message in two fragments cut after the
/// first and inside the second.
#[test]
fn a_message_split_across_timed_reads_arrives_whole() {
    let (mut ws, mut peer) = plain_pair(Config::default());
    let payload = bytes(3000, 7);
    let frame = client_frame(true, 0, 2, &payload, true);
    let first = client_frame(false, 0, 1, b"hello, ", true);
    let last = client_frame(true, 0, 0, b"world", true);
    let wire = [frame.clone(), first.clone(), last].concat();
    let frame_end = frame.len();
    let first_end = frame_end + first.len();
    // (end of the piece written, the message complete once it is)
    let pieces = [
        (1, None),
        (1500, None),
        (frame_end, Some(OwnedMessage::Binary(payload))),
        (first_end, None),
        (wire.len() - 3, None),
        (wire.len(), Some(OwnedMessage::Text("hello, world".into()))),
    ];
    let mut sent = 0;
    for (end, complete) in pieces {
        peer.write_all(&wire[sent..end]).unwrap();
        sent = end;
        match complete {
            // Several calls, so the piece is most likely read during one;
            // read or not, no message is complete.
            None => {
                for _ in 0..3 {
                    assert_eq!(ws.read_timeout(Duration::from_millis(20)).unwrap(), None, "after {end} bytes");
                }
            }
            Some(msg) => assert_eq!(read_within_wait(&mut ws), msg, "after {end} bytes"),
        }
    }
}

/// Keepalive pings go out and the idle timeout is kept while the
/// application only makes timed reads.
#[test]
fn keepalive_and_idle_deadlines_run_during_timed_reads() {
    let config =
        Config::default().ping_interval(Some(Duration::from_millis(100))).idle_timeout(Some(Duration::from_secs(2)));
    let (mut ws, mut peer) = plain_pair(config);
    let server = thread::spawn(move || {
        let give_up = Instant::now() + WAIT;
        let mut nones = 0;
        while Instant::now() < give_up {
            match ws.read_timeout(Duration::from_millis(20)) {
                Ok(None) => nones += 1,
                Ok(Some(msg)) => panic!("the silent peer sent {msg:?}"),
                Err(e) => return (e, nones),
            }
        }
        panic!("the idle timeout never fired");
    });
    // The peer never answers: a keepalive ping, then the idle Close.
    let (first, _) = read_server_frame(&mut peer);
    assert_eq!(first, 0x89, "a keepalive ping comes first");
    assert_eq!(read_close_code(&mut peer), Some(1001));
    // The server waits for our end of TCP before it lets go.
    drop(peer);
    let (err, nones) = server.join().unwrap();
    assert!(matches!(err, Error::Timeout { phase: Phase::Idle }), "{err:?}");
    assert!(nones > 0);
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

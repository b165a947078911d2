//! WebSocket over Unix domain sockets, both sides: `serve_unix` with the
//! syncws client (`ws+unix://` URLs), `syncws::accept` on a `UnixStream`
//! with a tungstenite client, the connection cap (and no per-IP cap), the
//! shutdown's 1001.
#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{unbounded, Sender as ChanSender};
use support::{init_log, tung_next, Echo, WAIT};
use syncws::{Client, CloseCode, Config, Error, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};

/// A socket path in the temp dir, unique to this process and test, removed
/// when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(test: &str) -> SocketPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("syncws-{}-{n}-{test}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }

    fn url(&self, request_path: &str) -> String {
        format!("ws+unix://{}:{request_path}", self.0.display())
    }

    fn bind(&self) -> UnixListener {
        UnixListener::bind(&self.0).expect("bind the unix socket")
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the server saw of the handshake: path, Host, peer address.
type Seen = (String, Option<String>, Option<std::net::SocketAddr>);

/// Echoes, after reporting the handshake.
struct Reporting {
    seen: ChanSender<Seen>,
    sender: Option<Sender>,
}

impl WsTrait for Reporting {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let host = shake.request.header("host").map(str::to_owned);
        let _ = self.seen.send((shake.request.path.clone(), host, shake.addr));
        self.sender = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        self.sender.as_ref().expect("opened").send(msg)
    }
}

#[test]
fn serve_unix_echoes_to_a_ws_unix_client_and_closes_with_1001() {
    init_log();
    let path = SocketPath::new("echo");
    let (seen_tx, seen) = unbounded();
    let running = syncws::serve_unix(path.bind(), Config::default(), move |server| {
        assert_eq!(server.peer_addr(), None);
        server.set_callback_ws(Box::new(Reporting { seen: seen_tx.clone(), sender: None }));
    })
    .unwrap();
    assert_eq!(running.local_addr().as_pathname(), Some(path.0.as_path()));

    let mut client = Client::connect(&path.url("/chat?room=1")).expect("connect over the unix socket");
    client.send(OwnedMessage::Text("hello".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("hello".into()));
    let big = support::bytes(200_000, 7);
    client.send(OwnedMessage::Binary(big.clone())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Binary(big));

    let (request_path, host, addr) = seen.recv_timeout(WAIT).expect("the handshake was reported");
    assert_eq!(request_path, "/chat?room=1");
    assert_eq!(host.as_deref(), Some("localhost"));
    assert_eq!(addr, None, "a unix peer has no address");
    assert_eq!(running.connections(), 1);

    // The shutdown closes with 1001 and waits for the close handshake,
    // which the client's read completes.
    let stopping = thread::spawn(move || running.shutdown());
    match client.read().unwrap() {
        OwnedMessage::Close(Some(close)) => assert_eq!(close.status_code, u16::from(CloseCode::AWAY)),
        other => panic!("expected the 1001 close, got {other:?}"),
    }
    stopping.join().unwrap();
    assert!(matches!(client.read(), Err(Error::ConnectionClosed)));
}

#[test]
fn serve_unix_answers_503_over_the_connection_cap() {
    init_log();
    let path = SocketPath::new("cap");
    let config = Config::default().max_connections(1);
    let running =
        syncws::serve_unix(path.bind(), config, |server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
    let mut first = Client::connect(&path.url("/")).unwrap();
    first.send(OwnedMessage::Text("in".into())).unwrap();
    assert_eq!(first.read().unwrap(), OwnedMessage::Text("in".into()));

    // Read without writing: the server answers at once and closes, and a
    // write to a Unix socket whose peer has closed fails (EPIPE) before
    // the answer could be read.
    let mut second = UnixStream::connect(&path.0).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = String::new();
    second.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.ends_with("server at its connection limit\n"), "{answer}");
    assert_eq!(running.connections(), 1);
    // Counted as a TCP listener counts: the refusal before its answer, the
    // message before its echo.
    let stats = running.stats();
    assert_eq!((stats.accepted, stats.open, stats.refused.connections, stats.refused.total()), (1, 1, 1, 1));
    assert_eq!((stats.websockets_opened, stats.websockets_open(), stats.messages_in), (1, 1, 1));
    let stopping = thread::spawn(move || running.shutdown());
    while first.read().is_ok() {}
    stopping.join().unwrap();
}

/// A Unix peer has no IP address: `max_connections_per_ip` does not apply,
/// so three connections are served where a TCP listener with the same
/// config would refuse the second from one address. Each connection's
/// `Server::metrics` reads the server's counters.
#[test]
fn the_per_ip_cap_does_not_apply_over_unix() {
    init_log();
    let path = SocketPath::new("per-ip");
    let config = Config::default().max_connections_per_ip(Some(1));
    let (tx, handles) = unbounded();
    let running = syncws::serve_unix(path.bind(), config, move |server| {
        let _ = tx.send(server.metrics());
        server.set_callback_ws(Box::new(Echo(None)));
    })
    .unwrap();
    let mut clients = Vec::new();
    for text in ["first", "second", "third"] {
        let mut client = Client::connect(&path.url("/")).expect("not refused by the per-IP cap");
        client.send(OwnedMessage::Text(text.into())).unwrap();
        assert_eq!(client.read().unwrap(), OwnedMessage::Text(text.into()));
        clients.push(client);
    }
    assert_eq!(running.connections(), 3);
    let stats = running.stats();
    assert_eq!((stats.refused.connections_per_ip, stats.refused.total(), stats.websockets_opened), (0, 0, 3));
    // A connection's `Server::metrics` is its server's counters, not the
    // process-wide ones (whose `accepted` stays 0).
    let handle = handles.recv_timeout(WAIT).expect("the setup ran");
    assert_eq!((handle.snapshot().accepted, handle.snapshot().websockets_opened), (3, 3));
    let stopping = thread::spawn(move || running.shutdown());
    for mut client in clients {
        while client.read().is_ok() {}
    }
    stopping.join().unwrap();
}

/// `syncws::accept` on a `UnixStream`, a tungstenite client on the other
/// end; the split writer sends from another thread while the reader echoes.
#[test]
fn accept_over_a_unix_stream_with_a_tungstenite_client() {
    init_log();
    let path = SocketPath::new("accept");
    let listener = path.bind();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let ws = syncws::accept(stream).expect("accept over a unix stream");
        let (mut reader, writer) = ws.split();
        let other = writer.clone();
        thread::spawn(move || other.send(OwnedMessage::Text("from another thread".into()))).join().unwrap().unwrap();
        loop {
            match reader.read() {
                Ok(msg) if msg.is_data() => writer.send(msg).unwrap(),
                Ok(_) => {}
                Err(e) => break e,
            }
        }
    });

    let stream = UnixStream::connect(&path.0).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (mut ws, resp) = tungstenite::client::client("ws://localhost/x", stream).expect("handshake");
    assert_eq!(resp.status(), 101);
    assert_eq!(tung_next(&mut ws), tungstenite::Message::text("from another thread"));
    ws.send(tungstenite::Message::text("echo me")).unwrap();
    assert_eq!(tung_next(&mut ws), tungstenite::Message::text("echo me"));
    ws.close(None).unwrap();
    assert!(matches!(tung_next(&mut ws), tungstenite::Message::Close(_)));
    // The server waits for the end of the stream after the close handshake.
    drop(ws);
    assert!(matches!(server.join().unwrap(), Error::ConnectionClosed));
}

/// A plain HTTP request over the socket gets the server's answer (here the
/// 426 of a WebSocket-only endpoint): HTTP and WebSocket share it.
#[test]
fn plain_http_over_serve_unix() {
    init_log();
    let path = SocketPath::new("http");
    let running =
        syncws::serve_unix(path.bind(), Config::default(), |server| server.set_callback_ws(Box::new(Echo(None))))
            .unwrap();
    let mut stream = UnixStream::connect(&path.0).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    running.shutdown();
}

#[test]
fn ws_unix_client_errors() {
    init_log();
    // Nothing listens there: an I/O error of the connect, not a URL error.
    let missing = SocketPath::new("missing");
    match Client::connect(&missing.url("/")) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // A relative socket path is refused before any connect.
    match Client::connect("ws+unix://relative.sock:/chat") {
        Err(Error::Url(msg)) => assert!(msg.contains("absolute socket path"), "{msg}"),
        other => panic!("expected a URL error, got {other:?}"),
    }
}

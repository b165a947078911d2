//! Upgrading a request another HTTP server parsed: `syncws::upgrade` over
//! real sockets (with the bytes read past the head, refusals, an
//! unsplittable stream), and `examples/tiny_http_upgrade.rs` run end to end
//! behind tiny_http.

mod support;

#[allow(dead_code)]
#[path = "../examples/tiny_http_upgrade.rs"]
mod example;

use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use support::{init_log, tung_next, WAIT};
use syncws::transport::Unsplit;
use syncws::{Client, CloseCode, Config, Error, OwnedMessage, Request};

/// An upgrade head for `path` with a fixed key (RFC 6455's example).
fn upgrade_head(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame: FIN, `opcode`, `payload` (under 126 bytes).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads from `stream` until `buf` holds a complete request head and at
/// least `extra` bytes after it, as an HTTP server that read ahead would.
fn read_request(stream: &mut TcpStream, extra: usize) -> (Request, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((req, len)) = Request::parse(&buf, &Config::default()).expect("a valid head") {
            if buf.len() >= len + extra {
                return (req, buf[len..].to_vec());
            }
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the peer closed before the request was complete");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the response head: everything up to the blank line.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read"), 1, "closed inside the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A listener and a connected raw client whose stream has a read timeout.
fn pair() -> (TcpStream, TcpStream) {
    init_log();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    (server, client)
}

/// The first frame arrives with the head, in the same write: the server
/// read it along with the head and hands it over as leftover bytes.
#[test]
fn upgrade_reads_the_frames_read_past_the_head() {
    let (mut server, mut client) = pair();
    let first = client_frame(0x1, b"first");
    let mut bytes = upgrade_head("/chat", "").into_bytes();
    bytes.extend_from_slice(&first);
    bytes.extend_from_slice(&client_frame(0x1, b"second"));
    client.write_all(&bytes).unwrap();

    let (req, leftover) = read_request(&mut server, first.len());
    assert!(!leftover.is_empty());
    assert_eq!(req.path, "/chat");
    let mut ws = syncws::upgrade(&req, leftover, server, Config::default()).unwrap();
    // The connection knows its handshake, as one from `accept` does.
    assert_eq!(ws.request().path, "/chat");
    assert_eq!(ws.peer_addr(), Some(client.local_addr().unwrap()));
    assert_eq!(ws.protocol(), None);
    assert_eq!(ws.read().unwrap(), OwnedMessage::Text("first".into()));
    assert_eq!(ws.read().unwrap(), OwnedMessage::Text("second".into()));
    ws.send(OwnedMessage::Text("back".into())).unwrap();

    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    let mut frame = [0u8; 6];
    client.read_exact(&mut frame).unwrap();
    assert_eq!(&frame, b"\x81\x04back");
}

/// A request that is no valid upgrade is answered with its status and
/// reason, and the error says the same.
#[test]
fn upgrade_refuses_an_invalid_request_with_its_status() {
    let cases = [
        (upgrade_head("/", "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), 426),
        (upgrade_head("/", "Origin: http://elsewhere.example\r\n"), 403),
        (upgrade_head("/", "").replace("Upgrade: websocket\r\n", ""), 400),
    ];
    for (head, status) in cases {
        let (mut server, mut client) = pair();
        client.write_all(head.as_bytes()).unwrap();
        let (req, leftover) = read_request(&mut server, 0);
        match syncws::upgrade(&req, leftover, server, Config::default()) {
            Err(Error::Handshake { status: s, .. }) => assert_eq!(s, status),
            other => panic!("{head}: {other:?}"),
        }
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
    }
}

/// A stream that is only `Read + Write`, and buffers its writes: what
/// another HTTP server may hand over after an upgrade.
struct Opaque {
    read: TcpStream,
    write: BufWriter<TcpStream>,
}

impl Read for Opaque {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for Opaque {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.write.flush()
    }
}

/// Over an unsplittable, buffered stream: the 101 and every frame go out
/// (each write is flushed), messages echo, and the close handshake ends
/// with the stream dropped, so the client sees the end of TCP.
#[test]
fn an_unsplit_stream_serves_the_single_threaded_api() {
    let (mut server, client) = pair();
    let addr = client.peer_addr().unwrap();
    let url = format!("ws://{addr}/plain");
    let peer = thread::spawn(move || {
        let (mut ws, resp) = tungstenite::client::client(url.as_str(), client).expect("handshake");
        assert_eq!(resp.status(), 101);
        for text in ["one", "two"] {
            ws.send(tungstenite::Message::text(text)).unwrap();
            assert_eq!(tung_next(&mut ws), tungstenite::Message::text(text));
        }
        ws.close(None).unwrap();
        assert!(matches!(tung_next(&mut ws), tungstenite::Message::Close(_)));
        // The server dropped the stream after the close handshake.
        let mut rest = [0u8; 16];
        assert_eq!(ws.get_mut().read(&mut rest).expect("EOF, not a timeout"), 0);
    });

    let (req, leftover) = read_request(&mut server, 0);
    let read = server.try_clone().unwrap();
    let stream = Unsplit::new(Opaque { read, write: BufWriter::new(server) });
    let mut ws = syncws::upgrade(&req, leftover, stream, Config::default()).unwrap();
    loop {
        match ws.read() {
            Ok(msg) if msg.is_data() => ws.send(msg).unwrap(),
            Ok(OwnedMessage::Close(_)) => {}
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(e, Error::ConnectionClosed), "{e}");
                break;
            }
        }
    }
    drop(ws);
    peer.join().unwrap();
}

/// The example behind tiny_http: the page on `/`, the echo on `/ws` for a
/// tungstenite client and a syncws client, refusals answered by tiny_http
/// with syncws's status and reason, 404 elsewhere.
#[test]
fn the_tiny_http_example_serves_the_page_and_echoes() {
    init_log();
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("tiny_http listens"));
    let addr = server.server_addr().to_ip().expect("an IP address");
    let serving = {
        let server = Arc::clone(&server);
        thread::spawn(move || example::run(&server, &Config::default()))
    };

    // The page.
    let get = |path: &str| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.contains("new WebSocket(`ws://${location.host}/ws`)"), "{page}");
    assert!(get("/nothing").starts_with("HTTP/1.1 404 "));

    // tungstenite: text, binary, ping, close.
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{addr}/ws");
    let (mut ws, resp) = tungstenite::client::client(url.as_str(), stream).expect("handshake behind tiny_http");
    assert_eq!(resp.status(), 101);
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(tung_next(&mut ws), tungstenite::Message::text("hello"));
    ws.send(tungstenite::Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(tung_next(&mut ws), tungstenite::Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(tungstenite::Message::Ping(b"p".to_vec().into())).unwrap();
    match ws.read().expect("the pong") {
        tungstenite::Message::Pong(p) => assert_eq!(&p[..], b"p"),
        other => panic!("expected the pong, got {other:?}"),
    }
    ws.close(None).unwrap();
    assert!(matches!(tung_next(&mut ws), tungstenite::Message::Close(_)));

    // syncws's own client, same-origin as a page from this server would be.
    let mut client = Client::builder()
        .url(&url)
        .unwrap()
        .header("Origin", &format!("http://{addr}"))
        .connect()
        .expect("syncws client behind tiny_http");
    assert_eq!(client.response().header("sec-websocket-accept").map(str::len), Some(28));
    client.send(OwnedMessage::Text("via syncws".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("via syncws".into()));
    client.close(CloseCode::NORMAL, "bye").unwrap();
    assert!(matches!(client.read().unwrap(), OwnedMessage::Close(_)));

    // A page from elsewhere: the Origin policy's 403, body and all.
    let refused = Client::builder().url(&url).unwrap().header("Origin", "http://elsewhere.example").connect();
    match refused {
        Err(Error::Handshake { status: 403, response: Some(resp), .. }) => {
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            assert!(body.contains("origin http://elsewhere.example is not allowed"), "{body}");
        }
        other => panic!("expected 403, got {other:?}"),
    }

    server.unblock();
    serving.join().unwrap();
}

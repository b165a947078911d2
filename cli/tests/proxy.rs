//! `syncws proxy` through its library entry point, with upstreams that tag
//! their replies.

mod support;

use std::thread;

use crossbeam_channel::{unbounded, Receiver, Sender as ChanSender};
use support::*;
use syncws::{
    Client, CloseCode, CloseData, Config, Error, Listener, OwnedMessage, Request, Response, Result, Running, WebSocket,
    WsHandshake, WsOption, WsTrait,
};
use syncws_cli::proxy::{proxy, ProxyOptions, Upstream};

/// An upstream that greets with its tag, echoes, chooses `tag.v1` if
/// offered, refuses `/forbidden` with 401 and a `WWW-Authenticate` challenge, closes with 4001 on "close-me",
/// and reports what it saw.
struct Tagger {
    tag: &'static str,
    sender: Option<syncws::Sender>,
    events: ChanSender<String>,
}

impl WsTrait for Tagger {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        if req.path == "/forbidden" {
            return Ok(Response::text(401, "not you")
                .with_header("WWW-Authenticate", "Basic realm=\"upstream\"")
                .with_header("Retry-After", "5"));
        }
        let xff = req.header("x-forwarded-for").unwrap_or("-").to_owned();
        let _ = self.events.send(format!("request {} xff {xff}", req.path));
        let mut resp = WsHandshake::build_request(req)?;
        if req.protocols().contains(&"tag.v1") {
            resp.headers.insert("Sec-WebSocket-Protocol", "tag.v1");
        }
        Ok(resp)
    }
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        shake.sender.send(OwnedMessage::Text(format!("tag:{}", self.tag)))?;
        self.sender = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        let sender = self.sender.as_ref().unwrap();
        if msg == OwnedMessage::Text("close-me".into()) {
            return sender.close(CloseCode(4001), "upstream says bye");
        }
        if msg == OwnedMessage::Text("ping-me".into()) {
            return sender.send(OwnedMessage::Ping(b"from upstream".to_vec()));
        }
        sender.send(msg)
    }
    fn on_pong(&mut self, val: Vec<u8>) {
        let _ = self.events.send(format!("pong {}", String::from_utf8_lossy(&val)));
    }
    fn on_close(&mut self, reason: &Option<CloseData>) {
        let _ = self.events.send(format!("close {}", reason.as_ref().map_or("none".into(), |c| c.to_string())));
    }
}

fn tagger(tag: &'static str) -> (Running, Receiver<String>) {
    init_log();
    let (tx, rx) = unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", Config::default()).unwrap();
    let running = listener
        .spawn(move |server| server.set_callback_ws(Box::new(Tagger { tag, sender: None, events: tx.clone() })))
        .unwrap();
    (running, rx)
}

fn up(r: &Running, weight: u32) -> Upstream {
    Upstream { url: format!("ws://{}", r.local_addr()), weight }
}

fn connect(url: &str, protocol: Option<&str>) -> Result<(WebSocket, Option<String>)> {
    let mut b = Client::builder().url(url)?.config(Config::default().handshake_timeout(WAIT));
    if let Some(p) = protocol {
        b = b.protocol(p);
    }
    let client = b.connect()?;
    let protocol = client.protocol().map(str::to_owned);
    Ok((client.into_websocket()?, protocol))
}

fn first_tag(ws: &mut WebSocket) -> String {
    match ws.read().expect("greeting") {
        OwnedMessage::Text(t) => t,
        other => panic!("expected the tag, got {other:?}"),
    }
}

fn close(mut ws: WebSocket) {
    ws.close(CloseCode::NORMAL, "").unwrap();
    while ws.read().is_ok() {}
}

#[test]
fn split_follows_the_weights() {
    let (a, _ea) = tagger("A");
    let (b, _eb) = tagger("B");
    let p = proxy(ProxyOptions::new("127.0.0.1:0", vec![up(&a, 3), up(&b, 1)])).unwrap();
    let url = format!("ws://{}/", p.local_addr());
    let counts = within("200 proxied connections", move || {
        let (tx, rx) = unbounded();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (url, tx) = (url.clone(), tx.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        let (mut ws, _) = connect(&url, None).expect("proxied connection");
                        let _ = tx.send(first_tag(&mut ws));
                        close(ws);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        drop(tx);
        let tags: Vec<String> = rx.iter().collect();
        (tags.iter().filter(|t| *t == "tag:A").count(), tags.iter().filter(|t| *t == "tag:B").count())
    });
    assert_eq!(counts.0 + counts.1, 200);
    // 3:1 means 150:50; allow a generous band.
    assert!((120..=180).contains(&counts.0), "{counts:?}");
    p.shutdown();
}

#[test]
fn a_dead_upstream_is_skipped() {
    let (a, _ea) = tagger("A");
    let (b, _eb) = tagger("B");
    let dead = Upstream { url: format!("ws://{}", dead_addr()), weight: 5 };
    let p = proxy(ProxyOptions::new("127.0.0.1:0", vec![dead, up(&a, 1), up(&b, 1)])).unwrap();
    let url = format!("ws://{}/", p.local_addr());
    let tags = within("connections past a dead upstream", move || {
        (0..30)
            .map(|_| {
                let (mut ws, _) = connect(&url, None).expect("a live upstream");
                let tag = first_tag(&mut ws);
                close(ws);
                tag
            })
            .collect::<Vec<_>>()
    });
    assert!(tags.iter().all(|t| t == "tag:A" || t == "tag:B"), "{tags:?}");
    assert!(tags.iter().any(|t| t == "tag:A") && tags.iter().any(|t| t == "tag:B"), "{tags:?}");
    p.shutdown();
}

#[test]
fn all_upstreams_dead_gives_502() {
    init_log();
    let dead = Upstream { url: format!("ws://{}", dead_addr()), weight: 1 };
    let p = proxy(ProxyOptions::new("127.0.0.1:0", vec![dead])).unwrap();
    match connect(&format!("ws://{}/", p.local_addr()), None) {
        Err(Error::Handshake { status: 502, .. }) => {}
        other => panic!("expected 502, got {:?}", other.map(|(_, p)| p)),
    }
    p.shutdown();
}

#[test]
fn subprotocol_refusal_close_codes_and_pings_pass_through() {
    let (a, events) = tagger("A");
    let mut opts = ProxyOptions::new("127.0.0.1:0", vec![up(&a, 1)]);
    opts.x_forwarded_for = true;
    let p = proxy(opts).unwrap();
    let base = format!("ws://{}", p.local_addr());

    // The upstream's refusal, not a 101 first: its status, body and
    // end-to-end headers, so the client can answer the challenge.
    match connect(&format!("{base}/forbidden"), None) {
        Err(Error::Handshake { status: 401, response: Some(resp), .. }) => {
            assert_eq!(resp.body, b"not you");
            assert_eq!(resp.header("www-authenticate"), Some("Basic realm=\"upstream\""));
            assert_eq!(resp.header("retry-after"), Some("5"));
            assert_eq!(resp.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(resp.header("connection"), Some("close"));
        }
        other => panic!("expected 401, got {:?}", other.map(|(_, p)| p)),
    }

    // The subprotocol the upstream chose, and X-Forwarded-For.
    let url = format!("{base}/room?x=1");
    let (mut ws, protocol) = within("proxied handshake", move || connect(&url, Some("tag.v1")).unwrap());
    assert_eq!(protocol.as_deref(), Some("tag.v1"));
    assert_eq!(recv(&events, "the upstream's request"), "request /room?x=1 xff 127.0.0.1");
    assert_eq!(first_tag(&mut ws), "tag:A");

    // A ping from the client reaches the upstream, whose pong comes back;
    // a ping from the upstream reaches the client, whose pong goes back.
    let (reply, ws) = within("pings both ways", move || {
        ws.send(OwnedMessage::Ping(b"from client".to_vec())).unwrap();
        ws.send(OwnedMessage::Text("ping-me".into())).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match ws.read().unwrap() {
                OwnedMessage::Pong(p) => seen.push(format!("pong {}", String::from_utf8_lossy(&p))),
                OwnedMessage::Ping(p) => seen.push(format!("ping {}", String::from_utf8_lossy(&p))),
                other => panic!("unexpected {other:?}"),
            }
        }
        seen.sort();
        (seen, ws)
    });
    assert_eq!(reply, ["ping from upstream", "pong from client"]);
    assert_eq!(recv(&events, "the client's pong at the upstream"), "pong from upstream");

    // A close code and reason sent by the upstream reach the client.
    let (close, ws) = within("upstream close", move || {
        let mut ws = ws;
        ws.send(OwnedMessage::Text("echo".into())).unwrap();
        assert_eq!(ws.read().unwrap(), OwnedMessage::Text("echo".into()));
        ws.send(OwnedMessage::Text("close-me".into())).unwrap();
        loop {
            if let OwnedMessage::Close(c) = ws.read().unwrap() {
                return (c, ws);
            }
        }
    });
    drop(ws);
    assert_eq!(close, Some(CloseData::new(CloseCode(4001), "upstream says bye")));
    assert_eq!(recv(&events, "the upstream's close"), "close 4001");

    // A close code and reason sent by the client reach the upstream.
    let url = format!("{base}/");
    within("client close", move || {
        let (mut ws, _) = connect(&url, None).unwrap();
        first_tag(&mut ws);
        ws.close(CloseCode(4002), "client says bye").unwrap();
        while ws.read().is_ok() {}
    });
    assert_eq!(recv(&events, "second request"), "request / xff 127.0.0.1");
    assert_eq!(recv(&events, "the client's close at the upstream"), "close 4002 client says bye");
    p.shutdown();
}

#[test]
fn active_checks_mark_upstreams_down_and_up() {
    let (a, _ea) = tagger("A");
    // B's port is reserved now and served later: down first, then up.
    let b_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_addr = b_listener.local_addr().unwrap();
    drop(b_listener);
    let mut opts =
        ProxyOptions::new("127.0.0.1:0", vec![up(&a, 1), Upstream { url: format!("ws://{b_addr}"), weight: 1 }]);
    opts.check_interval = Some(std::time::Duration::from_millis(50));
    let p = proxy(opts).unwrap();
    let url = format!("ws://{}/", p.local_addr());
    let u = url.clone();
    let tags = within("connections while B is down", move || {
        (0..10)
            .map(|_| {
                let (mut ws, _) = connect(&u, None).unwrap();
                let t = first_tag(&mut ws);
                close(ws);
                t
            })
            .collect::<Vec<_>>()
    });
    assert!(tags.iter().all(|t| t == "tag:A"), "{tags:?}");
    // Bring B up on its port; the checker finds it and B gets traffic again.
    let (tx, _rx) = unbounded();
    let b = Listener::bind_with_config(b_addr, Config::default())
        .unwrap()
        .spawn(move |server| {
            server.set_callback_ws(Box::new(Tagger { tag: "B", sender: None, events: tx.clone() }));
        })
        .unwrap();
    let saw_b = within("B to come back", move || loop {
        let (mut ws, _) = connect(&url, None).unwrap();
        let t = first_tag(&mut ws);
        close(ws);
        if t == "tag:B" {
            return true;
        }
    });
    assert!(saw_b);
    p.shutdown();
    b.shutdown();
}

/// A `wss://` upstream with a self-signed certificate: connections and
/// health checks both dial it over TLS, trusting the CA given in
/// `upstream_tls` (the built-in roots would fail before any HTTP).
#[test]
fn a_wss_upstream_is_checked_and_proxied_over_tls_trusting_the_given_ca() {
    init_log();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("syncws-proxy-lib-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (tx, events) = unbounded();
    let upstream = Listener::bind_with_config("127.0.0.1:0", Config::default())
        .unwrap()
        .tls(syncws::tls::load_server_config(&cert, &key).unwrap())
        .spawn(move |server| server.set_callback_ws(Box::new(Tagger { tag: "T", sender: None, events: tx.clone() })))
        .unwrap();
    let url = format!("wss://localhost:{}/base", upstream.local_addr().port());
    let mut opts = ProxyOptions::new("127.0.0.1:0", vec![Upstream { url, weight: 1 }]);
    opts.check_interval = Some(std::time::Duration::from_millis(50));
    opts.upstream_tls = Some(syncws_cli::client::tls_config_trusting(&cert).unwrap());
    let p = proxy(opts).unwrap();

    // Nothing else connects yet: the first request is the health check's,
    // at the upstream's own path, and it got through TLS.
    assert_eq!(recv(&events, "a health check over TLS"), "request /base xff -");

    let url = format!("ws://{}/chat", p.local_addr());
    let (tag, echoed) = within("a connection through the proxy", move || {
        let (mut ws, _) = connect(&url, None).unwrap();
        let tag = first_tag(&mut ws);
        ws.send(OwnedMessage::Text("over tls".into())).unwrap();
        let echoed = ws.read().unwrap();
        close(ws);
        (tag, echoed)
    });
    assert_eq!((tag.as_str(), echoed), ("tag:T", OwnedMessage::Text("over tls".into())));
    // Among further health checks, the client's request at its joined path.
    while recv(&events, "the proxied request") != "request /base/chat xff -" {}
    p.shutdown();
    upstream.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `ws+unix://` upstream: the proxy connects to its socket, and the
/// client's path is joined to the URL's request path.
#[cfg(unix)]
#[test]
fn a_ws_unix_upstream_is_reached_over_its_socket() {
    init_log();
    let dir = std::env::temp_dir().join(format!("syncws-proxy-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("up.sock");
    let _ = std::fs::remove_file(&sock);
    let (tx, events) = unbounded();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let upstream = syncws::serve_unix(listener, Config::default(), move |server| {
        server.set_callback_ws(Box::new(Tagger { tag: "U", sender: None, events: tx.clone() }))
    })
    .unwrap();
    let spec = format!("ws+unix://{}:/base", sock.display());
    let p = proxy(ProxyOptions::new("127.0.0.1:0", vec![Upstream::parse(&spec).unwrap()])).unwrap();
    let url = format!("ws://{}/chat", p.local_addr());
    let (tag, echoed) = within("a connection to a ws+unix upstream", move || {
        let (mut ws, _) = connect(&url, None).unwrap();
        let tag = first_tag(&mut ws);
        ws.send(OwnedMessage::Text("over a unix socket".into())).unwrap();
        let echoed = ws.read().unwrap();
        close(ws);
        (tag, echoed)
    });
    assert_eq!((tag.as_str(), echoed), ("tag:U", OwnedMessage::Text("over a unix socket".into())));
    assert_eq!(recv(&events, "the request at the upstream"), "request /base/chat xff -");
    p.shutdown();
    upstream.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An upstream that accepts one WebSocket upgrade, then reads nothing until
/// `go` says so; reports whether the proxy ended the connection (EOF)
/// within `limit` after that.
fn stalled_upstream(go: Receiver<()>, limit: std::time::Duration) -> (std::net::SocketAddr, thread::JoinHandle<bool>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut key = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("sec-websocket-key") {
                    key = value.trim().to_owned();
                }
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let accept = syncws::handshake::accept_key(&key);
        let mut out = &stream;
        write!(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").unwrap();
        go.recv_timeout(WAIT).unwrap();
        let deadline = std::time::Instant::now() + limit;
        stream.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        while std::time::Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    });
    (addr, upstream)
}

#[test]
fn an_upstream_that_takes_no_close_is_ended_when_the_client_goes() {
    use std::time::Duration;
    init_log();
    let (go, wait) = unbounded();
    let (upstream_addr, upstream) = stalled_upstream(wait, Duration::from_secs(20));
    let mut opts = ProxyOptions::new("127.0.0.1:0", vec![Upstream { url: format!("ws://{upstream_addr}"), weight: 1 }]);
    // One message in flight per direction; the upstream's writer may block
    // for a minute; no keepalive or idle timeout ends it meanwhile: only
    // the client's going away can.
    opts.queue = 1;
    opts.config = opts
        .config
        .clone()
        .close_timeout(Duration::from_secs(1))
        .write_timeout(Duration::from_secs(60))
        .idle_timeout(None)
        .ping_interval(None);
    let p = proxy(opts).unwrap();
    let (mut ws, _) = connect(&format!("ws://{}/", p.local_addr()), None).unwrap();
    // 8 MiB fills the socket buffers to the stalled upstream: its writer
    // blocks on it. The next message waits in the queue, which is then full.
    ws.send(OwnedMessage::Binary(vec![7; 8 << 20])).unwrap();
    ws.send(OwnedMessage::Text("queued".into())).unwrap();
    thread::sleep(Duration::from_secs(1));
    // The client goes away without a word.
    drop(ws);
    // Past the proxy's close timeout, the upstream starts reading again:
    // whatever was sent, then the end of the connection.
    thread::sleep(Duration::from_secs(3));
    go.send(()).unwrap();
    assert!(upstream.join().unwrap(), "the upstream connection outlived the client's");
    p.shutdown();
}

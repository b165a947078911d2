//! TLS (feature `tls`): wss:// echo both ways, concurrent senders, HTTP over
//! TLS on the WebSocket port, untrusted certificates, silent and plaintext
//! clients, shutdown of a blocked writer, and interop with rustls' own
//! stream type carrying tungstenite. Loopback only; certificates are made
//! at test time with rcgen.
#![cfg(feature = "tls")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::unbounded;
use support::*;
use syncws::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use syncws::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use syncws::{
    Client, Config, Error, HttpTrait, Listener, OwnedMessage, Request, Response, Result, Running, Sender, WsHandshake,
    WsOption, WsTrait,
};

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key.
struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity() -> Identity {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into();
    Identity { cert: made.cert.der().clone(), key }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(id: &Identity) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .unwrap();
    Arc::new(config)
}

/// A client config that trusts only `id`'s certificate.
fn client_config(id: &Identity) -> Arc<ClientConfig> {
    client_config_for(id, rustls::DEFAULT_VERSIONS)
}

fn client_config_for(id: &Identity, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(id.cert.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS listener on 127.0.0.1:0 serving `setup`.
fn tls_server<F>(id: &Identity, config: Config, setup: F) -> Running
where
    F: Fn(&mut syncws::Server) + Send + Sync + 'static,
{
    init_log();
    let listener = Listener::bind_with_config("127.0.0.1:0", config).unwrap().tls(server_config(id));
    listener.spawn(setup).unwrap()
}

fn tls_echo_server(id: &Identity, config: Config) -> Running {
    tls_server(id, config, |server| server.set_callback_ws(Box::new(Echo(None))))
}

fn wss_client(addr: SocketAddr, id: &Identity) -> Result<Client> {
    Client::builder().url(&format!("wss://127.0.0.1:{}/echo", addr.port()))?.tls_config(client_config(id)).connect()
}

/// Asserts a fresh wss:// client gets an echo.
fn still_serves_tls(addr: SocketAddr, id: &Identity) {
    let mut client = wss_client(addr, id).expect("a fresh client is served");
    client.send(OwnedMessage::Text("still here?".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("still here?".into()));
}

#[test]
fn echo_over_wss_small_and_multi_mib_messages() {
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    let mut client = wss_client(running.local_addr(), &id).unwrap();
    client.send(OwnedMessage::Text("hello over tls".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("hello over tls".into()));
    for (i, len) in [0, 1, 125, 16 << 10, (16 << 10) + 1, 100_000, 3 << 20, (5 << 20) + 7].into_iter().enumerate() {
        let data = bytes(len, i as u64);
        client.send(OwnedMessage::Binary(data.clone())).unwrap();
        match client.read().unwrap() {
            OwnedMessage::Binary(got) => assert!(got == data, "binary of {len} bytes came back different"),
            other => panic!("{other:?}"),
        }
    }
    let text: String = (0..(2 << 20)).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    client.send(OwnedMessage::Text(text.clone())).unwrap();
    assert!(client.read().unwrap() == OwnedMessage::Text(text));
    client.close(syncws::CloseCode::NORMAL, "done").unwrap();
    assert!(matches!(client.read().unwrap(), OwnedMessage::Close(_)));
    assert!(client.read().unwrap_err().is_closed());
}

#[test]
fn echo_over_tls_1_2() {
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    let url = format!("wss://localhost:{}/", running.local_addr().port());
    let tls = client_config_for(&id, &[&rustls::version::TLS12]);
    let mut client = Client::builder().url(&url).unwrap().tls_config(tls).connect().unwrap();
    for (i, len) in [3, 40_000, 1 << 20].into_iter().enumerate() {
        let data = bytes(len, 30 + i as u64);
        client.send(OwnedMessage::Binary(data.clone())).unwrap();
        assert!(client.read().unwrap() == OwnedMessage::Binary(data), "{len} bytes");
    }
}

/// On open, starts a thread that sends `count` messages through a clone
/// of the sender, while the connection thread echoes what arrives.
struct PushAndEcho {
    sender: Option<Sender>,
    count: usize,
}

impl WsTrait for PushAndEcho {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let pusher = shake.sender.clone();
        let count = self.count;
        thread::spawn(move || {
            for i in 0..count {
                if pusher.send(OwnedMessage::Binary(tagged(b's', i))).is_err() {
                    return;
                }
            }
        });
        self.sender = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        self.sender.as_ref().expect("opened").send(msg)
    }
}

/// Message `i` of the sender named `who`: its tag, its number, and a body
/// whose size varies so that records of every size are made.
fn tagged(who: u8, i: usize) -> Vec<u8> {
    let len = [10, 3000, 20_000, 70_000][i % 4];
    let mut data = vec![who];
    data.extend_from_slice(&(i as u32).to_be_bytes());
    data.extend(bytes(len, i as u64));
    data
}

#[test]
fn many_messages_from_another_thread_while_the_connection_thread_sends() {
    const N: usize = 300;
    let id = identity();
    // A full queue makes the pushing thread wait (never drop) however slow
    // the machine is.
    let config = Config::default().queue_capacity(64).queue_policy(syncws::QueuePolicy::Block(WAIT * 3));
    let running = tls_server(&id, config, |server| {
        server.set_callback_ws(Box::new(PushAndEcho { sender: None, count: N }));
    });
    let client = wss_client(running.local_addr(), &id).unwrap();
    let (mut reader, writer) = client.into_websocket().unwrap().split();
    // The client too sends from another thread while this one reads.
    let sending = thread::spawn(move || {
        for i in 0..N {
            writer.send(OwnedMessage::Binary(tagged(b'c', i))).unwrap();
        }
    });
    let mut next = [0usize; 2];
    while next != [N, N] {
        let data = match reader.read().unwrap() {
            OwnedMessage::Binary(data) => data,
            other => panic!("{other:?}"),
        };
        let who = usize::from(data[0] == b'c');
        let i = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        assert_eq!(i, next[who], "out of order from {}", char::from(data[0]));
        assert!(data == tagged(data[0], i), "message {i} from {} corrupted", char::from(data[0]));
        next[who] += 1;
    }
    sending.join().unwrap();
}

struct Hello;

impl HttpTrait for Hello {
    fn operate(&mut self, req: &mut Request) -> Result<Response> {
        Ok(Response::text(200, &format!("hello from {}", req.path)))
    }
}

#[test]
fn plain_http_over_tls_on_the_websocket_port() {
    let id = identity();
    let running = tls_server(&id, Config::default(), |server| {
        server.set_callback_ws(Box::new(Echo(None)));
        server.set_callback_http(Box::new(Hello));
    });
    let addr = running.local_addr();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let session =
        rustls::ClientConnection::new(client_config(&id), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(session, tcp);
    tls.write_all(b"GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    // Ends cleanly only if the server sends close_notify before closing.
    tls.read_to_end(&mut response).expect("response, then close_notify");
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from /page"), "{response}");
    still_serves_tls(addr, &id);
}

#[test]
fn a_client_trusting_another_ca_fails_clearly() {
    let id = identity();
    let other = identity();
    let running = tls_echo_server(&id, Config::default());
    let err = wss_client(running.local_addr(), &other).unwrap_err();
    assert!(
        matches!(syncws::tls::rustls_error(&err), Some(rustls::Error::InvalidCertificate(_))),
        "not a certificate error: {err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    still_serves_tls(running.local_addr(), &id);
}

#[test]
fn the_default_roots_do_not_trust_a_self_signed_certificate() {
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    let url = format!("wss://localhost:{}/", running.local_addr().port());
    // `localhost` may resolve to ::1 first, where nothing listens: the
    // client then tries 127.0.0.1.
    let err = Client::connect(&url).unwrap_err();
    assert!(
        matches!(syncws::tls::rustls_error(&err), Some(rustls::Error::InvalidCertificate(_))),
        "not a certificate error: {err:?}"
    );
}

/// Reads until the server ends the connection; true if it did (EOF or
/// reset) before the watchdog.
fn dropped_by_server(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A connection that sent the first half of a real ClientHello, then
/// nothing.
fn stalled_handshake(addr: SocketAddr, id: &Identity) -> TcpStream {
    let mut session =
        rustls::ClientConnection::new(client_config(id), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    s
}

#[test]
fn silent_and_stalled_handshakes_are_dropped_after_the_handshake_timeout() {
    let id = identity();
    let config = Config::default().handshake_timeout(Duration::from_millis(500));
    let running = tls_echo_server(&id, config);
    let addr = running.local_addr();

    let silent = TcpStream::connect(addr).unwrap();
    assert!(dropped_by_server(silent), "a client that sends nothing was not dropped");

    let stalled = stalled_handshake(addr, &id);
    assert!(dropped_by_server(stalled), "a client that stalls mid-handshake was not dropped");

    still_serves_tls(addr, &id);
}

/// Handshakes share a few threads for their crypto. Many at once all
/// complete, and peers stalled half-way through their ClientHello hold
/// none of those threads up.
#[test]
fn many_handshakes_at_once_complete_while_others_stall() {
    let id = Arc::new(identity());
    let running = tls_echo_server(&id, Config::default());
    let addr = running.local_addr();
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stalled_handshake(addr, &id));
    }
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let id = Arc::clone(&id);
            thread::spawn(move || {
                let mut client = wss_client(addr, &id).expect("handshake");
                let text = format!("client {i}");
                client.send(OwnedMessage::Text(text.clone())).unwrap();
                assert_eq!(client.read().unwrap(), OwnedMessage::Text(text));
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every client is served");
    }
    drop(stalled);
}

#[test]
fn a_plaintext_client_on_the_tls_port_fails_cleanly() {
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    let addr = running.local_addr();
    match Client::connect(&format!("ws://{addr}/")) {
        Err(Error::Handshake { status: 400, response: Some(resp), .. }) => {
            assert!(String::from_utf8_lossy(&resp.body).contains("TLS"), "{:?}", resp.body);
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    // Something that is neither HTTP nor TLS.
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.write_all(&[0xff; 64]).unwrap();
    assert!(dropped_by_server(junk));
    still_serves_tls(addr, &id);
}

#[test]
fn a_wss_url_over_a_plain_stream_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let err = Client::builder().url("wss://127.0.0.1/").unwrap().connect_on(tcp).unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err:?}");
}

/// Pushes 1 MiB messages from another thread to a client that never reads.
struct Flood;

impl WsTrait for Flood {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        thread::spawn(move || {
            let big = vec![7u8; 1 << 20];
            while shake.sender.send(OwnedMessage::Binary(big.clone())).is_ok() {}
        });
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

#[test]
fn shutdown_cuts_a_tls_connection_whose_writer_is_blocked() {
    let id = identity();
    // Only the cut can end the blocked write: its own timeout is far off.
    let config = Config::default().write_timeout(Duration::from_secs(600)).close_timeout(Duration::from_millis(300));
    let running = tls_server(&id, config, |server| server.set_callback_ws(Box::new(Flood)));
    let client = wss_client(running.local_addr(), &id).unwrap();
    let (done_tx, done_rx) = unbounded();
    thread::spawn(move || {
        running.shutdown();
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(WAIT * 3).expect("shutdown did not finish");
    drop(client);
}

/// A tungstenite echo server whose TLS is rustls' own `StreamOwned`.
fn tungstenite_tls_echo_server(id: &Identity) -> SocketAddr {
    let config = server_config(id);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else { return };
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let session = rustls::ServerConnection::new(config).unwrap();
        if let Ok(ws) = tungstenite::accept(rustls::StreamOwned::new(session, tcp)) {
            tung_echo(ws);
        }
    });
    addr
}

#[test]
fn interop_syncws_client_with_a_tungstenite_server_over_rustls() {
    init_log();
    let id = identity();
    let addr = tungstenite_tls_echo_server(&id);
    let mut client = wss_client(addr, &id).unwrap();
    for (i, len) in [5, 20_000, 2 << 20].into_iter().enumerate() {
        let data = bytes(len, 50 + i as u64);
        client.send(OwnedMessage::Binary(data.clone())).unwrap();
        assert!(client.read().unwrap() == OwnedMessage::Binary(data), "{len} bytes");
    }
}

#[test]
fn interop_tungstenite_client_over_rustls_with_a_syncws_server() {
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    let tcp = TcpStream::connect(running.local_addr()).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let session =
        rustls::ClientConnection::new(client_config(&id), ServerName::try_from("localhost").unwrap()).unwrap();
    let url = format!("wss://localhost:{}/", running.local_addr().port());
    let (mut ws, _) = tungstenite::client(url.as_str(), rustls::StreamOwned::new(session, tcp)).unwrap();
    for (i, len) in [5, 20_000, 2 << 20, 100, 70_000].into_iter().enumerate() {
        if i >= 3 {
            // A TLS 1.3 key update asking for one back: the server's
            // reading side takes the new keys and queues its own update,
            // which must be written without disturbing the echoes.
            ws.get_mut().conn.refresh_traffic_keys().unwrap();
        }
        let data = bytes(len, 70 + i as u64);
        ws.send(tungstenite::Message::binary(data.clone())).unwrap();
        loop {
            match ws.read().unwrap() {
                tungstenite::Message::Binary(got) => {
                    assert!(got[..] == data[..], "{len} bytes");
                    break;
                }
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean end: {e}"),
        }
    }
}

/// A self-signed certificate marked as a CA (basicConstraints CA:TRUE),
/// as `openssl req -x509` makes by default.
fn ca_identity() -> Identity {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Identity { cert: cert.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()).into() }
}

#[test]
fn a_ca_certificate_as_the_servers_says_what_to_do() {
    let id = ca_identity();
    let running = tls_echo_server(&id, Config::default());
    let err = wss_client(running.local_addr(), &id).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("tls: the server's certificate is a CA certificate (basicConstraints CA:TRUE"), "{msg}");
    assert!(msg.contains("-addext basicConstraints=critical,CA:FALSE"), "{msg}");
    assert!(msg.contains("--tls-self-signed") && msg.contains("--tls-fingerprint"), "{msg}");
    // The rustls error is still there for code that matches on it.
    assert!(matches!(syncws::tls::rustls_error(&err), Some(rustls::Error::InvalidCertificate(_))), "{err:?}");
}

#[test]
fn a_regenerated_self_signed_certificate_says_what_to_do() {
    // Two certificates of the same name (rcgen's default subject), as a
    // server's certificate made again since the client copied it.
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    let err = wss_client(running.local_addr(), &identity()).unwrap_err().to_string();
    assert!(err.contains("made again (same name, new key)"), "{err}");
}

#[test]
fn an_unknown_issuer_and_a_wrong_name_say_what_to_do() {
    let id = identity();
    let running = tls_echo_server(&id, Config::default());
    // Trusting a certificate of another name: the server's issuer is
    // unknown.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "another");
    let key = rcgen::KeyPair::generate().unwrap();
    let other = Identity {
        cert: params.self_signed(&key).unwrap().der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    };
    let err = wss_client(running.local_addr(), &other).unwrap_err().to_string();
    assert!(
        err.contains("not signed by a certificate authority this client trusts") && err.contains("--tls-ca"),
        "{err}"
    );
    // A certificate for another name than the URL's.
    let made = rcgen::generate_simple_self_signed(vec!["example.test".to_owned()]).unwrap();
    let named = Identity {
        cert: made.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into(),
    };
    let running = tls_echo_server(&named, Config::default());
    let err = wss_client(running.local_addr(), &named).unwrap_err().to_string();
    assert!(err.contains("not valid for the host in the URL") && err.contains("subjectAltName"), "{err}");
}

#[test]
fn a_wss_client_on_a_plain_port_is_told_so() {
    init_log();
    let running =
        Listener::bind("127.0.0.1:0").unwrap().spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
    let id = identity();
    let err = wss_client(running.local_addr(), &id).unwrap_err().to_string();
    assert!(err.contains("does not speak TLS") && err.contains("ws://"), "{err}");
}

/// Subscribes every connection to one hub topic.
struct HubMember(syncws::Hub);

impl syncws::WsTrait for HubMember {
    fn on_open(&mut self, shake: syncws::WsHandshake) -> syncws::Result<Option<syncws::WsOption>> {
        self.0.subscribe(&shake.sender, "news");
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> syncws::Result<()> {
        Ok(())
    }
}

#[test]
fn a_hub_publishes_the_same_frame_over_tls() {
    let id = identity();
    let hub = syncws::Hub::new();
    let h = hub.clone();
    let running =
        tls_server(&id, Config::default(), move |server| server.set_callback_ws(Box::new(HubMember(h.clone()))));
    let mut clients: Vec<Client> = (0..3).map(|_| wss_client(running.local_addr(), &id).unwrap()).collect();
    let deadline = std::time::Instant::now() + WAIT;
    while hub.subscribers("news") < 3 {
        assert!(std::time::Instant::now() < deadline, "subscribers did not arrive");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let large = bytes(100_000, 7);
    for msg in [syncws::Prepared::text("small"), syncws::Prepared::binary(&large)] {
        assert_eq!(hub.publish("news", &msg).delivered, 3);
    }
    for c in &mut clients {
        assert_eq!(c.read().unwrap(), OwnedMessage::Text("small".into()));
        assert!(c.read().unwrap() == OwnedMessage::Binary(large.clone()));
    }
}

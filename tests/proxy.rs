//! The client through proxies: real ones started by the tests on loopback
//! (Debian's tinyproxy for HTTP `CONNECT`, microsocks for SOCKS5), with
//! and without credentials, `ws://` and `wss://` through each; and scripted
//! proxies that misbehave (a 407, replies that break the protocol, a proxy
//! that hangs up, one that says nothing, one that drips), each with the
//! exact error it gives. Also the connect deadline across the phases, and
//! the environment's proxy variables.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::proxies::{microsocks, tinyproxy};
use support::*;
use syncws::proxy::ProxyEnv;
use syncws::{Client, ClientBuilder, Config, Error, OwnedMessage, Phase, ProxyError};

const CREDS: (&str, &str) = ("alice", "s3cret");

/// Sends a text through `client` and expects it back.
fn echoes(mut client: Client, text: &str) {
    client.send(OwnedMessage::Text(text.into())).expect("send");
    assert_eq!(client.read().expect("read"), OwnedMessage::Text(text.into()));
    client.close(syncws::CloseCode::NORMAL, "").expect("close");
}

fn builder(url: &str) -> ClientBuilder {
    init_log();
    Client::builder().url(url).expect("url").connect_timeout(WAIT)
}

/// The proxy error of a failed connect.
fn proxy_error(result: syncws::Result<Client>) -> ProxyError {
    match result {
        Err(Error::Proxy(e)) => e,
        other => panic!("expected a proxy error, got {other:?}"),
    }
}

/// A scripted proxy: accepts one connection and runs `script` on it.
fn scripted(script: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(WAIT)).unwrap();
            script(stream);
        }
    });
    addr
}

/// Reads an HTTP head, tolerating a peer that stops.
fn read_request_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read from the client");
    buf
}

// ---- tinyproxy (HTTP CONNECT) ----

#[test]
fn ws_through_tinyproxy_with_and_without_credentials() {
    let server = echo_server(Config::default());
    let port = server.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/echo");

    let open = tinyproxy(None, &[port]);
    echoes(builder(&url).proxy(&open.url("http", None)).unwrap().connect().expect("through tinyproxy"), "a");

    let guarded = tinyproxy(Some(CREDS), &[port]);
    let client = builder(&url).proxy(&guarded.url("http", Some(CREDS))).unwrap().connect();
    echoes(client.expect("through tinyproxy with credentials"), "b");
    // The same request without the scheme: http:// is the default.
    let bare = format!("{}:{}@{}", CREDS.0, CREDS.1, guarded.addr);
    echoes(builder(&url).proxy(&bare).unwrap().connect().expect("scheme-less proxy url"), "c");
}

#[test]
fn tinyproxy_refusals() {
    let server = echo_server(Config::default());
    let port = server.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let guarded = tinyproxy(Some(CREDS), &[port]);

    let none = builder(&url).proxy(&guarded.url("http", None)).unwrap().connect();
    assert_eq!(proxy_error(none), ProxyError::AuthRequired);
    let wrong = builder(&url).proxy(&guarded.url("http", Some(("alice", "wrong")))).unwrap().connect();
    assert_eq!(proxy_error(wrong), ProxyError::AuthFailed);

    // A port its ConnectPort lines do not allow.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let not_allowed = format!("ws://127.0.0.1:{}/", other.local_addr().unwrap().port());
    match proxy_error(builder(&not_allowed).proxy(&guarded.url("http", Some(CREDS))).unwrap().connect()) {
        ProxyError::Refused { status: 403, reason } => assert_eq!(reason, "Access violation"),
        other => panic!("{other:?}"),
    }
}

// ---- microsocks (SOCKS5) ----

#[test]
fn ws_through_microsocks_socks5_and_socks5h_with_and_without_credentials() {
    let server = echo_server(Config::default());
    let port = server.local_addr().port();
    let open = microsocks(None);
    let guarded = microsocks(Some(CREDS));
    // By address, and by the name `localhost`: resolved here for socks5,
    // by the proxy for socks5h.
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("ws://{host}:{port}/echo");
        for scheme in ["socks5", "socks5h"] {
            let what = format!("{scheme} to {host}");
            let client = builder(&url).proxy(&open.url(scheme, None)).unwrap().connect();
            echoes(client.unwrap_or_else(|e| panic!("{what}: {e}")), &what);
            let client = builder(&url).proxy(&guarded.url(scheme, Some(CREDS))).unwrap().connect();
            echoes(client.unwrap_or_else(|e| panic!("{what} with credentials: {e}")), &what);
        }
    }
}

#[test]
fn microsocks_refusals() {
    let server = echo_server(Config::default());
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    let guarded = microsocks(Some(CREDS));
    let none = builder(&url).proxy(&guarded.url("socks5", None)).unwrap().connect();
    assert_eq!(proxy_error(none), ProxyError::AuthRequired);
    let wrong = builder(&url).proxy(&guarded.url("socks5h", Some(("alice", "wrong")))).unwrap().connect();
    assert_eq!(proxy_error(wrong), ProxyError::AuthFailed);
    // A destination where nothing listens: reply 5, connection refused.
    let dead = format!("ws://{}/", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
    let refused = builder(&dead).proxy(&guarded.url("socks5", Some(CREDS))).unwrap().connect();
    assert_eq!(proxy_error(refused), ProxyError::SocksRefused { reply: 5 });
}

// ---- wss:// through both: TLS end to end ----

#[cfg(feature = "tls")]
mod wss {
    use std::net::Shutdown;
    use std::sync::{Arc, Mutex};

    use syncws::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    use syncws::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
    use syncws::{Listener, Running};

    use super::*;

    /// An echo server over TLS for `localhost`, and a client config that
    /// trusts its certificate only.
    pub fn tls_echo() -> (Running, Arc<ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        let cert: CertificateDer<'static> = made.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = Listener::bind_with_config("127.0.0.1:0", Config::default()).unwrap().tls(Arc::new(server));
        let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
        (running, Arc::new(client))
    }

    #[test]
    fn wss_through_tinyproxy_and_microsocks() {
        let (server, tls) = tls_echo();
        let port = server.local_addr().port();
        // The certificate names `localhost`: the client checks it against
        // the URL's host, through whichever tunnel.
        let url = format!("wss://localhost:{port}/echo");
        let http = tinyproxy(Some(CREDS), &[port]);
        let client = builder(&url).proxy(&http.url("http", Some(CREDS))).unwrap().tls_config(Arc::clone(&tls));
        echoes(client.connect().expect("wss through tinyproxy"), "over tls via http");
        let http_open = tinyproxy(None, &[port]);
        let client = builder(&url).proxy(&http_open.url("http", None)).unwrap().tls_config(Arc::clone(&tls));
        echoes(client.connect().expect("wss through tinyproxy without credentials"), "over tls via http");
        let socks = microsocks(Some(CREDS));
        for scheme in ["socks5", "socks5h"] {
            let client = builder(&url).proxy(&socks.url(scheme, Some(CREDS))).unwrap().tls_config(Arc::clone(&tls));
            echoes(client.connect().unwrap_or_else(|e| panic!("wss through {scheme}: {e}")), scheme);
        }
        let socks_open = microsocks(None);
        let client = builder(&url).proxy(&socks_open.url("socks5h", None)).unwrap().tls_config(Arc::clone(&tls));
        echoes(client.connect().expect("wss through socks5h without credentials"), "open socks");
        // Not trusted: the proxy changes nothing about the check.
        let untrusted = builder(&url).proxy(&socks.url("socks5h", Some(CREDS))).unwrap().connect();
        assert!(matches!(untrusted, Err(Error::Tls(_))), "{untrusted:?}");
    }

    /// A `CONNECT` proxy that relays and keeps every byte the client sent
    /// through the tunnel.
    fn recording_relay() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let addr = scripted(move |mut client| {
            let head = read_request_head(&mut client);
            let target = head.split_whitespace().nth(1).expect("CONNECT target").to_owned();
            let mut server = TcpStream::connect(&target).expect("connect to the target");
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
            let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Write);
            });
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = client.read(&mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = server.shutdown(Shutdown::Write);
        });
        (addr, kept)
    }

    #[test]
    fn wss_through_a_proxy_is_tls_from_the_first_byte() {
        let (server, tls) = tls_echo();
        let url = format!("wss://localhost:{}/secret-path", server.local_addr().port());
        let (relay, seen) = recording_relay();
        let mut client = builder(&url).proxy(&format!("http://{relay}")).unwrap().tls_config(tls).connect().unwrap();
        client.send(OwnedMessage::Text("secret-payload".into())).unwrap();
        assert_eq!(client.read().unwrap(), OwnedMessage::Text("secret-payload".into()));
        let seen = seen.lock().unwrap().clone();
        // A TLS handshake record (ClientHello), and nothing in clear.
        assert_eq!(seen.get(..2), Some([0x16, 0x03].as_slice()), "the tunnel starts {:?}", &seen[..seen.len().min(8)]);
        let text = String::from_utf8_lossy(&seen);
        for clear in ["secret-path", "Upgrade", "websocket"] {
            assert!(!text.contains(clear), "{clear:?} crossed the proxy in clear");
        }
    }

    #[test]
    fn a_server_silent_in_the_tls_handshake_meets_the_connect_deadline() {
        // Accepts TCP, reads the ClientHello, never answers it.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in silent.incoming().take(2) {
                let Ok(mut stream) = stream else { continue };
                thread::spawn(move || {
                    let _ = std::io::copy(&mut stream, &mut std::io::sink());
                });
            }
        });
        let url = format!("wss://localhost:{port}/");
        let (_, tls) = tls_echo();
        // Directly, and through a real proxy: the deadline runs on
        // through the tunnel into TLS.
        let direct = builder(&url).tls_config(Arc::clone(&tls)).connect_timeout(Duration::from_secs(1)).connect();
        assert!(matches!(direct, Err(Error::Timeout { phase: Phase::Handshake })), "{direct:?}");
        let socks = microsocks(None);
        let proxied = builder(&url)
            .proxy(&socks.url("socks5h", None))
            .unwrap()
            .tls_config(tls)
            .connect_timeout(Duration::from_secs(1))
            .connect();
        assert!(matches!(proxied, Err(Error::Timeout { phase: Phase::Handshake })), "{proxied:?}");
    }
}

// ---- scripted proxies that misbehave ----

#[test]
fn http_proxy_answering_407() {
    let proxy = scripted(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\
              Content-Length: 0\r\n\r\n",
        );
    });
    let result = builder("ws://example.invalid/").proxy(&format!("http://{proxy}")).unwrap().connect();
    let error = proxy_error(result);
    assert_eq!(error, ProxyError::AuthRequired);
    assert_eq!(
        Error::Proxy(error).to_string(),
        "proxy: the proxy requires authentication; give user:password@ in the proxy url"
    );
}

#[test]
fn http_proxy_sending_the_request_line_the_client_expects() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let proxy = scripted(move |mut s| {
        let _ = tx.send(read_request_head(&mut s));
        let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
    });
    let result = builder("ws://[::1]:9/").proxy(&format!("http://u%3A1:p%40ss@{proxy}")).unwrap().connect();
    assert_eq!(proxy_error(result), ProxyError::Refused { status: 502, reason: "Bad Gateway".into() });
    let head = rx.recv_timeout(WAIT).unwrap();
    assert!(head.starts_with("CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\n"), "{head}");
    // "u:1:p@ss" in base64.
    assert!(head.contains("\r\nProxy-Authorization: Basic dToxOnBAc3M=\r\n"), "{head}");
}

#[test]
fn http_proxy_that_is_not_http() {
    let proxy = scripted(|mut s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n");
        read_request_head(&mut s);
    });
    let result = builder("ws://example.invalid/").proxy(&format!("http://{proxy}")).unwrap().connect();
    assert_eq!(
        proxy_error(result),
        ProxyError::BadReply("not an HTTP answer (malformed response head: invalid HTTP version)".into())
    );
}

#[test]
fn http_proxy_that_hangs_up_or_lies_about_the_tunnel() {
    let proxy = scripted(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nVia: 1.1 sc");
    });
    let result = builder("ws://example.invalid/").proxy(&format!("http://{proxy}")).unwrap().connect();
    assert_eq!(proxy_error(result), ProxyError::Closed);

    // Bytes after its 200 that cannot come from the server (which speaks
    // only after the client).
    let proxy = scripted(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n");
        let _ = s.read(&mut [0; 1]);
    });
    let result = builder("ws://example.invalid/").proxy(&format!("http://{proxy}")).unwrap().connect();
    assert_eq!(
        proxy_error(result),
        ProxyError::BadReply("36 bytes came after its 2xx head, before the client sent any".into())
    );
}

#[test]
fn socks_proxy_with_the_wrong_version_in_its_reply() {
    let proxy = scripted(|mut s| {
        assert_eq!(read_n(&mut s, 3), [5, 1, 0]);
        s.write_all(&[5, 0]).unwrap();
        read_n(&mut s, 4 + 1 + 11 + 2);
        // A SOCKS4 "granted" instead of SOCKS5.
        let _ = s.write_all(&[0, 0x5a, 0, 80, 127, 0, 0, 1]);
    });
    let result = builder("ws://example.com/").proxy(&format!("socks5h://{proxy}")).unwrap().connect();
    assert_eq!(
        proxy_error(result),
        ProxyError::BadReply("version 0 in the reply to CONNECT, where 5 was expected".into())
    );
}

#[test]
fn socks_proxy_refusing_or_choosing_a_method_not_offered() {
    let proxy = scripted(|mut s| {
        read_n(&mut s, 3);
        s.write_all(&[5, 0]).unwrap();
        read_n(&mut s, 4 + 4 + 2);
        let _ = s.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    });
    let result = builder("ws://127.0.0.1:9/").proxy(&format!("socks5://{proxy}")).unwrap().connect();
    let error = proxy_error(result);
    assert_eq!(error, ProxyError::SocksRefused { reply: 2 });
    assert_eq!(
        Error::Proxy(error).to_string(),
        "proxy: the socks5 proxy refused to connect: connection not allowed by its rules (reply 2)"
    );

    let proxy = scripted(|mut s| {
        read_n(&mut s, 3);
        let _ = s.write_all(&[5, 1]); // GSSAPI
    });
    let result = builder("ws://127.0.0.1:9/").proxy(&format!("socks5://{proxy}")).unwrap().connect();
    assert_eq!(
        proxy_error(result),
        ProxyError::BadReply("it chose authentication method 1, which was not offered".into())
    );
}

/// Connects through `proxy` with a one-second deadline; returns the error
/// and how long it took.
fn within_one_second(proxy: String) -> (Error, Duration) {
    let start = Instant::now();
    let result = builder("ws://example.com/").proxy(&proxy).unwrap().connect_timeout(Duration::from_secs(1)).connect();
    let took = start.elapsed();
    (result.expect_err("a silent proxy cannot connect"), took)
}

#[test]
fn silent_proxies_time_out_in_the_proxy_phase() {
    for scheme in ["http", "socks5h"] {
        let proxy = scripted(|mut s| {
            // Reads what comes, answers nothing, until the client leaves.
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        });
        let (error, took) = within_one_second(format!("{scheme}://{proxy}"));
        assert!(matches!(error, Error::Timeout { phase: Phase::Proxy }), "{scheme}: {error:?}");
        assert_eq!(error.to_string(), "proxy deadline expired");
        assert!(took < Duration::from_secs(10), "{scheme}: took {took:?}");
    }
}

#[test]
fn a_proxy_dripping_its_answer_still_meets_the_deadline() {
    let proxy = scripted(|mut s| {
        read_request_head(&mut s);
        // A well-formed head, a byte every 50 ms, never reaching its end:
        // every read succeeds, only the deadline ends it.
        let head = b"HTTP/1.1 200 Connection established\r\nX-Drip: ";
        for &b in head.iter().chain(std::iter::repeat_n(&b'a', 400)) {
            if s.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let (error, took) = within_one_second(format!("http://{proxy}"));
    assert!(matches!(error, Error::Timeout { phase: Phase::Proxy }), "{error:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn the_deadline_goes_on_through_the_upgrade_after_the_proxy() {
    // The proxy answers at once; the "server" behind it never answers the
    // upgrade.
    let proxy = scripted(|mut s| {
        read_request_head(&mut s);
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    });
    let (error, took) = within_one_second(format!("http://{proxy}"));
    assert!(matches!(error, Error::Timeout { phase: Phase::Handshake }), "{error:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn an_unreachable_proxy_says_so() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let result = builder("ws://example.com/").proxy(&format!("http://{dead}")).unwrap().connect();
    match proxy_error(result) {
        ProxyError::Unreachable(why) => assert!(why.starts_with(&dead.to_string()), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ---- the environment ----

#[test]
fn proxy_env_picks_the_proxy_and_no_proxy_goes_direct() {
    let server = echo_server(Config::default());
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    let socks = microsocks(None);
    let socks_url = socks.url("socks5h", None);
    let dead = format!("http://{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());

    // all_proxy carries ws://; loopback is not exempt.
    let env = ProxyEnv::from_lookup(|name| (name == "ALL_PROXY").then(|| socks_url.clone()));
    echoes(builder(&url).proxy_env(env).connect().expect("through ALL_PROXY"), "env");
    // HTTP_PROXY in capitals is not read for ws:// (curl's rule): the
    // dead proxy is not used.
    let env = ProxyEnv::from_lookup(|name| (name == "HTTP_PROXY").then(|| dead.clone()));
    echoes(builder(&url).proxy_env(env).connect().expect("HTTP_PROXY ignored"), "direct");
    // NO_PROXY lists the address: direct, the dead proxy unused.
    let env = ProxyEnv::from_lookup(|name| match name {
        "http_proxy" => Some(dead.clone()),
        "no_proxy" => Some("example.com, 127.0.0.0/8".into()),
        _ => None,
    });
    echoes(builder(&url).proxy_env(env).connect().expect("no_proxy"), "direct");
    // Without NO_PROXY the dead proxy is used, and fails.
    let env = ProxyEnv::from_lookup(|name| (name == "http_proxy").then(|| dead.clone()));
    assert!(matches!(proxy_error(builder(&url).proxy_env(env).connect()), ProxyError::Unreachable(_)));
    // A value that is not a proxy URL is refused, naming the variable.
    let env = ProxyEnv::from_lookup(|name| (name == "all_proxy").then(|| "ftp://x".to_owned()));
    match builder(&url).proxy_env(env).connect() {
        Err(Error::Url(why)) => assert!(why.starts_with("environment variable all_proxy: "), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ---- the connect deadline without a proxy ----

#[test]
fn every_address_of_a_name_is_tried() {
    // `localhost` may resolve to ::1 and 127.0.0.1; the server listens on
    // 127.0.0.1 only, so whichever comes first, the client gets there.
    // Where the system's resolver gives 127.0.0.1 alone this proves less:
    // client::connect's unit tests give a name dead and live addresses of
    // both families, whatever the machine's resolver says.
    let server = echo_server(Config::default());
    let url = format!("ws://localhost:{}/", server.local_addr().port());
    echoes(builder(&url).connect().expect("localhost"), "either family");
}

#[test]
fn ipv6_servers_directly_and_through_socks5() {
    init_log();
    let listener = syncws::Listener::bind_with_config("[::1]:0", Config::default()).expect("bind [::1]");
    let server = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
    let url = format!("ws://[::1]:{}/", server.local_addr().port());
    echoes(builder(&url).connect().expect("direct to [::1]"), "v6");
    // The address goes to the proxy as a SOCKS5 IPv6 address (type 4).
    let socks = microsocks(None);
    echoes(builder(&url).proxy(&socks.url("socks5", None)).unwrap().connect().expect("socks5 to [::1]"), "v6");
}

#[test]
fn a_silent_server_times_out_in_the_handshake_phase() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let start = Instant::now();
    let result = builder(&url).connect_timeout(Duration::from_secs(1)).connect();
    assert!(matches!(result, Err(Error::Timeout { phase: Phase::Handshake })), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(listener);
}

//! `syncws client` and `syncws bridge tcp2ws` through proxies: `--proxy`,
//! the environment as curl reads it (on by default), `--no-proxy-env`,
//! and what a failing proxy prints. Real proxies (tinyproxy, microsocks)
//! started on loopback by the tests.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use support::proxies::{microsocks, tinyproxy};
use support::*;
use syncws::Config;
use syncws_cli::bridge::{tcp2ws, Tcp2WsOptions};
use syncws_cli::common::{ProxyFlags, Route};

const BIN: &str = env!("CARGO_BIN_EXE_syncws");

/// Runs `syncws client ARGS` with only the proxy variables of `env` set
/// (none inherited), two lines on stdin; returns (exit code, stdout,
/// stderr).
fn client(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args = args.iter().map(|a| a.to_string()).collect();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    run_client(args, env, b"one\ntwo\n".to_vec())
}

fn ws_echo() -> syncws::Running {
    init_log();
    syncws_cli::echo::spawn("127.0.0.1:0", Config::default()).expect("echo")
}

/// Asserts a clean run that echoed both lines.
fn echoed((code, out, err): (i32, String, String), what: &str) {
    assert_eq!(code, 0, "{what}: {err}");
    assert_eq!(out, "one\ntwo\n", "{what}: {err}");
}

#[test]
fn client_goes_through_the_proxy_of_its_flag() {
    let echo = ws_echo();
    let port = echo.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let http = tinyproxy(Some(("alice", "s3cret")), &[port]);
    let socks = microsocks(Some(("bob", "pw")));
    let via_http = http.url("http", Some(("alice", "s3cret")));
    echoed(client(&["--proxy", &via_http, &url], &[]), "--proxy http://");
    let via_socks = socks.url("socks5h", Some(("bob", "pw")));
    echoed(client(&["--proxy", &via_socks, &format!("ws://localhost:{port}/")], &[]), "--proxy socks5h://");
    // The flag wins over the environment, even with --no-proxy-env.
    let dead = format!("http://{}", dead_addr());
    echoed(client(&["--proxy", &via_http, "--no-proxy-env", &url], &[("all_proxy", &dead)]), "flag over env");

    // Wrong credentials: exit code 3, and the message says what failed.
    let wrong = http.url("http", Some(("alice", "nope")));
    let (code, _, err) = client(&["--proxy", &wrong, &url], &[]);
    assert_eq!(code, 3, "{err}");
    let through = format!("cannot connect to {url} through the proxy http://alice@{}: ", http.addr);
    assert!(err.contains(&through), "{err}");
    assert!(err.contains("proxy: the proxy refused the credentials"), "{err}");
}

#[test]
fn client_reads_the_environment_as_curl_does_unless_told_not_to() {
    let echo = ws_echo();
    let port = echo.local_addr().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let http = tinyproxy(Some(("alice", "s3cret")), &[port]);
    let good = http.url("http", Some(("alice", "s3cret")));
    let wrong = http.url("http", Some(("alice", "nope")));

    // all_proxy is used (the wrong credentials show it is), and works
    // with the right ones.
    let (code, _, err) = client(&[&url], &[("ALL_PROXY", &wrong)]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    echoed(client(&[&url], &[("all_proxy", &good)]), "all_proxy");
    echoed(client(&[&url], &[("http_proxy", &good)]), "http_proxy");
    // HTTP_PROXY in capitals is not read for ws://, as curl; https_proxy
    // is for wss:// only.
    echoed(client(&[&url], &[("HTTP_PROXY", &wrong), ("https_proxy", &wrong)]), "HTTP_PROXY ignored");
    // no_proxy, and --no-proxy-env.
    echoed(client(&[&url], &[("all_proxy", &wrong), ("NO_PROXY", "localhost,127.0.0.1")]), "NO_PROXY");
    echoed(client(&["--no-proxy-env", &url], &[("all_proxy", &wrong)]), "--no-proxy-env");
}

/// A `wss://` echo server whose certificate names `localhost`, and the
/// PEM file of that certificate for `--tls-ca`: (server, folder, cert).
fn wss_echo() -> (syncws::Running, std::path::PathBuf, String) {
    init_log();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("syncws-client-proxy-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let tls = syncws_cli::tls::from_files(&cert, &key).expect("tls files");
    let echo = syncws_cli::echo::spawn_with_tls("127.0.0.1:0", Config::default(), Some(tls.config)).expect("echo");
    (echo, dir, cert.to_str().unwrap().to_owned())
}

#[test]
fn client_wss_reads_https_proxy_and_all_proxy_as_curl_does() {
    let (echo, dir, cert) = wss_echo();
    let port = echo.local_addr().port();
    let url = format!("wss://localhost:{port}/");
    let wss = |env: &[(&str, &str)]| client(&["--tls-ca", &cert, &url], env);
    let http = tinyproxy(Some(("alice", "s3cret")), &[port]);
    let good = http.url("http", Some(("alice", "s3cret")));
    let wrong = http.url("http", Some(("alice", "nope")));

    // HTTPS_PROXY and https_proxy are read for wss:// (the wrong
    // credentials show the proxy was used), and TLS runs through them.
    for name in ["HTTPS_PROXY", "https_proxy"] {
        let (code, _, err) = wss(&[(name, &wrong)]);
        assert_eq!(code, 3, "{name}: {err}");
        assert!(err.contains(&format!("through the proxy http://alice@{}", http.addr)), "{name}: {err}");
        assert!(err.contains("refused the credentials"), "{name}: {err}");
        echoed(wss(&[(name, &good)]), name);
    }
    // The lowercase one wins; http_proxy is for ws:// only.
    echoed(wss(&[("https_proxy", &good), ("HTTPS_PROXY", &wrong)]), "https_proxy over HTTPS_PROXY");
    echoed(wss(&[("http_proxy", &wrong), ("HTTP_PROXY", &wrong)]), "http_proxy ignored for wss://");
    // all_proxy when no https_proxy is set, a SOCKS5 one here; the
    // scheme's own variable first.
    let socks = microsocks(None);
    let via_socks = socks.url("socks5h", None);
    echoed(wss(&[("ALL_PROXY", &via_socks)]), "ALL_PROXY");
    let (code, _, err) = wss(&[("all_proxy", &via_socks), ("HTTPS_PROXY", &wrong)]);
    assert_eq!(code, 3, "HTTPS_PROXY before all_proxy: {err}");
    // NO_PROXY by suffix and by `*`.
    echoed(wss(&[("HTTPS_PROXY", &wrong), ("no_proxy", "example.com,.localhost")]), "no_proxy .localhost");
    echoed(wss(&[("all_proxy", &wrong), ("NO_PROXY", "*")]), "NO_PROXY *");

    // Without --tls-ca: the system's roots, here SSL_CERT_FILE's, as for a
    // TLS-inspecting corporate proxy's CA; through the proxy too.
    let (code, _, err) = client(&[&url], &[]);
    assert_eq!(code, 3, "not trusted without SSL_CERT_FILE: {err}");
    echoed(client(&[&url], &[("SSL_CERT_FILE", &cert)]), "SSL_CERT_FILE");
    echoed(client(&[&url], &[("SSL_CERT_FILE", &cert), ("HTTPS_PROXY", &good)]), "SSL_CERT_FILE via HTTPS_PROXY");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_explains_proxy_failures() {
    let echo = ws_echo();
    let url = format!("ws://127.0.0.1:{}/", echo.local_addr().port());
    // A proxy that accepts and says nothing: the connect deadline.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("socks5://{}", silent.local_addr().unwrap());
    let (code, _, err) = client(&["--proxy", &silent_url, "--connect-timeout", "1s", &url], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("proxy deadline expired"), "{err}");
    drop(silent);
    // A proxy nobody runs.
    let (code, _, err) = client(&[&url], &[("all_proxy", &format!("http://{}", dead_addr()))]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("proxy: cannot reach the proxy: "), "{err}");
    // Unusable proxy URLs are usage errors, naming where they came from.
    let (code, _, err) = client(&["--proxy", "https://proxy.example", &url], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--proxy: bad url: proxy url: https:// proxies"), "{err}");
    let (code, _, err) = client(&[&url], &[("all_proxy", "ftp://user:hunter2@proxy.example")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("environment variable all_proxy: proxy url: unsupported scheme"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Sends `data` through a tcp2ws bridge and reads the echo back.
fn through_bridge(bridge: std::net::SocketAddr, data: &[u8]) -> Vec<u8> {
    let data = data.to_vec();
    within("bytes through tcp2ws", move || {
        let mut tcp = TcpStream::connect(bridge).unwrap();
        tcp.write_all(&data).unwrap();
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).unwrap();
        got
    })
}

#[test]
fn tcp2ws_through_http_and_socks5_proxies() {
    let echo = ws_echo();
    let port = echo.local_addr().port();
    let http = tinyproxy(None, &[port]);
    let socks = microsocks(Some(("bob", "pw")));
    for proxy in [http.url("http", None), socks.url("socks5h", Some(("bob", "pw")))] {
        let mut opts = Tcp2WsOptions::new("127.0.0.1:0", &format!("ws://localhost:{port}/"));
        let flags = ProxyFlags { proxy: Some(proxy.clone()), no_proxy_env: false };
        opts.route = Route::from_flags(&flags).unwrap();
        let bridge = tcp2ws(opts).unwrap();
        let data = random_bytes(300_000, 7);
        assert!(through_bridge(bridge.local_addr(), &data) == data, "bytes differ through {proxy}");
        bridge.shutdown();
    }
    // A bad proxy URL fails at start, not on the first connection.
    let flags = ProxyFlags { proxy: Some("socks4://x".into()), no_proxy_env: false };
    assert!(Route::from_flags(&flags).unwrap_err().starts_with("--proxy: bad url"));
}

#[test]
fn tcp2ws_command_takes_the_proxy_flags() {
    let out = within("syncws bridge tcp2ws --help", || {
        Command::new(BIN).args(["bridge", "tcp2ws", "--help"]).output().expect("run syncws")
    });
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--proxy <URL>", "--no-proxy-env"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

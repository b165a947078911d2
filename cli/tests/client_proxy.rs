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

//! Memory per idle connection, the issue-6 budget of 16 KiB: a guard for
//! the two-page connection stack and the small per-connection buffers.
//!
//! A memory measurement, not a timing one: load on the machine does not
//! change it. It runs alone in its own test binary (other tests' threads
//! would count), only on Linux with glibc, where the numbers were
//! established (about 13.5 KiB per connection: 8 KiB of stack, the rest
//! heap), and only in an optimised build: unoptimised stack frames are
//! several times larger (about 30 KiB per connection). CI runs it with
//! `cargo test --release --test idle_memory`, and the `wss://` test (about
//! 29 KiB per connection, budget 32) with `--features tls ... tls`, in a
//! process of its own. In one process the tests take turns, and the second
//! may come out lower: it reuses the first one's threads.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::*;
use syncws::Config;

/// The tests measure the whole process: they must not run at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB")
}

/// Sends one small message and checks its echo, so the connection has been
/// through the message path (read buffer, decoder, send batch) before it
/// goes idle.
fn echo_once(s: &mut TcpStream, i: usize) {
    let payload = format!("hello {i}");
    s.write_all(&client_frame(true, 0, 1, payload.as_bytes(), true)).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head, [0x81, payload.len() as u8]);
    let mut body = vec![0u8; payload.len()];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body, payload.as_bytes());
}

#[test]
#[cfg_attr(debug_assertions, ignore = "unoptimised stack frames are larger: run with --release")]
fn an_idle_connection_costs_at_most_16_kib() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    const WARM: usize = 50;
    const CONNS: usize = 1000;
    let server = echo_server(Config::default());
    let addr = server.local_addr();
    // The first connections pay one-time costs (malloc arenas, the thread
    // pool's structures); they are not what one more connection costs.
    let open = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|i| {
                let mut s = raw_ws(addr);
                echo_once(&mut s, i);
                s
            })
            .collect()
    };
    let warm = open(WARM);
    let before = rss_kib();
    let conns = open(CONNS);
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before)) as f64 / CONNS as f64;
    eprintln!("{CONNS} idle connections: {per_conn:.2} KiB each ({before} KiB -> {after} KiB)");
    assert!(per_conn <= 16.0, "{per_conn:.2} KiB per idle connection, over the 16 KiB budget");
    drop(conns);
    drop(warm);
    server.shutdown();
}

/// Opens `wss://` connections from a Python process (its `ssl` module), so
/// that only the server's memory is in this one: each connection upgrades
/// and echoes one message. Prints `warm` after the first `warm`
/// connections, waits for a line, opens `n` more, prints `done`, and holds
/// them all until its standard input ends.
#[cfg(feature = "tls")]
const TLS_CLIENTS: &str = r#"
import base64, os, socket, ssl, sys
port, warm, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def open_one():
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x85]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hello")))
    echo = b""
    while len(echo) < 7:
        echo += s.recv(64)
    assert echo == b"\x81\x05hello", echo
    return s
held = [open_one() for _ in range(warm)]
print("warm", flush=True)
sys.stdin.readline()
held += [open_one() for _ in range(n)]
print("done", flush=True)
sys.stdin.read()
"#;

#[cfg(feature = "tls")]
#[test]
#[cfg_attr(debug_assertions, ignore = "unoptimised stack frames are larger: run with --release")]
fn an_idle_tls_connection_costs_at_most_32_kib() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use syncws::rustls::pki_types::PrivatePkcs8KeyDer;
    use syncws::rustls::{crypto, ServerConfig};
    use syncws::Listener;

    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    const WARM: usize = 50;
    const CONNS: usize = 500;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into();
    let config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let listener = Listener::bind("127.0.0.1:0").expect("bind").tls(Arc::new(config));
    let server = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).expect("spawn");
    let port = server.local_addr().port().to_string();

    let mut clients = Command::new("python3")
        .args(["-c", TLS_CLIENTS, &port, &WARM.to_string(), &CONNS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the TLS clients");
    let mut lines = std::io::BufReader::new(clients.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert_eq!(next_line(), "warm", "the clients failed (see their error above)");
    let before = rss_kib();
    let mut go = clients.stdin.take().unwrap();
    go.write_all(b"go\n").unwrap();
    assert_eq!(next_line(), "done", "the clients failed (see their error above)");
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before)) as f64 / CONNS as f64;
    eprintln!("{CONNS} idle wss:// connections: {per_conn:.2} KiB each ({before} KiB -> {after} KiB)");
    drop(go);
    let _ = clients.wait();
    assert!(per_conn <= 32.0, "{per_conn:.2} KiB per idle wss:// connection, over the 32 KiB budget");
    server.shutdown();
}

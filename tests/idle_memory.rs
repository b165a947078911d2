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

/// permessage-deflate: a connection that negotiated it but has not yet
/// compressed or inflated a message holds no zlib state, so it stays in
/// the same budget; after one compressed message each way, what it keeps
/// depends on context takeover, measured here (and in the README's limits
/// table).
#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use syncws::DeflateConfig;

    /// A JSON-like text of 4 KiB: compressed by both sides (over the
    /// 1 KiB threshold).
    fn json() -> String {
        (0..120).map(|i| format!("{{\"id\":{i},\"user\":\"user{i}\",\"text\":\"hello\"}},")).collect::<String>()[..4096]
            .to_owned()
    }

    /// `data` compressed as one message from scratch.
    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut z = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out.truncate(out.len() - 4);
        out
    }

    /// Opens a connection offering permessage-deflate, checks it was
    /// accepted, then sends `frame` and reads the reply's first byte.
    fn open_one(addr: std::net::SocketAddr, frame: &[u8]) -> (TcpStream, u8) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(upgrade_request("/", &["Sec-WebSocket-Extensions: permessage-deflate"]).as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.contains("permessage-deflate"), "{head}");
        s.write_all(frame).unwrap();
        let (first, _) = read_server_frame(&mut s);
        (s, first)
    }

    /// KiB per connection for `conns` connections to a server with
    /// `deflate`, each having sent `frame` and had its echo.
    fn per_connection(deflate: DeflateConfig, frame: &[u8], want_first: u8, conns: usize) -> f64 {
        let server = echo_server(Config::default().deflate(Some(deflate)));
        let addr = server.local_addr();
        let warm: Vec<_> = (0..50).map(|_| open_one(addr, frame).0).collect();
        let before = rss_kib();
        let held: Vec<_> = (0..conns)
            .map(|_| {
                let (s, first) = open_one(addr, frame);
                assert_eq!(first, want_first);
                s
            })
            .collect();
        let after = rss_kib();
        drop(held);
        drop(warm);
        server.shutdown();
        (after.saturating_sub(before)) as f64 / conns as f64
    }

    /// One measurement, named by `SYNCWS_DEFLATE_MEASURE`, in a process of
    /// its own (started by the test below): a second server in the same
    /// process reuses the first one's thread stacks and heap, and comes
    /// out lower than it is.
    #[test]
    #[ignore = "run by deflate_negotiated_idle_and_after_traffic, in a process of its own"]
    fn measure() {
        let Ok(what) = std::env::var("SYNCWS_DEFLATE_MEASURE") else { return };
        let small = client_frame(true, 0, 1, b"hello", true);
        let json = json();
        let compressed = client_frame(true, 0b100, 1, &deflated(json.as_bytes()), true);
        let takeover = DeflateConfig::default().server_no_context_takeover(false).client_no_context_takeover(false);
        let kib = match what.as_str() {
            "idle" => per_connection(DeflateConfig::default(), &small, 0x81, 1000),
            "idle-takeover" => per_connection(takeover, &small, 0x81, 1000),
            "traffic" => per_connection(DeflateConfig::default(), &compressed, 0xc1, 1000),
            "traffic-takeover" => per_connection(takeover, &compressed, 0xc1, 200),
            other => panic!("unknown measurement {other}"),
        };
        println!("MEASURED {kib:.2}");
    }

    /// KiB per connection for `what`, measured by [`measure`] in a child
    /// process.
    fn measured(what: &str) -> f64 {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["deflate::measure", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("SYNCWS_DEFLATE_MEASURE", what)
            .output()
            .expect("run the measurement");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.split("MEASURED ").nth(1))
            .unwrap_or_else(|| panic!("{what}: no measurement: {text}{}", String::from_utf8_lossy(&out.stderr)));
        line.trim().parse().unwrap()
    }

    #[test]
    #[cfg_attr(debug_assertions, ignore = "unoptimised stack frames are larger: run with --release")]
    fn deflate_negotiated_idle_and_after_traffic() {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let idle = measured("idle");
        eprintln!("deflate negotiated, idle (one uncompressed echo): {idle:.2} KiB per connection");
        let idle_takeover = measured("idle-takeover");
        eprintln!("deflate negotiated with context takeover, idle: {idle_takeover:.2} KiB per connection");
        let reset = measured("traffic");
        eprintln!("after a compressed 4 KiB message each way, no context takeover: {reset:.2} KiB per connection");
        let kept = measured("traffic-takeover");
        eprintln!("after a compressed 4 KiB message each way, context takeover: {kept:.2} KiB per connection");
        assert!(idle <= 16.0, "{idle:.2} KiB per idle connection with deflate, over the 16 KiB budget");
        assert!(idle_takeover <= 16.0, "{idle_takeover:.2} KiB per idle connection (takeover), over 16 KiB");
        // No context takeover keeps no zlib state: what stays is buffers.
        assert!(reset <= 24.0, "{reset:.2} KiB per connection after traffic without takeover");
    }
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

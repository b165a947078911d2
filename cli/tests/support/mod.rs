//! Shared helpers of the cli tests: loopback services on port 0, readiness
//! by channel, watchdogs with `recv_timeout`, never a sleep.
#![allow(dead_code)]

/// Free ports and readiness for the processes below: one copy, the library's.
#[path = "../../../tests/support/ports.rs"]
pub mod ports;

/// The real proxies (tinyproxy, microsocks): one copy, the library's.
#[path = "../../../tests/support/proxies.rs"]
pub mod proxies;

/// redis-server and nginx for the cluster tests: one copy, the library's.
#[path = "../../../tests/support/servers.rs"]
pub mod servers;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use std::process::{Command, Stdio};

/// Generous bound for anything a test waits on; reached only when broken.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn init_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = env_logger::builder().is_test(true).try_init();
    });
}

/// Runs `f` on a thread and returns its result, or panics naming `what`
/// if it takes longer than [`WAIT`].
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    recv(&rx, what)
}

/// The next value on `rx`, or a panic naming `what`.
pub fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(WAIT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread ended without an answer (panicked?)"),
    }
}

/// A TCP echo service on 127.0.0.1 port 0: echoes until EOF, then shuts its
/// write side.
pub fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut w = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut stream, &mut w);
                let _ = w.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A TCP service on port 0 that runs `f` for each connection.
pub fn tcp_service(f: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let f = f.clone();
            thread::spawn(move || f(stream));
        }
    });
    addr
}

/// An address nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// FNV-1a over `data`.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Writes `data` to `stream` in uneven pieces, then shuts the write side.
pub fn write_then_eof(mut stream: TcpStream, data: Vec<u8>) {
    let mut at = 0;
    let mut step = 1000;
    while at < data.len() {
        let end = (at + step).min(data.len());
        stream.write_all(&data[at..end]).expect("tcp write");
        at = end;
        step = step * 7 % 90_001 + 1;
    }
    stream.shutdown(Shutdown::Write).expect("shutdown write");
}

/// Reads `stream` to EOF.
pub fn read_to_eof(mut stream: TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("tcp read to eof");
    out
}

/// Every variable the client reads for proxies.
pub const PROXY_VARS: [&str; 8] =
    ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"];

/// Runs `syncws client ARGS` with `input` on stdin and, of the proxy
/// variables, only those of `env` (none of the developer's may send these
/// loopback tests elsewhere); returns (exit code, stdout, stderr).
pub fn run_client(args: Vec<String>, env: Vec<(String, String)>, input: Vec<u8>) -> (i32, String, String) {
    within("syncws client", move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_syncws"));
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .envs(env)
            .arg("client")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run syncws client");
        let mut stdin = child.stdin.take().unwrap();
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("client output");
        feeder.join().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

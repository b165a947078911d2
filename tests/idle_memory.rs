//! Memory per idle connection, the issue-6 budget of 16 KiB: a guard for
//! the two-page connection stack and the small per-connection buffers.
//!
//! A memory measurement, not a timing one: load on the machine does not
//! change it. It runs alone in its own test binary (other tests' threads
//! would count), only on Linux with glibc, where the numbers were
//! established (about 13.5 KiB per connection: 8 KiB of stack, the rest
//! heap), and only in an optimised build: unoptimised stack frames are
//! several times larger (about 30 KiB per connection). CI runs it with
//! `cargo test --release --test idle_memory`.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::*;
use syncws::Config;

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

//! A bounded soak test, ignored by default: churns thousands of connections,
//! good and bad, for a few minutes, then checks that descriptors, threads
//! and memory come back to their baseline. CI runs it for 30 s.
//!
//! ```sh
//! SOAK_SECS=180 cargo test --release --test soak -- --ignored --nocapture
//! ```

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use syncws::Config;
use tungstenite::Message;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One client of a kind chosen by `n`; returns whether it behaved as
/// expected from its side.
fn client(addr: SocketAddr, n: u64) -> bool {
    match n % 6 {
        // Good clients: echo a few messages of varied size, close cleanly.
        0..=2 => {
            let mut ws = tung_client(addr, "/");
            for i in 0..5 {
                let data = bytes(1 + ((n * 97 + i * 13) % 70_000) as usize, n + i);
                if ws.send(Message::binary(data.clone())).is_err() {
                    return false;
                }
                if tung_next(&mut ws).into_data().as_ref() != &data[..] {
                    return false;
                }
            }
            let _ = ws.close(None);
            while ws.read().is_ok() {}
            true
        }
        // Protocol violators: an unmasked frame gets 1002.
        3 => {
            let mut s = raw_ws(addr);
            let _ = s.write_all(&client_frame(true, 0, 1, b"x", false));
            read_close_code(&mut s) == Some(1002)
        }
        // Abrupt disconnect in the middle of a frame.
        4 => {
            let mut s = raw_ws(addr);
            let frame = client_frame(true, 0, 2, &[0; 1000], true);
            let _ = s.write_all(&frame[..500]);
            true
        }
        // Half a handshake, then gone.
        _ => {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
            true
        }
    }
}

#[test]
#[ignore]
fn churn_thousands_of_connections() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let server = echo_server(Config::default().handshake_timeout(Duration::from_secs(2)));
    let addr = server.local_addr();
    // Warm up, then take the baseline.
    for n in 0..50 {
        client(addr, n * 6);
    }
    thread::sleep(Duration::from_secs(6)); // let the warm-up's idle threads exit
    let threads_before = threads_named("syncws-conn");
    let fds_before = fd_count();
    let rss_before = rss_kib();
    let started = Instant::now();
    let count = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let (count, failed) = (Arc::clone(&count), Arc::clone(&failed));
            thread::spawn(move || {
                let mut n = w;
                while started.elapsed() < Duration::from_secs(secs) {
                    if !client(addr, n) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    n += 32;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // Connections still in their handshake end by its deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.connections() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    // Idle connection threads wait a few seconds for a next connection,
    // then exit.
    let deadline = Instant::now() + Duration::from_secs(15);
    while threads_named("syncws-conn") > threads_before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    // Descriptors come back with the connections, without another accept.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fd_count() > fds_before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let (threads_after, fds_after, rss_after) = (threads_named("syncws-conn"), fd_count(), rss_kib());
    println!(
        "soak: {} connections in {secs} s, {} failed; conn threads {threads_before} -> {threads_after}; \
         descriptors {fds_before} -> {fds_after}; RSS {rss_before} KiB -> {rss_after} KiB",
        count.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert_eq!(server.connections(), 0);
    assert!(threads_after <= threads_before, "thread leak: {threads_before} -> {threads_after}");
    assert!(fds_after <= fds_before, "descriptor leak: {fds_before} -> {fds_after}");
    assert!(rss_after < rss_before + 64 * 1024, "memory grew: {rss_before} KiB -> {rss_after} KiB");
}

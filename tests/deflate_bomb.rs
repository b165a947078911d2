//! A decompression bomb: 1 GiB of zeros, about 1 MiB on the wire as one
//! compressed message, sent to a server with permessage-deflate. The
//! server must close with 1009 having held no more than its message limit:
//! the largest single allocation and the process's peak RSS are measured.
//!
//! A test binary of its own: the allocation counter and the peak RSS are
//! the whole process's, and the tests take turns.

#![cfg(feature = "deflate")]

#[path = "support/largest_alloc.rs"]
mod largest_alloc;
mod support;

use std::io::Write;
use std::sync::Mutex;

use flate2::{Compress, Compression, FlushCompress};
use support::*;
use syncws::{Config, DeflateConfig};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `zeros` bytes of zeros as one permessage-deflate payload, compressed a
/// MiB at a time.
fn zeros_compressed(zeros: usize) -> Vec<u8> {
    let chunk = vec![0u8; 1 << 20];
    let mut z = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(zeros / 1000 + (1 << 16));
    let mut left = zeros;
    while left > 0 || out.len() == out.capacity() {
        if out.len() == out.capacity() {
            out.reserve(1 << 16);
        }
        let take = left.min(chunk.len());
        let flush = if left == take { FlushCompress::Sync } else { FlushCompress::None };
        let before = z.total_in();
        z.compress_vec(&chunk[..take], &mut out, flush).unwrap();
        left -= (z.total_in() - before) as usize;
        if left == 0 && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A line of /proc/self/status, in KiB.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with(key)).expect(key);
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// Sends the bomb to a server with `max_message_size` = `limit`; returns
/// the largest allocation and the growth of the peak RSS, in bytes.
fn bomb(limit: usize) -> (usize, u64) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let payload = zeros_compressed(1 << 30);
    eprintln!("1 GiB of zeros: {} bytes on the wire", payload.len());
    assert!(payload.len() < 2 << 20, "{}", payload.len());
    let frame = client_frame(true, 0b100, 2, &payload, true);
    drop(payload);
    let config = Config::default().max_message_size(limit).deflate(Some(DeflateConfig::default()));
    let server = echo_server(config);
    let addr = server.local_addr();
    let mut s = raw_ws_offering(addr);
    // Peak RSS from here (Linux: writing 5 to clear_refs resets VmHWM).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = if reset { status_kib("VmRSS:") } else { status_kib("VmHWM:") };
    largest_alloc::reset();
    s.write_all(&frame).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1009));
    let largest = largest_alloc::largest();
    let peak = status_kib("VmHWM:").saturating_sub(before) * 1024;
    eprintln!(
        "limit {} MiB: closed 1009; largest allocation {:.1} MiB, peak RSS +{:.1} MiB",
        limit >> 20,
        largest as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64
    );
    still_serves(addr);
    server.shutdown();
    (largest, peak)
}

/// A raw connection that negotiated permessage-deflate.
fn raw_ws_offering(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT * 3)).unwrap();
    s.write_all(upgrade_request("/", &["Sec-WebSocket-Extensions: permessage-deflate"]).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.contains("permessage-deflate"), "{head}");
    s
}

#[test]
fn a_gigabyte_of_zeros_is_1009_within_the_default_limit() {
    let limit = Config::default().max_message_size;
    let (largest, peak) = bomb(limit);
    // One byte over the limit is how it is found exceeded.
    assert!(largest <= limit + 1, "largest allocation {largest} over the limit {limit}");
    assert!(peak <= (limit as u64) + (16 << 20), "peak RSS grew by {peak}");
}

#[test]
fn a_gigabyte_of_zeros_is_1009_within_a_small_limit() {
    let limit = 1 << 20;
    let (largest, peak) = bomb(limit);
    // The largest allocation is the 1 MiB read of the frame, or the limit.
    assert!(largest <= (2 << 20), "largest allocation {largest}");
    assert!(peak <= 16 << 20, "peak RSS grew by {peak}");
}

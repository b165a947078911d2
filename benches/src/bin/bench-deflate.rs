//! The client of bench-all's permessage-deflate scenarios: syncws clients
//! echo compressible JSON-like text messages through a server
//! (`srv-syncws`, started by bench-all with or without `--deflate`), and
//! this reports, as one JSON line:
//!
//! - `msgs_per_s` and `server_cpu_us_per_msg` over the window (the server's
//!   CPU from `/proc/PID/stat`);
//! - `wire_up_per_msg` and `wire_down_per_msg`: bytes on the wire per
//!   message, client to server and back, counted by a TCP relay between
//!   the clients and the server (frame headers included);
//! - `rss_per_conn_kib`: the server's resident memory per connection, for
//!   `--hold-conns` connections that each echoed one message (so with
//!   compression on, each compressed and inflated once).
//!
//! ```sh
//! target/release/bench-deflate --url ws://127.0.0.1:9001/ --server-pid PID --deflate reset
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use syncws::{Client, CloseCode, Config, DeflateConfig, OwnedMessage};

/// What the clients offer.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Deflate {
    /// No compression.
    Off,
    /// permessage-deflate, contexts reset after every message (the default
    /// `DeflateConfig`).
    Reset,
    /// As `reset`, at zlib's default level 6.
    Level6,
    /// permessage-deflate with context takeover both ways.
    Takeover,
}

#[derive(Parser, Debug, Clone)]
struct Opts {
    #[arg(long)]
    url: String,
    #[arg(long)]
    server_pid: u32,
    #[arg(long, value_enum)]
    deflate: Deflate,
    /// Message size, bytes.
    #[arg(long, default_value_t = 16 << 10)]
    size: usize,
    /// Connections echoing at once.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Connections held for the memory measurement.
    #[arg(long, default_value_t = 500)]
    hold_conns: usize,
    #[arg(long)]
    label: Option<String>,
}

fn config(d: Deflate) -> Config {
    let config = Config::default().handshake_timeout(Duration::from_secs(30));
    match d {
        Deflate::Off => config,
        Deflate::Reset => config.deflate(Some(DeflateConfig::default())),
        Deflate::Level6 => config.deflate(Some(DeflateConfig::default().level(6))),
        Deflate::Takeover => config.deflate(Some(
            DeflateConfig::default().server_no_context_takeover(false).client_no_context_takeover(false),
        )),
    }
}

/// `count` different JSON-like texts of `size` bytes: records of users with
/// names, e-mail addresses, tags and a sentence, from a small vocabulary
/// (what a chat or an API's JSON looks like to a compressor).
fn messages(size: usize, count: usize) -> Vec<String> {
    const WORDS: [&str; 24] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
        "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
        "yankee",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|m| {
            let mut s = String::from("[");
            let mut id = m * 1000;
            while s.len() < size {
                let w = |n: u64| WORDS[(n % WORDS.len() as u64) as usize];
                let (a, b, c, d) = (next(), next(), next(), next());
                s.push_str(&format!(
                    "{{\"id\":{id},\"name\":\"{} {}\",\"email\":\"{}.{}@example.com\",\"tags\":[\"{}\",\"{}\"],\
                     \"score\":{},\"text\":\"{} {} {} {}\"}},",
                    w(a),
                    w(b),
                    w(b),
                    w(a >> 8),
                    w(c),
                    w(c >> 8),
                    d % 10_000,
                    w(d),
                    w(d >> 8),
                    w(a >> 16),
                    w(c >> 16)
                ));
                id += 1;
            }
            s.truncate(size - 1);
            s.push(']');
            s
        })
        .collect()
}

/// A TCP relay in front of `target` counting the bytes of each direction.
struct Relay {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Relay {
    fn new(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().unwrap();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, d) = (Arc::clone(&up), Arc::clone(&down));
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else { return };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                for (from, to, count) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), Arc::clone(&u)),
                    (server, client, Arc::clone(&d)),
                ] {
                    thread::spawn(move || copy(from, to, &count));
                }
            }
        });
        Relay { addr, up, down }
    }

    fn counts(&self) -> (u64, u64) {
        (self.up.load(Ordering::Relaxed), self.down.load(Ordering::Relaxed))
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// User plus system CPU time of `pid` (`/proc/PID/stat`, USER_HZ = 100).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resident memory of `pid`, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn connect(url: &str, d: Deflate) -> syncws::Result<Client> {
    let client = Client::builder().url(url)?.config(config(d)).connect()?;
    let negotiated = client.response().header("sec-websocket-extensions").is_some();
    if negotiated != (d != Deflate::Off) {
        return Err(syncws::Error::Application(format!("permessage-deflate negotiated: {negotiated}")));
    }
    Ok(client)
}

fn echo(client: &mut Client, msg: &str) -> syncws::Result<()> {
    client.send(OwnedMessage::Text(msg.to_owned()))?;
    loop {
        match client.read()? {
            OwnedMessage::Text(t) if t == msg => return Ok(()),
            OwnedMessage::Ping(_) | OwnedMessage::Pong(_) => {}
            other => return Err(syncws::Error::Application(format!("wrong echo: {} bytes", other.len()))),
        }
    }
}

fn main() {
    let opts = Opts::parse();
    let target: SocketAddr =
        opts.url.trim_start_matches("ws://").trim_end_matches('/').parse().expect("--url ws://IP:PORT/");
    let relay = Relay::new(target);
    let url = format!("ws://{}/", relay.addr);
    let msgs = Arc::new(messages(opts.size, 64));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let error = {
        let (errors, first_error) = (Arc::clone(&errors), Arc::clone(&first_error));
        move |e: String| {
            errors.fetch_add(1, Ordering::Relaxed);
            first_error.lock().unwrap().get_or_insert(e);
        }
    };

    // Throughput: ping-pong on `conns` connections.
    let start = Instant::now() + Duration::from_secs_f64(opts.warmup);
    let end = start + Duration::from_secs_f64(opts.duration);
    let counted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..opts.conns)
        .map(|i| {
            let (url, msgs, counted, stop, error) =
                (url.clone(), Arc::clone(&msgs), Arc::clone(&counted), Arc::clone(&stop), error.clone());
            let d = opts.deflate;
            thread::spawn(move || {
                let mut client = match connect(&url, d) {
                    Ok(c) => c,
                    Err(e) => return error(format!("connect: {e}")),
                };
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    if let Err(e) = echo(&mut client, &msgs[n % msgs.len()]) {
                        return error(e.to_string());
                    }
                    if t0 >= start && Instant::now() <= end {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                let _ = client.close(CloseCode::NORMAL, "done");
            })
        })
        .collect();
    thread::sleep(start.saturating_duration_since(Instant::now()));
    let (cpu0, wire0) = (cpu_time(opts.server_pid), relay.counts());
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let (cpu1, wire1) = (cpu_time(opts.server_pid), relay.counts());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let n = counted.load(Ordering::Relaxed).max(1) as f64;
    let cpu_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() * 1e6 / n),
        _ => None,
    };
    // The window's counts are close enough: messages straddling its edges
    // are few against thousands.
    let up = (wire1.0 - wire0.0) as f64 / n;
    let down = (wire1.1 - wire0.1) as f64 / n;

    // Memory: `hold_conns` connections that each echoed one message.
    thread::sleep(Duration::from_millis(300));
    let before = rss_kib(opts.server_pid).unwrap_or(0);
    let mut held = Vec::with_capacity(opts.hold_conns);
    for i in 0..opts.hold_conns {
        match connect(&url, opts.deflate).and_then(|mut c| echo(&mut c, &msgs[i % msgs.len()]).map(|()| c)) {
            Ok(c) => held.push(c),
            Err(e) => {
                error(format!("hold: {e}"));
                break;
            }
        }
    }
    let after = rss_kib(opts.server_pid).unwrap_or(0);
    let rss_per_conn = after.saturating_sub(before) as f64 / held.len().max(1) as f64;
    drop(held);

    let label = opts.label.clone().unwrap_or_default();
    let first = first_error.lock().unwrap().clone();
    println!(
        "{}",
        serde_json::json!({
            "label": label,
            "size": opts.size,
            "msgs": n as u64,
            "msgs_per_s": n / opts.duration,
            "server_cpu_us_per_msg": cpu_us,
            "wire_up_per_msg": up,
            "wire_down_per_msg": down,
            "ratio": (up + down) / (2.0 * opts.size as f64),
            "rss_per_conn_kib": rss_per_conn,
            "held": opts.hold_conns,
            "errors": errors.load(Ordering::Relaxed),
            "first_error": first,
        })
    );
}

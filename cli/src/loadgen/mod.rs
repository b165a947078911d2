//! `syncws bench`: the load generator of the benchmark.
//!
//! It speaks WebSocket through its own minimal client on `std` sockets
//! ([`wire`]), verifies every echoed payload (an echo that differs, comes out
//! of order or never comes is an error, never a message counted), and prints
//! one JSON line followed by a human summary.
//!
//! Modes:
//! - `ping-pong`: each connection sends one message and waits for its echo
//!   (latency);
//! - `pipelined`: each connection keeps `--in-flight` messages outstanding,
//!   reading every echo that arrived in one read and answering them with new
//!   messages in one write (throughput);
//! - `broadcast`: `--conns` receivers join `--broadcast-path`, then one
//!   sender sends; the server delivers each message to every other member of
//!   the path. The sender sends the next message once every receiver has the
//!   previous one; latency is from the send to each delivery;
//! - `idle`: opens `--conns` connections, holds them `--hold` seconds and
//!   reports the server's resident memory per connection, then checks that
//!   each still echoes;
//! - `connect`: `--conns` connections opened (handshake included) and closed
//!   from `--threads` threads (default 2), as fast as possible.
//!
//! Ping-pong, pipelined and broadcast over `ws://` are event-driven: the
//! connections are multiplexed on `--threads` client threads (default 1),
//! each polling its share with epoll (see `event.rs`), so the client's share
//! of the CPU does not grow with the connection count. Idle mode holds its
//! connections from the one main thread. Over `wss://` each connection has
//! its own thread (the threaded drivers below). The client's own CPU over
//! the window is reported (`client_cpu_pct`, and `client_bound` when it is
//! at or above 90% of its threads: the client, not the server, was the
//! limit).
//!
//! Messages are counted, and latencies kept, for the measurement window
//! only: `--duration` seconds after `--warmup` seconds. With `--server-pid`,
//! the server's CPU time over the window (from `/proc/PID/stat`; per
//! message in all, and split into user and system time, which tells a
//! server's own work from the kernel's) and its resident memory and thread
//! count at the end of the window (from `/proc/PID/status`) are reported
//! too.

mod event;
pub mod stats;
pub mod wire;

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use stats::{cpu_time, nanos, percentiles, rss_and_threads, CpuTime, Percentiles};
use wire::{connect, encode_close, key, FrameReader, Payloads, Rng, Stream, Target, WireError, WireResult};

/// What the load generator does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One message in flight per connection: latency.
    PingPong,
    /// `--in-flight` messages outstanding per connection: throughput.
    Pipelined,
    /// One sender, `--conns` receivers: delivery latency.
    Broadcast,
    /// Hold `--conns` connections: server memory per connection.
    Idle,
    /// Open and close `--conns` connections: connections per second.
    Connect,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "ping-pong",
            Mode::Pipelined => "pipelined",
            Mode::Broadcast => "broadcast",
            Mode::Idle => "idle",
            Mode::Connect => "connect",
        }
    }
}

/// Options of `syncws bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Server URL (`ws://host:port/path`, or `wss://` for TLS).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    pub url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::PingPong)]
    pub mode: Mode,
    /// Connections (receivers in broadcast mode).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Messages outstanding per connection (pipelined mode).
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Send text messages (ASCII) instead of binary.
    #[arg(long)]
    pub text: bool,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Time before the window, not measured, in seconds.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Most messages per connection (broadcast: in all).
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to hold the connections before measuring (idle mode).
    #[arg(long, default_value_t = 1.0)]
    pub hold: f64,
    /// Client threads: connect mode (default 2), and the event-driven
    /// ping-pong, pipelined and broadcast modes (default 1), which multiplex
    /// their connections over them.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Read and write timeout: an echo later than this is an error.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// The path joined in broadcast mode.
    #[arg(long, default_value = "/broadcast")]
    pub broadcast_path: String,
    /// Process id of the server, to report its CPU per message (in all,
    /// in user space and in the kernel), memory and threads.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server is a raw TCP echo: it sends the client's masked frames back
    /// unchanged (accept and unmask them).
    #[arg(long)]
    pub raw_echo: bool,
    /// A label copied into the JSON line.
    #[arg(long)]
    pub label: Option<String>,
    /// For `wss://`: `--tls-ca` or `--tls-fingerprint` instead of the
    /// built-in and system roots.
    #[command(flatten)]
    pub tls: crate::common::TlsClientFlags,
}

/// The outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Mode name.
    pub mode: &'static str,
    /// `--label`.
    pub label: Option<String>,
    /// Connections asked for.
    pub conns: usize,
    /// Connections that completed their handshake.
    pub connected: usize,
    /// Payload size.
    pub size: usize,
    /// Text or binary.
    pub text: bool,
    /// Messages outstanding per connection (pipelined).
    pub in_flight: usize,
    /// Length of the measurement window, seconds.
    pub window_s: f64,
    /// Verified messages (connections in connect mode, deliveries in
    /// broadcast mode) in the window.
    pub msgs: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Latency percentiles (µs).
    pub latency: Option<Percentiles>,
    /// Failures: connect errors, I/O errors, protocol errors, wrong echoes.
    pub errors: u64,
    /// The first failure, for the reader.
    pub first_error: Option<String>,
    /// Server CPU time over the window, seconds.
    pub server_cpu_s: Option<f64>,
    /// The part of `server_cpu_s` spent in user space (the rest is the
    /// kernel's, on the server's behalf), seconds.
    pub server_user_s: Option<f64>,
    /// Server resident memory at the end of the window, KiB.
    pub server_rss_kib: Option<u64>,
    /// Server threads at the end of the window.
    pub server_threads: Option<u64>,
    /// Idle mode: resident memory added per held connection, KiB.
    pub rss_per_conn_kib: Option<f64>,
    /// The load generator's own CPU time over the window, seconds.
    pub client_cpu_s: Option<f64>,
    /// Threads doing the load generator's work (its CPU capacity).
    pub client_threads: usize,
}

impl Report {
    /// Messages per second in the window.
    pub fn msgs_per_s(&self) -> f64 {
        if self.window_s > 0.0 {
            self.msgs as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// Payload megabytes (10^6) per second in the window, one direction.
    pub fn mb_per_s(&self) -> f64 {
        if self.window_s > 0.0 {
            self.bytes as f64 / self.window_s / 1e6
        } else {
            0.0
        }
    }

    /// Server CPU microseconds per message.
    pub fn server_cpu_us_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.msgs > 0).then(|| cpu * 1e6 / self.msgs as f64)
    }

    /// Of [`server_cpu_us_per_msg`](Self::server_cpu_us_per_msg), the
    /// microseconds in user space and in the kernel.
    pub fn server_user_sys_us_per_msg(&self) -> Option<(f64, f64)> {
        let (cpu, user) = (self.server_cpu_s?, self.server_user_s?);
        (self.msgs > 0).then(|| (user * 1e6 / self.msgs as f64, (cpu - user) * 1e6 / self.msgs as f64))
    }

    /// Records the server at the end of a window: its CPU over the window
    /// (from `cpu_start`, its CPU time when the window began, if that was
    /// read) and its resident memory and threads now.
    pub(super) fn record_server(&mut self, pid: u32, cpu_start: Option<CpuTime>) {
        if let (Some(start), Some(end)) = (cpu_start, cpu_time(pid)) {
            let used = end.since(start);
            self.server_cpu_s = Some(used.total().as_secs_f64());
            self.server_user_s = Some(used.user.as_secs_f64());
        }
        if let Some((rss, threads)) = rss_and_threads(pid) {
            self.server_rss_kib = Some(rss);
            self.server_threads = Some(threads);
        }
    }

    /// The load generator's CPU over the window, in percent of one core.
    pub fn client_cpu_pct(&self) -> Option<f64> {
        let cpu = self.client_cpu_s?;
        (self.window_s > 0.0).then(|| cpu * 100.0 / self.window_s)
    }

    /// True when the load generator used at least 90% of its threads'
    /// capacity over the window: the client, not the server, may have been
    /// the limit.
    pub fn client_bound(&self) -> Option<bool> {
        let pct = self.client_cpu_pct()?;
        (self.client_threads > 0).then_some(pct >= 90.0 * self.client_threads as f64)
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        let num = |v: Option<f64>| v.filter(|x| x.is_finite()).map_or("null".to_owned(), |x| format!("{x:.3}"));
        let int = |v: Option<u64>| v.map_or("null".to_owned(), |x| x.to_string());
        let string = |v: Option<&str>| v.map_or("null".to_owned(), json_string);
        let lat = self.latency;
        format!(
            "{{\"mode\":\"{}\",\"label\":{},\"conns\":{},\"connected\":{},\"size\":{},\"text\":{},\
             \"in_flight\":{},\"window_s\":{:.3},\"msgs\":{},\"bytes\":{},\"msgs_per_s\":{:.1},\
             \"mb_per_s\":{:.3},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"errors\":{},\
             \"first_error\":{},\"server_cpu_s\":{},\"server_cpu_us_per_msg\":{},\"server_user_us_per_msg\":{},\
             \"server_sys_us_per_msg\":{},\"server_rss_kib\":{},\
             \"server_threads\":{},\"rss_per_conn_kib\":{},\"client_cpu_s\":{},\"client_cpu_pct\":{},\
             \"client_threads\":{},\"client_bound\":{}}}",
            self.mode,
            string(self.label.as_deref()),
            self.conns,
            self.connected,
            self.size,
            self.text,
            self.in_flight,
            self.window_s,
            self.msgs,
            self.bytes,
            self.msgs_per_s(),
            self.mb_per_s(),
            num(lat.map(|l| l.p50)),
            num(lat.map(|l| l.p99)),
            num(lat.map(|l| l.p999)),
            num(lat.map(|l| l.max)),
            self.errors,
            string(self.first_error.as_deref()),
            num(self.server_cpu_s),
            num(self.server_cpu_us_per_msg()),
            num(self.server_user_sys_us_per_msg().map(|(user, _)| user)),
            num(self.server_user_sys_us_per_msg().map(|(_, sys)| sys)),
            int(self.server_rss_kib),
            int(self.server_threads),
            num(self.rss_per_conn_kib),
            num(self.client_cpu_s),
            num(self.client_cpu_pct()),
            self.client_threads,
            self.client_bound().map_or("null".to_owned(), |b| b.to_string()),
        )
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {}: {}/{} connections, {} B {}",
            self.mode,
            self.label.as_deref().unwrap_or(""),
            self.connected,
            self.conns,
            self.size,
            if self.text { "text" } else { "binary" }
        );
        if self.mode == "pipelined" {
            s += &format!(", {} in flight", self.in_flight);
        }
        s += &format!(
            "\n  {} in {:.2} s: {:.0}/s, {:.1} MB/s, errors {}",
            self.msgs,
            self.window_s,
            self.msgs_per_s(),
            self.mb_per_s(),
            self.errors
        );
        if let Some(l) = self.latency {
            s += &format!("\n  latency µs: p50 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}", l.p50, l.p99, l.p999, l.max);
        }
        if let Some(c) = self.server_cpu_us_per_msg() {
            s += &format!("\n  server CPU {c:.2} µs per message");
            if let Some((user, sys)) = self.server_user_sys_us_per_msg() {
                s += &format!(" (user {user:.2}, system {sys:.2})");
            }
        }
        if let (Some(r), Some(t)) = (self.server_rss_kib, self.server_threads) {
            s += &format!("\n  server RSS {r} KiB, {t} threads");
        }
        if let Some(r) = self.rss_per_conn_kib {
            s += &format!("\n  server RSS per connection {r:.1} KiB");
        }
        if let Some(c) = self.client_cpu_pct() {
            s += &format!("\n  client CPU {c:.0}% over {} thread(s)", self.client_threads);
            if self.client_bound() == Some(true) {
                s += " (the client may be the bottleneck)";
            }
        }
        if let Some(e) = &self.first_error {
            s += &format!("\n  first error: {e}");
        }
        s
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs `syncws bench` and prints its report; the exit code is non-zero
/// when any error was counted.
pub fn main(args: Args) -> i32 {
    match run(&args) {
        Ok(report) => {
            println!("{}", report.to_json());
            println!("{}", report.summary());
            i32::from(report.errors > 0)
        }
        Err(e) => {
            eprintln!("syncws bench: {e}");
            2
        }
    }
}

/// Runs the load described by `args` and returns what it measured.
pub fn run(args: &Args) -> Result<Report, String> {
    let mut target = Target::parse(&args.url)?;
    if target.tls_host.is_some() {
        target.tls = Some(match args.tls.client_config().map_err(|e| format!("--tls-ca {e}"))? {
            Some(tls) => tls,
            None => syncws::tls::default_client_config().map_err(|e| e.to_string())?,
        });
    }
    if args.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.timeout > 0.0 && args.hold >= 0.0) {
        return Err("--duration and --timeout must be positive, --warmup and --hold not negative".into());
    }
    let mut report = Report {
        mode: args.mode.name(),
        label: args.label.clone(),
        conns: args.conns,
        size: args.size,
        text: args.text,
        in_flight: args.in_flight,
        ..Report::default()
    };
    let plain = target.tls.is_none();
    match args.mode {
        Mode::PingPong | Mode::Pipelined if plain => event::echo_run(args, &target, &mut report),
        Mode::Broadcast if plain => event::broadcast_run(args, &target, &mut report),
        Mode::PingPong | Mode::Pipelined => echo_run(args, &target, &mut report),
        Mode::Broadcast => broadcast_run(args, &target, &mut report),
        Mode::Idle => idle_run(args, &target, &mut report),
        Mode::Connect => connect_run(args, &target, &mut report),
    }
    Ok(report)
}

/// What one worker counted.
#[derive(Default)]
struct Part {
    msgs: u64,
    bytes: u64,
    lat: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Part {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

fn merge(report: &mut Report, parts: Vec<Part>) {
    let mut lat = Vec::new();
    for p in parts {
        report.msgs += p.msgs;
        report.bytes += p.bytes;
        report.errors += p.errors;
        if report.first_error.is_none() {
            report.first_error = p.first_error;
        }
        lat.extend(p.lat);
    }
    report.latency = percentiles(&mut lat);
}

/// The measurement window, shared by all workers.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(args: &Args) -> Window {
        let start = Instant::now() + Duration::from_secs_f64(args.warmup);
        Window { start, end: start + Duration::from_secs_f64(args.duration) }
    }

    fn contains(&self, from: Instant, to: Instant) -> bool {
        from >= self.start && to <= self.end
    }
}

/// Samples the server over the window from the calling thread: CPU at the
/// window's start and end, memory and threads at its end.
fn watch_server(args: &Args, window: Window, report: &mut Report) {
    let Some(pid) = args.server_pid else {
        report.window_s = args.duration;
        return;
    };
    sleep_until(window.start);
    let cpu0 = cpu_time(pid);
    sleep_until(window.end);
    report.record_server(pid, cpu0);
    report.window_s = args.duration;
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

/// A connected client: socket, frame reader, mask keys.
struct Client {
    stream: Stream,
    reader: FrameReader,
    rng: Rng,
    out: Vec<u8>,
}

fn open(target: &Target, args: &Args, seed: u64) -> WireResult<Client> {
    let mut rng = Rng::new(seed);
    let (stream, mut reader) = connect(target, Duration::from_secs_f64(args.timeout), &mut rng)?;
    reader.accept_masked = args.raw_echo;
    Ok(Client { stream, reader, rng, out: Vec::new() })
}

impl Client {
    fn write_out(&mut self) -> WireResult<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Waits for the next data message, skipping Pings and Pongs; a Close
    /// is an error (the server gave up on the connection).
    fn next_data(&mut self) -> WireResult<wire::Msg> {
        loop {
            let m = self.reader.next(&mut self.stream)?;
            if let Some(m) = self.data_or_error(m)? {
                return Ok(m);
            }
        }
    }

    fn data_or_error(&self, m: wire::Msg) -> WireResult<Option<wire::Msg>> {
        match m.opcode {
            wire::OP_PING | wire::OP_PONG => Ok(None),
            wire::OP_CLOSE => {
                let p = self.reader.payload(&m);
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                let reason = String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into_owned();
                Err(WireError::Bad(format!("the server closed the connection: {code:?} {reason}")))
            }
            _ => Ok(Some(m)),
        }
    }

    /// Sends Close and waits (briefly) for the server's reply.
    fn close(mut self) {
        let k = key(&mut self.rng);
        encode_close(&mut self.out, k);
        if self.write_out().is_err() {
            return;
        }
        let _ = self.stream.socket().set_read_timeout(Some(Duration::from_secs(1)));
        for _ in 0..64 {
            match self.reader.next(&mut self.stream) {
                Ok(m) if m.opcode == wire::OP_CLOSE => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

fn spawn<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new().stack_size(stack).spawn(f).expect("cannot start a load generator thread")
}

fn echo_run(args: &Args, target: &Target, report: &mut Report) {
    let payloads = Arc::new(Payloads::new(args.size, args.text));
    let mut clients = Vec::new();
    let mut part = Part::default();
    for i in 0..args.conns {
        match open(target, args, i as u64 + 1) {
            Ok(c) => clients.push(c),
            Err(e) => part.error(format!("connect: {e}")),
        }
    }
    report.connected = clients.len();
    let window = Window::new(args);
    let handles: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let (p, a) = (Arc::clone(&payloads), args.clone());
            spawn(256 << 10, move || match a.mode {
                Mode::Pipelined => pipelined(c, &p, &a, window),
                _ => ping_pong(c, &p, &a, window),
            })
        })
        .collect();
    watch_server(args, window, report);
    let mut parts = vec![part];
    parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_default()));
    merge(report, parts);
}

fn ping_pong(mut c: Client, p: &Payloads, args: &Args, window: Window) -> Part {
    let mut part = Part::default();
    let limit = args.count.unwrap_or(u64::MAX);
    let mut seq = 0;
    while seq < limit && Instant::now() < window.end {
        let k = key(&mut c.rng);
        p.encode(&mut c.out, seq, k);
        let t0 = Instant::now();
        let result = c.write_out().and_then(|()| {
            let m = c.next_data()?;
            p.verify(&m, c.reader.payload(&m), seq)
        });
        let t1 = Instant::now();
        if let Err(e) = result {
            part.error(e);
            return part;
        }
        if window.contains(t0, t1) {
            part.msgs += 1;
            part.bytes += p.size() as u64;
            part.lat.push(nanos(t1 - t0));
        }
        seq += 1;
    }
    c.close();
    part
}

fn pipelined(mut c: Client, p: &Payloads, args: &Args, window: Window) -> Part {
    let mut part = Part::default();
    let limit = args.count.unwrap_or(u64::MAX);
    let mut sent_at = std::collections::VecDeque::new();
    let (mut sent, mut received) = (0u64, 0u64);
    let now = Instant::now();
    while sent < limit && sent < args.in_flight.max(1) as u64 {
        let k = key(&mut c.rng);
        p.encode(&mut c.out, sent, k);
        sent_at.push_back(now);
        sent += 1;
    }
    let result = (|| -> WireResult<()> {
        c.write_out()?;
        while received < sent {
            c.reader.fill(&mut c.stream)?;
            let now = Instant::now();
            let sending = now < window.end;
            while let Some(m) = c.reader.parse()? {
                let Some(m) = c.data_or_error(m)? else { continue };
                p.verify(&m, c.reader.payload(&m), received)?;
                let t0 = sent_at.pop_front().unwrap_or(now);
                if window.contains(t0, now) {
                    part.msgs += 1;
                    part.bytes += p.size() as u64;
                    part.lat.push(nanos(now - t0));
                }
                received += 1;
                if sending && sent < limit {
                    let k = key(&mut c.rng);
                    p.encode(&mut c.out, sent, k);
                    sent_at.push_back(now);
                    sent += 1;
                }
            }
            c.write_out()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => c.close(),
        Err(e) => part.error(e),
    }
    part
}

/// Shared state of a broadcast run.
struct Bcast {
    /// When each message was sent, in ns after `base`.
    sent_at: Vec<AtomicU64>,
    base: Instant,
    /// Deliveries so far, and a wake-up for the sender.
    delivered: Mutex<u64>,
    cv: Condvar,
    stop: AtomicBool,
}

fn broadcast_run(args: &Args, target: &Target, report: &mut Report) {
    let target = target.with_path(&args.broadcast_path);
    let payloads = Arc::new(Payloads::new(args.size, args.text));
    let cap = args.count.unwrap_or(1_000_000).min(10_000_000) as usize;
    let shared = Arc::new(Bcast {
        sent_at: (0..cap).map(|_| AtomicU64::new(0)).collect(),
        base: Instant::now(),
        delivered: Mutex::new(0),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let mut part = Part::default();
    let mut receivers = Vec::new();
    for i in 0..args.conns {
        match open(&target, args, i as u64 + 1) {
            Ok(c) => receivers.push(c),
            Err(e) => part.error(format!("connect: {e}")),
        }
    }
    let mut sender = match open(&target, args, 0) {
        Ok(c) => c,
        Err(e) => {
            part.error(format!("connect (sender): {e}"));
            merge(report, vec![part]);
            return;
        }
    };
    report.connected = receivers.len();
    let n = receivers.len() as u64;
    let window = Window::new(args);
    let mut sockets = Vec::new();
    let handles: Vec<_> = receivers
        .into_iter()
        .filter_map(|c| {
            sockets.push(c.stream.socket().try_clone().ok()?);
            let (p, s) = (Arc::clone(&payloads), Arc::clone(&shared));
            // TLS record processing needs more stack than plain reads.
            let stack = if target.tls.is_some() { 256 << 10 } else { 64 << 10 };
            Some(spawn(stack, move || receive_broadcast(c, &p, &s, window)))
        })
        .collect();
    let cpu = args.server_pid.and_then(|pid| Some((pid, cpu_time(pid)?)));
    let (mut seq, mut cpu0) = (0u64, None);
    let timeout = Duration::from_secs_f64(args.timeout);
    while (seq as usize) < cap && Instant::now() < window.end {
        if cpu0.is_none() && Instant::now() >= window.start {
            cpu0 = cpu.and_then(|(pid, _)| cpu_time(pid));
        }
        shared.sent_at[seq as usize].store(nanos(shared.base.elapsed()), Ordering::Release);
        let k = key(&mut sender.rng);
        payloads.encode(&mut sender.out, seq, k);
        if let Err(e) = sender.write_out() {
            part.error(format!("sender: {e}"));
            break;
        }
        seq += 1;
        let guard = shared.delivered.lock().unwrap_or_else(|p| p.into_inner());
        let (got, wait) =
            shared.cv.wait_timeout_while(guard, timeout, |d| *d < n * seq).unwrap_or_else(|p| p.into_inner());
        if wait.timed_out() {
            part.error(format!(
                "message {}: delivered {} times of {n} within {timeout:?}",
                seq - 1,
                *got - n * (seq - 1)
            ));
            break;
        }
    }
    if let (Some((pid, _)), Some(a)) = (cpu, cpu0) {
        report.record_server(pid, Some(a));
    }
    shared.stop.store(true, Ordering::Release);
    for s in &sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
    let mut parts = vec![part];
    for h in handles {
        let (mut p, got) = h.join().unwrap_or_default();
        if p.errors == 0 && got != seq {
            p.error(format!("a receiver got {got} of {seq} messages"));
        }
        parts.push(p);
    }
    sender.close();
    report.window_s = args.duration;
    merge(report, parts);
}

/// Receives broadcast messages until the run stops; returns what it counted
/// and how many messages it received in all.
fn receive_broadcast(mut c: Client, p: &Payloads, s: &Bcast, window: Window) -> (Part, u64) {
    let mut part = Part::default();
    let mut seq = 0u64;
    loop {
        let m = match c.next_data() {
            Ok(m) => m,
            Err(e) => {
                if !s.stop.load(Ordering::Acquire) {
                    part.error(e);
                }
                break;
            }
        };
        let now = Instant::now();
        if let Err(e) = p.verify(&m, c.reader.payload(&m), seq) {
            part.error(e);
            break;
        }
        let t0 = s.base + Duration::from_nanos(s.sent_at[seq as usize].load(Ordering::Acquire));
        if window.contains(t0, now) {
            part.msgs += 1;
            part.bytes += p.size() as u64;
            part.lat.push(nanos(now - t0));
        }
        seq += 1;
        let mut d = s.delivered.lock().unwrap_or_else(|p| p.into_inner());
        *d += 1;
        s.cv.notify_one();
    }
    (part, seq)
}

fn idle_run(args: &Args, target: &Target, report: &mut Report) {
    let rss_before = args.server_pid.and_then(rss_and_threads).map(|r| r.0);
    let mut part = Part::default();
    let mut clients = Vec::new();
    let start = Instant::now();
    for i in 0..args.conns {
        match open(target, args, i as u64 + 1) {
            Ok(c) => clients.push(c),
            Err(e) => part.error(format!("connect {i}: {e}")),
        }
    }
    let connect_time = start.elapsed();
    report.connected = clients.len();
    thread::sleep(Duration::from_secs_f64(args.hold));
    if let (Some(pid), Some(before)) = (args.server_pid, rss_before) {
        if let Some((rss, threads)) = rss_and_threads(pid) {
            report.server_rss_kib = Some(rss);
            report.server_threads = Some(threads);
            if !clients.is_empty() {
                report.rss_per_conn_kib = Some(rss.saturating_sub(before) as f64 / clients.len() as f64);
            }
        }
    }
    // Every held connection must still echo.
    let p = Payloads::new(args.size, args.text);
    for (i, c) in clients.iter_mut().enumerate() {
        let k = key(&mut c.rng);
        p.encode(&mut c.out, i as u64, k);
        if let Err(e) = c.write_out() {
            part.error(format!("connection {i}: {e}"));
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let result = c.next_data().and_then(|m| p.verify(&m, c.reader.payload(&m), i as u64));
        match result {
            Ok(()) => {
                part.msgs += 1;
                part.bytes += p.size() as u64;
            }
            Err(e) => part.error(format!("connection {i}: {e}")),
        }
    }
    report.window_s = connect_time.as_secs_f64();
    merge(report, vec![part]);
    // Counted as connections opened per second of connecting.
    report.msgs = report.connected as u64;
    report.bytes = 0;
}

fn connect_run(args: &Args, target: &Target, report: &mut Report) {
    let threads = args.threads.unwrap_or(2).clamp(1, args.conns);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let n = args.conns / threads + usize::from(t < args.conns % threads);
            let (target, a) = (target.clone(), args.clone());
            spawn(256 << 10, move || {
                let mut part = Part::default();
                for i in 0..n {
                    let t0 = Instant::now();
                    match open(&target, &a, (t * 1_000_000 + i) as u64 + 1) {
                        Ok(mut c) => {
                            part.lat.push(nanos(t0.elapsed()));
                            part.msgs += 1;
                            let k = key(&mut c.rng);
                            encode_close(&mut c.out, k);
                            let _ = c.write_out();
                        }
                        Err(e) => part.error(format!("connect: {e}")),
                    }
                }
                part
            })
        })
        .collect();
    let cpu0 = args.server_pid.and_then(cpu_time);
    let parts: Vec<Part> = handles.into_iter().map(|h| h.join().unwrap_or_default()).collect();
    report.window_s = start.elapsed().as_secs_f64();
    if let (Some(pid), Some(a)) = (args.server_pid, cpu0) {
        report.record_server(pid, Some(a));
    }
    merge(report, parts);
    report.connected = report.msgs as usize;
}

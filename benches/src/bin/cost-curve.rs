//! The cost curve of issue 17: what each server pays per connection as the
//! idle connections it holds go from 1,000 to 19,000, and what that does to
//! the latency of 64 active connections beside them.
//!
//! ```sh
//! cargo build --release -p syncws-cli -p syncws-bench
//! cargo build --release --manifest-path benches/seed-wenmeng/Cargo.toml   # for `wenmeng`
//! flock /work/bench.lock target/release/cost-curve            # every server, every step
//! target/release/cost-curve --servers syncws --steps 1000,2000 --pp-secs 1   # quick
//! ```
//!
//! For each server (started fresh, as `bench-all` starts it) and each step
//! (the steps add to the connections already held: 1k, then 1k more, 3k
//! more, ...), it opens the step's connections from *holder* processes,
//! then reports the server's RSS per connection (RSS growth since the
//! server started ÷ connections held, from `/proc/PID/status`), its
//! threads, the step's connects per second (TCP connect + upgrade, 64 in
//! flight per holder), and the p50/p99 of `syncws bench --mode ping-pong
//! --conns 64` run against the server while the idle ones are held.
//! `rawtcp` (`srv-rawtcp`, as in `bench-all`) is the thread floor: a
//! thread per connection and nothing else, so what any thread-per-connection
//! server pays per connection shows beside what the async servers pay.
//!
//! Holders are this same binary started with `--hold-addr`: one thread
//! each, every connection multiplexed with mio (19,000 client threads
//! beside a 19,000-thread server would pass `pid_max`). Each holds at most
//! `--per-holder` connections (one process may open 20,000 files here),
//! and binds its sockets to its own 127.x.r.y source address (x per
//! server, r per run, y per holder), so no holder shares the ~28,000
//! ephemeral ports of one address with another, nor with the TIME_WAIT
//! sockets a previous server's, or a previous run's, holders left. The
//! handshake is a real one (`Sec-WebSocket-Accept` checked); a Ping from
//! the server is answered with a (masked) Pong, a Close or EOF counts as a
//! dropped connection.
//!
//! When a step cannot be completed, the output says which limit stopped
//! it: descriptors on either side, ephemeral ports, threads, or the
//! server's answer (e.g. 503 at its connection cap).
//!
//! Writes `cost-curve.md`, `cost-curve.json` and `cost-curve.svg` in `--out`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::Parser;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};

/// Holds 1k..19k idle connections on each server and measures RSS per
/// connection, threads, connects/s and ping-pong latency beside them.
#[derive(Parser, Debug)]
struct Opts {
    /// Servers (comma-separated): syncws, tungstenite, tokio-tungstenite,
    /// wenmeng, rawtcp (the raw TCP thread-per-connection floor, as in
    /// `bench-all`).
    #[arg(long, value_delimiter = ',', default_value = "syncws,tungstenite,tokio-tungstenite,wenmeng,rawtcp")]
    servers: Vec<String>,
    /// Connections held at each step (ascending; each step adds to the
    /// previous one).
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000,15000,19000")]
    steps: Vec<usize>,
    /// Ping-pong measurement window at each step, seconds.
    #[arg(long, default_value_t = 3.0)]
    pp_secs: f64,
    /// Most connections one holder process keeps.
    #[arg(long, default_value_t = 9_500)]
    per_holder: usize,
    /// Output folder.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Holder mode (internal): the server to connect to.
    #[arg(long, hide = true)]
    hold_addr: Option<SocketAddr>,
    /// Holder mode (internal): the source address to bind.
    #[arg(long, hide = true)]
    hold_src: Option<std::net::IpAddr>,
}

struct Server {
    name: &'static str,
    /// Binary in target/release, or the seed crate's own target.
    bin: &'static str,
    args: &'static [&'static str],
    /// Echoes the bytes it reads without decoding them: the ping-pong
    /// load generator runs with `--raw-echo`.
    raw: bool,
}

const SERVERS: &[Server] = &[
    // The default `Config` but for `max_connections` (16,384 by default,
    // under the 19,000 of the last step).
    Server { name: "syncws", bin: "srv-syncws", args: &["--max-connections=20000"], raw: false },
    Server { name: "tungstenite", bin: "srv-tungstenite", args: &[], raw: false },
    Server { name: "tokio-tungstenite", bin: "srv-tokio-tungstenite", args: &[], raw: false },
    Server { name: "wenmeng", bin: SEED_BIN, args: &[], raw: false },
    // The thread floor: a thread per connection (`std::thread::spawn`, no
    // pool, no cap) that answers the upgrade and then echoes raw bytes.
    Server { name: "rawtcp", bin: "srv-rawtcp", args: &[], raw: true },
];

/// The seed system's binary, built from its own crate (outside the
/// workspace) into its own target directory.
const SEED_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/seed-wenmeng/target/release/srv-wenmeng");

/// Connects (TCP + upgrade) in flight at once per holder.
const WINDOW: usize = 64;
/// Longest a connection may take to be upgraded.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(15);
/// Longest one step's connections may take.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

fn main() {
    let opts = Opts::parse();
    if let (Some(addr), Some(src)) = (opts.hold_addr, opts.hold_src) {
        if let Err(e) = holder(addr, src) {
            eprintln!("holder: {e}");
            std::process::exit(1);
        }
        return;
    }
    let dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let unknown: Vec<&String> = opts.servers.iter().filter(|n| !SERVERS.iter().any(|s| s.name == *n)).collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = SERVERS.iter().map(|s| s.name).collect();
        eprintln!("unknown server {unknown:?}; servers: {}", names.join(", "));
        std::process::exit(2);
    }
    let mut steps = opts.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    steps.retain(|&s| s > 0);
    let servers: Vec<&Server> = SERVERS.iter().filter(|s| opts.servers.iter().any(|n| n == s.name)).collect();
    let bin = |s: &Server| if s.bin.starts_with('/') { PathBuf::from(s.bin) } else { dir.join(s.bin) };
    let mut missing: Vec<PathBuf> = servers.iter().map(|s| bin(s)).chain([dir.join("syncws")]).collect();
    missing.retain(|p| !p.exists());
    if !missing.is_empty() {
        eprintln!(
            "missing {missing:?}: run `cargo build --release -p syncws-cli -p syncws-bench` (and for wenmeng \
             `cargo build --release --manifest-path benches/seed-wenmeng/Cargo.toml`) first"
        );
        std::process::exit(2);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let before = machine();
    eprintln!("cost-curve: steps {steps:?}; load average {}", before["load_average"]);
    let started = Instant::now();
    let mut results: Vec<Value> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let rows = run_server(&dir, &bin(server), server, i, &steps, &opts);
        results.push(json!({"server": server.name, "steps": rows}));
    }
    let after = machine();
    let elapsed = started.elapsed().as_secs_f64();
    if let Err(e) = std::fs::create_dir_all(&opts.out) {
        eprintln!("cannot create {}: {e}", opts.out.display());
        std::process::exit(2);
    }
    let report = json!({
        "command": command,
        "elapsed_s": elapsed,
        "machine_before": before,
        "machine_after": after,
        "pp_secs": opts.pp_secs,
        "results": results,
    });
    let md = markdown(&report);
    for (name, text) in
        [("cost-curve.md", md.clone()), ("cost-curve.json", format!("{report:#}\n")), ("cost-curve.svg", svg(&report))]
    {
        let path = opts.out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    println!("{md}");
    eprintln!("cost-curve: done in {elapsed:.0} s; results in {}", opts.out.display());
}

/// A child process killed and reaped when dropped, whatever happened.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A holder process and its command pipe.
struct Holder {
    _proc: Killed,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
    held: usize,
}

impl Holder {
    fn spawn(exe: &Path, addr: &str, src: &str) -> Result<Holder, String> {
        let mut child = Command::new(exe)
            .args(["--hold-addr", addr, "--hold-src", src])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a holder: {e}"))?;
        let stdin = child.stdin.take().ok_or("no holder stdin")?;
        let stdout: ChildStdout = child.stdout.take().ok_or("no holder stdout")?;
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Holder { _proc: Killed(child), stdin, replies, held: 0 })
    }

    fn send(&mut self, cmd: &str) -> Result<(), String> {
        writeln!(self.stdin, "{cmd}").and_then(|_| self.stdin.flush()).map_err(|e| format!("holder gone: {e}"))
    }

    /// Waits for the holder's answer, calling `sample` every 200 ms
    /// meanwhile (the server's peaks while connections are opened).
    fn reply(&self, deadline: Instant, sample: &mut dyn FnMut()) -> Result<Value, String> {
        loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            match self.replies.recv_timeout(wait) {
                Ok(line) => {
                    return serde_json::from_str(&line).map_err(|e| format!("bad holder reply {line:?}: {e}"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => sample(),
                Err(_) => return Err("holder did not answer in time".to_owned()),
            }
        }
    }
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

fn nofile_limit(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}

fn read_num(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Threads on the whole machine (the fourth field of /proc/loadavg).
fn system_threads() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok()
}

fn run_server(dir: &Path, bin: &Path, server: &Server, index: usize, steps: &[usize], opts: &Opts) -> Vec<Value> {
    let mut rows = Vec::new();
    if let Err(e) = run_server_inner(dir, bin, server, index, steps, opts, &mut rows) {
        eprintln!("{}: {e}", server.name);
        rows.push(json!({"error": e}));
    }
    rows
}

fn run_server_inner(
    dir: &Path,
    bin: &Path,
    server: &Server,
    index: usize,
    steps: &[usize],
    opts: &Opts,
    rows: &mut Vec<Value>,
) -> Result<(), String> {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let addr = format!("127.0.0.1:{port}");
    // The server's stderr, to say why it stopped if it does.
    let err_path = std::env::temp_dir().join(format!("cost-curve-{}-{}.stderr", server.name, std::process::id()));
    let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .arg(&addr)
        .args(server.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let mut server_proc = Killed(child);
    let mut line = String::new();
    if let Some(out) = stdout {
        BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
    }
    if !line.starts_with("listening") {
        return Err(format!("{} did not start", server.name));
    }
    std::thread::sleep(Duration::from_millis(300));
    let base_rss = proc_status(pid, "VmRSS:").ok_or("no server RSS")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut holders: Vec<Holder> = Vec::new();
    let mut held = 0usize;
    for &step in steps {
        if step <= held {
            continue;
        }
        // Holders needed for this step, each filled evenly.
        let need = step.div_ceil(opts.per_holder.max(1));
        while holders.len() < need {
            // 127.(10 + server).(run).(2 + holder): fresh addresses for
            // every server, and for every run, so no TIME_WAIT is in the way.
            let src = format!("127.{}.{}.{}", 10 + index, run_octet(), 2 + holders.len());
            holders.push(Holder::spawn(&exe, &addr, &src)?);
        }
        let per = step.div_ceil(need);
        let t0 = Instant::now();
        let deadline = t0 + STEP_DEADLINE + Duration::from_secs(10);
        let mut asked = Vec::new();
        let mut remaining = step - held;
        for h in holders.iter_mut() {
            let n = per.saturating_sub(h.held).min(remaining);
            remaining -= n;
            if n > 0 {
                h.send(&format!("add {n}"))?;
            }
            asked.push(n);
        }
        let mut added = 0usize;
        let mut peak = Peak::default();
        let mut sample = || peak.sample(pid);
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut first_error = None;
        for (h, &n) in holders.iter_mut().zip(&asked) {
            if n == 0 {
                continue;
            }
            let r = h.reply(deadline, &mut sample)?;
            let ok = r["ok"].as_u64().unwrap_or(0) as usize;
            h.held += ok;
            added += ok;
            if let Some(map) = r["errors"].as_object() {
                for (k, v) in map {
                    *errors.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
            if first_error.is_none() {
                first_error = r["first_error"].as_str().map(str::to_owned);
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        held += added;
        // Let the server settle (threads parked, buffers shrunk).
        std::thread::sleep(Duration::from_secs(1));
        let rss = proc_status(pid, "VmRSS:");
        let threads = proc_status(pid, "Threads:");
        let fds = open_files(pid);
        let mut still_open = 0usize;
        let mut pongs = 0u64;
        for h in holders.iter_mut() {
            h.send("count")?;
            let r = h.reply(Instant::now() + Duration::from_secs(10), &mut || {})?;
            still_open += r["held"].as_u64().unwrap_or(0) as usize;
            pongs += r["pongs"].as_u64().unwrap_or(0);
        }
        let pp = pingpong(dir, &addr, pid, opts.pp_secs, server.raw);
        let failed = added < step - (held - added);
        let exited = server_proc.0.try_wait().ok().flatten().map(|st| {
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            // A panic's message is on the line after "panicked at".
            let lines: Vec<&str> = text.lines().collect();
            let why = match lines.iter().position(|l| l.contains("panicked at")) {
                Some(i) => lines[i..lines.len().min(i + 2)].join(" ").trim().to_owned(),
                None => lines.iter().rev().find(|l| !l.trim().is_empty()).unwrap_or(&"").trim().to_owned(),
            };
            format!("server exited ({st}; stderr: {why:?})")
        });
        let limit = if failed || !errors.is_empty() || exited.is_some() {
            Some(diagnose(&errors, &peak, exited.as_deref()))
        } else {
            None
        };
        let rss_per_conn = rss.map(|r| r.saturating_sub(base_rss) as f64 / held.max(1) as f64);
        let row = json!({
            "target": step,
            "held": held,
            "still_open": still_open,
            "added": added,
            "connects_per_s": added as f64 / secs,
            "step_secs": secs,
            "server_rss_kib": rss,
            "server_base_rss_kib": base_rss,
            "rss_per_conn_kib": rss_per_conn,
            "server_threads": threads,
            "server_fds": fds,
            "server_maps": memory_maps(pid),
            "peak_server_maps": peak.maps,
            "peak_server_threads": peak.threads,
            "peak_server_fds": peak.fds,
            "pongs_sent": pongs,
            "pp_p50_us": pp["p50_us"],
            "pp_p99_us": pp["p99_us"],
            "pp_msgs_per_s": pp["msgs_per_s"],
            "pp_errors": pp["errors"],
            "pp_first_error": pp["first_error"],
            "connect_errors": errors,
            "first_connect_error": first_error,
            "limit": limit,
            "load_average": machine()["load_average"],
        });
        eprintln!(
            "{:18} {:>6} held ({} still open), {:.0} connects/s, RSS {} KiB/conn, {} threads, pp p50 {} p99 {} µs{}",
            server.name,
            held,
            still_open,
            added as f64 / secs,
            fmt(rss_per_conn),
            threads.map_or("?".into(), |t| t.to_string()),
            fmt(pp["p50_us"].as_f64()),
            fmt(pp["p99_us"].as_f64()),
            limit.as_deref().map(|l| format!("; stopped: {l}")).unwrap_or_default()
        );
        rows.push(row);
        if failed || exited.is_some() {
            break;
        }
    }
    drop(holders);
    drop(server_proc);
    let _ = std::fs::remove_file(&err_path);
    // Let the kernel tidy the closed sockets before the next server starts.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// The server's highest descriptor, thread and memory-map counts seen
/// while a step's connections were being opened.
#[derive(Default)]
struct Peak {
    fds: usize,
    threads: u64,
    maps: usize,
    /// The server's open-files limit.
    nofile: Option<u64>,
}

impl Peak {
    fn sample(&mut self, pid: u32) {
        self.fds = self.fds.max(open_files(pid).unwrap_or(0));
        self.threads = self.threads.max(proc_status(pid, "Threads:").unwrap_or(0));
        self.maps = self.maps.max(memory_maps(pid).unwrap_or(0));
        self.nofile = self.nofile.or(nofile_limit(pid));
    }
}

/// The server's memory maps (`/proc/PID/maps` lines), bounded by
/// `vm.max_map_count`.
fn memory_maps(pid: u32) -> Option<usize> {
    std::fs::read(format!("/proc/{pid}/maps")).ok().map(|m| m.iter().filter(|&&b| b == b'\n').count())
}

/// Which limit stopped a step, from the holders' errors and the server's
/// peaks while the step ran.
fn diagnose(errors: &BTreeMap<String, u64>, peak: &Peak, exited: Option<&str>) -> String {
    let mut why = Vec::new();
    if let Some(e) = exited {
        why.push(e.to_owned());
    }
    if let Some(l) = peak.nofile {
        if peak.fds as u64 + 16 >= l {
            why.push(format!("EMFILE on the server's side ({} of {l} descriptors open)", peak.fds));
        }
    }
    if let Some(max) = read_num("/proc/sys/vm/max_map_count") {
        if peak.maps as u64 * 10 >= max * 9 {
            why.push(format!(
                "vm.max_map_count: {} memory maps of {max} at {} threads (a std thread takes 4: stack, its guard \
                 page, signal stack, its guard page)",
                peak.maps, peak.threads
            ));
        }
    }
    let pid_max = read_num("/proc/sys/kernel/pid_max");
    let threads_max = read_num("/proc/sys/kernel/threads-max");
    if let (Some(t), Some(p)) = (system_threads(), pid_max) {
        let cap = p.min(threads_max.unwrap_or(u64::MAX));
        if t + 256 >= cap {
            why.push(format!("threads: {t} on the machine, pid_max {p}, threads-max {}", threads_max.unwrap_or(0)));
        }
    }
    for (kind, n) in errors {
        why.push(format!("{n} × {kind}"));
    }
    if why.is_empty() {
        "unknown".into()
    } else {
        why.join("; ")
    }
}

fn pingpong(dir: &Path, addr: &str, pid: u32, secs: f64, raw: bool) -> Value {
    let run = || -> Result<Value, String> {
        let child = Command::new(dir.join("syncws"))
            .args(["bench", "--url", &format!("ws://{addr}/"), "--mode", "ping-pong", "--conns", "64"])
            .args(["--duration", &secs.to_string(), "--warmup", "0.5", "--server-pid", &pid.to_string()])
            .args(raw.then_some("--raw-echo"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut lg = Killed(child);
        let deadline = Instant::now() + Duration::from_secs_f64(secs + 20.0);
        loop {
            match lg.0.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return Err("ping-pong overran its deadline".into()),
            }
        }
        let mut out = String::new();
        if let Some(mut o) = lg.0.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let line = out.lines().find(|l| l.starts_with('{')).ok_or_else(|| format!("no report: {out}"))?;
        serde_json::from_str(line).map_err(|e| e.to_string())
    };
    run().unwrap_or_else(|e| json!({"errors": 1, "first_error": e}))
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "model": model,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average": read("/proc/loadavg").trim(),
        "pid_max": read_num("/proc/sys/kernel/pid_max"),
        "threads_max": read_num("/proc/sys/kernel/threads-max"),
        "max_map_count": read_num("/proc/sys/vm/max_map_count"),
        "ip_local_port_range": read("/proc/sys/net/ipv4/ip_local_port_range").split_whitespace().collect::<Vec<_>>().join("-"),
        "nofile": nofile_limit(std::process::id()),
    })
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x >= 1000.0 => format!("{x:.0}"),
        Some(x) if x >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn markdown(report: &Value) -> String {
    let mut s = String::new();
    let b = &report["machine_before"];
    let _ = writeln!(s, "# Cost curve: idle connections held, 1k to 19k\n");
    let _ = writeln!(s, "Command: `{}` (under `flock /work/bench.lock`)\n", report["command"].as_str().unwrap_or(""));
    let _ = writeln!(
        s,
        "Machine: {} × {}, Linux {}; pid_max {}, threads-max {}, vm.max_map_count {}, ephemeral ports {}, \
         open files per process {}. Load average before: {}; after: {}. Whole run {:.0} s.\n",
        b["nproc"],
        b["model"].as_str().unwrap_or("?"),
        b["kernel"].as_str().unwrap_or("?"),
        b["pid_max"],
        b["threads_max"],
        b["max_map_count"],
        b["ip_local_port_range"].as_str().unwrap_or("?"),
        b["nofile"],
        b["load_average"].as_str().unwrap_or("?"),
        report["machine_after"]["load_average"].as_str().unwrap_or("?"),
        report["elapsed_s"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(
        s,
        "Each step adds idle connections to those already held (holder processes, mio, one 127.x.r.y source \
         address each); RSS per connection is the server's RSS growth since it started ÷ connections held; \
         connects/s is the step's connections (TCP + upgrade, 64 in flight per holder) ÷ its wall time; \
         ping-pong is `syncws bench --mode ping-pong --conns 64 --duration {}` beside the idle connections. \
         syncws runs with `max_connections` 20,000 (default 16,384).\n",
        report["pp_secs"]
    );
    let _ = writeln!(
        s,
        "| server | held | RSS per conn KiB | server threads | connects/s | ping-pong p50 µs | p99 µs | ping-pong msgs/s | stopped by |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let empty = Vec::new();
    for r in report["results"].as_array().unwrap_or(&empty) {
        let name = r["server"].as_str().unwrap_or("?");
        for row in r["steps"].as_array().unwrap_or(&empty) {
            if let Some(e) = row["error"].as_str() {
                let _ = writeln!(s, "| {name} | – | – | – | – | – | – | – | {e} |");
                continue;
            }
            let pp_err = row["pp_errors"]
                .as_u64()
                .filter(|&e| e > 0)
                .map(|e| format!(" (ping-pong: {e} errors, {})", row["pp_first_error"].as_str().unwrap_or("")));
            let _ = writeln!(
                s,
                "| {name} | {}{} | {} | {} | {} | {} | {} | {} | {}{} |",
                row["held"],
                if row["still_open"] != row["held"] {
                    format!(" ({} still open)", row["still_open"])
                } else {
                    String::new()
                },
                fmt(row["rss_per_conn_kib"].as_f64()),
                row["server_threads"],
                fmt(row["connects_per_s"].as_f64()),
                fmt(row["pp_p50_us"].as_f64()),
                fmt(row["pp_p99_us"].as_f64()),
                fmt(row["pp_msgs_per_s"].as_f64()),
                row["limit"].as_str().unwrap_or(""),
                pp_err.unwrap_or_default(),
            );
        }
    }
    // The issue's targets for syncws.
    if let Some(sy) = report["results"].as_array().and_then(|a| a.iter().find(|r| r["server"] == "syncws")) {
        // The last step measured in full, with the server alive and answering.
        let rows: Vec<&Value> = sy["steps"]
            .as_array()
            .map(|a| a.iter().filter(|r| r["rss_per_conn_kib"].is_f64() && r["pp_p99_us"].is_f64()).collect())
            .unwrap_or_default();
        let most = sy["steps"].as_array().and_then(|a| a.iter().filter_map(|r| r["still_open"].as_u64()).max());
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            let held = last["held"].as_u64().unwrap_or(0);
            let kib = last["rss_per_conn_kib"].as_f64();
            let (p1, pn) = (first["pp_p99_us"].as_f64(), last["pp_p99_us"].as_f64());
            let _ = writeln!(s, "\n## Issue 17 targets (syncws)\n");
            let _ = writeln!(
                s,
                "- 19,000 idle connections held with at most 14 KiB RSS each: {} held at most; {} KiB each at \
                 {held}, the last step measured in full ({})",
                most.unwrap_or(0),
                fmt(kib),
                if most.unwrap_or(0) >= 19_000 && kib.is_some_and(|k| k <= 14.0) { "met" } else { "NOT met" }
            );
            let ratio = p1.zip(pn).map(|(a, b)| b / a);
            let _ = writeln!(
                s,
                "- ping-pong p99 with {held} held within 1.5× of its value with {} held: {} vs {} µs, {} ({})",
                first["held"],
                fmt(pn),
                fmt(p1),
                ratio.map_or("–".into(), |r| format!("{r:.2}×")),
                if ratio.is_some_and(|r| r <= 1.5) { "met" } else { "NOT met" }
            );
        }
    }
    let _ = writeln!(s, "\n![cost curve](cost-curve.svg)");
    s
}

/// Connections held, RSS per connection, ping-pong p99.
type Point = (f64, Option<f64>, Option<f64>);

/// Two panels: RSS per connection (log scale) and ping-pong p99 against
/// the connections held, one line per server.
fn svg(report: &Value) -> String {
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
    let empty = Vec::new();
    let series: Vec<(String, Vec<Point>)> = report["results"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|r| {
            let pts = r["steps"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|row| {
                    Some((row["held"].as_f64()?, row["rss_per_conn_kib"].as_f64(), row["pp_p99_us"].as_f64()))
                })
                .collect();
            (r["server"].as_str().unwrap_or("?").to_owned(), pts)
        })
        .collect();
    let (w, h, pw, ph, top, left) = (960.0, 400.0, 380.0, 270.0, 60.0, 70.0);
    let max_x = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(1000.0_f64, f64::max);
    let max_x = (max_x / 5000.0).ceil() * 5000.0;
    let max_p99 = series.iter().flat_map(|(_, p)| p.iter().filter_map(|q| q.2)).fold(100.0_f64, f64::max);
    let p99_step = [100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0]
        .into_iter()
        .find(|s| max_p99 / s <= 6.0)
        .unwrap_or(100_000.0);
    let max_p99 = (max_p99 / p99_step).ceil() * p99_step;
    let (rss_lo, rss_hi) = (2.0_f64, 512.0_f64);
    let names: Vec<&str> = series.iter().map(|(name, _)| name.as_str()).collect();
    let mut s = syncws_bench::svg_open(
        w,
        h,
        "Cost curve: idle connections held vs server RSS per connection and ping-pong p99 (64 active conns)",
        &names,
        &colors,
        28.0,
    );
    for panel in 0..2 {
        let x0 = left + panel as f64 * (pw + 100.0);
        let (y0, y1) = (top + ph, top);
        let _ = writeln!(s, r##"<rect x="{x0}" y="{y1}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
        let title = if panel == 0 {
            "server RSS per connection, KiB (log scale)"
        } else {
            "ping-pong p99 latency, µs, 64 active conns"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"#,
            x0 + pw / 2.0,
            y1 - 6.0
        );
        let mut xt = 0.0;
        while xt <= max_x {
            let x = x0 + xt / max_x * pw;
            let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{}" stroke="#444"/>"##, y0 + 4.0);
            let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}k</text>"#, y0 + 16.0, xt / 1000.0);
            xt += 5000.0;
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">idle connections held</text>"#,
            x0 + pw / 2.0,
            y0 + 32.0
        );
        let ypos = |v: f64| -> f64 {
            if panel == 0 {
                y0 - (v.clamp(rss_lo, rss_hi).ln() - rss_lo.ln()) / (rss_hi.ln() - rss_lo.ln()) * ph
            } else {
                y0 - v.min(max_p99) / max_p99 * ph
            }
        };
        let ticks: Vec<f64> = if panel == 0 {
            (1..=9).map(|k| f64::from(1u32 << k)).collect()
        } else {
            (0..=((max_p99 / p99_step) as usize)).map(|k| k as f64 * p99_step).collect()
        };
        for t in ticks {
            let y = ypos(t);
            let _ = writeln!(s, r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##, x0, x0 + pw);
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{t}</text>"#, x0 - 4.0, y + 4.0);
        }
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            let coords: Vec<(f64, f64)> = pts
                .iter()
                .filter_map(|&(x, rss, p99)| {
                    let v = if panel == 0 { rss } else { p99 }?;
                    Some((x0 + x / max_x * pw, ypos(v)))
                })
                .collect();
            let path: Vec<String> = coords.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#, path.join(" "));
            for (x, y) in coords {
                let _ =
                    writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{c}"><title>{name}</title></circle>"#);
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

// ---- holder side ----

/// The current `add` command: still to open, in flight, done, errors by
/// kind, the first error, when it started.
type Job = (usize, usize, usize, BTreeMap<String, u64>, Option<String>, Instant);

enum State {
    Connecting,
    Upgrading,
    Open,
}

struct Conn {
    sock: MioStream,
    state: State,
    buf: Vec<u8>,
    started: Instant,
    accept: String,
}

/// Holder mode: reads `add N` and `count` lines on stdin, answers one JSON
/// line each on stdout; holds every connection until stdin closes.
fn holder(addr: SocketAddr, src: std::net::IpAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut open = 0usize;
    let mut dropped = 0u64;
    let mut pongs = 0u64;
    let mut serial = 0u64;
    // The current `add`: still to open, in flight, done, errors.
    let mut job: Option<Job> = None;
    let out = io::stdout();
    loop {
        match rx.try_recv() {
            Ok(cmd) => {
                if let Some(n) = cmd.strip_prefix("add ").and_then(|n| n.trim().parse::<usize>().ok()) {
                    job = Some((n, 0, 0, BTreeMap::new(), None, Instant::now()));
                } else if cmd.trim() == "count" {
                    let mut o = out.lock();
                    writeln!(o, "{}", json!({"held": open, "dropped": dropped, "pongs": pongs}))?;
                    o.flush()?;
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        // Open new connections up to the window.
        if let Some((todo, inflight, _, errors, first, _)) = job.as_mut() {
            while *todo > 0 && *inflight < WINDOW {
                *todo -= 1;
                serial += 1;
                match start_connect(addr, src, serial) {
                    Ok((mut sock, accept)) => {
                        let i = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        poll.registry().register(&mut sock, Token(i), Interest::WRITABLE | Interest::READABLE)?;
                        conns[i] = Some(Conn {
                            sock,
                            state: State::Connecting,
                            buf: Vec::new(),
                            started: Instant::now(),
                            accept,
                        });
                        *inflight += 1;
                    }
                    Err(e) => {
                        let kind = classify(&e, "connect");
                        *errors.entry(kind).or_default() += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else { continue };
            let was_open = matches!(c.state, State::Open);
            match step_conn(c, &mut pongs) {
                Ok(true) => {
                    if !was_open && matches!(c.state, State::Open) {
                        poll.registry().reregister(&mut c.sock, Token(i), Interest::READABLE)?;
                        open += 1;
                        if let Some((_, inflight, done, ..)) = job.as_mut() {
                            *inflight -= 1;
                            *done += 1;
                        }
                    }
                }
                res => {
                    let err = match res {
                        Err(e) if e.kind() == io::ErrorKind::Other => e.to_string(),
                        Err(e) => classify(&e, "socket"),
                        _ => step_conn_error(c).unwrap_or_else(|| "closed by the server".to_owned()),
                    };
                    let mut c = conns[i].take().expect("present");
                    let _ = poll.registry().deregister(&mut c.sock);
                    free.push(i);
                    if was_open {
                        open -= 1;
                        dropped += 1;
                    } else if let Some((_, inflight, _, errors, first, _)) = job.as_mut() {
                        *inflight -= 1;
                        *errors.entry(err.clone()).or_default() += 1;
                        first.get_or_insert(err);
                    }
                }
            }
        }
        // Handshakes past their deadline.
        let now = Instant::now();
        for (i, slot) in conns.iter_mut().enumerate() {
            let late =
                slot.as_ref().is_some_and(|c| !matches!(c.state, State::Open) && now - c.started > HANDSHAKE_DEADLINE);
            if late {
                let mut c = slot.take().expect("present");
                let _ = poll.registry().deregister(&mut c.sock);
                free.push(i);
                if let Some((_, inflight, _, errors, first, _)) = job.as_mut() {
                    *inflight -= 1;
                    let what = match c.state {
                        State::Connecting => "TCP connect not completed in 15 s (server's accept backlog full)",
                        _ => "no upgrade answer in 15 s (server not serving the accepted socket)",
                    };
                    *errors.entry(what.to_owned()).or_default() += 1;
                    first.get_or_insert_with(|| what.to_owned());
                }
            }
        }
        let finished = job.as_ref().is_some_and(|(todo, inflight, _, _, _, t0)| {
            (*todo == 0 && *inflight == 0) || t0.elapsed() > STEP_DEADLINE
        });
        if finished {
            let (todo, inflight, done, mut errors, first, t0) = job.take().expect("present");
            if todo + inflight > 0 {
                *errors.entry(format!("step deadline {STEP_DEADLINE:?} passed")).or_default() +=
                    (todo + inflight) as u64;
            }
            let mut o = out.lock();
            writeln!(
                o,
                "{}",
                json!({"ok": done, "secs": t0.elapsed().as_secs_f64(), "held": open, "errors": errors, "first_error": first})
            )?;
            o.flush()?;
        }
    }
}

/// The kind of a failed connect, for the report.
fn classify(e: &io::Error, what: &str) -> String {
    match e.raw_os_error() {
        Some(24) => "EMFILE on the load generator's side (its open-files limit)".into(),
        Some(23) => "ENFILE (the system's file table)".into(),
        Some(98) | Some(99) => "ephemeral ports of the source address used up (EADDRINUSE/EADDRNOTAVAIL)".into(),
        Some(111) => "connection refused (server not listening)".into(),
        Some(104) => "connection reset by the server".into(),
        Some(32) => "closed by the server before the upgrade request was written (a refusal)".into(),
        _ => format!("{what}: {}", e.kind()),
    }
}

/// The third octet of this run's holder addresses, from the process id:
/// a holder's closed connections stay in TIME_WAIT on its address for a
/// minute, and the kernel's search for a free port on an address whose
/// ports are mostly in TIME_WAIT slows connects by ten times and more (a
/// run right after another, on the same addresses: 19,000 held at 430-560
/// connects/s instead of 5,800). Consecutive runs have other process ids.
fn run_octet() -> u32 {
    1 + std::process::id() % 250
}

/// Starts a non-blocking connect from `src`; returns the socket and the
/// `Sec-WebSocket-Accept` the server must answer.
fn start_connect(addr: SocketAddr, src: std::net::IpAddr, serial: u64) -> io::Result<(MioStream, String)> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let std: TcpStream = sock.into();
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&serial.to_le_bytes());
    key[8..].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    let key = STANDARD.encode(key);
    let accept = syncws_bench::accept_key(&key);
    let mio = MioStream::from_std(std);
    // The request is written once the connect completes; the key travels
    // in the accept string's place until then.
    Ok((mio, format!("{key}\n{accept}")))
}

/// The last socket error of a failed connection, classified.
fn step_conn_error(c: &Conn) -> Option<String> {
    match c.sock.take_error() {
        Ok(Some(e)) => Some(classify(&e, "socket")),
        _ => match c.state {
            State::Connecting => Some("connect failed".into()),
            State::Upgrading => {
                let head = String::from_utf8_lossy(&c.buf);
                let status = head.lines().next().unwrap_or("").to_owned();
                Some(if status.is_empty() {
                    "closed during the upgrade (server refused the socket)".to_owned()
                } else {
                    format!("server answered {status:?}")
                })
            }
            State::Open => None,
        },
    }
}

/// Advances one connection on a readiness event. `Ok(false)`: it ended.
fn step_conn(c: &mut Conn, pongs: &mut u64) -> io::Result<bool> {
    if let State::Connecting = c.state {
        if let Some(e) = c.sock.take_error()? {
            return Err(e);
        }
        if c.sock.peer_addr().is_err() {
            return Ok(true); // not connected yet
        }
        let (key, accept) = c.accept.split_once('\n').map(|(k, a)| (k.to_owned(), a.to_owned())).unwrap_or_default();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            c.sock.peer_addr()?
        );
        // A request this small goes into an empty socket buffer whole.
        let n = c.sock.write(req.as_bytes())?;
        if n != req.len() {
            return Err(io::Error::other("upgrade request written in part"));
        }
        c.accept = accept;
        c.state = State::Upgrading;
    }
    let mut tmp = [0u8; 4096];
    loop {
        match c.sock.read(&mut tmp) {
            Ok(0) => return Ok(false),
            Ok(n) => c.buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if let State::Upgrading = c.state {
        let Some(end) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(true) };
        let head = String::from_utf8_lossy(&c.buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Ok(false);
        }
        let ok = head.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(k, v)| k.eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == c.accept)
        });
        if !ok {
            return Err(io::Error::other("wrong Sec-WebSocket-Accept"));
        }
        c.buf.drain(..end + 4);
        c.buf.shrink_to_fit();
        c.state = State::Open;
    }
    // Frames from the server: answer Pings, end on Close.
    loop {
        if c.buf.len() < 2 {
            break;
        }
        let (op, len7) = (c.buf[0] & 0x0f, (c.buf[1] & 0x7f) as usize);
        let (hdr, len) = match len7 {
            126 if c.buf.len() >= 4 => (4, u16::from_be_bytes([c.buf[2], c.buf[3]]) as usize),
            127 if c.buf.len() >= 10 => (10, u64::from_be_bytes(c.buf[2..10].try_into().expect("8 bytes")) as usize),
            126 | 127 => break,
            n => (2, n),
        };
        if c.buf.len() < hdr + len {
            break;
        }
        match op {
            0x8 => return Ok(false),
            0x9 if len <= 125 => {
                // A masked Pong with the same payload (mask key zero: the
                // payload goes as it is).
                let mut pong = vec![0x8a, 0x80 | len as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&c.buf[hdr..hdr + len]);
                c.sock.write_all(&pong)?;
                *pongs += 1;
            }
            _ => {}
        }
        c.buf.drain(..hdr + len);
    }
    if c.buf.capacity() > 4096 && c.buf.is_empty() {
        c.buf = Vec::new();
    }
    Ok(true)
}

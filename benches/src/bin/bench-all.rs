//! The benchmark runner: starts each peer server as a child process, drives
//! it with `syncws bench` (a separate process, so the load generator's CPU
//! is never counted as the server's), and writes `results.md`,
//! `results.json` and `chart.svg`.
//!
//! ```sh
//! cargo build --release -p syncws-cli -p syncws-bench
//! target/release/bench-all            # ~10 minutes on 2 cores
//! target/release/bench-all --quick    # ~2 minutes, for iteration
//! ```
//!
//! Servers are interleaved round by round (the order rotates each round) and
//! every server is restarted for every scenario, so one scenario's memory
//! never shows up in another's; the table holds medians over the rounds.
//! `--pin` adds a pinned run of every cell (client and server on a core
//! each, `taskset`), reported apart; naming `syncws-twin` in `--servers`
//! adds the identical-server check (issue 17), `wsmin` the minimal
//! WebSocket echo and `wsmin-owned` the same passing each small message
//! through a `Vec` of its own (references for server CPU).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

/// Runs the syncws benchmark matrix against the peer servers.
#[derive(Parser, Debug, Clone)]
struct Opts {
    /// About two minutes: 2 rounds of 1 s windows, 1000 idle connections.
    #[arg(long)]
    quick: bool,
    /// Rounds (medians are taken over them).
    #[arg(long)]
    rounds: Option<usize>,
    /// Measurement window of each run, seconds.
    #[arg(long)]
    round_secs: Option<f64>,
    /// Output folder.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Only these servers (comma-separated names). `wsmin`, the minimal
    /// WebSocket echo, `wsmin-owned`, the same with an owned `Vec` per small
    /// message, and `syncws-twin` are outside the default set: they run
    /// only when named here.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Only these scenarios (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Also run every cell with the load generator pinned to CPU 0 and the
    /// server to CPU 1 (`taskset`), interleaved with the unpinned runs;
    /// reported in a separate table (the unpinned one stays the headline).
    #[arg(long)]
    pin: bool,
}

struct Server {
    name: &'static str,
    bin: &'static str,
    /// Arguments after the address.
    args: &'static [&'static str],
    /// Echoes raw bytes (the load generator must accept masked frames).
    raw: bool,
    broadcast: bool,
    /// A reference outside the default matrix: run only when named in
    /// `--servers`.
    extra: bool,
}

/// The servers. One more is one more line here; a server that is the same
/// binary as an earlier entry (`wsmin-owned`, `syncws-twin`) is matched by
/// its name only.
const SERVERS: &[Server] = &[
    Server { name: "syncws", bin: "srv-syncws", args: &[], raw: false, broadcast: true, extra: false },
    Server { name: "tungstenite", bin: "srv-tungstenite", args: &[], raw: false, broadcast: true, extra: false },
    Server {
        name: "tokio-tungstenite",
        bin: "srv-tokio-tungstenite",
        args: &[],
        raw: false,
        broadcast: true,
        extra: false,
    },
    Server { name: "fastwebsockets", bin: "srv-fastwebsockets", args: &[], raw: false, broadcast: false, extra: false },
    Server { name: "raw TCP (threads)", bin: "srv-rawtcp", args: &[], raw: true, broadcast: false, extra: false },
    Server { name: "minimal WebSocket echo", bin: "srv-wsmin", args: &[], raw: false, broadcast: true, extra: true },
    // The same, each small message passed through a `Vec` of its own: the
    // floor for a library that hands the application owned messages, as
    // syncws's `on_message` does. Echo scenarios only (a publish is the
    // same with and without it).
    Server { name: "wsmin-owned", bin: "srv-wsmin", args: &["--owned"], raw: false, broadcast: false, extra: true },
    // The seed system (issue 17), from its own crate outside the workspace:
    // an absolute path, which `dir.join` keeps as it is.
    Server { name: "wenmeng", bin: SEED_BIN, args: &[], raw: false, broadcast: true, extra: false },
    // The harness check of issue 17: the syncws binary again under another
    // name; its ratios to `syncws` must be noise (0.95-1.05).
    Server { name: "syncws-twin", bin: "srv-syncws", args: &[], raw: false, broadcast: true, extra: true },
];

/// The seed system's echo server (wenmeng 0.3), built by `build_seed`.
const SEED_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/seed-wenmeng/target/release/srv-wenmeng");

/// Builds the seed system's crate (outside the workspace, its own target
/// directory); a failed build ends the run: the seed is part of the
/// default matrix, not something to skip quietly.
fn build_seed() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/seed-wenmeng/Cargo.toml");
    eprintln!("bench-all: cargo build --release --manifest-path {manifest}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    match Command::new(cargo).args(["build", "--release", "--manifest-path", manifest]).status() {
        Ok(st) if st.success() => {}
        Ok(st) => {
            eprintln!("building the seed system (wenmeng) failed: {st}; leave it out with --servers");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("cannot run cargo to build the seed system (wenmeng): {e}");
            std::process::exit(2);
        }
    }
}

/// The CPU the load generator is pinned to with `--pin`; the server gets
/// the other one.
const CLIENT_CPU: usize = 0;
const SERVER_CPU: usize = 1;

/// One number taken from the load generator's JSON line.
struct Metric {
    key: &'static str,
    label: &'static str,
    higher_is_better: bool,
}

struct Scenario {
    id: &'static str,
    title: String,
    args: Vec<String>,
    metrics: Vec<Metric>,
    /// Which servers run it.
    only: fn(&Server) -> bool,
    /// Longest the load generator may take.
    limit: Duration,
}

fn metric(key: &'static str, label: &'static str, higher_is_better: bool) -> Metric {
    Metric { key, label, higher_is_better }
}

fn scenarios(secs: f64, warmup: f64, idle_conns: usize) -> Vec<Scenario> {
    let timed = |mode: &str, conns: usize, in_flight: usize, size: usize| -> Vec<String> {
        format!(
            "--mode {mode} --conns {conns} --in-flight {in_flight} --size {size} --duration {secs} --warmup {warmup}"
        )
        .split(' ')
        .map(str::to_owned)
        .collect()
    };
    let split = |s: String| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let limit = Duration::from_secs_f64(secs + warmup + 60.0);
    let all: fn(&Server) -> bool = |_| true;
    vec![
        Scenario {
            id: "pp1",
            title: "ping-pong, 1 conn, 32 B".into(),
            args: timed("ping-pong", 1, 1, 32),
            metrics: vec![metric("p50_us", "p50 latency µs", false), metric("p99_us", "p99 latency µs", false)],
            only: all,
            limit,
        },
        Scenario {
            id: "pp64",
            title: "ping-pong, 64 conns, 32 B".into(),
            args: timed("ping-pong", 64, 1, 32),
            metrics: vec![
                metric("msgs_per_s", "msgs/s", true),
                metric("server_cpu_us_per_msg", "server CPU µs/msg", false),
            ],
            only: all,
            limit,
        },
        Scenario {
            id: "pipe1k",
            title: "pipelined, 8 conns × 32 in flight, 1 KiB".into(),
            args: timed("pipelined", 8, 32, 1024),
            metrics: vec![
                metric("msgs_per_s", "msgs/s", true),
                metric("server_cpu_us_per_msg", "server CPU µs/msg", false),
            ],
            only: all,
            limit,
        },
        Scenario {
            id: "pipe64k",
            title: "pipelined, 4 conns × 4 in flight, 64 KiB".into(),
            args: timed("pipelined", 4, 4, 64 << 10),
            metrics: vec![
                metric("mb_per_s", "MB/s", true),
                metric("server_cpu_us_per_msg", "server CPU µs/msg", false),
            ],
            only: all,
            limit,
        },
        Scenario {
            id: "pipe1m",
            title: "pipelined, 1 conn × 2 in flight, 1 MiB".into(),
            args: timed("pipelined", 1, 2, 1 << 20),
            metrics: vec![
                metric("mb_per_s", "MB/s", true),
                metric("server_cpu_us_per_msg", "server CPU µs/msg", false),
            ],
            only: all,
            limit,
        },
        Scenario {
            id: "idle",
            title: format!("{idle_conns} idle connections"),
            args: split(format!("--mode idle --conns {idle_conns} --hold 1")),
            metrics: vec![
                metric("rss_per_conn_kib", "RSS per conn KiB", false),
                metric("server_threads", "server threads", false),
            ],
            only: all,
            limit: Duration::from_secs(120),
        },
        Scenario {
            id: "idle10k",
            title: "10,000 idle connections (syncws only)".into(),
            args: split("--mode idle --conns 10000 --hold 1".into()),
            metrics: vec![
                metric("connected", "connections held", true),
                metric("rss_per_conn_kib", "RSS per conn KiB", false),
            ],
            only: |s| s.name == "syncws",
            limit: Duration::from_secs(180),
        },
        Scenario {
            id: "connect",
            title: format!("connects per second ({idle_conns} conns, 2 client threads)"),
            args: split(format!("--mode connect --conns {idle_conns} --threads 2")),
            metrics: vec![
                metric("msgs_per_s", "connects/s", true),
                metric("server_cpu_us_per_msg", "server CPU µs/connect", false),
            ],
            only: all,
            limit: Duration::from_secs(120),
        },
        Scenario {
            id: "bcast",
            title: "broadcast, 1 sender → 1000 subscribers, 32 B".into(),
            args: split(format!("--mode broadcast --conns 1000 --size 32 --duration {secs} --warmup {warmup}")),
            metrics: bcast_metrics(),
            only: |s| s.broadcast,
            limit,
        },
        Scenario {
            id: "bcast10k",
            title: "broadcast, 1 sender → 10,000 subscribers, 32 B".into(),
            args: split(format!("--mode broadcast --conns 10000 --size 32 --duration {secs} --warmup {warmup}")),
            metrics: bcast_metrics(),
            only: |s| s.broadcast,
            limit: Duration::from_secs_f64(secs + warmup + 180.0),
        },
    ]
}

fn bcast_metrics() -> Vec<Metric> {
    vec![
        metric("p99_us", "p99 delivery latency µs", false),
        metric("p50_us", "p50 delivery latency µs", false),
        metric("msgs_per_s", "deliveries/s", true),
        metric("server_cpu_us_per_msg", "server CPU µs/delivery", false),
    ]
}

fn main() {
    let opts = Opts::parse();
    let rounds = opts.rounds.unwrap_or(if opts.quick { 2 } else { 3 }).max(1);
    let secs = opts.round_secs.unwrap_or(if opts.quick { 1.0 } else { 3.0 });
    let warmup = if opts.quick { 0.3 } else { 0.5 };
    let idle_conns = if opts.quick { 1000 } else { 2000 };
    let dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let loadgen = dir.join("syncws");
    if opts.servers.is_empty() || opts.servers.iter().any(|n| n == "wenmeng") {
        build_seed();
    }
    let mut missing: Vec<PathBuf> =
        SERVERS.iter().map(|s| dir.join(s.bin)).chain([loadgen.clone(), dir.join("bench-deflate")]).collect();
    missing.retain(|p| !p.exists());
    if !missing.is_empty() {
        eprintln!("missing {missing:?}: run `cargo build --release -p syncws-cli -p syncws-bench` first");
        std::process::exit(2);
    }
    // A server is named by its display name or its binary's suffix
    // (`raw TCP (threads)` or `rawtcp`); an unknown name is an error, not a
    // silently smaller run.
    let first_of_bin = |s: &Server| SERVERS.iter().find(|x| x.bin == s.bin).is_some_and(|x| x.name == s.name);
    // The binary's name without `srv-`, for the first server of each binary.
    let short = |s: &Server| {
        let file = Path::new(s.bin).file_name().and_then(|f| f.to_str()).unwrap_or(s.bin);
        first_of_bin(s).then(|| file.trim_start_matches("srv-").to_string())
    };
    let server_matches = |s: &Server, n: &str| n == s.name || short(s).is_some_and(|b| b == n);
    let all_scens = scenarios(secs, warmup, idle_conns);
    let unknown: Vec<&String> = opts
        .servers
        .iter()
        .filter(|n| !SERVERS.iter().any(|s| server_matches(s, n)))
        .chain(
            opts.scenarios.iter().filter(|n| n.as_str() != DEFLATE_ID && !all_scens.iter().any(|s| s.id == n.as_str())),
        )
        .collect();
    if !unknown.is_empty() {
        let names: Vec<String> = SERVERS
            .iter()
            .map(|s| match short(s) {
                Some(b) if b != s.name => format!("{b} ({})", s.name),
                _ => s.name.to_string(),
            })
            .collect();
        let ids: Vec<&str> = all_scens.iter().map(|s| s.id).chain([DEFLATE_ID]).collect();
        eprintln!(
            "unknown server or scenario {unknown:?}; servers: {}; scenarios: {}",
            names.join(", "),
            ids.join(",")
        );
        std::process::exit(2);
    }
    let servers: Vec<&Server> = SERVERS
        .iter()
        .filter(|s| if opts.servers.is_empty() { !s.extra } else { opts.servers.iter().any(|n| server_matches(s, n)) })
        .collect();
    let scens: Vec<Scenario> = all_scens
        .into_iter()
        .filter(|s| opts.scenarios.is_empty() || opts.scenarios.iter().any(|n| n == s.id))
        .collect();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine_before = machine();
    eprintln!("bench-all: {rounds} rounds, {secs} s windows; {}", machine_before["load_average"]);
    let started = Instant::now();
    // runs[scenario id][server name] = one JSON report per round; `pinned`
    // the same with --pin.
    let mut runs: BTreeMap<&str, BTreeMap<&str, Vec<Value>>> = BTreeMap::new();
    let mut pinned: BTreeMap<&str, BTreeMap<&str, Vec<Value>>> = BTreeMap::new();
    let pin_modes: &[bool] = if opts.pin { &[false, true] } else { &[false] };
    for round in 0..rounds {
        for sc in &scens {
            let mut order: Vec<&&Server> = servers.iter().filter(|s| (sc.only)(s)).collect();
            if !order.is_empty() {
                let k = round % order.len();
                order.rotate_left(k);
            }
            for (server, &pin) in order.iter().flat_map(|s| pin_modes.iter().map(move |p| (s, p))) {
                let report =
                    run_one(&dir, &loadgen, server, sc, pin).unwrap_or_else(|e| json!({"errors": 1, "first_error": e}));
                eprintln!(
                    "round {} {:8} {:18}{} {}",
                    round + 1,
                    sc.id,
                    server.name,
                    if pin { " pinned" } else { "" },
                    sc.metrics
                        .iter()
                        .map(|m| format!("{}={}", m.key, fmt_num(report[m.key].as_f64())))
                        .chain([
                            format!("client_cpu={}%", fmt_num(report["client_cpu_pct"].as_f64())),
                            format!("errors={}", report["errors"])
                        ])
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let table = if pin { &mut pinned } else { &mut runs };
                table.entry(sc.id).or_default().entry(server.name).or_default().push(report);
            }
        }
    }
    let run_deflate = (opts.scenarios.is_empty() || opts.scenarios.iter().any(|n| n == DEFLATE_ID))
        && servers.iter().any(|s| s.name == "syncws");
    let deflate_runs = if run_deflate { deflate_scenario(&dir, rounds, secs, warmup) } else { BTreeMap::new() };
    let machine_after = machine();
    let elapsed = started.elapsed();
    if let Err(e) = std::fs::create_dir_all(&opts.out) {
        eprintln!("cannot create {}: {e}", opts.out.display());
        std::process::exit(2);
    }
    let medians = medians(&scens, &servers, &runs);
    let pinned_medians = medians_of(&scens, &servers, &pinned);
    let mut md = markdown(
        &opts,
        &command,
        rounds,
        secs,
        elapsed,
        &machine_before,
        &machine_after,
        &scens,
        &servers,
        &runs,
        &medians,
    );
    md.push_str(&harness_markdown(&scens, &servers, &runs, &pinned, &pinned_medians, &medians));
    if run_deflate {
        md.push_str(&deflate_markdown(&deflate_runs, secs));
    }
    let results = json!({
        "command": command,
        "rounds": rounds,
        "round_secs": secs,
        "elapsed_s": elapsed.as_secs_f64(),
        "machine_before": machine_before,
        "machine_after": machine_after,
        "medians": medians.iter().map(|((sc, m, sv), v)| json!({"scenario": sc, "metric": m, "server": sv, "median": v})).collect::<Vec<_>>(),
        "runs": runs,
        "pinned": {
            "client_cpu": CLIENT_CPU,
            "server_cpu": SERVER_CPU,
            "medians": pinned_medians.iter().map(|((sc, m, sv), v)| json!({"scenario": sc, "metric": m, "server": sv, "median": v})).collect::<Vec<_>>(),
            "runs": pinned,
        },
        "deflate": deflate_runs,
    });
    let svg = chart(&scens, &servers, &medians);
    for (name, text) in [("results.md", md), ("results.json", format!("{results:#}\n")), ("chart.svg", svg)] {
        let path = opts.out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    println!("{}", std::fs::read_to_string(opts.out.join("results.md")).unwrap_or_default());
    eprintln!("bench-all: done in {:.0} s; results in {}", elapsed.as_secs_f64(), opts.out.display());
}

/// The id of the permessage-deflate scenario in `--scenarios`.
const DEFLATE_ID: &str = "deflate16k";

/// The permessage-deflate variants: name, `srv-syncws` argument,
/// `bench-deflate --deflate` value.
const DEFLATE_VARIANTS: &[(&str, Option<&str>, &str)] = &[
    ("uncompressed", None, "off"),
    ("deflate (default: contexts reset, level 1)", Some("--deflate"), "reset"),
    ("deflate, level 6", Some("--deflate-level6"), "level6"),
    ("deflate, context takeover", Some("--deflate-takeover"), "takeover"),
];

/// The compression scenario: 4 connections echo 16 KiB JSON-like texts
/// through `srv-syncws` for each variant, rounds interleaved; then 500
/// connections that each echoed one message are held for the memory
/// figure. Returns the reports by variant.
fn deflate_scenario(dir: &Path, rounds: usize, secs: f64, warmup: f64) -> BTreeMap<String, Vec<Value>> {
    let mut runs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for round in 0..rounds {
        let mut order: Vec<_> = DEFLATE_VARIANTS.iter().collect();
        let k = round % order.len();
        order.rotate_left(k);
        for (name, server_arg, client_arg) in order {
            let report = deflate_one(dir, *server_arg, client_arg, secs, warmup)
                .unwrap_or_else(|e| json!({"errors": 1, "first_error": e}));
            eprintln!(
                "round {} {DEFLATE_ID} {name:42} msgs/s={} cpu_us={} up={} down={} rss_kib={} errors={}",
                round + 1,
                fmt_num(report["msgs_per_s"].as_f64()),
                fmt_num(report["server_cpu_us_per_msg"].as_f64()),
                fmt_num(report["wire_up_per_msg"].as_f64()),
                fmt_num(report["wire_down_per_msg"].as_f64()),
                fmt_num(report["rss_per_conn_kib"].as_f64()),
                report["errors"]
            );
            runs.entry((*name).to_owned()).or_default().push(report);
        }
    }
    runs
}

fn deflate_one(
    dir: &Path,
    server_arg: Option<&str>,
    client_arg: &str,
    secs: f64,
    warmup: f64,
) -> Result<Value, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(dir.join("srv-syncws"));
    cmd.arg(&addr).args(server_arg);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start srv-syncws: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let server_proc = Killed(child);
    let mut line = String::new();
    if let Some(out) = stdout {
        BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
    }
    if !line.starts_with("listening") {
        return Err("srv-syncws did not start".into());
    }
    let out = Command::new(dir.join("bench-deflate"))
        .args(["--url", &format!("ws://{addr}/"), "--server-pid", &pid.to_string(), "--deflate", client_arg])
        .args(["--duration", &secs.to_string(), "--warmup", &warmup.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    drop(server_proc);
    std::thread::sleep(Duration::from_millis(200));
    let text = String::from_utf8_lossy(&out.stdout);
    let json_line = text.lines().find(|l| l.starts_with('{')).ok_or_else(|| format!("no report: {text}"))?;
    serde_json::from_str(json_line).map_err(|e| e.to_string())
}

/// The compression scenario's table: medians over the rounds.
fn deflate_markdown(runs: &BTreeMap<String, Vec<Value>>, secs: f64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## permessage-deflate: 16 KiB JSON-like text messages (syncws only)\n\n\
         4 connections echo JSON-like texts (64 different ones, 16 KiB each) for {secs} s per round; bytes \
         on the wire are counted by a TCP relay (frame headers included), server CPU from /proc; RSS per \
         connection is the server's growth for 500 connections that each echoed one message.\n\n\
         | variant | msgs/s | server CPU µs/msg | wire bytes/msg up | wire bytes/msg down | of the payload | RSS per conn KiB |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (name, _, _) in DEFLATE_VARIANTS {
        let get = |key: &str| -> Option<f64> {
            median(runs.get(*name).map(|r| r.iter().filter_map(|v| v[key].as_f64()).collect()).unwrap_or_default())
        };
        let ratio = get("ratio").map_or("–".to_owned(), |r| format!("{:.1} %", r * 100.0));
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {ratio} | {} |",
            fmt_num(get("msgs_per_s")),
            fmt_num(get("server_cpu_us_per_msg")),
            fmt_num(get("wire_up_per_msg")),
            fmt_num(get("wire_down_per_msg")),
            fmt_num(get("rss_per_conn_kib")),
        );
    }
    md
}

/// A free loopback port (the small race with other programs is accepted).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command for `bin`, under `taskset -c CPU` when pinned.
fn command(bin: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

fn run_one(dir: &Path, loadgen: &Path, server: &Server, sc: &Scenario, pin: bool) -> Result<Value, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{port}");
    // taskset execs the program: the child's pid is the server's.
    let mut child = command(&dir.join(server.bin), pin.then_some(SERVER_CPU))
        .arg(&addr)
        .args(server.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.bin))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let server_proc = Killed(child);
    let mut line = String::new();
    if let Some(out) = stdout {
        BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
    }
    if !line.starts_with("listening") {
        return Err(format!("{} did not start", server.bin));
    }
    let mut cmd = command(loadgen, pin.then_some(CLIENT_CPU));
    cmd.args(["bench", "--url", &format!("ws://{addr}/"), "--server-pid", &pid.to_string()])
        .args(["--label", &format!("{}/{}", server.name, sc.id)])
        .args(&sc.args);
    if server.raw {
        cmd.arg("--raw-echo");
    }
    let mut lg =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + sc.limit;
    loop {
        match lg.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = lg.kill();
                let _ = lg.wait();
                return Err(format!("load generator overran {:?}", sc.limit));
            }
        }
    }
    let mut out = String::new();
    if let Some(mut o) = lg.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    drop(server_proc);
    // Let the kernel tidy the closed sockets before the next server starts.
    std::thread::sleep(Duration::from_millis(200));
    let json_line = out.lines().find(|l| l.starts_with('{')).ok_or_else(|| format!("no report: {out}"))?;
    serde_json::from_str(json_line).map_err(|e| e.to_string())
}

type Medians = BTreeMap<(String, String, String), f64>;

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn medians(scens: &[Scenario], servers: &[&Server], runs: &BTreeMap<&str, BTreeMap<&str, Vec<Value>>>) -> Medians {
    medians_of(scens, servers, runs)
}

type Runs<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<Value>>>;

fn medians_of(scens: &[Scenario], servers: &[&Server], runs: &Runs) -> Medians {
    let mut out = Medians::new();
    for sc in scens {
        for m in &sc.metrics {
            for s in servers {
                let vals: Vec<f64> = runs
                    .get(sc.id)
                    .and_then(|r| r.get(s.name))
                    .map(|v| v.iter().filter_map(|r| r[m.key].as_f64()).collect())
                    .unwrap_or_default();
                if let Some(med) = median(vals) {
                    out.insert((sc.id.to_owned(), m.key.to_owned(), s.name.to_owned()), med);
                }
            }
        }
    }
    out
}

fn get(med: &Medians, sc: &str, key: &str, server: &str) -> Option<f64> {
    med.get(&(sc.to_owned(), key.to_owned(), server.to_owned())).copied()
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x >= 100_000.0 => format!("{:.0}k", x / 1000.0),
        Some(x) if x >= 1000.0 => format!("{x:.0}"),
        Some(x) if x >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = read("/proc/meminfo").lines().next().unwrap_or_default().to_owned();
    json!({
        "nproc": nproc,
        "model": model,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "memory": mem.trim_start_matches("MemTotal:").trim(),
        "load_average": read("/proc/loadavg").trim(),
    })
}

#[allow(clippy::too_many_arguments)]
fn markdown(
    opts: &Opts,
    command: &str,
    rounds: usize,
    secs: f64,
    elapsed: Duration,
    before: &Value,
    after: &Value,
    scens: &[Scenario],
    servers: &[&Server],
    runs: &BTreeMap<&str, BTreeMap<&str, Vec<Value>>>,
    med: &Medians,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# syncws benchmark results\n");
    let _ = writeln!(s, "Command: `{command}` (after `cargo build --release -p syncws-cli -p syncws-bench`)\n");
    let _ = writeln!(
        s,
        "Machine: {} × {}, Linux {}, {}. Load average (1, 5, 15 min) before: {}; after: {}.\n",
        before["nproc"],
        before["model"].as_str().unwrap_or("?"),
        before["kernel"].as_str().unwrap_or("?"),
        before["memory"].as_str().unwrap_or("?"),
        before["load_average"].as_str().unwrap_or("?"),
        after["load_average"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        s,
        "{rounds} rounds, servers interleaved (order rotated each round, each server restarted for each run), \
         {secs} s measurement windows; medians over the rounds; whole run {:.0} s. Client (`syncws bench`, \
         event-driven: its connections multiplexed on one thread with epoll, except connect mode's 2 threads) \
         and server share the cores over loopback; the load generator's CPU per cell is in its own table below. MB = 10^6 bytes of payload echoed per second. Server CPU is \
         utime+stime from /proc over the window, divided by the messages verified in it.{}\n",
        elapsed.as_secs_f64(),
        if opts.quick { " Quick mode: fewer rounds, shorter windows, 1000 idle connections." } else { "" }
    );
    let header = |s: &mut String, first: &str| {
        let _ = write!(s, "| {first} |");
        for sv in servers {
            let _ = write!(s, " {} |", sv.name);
        }
        let _ = write!(s, "\n| --- |");
        for _ in servers {
            let _ = write!(s, " --- |");
        }
        s.push('\n');
    };
    let _ = writeln!(s, "## Medians\n");
    header(&mut s, "scenario");
    for sc in scens {
        for m in &sc.metrics {
            let _ = write!(s, "| {}, {} |", sc.title, m.label);
            for sv in servers {
                let _ = write!(s, " {} |", fmt_num(get(med, sc.id, m.key, sv.name)));
            }
            s.push('\n');
        }
    }
    for (title, base) in [("Ratios to tungstenite", "tungstenite"), ("Ratios to syncws", "syncws")] {
        if !servers.iter().any(|s| s.name == base) {
            continue;
        }
        let _ = writeln!(s, "\n## {title} (value ÷ {base}'s; ↑ higher is better, ↓ lower is better)\n");
        header(&mut s, "scenario");
        for sc in scens {
            for m in &sc.metrics {
                let _ = write!(s, "| {}, {} {} |", sc.title, m.label, if m.higher_is_better { "↑" } else { "↓" });
                let b = get(med, sc.id, m.key, base);
                for sv in servers {
                    let _ = write!(s, " {} |", ratio(get(med, sc.id, m.key, sv.name), b));
                }
                s.push('\n');
            }
        }
    }
    let _ = writeln!(s, "\n## Issue 6 targets (syncws)\n");
    for line in targets(med) {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(s, "\n## Errors\n");
    let mut any = false;
    for (sc, by_server) in runs {
        for (sv, reports) in by_server {
            let errors: u64 = reports.iter().filter_map(|r| r["errors"].as_u64()).sum();
            if errors > 0 {
                any = true;
                let first = reports.iter().find_map(|r| r["first_error"].as_str()).unwrap_or("");
                let _ = writeln!(s, "- {sc} / {sv}: {errors} errors; first: {first}");
            }
        }
    }
    if !any {
        let _ = writeln!(s, "None: every echoed payload of every run was verified.");
    }
    let _ = writeln!(s, "\n![chart](chart.svg)");
    s
}

fn targets(med: &Medians) -> Vec<String> {
    let g = |sc: &str, k: &str, sv: &str| get(med, sc, k, sv);
    let sy = "syncws";
    let raw = "raw TCP (threads)";
    let check = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    let cmp = |a: Option<f64>, b: Option<f64>, f: &dyn Fn(f64, f64) -> bool| a.zip(b).map(|(a, b)| f(a, b));
    let r = |a: Option<f64>, b: Option<f64>| ratio(a, b);
    let mut v = Vec::new();
    let (a, b) = (g("pp1", "p50_us", sy), g("pp1", "p50_us", raw));
    v.push(format!(
        "ping-pong 1 conn p50 within 1.05× of raw TCP: {} ({})",
        r(a, b),
        check(cmp(a, b, &|a, b| a <= 1.05 * b))
    ));
    let (a, b) = (g("pp64", "msgs_per_s", sy), g("pp64", "msgs_per_s", "tokio-tungstenite"));
    let f = g("pp64", "msgs_per_s", "fastwebsockets");
    v.push(format!(
        "ping-pong 64 conns msgs/s ≥ tokio-tungstenite: {} ({}); vs fastwebsockets {}",
        r(a, b),
        check(cmp(a, b, &|a, b| a >= b)),
        r(a, f)
    ));
    let (a, b) = (g("pp64", "server_cpu_us_per_msg", sy), g("pp64", "server_cpu_us_per_msg", raw));
    v.push(format!("ping-pong 64 conns server CPU/msg ≤ raw TCP: {} ({})", r(a, b), check(cmp(a, b, &|a, b| a <= b))));
    let (a, b) = (g("pipe1k", "msgs_per_s", sy), g("pipe1k", "msgs_per_s", "tungstenite"));
    v.push(format!(
        "pipelined 1 KiB msgs/s ≥ 1.2× tungstenite: {} ({})",
        r(a, b),
        check(cmp(a, b, &|a, b| a >= 1.2 * b))
    ));
    for sc in ["pipe64k", "pipe1m"] {
        let (a, b) = (g(sc, "mb_per_s", sy), g(sc, "mb_per_s", raw));
        v.push(format!("{sc} MB/s ≥ 0.95× raw TCP: {} ({})", r(a, b), check(cmp(a, b, &|a, b| a >= 0.95 * b))));
        let (a, b) = (g(sc, "server_cpu_us_per_msg", sy), g(sc, "server_cpu_us_per_msg", raw));
        v.push(format!(
            "{sc} server CPU/msg ≤ 1.05× raw TCP: {} ({})",
            r(a, b),
            check(cmp(a, b, &|a, b| a <= 1.05 * b))
        ));
    }
    let a = g("idle", "rss_per_conn_kib", sy);
    v.push(format!("idle RSS per connection ≤ 16 KiB: {} KiB ({})", fmt_num(a), check(a.map(|a| a <= 16.0))));
    let a = g("idle10k", "connected", sy);
    v.push(format!(
        "10,000 idle connections held: {} held, {} KiB each ({})",
        fmt_num(a),
        fmt_num(g("idle10k", "rss_per_conn_kib", sy)),
        check(a.map(|a| a >= 10_000.0))
    ));
    let (a, b) = (g("connect", "msgs_per_s", sy), g("connect", "msgs_per_s", "tungstenite"));
    v.push(format!("connects/s ≥ 1.5× tungstenite: {} ({})", r(a, b), check(cmp(a, b, &|a, b| a >= 1.5 * b))));
    let min = "minimal WebSocket echo";
    for sc in ["bcast", "bcast10k"] {
        let a = g(sc, "p99_us", sy);
        let (t, u) = (g(sc, "p99_us", "tokio-tungstenite"), g(sc, "p99_us", "tungstenite"));
        v.push(format!(
            "{sc} (issue 15): p99 delivery ≤ 0.7× tokio-tungstenite: {} ({}); ≤ 0.5× tungstenite: {} ({}); every \
             subscriber gets every message (a missed one is counted as an error below); check the load \
             generator's CPU below before reading these",
            r(a, t),
            check(cmp(a, t, &|a, b| a <= 0.7 * b)),
            r(a, u),
            check(cmp(a, u, &|a, b| a <= 0.5 * b)),
        ));
        let f = g(sc, "p99_us", min);
        if f.is_some() {
            v.push(format!(
                "{sc}: the serial-publish floor (the minimal echo's `/broadcast`: one blocking write per \
                 subscriber and nothing else) has p99 {} tokio-tungstenite's and {} tungstenite's; syncws is {} \
                 the floor. A target below the floor's ratio is out of reach for a server that writes each \
                 subscriber with one send on this machine",
                r(f, t),
                r(f, u),
                r(a, f),
            ));
        }
    }
    // Issue 17's "floor plus the protocol's own cost".
    for sc in ["pp64", "pipe1k", "pipe64k", "pipe1m", "connect", "bcast", "bcast10k"] {
        let (a, b) = (g(sc, "server_cpu_us_per_msg", sy), g(sc, "server_cpu_us_per_msg", min));
        if b.is_some() {
            v.push(format!(
                "{sc} server CPU ≤ 1.05× the minimal WebSocket echo's: {} ({})",
                r(a, b),
                check(cmp(a, b, &|a, b| a <= 1.05 * b))
            ));
        }
        // A reference, not an issue target: the same floor for a library
        // whose callback owns each message.
        let o = g(sc, "server_cpu_us_per_msg", "wsmin-owned");
        if o.is_some() {
            v.push(format!(
                "{sc} server CPU ≤ 1.05× the minimal echo's with an owned message each (wsmin-owned, a \
                 reference: the floor for an owned-message callback): {} ({})",
                r(a, o),
                check(cmp(a, o, &|a, b| a <= 1.05 * b))
            ));
        }
    }
    v
}

/// Grouped bars: each server's result relative to tungstenite, oriented so
/// that a taller bar is better (lower-is-better metrics are inverted).
fn chart(scens: &[Scenario], servers: &[&Server], med: &Medians) -> String {
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e"];
    let rows: Vec<(String, &str, bool, &str)> = scens
        .iter()
        .flat_map(|sc| {
            sc.metrics.iter().map(move |m| (format!("{} — {}", sc.title, m.label), sc.id, m.higher_is_better, m.key))
        })
        .filter(|(_, _, _, k)| !matches!(*k, "server_threads" | "connected"))
        .collect();
    let (left, bar_h, group_gap, width) = (330.0, 9.0, 10.0, 900.0);
    let plot_w = width - left - 40.0;
    let max_ratio = 3.0;
    let group_h = bar_h * servers.len() as f64 + group_gap;
    let height = 70.0 + group_h * rows.len() as f64 + 30.0;
    let names: Vec<&str> = servers.iter().map(|sv| sv.name).collect();
    let title = format!(
        "syncws benchmark: each server relative to tungstenite (taller = better; lower-is-better metrics inverted; capped at {max_ratio}×)"
    );
    let mut s = syncws_bench::svg_open(width, height, &title, &names, &colors, 30.0);
    let top = 60.0;
    let x1 = left + plot_w / max_ratio;
    let _ = writeln!(
        s,
        r##"<line x1="{x1}" y1="{top}" x2="{x1}" y2="{}" stroke="#444" stroke-dasharray="4,3"/>"##,
        top + group_h * rows.len() as f64
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">1× (tungstenite)</text>"#,
        x1,
        top + group_h * rows.len() as f64 + 14.0
    );
    for (r, (label, sc, higher, key)) in rows.iter().enumerate() {
        let y0 = top + r as f64 * group_h;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + bar_h * servers.len() as f64 / 2.0 + 4.0,
            label.replace('&', "&amp;").replace('<', "&lt;")
        );
        let base = get(med, sc, key, "tungstenite");
        for (i, sv) in servers.iter().enumerate() {
            let Some(v) = get(med, sc, key, sv.name) else { continue };
            let Some(b) = base.filter(|b| *b > 0.0) else { continue };
            let rel = if *higher {
                v / b
            } else if v > 0.0 {
                b / v
            } else {
                continue;
            };
            let w = rel.min(max_ratio) / max_ratio * plot_w;
            let y = y0 + i as f64 * bar_h;
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{}"><title>{}: {} ({rel:.2}× tungstenite)</title></rect>"#,
                bar_h - 1.0,
                colors[i % colors.len()],
                sv.name,
                fmt_num(Some(v))
            );
            let _ =
                writeln!(s, r#"<text x="{:.1}" y="{}" font-size="8">{rel:.2}</text>"#, left + w + 3.0, y + bar_h - 2.0);
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The fairness tables of issue 17: the load generator's CPU per cell
/// (flagged where it was the bottleneck), the pinned medians, and the twin
/// check when `syncws-twin` ran.
fn harness_markdown(
    scens: &[Scenario],
    servers: &[&Server],
    runs: &Runs,
    pinned: &Runs,
    pinned_med: &Medians,
    med: &Medians,
) -> String {
    let mut s = String::new();
    let header = |s: &mut String, first: &str| {
        let _ = write!(s, "| {first} |");
        for sv in servers {
            let _ = write!(s, " {} |", sv.name);
        }
        let _ = write!(s, "\n| --- |");
        for _ in servers {
            let _ = write!(s, " --- |");
        }
        s.push('\n');
    };
    for (title, table) in [("unpinned", runs), ("pinned", pinned)] {
        if table.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n## Load generator CPU ({title}): median % of one core over the window, client threads; \
             ⚠ = at or above 90% of its threads in some round (the client may be the bottleneck)\n"
        );
        header(&mut s, "scenario");
        for sc in scens {
            let _ = write!(s, "| {} |", sc.title);
            for sv in servers {
                let reports = table.get(sc.id).and_then(|r| r.get(sv.name)).cloned().unwrap_or_default();
                let pct = median(reports.iter().filter_map(|r| r["client_cpu_pct"].as_f64()).collect());
                let threads = reports.iter().filter_map(|r| r["client_threads"].as_u64()).max();
                let bound = reports.iter().any(|r| r["client_bound"].as_bool() == Some(true));
                match (pct, threads) {
                    (Some(p), Some(t)) => {
                        let _ = write!(s, " {p:.0}% / {t}{} |", if bound { " ⚠" } else { "" });
                    }
                    _ => {
                        let _ = write!(s, " – |");
                    }
                }
            }
            s.push('\n');
        }
    }
    if !pinned.is_empty() {
        let _ = writeln!(
            s,
            "\n## Pinned: load generator on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU} (`taskset`), \
             medians and ratios to syncws\n"
        );
        header(&mut s, "scenario");
        for sc in scens {
            for m in &sc.metrics {
                let _ = write!(s, "| {}, {} {} |", sc.title, m.label, if m.higher_is_better { "↑" } else { "↓" });
                let b = get(pinned_med, sc.id, m.key, "syncws");
                for sv in servers {
                    let v = get(pinned_med, sc.id, m.key, sv.name);
                    let _ = write!(s, " {} ({}) |", fmt_num(v), ratio(v, b));
                }
                s.push('\n');
            }
        }
        let _ = writeln!(s, "\n### Pinned ÷ unpinned, per server (how much pinning changes each result)\n");
        header(&mut s, "scenario");
        for sc in scens {
            for m in &sc.metrics {
                let _ = write!(s, "| {}, {} |", sc.title, m.label);
                for sv in servers {
                    let _ = write!(
                        s,
                        " {} |",
                        ratio(get(pinned_med, sc.id, m.key, sv.name), get(med, sc.id, m.key, sv.name))
                    );
                }
                s.push('\n');
            }
        }
    }
    if servers.iter().any(|sv| sv.name == "syncws-twin") && servers.iter().any(|sv| sv.name == "syncws") {
        let _ = writeln!(
            s,
            "\n## Identical-server check: syncws-twin ÷ syncws, median of the per-round ratios \
             (the same binary under two names; within 0.95-1.05 is noise)\n\n\
             | scenario | metric | per-round ratios | median | within 0.95-1.05 |\n| --- | --- | --- | --- | --- |"
        );
        for (label, table) in [("", runs), (" (pinned)", pinned)] {
            for sc in scens {
                for m in &sc.metrics {
                    let get_all = |name: &str| -> Vec<Option<f64>> {
                        table
                            .get(sc.id)
                            .and_then(|r| r.get(name))
                            .map(|v| v.iter().map(|r| r[m.key].as_f64()).collect())
                            .unwrap_or_default()
                    };
                    let ratios: Vec<f64> = get_all("syncws-twin")
                        .into_iter()
                        .zip(get_all("syncws"))
                        .filter_map(|(t, b)| Some(t? / b.filter(|b| *b > 0.0)?))
                        .collect();
                    let Some(mid) = median(ratios.clone()) else { continue };
                    let list = ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ");
                    let ok = if (0.95..=1.05).contains(&mid) { "yes" } else { "NO" };
                    let _ = writeln!(s, "| {}{label} | {} | {list} | {mid:.3} | {ok} |", sc.title, m.label);
                }
            }
        }
    }
    s
}

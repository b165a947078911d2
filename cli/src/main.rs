//! `syncws`: WebSocket tools built on the syncws library.
//!
//! `main` only parses the command line and dispatches to the modules of
//! `syncws_cli`. Exit codes: 0 success, 1 runtime failure (such as an
//! address already in use), 2 bad command line; `syncws client` documents
//! its own codes 3 to 6.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use crossbeam_channel::{bounded, Receiver};
use syncws::{Config, OriginPolicy, ReconnectPolicy};
use syncws_cli::common::{
    parse_duration, parse_maybe_duration, parse_opt_duration, Deflate, HttpFlags, Limits, MaybeDuration, ProxyFlags,
    RedisFlags, Route, TlsClientFlags, TlsServerFlags,
};
use syncws_cli::tls::ServerTls;
use syncws_cli::{bridge, chat, client, echo, exec, proxy, pubsub};

/// WebSocket tools built on the syncws library.
#[derive(Parser)]
#[command(name = "syncws", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Echo server: sends every message back to its sender.
    ///
    /// Browser pages: by default (`--origin same-host`) only a page served
    /// from this server's own host and port may connect. A page from another
    /// port (a dev server on localhost:3000), one opened from a file
    /// (file://, sent as `Origin: null`), or one opened as localhost while
    /// the WebSocket URL says 127.0.0.1 is refused with 403. Allow such pages
    /// with `--origin http://localhost:3000` (a comma-separated list) or, while
    /// developing, `--origin any`. Clients that are not browsers send no
    /// Origin and always connect.
    Echo {
        /// Address to listen on.
        #[arg(default_value = "127.0.0.1:8081")]
        addr: String,
        #[command(flatten)]
        tls: TlsServerFlags,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        http: HttpFlags,
    },
    /// Interactive client: stdin lines out, arriving messages on stdout.
    ///
    /// Each stdin line is one message (its line ending removed); each text
    /// message that arrives is printed with a newline. At the end of stdin it
    /// sends Close 1000 and waits for the reply, and prints the close code on
    /// stderr.
    ///
    /// Proxies: --proxy URL, or else the environment as curl reads it
    /// (http_proxy for ws://, https_proxy for wss://, all_proxy, no_proxy);
    /// --no-proxy-env ignores the environment.
    ///
    /// Binary messages are printed as one line of hex each when stdout is a
    /// terminal, raw otherwise (--binary-output). -1 sends all of stdin as
    /// one message, prints the first reply and exits. --reconnect
    /// reconnects after a drop (backoff with jitter); lines typed
    /// meanwhile are kept and sent once it is back.
    ///
    /// TLS: wss:// checks the server's certificate against the built-in
    /// and system roots; --tls-ca FILE.pem trusts a private CA or a
    /// self-signed certificate, --tls-fingerprint SHA256 exactly the
    /// certificate a server made with --tls-self-signed printed.
    ///
    /// Exit codes: 0 clean close (1000), or -1 got its reply; 1 local I/O
    /// failure, or -1 got no reply within --timeout; 2 bad usage or URL; 3
    /// cannot connect (the proxy too; TLS: an untrusted certificate, a
    /// wrong fingerprint), or --reconnect gave up; 4 handshake
    /// refused (status printed); 5 closed with another code (printed); 6
    /// connection lost without a close handshake.
    Client {
        /// Server URL, `ws://host:port/path` or `wss://host:port/path`.
        url: String,
        #[command(flatten)]
        tls: TlsClientFlags,
        /// For wss://: accept any certificate, whoever signed it and
        /// whatever its name (for testing; says so on stderr).
        #[arg(long, short = 'k', conflicts_with_all = ["tls_ca", "tls_fingerprint"])]
        insecure: bool,
        /// Send each line as a binary message instead of text.
        #[arg(long)]
        binary: bool,
        /// How binary messages are printed: `hex` or `base64` (one line per
        /// message), or `raw` (the bytes, no line ending) [default: hex on
        /// a terminal, raw otherwise].
        #[arg(long, value_name = "FORMAT", value_enum)]
        binary_output: Option<client::BinaryOutput>,
        /// Send all of stdin as one message (a text one loses one trailing
        /// line ending), print the first reply and exit: 0 with a reply, 1
        /// without one within --timeout.
        #[arg(long = "one-message", short = '1', conflicts_with = "reconnect")]
        one_message: bool,
        /// With -1: how long to wait for the reply after sending.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", requires = "one_message")]
        timeout: Duration,
        /// Reconnect after a drop, a failed connect, or a Close 1001, 1012 or
        /// 1013 (not after 1000, 1008 or a 4xx refusal), waiting a random
        /// time up to a delay that doubles from --reconnect-delay to
        /// --reconnect-max-delay. Lines read meanwhile are kept (up to 1024)
        /// and sent after reconnecting.
        #[arg(long)]
        reconnect: bool,
        /// With --reconnect: the largest first delay [default: 500ms].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "reconnect")]
        reconnect_delay: Option<Duration>,
        /// With --reconnect: the largest delay between attempts [default: 30s].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "reconnect")]
        reconnect_max_delay: Option<Duration>,
        /// With --reconnect: give up (exit code 3) after N failed attempts in
        /// a row [default: never].
        #[arg(long, value_name = "N", requires = "reconnect")]
        reconnect_attempts: Option<u32>,
        /// Extra header for the upgrade request, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = client::parse_header)]
        headers: Vec<(String, String)>,
        /// Subprotocol to offer (repeatable, in order of preference).
        #[arg(long = "protocol", short = 'p', value_name = "PROTOCOL")]
        protocols: Vec<String>,
        /// Largest message accepted from the server, in bytes.
        #[arg(long, value_name = "BYTES")]
        max_message_size: Option<usize>,
        /// Deadline for the whole connect: DNS, TCP, the proxy, TLS and the
        /// upgrade (default 10s).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        connect_timeout: Option<Duration>,
        /// Close when nothing arrives for this long (default 120s), or `off`.
        #[arg(long, value_name = "DURATION", value_parser = parse_maybe_duration)]
        idle_timeout: Option<MaybeDuration>,
        /// Send a Ping after this long without traffic (default 30s), or
        /// `off`; with --idle-timeout, how soon a vanished server is noticed.
        #[arg(long, value_name = "DURATION", value_parser = parse_maybe_duration)]
        ping_interval: Option<MaybeDuration>,
        #[command(flatten)]
        proxy: ProxyFlags,
        #[command(flatten)]
        deflate: Deflate,
    },
    /// WebSocket <-> TCP bridge.
    Bridge {
        #[command(subcommand)]
        direction: Bridge,
    },
    /// WebSocket reverse proxy with several upstreams, weighted, with health checks.
    Proxy {
        /// Address to listen on [default: 127.0.0.1:8080, or `listen` in the file].
        #[arg(long)]
        listen: Option<String>,
        /// Upstream `ws://host:port[/path]`, `wss://host:port[/path]` or
        /// `ws+unix:///path/to.sock[:/path]`, optionally `,weight=N`
        /// (repeatable). A `wss://` upstream is dialled over TLS
        /// (connections and health checks), never in plaintext.
        #[arg(long = "upstream", short = 'u', value_name = "URL[,weight=N]", value_parser = proxy::Upstream::parse)]
        upstreams: Vec<proxy::Upstream>,
        /// For wss:// upstreams: trust only the CA certificates in this PEM
        /// file (a private CA, or a self-signed upstream certificate)
        /// instead of the built-in Mozilla roots. An upstream whose
        /// certificate is not trusted is unreachable: the client gets 502
        /// and the reason is logged.
        #[arg(long, value_name = "PEM", conflicts_with = "upstream_tls_fingerprint")]
        upstream_tls_ca: Option<PathBuf>,
        /// For wss:// upstreams: accept exactly the certificates with these
        /// SHA-256 fingerprints (repeatable; as `syncws client
        /// --tls-fingerprint`), for upstreams started with
        /// --tls-self-signed.
        #[arg(long, value_name = "SHA256", value_parser = syncws_cli::tls::parse_fingerprint)]
        upstream_tls_fingerprint: Vec<syncws_cli::tls::Fingerprint>,
        /// TOML file with `listen`, `x_forwarded_for`, `check_interval`,
        /// `fail_timeout`, `upstream_tls_ca` (relative to the file's folder),
        /// `upstream_tls_fingerprint` (a list) and `[[upstream]]` tables
        /// (`url`, `weight`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Append the client's address to `X-Forwarded-For`.
        #[arg(long)]
        x_forwarded_for: bool,
        /// Active health check every DURATION (a handshake to each upstream), or `off`.
        #[arg(long, value_name = "DURATION", value_parser = parse_maybe_duration)]
        check_interval: Option<MaybeDuration>,
        /// How long an upstream that failed a connection is skipped [default: 10s].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        fail_timeout: Option<Duration>,
        /// Deadline for connecting to an upstream.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
        connect_timeout: Duration,
        #[command(flatten)]
        tls: TlsServerFlags,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        http: HttpFlags,
    },
    /// Topics: a WebSocket to ws://ADDR/<topic> subscribes to <topic> and publishes there.
    ///
    /// Every text or binary message a socket sends is published to its
    /// topic (the percent-decoded path, query ignored; an empty one gets
    /// 400), the sender included, framed once for all subscribers. `GET /`
    /// answers `{"topics":[{"name":"...","subscribers":N}, ...]}`. A
    /// subscriber whose unwritten backlog passes --max-backlog is closed
    /// with 1008 (--backlog-policy close, the default) or skips the message
    /// (skip, counted in --metrics' dropped messages).
    Pubsub {
        /// Address to listen on.
        #[arg(default_value = "127.0.0.1:8084")]
        addr: String,
        /// Largest backlog of a subscriber, in bytes (`64k`, `1m`; default 1 MiB).
        #[arg(long, value_name = "BYTES", value_parser = syncws_cli::common::parse_size)]
        max_backlog: Option<usize>,
        /// What a subscriber over --max-backlog gets.
        #[arg(long, value_name = "POLICY", value_enum, default_value_t = pubsub::Policy::Close)]
        backlog_policy: pubsub::Policy,
        #[command(flatten)]
        redis: RedisFlags,
        #[command(flatten)]
        tls: TlsServerFlags,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        http: HttpFlags,
    },
    /// Chat room: a page at http://ADDR/ and its WebSocket at /ws on the same port.
    ///
    /// With --redis, the chats that use that Redis are one chat: a line
    /// reaches the room's members on every node, and names carry the
    /// node (`guest3@1a2b3c4d`), so they are unique across nodes.
    Chat {
        /// Address to listen on.
        #[arg(default_value = "127.0.0.1:8082")]
        addr: String,
        #[command(flatten)]
        redis: RedisFlags,
        #[command(flatten)]
        tls: TlsServerFlags,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        http: HttpFlags,
    },
    /// A program per connection, like websocketd: messages to its stdin, its stdout lines back.
    ///
    /// `syncws exec 127.0.0.1:8083 -- COMMAND ARGS...` starts COMMAND (no
    /// shell) for each WebSocket connection, with the CGI environment of
    /// the request (REMOTE_ADDR, QUERY_STRING, HTTP_*, ...; PATH and
    /// --passenv variables only from the server's own). Each text message
    /// is written to its stdin with a newline; each stdout line comes back
    /// as a text message. stderr goes to the log. When the client closes,
    /// stdin is closed, then SIGTERM goes to the program's process group,
    /// then SIGKILL after --kill-grace; when the program exits, the
    /// connection closes with 1000 (status 0) or 1011.
    ///
    /// Each connection costs a process, three pipes and a few threads:
    /// --max-forks (default 1000) answers 503 past it.
    #[command(
        override_usage = "syncws exec [ADDR] [OPTIONS] -- COMMAND [ARGS]...\n       syncws exec [ADDR] [OPTIONS] --dir DIR"
    )]
    Exec {
        /// Address to listen on: HOST:PORT, or unix:PATH for a Unix socket
        /// (created, removed at exit; clients connect to
        /// ws+unix://PATH:/; REMOTE_ADDR is empty there, and no TLS).
        #[arg(default_value = "127.0.0.1:8083")]
        addr: String,
        /// The program and its arguments, after `--`.
        #[arg(last = true, value_name = "COMMAND", required_unless_present = "dir")]
        command: Vec<std::ffi::OsString>,
        /// Run the executable DIR/NAME for a connection to /NAME (nothing outside DIR).
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
        /// Raw bytes both ways: binary messages to stdin, stdout back in binary messages of up to 64 KiB.
        #[arg(long)]
        binary: bool,
        /// Variables of the server's environment passed on to the programs (comma-separated, repeatable).
        #[arg(long, value_name = "VAR,...", value_delimiter = ',')]
        passenv: Vec<String>,
        /// Most programs running at once; more connections get 503.
        #[arg(long, value_name = "N", default_value_t = exec::DEFAULT_MAX_FORKS)]
        max_forks: usize,
        /// Between SIGTERM and SIGKILL when a program is ended.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
        kill_grace: Duration,
        #[command(flatten)]
        tls: TlsServerFlags,
        #[command(flatten)]
        http: HttpFlags,
        #[command(flatten)]
        limits: Limits,
    },
    /// Load generator of the benchmark: echo latency and throughput, broadcast, idle memory, connects/s.
    Bench(syncws_cli::loadgen::Args),
}

#[derive(Subcommand)]
enum Bridge {
    /// WebSocket clients reach a TCP service: each WebSocket connection gets a TCP connection.
    Ws2tcp {
        /// Address WebSocket clients connect to.
        #[arg(long)]
        listen: String,
        /// The TCP service, `host:port`.
        #[arg(long)]
        to: String,
        /// Accept upgrades only for this path (others get 404).
        #[arg(long)]
        path: Option<String>,
        /// Accept only this `Host` header (repeatable; others get 403).
        #[arg(long = "allow-host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Largest binary message made from TCP bytes.
        #[arg(long, value_name = "BYTES", default_value_t = bridge::DEFAULT_CHUNK)]
        chunk: usize,
        #[command(flatten)]
        tls: TlsServerFlags,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        http: HttpFlags,
    },
    /// TCP clients reach a WebSocket service: each TCP connection opens a WebSocket.
    ///
    /// The WebSocket side goes through --proxy, or else the proxy the
    /// environment gives (read at start, as curl reads it), unless
    /// --no-proxy-env.
    Tcp2ws {
        /// Address TCP clients connect to.
        #[arg(long)]
        listen: String,
        /// The WebSocket server, `ws://host:port/path` or `wss://...`.
        #[arg(long)]
        to: String,
        /// Extra header for the upgrade request, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = client::parse_header)]
        headers: Vec<(String, String)>,
        /// Subprotocol to offer (repeatable).
        #[arg(long = "protocol", short = 'p', value_name = "PROTOCOL")]
        protocols: Vec<String>,
        /// Largest binary message made from TCP bytes.
        #[arg(long, value_name = "BYTES", default_value_t = bridge::DEFAULT_CHUNK)]
        chunk: usize,
        #[command(flatten)]
        proxy: ProxyFlags,
        #[command(flatten)]
        tls: TlsClientFlags,
        #[command(flatten)]
        limits: Limits,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("syncws: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<u8, String> {
    match command {
        Command::Echo { addr, tls, limits, http } => {
            let tls = tls.server_tls(&addr)?;
            let signals = termination_signals()?;
            let config = tls.as_ref().map(|t| t.config.clone());
            let running = echo::spawn_with(&addr, limits.config(), config, http).map_err(|e| e.to_string())?;
            announce_server("listening on ", tls.as_ref(), running.local_addr());
            serve_until(signals, move || running.shutdown());
        }
        Command::Client {
            url,
            tls,
            insecure,
            binary,
            binary_output,
            one_message,
            timeout,
            reconnect,
            reconnect_delay,
            reconnect_max_delay,
            reconnect_attempts,
            headers,
            protocols,
            max_message_size,
            connect_timeout,
            idle_timeout,
            ping_interval,
            proxy,
            deflate,
        } => {
            let mut config = deflate.apply(Config::default());
            if let Some(m) = max_message_size {
                let frame = config.max_frame_size.min(m);
                config = config.max_message_size(m).max_frame_size(frame);
            }
            if let Some(t) = connect_timeout {
                config = config.handshake_timeout(t);
            }
            if let Some(MaybeDuration(t)) = idle_timeout {
                config = config.idle_timeout(t);
            }
            if let Some(MaybeDuration(p)) = ping_interval {
                config = config.ping_interval(p);
            }
            let route = match Route::from_flags(&proxy) {
                Ok(route) => route,
                Err(e) => {
                    eprintln!("syncws client: {e}");
                    return Ok(2);
                }
            };
            let mode = if one_message {
                client::Mode::OneMessage { timeout }
            } else if reconnect {
                let mut policy = ReconnectPolicy::default().max_attempts(reconnect_attempts);
                // Either flag alone moves the other bound along if need be.
                if let Some(d) = reconnect_delay {
                    policy.initial_delay = d;
                    policy.max_delay = policy.max_delay.max(d);
                }
                if let Some(d) = reconnect_max_delay {
                    policy.max_delay = d;
                    policy.initial_delay = policy.initial_delay.min(d);
                }
                client::Mode::Reconnect(policy)
            } else {
                client::Mode::Lines
            };
            let binary_output =
                binary_output.unwrap_or_else(|| client::BinaryOutput::default_for(std::io::stdout().is_terminal()));
            let opts =
                client::Options { url, binary, headers, protocols, config, tls, route, insecure, binary_output, mode };
            let stdin = std::io::BufReader::new(std::io::stdin());
            let code = client::run(opts, stdin, &mut std::io::stdout().lock(), &mut std::io::stderr());
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        Command::Bridge { direction: Bridge::Ws2tcp { listen, to, path, hosts, chunk, tls, limits, http } } => {
            let tls = tls.server_tls(&listen)?;
            let mut opts = bridge::Ws2TcpOptions::new(&listen, &to);
            opts.tls = tls.as_ref().map(|t| t.config.clone());
            opts.path = path;
            opts.hosts = hosts;
            opts.chunk = chunk;
            opts.config = limits.config();
            opts.http = http;
            let signals = termination_signals()?;
            let running = bridge::ws2tcp(opts).map_err(|e| e.to_string())?;
            announce_server("listening on ", tls.as_ref(), running.local_addr());
            serve_until(signals, move || running.shutdown());
        }
        Command::Bridge { direction: Bridge::Tcp2ws { listen, to, headers, protocols, chunk, proxy, tls, limits } } => {
            let mut opts = bridge::Tcp2WsOptions::new(&listen, &to);
            opts.tls = tls.client_config().map_err(|e| format!("--tls-ca {e}"))?;
            opts.route = Route::from_flags(&proxy)?;
            opts.headers = headers;
            opts.protocols = protocols;
            opts.chunk = chunk;
            opts.config = limits.config();
            let signals = termination_signals()?;
            let running = bridge::tcp2ws(opts).map_err(|e| e.to_string())?;
            syncws_cli::announce(&format!("listening on tcp {}", running.local_addr()));
            let _ = signals.recv();
            log::info!("signal: no longer accepting; bridged connections end with the process");
            running.shutdown();
        }
        Command::Proxy {
            listen,
            upstreams,
            upstream_tls_ca,
            upstream_tls_fingerprint,
            config,
            x_forwarded_for,
            check_interval,
            fail_timeout,
            connect_timeout,
            tls,
            limits,
            http,
        } => {
            let (file, file_dir) = match config {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let file = proxy::FileConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                    (file, path.parent().map(PathBuf::from).unwrap_or_default())
                }
                None => (proxy::FileConfig::default(), PathBuf::new()),
            };
            let mut ups = file.upstreams()?;
            ups.extend(upstreams);
            let listen = listen.or(file.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".into());
            let mut opts = proxy::ProxyOptions::new(&listen, ups);
            opts.x_forwarded_for = x_forwarded_for || file.x_forwarded_for.unwrap_or(false);
            opts.check_interval = match (check_interval, &file.check_interval) {
                (Some(MaybeDuration(c)), _) => c,
                (None, Some(s)) => parse_opt_duration(s)?,
                (None, None) => None,
            };
            opts.fail_timeout = match (fail_timeout, &file.fail_timeout) {
                (Some(f), _) => f,
                (None, Some(s)) => parse_duration(s)?,
                (None, None) => opts.fail_timeout,
            };
            opts.connect_timeout = connect_timeout;
            // The flags win over the file; a CA and fingerprints exclude
            // each other, from wherever they come.
            let pins = match upstream_tls_fingerprint.is_empty() && upstream_tls_ca.is_none() {
                true => file.upstream_tls_fingerprints().map_err(|e| format!("upstream_tls_fingerprint: {e}"))?,
                false => upstream_tls_fingerprint,
            };
            let ca = match pins.is_empty() {
                true => upstream_tls_ca.or_else(|| file.upstream_tls_ca(&file_dir)),
                false => None,
            };
            let upstream = TlsClientFlags { tls_ca: ca, tls_fingerprint: pins };
            opts.upstream_tls = upstream.client_config().map_err(|e| format!("--upstream-tls-ca {e}"))?;
            let tls = tls.server_tls(&listen)?;
            opts.tls = tls.as_ref().map(|t| t.config.clone());
            opts.config = limits.apply(Config::default().origin(OriginPolicy::Any));
            opts.http = http;
            let signals = termination_signals()?;
            let running = proxy::proxy(opts).map_err(|e| e.to_string())?;
            announce_server("listening on ", tls.as_ref(), running.local_addr());
            serve_until(signals, move || running.shutdown());
        }
        Command::Pubsub { addr, max_backlog, backlog_policy, redis, tls, limits, http } => {
            let tls = tls.server_tls(&addr)?;
            let hub = syncws::Hub::with_backlog(
                max_backlog.unwrap_or(syncws::Hub::DEFAULT_MAX_BACKLOG),
                backlog_policy.into(),
            );
            let signals = termination_signals()?;
            let cluster = redis.join(&hub)?;
            let config = tls.as_ref().map(|t| t.config.clone());
            let running = pubsub::spawn(&addr, limits.config(), config, http, hub).map_err(|e| e.to_string())?;
            announce_server("pubsub on ", tls.as_ref(), running.local_addr());
            serve_until(signals, move || {
                running.shutdown();
                drop(cluster);
            });
        }
        Command::Chat { addr, redis, tls, limits, http } => {
            let tls = tls.server_tls(&addr)?;
            let config = chat::chat_config(limits.config());
            let signals = termination_signals()?;
            let server_config = tls.as_ref().map(|t| t.config.clone());
            let (room, cluster) = match redis.config() {
                Some(redis) => {
                    let (room, cluster) = chat::Room::join_redis(redis).map_err(|e| format!("--redis: {e}"))?;
                    (room, Some(cluster))
                }
                None => (chat::Room::default(), None),
            };
            let room = std::sync::Arc::new(room);
            let running = chat::spawn_room(&addr, config, http, server_config, room).map_err(|e| e.to_string())?;
            let page = if tls.is_some() { "https" } else { "http" };
            syncws_cli::announce(&format!("chat on {page}://{}/", running.local_addr()));
            if let Some(tls) = &tls {
                tls.announce(&format!("wss://{}/ws", syncws_cli::tls::reachable(running.local_addr())));
            }
            serve_until(signals, move || {
                running.shutdown();
                drop(cluster);
            });
        }
        Command::Exec { addr, command, dir, binary, passenv, max_forks, kill_grace, tls, http, limits } => {
            let tls = tls.server_tls(&addr)?;
            let program = match (dir, command.split_first()) {
                (Some(dir), _) => exec::Program::Dir(dir),
                (None, Some((program, args))) => {
                    exec::Program::Command { program: program.clone(), args: args.to_vec() }
                }
                (None, None) => return Err("a COMMAND after `--`, or --dir DIR, is needed".into()),
            };
            let mut opts = exec::ExecOptions::new(&addr, program);
            opts.binary = binary;
            opts.passenv = passenv;
            opts.max_forks = max_forks;
            opts.kill_grace = kill_grace;
            opts.http = http;
            opts.tls = tls.as_ref().map(|t| t.config.clone());
            opts.config = limits.apply(exec::default_config());
            let signals = termination_signals()?;
            let running = exec::exec(opts).map_err(|e| e.to_string())?;
            match (running.local_addr(), running.unix_socket()) {
                (Some(addr), _) => announce_server("listening on ", tls.as_ref(), addr),
                (None, Some(path)) => syncws_cli::announce(&format!("listening on ws+unix://{}:/", path.display())),
                (None, None) => {}
            }
            let _ = signals.recv();
            log::info!("signal: closing every connection with 1001 and ending the programs");
            running.shutdown();
        }
        Command::Bench(args) => return Ok(u8::try_from(syncws_cli::loadgen::main(args)).unwrap_or(1)),
    }
    Ok(0)
}

/// Prints a WebSocket server's first line, `PREFIX ws://ADDR` (or
/// `wss://`), then, over TLS, its certificate's fingerprint (and how to
/// connect to a self-signed one).
fn announce_server(prefix: &str, tls: Option<&ServerTls>, addr: std::net::SocketAddr) {
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    syncws_cli::announce(&format!("{prefix}{scheme}://{addr}"));
    if let Some(tls) = tls {
        tls.announce(&format!("{scheme}://{}/", syncws_cli::tls::reachable(addr)));
    }
}

/// SIGINT, SIGTERM and SIGHUP, as a channel that receives one `()` per
/// signal. Installed before the server starts, so no signal is missed.
fn termination_signals() -> Result<Receiver<()>, String> {
    let (tx, rx) = bounded(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })
    .map_err(|e| format!("cannot handle termination signals: {e}"))?;
    Ok(rx)
}

/// Serves until a termination signal, then stops accepting, closes every
/// connection with 1001 (Going Away) and waits for their threads.
fn serve_until(signals: Receiver<()>, shutdown: impl FnOnce()) {
    let _ = signals.recv();
    log::info!("signal: closing every connection with 1001");
    shutdown();
}

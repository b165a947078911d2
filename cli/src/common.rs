//! Pieces every tool shares: the [`Config`] limits as command-line flags,
//! duration parsing, the plain HTTP routes of the WebSocket servers
//! ([`Routes`]: `/metrics`, the tool's page, `--static` files), the proxy flags of the tools that connect
//! out ([`ProxyFlags`], [`Route`]), the TLS flags of servers and clients
//! ([`TlsServerFlags`], [`TlsClientFlags`]), and a small TCP accept loop for tools that
//! take plain TCP connections.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use clap::Args;
use syncws::handshake::WsUrl;
use syncws::proxy::{Proxy, ProxyEnv};
use syncws::rustls::ClientConfig;
use syncws::{
    Acceptor, ClientBuilder, Config, DeflateConfig, HttpTrait, Metrics, OriginPolicy, Request, Response, Server,
};

use crate::static_files::StaticFiles;
use crate::tls::{Fingerprint, ServerTls};

/// The [`Config`] limits, as flags. Each flag left out keeps the library's
/// default.
#[derive(Args, Debug, Clone, Default)]
pub struct Limits {
    /// Largest message after reassembly, in bytes (default 64 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Largest single frame payload, in bytes (default 16 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_frame_size: Option<usize>,
    /// Close a connection when nothing arrives for this long: `30s`, `2m`,
    /// or `off` (default 120s).
    #[arg(long, value_name = "DURATION", value_parser = parse_maybe_duration)]
    pub idle_timeout: Option<MaybeDuration>,
    /// Send a Ping after this long without traffic, or `off` (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_maybe_duration)]
    pub ping_interval: Option<MaybeDuration>,
    /// Deadline for the upgrade request to arrive (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// How long to wait for the peer's Close reply (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub close_timeout: Option<Duration>,
    /// Deadline for one write to a peer that stopped reading (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub write_timeout: Option<Duration>,
    /// Outbound queue per connection, in messages (default 1024).
    #[arg(long, value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// Outbound queue per connection, in payload bytes (default 16777216).
    #[arg(long, value_name = "BYTES")]
    pub queue_max_bytes: Option<usize>,
    /// Most live connections (default 16384).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most live connections from one IP address (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Stack size of each connection thread, in bytes (default 128 KiB).
    #[arg(long, value_name = "BYTES")]
    pub thread_stack_size: Option<usize>,
    /// Accepted `Origin` headers of browser pages: `any`, `same-host`, or a
    /// comma-separated list of origins such as `http://localhost:3000`
    /// (default: same-host, which refuses with 403 a page from another port,
    /// from file:// or from localhost when the URL says 127.0.0.1; for the
    /// proxy: any, leaving the check to the upstream).
    #[arg(long, value_name = "POLICY", value_parser = parse_origin)]
    pub origin: Option<OriginPolicy>,
    /// Most bytes the whole server holds for peers (messages still arriving,
    /// queued messages): `512M`, `2G` or bytes. Past it, the connection that
    /// would grow is closed with 1013 (default: a quarter of the machine's
    /// memory, at most 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_budget: Option<usize>,
    #[command(flatten)]
    pub deflate: Deflate,
}

/// permessage-deflate (RFC 7692), as flags: on unless `--no-deflate`.
/// Servers accept it when a client offers it, clients offer it; each hop of
/// the proxy and the bridge negotiates it on its own.
#[derive(Args, Debug, Clone, Default)]
pub struct Deflate {
    /// Turn permessage-deflate off: a server does not accept it, a client
    /// does not offer it (default: on).
    #[arg(long)]
    pub no_deflate: bool,
    /// Text and binary messages shorter than this go uncompressed (default
    /// 1024 bytes).
    #[arg(long, value_name = "BYTES", conflicts_with = "no_deflate")]
    pub deflate_threshold: Option<usize>,
    /// Keep the compression context between messages, both directions:
    /// better ratios for runs of similar messages, at about 370 KiB per
    /// connection that sent a compressed message and 40 KiB per one that
    /// received one (default: reset after every message, nothing kept).
    #[arg(long, conflicts_with = "no_deflate")]
    pub deflate_context_takeover: bool,
    /// zlib compression level, 0 (stored) to 9 (default 1: the fastest;
    /// 6 compresses JSON about a third smaller for four times the CPU).
    #[arg(long, value_name = "0-9", value_parser = clap::value_parser!(u32).range(0..=9), conflicts_with = "no_deflate")]
    pub deflate_level: Option<u32>,
}

impl Deflate {
    /// `c` with permessage-deflate set as the flags say.
    pub fn apply(&self, c: Config) -> Config {
        if self.no_deflate {
            return c.deflate(None);
        }
        let mut d = DeflateConfig::default();
        if let Some(t) = self.deflate_threshold {
            d.threshold = t;
        }
        if let Some(l) = self.deflate_level {
            d.level = l;
        }
        if self.deflate_context_takeover {
            d.server_no_context_takeover = false;
            d.client_no_context_takeover = false;
        }
        c.deflate(Some(d))
    }
}

impl Limits {
    /// `base` with every flag that was given applied.
    pub fn apply(&self, mut c: Config) -> Config {
        if let Some(v) = self.max_message_size {
            c.max_message_size = v;
            c.max_frame_size = c.max_frame_size.min(v);
        }
        if let Some(v) = self.max_frame_size {
            c.max_frame_size = v;
        }
        if let Some(MaybeDuration(v)) = self.idle_timeout {
            c.idle_timeout = v;
        }
        if let Some(MaybeDuration(v)) = self.ping_interval {
            c.ping_interval = v;
        }
        if let Some(v) = self.handshake_timeout {
            c.handshake_timeout = v;
        }
        if let Some(v) = self.close_timeout {
            c.close_timeout = v;
        }
        if let Some(v) = self.write_timeout {
            c.write_timeout = v;
        }
        if let Some(v) = self.queue_capacity {
            c.queue_capacity = v;
        }
        if let Some(v) = self.queue_max_bytes {
            c.queue_max_bytes = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.max_connections_per_ip {
            c.max_connections_per_ip = Some(v);
        }
        if let Some(v) = self.thread_stack_size {
            c.thread_stack_size = v;
        }
        if let Some(v) = &self.origin {
            c.origin = v.clone();
        }
        if let Some(v) = self.memory_budget {
            c.memory_budget = v;
        }
        self.deflate.apply(c)
    }

    /// The default [`Config`] with the flags applied.
    pub fn config(&self) -> Config {
        self.apply(Config::default())
    }
}

/// The flags of the servers that answer plain HTTP on their WebSocket
/// port: `echo`, `chat`, `pubsub`, `exec`, `bridge ws2tcp` and `proxy`.
#[derive(Args, Debug, Clone, Default)]
pub struct HttpFlags {
    /// Answer `GET /metrics` on the same port with the server's counters in
    /// the Prometheus text format: connections accepted, open, refused (by
    /// reason) and closed (by close code), messages and bytes each way,
    /// messages dropped (queue full, memory budget).
    #[arg(long)]
    pub metrics: bool,
    /// Serve the files under DIR on the same port (GET and HEAD; a folder
    /// serves its index.html; nothing outside DIR, hidden files neither).
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
}

/// The flags that make `pubsub` and `chat` nodes of one cluster through
/// Redis pub/sub.
#[derive(Args, Debug, Clone, Default)]
pub struct RedisFlags {
    /// Join the other nodes that use this Redis (`redis://HOST:PORT[/DB]`):
    /// what is published on any node reaches every node's subscribers, at
    /// most once. The node serves its own connections while Redis is away,
    /// and reconnects by itself.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// The start of every Redis channel name (topic `t` is `PREFIX` + `t`).
    #[arg(long, value_name = "PREFIX", default_value = "syncws:", requires = "redis")]
    pub redis_prefix: String,
    /// Bytes of messages that may wait for Redis (`4m` by default); past
    /// it, publishes reach this node's subscribers only, and are counted.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, requires = "redis")]
    pub redis_buffer: Option<usize>,
}

impl RedisFlags {
    /// The cluster config these flags ask for, if any.
    pub fn config(&self) -> Option<syncws::cluster::RedisConfig> {
        let url = self.redis.as_ref()?;
        let mut config = syncws::cluster::RedisConfig::new(url).prefix(self.redis_prefix.clone());
        if let Some(bytes) = self.redis_buffer {
            config = config.max_pending_bytes(bytes);
        }
        Some(config)
    }

    /// Joins `hub` to the cluster if `--redis` was given.
    pub fn join(&self, hub: &syncws::Hub) -> Result<Option<syncws::cluster::Cluster>, String> {
        match self.config() {
            Some(config) => hub.join_redis(config).map(Some).map_err(|e| format!("--redis: {e}")),
            None => Ok(None),
        }
    }
}

/// The TLS flags of every server (`echo`, `chat`, `pubsub`, `exec`,
/// `bridge ws2tcp`, `proxy`): a certificate from files, or one made at
/// start.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsServerFlags {
    /// Serve over TLS (wss://, https://) with this PEM certificate chain
    /// (the server's certificate first); its SHA-256 fingerprint is printed.
    #[arg(long, value_name = "PEM", requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve over TLS with a certificate made at start (for localhost,
    /// this machine's host name, 127.0.0.1, ::1 and the listening
    /// address), and print its SHA-256 fingerprint: clients trust it with
    /// `--tls-fingerprint` (or `--tls-ca` and the file of
    /// --tls-write-cert). A new certificate, and fingerprint, each start.
    #[arg(long)]
    pub tls_self_signed: bool,
    /// With --tls-self-signed: write the certificate made (PEM) to FILE.
    #[arg(long, value_name = "FILE", requires = "tls_self_signed")]
    pub tls_write_cert: Option<PathBuf>,
}

impl TlsServerFlags {
    /// The TLS the flags ask for, for a server listening on `listen`;
    /// `None` for plain ws://.
    ///
    /// # Errors
    ///
    /// Files that cannot be read or used, a certificate that cannot be
    /// made or written.
    pub fn server_tls(&self, listen: &str) -> Result<Option<ServerTls>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::tls::from_files(cert, key).map(Some),
            _ if self.tls_self_signed => crate::tls::self_signed(listen, self.tls_write_cert.as_deref()).map(Some),
            _ => Ok(None),
        }
    }
}

/// The TLS flags of the tools that dial `wss://` (`client`, `bridge
/// tcp2ws`, `bench`; the proxy's upstreams have their own names for the
/// same, `--upstream-tls-ca` and `--upstream-tls-fingerprint`).
#[derive(Args, Debug, Clone, Default)]
pub struct TlsClientFlags {
    /// For wss://: trust only the CA certificates in this PEM file (a
    /// private CA, or a self-signed server certificate) instead of the
    /// built-in Mozilla roots and the system's.
    #[arg(long, value_name = "PEM", conflicts_with = "tls_fingerprint")]
    pub tls_ca: Option<PathBuf>,
    /// For wss://: accept exactly the certificate with this SHA-256
    /// fingerprint (64 hex digits, colons optional, as the servers'
    /// --tls-self-signed and `openssl x509 -fingerprint -sha256` print it),
    /// whatever its name, issuer or dates; any other is refused
    /// (repeatable: any of them).
    #[arg(long, value_name = "SHA256", value_parser = crate::tls::parse_fingerprint)]
    pub tls_fingerprint: Vec<Fingerprint>,
}

impl TlsClientFlags {
    /// The client TLS config the flags ask for; `None` for the default
    /// (the library's: Mozilla's and the system's roots).
    ///
    /// # Errors
    ///
    /// A `--tls-ca` file that cannot be read or holds no certificate (the
    /// message starts with its path; callers add the flag's name).
    pub fn client_config(&self) -> Result<Option<Arc<ClientConfig>>, String> {
        if let Some(ca) = &self.tls_ca {
            return crate::client::tls_config_trusting(ca).map(Some);
        }
        if !self.tls_fingerprint.is_empty() {
            return crate::tls::pinned_config(&self.tls_fingerprint).map(Some);
        }
        Ok(None)
    }
}

/// The plain HTTP requests of a WebSocket server, resolved in one order
/// for every tool: `/metrics` (with `--metrics`), then the tool's own page
/// (the chat's at `/`), then the `--static` files. What none of them
/// answers gets what the tool would answer without routes: its page's
/// 404, or, for a tool without a page, 426 (this port speaks WebSocket);
/// with `--static`, the files' 404. A page's 404 lets the files try, so a
/// page and the files share the port. Upgrade requests never get here: the
/// server recognises them by their headers, on any path.
/// Makes the handler of a tool's page for one connection.
type MakePage = dyn Fn() -> Box<dyn HttpTrait> + Send + Sync;

#[derive(Clone, Default)]
pub struct Routes {
    /// `--metrics`: serve the counters of each connection's server.
    metrics: bool,
    page: Option<Arc<MakePage>>,
    files: Option<Arc<StaticFiles>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("metrics", &self.metrics)
            .field("page", &self.page.is_some())
            .field("static", &self.files.as_ref().map(|f| f.root().to_owned()))
            .finish()
    }
}

impl Routes {
    /// The routes `flags` ask for.
    ///
    /// # Errors
    ///
    /// A `--static` folder that cannot be opened.
    pub fn new(flags: &HttpFlags) -> std::io::Result<Routes> {
        let files = match &flags.static_dir {
            Some(dir) => Some(Arc::new(
                StaticFiles::new(dir)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("--static {}: {e}", dir.display())))?,
            )),
            None => None,
        };
        Ok(Routes { metrics: flags.metrics, page: None, files })
    }

    /// With the tool's own page: `page` makes the handler of each
    /// connection, asked after `/metrics`.
    #[must_use]
    pub fn page(mut self, page: impl Fn() -> Box<dyn HttpTrait> + Send + Sync + 'static) -> Routes {
        self.page = Some(Arc::new(page));
        self
    }

    /// Sets the HTTP callback of one connection's `server`; without any
    /// route, leaves the library's answer (426) alone. `/metrics` shows the
    /// counters `server` counts in: its listener's, TCP or Unix socket.
    pub fn install(&self, server: &mut Server) {
        if !self.metrics && self.page.is_none() && self.files.is_none() {
            return;
        }
        let page = self.page.as_ref().map(|make| make());
        let metrics = self.metrics.then(|| server.metrics());
        server.set_callback_http(Box::new(Router { metrics, page, files: self.files.clone() }));
    }
}

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One connection's [`Routes`].
struct Router {
    metrics: Option<Metrics>,
    page: Option<Box<dyn HttpTrait>>,
    files: Option<Arc<StaticFiles>>,
}

impl HttpTrait for Router {
    fn operate(&mut self, req: &mut Request) -> syncws::Result<Response> {
        let path = req.path.split('?').next().unwrap_or("");
        if let (Some(metrics), "/metrics") = (&self.metrics, path) {
            return Ok(match req.method.as_str() {
                "GET" => Response::new(200).with_body(metrics.snapshot().to_prometheus(), PROMETHEUS_TEXT),
                _ => Response::text(405, "only GET\n").with_header("Allow", "GET"),
            });
        }
        if let Some(page) = &mut self.page {
            let resp = page.operate(req)?;
            if resp.status != 404 || self.files.is_none() {
                return Ok(resp);
            }
        }
        match &self.files {
            Some(files) => Ok(files.serve(req)),
            // What the library answers a plain request on a WebSocket-only
            // server.
            None => Ok(Response::text(426, "this endpoint speaks WebSocket only: send an upgrade request")
                .with_header("Upgrade", "websocket")
                .with_header("Sec-WebSocket-Version", "13")
                .with_header("Connection", "close")),
        }
    }
}

/// The proxy flags of the commands that open WebSocket connections
/// (`client`, `bridge tcp2ws`).
#[derive(Args, Debug, Clone, Default)]
pub struct ProxyFlags {
    /// Connect through this proxy: `http://[user:pass@]host:port` (HTTP
    /// CONNECT), `socks5://...` (names resolved here) or `socks5h://...`
    /// (names resolved by the proxy). Overrides the environment. wss://
    /// stays TLS end to end with the server.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Ignore the proxy environment variables, which are read by default
    /// as curl reads them: http_proxy (ws://), https_proxy or HTTPS_PROXY
    /// (wss://), all_proxy or ALL_PROXY (both), no_proxy or NO_PROXY
    /// (hosts that go direct; loopback is not exempt unless listed).
    #[arg(long)]
    pub no_proxy_env: bool,
}

/// How a command's WebSocket connections reach their server: directly,
/// through one proxy, or as the environment says (read once, at start).
#[derive(Debug, Clone, Default)]
pub enum Route {
    /// Straight to the server.
    #[default]
    Direct,
    /// Through this proxy URL (already checked).
    Proxy(String),
    /// As the proxy environment variables say, URL by URL.
    Env(ProxyEnv),
}

impl Route {
    /// The route the flags ask for: `--proxy`, else the environment
    /// unless `--no-proxy-env`.
    ///
    /// # Errors
    ///
    /// A `--proxy` that is not a usable proxy URL.
    pub fn from_flags(flags: &ProxyFlags) -> Result<Route, String> {
        match &flags.proxy {
            Some(url) => {
                Proxy::parse(url).map_err(|e| format!("--proxy: {e}"))?;
                Ok(Route::Proxy(url.clone()))
            }
            None if flags.no_proxy_env => Ok(Route::Direct),
            None => Ok(Route::Env(ProxyEnv::from_env())),
        }
    }

    /// `builder` set to take this route.
    pub fn apply(&self, builder: ClientBuilder) -> syncws::Result<ClientBuilder> {
        match self {
            Route::Direct => Ok(builder),
            Route::Proxy(url) => builder.proxy(url),
            Route::Env(env) => Ok(builder.proxy_env(env.clone())),
        }
    }

    /// The proxy `url` goes through, if any, for messages: `Ok(None)` when
    /// it goes direct.
    ///
    /// # Errors
    ///
    /// The URL, or the environment variable that applies to it, is not
    /// usable (the message says which).
    pub fn proxy_for(&self, url: &str) -> Result<Option<Proxy>, String> {
        match self {
            Route::Direct => Ok(None),
            Route::Proxy(proxy) => Proxy::parse(proxy).map(Some).map_err(|e| e.to_string()),
            Route::Env(env) => {
                let url = WsUrl::parse(url).map_err(|e| e.to_string())?;
                env.proxy_for(&url).map_err(|e| e.to_string())
            }
        }
    }
}

/// Parses a size: bytes, or a number with `K`, `M` or `G` (powers of 1024;
/// `KiB`, `MiB`, `GiB` too).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size such as 512M, 2G or 1048576"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use K, M or G")),
    };
    n.checked_mul(1 << shift).filter(|&v| v > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration such as 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// [`parse_duration`], or `off` / `none` for no deadline.
pub fn parse_opt_duration(s: &str) -> Result<Option<Duration>, String> {
    match s.trim() {
        "off" | "none" => Ok(None),
        other => parse_duration(other).map(Some),
    }
}

/// A duration, or none (`off`): a flag value that can turn a deadline off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeDuration(pub Option<Duration>);

/// [`parse_opt_duration`] as a [`MaybeDuration`], for clap.
pub fn parse_maybe_duration(s: &str) -> Result<MaybeDuration, String> {
    parse_opt_duration(s).map(MaybeDuration)
}

/// `any`, `same-host`, or a comma-separated allow-list of origins.
pub fn parse_origin(s: &str) -> Result<OriginPolicy, String> {
    match s.trim() {
        "any" => Ok(OriginPolicy::Any),
        "same-host" => Ok(OriginPolicy::SameHost),
        "" => Err("empty origin policy".into()),
        list => Ok(OriginPolicy::AllowList(list.split(',').map(|o| o.trim().to_owned()).collect())),
    }
}

/// A TCP accept loop on its own thread, one thread per connection, for the
/// tools that take plain TCP connections. Dropping it (or [`TcpServer::shutdown`])
/// stops accepting; connections already running go on until they end.
///
/// Accepting runs on a [`syncws::Acceptor`]: out of descriptors or threads,
/// connections are closed at once, the loop backs off instead of spinning,
/// and a summary line per second at most says how many were refused.
#[derive(Debug)]
pub struct TcpServer {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Binds `addr` and serves every connection with `handle` on a thread of
    /// its own named `name-N`.
    pub fn spawn<F>(addr: impl ToSocketAddrs, name: &str, handle: F) -> std::io::Result<TcpServer>
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let handle = Arc::new(handle);
        let name = name.to_owned();
        // The same accept loop as the WebSocket servers': out of
        // descriptors or threads, connections are closed (these are not
        // HTTP clients, so no 503), with a backoff and a summary line.
        let mut acceptor = Acceptor::new(listener);
        acceptor.set_answer_503(false);
        let thread = thread::Builder::new().name(format!("{name}-accept")).spawn(move || {
            let mut id = 0u64;
            while !stop.load(Ordering::Acquire) {
                let Some((stream, _peer)) = acceptor.accept() else { continue };
                if stop.load(Ordering::Acquire) {
                    break;
                }
                id += 1;
                let handle = Arc::clone(&handle);
                let builder = thread::Builder::new().name(format!("{name}-{id}")).stack_size(256 << 10);
                acceptor.spawn(stream, builder, move |stream| handle(stream));
            }
        })?;
        Ok(TcpServer { local_addr, stopping, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Blocks until the accept loop ends (it ends only on shutdown).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting and waits for the accept thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("lots").is_err());
        let limits = Limits { memory_budget: Some(64 << 20), ..Limits::default() };
        assert_eq!(limits.config().memory_budget, 64 << 20);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").is_err());
        assert_eq!(parse_opt_duration("off").unwrap(), None);
    }

    #[test]
    fn limits_apply() {
        let l = Limits { max_message_size: Some(1000), idle_timeout: Some(MaybeDuration(None)), ..Limits::default() };
        let c = l.config();
        assert_eq!((c.max_message_size, c.max_frame_size, c.idle_timeout), (1000, 1000, None));
    }
}

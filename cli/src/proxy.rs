//! `syncws proxy`: a WebSocket reverse proxy with several upstreams.
//!
//! For each upgrade request the proxy picks an upstream (smooth weighted
//! round robin among the healthy ones), opens a WebSocket to it offering the
//! client's subprotocols and forwarding its headers, and only then answers
//! the client: 101 with the subprotocol the upstream chose, or the status
//! and body the upstream refused with. After that, messages, Pings, Pongs
//! and Close codes and reasons are forwarded both ways as they are, and the
//! close handshake is end to end: a Close from either side is answered with
//! the other side's reply, after whatever that side still sent
//! ([`WsOption::defer_close_reply`]), so no message in flight is cut off.
//!
//! # Health
//!
//! - passive: an upstream that cannot be reached, or that answers the
//!   upgrade with a 5xx status, is marked down and the next one is tried for
//!   the same client; a down upstream is skipped until `fail_timeout` has
//!   passed (then tried again) or, with active checks on, until a check
//!   succeeds;
//! - active (`check_interval`): every interval, each upstream gets a
//!   WebSocket handshake to its URL followed by Close 1000; no answer, a
//!   timeout or a 5xx marks the upstream down, a 101 (or a 4xx, which a
//!   live server refusing the check's request gives) marks it up.
//!
//! If every upstream is down, all are tried anyway (one may have recovered);
//! when none answers, the client gets 502.
//!
//! # Paths and headers
//!
//! The client's path is appended to the upstream URL's path (`ws://u/app`
//! and a request for `/chat?x` go to `ws://u/app/chat?x`); the upstream's
//! scheme is kept, so a `wss://` upstream is dialled over TLS and a
//! `ws+unix:///run/app.sock:/app` upstream over its Unix socket (the
//! client's path joined to `/app`). Headers are
//! forwarded except the hop-by-hop and handshake ones; `Host` and `Origin`
//! are forwarded as the client sent them, so the upstream can apply its own
//! Origin check. With `x_forwarded_for`, the client's address is appended to
//! `X-Forwarded-For`.
//!
//! # TLS to upstreams
//!
//! A `wss://` upstream is always dialled over TLS, for connections and
//! health checks alike, never in plaintext. Its certificate is checked
//! against the built-in Mozilla roots, or with
//! [`ProxyOptions::upstream_tls`] (`--upstream-tls-ca FILE.pem`, or
//! `upstream_tls_ca` in the file) only against the CA certificates given,
//! for a private CA or a self-signed upstream; or
//! (`--upstream-tls-fingerprint`, `upstream_tls_fingerprint`) only the
//! certificates of those SHA-256 fingerprints, as `syncws client
//! --tls-fingerprint` does. An upstream whose
//! certificate is not trusted counts as unreachable: it is marked down, the
//! reason is logged, and when no upstream is left the client gets 502. The
//! proxy itself listens in plain `ws://`, or over TLS ([`ProxyOptions::tls`],
//! `--tls-cert`/`--tls-key` or `--tls-self-signed`).
//!
//! # Flow control
//!
//! Each direction goes through a bounded queue of `queue` messages (default
//! 16): a slow side blocks the thread reading the other side, so memory per
//! connection stays under `queue` times the largest message
//! ([`Config::max_message_size`]) each way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender as ChanSender};
use serde::Deserialize;
use syncws::handshake::WsUrl;
use syncws::rustls::{ClientConfig, ServerConfig};
use syncws::{
    Client, CloseCode, CloseData, Config, Error, Listener, OriginPolicy, OwnedMessage, Request, Response, Result,
    Running, WsHandshake, WsOption, WsTrait,
};

use crate::common::{HttpFlags, Routes};

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `ws://host:port[/base]`, `wss://host:port[/base]` or
    /// `ws+unix:///path/to.sock[:/base]`.
    pub url: String,
    /// Share of the connections, relative to the others (at least 1).
    pub weight: u32,
}

impl Upstream {
    /// Parses `URL` or `URL,weight=N`.
    pub fn parse(s: &str) -> std::result::Result<Upstream, String> {
        let (url, weight) = match s.rsplit_once(",weight=") {
            Some((url, w)) => (url, w.trim().parse::<u32>().map_err(|_| format!("bad weight in {s:?}"))?),
            None => (s, 1),
        };
        if weight == 0 {
            return Err(format!("weight must be at least 1 in {s:?}"));
        }
        WsUrl::parse(url.trim()).map_err(|e| e.to_string())?;
        Ok(Upstream { url: url.trim().to_owned(), weight })
    }
}

/// Options of `syncws proxy`.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where clients connect.
    pub listen: String,
    /// The upstreams.
    pub upstreams: Vec<Upstream>,
    /// Append the client's address to `X-Forwarded-For`.
    pub x_forwarded_for: bool,
    /// Active health checks every this long; `None` for none.
    pub check_interval: Option<Duration>,
    /// How long a passively failed upstream is skipped.
    pub fail_timeout: Duration,
    /// Deadline for connecting to an upstream (TCP and handshake).
    pub connect_timeout: Duration,
    /// Messages queued per direction per connection.
    pub queue: usize,
    /// The TLS client configuration for `wss://` upstreams (connections
    /// and health checks); `None` checks their certificates against the
    /// built-in Mozilla roots. See
    /// [`tls_config_trusting`](crate::client::tls_config_trusting) for one
    /// trusting a private CA.
    pub upstream_tls: Option<Arc<ClientConfig>>,
    /// Limits and timeouts, for both sides. Its `origin` is the proxy's own
    /// Origin check (default here: any, leaving it to the upstream).
    pub config: Config,
    /// Plain HTTP routes on the proxy's port (`/metrics`).
    pub http: HttpFlags,
    /// Serve clients over TLS (wss://) with this configuration; `None`:
    /// plain ws://.
    pub tls: Option<Arc<ServerConfig>>,
}

impl ProxyOptions {
    /// Options with the defaults and these upstreams.
    pub fn new(listen: &str, upstreams: Vec<Upstream>) -> Self {
        ProxyOptions {
            listen: listen.to_owned(),
            upstreams,
            x_forwarded_for: false,
            check_interval: None,
            fail_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            queue: 16,
            upstream_tls: None,
            config: Config::default().origin(OriginPolicy::Any),
            http: HttpFlags::default(),
            tls: None,
        }
    }
}

/// The TOML file of `syncws proxy --config FILE`.
///
/// ```toml
/// listen = "127.0.0.1:8080"
/// x_forwarded_for = true
/// check_interval = "5s"
/// fail_timeout = "10s"
/// upstream_tls_ca = "private-ca.pem"
/// # or, for one self-signed upstream (`syncws echo --tls-self-signed`):
/// # upstream_tls_fingerprint = ["AB:CD:..."]
///
/// [[upstream]]
/// url = "ws://127.0.0.1:9001"
/// weight = 3
///
/// [[upstream]]
/// url = "wss://backend.internal:9443/app"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where clients connect.
    pub listen: Option<String>,
    /// Append the client's address to `X-Forwarded-For`.
    pub x_forwarded_for: Option<bool>,
    /// Active health check interval, such as `"5s"`, or `"off"`.
    pub check_interval: Option<String>,
    /// How long a failed upstream is skipped, such as `"10s"`.
    pub fail_timeout: Option<String>,
    /// A PEM file of the CA certificates `wss://` upstreams are checked
    /// against instead of the built-in roots; a relative path is taken from
    /// the config file's folder.
    pub upstream_tls_ca: Option<String>,
    /// SHA-256 fingerprints: `wss://` upstreams must present a certificate
    /// with one of them (instead of one the roots trust).
    #[serde(default)]
    pub upstream_tls_fingerprint: Vec<String>,
    /// The upstreams.
    #[serde(default)]
    pub upstream: Vec<FileUpstream>,
}

/// One `[[upstream]]` of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// `ws://host:port[/base]`, `wss://host:port[/base]` or
    /// `ws+unix:///path/to.sock[:/base]`.
    pub url: String,
    /// Share of the connections (default 1).
    pub weight: Option<u32>,
}

impl FileConfig {
    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> std::result::Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The upstreams, checked.
    pub fn upstreams(&self) -> std::result::Result<Vec<Upstream>, String> {
        self.upstream
            .iter()
            .map(|u| {
                let spec = format!("{},weight={}", u.url, u.weight.unwrap_or(1));
                Upstream::parse(&spec)
            })
            .collect()
    }

    /// `upstream_tls_ca`, a relative path taken from `dir`, the config
    /// file's folder.
    pub fn upstream_tls_ca(&self, dir: &Path) -> Option<PathBuf> {
        self.upstream_tls_ca.as_ref().map(|p| dir.join(p))
    }

    /// `upstream_tls_fingerprint`, parsed.
    pub fn upstream_tls_fingerprints(&self) -> std::result::Result<Vec<crate::tls::Fingerprint>, String> {
        self.upstream_tls_fingerprint.iter().map(|f| f.parse()).collect()
    }
}

/// What the proxy knows of one upstream.
#[derive(Debug)]
struct UpState {
    url: WsUrl,
    weight: i64,
    current: i64,
    down: bool,
    retry_at: Instant,
}

#[derive(Debug)]
struct Pool {
    ups: Mutex<Vec<UpState>>,
    active: bool,
    fail_timeout: Duration,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Vec<UpState>> {
        self.ups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Smooth weighted round robin over the healthy upstreams not in
    /// `tried`; over all upstreams not tried if none is healthy.
    fn choose(&self, tried: &[usize]) -> Option<usize> {
        let mut ups = self.lock();
        let now = Instant::now();
        let healthy = |i: usize, u: &UpState| !tried.contains(&i) && (!u.down || (!self.active && now >= u.retry_at));
        let mut eligible: Vec<usize> = (0..ups.len()).filter(|&i| healthy(i, &ups[i])).collect();
        if eligible.is_empty() {
            eligible = (0..ups.len()).filter(|i| !tried.contains(i)).collect();
        }
        let total: i64 = eligible.iter().map(|&i| ups[i].weight).sum();
        let mut best: Option<usize> = None;
        for &i in &eligible {
            ups[i].current += ups[i].weight;
            if best.is_none_or(|b| ups[i].current > ups[b].current) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            ups[b].current -= total;
        }
        best
    }

    fn url(&self, i: usize) -> WsUrl {
        self.lock()[i].url.clone()
    }

    fn mark(&self, i: usize, up: bool) {
        let mut ups = self.lock();
        let u = &mut ups[i];
        if u.down == up {
            if up {
                log::info!("upstream {} is up", u.url);
            } else {
                log::warn!("upstream {} is down", u.url);
            }
        }
        u.down = !up;
        if !up {
            u.retry_at = Instant::now() + self.fail_timeout;
        }
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    running: Running,
    /// Dropping it stops the health checker.
    _stop_checks: Option<ChanSender<()>>,
}

impl Proxy {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Stops the proxy, closing every connection with 1001.
    pub fn shutdown(self) {
        self.running.shutdown();
    }
}

/// Starts the proxy on a thread of its own.
pub fn proxy(opts: ProxyOptions) -> Result<Proxy> {
    if opts.upstreams.is_empty() {
        return Err(Error::Config("the proxy needs at least one upstream".into()));
    }
    if opts.queue == 0 {
        return Err(Error::Config("queue must be above 0".into()));
    }
    let mut ups = Vec::new();
    for u in &opts.upstreams {
        let url = WsUrl::parse(&u.url)?;
        let now = Instant::now();
        ups.push(UpState { url, weight: i64::from(u.weight.max(1)), current: 0, down: false, retry_at: now });
    }
    let pool =
        Arc::new(Pool { ups: Mutex::new(ups), active: opts.check_interval.is_some(), fail_timeout: opts.fail_timeout });
    let mut listener = Listener::bind_with_config(opts.listen.as_str(), opts.config.clone())?;
    if let Some(tls) = &opts.tls {
        listener = listener.tls(Arc::clone(tls));
    }
    let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
    log::info!("proxy on {scheme}://{} to {} upstreams", listener.local_addr(), opts.upstreams.len());
    let stop_checks = match opts.check_interval {
        Some(every) => {
            let (tx, rx) = bounded::<()>(0);
            let pool = Arc::clone(&pool);
            let config = opts.config.clone();
            let timeout = opts.connect_timeout;
            let tls = opts.upstream_tls.clone();
            thread::Builder::new()
                .name("proxy-checks".into())
                .spawn(move || check_loop(&pool, &rx, every, timeout, &config, tls.as_ref()))?;
            Some(tx)
        }
        None => None,
    };
    let routes = Routes::new(&opts.http)?;
    let shared = Arc::new((pool, opts));
    let running = listener.spawn(move |server| {
        routes.install(server);
        let handler = ClientSide {
            shared: Arc::clone(&shared),
            peer: server.peer_addr(),
            upstream: None,
            to_upstream: None,
            link: Arc::default(),
            failed: false,
            close_forwarded: false,
        };
        server.set_callback_ws(Box::new(handler));
    })?;
    Ok(Proxy { running, _stop_checks: stop_checks })
}

fn check_loop(
    pool: &Pool,
    stop: &Receiver<()>,
    every: Duration,
    timeout: Duration,
    config: &Config,
    tls: Option<&Arc<ClientConfig>>,
) {
    loop {
        let n = pool.lock().len();
        for i in 0..n {
            let url = pool.url(i);
            let config = config.clone().handshake_timeout(timeout).close_timeout(timeout);
            let result =
                Client::builder().url(&url.to_string()).and_then(|b| with_tls(b, tls).config(config).connect());
            match result {
                Ok(mut client) => {
                    let _ = client.close(CloseCode::NORMAL, "health check");
                    while client.read().is_ok() {}
                    pool.mark(i, true);
                }
                // A 4xx answer (a path or a token the check lacks) still
                // shows a live server.
                Err(Error::Handshake { status, .. }) if (400..500).contains(&status) => pool.mark(i, true),
                Err(e) => {
                    log::debug!("health check of {url} failed: {e}{}", tls_hint(&e));
                    pool.mark(i, false);
                }
            }
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Headers never forwarded: hop-by-hop, and those the handshake sets.
const SKIP: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "x-forwarded-for",
];

/// An upstream's refusal as the proxy passes it on: its status, body and
/// end-to-end headers (`WWW-Authenticate`, `Retry-After`, `Content-Type`,
/// ...), without the hop-by-hop ones and the upgrade's own ([`SKIP`]), and
/// with `Connection: close`.
fn refusal(status: u16, upstream: Option<Response>) -> Response {
    let mut resp = Response::new(status);
    if let Some(up) = upstream {
        for (name, value) in up.headers.iter().filter(|(name, _)| !SKIP.iter().any(|n| name.eq_ignore_ascii_case(n))) {
            resp.headers.append(name, value);
        }
        resp.body = up.body;
    }
    resp.with_header("Connection", "close")
}

/// The TLS configuration for `wss://` upstreams, if one was given (a
/// `ws://` URL ignores it).
fn with_tls(b: syncws::ClientBuilder, tls: Option<&Arc<ClientConfig>>) -> syncws::ClientBuilder {
    match tls {
        Some(tls) => b.tls_config(Arc::clone(tls)),
        None => b,
    }
}

/// What to add to the log line of a failed upstream connection: for a TLS
/// failure, how to trust a private CA.
fn tls_hint(e: &Error) -> &'static str {
    match e {
        Error::Tls(_) => {
            " (not retried in plaintext; for a private CA or a self-signed upstream, trust it with \
             --upstream-tls-ca or --upstream-tls-fingerprint)"
        }
        _ => "",
    }
}

/// The upstream URL for a request: the upstream's path joined with the
/// request's, the rest of the URL (its scheme above all: `wss://` stays
/// `wss://`) kept.
fn join(url: &WsUrl, path: &str) -> WsUrl {
    let base = url.path.split('?').next().unwrap_or("/").trim_end_matches('/');
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let joined = if base.is_empty() {
        path
    } else if path == "/" {
        base.to_owned()
    } else {
        format!("{base}{path}")
    };
    WsUrl { path: joined, ..url.clone() }
}

/// The client's side of one proxied connection.
struct ClientSide {
    shared: Arc<(Arc<Pool>, ProxyOptions)>,
    peer: Option<SocketAddr>,
    /// The upstream connection, from `on_request` to `on_open`.
    upstream: Option<Client>,
    /// Messages for the upstream.
    to_upstream: Option<ChanSender<OwnedMessage>>,
    /// What this side shares with the upstream's, to end together.
    link: Arc<Link>,
    failed: bool,
    /// The client's Close went to the upstream, which answers it.
    close_forwarded: bool,
}

impl ClientSide {
    fn connect(&self, req: &Request, url: &WsUrl) -> Result<Client> {
        let opts = &self.shared.1;
        let b = Client::builder().url(&url.to_string())?.connect_timeout(opts.connect_timeout);
        let mut b = with_tls(b, opts.upstream_tls.as_ref()).config(opts.config.clone());
        for (name, value) in req.headers.iter() {
            if !SKIP.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                b = b.header(name, value);
            }
        }
        if let Some(host) = req.header("host") {
            b = b.header("Host", host);
        }
        let xff: Vec<&str> = req.headers.get_all("x-forwarded-for").collect();
        if opts.x_forwarded_for {
            let mut list = xff.join(", ");
            if let Some(peer) = self.peer {
                if !list.is_empty() {
                    list.push_str(", ");
                }
                list.push_str(&peer.ip().to_string());
            }
            if !list.is_empty() {
                b = b.header("X-Forwarded-For", &list);
            }
        } else {
            for v in xff {
                b = b.header("X-Forwarded-For", v);
            }
        }
        for p in req.protocols() {
            b = b.protocol(p);
        }
        b.connect()
    }

    fn send_up(&self, msg: OwnedMessage) {
        if let Some(tx) = &self.to_upstream {
            // An error means the upstream side has ended; its Close (or a
            // 1011) is on its way to the client.
            let _ = tx.send(msg);
        }
    }
}

impl WsTrait for ClientSide {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        let pool = Arc::clone(&self.shared.0);
        let mut tried = Vec::new();
        let mut last: Option<Response> = None;
        while let Some(i) = pool.choose(&tried) {
            tried.push(i);
            let url = join(&pool.url(i), &req.path);
            match self.connect(req, &url) {
                Ok(client) => {
                    pool.mark(i, true);
                    let mut resp = WsHandshake::build_request(req)?;
                    if let Some(p) = client.protocol() {
                        resp.headers.insert("Sec-WebSocket-Protocol", p);
                    }
                    log::debug!("proxy: {:?} -> {url}", self.peer);
                    self.upstream = Some(client);
                    return Ok(resp);
                }
                Err(Error::Handshake { status, reason, response }) => {
                    let resp = refusal(status, response.map(|r| *r));
                    if status < 500 {
                        log::debug!("proxy: {url} refused {:?}: {reason}", self.peer);
                        return Ok(resp);
                    }
                    log::warn!("proxy: {url} failed the handshake: {reason}");
                    pool.mark(i, false);
                    last = Some(resp);
                }
                Err(e) => {
                    log::warn!("proxy: cannot reach {url}: {e}{}", tls_hint(&e));
                    pool.mark(i, false);
                }
            }
        }
        Ok(last.unwrap_or_else(|| Response::text(502, "no upstream could be reached\n")))
    }

    fn on_open(&mut self, _shake: WsHandshake) -> Result<Option<WsOption>> {
        let mut client = self.upstream.take().ok_or_else(|| Error::Application("no upstream connection".into()))?;
        let queue = self.shared.1.queue;
        let (up_tx, up_rx) = bounded(queue);
        let (cl_tx, cl_rx) = bounded(queue);
        client.set_callback_ws(Box::new(UpstreamSide {
            to_client: cl_tx,
            from_client: Some(up_rx),
            link: Arc::clone(&self.link),
            failed: false,
            close_forwarded: false,
        }));
        self.to_upstream = Some(up_tx);
        thread::Builder::new().name("proxy-upstream".into()).stack_size(128 << 10).spawn(move || {
            if let Err(e) = client.wait_ws_operate() {
                log::debug!("proxy: upstream connection: {e}");
            }
        })?;
        let mut option = WsOption::default();
        option.set_receiver(cl_rx);
        // The client's Close is answered by the upstream's reply, after
        // whatever the upstream still sends.
        option.defer_close_reply();
        Ok(Some(option))
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if matches!(msg, OwnedMessage::Close(_)) {
            self.close_forwarded = true;
        }
        self.send_up(msg);
        Ok(())
    }

    fn on_ping(&mut self, val: Vec<u8>) -> Result<Option<OwnedMessage>> {
        self.send_up(OwnedMessage::Ping(val));
        Ok(None)
    }

    fn on_pong(&mut self, val: Vec<u8>) {
        self.send_up(OwnedMessage::Pong(val));
    }

    fn on_error(&mut self, err: Error) {
        log::debug!("proxy: client {:?}: {err}", self.peer);
        self.failed = true;
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        // Either the client's Close went up already (and the upstream's reply
        // ended this side), or this is the client's reply to the upstream's
        // Close, or the client is gone.
        let close = match reason {
            None if self.failed => Some(CloseData::new(CloseCode::AWAY, "client went away")),
            other => other.clone(),
        };
        let forwarded = self.close_forwarded
            || self.to_upstream.take().is_some_and(|tx| {
                let wait = self.shared.1.config.close_timeout;
                tx.send_timeout(OwnedMessage::Close(close), wait).is_ok()
            });
        self.link.client_ended(forwarded);
    }
}

/// What the two sides of one proxied connection share, so that the
/// upstream connection never outlives the client's.
#[derive(Default)]
struct Link {
    /// Whether the client's side has ended, and the upstream's Sender
    /// once that side is open.
    inner: Mutex<(bool, Option<syncws::Sender>)>,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, (bool, Option<syncws::Sender>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client's side ended. If its Close could not be queued for the
    /// upstream (the upstream reads too slowly to take it within the close
    /// timeout), the upstream connection is ended at once instead of being
    /// left open with nobody behind it.
    fn client_ended(&self, close_forwarded: bool) {
        let mut inner = self.lock();
        inner.0 = true;
        let upstream = inner.1.take();
        drop(inner);
        if let Some(upstream) = upstream.filter(|_| !close_forwarded) {
            log::debug!("proxy: the client is gone and the upstream takes no Close: ending it");
            upstream.terminate();
        }
    }

    /// The upstream's side opened: false if the client's has ended already.
    fn upstream_opened(&self, sender: syncws::Sender) -> bool {
        let mut inner = self.lock();
        if inner.0 {
            return false;
        }
        inner.1 = Some(sender);
        true
    }
}

/// The upstream's side of one proxied connection.
struct UpstreamSide {
    to_client: ChanSender<OwnedMessage>,
    from_client: Option<Receiver<OwnedMessage>>,
    link: Arc<Link>,
    failed: bool,
    /// The upstream's Close went to the client, which answers it.
    close_forwarded: bool,
}

impl WsTrait for UpstreamSide {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        if !self.link.upstream_opened(shake.sender) {
            return Err(Error::Application("the client went away before the upstream opened".into()));
        }
        let mut option = WsOption::default();
        if let Some(rx) = self.from_client.take() {
            option.set_receiver(rx);
        }
        option.defer_close_reply();
        Ok(Some(option))
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if matches!(msg, OwnedMessage::Close(_)) {
            self.close_forwarded = true;
        }
        let _ = self.to_client.send(msg);
        Ok(())
    }

    fn on_ping(&mut self, val: Vec<u8>) -> Result<Option<OwnedMessage>> {
        let _ = self.to_client.send(OwnedMessage::Ping(val));
        Ok(None)
    }

    fn on_pong(&mut self, val: Vec<u8>) {
        let _ = self.to_client.send(OwnedMessage::Pong(val));
    }

    fn on_error(&mut self, err: Error) {
        log::debug!("proxy: upstream: {err}");
        self.failed = true;
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        if self.close_forwarded {
            return;
        }
        let close = match reason {
            None if self.failed => Some(CloseData::new(CloseCode::INTERNAL, "upstream connection failed")),
            other => other.clone(),
        };
        let _ = self.to_client.send_timeout(OwnedMessage::Close(close), Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(weights: &[i64]) -> Pool {
        let ups = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| UpState {
                url: WsUrl::parse(&format!("ws://127.0.0.1:{}", 9000 + i)).unwrap(),
                weight: w,
                current: 0,
                down: false,
                retry_at: Instant::now(),
            })
            .collect();
        Pool { ups: Mutex::new(ups), active: false, fail_timeout: Duration::from_secs(60) }
    }

    #[test]
    fn weighted_round_robin_is_exact_and_skips_down() {
        let p = pool(&[3, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[p.choose(&[]).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
        p.mark(0, false);
        assert!((0..10).all(|_| p.choose(&[]) == Some(1)));
        assert_eq!(p.choose(&[1]), Some(0), "all down or tried: try the rest anyway");
        assert_eq!(p.choose(&[0, 1]), None);
    }

    #[test]
    fn upstream_specs_and_paths() {
        assert_eq!(Upstream::parse("ws://a:1/x,weight=3").unwrap(), Upstream { url: "ws://a:1/x".into(), weight: 3 });
        assert_eq!(Upstream::parse("ws://a:1").unwrap().weight, 1);
        assert!(Upstream::parse("ws://a:1,weight=0").is_err());
        assert_eq!(Upstream::parse("wss://a/x").unwrap().url, "wss://a/x");
        assert!(Upstream::parse("http://a/").is_err());
        assert!(Upstream::parse("http://a").is_err());
        let u = WsUrl::parse("ws://a:1/app/").unwrap();
        let join = |u: &WsUrl, path: &str| join(u, path).to_string();
        assert_eq!(join(&u, "/chat?x=1"), "ws://a:1/app/chat?x=1");
        assert_eq!(join(&u, "/"), "ws://a:1/app");
        assert_eq!(join(&WsUrl::parse("ws://a:1").unwrap(), "/c"), "ws://a:1/c");
        // The scheme is the upstream's: wss:// stays wss://.
        let secure = WsUrl::parse("wss://a/app").unwrap();
        assert_eq!(join(&secure, "/chat?x=1"), "wss://a/app/chat?x=1");
        assert!(super::join(&secure, "/chat").secure);
        assert_eq!(join(&WsUrl::parse("wss://[::1]:9443").unwrap(), "/c"), "wss://[::1]:9443/c");
        // A Unix socket stays the socket; only the request path grows.
        let unix = WsUrl::parse("ws+unix:///run/app.sock:/app").unwrap();
        assert_eq!(join(&unix, "/chat?x=1"), "ws+unix:///run/app.sock:/app/chat?x=1");
        assert_eq!(super::join(&unix, "/").unix_socket.as_deref(), Some(Path::new("/run/app.sock")));
        assert_eq!(Upstream::parse("ws+unix:///run/app.sock:/app,weight=2").unwrap().weight, 2);
    }

    #[test]
    fn toml_file() {
        let f = FileConfig::parse(
            "listen = \"127.0.0.1:0\"\nx_forwarded_for = true\n[[upstream]]\nurl = \"ws://a:1\"\nweight = 2\n[[upstream]]\nurl = \"ws://b:2\"\n",
        )
        .unwrap();
        let ups = f.upstreams().unwrap();
        assert_eq!(ups.len(), 2);
        assert_eq!((ups[0].weight, ups[1].weight), (2, 1));
        assert!(FileConfig::parse("bogus = 1").is_err());
        assert_eq!(f.upstream_tls_ca(Path::new("/etc/syncws")), None);
        let f = FileConfig::parse("upstream_tls_ca = \"ca.pem\"\n[[upstream]]\nurl = \"wss://a:1\"\n").unwrap();
        assert_eq!(f.upstream_tls_ca(Path::new("/etc/syncws")), Some(PathBuf::from("/etc/syncws/ca.pem")));
        assert_eq!(f.upstreams().unwrap()[0].url, "wss://a:1");
        let f = FileConfig::parse("upstream_tls_ca = \"/srv/ca.pem\"\n").unwrap();
        assert_eq!(f.upstream_tls_ca(Path::new("/etc/syncws")), Some(PathBuf::from("/srv/ca.pem")));
    }
}

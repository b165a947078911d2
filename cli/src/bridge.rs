//! `syncws bridge`: WebSocket <-> TCP, both ways.
//!
//! - [`ws2tcp`]: a WebSocket server; each WebSocket connection gets a TCP
//!   connection to the target. Text and Binary payloads go to the target as
//!   raw bytes; the target's bytes come back as Binary messages. TCP EOF from
//!   the target sends Close 1000; a Close from the client shuts the TCP
//!   write side. A target that cannot be reached is answered `502 Bad
//!   Gateway` before the upgrade.
//! - [`tcp2ws`]: a TCP server; each TCP connection opens a WebSocket client
//!   to the URL (path and query kept). TCP EOF from the client sends Close
//!   1000; a Close from the server shuts the TCP write side. A WebSocket
//!   server that cannot be reached closes the TCP connection at once. The
//!   WebSocket connections may go through a proxy ([`Tcp2WsOptions::route`]).
//!
//! # Flow control
//!
//! Each direction has one thread that reads one side and writes the other
//! with blocking writes, so a slow reader stops the reading on the other
//! side, and the kernel's TCP windows push back to the sender. Memory per
//! connection is bounded by the chunk size times the queue capacity (TCP to
//! WebSocket in `ws2tcp`) or by one chunk (`tcp2ws`), plus one message of at
//! most [`Config::max_message_size`] from the WebSocket side. A side that
//! accepts nothing for [`Config::write_timeout`] ends the connection.
//!
//! # Closing
//!
//! WebSocket has no half-close, so `ws2tcp` makes one: a Close from the
//! WebSocket client shuts the target's write side (after every byte the
//! client sent), and the bridge keeps sending what the target still sends
//! until the target's EOF, then answers the Close (RFC 6455 lets the reply
//! wait; [`WsOption::defer_close_reply`]). A target that never ends gets
//! [`Config::close_timeout`], after which the bridge answers the Close and
//! drops it. `tcp2ws` maps the TCP client's EOF to Close 1000 and keeps
//! forwarding what the server sends until the server's Close, so a chain
//! `tcp2ws -> ws2tcp` keeps TCP half-close semantics end to end.
//!
//! # Coalescing
//!
//! TCP bytes are read into a buffer of `chunk` bytes, and each read becomes
//! one Binary message. While the WebSocket side is slow, bytes pile up in the
//! kernel's buffer and the next read takes up to `chunk` at once, so messages
//! grow under load and stay small (low latency) when idle. Keep `chunk` under
//! the peer's frame and message limits (the default, 64 KiB, is far below
//! those of browsers and common servers).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender as ChanSender};
use syncws::rustls::{ClientConfig, ServerConfig};
use syncws::{
    Client, CloseCode, CloseData, Config, Error, Listener, OwnedMessage, Request, Response, Result, Running,
    WsHandshake, WsOption, WsTrait,
};

use crate::common::{HttpFlags, Route, Routes, TcpServer};

/// Default largest Binary message made from TCP bytes.
pub const DEFAULT_CHUNK: usize = 64 << 10;
/// Default number of TCP chunks queued towards a WebSocket client (`ws2tcp`).
pub const DEFAULT_QUEUE: usize = 8;

/// Options of `syncws bridge ws2tcp`.
#[derive(Debug, Clone)]
pub struct Ws2TcpOptions {
    /// Where WebSocket clients connect.
    pub listen: String,
    /// The TCP service, `host:port`.
    pub to: String,
    /// Only upgrade requests for this path (query ignored) are accepted;
    /// others get 404.
    pub path: Option<String>,
    /// Only these `Host` header values are accepted (case-insensitive,
    /// port included if the client sent one); others get 403. Empty: any.
    pub hosts: Vec<String>,
    /// Largest Binary message made from TCP bytes.
    pub chunk: usize,
    /// TCP chunks queued per connection before reading the target stops.
    pub queue: usize,
    /// Deadline for the TCP connection to the target.
    pub connect_timeout: Duration,
    /// Limits and timeouts (`origin` gives the Origin check).
    pub config: Config,
    /// Plain HTTP routes on the WebSocket port (`/metrics`).
    pub http: HttpFlags,
    /// Serve over TLS (wss://) with this configuration; `None`: plain ws://.
    pub tls: Option<Arc<ServerConfig>>,
}

impl Ws2TcpOptions {
    /// Options with the defaults.
    pub fn new(listen: &str, to: &str) -> Self {
        Ws2TcpOptions {
            listen: listen.to_owned(),
            to: to.to_owned(),
            path: None,
            hosts: Vec::new(),
            chunk: DEFAULT_CHUNK,
            queue: DEFAULT_QUEUE,
            connect_timeout: Duration::from_secs(5),
            config: Config::default(),
            http: HttpFlags::default(),
            tls: None,
        }
    }
}

/// Starts `ws2tcp` on a thread of its own.
pub fn ws2tcp(opts: Ws2TcpOptions) -> Result<Running> {
    if opts.chunk == 0 || opts.queue == 0 {
        return Err(Error::Config("chunk and queue must be above 0".into()));
    }
    let mut listener = Listener::bind_with_config(opts.listen.as_str(), opts.config.clone())?;
    if let Some(tls) = &opts.tls {
        listener = listener.tls(Arc::clone(tls));
    }
    let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
    log::info!("bridge ws2tcp: {scheme}://{} -> tcp {}", listener.local_addr(), opts.to);
    let routes = Routes::new(&opts.http)?;
    listener.spawn(move |server| {
        routes.install(server);
        server.set_callback_ws(Box::new(Ws2Tcp::new(opts.clone())));
    })
}

/// One `ws2tcp` connection.
struct Ws2Tcp {
    opts: Ws2TcpOptions,
    /// The connection to the target, made in `on_request`.
    tcp: Option<TcpStream>,
}

impl Ws2Tcp {
    fn new(opts: Ws2TcpOptions) -> Self {
        Ws2Tcp { opts, tcp: None }
    }
}

impl WsTrait for Ws2Tcp {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        if let Some(path) = &self.opts.path {
            let asked = req.path.split('?').next().unwrap_or("");
            if asked != path {
                return Ok(Response::text(404, &format!("no bridge at {asked}; try {path}\n")));
            }
        }
        if !self.opts.hosts.is_empty() {
            let host = req.header("host").unwrap_or("");
            if !self.opts.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return Ok(Response::text(403, &format!("host {host} not allowed\n")));
            }
        }
        match connect(&self.opts.to, self.opts.connect_timeout) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                let _ = tcp.set_write_timeout(Some(self.opts.config.write_timeout));
                self.tcp = Some(tcp);
                syncws::WsHandshake::build_request(req)
            }
            Err(e) => {
                log::warn!("bridge ws2tcp: cannot reach {}: {e}", self.opts.to);
                Ok(Response::text(502, &format!("cannot reach {}: {e}\n", self.opts.to)))
            }
        }
    }

    fn on_open(&mut self, _shake: WsHandshake) -> Result<Option<WsOption>> {
        let tcp = self.tcp.as_ref().ok_or_else(|| Error::Application("no target connection".into()))?;
        let reader = tcp.try_clone()?;
        let (tx, rx) = bounded(self.opts.queue);
        let chunk = self.opts.chunk;
        thread::Builder::new()
            .name("ws2tcp-pump".into())
            .stack_size(128 << 10)
            .spawn(move || pump_tcp_to_channel(reader, chunk, &tx))?;
        let mut option = WsOption::default();
        option.set_receiver(rx);
        // The client's Close is answered once the target has sent its last
        // byte (its EOF makes the pump send Close 1000).
        option.defer_close_reply();
        Ok(Some(option))
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        let Some(tcp) = self.tcp.as_mut() else { return Ok(()) };
        let bytes: &[u8] = match &msg {
            OwnedMessage::Text(s) => s.as_bytes(),
            OwnedMessage::Binary(b) => b,
            OwnedMessage::Close(_) => {
                // Every byte of the client is written: EOF to the target,
                // whose remaining bytes still flow back until its own EOF.
                let _ = tcp.shutdown(Shutdown::Write);
                return Ok(());
            }
            _ => return Ok(()),
        };
        tcp.write_all(bytes).map_err(|e| Error::Application(format!("writing to the target failed: {e}")))
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        log::debug!("bridge ws2tcp: websocket closed ({reason:?})");
        if let Some(tcp) = &self.tcp {
            // The client's bytes are all written (on_message writes them at
            // once): tell the target with EOF, and give it the close timeout
            // to finish before the pump stops reading.
            let _ = tcp.shutdown(Shutdown::Write);
            let _ = tcp.set_read_timeout(Some(self.opts.config.close_timeout));
        }
    }

    fn on_error(&mut self, err: Error) {
        log::debug!("bridge ws2tcp: {err}");
    }
}

/// Reads the target and queues its bytes as Binary messages; its EOF as
/// Close 1000, a failure as Close 1011. Ends when the connection does.
fn pump_tcp_to_channel(mut tcp: TcpStream, chunk: usize, tx: &ChanSender<OwnedMessage>) {
    loop {
        let mut buf = vec![0u8; chunk];
        match tcp.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(OwnedMessage::Close(Some(CloseData::new(CloseCode::NORMAL, ""))));
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                if tx.send(OwnedMessage::Binary(buf)).is_err() {
                    // The WebSocket connection ended.
                    let _ = tcp.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("bridge ws2tcp: reading the target: {e}");
                let close = CloseData::new(CloseCode::INTERNAL, "target connection failed");
                let _ = tx.send(OwnedMessage::Close(Some(close)));
                let _ = tcp.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address")))
}

/// Options of `syncws bridge tcp2ws`.
#[derive(Debug, Clone)]
pub struct Tcp2WsOptions {
    /// Where TCP clients connect.
    pub listen: String,
    /// The WebSocket server, `ws://host:port/path`.
    pub to: String,
    /// Extra headers for each upgrade request.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Largest Binary message made from TCP bytes.
    pub chunk: usize,
    /// Limits and timeouts of the WebSocket client side.
    pub config: Config,
    /// How the WebSocket connections reach the server: directly (the
    /// default here), through a proxy, or as the environment says.
    pub route: Route,
    /// For a `wss://` server: the TLS client configuration (a private CA,
    /// a pinned fingerprint); `None`: the built-in and system roots.
    pub tls: Option<Arc<ClientConfig>>,
}

impl Tcp2WsOptions {
    /// Options with the defaults.
    pub fn new(listen: &str, to: &str) -> Self {
        Tcp2WsOptions {
            listen: listen.to_owned(),
            to: to.to_owned(),
            headers: Vec::new(),
            protocols: Vec::new(),
            chunk: DEFAULT_CHUNK,
            config: Config::default(),
            route: Route::Direct,
            tls: None,
        }
    }
}

/// A running `tcp2ws`.
#[derive(Debug)]
pub struct Tcp2Ws {
    server: TcpServer,
}

impl Tcp2Ws {
    /// The TCP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting (connections already bridged go on until they end).
    pub fn shutdown(self) {
        self.server.shutdown();
    }

    /// Blocks while it serves.
    pub fn wait(self) {
        self.server.wait();
    }
}

/// Starts `tcp2ws` on a thread of its own.
pub fn tcp2ws(opts: Tcp2WsOptions) -> Result<Tcp2Ws> {
    // Fail now, not on the first connection, for a URL that cannot work,
    // or a proxy variable that cannot.
    let _ = Client::builder().url(&opts.to)?;
    let via = opts.route.proxy_for(&opts.to).map_err(Error::Url)?;
    opts.config.validate()?;
    if opts.chunk == 0 {
        return Err(Error::Config("chunk must be above 0".into()));
    }
    let to = opts.to.clone();
    let listen = opts.listen.clone();
    let server = TcpServer::spawn(listen.as_str(), "tcp2ws", move |tcp| bridge_tcp(tcp, &opts))?;
    match via {
        Some(proxy) => log::info!("bridge tcp2ws: tcp {} -> {to} through the proxy {proxy}", server.local_addr()),
        None => log::info!("bridge tcp2ws: tcp {} -> {to}", server.local_addr()),
    }
    Ok(Tcp2Ws { server })
}

fn bridge_tcp(tcp: TcpStream, opts: &Tcp2WsOptions) {
    let peer = tcp.peer_addr().ok();
    let mut builder = match Client::builder().url(&opts.to).and_then(|b| opts.route.apply(b)) {
        Ok(b) => match &opts.tls {
            Some(tls) => b.tls_config(Arc::clone(tls)).config(opts.config.clone()),
            None => b.config(opts.config.clone()),
        },
        Err(e) => {
            log::error!("bridge tcp2ws: {e}");
            return;
        }
    };
    for (name, value) in &opts.headers {
        builder = builder.header(name, value);
    }
    for p in &opts.protocols {
        builder = builder.protocol(p);
    }
    let ws = match builder.connect().and_then(|c| c.into_websocket()) {
        Ok(ws) => ws,
        Err(e) => {
            // Nothing was sent to the TCP client yet: closing is the only
            // signal it can get.
            log::warn!("bridge tcp2ws: {peer:?}: cannot open {}: {e}", opts.to);
            let _ = tcp.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(opts.config.write_timeout));
    let (mut reader, writer) = ws.split();
    let pump = match tcp.try_clone() {
        Ok(mut tcp_read) => {
            let chunk = opts.chunk;
            thread::Builder::new().name("tcp2ws-pump".into()).stack_size(128 << 10).spawn(move || {
                let mut buf = vec![0u8; chunk];
                loop {
                    match tcp_read.read(&mut buf) {
                        Ok(0) => {
                            let _ = writer.close(CloseCode::NORMAL, "");
                            return;
                        }
                        Ok(n) => {
                            if let Err(e) = writer.send(OwnedMessage::Binary(buf[..n].to_vec())) {
                                log::debug!("bridge tcp2ws: websocket send: {e}");
                                let _ = tcp_read.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            log::debug!("bridge tcp2ws: reading the tcp client: {e}");
                            let _ = writer.close(CloseCode::AWAY, "tcp client went away");
                            return;
                        }
                    }
                }
            })
        }
        Err(e) => Err(e),
    };
    let pump = match pump {
        Ok(p) => p,
        Err(e) => {
            log::error!("bridge tcp2ws: cannot start the pump: {e}");
            let _ = tcp.shutdown(Shutdown::Both);
            return;
        }
    };
    let mut tcp_write = &tcp;
    let clean = loop {
        match reader.read() {
            Ok(OwnedMessage::Binary(b)) => {
                if let Err(e) = tcp_write.write_all(&b) {
                    log::debug!("bridge tcp2ws: writing to the tcp client: {e}");
                    break false;
                }
            }
            Ok(OwnedMessage::Text(s)) => {
                if let Err(e) = tcp_write.write_all(s.as_bytes()) {
                    log::debug!("bridge tcp2ws: writing to the tcp client: {e}");
                    break false;
                }
            }
            Ok(OwnedMessage::Close(reason)) => log::debug!("bridge tcp2ws: websocket closed ({reason:?})"),
            Ok(_) => {}
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => break true,
            Err(e) => {
                log::debug!("bridge tcp2ws: websocket failed: {e}");
                break false;
            }
        }
    };
    if clean {
        // Every byte of the server is written: EOF to the TCP client, and
        // the close timeout for it to finish before the pump stops.
        let _ = tcp.shutdown(Shutdown::Write);
        let _ = tcp.set_read_timeout(Some(opts.config.close_timeout));
    } else {
        let _ = tcp.shutdown(Shutdown::Both);
    }
    let _ = pump.join();
}

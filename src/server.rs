//! [`Server`]: one accepted connection, serving plain HTTP and WebSocket on the
//! same port; and [`accept`] for the plain blocking API.

use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log::{debug, info, warn};

use crate::callback::{HttpTrait, WsHandshake, WsTrait};
use crate::config::Config;
use crate::conn::runner;
use crate::conn::{read_exact_into, read_head, Connection, Opened, Sender, WebSocket};
use crate::error::{Error, Phase, Result};
use crate::handshake::extensions::{negotiate_server, Negotiated};
use crate::handshake::{server as hs, Request, Response};
use crate::protocol::Role;
use crate::stats::{Counters, Metrics, Refusal};
use crate::transport::{ReadHalf, Released, Transport, WriteHalf};

/// Where a listener learns about a connection it may have to close.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) sender: Mutex<Option<Sender>>,
}

/// One server-side connection: reads HTTP requests, answers plain ones with
/// the [`HttpTrait`] callback and turns upgrade requests into WebSocket
/// connections driven by the [`WsTrait`] callback.
///
/// ```no_run
/// use syncws::{OwnedMessage, Result, Sender, Server, WsHandshake, WsOption, WsTrait};
///
/// struct Echo(Option<Sender>);
/// impl WsTrait for Echo {
///     fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
///         self.0 = Some(shake.sender);
///         Ok(None)
///     }
///     fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
///         self.0.as_ref().unwrap().send(msg)
///     }
/// }
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:8081")?;
/// for stream in listener.incoming() {
///     let stream = stream?;
///     std::thread::spawn(move || {
///         let addr = stream.peer_addr().ok();
///         let mut server = Server::new(stream, addr);
///         server.set_callback_ws(Box::new(Echo(None)));
///         server.incoming()
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    io: Option<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)>,
    split_error: Option<std::io::Error>,
    addr: Option<SocketAddr>,
    /// Shared with the connection once it opens; a listener hands every
    /// connection the same one.
    config: Arc<Config>,
    ws: Option<Box<dyn WsTrait>>,
    http: Option<Box<dyn HttpTrait>>,
    slot: Option<Arc<Slot>>,
    /// Where refusals and the WebSocket connection count: a listener's,
    /// else the process-wide counters.
    metrics: Arc<Counters>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// A server for one accepted `stream`, from the peer at `addr`, with the
    /// default [`Config`].
    pub fn new<T: Transport>(stream: T, addr: Option<SocketAddr>) -> Server {
        let addr = addr.or_else(|| stream.peer_addr());
        let (io, split_error) = match stream.split() {
            Ok(io) => (Some(io), None),
            Err(e) => (None, Some(e)),
        };
        let metrics = Arc::clone(Counters::global());
        Server { io, split_error, addr, config: default_config(), ws: None, http: None, slot: None, metrics }
    }

    /// Uses `config` instead of the default.
    pub fn set_config(&mut self, config: Config) {
        self.config = Arc::new(config);
    }

    /// Uses `config`, shared with other connections (the listeners': one
    /// `Config` for all their connections, none copied per connection).
    pub(crate) fn set_shared_config(&mut self, config: Arc<Config>) {
        self.config = config;
    }

    /// Handles WebSocket upgrade requests with `callback`.
    pub fn set_callback_ws(&mut self, callback: Box<dyn WsTrait>) {
        self.ws = Some(callback);
    }

    /// Handles plain HTTP requests with `callback`.
    pub fn set_callback_http(&mut self, callback: Box<dyn HttpTrait>) {
        self.http = Some(callback);
    }

    /// The peer's address, if known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The counters this connection counts in: in the setup closure of
    /// [`Listener::serve`](crate::Listener::serve) and `serve_unix`, its
    /// listener's (the same as [`Listener::metrics`](crate::Listener::metrics));
    /// for a `Server` made with [`Server::new`], the process-wide ones
    /// ([`Metrics::global`](crate::Metrics::global)). For a `/metrics`
    /// page served on the connection's own port.
    pub fn metrics(&self) -> Metrics {
        Metrics(Arc::clone(&self.metrics))
    }

    /// A handle that cuts this connection from another thread.
    pub(crate) fn closer(&self) -> Option<crate::transport::Closer> {
        self.io.as_ref().map(|(_, w)| w.closer())
    }

    pub(crate) fn set_slot(&mut self, slot: Arc<Slot>) {
        self.slot = Some(slot);
    }

    /// Counts in `metrics` (a listener's) instead of the process-wide
    /// counters.
    pub(crate) fn set_metrics(&mut self, metrics: Arc<Counters>) {
        self.metrics = metrics;
    }

    /// Serves the connection until it ends: HTTP requests (kept alive as
    /// the client asks), then, after an upgrade, the WebSocket connection.
    ///
    /// Returns `Ok` when the connection ended normally, including a
    /// WebSocket connection that failed after its handshake (the callback's
    /// `on_error` was told). Returns an error for a refused or failed
    /// handshake or HTTP exchange; the peer has been answered with the
    /// matching status where that was still possible.
    pub fn incoming(&mut self) -> Result<()> {
        match self.serve_http()? {
            Some(upgrade) => self.run_ws(upgrade),
            None => Ok(()),
        }
    }

    /// Serves HTTP requests until the connection ends (`None`) or upgrades.
    ///
    /// Not inlined, nor is `run_ws`: each gets a stack frame of its own that
    /// the other reuses, instead of one frame as large as both. The pages of
    /// a connection thread's stack, once touched, stay resident.
    #[inline(never)]
    fn serve_http(&mut self) -> Result<Option<Box<Upgrade>>> {
        self.config.validate()?;
        let (mut reader, mut writer) = match self.io.take() {
            Some(io) => io,
            None => return Err(self.split_error.take().map_or(Error::AlreadyClosed, Error::Io)),
        };
        writer.set_write_timeout(Some(self.config.write_timeout))?;
        let mut buf = Vec::new();
        loop {
            let deadline = Instant::now() + self.config.handshake_timeout;
            let config = &self.config;
            let head = read_head(&mut *reader, &mut buf, deadline, &mut |b| Request::parse(b, config));
            let mut req = match head {
                Ok(Some(req)) => req,
                Ok(None) => return Ok(None),
                Err(e) => return Err(refuse_head(&mut *writer, e, !buf.is_empty(), &self.metrics)),
            };
            debug!("{} {} from {:?}", req.method, req.path, self.addr);
            let wants_ws =
                req.headers.contains_token("upgrade", "websocket") || req.header("sec-websocket-key").is_some();
            if wants_ws && self.ws.is_some() {
                let mut resp = match self.upgrade_response(&req) {
                    Ok(resp) => resp,
                    Err(e) => return Err(refuse(&mut *writer, e, true)),
                };
                let negotiated = negotiate_server(&req, &mut resp, &self.config);
                write_response(&mut *writer, &resp)?;
                if resp.status != 101 {
                    writer.shutdown(Shutdown::Both);
                    return Ok(None);
                }
                return Ok(Some(Box::new(Upgrade {
                    reader,
                    writer,
                    leftover: buf,
                    request: req,
                    response: resp,
                    negotiated,
                })));
            }
            let keep_alive = match self.http.as_mut() {
                Some(http) => {
                    if let Err(e) = read_body(&mut *reader, &mut buf, &mut req, &self.config, deadline) {
                        return Err(refuse(&mut *writer, e, true));
                    }
                    let mut resp = match catch_unwind(AssertUnwindSafe(|| http.operate(&mut req))) {
                        Ok(Ok(resp)) => resp,
                        Ok(Err(e)) => {
                            warn!("http handler failed: {e}");
                            hs::refusal(&e)
                        }
                        Err(_) => {
                            warn!("http handler panicked");
                            Response::text(500, "internal server error")
                        }
                    };
                    let keep = req.version == 1
                        && !req.headers.contains_token("connection", "close")
                        && !resp.headers.contains_token("connection", "close");
                    if !keep {
                        resp.headers.insert("Connection", "close");
                    }
                    write_response(&mut *writer, &resp)?;
                    keep
                }
                None => {
                    let resp = if wants_ws {
                        Response::text(404, "no WebSocket endpoint here")
                    } else {
                        Response::text(426, "this endpoint speaks WebSocket only: send an upgrade request")
                            .with_header("Upgrade", "websocket")
                            .with_header("Sec-WebSocket-Version", "13")
                    };
                    write_response(&mut *writer, &resp.with_header("Connection", "close"))?;
                    false
                }
            };
            if !keep_alive {
                writer.shutdown(Shutdown::Both);
                return Ok(None);
            }
        }
    }

    /// Validates the upgrade and asks the callback for the response.
    fn upgrade_response(&mut self, req: &Request) -> Result<Response> {
        check_upgrade(req, &self.config, &self.metrics)?;
        let ws = self.ws.as_mut().ok_or(Error::AlreadyClosed)?;
        let resp = match catch_unwind(AssertUnwindSafe(|| ws.on_request(req))) {
            Ok(r) => r?,
            Err(_) => return Err(Error::handshake(500, "the on_request callback panicked")),
        };
        if resp.status != 101 {
            return Ok(resp);
        }
        hs::finish_response(req, resp)
    }

    ///
    /// The connection's state is boxed, the handshake too until `on_open`
    /// takes it: the frames that stay on the stack for the whole
    /// connection are small.
    #[inline(never)]
    fn run_ws(&mut self, upgrade: Box<Upgrade>) -> Result<()> {
        let (mut conn, shake) = self.open_ws(upgrade)?;
        let Some(handler) = self.ws.as_mut() else { return Err(Error::AlreadyClosed) };
        runner::run(&mut conn, &mut **handler, shake);
        Ok(())
    }

    /// Sets up the connection after a 101. Not inlined: its temporaries
    /// stay out of the frames that last as long as the connection.
    ///
    /// Its frame sits under the connection's construction, the deepest
    /// call of a connection thread (whose stack pages, once touched, stay
    /// resident: `tests/idle_memory.rs`), so the handshake handed to
    /// `on_open` is built in a frame of its own, [`handshake`](Self::handshake),
    /// after it.
    #[inline(never)]
    fn open_ws(&mut self, mut upgrade: Box<Upgrade>) -> Result<(Box<Connection>, Box<WsHandshake>)> {
        let reader = std::mem::replace(&mut upgrade.reader, Box::new(Released));
        let writer = std::mem::replace(&mut upgrade.writer, Box::new(Released));
        let leftover = std::mem::take(&mut upgrade.leftover);
        let metrics = Arc::clone(&self.metrics);
        let role = Role::Server;
        let mut conn = Connection::open_counted(
            reader,
            writer,
            leftover,
            role,
            Arc::clone(&self.config),
            &upgrade.negotiated,
            metrics,
        )?;
        let sender = conn.sender();
        if let Some(slot) = &self.slot {
            *slot.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        }
        Ok((conn, self.handshake(sender, upgrade)))
    }

    /// What `on_open` is handed, from the upgrade's request and response.
    #[inline(never)]
    fn handshake(&self, sender: Sender, upgrade: Box<Upgrade>) -> Box<WsHandshake> {
        let Upgrade { request, response, .. } = *upgrade;
        let protocol = response.headers.get("sec-websocket-protocol").map(str::to_owned);
        info!("websocket open: {} from {:?}", request.path, self.addr);
        Box::new(WsHandshake { sender, request, response, addr: self.addr, protocol, reconnects: 0 })
    }
}

/// A connection whose upgrade was answered with 101.
struct Upgrade {
    reader: Box<dyn ReadHalf>,
    writer: Box<dyn WriteHalf>,
    /// Bytes that arrived after the request head (the first frames).
    leftover: Vec<u8>,
    request: Request,
    response: Response,
    /// The extensions the 101 agreed to.
    negotiated: Negotiated,
}

/// Reads a request body announced by `Content-Length`, within the limit.
fn read_body(
    reader: &mut dyn ReadHalf,
    buf: &mut Vec<u8>,
    req: &mut Request,
    config: &Config,
    deadline: Instant,
) -> Result<()> {
    let len = req.body_length(config)?;
    read_exact_into(reader, buf, len, deadline)?;
    req.body = buf.drain(..len).collect();
    Ok(())
}

/// Answers a failed request with its status and hands the error back. An I/O
/// error gets no answer, nor does a deadline that expired before the peer
/// sent anything (`started` is false then).
pub(crate) fn refuse(writer: &mut dyn WriteHalf, err: Error, started: bool) -> Error {
    if answered(&err, started) {
        debug!("refusing request: {err}");
        let _ = write_response(writer, &hs::refusal(&err));
    }
    writer.shutdown(Shutdown::Both);
    err
}

/// Whether [`refuse`] answers `err`.
fn answered(err: &Error, started: bool) -> bool {
    match err {
        Error::Io(_) | Error::Tls(_) => false,
        Error::Timeout { .. } => started,
        _ => true,
    }
}

/// [`refuse`] for a request head that could not be read, counted in
/// `metrics` as a bad handshake when it is answered (a peer that went away,
/// or sent nothing before the deadline, is not counted).
#[cold]
#[inline(never)]
fn refuse_head(writer: &mut dyn WriteHalf, err: Error, started: bool, metrics: &Counters) -> Error {
    if answered(&err, started) {
        metrics.refused(Refusal::Handshake);
    }
    refuse(writer, err, started)
}

/// The library's checks of an upgrade request, the `Origin` policy first;
/// a refusal is counted in `metrics` under its reason.
///
/// Not inlined: its frame is gone before the deepest call of a connection
/// thread's handshake (the check of the 101, in
/// [`upgrade_response`](Server::upgrade_response)), whose frame would
/// otherwise grow by it; the pages of a connection thread's stack, once
/// touched, stay resident (`tests/idle_memory.rs`).
#[inline(never)]
pub(crate) fn check_upgrade(req: &Request, config: &Config, metrics: &Counters) -> Result<()> {
    if let Err(e) = hs::check_origin(req, &config.origin) {
        metrics.refused(Refusal::Origin);
        return Err(e);
    }
    if let Err(e) = hs::validate_upgrade(req) {
        metrics.refused(Refusal::Handshake);
        return Err(e);
    }
    Ok(())
}

pub(crate) fn write_response(writer: &mut dyn WriteHalf, resp: &Response) -> Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    resp.write_to(&mut out);
    writer.write_all(&out).map_err(|e| Error::from_io(e, Phase::Write))
}

/// Accepts a WebSocket connection on `stream` with the default [`Config`],
/// for the plain blocking API: reads the upgrade request, answers it, and
/// returns the connection.
///
/// Refused requests are answered (400, 403, 426, ...) and returned as
/// [`Error::Handshake`]. A browser page from another origin is refused
/// with 403 by the default [`OriginPolicy::SameHost`](crate::OriginPolicy::SameHost):
/// see [`Config::origin`](crate::Config::origin).
///
/// To look at the request first, choose a subprotocol or refuse it, use
/// [`accept_with`]; the connection keeps the request either way
/// ([`WebSocket::request`]).
pub fn accept<T: Transport>(stream: T) -> Result<WebSocket> {
    accept_with_config(stream, Config::default())
}

/// [`accept`] with a [`Config`].
pub fn accept_with_config<T: Transport>(stream: T, config: Config) -> Result<WebSocket> {
    accept_with(stream, config, WsHandshake::build_request)
}

/// [`accept_with_config`], with `on_request` choosing the answer to the
/// upgrade request: what tungstenite's `accept_hdr` and Python websockets'
/// `process_request` do, and [`WsTrait::on_request`] for [`Server`].
///
/// `on_request` sees the request (path and query, headers such as
/// `Cookie` or `Authorization`, the offered [`Request::protocols`]) after
/// it passed the checks of [`accept`] (a valid upgrade, an allowed
/// `Origin` per [`Config::origin`](crate::Config::origin)), and returns:
///
/// - the `101 Switching Protocols` to accept it: build it with
///   [`WsHandshake::build_request`] (the default answer), and add a
///   `Sec-WebSocket-Protocol` header naming one of the offered protocols to
///   choose it, or headers such as `Set-Cookie`. It is checked before it is
///   sent ([`finish_response`](crate::handshake::server::finish_response)):
///   an invalid one (a protocol the client did not offer, a wrong
///   `Sec-WebSocket-Accept`, an extension) is never sent; the client gets
///   a 500 and this function [`Error::Handshake`] with status 500;
/// - any other response to refuse it (401, 403, 404, a redirect...): it is
///   written as given (with `Connection: close` added if missing), the
///   connection is closed, and this function returns [`Error::Handshake`]
///   with its status;
/// - or an error, answered with the status of [`refusal`](crate::handshake::server::refusal)
///   (an [`Error::Handshake`]'s own, 500 for most others) and returned
///   as it was.
///
/// The callback runs on the calling thread; a panic in it is not caught.
///
/// The connection, and the refusals of the config's checks, count in the
/// process-wide counters, [`Metrics::global`](crate::Metrics::global)
/// (as with [`accept`] and [`accept_with_config`]).
///
/// ```no_run
/// use syncws::{Config, Response, WsHandshake};
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
/// let (stream, _) = listener.accept()?;
/// let ws = syncws::accept_with(stream, Config::default(), |req| {
///     if req.path != "/chat" {
///         return Ok(Response::text(404, "no such endpoint\n"));
///     }
///     if req.header("authorization") != Some("Bearer let-me-in") {
///         return Ok(Response::text(401, "a token is needed\n").with_header("WWW-Authenticate", "Bearer"));
///     }
///     let mut resp = WsHandshake::build_request(req)?; // the default 101
///     if req.protocols().contains(&"chat.v2") {
///         resp.headers.insert("Sec-WebSocket-Protocol", "chat.v2");
///     }
///     Ok(resp)
/// })?;
/// println!("{} on {} speaks {:?}", ws.request().path, ws.peer_addr().unwrap(), ws.protocol());
/// # Ok::<(), syncws::Error>(())
/// ```
#[doc(alias = "accept_hdr")]
#[doc(alias = "process_request")]
pub fn accept_with<T, F>(stream: T, config: Config, on_request: F) -> Result<WebSocket>
where
    T: Transport,
    F: FnOnce(&Request) -> Result<Response>,
{
    let metrics = Counters::global();
    config.validate()?;
    let peer_addr = stream.peer_addr();
    let (mut reader, mut writer) = stream.split()?;
    writer.set_write_timeout(Some(config.write_timeout))?;
    let mut buf = Vec::new();
    let deadline = Instant::now() + config.handshake_timeout;
    let head = read_head(&mut *reader, &mut buf, deadline, &mut |b| Request::parse(b, &config));
    let request = match head {
        Ok(Some(req)) => req,
        Ok(None) => return Err(Error::ConnectionClosed),
        Err(e) => return Err(refuse_head(&mut *writer, e, !buf.is_empty(), metrics)),
    };
    let mut resp = match plain_upgrade_response(&request, &config, metrics, on_request) {
        Ok(resp) => resp,
        Err(e) => return Err(refuse(&mut *writer, e, true)),
    };
    if resp.status != 101 {
        return Err(refused_by_application(&mut *writer, resp));
    }
    let negotiated = negotiate_server(&request, &mut resp, &config);
    write_response(&mut *writer, &resp)?;
    let protocol = resp.header("sec-websocket-protocol").map(str::to_owned);
    let conn = Connection::open(reader, writer, buf, Role::Server, &config, &negotiated)?;
    Ok(WebSocket::new(conn, Opened { request, protocol, peer_addr }))
}

/// The answer of the plain API to an upgrade request: the checks of the
/// config (their refusals counted in `metrics`), then the application's,
/// then the check of its 101.
fn plain_upgrade_response<F>(req: &Request, config: &Config, metrics: &Counters, on_request: F) -> Result<Response>
where
    F: FnOnce(&Request) -> Result<Response>,
{
    check_upgrade(req, config, metrics)?;
    hs::finish_response(req, on_request(req)?)
}

/// Writes the application's refusal of an upgrade, closes the connection,
/// and says so as an error with its status.
fn refused_by_application(writer: &mut dyn WriteHalf, mut resp: Response) -> Error {
    if resp.headers.get("connection").is_none() {
        resp.headers.insert("Connection", "close");
    }
    debug!("upgrade refused by the application with {}", resp.status);
    let written = write_response(writer, &resp);
    writer.shutdown(Shutdown::Both);
    if let Err(e) = written {
        return e;
    }
    let text = String::from_utf8_lossy(&resp.body);
    let first = text.lines().next().unwrap_or("").trim();
    let mut cut = first.len().min(200);
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = match &first[..cut] {
        "" => "the application refused the upgrade".to_owned(),
        said => format!("the application refused the upgrade: {said}"),
    };
    Error::handshake(resp.status, reason)
}

/// The default [`Config`], made once and shared by every `Server::new`
/// (most are given another at once, by a listener).
fn default_config() -> Arc<Config> {
    static DEFAULT: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();
    Arc::clone(DEFAULT.get_or_init(|| Arc::new(Config::default())))
}

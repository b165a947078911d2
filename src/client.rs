//! [`Client`]: connect to a `ws://`, `wss://` or `ws+unix://` URL, directly
//! or through a proxy, then run callbacks or use the plain blocking API.
//!
//! Connecting is bounded by one deadline
//! ([`ClientBuilder::connect_timeout`]) from the name lookup to the end of
//! the upgrade: DNS, TCP to every address the name has, the proxy's
//! tunnel, TLS and the HTTP upgrade all share it, so the whole of
//! [`ClientBuilder::connect`] returns in about that time whatever the
//! network does (`connect` module).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::callback::{WsHandshake, WsTrait};
use crate::config::Config;
use crate::conn::runner;
use crate::conn::{read_exact_into, read_head, Connection, Opened, WebSocket};
use crate::error::{Error, Phase, Result};
use crate::handshake::client as hs;
use crate::handshake::{Headers, Request, Response, WsUrl};
use crate::message::{CloseCode, OwnedMessage};
use crate::protocol::Role;
use crate::proxy::{Proxy, ProxyEnv};
use crate::transport::Transport;

pub(crate) mod connect;
mod reconnect;

pub use reconnect::{EndReason, Ended, LinkState, Offline, ReconnectPolicy, ReconnectSender, Reconnecting, Retry};

/// Why a `wss://` URL is refused without the `tls` feature.
const NO_TLS: &str =
    "wss:// needs TLS, which this build of syncws does not have (feature `tls`); refusing to connect in plaintext";

/// Why a `ws+unix://` URL is refused off Unix.
const NO_UNIX: &str = "ws+unix:// URLs need Unix domain sockets, which this platform does not have";

/// Builds a [`Client`]: URL, timeouts, headers, subprotocols, [`Config`].
///
/// ```no_run
/// use std::time::Duration;
/// let client = syncws::Client::builder()
///     .url("ws://127.0.0.1:8081/chat")?
///     .connect_timeout(Duration::from_secs(3))
///     .header("Authorization", "Bearer token")
///     .protocol("chat.v1")
///     .connect()?;
/// # Ok::<(), syncws::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    url: Option<WsUrl>,
    connect_timeout: Option<Duration>,
    headers: Headers,
    protocols: Vec<String>,
    config: Config,
    proxy: ProxyChoice,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Which proxy, if any, a [`ClientBuilder`] goes through.
#[derive(Debug, Clone, Default)]
enum ProxyChoice {
    /// Straight to the server.
    #[default]
    Direct,
    /// This proxy, for every URL but `ws+unix://`.
    Fixed(Proxy),
    /// As the environment variables say, URL by URL.
    Env(ProxyEnv),
}

impl ClientBuilder {
    /// The server to connect to: `ws://host[:port][/path][?query]`,
    /// `wss://...`, or `ws+unix:///path/to.sock:/request/path` for a Unix
    /// socket (see [`WsUrl::parse`]).
    ///
    /// `wss://` needs the `tls` feature; without it the URL is refused with
    /// [`Error::Url`]: sending in plaintext what the URL says must be
    /// encrypted would be worse than failing. With it, the connection is
    /// TLS (see `ClientBuilder::tls_config` for the default
    /// trust roots), and fails rather than falls back to plaintext.
    ///
    /// `ws+unix://` works on Unix only (elsewhere [`Error::Url`]); the
    /// request's `Host` is `localhost`.
    ///
    /// ```no_run
    /// let mut client = syncws::Client::builder().url("ws+unix:///run/app.sock:/chat")?.connect()?;
    /// client.send("hello".into())?;
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn url(mut self, url: &str) -> Result<Self> {
        let url = WsUrl::parse(url)?;
        if url.secure && cfg!(not(feature = "tls")) {
            return Err(Error::Url(NO_TLS.into()));
        }
        if url.unix_socket.is_some() && cfg!(not(unix)) {
            return Err(Error::Url(NO_UNIX.into()));
        }
        self.url = Some(url);
        Ok(self)
    }

    /// The connect deadline: how long [`connect`](ClientBuilder::connect)
    /// may take, from looking up the server's name to the end of the
    /// upgrade. Default: [`Config::handshake_timeout`].
    ///
    /// The one deadline covers each step, so that none can take it all
    /// again after another: the name lookup (on a thread of its own, since
    /// the system's resolver takes no timeout), TCP to each of the name's
    /// addresses (IPv6 and IPv4 interleaved, each given an equal share of
    /// what remains, so one address that swallows packets does not starve
    /// the next), the proxy's tunnel, TLS and the HTTP upgrade. When it
    /// expires the error is [`Error::Timeout`] with the phase it
    /// interrupted: [`Phase::Connect`] (the lookup, TCP), [`Phase::Proxy`]
    /// (the proxy's address, its tunnel) or [`Phase::Handshake`] (TLS, the
    /// upgrade). A Unix socket (`ws+unix://`) connects without
    /// waiting on the network; its upgrade has the deadline too.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use syncws::{Error, Phase};
    /// let connected = syncws::Client::builder()
    ///     .url("ws://slow.example:8081/")?
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .connect();
    /// if let Err(Error::Timeout { phase }) = &connected {
    ///     eprintln!("gave up after 2 s, in the {phase} phase");
    /// }
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Connects through this proxy: `http://` (HTTP `CONNECT`),
    /// `socks5://` or `socks5h://` (the proxy resolves the server's name),
    /// with `user:password@` for proxies that want credentials (HTTP Basic,
    /// SOCKS5 username/password). See [`Proxy`] for the URL's form and
    /// [`proxy`](crate::proxy) for the protocols and errors.
    ///
    /// The proxy carries every URL but `ws+unix://`, whatever
    /// `no_proxy` says (unlike curl, which applies `no_proxy` to `-x` too;
    /// use [`proxy_from_env`](ClientBuilder::proxy_from_env) for the
    /// environment's rules). For `wss://`, TLS runs end to end with the
    /// server through the tunnel, never with the proxy. Replaces any
    /// earlier proxy choice.
    ///
    /// ```no_run
    /// let client = syncws::Client::builder()
    ///     .url("wss://echo.example.com/")?
    ///     .proxy("http://alice:s3cret@proxy.corp:3128")?
    ///     .connect()?;
    /// # Ok::<(), syncws::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Url`] if `url` is not a usable proxy URL
    /// ([`Proxy::parse`]).
    pub fn proxy(mut self, url: &str) -> Result<Self> {
        self.proxy = ProxyChoice::Fixed(Proxy::parse(url)?);
        Ok(self)
    }

    /// Chooses the proxy from the environment, as curl does:
    /// `http_proxy` for `ws://`, `https_proxy` or `HTTPS_PROXY` for
    /// `wss://`, `all_proxy` or `ALL_PROXY` for both, except for the hosts
    /// of `no_proxy` or `NO_PROXY` (see [`ProxyEnv`]). The variables are
    /// read now, once; a URL they give no proxy for goes direct. The
    /// library reads them only when asked, by this method. Replaces any
    /// earlier proxy choice.
    ///
    /// ```no_run
    /// // HTTPS_PROXY=http://proxy.corp:3128 NO_PROXY=localhost,.corp
    /// let client = syncws::Client::builder().url("wss://echo.example.com/")?.proxy_from_env().connect()?;
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn proxy_from_env(self) -> Self {
        self.proxy_env(ProxyEnv::from_env())
    }

    /// Chooses the proxy by these environment settings (see
    /// [`proxy_from_env`](ClientBuilder::proxy_from_env)), read earlier or
    /// made up with [`ProxyEnv::from_lookup`]. Replaces any earlier proxy
    /// choice.
    pub fn proxy_env(mut self, env: ProxyEnv) -> Self {
        self.proxy = ProxyChoice::Env(env);
        self
    }

    /// Adds a header to the upgrade request (e.g. `Origin`,
    /// `Authorization`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Offers a subprotocol; call once per protocol, in order of preference.
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.to_owned());
        self
    }

    /// Uses `config` instead of the default.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The TLS configuration for `wss://` URLs (feature `tls`): trust
    /// roots, client certificate, protocol versions. The default is
    /// [`tls::default_client_config`](crate::tls::default_client_config):
    /// the Mozilla roots of the `webpki-roots` crate (and, with the
    /// `native-roots` feature, the operating system's), no client
    /// certificate. The server's certificate is always checked against the
    /// URL's host, which is also sent as SNI.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use syncws::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer, RootCertStore};
    ///
    /// let mut roots = RootCertStore::empty();
    /// for cert in CertificateDer::pem_file_iter("my-ca.pem").unwrap() {
    ///     roots.add(cert.unwrap()).unwrap();
    /// }
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()
    ///     .unwrap()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let client = syncws::Client::builder()
    ///     .url("wss://internal.example:8443/feed")?
    ///     .tls_config(Arc::new(tls))
    ///     .connect()?;
    /// # Ok::<(), syncws::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects over TCP, through the proxy if one was chosen, then TLS
    /// for `wss://`, and performs the upgrade, all within the connect
    /// deadline ([`connect_timeout`](ClientBuilder::connect_timeout)).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the deadline expires, with the phase it
    /// interrupted; [`Error::Proxy`] when the proxy fails; [`Error::Io`]
    /// when the server's name does not resolve or nothing listens there;
    /// [`Error::Tls`] for an untrusted certificate; [`Error::Handshake`]
    /// when the server refuses the upgrade; [`Error::Url`] without a URL,
    /// or when the proxy the environment gives is not a usable URL.
    pub fn connect(self) -> Result<Client> {
        self.config.validate()?;
        let url = self.url.as_ref().ok_or_else(|| Error::Url("no url given".into()))?;
        let deadline = Instant::now() + self.connect_timeout.unwrap_or(self.config.handshake_timeout);
        if let Some(path) = url.unix_socket.clone() {
            return self.connect_unix(&path, deadline);
        }
        let stream = match self.proxy_for(url)? {
            Some(proxy) => {
                debug!("connecting to {url} through the proxy {proxy}");
                proxy.tunnel(&url.host, url.port, deadline, &self.config)?
            }
            None => {
                let addrs = connect::resolve(&url.host, url.port, deadline, Phase::Connect)?;
                connect::connect_any(&addrs, deadline, Phase::Connect)?
            }
        };
        if url.secure {
            return self.connect_tls(stream, deadline);
        }
        self.handshake(stream, deadline)
    }

    /// A client that reconnects after a drop, as `policy` says, instead of
    /// connecting once: see [`Reconnecting`]. Nothing is connected yet;
    /// [`Reconnecting::run`] connects and runs the callbacks, and
    /// [`Reconnecting::sender`] gives a sender that outlives each
    /// connection.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use syncws::{Client, Offline, ReconnectPolicy};
    /// let policy = ReconnectPolicy::default()
    ///     .initial_delay(Duration::from_millis(200))
    ///     .max_delay(Duration::from_secs(10))
    ///     .max_attempts(Some(20))
    ///     .offline(Offline::Queue { max_messages: 100, max_bytes: 1 << 20 });
    /// let reconnecting = Client::builder().url("ws://127.0.0.1:8081/feed")?.reconnect(policy)?;
    /// # Ok::<(), syncws::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Url`] without a URL; [`Error::Config`] for a
    /// [`Config`] or a policy whose values do not fit
    /// ([`ReconnectPolicy::validate`]).
    pub fn reconnect(self, policy: ReconnectPolicy) -> Result<Reconnecting> {
        self.config.validate()?;
        policy.validate()?;
        if self.url.is_none() {
            return Err(Error::Url("no url given".into()));
        }
        Ok(Reconnecting::new(self, policy))
    }

    /// The proxy to use for `url`, if any.
    fn proxy_for(&self, url: &WsUrl) -> Result<Option<Proxy>> {
        match &self.proxy {
            _ if url.unix_socket.is_some() => Ok(None),
            ProxyChoice::Direct => Ok(None),
            ProxyChoice::Fixed(proxy) => Ok(Some(proxy.clone())),
            ProxyChoice::Env(env) => env.proxy_for(url),
        }
    }

    #[cfg(feature = "tls")]
    fn connect_tls(self, stream: TcpStream, deadline: Instant) -> Result<Client> {
        let url = self.url.as_ref().ok_or_else(|| Error::Url("no url given".into()))?;
        let config = match &self.tls {
            Some(config) => std::sync::Arc::clone(config),
            None => crate::tls::default_client_config()?,
        };
        let stream = crate::tls::TlsStream::client(stream, config, &url.host)?;
        self.handshake(stream, deadline)
    }

    #[cfg(not(feature = "tls"))]
    fn connect_tls(self, _stream: TcpStream, _deadline: Instant) -> Result<Client> {
        Err(Error::Url(NO_TLS.into()))
    }

    /// Connects to the Unix socket of a `ws+unix://` URL.
    #[cfg(unix)]
    fn connect_unix(self, path: &std::path::Path, deadline: Instant) -> Result<Client> {
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| Error::from_io(e, Phase::Connect))?;
        self.handshake(stream, deadline)
    }

    #[cfg(not(unix))]
    fn connect_unix(self, _path: &std::path::Path, _deadline: Instant) -> Result<Client> {
        Err(Error::Url(NO_UNIX.into()))
    }

    /// Performs the handshake over an already connected stream (for
    /// streams syncws does not open itself). The stream is used as given:
    /// for a `wss://` URL, pass a TLS stream (such as
    /// `syncws::tls::TlsStream`).
    ///
    /// A `wss://` URL over a stream that does not encrypt (a plain
    /// [`TcpStream`], or any transport whose
    /// [`is_encrypted`](Transport::is_encrypted) says no) is refused with
    /// [`Error::Url`].
    ///
    /// The proxy choice plays no part: the stream goes where it goes. The
    /// upgrade has [`Config::handshake_timeout`] from now.
    pub fn connect_on<T: Transport>(self, stream: T) -> Result<Client> {
        let deadline = Instant::now() + self.config.handshake_timeout;
        self.handshake(stream, deadline)
    }

    /// The upgrade over a connected stream, before `deadline`.
    fn handshake<T: Transport>(self, stream: T, deadline: Instant) -> Result<Client> {
        self.config.validate()?;
        let url = self.url.ok_or_else(|| Error::Url("no url given".into()))?;
        if url.secure && !stream.is_encrypted() {
            return Err(Error::Url(
                "a wss:// URL over an unencrypted stream would be plaintext; wrap the stream in TLS".into(),
            ));
        }
        let addr = stream.peer_addr();
        let (mut reader, mut writer) = stream.split()?;
        let left = connect::remaining(deadline, Phase::Handshake)?;
        writer.set_write_timeout(Some(self.config.write_timeout.min(left)))?;

        let key = hs::generate_key();
        let mut request = hs::build_request(&url, &key, &self.protocols, &self.headers);
        hs::offer_extensions(&mut request, &self.config);
        let mut out = Vec::new();
        request.write_to(&mut out);
        writer.write_all(&out).map_err(|e| Error::from_io(e, Phase::Handshake))?;

        let mut buf = Vec::new();
        let config = &self.config;
        let head = read_head(&mut *reader, &mut buf, deadline, &mut |b| Response::parse(b, config))?;
        let mut response = head.ok_or(Error::ConnectionClosed)?;
        if response.status != 101 {
            // Carry the body of a refusal, within limits, in the error.
            if let Ok(Some(len)) = response.content_length() {
                if len <= config.max_http_body && read_exact_into(&mut *reader, &mut buf, len, deadline).is_ok() {
                    response.body = buf[..len].to_vec();
                }
            }
        }
        let (protocol, negotiated) = hs::check_response_with(&response, &key, &self.protocols, &self.config)?;
        info!("connected to {}{} ({:?})", url.host_header(), url.path, addr);
        let conn = Connection::open(reader, writer, buf, Role::Client, &self.config, &negotiated)?;
        let opened = Opened { request: request.clone(), protocol: protocol.clone(), peer_addr: addr };
        let ws = WebSocket::new(conn, opened);
        Ok(Client { ws: Some(ws), callback: None, request, response, protocol, addr })
    }
}

/// A WebSocket client connection.
///
/// Either run callbacks on it, as the server side does
/// ([`set_callback_ws`](Client::set_callback_ws), then
/// [`wait_ws_operate`](Client::wait_ws_operate)), or use it directly with
/// [`read`](Client::read) and [`send`](Client::send), or take the
/// [`WebSocket`] out with [`into_websocket`](Client::into_websocket).
///
/// ```no_run
/// use syncws::{Client, OwnedMessage};
/// let mut client = Client::builder().url("ws://127.0.0.1:8081")?.connect()?;
/// client.send(OwnedMessage::Text("hello".into()))?;
/// println!("{:?}", client.read()?);
/// # Ok::<(), syncws::Error>(())
/// ```
pub struct Client {
    ws: Option<WebSocket>,
    callback: Option<Box<dyn WsTrait>>,
    request: Request,
    response: Response,
    protocol: Option<String>,
    addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).field("protocol", &self.protocol).finish()
    }
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `url` with the defaults: `ws://`, `wss://` (feature
    /// `tls`) or `ws+unix:///path/to.sock:/request/path` (see
    /// [`ClientBuilder::url`]).
    pub fn connect(url: &str) -> Result<Client> {
        Client::builder().url(url)?.connect()
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The server's handshake response.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The upgrade request this client sent.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The server's address, if the transport has one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Runs `callback` when [`wait_ws_operate`](Client::wait_ws_operate)
    /// is called.
    pub fn set_callback_ws(&mut self, callback: Box<dyn WsTrait>) {
        self.callback = Some(callback);
    }

    /// Runs the callback set with [`set_callback_ws`](Client::set_callback_ws)
    /// on this thread until the connection ends.
    pub fn wait_ws_operate(&mut self) -> Result<()> {
        let mut handler = self
            .callback
            .take()
            .ok_or_else(|| Error::Application("no callback set: call set_callback_ws first".into()))?;
        let (mut conn, shake) = match self.callback_parts() {
            Ok(parts) => parts,
            Err(e) => {
                self.callback = Some(handler);
                return Err(e);
            }
        };
        runner::run(&mut conn, &mut *handler, Box::new(shake));
        self.callback = Some(handler);
        Ok(())
    }

    /// The connection, for a callback runner, and what `on_open` is
    /// handed; [`Error::AlreadyClosed`] if it was taken or has ended.
    pub(crate) fn callback_parts(&mut self) -> Result<(Box<Connection>, WsHandshake)> {
        let ws = self.ws.take().ok_or(Error::AlreadyClosed)?;
        let mut conn = ws.into_connection();
        if conn.is_finished() {
            return Err(Error::AlreadyClosed);
        }
        let shake = WsHandshake {
            sender: conn.sender(),
            request: self.request.clone(),
            response: self.response.clone(),
            addr: self.addr,
            protocol: self.protocol.clone(),
            reconnects: 0,
        };
        Ok((conn, shake))
    }

    fn ws(&mut self) -> Result<&mut WebSocket> {
        self.ws.as_mut().ok_or(Error::AlreadyClosed)
    }

    /// Reads the next message; see [`WebSocket::read`].
    pub fn read(&mut self) -> Result<OwnedMessage> {
        self.ws()?.read()
    }

    /// Reads the next message if one completes within `timeout`, `Ok(None)`
    /// if none did; see [`WebSocket::read_timeout`].
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Option<OwnedMessage>> {
        self.ws()?.read_timeout(timeout)
    }

    /// Sends a message; see [`WebSocket::send`].
    pub fn send(&mut self, msg: OwnedMessage) -> Result<()> {
        self.ws()?.send(msg)
    }

    /// Sends a message uncompressed; see [`WebSocket::send_uncompressed`].
    pub fn send_uncompressed(&mut self, msg: OwnedMessage) -> Result<()> {
        self.ws()?.send_uncompressed(msg)
    }

    /// Starts the close handshake; see [`WebSocket::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.ws()?.close(code, reason)
    }

    /// The connection as a plain [`WebSocket`], which keeps the request this
    /// client sent, the subprotocol the server chose and the server's
    /// address ([`WebSocket::request`], [`WebSocket::protocol`],
    /// [`WebSocket::peer_addr`]).
    pub fn into_websocket(mut self) -> Result<WebSocket> {
        self.ws.take().ok_or(Error::AlreadyClosed)
    }
}

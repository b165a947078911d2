//! Upgrading a request that another HTTP server parsed (Node's
//! `handleUpgrade`), so syncws can sit behind an existing blocking HTTP
//! server: its router sees `GET /ws` with `Upgrade: websocket` and hands
//! the request, the bytes it read past the request head, and the stream
//! to syncws.
//!
//! Two ways, depending on who writes the `101 Switching Protocols`:
//!
//! - syncws writes it: [`upgrade()`] checks the request (Origin policy of the
//!   [`Config`], RFC 6455 §4.2.1), answers 101 or the refusal on the
//!   stream, and returns the [`WebSocket`];
//! - the HTTP server insists on writing it (tiny_http's
//!   `Request::upgrade(protocol, response)` does):
//!   [`upgrade_response`] builds the 101 for the request (or the error whose
//!   [`refusal`](crate::handshake::server::refusal) is the answer), the
//!   server writes it, and [`WebSocket::from_upgraded`] turns the stream it
//!   hands back into a `WebSocket`.
//!
//! # Which stream
//!
//! Anything that implements [`Transport`]. TCP, TLS and Unix sockets split
//! into halves that two threads can use at once, so such a connection gets
//! everything: [`WebSocket::split`] with sends from any thread, keepalive
//! pings, idle and close timeouts. A stream that is only
//! `Read + Write + Send` (tiny_http's upgraded stream is a
//! `Box<dyn ReadWrite + Send>`) goes in through [`Unsplit`], for the plain
//! single-threaded API: read and send on one thread, no deadlines (see
//! [`Unsplit`] for why, and for what happens otherwise).
//!
//! `examples/tiny_http_upgrade.rs` serves a page and upgrades `/ws` behind
//! tiny_http this way.

use crate::config::Config;
use crate::conn::{Connection, Opened, WebSocket};
use crate::error::Result;
use crate::handshake::extensions::{negotiate_server, Negotiated};
use crate::handshake::{server as hs, Request, Response};
use crate::protocol::Role;
use crate::server::{check_upgrade, refuse, write_response};
use crate::stats::Counters;
use crate::transport::Transport;
#[cfg(doc)]
use crate::transport::Unsplit;

/// The `101 Switching Protocols` answer to an upgrade request parsed
/// elsewhere, for an HTTP server that writes the response itself.
///
/// Checks the request's `Origin` against [`Config::origin`] and validates
/// it as [`accept`](crate::accept) does; the 101 carries `Upgrade`,
/// `Connection` and `Sec-WebSocket-Accept`, and no subprotocol: to choose
/// one of [`Request::protocols`], add a `Sec-WebSocket-Protocol` header.
/// Then hand the stream to [`WebSocket::from_upgraded`].
///
/// It negotiates no extension, whatever `Config::deflate` says (feature
/// `deflate`): [`WebSocket::from_upgraded`] could not know what was
/// agreed. [`upgrade()`], which writes the 101 itself, negotiates
/// permessage-deflate.
///
/// # Errors
///
/// [`Error::Handshake`](crate::Error::Handshake) with the status to answer
/// (403 for the Origin, 400, 405 or 426 for the request):
/// [`refusal`](crate::handshake::server::refusal) builds that answer.
///
/// ```
/// use syncws::{Config, Request};
/// let mut req = Request::new("GET", "/ws");
/// for (name, value) in [
///     ("Host", "example.com"),
///     ("Upgrade", "websocket"),
///     ("Connection", "Upgrade"),
///     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
///     ("Sec-WebSocket-Version", "13"),
///     ("Origin", "https://example.com"),
/// ] {
///     req.headers.append(name, value);
/// }
/// let resp = syncws::upgrade_response(&req, &Config::default())?;
/// assert_eq!(resp.status, 101);
/// assert_eq!(resp.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
///
/// req.headers.insert("Origin", "https://elsewhere.example");
/// let err = syncws::upgrade_response(&req, &Config::default()).unwrap_err();
/// assert_eq!(syncws::handshake::server::refusal(&err).status, 403);
/// # Ok::<(), syncws::Error>(())
/// ```
pub fn upgrade_response(request: &Request, config: &Config) -> Result<Response> {
    hs::check_origin(request, &config.origin)?;
    hs::build_response(request)
}

/// Upgrades `stream`, on which another HTTP server read and parsed
/// `request`: checks it as [`upgrade_response`] does, writes the 101 (or
/// the refusal) on `stream`, and returns the connection for the plain
/// blocking API.
///
/// `leftover` holds the bytes that server read past the request head (a
/// client may send its first frames right behind it); empty if it read
/// nothing more. The write of the answer is bounded by
/// [`Config::write_timeout`] where the stream has timeouts.
///
/// For a stream that is only `Read + Write + Send`, wrap it in
/// [`Unsplit`]: the connection then serves the single-threaded API (read
/// and send on one thread, no deadlines).
///
/// # Errors
///
/// A refused request is answered (400, 403, 405, 426, with the reason) and
/// returned as [`Error::Handshake`](crate::Error::Handshake); the stream is
/// shut down. I/O errors writing the answer as
/// [`Error::Io`](crate::Error::Io) or [`Error::Timeout`](crate::Error::Timeout).
///
/// ```
/// use std::io::Read;
/// use std::net::{TcpListener, TcpStream};
/// use syncws::{Client, Config, OwnedMessage, Request};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let url = format!("ws://{}/chat", listener.local_addr()?);
/// let client = std::thread::spawn(move || -> syncws::Result<OwnedMessage> {
///     let mut client = Client::connect(&url)?;
///     client.send(OwnedMessage::Text("hello".into()))?;
///     client.read()
/// });
///
/// // Someone else's HTTP server: it reads and parses the request head...
/// let (mut stream, _) = listener.accept()?;
/// let mut buf = Vec::new();
/// let (request, len) = loop {
///     let mut chunk = [0u8; 1024];
///     let n = stream.read(&mut chunk)?;
///     buf.extend_from_slice(&chunk[..n]);
///     if let Some(parsed) = Request::parse(&buf, &Config::default())? {
///         break parsed;
///     }
/// };
/// assert_eq!(request.path, "/chat");
/// // ...and hands it over, with what it read past the head.
/// let mut ws = syncws::upgrade(&request, buf[len..].to_vec(), stream, Config::default())?;
/// let msg = ws.read()?;
/// ws.send(msg)?;
/// assert_eq!(client.join().unwrap()?, OwnedMessage::Text("hello".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn upgrade<T: Transport>(request: &Request, leftover: Vec<u8>, stream: T, config: Config) -> Result<WebSocket> {
    config.validate()?;
    let peer_addr = stream.peer_addr();
    let (reader, mut writer) = stream.split()?;
    writer.set_write_timeout(Some(config.write_timeout))?;
    // upgrade_response's checks, their refusals counted in the
    // process-wide counters (as those of `accept`).
    let checked = check_upgrade(request, &config, Counters::global());
    let mut resp = match checked.and_then(|()| hs::build_response(request)) {
        Ok(resp) => resp,
        Err(e) => return Err(refuse(&mut *writer, e, true)),
    };
    let negotiated = negotiate_server(request, &mut resp, &config);
    write_response(&mut *writer, &resp)?;
    let protocol = resp.header("sec-websocket-protocol").map(str::to_owned);
    let conn = Connection::open(reader, writer, leftover, Role::Server, &config, &negotiated)?;
    Ok(WebSocket::new(conn, Opened { request: request.clone(), protocol, peer_addr }))
}

impl WebSocket {
    /// A connection on a stream whose handshake is already done (the 101
    /// was written by another HTTP server, or read by another HTTP client):
    /// from here on, the stream carries WebSocket frames.
    ///
    /// `leftover` holds bytes already read from the stream past the
    /// handshake (the first frames); `role` says which side this is
    /// ([`Role::Server`] after answering an upgrade). Wrap a stream that
    /// is only `Read + Write + Send` in [`Unsplit`]: see there for what it
    /// cannot do; its example, and `examples/tiny_http_upgrade.rs`, show
    /// this call.
    ///
    /// Nothing is checked: that the handshake happened, and succeeded, is
    /// the caller's word. Since it happened elsewhere, the connection does
    /// not know it: [`request`](WebSocket::request) is an empty `GET` (no
    /// path, no headers) and [`protocol`](WebSocket::protocol) is `None`;
    /// no extension is in use (no permessage-deflate, whatever the
    /// config says);
    /// [`peer_addr`](WebSocket::peer_addr) is the stream's, if it has one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for an invalid `config`; an
    /// I/O error if the stream cannot be split or its timeouts set.
    pub fn from_upgraded<T: Transport>(stream: T, leftover: Vec<u8>, role: Role, config: Config) -> Result<WebSocket> {
        config.validate()?;
        let peer_addr = stream.peer_addr();
        let (reader, writer) = stream.split()?;
        let conn = Connection::open(reader, writer, leftover, role, &config, &Negotiated::default())?;
        let opened = Opened { request: Request::new("GET", ""), protocol: None, peer_addr };
        Ok(WebSocket::new(conn, opened))
    }
}

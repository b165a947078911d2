//! syncws: a synchronous, thread-per-connection WebSocket library (RFC 6455),
//! with a server and a client, one callback trait for both, and HTTP and
//! WebSocket on the same port. No async runtime.
//!
//! ```no_run
//! use syncws::{Listener, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};
//!
//! struct Echo(Option<Sender>);
//!
//! impl WsTrait for Echo {
//!     fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
//!         self.0 = Some(shake.sender); // Clone + Send: usable from any thread
//!         Ok(None)
//!     }
//!     fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
//!         self.0.as_ref().unwrap().send(msg)
//!     }
//! }
//!
//! fn main() -> Result<()> {
//!     Listener::bind("127.0.0.1:8081")?.serve(|server| server.set_callback_ws(Box::new(Echo(None))))
//! }
//! ```
//!
//! # Shape
//!
//! - [`protocol`]: bytes to frames to messages and back, without I/O
//!   (with the `deflate` feature, compressed messages too);
//! - [`handshake`]: the HTTP/1.1 upgrade on both sides, without I/O
//!   (and permessage-deflate's negotiation);
//! - the blocking shell: one thread reads each connection, with a read
//!   timeout set to the next deadline (interval, keepalive, idle, close);
//!   sends from that thread are batched into one write; a small send from
//!   another thread is written by that thread when nothing is queued, and
//!   otherwise goes through a queue bounded in messages and bytes to a
//!   writer thread;
//! - entry points: [`Server`] (one connection, HTTP and WebSocket),
//!   [`Listener`] (accept loop, caps, graceful shutdown), [`Acceptor`] (an
//!   accept loop that survives running out of descriptors and threads),
//!   [`Client`], and the plain blocking [`WebSocket`] from [`accept`],
//!   [`accept_with`] (the application answers the upgrade) or
//!   [`Client::into_websocket`], with a timed read
//!   ([`WebSocket::read_timeout`]) for loops that do other work too;
//! - behind another HTTP server: [`upgrade()`] takes a request it parsed,
//!   the bytes it read past it and the stream (Node's `handleUpgrade`);
//!   [`upgrade_response`] and [`WebSocket::from_upgraded`] for a server
//!   that writes the 101 itself; [`transport::Unsplit`] for a stream that
//!   is only `Read + Write + Send` (single-threaded API, no deadlines);
//! - proxies for the client ([`proxy`]): HTTP `CONNECT` and SOCKS5
//!   (`socks5h` resolves at the proxy), with credentials, given by
//!   [`ClientBuilder::proxy`] or read from the environment as curl reads
//!   it ([`ClientBuilder::proxy_from_env`]); `wss://` stays TLS end to end
//!   with the server; one connect deadline covers the lookup, TCP, the
//!   proxy, TLS and the upgrade ([`ClientBuilder::connect_timeout`]);
//! - a client that reconnects ([`ClientBuilder::reconnect`],
//!   [`Reconnecting`]): capped exponential backoff with full jitter,
//!   `on_open` again after each reconnect, a give-up policy
//!   ([`ReconnectPolicy`]), and a [`ReconnectSender`] that keeps, within a
//!   bound, or refuses ([`Offline`]) what is sent between connections;
//! - Unix domain sockets (on Unix): `UnixStream` is a [`Transport`], so
//!   [`accept`] and [`Server::new`] take it; `serve_unix` serves a
//!   `UnixListener`; clients connect to
//!   `ws+unix:///path/to.sock:/request/path`.
//!
//! # A connection's life
//!
//! After the handshake, every connection, server or client, callbacks or
//! plain API, goes through one state machine:
//!
//! ```text
//!             our Close written              peer's Close read
//!   Open ───────────────────────▶ CloseSent ──────────────────┐
//!    │ │                                                      ▼
//!    │ └─ peer's Close read ──▶ CloseReceived ── our Close ─▶ Closed
//!    │                          (reply owed)     written        │
//!    └─ error ──▶ Failed ──────────┐                            │
//!                                  ▼                            │
//!                                Ended ◀────────────────────────┘
//! ```
//!
//! Messages can be sent in `Open` and `CloseReceived` (until the reply is
//! written); after that [`Sender::send`] fails with [`Error::Send`]
//! ([`SendError::CloseSent`] or [`SendError::Closed`]). An error (a
//! protocol violation, an I/O error, a missed deadline) sends the Close
//! with its code when one applies. Whatever the way there, the thread that
//! runs the connection ends it: its writer thread stops, TCP is shut down
//! the way RFC 6455 §7.1.1 asks, and `on_close` (or the plain API's
//! [`Error::ConnectionClosed`]) tells the application.
//!
//! # Features
//!
//! - `tls` (off by default): TLS with rustls (and its `ring` crypto
//!   provider; no OpenSSL, no cmake). `wss://` URLs work with [`Client`],
//!   trusting the Mozilla roots of `webpki-roots` unless
//!   `ClientBuilder::tls_config` says otherwise; `Listener::tls` serves
//!   HTTP and WebSocket over TLS on one port; the `tls` module has the
//!   [`Transport`] for single streams (`tls::TlsStream`) and a PEM
//!   loader. `rustls` is re-exported so its version always matches.
//!   Without the feature, a `wss://` URL is refused with [`Error::Url`],
//!   never tried in plaintext.
//! - `native-roots` (off by default; turns on `tls`): `wss://` clients
//!   also trust the operating system's roots, and those of the files
//!   named by `SSL_CERT_FILE` and `SSL_CERT_DIR` (through
//!   `rustls-native-certs`), beside Mozilla's; for TLS-inspecting
//!   corporate proxies, whose CA only the system store knows.
//!
//! ```no_run
//! use syncws::{Client, OwnedMessage};
//! let mut client = Client::connect("wss://echo.example.com/")?;
//! client.send(OwnedMessage::Text("hello".into()))?;
//! # Ok::<(), syncws::Error>(())
//! ```
//!
//! - `deflate` (off by default): permessage-deflate (RFC 7692), with
//!   flate2 and its pure-Rust zlib-rs backend. Set
//!   [`Config::deflate`](Config) to a `DeflateConfig` and a server accepts
//!   the extension when a client offers it, a client offers it; messages
//!   over the threshold go compressed (`send_uncompressed` sends one as it
//!   is). No zlib state is held before a connection's first compressed
//!   message, and by default none between messages either (contexts reset,
//!   states borrowed from a process-wide pool); inflating stops at
//!   `max_message_size`. `DeflateConfig` documents the knobs and what they
//!   cost.
//! - `redis` (off by default): a [`Hub`] joined to the hubs of other
//!   processes through Redis pub/sub (`Hub::join_redis`, the `cluster`
//!   module), with the `redis` crate's blocking client: a publish on any
//!   node reaches every node's subscribers, at most once, in each node's
//!   order, with bounded memory while Redis is away.
//!
//! # Errors
//!
//! One [`Error`] type, with variants to match on: limits ([`Limit`]),
//! deadlines ([`Phase`]), refused sends ([`SendError`]), protocol
//! violations ([`ProtocolError`]), which carry the close code that was sent
//! to the peer ([`Error::close_code`]), proxies that fail ([`ProxyError`]). TLS failures (feature `tls`) are
//! [`Error::Tls`] with the `rustls::Error` inside (`tls::rustls_error`
//! finds it); its message says what to do about the common ones (a CA
//! certificate used as a server's, an unknown issuer, a wrong name).
//!
//! ```
//! use syncws::{Error, Limit, Phase, SendError};
//! fn describe(err: &Error) -> &'static str {
//!     match err {
//!         Error::Capacity { what: Limit::Message, .. } => "message too big",
//!         Error::Timeout { phase: Phase::Idle, .. } => "peer went quiet",
//!         Error::Send(SendError::QueueFull) => "peer reads too slowly",
//!         e if e.is_closed() => "closed",
//!         _ => "other",
//!     }
//! }
//! assert_eq!(describe(&Error::Send(SendError::QueueFull)), "peer reads too slowly");
//! ```
//!
//! # Metrics
//!
//! Every [`Listener`] counts, always and cheaply (relaxed atomic adds, per
//! message and per system call): connections accepted, open, refused by
//! reason, closed by close code; messages and bytes each way; messages
//! dropped. [`Running::stats`] takes a [`Stats`] snapshot,
//! [`Listener::metrics`] (or [`Server::metrics`], in the setup closure)
//! gives a live [`Metrics`] handle for any thread,
//! and [`Stats::to_prometheus`] renders a snapshot for a Prometheus scrape.
//!
//! # Logging
//!
//! Through the `log` crate, each target the module that logs
//! (`syncws::listener`, `syncws::acceptor`, `syncws::server`,
//! `syncws::conn::runner`, `syncws::client`, ...; the README's "Logging"
//! table lists them all): `info` for listeners started and stopped and
//! WebSocket connections opened, `warn` for peers closed for violations or
//! errors and for connections turned away (one summary line per second at
//! most, with counts: over the caps, out of descriptors, out of threads),
//! `debug` for every connection's end, close code and each request,
//! `error` only for a bug of the library. Nothing is logged per message,
//! nor at `trace`.
#![deny(missing_docs)]
// `unsafe` is allowed only where measured to pay, each with its SAFETY
// comment: `send_dontwait` and `read_uninit` in transport/socket.rs, setting a
// message's length after such a read (`Assembler::assume_init`), a text
// message made from bytes just checked to be ASCII (`assembler::text_of`), and
// unmasking while copying into a buffer's spare capacity (`mask::extend_masked`).
#![deny(unsafe_code)]

mod acceptor;
mod callback;
mod client;
#[cfg(feature = "redis")]
pub mod cluster;
pub mod config;
mod conn;
pub mod error;
pub mod handshake;
pub mod hub;
mod listener;
mod memory;
pub mod message;
pub mod protocol;
pub mod proxy;
mod server;
mod stats;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;
#[cfg(unix)]
mod unix;
mod upgrade;

pub use acceptor::Acceptor;
pub use callback::{HttpTrait, WsHandshake, WsOption, WsTrait};
pub use client::{
    Client, ClientBuilder, EndReason, Ended, LinkState, Offline, ReconnectPolicy, ReconnectSender, Reconnecting, Retry,
};
#[cfg(feature = "deflate")]
pub use config::DeflateConfig;
pub use config::{Config, OriginPolicy, QueuePolicy};
pub use conn::{Sender, WebSocket, WsReader, WsWriter};
pub use error::{Error, Limit, Phase, ProtocolError, ProxyError, Result, SendError};
pub use handshake::{Headers, Request, Response};
pub use hub::{BacklogPolicy, Forwarded, Hub, Prepared, Published};
pub use listener::{Listener, Running, ShutdownHandle};
pub use memory::memory_held;
pub use message::{CloseCode, CloseData, OwnedMessage};
pub use server::{accept, accept_with, accept_with_config, Server};
pub use stats::{Closed, Metrics, Refused, Stats};
pub use transport::Transport;
#[cfg(unix)]
pub use unix::{serve_unix, UnixRunning};
pub use upgrade::{upgrade, upgrade_response};

/// The README's Rust blocks, compiled as doctests so that they fail the
/// build when they drift from the API. Blocks that need a feature (`tls`,
/// `deflate`, `redis`) gate their code on it, so that the doctests pass
/// without features too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The channel crate whose `Receiver` [`WsOption::set_receiver`] takes,
/// re-exported so its version always matches.
pub use crossbeam_channel;

/// The TLS library of the `tls` feature, re-exported so that the configs
/// given to [`Listener::tls`] and [`ClientBuilder::tls_config`] come from
/// the same version.
#[cfg(feature = "tls")]
pub use rustls;

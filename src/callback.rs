//! The callback API: [`WsTrait`] for WebSocket connections, [`HttpTrait`] for
//! plain HTTP requests on the same port, and what they are handed.

use std::any::Any;
use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::client::Retry;
use crate::conn::Sender;
use crate::error::{Error, Result};
use crate::handshake::{server, Request, Response};
use crate::message::{CloseData, OwnedMessage};

/// What a WebSocket connection does, as callbacks. The same trait serves
/// [`Server`](crate::Server) and [`Client`](crate::Client) connections.
///
/// All callbacks of one connection run on that connection's thread, one at a
/// time. Send with the [`Sender`] handed to [`on_open`](WsTrait::on_open); it
/// also works from any other thread.
///
/// ```
/// use syncws::{OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};
///
/// struct Echo(Option<Sender>);
///
/// impl WsTrait for Echo {
///     fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
///         self.0 = Some(shake.sender);
///         Ok(None)
///     }
///     fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
///         self.0.as_ref().expect("opened").send(msg)
///     }
/// }
/// ```
pub trait WsTrait: Send {
    /// Builds the handshake response from the upgrade request (server side
    /// only). Choose a subprotocol by adding `Sec-WebSocket-Protocol` with
    /// one the client offered, check `Origin` or a token, or refuse by
    /// returning a response with any status other than 101, or an error.
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        WsHandshake::build_request(req)
    }

    /// The handshake is done. Keep `shake.sender` to send; return options
    /// (an interval for [`on_interval`](WsTrait::on_interval), an extra
    /// receiver of outgoing messages), or `None`.
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>>;

    /// The connection ended. `reason` is the peer's Close frame body, or
    /// `None` if it sent none (or closed without a Close frame). Called
    /// exactly once per opened connection.
    fn on_close(&mut self, reason: &Option<CloseData>) {
        let _ = reason;
    }

    /// Something went wrong: a protocol violation by the peer, an I/O error,
    /// a deadline, or an error returned by another callback. The connection
    /// is closing; [`on_close`](WsTrait::on_close) follows.
    fn on_error(&mut self, err: Error) {
        log::debug!("connection error: {err}");
    }

    /// A Ping arrived. The default answers with a Pong carrying the same
    /// payload; return `None` to send nothing (a proxy forwards the ping
    /// instead).
    fn on_ping(&mut self, val: Vec<u8>) -> Result<Option<OwnedMessage>> {
        Ok(Some(OwnedMessage::Pong(val)))
    }

    /// A Pong arrived.
    fn on_pong(&mut self, val: Vec<u8>) {
        let _ = val;
    }

    /// A Text or Binary message arrived. Returning an error closes the
    /// connection with the error's close code (1011 for most).
    ///
    /// With [`WsOption::defer_close_reply`], the peer's Close arrives here
    /// too, unanswered: see there.
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()>;

    /// Called every [`WsOption`] interval, whatever the traffic. May change
    /// the option (a new interval, or `None` to stop the timer).
    fn on_interval(&mut self, option: &mut Option<WsOption>) -> Result<()> {
        let _ = option;
        Ok(())
    }

    /// A [reconnecting client](crate::Reconnecting) lost its connection
    /// (after [`on_close`](WsTrait::on_close)) or failed to connect, and
    /// tries again after `retry.delay`. Not called when it gives up or
    /// stops: [`Reconnecting::run`](crate::Reconnecting::run) returns
    /// then. [`on_open`](WsTrait::on_open) runs again once the next
    /// connection is open, with [`WsHandshake::reconnects`] counting the
    /// connections before it. The default logs at `debug`.
    fn on_reconnect(&mut self, retry: &Retry) {
        log::debug!("reconnecting in {:?} (attempt {})", retry.delay, retry.attempt);
    }

    /// Access to the concrete handler, for code that holds a `dyn WsTrait`.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// Mutable access to the concrete handler.
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        None
    }
}

/// Answers plain HTTP requests that arrive on a [`Server`](crate::Server).
///
/// ```
/// use syncws::{HttpTrait, Request, Response, Result};
/// struct Hello;
/// impl HttpTrait for Hello {
///     fn operate(&mut self, req: &mut Request) -> Result<Response> {
///         Ok(Response::text(200, &format!("you asked for {}", req.path)))
///     }
/// }
/// ```
pub trait HttpTrait: Send {
    /// Answers one request (its body, if any, has been read into
    /// `req.body`).
    fn operate(&mut self, req: &mut Request) -> Result<Response>;
}

/// What [`WsTrait::on_open`] is handed once the handshake is done.
#[derive(Debug)]
#[non_exhaustive]
pub struct WsHandshake {
    /// Sends on this connection, from any thread.
    pub sender: Sender,
    /// The upgrade request (on a client: the request it sent).
    pub request: Request,
    /// The handshake response (on a client: the response it received).
    pub response: Response,
    /// The peer's address, if known.
    pub addr: Option<SocketAddr>,
    /// The subprotocol agreed on, if any.
    pub protocol: Option<String>,
    /// On a [reconnecting client](crate::Reconnecting): how many
    /// connections of this run opened before this one (0 for the first,
    /// 1 after the first reconnect, ...). Always 0 on a server and on a
    /// plain [`Client`](crate::Client).
    pub reconnects: u32,
}

impl WsHandshake {
    /// Builds the *response* to an upgrade request: the default
    /// `101 Switching Protocols`, after checking the request (RFC 6455
    /// §4.2.1). Despite its name, it builds no request: the name is the
    /// one of wenmeng, the library syncws follows; it is
    /// [`handshake::server::build_response`](server::build_response).
    ///
    /// The 101 has `Upgrade`, `Connection` and `Sec-WebSocket-Accept`, and
    /// chooses no subprotocol: to choose one, add a
    /// `Sec-WebSocket-Protocol` header naming one of
    /// [`Request::protocols`]. Use it in [`WsTrait::on_request`] or the
    /// callback of [`accept_with`](crate::accept_with), which check the
    /// 101 they return before sending it.
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] with the status to refuse the request with
    /// (400, 405 or 426) if it is not a valid upgrade request.
    ///
    /// ```
    /// use syncws::{Request, WsHandshake};
    /// let mut req = Request::new("GET", "/chat");
    /// req.headers.append("Host", "example.com");
    /// req.headers.append("Upgrade", "websocket");
    /// req.headers.append("Connection", "Upgrade");
    /// req.headers.append("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    /// req.headers.append("Sec-WebSocket-Version", "13");
    /// let resp = WsHandshake::build_request(&req).unwrap();
    /// assert_eq!(resp.status, 101);
    /// assert_eq!(resp.headers.get("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    ///
    /// // Choosing a subprotocol the client offered.
    /// req.headers.append("Sec-WebSocket-Protocol", "chat.v1, chat.v2");
    /// let resp = WsHandshake::build_request(&req).unwrap().with_header("Sec-WebSocket-Protocol", "chat.v2");
    /// syncws::handshake::server::check_response(&req, &resp).unwrap();
    /// ```
    #[doc(alias = "build_response")]
    pub fn build_request(req: &Request) -> Result<Response> {
        server::build_response(req)
    }
}

/// Options a connection runs with, returned from [`WsTrait::on_open`].
///
/// ```
/// use std::time::Duration;
/// let (tx, rx) = crossbeam_channel::unbounded();
/// let mut option = syncws::WsOption::new(Duration::from_secs(10));
/// option.set_receiver(rx);
/// tx.send(syncws::OwnedMessage::Text("queued before open".into())).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct WsOption {
    /// How often [`WsTrait::on_interval`] runs; `None` for never.
    pub interval: Option<Duration>,
    pub(crate) receiver: Option<Receiver<OwnedMessage>>,
    pub(crate) defer_close: bool,
}

impl WsOption {
    /// Options with [`WsTrait::on_interval`] called every `interval`.
    pub fn new(interval: Duration) -> Self {
        WsOption { interval: Some(interval), receiver: None, defer_close: false }
    }

    /// Lets the application answer the peer's Close itself, after sending
    /// what it still has (a proxy or a bridge whose other side is still
    /// talking; RFC 6455 §5.5.1 lets an endpoint delay its Close reply).
    ///
    /// The peer's Close is then handed to [`WsTrait::on_message`] as an
    /// [`OwnedMessage::Close`] and not answered. Send the reply with the
    /// [`Sender`] (or the receiver of [`set_receiver`](WsOption::set_receiver),
    /// after the messages queued there); the connection ends once it is
    /// written, and [`WsTrait::on_close`] follows as usual. Without a reply
    /// within [`Config::close_timeout`](crate::Config::close_timeout), the
    /// connection answers with the peer's code and ends.
    pub fn defer_close_reply(&mut self) {
        self.defer_close = true;
    }

    /// Also sends every message that arrives on `receiver`, a channel the
    /// application owns. The handshake's [`Sender`] keeps working; when
    /// every sender of `receiver` is dropped, the connection goes on.
    pub fn set_receiver(&mut self, receiver: Receiver<OwnedMessage>) {
        self.receiver = Some(receiver);
    }
}

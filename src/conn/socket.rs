//! [`WebSocket`]: the plain blocking API, for code that wants `read()` and
//! `send()` instead of callbacks, and its split into [`WsReader`] and a
//! cloneable [`WsWriter`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[cfg(doc)]
use crate::config::Config;
use crate::conn::lifecycle::Connection;
use crate::conn::read::Read;
use crate::conn::state::State;
use crate::conn::write::WriteSide;
use crate::error::{Error, Result};
use crate::handshake::Request;
use crate::message::{CloseCode, CloseData, OwnedMessage};
use crate::protocol::Role;

/// The shortest wait of [`WsReader::read_timeout`]: the finest read
/// timeout the read side sets, so that even a zero timeout looks at the
/// socket once.
const MIN_TIMED_WAIT: Duration = Duration::from_millis(1);

/// A WebSocket connection after its handshake, used with blocking calls.
///
/// [`read`](WebSocket::read) answers Pings and Closes by itself and keeps the
/// keepalive and idle deadlines of its [`Config`]; [`send`](WebSocket::send)
/// writes at once. [`split`](WebSocket::split) gives a reader for one thread
/// and a cloneable writer for any others.
///
/// ```no_run
/// use syncws::{OwnedMessage, WebSocket};
/// let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
/// let (stream, _) = listener.accept()?;
/// let mut ws: WebSocket = syncws::accept(stream)?;
/// while let Ok(msg) = ws.read() {
///     if msg.is_data() {
///         ws.send(msg)?;
///     }
/// }
/// # Ok::<(), syncws::Error>(())
/// ```
pub struct WebSocket {
    reader: WsReader,
    writer: WsWriter,
}

/// The reading half of a [`WebSocket`].
pub struct WsReader {
    conn: Box<Connection>,
    /// What the handshake settled. Boxed and kept here rather than in the
    /// [`Connection`]: only the plain API has accessors for it, and the
    /// callback runner's connections, the ones that sit idle by the
    /// thousand, do not pay for it.
    opened: Box<Opened>,
}

/// What the handshake of a plain [`WebSocket`] settled: the request, the
/// subprotocol agreed on, the peer's address.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The upgrade request (on a client: the request it sent).
    pub(crate) request: Request,
    /// The subprotocol agreed on, if any.
    pub(crate) protocol: Option<String>,
    /// The peer's address, if the transport has one.
    pub(crate) peer_addr: Option<SocketAddr>,
}

/// The writing half of a [`WebSocket`]: `Clone + Send`, so several threads
/// may send while one reads.
#[derive(Clone)]
pub struct WsWriter {
    write: WriteSide,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.reader.conn.role)
            .field("path", &self.reader.opened.request.path)
            .field("protocol", &self.reader.opened.protocol)
            .field("peer_addr", &self.reader.opened.peer_addr)
            .finish()
    }
}

impl std::fmt::Debug for WsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader")
            .field("role", &self.conn.role)
            .field("path", &self.opened.request.path)
            .field("peer_addr", &self.opened.peer_addr)
            .finish()
    }
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsWriter")
    }
}

impl WebSocket {
    /// A plain connection over `conn`, whose handshake settled `opened`.
    pub(crate) fn new(conn: Box<Connection>, opened: Opened) -> Self {
        let writer = WsWriter { write: conn.write.clone() };
        WebSocket { reader: WsReader { conn, opened: Box::new(opened) }, writer }
    }

    /// Reads the next message. See [`WsReader::read`].
    pub fn read(&mut self) -> Result<OwnedMessage> {
        self.reader.read()
    }

    /// Reads the next message if one completes within `timeout`. See
    /// [`WsReader::read_timeout`].
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Option<OwnedMessage>> {
        self.reader.read_timeout(timeout)
    }

    /// The upgrade request. See [`WsReader::request`].
    pub fn request(&self) -> &Request {
        self.reader.request()
    }

    /// The subprotocol agreed on. See [`WsReader::protocol`].
    pub fn protocol(&self) -> Option<&str> {
        self.reader.protocol()
    }

    /// The peer's address. See [`WsReader::peer_addr`].
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.reader.peer_addr()
    }

    /// Sends a message. See [`WsWriter::send`].
    pub fn send(&mut self, msg: OwnedMessage) -> Result<()> {
        self.writer.send(msg)
    }

    /// Starts the close handshake. See [`WsWriter::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.writer.close(code, reason)
    }

    /// Splits into a reader and a cloneable writer.
    ///
    /// ```no_run
    /// # fn demo(ws: syncws::WebSocket) -> syncws::Result<()> {
    /// let (mut reader, writer) = ws.split();
    /// let w = writer.clone();
    /// std::thread::spawn(move || w.send("tick".into()));
    /// while let Ok(msg) = reader.read() {
    ///     println!("{msg:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }

    /// Which side of the connection this is.
    pub fn role(&self) -> Role {
        self.reader.conn.role
    }

    pub(crate) fn into_connection(self) -> Box<Connection> {
        self.reader.conn
    }
}

impl WsReader {
    /// Blocks until a message arrives and returns it.
    ///
    /// Pings are answered with a Pong at once (and returned too); a Close
    /// is answered, the connection is shut down the way RFC 6455 asks, and
    /// the Close is returned; the read after it gives
    /// [`Error::ConnectionClosed`]. Keepalive pings are sent and the idle
    /// timeout kept while waiting. A protocol violation by the peer is
    /// answered with the right close code and returned as an error.
    pub fn read(&mut self) -> Result<OwnedMessage> {
        self.readable()?;
        loop {
            match self.conn.next(None) {
                Ok(Read::Message(msg)) => return self.handle(msg),
                // Only for a deadline of the caller's, and none was given.
                Ok(Read::Deadline) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Reads the next message if one completes within `timeout`; `Ok(None)`
    /// if none did: nothing is wrong with the connection, call again.
    ///
    /// For loops that must also do other work on the same thread (a game
    /// tick, a GUI event loop, a poll of other sources). Everything
    /// [`read`](WsReader::read) does goes on meanwhile: Pings are answered,
    /// keepalive pings sent and the idle and close deadlines kept, whether
    /// they fall inside one call or across several. The bytes of a message
    /// that has only partly arrived are kept, and the message is returned
    /// whole by the call during which its last byte arrives.
    ///
    /// A `timeout` under a millisecond waits a millisecond, so that the
    /// socket is read at least once; on a loaded machine the call may
    /// return later than `timeout`, as any timed wait may.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # fn demo(mut ws: syncws::WebSocket) -> syncws::Result<()> {
    /// loop {
    ///     match ws.read_timeout(Duration::from_millis(16))? {
    ///         Some(msg) => println!("got {msg:?}"),
    ///         None => { /* nothing yet: draw the next frame, poll input... */ }
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`read`](WsReader::read): a failed connection, or one that ended
    /// ([`Error::ConnectionClosed`] after the peer's Close was returned),
    /// never a timeout of the caller's.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Option<OwnedMessage>> {
        self.readable()?;
        // A timeout too far ahead to represent waits for ever, as `read`.
        let until = Instant::now().checked_add(timeout.max(MIN_TIMED_WAIT));
        match self.conn.next(until) {
            Ok(Read::Message(msg)) => self.handle(msg).map(Some),
            Ok(Read::Deadline) => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The upgrade request: its path (with the query), headers such as
    /// `Origin`, `Cookie` or `Authorization`. On a client, the request it
    /// sent.
    ///
    /// ```no_run
    /// let (stream, _) = std::net::TcpListener::bind("127.0.0.1:9001")?.accept()?;
    /// let ws = syncws::accept(stream)?;
    /// println!("{} asked for {}", ws.peer_addr().unwrap(), ws.request().path);
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn request(&self) -> &Request {
        &self.opened.request
    }

    /// The subprotocol agreed on in the handshake (the
    /// `Sec-WebSocket-Protocol` of the 101), if any.
    pub fn protocol(&self) -> Option<&str> {
        self.opened.protocol.as_deref()
    }

    /// The peer's address, if the transport has one (TCP and TLS do).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.opened.peer_addr
    }

    /// Whether a read may go on; the error to return if not.
    fn readable(&mut self) -> Result<()> {
        match self.conn.state() {
            State::Open | State::CloseSent => Ok(()),
            State::Ended => {
                self.conn.report();
                Err(Error::ConnectionClosed)
            }
            // A write on another thread failed, and reported why.
            State::Failed => {
                self.conn.end();
                self.conn.report();
                Err(Error::AlreadyClosed)
            }
            State::CloseReceived | State::Closed | State::Reported => Err(Error::AlreadyClosed),
        }
    }

    fn handle(&mut self, msg: OwnedMessage) -> Result<OwnedMessage> {
        match &msg {
            OwnedMessage::Ping(p) => self.conn.send_own(OwnedMessage::Pong(p.clone()))?,
            OwnedMessage::Close(reason) => {
                let answered = self.conn.peer_closed(reason, false);
                self.conn.end();
                if let Err(e) = answered {
                    self.conn.report();
                    return Err(e);
                }
            }
            _ => {}
        }
        Ok(msg)
    }

    /// Sends the close code for `err` if it has one, ends the connection,
    /// and hands the error back: that is its report.
    fn fail(&mut self, err: Error) -> Error {
        self.conn.fail(&err);
        self.conn.end();
        self.conn.report();
        err
    }
}

impl WsWriter {
    /// Writes `msg` now, blocking at most [`Config::write_timeout`].
    /// Fails with [`Error::AlreadyClosed`] once a Close has been sent.
    pub fn send(&self, msg: OwnedMessage) -> Result<()> {
        self.write.send(msg)
    }

    /// Sends a Close frame; keep reading until the reader reports
    /// [`Error::ConnectionClosed`] to finish the close handshake (the
    /// reader waits at most [`Config::close_timeout`] for the reply).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.write.send(OwnedMessage::Close(Some(CloseData::new(code, reason))))
    }
}

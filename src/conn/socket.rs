//! [`WebSocket`]: the plain blocking API, for code that wants `read()` and
//! `send()` instead of callbacks, and its split into [`WsReader`] and a
//! cloneable [`WsWriter`].

#[cfg(doc)]
use crate::config::Config;
use crate::conn::lifecycle::Connection;
use crate::conn::read::Read;
use crate::conn::state::State;
use crate::conn::write::WriteSide;
use crate::error::{Error, Result};
use crate::message::{CloseCode, CloseData, OwnedMessage};
use crate::protocol::Role;

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
}

/// The writing half of a [`WebSocket`]: `Clone + Send`, so several threads
/// may send while one reads.
#[derive(Clone)]
pub struct WsWriter {
    write: WriteSide,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("role", &self.reader.conn.role).finish()
    }
}

impl std::fmt::Debug for WsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader").field("role", &self.conn.role).finish()
    }
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsWriter")
    }
}

impl WebSocket {
    pub(crate) fn new(conn: Box<Connection>) -> Self {
        let writer = WsWriter { write: conn.write.clone() };
        WebSocket { reader: WsReader { conn }, writer }
    }

    /// Reads the next message. See [`WsReader::read`].
    pub fn read(&mut self) -> Result<OwnedMessage> {
        self.reader.read()
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
        match self.conn.state() {
            State::Open | State::CloseSent => {}
            State::Ended => {
                self.conn.report();
                return Err(Error::ConnectionClosed);
            }
            // A write on another thread failed, and reported why.
            State::Failed => {
                self.conn.end();
                self.conn.report();
                return Err(Error::AlreadyClosed);
            }
            State::CloseReceived | State::Closed | State::Reported => return Err(Error::AlreadyClosed),
        }
        loop {
            match self.conn.next(None) {
                Ok(Read::Message(msg)) => return self.handle(msg),
                // Only for a deadline of the caller's, and none was given.
                Ok(Read::Deadline) => {}
                Err(e) => return Err(self.fail(e)),
            }
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

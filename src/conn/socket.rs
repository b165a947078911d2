//! [`WebSocket`]: the plain blocking API, for code that wants `read()` and
//! `send()` instead of callbacks, and its split into [`WsReader`] and a
//! cloneable [`WsWriter`].

use std::time::Instant;

use crate::config::Config;
use crate::conn::lifecycle::{close_for, close_reply, end_tcp, Keepalive};
use crate::conn::read::{Read, ReadSide};
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
    read: ReadSide,
    write: WriteSide,
    role: Role,
    config: Config,
    keepalive: Keepalive,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The close handshake finished or the connection failed; the next
    /// read reports [`Error::ConnectionClosed`], later ones
    /// [`Error::AlreadyClosed`].
    Ended,
    Reported,
}

/// The writing half of a [`WebSocket`]: `Clone + Send`, so several threads
/// may send while one reads.
#[derive(Clone)]
pub struct WsWriter {
    write: WriteSide,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("role", &self.reader.role).finish()
    }
}

impl std::fmt::Debug for WsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader").field("role", &self.reader_role()).finish()
    }
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsWriter")
    }
}

impl WebSocket {
    pub(crate) fn new(read: ReadSide, write: WriteSide, role: Role, config: Config) -> Self {
        let writer = WsWriter { write: write.clone() };
        let keepalive = Keepalive::new(&config);
        let reader = WsReader { read, write, role, config, keepalive, state: State::Open };
        WebSocket { reader, writer }
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
        self.reader.role
    }

    pub(crate) fn into_parts(self) -> (ReadSide, WriteSide, Config) {
        (self.reader.read, self.reader.write, self.reader.config)
    }
}

impl WsReader {
    fn reader_role(&self) -> Role {
        self.role
    }

    /// Blocks until a message arrives and returns it.
    ///
    /// Pings are answered with a Pong at once (and returned too); a Close
    /// is answered, the connection is shut down the way RFC 6455 asks, and
    /// the Close is returned; the read after it gives
    /// [`Error::ConnectionClosed`]. Keepalive pings are sent and the idle
    /// timeout kept while waiting. A protocol violation by the peer is
    /// answered with the right close code and returned as an error.
    pub fn read(&mut self) -> Result<OwnedMessage> {
        match self.state {
            State::Open => {}
            State::Ended => {
                self.state = State::Reported;
                return Err(Error::ConnectionClosed);
            }
            State::Reported => return Err(Error::AlreadyClosed),
        }
        loop {
            let (keepalive, write) = (&self.keepalive, &self.write);
            let result = self.read.read(&mut |read| keepalive.next(read, write), &mut || Ok(()));
            match result {
                Ok(Read::Message(msg)) => return self.handle(msg),
                Ok(Read::Deadline) => {
                    if let Err(e) = self.on_deadline() {
                        return Err(self.fail(e));
                    }
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    fn handle(&mut self, msg: OwnedMessage) -> Result<OwnedMessage> {
        match &msg {
            OwnedMessage::Ping(p) => {
                ignore_closed(self.write.send(OwnedMessage::Pong(p.clone())))?;
            }
            OwnedMessage::Close(reason) => {
                if self.write.close_sent().is_none() {
                    ignore_closed(self.write.send(close_reply(reason)))?;
                }
                self.end();
            }
            _ => {}
        }
        Ok(msg)
    }

    fn on_deadline(&mut self) -> Result<()> {
        if self.keepalive.check(Instant::now(), &self.read, &self.write)? {
            ignore_closed(self.write.send(OwnedMessage::Ping(Vec::new())))?;
        }
        Ok(())
    }

    /// Sends the close code for `err` if it has one, ends the connection,
    /// and hands the error back.
    fn fail(&mut self, err: Error) -> Error {
        if let Some(close) = close_for(&err).filter(|_| self.write.close_sent().is_none()) {
            let _ = self.write.send(close);
        }
        self.end();
        self.state = State::Reported;
        err
    }

    fn end(&mut self) {
        self.state = State::Ended;
        end_tcp(self.role, &mut self.read, &self.write, self.config.close_timeout);
    }
}

fn ignore_closed(r: Result<()>) -> Result<()> {
    match r {
        Err(Error::AlreadyClosed) => Ok(()),
        other => other,
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

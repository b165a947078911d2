//! The callback loop: one thread reads, dispatches to a [`WsTrait`], and keeps
//! every deadline (interval, keepalive ping, idle, close) on time.
//!
//! ```text
//!   Open ──peer Close──▶ reply Close, on_close ──▶ Closed
//!    │  ──we send Close─▶ Closing ──peer Close / close timeout──▶ on_close ──▶ Closed
//!    │  ──protocol error─▶ send Close(code), on_error, on_close ──▶ Closed
//!    └──EOF, I/O error, idle timeout─▶ on_error, on_close ──▶ Closed
//! ```
//! In `Closed`, a server shuts its write side first and waits (bounded) for
//! the client's EOF; a client waits (bounded) for the server to close TCP.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, warn};

use crate::callback::{WsHandshake, WsOption, WsTrait};
use crate::config::Config;
use crate::conn::lifecycle::{close_for, close_reply, end_tcp, Keepalive};
use crate::conn::read::{Read, ReadSide};
use crate::conn::sender::Sender;
use crate::conn::write::WriteSide;
use crate::error::{Error, Result};
use crate::message::{CloseData, OwnedMessage};
use crate::protocol::Role;

/// A connection after its handshake, ready to run callbacks.
pub(crate) struct Connection {
    pub(crate) role: Role,
    pub(crate) read: ReadSide,
    pub(crate) write: WriteSide,
    pub(crate) sender: Sender,
    pub(crate) config: Config,
}

/// Runs `handler` on the connection until it ends, however it ends: the
/// handler is told through `on_error` and `on_close`.
///
/// Kept shallow on the stack, since a connection thread's stack pages stay
/// resident once touched: the connection is borrowed (a server keeps it
/// boxed) rather than moved into this frame, and what happens only now and
/// then (a message, a deadline, a failure, the close) runs in frames of its
/// own instead of enlarging the one that waits for the network.
pub(crate) fn run(conn: &mut Connection, handler: &mut dyn WsTrait, shake: Box<WsHandshake>) {
    let mut r = Runner::new(conn);
    let reason = if r.open(handler, shake) { r.serve(handler) } else { None };
    r.close(handler, &reason);
}

struct Runner<'c> {
    conn: &'c mut Connection,
    sender: Sender,
    option: Option<WsOption>,
    next_interval: Option<Instant>,
    keepalive: Keepalive,
    /// The peer's Close, held while the application owes the reply
    /// (`WsOption::defer_close_reply`).
    peer_close: Option<Option<CloseData>>,
}

impl<'c> Runner<'c> {
    fn new(conn: &'c mut Connection) -> Self {
        let sender = conn.sender.clone();
        let keepalive = Keepalive::new(&conn.config);
        Runner { conn, sender, option: None, next_interval: None, keepalive, peer_close: None }
    }

    /// Calls `on_open`; false if the connection failed there.
    #[inline(never)]
    fn open(&mut self, handler: &mut dyn WsTrait, shake: Box<WsHandshake>) -> bool {
        match guard(|| handler.on_open(*shake)) {
            Ok(option) => {
                self.set_option(option);
                true
            }
            Err(e) => {
                let _ = self.sender.flush_local();
                self.fail(handler, e);
                false
            }
        }
    }

    /// Calls `on_close` and ends the connection.
    #[inline(never)]
    fn close(self, handler: &mut dyn WsTrait, reason: &Option<CloseData>) {
        guard(|| {
            handler.on_close(reason);
            Ok(())
        })
        .ok();
        self.finish();
    }

    fn set_option(&mut self, mut option: Option<WsOption>) {
        if let Some(rx) = option.as_mut().and_then(|o| o.receiver.take()) {
            if let Err(e) = self.sender.add_receiver(rx) {
                warn!("cannot serve the application's receiver: {e}");
            }
        }
        self.next_interval = option.as_ref().and_then(|o| o.interval).map(|i| Instant::now() + i);
        self.option = option;
    }

    /// Reads and dispatches until the connection ends; returns the peer's
    /// close reason.
    fn serve(&mut self, handler: &mut dyn WsTrait) -> Option<CloseData> {
        loop {
            if let Some(reason) = self.peer_close.take() {
                return self.await_close_reply(reason);
            }
            let (keepalive, write, interval) = (&self.keepalive, &self.conn.write, self.next_interval);
            let sender = &self.sender;
            // The nearest of: interval, keepalive ping, idle timeout, close timeout.
            let mut deadline = |read: &ReadSide| [interval, keepalive.next(read, write)].into_iter().flatten().min();
            let read = self.conn.read.read(&mut deadline, &mut || sender.flush_local());
            match read {
                Ok(Read::Message(msg)) => match self.dispatch(handler, msg) {
                    Ok(None) => {}
                    Ok(Some(reason)) => return reason,
                    Err(e) => {
                        self.fail(handler, e);
                        return None;
                    }
                },
                Ok(Read::Deadline) => {
                    if let Err(e) = self.on_deadline(handler) {
                        self.fail(handler, e);
                        return None;
                    }
                }
                Err(e) => {
                    self.fail(handler, e);
                    return None;
                }
            }
        }
    }

    /// Handles one message; `Some(reason)` when the close handshake ended.
    #[inline(never)]
    fn dispatch(&mut self, handler: &mut dyn WsTrait, msg: OwnedMessage) -> Result<Option<Option<CloseData>>> {
        match msg {
            OwnedMessage::Text(_) | OwnedMessage::Binary(_) => guard(|| handler.on_message(msg))?,
            OwnedMessage::Ping(payload) => {
                if let Some(reply) = guard(|| handler.on_ping(payload))? {
                    self.send_own(reply)?;
                }
            }
            OwnedMessage::Pong(payload) => guard(|| {
                handler.on_pong(payload);
                Ok(())
            })?,
            OwnedMessage::Close(reason) => {
                let defer = self.option.as_ref().is_some_and(|o| o.defer_close);
                if defer && self.conn.write.close_sent().is_none() {
                    self.peer_close = Some(reason.clone());
                    guard(|| handler.on_message(OwnedMessage::Close(reason)))?;
                    return Ok(None);
                }
                if self.conn.write.close_sent().is_none() {
                    self.send_own(close_reply(&reason))?;
                }
                self.sender.flush_local()?;
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }

    /// The peer closed and the application answers it
    /// (`WsOption::defer_close_reply`): nothing more comes from the peer, so
    /// instead of reading, wait until the application's Close is written,
    /// or answer it ourselves after the close timeout.
    #[inline(never)]
    fn await_close_reply(&mut self, reason: Option<CloseData>) -> Option<CloseData> {
        let _ = self.sender.flush_local();
        let deadline = Instant::now() + self.conn.config.close_timeout;
        if !self.conn.write.wait_close_sent(deadline) {
            debug!("the application did not answer the peer's close in time; answering it");
            let _ = self.conn.write.send(close_reply(&reason));
        }
        reason
    }

    /// Queues a message of the connection's own (pong, close reply).
    fn send_own(&self, msg: OwnedMessage) -> Result<()> {
        match self.sender.send(msg) {
            Err(Error::Send(_)) => Ok(()),
            other => other,
        }
    }

    #[inline(never)]
    fn on_deadline(&mut self, handler: &mut dyn WsTrait) -> Result<()> {
        let now = Instant::now();
        if self.keepalive.check(now, &self.conn.read, &self.conn.write)? {
            self.send_own(OwnedMessage::Ping(Vec::new()))?;
        }
        if self.next_interval.is_some_and(|due| now >= due) {
            let mut option = self.option.take();
            guard(|| handler.on_interval(&mut option))?;
            self.set_option(option);
        }
        Ok(())
    }

    /// Reports `err` and closes with its close code where one applies.
    #[inline(never)]
    fn fail(&mut self, handler: &mut dyn WsTrait, err: Error) {
        match &err {
            Error::Io(_) | Error::Tls(_) | Error::Timeout { .. } => debug!("connection ended: {err}"),
            _ => warn!("closing connection: {err}"),
        }
        // Replies to the messages before the fault go out before the Close.
        let _ = self.sender.flush_local();
        if let Some(close) = close_for(&err).filter(|_| self.conn.write.close_sent().is_none()) {
            let _ = self.conn.write.send(close);
        }
        guard(|| {
            handler.on_error(err);
            Ok(())
        })
        .ok();
    }

    /// Ends the TCP connection the way RFC 6455 §7.1.1 asks: the server
    /// closes first; the client waits for it.
    fn finish(self) {
        let _ = self.sender.flush_local();
        self.sender.end();
        end_tcp(self.conn.role, &mut self.conn.read, &self.conn.write, self.conn.config.close_timeout);
    }
}

/// Runs a callback, turning a panic into [`Error::Application`] so that one
/// faulty handler ends only its own connection.
fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Error::Application(format!("callback panicked: {what}")))
        }
    }
}

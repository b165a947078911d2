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

use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::callback::{WsHandshake, WsOption, WsTrait};
use crate::config::Config;
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
pub(crate) fn run(conn: Connection, handler: &mut dyn WsTrait, shake: WsHandshake) {
    let mut r = Runner::new(conn);
    let reason = match guard(|| handler.on_open(shake)) {
        Ok(option) => {
            r.set_option(option);
            r.serve(handler)
        }
        Err(e) => {
            let _ = r.sender.flush_local();
            r.fail(handler, e);
            None
        }
    };
    guard(|| {
        handler.on_close(&reason);
        Ok(())
    })
    .ok();
    r.finish();
}

struct Runner {
    conn: Connection,
    sender: Sender,
    option: Option<WsOption>,
    next_interval: Option<Instant>,
    /// When we last sent a keepalive ping.
    last_ping: Option<Instant>,
    /// The peer's Close, when the application answers it
    /// (`WsOption::defer_close_reply`), and when it arrived.
    peer_close: Option<(Option<CloseData>, Instant)>,
}

/// While the application owes the peer a Close reply, how often the runner
/// looks whether it has been written (the writer thread cannot wake it).
const DEFERRED_CLOSE_POLL: Duration = Duration::from_millis(5);

impl Runner {
    fn new(conn: Connection) -> Self {
        let sender = conn.sender.clone();
        Runner { conn, sender, option: None, next_interval: None, last_ping: None, peer_close: None }
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
            if let Some((reason, _)) = &self.peer_close {
                if self.conn.write.close_sent().is_some() {
                    return reason.clone();
                }
            }
            let deadline = self.deadline();
            let sender = &self.sender;
            let read = self.conn.read.read(deadline, &mut || sender.flush_local());
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
                if defer && self.conn.write.close_sent().is_none() && self.peer_close.is_none() {
                    self.peer_close = Some((reason.clone(), Instant::now()));
                    guard(|| handler.on_message(OwnedMessage::Close(reason)))?;
                    return Ok(None);
                }
                if self.conn.write.close_sent().is_none() {
                    let reply =
                        reason.as_ref().map(|c| CloseData { status_code: c.status_code, reason: String::new() });
                    self.send_own(OwnedMessage::Close(reply))?;
                }
                self.sender.flush_local()?;
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }

    /// Queues a message of the connection's own (pong, close reply).
    fn send_own(&self, msg: OwnedMessage) -> Result<()> {
        match self.sender.send(msg) {
            Err(Error::Send(_)) => Ok(()),
            other => other,
        }
    }

    /// The nearest of: interval, keepalive ping, idle timeout, close timeout.
    fn deadline(&self) -> Option<Instant> {
        let c = &self.conn.config;
        let last = self.conn.read.last_activity;
        let ping = c.ping_interval.map(|p| self.last_ping.map_or(last, |lp| lp.max(last)) + p);
        let idle = c.idle_timeout.map(|t| last + t);
        let close = self.conn.write.close_sent().map(|at| at + c.close_timeout);
        let owed = self.peer_close.as_ref().map(|_| Instant::now() + DEFERRED_CLOSE_POLL);
        [self.next_interval, ping, idle, close, owed].into_iter().flatten().min()
    }

    fn on_deadline(&mut self, handler: &mut dyn WsTrait) -> Result<()> {
        let now = Instant::now();
        let c = &self.conn.config;
        let last = self.conn.read.last_activity;
        if let Some((reason, at)) = &self.peer_close {
            if now >= *at + c.close_timeout && self.conn.write.close_sent().is_none() {
                debug!("the application did not answer the peer's close in time; answering it");
                let reply = reason.as_ref().map(|c| CloseData { status_code: c.status_code, reason: String::new() });
                self.send_own(OwnedMessage::Close(reply))?;
                // The application's own Close may have won the race: then
                // this one is refused, and the loop ends all the same.
                let _ = self.sender.flush_local();
            }
            // The peer sends nothing after its Close: no idle or keepalive.
            return Ok(());
        }
        if let Some(at) = self.conn.write.close_sent() {
            if now >= at + c.close_timeout {
                return Err(Error::Timeout { phase: "close" });
            }
        }
        if let Some(t) = c.idle_timeout {
            if now >= last + t {
                return Err(Error::Timeout { phase: "idle" });
            }
        }
        if let Some(p) = c.ping_interval {
            let since = self.last_ping.map_or(last, |lp| lp.max(last));
            if now >= since + p {
                self.last_ping = Some(now);
                self.send_own(OwnedMessage::Ping(Vec::new()))?;
            }
        }
        if let Some(due) = self.next_interval {
            if now >= due {
                let mut option = self.option.take();
                guard(|| handler.on_interval(&mut option))?;
                self.set_option(option);
            }
        }
        Ok(())
    }

    /// Reports `err` and closes with its close code where one applies.
    fn fail(&mut self, handler: &mut dyn WsTrait, err: Error) {
        let code = err.close_code();
        match &err {
            Error::Io(_) | Error::Timeout { .. } => debug!("connection ended: {err}"),
            _ => warn!("closing connection: {err}"),
        }
        // Replies to the messages before the fault go out before the Close.
        let _ = self.sender.flush_local();
        if let Some(code) = code {
            if self.conn.write.close_sent().is_none() {
                let text = err.to_string();
                let reason = truncate(&text, 123);
                let _ = self.conn.write.send(OwnedMessage::Close(Some(CloseData::new(code, reason))));
            }
        }
        guard(|| {
            handler.on_error(err);
            Ok(())
        })
        .ok();
    }

    /// Ends the TCP connection the way RFC 6455 §7.1.1 asks: the server
    /// closes first; the client waits for it.
    fn finish(mut self) {
        let _ = self.sender.flush_local();
        self.sender.end();
        let wait = Instant::now() + self.conn.config.close_timeout.min(Duration::from_secs(2));
        if self.conn.role == Role::Server {
            self.conn.write.shutdown(Shutdown::Write);
        }
        self.conn.read.drain_until_eof(wait);
        self.conn.write.shutdown(Shutdown::Both);
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

fn truncate(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

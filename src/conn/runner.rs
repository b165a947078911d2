//! The callback loop: one thread reads, dispatches to a [`WsTrait`], and keeps
//! every deadline (interval, keepalive ping, idle, close) on time.
//!
//! It reads while the connection is `Open` or `CloseSent` (see the
//! [state machine](super::state)). Once the peer's Close is read, the state
//! decides: in `CloseReceived` (the application defers its reply) it waits
//! for that reply; then, as in `Closed`, it calls `on_close` and ends the
//! connection. A failure calls `on_error` first, after the Close with the
//! error's code is sent.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, warn};

use crate::callback::{WsHandshake, WsOption, WsTrait};
use crate::conn::lifecycle::Connection;
use crate::conn::read::Read;
use crate::conn::sender::Sender;
use crate::conn::state::State;
use crate::error::{Error, Result};
use crate::message::{CloseData, OwnedMessage};

/// Runs `handler` on the connection until it ends, however it ends: the
/// handler is told through `on_error` and `on_close`.
///
/// Kept shallow on the stack, since a connection thread's stack pages stay
/// resident once touched: the connection is borrowed (a server keeps it
/// boxed) rather than moved into this frame, and what happens only now and
/// then (a message, a deadline, a failure, the close) runs in frames of its
/// own instead of enlarging the one that waits for the network.
pub(crate) fn run(conn: &mut Connection, handler: &mut dyn WsTrait, shake: Box<WsHandshake>) {
    run_with(conn, handler, shake, &mut |_| {});
}

/// [`run`], calling `opened` with the connection's [`Sender`] once
/// `on_open` has returned (a reconnecting client sends what it queued
/// meanwhile), and returning how the connection ended.
pub(crate) fn run_with(
    conn: &mut Connection,
    handler: &mut dyn WsTrait,
    shake: Box<WsHandshake>,
    opened: &mut dyn FnMut(&Sender),
) -> End {
    let mut r = Runner::new(conn);
    let reason = if r.open(handler, shake) {
        opened(&r.sender);
        r.serve(handler)
    } else {
        None
    };
    r.close(handler, &reason)
}

/// How a connection ended, for a reconnecting client to decide what comes
/// next.
#[derive(Debug, Default)]
pub(crate) struct End {
    /// The peer's Close, if one was read (`Some(None)`: a Close without a
    /// code).
    pub(crate) peer_close: Option<Option<CloseData>>,
    /// The error that ended the connection, if one did (a copy: the
    /// handler's `on_error` had the original).
    pub(crate) error: Option<Error>,
    /// Our Close was written before the peer's arrived, or before the
    /// connection failed: this side ended it.
    pub(crate) ours_first: bool,
}

struct Runner<'c> {
    conn: &'c mut Connection,
    sender: Sender,
    option: Option<WsOption>,
    next_interval: Option<Instant>,
    end: End,
}

/// What the loop does after a message.
enum Flow {
    /// Read the next one.
    Go,
    /// The peer's Close was read, with this reason.
    PeerClosed(Option<CloseData>),
}

impl<'c> Runner<'c> {
    fn new(conn: &'c mut Connection) -> Self {
        let sender = conn.sender();
        Runner { conn, sender, option: None, next_interval: None, end: End::default() }
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
                self.fail(handler, e);
                false
            }
        }
    }

    /// Calls `on_close` and ends the connection; says how it ended.
    #[inline(never)]
    fn close(self, handler: &mut dyn WsTrait, reason: &Option<CloseData>) -> End {
        guard(|| {
            handler.on_close(reason);
            Ok(())
        })
        .ok();
        self.conn.end();
        self.end
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
            let step = match self.conn.next(self.next_interval) {
                // Data messages, most of the traffic, go to the handler
                // from here: `dispatch`'s call and its frame cost a
                // pipelined message 3 % of its instructions.
                Ok(Read::Message(msg @ (OwnedMessage::Text(_) | OwnedMessage::Binary(_)))) => {
                    guard(|| handler.on_message(msg)).map(|()| Flow::Go)
                }
                Ok(Read::Message(msg)) => self.dispatch(handler, msg),
                Ok(Read::Deadline) => self.on_interval(handler).map(|()| Flow::Go),
                Err(e) => Err(e),
            };
            match step {
                Ok(Flow::Go) => {}
                // The state machine decides what the peer's Close means.
                Ok(Flow::PeerClosed(reason)) => {
                    if self.conn.state() == State::CloseReceived {
                        // The application owes the reply.
                        self.conn.await_close_reply(&reason);
                    }
                    return reason;
                }
                Err(e) => {
                    self.fail(handler, e);
                    return None;
                }
            }
        }
    }

    /// Handles one message: the control messages, since `serve` hands
    /// data messages to `on_message` itself (they would be as right here).
    #[inline(never)]
    fn dispatch(&mut self, handler: &mut dyn WsTrait, msg: OwnedMessage) -> Result<Flow> {
        match msg {
            OwnedMessage::Text(_) | OwnedMessage::Binary(_) => guard(|| handler.on_message(msg))?,
            OwnedMessage::Ping(payload) => {
                if let Some(reply) = guard(|| handler.on_ping(payload))? {
                    self.conn.send_own(reply)?;
                }
            }
            OwnedMessage::Pong(payload) => guard(|| {
                handler.on_pong(payload);
                Ok(())
            })?,
            OwnedMessage::Close(reason) => {
                self.end.ours_first = self.conn.state() == State::CloseSent;
                self.end.peer_close = Some(reason.clone());
                let defer = self.option.as_ref().is_some_and(|o| o.defer_close);
                self.conn.peer_closed(&reason, defer)?;
                if self.conn.state() == State::CloseReceived {
                    // Deferred: the application sees the Close and answers it.
                    guard(|| handler.on_message(OwnedMessage::Close(reason.clone())))?;
                }
                return Ok(Flow::PeerClosed(reason));
            }
        }
        Ok(Flow::Go)
    }

    /// The callback interval is due.
    #[inline(never)]
    fn on_interval(&mut self, handler: &mut dyn WsTrait) -> Result<()> {
        let mut option = self.option.take();
        guard(|| handler.on_interval(&mut option))?;
        self.set_option(option);
        Ok(())
    }

    /// Reports `err` and closes with its close code where one applies.
    #[inline(never)]
    fn fail(&mut self, handler: &mut dyn WsTrait, err: Error) {
        self.end.ours_first |= self.conn.state() == State::CloseSent;
        self.end.error = Some(err.duplicate());
        match &err {
            Error::Io(_) | Error::Tls(_) | Error::Timeout { .. } => debug!("connection ended: {err}"),
            _ => warn!("closing connection: {err}"),
        }
        self.conn.fail(&err);
        guard(|| {
            handler.on_error(err);
            Ok(())
        })
        .ok();
    }
}

/// Runs a callback, turning a panic into [`Error::Application`] so that one
/// faulty handler ends only its own connection.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
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

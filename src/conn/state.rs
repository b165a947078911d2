//! The life of one connection after its handshake, as one state machine.
//!
//! ```text
//!             our Close written              peer's Close read
//!   Open ───────────────────────▶ CloseSent ──────────────────┐
//!    │ │                                                      ▼
//!    │ └─ peer's Close read ──▶ CloseReceived ── our Close ─▶ Closed
//!    │                          (reply owed)     written        │
//!    │                                                          │
//!    └─ error (any state before Closed) ──▶ Failed              │
//!                                             │                 │
//!                     End (any state) ────────┴──▶ Ended ◀──────┘
//!                                                   │ Report
//!                                                   ▼
//!                                                Reported
//! ```
//!
//! [`step`] is the whole transition table, pure and tested on its own.
//! [`Life`] holds one connection's state where every thread that touches the
//! connection sees it: the reading thread steps it when a Close arrives, an
//! error ends the connection or the connection is ended; whichever thread
//! writes our Close steps it under the write lock; senders read it without
//! a lock to refuse what can no longer be sent.
//!
//! The protocol decoder keeps a `Done` state of its own: that is the codec's
//! (no frame is decoded after a Close or an error, whoever drives it), not
//! the connection's life, and the connection never asks it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use log::error;

use crate::error::{Error, SendError};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Messages flow both ways.
    Open,
    /// Our Close is written; the peer's reply is awaited, within the close
    /// timeout. Nothing more is sent.
    CloseSent,
    /// The peer's Close arrived first; our reply is owed (at once, or by the
    /// application when it defers the reply). Messages may still be sent
    /// until the reply is written.
    CloseReceived,
    /// Both Closes are exchanged: the close handshake is complete.
    Closed,
    /// An error ended the connection before the close handshake completed
    /// (a protocol violation, an I/O error, a missed deadline).
    Failed,
    /// The connection is over: its writer thread stopped, TCP ended, and
    /// nothing of it is used any more.
    Ended,
    /// The plain API has told its caller that the connection ended
    /// ([`Error::ConnectionClosed`] once; later reads get
    /// `AlreadyClosed`).
    Reported,
}

/// Something that happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Our Close frame was committed to the wire.
    CloseWritten,
    /// The peer's Close frame was read.
    CloseRead,
    /// An error ended the connection.
    Fail,
    /// The driver ended the connection and released what it held.
    End,
    /// The plain API reported the end to its caller.
    Report,
}

/// What an event does in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The connection moves to this state.
    To(State),
    /// Nothing changes, rightly: a second failure, or a failure after the
    /// close handshake completed (e.g. the peer resets TCP while we wait for
    /// its EOF).
    Stay,
    /// The event cannot happen in this state; the drivers guarantee it
    /// never does (see the tests), and it changes nothing.
    Illegal,
}

impl State {
    /// All states, for tests and tables.
    #[cfg(test)]
    pub(crate) const ALL: [State; 7] = [
        State::Open,
        State::CloseSent,
        State::CloseReceived,
        State::Closed,
        State::Failed,
        State::Ended,
        State::Reported,
    ];

    /// Whether the connection has failed or ended: nothing more happens on
    /// it.
    pub(crate) fn is_over(self) -> bool {
        is_over(self as u8)
    }

    /// The error of a send refused in this state (one where nothing may
    /// be sent): our Close went out, or the connection failed or ended.
    pub(crate) fn refusal(self) -> Error {
        match self {
            State::CloseSent | State::Closed => Error::Send(SendError::CloseSent),
            _ => Error::Send(SendError::Closed),
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Open,
            1 => State::CloseSent,
            2 => State::CloseReceived,
            3 => State::Closed,
            4 => State::Failed,
            5 => State::Ended,
            _ => State::Reported,
        }
    }
}

impl Event {
    /// All events, for tests and tables.
    #[cfg(test)]
    pub(crate) const ALL: [Event; 5] = [Event::CloseWritten, Event::CloseRead, Event::Fail, Event::End, Event::Report];
}

/// Whether a message may still be written in the state of this number:
/// before our Close, and nothing after a failure. On the number, as the
/// hot paths read it.
#[inline]
fn may_send(state: u8) -> bool {
    state == State::Open as u8 || state == State::CloseReceived as u8
}

/// [`State::is_over`] of a state's number: `Failed` and the states after it.
#[inline]
fn is_over(state: u8) -> bool {
    state >= State::Failed as u8
}

/// The transition table.
pub(crate) fn step(from: State, event: Event) -> Step {
    use Event as E;
    use State as S;
    match (from, event) {
        (S::Open, E::CloseWritten) => Step::To(S::CloseSent),
        (S::Open, E::CloseRead) => Step::To(S::CloseReceived),
        (S::CloseSent, E::CloseRead) | (S::CloseReceived, E::CloseWritten) => Step::To(S::Closed),
        (S::Open | S::CloseSent | S::CloseReceived, E::Fail) => Step::To(S::Failed),
        (S::Closed | S::Failed | S::Ended | S::Reported, E::Fail) => Step::Stay,
        (S::Open | S::CloseSent | S::CloseReceived | S::Closed | S::Failed, E::End) => Step::To(S::Ended),
        (S::Ended, E::Report) => Step::To(S::Reported),
        (S::Reported, E::Report) => Step::Stay,
        // Our Close is written once (the write side refuses a second, and
        // everything after a failure); the decoder decodes nothing after
        // the peer's Close; a connection ends once; only an ended one is
        // reported.
        (S::CloseSent | S::Closed | S::Failed | S::Ended | S::Reported, E::CloseWritten)
        | (S::CloseReceived | S::Closed | S::Failed | S::Ended | S::Reported, E::CloseRead)
        | (S::Ended | S::Reported, E::End)
        | (S::Open | S::CloseSent | S::CloseReceived | S::Closed | S::Failed, E::Report) => Step::Illegal,
    }
}

/// One connection's state, shared by every thread that uses the connection.
///
/// Transitions happen under a lock (a handful per connection), so that a
/// thread can wait for one; the current state is mirrored in an atomic for
/// the checks on every send, which take no lock.
pub(crate) struct Life {
    now: AtomicU8,
    inner: Mutex<Inner>,
    changed: Condvar,
}

struct Inner {
    state: State,
    /// When our Close was written: the close timeout runs from here.
    close_written: Option<Instant>,
}

impl Life {
    pub(crate) fn new() -> Self {
        let inner = Inner { state: State::Open, close_written: None };
        Life { now: AtomicU8::new(State::Open as u8), inner: Mutex::new(inner), changed: Condvar::new() }
    }

    /// The current state, without a lock.
    pub(crate) fn get(&self) -> State {
        State::from_u8(self.now.load(Ordering::Acquire))
    }

    /// Applies `event` and returns the state after it.
    ///
    /// Out of line: it runs a few times per connection, and inlined it
    /// would enlarge the frames of the write path, whose stack pages every
    /// connection thread keeps.
    #[inline(never)]
    pub(crate) fn apply(&self, event: Event) -> State {
        let mut inner = self.lock();
        match step(inner.state, event) {
            Step::To(next) => {
                if event == Event::CloseWritten {
                    inner.close_written = Some(Instant::now());
                }
                inner.state = next;
                self.now.store(next as u8, Ordering::Release);
                self.changed.notify_all();
            }
            Step::Stay => {}
            Step::Illegal => illegal(inner.state, event),
        }
        inner.state
    }

    /// Whether a message may still be written (before our Close, and
    /// nothing after a failure): checked for every message, without a lock.
    #[inline]
    pub(crate) fn may_send(&self) -> bool {
        may_send(self.now.load(Ordering::Acquire))
    }

    /// Whether the connection failed or ended ([`State::is_over`]).
    #[inline]
    pub(crate) fn is_over(&self) -> bool {
        is_over(self.now.load(Ordering::Acquire))
    }

    /// When our Close was written, if it was and the peer has not answered
    /// yet: the close timeout runs from then.
    #[inline]
    pub(crate) fn awaiting_close_reply(&self) -> Option<Instant> {
        if self.now.load(Ordering::Acquire) != State::CloseSent as u8 {
            return None;
        }
        self.close_written()
    }

    #[inline(never)]
    fn close_written(&self) -> Option<Instant> {
        let inner = self.lock();
        inner.close_written.filter(|_| inner.state == State::CloseSent)
    }

    /// Waits until the state is no longer `state` or `deadline` passes;
    /// returns the state then.
    pub(crate) fn wait_while(&self, state: State, deadline: Instant) -> State {
        let mut inner = self.lock();
        while inner.state == state {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inner = match self.changed.wait_timeout(inner, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        inner.state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cold]
#[inline(never)]
fn illegal(state: State, event: Event) {
    error!("bug: connection event {event:?} in state {state:?} ignored");
}

impl std::fmt::Debug for Life {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Life").field(&self.get()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use State as S;
    use Step::{Illegal as X, Stay as Same};

    /// Every event in every state, written out by hand: the state, the
    /// event, what it does, and its effect on the connection after it: may
    /// a message still be sent, and does the close timeout run (our Close
    /// is out, the peer's reply awaited).
    #[rustfmt::skip]
    const TABLE: [(S, E, Step, bool, bool); 35] = [
        (S::Open,          E::CloseWritten, Step::To(S::CloseSent),     false, true),
        (S::Open,          E::CloseRead,    Step::To(S::CloseReceived), true,  false),
        (S::Open,          E::Fail,         Step::To(S::Failed),        false, false),
        (S::Open,          E::End,          Step::To(S::Ended),         false, false),
        (S::Open,          E::Report,       X,                          true,  false),
        (S::CloseSent,     E::CloseWritten, X,                          false, true),
        (S::CloseSent,     E::CloseRead,    Step::To(S::Closed),        false, false),
        (S::CloseSent,     E::Fail,         Step::To(S::Failed),        false, false),
        (S::CloseSent,     E::End,          Step::To(S::Ended),         false, false),
        (S::CloseSent,     E::Report,       X,                          false, true),
        (S::CloseReceived, E::CloseWritten, Step::To(S::Closed),        false, false),
        (S::CloseReceived, E::CloseRead,    X,                          true,  false),
        (S::CloseReceived, E::Fail,         Step::To(S::Failed),        false, false),
        (S::CloseReceived, E::End,          Step::To(S::Ended),         false, false),
        (S::CloseReceived, E::Report,       X,                          true,  false),
        (S::Closed,        E::CloseWritten, X,                          false, false),
        (S::Closed,        E::CloseRead,    X,                          false, false),
        (S::Closed,        E::Fail,         Same,                       false, false),
        (S::Closed,        E::End,          Step::To(S::Ended),         false, false),
        (S::Closed,        E::Report,       X,                          false, false),
        (S::Failed,        E::CloseWritten, X,                          false, false),
        (S::Failed,        E::CloseRead,    X,                          false, false),
        (S::Failed,        E::Fail,         Same,                       false, false),
        (S::Failed,        E::End,          Step::To(S::Ended),         false, false),
        (S::Failed,        E::Report,       X,                          false, false),
        (S::Ended,         E::CloseWritten, X,                          false, false),
        (S::Ended,         E::CloseRead,    X,                          false, false),
        (S::Ended,         E::Fail,         Same,                       false, false),
        (S::Ended,         E::End,          X,                          false, false),
        (S::Ended,         E::Report,       Step::To(S::Reported),      false, false),
        (S::Reported,      E::CloseWritten, X,                          false, false),
        (S::Reported,      E::CloseRead,    X,                          false, false),
        (S::Reported,      E::Fail,         Same,                       false, false),
        (S::Reported,      E::End,          X,                          false, false),
        (S::Reported,      E::Report,       Same,                       false, false),
    ];

    /// A connection in `state`, reached the way the drivers reach it.
    fn life_in(state: S) -> Life {
        let life = Life::new();
        let path: &[E] = match state {
            S::Open => &[],
            S::CloseSent => &[E::CloseWritten],
            S::CloseReceived => &[E::CloseRead],
            S::Closed => &[E::CloseWritten, E::CloseRead],
            S::Failed => &[E::Fail],
            S::Ended => &[E::Fail, E::End],
            S::Reported => &[E::Fail, E::End, E::Report],
        };
        for &event in path {
            life.apply(event);
        }
        assert_eq!(life.get(), state);
        life
    }

    #[test]
    fn every_event_in_every_state() {
        let mut seen = std::collections::HashSet::new();
        for (state, event, want, may_send, timer) in TABLE {
            assert!(seen.insert((state as u8, event as u8)), "{state:?} {event:?} twice in the table");
            assert_eq!(step(state, event), want, "{event:?} in {state:?}");
            let life = life_in(state);
            let after = life.apply(event);
            let next = match want {
                Step::To(next) => next,
                Step::Stay | Step::Illegal => state,
            };
            assert_eq!((after, life.get()), (next, next), "{event:?} in {state:?}: the state after");
            assert_eq!(life.may_send(), may_send, "{event:?} in {state:?}: may send after");
            assert_eq!(life.awaiting_close_reply().is_some(), timer, "{event:?} in {state:?}: close timer");
        }
        assert_eq!(seen.len(), State::ALL.len() * Event::ALL.len());
    }

    #[test]
    fn the_mirror_decodes_every_state_and_its_quick_checks_agree() {
        for &state in &State::ALL {
            assert_eq!(State::from_u8(state as u8), state);
            let life = life_in(state);
            assert_eq!(life.is_over(), state.is_over(), "{state:?}");
        }
    }

    #[test]
    fn who_may_send_and_when_the_close_timeout_runs() {
        let sendable: Vec<S> = State::ALL.into_iter().filter(|&s| life_in(s).may_send()).collect();
        assert_eq!(sendable, [S::Open, S::CloseReceived]);
        let over: Vec<S> = State::ALL.into_iter().filter(|s| s.is_over()).collect();
        assert_eq!(over, [S::Failed, S::Ended, S::Reported]);

        let life = Life::new();
        assert_eq!(life.awaiting_close_reply(), None);
        life.apply(E::CloseWritten);
        let at = life.awaiting_close_reply().expect("the close timeout runs");
        assert!(at <= Instant::now());
        assert_eq!(life.apply(E::CloseRead), S::Closed);
        assert_eq!(life.awaiting_close_reply(), None, "answered: no close timeout");
    }

    #[test]
    fn a_waiter_wakes_on_a_transition_or_at_its_deadline() {
        let life = std::sync::Arc::new(Life::new());
        life.apply(E::CloseRead);
        let soon = Instant::now() + std::time::Duration::from_millis(10);
        assert_eq!(life.wait_while(S::CloseReceived, soon), S::CloseReceived);
        let other = std::sync::Arc::clone(&life);
        let writer = std::thread::spawn(move || other.apply(E::CloseWritten));
        let later = Instant::now() + std::time::Duration::from_secs(60);
        assert_eq!(life.wait_while(S::CloseReceived, later), S::Closed);
        writer.join().unwrap();
    }
}

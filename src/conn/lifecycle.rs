//! What every connection does the same way, whether driven by callbacks or
//! by plain `read()` calls: keepalive and idle deadlines, the Close frame
//! that reports an error, the reply to a Close, and the end of TCP.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::conn::read::ReadSide;
use crate::conn::write::WriteSide;
use crate::error::{Error, Phase, Result};
use crate::message::{CloseData, OwnedMessage};
use crate::protocol::Role;

/// Keepalive ping, idle timeout and close timeout of one connection.
pub(crate) struct Keepalive {
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    close_timeout: Duration,
    last_ping: Option<Instant>,
}

impl Keepalive {
    pub(crate) fn new(config: &Config) -> Self {
        Keepalive {
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            close_timeout: config.close_timeout,
            last_ping: None,
        }
    }

    /// When the next keepalive ping is due: `ping_interval` after the later
    /// of the peer's last byte and our last ping.
    fn ping_due(&self, last_activity: Instant) -> Option<Instant> {
        let since = self.last_ping.map_or(last_activity, |p| p.max(last_activity));
        self.ping_interval.map(|p| since + p)
    }

    /// The nearest of the keepalive, idle and close deadlines.
    pub(crate) fn next(&self, read: &ReadSide, write: &WriteSide) -> Option<Instant> {
        let idle = self.idle_timeout.map(|t| read.last_activity + t);
        let close = write.close_sent().map(|at| at + self.close_timeout);
        [self.ping_due(read.last_activity), idle, close].into_iter().flatten().min()
    }

    /// Checks the deadlines at `now`: an error when the close reply or the
    /// idle timeout is overdue; `true` when a keepalive ping is due (it is
    /// then counted as sent).
    pub(crate) fn check(&mut self, now: Instant, read: &ReadSide, write: &WriteSide) -> Result<bool> {
        if write.close_sent().is_some_and(|at| now >= at + self.close_timeout) {
            return Err(Error::Timeout { phase: Phase::Close });
        }
        if self.idle_timeout.is_some_and(|t| now >= read.last_activity + t) {
            return Err(Error::Timeout { phase: Phase::Idle });
        }
        if self.ping_due(read.last_activity).is_some_and(|due| now >= due) {
            self.last_ping = Some(now);
            return Ok(true);
        }
        Ok(false)
    }
}

/// The Close frame that tells the peer about `err`, if it has a close code.
pub(crate) fn close_for(err: &Error) -> Option<OwnedMessage> {
    let code = err.close_code()?;
    let text = err.to_string();
    let mut cut = text.len().min(123);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(OwnedMessage::Close(Some(CloseData::new(code, &text[..cut]))))
}

/// The answer to a peer's Close: the same code (RFC 6455 §5.5.1), no reason.
pub(crate) fn close_reply(reason: &Option<CloseData>) -> OwnedMessage {
    OwnedMessage::Close(reason.as_ref().map(|c| CloseData { status_code: c.status_code, reason: String::new() }))
}

/// Ends TCP the way RFC 6455 §7.1.1 asks: a server shuts its write side
/// first; both then wait (bounded) for the peer's EOF, so the last frames
/// are not lost to a reset.
pub(crate) fn end_tcp(role: Role, read: &mut ReadSide, write: &WriteSide, close_timeout: Duration) {
    let wait = Instant::now() + close_timeout.min(Duration::from_secs(2));
    if role == Role::Server {
        write.shutdown(Shutdown::Write);
    }
    read.drain_until_eof(wait);
    write.shutdown(Shutdown::Both);
}

//! Messages as the application sees them, and close codes.

use std::fmt;

/// A complete WebSocket message, or a control frame.
///
/// This is what callbacks receive and what senders send. Payloads are owned,
/// so a message can be moved across threads without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMessage {
    /// A UTF-8 text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A Close frame, with the code and reason if the frame carried them.
    Close(Option<CloseData>),
    /// A Ping control frame (payload of at most 125 bytes).
    Ping(Vec<u8>),
    /// A Pong control frame (payload of at most 125 bytes).
    Pong(Vec<u8>),
}

impl OwnedMessage {
    /// True for Close, Ping and Pong.
    pub fn is_control(&self) -> bool {
        matches!(self, Self::Close(_) | Self::Ping(_) | Self::Pong(_))
    }

    /// True for Text and Binary.
    pub fn is_data(&self) -> bool {
        !self.is_control()
    }

    /// The payload length in bytes as it goes on the wire.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(s) => s.len(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b.len(),
            Self::Close(None) => 0,
            Self::Close(Some(c)) => 2 + c.reason.len(),
        }
    }

    /// True if the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for OwnedMessage {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<&str> for OwnedMessage {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<Vec<u8>> for OwnedMessage {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(b)
    }
}

/// The body of a Close frame: a status code and a UTF-8 reason.
///
/// ```
/// use syncws::{CloseData, CloseCode};
/// let c = CloseData::new(CloseCode::NORMAL, "bye");
/// assert_eq!(c.status_code, 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseData {
    /// The close status code (RFC 6455 §7.4).
    pub status_code: u16,
    /// A human-readable reason; with the code it must fit in 125 bytes.
    pub reason: String,
}

impl CloseData {
    /// A close body with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Self { status_code: code.0, reason: reason.into() }
    }

    /// The status code as a [`CloseCode`].
    pub fn code(&self) -> CloseCode {
        CloseCode(self.status_code)
    }
}

impl fmt::Display for CloseData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.status_code)
        } else {
            write!(f, "{} {}", self.status_code, self.reason)
        }
    }
}

/// A close status code (RFC 6455 §7.4.1), with the registered ones named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: going away (server shutting down, page navigated away, idle).
    pub const AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type that cannot be accepted.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a Close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload inconsistent with the message type (bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const AGAIN: CloseCode = CloseCode(1013);

    /// Whether this code may appear in a Close frame on the wire.
    ///
    /// Allowed: 1000-1003, 1007-1014 and 3000-4999. Not allowed: 0-999,
    /// 1004-1006, 1015, the unassigned 1016-2999, and 5000 and above.
    ///
    /// ```
    /// use syncws::CloseCode;
    /// assert!(CloseCode(1000).is_allowed());
    /// assert!(!CloseCode(1005).is_allowed());
    /// assert!(CloseCode(4000).is_allowed());
    /// ```
    pub fn is_allowed(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(c: u16) -> Self {
        CloseCode(c)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_close_codes() {
        for c in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(c).is_allowed(), "{c}");
        }
        for c in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(c).is_allowed(), "{c}");
        }
    }

    #[test]
    fn message_len_counts_wire_bytes() {
        assert_eq!(OwnedMessage::Close(Some(CloseData::new(CloseCode::NORMAL, "ab"))).len(), 4);
        assert_eq!(OwnedMessage::Text("héllo".into()).len(), 6);
        assert!(OwnedMessage::Close(None).is_empty());
    }
}

//! The one error type of syncws.
//!
//! Every failure, from a malformed frame to a refused handshake, is an
//! [`Error`]. Protocol violations carry the close code RFC 6455 §7.4.1 asks
//! for ([`Error::close_code`]), so the connection layer can tell the peer why
//! it is closing.

use std::fmt;
use std::io;

use crate::handshake::Response;
use crate::message::CloseCode;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
///
/// Match on the variant to decide what to do; [`Error::close_code`] gives the
/// code to send to the peer where one applies.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection was closed cleanly (close handshake done, or the peer
    /// ended the stream between messages). Reading again gives
    /// [`Error::AlreadyClosed`].
    ConnectionClosed,
    /// The connection was used after it had been closed.
    AlreadyClosed,
    /// An I/O error from the underlying stream. With the `tls` feature
    /// this also carries TLS failures (an untrusted certificate, a corrupt
    /// record, an alert from the peer): kind `InvalidData`, with the
    /// `rustls::Error` as the inner error (`tls::rustls_error` finds it).
    Io(io::Error),
    /// A deadline expired; `phase` says which one (`"handshake"`, `"idle"`,
    /// `"write"`, `"close"`, `"connect"`).
    Timeout {
        /// The phase whose deadline expired.
        phase: &'static str,
    },
    /// The peer broke RFC 6455 framing or message rules (close code 1002).
    Protocol(ProtocolError),
    /// A text message or close reason was not valid UTF-8 (close code 1007).
    Utf8,
    /// A frame, message or fragment count went over its configured limit
    /// (close code 1009, or 1008 for too many fragments).
    Capacity {
        /// What was too big (`"frame"`, `"message"`, `"fragments"`, `"head"`,
        /// `"headers"`, `"body"`, `"queue"`).
        what: &'static str,
        /// The size the peer sent or declared.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The HTTP upgrade was malformed or refused. Carries the HTTP status
    /// that was (or should be) answered and a reason.
    Handshake {
        /// HTTP status: 400, 403, 408, 426, 431, 503, ... on the server side;
        /// the status the server answered on the client side.
        status: u16,
        /// A sentence saying what was wrong.
        reason: String,
        /// Client side, for a status other than 101: the server's whole
        /// response, with its headers (`WWW-Authenticate`, `Retry-After`,
        /// `Location`, ...) and body. `None` on the server side. Boxed so
        /// that every `Result` stays small.
        response: Option<Box<Response>>,
    },
    /// A URL could not be used (bad syntax, an unsupported scheme, `wss://`
    /// in a build without the `tls` feature, or a host that is not a valid
    /// TLS server name).
    Url(String),
    /// The outbound queue is full or closed, or the sender was used after the
    /// connection ended.
    Send(&'static str),
    /// A [`Config`](crate::Config) value is out of range.
    Config(String),
    /// The application refused or failed (a callback returned an error, or
    /// panicked); close code 1011.
    Application(String),
}

/// A framing or message-level violation of RFC 6455 (close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An RSV bit was set without a negotiated extension.
    ReservedBits,
    /// The opcode is one of the reserved values.
    ReservedOpcode(u8),
    /// A control frame had more than 125 bytes of payload.
    ControlFrameTooLong,
    /// A control frame had FIN unset.
    FragmentedControlFrame,
    /// A continuation frame arrived with no message in progress.
    UnexpectedContinuation,
    /// A Text or Binary frame arrived while a fragmented message was open.
    ExpectedContinuation,
    /// A client sent an unmasked frame.
    UnmaskedFrame,
    /// A server sent a masked frame.
    MaskedFrame,
    /// A length was not encoded in its minimal form.
    NonMinimalLength,
    /// A 64-bit length had its most significant bit set.
    LengthOverflow,
    /// A Close frame had a 1-byte payload.
    ClosePayloadOneByte,
    /// A Close frame had a code that may not be sent on the wire.
    InvalidCloseCode(u16),
    /// A frame arrived after the peer's Close.
    DataAfterClose,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("reserved bits set without a negotiated extension"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::UnexpectedContinuation => f.write_str("continuation frame without a message in progress"),
            Self::ExpectedContinuation => f.write_str("new data frame inside a fragmented message"),
            Self::UnmaskedFrame => f.write_str("client frame is not masked"),
            Self::MaskedFrame => f.write_str("server frame is masked"),
            Self::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            Self::LengthOverflow => f.write_str("64-bit payload length has its top bit set"),
            Self::ClosePayloadOneByte => f.write_str("close frame with a 1-byte payload"),
            Self::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            Self::DataAfterClose => f.write_str("frame received after close"),
        }
    }
}

impl Error {
    /// The close code to send to the peer for this error, if the connection
    /// is still open enough to send one.
    ///
    /// ```
    /// use syncws::{Error, CloseCode};
    /// assert_eq!(Error::Utf8.close_code(), Some(CloseCode::INVALID_PAYLOAD));
    /// ```
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(_) => Some(CloseCode::PROTOCOL),
            Error::Utf8 => Some(CloseCode::INVALID_PAYLOAD),
            Error::Capacity { what: "fragments", .. } => Some(CloseCode::POLICY),
            Error::Capacity { .. } => Some(CloseCode::TOO_BIG),
            Error::Application(_) => Some(CloseCode::INTERNAL),
            Error::Timeout { phase: "idle" } => Some(CloseCode::AWAY),
            _ => None,
        }
    }

    pub(crate) fn handshake(status: u16, reason: impl Into<String>) -> Error {
        Error::Handshake { status, reason: reason.into(), response: None }
    }

    /// True for the two "connection is over" variants, which are not faults.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::ConnectionClosed | Error::AlreadyClosed)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConnectionClosed => f.write_str("connection closed"),
            Error::AlreadyClosed => f.write_str("connection already closed"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Timeout { phase } => write!(f, "{phase} deadline expired"),
            Error::Protocol(p) => write!(f, "protocol error: {p}"),
            Error::Utf8 => f.write_str("text is not valid utf-8"),
            Error::Capacity { what, size, max } => {
                write!(f, "{what} too large: {size} over the limit of {max}")
            }
            Error::Handshake { status, reason, .. } => {
                write!(f, "handshake failed ({status}): {reason}")
            }
            Error::Url(s) => write!(f, "bad url: {s}"),
            Error::Send(s) => write!(f, "cannot send: {s}"),
            Error::Application(s) => write!(f, "application error: {s}"),
            Error::Config(s) => write!(f, "bad config: {s}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout { phase: "read" },
            _ => Error::Io(e),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(p: ProtocolError) -> Self {
        Error::Protocol(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<Error>() <= 64, "{}", std::mem::size_of::<Error>());
    }

    #[test]
    fn close_codes_follow_rfc_7_4_1() {
        assert_eq!(Error::Protocol(ProtocolError::ReservedBits).close_code(), Some(CloseCode::PROTOCOL));
        assert_eq!(Error::Utf8.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        let big = Error::Capacity { what: "message", size: 10, max: 5 };
        assert_eq!(big.close_code(), Some(CloseCode::TOO_BIG));
        let frags = Error::Capacity { what: "fragments", size: 10, max: 5 };
        assert_eq!(frags.close_code(), Some(CloseCode::POLICY));
        assert_eq!(Error::ConnectionClosed.close_code(), None);
    }
}

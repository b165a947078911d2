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
    /// An I/O error from the underlying stream (the peer reset the
    /// connection, the network went away). Deadlines are [`Error::Timeout`]
    /// and TLS failures [`Error::Tls`], never this.
    Io(io::Error),
    /// A deadline expired; `phase` says which one.
    Timeout {
        /// The phase whose deadline expired.
        phase: Phase,
    },
    /// The peer broke RFC 6455 framing or message rules (close code 1002).
    Protocol(ProtocolError),
    /// A text message or close reason was not valid UTF-8 (close code 1007).
    Utf8,
    /// A size or count went over its configured limit (close code 1009
    /// for a frame or message, 1008 for too many fragments, 1013 for the
    /// process-wide memory budget).
    Capacity {
        /// Which limit.
        what: Limit,
        /// The size the peer sent or declared, or the count reached.
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
    /// A message could not be sent; [`SendError`] says why. The connection
    /// itself is not failed by it (apart from [`SendError::QueueFull`] under
    /// [`QueuePolicy::Close`](crate::QueuePolicy::Close)).
    Send(SendError),
    /// TLS failed (feature `tls`): an untrusted or invalid certificate, a
    /// corrupt record, an alert from the peer. The source
    /// ([`std::error::Error::source`]) is the `rustls::Error`;
    /// `tls::rustls_error` finds it. Its `Display` says, for the common
    /// failures (a CA certificate used as a server's, an unknown issuer, a
    /// name the certificate does not carry, an expired certificate, a
    /// peer that does not speak TLS), what happened and what to do.
    Tls(io::Error),
    /// A proxy on the way to the server could not be reached, refused the
    /// tunnel or broke its protocol ([`ProxyError`] says which). A
    /// deadline that expires while the tunnel is set up is
    /// [`Error::Timeout`] with [`Phase::Proxy`] instead.
    Proxy(ProxyError),
    /// A [`Config`](crate::Config) value is out of range.
    Config(String),
    /// The application refused or failed (a callback returned an error, or
    /// panicked); close code 1011.
    Application(String),
    /// A compressed message (permessage-deflate, feature `deflate`) could
    /// not be inflated: the peer sent data that is not DEFLATE (close code
    /// 1007, as for a payload inconsistent with its message type). The
    /// text says what was wrong.
    Deflate(String),
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
    /// RSV1, which marks a compressed message (permessage-deflate,
    /// RFC 7692 §6), was set on a continuation or control frame: only a
    /// message's first frame may carry it.
    MisplacedRsv1,
}

/// Which limit an [`Error::Capacity`] went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// One frame's payload ([`Config::max_frame_size`](crate::Config::max_frame_size)).
    Frame,
    /// One message, all its fragments together
    /// ([`Config::max_message_size`](crate::Config::max_message_size)).
    Message,
    /// Fragments of one message
    /// ([`Config::max_fragments`](crate::Config::max_fragments)).
    Fragments,
    /// A control frame's payload being sent (125 bytes, RFC 6455 §5.5).
    ControlFrame,
    /// An HTTP head's bytes ([`Config::max_head_size`](crate::Config::max_head_size)).
    Head,
    /// An HTTP head's header count ([`Config::max_headers`](crate::Config::max_headers)).
    Headers,
    /// An HTTP request or response body
    /// ([`Config::max_http_body`](crate::Config::max_http_body)).
    Body,
    /// Live connections of a listener
    /// ([`Config::max_connections`](crate::Config::max_connections)).
    Connections,
    /// Live connections from one IP address
    /// ([`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip)).
    ConnectionsPerIp,
    /// Bytes held by the whole process in partly received messages and
    /// outbound queues ([`Config::memory_budget`](crate::Config::memory_budget)).
    MemoryBudget,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Frame => "frame",
            Limit::Message => "message",
            Limit::Fragments => "fragment count",
            Limit::ControlFrame => "control frame",
            Limit::Head => "http head",
            Limit::Headers => "http header count",
            Limit::Body => "http body",
            Limit::Connections => "connections",
            Limit::ConnectionsPerIp => "connections per ip address",
            Limit::MemoryBudget => "memory held by all connections",
        })
    }
}

/// Which deadline an [`Error::Timeout`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Resolving the server's name and opening the TCP connection
    /// (client), every address tried within the connect deadline
    /// (`ClientBuilder::connect_timeout`).
    Connect,
    /// Setting up a tunnel through a proxy (client): resolving and
    /// connecting to the proxy, then its `CONNECT` or SOCKS5 exchange.
    Proxy,
    /// The TLS and HTTP handshake, on either side, reads and writes
    /// ([`Config::handshake_timeout`](crate::Config::handshake_timeout)).
    Handshake,
    /// Nothing from the peer for [`Config::idle_timeout`](crate::Config::idle_timeout)
    /// (close code 1001).
    Idle,
    /// One write blocked for [`Config::write_timeout`](crate::Config::write_timeout):
    /// the peer stopped reading.
    Write,
    /// No reply to our Close within [`Config::close_timeout`](crate::Config::close_timeout).
    Close,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Proxy => "proxy",
            Phase::Handshake => "handshake",
            Phase::Idle => "idle",
            Phase::Write => "write",
            Phase::Close => "close",
        })
    }
}

/// Why an [`Error::Send`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendError {
    /// The connection has ended (or failed): nothing more can be sent.
    Closed,
    /// A Close frame was already sent: RFC 6455 §5.5.1 allows nothing after it.
    CloseSent,
    /// The outbound queue is full, in messages or in bytes, and
    /// [`Config::queue_policy`](crate::Config::queue_policy) did not wait
    /// (or waited in vain); the message was not sent.
    QueueFull,
    /// The close code may not be sent on the wire (1005, 1006, 1015, or
    /// outside 1000-4999; RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A reconnecting client is between connections and its
    /// [`Offline`](crate::Offline) policy is
    /// [`Fail`](crate::Offline::Fail): the message was not sent, nor
    /// kept. Sending again once
    /// [`ReconnectSender::is_connected`](crate::ReconnectSender::is_connected)
    /// says so may succeed.
    Disconnected,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the connection is closed"),
            SendError::CloseSent => f.write_str("a close frame was already sent"),
            SendError::QueueFull => f.write_str("the outbound queue is full"),
            SendError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent on the wire"),
            SendError::Disconnected => f.write_str("disconnected, and messages are not queued meanwhile"),
        }
    }
}

/// How a proxy between client and server failed, for [`Error::Proxy`].
///
/// A deadline that expires while the tunnel is being set up is not one of
/// these but [`Error::Timeout`] with [`Phase::Proxy`]; a proxy URL that
/// cannot be used is [`Error::Url`].
///
/// ```
/// use syncws::{Error, ProxyError};
/// fn advice(e: &Error) -> &'static str {
///     match e {
///         Error::Proxy(ProxyError::AuthRequired | ProxyError::AuthFailed) => "check the proxy credentials",
///         Error::Proxy(ProxyError::Refused { status: 403, .. }) => "the proxy does not allow this destination",
///         Error::Proxy(_) => "the proxy failed",
///         _ => "not the proxy",
///     }
/// }
/// assert_eq!(advice(&Error::Proxy(ProxyError::AuthRequired)), "check the proxy credentials");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy itself could not be reached (its name does not resolve,
    /// nothing listens there); the text says what the system answered.
    Unreachable(String),
    /// The proxy wants credentials and none were given: an HTTP proxy
    /// answered `407`, or a SOCKS5 proxy accepts only username and
    /// password authentication. Put them in the proxy URL,
    /// `http://user:password@host:port`.
    AuthRequired,
    /// The proxy refused the credentials given: an HTTP proxy answered
    /// `407` (or `401`, as tinyproxy does) to a request that carried them,
    /// or a SOCKS5 proxy failed the username and password (RFC 1929).
    AuthFailed,
    /// An HTTP proxy refused the `CONNECT` with this status, for instance
    /// `403` for a destination or port it does not allow, or `502` for a
    /// server it could not reach.
    Refused {
        /// The HTTP status of the proxy's answer.
        status: u16,
        /// The reason phrase that came with it.
        reason: String,
    },
    /// A SOCKS5 proxy refused the connection with this reply code
    /// (RFC 1928 §6: 1 general failure, 2 not allowed by its rules,
    /// 3 network unreachable, 4 host unreachable, 5 connection refused,
    /// 6 TTL expired, 7 command not supported, 8 address type not
    /// supported).
    SocksRefused {
        /// The reply code, `REP` of RFC 1928 §6.
        reply: u8,
    },
    /// The proxy closed the connection before it finished answering.
    Closed,
    /// The proxy's answer did not follow its protocol (an HTTP proxy that
    /// does not answer HTTP, a SOCKS5 reply with the wrong version); the
    /// text says how.
    BadReply(String),
    /// The proxy asks for something syncws does not do (a SOCKS5
    /// authentication method other than none and username/password).
    Unsupported(String),
}

impl ProxyError {
    /// What a SOCKS5 reply code means (RFC 1928 §6).
    fn socks_reply_meaning(reply: u8) -> &'static str {
        match reply {
            1 => "general failure",
            2 => "connection not allowed by its rules",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused by the destination",
            6 => "ttl expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown reply code",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Unreachable(why) => write!(f, "cannot reach the proxy: {why}"),
            ProxyError::AuthRequired => {
                f.write_str("the proxy requires authentication; give user:password@ in the proxy url")
            }
            ProxyError::AuthFailed => f.write_str("the proxy refused the credentials"),
            ProxyError::Refused { status, reason } => {
                write!(f, "the proxy refused to connect: {status} {reason}")
            }
            ProxyError::SocksRefused { reply } => {
                write!(
                    f,
                    "the socks5 proxy refused to connect: {} (reply {reply})",
                    ProxyError::socks_reply_meaning(*reply)
                )
            }
            ProxyError::Closed => f.write_str("the proxy closed the connection before answering"),
            ProxyError::BadReply(why) => write!(f, "the proxy's answer is malformed: {why}"),
            ProxyError::Unsupported(why) => write!(f, "unsupported by syncws: {why}"),
        }
    }
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
            Self::MisplacedRsv1 => f.write_str("rsv1 (compressed) set on a continuation or control frame"),
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
            Error::Utf8 | Error::Deflate(_) => Some(CloseCode::INVALID_PAYLOAD),
            Error::Capacity { what: Limit::Fragments, .. } => Some(CloseCode::POLICY),
            Error::Capacity { what: Limit::MemoryBudget, .. } => Some(CloseCode::AGAIN),
            Error::Capacity { .. } => Some(CloseCode::TOO_BIG),
            Error::Application(_) => Some(CloseCode::INTERNAL),
            Error::Timeout { phase: Phase::Idle } => Some(CloseCode::AWAY),
            _ => None,
        }
    }

    pub(crate) fn handshake(status: u16, reason: impl Into<String>) -> Error {
        Error::Handshake { status, reason: reason.into(), response: None }
    }

    /// An I/O error met during `phase`: a timeout becomes
    /// [`Error::Timeout`] for that phase, a TLS failure [`Error::Tls`],
    /// anything else [`Error::Io`].
    pub(crate) fn from_io(e: io::Error, phase: Phase) -> Error {
        if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
            return Error::Timeout { phase };
        }
        Error::from(e)
    }

    /// An error equal to this one, for code that must both hand an error
    /// on and keep it (a reconnecting client reports the error that
    /// ended a connection to `on_error`, and keeps it to decide what
    /// next). I/O and TLS errors keep their kind and message, not their
    /// source.
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            Error::ConnectionClosed => Error::ConnectionClosed,
            Error::AlreadyClosed => Error::AlreadyClosed,
            Error::Io(e) => Error::Io(io(e)),
            Error::Timeout { phase } => Error::Timeout { phase: *phase },
            Error::Protocol(p) => Error::Protocol(*p),
            Error::Utf8 => Error::Utf8,
            Error::Capacity { what, size, max } => Error::Capacity { what: *what, size: *size, max: *max },
            Error::Handshake { status, reason, response } => {
                Error::Handshake { status: *status, reason: reason.clone(), response: response.clone() }
            }
            Error::Url(s) => Error::Url(s.clone()),
            Error::Send(why) => Error::Send(*why),
            Error::Tls(e) => {
                // The rustls error is kept (it is Clone), so the copy
                // still says what to do and `tls::rustls_error` finds it.
                #[cfg(feature = "tls")]
                if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return Error::Tls(io::Error::new(e.kind(), inner.clone()));
                }
                Error::Tls(io(e))
            }
            Error::Proxy(p) => Error::Proxy(p.clone()),
            Error::Config(s) => Error::Config(s.clone()),
            Error::Application(s) => Error::Application(s.clone()),
            Error::Deflate(s) => Error::Deflate(s.clone()),
        }
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
            Error::Tls(e) => {
                // The common failures (an untrusted or CA certificate, a
                // wrong name, a plaintext peer) say what to do.
                #[cfg(feature = "tls")]
                if let Some(advice) =
                    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).and_then(crate::tls::advice)
                {
                    return write!(f, "tls: {advice}");
                }
                write!(f, "tls: {e}")
            }
            Error::Proxy(e) => write!(f, "proxy: {e}"),
            Error::Protocol(p) => write!(f, "protocol error: {p}"),
            Error::Utf8 => f.write_str("text is not valid utf-8"),
            Error::Capacity { what, size, max } => {
                write!(f, "{what} too large: {size} over the limit of {max}")
            }
            Error::Handshake { status, reason, .. } => {
                write!(f, "handshake failed ({status}): {reason}")
            }
            Error::Url(s) => write!(f, "bad url: {s}"),
            Error::Send(why) => write!(f, "cannot send: {why}"),
            Error::Application(s) => write!(f, "application error: {s}"),
            Error::Config(s) => write!(f, "bad config: {s}"),
            Error::Deflate(s) => write!(f, "permessage-deflate: {s}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Tls(e) => e.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

/// An I/O error with no deadline of syncws's behind it. A TLS failure
/// (a `rustls::Error` inside, feature `tls`) becomes [`Error::Tls`]; where a
/// deadline may have fired, syncws converts with the phase instead, so a
/// timeout is always [`Error::Timeout`] with the phase that expired.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        #[cfg(feature = "tls")]
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return Error::Tls(e);
        }
        Error::Io(e)
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
        assert_eq!(Error::Deflate("x".into()).close_code(), Some(CloseCode::INVALID_PAYLOAD));
        assert_eq!(Error::Protocol(ProtocolError::MisplacedRsv1).close_code(), Some(CloseCode::PROTOCOL));
        let big = Error::Capacity { what: Limit::Message, size: 10, max: 5 };
        assert_eq!(big.close_code(), Some(CloseCode::TOO_BIG));
        let frags = Error::Capacity { what: Limit::Fragments, size: 10, max: 5 };
        assert_eq!(frags.close_code(), Some(CloseCode::POLICY));
        let budget = Error::Capacity { what: Limit::MemoryBudget, size: 10, max: 5 };
        assert_eq!(budget.close_code(), Some(CloseCode::AGAIN));
        assert_eq!(Error::Timeout { phase: Phase::Idle }.close_code(), Some(CloseCode::AWAY));
        assert_eq!(Error::Timeout { phase: Phase::Write }.close_code(), None);
        assert_eq!(Error::ConnectionClosed.close_code(), None);
    }

    #[test]
    fn messages_read_as_sentences() {
        let e = Error::Capacity { what: Limit::ConnectionsPerIp, size: 8, max: 8 };
        assert_eq!(e.to_string(), "connections per ip address too large: 8 over the limit of 8");
        assert_eq!(Error::Timeout { phase: Phase::Handshake }.to_string(), "handshake deadline expired");
        assert_eq!(Error::Send(SendError::QueueFull).to_string(), "cannot send: the outbound queue is full");
        let proxy = Error::Proxy(ProxyError::Refused { status: 403, reason: "Forbidden".into() });
        assert_eq!(proxy.to_string(), "proxy: the proxy refused to connect: 403 Forbidden");
        let socks = Error::Proxy(ProxyError::SocksRefused { reply: 5 });
        assert_eq!(
            socks.to_string(),
            "proxy: the socks5 proxy refused to connect: connection refused by the destination (reply 5)"
        );
    }

    #[test]
    fn timeouts_get_their_phase_and_other_io_errors_stay_io() {
        let timed_out = io::Error::from(io::ErrorKind::WouldBlock);
        assert!(matches!(Error::from_io(timed_out, Phase::Write), Error::Timeout { phase: Phase::Write }));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(Error::from_io(reset, Phase::Write), Error::Io(_)));
    }
}

//! Proxies for the client: HTTP `CONNECT` and SOCKS5, given by URL or read
//! from the environment the way curl reads it.
//!
//! - [`Proxy`]: a parsed proxy URL, `http://`, `socks5://` or `socks5h://`,
//!   with optional `user:password@` credentials; given to
//!   [`ClientBuilder::proxy`](crate::ClientBuilder::proxy).
//! - [`ProxyEnv`]: `http_proxy`, `https_proxy`, `all_proxy` and `no_proxy`
//!   as curl reads them; the library reads them only when asked
//!   ([`ClientBuilder::proxy_from_env`](crate::ClientBuilder::proxy_from_env)).
//!
//! Whatever the proxy, it only carries bytes: for a `wss://` URL the TLS
//! session is between the client and the server, through the tunnel, and
//! the server's certificate is checked against the URL's host as without a
//! proxy. Proxies spoken to over TLS (`https://` proxy URLs) are not
//! supported.
//!
//! ```no_run
//! let client = syncws::Client::builder()
//!     .url("wss://echo.example.com/")?
//!     .proxy("socks5h://127.0.0.1:1080")?
//!     .connect()?;
//! # Ok::<(), syncws::Error>(())
//! ```
//!
//! # Deadline and errors
//!
//! The tunnel is set up within the client's connect deadline
//! ([`ClientBuilder::connect_timeout`](crate::ClientBuilder::connect_timeout)),
//! which also covers the TLS and WebSocket handshakes that follow: a proxy
//! that stalls, or drips its answer a byte at a time, gives
//! [`Error::Timeout`] with [`Phase::Proxy`]. A proxy
//! that cannot be reached, refuses, wants credentials or answers nonsense
//! gives [`Error::Proxy`] with a [`ProxyError`] saying which. Nothing the
//! proxy sends can make the client allocate more than
//! [`Config::max_head_size`](crate::Config::max_head_size).
//!
//! # The protocols
//!
//! - HTTP: `CONNECT host:port HTTP/1.1` with `Host` and, given
//!   credentials, `Proxy-Authorization: Basic`. Any 2xx opens the tunnel;
//!   407 (and 401) is [`ProxyError::AuthRequired`] or
//!   [`ProxyError::AuthFailed`]; any other status is
//!   [`ProxyError::Refused`].
//! - SOCKS5 (RFC 1928): the methods "no authentication" and, given
//!   credentials, "username/password" (RFC 1929); then `CONNECT`. With
//!   `socks5://` the client resolves the server's name and sends the
//!   address; with `socks5h://` it sends the name and the proxy resolves
//!   it (what a proxy to a private network needs).
//!
//! The message encoding and decoding are plain functions over bytes in the
//! submodules, unit-tested without sockets; the exchange over the socket
//! is a few reads and writes, each bounded by the deadline.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv6Addr, TcpStream};
use std::time::Instant;

use crate::client::connect::{connect_any, remaining, resolve};
use crate::config::Config;
use crate::error::{Error, Phase, ProxyError, Result};

mod env;
mod http;
mod socks5;

pub use env::ProxyEnv;

/// The protocol spoken to a [`Proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// An HTTP proxy, tunnelling with `CONNECT` (`http://`).
    Http,
    /// A SOCKS5 proxy, given the server's address, which the client
    /// resolved (`socks5://`).
    Socks5,
    /// A SOCKS5 proxy, given the server's name, which the proxy resolves
    /// (`socks5h://`).
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// A user name and password for a proxy, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

/// A proxy to tunnel through: its protocol, address and credentials.
///
/// Written as a URL, `scheme://[user[:password]@]host[:port]`, with the
/// scheme `http`, `socks5` or `socks5h` (a URL without a scheme is
/// `http://`, as for curl), and port 1080 when none is given (curl's
/// default for every kind). Credentials may be percent-encoded (`%40` for
/// `@`). [`Display`](fmt::Display) and [`Debug`] never show the password.
///
/// ```
/// use syncws::proxy::{Proxy, ProxyKind};
/// let proxy = Proxy::parse("socks5h://alice:s%40cret@[::1]:9050").unwrap();
/// assert_eq!((proxy.kind(), proxy.host(), proxy.port()), (ProxyKind::Socks5h, "::1", 9050));
/// assert_eq!(proxy.user(), Some("alice"));
/// assert_eq!(proxy.to_string(), "socks5h://alice@[::1]:9050");
///
/// let proxy = Proxy::parse("proxy.corp:3128").unwrap();
/// assert_eq!(proxy.to_string(), "http://proxy.corp:3128");
/// assert!(Proxy::parse("https://proxy.corp").is_err()); // TLS to the proxy: not supported
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

/// The port of a proxy URL that gives none, as curl has it.
const DEFAULT_PORT: u16 = 1080;

impl Proxy {
    /// Parses a proxy URL (see [`Proxy`]).
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for an unsupported scheme (`https`, `socks4`, ...),
    /// an empty or invalid host, a bad port, a path other than `/`, a
    /// query or fragment, credentials that are not UTF-8 once decoded, or
    /// SOCKS5 credentials over 255 bytes (RFC 1929's limit). The message
    /// never contains the password.
    pub fn parse(url: &str) -> Result<Proxy> {
        let bad = |why: &str| Err(Error::Url(format!("proxy url: {why}")));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("contains spaces or control characters");
        }
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "https" => {
                return bad(
                    "https:// proxies (TLS to the proxy) are not supported; use http://, socks5:// or socks5h://",
                )
            }
            _ => return bad("unsupported scheme; use http://, socks5:// or socks5h://"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return bad("a proxy url has no path, query or fragment");
        }
        // The last `@` ends the credentials: a password may hold a raw `@`.
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        let credentials = match userinfo {
            None => None,
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let (Some(user), Some(password)) = (percent_decode(user), percent_decode(password)) else {
                    return bad("the credentials are not valid percent-encoded UTF-8");
                };
                if kind != ProxyKind::Http && (user.len() > 255 || password.len() > 255) {
                    return bad("socks5 user names and passwords are at most 255 bytes");
                }
                Some(Credentials { user, password })
            }
        };
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((v6, after)) = inner.split_once(']') else {
                return bad("IPv6 address has no closing ]");
            };
            if v6.parse::<Ipv6Addr>().is_err() {
                return bad("invalid IPv6 address");
            }
            match after {
                "" => (v6, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => return bad("unexpected characters after the IPv6 address"),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return bad("no host");
        }
        if !host.contains(':') && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
            return bad("invalid character in the host");
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return bad("invalid port"),
            },
        };
        Ok(Proxy { kind, host: host.to_ascii_lowercase(), port, credentials })
    }

    /// The protocol spoken to the proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host name or address (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name of the credentials, if the URL gave any.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// Opens a connection to the proxy and a tunnel through it to
    /// `host:port` (an IPv6 host without brackets), all before `deadline`.
    /// Returns the connection, carrying the tunnel's bytes from here on.
    pub(crate) fn tunnel(&self, host: &str, port: u16, deadline: Instant, config: &Config) -> Result<TcpStream> {
        let addrs = resolve(&self.host, self.port, deadline, Phase::Proxy).map_err(|e| match e {
            Error::Io(e) => Error::Proxy(ProxyError::Unreachable(e.to_string())),
            Error::Url(why) => Error::Proxy(ProxyError::Unreachable(why)),
            e => e,
        })?;
        let mut stream = connect_any(&addrs, deadline, Phase::Proxy)?;
        let mut io = Exchange { stream: &mut stream, deadline };
        match self.kind {
            ProxyKind::Http => http::connect(&mut io, host, port, self.credentials.as_ref(), config)?,
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                let target = if self.kind == ProxyKind::Socks5h || host.parse::<std::net::IpAddr>().is_ok() {
                    socks5::Target::parse(host)
                } else {
                    // The name is resolved here; the first address goes to
                    // the proxy, as curl does.
                    let addrs = resolve(host, port, deadline, Phase::Proxy)?;
                    socks5::Target::Ip(addrs[0].ip())
                };
                socks5::connect(&mut io, &target, port, self.credentials.as_ref())?;
            }
        }
        // The socket's timeouts belong to whoever uses the tunnel next.
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        Ok(stream)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(user) = self.user() {
            write!(f, "{}@", percent_encode(user))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user())
            .field("password", &self.credentials.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes what cannot stand in a URL's user name.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The socket to the proxy while the tunnel is set up: every read and
/// write bounded by the deadline, timeouts reported with
/// [`Phase::Proxy`], the proxy's hang-up as [`ProxyError::Closed`].
pub(crate) struct Exchange<'a, S> {
    pub(crate) stream: &'a mut S,
    pub(crate) deadline: Instant,
}

/// The timeouts of a socket, for [`Exchange`].
pub(crate) trait Timed: Read + Write {
    fn set_timeouts(&mut self, timeout: std::time::Duration) -> io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&mut self, timeout: std::time::Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl<S: Timed> Exchange<'_, S> {
    /// Writes all of `bytes`.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            self.stream.set_timeouts(remaining(self.deadline, Phase::Proxy)?).map_err(fail)?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(Error::Proxy(ProxyError::Closed)),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted || crate::transport::is_timeout(&e) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }

    /// Fills `buf` exactly.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut at = 0;
        while at < buf.len() {
            match self.read(&mut buf[at..])? {
                0 => return Err(Error::Proxy(ProxyError::Closed)),
                n => at += n,
            }
        }
        Ok(())
    }

    /// One read into `buf`; 0 at the proxy's end of stream.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            self.stream.set_timeouts(remaining(self.deadline, Phase::Proxy)?).map_err(fail)?;
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted || crate::transport::is_timeout(&e) => {}
                Err(e) => return Err(fail(e)),
            }
        }
    }
}

/// An I/O error while talking to the proxy: its hang-up is
/// [`ProxyError::Closed`], anything else stays an I/O error.
fn fail(e: io::Error) -> Error {
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Error::Proxy(ProxyError::Closed),
        _ => Error::from_io(e, Phase::Proxy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Proxy {
        Proxy::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> String {
        match Proxy::parse(url) {
            Err(Error::Url(why)) => why,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls_of_each_kind() {
        let p = parse("http://127.0.0.1:3128");
        assert_eq!((p.kind(), p.host(), p.port(), p.user()), (ProxyKind::Http, "127.0.0.1", 3128, None));
        let p = parse("SOCKS5://Proxy.Example");
        assert_eq!((p.kind(), p.host(), p.port()), (ProxyKind::Socks5, "proxy.example", 1080));
        let p = parse("socks5h://[::1]:1081/");
        assert_eq!((p.kind(), p.host(), p.port()), (ProxyKind::Socks5h, "::1", 1081));
        let p = parse("localhost:8080");
        assert_eq!((p.kind(), p.host(), p.port()), (ProxyKind::Http, "localhost", 8080));
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let p = parse("http://al%20ice:p%3Ass@wo@rd@proxy:3128");
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("al ice", "p:ss@wo@rd"));
        assert_eq!(p.to_string(), "http://al%20ice@proxy:3128");
        let debug = format!("{p:?}");
        assert!(!debug.contains("wo@rd") && debug.contains("<hidden>"), "{debug}");
        let p = parse("socks5://bob@proxy");
        assert_eq!(p.credentials.as_ref().unwrap().password, "");
    }

    #[test]
    fn unusable_urls_say_why_without_the_password() {
        assert!(refused("https://proxy").contains("not supported"));
        assert!(refused("socks4://proxy").contains("unsupported scheme"));
        assert!(refused("http://proxy:0").contains("invalid port"));
        assert!(refused("http://proxy:99999").contains("invalid port"));
        assert!(refused("http://proxy/path").contains("no path"));
        assert!(refused("http://").contains("no host"));
        assert!(refused("http://[::1").contains("closing ]"));
        assert!(refused("http://pro xy").contains("spaces"));
        assert!(refused("http://u:%zz@proxy").contains("percent"));
        let long = format!("socks5://u:{}@proxy", "x".repeat(256));
        let why = refused(&long);
        assert!(why.contains("255") && !why.contains("xxx"), "{why}");
        // An HTTP proxy has no such limit.
        parse(&format!("http://u:{}@proxy", "x".repeat(256)));
    }
}

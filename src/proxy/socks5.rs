//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929):
//! the client's messages and the checks of the proxy's replies, as plain
//! functions over bytes, then the exchange that strings them together.
//!
//! ```text
//! client                                   proxy
//!   05 n methods...            ──▶                        greeting
//!                              ◀──  05 method             choice
//!   01 ulen user plen pass     ──▶                        (method 02 only)
//!                              ◀──  01 status             0 = accepted
//!   05 01 00 atyp addr port    ──▶                        CONNECT
//!                              ◀──  05 rep 00 atyp addr port
//! ```

use std::net::IpAddr;

use super::{Credentials, Exchange, Timed};
use crate::error::{Error, ProxyError, Result};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;

/// Where the proxy is to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An address (`socks5://`, or an IP literal in the URL).
    Ip(IpAddr),
    /// A name for the proxy to resolve (`socks5h://`).
    Domain(String),
}

impl Target {
    /// An IP literal (without brackets) as an address, anything else as a
    /// name.
    pub(crate) fn parse(host: &str) -> Target {
        match host.parse::<IpAddr>() {
            Ok(ip) => Target::Ip(ip),
            Err(_) => Target::Domain(host.to_owned()),
        }
    }
}

/// The authentication method the proxy chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    NoAuth,
    Password,
}

fn bad(why: String) -> Error {
    Error::Proxy(ProxyError::BadReply(why))
}

/// The greeting: the methods offered, "no authentication" and, with
/// credentials, "username/password".
pub(crate) fn greeting(with_password: bool) -> Vec<u8> {
    if with_password {
        vec![VERSION, 2, NO_AUTH, PASSWORD]
    } else {
        vec![VERSION, 1, NO_AUTH]
    }
}

/// The proxy's choice of method, given what was offered.
pub(crate) fn check_choice(reply: [u8; 2], offered_password: bool) -> Result<Method> {
    let [version, method] = reply;
    if version != VERSION {
        return Err(bad(format!("version {version} where a socks5 proxy answers 5 (is it a socks5 proxy?)")));
    }
    match method {
        NO_AUTH => Ok(Method::NoAuth),
        PASSWORD if offered_password => Ok(Method::Password),
        NO_ACCEPTABLE if offered_password => Err(Error::Proxy(ProxyError::Unsupported(
            "the socks5 proxy accepts neither no authentication nor username/password".into(),
        ))),
        // Most likely it wants the credentials that were not given.
        NO_ACCEPTABLE => Err(Error::Proxy(ProxyError::AuthRequired)),
        other => Err(bad(format!("it chose authentication method {other}, which was not offered"))),
    }
}

/// The username/password request of RFC 1929 (lengths were checked when
/// the proxy URL was parsed; checked again here).
pub(crate) fn password_request(credentials: &Credentials) -> Result<Vec<u8>> {
    let (user, password) = (credentials.user.as_bytes(), credentials.password.as_bytes());
    let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(password.len())) else {
        return Err(Error::Url("proxy url: socks5 user names and passwords are at most 255 bytes".into()));
    };
    let mut out = Vec::with_capacity(3 + user.len() + password.len());
    out.extend_from_slice(&[1, ulen]);
    out.extend_from_slice(user);
    out.push(plen);
    out.extend_from_slice(password);
    Ok(out)
}

/// The proxy's verdict on the credentials. RFC 1929 has the version 1;
/// some proxies answer 5, which is accepted too.
pub(crate) fn check_password_reply(reply: [u8; 2]) -> Result<()> {
    match reply {
        [1 | 5, 0] => Ok(()),
        [1 | 5, _] => Err(Error::Proxy(ProxyError::AuthFailed)),
        [version, _] => Err(bad(format!("version {version} in the answer to the credentials, where 1 was expected"))),
    }
}

/// The `CONNECT` request for `target:port`.
pub(crate) fn connect_request(target: &Target, port: u16) -> Result<Vec<u8>> {
    let mut out = vec![VERSION, CONNECT, 0];
    match target {
        Target::Ip(IpAddr::V4(ip)) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&ip.octets());
        }
        Target::Ip(IpAddr::V6(ip)) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&ip.octets());
        }
        Target::Domain(name) => {
            let len = u8::try_from(name.len())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::Url(format!("a socks5 proxy takes host names of 1 to 255 bytes: {name:?}")))?;
            out.extend_from_slice(&[ATYP_DOMAIN, len]);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// The first two bytes of the reply to `CONNECT`: the version, and the
/// reply code (0 succeeded).
pub(crate) fn check_reply_start(start: [u8; 2]) -> Result<()> {
    match start {
        [VERSION, 0] => Ok(()),
        [VERSION, reply] => Err(Error::Proxy(ProxyError::SocksRefused { reply })),
        [version, _] => Err(bad(format!("version {version} in the reply to CONNECT, where 5 was expected"))),
    }
}

/// From the next three bytes of the reply (reserved, address type, the
/// address's first byte), how many bytes of it remain: the rest of the
/// bound address and the port.
pub(crate) fn reply_rest(next: [u8; 3]) -> Result<usize> {
    let [_reserved, atyp, first] = next;
    match atyp {
        ATYP_V4 => Ok(4 - 1 + 2),
        ATYP_V6 => Ok(16 - 1 + 2),
        // `first` is the name's length.
        ATYP_DOMAIN => Ok(usize::from(first) + 2),
        other => Err(bad(format!("address type {other} in the reply to CONNECT"))),
    }
}

/// Runs the exchange: greeting, credentials if asked, `CONNECT`. Returns
/// once the tunnel is open.
pub(crate) fn connect<S: Timed>(
    io: &mut Exchange<'_, S>,
    target: &Target,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<()> {
    // Refuse a bad name before anything goes on the wire.
    let request = connect_request(target, port)?;
    io.write_all(&greeting(credentials.is_some()))?;
    let mut two = [0u8; 2];
    io.read_exact(&mut two)?;
    if check_choice(two, credentials.is_some())? == Method::Password {
        if let Some(c) = credentials {
            io.write_all(&password_request(c)?)?;
            io.read_exact(&mut two)?;
            check_password_reply(two)?;
        }
    }
    io.write_all(&request)?;
    io.read_exact(&mut two)?;
    check_reply_start(two)?;
    let mut three = [0u8; 3];
    io.read_exact(&mut three)?;
    // At most 256 bytes (a name's length byte, the name, the port): read
    // and dropped, as curl does; the bound address is of no use here.
    let mut rest = vec![0u8; reply_rest(three)?];
    io.read_exact(&mut rest)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Cursor, Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::proxy::Timed;

    fn proxy_error(r: Result<impl std::fmt::Debug>) -> ProxyError {
        match r {
            Err(Error::Proxy(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn greetings_offer_password_only_with_credentials() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
    }

    #[test]
    fn method_choices() {
        assert_eq!(check_choice([5, 0], false).unwrap(), Method::NoAuth);
        assert_eq!(check_choice([5, 0], true).unwrap(), Method::NoAuth);
        assert_eq!(check_choice([5, 2], true).unwrap(), Method::Password);
        assert_eq!(proxy_error(check_choice([5, 0xff], false)), ProxyError::AuthRequired);
        assert!(matches!(proxy_error(check_choice([5, 0xff], true)), ProxyError::Unsupported(_)));
        match proxy_error(check_choice([5, 2], false)) {
            ProxyError::BadReply(why) => assert_eq!(why, "it chose authentication method 2, which was not offered"),
            other => panic!("{other:?}"),
        }
        // An HTTP proxy answering a SOCKS greeting: "HT".
        match proxy_error(check_choice(*b"HT", false)) {
            ProxyError::BadReply(why) => assert!(why.starts_with("version 72 where"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn password_messages_follow_rfc_1929() {
        let c = Credentials { user: "bob".into(), password: "pw".into() };
        assert_eq!(password_request(&c).unwrap(), b"\x01\x03bob\x02pw");
        let empty = Credentials { user: "bob".into(), password: String::new() };
        assert_eq!(password_request(&empty).unwrap(), b"\x01\x03bob\x00");
        let long = Credentials { user: "u".repeat(256), password: String::new() };
        assert!(matches!(password_request(&long), Err(Error::Url(_))));
        check_password_reply([1, 0]).unwrap();
        check_password_reply([5, 0]).unwrap();
        assert_eq!(proxy_error(check_password_reply([1, 1])), ProxyError::AuthFailed);
        assert!(matches!(proxy_error(check_password_reply([0, 0])), ProxyError::BadReply(_)));
    }

    #[test]
    fn connect_requests_for_each_address_type() {
        let v4 = Target::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(connect_request(&v4, 8080).unwrap(), [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);
        let v6 = Target::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let mut want = vec![5, 1, 0, 4];
        want.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(&[0, 80]);
        assert_eq!(connect_request(&v6, 80).unwrap(), want);
        assert_eq!(connect_request(&Target::parse("ab.c"), 443).unwrap(), b"\x05\x01\x00\x03\x04ab.c\x01\xbb");
        assert_eq!(Target::parse("::1"), v6);
        assert!(matches!(connect_request(&Target::Domain("a".repeat(256)), 1), Err(Error::Url(_))));
    }

    #[test]
    fn replies_and_their_lengths() {
        check_reply_start([5, 0]).unwrap();
        assert_eq!(proxy_error(check_reply_start([5, 5])), ProxyError::SocksRefused { reply: 5 });
        assert!(matches!(proxy_error(check_reply_start([4, 0x5a])), ProxyError::BadReply(_)));
        assert_eq!(reply_rest([0, 1, 10]).unwrap(), 5);
        assert_eq!(reply_rest([0, 4, 0]).unwrap(), 17);
        assert_eq!(reply_rest([0, 3, 9]).unwrap(), 11);
        assert!(matches!(proxy_error(reply_rest([0, 2, 0])), ProxyError::BadReply(_)));
    }

    /// A scripted proxy in memory: what it answers, and what it was sent.
    struct Script {
        answer: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Timed for Script {
        fn set_timeouts(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(answer: &[u8], target: &Target, credentials: Option<&Credentials>) -> (Result<()>, Vec<u8>) {
        let mut script = Script { answer: Cursor::new(answer.to_vec()), sent: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        let result = connect(&mut Exchange { stream: &mut script, deadline }, target, 443, credentials);
        (result, script.sent)
    }

    #[test]
    fn whole_exchanges() {
        let c = Credentials { user: "bob".into(), password: "pw".into() };
        let name = Target::parse("example.com");
        let answer = b"\x05\x02\x01\x00\x05\x00\x00\x03\x04host\x00\x50";
        let (result, sent) = run(answer, &name, Some(&c));
        result.unwrap();
        assert_eq!(sent, b"\x05\x02\x00\x02\x01\x03bob\x02pw\x05\x01\x00\x03\x0bexample.com\x01\xbb");

        // Refused by the proxy, and a proxy that hangs up mid-reply.
        let (result, _) = run(b"\x05\x00\x05\x02", &name, None);
        assert_eq!(proxy_error(result), ProxyError::SocksRefused { reply: 2 });
        let (result, _) = run(b"\x05\x00\x05\x00\x00\x01\x7f", &name, None);
        assert_eq!(proxy_error(result), ProxyError::Closed);
    }
}

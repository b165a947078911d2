//! HTTP `CONNECT` (RFC 9110 §9.3.6): the request, and what the proxy's
//! answer means.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Credentials, Exchange, Timed};
use crate::config::Config;
use crate::error::{Error, ProxyError, Result};
use crate::handshake::Response;

/// The `CONNECT` request for `host:port` (an IPv6 host without brackets;
/// they are added), with `Proxy-Authorization: Basic` if credentials are
/// given.
pub(crate) fn request(host: &str, port: u16, credentials: Option<&Credentials>) -> Vec<u8> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut out = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = credentials {
        let token = STANDARD.encode(format!("{}:{}", c.user, c.password));
        out.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    out.push_str(concat!("User-Agent: syncws/", env!("CARGO_PKG_VERSION"), "\r\n\r\n"));
    out.into_bytes()
}

/// Reads the proxy's answer from the start of `buf`: `Ok(None)` while the
/// head is incomplete, `Ok(Some(len))` for a 2xx whose head is `len`
/// bytes (the tunnel is open), or the error the answer means.
/// `sent_credentials` tells a refusal of the credentials from a demand for
/// them.
pub(crate) fn check_answer(buf: &[u8], config: &Config, sent_credentials: bool) -> Result<Option<usize>> {
    let (response, len) = match Response::parse(buf, config) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(Error::Handshake { reason, .. }) => return Err(bad(format!("not an HTTP answer ({reason})"))),
        Err(Error::Capacity { what, max, .. }) => return Err(bad(format!("its {what} is over the limit of {max}"))),
        Err(e) => return Err(e),
    };
    match response.status {
        200..=299 => Ok(Some(len)),
        // 407 is the standard answer; tinyproxy answers 401 to credentials
        // it refuses.
        401 | 407 if sent_credentials => Err(Error::Proxy(ProxyError::AuthFailed)),
        407 => Err(Error::Proxy(ProxyError::AuthRequired)),
        status => Err(Error::Proxy(ProxyError::Refused { status, reason: response.reason })),
    }
}

fn bad(why: String) -> Error {
    Error::Proxy(ProxyError::BadReply(why))
}

/// Sends `CONNECT` and reads the answer; returns once the tunnel is open.
pub(crate) fn connect<S: Timed>(
    io: &mut Exchange<'_, S>,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
    config: &Config,
) -> Result<()> {
    io.write_all(&request(host, port, credentials))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = io.read(&mut chunk)?;
        if n == 0 {
            return Err(Error::Proxy(ProxyError::Closed));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(len) = check_answer(&buf, config, credentials.is_some())? {
            // The server speaks only after the client, so a proxy that
            // sends more than its head is not relaying what the server
            // said: refuse rather than guess where the tunnel starts.
            if buf.len() > len {
                let extra = buf.len() - len;
                return Err(bad(format!("{extra} bytes came after its 2xx head, before the client sent any")));
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials { user: "Aladdin".into(), password: "open sesame".into() }
    }

    #[test]
    fn requests_name_the_target_and_carry_basic_credentials() {
        let plain = String::from_utf8(request("example.com", 443, None)).unwrap();
        assert!(plain.starts_with("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"), "{plain}");
        assert!(plain.ends_with("\r\n\r\n") && !plain.contains("Proxy-Authorization"));
        // RFC 7617 §2's example credentials.
        let auth = String::from_utf8(request("::1", 80, Some(&creds()))).unwrap();
        assert!(auth.starts_with("CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n"), "{auth}");
        assert!(auth.contains("\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"), "{auth}");
    }

    #[test]
    fn answers_and_what_they_mean() {
        let config = Config::default();
        let check = |bytes: &[u8], sent| check_answer(bytes, &config, sent);
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        assert_eq!(check(ok, false).unwrap(), Some(ok.len()));
        assert_eq!(check(b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\n", true).unwrap(), Some(27));
        assert_eq!(check(&ok[..20], false).unwrap(), None);
        let proxy_err = |bytes: &[u8], sent| match check(bytes, sent) {
            Err(Error::Proxy(e)) => e,
            other => panic!("{other:?}"),
        };
        let demand = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n";
        assert_eq!(proxy_err(demand, false), ProxyError::AuthRequired);
        assert_eq!(proxy_err(demand, true), ProxyError::AuthFailed);
        assert_eq!(proxy_err(b"HTTP/1.0 401 Unauthorized\r\n\r\n", true), ProxyError::AuthFailed);
        assert_eq!(
            proxy_err(b"HTTP/1.1 403 Access violation\r\n\r\n", false),
            ProxyError::Refused { status: 403, reason: "Access violation".into() }
        );
        match proxy_err(b"SSH-2.0-OpenSSH_9.2\r\n", false) {
            ProxyError::BadReply(why) => assert!(why.starts_with("not an HTTP answer"), "{why}"),
            other => panic!("{other:?}"),
        }
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
        match proxy_err(&huge, false) {
            ProxyError::BadReply(why) => assert!(why.contains("http head is over the limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

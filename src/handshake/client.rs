//! The client side of the upgrade (RFC 6455 §4.1): URLs, the request, and
//! checking the server's answer.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv6Addr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::accept::check_101;
use super::http::{Headers, Request, Response};
use crate::error::{Error, Result};

/// A parsed `ws://`, `wss://` or `ws+unix://` URL.
///
/// ```
/// use syncws::handshake::WsUrl;
/// let url = WsUrl::parse("ws://[::1]:9001/echo?x=1").unwrap();
/// assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("::1", 9001, "/echo?x=1"));
/// assert_eq!(url.socket_addr_string(), "[::1]:9001");
///
/// // A Unix socket, then the request path after the first `:`.
/// let url = WsUrl::parse("ws+unix:///run/app.sock:/chat").unwrap();
/// assert_eq!(url.unix_socket.as_deref(), Some("/run/app.sock".as_ref()));
/// assert_eq!((url.host_header().as_str(), url.path.as_str()), ("localhost", "/chat"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// True for `wss://`. Refusing to speak plaintext to such a URL is the
    /// caller's job.
    pub secure: bool,
    /// The host name or address, lower-cased, without the brackets of an
    /// IPv6 literal; `localhost` for a `ws+unix://` URL.
    pub host: String,
    /// The port: the one given, or 80 for `ws` and 443 for `wss`; 80 for a
    /// `ws+unix://` URL (unused: the socket path says where to connect).
    pub port: u16,
    /// The path and query, `/` if the URL has none. Non-ASCII bytes are
    /// percent-encoded.
    pub path: String,
    /// For a `ws+unix://` URL, the Unix socket to connect to (an absolute
    /// path); `None` for `ws://` and `wss://`.
    pub unix_socket: Option<std::path::PathBuf>,
}

/// The scheme of WebSocket over a Unix socket.
const UNIX_SCHEME: &str = "ws+unix";

impl WsUrl {
    /// Parses a `ws://`, `wss://` or `ws+unix://` URL.
    ///
    /// A `ws+unix://` URL is written as websocat and Node's `ws` write it:
    /// `ws+unix://` then the socket's absolute path, then optionally `:`
    /// and the request path, as in `ws+unix:///run/app.sock:/chat?room=1`.
    /// The socket path ends at the first `:` (or at a `?`, whose query then
    /// goes to the request path `/`), so it cannot contain one; without a
    /// request path the request is for `/`. The `Host` header is
    /// `localhost`.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for another scheme, an empty host, a bad port, user
    /// information (`user@`), a fragment (`#`), whitespace or control
    /// characters, or a host that is not a DNS name or IP literal; for a
    /// `ws+unix://` URL, a socket path that is not absolute (it needs three
    /// slashes: `ws+unix:///tmp/x.sock`) or is empty.
    pub fn parse(url: &str) -> Result<WsUrl> {
        let bad = |why: &str| Err(Error::Url(format!("{why}: {url:?}")));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("URL contains spaces or control characters");
        }
        if url.contains('#') {
            return bad("WebSocket URLs cannot have a fragment (#)");
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return bad("URL has no scheme, expected ws://, wss:// or ws+unix://");
        };
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else if scheme.eq_ignore_ascii_case(UNIX_SCHEME) {
            return WsUrl::parse_unix(url, rest);
        } else {
            return bad("unsupported scheme, expected ws://, wss:// or ws+unix://");
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return bad("user information (user@) is not supported in WebSocket URLs");
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((v6, after)) = inner.split_once(']') else {
                return bad("IPv6 address has no closing ]");
            };
            if v6.parse::<Ipv6Addr>().is_err() {
                return bad("invalid IPv6 address");
            }
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return bad("unexpected characters after IPv6 address"),
            };
            (v6.to_ascii_lowercase(), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if host.is_empty() {
                return bad("URL has an empty host");
            }
            if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return bad("invalid character in host (IPv6 needs brackets, IDNs need punycode)");
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return bad("invalid port"),
            },
        };
        Ok(WsUrl { secure, host, port, path: request_path(path), unix_socket: None })
    }

    /// The rest of a `ws+unix://` URL: the socket's absolute path, then
    /// `:` and the request path.
    fn parse_unix(url: &str, rest: &str) -> Result<WsUrl> {
        let bad = |why: &str| Err(Error::Url(format!("{why}: {url:?}")));
        if !rest.starts_with('/') {
            return bad(
                "ws+unix:// needs an absolute socket path, with three slashes: ws+unix:///path/to.sock:/request/path",
            );
        }
        let (socket, path) = match rest.find([':', '?']) {
            Some(i) if rest.as_bytes()[i] == b':' => (&rest[..i], &rest[i + 1..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if socket.trim_matches('/').is_empty() {
            return bad("ws+unix:// URL has no socket path");
        }
        Ok(WsUrl {
            secure: false,
            host: "localhost".to_owned(),
            port: 80,
            path: request_path(path),
            unix_socket: Some(socket.into()),
        })
    }

    fn default_port(&self) -> u16 {
        if self.secure {
            443
        } else {
            80
        }
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The `Host` header value: the host, bracketed if IPv6, with the port
    /// unless it is the scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.default_port() {
            self.bracketed_host()
        } else {
            format!("{}:{}", self.bracketed_host(), self.port)
        }
    }

    /// `host:port` (IPv6 bracketed), for
    /// [`ToSocketAddrs`](std::net::ToSocketAddrs); meaningless for a
    /// `ws+unix://` URL, whose address is
    /// [`unix_socket`](WsUrl::unix_socket).
    pub fn socket_addr_string(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(socket) = &self.unix_socket {
            return write!(f, "{UNIX_SCHEME}://{}:{}", socket.display(), self.path);
        }
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// The request path of a URL: `/` in front if missing, non-ASCII bytes
/// percent-encoded.
fn request_path(path: &str) -> String {
    let mut full_path = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        full_path.push('/');
    }
    for b in path.bytes() {
        if b.is_ascii() {
            full_path.push(char::from(b));
        } else {
            full_path.push_str(&format!("%{b:02X}"));
        }
    }
    full_path
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64.
///
/// The bytes come from the OS (`getrandom`). Should it fail, they come from
/// std's randomly seeded hasher instead: the key is a nonce that proves the
/// server understood the upgrade, not a secret.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = getrandom::getrandom(&mut bytes) {
        log::warn!("OS randomness failed ({e}); using std's hasher seed for the handshake key");
        let state = RandomState::new();
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut h = state.build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    STANDARD.encode(bytes)
}

/// Headers of the upgrade that only [`build_request`] may set.
const RESERVED: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// The upgrade request for `url`: `GET` of its path with `Host`,
/// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Key`,
/// `Sec-WebSocket-Version: 13` and, if `protocols` is not empty,
/// `Sec-WebSocket-Protocol` listing them (they must be HTTP tokens).
///
/// `extra_headers` follow. `Host` and `Origin` among them replace the
/// default; the upgrade headers above (and `Sec-WebSocket-Extensions`,
/// since syncws negotiates none) cannot be set this way and are skipped
/// with a warning in the log; any other header is appended.
pub fn build_request(url: &WsUrl, key: &str, protocols: &[String], extra_headers: &Headers) -> Request {
    let mut req = Request::new("GET", url.path.clone());
    let h = &mut req.headers;
    h.append("Host", url.host_header());
    h.append("Upgrade", "websocket");
    h.append("Connection", "Upgrade");
    h.append("Sec-WebSocket-Key", key);
    h.append("Sec-WebSocket-Version", "13");
    if !protocols.is_empty() {
        h.append("Sec-WebSocket-Protocol", protocols.join(", "));
    }
    for (name, value) in extra_headers.iter() {
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            log::warn!("header {name} is set by the handshake; the extra one is ignored");
        } else if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("origin") {
            h.insert(name, value);
        } else {
            h.append(name, value);
        }
    }
    req
}

/// Checks the server's answer to an upgrade sent with `key` and
/// `protocols`, and returns the subprotocol the server chose, if any.
///
/// # Errors
///
/// [`Error::Handshake`] with the server's status: for a status other than
/// 101 the reason is `server answered {status} {reason}` and `response` is
/// `resp` (the caller reads the body after the head into `resp.body` first,
/// see [`Response::content_length`]). A 101 is refused if it lacks
/// `Upgrade: websocket` or `Connection: Upgrade`, if
/// `Sec-WebSocket-Accept` does not match the key, if it chose a subprotocol
/// that was not offered (or several), or if it negotiated an extension.
pub fn check_response(resp: &Response, key: &str, protocols: &[String]) -> Result<Option<String>> {
    if resp.status != 101 {
        return Err(Error::Handshake {
            status: resp.status,
            reason: format!("server answered {} {}", resp.status, resp.reason),
            response: Some(Box::new(resp.clone())),
        });
    }
    let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
    check_101(resp, key, &offered)
        .map_err(|why| Error::handshake(resp.status, format!("the server's 101 answer is invalid: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::handshake::accept::accept_key;
    use crate::handshake::server;

    #[test]
    fn url_table() {
        // (input, secure, host, port, path, host header, socket addr)
        let good: &[(&str, bool, &str, u16, &str, &str, &str)] = &[
            ("ws://localhost", false, "localhost", 80, "/", "localhost", "localhost:80"),
            ("ws://localhost/", false, "localhost", 80, "/", "localhost", "localhost:80"),
            ("wss://Example.COM", true, "example.com", 443, "/", "example.com", "example.com:443"),
            ("WS://h:8081/chat", false, "h", 8081, "/chat", "h:8081", "h:8081"),
            ("ws://h:80/a/b?c=d&e", false, "h", 80, "/a/b?c=d&e", "h", "h:80"),
            ("ws://h?x=1", false, "h", 80, "/?x=1", "h", "h:80"),
            ("wss://h:80/", true, "h", 80, "/", "h:80", "h:80"),
            ("ws://127.0.0.1:9001", false, "127.0.0.1", 9001, "/", "127.0.0.1:9001", "127.0.0.1:9001"),
            ("ws://[::1]:9001/x", false, "::1", 9001, "/x", "[::1]:9001", "[::1]:9001"),
            ("wss://[2001:DB8::1]/", true, "2001:db8::1", 443, "/", "[2001:db8::1]", "[2001:db8::1]:443"),
            ("ws://h/caf\u{e9}", false, "h", 80, "/caf%C3%A9", "h", "h:80"),
        ];
        for &(input, secure, host, port, path, hh, sa) in good {
            let url = WsUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url, WsUrl { secure, host: host.into(), port, path: path.into(), unix_socket: None }, "{input}");
            assert_eq!(url.host_header(), hh, "{input}");
            assert_eq!(url.socket_addr_string(), sa, "{input}");
            assert_eq!(WsUrl::parse(&url.to_string()).unwrap(), url, "{input}");
        }
        let bad = [
            "",
            "localhost:8080",
            "http://example.com",
            "https://example.com",
            "ftp://x",
            "ws://",
            "ws:///path",
            "ws://:80/",
            "ws://h:/",
            "ws://h:0/",
            "ws://h:65536/",
            "ws://h:-1/",
            "ws://h:+80/",
            "ws://h:80x/",
            "ws://user:pw@h/",
            "ws://h/#frag",
            "ws://h/a b",
            "ws://h /",
            "ws://h/\r\nX: y",
            "ws://::1/",
            "ws://[::1/",
            "ws://[::1]x/",
            "ws://[nothex]/",
            "ws://[]/",
            "ws://h\u{e9}/",
            "ws://a\\b/",
        ];
        for input in bad {
            match WsUrl::parse(input) {
                Err(Error::Url(msg)) => assert!(!msg.is_empty()),
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unix_url_table() {
        // (input, socket path, request path)
        let good: &[(&str, &str, &str)] = &[
            ("ws+unix:///tmp/x.sock:/chat", "/tmp/x.sock", "/chat"),
            ("WS+UNIX:///tmp/x.sock:/chat", "/tmp/x.sock", "/chat"),
            ("ws+unix:///tmp/x.sock", "/tmp/x.sock", "/"),
            ("ws+unix:///tmp/x.sock:", "/tmp/x.sock", "/"),
            ("ws+unix:///tmp/x.sock:/", "/tmp/x.sock", "/"),
            ("ws+unix:///tmp/x.sock:chat", "/tmp/x.sock", "/chat"),
            ("ws+unix:///tmp/x.sock:/a/b?c=d&e", "/tmp/x.sock", "/a/b?c=d&e"),
            ("ws+unix:///tmp/x.sock?room=1", "/tmp/x.sock", "/?room=1"),
            ("ws+unix:///tmp/x.sock:/a:b", "/tmp/x.sock", "/a:b"),
            ("ws+unix:///run/user/1000/app@1.sock:/x", "/run/user/1000/app@1.sock", "/x"),
            ("ws+unix:///tmp/caf\u{e9}.sock:/caf\u{e9}", "/tmp/caf\u{e9}.sock", "/caf%C3%A9"),
        ];
        for &(input, socket, path) in good {
            let url = WsUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let want = WsUrl {
                secure: false,
                host: "localhost".into(),
                port: 80,
                path: path.into(),
                unix_socket: Some(socket.into()),
            };
            assert_eq!(url, want, "{input}");
            assert_eq!(url.host_header(), "localhost", "{input}");
            assert_eq!(WsUrl::parse(&url.to_string()).unwrap(), url, "{input} printed as {url}");
        }
        assert_eq!(WsUrl::parse("ws+unix:///tmp/x.sock").unwrap().to_string(), "ws+unix:///tmp/x.sock:/");

        // (input, what the error must say)
        let bad: &[(&str, &str)] = &[
            ("ws+unix://tmp/x.sock:/chat", "absolute"),
            ("ws+unix://x.sock", "absolute"),
            ("ws+unix://./x.sock:/", "absolute"),
            ("ws+unix://", "absolute"),
            ("ws+unix:///", "no socket path"),
            ("ws+unix:///:/chat", "no socket path"),
            ("ws+unix:///tmp/x.sock:/a#b", "fragment"),
            ("ws+unix:///tmp/my x.sock", "spaces"),
            ("wss+unix:///tmp/x.sock", "scheme"),
            ("unix:///tmp/x.sock", "scheme"),
        ];
        for (input, want) in bad {
            match WsUrl::parse(input) {
                Err(Error::Url(msg)) => assert!(msg.contains(want), "{input:?}: {msg} should mention {want}"),
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unix_request_has_host_localhost() {
        let url = WsUrl::parse("ws+unix:///tmp/x.sock:/chat?room=1").unwrap();
        let req = build_request(&url, &generate_key(), &[], &Headers::new());
        assert_eq!(req.path, "/chat?room=1");
        assert_eq!(req.header("host"), Some("localhost"));
        server::validate_upgrade(&req).unwrap();
    }

    #[test]
    fn keys_are_random_16_bytes() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 16);
    }

    fn offered() -> Vec<String> {
        vec!["chat".into(), "superchat".into()]
    }

    #[test]
    fn build_request_round_trips_and_validates() {
        let url = WsUrl::parse("ws://[::1]:9001/echo?a=1").unwrap();
        let key = generate_key();
        let mut extra = Headers::new();
        extra.append("Origin", "http://example.com");
        extra.append("Sec-WebSocket-Key", "evil");
        extra.append("Upgrade", "h2c");
        extra.append("Authorization", "Bearer x");
        extra.append("X-Evil", "a\r\nInjected: yes");
        let req = build_request(&url, &key, &offered(), &extra);
        let mut out = Vec::new();
        req.write_to(&mut out);
        out.extend_from_slice(b"\x81\x85");
        let (parsed, len) = Request::parse(&out, &Config::default()).unwrap().unwrap();
        assert_eq!(len, out.len() - 2);
        assert_eq!(parsed, without_injection(&req));
        assert_eq!(parsed.path, "/echo?a=1");
        assert_eq!(parsed.header("host"), Some("[::1]:9001"));
        assert_eq!(parsed.header("origin"), Some("http://example.com"));
        assert_eq!(parsed.header("authorization"), Some("Bearer x"));
        assert_eq!(parsed.header("injected"), None);
        assert_eq!(parsed.headers.get_all("sec-websocket-key").count(), 1);
        assert_eq!(parsed.protocols(), ["chat", "superchat"]);
        server::validate_upgrade(&parsed).unwrap();

        // And the server's answer passes the client's check.
        let resp = Response::new(101).with_header("Sec-WebSocket-Protocol", "superchat");
        let resp = server::finish_response(&parsed, resp).unwrap();
        let mut out = Vec::new();
        resp.write_to(&mut out);
        let (resp, _) = Response::parse(&out, &Config::default()).unwrap().unwrap();
        assert_eq!(check_response(&resp, &key, &offered()).unwrap().as_deref(), Some("superchat"));

        // Host can be overridden; no protocols means no header.
        let mut extra = Headers::new();
        extra.append("host", "example.com");
        let req = build_request(&url, &key, &[], &extra);
        assert_eq!(req.headers.get_all("host").collect::<Vec<_>>(), ["example.com"]);
        assert_eq!(req.header("sec-websocket-protocol"), None);
    }

    /// The request as it reads back after `write_to` turned CR/LF into spaces.
    fn without_injection(req: &Request) -> Request {
        let mut r = req.clone();
        r.headers = Headers::new();
        for (n, v) in req.headers.iter() {
            r.headers.append(n, v.replace(['\r', '\n'], " "));
        }
        r
    }

    fn good_response(key: &str) -> Response {
        Response::new(101)
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Accept", accept_key(key))
    }

    #[test]
    fn check_response_table() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert_eq!(check_response(&good_response(key), key, &[]).unwrap(), None);
        assert_eq!(check_response(&good_response(key), key, &offered()).unwrap(), None);
        let lower =
            good_response(key).with_header("upgrade", "WebSocket").with_header("connection", "keep-alive, upgrade");
        assert_eq!(check_response(&lower, key, &[]).unwrap(), None);
        let chosen = good_response(key).with_header("Sec-WebSocket-Protocol", "chat");
        assert_eq!(check_response(&chosen, key, &offered()).unwrap().as_deref(), Some("chat"));

        let without = |name: &str| {
            let mut r = good_response(key);
            r.headers.remove(name);
            r
        };
        let proto = |p: &str| good_response(key).with_header("Sec-WebSocket-Protocol", p);
        let cases: Vec<(Response, Vec<String>, &str)> = vec![
            (good_response("AAAAAAAAAAAAAAAAAAAAAA=="), offered(), "does not match"),
            (without("sec-websocket-accept"), vec![], "does not match"),
            (good_response(key).with_header("Sec-WebSocket-Accept", "x"), vec![], "does not match"),
            (without("upgrade"), vec![], "Upgrade"),
            (good_response(key).with_header("Upgrade", "h2c"), vec![], "Upgrade"),
            (without("connection"), vec![], "Connection"),
            (good_response(key).with_header("Connection", "close"), vec![], "Connection"),
            (proto("chat"), vec![], "not offered"),
            (proto("mqtt"), offered(), "not offered"),
            (proto("chat, superchat"), offered(), "not offered"),
            (proto("CHAT"), offered(), "not offered"),
            (good_response(key).with_header("Sec-WebSocket-Extensions", "permessage-deflate"), vec![], "extension"),
        ];
        for (resp, protocols, want) in &cases {
            match check_response(resp, key, protocols) {
                Err(Error::Handshake { status: 101, reason, .. }) => {
                    assert!(reason.contains(want), "{reason} should mention {want}")
                }
                other => panic!("{resp:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn refusal_carries_status_and_body() {
        let raw = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nWWW-Authenticate: Basic\r\n\r\nno thanks";
        let (mut resp, len) = Response::parse(raw, &Config::default()).unwrap().unwrap();
        assert_eq!(resp.content_length().unwrap(), Some(9));
        resp.body = raw[len..].to_vec();
        match check_response(&resp, "k", &[]) {
            Err(Error::Handshake { status, reason, response: Some(resp) }) => {
                assert_eq!(status, 403);
                assert_eq!(reason, "server answered 403 Forbidden");
                assert_eq!(resp.body, b"no thanks");
                assert_eq!(resp.header("www-authenticate"), Some("Basic"));
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The server side of the upgrade (RFC 6455 §4.2).
//!
//! The connection layer runs, in order: [`Request::parse`], then
//! [`validate_upgrade`] and [`check_origin`], then the application's
//! `on_request` hook (whose default is [`build_response`]), then
//! [`finish_response`] on what the hook returned. Any error becomes the
//! answer given by [`refusal`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::accept::{accept_key, check_101};
use super::http::{Request, Response};
use crate::config::OriginPolicy;
use crate::error::{Error, Limit, Result};

/// Checks that `req` is a valid WebSocket upgrade request (RFC 6455
/// §4.2.1).
///
/// # Errors
///
/// [`Error::Handshake`] with the status to answer:
/// - 405 for a method other than `GET`;
/// - 400 for HTTP/1.0, a missing or repeated `Host`, a missing
///   `Upgrade: websocket` or `Connection: Upgrade` token, a missing
///   `Sec-WebSocket-Version`, or a `Sec-WebSocket-Key` that is missing,
///   repeated or not 16 bytes in base64;
/// - 426 for a `Sec-WebSocket-Version` other than 13 ([`refusal`] then adds
///   `Sec-WebSocket-Version: 13`).
pub fn validate_upgrade(req: &Request) -> Result<()> {
    let bad = |reason: &str| Err(Error::handshake(400, reason));
    if req.method != "GET" {
        let reason = format!("method {} cannot open a WebSocket, use GET", req.method);
        return Err(Error::handshake(405, reason));
    }
    if req.version != 1 {
        return bad("a WebSocket upgrade needs HTTP/1.1");
    }
    match req.headers.get_all("host").count() {
        0 => return bad("missing Host header"),
        1 => {}
        _ => return bad("several Host headers"),
    }
    if !req.headers.contains_token("upgrade", "websocket") {
        return bad("missing Upgrade: websocket");
    }
    if !req.headers.contains_token("connection", "upgrade") {
        return bad("missing Connection: Upgrade");
    }
    let versions: Vec<&str> = req.headers.get_all("sec-websocket-version").collect();
    match versions.as_slice() {
        [] => return bad("missing Sec-WebSocket-Version"),
        [v] if v.trim() == "13" => {}
        _ => {
            let reason = format!("unsupported Sec-WebSocket-Version {:?}, only 13 is supported", versions.join(", "));
            return Err(Error::handshake(426, reason));
        }
    }
    client_key(req).map(|_| ())
}

/// The request's `Sec-WebSocket-Key`, checked: present once, 16 bytes in
/// base64.
fn client_key(req: &Request) -> Result<&str> {
    let mut keys = req.headers.get_all("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.trim(),
        (None, _) => return Err(Error::handshake(400, "missing Sec-WebSocket-Key")),
        (Some(_), Some(_)) => return Err(Error::handshake(400, "several Sec-WebSocket-Key headers")),
    };
    match STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 16 => Ok(key),
        _ => Err(Error::handshake(400, "Sec-WebSocket-Key is not 16 bytes in base64")),
    }
}

/// Validates `req` and builds the `101 Switching Protocols` answer, with
/// `Upgrade`, `Connection` and `Sec-WebSocket-Accept`.
///
/// It never chooses a subprotocol: an application that wants one adds a
/// `Sec-WebSocket-Protocol` header, naming one of
/// [`Request::protocols`], to the response.
///
/// # Errors
///
/// As [`validate_upgrade`].
pub fn build_response(req: &Request) -> Result<Response> {
    validate_upgrade(req)?;
    let key = client_key(req)?;
    Ok(Response::new(101)
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade")
        .with_header("Sec-WebSocket-Accept", accept_key(key)))
}

/// The HTTP response that refuses a handshake because of `err`: its status,
/// the reason as a plain-text body, and `Connection: close`.
///
/// [`Error::Handshake`] gives its own status (with
/// `Sec-WebSocket-Version: 13` for 426 and `Allow: GET` for 405);
/// [`Error::Capacity`] gives 413 for a body and 431 otherwise;
/// [`Error::Timeout`] gives 408; anything else 500.
pub fn refusal(err: &Error) -> Response {
    let status = match err {
        Error::Handshake { status, .. } => *status,
        Error::Capacity { what: Limit::Body, .. } => 413,
        Error::Capacity { .. } => 431,
        Error::Timeout { .. } => 408,
        _ => 500,
    };
    let text = match err {
        Error::Handshake { reason, .. } => format!("{reason}\n"),
        other => format!("{other}\n"),
    };
    let mut resp = Response::text(status, &text).with_header("Connection", "close");
    match status {
        426 => resp = resp.with_header("Sec-WebSocket-Version", "13"),
        405 => resp = resp.with_header("Allow", "GET"),
        _ => {}
    }
    resp
}

/// Completes what the application's `on_request` hook returned for `req`.
///
/// A response other than 101 is a refusal chosen by the application and is
/// returned unchanged. A 101 gets `Upgrade: websocket`,
/// `Connection: Upgrade` and `Sec-WebSocket-Accept` if it lacks them, and
/// is then checked with [`check_response`].
///
/// # Errors
///
/// As [`check_response`], and as [`validate_upgrade`] for a request whose
/// key is unusable.
pub fn finish_response(req: &Request, mut resp: Response) -> Result<Response> {
    if resp.status != 101 {
        return Ok(resp);
    }
    if resp.headers.get("upgrade").is_none() {
        resp.headers.insert("Upgrade", "websocket");
    }
    if resp.headers.get("connection").is_none() {
        resp.headers.insert("Connection", "Upgrade");
    }
    if resp.headers.get("sec-websocket-accept").is_none() {
        let key = client_key(req)?;
        resp.headers.insert("Sec-WebSocket-Accept", accept_key(key));
    }
    check_response(req, &resp)?;
    Ok(resp)
}

/// Checks that `resp` is a valid 101 answer to `req`: `Upgrade: websocket`,
/// `Connection: Upgrade`, the right `Sec-WebSocket-Accept`, at most one
/// `Sec-WebSocket-Protocol` that the client offered, and no
/// `Sec-WebSocket-Extensions` (syncws negotiates none).
///
/// # Errors
///
/// [`Error::Handshake`] with status 500 (the application built a response
/// the client would reject), or 400 if the request has no usable key.
pub fn check_response(req: &Request, resp: &Response) -> Result<()> {
    let key = client_key(req)?;
    match check_101(resp, key, &req.protocols()) {
        Ok(_) => Ok(()),
        Err(why) => Err(Error::handshake(500, format!("the application's 101 answer is invalid: {why}"))),
    }
}

/// Checks the request's `Origin` header against `policy`.
///
/// A request without `Origin` (not from a browser) passes every policy.
/// [`OriginPolicy::SameHost`] compares the host and port of the origin with
/// the `Host` header, case-insensitively and ignoring the default port of
/// the origin's scheme; `Origin: null` never matches it.
/// [`OriginPolicy::AllowList`] compares the whole origin with each entry,
/// case-insensitively and ignoring a trailing `/`.
///
/// # Errors
///
/// [`Error::Handshake`] with status 403 when the origin is not allowed (or
/// the request carries several `Origin` headers). Its reason, which
/// [`refusal`] makes the 403's body, names the origin and says how to
/// allow it.
pub fn check_origin(req: &Request, policy: &OriginPolicy) -> Result<()> {
    let mut origins = req.headers.get_all("origin");
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return Ok(()),
        (Some(o), None) => o.trim(),
        (Some(_), Some(_)) => return Err(Error::handshake(403, "several Origin headers")),
    };
    let allowed = match policy {
        OriginPolicy::Any => true,
        OriginPolicy::SameHost => same_host(origin, req.header("host").unwrap_or("")),
        OriginPolicy::AllowList(list) => {
            let origin = origin.trim_end_matches('/');
            list.iter().any(|entry| entry.trim().trim_end_matches('/').eq_ignore_ascii_case(origin))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::handshake(403, origin_refusal(origin, req.header("host").unwrap_or(""), policy)))
    }
}

/// Why `origin` was refused, and what to do about it: the 403's body is
/// often the first place a newcomer meets the Origin check (a page served
/// from another port, opened from `file://`, or as `localhost` while the
/// WebSocket URL says `127.0.0.1`).
///
/// Cold and out of line: its formatting would otherwise grow the stack
/// frame of every handshake, and a connection thread keeps every stack
/// page it once touched.
#[cold]
#[inline(never)]
fn origin_refusal(origin: &str, host: &str, policy: &OriginPolicy) -> String {
    let allow = format!(
        "to allow it, start the syncws command with `--origin {origin}` (or `--origin any`), \
         or set Config::origin to OriginPolicy::AllowList(vec![\"{origin}\".into()]) (or OriginPolicy::Any)"
    );
    match policy {
        OriginPolicy::AllowList(_) => {
            format!("origin {origin} is not in this server's list of allowed origins; {allow}")
        }
        _ if origin.eq_ignore_ascii_case("null") => format!(
            "origin null is not allowed: browsers send it for pages opened from file:// (and sandboxed frames), \
             and this server accepts only pages served from its own host and port ({host}); \
             serve the page over http:// from this server, or start the syncws command with `--origin any` \
             (Config::origin set to OriginPolicy::Any)"
        ),
        _ => {
            let hint = if loopback_alias(origin, host) {
                " (to a browser, localhost, 127.0.0.1 and [::1] are different hosts: \
                 open the page with the host name of the WebSocket URL)"
            } else {
                ""
            };
            format!(
                "origin {origin} is not allowed: this server accepts only pages served from its own host and \
                 port ({host}){hint}; {allow}"
            )
        }
    }
}

/// True if the origin and the `Host` header name the loopback interface
/// in two different ways (`localhost` and `127.0.0.1`, say).
fn loopback_alias(origin: &str, host: &str) -> bool {
    let name = |authority: &str| -> String {
        let authority = authority.trim().to_ascii_lowercase();
        match authority.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
            _ => authority,
        }
    };
    let is_loopback = |name: &str| name == "localhost" || name.starts_with("127.") || name == "[::1]";
    let rest = origin.split_once("://").map_or("", |(_, rest)| rest);
    let origin_name = name(rest.split(['/', '?', '#']).next().unwrap_or(""));
    let host_name = name(host);
    origin_name != host_name && is_loopback(&origin_name) && is_loopback(&host_name)
}

/// True if the origin's `host[:port]` is the `Host` header's.
fn same_host(origin: &str, host: &str) -> bool {
    let lower = origin.to_ascii_lowercase();
    let (rest, default_port) = if let Some(rest) = lower.strip_prefix("http://") {
        (rest, ":80")
    } else if let Some(rest) = lower.strip_prefix("https://") {
        (rest, ":443")
    } else {
        return false; // `null`, `file://`, extensions...
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let strip = |a: &'_ str| -> String {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    let authority = strip(authority);
    !authority.is_empty() && authority == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::Phase;
    use crate::handshake::http::Headers;

    const CHROME: &str = "GET /chat HTTP/1.1\r\n\
        Host: localhost:8080\r\n\
        Connection: Upgrade\r\n\
        Pragma: no-cache\r\n\
        Cache-Control: no-cache\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
        Upgrade: websocket\r\n\
        Origin: http://localhost:8080\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Accept-Encoding: gzip, deflate, br, zstd\r\n\
        Accept-Language: en-US,en;q=0.9\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        \r\n";

    const FIREFOX: &str = "GET /ws?room=1 HTTP/1.1\r\n\
        Host: example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n\
        Accept: */*\r\n\
        Accept-Language: en-US,en;q=0.5\r\n\
        Accept-Encoding: gzip, deflate, br\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Origin: https://example.com\r\n\
        Sec-WebSocket-Extensions: permessage-deflate\r\n\
        Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-Fetch-Dest: empty\r\n\
        Sec-Fetch-Mode: websocket\r\n\
        Sec-Fetch-Site: same-origin\r\n\
        Pragma: no-cache\r\n\
        Cache-Control: no-cache\r\n\
        Upgrade: websocket\r\n\
        \r\n";

    fn parse(head: &str) -> Request {
        let (req, len) = Request::parse(head.as_bytes(), &Config::default()).expect("parses").expect("complete");
        assert_eq!(len, head.len());
        req
    }

    fn status(r: Result<impl std::fmt::Debug>) -> u16 {
        match r {
            Err(Error::Handshake { status, .. }) => status,
            other => panic!("expected a handshake error, got {other:?}"),
        }
    }

    #[test]
    fn browser_upgrades_are_accepted() {
        for (head, accept) in [(CHROME, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), (FIREFOX, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=")] {
            let req = parse(head);
            assert!(req.is_upgrade());
            validate_upgrade(&req).unwrap();
            check_origin(&req, &OriginPolicy::SameHost).unwrap();
            let resp = build_response(&req).unwrap();
            assert_eq!(resp.status, 101);
            assert_eq!(resp.header("sec-websocket-accept"), Some(accept));
            assert_eq!(resp.header("upgrade"), Some("websocket"));
            assert_eq!(resp.header("sec-websocket-protocol"), None);
            assert_eq!(resp.header("sec-websocket-extensions"), None);
            check_response(&req, &resp).unwrap();
            let mut out = Vec::new();
            resp.write_to(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{text}");
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"));
        }
        assert_eq!(parse(CHROME).protocols(), ["chat", "superchat"]);
    }

    /// Each edit of the Chrome head, and the status it must be refused with.
    #[test]
    fn refusals_have_their_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /chat", "POST /chat", 405),
            ("GET /chat", "get /chat", 405),
            ("HTTP/1.1\r\n", "HTTP/1.0\r\n", 400),
            ("Host: localhost:8080\r\n", "", 400),
            ("Host: localhost:8080\r\n", "Host: a\r\nHost: b\r\n", 400),
            ("Upgrade: websocket\r\n", "", 400),
            ("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", 400),
            ("Connection: Upgrade\r\n", "", 400),
            ("Connection: Upgrade\r\n", "Connection: keep-alive\r\n", 400),
            ("Sec-WebSocket-Version: 13\r\n", "", 400),
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 8\r\n", 426),
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13, 8\r\n", 426),
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n", 426),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "", 400),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n",
                400,
            ),
        ];
        for (from, to, want) in cases {
            assert!(CHROME.contains(from), "{from}");
            let req = parse(&CHROME.replacen(from, to, 1));
            assert_eq!(status(validate_upgrade(&req)), *want, "{from:?} -> {to:?}");
            assert_eq!(status(build_response(&req)), *want, "{from:?} -> {to:?}");
            assert_eq!(refusal(&validate_upgrade(&req).unwrap_err()).status, *want);
        }
    }

    #[test]
    fn case_insensitive_tokens_and_lists_are_accepted() {
        let cases = [
            ("Connection: Upgrade\r\n", "Connection: keep-alive, UPGRADE\r\n"),
            ("Connection: Upgrade\r\n", "Connection: keep-alive\r\nConnection: upgrade\r\n"),
            ("Upgrade: websocket\r\n", "Upgrade: WebSocket\r\n"),
            ("Upgrade: websocket\r\n", "Upgrade: foo/1, websocket\r\n"),
        ];
        for (from, to) in cases {
            let req = parse(&CHROME.replacen(from, to, 1));
            validate_upgrade(&req).unwrap_or_else(|e| panic!("{to:?}: {e}"));
        }
    }

    #[test]
    fn refusal_responses() {
        let resp = refusal(&Error::handshake(426, "unsupported version"));
        assert_eq!(resp.status, 426);
        assert_eq!(resp.header("sec-websocket-version"), Some("13"));
        assert_eq!(resp.header("connection"), Some("close"));
        assert_eq!(resp.body, b"unsupported version\n");
        let mut out = Vec::new();
        resp.write_to(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{text}");
        assert!(text.contains("Content-Length: 20\r\n"), "{text}");

        assert_eq!(refusal(&Error::handshake(405, "x")).header("allow"), Some("GET"));
        assert_eq!(refusal(&Error::handshake(403, "x")).header("sec-websocket-version"), None);
        let big = Error::Capacity { what: Limit::Body, size: 10, max: 5 };
        assert_eq!(refusal(&big).status, 413);
        let head = Error::Capacity { what: Limit::Head, size: 10, max: 5 };
        assert_eq!(refusal(&head).status, 431);
        assert_eq!(refusal(&Error::Timeout { phase: Phase::Handshake }).status, 408);
        assert_eq!(refusal(&Error::Application("x".into())).status, 500);
    }

    #[test]
    fn finish_response_fills_in_and_checks() {
        let req = parse(CHROME);
        // The application only chose a subprotocol.
        let resp = Response::new(101).with_header("Sec-WebSocket-Protocol", "superchat");
        let resp = finish_response(&req, resp).unwrap();
        assert_eq!(resp.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(resp.header("connection"), Some("Upgrade"));
        assert_eq!(resp.header("sec-websocket-protocol"), Some("superchat"));

        // A refusal chosen by the application passes unchanged.
        let no = Response::text(403, "go away");
        assert_eq!(finish_response(&req, no.clone()).unwrap(), no);

        let bad: &[(&str, &str)] = &[
            ("Sec-WebSocket-Protocol", "mqtt"),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Upgrade", "h2c"),
            ("Connection", "close"),
        ];
        for (name, value) in bad {
            let resp = Response::new(101).with_header(*name, *value);
            assert_eq!(status(finish_response(&req, resp)), 500, "{name}: {value}");
        }
        // No protocol offered: any choice is refused.
        let req = parse(FIREFOX);
        let resp = Response::new(101).with_header("Sec-WebSocket-Protocol", "chat");
        assert_eq!(status(finish_response(&req, resp)), 500);
        let resp = build_response(&req).unwrap();
        assert_eq!(status(check_response(&req, &Response::new(200))), 500);
        check_response(&req, &resp).unwrap();
    }

    #[test]
    fn origin_policies() {
        let allow = OriginPolicy::AllowList(vec!["https://example.com/".into(), "http://LOCALHOST:8080".into()]);
        // (host, origin, policy, allowed)
        let cases: &[(&str, Option<&str>, &OriginPolicy, bool)] = &[
            ("example.com", None, &OriginPolicy::SameHost, true),
            ("example.com", None, &allow, true),
            ("example.com", Some("https://evil.com"), &OriginPolicy::Any, true),
            ("example.com", Some("https://example.com"), &OriginPolicy::SameHost, true),
            ("Example.COM", Some("http://example.com"), &OriginPolicy::SameHost, true),
            ("example.com:443", Some("https://example.com"), &OriginPolicy::SameHost, true),
            ("example.com", Some("https://example.com:443/"), &OriginPolicy::SameHost, true),
            ("localhost:8080", Some("http://localhost:8080"), &OriginPolicy::SameHost, true),
            ("[::1]:8080", Some("http://[::1]:8080"), &OriginPolicy::SameHost, true),
            ("localhost:8080", Some("http://localhost:3000"), &OriginPolicy::SameHost, false),
            ("localhost:8080", Some("http://localhost"), &OriginPolicy::SameHost, false),
            ("example.com", Some("https://evil.com"), &OriginPolicy::SameHost, false),
            ("example.com", Some("https://example.com.evil.com"), &OriginPolicy::SameHost, false),
            ("example.com", Some("null"), &OriginPolicy::SameHost, false),
            ("example.com", Some("file://"), &OriginPolicy::SameHost, false),
            ("example.com", Some("chrome-extension://example.com"), &OriginPolicy::SameHost, false),
            ("example.com", Some(""), &OriginPolicy::SameHost, false),
            ("", Some("http://"), &OriginPolicy::SameHost, false),
            ("x", Some("https://example.com"), &allow, true),
            ("x", Some("HTTPS://EXAMPLE.COM/"), &allow, true),
            ("x", Some("http://localhost:8080/"), &allow, true),
            ("x", Some("http://example.com"), &allow, false),
            ("x", Some("null"), &allow, false),
        ];
        for (host, origin, policy, allowed) in cases {
            let mut req = Request::new("GET", "/");
            req.headers.append("Host", *host);
            if let Some(o) = origin {
                req.headers.append("Origin", *o);
            }
            match check_origin(&req, policy) {
                Ok(()) => assert!(allowed, "{host} {origin:?} {policy:?} should be refused"),
                Err(e) => {
                    assert!(!allowed, "{host} {origin:?} {policy:?} refused: {e}");
                    assert_eq!(status(Err::<(), _>(e)), 403);
                }
            }
        }
        let mut req = Request::new("GET", "/");
        req.headers.append("Host", "a");
        req.headers.append("Origin", "http://a");
        req.headers.append("Origin", "http://a");
        assert_eq!(status(check_origin(&req, &OriginPolicy::Any)), 403);
    }

    /// The 403 for an origin says what was refused and how to allow it,
    /// with a word on `file://` and on loopback names.
    #[test]
    fn origin_refusals_say_what_to_do() {
        let reason = |host: &str, origin: &str, policy: &OriginPolicy| {
            let mut req = Request::new("GET", "/");
            req.headers.append("Host", host);
            req.headers.append("Origin", origin);
            match check_origin(&req, policy) {
                Err(Error::Handshake { status: 403, reason, .. }) => reason,
                other => panic!("{host} {origin}: {other:?}"),
            }
        };
        let other_port = reason("localhost:8080", "http://localhost:3000", &OriginPolicy::SameHost);
        assert!(other_port.starts_with("origin http://localhost:3000 is not allowed"), "{other_port}");
        assert!(other_port.contains("(localhost:8080)"), "{other_port}");
        assert!(other_port.contains("--origin http://localhost:3000"), "{other_port}");
        assert!(other_port.contains("--origin any"), "{other_port}");
        assert!(other_port.contains("OriginPolicy::AllowList"), "{other_port}");
        assert!(!other_port.contains("different hosts"), "{other_port}");

        let file = reason("127.0.0.1:8080", "null", &OriginPolicy::SameHost);
        assert!(file.contains("file://"), "{file}");
        assert!(file.contains("--origin any"), "{file}");

        for (host, origin) in [
            ("127.0.0.1:8080", "http://localhost:8080"),
            ("localhost:8080", "http://127.0.0.1:8080"),
            ("[::1]:9", "http://localhost:9"),
        ] {
            let alias = reason(host, origin, &OriginPolicy::SameHost);
            assert!(alias.contains("different hosts"), "{alias}");
        }
        assert!(!reason("example.com", "http://localhost:8080", &OriginPolicy::SameHost).contains("different hosts"));

        let listed = reason("x", "http://evil.example", &OriginPolicy::AllowList(vec!["http://a".into()]));
        assert!(listed.contains("not in this server's list"), "{listed}");
        assert!(listed.contains("--origin http://evil.example"), "{listed}");
        // The body of the 403 is that reason.
        let mut req = Request::new("GET", "/");
        req.headers.append("Host", "localhost:8080");
        req.headers.append("Origin", "http://localhost:3000");
        let body = refusal(&check_origin(&req, &OriginPolicy::SameHost).unwrap_err()).body;
        assert_eq!(String::from_utf8(body).unwrap(), format!("{other_port}\n"));
    }

    #[test]
    fn no_panic_on_odd_headers() {
        let mut req = Request::new("GET", "/");
        let mut h = Headers::new();
        for (n, v) in [("Host", ""), ("Upgrade", ",,,"), ("Connection", ", ,upgrade,")] {
            h.append(n, v);
        }
        req.headers = h;
        assert_eq!(status(validate_upgrade(&req)), 400);
        let _ = check_origin(&req, &OriginPolicy::SameHost);
        let _ = check_response(&req, &Response::new(101));
        let _ = finish_response(&req, Response::new(101));
    }
}

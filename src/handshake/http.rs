//! Plain HTTP/1.1 heads: headers, requests and responses.
//!
//! These types serve both the WebSocket upgrade and plain HTTP requests
//! answered on the same port. Parsing is done by `httparse` on a byte buffer
//! (no I/O here): [`Request::parse`] and [`Response::parse`] say how many
//! bytes the head took, and every byte after it belongs to the caller (a
//! request body, or the first WebSocket frames a client sent at once).
//!
//! Limits come from [`Config`]: a head longer than
//! [`Config::max_head_size`] or with more than [`Config::max_headers`]
//! headers is refused with 431, a malformed head with 400.

use std::fmt::Write as _;

use crate::config::{Config, MAX_HEADERS_LIMIT};
use crate::error::{Error, Limit, Result};

/// An ordered list of HTTP headers.
///
/// Names keep the case they were given in and are compared
/// case-insensitively; a name may appear several times.
///
/// ```
/// use syncws::Headers;
/// let mut h = Headers::new();
/// h.append("Connection", "keep-alive, Upgrade");
/// assert_eq!(h.get("connection"), Some("keep-alive, Upgrade"));
/// assert!(h.contains_token("CONNECTION", "upgrade"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<(String, String)>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The values of every header called `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.list.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// True if `token` is in the comma-separated lists of the headers called
    /// `name`, comparing trimmed items case-insensitively (as for
    /// `Connection: keep-alive, Upgrade`).
    pub fn contains_token(&self, name: &str, token: &str) -> bool {
        let token = token.trim();
        self.get_all(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Sets `name` to `value`, replacing every header of that name. The new
    /// header takes the place of the first one it replaces.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.list.iter().position(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some(first) => {
                let mut i = 0;
                self.list.retain(|(n, _)| {
                    let keep = i <= first || !n.eq_ignore_ascii_case(&name);
                    i += 1;
                    keep
                });
                if let Some(slot) = self.list.get_mut(first) {
                    *slot = (name, value);
                }
            }
            None => self.list.push((name, value)),
        }
    }

    /// Adds a header at the end, keeping any others of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.list.push((name.into(), value.into()));
    }

    /// Removes every header called `name`.
    pub fn remove(&mut self, name: &str) {
        self.list.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Every header as `(name, value)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of headers (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are no headers.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Writes `name: value\r\n` for each header.
    fn write_to(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.list {
            push_name(out, name);
            out.extend_from_slice(b": ");
            push_text(out, value);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Copies httparse's headers, refusing values that are not UTF-8.
    fn from_parsed(parsed: &[httparse::Header<'_>]) -> Result<Headers> {
        let mut list = Vec::with_capacity(parsed.len());
        for h in parsed {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| Error::handshake(400, format!("header {} is not valid UTF-8", h.name)))?;
            list.push((h.name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
        }
        Ok(Headers { list })
    }
}

/// An HTTP request: the upgrade request of a WebSocket, or a plain request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, such as `GET`.
    pub method: String,
    /// The request target: path and query, such as `/chat?room=1`.
    pub path: String,
    /// The HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The headers, in the order received.
    pub headers: Headers,
    /// The body. [`Request::parse`] leaves it empty: the caller reads
    /// [`Request::content_length`] bytes after the head into it.
    pub body: Vec<u8>,
}

impl Request {
    /// An HTTP/1.1 request with no headers and no body.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Request {
        Request { method: method.into(), path: path.into(), version: 1, headers: Headers::new(), body: Vec::new() }
    }

    /// Parses a request head from the start of `buf`.
    ///
    /// Returns `Ok(None)` when the head is not complete yet (read more and
    /// call again with the whole buffer; nothing is consumed), or the request
    /// and the length of its head: bytes of `buf` after that length are not
    /// part of the head.
    ///
    /// # Errors
    ///
    /// [`Error::Capacity`] (answered 431) when the head is longer than
    /// [`Config::max_head_size`] (even before it is complete) or has more
    /// than [`Config::max_headers`] headers; 400 when it is malformed or a
    /// header value is not UTF-8.
    ///
    /// ```
    /// use syncws::{Config, Request};
    /// let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x80";
    /// let (req, len) = Request::parse(buf, &Config::default()).unwrap().unwrap();
    /// assert_eq!(req.header("host"), Some("a"));
    /// assert_eq!(&buf[len..], b"\x81\x80");
    /// ```
    pub fn parse(buf: &[u8], config: &Config) -> Result<Option<(Request, usize)>> {
        let max_headers = config.max_headers.min(MAX_HEADERS_LIMIT);
        // On the heap: 4 KiB of headers on the stack would stay resident on
        // every connection thread.
        let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
        let mut parsed = httparse::Request::new(&mut storage);
        let window = &buf[..buf.len().min(config.max_head_size)];
        let len = match parsed.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return partial(buf.len(), config),
            Err(e) => return Err(parse_error("request", e, max_headers)),
        };
        let missing = || Error::handshake(400, "malformed request head: incomplete request line");
        let request = Request {
            method: parsed.method.ok_or_else(missing)?.to_owned(),
            path: parsed.path.ok_or_else(missing)?.to_owned(),
            version: parsed.version.ok_or_else(missing)?,
            headers: Headers::from_parsed(parsed.headers)?,
            body: Vec::new(),
        };
        Ok(Some((request, len)))
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The length of the body that follows the head: `None` without a
    /// `Content-Length` header (no body, for a request).
    ///
    /// # Errors
    ///
    /// 400 for a value that is not a number or several values that differ;
    /// 501 when `Transfer-Encoding` is present (chunked bodies are not
    /// supported).
    pub fn content_length(&self) -> Result<Option<usize>> {
        if self.headers.get("transfer-encoding").is_some() {
            return Err(Error::handshake(501, "Transfer-Encoding is not supported"));
        }
        content_length(&self.headers)
    }

    /// The number of body bytes to read after the head: the
    /// [`content_length`](Request::content_length), or 0.
    ///
    /// # Errors
    ///
    /// As [`Request::content_length`], and [`Error::Capacity`] (`"body"`,
    /// answered with 413) when it is over [`Config::max_http_body`].
    pub fn body_length(&self, config: &Config) -> Result<usize> {
        let len = self.content_length()?.unwrap_or(0);
        if len > config.max_http_body {
            return Err(Error::Capacity { what: Limit::Body, size: len as u64, max: config.max_http_body as u64 });
        }
        Ok(len)
    }

    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in
    /// its order of preference.
    pub fn protocols(&self) -> Vec<&str> {
        self.headers
            .get_all("sec-websocket-protocol")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// True if the request asks for a WebSocket upgrade (`Upgrade:
    /// websocket` and `Connection: upgrade`, case-insensitively, in any
    /// list). Plain HTTP requests give false.
    pub fn is_upgrade(&self) -> bool {
        self.headers.contains_token("upgrade", "websocket") && self.headers.contains_token("connection", "upgrade")
    }

    /// Appends the request as it goes on the wire: request line, headers,
    /// blank line, body. A `Content-Length` is added for a non-empty body
    /// that has none. CR and LF in any field are written as spaces, so no
    /// value can inject a header.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        push_name(out, &self.method);
        out.push(b' ');
        push_text(out, &self.path.replace(' ', "%20"));
        out.extend_from_slice(format!(" HTTP/1.{}\r\n", self.version).as_bytes());
        self.headers.write_to(out);
        if !self.body.is_empty() && self.headers.get("content-length").is_none() {
            push_content_length(out, self.body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// An HTTP response: the answer to an upgrade (101 or a refusal) or to a
/// plain request.
///
/// ```
/// use syncws::Response;
/// let resp = Response::text(404, "no such page");
/// let mut out = Vec::new();
/// resp.write_to(&mut out);
/// assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, such as 101 or 404.
    pub status: u16,
    /// The reason phrase, such as `Not Found`.
    pub reason: String,
    /// The headers, in order.
    pub headers: Headers,
    /// The body. [`Response::parse`] leaves it empty.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with this status, its usual reason phrase (`Unknown` for
    /// uncommon codes), no headers and no body.
    pub fn new(status: u16) -> Response {
        Response { status, reason: reason_phrase(status).to_owned(), headers: Headers::new(), body: Vec::new() }
    }

    /// Sets a header, replacing any of the same name (use
    /// [`Headers::append`] on [`Response::headers`] for repeated headers).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body with its `Content-Type` and `Content-Length`.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>, content_type: &str) -> Response {
        self.body = body.into();
        self.headers.insert("Content-Type", content_type);
        self.headers.insert("Content-Length", self.body.len().to_string());
        self
    }

    /// A response with a `text/plain` UTF-8 body.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status).with_body(text, "text/plain; charset=utf-8")
    }

    /// Parses a response head from the start of `buf`, with the same
    /// contract and errors as [`Request::parse`].
    pub fn parse(buf: &[u8], config: &Config) -> Result<Option<(Response, usize)>> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
        let max_headers = config.max_headers.min(MAX_HEADERS_LIMIT);
        let mut parsed = httparse::Response::new(&mut storage[..max_headers]);
        let window = &buf[..buf.len().min(config.max_head_size)];
        let len = match parsed.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return partial(buf.len(), config),
            Err(e) => return Err(parse_error("response", e, max_headers)),
        };
        let status = parsed.code.ok_or_else(|| Error::handshake(400, "malformed response head: no status"))?;
        let response = Response {
            status,
            reason: parsed.reason.unwrap_or("").to_owned(),
            headers: Headers::from_parsed(parsed.headers)?,
            body: Vec::new(),
        };
        Ok(Some((response, len)))
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The length of the body that follows the head: `Some(0)` for 1xx, 204
    /// and 304; `None` when there is no `Content-Length` or there is a
    /// `Transfer-Encoding` (the body then runs to the end of the
    /// connection, or is chunked).
    ///
    /// # Errors
    ///
    /// 400 for a value that is not a number or several values that differ.
    pub fn content_length(&self) -> Result<Option<usize>> {
        if !has_body(self.status) {
            return Ok(Some(0));
        }
        if self.headers.get("transfer-encoding").is_some() {
            return Ok(None);
        }
        content_length(&self.headers)
    }

    /// Appends the response as it goes on the wire: status line, headers,
    /// blank line, body. A `Content-Length` is added when missing, except
    /// for statuses that have no body (1xx, 204, 304). CR and LF in any
    /// field are written as spaces.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("HTTP/1.1 {:03} ", self.status).as_bytes());
        push_text(out, &self.reason);
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(out);
        if has_body(self.status)
            && self.headers.get("content-length").is_none()
            && self.headers.get("transfer-encoding").is_none()
        {
            push_content_length(out, self.body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// The usual reason phrase of a status code.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// False for the statuses that never carry a body (RFC 9110 §6.4.1).
fn has_body(status: u16) -> bool {
    !((100..200).contains(&status) || status == 204 || status == 304)
}

/// The outcome of an incomplete head: wait for more, or 431 if it can no
/// longer fit in `max_head_size`.
fn partial<T>(buffered: usize, config: &Config) -> Result<Option<T>> {
    if buffered >= config.max_head_size {
        Err(Error::Capacity { what: Limit::Head, size: buffered as u64, max: config.max_head_size as u64 })
    } else {
        Ok(None)
    }
}

fn parse_error(what: &str, e: httparse::Error, max_headers: usize) -> Error {
    match e {
        // The parser stops at the first header past the limit.
        httparse::Error::TooManyHeaders => {
            Error::Capacity { what: Limit::Headers, size: max_headers as u64 + 1, max: max_headers as u64 }
        }
        e => Error::handshake(400, format!("malformed {what} head: {e}")),
    }
}

/// Reads `Content-Length` across all its headers and list items, which must
/// all be the same decimal number.
fn content_length(headers: &Headers) -> Result<Option<usize>> {
    let mut found: Option<usize> = None;
    for item in headers.get_all("content-length").flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::handshake(400, format!("bad Content-Length {item:?}")));
        }
        let n: usize = item.parse().map_err(|_| Error::handshake(400, "Content-Length is too large"))?;
        match found {
            Some(m) if m != n => return Err(Error::handshake(400, "conflicting Content-Length values")),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn push_content_length(out: &mut Vec<u8>, len: usize) {
    let mut line = String::with_capacity(32);
    let _ = write!(line, "Content-Length: {len}\r\n");
    out.extend_from_slice(line.as_bytes());
}

/// Writes a header value or reason, turning CR and LF into spaces.
fn push_text(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
}

/// Writes a header name or method, turning bytes that may not appear in a
/// token (RFC 9110 §5.6.2) into `-`.
fn push_name(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| if is_tchar(b) { b } else { b'-' }));
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "GET /chat?x=1 HTTP/1.1\r\n\
        Host: localhost:8080\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Protocol: v2\r\n\
        \r\n";

    fn status<T: std::fmt::Debug>(r: Result<T>) -> u16 {
        match r {
            Err(Error::Handshake { status, .. }) => status,
            Err(Error::Capacity { what: Limit::Head | Limit::Headers, .. }) => 431,
            other => panic!("expected a handshake error, got {other:?}"),
        }
    }

    #[test]
    fn headers_basics() {
        let mut h = Headers::new();
        assert!(h.is_empty());
        h.append("Via", "a");
        h.append("X-One", "1");
        h.append("via", "b, c");
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("VIA"), Some("a"));
        assert_eq!(h.get_all("via").collect::<Vec<_>>(), ["a", "b, c"]);
        assert!(h.contains_token("via", " C "));
        assert!(!h.contains_token("via", "b, c"));
        assert!(!h.contains_token("x-two", "1"));
        h.insert("VIA", "d");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("VIA", "d"), ("X-One", "1")]);
        h.insert("X-Two", "2");
        assert_eq!(h.get("x-two"), Some("2"));
        h.remove("x-one");
        assert_eq!(h.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["VIA", "X-Two"]);
        h.remove("absent");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn parse_a_request() {
        let mut buf = HEAD.as_bytes().to_vec();
        buf.extend_from_slice(b"\x81\x85rest");
        let (req, len) = Request::parse(&buf, &Config::default()).unwrap().unwrap();
        assert_eq!(len, HEAD.len());
        assert_eq!(&buf[len..], b"\x81\x85rest");
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/chat?x=1");
        assert_eq!(req.version, 1);
        assert_eq!(req.headers.len(), 7);
        assert_eq!(req.header("HOST"), Some("localhost:8080"));
        assert_eq!(req.protocols(), ["chat", "superchat", "v2"]);
        assert!(req.is_upgrade());
        assert!(req.body.is_empty());
        assert_eq!(req.content_length().unwrap(), None);
        assert_eq!(req.body_length(&Config::default()).unwrap(), 0);

        let plain = Request::parse(b"GET / HTTP/1.0\r\n\r\n", &Config::default()).unwrap();
        let (plain, _) = plain.unwrap();
        assert_eq!(plain.version, 0);
        assert!(!plain.is_upgrade());
        assert!(plain.protocols().is_empty());
    }

    #[test]
    fn every_partial_head_needs_more() {
        let config = Config::default();
        for n in 0..HEAD.len() {
            let got = Request::parse(&HEAD.as_bytes()[..n], &config);
            assert!(matches!(got, Ok(None)), "{n}: {got:?}");
        }
        let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        for n in 0..resp.len() {
            let got = Response::parse(&resp.as_bytes()[..n], &config);
            assert!(matches!(got, Ok(None)), "{n}: {got:?}");
        }
        assert!(Response::parse(resp.as_bytes(), &config).unwrap().is_some());
    }

    #[test]
    fn head_size_limit() {
        let config = Config::default().max_head_size(256);
        let filler = format!("X-Filler: {}\r\n", "a".repeat(300));
        let long = HEAD.replacen("\r\n\r\n", &format!("\r\n{filler}\r\n"), 1);
        assert_eq!(status(Request::parse(long.as_bytes(), &config)), 431);
        // Partial but already over the limit.
        assert_eq!(status(Request::parse(&long.as_bytes()[..257], &config)), 431);
        assert_eq!(status(Request::parse(&long.as_bytes()[..256], &config)), 431);
        assert!(matches!(Request::parse(&long.as_bytes()[..255], &config), Ok(None)));
        let resp = format!("HTTP/1.1 200 OK\r\n{filler}\r\n");
        assert_eq!(status(Response::parse(resp.as_bytes(), &config)), 431);
        // A head of exactly the limit is fine, even with bytes after it.
        let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(256 - "GET / HTTP/1.1\r\nX: \r\n\r\n".len()));
        assert_eq!(exact.len(), 256);
        let mut buf = exact.clone().into_bytes();
        buf.extend_from_slice(&[0x81; 100]);
        let (_, len) = Request::parse(&buf, &config).unwrap().unwrap();
        assert_eq!(len, 256);
    }

    #[test]
    fn header_count_limit() {
        let config = Config::default().max_headers(64);
        let head = |n: usize| {
            let mut s = String::from("GET / HTTP/1.1\r\n");
            for i in 0..n {
                s.push_str(&format!("X-H{i}: {i}\r\n"));
            }
            s + "\r\n"
        };
        let (req, _) = Request::parse(head(64).as_bytes(), &config).unwrap().unwrap();
        assert_eq!(req.headers.len(), 64);
        assert_eq!(status(Request::parse(head(65).as_bytes(), &config)), 431);
        let resp = head(65).replacen("GET / HTTP/1.1", "HTTP/1.1 200 OK", 1);
        assert_eq!(status(Response::parse(resp.as_bytes(), &config)), 431);
        let over = Config::default().max_headers(MAX_HEADERS_LIMIT + 10);
        assert_eq!(status(Request::parse(head(MAX_HEADERS_LIMIT + 1).as_bytes(), &over)), 431);
    }

    #[test]
    fn malformed_heads_are_400() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
            b"\x00\x01\x02\x03\r\n\r\n",
        ];
        for buf in cases {
            let got = Request::parse(buf, &Config::default());
            assert_eq!(status(got), 400, "{:?}", String::from_utf8_lossy(buf));
        }
        match Request::parse(b"GET / HTTP/2.0\r\n\r\n", &Config::default()) {
            Err(Error::Handshake { reason, .. }) => assert!(reason.contains("version"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(status(Response::parse(b"HTTP/1.1 abc OK\r\n\r\n", &Config::default())), 400);
    }

    #[test]
    fn content_length_table() {
        type Case<'a> = (&'a [&'a str], Result<Option<usize>, u16>);
        let cases: &[Case] = &[
            (&[], Ok(None)),
            (&["0"], Ok(Some(0))),
            (&["42"], Ok(Some(42))),
            (&["42", "42"], Ok(Some(42))),
            (&["42, 42"], Ok(Some(42))),
            (&["42", "43"], Err(400)),
            (&["-1"], Err(400)),
            (&["+1"], Err(400)),
            (&["1 2"], Err(400)),
            (&[""], Err(400)),
            (&["0x10"], Err(400)),
            (&["99999999999999999999999999"], Err(400)),
        ];
        for (values, want) in cases {
            let mut req = Request::new("POST", "/");
            for v in values.iter() {
                req.headers.append("Content-Length", *v);
            }
            let got = req.content_length().map_err(|e| status(Err::<(), _>(e)));
            assert_eq!(&got, want, "{values:?}");
        }
        let mut req = Request::new("POST", "/");
        req.headers.append("Transfer-Encoding", "chunked");
        assert_eq!(status(req.content_length()), 501);

        let mut req = Request::new("POST", "/");
        req.headers.append("Content-Length", "11");
        let config = Config::default().max_http_body(10);
        assert!(matches!(req.body_length(&config), Err(Error::Capacity { what: Limit::Body, size: 11, max: 10 })));
        assert_eq!(req.body_length(&config.max_http_body(11)).unwrap(), 11);

        let mut resp = Response::new(200);
        assert_eq!(resp.content_length().unwrap(), None);
        resp.headers.append("Content-Length", "5");
        assert_eq!(resp.content_length().unwrap(), Some(5));
        resp.headers.append("Transfer-Encoding", "chunked");
        assert_eq!(resp.content_length().unwrap(), None);
        assert_eq!(Response::new(204).content_length().unwrap(), Some(0));
        assert_eq!(Response::new(101).content_length().unwrap(), Some(0));
    }

    #[test]
    fn responses_write_and_parse_back() {
        assert_eq!(Response::new(101).reason, "Switching Protocols");
        assert_eq!(Response::new(431).reason, "Request Header Fields Too Large");
        assert_eq!(Response::new(299).reason, "Unknown");

        let cases: &[(Response, &str)] = &[
            (Response::new(200), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (Response::new(204), "HTTP/1.1 204 No Content\r\n\r\n"),
            (Response::new(304), "HTTP/1.1 304 Unknown\r\n\r\n"),
            (
                Response::new(101).with_header("Upgrade", "websocket"),
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            ),
            (
                Response::text(404, "nope"),
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 4\r\n\r\nnope",
            ),
            (
                Response::new(200).with_body(*b"{}", "application/json").with_header("X-A", "1"),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n{}",
            ),
            (
                Response::new(200).with_header("X-Evil", "a\r\nSet-Cookie: x").with_header("Bad:Name", "v"),
                "HTTP/1.1 200 OK\r\nX-Evil: a  Set-Cookie: x\r\nBad-Name: v\r\nContent-Length: 0\r\n\r\n",
            ),
        ];
        for (resp, want) in cases {
            let mut out = Vec::new();
            resp.write_to(&mut out);
            assert_eq!(String::from_utf8_lossy(&out), *want);
            let (back, len) = Response::parse(&out, &Config::default()).unwrap().unwrap();
            assert_eq!(back.status, resp.status);
            assert_eq!(back.reason, resp.reason);
            assert_eq!(&out[len..], &resp.body[..]);
        }
    }

    #[test]
    fn requests_write_and_parse_back() {
        let mut req = Request::new("POST", "/submit?a=1");
        req.headers.append("Host", "example.com");
        req.body = b"hello".to_vec();
        let mut out = Vec::new();
        req.write_to(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /submit?a=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
        );
        let (back, len) = Request::parse(&out, &Config::default()).unwrap().unwrap();
        assert_eq!(back.content_length().unwrap(), Some(5));
        assert_eq!(&out[len..], b"hello");
        assert_eq!(back.method, "POST");
        assert_eq!(back.path, "/submit?a=1");
    }

    /// A small xorshift generator, so the test needs no dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let config = Config::default().max_head_size(512).max_headers(8);
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"GET /HTP1.\r\n: \t\x00\xffUpgrade,websocket";
        for _ in 0..20_000 {
            let len = (next(&mut state) % 600) as usize;
            let mut buf: Vec<u8> = HEAD.bytes().collect();
            if next(&mut state) % 2 == 0 {
                buf.truncate(len);
                for _ in 0..(next(&mut state) % 8) {
                    if buf.is_empty() {
                        break;
                    }
                    let i = (next(&mut state) as usize) % buf.len();
                    buf[i] = alphabet[(next(&mut state) as usize) % alphabet.len()];
                }
            } else {
                buf = (0..len).map(|_| alphabet[(next(&mut state) as usize) % alphabet.len()]).collect();
            }
            if let Ok(Some((req, n))) = Request::parse(&buf, &config) {
                assert!(n <= buf.len() && n <= 512);
                let _ = (req.content_length(), req.protocols(), req.is_upgrade());
                let mut out = Vec::new();
                req.write_to(&mut out);
            }
            if let Ok(Some((resp, n))) = Response::parse(&buf, &config) {
                assert!(n <= buf.len());
                let _ = resp.content_length();
            }
        }
    }
}

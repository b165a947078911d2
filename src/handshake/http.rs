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
mod tests;

//! Shared pieces of the benchmark's peer servers and runner.
//!
//! Every peer server binary takes one argument, the address to bind, prints
//! `listening <addr>` once it accepts connections, and serves the same
//! semantics: on any path, every text and binary message is echoed back to
//! its sender; on `/broadcast` (where the server supports it), every
//! connection is a subscriber and every message is sent to every
//! subscriber, the sender included, each library in its usual pub/sub
//! pattern.

use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The path of the broadcast scenario.
pub const BROADCAST_PATH: &str = "/broadcast";

/// The address from the command line (default `127.0.0.1:9001`).
pub fn addr_arg() -> String {
    std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned())
}

/// Tells the runner the server is ready.
pub fn ready(addr: impl std::fmt::Display) {
    println!("listening {addr}");
    let _ = io::stdout().flush();
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha.finalize())
}

/// A parsed upgrade request: its path, the 101 response to send, and how
/// many bytes of the buffer the head took.
pub struct Upgrade {
    /// Request path.
    pub path: String,
    /// The `101 Switching Protocols` response.
    pub response: Vec<u8>,
    /// Length of the request head in the buffer.
    pub head_len: usize,
}

/// Parses an upgrade request head with httparse. `Ok(None)`: incomplete.
pub fn parse_upgrade(buf: &[u8]) -> io::Result<Option<Upgrade>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let key = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.trim())
    )
    .into_bytes();
    Ok(Some(Upgrade { path: req.path.unwrap_or("/").to_owned(), response, head_len }))
}

/// Reads an upgrade request head from a blocking stream and answers 101.
/// Returns the path and any bytes read after the head.
pub fn blocking_handshake(stream: &mut (impl Read + Write)) -> io::Result<(String, Vec<u8>)> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if let Some(up) = parse_upgrade(&buf[..len])? {
            stream.write_all(&up.response)?;
            return Ok((up.path, buf[up.head_len..len].to_vec()));
        }
        if len == buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
    }
}

/// Opens an SVG chart: the document (`width` × `height`), a white
/// background, `title` in bold, and a legend of `names`, each with its
/// colour from `colors` (cycled), the swatches' top at `legend_y`. The
/// caller adds the plot and the closing `</svg>`.
pub fn svg_open(width: f64, height: f64, title: &str, names: &[&str], colors: &[&str], legend_y: f64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="10" y="18" font-size="14" font-weight="bold">{title}</text>"#);
    for (i, name) in names.iter().enumerate() {
        let x = 10.0 + i as f64 * 170.0;
        let _ =
            writeln!(s, r#"<rect x="{x}" y="{legend_y}" width="12" height="12" fill="{}"/>"#, colors[i % colors.len()]);
        let _ = writeln!(s, r#"<text x="{}" y="{}">{name}</text>"#, x + 16.0, legend_y + 10.0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_rfc_vector() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_head() {
        let req = b"GET /broadcast HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nrest";
        let up = parse_upgrade(req).unwrap().unwrap();
        assert_eq!(up.path, "/broadcast");
        assert_eq!(&req[up.head_len..], b"rest");
        assert!(String::from_utf8(up.response).unwrap().contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(parse_upgrade(b"GET / HTTP/1.1\r\n").unwrap().is_none());
    }
}

//! The load generator's own minimal WebSocket client: the upgrade request,
//! masked frames out, a buffered frame reader in, and the payload pattern
//! every echo is checked against.
//!
//! Written on raw `std` sockets and independent of syncws: its own frame
//! decoder, masking ([`mask`]) and `Sec-WebSocket-Accept` computation
//! ([`accept_key`], on the `sha1` crate and a base64 encoder of its own),
//! so a server bug cannot be hidden by a matching client bug. Only the TLS
//! types come through syncws (its re-export of rustls). Kept cheap (one
//! read fetches many frames, one write carries many frames, masking goes a
//! word at a time) so it is not the bottleneck.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use syncws::rustls::pki_types::ServerName;
use syncws::rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Opcodes the client deals with.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest HTTP response head accepted.
const MAX_HEAD: usize = 16 << 10;

/// A failure the load generator counts as an error.
#[derive(Debug)]
pub enum WireError {
    /// The socket failed or timed out.
    Io(io::Error),
    /// The server broke the protocol or the echo did not match.
    Bad(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A TLS failure in the library's words, which say what to do
            // (a CA certificate, an unknown issuer, a wrong fingerprint).
            WireError::Io(e) => match e.get_ref().and_then(|i| i.downcast_ref::<syncws::rustls::Error>()) {
                Some(tls) => write!(f, "{}", syncws::Error::Tls(io::Error::new(e.kind(), tls.clone()))),
                None => write!(f, "i/o: {e}"),
            },
            WireError::Bad(s) => f.write_str(s),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

/// Result of the wire layer.
pub type WireResult<T> = Result<T, WireError>;

fn bad<T>(msg: impl Into<String>) -> WireResult<T> {
    Err(WireError::Bad(msg.into()))
}

/// A cheap xorshift generator for mask keys and handshake keys (a
/// benchmark client needs variety, not secrecy).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (never zero inside).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Host, port and path of a `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, as connected to and sent in `Host`.
    pub authority: String,
    /// Request path, starting with `/`.
    pub path: String,
    /// `wss://`: the host the certificate must name (and SNI).
    pub tls_host: Option<String>,
    /// The TLS client config for `wss://`, set before connecting.
    pub tls: Option<Arc<ClientConfig>>,
}

/// A connection to the server: plain TCP, or TLS over it.
pub enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`: rustls over the socket.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath (timeouts, shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl Target {
    /// Parses `ws://host:port/path` or `wss://...` (the port defaults to
    /// 80 or 443, the path to `/`). A `wss://` target needs its
    /// [`tls`](Target::tls) config set before connecting.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false, 80)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true, 443)
        } else {
            return Err(format!("{url}: only ws:// and wss:// URLs are supported"));
        };
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let (authority, host) = match auth.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => (auth.to_owned(), host),
            _ => (format!("{auth}:{default_port}"), auth),
        };
        let tls_host = tls.then(|| host.trim_start_matches('[').trim_end_matches(']').to_owned());
        Ok(Target { authority, path: path.to_owned(), tls_host, tls: None })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> Target {
        Target { path: path.to_owned(), ..self.clone() }
    }
}

/// Connects and performs the client handshake. Returns the stream (with
/// `TCP_NODELAY` and `timeout` as read and write timeouts) and a reader
/// holding any bytes that came after the response head.
pub fn connect(target: &Target, timeout: Duration, rng: &mut Rng) -> WireResult<(Stream, FrameReader)> {
    let socket = TcpStream::connect(&target.authority)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    let mut stream = match (&target.tls_host, &target.tls) {
        (None, _) => Stream::Plain(socket),
        (Some(host), Some(config)) => {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| WireError::Bad(format!("{host:?} is not a valid TLS server name")))?;
            let conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| WireError::Bad(e.to_string()))?;
            Stream::Tls(Box::new(StreamOwned::new(conn, socket)))
        }
        (Some(_), None) => return bad("wss:// without a TLS config"),
    };
    let mut key_bytes = [0u8; 16];
    key_bytes[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    key_bytes[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let key = base64_encode(&key_bytes);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes())?;
    let mut reader = FrameReader::new();
    let head_len = reader.read_head(&mut stream)?;
    let head = std::str::from_utf8(&reader.buf[..head_len]).map_err(|_| WireError::Bad("non-UTF-8 head".into()))?;
    check_response(head, &accept_key(&key))?;
    reader.start = head_len;
    Ok((stream, reader))
}

/// Checks a `101` response head and its `Sec-WebSocket-Accept`.
pub fn check_response(head: &str, expected_accept: &str) -> WireResult<()> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return bad(format!("handshake refused: {status:?}"));
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.trim());
    match accept {
        Some(a) if a == expected_accept => Ok(()),
        Some(a) => bad(format!("wrong Sec-WebSocket-Accept {a:?}")),
        None => bad("no Sec-WebSocket-Accept"),
    }
}

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` a server must answer `key` with (RFC 6455
/// §4.2.2): base64 of the SHA-1 of the key followed by the GUID.
pub fn accept_key(key: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64_encode(&sha.finalize())
}

/// XORs `buf` with `key` repeated (RFC 6455 §5.3), `buf[0]` taking
/// `key[0]`: masks and unmasks alike.
///
/// Eight bytes at a time: the key read as a native-endian `u32` and put in
/// both halves of a `u64` is the key twice over in memory order, and every
/// 8-byte step keeps the key's phase (8 is a multiple of 4). The tail of
/// under 8 bytes starts at a multiple of 4, so it takes the key from
/// `key[0]` again.
pub fn mask(buf: &mut [u8], key: [u8; 4]) {
    let half = u64::from(u32::from_ne_bytes(key));
    let word = (half << 32) | half;
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ word;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

fn base64_encode(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Appends one masked frame (FIN set) carrying `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let at = out.len();
    out.extend_from_slice(payload);
    mask(&mut out[at..], key);
}

/// Where a received message's payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// In the reader's buffer (a single-frame message): valid until the
    /// next read.
    Buf(Range<usize>),
    /// Reassembled from fragments.
    Assembled,
}

/// A complete message (data or control).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The opcode of the message's first frame.
    pub opcode: u8,
    /// Where its payload is.
    pub body: Body,
}

/// Reads frames from the server: one read fetches as much as the socket
/// has, and every complete frame in it is handed out without another system
/// call.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Payload of a fragmented message being reassembled.
    frag: Vec<u8>,
    frag_opcode: Option<u8>,
    /// Accept masked frames from the server (unmasking them): the raw TCP
    /// echo floor sends the client's own masked frames back.
    pub accept_masked: bool,
    /// Largest frame payload, and largest reassembled message, accepted:
    /// beyond it the server's data is an error, never an allocation.
    pub max_payload: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        FrameReader {
            buf: vec![0; 64 << 10],
            start: 0,
            end: 0,
            frag: Vec::new(),
            frag_opcode: None,
            accept_masked: false,
            max_payload: 1 << 31,
        }
    }

    /// A reader holding `bytes` already received (for tests).
    pub fn with_bytes(bytes: &[u8]) -> Self {
        let mut r = FrameReader::new();
        r.buf.resize(bytes.len().max(r.buf.len()), 0);
        r.buf[..bytes.len()].copy_from_slice(bytes);
        r.end = bytes.len();
        r
    }

    /// Reads until the buffer holds a complete HTTP head; returns its length.
    fn read_head(&mut self, io: &mut impl Read) -> WireResult<usize> {
        loop {
            if let Some(i) = self.buf[..self.end].windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            if self.end >= MAX_HEAD {
                return bad("response head too large");
            }
            let n = io.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return bad("connection closed during the handshake");
            }
            self.end += n;
        }
    }

    /// The payload of `msg`, which must be the last message returned.
    pub fn payload(&self, msg: &Msg) -> &[u8] {
        match &msg.body {
            Body::Buf(r) => &self.buf[r.clone()],
            Body::Assembled => &self.frag,
        }
    }

    /// True when bytes of a next frame are already buffered.
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// Blocks until a complete message arrives.
    pub fn next(&mut self, io: &mut impl Read) -> WireResult<Msg> {
        loop {
            if let Some(m) = self.parse()? {
                return Ok(m);
            }
            self.fill(io)?;
        }
    }

    /// One read from the socket (after making room); EOF is an error.
    pub fn fill(&mut self, io: &mut impl Read) -> WireResult<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = self.frame_len_needed().max(64 << 10);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let n = io.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return bad("the server closed the connection");
        }
        self.end += n;
        Ok(())
    }

    /// The length of the frame at `start` if its header is complete.
    fn frame_len_needed(&self) -> usize {
        match parse_header(&self.buf[self.start..self.end]) {
            // Capped: parse() refuses a longer frame before reading it.
            Some(h) => h.header_len + (h.payload_len.min(self.max_payload as u64 + 1) as usize),
            None => 14,
        }
    }

    /// Parses the next complete message from buffered bytes, without
    /// reading. `Ok(None)`: more bytes are needed.
    pub fn parse(&mut self) -> WireResult<Option<Msg>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let Some(h) = parse_header(avail) else { return Ok(None) };
            if h.rsv != 0 {
                return bad("server frame with RSV bits set");
            }
            if h.masked && !self.accept_masked {
                return bad("masked frame from the server");
            }
            if h.payload_len > self.max_payload as u64 {
                return bad(format!("frame of {} bytes, more than the {} expected", h.payload_len, self.max_payload));
            }
            let total = h.header_len + h.payload_len as usize;
            if avail.len() < total {
                return Ok(None);
            }
            let range = self.start + h.header_len..self.start + total;
            self.start += total;
            if let Some(key) = h.mask {
                mask(&mut self.buf[range.clone()], key);
            }
            let control = h.opcode & 0x8 != 0;
            if control {
                if !h.fin || h.payload_len > 125 {
                    return bad("bad control frame");
                }
                if !matches!(h.opcode, OP_CLOSE | OP_PING | OP_PONG) {
                    return bad(format!("reserved opcode {:#x}", h.opcode));
                }
                return Ok(Some(Msg { opcode: h.opcode, body: Body::Buf(range) }));
            }
            match (h.opcode, self.frag_opcode) {
                (OP_CONT, None) => return bad("continuation without a start"),
                (OP_CONT, Some(op)) => {
                    if self.frag.len() + range.len() > self.max_payload {
                        return bad("fragmented message longer than expected");
                    }
                    self.frag.extend_from_slice(&self.buf[range]);
                    if h.fin {
                        self.frag_opcode = None;
                        return Ok(Some(Msg { opcode: op, body: Body::Assembled }));
                    }
                }
                (OP_TEXT | OP_BINARY, Some(_)) => return bad("new message inside a fragmented one"),
                (OP_TEXT | OP_BINARY, None) => {
                    if h.fin {
                        return Ok(Some(Msg { opcode: h.opcode, body: Body::Buf(range) }));
                    }
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[range]);
                    self.frag_opcode = Some(h.opcode);
                }
                (op, _) => return bad(format!("reserved opcode {op:#x}")),
            }
        }
    }
}

struct Header {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    mask: Option<[u8; 4]>,
    payload_len: u64,
    header_len: usize,
}

fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] & 0x80 != 0;
    let (payload_len, mut at) = match b[1] & 0x7F {
        126 => (u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let key: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    Some(Header {
        fin: b[0] & 0x80 != 0,
        rsv: b[0] & 0x70,
        opcode: b[0] & 0x0F,
        masked,
        mask,
        payload_len,
        header_len: at,
    })
}

/// The payloads of one run: message `seq` is a window into a fixed pattern
/// starting at `seq % 251`, its first 8 bytes replaced by `seq` (little
/// endian, or as 8 letters for text). Checking an echo is one compare.
#[derive(Debug, Clone)]
pub struct Payloads {
    pattern: Vec<u8>,
    size: usize,
    text: bool,
}

impl Payloads {
    /// Payloads of `size` bytes, ASCII letters if `text`.
    pub fn new(size: usize, text: bool) -> Self {
        let pattern = (0..size + 256)
            .map(|i| if text { b'a' + (i * 7 % 26) as u8 } else { (i.wrapping_mul(131) ^ (i >> 8)) as u8 })
            .collect();
        Payloads { pattern, size, text }
    }

    /// The opcode of every message.
    pub fn opcode(&self) -> u8 {
        if self.text {
            OP_TEXT
        } else {
            OP_BINARY
        }
    }

    /// The payload size.
    pub fn size(&self) -> usize {
        self.size
    }

    fn stamp(&self, seq: u64) -> [u8; 8] {
        if self.text {
            let mut s = [0u8; 8];
            let mut v = seq;
            for b in s.iter_mut().rev() {
                *b = b'A' + (v % 26) as u8;
                v /= 26;
            }
            s
        } else {
            seq.to_le_bytes()
        }
    }

    fn body(&self, seq: u64) -> &[u8] {
        let off = (seq % 251) as usize;
        &self.pattern[off..off + self.size]
    }

    /// Appends message `seq` as a masked frame.
    pub fn encode(&self, out: &mut Vec<u8>, seq: u64, key: [u8; 4]) {
        let at = out.len();
        encode_frame(out, self.opcode(), self.body(seq), key);
        let stamp = self.stamp(seq);
        let n = self.size.min(8);
        let payload_at = out.len() - self.size;
        for i in 0..n {
            out[payload_at + i] = stamp[i] ^ key[i & 3];
        }
        debug_assert!(out.len() > at);
    }

    /// The payload of message `seq`, unmasked (for tests and servers).
    pub fn plain(&self, seq: u64) -> Vec<u8> {
        let mut v = self.body(seq).to_vec();
        let n = self.size.min(8);
        v[..n].copy_from_slice(&self.stamp(seq)[..n]);
        v
    }

    /// Checks that `msg` (with `payload`) is the echo of message `seq`.
    pub fn verify(&self, msg: &Msg, payload: &[u8], seq: u64) -> WireResult<()> {
        if msg.opcode != self.opcode() {
            return bad(format!("message {seq}: opcode {:#x}, sent {:#x}", msg.opcode, self.opcode()));
        }
        if payload.len() != self.size {
            return bad(format!("message {seq}: {} bytes echoed, {} sent", payload.len(), self.size));
        }
        let n = self.size.min(8);
        if payload[..n] != self.stamp(seq)[..n] || payload[n..] != self.body(seq)[n..] {
            return bad(format!("message {seq}: echoed payload differs from the one sent"));
        }
        Ok(())
    }
}

/// Appends a masked Close frame with status 1000.
pub fn encode_close(out: &mut Vec<u8>, key: [u8; 4]) {
    encode_frame(out, OP_CLOSE, &1000u16.to_be_bytes(), key);
}

/// A mask key from `rng`.
pub fn key(rng: &mut Rng) -> [u8; 4] {
    (rng.next_u64() as u32).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a correct server sends back: the same payload, unmasked.
    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else if payload.len() <= 0xFFFF {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    fn echo_of(p: &Payloads, seq: u64) -> Vec<u8> {
        server_frame(p.opcode(), true, &p.plain(seq))
    }

    #[test]
    fn encoded_frame_unmasks_to_the_payload() {
        for &size in &[0usize, 5, 125, 126, 65535, 65536, 100_000] {
            for &text in &[false, true] {
                let p = Payloads::new(size, text);
                let mut out = Vec::new();
                p.encode(&mut out, 77, [1, 2, 3, 4]);
                let mut r = FrameReader::with_bytes(&out);
                r.accept_masked = true;
                let m = r.parse().unwrap().unwrap();
                assert_eq!(r.payload(&m), &p.plain(77)[..]);
                p.verify(&m, r.payload(&m), 77).unwrap();
                if text {
                    assert!(std::str::from_utf8(r.payload(&m)).is_ok());
                }
            }
        }
    }

    #[test]
    fn correct_echoes_verify_in_order() {
        let p = Payloads::new(32, false);
        let mut bytes = Vec::new();
        for seq in 0..10 {
            bytes.extend(echo_of(&p, seq));
        }
        let mut r = FrameReader::with_bytes(&bytes);
        for seq in 0..10 {
            let m = r.parse().unwrap().unwrap();
            p.verify(&m, r.payload(&m), seq).unwrap();
        }
        assert!(r.parse().unwrap().is_none());
    }

    #[test]
    fn broken_echoes_are_errors() {
        let p = Payloads::new(64, true);
        // One byte flipped.
        let mut flipped = echo_of(&p, 3);
        *flipped.last_mut().unwrap() ^= 1;
        // Echo of another message (reordered or lost).
        let other = echo_of(&p, 4);
        // Truncated payload.
        let short = server_frame(OP_TEXT, true, &p.plain(3)[..63]);
        // Binary instead of text.
        let wrong_op = server_frame(OP_BINARY, true, &p.plain(3));
        for bytes in [flipped, other, short, wrong_op] {
            let mut r = FrameReader::with_bytes(&bytes);
            let m = r.parse().unwrap().unwrap();
            assert!(p.verify(&m, r.payload(&m), 3).is_err());
        }
    }

    #[test]
    fn protocol_faults_are_errors() {
        let p = Payloads::new(8, false);
        let mut masked = Vec::new();
        p.encode(&mut masked, 0, [9, 9, 9, 9]);
        let cases: Vec<Vec<u8>> = vec![
            masked,
            server_frame(OP_CONT, true, b"x"),
            server_frame(0x3, true, b"x"),
            server_frame(OP_PING, false, b""),
            [server_frame(OP_TEXT, false, b"a"), server_frame(OP_TEXT, true, b"b")].concat(),
            {
                let mut f = server_frame(OP_BINARY, true, b"x");
                f[0] |= 0x40;
                f
            },
        ];
        for bytes in cases {
            let mut r = FrameReader::with_bytes(&bytes);
            assert!(r.parse().is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn fragments_and_partial_input() {
        let p = Payloads::new(300, false);
        let plain = p.plain(5);
        let bytes = [
            server_frame(OP_BINARY, false, &plain[..100]),
            server_frame(OP_PING, true, b"hi"),
            server_frame(OP_CONT, false, &plain[100..200]),
            server_frame(OP_CONT, true, &plain[200..]),
        ]
        .concat();
        // Fed one byte at a time: nothing is returned until complete.
        let mut io = std::io::Cursor::new(bytes.clone());
        let mut r = FrameReader::new();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let mut one = [0u8; 1];
            io.read_exact(&mut one).unwrap();
            let mut piece = &one[..];
            r.fill(&mut piece).unwrap();
            while let Some(m) = r.parse().unwrap() {
                seen.push((m.opcode, r.payload(&m).to_vec()));
            }
        }
        assert_eq!(seen[0], (OP_PING, b"hi".to_vec()));
        assert_eq!(seen[1].0, OP_BINARY);
        assert_eq!(seen[1].1, plain);
    }

    #[test]
    fn accept_key_matches_rfc_6455() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // The example of Wikipedia's WebSocket article (checked with
        // Python's hashlib and base64).
        assert_eq!(accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }

    #[test]
    fn masking_by_hand_and_against_byte_at_a_time() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        // 'H' 0x48 ^ 0x37 = 0x7f, 'e' 0x65 ^ 0xfa = 0x9f, 'l' 0x6c ^ 0x21 = 0x4d,
        // 'l' 0x6c ^ 0x3d = 0x51, 'o' 0x6f ^ 0x37 = 0x58.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut hello = *b"Hello";
        mask(&mut hello, key);
        assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        mask(&mut hello, key);
        assert_eq!(&hello, b"Hello");
        // Twelve zero bytes (a whole word and a 4-byte tail): the key three
        // times over.
        let mut zeros = [0u8; 12];
        mask(&mut zeros, [1, 2, 3, 4]);
        assert_eq!(zeros, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
        // Every length across a few words, against the definition.
        let key = [0xa5, 0x0f, 0x3c, 0x81];
        for len in 0..41 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut fast = data.clone();
            mask(&mut fast, key);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    #[test]
    fn handshake_response_checks() {
        let acc = accept_key("dGhlIHNhbXBsZSBub25jZQ==");
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nsec-websocket-accept: {acc}\r\n");
        assert!(check_response(&ok, &acc).is_ok());
        assert!(check_response("HTTP/1.1 400 Bad Request\r\n", &acc).is_err());
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: AAAA\r\n";
        assert!(check_response(wrong, &acc).is_err());
        assert!(check_response("HTTP/1.1 101 Switching Protocols\r\n", &acc).is_err());
    }

    #[test]
    fn base64_and_urls() {
        assert_eq!(base64_encode(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        let t = Target::parse("ws://127.0.0.1:9001/broadcast").unwrap();
        assert_eq!(t.authority, "127.0.0.1:9001");
        assert_eq!(t.path, "/broadcast");
        assert_eq!(Target::parse("ws://localhost").unwrap().authority, "localhost:80");
        let t = Target::parse("wss://example.com/x").unwrap();
        assert_eq!((t.authority.as_str(), t.tls_host.as_deref()), ("example.com:443", Some("example.com")));
        let t = Target::parse("wss://127.0.0.1:8443").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str(), t.tls_host.as_deref()),
            ("127.0.0.1:8443", "/", Some("127.0.0.1"))
        );
        assert!(Target::parse("http://x").is_err());
    }
}

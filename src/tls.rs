//! TLS for `wss://` clients and listeners (feature `tls`), with rustls and
//! its `ring` crypto provider.
//!
//! - Server: [`Listener::tls`](crate::Listener::tls) serves every
//!   connection over TLS (HTTP and WebSocket still share the port); for one
//!   stream, wrap it in [`TlsStream::server`] and hand it to
//!   [`Server::new`](crate::Server::new) or [`accept`](crate::accept).
//!   [`load_server_config`] reads a PEM certificate chain and key.
//! - Client: `wss://` URLs work with [`Client`](crate::Client), trusting
//!   the Mozilla roots of the `webpki-roots` crate
//!   ([`default_client_config`]) and checking the certificate against the
//!   URL's host (also sent as SNI);
//!   [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config) takes
//!   other roots or a client certificate. A `wss://` URL is never served in
//!   plaintext.
//!
//! The TLS handshake runs as the connection thread reads the HTTP head,
//! and is bounded by [`Config::handshake_timeout`](crate::Config) together
//! with the head: a peer that connects and sends nothing, or stalls
//! half-way, is dropped when it expires. The connection thread does the
//! handshake's socket reads and writes; its computing steps (key exchange,
//! signature) run on a few shared threads, as many as cores (at most 4),
//! and the connection thread waits for each. A step never waits for the
//! network, so a stalled peer holds none of those threads. This keeps the
//! crypto's deep stack and its malloc leftovers off every connection
//! thread, which keeps what it touches for good: an idle `wss://`
//! connection costs the server about 29 KiB (41.7 with the handshake on
//! the connection thread; 1,000 connections, ECDSA P-256 certificate),
//! and the handshake about 0.1 ms more CPU.
//!
//! # Errors
//!
//! A TLS failure (an untrusted certificate, a bad record, an alert from the
//! peer) reaches the caller as [`Error::Tls`] with
//! [`ErrorKind::InvalidData`](io::ErrorKind::InvalidData) carrying the
//! [`rustls::Error`]; [`rustls_error`] finds it. A plaintext HTTP request
//! sent to a TLS port is answered with a plaintext `400 Bad Request` saying
//! so, and the connection ends.
//!
//! # Locking
//!
//! The reading half stays on the connection thread while writers use the
//! writing half from any thread, so the rustls session is shared:
//!
//! - the reader reads the socket outside any lock, then locks the session
//!   briefly to feed it the ciphertext and take the plaintext out;
//! - a writer takes the *output* lock, then the session lock to encrypt (at
//!   most 64 KiB at a time) and take the resulting records, releases the
//!   session and writes the records to the socket while still holding the
//!   output lock: records reach the socket in the order they were made,
//!   and the reader never waits for a socket write;
//! - records the reader causes (handshake messages, alerts, key update
//!   replies, session tickets) are written by the reader if the output lock
//!   is free, or else by the thread holding it, which looks at the session
//!   once more before letting go (and lets go while holding the session
//!   lock, so no record is stranded);
//! - the [`Closer`] shuts the socket down at once even while a writer is
//!   blocked; it sends `close_notify` first only when no write is in
//!   progress, waiting at most a quarter of a second for it.
//!
//! Buffers are bounded: the session's outgoing buffers by
//! `set_buffer_limit` (64 KiB), its incoming plaintext by rustls' own limit
//! (16 KiB, and the reader drains it before feeding more), and the read
//! buffer, 1 KiB when idle, grows to one maximum-size record at most.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};

use crate::error::{Error, Result};
use crate::transport::{is_timeout, Closer, ReadHalf, Transport, WriteHalf};

/// Most ciphertext read from the socket at a time: one TLS record of the
/// largest size (16 KiB of plaintext plus header and expansion).
const READ_BUF: usize = (16 << 10) + 1024;
/// The read buffer of an idle connection. It doubles while reads fill it,
/// up to [`READ_BUF`], and comes back to this after a read that did not
/// fill this much. With a fixed 17 KiB buffer, 1,000 idle `wss://`
/// connections cost the server 53.9 KiB of RSS each; with this, 47.0.
const READ_BUF_IDLE: usize = 1024;
/// Limit on the session's outgoing plaintext and TLS buffers (rustls'
/// default, set explicitly: `None` would make them unbounded).
const SEND_BUFFER_LIMIT: usize = 64 << 10;
/// The records buffer is freed after a write that grew it past this.
const PENDING_KEEP: usize = 16 << 10;
/// Longest a [`Closer`] waits to send `close_notify`.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_millis(250);
/// The answer to a plaintext HTTP request on a TLS port.
const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 47\r\n\r\nthis port speaks TLS: use https:// or wss://.\r\n";

/// A TCP connection with a rustls session over it: a [`Transport`] whose
/// halves may be used from two threads at once.
///
/// ```no_run
/// use std::net::TcpListener;
/// use syncws::tls::{load_server_config, TlsStream};
///
/// let config = load_server_config("cert.pem".as_ref(), "key.pem".as_ref())?;
/// let listener = TcpListener::bind("127.0.0.1:8443")?;
/// let (stream, _) = listener.accept()?;
/// let mut ws = syncws::accept(TlsStream::server(stream, config)?)?;
/// let msg = ws.read()?;
/// ws.send(msg)?;
/// # Ok::<(), syncws::Error>(())
/// ```
pub struct TlsStream {
    socket: TcpStream,
    session: Connection,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.session {
            Connection::Client(_) => "client",
            Connection::Server(_) => "server",
        };
        f.debug_struct("TlsStream").field("side", &side).field("peer", &self.socket.peer_addr().ok()).finish()
    }
}

impl TlsStream {
    /// The server side of TLS over an accepted `socket`. No I/O happens
    /// here: the handshake runs as the connection is first read.
    pub fn server(socket: TcpStream, config: Arc<ServerConfig>) -> Result<TlsStream> {
        let session = ServerConnection::new(config).map_err(|e| Error::Tls(io_error(e)))?;
        Ok(TlsStream::new(socket, session.into()))
    }

    /// The client side of TLS over a connected `socket`; the server's
    /// certificate must be valid for `server_name` (a DNS name or an IP
    /// address), which is also sent as SNI. No I/O happens here.
    pub fn client(socket: TcpStream, config: Arc<ClientConfig>, server_name: &str) -> Result<TlsStream> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| Error::Url(format!("{server_name:?} is not a valid TLS server name")))?;
        let session = ClientConnection::new(config, name).map_err(|e| Error::Tls(io_error(e)))?;
        Ok(TlsStream::new(socket, session.into()))
    }

    fn new(socket: TcpStream, mut session: Connection) -> TlsStream {
        session.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsStream { socket, session }
    }
}

impl Transport for TlsStream {
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.socket.peer_addr().ok()
    }

    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)> {
        // Small messages must not wait for Nagle's algorithm.
        self.socket.set_nodelay(true)?;
        let first = matches!(self.session, Connection::Server(_));
        let shared = Arc::new(Shared {
            socket: self.socket,
            session: Mutex::new(self.session),
            out: Mutex::new(Outgoing { pending: Vec::new(), sent: 0, write_timeout: None }),
            quiet: AtomicBool::new(false),
        });
        let reader = TlsReader {
            shared: Arc::clone(&shared),
            buf: vec![0; READ_BUF_IDLE],
            start: 0,
            end: 0,
            first,
            handshaking: true,
        };
        Ok((Box::new(reader), Box::new(TlsWriter { shared })))
    }
}

/// What both halves share.
struct Shared {
    socket: TcpStream,
    session: Mutex<Connection>,
    /// Held while TLS records are taken from the session and written to
    /// the socket: the order records are made in is the order they leave.
    out: Mutex<Outgoing>,
    /// A plaintext request was answered in plaintext: no TLS alert may
    /// follow the answer.
    quiet: AtomicBool,
}

/// Records taken from the session and not yet written (all of them after a
/// write that failed part-way; they go out first next time).
struct Outgoing {
    pending: Vec<u8>,
    sent: usize,
    /// The socket's write timeout, as last set through the write half.
    write_timeout: Option<Duration>,
}

/// Locks `m`. The state behind these locks stays consistent between
/// statements (a panic can at worst leave records unsent, which fails the
/// connection's next write), so a poisoned lock means nothing more.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// A rustls error as the I/O error the halves report.
fn io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The [`rustls::Error`] behind `err`, if it is a TLS failure: an
/// untrusted certificate, a bad record, an alert from the peer.
///
/// ```no_run
/// match syncws::Client::connect("wss://self-signed.example") {
///     Err(e) if matches!(syncws::tls::rustls_error(&e), Some(syncws::rustls::Error::InvalidCertificate(_))) => {
///         eprintln!("the server's certificate is not trusted: {e}")
///     }
///     other => { /* ... */ }
/// }
/// ```
pub fn rustls_error(err: &Error) -> Option<&rustls::Error> {
    match err {
        Error::Tls(e) | Error::Io(e) => e.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// Moves every record the session has to send into `out`.
fn take_records(session: &mut Connection, out: &mut Vec<u8>) {
    while session.wants_write() {
        // Writing into a Vec cannot fail or stop short.
        match session.write_tls(out) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

impl Outgoing {
    /// Writes the pending records to the socket.
    fn send(&mut self, socket: &TcpStream) -> io::Result<()> {
        let mut socket = socket;
        while self.sent < self.pending.len() {
            match socket.write(&self.pending[self.sent..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the peer stopped accepting data")),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.sent = 0;
        if self.pending.capacity() > PENDING_KEEP {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        Ok(())
    }
}

impl Shared {
    fn session(&self) -> MutexGuard<'_, Connection> {
        lock(&self.session)
    }

    /// Writes the pending records and whatever else the session has to
    /// send, then lets go of `out`.
    fn flush(&self, mut out: MutexGuard<'_, Outgoing>) -> io::Result<()> {
        loop {
            out.send(&self.socket)?;
            let mut session = self.session();
            if !session.wants_write() {
                // Released while the session is held: a thread that queues
                // records after this finds `out` free, or held by a thread
                // that will look at the session again before letting go.
                drop(out);
                return Ok(());
            }
            take_records(&mut session, &mut out.pending);
        }
    }

    /// Sends what the session has to send, unless a writer is busy: it will
    /// send it before letting go.
    fn flush_if_idle(&self) -> io::Result<()> {
        match try_lock(&self.out) {
            Some(out) => self.flush(out),
            None => Ok(()),
        }
    }

    /// Sends `close_notify` if no write is in progress, waiting at most
    /// [`CLOSE_NOTIFY_WAIT`].
    fn close_notify(&self) {
        if self.quiet.load(Ordering::Acquire) {
            return;
        }
        let Some(mut out) = try_lock(&self.out) else { return };
        {
            let mut session = self.session();
            if session.is_handshaking() {
                return;
            }
            session.send_close_notify();
            take_records(&mut session, &mut out.pending);
        }
        let normal = out.write_timeout;
        let wait = normal.map_or(CLOSE_NOTIFY_WAIT, |t| t.min(CLOSE_NOTIFY_WAIT));
        // Only holders of `out` write to the socket, so the timeout changed
        // here affects no other write.
        if self.socket.set_write_timeout(Some(wait)).is_ok() {
            let _ = out.send(&self.socket);
            let _ = self.socket.set_write_timeout(normal);
        }
    }

    /// Answers a plaintext HTTP request in plaintext.
    fn refuse_plaintext(&self) {
        self.quiet.store(true, Ordering::Release);
        let mut out = lock(&self.out);
        out.pending.extend_from_slice(PLAINTEXT_REFUSAL);
        let _ = out.send(&self.socket);
    }
}

/// The reading half: one socket read per call, outside any lock.
struct TlsReader {
    shared: Arc<Shared>,
    /// Ciphertext read from the socket; `start..end` is not yet in the
    /// session (which takes it as its limits allow).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A server that has received nothing yet.
    first: bool,
    /// The session was handshaking when last looked at.
    handshaking: bool,
}

impl TlsReader {
    /// Under the session lock: hands out plaintext into `bufs`, feeding the
    /// session the ciphertext held as needed. `None` when more ciphertext
    /// must come from the socket first. Sends the records this causes.
    fn feed(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<Option<usize>> {
        if self.handshaking && self.start < self.end {
            let absorbed = self.absorb_handshake();
            self.handshaking = self.shared.session().is_handshaking();
            if let Err(e) = absorbed {
                // The session's alert, if it made one, still goes out.
                let _ = self.shared.flush_if_idle();
                return Err(e);
            }
        }
        self.feed_here(bufs)
    }

    /// Gives the session the handshake records held, on one of the shared
    /// handshake threads ([`handshakes`]). Their key exchange and signature
    /// run deep in the stack, and a connection thread keeps every stack page
    /// it ever touched, along with its malloc cache of the temporaries: done
    /// here, they cost each idle `wss://` connection about 18 KiB more.
    fn absorb_handshake(&mut self) -> io::Result<()> {
        let job = handshakes::Job {
            shared: Arc::clone(&self.shared),
            buf: std::mem::take(&mut self.buf),
            start: self.start,
            end: self.end,
        };
        let (buf, start, result) = handshakes::run(job);
        self.buf = buf;
        self.start = start;
        if self.buf.is_empty() {
            // A handshake thread failed and the buffer went with it.
            self.buf = vec![0; READ_BUF_IDLE];
            self.start = 0;
            self.end = 0;
        }
        result
    }

    fn feed_here(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<Option<usize>> {
        let mut session = self.shared.session();
        let result = loop {
            match take_plaintext(&mut session, bufs) {
                Ok(None) => {}
                other => break other,
            }
            if self.start == self.end {
                break Ok(None);
            }
            if let Err(e) = give_records(&mut session, &self.buf[..self.end], &mut self.start) {
                break Err(e);
            }
        };
        let wants_write = session.wants_write();
        drop(session);
        if wants_write {
            if let Err(e) = self.shared.flush_if_idle() {
                // A failed write is not a read timeout, whatever its kind:
                // the reader's caller must not take it for one.
                let e =
                    if is_timeout(&e) { io::Error::other(format!("sending TLS records timed out: {e}")) } else { e };
                if let Ok(None) = result {
                    return Err(e);
                }
            }
        }
        result
    }
}

/// Gives the session what it takes of the ciphertext `held[*start..]`,
/// advancing `start`, and has it process the records.
fn give_records(session: &mut Connection, held: &[u8], start: &mut usize) -> io::Result<()> {
    let mut rest = &held[*start..];
    match session.read_tls(&mut rest)? {
        // After close_notify the session takes nothing more.
        0 => *start = held.len(),
        n => *start += n,
    }
    session.process_new_packets().map_err(io_error)?;
    Ok(())
}

/// Takes plaintext out of the session into `bufs`: `Some(0)` at the end
/// of the stream, `None` when there is none yet.
///
/// The end of TCP without `close_notify` counts as the end of the stream:
/// everything syncws reads over TLS (HTTP heads and bodies with a length,
/// WebSocket frames) delimits itself, so a truncation is noticed above, and
/// many peers never send `close_notify`.
fn take_plaintext(session: &mut Connection, bufs: &mut [IoSliceMut<'_>]) -> io::Result<Option<usize>> {
    let mut total = 0;
    for buf in bufs.iter_mut().filter(|b| !b.is_empty()) {
        match session.reader().read(buf) {
            Ok(0) => return Ok(Some(total)),
            Ok(n) => {
                total += n;
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(total)),
            Err(e) if total > 0 => {
                log::debug!("tls read after {total} bytes: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((total > 0).then_some(total))
}

impl TlsReader {
    /// Before a socket read (the session has taken everything read
    /// before): doubles the buffer if the last read filled it, and goes
    /// back to the idle size if the last read was small.
    fn size_buffer(&mut self) {
        let last = self.end;
        if last == self.buf.len() && last < READ_BUF {
            self.buf.resize((last * 2).min(READ_BUF), 0);
        } else if last < READ_BUF_IDLE && self.buf.len() > READ_BUF_IDLE {
            self.buf = vec![0; READ_BUF_IDLE];
        }
        self.start = 0;
        self.end = 0;
    }
}

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_vectored(&mut [IoSliceMut::new(buf)])
    }

    /// Returns plaintext, or waits for the socket once (bounded by the read
    /// timeout). When what arrived decrypts to no plaintext (a partial
    /// record, handshake messages) the call fails with
    /// [`Interrupted`](io::ErrorKind::Interrupted), so that callers check
    /// their deadlines before the next wait.
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        if let Some(n) = self.feed(bufs)? {
            return Ok(n);
        }
        self.size_buffer();
        let n = (&self.shared.socket).read(&mut self.buf)?;
        if n == 0 {
            // The peer ended TCP: the session learns of it.
            let _ = self.shared.session().read_tls(&mut io::empty());
        } else {
            if std::mem::take(&mut self.first) && self.buf[0].is_ascii_uppercase() {
                // "GET / HTTP/1.1": a TLS record starts with a byte below 0x20.
                self.shared.refuse_plaintext();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plaintext HTTP request on a TLS port (answered 400)",
                ));
            }
            self.start = 0;
            self.end = n;
        }
        match self.feed(bufs)? {
            Some(n) => Ok(n),
            None => Err(io::ErrorKind::Interrupted.into()),
        }
    }
}

impl ReadHalf for TlsReader {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.shared.socket.set_read_timeout(timeout)
    }
}

/// The writing half.
struct TlsWriter {
    shared: Arc<Shared>,
}

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts up to 64 KiB of `bufs` and writes the records. If the
    /// socket write fails (a timeout), the plaintext is already in the
    /// session: the error is returned, and the records left over go out
    /// first on the next write.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let mut out = lock(&self.shared.out);
        out.send(&self.shared.socket)?;
        let accepted = {
            let mut session = self.shared.session();
            let n = session.writer().write_vectored(bufs)?;
            take_records(&mut session, &mut out.pending);
            n
        };
        self.shared.flush(out)?;
        if accepted == 0 {
            return Err(io::Error::other("the TLS session takes no more data (closed, or its handshake stalled)"));
        }
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.flush(lock(&self.shared.out))
    }
}

impl WriteHalf for TlsWriter {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut out = lock(&self.shared.out);
        self.shared.socket.set_write_timeout(timeout)?;
        out.write_timeout = timeout;
        Ok(())
    }

    fn closer(&self) -> Closer {
        let shared = Arc::clone(&self.shared);
        Arc::new(move |how| {
            if how != Shutdown::Read {
                shared.close_notify();
            }
            let _ = shared.socket.shutdown(how);
        })
    }
}

/// The ring crypto provider, which every config built here uses: the
/// process-wide default may be unset, or another provider.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration `wss://` URLs use unless
/// [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config) gives
/// another: the Mozilla roots from `webpki-roots`, TLS 1.2 and 1.3 with
/// the ring provider, ALPN `http/1.1`, no client certificate. Built once.
///
/// To trust other roots, build a config the same way:
///
/// ```
/// use std::sync::Arc;
/// use syncws::rustls::{self, ClientConfig, RootCertStore};
///
/// let mut roots = RootCertStore::empty();
/// // roots.add(my_ca_certificate)?;
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let config = ClientConfig::builder_with_provider(provider)
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(roots)
///     .with_no_client_auth();
/// let builder = syncws::Client::builder().tls_config(Arc::new(config));
/// # Ok::<(), rustls::Error>(())
/// ```
pub fn default_client_config() -> Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(Arc::clone(config));
    }
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}

/// A server configuration from a PEM certificate chain (the server's
/// certificate first) and a PEM private key (PKCS#8, PKCS#1 or SEC1): TLS
/// 1.2 and 1.3 with the ring provider, ALPN `http/1.1`, no client
/// certificates.
///
/// ```no_run
/// let config = syncws::tls::load_server_config("cert.pem".as_ref(), "key.pem".as_ref())?;
/// syncws::Listener::bind("0.0.0.0:8443")?.tls(config).serve(|_server| { /* callbacks */ })?;
/// # Ok::<(), syncws::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Config`] naming the file, if one cannot be read, holds no
/// certificate or key, or the key does not match the certificate.
pub fn load_server_config(cert_chain: &Path, private_key: &Path) -> Result<Arc<ServerConfig>> {
    let bad = |path: &Path, what: &dyn fmt::Display| Error::Config(format!("tls: {}: {what}", path.display()));
    let certs = CertificateDer::pem_file_iter(cert_chain)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert_chain, &e))?;
    if certs.is_empty() {
        return Err(bad(cert_chain, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| bad(private_key, &e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(private_key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The shared threads that run the CPU-heavy steps of TLS handshakes (see
/// `TlsReader::absorb_handshake`). A step is pure computation on records
/// already read: it never waits for the network, so a peer that stalls its
/// handshake holds no handshake thread. There are as many threads as
/// cores (at most 4), started on first use.
mod handshakes {
    use std::io;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{Arc, OnceLock};

    use crossbeam_channel as cb;

    use super::{give_records, Shared};

    /// Stack of a handshake thread: rustls and ring use a small part of it.
    const STACK: usize = 256 << 10;

    /// Handshake records read from the socket, `buf[start..end]`, for
    /// `shared`'s session; `start` advances as the session takes them.
    pub(super) struct Job {
        pub(super) shared: Arc<Shared>,
        pub(super) buf: Vec<u8>,
        pub(super) start: usize,
        pub(super) end: usize,
    }

    /// The job's buffer and how far the session took it, and the outcome.
    pub(super) type Done = (Vec<u8>, usize, io::Result<()>);
    /// Where jobs go, each with the channel its answer comes back on.
    type Queue = cb::Sender<(Job, cb::Sender<Done>)>;

    /// Runs `job` on a handshake thread, or on this one if none can be
    /// started.
    pub(super) fn run(mut job: Job) -> Done {
        static POOL: OnceLock<Option<Queue>> = OnceLock::new();
        if let Some(pool) = POOL.get_or_init(start) {
            let (reply_tx, reply_rx) = cb::bounded(1);
            match pool.send((job, reply_tx)) {
                Ok(()) => {
                    // Every job is answered (a panic included); only a
                    // thread that died outright loses one.
                    return reply_rx
                        .recv()
                        .unwrap_or_else(|_| (Vec::new(), 0, Err(io::Error::other("a TLS handshake thread died"))));
                }
                Err(cb::SendError((back, _))) => job = back,
            }
        }
        let result = absorb(&mut job);
        (job.buf, job.start, result)
    }

    fn start() -> Option<Queue> {
        let (tx, rx) = cb::unbounded::<(Job, cb::Sender<Done>)>();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned =
                std::thread::Builder::new().name(format!("syncws-tls-{i}")).stack_size(STACK).spawn(move || {
                    for (mut job, reply) in rx {
                        let result = catch_unwind(AssertUnwindSafe(|| absorb(&mut job)))
                            .unwrap_or_else(|_| Err(io::Error::other("a TLS handshake step panicked")));
                        let _ = reply.send((job.buf, job.start, result));
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => log::warn!("cannot start a TLS handshake thread: {e}"),
            }
        }
        (started > 0).then_some(tx)
    }

    /// Gives the session the records held while it is handshaking.
    fn absorb(job: &mut Job) -> io::Result<()> {
        let mut session = job.shared.session();
        while job.start < job.end && session.is_handshaking() {
            give_records(&mut session, &job.buf[..job.end], &mut job.start)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// The TLS reader behind a read half made by [`TlsStream::split`].
    fn tls_reader(half: &dyn ReadHalf) -> &TlsReader {
        let any: &dyn std::any::Any = half;
        any.downcast_ref().expect("a TlsReader")
    }

    /// Reads until plaintext (or the end) comes, going past reads that
    /// produced none.
    fn read_plaintext(reader: &mut dyn ReadHalf, buf: &mut [u8]) -> usize {
        loop {
            match reader.read(buf) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into();
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// The reader's buffer grows while full records keep coming and goes
    /// back to the idle size once the traffic is small again.
    #[test]
    fn the_read_buffer_grows_for_bursts_and_shrinks_when_idle() {
        let (server_config, client_config) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (small_go, small_go_rx) = mpsc::channel::<()>();
        let (written, written_rx) = mpsc::channel::<()>();
        let (start, start_rx) = mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let mut sock = TcpStream::connect(addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            sock.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut conn = ClientConnection::new(client_config, name).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).unwrap();
            }
            start_rx.recv().unwrap();
            // 48 KB: all of it fits in the socket buffers before the
            // server reads, so its reads fill the buffer whatever the load.
            for _ in 0..6 {
                conn.writer().write_all(&[7u8; 8000]).unwrap();
                while conn.wants_write() {
                    conn.write_tls(&mut sock).unwrap();
                }
            }
            written.send(()).unwrap();
            small_go_rx.recv().unwrap();
            conn.writer().write_all(b"small").unwrap();
            conn.write_tls(&mut sock).unwrap();
            small_go_rx.recv().ok();
        });
        let (sock, _) = listener.accept().unwrap();
        let (mut reader, _writer) = TlsStream::server(sock, server_config).unwrap().split().unwrap();
        reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(tls_reader(&*reader).buf.len(), READ_BUF_IDLE);
        // The handshake first (small records: the buffer stays small).
        let mut out = vec![0u8; 64 << 10];
        while tls_reader(&*reader).shared.session().is_handshaking() {
            match reader.read(&mut out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => panic!("{other:?} during the handshake"),
            }
        }
        start.send(()).unwrap();
        written_rx.recv().unwrap();
        let mut got = 0;
        let mut largest = 0;
        while got < 48_000 {
            let n = read_plaintext(&mut *reader, &mut out);
            assert!(n > 0, "ended after {got} bytes");
            assert!(out[..n].iter().all(|&b| b == 7));
            got += n;
            largest = largest.max(tls_reader(&*reader).buf.len());
        }
        assert_eq!(got, 48_000);
        assert_eq!(largest, READ_BUF, "full records doubled the buffer up to one record");
        small_go.send(()).unwrap();
        let n = read_plaintext(&mut *reader, &mut out);
        assert_eq!(&out[..n], b"small");
        // The next read, waiting for more, starts from the idle size.
        reader.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let err = reader.read(&mut out).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert_eq!(tls_reader(&*reader).buf.len(), READ_BUF_IDLE);
        drop(small_go);
        client.join().unwrap();
    }

    /// A read timeout that expires with half a record received loses
    /// nothing: the record completes when the rest arrives.
    #[test]
    fn a_read_timeout_mid_record_loses_nothing() {
        let (server_config, client_config) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (half_sent, half_sent_rx) = mpsc::channel();
        let (go_on, go_on_rx) = mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let mut sock = TcpStream::connect(addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut conn = ClientConnection::new(client_config, name).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).unwrap();
            }
            conn.writer().write_all(b"hello, in one record").unwrap();
            let mut record = Vec::new();
            conn.write_tls(&mut record).unwrap();
            sock.write_all(&record[..record.len() / 2]).unwrap();
            half_sent.send(()).unwrap();
            go_on_rx.recv().unwrap();
            sock.write_all(&record[record.len() / 2..]).unwrap();
            go_on_rx.recv().ok();
        });
        let (sock, _) = listener.accept().unwrap();
        let (mut reader, _writer) = TlsStream::server(sock, server_config).unwrap().split().unwrap();
        reader.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 64];
        // Drive the handshake until the half record is on its way.
        let mut timeouts_after_half = 0;
        let mut half = false;
        while timeouts_after_half < 2 {
            if !half {
                half = half_sent_rx.try_recv().is_ok();
            }
            match reader.read(&mut buf) {
                Ok(n) => panic!("read {n} bytes of plaintext before the record was whole"),
                Err(e) if is_timeout(&e) => timeouts_after_half += usize::from(half),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{e}"),
            }
        }
        go_on.send(()).unwrap();
        reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let n = read_plaintext(&mut *reader, &mut buf);
        assert_eq!(&buf[..n], b"hello, in one record");
        go_on.send(()).unwrap();
        client.join().unwrap();
    }

    #[test]
    fn bad_pem_files_are_config_errors_naming_the_file() {
        let missing = Path::new("/nonexistent/cert.pem");
        match load_server_config(missing, missing) {
            Err(Error::Config(msg)) => assert!(msg.contains("/nonexistent/cert.pem"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}

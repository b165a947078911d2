//! [`TlsStream`], its [`Transport`] impl and the two halves it splits
//! into: the reader, which feeds the shared session ciphertext from the
//! socket, and the writer.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::io_error;
use super::pool;
use super::session::{give_records, lock, take_plaintext, take_records, Shared, SEND_BUFFER_LIMIT};
use crate::error::{Error, Result};
use crate::transport::{is_timeout, Closer, ReadHalf, Transport, WriteHalf};

/// Most ciphertext read from the socket at a time: one TLS record of the
/// largest size (16 KiB of plaintext plus header and expansion).
const READ_BUF: usize = (16 << 10) + 1024;
/// The read buffer of an idle connection. It doubles while reads fill it,
/// up to [`READ_BUF`], and comes back to this after a read that did not
/// fill this much, so an idle connection does not hold a record-sized
/// buffer (the memory saved: `bench-results/notes.md`).
const READ_BUF_IDLE: usize = 1024;

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

    /// [`Transport::split`], keeping the halves' types.
    fn halves(self) -> io::Result<(TlsReader, TlsWriter)> {
        // Small messages must not wait for Nagle's algorithm.
        self.socket.set_nodelay(true)?;
        let first = matches!(self.session, Connection::Server(_));
        let shared = Arc::new(Shared::new(self.socket, self.session));
        let reader = TlsReader {
            shared: Arc::clone(&shared),
            buf: vec![0; READ_BUF_IDLE],
            start: 0,
            end: 0,
            first,
            handshaking: true,
        };
        Ok((reader, TlsWriter { shared }))
    }
}

impl Transport for TlsStream {
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.socket.peer_addr().ok()
    }

    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)> {
        let (reader, writer) = self.halves()?;
        Ok((Box::new(reader), Box::new(writer)))
    }

    fn is_encrypted(&self) -> bool {
        true
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
    /// handshake threads ([`pool`]). Their key exchange and signature
    /// run deep in the stack, and a connection thread keeps every stack page
    /// it ever touched, along with its malloc cache of the temporaries: done
    /// here, they would make every idle `wss://` connection bigger
    /// (`bench-results/notes.md`).
    fn absorb_handshake(&mut self) -> io::Result<()> {
        let job = pool::Job {
            shared: Arc::clone(&self.shared),
            buf: std::mem::take(&mut self.buf),
            start: self.start,
            end: self.end,
        };
        let (buf, start, result) = pool::run(job);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::config::provider;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::RootCertStore;
    use std::net::TcpListener;
    use std::sync::mpsc;

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
        let (mut reader, _writer) = TlsStream::server(sock, server_config).unwrap().halves().unwrap();
        reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(reader.buf.len(), READ_BUF_IDLE);
        // The handshake first (small records: the buffer stays small).
        let mut out = vec![0u8; 64 << 10];
        while reader.shared.session().is_handshaking() {
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
            let n = read_plaintext(&mut reader, &mut out);
            assert!(n > 0, "ended after {got} bytes");
            assert!(out[..n].iter().all(|&b| b == 7));
            got += n;
            largest = largest.max(reader.buf.len());
        }
        assert_eq!(got, 48_000);
        assert_eq!(largest, READ_BUF, "full records doubled the buffer up to one record");
        small_go.send(()).unwrap();
        let n = read_plaintext(&mut reader, &mut out);
        assert_eq!(&out[..n], b"small");
        // The next read, waiting for more, starts from the idle size.
        reader.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let err = reader.read(&mut out).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert_eq!(reader.buf.len(), READ_BUF_IDLE);
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
        let (mut reader, _writer) = TlsStream::server(sock, server_config).unwrap().halves().unwrap();
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
        let n = read_plaintext(&mut reader, &mut buf);
        assert_eq!(&buf[..n], b"hello, in one record");
        go_on.send(()).unwrap();
        client.join().unwrap();
    }
}

//! The byte stream under a connection, split into a read side and a write
//! side that can live on different threads.
//!
//! Plain TCP shares one socket between the halves (`&TcpStream` reads and
//! writes), so a connection costs one file descriptor. A TLS stream would
//! share its session behind a short-held lock the same way. Nothing above
//! this module clones a socket.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Shuts a connection down from any thread, even while another thread is
/// blocked writing to it: shutting down `Read` (or `Both`) also wakes a
/// thread blocked reading.
pub type Closer = Arc<dyn Fn(Shutdown) + Send + Sync>;

/// The reading half of a transport.
///
/// A read may fail with [`Interrupted`](io::ErrorKind::Interrupted) when
/// bytes arrived that give nothing to return yet (part of a TLS record);
/// callers check their deadlines and read again.
pub trait ReadHalf: Read + Send + 'static {
    /// Sets how long one `read` may block; `None` blocks forever.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

/// The writing half of a transport.
pub trait WriteHalf: Write + Send + 'static {
    /// Sets how long one `write` may block; `None` blocks forever.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// A handle that shuts the whole connection down without taking this
    /// half (which may be busy in a blocking write on another thread).
    fn closer(&self) -> Closer;

    /// Shuts down the given direction(s) of the whole connection; errors
    /// (already closed) are ignored.
    fn shutdown(&self, how: Shutdown) {
        (self.closer())(how)
    }
}

/// A connected byte stream that syncws can run a WebSocket over.
///
/// Implemented for [`TcpStream`]; implement it for other streams (TLS, Unix
/// sockets) to use them with [`Server`](crate::Server) and
/// [`WebSocket`](crate::WebSocket).
pub trait Transport: Send + 'static {
    /// The address of the peer, if it has one.
    fn peer_addr(&self) -> Option<SocketAddr>;
    /// Splits into a read half and a write half.
    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)>;
}

/// One half of a TCP connection; both halves share the socket.
struct TcpHalf(Arc<TcpStream>);

impl Read for TcpHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self.0).read_vectored(bufs)
    }
}

impl Write for TcpHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self.0).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ReadHalf for TcpHalf {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }
}

impl WriteHalf for TcpHalf {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
    }

    fn closer(&self) -> Closer {
        let socket = Arc::clone(&self.0);
        Arc::new(move |how| {
            let _ = socket.shutdown(how);
        })
    }
}

impl Transport for TcpStream {
    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }

    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)> {
        // Small messages must not wait for Nagle's algorithm.
        self.set_nodelay(true)?;
        let socket = Arc::new(self);
        Ok((Box::new(TcpHalf(Arc::clone(&socket))), Box::new(TcpHalf(socket))))
    }
}

/// True for the error kinds a read or write timeout produces (`WouldBlock`
/// on Unix, `TimedOut` on Windows).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

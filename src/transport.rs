//! The byte stream under a connection, split into a read side and a write
//! side that can live on different threads.
//!
//! Plain TCP shares one socket between the halves (`&TcpStream` reads and
//! writes), so a connection costs one file descriptor. A TLS stream would
//! share its session behind a short-held lock the same way. Nothing above
//! this module clones a socket.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

mod socket;
#[cfg(unix)]
mod unix;
mod unsplit;

pub(crate) use socket::Socket;
use socket::SocketHalf;

pub use unsplit::Unsplit;

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

    /// One read into `first`, which may be uninitialised, then `second`,
    /// as [`read_vectored`](Read::read_vectored) would: returns the byte
    /// count, of which the first `min(n, first.len())` are in `first`, now
    /// initialised. `None` when this half cannot (the default): the caller
    /// then reads into zero-filled memory and does not ask again.
    ///
    /// A large payload is read this way straight into its message's
    /// buffer, saving the zero fill std's reads need. The caller sets the
    /// message's length over those bytes on the strength of the count, so
    /// only syncws's own halves may answer: the last parameter's type
    /// cannot be named outside syncws, which keeps other implementations on
    /// the default.
    fn read_uninit(
        &mut self,
        first: &mut [MaybeUninit<u8>],
        second: &mut [u8],
        _sealed: sealed::Token,
    ) -> Option<io::Result<usize>> {
        let _ = (first, second);
        None
    }
}

/// Keeps [`ReadHalf::read_uninit`] to syncws's own halves.
mod sealed {
    /// Passed to [`ReadHalf::read_uninit`](super::ReadHalf::read_uninit):
    /// nameable and constructible only inside syncws.
    #[derive(Clone, Copy, Debug)]
    pub struct Token(pub(crate) ());
}

/// The token for calling [`ReadHalf::read_uninit`].
pub(crate) const SEALED: sealed::Token = sealed::Token(());

/// The writing half of a transport.
pub trait WriteHalf: Write + Send + 'static {
    /// Sets how long one `write` may block; `None` blocks forever.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// A handle that shuts the whole connection down without taking this
    /// half (which may be busy in a blocking write on another thread).
    fn closer(&self) -> Closer;

    /// Writes what fits of `buf` now, without blocking: returns how many
    /// bytes were taken, or an error of kind [`io::ErrorKind::WouldBlock`]
    /// when none can be taken now.
    ///
    /// A [`Sender`](crate::Sender) on another thread than the connection's
    /// own uses it to write a small frame itself when nothing else is
    /// queued, instead of waking the connection's writer thread; whatever
    /// is not taken goes to that thread. The default answers
    /// [`io::ErrorKind::Unsupported`], after which the connection stops
    /// trying: a transport without a non-blocking write keeps the
    /// writer-thread path.
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = buf;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Shuts down the given direction(s) of the whole connection; errors
    /// (already closed) are ignored.
    fn shutdown(&self, how: Shutdown) {
        (self.closer())(how)
    }
}

/// What stands in for a connection's halves once it has ended and let its
/// socket go: reads and writes fail, shutting down does nothing.
pub(crate) struct Released;

impl Read for Released {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::NotConnected.into())
    }
}

impl ReadHalf for Released {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Released {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::NotConnected.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteHalf for Released {
    fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn closer(&self) -> Closer {
        Arc::new(|_| {})
    }
}

/// A connected byte stream that syncws can run a WebSocket over.
///
/// Implemented for [`TcpStream`], for `std::os::unix::net::UnixStream` (on
/// Unix), for `tls::TlsStream` (feature `tls`), and for [`Unsplit`], which
/// takes any `Read + Write + Send` stream (one that cannot be split, such as
/// the stream another HTTP server hands over after an upgrade) for the
/// single-threaded API. Implement it for other streams to use them with
/// [`Server`](crate::Server) and [`WebSocket`](crate::WebSocket).
pub trait Transport: Send + 'static {
    /// The address of the peer, if it has one.
    fn peer_addr(&self) -> Option<SocketAddr>;
    /// Splits into a read half and a write half.
    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)>;

    /// Whether the stream encrypts what it carries (TLS). A client refuses
    /// a `wss://` URL over a transport that says no, so that it is never
    /// served in plaintext; the default says no. `tls::TlsStream` (feature
    /// `tls`) says yes; a TLS transport of your own should too.
    fn is_encrypted(&self) -> bool {
        false
    }
}

impl Transport for TcpStream {
    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }

    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)> {
        // Small messages must not wait for Nagle's algorithm.
        self.set_nodelay(true)?;
        Ok(SocketHalf::pair(self))
    }
}

/// True for the error kinds a read or write timeout produces (`WouldBlock`
/// on Unix, `TimedOut` on Windows).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

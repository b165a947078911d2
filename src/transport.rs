//! The byte stream under a connection, split into a read side and a write
//! side that can live on different threads.
//!
//! Plain TCP shares one socket between the halves (`&TcpStream` reads and
//! writes), so a connection costs one file descriptor. A TLS stream would
//! share its session behind a short-held lock the same way. Nothing above
//! this module clones a socket.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

#[cfg(unix)]
mod unix;
mod unsplit;

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

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn read_uninit(
        &mut self,
        first: &mut [MaybeUninit<u8>],
        second: &mut [u8],
        _sealed: sealed::Token,
    ) -> Option<io::Result<usize>> {
        Some(read_uninit(&self.0, first, second))
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

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_dontwait(&self.0, buf)
    }
}

/// One `send(2)` with `MSG_DONTWAIT`: non-blocking for this call only, so
/// the socket stays blocking (with its write timeout) for the writer
/// thread and the connection's own thread. `MSG_NOSIGNAL`: a peer that has
/// gone away gives `EPIPE`, not `SIGPIPE` (std's own writes do the same).
///
/// std has no per-call non-blocking send, and switching the whole socket
/// with `set_nonblocking` would race with the threads writing to it
/// blocking. `libc` is already in the build through `getrandom`, so this
/// costs no new crate; the safe wrappers (`rustix`, `socket2`) would add
/// crates for this one call. Measured reason for the `unsafe`: it takes the
/// futex wake-up and context switch of the writer thread out of every
/// cross-thread send (broadcast, issue #6).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(crate) fn send_dontwait(socket: &impl std::os::fd::AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the descriptor belongs to `socket`, which is borrowed and so
    // stays open for the whole call; `buf.as_ptr()` and `buf.len()` describe
    // one initialised, readable slice that outlives the call, and `send`
    // only reads from it and keeps no pointer after it returns.
    let n = unsafe {
        libc::send(socket.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    // A negative return (only -1) means failure, with the cause in errno.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// One `readv(2)` into `first`, which may be uninitialised, then `second`:
/// returns the byte count, of which the first `min(n, first.len())` are in
/// `first`, now initialised.
///
/// A large payload is read straight into its message's buffer. std's
/// reads need initialised memory, which costs zero-filling the buffer
/// before each message, a visible share of the server's CPU with large
/// messages (profile and saving: `bench-results/notes.md`). The socket's
/// read timeout applies as to any read.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(crate) fn read_uninit(
    socket: &impl std::os::fd::AsRawFd,
    first: &mut [MaybeUninit<u8>],
    second: &mut [u8],
) -> io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: first.as_mut_ptr().cast(), iov_len: first.len() },
        libc::iovec { iov_base: second.as_mut_ptr().cast(), iov_len: second.len() },
    ];
    // SAFETY: the descriptor belongs to `socket`, borrowed for the whole
    // call. Each iovec describes one writable slice, borrowed mutably for
    // the call, so nothing else reads or writes it meanwhile; `readv`
    // writes only bytes (any value is a valid `u8` and `MaybeUninit<u8>`),
    // fills the iovecs in order, and keeps no pointer after it returns.
    let n = unsafe { libc::readv(socket.as_raw_fd(), iov.as_ptr(), 2) };
    // A negative return (only -1) means failure, with the cause in errno.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
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

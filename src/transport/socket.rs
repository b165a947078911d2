//! The halves of a kernel socket, TCP or Unix: both share one socket
//! (`&TcpStream` and `&UnixStream` read and write), timeouts are the
//! socket's, the [`Closer`] is `shutdown(2)`, and on Linux the
//! cross-thread fast path (`send` with `MSG_DONTWAIT`) and reads into
//! uninitialised memory work on the descriptor directly.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::mem::MaybeUninit;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
use super::sealed;
use super::{Closer, ReadHalf, WriteHalf};

/// A connected kernel socket that both halves can share: `&Self` reads and
/// writes, and timeouts and shutdown take `&self`.
pub(crate) trait Socket: Send + Sync + 'static
where
    for<'a> &'a Self: Read + Write,
{
    /// The descriptor, for the Linux-only calls std does not offer.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn fd(&self) -> &impl std::os::fd::AsRawFd;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;
}

/// Implements [`Socket`] by delegating to the std type's own methods.
macro_rules! socket {
    ($ty:ty) => {
        impl Socket for $ty {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            fn fd(&self) -> &impl std::os::fd::AsRawFd {
                self
            }
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$ty>::set_read_timeout(self, timeout)
            }
            fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$ty>::set_write_timeout(self, timeout)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$ty>::shutdown(self, how)
            }
            fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
                <$ty>::set_nonblocking(self, nonblocking)
            }
        }
    };
}

socket!(TcpStream);
#[cfg(unix)]
socket!(std::os::unix::net::UnixStream);

/// One half of a socket connection; both halves share the socket.
pub(crate) struct SocketHalf<S>(Arc<S>);

impl<S: Socket> SocketHalf<S>
where
    for<'a> &'a S: Read + Write,
{
    /// The two halves of `socket`.
    pub(crate) fn pair(socket: S) -> (Box<dyn ReadHalf>, Box<dyn WriteHalf>) {
        let socket = Arc::new(socket);
        (Box::new(SocketHalf(Arc::clone(&socket))), Box::new(SocketHalf(socket)))
    }
}

impl<S> Read for SocketHalf<S>
where
    for<'a> &'a S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self.0).read_vectored(bufs)
    }
}

impl<S> Write for SocketHalf<S>
where
    for<'a> &'a S: Write,
{
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

impl<S: Socket> ReadHalf for SocketHalf<S>
where
    for<'a> &'a S: Read + Write,
{
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
        Some(read_uninit(self.0.fd(), first, second))
    }
}

impl<S: Socket> WriteHalf for SocketHalf<S>
where
    for<'a> &'a S: Read + Write,
{
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
        send_dontwait(self.0.fd(), buf)
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
fn send_dontwait(socket: &impl std::os::fd::AsRawFd, buf: &[u8]) -> io::Result<usize> {
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
fn read_uninit(
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

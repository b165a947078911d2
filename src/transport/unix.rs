//! [`Transport`] for [`UnixStream`]: WebSocket over Unix domain sockets.
//!
//! The same shape as TCP: both halves share one socket (`&UnixStream`
//! reads and writes), read and write timeouts are the socket's, the
//! [`Closer`] is `shutdown(2)`, and on Linux the cross-thread fast path
//! (`send` with `MSG_DONTWAIT`) and the reads into uninitialised memory
//! work as for TCP. So everything a TCP connection offers (deadlines,
//! [`Sender`](crate::Sender)s on any thread, [`WebSocket::split`](crate::WebSocket::split))
//! works over a Unix socket.
//!
//! A Unix socket's peer has no IP address: [`Transport::peer_addr`] is
//! `None`, so `WsHandshake::addr` and `Server::peer_addr` are `None` too,
//! and per-address caps do not apply.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
use super::sealed;
use super::{Closer, ReadHalf, Transport, WriteHalf};

/// One half of a Unix socket connection; both halves share the socket.
struct UnixHalf(Arc<UnixStream>);

impl Read for UnixHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self.0).read_vectored(bufs)
    }
}

impl Write for UnixHalf {
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

impl ReadHalf for UnixHalf {
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
        Some(super::read_uninit(&*self.0, first, second))
    }
}

impl WriteHalf for UnixHalf {
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
        super::send_dontwait(&*self.0, buf)
    }
}

/// A Unix socket connection: `syncws::accept(stream)`,
/// `Server::new(stream, None)` and `ClientBuilder::connect_on(stream)` take
/// it as they take a `TcpStream`.
///
/// ```no_run
/// use std::os::unix::net::UnixListener;
/// let listener = UnixListener::bind("/tmp/app.sock")?;
/// let (stream, _) = listener.accept()?;
/// let mut ws = syncws::accept(stream)?;
/// let msg = ws.read()?;
/// ws.send(msg)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Transport for UnixStream {
    /// Always `None`: a Unix socket's peer has no IP address.
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)> {
        let socket = Arc::new(self);
        Ok((Box::new(UnixHalf(Arc::clone(&socket))), Box::new(UnixHalf(socket))))
    }
}

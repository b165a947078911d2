//! [`Transport`] for [`UnixStream`]: WebSocket over Unix domain sockets.
//!
//! The same halves as TCP (`transport/socket.rs`): both share one socket,
//! read and write timeouts are the socket's, the closer is `shutdown(2)`,
//! and on Linux the cross-thread fast path (`send` with `MSG_DONTWAIT`)
//! and the reads into uninitialised memory work as for TCP. So everything a TCP connection offers (deadlines,
//! [`Sender`](crate::Sender)s on any thread, [`WebSocket::split`](crate::WebSocket::split))
//! works over a Unix socket.
//!
//! A Unix socket's peer has no IP address: [`Transport::peer_addr`] is
//! `None`, so `WsHandshake::addr` and `Server::peer_addr` are `None` too,
//! and per-address caps do not apply.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;

use super::{ReadHalf, SocketHalf, Transport, WriteHalf};

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
        Ok(SocketHalf::pair(self))
    }
}

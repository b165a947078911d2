//! [`Unsplit`]: a [`Transport`] over any `Read + Write + Send` stream,
//! including one that cannot be split into two halves.
//!
//! Every other transport gives its two halves one socket each can use
//! without waiting for the other (`&TcpStream` reads and writes, TLS keeps
//! its lock short), which is what lets one thread block in a read while
//! others send, and what lets a deadline cut a read short (the socket's
//! read timeout). A stream another HTTP server hands over after an upgrade
//! (tiny_http's `Request::upgrade` gives a `Box<dyn ReadWrite + Send>`) has
//! neither: reading and writing need `&mut` to the one stream, and there
//! is no timeout to set.
//!
//! # Design
//!
//! The halves share the stream behind one mutex. A read holds it for as
//! long as it blocks, so the stream serves the single-threaded API: one
//! thread reads, then sends, then reads again, and the lock is never
//! contended. Other shapes were weighed:
//!
//! - a dedicated `WebSocket` type without `split` would keep cross-thread
//!   sends out at compile time, but would repeat the whole plain API (and
//!   everything added to it later) for one kind of stream;
//! - failing a write when a read holds the lock (`try_lock`) would turn a
//!   race into a dead connection: the same send would work or kill the
//!   connection depending on timing.
//!
//! So an `Unsplit` connection is a plain [`WebSocket`](crate::WebSocket)
//! whose limits are documented and predictable:
//!
//! - a send from another thread waits until a read in progress returns
//!   (when the peer next sends something): cross-thread sends, the
//!   callback API's writer thread, [`WebSocket::split`](crate::WebSocket::split)
//!   across threads all work, but late;
//! - deadlines are not kept: [`ReadHalf::set_read_timeout`] and
//!   [`WriteHalf::set_write_timeout`] do nothing (the first call says so
//!   at `debug` level), so keepalive pings, the idle timeout, the close
//!   timeout and timed reads wait for the next bytes from the peer;
//! - shutting down in either direction drops the stream (closing it the
//!   way its own `Drop` does); from another thread while a read blocks, it
//!   is dropped as soon as that read returns.
//!
//! For cross-thread sends and deadlines, use a splittable transport: TCP,
//! TLS or a Unix socket.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use log::debug;

use super::{Closer, ReadHalf, Transport, WriteHalf};

/// A [`Transport`] over any `Read + Write + Send` stream, for the
/// single-threaded API: read and send on one thread.
///
/// Both halves share the stream behind a lock: a send from another thread
/// waits for a read in progress to return, and read and write timeouts
/// cannot be set, so keepalive, idle and close deadlines (and timed reads)
/// are not kept. Cross-thread sends and deadlines need a splittable
/// transport (TCP, TLS, Unix socket). Each write is followed by a `flush`,
/// so buffered streams work as they are. Shutting the connection down
/// drops the stream. [`Transport::peer_addr`] is `None`.
///
/// ```
/// use std::io::{Read, Write};
/// use syncws::{protocol::Role, transport::Unsplit, Config, OwnedMessage, WebSocket};
///
/// // Any `Read + Write + Send + 'static` stream: here one end of a TCP
/// // connection hidden behind a type that offers nothing else.
/// struct Opaque(std::net::TcpStream);
/// impl Read for Opaque {
///     fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> { self.0.read(buf) }
/// }
/// impl Write for Opaque {
///     fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> { self.0.write(buf) }
///     fn flush(&mut self) -> std::io::Result<()> { self.0.flush() }
/// }
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut peer = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let (stream, _) = listener.accept()?;
/// // The upgrade was answered elsewhere; what follows is WebSocket frames.
/// let mut ws = WebSocket::from_upgraded(Unsplit::new(Opaque(stream)), Vec::new(), Role::Server, Config::default())?;
/// ws.send(OwnedMessage::Text("hi".into()))?;
/// let mut frame = [0u8; 4];
/// peer.read_exact(&mut frame)?;
/// assert_eq!(&frame, b"\x81\x02hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Unsplit<S> {
    shared: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for Unsplit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsplit").finish_non_exhaustive()
    }
}

/// What both halves share.
struct Shared<S> {
    /// The stream; `None` once it was shut down (dropped).
    stream: Mutex<Option<S>>,
    /// A shutdown was asked for while the stream was in use: whoever holds
    /// it drops it when done.
    closing: AtomicBool,
    /// Whether the log already said that timeouts are not kept.
    told: AtomicBool,
}

impl<S: Read + Write + Send + 'static> Unsplit<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Unsplit<S> {
        let shared =
            Shared { stream: Mutex::new(Some(stream)), closing: AtomicBool::new(false), told: AtomicBool::new(false) };
        Unsplit { shared: Arc::new(shared) }
    }
}

impl<S: Read + Write + Send + 'static> Transport for Unsplit<S> {
    /// Always `None`: the stream does not say.
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn split(self) -> io::Result<(Box<dyn ReadHalf>, Box<dyn WriteHalf>)> {
        Ok((Box::new(Half(Arc::clone(&self.shared))), Box::new(Half(self.shared))))
    }
}

/// Either half: both lock the one stream.
struct Half<S>(Arc<Shared<S>>);

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Option<S>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the stream, unless it was shut down; drops the stream
    /// after `op` if a shutdown was asked for meanwhile.
    fn with<T>(&self, op: impl FnOnce(&mut S) -> io::Result<T>) -> io::Result<T> {
        let mut guard = self.lock();
        if self.closing.load(Ordering::Acquire) {
            *guard = None;
        }
        let result = match guard.as_mut() {
            Some(stream) => op(stream),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "the stream was shut down")),
        };
        if self.closing.load(Ordering::Acquire) {
            *guard = None;
        }
        result
    }

    /// Drops the stream now, or, while another thread uses it, as soon as
    /// that thread is done. Never blocks.
    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let taken = match self.stream.try_lock() {
            Ok(mut guard) => guard.take(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(TryLockError::WouldBlock) => None,
        };
        drop(taken);
    }

    /// A timeout was asked for: it cannot be set, and the log says so once.
    fn no_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout.is_some() && !self.told.swap(true, Ordering::Relaxed) {
            debug!("an Unsplit stream has no timeouts: deadlines wait for the peer's next bytes");
        }
        Ok(())
    }
}

impl<S: Read + Write> Read for Half<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.with(|s| s.read(buf))
    }
}

impl<S: Read + Write> Write for Half<S> {
    /// Writes and flushes, so a buffered stream sends each batch at once
    /// (the connection never calls `flush` itself).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.with(|s| {
            let n = s.write(buf)?;
            s.flush()?;
            Ok(n)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.with(|s| s.flush())
    }
}

impl<S: Read + Write + Send + 'static> ReadHalf for Half<S> {
    /// Does nothing: the stream has no timeout to set.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.no_timeout(timeout)
    }
}

impl<S: Read + Write + Send + 'static> WriteHalf for Half<S> {
    /// Does nothing: the stream has no timeout to set.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.no_timeout(timeout)
    }

    /// Drops the stream, whatever the direction asked: a stream with no
    /// half-close can only be closed whole.
    fn closer(&self) -> Closer {
        let shared = Arc::clone(&self.0);
        Arc::new(move |_how| shared.close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;
    use std::sync::mpsc;

    /// A stream over two channels, with a drop flag.
    struct Pipe {
        rx: mpsc::Receiver<Vec<u8>>,
        out: Arc<Mutex<Vec<u8>>>,
        flushed: Arc<Mutex<usize>>,
        dropped: mpsc::Sender<()>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.rx.recv() {
                Ok(bytes) => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    Ok(bytes.len())
                }
                Err(_) => Ok(0),
            }
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            *self.flushed.lock().unwrap() += 1;
            Ok(())
        }
    }

    impl Drop for Pipe {
        fn drop(&mut self) {
            let _ = self.dropped.send(());
        }
    }

    #[allow(clippy::type_complexity)]
    fn pipe() -> (Pipe, mpsc::Sender<Vec<u8>>, Arc<Mutex<Vec<u8>>>, Arc<Mutex<usize>>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let (dropped, was_dropped) = mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let flushed = Arc::new(Mutex::new(0));
        let pipe = Pipe { rx, out: Arc::clone(&out), flushed: Arc::clone(&flushed), dropped };
        (pipe, tx, out, flushed, was_dropped)
    }

    #[test]
    fn halves_share_the_stream_and_each_write_is_flushed() {
        let (pipe, tx, out, flushed, _dropped) = pipe();
        let (mut r, mut w) = Unsplit::new(pipe).split().unwrap();
        r.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        w.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(w.write(b"abc").unwrap(), 3);
        assert_eq!(*flushed.lock().unwrap(), 1);
        assert_eq!(*out.lock().unwrap(), b"abc");
        tx.send(b"xy".to_vec()).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"xy");
        assert_eq!(w.try_write(b"z").unwrap_err().kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn shutdown_drops_the_stream_and_later_use_fails() {
        let (pipe, _tx, _out, _flushed, dropped) = pipe();
        let (mut r, w) = Unsplit::new(pipe).split().unwrap();
        w.shutdown(Shutdown::Write);
        dropped.recv_timeout(Duration::from_secs(5)).expect("dropped at once");
        assert_eq!(r.read(&mut [0u8; 4]).unwrap_err().kind(), io::ErrorKind::NotConnected);
    }

    /// A shutdown from another thread while a read blocks does not wait
    /// for it: the stream is dropped when the read returns.
    #[test]
    fn shutdown_during_a_blocked_read_takes_effect_after_it() {
        let (pipe, tx, _out, _flushed, dropped) = pipe();
        let (mut r, w) = Unsplit::new(pipe).split().unwrap();
        let (started, reading) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            started.send(()).unwrap();
            let first = r.read(&mut [0u8; 4]).map_err(|e| e.kind());
            let second = r.read(&mut [0u8; 4]).map_err(|e| e.kind());
            (first, second)
        });
        reading.recv().unwrap();
        // Whether or not the reader holds the lock yet, this returns at once.
        w.shutdown(Shutdown::Both);
        // Gone already if the read started after the shutdown.
        let _ = tx.send(b"late".to_vec());
        let (first, second) = reader.join().unwrap();
        assert!(matches!(first, Ok(4) | Err(io::ErrorKind::NotConnected)), "{first:?}");
        assert_eq!(second, Err(io::ErrorKind::NotConnected));
        dropped.recv_timeout(Duration::from_secs(5)).expect("dropped after the read");
    }
}

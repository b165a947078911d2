//! Serving a Unix domain socket: [`serve_unix`], one thread per
//! connection, with the connection cap and the graceful shutdown of
//! [`Listener`](crate::Listener).
//!
//! A `UnixStream` is a [`Transport`](crate::Transport) like a `TcpStream`,
//! so [`accept`](crate::accept) and [`Server::new`] take it as they are;
//! the client connects with `ws+unix:///path/to.sock:/request/path` URLs.
//! What is specific to Unix sockets:
//!
//! - the peer has no IP address: [`Server::peer_addr`] and
//!   `WsHandshake::addr` are `None` (`syncws exec unix:PATH` gives its
//!   programs an empty `REMOTE_ADDR`), and
//!   [`Config::max_connections_per_ip`] does not apply;
//! - who may connect is decided by the socket file's permissions, which
//!   the caller sets; the `Origin` policy still applies to requests that
//!   carry one (a proxy in front may forward a browser's).
//!
//! # Why a function of its own, not `Listener::bind_unix`
//!
//! [`Listener`](crate::Listener) is TCP through and through: its
//! [`Acceptor`](crate::Acceptor) answers 503 on a `TcpStream` with a spare
//! descriptor kept for running out of them, its caps count per IP
//! address, its TLS wraps a `TcpStream`, and its shutdown wakes the
//! blocked `accept` by connecting over TCP. Making each of those generic
//! over the socket type would reshape all of it for a transport that needs
//! none of the TCP-specific parts. `serve_unix` keeps what matters on a
//! local socket (a thread per connection, [`Config::max_connections`],
//! closing every connection with 1001 and waiting for them at shutdown)
//! in one small loop built on the same [`Server`]. It does not reuse
//! threads and has no spare descriptor: when `accept` fails (out of
//! descriptors), it backs off from 1 ms to 100 ms and logs at most once
//! a second.

use std::collections::HashMap;
use std::net::Shutdown;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::acceptor::turn_away;
use crate::config::Config;
use crate::error::Result;
use crate::message::CloseCode;
use crate::server::{Server, Slot};
use crate::stats::{Counters, Refusal, Stats};
use crate::transport::Closer;

/// Longest sleep between two failed accepts.
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Serves every connection of `listener` on a thread of its own, from a
/// new accept thread; returns at once. `setup` configures the [`Server`]
/// of each connection (its callbacks) before it runs, as with
/// [`Listener::serve`](crate::Listener::serve); plain HTTP and WebSocket
/// share the socket.
///
/// Connections over [`Config::max_connections`] are answered
/// `503 Service Unavailable` and closed. The peer has no address:
/// [`Server::peer_addr`] is `None` and per-address caps do not apply.
/// [`UnixRunning::shutdown`] (or dropping it) stops accepting, closes every
/// connection with 1001, and waits for them. The socket file is the
/// caller's: remove it after the shutdown.
///
/// ```no_run
/// use std::os::unix::net::UnixListener;
/// use syncws::{Config, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};
///
/// struct Echo(Option<Sender>);
/// impl WsTrait for Echo {
///     fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
///         self.0 = Some(shake.sender);
///         Ok(None)
///     }
///     fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
///         self.0.as_ref().unwrap().send(msg)
///     }
/// }
///
/// let path = "/tmp/echo.sock";
/// let _ = std::fs::remove_file(path); // left over from an earlier run
/// let listener = UnixListener::bind(path)?;
/// let running = syncws::serve_unix(listener, Config::default(), |server| {
///     server.set_callback_ws(Box::new(Echo(None)))
/// })?;
/// // Clients: syncws::Client::connect("ws+unix:///tmp/echo.sock:/chat")
/// # let stop = || ();
/// stop(); // e.g. wait for a signal
/// running.shutdown();
/// std::fs::remove_file(path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Or, without the cap and the graceful shutdown, a loop of your own:
///
/// ```no_run
/// # use std::os::unix::net::UnixListener;
/// let listener = UnixListener::bind("/tmp/plain.sock")?;
/// for stream in listener.incoming() {
///     let stream = stream?;
///     std::thread::spawn(move || -> syncws::Result<()> {
///         let mut ws = syncws::accept(stream)?;
///         loop {
///             let msg = ws.read()?;
///             if msg.is_data() {
///                 ws.send(msg)?;
///             }
///         }
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config) for an invalid `config`; an I/O
/// error if the listener's address cannot be read (it is needed to wake the
/// accept thread at shutdown) or the accept thread cannot be started.
pub fn serve_unix<F>(listener: UnixListener, config: Config, setup: F) -> Result<UnixRunning>
where
    F: Fn(&mut Server) + Send + Sync + 'static,
{
    config.validate()?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        stopping: AtomicBool::new(false),
        registry: Mutex::new(Registry::default()),
        changed: Condvar::new(),
        addr,
        metrics: Arc::new(Counters::default()),
    });
    let accept = Accept { listener, config, shared: Arc::clone(&shared), setup: Arc::new(setup) };
    let thread = thread::Builder::new().name("syncws-unix-accept".into()).spawn(move || accept.run())?;
    Ok(UnixRunning { shared, thread: Some(thread) })
}

/// A Unix socket served by [`serve_unix`]. Dropping it shuts it down, as
/// [`UnixRunning::shutdown`] does.
#[derive(Debug)]
pub struct UnixRunning {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl UnixRunning {
    /// The address it serves on (the socket file's path, or an abstract
    /// name).
    pub fn local_addr(&self) -> &SocketAddr {
        &self.shared.addr
    }

    /// Live connections right now.
    pub fn connections(&self) -> usize {
        self.shared.lock().live
    }

    /// A snapshot of this server's counters, as
    /// [`Running::stats`](crate::Running::stats) gives a TCP listener's:
    /// connections accepted, open, refused (at
    /// [`Config::max_connections`], no thread, `Origin`, bad requests) and
    /// closed by code, messages and bytes each way, messages dropped.
    /// Render it with [`Stats::to_prometheus`].
    pub fn stats(&self) -> Stats {
        self.shared.metrics.snapshot()
    }

    /// Stops accepting, closes every connection with 1001, waits up to
    /// [`Config::close_timeout`] for them, cuts the rest, and returns once
    /// every connection has ended.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the blocked accept() with a connection of our own.
        if let Err(e) = UnixStream::connect_addr(&self.shared.addr) {
            warn!("could not wake the unix accept loop: {e}");
        }
        let _ = thread.join();
    }
}

impl Drop for UnixRunning {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A live connection, as the shutdown needs it.
struct Entry {
    /// Cuts the connection (`None` if it could not be split).
    closer: Option<Closer>,
    slot: Arc<Slot>,
}

impl Entry {
    fn cut(&self) {
        if let Some(closer) = &self.closer {
            closer(Shutdown::Both);
        }
    }
}

#[derive(Default)]
struct Registry {
    entries: HashMap<u64, Entry>,
    live: usize,
}

struct Shared {
    stopping: AtomicBool,
    registry: Mutex<Registry>,
    changed: Condvar,
    addr: SocketAddr,
    /// The counters of the server and its connections.
    metrics: Arc<Counters>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Uncounts a connection when dropped: by its thread when it ends (or
/// unwinds), or by the accept loop when the thread could not start.
struct Ended {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let entry = {
            let mut reg = self.shared.lock();
            reg.live -= 1;
            self.shared.metrics.ended();
            reg.entries.remove(&self.id)
        };
        // Its closer and sender go outside the lock.
        drop(entry);
        self.shared.changed.notify_all();
    }
}

/// The accept thread's state.
struct Accept<F> {
    listener: UnixListener,
    config: Config,
    shared: Arc<Shared>,
    setup: Arc<F>,
}

impl<F> Accept<F>
where
    F: Fn(&mut Server) + Send + Sync + 'static,
{
    fn run(self) {
        info!("listening on {:?}", self.shared.addr);
        let mut next_id: u64 = 0;
        let mut backoff = Duration::ZERO;
        let mut last_warning: Option<Instant> = None;
        while !self.shared.stopping.load(Ordering::Acquire) {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors, most likely: no spinning, one line a second.
                    if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        warn!("accept on {:?} failed: {e}", self.shared.addr);
                        last_warning = Some(Instant::now());
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(1), BACKOFF_MAX);
                    thread::sleep(backoff);
                    continue;
                }
            };
            backoff = Duration::ZERO;
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            next_id += 1;
            self.start(next_id, stream);
        }
        self.close_all();
        info!("unix listener on {:?} stopped", self.shared.addr);
    }

    /// Serves `stream` on a new thread, or turns it away (cap, no thread).
    fn start(&self, id: u64, stream: UnixStream) {
        {
            let mut reg = self.shared.lock();
            if reg.live >= self.config.max_connections {
                drop(reg);
                self.shared.metrics.refused(Refusal::Connections);
                debug!("unix connection {id} refused: at the connection limit");
                turn_away(stream, "server at its connection limit\n", true);
                return;
            }
            reg.live += 1;
            self.shared.metrics.opened();
        }
        // From here on, dropping `ended` uncounts the connection.
        let ended = Ended { shared: Arc::clone(&self.shared), id };
        // A clone kept here, to answer if no thread can be started; one
        // more descriptor for the moment of the spawn.
        let spare = stream.try_clone().ok();
        let mut server = Server::new(stream, None);
        server.set_config(self.config.clone());
        server.set_metrics(Arc::clone(&self.shared.metrics));
        let slot = Arc::new(Slot::default());
        server.set_slot(Arc::clone(&slot));
        self.shared.lock().entries.insert(id, Entry { closer: server.closer(), slot });
        let setup = Arc::clone(&self.setup);
        let metrics = Arc::clone(&self.shared.metrics);
        let spawned = thread::Builder::new()
            .name("syncws-conn".into())
            .stack_size(self.config.thread_stack_size)
            .spawn(move || {
                let _ended = ended;
                // Counted once it has a thread, before it is served.
                metrics.accepted();
                setup(&mut server);
                if let Err(e) = server.incoming() {
                    debug!("unix connection {id}: {e}");
                }
            });
        match (spawned, spare) {
            (Ok(_detached), _) => {}
            (Err(e), spare) => {
                // The closure, its server and `ended` are gone: uncounted.
                self.shared.metrics.refused(Refusal::Threads);
                debug!("unix connection {id}: no thread: {e}");
                if let Some(stream) = spare {
                    turn_away(stream, "server out of resources, try again shortly\n", true);
                }
            }
        }
    }

    /// Closes every connection with 1001, waits for them, cuts what is
    /// left, and waits for those too.
    fn close_all(&self) {
        {
            let reg = self.shared.lock();
            for entry in reg.entries.values() {
                let sender = entry.slot.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match sender {
                    Some(s) if s.close(CloseCode::AWAY, "server shutting down").is_ok() => {}
                    _ => entry.cut(),
                }
            }
        }
        let deadline = Instant::now() + self.config.close_timeout + Duration::from_millis(500);
        if !self.wait_until_none(deadline) {
            let reg = self.shared.lock();
            warn!("{} unix connections did not close in time; cutting them", reg.live);
            for entry in reg.entries.values() {
                entry.cut();
            }
        }
        // A cut connection ends at once; the bound is for a stuck callback.
        self.wait_until_none(Instant::now() + self.config.close_timeout + Duration::from_secs(1));
    }

    /// Waits until no connection is live, or `deadline`; true if none is.
    fn wait_until_none(&self, deadline: Instant) -> bool {
        let mut reg = self.shared.lock();
        while reg.live > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            reg = self
                .shared
                .changed
                .wait_timeout(reg, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }
}

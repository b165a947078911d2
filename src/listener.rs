//! [`Listener`]: the accept loop. One named OS thread per connection, a cap on
//! live connections, and a graceful shutdown that closes every connection
//! with 1001 and joins every thread.
//!
//! A thread whose connection ended waits a few seconds for the next one
//! before it exits: creating and tearing down a thread (stack mapping,
//! guard page, signal stack, clone, exit) is most of what a short
//! connection costs the server, so under connection churn threads are
//! reused. At most [`IDLE_THREADS_MAX`] threads wait at once.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use log::{debug, error, info, warn};

use crate::config::Config;
use crate::error::{Error, Limit, Result};
use crate::message::CloseCode;
use crate::server::{Server, Slot};
use crate::transport::Closer;

/// Most connection threads kept waiting for a next connection.
pub const IDLE_THREADS_MAX: usize = 64;
/// How long a connection thread waits for a next connection before exiting.
const IDLE_THREAD_WAIT: Duration = Duration::from_secs(5);

struct Entry {
    /// Cuts the connection at shutdown (`None` if it could not be split).
    closer: Option<Closer>,
    slot: Arc<Slot>,
}

/// A connection to serve, handed to a connection thread.
type Job = Box<dyn RunJob>;

/// Work for a connection thread. Run in place from its box: a boxed
/// closure would be moved onto the thread's stack to be called, and the
/// stack pages a connection thread touches stay resident for its life.
trait RunJob: Send {
    fn run(self: Box<Self>);
}

/// One accepted connection, to be served on a connection thread.
struct ConnJob<F> {
    id: u64,
    peer: Option<SocketAddr>,
    server: Server,
    shared: Arc<Shared>,
    setup: Arc<F>,
}

impl<F> RunJob for ConnJob<F>
where
    F: Fn(&mut Server) + Send + Sync + 'static,
{
    fn run(mut self: Box<Self>) {
        (self.setup)(&mut self.server);
        if let Err(e) = self.server.incoming() {
            debug!("connection {} from {:?}: {e}", self.id, self.peer);
        }
        let (id, ip, shared) = (self.id, self.peer.map(|a| a.ip()), Arc::clone(&self.shared));
        drop(self);
        shared.ended(id, ip);
    }
}

/// The connection threads.
struct Pool {
    /// Threads waiting for a connection and not yet handed one.
    idle: usize,
    /// Hands connections to waiting threads; `None` once shutting down.
    jobs: Option<cb::Sender<Job>>,
    rx: cb::Receiver<Job>,
    workers: HashMap<ThreadId, JoinHandle<()>>,
    /// Threads that have exited, to join.
    exited: Vec<ThreadId>,
}

#[derive(Default)]
struct Registry {
    entries: HashMap<u64, Entry>,
    finished: Vec<u64>,
    live: usize,
    per_ip: HashMap<IpAddr, usize>,
}

struct Shared {
    stopping: AtomicBool,
    registry: Mutex<Registry>,
    pool: Mutex<Pool>,
    changed: Condvar,
    local_addr: SocketAddr,
}

impl Shared {
    /// Takes a connection that ended out of the registry's counts.
    fn ended(&self, id: u64, ip: Option<IpAddr>) {
        let mut reg = self.lock();
        release(&mut reg, ip);
        reg.finished.push(id);
        drop(reg);
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection thread: serves `job`, then waits (bounded) for another.
fn worker(mut job: Job, shared: &Shared) {
    let rx = shared.pool().rx.clone();
    loop {
        job.run();
        {
            let mut pool = shared.pool();
            if pool.jobs.is_none() || pool.idle >= IDLE_THREADS_MAX {
                pool.exited.push(thread::current().id());
                return;
            }
            pool.idle += 1;
        }
        job = match rx.recv_timeout(IDLE_THREAD_WAIT) {
            Ok(next) => next,
            Err(_) => {
                // A connection may have been handed over just before the
                // lock was taken: take it rather than leave it unserved.
                let mut pool = shared.pool();
                match rx.try_recv() {
                    Ok(next) => next,
                    Err(_) => {
                        pool.idle -= 1;
                        pool.exited.push(thread::current().id());
                        return;
                    }
                }
            }
        };
    }
}

/// Accepts connections and serves each on its own thread.
///
/// ```no_run
/// use syncws::{Listener, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};
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
/// let listener = Listener::bind("127.0.0.1:9001")?;
/// let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None))))?;
/// // ... later: close every connection with 1001 and join all threads.
/// running.shutdown();
/// # Ok::<(), syncws::Error>(())
/// ```
pub struct Listener {
    inner: TcpListener,
    config: Config,
    shared: Arc<Shared>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("local_addr", &self.shared.local_addr).field("tls", &self.is_tls()).finish()
    }
}

/// Stops a [`Listener`] from another thread. Cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle").field("local_addr", &self.shared.local_addr).finish()
    }
}

/// A [`Listener`] serving on a thread of its own, from [`Listener::spawn`].
#[derive(Debug)]
pub struct Running {
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Listener {
    /// Binds `addr` with the default [`Config`].
    pub fn bind(addr: impl ToSocketAddrs) -> Result<Listener> {
        Listener::bind_with_config(addr, Config::default())
    }

    /// Binds `addr` with `config`.
    pub fn bind_with_config(addr: impl ToSocketAddrs, config: Config) -> Result<Listener> {
        config.validate()?;
        let inner = TcpListener::bind(addr)?;
        let local_addr = inner.local_addr()?;
        let (jobs, rx) = cb::unbounded();
        let pool = Pool { idle: 0, jobs: Some(jobs), rx, workers: HashMap::new(), exited: Vec::new() };
        let shared = Shared {
            stopping: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            pool: Mutex::new(pool),
            changed: Condvar::new(),
            local_addr,
        };
        Ok(Listener {
            inner,
            config,
            shared: Arc::new(shared),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Serves every connection over TLS with `config` (feature `tls`):
    /// HTTP and WebSocket still share the port, as `https://` and `wss://`.
    ///
    /// The TLS handshake runs on the connection's thread and counts
    /// against [`Config::handshake_timeout`] together with the HTTP head.
    /// A plaintext HTTP request is answered `400` in plaintext; connections
    /// over [`Config::max_connections`] are closed without an answer (a
    /// `503` would need a TLS handshake on the accepting thread).
    ///
    /// ```no_run
    /// let tls = syncws::tls::load_server_config("cert.pem".as_ref(), "key.pem".as_ref())?;
    /// let listener = syncws::Listener::bind("0.0.0.0:8443")?.tls(tls);
    /// listener.serve(|_server| { /* set callbacks */ })?;
    /// # Ok::<(), syncws::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Listener {
        self.tls = Some(config);
        self
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The [`Server`] for an accepted stream: over TLS if configured.
    fn server_for(&self, stream: TcpStream, peer: Option<SocketAddr>) -> Result<Server> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let stream = crate::tls::TlsStream::server(stream, Arc::clone(config))?;
            return Ok(Server::new(stream, peer));
        }
        Ok(Server::new(stream, peer))
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// A handle that stops this listener from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: Arc::clone(&self.shared) }
    }

    /// Serves on a new thread; returns at once.
    pub fn spawn<F>(self, setup: F) -> Result<Running>
    where
        F: Fn(&mut Server) + Send + Sync + 'static,
    {
        let handle = self.shutdown_handle();
        let thread = thread::Builder::new().name("syncws-accept".into()).spawn(move || self.serve(setup))?;
        Ok(Running { handle, thread: Some(thread) })
    }

    /// Accepts connections until shut down, serving each on a thread of its
    /// own. `setup` configures the [`Server`] of each connection (its
    /// callbacks) before it runs. On shutdown, closes every connection with
    /// 1001, waits up to [`Config::close_timeout`] for them, then cuts the
    /// rest and joins every thread before returning.
    pub fn serve<F>(self, setup: F) -> Result<()>
    where
        F: Fn(&mut Server) + Send + Sync + 'static,
    {
        let setup = Arc::new(setup);
        let mut next_id: u64 = 0;
        info!("listening on {}", self.shared.local_addr);
        for stream in self.inner.incoming() {
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly
                    // instead of spinning.
                    warn!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            self.reap();
            next_id += 1;
            if let Err(e) = self.start(next_id, stream, &setup) {
                warn!("connection not started: {e}");
            }
        }
        self.close_all();
        info!("listener on {} stopped", self.shared.local_addr);
        Ok(())
    }

    /// Forgets connections that have ended and joins threads that exited.
    fn reap(&self) {
        {
            let mut reg = self.shared.lock();
            for id in std::mem::take(&mut reg.finished) {
                reg.entries.remove(&id);
            }
        }
        let handles: Vec<_> = {
            let mut pool = self.shared.pool();
            let exited = std::mem::take(&mut pool.exited);
            exited.into_iter().filter_map(|id| pool.workers.remove(&id)).collect()
        };
        for h in handles {
            let _ = h.join();
        }
    }

    /// Runs `job` on a waiting connection thread, or on a new one.
    fn dispatch(&self, job: Job) -> std::io::Result<()> {
        let mut pool = self.shared.pool();
        if pool.idle > 0 {
            if let Some(jobs) = &pool.jobs {
                // The pool holds a receiver, so this cannot fail.
                if jobs.send(job).is_ok() {
                    pool.idle -= 1;
                    return Ok(());
                }
                return Err(std::io::Error::other("connection thread pool closed"));
            }
        }
        let shared = Arc::clone(&self.shared);
        let handle = thread::Builder::new()
            .name("syncws-conn".into())
            .stack_size(self.config.thread_stack_size)
            .spawn(move || worker(job, &shared))?;
        pool.workers.insert(handle.thread().id(), handle);
        Ok(())
    }

    fn start<F>(&self, id: u64, stream: TcpStream, setup: &Arc<F>) -> Result<()>
    where
        F: Fn(&mut Server) + Send + Sync + 'static,
    {
        let peer = stream.peer_addr().ok();
        let ip = peer.map(|a| a.ip());
        {
            let mut reg = self.shared.lock();
            if reg.live >= self.config.max_connections {
                let (size, max) = (reg.live as u64, self.config.max_connections as u64);
                drop(reg);
                turn_away(stream, "server at its connection limit", self.is_tls());
                return Err(Error::Capacity { what: Limit::Connections, size, max });
            }
            if let (Some(ip), Some(max)) = (ip, self.config.max_connections_per_ip) {
                let size = reg.per_ip.get(&ip).copied().unwrap_or(0);
                if size >= max {
                    drop(reg);
                    turn_away(stream, "too many connections from your address", self.is_tls());
                    return Err(Error::Capacity { what: Limit::ConnectionsPerIp, size: size as u64, max: max as u64 });
                }
            }
            reg.live += 1;
            if let Some(ip) = ip {
                *reg.per_ip.entry(ip).or_insert(0) += 1;
            }
        }
        let slot = Arc::new(Slot::default());
        let mut server = match self.server_for(stream, peer) {
            Ok(server) => server,
            Err(e) => {
                release(&mut self.shared.lock(), ip);
                return Err(e);
            }
        };
        let closer = server.closer();
        server.set_config(self.config.clone());
        server.set_slot(Arc::clone(&slot));
        let job = ConnJob { id, peer, server, shared: Arc::clone(&self.shared), setup: Arc::clone(setup) };
        let spawned = self.dispatch(Box::new(job));
        let mut reg = self.shared.lock();
        match spawned {
            Ok(()) => {
                reg.entries.insert(id, Entry { closer, slot });
                Ok(())
            }
            Err(e) => {
                release(&mut reg, ip);
                error!("cannot spawn a connection thread: {e}");
                Err(Error::Io(e))
            }
        }
    }

    /// Closes every connection with 1001, waits for them, cuts what is left,
    /// and joins every thread.
    fn close_all(&self) {
        {
            let reg = self.shared.lock();
            for entry in reg.entries.values() {
                let sender = entry.slot.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match sender {
                    Some(s) => {
                        if s.close(CloseCode::AWAY, "server shutting down").is_err() {
                            entry.cut();
                        }
                    }
                    None => {
                        entry.cut();
                    }
                }
            }
        }
        let deadline = Instant::now() + self.config.close_timeout + Duration::from_millis(500);
        let mut reg = self.shared.lock();
        while reg.live > 0 {
            let now = Instant::now();
            if now >= deadline {
                warn!("{} connections did not close in time; cutting them", reg.live);
                for entry in reg.entries.values() {
                    entry.cut();
                }
                break;
            }
            reg = self
                .shared
                .changed
                .wait_timeout(reg, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        reg.entries.clear();
        reg.finished.clear();
        drop(reg);
        let handles: Vec<_> = {
            let mut pool = self.shared.pool();
            pool.jobs = None;
            pool.exited.clear();
            pool.workers.drain().map(|(_, h)| h).collect()
        };
        for h in handles {
            let _ = h.join();
        }
    }
}

/// Uncounts a connection that ended or never started.
fn release(reg: &mut Registry, ip: Option<IpAddr>) {
    reg.live -= 1;
    if let Some(ip) = ip {
        if let Some(n) = reg.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                reg.per_ip.remove(&ip);
            }
        }
    }
}

/// Answers 503 to a connection over a cap, without blocking the accept loop
/// (over TLS, just closes it: an answer would need a handshake first).
fn turn_away(mut stream: TcpStream, why: &str, tls: bool) {
    if tls {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let body = format!("{why}\n");
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

impl Entry {
    fn cut(&self) {
        if let Some(closer) = &self.closer {
            closer(Shutdown::Both);
        }
    }
}

impl ShutdownHandle {
    /// Stops accepting, closes every connection with 1001 and joins their
    /// threads; the listener's `serve` then returns. Returns at once; use
    /// [`Running::shutdown`] to also wait for all of it.
    pub fn shutdown(&self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake the blocked accept() with a connection of our own.
        let mut addr = self.shared.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            warn!("could not wake the accept loop: {e}");
        }
    }

    /// Live connections right now.
    pub fn connections(&self) -> usize {
        self.shared.lock().live
    }
}

impl Running {
    /// The address the listener serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.shared.local_addr
    }

    /// A handle for stopping it from elsewhere.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Live connections right now.
    pub fn connections(&self) -> usize {
        self.handle.connections()
    }

    /// Stops the listener, closes every connection with 1001, and waits
    /// until every thread has ended.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

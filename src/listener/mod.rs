//! [`Listener`]: the accept loop. One named OS thread per connection, a cap on
//! live connections, and a graceful shutdown that closes every connection
//! with 1001 and joins every thread.
//!
//! A thread whose connection ended waits a few seconds for the next one
//! before it exits: creating and tearing down a thread (stack mapping,
//! guard page, signal stack, clone, exit) is most of what a short
//! connection costs the server, so under connection churn threads are
//! reused. At most [`IDLE_THREADS_MAX`](pool::IDLE_THREADS_MAX) threads
//! wait at once.
//!
//! Whatever a connection holds (its socket, its registry entry, its count
//! against the caps) is released by its own thread when it ends, and a
//! thread that exits joins the one that exited before it: nothing waits
//! for the next accept. Accepting itself runs on an [`Acceptor`], which
//! answers 503 to what it cannot serve when out of descriptors or threads.
//!
//! On Linux, the threads are also kept under what the kernel's limit on
//! memory maps allows (`vm.max_map_count`, 65,530 by default): each thread
//! std starts takes 4 maps (its stack and the stack's guard page, the
//! signal stack std gives it and that stack's guard page). Past the limit,
//! a new thread cannot set up its signal stack and std aborts the whole
//! process from inside it, which no error handling here could catch; so
//! the listener answers 503 instead once its connection threads would
//! leave fewer than `MAPS_RESERVE` (2,048) maps for the rest of the process
//! (about 15,870 threads under the default limit).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use log::{debug, info, warn};

mod pool;

pub(crate) use pool::IDLE_THREAD_WAIT;
use pool::{worker, Job, Pool, RunJob};

use crate::acceptor::{Acceptor, Why};
use crate::config::Config;
use crate::error::Result;
use crate::message::CloseCode;
use crate::server::{Server, Slot};
use crate::stats::{Counters, Metrics, Stats};
use crate::transport::Closer;

struct Entry {
    /// Cuts the connection at shutdown (`None` if it could not be split).
    closer: Option<Closer>,
    slot: Arc<Slot>,
}

/// One accepted connection, to be served on a connection thread.
struct ConnJob<F> {
    peer: SocketAddr,
    server: Server,
    setup: Arc<F>,
    /// Last, so dropped last: the registry forgets the connection once
    /// its socket is closed, whether it ran or not.
    ended: Ended,
}

impl<F> RunJob for ConnJob<F>
where
    F: Fn(&mut Server) + Send + Sync + 'static,
{
    fn run(mut self: Box<Self>) {
        (self.setup)(&mut self.server);
        if let Err(e) = self.server.incoming() {
            debug!("connection {} from {}: {e}", self.ended.id, self.peer);
        }
    }
}

/// Takes a connection out of the registry and its counts when dropped:
/// by its thread when it ends (or unwinds), or by the accept loop when it
/// could not start.
struct Ended {
    shared: Arc<Shared>,
    id: u64,
    ip: IpAddr,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.shared.ended(self.id, self.ip);
    }
}

#[derive(Default)]
struct Registry {
    /// By connection number, so a broadcast writes to the connections in
    /// the order they were accepted (the order of their sockets in the
    /// kernel's memory: `Topic::members` in `hub`).
    entries: BTreeMap<u64, Entry>,
    live: usize,
    per_ip: HashMap<IpAddr, usize>,
}

struct Shared {
    stopping: AtomicBool,
    registry: Mutex<Registry>,
    pool: Mutex<Pool>,
    changed: Condvar,
    local_addr: SocketAddr,
    /// Test hook: fail this many coming thread spawns.
    fail_spawns: AtomicUsize,
    /// The counters of the listener and its connections.
    metrics: Arc<Counters>,
    /// Most connection threads the kernel's map limit leaves room for
    /// (`None`: no such limit known).
    thread_ceiling: Option<usize>,
}

/// Memory maps one connection thread takes: its stack, the stack's guard
/// page, the signal stack std sets up for every thread, and its guard page
/// (counted in `/proc/PID/maps`).
const MAPS_PER_THREAD: usize = 4;

/// Memory maps left for the rest of the process (libraries, the
/// allocator's arenas and large blocks, writer threads, the application's
/// own threads) when the connection threads are at their ceiling.
const MAPS_RESERVE: usize = 2048;

/// The most connection threads the kernel's limit on memory maps per
/// process allows, with [`MAPS_RESERVE`] kept for everything else.
fn thread_ceiling() -> Option<usize> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    Some(max.saturating_sub(MAPS_RESERVE) / MAPS_PER_THREAD)
}

impl Shared {
    /// Takes a connection that ended out of the registry and its counts.
    fn ended(&self, id: u64, ip: IpAddr) {
        let entry = {
            let mut reg = self.lock();
            release(&mut reg, ip);
            // Under the lock, as `live` is: a caller that saw
            // `connections()` drop sees `open` dropped too.
            self.metrics.ended();
            reg.entries.remove(&id)
        };
        // Its closer and sender go outside the lock.
        drop(entry);
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
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
    acceptor: Acceptor,
    /// Shared by every connection (an `Arc`, not a copy each: a copy
    /// costs every idle connection a heap block).
    config: Arc<Config>,
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
        Listener::from_std_with_config(TcpListener::bind(addr)?, config)
    }

    /// Serves on a listening socket bound elsewhere, with the default
    /// [`Config`]: one handed over by systemd socket activation or another
    /// supervisor, one bound with options `bind` does not set, or one bound
    /// to port 0 whose address must be known before the listener starts.
    ///
    /// ```no_run
    /// // Port 0: the system picks a free port, known at once.
    /// let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = socket.local_addr()?;
    /// let listener = syncws::Listener::from_std(socket)?;
    /// assert_eq!(listener.local_addr(), addr);
    /// # Ok::<(), syncws::Error>(())
    /// ```
    ///
    /// From systemd (`ListenStream=` in a `.socket` unit), whose first
    /// socket is descriptor 3:
    ///
    /// ```no_run
    /// # #[cfg(unix)] {
    /// use std::os::fd::FromRawFd;
    /// // SAFETY: systemd passes the listening socket as descriptor 3
    /// // (`LISTEN_FDS=1`), and nothing else in this process owns it.
    /// let socket = unsafe { std::net::TcpListener::from_raw_fd(3) };
    /// syncws::Listener::from_std(socket)?.serve(|_server| { /* set callbacks */ })?;
    /// # }
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn from_std(listener: TcpListener) -> Result<Listener> {
        Listener::from_std_with_config(listener, Config::default())
    }

    /// [`from_std`](Listener::from_std) with `config`.
    ///
    /// The socket is switched to blocking mode if it was not (the accept
    /// loop blocks in `accept`).
    pub fn from_std_with_config(inner: TcpListener, config: Config) -> Result<Listener> {
        config.validate()?;
        inner.set_nonblocking(false)?;
        let local_addr = inner.local_addr()?;
        let (jobs, rx) = cb::unbounded();
        let pool = Pool { idle: 0, jobs: Some(jobs), rx, workers: HashMap::new(), exited: None };
        let metrics = Arc::new(Counters::default());
        let mut acceptor = Acceptor::new(inner);
        acceptor.set_metrics(Arc::clone(&metrics));
        let shared = Shared {
            stopping: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            pool: Mutex::new(pool),
            changed: Condvar::new(),
            local_addr,
            fail_spawns: AtomicUsize::new(0),
            metrics,
            thread_ceiling: thread_ceiling(),
        };
        Ok(Listener {
            acceptor,
            config: Arc::new(config),
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
    /// over [`Config::max_connections`], or refused for want of descriptors
    /// or threads, are closed without an answer (a `503` would need a TLS
    /// handshake on the accepting thread).
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
        self.acceptor.set_answer_503(false);
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

    /// The counters of this listener and its connections, live: take the
    /// handle before [`spawn`](Listener::spawn) or [`serve`](Listener::serve)
    /// to read them from a connection's callbacks (a `/metrics` page) or
    /// any other thread.
    pub fn metrics(&self) -> Metrics {
        Metrics(Arc::clone(&self.shared.metrics))
    }

    /// A handle that stops this listener from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: Arc::clone(&self.shared) }
    }

    /// Test hook: the next `n` connection threads this listener would
    /// start fail to start, as when the process is out of threads (their
    /// connections are answered 503). Only for tests of that path: root,
    /// as in CI, is not held to thread limits, so they cannot be reached
    /// for real.
    #[doc(hidden)]
    pub fn fail_next_spawns(&self, n: usize) {
        self.shared.fail_spawns.store(n, Ordering::Relaxed);
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
    ///
    /// Connections it cannot serve (over the caps, out of descriptors or
    /// threads) are answered 503 and closed; a `warn` line per second at
    /// most counts them.
    pub fn serve<F>(mut self, setup: F) -> Result<()>
    where
        F: Fn(&mut Server) + Send + Sync + 'static,
    {
        let setup = Arc::new(setup);
        let mut next_id: u64 = 0;
        info!("listening on {}", self.shared.local_addr);
        while !self.shared.stopping.load(Ordering::Acquire) {
            let Some((stream, peer)) = self.acceptor.accept() else { continue };
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            next_id += 1;
            self.start(next_id, stream, peer, &setup);
        }
        self.close_all();
        info!("listener on {} stopped", self.shared.local_addr);
        Ok(())
    }

    /// Starts a connection thread whose first connection comes on the
    /// returned sender (dropping it ends the thread).
    fn spawn_worker(&self, pool: &mut Pool) -> std::io::Result<cb::Sender<Job>> {
        let injected = self.shared.fail_spawns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(std::io::Error::other("thread spawn failed (injected by a test)"));
        }
        if let Some(max) = self.shared.thread_ceiling {
            if pool.workers.len() >= max {
                return Err(std::io::Error::other(format!(
                    "{max} connection threads: one more could pass the kernel's memory map limit \
                     (vm.max_map_count)"
                )));
            }
        }
        let (first, rx) = cb::bounded(1);
        let shared = Arc::clone(&self.shared);
        let handle = thread::Builder::new()
            .name("syncws-conn".into())
            .stack_size(self.config.thread_stack_size)
            .spawn(move || worker(rx, &shared))?;
        pool.workers.insert(handle.thread().id(), handle);
        Ok(first)
    }

    /// Serves `stream` on a waiting connection thread or a new one, or
    /// turns it away (caps, no thread).
    fn start<F>(&mut self, id: u64, stream: TcpStream, peer: SocketAddr, setup: &Arc<F>)
    where
        F: Fn(&mut Server) + Send + Sync + 'static,
    {
        let ip = peer.ip();
        {
            let mut reg = self.shared.lock();
            if reg.live >= self.config.max_connections {
                drop(reg);
                self.acceptor.refuse(stream, Why::Connections);
                return;
            }
            if let Some(max) = self.config.max_connections_per_ip {
                if reg.per_ip.get(&ip).copied().unwrap_or(0) >= max {
                    drop(reg);
                    self.acceptor.refuse(stream, Why::ConnectionsPerIp);
                    return;
                }
            }
            reg.live += 1;
            *reg.per_ip.entry(ip).or_insert(0) += 1;
            self.shared.metrics.opened();
        }
        // From here on, dropping `ended` uncounts the connection.
        let ended = Ended { shared: Arc::clone(&self.shared), id, ip };
        let shared = Arc::clone(&self.shared);
        // Held until the connection is handed over, so that a waiting
        // thread cannot time out in between.
        let mut pool = shared.pool();
        // A waiting thread takes it; else a new thread is started first,
        // so that when none can be, the socket is still here to answer.
        let first = if pool.idle > 0 && pool.jobs.is_some() {
            None
        } else {
            match self.spawn_worker(&mut pool) {
                Ok(first) => Some(first),
                Err(e) => {
                    drop(pool);
                    drop(ended);
                    debug!("connection {id}: no thread: {e}");
                    self.acceptor.refuse(stream, Why::Threads);
                    return;
                }
            }
        };
        let mut server = match self.server_for(stream, Some(peer)) {
            Ok(server) => server,
            Err(e) => {
                // A new thread ends when `first` is dropped.
                debug!("connection {id} not started: {e}");
                return;
            }
        };
        let slot = Arc::new(Slot::default());
        let closer = server.closer();
        server.set_shared_config(Arc::clone(&self.config));
        server.set_slot(Arc::clone(&slot));
        server.set_metrics(Arc::clone(&self.shared.metrics));
        // Registered before its thread has it, so it cannot end first.
        self.shared.lock().entries.insert(id, Entry { closer, slot });
        self.shared.metrics.accepted();
        let job: Job = Box::new(ConnJob { peer, server, setup: Arc::clone(setup), ended });
        match (first, &pool.jobs) {
            // The new thread waits on its receiver; if it were gone, the
            // job would be dropped here and uncount itself.
            (Some(first), _) => drop(first.send(job)),
            (None, Some(jobs)) => {
                // The pool holds a receiver, so this cannot fail.
                if jobs.send(job).is_ok() {
                    pool.idle -= 1;
                }
            }
            (None, None) => {}
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
        // Entries still here belong to connections that were cut: their
        // threads remove them as they end.
        drop(reg);
        let handles: Vec<_> = {
            let mut pool = self.shared.pool();
            pool.jobs = None;
            let mut handles: Vec<_> = pool.workers.drain().map(|(_, h)| h).collect();
            handles.extend(pool.exited.take());
            handles
        };
        for h in handles {
            let _ = h.join();
        }
    }
}

/// Uncounts a connection that ended or never started.
fn release(reg: &mut Registry, ip: IpAddr) {
    reg.live -= 1;
    if let Some(n) = reg.per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            reg.per_ip.remove(&ip);
        }
    }
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

    /// A snapshot of the listener's counters: connections accepted, open,
    /// refused by reason and closed by code, messages and bytes each way,
    /// messages dropped. See [`Stats`]; [`Stats::to_prometheus`] renders
    /// it for a Prometheus scrape.
    ///
    /// ```
    /// let running = syncws::Listener::bind("127.0.0.1:0")?.spawn(|_server| {})?;
    /// let stats = running.stats();
    /// println!("{} open, {} refused by Origin", stats.open, stats.refused.origin);
    /// assert_eq!((stats.accepted, stats.closed.total()), (0, 0));
    /// running.shutdown();
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.handle.shared.metrics.snapshot()
    }

    /// Sends `msg` to every open WebSocket connection of this listener,
    /// on the path of [`Hub::publish`](crate::Hub::publish): framed once,
    /// the same bytes queued for each, never waiting for any. A connection
    /// whose queue is full ([`Config::queue_capacity`],
    /// [`Config::queue_max_bytes`]) skips the message, counted in
    /// [`Published::dropped`](crate::Published::dropped) and in
    /// [`Stats::queue_full`]; for a limit of its own and the choice to
    /// close laggards, subscribe the connections to a
    /// [`Hub`](crate::Hub) topic instead.
    ///
    /// ```
    /// let running = syncws::Listener::bind("127.0.0.1:0")?.spawn(|_server| {})?;
    /// let report = running.broadcast(&syncws::Prepared::text("maintenance in 5 minutes"));
    /// assert_eq!(report.delivered, 0); // nobody connected yet
    /// running.shutdown();
    /// # Ok::<(), syncws::Error>(())
    /// ```
    pub fn broadcast(&self, msg: &crate::Prepared) -> crate::Published {
        let senders: Arc<[crate::Sender]> = {
            let reg = self.handle.shared.lock();
            reg.entries
                .values()
                .filter_map(|e| e.slot.sender.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .collect()
        };
        crate::hub::deliver_all(
            senders,
            msg.shared(),
            usize::MAX,
            crate::BacklogPolicy::Skip,
            crate::hub::DEFAULT_PARALLEL_FROM,
        )
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

#[cfg(test)]
mod map_limit_tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn thread_ceiling_follows_max_map_count() {
        let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap().trim().parse().unwrap();
        let ceiling = super::thread_ceiling().unwrap();
        assert_eq!(ceiling, (max - super::MAPS_RESERVE) / super::MAPS_PER_THREAD);
        assert!(ceiling * super::MAPS_PER_THREAD + super::MAPS_RESERVE <= max);
    }
}

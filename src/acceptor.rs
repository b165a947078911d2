//! [`Acceptor`]: a TCP accept loop that survives running out of file
//! descriptors and threads.
//!
//! `accept(2)` fails with `EMFILE`/`ENFILE` while the process (or the
//! system) has no descriptor left, and keeps failing at once for as long
//! as that lasts: a loop that only retries spins, and the pending
//! connections wait in the backlog with no answer. The acceptor keeps one
//! spare descriptor (`/dev/null`, opened ahead): out of descriptors, it
//! closes the spare, accepts the pending connection with the descriptor
//! that frees, answers it `503 Service Unavailable` (or just closes it),
//! and opens the spare again. When even that makes no progress (nothing
//! pending, no spare, another error), it sleeps a backoff that doubles from
//! 1 ms to 100 ms and resets at the next connection accepted, so the loop
//! never spins and serves again at most 100 ms after resources free up.
//!
//! Refusals are logged as one summary line per second at most, with
//! counts, never a line per connection: the first at once, the rest of a
//! burst within a second (while counts wait to be logged, the loop looks
//! for connections every 50 ms instead of blocking in `accept`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use log::warn;

use crate::stats::{Counters, Refusal};
use crate::transport::Socket;

/// First sleep after an accept that made no progress.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
/// Longest sleep between two tries: the delay before serving again once
/// resources are back.
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// At most one summary line per this long.
const LOG_EVERY: Duration = Duration::from_secs(1);
/// While counts wait to be logged, how often the loop looks for
/// connections without blocking.
const SUMMARY_POLL: Duration = Duration::from_millis(50);

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// No descriptor for it: accepted with the spare only to be refused.
    Descriptors,
    /// No thread could be started for it.
    Threads,
    /// [`Config::max_connections`](crate::Config::max_connections).
    Connections,
    /// [`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip).
    ConnectionsPerIp,
}

impl Why {
    const ALL: [Why; 4] = [Why::Descriptors, Why::Threads, Why::Connections, Why::ConnectionsPerIp];

    /// The body of the 503.
    fn body(self) -> &'static str {
        match self {
            Why::Descriptors | Why::Threads => "server out of resources, try again shortly\n",
            Why::Connections => "server at its connection limit\n",
            Why::ConnectionsPerIp => "too many connections from your address\n",
        }
    }

    /// How the listener's counters count it.
    fn refusal(self) -> Refusal {
        match self {
            Why::Descriptors => Refusal::Descriptors,
            Why::Threads => Refusal::Threads,
            Why::Connections => Refusal::Connections,
            Why::ConnectionsPerIp => Refusal::ConnectionsPerIp,
        }
    }

    /// How the summary line counts it.
    fn label(self) -> &'static str {
        match self {
            Why::Descriptors => "out of descriptors",
            Why::Threads => "out of threads",
            Why::Connections => "at the connection limit",
            Why::ConnectionsPerIp => "at the per-address limit",
        }
    }
}

/// Accepts TCP connections, turning away what it cannot serve instead of
/// failing: [`Listener`](crate::Listener) runs on one, and so can any
/// thread-per-connection server of its own.
///
/// - Out of descriptors: the pending connection is accepted with a spare
///   descriptor kept for the purpose, answered `503 Service Unavailable`
///   (`Connection: close`, `Retry-After: 1`) and closed.
/// - [`Acceptor::spawn`] cannot start a thread: the connection is
///   answered 503 the same way.
/// - An accept that makes no progress sleeps a backoff (1 ms doubling to
///   100 ms, reset by the next connection accepted).
/// - One `warn` line per second at most sums up what was refused.
///
/// ```no_run
/// use std::io::Write;
/// use syncws::Acceptor;
///
/// let mut acceptor = Acceptor::new(std::net::TcpListener::bind("127.0.0.1:8080")?);
/// loop {
///     let Some((stream, _peer)) = acceptor.accept() else { continue };
///     acceptor.spawn(stream, std::thread::Builder::new(), |mut stream| {
///         let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    /// Closed to make room for a connection to refuse when out of
    /// descriptors; `None` while it could not be reopened.
    spare: Option<File>,
    /// The next sleep after an accept that made no progress: zero after a
    /// connection was accepted.
    backoff: Duration,
    /// Answer refused connections 503 (else just close them).
    answer: bool,
    /// Test hook: fail this many coming [`Acceptor::spawn`] calls.
    fail_spawns: usize,
    log: Summary,
    /// A listener's counters, which count refusals too.
    metrics: Option<Arc<Counters>>,
}

impl Acceptor {
    /// Accepts on `listener`, which should be in blocking mode; opens the
    /// spare descriptor.
    pub fn new(listener: TcpListener) -> Acceptor {
        Acceptor {
            listener,
            spare: open_spare(),
            backoff: Duration::ZERO,
            answer: true,
            fail_spawns: 0,
            log: Summary::new(),
            metrics: None,
        }
    }

    /// Whether refused connections are answered `503 Service Unavailable`
    /// before they are closed (the default), or just closed: for TLS, where
    /// an answer would need a handshake first, and for protocols that are
    /// not HTTP.
    pub fn set_answer_503(&mut self, answer: bool) {
        self.answer = answer;
    }

    /// Counts refusals in `metrics` too (a listener's).
    pub(crate) fn set_metrics(&mut self, metrics: Arc<Counters>) {
        self.metrics = Some(metrics);
    }

    /// The listening socket.
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Waits for the next connection and returns it with the peer's
    /// address; `None` when the accept failed and was dealt with (refused
    /// a connection, backed off). Callers check whether to stop, then call
    /// again.
    pub fn accept(&mut self) -> Option<(TcpStream, SocketAddr)> {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
        let accepted = match self.log.due() {
            None => self.listener.accept(),
            // Counts wait to be logged: no blocking past the moment they
            // are due, so that the last of a burst is not left unsaid.
            Some(due) => match self.accept_now() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(due.min(SUMMARY_POLL));
                    self.log.tick();
                    return None;
                }
                other => other,
            },
        };
        match accepted {
            Ok(accepted) => {
                self.backoff = Duration::ZERO;
                self.log.tick();
                Some(accepted)
            }
            // The peer gave up before it was accepted: nothing to back off from.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => None,
            Err(e) => {
                if !(out_of_descriptors(&e) && self.refuse_pending()) {
                    self.log.failed(&e);
                    self.pause();
                }
                None
            }
        }
    }

    /// Serves `stream` with `serve` on a new thread made by `builder`;
    /// when no thread can be started, answers it 503 (see
    /// [`set_answer_503`](Acceptor::set_answer_503)), closes it and
    /// returns false. The thread is detached.
    pub fn spawn<F>(&mut self, stream: TcpStream, builder: thread::Builder, serve: F) -> bool
    where
        F: FnOnce(TcpStream) + Send + 'static,
    {
        // The stream goes to the thread once it runs, so that a failed
        // spawn leaves it here to be answered.
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(1);
        let spawned = self.injected_spawn_failure().and_then(|()| {
            builder.spawn(move || {
                // The sender sends at once after the spawn returns.
                if let Ok(stream) = rx.recv() {
                    serve(stream);
                }
            })
        });
        match spawned {
            Ok(_detached) => {
                // The new thread holds the receiver until it has the stream.
                let _ = tx.send(stream);
                true
            }
            Err(_) => {
                self.refuse(stream, Why::Threads);
                false
            }
        }
    }

    /// Test hook: the next `n` calls of [`Acceptor::spawn`] fail as if no
    /// thread could be started. Only for tests of that path, which cannot
    /// exhaust threads for real (root is not held to thread limits).
    #[doc(hidden)]
    pub fn fail_next_spawns(&mut self, n: usize) {
        self.fail_spawns = n;
    }

    fn injected_spawn_failure(&mut self) -> io::Result<()> {
        if self.fail_spawns == 0 {
            return Ok(());
        }
        self.fail_spawns -= 1;
        Err(io::Error::other("thread spawn failed (injected by a test)"))
    }

    /// Turns `stream` away for `why`: a 503 where answers are on, then
    /// closed; counted for the summary. Never blocks.
    pub(crate) fn refuse(&mut self, stream: TcpStream, why: Why) {
        if let Some(metrics) = &self.metrics {
            metrics.refused(why.refusal());
        }
        turn_away(stream, why.body(), self.answer);
        self.log.refused(why);
    }

    /// Out of descriptors: closes the spare, accepts what is pending with
    /// the descriptor that frees and refuses it, then reopens the spare.
    /// True if a connection was refused.
    fn refuse_pending(&mut self) -> bool {
        let Some(spare) = self.spare.take() else { return false };
        drop(spare);
        // Without waiting: `accept(2)` reports EMFILE before it waits, so
        // there may be nothing pending.
        let refused = match self.accept_now() {
            Ok((stream, _)) => {
                self.refuse(stream, Why::Descriptors);
                true
            }
            Err(_) => false,
        };
        self.spare = open_spare();
        refused
    }

    /// One accept that does not wait (`WouldBlock` if nothing is pending).
    /// If switching back to blocking fails, the next accept reports
    /// `WouldBlock` and backs off.
    fn accept_now(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.listener.set_nonblocking(true)?;
        let accepted = self.listener.accept();
        let _ = self.listener.set_nonblocking(false);
        accepted
    }

    /// Sleeps the backoff and doubles it, up to [`BACKOFF_MAX`].
    fn pause(&mut self) {
        self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        thread::sleep(self.backoff);
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.log.emit(Instant::now());
    }
}

/// The spare descriptor; `None` where there is no `/dev/null` or no
/// descriptor to spare.
fn open_spare() -> Option<File> {
    if cfg!(unix) {
        File::open("/dev/null").ok()
    } else {
        None
    }
}

/// `EMFILE` (the process's limit) or `ENFILE` (the system's).
fn out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CODES: [i32; 2] = [libc::EMFILE, libc::ENFILE];
    // The same numbers on the BSDs and macOS.
    #[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
    const CODES: [i32; 2] = [24, 23];
    // WSAEMFILE; Windows has no ENFILE.
    #[cfg(not(unix))]
    const CODES: [i32; 2] = [10024, 10024];
    e.raw_os_error().is_some_and(|code| CODES.contains(&code))
}

/// Answers 503 (if `answer`) and closes, without blocking: one
/// non-blocking write, which a fresh socket's buffer always takes whole,
/// then a read of what the peer already sent, so that closing does not
/// reset the connection and lose the answer.
pub(crate) fn turn_away<S: Socket>(stream: S, body: &str, answer: bool)
where
    for<'a> &'a S: Read + Write,
{
    let _ = stream.set_nonblocking(true);
    if answer {
        let resp = format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = (&stream).write(resp.as_bytes());
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 2048];
    for _ in 0..8 {
        match (&stream).read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Counts refusals and failed accepts; logs them at most once per
/// [`LOG_EVERY`].
#[derive(Debug)]
struct Summary {
    /// Since when the counts run.
    since: Instant,
    /// When the last line was logged.
    last: Option<Instant>,
    refused: [u64; Why::ALL.len()],
    failed: u64,
    last_error: Option<String>,
}

impl Summary {
    fn new() -> Summary {
        Summary { since: Instant::now(), last: None, refused: [0; Why::ALL.len()], failed: 0, last_error: None }
    }

    fn refused(&mut self, why: Why) {
        self.refused[why as usize] += 1;
        self.tick();
    }

    fn failed(&mut self, e: &io::Error) {
        self.failed += 1;
        self.last_error = Some(e.to_string());
        self.tick();
    }

    fn pending(&self) -> bool {
        self.failed > 0 || self.refused.iter().any(|&n| n > 0)
    }

    /// How long until the counts waiting to be logged are due; `None`
    /// when there are none.
    fn due(&self) -> Option<Duration> {
        if !self.pending() {
            return None;
        }
        let since_last = self.last.map_or(LOG_EVERY, |last| last.elapsed());
        Some(LOG_EVERY.saturating_sub(since_last))
    }

    /// Logs the counts if there are any and the last line is old enough.
    fn tick(&mut self) {
        if !self.pending() {
            return;
        }
        let now = Instant::now();
        if self.last.is_none_or(|last| now.duration_since(last) >= LOG_EVERY) {
            self.emit(now);
        }
    }

    fn emit(&mut self, now: Instant) {
        let secs = now.duration_since(self.since).as_secs_f64();
        let total: u64 = self.refused.iter().sum();
        let mut line = String::new();
        if total > 0 {
            let parts: Vec<String> = Why::ALL
                .iter()
                .filter(|&&why| self.refused[why as usize] > 0)
                .map(|&why| format!("{} {}", self.refused[why as usize], why.label()))
                .collect();
            let s = if total == 1 { "" } else { "s" };
            line = format!("refused {total} connection{s} in the last {secs:.1}s: {}", parts.join(", "));
        }
        if self.failed > 0 {
            if !line.is_empty() {
                line.push_str("; ");
            }
            let s = if self.failed == 1 { "" } else { "s" };
            let err = self.last_error.as_deref().unwrap_or("?");
            line.push_str(&format!("{} failed accept{s} in the last {secs:.1}s (last: {err})", self.failed));
        }
        if !line.is_empty() {
            warn!("{line}");
        }
        self.refused = [0; Why::ALL.len()];
        self.failed = 0;
        self.last_error = None;
        self.since = now;
        self.last = Some(now);
    }
}

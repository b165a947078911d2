//! The program of one connection: started in a process group of its own,
//! fed, read, ended and reaped.
//!
//! Each program has four threads of its own beside the connection's:
//!
//! - the **feeder** writes what the client sent to the program's stdin,
//!   several queued messages in one write; the queue holds
//!   [`INPUT_QUEUE_BYTES`] (or one larger message), so a program that does
//!   not read holds back the connection's thread, which stops reading the
//!   client, whose TCP window closes;
//! - the **pump** reads stdout into messages and sends them with the
//!   connection's [`Sender`]: written at once while the socket takes them,
//!   else queued (bounded by `queue_max_bytes`); a client that does not
//!   read fills the queue, the send waits, the pump stops reading, the
//!   pipe fills and the program blocks in `write`. After stdout's end it
//!   waits for the exit status and sends the Close;
//! - the **stderr** thread logs each line, tagged with the connection;
//! - the **waiter** reaps the program (`wait`), then ends what it left
//!   behind in its group, and only then gives back its `--max-forks` slot.
//!
//! Ending a program ([`Job::end`]: the client closed, the connection
//! failed, the server stops) closes its stdin, gives it
//! [`STDIN_GRACE`] to exit on its own, sends SIGTERM to its process group,
//! and SIGKILL after the grace period, on a short-lived thread that stops
//! as soon as the waiter has reaped the program. Signals go to the group
//! (`kill(-pgid)`), so whatever the program started and left in its group
//! goes too; a process that leaves the group on purpose (`setsid`) is out
//! of reach, as with any supervisor short of cgroups.
//!
//! A group is signalled only while its leader is unreaped (checked under
//! the job's lock), or, for what the leader left behind, while the group
//! still has members: a group id cannot be handed to a new process while
//! that group exists, so no signal reaches a stranger. The one window is
//! between `wait` returning and the lock being taken, microseconds, in
//! which the id could only come back after the kernel's pid counter went
//! all the way round.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use syncws::{CloseCode, CloseData, Error, OwnedMessage, Sender};

use super::forks::Fork;

/// How long a program whose stdin was closed may take to exit on its own
/// before it gets SIGTERM. A filter exits at the end of its input; this
/// gives one that is still starting (a Python interpreter takes 50 to
/// 150 ms) time to answer what it was sent, since `printf ... | syncws
/// client` closes right after its last message.
pub const STDIN_GRACE: Duration = Duration::from_secs(1);

/// Largest read from stdout in `--binary` mode, so largest message.
pub const BINARY_CHUNK: usize = 64 << 10;

/// Bytes of the client's messages queued for stdin before the connection's
/// thread waits (a larger message is still taken when the queue is empty).
pub const INPUT_QUEUE_BYTES: usize = 64 << 10;

/// Largest read from stdout in line mode (longer lines are gathered).
const LINE_READ: usize = 16 << 10;

/// Longest stderr line logged as one; longer ones are logged in pieces.
const MAX_LOG_LINE: u64 = 4096;

/// Stack of each of a program's threads: they only copy bytes.
const STACK: usize = 128 << 10;

/// What to start and how to talk to it.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its whole environment.
    pub env: Vec<(String, OsString)>,
    /// Raw bytes both ways instead of lines.
    pub binary: bool,
    /// Largest message made from its output.
    pub max_message: usize,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Names the connection in the log.
    pub tag: String,
}

/// A running program, owned by its connection. Dropping it ends the
/// program ([`Job::end`]).
#[derive(Debug)]
pub struct Job {
    shared: Arc<Shared>,
    stdin: Option<cb::Sender<Vec<u8>>>,
    gate: Arc<Gate>,
    /// Hands the connection's [`Sender`] to the pump, once open.
    attach: Option<cb::Sender<Sender>>,
}

/// Counts the bytes queued for stdin, so that the queue stays bounded.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    queued: usize,
    /// The feeder is gone (the program closed its stdin or exited).
    closed: bool,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `len` more bytes once the queue has room, waiting up to
    /// `timeout`: `Ok(true)` when counted, `Ok(false)` when the feeder is
    /// gone, `Err` when the program took nothing for `timeout`.
    fn admit(&self, len: usize, timeout: Duration) -> std::result::Result<bool, ()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.closed {
                return Ok(false);
            }
            if state.queued < INPUT_QUEUE_BYTES {
                state.queued += len;
                return Ok(true);
            }
            let left = deadline.checked_duration_since(Instant::now()).ok_or(())?;
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn release(&self, len: usize) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(len);
        drop(state);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[derive(Debug)]
struct Shared {
    pgid: i32,
    tag: String,
    grace: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Set by the waiter once the program is reaped.
    exit: Option<Exit>,
    /// [`Job::end`] was called.
    ending: bool,
    /// The client's Close, when it closed first: the reply, should the
    /// program be killed rather than exit.
    peer_close: Option<CloseData>,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// `wait` failed; treated as a failure.
    Unknown,
}

impl Exit {
    fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            _ => Exit::Unknown,
        }
    }

    /// The Close the client gets after the last output: 1000 for status 0,
    /// 1011 with the reason otherwise.
    pub fn close(self) -> CloseData {
        match self {
            Exit::Code(0) => CloseData::new(CloseCode::NORMAL, ""),
            Exit::Code(n) => CloseData::new(CloseCode::INTERNAL, format!("program exited with status {n}")),
            Exit::Signal(s) => CloseData::new(CloseCode::INTERNAL, format!("program killed by signal {s}")),
            Exit::Unknown => CloseData::new(CloseCode::INTERNAL, "program status unknown"),
        }
    }
}

impl Job {
    /// Starts `spec` in a process group of its own, with its threads.
    /// `fork` is the program's `--max-forks` slot, given back once the
    /// program and its group are gone.
    pub fn spawn(spec: Spec, fork: Fork) -> io::Result<Job> {
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let pgid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
        fork.set_group(pgid);
        let shared = Arc::new(Shared {
            pgid,
            tag: spec.tag.clone(),
            grace: spec.grace,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        log::debug!("{}: started {} as pid {pgid}", spec.tag, spec.program.display());
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());

        // The waiter first: it owns the child from then on. Handed over by
        // a channel, so that a thread that cannot start leaves it here.
        let (give, take) = cb::bounded::<(Child, Fork)>(1);
        let s = Arc::clone(&shared);
        if let Err(e) = spawn("exec-wait", move || {
            if let Ok((child, fork)) = take.recv() {
                wait(child, &s, fork);
            }
        }) {
            let _ = signal_group(pgid, libc::SIGKILL);
            let _ = child.wait();
            return Err(e);
        }
        let _ = give.send((child, fork));

        // Unbounded as a channel, bounded in bytes by the gate.
        let (in_tx, in_rx) = cb::unbounded::<Vec<u8>>();
        let gate = Arc::new(Gate::default());
        let (attach_tx, attach_rx) = cb::bounded::<Sender>(1);
        let started = (|| {
            let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
                return Err(io::Error::other("the program's pipes are missing"));
            };
            let (tag, g) = (spec.tag.clone(), Arc::clone(&gate));
            spawn("exec-stdin", move || feed(stdin, &in_rx, &g, &tag))?;
            let tag = spec.tag.clone();
            spawn("exec-stderr", move || log_stderr(stderr, &tag))?;
            let s = Arc::clone(&shared);
            let (binary, max) = (spec.binary, spec.max_message.max(1));
            spawn("exec-stdout", move || {
                if let Ok(sender) = attach_rx.recv() {
                    pump(stdout, binary, max, &sender, &s);
                }
            })?;
            Ok(())
        })();
        let mut job = Job { shared, stdin: Some(in_tx), gate, attach: Some(attach_tx) };
        if let Err(e) = started {
            // The waiter reaps it.
            job.shared.signal(libc::SIGKILL);
            job.end();
            return Err(e);
        }
        Ok(job)
    }

    /// The connection is open: its program's output goes to `sender`, and
    /// after it the Close its exit status calls for.
    pub fn attach(&mut self, sender: Sender) {
        if let Some(tx) = self.attach.take() {
            let _ = tx.send(sender);
        }
    }

    /// Queues `data` for the program's stdin, waiting up to `timeout` for
    /// room ([`INPUT_QUEUE_BYTES`]). A program that no longer reads its
    /// input (it closed stdin or exited) loses the message; one that takes
    /// nothing for `timeout` fails the connection (1011).
    pub fn write_input(&self, data: Vec<u8>, timeout: Duration) -> syncws::Result<()> {
        let Some(tx) = &self.stdin else { return Ok(()) };
        let len = data.len();
        let queued = match self.gate.admit(len, timeout) {
            Ok(true) => tx.send(data).is_ok(),
            Ok(false) => false,
            Err(()) => {
                return Err(Error::Application(format!("the program read none of its input for {timeout:?}")));
            }
        };
        if !queued {
            log::debug!("{}: the program no longer reads its input: message dropped", self.shared.tag);
        }
        Ok(())
    }

    /// The client sent `close`: the program is ended ([`Job::end`]); its
    /// last output still goes out, then the Close of its exit status, as
    /// the reply (the client's own code if the program had to be killed).
    pub fn client_closed(&mut self, close: Option<CloseData>) {
        self.shared.lock().peer_close = Some(close.unwrap_or_else(|| CloseData::new(CloseCode::NORMAL, "")));
        self.end();
    }

    /// How the program ended, once it has.
    pub fn exit(&self) -> Option<Exit> {
        self.shared.lock().exit
    }

    /// Ends the program, once: closes its stdin, then SIGTERM to its group
    /// unless it exits within [`STDIN_GRACE`], then SIGKILL after the
    /// grace period. Returns at once; a thread of its own does the waiting.
    pub fn end(&mut self) {
        // Dropping the feeder's channel closes stdin once it is idle.
        self.stdin.take();
        self.attach.take();
        {
            let mut state = self.shared.lock();
            let done = state.ending || state.exit.is_some();
            state.ending = true;
            if done {
                return;
            }
        }
        let shared = Arc::clone(&self.shared);
        if let Err(e) = spawn("exec-end", move || terminate(&shared)) {
            log::warn!("{}: cannot start the thread that ends the program ({e}): SIGKILL", self.shared.tag);
            self.shared.signal(libc::SIGKILL);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.end();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signals the group while its leader is unreaped; true if sent.
    fn signal(&self, sig: i32) -> bool {
        let state = self.lock();
        state.exit.is_none() && signal_group(self.pgid, sig).is_ok()
    }

    /// The exit, waiting for it up to `timeout` (`None`: for ever).
    fn wait_exit(&self, timeout: Option<Duration>) -> Option<Exit> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if let Some(exit) = state.exit {
                return Some(exit);
            }
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

/// Starts a small named thread.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new().name(name.into()).stack_size(STACK).spawn(f).map(drop)
}

/// Sends `sig` to every process of the group `pgid` (0 checks that the
/// group still has a process).
#[allow(unsafe_code)]
pub fn signal_group(pgid: i32, sig: i32) -> io::Result<()> {
    // -1 would signal every process we may signal, 0 our own group: a
    // program's group id is its pid, always above 1.
    if pgid <= 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a program's process group"));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours;
    // the negative pid addresses the process group `pgid`. There is no
    // std API for signalling a group (`Child::kill` sends SIGKILL to one
    // process).
    let r = unsafe { libc::kill(-pgid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The waiter: reaps the program, publishes its exit, ends what it left
/// in its group, then gives back the slot.
fn wait(mut child: Child, shared: &Shared, fork: Fork) {
    let exit = loop {
        match child.wait() {
            Ok(status) => break Exit::from_status(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("{}: waiting for the program: {e}", shared.tag);
                break Exit::Unknown;
            }
        }
    };
    log::debug!("{}: program ended: {exit:?}", shared.tag);
    shared.lock().exit = Some(exit);
    shared.changed.notify_all();
    end_leftovers(shared);
    drop(fork);
}

/// After the leader's exit: SIGTERM to what is left in its group, SIGKILL
/// to what is still there after the grace period.
fn end_leftovers(shared: &Shared) {
    if signal_group(shared.pgid, libc::SIGTERM).is_err() {
        // ESRCH: nothing left.
        return;
    }
    log::debug!("{}: the program left processes in its group: SIGTERM", shared.tag);
    let deadline = Instant::now() + shared.grace;
    let mut pause = Duration::from_millis(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(100));
        if signal_group(shared.pgid, 0).is_err() {
            return;
        }
    }
    log::warn!("{}: processes the program left still run after {:?}: SIGKILL", shared.tag, shared.grace);
    let _ = signal_group(shared.pgid, libc::SIGKILL);
}

/// Ends a program that is still running: stdin is closed already; SIGTERM
/// unless it exits within [`STDIN_GRACE`], SIGKILL after the grace.
fn terminate(shared: &Shared) {
    if shared.wait_exit(Some(STDIN_GRACE)).is_some() {
        return;
    }
    if shared.signal(libc::SIGTERM) {
        log::debug!("{}: SIGTERM", shared.tag);
    }
    if shared.wait_exit(Some(shared.grace)).is_some() {
        return;
    }
    if shared.signal(libc::SIGKILL) {
        log::warn!("{}: still running {:?} after SIGTERM: SIGKILL", shared.tag, shared.grace);
    }
}

/// The feeder: writes the queued messages to stdin, those already there
/// together; ends (closing stdin) when the connection drops its end of the
/// channel, after what was queued, or the program its end of the pipe.
fn feed(mut stdin: ChildStdin, rx: &cb::Receiver<Vec<u8>>, gate: &Gate, tag: &str) {
    while let Ok(mut batch) = rx.recv() {
        let mut taken = batch.len();
        while batch.len() < INPUT_QUEUE_BYTES {
            let Ok(more) = rx.try_recv() else { break };
            taken += more.len();
            batch.extend_from_slice(&more);
        }
        if let Err(e) = stdin.write_all(&batch) {
            log::debug!("{tag}: writing to the program: {e}");
            break;
        }
        gate.release(taken);
    }
    gate.close();
}

/// Logs stderr line by line.
fn log_stderr(stderr: ChildStderr, tag: &str) {
    let mut reader = BufReader::with_capacity(MAX_LOG_LINE as usize, stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LOG_LINE).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                log::warn!("{tag}: stderr: {}", text.trim_end_matches(['\n', '\r']));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("{tag}: reading stderr: {e}");
                return;
            }
        }
    }
}

/// The pump: stdout to messages, then the Close of the exit status.
///
/// Sends from this thread write straight to the socket while it takes
/// them; when it does not (a client that reads slowly or not at all), they
/// queue for the connection's writer thread, up to `queue_max_bytes`, and
/// the send waits (the exec server's queue policy blocks for
/// `write_timeout`): the pump stops reading, the pipe fills, the program
/// blocks. A send that fails means the connection is over.
fn pump(stdout: ChildStdout, binary: bool, max: usize, tx: &Sender, shared: &Shared) {
    let open = if binary { pump_chunks(stdout, BINARY_CHUNK.min(max), tx) } else { pump_lines(stdout, max, tx) };
    if !open {
        // The connection ended: dropping stdout makes the program's next
        // write fail (SIGPIPE), if it is still running.
        return;
    }
    let exit = shared.wait_exit(None).unwrap_or(Exit::Unknown);
    let close = match (exit, shared.lock().peer_close.take()) {
        // Killed after the client closed: the reply echoes the client.
        (Exit::Signal(_), Some(peer)) => peer,
        _ => exit.close(),
    };
    let _ = tx.send(OwnedMessage::Close(Some(close)));
}

/// `--binary`: each read of up to `chunk` bytes is a Binary message.
/// False if the connection ended first.
fn pump_chunks(mut out: ChildStdout, chunk: usize, tx: &Sender) -> bool {
    loop {
        let mut buf = vec![0u8; chunk];
        match out.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(OwnedMessage::Binary(buf)).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Lines: each line is a message. False if the connection ended first.
fn pump_lines(out: ChildStdout, max: usize, tx: &Sender) -> bool {
    let mut reader = BufReader::with_capacity(LINE_READ, out);
    let mut lines = Lines::new(max);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => &[],
        };
        if chunk.is_empty() {
            return lines.finish().is_none_or(|last| tx.send(last).is_ok());
        }
        let (used, msg) = lines.push(chunk);
        reader.consume(used);
        if let Some(msg) = msg {
            if tx.send(msg).is_err() {
                return false;
            }
        }
    }
}

/// Cuts a byte stream into messages: a line (without its `\n` or `\r\n`)
/// is a Text message, or Binary if it is not UTF-8; a line longer than
/// `max` bytes goes in pieces of `max` bytes (a piece ends early rather
/// than split a UTF-8 character).
#[derive(Debug)]
pub struct Lines {
    line: Vec<u8>,
    max: usize,
}

impl Lines {
    /// Lines of at most `max` bytes per message (at least 4, the longest
    /// UTF-8 character).
    pub fn new(max: usize) -> Lines {
        Lines { line: Vec::new(), max: max.max(4) }
    }

    /// Takes bytes from `chunk`: returns how many it used and the message
    /// they completed, if any. Call again with the rest.
    pub fn push(&mut self, chunk: &[u8]) -> (usize, Option<OwnedMessage>) {
        let room = self.max - self.line.len();
        let look = chunk.len().min(room + 1);
        if let Some(i) = chunk[..look].iter().position(|&b| b == b'\n') {
            // The line ends within `max` bytes.
            self.line.extend_from_slice(&chunk[..i]);
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            return (i + 1, Some(message(line)));
        }
        if chunk.len() > room {
            // Longer than `max`: a piece.
            self.line.extend_from_slice(&chunk[..room]);
            return (room, Some(self.piece()));
        }
        self.line.extend_from_slice(chunk);
        (chunk.len(), None)
    }

    /// The last line, if the output did not end with a newline.
    pub fn finish(&mut self) -> Option<OwnedMessage> {
        if self.line.is_empty() {
            return None;
        }
        Some(message(std::mem::take(&mut self.line)))
    }

    /// A full buffer as a message; a UTF-8 character cut at its end stays
    /// for the next piece.
    fn piece(&mut self) -> OwnedMessage {
        if let Err(e) = std::str::from_utf8(&self.line) {
            if e.error_len().is_none() && e.valid_up_to() > 0 {
                let tail = self.line.split_off(e.valid_up_to());
                return message(std::mem::replace(&mut self.line, tail));
            }
        }
        message(std::mem::take(&mut self.line))
    }
}

/// Text if `bytes` is UTF-8, else Binary.
fn message(bytes: Vec<u8>) -> OwnedMessage {
    match String::from_utf8(bytes) {
        Ok(s) => OwnedMessage::Text(s),
        Err(e) => OwnedMessage::Binary(e.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message `Lines` makes of `input`, fed in pieces of `step`.
    fn cut(input: &[u8], max: usize, step: usize) -> Vec<OwnedMessage> {
        let mut lines = Lines::new(max);
        let mut out = Vec::new();
        for mut chunk in input.chunks(step) {
            while !chunk.is_empty() {
                let (used, msg) = lines.push(chunk);
                chunk = &chunk[used..];
                out.extend(msg);
            }
        }
        out.extend(lines.finish());
        out
    }

    fn text(s: &str) -> OwnedMessage {
        OwnedMessage::Text(s.into())
    }

    #[test]
    fn lines_become_messages_whatever_the_reads() {
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(cut(b"a\nbb\r\n\nlast", 10, step), [text("a"), text("bb"), text(""), text("last")], "{step}");
            // A line of exactly `max` bytes is one message.
            assert_eq!(cut(b"0123456789\nx\n", 10, step), [text("0123456789"), text("x")], "{step}");
            // Longer: pieces of `max`.
            assert_eq!(cut(b"0123456789abc\n", 10, step), [text("0123456789"), text("abc")], "{step}");
            // Not UTF-8: Binary.
            assert_eq!(cut(b"ok\n\xff\xfe\n", 10, step), [text("ok"), OwnedMessage::Binary(vec![0xff, 0xfe])]);
        }
    }

    #[test]
    fn pieces_do_not_split_a_character() {
        // "é" is two bytes; the piece that would cut it ends before it.
        let input = "aaaaé bbb\n".as_bytes();
        for step in [1, 3, 100] {
            assert_eq!(cut(input, 5, step), [text("aaaa"), text("é bb"), text("b")], "{step}");
        }
    }

    #[test]
    fn exit_statuses_become_close_codes() {
        assert_eq!(Exit::Code(0).close().code(), CloseCode::NORMAL);
        assert_eq!(Exit::Code(3).close().code(), CloseCode::INTERNAL);
        assert_eq!(Exit::Signal(9).close().reason, "program killed by signal 9");
    }

    #[test]
    fn no_group_below_2_is_ever_signalled() {
        for pgid in [-5, 0, 1] {
            assert_eq!(signal_group(pgid, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }
}

//! The event-driven drivers of `syncws bench`: a small fixed number of
//! client threads (`--threads`, default 1), each multiplexing its share of
//! the connections with epoll (through `mio`), for the ping-pong, pipelined
//! and broadcast modes.
//!
//! Why: a thread per client connection competes with the server for the
//! cores, and Linux shares CPU per runnable thread, so a server with a
//! thread per connection got a larger share than an async server with two
//! workers (issue 17). With one client thread the client's share no longer
//! depends on the server's thread count.
//!
//! Each connection is a small state machine over a non-blocking socket: its
//! handshake is done first with the blocking client of [`wire`] (with the
//! `--timeout` deadline), then the socket turns non-blocking and joins the
//! poll. Frames are parsed and every echo verified by the same
//! [`FrameReader`](wire::FrameReader) and [`Payloads`](wire::Payloads) as
//! the threaded drivers; bytes not yet written wait in the connection's
//! output buffer, which holds at most the messages in flight.
//!
//! Plain `ws://` only; `wss://` targets use the threaded drivers.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::stats::{cpu_time, nanos, CpuTime};
use super::wire::{self, encode_close, key, FrameReader, Payloads, Rng, Stream, Target, WireError, WireResult};
use super::{merge, open, Args, Mode, Part, Report, Window};

/// The token of a thread's waker (broadcast: "send the next message").
const WAKE: Token = Token(usize::MAX);

/// One connection in the poll.
struct Conn {
    sock: TcpStream,
    reader: FrameReader,
    rng: Rng,
    /// Bytes to write, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// Messages sent and verified.
    sent: u64,
    received: u64,
    /// Send time of each message in flight (echo modes).
    sent_at: VecDeque<Instant>,
    /// Finished (closed, failed, or done).
    done: bool,
}

impl Conn {
    /// Handshakes with the blocking client, then makes the socket
    /// non-blocking for the poll.
    fn open(target: &Target, args: &Args, seed: u64) -> WireResult<Conn> {
        let c = open(target, args, seed)?;
        let Stream::Plain(std_sock) = c.stream else {
            return Err(WireError::Bad("the event-driven client speaks ws:// only".into()));
        };
        std_sock.set_nonblocking(true)?;
        let mut reader = c.reader;
        reader.max_payload = max_payload(args);
        Ok(Conn {
            sock: TcpStream::from_std(std_sock),
            reader,
            rng: c.rng,
            out: Vec::new(),
            out_at: 0,
            sent: 0,
            received: 0,
            sent_at: VecDeque::new(),
            done: false,
        })
    }

    /// Writes what it can of the output buffer; `Ok(true)` when all of it
    /// is written.
    fn flush(&mut self) -> WireResult<bool> {
        while self.out_at < self.out.len() {
            match self.sock.write(&self.out[self.out_at..]) {
                Ok(0) => return Err(WireError::Bad("the server stopped reading".into())),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(true)
    }

    /// Reads once; `Ok(false)` when the socket has nothing more now.
    fn fill(&mut self) -> WireResult<bool> {
        match self.reader.fill(&mut self.sock) {
            Ok(()) => Ok(true),
            Err(WireError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(WireError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The next data message already buffered, skipping Pings and Pongs; a
    /// Close is an error.
    fn next_buffered(&mut self) -> WireResult<Option<wire::Msg>> {
        while let Some(m) = self.reader.parse()? {
            match m.opcode {
                wire::OP_PING | wire::OP_PONG => continue,
                wire::OP_CLOSE => {
                    let p = self.reader.payload(&m);
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    let reason = String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into_owned();
                    return Err(WireError::Bad(format!("the server closed the connection: {code:?} {reason}")));
                }
                _ => return Ok(Some(m)),
            }
        }
        Ok(None)
    }

    /// Queues a Close and writes what it can (the reply is not awaited: the
    /// run is over).
    fn close(&mut self) {
        let k = key(&mut self.rng);
        encode_close(&mut self.out, k);
        let _ = self.flush();
        self.done = true;
    }
}

/// The largest frame or message accepted from the server: the payload size
/// (or a control frame), so a bogus length can never make the reader
/// allocate more.
fn max_payload(args: &Args) -> usize {
    args.size.max(125)
}

/// Client threads for the event-driven modes.
pub(super) fn threads(args: &Args, conns: usize) -> usize {
    args.threads.unwrap_or(1).clamp(1, conns.max(1))
}

/// This process's CPU time, for the client's share of the window.
fn own_cpu() -> Option<Duration> {
    cpu_time(std::process::id()).map(CpuTime::total)
}

/// Records the client's CPU over the window in `report`.
fn client_cpu(report: &mut Report, before: Option<Duration>, after: Option<Duration>, threads: usize) {
    if let (Some(a), Some(b)) = (before, after) {
        report.client_cpu_s = Some(b.saturating_sub(a).as_secs_f64());
    }
    report.client_threads = threads;
}

/// Ping-pong and pipelined: `--conns` connections over `--threads` polls.
pub(super) fn echo_run(args: &Args, target: &Target, report: &mut Report) {
    let payloads = Arc::new(Payloads::new(args.size, args.text));
    let mut part = Part::default();
    let mut conns = Vec::new();
    for i in 0..args.conns {
        match Conn::open(target, args, i as u64 + 1) {
            Ok(c) => conns.push(c),
            Err(e) => part.error(format!("connect: {e}")),
        }
    }
    report.connected = conns.len();
    let nthreads = threads(args, conns.len());
    let mut shares: Vec<Vec<Conn>> = (0..nthreads).map(|_| Vec::new()).collect();
    for (i, c) in conns.into_iter().enumerate() {
        shares[i % nthreads].push(c);
    }
    let window = Window::new(args);
    let running = Arc::new(AtomicUsize::new(nthreads));
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (p, a, r) = (Arc::clone(&payloads), args.clone(), Running(Arc::clone(&running)));
            thread::Builder::new()
                .name("bench-poll".into())
                .spawn(move || {
                    let _running = r;
                    echo_loop(share, &p, &a, window)
                })
                .expect("cannot start a load generator thread")
        })
        .collect();
    let (cpu0, cpu1) = watch(args, window, report, &running);
    let mut parts = vec![part];
    parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_default()));
    client_cpu(report, cpu0, cpu1, nthreads);
    merge(report, parts);
}

/// Samples the server (as `watch_server`) and this process over the window;
/// returns the client's CPU at the window's start and end.
/// Returns early when every thread has finished (`--count` reached).
fn watch(
    args: &Args,
    window: Window,
    report: &mut Report,
    running: &AtomicUsize,
) -> (Option<Duration>, Option<Duration>) {
    sleep_until_or_done(window.start, running);
    let cpu0 = own_cpu();
    let server0 = args.server_pid.and_then(cpu_time);
    sleep_until_or_done(window.end, running);
    let cpu1 = own_cpu();
    if let Some(pid) = args.server_pid {
        report.record_server(pid, server0);
    }
    report.window_s = args.duration;
    (cpu0, cpu1)
}

/// Sleeps until `t`, or until no thread is `running`.
fn sleep_until_or_done(t: Instant, running: &AtomicUsize) {
    loop {
        let now = Instant::now();
        if now >= t || running.load(Ordering::Acquire) == 0 {
            return;
        }
        thread::sleep((t - now).min(Duration::from_millis(10)));
    }
}

/// Counts a driver thread down when it ends (also by unwinding).
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Queues message `c.sent` on `c`.
fn send_next(c: &mut Conn, p: &Payloads, now: Instant) {
    let k = key(&mut c.rng);
    p.encode(&mut c.out, c.sent, k);
    c.sent_at.push_back(now);
    c.sent += 1;
}

/// One thread's connections in the echo modes, until each has its last
/// echo (or fails).
fn echo_loop(mut conns: Vec<Conn>, p: &Payloads, args: &Args, window: Window) -> Part {
    let mut part = Part::default();
    let poll = Poll::new();
    let mut poll = match poll {
        Ok(poll) => poll,
        Err(e) => {
            part.error(format!("epoll: {e}"));
            return part;
        }
    };
    let limit = args.count.unwrap_or(u64::MAX);
    let in_flight = if args.mode == Mode::Pipelined { args.in_flight.max(1) as u64 } else { 1 };
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut live = 0usize;
    let now = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = poll.registry().register(&mut c.sock, Token(i), Interest::READABLE | Interest::WRITABLE) {
            part.error(format!("epoll: {e}"));
            c.done = true;
            continue;
        }
        while c.sent < limit && c.sent < in_flight {
            send_next(c, p, now);
        }
        if c.sent == 0 {
            c.close();
            continue;
        }
        live += 1;
        if let Err(e) = c.flush() {
            part.error(e);
            c.done = true;
            live -= 1;
        }
    }
    let mut events = Events::with_capacity(1024);
    while live > 0 {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            part.error(format!("epoll: {e}"));
            break;
        }
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else { continue };
            if c.done {
                continue;
            }
            match step_echo(c, p, &mut part, limit, window) {
                Ok(false) => {}
                Ok(true) => {
                    c.close();
                    live -= 1;
                }
                Err(e) => {
                    part.error(e);
                    c.done = true;
                    live -= 1;
                }
            }
        }
        // An echo later than --timeout is an error, as in the threaded
        // drivers.
        let now = Instant::now();
        for c in conns.iter_mut().filter(|c| !c.done) {
            if c.sent_at.front().is_some_and(|t0| now.duration_since(*t0) > timeout) {
                part.error(format!("message {}: no echo within {timeout:?}", c.received));
                c.done = true;
                live -= 1;
            }
        }
    }
    part
}

/// Reads and verifies what `c` has, answers with new messages, writes;
/// `Ok(true)` when the connection has received its last echo.
fn step_echo(c: &mut Conn, p: &Payloads, part: &mut Part, limit: u64, window: Window) -> WireResult<bool> {
    loop {
        let more = c.fill()?;
        let now = Instant::now();
        let sending = now < window.end;
        while let Some(m) = c.next_buffered()? {
            p.verify(&m, c.reader.payload(&m), c.received)?;
            let t0 = c.sent_at.pop_front().unwrap_or(now);
            if window.contains(t0, now) {
                part.msgs += 1;
                part.bytes += p.size() as u64;
                part.lat.push(nanos(now - t0));
            }
            c.received += 1;
            if sending && c.sent < limit {
                send_next(c, p, now);
            }
        }
        if !more {
            break;
        }
    }
    c.flush()?;
    Ok(c.received == c.sent && (c.sent >= limit || Instant::now() >= window.end))
}

/// State shared by the threads of a broadcast run.
struct Bcast {
    /// When each message was sent, ns after `base`.
    sent_at: Vec<AtomicU64>,
    base: Instant,
    /// Deliveries so far, all receivers together.
    delivered: AtomicU64,
    /// Wakes the sender's thread when a message reached every receiver.
    waker: Waker,
    stop: AtomicBool,
    receivers: u64,
}

/// Broadcast: `--conns` receivers over `--threads` polls; the sender lives
/// in the first thread's poll and sends message k+1 once every receiver
/// verified message k.
pub(super) fn broadcast_run(args: &Args, target: &Target, report: &mut Report) {
    let target = target.with_path(&args.broadcast_path);
    let payloads = Arc::new(Payloads::new(args.size, args.text));
    let cap = args.count.unwrap_or(1_000_000).min(10_000_000) as usize;
    let mut part = Part::default();
    let mut receivers = Vec::new();
    for i in 0..args.conns {
        match Conn::open(&target, args, i as u64 + 1) {
            Ok(c) => receivers.push(c),
            Err(e) => part.error(format!("connect: {e}")),
        }
    }
    report.connected = receivers.len();
    if receivers.is_empty() {
        merge(report, vec![part]);
        return;
    }
    let sender = match Conn::open(&target, args, 0) {
        Ok(c) => c,
        Err(e) => {
            part.error(format!("connect (sender): {e}"));
            merge(report, vec![part]);
            return;
        }
    };
    let nthreads = threads(args, receivers.len());
    let mut polls = Vec::new();
    for _ in 0..nthreads {
        match Poll::new() {
            Ok(p) => polls.push(p),
            Err(e) => {
                part.error(format!("epoll: {e}"));
                merge(report, vec![part]);
                return;
            }
        }
    }
    let waker = match Waker::new(polls[0].registry(), WAKE) {
        Ok(w) => w,
        Err(e) => {
            part.error(format!("epoll: {e}"));
            merge(report, vec![part]);
            return;
        }
    };
    let shared = Arc::new(Bcast {
        sent_at: (0..cap).map(|_| AtomicU64::new(0)).collect(),
        base: Instant::now(),
        delivered: AtomicU64::new(0),
        waker,
        stop: AtomicBool::new(false),
        receivers: receivers.len() as u64,
    });
    let mut shares: Vec<Vec<Conn>> = (0..nthreads).map(|_| Vec::new()).collect();
    for (i, c) in receivers.into_iter().enumerate() {
        shares[i % nthreads].push(c);
    }
    let window = Window::new(args);
    let mut sender = Some(sender);
    let running = Arc::new(AtomicUsize::new(nthreads));
    let handles: Vec<_> = shares
        .into_iter()
        .zip(polls)
        .map(|(share, poll)| {
            let (p, s, a, snd) = (Arc::clone(&payloads), Arc::clone(&shared), args.clone(), sender.take());
            let r = Running(Arc::clone(&running));
            thread::Builder::new()
                .name("bench-poll".into())
                .spawn(move || {
                    let _running = r;
                    broadcast_loop(poll, share, snd, &p, &s, &a, window, cap)
                })
                .expect("cannot start a load generator thread")
        })
        .collect();
    let (cpu0, cpu1) = watch(args, window, report, &running);
    let mut parts = vec![part];
    let mut sent = 0;
    let mut counts = Vec::new();
    for h in handles {
        let (p, got, s) = h.join().unwrap_or_default();
        parts.push(p);
        counts.extend(got);
        sent = sent.max(s);
    }
    for got in counts {
        if got != sent && got + 1 != sent {
            parts[0].error(format!("a receiver got {got} of {sent} messages"));
        }
    }
    client_cpu(report, cpu0, cpu1, nthreads);
    merge(report, parts);
}

/// One thread of a broadcast run. Returns what it counted, how many
/// messages each of its receivers verified, and (the sender's thread) how
/// many were sent.
#[allow(clippy::too_many_arguments)]
fn broadcast_loop(
    mut poll: Poll,
    mut conns: Vec<Conn>,
    mut sender: Option<Conn>,
    p: &Payloads,
    s: &Bcast,
    args: &Args,
    window: Window,
    cap: usize,
) -> (Part, Vec<u64>, u64) {
    let mut part = Part::default();
    let timeout = Duration::from_secs_f64(args.timeout);
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = poll.registry().register(&mut c.sock, Token(i), Interest::READABLE) {
            part.error(format!("epoll: {e}"));
            c.done = true;
        }
    }
    let sender_token = Token(conns.len());
    if let Some(snd) = sender.as_mut() {
        if let Err(e) = poll.registry().register(&mut snd.sock, sender_token, Interest::READABLE | Interest::WRITABLE) {
            part.error(format!("epoll: {e}"));
            s.stop.store(true, Ordering::Release);
        }
    }
    let mut events = Events::with_capacity(1024);
    // The sender's state: when its last message went out.
    let mut last_send = Instant::now();
    let mut send_now = sender.is_some();
    loop {
        if s.stop.load(Ordering::Acquire) {
            break;
        }
        if let Some(snd) = sender.as_mut() {
            let now = Instant::now();
            if send_now {
                send_now = false;
                if (snd.sent as usize) < cap && now < window.end {
                    s.sent_at[snd.sent as usize].store(nanos(now - s.base), Ordering::Release);
                    let k = key(&mut snd.rng);
                    p.encode(&mut snd.out, snd.sent, k);
                    snd.sent += 1;
                    last_send = now;
                    if let Err(e) = snd.flush() {
                        part.error(format!("sender: {e}"));
                        s.stop.store(true, Ordering::Release);
                        break;
                    }
                } else {
                    s.stop.store(true, Ordering::Release);
                    break;
                }
            } else if s.delivered.load(Ordering::Acquire) < s.receivers * snd.sent
                && now.duration_since(last_send) > timeout
            {
                let got = s.delivered.load(Ordering::Acquire) - s.receivers * (snd.sent - 1);
                part.error(format!(
                    "message {}: delivered {got} times of {} within {timeout:?}",
                    snd.sent - 1,
                    s.receivers
                ));
                s.stop.store(true, Ordering::Release);
                break;
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            part.error(format!("epoll: {e}"));
            s.stop.store(true, Ordering::Release);
            break;
        }
        for ev in events.iter() {
            if ev.token() == WAKE {
                if let Some(snd) = &sender {
                    send_now = s.delivered.load(Ordering::Acquire) >= s.receivers * snd.sent;
                }
                continue;
            }
            if ev.token() == sender_token {
                if let Some(snd) = sender.as_mut() {
                    // A server may send the sender its own messages back
                    // (pub/sub with the publisher subscribed): drain them,
                    // checking the framing; write what is pending.
                    let r = (|| -> WireResult<()> {
                        while snd.fill()? {
                            while snd.next_buffered()?.is_some() {}
                        }
                        snd.flush().map(drop)
                    })();
                    if let Err(e) = r {
                        part.error(format!("sender: {e}"));
                        s.stop.store(true, Ordering::Release);
                    }
                }
                continue;
            }
            let Some(c) = conns.get_mut(ev.token().0) else { continue };
            if c.done {
                continue;
            }
            if let Err(e) = receive(c, p, s, &mut part, window) {
                if !s.stop.load(Ordering::Acquire) {
                    part.error(e);
                }
                c.done = true;
            }
        }
    }
    let sent = sender.as_ref().map_or(0, |c| c.sent);
    if let Some(snd) = sender.as_mut() {
        snd.close();
    }
    for c in conns.iter_mut().filter(|c| !c.done) {
        c.close();
    }
    let got = conns.iter().map(|c| c.received).collect();
    (part, got, sent)
}

/// Verifies the broadcast messages `c` has; wakes the sender when one has
/// reached every receiver.
fn receive(c: &mut Conn, p: &Payloads, s: &Bcast, part: &mut Part, window: Window) -> WireResult<()> {
    loop {
        let more = c.fill()?;
        let now = Instant::now();
        while let Some(m) = c.next_buffered()? {
            p.verify(&m, c.reader.payload(&m), c.received)?;
            let sent_ns = s.sent_at.get(c.received as usize).map_or(0, |t| t.load(Ordering::Acquire));
            let t0 = s.base + Duration::from_nanos(sent_ns);
            if window.contains(t0, now) {
                part.msgs += 1;
                part.bytes += p.size() as u64;
                part.lat.push(nanos(now.saturating_duration_since(t0)));
            }
            c.received += 1;
            let d = s.delivered.fetch_add(1, Ordering::AcqRel) + 1;
            if d % s.receivers == 0 {
                let _ = s.waker.wake();
            }
        }
        if !more {
            return Ok(());
        }
    }
}

//! Shared test helpers: listeners on port 0, a recording handler that reports
//! every callback over a channel, and tungstenite peers with watchdog
//! timeouts. No test sleeps to wait for readiness.
#![allow(dead_code)]

pub mod ports;
pub mod proxies;
pub mod servers;

use std::net::{SocketAddr, TcpStream};
use std::sync::Once;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender as ChanSender};
use syncws::{
    CloseData, Config, Error, Listener, OwnedMessage, Result, Running, Sender, WsHandshake, WsOption, WsTrait,
};

/// Generous bound for anything a test waits on; only reached when broken.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = env_logger::builder().is_test(true).try_init();
    });
}

/// Echoes every data message.
pub struct Echo(pub Option<Sender>);

impl WsTrait for Echo {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.0 = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        self.0.as_ref().expect("opened").send(msg)
    }
}

/// An echo listener on 127.0.0.1, port 0.
pub fn echo_server(config: Config) -> Running {
    init_log();
    let listener = Listener::bind_with_config("127.0.0.1:0", config).expect("bind");
    listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).expect("spawn")
}

/// What a [`Recorder`] saw, in order.
#[derive(Debug)]
pub enum Event {
    Open(Sender, Option<String>),
    Message(OwnedMessage),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Interval,
    Error(String),
    Close(Option<CloseData>),
    Dropped,
}

/// Reports every callback on a channel; echoes data messages if `echo`.
pub struct Recorder {
    pub events: ChanSender<Event>,
    pub sender: Option<Sender>,
    pub echo: bool,
    pub interval: Option<Duration>,
}

impl Recorder {
    pub fn new(echo: bool) -> (Recorder, Receiver<Event>) {
        let (tx, rx) = unbounded();
        (Recorder { events: tx, sender: None, echo, interval: None }, rx)
    }
}

impl WsTrait for Recorder {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let _ = self.events.send(Event::Open(shake.sender.clone(), shake.protocol.clone()));
        self.sender = Some(shake.sender);
        Ok(self.interval.map(WsOption::new))
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if self.echo {
            self.sender.as_ref().expect("opened").send(msg.clone())?;
        }
        let _ = self.events.send(Event::Message(msg));
        Ok(())
    }
    fn on_ping(&mut self, val: Vec<u8>) -> Result<Option<OwnedMessage>> {
        let _ = self.events.send(Event::Ping(val.clone()));
        Ok(Some(OwnedMessage::Pong(val)))
    }
    fn on_pong(&mut self, val: Vec<u8>) {
        let _ = self.events.send(Event::Pong(val));
    }
    fn on_interval(&mut self, _option: &mut Option<WsOption>) -> Result<()> {
        let _ = self.events.send(Event::Interval);
        Ok(())
    }
    fn on_error(&mut self, err: Error) {
        let _ = self.events.send(Event::Error(err.to_string()));
    }
    fn on_close(&mut self, reason: &Option<CloseData>) {
        let _ = self.events.send(Event::Close(reason.clone()));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Dropped);
    }
}

/// A listener whose connections each get a fresh [`Recorder`]; every
/// connection's events arrive on the one returned receiver.
pub fn recording_server(config: Config, echo: bool, interval: Option<Duration>) -> (Running, Receiver<Event>) {
    init_log();
    let (tx, rx) = unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", config).expect("bind");
    let running = listener
        .spawn(move |server| {
            server.set_callback_ws(Box::new(Recorder { events: tx.clone(), sender: None, echo, interval }));
        })
        .expect("spawn");
    (running, rx)
}

/// Next event, or a panic naming what was awaited.
pub fn next(rx: &Receiver<Event>, what: &str) -> Event {
    match rx.recv_timeout(WAIT) {
        Ok(e) => e,
        Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
        Err(RecvTimeoutError::Disconnected) => panic!("event channel closed waiting for {what}"),
    }
}

/// Waits for the first event matching `pred`, skipping others.
pub fn wait_for(rx: &Receiver<Event>, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    loop {
        let e = next(rx, what);
        if pred(&e) {
            return e;
        }
    }
}

pub type Tung = tungstenite::WebSocket<TcpStream>;

/// A tungstenite client connected to `addr` (read timeout = [`WAIT`]).
pub fn tung_client(addr: SocketAddr, path: &str) -> Tung {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("tungstenite handshake");
    ws
}

/// Reads the next data or close message from a tungstenite socket,
/// skipping pings and pongs.
pub fn tung_next<S: std::io::Read + std::io::Write>(ws: &mut tungstenite::WebSocket<S>) -> tungstenite::Message {
    loop {
        match ws.read().expect("tungstenite read") {
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            m => return m,
        }
    }
}

/// Echoes every data message on a tungstenite connection until it ends.
pub fn tung_echo<S: std::io::Read + std::io::Write>(mut ws: tungstenite::WebSocket<S>) {
    while let Ok(msg) = ws.read() {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            return;
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Names of this process's threads that start with `prefix`.
pub fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0 };
    dir.filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// A raw TCP connection that has done the upgrade by hand, for sending
/// frames a well-behaved library would never send.
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    raw_ws_at(addr, "/")
}

/// [`raw_ws`] with a request path.
pub fn raw_ws_at(addr: SocketAddr, path: &str) -> TcpStream {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request(path, &[]).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// An upgrade request head with extra header lines.
pub fn upgrade_request(path: &str, extra: &[&str]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

/// Reads an HTTP head (through the blank line) byte by byte.
pub fn read_head(s: &mut TcpStream) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            other => panic!("head cut short ({other:?}): {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A frame as a client sends it (masked unless `masked` is false).
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x5a, 0xa5, 0x3c, 0xc3];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads one server frame: its first byte (FIN, RSV, opcode) and payload.
pub fn read_server_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("connection ended before a frame");
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// Reads server frames until a Close arrives; returns its code (`None` for
/// a Close without one) or panics if the connection ends without a Close.
pub fn read_close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (first, payload) = read_server_frame(s);
        if first & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Asserts the server at `addr` still echoes for a fresh client.
pub fn still_serves(addr: SocketAddr) {
    let mut ws = tung_client(addr, "/");
    ws.send(tungstenite::Message::text("still here?")).unwrap();
    assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), "still here?");
}

//! permessage-deflate against real peers that compress: Python
//! `websockets` (client and server), Node's `ws` with `perMessageDeflate`
//! (client and server), and headless Chromium (a page that reports
//! `ws.extensions`). Each negotiates, echoes text and binary messages of
//! 1 B to 1 MiB, and a tap between the two ends (a TCP relay that parses
//! the frames going by) asserts that compressed frames (RSV1) crossed the
//! wire in both directions.
//!
//! The peers are installed by `.ci/interop-peers.sh` (a venv with
//! `websockets` in `target/interop-venv`, `ws` in `target/interop-node`,
//! Debian's `chromium`). A missing peer skips its test with a message;
//! with `SYNCWS_REQUIRE_PEERS=1` (as `.ci/run` sets) it fails it.

#![cfg(feature = "deflate")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use crossbeam_channel::{unbounded, Sender as ChanSender};
use support::*;
use syncws::protocol::FrameHeader;
use syncws::{
    Client, Config, DeflateConfig, Listener, OriginPolicy, OwnedMessage, Result, Running, Sender, WsHandshake,
    WsOption, WsTrait,
};

/// Message sizes every peer echoes, text and binary.
const SIZES: [usize; 6] = [1, 100, 1024, 20_000, 65_536, 1 << 20];

fn deflate_config() -> Config {
    Config::default().deflate(Some(DeflateConfig::default())).origin(OriginPolicy::Any)
}

/// A text payload of `n` bytes that compresses well, different for each size.
fn text_of(n: usize) -> String {
    let words = ["alpha ", "beta ", "gamma ", "delta ", "{\"id\":42} "];
    let mut s = String::with_capacity(n + 16);
    let mut i = n;
    while s.len() < n {
        s.push_str(words[i % words.len()]);
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s.truncate(n);
    s
}

/// A binary payload of `n` bytes, the same the scripts make: `i % 251`.
fn binary_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------- the tap

/// What a tap saw on the connections it relayed.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// `Sec-WebSocket-Extensions` of the upgrade requests and of the 101s.
    offered: Vec<String>,
    answered: Vec<String>,
    /// Data frames (first frames and continuations) and those with RSV1,
    /// client to server and server to client.
    to_server: (usize, usize),
    to_client: (usize, usize),
}

/// A TCP relay in front of `target` that parses the frames of WebSocket
/// connections going through it.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Tap {
    fn new(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else { return };
                for (from, to, up) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap(), true), (server, client, false)]
                {
                    let seen = Arc::clone(&shared);
                    thread::spawn(move || relay(from, to, up, &seen));
                }
            }
        });
        Tap { addr, seen }
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Asserts that the handshake negotiated permessage-deflate and that
    /// compressed frames went both ways.
    fn assert_compressed_both_ways(&self, who: &str) {
        let seen = self.seen();
        eprintln!("{who}: {seen:?}");
        assert!(seen.offered.iter().any(|o| o.contains("permessage-deflate")), "{who}: no offer: {seen:?}");
        assert!(seen.answered.iter().any(|a| a.starts_with("permessage-deflate")), "{who}: not accepted: {seen:?}");
        assert!(seen.to_server.1 > 0, "{who}: no compressed frame from the client: {seen:?}");
        assert!(seen.to_client.1 > 0, "{who}: no compressed frame from the server: {seen:?}");
    }
}

/// Copies `from` to `to`, reading the HTTP head and then the frames of
/// the direction (`up`: client to server).
fn relay(mut from: TcpStream, mut to: TcpStream, up: bool, seen: &Mutex<Seen>) {
    let mut head = Vec::new();
    let mut frames: Option<Frames> = None;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&chunk[..n]).is_err() {
            break;
        }
        if let Some(f) = frames.as_mut() {
            f.feed(&chunk[..n], up, seen);
            continue;
        }
        head.extend_from_slice(&chunk[..n]);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        let ext = text.lines().find_map(|l| l.strip_prefix("sec-websocket-extensions:")).map(|v| v.trim().to_owned());
        match (up, ext) {
            (true, Some(e)) => seen.lock().unwrap().offered.push(e),
            (false, Some(e)) => seen.lock().unwrap().answered.push(e),
            _ => {}
        }
        let websocket = if up { text.contains("upgrade: websocket") } else { text.starts_with("http/1.1 101") };
        // Plain HTTP is not looked at further.
        let mut f = Frames { header: Vec::new(), skip: if websocket { 0 } else { u64::MAX } };
        f.feed(&head[end + 4..], up, seen);
        frames = Some(f);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Frame headers read out of one direction's bytes; payloads skipped.
struct Frames {
    /// A header read so far.
    header: Vec<u8>,
    /// Payload bytes still to skip.
    skip: u64,
}

impl Frames {
    fn feed(&mut self, mut bytes: &[u8], up: bool, seen: &Mutex<Seen>) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() as u64) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            // A byte at a time: a header is at most 14 of them.
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            match FrameHeader::parse(&self.header) {
                Ok(None) => {}
                Ok(Some((h, _))) => {
                    if !h.opcode.is_control() {
                        let mut s = seen.lock().unwrap();
                        let count = if up { &mut s.to_server } else { &mut s.to_client };
                        count.0 += 1;
                        count.1 += usize::from(h.rsv & 0b100 != 0);
                    }
                    self.header.clear();
                    self.skip = h.payload_len;
                }
                Err(_) => self.skip = u64::MAX,
            }
        }
    }
}

// ---------------------------------------------------------------- peers

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The peer program at `path`, or `None` (with the test skipped, or failed
/// under `SYNCWS_REQUIRE_PEERS=1`) when it is not installed.
fn peer(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!("{what} not found at {}: run .ci/interop-peers.sh", path.display());
    if std::env::var_os("SYNCWS_REQUIRE_PEERS").is_some_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("SYNCWS_INTEROP_PYTHON")
        .map_or_else(|| repo().join("target/interop-venv/bin/python"), PathBuf::from);
    peer(path, "python with websockets")
}

fn node_modules() -> Option<PathBuf> {
    let path = std::env::var_os("SYNCWS_INTEROP_NODE_MODULES")
        .map_or_else(|| repo().join("target/interop-node/node_modules"), PathBuf::from);
    peer(path.join("ws"), "node's ws").map(|_| path)
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SYNCWS_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    peer(path, "chromium")
}

/// A child process killed (by its own handle) when the test ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    /// Runs `cmd`, handing its stdout lines to the returned channel.
    fn spawn(mut cmd: Command) -> (Peer, crossbeam_channel::Receiver<String>) {
        let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("the peer starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = unbounded();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(std::result::Result::ok) {
                let _ = tx.send(line);
            }
        });
        (Peer(child), rx)
    }
}

/// The next line starting with `prefix`, without it; fails on the
/// watchdog or if the peer exits first.
fn line(rx: &crossbeam_channel::Receiver<String>, prefix: &str) -> String {
    loop {
        match rx.recv_timeout(WAIT * 3) {
            Ok(l) => {
                if let Some(rest) = l.strip_prefix(prefix) {
                    return rest.trim().to_owned();
                }
                eprintln!("peer: {l}");
            }
            Err(e) => panic!("no {prefix:?} line from the peer ({e}); see its output above"),
        }
    }
}

fn sizes_arg() -> String {
    SIZES.map(|n| n.to_string()).join(",")
}

/// Echoes `SIZES` as text and binary through a syncws client with deflate.
fn syncws_client_echo(url: &str) -> Client {
    let mut client = Client::builder().url(url).unwrap().config(deflate_config()).connect().expect("connects");
    let ext = client.response().header("sec-websocket-extensions").unwrap_or_default().to_owned();
    assert!(ext.starts_with("permessage-deflate"), "not negotiated: {ext:?}");
    for &n in &SIZES {
        for msg in [OwnedMessage::Text(text_of(n)), OwnedMessage::Binary(binary_of(n))] {
            client.send(msg.clone()).unwrap();
            let got = loop {
                if let m @ (OwnedMessage::Text(_) | OwnedMessage::Binary(_)) = client.read().unwrap() {
                    break m;
                }
            };
            assert!(got == msg, "echo of {n} bytes differs");
        }
    }
    client
}

// ---------------------------------------------------------------- Python

const PY_CLIENT: &str = r#"
import asyncio, sys, websockets
url, sizes = sys.argv[1], [int(n) for n in sys.argv[2].split(",")]
words = ["alpha ", "beta ", "gamma ", "delta ", "{\"id\":42} "]
def text_of(n):
    s, i = [], n
    size = 0
    while size < n:
        w = words[i % len(words)]; s.append(w); size += len(w)
        i = (i * 31 + 7) % (1 << 64)
    return "".join(s)[:n]
async def main():
    async with websockets.connect(url, max_size=None, compression="deflate") as ws:
        print("EXT", ws.response.headers.get("Sec-WebSocket-Extensions"), flush=True)
        for n in sizes:
            t = text_of(n)
            await ws.send(t)
            assert await ws.recv() == t, n
            b = bytes(i % 251 for i in range(n))
            await ws.send(b)
            assert await ws.recv() == b, n
        print("DONE", flush=True)
asyncio.run(main())
"#;

const PY_SERVER: &str = r#"
import asyncio, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None, compression="deflate") as server:
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

#[test]
fn python_websockets_client_against_syncws_server() {
    let Some(python) = python() else { return };
    let server = echo_server(deflate_config());
    let tap = Tap::new(server.local_addr());
    let mut cmd = Command::new(python);
    cmd.args(["-c", PY_CLIENT, &format!("ws://{}/", tap.addr), &sizes_arg()]);
    let (_peer, rx) = Peer::spawn(cmd);
    let ext = line(&rx, "EXT");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    line(&rx, "DONE");
    tap.assert_compressed_both_ways("python client");
    server.shutdown();
}

#[test]
fn syncws_client_against_python_websockets_server() {
    let Some(python) = python() else { return };
    let mut cmd = Command::new(python);
    cmd.args(["-c", PY_SERVER]);
    let (_peer, rx) = Peer::spawn(cmd);
    let port: u16 = line(&rx, "PORT").parse().unwrap();
    let tap = Tap::new(SocketAddr::from(([127, 0, 0, 1], port)));
    syncws_client_echo(&format!("ws://{}/", tap.addr)).close(syncws::CloseCode::NORMAL, "done").unwrap();
    tap.assert_compressed_both_ways("python server");
}

// ---------------------------------------------------------------- Node

const NODE_CLIENT: &str = r#"
const WebSocket = require("ws");
const [url, sizes] = [process.argv[1], process.argv[2].split(",").map(Number)];
const words = ["alpha ", "beta ", "gamma ", "delta ", "{\"id\":42} "];
function textOf(n) {
  let s = "", i = BigInt(n);
  while (s.length < n) { s += words[Number(i % 5n)]; i = (i * 31n + 7n) % (1n << 64n); }
  return s.slice(0, n);
}
const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 0 });
const queue = [];
for (const n of sizes) {
  queue.push([textOf(n), false]);
  queue.push([Buffer.from(Array.from({ length: n }, (_, i) => i % 251)), true]);
}
let at = 0;
function next() {
  if (at === queue.length) { console.log("DONE"); ws.close(); return; }
  ws.send(queue[at][0], { binary: queue[at][1] });
}
ws.on("open", () => { console.log("EXT " + ws.extensions); next(); });
ws.on("message", (data, isBinary) => {
  const [want, binary] = queue[at];
  const ok = binary ? isBinary && Buffer.compare(data, want) === 0 : !isBinary && data.toString() === want;
  if (!ok) { console.log("MISMATCH " + at); process.exit(1); }
  at += 1; next();
});
ws.on("error", (e) => { console.log("ERROR " + e); process.exit(1); });
"#;

const NODE_SERVER: &str = r#"
const { WebSocketServer } = require("ws");
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true, maxPayload: 0 });
wss.on("listening", () => console.log("PORT " + wss.address().port));
wss.on("connection", (ws) => ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
"#;

fn node(script: &str, args: &[&str]) -> Option<Command> {
    let modules = node_modules()?;
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", modules).arg("-e").arg(script).arg("--").args(args);
    Some(cmd)
}

#[test]
fn node_ws_client_against_syncws_server() {
    let server = echo_server(deflate_config());
    let tap = Tap::new(server.local_addr());
    let url = format!("ws://{}/", tap.addr);
    let Some(cmd) = node(NODE_CLIENT, &[&url, &sizes_arg()]) else { return };
    let (_peer, rx) = Peer::spawn(cmd);
    let ext = line(&rx, "EXT");
    assert!(ext.contains("permessage-deflate"), "{ext}");
    line(&rx, "DONE");
    tap.assert_compressed_both_ways("node client");
    server.shutdown();
}

#[test]
fn syncws_client_against_node_ws_server() {
    let Some(cmd) = node(NODE_SERVER, &[]) else { return };
    let (_peer, rx) = Peer::spawn(cmd);
    let port: u16 = line(&rx, "PORT").parse().unwrap();
    let tap = Tap::new(SocketAddr::from(([127, 0, 0, 1], port)));
    syncws_client_echo(&format!("ws://{}/", tap.addr)).close(syncws::CloseCode::NORMAL, "done").unwrap();
    tap.assert_compressed_both_ways("node server");
}

// ---------------------------------------------------------------- Chromium

/// The page: echoes `SIZES` through the server, then reports
/// `ws.extensions` and the outcome in a text message starting `RESULT `.
const PAGE: &str = r#"<!doctype html><script>
const sizes = SIZES;
const words = ["alpha ", "beta ", "gamma ", "delta ", "{\"id\":42} "];
function textOf(n) {
  let s = "", i = BigInt(n);
  while (s.length < n) { s += words[Number(i % 5n)]; i = (i * 31n + 7n) % (1n << 64n); }
  return s.slice(0, n);
}
const ws = new WebSocket(location.hash.slice(1));
ws.binaryType = "arraybuffer";
const queue = [];
for (const n of sizes) {
  queue.push(textOf(n));
  queue.push(Uint8Array.from({ length: n }, (_, i) => i % 251));
}
let at = 0, ok = true;
function next() {
  if (at === queue.length) { ws.send("RESULT " + JSON.stringify({ extensions: ws.extensions, ok })); return; }
  ws.send(queue[at]);
}
ws.onopen = next;
ws.onmessage = (e) => {
  const want = queue[at];
  if (typeof want === "string") { ok = ok && e.data === want; }
  else { const got = new Uint8Array(e.data); ok = ok && got.length === want.length && got.every((b, i) => b === want[i]); }
  at += 1; next();
};
</script>"#;

/// Echoes data messages; a text message starting `RESULT ` goes to the
/// test instead.
struct PageEcho {
    sender: Option<Sender>,
    results: ChanSender<String>,
}

impl WsTrait for PageEcho {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.sender = Some(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Text(t) = &msg {
            if let Some(result) = t.strip_prefix("RESULT ") {
                let _ = self.results.send(result.to_owned());
                return Ok(());
            }
        }
        self.sender.as_ref().expect("opened").send(msg)
    }
}

#[test]
fn chromium_page_against_syncws_server() {
    let Some(chromium) = chromium() else { return };
    let (results, rx) = unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", deflate_config()).unwrap();
    let server: Running = listener
        .spawn(move |s| s.set_callback_ws(Box::new(PageEcho { sender: None, results: results.clone() })))
        .unwrap();
    let tap = Tap::new(server.local_addr());
    let dir = std::env::temp_dir().join(format!("syncws-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.html");
    let sizes = format!("[{}]", sizes_arg());
    std::fs::write(&page, PAGE.replace("SIZES", &sizes)).unwrap();
    let mut cmd = Command::new(chromium);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("file://{}#ws://{}/", page.display(), tap.addr))
        .stderr(Stdio::null());
    let (_browser, _) = Peer::spawn(cmd);
    let result = rx.recv_timeout(WAIT * 3).expect("the page reports within the watchdog");
    eprintln!("chromium: {result}");
    assert!(result.contains("\"ok\":true"), "{result}");
    assert!(result.contains("\"extensions\":\"permessage-deflate"), "{result}");
    tap.assert_compressed_both_ways("chromium");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

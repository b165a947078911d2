//! `syncws chat`: a chat room. `GET /` serves the page; the page opens a
//! WebSocket on the same port (`/ws`), and every text message is broadcast
//! to every connected client, with [`Sender`] clones used from whichever
//! connection's thread the message arrived on.
//!
//! A client that cannot keep up with the room is closed with 1008 rather
//! than slowing everyone down ([`QueuePolicy::Close`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use syncws::rustls::ServerConfig;
use syncws::{
    CloseData, Config, HttpTrait, Listener, OwnedMessage, QueuePolicy, Request, Response, Result, Running, Sender,
    WsHandshake, WsOption, WsTrait,
};

use crate::common::{HttpFlags, Routes};

/// Longest chat line accepted, in bytes.
pub const MAX_LINE: usize = 4096;

/// The connected clients.
#[derive(Default)]
pub struct Room {
    members: Mutex<HashMap<u64, Sender>>,
    next_id: AtomicU64,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Sender>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `text` to every member; members whose connection has ended or
    /// whose queue is full are dropped from the room.
    pub fn broadcast(&self, text: &str) {
        let members: Vec<(u64, Sender)> = self.lock().iter().map(|(id, s)| (*id, s.clone())).collect();
        let mut gone = Vec::new();
        for (id, sender) in members {
            if sender.send(OwnedMessage::Text(text.to_owned())).is_err() {
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            let mut m = self.lock();
            for id in gone {
                m.remove(&id);
            }
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True with no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Member {
    room: Arc<Room>,
    id: u64,
}

impl WsTrait for Member {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        if req.path.split('?').next() != Some("/ws") {
            return Ok(Response::text(404, "the chat socket is at /ws\n"));
        }
        WsHandshake::build_request(req)
    }

    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.id = self.room.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.room.lock().insert(self.id, shake.sender);
        self.room.broadcast(&format!("* guest{} joined ({} here)", self.id, self.room.len()));
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Text(text) = msg {
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            let mut cut = text.len().min(MAX_LINE);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.room.broadcast(&format!("guest{}: {}", self.id, &text[..cut]));
        }
        Ok(())
    }

    fn on_close(&mut self, _reason: &Option<CloseData>) {
        if self.room.lock().remove(&self.id).is_some() {
            self.room.broadcast(&format!("* guest{} left", self.id));
        }
    }
}

struct Page;

impl HttpTrait for Page {
    fn operate(&mut self, req: &mut Request) -> Result<Response> {
        Ok(match (req.method.as_str(), req.path.split('?').next().unwrap_or("")) {
            ("GET" | "HEAD", "/") => Response::new(200).with_body(PAGE, "text/html; charset=utf-8"),
            ("GET" | "HEAD", _) => Response::text(404, "not found\n"),
            _ => Response::text(405, "only GET\n").with_header("Allow", "GET"),
        })
    }
}

/// The config the chat runs with: `base` with a queue policy that closes
/// clients that cannot keep up.
pub fn chat_config(base: Config) -> Config {
    base.queue_policy(QueuePolicy::Close).max_message_size(64 << 10)
}

/// Starts the chat server on a thread of its own; returns it and its room.
pub fn spawn(addr: &str, config: Config) -> Result<(Running, Arc<Room>)> {
    spawn_with(addr, config, HttpFlags::default())
}

/// [`spawn`], with the plain HTTP routes `http` asks for (`/metrics`)
/// before the page.
pub fn spawn_with(addr: &str, config: Config, http: HttpFlags) -> Result<(Running, Arc<Room>)> {
    spawn_tls(addr, config, http, None)
}

/// [`spawn_with`], over TLS when `tls` is given: the page on https://,
/// which then opens its socket with wss://.
pub fn spawn_tls(
    addr: &str,
    config: Config,
    http: HttpFlags,
    tls: Option<Arc<ServerConfig>>,
) -> Result<(Running, Arc<Room>)> {
    let room = Arc::new(Room::default());
    let mut listener = Listener::bind_with_config(addr, config)?;
    if let Some(tls) = tls {
        listener = listener.tls(tls);
    }
    log::info!("chat on http://{}/", listener.local_addr());
    let routes = Routes::new(&http, &listener)?.page(|| Box::new(Page));
    let r = Arc::clone(&room);
    let running = listener.spawn(move |server| {
        routes.install(server);
        server.set_callback_ws(Box::new(Member { room: Arc::clone(&r), id: 0 }));
    })?;
    Ok((running, room))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>syncws chat</title>
<style>
body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
#log { border: 1px solid #ccc; height: 24em; overflow-y: auto; padding: .5em; white-space: pre-wrap; }
#line { width: 80%; }
</style>
</head>
<body>
<h1>syncws chat</h1>
<div id="log"></div>
<form id="form"><input id="line" autocomplete="off" autofocus> <button>Send</button></form>
<p id="state">connecting...</p>
<script>
const log = document.getElementById("log");
const state = document.getElementById("state");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/ws");
function show(text) {
  const line = document.createElement("div");
  line.textContent = text;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}
ws.onopen = () => { state.textContent = "connected"; };
ws.onmessage = (e) => show(e.data);
ws.onclose = (e) => { state.textContent = "closed (" + e.code + (e.reason ? " " + e.reason : "") + ")"; };
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("line");
  if (input.value && ws.readyState === WebSocket.OPEN) { ws.send(input.value); }
  input.value = "";
};
</script>
</body>
</html>
"#;

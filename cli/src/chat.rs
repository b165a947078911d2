//! `syncws chat`: chat rooms. `GET /` serves the page; the page opens a
//! WebSocket on the same port, `/ws/<room>` (`/ws` is the room `lobby`),
//! and every text message is published to the room on the library's
//! [`Hub`]: framed once, the same bytes queued for every member, from
//! whichever connection's thread the message arrived on.
//!
//! With `--redis URL` ([`Room::join_redis`]), every chat that uses that
//! Redis is one chat: a room's lines reach its members on every node
//! (through Redis pub/sub, at most once), and a guest's name carries its
//! node, `guest3@1a2b3c4d` (32 bits of the node's random 64-bit id), so
//! names are unique across nodes without asking Redis anything; the
//! join line's count is the node's own members.
//!
//! A client that cannot keep up with its room is closed with 1008 rather
//! than slowing everyone down ([`BacklogPolicy::Close`], and
//! [`QueuePolicy::Close`] for the connection's own queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use syncws::cluster::{Cluster, RedisConfig};
use syncws::rustls::ServerConfig;
use syncws::{
    BacklogPolicy, CloseData, Config, HttpTrait, Hub, Listener, OwnedMessage, Prepared, QueuePolicy, Request, Response,
    Result, Running, WsHandshake, WsOption, WsTrait,
};

use crate::common::{HttpFlags, Routes};
use crate::static_files::percent_decode;

/// Longest chat line accepted, in bytes.
pub const MAX_LINE: usize = 4096;

/// Longest room name, in bytes.
pub const MAX_ROOM: usize = 64;

/// The room a client joins without naming one.
pub const LOBBY: &str = "lobby";

/// The chat's rooms: topics of a [`Hub`].
pub struct Room {
    hub: Hub,
    next_id: AtomicU64,
    /// After each guest's number: empty on a chat of its own, `@` and the
    /// node's id (32 of its 64 random bits, in hex) on a node of a cluster,
    /// so that names are unique across nodes.
    suffix: String,
}

impl Default for Room {
    fn default() -> Room {
        Room {
            hub: Hub::with_backlog(Hub::DEFAULT_MAX_BACKLOG, BacklogPolicy::Close),
            next_id: AtomicU64::new(0),
            suffix: String::new(),
        }
    }
}

impl Room {
    /// Rooms on a hub joined to the other chats that use the same Redis:
    /// lines reach every node's members; names read `guest<N>@<node>`.
    /// Keep the [`Cluster`]: dropping it leaves the cluster.
    pub fn join_redis(config: RedisConfig) -> Result<(Room, Cluster)> {
        let mut room = Room::default();
        let cluster = room.hub.join_redis(config)?;
        room.suffix = format!("@{:08x}", cluster.node_id() as u32);
        Ok((room, cluster))
    }

    /// A member's name: `guest<id>` and the node's suffix.
    fn name(&self, id: u64) -> String {
        format!("guest{id}{}", self.suffix)
    }

    /// Sends `text` to every member of `room`; members that cannot keep up
    /// are closed with 1008, and leave the room as they end.
    pub fn broadcast(&self, room: &str, text: &str) {
        self.hub.publish(room, &Prepared::text(text));
    }

    /// Number of members, in all rooms.
    pub fn len(&self) -> usize {
        self.hub.topics().iter().map(|(_, n)| n).sum()
    }

    /// True with no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rooms with members, and how many each.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        self.hub.topics()
    }

    /// The hub the rooms are topics of.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// The room a WebSocket path names: `/ws` is the lobby, `/ws/<room>` the
/// percent-decoded `<room>` (up to [`MAX_ROOM`] bytes of printable text);
/// `None` for any other path.
pub fn room_of(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/ws")?;
    if rest.is_empty() || rest == "/" {
        return Some(LOBBY.to_owned());
    }
    let name = String::from_utf8(percent_decode(rest.strip_prefix('/')?)?).ok()?;
    let ok = !name.is_empty() && name.len() <= MAX_ROOM && !name.chars().any(char::is_control);
    ok.then_some(name)
}

struct Member {
    room: Arc<Room>,
    name: String,
    id: u64,
}

impl WsTrait for Member {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        match room_of(&req.path) {
            Some(name) => {
                self.name = name;
                WsHandshake::build_request(req)
            }
            None => Ok(Response::text(404, "the chat socket is at /ws or /ws/<room>\n")),
        }
    }

    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.id = self.room.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.room.hub.subscribe(&shake.sender, &self.name);
        let here = self.room.hub.subscribers(&self.name);
        let who = self.room.name(self.id);
        // The node's own members: a cluster's other nodes are not counted.
        let place = if self.room.suffix.is_empty() { "here" } else { "on this node" };
        self.room.broadcast(&self.name, &format!("* {who} joined {} ({here} {place})", self.name));
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Text(text) = msg {
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            let mut cut = text.len().min(MAX_LINE);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.room.broadcast(&self.name, &format!("{}: {}", self.room.name(self.id), &text[..cut]));
        }
        Ok(())
    }

    fn on_close(&mut self, _reason: &Option<CloseData>) {
        // The hub has already let the connection go.
        if self.id != 0 {
            self.room.broadcast(&self.name, &format!("* {} left", self.room.name(self.id)));
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
    let running = spawn_room(addr, config, http, tls, Arc::clone(&room))?;
    Ok((running, room))
}

/// [`spawn_tls`] with the rooms given: those of [`Room::join_redis`] for a
/// node of a cluster.
pub fn spawn_room(
    addr: &str,
    config: Config,
    http: HttpFlags,
    tls: Option<Arc<ServerConfig>>,
    room: Arc<Room>,
) -> Result<Running> {
    let mut listener = Listener::bind_with_config(addr, config)?;
    if let Some(tls) = tls {
        listener = listener.tls(tls);
    }
    log::info!("chat on http://{}/", listener.local_addr());
    let routes = Routes::new(&http)?.page(|| Box::new(Page));
    listener.spawn(move |server| {
        routes.install(server);
        server.set_callback_ws(Box::new(Member { room: Arc::clone(&room), name: String::new(), id: 0 }));
    })
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
<form id="pick">Room: <input id="room" size="20" maxlength="64"> <button>Join</button></form>
<div id="log"></div>
<form id="form"><input id="line" autocomplete="off" autofocus> <button>Send</button></form>
<p id="state">connecting...</p>
<script>
const log = document.getElementById("log");
const state = document.getElementById("state");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const room = decodeURIComponent(location.hash.slice(1)) || "lobby";
document.getElementById("room").value = room;
document.getElementById("pick").onsubmit = (e) => {
  e.preventDefault();
  location.hash = encodeURIComponent(document.getElementById("room").value || "lobby");
  location.reload();
};
const ws = new WebSocket(scheme + location.host + "/ws/" + encodeURIComponent(room));
function show(text) {
  const line = document.createElement("div");
  line.textContent = text;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}
ws.onopen = () => { state.textContent = "connected to " + room; };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_from_paths() {
        assert_eq!(room_of("/ws").as_deref(), Some(LOBBY));
        assert_eq!(room_of("/ws/").as_deref(), Some(LOBBY));
        assert_eq!(room_of("/ws/rust%20talk?x").as_deref(), Some("rust talk"));
        assert_eq!(room_of("/wsx"), None);
        assert_eq!(room_of("/other"), None);
        assert_eq!(room_of(&format!("/ws/{}", "a".repeat(MAX_ROOM + 1))), None);
        assert_eq!(room_of("/ws/%0a"), None);
    }

    #[test]
    fn rooms_are_separate() {
        let (running, room) = spawn("127.0.0.1:0", chat_config(Config::default())).unwrap();
        let addr = running.local_addr();
        let mut a = syncws::Client::connect(&format!("ws://{addr}/ws/a")).unwrap();
        let mut b = syncws::Client::connect(&format!("ws://{addr}/ws/b")).unwrap();
        let joined = |c: &mut syncws::Client| match c.read().unwrap() {
            OwnedMessage::Text(t) => assert!(t.starts_with("* guest") && t.contains("joined"), "{t}"),
            other => panic!("{other:?}"),
        };
        joined(&mut a);
        joined(&mut b);
        a.send(OwnedMessage::Text("hi a".into())).unwrap();
        b.send(OwnedMessage::Text("hi b".into())).unwrap();
        assert!(matches!(a.read().unwrap(), OwnedMessage::Text(t) if t.ends_with(": hi a")));
        assert!(matches!(b.read().unwrap(), OwnedMessage::Text(t) if t.ends_with(": hi b")));
        assert_eq!(room.rooms(), [("a".to_owned(), 1), ("b".to_owned(), 1)]);
        running.shutdown();
    }
}

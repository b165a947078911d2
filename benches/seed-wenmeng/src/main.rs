//! The seed system: wenmeng 0.3 as an echo server, written the way its own
//! `examples/ws_server.rs` demo is. One tokio task per connection runs
//! `Server::new(stream, Some(addr))`, `set_callback_ws`, `incoming().await`;
//! the callback keeps `WsHandshake::sender` from `on_open` and answers each
//! message through it (`sender.send(msg).await`).
//!
//! Same command line and semantics as the workspace's `srv-*` servers
//! (`benches/src/lib.rs`): the first argument is the address to bind
//! (default `127.0.0.1:9001`), `listening <addr>` on stdout once it
//! accepts; every text or binary message is echoed to its sender on any
//! path, and on `/broadcast` each message goes to every *other* member
//! instead, through their handshake senders (as srv-syncws does with its
//! `Sender`s).
//!
//! Departures from the demo, each to match the other servers: no
//! `println!` per message or per connection (the demo prints both), no
//! `WsOption` interval (the demo sets a 1000 s timer that never fires in a
//! run), and `TCP_NODELAY` on every accepted socket (every peer server
//! sets it; wenmeng leaves the socket as accepted).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::mpsc::Sender;
use webparse::ws::{CloseData, OwnedMessage};
use wenmeng::ws::{WsHandshake, WsOption, WsTrait};
use wenmeng::{ProtResult, Server};

type Members = Arc<Mutex<Vec<(u64, Sender<OwnedMessage>)>>>;

struct Operate {
    sender: Option<Sender<OwnedMessage>>,
    id: u64,
    /// Set on `/broadcast`: the members to forward to.
    members: Option<Members>,
    all: Members,
}

#[async_trait]
impl WsTrait for Operate {
    async fn on_open(&mut self, shake: WsHandshake) -> ProtResult<Option<WsOption>> {
        if shake.request.as_ref().is_some_and(|r| r.path() == "/broadcast") {
            self.all.lock().unwrap().push((self.id, shake.sender.clone()));
            self.members = Some(Arc::clone(&self.all));
        }
        self.sender = Some(shake.sender);
        Ok(None)
    }

    async fn on_message(&mut self, msg: OwnedMessage) -> ProtResult<()> {
        if !matches!(msg, OwnedMessage::Text(_) | OwnedMessage::Binary(_)) {
            return Ok(());
        }
        if let Some(members) = &self.members {
            // The lock is not held across an await: the senders are cloned
            // out first.
            let others: Vec<Sender<OwnedMessage>> =
                members.lock().unwrap().iter().filter(|(id, _)| *id != self.id).map(|(_, s)| s.clone()).collect();
            for s in others {
                let _ = s.send(msg.clone()).await;
            }
            return Ok(());
        }
        if let Some(sender) = &self.sender {
            let _ = sender.send(msg).await;
        }
        Ok(())
    }

    async fn on_close(&mut self, _reason: &Option<CloseData>) {
        if let Some(members) = &self.members {
            members.lock().unwrap().retain(|(id, _)| *id != self.id);
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let all: Members = Arc::default();
    let next = AtomicU64::new(0);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            // Out of descriptors: go on once one is back, as the other
            // servers' accept loops do (the error is not the echo's).
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = next.fetch_add(1, Ordering::Relaxed);
        let all = Arc::clone(&all);
        tokio::spawn(async move {
            let mut server = Server::new(stream, Some(peer));
            server.set_callback_ws(Box::new(Operate { sender: None, id, members: None, all }));
            let _ = server.incoming().await;
        });
    }
}

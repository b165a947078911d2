//! syncws: the library's Listener with the default `Config`, echoing like
//! `examples/echo_server.rs`; `/broadcast` sends each message to every other
//! member from the sender's connection thread (through their `Sender`s).
//!
//! A second argument turns permessage-deflate on for bench-all's
//! compression scenarios: `--deflate` (the default `DeflateConfig`:
//! contexts reset after every message, level 1), `--deflate-level6`
//! (zlib's default level) or `--deflate-takeover` (context takeover both
//! ways). Without it, nothing is negotiated. `--max-connections=N`
//! raises the live-connection cap (cost-curve's 19,000 idle connections).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use syncws::{Config, DeflateConfig, Listener, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};

type Members = Arc<Mutex<Vec<(u64, Sender)>>>;

struct Handler {
    sender: Option<Sender>,
    id: u64,
    members: Option<Members>,
    all: Members,
}

impl WsTrait for Handler {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        if shake.request.path == syncws_bench::BROADCAST_PATH {
            self.all.lock().unwrap().push((self.id, shake.sender.clone()));
            self.members = Some(Arc::clone(&self.all));
        }
        self.sender = Some(shake.sender);
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let Some(members) = &self.members {
            for (id, s) in members.lock().unwrap().iter() {
                if *id != self.id {
                    let _ = s.send(msg.clone());
                }
            }
            return Ok(());
        }
        match &self.sender {
            Some(sender) => sender.send(msg),
            None => Ok(()),
        }
    }

    fn on_close(&mut self, _reason: &Option<syncws::CloseData>) {
        if let Some(members) = &self.members {
            members.lock().unwrap().retain(|(id, _)| *id != self.id);
        }
    }
}

fn main() -> Result<()> {
    let mut config = Config::default();
    for arg in std::env::args().skip(2) {
        config = match arg.as_str() {
            "--deflate" => config.deflate(Some(DeflateConfig::default())),
            "--deflate-level6" => config.deflate(Some(DeflateConfig::default().level(6))),
            "--deflate-takeover" => config.deflate(Some(
                DeflateConfig::default().server_no_context_takeover(false).client_no_context_takeover(false),
            )),
            // cost-curve's 19,000 connections pass the default cap (16,384).
            other => match other.strip_prefix("--max-connections=").and_then(|n| n.parse().ok()) {
                Some(n) => config.max_connections(n),
                None => return Err(syncws::Error::Config(format!("unknown argument {other}"))),
            },
        };
    }
    let listener = Listener::bind_with_config(syncws_bench::addr_arg(), config)?;
    syncws_bench::ready(listener.local_addr());
    let all: Members = Arc::default();
    let next = AtomicU64::new(0);
    listener.serve(move |server| {
        let id = next.fetch_add(1, Ordering::Relaxed);
        server.set_callback_ws(Box::new(Handler { sender: None, id, members: None, all: Arc::clone(&all) }));
    })
}

//! syncws: the library's Listener with the default `Config`, echoing like
//! `examples/echo_server.rs`. `/broadcast` is the library's pub/sub pattern:
//! a connection subscribes to the topic on open, and each message it sends
//! is published to every subscriber (the sender included) with
//! [`Hub::publish`]: framed once, the same bytes queued on every
//! connection. The hub drops a connection's subscription when it closes.
//!
//! A second argument turns permessage-deflate on for bench-all's
//! compression scenarios: `--deflate` (the default `DeflateConfig`:
//! contexts reset after every message, level 1), `--deflate-level6`
//! (zlib's default level) or `--deflate-takeover` (context takeover both
//! ways). Without it, nothing is negotiated. `--max-connections=N`
//! raises the live-connection cap (cost-curve's 19,000 idle connections);
//! `--parallel-from=N` sets the hub's [`Hub::set_parallel_from`].

use syncws::{
    Config, DeflateConfig, Hub, Listener, OwnedMessage, Prepared, Result, Sender, WsHandshake, WsOption, WsTrait,
};

struct Handler {
    sender: Option<Sender>,
    /// Set on `/broadcast`: messages go to the topic, not back.
    hub: Option<Hub>,
    all: Hub,
}

impl WsTrait for Handler {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        if shake.request.path == syncws_bench::BROADCAST_PATH {
            self.all.subscribe(&shake.sender, syncws_bench::BROADCAST_PATH);
            self.hub = Some(self.all.clone());
        }
        self.sender = Some(shake.sender);
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let Some(hub) = &self.hub {
            if let Some(prepared) = Prepared::from_message(&msg) {
                hub.publish(syncws_bench::BROADCAST_PATH, &prepared);
            }
            return Ok(());
        }
        match &self.sender {
            Some(sender) => sender.send(msg),
            None => Ok(()),
        }
    }
}

fn main() -> Result<()> {
    let mut config = Config::default();
    let mut parallel_from = None;
    for arg in std::env::args().skip(2) {
        config = match arg.as_str() {
            "--deflate" => config.deflate(Some(DeflateConfig::default())),
            "--deflate-level6" => config.deflate(Some(DeflateConfig::default().level(6))),
            "--deflate-takeover" => config.deflate(Some(
                DeflateConfig::default().server_no_context_takeover(false).client_no_context_takeover(false),
            )),
            // cost-curve's 19,000 connections pass the default cap (16,384).
            other => {
                let number = |flag: &str| other.strip_prefix(flag).and_then(|n| n.parse::<usize>().ok());
                if let Some(n) = number("--max-connections=") {
                    config.max_connections(n)
                } else if let Some(n) = number("--parallel-from=") {
                    parallel_from = Some(n);
                    config
                } else {
                    return Err(syncws::Error::Config(format!("unknown argument {other}")));
                }
            }
        };
    }
    let listener = Listener::bind_with_config(syncws_bench::addr_arg(), config)?;
    syncws_bench::ready(listener.local_addr());
    let all = Hub::new();
    if let Some(n) = parallel_from {
        all.set_parallel_from(n);
    }
    listener.serve(move |server| {
        server.set_callback_ws(Box::new(Handler { sender: None, hub: None, all: all.clone() }));
    })
}

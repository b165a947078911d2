//! Echoes every text and binary message, with the default `Config` and,
//! built with the `deflate` feature, permessage-deflate accepted whenever a
//! client offers it (with the default `DeflateConfig`).
//!
//! ```sh
//! cargo run --release --features deflate --example echo_server -- 127.0.0.1:9001
//! ```
//! Used by the conformance suite and the benchmarks.

use syncws::{Config, Listener, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};

struct Echo(Option<Sender>);

impl WsTrait for Echo {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.0 = Some(shake.sender);
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        match &self.0 {
            Some(sender) => sender.send(msg),
            None => Ok(()),
        }
    }
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let config = Config::default();
    #[cfg(feature = "deflate")]
    let config = config.deflate(Some(syncws::DeflateConfig::default()));
    let listener = Listener::bind_with_config(addr.as_str(), config)?;
    println!("echo server listening on ws://{}", listener.local_addr());
    listener.serve(|server| server.set_callback_ws(Box::new(Echo(None))))
}

//! `syncws echo`: a WebSocket echo server.

use std::sync::Arc;

use syncws::rustls::ServerConfig;
use syncws::{Config, Listener, OwnedMessage, Result, Running, Sender, WsHandshake, WsOption, WsTrait};

use crate::common::{HttpFlags, Routes};

/// Echoes every Text and Binary message back to its sender.
#[derive(Debug, Default)]
pub struct Echo(Option<Sender>);

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

/// Starts an echo server on `addr` on a thread of its own.
pub fn spawn(addr: &str, config: Config) -> Result<Running> {
    spawn_with_tls(addr, config, None)
}

/// [`spawn`], over TLS when `tls` is given (`wss://`).
pub fn spawn_with_tls(addr: &str, config: Config, tls: Option<Arc<ServerConfig>>) -> Result<Running> {
    spawn_with(addr, config, tls, HttpFlags::default())
}

/// [`spawn_with_tls`], with the plain HTTP routes `http` asks for
/// (`/metrics`).
pub fn spawn_with(addr: &str, config: Config, tls: Option<Arc<ServerConfig>>, http: HttpFlags) -> Result<Running> {
    let mut listener = Listener::bind_with_config(addr, config)?;
    if let Some(tls) = tls {
        listener = listener.tls(tls);
    }
    let routes = Routes::new(&http)?;
    listener.spawn(move |server| {
        routes.install(server);
        server.set_callback_ws(Box::new(Echo::default()));
    })
}

//! The original demo: listens on 127.0.0.1:8081, answers every message with
//! "from server" and an echo, and logs `on_interval` every 10 s.
//!
//! ```sh
//! RUST_LOG=info cargo run --example ws_server
//! ```

use std::time::Duration;

use log::info;
use syncws::{CloseData, Error, Listener, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};

#[derive(Default)]
struct Operate {
    sender: Option<Sender>,
}

impl WsTrait for Operate {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        info!("open: {} from {:?}", shake.request.path, shake.addr);
        self.sender = Some(shake.sender);
        Ok(Some(WsOption::new(Duration::from_secs(10))))
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        info!("message: {msg:?}");
        let sender = self.sender.as_ref().ok_or(Error::AlreadyClosed)?;
        sender.send(OwnedMessage::Text("from server".into()))?;
        sender.send(msg)
    }

    fn on_interval(&mut self, _option: &mut Option<WsOption>) -> Result<()> {
        info!("on_interval");
        Ok(())
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        info!("closed: {reason:?}");
    }

    fn on_error(&mut self, err: Error) {
        info!("error: {err}");
    }
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let listener = Listener::bind("127.0.0.1:8081")?;
    println!("listening on ws://{}", listener.local_addr());
    listener.serve(|server| server.set_callback_ws(Box::<Operate>::default()))
}

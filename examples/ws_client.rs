//! Connects to ws://127.0.0.1:8081 (or the URL given), sends each stdin line
//! as a text message and prints what arrives. End of input closes with 1000.
//!
//! ```sh
//! cargo run --example ws_client -- ws://127.0.0.1:8081
//! ```

use std::io::BufRead;

use syncws::{Client, CloseCode, CloseData, Error, OwnedMessage, Result, WsHandshake, WsOption, WsTrait};

struct Printer;

impl WsTrait for Printer {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let sender = shake.sender;
        // A thread of our own feeds stdin to the connection.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if sender.send(OwnedMessage::Text(line)).is_err() {
                    return;
                }
            }
            let _ = sender.close(CloseCode::NORMAL, "");
        });
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        match msg {
            OwnedMessage::Text(t) => println!("{t}"),
            OwnedMessage::Binary(b) => println!("<{} bytes>", b.len()),
            _ => {}
        }
        Ok(())
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        eprintln!("closed: {reason:?}");
    }

    fn on_error(&mut self, err: Error) {
        eprintln!("error: {err}");
    }
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8081".to_owned());
    let mut client = Client::builder().url(&url)?.connect()?;
    client.set_callback_ws(Box::new(Printer));
    client.wait_ws_operate()
}

//! The client side of the Autobahn conformance suite: runs every case against
//! the suite's fuzzing server, echoing what arrives.
//!
//! The suite's runner sets `AUTOBAHN_URL` (e.g. `ws://127.0.0.1:9001`) and
//! `AUTOBAHN_AGENT`:
//! Built with the `deflate` feature, it offers permessage-deflate (the
//! default `DeflateConfig`), which sections 12 and 13 test.
//! ```sh
//! cargo build --release --features deflate --example autobahn_client
//! AUTOBAHN_AGENT=syncws ../shared/tools/autobahn/run-client-suite.sh -- ./target/release/examples/autobahn_client
//! ```

use syncws::{Client, Config, Error, OwnedMessage, Result};

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let url = std::env::var("AUTOBAHN_URL").unwrap_or_else(|_| "ws://127.0.0.1:9001".to_owned());
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "syncws".to_owned());

    let count = case_count(&url)?;
    println!("running {count} cases as {agent}");
    for case in 1..=count {
        if let Err(e) = run_case(&format!("{url}/runCase?case={case}&agent={agent}")) {
            log::info!("case {case}: {e}");
        }
    }
    let mut report = Client::connect(&format!("{url}/updateReports?agent={agent}"))?;
    while report.read().is_ok() {}
    Ok(())
}

fn case_count(url: &str) -> Result<u32> {
    let mut client = Client::connect(&format!("{url}/getCaseCount"))?;
    loop {
        match client.read()? {
            OwnedMessage::Text(t) => {
                let n = t.trim().parse().map_err(|_| Error::Application(format!("bad case count {t:?}")))?;
                while client.read().is_ok() {}
                return Ok(n);
            }
            OwnedMessage::Close(_) => return Err(Error::Application("no case count".into())),
            _ => {}
        }
    }
}

/// The client's config: permessage-deflate offered when built with it.
fn config() -> Config {
    let config = Config::default();
    #[cfg(feature = "deflate")]
    let config = config.deflate(Some(syncws::DeflateConfig::default()));
    config
}

/// Echoes every data message until the connection closes.
fn run_case(url: &str) -> Result<()> {
    let mut ws = Client::builder().url(url)?.config(config()).connect()?.into_websocket()?;
    loop {
        match ws.read() {
            Ok(msg @ (OwnedMessage::Text(_) | OwnedMessage::Binary(_))) => ws.send(msg)?,
            Ok(_) => {}
            Err(e) if e.is_closed() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

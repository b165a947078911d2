//! `syncws client`: an interactive WebSocket client, like websocat.
//!
//! Each line of standard input is sent as one message (text, or binary with
//! `--binary`), without its line ending; each message that arrives is
//! written to standard output followed by a newline. At the end of input it
//! sends Close 1000 and waits for the server's reply, so it works in a
//! pipe: `printf 'a\nb\n' | syncws client ws://127.0.0.1:8081`.
//!
//! It goes through the proxy of `--proxy`, or else the one the proxy
//! environment variables give, as curl reads them ([`Route`]).
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | closed cleanly: Close 1000 (or a Close without a code) |
//! | 1 | local failure (reading stdin, writing stdout) |
//! | 2 | bad command line or URL |
//! | 3 | could not connect (DNS, TCP, timeout, TLS, the proxy) |
//! | 4 | the server refused the handshake (its HTTP status is printed) |
//! | 5 | the server closed with a code other than 1000 (printed) |
//! | 6 | the connection ended without a close handshake, or with a protocol error |

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use syncws::proxy::Proxy;
use syncws::rustls::pki_types::{pem::PemObject, CertificateDer};
use syncws::rustls::{self, ClientConfig, RootCertStore};
use syncws::{Client, CloseCode, Config, Error, OwnedMessage, WsWriter};

use crate::common::Route;

/// Exit code: closed cleanly.
pub const EXIT_OK: i32 = 0;
/// Exit code: local failure (stdin, stdout).
pub const EXIT_LOCAL: i32 = 1;
/// Exit code: bad command line or URL (also what clap uses for usage errors).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: could not connect.
pub const EXIT_CONNECT: i32 = 3;
/// Exit code: handshake refused by the server.
pub const EXIT_HANDSHAKE: i32 = 4;
/// Exit code: the server closed with a code other than 1000.
pub const EXIT_CLOSE_CODE: i32 = 5;
/// Exit code: the connection ended abnormally.
pub const EXIT_ABNORMAL: i32 = 6;

/// What `syncws client` connects to and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ws://host:port/path` or `wss://...`.
    pub url: String,
    /// Send lines as binary messages instead of text.
    pub binary: bool,
    /// Extra headers for the upgrade request.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Limits and timeouts.
    pub config: Config,
    /// For `wss://`: trust only the CA certificates of this PEM file, not
    /// the built-in Mozilla roots.
    pub tls_ca: Option<PathBuf>,
    /// Directly, through a proxy, or as the environment says.
    pub route: Route,
}

/// A TLS client config trusting only the certificates of the PEM file at
/// `path`.
pub fn tls_config_trusting(path: &Path) -> Result<Arc<ClientConfig>, String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
        roots.add(cert.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Parses `Name: value` (or `Name=value`).
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .or_else(|| s.split_once('='))
        .ok_or_else(|| format!("{s:?} is not a header: write it as 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no valid header name"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Runs the client: lines from `input` go out, messages that arrive go to
/// `output`, reports go to `report` (standard error in the command). Returns
/// the exit code.
pub fn run(opts: Options, input: impl BufRead + Send + 'static, output: &mut dyn Write, report: &mut dyn Write) -> i32 {
    let mut builder = match Client::builder().url(&opts.url) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(report, "syncws client: {e}");
            return EXIT_USAGE;
        }
    };
    let via = match opts.route.proxy_for(&opts.url) {
        Ok(via) => via,
        Err(e) => {
            let _ = writeln!(report, "syncws client: {e}");
            return EXIT_USAGE;
        }
    };
    builder = match opts.route.apply(builder) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(report, "syncws client: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(proxy) = &via {
        log::info!("connecting to {} through the proxy {proxy}", opts.url);
    }
    for (name, value) in &opts.headers {
        builder = builder.header(name, value);
    }
    for p in &opts.protocols {
        builder = builder.protocol(p);
    }
    if let Some(ca) = &opts.tls_ca {
        match tls_config_trusting(ca) {
            Ok(tls) => builder = builder.tls_config(tls),
            Err(e) => {
                let _ = writeln!(report, "syncws client: --tls-ca {e}");
                return EXIT_USAGE;
            }
        }
    }
    let client = match builder.config(opts.config.clone()).connect() {
        Ok(c) => c,
        Err(e) => return connect_failure(&opts.url, via.as_ref(), e, report),
    };
    if let Some(p) = client.protocol() {
        let _ = writeln!(report, "subprotocol: {p}");
    }
    let ws = match client.into_websocket() {
        Ok(ws) => ws,
        Err(e) => {
            let _ = writeln!(report, "syncws client: {e}");
            return EXIT_ABNORMAL;
        }
    };
    let (mut reader, writer) = ws.split();
    {
        let binary = opts.binary;
        let spawned = thread::Builder::new().name("stdin".into()).spawn(move || pump_input(input, &writer, binary));
        if let Err(e) = spawned {
            let _ = writeln!(report, "syncws client: cannot start the input thread: {e}");
            return EXIT_LOCAL;
        }
    }
    let mut close: Option<Option<syncws::CloseData>> = None;
    loop {
        match reader.read() {
            Ok(OwnedMessage::Text(s)) => {
                if writeln!(output, "{s}").and_then(|()| output.flush()).is_err() {
                    return EXIT_LOCAL;
                }
            }
            Ok(OwnedMessage::Binary(b)) => {
                let written = output.write_all(&b).and_then(|()| output.write_all(b"\n")).and_then(|()| output.flush());
                if written.is_err() {
                    return EXIT_LOCAL;
                }
            }
            Ok(OwnedMessage::Ping(_) | OwnedMessage::Pong(_)) => {}
            Ok(OwnedMessage::Close(reason)) => close = Some(reason),
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => break,
            Err(e) => {
                let _ = writeln!(report, "connection failed: {e}");
                return EXIT_ABNORMAL;
            }
        }
    }
    match close {
        None => {
            let _ = writeln!(report, "closed: 1006 (no close frame)");
            EXIT_ABNORMAL
        }
        Some(None) => {
            let _ = writeln!(report, "closed: 1005 (no status code)");
            EXIT_OK
        }
        Some(Some(c)) => {
            let _ = writeln!(report, "closed: {c}");
            if c.status_code == CloseCode::NORMAL.0 {
                EXIT_OK
            } else {
                EXIT_CLOSE_CODE
            }
        }
    }
}

/// Sends each line of `input`; at its end, Close 1000.
fn pump_input(mut input: impl BufRead, writer: &WsWriter, binary: bool) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                log::warn!("reading standard input: {e}");
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let msg = if binary {
            OwnedMessage::Binary(line.clone())
        } else {
            match String::from_utf8(line.clone()) {
                Ok(s) => OwnedMessage::Text(s),
                Err(_) => {
                    log::warn!("a line is not valid UTF-8; sending it with replacement characters (use --binary)");
                    OwnedMessage::Text(String::from_utf8_lossy(&line).into_owned())
                }
            }
        };
        if let Err(e) = writer.send(msg) {
            log::debug!("stopped sending: {e}");
            return;
        }
    }
    if let Err(e) = writer.close(CloseCode::NORMAL, "") {
        log::debug!("close not sent: {e}");
    }
}

fn connect_failure(url: &str, via: Option<&Proxy>, e: Error, report: &mut dyn Write) -> i32 {
    match e {
        Error::Handshake { status, reason, response } => {
            let _ = writeln!(report, "handshake refused by {url}: {reason}");
            if let Some(body) = response.map(|r| r.body).filter(|b| !b.is_empty()) {
                let _ = writeln!(report, "{}", String::from_utf8_lossy(&body).trim_end());
            }
            log::debug!("refusal status {status}");
            EXIT_HANDSHAKE
        }
        Error::Url(s) => {
            let _ = writeln!(report, "syncws client: bad url: {s}");
            EXIT_USAGE
        }
        e => {
            match via {
                Some(proxy) => writeln!(report, "cannot connect to {url} through the proxy {proxy}: {e}"),
                None => writeln!(report, "cannot connect to {url}: {e}"),
            }
            .ok();
            EXIT_CONNECT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse() {
        assert_eq!(parse_header("Authorization: Bearer x").unwrap(), ("Authorization".into(), "Bearer x".into()));
        assert_eq!(parse_header("X-A=1").unwrap(), ("X-A".into(), "1".into()));
        assert!(parse_header("nothing").is_err());
    }
}

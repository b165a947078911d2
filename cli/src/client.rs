//! `syncws client`: an interactive WebSocket client, like websocat.
//!
//! Each line of standard input is sent as one message (text, or binary with
//! `--binary`), without its line ending; each message that arrives is
//! written to standard output: a text message followed by a newline, a
//! binary one as `--binary-output` says ([`BinaryOutput`]: one line of hex
//! or base64 per message, or the raw bytes). At the end of input it sends
//! Close 1000 and waits for the server's reply, so it works in a pipe:
//! `printf 'a\nb\n' | syncws client ws://127.0.0.1:8081`.
//!
//! Two other modes ([`Mode`]): `-1` sends the whole of standard input as
//! one message, prints the first reply and exits; `--reconnect` keeps
//! sending lines across reconnects (the library's
//! [`Reconnecting`](syncws::Reconnecting)), lines typed while the server is
//! away being kept and sent once it is back.
//!
//! It goes through the proxy of `--proxy`, or else the one the proxy
//! environment variables give, as curl reads them ([`Route`]). `--tls-ca`
//! trusts a private CA, `--tls-fingerprint` exactly one certificate
//! ([`TlsClientFlags`]); `-k` accepts any server certificate, for testing
//! ([`accept_any_certificate`](crate::tls::accept_any_certificate)).
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | closed cleanly: Close 1000 (or a Close without a code); `-1`: a reply was printed |
//! | 1 | local failure (reading stdin, writing stdout); `-1`: no reply within `--timeout` (or the connection ended first) |
//! | 2 | bad command line or URL |
//! | 3 | could not connect (DNS, TCP, timeout, TLS: an untrusted certificate, a wrong `--tls-fingerprint`; the proxy); `--reconnect`: gave up (`--reconnect-attempts`) |
//! | 4 | the server refused the handshake (its HTTP status is printed) |
//! | 5 | the server closed with a code other than 1000 (printed); `--reconnect`: one it does not reconnect on |
//! | 6 | the connection ended without a close handshake, or with a protocol error |

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use crossbeam_channel as cb;
use syncws::proxy::Proxy;
use syncws::rustls::pki_types::{pem::PemObject, CertificateDer};
use syncws::rustls::{ClientConfig, RootCertStore};
use syncws::{
    Client, ClientBuilder, CloseCode, CloseData, Config, EndReason, Ended, Error, LinkState, OwnedMessage,
    ReconnectPolicy, ReconnectSender, Retry, SendError, WsHandshake, WsOption, WsTrait, WsWriter,
};

use crate::common::{Route, TlsClientFlags};

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
    /// For `wss://`: trust only the CA certificates of a PEM file, or
    /// only the certificate of a SHA-256 fingerprint, instead of the
    /// built-in and system roots.
    pub tls: TlsClientFlags,
    /// Directly, through a proxy, or as the environment says.
    pub route: Route,
    /// For wss://: accept any certificate (`-k`), for testing; a warning
    /// says so on standard error.
    pub insecure: bool,
    /// How binary messages are written to standard output.
    pub binary_output: BinaryOutput,
    /// Lines, one message (`-1`), or lines across reconnects.
    pub mode: Mode,
}

/// What `syncws client` does with its input.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Each line of standard input is a message, until its end; then
    /// Close 1000.
    Lines,
    /// `-1`: the whole of standard input is one message (a text message
    /// loses one trailing line ending; a binary one is sent as it is); the
    /// first Text or Binary message that comes back is printed, and the
    /// client closes and exits 0, or exits 1 if none came within
    /// `timeout` of the send.
    OneMessage {
        /// How long to wait for the reply.
        timeout: Duration,
    },
    /// `--reconnect`: as [`Mode::Lines`], reconnecting as the policy says;
    /// lines read while disconnected are kept and sent after reconnecting.
    Reconnect(ReconnectPolicy),
}

/// How `syncws client` writes a binary message: never in a way that could
/// be taken for several messages, except `raw`, which is for piping bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BinaryOutput {
    /// Lowercase hexadecimal, one message per line (the default when
    /// standard output is a terminal).
    Hex,
    /// Standard base64 with padding, one message per line.
    Base64,
    /// The bytes as they are, without a line ending (the default when
    /// standard output is not a terminal): a file sent in several
    /// messages comes out whole.
    Raw,
}

impl BinaryOutput {
    /// The default: hex on a terminal, raw otherwise.
    pub fn default_for(terminal: bool) -> BinaryOutput {
        if terminal {
            BinaryOutput::Hex
        } else {
            BinaryOutput::Raw
        }
    }
}

/// Writes one arriving Text or Binary message to `output` (and flushes);
/// other messages write nothing.
pub fn write_message(output: &mut dyn Write, msg: &OwnedMessage, binary: BinaryOutput) -> std::io::Result<()> {
    match msg {
        OwnedMessage::Text(s) => writeln!(output, "{s}")?,
        OwnedMessage::Binary(b) => match binary {
            BinaryOutput::Hex => {
                let mut line = String::with_capacity(b.len() * 2 + 1);
                for byte in b {
                    line.push(char::from(HEX[usize::from(byte >> 4)]));
                    line.push(char::from(HEX[usize::from(byte & 0xf)]));
                }
                line.push('\n');
                output.write_all(line.as_bytes())?;
            }
            BinaryOutput::Base64 => {
                let mut line = base64::engine::general_purpose::STANDARD.encode(b);
                line.push('\n');
                output.write_all(line.as_bytes())?;
            }
            BinaryOutput::Raw => output.write_all(b)?,
        },
        _ => return Ok(()),
    }
    output.flush()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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
    let (builder, via) = match prepare(&opts, report) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    match &opts.mode {
        Mode::Lines => run_lines(&opts, builder, via.as_ref(), input, output, report),
        Mode::OneMessage { timeout } => run_one(&opts, builder, via.as_ref(), *timeout, input, output, report),
        Mode::Reconnect(policy) => run_reconnect(&opts, builder, policy.clone(), input, output, report),
    }
}

/// The client builder the options describe, and the proxy it goes
/// through; the exit code if they cannot be used.
fn prepare(opts: &Options, report: &mut dyn Write) -> Result<(ClientBuilder, Option<Proxy>), i32> {
    let usage = |report: &mut dyn Write, e: &dyn std::fmt::Display| {
        let _ = writeln!(report, "syncws client: {e}");
        EXIT_USAGE
    };
    let mut builder = Client::builder().url(&opts.url).map_err(|e| usage(report, &e))?;
    let via = opts.route.proxy_for(&opts.url).map_err(|e| usage(report, &e))?;
    builder = opts.route.apply(builder).map_err(|e| usage(report, &e))?;
    if let Some(proxy) = &via {
        log::info!("connecting to {} through the proxy {proxy}", opts.url);
    }
    for (name, value) in &opts.headers {
        builder = builder.header(name, value);
    }
    for p in &opts.protocols {
        builder = builder.protocol(p);
    }
    if let Some(tls) = opts.tls.client_config().map_err(|e| usage(report, &format!("--tls-ca {e}")))? {
        builder = builder.tls_config(tls);
    }
    if opts.insecure {
        let tls = crate::tls::accept_any_certificate().map_err(|e| usage(report, &format!("--insecure: {e}")))?;
        builder = builder.tls_config(tls);
        if opts.url.get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://")) {
            let _ = writeln!(
                report,
                "syncws client: warning: --insecure: the server's certificate is not checked; \
                 anyone on the path can read and change this connection (for testing only)"
            );
        }
    }
    Ok((builder.config(opts.config.clone()), via))
}

/// [`Mode::Lines`].
fn run_lines(
    opts: &Options,
    builder: ClientBuilder,
    via: Option<&Proxy>,
    input: impl BufRead + Send + 'static,
    output: &mut dyn Write,
    report: &mut dyn Write,
) -> i32 {
    let client = match builder.connect() {
        Ok(c) => c,
        Err(e) => return connect_failure(&opts.url, via, e, report),
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
    let mut close: Option<Option<CloseData>> = None;
    loop {
        match reader.read() {
            Ok(OwnedMessage::Close(reason)) => close = Some(reason),
            Ok(msg) => {
                if write_message(output, &msg, opts.binary_output).is_err() {
                    return EXIT_LOCAL;
                }
            }
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
        Some(reason) => closed_code(reason.as_ref(), report),
    }
}

/// Reports the server's Close; the exit code it means.
fn closed_code(reason: Option<&CloseData>, report: &mut dyn Write) -> i32 {
    match reason {
        None => {
            let _ = writeln!(report, "closed: 1005 (no status code)");
            EXIT_OK
        }
        Some(c) => {
            let _ = writeln!(report, "closed: {c}");
            if c.status_code == CloseCode::NORMAL.0 {
                EXIT_OK
            } else {
                EXIT_CLOSE_CODE
            }
        }
    }
}

/// A line (or, with `-1`, the whole input) as the message to send.
fn message_of(bytes: Vec<u8>, binary: bool) -> OwnedMessage {
    if binary {
        return OwnedMessage::Binary(bytes);
    }
    match String::from_utf8(bytes) {
        Ok(s) => OwnedMessage::Text(s),
        Err(e) => {
            log::warn!("the input is not valid UTF-8; sending it with replacement characters (use --binary)");
            OwnedMessage::Text(String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
    }
}

/// Removes one line ending (`\n` or `\r\n`) from the end of `line`.
fn trim_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// [`Mode::OneMessage`].
fn run_one(
    opts: &Options,
    builder: ClientBuilder,
    via: Option<&Proxy>,
    timeout: Duration,
    input: impl Read,
    output: &mut dyn Write,
    report: &mut dyn Write,
) -> i32 {
    // All of the input first, within the message size limit: a slow
    // producer does not eat into the reply's time.
    let max = opts.config.max_message_size;
    let mut payload = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if let Err(e) = input.take(limit).read_to_end(&mut payload) {
        let _ = writeln!(report, "syncws client: reading standard input: {e}");
        return EXIT_LOCAL;
    }
    if payload.len() > max {
        let _ = writeln!(report, "syncws client: standard input is larger than one message may be ({max} bytes)");
        return EXIT_LOCAL;
    }
    if !opts.binary {
        trim_line_ending(&mut payload);
    }
    let client = match builder.connect() {
        Ok(c) => c,
        Err(e) => return connect_failure(&opts.url, via, e, report),
    };
    let mut ws = match client.into_websocket() {
        Ok(ws) => ws,
        Err(e) => {
            let _ = writeln!(report, "syncws client: {e}");
            return EXIT_ABNORMAL;
        }
    };
    if let Err(e) = ws.send(message_of(payload, opts.binary)) {
        let _ = writeln!(report, "no reply: the message could not be sent: {e}");
        return EXIT_LOCAL;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = writeln!(report, "no reply within {timeout:?}");
            close_politely(&mut ws);
            return EXIT_LOCAL;
        }
        match ws.read_timeout(left) {
            Ok(Some(msg @ (OwnedMessage::Text(_) | OwnedMessage::Binary(_)))) => {
                let written = write_message(output, &msg, opts.binary_output);
                close_politely(&mut ws);
                return if written.is_ok() { EXIT_OK } else { EXIT_LOCAL };
            }
            Ok(Some(OwnedMessage::Close(reason))) => {
                let code = reason.map_or_else(|| "1005 (no status code)".to_owned(), |c| c.to_string());
                let _ = writeln!(report, "no reply: the server closed first: {code}");
                return EXIT_LOCAL;
            }
            Ok(Some(_) | None) => {}
            Err(e) => {
                let _ = writeln!(report, "no reply: connection failed: {e}");
                return EXIT_LOCAL;
            }
        }
    }
}

/// Sends Close 1000 and reads until the server's reply (bounded by the
/// close timeout).
fn close_politely(ws: &mut syncws::WebSocket) {
    if ws.close(CloseCode::NORMAL, "").is_ok() {
        while ws.read().is_ok() {}
    }
}

/// Calls `send` with each line of `input` (its line ending removed) as a
/// message, until the input ends, fails, or `send` says to stop (`false`);
/// true if the input ended (so Close 1000 is due).
fn each_line(mut input: impl BufRead, binary: bool, mut send: impl FnMut(OwnedMessage) -> bool) -> bool {
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                log::warn!("reading standard input: {e}");
                return true;
            }
        }
        trim_line_ending(&mut line);
        if !send(message_of(line.clone(), binary)) {
            return false;
        }
    }
}

/// Sends each line of `input`; at its end, Close 1000.
fn pump_input(input: impl BufRead, writer: &WsWriter, binary: bool) {
    let ended = each_line(input, binary, |msg| match writer.send(msg) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("stopped sending: {e}");
            false
        }
    });
    if ended {
        if let Err(e) = writer.close(CloseCode::NORMAL, "") {
            log::debug!("close not sent: {e}");
        }
    }
}

/// What the reconnecting runner's handler tells the main thread.
enum Event {
    /// A message to print.
    Message(OwnedMessage),
    /// A line for standard error.
    Note(String),
}

/// The handler of [`Mode::Reconnect`]: messages and news to the main
/// thread, through a bounded channel (a slow standard output slows the
/// reading).
struct Forward {
    events: cb::Sender<Event>,
}

impl Forward {
    fn note(&self, line: String) {
        let _ = self.events.send(Event::Note(line));
    }
}

impl WsTrait for Forward {
    fn on_open(&mut self, shake: WsHandshake) -> syncws::Result<Option<WsOption>> {
        if shake.reconnects > 0 {
            self.note(format!("reconnected (connection {})", shake.reconnects + 1));
        }
        if let Some(p) = &shake.protocol {
            self.note(format!("subprotocol: {p}"));
        }
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> syncws::Result<()> {
        self.events.send(Event::Message(msg)).map_err(|_| Error::Application("standard output is gone".into()))
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        match reason {
            Some(c) => self.note(format!("closed: {c}")),
            None => self.note("closed: 1006 (no close frame)".to_owned()),
        }
    }

    fn on_reconnect(&mut self, retry: &Retry) {
        let why = match (&retry.error, &retry.close) {
            (Some(e), _) => e.to_string(),
            (None, Some(c)) => format!("closed with {c}"),
            (None, None) => "disconnected".to_owned(),
        };
        self.note(format!("{why}; reconnecting in {} (attempt {})", rounded(retry.delay), retry.attempt));
    }
}

/// A delay as a person reads it: `734ms`, `2.4s`.
fn rounded(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// [`Mode::Reconnect`].
fn run_reconnect(
    opts: &Options,
    builder: ClientBuilder,
    policy: ReconnectPolicy,
    input: impl BufRead + Send + 'static,
    output: &mut dyn Write,
    report: &mut dyn Write,
) -> i32 {
    let reconnecting = match builder.reconnect(policy) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(report, "syncws client: {e}");
            return EXIT_USAGE;
        }
    };
    let sender = reconnecting.sender();
    let (tx, events) = cb::bounded(64);
    let runner =
        thread::Builder::new().name("reconnect".into()).spawn(move || reconnecting.run(&mut Forward { events: tx }));
    let runner = match runner {
        Ok(runner) => runner,
        Err(e) => {
            let _ = writeln!(report, "syncws client: cannot start the connection thread: {e}");
            return EXIT_LOCAL;
        }
    };
    let pump_sender = sender.clone();
    let binary = opts.binary;
    if let Err(e) =
        thread::Builder::new().name("stdin".into()).spawn(move || pump_reconnecting(input, &pump_sender, binary))
    {
        let _ = writeln!(report, "syncws client: cannot start the input thread: {e}");
        sender.stop();
        return EXIT_LOCAL;
    }
    // Until the runner ends and drops its handler.
    for event in events {
        match event {
            Event::Message(msg) => {
                if write_message(output, &msg, opts.binary_output).is_err() {
                    sender.stop();
                    return EXIT_LOCAL;
                }
            }
            Event::Note(line) => {
                let _ = writeln!(report, "{line}");
            }
        }
    }
    match runner.join() {
        Ok(ended) => ended_code(&opts.url, ended, report),
        Err(_) => {
            let _ = writeln!(report, "syncws client: the connection thread panicked");
            EXIT_LOCAL
        }
    }
}

/// Sends each line of `input` across reconnects, waiting while the
/// backlog is full; at its end, Close 1000 (after the backlog).
fn pump_reconnecting(input: impl BufRead, sender: &ReconnectSender, binary: bool) {
    let ended = each_line(input, binary, |msg| loop {
        match sender.send(msg.clone()) {
            Ok(()) => return true,
            // Disconnected for long: wait for room rather than drop a line.
            Err(Error::Send(SendError::QueueFull)) if sender.state() != LinkState::Stopped => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::debug!("stopped sending: {e}");
                return false;
            }
        }
    });
    if ended {
        if let Err(e) = sender.close(CloseCode::NORMAL, "") {
            log::debug!("close not sent: {e}");
        }
    }
}

/// Reports why a reconnecting run ended; the exit code it means.
fn ended_code(url: &str, ended: Ended, report: &mut dyn Write) -> i32 {
    if !ended.unsent.is_empty() {
        let _ = writeln!(report, "{} message(s) typed while disconnected were never sent", ended.unsent.len());
    }
    match ended.reason {
        EndReason::Closed => EXIT_OK,
        // Reported by on_close already.
        EndReason::ServerClosed(reason) => match reason {
            Some(c) if c.status_code != CloseCode::NORMAL.0 => EXIT_CLOSE_CODE,
            _ => EXIT_OK,
        },
        EndReason::GaveUp(error) => {
            match error {
                Some(e) => writeln!(report, "gave up reconnecting to {url}: {e}"),
                None => writeln!(report, "gave up reconnecting to {url}"),
            }
            .ok();
            EXIT_CONNECT
        }
        EndReason::Failed(e) if ended.connections == 0 || matches!(e, Error::Handshake { .. }) => {
            connect_failure(url, None, e, report)
        }
        EndReason::Failed(e) => {
            let _ = writeln!(report, "connection failed: {e}");
            EXIT_ABNORMAL
        }
        _ => EXIT_ABNORMAL,
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

    #[test]
    fn binary_messages_are_one_line_each_but_raw() {
        let msg = OwnedMessage::Binary(vec![0x00, 0x0a, 0xff, b'h']);
        let out = |mode| {
            let mut out = Vec::new();
            write_message(&mut out, &msg, mode).unwrap();
            out
        };
        assert_eq!(out(BinaryOutput::Hex), b"000aff68\n");
        assert_eq!(out(BinaryOutput::Base64), b"AAr/aA==\n");
        assert_eq!(out(BinaryOutput::Raw), vec![0x00, 0x0a, 0xff, b'h']);
        let mut text = Vec::new();
        write_message(&mut text, &OwnedMessage::Text("hé".into()), BinaryOutput::Raw).unwrap();
        assert_eq!(text, "hé\n".as_bytes());
        assert_eq!(BinaryOutput::default_for(true), BinaryOutput::Hex);
        assert_eq!(BinaryOutput::default_for(false), BinaryOutput::Raw);
    }

    #[test]
    fn delays_read_well() {
        assert_eq!(rounded(Duration::from_micros(255_489)), "255ms");
        assert_eq!(rounded(Duration::from_millis(2_380)), "2.4s");
    }

    #[test]
    fn one_line_ending_is_trimmed() {
        for (given, want) in [(&b"a\r\n"[..], &b"a"[..]), (b"a\n\n", b"a\n"), (b"a", b"a"), (b"\r", b"\r")] {
            let mut line = given.to_vec();
            trim_line_ending(&mut line);
            assert_eq!(line, want);
        }
    }
}

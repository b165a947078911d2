//! syncws behind another blocking HTTP server (Node's `handleUpgrade`):
//! tiny_http serves a page on `/` and hands `/ws` upgrades to syncws, which
//! echoes every message.
//!
//! ```sh
//! cargo run --example tiny_http_upgrade -- 127.0.0.1:8080   # then open http://127.0.0.1:8080/
//! ```
//!
//! tiny_http writes the `101 Switching Protocols` itself
//! (`Request::upgrade(protocol, response)`), so syncws builds that response
//! ([`syncws::upgrade_response`]) and then takes the stream tiny_http hands
//! back ([`WebSocket::from_upgraded`]). That stream is a
//! `Box<dyn ReadWrite + Send>`: it cannot be split into halves two threads
//! use at once, and has no read timeout. Wrapped in
//! [`Unsplit`](syncws::transport::Unsplit), it gets the plain
//! single-threaded API: read and send on one thread, as the echo loop
//! below does. A send from another thread would wait for the read in
//! progress, and keepalive pings, idle and close timeouts are not kept.
//! For those, serve a splittable transport (TCP, TLS, a Unix socket):
//! with a `TcpStream` of your own, `syncws::upgrade(&request, leftover,
//! stream, config)` writes the 101 itself.
//!
//! `tests/upgrade.rs` runs this file's `run` end to end.

use std::io::Cursor;
use std::thread;

use syncws::handshake::server::refusal;
use syncws::protocol::Role;
use syncws::transport::Unsplit;
use syncws::{Config, OwnedMessage, Request, Response, WebSocket};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>syncws behind tiny_http</title>
<h1>syncws behind tiny_http</h1>
<form id="f"><input id="m" autocomplete="off" value="hello"><button>send</button></form>
<pre id="log"></pre>
<script>
const log = (s) => document.getElementById('log').textContent += s + '\n';
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => log('open');
ws.onmessage = (e) => log('< ' + e.data);
ws.onclose = (e) => log('closed ' + e.code);
document.getElementById('f').onsubmit = (e) => {
  e.preventDefault();
  const m = document.getElementById('m').value;
  ws.send(m);
  log('> ' + m);
};
</script>
"#;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let server = tiny_http::Server::http(addr.as_str()).unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    println!("open http://{}/", server.server_addr());
    run(&server, &Config::default());
}

/// Serves every request of `server` on a thread of its own, until
/// `server.unblock()`.
pub fn run(server: &tiny_http::Server, config: &Config) {
    for request in server.incoming_requests() {
        let config = config.clone();
        thread::spawn(move || handle(request, config));
    }
}

/// One request: the page, the WebSocket, or 404.
fn handle(request: tiny_http::Request, config: Config) {
    match request.url() {
        "/" => {
            let page =
                tiny_http::Response::from_string(PAGE).with_header(header("Content-Type", "text/html; charset=utf-8"));
            let _ = request.respond(page);
        }
        "/ws" => websocket(request, config),
        _ => {
            let _ = request.respond(tiny_http::Response::from_string("not found\n").with_status_code(404));
        }
    }
}

/// Upgrades `request` and echoes every message until the peer closes.
fn websocket(request: tiny_http::Request, config: Config) {
    let parsed = to_syncws(&request);
    let answer = match syncws::upgrade_response(&parsed, &config) {
        Ok(answer) => answer,
        // Not a valid upgrade, or an Origin the policy refuses (a page from
        // another port, `file://`): answered with the status and reason.
        Err(e) => {
            log::info!("refusing {} from {:?}: {e}", request.url(), request.remote_addr());
            let _ = request.respond(to_tiny(refusal(&e)));
            return;
        }
    };
    // tiny_http writes the 101 (with its own `Upgrade` and `Connection`
    // headers) and hands back the raw stream. It reads through its own
    // buffer, so nothing read past the request head is lost: no leftover.
    let stream = request.upgrade("websocket", to_tiny(answer));
    let mut ws = match WebSocket::from_upgraded(Unsplit::new(stream), Vec::new(), Role::Server, config) {
        Ok(ws) => ws,
        Err(e) => {
            log::warn!("upgrade failed: {e}");
            return;
        }
    };
    // One thread reads and sends: what an unsplittable stream allows.
    loop {
        match ws.read() {
            Ok(msg @ (OwnedMessage::Text(_) | OwnedMessage::Binary(_))) => {
                if let Err(e) = ws.send(msg) {
                    log::debug!("send failed: {e}");
                    return;
                }
            }
            Ok(_) => {} // pings are answered, a Close is replied to, by read()
            Err(e) if e.is_closed() => return,
            Err(e) => {
                log::debug!("connection failed: {e}");
                return;
            }
        }
    }
}

/// The request as syncws sees it: method, target, version, headers (tiny_http
/// has read the body of none: an upgrade has none).
fn to_syncws(request: &tiny_http::Request) -> Request {
    let mut parsed = Request::new(request.method().as_str(), request.url());
    parsed.version = request.http_version().1;
    for h in request.headers() {
        parsed.headers.append(h.field.as_str().as_str(), h.value.as_str());
    }
    parsed
}

/// syncws's response as tiny_http's, which sets `Connection`, `Upgrade`
/// and `Content-Length` itself.
fn to_tiny(response: Response) -> tiny_http::Response<Cursor<Vec<u8>>> {
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    for (name, value) in response.headers.iter() {
        out.add_header(header(name, value));
    }
    out
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

//! The HTTP/1.1 upgrade, both sides, without I/O (RFC 6455 §4).
//!
//! A WebSocket connection starts as an HTTP/1.1 `GET` carrying
//! `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13`
//! and a random 16-byte `Sec-WebSocket-Key`. The server proves it speaks
//! WebSocket by answering `101 Switching Protocols` with
//! `Sec-WebSocket-Accept` set to [`accept_key`] of that key, and possibly one
//! of the subprotocols the client offered in `Sec-WebSocket-Protocol`. From
//! the byte after the blank line ending each head, both sides speak frames.
//!
//! Everything here works on byte buffers and values; the connection layer
//! does the reading and writing:
//!
//! - [`http`]: [`Headers`], [`Request`] and [`Response`], with parsing under
//!   the limits of [`Config`](crate::Config), also used for plain HTTP
//!   served on the same port;
//! - [`server`]: validating an upgrade request, checking its `Origin`,
//!   building the 101 or the refusal;
//! - [`client`]: parsing `ws://` URLs, building the upgrade request and
//!   checking the server's answer (including `Sec-WebSocket-Accept`).

mod accept;
pub mod client;
pub(crate) mod extensions;
pub mod http;
pub mod server;

pub use accept::accept_key;
pub use client::WsUrl;
pub use http::{Headers, Request, Response};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, OriginPolicy};

    /// A small xorshift generator, so the test needs no dependency.
    fn next(state: &mut u64) -> usize {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state as usize
    }

    /// Mutated upgrade heads and answers go through the whole pipeline of
    /// both sides without a panic, and whatever is accepted is consistent.
    #[test]
    fn mutated_handshakes_never_panic() {
        let config = Config::default().max_headers(16);
        let url = WsUrl::parse("ws://localhost:9001/chat").unwrap();
        let key = client::generate_key();
        let protocols = vec!["chat".to_owned()];
        let mut head = Vec::new();
        client::build_request(&url, &key, &protocols, &Headers::new()).write_to(&mut head);
        let parsed = Request::parse(&head, &config).unwrap().unwrap().0;
        let mut answer = Vec::new();
        server::build_response(&parsed).unwrap().write_to(&mut answer);

        let alphabet = b"\r\n:, \t\x00\xff13GETwebsocketUpgrade=/";
        let mut state = 0x2545_f491_4f6c_dd1d;
        for round in 0..20_000 {
            let mut buf = if round % 2 == 0 { head.clone() } else { answer.clone() };
            for _ in 0..(1 + next(&mut state) % 4) {
                let i = next(&mut state) % buf.len();
                let b = alphabet[next(&mut state) % alphabet.len()];
                match next(&mut state) % 3 {
                    0 => buf[i] = b,
                    1 => buf.insert(i, b),
                    _ => {
                        buf.remove(i);
                    }
                }
                if buf.is_empty() {
                    buf.push(b);
                }
            }
            if let Ok(Some((req, n))) = Request::parse(&buf, &config) {
                assert!(n <= buf.len());
                let _ = server::check_origin(&req, &OriginPolicy::SameHost);
                let _ = req.content_length();
                if let Ok(resp) = server::build_response(&req) {
                    server::check_response(&req, &resp).unwrap();
                    let resp = server::finish_response(&req, resp).unwrap();
                    let key = req.header("sec-websocket-key").unwrap_or_default();
                    client::check_response(&resp, key, &[]).unwrap();
                } else if let Err(e) = server::validate_upgrade(&req) {
                    let mut out = Vec::new();
                    server::refusal(&e).write_to(&mut out);
                    assert!(Response::parse(&out, &config).unwrap().is_some());
                }
            }
            if let Ok(Some((resp, n))) = Response::parse(&buf, &config) {
                assert!(n <= buf.len());
                let _ = resp.content_length();
                let _ = client::check_response(&resp, &key, &protocols);
            }
        }
    }
}

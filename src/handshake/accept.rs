//! The `Sec-WebSocket-Accept` value (RFC 6455 §4.2.2, step 5.4), and the
//! one check of a `101` answer that both sides make: the server on what its
//! application built, the client on what the server sent.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::http::Response;

/// The GUID RFC 6455 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value answering a `Sec-WebSocket-Key`:
/// base64 of the SHA-1 of the key followed by the RFC 6455 GUID.
///
/// ```
/// use syncws::handshake::accept_key;
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Checks that `resp` is a valid `101` acceptance of a request that had
/// `key` and offered the subprotocols `offered` (RFC 6455 §4.1, the
/// client's steps 2-6): `Upgrade: websocket`, `Connection: Upgrade`, one
/// `Sec-WebSocket-Accept` matching the key, at most one subprotocol and only
/// an offered one, and no extension (syncws negotiates none).
///
/// Returns the chosen subprotocol, or a sentence saying what is wrong (the
/// caller says whose answer it was).
pub(crate) fn check_101(resp: &Response, key: &str, offered: &[&str]) -> Result<Option<String>, String> {
    check(resp, key, offered, false)
}

/// [`check_101`], leaving `Sec-WebSocket-Extensions` to the caller (a
/// client that offered an extension checks the answer to its offer).
#[cfg(feature = "deflate")]
pub(crate) fn check_101_with_extensions(
    resp: &Response,
    key: &str,
    offered: &[&str],
) -> Result<Option<String>, String> {
    check(resp, key, offered, true)
}

/// The checks of both. Inlined into each: on the server's handshake path
/// (the deepest a connection thread goes) a call level more took an idle
/// connection's stack into a third page (`tests/idle_memory.rs`).
#[inline(always)]
fn check(resp: &Response, key: &str, offered: &[&str], extensions: bool) -> Result<Option<String>, String> {
    if resp.status != 101 {
        return Err(format!("status {} is not 101", resp.status));
    }
    if !resp.headers.contains_token("upgrade", "websocket") {
        return Err("it lacks Upgrade: websocket".into());
    }
    if !resp.headers.contains_token("connection", "upgrade") {
        return Err("it lacks Connection: Upgrade".into());
    }
    let expected = accept_key(key);
    let mut accepts = resp.headers.get_all("sec-websocket-accept");
    match (accepts.next(), accepts.next()) {
        (Some(a), None) if a.trim() == expected => {}
        _ => return Err("its Sec-WebSocket-Accept does not match the key".into()),
    }
    if !extensions {
        if let Some(ext) = resp.headers.get_all("sec-websocket-extensions").find(|e| !e.trim().is_empty()) {
            return Err(format!("it negotiates extension {ext:?}, which was not offered"));
        }
    }
    let chosen: Vec<&str> = resp.headers.get_all("sec-websocket-protocol").collect();
    match chosen.as_slice() {
        [] => Ok(None),
        [p] if offered.contains(&p.trim()) => Ok(Some(p.trim().to_owned())),
        _ => Err(format!("it chooses subprotocol {:?}, which was not offered", chosen.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn good() -> Response {
        Response::new(101)
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Accept", accept_key(KEY))
    }

    #[test]
    fn a_101_is_checked_header_by_header() {
        assert_eq!(check_101(&good(), KEY, &[]), Ok(None));
        let chat = good().with_header("Sec-WebSocket-Protocol", " chat ");
        assert_eq!(check_101(&chat, KEY, &["chat"]), Ok(Some("chat".into())));
        let bad = |resp: Response, offered: &[&str], says: &str| {
            let err = check_101(&resp, KEY, offered).unwrap_err();
            assert!(err.contains(says), "{err}");
        };
        bad(Response::new(200), &[], "not 101");
        bad(chat.clone(), &[], "not offered");
        let mut two = chat.clone();
        two.headers.append("Sec-WebSocket-Protocol", "chat");
        bad(two, &["chat"], "not offered");
        bad(good().with_header("Sec-WebSocket-Extensions", "permessage-deflate"), &[], "extension");
        bad(good().with_header("Sec-WebSocket-Accept", "x"), &[], "Accept");
        let mut wrong_key = good();
        wrong_key.headers.insert("Sec-WebSocket-Accept", accept_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        bad(wrong_key, &[], "Accept");
        let mut no_upgrade = good();
        no_upgrade.headers.insert("Upgrade", "h2c");
        bad(no_upgrade, &[], "Upgrade");
        let mut no_connection = good();
        no_connection.headers.insert("Connection", "keep-alive");
        bad(no_connection, &[], "Connection");
    }

    #[test]
    fn rfc_6455_section_1_3_vector() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn other_keys_give_other_values() {
        assert_ne!(accept_key("AAAAAAAAAAAAAAAAAAAAAA=="), accept_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(accept_key("").len(), 28);
    }
}

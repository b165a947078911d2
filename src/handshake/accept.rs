//! The `Sec-WebSocket-Accept` value (RFC 6455 §4.2.2, step 5.4).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

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

#[cfg(test)]
mod tests {
    use super::*;

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

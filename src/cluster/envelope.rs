//! The bytes a node publishes to Redis for one message, and their reading,
//! without I/O.
//!
//! ```text
//! 0      4     5          13         21
//! +------+-----+----------+----------+---------...
//! | FF 'S' 'W' 01 | type | node id  | sequence | payload
//! +------+-----+----------+----------+---------...
//!   magic        1 Text   u64 BE     u64 BE
//!   (version 1)  2 Binary
//! ```
//!
//! The magic starts with `0xFF`, which never begins valid UTF-8, so no
//! Text published by hand (`redis-cli PUBLISH syncws:t hello`) can be
//! taken for an envelope; such a payload is [`Incoming::Foreign`] and is
//! delivered as it is. The sequence counts the node's messages to one
//! channel, from 1, so a subscriber of that channel can see a gap.

use crate::protocol::OpCode;

/// The first bytes of every envelope.
pub(crate) const MAGIC: [u8; 4] = [0xFF, b'S', b'W', 1];

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 4 + 1 + 8 + 8;

/// Where the sequence number sits, for [`set_seq`].
const SEQ_AT: usize = 4 + 1 + 8;

const TEXT: u8 = 1;
const BINARY: u8 = 2;

/// An envelope for `payload` from `node`, its sequence number still 0
/// (set under the lock that orders the node's publishes, [`set_seq`]).
pub(crate) fn encode(node: u64, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(if opcode == OpCode::Text { TEXT } else { BINARY });
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes the sequence number into an envelope made by [`encode`].
pub(crate) fn set_seq(envelope: &mut [u8], seq: u64) {
    envelope[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
}

/// What a payload read from a channel is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// A node's message.
    Message {
        /// The publishing node.
        node: u64,
        /// Its number among that node's messages to the channel.
        seq: u64,
        /// The message, its type kept.
        body: Body<'a>,
    },
    /// Not an envelope: published by something other than a node.
    Foreign(&'a [u8]),
    /// Starts like an envelope but is cut short, names an unknown type, or
    /// is Text that is not UTF-8.
    Malformed,
}

/// A message's payload and type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// A Text message (checked to be UTF-8).
    Text(&'a str),
    /// A Binary message.
    Binary(&'a [u8]),
}

/// Reads a payload from a channel; never panics, whatever the bytes.
pub(crate) fn decode(bytes: &[u8]) -> Incoming<'_> {
    if !bytes.starts_with(&MAGIC) {
        return Incoming::Foreign(bytes);
    }
    if bytes.len() < HEADER_LEN {
        return Incoming::Malformed;
    }
    let payload = &bytes[HEADER_LEN..];
    let body = match bytes[4] {
        TEXT => match std::str::from_utf8(payload) {
            Ok(text) => Body::Text(text),
            Err(_) => return Incoming::Malformed,
        },
        BINARY => Body::Binary(payload),
        _ => return Incoming::Malformed,
    };
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(w)
    };
    Incoming::Message { node: word(5), seq: word(SEQ_AT), body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_reads_back() {
        let mut e = encode(0x0102_0304_0506_0708, OpCode::Text, "héllo".as_bytes());
        set_seq(&mut e, 42);
        assert_eq!(&e[..HEADER_LEN], b"\xffSW\x01\x01\x01\x02\x03\x04\x05\x06\x07\x08\0\0\0\0\0\0\0\x2a");
        assert_eq!(decode(&e), Incoming::Message { node: 0x0102_0304_0506_0708, seq: 42, body: Body::Text("héllo") });
        let b = encode(7, OpCode::Binary, &[0xff, 0]);
        assert_eq!(decode(&b), Incoming::Message { node: 7, seq: 0, body: Body::Binary(&[0xff, 0]) });
    }

    #[test]
    fn foreign_and_malformed_payloads() {
        assert_eq!(decode(b"hello"), Incoming::Foreign(b"hello"));
        assert_eq!(decode(b""), Incoming::Foreign(b""));
        assert_eq!(decode(b"\xffSW\x02rest"), Incoming::Foreign(b"\xffSW\x02rest"));
        let e = encode(1, OpCode::Text, b"abc");
        for cut in 4..HEADER_LEN {
            assert_eq!(decode(&e[..cut]), Incoming::Malformed, "{cut}");
        }
        let mut bad_type = e.clone();
        bad_type[4] = 9;
        assert_eq!(decode(&bad_type), Incoming::Malformed);
        let bad_utf8 = encode(1, OpCode::Text, &[0xc3]);
        assert_eq!(decode(&bad_utf8), Incoming::Malformed);
        // Every prefix of every byte pattern: never a panic.
        for len in 0..64 {
            let bytes: Vec<u8> = MAGIC.iter().copied().chain((0..len).map(|i| (i * 37) as u8)).collect();
            let _ = decode(&bytes);
        }
    }
}

//! The frame decoder, fed as a connection would feed it.
//!
//! Input layout: byte 0 picks the config (bits 0 and 4) and how many chunk
//! sizes follow (bits 1-3, 0 to 7); those bytes are the sizes in which the rest
//! (the byte stream from the peer) is delivered, cycled; a size of 0 means
//! "everything left". So partial headers and payloads split anywhere are
//! exercised, and the same stream is also decoded in one piece and with
//! payloads read straight into the decoder's `payload_space`, as the
//! connection layer reads them: all three must give the same messages and
//! the same error.

use syncws::protocol::{MessageDecoder, OutFrame, Role};
use syncws::{CloseCode, Config, OwnedMessage};

/// Limits small enough that declared sizes often go over them.
pub fn small_config() -> Config {
    Config::default().max_frame_size(64 << 10).max_message_size(256 << 10).max_fragments(1000)
}

/// Limits that short inputs reach with real payload bytes and fragments.
pub fn tiny_config() -> Config {
    Config::default().max_frame_size(100).max_message_size(300).max_fragments(8)
}

/// Limits far above any input, so only streaming (never reserving what a
/// header declares) keeps memory small; `-malloc_limit_mb` catches the rest.
pub fn open_config() -> Config {
    Config::default().max_frame_size(1 << 40).max_message_size(1 << 40).max_fragments(1 << 20)
}

/// What decoding one stream produced.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    messages: Vec<OwnedMessage>,
    error: Option<String>,
}

/// Runs one input for `role` and asserts every invariant.
pub fn check(role: Role, data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let config = match control & 0x11 {
        0x00 => small_config(),
        0x01 => tiny_config(),
        _ => open_config(),
    };
    let (sizes, stream) = rest.split_at(usize::from((control >> 1) & 7).min(rest.len()));
    let chunked = decode(role, &config, stream, sizes, false);
    let whole = decode(role, &config, stream, &[], false);
    assert_eq!(chunked, whole, "chunking changed what was decoded");
    let direct = decode(role, &config, stream, sizes, true);
    assert_eq!(direct, whole, "reading payloads into payload_space changed what was decoded");
    for msg in &whole.messages {
        round_trip(role, &config, msg);
    }
}

/// Delivers `stream` in chunks of `sizes` (cycled; empty: in one piece),
/// keeping unconsumed bytes as the connection layer does. With `direct`, a
/// chunk that arrives inside a data frame's payload while nothing is pending
/// goes into [`MessageDecoder::payload_space`] first, the rest as usual.
fn decode(role: Role, config: &Config, stream: &[u8], sizes: &[u8], direct: bool) -> Outcome {
    let mut dec = MessageDecoder::new(role, config);
    let mut out = Outcome::default();
    let mut pending = Vec::new();
    let mut sizes = sizes.iter().cycle();
    let mut at = 0;
    while at < stream.len() && !dec.is_done() {
        let left = stream.len() - at;
        let mut size = match sizes.next() {
            Some(&s) if s > 0 => usize::from(s).min(left),
            _ => left,
        };
        if direct && pending.is_empty() {
            if let Some(space) = dec.payload_space(size) {
                assert!(!space.is_empty() && space.len() <= size, "space of {} for {size}", space.len());
                let n = space.len();
                space.copy_from_slice(&stream[at..at + n]);
                at += n;
                size -= n;
                match dec.payload_received(n) {
                    Ok(Some(msg)) => {
                        check_message(&msg, config);
                        out.messages.push(msg);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        assert!(dec.is_done(), "decoder not done after {e}");
                        out.error = Some(e.to_string());
                    }
                }
                if dec.is_done() {
                    break;
                }
            }
        }
        pending.extend_from_slice(&stream[at..at + size]);
        at += size;
        let used = drain(&mut dec, config, &mut pending, &mut out);
        pending.drain(..used);
    }
    if out.error.is_some() || matches!(out.messages.last(), Some(OwnedMessage::Close(_))) {
        assert!(dec.is_done(), "decoder not done after an error or a Close");
    }
    if dec.is_done() {
        assert!(dec.feed(&mut pending).is_err(), "feed after the end must fail");
        assert!(dec.feed(&mut []).is_err(), "feed after the end must fail");
        assert!(dec.feed(&mut [0x82, 0x80, 0, 0, 0, 0]).is_err(), "feed after the end must fail");
    }
    out
}

/// Feeds `buf` until the decoder uses nothing more; returns the bytes used.
fn drain(dec: &mut MessageDecoder, config: &Config, buf: &mut [u8], out: &mut Outcome) -> usize {
    let mut pos = 0;
    loop {
        let offered = buf.len() - pos;
        match dec.feed(&mut buf[pos..]) {
            Ok((used, msg)) => {
                assert!(used <= offered, "used {used} of {offered} bytes");
                pos += used;
                assert!(dec.buffered() <= config.max_message_size, "buffered over the message limit");
                assert!(dec.pending_payload() <= config.max_frame_size as u64, "frame over the limit");
                let Some(msg) = msg else {
                    if used == 0 {
                        return pos;
                    }
                    continue;
                };
                assert!(used > 0, "a message without consuming a byte");
                check_message(&msg, config);
                let close = matches!(msg, OwnedMessage::Close(_));
                out.messages.push(msg);
                if close {
                    return pos;
                }
            }
            Err(e) => {
                assert!(dec.is_done(), "decoder not done after {e}");
                out.error = Some(e.to_string());
                return pos;
            }
        }
    }
}

/// What a user may rely on in every message the decoder yields.
fn check_message(msg: &OwnedMessage, config: &Config) {
    match msg {
        OwnedMessage::Text(s) => {
            assert!(std::str::from_utf8(s.as_bytes()).is_ok(), "text is not UTF-8");
            assert!(s.len() <= config.max_message_size, "text over the message limit");
        }
        OwnedMessage::Binary(b) => assert!(b.len() <= config.max_message_size, "binary over the message limit"),
        OwnedMessage::Ping(p) | OwnedMessage::Pong(p) => assert!(p.len() <= 125, "control payload over 125"),
        OwnedMessage::Close(None) => {}
        OwnedMessage::Close(Some(c)) => {
            assert!(CloseCode(c.status_code).is_allowed(), "close code {} not allowed", c.status_code);
            assert!(c.reason.len() <= 123, "close reason over 123 bytes");
            assert!(std::str::from_utf8(c.reason.as_bytes()).is_ok(), "close reason is not UTF-8");
        }
    }
}

/// A decoded message, encoded again as the peer would send it, decodes to
/// itself.
fn round_trip(role: Role, config: &Config, msg: &OwnedMessage) {
    let mask = (role == Role::Server).then_some([0x37, 0xfa, 0x21, 0x3d]);
    let frame = OutFrame::new(msg.clone(), mask).expect("a decoded message encodes");
    let mut bytes = [frame.header(), frame.payload()].concat();
    // One frame now carries what may have come in fragments.
    let config = config.clone().max_frame_size(config.max_message_size);
    let mut dec = MessageDecoder::new(role, &config);
    let (used, again) = dec.feed(&mut bytes).expect("a re-encoded message decodes");
    assert_eq!((used, again.as_ref()), (bytes.len(), Some(msg)), "round trip changed the message");
}

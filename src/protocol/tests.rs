//! Decoder tests over byte streams: every refusal, limits, fragmentation and
//! chunking. No sockets.

use super::*;
use crate::config::Config;
use crate::error::{Error, Limit, ProtocolError};
use crate::message::{CloseCode, CloseData, OwnedMessage};

/// Encodes one frame as a peer in `role` would send it to us.
fn frame(from_client: bool, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(from_client, fin, 0, opcode, payload)
}

fn raw_frame(masked: bool, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut p = payload.to_vec();
    if masked {
        let key = [0xa1, 0xb2, 0xc3, 0xd4];
        out.extend_from_slice(&key);
        apply_mask(&mut p, key, 0);
    }
    out.extend_from_slice(&p);
    out
}

/// Feeds `bytes` to a decoder in chunks of the given sizes (cycled),
/// returning the messages and the first error.
fn decode_chunked(config: &Config, role: Role, bytes: &[u8], chunks: &[usize]) -> (Vec<OwnedMessage>, Option<Error>) {
    // A payload space of at most 0 bytes is never offered: only `feed`.
    decode_direct(config, role, bytes, chunks, 0, false)
}

/// Feeds `buf` until the decoder wants more bytes or is done, keeping the
/// unconsumed rest in `buf`.
fn feed_all(dec: &mut MessageDecoder, buf: &mut Vec<u8>, msgs: &mut Vec<OwnedMessage>) -> Result<(), Error> {
    while !dec.is_done() {
        let (used, msg) = dec.feed(buf)?;
        buf.drain(..used);
        match msg {
            Some(m) => msgs.push(m),
            None => break,
        }
    }
    Ok(())
}

/// Decodes `bytes` the way the connection's read loop does: "reads" of the
/// given sizes (cycled) go into a read buffer, except that inside a data
/// frame's payload with the buffer empty a read fills the decoder's
/// [`MessageDecoder::payload_space`] (at most `direct_max`) first and the
/// buffer with the rest, as `readv` does. With `uninit`, the space is the
/// uninitialised one a TCP socket's `readv` fills
/// ([`MessageDecoder::payload_space_uninit`]).
fn decode_direct(
    config: &Config,
    role: Role,
    bytes: &[u8],
    chunks: &[usize],
    direct_max: usize,
    uninit: bool,
) -> (Vec<OwnedMessage>, Option<Error>) {
    decode_with(MessageDecoder::new(role, config), bytes, chunks, direct_max, uninit)
}

/// [`decode_direct`] with a decoder of the caller's.
fn decode_with(
    mut dec: MessageDecoder,
    bytes: &[u8],
    chunks: &[usize],
    direct_max: usize,
    uninit: bool,
) -> (Vec<OwnedMessage>, Option<Error>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut msgs = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < bytes.len() {
        let mut n = chunks[i % chunks.len()].max(1).min(bytes.len() - at);
        i += 1;
        if buf.is_empty() {
            let received = if uninit {
                dec.payload_space_uninit(direct_max).map(|space| {
                    let direct = n.min(space.len());
                    for (slot, &b) in space.iter_mut().zip(&bytes[at..at + direct]) {
                        slot.write(b);
                    }
                    direct
                })
            } else {
                dec.payload_space(direct_max).map(|space| {
                    let direct = n.min(space.len());
                    space[..direct].copy_from_slice(&bytes[at..at + direct]);
                    direct
                })
            };
            if let Some(direct) = received {
                at += direct;
                n -= direct;
                let result = if uninit {
                    // SAFETY: the loop above wrote the first `direct` bytes.
                    #[allow(unsafe_code)]
                    unsafe {
                        dec.payload_received_uninit(direct)
                    }
                } else {
                    dec.payload_received(direct)
                };
                match result {
                    Ok(Some(m)) => msgs.push(m),
                    Ok(None) => {}
                    Err(e) => return (msgs, Some(e)),
                }
            }
        }
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        if let Err(e) = feed_all(&mut dec, &mut buf, &mut msgs) {
            return (msgs, Some(e));
        }
        if dec.is_done() {
            return (msgs, None);
        }
    }
    (msgs, None)
}

fn decode(bytes: &[u8]) -> (Vec<OwnedMessage>, Option<Error>) {
    decode_chunked(&Config::default(), Role::Server, bytes, &[usize::MAX])
}

fn recorded_stream() -> (Vec<u8>, Vec<OwnedMessage>) {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = Vec::new();
    s.extend(frame(true, true, 1, "héllo wörld".as_bytes()));
    s.extend(frame(true, false, 1, &"€".as_bytes()[..1]));
    s.extend(frame(true, true, 9, b"ping!"));
    s.extend(frame(true, false, 0, &"€".as_bytes()[1..]));
    s.extend(frame(true, true, 0, b" done"));
    s.extend(frame(true, true, 2, &big));
    s.extend(frame(true, true, 2, &big[..126]));
    s.extend(frame(true, true, 2, &[]));
    s.extend(frame(true, true, 10, b""));
    s.extend(frame(true, true, 8, &[0x03, 0xe8, b'b', b'y', b'e']));
    let expect = vec![
        OwnedMessage::Text("héllo wörld".into()),
        OwnedMessage::Ping(b"ping!".to_vec()),
        OwnedMessage::Text("€ done".into()),
        OwnedMessage::Binary(big.clone()),
        OwnedMessage::Binary(big[..126].to_vec()),
        OwnedMessage::Binary(vec![]),
        OwnedMessage::Pong(vec![]),
        OwnedMessage::Close(Some(CloseData::new(CloseCode::NORMAL, "bye"))),
    ];
    (s, expect)
}

#[test]
fn whole_stream_decodes() {
    let (s, expect) = recorded_stream();
    let (msgs, err) = decode(&s);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(msgs, expect);
}

#[test]
fn one_byte_at_a_time_gives_the_same_messages() {
    let (s, expect) = recorded_stream();
    let (msgs, err) = decode_chunked(&Config::default(), Role::Server, &s, &[1]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(msgs, expect);
}

/// A frame whose payload is all at hand is built in one step; one that
/// arrives in pieces goes through the assembler. Both must accept and refuse
/// exactly the same streams, with the same messages and the same errors.
#[test]
fn whole_frames_and_frames_in_pieces_agree() {
    let config = Config::default().max_message_size(1000).max_frame_size(10_000);
    let stream = |frames: &[Vec<u8>]| frames.concat();
    let cases = [
        stream(&[frame(true, true, 2, b"bin"), frame(true, true, 1, "tëxt".as_bytes())]),
        stream(&[frame(true, true, 1, &[b'a', 0xff, b'b'])]),
        stream(&[frame(true, true, 1, &[b'a', 0xe2, 0x82])]),
        stream(&[frame(true, true, 2, &[7; 1000]), frame(true, true, 2, &[7; 1001])]),
        stream(&[frame(true, true, 9, b"p"), frame(true, true, 10, b""), frame(true, true, 8, &[0x03, 0xe8])]),
        stream(&[frame(true, true, 8, &[0x03])]),
        stream(&[frame(true, true, 8, &[0x03, 0xed])]),
        stream(&[frame(true, true, 8, &[0x03, 0xe8, 0xc0, 0x80])]),
        stream(&[frame(true, true, 8, &[]), frame(true, true, 2, b"after close")]),
        stream(&[frame(true, false, 1, b"a"), frame(true, true, 9, b"mid"), frame(true, true, 0, b"b")]),
        stream(&[frame(true, false, 1, b"a"), frame(true, true, 2, b"not a continuation")]),
        stream(&[frame(true, true, 0, b"continuation of nothing")]),
    ];
    for bytes in &cases {
        let (whole_msgs, whole_err) = decode_chunked(&config, Role::Server, bytes, &[usize::MAX]);
        let (piece_msgs, piece_err) = decode_chunked(&config, Role::Server, bytes, &[1]);
        assert_eq!(whole_msgs, piece_msgs, "{bytes:x?}");
        assert_eq!(format!("{whole_err:?}"), format!("{piece_err:?}"), "{bytes:x?}");
    }
}

#[test]
fn random_chunks_give_the_same_messages() {
    let (s, expect) = recorded_stream();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50 {
        let chunks: Vec<usize> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % 3000) as usize + 1
            })
            .collect();
        let (msgs, err) = decode_chunked(&Config::default(), Role::Server, &s, &chunks);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(msgs, expect);
    }
}

#[test]
fn direct_payload_reads_give_the_same_messages() {
    let (s, expect) = recorded_stream();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m) as usize + 1
    };
    for round in 0..60 {
        let chunks: Vec<usize> = (0..64).map(|_| next(if round % 2 == 0 { 300 } else { 20_000 })).collect();
        let direct_max = next(70_000);
        for uninit in [false, true] {
            let (msgs, err) = decode_direct(&Config::default(), Role::Server, &s, &chunks, direct_max, uninit);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(msgs, expect, "chunks {chunks:?}, direct_max {direct_max}, uninit {uninit}");
        }
    }
}

#[test]
fn uninit_reads_count_no_more_than_the_space_held() {
    let bytes = frame(true, true, 2, b"abcdefgh");
    let mut dec = MessageDecoder::new(Role::Server, &Config::default());
    let mut header = bytes[..6].to_vec();
    assert_eq!(dec.feed(&mut header).unwrap(), (6, None));
    let space = dec.payload_space_uninit(3).unwrap();
    assert_eq!(space.len(), 3);
    for (slot, &b) in space.iter_mut().zip(&bytes[6..9]) {
        slot.write(b);
    }
    // Claiming more than the space held counts only the space.
    // SAFETY: all 3 bytes of the space were written.
    #[allow(unsafe_code)]
    let got = unsafe { dec.payload_received_uninit(100) };
    assert_eq!(got.unwrap(), None);
    assert_eq!(dec.pending_payload(), 5);
    // A claim with no space handed out since counts nothing.
    // SAFETY: nothing is claimed beyond a space, and there is none.
    #[allow(unsafe_code)]
    let got = unsafe { dec.payload_received_uninit(5) };
    assert_eq!(got.unwrap(), None);
    assert_eq!(dec.pending_payload(), 5);
    // Bytes that came through `feed` after a space was handed out void
    // that space: a claim on it counts nothing.
    dec.payload_space_uninit(5).unwrap();
    let mut two = bytes[9..11].to_vec();
    assert_eq!(dec.feed(&mut two).unwrap(), (2, None));
    // SAFETY: nothing of the space was written, and nothing may be counted.
    #[allow(unsafe_code)]
    let got = unsafe { dec.payload_received_uninit(3) };
    assert_eq!(got.unwrap(), None);
    assert_eq!(dec.pending_payload(), 3);
    let mut rest = bytes[11..].to_vec();
    assert_eq!(dec.feed(&mut rest).unwrap(), (3, Some(OwnedMessage::Binary(b"abcdefgh".to_vec()))));
}

#[test]
fn direct_payload_reads_check_utf8_and_limits() {
    // Invalid UTF-8 read straight into the message fails on the bad byte.
    let mut payload = vec![b'a'; 100];
    payload.push(0xff);
    payload.extend_from_slice(&[b'z'; 1000]);
    let bytes = frame(true, true, 1, &payload);
    let mut dec = MessageDecoder::new(Role::Server, &Config::default());
    let mut header = bytes[..8].to_vec();
    assert_eq!(dec.feed(&mut header).unwrap(), (8, None));
    let space = dec.payload_space(4096).unwrap();
    assert_eq!(space.len(), payload.len(), "the space ends with the frame");
    space[..101].copy_from_slice(&bytes[8..8 + 101]);
    assert!(matches!(dec.payload_received(101), Err(Error::Utf8)));
    assert!(dec.is_done() && dec.payload_space(4096).is_none());

    // A control frame's payload never goes to a data message's space.
    let mut dec = MessageDecoder::new(Role::Server, &Config::default());
    let mut ping = frame(true, true, 9, b"hi")[..6].to_vec();
    assert_eq!(dec.feed(&mut ping).unwrap(), (6, None));
    assert!(dec.payload_space(4096).is_none());

    // A declared giant frame gets a space of at most `max`, and the
    // message limit still refuses it at the header.
    let config = Config { max_message_size: 1 << 20, ..Config::default() };
    let mut dec = MessageDecoder::new(Role::Server, &config);
    let mut header = frame(true, true, 2, &vec![0; 1 << 19])[..14].to_vec();
    assert_eq!(dec.feed(&mut header).unwrap(), (14, None));
    assert_eq!(dec.payload_space(65_536).unwrap().len(), 65_536);
    let mut dec = MessageDecoder::new(Role::Server, &config);
    let mut header = frame(true, true, 2, &vec![0; (1 << 20) + 1])[..14].to_vec();
    assert!(matches!(dec.feed(&mut header), Err(Error::Capacity { what: Limit::Message, .. })));
}

fn expect_protocol(bytes: &[u8], want: ProtocolError) {
    match decode(bytes) {
        (_, Some(Error::Protocol(p))) => assert_eq!(p, want),
        other => panic!("wanted {want:?}, got {other:?}"),
    }
}

#[test]
fn refusals_map_to_close_codes() {
    expect_protocol(&frame(false, true, 1, b"x"), ProtocolError::UnmaskedFrame);
    expect_protocol(&raw_frame(true, true, 0b100, 1, b"x"), ProtocolError::ReservedBits);
    expect_protocol(&raw_frame(true, true, 0b001, 2, b"x"), ProtocolError::ReservedBits);
    expect_protocol(&frame(true, true, 3, b""), ProtocolError::ReservedOpcode(3));
    expect_protocol(&frame(true, true, 0, b"x"), ProtocolError::UnexpectedContinuation);
    let mut s = frame(true, false, 1, b"a");
    s.extend(frame(true, true, 1, b"b"));
    expect_protocol(&s, ProtocolError::ExpectedContinuation);
    expect_protocol(&frame(true, true, 8, &[3]), ProtocolError::ClosePayloadOneByte);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        expect_protocol(&frame(true, true, 8, &code.to_be_bytes()), ProtocolError::InvalidCloseCode(code));
    }
    let mut long_ping = frame(true, true, 9, &[0; 125]);
    long_ping[1] = 0x80 | 126;
    expect_protocol(&long_ping, ProtocolError::ControlFrameTooLong);
    expect_protocol(&frame(true, false, 9, b""), ProtocolError::FragmentedControlFrame);
    let e = Error::Protocol(ProtocolError::UnmaskedFrame);
    assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL));
}

#[test]
fn client_refuses_masked_frames() {
    let (_, err) = decode_chunked(&Config::default(), Role::Client, &frame(true, true, 2, b"x"), &[100]);
    assert!(matches!(err, Some(Error::Protocol(ProtocolError::MaskedFrame))), "{err:?}");
    let (msgs, err) = decode_chunked(&Config::default(), Role::Client, &frame(false, true, 2, b"x"), &[100]);
    assert!(err.is_none());
    assert_eq!(msgs, vec![OwnedMessage::Binary(b"x".to_vec())]);
}

#[test]
fn invalid_utf8_fails_on_the_bad_byte() {
    // One frame whose payload is invalid after 3 bytes; only the first 8
    // payload bytes are fed: the error must come without the rest.
    let mut payload = b"abc".to_vec();
    payload.push(0xff);
    payload.extend_from_slice(&[b'z'; 1000]);
    let bytes = frame(true, true, 1, &payload);
    let mut dec = MessageDecoder::new(Role::Server, &Config::default());
    let mut part = bytes[..8 + 8].to_vec();
    assert!(matches!(dec.feed(&mut part), Err(Error::Utf8)));

    // Split across fragments: the second fragment makes it invalid.
    let mut s = frame(true, false, 1, &[0xce]);
    s.extend(frame(true, true, 0, &[0x41]));
    let (_, err) = decode(&s);
    assert!(matches!(err, Some(Error::Utf8)));
    assert_eq!(Error::Utf8.close_code(), Some(CloseCode::INVALID_PAYLOAD));

    // Truncated at the end of the message.
    let (_, err) = decode(&frame(true, true, 1, &[b'a', 0xe2, 0x82]));
    assert!(matches!(err, Some(Error::Utf8)));
    // Invalid close reason.
    let (_, err) = decode(&frame(true, true, 8, &[0x03, 0xe8, 0xc0, 0x80]));
    assert!(matches!(err, Some(Error::Utf8)));
}

#[test]
fn whole_text_frames_are_checked_whether_ascii_or_not() {
    // Whole frames in one buffer take the ASCII shortcut when they can;
    // every length around the word size, each kind of content at every
    // position, must give what `str::from_utf8` says.
    let bad: [&[u8]; 4] = [&[0xff], &[0xe2, 0x82], &[0xed, 0xa0, 0x80], &[0xc0, 0x80]];
    for len in 0..40 {
        let mut ascii: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let (msgs, err) = decode(&frame(true, true, 1, &ascii));
        assert!(err.is_none(), "ascii, len {len}: {err:?}");
        assert_eq!(msgs, [OwnedMessage::Text(String::from_utf8(ascii.clone()).unwrap())]);
        for at in 0..=len {
            let mut wide = ascii.clone();
            wide.splice(at..at, "é€😀".bytes());
            let (msgs, err) = decode(&frame(true, true, 1, &wide));
            assert!(err.is_none(), "non-ascii at {at}, len {len}: {err:?}");
            assert_eq!(msgs, [OwnedMessage::Text(String::from_utf8(wide).unwrap())]);

            for b in bad {
                ascii.splice(at..at, b.iter().copied());
                let (msgs, err) = decode(&frame(true, true, 1, &ascii));
                assert!(matches!(err, Some(Error::Utf8)), "{b:x?} at {at}, len {len}: {msgs:?} {err:?}");
                ascii.drain(at..at + b.len());
            }
        }
    }
}

#[test]
fn declared_giant_frame_is_refused_before_allocation() {
    // 200 MB declared, nothing of it sent.
    let mut h = vec![0x82, 0xff];
    h.extend_from_slice(&(200u64 << 20).to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    let (_, err) = decode(&h);
    match err {
        Some(e @ Error::Capacity { what: Limit::Frame, .. }) => {
            assert_eq!(e.close_code(), Some(CloseCode::TOO_BIG))
        }
        other => panic!("{other:?}"),
    }
    // Under the frame limit but over the message limit.
    let config = Config::default().max_message_size(1000).max_frame_size(10_000);
    let (_, err) = decode_chunked(&config, Role::Server, &frame(true, true, 2, &[0; 1001]), &[4096]);
    assert!(matches!(err, Some(Error::Capacity { what: Limit::Message, .. })), "{err:?}");
    // Fragments that add up past the message limit, refused at the header.
    let mut s = frame(true, false, 2, &[0; 600]);
    s.extend(frame(true, true, 0, &[0; 600]));
    let (_, err) = decode_chunked(&config, Role::Server, &s[..s.len() - 600], &[4096]);
    assert!(matches!(err, Some(Error::Capacity { what: Limit::Message, size: 1200, max: 1000 })), "{err:?}");
}

#[test]
fn fragment_flood_is_bounded() {
    let config = Config::default().max_fragments(1000);
    let mut s = frame(true, false, 2, b"x");
    for _ in 0..100_000 {
        s.extend(frame(true, false, 0, b"x"));
    }
    let (_, err) = decode_chunked(&config, Role::Server, &s, &[65536]);
    match err {
        Some(e @ Error::Capacity { what: Limit::Fragments, size: 1001, max: 1000 }) => {
            assert_eq!(e.close_code(), Some(CloseCode::POLICY));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decoder_is_done_after_error_and_after_close() {
    let mut dec = MessageDecoder::new(Role::Server, &Config::default());
    let mut bad = frame(false, true, 1, b"x");
    assert!(dec.feed(&mut bad).is_err());
    assert!(matches!(dec.feed(&mut bad), Err(Error::AlreadyClosed)));

    let mut dec = MessageDecoder::new(Role::Server, &Config::default());
    let mut s = frame(true, true, 8, &[]);
    s.extend(frame(true, true, 1, b"late"));
    let (used, msg) = dec.feed(&mut s).unwrap();
    assert_eq!(msg, Some(OwnedMessage::Close(None)));
    assert!(dec.is_done());
    assert!(used < s.len());
}

#[test]
fn encoder_output_decodes_back() {
    let mut gen = MaskGen::new();
    let msgs = vec![
        OwnedMessage::Text("x".repeat(126)),
        OwnedMessage::Binary(vec![7; 65536]),
        OwnedMessage::Binary(vec![1; 65535]),
        OwnedMessage::Ping(vec![1, 2, 3]),
        OwnedMessage::Close(Some(CloseData::new(CloseCode(4000), "custom"))),
    ];
    let mut wire = Vec::new();
    for m in &msgs {
        OutFrame::new(m.clone(), Some(gen.next_key())).unwrap().write_to(&mut wire);
    }
    let (got, err) = decode_chunked(&Config::default(), Role::Server, &wire, &[777]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, msgs);
}

/// permessage-deflate in the decoder: RSV1 only where RFC 7692 §6 allows
/// it, compressed messages whole or in fragments, read any way the
/// connection reads.
#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use crate::protocol::deflate::Compressor;
    use crate::DeflateConfig;

    fn deflate_decoder(config: &Config) -> MessageDecoder {
        MessageDecoder::with_deflate(Role::Server, config, &DeflateParams::default())
    }

    /// `payload` compressed as a client would send it (context reset).
    fn compressed(payload: &[u8]) -> Vec<u8> {
        let params = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
        let mut c = Compressor::new(Role::Client, &params, &DeflateConfig::default().threshold(0));
        c.compress(payload).unwrap().unwrap_or_else(|| {
            // Not smaller: a stored block then, still a valid compressed message.
            let mut z = flate2::Compress::new_with_window_bits(flate2::Compression::none(), false, 15);
            let mut out = Vec::with_capacity(payload.len() + 64);
            z.compress_vec(payload, &mut out, flate2::FlushCompress::Sync).unwrap();
            out.truncate(out.len() - 4);
            out
        })
    }

    fn expect(dec: MessageDecoder, bytes: &[u8]) -> Error {
        match decode_with(dec, bytes, &[usize::MAX], 0, false) {
            (_, Some(e)) => e,
            (msgs, None) => panic!("no error, got {msgs:?}"),
        }
    }

    #[test]
    fn rsv1_without_the_extension_is_1002() {
        let z = compressed(b"hello hello hello");
        let e = expect(MessageDecoder::new(Role::Server, &Config::default()), &raw_frame(true, true, 0b100, 1, &z));
        assert!(matches!(e, Error::Protocol(ProtocolError::ReservedBits)), "{e}");
        assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL));
    }

    #[test]
    fn rsv1_on_a_continuation_or_control_frame_is_1002() {
        let config = Config::default();
        let z = compressed(b"hello hello hello");
        let (a, b) = z.split_at(4);
        let mut bytes = raw_frame(true, false, 0b100, 1, a);
        bytes.extend(raw_frame(true, true, 0b100, 0, b));
        let e = expect(deflate_decoder(&config), &bytes);
        assert!(matches!(e, Error::Protocol(ProtocolError::MisplacedRsv1)), "{e}");
        for opcode in [8, 9, 10] {
            let e = expect(deflate_decoder(&config), &raw_frame(true, true, 0b100, opcode, b""));
            assert!(matches!(e, Error::Protocol(ProtocolError::MisplacedRsv1)), "{opcode}: {e}");
            assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL));
        }
        for rsv in [0b010, 0b001, 0b110] {
            let e = expect(deflate_decoder(&config), &raw_frame(true, true, rsv, 1, &z));
            assert!(matches!(e, Error::Protocol(ProtocolError::ReservedBits)), "{rsv:b}: {e}");
        }
    }

    #[test]
    fn undecodable_data_is_1007() {
        let e = expect(deflate_decoder(&Config::default()), &raw_frame(true, true, 0b100, 2, &[0xff, 0xff, 0xff]));
        assert!(matches!(e, Error::Deflate(_)), "{e}");
        assert_eq!(e.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        let mut bad = b"caf".repeat(100);
        bad.push(0xe9);
        let e = expect(deflate_decoder(&Config::default()), &raw_frame(true, true, 0b100, 1, &compressed(&bad)));
        assert!(matches!(e, Error::Utf8), "{e}");
    }

    #[test]
    fn an_expanding_message_is_1009_at_the_limit() {
        let config = Config::default().max_message_size(100_000);
        let z = compressed(&vec![0; 100_001]);
        let e = expect(deflate_decoder(&config), &raw_frame(true, true, 0b100, 2, &z));
        assert!(matches!(e, Error::Capacity { what: Limit::Message, size: 100_001, max: 100_000 }), "{e}");
        assert_eq!(e.close_code(), Some(CloseCode::TOO_BIG));
        let z = compressed(&vec![0; 100_000]);
        let (msgs, err) = decode_with(deflate_decoder(&config), &raw_frame(true, true, 0b100, 2, &z), &[7], 0, false);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(msgs, [OwnedMessage::Binary(vec![0; 100_000])]);
    }

    /// Compressed and plain messages mixed, fragmented with a ping
    /// between, read whole, in small pieces and straight into the payload
    /// space: the same messages every way.
    #[test]
    fn compressed_messages_in_every_shape() {
        let text = "{\"id\":1,\"name\":\"ada\",\"tags\":[\"a\",\"b\"]} ".repeat(60);
        let z = compressed(text.as_bytes());
        let mut bytes = raw_frame(true, true, 0b100, 1, &z);
        bytes.extend(raw_frame(true, true, 0, 2, b"plain"));
        let (a, rest) = z.split_at(z.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        bytes.extend(raw_frame(true, false, 0b100, 1, a));
        bytes.extend(raw_frame(true, true, 0, 9, b"ping"));
        bytes.extend(raw_frame(true, false, 0, 0, b));
        bytes.extend(raw_frame(true, true, 0, 0, c));
        bytes.extend(raw_frame(true, true, 0b100, 2, &compressed(&[])));
        let want = vec![
            OwnedMessage::Text(text.clone()),
            OwnedMessage::Binary(b"plain".to_vec()),
            OwnedMessage::Ping(b"ping".to_vec()),
            OwnedMessage::Text(text),
            OwnedMessage::Binary(Vec::new()),
        ];
        let config = Config::default();
        for (chunks, direct, uninit) in [
            (&[usize::MAX][..], 0, false),
            (&[1][..], 0, false),
            (&[3, 100, 7][..], 64, false),
            (&[50][..], 1000, true),
        ] {
            let (msgs, err) = decode_with(deflate_decoder(&config), &bytes, chunks, direct, uninit);
            assert!(err.is_none(), "{chunks:?}: {err:?}");
            assert_eq!(msgs, want, "{chunks:?} direct {direct}");
        }
    }
}

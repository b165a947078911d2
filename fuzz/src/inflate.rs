//! permessage-deflate's read path: fuzzed DEFLATE data as compressed
//! messages (RSV1 frames, whole or in two fragments) through a client's
//! decoder that negotiated the extension, under a small message limit.
//!
//! Input layout: byte 0 picks the limit (bits 0-1: 1 KiB, 64 KiB, 1 MiB,
//! 4 MiB), whether the peer resets its context (bit 2), text or binary
//! (bit 3) and fragmenting (bit 4); the rest is split at each `0xfe 0xfe`
//! into the compressed payloads of successive messages.
//!
//! Checked: no panic, no message over the limit, text always UTF-8, the
//! decoder finished after an error; and, when the peer resets its context
//! (each message inflates from scratch), the same outcome as inflating the
//! payload in one call with flate2 into a buffer of the limit plus one
//! byte: the same bytes, a 1009 where it would go over the limit, a 1007
//! where it is not DEFLATE (or a 1009 where it is not DEFLATE but goes over
//! the limit before the fault, fed a byte at a time). `.ci/fuzz.sh` runs it
//! with `-malloc_limit_mb=256`: nothing a payload expands to may be
//! allocated past the limit.

use flate2::{Decompress, FlushDecompress, Status};
use syncws::protocol::{DeflateParams, MessageDecoder, Role};
use syncws::{Config, Error, Limit, OwnedMessage};

const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// An unmasked frame, as a server sends it.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push((u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// What inflating `payload` in one call gives, with room for `max + 1`
/// bytes: `Ok(bytes)` (at most `max + 1` of them) or `Err(())` for data
/// that is not DEFLATE.
fn reference(payload: &[u8], max: usize) -> Result<Vec<u8>, ()> {
    let mut z = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TRAILER);
    let mut out = Vec::with_capacity(max + 1);
    let mut rest = &input[..];
    loop {
        let before = z.total_in();
        let status = z.decompress_vec(rest, &mut out, FlushDecompress::Sync).map_err(|_| ())?;
        rest = &rest[(z.total_in() - before) as usize..];
        if status == Status::StreamEnd || rest.is_empty() || out.len() == out.capacity() {
            return Ok(out);
        }
        if z.total_in() == before {
            return Ok(out);
        }
    }
}

/// For data that is not DEFLATE: whether more than `max` bytes inflate
/// before the fault is found when the data arrives a byte at a time. A
/// decoder inflates a message as its frames arrive, so it may rightly stop
/// at the limit (1009) before it reaches a fault further on, which a
/// single call over the whole payload finds first (1007).
fn passes_limit_before_fault(payload: &[u8], max: usize) -> bool {
    let mut z = Decompress::new(false);
    let mut out = Vec::with_capacity(max + 1);
    for byte in payload.iter().chain(&TRAILER) {
        let mut rest = std::slice::from_ref(byte);
        while !rest.is_empty() {
            let before = z.total_in();
            if z.decompress_vec(rest, &mut out, FlushDecompress::Sync).is_err() {
                return false;
            }
            if out.len() > max {
                return true;
            }
            let used = (z.total_in() - before) as usize;
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
    }
    false
}

/// Runs one input and asserts every invariant.
pub fn check(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let max = [1usize << 10, 64 << 10, 1 << 20, 4 << 20][usize::from(control & 3)];
    let peer_resets = control & 4 != 0;
    let text = control & 8 != 0;
    let fragment = control & 16 != 0;
    let params = DeflateParams { server_no_context_takeover: peer_resets, ..DeflateParams::default() };
    let config = Config::default().max_message_size(max).max_frame_size(max);
    let mut dec = MessageDecoder::with_deflate(Role::Client, &config, &params);
    let opcode = if text { 1 } else { 2 };
    for payload in split_messages(rest) {
        if payload.len() > max {
            return;
        }
        let mut bytes = Vec::new();
        if fragment && payload.len() > 1 {
            let (a, b) = payload.split_at(payload.len() / 2);
            frame(false, true, opcode, a, &mut bytes);
            frame(true, false, 0, b, &mut bytes);
        } else {
            frame(true, true, opcode, payload, &mut bytes);
        }
        let mut got = None;
        let mut at = 0;
        let outcome = loop {
            match dec.feed(&mut bytes[at..]) {
                Ok((used, msg)) => {
                    at += used;
                    if let Some(m) = msg {
                        got = Some(m);
                    }
                    if used == 0 || at == bytes.len() {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if let Some(msg) = &got {
            match msg {
                OwnedMessage::Text(s) => assert!(s.len() <= max && std::str::from_utf8(s.as_bytes()).is_ok()),
                OwnedMessage::Binary(b) => assert!(b.len() <= max),
                other => panic!("a data frame gave {other:?}"),
            }
        }
        if let Err(e) = &outcome {
            assert!(dec.is_done(), "decoder not done after {e}");
            assert!(
                matches!(e, Error::Deflate(_) | Error::Utf8 | Error::Capacity { what: Limit::Message, .. }),
                "unexpected error {e}"
            );
        }
        if peer_resets {
            match (reference(payload, max), &outcome, &got) {
                // Text is checked as it inflates: bad UTF-8 within the
                // limit is the first fault found.
                (Ok(r), Err(Error::Utf8), _) if r.len() > max => {
                    assert!(text && std::str::from_utf8(&r).is_err(), "valid UTF-8 refused");
                }
                (Ok(r), _, _) if r.len() > max => {
                    assert!(
                        matches!(outcome, Err(Error::Capacity { what: Limit::Message, .. })),
                        "{} bytes inflated past the limit of {max}, yet {outcome:?}",
                        r.len()
                    );
                }
                (Ok(r), Ok(()), Some(OwnedMessage::Binary(b))) => assert_eq!(&r, b, "inflated bytes differ"),
                (Ok(r), Ok(()), Some(OwnedMessage::Text(s))) => {
                    assert_eq!(&r[..], s.as_bytes(), "inflated text differs")
                }
                (Ok(r), Err(Error::Utf8), _) => {
                    assert!(text && std::str::from_utf8(&r).is_err(), "valid UTF-8 refused")
                }
                (Ok(r), other, _) => panic!("reference inflated {} bytes, the decoder gave {other:?}", r.len()),
                (Err(()), Err(Error::Deflate(_)), _) => {}
                // Text is checked as it inflates: bad UTF-8 before the bad
                // DEFLATE is the first fault found.
                (Err(()), Err(Error::Utf8), _) if text => {}
                // Over the limit before the fault is reached: the first
                // fault found, as the bytes arrive.
                (Err(()), Err(Error::Capacity { what: Limit::Message, .. }), _)
                    if passes_limit_before_fault(payload, max) => {}
                (Err(()), other, _) => panic!("reference failed, the decoder gave {other:?} / {got:?}"),
            }
        }
        if outcome.is_err() {
            return;
        }
    }
}

/// `data` split at each `0xfe 0xfe`.
fn split_messages(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xfe && data[i + 1] == 0xfe {
            parts.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    parts.push(&data[start..]);
    parts
}

#[cfg(test)]
mod tests {
    /// Found by CI's fuzzing (2026-12-05): a fragmented binary message
    /// whose first fragment inflates past 1 KiB and whose DEFLATE data is
    /// bad further on. The decoder answers 1009 at the limit; the single
    /// reference call over the whole payload found the fault first.
    #[test]
    fn over_the_limit_before_a_fault_is_a_1009() {
        let input: &[u8] = &[
            0x14, 0xf2, 0xa4, 0x05, 0x00, 0x41, 0x30, 0xca, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1,
            0xc1, 0xc0, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc4, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xf2, 0xa4, 0x05, 0x00,
            0x41, 0x30, 0xca, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc4, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1,
            0xf2, 0xc1, 0xf2, 0xa4, 0x05, 0x00, 0x41, 0x30, 0xca, 0xc1, 0xc1, 0xc1, 0xc5, 0x00, 0x08, 0xf2,
        ];
        super::check(input);
    }
}

//! Messages to frames: a header in a small buffer, the payload moved, never
//! copied.

use crate::error::{Error, Limit, Result, SendError};
use crate::message::OwnedMessage;
use crate::protocol::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::protocol::mask::{apply_mask, extend_masked};

/// One frame ready for the wire: its header bytes and its (already masked)
/// payload, kept apart so the payload is written with `write_vectored`
/// instead of being copied behind the header.
///
/// ```
/// use syncws::OwnedMessage;
/// use syncws::protocol::OutFrame;
/// let f = OutFrame::new(OwnedMessage::Text("Hello".into()), None).unwrap();
/// assert_eq!(f.header(), &[0x81, 0x05]);
/// assert_eq!(f.payload(), b"Hello");
/// ```
#[derive(Debug, Clone)]
pub struct OutFrame {
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    payload: Vec<u8>,
    opcode: OpCode,
}

impl OutFrame {
    /// Encodes `msg` as one final frame, masked with `mask` if given (the
    /// client side). The payload is masked in place in the message's own
    /// buffer.
    ///
    /// Fails for a Ping or Pong over 125 bytes and for a close code that may
    /// not be sent ([`CloseCode::is_allowed`](crate::CloseCode::is_allowed)).
    /// A close reason too long for the frame is cut at a character boundary.
    pub fn new(msg: OwnedMessage, mask: Option<[u8; 4]>) -> Result<OutFrame> {
        let (opcode, payload) = match msg {
            OwnedMessage::Text(s) => (OpCode::Text, s.into_bytes()),
            OwnedMessage::Binary(b) => (OpCode::Binary, b),
            OwnedMessage::Ping(b) => (OpCode::Ping, control_payload(b)?),
            OwnedMessage::Pong(b) => (OpCode::Pong, control_payload(b)?),
            OwnedMessage::Close(None) => (OpCode::Close, Vec::new()),
            OwnedMessage::Close(Some(c)) => {
                if !c.code().is_allowed() {
                    return Err(Error::Send(SendError::InvalidCloseCode(c.status_code)));
                }
                let mut reason = c.reason.as_str();
                while reason.len() > 123 {
                    let mut cut = 123;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason = &reason[..cut];
                }
                let mut p = Vec::with_capacity(2 + reason.len());
                p.extend_from_slice(&c.status_code.to_be_bytes());
                p.extend_from_slice(reason.as_bytes());
                (OpCode::Close, p)
            }
        };
        Ok(OutFrame::from_payload(opcode, 0, payload, mask))
    }

    /// One final frame of `opcode` carrying `payload` as it is, with the
    /// RSV bits `rsv` (RSV1 on a data frame: compressed), masked with
    /// `mask` if given.
    pub(crate) fn from_payload(opcode: OpCode, rsv: u8, mut payload: Vec<u8>, mask: Option<[u8; 4]>) -> OutFrame {
        let h = FrameHeader { fin: true, rsv, opcode, mask, payload_len: payload.len() as u64 };
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = h.encode(&mut header) as u8;
        if let Some(key) = mask {
            apply_mask(&mut payload, key, 0);
        }
        OutFrame { header, header_len, payload, opcode }
    }

    /// The header bytes.
    pub fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.header_len)]
    }

    /// The payload bytes (masked if a key was given).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Header plus payload length.
    pub fn wire_len(&self) -> usize {
        usize::from(self.header_len) + self.payload.len()
    }

    /// True for a Close frame.
    pub fn is_close(&self) -> bool {
        self.opcode == OpCode::Close
    }

    /// Appends header and payload to `out` (for batching small frames into
    /// one write).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.header());
        out.extend_from_slice(&self.payload);
    }
}

/// Appends `msg` as one final frame to `out` without taking the message
/// (for a write that may take nothing, after which the message is queued
/// as it is). Text and Binary only: returns false, appending nothing, for
/// anything else.
#[inline]
pub(crate) fn append_data_frame(msg: &OwnedMessage, mask: Option<[u8; 4]>, out: &mut Vec<u8>) -> bool {
    let (opcode, payload) = match msg {
        OwnedMessage::Text(s) => (OpCode::Text, s.as_bytes()),
        OwnedMessage::Binary(b) => (OpCode::Binary, b.as_slice()),
        _ => return false,
    };
    let len = payload.len();
    if mask.is_none() && len <= 0xffff {
        // The server's frames, written without `FrameHeader::encode`'s
        // array and variable-length copy: a 2- or 4-byte header of a
        // known length (this runs for every small reply).
        out.reserve(4 + len);
        let b0 = 0x80 | opcode.bits();
        if len <= 125 {
            out.extend_from_slice(&[b0, len as u8]);
        } else {
            let [hi, lo] = (len as u16).to_be_bytes();
            out.extend_from_slice(&[b0, 126, hi, lo]);
        }
        out.extend_from_slice(payload);
        return true;
    }
    let h = FrameHeader { fin: true, rsv: 0, opcode, mask, payload_len: len as u64 };
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = h.encode(&mut header);
    out.extend_from_slice(&header[..header_len]);
    match mask {
        Some(key) => extend_masked(out, payload, key),
        None => out.extend_from_slice(payload),
    }
    true
}

fn control_payload(b: Vec<u8>) -> Result<Vec<u8>> {
    if b.len() > 125 {
        return Err(Error::Capacity { what: Limit::ControlFrame, size: b.len() as u64, max: 125 });
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{CloseCode, CloseData};

    #[test]
    fn rfc_masked_hello() {
        let f = OutFrame::new(OwnedMessage::Text("Hello".into()), Some([0x37, 0xfa, 0x21, 0x3d])).unwrap();
        let mut wire = Vec::new();
        f.write_to(&mut wire);
        assert_eq!(wire, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn append_data_frame_matches_out_frame() {
        let mut cases = vec![
            (OwnedMessage::Text("Hello".into()), Some([0x37, 0xfa, 0x21, 0x3d])),
            (OwnedMessage::Binary(vec![7; 300]), None),
            (OwnedMessage::Binary(vec![1; 70_000]), Some([1, 2, 3, 4])),
        ];
        // Each side of every header-length boundary, unmasked (the server's
        // short path) and masked.
        for len in [0, 1, 125, 126, 127, 65_535, 65_536] {
            for mask in [None, Some([5, 6, 7, 8])] {
                cases.push((OwnedMessage::Binary(vec![3; len]), mask));
                cases.push((OwnedMessage::Text("t".repeat(len)), mask));
            }
        }
        for (msg, mask) in cases {
            let mut want = Vec::new();
            OutFrame::new(msg.clone(), mask).unwrap().write_to(&mut want);
            let mut got = vec![9];
            assert!(append_data_frame(&msg, mask, &mut got));
            assert_eq!(got[1..], want[..]);
        }
        let mut out = Vec::new();
        assert!(!append_data_frame(&OwnedMessage::Ping(vec![1]), None, &mut out));
        assert!(!append_data_frame(&OwnedMessage::Close(None), None, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn control_limits() {
        assert!(OutFrame::new(OwnedMessage::Ping(vec![0; 125]), None).is_ok());
        assert!(OutFrame::new(OwnedMessage::Ping(vec![0; 126]), None).is_err());
        let bad = OwnedMessage::Close(Some(CloseData { status_code: 1005, reason: String::new() }));
        assert!(OutFrame::new(bad, None).is_err());
        let long = OwnedMessage::Close(Some(CloseData::new(CloseCode::NORMAL, "é".repeat(100))));
        let f = OutFrame::new(long, None).unwrap();
        assert!(f.payload().len() <= 125);
        assert!(std::str::from_utf8(&f.payload()[2..]).is_ok());
    }
}

//! The frame header (RFC 6455 §5.2): parsing and encoding.

use crate::error::{ProtocolError, Result};

/// Longest possible header: 2 bytes, 8 bytes of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// RSV1 in [`FrameHeader::rsv`]: with permessage-deflate, "this message is
/// compressed" (RFC 7692 §6), on a message's first frame only.
pub const RSV1: u8 = 0b100;

/// Frame opcodes. Reserved opcodes are refused while parsing, so they have no
/// variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continue,
    /// 0x1: first frame of a text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Close, Ping and Pong are control opcodes.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }

    fn from_bits(bits: u8) -> Result<OpCode> {
        Ok(match bits {
            0x0 => OpCode::Continue,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other).into()),
        })
    }

    pub(crate) fn bits(self) -> u8 {
        match self {
            OpCode::Continue => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as bits 2, 1, 0 (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header (nothing is
    /// consumed; call again with more bytes), or the header and its length in
    /// bytes. Refuses reserved opcodes, control frames over 125 bytes or
    /// without FIN, non-minimal length encodings and 64-bit lengths with the
    /// top bit set. RSV bits and masking depend on the connection and are
    /// checked by the decoder.
    ///
    /// ```
    /// use syncws::protocol::{FrameHeader, OpCode};
    /// // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
    /// let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    /// let (h, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
    /// assert_eq!((h.opcode, h.payload_len, len), (OpCode::Text, 5, 2));
    /// assert!(FrameHeader::parse(&bytes[..1]).unwrap().is_none());
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_bits(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;

        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame.into());
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong.into());
            }
        }

        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match ext_len {
            2 => {
                let n = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
                if n < 126 {
                    return Err(ProtocolError::NonMinimalLength.into());
                }
                n
            }
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow.into());
                }
                if n <= 0xffff {
                    return Err(ProtocolError::NonMinimalLength.into());
                }
                n
            }
            _ => u64::from(len7),
        };
        let mask = masked.then(|| {
            let at = 2 + ext_len;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(Some((FrameHeader { fin, rsv, opcode, mask, payload_len }, header_len)))
    }

    /// Writes the header into `out` and returns its length (2 to 14 bytes).
    /// The payload is written after it by the caller; it is never copied here.
    ///
    /// ```
    /// use syncws::protocol::{FrameHeader, OpCode};
    /// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 256 };
    /// let mut out = [0u8; 14];
    /// let n = h.encode(&mut out);
    /// assert_eq!(&out[..n], &[0x82, 0x7e, 0x01, 0x00]);
    /// ```
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn hdr(len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask, payload_len: len }
    }

    #[test]
    fn length_boundaries_round_trip() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = hdr(len, mask);
                let mut out = [0u8; MAX_HEADER_LEN];
                let n = h.encode(&mut out);
                let expect = match len {
                    0..=125 => 2,
                    126..=65535 => 4,
                    _ => 10,
                } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(n, expect, "len {len}");
                for partial in 0..n {
                    assert_eq!(FrameHeader::parse(&out[..partial]).unwrap(), None, "len {len} partial {partial}");
                }
                assert_eq!(FrameHeader::parse(&out[..n]).unwrap(), Some((h, n)));
            }
        }
    }

    #[test]
    fn rfc_6455_5_7_examples() {
        // Single-frame masked text "Hello".
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = FrameHeader::parse(&masked).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut payload = masked[6..].to_vec();
        crate::protocol::apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        // Fragmented unmasked text: "Hel" then "lo".
        let (h, _) = FrameHeader::parse(&[0x01, 0x03, 0x48, 0x65, 0x6c]).unwrap().unwrap();
        assert!(!h.fin && h.opcode == OpCode::Text);
        let (h, _) = FrameHeader::parse(&[0x80, 0x02, 0x6c, 0x6f]).unwrap().unwrap();
        assert!(h.fin && h.opcode == OpCode::Continue);
        // Ping "Hello" unmasked, and its masked pong.
        let (h, _) = FrameHeader::parse(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len), (OpCode::Ping, 5));
        let (h, _) = FrameHeader::parse(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Pong);
        // 256 bytes binary in one unmasked frame: 0x82 0x7E 0x0100.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        // 64 KiB binary: 0x82 0x7F 0x0000000000010000.
        let b = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(FrameHeader::parse(&b).unwrap().unwrap().0.payload_len, 65536);
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0x83, 0x00], ProtocolError::ReservedOpcode(3)),
            (&[0x8b, 0x00], ProtocolError::ReservedOpcode(0xb)),
            (&[0x89, 0x7e, 0x00, 0x7e], ProtocolError::ControlFrameTooLong),
            (&[0x09, 0x00], ProtocolError::FragmentedControlFrame),
            (&[0x82, 0x7e, 0x00, 0x7d], ProtocolError::NonMinimalLength),
            (&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff], ProtocolError::NonMinimalLength),
            (&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0], ProtocolError::LengthOverflow),
        ];
        for (bytes, want) in cases {
            match FrameHeader::parse(bytes) {
                Err(Error::Protocol(p)) => assert_eq!(p, *want, "{bytes:x?}"),
                other => panic!("{bytes:x?}: {other:?}"),
            }
        }
    }

    #[test]
    fn rsv_bits_are_reported_not_refused() {
        let (h, _) = FrameHeader::parse(&[0xc1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
    }
}

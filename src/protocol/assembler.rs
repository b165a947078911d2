//! Frames to messages: fragments, interleaved control frames, UTF-8, close
//! payloads and limits.

use crate::config::Config;
use crate::error::{Error, ProtocolError, Result};
use crate::message::{CloseCode, CloseData, OwnedMessage};
use crate::protocol::frame::{FrameHeader, OpCode};
use crate::protocol::utf8::Utf8Validator;

/// A data message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// RSV1 of the first frame: "compressed" once permessage-deflate exists.
    #[allow(dead_code)]
    rsv1: bool,
    buf: Vec<u8>,
    fragments: usize,
    utf8: Utf8Validator,
}

/// Which buffer the payload of the current frame goes to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Data { fin: bool },
    Control(OpCode),
}

/// Builds messages from frame headers and payload chunks.
///
/// The decoder calls [`start_frame`](Assembler::start_frame), then
/// [`payload`](Assembler::payload) for each chunk as it arrives, then
/// [`end_frame`](Assembler::end_frame), which yields a message when one is
/// complete. Control frames may arrive between the fragments of a message and
/// are delivered at once.
#[derive(Debug)]
pub(crate) struct Assembler {
    max_message: u64,
    max_fragments: usize,
    partial: Option<Partial>,
    control: Vec<u8>,
    target: Target,
}

impl Assembler {
    pub(crate) fn new(config: &Config) -> Self {
        Assembler {
            max_message: config.max_message_size as u64,
            max_fragments: config.max_fragments,
            partial: None,
            control: Vec::new(),
            target: Target::Control(OpCode::Ping),
        }
    }

    /// Bytes held for a message in progress.
    pub(crate) fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.buf.len())
    }

    pub(crate) fn start_frame(&mut self, h: &FrameHeader) -> Result<()> {
        match h.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                self.control.clear();
                self.target = Target::Control(h.opcode);
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(ProtocolError::ExpectedContinuation.into());
                }
                self.check_size(0, h.payload_len)?;
                self.partial = Some(Partial {
                    text: h.opcode == OpCode::Text,
                    rsv1: h.rsv & 0b100 != 0,
                    buf: Vec::new(),
                    fragments: 1,
                    utf8: Utf8Validator::default(),
                });
                self.target = Target::Data { fin: h.fin };
            }
            OpCode::Continue => {
                let Some(p) = self.partial.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation.into());
                };
                p.fragments += 1;
                if p.fragments > self.max_fragments {
                    let (size, max) = (p.fragments as u64, self.max_fragments as u64);
                    return Err(Error::Capacity { what: "fragments", size, max });
                }
                let held = p.buf.len() as u64;
                self.check_size(held, h.payload_len)?;
                self.target = Target::Data { fin: h.fin };
            }
        }
        Ok(())
    }

    fn check_size(&self, held: u64, more: u64) -> Result<()> {
        let size = held.saturating_add(more);
        if size > self.max_message {
            return Err(Error::Capacity { what: "message", size, max: self.max_message });
        }
        Ok(())
    }

    /// Adds an unmasked chunk of the current frame's payload.
    pub(crate) fn payload(&mut self, chunk: &[u8]) -> Result<()> {
        match self.target {
            Target::Control(_) => self.control.extend_from_slice(chunk),
            Target::Data { .. } => {
                if let Some(p) = self.partial.as_mut() {
                    p.buf.extend_from_slice(chunk);
                    if p.text {
                        p.utf8.feed(&p.buf)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The current frame is complete; returns a message if one is.
    pub(crate) fn end_frame(&mut self) -> Result<Option<OwnedMessage>> {
        match self.target {
            Target::Control(op) => {
                let payload = std::mem::take(&mut self.control);
                Ok(Some(match op {
                    OpCode::Ping => OwnedMessage::Ping(payload),
                    OpCode::Pong => OwnedMessage::Pong(payload),
                    _ => OwnedMessage::Close(parse_close(&payload)?),
                }))
            }
            Target::Data { fin: false } => Ok(None),
            Target::Data { fin: true } => {
                let Some(mut p) = self.partial.take() else {
                    return Ok(None);
                };
                if p.text {
                    p.utf8.finish(&p.buf)?;
                    let text = String::from_utf8(p.buf).map_err(|_| Error::Utf8)?;
                    Ok(Some(OwnedMessage::Text(text)))
                } else {
                    Ok(Some(OwnedMessage::Binary(p.buf)))
                }
            }
        }
    }
}

/// Validates a Close payload (RFC 6455 §5.5.1, §7.4).
pub(crate) fn parse_close(payload: &[u8]) -> Result<Option<CloseData>> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::ClosePayloadOneByte.into()),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode(code).is_allowed() {
                return Err(ProtocolError::InvalidCloseCode(code).into());
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Error::Utf8)?;
            Ok(Some(CloseData { status_code: code, reason: reason.to_owned() }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(&[]).unwrap(), None);
        assert!(matches!(parse_close(&[3]), Err(Error::Protocol(ProtocolError::ClosePayloadOneByte))));
        assert!(matches!(parse_close(&[0x03, 0xed]), Err(Error::Protocol(ProtocolError::InvalidCloseCode(1005)))));
        assert!(matches!(parse_close(&[0x03, 0xe8, 0xff]), Err(Error::Utf8)));
        let c = parse_close(&[0x03, 0xe8, b'o', b'k']).unwrap().unwrap();
        assert_eq!((c.status_code, c.reason.as_str()), (1000, "ok"));
    }
}

//! Frames to messages: fragments, interleaved control frames, UTF-8, close
//! payloads and limits.

use std::mem::MaybeUninit;

use crate::config::Config;
use crate::error::{Error, Limit, ProtocolError, Result};
use crate::memory::Charge;
use crate::message::{CloseCode, CloseData, OwnedMessage};
#[cfg(feature = "deflate")]
use crate::protocol::deflate::Inflater;
use crate::protocol::frame::{FrameHeader, OpCode, RSV1};
use crate::protocol::mask::{apply_mask, extend_masked};
use crate::protocol::spare;
use crate::protocol::utf8::Utf8Validator;

/// A data message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// RSV1 of the first frame: the message is compressed
    /// (permessage-deflate), so its bytes are checked as UTF-8 only once
    /// inflated.
    rsv1: bool,
    /// The payload so far, `filled` bytes of it, and after them possibly a
    /// zero-filled tail that a direct read is filling in.
    buf: Vec<u8>,
    /// `buf`'s capacity, charged to the process-wide memory budget.
    charge: Charge,
    filled: usize,
    /// Length of the last [`Assembler::space_uninit`], which
    /// [`Assembler::assume_init`] may count as written.
    uninit_space: usize,
    fragments: usize,
    utf8: Utf8Validator,
}

/// A data frame's buffer is reserved up front for its declared length, but
/// never more than this before the bytes arrive: a peer declaring a huge
/// frame and sending nothing must not make us allocate it.
const RESERVE_MAX: u64 = 256 << 10;

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
    /// `Config::memory_budget`.
    memory_budget: usize,
    max_fragments: usize,
    partial: Option<Partial>,
    control: Vec<u8>,
    target: Target,
    /// permessage-deflate's inflater, once negotiated.
    #[cfg(feature = "deflate")]
    inflater: Option<Box<Inflater>>,
}

impl Assembler {
    pub(crate) fn new(config: &Config) -> Self {
        Assembler {
            max_message: config.max_message_size as u64,
            memory_budget: config.memory_budget,
            max_fragments: config.max_fragments,
            partial: None,
            control: Vec::new(),
            target: Target::Control(OpCode::Ping),
            #[cfg(feature = "deflate")]
            inflater: None,
        }
    }

    /// Inflates the messages whose first frame has RSV1 set with
    /// `inflater` (permessage-deflate was negotiated).
    #[cfg(feature = "deflate")]
    pub(crate) fn set_inflater(&mut self, inflater: Inflater) {
        self.inflater = Some(Box::new(inflater));
    }

    /// The message of a compressed payload, inflated.
    #[cfg(feature = "deflate")]
    #[inline(never)]
    fn inflated(&mut self, text: bool, payload: &[u8]) -> Result<OwnedMessage> {
        let Some(inflater) = self.inflater.as_mut() else {
            // The decoder refuses RSV1 unless an inflater was set.
            return Err(ProtocolError::ReservedBits.into());
        };
        let bytes = inflater.inflate(payload, text)?;
        Ok(if text {
            OwnedMessage::Text(String::from_utf8(bytes).map_err(|_| Error::Utf8)?)
        } else {
            OwnedMessage::Binary(bytes)
        })
    }

    #[cfg(not(feature = "deflate"))]
    #[inline(never)]
    fn inflated(&mut self, _text: bool, _payload: &[u8]) -> Result<OwnedMessage> {
        // The decoder refuses RSV1 without the feature.
        Err(ProtocolError::ReservedBits.into())
    }

    /// Bytes held for a message in progress.
    pub(crate) fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.filled)
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
                let mut buf = Vec::new();
                let mut charge = Charge::new(self.memory_budget);
                charge.reserve(&mut buf, h.payload_len.min(RESERVE_MAX) as usize)?;
                self.partial = Some(Partial {
                    text: h.opcode == OpCode::Text,
                    rsv1: h.rsv & RSV1 != 0,
                    buf,
                    charge,
                    filled: 0,
                    uninit_space: 0,
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
                    return Err(Error::Capacity { what: Limit::Fragments, size, max });
                }
                check_size(p.filled as u64, h.payload_len, self.max_message)?;
                let want = p.buf.len() + h.payload_len.min(RESERVE_MAX) as usize;
                p.charge.reserve(&mut p.buf, want)?;
                self.target = Target::Data { fin: h.fin };
            }
        }
        Ok(())
    }

    fn check_size(&self, held: u64, more: u64) -> Result<()> {
        check_size(held, more, self.max_message)
    }

    /// Adds an unmasked chunk of the current frame's payload.
    pub(crate) fn payload(&mut self, chunk: &[u8]) -> Result<()> {
        match self.target {
            Target::Control(_) => self.control.extend_from_slice(chunk),
            Target::Data { .. } => {
                if let Some(p) = self.partial.as_mut() {
                    p.uninit_space = 0;
                    p.buf.truncate(p.filled);
                    p.charge.reserve(&mut p.buf, p.filled + chunk.len())?;
                    p.buf.extend_from_slice(chunk);
                    p.filled = p.buf.len();
                    if p.text && !p.rsv1 {
                        p.utf8.feed(&p.buf)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The message being assembled, while the current frame is one of its
    /// data frames (not a control frame between them).
    fn data_frame(&mut self) -> Option<&mut Partial> {
        match self.target {
            Target::Data { .. } => self.partial.as_mut(),
            Target::Control(_) => None,
        }
    }

    /// Space at the end of the current data frame's payload for reading up
    /// to `len` more bytes straight into it, or `None` for a control frame.
    /// The space is zero-filled once and kept until [`Assembler::filled`]
    /// accounts for it, so a short read does not cost a second fill.
    pub(crate) fn space(&mut self, len: usize) -> Option<&mut [u8]> {
        let p = self.data_frame().filter(|_| len > 0)?;
        // Whatever an uninitialised space held can no longer be claimed.
        p.uninit_space = 0;
        if p.buf.len() == p.filled {
            // Past the memory budget: no space to read into directly; the
            // bytes then come through the read buffer, and `payload` fails.
            p.charge.reserve(&mut p.buf, p.filled + len).ok()?;
            p.buf.resize(p.filled + len, 0);
        }
        let end = p.buf.len().min(p.filled + len);
        Some(&mut p.buf[p.filled..end])
    }

    /// Like [`Assembler::space`], without the zero fill: the spare capacity
    /// after the payload so far, for a read that writes into uninitialised
    /// memory. Count what it wrote with [`Assembler::assume_init`], then
    /// [`Assembler::filled`].
    pub(crate) fn space_uninit(&mut self, len: usize) -> Option<&mut [MaybeUninit<u8>]> {
        let p = self.data_frame().filter(|_| len > 0)?;
        p.buf.truncate(p.filled);
        // See `space`.
        p.charge.reserve(&mut p.buf, p.filled + len).ok()?;
        p.uninit_space = len;
        Some(&mut p.buf.spare_capacity_mut()[..len])
    }

    /// Counts the first `n` bytes of the last [`Assembler::space_uninit`]
    /// (no more than it held) as initialised, so that
    /// [`Assembler::filled`] can take them.
    ///
    /// # Safety
    ///
    /// Those bytes must have been written since that call.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn assume_init(&mut self, n: usize) {
        if let Some(p) = self.data_frame() {
            let n = n.min(std::mem::take(&mut p.uninit_space));
            if p.buf.len() == p.filled {
                // SAFETY: `space_uninit` truncated `buf` to `filled` and
                // reserved `uninit_space` bytes after it, so the new length
                // is within the capacity; the caller guarantees the `n`
                // bytes were written.
                unsafe { p.buf.set_len(p.filled + n) };
            }
        }
    }

    /// `n` bytes were read into the start of the last [`Assembler::space`];
    /// `unmask` is applied to them before they count as payload. Returns how
    /// many were taken: no more than the space held.
    pub(crate) fn filled(&mut self, n: usize, unmask: impl FnOnce(&mut [u8])) -> Result<usize> {
        let Some(p) = self.data_frame() else {
            return Ok(0);
        };
        let start = p.filled;
        let end = (start + n).min(p.buf.len());
        unmask(&mut p.buf[start..end]);
        p.filled = end;
        if p.text && !p.rsv1 {
            p.utf8.feed(&p.buf[..end])?;
        }
        Ok(end - start)
    }

    /// True when a frame with header `h` is a whole message by itself
    /// (a control frame, or an unfragmented data frame while no fragmented
    /// message is in progress), so that [`Assembler::whole`] may build it
    /// once its payload is all at hand.
    pub(crate) fn takes_whole(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => true,
            OpCode::Text | OpCode::Binary => h.fin && self.partial.is_none(),
            OpCode::Continue => false,
        }
    }

    /// The message of a frame [`Assembler::takes_whole`] accepted, from its
    /// whole payload as received (masked if `h` says so): the same checks
    /// and result as [`start_frame`](Assembler::start_frame),
    /// [`payload`](Assembler::payload) and [`end_frame`](Assembler::end_frame)
    /// in turn, without their bookkeeping. This is the path of almost every
    /// small message: a data message is unmasked as it is copied out of
    /// `payload`, one pass over its bytes instead of two; anything else is
    /// unmasked in place first.
    pub(crate) fn whole(&mut self, h: &FrameHeader, payload: &mut [u8]) -> Result<OwnedMessage> {
        let unmask = |payload: &mut [u8]| {
            if let Some(key) = h.mask {
                apply_mask(payload, key, 0);
            }
        };
        match h.opcode {
            OpCode::Text | OpCode::Binary => {
                self.check_size(0, payload.len() as u64)?;
                if h.rsv & RSV1 != 0 {
                    unmask(payload);
                    return self.inflated(h.opcode == OpCode::Text, payload);
                }
                let mut bytes = spare::buffer(payload.len());
                match h.mask {
                    Some(key) => extend_masked(&mut bytes, payload, key),
                    None => bytes.extend_from_slice(payload),
                }
                if h.opcode == OpCode::Text {
                    text_of(bytes).map(OwnedMessage::Text)
                } else {
                    Ok(OwnedMessage::Binary(bytes))
                }
            }
            // `takes_whole` refuses continuations; never reached.
            OpCode::Continue => Err(ProtocolError::UnexpectedContinuation.into()),
            control => {
                unmask(payload);
                control_message(control, payload.to_vec())
            }
        }
    }

    /// The current frame is complete; returns a message if one is.
    pub(crate) fn end_frame(&mut self) -> Result<Option<OwnedMessage>> {
        match self.target {
            Target::Control(op) => control_message(op, std::mem::take(&mut self.control)).map(Some),
            Target::Data { fin: false } => Ok(None),
            Target::Data { fin: true } => {
                let Some(mut p) = self.partial.take() else {
                    return Ok(None);
                };
                p.buf.truncate(p.filled);
                if p.rsv1 {
                    return self.inflated(p.text, &p.buf).map(Some);
                }
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

/// `bytes` as text, or [`Error::Utf8`]. ASCII is checked a word at a
/// time first: most small text messages are ASCII (JSON, chat), and for
/// them that check costs a third of `str::from_utf8`, whose byte-wise
/// start dominates a short payload (ping-pong of 32-byte text: 1,933 ->
/// 1,857 instructions per message, `benches/callgrind.sh`).
fn text_of(bytes: Vec<u8>) -> Result<String> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        #[allow(unsafe_code)]
        return Ok(unsafe { String::from_utf8_unchecked(bytes) });
    }
    String::from_utf8(bytes).map_err(|_| Error::Utf8)
}

/// Fails with [`Limit::Message`] if `held + more` bytes exceed `max`.
fn check_size(held: u64, more: u64, max: u64) -> Result<()> {
    let size = held.saturating_add(more);
    if size > max {
        return Err(Error::Capacity { what: Limit::Message, size, max });
    }
    Ok(())
}

/// The message of a whole control frame (Ping, Pong or Close).
fn control_message(op: OpCode, payload: Vec<u8>) -> Result<OwnedMessage> {
    Ok(match op {
        OpCode::Ping => OwnedMessage::Ping(payload),
        OpCode::Pong => OwnedMessage::Pong(payload),
        _ => OwnedMessage::Close(parse_close(&payload)?),
    })
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

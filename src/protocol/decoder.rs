//! Bytes to messages: the incremental frame decoder.

use std::mem::MaybeUninit;

use crate::config::Config;
use crate::error::{Error, Limit, ProtocolError, Result};
use crate::message::OwnedMessage;
use crate::protocol::assembler::Assembler;
#[cfg(feature = "deflate")]
use crate::protocol::deflate::{DeflateParams, Inflater};
#[cfg(feature = "deflate")]
use crate::protocol::frame::RSV1;
use crate::protocol::frame::{FrameHeader, OpCode};
use crate::protocol::mask::apply_mask;
use crate::protocol::Role;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Inside a payload: bytes still to come, mask key, bytes already seen.
    Payload { remaining: u64, mask: Option<[u8; 4]>, offset: usize },
    /// An error or a Close frame ended the stream; nothing more is decoded.
    Done,
}

/// Turns bytes from the peer into messages, without I/O.
///
/// Feed it whatever arrived; it consumes whole headers and any part of a
/// payload, unmasking as it goes (in place, or while copying a whole
/// message out), and returns a message each time one completes.
/// Partial headers are left unconsumed, so the caller keeps them and feeds
/// them again with more bytes. Payload bytes are delivered as they arrive:
/// invalid UTF-8 fails on the first bad byte, and a header that declares
/// more than the configured limits fails before anything is allocated.
///
/// ```
/// use syncws::{Config, OwnedMessage};
/// use syncws::protocol::{MessageDecoder, Role};
/// let mut dec = MessageDecoder::new(Role::Client, &Config::default());
/// let mut bytes = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
/// let (used, msg) = dec.feed(&mut bytes).unwrap();
/// assert_eq!((used, msg), (7, Some(OwnedMessage::Text("Hello".into()))));
/// ```
#[derive(Debug)]
pub struct MessageDecoder {
    role: Role,
    max_frame: u64,
    /// RSV bits an extension negotiated for this connection: RSV1 with
    /// permessage-deflate, else none.
    allowed_rsv: u8,
    state: State,
    assembler: Assembler,
}

impl MessageDecoder {
    /// A decoder for the given side of the connection: a server expects
    /// masked frames, a client unmasked ones.
    pub fn new(role: Role, config: &Config) -> Self {
        MessageDecoder {
            role,
            max_frame: config.max_frame_size as u64,
            allowed_rsv: 0,
            state: State::Header,
            assembler: Assembler::new(config),
        }
    }

    /// A decoder for a connection that negotiated permessage-deflate with
    /// `params`: messages whose first frame has RSV1 set are inflated
    /// (within [`Config::max_message_size`], close 1009 past it; 1007 for
    /// data that does not inflate), RSV1 elsewhere is refused (1002).
    /// Feature `deflate`.
    ///
    /// ```
    /// use syncws::{Config, OwnedMessage};
    /// use syncws::protocol::{DeflateParams, MessageDecoder, Role};
    /// let mut dec = MessageDecoder::with_deflate(Role::Client, &Config::default(), &DeflateParams::default());
    /// // RFC 7692 §7.2.3.1: "Hello", compressed.
    /// let mut bytes = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    /// assert_eq!(dec.feed(&mut bytes).unwrap(), (9, Some(OwnedMessage::Text("Hello".into()))));
    /// ```
    #[cfg(feature = "deflate")]
    pub fn with_deflate(role: Role, config: &Config, params: &DeflateParams) -> Self {
        let mut dec = MessageDecoder::new(role, config);
        dec.allowed_rsv = RSV1;
        dec.assembler.set_inflater(Inflater::new(role, params, config));
        dec
    }

    /// Consumes bytes from the front of `input` and returns how many were
    /// used, with a message if one completed. Call again with the rest
    /// (`&mut input[used..]`) until it uses nothing and returns no message.
    ///
    /// `input` is the decoder's to use: what the consumed bytes hold
    /// afterwards is unspecified (payload may have been unmasked in place,
    /// or copied out still masked). After an error, or after a Close
    /// message, the decoder is finished and returns
    /// [`Error::AlreadyClosed`].
    pub fn feed(&mut self, input: &mut [u8]) -> Result<(usize, Option<OwnedMessage>)> {
        let result = self.feed_inner(input);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn feed_inner(&mut self, input: &mut [u8]) -> Result<(usize, Option<OwnedMessage>)> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Done => return Err(Error::AlreadyClosed),
                State::Header => {
                    let Some((header, len)) = FrameHeader::parse(&input[pos..])? else {
                        return Ok((pos, None));
                    };
                    self.check(&header)?;
                    pos += len;
                    if let Some((used, msg)) = self.whole_frame(&header, &mut input[pos..])? {
                        return Ok((pos + used, Some(self.completed(msg))));
                    }
                    self.assembler.start_frame(&header)?;
                    self.state = State::Payload { remaining: header.payload_len, mask: header.mask, offset: 0 };
                }
                State::Payload { remaining, mask, offset } => {
                    let available = input.len() - pos;
                    let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    if take == 0 && remaining > 0 {
                        return Ok((pos, None));
                    }
                    let chunk = &mut input[pos..pos + take];
                    if let Some(key) = mask {
                        apply_mask(chunk, key, offset);
                    }
                    self.assembler.payload(chunk)?;
                    pos += take;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::Payload { remaining, mask, offset: offset + take };
                        return Ok((pos, None));
                    }
                    self.state = State::Header;
                    if let Some(msg) = self.assembler.end_frame()? {
                        return Ok((pos, Some(self.completed(msg))));
                    }
                }
            }
        }
    }

    /// A message is complete: after a Close, nothing more is decoded.
    fn completed(&mut self, msg: OwnedMessage) -> OwnedMessage {
        if matches!(msg, OwnedMessage::Close(_)) {
            self.state = State::Done;
        }
        msg
    }

    /// The message of a frame that is a whole message by itself when its
    /// payload is all in `rest` (what follows the header), with the payload
    /// bytes it used: unmasked and built in one step. `None` leaves the
    /// frame to the general path, which takes payloads in pieces; both give
    /// the same result.
    fn whole_frame(&mut self, h: &FrameHeader, rest: &mut [u8]) -> Result<Option<(usize, OwnedMessage)>> {
        let len = match usize::try_from(h.payload_len) {
            Ok(len) if len <= rest.len() && self.assembler.takes_whole(h) => len,
            _ => return Ok(None),
        };
        Ok(Some((len, self.assembler.whole(h, &mut rest[..len])?)))
    }

    fn check(&self, h: &FrameHeader) -> Result<()> {
        if h.rsv != 0 {
            self.check_rsv(h)?;
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame.into()),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame.into()),
            _ => {}
        }
        if h.payload_len > self.max_frame {
            return Err(Error::Capacity { what: Limit::Frame, size: h.payload_len, max: self.max_frame });
        }
        Ok(())
    }

    /// RSV bits are set: only RSV1, only once permessage-deflate was
    /// negotiated, and only on a message's first frame (RFC 7692 §6).
    #[cold]
    fn check_rsv(&self, h: &FrameHeader) -> Result<()> {
        if h.rsv & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits.into());
        }
        if h.opcode.is_control() || h.opcode == OpCode::Continue {
            return Err(ProtocolError::MisplacedRsv1.into());
        }
        Ok(())
    }

    /// Room to read the next payload bytes of the data frame in progress
    /// straight into the message being assembled, at most `max` of them and
    /// never past the frame's end; `None` between frames, inside a control
    /// frame, or once the decoder is done.
    ///
    /// This saves copying large payloads out of a read buffer: read into the
    /// space, then report how many bytes arrived with
    /// [`payload_received`](Self::payload_received). Bytes that follow the
    /// frame must not be read into it; they go to [`feed`](Self::feed).
    ///
    /// ```
    /// use syncws::{Config, OwnedMessage};
    /// use syncws::protocol::{MessageDecoder, Role};
    /// let mut dec = MessageDecoder::new(Role::Client, &Config::default());
    /// let mut header = [0x82, 0x04];
    /// assert_eq!(dec.feed(&mut header).unwrap(), (2, None));
    /// let space = dec.payload_space(1024).unwrap();
    /// assert_eq!(space.len(), 4);
    /// space[..3].copy_from_slice(b"abc"); // a short read
    /// assert_eq!(dec.payload_received(3).unwrap(), None);
    /// dec.payload_space(1024).unwrap()[0] = b'd';
    /// assert_eq!(dec.payload_received(1).unwrap(), Some(OwnedMessage::Binary(b"abcd".to_vec())));
    /// ```
    #[inline]
    pub fn payload_space(&mut self, max: usize) -> Option<&mut [u8]> {
        let len = self.space_len(max)?;
        self.assembler.space(len)
    }

    /// How much of the frame's payload a read may put in place: at most
    /// `max`, never past the frame's end; `None` outside a payload.
    #[inline]
    fn space_len(&self, max: usize) -> Option<usize> {
        let State::Payload { remaining, .. } = self.state else {
            return None;
        };
        Some(usize::try_from(remaining).map_or(max, |r| r.min(max)))
    }

    /// `n` bytes were read into the start of the space the last
    /// [`payload_space`](Self::payload_space) returned (more than it held are
    /// ignored). They are unmasked and checked like bytes given to
    /// [`feed`](Self::feed); returns the message if this completed one.
    pub fn payload_received(&mut self, n: usize) -> Result<Option<OwnedMessage>> {
        let result = self.payload_received_inner(n);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    /// Like [`payload_space`](Self::payload_space), without zero-filling
    /// the space: for a read that writes into uninitialised memory (`readv`
    /// on a socket). Report what it wrote with
    /// [`payload_received_uninit`](Self::payload_received_uninit).
    ///
    /// Inlined down to the state check: between frames (most reads of
    /// small messages) it costs no call.
    #[inline]
    pub(crate) fn payload_space_uninit(&mut self, max: usize) -> Option<&mut [MaybeUninit<u8>]> {
        let len = self.space_len(max)?;
        self.assembler.space_uninit(len)
    }

    /// [`payload_received`](Self::payload_received) for a read into the
    /// last [`payload_space_uninit`](Self::payload_space_uninit).
    ///
    /// # Safety
    ///
    /// The first `n` bytes of that space (or all of it, if `n` is larger)
    /// must have been written since it was handed out.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn payload_received_uninit(&mut self, n: usize) -> Result<Option<OwnedMessage>> {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.assembler.assume_init(n) };
        self.payload_received(n)
    }

    fn payload_received_inner(&mut self, n: usize) -> Result<Option<OwnedMessage>> {
        let State::Payload { remaining, mask, offset } = self.state else {
            return Ok(None);
        };
        let n = usize::try_from(remaining).map_or(n, |r| r.min(n));
        let n = self.assembler.filled(n, |chunk| {
            if let Some(key) = mask {
                apply_mask(chunk, key, offset);
            }
        })?;
        let remaining = remaining - n as u64;
        if remaining > 0 {
            self.state = State::Payload { remaining, mask, offset: offset + n };
            return Ok(None);
        }
        self.state = State::Header;
        self.assembler.end_frame()
    }

    /// Payload bytes still expected for the frame in progress (0 between
    /// frames). The I/O layer uses it to size reads for large frames.
    pub fn pending_payload(&self) -> u64 {
        match self.state {
            State::Payload { remaining, .. } => remaining,
            _ => 0,
        }
    }

    /// Bytes held for a fragmented message in progress.
    pub fn buffered(&self) -> usize {
        self.assembler.buffered()
    }

    /// True once a Close frame was decoded or an error occurred.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

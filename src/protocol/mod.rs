//! The WebSocket protocol core (RFC 6455 §5): bytes to frames to messages and
//! back, without sockets, threads or clocks.
//!
//! - [`FrameHeader`] parses and encodes frame headers;
//! - [`apply_mask`] masks a word at a time, [`MaskGen`] makes keys from OS
//!   randomness;
//! - [`MessageDecoder`] turns bytes into [`OwnedMessage`](crate::OwnedMessage)s,
//!   enforcing masking, reserved bits and opcodes, fragmentation rules, UTF-8
//!   (incrementally), close payloads and the size limits of
//!   [`Config`](crate::Config);
//! - [`OutFrame`] turns a message into a header plus its moved payload.
//!
//! Extensions (permessage-deflate, RFC 7692) fit here later: the decoder
//! already checks RSV bits against the set an extension negotiated, and the
//! assembler records RSV1 of a message's first frame.

mod assembler;
mod decoder;
mod encoder;
mod frame;
mod mask;
mod utf8;

pub use decoder::MessageDecoder;
pub(crate) use encoder::append_data_frame;
pub use encoder::OutFrame;
pub use frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
pub use mask::{apply_mask, MaskGen};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The accepting side: receives masked frames, sends unmasked ones.
    Server,
    /// The connecting side: sends masked frames, receives unmasked ones.
    Client,
}

#[cfg(test)]
mod tests;

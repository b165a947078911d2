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
//! - with the `deflate` feature, permessage-deflate (RFC 7692): the
//!   decoder allows RSV1 on a message's first frame once the extension was
//!   negotiated (`MessageDecoder::with_deflate`) and inflates such
//!   messages within the size limit; `DeflateParams` is what negotiation
//!   settled.

mod assembler;
mod decoder;
#[cfg(feature = "deflate")]
pub(crate) mod deflate;
mod encoder;
mod frame;
mod mask;
pub(crate) mod spare;
mod utf8;

pub use decoder::MessageDecoder;
#[cfg(feature = "deflate")]
pub use deflate::DeflateParams;
pub(crate) use encoder::append_data_frame;
pub use encoder::OutFrame;
pub use frame::{FrameHeader, OpCode, MAX_HEADER_LEN, RSV1};
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

//! The blocking I/O shell: a read side with deadlines, a shared write side,
//! the outbound queue, and the two ways to drive a connection (callbacks or
//! plain `read`/`send`). No byte parsing happens here: the protocol core does
//! it.

mod budget;
mod head;
mod lifecycle;
mod read;
pub(crate) mod runner;
mod sender;
mod socket;
mod write;

pub(crate) use head::{read_exact_into, read_head};
pub(crate) use read::ReadSide;
pub use sender::Sender;
pub use socket::{WebSocket, WsReader, WsWriter};
pub(crate) use write::WriteSide;

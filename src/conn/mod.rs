//! The blocking I/O shell: a read side with deadlines, a shared write side,
//! the outbound queue, one state machine for a connection's life
//! ([`state`]), what every connection does the same way ([`lifecycle`]), and
//! the two ways to drive a connection (callbacks in [`runner`], plain
//! `read`/`send` in [`socket`]). No byte parsing happens here: the protocol
//! core does it.

mod budget;
mod head;
mod lifecycle;
mod prefetch;
mod read;
pub(crate) mod runner;
mod sender;
mod socket;
mod state;
mod write;

pub(crate) use head::{read_exact_into, read_head};
pub(crate) use lifecycle::Connection;
#[cfg(test)]
pub(crate) use sender::mock_server;
pub(crate) use sender::EndHook;
pub use sender::Sender;
pub(crate) use socket::Opened;
pub use socket::{WebSocket, WsReader, WsWriter};
#[cfg(test)]
pub(crate) use write::mock;

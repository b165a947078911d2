//! syncws: a synchronous, thread-per-connection WebSocket library (RFC 6455).
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod handshake;
pub mod message;
pub mod protocol;

pub use config::{Config, OriginPolicy, QueuePolicy};
pub use error::{Error, ProtocolError, Result};
pub use handshake::{Headers, Request, Response};
pub use message::{CloseCode, CloseData, OwnedMessage};

//! The HTTP/1.1 upgrade, both sides, without I/O (RFC 6455 §4).

mod accept;
pub mod http;
pub mod server;

pub use accept::accept_key;
pub use http::{Headers, Request, Response};

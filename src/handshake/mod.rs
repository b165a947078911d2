//! The HTTP/1.1 upgrade, both sides, without I/O (RFC 6455 §4).

pub mod http;

pub use http::{Headers, Request, Response};

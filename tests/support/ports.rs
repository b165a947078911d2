//! Loopback ports for the real processes the tests start (proxies, Redis,
//! nginx): picking one free and telling when a process listens on it.
//!
//! Shared by the library's tests and the cli's (`#[path]`), so there is
//! one copy.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port nothing listens on now (bound, then released). Another process
/// could take it before the one started for it does: the starters retry
/// with another.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().unwrap().port()
}

/// True when a process listens on `addr` (loopback), for waiting on one
/// just started on a port picked free. A connect to that port before the
/// process binds it can pick the same port as its own source and connect
/// to itself (TCP simultaneous open on loopback), which looks like success
/// while nobody listens; the process then fails to bind and exits, and the
/// test meets "connection refused" later. Such a connection is not counted.
pub fn listening(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(s) => s.local_addr().ok() != Some(addr),
        Err(_) => false,
    }
}

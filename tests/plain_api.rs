//! The plain blocking API over real sockets on 127.0.0.1, port 0: a
//! `Listener` made from a `std::net::TcpListener`.
//!
//! Every wait is bounded by [`WAIT`]; no assertion depends on how fast
//! the machine is.

mod support;

use std::net::{SocketAddr, TcpListener};

use support::*;
use syncws::{Config, Listener};

/// A listener on 127.0.0.1, port 0.
fn local() -> (TcpListener, SocketAddr) {
    init_log();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A `Listener` from a socket bound elsewhere serves on it, even one left
/// in non-blocking mode.
#[test]
fn listener_from_std_serves_on_a_socket_bound_elsewhere() {
    for nonblocking in [false, true] {
        let (socket, addr) = local();
        socket.set_nonblocking(nonblocking).unwrap();
        let listener = Listener::from_std_with_config(socket, Config::default()).expect("from_std");
        assert_eq!(listener.local_addr(), addr);
        let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
        assert_eq!(running.local_addr(), addr);
        still_serves(addr);
        running.shutdown();
    }
    let (socket, addr) = local();
    let running =
        Listener::from_std(socket).unwrap().spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();
    still_serves(addr);
    running.shutdown();
}

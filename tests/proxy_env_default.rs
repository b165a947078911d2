//! The library reads the proxy environment only when asked: with every
//! proxy variable naming a proxy nobody runs, a plain `connect()` goes
//! direct, and `proxy_from_env()` tries that proxy.
//!
//! One test in its own binary: it sets the process's environment, which
//! every thread of a test binary shares.

mod support;

use std::net::TcpListener;

use support::*;
use syncws::{Client, Config, Error, OwnedMessage, ProxyError};

#[test]
fn the_environment_is_read_only_when_asked() {
    init_log();
    let server = echo_server(Config::default());
    let url = format!("ws://127.0.0.1:{}/", server.local_addr().port());
    let dead = format!("http://{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
    for var in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        std::env::set_var(var, &dead);
    }
    for var in ["no_proxy", "NO_PROXY"] {
        std::env::remove_var(var);
    }

    // Not asked: direct, by each way of connecting.
    let mut client = Client::connect(&url).expect("Client::connect goes direct");
    client.send(OwnedMessage::Text("direct".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("direct".into()));
    let client = Client::builder().url(&url).unwrap().connect_timeout(WAIT).connect();
    client.expect("ClientBuilder::connect goes direct");

    // Asked: the dead proxy of the environment.
    let via_env = Client::builder().url(&url).unwrap().connect_timeout(WAIT).proxy_from_env().connect();
    assert!(matches!(via_env, Err(Error::Proxy(ProxyError::Unreachable(_)))), "{via_env:?}");
}

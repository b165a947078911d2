//! `syncws pubsub`: a socket subscribes to its path's topic and publishes
//! there, types kept, the sender included; `GET /` lists the topics.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use syncws::{Client, Config, Hub, OwnedMessage};
use syncws_cli::common::HttpFlags;
use syncws_cli::pubsub;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_socket_publishes_to_its_topic_and_get_lists_the_topics() {
    support::init_log();
    let hub = Hub::new();
    let running = pubsub::spawn("127.0.0.1:0", Config::default(), None, HttpFlags::default(), hub.clone()).unwrap();
    let addr = running.local_addr();
    let url = |path: &str| format!("ws://{addr}{path}");
    let mut a = Client::connect(&url("/room%201?ignored=1")).unwrap();
    let mut b = Client::connect(&url("/room%201")).unwrap();
    let mut other = Client::connect(&url("/other")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.subscribers("room 1") < 2 || hub.subscribers("other") < 1 {
        assert!(Instant::now() < deadline, "subscribers did not arrive");
        std::thread::sleep(Duration::from_millis(2));
    }
    a.send(OwnedMessage::Text("hello".into())).unwrap();
    a.send(OwnedMessage::Binary(vec![1, 2, 3])).unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.read().unwrap(), OwnedMessage::Text("hello".into()));
        assert_eq!(c.read().unwrap(), OwnedMessage::Binary(vec![1, 2, 3]));
    }
    other.send(OwnedMessage::Text("elsewhere".into())).unwrap();
    assert_eq!(other.read().unwrap(), OwnedMessage::Text("elsewhere".into()));
    let list = get(addr, "/");
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    assert!(
        list.ends_with(
            "{\"topics\":[{\"name\":\"other\",\"subscribers\":1},{\"name\":\"room 1\",\"subscribers\":2}]}\n"
        ),
        "{list}"
    );
    // An empty topic is refused.
    let err = Client::connect(&url("/")).unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    running.shutdown();
}

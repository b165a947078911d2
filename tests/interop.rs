//! syncws against tungstenite, the reference peer, in both directions.

mod support;

use std::net::TcpListener;
use std::thread;

use support::*;
use syncws::{Client, CloseCode, CloseData, Config, OwnedMessage};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

const SIZES: [usize; 9] = [0, 1, 125, 126, 127, 65535, 65536, 65537, 10 << 20];

#[test]
fn tungstenite_client_echo_all_sizes() {
    let server = echo_server(Config::default());
    let mut ws = tung_client(server.local_addr(), "/");
    for (i, &len) in SIZES.iter().enumerate() {
        let data = bytes(len, i as u64);
        ws.send(Message::binary(data.clone())).unwrap();
        assert_eq!(tung_next(&mut ws).into_data().as_ref(), &data[..], "binary {len}");
        let text: String = data.iter().map(|b| char::from(b'a' + b % 26)).collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), text, "text {len}");
    }
    ws.close(None).unwrap();
}

#[test]
fn tungstenite_client_fragmented_message_with_ping_between() {
    let server = echo_server(Config::default());
    let mut ws = tung_client(server.local_addr(), "/");
    ws.write(Message::Frame(Frame::message(b"frag".to_vec(), OpCode::Data(Data::Text), false))).unwrap();
    ws.write(Message::Ping(b"between".to_vec().into())).unwrap();
    ws.write(Message::Frame(Frame::message("mé".as_bytes()[..2].to_vec(), OpCode::Data(Data::Continue), false)))
        .unwrap();
    ws.write(Message::Frame(Frame::message("mé".as_bytes()[2..].to_vec(), OpCode::Data(Data::Continue), true)))
        .unwrap();
    ws.flush().unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(p.as_ref(), b"between"),
        other => panic!("wanted the pong first, got {other:?}"),
    }
    assert_eq!(tung_next(&mut ws).into_text().unwrap().as_str(), "fragmé");
}

#[test]
fn close_with_code_and_reason_from_the_client() {
    let (server, events) = recording_server(Config::default(), false, None);
    let mut ws = tung_client(server.local_addr(), "/");
    wait_for(&events, "open", |e| matches!(e, Event::Open(..)));
    let frame = tungstenite::protocol::CloseFrame { code: 4001.into(), reason: "done here".into() };
    ws.close(Some(frame)).unwrap();
    match tung_next(&mut ws) {
        Message::Close(Some(c)) => assert_eq!(u16::from(c.code), 4001, "the server echoes the code"),
        other => panic!("{other:?}"),
    }
    match wait_for(&events, "close", |e| matches!(e, Event::Close(_))) {
        Event::Close(Some(c)) => assert_eq!(c, CloseData::new(CloseCode(4001), "done here")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_with_code_and_reason_from_the_server() {
    let (server, events) = recording_server(Config::default(), false, None);
    let mut ws = tung_client(server.local_addr(), "/");
    let Event::Open(sender, _) = wait_for(&events, "open", |e| matches!(e, Event::Open(..))) else { unreachable!() };
    sender.close(CloseCode(4002), "bye now").unwrap();
    match tung_next(&mut ws) {
        Message::Close(Some(c)) => {
            assert_eq!(u16::from(c.code), 4002);
            assert_eq!(c.reason.as_str(), "bye now");
        }
        other => panic!("{other:?}"),
    }
    // tungstenite queued its reply; reading on flushes it and sees the end.
    while ws.read().is_ok() {}
    match wait_for(&events, "close", |e| matches!(e, Event::Close(_))) {
        Event::Close(Some(c)) => assert_eq!(c.status_code, 4002),
        other => panic!("{other:?}"),
    }
    assert!(sender.send(OwnedMessage::Text("late".into())).is_err());
}

#[test]
fn ping_gets_pong_with_same_payload() {
    let server = echo_server(Config::default());
    let mut ws = tung_client(server.local_addr(), "/");
    ws.send(Message::Ping(b"payload".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(p.as_ref(), b"payload"),
        other => panic!("{other:?}"),
    }
}

/// A tungstenite echo server, one thread per connection.
fn tungstenite_echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let cfg = tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(64 << 20));
                if let Ok(ws) = tungstenite::accept_with_config(stream, Some(cfg)) {
                    tung_echo(ws);
                }
            });
        }
    });
    addr
}

#[test]
fn syncws_client_against_tungstenite_server() {
    init_log();
    let addr = tungstenite_echo_server();
    let mut client = Client::connect(&format!("ws://{addr}/echo")).unwrap();
    for (i, &len) in SIZES.iter().enumerate() {
        let data = bytes(len, 100 + i as u64);
        client.send(OwnedMessage::Binary(data.clone())).unwrap();
        assert_eq!(client.read().unwrap(), OwnedMessage::Binary(data), "binary {len}");
    }
    client.send(OwnedMessage::Ping(b"p".to_vec())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Pong(b"p".to_vec()));
    client.close(CloseCode(4005), "client done").unwrap();
    match client.read().unwrap() {
        OwnedMessage::Close(Some(c)) => assert_eq!(c.status_code, 4005),
        other => panic!("{other:?}"),
    }
    assert!(client.read().unwrap_err().is_closed());
}

#[test]
fn syncws_client_callbacks_against_tungstenite_server() {
    init_log();
    let addr = tungstenite_echo_server();
    let mut client = Client::connect(&format!("ws://{addr}/")).unwrap();
    let (recorder, events) = support::Recorder::new(false);
    client.set_callback_ws(Box::new(recorder));
    let runner = thread::spawn(move || client.wait_ws_operate());
    let Event::Open(sender, _) = next(&events, "open") else { panic!("open first") };
    let big = bytes(1 << 20, 7);
    sender.send(OwnedMessage::Binary(big.clone())).unwrap();
    sender.send(OwnedMessage::Text("hi".into())).unwrap();
    match next(&events, "echo 1") {
        Event::Message(OwnedMessage::Binary(b)) => assert_eq!(b, big),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next(&events, "echo 2"), Event::Message(OwnedMessage::Text(t)) if t == "hi"));
    sender.close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(wait_for(&events, "close", |e| matches!(e, Event::Close(_))), Event::Close(Some(_))));
    runner.join().unwrap().unwrap();
}

/// A one-connection tungstenite server running `script` on the connection.
fn scripted_tungstenite_server(
    script: impl FnOnce(&mut Tung) + Send + 'static,
) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        script(&mut ws);
    });
    (addr, handle)
}

#[test]
fn syncws_client_reassembles_fragments_and_answers_a_ping_between_them() {
    init_log();
    let (addr, server) = scripted_tungstenite_server(|ws| {
        ws.write(Message::Frame(Frame::message(b"par".to_vec(), OpCode::Data(Data::Binary), false))).unwrap();
        ws.write(Message::Ping(b"mid".to_vec().into())).unwrap();
        ws.write(Message::Frame(Frame::message(b"ts".to_vec(), OpCode::Data(Data::Continue), true))).unwrap();
        ws.flush().unwrap();
        match ws.read().unwrap() {
            Message::Pong(p) => assert_eq!(p.as_ref(), b"mid"),
            other => panic!("wanted the pong, got {other:?}"),
        }
        let close = tungstenite::protocol::CloseFrame { code: 4010.into(), reason: "server says bye".into() };
        ws.close(Some(close)).unwrap();
        while ws.read().is_ok() {}
    });
    let mut client = Client::connect(&format!("ws://{addr}/")).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Ping(b"mid".to_vec()));
    assert_eq!(client.read().unwrap(), OwnedMessage::Binary(b"parts".to_vec()));
    match client.read().unwrap() {
        OwnedMessage::Close(Some(c)) => assert_eq!(c, CloseData::new(CloseCode(4010), "server says bye")),
        other => panic!("{other:?}"),
    }
    assert!(client.read().unwrap_err().is_closed());
    server.join().unwrap();
}

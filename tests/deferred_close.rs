//! `WsOption::defer_close_reply`: the application answers the peer's Close
//! itself, after what it still had to send.

mod support;

use std::thread;
use std::time::Duration;

use crossbeam_channel::unbounded;
use support::*;
use syncws::{CloseCode, CloseData, Config, Listener, OwnedMessage, Result, Sender, WsHandshake, WsOption, WsTrait};
use tungstenite::protocol::frame::coding::CloseCode as TCode;
use tungstenite::Message;

/// On the peer's Close, sends two more messages and then Close 4000 from
/// another thread, in order, through its own receiver.
struct Deferring {
    tx: Option<crossbeam_channel::Sender<OwnedMessage>>,
    answer: bool,
    seen: crossbeam_channel::Sender<Option<CloseData>>,
}

impl WsTrait for Deferring {
    fn on_open(&mut self, _shake: WsHandshake) -> Result<Option<WsOption>> {
        let (tx, rx) = unbounded();
        self.tx = Some(tx);
        let mut option = WsOption::default();
        option.set_receiver(rx);
        option.defer_close_reply();
        Ok(Some(option))
    }
    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let OwnedMessage::Close(reason) = msg {
            let _ = self.seen.send(reason);
            if self.answer {
                let tx = self.tx.clone().unwrap();
                thread::spawn(move || {
                    tx.send(OwnedMessage::Text("still here".into())).unwrap();
                    tx.send(OwnedMessage::Binary(vec![1, 2, 3])).unwrap();
                    tx.send(OwnedMessage::Close(Some(CloseData::new(CloseCode(4000), "done now")))).unwrap();
                });
            }
        }
        Ok(())
    }
}

fn server(answer: bool, config: Config) -> (syncws::Running, crossbeam_channel::Receiver<Option<CloseData>>) {
    init_log();
    let (seen, rx) = unbounded();
    let listener = Listener::bind_with_config("127.0.0.1:0", config).unwrap();
    let running = listener
        .spawn(move |s| s.set_callback_ws(Box::new(Deferring { tx: None, answer, seen: seen.clone() })))
        .unwrap();
    (running, rx)
}

#[test]
fn deferred_reply_follows_the_last_messages() {
    let (running, seen) = server(true, Config::default());
    let mut ws = tung_client(running.local_addr(), "/");
    ws.close(Some(tungstenite::protocol::CloseFrame { code: TCode::Normal, reason: "bye".into() })).unwrap();
    let mut got = Vec::new();
    loop {
        match ws.read() {
            Ok(m) => got.push(m),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got[0], Message::Text("still here".into()));
    assert_eq!(got[1], Message::Binary(vec![1, 2, 3].into()));
    match &got[2] {
        Message::Close(Some(f)) => assert_eq!((u16::from(f.code), f.reason.as_str()), (4000, "done now")),
        other => panic!("expected the deferred close, got {other:?}"),
    }
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), Some(CloseData::new(CloseCode::NORMAL, "bye")));
    running.shutdown();
}

#[test]
fn unanswered_close_is_answered_after_the_close_timeout() {
    let (running, _seen) = server(false, Config::default().close_timeout(Duration::from_millis(200)));
    let mut ws = tung_client(running.local_addr(), "/");
    ws.close(Some(tungstenite::protocol::CloseFrame { code: TCode::Away, reason: "".into() })).unwrap();
    let reply = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(reply.map(|f| u16::from(f.code)), Some(1001));
    running.shutdown();
}

#[test]
fn without_the_option_close_is_answered_at_once() {
    init_log();
    let (seen, rx) = unbounded::<String>();
    struct Plain(crossbeam_channel::Sender<String>, Option<Sender>);
    impl WsTrait for Plain {
        fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
            self.1 = Some(shake.sender);
            Ok(None)
        }
        fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
            let _ = self.0.send(format!("{msg:?}"));
            Ok(())
        }
    }
    let running = Listener::bind("127.0.0.1:0")
        .unwrap()
        .spawn(move |s| s.set_callback_ws(Box::new(Plain(seen.clone(), None))))
        .unwrap();
    let mut ws = tung_client(running.local_addr(), "/");
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(rx.try_recv().is_err(), "a Close reached on_message without the option");
    running.shutdown();
}

//! The workload of `benches/callgrind.sh`: one syncws server connection and
//! one tungstenite client in one process, `N` round trips, then a clean close.
//!
//! ```text
//! callgrind-echo pingpong N    N × 32-byte text message, echoed
//! callgrind-echo echo64k N     N × 64 KiB binary message, echoed
//! callgrind-echo pipe1k N      N × a burst of 32 1 KiB binary messages,
//!                              written at once, then the 32 echoes read
//! ```
//!
//! The main thread is the client; the server runs on the first thread it
//! spawns (a `Server` on the accepted stream, default `Config`, echoing from
//! `on_message` like `examples/echo_server.rs`). Under callgrind with
//! `--separate-threads=yes` the script counts every thread but the main one,
//! so the client's work is left out and so would be that of any thread the
//! library starts for the connection.
//!
//! Uses only `syncws`, `tungstenite` and `std`: the script also builds this
//! file against other syncws checkouts.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use syncws::{OwnedMessage, Result, Sender, Server, WsHandshake, WsOption, WsTrait};
use tungstenite::Message;

struct Echo(Option<Sender>);

impl WsTrait for Echo {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.0 = Some(shake.sender);
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        match &self.0 {
            Some(sender) => sender.send(msg),
            None => Ok(()),
        }
    }
}

/// Messages per round trip of the pipe1k scenario (as bench-all's
/// pipelined 1 KiB scenario keeps in flight per connection).
const PIPE1K_BURST: usize = 32;

fn usage() -> ! {
    eprintln!("usage: callgrind-echo pingpong|echo64k|pipe1k N");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (scenario, n) = match args.as_slice() {
        [_, s, n] => (s.as_str(), n.parse::<usize>().unwrap_or_else(|_| usage())),
        _ => usage(),
    };
    let binary = |size: u32| Message::binary((0..size).map(|i| (i * 7 + i / 251) as u8).collect::<Vec<u8>>());
    // The message and how many are sent before the echoes are read.
    let (message, burst) = match scenario {
        "pingpong" => (Message::text("0123456789abcdef0123456789abcdef"), 1),
        "echo64k" => (binary(64 << 10), 1),
        "pipe1k" => (binary(1 << 10), PIPE1K_BURST),
        _ => usage(),
    };

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    let server = thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let (stream, peer) = listener.accept().expect("accept");
            drop(listener);
            let mut server = Server::new(stream, Some(peer));
            server.set_callback_ws(Box::new(Echo(None)));
            server.incoming().expect("server");
        })
        .expect("spawn the server thread");

    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).expect("handshake");
    let start = Instant::now();
    for i in 0..n {
        for _ in 0..burst {
            ws.write(message.clone()).expect("send");
        }
        ws.flush().expect("send");
        for _ in 0..burst {
            let echo = ws.read().expect("read");
            assert!(echo == message, "round trip {i}: the echo differs from what was sent");
        }
    }
    let elapsed = start.elapsed();
    ws.close(None).expect("close");
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("waiting for the close: {e}"),
        }
    }
    drop(ws);
    server.join().expect("server thread");
    // For the log: valgrind's slowdown. (The server's keepalive ping comes
    // only after 30 s without a byte from the client, which this loop never
    // leaves it.)
    eprintln!("callgrind-echo: {scenario} {n} round trips in {:.3} s", elapsed.as_secs_f64());
}

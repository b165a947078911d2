//! tungstenite 0.29 with one thread per connection (default config): read,
//! then `send` (write and flush) each echo. `/broadcast`: each connection
//! also gets a write-only `WebSocket` on a clone of its socket; a message is
//! sent to every member, the sender included, from the reading thread.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

type Members = Arc<Mutex<Vec<(u64, Arc<Mutex<WebSocket<TcpStream>>>)>>>;

#[allow(clippy::result_large_err)] // the callback type is tungstenite's
fn serve(stream: TcpStream, id: u64, members: Members) -> tungstenite::Result<()> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let mut ws = tungstenite::accept_hdr(stream, |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    })
    .map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
    })?;
    if path == syncws_bench::BROADCAST_PATH {
        let clone = ws.get_ref().try_clone()?;
        let writer = Arc::new(Mutex::new(WebSocket::from_raw_socket(clone, Role::Server, None)));
        members.lock().unwrap().push((id, writer));
        let result = (|| loop {
            let msg = ws.read()?;
            if msg.is_text() || msg.is_binary() {
                for (_, w) in members.lock().unwrap().iter() {
                    let _ = w.lock().unwrap().send(msg.clone());
                }
            }
        })();
        members.lock().unwrap().retain(|(other, _)| *other != id);
        return result;
    }
    loop {
        let msg = ws.read()?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg)?;
        }
    }
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(syncws_bench::addr_arg())?;
    syncws_bench::ready(listener.local_addr()?);
    let members: Members = Arc::default();
    let next = AtomicU64::new(0);
    for stream in listener.incoming().flatten() {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let members = Arc::clone(&members);
        std::thread::spawn(move || serve(stream, id, members));
    }
    Ok(())
}

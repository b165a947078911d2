//! tokio-tungstenite 0.29 on tokio's multi-thread runtime (the async
//! variant): one task per connection, `next().await` then `send(msg).await`.
//! `/broadcast`: each member's sink is driven by a writer task fed by an
//! unbounded channel (an mpsc per connection); a message is handed to every
//! member's channel, the sender's included, from the reading task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

type Members = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

#[allow(clippy::result_large_err)] // the callback type is tungstenite's
async fn serve(stream: TcpStream, id: u64, members: Members) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    })
    .await?;
    if path == syncws_bench::BROADCAST_PATH {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        members.lock().unwrap().insert(id, tx);
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(_) => break,
            };
            if msg.is_text() || msg.is_binary() {
                for tx in members.lock().unwrap().values() {
                    let _ = tx.send(msg.clone());
                }
            }
        }
        members.lock().unwrap().remove(&id);
        writer.abort();
        return Ok(());
    }
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(syncws_bench::addr_arg()).await?;
    syncws_bench::ready(listener.local_addr()?);
    let members: Members = Arc::default();
    let next = AtomicU64::new(0);
    loop {
        let (stream, _) = listener.accept().await?;
        let id = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, id, Arc::clone(&members)));
    }
}

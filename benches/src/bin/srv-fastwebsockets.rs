//! fastwebsockets 0.10 on tokio's multi-thread runtime: the upgrade is
//! parsed with httparse and answered by hand, then
//! `WebSocket::after_handshake` and a `FragmentCollector` (whole messages,
//! automatic pong and close). Echo only: no `/broadcast` (its split halves
//! need an extra feature and a different shape; the broadcast scenario
//! compares syncws, tungstenite and tokio-tungstenite).
//!
//! The client sends nothing before the 101 arrives, so no bytes after the
//! request head can be lost when the stream is handed over.

use fastwebsockets::{FragmentCollector, Frame, OpCode, Role, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(mut stream: TcpStream) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if let Some(up) = syncws_bench::parse_upgrade(&buf[..len])? {
            stream.write_all(&up.response).await?;
            break;
        }
        if len == buf.len() {
            return Err("request head too large".into());
        }
    }
    let mut ws = FragmentCollector::new(WebSocket::after_handshake(stream, Role::Server));
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(Frame::new(true, frame.opcode, None, frame.payload)).await?;
            }
            _ => {}
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(syncws_bench::addr_arg()).await?;
    syncws_bench::ready(listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream));
    }
}

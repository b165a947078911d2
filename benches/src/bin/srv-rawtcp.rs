//! The floor: a raw TCP echo with one thread per connection. It answers the
//! upgrade request, then sends back every byte it reads, unchanged (the
//! client's masked frames return masked; the load generator runs with
//! `--raw-echo` to accept them). No WebSocket work at all.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (_, leftover) = syncws_bench::blocking_handshake(&mut stream)?;
    stream.write_all(&leftover)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(syncws_bench::addr_arg())?;
    syncws_bench::ready(listener.local_addr()?);
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
    Ok(())
}

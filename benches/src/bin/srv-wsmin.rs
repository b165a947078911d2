//! A reference, not a peer: the least work a WebSocket echo with one thread
//! per connection can do. It parses each frame header (syncws's
//! `FrameHeader::parse`), unmasks the payload in place (syncws's
//! `apply_mask`) and writes the frame back unmasked: small frames gathered
//! into one write per read, large ones written from where they were read.
//! No allocation per message, no deadlines, no fragments, no UTF-8 check,
//! no callback, no cross-thread sending.
//!
//! Set against the raw TCP floor, it shows what the protocol itself costs;
//! set against syncws, what syncws's features cost on top of it. Not in
//! the default matrix: `bench-all --servers syncws,wsmin,rawtcp`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};

use syncws::protocol::{apply_mask, FrameHeader, MAX_HEADER_LEN};

/// Frames up to this size are copied into the reply batch.
const COPY_LIMIT: usize = 16 << 10;
/// The largest frame accepted (the benchmark sends at most 1 MiB).
const MAX_FRAME: u64 = 16 << 20;

fn serve(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let (_, mut buf) = syncws_bench::blocking_handshake(&mut s)?;
    let mut have = buf.len();
    buf.resize(have.max(64 << 10), 0);
    let mut out = Vec::with_capacity(64 << 10);
    loop {
        let mut pos = 0;
        while let Some((h, hlen)) = FrameHeader::parse(&buf[pos..have]).map_err(io::Error::other)? {
            let (Some(key), true) = (h.mask, h.payload_len <= MAX_FRAME) else {
                return Err(io::Error::other("unmasked or oversized frame"));
            };
            let len = h.payload_len as usize;
            if have - pos < hlen + len {
                if buf.len() < hlen + len {
                    buf.resize(hlen + len, 0);
                }
                break;
            }
            let payload = &mut buf[pos + hlen..pos + hlen + len];
            apply_mask(payload, key, 0);
            let mut header = [0u8; MAX_HEADER_LEN];
            let n = FrameHeader { mask: None, ..h }.encode(&mut header);
            if len <= COPY_LIMIT {
                out.extend_from_slice(&header[..n]);
                out.extend_from_slice(payload);
            } else {
                s.write_all(&out)?;
                out.clear();
                write_all_vectored(&mut s, &mut [IoSlice::new(&header[..n]), IoSlice::new(payload)])?;
            }
            pos += hlen + len;
        }
        if !out.is_empty() {
            s.write_all(&out)?;
            out.clear();
        }
        buf.copy_within(pos..have, 0);
        have -= pos;
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}

fn write_all_vectored(s: &mut TcpStream, mut parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !parts.is_empty() {
        match s.write_vectored(parts)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut parts, n),
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(syncws_bench::addr_arg())?;
    syncws_bench::ready(listener.local_addr()?);
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
    Ok(())
}

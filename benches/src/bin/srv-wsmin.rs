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
//!
//! `srv-wsmin ADDR --owned` echoes each small message through a `Vec` of
//! its own (allocated, copied into, freed once the reply is gathered), as
//! a library that hands the application owned messages must: the floor
//! for that kind of API, which is what syncws's `on_message` is.
//!
//! `/broadcast` is the same for a publish: each message a connection sends
//! there is framed once and written, by that connection's thread, to every
//! connection on the path (the sender included) with one blocking `write`
//! each, under one lock: no queue, no per-subscriber state beyond the
//! socket, nothing for a slow subscriber. Its delivery latency is what the
//! kernel's sends alone take, the floor for any server that writes the
//! subscribers one after another.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use syncws::protocol::{apply_mask, FrameHeader, MAX_HEADER_LEN};

/// Frames up to this size are copied into the reply batch.
const COPY_LIMIT: usize = 16 << 10;
/// The largest frame accepted (the benchmark sends at most 1 MiB).
const MAX_FRAME: u64 = 16 << 20;

/// The connections on `/broadcast`, by id. Shared sockets, not clones:
/// 10,000 subscribers must stay under the open-file limit.
type Members = Arc<Mutex<Vec<(u64, Arc<TcpStream>)>>>;

fn serve(mut s: TcpStream, id: u64, members: Members, owned: bool) -> io::Result<()> {
    s.set_nodelay(true)?;
    let (path, buf) = syncws_bench::blocking_handshake(&mut s)?;
    if path == syncws_bench::BROADCAST_PATH {
        let s = Arc::new(s);
        members.lock().unwrap().push((id, Arc::clone(&s)));
        let result = publish_all(&s, buf, &members);
        members.lock().unwrap().retain(|(m, _)| *m != id);
        return result;
    }
    echo(s, buf, owned)
}

/// Echoes every frame back: small ones gathered into one write per read,
/// large ones written from where they were read. `owned`: each small one
/// passes through a `Vec` of its own first.
fn echo(s: TcpStream, buf: Vec<u8>, owned: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 << 10);
    each_frame(&s, buf, 64 << 10, |frame| {
        let Some((header, payload)) = frame else {
            // The read's frames are all handled.
            return flush(&s, &mut out);
        };
        if payload.len() <= COPY_LIMIT {
            out.extend_from_slice(header);
            if owned {
                // `black_box`: the compiler would otherwise see through
                // the allocation and the copy and leave them out.
                let msg = std::hint::black_box(payload.to_vec());
                out.extend_from_slice(&msg);
            } else {
                out.extend_from_slice(payload);
            }
            return Ok(());
        }
        flush(&s, &mut out)?;
        write_all_vectored(&s, &mut [IoSlice::new(header), IoSlice::new(payload)])
    })
}

/// Publishes every frame `s` sends to every member: framed once, then one
/// `write_all` per member.
fn publish_all(s: &TcpStream, buf: Vec<u8>, members: &Members) -> io::Result<()> {
    let mut frame_bytes = Vec::with_capacity(64 << 10);
    each_frame(s, buf, 4 << 10, |frame| {
        if let Some((header, payload)) = frame {
            frame_bytes.clear();
            frame_bytes.extend_from_slice(header);
            frame_bytes.extend_from_slice(payload);
            for (_, m) in members.lock().unwrap().iter() {
                // A member that went away is dropped by its own thread.
                let _ = (&**m).write_all(&frame_bytes);
            }
        }
        Ok(())
    })
}

/// Reads `s` until it closes (`buf`: what came with the handshake, then
/// at least `size` bytes of room). Each whole frame is unmasked in place
/// and handed to `f` as its unmasked header and its payload; `f(None)`
/// follows the last whole frame of each read.
fn each_frame(
    mut s: &TcpStream,
    mut buf: Vec<u8>,
    size: usize,
    mut f: impl FnMut(Option<(&[u8], &[u8])>) -> io::Result<()>,
) -> io::Result<()> {
    let mut have = buf.len();
    buf.resize(have.max(size), 0);
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
            f(Some((&header[..n], payload)))?;
            pos += hlen + len;
        }
        f(None)?;
        buf.copy_within(pos..have, 0);
        have -= pos;
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}

/// Writes and empties `out`, if it holds anything.
fn flush(mut s: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        s.write_all(out)?;
        out.clear();
    }
    Ok(())
}

fn write_all_vectored(mut s: &TcpStream, mut parts: &mut [IoSlice<'_>]) -> io::Result<()> {
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
    let owned = match std::env::args().nth(2).as_deref() {
        None => false,
        Some("--owned") => true,
        Some(other) => return Err(io::Error::other(format!("unknown argument {other:?} (only --owned)"))),
    };
    let members = Members::default();
    for (id, stream) in listener.incoming().flatten().enumerate() {
        let members = Arc::clone(&members);
        std::thread::spawn(move || serve(stream, id as u64, members, owned));
    }
    Ok(())
}

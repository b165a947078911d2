//! Reading an HTTP head (and a bounded body) from a transport, with a
//! deadline for the whole of it: a peer sending one byte a second cannot
//! hold the thread past the deadline.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use crate::error::{Error, Phase, Result};
use crate::transport::{is_timeout, ReadHalf};

/// A parser of an HTTP head: `Ok(None)` for "need more bytes", or the parsed
/// value and the length of the head.
pub(crate) type HeadParser<'a, T> = &'a mut dyn FnMut(&[u8]) -> Result<Option<(T, usize)>>;

/// Reads into `buf` (which may already hold bytes) until `parse` accepts a
/// head, which is then removed from `buf`; what follows it stays in `buf`.
/// Returns `Ok(None)` if the peer closed the connection before sending a
/// byte of it (the end of a keep-alive connection).
pub(crate) fn read_head<T>(
    io: &mut dyn ReadHalf,
    buf: &mut Vec<u8>,
    deadline: Instant,
    parse: HeadParser<'_, T>,
) -> Result<Option<T>> {
    loop {
        if !buf.is_empty() {
            if let Some((value, len)) = parse(buf)? {
                buf.drain(..len);
                return Ok(Some(value));
            }
        }
        match read_some(io, buf, deadline)? {
            0 if buf.is_empty() => return Ok(None),
            0 => return Err(closed_mid_head()),
            _ => {}
        }
    }
}

/// Reads until `buf` holds at least `len` bytes.
pub(crate) fn read_exact_into(io: &mut dyn ReadHalf, buf: &mut Vec<u8>, len: usize, deadline: Instant) -> Result<()> {
    while buf.len() < len {
        if read_some(io, buf, deadline)? == 0 {
            return Err(closed_mid_head());
        }
    }
    Ok(())
}

fn closed_mid_head() -> Error {
    Error::Io(std::io::Error::new(
        ErrorKind::UnexpectedEof,
        "the peer closed the connection in the middle of an HTTP message",
    ))
}

/// One read of up to 4 KiB appended to `buf`, bounded by `deadline`.
///
/// Reads straight into `buf` (no chunk on the stack: a connection thread's
/// stack pages, once touched, stay resident for the thread's life). What
/// follows the head in `buf` goes on to the connection's read buffer, which
/// does not keep this chunk's size.
fn read_some(io: &mut dyn ReadHalf, buf: &mut Vec<u8>, deadline: Instant) -> Result<usize> {
    const CHUNK: usize = 4096;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout { phase: Phase::Handshake });
        }
        io.set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
        let at = buf.len();
        buf.resize(at + CHUNK, 0);
        let result = io.read(&mut buf[at..]);
        buf.truncate(at + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(Error::from(e)),
        }
    }
}

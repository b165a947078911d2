//! One spare small-message buffer per thread.
//!
//! An echo, or any handler that sends what it received, allocates each
//! small message's buffer when the frame is decoded and frees it as soon
//! as the reply is encoded into the write batch; the next message read
//! then allocates one of the same size again. Keeping the freed buffer
//! for the next message on the same thread takes the allocator off that
//! path: `malloc` and `free` were about 150 of 1,370 instructions per
//! pipelined 1 KiB message (`benches/callgrind.sh`).
//!
//! A thread keeps at most one buffer, of at most [`MAX_SPARE`] bytes: no
//! more than the allocator's own per-thread cache already holds for
//! chunks of that size. A buffer is handed out only for a message close
//! to its size, so a small message stored by the application never pins a
//! much larger allocation.

use std::cell::Cell;

use crate::message::OwnedMessage;

/// The largest buffer (capacity, in bytes) a thread keeps.
pub(crate) const MAX_SPARE: usize = 1024;

thread_local! {
    static SPARE: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

/// An empty buffer with room for `len` bytes: this thread's spare if it
/// has room and is no more than a quarter (plus 32 bytes) larger, else a
/// new one.
#[inline]
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    if len <= MAX_SPARE {
        // `try_with`: while the thread's locals are being destroyed (a
        // send from another thread-local's destructor) there is no spare.
        if let Some(mut spare) = SPARE.try_with(Cell::take).ok().flatten() {
            let cap = spare.capacity();
            if cap >= len && cap - len <= len / 4 + 32 {
                spare.clear();
                return spare;
            }
            let _ = SPARE.try_with(|s| s.set(Some(spare)));
        }
    }
    Vec::with_capacity(len)
}

/// Keeps `buf` as this thread's spare if it is small enough (replacing the
/// one kept before); frees it otherwise.
#[inline]
pub(crate) fn give(buf: Vec<u8>) {
    let cap = buf.capacity();
    if cap != 0 && cap <= MAX_SPARE {
        let _ = SPARE.try_with(|s| s.replace(Some(buf)));
    }
}

/// Keeps a data message's buffer (see [`give`]) once the message has been
/// encoded; any other message is dropped.
#[inline]
pub(crate) fn give_message(msg: OwnedMessage) {
    match msg {
        OwnedMessage::Text(s) => give(s.into_bytes()),
        OwnedMessage::Binary(b) => give(b),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_comes_back_empty_for_a_message_of_its_size() {
        std::thread::spawn(|| {
            let mut v = Vec::with_capacity(100);
            v.extend_from_slice(&[7; 100]);
            let at = v.as_ptr();
            give(v);
            let again = buffer(90);
            assert_eq!(again.as_ptr(), at, "the spare is reused");
            assert!(again.is_empty());
            assert!(again.capacity() >= 90);
            let fresh = buffer(90);
            assert_ne!(fresh.as_ptr(), at, "the spare is handed out once");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn no_spare_much_larger_than_the_message_nor_too_large_to_keep() {
        std::thread::spawn(|| {
            let big = Vec::<u8>::with_capacity(1000);
            let at = big.as_ptr();
            give(big);
            let small = buffer(10);
            assert_ne!(small.as_ptr(), at, "a 10-byte message must not pin 1000 bytes");
            assert!(small.capacity() < 1000);
            let fits = buffer(1000);
            assert_eq!(fits.as_ptr(), at, "kept for a message it fits");

            give(Vec::with_capacity(MAX_SPARE + 1));
            assert!(SPARE.take().is_none(), "over MAX_SPARE is never kept");
            give(Vec::with_capacity(MAX_SPARE));
            assert!(buffer(MAX_SPARE + 1).capacity() > MAX_SPARE);
            assert!(SPARE.take().is_some(), "a message over MAX_SPARE leaves the spare alone");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_sends_while_its_thread_locals_are_destroyed_does_not_panic() {
        // Thread-local destructors run in the reverse order of first use:
        // `LATE` (first used before `SPARE`) is dropped after `SPARE` is
        // gone, and a send from its destructor (an application's sender
        // kept in a thread-local, say) must neither panic nor keep a buffer.
        struct Late;
        impl Drop for Late {
            fn drop(&mut self) {
                give(Vec::with_capacity(16));
                assert!(buffer(16).capacity() >= 16);
            }
        }
        thread_local!(static LATE: Late = const { Late });
        std::thread::spawn(|| {
            LATE.with(|_| {});
            give(Vec::with_capacity(16));
        })
        .join()
        .unwrap();
    }
}

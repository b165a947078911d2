//! Masking (RFC 6455 §5.3), a machine word at a time, and mask keys from OS
//! randomness.

/// Bytes a step of the loops over long payloads: eight words, which the
/// compiler turns into four 16-byte XORs, with a quarter of a word loop's
/// own instructions per byte (callgrind, `benches/callgrind.sh`: a 64 KiB
/// echo 21,894 -> 17,316 instructions, a pipelined 1 KiB message 1,201 ->
/// 1,136). Shorter payloads keep the word loop alone: a branch into the
/// block loop costs a 32-byte message less than the block loop's set-up.
const BLOCK: usize = 64;

/// XORs `buf` with the 4-byte `key`, starting `offset` bytes into the key
/// stream (the position of `buf[0]` within its frame's payload).
///
/// Works a `u64` at a time, eight at a time over long buffers: a payload is
/// masked or unmasked at memory speed.
/// Masking twice with the same key and offset restores the input.
///
/// ```
/// use syncws::protocol::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let word = key_word(key);
    let mut buf = buf;
    if buf.len() >= BLOCK {
        let mut blocks = buf.chunks_exact_mut(BLOCK);
        for block in &mut blocks {
            for i in 0..BLOCK / 8 {
                let v = masked(&block[i * 8..i * 8 + 8], word);
                block[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
            }
        }
        buf = blocks.into_remainder();
    }
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = masked(chunk, word);
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Appends `src` XORed with `key` (from the key's first byte) to `out`:
/// masking or unmasking while copying, one pass over the bytes where
/// [`apply_mask`] after a copy makes two.
pub(crate) fn extend_masked(out: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let word = key_word(key);
    let len = src.len();
    out.reserve(len);
    let mut dst = &mut out.spare_capacity_mut()[..len];
    let mut src = src;
    if len >= BLOCK {
        let mut d64 = dst.chunks_exact_mut(BLOCK);
        let mut s64 = src.chunks_exact(BLOCK);
        for (dc, sc) in (&mut d64).zip(&mut s64) {
            for i in 0..BLOCK / 8 {
                let v = masked(&sc[i * 8..i * 8 + 8], word);
                #[allow(unsafe_code)]
                // SAFETY: `dc` is `BLOCK` bytes of `out`'s spare capacity
                // and `i * 8 + 8 <= BLOCK`; an unaligned write of a `u64`
                // is what `write_unaligned` is for.
                unsafe {
                    dc.as_mut_ptr().add(i * 8).cast::<u64>().write_unaligned(v)
                };
            }
        }
        // Whole blocks keep the key stream's phase for the words after.
        dst = d64.into_remainder();
        src = s64.remainder();
    }
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let v = masked(sc, word);
        #[allow(unsafe_code)]
        // SAFETY: `dc` is 8 bytes of `out`'s spare capacity; an unaligned
        // write of a `u64` is what `write_unaligned` is for.
        unsafe {
            dc.as_mut_ptr().cast::<u64>().write_unaligned(v)
        };
    }
    for (i, (dc, sc)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        dc.write(sc ^ key[i & 3]);
    }
    #[allow(unsafe_code)]
    // SAFETY: the loops above wrote every one of the `len` bytes after
    // `out.len()`, within the capacity reserved.
    unsafe {
        out.set_len(out.len() + len)
    };
}

/// The 8 bytes of `bytes` read as a native-endian word, XORed with `word`.
#[inline(always)]
fn masked(bytes: &[u8], word: u64) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_ne_bytes(b) ^ word
}

/// `[k0 k1 k2 k3 k0 k1 k2 k3]` read as one native-endian word: it masks any
/// 8 bytes that start at a multiple of 4 from the key stream's position 0.
fn key_word(key: [u8; 4]) -> u64 {
    let mut pattern = [0u8; 8];
    pattern[..4].copy_from_slice(&key);
    pattern[4..].copy_from_slice(&key);
    u64::from_ne_bytes(pattern)
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

/// Hands out unpredictable 4-byte mask keys.
///
/// Keys come from the operating system's randomness (`getrandom`), fetched
/// 1 KiB at a time so that a client does not pay a system call per frame.
pub struct MaskGen {
    pool: [u8; 1024],
    pos: usize,
}

impl MaskGen {
    /// A generator whose pool is filled on first use.
    pub fn new() -> Self {
        MaskGen { pool: [0; 1024], pos: 1024 }
    }

    /// The next key.
    pub fn next_key(&mut self) -> [u8; 4] {
        if self.pos + 4 > self.pool.len() {
            fill_random(&mut self.pool);
            self.pos = 0;
        }
        let mut key = [0u8; 4];
        key.copy_from_slice(&self.pool[self.pos..self.pos + 4]);
        self.pos += 4;
        key
    }
}

impl Default for MaskGen {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MaskGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskGen")
    }
}

/// Fills `buf` from the OS. The OS source failing is not something a program
/// can recover from sensibly; masking with predictable keys would silently
/// weaken the protocol, so this aborts the thread with a clear message.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::getrandom(buf) {
        panic!("the operating system's random source failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    /// Lengths up to three blocks and a bit: none, one, two and three
    /// whole blocks, each with every remainder of words and bytes.
    const LENS: std::ops::Range<usize> = 0..3 * BLOCK + 20;

    #[test]
    fn word_masking_matches_bytewise_for_every_alignment() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..16 {
            for len in LENS {
                for offset in 0..4 {
                    let mut a = src[start..start + len].to_vec();
                    let mut b = a.clone();
                    apply_mask(&mut a, key, offset);
                    reference(&mut b, key, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let key = [1, 2, 3, 4];
        let mut whole: Vec<u8> = (0..=255).collect();
        let mut pieces = whole.clone();
        apply_mask(&mut whole, key, 0);
        let mut at = 0;
        for size in [1, 2, 3, 5, 8, 13, 21, 34, 55, 114] {
            let end = (at + size).min(pieces.len());
            apply_mask(&mut pieces[at..end], key, at);
            at = end;
        }
        assert_eq!(at, 256);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn masking_while_copying_equals_copying_then_masking() {
        let key = [0x9a, 0x01, 0xff, 0x5c];
        let src: Vec<u8> = (0..300u32).map(|i| (i * 13 + 5) as u8).collect();
        for start in 0..16 {
            for len in LENS {
                for held in [0, 1, 7, 8] {
                    let prefix: Vec<u8> = (0..held).map(|i| 0xe0 | i as u8).collect();
                    let mut want = prefix.clone();
                    want.extend_from_slice(&src[start..start + len]);
                    reference(&mut want[held..], key, 0);
                    let mut got = prefix;
                    extend_masked(&mut got, &src[start..start + len], key);
                    assert_eq!(got, want, "start {start} len {len} held {held}");
                }
            }
        }
    }

    #[test]
    fn keys_differ() {
        let mut g = MaskGen::new();
        let keys: Vec<_> = (0..600).map(|_| g.next_key()).collect();
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert!(distinct.len() > 590);
    }
}

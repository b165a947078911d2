//! Incremental UTF-8 validation, so invalid text fails on the byte that makes
//! it invalid, not when the message ends (Autobahn 6.4.x).

use crate::error::{Error, Result};

/// Tracks how much of a growing byte buffer is known to be valid UTF-8.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    valid_up_to: usize,
}

impl Utf8Validator {
    /// Checks the bytes of `buf` not yet seen. An incomplete sequence at the
    /// end is fine until [`Utf8Validator::finish`]; a sequence that can never
    /// become valid is an error at once.
    pub(crate) fn feed(&mut self, buf: &[u8]) -> Result<()> {
        let tail = buf.get(self.valid_up_to..).unwrap_or_default();
        match std::str::from_utf8(tail) {
            Ok(_) => self.valid_up_to = buf.len(),
            Err(e) if e.error_len().is_none() => self.valid_up_to += e.valid_up_to(),
            Err(_) => return Err(Error::Utf8),
        }
        Ok(())
    }

    /// The whole buffer has arrived: it must end on a character boundary.
    pub(crate) fn finish(&mut self, buf: &[u8]) -> Result<()> {
        self.feed(buf)?;
        let complete = self.valid_up_to == buf.len();
        self.valid_up_to = 0;
        if complete {
            Ok(())
        } else {
            Err(Error::Utf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_fast_on_the_bad_byte() {
        let mut v = Utf8Validator::default();
        let mut buf = "κόσμε".as_bytes().to_vec();
        v.feed(&buf).unwrap();
        buf.push(0xce); // a lead byte: fine until the message ends
        v.feed(&buf).unwrap();
        buf.push(0xff); // can never continue a sequence
        assert!(v.feed(&buf).is_err());
    }

    #[test]
    fn split_sequences_across_feeds_are_valid() {
        let text = "a€𝄞ü".as_bytes();
        for cut in 0..=text.len() {
            let mut v = Utf8Validator::default();
            v.feed(&text[..cut]).unwrap();
            v.finish(text).unwrap();
        }
    }

    #[test]
    fn truncated_at_end_is_invalid() {
        let mut v = Utf8Validator::default();
        assert!(v.finish(&[b'a', 0xe2, 0x82]).is_err());
    }

    #[test]
    fn surrogates_and_overlong_fail_early() {
        for bad in [&[0xed, 0xa0][..], &[0xc0], &[0xf4, 0x90], &[0xf5]] {
            let mut v = Utf8Validator::default();
            assert!(v.feed(bad).is_err(), "{bad:x?}");
        }
    }
}

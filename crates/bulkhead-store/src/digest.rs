//! SHA-256 digests over an unambiguous, length-prefixed encoding.
//!
//! Every field is written as a one-byte tag followed by its value: strings
//! as an 8-byte big-endian length and the UTF-8 bytes, integers as 8 bytes
//! big-endian, absent optionals as a lone tag. No two different field lists
//! encode to the same bytes, so no two produce the same digest short of a
//! SHA-256 collision.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Incremental canonical encoder feeding SHA-256.
#[derive(Debug)]
pub(crate) struct Canonical(Sha256);

const TAG_STR: u8 = 0x01;
const TAG_INT: u8 = 0x02;
const TAG_NONE: u8 = 0x00;

impl Canonical {
    /// Start a digest; `domain` separates uses (audit records, revisions).
    pub(crate) fn new(domain: &str) -> Self {
        let mut c = Canonical(Sha256::new());
        c.str(domain);
        c
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.0.update([TAG_STR]);
        self.0.update((s.len() as u64).to_be_bytes());
        self.0.update(s.as_bytes());
        self
    }

    pub(crate) fn int(&mut self, n: i64) -> &mut Self {
        self.0.update([TAG_INT]);
        self.0.update(n.to_be_bytes());
        self
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.str(s),
            None => {
                self.0.update([TAG_NONE]);
                self
            }
        }
    }

    pub(crate) fn opt_int(&mut self, n: Option<i64>) -> &mut Self {
        match n {
            Some(n) => self.int(n),
            None => {
                self.0.update([TAG_NONE]);
                self
            }
        }
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(f: impl FnOnce(&mut Canonical)) -> String {
        let mut c = Canonical::new("test");
        f(&mut c);
        c.finish()
    }

    #[test]
    fn field_boundaries_matter() {
        assert_ne!(
            d(|c| {
                c.str("ab").str("c");
            }),
            d(|c| {
                c.str("a").str("bc");
            })
        );
        assert_ne!(
            d(|c| {
                c.opt_str(None);
            }),
            d(|c| {
                c.str("");
            })
        );
        assert_ne!(
            d(|c| {
                c.int(1);
            }),
            d(|c| {
                c.str("1");
            })
        );
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! Comparing a secret a caller presents with the one configured, in time that does not depend on
//! where they differ or on how long either is: the engine's admin token is checked this way.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Whether `presented` equals `expected`. Both are hashed first (SHA-256) and the digests are
/// compared in constant time, so neither the position of the first differing byte nor the
/// length of the secret shows in the time the answer takes.
pub fn secrets_equal(presented: &[u8], expected: &[u8]) -> bool {
    let presented = Sha256::digest(presented);
    let expected = Sha256::digest(expected);
    presented.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(secrets_equal(b"s3cret", b"s3cret"));
        assert!(!secrets_equal(b"s3cret", b"s3creT"));
        assert!(!secrets_equal(b"s3cret", b"s3cret "));
        assert!(!secrets_equal(b"", b"s3cret"));
    }
}

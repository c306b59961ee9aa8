//! The primitive wire types of MQTT (spec section 1.5): big-endian integers, variable byte
//! integers, length-prefixed UTF-8 strings and binary data — a checked reader over a frame and
//! the matching writers.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};

/// The largest value a variable byte integer holds (four bytes of seven bits).
pub const VARINT_MAX: u32 = 268_435_455;
/// The longest string or binary field: its length prefix is two bytes.
pub const FIELD_BYTES_MAX: usize = u16::MAX as usize;

/// A checked cursor over one packet's bytes. Every read that runs past the end is a malformed
/// packet, never a panic; strings and binary fields are zero-copy slices of the frame. Fixed-width
/// reads touch only the position, not the frame's reference count.
#[derive(Debug)]
pub(crate) struct Reader {
    bytes: Bytes,
    position: usize,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader { bytes, position: 0 }
    }

    fn unread(&self) -> &[u8] {
        self.bytes.get(self.position..).unwrap_or_default()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Takes the next `len` bytes as their own slice.
    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Malformed(what));
        }
        let start = self.position;
        self.position += len;
        Ok(self.bytes.slice(start..self.position))
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.position.min(self.bytes.len());
        self.position = self.bytes.len();
        self.bytes.slice(start..)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.unread().first_chunk::<N>().ok_or(DecodeError::Malformed(what))?;
        let bytes = *bytes;
        self.position += N;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match decode_varint(self.unread())? {
            Some((value, len)) => {
                self.position += len;
                Ok(value)
            }
            None => Err(DecodeError::Malformed(what)),
        }
    }

    /// Binary data: a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 encoded string: well-formed UTF-8 without U+0000 (spec 1.5.4).
    pub(crate) fn string(&mut self, what: &'static str) -> Result<ByteString, DecodeError> {
        let raw = self.binary(what)?;
        utf8(raw, what)
    }
}

/// Validates a string field: well-formed UTF-8 (which excludes surrogates) and no U+0000.
pub(crate) fn utf8(raw: Bytes, what: &'static str) -> Result<ByteString, DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::Malformed(what));
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::Malformed(what))
}

/// Decodes a variable byte integer at the start of `bytes`: `Ok(None)` if more bytes are needed,
/// otherwise the value and how many bytes it used. Rejects a fifth byte and non-minimal encodings
/// ([MQTT-1.5.5-1]).
pub fn decode_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, &byte) in bytes.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            let len = index + 1;
            if len > 1 && byte == 0 {
                return Err(DecodeError::Malformed("variable byte integer not minimally encoded"));
            }
            return Ok(Some((value, len)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::Malformed("variable byte integer longer than 4 bytes"));
    }
    Ok(None)
}

/// How many bytes `value` takes as a variable byte integer.
pub fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut value: u32) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Checks that a string or binary field fits its two-byte length prefix.
pub(crate) fn check_field(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > FIELD_BYTES_MAX {
        return Err(EncodeError::FieldTooLong { field, len });
    }
    Ok(())
}

/// Writes a length-prefixed field; the caller has checked its length with [`check_field`].
pub(crate) fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}

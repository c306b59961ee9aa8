//! The header every payload starts with: which run, which publisher, which message, and when it
//! was meant to be sent. Receivers check streams and measure latency from it alone, so nothing
//! about a message has to be remembered between publisher and subscriber.
//!
//! Layout (little-endian): run id `u32`, publisher `u32`, sequence `u64`, intended send time
//! `u64` (CLOCK_MONOTONIC ns, see [`crate::clock`]); the rest of the payload is zero filler.

/// Bytes of the header; `--payload` may not be smaller.
pub const PAYLOAD_HEADER_BYTES: usize = 24;

/// What a payload says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    pub run_id: u32,
    pub publisher: u32,
    /// 0, 1, 2... per publisher, in publishing order.
    pub sequence: u64,
    /// When the message was meant to be sent: the scheduled time in an open-loop run, the
    /// moment it was encoded in a closed-loop run.
    pub intended_ns: u64,
}

impl PayloadHeader {
    /// Writes the header followed by zeros up to `payload_bytes` (at least the header).
    pub fn write(&self, payload_bytes: usize, out: &mut bytes::BytesMut) {
        out.extend_from_slice(&self.run_id.to_le_bytes());
        out.extend_from_slice(&self.publisher.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.intended_ns.to_le_bytes());
        out.resize(out.len() + payload_bytes.saturating_sub(PAYLOAD_HEADER_BYTES), 0);
    }

    /// Reads the header; `None` when the payload is too short to hold one (a message this load
    /// generator did not write).
    pub fn read(payload: &[u8]) -> Option<PayloadHeader> {
        let (run_id, rest) = payload.split_first_chunk::<4>()?;
        let (publisher, rest) = rest.split_first_chunk::<4>()?;
        let (sequence, rest) = rest.split_first_chunk::<8>()?;
        let (intended_ns, _) = rest.split_first_chunk::<8>()?;
        Some(PayloadHeader {
            run_id: u32::from_le_bytes(*run_id),
            publisher: u32::from_le_bytes(*publisher),
            sequence: u64::from_le_bytes(*sequence),
            intended_ns: u64::from_le_bytes(*intended_ns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_pads() {
        let header =
            PayloadHeader { run_id: 7, publisher: 3, sequence: u64::MAX - 1, intended_ns: 42 };
        for size in [PAYLOAD_HEADER_BYTES, 100] {
            let mut out = bytes::BytesMut::new();
            header.write(size, &mut out);
            assert_eq!(out.len(), size);
            assert_eq!(PayloadHeader::read(&out), Some(header));
        }
        assert_eq!(PayloadHeader::read(&[0; PAYLOAD_HEADER_BYTES - 1]), None);
    }
}

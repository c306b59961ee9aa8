//! The MQTT 3.1, 3.1.1 and 5.0 codec: sans-IO, incremental and zero-copy.
//!
//! - [`Decoder`] frames packets out of a connection's read buffer ([`Decoded::NeedMore`] until a
//!   whole packet is there, and [`DecodeError::PacketTooLarge`] from the fixed header alone), then
//!   parses them with the spec's validity rules. Every error carries the v5 reason code a
//!   CONNACK or DISCONNECT must send ([`DecodeError::reason_code`]).
//! - [`Packet::encode`] appends a packet to a caller's reusable `BytesMut`.
//!
//! **Invariant:** the codec never panics on client bytes. The lints below forbid the panicking
//! shortcuts in this crate, and the fuzz targets under `codec/fuzz` check it on arbitrary input.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable,
    clippy::todo
)]

mod decode;
mod encode;
mod error;
pub mod fuzzing;
mod packet;
mod properties;
mod reason;
pub mod topic;
mod wire;

pub use decode::{
    decode_body, decode_packet, parse_fixed_header, Decoded, Decoder, FixedHeader, PACKET_BYTES_MAX,
};
pub use encode::PlainPublish;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, ProtocolVersion,
    Publish, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilterEntry,
    UnsubAck, Unsubscribe, Will,
};
pub use properties::{id as property_id, Properties, PropertyContext};
pub use reason::{ReasonCode, ReasonKind};
pub use wire::{decode_varint, varint_len, FIELD_BYTES_MAX, VARINT_MAX};

/// Re-exported so users of the codec name the same string and byte types.
pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;

//! Decode and encode errors, and the reason code each decode error puts on the wire.

use super::reason::ReasonCode;

/// Why a packet could not be decoded. Every variant maps to the reason code that a v5 CONNACK or
/// DISCONNECT must carry ([`DecodeError::reason_code`]); a 3.1.1 connection simply closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes cannot be parsed as the packet they claim to be (reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The bytes parse but break a rule of the specification (reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The fixed header announces a packet larger than the receiver accepts (reason 0x95).
    /// Raised from the fixed header alone, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: u64, max: u32 },
    /// CONNECT asks for a protocol name or level this codec does not speak (reason 0x84).
    #[error("unsupported protocol: name {name:?}, level {level}")]
    UnsupportedProtocol { name: &'static str, level: u8 },
    /// A topic name contains a wildcard or is otherwise not a valid topic name (reason 0x90).
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// A topic filter has a misplaced `+` or `#`, or a malformed `$share/` prefix (reason 0x8F).
    #[error("invalid topic filter")]
    TopicFilterInvalid,
    /// Topic Alias 0, or an empty topic name without a Topic Alias (reason 0x94).
    #[error("invalid topic alias")]
    TopicAliasInvalid,
}

impl DecodeError {
    /// The v5 reason code a CONNACK (during connect) or DISCONNECT (afterwards) carries for this
    /// error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::TopicFilterInvalid => ReasonCode::TOPIC_FILTER_INVALID,
            DecodeError::TopicAliasInvalid => ReasonCode::TOPIC_ALIAS_INVALID,
        }
    }
}

/// Why a packet could not be encoded. These are caller errors (a value too long for its wire
/// field), never caused by client bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field longer than 65,535 bytes.
    #[error("{field} is {len} bytes; MQTT fields hold at most 65535")]
    FieldTooLong { field: &'static str, len: usize },
    /// The whole packet would need a remaining length above 268,435,455.
    #[error("packet needs a remaining length of {0} bytes; MQTT allows at most 268435455")]
    PacketTooLarge(usize),
    /// A value that the target protocol version cannot carry (for example an AUTH packet on 3.1.1,
    /// or a QoS > 0 PUBLISH without a packet identifier).
    #[error("cannot encode: {0}")]
    Invalid(&'static str),
}

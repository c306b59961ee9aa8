//! Incremental decoding: frame a packet from the read buffer by its fixed header, then parse its
//! body with every validity rule of the spec. Nothing is copied: the frame is split off the
//! caller's `BytesMut` and the packet's strings and payload are slices of it.

use bytes::{Bytes, BytesMut};

use super::error::DecodeError;
use super::packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilterEntry, UnsubAck,
    Unsubscribe, Will,
};
use super::properties::{Properties, PropertyContext};
use super::reason::{ReasonCode, ReasonKind};
use super::topic::{is_valid_topic_filter, is_valid_topic_name, split_shared};
use super::wire::{decode_varint, Reader, VARINT_MAX};

/// The largest packet MQTT can express: a 5-byte fixed header plus the largest remaining length.
pub const PACKET_BYTES_MAX: u32 = 1 + 4 + VARINT_MAX;

/// What one decode step produced.
// A transient return value, moved once: boxing the packet would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole packet, split off the front of the buffer.
    Packet(Packet),
    /// The buffer holds only part of a packet; nothing was consumed. At least this many more
    /// bytes are needed before the next attempt can succeed.
    NeedMore(usize),
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub first_byte: u8,
    /// The remaining length: the size of the variable header and payload.
    pub remaining_len: u32,
    /// The size of the fixed header itself (2 to 5 bytes).
    pub header_len: usize,
}

impl FixedHeader {
    /// The size of the whole packet on the wire.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len as usize
    }
}

/// Parses the fixed header at the start of `buf`: `Ok(None)` when more bytes are needed. A packet
/// larger than `max_packet_size` (counting the fixed header, as MQTT 5 does) is refused here,
/// before its body is buffered.
pub fn parse_fixed_header(
    buf: &[u8],
    max_packet_size: u32,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first_byte, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((remaining_len, len_bytes)) = decode_varint(rest)? else {
        return Ok(None);
    };
    let header = FixedHeader { first_byte, remaining_len, header_len: 1 + len_bytes };
    let size = header.packet_len() as u64;
    if size > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
    }
    Ok(Some(header))
}

/// Decodes one packet of a connection whose protocol version is known.
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Decoded, DecodeError> {
    let (header, body) = match split_frame(buf, max_packet_size)? {
        Ok(frame) => frame,
        Err(need_more) => return Ok(need_more),
    };
    decode_body(header.first_byte, body, version).map(Decoded::Packet)
}

/// Splits the next whole frame off `buf`, or says how many bytes are missing.
fn split_frame(
    buf: &mut BytesMut,
    max_packet_size: u32,
) -> Result<Result<(FixedHeader, Bytes), Decoded>, DecodeError> {
    let Some(header) = parse_fixed_header(buf, max_packet_size)? else {
        return Ok(Err(Decoded::NeedMore(1)));
    };
    let packet_len = header.packet_len();
    if buf.len() < packet_len {
        return Ok(Err(Decoded::NeedMore(packet_len - buf.len())));
    }
    let mut frame = buf.split_to(packet_len).freeze();
    let body = frame.split_off(header.header_len);
    Ok(Ok((header, body)))
}

/// A connection's decoder: the protocol version (learned from CONNECT on the server side) and
/// the maximum packet size this side accepts.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Decoder {
    /// A server-side decoder: the first packet must be CONNECT, which fixes the version.
    pub fn server(max_packet_size: u32) -> Decoder {
        Decoder { version: None, max_packet_size }
    }

    /// A client-side decoder for a connection that sent CONNECT with `version`.
    pub fn client(version: ProtocolVersion, max_packet_size: u32) -> Decoder {
        Decoder { version: Some(version), max_packet_size }
    }

    /// The connection's version once known. After a CONNECT that failed to decode, this is the
    /// version it asked for (if its header got that far), so the CONNACK can be written in it.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    pub fn set_max_packet_size(&mut self, max_packet_size: u32) {
        self.max_packet_size = max_packet_size;
    }

    /// Decodes the next packet from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        // Refuse a first packet that is not CONNECT from its first byte, before buffering it.
        if self.version.is_none() && buf.first().is_some_and(|&byte| byte >> 4 != 1) {
            return Err(DecodeError::Protocol("first packet is not CONNECT"));
        }
        let (header, body) = match split_frame(buf, self.max_packet_size)? {
            Ok(frame) => frame,
            Err(need_more) => return Ok(need_more),
        };
        match self.version {
            Some(version) => decode_body(header.first_byte, body, version).map(Decoded::Packet),
            None => {
                self.version = peek_connect_version(&body);
                let connect = decode_connect(header.first_byte & 0x0F, body)?;
                self.version = Some(connect.protocol);
                Ok(Decoded::Packet(Packet::Connect(Box::new(connect))))
            }
        }
    }
}

/// The protocol version a CONNECT body asks for, if its name and level are readable and known.
fn peek_connect_version(body: &Bytes) -> Option<ProtocolVersion> {
    let mut reader = Reader::new(body.clone());
    let name = reader.binary("protocol name").ok()?;
    let level = reader.u8("protocol level").ok()?;
    protocol_version(&name, level).ok()
}

fn protocol_version(name: &[u8], level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        (b"MQTT", _) => Err(DecodeError::UnsupportedProtocol { name: "MQTT", level }),
        (b"MQIsdp", _) => Err(DecodeError::UnsupportedProtocol { name: "MQIsdp", level }),
        _ => Err(DecodeError::UnsupportedProtocol { name: "unknown", level }),
    }
}

/// Decodes a packet body given its first byte. Exposed for the fuzz targets and tests; readers of
/// a stream use [`Decoder`] or [`decode_packet`].
pub fn decode_body(
    first_byte: u8,
    body: Bytes,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let flags = first_byte & 0x0F;
    let expect_flags = |required: u8| {
        if flags == required {
            Ok(())
        } else {
            Err(DecodeError::Malformed("reserved fixed header flags"))
        }
    };
    let packet = match first_byte >> 4 {
        1 => Packet::Connect(Box::new(decode_connect(flags, body)?)),
        2 => {
            expect_flags(0)?;
            Packet::ConnAck(decode_connack(body, version)?)
        }
        3 => Packet::Publish(decode_publish(flags, body, version)?),
        4 => {
            expect_flags(0)?;
            Packet::PubAck(decode_ack(body, version, ReasonKind::PubAckOrRec)?)
        }
        5 => {
            expect_flags(0)?;
            Packet::PubRec(decode_ack(body, version, ReasonKind::PubAckOrRec)?)
        }
        6 => {
            expect_flags(0b0010)?;
            Packet::PubRel(decode_ack(body, version, ReasonKind::PubRelOrComp)?)
        }
        7 => {
            expect_flags(0)?;
            Packet::PubComp(decode_ack(body, version, ReasonKind::PubRelOrComp)?)
        }
        8 => {
            expect_flags(0b0010)?;
            Packet::Subscribe(decode_subscribe(body, version)?)
        }
        9 => {
            expect_flags(0)?;
            Packet::SubAck(decode_suback(body, version)?)
        }
        10 => {
            expect_flags(0b0010)?;
            Packet::Unsubscribe(decode_unsubscribe(body, version)?)
        }
        11 => {
            expect_flags(0)?;
            Packet::UnsubAck(decode_unsuback(body, version)?)
        }
        12 => {
            expect_flags(0)?;
            expect_empty(&body)?;
            Packet::PingReq
        }
        13 => {
            expect_flags(0)?;
            expect_empty(&body)?;
            Packet::PingResp
        }
        14 => {
            expect_flags(0)?;
            Packet::Disconnect(decode_disconnect(body, version)?)
        }
        15 if version.is_v5() => {
            expect_flags(0)?;
            Packet::Auth(decode_auth(body)?)
        }
        15 => return Err(DecodeError::Malformed("AUTH is reserved before MQTT 5")),
        _ => return Err(DecodeError::Malformed("reserved packet type 0")),
    };
    Ok(packet)
}

fn expect_empty(body: &[u8]) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed("unexpected bytes after the packet"))
    }
}

fn expect_end(reader: &Reader) -> Result<(), DecodeError> {
    if reader.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed("unexpected bytes after the packet"))
    }
}

fn packet_id(reader: &mut Reader) -> Result<PacketId, DecodeError> {
    let value = reader.u16("packet identifier")?;
    PacketId::new(value).ok_or(DecodeError::Malformed("packet identifier 0"))
}

fn properties(
    reader: &mut Reader,
    version: ProtocolVersion,
    context: PropertyContext,
) -> Result<Properties, DecodeError> {
    if version.is_v5() {
        Properties::decode(reader, context)
    } else {
        Ok(Properties::default())
    }
}

fn reason(reader: &mut Reader, kind: ReasonKind) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode(reader.u8("reason code")?);
    if code.allowed_in(kind) {
        Ok(code)
    } else {
        Err(DecodeError::Protocol("reason code not allowed in this packet"))
    }
}

fn decode_connect(flags: u8, body: Bytes) -> Result<Connect, DecodeError> {
    if flags != 0 {
        return Err(DecodeError::Malformed("reserved fixed header flags"));
    }
    let mut reader = Reader::new(body);
    let name = reader.binary("protocol name")?;
    let level = reader.u8("protocol level")?;
    let protocol = protocol_version(&name, level)?;
    let connect_flags = reader.u8("connect flags")?;
    if connect_flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved connect flag set"));
    }
    let clean_start = connect_flags & 0x02 != 0;
    let will_flag = connect_flags & 0x04 != 0;
    let will_qos =
        QoS::from_bits((connect_flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let will_retain = connect_flags & 0x20 != 0;
    let password_flag = connect_flags & 0x40 != 0;
    let username_flag = connect_flags & 0x80 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain set without a will"));
    }
    if !protocol.is_v5() && password_flag && !username_flag {
        return Err(DecodeError::Malformed("password without user name"));
    }
    let keep_alive_secs = reader.u16("keep alive")?;
    let properties = properties(&mut reader, protocol, PropertyContext::Connect)?;
    let client_id = reader.string("client identifier")?;
    let will = if will_flag {
        let will_properties = properties_will(&mut reader, protocol)?;
        let topic = reader.string("will topic")?;
        if !is_valid_topic_name(&topic) {
            return Err(DecodeError::TopicNameInvalid);
        }
        let payload = reader.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties: will_properties,
        })
    } else {
        None
    };
    let username = if username_flag { Some(reader.string("user name")?) } else { None };
    let password = if password_flag { Some(reader.binary("password")?) } else { None };
    expect_end(&reader)?;
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive_secs,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn properties_will(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<Properties, DecodeError> {
    properties(reader, version, PropertyContext::Will)
}

fn decode_connack(body: Bytes, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let mut reader = Reader::new(body);
    let ack_flags = reader.u8("connect acknowledge flags")?;
    if ack_flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved connect acknowledge flags"));
    }
    let session_present = ack_flags & 0x01 != 0;
    let code = reader.u8("connect reason code")?;
    let reason = if version.is_v5() {
        let reason = ReasonCode(code);
        if !reason.allowed_in(ReasonKind::ConnAck) {
            return Err(DecodeError::Protocol("reason code not allowed in CONNACK"));
        }
        reason
    } else {
        ReasonCode::from_v3_connack(code)
            .ok_or(DecodeError::Malformed("reserved CONNACK return code"))?
    };
    if session_present && reason.is_error() {
        return Err(DecodeError::Protocol("session present on a refused connection"));
    }
    let properties = properties(&mut reader, version, PropertyContext::ConnAck)?;
    expect_end(&reader)?;
    Ok(ConnAck { session_present, reason, properties })
}

fn decode_publish(
    flags: u8,
    body: Bytes,
    version: ProtocolVersion,
) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
    }
    let mut reader = Reader::new(body);
    let topic = reader.string("topic name")?;
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(packet_id(&mut reader)?) };
    let properties = properties(&mut reader, version, PropertyContext::Publish)?;
    if topic.is_empty() {
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol("empty topic name without a topic alias"));
        }
    } else if !is_valid_topic_name(&topic) {
        return Err(DecodeError::TopicNameInvalid);
    }
    let payload = reader.rest();
    Ok(Publish { dup, qos, retain, topic, packet_id, properties, payload })
}

fn decode_ack(body: Bytes, version: ProtocolVersion, kind: ReasonKind) -> Result<Ack, DecodeError> {
    let mut reader = Reader::new(body);
    let packet_id = packet_id(&mut reader)?;
    if !version.is_v5() || reader.is_empty() {
        expect_end(&reader)?;
        return Ok(Ack::success(packet_id));
    }
    let reason = reason(&mut reader, kind)?;
    let properties = if reader.is_empty() {
        Properties::default()
    } else {
        Properties::decode(&mut reader, PropertyContext::Ack)?
    };
    expect_end(&reader)?;
    Ok(Ack { packet_id, reason, properties })
}

fn decode_subscribe(body: Bytes, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let mut reader = Reader::new(body);
    let packet_id = packet_id(&mut reader)?;
    let properties = properties(&mut reader, version, PropertyContext::Subscribe)?;
    let mut filters = Vec::new();
    while !reader.is_empty() {
        let filter = reader.string("topic filter")?;
        if !is_valid_topic_filter(&filter) {
            return Err(DecodeError::TopicFilterInvalid);
        }
        let options = subscription_options(reader.u8("subscription options")?, version)?;
        if options.no_local && split_shared(&filter).is_some() {
            return Err(DecodeError::Protocol("No Local on a shared subscription"));
        }
        filters.push(TopicFilterEntry { filter, options });
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without a topic filter"));
    }
    Ok(Subscribe { packet_id, properties, filters })
}

fn subscription_options(
    byte: u8,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
    if byte & reserved != 0 {
        return Err(DecodeError::Malformed("reserved subscription option bits"));
    }
    let qos = QoS::from_bits(byte & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Protocol("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn decode_suback(body: Bytes, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let mut reader = Reader::new(body);
    let packet_id = packet_id(&mut reader)?;
    let properties = properties(&mut reader, version, PropertyContext::SubAck)?;
    let mut reasons = Vec::with_capacity(reader.remaining());
    while !reader.is_empty() {
        let code = if version.is_v5() {
            reason(&mut reader, ReasonKind::SubAck)?
        } else {
            match reader.u8("return code")? {
                code @ (0x00 | 0x01 | 0x02 | 0x80) => ReasonCode(code),
                _ => return Err(DecodeError::Malformed("reserved SUBACK return code")),
            }
        };
        reasons.push(code);
    }
    if reasons.is_empty() {
        return Err(DecodeError::Protocol("SUBACK without a return code"));
    }
    Ok(SubAck { packet_id, properties, reasons })
}

fn decode_unsubscribe(body: Bytes, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let mut reader = Reader::new(body);
    let packet_id = packet_id(&mut reader)?;
    let properties = properties(&mut reader, version, PropertyContext::Unsubscribe)?;
    let mut filters = Vec::new();
    while !reader.is_empty() {
        let filter = reader.string("topic filter")?;
        if !is_valid_topic_filter(&filter) {
            return Err(DecodeError::TopicFilterInvalid);
        }
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without a topic filter"));
    }
    Ok(Unsubscribe { packet_id, properties, filters })
}

fn decode_unsuback(body: Bytes, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let mut reader = Reader::new(body);
    let packet_id = packet_id(&mut reader)?;
    if !version.is_v5() {
        expect_end(&reader)?;
        return Ok(UnsubAck { packet_id, properties: Properties::default(), reasons: Vec::new() });
    }
    let properties = Properties::decode(&mut reader, PropertyContext::UnsubAck)?;
    let mut reasons = Vec::with_capacity(reader.remaining());
    while !reader.is_empty() {
        reasons.push(reason(&mut reader, ReasonKind::UnsubAck)?);
    }
    if reasons.is_empty() {
        return Err(DecodeError::Protocol("UNSUBACK without a reason code"));
    }
    Ok(UnsubAck { packet_id, properties, reasons })
}

/// DISCONNECT and AUTH: an optional reason code, then optional properties.
fn reason_and_properties(
    body: Bytes,
    kind: ReasonKind,
    context: PropertyContext,
) -> Result<(ReasonCode, Properties), DecodeError> {
    let mut reader = Reader::new(body);
    if reader.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = reason(&mut reader, kind)?;
    let properties = if reader.is_empty() {
        Properties::default()
    } else {
        Properties::decode(&mut reader, context)?
    };
    expect_end(&reader)?;
    Ok((code, properties))
}

fn decode_disconnect(body: Bytes, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    if !version.is_v5() {
        expect_empty(&body)?;
        return Ok(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
    }
    let (reason, properties) =
        reason_and_properties(body, ReasonKind::Disconnect, PropertyContext::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

fn decode_auth(body: Bytes) -> Result<Auth, DecodeError> {
    let (reason, properties) =
        reason_and_properties(body, ReasonKind::Auth, PropertyContext::Auth)?;
    Ok(Auth { reason, properties })
}

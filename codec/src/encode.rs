//! Encoding into a caller's reusable buffer. Each packet is measured first (which also checks
//! every field fits its wire type), then written, so a failed encode leaves the buffer untouched.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::packet::{Ack, Connect, Packet, ProtocolVersion, QoS, SubscriptionOptions};
use super::properties::Properties;
use super::reason::ReasonCode;
use super::wire::{check_field, put_field, put_varint, varint_len, VARINT_MAX};

/// The measured sizes of one packet: what [`Packet::encode`] needs to write it without
/// measuring again.
struct Plan {
    remaining_len: usize,
    /// Body length of the packet's property block (v5).
    properties_len: usize,
    /// Body length of the will property block (CONNECT with a will, v5).
    will_properties_len: usize,
}

fn field_len(field: &'static str, bytes: &[u8]) -> Result<usize, EncodeError> {
    check_field(field, bytes.len())?;
    Ok(2 + bytes.len())
}

fn block_len(
    version: ProtocolVersion,
    properties: &Properties,
) -> Result<(usize, usize), EncodeError> {
    if !version.is_v5() {
        return Ok((0, 0));
    }
    let body = properties.body_len()?;
    Ok((varint_len(body as u32) + body, body))
}

impl Packet {
    /// The number of bytes [`Packet::encode`] writes for this packet in `version`: what a sender
    /// compares with the peer's Maximum Packet Size.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let plan = self.plan(version)?;
        Ok(1 + varint_len(plan.remaining_len as u32) + plan.remaining_len)
    }

    /// Appends this packet, encoded for `version`, to `buf`; returns the bytes written. Properties
    /// are written only for MQTT 5 (a 3.1.1 peer gets the packet without them).
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let plan = self.plan(version)?;
        let start = buf.len();
        buf.reserve(5 + plan.remaining_len);
        buf.put_u8(self.first_byte());
        put_varint(buf, plan.remaining_len as u32);
        self.write_body(version, &plan, buf);
        Ok(buf.len() - start)
    }

    fn first_byte(&self) -> u8 {
        match self {
            Packet::Connect(_) => 0x10,
            Packet::ConnAck(_) => 0x20,
            Packet::Publish(publish) => {
                0x30 | (u8::from(publish.dup) << 3)
                    | ((publish.qos as u8) << 1)
                    | u8::from(publish.retain)
            }
            Packet::PubAck(_) => 0x40,
            Packet::PubRec(_) => 0x50,
            Packet::PubRel(_) => 0x62,
            Packet::PubComp(_) => 0x70,
            Packet::Subscribe(_) => 0x82,
            Packet::SubAck(_) => 0x90,
            Packet::Unsubscribe(_) => 0xA2,
            Packet::UnsubAck(_) => 0xB0,
            Packet::PingReq => 0xC0,
            Packet::PingResp => 0xD0,
            Packet::Disconnect(_) => 0xE0,
            Packet::Auth(_) => 0xF0,
        }
    }

    fn plan(&self, version: ProtocolVersion) -> Result<Plan, EncodeError> {
        let v5 = version.is_v5();
        let mut will_properties_len = 0;
        let (remaining_len, properties_len) = match self {
            Packet::Connect(connect) => {
                let (len, props, will_props) = connect_len(connect, version)?;
                will_properties_len = will_props;
                (len, props)
            }
            Packet::ConnAck(connack) => {
                let (block, body) = block_len(version, &connack.properties)?;
                (2 + block, body)
            }
            Packet::Publish(publish) => {
                let (block, body) = block_len(version, &publish.properties)?;
                let id_len = match (publish.qos, publish.packet_id) {
                    (QoS::AtMostOnce, None) => 0,
                    (QoS::AtMostOnce, Some(_)) => {
                        return Err(EncodeError::Invalid("QoS 0 PUBLISH with a packet identifier"))
                    }
                    (_, Some(_)) => 2,
                    (_, None) => {
                        return Err(EncodeError::Invalid(
                            "QoS > 0 PUBLISH without a packet identifier",
                        ))
                    }
                };
                (
                    field_len("topic name", publish.topic.as_bytes())?
                        + id_len
                        + block
                        + publish.payload.len(),
                    body,
                )
            }
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => ack_len(ack, version)?,
            Packet::Subscribe(subscribe) => {
                if subscribe.filters.is_empty() {
                    return Err(EncodeError::Invalid("SUBSCRIBE without a topic filter"));
                }
                let (block, body) = block_len(version, &subscribe.properties)?;
                let mut len = 2 + block;
                for entry in &subscribe.filters {
                    len += field_len("topic filter", entry.filter.as_bytes())? + 1;
                }
                (len, body)
            }
            Packet::SubAck(suback) => {
                if suback.reasons.is_empty() {
                    return Err(EncodeError::Invalid("SUBACK without a return code"));
                }
                let (block, body) = block_len(version, &suback.properties)?;
                (2 + block + suback.reasons.len(), body)
            }
            Packet::Unsubscribe(unsubscribe) => {
                if unsubscribe.filters.is_empty() {
                    return Err(EncodeError::Invalid("UNSUBSCRIBE without a topic filter"));
                }
                let (block, body) = block_len(version, &unsubscribe.properties)?;
                let mut len = 2 + block;
                for filter in &unsubscribe.filters {
                    len += field_len("topic filter", filter.as_bytes())?;
                }
                (len, body)
            }
            Packet::UnsubAck(unsuback) => {
                if !v5 {
                    (2, 0)
                } else {
                    if unsuback.reasons.is_empty() {
                        return Err(EncodeError::Invalid("UNSUBACK without a reason code"));
                    }
                    let (block, body) = block_len(version, &unsuback.properties)?;
                    (2 + block + unsuback.reasons.len(), body)
                }
            }
            Packet::PingReq | Packet::PingResp => (0, 0),
            Packet::Disconnect(disconnect) => {
                if v5 {
                    reason_and_properties_len(disconnect.reason, &disconnect.properties)?
                } else {
                    (0, 0)
                }
            }
            Packet::Auth(auth) => {
                if !v5 {
                    return Err(EncodeError::Invalid("AUTH exists only in MQTT 5"));
                }
                reason_and_properties_len(auth.reason, &auth.properties)?
            }
        };
        if remaining_len > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge(remaining_len));
        }
        Ok(Plan { remaining_len, properties_len, will_properties_len })
    }

    fn write_body(&self, version: ProtocolVersion, plan: &Plan, buf: &mut BytesMut) {
        let v5 = version.is_v5();
        let properties = |buf: &mut BytesMut, properties: &Properties| {
            if v5 {
                properties.encode(buf, plan.properties_len);
            }
        };
        match self {
            Packet::Connect(connect) => write_connect(connect, version, plan, buf),
            Packet::ConnAck(connack) => {
                buf.put_u8(u8::from(connack.session_present));
                buf.put_u8(if v5 { connack.reason.0 } else { connack.reason.to_v3_connack() });
                properties(buf, &connack.properties);
            }
            Packet::Publish(publish) => {
                put_field(buf, publish.topic.as_bytes());
                if let Some(packet_id) = publish.packet_id {
                    buf.put_u16(packet_id.get());
                }
                properties(buf, &publish.properties);
                buf.put_slice(&publish.payload);
            }
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => {
                buf.put_u16(ack.packet_id.get());
                if plan.remaining_len > 2 {
                    buf.put_u8(ack.reason.0);
                }
                if plan.remaining_len > 3 {
                    ack.properties.encode(buf, plan.properties_len);
                }
            }
            Packet::Subscribe(subscribe) => {
                buf.put_u16(subscribe.packet_id.get());
                properties(buf, &subscribe.properties);
                for entry in &subscribe.filters {
                    put_field(buf, entry.filter.as_bytes());
                    buf.put_u8(options_byte(entry.options, version));
                }
            }
            Packet::SubAck(suback) => {
                buf.put_u16(suback.packet_id.get());
                properties(buf, &suback.properties);
                for &reason in &suback.reasons {
                    buf.put_u8(if v5 { reason.0 } else { reason.to_v3_suback() });
                }
            }
            Packet::Unsubscribe(unsubscribe) => {
                buf.put_u16(unsubscribe.packet_id.get());
                properties(buf, &unsubscribe.properties);
                for filter in &unsubscribe.filters {
                    put_field(buf, filter.as_bytes());
                }
            }
            Packet::UnsubAck(unsuback) => {
                buf.put_u16(unsuback.packet_id.get());
                if v5 {
                    properties(buf, &unsuback.properties);
                    for &reason in &unsuback.reasons {
                        buf.put_u8(reason.0);
                    }
                }
            }
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(disconnect) => {
                write_reason_and_properties(disconnect.reason, &disconnect.properties, plan, buf)
            }
            Packet::Auth(auth) => {
                write_reason_and_properties(auth.reason, &auth.properties, plan, buf)
            }
        }
    }
}

fn connect_len(
    connect: &Connect,
    version: ProtocolVersion,
) -> Result<(usize, usize, usize), EncodeError> {
    if connect.protocol != version {
        return Err(EncodeError::Invalid("CONNECT protocol differs from the encoding version"));
    }
    if !version.is_v5() && connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::Invalid("password without user name before MQTT 5"));
    }
    let (block, body) = block_len(version, &connect.properties)?;
    let mut len = 2 + version.protocol_name().len() + 1 + 1 + 2 + block;
    len += field_len("client identifier", connect.client_id.as_bytes())?;
    let mut will_body = 0;
    if let Some(will) = &connect.will {
        let (will_block, body) = block_len(version, &will.properties)?;
        will_body = body;
        len += will_block;
        len += field_len("will topic", will.topic.as_bytes())?;
        len += field_len("will payload", &will.payload)?;
    }
    if let Some(username) = &connect.username {
        len += field_len("user name", username.as_bytes())?;
    }
    if let Some(password) = &connect.password {
        len += field_len("password", password)?;
    }
    Ok((len, body, will_body))
}

fn write_connect(connect: &Connect, version: ProtocolVersion, plan: &Plan, buf: &mut BytesMut) {
    put_field(buf, version.protocol_name().as_bytes());
    buf.put_u8(version.level());
    let mut flags = u8::from(connect.clean_start) << 1;
    if let Some(will) = &connect.will {
        flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(connect.keep_alive_secs);
    if version.is_v5() {
        connect.properties.encode(buf, plan.properties_len);
    }
    put_field(buf, connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if version.is_v5() {
            will.properties.encode(buf, plan.will_properties_len);
        }
        put_field(buf, will.topic.as_bytes());
        put_field(buf, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_field(buf, username.as_bytes());
    }
    if let Some(password) = &connect.password {
        put_field(buf, password);
    }
}

/// v5 acknowledgements: a bare success is 2 bytes; any other reason is written with its property
/// length, even when it is 0. The spec lets the length be left out when there are no properties,
/// but some clients (rumqttc 0.25) cannot parse that short form, and every client parses this one.
fn ack_len(ack: &Ack, version: ProtocolVersion) -> Result<(usize, usize), EncodeError> {
    if !version.is_v5() {
        return Ok((2, 0));
    }
    if ack.properties.is_empty() && ack.reason == ReasonCode::SUCCESS {
        return Ok((2, 0));
    }
    let body = ack.properties.body_len()?;
    Ok((3 + varint_len(body as u32) + body, body))
}

fn reason_and_properties_len(
    reason: ReasonCode,
    properties: &Properties,
) -> Result<(usize, usize), EncodeError> {
    // As for acknowledgements: the short forms are only the empty packet (Success, no
    // properties); a reason code always comes with its property length.
    if properties.is_empty() && reason == ReasonCode::SUCCESS {
        return Ok((0, 0));
    }
    let body = properties.body_len()?;
    Ok((1 + varint_len(body as u32) + body, body))
}

fn write_reason_and_properties(
    reason: ReasonCode,
    properties: &Properties,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    if plan.remaining_len > 0 {
        buf.put_u8(reason.0);
    }
    if plan.remaining_len > 1 {
        properties.encode(buf, plan.properties_len);
    }
}

fn options_byte(options: SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let qos = options.qos as u8;
    if !version.is_v5() {
        return qos;
    }
    qos | (u8::from(options.no_local) << 2)
        | (u8::from(options.retain_as_published) << 3)
        | ((options.retain_handling as u8) << 4)
}

/// A PUBLISH without properties, as a broker forwards most messages: the fields it needs and
/// nothing to build. [`PlainPublish::encode`] writes the same bytes as [`Packet::encode`] of the
/// equivalent `Packet::Publish` with empty properties, without measuring properties or moving
/// a `Packet`.
#[derive(Debug, Clone, Copy)]
pub struct PlainPublish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a [u8],
    /// Required for QoS 1 and 2, absent for QoS 0.
    pub packet_id: Option<super::packet::PacketId>,
    pub payload: &'a [u8],
}

impl PlainPublish<'_> {
    fn remaining_len(&self, version: ProtocolVersion) -> usize {
        2 + self.topic.len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + usize::from(version.is_v5())
            + self.payload.len()
    }

    /// Bytes [`PlainPublish::encode`] writes: what a sender compares with Maximum Packet Size.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let remaining = self.remaining_len(version);
        1 + varint_len(remaining as u32) + remaining
    }

    /// Appends the packet to `buf` and returns the bytes written; nothing is written when a
    /// field does not fit its wire type (a topic over 65,535 bytes, a packet over the largest
    /// remaining length) or the packet id does not match the QoS.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        check_field("topic name", self.topic.len())?;
        if self.packet_id.is_some() != (self.qos != QoS::AtMostOnce) {
            return Err(EncodeError::Invalid(
                "PUBLISH packet id must be present exactly for QoS 1 and 2",
            ));
        }
        let remaining = self.remaining_len(version);
        if remaining > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge(remaining));
        }
        let start = buf.len();
        buf.reserve(5 + remaining);
        buf.put_u8(
            0x30 | (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain),
        );
        put_varint(buf, remaining as u32);
        put_field(buf, self.topic);
        if let Some(packet_id) = self.packet_id {
            buf.put_u16(packet_id.get());
        }
        if version.is_v5() {
            buf.put_u8(0);
        }
        buf.put_slice(self.payload);
        Ok(buf.len() - start)
    }
}

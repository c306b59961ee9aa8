//! MQTT 5 properties (spec section 2.2.2): one struct for every packet, with the table of which
//! property each packet may carry. Decoding rejects a property in the wrong packet, a property
//! given twice where the spec forbids it, and out-of-range values; 3.1.1 packets have none.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::wire::{check_field, put_field, put_varint, varint_len, Reader, VARINT_MAX};

/// The property identifiers of MQTT 5 (spec table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Where a property block sits: each place allows its own set of properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    Connect,
    ConnAck,
    Publish,
    /// The will properties inside CONNECT's payload.
    Will,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Every context, for tests and generators.
    pub const ALL: [PropertyContext; 11] = [
        PropertyContext::Connect,
        PropertyContext::ConnAck,
        PropertyContext::Publish,
        PropertyContext::Will,
        PropertyContext::Ack,
        PropertyContext::Subscribe,
        PropertyContext::SubAck,
        PropertyContext::Unsubscribe,
        PropertyContext::UnsubAck,
        PropertyContext::Disconnect,
        PropertyContext::Auth,
    ];

    /// Whether a property with this identifier may appear here (spec table 2-4).
    pub fn allows(self, property: u8) -> bool {
        allowed_mask(property) & self.bit() != 0
    }
}

const fn mask(contexts: &[PropertyContext]) -> u16 {
    let mut mask = 0;
    let mut index = 0;
    while index < contexts.len() {
        // Const fns cannot use iterators; the index is bounded by the loop condition.
        #[allow(clippy::indexing_slicing)]
        let context = contexts[index];
        mask |= context.bit();
        index += 1;
    }
    mask
}

/// The contexts a property identifier is allowed in; 0 for unknown identifiers.
fn allowed_mask(property: u8) -> u16 {
    use PropertyContext as C;
    const MESSAGE: u16 = mask(&[C::Publish, C::Will]);
    const SESSION: u16 = mask(&[C::Connect, C::ConnAck, C::Disconnect]);
    const AUTH: u16 = mask(&[C::Connect, C::ConnAck, C::Auth]);
    const LIMITS: u16 = mask(&[C::Connect, C::ConnAck]);
    const CONNACK: u16 = mask(&[C::ConnAck]);
    const REASON: u16 = mask(&[C::ConnAck, C::Ack, C::SubAck, C::UnsubAck, C::Disconnect, C::Auth]);
    const EVERYWHERE: u16 = mask(&PropertyContext::ALL);
    match property {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => MESSAGE,
        id::SUBSCRIPTION_IDENTIFIER => mask(&[C::Publish, C::Subscribe]),
        id::SESSION_EXPIRY_INTERVAL => SESSION,
        id::ASSIGNED_CLIENT_IDENTIFIER | id::SERVER_KEEP_ALIVE | id::RESPONSE_INFORMATION => {
            CONNACK
        }
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => AUTH,
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => mask(&[C::Connect]),
        id::WILL_DELAY_INTERVAL => mask(&[C::Will]),
        id::SERVER_REFERENCE => mask(&[C::ConnAck, C::Disconnect]),
        id::REASON_STRING => REASON,
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => LIMITS,
        id::TOPIC_ALIAS => mask(&[C::Publish]),
        id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => CONNACK,
        id::USER_PROPERTY => EVERYWHERE,
        _ => 0,
    }
}

/// The properties of one packet. Fields a packet may not carry stay empty; the decoder
/// guarantees it, and the encoder writes whatever is set (callers build packets correctly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: true when the payload is UTF-8 (indicator 1), false for unspecified bytes (0).
    pub payload_format_indicator: Option<bool>,
    /// 0x02, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03.
    pub content_type: Option<ByteString>,
    /// 0x08: a topic name, never a filter.
    pub response_topic: Option<ByteString>,
    /// 0x09.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: one in SUBSCRIBE; any number in a PUBLISH to a client. Each in 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15.
    pub authentication_method: Option<ByteString>,
    /// 0x16: only with an authentication method.
    pub authentication_data: Option<Bytes>,
    /// 0x17.
    pub request_problem_information: Option<bool>,
    /// 0x18, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19.
    pub request_response_information: Option<bool>,
    /// 0x1A.
    pub response_information: Option<ByteString>,
    /// 0x1C.
    pub server_reference: Option<ByteString>,
    /// 0x1F.
    pub reason_string: Option<ByteString>,
    /// 0x21: never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23: never 0.
    pub topic_alias: Option<u16>,
    /// 0x24: 0 or 1 (a server that allows QoS 2 omits it).
    pub maximum_qos: Option<u8>,
    /// 0x25.
    pub retain_available: Option<bool>,
    /// 0x26: name-value pairs, any number, order kept.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// 0x27, bytes: never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A.
    pub shared_subscription_available: Option<bool>,
}

/// Stores a property that may appear at most once.
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property given more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(reader: &mut Reader, what: &'static str) -> Result<bool, DecodeError> {
    match reader.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Protocol(what)),
    }
}

fn nonzero_u16(reader: &mut Reader, what: &'static str) -> Result<u16, DecodeError> {
    match reader.u16(what)? {
        0 => Err(DecodeError::Protocol(what)),
        value => Ok(value),
    }
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Appends this value as a property block (length prefix, then properties), as MQTT 5 writes
    /// it: for storing a message's properties outside a packet.
    pub fn encode_block(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let body_len = self.body_len()?;
        self.encode(buf, body_len);
        Ok(())
    }

    /// Reads a block written by [`Properties::encode_block`] from the start of `bytes`, checked as
    /// in a packet of `context`; returns the properties and the bytes after the block.
    pub fn decode_block(
        bytes: Bytes,
        context: PropertyContext,
    ) -> Result<(Properties, Bytes), DecodeError> {
        let mut reader = Reader::new(bytes);
        let properties = Properties::decode(&mut reader, context)?;
        Ok((properties, reader.rest()))
    }

    /// Reads a property block (length, then properties) for the given context.
    pub(crate) fn decode(
        reader: &mut Reader,
        context: PropertyContext,
    ) -> Result<Properties, DecodeError> {
        let len = reader.varint("property length")?;
        let block = reader.take(len as usize, "property length exceeds the packet")?;
        let mut reader = Reader::new(block);
        let mut props = Properties::default();
        while !reader.is_empty() {
            // Identifiers are variable byte integers; every defined one fits in one byte.
            let property = reader.varint("property identifier")?;
            let property = u8::try_from(property)
                .map_err(|_| DecodeError::Malformed("unknown property identifier"))?;
            let allowed = allowed_mask(property);
            if allowed == 0 {
                return Err(DecodeError::Malformed("unknown property identifier"));
            }
            if allowed & context.bit() == 0 {
                return Err(DecodeError::Protocol("property not allowed in this packet"));
            }
            props.read_one(&mut reader, property, context)?;
        }
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::Protocol("authentication data without a method"));
        }
        Ok(props)
    }

    /// Reads one property's value into its field; [`Properties::decode`] has checked that the
    /// identifier is known and allowed in `context`. The identifiers are dispatched by wire type
    /// to one small reader each, which keeps each property's own checks in their order.
    fn read_one(
        &mut self,
        reader: &mut Reader,
        property: u8,
        context: PropertyContext,
    ) -> Result<(), DecodeError> {
        match property {
            id::PAYLOAD_FORMAT_INDICATOR
            | id::REQUEST_PROBLEM_INFORMATION
            | id::REQUEST_RESPONSE_INFORMATION
            | id::MAXIMUM_QOS
            | id::RETAIN_AVAILABLE
            | id::WILDCARD_SUBSCRIPTION_AVAILABLE
            | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | id::SHARED_SUBSCRIPTION_AVAILABLE => self.read_byte(reader, property),
            id::SERVER_KEEP_ALIVE
            | id::RECEIVE_MAXIMUM
            | id::TOPIC_ALIAS_MAXIMUM
            | id::TOPIC_ALIAS => self.read_two_byte(reader, property),
            id::MESSAGE_EXPIRY_INTERVAL
            | id::SESSION_EXPIRY_INTERVAL
            | id::WILL_DELAY_INTERVAL
            | id::MAXIMUM_PACKET_SIZE => self.read_four_byte(reader, property),
            id::SUBSCRIPTION_IDENTIFIER => self.read_subscription_identifier(reader, context),
            id::CONTENT_TYPE
            | id::RESPONSE_TOPIC
            | id::ASSIGNED_CLIENT_IDENTIFIER
            | id::AUTHENTICATION_METHOD
            | id::RESPONSE_INFORMATION
            | id::SERVER_REFERENCE
            | id::REASON_STRING => self.read_string(reader, property),
            id::CORRELATION_DATA | id::AUTHENTICATION_DATA => self.read_binary(reader, property),
            id::USER_PROPERTY => self.read_user_property(reader),
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// The one-byte properties: the flags, and the maximum QoS.
    #[inline]
    fn read_byte(&mut self, reader: &mut Reader, property: u8) -> Result<(), DecodeError> {
        match property {
            id::PAYLOAD_FORMAT_INDICATOR => {
                let value = flag(reader, "payload format indicator must be 0 or 1")?;
                once(&mut self.payload_format_indicator, value)
            }
            id::REQUEST_PROBLEM_INFORMATION => {
                let value = flag(reader, "request problem information must be 0 or 1")?;
                once(&mut self.request_problem_information, value)
            }
            id::REQUEST_RESPONSE_INFORMATION => {
                let value = flag(reader, "request response information must be 0 or 1")?;
                once(&mut self.request_response_information, value)
            }
            id::MAXIMUM_QOS => {
                let value = reader.u8("maximum qos")?;
                if value > 1 {
                    return Err(DecodeError::Protocol("maximum qos must be 0 or 1"));
                }
                once(&mut self.maximum_qos, value)
            }
            id::RETAIN_AVAILABLE => {
                let value = flag(reader, "retain available must be 0 or 1")?;
                once(&mut self.retain_available, value)
            }
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let value = flag(reader, "wildcard subscription available must be 0 or 1")?;
                once(&mut self.wildcard_subscription_available, value)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                let value = flag(reader, "subscription identifier available must be 0 or 1")?;
                once(&mut self.subscription_identifier_available, value)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                let value = flag(reader, "shared subscription available must be 0 or 1")?;
                once(&mut self.shared_subscription_available, value)
            }
            // Not reached: `read_one` passes only the identifiers above.
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// The two-byte integer properties.
    #[inline]
    fn read_two_byte(&mut self, reader: &mut Reader, property: u8) -> Result<(), DecodeError> {
        match property {
            id::SERVER_KEEP_ALIVE => {
                let value = reader.u16("server keep alive")?;
                once(&mut self.server_keep_alive, value)
            }
            id::RECEIVE_MAXIMUM => {
                let value = nonzero_u16(reader, "receive maximum 0")?;
                once(&mut self.receive_maximum, value)
            }
            id::TOPIC_ALIAS_MAXIMUM => {
                let value = reader.u16("topic alias maximum")?;
                once(&mut self.topic_alias_maximum, value)
            }
            id::TOPIC_ALIAS => {
                let value = reader.u16("topic alias")?;
                if value == 0 {
                    return Err(DecodeError::TopicAliasInvalid);
                }
                once(&mut self.topic_alias, value)
            }
            // Not reached: `read_one` passes only the identifiers above.
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// The four-byte integer properties.
    #[inline]
    fn read_four_byte(&mut self, reader: &mut Reader, property: u8) -> Result<(), DecodeError> {
        match property {
            id::MESSAGE_EXPIRY_INTERVAL => {
                let value = reader.u32("message expiry interval")?;
                once(&mut self.message_expiry_interval, value)
            }
            id::SESSION_EXPIRY_INTERVAL => {
                let value = reader.u32("session expiry interval")?;
                once(&mut self.session_expiry_interval, value)
            }
            id::WILL_DELAY_INTERVAL => {
                let value = reader.u32("will delay interval")?;
                once(&mut self.will_delay_interval, value)
            }
            id::MAXIMUM_PACKET_SIZE => {
                let value = reader.u32("maximum packet size")?;
                if value == 0 {
                    return Err(DecodeError::Protocol("maximum packet size 0"));
                }
                once(&mut self.maximum_packet_size, value)
            }
            // Not reached: `read_one` passes only the identifiers above.
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// The only variable byte integer property: once in SUBSCRIBE, any number of times in a
    /// PUBLISH.
    #[inline]
    fn read_subscription_identifier(
        &mut self,
        reader: &mut Reader,
        context: PropertyContext,
    ) -> Result<(), DecodeError> {
        let value = reader.varint("subscription identifier")?;
        if value == 0 {
            return Err(DecodeError::Protocol("subscription identifier 0"));
        }
        if context != PropertyContext::Publish && !self.subscription_identifiers.is_empty() {
            return Err(DecodeError::Protocol("property given more than once"));
        }
        self.subscription_identifiers.push(value);
        Ok(())
    }

    /// The UTF-8 string properties.
    #[inline]
    fn read_string(&mut self, reader: &mut Reader, property: u8) -> Result<(), DecodeError> {
        match property {
            id::CONTENT_TYPE => {
                let value = reader.string("content type")?;
                once(&mut self.content_type, value)
            }
            id::RESPONSE_TOPIC => {
                let value = reader.string("response topic")?;
                if !super::topic::is_valid_topic_name(&value) {
                    return Err(DecodeError::Protocol("response topic is not a valid topic name"));
                }
                once(&mut self.response_topic, value)
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                let value = reader.string("assigned client identifier")?;
                once(&mut self.assigned_client_identifier, value)
            }
            id::AUTHENTICATION_METHOD => {
                let value = reader.string("authentication method")?;
                once(&mut self.authentication_method, value)
            }
            id::RESPONSE_INFORMATION => {
                let value = reader.string("response information")?;
                once(&mut self.response_information, value)
            }
            id::SERVER_REFERENCE => {
                let value = reader.string("server reference")?;
                once(&mut self.server_reference, value)
            }
            id::REASON_STRING => {
                let value = reader.string("reason string")?;
                once(&mut self.reason_string, value)
            }
            // Not reached: `read_one` passes only the identifiers above.
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// The binary data properties.
    #[inline]
    fn read_binary(&mut self, reader: &mut Reader, property: u8) -> Result<(), DecodeError> {
        match property {
            id::CORRELATION_DATA => {
                let value = reader.binary("correlation data")?;
                once(&mut self.correlation_data, value)
            }
            id::AUTHENTICATION_DATA => {
                let value = reader.binary("authentication data")?;
                once(&mut self.authentication_data, value)
            }
            // Not reached: `read_one` passes only the identifiers above.
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// The only string pair property, which may repeat; the order of the pairs is kept.
    #[inline]
    fn read_user_property(&mut self, reader: &mut Reader) -> Result<(), DecodeError> {
        let name = reader.string("user property name")?;
        let value = reader.string("user property value")?;
        self.user_properties.push((name, value));
        Ok(())
    }

    /// The length of the properties themselves, without the length prefix. Checks every field
    /// fits its wire type, so [`Properties::encode`] cannot fail afterwards.
    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        fn string(
            field: &'static str,
            value: &Option<impl AsRef<[u8]>>,
        ) -> Result<usize, EncodeError> {
            match value {
                Some(value) => {
                    let len = value.as_ref().len();
                    check_field(field, len)?;
                    Ok(1 + 2 + len)
                }
                None => Ok(0),
            }
        }
        fn fixed<T>(value: &Option<T>, width: usize) -> usize {
            if value.is_some() {
                1 + width
            } else {
                0
            }
        }
        let mut len = 0;
        len += fixed(&self.payload_format_indicator, 1);
        len += fixed(&self.message_expiry_interval, 4);
        len += string("content type", &self.content_type)?;
        len += string("response topic", &self.response_topic)?;
        len += string("correlation data", &self.correlation_data)?;
        for &identifier in &self.subscription_identifiers {
            if identifier == 0 || identifier > VARINT_MAX {
                return Err(EncodeError::Invalid("subscription identifier out of range"));
            }
            len += 1 + varint_len(identifier);
        }
        len += fixed(&self.session_expiry_interval, 4);
        len += string("assigned client identifier", &self.assigned_client_identifier)?;
        len += fixed(&self.server_keep_alive, 2);
        len += string("authentication method", &self.authentication_method)?;
        len += string("authentication data", &self.authentication_data)?;
        len += fixed(&self.request_problem_information, 1);
        len += fixed(&self.will_delay_interval, 4);
        len += fixed(&self.request_response_information, 1);
        len += string("response information", &self.response_information)?;
        len += string("server reference", &self.server_reference)?;
        len += string("reason string", &self.reason_string)?;
        len += fixed(&self.receive_maximum, 2);
        len += fixed(&self.topic_alias_maximum, 2);
        len += fixed(&self.topic_alias, 2);
        len += fixed(&self.maximum_qos, 1);
        len += fixed(&self.retain_available, 1);
        for (name, value) in &self.user_properties {
            check_field("user property name", name.len())?;
            check_field("user property value", value.len())?;
            len += 1 + 2 + name.len() + 2 + value.len();
        }
        len += fixed(&self.maximum_packet_size, 4);
        len += fixed(&self.wildcard_subscription_available, 1);
        len += fixed(&self.subscription_identifier_available, 1);
        len += fixed(&self.shared_subscription_available, 1);
        if len > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge(len));
        }
        Ok(len)
    }

    /// Writes the block (length prefix, then properties). `body_len` is the value
    /// [`Properties::body_len`] returned for this value.
    pub(crate) fn encode(&self, buf: &mut BytesMut, body_len: usize) {
        put_varint(buf, body_len as u32);
        fn byte(buf: &mut BytesMut, property: u8, value: Option<u8>) {
            if let Some(value) = value {
                buf.put_u8(property);
                buf.put_u8(value);
            }
        }
        fn two(buf: &mut BytesMut, property: u8, value: Option<u16>) {
            if let Some(value) = value {
                buf.put_u8(property);
                buf.put_u16(value);
            }
        }
        fn four(buf: &mut BytesMut, property: u8, value: Option<u32>) {
            if let Some(value) = value {
                buf.put_u8(property);
                buf.put_u32(value);
            }
        }
        fn field(buf: &mut BytesMut, property: u8, value: &Option<impl AsRef<[u8]>>) {
            if let Some(value) = value {
                buf.put_u8(property);
                put_field(buf, value.as_ref());
            }
        }
        let flag = |value: Option<bool>| value.map(u8::from);
        byte(buf, id::PAYLOAD_FORMAT_INDICATOR, flag(self.payload_format_indicator));
        four(buf, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        field(buf, id::CONTENT_TYPE, &self.content_type);
        field(buf, id::RESPONSE_TOPIC, &self.response_topic);
        field(buf, id::CORRELATION_DATA, &self.correlation_data);
        for &identifier in &self.subscription_identifiers {
            buf.put_u8(id::SUBSCRIPTION_IDENTIFIER);
            put_varint(buf, identifier);
        }
        four(buf, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        field(buf, id::ASSIGNED_CLIENT_IDENTIFIER, &self.assigned_client_identifier);
        two(buf, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        field(buf, id::AUTHENTICATION_METHOD, &self.authentication_method);
        field(buf, id::AUTHENTICATION_DATA, &self.authentication_data);
        byte(buf, id::REQUEST_PROBLEM_INFORMATION, flag(self.request_problem_information));
        four(buf, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        byte(buf, id::REQUEST_RESPONSE_INFORMATION, flag(self.request_response_information));
        field(buf, id::RESPONSE_INFORMATION, &self.response_information);
        field(buf, id::SERVER_REFERENCE, &self.server_reference);
        field(buf, id::REASON_STRING, &self.reason_string);
        two(buf, id::RECEIVE_MAXIMUM, self.receive_maximum);
        two(buf, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        two(buf, id::TOPIC_ALIAS, self.topic_alias);
        byte(buf, id::MAXIMUM_QOS, self.maximum_qos);
        byte(buf, id::RETAIN_AVAILABLE, flag(self.retain_available));
        for (name, value) in &self.user_properties {
            buf.put_u8(id::USER_PROPERTY);
            put_field(buf, name.as_bytes());
            put_field(buf, value.as_bytes());
        }
        four(buf, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        byte(buf, id::WILDCARD_SUBSCRIPTION_AVAILABLE, flag(self.wildcard_subscription_available));
        byte(
            buf,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            flag(self.subscription_identifier_available),
        );
        byte(buf, id::SHARED_SUBSCRIPTION_AVAILABLE, flag(self.shared_subscription_available));
    }
}

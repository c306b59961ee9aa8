//! Byte-level vectors written from the MQTT 3.1.1 and 5.0 specifications: valid packets decode to
//! the expected values and re-encode to the same bytes; malformed packets fail with the exact
//! error and the reason code a v5 CONNACK/DISCONNECT would carry.

use bytes::{Bytes, BytesMut};
use shardmq_codec::{
    decode_packet, Ack, ByteString, ConnAck, Connect, DecodeError, Decoded, Decoder, Disconnect,
    Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling,
    Subscribe, SubscriptionOptions, TopicFilterEntry, Will, PACKET_BYTES_MAX,
};

use DecodeError::{Malformed, Protocol};
use ProtocolVersion::{V3_1, V3_1_1, V5};

/// A whole packet: first byte, remaining length, body.
fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mut len = body.len();
    loop {
        let mut byte = (len & 0x7F) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
fn s(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A property block: its length, then the properties.
fn props(body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    cat(&[&[body.len() as u8], body])
}

/// CONNECT of MQTT 3.1.1 with the given flags and payload (client id first).
fn connect_v4(flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(0x10, &cat(&[&s(b"MQTT"), &[4, flags, 0, 60], payload]))
}

/// CONNECT of MQTT 5 with the given flags, property block and payload.
fn connect_v5(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(0x10, &cat(&[&s(b"MQTT"), &[5, flags, 0, 60], &props(properties), payload]))
}

/// Decodes `bytes` as the first packets of a connection: a server decoder when `version` is
/// `None`, else a decoder that already speaks `version`.
fn decode(
    version: Option<ProtocolVersion>,
    bytes: &[u8],
    max: u32,
) -> Result<Decoded, DecodeError> {
    let mut decoder = match version {
        Some(version) => Decoder::client(version, max),
        None => Decoder::server(max),
    };
    decoder.decode(&mut BytesMut::from(bytes))
}

fn check_err(version: Option<ProtocolVersion>, bytes: &[u8], expected: DecodeError, code: u8) {
    let got = decode(version, bytes, PACKET_BYTES_MAX);
    assert_eq!(got, Err(expected.clone()), "bytes {bytes:02X?}");
    assert_eq!(expected.reason_code(), ReasonCode(code), "reason code of {expected:?}");
}

fn check_ok(version: Option<ProtocolVersion>, bytes: &[u8], expected: Packet) {
    let got = decode(version, bytes, PACKET_BYTES_MAX);
    assert_eq!(got, Ok(Decoded::Packet(expected.clone())), "bytes {bytes:02X?}");
    let encode_version = match (&expected, version) {
        (Packet::Connect(connect), _) => connect.protocol,
        (_, Some(version)) => version,
        (_, None) => V5,
    };
    let mut buf = BytesMut::new();
    expected.encode(encode_version, &mut buf).expect("encodes");
    assert_eq!(&buf[..], bytes, "re-encoding {expected:?}");
}

fn string(text: &'static str) -> ByteString {
    ByteString::from_static(text)
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero")
}

#[test]
fn valid_connect_packets() {
    // 3.1.1, clean session, keep alive 60, client id "c1".
    check_ok(
        None,
        &connect_v4(0x02, &s(b"c1")),
        Packet::Connect(Box::new(Connect {
            protocol: V3_1_1,
            clean_start: true,
            keep_alive_secs: 60,
            client_id: string("c1"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        })),
    );
    // 3.1 (MQIsdp, level 3) with user name and password.
    check_ok(
        None,
        &frame(0x10, &cat(&[&s(b"MQIsdp"), &[3, 0xC2, 0, 10], &s(b"old"), &s(b"u"), &s(b"p")])),
        Packet::Connect(Box::new(Connect {
            protocol: V3_1,
            clean_start: true,
            keep_alive_secs: 10,
            client_id: string("old"),
            will: None,
            username: Some(string("u")),
            password: Some(Bytes::from_static(b"p")),
            properties: Properties::default(),
        })),
    );
    // 5.0 with session expiry, receive maximum, a retained QoS 1 will with a delay, and a
    // password without a user name (allowed in 5.0).
    let will_properties = [0x18, 0, 0, 0, 5];
    check_ok(
        None,
        &connect_v5(
            0x04 | 0x08 | 0x20 | 0x40,
            &[0x11, 0, 0, 0x0E, 0x10, 0x21, 0, 20],
            &cat(&[&s(b"c5"), &props(&will_properties), &s(b"will/t"), &s(b"bye"), &s(b"pw")]),
        ),
        Packet::Connect(Box::new(Connect {
            protocol: V5,
            clean_start: false,
            keep_alive_secs: 60,
            client_id: string("c5"),
            will: Some(Will {
                topic: string("will/t"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties { will_delay_interval: Some(5), ..Properties::default() },
            }),
            username: None,
            password: Some(Bytes::from_static(b"pw")),
            properties: Properties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(20),
                ..Properties::default()
            },
        })),
    );
}

#[test]
fn valid_other_packets() {
    check_ok(
        Some(V3_1_1),
        &frame(0x20, &[0x01, 0x00]),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    // 3.1.1 return code 5 is v5's Not authorized.
    check_ok(
        Some(V3_1_1),
        &frame(0x20, &[0x00, 0x05]),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::default(),
        }),
    );
    check_ok(
        Some(V3_1_1),
        &frame(0x33, &cat(&[&s(b"a/b"), &[0x00, 0x07], b"hello"])),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: string("a/b"),
            packet_id: Some(id(7)),
            properties: Properties::default(),
            payload: Bytes::from_static(b"hello"),
        }),
    );
    // v5 PUBLISH with a topic alias and an empty topic, message expiry and a user property.
    check_ok(
        Some(V5),
        &frame(
            0x3C,
            &cat(&[
                &s(b""),
                &[0x00, 0x09],
                &props(&cat(&[&[0x02, 0, 0, 0, 30, 0x23, 0, 3, 0x26], &s(b"k"), &s(b"v")])),
                b"x",
            ]),
        ),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: string(""),
            packet_id: Some(id(9)),
            properties: Properties {
                message_expiry_interval: Some(30),
                topic_alias: Some(3),
                user_properties: vec![(string("k"), string("v"))],
                ..Properties::default()
            },
            payload: Bytes::from_static(b"x"),
        }),
    );
    check_ok(Some(V5), &frame(0x40, &[0x00, 0x01]), Packet::PubAck(Ack::success(id(1))));
    check_ok(
        Some(V5),
        &frame(0x50, &[0x00, 0x02, 0x10, 0x00]),
        Packet::PubRec(Ack {
            packet_id: id(2),
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: Properties::default(),
        }),
    );
    check_ok(Some(V3_1_1), &frame(0x62, &[0x00, 0x03]), Packet::PubRel(Ack::success(id(3))));
    check_ok(
        Some(V5),
        &frame(
            0x82,
            &cat(&[&[0x00, 0x0A], &props(&[0x0B, 0x81, 0x01]), &s(b"$share/g/a/+"), &[0x2A]]),
        ),
        Packet::Subscribe(Subscribe {
            packet_id: id(10),
            properties: Properties { subscription_identifiers: vec![129], ..Properties::default() },
            filters: vec![TopicFilterEntry {
                filter: string("$share/g/a/+"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
        }),
    );
    check_ok(Some(V3_1_1), &[0xC0, 0x00], Packet::PingReq);
    check_ok(Some(V5), &[0xD0, 0x00], Packet::PingResp);
    check_ok(Some(V5), &[0xE0, 0x00], Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
    check_ok(
        Some(V5),
        &[0xE0, 0x02, 0x04, 0x00],
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)),
    );
    check_ok(Some(V3_1_1), &[0xE0, 0x00], Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
}

#[test]
fn lenient_forms_decode_to_their_canonical_packet() {
    // A v5 PUBACK may spell out a Success reason and an empty property block.
    let got = decode(Some(V5), &frame(0x40, &[0x00, 0x01, 0x00, 0x00]), PACKET_BYTES_MAX);
    assert_eq!(got, Ok(Decoded::Packet(Packet::PubAck(Ack::success(id(1))))));
    let got = decode(Some(V5), &[0xE0, 0x02, 0x00, 0x00], PACKET_BYTES_MAX);
    assert_eq!(got, Ok(Decoded::Packet(Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))));
    // A reason code without a property length is the spec's short form; it decodes too.
    let got = decode(Some(V5), &[0xE0, 0x01, 0x8E], PACKET_BYTES_MAX);
    let taken_over = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    assert_eq!(got, Ok(Decoded::Packet(Packet::Disconnect(taken_over))));
    let got = decode(Some(V5), &frame(0x50, &[0x00, 0x02, 0x10]), PACKET_BYTES_MAX);
    let rec = Ack {
        packet_id: id(2),
        reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        properties: Properties::default(),
    };
    assert_eq!(got, Ok(Decoded::Packet(Packet::PubRec(rec))));
}

#[test]
fn malformed_framing() {
    check_err(Some(V5), &[0x00, 0x00], Malformed("reserved packet type 0"), 0x81);
    check_err(
        Some(V5),
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        Malformed("variable byte integer longer than 4 bytes"),
        0x81,
    );
    check_err(
        Some(V5),
        &[0xC0, 0x80, 0x00],
        Malformed("variable byte integer not minimally encoded"),
        0x81,
    );
    check_err(Some(V5), &[0xC1, 0x00], Malformed("reserved fixed header flags"), 0x81);
    check_err(Some(V5), &[0xC0, 0x01, 0x00], Malformed("unexpected bytes after the packet"), 0x81);
    check_err(Some(V5), &[0xD0, 0x01, 0x00], Malformed("unexpected bytes after the packet"), 0x81);
    check_err(
        Some(V5),
        &frame(0x60, &[0x00, 0x01]),
        Malformed("reserved fixed header flags"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0x42, &[0x00, 0x01]),
        Malformed("reserved fixed header flags"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x80, &cat(&[&[0x00, 0x01], &s(b"a"), &[0]])),
        Malformed("reserved fixed header flags"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0xA0, &cat(&[&[0x00, 0x01], &s(b"a")])),
        Malformed("reserved fixed header flags"),
        0x81,
    );
    check_err(Some(V3_1_1), &[0xF0, 0x00], Malformed("AUTH is reserved before MQTT 5"), 0x81);
    check_err(
        Some(V3_1_1),
        &[0xE0, 0x01, 0x00],
        Malformed("unexpected bytes after the packet"),
        0x81,
    );
    check_err(None, &[0x30, 0x00], Protocol("first packet is not CONNECT"), 0x82);
    check_err(None, &[0xC0, 0x00], Protocol("first packet is not CONNECT"), 0x82);
}

#[test]
fn packet_too_large_is_refused_from_the_fixed_header() {
    // Only the fixed header is in the buffer: the announced 1000-byte body is never waited for.
    let got = decode(Some(V5), &[0x30, 0xE8, 0x07], 100);
    assert_eq!(got, Err(DecodeError::PacketTooLarge { size: 1003, max: 100 }));
    assert_eq!(got.unwrap_err().reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // The limit counts the whole packet: a 100-byte packet passes a 100-byte limit.
    let exactly = frame(0x30, &cat(&[&s(b"t"), &[0u8; 95]]));
    assert_eq!(exactly.len(), 100);
    assert!(matches!(decode(Some(V3_1_1), &exactly, 100), Ok(Decoded::Packet(_))));
    assert!(matches!(decode(Some(V3_1_1), &exactly, 99), Err(DecodeError::PacketTooLarge { .. })));
}

#[test]
fn malformed_connect() {
    let unsupported = |name, level| DecodeError::UnsupportedProtocol { name, level };
    check_err(
        None,
        &frame(0x10, &cat(&[&s(b"MQTX"), &[4, 2, 0, 60], &s(b"c")])),
        unsupported("unknown", 4),
        0x84,
    );
    check_err(
        None,
        &frame(0x10, &cat(&[&s(b"MQTT"), &[6, 2, 0, 60], &s(b"c")])),
        unsupported("MQTT", 6),
        0x84,
    );
    check_err(
        None,
        &frame(0x10, &cat(&[&s(b"MQIsdp"), &[4, 2, 0, 60], &s(b"c")])),
        unsupported("MQIsdp", 4),
        0x84,
    );
    check_err(None, &connect_v4(0x03, &s(b"c")), Malformed("reserved connect flag set"), 0x81);
    check_err(
        None,
        &connect_v4(0x04 | 0x18, &cat(&[&s(b"c"), &s(b"t"), &s(b"m")])),
        Malformed("will QoS 3"),
        0x81,
    );
    check_err(
        None,
        &connect_v4(0x20, &s(b"c")),
        Malformed("will QoS or retain set without a will"),
        0x81,
    );
    check_err(
        None,
        &connect_v4(0x08, &s(b"c")),
        Malformed("will QoS or retain set without a will"),
        0x81,
    );
    check_err(
        None,
        &connect_v4(0x40, &cat(&[&s(b"c"), &s(b"p")])),
        Malformed("password without user name"),
        0x81,
    );
    check_err(None, &connect_v4(0x02, &s(&[0xC3, 0x28])), Malformed("client identifier"), 0x81);
    check_err(None, &connect_v4(0x02, &s(b"a\0b")), Malformed("client identifier"), 0x81);
    check_err(
        None,
        &connect_v4(0x04, &cat(&[&s(b"c"), &s(b"will/#"), &s(b"m")])),
        DecodeError::TopicNameInvalid,
        0x90,
    );
    check_err(
        None,
        &connect_v4(0x02, &cat(&[&s(b"c"), &[0]])),
        Malformed("unexpected bytes after the packet"),
        0x81,
    );
    check_err(None, &connect_v4(0x02, &[0x00, 0x05, b'c']), Malformed("client identifier"), 0x81);
    check_err(
        None,
        &frame(0x11, &cat(&[&s(b"MQTT"), &[4, 2, 0, 60], &s(b"c")])),
        Malformed("reserved fixed header flags"),
        0x81,
    );
    check_err(None, &frame(0x10, &cat(&[&s(b"MQTT"), &[4, 2, 0]])), Malformed("keep alive"), 0x81);
}

#[test]
fn malformed_connect_properties() {
    let c = s(b"c");
    check_err(None, &connect_v5(2, &[0x21, 0, 0], &c), Protocol("receive maximum 0"), 0x82);
    check_err(
        None,
        &connect_v5(2, &[0x23, 0, 1], &c),
        Protocol("property not allowed in this packet"),
        0x82,
    );
    check_err(
        None,
        &connect_v5(2, &[0x18, 0, 0, 0, 1], &c),
        Protocol("property not allowed in this packet"),
        0x82,
    );
    check_err(
        None,
        &connect_v5(2, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], &c),
        Protocol("property given more than once"),
        0x82,
    );
    check_err(None, &connect_v5(2, &[0x7F, 0], &c), Malformed("unknown property identifier"), 0x81);
    check_err(
        None,
        &connect_v5(2, &cat(&[&[0x16], &s(b"d")]), &c),
        Protocol("authentication data without a method"),
        0x82,
    );
    check_err(
        None,
        &connect_v5(2, &[0x27, 0, 0, 0, 0], &c),
        Protocol("maximum packet size 0"),
        0x82,
    );
    check_err(
        None,
        &connect_v5(2, &[0x17, 2], &c),
        Protocol("request problem information must be 0 or 1"),
        0x82,
    );
    check_err(
        None,
        &connect_v5(2, &[0x19, 7], &c),
        Protocol("request response information must be 0 or 1"),
        0x82,
    );
    // The property block claims 9 bytes but the packet ends first.
    check_err(
        None,
        &frame(0x10, &cat(&[&s(b"MQTT"), &[5, 2, 0, 60, 9, 0x11, 0, 0]])),
        Malformed("property length exceeds the packet"),
        0x81,
    );
    // A will property that belongs to PUBLISH only.
    check_err(
        None,
        &connect_v5(0x04, &[], &cat(&[&c, &props(&[0x23, 0, 1]), &s(b"t"), &s(b"m")])),
        Protocol("property not allowed in this packet"),
        0x82,
    );
}

#[test]
fn malformed_publish() {
    let body = cat(&[&s(b"t"), &[0, 1], b"m"]);
    check_err(Some(V3_1_1), &frame(0x36, &body), Malformed("PUBLISH QoS 3"), 0x81);
    check_err(
        Some(V3_1_1),
        &frame(0x38, &cat(&[&s(b"t"), b"m"])),
        Malformed("DUP set on a QoS 0 PUBLISH"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x30, &cat(&[&s(b"a/+"), b"m"])),
        DecodeError::TopicNameInvalid,
        0x90,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b"a/#"), &[0]])),
        DecodeError::TopicNameInvalid,
        0x90,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x32, &cat(&[&s(b"t"), &[0, 0]])),
        Malformed("packet identifier 0"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x30, &cat(&[&s(b""), b"m"])),
        Protocol("empty topic name without a topic alias"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b""), &[0]])),
        Protocol("empty topic name without a topic alias"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b""), &props(&[0x23, 0, 0])])),
        DecodeError::TopicAliasInvalid,
        0x94,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b"t"), &props(&[0x11, 0, 0, 0, 1])])),
        Protocol("property not allowed in this packet"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b"t"), &props(&[0x01, 2])])),
        Protocol("payload format indicator must be 0 or 1"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b"t"), &props(&[0x0B, 0])])),
        Protocol("subscription identifier 0"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x30, &cat(&[&s(b"t"), &props(&cat(&[&[0x08], &s(b"r/+")]))])),
        Protocol("response topic is not a valid topic name"),
        0x82,
    );
    // A UTF-16 surrogate (U+D800) encoded in UTF-8 is not well-formed UTF-8.
    check_err(
        Some(V3_1_1),
        &frame(0x30, &cat(&[&s(&[0xED, 0xA0, 0x80]), b"m"])),
        Malformed("topic name"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x32, &cat(&[&s(b"t"), &[0]])),
        Malformed("packet identifier"),
        0x81,
    );
}

#[test]
fn malformed_subscribe_and_unsubscribe() {
    let pid = [0u8, 1];
    check_err(Some(V3_1_1), &frame(0x82, &pid), Protocol("SUBSCRIBE without a topic filter"), 0x82);
    check_err(
        Some(V5),
        &frame(0x82, &cat(&[&pid, &[0]])),
        Protocol("SUBSCRIBE without a topic filter"),
        0x82,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b"a/#/b"), &[0]])),
        DecodeError::TopicFilterInvalid,
        0x8F,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b"a+"), &[0]])),
        DecodeError::TopicFilterInvalid,
        0x8F,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b"$share/g"), &[0]])),
        DecodeError::TopicFilterInvalid,
        0x8F,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b""), &[0]])),
        DecodeError::TopicFilterInvalid,
        0x8F,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b"a"), &[0x04]])),
        Malformed("reserved subscription option bits"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b"a"), &[0x03]])),
        Malformed("subscription QoS 3"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0x82, &cat(&[&pid, &[0], &s(b"a"), &[0x30]])),
        Protocol("retain handling 3"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x82, &cat(&[&pid, &[0], &s(b"a"), &[0x40]])),
        Malformed("reserved subscription option bits"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0x82, &cat(&[&pid, &[0], &s(b"$share/g/a"), &[0x04]])),
        Protocol("No Local on a shared subscription"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x82, &cat(&[&[0, 0], &[0], &s(b"a"), &[0]])),
        Malformed("packet identifier 0"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0x82, &cat(&[&pid, &props(&[0x0B, 1, 0x0B, 2]), &s(b"a"), &[0]])),
        Protocol("property given more than once"),
        0x82,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x82, &cat(&[&pid, &s(b"a")])),
        Malformed("subscription options"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0xA2, &pid),
        Protocol("UNSUBSCRIBE without a topic filter"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0xA2, &cat(&[&pid, &[0], &s(b"#/a")])),
        DecodeError::TopicFilterInvalid,
        0x8F,
    );
}

#[test]
fn malformed_acknowledgements() {
    check_err(
        Some(V3_1_1),
        &frame(0x40, &[0, 1, 0]),
        Malformed("unexpected bytes after the packet"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0x40, &[0, 1, 0x01]),
        Protocol("reason code not allowed in this packet"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x62, &[0, 1, 0x10]),
        Protocol("reason code not allowed in this packet"),
        0x82,
    );
    check_err(Some(V5), &frame(0x70, &[0, 0]), Malformed("packet identifier 0"), 0x81);
    check_err(
        Some(V5),
        &frame(0x40, &[0, 1, 0x00, 5, 0x1F, 0, 1, b'a']),
        Malformed("property length exceeds the packet"),
        0x81,
    );
    check_err(Some(V3_1_1), &frame(0x20, &[0, 6]), Malformed("reserved CONNACK return code"), 0x81);
    check_err(
        Some(V3_1_1),
        &frame(0x20, &[0x02, 0]),
        Malformed("reserved connect acknowledge flags"),
        0x81,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x20, &[0x01, 0x05]),
        Protocol("session present on a refused connection"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0x20, &[0, 0x04, 0]),
        Protocol("reason code not allowed in CONNACK"),
        0x82,
    );
    check_err(
        Some(V3_1_1),
        &frame(0x90, &[0, 1, 0x03]),
        Malformed("reserved SUBACK return code"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0x90, &[0, 1, 0, 0x8E]),
        Protocol("reason code not allowed in this packet"),
        0x82,
    );
    check_err(Some(V5), &frame(0xB0, &[0, 1, 0]), Protocol("UNSUBACK without a reason code"), 0x82);
    check_err(
        Some(V5),
        &[0xE0, 0x01, 0x18],
        Protocol("reason code not allowed in this packet"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0xE0, &[0x00, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]),
        Protocol("property given more than once"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0xE0, &[0x00, 0, 0xAA]),
        Malformed("unexpected bytes after the packet"),
        0x81,
    );
    check_err(
        Some(V5),
        &frame(0xF0, &[0x04]),
        Protocol("reason code not allowed in this packet"),
        0x82,
    );
    check_err(
        Some(V5),
        &frame(0xF0, &cat(&[&[0x18], &props(&cat(&[&[0x1F], &s(b"a"), &[0x1F], &s(b"b")]))])),
        Protocol("property given more than once"),
        0x82,
    );
}

#[test]
fn incremental_decoding_waits_without_consuming() {
    let bytes = frame(0x30, &cat(&[&s(b"a/b"), b"payload"]));
    let mut buf = BytesMut::new();
    for (index, &byte) in bytes.iter().enumerate() {
        let before = buf.len();
        let got = decode_packet(&mut buf, V3_1_1, PACKET_BYTES_MAX).expect("no error");
        assert!(matches!(got, Decoded::NeedMore(n) if n >= 1), "at byte {index}: {got:?}");
        assert_eq!(buf.len(), before, "nothing consumed");
        buf.extend_from_slice(&[byte]);
    }
    // Once the fixed header is complete, NeedMore says exactly how many bytes are missing.
    let mut partial = BytesMut::from(&bytes[..5]);
    assert_eq!(
        decode_packet(&mut partial, V3_1_1, PACKET_BYTES_MAX),
        Ok(Decoded::NeedMore(bytes.len() - 5))
    );
    let got = decode_packet(&mut buf, V3_1_1, PACKET_BYTES_MAX).expect("decodes");
    assert!(matches!(got, Decoded::Packet(Packet::Publish(_))));
    assert!(buf.is_empty());
}

#[test]
fn payload_and_topic_are_slices_of_the_read_buffer() {
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&frame(0x30, &cat(&[&s(b"a/b"), b"payload"])));
    let region = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
    let Ok(Decoded::Packet(Packet::Publish(publish))) =
        decode_packet(&mut buf, V3_1_1, PACKET_BYTES_MAX)
    else {
        panic!("expected a PUBLISH");
    };
    assert!(region.contains(&(publish.payload.as_ptr() as usize)), "payload was copied");
    assert!(region.contains(&(publish.topic.as_ptr() as usize)), "topic was copied");
}

#[test]
fn several_packets_in_one_buffer_decode_in_order() {
    let mut bytes = frame(0x30, &cat(&[&s(b"t"), b"1"]));
    bytes.extend(frame(0x30, &cat(&[&s(b"t"), b"2"])));
    bytes.extend([0xC0, 0x00]);
    bytes.extend([0x30, 0x05]); // the start of a fourth packet
    let mut buf = BytesMut::from(&bytes[..]);
    let mut seen = Vec::new();
    while let Ok(Decoded::Packet(packet)) = decode_packet(&mut buf, V3_1_1, PACKET_BYTES_MAX) {
        seen.push(packet);
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2], Packet::PingReq);
    assert_eq!(&buf[..], &[0x30, 0x05]);
}

#[test]
fn server_decoder_learns_the_version_even_from_a_bad_connect() {
    let mut decoder = Decoder::server(PACKET_BYTES_MAX);
    let bad = connect_v5(2, &[0x21, 0, 0], &s(b"c"));
    assert!(decoder.decode(&mut BytesMut::from(&bad[..])).is_err());
    assert_eq!(decoder.version(), Some(V5), "the CONNACK for the error must be a v5 one");
}

#[test]
fn encoder_refuses_what_the_wire_cannot_carry() {
    let long = ByteString::from("x".repeat(70_000));
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: long,
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::new(),
    });
    let mut buf = BytesMut::new();
    assert!(publish.encode(V5, &mut buf).is_err());
    assert!(buf.is_empty(), "a failed encode writes nothing");
    let auth = Packet::Auth(shardmq_codec::Auth {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    });
    assert!(auth.encode(V3_1_1, &mut buf).is_err());
}

//! Property tests: every packet type of every protocol version, with generated properties,
//! encodes and decodes back to itself — also when the bytes arrive in small pieces.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use shardmq_codec::{
    decode_packet, property_id as pid, Ack, Auth, ByteString, ConnAck, Connect, Decoded, Decoder,
    Disconnect, Packet, PacketId, PlainPublish, Properties, PropertyContext, ProtocolVersion,
    Publish, QoS, ReasonCode, ReasonKind, RetainHandling, SubAck, Subscribe, SubscriptionOptions,
    TopicFilterEntry, UnsubAck, Unsubscribe, Will, PACKET_BYTES_MAX,
};

fn text() -> impl Strategy<Value = ByteString> {
    "[^\\x00]{0,12}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn topic_name() -> impl Strategy<Value = ByteString> {
    prop_oneof![
        "[a-z0-9 ]{1,6}(/[a-z0-9]{0,6}){0,4}",
        Just("$SYS/broker/uptime".to_string()),
        "[^\\x00+#]{1,10}",
    ]
    .prop_map(ByteString::from)
}

fn topic_filter() -> impl Strategy<Value = ByteString> {
    let level = prop_oneof![Just("+".to_string()), "[a-z0-9]{0,5}"];
    (vec(level, 1..5), any::<bool>(), option::of("[a-z]{1,4}")).prop_map(|(levels, hash, share)| {
        let mut filter = levels.join("/");
        if hash {
            filter.push_str("/#");
        }
        if filter.is_empty() {
            // A filter has at least one character ([MQTT-4.7.3-1]).
            filter.push('x');
        }
        if let Some(group) = share {
            filter = format!("$share/{group}/{filter}");
        }
        ByteString::from(filter)
    })
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|value| PacketId::new(value).expect("non-zero"))
}

fn reason(kind: ReasonKind) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(kind.allowed_codes().collect::<Vec<_>>())
}

/// A property block with every property the context allows, each present or not.
fn properties(context: PropertyContext) -> impl Strategy<Value = Properties> {
    let messages = (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
    );
    let session = (
        option::of(text()),
        option::of(binary()),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(1u16..),
    );
    let limits = (
        option::of(any::<u16>()),
        option::of(1u16..),
        option::of(0u8..=1),
        option::of(any::<bool>()),
        vec((text(), text()), 0..3),
        option::of(1u32..),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (messages, session, limits).prop_map(move |(m, s, l)| {
        let mut p = Properties {
            payload_format_indicator: m.0,
            message_expiry_interval: m.1,
            content_type: m.2,
            response_topic: m.3,
            correlation_data: m.4,
            subscription_identifiers: m.5,
            session_expiry_interval: m.6,
            assigned_client_identifier: m.7,
            server_keep_alive: m.8,
            authentication_method: s.0,
            authentication_data: s.1,
            request_problem_information: s.2,
            will_delay_interval: s.3,
            request_response_information: s.4,
            response_information: s.5,
            server_reference: s.6,
            reason_string: s.7,
            receive_maximum: s.8,
            topic_alias_maximum: l.0,
            topic_alias: l.1,
            maximum_qos: l.2,
            retain_available: l.3,
            user_properties: l.4,
            maximum_packet_size: l.5,
            wildcard_subscription_available: l.6,
            subscription_identifier_available: l.7,
            shared_subscription_available: l.8,
        };
        restrict(&mut p, context);
        p
    })
}

/// Clears every property the context does not allow, and fixes the combinations the spec forbids.
fn restrict(p: &mut Properties, context: PropertyContext) {
    fn keep<T>(slot: &mut Option<T>, context: PropertyContext, property: u8) {
        if !context.allows(property) {
            *slot = None;
        }
    }
    keep(&mut p.payload_format_indicator, context, pid::PAYLOAD_FORMAT_INDICATOR);
    keep(&mut p.message_expiry_interval, context, pid::MESSAGE_EXPIRY_INTERVAL);
    keep(&mut p.content_type, context, pid::CONTENT_TYPE);
    keep(&mut p.response_topic, context, pid::RESPONSE_TOPIC);
    keep(&mut p.correlation_data, context, pid::CORRELATION_DATA);
    if !context.allows(pid::SUBSCRIPTION_IDENTIFIER) {
        p.subscription_identifiers.clear();
    }
    if context == PropertyContext::Subscribe {
        p.subscription_identifiers.truncate(1);
    }
    keep(&mut p.session_expiry_interval, context, pid::SESSION_EXPIRY_INTERVAL);
    keep(&mut p.assigned_client_identifier, context, pid::ASSIGNED_CLIENT_IDENTIFIER);
    keep(&mut p.server_keep_alive, context, pid::SERVER_KEEP_ALIVE);
    keep(&mut p.authentication_method, context, pid::AUTHENTICATION_METHOD);
    keep(&mut p.authentication_data, context, pid::AUTHENTICATION_DATA);
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    keep(&mut p.request_problem_information, context, pid::REQUEST_PROBLEM_INFORMATION);
    keep(&mut p.will_delay_interval, context, pid::WILL_DELAY_INTERVAL);
    keep(&mut p.request_response_information, context, pid::REQUEST_RESPONSE_INFORMATION);
    keep(&mut p.response_information, context, pid::RESPONSE_INFORMATION);
    keep(&mut p.server_reference, context, pid::SERVER_REFERENCE);
    keep(&mut p.reason_string, context, pid::REASON_STRING);
    keep(&mut p.receive_maximum, context, pid::RECEIVE_MAXIMUM);
    keep(&mut p.topic_alias_maximum, context, pid::TOPIC_ALIAS_MAXIMUM);
    keep(&mut p.topic_alias, context, pid::TOPIC_ALIAS);
    keep(&mut p.maximum_qos, context, pid::MAXIMUM_QOS);
    keep(&mut p.retain_available, context, pid::RETAIN_AVAILABLE);
    keep(&mut p.maximum_packet_size, context, pid::MAXIMUM_PACKET_SIZE);
    keep(&mut p.wildcard_subscription_available, context, pid::WILDCARD_SUBSCRIPTION_AVAILABLE);
    keep(&mut p.subscription_identifier_available, context, pid::SUBSCRIPTION_IDENTIFIER_AVAILABLE);
    keep(&mut p.shared_subscription_available, context, pid::SHARED_SUBSCRIPTION_AVAILABLE);
}

/// Properties for `context` on a v5 connection, none before v5.
fn props_for(version: ProtocolVersion, context: PropertyContext) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        properties(context).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will =
        (topic_name(), binary(), qos(), any::<bool>(), props_for(version, PropertyContext::Will))
            .prop_map(|(topic, payload, qos, retain, properties)| Will {
                topic,
                payload,
                qos,
                retain,
                properties,
            });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will),
        option::of(text()),
        option::of(binary()),
        props_for(version, PropertyContext::Connect),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive_secs,
                client_id,
                will,
                username,
                password,
                properties,
            )| {
                // Before v5 a password needs a user name.
                let password = if version.is_v5() || username.is_some() { password } else { None };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive_secs,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let reasons = if version.is_v5() {
        reason(ReasonKind::ConnAck).boxed()
    } else {
        proptest::sample::select(vec![
            ReasonCode::SUCCESS,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ReasonCode::SERVER_UNAVAILABLE,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ])
        .boxed()
    };
    (any::<bool>(), reasons, props_for(version, PropertyContext::ConnAck))
        .prop_map(|(present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: present && !reason.is_error(),
                reason,
                properties,
            })
        })
        .boxed()
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        props_for(version, PropertyContext::Publish),
        binary(),
    )
        .prop_map(|(qos, dup, retain, topic, id, properties, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            // A v5 publish that carries a Topic Alias may leave the topic empty.
            let topic =
                if properties.topic_alias.is_some() && dup { ByteString::new() } else { topic };
            Packet::Publish(Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: if at_most_once { None } else { Some(id) },
                properties,
                payload,
            })
        })
}

fn ack(version: ProtocolVersion, kind: ReasonKind) -> BoxedStrategy<Ack> {
    if !version.is_v5() {
        return packet_id().prop_map(Ack::success).boxed();
    }
    (packet_id(), reason(kind), properties(PropertyContext::Ack))
        .prop_map(|(packet_id, reason, properties)| Ack { packet_id, reason, properties })
        .boxed()
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let entry = (topic_filter(), qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(filter, qos, no_local, retain_as_published, handling)| {
            let options = if version.is_v5() {
                SubscriptionOptions {
                    qos,
                    no_local: no_local && !filter.starts_with("$share/"),
                    retain_as_published,
                    retain_handling: match handling {
                        0 => RetainHandling::SendAtSubscribe,
                        1 => RetainHandling::SendIfNew,
                        _ => RetainHandling::DoNotSend,
                    },
                }
            } else {
                SubscriptionOptions::with_qos(qos)
            };
            TopicFilterEntry { filter, options }
        },
    );
    (packet_id(), props_for(version, PropertyContext::Subscribe), vec(entry, 1..5)).prop_map(
        |(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe { packet_id, properties, filters })
        },
    )
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if version.is_v5() {
        reason(ReasonKind::SubAck).boxed()
    } else {
        proptest::sample::select(vec![
            ReasonCode(0),
            ReasonCode(1),
            ReasonCode(2),
            ReasonCode(0x80),
        ])
        .boxed()
    };
    (packet_id(), props_for(version, PropertyContext::SubAck), vec(code, 1..5)).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck { packet_id, properties, reasons })
        },
    )
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (packet_id(), props_for(version, PropertyContext::Unsubscribe), vec(topic_filter(), 1..5))
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe { packet_id, properties, filters })
        })
}

fn unsuback(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !version.is_v5() {
        return packet_id()
            .prop_map(|packet_id| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties: Properties::default(),
                    reasons: vec![],
                })
            })
            .boxed();
    }
    (packet_id(), properties(PropertyContext::UnsubAck), vec(reason(ReasonKind::UnsubAck), 1..5))
        .prop_map(|(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck { packet_id, properties, reasons })
        })
        .boxed()
}

fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !version.is_v5() {
        return Just(Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS))).boxed();
    }
    (reason(ReasonKind::Disconnect), properties(PropertyContext::Disconnect))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(ReasonKind::Auth), properties(PropertyContext::Auth))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version, ReasonKind::PubAckOrRec).prop_map(Packet::PubAck),
        ack(version, ReasonKind::PubAckOrRec).prop_map(Packet::PubRec),
        ack(version, ReasonKind::PubRelOrComp).prop_map(Packet::PubRel),
        ack(version, ReasonKind::PubRelOrComp).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![common, auth()].boxed()
    } else {
        common.boxed()
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_packet_round_trips((version, packet) in version().prop_flat_map(|v| (Just(v), packet(v)))) {
        let mut buf = BytesMut::new();
        let written = packet.encode(version, &mut buf).expect("generated packets encode");
        prop_assert_eq!(written, packet.encoded_len(version).expect("measures"));
        let decoded = decode_packet(&mut buf, version, PACKET_BYTES_MAX).expect("decodes");
        prop_assert_eq!(decoded, Decoded::Packet(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn connect_round_trips_through_the_server_decoder(
        (version, packet) in version().prop_flat_map(|v| (Just(v), connect(v)))
    ) {
        let mut buf = BytesMut::new();
        packet.encode(version, &mut buf).expect("encodes");
        let mut decoder = Decoder::server(PACKET_BYTES_MAX);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Packet(packet)));
        prop_assert_eq!(decoder.version(), Some(version));
    }

    #[test]
    fn a_stream_decodes_the_same_in_any_pieces(
        (version, packets) in version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..6))),
        piece in 1usize..17,
    ) {
        let mut stream = BytesMut::new();
        for packet in &packets {
            packet.encode(version, &mut stream).expect("encodes");
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in stream.chunks(piece) {
            buf.extend_from_slice(chunk);
            while let Decoded::Packet(packet) = decode_packet(&mut buf, version, PACKET_BYTES_MAX).expect("decodes") {
                decoded.push(packet);
            }
        }
        prop_assert_eq!(decoded, packets);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The broker's property-less fast path writes exactly what the general encoder writes.
    #[test]
    fn plain_publish_encodes_like_the_general_encoder(
        version in version(),
        qos in qos(),
        dup in any::<bool>(),
        retain in any::<bool>(),
        topic in topic_name(),
        id in packet_id(),
        payload in binary(),
    ) {
        let packet_id = (qos != QoS::AtMostOnce).then_some(id);
        let general = Packet::Publish(Publish {
            dup,
            qos,
            retain,
            topic: topic.clone(),
            packet_id,
            properties: Properties::default(),
            payload: payload.clone(),
        });
        let mut expected = BytesMut::new();
        general.encode(version, &mut expected).expect("encodes");
        let plain = PlainPublish { dup, qos, retain, topic: topic.as_bytes(), packet_id, payload: &payload };
        let mut got = BytesMut::from(&b"prefix"[..]);
        let written = plain.encode(version, &mut got).expect("encodes");
        prop_assert_eq!(&got[6..], &expected[..]);
        prop_assert_eq!(written, expected.len());
        prop_assert_eq!(plain.encoded_len(version), expected.len());
        // A packet id that does not match the QoS is refused, and nothing is written.
        let wrong = PlainPublish { packet_id: if packet_id.is_some() { None } else { Some(id) }, ..plain };
        let before = got.len();
        prop_assert!(wrong.encode(version, &mut got).is_err());
        prop_assert_eq!(got.len(), before);
    }
}

//! Behaviour that depends on the node's shards: a client id reconnecting through whichever shard
//! the kernel picks, and a subscription racing a publish made on another shard.

use std::time::Duration;

use shardmq_io::codec::{
    ByteString, Bytes, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_tests::{client_id_on_shard, connect_packet, Broker, RawClient, Received};

const WAIT: Duration = Duration::from_secs(3);

#[test]
fn the_same_client_id_reconnecting_through_any_shard_keeps_its_session() {
    // Four shards on two cores: each new connection lands on a shard chosen by the kernel's
    // SO_REUSEPORT hash of its source port, so the reconnections below arrive through different
    // shards and are handed to the one home shard of the client id.
    let broker = Broker::start(&["--shards", "4"]);
    let mut connect = connect_packet(ProtocolVersion::V5, "roamer");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let (mut previous, connack) = RawClient::connect(broker.addr(), connect.clone());
    assert!(!connack.session_present);
    for round in 0..12 {
        let (current, connack) = RawClient::connect(broker.addr(), connect.clone());
        assert!(connack.session_present, "round {round}: the session must be found");
        match previous.next(WAIT) {
            Received::Packet(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER, "round {round}")
            }
            other => panic!("round {round}: the old connection got {other:?}"),
        }
        previous = current;
    }
}

#[test]
fn a_subscription_is_visible_on_every_shard_when_its_suback_arrives() {
    let broker = Broker::start(&[]);
    let (mut subscriber, _) = RawClient::connect(
        broker.addr(),
        connect_packet(ProtocolVersion::V3_1_1, &client_id_on_shard("racer-sub", 0)),
    );
    let (mut publisher, _) = RawClient::connect(
        broker.addr(),
        connect_packet(ProtocolVersion::V3_1_1, &client_id_on_shard("racer-pub", 1)),
    );
    for round in 1..=40u16 {
        let topic = format!("race/{round}");
        subscriber.send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(round).expect("non-zero"),
            properties: Properties::default(),
            filters: vec![TopicFilterEntry {
                filter: ByteString::from(topic.clone()),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }));
        assert!(matches!(subscriber.expect_packet(WAIT), Packet::SubAck(_)), "round {round}");
        // The publish goes out the moment the SUBACK is in, from a client on the other shard.
        publisher.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from(topic.clone()),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(b"now"),
        }));
        match subscriber.expect_packet(WAIT) {
            Packet::Publish(publish) => assert_eq!(&*publish.topic, topic.as_str()),
            other => panic!("round {round}: expected the PUBLISH, got {other:?}"),
        }
    }
}

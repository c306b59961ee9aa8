//! The broker's MQTT semantics, tested at the shard layer's boundary: a simulated node of
//! several shards, driven by packets and a fake clock, with the mesh carried in order between
//! shards. No sockets and no threads, so every test is deterministic and fast; the end-to-end
//! tests in `tests/` check the same behaviour through real clients.

mod harness;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harness::*;
use shardmq_codec::PacketId;
use shardmq_codec::{
    Ack, ByteString, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    RetainHandling, Subscribe, SubscriptionOptions, TopicFilterEntry, Unsubscribe, Will,
};
use shardmq_shard::{ConnId, Effect, Limits, ShardId};

use ProtocolVersion::{V3_1_1, V5};

#[test]
fn connack_per_version_and_advertised_limits() {
    let mut node = Node::new(2);
    let v3 = node.connect("a", V3_1_1, true);
    let got = node.take(v3);
    assert_eq!(connack(&got).reason, ReasonCode::SUCCESS);
    let v5 = node.connect("b", V5, true);
    let got = node.take(v5);
    let ack = connack(&got);
    assert_eq!(ack.properties.receive_maximum, Some(Limits::default().inflight_max));
    assert_eq!(ack.properties.maximum_packet_size, Some(Limits::default().packet_bytes_max));
    assert_eq!(ack.properties.shared_subscription_available, Some(true));
}

#[test]
fn empty_client_id_is_assigned_on_v5_and_refused_for_persistent_v3() {
    let mut node = Node::new(3);
    let v5 = node.connect("", V5, true);
    let got = node.take(v5);
    assert!(connack(&got).properties.assigned_client_identifier.is_some());
    let v3 = node.connect("", V3_1_1, false);
    let got = node.take(v3);
    assert_eq!(connack(&got).reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(node.closed.contains(&v3));
}

#[test]
fn publish_reaches_a_subscriber_on_another_shard_at_each_qos() {
    let mut node = Node::new(4);
    let sub_id = node.id_on("sub", 1);
    let pub_id = node.id_on("pub", 3);
    let sub = node.connect(&sub_id, V5, true);
    let publisher = node.connect(&pub_id, V3_1_1, true);
    node.take(sub);
    node.take(publisher);
    node.subscribe(sub, "a/+", QoS::ExactlyOnce);
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        node.publish(publisher, "a/b", "m", qos, false);
        let got = node.publishes(sub);
        assert_eq!(got.len(), 1, "{qos:?}");
        assert_eq!(got[0].qos, qos);
        if let Some(id) = got[0].packet_id {
            let ack = Ack::success(id);
            node.send(
                sub,
                if qos == QoS::AtLeastOnce { Packet::PubAck(ack) } else { Packet::PubRec(ack) },
            );
        }
        if qos == QoS::ExactlyOnce {
            let rel = node.take(sub);
            assert!(matches!(rel.as_slice(), [Packet::PubRel(_)]), "{rel:?}");
            node.send(sub, Packet::PubComp(Ack::success(got[0].packet_id.expect("qos 2"))));
        }
    }
    let acks = node.take(publisher);
    assert!(matches!(acks.as_slice(), [Packet::PubAck(_), Packet::PubRec(_)]), "{acks:?}");
}

#[test]
fn qos_is_downgraded_to_the_subscription_maximum() {
    let mut node = Node::new(2);
    let sub = node.connect("s", V3_1_1, true);
    let publisher = node.connect("p", V3_1_1, true);
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.publish(publisher, "t", "m", QoS::ExactlyOnce, false);
    let got = node.publishes(sub);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

#[test]
fn qos2_duplicate_before_pubrel_is_delivered_once() {
    let mut node = Node::new(2);
    let sub = node.connect("s", V5, true);
    let publisher = node.connect("p", V5, true);
    node.subscribe(sub, "t", QoS::AtMostOnce);
    node.take(publisher);
    let mut first = publish("t", "once", QoS::ExactlyOnce, false, Some(pid(9)));
    node.send(publisher, Packet::Publish(first.clone()));
    first.dup = true;
    node.send(publisher, Packet::Publish(first));
    assert_eq!(payloads(&node.publishes(sub)), ["once"]);
    let acks = node.take(publisher);
    assert!(matches!(acks.as_slice(), [Packet::PubRec(_), Packet::PubRec(_)]));
    node.send(publisher, Packet::PubRel(Ack::success(pid(9))));
    assert!(
        matches!(node.take(publisher).as_slice(), [Packet::PubComp(c)] if c.reason == ReasonCode::SUCCESS)
    );
    // After PUBREL the identifier is free: the same id is a new message.
    node.send(
        publisher,
        Packet::Publish(publish("t", "again", QoS::ExactlyOnce, false, Some(pid(9)))),
    );
    assert_eq!(payloads(&node.publishes(sub)), ["again"]);
}

#[test]
fn persistent_session_queues_offline_and_resends_inflight_with_dup() {
    let mut node = Node::new(2);
    let publisher = node.connect("p", V5, true);
    let sub = node.connect("s", V3_1_1, false);
    node.subscribe(sub, "q/#", QoS::AtLeastOnce);
    node.publish(publisher, "q/1", "inflight", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&node.publishes(sub)), ["inflight"]);
    node.lose(sub);
    node.publish(publisher, "q/2", "queued", QoS::AtLeastOnce, false);
    node.publish(publisher, "q/3", "qos0 not kept offline", QoS::AtMostOnce, false);

    let again = node.connect("s", V3_1_1, false);
    let got = node.take(again);
    assert!(connack(&got).session_present);
    let publishes: Vec<&Publish> = got
        .iter()
        .filter_map(|p| if let Packet::Publish(p) = p { Some(p) } else { None })
        .collect();
    assert_eq!(publishes.len(), 2, "{got:?}");
    assert!(publishes[0].dup && &publishes[0].payload[..] == b"inflight");
    assert!(!publishes[1].dup && &publishes[1].payload[..] == b"queued");
}

#[test]
fn clean_start_discards_the_session() {
    let mut node = Node::new(2);
    let publisher = node.connect("p", V5, true);
    let sub = node.connect("s", V5, false);
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.lose(sub);
    let again = node.connect("s", V5, true);
    assert!(!connack(&node.take(again)).session_present);
    node.publish(publisher, "t", "m", QoS::AtLeastOnce, false);
    assert!(node.publishes(again).is_empty(), "subscriptions went with the session");
}

#[test]
fn session_expiry_ends_an_offline_session() {
    let mut node = Node::new(1);
    let mut c = connect("s", V5, false);
    c.properties.session_expiry_interval = Some(10);
    let sub = node.connect_with(c);
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.lose(sub);
    node.advance(Duration::from_secs(11));
    let again = node.connect("s", V5, false);
    assert!(!connack(&node.take(again)).session_present);
}

#[test]
fn takeover_disconnects_the_old_connection_with_0x8e() {
    let mut node = Node::new(3);
    let old = node.connect("same", V5, false);
    node.take(old);
    let new = node.connect("same", V5, false);
    let got = node.take(old);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SESSION_TAKEN_OVER)
    );
    assert!(node.closed.contains(&old));
    assert!(connack(&node.take(new)).session_present);
}

#[test]
fn retained_store_replace_delete_and_retain_handling() {
    let mut node = Node::new(4);
    let publisher = node.connect("p", V5, true);
    node.publish(publisher, "r/1", "one", QoS::AtLeastOnce, true);
    node.publish(publisher, "r/2", "two", QoS::AtMostOnce, true);
    node.publish(publisher, "r/2", "two again", QoS::AtMostOnce, true);
    node.publish(publisher, "r/3", "three", QoS::AtMostOnce, true);
    node.publish(publisher, "r/3", "", QoS::AtMostOnce, true);

    let sub = node.connect("s", V5, true);
    node.subscribe(sub, "r/#", QoS::AtLeastOnce);
    let mut got = node.publishes(sub);
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(payloads(&got), ["one", "two again"]);
    assert!(got.iter().all(|p| p.retain));

    // Retain Handling 1: only for a new subscription; 2: never.
    let options = |handling| SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: handling,
    };
    node.subscribe_with(sub, "r/#", options(RetainHandling::SendIfNew), None);
    assert!(node.publishes(sub).is_empty());
    node.subscribe_with(sub, "r/1", options(RetainHandling::DoNotSend), None);
    assert!(node.publishes(sub).is_empty());
}

#[test]
fn retain_as_published_keeps_the_flag_on_live_messages() {
    let mut node = Node::new(2);
    let publisher = node.connect("p", V5, true);
    let plain = node.connect("plain", V5, true);
    let rap = node.connect("rap", V5, true);
    node.subscribe(plain, "t", QoS::AtMostOnce);
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: false,
        retain_as_published: true,
        retain_handling: RetainHandling::SendAtSubscribe,
    };
    node.subscribe_with(rap, "t", options, None);
    node.publish(publisher, "t", "m", QoS::AtMostOnce, true);
    assert!(!node.publishes(plain)[0].retain);
    assert!(node.publishes(rap)[0].retain);
}

#[test]
fn wildcard_subscribe_over_many_retained_topics_delivers_all() {
    let limits = Limits { inflight_max: 8, queued_messages_max: 10, ..Limits::default() };
    let mut node = Node::with_limits(3, limits);
    let publisher = node.connect("p", V5, true);
    for i in 0..500 {
        node.publish(publisher, &format!("many/{i}"), "x", QoS::AtLeastOnce, true);
    }
    let sub = node.connect("s", V5, true);
    node.subscribe(sub, "many/+", QoS::AtLeastOnce);
    // The window holds 8 at a time; acknowledging pulls the rest, none is dropped.
    let mut seen = 0;
    loop {
        let got = node.publishes(sub);
        if got.is_empty() {
            break;
        }
        seen += got.len();
        for p in got {
            node.send(sub, Packet::PubAck(Ack::success(p.packet_id.expect("qos 1"))));
        }
    }
    assert_eq!(seen, 500);
}

#[test]
fn a_bridge_session_has_its_own_bound_and_drop_count() {
    // Client limits far above the bridge's own bound, so only the bridge's applies.
    let limits = Limits { inflight_max: 2, queued_messages_max: 1000, ..Limits::default() };
    let mut node = Node::with_limits(2, limits);
    let bridge_id = "$bridge/up";
    let home = usize::from(shardmq_shard::home_shard(bridge_id, 2).0);
    node.shards[home].set_bridge_queue(bridge_id, 5);
    let bridge = node.connect(bridge_id, V5, false);
    node.subscribe(bridge, "out/#", QoS::AtLeastOnce);
    let publisher = node.connect("p", V5, true);
    for i in 0..20 {
        node.publish(publisher, &format!("out/{i}"), "x", QoS::AtLeastOnce, false);
    }
    // Queued and in flight together: 5 kept (2 sent, 3 queued), 15 dropped and counted.
    let (queue, held) = node.shards[home].bridge_queue(bridge_id).expect("a bridge session");
    assert_eq!((queue.messages_max, queue.dropped, held), (5, 15, 5));
    let sent = node.publishes(bridge);
    assert_eq!(sent.len(), 2);
    // Counted with the shard's queue drops too.
    let stats = node.shards.iter().map(|shard| shard.stats().dropped_queue_full).sum::<u64>();
    assert_eq!(stats, 15);
    // Other sessions keep the client limits.
    assert!(node.shards[home].bridge_queue("p").is_none());
}

#[test]
fn wills_on_abnormal_close_not_on_normal_disconnect_but_on_0x04() {
    let mut node = Node::new(2);
    let watcher = node.connect("w", V5, true);
    node.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let with_will = |id: &str| {
        let mut c = connect(id, V5, true);
        c.will = Some(Will {
            topic: ByteString::from(format!("will/{id}")),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        });
        c
    };
    let a = node.connect_with(with_will("a"));
    node.lose(a);
    let b = node.connect_with(with_will("b"));
    node.send(b, Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)));
    let c = node.connect_with(with_will("c"));
    node.send(c, Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)));
    let topics: Vec<String> = node.publishes(watcher).iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["will/a", "will/c"]);
}

#[test]
fn will_delay_waits_and_is_cancelled_by_reconnecting() {
    let mut node = Node::new(2);
    let watcher = node.connect("w", V5, true);
    node.subscribe(watcher, "will", QoS::AtMostOnce);
    let mut c = connect("d", V5, false);
    c.will = Some(Will {
        topic: ByteString::from("will"),
        payload: Bytes::from_static(b"late"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties { will_delay_interval: Some(5), ..Properties::default() },
    });
    let first = node.connect_with(c.clone());
    node.lose(first);
    node.advance(Duration::from_secs(3));
    assert!(node.publishes(watcher).is_empty());
    let second = node.connect_with(c);
    node.advance(Duration::from_secs(5));
    assert!(node.publishes(watcher).is_empty(), "reconnecting cancels the delayed will");
    node.lose(second);
    node.advance(Duration::from_secs(6));
    assert_eq!(payloads(&node.publishes(watcher)), ["late"]);
}

#[test]
fn keepalive_timeout_disconnects_with_0x8d_and_publishes_the_will() {
    let mut node = Node::new(1);
    let watcher = node.connect("w", V5, true);
    node.subscribe(watcher, "will", QoS::AtMostOnce);
    let mut c = connect("k", V5, true);
    c.keep_alive_secs = 2;
    c.will = Some(Will {
        topic: ByteString::from("will"),
        payload: Bytes::from_static(b"timeout"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let k = node.connect_with(c);
    node.take(k);
    node.advance(Duration::from_millis(2900));
    node.send(watcher, Packet::PingReq);
    assert!(node.take(k).is_empty(), "within 1.5 x keepalive");
    node.advance(Duration::from_millis(200));
    let got = node.take(k);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(payloads(&node.publishes(watcher)), ["timeout"]);
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let mut node = Node::new(2);
    let publisher = node.connect("p", V5, true);
    let all = node.connect("all", V5, true);
    let sys = node.connect("sys", V5, true);
    node.subscribe(all, "#", QoS::AtMostOnce);
    // Clients may not publish on `$SYS` (the broker's own): another `$` topic shows the rule.
    node.subscribe(sys, "$ops/#", QoS::AtMostOnce);
    node.publish(publisher, "$ops/x", "m", QoS::AtMostOnce, false);
    assert!(node.publishes(all).is_empty());
    assert_eq!(node.publishes(sys).len(), 1);
}

#[test]
fn overlapping_subscriptions_give_one_delivery_with_every_identifier() {
    let mut node = Node::new(2);
    let publisher = node.connect("p", V5, true);
    let sub = node.connect("s", V5, true);
    node.subscribe_with(sub, "a/#", SubscriptionOptions::with_qos(QoS::AtMostOnce), Some(1));
    node.subscribe_with(sub, "a/+", SubscriptionOptions::with_qos(QoS::AtLeastOnce), Some(2));
    node.publish(publisher, "a/b", "m", QoS::AtLeastOnce, false);
    let got = node.publishes(sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn no_local_skips_the_publishers_own_subscription() {
    let mut node = Node::new(2);
    let me = node.connect("me", V5, true);
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: true,
        retain_as_published: false,
        retain_handling: RetainHandling::SendAtSubscribe,
    };
    node.subscribe_with(me, "t", options, None);
    node.publish(me, "t", "m", QoS::AtMostOnce, false);
    assert!(node.publishes(me).is_empty());
}

#[test]
fn shared_subscription_delivers_once_per_group_round_robin_across_shards() {
    let mut node = Node::new(3);
    let publisher = node.connect("p", V5, true);
    let members: Vec<ConnId> = (0..3)
        .map(|shard| {
            let id = node.id_on("member", shard);
            let conn = node.connect(&id, V5, true);
            node.subscribe(conn, "$share/g/jobs/+", QoS::AtMostOnce);
            conn
        })
        .collect();
    let plain = node.connect("plain", V5, true);
    node.subscribe(plain, "jobs/+", QoS::AtMostOnce);
    for i in 0..30 {
        node.publish(publisher, "jobs/x", &i.to_string(), QoS::AtMostOnce, false);
    }
    let counts: Vec<usize> = members.iter().map(|&m| node.publishes(m).len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 30, "one delivery per group: {counts:?}");
    assert!(counts.iter().all(|&c| c >= 5), "spread over members: {counts:?}");
    assert_eq!(node.publishes(plain).len(), 30, "a plain subscription gets everything");
}

#[test]
fn unsubscribe_removes_routes_on_every_shard() {
    let mut node = Node::new(3);
    let sub_id = node.id_on("s", 2);
    let sub = node.connect(&sub_id, V5, true);
    let publisher = node.connect(&node.id_on("p", 0), V5, true);
    node.subscribe(sub, "t/#", QoS::AtMostOnce);
    node.send(
        sub,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            properties: Properties::default(),
            filters: vec![ByteString::from("t/#"), ByteString::from("never")],
        }),
    );
    let got = node.take(sub);
    let Some(Packet::UnsubAck(ack)) = got.first() else { panic!("{got:?}") };
    assert_eq!(ack.reasons, [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]);
    node.take(publisher);
    node.publish(publisher, "t/x", "m", QoS::AtLeastOnce, false);
    assert!(node.publishes(sub).is_empty());
    let acks = node.take(publisher);
    assert!(
        matches!(acks.as_slice(), [Packet::PubAck(a)] if a.reason == ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
}

#[test]
fn topic_alias_from_the_client_is_resolved() {
    let mut node = Node::new(2);
    let sub = node.connect("s", V5, true);
    node.subscribe(sub, "long/topic/name", QoS::AtMostOnce);
    let publisher = node.connect("p", V5, true);
    let mut first = publish("long/topic/name", "1", QoS::AtMostOnce, false, None);
    first.properties.topic_alias = Some(3);
    node.send(publisher, Packet::Publish(first));
    let mut second = publish("", "2", QoS::AtMostOnce, false, None);
    second.properties.topic_alias = Some(3);
    node.send(publisher, Packet::Publish(second));
    assert_eq!(payloads(&node.publishes(sub)), ["1", "2"]);
    // An alias above the advertised maximum is a protocol violation (0x94).
    let mut bad = publish("x", "3", QoS::AtMostOnce, false, None);
    bad.properties.topic_alias = Some(Limits::default().topic_alias_max + 1);
    node.send(publisher, Packet::Publish(bad));
    let got = node.take(publisher);
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::TOPIC_ALIAS_INVALID)
    );
}

/// Publishes 100-byte QoS 0 messages from `publisher` straight into shard 0, without taking
/// anyone's output (a subscriber socket that does not drain), until the shard pauses the
/// publisher or `most` were fed. Returns how many were fed.
fn publish_until_paused(node: &mut Node, publisher: ConnId, most: usize) -> usize {
    let big = "x".repeat(100);
    for fed in 1..=most {
        let now = node.now;
        let shard = &mut node.shards[0];
        shard.packet(
            publisher,
            Packet::Publish(publish("t", &big, QoS::AtMostOnce, false, None)),
            now,
        );
        if shard.is_paused(publisher) {
            return fed;
        }
    }
    most
}

#[test]
fn a_publisher_is_paused_while_its_subscriber_drains_and_nothing_is_dropped() {
    let limits = Limits { out_buffer_bytes_max: 1000, ..Limits::default() };
    let mut node = Node::with_limits(1, limits);
    let sub = node.connect("slow", V3_1_1, true);
    node.subscribe(sub, "t", QoS::AtMostOnce);
    let publisher = node.connect("p", V3_1_1, true);
    node.take(publisher);
    let fed = publish_until_paused(&mut node, publisher, 50);
    assert!(fed < 20, "paused once the subscriber's output buffer is full, not after {fed}");
    // The engine stops reading the publisher here; the subscriber's socket drains.
    node.run();
    assert!(node.resumed.contains(&publisher), "resumed once the subscriber drained");
    assert!(!node.shards[0].is_paused(publisher));
    assert_eq!(node.publishes(sub).len(), fed, "every message fed was delivered");
    assert_eq!(node.shards[0].stats().dropped_qos0_slow, 0);
}

#[test]
fn a_publisher_on_another_shard_is_paused_by_the_subscriber_s_shard_and_resumed() {
    let limits = Limits { out_buffer_bytes_max: 1000, ..Limits::default() };
    let mut node = Node::with_limits(2, limits);
    let sub = node.connect(&node.id_on("sub", 1), V3_1_1, true);
    node.subscribe(sub, "t", QoS::AtMostOnce);
    let publisher = node.connect(&node.id_on("pub", 0), V3_1_1, true);
    node.take(publisher);
    // Publishes cross the mesh by hand; nobody takes the subscriber's output on shard 1.
    let big = "x".repeat(100);
    let mut fed = 0;
    while fed < 50 && !node.shards[0].is_paused(publisher) {
        let now = node.now;
        let packet = Packet::Publish(publish("t", &big, QoS::AtMostOnce, false, None));
        node.shards[0].packet(publisher, packet, now);
        fed += 1;
        for (from, to) in [(0_usize, 1_usize), (1, 0)] {
            let mut effects = Vec::new();
            node.shards[from].drain_effects(&mut effects);
            for effect in effects {
                if let Effect::Mesh(target, msg) = effect {
                    assert_eq!(target.index(), to);
                    node.shards[to].mesh(ShardId(from as u16), msg, now);
                }
            }
        }
    }
    assert!(node.shards[0].is_paused(publisher), "paused by shard 1 after {fed} messages");
    assert!(fed < 20, "paused once the subscriber's output buffer filled, not after {fed}");
    // Shard 1's subscriber drains: it releases the publisher, and shard 0 reads it again.
    let now = node.now;
    node.collect(ShardId(1), sub, now);
    node.run();
    assert!(node.resumed.contains(&publisher));
    assert!(!node.shards[0].is_paused(publisher));
    assert_eq!(node.publishes(sub).len(), fed, "every message fed was delivered");
    assert_eq!(node.shards[1].stats().dropped_qos0_slow, 0);
}

#[test]
fn a_stuck_consumer_stops_pausing_publishers_and_its_qos0_is_dropped_and_counted() {
    let limits =
        Limits { out_buffer_bytes_max: 1000, queued_messages_max: 20, ..Limits::default() };
    let mut node = Node::with_limits(1, limits);
    let sub = node.connect("stuck", V3_1_1, true);
    node.subscribe(sub, "t", QoS::AtMostOnce);
    let publisher = node.connect("p", V3_1_1, true);
    let fed = publish_until_paused(&mut node, publisher, 50);
    assert!(fed < 20 && node.shards[0].is_paused(publisher));
    // Its socket took nothing for the quiet time: the publisher goes on and the consumer is
    // stalled, without waiting out the whole pause limit.
    let later = node.now + shardmq_shard::SUBSCRIBER_STALL_QUIET;
    assert_eq!(node.shards[0].next_deadline(), Some(later), "the shard asks to be ticked then");
    node.shards[0].tick(later);
    node.shards[0].drain_effects(&mut Vec::new());
    assert!(!node.shards[0].is_paused(publisher));
    assert_eq!(publish_until_paused(&mut node, publisher, 50), 50, "not paused again");
    let stats = node.shards[0].stats();
    assert!(stats.dropped_qos0_slow + stats.dropped_queue_full >= 30, "{stats:?}");
    assert!(node.shards[0].take_output(sub).len() <= 1000 + 200);
}

#[test]
fn a_slow_consumer_whose_socket_still_takes_bytes_holds_its_publishers_until_the_pause_limit() {
    let limits =
        Limits { out_buffer_bytes_max: 1000, queued_messages_max: 20, ..Limits::default() };
    let mut node = Node::with_limits(1, limits);
    let sub = node.connect("slow", V3_1_1, true);
    node.subscribe(sub, "t", QoS::AtMostOnce);
    let publisher = node.connect("p", V3_1_1, true);
    publish_until_paused(&mut node, publisher, 50);
    let start = node.now;
    let quiet = shardmq_shard::SUBSCRIBER_STALL_QUIET;
    // The engine reports partial writes (the socket took some bytes) every half quiet time.
    let mut at = start;
    while at + quiet / 2 < start + shardmq_shard::PUBLISHER_PAUSE_MAX {
        at += quiet / 2;
        node.shards[0].output_progress(sub, at);
        node.shards[0].tick(at);
        assert!(node.shards[0].is_paused(publisher), "still paused at {:?}", at - start);
    }
    node.shards[0].tick(start + shardmq_shard::PUBLISHER_PAUSE_MAX);
    node.shards[0].drain_effects(&mut Vec::new());
    assert!(!node.shards[0].is_paused(publisher), "released at the pause limit");
}

#[test]
fn suback_waits_until_every_shard_has_the_route() {
    let mut node = Node::new(3);
    let sub = node.connect(&node.id_on("s", 0), V5, true);
    node.take(sub);
    let now = node.now;
    node.shards[0].packet(
        sub,
        Packet::Subscribe(Subscribe {
            packet_id: pid(4),
            properties: Properties::default(),
            filters: vec![TopicFilterEntry {
                filter: ByteString::from("x"),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }),
        now,
    );
    let mut effects = Vec::new();
    node.shards[0].drain_effects(&mut effects);
    assert!(
        effects.iter().all(|e| matches!(e, Effect::Mesh(..))),
        "no SUBACK before the other shards answer: {effects:?}"
    );
    assert_eq!(node.shards[0].take_output(sub), BytesMut::new());
}

#[test]
fn protocol_errors_close_with_the_reason_code() {
    let mut node = Node::new(1);
    let c = node.connect("c", V5, true);
    node.take(c);
    node.send(c, Packet::Connect(Box::new(connect("c", V5, true))));
    let got = node.take(c);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::PROTOCOL_ERROR)
    );
    assert!(node.closed.contains(&c));
}

#[test]
fn retained_qos0_messages_wait_for_the_socket_instead_of_being_dropped() {
    let limits = Limits { out_buffer_bytes_max: 1024, ..Limits::default() };
    let mut node = Node::with_limits(2, limits);
    let publisher = node.connect("p", V3_1_1, true);
    let payload = "y".repeat(100);
    for i in 0..300 {
        node.publish(publisher, &format!("keep/{i}"), &payload, QoS::AtMostOnce, true);
    }
    let sub = node.connect("s", V3_1_1, true);
    node.subscribe(sub, "keep/#", QoS::AtMostOnce);
    assert_eq!(node.publishes(sub).len(), 300);
    assert_eq!(node.shards.iter().map(|s| s.stats().dropped_qos0_slow).sum::<u64>(), 0);
}

#[test]
fn topic_aliases_to_the_client_up_to_its_maximum() {
    let mut node = Node::new(2);
    let mut c = connect("s", V5, true);
    c.properties.topic_alias_maximum = Some(2);
    let sub = node.connect_with(c);
    node.subscribe(sub, "#", QoS::AtMostOnce);
    let publisher = node.connect("p", V5, true);
    for topic in ["a/one", "a/one", "b/two", "c/three"] {
        node.publish(publisher, topic, "m", QoS::AtMostOnce, false);
    }
    let got: Vec<(String, Option<u16>)> = node
        .publishes(sub)
        .iter()
        .map(|p| (p.topic.to_string(), p.properties.topic_alias))
        .collect();
    let expected = [
        ("a/one".to_string(), Some(1)),
        (String::new(), Some(1)),
        ("b/two".to_string(), Some(2)),
        ("c/three".to_string(), None),
    ];
    assert_eq!(got, expected);
}

#[test]
fn message_expiry_drops_expired_messages_and_forwards_the_time_left() {
    let mut node = Node::new(2);
    let sub = node.connect("s", V5, false);
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.lose(sub);
    let publisher = node.connect("p", V5, true);
    let with_expiry = |payload: &str, secs| {
        let mut p = publish("t", payload, QoS::AtLeastOnce, false, PacketId::new(3));
        p.properties.message_expiry_interval = Some(secs);
        Packet::Publish(p)
    };
    node.send(publisher, with_expiry("short", 5));
    node.send(publisher, with_expiry("long", 60));
    node.advance(Duration::from_secs(6));
    let again = node.connect("s", V5, false);
    let got: Vec<Publish> = node
        .take(again)
        .into_iter()
        .filter_map(|p| if let Packet::Publish(p) = p { Some(p) } else { None })
        .collect();
    assert_eq!(payloads(&got), ["long"], "the expired message is not delivered");
    assert_eq!(got[0].properties.message_expiry_interval, Some(54), "60 s less the 6 s waited");
}

/// [MQTT-3.14.2-2] and 3.1.2.11.2: a DISCONNECT may change the Session Expiry Interval of a
/// session that had a non-zero one; a session created with 0 cannot be given one (0x82).
#[test]
fn disconnect_sets_a_new_session_expiry_interval() {
    let disconnect_with_expiry = |secs: u32| {
        let properties =
            Properties { session_expiry_interval: Some(secs), ..Properties::default() };
        Packet::Disconnect(Disconnect { reason: ReasonCode::SUCCESS, properties })
    };
    let mut node = Node::new(2);
    let mut c = connect("s", V5, true);
    c.properties.session_expiry_interval = Some(1);
    let first = node.connect_with(c);
    node.subscribe(first, "t", QoS::AtLeastOnce);
    node.send(first, disconnect_with_expiry(5));
    node.advance(Duration::from_secs(3));
    let mut c = connect("s", V5, false);
    c.properties.session_expiry_interval = Some(1);
    let again = node.connect_with(c);
    assert!(connack(&node.take(again)).session_present, "the longer expiry kept the session");

    // Shortened to 0 at DISCONNECT: the session ends with the connection.
    node.send(again, disconnect_with_expiry(0));
    let mut c = connect("s", V5, false);
    c.properties.session_expiry_interval = Some(1);
    let third = node.connect_with(c);
    assert!(!connack(&node.take(third)).session_present, "expiry 0 ended the session");

    // Connected with 0: a non-zero value at DISCONNECT is a protocol error.
    node.lose(third);
    let zero = node.connect("z", V5, true);
    node.take(zero);
    node.send(zero, disconnect_with_expiry(5));
    let packets = node.take(zero);
    let reason = packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason),
        _ => None,
    });
    assert_eq!(reason, Some(ReasonCode::PROTOCOL_ERROR), "got {packets:?}");
}

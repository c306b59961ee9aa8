//! The ACL at the shard: refused subscriptions, publishes, wills and deliveries, on both
//! protocol versions, with a small policy standing in for the ACL file.

mod harness;

use std::sync::Arc;

use harness::{connack, connect, payloads, pid, Node};
use shardmq_codec::{
    ByteString, Bytes, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilterEntry, Will,
};
use shardmq_shard::authorize::Authorizer;
use shardmq_shard::topic_tree::topic_matches;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

/// User "alice" reads and writes `a/#` except `a/secret`; "admin" may publish anywhere; everyone
/// else may only read `public/#`.
#[derive(Debug)]
struct Policy;

impl Authorizer for Policy {
    fn can_publish(&self, username: Option<&str>, _client_id: &str, topic: &str) -> bool {
        match username {
            Some("admin") => true,
            Some("alice") => topic_matches("a/#", topic) && topic != "a/secret",
            _ => false,
        }
    }

    fn can_subscribe(&self, username: Option<&str>, _client_id: &str, filter: &str) -> bool {
        match username {
            Some("alice") => filter == "a/#" || filter.starts_with("a/"),
            _ => filter.starts_with("public/"),
        }
    }

    fn can_read(&self, username: Option<&str>, _client_id: &str, topic: &str) -> bool {
        match username {
            Some("alice") => topic_matches("a/#", topic) && topic != "a/secret",
            _ => topic_matches("public/#", topic),
        }
    }
}

fn node() -> Node {
    let mut node = Node::new(2);
    for shard in &mut node.shards {
        shard.set_authorizer(Some(Arc::new(Policy)));
    }
    node
}

fn connect_as(
    node: &mut Node,
    client_id: &str,
    user: Option<&str>,
    version: ProtocolVersion,
) -> shardmq_shard::ConnId {
    let mut packet = connect(client_id, version, true);
    packet.username = user.map(ByteString::from);
    let conn = node.connect_with(packet);
    let packets = node.take(conn);
    assert_eq!(connack(&packets).reason, ReasonCode::SUCCESS, "{packets:?}");
    conn
}

fn suback_reasons(node: &mut Node, conn: shardmq_shard::ConnId, filter: &str) -> Vec<ReasonCode> {
    node.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            properties: Properties::default(),
            filters: vec![TopicFilterEntry {
                filter: ByteString::from(filter),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        }),
    );
    node.take(conn)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::SubAck(ack) => Some(ack.reasons),
            _ => None,
        })
        .expect("a SUBACK")
}

#[test]
fn a_refused_subscribe_gets_0x87_on_v5_and_0x80_on_v311() {
    let mut node = node();
    let v5 = connect_as(&mut node, "guest5", None, V5);
    assert_eq!(suback_reasons(&mut node, v5, "a/#"), [ReasonCode::NOT_AUTHORIZED]);
    assert_eq!(suback_reasons(&mut node, v5, "$share/g/a/#"), [ReasonCode::NOT_AUTHORIZED]);
    assert_eq!(suback_reasons(&mut node, v5, "public/#"), [ReasonCode(1)]);
    let v3 = connect_as(&mut node, "guest3", None, V3);
    let refused = suback_reasons(&mut node, v3, "a/#");
    assert_eq!(refused.len(), 1);
    assert!(refused[0].is_error(), "{refused:?}");
}

#[test]
fn a_refused_publish_is_dropped_and_answered_0x87_on_v5() {
    let mut node = node();
    let reader = connect_as(&mut node, "reader", Some("alice"), V5);
    node.subscribe(reader, "a/#", QoS::AtLeastOnce);
    let writer = connect_as(&mut node, "writer", Some("alice"), V5);
    node.publish(writer, "a/secret", "no", QoS::AtLeastOnce, true);
    let acks: Vec<Packet> = node.take(writer);
    assert!(
        matches!(acks.as_slice(), [Packet::PubAck(ack)] if ack.reason == ReasonCode::NOT_AUTHORIZED),
        "{acks:?}"
    );
    // QoS 2 on v5: PUBREC 0x87, which ends the exchange (no PUBREL follows).
    node.publish(writer, "a/secret", "no", QoS::ExactlyOnce, false);
    let recs: Vec<Packet> = node.take(writer);
    assert!(
        matches!(recs.as_slice(), [Packet::PubRec(rec)] if rec.reason == ReasonCode::NOT_AUTHORIZED),
        "{recs:?}"
    );
    node.publish(writer, "a/ok", "yes", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&node.publishes(reader)), ["yes"]);

    // Refused on 3.1.1 too, but acknowledged as 3.1.1 can only do; nothing is retained.
    let guest = connect_as(&mut node, "guest", None, V3);
    node.publish(guest, "a/ok", "from a guest", QoS::ExactlyOnce, true);
    assert!(matches!(node.take(guest).as_slice(), [Packet::PubRec(_)]));
    node.send(guest, Packet::PubRel(shardmq_codec::Ack::success(pid(7))));
    assert!(matches!(node.take(guest).as_slice(), [Packet::PubComp(_)]));
    assert!(node.publishes(reader).is_empty());
    let late = connect_as(&mut node, "late", Some("alice"), V5);
    node.subscribe(late, "a/#", QoS::AtLeastOnce);
    assert!(node.publishes(late).is_empty(), "a refused message was retained");
}

#[test]
fn a_deny_narrower_than_the_subscription_holds_for_live_and_retained_messages() {
    let mut node = node();
    let admin = connect_as(&mut node, "admin", Some("admin"), V5);
    node.publish(admin, "a/secret", "retained secret", QoS::AtLeastOnce, true);
    node.publish(admin, "a/1", "retained", QoS::AtLeastOnce, true);
    // Alice's a/# is granted, but a/secret stays unreadable to her: retained and live alike.
    let reader = connect_as(&mut node, "alice-reader", Some("alice"), V5);
    node.subscribe(reader, "a/#", QoS::AtLeastOnce);
    assert_eq!(payloads(&node.publishes(reader)), ["retained"]);
    node.publish(admin, "a/secret", "live secret", QoS::AtMostOnce, false);
    node.publish(admin, "a/2", "live", QoS::AtMostOnce, false);
    assert_eq!(payloads(&node.publishes(reader)), ["live"]);
    // A guest may not subscribe there at all.
    let guest = connect_as(&mut node, "guest", None, V5);
    assert_eq!(suback_reasons(&mut node, guest, "a/#"), [ReasonCode::NOT_AUTHORIZED]);
    assert!(node.publishes(guest).is_empty());
}

#[test]
fn a_will_the_client_may_not_publish_refuses_the_connect() {
    let mut node = node();
    let mut packet = connect("willing", V5, true);
    packet.username = Some(ByteString::from("alice"));
    packet.will = Some(Will {
        topic: ByteString::from("a/secret"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let conn = node.connect_with(packet.clone());
    assert_eq!(connack(&node.take(conn)).reason, ReasonCode::NOT_AUTHORIZED);
    packet.will.as_mut().expect("a will").topic = ByteString::from("a/status");
    let conn = node.connect_with(packet);
    assert_eq!(connack(&node.take(conn)).reason, ReasonCode::SUCCESS);
}

#[test]
fn clients_never_publish_on_sys_topics() {
    let mut node = Node::new(2);
    let client = connect_as(&mut node, "faker", None, V5);
    node.publish(client, "$SYS/broker/clients/connected", "9999", QoS::AtLeastOnce, true);
    let acks: Vec<Packet> = node.take(client);
    assert!(
        matches!(acks.as_slice(), [Packet::PubAck(ack)] if ack.reason == ReasonCode::NOT_AUTHORIZED),
        "{acks:?}"
    );
    let reader = connect_as(&mut node, "reader", None, V5);
    node.send(
        reader,
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            properties: Properties::default(),
            filters: vec![TopicFilterEntry {
                filter: ByteString::from("$SYS/#"),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        }),
    );
    assert!(node.publishes(reader).is_empty(), "a client's $SYS message was retained");
    let mut packet = connect("willing", V5, true);
    packet.will = Some(Will {
        topic: ByteString::from("$SYS/broker/uptime"),
        payload: Bytes::from_static(b"0 seconds"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Properties::default(),
    });
    let conn = node.connect_with(packet);
    assert_eq!(connack(&node.take(conn)).reason, ReasonCode::NOT_AUTHORIZED);
}

fn durable_node(dir: &std::path::Path) -> Node {
    let mut node = Node::durable(dir, 2, 1_790_000_000_000);
    for shard in &mut node.shards {
        shard.set_authorizer(Some(Arc::new(Policy)));
    }
    node
}

/// alice's offline session is checked as alice's after a restart (the user name is in the
/// stored session record) and after it moves to another node (the same record travels).
#[test]
fn an_offline_session_keeps_its_user_name_across_a_restart_and_a_handover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = durable_node(dir.path());
    let mut packet = connect("alice-phone", V3, false);
    packet.username = Some(ByteString::from("alice"));
    let alice = node.connect_with(packet.clone());
    node.subscribe(alice, "a/#", QoS::AtLeastOnce);
    node.lose(alice);
    drop(node);

    let mut node = durable_node(dir.path());
    let admin = connect_as(&mut node, "admin", Some("admin"), V5);
    node.publish(admin, "a/after-restart", "1", QoS::AtLeastOnce, false);

    // Handed over to another node as the engine ships it: the encoded session record.
    let home = shardmq_shard::home_shard("alice-phone", 2).index();
    let now = node.now;
    let mut restored = node.shards[home].hand_over("alice-phone", false, now).expect("a session");
    node.run();
    let (client_id, record) = restored.sessions.pop().expect("the session");
    assert_eq!(record.username.as_deref(), Some("alice"));
    let shipped = shardmq_shard::persist::encode_session(&record);
    let record = shardmq_shard::persist::decode_session(&shipped).expect("decodes");
    restored.sessions.push((client_id, record));
    let other_dir = tempfile::tempdir().expect("temp dir");
    let mut other = durable_node(other_dir.path());
    other.shards[home].adopt_session(restored, now);
    other.run();
    let admin = connect_as(&mut other, "admin", Some("admin"), V5);
    other.publish(admin, "a/after-handover", "2", QoS::AtLeastOnce, false);

    let alice = other.connect_with(packet);
    assert_eq!(payloads(&other.publishes(alice)), ["1", "2"]);
}

/// Alice may read `a/#` until `revoked` is set (an ACL reload that takes it away).
#[derive(Debug)]
struct Revocable {
    revoked: Arc<std::sync::atomic::AtomicBool>,
}

impl Authorizer for Revocable {
    fn can_publish(&self, _username: Option<&str>, _client_id: &str, _topic: &str) -> bool {
        true
    }

    fn can_subscribe(&self, _username: Option<&str>, _client_id: &str, _filter: &str) -> bool {
        true
    }

    fn can_read(&self, username: Option<&str>, _client_id: &str, topic: &str) -> bool {
        let revoked = self.revoked.load(std::sync::atomic::Ordering::Relaxed);
        username != Some("alice") || !revoked || !topic_matches("a/#", topic)
    }
}

#[test]
fn messages_queued_before_an_acl_change_go_only_where_the_user_may_still_read() {
    let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut node = Node::new(2);
    for shard in &mut node.shards {
        shard.set_authorizer(Some(Arc::new(Revocable { revoked: revoked.clone() })));
    }
    let mut persistent = connect("alice-dev", V5, false);
    persistent.username = Some(ByteString::from("alice"));
    let reader = node.connect_with(persistent.clone());
    node.subscribe(reader, "#", QoS::AtLeastOnce);
    node.lose(reader);
    let writer = connect_as(&mut node, "writer", Some("bob"), V5);
    node.publish(writer, "a/1", "revoked before delivery", QoS::AtLeastOnce, false);
    node.publish(writer, "b/1", "still readable", QoS::AtLeastOnce, false);

    // The ACL changes while the messages wait in alice's queue.
    revoked.store(true, std::sync::atomic::Ordering::Relaxed);
    let back = node.connect_with(persistent);
    let got = node.take(back);
    assert!(connack(&got).session_present);
    let delivered: Vec<&str> = got
        .iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => std::str::from_utf8(&publish.payload).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, ["still readable"]);
    let refused: u64 = node.shards.iter().map(|shard| shard.stats().dropped_not_authorized).sum();
    assert_eq!(refused, 1);
}

//! Durable shards at their boundary: acknowledgements held until the store has the message,
//! refusals when it cannot be stored, and a restart (the node dropped, then rebuilt from the
//! same files) that brings back sessions, queues, in-flight state, retained messages and wills,
//! also under another shard count.

mod harness;

use std::time::Duration;

use harness::*;
use shardmq_codec::{
    Ack, ByteString, Bytes, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    Will,
};

use ProtocolVersion::{V3_1_1, V5};

const T0: u64 = 1_800_000_000_000;

fn persistent(client_id: &str, version: ProtocolVersion) -> Connect {
    let mut c = connect(client_id, version, false);
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

fn acks(node: &mut Node, conn: shardmq_shard::ConnId) -> Vec<Packet> {
    node.take(conn)
        .into_iter()
        .filter(|p| matches!(p, Packet::PubAck(_) | Packet::PubRec(_)))
        .collect()
}

/// A QoS 2 PUBLISH on topic `t`.
fn qos2_publish(packet_id: u16, payload: &'static [u8], dup: bool) -> Publish {
    Publish {
        dup,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: ByteString::from("t"),
        packet_id: shardmq_codec::PacketId::new(packet_id),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn the_acknowledgement_waits_for_the_commit_on_every_shard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::durable(dir.path(), 3, T0);
    // The subscriber's session lives on another shard than the publisher's.
    let sub_id = node.id_on("sub", 2);
    let sub = node.connect_with(persistent(&sub_id, V5));
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.lose(sub);
    let publisher = node.connect(&node.id_on("pub", 0), V5, true);
    node.take(publisher);

    node.hold_commits = true;
    node.publish(publisher, "t", "m", QoS::AtLeastOnce, false);
    assert!(acks(&mut node, publisher).is_empty(), "no PUBACK before the write is durable");
    node.flush_commits();
    assert!(
        matches!(acks(&mut node, publisher).as_slice(), [Packet::PubAck(a)] if a.reason == ReasonCode::SUCCESS)
    );
}

#[test]
fn clean_sessions_and_qos0_do_not_wait_for_the_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::durable(dir.path(), 2, T0);
    let sub = node.connect("clean-sub", V5, true);
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = node.connect("pub", V5, true);
    node.take(publisher);
    node.hold_commits = true;
    node.publish(publisher, "t", "m", QoS::AtLeastOnce, false);
    assert_eq!(acks(&mut node, publisher).len(), 1, "nothing to store: acknowledged at once");
    assert_eq!(node.publishes(sub).len(), 1);
}

#[test]
fn a_full_disk_refuses_instead_of_acknowledging_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let sub = node.connect_with(persistent("offline", V5));
        node.subscribe(sub, "t", QoS::AtLeastOnce);
        node.lose(sub);
        let v5 = node.connect("p5", V5, true);
        let v3 = node.connect("p3", V3_1_1, true);
        node.take(v5);
        node.take(v3);
        // The disk fills up: every write of the redb backend fails from now on.
        node.faults.fail_after(0);
        node.publish(v5, "t", "refused", QoS::AtLeastOnce, false);
        let got = acks(&mut node, v5);
        assert!(
            matches!(got.as_slice(), [Packet::PubAck(a)] if a.reason == ReasonCode::UNSPECIFIED_ERROR),
            "{got:?}"
        );
        node.publish(v3, "t", "refused", QoS::AtLeastOnce, false);
        assert!(acks(&mut node, v3).is_empty(), "3.1.1 cannot be refused: no PUBACK");
        assert!(node.closed.contains(&v3), "3.1.1 publisher's connection closed instead");
        // QoS 0 to clean sessions does not need the disk and keeps flowing.
        let clean = node.connect("clean", V5, true);
        node.subscribe(clean, "live", QoS::AtMostOnce);
        node.publish(v5, "live", "still flowing", QoS::AtMostOnce, false);
        assert_eq!(node.publishes(clean).len(), 1);
        // Space is freed: the broker goes on without a restart.
        node.faults.recover();
        node.publish(v5, "t", "stored", QoS::AtLeastOnce, false);
        let got = acks(&mut node, v5);
        assert!(matches!(got.as_slice(), [Packet::PubAck(a)] if a.reason == ReasonCode::SUCCESS));
    }
    // The acknowledged message is there after a restart.
    let mut node = Node::durable(dir.path(), 2, T0 + 1_000);
    let sub = node.connect_with(persistent("offline", V5));
    let got = node.take(sub);
    assert!(connack(&got).session_present);
    let payloads: Vec<&[u8]> = got
        .iter()
        .filter_map(|p| if let Packet::Publish(p) = p { Some(&p.payload[..]) } else { None })
        .collect();
    assert!(payloads.contains(&&b"stored"[..]), "{payloads:?}");
}

/// A 3.1.1 publisher closed because its message could not be stored loses its connection as on
/// any close the server makes for an error: its will goes out and its session (clean, expiry 0)
/// ends. Found by the session fuzz target (shard/fuzz/regressions/session/): the session stayed
/// attached to the closed connection, so it never expired and its will was never sent.
#[test]
fn a_storage_failure_close_detaches_the_session_and_sends_the_will() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::durable(dir.path(), 2, T0);
    // An offline persistent subscriber: a QoS 1 message on `t` must be stored for it.
    let sub = node.connect_with(persistent("offline", V5));
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.lose(sub);
    let watcher = node.connect("watcher", V5, true);
    node.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let mut with_will = connect("p3", V3_1_1, true);
    with_will.will = Some(Will {
        topic: ByteString::from("will/p3"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let v3 = node.connect_with(with_will);
    node.take(v3);
    node.take(watcher);
    node.faults.fail_after(0);
    node.publish(v3, "t", "refused", QoS::AtLeastOnce, false);
    assert!(node.closed.contains(&v3), "3.1.1 publisher's connection closed");
    assert_eq!(payloads(&node.publishes(watcher)), ["gone"], "the will went out");
    assert!(node.ended.iter().any(|id| id == "p3"), "the clean session ended");
    let shard = &node.shards[node.conns[&v3].0.index()];
    assert!(!shard.has_session("p3"), "no session is left attached to the closed connection");
}

#[test]
fn a_restart_restores_sessions_queues_and_retained_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let sub = node.connect_with(persistent("keeper", V3_1_1));
        node.subscribe(sub, "q/#", QoS::ExactlyOnce);
        node.lose(sub);
        let publisher = node.connect("pub", V5, true);
        for i in 0..3 {
            node.publish(publisher, &format!("q/{i}"), &format!("m{i}"), QoS::AtLeastOnce, false);
        }
        node.publish(publisher, "kept", "retained", QoS::AtMostOnce, true);
        node.publish(publisher, "gone", "retained", QoS::AtMostOnce, true);
        node.publish(publisher, "gone", "", QoS::AtMostOnce, true);
        assert_eq!(acks(&mut node, publisher).len(), 3);
    }
    let mut node = Node::durable(dir.path(), 2, T0 + 5_000);
    let again = node.connect_with(persistent("keeper", V3_1_1));
    let got = node.take(again);
    assert!(connack(&got).session_present);
    let payloads: Vec<&[u8]> = got
        .iter()
        .filter_map(|p| if let Packet::Publish(p) = p { Some(&p.payload[..]) } else { None })
        .collect();
    assert_eq!(payloads, [&b"m0"[..], b"m1", b"m2"], "queued messages in order");
    let fresh = node.connect("fresh", V5, true);
    node.subscribe(fresh, "#", QoS::AtMostOnce);
    let retained: Vec<String> = node.publishes(fresh).iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(retained, ["kept"]);
}

#[test]
fn in_flight_messages_are_resent_with_dup_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let sub = node.connect_with(persistent("slow", V5));
        node.subscribe(sub, "t", QoS::ExactlyOnce);
        let publisher = node.connect("pub", V5, true);
        node.publish(publisher, "t", "one", QoS::AtLeastOnce, false);
        node.publish(publisher, "t", "two", QoS::ExactlyOnce, false);
        let got = node.publishes(sub);
        assert_eq!(got.len(), 2);
        // "two" gets as far as PUBREL; "one" is never acknowledged. Then the broker dies.
        node.send(sub, Packet::PubRec(Ack::success(got[1].packet_id.expect("qos 2"))));
    }
    let mut node = Node::durable(dir.path(), 2, T0 + 1_000);
    let again = node.connect_with(persistent("slow", V5));
    let got = node.take(again);
    assert!(connack(&got).session_present);
    let resent: Vec<&Packet> = got.iter().skip(1).collect();
    assert!(
        matches!(resent.as_slice(), [Packet::Publish(p), Packet::PubRel(_)] if p.dup && &p.payload[..] == b"one"),
        "{resent:?}"
    );
}

#[test]
fn a_qos2_message_refused_for_a_full_disk_frees_its_packet_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let qos2 = |payload: &'static [u8], dup| qos2_publish(5, payload, dup);
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let sub = node.connect_with(persistent("sub", V5));
        node.subscribe(sub, "t", QoS::AtLeastOnce);
        node.lose(sub);
        let v5 = node.connect_with(persistent("p5", V5));
        let v3 = node.connect_with(persistent("p3", V3_1_1));
        node.take(v5);
        node.take(v3);
        node.faults.fail_after(0);
        node.send(v5, Packet::Publish(qos2(b"refused", false)));
        let got = acks(&mut node, v5);
        assert!(
            matches!(got.as_slice(), [Packet::PubRec(a)] if a.reason == ReasonCode::UNSPECIFIED_ERROR),
            "{got:?}"
        );
        node.send(v3, Packet::Publish(qos2(b"closed", false)));
        assert!(acks(&mut node, v3).is_empty() && node.closed.contains(&v3));
        node.faults.recover();
        // A refusal ends the v5 exchange [MQTT-4.3.3]: the same packet id is a new message.
        node.send(v5, Packet::Publish(qos2(b"new with the same id", false)));
        let got = acks(&mut node, v5);
        assert!(matches!(got.as_slice(), [Packet::PubRec(a)] if a.reason == ReasonCode::SUCCESS));
        // The 3.1.1 publisher saw no PUBREC and resends on its next connection.
        let v3 = node.connect_with(persistent("p3", V3_1_1));
        node.take(v3);
        node.send(v3, Packet::Publish(qos2(b"resent", true)));
        assert!(matches!(acks(&mut node, v3).as_slice(), [Packet::PubRec(_)]));
    }
    // Both acknowledged messages were stored, not taken for duplicates of the refused ones.
    let mut node = Node::durable(dir.path(), 2, T0 + 1_000);
    let sub = node.connect_with(persistent("sub", V5));
    let payloads: Vec<Bytes> = node
        .take(sub)
        .into_iter()
        .filter_map(|p| if let Packet::Publish(p) = p { Some(p.payload) } else { None })
        .collect();
    assert_eq!(payloads, [&b"new with the same id"[..], &b"resent"[..]]);
}

#[test]
fn an_inbound_qos2_message_is_not_delivered_twice_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let qos2 = |dup| qos2_publish(5, b"once", dup);
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let sub = node.connect_with(persistent("sub", V5));
        node.subscribe(sub, "t", QoS::AtLeastOnce);
        node.lose(sub);
        let publisher = node.connect_with(persistent("pub", V5));
        node.send(publisher, Packet::Publish(qos2(false)));
        assert!(matches!(acks(&mut node, publisher).as_slice(), [Packet::PubRec(_)]));
    }
    let mut node = Node::durable(dir.path(), 2, T0 + 1_000);
    let publisher = node.connect_with(persistent("pub", V5));
    node.take(publisher);
    // The publisher did not see PUBREC's effect and resends: acknowledged, not delivered again.
    node.send(publisher, Packet::Publish(qos2(true)));
    assert!(matches!(acks(&mut node, publisher).as_slice(), [Packet::PubRec(_)]));
    let sub = node.connect_with(persistent("sub", V5));
    let delivered = node.take(sub).iter().filter(|p| matches!(p, Packet::Publish(_))).count();
    assert_eq!(delivered, 1, "exactly once");
}

#[test]
fn session_expiry_keeps_counting_while_the_broker_is_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut node = Node::durable(dir.path(), 1, T0);
        let mut short = persistent("short", V5);
        short.properties.session_expiry_interval = Some(10);
        let a = node.connect_with(short);
        node.lose(a);
        let long = node.connect_with(persistent("long", V5));
        node.lose(long);
    }
    // Down for 20 seconds: the 10-second session is gone, the one-hour session is not.
    let mut node = Node::durable(dir.path(), 1, T0 + 20_000);
    node.advance(Duration::from_millis(10));
    let short = node.connect_with(persistent("short", V5));
    assert!(!connack(&node.take(short)).session_present);
    let long = node.connect_with(persistent("long", V5));
    assert!(connack(&node.take(long)).session_present);
}

#[test]
fn a_delayed_will_survives_a_restart_and_is_published_when_due() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let mut c = persistent("dying", V5);
        c.will = Some(Will {
            topic: ByteString::from("last/words"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties { will_delay_interval: Some(30), ..Properties::default() },
        });
        let conn = node.connect_with(c);
        node.lose(conn);
    }
    let mut node = Node::durable(dir.path(), 2, T0 + 10_000);
    let watcher = node.connect("watcher", V5, true);
    node.subscribe(watcher, "last/#", QoS::AtLeastOnce);
    node.advance(Duration::from_secs(15));
    assert!(node.publishes(watcher).is_empty(), "20 s of the 30 s delay have passed");
    node.advance(Duration::from_secs(6));
    let got = node.publishes(watcher);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"bye");
}

#[test]
fn changing_the_shard_count_keeps_every_session_and_retained_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ids: Vec<String> = (0..12).map(|i| format!("client-{i}")).collect();
    // The version marks of retained writes (a cluster's) move with their topics.
    let mut versions = Vec::new();
    {
        let mut node = Node::durable(dir.path(), 2, T0);
        let clock = shardmq_shard::persist::WallClock::fixed(node.now, T0);
        let node_clock = shardmq_shard::RetainedClock::new();
        for (tag, shard) in node.shards.iter_mut().enumerate() {
            shard.enable_retained_versions(clock, tag as u64, node_clock.clone());
        }
        for id in &ids {
            let conn = node.connect_with(persistent(id, V5));
            node.subscribe(conn, &format!("to/{id}"), QoS::AtLeastOnce);
            node.lose(conn);
        }
        let publisher = node.connect("pub", V5, true);
        for id in &ids {
            node.publish(publisher, &format!("to/{id}"), id, QoS::AtLeastOnce, false);
            node.publish(publisher, &format!("retained/{id}"), id, QoS::AtMostOnce, true);
        }
        node.publish(publisher, "retained/deleted", "", QoS::AtMostOnce, true);
        for topic in
            ids.iter().map(|id| format!("retained/{id}")).chain(["retained/deleted".into()])
        {
            let version = mark_version(&node, &topic);
            assert_ne!(version, 0, "{topic} has no version");
            versions.push((topic, version));
        }
    }
    for shards in [3, 1, 4] {
        let mut node = Node::durable(dir.path(), shards, T0 + 1_000);
        let files = shardmq_storage::shard_files(dir.path()).expect("data dir");
        assert_eq!(files.len(), usize::from(shards), "one file per shard after re-homing");
        for id in &ids {
            let conn = node.connect_with(persistent(id, V5));
            let got = node.take(conn);
            assert!(connack(&got).session_present, "{id} with {shards} shards");
            let first = shards == 3;
            let delivered = got
                .iter()
                .any(|p| matches!(p, Packet::Publish(p) if &p.payload[..] == id.as_bytes()));
            // The queued message is delivered on the first restart, then acknowledged.
            assert_eq!(delivered, first, "{id} with {shards} shards");
            for p in got {
                if let Packet::Publish(p) = p {
                    node.send(conn, Packet::PubAck(Ack::success(p.packet_id.expect("qos 1"))));
                }
            }
            node.lose(conn);
        }
        let watcher = node.connect("watcher", V5, true);
        node.subscribe(watcher, "retained/#", QoS::AtMostOnce);
        assert_eq!(node.publishes(watcher).len(), ids.len(), "with {shards} shards");
        for (topic, version) in &versions {
            assert_eq!(mark_version(&node, topic), *version, "{topic} with {shards} shards");
        }
    }
}

/// The version of the last write on retained `topic`, from the shard whose partition holds it.
fn mark_version(node: &Node, topic: &str) -> u64 {
    let shards = node.shard_count();
    node.shards[shardmq_shard::retained_shard(topic, shards).index()].retained_mark_version(topic)
}

/// A QoS 2 PUBLISH whose PUBREC is held for its commit, resent on a new connection (a client
/// that reconnects resends): the resend is not acknowledged before the commit ends, and when it
/// ends the PUBREC goes to the new connection, saying whether the message was stored.
#[test]
fn a_qos2_resend_on_a_new_connection_waits_for_the_first_copys_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let qos2 = |dup| qos2_publish(7, b"resent", dup);
    let mut node = Node::durable(dir.path(), 2, T0);
    let sub = node.connect_with(persistent("sub", V5));
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    node.lose(sub);
    let first = node.connect_with(persistent("pub", V5));
    node.take(first);
    node.hold_commits = true;
    node.send(first, Packet::Publish(qos2(false)));
    assert!(acks(&mut node, first).is_empty(), "acknowledged before its commit");
    node.lose(first);
    let second = node.connect_with(persistent("pub", V5));
    node.take(second);
    node.send(second, Packet::Publish(qos2(true)));
    assert!(acks(&mut node, second).is_empty(), "the resend was acknowledged before the commit");
    // The commit fails: the new connection hears it (and the id is free again).
    node.faults.fail_after(0);
    node.flush_commits();
    let got = acks(&mut node, second);
    assert!(
        matches!(got.as_slice(), [Packet::PubRec(a)] if a.reason == ReasonCode::UNSPECIFIED_ERROR),
        "{got:?}"
    );
    node.faults.recover();
    node.send(second, Packet::Publish(qos2(false)));
    let got = acks(&mut node, second);
    assert!(
        matches!(got.as_slice(), [Packet::PubRec(a)] if a.reason == ReasonCode::SUCCESS),
        "{got:?}"
    );
}

/// A client that reconnects with a clean start and reuses a QoS 2 packet id while the commit of
/// its old session's message under that id is still running: when that commit fails, the new
/// message keeps its id (a duplicate of it is still recognised, not delivered twice).
#[test]
fn a_failed_commit_frees_only_its_own_qos2_packet_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let qos2 = |payload: &'static [u8], dup| qos2_publish(9, payload, dup);
    let mut node = Node::durable(dir.path(), 2, T0);
    let sub = node.connect_with(persistent("sub", V5));
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    let old = node.connect_with(persistent("pub", V5));
    node.take(old);
    node.hold_commits = true;
    node.send(old, Packet::Publish(qos2(b"old", false)));
    // The old message's commit is under way ...
    let shard = node.conns[&old].0.index();
    let first = node.shards[shard].take_commit_batch().expect("the old message's batch");
    node.lose(old);
    // ... when the client comes back with a clean start: a new session, which takes id 9 for
    // another message (its writes go in the next batch).
    let new = node.connect_with(connect("pub", V5, true));
    node.take(new);
    node.send(new, Packet::Publish(qos2(b"new", false)));
    // The first commit fails; the second succeeds.
    let now = node.now;
    node.shards[shard].commit_finished(first.tickets, false, now);
    node.run();
    node.flush_commits();
    let got = acks(&mut node, new);
    assert!(
        matches!(got.as_slice(), [Packet::PubRec(a)] if a.reason == ReasonCode::SUCCESS),
        "{got:?}"
    );
    let delivered = |node: &mut Node| {
        node.publishes(sub).into_iter().filter(|p| &p.payload[..] == b"new").count()
    };
    let before = delivered(&mut node);
    // The new message's duplicate is still a duplicate: acknowledged, not delivered again.
    node.send(new, Packet::Publish(qos2(b"new", true)));
    let got = acks(&mut node, new);
    assert!(matches!(got.as_slice(), [Packet::PubRec(_)]), "{got:?}");
    assert_eq!(delivered(&mut node), 0, "the duplicate was delivered again ({before} before)");
}

/// QoS 1 PUBLISHes whose PUBACK waits for a commit count against the Receive Maximum, as
/// unreleased QoS 2 ones do [MQTT-3.3.4-9]: one more than the CONNACK allowed is 0x93.
#[test]
fn held_qos1_acknowledgements_count_against_the_receive_maximum() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::durable(dir.path(), 1, T0);
    let sub = node.connect_with(persistent("sub", V5));
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = node.connect("pub", V5, true);
    let receive_maximum = connack(&node.take(publisher)).properties.receive_maximum.unwrap();
    let qos1 = |id: u16| {
        let mut p = qos2_publish(id, b"m", false);
        p.qos = QoS::AtLeastOnce;
        Packet::Publish(p)
    };

    // Within the window, acknowledged after the commit, the window opens again.
    node.hold_commits = true;
    for id in 1..=receive_maximum {
        node.send(publisher, qos1(id));
    }
    assert!(acks(&mut node, publisher).is_empty(), "PUBACKs wait for the commit");
    node.flush_commits();
    assert_eq!(acks(&mut node, publisher).len(), usize::from(receive_maximum));

    // One over the window while they are all held: refused with 0x93.
    node.hold_commits = true;
    for id in 1..=receive_maximum {
        node.send(publisher, qos1(id));
    }
    node.send(publisher, qos1(receive_maximum + 1));
    let refused = node.take(publisher).into_iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason),
        _ => None,
    });
    assert_eq!(refused, Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
}

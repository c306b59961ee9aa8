//! Durability across a crash: the broker killed with SIGKILL (nothing flushed, nothing closed)
//! and restarted on the same data directory. What a publisher saw acknowledged (PUBACK, PUBREC)
//! for a persistent session or a retained topic must be there after the restart; what was in
//! flight to a subscriber is resent with DUP; a restart with another shard count keeps every
//! session. The same behaviour without processes is in `shard/tests/durability.rs`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use shardmq_io::codec::{
    Ack, ByteString, Bytes, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_tests::{
    client_id_on_shard, connect_ok, connect_packet, disconnect, persistent_connect_packet, Broker,
    RawClient, Received, TestDir,
};

use ProtocolVersion::{V3_1_1, V5};

/// How long a test waits for a reply the broker should send at once.
const REPLY: Duration = Duration::from_secs(3);
/// How long a subscriber waits for more after the last message before it decides it has all.
const IDLE: Duration = Duration::from_millis(700);
/// The most a subscriber spends collecting its messages.
const COLLECT: Duration = Duration::from_secs(10);

fn packet_id(id: u16) -> PacketId {
    PacketId::new(id).expect("packet ids start at 1")
}

fn publish(topic: &str, payload: &str, qos: QoS, id: Option<u16>, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        packet_id: id.map(packet_id),
        properties: Properties::default(),
        payload: Bytes::from(payload.to_string()),
    })
}

/// Subscribes to `filter` at `qos` and waits for a SUBACK that grants it.
fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::with_qos(qos),
        }],
    }));
    loop {
        match client.expect_packet(REPLY) {
            Packet::SubAck(suback) => {
                assert_eq!(suback.reasons, [ReasonCode(qos as u8)], "SUBACK for {filter}");
                return;
            }
            // Retained messages may come before the SUBACK; the callers that care subscribe
            // with their own loop.
            Packet::Publish(_) => {}
            other => panic!("expected SUBACK for {filter}, got {other:?}"),
        }
    }
}

/// One PUBLISH a subscriber received.
#[derive(Debug, Clone)]
struct Got {
    payload: String,
    qos: QoS,
    dup: bool,
    packet_id: Option<u16>,
}

/// Reads PUBLISHes, acknowledging each (QoS 1: PUBACK; QoS 2: PUBREC, then PUBCOMP for the
/// PUBREL) so the broker's window keeps moving, until nothing arrives for [`IDLE`]. Panics if
/// the broker closes the connection or sends something else.
fn collect(client: &mut RawClient, who: &str) -> Vec<Got> {
    let deadline = Instant::now() + COLLECT;
    let mut got = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "{who}: still receiving after {COLLECT:?}");
        match client.next(IDLE) {
            Received::Packet(Packet::Publish(p)) => {
                let id = p.packet_id;
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => client.send(&Packet::PubAck(Ack::success(
                        id.unwrap_or_else(|| panic!("{who}: QoS 1 without a packet id")),
                    ))),
                    QoS::ExactlyOnce => client.send(&Packet::PubRec(Ack::success(
                        id.unwrap_or_else(|| panic!("{who}: QoS 2 without a packet id")),
                    ))),
                }
                got.push(Got {
                    payload: String::from_utf8_lossy(&p.payload).into_owned(),
                    qos: p.qos,
                    dup: p.dup,
                    packet_id: id.map(PacketId::get),
                });
            }
            Received::Packet(Packet::PubRel(rel)) => {
                client.send(&Packet::PubComp(Ack::success(rel.packet_id)))
            }
            Received::Packet(other) => panic!("{who}: unexpected {other:?}"),
            Received::Closed => panic!("{who}: the broker closed the connection"),
            Received::TimedOut => return got,
        }
    }
}

#[test]
fn acknowledged_qos1_and_qos2_messages_survive_kill_9() {
    /// Messages of each QoS the publisher has ready: 2 × N in all, alternating QoS 1 and 2.
    const N: usize = 300;
    /// Acknowledgements seen before the broker is killed.
    const KILL_AFTER: usize = 150;
    /// PUBLISHes the publisher keeps unacknowledged (QoS 2: until PUBCOMP).
    const WINDOW: usize = 32;
    const TOPIC: &str = "crash/stream";

    let dir = TestDir::new("stream");
    let mut first = Broker::start_in(dir.path(), &["--shards", "2"]);
    // The subscribers' sessions live on shard 1, the publisher's connection on shard 0: every
    // acknowledgement waits for the other shard's commit.
    let subscribers = [
        (V3_1_1, client_id_on_shard("crash-sub-3", 1)),
        (V5, client_id_on_shard("crash-sub-5", 1)),
    ];
    for (version, id) in &subscribers {
        let mut client = connect_ok(&first, persistent_connect_packet(*version, id), false);
        subscribe(&mut client, TOPIC, QoS::ExactlyOnce);
        disconnect(client);
    }

    let (mut publisher, connack) =
        RawClient::connect(first.addr(), connect_packet(V5, &client_id_on_shard("crash-pub", 0)));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    let window = WINDOW.min(usize::from(connack.properties.receive_maximum.unwrap_or(u16::MAX)));
    let message = |k: usize| {
        let qos = if k % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        (format!("m{k:04}-q{}", qos as u8), qos)
    };
    let mut sent = 0;
    // Packet id (message index + 1) → message index, until PUBACK or PUBCOMP.
    let mut outstanding: HashMap<u16, usize> = HashMap::new();
    let mut acknowledged = BTreeSet::new();
    let mut refused = Vec::new();
    let mut killed = false;
    let started = Instant::now();
    loop {
        while !killed && outstanding.len() < window && sent < 2 * N {
            let (payload, qos) = message(sent);
            let id = u16::try_from(sent + 1).expect("fewer than 65535 messages");
            publisher.send(&publish(TOPIC, &payload, qos, Some(id), false));
            outstanding.insert(id, sent);
            sent += 1;
        }
        match publisher.next(REPLY) {
            Received::Packet(Packet::PubAck(ack)) => {
                let k = outstanding.remove(&ack.packet_id.get()).expect("PUBACK for a PUBLISH");
                assert_eq!(message(k).1, QoS::AtLeastOnce, "PUBACK for a QoS 2 message");
                if ack.reason.is_error() {
                    refused.push((k, ack.reason));
                } else {
                    acknowledged.insert(k);
                }
            }
            Received::Packet(Packet::PubRec(rec)) => {
                let id = rec.packet_id.get();
                let k = *outstanding.get(&id).expect("PUBREC for a PUBLISH");
                assert_eq!(message(k).1, QoS::ExactlyOnce, "PUBREC for a QoS 1 message");
                if rec.reason.is_error() {
                    refused.push((k, rec.reason));
                    outstanding.remove(&id);
                } else {
                    acknowledged.insert(k);
                    // After the kill the socket only has what the broker sent before it died.
                    if !killed {
                        publisher.send(&Packet::PubRel(Ack::success(rec.packet_id)));
                    }
                }
            }
            Received::Packet(Packet::PubComp(comp)) => {
                outstanding.remove(&comp.packet_id.get()).expect("PUBCOMP for a PUBREL");
            }
            Received::Packet(other) => panic!("publisher: unexpected {other:?}"),
            Received::Closed if killed => break,
            Received::Closed => panic!("publisher: the broker closed the connection"),
            Received::TimedOut => panic!(
                "publisher: no acknowledgement within {REPLY:?} ({} acknowledged, {} \
                 outstanding, killed: {killed})",
                acknowledged.len(),
                outstanding.len()
            ),
        }
        if !killed && acknowledged.len() >= KILL_AFTER {
            first.kill();
            killed = true;
        }
    }
    assert!(killed, "the broker was killed mid-stream");
    assert!(refused.is_empty(), "the broker refused {refused:?}");
    assert!(sent < 2 * N, "the kill came after the whole stream was sent ({sent})");
    let elapsed = started.elapsed();

    let second = Broker::start_in(dir.path(), &["--shards", "2"]);
    for (version, id) in &subscribers {
        let who = format!("{id} ({version:?})");
        let mut client = connect_ok(&second, persistent_connect_packet(*version, id), true);
        let got = collect(&mut client, &who);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for g in &got {
            *counts.entry(&g.payload).or_default() += 1;
        }
        let sent_payloads: HashMap<String, QoS> = (0..sent).map(message).collect();
        for g in &got {
            let qos = sent_payloads
                .get(&g.payload)
                .unwrap_or_else(|| panic!("{who}: got {:?}, which was never sent", g.payload));
            assert_eq!(g.qos, *qos, "{who}: {:?} delivered at another QoS", g.payload);
        }
        let missing: Vec<String> = acknowledged
            .iter()
            .map(|&k| message(k).0)
            .filter(|payload| !counts.contains_key(payload.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{who}: {} of the {} acknowledged messages are missing after the restart (sent \
             {sent}, received {}): {missing:?}",
            missing.len(),
            acknowledged.len(),
            got.len()
        );
        let twice: Vec<(&str, usize)> = counts
            .iter()
            .filter(|(payload, &n)| n > 1 && sent_payloads[**payload] == QoS::ExactlyOnce)
            .map(|(payload, &n)| (*payload, n))
            .collect();
        assert!(twice.is_empty(), "{who}: QoS 2 messages delivered more than once: {twice:?}");
        eprintln!(
            "{who}: {} acknowledged of {sent} sent before the kill ({elapsed:?}); received {} \
             ({} distinct) after the restart",
            acknowledged.len(),
            got.len(),
            counts.len()
        );
        disconnect(client);
    }
}

#[test]
fn acknowledged_retained_messages_survive_kill_9() {
    const R: usize = 40;
    /// The topic whose retained message is deleted (an empty retained payload) before the kill.
    const DELETED: usize = 7;
    const WINDOW: usize = 16;

    let dir = TestDir::new("retained");
    let mut first = Broker::start_in(dir.path(), &["--shards", "2"]);
    let (mut publisher, _) =
        RawClient::connect(first.addr(), connect_packet(V5, &client_id_on_shard("ret-pub", 0)));
    let topic = |i: usize| format!("crash/retained/{i:02}");
    // The deletion goes last, after its topic's retained message was acknowledged.
    let mut publishes: Vec<(String, String)> =
        (0..R).map(|i| (topic(i), format!("r{i}"))).collect();
    publishes.push((topic(DELETED), String::new()));
    let mut next = 0;
    let mut outstanding = BTreeSet::new();
    while next < publishes.len() || !outstanding.is_empty() {
        // The deletion waits until the message it deletes was acknowledged.
        let limit = if outstanding.is_empty() { publishes.len() } else { R };
        while outstanding.len() < WINDOW && next < limit {
            let (topic, payload) = &publishes[next];
            let id = u16::try_from(next + 1).expect("few messages");
            publisher.send(&publish(topic, payload, QoS::AtLeastOnce, Some(id), true));
            outstanding.insert(id);
            next += 1;
        }
        match publisher.expect_packet(REPLY) {
            Packet::PubAck(ack) => {
                assert!(!ack.reason.is_error(), "retained publish refused: {ack:?}");
                assert!(outstanding.remove(&ack.packet_id.get()), "PUBACK for a PUBLISH: {ack:?}");
            }
            other => panic!("publisher: unexpected {other:?}"),
        }
    }
    first.kill();

    let second = Broker::start_in(dir.path(), &["--shards", "2"]);
    let mut watcher = connect_ok(&second, connect_packet(V5, "ret-watcher"), false);
    watcher.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from("crash/retained/#"),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    }));
    let mut retained = Vec::new();
    let mut subacked = false;
    loop {
        match watcher.next(if subacked { IDLE } else { REPLY }) {
            Received::Packet(Packet::SubAck(_)) => subacked = true,
            Received::Packet(Packet::Publish(p)) => {
                assert!(p.retain, "a retained message arrives with RETAIN: {p:?}");
                if let Some(id) = p.packet_id {
                    watcher.send(&Packet::PubAck(Ack::success(id)));
                }
                retained.push((p.topic.to_string(), String::from_utf8_lossy(&p.payload).into()));
            }
            Received::TimedOut if subacked => break,
            other => panic!("watcher: unexpected {other:?}"),
        }
    }
    retained.sort();
    let expected: Vec<(String, String)> =
        (0..R).filter(|&i| i != DELETED).map(|i| (topic(i), format!("r{i}"))).collect();
    assert_eq!(retained, expected, "the retained messages after kill -9 and a restart");
}

#[test]
fn in_flight_messages_to_a_connected_subscriber_are_resent_with_dup() {
    const M: usize = 12;
    const RECEIVE_MAXIMUM: u16 = 5;
    const TOPIC: &str = "crash/inflight";

    let dir = TestDir::new("inflight");
    let mut first = Broker::start_in(dir.path(), &["--shards", "2"]);
    let sub_id = client_id_on_shard("slow-sub", 1);
    let mut slow = persistent_connect_packet(V5, &sub_id);
    slow.properties.receive_maximum = Some(RECEIVE_MAXIMUM);
    let mut subscriber = connect_ok(&first, slow.clone(), false);
    subscribe(&mut subscriber, TOPIC, QoS::AtLeastOnce);

    let (mut publisher, _) =
        RawClient::connect(first.addr(), connect_packet(V5, &client_id_on_shard("fast-pub", 0)));
    for i in 0..M {
        let id = u16::try_from(i + 1).expect("few messages");
        publisher.send(&publish(TOPIC, &format!("m{i:02}"), QoS::AtLeastOnce, Some(id), false));
    }
    let mut acked = BTreeSet::new();
    while acked.len() < M {
        match publisher.expect_packet(REPLY) {
            Packet::PubAck(ack) => {
                assert!(!ack.reason.is_error(), "refused: {ack:?}");
                acked.insert(ack.packet_id.get());
            }
            other => panic!("publisher: unexpected {other:?}"),
        }
    }
    // The subscriber gets a window's worth and acknowledges none of it.
    let mut first_sends = Vec::new();
    for _ in 0..RECEIVE_MAXIMUM {
        match subscriber.expect_packet(REPLY) {
            Packet::Publish(p) => {
                assert!(!p.dup, "a first delivery has DUP 0: {p:?}");
                first_sends.push((
                    String::from_utf8_lossy(&p.payload).into_owned(),
                    p.packet_id.expect("QoS 1").get(),
                ));
            }
            other => panic!("subscriber: unexpected {other:?}"),
        }
    }
    let expected_first: Vec<String> =
        (0..usize::from(RECEIVE_MAXIMUM)).map(|i| format!("m{i:02}")).collect();
    assert_eq!(
        first_sends.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        expected_first,
        "in publish order"
    );
    match subscriber.next(Duration::from_millis(300)) {
        Received::TimedOut => {}
        other => panic!("beyond Receive Maximum {RECEIVE_MAXIMUM}: got {other:?}"),
    }
    first.kill();
    drop(subscriber);
    drop(publisher);

    let second = Broker::start_in(dir.path(), &["--shards", "2"]);
    let mut again = connect_ok(&second, slow, true);
    let got = collect(&mut again, &sub_id);
    let resent: Vec<(String, u16)> = got
        .iter()
        .take(usize::from(RECEIVE_MAXIMUM))
        .map(|g| (g.payload.clone(), g.packet_id.expect("QoS 1")))
        .collect();
    assert_eq!(resent, first_sends, "the in-flight messages first, with their packet ids");
    for (i, g) in got.iter().enumerate() {
        let in_flight = i < usize::from(RECEIVE_MAXIMUM);
        assert_eq!(g.dup, in_flight, "DUP of delivery {i} after the restart: {g:?}");
        assert_eq!(g.qos, QoS::AtLeastOnce, "{g:?}");
    }
    let payloads: Vec<String> = got.iter().map(|g| g.payload.clone()).collect();
    let expected: Vec<String> = (0..M).map(|i| format!("m{i:02}")).collect();
    assert_eq!(payloads, expected, "the whole queue, once, in order");
}

#[test]
fn a_restart_with_another_shard_count_keeps_every_session() {
    const SESSIONS: usize = 20;

    let dir = TestDir::new("reshard");
    let sessions: Vec<(ProtocolVersion, String)> = (0..SESSIONS)
        .map(|i| (if i % 2 == 0 { V3_1_1 } else { V5 }, format!("reshard-{i:02}")))
        .collect();
    let shard_files = |dir: &TestDir| -> Vec<String> {
        dir.file_names()
            .into_iter()
            .filter(|name| name.starts_with("shard-") && name.ends_with(".redb"))
            .collect()
    };

    let mut broker = Broker::start_in(dir.path(), &["--shards", "2"]);
    for (version, id) in &sessions {
        let mut client = connect_ok(&broker, persistent_connect_packet(*version, id), false);
        subscribe(&mut client, &format!("to/{id}"), QoS::AtLeastOnce);
        disconnect(client);
    }
    let (mut publisher, _) = RawClient::connect(broker.addr(), connect_packet(V5, "reshard-pub"));
    for (i, (_, id)) in sessions.iter().enumerate() {
        let packet = u16::try_from(i + 1).expect("few sessions");
        publisher.send(&publish(&format!("to/{id}"), id, QoS::AtLeastOnce, Some(packet), false));
    }
    for _ in &sessions {
        match publisher.expect_packet(REPLY) {
            Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "refused: {ack:?}"),
            other => panic!("publisher: unexpected {other:?}"),
        }
    }
    drop(publisher);
    assert!(broker.stop().success(), "exit status after SIGTERM");
    assert_eq!(shard_files(&dir).len(), 2, "{:?}", dir.file_names());

    for shards in [3u16, 1] {
        let shards_flag = shards.to_string();
        let mut broker = Broker::start_in(dir.path(), &["--shards", &shards_flag]);
        let first = shards == 3;
        let mut clients = Vec::new();
        for (version, id) in &sessions {
            let mut client = connect_ok(&broker, persistent_connect_packet(*version, id), true);
            if first {
                // The queued message, delivered on the first restart and acknowledged.
                match client.expect_packet(REPLY) {
                    Packet::Publish(p) => {
                        assert_eq!(&p.payload[..], id.as_bytes(), "{id} with {shards} shards");
                        client.send(&Packet::PubAck(Ack::success(p.packet_id.expect("QoS 1"))));
                    }
                    other => panic!("{id} with {shards} shards: unexpected {other:?}"),
                }
            }
            clients.push((id, client));
        }
        // Nothing more for anyone: each message is delivered once, over both restarts.
        std::thread::sleep(Duration::from_millis(300));
        for (id, client) in &mut clients {
            match client.next(Duration::from_millis(20)) {
                Received::TimedOut => {}
                other => panic!("{id} with {shards} shards: unexpected {other:?}"),
            }
        }
        for (_, client) in clients {
            disconnect(client);
        }
        assert!(broker.stop().success(), "exit status after SIGTERM with {shards} shards");
        assert_eq!(
            shard_files(&dir).len(),
            usize::from(shards),
            "one file per shard after a run with {shards} shards: {:?}",
            dir.file_names()
        );
    }
}

/// A data directory written by a build of storage format 1 (the fixture in
/// `shard/tests/fixtures/format1`) is migrated at start, one log line per file, and serves its
/// session, queued message and retained message as before.
#[test]
fn a_data_directory_of_storage_format_1_is_migrated_at_start() {
    let dir = TestDir::new("format1");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shard/tests/fixtures/format1/shard-0.redb");
    std::fs::copy(&fixture, dir.path().join("shard-0.redb")).expect("copy the fixture");
    let broker = Broker::start_in(dir.path(), &["--shards", "1"]);
    let log = broker.log();
    let migrated: Vec<&str> = log.lines().filter(|line| line.contains("migrated")).collect();
    assert_eq!(migrated.len(), 1, "{log}");
    assert!(migrated[0].contains("shard-0.redb from storage format 1 to 2"), "{log}");

    let mut resumed = connect_ok(&broker, persistent_connect_packet(V5, "fixture-client"), true);
    // The queued message; the will, long due, may have been queued behind it (the session
    // subscribes to fixture/#).
    let got = collect(&mut resumed, "fixture-client");
    assert_eq!(got.first().map(|got| got.payload.as_str()), Some("queued"), "{got:?}\n{log}");
    let mut reader = connect_ok(&broker, connect_packet(V5, "retained-reader"), false);
    subscribe(&mut reader, "fixture/retained", QoS::AtLeastOnce);
    let got = collect(&mut reader, "retained-reader");
    assert_eq!(got.iter().map(|got| got.payload.as_str()).collect::<Vec<_>>(), ["retained"]);
}

//! The cluster end to end: real `shardmq serve` nodes on 127.0.0.x addresses joined through a
//! real etcd (Debian's `etcd-server`, started by the test), clients on different nodes.
//!
//! Every test runs its own etcd and its own cluster name. Leases are 2 s (the smallest allowed)
//! so that lease expiry, fencing and recovery happen within a test's time.

use std::time::{Duration, Instant};

use shardmq_cluster::testing::{EtcdCluster, EtcdProcess};
use shardmq_io::codec::{
    Ack, ByteString, Bytes, ConnAck, Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_tests::{
    await_route, connect_packet, disconnect, mosquitto_password_file, packet_id,
    persistent_connect_packet, publish_packet, receive_publish, subscribe_granted, Broker,
    RawClient, Received, TestDir,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const WAIT: Duration = Duration::from_secs(5);
/// How long routes take to reach the other nodes at most, in these tests.
const PROPAGATION: Duration = Duration::from_secs(10);
/// How long a new holder of a large retained message may take to pull it: its first attempt and
/// the retries after 1, 2, 4 and 8 s, each waiting up to 2 s per holder.
const PULL_RETRY_WAIT: Duration = Duration::from_secs(40);
const LEASE_TTL: Duration = Duration::from_secs(2);
/// How long a CONNACK may take in a cluster: the nodes' `--claim-timeout` (3 s) plus slack.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// A cluster of `nodes` brokers on one etcd (or an etcd cluster).
struct Cluster {
    nodes: Vec<Broker>,
}

fn start_node(endpoints: &str, cluster: &str, index: usize, lease_ttl: &str) -> Broker {
    let args = node_args(endpoints, cluster, index, lease_ttl);
    Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The command line of node `index` (node id `n{index}`, on 127.0.0.{index + 1}).
fn node_args(endpoints: &str, cluster: &str, index: usize, lease_ttl: &str) -> Vec<String> {
    shardmq_tests::cluster_node_args(endpoints, cluster, index, lease_ttl)
}

fn start_cluster(endpoints: &str, name: &str, nodes: usize) -> Cluster {
    start_cluster_with_ttl(endpoints, name, nodes, "2")
}

fn start_cluster_with_ttl(endpoints: &str, name: &str, nodes: usize, lease_ttl: &str) -> Cluster {
    let nodes = (0..nodes).map(|index| start_node(endpoints, name, index, lease_ttl)).collect();
    Cluster { nodes }
}

fn etcd() -> EtcdProcess {
    EtcdProcess::start().unwrap_or_else(|error| panic!("{error}"))
}

fn connect(node: &Broker, version: ProtocolVersion, client_id: &str) -> RawClient {
    let (client, connack) = RawClient::connect(node.addr(), connect_packet(version, client_id));
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{client_id}: {connack:?}");
    client
}

/// Connects `connect` to `node` until CONNACK is a success (or `timeout` passes): returns the
/// client, its CONNACK, and how many attempts were refused first.
fn connect_until_accepted(
    node: &Broker,
    connect: &Connect,
    timeout: Duration,
) -> (RawClient, ConnAck, usize) {
    let deadline = Instant::now() + timeout;
    let mut refused = 0;
    loop {
        let (client, connack) = RawClient::connect_within(node.addr(), connect.clone(), CLAIM_WAIT);
        if connack.reason == ReasonCode::SUCCESS {
            return (client, connack, refused);
        }
        // "Try again": unavailable while etcd does not answer, busy while it answers too slowly
        // for this claim (the codec reads a 3.1.1 return code 3 as 0x88).
        assert!(
            [ReasonCode::SERVER_UNAVAILABLE, ReasonCode::SERVER_BUSY].contains(&connack.reason),
            "refused for another reason: {connack:?}"
        );
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "{:?} still refused after {timeout:?}",
            connect.client_id
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_that_cannot_reach_etcd_says_so_and_exits() {
    let output = std::process::Command::new(shardmq_tests::broker_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            "http://127.0.0.1:9",
            "--node-id",
            "x",
        ])
        .args(["--link-listen", "127.0.0.1:0", "--link-plaintext", "true", "--data-dir"])
        .arg(std::env::temp_dir().join(format!("shardmq-no-etcd-{}", std::process::id())))
        .output()
        .expect("run shardmq");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("etcd") && last.contains("127.0.0.1:9"), "{stderr}");
}

#[test]
fn publishes_cross_nodes_at_every_qos_in_order() {
    let etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), "qos", 3);
    let mut subscriber = connect(&cluster.nodes[0], V5, "sub");
    subscribe_granted(&mut subscriber, "t/#", QoS::ExactlyOnce);
    let mut publisher = connect(&cluster.nodes[1], V5, "pub");
    await_route(&mut publisher, &mut subscriber, "t/probe", PROPAGATION);
    // The claims are on the node's /metrics.
    let (status, metrics) = shardmq_tests::http_get(cluster.nodes[0].admin_address(), "/metrics");
    assert_eq!(status, 200);
    let claims = metrics
        .lines()
        .find_map(|line| line.strip_prefix("shardmq_etcd_claims_total "))
        .and_then(|value| value.parse::<u64>().ok());
    assert!(claims.is_some_and(|claims| claims >= 1), "{metrics}");
    // And the transactions by duration and by batch size, as Prometheus histograms.
    let lines = metrics.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the text format");
    for name in ["shardmq_etcd_txn_seconds", "shardmq_etcd_txn_ops"] {
        let sample = scrape.samples.iter().find(|sample| sample.metric == name);
        let count = match sample.map(|sample| &sample.value) {
            Some(prometheus_parse::Value::Histogram(buckets)) => {
                buckets.last().map_or(0.0, |bucket| bucket.count)
            }
            other => panic!("{name}: {other:?}\n{metrics}"),
        };
        assert!(count >= 1.0, "{name} counted no transaction:\n{metrics}");
    }

    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        let payload = format!("qos{}", qos as u8);
        publisher.send(&publish_packet("t/x", payload.as_bytes(), qos, false, n as u16 + 1));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_))),
            QoS::ExactlyOnce => {
                assert!(matches!(publisher.expect_packet(WAIT), Packet::PubRec(_)));
                publisher.send(&Packet::PubRel(Ack::success(packet_id(n as u16 + 1))));
                assert!(matches!(publisher.expect_packet(WAIT), Packet::PubComp(_)));
            }
        }
        let got = receive_publish(&mut subscriber, WAIT).expect("delivered across nodes");
        assert_eq!(got.payload, payload.as_bytes());
        assert_eq!(got.qos, qos);
    }

    // One publisher's QoS 1 messages keep their order across the link (third node this time).
    let mut third = connect(&cluster.nodes[2], V3, "pub3");
    await_route(&mut third, &mut subscriber, "t/probe3", PROPAGATION);
    for i in 1..=200u16 {
        third.send(&publish_packet(
            "t/order",
            format!("{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i,
        ));
    }
    let mut acks = 0;
    while acks < 200 {
        if let Packet::PubAck(_) = third.expect_packet(WAIT) {
            acks += 1;
        }
    }
    for i in 1..=200u16 {
        let got = receive_publish(&mut subscriber, WAIT).expect("delivered");
        assert_eq!(got.payload, format!("{i}").as_bytes(), "out of order");
    }
}

/// The retained messages under `filter` a new subscriber on `node` gets, by payload size.
fn retained_on(node: &Broker, client_id: &str, filter: &str) -> Vec<Bytes> {
    // A node that just started holds connects until its first claims may commit.
    let (mut reader, _, _) = connect_until_accepted(node, &connect_packet(V3, client_id), WAIT);
    subscribe_granted(&mut reader, filter, QoS::AtMostOnce);
    let mut got = Vec::new();
    while let Some(message) = receive_publish(&mut reader, Duration::from_millis(300)) {
        assert!(message.retain);
        got.push(message.payload);
    }
    got.sort_by_key(|payload| payload.len());
    got
}

/// Node `index` of a cluster whose nodes keep their data in `dirs`.
fn start_in(etcd: &EtcdProcess, cluster: &str, dirs: &[TestDir], index: usize) -> Broker {
    let args = node_args(&etcd.endpoint(), cluster, index, "2");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Broker::start_in(dirs[index].path(), &args)
}

/// The HRW ring of nodes n0, n1 and n2, as every node computes it.
fn three_node_ring() -> shardmq_cluster::ring::Ring {
    shardmq_cluster::ring::Ring::new(["n0", "n1", "n2"].map(shardmq_cluster::NodeId::new).to_vec())
}

/// Whether any file under `dir` contains `needle`.
fn stored_under(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("list a data directory").any(|entry| {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            return stored_under(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes.windows(needle.len()).any(|window| window == needle)
    })
}

#[test]
fn retained_messages_small_and_large_are_seen_from_every_node() {
    let etcd = etcd();
    // A large retained message (over the default 1 KiB) is kept in full on the two nodes its
    // topic ranks first on the HRW ring, which every node computes alike.
    let ring = three_node_ring();
    let holders: Vec<String> =
        ring.owners(b"r/large", 2).into_iter().map(|node| node.to_string()).collect();
    let other = (0..3).find(|i| !holders.contains(&format!("n{i}"))).expect("a third node");
    let dirs: Vec<TestDir> = (0..3).map(|i| TestDir::new(&format!("retained-n{i}"))).collect();
    let start = |index: usize| start_in(&etcd, "retained", &dirs, index);
    let mut nodes: Vec<Broker> = (0..3).map(start).collect();

    // Published on the node that is no holder: it sends the payload to the holders only.
    let mut publisher = connect(&nodes[other], V5, "retainer");
    // Distinct bytes, to look for in the data files.
    let large: Vec<u8> = (0..64u32 << 10).map(|i| (i % 251) as u8).collect();
    publisher.send(&publish_packet("r/small", b"small", QoS::AtLeastOnce, true, 1));
    assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    publisher.send(&publish_packet("r/large", &large, QoS::AtLeastOnce, true, 2));
    assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    drop(publisher);

    let seen_everywhere = |nodes: &[Broker], round: &str| {
        for (index, node) in nodes.iter().enumerate() {
            let deadline = Instant::now() + PROPAGATION;
            loop {
                let got = retained_on(node, &format!("reader-{round}-{index}"), "r/#");
                if got.len() == 2 {
                    assert_eq!(got[0], Bytes::from_static(b"small"));
                    assert!(got[1] == large, "node {index}: the large retained payload differs");
                    break;
                }
                assert!(Instant::now() < deadline, "node {index} has {} of 2 retained", got.len());
            }
        }
    };
    seen_everywhere(&nodes, "first");
    let marker = &large[1000..1256];
    for (index, dir) in dirs.iter().enumerate() {
        let holder = holders.contains(&format!("n{index}"));
        assert_eq!(stored_under(dir.path(), marker), holder, "node n{index}, holder: {holder}");
    }

    // The node that is no holder restarts: it learns again where the message is kept from
    // its peers' links, and fetches it for a subscribe.
    nodes[other].kill();
    nodes[other] = start(other);
    // It waits for its previous run's lease to expire before it joins.
    let joined = nodes[other].wait_for_log("joined cluster", LEASE_TTL * 3);
    assert!(joined.is_some(), "the restarted node did not join");
    seen_everywhere(&nodes, "after-restart");
}

/// The retained messages under `filter` a new subscriber on `node` gets, as (topic, payload
/// length, first bytes), sorted by topic.
fn retained_topics_on(node: &Broker, client_id: &str, filter: &str) -> Vec<(String, usize)> {
    let (mut reader, _, _) = connect_until_accepted(node, &connect_packet(V3, client_id), WAIT);
    subscribe_granted(&mut reader, filter, QoS::AtMostOnce);
    let mut got = Vec::new();
    while let Some(message) = receive_publish(&mut reader, Duration::from_millis(300)) {
        assert!(message.retain);
        got.push((message.topic.to_string(), message.payload.len()));
    }
    got.sort();
    got
}

/// Waits until a subscriber on `node` gets exactly `want` as the retained messages under `r/#`.
fn await_retained(node: &Broker, name: &str, want: &[(String, usize)]) {
    let deadline = Instant::now() + PROPAGATION;
    for round in 0.. {
        let got = retained_topics_on(node, &format!("{name}-{round}"), "r/#");
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: retained {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_joining_or_rejoining_node_catches_up_on_retained_messages_and_holds_its_large_ones() {
    let etcd = etcd();
    // A large topic whose two holders among the three nodes include n2: held by n0 and n1
    // while n2 is away, and pulled by n2 when it joins.
    let ring = three_node_ring();
    let large_topic = (0..)
        .map(|i| format!("r/large/{i}"))
        .find(|topic| ring.owners(topic.as_bytes(), 2).iter().any(|node| node.to_string() == "n2"))
        .expect("some topic ranks n2 among its first two");
    let dirs: Vec<TestDir> = (0..3).map(|i| TestDir::new(&format!("catch-up-n{i}"))).collect();
    let start = |index: usize| start_in(&etcd, "catch-up", &dirs, index);
    let mut nodes: Vec<Broker> = (0..2).map(start).collect();
    let large: Vec<u8> = (0..64u32 << 10).map(|i| (i % 251) as u8).collect();
    let publish_on = |node: &Broker, writes: &[(&str, &[u8])]| {
        let mut publisher = connect(node, V5, "retainer");
        for (id, (topic, payload)) in writes.iter().enumerate() {
            let id = u16::try_from(id + 1).expect("a few writes");
            publisher.send(&publish_packet(topic, payload, QoS::AtLeastOnce, true, id));
            assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
        }
    };
    publish_on(
        &nodes[0],
        &[("r/keep", b"v1"), ("r/gone", b"deleted later"), (&large_topic, &large)],
    );
    let mut before = vec![
        (large_topic.clone(), large.len()),
        ("r/gone".to_string(), 13),
        ("r/keep".to_string(), 2),
    ];
    before.sort();
    await_retained(&nodes[1], "n1-before", &before);

    // A new node gets every retained message written before it joined, and keeps the large
    // one it is now a holder of on its own disk.
    nodes.push(start(2));
    await_retained(&nodes[2], "n2-joined", &before);
    let marker = &large[1000..1256];
    // A pull no holder answered in time (under the load of the whole suite) is tried again
    // after 1, 2, 4 and 8 s: the wait covers the retries.
    let deadline = Instant::now() + PULL_RETRY_WAIT;
    while !stored_under(dirs[2].path(), marker) {
        assert!(Instant::now() < deadline, "n2 did not pull the large message it holds");
        std::thread::sleep(Duration::from_millis(200));
    }

    // n2 is killed; meanwhile a message is replaced, one deleted and one added.
    nodes[2].kill();
    publish_on(&nodes[0], &[("r/keep", b"v2!"), ("r/gone", b""), ("r/new", b"fresh")]);
    let mut after = vec![
        (large_topic.clone(), large.len()),
        ("r/keep".to_string(), 3),
        ("r/new".to_string(), 5),
    ];
    after.sort();
    await_retained(&nodes[1], "n1-after", &after);
    nodes[2] = start(2);
    let joined = nodes[2].wait_for_log("joined cluster", LEASE_TTL * 3);
    assert!(joined.is_some(), "the restarted node did not join");
    // Small retained messages are read from the node's own store: it caught up.
    await_retained(&nodes[2], "n2-rejoined", &after);
}

/// A QoS 1 publisher on one node floods a subscriber on another that reads slowly (about 2,000
/// messages/s). Unpaced, the flood (tens of thousands a second) would overrun the subscriber's
/// queue (`max_queued_messages`, 1,000) within a fraction of a second and most messages would be
/// dropped; paced over the node link, the publisher goes at the subscriber's speed and nearly
/// everything arrives. (Not all is asserted: a subscriber congested past half a second, as a
/// loaded test machine can make it, counts as stalled and stops pacing, by design.)
#[test]
fn a_slow_subscriber_on_another_node_paces_the_publisher_over_the_node_link() {
    const MESSAGES: usize = 4000;
    const WINDOW: usize = 64;
    let etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), "paced", 2);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut subscriber = connect(b, V5, "slow-sub");
    subscribe_granted(&mut subscriber, "paced/#", QoS::AtLeastOnce);
    let mut publisher = connect(a, V5, "fast-pub");
    await_route(&mut publisher, &mut subscriber, "paced/probe", PROPAGATION);

    let reader = std::thread::spawn(move || {
        let mut got = 0;
        while got < MESSAGES {
            let Some(_) = receive_publish(&mut subscriber, Duration::from_secs(10)) else { break };
            got += 1;
            if got % 10 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        got
    });
    let payload = [7u8; 256];
    let mut in_flight = 0;
    for i in 0..MESSAGES {
        while in_flight >= WINDOW {
            assert!(matches!(publisher.expect_packet(Duration::from_secs(30)), Packet::PubAck(_)));
            in_flight -= 1;
        }
        let id = u16::try_from(i % 60_000 + 1).expect("fits");
        publisher.send(&publish_packet("paced/t", &payload, QoS::AtLeastOnce, false, id));
        in_flight += 1;
    }
    while in_flight > 0 {
        assert!(matches!(publisher.expect_packet(Duration::from_secs(30)), Packet::PubAck(_)));
        in_flight -= 1;
    }
    let delivered = reader.join().expect("the subscriber thread");
    let dropped = b.metric_total("shardmq_messages_dropped_total", "cause=\"queue_full\"");
    assert!(
        delivered >= MESSAGES * 9 / 10 && dropped <= MESSAGES as u64 / 10,
        "delivered {delivered} of {MESSAGES}, {dropped} dropped for a full queue"
    );
}

#[test]
fn a_shared_group_spread_over_nodes_gets_each_message_once() {
    let etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), "shared", 3);
    let mut members: Vec<RawClient> = (0..2)
        .map(|index| {
            let mut member = connect(&cluster.nodes[index], V5, &format!("member-{index}"));
            subscribe_granted(&mut member, "$share/g/s/#", QoS::AtLeastOnce);
            member
        })
        .collect();
    let mut publisher = connect(&cluster.nodes[2], V5, "shared-pub");
    // Wait until both members' routes reached the publisher's node: each has had a probe.
    let deadline = Instant::now() + PROPAGATION;
    let mut probed = [false, false];
    while probed != [true, true] {
        publisher.send(&publish_packet("s/probe", b"probe", QoS::AtMostOnce, false, 0));
        for (index, member) in members.iter_mut().enumerate() {
            while receive_publish(member, Duration::from_millis(50)).is_some() {
                probed[index] = true;
            }
        }
        assert!(Instant::now() < deadline, "shared routes did not reach the publisher: {probed:?}");
    }
    for member in &mut members {
        while receive_publish(member, Duration::from_millis(300)).is_some() {}
    }

    for i in 1..=40u16 {
        publisher.send(&publish_packet(
            "s/1",
            format!("{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i,
        ));
        assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    }
    let mut seen = Vec::new();
    let mut per_member = [0; 2];
    for (index, member) in members.iter_mut().enumerate() {
        while let Some(message) = receive_publish(member, Duration::from_millis(500)) {
            seen.push(String::from_utf8(message.payload.to_vec()).expect("utf-8"));
            per_member[index] += 1;
        }
    }
    seen.sort_by_key(|payload| payload.parse::<u32>().expect("a number"));
    let expected: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "each message exactly once across the group");
    assert!(per_member.iter().all(|&n| n > 0), "one member got everything: {per_member:?}");
}

fn takeover_across_nodes(version: ProtocolVersion, name: &str) {
    let etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), name, 3);
    let client_id = format!("mover-{name}");
    let (mut first, connack) = RawClient::connect_within(
        cluster.nodes[0].addr(),
        persistent_connect_packet(version, &client_id),
        CLAIM_WAIT,
    );
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    subscribe_granted(&mut first, "m/#", QoS::AtLeastOnce);

    // The same client id on another node: the first node disconnects it and hands the session
    // (with its subscription) over.
    let (mut second, connack) = RawClient::connect_within(
        cluster.nodes[1].addr(),
        persistent_connect_packet(version, &client_id),
        CLAIM_WAIT,
    );
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(connack.session_present, "the session moved with the client");
    match first.next(WAIT) {
        Received::Packet(Packet::Disconnect(disconnect)) if version.is_v5() => {
            assert_eq!(disconnect.reason, ReasonCode::SESSION_TAKEN_OVER)
        }
        Received::Closed if !version.is_v5() => {}
        other => panic!("the old connection got {other:?}"),
    }

    // Its subscription now lives on node 1: a publish on node 2 reaches it there.
    let mut publisher = connect(&cluster.nodes[2], V5, &format!("pub-{name}"));
    await_route(&mut publisher, &mut second, "m/probe", PROPAGATION);
    // Offline, a QoS 1 message is queued in the session; the session moves once more, to node
    // 2, and the message with it.
    drop(second);
    std::thread::sleep(Duration::from_millis(300));
    publisher.send(&publish_packet("m/1", b"while away", QoS::AtLeastOnce, false, 1));
    assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    let (mut third, connack) = RawClient::connect_within(
        cluster.nodes[2].addr(),
        persistent_connect_packet(version, &client_id),
        CLAIM_WAIT,
    );
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(connack.session_present);
    let queued =
        receive_publish(&mut third, WAIT).expect("the queued message came with the session");
    assert_eq!(queued.payload, Bytes::from_static(b"while away"));
}

#[test]
fn a_client_taken_over_by_another_node_keeps_its_session_v5() {
    takeover_across_nodes(V5, "takeover5");
}

#[test]
fn a_client_taken_over_by_another_node_keeps_its_session_v311() {
    takeover_across_nodes(V3, "takeover3");
}

#[test]
fn after_kill_9_a_nodes_clients_are_claimable_elsewhere_once_its_lease_expires() {
    let etcd = etcd();
    let mut cluster = start_cluster(&etcd.endpoint(), "kill", 3);
    let _victim = connect(&cluster.nodes[0], V5, "victim");
    let mut watcher = connect(&cluster.nodes[1], V5, "watcher");
    subscribe_granted(&mut watcher, "k/#", QoS::AtLeastOnce);
    let mut publisher = connect(&cluster.nodes[2], V5, "kill-pub");
    await_route(&mut publisher, &mut watcher, "k/probe", PROPAGATION);

    let killed_at = Instant::now();
    cluster.nodes[0].kill();
    // Until the dead node's lease expires, its client cannot be claimed (its owner might still
    // serve it); then it can, on any other node.
    let connect = connect_packet(V5, "victim");
    let (_client, _, _) = connect_until_accepted(&cluster.nodes[1], &connect, LEASE_TTL * 5);
    assert!(killed_at.elapsed() < LEASE_TTL * 5);
    // The other nodes kept serving throughout.
    publisher.send(&publish_packet("k/after", b"still here", QoS::AtLeastOnce, false, 1));
    assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    assert_eq!(
        receive_publish(&mut watcher, WAIT).expect("delivered").payload,
        Bytes::from_static(b"still here")
    );
}

#[test]
fn a_node_paused_past_its_lease_does_not_serve_its_old_clients_when_it_resumes() {
    use nix::sys::signal::Signal;
    let etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), "pause", 2);
    let mut old = connect(&cluster.nodes[0], V5, "sleeper");
    let mut watcher = connect(&cluster.nodes[1], V5, "pause-watcher");
    subscribe_granted(&mut watcher, "p/#", QoS::AtMostOnce);
    await_route(&mut old, &mut watcher, "p/probe", PROPAGATION);

    cluster.nodes[0].signal(Signal::SIGSTOP);
    std::thread::sleep(LEASE_TTL + Duration::from_millis(1500));
    // Node 0's lease has expired: the client can be claimed by node 1.
    let (mut new, connack, _) =
        connect_until_accepted(&cluster.nodes[1], &connect_packet(V5, "sleeper"), WAIT);
    assert!(!connack.session_present);
    cluster.nodes[0].signal(Signal::SIGCONT);

    // The old connection's publish must not be served by the resumed node.
    old.send(&publish_packet("p/stale", b"from the past", QoS::AtMostOnce, false, 0));
    match old.next(WAIT) {
        Received::Packet(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::SERVER_BUSY)
        }
        Received::Closed => {}
        other => panic!("the old connection was served: {other:?}"),
    }
    assert!(
        receive_publish(&mut watcher, Duration::from_secs(1)).is_none(),
        "a message from the fenced node's old client was delivered"
    );
    // The new connection on node 1 is served.
    new.send(&Packet::PingReq);
    assert!(matches!(new.expect_packet(WAIT), Packet::PingResp));
}

#[test]
fn existing_connections_keep_working_while_etcd_is_down_and_connects_resume_after() {
    let mut etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), "outage", 2);
    let mut subscriber = connect(&cluster.nodes[0], V5, "outage-sub");
    subscribe_granted(&mut subscriber, "o/#", QoS::AtLeastOnce);
    let mut publisher = connect(&cluster.nodes[1], V5, "outage-pub");
    await_route(&mut publisher, &mut subscriber, "o/probe", PROPAGATION);

    etcd.stop();
    // Three lease lifetimes without etcd: the nodes keep serving (nobody can claim anything).
    for i in 1..=6u16 {
        std::thread::sleep(LEASE_TTL / 2);
        publisher.send(&publish_packet(
            "o/1",
            format!("{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i,
        ));
        assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)), "round {i}");
        let got = receive_publish(&mut subscriber, WAIT).unwrap_or_else(|| {
            panic!(
                "round {i}: not delivered; node 0 log:\n{}\nnode 1 log:\n{}",
                cluster.nodes[0].log(),
                cluster.nodes[1].log()
            )
        });
        assert_eq!(got.payload, format!("{i}").as_bytes());
    }
    // A client id this node does not own cannot be claimed: "server unavailable".
    let (_, connack) = RawClient::connect_within(
        cluster.nodes[0].addr(),
        connect_packet(V5, "newcomer"),
        CLAIM_WAIT,
    );
    assert_eq!(connack.reason, ReasonCode::SERVER_UNAVAILABLE);
    let (_, connack) = RawClient::connect_within(
        cluster.nodes[0].addr(),
        connect_packet(V3, "newcomer3"),
        CLAIM_WAIT,
    );
    assert_eq!(connack.reason, ReasonCode::SERVER_UNAVAILABLE, "3.1.1 return code 3");

    etcd.restart().unwrap_or_else(|error| panic!("{error}"));
    let (_client, _, _) = connect_until_accepted(
        &cluster.nodes[0],
        &connect_packet(V5, "newcomer"),
        Duration::from_secs(15),
    );
    publisher.send(&publish_packet("o/2", b"after", QoS::AtLeastOnce, false, 99));
    match publisher.expect_packet(WAIT) {
        Packet::PubAck(_) => {}
        other => panic!(
            "expected PUBACK, got {other:?}; node 0 log:\n{}\nnode 1 log:\n{}",
            cluster.nodes[0].log(),
            cluster.nodes[1].log()
        ),
    }
    assert_eq!(
        receive_publish(&mut subscriber, WAIT).expect("delivered").payload,
        Bytes::from_static(b"after")
    );
}

#[test]
fn a_three_member_etcd_losing_a_member_keeps_the_cluster_working() {
    let mut etcd = EtcdCluster::start(3).unwrap_or_else(|error| panic!("{error}"));
    let endpoints = etcd.endpoints().join(",");
    // The default 6 s lease: losing etcd's leader costs an election (about a second) and the
    // switch to another endpoint, which a 2 s lease (fencing 1.5 s after the last renewal)
    // would not always outlast.
    let cluster = start_cluster_with_ttl(&endpoints, "etcd3", 2, "6");
    let mut subscriber = connect(&cluster.nodes[0], V5, "e3-sub");
    subscribe_granted(&mut subscriber, "e/#", QoS::AtLeastOnce);
    etcd.kill(0);
    // New claims still commit (two of three members are a quorum), on both nodes.
    for (index, node) in cluster.nodes.iter().enumerate() {
        let connect = connect_packet(V5, &format!("after-loss-{index}"));
        let (_client, _, _) = connect_until_accepted(node, &connect, Duration::from_secs(15));
    }
    let mut publisher = connect(&cluster.nodes[1], V5, "e3-pub");
    await_route(&mut publisher, &mut subscriber, "e/probe", PROPAGATION);
}

/// Passwords and the ACL on every node of a cluster (each node reads the same files): a client
/// is refused or admitted the same on either node, and a queued message for an offline session
/// is checked as its user's, on the node it was published on and after the session moved.
#[test]
fn passwords_and_the_acl_hold_on_every_node_and_follow_a_session_to_another_node() {
    let dir = TestDir::new("cluster-acl");
    let passwords = mosquitto_password_file(&dir, &[("alice", "a"), ("bob", "b")]);
    let acl = dir.path().join("acl");
    // Anonymous clients may do nothing; bob writes to alice's topics, alice reads them.
    std::fs::write(&acl, "user alice\ntopic read alice/#\n\nuser bob\ntopic write alice/#\n")
        .expect("write the ACL");
    let etcd = etcd();
    let nodes: Vec<Broker> = (0..2)
        .map(|index| {
            let mut args = node_args(&etcd.endpoint(), "acl", index, "2");
            args.extend([
                "--password-file".to_owned(),
                passwords.display().to_string(),
                "--acl-file".to_owned(),
                acl.display().to_string(),
            ]);
            Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect();
    // `credentials`: a user name and a password, or none (anonymous).
    let login = |node: &Broker, client_id: &str, credentials: Option<(&str, &str)>| {
        let mut connect = persistent_connect_packet(V5, client_id);
        if let Some((user, password)) = credentials {
            connect.username = Some(ByteString::from(user));
            connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
        }
        RawClient::connect_within(node.addr(), connect, CLAIM_WAIT)
    };
    for node in &nodes {
        let (_, connack) = login(node, "nobody", None);
        assert_eq!(connack.reason, ReasonCode::NOT_AUTHORIZED, "anonymous on {}", node.addr());
        let (_, connack) = login(node, "mallory", Some(("bob", "not b")));
        assert_eq!(connack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }

    let (mut alice, connack) = login(&nodes[0], "alice-phone", Some(("alice", "a")));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    subscribe_granted(&mut alice, "alice/#", QoS::AtLeastOnce);
    let (mut bob, connack) = login(&nodes[1], "bob-laptop", Some(("bob", "b")));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    await_route(&mut bob, &mut alice, "alice/probe", PROPAGATION);
    // Bob may not write elsewhere, on any node.
    bob.send(&publish_packet("bob/x", b"no", QoS::AtLeastOnce, false, 1));
    match bob.expect_packet(WAIT) {
        Packet::PubAck(ack) => assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK, got {other:?}"),
    }

    // Alice goes offline on node 0; bob's message from node 1 is queued for her there (as hers:
    // an anonymous session would be refused it), then her session moves to node 1 with it.
    disconnect(alice);
    std::thread::sleep(Duration::from_millis(300));
    bob.send(&publish_packet("alice/x", b"for alice", QoS::AtLeastOnce, false, 2));
    match bob.expect_packet(WAIT) {
        Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "{ack:?}"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // Bob names her client id on node 1: node 0, which holds her session, refuses to hand it
    // to another user, and node 1 refuses bob (0x87). Her session and message stay.
    let (_, connack) = login(&nodes[1], "alice-phone", Some(("bob", "b")));
    assert_eq!(connack.reason, ReasonCode::NOT_AUTHORIZED, "{}", nodes[0].log());
    assert!(nodes[0].log_contains("has a session of another user"), "{}", nodes[0].log());
    let (mut alice, connack) = login(&nodes[1], "alice-phone", Some(("alice", "a")));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(connack.session_present, "{}", nodes[0].log());
    let queued = receive_publish(&mut alice, WAIT)
        .unwrap_or_else(|| panic!("the queued message did not come; node 0:\n{}", nodes[0].log()));
    assert_eq!(queued.payload, Bytes::from_static(b"for alice"));
    // Her session on node 1 is still checked as hers: she may not subscribe beyond alice/#.
    alice.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(3),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from("bob/#"),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    }));
    match alice.expect_packet(WAIT) {
        Packet::SubAck(ack) => assert_eq!(ack.reasons, [ReasonCode::NOT_AUTHORIZED]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Where node `node`'s link listener is, from its "joined cluster" log line.
fn link_address(node: &Broker) -> std::net::SocketAddr {
    let line = node.wait_for_log("node links on ", WAIT).expect("joined");
    let rest = line.split("node links on ").nth(1).expect("the address");
    rest.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().expect("IP:PORT")
}

/// `name`'s refusals of `reason` on `node`'s `/metrics`.
fn link_refusals(node: &Broker, reason: &str) -> u64 {
    node.metric_total("shardmq_link_refused_total", &format!("reason=\"{reason}\""))
}

/// Waits until `node` counts at least `count` link refusals of `reason`.
fn await_refusals(node: &Broker, reason: &str, count: u64) {
    let deadline = Instant::now() + PROPAGATION;
    while link_refusals(node, reason) < count {
        assert!(Instant::now() < deadline, "no {reason} refusal:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Node `index` of cluster `name` with `link_args` in place of its own link TLS files.
fn start_odd_node(endpoints: &str, name: &str, index: usize, link_args: &[String]) -> Broker {
    let mut args = node_args(endpoints, name, index, "2");
    let own = args.iter().position(|arg| arg == "--link-tls-cert").expect("TLS flags");
    args.truncate(own);
    args.extend(link_args.iter().cloned());
    Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn node_links_refuse_whoever_is_not_a_node_of_the_cluster_and_nothing_else_notices() {
    let etcd = etcd();
    let cluster = start_cluster(&etcd.endpoint(), "guarded", 2);
    let mut subscriber = connect(&cluster.nodes[0], V5, "sub");
    subscribe_granted(&mut subscriber, "t/#", QoS::AtLeastOnce);
    let mut publisher = connect(&cluster.nodes[1], V5, "pub");
    await_route(&mut publisher, &mut subscriber, "t/probe", PROPAGATION);
    let target = &cluster.nodes[0];
    let link = link_address(target);

    // A node whose certificate another CA signed: both ends refuse the handshake.
    let other = TestDir::new("other-ca");
    let made = std::process::Command::new(shardmq_tests::broker_binary())
        .args(["link-certs", "--dir"])
        .arg(other.path())
        .arg("n2")
        .output()
        .expect("link-certs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let file = |name: &str| other.path().join(name).display().to_string();
    let stranger = start_odd_node(
        &etcd.endpoint(),
        "guarded",
        2,
        &["--link-tls-cert", &file("n2.pem"), "--link-tls-key", &file("n2.key")]
            .into_iter()
            .map(String::from)
            .chain(["--link-tls-ca".to_string(), file("ca.pem")])
            .collect::<Vec<_>>(),
    );
    await_refusals(target, "tls", 1);
    // (From 127.0.0.1: on loopback an outgoing link's source address is the kernel's choice.)
    assert!(target.log_contains("refusing a node link from 127.0.0."), "{}", target.log());
    assert!(
        stranger.wait_for_log("TLS handshake", WAIT).is_some(),
        "the stranger says why its links fail:\n{}",
        stranger.log()
    );

    // A node of the cluster's CA whose hello names another node than its certificate.
    let mut impostor = node_args(&etcd.endpoint(), "guarded", 3, "2");
    let cert = impostor.iter().position(|arg| arg.ends_with("n3.pem")).expect("cert flag");
    impostor[cert] = impostor[cert].replace("n3.pem", "n1.pem");
    let key = impostor.iter().position(|arg| arg.ends_with("n3.key")).expect("key flag");
    impostor[key] = impostor[key].replace("n3.key", "n1.key");
    let impostor = Broker::start(&impostor.iter().map(String::as_str).collect::<Vec<_>>());
    await_refusals(target, "identity", 1);

    // A plaintext node, raw garbage, and a connection that says nothing.
    let plain = start_odd_node(
        &etcd.endpoint(),
        "guarded",
        4,
        &["--link-plaintext".to_string(), "true".to_string()],
    );
    let tls_before = link_refusals(target, "tls");
    await_refusals(target, "tls", tls_before + 1);
    let mut garbage = std::net::TcpStream::connect(link).expect("connect");
    std::io::Write::write_all(&mut garbage, &[0xff; 4096]).expect("send");
    let silent = std::net::TcpStream::connect(link).expect("connect");
    await_refusals(target, "timeout", 1);
    drop((garbage, silent));

    // Through all of it the cluster's own link carried on.
    publisher.send(&publish_packet("t/x", b"still", QoS::AtLeastOnce, false, 7));
    assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    let delivered = receive_publish(&mut subscriber, WAIT).expect("delivered across the link");
    assert_eq!(&delivered.payload[..], b"still");
    drop((stranger, impostor, plain));
}

/// One etcd on loopback that requires TLS with a client certificate, and a user (auth
/// enabled): what a production etcd looks like. Killed on drop.
struct SecuredEtcd {
    child: std::process::Child,
    dir: TestDir,
    endpoint: String,
}

impl SecuredEtcd {
    fn start() -> SecuredEtcd {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair,
        };
        let dir = TestDir::new("etcd-tls");
        let path = |name: &str| dir.path().join(name);
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "etcd test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(path("ca.pem"), ca.pem()).expect("write");
        for (name, server) in [("server", true), ("client", false)] {
            let names = if server { vec!["127.0.0.1".to_string()] } else { Vec::new() };
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages =
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().expect("key");
            let signed = params.signed_by(&key, &ca).expect("sign");
            std::fs::write(path(&format!("{name}.pem")), signed.pem()).expect("write");
            std::fs::write(path(&format!("{name}.key")), key.serialize_pem()).expect("write");
        }
        std::fs::write(path("password"), "s3cret\n").expect("write");
        let free = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let (client, peer) = (free(), free());
        let endpoint = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(path("etcd.log")).expect("log");
        let child = std::process::Command::new("etcd")
            .args(["--name", "secured", "--data-dir"])
            .arg(path("data"))
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("secured={peer_url}")])
            .arg("--cert-file")
            .arg(path("server.pem"))
            .arg("--key-file")
            .arg(path("server.key"))
            .arg("--trusted-ca-file")
            .arg(path("ca.pem"))
            .args(["--client-cert-auth", "--logger", "zap", "--log-level", "warn"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("etcd (apt-get install etcd-server)");
        let etcd = SecuredEtcd { child, dir, endpoint };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !etcd.ctl(&["endpoint", "health"]).0 {
            assert!(Instant::now() < deadline, "etcd with TLS did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A user that may touch shardmq's keys only, and auth on (root must exist first).
        for command in [
            &["user", "add", "root:r00t"][..],
            &["user", "grant-role", "root", "root"],
            &["role", "add", "shardmq"],
            &["role", "grant-permission", "shardmq", "--prefix=true", "readwrite", "/shardmq/"],
            &["user", "add", "shardmq:s3cret"],
            &["user", "grant-role", "shardmq", "shardmq"],
            &["auth", "enable"],
        ] {
            let (ok, output) = etcd.ctl(command);
            assert!(ok, "etcdctl {command:?}: {output}");
        }
        etcd
    }

    /// Runs etcdctl (Debian's etcd-client) with the client certificate: success and output.
    fn ctl(&self, args: &[&str]) -> (bool, String) {
        let path = |name: &str| self.dir.path().join(name);
        let output = std::process::Command::new("etcdctl")
            .args(["--endpoints", &self.endpoint, "--cacert"])
            .arg(path("ca.pem"))
            .arg("--cert")
            .arg(path("client.pem"))
            .arg("--key")
            .arg(path("client.key"))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// The flags that give a node TLS to this etcd and its user.
    fn node_flags(&self) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--etcd-ca".into(),
            file("ca.pem"),
            "--etcd-cert".into(),
            file("client.pem"),
            "--etcd-key".into(),
            file("client.key"),
            "--etcd-user".into(),
            "shardmq".into(),
            "--etcd-password-file".into(),
            file("password"),
        ]
    }
}

impl Drop for SecuredEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmSize`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// Connections to a node's link port that announce a 64 MiB frame and send nothing more (a
/// plaintext cluster, where anyone reaching the port may speak first): the node reserves
/// nothing for them, lets at most 64 per shard wait for their hello, and closes them after 5 s.
#[test]
fn link_connections_that_announce_huge_frames_reserve_nothing_and_are_bounded() {
    let etcd = etcd();
    let node = start_odd_node(
        &etcd.endpoint(),
        "prefix",
        0,
        &["--link-plaintext".to_string(), "true".to_string()],
    );
    assert!(node.wait_for_log("joined cluster", WAIT).is_some());
    let link = link_address(&node);
    let announce = (64u32 << 20).to_le_bytes();
    let open = |count: usize| -> Vec<std::net::TcpStream> {
        (0..count)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(link).expect("connect to the link");
                std::io::Write::write_all(&mut stream, &announce).expect("send a length prefix");
                stream
            })
            .collect()
    };
    // The first few bring up what any link connection needs (a one-off of the process); the
    // figures are taken after them.
    let mut held = open(10);
    std::thread::sleep(Duration::from_millis(500));
    let (rss_before, size_before) =
        (status_kb(node.pid(), "VmRSS"), status_kb(node.pid(), "VmSize"));
    held.extend(open(190));
    await_refusals(&node, "too_many_unauthenticated", 1);
    std::thread::sleep(Duration::from_secs(1));
    let (rss, size) = (status_kb(node.pid(), "VmRSS"), status_kb(node.pid(), "VmSize"));
    // 190 reservations of 64 MiB would be 11.9 GiB of address space.
    assert!(rss < rss_before + 64 * 1024, "resident {rss_before} kB -> {rss} kB");
    assert!(size < size_before + 256 * 1024, "virtual {size_before} kB -> {size} kB");
    await_refusals(&node, "timeout", 1);
    drop(held);
}

#[test]
fn nodes_use_an_etcd_that_requires_tls_a_client_certificate_and_a_user() {
    let etcd = SecuredEtcd::start();
    let start = |index: usize, extra: &[String]| {
        let mut args = node_args(&etcd.endpoint, "secured", index, "2");
        args.extend(extra.iter().cloned());
        Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let nodes = [start(0, &etcd.node_flags()), start(1, &etcd.node_flags())];
    for node in &nodes {
        assert!(node.wait_for_log("joined cluster", WAIT).is_some(), "{}", node.log());
    }
    // Claims and the membership went through etcd's TLS and auth: a cross-node publish.
    let mut subscriber = connect(&nodes[0], V5, "sub");
    subscribe_granted(&mut subscriber, "t/#", QoS::AtLeastOnce);
    let mut publisher = connect(&nodes[1], V5, "pub");
    await_route(&mut publisher, &mut subscriber, "t/probe", PROPAGATION);

    // Without the user, etcd refuses the node: it says so in one line and exits.
    let mut flags = etcd.node_flags();
    flags.truncate(6);
    let output = std::process::Command::new(shardmq_tests::broker_binary())
        .arg("serve")
        .args(node_args(&etcd.endpoint, "secured", 2, "2"))
        .args(&flags)
        .arg("--data-dir")
        .arg(etcd.dir.path().join("n2-data"))
        .output()
        .expect("run shardmq");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("cannot join cluster") && last.contains("etcd"), "{stderr}");

    // An https endpoint without the CA is a configuration error naming the key.
    let output = std::process::Command::new(shardmq_tests::broker_binary())
        .arg("serve")
        .args(node_args(&etcd.endpoint, "secured", 3, "2"))
        .arg("--data-dir")
        .arg(etcd.dir.path().join("n3-data"))
        .output()
        .expect("run shardmq");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`etcd_ca`"));
}

//! Draining a node (`shardmq drain`): its clients are told to use another server, every session
//! it holds goes to the other nodes, and it stops; nothing acknowledged is lost. Real nodes on a
//! real etcd, as in tests/tests/cluster.rs.

use std::time::Duration;

use shardmq_cluster::testing::EtcdProcess;
use shardmq_io::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq_tests::{
    await_route, broker_binary, connect_packet, persistent_connect_packet, publish_packet,
    receive_publish, run_tool, subscribe_granted, tool_command, Broker, RawClient, Received,
    TestDir,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const WAIT: Duration = Duration::from_secs(5);
const PROPAGATION: Duration = Duration::from_secs(10);
const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// How long a drain of a few sessions takes at most here, with the stop after it.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// Node `index` of cluster `cluster` (node id `n{index}` on 127.0.0.{index + 1}), on `data_dir`.
fn start_node(etcd: &str, cluster: &str, index: usize, data_dir: &TestDir) -> Broker {
    let address = format!("127.0.0.{}:0", index + 1);
    let node_id = format!("n{index}");
    let mut args: Vec<String> = [
        "--listen",
        &address,
        "--etcd",
        etcd,
        "--cluster",
        cluster,
        "--node-id",
        &node_id,
        "--link-listen",
        &address,
        "--lease-ttl",
        "2",
        "--claim-timeout",
        "3",
        "--admin-listen",
        &address,
    ]
    .map(String::from)
    .into();
    args.extend(shardmq_tests::link_tls_args(&node_id));
    Broker::start_in(data_dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `shardmq drain --admin <node's admin>`, the real command line, until the node has stopped.
fn drain(node: &mut Broker) {
    let admin = node.admin_address().to_string();
    let mut command = tool_command(&broker_binary().to_string_lossy());
    command.args(["drain", "--admin", &admin, "--server-reference", "mqtt.example.net:1883"]);
    let output = run_tool(&mut command, DRAIN_WAIT);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "shardmq drain failed: {output:?}");
    assert!(printed.contains("drained and stopped"), "{printed}");
    let status = node.wait_exit(DRAIN_WAIT).expect("the drained node stopped");
    assert!(status.success(), "the drained node exited with {status}:\n{}", node.log());
}

fn connect_ok(node: &Broker, version: ProtocolVersion, client_id: &str) -> (RawClient, bool) {
    let (client, connack) = RawClient::connect_within(
        node.addr(),
        persistent_connect_packet(version, client_id),
        CLAIM_WAIT,
    );
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{client_id}: {connack:?}");
    (client, connack.session_present)
}

fn publish_acknowledged(publisher: &mut RawClient, topic: &str, payload: &[u8], id: u16) {
    publisher.send(&publish_packet(topic, payload, QoS::AtLeastOnce, false, id));
    match publisher.expect_packet(WAIT) {
        Packet::PubAck(ack) if ack.reason == ReasonCode::SUCCESS => {}
        other => panic!("publish {topic} not acknowledged: {other:?}"),
    }
}

#[test]
fn a_drained_node_hands_every_session_over_tells_clients_to_move_and_stops() {
    let etcd = EtcdProcess::start().unwrap_or_else(|error| panic!("{error}"));
    let dirs: Vec<TestDir> = (0..3).map(|i| TestDir::new(&format!("drain-{i}"))).collect();
    let mut nodes: Vec<Broker> =
        (0..3).map(|index| start_node(&etcd.endpoint(), "drain", index, &dirs[index])).collect();
    // On node 0: a connected v5 client, a connected 3.1.1 client, and offline sessions with
    // messages queued for them while offline.
    let (mut online5, _) = connect_ok(&nodes[0], V5, "online-5");
    subscribe_granted(&mut online5, "d/online-5", QoS::AtLeastOnce);
    let (mut online3, _) = connect_ok(&nodes[0], V3, "online-3");
    subscribe_granted(&mut online3, "d/online-3", QoS::AtLeastOnce);
    let offline: Vec<String> = (0..6).map(|i| format!("offline-{i}")).collect();
    for client_id in &offline {
        let (mut client, _) = connect_ok(&nodes[0], V5, client_id);
        subscribe_granted(&mut client, &format!("d/{client_id}"), QoS::AtLeastOnce);
        shardmq_tests::disconnect(client);
    }
    let (mut publisher, _) = connect_ok(&nodes[1], V5, "publisher");
    await_route(&mut publisher, &mut online5, "d/online-5", PROPAGATION);
    for (index, client_id) in offline.iter().enumerate() {
        publish_acknowledged(
            &mut publisher,
            &format!("d/{client_id}"),
            b"queued",
            index as u16 + 1,
        );
    }

    drain(&mut nodes[0]);
    match online5.next(WAIT) {
        Received::Packet(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::USE_ANOTHER_SERVER);
            let reference = disconnect.properties.server_reference.as_deref();
            assert_eq!(reference, Some("mqtt.example.net:1883"));
        }
        other => panic!("the v5 client got {other:?}, not DISCONNECT 0x9C"),
    }
    assert!(matches!(online3.next(WAIT), Received::Closed), "the 3.1.1 client is closed");
    assert!(nodes[0].log_contains("every shard drained: stopping"));

    // Every session is on the other nodes now: each client finds it on either of them, with
    // what was queued for it.
    for (index, client_id) in offline.iter().enumerate() {
        let node = &nodes[1 + index % 2];
        let (mut client, present) = connect_ok(node, V5, client_id);
        assert!(present, "{client_id} lost its session in the drain");
        let queued = receive_publish(&mut client, WAIT).expect("the queued message came along");
        assert_eq!(&queued.payload[..], b"queued");
    }
    let (_, present) = connect_ok(&nodes[2], V5, "online-5");
    assert!(present, "the connected client's session was handed over too");
    // The drained node comes back empty-handed: its sessions are where their clients are.
    nodes[0] = start_node(&etcd.endpoint(), "drain", 0, &dirs[0]);
    let (_, present) = connect_ok(&nodes[0], V3, "online-3");
    assert!(present, "the 3.1.1 session is taken over from the node that holds it");
}

#[test]
fn a_node_outside_a_cluster_refuses_to_drain() {
    let node = Broker::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = node.admin_address().to_string();
    let mut command = tool_command(&broker_binary().to_string_lossy());
    command.args(["drain", "--admin", &admin, "--no-wait"]);
    let output = run_tool(&mut command, WAIT);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("not in a cluster"), "{said}");
    let (_, connack) = RawClient::connect(node.addr(), connect_packet(V5, "still-here"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "the node still serves");
}

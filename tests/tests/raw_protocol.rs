//! Protocol robustness over a raw socket: what the broker does with bytes no well-behaved client
//! sends (malformed packets, a packet before CONNECT, a second CONNECT, an unknown protocol
//! level, oversized packets, silence) and how it treats connections at its limits and at
//! shutdown. Packets are built with the broker's own codec; the broken ones by hand.

use std::time::Duration;

use shardmq_io::codec::{ByteString, Bytes, BytesMut, Properties};
use shardmq_io::codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use shardmq_tests::{connect_packet, Broker, RawClient, Received};

use ProtocolVersion::{V3_1_1, V5};

/// How long a test waits for a reply the broker should send at once.
const REPLY: Duration = Duration::from_secs(3);

/// Expects a v5 DISCONNECT with `reason`, then the connection closed.
fn expect_disconnect_then_close(client: &mut RawClient, reason: ReasonCode) {
    match client.next(REPLY) {
        Received::Packet(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, reason, "{disconnect:?}")
        }
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
    client.expect_closed(REPLY);
}

/// A PUBLISH whose QoS bits are 3 (first byte 0x36): topic "t", packet id 1, and on v5 an empty
/// property block.
fn publish_with_qos_3(version: ProtocolVersion) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, b't', 0x00, 0x01];
    if version.is_v5() {
        body.push(0x00);
    }
    let mut packet = vec![0x36, body.len() as u8];
    packet.extend(body);
    packet
}

#[test]
fn malformed_v5_packet_gets_disconnect_0x81_then_close() {
    let broker = Broker::start(&[]);
    let (mut client, _) = RawClient::connect(broker.addr(), connect_packet(V5, "malformed-5"));
    client.send_bytes(&publish_with_qos_3(V5));
    expect_disconnect_then_close(&mut client, ReasonCode::MALFORMED_PACKET);
}

#[test]
fn malformed_v311_packet_closes_without_a_reply() {
    let broker = Broker::start(&[]);
    let (mut client, _) = RawClient::connect(broker.addr(), connect_packet(V3_1_1, "malformed-3"));
    client.send_bytes(&publish_with_qos_3(V3_1_1));
    client.expect_closed(REPLY);
}

#[test]
fn packet_before_connect_closes() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::open(broker.addr(), V5);
    client.send(&Packet::PingReq);
    client.expect_closed(REPLY);
}

#[test]
fn no_connect_within_connect_timeout_closes() {
    let broker = Broker::start(&["--connect-timeout", "1"]);
    let mut client = RawClient::open(broker.addr(), V3_1_1);
    let took = client.expect_closed(Duration::from_secs(3));
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_secs(2),
        "closed after {took:?}, expected about 1 s"
    );
}

#[test]
fn second_connect_on_v5_gets_disconnect_0x82() {
    let broker = Broker::start(&[]);
    let connect = connect_packet(V5, "twice-5");
    let (mut client, _) = RawClient::connect(broker.addr(), connect.clone());
    client.send(&Packet::Connect(Box::new(connect)));
    expect_disconnect_then_close(&mut client, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn second_connect_on_v311_closes() {
    let broker = Broker::start(&[]);
    let connect = connect_packet(V3_1_1, "twice-3");
    let (mut client, _) = RawClient::connect(broker.addr(), connect.clone());
    client.send(&Packet::Connect(Box::new(connect)));
    client.expect_closed(REPLY);
}

#[test]
fn unsupported_protocol_level_gets_connack_0x01_then_close() {
    let broker = Broker::start(&[]);
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(V3_1_1, "level-6")))
        .encode(V3_1_1, &mut bytes)
        .expect("encode CONNECT");
    // Fixed header (2) + protocol name "MQTT" (2 + 4), then the protocol level.
    assert_eq!(bytes[8], 4);
    bytes[8] = 6;
    let mut client = RawClient::open(broker.addr(), V3_1_1);
    client.send_bytes(&bytes);
    // A 3.1.1 CONNACK with return code 0x01 (unacceptable protocol version), then the close.
    assert_eq!(client.bytes_until_closed(REPLY), [0x20, 0x02, 0x00, 0x01]);
}

#[test]
fn keepalive_above_the_maximum_gets_server_keep_alive() {
    let broker = Broker::start(&["--max-keepalive", "10"]);
    let mut connect = connect_packet(V5, "keepalive-max");
    connect.keep_alive_secs = 60;
    let (_client, connack) = RawClient::connect(broker.addr(), connect);
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{connack:?}");
    assert_eq!(connack.properties.server_keep_alive, Some(10), "{connack:?}");
}

#[test]
fn packet_over_max_packet_size_gets_disconnect_0x95() {
    let broker = Broker::start(&["--max-packet-size", "128"]);
    let (mut client, connack) = RawClient::connect(broker.addr(), connect_packet(V5, "too-large"));
    assert_eq!(connack.properties.maximum_packet_size, Some(128), "{connack:?}");
    client.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteString::from("big"),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from(vec![b'x'; 300]),
    }));
    expect_disconnect_then_close(&mut client, ReasonCode::PACKET_TOO_LARGE);
}

/// A client that sends CONNECT with keepalive 1 s and then nothing must be dropped after
/// 1.5 x keepalive (MQTT-3.1.2-24), not before.
fn check_keepalive_timeout(version: ProtocolVersion) {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet(version, "silent");
    connect.keep_alive_secs = 1;
    let (mut client, connack) = RawClient::connect(broker.addr(), connect);
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{connack:?}");
    let start = std::time::Instant::now();
    if version.is_v5() {
        match client.next(Duration::from_secs(3)) {
            Received::Packet(Packet::Disconnect(disconnect)) => {
                assert_eq!(disconnect.reason, ReasonCode::KEEP_ALIVE_TIMEOUT, "{disconnect:?}")
            }
            other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
        }
    }
    client.expect_closed(Duration::from_secs(3));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took <= Duration::from_millis(2500),
        "disconnected after {took:?}, expected between 1.5 s and 2.5 s"
    );
}

#[test]
fn keepalive_timeout_closes_a_silent_v311_client() {
    check_keepalive_timeout(V3_1_1);
}

#[test]
fn keepalive_timeout_sends_disconnect_0x8d_to_a_silent_v5_client() {
    check_keepalive_timeout(V5);
}

#[test]
fn sigterm_sends_disconnect_0x8b_to_v5_clients_and_exits_0() {
    let mut broker = Broker::start(&[]);
    let (mut v5, _) = RawClient::connect(broker.addr(), connect_packet(V5, "shutdown-5"));
    let (mut v3, _) = RawClient::connect(broker.addr(), connect_packet(V3_1_1, "shutdown-3"));
    let status = broker.stop();
    assert!(status.success(), "exit status {status}");
    // The socket keeps what the broker wrote before it exited.
    expect_disconnect_then_close(&mut v5, ReasonCode::SERVER_SHUTTING_DOWN);
    v3.expect_closed(REPLY);
    assert!(broker.log_contains("shutting down"), "{}", broker.log());
}

#[test]
fn a_client_that_stops_reading_is_still_closed_at_its_keepalive_timeout() {
    use shardmq_io::codec::{PacketId, Subscribe, SubscriptionOptions, TopicFilterEntry};
    let broker = Broker::start(&["--shards", "1"]);
    let mut connect = connect_packet(V3_1_1, "stalled-reader");
    connect.keep_alive_secs = 1;
    let (mut stalled, _) = RawClient::connect(broker.addr(), connect);
    stalled.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from("stall/#"),
            options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
        }],
    }));
    assert!(matches!(stalled.expect_packet(REPLY), Packet::SubAck(_)));
    // 24 MiB for a client that reads none of it: more than the sockets between them hold, so
    // the broker's writes to it block.
    let (mut publisher, _) =
        RawClient::connect(broker.addr(), connect_packet(V3_1_1, "stall-publisher"));
    let payload = Bytes::from(vec![b'x'; 64 << 10]);
    for _ in 0..384 {
        publisher.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from("stall/t"),
            packet_id: None,
            properties: Properties::default(),
            payload: payload.clone(),
        }));
    }
    // Silent for 1.5 × its keepalive, the client is closed although its output is stuck in a
    // full socket: the broker's end of the connection leaves ESTABLISHED (checked with `ss`
    // before the client reads anything, since reading would unblock the broker's write).
    let client = stalled.local_addr().port();
    let filter = format!("( sport = :{} and dport = :{client} )", broker.port());
    let established = || {
        let output = std::process::Command::new("ss")
            .args(["-Htn", "state", "established", &filter])
            .output()
            .expect("ss (iproute2) runs");
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    assert_eq!(established(), 1, "the stalled connection is up before its keepalive ends");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while established() == 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "a client that stopped reading was never closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let received = stalled.count_until_closed(Duration::from_secs(15));
    assert!(received.unwrap_or(0) > 1 << 20, "its socket was not full: {received:?}");
}

/// A DISCONNECT's Session Expiry Interval replaces the CONNECT's (3.14.2.2.2): connected with
/// 1 s and disconnected with 5 s, the session is there 3 s later; connected with 0, a non-zero
/// value at DISCONNECT is a protocol error (0x82) [MQTT-3.14.2-2].
#[test]
fn disconnect_gives_the_session_a_new_expiry_interval() {
    let broker = Broker::start(&[]);
    let disconnect_with_expiry = |secs: u32| {
        let properties =
            Properties { session_expiry_interval: Some(secs), ..Properties::default() };
        Packet::Disconnect(shardmq_io::codec::Disconnect {
            reason: ReasonCode::SUCCESS,
            properties,
        })
    };
    let mut first = connect_packet(V5, "expiry-moves");
    first.properties.session_expiry_interval = Some(1);
    let (mut client, connack) = RawClient::connect(broker.addr(), first);
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    // Closed at once after the DISCONNECT, as most clients do.
    client.send(&disconnect_with_expiry(5));
    drop(client);
    std::thread::sleep(Duration::from_secs(3));
    let mut again = connect_packet(V5, "expiry-moves");
    again.clean_start = false;
    again.properties.session_expiry_interval = Some(1);
    let (_client, connack) = RawClient::connect(broker.addr(), again);
    assert!(connack.session_present, "the session outlived its first 1 s expiry: {connack:?}");

    let (mut zero, _) = RawClient::connect(broker.addr(), connect_packet(V5, "expiry-zero"));
    zero.send(&disconnect_with_expiry(5));
    expect_disconnect_then_close(&mut zero, ReasonCode::PROTOCOL_ERROR);
}

/// A client still writing when the broker ends its connection with a reason code can read that
/// reason: the broker shuts its sending side after the DISCONNECT and drains what the client
/// sends for a while, instead of closing with unread input (which resets the connection: the
/// client's next write fails and most clients never read the DISCONNECT).
#[test]
fn a_client_still_writing_reads_the_disconnect_that_ends_it() {
    let broker = Broker::start(&[]);
    let (mut client, connack) = RawClient::connect(broker.addr(), connect_packet(V5, "eager"));
    let receive_maximum = connack.properties.receive_maximum.expect("v5 CONNACK says it");
    // More QoS 2 PUBLISHes than the broker's Receive Maximum, none released, in one write: the
    // broker refuses the first one over (0x93) with the rest still unread.
    let mut burst = BytesMut::new();
    for id in 1..=receive_maximum.saturating_add(50) {
        let publish = publish_qos(id, QoS::ExactlyOnce);
        publish.encode(V5, &mut burst).expect("encodes");
    }
    client.send_bytes(&burst);
    std::thread::sleep(Duration::from_millis(300));
    // Answering the PUBRECs it has not read yet, as a client library does from its own queue.
    for id in 1..=10 {
        let pubrel = Packet::PubRel(shardmq_io::codec::Ack::success(packet_id(id)));
        client.try_send(&pubrel).expect("the broker still takes what the client writes");
    }
    let mut pubrecs = 0;
    let reason = loop {
        match client.next(REPLY) {
            Received::Packet(Packet::PubRec(_)) => pubrecs += 1,
            Received::Packet(Packet::Disconnect(disconnect)) => break disconnect.reason,
            other => panic!("expected PUBRECs then DISCONNECT, got {other:?} after {pubrecs}"),
        }
    };
    assert_eq!(reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    assert_eq!(pubrecs, usize::from(receive_maximum));
    client.expect_closed(REPLY);
}

fn publish_qos(id: u16, qos: QoS) -> Packet {
    shardmq_tests::publish_packet("eager/t", b"x", qos, false, id)
}

fn packet_id(id: u16) -> shardmq_io::codec::PacketId {
    shardmq_tests::packet_id(id)
}

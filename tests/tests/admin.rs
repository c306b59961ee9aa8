//! The admin endpoint: `/metrics` read with a Prometheus text-format parser, `/health`,
//! `/ready`, and 404 elsewhere.

use std::time::{Duration, Instant};

use shardmq_io::codec::{
    ByteString, Bytes, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
};
use shardmq_tests::{connect_packet, http_get as get, Broker, RawClient};

const WAIT: Duration = Duration::from_secs(5);

/// The sum over shards of metric `name` (with `cause` when given).
fn total(body: &str, name: &str, cause: Option<&str>) -> f64 {
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| cause.is_none_or(|cause| sample.labels.get("cause") == Some(cause)))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Storage group commits over every shard: the `+Inf` buckets of the commit histogram.
fn commits(body: &str) -> u64 {
    body.lines()
        .filter(|line| line.starts_with("shardmq_storage_commit_seconds_count"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn metrics_health_and_readiness() {
    let broker = Broker::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = broker.admin_address();
    assert_eq!(get(admin, "/health").0, 200);
    assert_eq!(get(admin, "/nowhere").0, 404);
    let deadline = Instant::now() + WAIT;
    while get(admin, "/ready").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    let clients: Vec<_> = (0..3)
        .map(|i| {
            RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, &format!("m{i}")))
        })
        .collect();
    let (mut publisher, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "publisher"));
    for i in 1..=5u16 {
        publisher.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from("metrics/test"),
            packet_id: PacketId::new(i),
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        }));
        assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    }
    // A retained message is stored: a storage commit, and one retained message.
    publisher.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: ByteString::from("metrics/retained"),
        packet_id: PacketId::new(9),
        properties: Properties::default(),
        payload: Bytes::from_static(b"kept"),
    }));
    assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    // Shards publish their counters every tick (250 ms).
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(admin, "/metrics");
        assert_eq!(status, 200);
        let connections = total(&body, "shardmq_connections", None);
        let received = total(&body, "shardmq_messages_received_total", None);
        if connections == 4.0 && received == 6.0 && commits(&body) >= 1 {
            assert_eq!(total(&body, "shardmq_messages_dropped_total", Some("queue_full")), 0.0);
            assert!(body.contains("shardmq_uptime_seconds"), "{body}");
            assert_eq!(total(&body, "shardmq_retained_messages", None), 1.0, "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections {connections}, received {received}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(clients);
}

#[test]
fn sys_topics_carry_mosquittos_names() {
    shardmq_tests::require_tool("mosquitto_sub");
    let broker = Broker::start(&["--sys-interval", "1"]);
    let mut command = shardmq_tests::tool_command("mosquitto_sub");
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-v"]).args([
        "-t",
        "$SYS/broker/#",
        "-C",
        "16",
        "-W",
        "5",
    ]);
    let output = shardmq_tests::run_tool(&mut command, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |topic: &str| {
        text.lines()
            .filter_map(|line| line.strip_prefix(topic)?.strip_prefix(' '))
            .next_back()
            .unwrap_or_else(|| panic!("no {topic} in:\n{text}"))
            .to_owned()
    };
    assert!(value("$SYS/broker/version").starts_with("shardmq "));
    assert!(value("$SYS/broker/uptime").ends_with(" seconds"));
    // mosquitto_sub itself is connected (its second round of values counts it for sure).
    let connected: u64 = value("$SYS/broker/clients/connected").parse().expect("a number");
    assert!(connected >= 1, "{text}");
    for topic in [
        "$SYS/broker/clients/total",
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/publish/messages/sent",
        "$SYS/broker/publish/messages/dropped",
    ] {
        value(topic).parse::<u64>().unwrap_or_else(|_| panic!("{topic} is not a number"));
    }
    // `#` alone does not match `$SYS` topics (MQTT 4.7.2).
    let mut command = shardmq_tests::tool_command("mosquitto_sub");
    command
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-v"])
        .args(["-t", "#", "-C", "1", "-W", "2"]);
    let output = shardmq_tests::run_tool(&mut command, Duration::from_secs(10));
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
}

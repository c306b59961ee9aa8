//! The admin endpoint: `/metrics` read with a Prometheus text-format parser, `/health`,
//! `/ready`, 404 elsewhere; the client API (list, inspect, kick) with real clients; and
//! per-client rate limits seen from a client.

use std::time::{Duration, Instant};

use serde_json::Value;
use shardmq_io::codec::{
    ByteString, Bytes, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilterEntry, Will,
};
use shardmq_tests::{
    connect_packet, http_get as get, http_request, persistent_connect_packet, Broker, RawClient,
    Received,
};

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
        // Two rounds of the 12 topics.
        "24",
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
    // At least mosquitto_sub itself was seen connected.
    let maximum: u64 = value("$SYS/broker/clients/maximum").parse().expect("a number");
    assert!(maximum >= 1, "{text}");
    for topic in [
        "$SYS/broker/clients/total",
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/publish/messages/sent",
        "$SYS/broker/publish/messages/dropped",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/retained messages/count",
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

/// A GET or DELETE whose answer is JSON.
fn api(admin: std::net::SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_request(admin, method, path);
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::with_qos(qos),
        }],
    }));
    assert!(matches!(client.expect_packet(WAIT), Packet::SubAck(_)));
}

fn publish_packet(topic: &str, payload: String, qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: PacketId::new(id),
        properties: Properties::default(),
        payload: Bytes::from(payload),
    })
}

fn client_ids(page: &Value) -> Vec<String> {
    page["clients"]
        .as_array()
        .expect("a list of clients")
        .iter()
        .map(|c| c["client_id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn clients_are_listed_inspected_and_kicked() {
    let broker = Broker::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = broker.admin_address();
    let (mut watcher, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "watcher"));
    subscribe(&mut watcher, "will/#", QoS::AtMostOnce);
    let mut connect = persistent_connect_packet(ProtocolVersion::V5, "kick me/1");
    connect.keep_alive_secs = 30;
    connect.will = Some(Will {
        topic: ByteString::from("will/kicked"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (mut kicked, _) = RawClient::connect(broker.addr(), connect);
    subscribe(&mut kicked, "a/#", QoS::AtLeastOnce);
    let (_v3, _) = RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V3_1_1, "v3"));
    let (_other, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "other"));

    // The list, in client id order, a page at a time.
    let (status, page) = api(admin, "GET", "/api/v1/clients");
    assert_eq!(status, 200, "{page}");
    assert_eq!(client_ids(&page), ["kick me/1", "other", "v3", "watcher"]);
    assert!(page["next_after"].is_null());
    let listed = &page["clients"][0];
    assert_eq!(listed["connected"], true);
    assert_eq!(listed["peer_address"], kicked.local_addr().to_string());
    assert_eq!(listed["protocol"], "5.0");
    assert_eq!(listed["keepalive_secs"], 30);
    assert_eq!(listed["session_expiry_secs"], 3600);
    assert_eq!(listed["subscriptions"], 1);
    assert!(listed["connected_at"].as_u64().is_some(), "{listed}");
    let (_, first) = api(admin, "GET", "/api/v1/clients?limit=3");
    assert_eq!(client_ids(&first), ["kick me/1", "other", "v3"]);
    assert_eq!(first["next_after"], "v3");
    let (_, second) = api(admin, "GET", "/api/v1/sessions?limit=3&after=v3");
    assert_eq!(client_ids(&second), ["watcher"]);
    assert_eq!(api(admin, "GET", "/api/v1/clients?limit=0").0, 400);

    // One client in detail (its id percent-encoded).
    let (status, detail) = api(admin, "GET", "/api/v1/clients/kick%20me%2F1");
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["client_id"], "kick me/1");
    assert_eq!(detail["subscriptions"][0]["filter"], "a/#");
    assert_eq!(detail["subscriptions"][0]["qos"], 1);
    assert_eq!(detail["will"], "set");
    assert_eq!(detail["queued"], 0);
    let (status, missing) = api(admin, "GET", "/api/v1/clients/nobody");
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().is_some(), "{missing}");

    // Kicked: DISCONNECT 0x98, then closed; the will goes out as for any server-side close.
    let (status, answer) = api(admin, "DELETE", "/api/v1/clients/kick%20me%2F1");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["disconnected"], true);
    assert_eq!(answer["session_discarded"], false);
    match kicked.expect_packet(WAIT) {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    kicked.expect_closed(WAIT);
    match watcher.expect_packet(WAIT) {
        Packet::Publish(will) => assert_eq!(&*will.topic, "will/kicked"),
        other => panic!("expected the will, got {other:?}"),
    }
    // The persistent session stays, offline, until it is kicked with ?clean=true.
    let (_, offline) = api(admin, "GET", "/api/v1/clients?connected=false");
    assert_eq!(client_ids(&offline), ["kick me/1"]);
    assert_eq!(offline["clients"][0]["connected"], false);
    assert!(offline["clients"][0]["peer_address"].is_null());
    assert!(offline["clients"][0]["disconnected_at"].as_u64().is_some());
    let (status, answer) = api(admin, "DELETE", "/api/v1/clients/kick%20me%2F1?clean=true");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["disconnected"], false);
    assert_eq!(answer["session_discarded"], true);
    assert_eq!(api(admin, "GET", "/api/v1/clients/kick%20me%2F1").0, 404);
    assert_eq!(api(admin, "DELETE", "/api/v1/clients/nobody").0, 404);
    assert_eq!(http_request(admin, "POST", "/api/v1/clients").0, 405);
}

/// Samples of `name` whose labels include `label`.
fn sum_where(body: &str, name: &str, label: (&str, &str)) -> f64 {
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_show_bytes_messages_by_qos_and_queue_depth() {
    let broker = Broker::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = broker.admin_address();
    // A persistent session that goes offline with a subscription: it queues what it misses.
    let (mut sleeper, _) = RawClient::connect(
        broker.addr(),
        persistent_connect_packet(ProtocolVersion::V3_1_1, "sleeper"),
    );
    subscribe(&mut sleeper, "q/#", QoS::AtLeastOnce);
    drop(sleeper);
    let deadline = Instant::now() + WAIT;
    while api(admin, "GET", "/api/v1/clients?connected=false").1["clients"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the session never went offline");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut publisher, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "publisher"));
    for id in 1..=3 {
        publisher.send(&publish_packet("q/x", format!("m{id}"), QoS::AtLeastOnce, id));
        assert!(matches!(publisher.expect_packet(WAIT), Packet::PubAck(_)));
    }
    publisher.send(&publish_packet("q/x", "zero".into(), QoS::AtMostOnce, 0));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = get(admin, "/metrics");
        let qos1 = sum_where(&body, "shardmq_messages_received_total", ("qos", "1"));
        let qos0 = sum_where(&body, "shardmq_messages_received_total", ("qos", "0"));
        let offline = total(&body, "shardmq_queued_messages_offline", None);
        if qos1 == 3.0 && qos0 == 1.0 && offline == 3.0 {
            assert_eq!(total(&body, "shardmq_queued_messages", None), 3.0, "{body}");
            assert_eq!(total(&body, "shardmq_session_queue_largest", None), 3.0, "{body}");
            assert!(total(&body, "shardmq_queued_bytes", None) > 0.0, "{body}");
            // Four PUBLISHes and the subscriber's SUBSCRIBE at least.
            assert!(total(&body, "shardmq_bytes_received_total", None) >= 40.0, "{body}");
            // CONNACKs, SUBACK and PUBACKs.
            assert!(total(&body, "shardmq_bytes_sent_total", None) >= 20.0, "{body}");
            // Payloads by QoS: "m1".."m3" and "zero".
            let payload =
                |qos| sum_where(&body, "shardmq_payload_bytes_received_total", ("qos", qos));
            assert_eq!((payload("0"), payload("1"), payload("2")), (4.0, 6.0, 0.0), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "qos1 {qos1}, qos0 {qos0}, offline {offline}:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Back online, the queue drains to the client (QoS 1 messages it must acknowledge).
    let (mut sleeper, _) = RawClient::connect(
        broker.addr(),
        persistent_connect_packet(ProtocolVersion::V3_1_1, "sleeper"),
    );
    for _ in 0..3 {
        match sleeper.expect_packet(WAIT) {
            Packet::PubAck(_) => {}
            Packet::Publish(p) => sleeper.send(&Packet::PubAck(shardmq_io::codec::Ack::success(
                p.packet_id.expect("QoS 1"),
            ))),
            other => panic!("{other:?}"),
        }
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = get(admin, "/metrics");
        let sent = sum_where(&body, "shardmq_messages_sent_total", ("qos", "1"));
        if sent == 3.0 && total(&body, "shardmq_queued_messages", None) == 0.0 {
            let payload = sum_where(&body, "shardmq_payload_bytes_sent_total", ("qos", "1"));
            assert_eq!(payload, 6.0, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_rate_limited_client_is_slowed_down_and_loses_nothing() {
    const RATE: u16 = 20;
    const MESSAGES: u16 = RATE * 5;
    let broker = Broker::start(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--max-client-message-rate",
        &RATE.to_string(),
    ]);
    let admin = broker.admin_address();
    let (mut subscriber, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "subscriber"));
    subscribe(&mut subscriber, "rate/#", QoS::AtMostOnce);
    let (mut fast, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "fast"));
    let (mut other, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "other"));

    let started = Instant::now();
    // Everything at once: the broker reads it at RATE per second (after a burst of RATE).
    let mut bytes = bytes::BytesMut::new();
    for id in 1..=MESSAGES {
        publish_packet("rate/fast", format!("{id}"), QoS::AtLeastOnce, id)
            .encode(ProtocolVersion::V5, &mut bytes)
            .expect("encodes");
    }
    fast.send_bytes(&bytes);
    // Meanwhile another client is not slowed: its message overtakes most of the fast one's.
    std::thread::sleep(Duration::from_millis(1500));
    other.send(&publish_packet("rate/other", "other".into(), QoS::AtMostOnce, 0));

    let mut got = Vec::new();
    let mut other_at = None;
    while got.len() < usize::from(MESSAGES) {
        match subscriber.next(Duration::from_secs(20)) {
            Received::Packet(Packet::Publish(p)) if &*p.topic == "rate/other" => {
                other_at = Some(got.len());
            }
            Received::Packet(Packet::Publish(p)) => {
                got.push(std::str::from_utf8(&p.payload).expect("utf-8").parse::<u16>().expect("n"))
            }
            other => panic!("after {} messages: {other:?}", got.len()),
        }
    }
    let took = started.elapsed();
    assert_eq!(got, (1..=MESSAGES).collect::<Vec<_>>(), "every message, in order");
    let mut acks = 0;
    while acks < MESSAGES {
        match fast.expect_packet(WAIT) {
            Packet::PubAck(_) => acks += 1,
            other => panic!("{other:?}"),
        }
    }
    // The burst and then RATE per second: about four seconds; the bound is generous.
    let expected = Duration::from_secs(u64::from((MESSAGES - RATE) / RATE));
    assert!(took >= expected * 3 / 4, "{MESSAGES} messages at {RATE}/s took {took:?}");
    let other_at = other_at.expect("the other client's message arrived");
    assert!(other_at < usize::from(MESSAGES) * 3 / 4, "arrived after {other_at} of the fast");

    let (_, body) = get(admin, "/metrics");
    assert!(total(&body, "shardmq_client_throttled_total", None) >= 1.0, "{body}");
}

#[test]
fn pages_continue_when_the_rest_are_on_one_shard() {
    let broker = Broker::start(&["--admin-listen", "127.0.0.1:0", "--shards", "1"]);
    let admin = broker.admin_address();
    let _clients: Vec<RawClient> = ["a", "b", "c"]
        .iter()
        .map(|id| RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, id)).0)
        .collect();
    let (_, first) = api(admin, "GET", "/api/v1/clients?limit=2");
    assert_eq!(client_ids(&first), ["a", "b"]);
    assert_eq!(first["next_after"], "b", "{first}");
    let (_, second) = api(admin, "GET", "/api/v1/clients?limit=2&after=b");
    assert_eq!(client_ids(&second), ["c"]);
    assert!(second["next_after"].is_null(), "{second}");
}

/// One request with `host` as its `Host` header: the status.
fn get_as(admin: std::net::SocketAddr, host: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| tasks.count())
}

#[test]
fn the_admin_api_answers_only_its_own_names_and_holds_no_thread_per_connection() {
    let broker =
        Broker::start(&["--admin-listen", "127.0.0.1:0", "--admin-hosts", "broker1.internal"]);
    let admin = broker.admin_address();
    // DNS rebinding: a page whose own name resolves to this address. Its requests name it.
    assert_eq!(get_as(admin, "evil.example.com", "/api/v1/clients"), 421);
    assert_eq!(get_as(admin, &format!("rebind.example.com:{}", admin.port()), "/health"), 421);
    assert_eq!(get_as(admin, &admin.to_string(), "/health"), 200);
    assert_eq!(get_as(admin, &format!("localhost:{}", admin.port()), "/health"), 200);
    assert_eq!(get_as(admin, "broker1.internal", "/health"), 200);

    // 300 connections that send nothing: no thread each, and the endpoint answers once they
    // are gone.
    let before = threads(broker.pid());
    let silent: Vec<std::net::TcpStream> =
        (0..300).map(|_| std::net::TcpStream::connect(admin).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(500));
    // (A few threads come and go on their own: the runtime's blocking pool. A thread per
    // connection would be 300 more.)
    let during = threads(broker.pid());
    assert!(during <= before + 8, "{during} threads, {before} before");
    drop(silent);
    let deadline = Instant::now() + WAIT;
    while get_as(admin, &admin.to_string(), "/health") != 200 {
        assert!(Instant::now() < deadline, "not answering after the silent connections left");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = get(admin, "/metrics");
    let refused = |reason: &str| -> u64 {
        let line = format!("shardmq_admin_refused_total{{reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(line.as_str())?.parse().ok()).unwrap_or(0)
    };
    assert_eq!(refused("host"), 2, "{metrics}");
    assert!(refused("busy") > 0, "{metrics}");
}

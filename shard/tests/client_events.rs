//! Client events (`client_events`), tested at the shard layer's boundary on a simulated node:
//! the `$SYS/brokers/<node>/clients/<client id>/...` messages a subscriber on another shard
//! gets when clients connect, leave (for each reason), subscribe and unsubscribe; their JSON
//! fields; that nothing is published while the option is off; that `#` does not reach them;
//! that the ACL decides who reads them; that a peer node with a matching route is sent
//! them; and that a sink (the engine's webhook) gets every event, published or not.

mod harness;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use harness::{connect, pid, Node};
use serde_json::{json, Value};
use shardmq_codec::{
    ByteString, Bytes, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry, Unsubscribe, Will,
};
use shardmq_shard::authorize::Authorizer;
use shardmq_shard::topic_tree::topic_matches;
use shardmq_shard::{
    ConnId, Forward, KickSession, Limits, LinkEpoch, LinkNumber, PeerLease, PeerNode, RouteFrame,
    ShardId,
};

use ProtocolVersion::{V3_1_1, V5};

/// What the node's wall clock reads when the test starts.
const START_UNIX_MS: u64 = 1_767_225_600_000;
const CONNECTED: &str = "$SYS/brokers/+/clients/+/connected";
const DISCONNECTED: &str = "$SYS/brokers/+/clients/+/disconnected";

/// A node of three shards publishing client events as node "n1", and a watcher on shard 0
/// subscribed to the connected and disconnected events of every client.
fn watched() -> (Node, ConnId) {
    let mut node = Node::new(3);
    node.enable_client_events("n1", START_UNIX_MS);
    let watcher = watcher(&mut node, &[CONNECTED, DISCONNECTED]);
    (node, watcher)
}

/// A v5 client on shard 0 subscribed to `filters` at QoS 1 (events come at QoS 0 all the same).
fn watcher(node: &mut Node, filters: &[&str]) -> ConnId {
    let id = node.id_on("watcher", 0);
    let watcher = node.connect(&id, V5, true);
    for filter in filters {
        node.subscribe(watcher, filter, QoS::AtLeastOnce);
    }
    node.take(watcher);
    watcher
}

/// The events the watcher got since the last call: (topic, parsed payload).
fn events(node: &mut Node, watcher: ConnId) -> Vec<(String, Value)> {
    node.publishes(watcher)
        .into_iter()
        .map(|publish| {
            assert_eq!(publish.qos, QoS::AtMostOnce, "{publish:?}");
            assert!(!publish.retain, "{publish:?}");
            assert_eq!(publish.properties.payload_format_indicator, Some(true));
            assert_eq!(publish.properties.content_type.as_deref(), Some("application/json"));
            let payload: Value = serde_json::from_slice(&publish.payload).unwrap_or_else(|error| {
                panic!("not JSON ({error}): {:?}", String::from_utf8_lossy(&publish.payload))
            });
            (publish.topic.to_string(), payload)
        })
        .collect()
}

/// The one event the watcher got: its topic must be `topic`.
fn only_event(node: &mut Node, watcher: ConnId, topic: &str) -> Value {
    let mut got = events(node, watcher);
    assert_eq!(got.len(), 1, "{got:?}");
    let (got_topic, payload) = got.remove(0);
    assert_eq!(got_topic, topic);
    payload
}

fn v5_connect(client_id: &str, keepalive: u16, expiry: Option<u32>) -> Connect {
    let mut connect = connect(client_id, V5, expiry.is_none());
    connect.keep_alive_secs = keepalive;
    connect.properties.session_expiry_interval = expiry;
    connect
}

#[test]
fn a_connect_and_a_normal_disconnect_reach_a_subscriber_on_another_shard() {
    let (mut node, watcher) = watched();
    let id = node.id_on("sensor", 2);
    let peer: IpAddr = "192.0.2.10".parse().expect("address");
    let client = node.connect_from(v5_connect(&id, 30, Some(600)), Some(peer));
    let connected =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{id}/connected"));
    assert_eq!(
        connected,
        json!({
            "clientid": id, "username": null, "ipaddress": "192.0.2.10", "proto_ver": 5,
            "keepalive": 30, "clean_start": false, "expiry_interval": 600,
            "connected_at": START_UNIX_MS,
        })
    );

    node.advance(Duration::from_millis(1500));
    node.send(client, Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)));
    let disconnected =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{id}/disconnected"));
    assert_eq!(
        disconnected,
        json!({
            "clientid": id, "username": null, "proto_ver": 5, "reason": "normal",
            "reason_code": 0, "disconnected_at": START_UNIX_MS + 1500,
        })
    );
}

#[test]
fn a_v311_client_without_an_address_and_a_disconnect_with_will() {
    let (mut node, watcher) = watched();
    let id = node.id_on("old", 1);
    let client = node.connect(&id, V3_1_1, false);
    let connected =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{id}/connected"));
    assert_eq!(connected["ipaddress"], Value::Null);
    assert_eq!(connected["proto_ver"], 4);
    assert_eq!(connected["clean_start"], false);
    // A 3.1.1 persistent session never expires.
    assert_eq!(connected["expiry_interval"], u64::from(u32::MAX));
    node.send(
        client,
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)),
    );
    let disconnected =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{id}/disconnected"));
    assert_eq!(
        (&disconnected["reason"], &disconnected["reason_code"]),
        (&json!("normal"), &json!(4))
    );
}

#[test]
fn a_lost_connection_says_so_before_its_will_goes_out() {
    let mut node = Node::new(3);
    node.enable_client_events("n1", START_UNIX_MS);
    let watcher = watcher(&mut node, &[DISCONNECTED, "wills/#"]);
    let id = node.id_on("fragile", 1);
    let mut connect = v5_connect(&id, 60, None);
    connect.will = Some(Will {
        topic: ByteString::from("wills/fragile"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let client = node.connect_with(connect);
    node.advance(Duration::from_secs(2));
    node.lose(client);
    let got = node.publishes(watcher);
    let topics: Vec<&str> = got.iter().map(|publish| &*publish.topic).collect();
    assert_eq!(
        topics,
        [format!("$SYS/brokers/n1/clients/{id}/disconnected").as_str(), "wills/fragile"]
    );
    let payload: Value = serde_json::from_slice(&got[0].payload).expect("JSON");
    assert_eq!(payload["reason"], "connection_lost");
    assert_eq!(payload["reason_code"], Value::Null);
    assert_eq!(payload["disconnected_at"], START_UNIX_MS + 2000);
}

#[test]
fn a_takeover_disconnects_the_old_connection_then_connects_the_new() {
    let (mut node, watcher) = watched();
    let id = node.id_on("phone", 1);
    let old = node.connect_with(v5_connect(&id, 60, Some(3600)));
    events(&mut node, watcher);
    node.connect_with(v5_connect(&id, 60, Some(3600)));
    let got = events(&mut node, watcher);
    let topics: Vec<&str> = got.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("$SYS/brokers/n1/clients/{id}/disconnected").as_str(),
            &format!("$SYS/brokers/n1/clients/{id}/connected"),
        ]
    );
    assert_eq!(got[0].1["reason"], "takeover");
    assert_eq!(got[0].1["reason_code"], 0x8E);
    // The old connection's close comes later and says nothing more.
    assert!(node.closed.contains(&old));
    node.lose(old);
    assert!(events(&mut node, watcher).is_empty());
}

#[test]
fn a_keepalive_timeout_a_protocol_error_and_a_kick_each_say_why() {
    let (mut node, watcher) = watched();
    let sleepy = node.id_on("sleepy", 1);
    node.connect_with(v5_connect(&sleepy, 10, None));
    let rude = node.id_on("rude", 2);
    let rude_conn = node.connect_with(v5_connect(&rude, 60, None));
    let kicked = node.id_on("kicked", 2);
    node.connect_with(v5_connect(&kicked, 60, None));
    events(&mut node, watcher);

    // 1.5 × 10 s without a packet: the shard's tick closes it (the watcher keeps pinging).
    for _ in 0..4 {
        node.advance(Duration::from_secs(4));
        node.send(watcher, Packet::PingReq);
    }
    let payload =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{sleepy}/disconnected"));
    assert_eq!(
        (&payload["reason"], &payload["reason_code"]),
        (&json!("keepalive_timeout"), &json!(0x8D))
    );

    // A second CONNECT is a protocol error (0x82).
    node.send(rude_conn, Packet::Connect(Box::new(v5_connect(&rude, 60, None))));
    let payload =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{rude}/disconnected"));
    assert_eq!(
        (&payload["reason"], &payload["reason_code"]),
        (&json!("protocol_error"), &json!(0x82))
    );

    let now = node.now;
    let shard = shardmq_shard::home_shard(&kicked, node.shard_count()).index();
    node.shards[shard].kick(&kicked, KickSession::Keep, now).expect("a session");
    node.run();
    let payload =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{kicked}/disconnected"));
    assert_eq!((&payload["reason"], &payload["reason_code"]), (&json!("kicked"), &json!(0x98)));
}

#[test]
fn nothing_is_published_while_client_events_are_off() {
    let mut node = Node::new(3);
    let watcher = watcher(&mut node, &[CONNECTED, DISCONNECTED, "$SYS/#"]);
    let id = node.id_on("quiet", 1);
    let client = node.connect(&id, V5, true);
    node.subscribe(client, "a/b", QoS::AtMostOnce);
    node.send(client, Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)));
    assert!(node.publishes(watcher).is_empty());
}

#[test]
fn leading_wildcards_do_not_reach_events_and_clients_cannot_forge_them() {
    let mut node = Node::new(3);
    node.enable_client_events("n1", START_UNIX_MS);
    let everything = watcher(&mut node, &["#", "+/brokers/#", "+/+/+/+/+/connected"]);
    let explicit = watcher(&mut node, &["$SYS/#"]);
    let id = node.id_on("forger", 2);
    let forger = node.connect(&id, V5, true);
    node.take(forger);
    assert_eq!(events(&mut node, explicit).len(), 1);
    let forged = format!("$SYS/brokers/n1/clients/{id}/disconnected");
    node.publish(forger, &forged, "{\"reason\":\"forged\"}", QoS::AtLeastOnce, false);
    let acks = node.take(forger);
    assert!(
        matches!(acks.as_slice(), [Packet::PubAck(ack)] if ack.reason == ReasonCode::NOT_AUTHORIZED),
        "{acks:?}"
    );
    assert!(events(&mut node, explicit).is_empty());
    node.lose(forger);
    assert_eq!(events(&mut node, explicit).len(), 1);
    assert!(node.publishes(everything).is_empty());
}

#[test]
fn subscribe_and_unsubscribe_events_name_the_filters_granted_and_removed() {
    // Two subscriptions per client: a third filter is refused (quota exceeded).
    let limits = Limits { subscriptions_per_client_max: 2, ..Limits::default() };
    let mut node = Node::with_limits(3, limits);
    node.enable_client_events("n1", START_UNIX_MS);
    let watcher = watcher(
        &mut node,
        &["$SYS/brokers/+/clients/+/subscribed", "$SYS/brokers/+/clients/+/unsubscribed"],
    );
    let id = node.id_on("reader", 2);
    let client = node.connect(&id, V5, true);
    let entry = |filter: &str, qos| TopicFilterEntry {
        filter: ByteString::from(filter),
        options: SubscriptionOptions::with_qos(qos),
    };
    let filters = vec![
        entry("a/+", QoS::AtLeastOnce),
        entry("$share/g/b/#", QoS::ExactlyOnce),
        entry("over/quota", QoS::AtMostOnce),
    ];
    let subscribe = Subscribe { packet_id: pid(1), properties: Properties::default(), filters };
    node.send(client, Packet::Subscribe(subscribe));
    let payload =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{id}/subscribed"));
    assert_eq!(
        payload,
        json!({
            "clientid": id, "username": null,
            "topics": [{"topic": "a/+", "qos": 1}, {"topic": "$share/g/b/#", "qos": 2}],
            "subscribed_at": START_UNIX_MS,
        })
    );
    let filters = vec![ByteString::from("a/+"), ByteString::from("never/subscribed")];
    let unsubscribe = Unsubscribe { packet_id: pid(2), properties: Properties::default(), filters };
    node.send(client, Packet::Unsubscribe(unsubscribe));
    let payload =
        only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{id}/unsubscribed"));
    assert_eq!(
        payload,
        json!({
            "clientid": id, "username": null, "topics": ["a/+"], "unsubscribed_at": START_UNIX_MS,
        })
    );
}

#[test]
fn odd_client_ids_stay_one_topic_level_and_exact_in_the_payload() {
    let (mut node, watcher) = watched();
    for (raw, level) in [
        ("a/b", "a%2Fb"),
        ("+#%", "%2B%23%25"),
        ("quote\"back\\slash", "quote\"back\\slash"),
        ("tab\tbell\u{7}", "tab\tbell\u{7}"),
        ("датчик-温度-🚀", "датчик-温度-🚀"),
    ] {
        node.connect(raw, V5, true);
        let payload =
            only_event(&mut node, watcher, &format!("$SYS/brokers/n1/clients/{level}/connected"));
        assert_eq!(payload["clientid"], raw);
    }
}

/// Alice may read the connected events of her own clients only; everyone else none.
#[derive(Debug)]
struct OwnEvents;

impl Authorizer for OwnEvents {
    fn can_publish(&self, _username: Option<&str>, _client_id: &str, _topic: &str) -> bool {
        true
    }

    fn can_subscribe(&self, username: Option<&str>, _client_id: &str, filter: &str) -> bool {
        username == Some("alice") && filter == CONNECTED
    }

    fn can_read(&self, username: Option<&str>, _client_id: &str, topic: &str) -> bool {
        username == Some("alice")
            && topic_matches("$SYS/brokers/+/clients/+/connected", topic)
            && topic.contains("/alice-")
    }
}

#[test]
fn the_acl_decides_who_subscribes_to_and_reads_events() {
    let mut node = Node::new(2);
    node.enable_client_events("n1", START_UNIX_MS);
    for shard in &mut node.shards {
        shard.set_authorizer(Some(Arc::new(OwnEvents)));
    }
    let as_user = |client_id: &str, user: &str| Connect {
        username: Some(ByteString::from(user)),
        ..connect(client_id, V5, true)
    };
    let watcher = node.connect_with(as_user("alice-watch", "alice"));
    let mallory = node.connect_with(as_user("mallory", "mallory"));
    node.subscribe(watcher, CONNECTED, QoS::AtMostOnce);
    node.take(mallory);
    let subscribe = Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(CONNECTED),
            options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
        }],
    };
    node.send(mallory, Packet::Subscribe(subscribe));
    let refused = node.take(mallory);
    assert!(
        matches!(refused.as_slice(), [Packet::SubAck(ack)] if ack.reasons == [ReasonCode::NOT_AUTHORIZED]),
        "{refused:?}"
    );
    node.connect_with(as_user("bob-1", "bob"));
    node.connect_with(as_user("alice-phone", "alice"));
    let payload = only_event(&mut node, watcher, "$SYS/brokers/n1/clients/alice-phone/connected");
    // With users told apart, the session's user is in the event.
    assert_eq!(payload["username"], "alice");
    assert!(node.publishes(mallory).is_empty());
}

#[test]
fn a_peer_node_with_a_matching_route_is_sent_the_event() {
    const PEER: PeerNode = PeerNode(0);
    let mut node = Node::new(2);
    node.enable_client_events("n1", START_UNIX_MS);
    for shard in &mut node.shards {
        shard.set_peers(vec![PEER]);
    }
    // The peer's shard 0 has a subscriber to every client's disconnected event.
    let epoch = LinkEpoch { lease: PeerLease(1), link: LinkNumber(1) };
    let route = shardmq_shard::PeerRoute { filter: ByteString::from(DISCONNECTED), group: None };
    let frame = RouteFrame::Snapshot { shards: 1, routes: vec![route] };
    node.shards[0].peer_routes_from_link(PEER, ShardId(0), epoch, frame);
    node.run();
    let id = node.id_on("roamer", 1);
    let client = node.connect(&id, V5, true);
    // Nobody anywhere subscribes to connected events: none is built or sent.
    assert!(node.forwarded.is_empty(), "{:?}", node.forwarded);
    node.lose(client);
    let topics: Vec<String> = node
        .forwarded
        .iter()
        .filter_map(|(_, peer, forward)| match forward {
            Forward::Publish { message, deliver: true, .. } if *peer == PEER => {
                Some(message.topic.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(topics, [format!("$SYS/brokers/n1/clients/{id}/disconnected")]);
}

#[test]
fn shutting_down_tells_peer_nodes_each_client_left() {
    const PEER: PeerNode = PeerNode(0);
    let mut node = Node::new(2);
    node.enable_client_events("n1", START_UNIX_MS);
    for shard in &mut node.shards {
        shard.set_peers(vec![PEER]);
    }
    let epoch = LinkEpoch { lease: PeerLease(1), link: LinkNumber(1) };
    let route = shardmq_shard::PeerRoute { filter: ByteString::from(DISCONNECTED), group: None };
    let frame = RouteFrame::Snapshot { shards: 1, routes: vec![route] };
    node.shards[0].peer_routes_from_link(PEER, ShardId(0), epoch, frame);
    let ids = [node.id_on("a", 0), node.id_on("b", 1)];
    for id in &ids {
        node.connect(id, V3_1_1, true);
    }
    let now = node.now;
    for shard in &mut node.shards {
        shard.shutdown(now);
    }
    node.run();
    let mut reasons: Vec<(String, String)> = node
        .forwarded
        .iter()
        .filter_map(|(_, _, forward)| match forward {
            Forward::Publish { message, .. } => {
                let payload: Value = serde_json::from_slice(&message.payload).expect("JSON");
                Some((payload["clientid"].to_string(), payload["reason"].to_string()))
            }
            _ => None,
        })
        .collect();
    reasons.sort();
    let expected: Vec<(String, String)> =
        ids.iter().map(|id| (format!("\"{id}\""), "\"server_shutdown\"".to_string())).collect();
    assert_eq!(reasons, expected);
}

#[test]
fn an_event_forwarded_by_a_peer_reaches_subscribers_here() {
    // The event as node n2 publishes it.
    let mut other = Node::new(1);
    other.enable_client_events("n2", START_UNIX_MS);
    let listener = watcher(&mut other, &[CONNECTED]);
    other.connect("far-away", V5, true);
    let connected = other.publishes(listener).remove(0);
    let (mut node, here) = watched();
    let message = Arc::new(shardmq_shard::Message {
        topic: connected.topic.clone(),
        payload: connected.payload.clone(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: connected.properties.clone(),
        expires_at: None,
        publisher: ByteString::from_static("$SYS"),
    });
    let now = node.now;
    node.shards[1].peer_publish(
        PeerNode(0),
        ShardId(0),
        message,
        None,
        true,
        None,
        None,
        None,
        0,
        now,
    );
    node.run();
    let payload = only_event(&mut node, here, "$SYS/brokers/n2/clients/far-away/connected");
    assert_eq!(payload["clientid"], "far-away");
}

#[test]
fn a_client_that_subscribes_to_its_own_events_is_not_sent_its_disconnection() {
    let mut node = Node::new(2);
    node.enable_client_events("n1", START_UNIX_MS);
    let id = node.id_on("self", 1);
    let client = node.connect_with(v5_connect(&id, 60, Some(60)));
    node.subscribe(client, DISCONNECTED, QoS::AtMostOnce);
    node.lose(client);
    let publishes: Vec<Publish> = node.publishes(client);
    assert!(publishes.is_empty(), "{publishes:?}");
}

/// What a sink got: one line per event, `client kind detail peer`.
type Sunk = std::rc::Rc<std::cell::RefCell<Vec<String>>>;

/// Client events handed to a sink on every shard (and, with `published`, on `$SYS` too).
fn sunk(node: &mut Node, published: bool) -> Sunk {
    let sunk = Sunk::default();
    let clock = shardmq_shard::persist::WallClock::fixed(node.now, START_UNIX_MS);
    for shard in &mut node.shards {
        let into = sunk.clone();
        let events = if published {
            shardmq_shard::ClientEvents::new("n1", clock)
        } else {
            shardmq_shard::ClientEvents::unpublished(clock)
        };
        let sink = Box::new(move |event: &shardmq_shard::ClientEvent<'_>| {
            assert_eq!(event.unix_ms, START_UNIX_MS);
            let peer = event.peer.map_or("-".to_owned(), |ip| ip.to_string());
            into.borrow_mut().push(format!("{} {:?} {peer}", event.client_id, event.kind));
        });
        shard.set_client_events(Some(events.with_sink(sink)));
    }
    sunk
}

#[test]
fn a_sink_gets_every_event_with_its_address_whoever_subscribes() {
    let mut node = Node::new(3);
    let sunk = sunk(&mut node, false);
    // Not published: a `$SYS` subscriber hears nothing.
    let watcher = watcher(&mut node, &["$SYS/brokers/+/clients/#"]);
    sunk.borrow_mut().clear();
    let id = node.id_on("hooked", 2);
    let peer: IpAddr = "192.0.2.7".parse().expect("an address");
    let client = node.connect_from(v5_connect(&id, 30, None), Some(peer));
    let entry = |filter: &str, qos| TopicFilterEntry {
        filter: ByteString::from(filter),
        options: SubscriptionOptions::with_qos(qos),
    };
    let filters = vec![entry("a/+", QoS::AtLeastOnce), entry("b", QoS::AtMostOnce)];
    let subscribe = Subscribe { packet_id: pid(1), properties: Properties::default(), filters };
    node.send(client, Packet::Subscribe(subscribe));
    let filters = vec![ByteString::from("a/+")];
    let unsubscribe = Unsubscribe { packet_id: pid(2), properties: Properties::default(), filters };
    node.send(client, Packet::Unsubscribe(unsubscribe));
    node.lose(client);
    let got = sunk.borrow().clone();
    assert_eq!(
        got,
        [
            format!(
                "{id} Connected {{ proto_ver: 5, keepalive_secs: 30, clean_start: true, \
                 expiry_secs: 0 }} {peer}"
            ),
            format!("{id} Subscribed {{ topic: \"a/+\", qos: 1 }} {peer}"),
            format!("{id} Subscribed {{ topic: \"b\", qos: 0 }} {peer}"),
            format!("{id} Unsubscribed {{ topic: \"a/+\" }} {peer}"),
            format!(
                "{id} Disconnected {{ reason: \"connection_lost\", reason_code: None }} {peer}"
            ),
        ]
    );
    assert!(events(&mut node, watcher).is_empty());
}

#[test]
fn a_sink_and_sys_subscribers_get_the_same_events_and_a_takeover_once() {
    let mut node = Node::new(3);
    let sunk = sunk(&mut node, true);
    let watcher = watcher(&mut node, &[CONNECTED, DISCONNECTED]);
    sunk.borrow_mut().clear();
    let id = node.id_on("phone", 1);
    let old = node.connect_with(v5_connect(&id, 60, Some(3600)));
    node.connect_with(v5_connect(&id, 60, Some(3600)));
    // The old connection's close comes later and says nothing more, to either.
    node.lose(old);
    let kinds: Vec<String> = sunk
        .borrow()
        .iter()
        .map(|line| line.split(' ').nth(1).expect("a kind").to_owned())
        .collect();
    assert_eq!(kinds, ["Connected", "Disconnected", "Connected"]);
    assert!(sunk.borrow()[1].contains("reason: \"takeover\", reason_code: Some(142)"));
    assert_eq!(events(&mut node, watcher).len(), 3);
}

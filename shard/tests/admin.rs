//! What the admin API asks of shards (pages of sessions, one session in detail, kicks, queue
//! gauges), the counters `/metrics` shows, and per-connection rate limits: tested on a
//! simulated node with a fake clock.

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::*;
use shardmq_codec::{
    Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling,
    SubscriptionOptions, Will,
};
use shardmq_shard::{home_shard, ClientSummary, KickSession, Kicked, Limits, Presence, WillState};

use ProtocolVersion::{V3_1_1, V5};

/// Every session of the node, page by page, as the admin thread merges them: each shard's
/// page past the cursor, merged in order and cut to `limit`.
fn list_all(node: &Node, limit: usize, presence: Presence) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut page: Vec<ClientSummary> = node
            .shards
            .iter()
            .flat_map(|shard| shard.client_page(after.as_deref(), limit, presence, node.now))
            .collect();
        page.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        page.truncate(limit);
        if page.is_empty() {
            return pages;
        }
        after = page.last().map(|last| last.client_id.to_string());
        pages.push(page.into_iter().map(|c| c.client_id.to_string()).collect());
    }
}

#[test]
fn sessions_are_listed_in_pages_in_client_id_order() {
    let mut node = Node::new(3);
    let mut ids: Vec<String> = (0..23).map(|i| format!("client-{i:02}")).collect();
    for id in &ids {
        node.connect(id, V5, false);
    }
    let offline = node.connect("zz-offline", V3_1_1, false);
    node.lose(offline);
    ids.push("zz-offline".to_owned());

    let pages = list_all(&node, 10, Presence::Any);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 4]);
    assert_eq!(pages.concat(), ids);
    // Every shard answers at most the limit.
    for shard in &node.shards {
        assert!(shard.client_page(None, 2, Presence::Any, node.now).len() <= 2);
    }
    assert_eq!(list_all(&node, 100, Presence::Offline).concat(), ["zz-offline"]);
    assert_eq!(list_all(&node, 100, Presence::Connected).concat().len(), 23);
    assert!(node.shards[0].client_page(None, 0, Presence::Any, node.now).is_empty());
}

#[test]
fn a_session_in_detail() {
    let mut node = Node::new(2);
    let publisher = node.connect("publisher", V5, true);
    let mut connect = connect("watched", V5, false);
    connect.keep_alive_secs = 30;
    connect.will = Some(Will {
        topic: "wills/watched".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    let watched = node.connect_with(connect);
    node.subscribe(watched, "a/#", QoS::AtLeastOnce);
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    node.subscribe_with(watched, "$share/g/b/+", options, Some(7));
    node.advance(Duration::from_secs(5));

    let home = home_shard("watched", 2).index();
    let detail = node.shards[home].client_detail("watched", node.now).expect("found");
    let summary = &detail.summary;
    assert_eq!(summary.protocol, Some(V5));
    assert_eq!(summary.keepalive_secs, Some(30));
    assert_eq!(summary.session_expiry_secs, 3600);
    assert_eq!(summary.connected_for, Some(Duration::from_secs(5)));
    assert_eq!(summary.offline_for, None);
    assert_eq!(summary.subscriptions, 2);
    assert_eq!(detail.will, WillState::Connected);
    let filters: Vec<(&str, QoS, Option<u32>)> =
        detail.subscriptions.iter().map(|s| (&*s.filter, s.qos, s.identifier)).collect();
    assert_eq!(
        filters,
        [("$share/g/b/+", QoS::ExactlyOnce, Some(7)), ("a/#", QoS::AtLeastOnce, None)]
    );
    assert!(detail.subscriptions[0].no_local && detail.subscriptions[0].retain_as_published);

    // Offline, with messages waiting: one in flight when it left, two queued.
    node.publish(publisher, "a/1", "one", QoS::AtLeastOnce, false);
    node.lose(watched);
    node.publish(publisher, "a/2", "two", QoS::AtLeastOnce, false);
    node.publish(publisher, "a/3", "three", QoS::AtLeastOnce, false);
    node.advance(Duration::from_secs(2));
    let detail = node.shards[home].client_detail("watched", node.now).expect("found");
    assert_eq!(detail.summary.conn, None);
    assert_eq!(detail.summary.protocol, None);
    assert_eq!(detail.summary.offline_for, Some(Duration::from_secs(2)));
    assert_eq!(detail.summary.inflight_out, 1);
    assert_eq!(detail.summary.queued_messages, 2);
    assert!(detail.queued_bytes > 0);
    assert_eq!(detail.will, WillState::None, "published when the connection was lost");

    assert!(node.shards[home].client_detail("nobody", node.now).is_none());
    assert!(node.shards[1 - home].client_detail("watched", node.now).is_none(), "not its home");

    let gauges = node.shards[home].queue_gauges();
    assert_eq!(gauges.queued_messages, 2);
    assert_eq!(gauges.queued_messages_offline, 2);
    assert_eq!(gauges.inflight_out, 1);
    assert_eq!(gauges.largest_queue, 2);
}

fn with_will(id: &str, version: ProtocolVersion, clean_start: bool) -> shardmq_codec::Connect {
    let mut c = connect(id, version, clean_start);
    c.will = Some(Will {
        topic: format!("will/{id}").into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    c
}

#[test]
fn a_kick_disconnects_with_0x98_and_publishes_the_will() {
    let mut node = Node::new(2);
    let watcher = node.connect("watcher", V5, true);
    node.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let v5 = node.connect_with(with_will("v5", V5, false));
    let v3 = node.connect_with(with_will("v3", V3_1_1, false));
    node.take(v5);
    node.take(v3);

    let now = node.now;
    let kicked = node.shards[home_shard("v5", 2).index()].kick("v5", KickSession::Keep, now);
    node.run();
    assert_eq!(kicked, Some(Kicked { disconnected: true, session_ended: false }));
    assert!(
        matches!(node.take(v5).as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::ADMINISTRATIVE_ACTION)
    );
    assert!(node.closed.contains(&v5));
    // A 3.1.1 client is just closed.
    let kicked = node.shards[home_shard("v3", 2).index()].kick("v3", KickSession::Keep, now);
    node.run();
    assert_eq!(kicked, Some(Kicked { disconnected: true, session_ended: false }));
    assert!(node.take(v3).is_empty() && node.closed.contains(&v3));
    let topics: Vec<String> = node.publishes(watcher).iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["will/v5", "will/v3"]);
    // The persistent session stays (offline) until it is kicked with its session.
    let home = home_shard("v5", 2).index();
    assert!(node.shards[home].client_detail("v5", now).is_some());
    let kicked = node.shards[home].kick("v5", KickSession::Discard, now);
    node.run();
    assert_eq!(kicked, Some(Kicked { disconnected: false, session_ended: true }));
    assert!(node.shards[home].client_detail("v5", now).is_none());
    assert!(node.ended.iter().any(|ended| &**ended == "v5"));
    assert_eq!(node.shards[home].kick("v5", KickSession::Keep, now), None);
}

#[test]
fn counters_of_bytes_and_messages_by_qos() {
    let mut node = Node::new(1);
    let sub = node.connect("sub", V5, true);
    let publisher = node.connect("pub", V3_1_1, true);
    node.subscribe(sub, "t", QoS::ExactlyOnce);
    let before = node.shards[0].stats();
    node.publish(publisher, "t", "zero", QoS::AtMostOnce, false);
    node.publish(publisher, "t", "one", QoS::AtLeastOnce, false);
    node.publish(publisher, "t", "one", QoS::AtLeastOnce, false);
    let stats = node.shards[0].stats();
    assert_eq!(stats.messages_received, [1, 2, 0]);
    assert_eq!(stats.messages_sent, [1, 2, 0]);
    // PUBLISH "t" "zero" at QoS 0 is 2 + 3 + 4 bytes; at QoS 1 "one" 2 + 3 + 2 + 3.
    assert_eq!(stats.bytes_received - before.bytes_received, 9 + 10 + 10);
    // Out: the three PUBLISHes to the subscriber (v5: one more byte each for the property
    // length) and two PUBACKs (4 bytes each).
    assert_eq!(stats.bytes_sent - before.bytes_sent, 10 + 11 + 11 + 4 + 4);
    node.send(sub, Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)));
}

fn rate_limited(messages: Option<u32>, bytes: Option<u64>) -> Node {
    Node::with_limits(
        2,
        Limits {
            client_messages_per_sec_max: messages,
            client_bytes_per_sec_max: bytes,
            ..Limits::default()
        },
    )
}

#[test]
fn a_connection_over_its_message_rate_is_paused_until_its_budget_refills() {
    let mut node = rate_limited(Some(4), None);
    let fast = node.connect("fast", V5, true);
    let other = node.connect("other", V5, true);
    let shard = |id: &str| home_shard(id, 2).index();
    for i in 0..3 {
        node.publish(fast, "t", &format!("{i}"), QoS::AtMostOnce, false);
        assert!(!node.shards[shard("fast")].is_paused(fast), "within the burst");
    }
    node.publish(fast, "t", "3", QoS::AtMostOnce, false);
    assert!(node.shards[shard("fast")].is_paused(fast), "the burst is spent");
    assert!(!node.shards[shard("other")].is_paused(other), "others are not slowed");
    node.publish(other, "t", "x", QoS::AtMostOnce, false);
    assert!(!node.shards[shard("other")].is_paused(other));
    // A quarter of a second buys one message.
    let due = node.shards[shard("fast")].next_deadline().expect("a timer");
    assert!(due <= node.now + Duration::from_millis(250));
    node.advance(Duration::from_millis(200));
    assert!(node.shards[shard("fast")].is_paused(fast));
    assert!(node.resumed.is_empty());
    node.advance(Duration::from_millis(50));
    assert!(!node.shards[shard("fast")].is_paused(fast));
    assert_eq!(node.resumed, [fast]);
    assert_eq!(node.shards[shard("fast")].stats().throttled, 1);
    let detail = node.shards[shard("fast")].client_detail("fast", node.now).expect("found");
    assert!(!detail.throttled);
}

#[test]
fn a_connection_over_its_byte_rate_is_paused_and_nothing_is_lost() {
    let mut node = rate_limited(None, Some(100));
    let sub = node.connect("sub", V5, true);
    node.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = node.connect("pub", V5, true);
    let shard = home_shard("pub", 2).index();
    let payload = "x".repeat(90);
    // 90 bytes of payload and 8 of header: the first fits the burst, the second overdraws it.
    node.publish(publisher, "t", &payload, QoS::AtLeastOnce, false);
    assert!(!node.shards[shard].is_paused(publisher));
    node.publish(publisher, "t", &payload, QoS::AtLeastOnce, false);
    assert!(node.shards[shard].is_paused(publisher));
    let detail = node.shards[shard].client_detail("pub", node.now).expect("found");
    assert!(detail.throttled && !detail.paused);
    assert_eq!(node.shards[shard].queue_gauges().throttled_connections, 1);
    // About a second to pay the debt of ~96 bytes.
    node.advance(Duration::from_millis(500));
    assert!(node.shards[shard].is_paused(publisher));
    node.advance(Duration::from_millis(500));
    assert!(!node.shards[shard].is_paused(publisher));
    // Both messages were delivered: throttling slows, it never drops.
    assert_eq!(node.publishes(sub).len(), 2);
}

#[test]
fn no_rate_limit_means_no_throttle() {
    let mut node = Node::new(1);
    let publisher = node.connect("pub", V5, true);
    for _ in 0..10_000 {
        node.publish(publisher, "t", "m", QoS::AtMostOnce, false);
    }
    assert!(!node.shards[0].is_paused(publisher));
    assert_eq!(node.shards[0].stats().throttled, 0);
}

//! The shard's side of the cluster at its boundary: two simulated nodes (durable, two shards
//! each) with what one sends the other (`Effect::Forward`, `Effect::RoutesChanged`) carried over
//! by hand, as the engine's node links do; and one node's replica of a peer's routes fed the
//! frames of several link connections and incarnations of the peer, in the orders the links and
//! the mesh can deliver them.

mod harness;

use harness::{connack, payloads, Node};
use shardmq_codec::{ByteString, Packet, ProtocolVersion, QoS, SubscriptionOptions};
use shardmq_shard::{
    retained_shard, ConnId, Forward, LinkEpoch, LinkNumber, PeerLease, PeerNode, PeerRoute,
    RetainedPlacement, RouteFrame, ShardId, ShardStats,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Each node knows the other as its peer number 0.
const PEER: PeerNode = PeerNode(0);
const NOW_UNIX_MS: u64 = 1_790_000_000_000;

struct Pair {
    a: Node,
    b: Node,
    /// The links of A's shards to B, and of B's shards to A.
    a_to_b: Links,
    b_to_a: Links,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// The outgoing links of one node's shards, as the engine keeps them: each connection's epoch
/// and the version of the last route delta sent on it.
struct Links {
    epochs: Vec<LinkEpoch>,
    versions: Vec<u64>,
}

fn pair() -> Pair {
    let dirs = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let mut a = Node::durable(dirs.0.path(), 2, NOW_UNIX_MS);
    let mut b = Node::durable(dirs.1.path(), 2, NOW_UNIX_MS);
    for node in [&mut a, &mut b] {
        for shard in &mut node.shards {
            shard.set_peers(vec![PEER]);
        }
    }
    version_retained_writes(&mut a, 1);
    version_retained_writes(&mut b, 2);
    let a_to_b = connect_links(&a, &mut b, PeerLease(1));
    let b_to_a = connect_links(&b, &mut a, PeerLease(2));
    Pair { a, b, a_to_b, b_to_a, _dirs: dirs }
}

/// Retained writes on `node` carry versions, as in a cluster; `tag` tells its shards apart.
fn version_retained_writes(node: &mut Node, tag: u64) {
    let clock = shardmq_shard::persist::WallClock::fixed(node.now, NOW_UNIX_MS);
    let versions = shardmq_shard::RetainedClock::new();
    for (index, shard) in node.shards.iter_mut().enumerate() {
        shard.enable_retained_versions(clock, tag * 16 + index as u64, versions.clone());
    }
}

/// Connects every shard of `from` to `to`: each connection starts with the shard's snapshot.
fn connect_links(from: &Node, to: &mut Node, lease: PeerLease) -> Links {
    let shards = from.shard_count();
    let mut links = Links { epochs: Vec::new(), versions: Vec::new() };
    for (origin, shard) in from.shards.iter().enumerate() {
        let epoch = LinkEpoch { lease, link: LinkNumber(100 + origin as u64) };
        let frame = RouteFrame::Snapshot { shards, routes: shard.route_snapshot() };
        to.shards[0].peer_routes_from_link(PEER, ShardId(origin as u16), epoch, frame);
        to.run();
        links.epochs.push(epoch);
        links.versions.push(0);
    }
    links
}

/// Carries everything each node sent the other until nothing moves. Frames from a peer land on
/// the receiving node's shard 0, as a link accepted there would.
fn exchange(pair: &mut Pair) {
    loop {
        let moved = carry(&mut pair.a, &mut pair.b, &mut pair.a_to_b)
            + carry(&mut pair.b, &mut pair.a, &mut pair.b_to_a);
        if moved == 0 {
            return;
        }
    }
}

fn carry(from: &mut Node, to: &mut Node, links: &mut Links) -> usize {
    let forwarded = std::mem::take(&mut from.forwarded);
    let routes = std::mem::take(&mut from.route_changes);
    let fetches = std::mem::take(&mut from.fetches);
    let moved = forwarded.len() + routes.len() + fetches.len();
    let now = to.now;
    // The peer answers each fetch from the partition that keeps the topic.
    for (shard, token, topic, holders) in fetches {
        assert_eq!(holders, [PEER]);
        let partition = retained_shard(&topic, 2).index();
        let message = to.shards[partition].retained_message(&topic, now);
        from.shards[shard.index()].retained_fetched(token, message, from.now);
        from.run();
    }
    for (origin, added, removed) in routes {
        let version = &mut links.versions[origin.index()];
        *version += 1;
        let frame = RouteFrame::Delta { version: *version, added, removed };
        to.shards[0].peer_routes_from_link(PEER, origin, links.epochs[origin.index()], frame);
        to.run();
    }
    for (origin, peer, forward) in forwarded {
        assert_eq!(peer, PEER);
        match forward {
            Forward::Publish { message, receipt, deliver, shared, holders, publisher, version } => {
                let holders = as_peer_names(holders);
                let shard = &mut to.shards[0];
                shard.peer_publish(
                    PEER, origin, message, receipt, deliver, shared, holders, publisher, version,
                    now,
                );
            }
            Forward::Receipt { token, shard, ok, matched } => {
                to.shards[shard.index()].peer_receipt(token, ok, matched, now)
            }
            Forward::Pace { shard, conn, pause } => {
                to.shards[shard.index()].peer_pace(conn, pause, now)
            }
        }
        to.run();
    }
    moved
}

fn pubacks(node: &mut Node, conn: shardmq_shard::ConnId) -> usize {
    node.take(conn).iter().filter(|p| matches!(p, Packet::PubAck(_))).count()
}

#[test]
fn a_qos1_publish_is_acknowledged_once_the_peer_stored_it() {
    let mut pair = pair();
    let subscriber = pair.b.connect("sub", V5, false);
    pair.b.subscribe(subscriber, "t/#", QoS::AtLeastOnce);
    exchange(&mut pair);
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.take(publisher);

    pair.a.publish(publisher, "t/1", "m", QoS::AtLeastOnce, false);
    assert_eq!(pubacks(&mut pair.a, publisher), 0, "acknowledged before the peer stored it");
    exchange(&mut pair);
    assert_eq!(payloads(&pair.b.publishes(subscriber)), ["m"]);
    assert_eq!(pubacks(&mut pair.a, publisher), 1);
}

#[test]
fn a_peer_without_a_matching_route_gets_nothing_and_an_unsubscribe_stops_forwarding() {
    let mut pair = pair();
    let subscriber = pair.b.connect("sub", V5, true);
    pair.b.subscribe(subscriber, "t/1", QoS::AtMostOnce);
    exchange(&mut pair);
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "other", "x", QoS::AtMostOnce, false);
    assert!(pair.a.forwarded.is_empty(), "forwarded without a matching route");
    pair.a.publish(publisher, "t/1", "y", QoS::AtMostOnce, false);
    exchange(&mut pair);
    assert_eq!(payloads(&pair.b.publishes(subscriber)), ["y"]);

    pair.b.send(
        subscriber,
        Packet::Unsubscribe(shardmq_codec::Unsubscribe {
            packet_id: harness::pid(2),
            properties: Default::default(),
            filters: vec!["t/1".into()],
        }),
    );
    exchange(&mut pair);
    pair.a.publish(publisher, "t/1", "z", QoS::AtMostOnce, false);
    assert!(pair.a.forwarded.is_empty(), "forwarded after the peer's route was removed");
}

#[test]
fn a_shared_group_with_members_on_both_nodes_gets_each_message_once() {
    let mut pair = pair();
    let on_a = pair.a.connect("member-a", V5, true);
    pair.a.subscribe(on_a, "$share/g/s/#", QoS::AtMostOnce);
    let on_b = pair.b.connect("member-b", V5, true);
    pair.b.subscribe(on_b, "$share/g/s/#", QoS::AtMostOnce);
    exchange(&mut pair);
    let publisher = pair.a.connect("pub", V5, true);
    for i in 0..10 {
        pair.a.publish(publisher, "s/1", &i.to_string(), QoS::AtMostOnce, false);
        exchange(&mut pair);
    }
    let got_a = pair.a.publishes(on_a).len();
    let got_b = pair.b.publishes(on_b).len();
    assert_eq!(got_a + got_b, 10, "a: {got_a}, b: {got_b}");
    assert!(got_a > 0 && got_b > 0, "one node got them all: a {got_a}, b {got_b}");
}

#[test]
fn a_retained_message_reaches_a_peer_with_no_subscriber() {
    let mut pair = pair();
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "r/1", "kept", QoS::AtMostOnce, true);
    exchange(&mut pair);
    let subscriber = pair.b.connect("sub", V5, true);
    pair.b.subscribe(subscriber, "r/#", QoS::AtMostOnce);
    assert_eq!(payloads(&pair.b.publishes(subscriber)), ["kept"]);
}

#[test]
fn a_session_handed_over_keeps_its_subscriptions_and_queued_messages() {
    let mut pair = pair();
    let client = pair.a.connect("mover", V5, false);
    pair.a.subscribe_with(client, "x/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce), None);
    pair.a.lose(client);
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "x/1", "queued", QoS::AtLeastOnce, false);
    let home_a = shardmq_shard::home_shard("mover", 2).index();
    let now = pair.a.now;

    let restored = pair.a.shards[home_a].hand_over("mover", false, now).expect("a session");
    pair.a.run();
    assert!(!pair.a.shards[home_a].has_session("mover"));
    assert!(pair.a.ended.is_empty(), "a session that moved did not end");
    let home_b = shardmq_shard::home_shard("mover", 2).index();
    pair.b.shards[home_b].adopt_session(restored, now);
    pair.b.run();
    exchange(&mut pair);

    let resumed = pair.b.connect("mover", V5, false);
    let packets = pair.b.take(resumed);
    assert!(connack(&packets).session_present, "{packets:?}");
    let delivered: Vec<_> = packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(publish) => Some(publish.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [bytes::Bytes::from_static(b"queued")]);
    // Its subscription moved with it: a publish on A now goes to B.
    pair.a.publish(publisher, "x/2", "after", QoS::AtMostOnce, false);
    exchange(&mut pair);
    assert_eq!(payloads(&pair.b.publishes(resumed)), ["after"]);
}

#[test]
fn taking_over_a_connected_client_disconnects_it_with_0x8e() {
    let mut pair = pair();
    let client = pair.a.connect("busy", V5, false);
    pair.a.take(client);
    let home = shardmq_shard::home_shard("busy", 2).index();
    let now = pair.a.now;
    let restored = pair.a.shards[home].hand_over("busy", false, now);
    pair.a.run();
    assert!(restored.is_some());
    let packets = pair.a.take(client);
    assert!(
        packets.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason.0 == 0x8E)),
        "{packets:?}"
    );
    assert!(pair.a.closed.contains(&client));
}

#[test]
fn fencing_disconnects_every_client_with_0x89() {
    let mut pair = pair();
    let one = pair.a.connect("one", V5, true);
    let two = pair.a.connect("two", ProtocolVersion::V3_1_1, true);
    pair.a.take(one);
    let now = pair.a.now;
    for shard in &mut pair.a.shards {
        shard.fence(now);
    }
    pair.a.run();
    assert!(pair
        .a
        .take(one)
        .iter()
        .any(|p| matches!(p, Packet::Disconnect(d) if d.reason.0 == 0x89)));
    assert!(pair.a.closed.contains(&one) && pair.a.closed.contains(&two));
}

#[test]
fn a_clean_session_taken_over_does_not_give_up_its_client_id() {
    // The peer claims the id from this node next: releasing it here would race that claim.
    let mut pair = pair();
    let client = pair.a.connect("clean", V5, true);
    pair.a.take(client);
    let home = shardmq_shard::home_shard("clean", 2).index();
    let now = pair.a.now;
    assert!(pair.a.shards[home].hand_over("clean", true, now).is_none(), "no session to move");
    pair.a.run();
    assert!(pair.a.closed.contains(&client));
    assert!(!pair.a.ended.iter().any(|id| &**id == "clean"), "released: {:?}", pair.a.ended);
}

/// Keeps large retained messages on node A only, as both nodes see it.
#[derive(Debug)]
struct OnA {
    here: bool,
}

impl RetainedPlacement for OnA {
    fn holders(&self, _topic: &str) -> Vec<shardmq_shard::Node> {
        vec![if self.here { shardmq_shard::Node::Here } else { shardmq_shard::Node::Peer(PEER) }]
    }
}

/// Payloads over this many bytes are "large" in these tests.
const REPLICATE_MAX: usize = 8;

fn pair_keeping_large_retained_on_a() -> Pair {
    let mut pair = pair();
    for (node, here) in [(&mut pair.a, true), (&mut pair.b, false)] {
        for shard in &mut node.shards {
            shard.set_retained_placement(Box::new(OnA { here }), REPLICATE_MAX);
        }
    }
    pair
}

fn kept_in_full(node: &Node, topic: &str) -> bool {
    node.shards.iter().any(|shard| shard.retained_message(topic, node.now).is_some())
}

#[test]
fn a_large_retained_message_is_kept_on_its_holder_and_fetched_by_a_subscribe_elsewhere() {
    let mut pair = pair_keeping_large_retained_on_a();
    // Published on the node that does not keep it: it goes to A in full, B keeps a note.
    let publisher = pair.b.connect("pub", V5, true);
    pair.b.publish(publisher, "big/1", "a payload over eight bytes", QoS::AtLeastOnce, true);
    pair.b.publish(publisher, "small/1", "tiny", QoS::AtLeastOnce, true);
    exchange(&mut pair);
    assert!(kept_in_full(&pair.a, "big/1"));
    assert!(!kept_in_full(&pair.b, "big/1"), "the node that is no holder kept the payload");
    assert!(kept_in_full(&pair.a, "small/1") && kept_in_full(&pair.b, "small/1"));

    let subscriber = pair.b.connect("sub", V5, true);
    pair.b.subscribe(subscriber, "#", QoS::AtLeastOnce);
    assert_eq!(pair.b.fetches.len(), 1, "one fetch, for the large message only");
    exchange(&mut pair);
    let publishes = pair.b.publishes(subscriber);
    let mut got = payloads(&publishes);
    got.sort();
    assert_eq!(got, ["a payload over eight bytes", "tiny"]);

    // Replaced by a small one: kept everywhere again, and nothing is fetched.
    pair.b.publish(publisher, "big/1", "now tiny", QoS::AtMostOnce, true);
    exchange(&mut pair);
    assert!(kept_in_full(&pair.b, "big/1"));
    let late = pair.b.connect("late", V5, true);
    pair.b.subscribe(late, "big/#", QoS::AtMostOnce);
    assert!(pair.b.fetches.is_empty());
    assert_eq!(payloads(&pair.b.publishes(late)), ["now tiny"]);
}

#[test]
fn a_holder_that_leaves_is_not_asked_and_its_index_brings_it_back() {
    let mut pair = pair_keeping_large_retained_on_a();
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "big/1", "a payload over eight bytes", QoS::AtMostOnce, true);
    exchange(&mut pair);
    assert!(!kept_in_full(&pair.b, "big/1"));
    let held: Vec<_> = pair.a.shards.iter().flat_map(|s| s.large_retained_topics()).collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].0, "big/1");

    // A leaves: B has no one to fetch from, and the subscribe still completes.
    for shard in &mut pair.b.shards {
        shard.peer_left(PEER);
    }
    let subscriber = pair.b.connect("sub", V5, true);
    pair.b.subscribe(subscriber, "big/#", QoS::AtMostOnce);
    assert!(pair.b.fetches.is_empty());
    assert!(pair.b.publishes(subscriber).is_empty());

    // A's link comes back and announces what it keeps: the next subscribe fetches it.
    pair.b.shards[0].retained_held_by(PEER, held);
    pair.b.run();
    let again = pair.b.connect("again", V5, true);
    pair.b.subscribe(again, "big/#", QoS::AtMostOnce);
    exchange(&mut pair);
    assert_eq!(payloads(&pair.b.publishes(again)), ["a payload over eight bytes"]);
}

// -------------------------------------------------------------------------------------------
// Retained versions, catch-up and holders
// -------------------------------------------------------------------------------------------

/// The sender's names of nodes, as the receiver names them.
fn as_peer_names(holders: Option<Vec<shardmq_shard::Node>>) -> Option<Vec<shardmq_shard::Node>> {
    holders.map(|holders| {
        holders
            .into_iter()
            .map(|node| match node {
                shardmq_shard::Node::Here => shardmq_shard::Node::Peer(PEER),
                shardmq_shard::Node::Peer(_) => shardmq_shard::Node::Here,
            })
            .collect()
    })
}

/// What the engine does when `from`'s links to `to` come up: each shard of `from` sends its
/// digest, each shard of `to` answers the buckets that differ with its versions, and `from`
/// pushes what it has newer. Returns how many writes were pushed.
fn catch_up(from: &mut Node, to: &mut Node) -> usize {
    let buckets = shardmq_shard::RETAINED_BUCKETS;
    let mut pushed = 0;
    for s in 0..from.shards.len() {
        let digest = from.shards[s].retained_digest(to.shard_count());
        for x in 0..to.shards.len() {
            let part = &digest[x * buckets..(x + 1) * buckets];
            let (from_shards, s_id) = (from.shard_count(), ShardId(s as u16));
            let differ = to.shards[x].retained_mismatch(from_shards, s_id, part);
            if differ.is_empty() {
                continue;
            }
            let listed: Vec<(ByteString, u64)> = to.shards[x]
                .retained_versions(from_shards, s_id, &differ)
                .into_iter()
                .map(|(_, topic, version)| (topic, version))
                .collect();
            let (to_shards, x_id) = (to.shard_count(), ShardId(x as u16));
            for topic in from.shards[s].retained_to_push(to_shards, x_id, &differ, &listed) {
                let Some(push) = from.shards[s].retained_push(&topic, PEER) else { continue };
                let holders = as_peer_names(push.holders);
                let now = to.now;
                to.shards[0].peer_publish(
                    PEER,
                    s_id,
                    push.message,
                    None,
                    false,
                    None,
                    holders,
                    None,
                    push.version,
                    now,
                );
                to.run();
                pushed += 1;
            }
        }
    }
    pushed
}

fn retained_payloads(node: &mut Node, filter: &str) -> Vec<String> {
    let id = format!("check-{}", node.next_conn);
    let subscriber = node.connect(&id, V5, true);
    node.subscribe(subscriber, filter, QoS::AtMostOnce);
    let publishes = node.publishes(subscriber);
    let mut got: Vec<String> = payloads(&publishes).into_iter().map(String::from).collect();
    got.sort();
    got
}

#[test]
fn the_newest_retained_write_wins_whatever_order_the_nodes_see_them_in() {
    let mut pair = pair();
    let on_a = pair.a.connect("pub-a", V5, true);
    let on_b = pair.b.connect("pub-b", V5, true);
    pair.a.publish(on_a, "r", "older", QoS::AtMostOnce, true);
    pair.b.advance(std::time::Duration::from_millis(5));
    pair.b.publish(on_b, "r", "newer", QoS::AtMostOnce, true);
    // Each node gets the other's write after its own: A's older write reaches B last.
    exchange(&mut pair);
    assert_eq!(retained_payloads(&mut pair.a, "r"), ["newer"]);
    assert_eq!(retained_payloads(&mut pair.b, "r"), ["newer"]);
}

#[test]
fn a_node_that_missed_retained_writes_catches_up_after_a_restart() {
    let mut pair = pair();
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "r/1", "v1", QoS::AtLeastOnce, true);
    pair.a.publish(publisher, "r/2", "deleted while B is away", QoS::AtLeastOnce, true);
    exchange(&mut pair);
    assert_eq!(retained_payloads(&mut pair.b, "r/#"), ["deleted while B is away", "v1"]);
    assert_eq!(catch_up(&mut pair.a, &mut pair.b), 0, "pushed with nothing missed");

    // B is away (what A forwards is lost) while A replaces, deletes and adds.
    pair.a.advance(std::time::Duration::from_millis(10));
    pair.a.publish(publisher, "r/1", "v2", QoS::AtLeastOnce, true);
    pair.a.publish(publisher, "r/2", "", QoS::AtLeastOnce, true);
    pair.a.publish(publisher, "r/3", "new", QoS::AtLeastOnce, true);
    pair.a.forwarded.clear();
    let partition = retained_shard("r/1", 2).index();
    let before_restart = pair.b.shards[partition].retained_mark_version("r/1");
    assert_ne!(before_restart, 0);
    pair.b = Node::new(1);
    pair.b = Node::durable(pair._dirs.1.path(), 2, NOW_UNIX_MS + 60_000);
    for shard in &mut pair.b.shards {
        shard.set_peers(vec![PEER]);
    }
    version_retained_writes(&mut pair.b, 3);
    assert_eq!(pair.b.shards[partition].retained_mark_version("r/1"), before_restart);
    assert_eq!(retained_payloads(&mut pair.b, "r/#"), ["deleted while B is away", "v1"]);
    // B took a write of its own meanwhile, which A missed.
    let local = pair.b.connect("pub-b", V5, true);
    pair.b.publish(local, "b/1", "from b", QoS::AtLeastOnce, true);
    pair.b.forwarded.clear();

    // The links come back: each side pushes what the other lacks or has older.
    assert_eq!(catch_up(&mut pair.a, &mut pair.b), 3);
    assert_eq!(catch_up(&mut pair.b, &mut pair.a), 1);
    assert_eq!(retained_payloads(&mut pair.b, "r/#"), ["new", "v2"]);
    assert_eq!(retained_payloads(&mut pair.a, "b/#"), ["from b"]);
    assert_eq!(catch_up(&mut pair.a, &mut pair.b) + catch_up(&mut pair.b, &mut pair.a), 0);
}

#[test]
fn a_deletion_is_remembered_until_its_tombstone_expires() {
    let mut pair = pair();
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "r", "x", QoS::AtMostOnce, true);
    pair.a.publish(publisher, "r", "", QoS::AtMostOnce, true);
    let partition = retained_shard("r", 2).index();
    assert_ne!(pair.a.shards[partition].retained_mark_version("r"), 0);
    // A late copy of the deleted message does not bring it back.
    let stale = pair.a.forwarded.iter().find_map(|(_, _, forward)| match forward {
        Forward::Publish { message, version, .. } if !message.payload.is_empty() => {
            Some((message.clone(), *version))
        }
        _ => None,
    });
    let (message, version) = stale.expect("the first write was forwarded");
    let now = pair.a.now;
    pair.a.shards[0].peer_publish(
        PEER,
        ShardId(0),
        message,
        None,
        false,
        None,
        None,
        None,
        version,
        now,
    );
    pair.a.run();
    assert!(retained_payloads(&mut pair.a, "r").is_empty());
    let ttl = std::time::Duration::from_millis(shardmq_shard::TOMBSTONE_TTL_MS);
    pair.a.advance(ttl + std::time::Duration::from_secs(60));
    assert_eq!(pair.a.shards[partition].retained_mark_version("r"), 0, "tombstone kept");
}

#[test]
fn a_shared_group_s_copy_of_a_retained_message_does_not_overwrite_a_newer_one() {
    let mut pair = pair();
    let publisher = pair.b.connect("pub-b", V5, true);
    pair.b.advance(std::time::Duration::from_secs(5));
    pair.b.publish(publisher, "r", "newer", QoS::AtMostOnce, true);
    // An older write's copy for a shared group (it carries no version).
    let older = shardmq_shard::SharedMessage::new(shardmq_shard::Message {
        topic: ByteString::from("r"),
        payload: shardmq_codec::Bytes::from_static(b"older"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
        expires_at: None,
        publisher: ByteString::from("elsewhere"),
    });
    let shared = Some((ByteString::from("r"), ByteString::from("g")));
    let now = pair.b.now;
    pair.b.shards[0].peer_publish(PEER, ShardId(0), older, None, true, shared, None, None, 0, now);
    pair.b.run();
    assert_eq!(retained_payloads(&mut pair.b, "r"), ["newer"]);
}

#[test]
fn a_topic_written_and_deleted_again_and_again_does_not_push_out_other_tombstones() {
    let limits = shardmq_shard::Limits { retained_messages_max: 100, ..Default::default() };
    let mut node = Node::with_limits(2, limits);
    version_retained_writes(&mut node, 1);
    for shard in &mut node.shards {
        shard.set_peers(vec![PEER]);
    }
    let publisher = node.connect("pub", V5, true);
    node.publish(publisher, "kept/deleted", "x", QoS::AtMostOnce, true);
    node.publish(publisher, "kept/deleted", "", QoS::AtMostOnce, true);
    // A topic of the same shard's partition, written and deleted 500 times.
    let partition = retained_shard("kept/deleted", 2).index();
    let churn = (0..)
        .map(|i| format!("churn/{i}"))
        .find(|topic| retained_shard(topic, 2).index() == partition)
        .expect("a topic of that partition");
    for _ in 0..500 {
        node.publish(publisher, &churn, "x", QoS::AtMostOnce, true);
        node.publish(publisher, &churn, "", QoS::AtMostOnce, true);
    }
    node.forwarded.clear();
    assert_ne!(node.shards[partition].retained_mark_version("kept/deleted"), 0, "tombstone lost");
}

/// Keeps large retained messages on one node, A or B as `on_b` says, as both nodes see it.
#[derive(Debug)]
struct Switch {
    on_b: std::rc::Rc<std::cell::Cell<bool>>,
    here_is_b: bool,
}

impl RetainedPlacement for Switch {
    fn holders(&self, _topic: &str) -> Vec<shardmq_shard::Node> {
        let here = self.on_b.get() == self.here_is_b;
        vec![if here { shardmq_shard::Node::Here } else { shardmq_shard::Node::Peer(PEER) }]
    }
}

#[test]
fn a_node_that_becomes_a_holder_pulls_the_large_message_and_serves_it() {
    let mut pair = pair();
    let on_b = std::rc::Rc::new(std::cell::Cell::new(false));
    for (node, here_is_b) in [(&mut pair.a, false), (&mut pair.b, true)] {
        for shard in &mut node.shards {
            let placement = Switch { on_b: on_b.clone(), here_is_b };
            shard.set_retained_placement(Box::new(placement), REPLICATE_MAX);
        }
    }
    let publisher = pair.a.connect("pub", V5, true);
    pair.a.publish(publisher, "big/1", "a payload over eight bytes", QoS::AtMostOnce, true);
    exchange(&mut pair);
    assert!(!kept_in_full(&pair.b, "big/1"));
    assert!(pair.b.pulls.is_empty());

    // The ring changes: B is the holder now, and pulls the message from A.
    on_b.set(true);
    for shard in &mut pair.b.shards {
        shard.set_peers(vec![PEER]);
    }
    pair.b.run();
    let pulls = std::mem::take(&mut pair.b.pulls);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let (shard, topic, holders) = pulls.into_iter().next().unwrap();
    assert_eq!((&*topic, holders), ("big/1", vec![PEER]));
    let partition = retained_shard(&topic, 2).index();
    let message = pair.a.shards[partition].retained_message(&topic, pair.a.now).expect("on A");
    let version = pair.a.shards[partition].retained_mark_version(&topic);
    let now = pair.b.now;
    let kept = pair.b.shards[shard.index()].retained_pulled(&topic, Some((message, version)), now);
    assert_eq!(kept, Some(version));
    pair.b.run();
    assert!(kept_in_full(&pair.b, "big/1"));
    // A subscribe on B needs no fetch now.
    assert_eq!(retained_payloads(&mut pair.b, "big/#"), ["a payload over eight bytes"]);
    assert!(pair.b.fetches.is_empty());
    assert_eq!(catch_up(&mut pair.a, &mut pair.b) + catch_up(&mut pair.b, &mut pair.a), 0);
}

// -------------------------------------------------------------------------------------------
// The replica of a peer's routes
// -------------------------------------------------------------------------------------------

/// The topics the replica tests route, one filter each.
const TOPICS: [&str; 4] = ["a", "b", "c", "d"];

/// A node of two shards receiving one peer's route frames, with a publisher on each shard to
/// ask which topics that shard forwards to the peer (what its replica holds).
struct Receiver {
    node: Node,
    publishers: Vec<ConnId>,
}

fn receiver() -> Receiver {
    let mut node = Node::new(2);
    for shard in &mut node.shards {
        shard.set_peers(vec![PEER]);
    }
    let publishers = (0..2)
        .map(|shard| {
            let id = node.id_on("pub", shard);
            let conn = node.connect(&id, V5, true);
            node.take(conn);
            conn
        })
        .collect();
    Receiver { node, publishers }
}

fn epoch(lease: i64, link: u64) -> LinkEpoch {
    LinkEpoch { lease: PeerLease(lease), link: LinkNumber(link) }
}

fn routes(filters: &[&str]) -> Vec<PeerRoute> {
    filters.iter().map(|f| PeerRoute { filter: ByteString::from(*f), group: None }).collect()
}

/// The first frame of a connection from a peer with two shards.
fn snapshot(filters: &[&str]) -> RouteFrame {
    RouteFrame::Snapshot { shards: 2, routes: routes(filters) }
}

fn delta(version: u64, added: &[&str], removed: &[&str]) -> RouteFrame {
    RouteFrame::Delta { version, added: routes(added), removed: routes(removed) }
}

impl Receiver {
    /// Shard `reader` reads a frame of peer shard `origin` from a link, applies it and passes it
    /// to the other shard, which applies it too.
    fn read(&mut self, reader: usize, origin: u16, epoch: LinkEpoch, frame: RouteFrame) {
        self.node.shards[reader].peer_routes_from_link(PEER, ShardId(origin), epoch, frame);
        self.node.run();
    }

    /// Only shard `shard` gets a frame, as the mesh passes it on from whichever shard read it:
    /// the frames of different links reach a shard in any order.
    fn deliver(&mut self, shard: usize, origin: u16, epoch: LinkEpoch, frame: RouteFrame) {
        self.node.shards[shard].peer_routes(PEER, ShardId(origin), epoch, frame);
        self.node.run();
    }

    /// Every shard learns from the membership that incarnation `lease` of the peer is gone.
    fn gone(&mut self, lease: i64) {
        for shard in &mut self.node.shards {
            shard.peer_gone(PEER, PeerLease(lease));
        }
        self.node.run();
    }

    /// The topics shard `shard` forwards to the peer.
    fn routed(&mut self, shard: usize) -> Vec<&'static str> {
        let mut routed = Vec::new();
        for topic in TOPICS {
            self.node.publish(self.publishers[shard], topic, "m", QoS::AtMostOnce, false);
            let forwarded = std::mem::take(&mut self.node.forwarded);
            if forwarded.iter().any(|(from, peer, forward)| {
                from.index() == shard
                    && *peer == PEER
                    && matches!(forward, Forward::Publish { message, .. } if &*message.topic == topic)
            }) {
                routed.push(topic);
            }
        }
        routed
    }

    /// Every shard routes exactly `expected` to the peer.
    fn check(&mut self, expected: &[&str]) {
        for shard in 0..self.node.shards.len() {
            assert_eq!(self.routed(shard), expected, "the routes of shard {shard}");
        }
    }
}

#[test]
fn an_old_links_delta_after_the_new_links_snapshot_is_ignored() {
    let mut node = receiver();
    let (old, new) = (epoch(1, 10), epoch(1, 11));
    node.read(0, 0, old, snapshot(&["a"]));
    // The peer reconnected. Its old link, read on shard 0 and not yet noticed dead, still
    // delivers a delta; its new link, read on shard 1, the snapshot of the peer's routes. Each
    // shard gets the other's frame over the mesh after its own: shard 0 the old delta first,
    // shard 1 the new snapshot first.
    let (old_delta, new_snapshot) = (delta(1, &["c"], &["a"]), snapshot(&["a", "b"]));
    node.deliver(0, 0, old, old_delta.clone());
    node.deliver(1, 0, new, new_snapshot.clone());
    node.deliver(0, 0, new, new_snapshot);
    node.deliver(1, 0, old, old_delta);
    node.check(&["a", "b"]);
    // The new link's own deltas follow its snapshot.
    node.read(1, 0, new, delta(1, &["c"], &["b"]));
    node.check(&["a", "c"]);
}

#[test]
fn a_snapshot_of_a_newer_link_replaces_the_routes_and_an_older_one_does_not() {
    let mut node = receiver();
    node.read(0, 0, epoch(1, 10), snapshot(&["a"]));
    node.read(0, 0, epoch(1, 10), delta(1, &["b"], &[]));
    node.check(&["a", "b"]);
    node.read(1, 0, epoch(1, 12), snapshot(&["c"]));
    node.check(&["c"]);
    // A snapshot of the connection in between, read late: its routes are older.
    node.read(0, 0, epoch(1, 11), snapshot(&["d"]));
    node.check(&["c"]);
    // A later incarnation numbers its links higher still: its snapshot replaces them all.
    node.read(0, 0, epoch(2, 20), snapshot(&["b", "d"]));
    node.check(&["b", "d"]);
}

#[test]
fn peer_gone_for_the_old_lease_keeps_the_routes_of_the_new_one() {
    let mut node = receiver();
    node.read(0, 0, epoch(1, 10), snapshot(&["a"]));
    node.read(0, 1, epoch(1, 11), snapshot(&["b"]));
    // The peer restarted: its shard 0 reconnected under its new lease before this node's
    // membership watch reported the old one gone. Its shard 1 has not reconnected yet.
    node.read(1, 0, epoch(2, 20), snapshot(&["c"]));
    node.check(&["b", "c"]);
    node.gone(1);
    node.check(&["c"]);
    node.read(1, 1, epoch(2, 21), snapshot(&["d"]));
    node.check(&["c", "d"]);
}

#[test]
fn a_late_frame_from_a_dead_lease_is_ignored() {
    let mut node = receiver();
    node.read(0, 0, epoch(1, 10), snapshot(&["a"]));
    node.gone(1);
    node.check(&[]);
    for shard in &node.node.shards {
        assert!(shard.is_peer_lease_gone(PEER, PeerLease(1)));
        assert!(!shard.is_peer_lease_gone(PEER, PeerLease(2)));
    }
    // Frames of the dead incarnation still in flight (on a link not yet closed, or on the
    // mesh) install nothing, not even from a link numbered higher than any seen.
    node.read(1, 0, epoch(1, 10), delta(1, &["b"], &[]));
    node.read(1, 1, epoch(1, 15), snapshot(&["c"]));
    node.check(&[]);
    node.read(0, 0, epoch(2, 20), snapshot(&["d"]));
    node.check(&["d"]);
}

#[test]
fn a_delta_out_of_sequence_is_ignored() {
    let mut node = receiver();
    let link = epoch(1, 10);
    node.read(0, 0, link, snapshot(&["a"]));
    node.read(0, 0, link, delta(2, &["b"], &[]));
    node.check(&["a"]);
    node.read(0, 0, link, delta(1, &["c"], &[]));
    node.check(&["a", "c"]);
    // Applied once: the same delta again is not the next one.
    node.read(0, 0, link, delta(1, &[], &["c"]));
    node.check(&["a", "c"]);
    // A delta with no snapshot held for its origin has nothing to apply to.
    node.read(0, 1, epoch(1, 11), delta(1, &["d"], &[]));
    node.check(&["a", "c"]);
}

#[test]
fn a_restart_with_fewer_shards_drops_the_routes_of_the_shards_it_no_longer_has() {
    let mut node = receiver();
    node.read(0, 0, epoch(1, 10), snapshot(&["a"]));
    node.read(0, 1, epoch(1, 11), snapshot(&["b"]));
    // The peer came back with one shard; the membership has not reported its old lease gone.
    let one_shard = RouteFrame::Snapshot { shards: 1, routes: routes(&["c"]) };
    node.read(1, 0, epoch(2, 20), one_shard);
    node.check(&["c"]);
}

/// A seeded xorshift generator, so that a failing interleaving can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One connection of the peer shard's link, and the shard of the receiver that reads it.
struct Connection {
    epoch: LinkEpoch,
    reader: usize,
    /// Frames sent and not yet read.
    unread: std::collections::VecDeque<RouteFrame>,
}

#[test]
fn the_replica_converges_on_the_newest_connection_whatever_the_order() {
    for seed in 1..=300_u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut node = receiver();
        // The peer shard: its routes, its incarnation, and the connections it opened so far.
        let mut held: Vec<&str> = Vec::new();
        let (mut lease, mut link, mut version) = (1_i64, 1_u64, 0_u64);
        let mut connections = vec![Connection {
            epoch: epoch(lease, link),
            reader: rng.below(2),
            unread: [snapshot(&[])].into(),
        }];
        // What each shard of the receiver has yet to get over the mesh, in order, and the
        // leases its membership watch has yet to report gone.
        let mut mesh: Vec<std::collections::VecDeque<(LinkEpoch, RouteFrame)>> =
            vec![Default::default(), Default::default()];
        let mut gone: Vec<Vec<i64>> = vec![Vec::new(), Vec::new()];
        for _ in 0..60 {
            match rng.below(10) {
                // The peer's routes change: a delta on its current connection.
                0..=2 => {
                    let topic = TOPICS[rng.below(TOPICS.len())];
                    let frame = if let Some(at) = held.iter().position(|t| *t == topic) {
                        held.remove(at);
                        delta(version + 1, &[], &[topic])
                    } else {
                        held.push(topic);
                        delta(version + 1, &[topic], &[])
                    };
                    version += 1;
                    connections.last_mut().expect("a connection").unread.push_back(frame);
                }
                // It reconnects (or restarts under a new lease, which every shard of the
                // receiver learns later): the old connection loses what it had not delivered,
                // or some of it, and the new one starts with a snapshot.
                3 => {
                    if rng.below(3) == 0 {
                        for shard in &mut gone {
                            shard.push(lease);
                        }
                        lease += 1;
                    }
                    let old = connections.last_mut().expect("a connection");
                    let keep = rng.below(old.unread.len() + 1);
                    old.unread.truncate(keep);
                    link += 1;
                    version = 0;
                    connections.push(Connection {
                        epoch: epoch(lease, link),
                        reader: rng.below(2),
                        unread: [snapshot(&held)].into(),
                    });
                }
                // A connection's next frame is read: applied on its reader, queued for the other.
                4..=6 => {
                    let at = rng.below(connections.len());
                    let connection = &mut connections[at];
                    if let Some(frame) = connection.unread.pop_front() {
                        deliver_read(&mut node, &mut mesh, connection, frame);
                    }
                }
                // A shard gets the next frame another shard passed it.
                7 | 8 => {
                    let shard = rng.below(2);
                    if let Some((epoch, frame)) = mesh[shard].pop_front() {
                        node.deliver(shard, 0, epoch, frame);
                    }
                }
                // A shard's membership watch reports a gone incarnation.
                _ => {
                    let shard = rng.below(2);
                    if !gone[shard].is_empty() {
                        let lease = gone[shard].remove(0);
                        node.node.shards[shard].peer_gone(PEER, PeerLease(lease));
                    }
                }
            }
        }
        // Everything still in flight arrives, the old connections' frames last of all.
        let last = connections.len() - 1;
        while let Some(frame) = connections[last].unread.pop_front() {
            deliver_read(&mut node, &mut mesh, &connections[last], frame);
        }
        for connection in &mut connections[..last] {
            while let Some(frame) = connection.unread.pop_front() {
                deliver_read(&mut node, &mut mesh, connection, frame);
            }
        }
        for (shard, queue) in mesh.iter_mut().enumerate() {
            while let Some((epoch, frame)) = queue.pop_front() {
                node.deliver(shard, 0, epoch, frame);
            }
        }
        for (shard, leases) in gone.iter().enumerate() {
            for &lease in leases {
                node.node.shards[shard].peer_gone(PEER, PeerLease(lease));
            }
        }
        held.sort_unstable();
        for shard in 0..2 {
            assert_eq!(node.routed(shard), held, "seed {seed}, shard {shard}");
        }
    }
}

/// A connection's frame is read on its reader, which applies it and passes it to the other
/// shard's mesh queue.
fn deliver_read(
    node: &mut Receiver,
    mesh: &mut [std::collections::VecDeque<(LinkEpoch, RouteFrame)>],
    connection: &Connection,
    frame: RouteFrame,
) {
    mesh[1 - connection.reader].push_back((connection.epoch, frame.clone()));
    node.deliver(connection.reader, 0, connection.epoch, frame);
}

/// Publishes `payload` to `t` from `publisher` (on A's shard 0), carrying everything over after
/// each, until A pauses it or `most` were sent. Returns how many were sent.
fn publish_until_paused(pair: &mut Pair, publisher: ConnId, payload: &str, most: usize) -> usize {
    for fed in 1..=most {
        pair.a.publish(publisher, "t", payload, QoS::AtMostOnce, false);
        exchange(pair);
        if pair.a.shards[0].is_paused(publisher) {
            return fed;
        }
    }
    most
}

/// A pair with a subscriber to `t` on B's shard 0 that stopped reading, and a publisher on A's
/// shard 0.
fn stopped_subscriber_and_publisher() -> (Pair, ConnId, ConnId) {
    let mut pair = pair();
    let sub_id = pair.b.id_on("stopped", 0);
    let subscriber = pair.b.connect(&sub_id, V5, true);
    pair.b.subscribe(subscriber, "t", QoS::AtMostOnce);
    exchange(&mut pair);
    pair.b.stopped.insert(subscriber);
    let pub_id = pair.a.id_on("pub", 0);
    let publisher = pair.a.connect(&pub_id, V5, true);
    (pair, subscriber, publisher)
}

fn dropped(stats: &ShardStats) -> u64 {
    stats.dropped_qos0_slow + stats.dropped_queue_full
}

#[test]
fn a_slow_subscriber_on_another_node_pauses_the_publisher_until_it_drains() {
    let (mut pair, subscriber, publisher) = stopped_subscriber_and_publisher();
    pair.a.take(publisher);

    // 10 KB messages: the subscriber's 1 MiB output buffer fills after about a hundred, and B
    // tells A to stop reading the publisher.
    let payload = "x".repeat(10_000);
    let fed = publish_until_paused(&mut pair, publisher, &payload, 1000);
    assert!(fed < 200, "paused once the subscriber's output buffer was full, not after {fed}");
    assert_eq!(dropped(&pair.b.shards[0].stats()), 0);
    // The subscriber reads again: B releases the publisher, and A reads it again.
    pair.b.stopped.remove(&subscriber);
    let now = pair.b.now;
    pair.b.collect(ShardId(0), subscriber, now);
    pair.b.run();
    exchange(&mut pair);
    assert!(pair.a.resumed.contains(&publisher), "resumed once the subscriber drained");
    assert!(!pair.a.shards[0].is_paused(publisher));
    assert_eq!(pair.b.publishes(subscriber).len(), fed, "every message fed was delivered");
    assert_eq!(dropped(&pair.b.shards[0].stats()), 0);
}

#[test]
fn what_a_paused_peer_publisher_still_sends_stays_within_the_subscriber_s_limits() {
    let (mut pair, subscriber, publisher) = stopped_subscriber_and_publisher();
    let payload = "x".repeat(10_000);
    let fed = publish_until_paused(&mut pair, publisher, &payload, 1000);
    assert!(pair.a.shards[0].is_paused(publisher));
    // What was already on the link when the pause left B (here: 3,000 more messages, 30 MB)
    // is kept only within the session's queue limits (1,000 messages, 16 MiB): the rest is
    // dropped and counted, however long the publisher goes on.
    for _ in 0..3000 {
        pair.a.publish(publisher, "t", &payload, QoS::AtMostOnce, false);
    }
    exchange(&mut pair);
    let stats = pair.b.shards[0].stats();
    assert!(dropped(&stats) > 1000, "{stats:?}");
    pair.b.stopped.remove(&subscriber);
    let now = pair.b.now;
    pair.b.collect(ShardId(0), subscriber, now);
    pair.b.run();
    let kept = pair.b.publishes(subscriber).len() as u64;
    assert_eq!(kept + dropped(&stats), fed as u64 + 3000);
    assert!(kept <= 1000 + 200, "{kept} kept");

    // A pause whose resume never comes (its link went down) lapses on A by itself.
    let pub_id = pair.a.id_on("pub2", 0);
    let second = pair.a.connect(&pub_id, V5, true);
    pair.b.stopped.insert(subscriber);
    publish_until_paused(&mut pair, second, &payload, 3000);
    assert!(pair.a.shards[0].is_paused(second));
    let lapse = pair.a.now + shardmq_shard::PEER_PAUSE_MAX;
    assert!(pair.a.shards[0].next_deadline().is_some_and(|due| due <= lapse));
    pair.a.shards[0].tick(lapse);
    pair.a.run();
    assert!(!pair.a.shards[0].is_paused(second), "the pause lapsed");
    assert!(pair.a.resumed.contains(&second));
}

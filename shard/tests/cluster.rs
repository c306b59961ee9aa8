//! The shard's side of the cluster at its boundary: two simulated nodes (durable, two shards
//! each) with what one sends the other (`Effect::Forward`, `Effect::RoutesChanged`) carried over
//! by hand, as the engine's node links do.

mod harness;

use harness::{connack, payloads, Node};
use shardmq_io::codec::{Packet, ProtocolVersion, QoS, SubscriptionOptions};
use shardmq_shard::{retained_shard, Forward, PeerNode, RetainedPlacement};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Each node knows the other as its peer number 0.
const PEER: PeerNode = PeerNode(0);
const NOW_UNIX_MS: u64 = 1_790_000_000_000;

struct Pair {
    a: Node,
    b: Node,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
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
    Pair { a, b, _dirs: dirs }
}

/// Carries everything each node sent the other until nothing moves. Frames from a peer land on
/// the receiving node's shard 0, as a link accepted there would.
fn exchange(pair: &mut Pair) {
    loop {
        let moved = carry(&mut pair.a, &mut pair.b) + carry(&mut pair.b, &mut pair.a);
        if moved == 0 {
            return;
        }
    }
}

fn carry(from: &mut Node, to: &mut Node) -> usize {
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
        to.shards[0].peer_routes_from_link(PEER, origin, false, added, removed);
        to.run();
    }
    for (origin, peer, forward) in forwarded {
        assert_eq!(peer, PEER);
        match forward {
            Forward::Publish { message, receipt, deliver, shared, holders } => {
                // The sender's names of nodes, as the receiver names them.
                let holders = holders.map(|holders| {
                    holders
                        .into_iter()
                        .map(|node| match node {
                            shardmq_shard::Node::Here => shardmq_shard::Node::Peer(PEER),
                            shardmq_shard::Node::Peer(_) => shardmq_shard::Node::Here,
                        })
                        .collect()
                });
                let shard = &mut to.shards[0];
                shard.peer_publish(PEER, origin, message, receipt, deliver, shared, holders, now);
            }
            Forward::Receipt { token, shard, ok } => {
                to.shards[shard.index()].peer_receipt(token, ok)
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
        Packet::Unsubscribe(shardmq_io::codec::Unsubscribe {
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
    assert_eq!(held, ["big/1"]);

    // A leaves: B has no one to fetch from, and the subscribe still completes.
    for shard in &mut pair.b.shards {
        shard.peer_gone(PEER);
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

//! The node links' protocol decisions (`shardmq_node::link`), without sockets.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use shardmq_cluster::frame::{
    self, AdminAnswer, AdminQuery, Body, Encoder, Hello, Receipt, TakeoverRequest,
};
use shardmq_cluster::NodeId;
use shardmq_cluster::{LeaseId, Member};
use shardmq_codec::ByteString;
use shardmq_node::link::{
    check_hello, destination, forward_frame, membership_change, route_frame, Destination,
    HelloRefusal, HelloVerdict, LinkStart, MembershipChange, OutLinkState, LINK_HEARTBEAT,
    RECEIPT_TIMEOUT, RETAINED_INDEX_CHUNK,
};
use shardmq_shard::{home_shard, LinkNumber, PeerLease, PeerRoute, RouteFrame, ShardId};

fn hello(node: &str, shards: u16) -> Hello {
    Hello { cluster: "c1".into(), node: node.into(), lease: 42, shard: 1, shards, link: 9 }
}

fn route(filter: &str) -> PeerRoute {
    PeerRoute { filter: ByteString::from(filter), group: None }
}

/// Every frame in `out`, decoded as a peer reads them.
fn frames(out: &mut BytesMut) -> Vec<Body> {
    let mut bodies = Vec::new();
    while let Some(body) = frame::decode(out).expect("frames") {
        bodies.push(body);
    }
    bodies
}

#[test]
fn a_connection_starts_with_hello_snapshot_and_retained_index_and_numbers_deltas_afresh() {
    let mut link = OutLinkState::default();
    assert!(link.route_delta(&[route("a")], &[]).is_none(), "no delta while down");
    let held: Vec<(ByteString, u64)> =
        (0..RETAINED_INDEX_CHUNK + 1).map(|i| (ByteString::from(format!("t/{i}")), 7)).collect();
    let routes = [route("a/#"), route("b")];
    let mut out = BytesMut::new();
    let start = LinkStart { hello: hello("n1", 2), routes: &routes, held: &held };
    link.start(&mut Encoder::new(), &mut out, start);
    let bodies = frames(&mut out);
    assert!(matches!(&bodies[0], Body::Hello(h) if h.node == "n1" && h.link == 9));
    let Body::RouteSnapshot(snapshot) = &bodies[1] else { panic!("{bodies:?}") };
    assert_eq!(snapshot.routes.as_ref().map(Vec::len), Some(2));
    // Two index frames: no frame grows with the number of messages held.
    assert_eq!(bodies.len(), 4);
    assert!(link.is_up());
    for expected in 1..=2 {
        let Some(Body::RouteDelta(delta)) = link.route_delta(&[route("c")], &[]) else {
            panic!("a delta while up")
        };
        assert_eq!(delta.version, expected);
    }
    link.start(
        &mut Encoder::new(),
        &mut out,
        LinkStart { hello: hello("n1", 2), routes: &[], held: &[] },
    );
    let Some(Body::RouteDelta(delta)) = link.route_delta(&[], &[route("c")]) else { panic!() };
    assert_eq!(delta.version, 1, "a new connection numbers from 1 after its snapshot");
}

#[test]
fn receipts_are_answered_once_expire_after_the_timeout_and_are_given_up_with_the_connection() {
    let now = Instant::now();
    let mut link = OutLinkState::default();
    link.wait_for(1, now);
    link.wait_for(2, now + Duration::from_secs(5));
    link.wait_for(3, now + Duration::from_secs(6));
    assert!(link.answered(3));
    assert!(!link.answered(3), "a second receipt for the same token is not waited for");
    assert!(link.expired(now + RECEIPT_TIMEOUT - Duration::from_millis(1)).is_empty());
    assert_eq!(link.expired(now + RECEIPT_TIMEOUT), vec![1]);
    link.wait_for(4, now);
    assert_eq!(link.down(), vec![2, 4]);
    assert!(!link.is_up());
    assert!(link.down().is_empty());
}

#[test]
fn heartbeats_go_at_once_then_every_interval() {
    let now = Instant::now();
    let mut link = OutLinkState::default();
    assert!(link.heartbeat_due(now));
    assert!(!link.heartbeat_due(now + LINK_HEARTBEAT - Duration::from_millis(1)));
    assert_eq!(link.next_heartbeat(), Some(now + LINK_HEARTBEAT));
    assert!(link.heartbeat_due(now + LINK_HEARTBEAT));
}

#[test]
fn a_hello_lets_in_only_another_live_node_of_this_cluster_named_by_its_certificate() {
    let me = NodeId::new("n0");
    let live = |_: &NodeId, _: PeerLease| false;
    let HelloVerdict::Admit(origin) = check_hello("c1", &me, &hello("n1", 4), None, live) else {
        panic!("refused")
    };
    assert_eq!(origin.node, NodeId::new("n1"));
    assert_eq!((origin.origin, origin.shards), (ShardId(1), 4));
    assert_eq!((origin.epoch.lease, origin.epoch.link), (PeerLease(42), LinkNumber(9)));
    let refused = |verdict| match verdict {
        HelloVerdict::Refuse(refusal, _) => Some(refusal),
        _ => None,
    };
    let mut other = hello("n1", 4);
    other.cluster = "c2".into();
    assert_eq!(refused(check_hello("c1", &me, &other, None, live)), Some(HelloRefusal::Cluster));
    assert_eq!(
        refused(check_hello("c1", &me, &hello("n0", 4), None, live)),
        Some(HelloRefusal::Cluster)
    );
    let certificate = Some(Some("n2"));
    assert_eq!(
        refused(check_hello("c1", &me, &hello("n1", 4), certificate, live)),
        Some(HelloRefusal::Identity)
    );
    assert_eq!(
        refused(check_hello("c1", &me, &hello("n1", 4), Some(None), live)),
        Some(HelloRefusal::Identity)
    );
    assert!(matches!(
        check_hello("c1", &me, &hello("n1", 4), Some(Some("n1")), live),
        HelloVerdict::Admit(_)
    ));
    assert_eq!(
        refused(check_hello("c1", &me, &hello("n1", 0), None, live)),
        Some(HelloRefusal::Frame)
    );
    let gone = |_: &NodeId, lease: PeerLease| lease == PeerLease(42);
    assert_eq!(check_hello("c1", &me, &hello("n1", 4), None, gone), HelloVerdict::NotYet);
}

#[test]
fn frames_go_to_the_shard_they_name_or_the_home_shard_of_their_client() {
    let receipt =
        |shard| Body::Receipt(Box::new(Receipt { token: 1, shard, ok: true, matched: true }));
    assert_eq!(destination(&receipt(0), ShardId(0), 4), Destination::Here);
    assert_eq!(destination(&receipt(3), ShardId(0), 4), Destination::Shard(ShardId(3)));
    assert_eq!(destination(&receipt(4), ShardId(0), 4), Destination::Nowhere);
    let request = Body::TakeoverRequest(Box::new(TakeoverRequest {
        client_id: "client-7".into(),
        request: 1,
        reply_shard: 0,
        clean_start: false,
        username: None,
    }));
    let home = home_shard("client-7", 4);
    let expected = if home == ShardId(2) { Destination::Here } else { Destination::Shard(home) };
    assert_eq!(destination(&request, ShardId(2), 4), expected);
    let heartbeat = Body::Heartbeat(Box::new(frame::Heartbeat { etcd_ok: true }));
    assert_eq!(destination(&heartbeat, ShardId(1), 4), Destination::Here);
}

#[test]
fn admin_queries_go_to_the_home_shard_or_the_shard_listed_and_answers_to_the_asker() {
    let query = |client_id: Option<&str>, list: bool, shard: u16| {
        Body::AdminQuery(Box::new(AdminQuery {
            request: 1,
            reply_shard: 0,
            client_id: client_id.map(str::to_owned),
            kick: false,
            clean: false,
            list,
            shard,
            limit: 10,
            presence: 0,
        }))
    };
    let at = |home: ShardId, here: ShardId| {
        if home == here {
            Destination::Here
        } else {
            Destination::Shard(home)
        }
    };
    let home = home_shard("client-7", 4);
    assert_eq!(
        destination(&query(Some("client-7"), false, 3), ShardId(1), 4),
        at(home, ShardId(1))
    );
    // No client id (a malformed query) is the empty id's home, never a panic.
    let empty = home_shard("", 4);
    assert_eq!(destination(&query(None, false, 0), ShardId(0), 4), at(empty, ShardId(0)));
    // A page names its shard, whatever the cursor's home; one this node lacks goes nowhere.
    assert_eq!(
        destination(&query(Some("client-7"), true, 2), ShardId(0), 4),
        Destination::Shard(ShardId(2))
    );
    assert_eq!(destination(&query(None, true, 1), ShardId(1), 4), Destination::Here);
    assert_eq!(destination(&query(None, true, 4), ShardId(0), 4), Destination::Nowhere);
    let answer = |shard| {
        Body::AdminAnswer(Box::new(AdminAnswer { request: 1, shard, found: false, detail: None }))
    };
    assert_eq!(destination(&answer(3), ShardId(0), 4), Destination::Shard(ShardId(3)));
    assert_eq!(destination(&answer(0), ShardId(0), 4), Destination::Here);
    assert_eq!(destination(&answer(9), ShardId(0), 4), Destination::Nowhere);
}

#[test]
fn route_frames_become_the_shard_s_route_frames() {
    let mut link = OutLinkState::default();
    let mut out = BytesMut::new();
    let routes = [route("a/+")];
    link.start(
        &mut Encoder::new(),
        &mut out,
        LinkStart { hello: hello("n1", 2), routes: &routes, held: &[] },
    );
    let snapshot = frames(&mut out).remove(1);
    let Some(RouteFrame::Snapshot { shards: 3, routes }) = route_frame(snapshot, 3) else {
        panic!()
    };
    assert_eq!(routes, vec![route("a/+")]);
    let delta = link.route_delta(&[route("b")], &[route("a/+")]).expect("up");
    let Some(RouteFrame::Delta { version: 1, added, removed }) = route_frame(delta, 3) else {
        panic!()
    };
    assert_eq!((added, removed), (vec![route("b")], vec![route("a/+")]));
    assert!(route_frame(Body::Heartbeat(Box::new(frame::Heartbeat { etcd_ok: true })), 3).is_none());
}

fn member(node: &str, lease: i64, port: u16) -> Member {
    Member {
        node: NodeId::new(node),
        link: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        lease: LeaseId(lease),
    }
}

#[test]
fn a_new_member_list_starts_restarts_and_retires_links() {
    let me = NodeId::new("n0");
    let linked = [member("n1", 1, 7001), member("n2", 2, 7002), member("n3", 3, 7003)];
    let members = [
        member("n0", 9, 7000),
        member("n1", 1, 7001),  // unchanged
        member("n2", 20, 7002), // restarted: a new lease
        member("n3", 3, 7033),  // moved: a new address, the same incarnation
        member("n4", 4, 7004),  // new
    ];
    let change = membership_change(&me, &linked[..], &members);
    assert_eq!(
        change,
        MembershipChange {
            start: vec![members[2].clone(), members[3].clone(), members[4].clone()],
            gone: vec![(NodeId::new("n2"), LeaseId(2))],
            left: vec![],
        }
    );
    let change = membership_change(&me, &linked[..], &members[..2]);
    assert_eq!(change.left, vec![NodeId::new("n2"), NodeId::new("n3")]);
    assert_eq!(change.gone, vec![(NodeId::new("n2"), LeaseId(2)), (NodeId::new("n3"), LeaseId(3))]);
    assert!(change.start.is_empty());
}

#[test]
fn only_forwarded_publishes_may_be_dropped_and_they_carry_their_receipt() {
    use shardmq_shard::Forward;
    let now = Instant::now();
    let clock = shardmq_shard::persist::WallClock::fixed(now, 1_800_000_000_000);
    let receipt = Forward::Receipt { token: 3, shard: ShardId(1), ok: true, matched: true };
    let frame = forward_frame(ShardId(0), receipt, &clock, |_| None);
    assert!(!frame.droppable && frame.receipt.is_none());
    assert!(matches!(frame.body, Body::Receipt(r) if r.token == 3 && r.shard == 1));
    let pace = Forward::Pace { shard: ShardId(2), conn: shardmq_shard::ConnId(5), pause: true };
    assert!(!forward_frame(ShardId(0), pace, &clock, |_| None).droppable);
}

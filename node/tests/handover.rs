//! The handover machine between two nodes of one real shard each, step by step: what each side
//! sends, installs and answers. (The cluster simulation runs the same code under faults.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardmq_cluster::frame::Body;
use shardmq_cluster::{ClaimOutcome, NodeId, Revision};
use shardmq_codec::{
    ByteString, Connect, Decoded, Decoder, Packet, PacketId, Properties, ProtocolVersion, Publish,
    QoS, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_node::{Effect, Handover, HandoverConfig, Links, Ticket};
use shardmq_shard::persist::WallClock;
use shardmq_shard::{
    ConnId, ConnectRefusal, Effect as ShardEffect, Limits, PeerNode, Shard, ShardId,
};

const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);
const REVISION: Revision = Revision(7);

/// Every link up; node "a" is peer 1, "b" peer 2.
struct Up;

impl Links for Up {
    fn up(&self, _peer: PeerNode) -> bool {
        true
    }

    fn peer(&self, node: &NodeId) -> PeerNode {
        PeerNode(if &*node.0 == "a" { 1 } else { 2 })
    }
}

/// One node: a real shard, its handover machine, and the clients' side of its connections.
struct Node {
    shard: Shard,
    handover: Handover,
    decoders: HashMap<ConnId, Decoder>,
    received: HashMap<ConnId, Vec<Packet>>,
    effects: Vec<Effect>,
}

impl Node {
    fn new(now: Instant, first_request: u64) -> Node {
        let clock = WallClock::fixed(now, 1_800_000_000_000);
        let limits = Limits::default();
        let config = HandoverConfig::new(CLAIM_TIMEOUT, Duration::from_secs(3));
        Node {
            shard: Shard::with_storage(ShardId(0), 1, limits, clock),
            handover: Handover::new(ShardId(0), config, clock, first_request),
            decoders: HashMap::new(),
            received: HashMap::new(),
            effects: Vec::new(),
        }
    }

    /// Carries out the shard's effects (commits durable at once) and collects the handover
    /// machine's.
    fn run(&mut self, now: Instant) {
        loop {
            let mut effects = Vec::new();
            self.shard.drain_effects(&mut effects);
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                match effect {
                    ShardEffect::Flush(conn) | ShardEffect::Close(conn) => self.collect(conn, now),
                    ShardEffect::Commit => {
                        while let Some(batch) = self.shard.take_commit_batch() {
                            self.shard.commit_finished(batch.tickets, true, now);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.handover.drain_effects(&mut self.effects);
    }

    fn collect(&mut self, conn: ConnId, now: Instant) {
        let mut bytes = self.shard.take_output(conn);
        let decoder = self.decoders.entry(conn).or_insert_with(client_decoder);
        while let Ok(Decoded::Packet(packet)) = decoder.decode(&mut bytes) {
            self.received.entry(conn).or_default().push(packet);
        }
        self.shard.output_written(conn, now);
    }

    /// Attaches connection `conn` of client `c` (after its claim), returning whether its
    /// session was present and the message ids resent to it.
    fn attach(&mut self, conn: u64, now: Instant) -> (bool, Vec<u64>) {
        let conn = ConnId(conn);
        self.shard.connect(conn, connect_packet(), now);
        self.run(now);
        let packets = self.received.remove(&conn).unwrap_or_default();
        let Some(Packet::ConnAck(connack)) = packets.first() else {
            panic!("no CONNACK: {packets:?}")
        };
        (connack.session_present, packets.iter().filter_map(message_id).collect())
    }

    /// A client `c` with a session here holding messages 1..=count, offline.
    fn with_session(now: Instant, first_request: u64, count: u64) -> Node {
        let mut node = Node::new(now, first_request);
        node.attach(1, now);
        node.shard.packet(ConnId(1), subscribe_packet(), now);
        for id in 1..=count {
            node.shard.packet(ConnId(1), publish_packet(id), now);
        }
        node.shard.connection_lost(ConnId(1), now);
        node.run(now);
        node.received.clear();
        node
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }
}

fn client_decoder() -> Decoder {
    Decoder::client(ProtocolVersion::V5, u32::MAX)
}

fn connect_packet() -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive_secs: 0,
        client_id: ByteString::from("c"),
        will: None,
        username: None,
        password: None,
        properties: Properties { session_expiry_interval: Some(u32::MAX), ..Properties::default() },
    }
}

fn subscribe_packet() -> Packet {
    let filter = TopicFilterEntry {
        filter: ByteString::from("own/c"),
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
    };
    let packet_id = PacketId::new(1).expect("non-zero");
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![filter],
    })
}

fn publish_packet(id: u64) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteString::from("own/c"),
        packet_id: Some(PacketId::new(id as u16 + 100).expect("non-zero")),
        properties: Properties::default(),
        payload: Bytes::from(id.to_string()),
    })
}

fn message_id(packet: &Packet) -> Option<u64> {
    match packet {
        Packet::Publish(publish) => std::str::from_utf8(&publish.payload).ok()?.parse().ok(),
        _ => None,
    }
}

/// The frame of the one `Send` among `effects`.
fn sent(effects: &[Effect]) -> Body {
    let mut frames = effects.iter().filter_map(|effect| match effect {
        Effect::Send { body, .. } => Some(body),
        _ => None,
    });
    let body = frames.next().unwrap_or_else(|| panic!("nothing sent: {effects:?}"));
    assert!(frames.next().is_none(), "more than one frame sent: {effects:?}");
    // Through the wire codec, as a link carries it.
    let mut bytes = bytes::BytesMut::new();
    shardmq_cluster::frame::Encoder::new().encode(clone_body(body), &mut bytes);
    shardmq_cluster::frame::decode(&mut bytes).expect("decodes").expect("a whole frame")
}

fn clone_body(body: &Body) -> Body {
    match body {
        Body::TakeoverRequest(request) => Body::TakeoverRequest(request.clone()),
        Body::SessionTransfer(transfer) => Body::SessionTransfer(transfer.clone()),
        Body::TransferInstalled(installed) => Body::TransferInstalled(installed.clone()),
        other => panic!("unexpected frame {other:?}"),
    }
}

fn answer(effects: &[Effect], ticket: Ticket) -> Option<Result<(), ConnectRefusal>> {
    effects.iter().find_map(|effect| match effect {
        Effect::Answer { ticket: answered, result } if *answered == ticket => Some(*result),
        _ => None,
    })
}

fn handed_over(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|effect| matches!(effect, Effect::HandedOver { client_id } if client_id == "c"))
}

/// `b` connects client `c`, finds it held by `a`, and asks `a`; `a` answers. Returns b's
/// ticket, with a's answer delivered to b and the claim after the release asked for.
fn take_over(a: &mut Node, b: &mut Node, now: Instant) -> Ticket {
    let ticket = b.handover.connect("c", false, None, now);
    b.run(now);
    assert!(matches!(b.take_effects()[..], [Effect::Claim { .. }]));
    let held = ClaimOutcome::HeldBy { owner: NodeId::new("a"), revision: REVISION };
    b.handover.claim_answered(&mut b.shard, &Up, ticket, held, now);
    b.run(now);
    let Body::TakeoverRequest(request) = sent(&b.take_effects()) else { panic!("no ask") };
    a.handover.request_arrived(&mut a.shard, &Up, PeerNode(2), &request, now);
    a.run(now);
    let effects = a.take_effects();
    assert!(handed_over(&effects), "a did not tell its core: {effects:?}");
    let Body::SessionTransfer(transfer) = sent(&effects) else { panic!("no transfer") };
    b.handover.transfer_arrived(&mut b.shard, &Up, PeerNode(1), &transfer, now);
    b.run(now);
    let effects = b.take_effects();
    assert!(
        matches!(effects[..], [Effect::ClaimAfterRelease { revision: REVISION, .. }]),
        "{effects:?}"
    );
    ticket
}

#[test]
fn a_takeover_moves_the_session_with_its_messages_and_confirms_it() {
    let now = Instant::now();
    let mut a = Node::with_session(now, 1 << 32, 3);
    let mut b = Node::new(now, 2 << 32);
    let ticket = take_over(&mut a, &mut b, now);
    assert!(a.handover.is_parked("c"), "a keeps a copy until b confirms");
    assert!(!a.shard.has_session("c"));
    b.handover.claim_answered(&mut b.shard, &Up, ticket, ClaimOutcome::Claimed, now);
    b.run(now);
    let effects = b.take_effects();
    assert_eq!(answer(&effects, ticket), Some(Ok(())));
    let Body::TransferInstalled(installed) = sent(&effects) else { panic!("no confirmation") };
    a.handover.installed_arrived(&mut a.shard, &installed, now);
    assert!(!a.handover.is_parked("c"));
    assert_eq!(b.attach(2, now), (true, vec![1, 2, 3]));
}

#[test]
fn a_client_back_at_its_old_node_before_the_new_one_confirmed_keeps_its_session() {
    let now = Instant::now();
    let mut a = Node::with_session(now, 1 << 32, 2);
    let mut b = Node::new(now, 2 << 32);
    take_over(&mut a, &mut b, now);
    // The client gives up on b and comes back to a, whose claim wins the key first.
    let ticket = a.handover.connect("c", false, None, now);
    a.run(now);
    a.take_effects();
    a.handover.claim_answered(&mut a.shard, &Up, ticket, ClaimOutcome::Claimed, now);
    a.run(now);
    assert_eq!(answer(&a.take_effects(), ticket), Some(Ok(())));
    assert!(!a.handover.is_parked("c"), "the parked copy is the session again");
    assert_eq!(a.attach(3, now), (true, vec![1, 2]));
    assert_eq!(a.handover.stats().parked_taken_back, 1);
}

#[test]
fn the_same_peer_asking_again_gets_the_parked_copy_and_the_owner_lets_go_again() {
    let now = Instant::now();
    let mut a = Node::with_session(now, 1 << 32, 2);
    let mut b = Node::new(now, 2 << 32);
    let first = take_over(&mut a, &mut b, now);
    // b's claim after the release fails; its client connects again and b asks again.
    b.handover.claim_answered(&mut b.shard, &Up, first, ClaimOutcome::Unavailable, now);
    b.run(now);
    let effects = b.take_effects();
    assert_eq!(answer(&effects, first), Some(Err(ConnectRefusal::EtcdUnavailable)));
    assert!(b.shard.has_session("c"), "the installed session stays, offline");
    let later = now + Duration::from_millis(100);
    let second = take_over(&mut a, &mut b, later);
    b.handover.claim_answered(&mut b.shard, &Up, second, ClaimOutcome::Claimed, later);
    b.run(later);
    assert_eq!(answer(&b.take_effects(), second), Some(Ok(())));
    assert_eq!(b.attach(4, later), (true, vec![1, 2]));
    assert_eq!(a.handover.stats().parked_resent, 1);
}

#[test]
fn a_newer_connect_of_the_same_client_supersedes_an_older_one_still_waiting() {
    let now = Instant::now();
    let mut b = Node::new(now, 2 << 32);
    let older = b.handover.connect("c", false, None, now);
    b.run(now);
    b.take_effects();
    let held = ClaimOutcome::HeldBy { owner: NodeId::new("a"), revision: REVISION };
    b.handover.claim_answered(&mut b.shard, &Up, older, held, now);
    b.run(now);
    b.take_effects();
    let newer = b.handover.connect("c", false, None, now);
    b.run(now);
    let effects = b.take_effects();
    assert_eq!(answer(&effects, older), Some(Err(ConnectRefusal::EtcdBusy)));
    assert!(
        matches!(effects[..], [Effect::Answer { .. }, Effect::Claim { ticket, .. }] if ticket == newer)
    );
    assert_eq!(b.handover.connects(), 1);
}

#[test]
fn an_owner_that_never_answers_is_given_up_at_the_deadline_and_an_unconfirmed_copy_comes_back() {
    let now = Instant::now();
    let mut a = Node::with_session(now, 1 << 32, 1);
    let mut b = Node::new(now, 2 << 32);
    let ticket = b.handover.connect("c", false, None, now);
    b.run(now);
    b.take_effects();
    let held = ClaimOutcome::HeldBy { owner: NodeId::new("a"), revision: REVISION };
    b.handover.claim_answered(&mut b.shard, &Up, ticket, held, now);
    b.run(now);
    let Body::TakeoverRequest(request) = sent(&b.take_effects()) else { panic!("no ask") };
    assert_eq!(b.handover.next_deadline(), Some(now + CLAIM_TIMEOUT));
    b.handover.tick(&mut b.shard, now + CLAIM_TIMEOUT);
    b.run(now);
    assert_eq!(answer(&b.take_effects(), ticket), Some(Err(ConnectRefusal::EtcdUnavailable)));
    // a handed the session over, but the transfer was lost: its copy comes back after
    // park_for (twice the claim timeout and the link silence).
    a.handover.request_arrived(&mut a.shard, &Up, PeerNode(2), &request, now);
    a.run(now);
    let park_for = CLAIM_TIMEOUT * 2 + Duration::from_secs(3);
    assert_eq!(a.handover.next_deadline(), Some(now + park_for));
    a.handover.tick(&mut a.shard, now + park_for);
    assert!(a.shard.has_session("c"));
    assert_eq!(a.attach(5, now + park_for), (true, vec![1]));
}

#[test]
fn a_new_owner_whose_claim_failed_says_so_and_the_old_owner_s_copy_is_the_session_again_at_once() {
    let now = Instant::now();
    let mut a = Node::with_session(now, 1 << 32, 2);
    let mut b = Node::new(now, 2 << 32);
    let ticket = take_over(&mut a, &mut b, now);
    b.handover.claim_answered(&mut b.shard, &Up, ticket, ClaimOutcome::Unavailable, now);
    b.run(now);
    let effects = b.take_effects();
    assert_eq!(answer(&effects, ticket), Some(Err(ConnectRefusal::EtcdUnavailable)));
    let Body::TransferInstalled(refused) = sent(&effects) else { panic!("no word to a") };
    assert!(!refused.installed);
    a.handover.installed_arrived(&mut a.shard, &refused, now);
    assert!(!a.handover.is_parked("c"), "no third node is told \"busy\" for longer");
    assert_eq!(a.handover.stats().parked_restored, 1);
    assert_eq!(a.attach(6, now), (true, vec![1, 2]));
}

#[test]
fn a_transfer_nobody_waits_for_any_more_is_refused_so_the_old_owner_does_not_hold_the_client() {
    let now = Instant::now();
    let mut a = Node::with_session(now, 1 << 32, 1);
    let mut b = Node::new(now, 2 << 32);
    let older = b.handover.connect("c", false, None, now);
    b.run(now);
    b.take_effects();
    let held = ClaimOutcome::HeldBy { owner: NodeId::new("a"), revision: REVISION };
    b.handover.claim_answered(&mut b.shard, &Up, older, held, now);
    b.run(now);
    let Body::TakeoverRequest(request) = sent(&b.take_effects()) else { panic!("no ask") };
    // A newer connect of the client supersedes the one that asked; a's answer comes late.
    b.handover.connect("c", false, None, now);
    b.run(now);
    b.take_effects();
    a.handover.request_arrived(&mut a.shard, &Up, PeerNode(2), &request, now);
    a.run(now);
    let Body::SessionTransfer(transfer) = sent(&a.take_effects()) else { panic!("no transfer") };
    assert!(a.handover.is_parked("c"));
    b.handover.transfer_arrived(&mut b.shard, &Up, PeerNode(1), &transfer, now);
    b.run(now);
    assert!(!b.shard.has_session("c"), "nothing is installed for a connect that is gone");
    let Body::TransferInstalled(refused) = sent(&b.take_effects()) else { panic!("no refusal") };
    assert!(!refused.installed);
    a.handover.installed_arrived(&mut a.shard, &refused, now);
    assert!(!a.handover.is_parked("c"));
    assert_eq!(a.attach(7, now), (true, vec![1]));
}

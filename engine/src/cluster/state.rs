//! The cluster state a shard keeps ([`ShardCluster`]) and what the shards of a node share
//! ([`NodeCluster`]): the peers and their numbering, the outgoing links and their queues,
//! takeovers and parked sessions, and the items shards pass each other about links. No I/O
//! here; the tasks that run the links live in the parent module.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use shardmq_cluster::control::{ControlPlane, Fence};
use shardmq_cluster::frame::{
    AdminAnswer, AdminQuery, Body, Encoder, RetainedFetch, RetainedFetched, SessionInvite,
    SessionTransfer, TakeoverRequest, TransferInstalled,
};
use shardmq_cluster::ring::Ring;
use shardmq_cluster::{Member, NodeId};
use shardmq_io::codec::ByteString;
use shardmq_io::runtime::{self};
use shardmq_node::link::OutLinkState;
use shardmq_node::retained::RetainedOut;
use shardmq_node::{Handover, HandoverConfig, Ticket};
use shardmq_shard::persist::WallClock;
use shardmq_shard::{
    ConnId, ConnectRefusal, Forward, LinkEpoch, LinkNumber, Node, PeerNode, PeerRoute,
    RetainedPlacement, ShardId, SharedMessage,
};

use crate::link_security::{LinkCertificates, LinkStats};
use crate::signal::Signal;

pub(crate) use shardmq_node::link::LINK_HEARTBEAT;
/// How long a link connect may take before it is retried.
pub(crate) const LINK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between link connection attempts: doubles from the first to the last.
pub(crate) const LINK_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const LINK_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Frames waiting for one link's socket at most, before a forwarded publish. Past it, forwarded
/// publishes to that peer are dropped (counted) until the socket drains: a slow peer costs
/// bounded memory. Every other frame is queued regardless (see [`ShardCluster::send`]).
pub(crate) const LINK_OUT_BYTES_MAX: usize = 64 << 20;
/// How long one write to a peer may take before its link is closed as stuck.
pub(crate) const LINK_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an incoming link may stay silent (peers send a heartbeat every
/// [`LINK_HEARTBEAT`]) before it is closed as dead.
pub(crate) const LINK_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long what this node sent on a link may stay unacknowledged by the peer's kernel before
/// the link fails (`TCP_USER_TIMEOUT`). A peer cut off by a partition sends no FIN or RST: without
/// this, the link's writes kept succeeding for the ~15 minutes the kernel retransmits, forwarded
/// QoS 1 publishes waited `RECEIPT_TIMEOUT` and then failed, and the link came back only when
/// a retransmission got through after the cut healed. The incoming side notices the same
/// silence after [`LINK_READ_TIMEOUT`]; this makes the outgoing side as quick.
pub(crate) const LINK_USER_TIMEOUT: Duration = LINK_READ_TIMEOUT;
/// Claims of stored sessions in flight at most while a shard claims them again under a new lease
/// (about one full etcd transaction).
pub(crate) const RECLAIM_CLAIMS_IN_FLIGHT: usize = 128;
/// How often such a claim is tried when it times out or the node is fenced meanwhile (it serves
/// again under the same lease, which brings no second re-claim), and the pause before the
/// second try, doubling to the last.
pub(crate) const RECLAIM_ATTEMPTS_MAX: u32 = 10;
pub(crate) const RECLAIM_RETRY: Duration = Duration::from_millis(500);
pub(crate) const RECLAIM_RETRY_MAX: Duration = Duration::from_secs(8);
/// How often a failing link is logged at most.
pub(crate) const LINK_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How many nodes keep a large retained message in full: the first ones of its topic on the
/// HRW ring. Two, so that one node lost or restarting leaves a copy to fetch.
pub(crate) const RETAINED_COPIES: usize = 2;
/// How long a subscribe's fetch of a large retained message waits for one holder before it
/// asks the next.
pub(crate) const RETAINED_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the shards of a node share about the cluster: the control plane, the numbering of
/// peer nodes and of link connections. Locked only when membership changes or a link says
/// hello, never per message.
pub struct NodeCluster {
    pub control: ControlPlane,
    pub cluster: String,
    pub node: NodeId,
    pub fence: Arc<Fence>,
    pub claim_timeout: Duration,
    /// Retained payloads up to this size are kept on every node, larger ones on
    /// [`RETAINED_COPIES`] nodes.
    pub retained_replicate_bytes_max: usize,
    pub(crate) registry: Mutex<Registry>,
    /// The number of the next link connection any shard makes: larger than every number this
    /// node's previous runs gave, since it starts from the wall clock.
    pub(crate) next_link: AtomicU64,
    /// TLS on node links (`None`: plaintext links, as configured).
    pub link_tls: Option<Arc<LinkCertificates>>,
    pub link_stats: LinkStats,
    /// The clock that versions this node's retained writes, shared by its shards.
    pub retained_clock: shardmq_shard::RetainedClock,
    /// A drain was asked for (`crate::drain`); how many shards have finished theirs, and the
    /// sessions they could not hand over.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// What a drain tells MQTT 5 clients to connect to instead (DISCONNECT 0x9C's Server
    /// Reference), as the drain's caller gave it.
    pub drain_reference: Arc<Mutex<Option<String>>>,
    pub drained_shards: std::sync::atomic::AtomicUsize,
    pub drain_left: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) by_name: HashMap<NodeId, PeerNode>,
    pub(crate) names: Vec<NodeId>,
    /// Each peer's shard count, from the hello of its last link admitted here.
    pub(crate) shards: HashMap<PeerNode, u16>,
}

impl NodeCluster {
    pub fn new(
        control: ControlPlane,
        cluster: String,
        claim_timeout: Duration,
        retained_replicate_bytes_max: usize,
        link_tls: Option<Arc<LinkCertificates>>,
    ) -> NodeCluster {
        NodeCluster {
            fence: control.fence(),
            node: control.node().clone(),
            control,
            cluster,
            claim_timeout,
            retained_replicate_bytes_max,
            registry: Mutex::new(Registry::default()),
            next_link: AtomicU64::new(run_base()),
            link_tls,
            link_stats: LinkStats::default(),
            retained_clock: shardmq_shard::RetainedClock::new(),
            draining: Default::default(),
            drain_reference: Default::default(),
            drained_shards: Default::default(),
            drain_left: Default::default(),
        }
    }

    /// A number for a new link connection, larger than any given before.
    pub(crate) fn next_link(&self) -> LinkNumber {
        LinkNumber(self.next_link.fetch_add(1, Ordering::Relaxed))
    }

    /// How this node names `node` to its shards.
    pub(crate) fn shard_node(&self, node: &NodeId) -> Node {
        if *node == self.node {
            Node::Here
        } else {
            Node::Peer(self.peer(node))
        }
    }

    /// The id of a node named by a shard.
    pub(crate) fn node_id(&self, node: Node) -> Option<NodeId> {
        match node {
            Node::Here => Some(self.node.clone()),
            Node::Peer(peer) => self.name(peer),
        }
    }

    /// The number of peer `node` on this node (the same on every shard, never reused).
    pub(crate) fn peer(&self, node: &NodeId) -> PeerNode {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&peer) = registry.by_name.get(node) {
            return peer;
        }
        let peer = PeerNode(u16::try_from(registry.names.len()).unwrap_or(u16::MAX));
        registry.names.push(node.clone());
        registry.by_name.insert(node.clone(), peer);
        peer
    }

    pub(crate) fn name(&self, peer: PeerNode) -> Option<NodeId> {
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.names.get(usize::from(peer.0)).cloned()
    }

    /// A link of `peer` said hello with its shard count.
    pub(crate) fn learn_shards(&self, peer: PeerNode, shards: u16) {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.shards.insert(peer, shards);
    }

    /// `peer`'s shard count, once one of its links said hello here.
    pub(crate) fn peer_shards(&self, peer: PeerNode) -> Option<u16> {
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.shards.get(&peer).copied()
    }
}

impl std::fmt::Debug for NodeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCluster").field("node", &self.node).finish_non_exhaustive()
    }
}

/// Lives on each shard: its outgoing links and the takeovers and retained fetches it waits for.
pub struct ShardCluster {
    pub node: Arc<NodeCluster>,
    pub(crate) clock: WallClock,
    pub(crate) links: RefCell<HashMap<PeerNode, Rc<OutLink>>>,
    /// Claims and takeovers of clients homed on this shard (`shardmq_node::Handover`), the
    /// connects waiting for their answer, and what wakes its timer when a deadline is added.
    pub(crate) handover: RefCell<Handover>,
    pub(crate) answers: RefCell<HashMap<Ticket, Rc<Awaited<ClaimAnswer>>>>,
    pub(crate) handover_signal: Signal,
    /// The live nodes (this one included), for the holders of large retained messages.
    pub(crate) ring: Rc<RefCell<Ring>>,
    /// Fetches of large retained messages the shard asked for, not started yet.
    pub(crate) fetch_queue: RefCell<Vec<(u64, ByteString, Vec<PeerNode>)>>,
    pub(crate) fetch_signal: Signal,
    /// Retained fetches waiting for a holder's answer, by request number: the message and its
    /// version.
    pub(crate) fetches: RefCell<HashMap<u64, Rc<Awaited<Fetched>>>>,
    /// Admin questions this shard asked its peers, by request number (`admin_links.rs`).
    pub(crate) admin_asks: RefCell<HashMap<u64, Rc<AdminAsk>>>,
    /// Large retained messages this node became a holder of, to pull one at a time.
    pub(crate) pull_queue: RefCell<PullQueue>,
    pub(crate) pull_signal: Signal,
    /// Failed pulls per topic, while they are tried again (`retained.rs`, `retry_pull`).
    pub(crate) pull_attempts: RefCell<HashMap<ByteString, u32>>,
    pub(crate) next_request: Cell<u64>,
    pub(crate) encoder: RefCell<Encoder>,
    /// Forwards dropped because the peer's link was down or full (QoS 0), for the logs.
    pub(crate) dropped: Cell<u64>,
    /// Accepted links still being authenticated (at most [`LINK_UNAUTHENTICATED_MAX`]).
    pub(crate) unauthenticated: Cell<usize>,
}

/// One outgoing link of this shard: frames queue in `out` while it is up.
pub(crate) struct OutLink {
    pub(crate) member: RefCell<Member>,
    pub(crate) out: RefCell<BytesMut>,
    pub(crate) signal: Signal,
    /// The protocol's side of it: up or not, route delta numbering, receipts waited for,
    /// heartbeat timing (`shardmq_node::link`).
    pub(crate) state: RefCell<OutLinkState>,
    /// The peer left the cluster (or restarted with a new lease): the task ends.
    pub(crate) retired: Cell<bool>,
    /// The retained catch-up on this connection (`shardmq_node::retained`).
    pub(crate) retained: RefCell<RetainedOut>,
}

/// A holder's answer to a retained fetch: the message and its version, or none.
pub(crate) type Fetched = Option<(SharedMessage, u64)>;

/// How a connect's claim ended: served here, or why not.
pub(crate) type ClaimAnswer = Result<(), ConnectRefusal>;

/// An answer a task waits for, set by whoever reads it from a link.
pub(crate) struct Awaited<T> {
    pub(crate) value: RefCell<Option<T>>,
    pub(crate) signal: Signal,
}

impl<T> Awaited<T> {
    pub(crate) fn new() -> Awaited<T> {
        Awaited { value: RefCell::new(None), signal: Signal::default() }
    }

    pub(crate) fn set(&self, value: T) {
        *self.value.borrow_mut() = Some(value);
        self.signal.notify();
    }

    /// The answer, whenever it comes.
    pub(crate) async fn wait(&self) -> T {
        loop {
            if let Some(value) = self.value.borrow_mut().take() {
                return value;
            }
            self.signal.wait().await;
        }
    }

    /// The answer, or `None` when it has not come by `deadline`.
    pub(crate) async fn until(&self, deadline: Instant) -> Option<T> {
        loop {
            if let Some(value) = self.value.borrow_mut().take() {
                return Some(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            future::or(self.signal.wait(), runtime::sleep(left)).await;
        }
    }
}

/// The peers' answers to one admin question, as they arrive (one question is several requests:
/// one per peer, or per peer shard for a page).
#[derive(Default)]
pub(crate) struct AdminAsk {
    pub(crate) answers: RefCell<HashMap<u64, AdminAnswer>>,
    pub(crate) signal: Signal,
}

/// Chooses the holders of large retained messages: the first [`RETAINED_COPIES`] nodes of the
/// topic on the HRW ring of live nodes, the same on every node that sees the same members.
#[derive(Debug)]
pub(crate) struct RingPlacement {
    pub(crate) node: Arc<NodeCluster>,
    pub(crate) ring: Rc<RefCell<Ring>>,
}

impl RetainedPlacement for RingPlacement {
    fn holders(&self, topic: &str) -> Vec<Node> {
        let ring = self.ring.borrow();
        let owners = ring.owners(topic.as_bytes(), RETAINED_COPIES);
        owners.into_iter().map(|node| self.node.shard_node(node)).collect()
    }
}

/// Link messages one shard passes to another over the mesh.
pub enum ClusterItem {
    /// A peer answered a publish this shard forwarded.
    Receipt { peer: PeerNode, token: u64, ok: bool, matched: bool },
    /// A peer takes over a client homed on this shard.
    Takeover { peer: PeerNode, request: Box<TakeoverRequest> },
    /// Peer `peer` answered this shard's takeover request.
    Transfer { peer: PeerNode, transfer: Box<SessionTransfer> },
    /// A draining peer invites this node to take a client homed on this shard over.
    Invite { peer: PeerNode, invite: Box<SessionInvite> },
    /// A peer fetches a retained message of this shard's partition.
    Fetch { peer: PeerNode, fetch: Box<RetainedFetch> },
    /// A peer answered this shard's retained fetch.
    Fetched(Box<RetainedFetched>),
    /// A peer node's subscriber paused or released this shard's connection `conn`.
    Pace { conn: ConnId, pause: bool },
    /// A peer installed a session this shard handed over.
    Installed(Box<TransferInstalled>),
    /// A peer's admin API asks about a client homed on this shard, or for its page.
    AdminQuery { peer: PeerNode, query: Box<AdminQuery> },
    /// A peer answered this shard's admin question.
    AdminAnswer(Box<AdminAnswer>),
    /// Shard `peer_shard` (of `peer_shards`) of a peer digested its retained versions of this
    /// shard's topics.
    /// `ask_back`: send this shard's own digest to the peer again.
    RetainedDigest {
        peer: PeerNode,
        peer_shards: u16,
        peer_shard: ShardId,
        digest: Vec<u64>,
        ask_back: bool,
    },
    /// Shard `peer_shard` (of `peer_shards`) of a peer listed its retained versions in
    /// `buckets` of this shard's partition.
    RetainedVersions {
        peer: PeerNode,
        peer_shards: u16,
        peer_shard: ShardId,
        buckets: Vec<u16>,
        entries: Vec<(ByteString, u64)>,
    },
}

impl ShardCluster {
    pub fn new(shard: ShardId, node: Arc<NodeCluster>, clock: WallClock) -> ShardCluster {
        let timing = HandoverConfig::new(node.claim_timeout, LINK_READ_TIMEOUT);
        // Takeover request numbers, like the others, differ between runs (see below).
        let handover = Handover::new(shard, timing, clock, run_base());
        ShardCluster {
            node,
            clock,
            links: RefCell::new(HashMap::new()),
            handover: RefCell::new(handover),
            answers: RefCell::new(HashMap::new()),
            handover_signal: Signal::default(),
            ring: Rc::new(RefCell::new(Ring::default())),
            fetch_queue: RefCell::new(Vec::new()),
            fetch_signal: Signal::default(),
            fetches: RefCell::new(HashMap::new()),
            admin_asks: RefCell::new(HashMap::new()),
            pull_queue: RefCell::new(PullQueue::new()),
            pull_signal: Signal::default(),
            pull_attempts: RefCell::new(HashMap::new()),
            // Request numbers differ between runs of the process, so that an answer to a
            // request of a previous run (it crossed a restart) matches nothing in this one.
            next_request: Cell::new(run_base()),
            encoder: RefCell::new(Encoder::new()),
            dropped: Cell::new(0),
            unauthenticated: Cell::new(0),
        }
    }

    /// Where this shard's large retained messages are kept (given to the shard's state).
    pub fn placement(&self) -> Box<dyn RetainedPlacement> {
        Box::new(RingPlacement { node: self.node.clone(), ring: self.ring.clone() })
    }

    pub(crate) fn next_request(&self) -> u64 {
        let request = self.next_request.get();
        self.next_request.set(request + 1);
        request
    }

    /// The shard asked for a large retained message kept on other nodes
    /// ([`shardmq_shard::Effect::FetchRetained`]); [`retained_fetcher`] fetches it.
    pub fn fetch_retained(&self, token: u64, topic: ByteString, holders: Vec<PeerNode>) {
        self.fetch_queue.borrow_mut().push((token, topic, holders));
        self.fetch_signal.notify();
    }

    /// The shard became a holder of a large retained message
    /// ([`shardmq_shard::Effect::PullRetained`]); [`retained_puller`] pulls it.
    pub fn pull_retained(&self, topic: ByteString, holders: Vec<PeerNode>) {
        self.pull_queue.borrow_mut().push_back((topic, holders));
        self.pull_signal.notify();
    }

    /// Queues a frame on the link to `peer`. False when the link is down.
    ///
    /// A full link takes the frame too: only forwarded publishes may be dropped for a full link
    /// (the caller asks [`ShardCluster::has_room`]). A route delta lost while the link stays up
    /// would leave the peer's replica wrong until the next reconnect, and a lost receipt or
    /// takeover message would leave its waiter to time out; their volume is small, and a peer
    /// that stops reading has its link closed after [`LINK_WRITE_TIMEOUT`], which empties it.
    pub(crate) fn send(&self, peer: PeerNode, body: Body) -> bool {
        let links = self.links.borrow();
        let Some(link) = links.get(&peer).filter(|link| link.state.borrow().is_up()) else {
            return false;
        };
        self.encoder.borrow_mut().encode(body, &mut link.out.borrow_mut());
        link.signal.notify();
        true
    }

    /// Whether the link to `peer` has room for a forwarded publish ([`LINK_OUT_BYTES_MAX`]).
    pub(crate) fn has_room(&self, peer: PeerNode) -> bool {
        self.links
            .borrow()
            .get(&peer)
            .is_some_and(|link| link.out.borrow().len() <= LINK_OUT_BYTES_MAX)
    }

    /// Carries out a shard effect meant for a peer. Returns the receipt to answer at once when
    /// the publish could not be sent (see `shardmq_node::link::ForwardFrame`).
    pub fn forward(&self, shard: ShardId, peer: PeerNode, forward: Forward) -> Option<(u64, bool)> {
        let names = |node| self.node.node_id(node);
        let frame = shardmq_node::link::forward_frame(shard, forward, &self.clock, names);
        if !frame.droppable {
            self.send(peer, frame.body);
            return None;
        }
        if !self.has_room(peer) || !self.send(peer, frame.body) {
            // The peer's link is down (the node is gone or restarting) or full: its
            // subscribers miss this message, and the publisher is answered now (see
            // docs/cluster.md).
            self.dropped.set(self.dropped.get() + 1);
            return frame.receipt.map(|token| (token, true));
        }
        if let Some(token) = frame.receipt {
            if let Some(link) = self.links.borrow().get(&peer) {
                link.state.borrow_mut().wait_for(token, Instant::now());
            }
        }
        None
    }

    /// This shard's routes changed: one delta on every link that is up (a link that is down
    /// starts again from a snapshot). Never dropped while the link is up: the peer applies a
    /// delta only as the next of its connection's.
    pub fn routes_changed(&self, added: &[PeerRoute], removed: &[PeerRoute]) {
        let peers: Vec<PeerNode> = self.links.borrow().keys().copied().collect();
        for peer in peers {
            let delta = match self.links.borrow().get(&peer) {
                Some(link) => link.state.borrow_mut().route_delta(added, removed),
                None => None,
            };
            if let Some(body) = delta {
                self.send(peer, body);
            }
        }
    }
}

/// Who is at the other end of an incoming link (from its hello).
pub(crate) struct LinkPeer {
    pub(crate) peer: PeerNode,
    pub(crate) node: NodeId,
    pub(crate) origin: ShardId,
    /// How many shards the peer has.
    pub(crate) shards: u16,
    /// The peer's incarnation and this connection's number: what its route frames are tagged
    /// with.
    pub(crate) epoch: LinkEpoch,
}

pub(crate) type PullQueue = VecDeque<(ByteString, Vec<PeerNode>)>;

/// The first takeover request number, or link connection number, of this run: the wall clock in
/// nanoseconds, high bits cleared so that numbers never wrap within a run. A later run starts
/// above the numbers an earlier one gave (unless the clock was set back by more than the run's
/// count of them).
pub(crate) fn run_base() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64);
    (nanos & (u64::MAX >> 2)).max(1)
}

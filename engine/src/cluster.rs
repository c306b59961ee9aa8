//! The node's side of the cluster, on each shard: node links, the claim of a connecting
//! client's id, cross-node takeover and fencing.
//!
//! Node links: every shard keeps one outgoing TCP connection to every peer node, and sends on
//! it only (its route snapshot and deltas, forwarded publishes, receipts, takeover messages,
//! heartbeats), as length-prefixed FlatBuffers frames ([`shardmq_cluster::frame`]). What a
//! peer sends arrives on the connections this node accepts on its link listener (one
//! SO_REUSEPORT socket per shard, like the MQTT listener), on whichever shard the kernel picks:
//! that shard applies routes on every shard, delivers publishes, and passes receipts and
//! takeover messages to the shard they are for.
//!
//! Every connection a link makes is numbered in its hello, from a counter of the process seeded
//! from the wall clock, so a reconnect or a restart brings a larger number. Two connections of
//! one peer shard can be read at once (the old one not yet noticed dead, on another shard), so
//! the receiving shards tag route frames with (the hello's lease, that number) and keep only the
//! newest connection's routes ([`shardmq_shard::LinkEpoch`]). When the membership says an
//! incarnation of a peer is gone, its routes go and its links that are still open are closed.
//!
//! The etcd side (membership, batched ownership, the lease and its deadline) runs on the
//! control-plane thread ([`shardmq_cluster::control`]); shards reach it through
//! [`ControlPlane`], whose calls are runtime-agnostic futures.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use shardmq_cluster::control::{ControlEvent, ControlPlane, Fence};
use shardmq_cluster::frame::{
    self, Body, Encoder, Heartbeat, Hello, Pace, Publish, Receipt, RetainedFetch, RetainedFetched,
    RetainedIndex, Route, RouteDelta, RouteSnapshot, SessionMessage, SessionTransfer,
    TakeoverRequest, TransferInstalled,
};
use shardmq_cluster::ring::Ring;
use shardmq_cluster::{ClaimOutcome, Member, NodeId, Revision};
use shardmq_io::codec::ByteString;
use shardmq_io::link_tls::{LinkIo, LinkTls};
use shardmq_io::runtime::{self, Connection, TcpListener, TcpStream};
use shardmq_shard::persist::{
    decode_message_record, decode_session, decode_stored_message, encode_message_record,
    encode_session, encode_stored_message, Restored, WallClock,
};
use shardmq_shard::{
    home_shard, ConnId, ConnectRefusal, Forward, LinkEpoch, LinkNumber, Node, PeerLease, PeerNode,
    PeerRoute, RetainedPlacement, RouteFrame, ShardId, SharedMessage,
};

use crate::link_security::{
    LinkCertificates, LinkStats, Refusal, LINK_HANDSHAKE_TIMEOUT, LINK_UNAUTHENTICATED_MAX,
};
use crate::server::{MeshItem, ShardContext, Signal};

mod retained;
pub use retained::{retained_fetcher, retained_puller};

/// How often every outgoing link sends a heartbeat (and checks its receipts' age).
const LINK_HEARTBEAT: Duration = Duration::from_millis(250);
/// How long a link connect may take before it is retried.
const LINK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between link connection attempts: doubles from the first to the last.
const LINK_BACKOFF_MIN: Duration = Duration::from_millis(50);
const LINK_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Frames waiting for one link's socket at most, before a forwarded publish. Past it, forwarded
/// publishes to that peer are dropped (counted) until the socket drains: a slow peer costs
/// bounded memory. Every other frame is queued regardless (see [`ShardCluster::send`]).
const LINK_OUT_BYTES_MAX: usize = 64 << 20;
/// How long a forwarded publish waits for its receipt before the publisher is answered with a
/// failure (the peer's storage or shards are stuck).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write to a peer may take before its link is closed as stuck.
const LINK_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an incoming link may stay silent (peers send a heartbeat every
/// [`LINK_HEARTBEAT`]) before it is closed as dead.
const LINK_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long what this node sent on a link may stay unacknowledged by the peer's kernel before
/// the link fails (`TCP_USER_TIMEOUT`). A peer cut off by a partition sends no FIN or RST: without
/// this, the link's writes kept succeeding for the ~15 minutes the kernel retransmits, forwarded
/// QoS 1 publishes waited [`RECEIPT_TIMEOUT`] and then failed, and the link came back only when
/// a retransmission got through after the cut healed. The incoming side notices the same
/// silence after [`LINK_READ_TIMEOUT`]; this makes the outgoing side as quick.
const LINK_USER_TIMEOUT: Duration = LINK_READ_TIMEOUT;
/// Claims of stored sessions in flight at most while a shard claims them again under a new lease
/// (about one full etcd transaction).
const RECLAIM_CLAIMS_IN_FLIGHT: usize = 128;
/// How often such a claim is tried when it times out or the node is fenced meanwhile (it serves
/// again under the same lease, which brings no second re-claim), and the pause before the
/// second try, doubling to the last.
const RECLAIM_ATTEMPTS_MAX: u32 = 10;
const RECLAIM_RETRY: Duration = Duration::from_millis(500);
const RECLAIM_RETRY_MAX: Duration = Duration::from_secs(8);
/// How often a failing link is logged at most.
const LINK_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How many nodes keep a large retained message in full: the first ones of its topic on the
/// HRW ring. Two, so that one node lost or restarting leaves a copy to fetch.
const RETAINED_COPIES: usize = 2;
/// Topics per `RetainedIndex` frame at most (topics are up to 64 KiB, usually under 100 bytes).
const RETAINED_INDEX_CHUNK: usize = 512;
/// How long a subscribe's fetch of a large retained message waits for one holder before it
/// asks the next.
const RETAINED_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

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
    registry: Mutex<Registry>,
    /// The number of the next link connection any shard makes: larger than every number this
    /// node's previous runs gave, since it starts from the wall clock.
    next_link: AtomicU64,
    /// TLS on node links (`None`: plaintext links, as configured).
    pub link_tls: Option<Arc<LinkCertificates>>,
    pub link_stats: LinkStats,
    /// The clock that versions this node's retained writes, shared by its shards.
    pub retained_clock: shardmq_shard::RetainedClock,
}

#[derive(Default)]
struct Registry {
    by_name: HashMap<NodeId, PeerNode>,
    names: Vec<NodeId>,
    /// Each peer's shard count, from the hello of its last link admitted here.
    shards: HashMap<PeerNode, u16>,
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
        }
    }

    /// A number for a new link connection, larger than any given before.
    fn next_link(&self) -> LinkNumber {
        LinkNumber(self.next_link.fetch_add(1, Ordering::Relaxed))
    }

    /// How this node names `node` to its shards.
    fn shard_node(&self, node: &NodeId) -> Node {
        if *node == self.node {
            Node::Here
        } else {
            Node::Peer(self.peer(node))
        }
    }

    /// The id of a node named by a shard.
    fn node_id(&self, node: Node) -> Option<NodeId> {
        match node {
            Node::Here => Some(self.node.clone()),
            Node::Peer(peer) => self.name(peer),
        }
    }

    /// The number of peer `node` on this node (the same on every shard, never reused).
    fn peer(&self, node: &NodeId) -> PeerNode {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&peer) = registry.by_name.get(node) {
            return peer;
        }
        let peer = PeerNode(u16::try_from(registry.names.len()).unwrap_or(u16::MAX));
        registry.names.push(node.clone());
        registry.by_name.insert(node.clone(), peer);
        peer
    }

    fn name(&self, peer: PeerNode) -> Option<NodeId> {
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.names.get(usize::from(peer.0)).cloned()
    }

    /// A link of `peer` said hello with its shard count.
    fn learn_shards(&self, peer: PeerNode, shards: u16) {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.shards.insert(peer, shards);
    }

    /// `peer`'s shard count, once one of its links said hello here.
    fn peer_shards(&self, peer: PeerNode) -> Option<u16> {
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
    clock: WallClock,
    links: RefCell<HashMap<PeerNode, Rc<OutLink>>>,
    takeovers: RefCell<HashMap<u64, Rc<Takeover>>>,
    /// Sessions handed over to peers, by client id, until each new owner confirms.
    parked: RefCell<HashMap<String, Parked>>,
    /// The live nodes (this one included), for the holders of large retained messages.
    ring: Rc<RefCell<Ring>>,
    /// Fetches of large retained messages the shard asked for, not started yet.
    fetch_queue: RefCell<Vec<(u64, ByteString, Vec<PeerNode>)>>,
    fetch_signal: Signal,
    /// Retained fetches waiting for a holder's answer, by request number: the message and its
    /// version.
    fetches: RefCell<HashMap<u64, Rc<Awaited<Fetched>>>>,
    /// Large retained messages this node became a holder of, to pull one at a time.
    pull_queue: RefCell<retained::PullQueue>,
    pull_signal: Signal,
    next_request: Cell<u64>,
    encoder: RefCell<Encoder>,
    /// Forwards dropped because the peer's link was down or full (QoS 0), for the logs.
    dropped: Cell<u64>,
    /// Accepted links still being authenticated (at most [`LINK_UNAUTHENTICATED_MAX`]).
    unauthenticated: Cell<usize>,
}

/// One outgoing link of this shard: frames queue in `out` while it is up.
struct OutLink {
    member: RefCell<Member>,
    out: RefCell<BytesMut>,
    signal: Signal,
    up: Cell<bool>,
    /// The peer left the cluster (or restarted with a new lease): the task ends.
    retired: Cell<bool>,
    version: Cell<u64>,
    /// Receipt tokens this shard waits for from the peer, with when they were sent.
    receipts: RefCell<HashMap<u64, Instant>>,
    /// When this connection last sent its retained digest (`None`: not yet, or asked again).
    digest_sent: Cell<Option<Instant>>,
    /// This connection's first digest went (it asks the peer's shards for theirs back).
    digest_asked_back: Cell<bool>,
    /// Retained topics whose last write the peer lacks, to send as the link drains.
    pushes: RefCell<std::collections::VecDeque<ByteString>>,
}

/// A holder's answer to a retained fetch: the message and its version, or none.
type Fetched = Option<(SharedMessage, u64)>;

/// A takeover this shard asked a peer for, and how the peer answered.
struct Takeover {
    client_id: String,
    answer: Awaited<TakeoverAnswer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TakeoverAnswer {
    /// The peer stopped serving the client; its session (if it had one) is installed here.
    Installed,
    /// The peer's transfer could not be read: it keeps its copy.
    Unreadable,
    /// The peer handed the client to a third node that has not confirmed yet: ask again.
    Busy,
    /// The session there belongs to another user: nothing was handed over.
    OtherUser,
}

/// How long a connect waits before claiming again after a [`TakeoverAnswer::Busy`].
const TAKEOVER_RETRY: Duration = Duration::from_millis(50);

/// A session this shard handed over, kept until the new owner says it installed it.
struct Parked {
    peer: PeerNode,
    request: u64,
    session: Restored,
}

/// An answer a task waits for, set by whoever reads it from a link.
struct Awaited<T> {
    value: RefCell<Option<T>>,
    signal: Signal,
}

impl<T> Awaited<T> {
    fn new() -> Awaited<T> {
        Awaited { value: RefCell::new(None), signal: Signal::default() }
    }

    fn set(&self, value: T) {
        *self.value.borrow_mut() = Some(value);
        self.signal.notify();
    }

    /// The answer, or `None` when it has not come by `deadline`.
    async fn until(&self, deadline: Instant) -> Option<T> {
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

/// Chooses the holders of large retained messages: the first [`RETAINED_COPIES`] nodes of the
/// topic on the HRW ring of live nodes, the same on every node that sees the same members.
#[derive(Debug)]
struct RingPlacement {
    node: Arc<NodeCluster>,
    ring: Rc<RefCell<Ring>>,
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
    Receipt { peer: PeerNode, token: u64, ok: bool },
    /// A peer takes over a client homed on this shard.
    Takeover { peer: PeerNode, request: Box<TakeoverRequest> },
    /// A peer answered this shard's takeover request.
    Transfer(Box<SessionTransfer>),
    /// A peer fetches a retained message of this shard's partition.
    Fetch { peer: PeerNode, fetch: Box<RetainedFetch> },
    /// A peer answered this shard's retained fetch.
    Fetched(Box<RetainedFetched>),
    /// A peer node's subscriber paused or released this shard's connection `conn`.
    Pace { conn: ConnId, pause: bool },
    /// A peer installed a session this shard handed over.
    Installed(Box<TransferInstalled>),
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
    pub fn new(node: Arc<NodeCluster>, clock: WallClock) -> ShardCluster {
        ShardCluster {
            node,
            clock,
            links: RefCell::new(HashMap::new()),
            takeovers: RefCell::new(HashMap::new()),
            parked: RefCell::new(HashMap::new()),
            ring: Rc::new(RefCell::new(Ring::default())),
            fetch_queue: RefCell::new(Vec::new()),
            fetch_signal: Signal::default(),
            fetches: RefCell::new(HashMap::new()),
            pull_queue: RefCell::new(retained::PullQueue::new()),
            pull_signal: Signal::default(),
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

    fn next_request(&self) -> u64 {
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
    fn send(&self, peer: PeerNode, body: Body) -> bool {
        let links = self.links.borrow();
        let Some(link) = links.get(&peer).filter(|link| link.up.get()) else { return false };
        self.encoder.borrow_mut().encode(body, &mut link.out.borrow_mut());
        link.signal.notify();
        true
    }

    /// Whether the link to `peer` has room for a forwarded publish ([`LINK_OUT_BYTES_MAX`]).
    fn has_room(&self, peer: PeerNode) -> bool {
        self.links
            .borrow()
            .get(&peer)
            .is_some_and(|link| link.out.borrow().len() <= LINK_OUT_BYTES_MAX)
    }

    /// Carries out a shard effect meant for a peer. Returns the receipt to answer at once when
    /// the publish could not be sent.
    pub fn forward(&self, shard: ShardId, peer: PeerNode, forward: Forward) -> Option<(u64, bool)> {
        match forward {
            Forward::Publish { message, receipt, deliver, shared, holders, publisher, version } => {
                let (shared_filter, shared_group) = match shared {
                    Some((filter, group)) => (Some(filter.to_string()), Some(group.to_string())),
                    None => (None, None),
                };
                let retained_holders = holders.map(|holders| {
                    holders
                        .into_iter()
                        .filter_map(|node| self.node.node_id(node))
                        .map(|node| node.to_string())
                        .collect()
                });
                let body = Body::Publish(Box::new(Publish {
                    message: encode_stored_message(&message, &self.clock),
                    receipt: receipt.unwrap_or(0),
                    reply_shard: shard.0,
                    deliver,
                    shared_filter,
                    shared_group,
                    retained_holders,
                    publisher: publisher.map(|conn| conn.0),
                    retained_version: version,
                }));
                if !self.has_room(peer) || !self.send(peer, body) {
                    // The peer's link is down (the node is gone or restarting) or full: its
                    // subscribers miss this message. The publisher is not failed for it: a
                    // node that cannot be reached would otherwise stop every QoS 1 publish
                    // to topics it had subscribers for (see docs/cluster.md).
                    self.dropped.set(self.dropped.get() + 1);
                    return receipt.map(|token| (token, true));
                }
                if let Some(token) = receipt {
                    if let Some(link) = self.links.borrow().get(&peer) {
                        link.receipts.borrow_mut().insert(token, Instant::now());
                    }
                }
                None
            }
            Forward::Receipt { token, shard, ok } => {
                let body = Body::Receipt(Box::new(Receipt { token, shard: shard.0, ok }));
                // Lost with the link: the peer's own timeout answers its publisher.
                self.send(peer, body);
                None
            }
            Forward::Pace { shard, conn, pause } => {
                let body = Body::Pace(Box::new(Pace { shard: shard.0, conn: conn.0, pause }));
                // Never dropped while the link is up (a resume must follow its pause); lost
                // with the link, the peer lets the pause lapse.
                self.send(peer, body);
                None
            }
        }
    }

    /// This shard's routes changed: one delta on every link that is up (a link that is down
    /// starts again from a snapshot). Never dropped while the link is up: the peer applies a
    /// delta only as the next of its connection's.
    pub fn routes_changed(&self, added: &[PeerRoute], removed: &[PeerRoute]) {
        let peers: Vec<PeerNode> = self.links.borrow().keys().copied().collect();
        for peer in peers {
            let version = match self.links.borrow().get(&peer) {
                Some(link) if link.up.get() => {
                    link.version.set(link.version.get() + 1);
                    link.version.get()
                }
                _ => continue,
            };
            let body = Body::RouteDelta(Box::new(RouteDelta {
                version,
                added: Some(added.iter().map(wire_route).collect()),
                removed: Some(removed.iter().map(wire_route).collect()),
            }));
            self.send(peer, body);
        }
    }

    /// A receipt for a publish this shard forwarded to `peer`.
    fn receipt(&self, context: &ShardContext, peer: PeerNode, token: u64, ok: bool) {
        let waited = self
            .links
            .borrow()
            .get(&peer)
            .is_some_and(|link| link.receipts.borrow_mut().remove(&token).is_some());
        if waited {
            context.state.borrow_mut().peer_receipt(token, ok, Instant::now());
            context.apply_effects();
        }
    }
}

fn wire_route(route: &PeerRoute) -> Route {
    Route { filter: route.filter.to_string(), group: route.group.as_ref().map(|g| g.to_string()) }
}

fn shard_route(route: Route) -> PeerRoute {
    PeerRoute {
        filter: ByteString::from(route.filter),
        group: route.group.filter(|g| !g.is_empty()).map(ByteString::from),
    }
}

// -------------------------------------------------------------------------------------------
// Membership
// -------------------------------------------------------------------------------------------

/// Follows the control plane's events on this shard: membership (links to start and stop) and
/// fencing.
pub async fn control_events(
    context: Rc<ShardContext>,
    events: async_channel::Receiver<ControlEvent>,
) {
    while let Ok(event) = events.recv().await {
        let Some(cluster) = context.cluster.clone() else { return };
        match event {
            ControlEvent::Members(members) => members_changed(&context, &cluster, &members),
            ControlEvent::Fenced => {
                tracing::warn!(
                    shard = %context.id,
                    "this node could not show its etcd lease alive in time: disconnecting its \
                     clients until a keepalive is answered (or a new lease granted)"
                );
                context.state.borrow_mut().fence(Instant::now());
                context.apply_effects();
            }
            ControlEvent::Serving { new_lease: false } => {
                tracing::info!(shard = %context.id, "serving again under the same etcd lease");
            }
            ControlEvent::Serving { new_lease: true } => {
                tracing::info!(shard = %context.id, "serving under a new etcd lease");
                runtime::spawn_local(reclaim_sessions(context.clone(), cluster));
            }
        }
    }
}

/// The node holds a new lease (at start, or after etcd dropped its lease): the etcd keys that named it owner of
/// its stored sessions went with the old lease. Claims every session stored offline on this
/// shard again, so that a client reconnecting to another node is taken over from here with its
/// session (and the messages queued for it) instead of starting anew there. A key another node
/// holds now means that node took the client meanwhile and has the newer session: it is left
/// alone, and the copy here is replaced if the client ever returns via a takeover.
async fn reclaim_sessions(context: Rc<ShardContext>, cluster: Rc<ShardCluster>) {
    let client_ids = context.state.borrow().offline_session_ids();
    if client_ids.is_empty() {
        return;
    }
    // A bounded number of claims in flight, as permits in a channel.
    let (permits, returned) = async_channel::bounded::<()>(RECLAIM_CLAIMS_IN_FLIGHT);
    let left = Rc::new(Cell::new(client_ids.len()));
    let elsewhere = Rc::new(Cell::new(0_usize));
    let total = client_ids.len();
    for client_id in client_ids {
        if permits.send(()).await.is_err() {
            return;
        }
        let (cluster, returned) = (cluster.clone(), returned.clone());
        let (left, elsewhere, shard) = (left.clone(), elsewhere.clone(), context.id);
        runtime::spawn_local(async move {
            // In the background: connects go first, and a slow etcd is waited for rather than
            // refused. A claim that timed out all the same is tried again: given up, its session
            // could not follow its client.
            let mut attempts = 1;
            let mut pause = RECLAIM_RETRY;
            let mut outcome = cluster.node.control.reclaim(&client_id).await;
            while matches!(outcome, ClaimOutcome::Unavailable | ClaimOutcome::Fenced)
                && attempts < RECLAIM_ATTEMPTS_MAX
            {
                runtime::sleep(pause).await;
                pause = (pause * 2).min(RECLAIM_RETRY_MAX);
                attempts += 1;
                outcome = cluster.node.control.reclaim(&client_id).await;
            }
            if !matches!(outcome, ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned) {
                elsewhere.set(elsewhere.get() + 1);
            }
            let _ = returned.recv().await;
            left.set(left.get() - 1);
            if left.get() == 0 {
                tracing::info!(
                    %shard,
                    "claimed {} of {total} stored sessions again under the new lease \
                     ({} held elsewhere or not claimable now)",
                    total - elsewhere.get(),
                    elsewhere.get()
                );
            }
        });
    }
}

fn members_changed(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>, members: &[Member]) {
    *cluster.ring.borrow_mut() = Ring::from_members(members);
    let mut live = Vec::new();
    for member in members.iter().filter(|m| m.node != cluster.node.node) {
        let peer = cluster.node.peer(&member.node);
        live.push(peer);
        let existing = cluster.links.borrow().get(&peer).cloned();
        match existing {
            Some(link) if *link.member.borrow() == *member => continue,
            Some(link) => {
                // The peer restarted (a new lease) or moved: the link starts again towards it.
                // A new lease also means the old incarnation is gone, with its routes; those
                // its new links already sent stay.
                retire(&link);
                let old_lease = link.member.borrow().lease;
                if old_lease != member.lease {
                    context.state.borrow_mut().peer_gone(peer, PeerLease(old_lease.0));
                }
            }
            None => {}
        }
        let link = Rc::new(OutLink {
            member: RefCell::new(member.clone()),
            out: RefCell::new(BytesMut::new()),
            signal: Signal::default(),
            up: Cell::new(false),
            retired: Cell::new(false),
            version: Cell::new(0),
            receipts: RefCell::new(HashMap::new()),
            digest_sent: Cell::new(None),
            digest_asked_back: Cell::new(false),
            pushes: RefCell::new(std::collections::VecDeque::new()),
        });
        cluster.links.borrow_mut().insert(peer, link.clone());
        runtime::spawn_local(out_link(context.clone(), cluster.clone(), link));
    }
    let gone: Vec<PeerNode> =
        cluster.links.borrow().keys().filter(|peer| !live.contains(peer)).copied().collect();
    for peer in gone {
        let Some(link) = cluster.links.borrow_mut().remove(&peer) else { continue };
        retire(&link);
        let lease = link.member.borrow().lease;
        let mut state = context.state.borrow_mut();
        state.peer_gone(peer, PeerLease(lease.0));
        state.peer_left(peer);
        drop(state);
        tracing::info!(shard = %context.id, peer = ?cluster.node.name(peer), "peer left the cluster");
    }
    context.state.borrow_mut().set_peers(live);
    context.apply_effects();
}

fn retire(link: &OutLink) {
    link.retired.set(true);
    link.up.set(false);
    link.signal.notify();
}

// -------------------------------------------------------------------------------------------
// Outgoing links
// -------------------------------------------------------------------------------------------

/// Keeps this shard's link to one peer up: connects (with backoff), sends the hello and the
/// route snapshot, then whatever the shard queues, and a heartbeat every [`LINK_HEARTBEAT`].
async fn out_link(context: Rc<ShardContext>, cluster: Rc<ShardCluster>, link: Rc<OutLink>) {
    let mut backoff = LINK_BACKOFF_MIN;
    let mut last_error_log: Option<Instant> = None;
    while !link.retired.get() && !context.stopping.get() {
        let address = link.member.borrow().link;
        let result = match connect_secured(&cluster, address).await {
            Ok((mut stream, mut tls)) => {
                backoff = LINK_BACKOFF_MIN;
                start_link(&context, &cluster, &link);
                let result = pump(&context, &cluster, &link, &mut stream, tls.as_mut()).await;
                stream.close();
                link.up.set(false);
                link.out.borrow_mut().clear();
                // What the peer did not answer is not waited for: those publishers are
                // answered now (see `ShardCluster::forward` for why not with a failure).
                let unanswered: Vec<u64> =
                    link.receipts.borrow_mut().drain().map(|(t, _)| t).collect();
                if !unanswered.is_empty() {
                    let mut state = context.state.borrow_mut();
                    for token in unanswered {
                        state.peer_receipt(token, true, Instant::now());
                    }
                }
                context.apply_effects();
                result
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            let now = Instant::now();
            if !link.retired.get()
                && last_error_log.is_none_or(|at| now - at >= LINK_ERROR_LOG_INTERVAL)
            {
                tracing::warn!(
                    shard = %context.id,
                    peer = %link.member.borrow().node,
                    "node link to {address}: {error}; retrying"
                );
                last_error_log = Some(now);
            }
        }
        if link.retired.get() {
            break;
        }
        runtime::sleep(backoff).await;
        backoff = (backoff * 2).min(LINK_BACKOFF_MAX);
    }
}

/// Connects to a peer's link listener and, with link TLS, completes the handshake (the peer's
/// certificate must chain to the cluster CA, as ours must for the peer).
async fn connect_secured(
    cluster: &ShardCluster,
    address: SocketAddr,
) -> std::io::Result<(TcpStream, Option<LinkTls>)> {
    let mut stream = connect(address).await?;
    let Some(certificates) = &cluster.node.link_tls else { return Ok((stream, None)) };
    let mut tls = certificates.current().connect()?;
    let mut ignored = BytesMut::new();
    let handshake = within(LINK_HANDSHAKE_TIMEOUT, tls.handshake(&mut stream, &mut ignored)).await;
    if let Err(error) = handshake {
        cluster.node.link_stats.handshake_failed();
        stream.close();
        return Err(std::io::Error::new(error.kind(), format!("TLS handshake: {error}")));
    }
    Ok((stream, Some(tls)))
}

/// `future`'s result, or a `TimedOut` error after `timeout`.
async fn within<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    future::or(future, async {
        runtime::sleep(timeout).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))
    })
    .await
}

async fn connect(address: SocketAddr) -> std::io::Result<TcpStream> {
    let connecting = TcpStream::connect_with_user_timeout(address, LINK_USER_TIMEOUT);
    let connected = future::or(async { Some(connecting.await) }, async {
        runtime::sleep(LINK_CONNECT_TIMEOUT).await;
        None
    })
    .await;
    let stream = connected.unwrap_or_else(|| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The link is connected: queue the hello (with a new connection number) and this shard's route
/// snapshot, and mark it up so deltas and publishes follow (all on this thread, so nothing falls
/// between them).
fn start_link(context: &ShardContext, cluster: &ShardCluster, link: &OutLink) {
    let routes = context.state.borrow().route_snapshot();
    let held = context.state.borrow().large_retained_topics();
    let mut out = link.out.borrow_mut();
    out.clear();
    let mut encoder = cluster.encoder.borrow_mut();
    encoder.encode(
        Body::Hello(Box::new(Hello {
            cluster: cluster.node.cluster.clone(),
            node: cluster.node.node.to_string(),
            lease: cluster
                .node
                .control
                .members()
                .iter()
                .find(|member| member.node == cluster.node.node)
                .map_or(0, |member| member.lease.0),
            shard: context.id.0,
            shards: context.shards,
            link: cluster.node.next_link().0,
        })),
        &mut out,
    );
    encoder.encode(
        Body::RouteSnapshot(Box::new(RouteSnapshot {
            routes: Some(routes.iter().map(wire_route).collect()),
        })),
        &mut out,
    );
    // In chunks, so that no frame nears the frame size limit however many there are.
    for chunk in held.chunks(RETAINED_INDEX_CHUNK) {
        let topics = Some(chunk.iter().map(|(topic, _)| topic.to_string()).collect());
        let versions = Some(chunk.iter().map(|(_, version)| *version).collect());
        encoder.encode(Body::RetainedIndex(Box::new(RetainedIndex { topics, versions })), &mut out);
    }
    // The retained catch-up starts afresh on every connection.
    link.digest_sent.set(None);
    link.digest_asked_back.set(false);
    link.pushes.borrow_mut().clear();
    link.version.set(0);
    link.up.set(true);
}

async fn pump(
    context: &ShardContext,
    cluster: &ShardCluster,
    link: &OutLink,
    stream: &mut TcpStream,
    mut tls: Option<&mut LinkTls>,
) -> std::io::Result<()> {
    let mut next_heartbeat = Instant::now();
    let mut sealed = Vec::new();
    let peer = cluster.node.peer(&link.member.borrow().node);
    loop {
        retained::sync_out(context, cluster, link, peer);
        let batch = std::mem::take(&mut *link.out.borrow_mut());
        if !batch.is_empty() {
            let wire: &[u8] = match tls.as_deref_mut() {
                Some(tls) => {
                    sealed.clear();
                    tls.seal(&batch, &mut sealed)?;
                    &sealed
                }
                None => &batch,
            };
            // A peer that stops reading must not hold this link (and the receipts and
            // heartbeats behind it) forever: the link is closed and re-established.
            let written = future::or(async { Some(stream.write_all(wire).await) }, async {
                runtime::sleep(LINK_WRITE_TIMEOUT).await;
                None
            })
            .await;
            written.unwrap_or_else(|| {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "peer stopped reading"))
            })?;
            // Give the (now written) buffer back to keep its capacity.
            let mut out = link.out.borrow_mut();
            if out.is_empty() {
                let mut batch = batch;
                batch.clear();
                *out = batch;
            }
        }
        if link.retired.get() || context.stopping.get() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_heartbeat {
            next_heartbeat = now + LINK_HEARTBEAT;
            let etcd_ok = cluster.node.control.etcd_ok();
            cluster.encoder.borrow_mut().encode(
                Body::Heartbeat(Box::new(Heartbeat { etcd_ok })),
                &mut link.out.borrow_mut(),
            );
            expire_receipts(context, link, now);
            continue;
        }
        if link.out.borrow().is_empty() && link.pushes.borrow().is_empty() {
            let wait = next_heartbeat - now;
            future::or(link.signal.wait(), runtime::sleep(wait)).await;
        }
    }
}

/// Publishers whose peer did not answer within [`RECEIPT_TIMEOUT`] are answered with a failure.
fn expire_receipts(context: &ShardContext, link: &OutLink, now: Instant) {
    let expired: Vec<u64> = link
        .receipts
        .borrow()
        .iter()
        .filter(|(_, sent)| now.duration_since(**sent) >= RECEIPT_TIMEOUT)
        .map(|(token, _)| *token)
        .collect();
    if expired.is_empty() {
        return;
    }
    {
        let mut receipts = link.receipts.borrow_mut();
        let mut state = context.state.borrow_mut();
        for token in expired {
            receipts.remove(&token);
            state.peer_receipt(token, false, now);
        }
    }
    context.apply_effects();
}

// -------------------------------------------------------------------------------------------
// Incoming links
// -------------------------------------------------------------------------------------------

/// Accepts peers' links on this shard's link listener.
pub async fn link_accept_loop(context: Rc<ShardContext>, listener: TcpListener) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            context.stop_signal.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => runtime::spawn_local(in_link(context.clone(), stream)),
            Some(Err(error)) => {
                tracing::warn!(shard = %context.id, "link accept failed: {error}");
                runtime::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Who is at the other end of an incoming link (from its hello).
struct LinkPeer {
    peer: PeerNode,
    node: NodeId,
    origin: ShardId,
    /// How many shards the peer has.
    shards: u16,
    /// The peer's incarnation and this connection's number: what its route frames are tagged
    /// with.
    epoch: LinkEpoch,
}

/// A hello larger than this is refused before it is decoded (a real one is under 200 bytes).
const HELLO_BYTES_MAX: usize = 64 << 10;

/// Admits an accepted link (within [`LINK_HANDSHAKE_TIMEOUT`], at most
/// [`LINK_UNAUTHENTICATED_MAX`] at once on this shard), then reads its frames until it closes
/// or sends something that is not a frame.
async fn in_link(context: Rc<ShardContext>, stream: Connection) {
    let Some(cluster) = context.cluster.clone() else { return };
    let peer = stream.peer_addr().ok();
    let stats = &cluster.node.link_stats;
    if cluster.unauthenticated.get() >= LINK_UNAUTHENTICATED_MAX {
        let why = format!("{LINK_UNAUTHENTICATED_MAX} links are being authenticated already");
        stats.refuse(Refusal::Crowded, peer, why);
        return;
    }
    cluster.unauthenticated.set(cluster.unauthenticated.get() + 1);
    let admitted = future::or(async { Some(admit(&context, &cluster, stream).await) }, async {
        runtime::sleep(LINK_HANDSHAKE_TIMEOUT).await;
        None
    })
    .await;
    cluster.unauthenticated.set(cluster.unauthenticated.get() - 1);
    match admitted {
        Some(Ok(Some(admitted))) => serve_link(&context, &cluster, admitted).await,
        Some(Ok(None)) => {}
        Some(Err((refusal, why))) => stats.refuse(refusal, peer, why),
        None => {
            let why = format!("no TLS handshake and hello within {LINK_HANDSHAKE_TIMEOUT:?}");
            stats.refuse(Refusal::Timeout, peer, why);
        }
    }
}

/// An accepted link let in: its stream and TLS, who it is, and what was read past the hello.
struct Admitted {
    stream: Connection,
    tls: Option<LinkTls>,
    from: LinkPeer,
    buf: BytesMut,
}

/// The TLS handshake (with link TLS) and the hello: a link is let in when its hello names a
/// live incarnation of a peer of this cluster and, with link TLS, its certificate names that
/// same node. `Ok(None)`: it closed, or names an incarnation this node has not heard of yet (it
/// retries).
async fn admit(
    context: &ShardContext,
    cluster: &ShardCluster,
    mut stream: Connection,
) -> Result<Option<Admitted>, (Refusal, String)> {
    let mut buf = BytesMut::new();
    let mut tls = match &cluster.node.link_tls {
        None => None,
        Some(certificates) => {
            let tls_refusal = |error: std::io::Error| (Refusal::Tls, error.to_string());
            let mut tls = certificates.current().accept().map_err(tls_refusal)?;
            tls.handshake(&mut stream, &mut buf).await.map_err(tls_refusal)?;
            Some(tls)
        }
    };
    let mut raw = BytesMut::new();
    loop {
        match frame::decode(&mut buf) {
            Ok(Some(Body::Hello(hello))) => {
                let Some(from) = check_hello(context, cluster, &hello, tls.as_ref())? else {
                    return Ok(None);
                };
                return Ok(Some(Admitted { stream, tls, from, buf }));
            }
            Ok(Some(_)) => {
                return Err((Refusal::Frame, "it sent something before its hello".into()))
            }
            Ok(None) if buf.len() > HELLO_BYTES_MAX => {
                return Err((Refusal::Frame, format!("its hello is over {HELLO_BYTES_MAX} bytes")))
            }
            Ok(None) => {}
            Err(error) => return Err((Refusal::Frame, error.to_string())),
        }
        match read_link(&mut stream, tls.as_mut(), &mut raw, &mut buf).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err((Refusal::Tls, error.to_string()))
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Whether a hello lets its link in (see [`admit`]).
fn check_hello(
    context: &ShardContext,
    cluster: &ShardCluster,
    hello: &Hello,
    tls: Option<&LinkTls>,
) -> Result<Option<LinkPeer>, (Refusal, String)> {
    if hello.cluster != cluster.node.cluster || *hello.node == *cluster.node.node.0 {
        let why = format!("it is node {:?} of cluster {:?}", hello.node, hello.cluster);
        return Err((Refusal::Cluster, why));
    }
    if let Some(tls) = tls {
        let named = tls.peer_common_name();
        if named.as_deref() != Some(&*hello.node) {
            let why =
                format!("its certificate is for {named:?}, its hello names node {:?}", hello.node);
            return Err((Refusal::Identity, why));
        }
    }
    let node = NodeId::new(&hello.node);
    let peer = cluster.node.peer(&node);
    if hello.shards == 0 {
        return Err((Refusal::Frame, "its hello says it has no shards".into()));
    }
    let lease = PeerLease(hello.lease);
    if context.state.borrow().is_peer_lease_gone(peer, lease) {
        // The peer has not learnt of its new lease yet: it retries, and is served once its
        // hello names it.
        tracing::debug!(
            shard = %context.id,
            peer = %node,
            lease = lease.0,
            "refusing a node link of a gone incarnation of its node"
        );
        return Ok(None);
    }
    cluster.node.learn_shards(peer, hello.shards);
    Ok(Some(LinkPeer {
        peer,
        node,
        origin: ShardId(hello.shard),
        shards: hello.shards,
        epoch: LinkEpoch { lease, link: LinkNumber(hello.link) },
    }))
}

/// Reads what arrives on a link into `buf`, through its TLS if it has it (`raw` holds the
/// records): false at the end of the stream. A bad TLS record is an `InvalidData` error.
async fn read_link(
    stream: &mut Connection,
    tls: Option<&mut LinkTls>,
    raw: &mut BytesMut,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    let Some(tls) = tls else { return Ok(stream.read_some(buf).await? > 0) };
    raw.clear();
    if stream.read_some(raw).await? == 0 {
        return Ok(false);
    }
    tls.open(raw, buf)?;
    Ok(true)
}

/// Reads an admitted link's frames until it closes or sends something that is not a frame.
async fn serve_link(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>, admitted: Admitted) {
    let Admitted { mut stream, mut tls, from, mut buf } = admitted;
    let mut raw = BytesMut::new();
    loop {
        loop {
            let body = match frame::decode(&mut buf) {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(shard = %context.id, peer = %from.node, "closing a node link: {error}");
                    return;
                }
            };
            if let Body::Hello(_) = body {
                return;
            }
            handle_frame(context, cluster, &from, body);
        }
        context.apply_effects();
        if buf.is_empty() {
            buf = BytesMut::new();
        }
        runtime::yield_if_needed().await;
        let read = future::or(
            async { Some(read_link(&mut stream, tls.as_mut(), &mut raw, &mut buf).await) },
            async {
                runtime::sleep(LINK_READ_TIMEOUT).await;
                None
            },
        )
        .await;
        match read {
            Some(Ok(true)) => {}
            Some(Ok(false)) => return,
            Some(Err(error)) => {
                if error.kind() == std::io::ErrorKind::InvalidData {
                    tracing::warn!(shard = %context.id, peer = %from.node, "closing a node link: {error}");
                }
                return;
            }
            None => {
                tracing::warn!(shard = %context.id, "closing a node link silent for {LINK_READ_TIMEOUT:?}");
                return;
            }
        }
        // The membership says this incarnation of the peer is gone, yet its link is open (the
        // peer was paused, or fenced and registered again): its frames would be ignored from
        // now on, so the link is closed and the peer reconnects with a hello naming its current
        // lease, and a snapshot.
        if context.state.borrow().is_peer_lease_gone(from.peer, from.epoch.lease) {
            tracing::info!(
                shard = %context.id,
                peer = %from.node,
                lease = from.epoch.lease.0,
                "closing a node link of a gone incarnation of its node"
            );
            return;
        }
    }
}

fn handle_frame(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: &LinkPeer,
    body: Body,
) {
    let now = Instant::now();
    match body {
        Body::Hello(_) => {}
        Body::RouteSnapshot(snapshot) => {
            let routes = snapshot.routes.unwrap_or_default().into_iter().map(shard_route).collect();
            let frame = RouteFrame::Snapshot { shards: from.shards, routes };
            context.state.borrow_mut().peer_routes_from_link(
                from.peer,
                from.origin,
                from.epoch,
                frame,
            );
        }
        Body::RouteDelta(delta) => {
            let added = delta.added.unwrap_or_default().into_iter().map(shard_route).collect();
            let removed = delta.removed.unwrap_or_default().into_iter().map(shard_route).collect();
            let frame = RouteFrame::Delta { version: delta.version, added, removed };
            context.state.borrow_mut().peer_routes_from_link(
                from.peer,
                from.origin,
                from.epoch,
                frame,
            );
        }
        Body::Publish(publish) => publish_arrived(context, cluster, from, *publish, now),
        Body::Pace(pace) => {
            let shard = ShardId(pace.shard);
            if shard == context.id {
                context.state.borrow_mut().peer_pace(ConnId(pace.conn), pace.pause, now);
            } else if shard.0 < context.shards {
                let item = ClusterItem::Pace { conn: ConnId(pace.conn), pause: pace.pause };
                context.to_peer(shard, MeshItem::Cluster(item));
            }
        }
        Body::Receipt(receipt) => {
            let shard = ShardId(receipt.shard);
            if shard == context.id {
                cluster.receipt(context, from.peer, receipt.token, receipt.ok);
            } else if shard.0 < context.shards {
                let item =
                    ClusterItem::Receipt { peer: from.peer, token: receipt.token, ok: receipt.ok };
                context.to_peer(shard, MeshItem::Cluster(item));
            }
        }
        Body::TakeoverRequest(request) => {
            let home = home_shard(&request.client_id, context.shards);
            if home == context.id {
                hand_over(context, cluster, from.peer, &request);
            } else {
                context.to_peer(
                    home,
                    MeshItem::Cluster(ClusterItem::Takeover { peer: from.peer, request }),
                );
            }
        }
        Body::SessionTransfer(transfer) => {
            let shard = ShardId(transfer.shard);
            if shard == context.id {
                transfer_arrived(context, cluster, *transfer);
            } else if shard.0 < context.shards {
                context.to_peer(shard, MeshItem::Cluster(ClusterItem::Transfer(transfer)));
            }
        }
        Body::Heartbeat(heartbeat) => {
            cluster.node.control.peer_report(&from.node, heartbeat.etcd_ok);
        }
        Body::RetainedIndex(_)
        | Body::RetainedFetch(_)
        | Body::RetainedFetched(_)
        | Body::RetainedDigest(_)
        | Body::RetainedVersions(_) => retained::frame_arrived(context, cluster, from, body),
        Body::TransferInstalled(installed) => {
            let home = home_shard(&installed.client_id, context.shards);
            if home == context.id {
                unpark(cluster, &installed);
            } else {
                context.to_peer(home, MeshItem::Cluster(ClusterItem::Installed(installed)));
            }
        }
    }
}

/// A publish a peer forwarded: refused while fenced, else handed to the shard, which paces the
/// peer's publisher by the subscribers it congests here.
fn publish_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: &LinkPeer,
    publish: Publish,
    now: Instant,
) {
    let receipt = (publish.receipt != 0).then_some(publish.receipt);
    let reply_shard = ShardId(publish.reply_shard);
    if !cluster.node.fence.may_serve(now) {
        // A fenced node serves no one: the message is refused, not delivered.
        if let Some(token) = receipt {
            let forward = Forward::Receipt { token, shard: reply_shard, ok: false };
            cluster.forward(context.id, from.peer, forward);
        }
        return;
    }
    let message = match decode_stored_message(&publish.message, &cluster.clock) {
        Ok(message) => Arc::new(message),
        Err(error) => {
            tracing::warn!(shard = %context.id, peer = %from.node, "bad forwarded message: {error}");
            return;
        }
    };
    let shared = match (publish.shared_filter, publish.shared_group) {
        (Some(filter), Some(group)) => Some((ByteString::from(filter), ByteString::from(group))),
        _ => None,
    };
    let holders = publish.retained_holders.map(|names| {
        names.iter().map(|name| cluster.node.shard_node(&NodeId::new(name))).collect()
    });
    context.state.borrow_mut().peer_publish(
        from.peer,
        reply_shard,
        message,
        receipt,
        publish.deliver,
        shared,
        holders,
        publish.publisher.map(ConnId),
        publish.retained_version,
        now,
    );
}

/// A link message another shard of this node passed here.
pub fn cluster_item(context: &Rc<ShardContext>, item: ClusterItem) {
    let Some(cluster) = context.cluster.clone() else { return };
    match item {
        ClusterItem::Receipt { peer, token, ok } => cluster.receipt(context, peer, token, ok),
        ClusterItem::Takeover { peer, request } => hand_over(context, &cluster, peer, &request),
        ClusterItem::Transfer(transfer) => transfer_arrived(context, &cluster, *transfer),
        ClusterItem::Fetch { peer, fetch } => {
            retained::answer_fetch(context, &cluster, peer, &fetch)
        }
        ClusterItem::Fetched(fetched) => retained::fetched_arrived(&cluster, *fetched),
        ClusterItem::Installed(installed) => unpark(&cluster, &installed),
        ClusterItem::Pace { conn, pause } => {
            context.state.borrow_mut().peer_pace(conn, pause, Instant::now());
            context.apply_effects();
        }
        item @ ClusterItem::RetainedDigest { .. } => {
            retained::compare_digest(context, &cluster, item)
        }
        item @ ClusterItem::RetainedVersions { .. } => {
            retained::versions_arrived(context, &cluster, item)
        }
    }
}

// -------------------------------------------------------------------------------------------
// Claims and takeover
// -------------------------------------------------------------------------------------------

/// Claims `client_id` for this node before its CONNECT is answered: `Ok` when this node owns
/// it now (taking it over from the peer that served it, session included, if needed), else why
/// the connect is refused.
pub async fn claim(
    context: &Rc<ShardContext>,
    client_id: &str,
    clean_start: bool,
    username: Option<&str>,
) -> Result<(), ConnectRefusal> {
    let Some(cluster) = context.cluster.clone() else { return Ok(()) };
    let deadline = Instant::now() + cluster.node.claim_timeout;
    loop {
        let (owner, revision) = match cluster.node.control.claim(client_id).await {
            ClaimOutcome::AlreadyOwned | ClaimOutcome::Claimed => return Ok(()),
            ClaimOutcome::HeldBy { owner, revision } => (owner, revision),
            ClaimOutcome::Busy => return Err(ConnectRefusal::EtcdBusy),
            ClaimOutcome::Unavailable => return Err(ConnectRefusal::EtcdUnavailable),
            ClaimOutcome::Fenced => return Err(ConnectRefusal::Fenced),
        };
        let asked = Ask { client_id, clean_start, username };
        let taken = take_over(context, &cluster, asked, &owner, revision, deadline).await;
        match taken {
            Some(Ok(true)) => return Ok(()),
            Some(Ok(false)) => return Err(ConnectRefusal::EtcdUnavailable),
            Some(Err(refusal)) => return Err(refusal),
            // The owner is handing the client to another node: claim again once it has.
            None if Instant::now() + TAKEOVER_RETRY < deadline => {
                runtime::sleep(TAKEOVER_RETRY).await
            }
            None => return Err(ConnectRefusal::EtcdUnavailable),
        }
    }
}

/// What a connect asks of the node that serves its client id.
#[derive(Clone, Copy)]
struct Ask<'a> {
    client_id: &'a str,
    clean_start: bool,
    username: Option<&'a str>,
}

/// Asks `owner` to stop serving `client_id` and send its session, installs the session here,
/// then claims the id from it in etcd (the owner has stopped serving before the claim commits).
/// Whether this node owns the client now; `None` when the owner answered "busy"; a refusal
/// when the session there belongs to another user.
async fn take_over(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    asked: Ask<'_>,
    owner: &NodeId,
    revision: Revision,
    deadline: Instant,
) -> Option<Result<bool, ConnectRefusal>> {
    let Ask { client_id, clean_start, username } = asked;
    let peer = cluster.node.peer(owner);
    let request = cluster.next_request();
    let takeover = Rc::new(Takeover { client_id: client_id.to_string(), answer: Awaited::new() });
    cluster.takeovers.borrow_mut().insert(request, takeover.clone());
    let sent = cluster.send(
        peer,
        Body::TakeoverRequest(Box::new(TakeoverRequest {
            client_id: client_id.to_string(),
            request,
            reply_shard: context.id.0,
            clean_start,
            username: username.map(str::to_string),
        })),
    );
    let answer = match sent {
        true => takeover.answer.until(deadline).await,
        false => None,
    };
    cluster.takeovers.borrow_mut().remove(&request);
    match answer {
        Some(TakeoverAnswer::Installed) => {}
        Some(TakeoverAnswer::Unreadable) => return Some(Ok(false)),
        Some(TakeoverAnswer::Busy) => return None,
        Some(TakeoverAnswer::OtherUser) => return Some(Err(ConnectRefusal::SessionOfAnotherUser)),
        None => {
            tracing::warn!(
                shard = %context.id,
                "cannot take client {client_id:?} over from {owner}: no answer over the node link"
            );
            return Some(Ok(false));
        }
    }
    // When this claim fails, the session installed here stays (offline): the claim may still
    // have committed, and whoever takes the client over next asks the key's owner for it.
    let owned = matches!(
        cluster.node.control.claim_after_release(client_id, revision).await,
        ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned
    );
    if owned {
        let installed = TransferInstalled { client_id: client_id.to_string(), request };
        cluster.send(peer, Body::TransferInstalled(Box::new(installed)));
    }
    Some(Ok(owned))
}

/// A peer takes over a client homed on this shard: its connection here is closed, its session
/// goes to the peer, and this node stops counting it as owned.
fn hand_over(
    context: &Rc<ShardContext>,
    cluster: &ShardCluster,
    peer: PeerNode,
    request: &TakeoverRequest,
) {
    let username = request.username.as_deref();
    // The session here, or the copy parked for a peer that has not confirmed it yet.
    let parked_owner = cluster.parked.borrow().get(&request.client_id).and_then(|parked| {
        parked.session.sessions.first().map(|(_, record)| record.username.clone())
    });
    let foreign = {
        let state = context.state.borrow();
        state.belongs_to_another_user(&request.client_id, username)
            || parked_owner.is_some_and(|owner| state.is_another_user(owner.as_deref(), username))
    };
    if foreign {
        // A session of another user stays where it is, and its client stays connected.
        context.state.borrow_mut().connect_refused(ConnectRefusal::SessionOfAnotherUser);
        tracing::warn!(
            shard = %context.id,
            user = ?username,
            "refused a takeover from {peer}: client id {:?} has a session of another user",
            request.client_id
        );
        let mut refused = transfer_frame(cluster, request, None, false);
        refused.other_user = true;
        cluster.send(peer, Body::SessionTransfer(Box::new(refused)));
        return;
    }
    let parked_for = cluster.parked.borrow().get(&request.client_id).map(|p| p.peer);
    let restored = match parked_for {
        // Handed to a third node that has not confirmed: "no session here" would let this
        // peer claim the client without it. It asks again; by then the third node owns the
        // client (and is asked instead), or the copy is back here.
        Some(to) if to != peer => {
            let busy = transfer_frame(cluster, request, None, true);
            cluster.send(peer, Body::SessionTransfer(Box::new(busy)));
            return;
        }
        // The same peer asks again (its claim failed, or it never got the transfer): it gets
        // the same copy again.
        Some(_) => cluster.parked.borrow_mut().remove(&request.client_id).map(|p| p.session),
        None => {
            let restored = context.state.borrow_mut().hand_over(
                &request.client_id,
                request.clean_start,
                Instant::now(),
            );
            context.apply_effects();
            cluster.node.control.handed_over(&request.client_id);
            restored
        }
    };
    let transfer = transfer_frame(cluster, request, restored.as_ref(), false);
    if !cluster.send(peer, Body::SessionTransfer(Box::new(transfer))) {
        // The session would be lost with the frame: it stays here (offline) instead, and the
        // requester, getting no answer, refuses its connect.
        tracing::warn!(
            shard = %context.id,
            "cannot hand client {:?} over: the link to its new node is down; keeping its session",
            request.client_id
        );
        if let Some(restored) = restored {
            context.state.borrow_mut().adopt_session(restored, Instant::now());
            context.apply_effects();
        }
        return;
    }
    // The frame (or the link) may still be lost, or the peer may fail to claim the client: a
    // copy stays here until the peer says it installed the session and owns the client.
    let Some(session) = restored else { return };
    let client_id = request.client_id.clone();
    let parked = Parked { peer, request: request.request, session };
    cluster.parked.borrow_mut().insert(client_id.clone(), parked);
    let wait = cluster.node.claim_timeout * 2 + LINK_READ_TIMEOUT;
    let context = context.clone();
    let request = request.request;
    runtime::spawn_local(async move {
        runtime::sleep(wait).await;
        restore_parked(&context, &client_id, request);
    });
}

/// The answer to a takeover `request`: the session handed over (`None`: there was none here),
/// or "busy".
fn transfer_frame(
    cluster: &ShardCluster,
    request: &TakeoverRequest,
    restored: Option<&Restored>,
    busy: bool,
) -> SessionTransfer {
    let mut transfer = SessionTransfer {
        client_id: request.client_id.clone(),
        request: request.request,
        shard: request.reply_shard,
        session: None,
        messages: None,
        incoming_qos2: None,
        busy,
        other_user: false,
    };
    if let Some(restored) = restored {
        if let Some((_, record)) = restored.sessions.first() {
            transfer.session = Some(encode_session(record));
        }
        transfer.messages = Some(
            restored
                .messages
                .iter()
                .map(|(_, seq, record)| SessionMessage {
                    seq: *seq,
                    record: encode_message_record(record, &cluster.clock),
                })
                .collect(),
        );
        transfer.incoming_qos2 = Some(restored.incoming_qos2.iter().map(|(_, id)| *id).collect());
    }
    transfer
}

/// The new owner installed a session this shard handed over: the copy kept here goes.
fn unpark(cluster: &ShardCluster, installed: &TransferInstalled) {
    let mut parked = cluster.parked.borrow_mut();
    if parked.get(&installed.client_id).is_some_and(|p| p.request == installed.request) {
        parked.remove(&installed.client_id);
    }
}

/// No word from the peer that it installed a session handed over to it: the copy kept here
/// becomes the session again (offline), unless the client has one here by now. Where the peer
/// did install it after all, its copy is the newer one, and a takeover from it replaces this one.
fn restore_parked(context: &ShardContext, client_id: &str, request: u64) {
    let Some(cluster) = &context.cluster else { return };
    let parked = {
        let mut parked = cluster.parked.borrow_mut();
        match parked.get(client_id) {
            Some(p) if p.request == request => parked.remove(client_id),
            _ => None,
        }
    };
    let Some(parked) = parked else { return };
    if context.state.borrow().has_session(client_id) {
        return;
    }
    tracing::warn!(
        shard = %context.id,
        "the node that took client {client_id:?} over never confirmed its session: keeping it here"
    );
    context.state.borrow_mut().adopt_session(parked.session, Instant::now());
    context.apply_effects();
}

/// A peer answered one of this shard's takeover requests.
fn transfer_arrived(context: &ShardContext, cluster: &ShardCluster, transfer: SessionTransfer) {
    let Some(takeover) = cluster.takeovers.borrow().get(&transfer.request).cloned() else {
        return;
    };
    if takeover.client_id != transfer.client_id {
        tracing::warn!(
            shard = %context.id,
            "ignoring a session transfer for {:?} answering a request for {:?}",
            transfer.client_id,
            takeover.client_id
        );
        return;
    }
    if transfer.busy {
        return takeover.answer.set(TakeoverAnswer::Busy);
    }
    if transfer.other_user {
        return takeover.answer.set(TakeoverAnswer::OtherUser);
    }
    // Installed at once, before anything else runs on this shard: from here on, a peer that
    // takes the client over from this node finds the session here.
    match decode_transfer(&transfer, &cluster.clock) {
        Ok(Some(restored)) => {
            context.state.borrow_mut().adopt_session(restored, Instant::now());
            context.apply_effects();
            takeover.answer.set(TakeoverAnswer::Installed);
        }
        Ok(None) => takeover.answer.set(TakeoverAnswer::Installed),
        Err(error) => {
            // Its node keeps its copy, not hearing that it was installed.
            tracing::warn!(shard = %context.id, "bad session transfer for {:?}: {error}", transfer.client_id);
            takeover.answer.set(TakeoverAnswer::Unreadable);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Large retained messages
// -------------------------------------------------------------------------------------------

fn decode_transfer(
    transfer: &SessionTransfer,
    clock: &WallClock,
) -> Result<Option<Restored>, shardmq_shard::persist::RecordError> {
    let Some(session) = &transfer.session else { return Ok(None) };
    let client_id = ByteString::from(transfer.client_id.as_str());
    let mut restored = Restored::default();
    restored.sessions.push((client_id.clone(), decode_session(session)?));
    for message in transfer.messages.iter().flatten() {
        let record = decode_message_record(&message.record, clock)?;
        restored.messages.push((client_id.clone(), message.seq, record));
    }
    for &packet_id in transfer.incoming_qos2.iter().flatten() {
        restored.incoming_qos2.push((client_id.clone(), packet_id));
    }
    Ok(Some(restored))
}

/// The first takeover request number, or link connection number, of this run: the wall clock in
/// nanoseconds, high bits cleared so that numbers never wrap within a run. A later run starts
/// above the numbers an earlier one gave (unless the clock was set back by more than the run's
/// count of them).
fn run_base() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64);
    (nanos & (u64::MAX >> 2)).max(1)
}

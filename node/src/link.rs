//! What a shard decides about its node links, without I/O.
//!
//! Outgoing (one [`OutLinkState`] per peer and shard): when a connection comes up it starts with
//! a hello (this run's lease and a new connection number), the shard's route snapshot and the
//! index of the large retained messages it holds; route deltas are numbered from 1 after that
//! snapshot; forwarded QoS 1/2 publishes wait for their receipt at most [`RECEIPT_TIMEOUT`]; a
//! heartbeat carrying whether this node reaches etcd goes every [`LINK_HEARTBEAT`]. When the
//! connection ends, what the peer did not answer is given up.
//!
//! Incoming: a hello lets a link in only when it names another live node of this cluster (and,
//! with link TLS, the same node as its certificate) — [`check_hello`]; each frame then goes to
//! the shard it is for ([`destination`]); route frames and forwarded publishes become the shard's
//! events ([`route_frame`], [`publish_arrived`]).
//!
//! The engine (engine/src/cluster.rs) owns the sockets, TLS and tasks, and asks these.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shardmq_cluster::frame::{
    Body, Encoder, Hello, Pace, Publish, Receipt, RetainedIndex, Route, RouteDelta, RouteSnapshot,
};
use shardmq_cluster::{LeaseId, Member, NodeId};
use shardmq_codec::ByteString;
use shardmq_shard::persist::{decode_stored_message, encode_stored_message, WallClock};
use shardmq_shard::{
    home_shard, ConnId, Forward, LinkEpoch, LinkNumber, Node, PeerLease, PeerNode, PeerRoute,
    RouteFrame, Shard, ShardId,
};

/// How often every outgoing link sends a heartbeat (and checks its receipts' age).
pub const LINK_HEARTBEAT: Duration = Duration::from_millis(250);
/// How long a forwarded publish waits for its receipt before the publisher is answered with a
/// failure (the peer's storage or shards are stuck).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Large retained topics per `RetainedIndex` frame, so that no frame nears the frame size limit
/// however many a shard holds.
pub const RETAINED_INDEX_CHUNK: usize = 512;

// -------------------------------------------------------------------------------------------
// Outgoing
// -------------------------------------------------------------------------------------------

/// One shard's outgoing link to one peer, as the protocol sees it.
#[derive(Debug, Default)]
pub struct OutLinkState {
    up: bool,
    /// The number of the last route delta sent on this connection.
    version: u64,
    /// Receipt tokens waited for from the peer, with when their publish was sent.
    receipts: HashMap<u64, Instant>,
    next_heartbeat: Option<Instant>,
}

/// What a link's first frames say: who this is, and what its shard has.
#[derive(Debug)]
pub struct LinkStart<'a> {
    pub hello: Hello,
    pub routes: &'a [PeerRoute],
    /// The large retained messages the shard holds, with their versions.
    pub held: &'a [(ByteString, u64)],
}

impl OutLinkState {
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// A connection to the peer is up: its first frames go into `out` (cleared first), route
    /// deltas are numbered afresh, and the first heartbeat is due at once.
    pub fn start(&mut self, encoder: &mut Encoder, out: &mut BytesMut, start: LinkStart<'_>) {
        out.clear();
        encoder.encode(Body::Hello(Box::new(start.hello)), out);
        let routes = Some(start.routes.iter().map(wire_route).collect());
        encoder.encode(Body::RouteSnapshot(Box::new(RouteSnapshot { routes })), out);
        for chunk in start.held.chunks(RETAINED_INDEX_CHUNK) {
            let topics = Some(chunk.iter().map(|(topic, _)| topic.to_string()).collect());
            let versions = Some(chunk.iter().map(|(_, version)| *version).collect());
            encoder.encode(Body::RetainedIndex(Box::new(RetainedIndex { topics, versions })), out);
        }
        self.version = 0;
        self.next_heartbeat = None;
        self.up = true;
    }

    /// No more frames queue on this connection (the peer left or restarted); what it was
    /// waiting for stays until [`OutLinkState::down`].
    pub fn stop(&mut self) {
        self.up = false;
    }

    /// The connection ended (or the peer left): the receipts it did not send are not waited
    /// for; their tokens are returned for the shard to answer.
    pub fn down(&mut self) -> Vec<u64> {
        self.up = false;
        let mut unanswered: Vec<u64> = self.receipts.drain().map(|(token, _)| token).collect();
        unanswered.sort_unstable();
        unanswered
    }

    /// The frame of a route change on this connection, numbered; `None` while it is down (the
    /// next connection starts from a snapshot).
    pub fn route_delta(&mut self, added: &[PeerRoute], removed: &[PeerRoute]) -> Option<Body> {
        if !self.up {
            return None;
        }
        self.version += 1;
        Some(Body::RouteDelta(Box::new(RouteDelta {
            version: self.version,
            added: Some(added.iter().map(wire_route).collect()),
            removed: Some(removed.iter().map(wire_route).collect()),
        })))
    }

    /// A forwarded publish with receipt `token` was sent at `now`.
    pub fn wait_for(&mut self, token: u64, now: Instant) {
        self.receipts.insert(token, now);
    }

    /// The peer's receipt for `token`: whether it was waited for here.
    pub fn answered(&mut self, token: u64) -> bool {
        self.receipts.remove(&token).is_some()
    }

    /// Whether a heartbeat is due at `now` (then the next is due a [`LINK_HEARTBEAT`] later).
    pub fn heartbeat_due(&mut self, now: Instant) -> bool {
        if self.next_heartbeat.is_some_and(|due| now < due) {
            return false;
        }
        self.next_heartbeat = Some(now + LINK_HEARTBEAT);
        true
    }

    /// When the next heartbeat is due (`None`: at once).
    pub fn next_heartbeat(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    /// Receipts not answered within [`RECEIPT_TIMEOUT`] by `now`: no longer waited for; their
    /// publishers are answered with a failure.
    pub fn expired(&mut self, now: Instant) -> Vec<u64> {
        let mut expired: Vec<u64> = (self.receipts.iter())
            .filter(|(_, sent)| now.saturating_duration_since(**sent) >= RECEIPT_TIMEOUT)
            .map(|(token, _)| *token)
            .collect();
        expired.sort_unstable();
        for token in &expired {
            self.receipts.remove(token);
        }
        expired
    }
}

/// A shard's forward to a peer as a frame on its link.
#[derive(Debug)]
pub struct ForwardFrame {
    pub body: Body,
    /// The receipt the publish waits for, if it does.
    pub receipt: Option<u64>,
    /// Only forwarded publishes may be dropped when the link is down or full: their publisher
    /// is answered at once instead, and the peer's subscribers miss the message (a node that
    /// cannot be reached must not stop every QoS 1 publish to topics it had subscribers for).
    /// Receipts and pacing are never dropped while the link is up (a resume must follow its
    /// pause); lost with the link, the peer's own timeouts answer for them.
    pub droppable: bool,
}

/// The frame of shard `shard`'s forward to a peer. `names` names the holders of a large
/// retained message.
pub fn forward_frame(
    shard: ShardId,
    forward: Forward,
    clock: &WallClock,
    names: impl Fn(Node) -> Option<NodeId>,
) -> ForwardFrame {
    match forward {
        Forward::Publish { message, receipt, deliver, shared, holders, publisher, version } => {
            let (shared_filter, shared_group) = match shared {
                Some((filter, group)) => (Some(filter.to_string()), Some(group.to_string())),
                None => (None, None),
            };
            let retained_holders = holders.map(|holders| {
                holders.into_iter().filter_map(&names).map(|node| node.to_string()).collect()
            });
            let body = Body::Publish(Box::new(Publish {
                message: encode_stored_message(&message, clock),
                receipt: receipt.unwrap_or(0),
                reply_shard: shard.0,
                deliver,
                shared_filter,
                shared_group,
                retained_holders,
                publisher: publisher.map(|conn| conn.0),
                retained_version: version,
            }));
            ForwardFrame { body, receipt, droppable: true }
        }
        Forward::Receipt { token, shard, ok, matched } => {
            let body = Body::Receipt(Box::new(Receipt { token, shard: shard.0, ok, matched }));
            ForwardFrame { body, receipt: None, droppable: false }
        }
        Forward::Pace { shard, conn, pause } => {
            let body = Body::Pace(Box::new(Pace { shard: shard.0, conn: conn.0, pause }));
            ForwardFrame { body, receipt: None, droppable: false }
        }
    }
}

// -------------------------------------------------------------------------------------------
// Membership
// -------------------------------------------------------------------------------------------

/// What a new member list means for a shard's links.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Peers to (re)start a link to: new, restarted (a new lease) or moved (a new address).
    /// A link already running to one of them is retired first.
    pub start: Vec<Member>,
    /// Incarnations gone (a peer restarted with a new lease, or left): their routes go.
    pub gone: Vec<(NodeId, LeaseId)>,
    /// Peers no longer members: their links are retired and not restarted.
    pub left: Vec<NodeId>,
}

/// Compares the members this shard has links to (`linked`) with the new member list.
pub fn membership_change(me: &NodeId, linked: &[Member], members: &[Member]) -> MembershipChange {
    let mut change = MembershipChange::default();
    for member in members.iter().filter(|member| member.node != *me) {
        match linked.iter().find(|linked| linked.node == member.node) {
            Some(linked) if linked == member => continue,
            Some(linked) if linked.lease != member.lease => {
                change.gone.push((linked.node.clone(), linked.lease));
            }
            _ => {}
        }
        change.start.push(member.clone());
    }
    for linked in linked.iter().filter(|linked| !members.iter().any(|m| m.node == linked.node)) {
        change.gone.push((linked.node.clone(), linked.lease));
        change.left.push(linked.node.clone());
    }
    change
}

// -------------------------------------------------------------------------------------------
// Incoming
// -------------------------------------------------------------------------------------------

/// Why a hello does not let its link in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloRefusal {
    /// It names another cluster, or this node.
    Cluster,
    /// Its certificate is another node's than the one it names.
    Identity,
    /// It is malformed (no shards).
    Frame,
}

/// Who is at the other end of an incoming link, from its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOrigin {
    pub node: NodeId,
    pub origin: ShardId,
    /// How many shards the peer has.
    pub shards: u16,
    /// The peer's incarnation and this connection's number: what its route frames are tagged
    /// with.
    pub epoch: LinkEpoch,
}

/// What a hello decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloVerdict {
    Admit(LinkOrigin),
    /// It names an incarnation of its node this one already knows is gone: it has not learnt
    /// of its new lease yet. Closed without a refusal; it retries and is served once its hello
    /// names its current lease.
    NotYet,
    Refuse(HelloRefusal, String),
}

/// Whether `hello` lets its link into node `node` of cluster `cluster`. `certificate`: with
/// link TLS, the common name of the peer's certificate (`Some(None)` if it has none).
/// `lease_gone`: whether this node knows that incarnation of that node is gone.
pub fn check_hello(
    cluster: &str,
    node: &NodeId,
    hello: &Hello,
    certificate: Option<Option<&str>>,
    lease_gone: impl FnOnce(&NodeId, PeerLease) -> bool,
) -> HelloVerdict {
    if hello.cluster != cluster || *hello.node == *node.0 {
        let why = format!("it is node {:?} of cluster {:?}", hello.node, hello.cluster);
        return HelloVerdict::Refuse(HelloRefusal::Cluster, why);
    }
    if let Some(named) = certificate {
        if named != Some(&*hello.node) {
            let why =
                format!("its certificate is for {named:?}, its hello names node {:?}", hello.node);
            return HelloVerdict::Refuse(HelloRefusal::Identity, why);
        }
    }
    if hello.shards == 0 {
        return HelloVerdict::Refuse(HelloRefusal::Frame, "its hello says it has no shards".into());
    }
    let peer = NodeId::new(&hello.node);
    let lease = PeerLease(hello.lease);
    if lease_gone(&peer, lease) {
        return HelloVerdict::NotYet;
    }
    HelloVerdict::Admit(LinkOrigin {
        node: peer,
        origin: ShardId(hello.shard),
        shards: hello.shards,
        epoch: LinkEpoch { lease, link: LinkNumber(hello.link) },
    })
}

/// Which shard of this node handles a frame read on shard `here`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Here,
    Shard(ShardId),
    /// It names a shard this node does not have: dropped.
    Nowhere,
}

/// Receipts, pacing, session transfers and admin answers name their shard; takeover messages,
/// invitations and admin queries about a client go to the home shard of their client id (which
/// holds its session), an admin query for a page of sessions to the shard it names; everything
/// else (routes, publishes, heartbeats, retained
/// messages) is handled where it is read.
pub fn destination(body: &Body, here: ShardId, shards: u16) -> Destination {
    let named = |shard: u16| match ShardId(shard) {
        shard if shard == here => Destination::Here,
        shard if shard.0 < shards => Destination::Shard(shard),
        _ => Destination::Nowhere,
    };
    match body {
        Body::Pace(pace) => named(pace.shard),
        Body::Receipt(receipt) => named(receipt.shard),
        Body::SessionTransfer(transfer) => named(transfer.shard),
        Body::TakeoverRequest(request) => named(home_shard(&request.client_id, shards).0),
        Body::TransferInstalled(installed) => named(home_shard(&installed.client_id, shards).0),
        Body::SessionInvite(invite) => named(home_shard(&invite.client_id, shards).0),
        Body::AdminQuery(query) if query.list => named(query.shard),
        Body::AdminQuery(query) => {
            named(home_shard(query.client_id.as_deref().unwrap_or_default(), shards).0)
        }
        Body::AdminAnswer(answer) => named(answer.shard),
        _ => Destination::Here,
    }
}

/// A route snapshot or delta as the shard takes it (`None` for any other frame).
pub fn route_frame(body: Body, peer_shards: u16) -> Option<RouteFrame> {
    match body {
        Body::RouteSnapshot(snapshot) => {
            let routes = snapshot.routes.unwrap_or_default().into_iter().map(shard_route).collect();
            Some(RouteFrame::Snapshot { shards: peer_shards, routes })
        }
        Body::RouteDelta(delta) => {
            let added = delta.added.unwrap_or_default().into_iter().map(shard_route).collect();
            let removed = delta.removed.unwrap_or_default().into_iter().map(shard_route).collect();
            Some(RouteFrame::Delta { version: delta.version, added, removed })
        }
        _ => None,
    }
}

/// A publish peer `from` forwarded arrives on `shard`. A node that may not serve (fenced) takes
/// nothing: the returned receipt refuses it. A message that does not decode is dropped (the
/// error is returned for the log). Else the shard delivers it, and answers the receipt itself.
/// `node_of` numbers the nodes named as holders of a large retained message.
pub fn publish_arrived(
    shard: &mut Shard,
    from: PeerNode,
    publish: Publish,
    may_serve: bool,
    clock: &WallClock,
    node_of: impl Fn(&NodeId) -> Node,
    now: Instant,
) -> Result<Option<Forward>, String> {
    let receipt = (publish.receipt != 0).then_some(publish.receipt);
    let reply_shard = ShardId(publish.reply_shard);
    if !may_serve {
        // A fenced node serves no one: the message is refused, not delivered.
        let refused =
            |token| Forward::Receipt { token, shard: reply_shard, ok: false, matched: false };
        return Ok(receipt.map(refused));
    }
    let message = decode_stored_message(&publish.message, clock).map_err(|e| e.to_string())?;
    let shared = match (publish.shared_filter, publish.shared_group) {
        (Some(filter), Some(group)) => Some((ByteString::from(filter), ByteString::from(group))),
        _ => None,
    };
    let holders = publish
        .retained_holders
        .map(|names| names.iter().map(|name| node_of(&NodeId::new(name))).collect());
    shard.peer_publish(
        from,
        reply_shard,
        Arc::new(message),
        receipt,
        publish.deliver,
        shared,
        holders,
        publish.publisher.map(ConnId),
        publish.retained_version,
        now,
    );
    Ok(None)
}

/// A route as the link carries it.
pub fn wire_route(route: &PeerRoute) -> Route {
    Route { filter: route.filter.to_string(), group: route.group.as_ref().map(|g| g.to_string()) }
}

/// A route as the shard keeps it (an empty group is none).
pub fn shard_route(route: Route) -> PeerRoute {
    PeerRoute {
        filter: ByteString::from(route.filter),
        group: route.group.filter(|g| !g.is_empty()).map(ByteString::from),
    }
}

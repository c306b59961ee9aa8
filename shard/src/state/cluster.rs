//! The shard's side of the cluster: the routes of peer nodes, publishes forwarded to and from
//! them, sessions handed between nodes on takeover, and fencing.
//!
//! Lives on each shard. Peer routes are a replica like the shard routes: the shard that reads a
//! route frame from a node link applies it and passes it to every other shard
//! ([`ShardMsg::PeerRoutes`]), so every shard can match a topic against every node's filters.
//!
//! Frames of different link connections reach a shard in no particular order: an old connection
//! not yet noticed dead can be read on one shard while its replacement is read on another, and
//! the mesh interleaves what the two pass on. So each peer shard's routes are held with the
//! [`LinkEpoch`] they came on, and a frame is applied only if it belongs to the newest epoch:
//!
//! - a snapshot replaces the routes held unless they came on a newer link connection;
//! - a delta applies only on top of its own connection's snapshot, and only as the next one;
//! - [`Shard::peer_gone`] removes the routes of the incarnation (lease) that is gone, and
//!   its frames that arrive afterwards are ignored.
//!
//! **Invariant:** once every frame sent has arrived, every shard holds, for each peer shard, the
//! routes of its newest link connection, whatever the order in which the frames of different
//! connections arrived (those of one connection arrive in order).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use shardmq_codec::{ByteString, ReasonCode};

use super::retained_sync::Write;
use super::{add_member, AckTo, Departure, Effect, Shard, WillRule};
use crate::ids::{retained_shard, ConnId, LinkNumber, PeerLease, PeerNode, ShardId};
use crate::mesh::ShardMsg;
use crate::message::{Message, SharedMessage};
use crate::persist::{MessageRecord, MessageStage, Restored, SessionRecord};
use crate::session::{OutgoingStage, Subscription};
use crate::topic_tree::{SubscriptionTrie, TopicTree};

/// A node-level route: a filter with subscribers on a shard, in a shared group or not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerRoute {
    pub filter: ByteString,
    pub group: Option<ByteString>,
}

/// Which connection of a peer shard's link a route frame came on: the peer's incarnation, and
/// the number the peer gave the connection (larger for a later one, across restarts too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkEpoch {
    pub lease: PeerLease,
    pub link: LinkNumber,
}

/// A route frame of one peer shard's link, as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFrame {
    /// Every route of the peer shard, sent first on each link connection. `shards` is how many
    /// shards the peer node has (from the connection's hello): a restart with fewer shards
    /// leaves origins that no link will ever replace.
    Snapshot { shards: u16, routes: Vec<PeerRoute> },
    /// Routes added to and removed from the peer shard; `version` counts the deltas since the
    /// connection's snapshot, from 1.
    Delta { version: u64, added: Vec<PeerRoute>, removed: Vec<PeerRoute> },
}

/// What a shard sends a peer node.
#[derive(Debug, Clone)]
pub enum Forward {
    /// A message published on this node. With a `receipt`, the publisher's acknowledgement
    /// waits for the peer's [`Forward::Receipt`]. `deliver` is false for a retained message the
    /// peer has no subscriber for (it only stores it); `shared` names the one group the peer
    /// delivers it to.
    Publish {
        message: SharedMessage,
        receipt: Option<u64>,
        deliver: bool,
        shared: Option<(ByteString, ByteString)>,
        /// For a retained message too large to be kept on every node: the nodes that keep it
        /// in full ([`Node::Here`] is the sending node). The peer keeps it in full if it is
        /// one of them and otherwise only notes where it is; without `deliver`, such a peer
        /// gets the message without its payload.
        holders: Option<Vec<Node>>,
        /// The connection of the sending shard that published it: the peer pauses it
        /// ([`Forward::Pace`]) while a subscriber there cannot keep up.
        publisher: Option<ConnId>,
        /// The version of a retained write (0: not retained, or not versioned): see
        /// `state::retained_sync`.
        version: u64,
    },
    /// A message the peer forwarded is stored where it had to be (`ok`), for its shard `shard`.
    Receipt { token: u64, shard: ShardId, ok: bool },
    /// Stop reading (`pause`) or read again the peer's connection `conn` on its shard `shard`:
    /// a subscriber here, fed by its publishes, is over its limits (or drained, or stalled).
    Pace { shard: ShardId, conn: ConnId, pause: bool },
}

/// Where a publish goes: a shard of this node or a peer node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Target {
    Shard(ShardId),
    Peer(PeerNode),
}

/// A node of the cluster as a shard names it: this one, or a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Here,
    Peer(PeerNode),
}

/// Chooses the nodes that keep a large retained message in full: the engine's rendezvous
/// (HRW) ring over the live nodes, so that every node picks the same ones.
pub trait RetainedPlacement: std::fmt::Debug {
    /// The holders of a retained message on `topic`, best first.
    fn holders(&self, topic: &str) -> Vec<Node>;
}

/// A retained message this node knows of but keeps only on other nodes: a subscribe that
/// needs it fetches it from one of them.
#[derive(Debug, Clone)]
pub(super) struct RetainedElsewhere {
    pub(super) holders: Vec<PeerNode>,
    pub(super) expires_at: Option<Instant>,
}

/// A retained message fetched for a subscribe: who gets it once it arrives.
#[derive(Debug)]
struct RetainedFetch {
    client_id: ByteString,
    subscriptions: Vec<(ByteString, Subscription)>,
}

/// Key of the peer-route replica: a peer node with subscribers for a filter (in a group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PeerRouteKey {
    node: PeerNode,
    group: Option<ByteString>,
}

/// How many gone incarnations (leases) of one peer node a shard remembers, to ignore their late
/// frames. Such frames are in flight for a link read timeout at most, and a node restarts far less
/// often, so the last few suffice; the oldest is forgotten first.
const DEAD_LEASES_PER_PEER_MAX: usize = 8;

/// Lives on each shard: the live peer nodes and a replica of their routes.
#[derive(Debug, Default)]
pub(super) struct Peers {
    live: Vec<PeerNode>,
    routes: SubscriptionTrie<PeerRouteKey, ()>,
    /// The routes each (peer node, shard of it) announced, with the link connection they came
    /// on, to apply snapshots and deltas and to forget incarnations.
    by_origin: HashMap<(PeerNode, ShardId), OriginRoutes>,
    /// How many shards of a peer node hold each route: the node has it while any does.
    counts: HashMap<(PeerNode, PeerRoute), u32>,
    /// Where large retained messages are kept ([`Shard::set_retained_placement`]).
    pub(super) placement: Option<Box<dyn RetainedPlacement>>,
    /// Retained payloads up to this size are kept on every node; larger ones on their holders.
    pub(super) replicate_bytes_max: usize,
    /// This shard's partition of the large retained messages kept on other nodes only.
    pub(super) retained_elsewhere: TopicTree<RetainedElsewhere>,
    fetches: HashMap<u64, RetainedFetch>,
    next_fetch: u64,
    /// Leases of peer incarnations that are gone, oldest first: their frames are ignored.
    dead: HashMap<PeerNode, VecDeque<PeerLease>>,
}

/// The routes held for one peer shard.
#[derive(Debug)]
struct OriginRoutes {
    /// The link connection whose snapshot they started from.
    epoch: LinkEpoch,
    /// The last delta of that connection applied (0: none since the snapshot).
    version: u64,
    routes: HashSet<PeerRoute>,
}

/// Why a route frame was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ignored {
    /// It came from an incarnation of the peer that is gone.
    DeadLease,
    /// The routes held came on a newer link connection, or (for a delta) on another one.
    OtherLink,
    /// A delta that is not the next one of its connection: frames between were lost.
    Gap { expected: u64 },
}

impl Peers {
    /// The peer nodes with a non-shared route matching `topic`; shared groups with members on a
    /// peer node get it added to their members.
    pub(super) fn matching(
        &self,
        topic: &str,
        groups: &mut Vec<(ByteString, ByteString, Vec<Target>)>,
    ) -> Vec<PeerNode> {
        let mut nodes = Vec::new();
        if self.live.is_empty() {
            return nodes;
        }
        self.routes.for_each_match(topic, |filter, key, _| match &key.group {
            None => {
                if !nodes.contains(&key.node) {
                    nodes.push(key.node);
                }
            }
            Some(group) => add_member(groups, filter, group, Target::Peer(key.node)),
        });
        nodes
    }

    /// Whether a live peer node has a route (shared or not) matching `topic`.
    pub(super) fn any_match(&self, topic: &str) -> bool {
        let mut found = false;
        if !self.live.is_empty() {
            self.routes.for_each_match(topic, |_, _, _| found = true);
        }
        found
    }

    fn add(&mut self, node: PeerNode, route: PeerRoute) {
        let count = self.counts.entry((node, route.clone())).or_insert(0);
        *count += 1;
        if *count == 1 {
            let key = PeerRouteKey { node, group: route.group.clone() };
            self.routes.insert(&route.filter, key, ());
        }
    }

    fn remove(&mut self, node: PeerNode, route: &PeerRoute) {
        let Entry::Occupied(mut count) = self.counts.entry((node, route.clone())) else { return };
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
            let key = PeerRouteKey { node, group: route.group.clone() };
            self.routes.remove(&route.filter, &key);
        }
    }

    fn is_dead(&self, node: PeerNode, lease: PeerLease) -> bool {
        self.dead.get(&node).is_some_and(|dead| dead.contains(&lease))
    }

    /// Applies a route frame of peer shard `origin` that came on link connection `epoch`.
    fn apply(
        &mut self,
        node: PeerNode,
        origin: ShardId,
        epoch: LinkEpoch,
        frame: RouteFrame,
    ) -> Result<(), Ignored> {
        if self.is_dead(node, epoch.lease) {
            return Err(Ignored::DeadLease);
        }
        match frame {
            RouteFrame::Snapshot { shards, routes } => {
                self.snapshot(node, origin, epoch, shards, routes)
            }
            RouteFrame::Delta { version, added, removed } => {
                self.delta(node, origin, epoch, version, added, removed)
            }
        }
    }

    fn snapshot(
        &mut self,
        node: PeerNode,
        origin: ShardId,
        epoch: LinkEpoch,
        shards: u16,
        routes: Vec<PeerRoute>,
    ) -> Result<(), Ignored> {
        if self.by_origin.get(&(node, origin)).is_some_and(|held| held.epoch.link > epoch.link) {
            return Err(Ignored::OtherLink);
        }
        // Shards the peer had before a restart with fewer of them: no link replaces their
        // routes, and a newer connection of the peer says they are gone.
        let vanished: Vec<(PeerNode, ShardId)> = self
            .by_origin
            .iter()
            .filter(|((n, o), held)| *n == node && o.0 >= shards && held.epoch.link < epoch.link)
            .map(|(key, _)| *key)
            .collect();
        for key in vanished {
            self.forget(key);
        }
        // Only the difference touches the counts and the trie: a reconnect with the same routes
        // changes nothing.
        let routes: HashSet<PeerRoute> = routes.into_iter().collect();
        let held = self.by_origin.remove(&(node, origin)).map(|held| held.routes);
        let held = held.unwrap_or_default();
        for route in held.difference(&routes) {
            self.remove(node, route);
        }
        for route in routes.difference(&held) {
            self.add(node, route.clone());
        }
        self.by_origin.insert((node, origin), OriginRoutes { epoch, version: 0, routes });
        Ok(())
    }

    fn delta(
        &mut self,
        node: PeerNode,
        origin: ShardId,
        epoch: LinkEpoch,
        version: u64,
        added: Vec<PeerRoute>,
        removed: Vec<PeerRoute>,
    ) -> Result<(), Ignored> {
        let Some(held) = self.by_origin.get_mut(&(node, origin)) else {
            return Err(Ignored::OtherLink);
        };
        if held.epoch != epoch {
            return Err(Ignored::OtherLink);
        }
        let expected = held.version.wrapping_add(1);
        if version != expected {
            return Err(Ignored::Gap { expected });
        }
        held.version = version;
        let gone: Vec<PeerRoute> =
            removed.into_iter().filter(|route| held.routes.remove(route)).collect();
        let mut new = Vec::new();
        for route in added {
            if held.routes.insert(route.clone()) {
                new.push(route);
            }
        }
        for route in &gone {
            self.remove(node, route);
        }
        for route in new {
            self.add(node, route);
        }
        Ok(())
    }

    /// The incarnation `lease` of peer `node` is gone: its routes go, and so will its frames.
    fn gone(&mut self, node: PeerNode, lease: PeerLease) {
        let dead = self.dead.entry(node).or_default();
        if !dead.contains(&lease) {
            if dead.len() == DEAD_LEASES_PER_PEER_MAX {
                dead.pop_front();
            }
            dead.push_back(lease);
        }
        let origins: Vec<(PeerNode, ShardId)> = self
            .by_origin
            .iter()
            .filter(|((n, _), held)| *n == node && held.epoch.lease == lease)
            .map(|(key, _)| *key)
            .collect();
        for key in origins {
            self.forget(key);
        }
    }

    fn forget(&mut self, key: (PeerNode, ShardId)) {
        if let Some(held) = self.by_origin.remove(&key) {
            for route in &held.routes {
                self.remove(key.0, route);
            }
        }
    }
}

impl Shard {
    // ---------------------------------------------------------------------------------------
    // Set-up by the engine
    // ---------------------------------------------------------------------------------------

    /// The live peer nodes (from the cluster membership). A node that left also loses its
    /// routes ([`Shard::peer_gone`] is called for it).
    pub fn set_peers(&mut self, live: Vec<PeerNode>) {
        self.peers.live = live;
        self.pull_new_holdings();
    }

    /// Where large retained messages are kept: on the nodes `placement` chooses, when their
    /// payload is over `replicate_bytes_max` (smaller ones are kept on every node).
    pub fn set_retained_placement(
        &mut self,
        placement: Box<dyn RetainedPlacement>,
        replicate_bytes_max: usize,
    ) {
        self.peers.placement = Some(placement);
        self.peers.replicate_bytes_max = replicate_bytes_max;
    }

    /// Every route of this shard, for the snapshot a node link starts with.
    pub fn route_snapshot(&self) -> Vec<PeerRoute> {
        self.local_routes
            .keys()
            .map(|(filter, group)| PeerRoute { filter: filter.clone(), group: group.clone() })
            .collect()
    }

    pub(super) fn announce_to_peers(&mut self, route: PeerRoute, added: bool) {
        if self.peers.live.is_empty() {
            // No link to tell: a link that comes up starts with a snapshot.
            return;
        }
        let (added, removed) = if added { (vec![route], vec![]) } else { (vec![], vec![route]) };
        self.effects.push(Effect::RoutesChanged { added, removed });
    }

    // ---------------------------------------------------------------------------------------
    // Peer routes
    // ---------------------------------------------------------------------------------------

    /// A route frame of shard `origin` of peer `node`, which came on link connection `epoch`:
    /// applied unless it is stale (see the module docs). Called on every shard: by
    /// [`Shard::peer_routes_from_link`] on the one that read it, over the mesh on the others.
    pub fn peer_routes(
        &mut self,
        node: PeerNode,
        origin: ShardId,
        epoch: LinkEpoch,
        frame: RouteFrame,
    ) {
        match self.peers.apply(node, origin, epoch, frame) {
            Ok(()) => {}
            // Frames within one connection arrive in order, over TCP and then over the mesh:
            // a gap means frames were lost, and the routes held stay as they are until the
            // peer's next connection sends a snapshot.
            Err(Ignored::Gap { expected }) => tracing::warn!(
                shard = %self.id,
                %node,
                %origin,
                link = epoch.link.0,
                expected,
                "ignoring a route delta out of sequence"
            ),
            // An old connection's frames, read after its replacement's: expected, and harmless.
            Err(ignored) => tracing::debug!(
                shard = %self.id,
                %node,
                %origin,
                link = epoch.link.0,
                lease = epoch.lease.0,
                ?ignored,
                "ignoring a stale route frame"
            ),
        }
    }

    /// Applies a route frame read from a node link here and passes it to every other shard of
    /// this node.
    pub fn peer_routes_from_link(
        &mut self,
        node: PeerNode,
        origin: ShardId,
        epoch: LinkEpoch,
        frame: RouteFrame,
    ) {
        for shard in self.other_shards() {
            let msg = ShardMsg::PeerRoutes { node, origin, epoch, frame: frame.clone() };
            self.effects.push(Effect::Mesh(shard, msg));
        }
        self.peer_routes(node, origin, epoch, frame);
    }

    /// Incarnation `lease` of peer `node` is gone (it left the cluster, or restarted with a
    /// new lease): forgets the routes that came from it, and ignores its frames from now on.
    /// Routes a newer incarnation already sent stay.
    pub fn peer_gone(&mut self, node: PeerNode, lease: PeerLease) {
        self.peers.gone(node, lease);
    }

    /// Whether incarnation `lease` of peer `node` is gone ([`Shard::peer_gone`]): a link that
    /// still speaks for it is closed, so that the peer reconnects under its current lease.
    pub fn is_peer_lease_gone(&self, node: PeerNode, lease: PeerLease) -> bool {
        self.peers.is_dead(node, lease)
    }

    /// Peer `node` left the cluster for good: its large retained messages are no longer
    /// fetched from it (a restarted peer keeps its own and announces them again).
    pub fn peer_left(&mut self, node: PeerNode) {
        let held: Vec<ByteString> = self
            .peers
            .retained_elsewhere
            .iter()
            .filter(|(_, elsewhere)| elsewhere.holders.contains(&node))
            .map(|(topic, _)| ByteString::from(topic))
            .collect();
        for topic in held {
            let Some(mut elsewhere) = self.peers.retained_elsewhere.remove(&topic) else {
                continue;
            };
            elsewhere.holders.retain(|&holder| holder != node);
            if !elsewhere.holders.is_empty() {
                self.peers.retained_elsewhere.insert(&topic, elsewhere);
            }
        }
    }

    /// The nodes that keep `message` in full, when it is a retained message too large to be
    /// kept on every node (`None`: every node keeps it).
    pub(super) fn retained_holders(&self, message: &SharedMessage) -> Option<Vec<Node>> {
        let placement = self.peers.placement.as_ref()?;
        let large = message.retain
            && !self.peers.live.is_empty()
            && message.payload.len() > self.peers.replicate_bytes_max;
        large.then(|| placement.holders(&message.topic)).filter(|holders| !holders.is_empty())
    }

    /// Sends `message` once to each peer in `matched` and, when it is retained, to every live
    /// peer (which stores it, or notes which `holders` do). Returns the receipts asked for.
    pub(super) fn forward_to_peers(
        &mut self,
        message: &SharedMessage,
        matched: &[PeerNode],
        holders: Option<&[Node]>,
        receipt: Option<u64>,
        publisher: Option<ConnId>,
        version: u64,
    ) -> usize {
        let targets: Vec<PeerNode> =
            if message.retain { self.peers.live.clone() } else { matched.to_vec() };
        // What a peer that neither delivers nor keeps a large retained message needs of it.
        let note = holders.map(|_| SharedMessage::new(message.without_payload()));
        for &node in &targets {
            let deliver = matched.contains(&node);
            let keeps = holders.is_none_or(|holders| holders.contains(&Node::Peer(node)));
            let message = match &note {
                Some(note) if !deliver && !keeps => note.clone(),
                _ => message.clone(),
            };
            let forward = Forward::Publish {
                message,
                receipt,
                deliver,
                shared: None,
                holders: holders.map(<[Node]>::to_vec),
                publisher,
                version,
            };
            self.effects.push(Effect::Forward(node, forward));
        }
        if receipt.is_some() {
            targets.len()
        } else {
            0
        }
    }

    // ---------------------------------------------------------------------------------------
    // Publishes from peers
    // ---------------------------------------------------------------------------------------

    /// A message a peer node forwarded: stored if retained, then delivered to this node's
    /// subscribers (or to one member of its shared group). With a `receipt`, the peer's shard
    /// `reply_shard` gets a [`Forward::Receipt`] once everything it caused here is durable.
    /// `holders` are the nodes that keep a large retained message in full, as this node names
    /// them ([`Forward::Publish`]). `publisher`, a connection of the peer's shard
    /// `reply_shard`, is paced by the subscribers it congests here (see `backpressure`).
    /// `version` orders retained writes (see `retained_sync`).
    #[allow(clippy::too_many_arguments)]
    pub fn peer_publish(
        &mut self,
        from: PeerNode,
        reply_shard: ShardId,
        message: SharedMessage,
        receipt: Option<u64>,
        deliver: bool,
        shared: Option<(ByteString, ByteString)>,
        holders: Option<Vec<Node>>,
        publisher: Option<ConnId>,
        version: u64,
        now: Instant,
    ) {
        // Its publisher is the ingress that the subscribers it congests here pause.
        self.backpressure.ingress = publisher.map(|conn| crate::mesh::Publisher {
            node: Some(from),
            shard: reply_shard,
            conn,
        });
        let token = receipt.map(|_| self.new_ack_token());
        let writes_before = self.queued_ops();
        let mut receipts = 0;
        // A shared group's copy is not stored again: the message reached every node as retained
        // on its own (and carries no version).
        if message.retain && shared.is_none() {
            receipts += self.retain_on_node(&message, holders.as_deref(), token, version);
        }
        if deliver {
            receipts += match shared {
                Some((filter, group)) => self.shared_on_node(&message, filter, group, token, now),
                None => self.route_on_node(&message, token, now),
            };
        }
        if let (Some(remote), Some(token)) = (receipt, token) {
            let wrote = self.queued_ops() > writes_before;
            let ack = AckTo::Peer { node: from, shard: reply_shard, token: remote };
            self.acknowledge(ack, token, wrote, receipts, now);
        }
        self.backpressure.ingress = None;
    }

    /// A peer answered a forwarded publish's receipt (or its link failed: `ok` false).
    pub fn peer_receipt(&mut self, token: u64, ok: bool, now: Instant) {
        self.receipt(token, ok, now);
    }

    /// A peer node's subscriber paused (`pause`) or released the local connection `conn`, whose
    /// publishes it gets ([`Forward::Pace`]).
    pub fn peer_pace(&mut self, conn: ConnId, pause: bool, now: Instant) {
        if pause {
            if self.conns.contains_key(&conn) {
                self.backpressure.hold_for_peer(conn, now);
            }
        } else if self.backpressure.unhold_for_peer(conn) && !self.is_throttled(conn) {
            self.effects.push(Effect::Resume(conn));
        }
    }

    /// Stores a retained message in its partition on this node: in full, or, when it has
    /// `holders` and this node is not one of them, as a note of where it is kept, if `version`
    /// is newer than what the partition has. Returns the receipts asked for.
    pub(super) fn retain_on_node(
        &mut self,
        message: &SharedMessage,
        holders: Option<&[Node]>,
        receipt: Option<u64>,
        version: u64,
    ) -> usize {
        // With holders, an empty payload is a note of where the message is kept (a deletion
        // never names holders): never stored as a deletion, whoever the holders are.
        let note = holders.is_some() && message.payload.is_empty();
        let elsewhere =
            holders.filter(|holders| note || !holders.contains(&Node::Here)).map(|holders| {
                holders
                    .iter()
                    .filter_map(|holder| match holder {
                        Node::Peer(peer) => Some(*peer),
                        Node::Here => None,
                    })
                    .collect::<Vec<PeerNode>>()
            });
        if elsewhere.as_ref().is_some_and(Vec::is_empty) {
            // A note naming no other node: nothing to keep here.
            return 0;
        }
        let owner = retained_shard(&message.topic, self.shards);
        if owner == self.id {
            self.keep_retained(message.clone(), elsewhere, version);
            return 0;
        }
        let msg = ShardMsg::Retain { message: message.clone(), receipt, elsewhere, version };
        self.effects.push(Effect::Mesh(owner, msg));
        usize::from(receipt.is_some())
    }

    /// Keeps a retained message of this shard's partition: in full, or (`elsewhere`) only as
    /// a note of the nodes that keep it, dropping any older copy held here. A versioned write
    /// (`version` not 0) is applied only if it is newer than the partition's (see
    /// `retained_sync`).
    pub(super) fn keep_retained(
        &mut self,
        message: SharedMessage,
        elsewhere: Option<Vec<PeerNode>>,
        version: u64,
    ) {
        if version != 0 {
            let full = elsewhere.is_none() && !message.payload.is_empty();
            match self.retained_write(&message.topic, version, full) {
                Write::Ignore => return,
                Write::SameNote => {
                    for holder in elsewhere.unwrap_or_default() {
                        self.note_holder(holder, message.topic.clone(), version);
                    }
                    return;
                }
                Write::Apply => {
                    let deleted = elsewhere.is_none() && message.payload.is_empty();
                    self.mark_retained(&message.topic, version, deleted);
                }
            }
        }
        let Some(holders) = elsewhere else {
            self.peers.retained_elsewhere.remove(&message.topic);
            return self.store_retained(message);
        };
        // A copy kept here before (this node was a holder) is older than the holders' one.
        self.forget_retained(&message);
        let note = RetainedElsewhere { holders, expires_at: message.expires_at };
        self.peers.retained_elsewhere.insert(&message.topic, note);
        self.pull_if_holder(&message.topic);
    }

    /// This shard's large retained messages that are kept here in full, with their versions,
    /// for a peer's link to know what to fetch from this node.
    pub fn large_retained_topics(&self) -> Vec<(ByteString, u64)> {
        if self.peers.placement.is_none() {
            return Vec::new();
        }
        self.retained
            .iter()
            .filter(|(_, message)| message.payload.len() > self.peers.replicate_bytes_max)
            .map(|(topic, _)| (ByteString::from(topic), self.retained_mark_version(topic)))
            .collect()
    }

    /// Peer `node` keeps these large retained messages in full, at these versions (its link
    /// announced them). Called on the shard that read them, which passes each to its
    /// partition's shard.
    pub fn retained_held_by(&mut self, node: PeerNode, topics: Vec<(ByteString, u64)>) {
        let mut by_shard: HashMap<ShardId, Vec<(ByteString, u64)>> = HashMap::new();
        for (topic, version) in topics {
            by_shard.entry(retained_shard(&topic, self.shards)).or_default().push((topic, version));
        }
        for (shard, topics) in by_shard {
            if shard == self.id {
                self.retained_held(node, topics);
            } else {
                self.effects.push(Effect::Mesh(shard, ShardMsg::RetainedHeld { node, topics }));
            }
        }
    }

    pub(super) fn retained_held(&mut self, node: PeerNode, topics: Vec<(ByteString, u64)>) {
        for (topic, version) in topics {
            self.note_holder(node, topic, version);
        }
    }

    /// The retained message kept here in full on `topic` (this shard's partition), unexpired:
    /// what a peer fetches.
    pub fn retained_message(&self, topic: &str, now: Instant) -> Option<SharedMessage> {
        self.retained.get(topic).filter(|message| !message.is_expired(now)).cloned()
    }

    /// This shard's notes of large retained messages kept elsewhere matching `filter`.
    pub(super) fn collect_retained_elsewhere(
        &self,
        filter: &str,
        now: Instant,
        into: &mut Vec<(ByteString, Vec<PeerNode>)>,
    ) {
        self.peers.retained_elsewhere.for_each_match(filter, |topic, note| {
            if note.expires_at.is_none_or(|at| at > now) {
                into.push((ByteString::from(topic), note.holders.clone()));
            }
        });
    }

    /// Fetches large retained messages kept on other nodes for a subscribe: the engine asks
    /// their holders and answers with [`Shard::retained_fetched`].
    pub(super) fn fetch_retained(
        &mut self,
        client_id: &ByteString,
        subscriptions: &[(ByteString, Subscription)],
        elsewhere: Vec<(ByteString, Vec<PeerNode>)>,
    ) {
        for (topic, holders) in elsewhere {
            let token = self.peers.next_fetch;
            self.peers.next_fetch += 1;
            let fetch = RetainedFetch {
                client_id: client_id.clone(),
                subscriptions: subscriptions.to_vec(),
            };
            self.peers.fetches.insert(token, fetch);
            self.effects.push(Effect::FetchRetained { token, topic, holders });
        }
    }

    /// A retained message fetched from its holder arrived (`None`: no holder had it): it goes
    /// to the subscriptions that asked for it, as a retained message sent at subscribe.
    pub fn retained_fetched(&mut self, token: u64, message: Option<SharedMessage>, now: Instant) {
        let Some(fetch) = self.peers.fetches.remove(&token) else { return };
        if let Some(message) = message.filter(|m| !m.is_expired(now) && m.retain) {
            self.deliver_retained(&fetch.client_id, &fetch.subscriptions, vec![message], now);
        }
    }

    /// Publishes a message of the broker itself (`$SYS/...`): retained and delivered on this
    /// node only, never forwarded to peers (each node speaks for itself).
    pub fn publish_system(&mut self, topic: &str, payload: String, now: Instant) {
        let message = SharedMessage::new(Message {
            topic: ByteString::from(topic),
            payload: payload.into(),
            qos: shardmq_codec::QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            expires_at: None,
            publisher: ByteString::from_static("$SYS"),
        });
        self.retain_on_node(&message, None, None, 0);
        self.route_on_node(&message, None, now);
    }

    /// Delivers to this node's non-shared subscribers only (a peer's message goes no further).
    fn route_on_node(
        &mut self,
        message: &SharedMessage,
        receipt: Option<u64>,
        now: Instant,
    ) -> usize {
        self.deliver_local(message, None, now);
        let mut shards: Vec<ShardId> = Vec::new();
        self.routes.for_each_match(&message.topic, |_, key, _| {
            if key.group.is_none() && !shards.contains(&key.shard) {
                shards.push(key.shard);
            }
        });
        for &shard in &shards {
            let publisher = self.backpressure.ingress;
            let msg = ShardMsg::Publish { message: message.clone(), receipt, publisher };
            self.effects.push(Effect::Mesh(shard, msg));
        }
        if receipt.is_some() {
            shards.len()
        } else {
            0
        }
    }

    /// Delivers to one member of a shared group on this node (the sending node chose this one).
    fn shared_on_node(
        &mut self,
        message: &SharedMessage,
        filter: ByteString,
        group: ByteString,
        receipt: Option<u64>,
        now: Instant,
    ) -> usize {
        let mut members: Vec<ShardId> = Vec::new();
        self.routes.for_each_match(&message.topic, |f, key, _| {
            if f == &*filter && key.group.as_ref() == Some(&group) {
                members.push(key.shard);
            }
        });
        if self.local_routes.contains_key(&(filter.clone(), Some(group.clone()))) {
            members.push(self.id);
        }
        if members.is_empty() {
            // The group's members here left after the peer chose this node.
            return 0;
        }
        members.sort();
        let cursor = self.shard_cursor.entry((filter.clone(), group.clone())).or_insert(0);
        let chosen = members[*cursor % members.len()];
        *cursor = cursor.wrapping_add(1);
        if chosen == self.id {
            self.deliver_shared(message, &filter, &group, now);
            return 0;
        }
        let msg = ShardMsg::SharedPublish {
            message: message.clone(),
            filter,
            group,
            receipt,
            publisher: self.backpressure.ingress,
        };
        self.effects.push(Effect::Mesh(chosen, msg));
        usize::from(receipt.is_some())
    }

    // ---------------------------------------------------------------------------------------
    // Takeover across nodes, and fencing
    // ---------------------------------------------------------------------------------------

    /// A peer node is taking client `client_id` over: disconnects its connection here (v5
    /// reason 0x8E), applies the will rules, and gives up the session, returned for the peer
    /// (subscriptions, in-flight and queued messages). `None` when there is no session left
    /// (none here, or it ended with its connection).
    pub fn hand_over(
        &mut self,
        client_id: &str,
        clean_start: bool,
        now: Instant,
    ) -> Option<Restored> {
        let client_id = ByteString::from(client_id);
        if let Some(conn) = self.sessions.get(&client_id).and_then(|s| s.conn) {
            self.disconnect_with(conn, ReasonCode::SESSION_TAKEN_OVER);
            let rule = WillRule::Takeover { session_resumes: !clean_start };
            self.detach(conn, rule, Departure::Takeover, now);
            // A clean session ends with its connection, but its client id moves to the peer:
            // this node must not release the ownership the peer is about to claim from it.
            self.effects.retain(
                |effect| !matches!(effect, Effect::SessionEnded(ended) if *ended == client_id),
            );
        }
        let clock = self.durable.as_ref().map(|d| d.clock)?;
        let session = self.sessions.get_mut(&client_id)?;
        let disconnected_at = session.disconnected_at.unwrap_or(now);
        let mut restored = Restored::default();
        let mut subscriptions = Vec::new();
        if let Some(held) = session.held_if_any() {
            subscriptions = held.subscriptions.iter().map(|(f, s)| (f.clone(), *s)).collect();
            for outgoing in &held.inflight {
                let stage = match outgoing.stage {
                    OutgoingStage::Published => MessageStage::Published,
                    OutgoingStage::Released => MessageStage::Released,
                };
                let record = MessageRecord {
                    stage,
                    packet_id: outgoing.packet_id.get(),
                    delivery: outgoing.delivery.clone(),
                };
                restored.messages.push((client_id.clone(), 0, record));
            }
            for delivery in &held.queue {
                let record = MessageRecord {
                    stage: MessageStage::Queued,
                    packet_id: 0,
                    delivery: delivery.clone(),
                };
                restored.messages.push((client_id.clone(), 0, record));
            }
            for &packet_id in &held.incoming_qos2 {
                restored.incoming_qos2.push((client_id.clone(), packet_id));
            }
        }
        let record = SessionRecord {
            expiry_secs: session.expiry_secs,
            disconnected_at_unix_ms: clock.unix_ms(disconnected_at).max(1),
            username: session.username.as_deref().map(ByteString::from),
            subscriptions,
        };
        restored.sessions.push((client_id.clone(), record));
        // Numbered in order, as the receiving side stores them.
        for (seq, message) in restored.messages.iter_mut().enumerate() {
            message.1 = seq as u64 + 1;
        }
        self.forget_session(&client_id);
        Some(restored)
    }

    /// Installs a session handed over by a peer node (replacing any stale copy here), before
    /// its client's CONNECT is handled.
    pub fn adopt_session(&mut self, restored: Restored, now: Instant) {
        for (client_id, _) in &restored.sessions {
            if let Some(conn) = self.sessions.get(client_id).and_then(|s| s.conn) {
                self.disconnect_with(conn, ReasonCode::SESSION_TAKEN_OVER);
                let rule = WillRule::Takeover { session_resumes: true };
                self.detach(conn, rule, Departure::Takeover, now);
            }
            self.forget_session(client_id);
        }
        self.restore(restored, true, now);
    }

    /// Removes a session without its will and without giving up the ownership (it moved).
    fn forget_session(&mut self, client_id: &ByteString) {
        if self.sessions.get(client_id).is_some_and(|s| s.stored) {
            self.unpersist_session(client_id);
        }
        let Some(mut session) = self.sessions.remove(client_id) else { return };
        let held = session.take_held();
        for (filter, _) in held.subscriptions {
            self.remove_subscriber(client_id, &filter);
        }
    }

    /// This node lost its lease: disconnects every client (v5 reason 0x89 "server busy": try
    /// again, here or on another node). Sessions stay stored; wills are not sent, since the node
    /// no longer serves anyone.
    pub fn fence(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.disconnect_with(conn, ReasonCode::SERVER_BUSY);
            self.detach(conn, WillRule::Discard, Departure::Fenced, now);
        }
    }

    /// The user name of client `client_id`'s session here, if it has one with a user.
    pub fn session_username(&self, client_id: &str) -> Option<String> {
        self.sessions.get(client_id)?.username.as_deref().map(str::to_owned)
    }

    /// Whether client `client_id` has a session here (connected or not).
    pub fn has_session(&self, client_id: &str) -> bool {
        self.sessions.contains_key(client_id)
    }

    /// The client ids of the sessions stored here whose client is not connected.
    pub fn offline_session_ids(&self) -> Vec<ByteString> {
        let offline = self.sessions.iter().filter(|(_, session)| session.conn.is_none());
        offline.map(|(client_id, _)| client_id.clone()).collect()
    }
}

#[cfg(feature = "fuzzing")]
impl Shard {
    /// The routes held for each peer shard (those holding any), for the fuzz checks.
    pub(super) fn peer_routes_held(
        &self,
    ) -> std::collections::BTreeMap<(PeerNode, ShardId), std::collections::BTreeSet<PeerRoute>>
    {
        self.peers
            .by_origin
            .iter()
            .filter(|(_, held)| !held.routes.is_empty())
            .map(|(key, held)| (*key, held.routes.iter().cloned().collect()))
            .collect()
    }

    /// The peer-route counts and match index agree with the routes held per peer shard, and
    /// nothing is held for a gone incarnation. Panics otherwise (a fuzz check).
    pub(super) fn audit_peer_routes(&self) {
        let peers = &self.peers;
        let mut counts: HashMap<(PeerNode, PeerRoute), u32> = HashMap::new();
        for ((node, origin), held) in &peers.by_origin {
            assert!(
                !peers.is_dead(*node, held.epoch.lease),
                "routes of {node} {origin} held for a gone incarnation"
            );
            for route in &held.routes {
                *counts.entry((*node, route.clone())).or_default() += 1;
            }
        }
        assert_eq!(counts, peers.counts, "peer route counts differ from the routes held");
        let indexed: HashSet<(PeerNode, PeerRoute)> = peers
            .routes
            .iter()
            .map(|(filter, key, ())| {
                let route =
                    PeerRoute { filter: ByteString::from(filter), group: key.group.clone() };
                (key.node, route)
            })
            .collect();
        let counted: HashSet<(PeerNode, PeerRoute)> = counts.into_keys().collect();
        assert_eq!(indexed, counted, "the peer route index differs from the counts");
        for (node, dead) in &peers.dead {
            assert!(dead.len() <= DEAD_LEASES_PER_PEER_MAX, "{node}: too many gone leases kept");
        }
    }
}

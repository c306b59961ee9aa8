//! One shard's broker state machine: connections and sessions that live here, the local
//! subscriber index, the replica of the node's routes, and this shard's partition of retained
//! messages.
//!
//! It is sans-IO: the engine feeds it events (a CONNECT, a packet, a lost connection, a mesh
//! message, a clock tick) with the current time, and drains [`Effect`]s (bytes to flush,
//! connections to close, messages for other shards). Bytes for a client are encoded straight
//! into that connection's output buffer, so one socket write carries every packet produced since
//! the last one.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq_codec::topic::split_shared;
use shardmq_codec::{
    Ack, Auth, ByteString, ConnAck, Connect, DecodeError, Disconnect, Packet, PacketId,
    PlainPublish, Properties, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};

use crate::authorize::{AuthExchange, AuthStep, Authorizer};
use crate::ids::{home_shard, ConnId, PeerNode, ShardId};
use crate::limits::Limits;
use crate::mesh::{ShardMsg, SyncToken};
use crate::message::{forwarded_properties, Delivery, Message, SharedMessage};
use crate::session::{Outgoing, OutgoingStage, Session, Subscription};
use crate::topic_tree::{topic_matches, SubscriptionTrie, TopicTree};
use crate::FastMap;

mod admin;
mod backpressure;
mod durable;
mod events;
mod retained_sync;
mod throttle;

use crate::persist::{MessageStage, WallClock};
pub use admin::{
    ClientDetail, ClientSummary, KickSession, Kicked, Presence, QueueGauges, SubscriptionInfo,
    WillState,
};
use backpressure::{Backpressure, Waiter};
pub use backpressure::{
    PAUSE_MAX as PUBLISHER_PAUSE_MAX, PEER_HOLD_MAX as PEER_PAUSE_MAX,
    STALL_QUIET as SUBSCRIBER_STALL_QUIET,
};
use durable::{AckTo, Durable, HeldAcks, HeldQos1, HeldQos2};
pub use durable::{CommitBatch, Ticket};
use events::{Arrival, Departure};
pub use events::{ClientEvent, ClientEvents, EventKind, EventSink};
use throttle::{Rates, Throttle};
mod cluster;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub use cluster::{Forward, LinkEpoch, Node, PeerRoute, RetainedPlacement, RouteFrame};
use cluster::{Peers, Target};
pub use retained_sync::{RetainedClock, RetainedPush, RETAINED_BUCKETS, TOMBSTONE_TTL_MS};

/// What the engine must do after an event.
#[derive(Debug)]
pub enum Effect {
    /// The connection has bytes to write: call [`Shard::take_output`].
    Flush(ConnId),
    /// Write what is left, then close the connection and call [`Shard::connection_closed`].
    Close(ConnId),
    /// Send a message to another shard.
    Mesh(ShardId, ShardMsg),
    /// Writes are queued: run a group commit ([`Shard::take_commit_batch`]).
    Commit,
    /// A paused connection may be read again ([`Shard::is_paused`] turned false).
    Resume(ConnId),
    /// Send to a peer node, over this shard's link to it.
    Forward(PeerNode, Forward),
    /// This shard's routes changed: tell every peer node, over this shard's links, in order.
    RoutesChanged { added: Vec<PeerRoute>, removed: Vec<PeerRoute> },
    /// A session ended here for good (not resumed, not handed over): the node may give up its
    /// ownership of the client id.
    SessionEnded(ByteString),
    /// A subscribe needs the large retained message on `topic`, kept in full only on
    /// `holders`: fetch it from one of them and answer [`Shard::retained_fetched`].
    FetchRetained { token: u64, topic: ByteString, holders: Vec<PeerNode> },
    /// This node became a holder of the large retained message on `topic`: fetch it from one of
    /// `holders` and answer with [`Shard::retained_pulled`] (one at a time per shard).
    PullRetained { topic: ByteString, holders: Vec<PeerNode> },
}

/// Counters a shard keeps about itself; the engine aggregates them without locks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub connections: u64,
    pub sessions: u64,
    /// PUBLISH packets received from clients, by QoS (index 0, 1, 2).
    pub messages_received: [u64; 3],
    /// PUBLISH packets sent to clients, by QoS.
    pub messages_sent: [u64; 3],
    /// Payload bytes of the PUBLISH packets received from clients, by QoS.
    pub payload_bytes_received: [u64; 3],
    /// Payload bytes of the PUBLISH packets sent to clients, by QoS.
    pub payload_bytes_sent: [u64; 3],
    /// Bytes of the packets clients sent after their CONNECT.
    pub bytes_received: u64,
    /// Bytes handed to clients' sockets.
    pub bytes_sent: u64,
    /// Times a connection went over its rate limit and stopped being read for a while.
    pub throttled: u64,
    /// QoS 0 messages dropped because a connection's output buffer was full.
    pub dropped_qos0_slow: u64,
    /// Messages dropped because a session's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because they expired before delivery.
    pub dropped_expired: u64,
    /// Messages not sent because they exceed the client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// PUBLISHes the ACL refused.
    pub dropped_not_authorized: u64,
    /// Retained messages in this shard's partition (kept here in full).
    pub retained: u64,
    /// Retained messages delivered but not retained: the store was full (count or bytes).
    pub retained_refused: u64,
    /// Subscriptions refused because a client was at `max_subscriptions` or
    /// `max_subscription_bytes`.
    pub subscriptions_refused: u64,
    /// CONNECTs refused before a session was touched, by cause ([`ConnectRefusal`] as index).
    pub connects_refused: [u64; ConnectRefusal::ALL.len()],
}

/// Why a CONNECT was refused before it reached a session (counted by [`Shard::connect_refused`],
/// shown in `/metrics` as `shardmq_connects_refused_total{cause}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// etcd cannot take the client's claim in time now (5.0: 0x89 Server busy, 3.1.1: 3).
    EtcdBusy,
    /// The claim was not answered within the claim timeout, lost a race, or its takeover
    /// failed (5.0: 0x88 Server unavailable, 3.1.1: 3).
    EtcdUnavailable,
    /// The node may not serve: its lease could not be shown alive in time.
    Fenced,
    /// Over `max_connect_rate` (0x9F).
    ConnectionRate,
    /// Over the memory high-water mark (0x89).
    Memory,
    /// Over `max_connections` (0x97).
    ConnectionLimit,
    /// The broker is shutting down (0x88).
    Stopping,
    /// No password-check thread free (0x89).
    PasswordChecksBusy,
    /// Bad credentials, an unknown or failed authentication method, or not authorized
    /// (0x86, 0x8C, 0x87).
    NotAuthenticated,
    /// A WebSocket upgrade from a web page that may not use the broker (HTTP 403).
    WebSocketOrigin,
    /// The client id has a session of another user (0x87, 3.1.1: 5).
    SessionOfAnotherUser,
    /// Its source address used up its budget of failed logins (0x9F, 3.1.1: 3).
    LoginBackoff,
    /// Its source address is banned for failed logins (0x8A, 3.1.1: 5).
    LoginBanned,
    /// On a listener with `proxy_protocol`, no valid PROXY header came first (closed).
    ProxyHeader,
}

impl ConnectRefusal {
    pub const ALL: [ConnectRefusal; 14] = [
        ConnectRefusal::EtcdBusy,
        ConnectRefusal::EtcdUnavailable,
        ConnectRefusal::Fenced,
        ConnectRefusal::ConnectionRate,
        ConnectRefusal::Memory,
        ConnectRefusal::ConnectionLimit,
        ConnectRefusal::Stopping,
        ConnectRefusal::PasswordChecksBusy,
        ConnectRefusal::NotAuthenticated,
        ConnectRefusal::WebSocketOrigin,
        ConnectRefusal::SessionOfAnotherUser,
        ConnectRefusal::LoginBackoff,
        ConnectRefusal::LoginBanned,
        ConnectRefusal::ProxyHeader,
    ];

    /// The `cause` label of its `/metrics` series.
    pub fn label(self) -> &'static str {
        match self {
            ConnectRefusal::EtcdBusy => "etcd_busy",
            ConnectRefusal::EtcdUnavailable => "etcd_unavailable",
            ConnectRefusal::Fenced => "fenced",
            ConnectRefusal::ConnectionRate => "connect_rate",
            ConnectRefusal::Memory => "memory",
            ConnectRefusal::ConnectionLimit => "max_connections",
            ConnectRefusal::Stopping => "stopping",
            ConnectRefusal::PasswordChecksBusy => "password_checks_busy",
            ConnectRefusal::NotAuthenticated => "not_authenticated",
            ConnectRefusal::WebSocketOrigin => "ws_origin",
            ConnectRefusal::SessionOfAnotherUser => "session_of_another_user",
            ConnectRefusal::LoginBackoff => "login_backoff",
            ConnectRefusal::LoginBanned => "login_banned",
            ConnectRefusal::ProxyHeader => "proxy_header",
        }
    }
}

/// `value` in 22 base-62 digits (`0-9A-Za-z`, most significant first, zero-padded).
fn base62(mut value: u128) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 22];
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// The randomness of assigned client ids.
struct AssignedIdSource(Box<dyn FnMut() -> Option<u128> + Send>);

impl Default for AssignedIdSource {
    fn default() -> AssignedIdSource {
        let mut counter: u128 = 0;
        AssignedIdSource(Box::new(move || {
            counter += 1;
            Some(counter)
        }))
    }
}

impl std::fmt::Debug for AssignedIdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssignedIdSource")
    }
}

/// Tables of fewer entries than this are never shrunk (`Shard::shrink_oversized_tables`): not
/// worth a rehash.
const SHRINK_FLOOR: usize = 4096;

/// Key of the local subscriber index: a client, and the shared group for `$share/` filters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SubscriberKey {
    client_id: ByteString,
    group: Option<ByteString>,
}

/// Key of the route replica: a shard that has subscribers for a filter (in a shared group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    shard: ShardId,
    group: Option<ByteString>,
}

/// A connection attached to a session on this shard.
///
/// Kept small: a shard holds one per connection, most of them idle. Topic aliases, which few
/// clients use, are boxed and allocated on first use.
#[derive(Debug)]
struct Conn {
    client_id: ByteString,
    last_seen: Instant,
    out: BytesMut,
    will: Option<SharedMessage>,
    will_delay_secs: u32,
    /// 1.5 × the keepalive in force, in milliseconds (at most 65,535 s × 1,500); 0 when
    /// keepalive is off.
    keepalive_grace_ms: u32,
    /// The client's Maximum Packet Size.
    packet_bytes_max: u32,
    /// The client's Receive Maximum, capped by ours: the outbound in-flight window.
    window: u16,
    /// The client's Topic Alias Maximum: how many server-to-client aliases it accepts.
    alias_out_max: u16,
    version: ProtocolVersion,
    flush_requested: bool,
    closing: bool,
    /// When the connection was made, in seconds since the shard's time base (fits what would
    /// otherwise be padding; see [`Shard::mark_time`]).
    connected_secs: u32,
    aliases: Option<Box<TopicAliases>>,
}

// Every connection has one: its size is part of the memory per idle connection.
const _: () = assert!(std::mem::size_of::<Conn>() == 120);

impl Conn {
    /// 1.5 × the keepalive in force; `None` when keepalive is off.
    fn keepalive_grace(&self) -> Option<Duration> {
        (self.keepalive_grace_ms > 0)
            .then(|| Duration::from_millis(u64::from(self.keepalive_grace_ms)))
    }

    fn aliases(&mut self) -> &mut TopicAliases {
        self.aliases.get_or_insert_with(Box::default)
    }
}

/// The topic aliases of a connection (v5).
#[derive(Debug, Default)]
struct TopicAliases {
    /// Client-to-server topic aliases.
    incoming: HashMap<u16, ByteString>,
    /// Server-to-client topic aliases, up to the client's Topic Alias Maximum.
    outgoing: HashMap<ByteString, u16>,
}

/// A SUBSCRIBE waiting for every other shard to apply its routes (and send retained messages).
#[derive(Debug)]
struct PendingSubscribe {
    conn: ConnId,
    client_id: ByteString,
    suback: SubAck,
    waiting: usize,
    /// Filters that get retained messages, with the options and identifier they were made with.
    retained_for: Vec<(ByteString, Subscription)>,
    retained: Vec<SharedMessage>,
    /// Large retained messages kept on other nodes, to fetch once the SUBACK is sent.
    elsewhere: Vec<(ByteString, Vec<PeerNode>)>,
}

/// A session timer. Keepalive checks, one per connection, are kept apart in
/// [`Shard::keepalive_timers`]: they are most of the timers, and an entry there is 24 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A delayed will of a disconnected session falls due (valid for one epoch).
    Will { client_id: ByteString, epoch: u64 },
    /// A disconnected session expires (valid for one epoch).
    Expiry { client_id: ByteString, epoch: u64 },
}

/// Lives on each shard; owns the sessions homed here and this shard's replica of the node's
/// routes. Written only by this shard's events; other shards reach it through [`ShardMsg`]s.
#[derive(Debug)]
pub struct Shard {
    id: ShardId,
    shards: u16,
    limits: Limits,
    sessions: FastMap<ByteString, Session>,
    conns: FastMap<ConnId, Conn>,
    subscribers: SubscriptionTrie<SubscriberKey, Subscription>,
    /// How many local subscribers each (filter, group) has, to know when to add/remove routes.
    local_routes: HashMap<(ByteString, Option<ByteString>), usize>,
    routes: SubscriptionTrie<RouteKey, ()>,
    retained: TopicTree<SharedMessage>,
    retained_bytes: usize,
    pending_subscribes: HashMap<SyncToken, PendingSubscribe>,
    next_token: u64,
    /// Round-robin position of each shared group (filter, group) over its member shards.
    shard_cursor: HashMap<(ByteString, ByteString), usize>,
    /// Round-robin position of each shared group over its members on this shard.
    member_cursor: HashMap<(ByteString, ByteString), usize>,
    /// When each connection with a keepalive is checked next (see [`Shard::check_keepalive`]).
    keepalive_timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    effects: Vec<Effect>,
    stats: ShardStats,
    /// Set when this shard stores its sessions and retained messages.
    durable: Option<Durable>,
    held_acks: HeldAcks,
    held_qos2: HeldQos2,
    held_qos1: HeldQos1,
    /// Scratch space for matching, kept to avoid allocating per publish.
    scratch_targets: FastMap<ByteString, Delivery>,
    /// Publishers paused while their subscribers drain.
    backpressure: Backpressure,
    /// The other nodes of the cluster and their routes (empty on a single node).
    peers: Peers,
    /// Versions of retained writes, tombstones and the catch-up of peers (clusters only).
    retained_sync: retained_sync::RetainedSync,
    /// The 128 random bits of each assigned client id (see [`Shard::set_assigned_id_source`]).
    assigned_id_source: AssignedIdSource,
    /// The access policy (the ACL file); `None` allows everything.
    authorizer: Option<Arc<dyn Authorizer>>,
    /// Per-connection rate limits; `None` (no budget kept at all) when none is configured.
    throttle: Option<Throttle>,
    /// The first instant the shard was told of: what [`Conn::connected_secs`] counts from.
    time_base: Option<Instant>,
    /// Connections that authenticated with an Authentication Method (MQTT 5 enhanced
    /// authentication): the method, and the re-authentication under way. Beside [`Conn`] rather
    /// than in it, so the connections that use none (nearly all) pay nothing for it.
    enhanced_auth: FastMap<ConnId, EnhancedAuth>,
    /// Where client events are published (`$SYS/brokers/<node>/clients/...`); `None`, the
    /// default, publishes none and costs one branch per event.
    client_events: Option<Box<ClientEvents>>,
    /// The sessions of bridges to other brokers homed here (`$bridge/<name>`), by client id:
    /// their own queue bound and drop count (see [`Shard::set_bridge_queue`]).
    bridge_queues: FastMap<ByteString, BridgeQueue>,
}

/// A bridge session's queue: its bound, and the messages dropped past it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeQueue {
    /// Messages the session may hold (queued and in flight) before new ones are dropped.
    pub messages_max: usize,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
}

/// A connection's enhanced authentication.
#[derive(Debug)]
struct EnhancedAuth {
    method: ByteString,
    /// A re-authentication waiting for the client's next AUTH 0x18.
    exchange: Option<Box<dyn AuthExchange>>,
}

/// What a publish matched, for the v5 PUBACK/PUBREC "No matching subscribers" reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matched {
    Some,
    /// Only routes to peer nodes matched: whether a subscriber took it is up to their receipts
    /// (a peer whose subscriber's session has just moved to another node has none any more).
    PeersOnly,
    None,
}

impl Shard {
    pub fn new(id: ShardId, shards: u16, limits: Limits) -> Shard {
        assert!(id.0 < shards, "shard {id} outside a node of {shards} shards");
        let rates = Rates::new(limits.client_messages_per_sec_max, limits.client_bytes_per_sec_max);
        Shard {
            id,
            shards,
            limits,
            sessions: FastMap::default(),
            conns: FastMap::default(),
            subscribers: SubscriptionTrie::new(),
            local_routes: HashMap::new(),
            routes: SubscriptionTrie::new(),
            retained: TopicTree::new(),
            retained_bytes: 0,
            pending_subscribes: HashMap::new(),
            next_token: 0,
            shard_cursor: HashMap::new(),
            member_cursor: HashMap::new(),
            keepalive_timers: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            effects: Vec::new(),
            stats: ShardStats::default(),
            durable: None,
            held_acks: HeldAcks::new(),
            held_qos1: HeldQos1::default(),
            held_qos2: HeldQos2::new(),
            scratch_targets: FastMap::default(),
            backpressure: Backpressure::new(id),
            peers: Peers::default(),
            retained_sync: retained_sync::RetainedSync::default(),
            assigned_id_source: AssignedIdSource::default(),
            authorizer: None,
            throttle: rates.map(Throttle::new),
            time_base: None,
            enhanced_auth: FastMap::default(),
            client_events: None,
            bridge_queues: FastMap::default(),
        }
    }

    /// The access policy every client of this shard is held to from now on (`None`: none).
    pub fn set_authorizer(&mut self, authorizer: Option<Arc<dyn Authorizer>>) {
        self.authorizer = authorizer;
    }

    /// Makes `client_id` a bridge's session: its queue (queued and in flight) is bounded by
    /// `messages_max` messages rather than the client limits, past it new messages are dropped and
    /// counted for the bridge, and it never pauses a local publisher.
    pub fn set_bridge_queue(&mut self, client_id: &str, messages_max: usize) {
        let bridge = self.bridge_queues.entry(ByteString::from(client_id)).or_default();
        bridge.messages_max = messages_max;
    }

    /// A bridge session's queue bound and drop count, and the messages it holds (queued and in
    /// flight).
    pub fn bridge_queue(&self, client_id: &str) -> Option<(BridgeQueue, usize)> {
        let bridge = *self.bridge_queues.get(client_id)?;
        let held = self
            .sessions
            .get(client_id)
            .map_or(0, |s| s.held().queue.len() + s.held().inflight.len());
        Some((bridge, held))
    }

    /// A shard that stores persistent sessions, their messages, retained messages and delayed
    /// wills through [`Effect::Commit`], and holds acknowledgements until they are durable.
    pub fn with_storage(id: ShardId, shards: u16, limits: Limits, clock: WallClock) -> Shard {
        let mut shard = Shard::new(id, shards, limits);
        shard.durable = Some(Durable::new(clock));
        shard
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Limits for what happens from now on (a configuration reload): what is already queued
    /// stays queued, and budgets of rate-limited connections carry over to the new rates.
    /// Limits a CONNACK advertises (packet size, receive maximum, topic aliases) must not
    /// change under connected clients: the engine keeps them until a restart.
    pub fn set_limits(&mut self, limits: Limits) {
        let rates = Rates::new(limits.client_messages_per_sec_max, limits.client_bytes_per_sec_max);
        match (&mut self.throttle, rates) {
            (Some(throttle), Some(rates)) => throttle.set_rates(rates),
            (None, Some(rates)) => self.throttle = Some(Throttle::new(rates)),
            (Some(throttle), None) => {
                // No limit any more: whoever waited for its budget reads again.
                let resumed: Vec<ConnId> = throttle.throttled_conns().collect();
                self.throttle = None;
                for conn in resumed {
                    if !self.backpressure.is_paused(conn) {
                        self.effects.push(Effect::Resume(conn));
                    }
                }
            }
            (None, None) => {}
        }
        self.limits = limits;
    }

    /// The engine refused a CONNECT before it reached this shard's sessions: counts it.
    pub fn connect_refused(&mut self, cause: ConnectRefusal) {
        self.stats.connects_refused[cause as usize] += 1;
    }

    pub fn stats(&self) -> ShardStats {
        ShardStats {
            connections: self.conns.len() as u64,
            sessions: self.sessions.len() as u64,
            retained: self.retained.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Moves the effects produced so far into `into`.
    pub fn drain_effects(&mut self, into: &mut Vec<Effect>) {
        into.append(&mut self.effects);
    }

    /// Takes the bytes waiting for a connection's socket (empty if there are none).
    pub fn take_output(&mut self, conn: ConnId) -> BytesMut {
        match self.conns.get_mut(&conn) {
            Some(c) => {
                c.flush_requested = false;
                self.stats.bytes_sent += c.out.len() as u64;
                std::mem::take(&mut c.out)
            }
            None => BytesMut::new(),
        }
    }

    /// The engine wrote what [`Shard::take_output`] gave it: refill the window from the queue.
    pub fn output_written(&mut self, conn: ConnId, now: Instant) {
        if let Some(client_id) = self.conns.get(&conn).map(|c| c.client_id.clone()) {
            self.pump(&client_id, now);
            // Nearly every exchange ends with a write (an ack, a SUBACK, a PINGRESP): a session
            // that has just emptied its queues gives their memory back here.
            if let Some(session) = self.sessions.get_mut(&client_id) {
                session.release_if_empty();
            }
            if self.backpressure.is_congested(conn) {
                if self.over_low_water(&client_id, conn) {
                    self.backpressure.progressed(conn, now);
                } else {
                    let mut released = Vec::new();
                    self.backpressure.relieved(conn, &mut released);
                    self.release_waiters(released);
                }
            }
        }
    }

    /// The engine wrote part of what [`Shard::take_output`] gave it (the socket took some bytes,
    /// then was full): a congested subscriber still drains, so it is not stalled.
    pub fn output_progress(&mut self, conn: ConnId, now: Instant) {
        self.backpressure.progressed(conn, now);
    }

    /// Publishers this shard no longer holds: local ones may be read again (unless another
    /// shard holds them too), remote ones are told so.
    fn release_waiters(&mut self, released: Vec<Waiter>) {
        for waiter in released {
            if let Some(node) = waiter.node {
                let resume = Forward::Pace { shard: waiter.shard, conn: waiter.conn, pause: false };
                self.effects.push(Effect::Forward(node, resume));
            } else if waiter.shard != self.id {
                let resume = ShardMsg::Resume { conn: waiter.conn };
                self.effects.push(Effect::Mesh(waiter.shard, resume));
            } else if !self.is_paused(waiter.conn) {
                self.effects.push(Effect::Resume(waiter.conn));
            }
        }
    }

    /// `conn` is over its high-water mark: pause the publisher that fed it (telling its shard
    /// when it is on another).
    fn congested(&mut self, conn: ConnId, now: Instant) {
        if let Some(waiter) = self.backpressure.congested(conn, now) {
            if let Some(node) = waiter.node {
                let pause = Forward::Pace { shard: waiter.shard, conn: waiter.conn, pause: true };
                self.effects.push(Effect::Forward(node, pause));
            } else if waiter.shard != self.id {
                self.effects
                    .push(Effect::Mesh(waiter.shard, ShardMsg::Pause { conn: waiter.conn }));
            }
        }
    }

    /// Whether the engine must stop reading `conn`: a subscriber its publishes went to is over
    /// its limits and draining, or it is over its rate limit ([`Effect::Resume`] says when to
    /// read again).
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.backpressure.is_paused(conn) || self.is_throttled(conn)
    }

    /// Whether `conn` is over its rate limit (`max_client_message_rate`/`_byte_rate`).
    fn is_throttled(&self, conn: ConnId) -> bool {
        self.throttle.as_ref().is_some_and(|throttle| throttle.is_throttled(conn))
    }

    /// Seconds from the shard's time base to `now`, setting the base on first use.
    fn mark_time(&mut self, now: Instant) -> u32 {
        let base = *self.time_base.get_or_insert(now);
        u32::try_from(now.saturating_duration_since(base).as_secs()).unwrap_or(u32::MAX)
    }

    /// Time from the shard's time base to `now`.
    fn since_start(&self, now: Instant) -> Duration {
        self.time_base.map_or(Duration::ZERO, |base| now.saturating_duration_since(base))
    }

    /// Over the high-water mark: the output buffer full, or the queue half full.
    fn over_high_water(&self, client_id: &ByteString, conn: ConnId) -> bool {
        let out = self.conns.get(&conn).map_or(0, |c| c.out.len());
        let Some(session) = self.sessions.get(client_id) else { return false };
        let held = session.held();
        out >= self.limits.out_buffer_bytes_max
            || held.queue.len() >= self.limits.queued_messages_max / 2
            || held.queued_bytes >= self.limits.queued_bytes_max / 2
    }

    /// Still above the low-water mark: half the output buffer, a quarter of the queue.
    fn over_low_water(&self, client_id: &ByteString, conn: ConnId) -> bool {
        let out = self.conns.get(&conn).map_or(0, |c| c.out.len());
        let Some(session) = self.sessions.get(client_id) else { return false };
        let held = session.held();
        out >= self.limits.out_buffer_bytes_max / 2
            || held.queue.len() > self.limits.queued_messages_max / 4
            || held.queued_bytes > self.limits.queued_bytes_max / 4
    }

    /// `conn` is gone: it holds no publisher, waits for no subscriber, and has no rate budget.
    fn forget_pressure(&mut self, conn: ConnId) {
        if let Some(throttle) = &mut self.throttle {
            throttle.forget(conn);
        }
        let mut released = Vec::new();
        self.backpressure.forget(conn, &mut released);
        self.release_waiters(released);
    }

    // ---------------------------------------------------------------------------------------
    // Connecting
    // ---------------------------------------------------------------------------------------

    /// A CONNECT arrived for a client homed on this shard. Answers with CONNACK (and closes on a
    /// refusal); takes over an existing connection of the same client id.
    pub fn connect(&mut self, conn: ConnId, connect: Connect, now: Instant) {
        self.connect_from(conn, connect, None, now);
    }

    /// [`Shard::connect`] from the client at `peer`, which its connected event names (the
    /// engine passes it only while client events are on).
    pub fn connect_from(
        &mut self,
        conn: ConnId,
        mut connect: Connect,
        peer: Option<IpAddr>,
        now: Instant,
    ) {
        let version = connect.protocol;
        let terms = match self.connect_terms(&mut connect) {
            Ok(terms) => terms,
            Err(reason) => return self.refuse(conn, version, reason, now),
        };
        // The decoded CONNECT's strings are slices of the connection's first read buffer; what
        // outlives the CONNECT (the client id, the will) is copied out so that buffer can go.
        let client_id = ByteString::from(&*connect.client_id);
        if let Err(reason) = self.may_connect(&client_id, &connect) {
            return self.refuse(conn, version, reason, now);
        }
        // Take over an existing connection of this client.
        if let Some(old) = self.sessions.get(&client_id).and_then(|s| s.conn) {
            self.disconnect_with(old, ReasonCode::SESSION_TAKEN_OVER);
            let resumes = !connect.clean_start;
            let rule = WillRule::Takeover { session_resumes: resumes };
            self.detach(old, rule, Departure::Takeover, now);
        }
        let session_present = self.attach_session(conn, &client_id, &connect, &terms, now);
        self.open_conn(conn, &client_id, &mut connect, &terms, now);
        let mut properties = terms.connack_properties;
        if version.is_v5() {
            self.advertise_limits(&mut properties);
        }
        let connack =
            Packet::ConnAck(ConnAck { session_present, reason: ReasonCode::SUCCESS, properties });
        self.send(conn, &connack);
        self.resume(&client_id, now);
        if self.client_events.is_some() {
            let arrival = Arrival {
                version,
                keepalive_secs: terms.keepalive_secs,
                clean_start: connect.clean_start,
                expiry_secs: terms.expiry_secs,
                peer,
            };
            self.connected_event(conn, &client_id, arrival, now);
        }
    }

    /// What a CONNECT is granted (its enhanced authentication method, client id, keepalive and
    /// session expiry, and what the CONNACK must say about them), or the reason it is refused.
    /// An empty client id is replaced by an assigned one here.
    fn connect_terms(&mut self, connect: &mut Connect) -> Result<ConnectTerms, ReasonCode> {
        let v5 = connect.protocol.is_v5();
        let mut connack_properties = Properties::default();
        // The engine ran the method's exchange before the CONNECT got here (see `authorize`);
        // the CONNACK carries its last message. Without an authorizer vouching for the method,
        // the spec's answer is 0x8C.
        let auth_method = match connect.properties.authentication_method.as_deref() {
            None => None,
            Some(method)
                if self
                    .authorizer
                    .as_ref()
                    .is_some_and(|authorizer| authorizer.supports_auth_method(method)) =>
            {
                let method = ByteString::from(method);
                connack_properties.authentication_method = Some(method.clone());
                connack_properties.authentication_data =
                    connect.properties.authentication_data.as_deref().map(Bytes::copy_from_slice);
                Some(method)
            }
            Some(_) => return Err(ReasonCode::BAD_AUTHENTICATION_METHOD),
        };
        if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            let Some(assigned) = self.assign_client_id() else {
                tracing::error!(shard = %self.id, "no random bits for an assigned client id");
                return Err(ReasonCode::SERVER_UNAVAILABLE);
            };
            if v5 {
                connack_properties.assigned_client_identifier = Some(assigned.clone());
            }
            connect.client_id = assigned;
        }
        assert_eq!(
            home_shard(&connect.client_id, self.shards),
            self.id,
            "a connection reached a shard that is not its client's home"
        );
        let keepalive_secs = self.granted_keepalive(connect, &mut connack_properties)?;
        let expiry_secs = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        }
        .min(self.limits.session_expiry_secs_max);
        if v5 && connect.properties.session_expiry_interval.unwrap_or(0) > expiry_secs {
            connack_properties.session_expiry_interval = Some(expiry_secs);
        }
        Ok(ConnectTerms { auth_method, keepalive_secs, expiry_secs, connack_properties })
    }

    /// The keepalive a CONNECT gets: its own within `keepalive_secs_max`; a v5 client is told a
    /// shorter one (Server Keep Alive), a 3.1.1 client cannot be and is refused.
    fn granted_keepalive(
        &self,
        connect: &Connect,
        connack_properties: &mut Properties,
    ) -> Result<u16, ReasonCode> {
        let max = self.limits.keepalive_secs_max;
        Ok(match (connect.protocol.is_v5(), connect.keep_alive_secs) {
            (v5, secs) if secs <= max && (secs > 0 || !v5) => secs,
            // 3.1.1 cannot be told a shorter keepalive: refuse as Mosquitto does.
            (false, _) => return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
            (true, 0) if max == u16::MAX => 0,
            (true, _) => {
                connack_properties.server_keep_alive = Some(max);
                max
            }
        })
    }

    /// Whether the CONNECT's user may have this session and publish its will.
    fn may_connect(&mut self, client_id: &ByteString, connect: &Connect) -> Result<(), ReasonCode> {
        if let Some(will) = &connect.will {
            let refused = is_system_topic(&will.topic)
                || self.authorizer.as_ref().is_some_and(|authorizer| {
                    !authorizer.can_publish(connect.username.as_deref(), client_id, &will.topic)
                });
            if refused {
                return Err(ReasonCode::NOT_AUTHORIZED);
            }
        }
        // A session belongs to its user: another user's client neither takes it over nor
        // ends it with a clean start.
        if self.session_of_another_user(client_id, connect.username.as_deref()) {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        Ok(())
    }

    /// Gives `conn` its session: a new one, or the stored one it resumes (a clean start ends
    /// it first). Whether a session was present.
    fn attach_session(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        connect: &Connect,
        terms: &ConnectTerms,
        now: Instant,
    ) -> bool {
        let session_present = if connect.clean_start {
            self.end_session(client_id, now);
            false
        } else {
            self.sessions.contains_key(client_id)
        };
        let expiry_secs = terms.expiry_secs;
        let session =
            self.sessions.entry(client_id.clone()).or_insert_with(|| Session::new(expiry_secs));
        session.expiry_secs = expiry_secs;
        session.conn = Some(conn);
        session.username = match &self.authorizer {
            Some(_) => connect.username.as_deref().map(Box::from),
            None => None,
        };
        session.epoch += 1;
        session.disconnected_at = None;
        // A will waiting for its delay is cancelled by the client coming back.
        let cancelled_will = session.take_pending_will().is_some();
        let was_stored = session.stored;
        if self.stores(client_id) {
            if cancelled_will {
                self.persist_will(client_id, None);
            }
            self.persist_session(client_id);
        } else if was_stored {
            // Resumed with a Session Expiry Interval of 0: it ends with this connection, so the
            // store forgets it now.
            self.unpersist_session(client_id);
        }
        session_present
    }

    /// Registers the connection itself: its will, keepalive, flow-control window and limits.
    fn open_conn(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        connect: &mut Connect,
        terms: &ConnectTerms,
        now: Instant,
    ) {
        let will_delay_secs =
            connect.will.as_ref().and_then(|will| will.properties.will_delay_interval).unwrap_or(0);
        let will = connect.will.take().map(|will| will_message(will, client_id, now));
        let connected_secs = self.mark_time(now);
        let window = connect
            .properties
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(self.limits.inflight_max)
            .max(1);
        let c = Conn {
            client_id: client_id.clone(),
            version: connect.protocol,
            keepalive_grace_ms: u32::from(terms.keepalive_secs) * 1500,
            last_seen: now,
            out: BytesMut::new(),
            flush_requested: false,
            closing: false,
            connected_secs,
            will,
            will_delay_secs,
            window,
            packet_bytes_max: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
            alias_out_max: connect.properties.topic_alias_maximum.unwrap_or(0),
            aliases: None,
        };
        if let Some(grace) = c.keepalive_grace() {
            self.keepalive_timers.push(Reverse((now + grace, conn)));
        }
        self.conns.insert(conn, c);
        if let Some(method) = terms.auth_method.clone() {
            self.enhanced_auth.insert(conn, EnhancedAuth { method, exchange: None });
        }
    }

    /// What a v5 CONNACK tells every client about this broker's limits and features.
    fn advertise_limits(&self, properties: &mut Properties) {
        properties.receive_maximum = Some(self.limits.inflight_max);
        properties.maximum_packet_size = Some(self.limits.packet_bytes_max);
        properties.topic_alias_maximum = Some(self.limits.topic_alias_max);
        properties.retain_available = Some(true);
        properties.wildcard_subscription_available = Some(true);
        properties.subscription_identifier_available = Some(true);
        properties.shared_subscription_available = Some(true);
    }

    /// Whether `client_id` has a session here (online or stored) of a user other than
    /// `username`, while users are told apart (an authorizer is set) and
    /// `session_takeover_any_user` is off.
    pub fn belongs_to_another_user(&self, client_id: &str, username: Option<&str>) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|session| self.is_another_user(session.username.as_deref(), username))
    }

    /// [`Shard::belongs_to_another_user`] for a CONNECT, counted and logged when it is.
    fn session_of_another_user(&mut self, client_id: &ByteString, username: Option<&str>) -> bool {
        if !self.belongs_to_another_user(client_id, username) {
            return false;
        }
        self.stats.connects_refused[ConnectRefusal::SessionOfAnotherUser as usize] += 1;
        tracing::warn!(
            shard = %self.id,
            user = ?username,
            "refused a CONNECT: client id {client_id:?} has a session of another user"
        );
        true
    }

    /// Whether a session of `owner` is another user's than `username`'s (see
    /// [`Shard::belongs_to_another_user`]). A session made without a user (by an anonymous
    /// client, or before users were told apart) belongs to nobody: its client, logging in
    /// now, adopts it.
    pub fn is_another_user(&self, owner: Option<&str>, username: Option<&str>) -> bool {
        if self.authorizer.is_none() || self.limits.session_takeover_any_user {
            return false;
        }
        owner.is_some() && owner != username
    }

    /// A client id for a client that sent none, homed on this shard: 128 random bits (22
    /// base-62 digits) and the first suffix that homes it here. Unguessable, so that nobody
    /// reaches another client's session by guessing its id, and unique across a cluster
    /// without naming the node. Short, as a CONNACK that carries it must fit a client's
    /// Maximum Packet Size (as small as 64 bytes).
    /// `None` when the random source failed (the connect is refused rather than given a weak
    /// id).
    fn assign_client_id(&mut self) -> Option<ByteString> {
        let random = (self.assigned_id_source.0)()?;
        let mut attempt: u64 = 0;
        loop {
            let candidate = format!("{}-{attempt}", base62(random));
            if home_shard(&candidate, self.shards) == self.id {
                return Some(ByteString::from(candidate));
            }
            attempt += 1;
        }
    }

    /// Where assigned client ids get their randomness: the engine passes the OS's CSPRNG.
    /// Without it (tests), a counter: unique, not secret.
    pub fn set_assigned_id_source(&mut self, source: Box<dyn FnMut() -> Option<u128> + Send>) {
        self.assigned_id_source = AssignedIdSource(source);
    }

    /// Sends CONNACK with a failure and closes, without touching any session.
    fn refuse(&mut self, conn: ConnId, version: ProtocolVersion, reason: ReasonCode, now: Instant) {
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: Properties::default(),
        });
        let mut out = BytesMut::new();
        // A CONNACK without properties always encodes.
        let _ = packet.encode(version, &mut out);
        self.conns.insert(
            conn,
            Conn {
                client_id: ByteString::new(),
                version,
                keepalive_grace_ms: 0,
                last_seen: now,
                out,
                flush_requested: false,
                closing: true,
                connected_secs: 0,
                will: None,
                will_delay_secs: 0,
                window: 1,
                packet_bytes_max: u32::MAX,
                alias_out_max: 0,
                aliases: None,
            },
        );
        self.effects.push(Effect::Close(conn));
    }

    /// After CONNACK: resend what was in flight (PUBLISH with DUP, or PUBREL), then the queue.
    fn resume(&mut self, client_id: &ByteString, now: Instant) {
        let Some(session) = self.sessions.get_mut(client_id) else { return };
        let Some(conn) = session.conn else { return };
        let inflight: Vec<Outgoing> = session.held().inflight.iter().cloned().collect();
        for out in inflight {
            match out.stage {
                OutgoingStage::Published => {
                    self.write_publish(conn, &out.delivery, Some(out.packet_id), true, now);
                }
                OutgoingStage::Released => {
                    self.send(conn, &Packet::PubRel(Ack::success(out.packet_id)));
                }
            }
        }
        self.pump(client_id, now);
    }

    // ---------------------------------------------------------------------------------------
    // Packets after CONNECT
    // ---------------------------------------------------------------------------------------

    /// A packet from a connected client.
    pub fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closing {
            return;
        }
        c.last_seen = now;
        let version = c.version;
        // Measured, not re-encoded: the packet's size on the wire.
        let bytes = packet.encoded_len(version).unwrap_or(0);
        self.stats.bytes_received += bytes as u64;
        let messages = u32::from(matches!(packet, Packet::Publish(_)));
        if let Some(throttle) = &mut self.throttle {
            if throttle.charge(conn, messages, bytes, now) {
                self.stats.throttled += 1;
            }
        }
        let publisher = self.backpressure.local(conn);
        self.paced_by(Some(publisher), |shard| shard.handle_packet(conn, packet, now));
    }

    fn handle_packet(&mut self, conn: ConnId, packet: Packet, now: Instant) {
        match packet {
            Packet::Publish(publish) => self.publish(conn, publish, now),
            Packet::PubAck(ack) => self.puback(conn, ack, now),
            Packet::PubRec(ack) => self.pubrec(conn, ack, now),
            Packet::PubRel(ack) => self.pubrel(conn, ack),
            Packet::PubComp(ack) => self.pubcomp(conn, ack, now),
            Packet::Subscribe(subscribe) => self.subscribe(conn, subscribe, now),
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(conn, unsubscribe, now),
            Packet::PingReq => self.send(conn, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.client_disconnect(conn, disconnect, now),
            Packet::Connect(_) => self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now),
            Packet::Auth(auth) => self.reauthenticate(conn, auth, now),
            // The server-to-client packets are never valid from a client.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now)
            }
        }
    }

    /// An AUTH from a connected client: a re-authentication with the CONNECT's method (0x19
    /// starts it, 0x18 continues it), answered with AUTH 0x18 (continue) or 0x00 (success). Other
    /// packets keep flowing meanwhile. AUTH on a connection without enhanced authentication, with
    /// another method or out of turn is a protocol error (DISCONNECT 0x82); a failed exchange,
    /// or one that proves another user, is DISCONNECT 0x87 (the method's reason code).
    fn reauthenticate(&mut self, conn: ConnId, auth: Auth, now: Instant) {
        let Some(state) = self.enhanced_auth.get_mut(&conn) else {
            return self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
        };
        if auth.properties.authentication_method.as_deref() != Some(&*state.method) {
            return self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
        }
        let data = auth.properties.authentication_data.as_deref();
        let step = match (auth.reason, state.exchange.take()) {
            (ReasonCode::RE_AUTHENTICATE, None) => match &self.authorizer {
                Some(authorizer) => authorizer.start_authentication(&state.method, data),
                None => AuthStep::Failure(ReasonCode::BAD_AUTHENTICATION_METHOD),
            },
            (ReasonCode::CONTINUE_AUTHENTICATION, Some(exchange)) => exchange.step(data),
            // 0x00 from a client, 0x19 during an exchange, 0x18 without one.
            _ => return self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now),
        };
        let method = state.method.clone();
        let (reason, data) = match step {
            AuthStep::Continue { exchange, data } => {
                state.exchange = Some(exchange);
                (ReasonCode::CONTINUE_AUTHENTICATION, Some(data))
            }
            AuthStep::Success { username, data } => {
                let client_id = self.conns.get(&conn).map(|c| c.client_id.clone());
                let same_user = client_id
                    .is_some_and(|client_id| self.username_of(&client_id) == Some(&*username));
                if !same_user {
                    return self.protocol_violation(conn, ReasonCode::NOT_AUTHORIZED, now);
                }
                (ReasonCode::SUCCESS, data)
            }
            AuthStep::Failure(reason) => return self.protocol_violation(conn, reason, now),
        };
        let properties = Properties {
            authentication_method: Some(method),
            authentication_data: data,
            ..Properties::default()
        };
        self.send(conn, &Packet::Auth(Auth { reason, properties }));
    }

    /// The connection's bytes could not be decoded: DISCONNECT with the error's reason code (v5)
    /// and close; the will is published.
    pub fn decode_error(&mut self, conn: ConnId, error: &DecodeError, now: Instant) {
        self.protocol_violation(conn, error.reason_code(), now);
    }

    fn protocol_violation(&mut self, conn: ConnId, reason: ReasonCode, now: Instant) {
        self.disconnect_with(conn, reason);
        self.detach(conn, WillRule::Publish, Departure::ProtocolError(reason), now);
    }

    /// The socket closed or failed under the connection: an abnormal close (the will is sent).
    pub fn connection_lost(&mut self, conn: ConnId, now: Instant) {
        if self.conns.get(&conn).is_some_and(|c| !c.closing) {
            self.detach(conn, WillRule::Publish, Departure::Lost, now);
        }
        self.conns.remove(&conn);
        self.enhanced_auth.remove(&conn);
        self.held_qos1.remove(&conn);
        self.forget_pressure(conn);
        self.forget_event_peer(conn);
    }

    /// The engine closed a connection after [`Effect::Close`].
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.enhanced_auth.remove(&conn);
        self.held_qos1.remove(&conn);
        self.forget_pressure(conn);
        self.forget_event_peer(conn);
    }

    fn client_disconnect(&mut self, conn: ConnId, disconnect: Disconnect, now: Instant) {
        let Some(c) = self.conns.get(&conn) else { return };
        let client_id = c.client_id.clone();
        if let Some(new_expiry) = disconnect.properties.session_expiry_interval {
            let current = self.sessions.get(&client_id).map_or(0, |s| s.expiry_secs);
            if current == 0 && new_expiry > 0 {
                // [MQTT-3.14.2-2]: a session created with expiry 0 cannot be extended here.
                return self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
            }
            if let Some(session) = self.sessions.get_mut(&client_id) {
                session.expiry_secs = new_expiry.min(self.limits.session_expiry_secs_max);
            }
        }
        let rule = if disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
            WillRule::Publish
        } else {
            WillRule::Discard
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
        self.effects.push(Effect::Close(conn));
        self.detach(conn, rule, Departure::Normal(disconnect.reason), now);
    }

    /// Queues a server DISCONNECT (v5 only) and marks the connection for closing.
    fn disconnect_with(&mut self, conn: ConnId, reason: ReasonCode) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.closing {
            return;
        }
        if c.version.is_v5() {
            self.send(conn, &Packet::Disconnect(Disconnect::new(reason)));
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
        self.effects.push(Effect::Close(conn));
    }

    /// Sends DISCONNECT 0x8B (server shutting down) to every v5 client and closes every
    /// connection. Sessions stay (for the storage issue to persist).
    pub fn shutdown(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for &conn in &conns {
            self.disconnect_with(conn, ReasonCode::SERVER_SHUTTING_DOWN);
        }
        // After every connection is closing, so the events reach only peer nodes' subscribers
        // (this node's are leaving too).
        if self.client_events.is_some() {
            for conn in conns {
                self.disconnected_event(conn, Departure::ServerShutdown, now);
            }
        }
    }

    /// The node is being drained: every client is told to use another server (v5: DISCONNECT
    /// 0x9C, with `reference(client_id)` as its Server Reference when there is one; 3.1.1 has
    /// no way to say it, and is closed) and disconnected. Its session stays, without its will
    /// (the session resumes on another node), to be handed to the node its client connects to
    /// next, or that the node invites to take it. Returns how many were disconnected.
    pub fn drain_connections(
        &mut self,
        reference: impl Fn(&str) -> Option<ByteString>,
        now: Instant,
    ) -> usize {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        let mut drained = 0;
        for conn in conns {
            let Some(c) = self.conns.get(&conn) else { continue };
            if c.closing {
                continue;
            }
            if c.version.is_v5() {
                let mut disconnect = Disconnect::new(ReasonCode::USE_ANOTHER_SERVER);
                disconnect.properties.server_reference = reference(&c.client_id);
                self.send(conn, &Packet::Disconnect(disconnect));
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.closing = true;
            }
            self.effects.push(Effect::Close(conn));
            let rule = WillRule::Takeover { session_resumes: true };
            self.detach(conn, rule, Departure::Drained, now);
            drained += 1;
        }
        drained
    }

    /// Separates a connection from its session (the connection is closing or gone): publishes
    /// its disconnected event (saying why: `departure`), then handles the will and the session's
    /// expiry.
    fn detach(&mut self, conn: ConnId, rule: WillRule, departure: Departure, now: Instant) {
        if self.client_events.is_some() {
            self.disconnected_event(conn, departure, now);
        }
        self.release_session(conn, rule, now);
    }

    /// [`Shard::detach`] after the event: the will and the session's expiry.
    fn release_session(&mut self, conn: ConnId, rule: WillRule, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.closing = true;
        let will = c.will.take();
        let will_delay_secs = c.will_delay_secs;
        let client_id = c.client_id.clone();
        let Some(session) = self.sessions.get_mut(&client_id) else { return };
        if session.conn != Some(conn) {
            return;
        }
        session.conn = None;
        session.epoch += 1;
        session.disconnected_at = Some(now);
        let expiry_secs = session.expiry_secs;
        let epoch = session.epoch;
        // QoS 0 messages are not kept for an offline session.
        if let Some(held) = session.held_if_any() {
            held.queue.retain(|d| d.qos != QoS::AtMostOnce);
            held.queued_bytes = held.queue.iter().map(|d| d.message.cost_bytes()).sum();
        }
        session.release_if_empty();

        let send_will = match rule {
            WillRule::Publish => true,
            WillRule::Discard => false,
            // Taken over: the will goes out unless the session continues and the will waits.
            WillRule::Takeover { session_resumes } => !(session_resumes && will_delay_secs > 0),
        };
        let will = will.filter(|_| send_will);
        if expiry_secs == 0 {
            if let Some(will) = will {
                self.route(will, None, now);
            }
            self.end_session(&client_id, now);
            self.effects.push(Effect::SessionEnded(client_id));
            return;
        }
        if let Some(will) = will {
            if will_delay_secs == 0 {
                self.route(will, None, now);
            } else {
                let due = now + Duration::from_secs(u64::from(will_delay_secs));
                session.held_mut().pending_will = Some((will.clone(), due));
                let timer = Timer::Will { client_id: client_id.clone(), epoch };
                self.timers.push(Reverse((due, timer)));
                self.persist_will(&client_id, Some((&will, due)));
            }
        }
        // The disconnection time makes the expiry keep counting across a restart.
        self.persist_session(&client_id);
        if expiry_secs != u32::MAX {
            let due = now + Duration::from_secs(u64::from(expiry_secs));
            self.timers.push(Reverse((due, Timer::Expiry { client_id, epoch })));
        }
    }

    /// Ends a session: its subscriptions and queue go; a pending will is published now.
    fn end_session(&mut self, client_id: &ByteString, now: Instant) {
        if self.sessions.get(client_id).is_some_and(|s| s.stored) {
            self.unpersist_session(client_id);
        }
        let Some(mut session) = self.sessions.remove(client_id) else { return };
        let held = session.take_held();
        if let Some((will, _)) = held.pending_will {
            self.route(will, None, now);
        }
        for (filter, _) in held.subscriptions {
            self.remove_subscriber(client_id, &filter);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------------------------------

    /// Runs what is due at `now`: keepalive timeouts, delayed wills, session expiry.
    pub fn tick(&mut self, now: Instant) {
        let mut released = Vec::new();
        self.backpressure.stall_overdue(now, &mut released);
        self.release_waiters(released);
        let mut lapsed = Vec::new();
        self.backpressure.expire_peer_holds(now, &mut lapsed);
        for conn in lapsed {
            if !self.is_throttled(conn) {
                self.effects.push(Effect::Resume(conn));
            }
        }
        if let Some(throttle) = &mut self.throttle {
            let mut resumed = Vec::new();
            throttle.tick(now, &mut resumed);
            for conn in resumed {
                if !self.backpressure.is_paused(conn) {
                    self.effects.push(Effect::Resume(conn));
                }
            }
        }
        // The two heaps are merged in time order; at the same instant keepalive checks go first.
        loop {
            let keepalive = self.keepalive_timers.peek().map(|Reverse((due, _))| *due);
            let session = self.timers.peek().map(|Reverse((due, _))| *due);
            match (keepalive, session) {
                (Some(keepalive), session)
                    if keepalive <= now && session.is_none_or(|session| keepalive <= session) =>
                {
                    let Some(Reverse((_, conn))) = self.keepalive_timers.pop() else { break };
                    self.check_keepalive(conn, now);
                }
                (_, Some(session)) if session <= now => {
                    let Some(Reverse((_, timer))) = self.timers.pop() else { break };
                    match timer {
                        Timer::Will { client_id, epoch } => self.will_due(&client_id, epoch, now),
                        Timer::Expiry { client_id, epoch } => {
                            self.session_due(&client_id, epoch, now)
                        }
                    }
                }
                _ => break,
            }
        }
        self.expire_tombstones(now);
        self.shrink_oversized_tables();
    }

    /// Gives back the room a burst left in the shard's largest tables: after a reconnect storm
    /// the connection map and the keepalive heap stay sized for every connection it brought
    /// (they never shrink by themselves). A table more than four times larger than it needs to
    /// be, and above [`SHRINK_FLOOR`] entries, shrinks to twice its length; on a tick where
    /// nothing shrinks this is a few capacity checks.
    fn shrink_oversized_tables(&mut self) {
        fn target(len: usize, capacity: usize) -> Option<usize> {
            (capacity > SHRINK_FLOOR && capacity / 4 > len).then_some(len * 2)
        }
        if let Some(to) = target(self.conns.len(), self.conns.capacity()) {
            self.conns.shrink_to(to);
        }
        if let Some(to) = target(self.sessions.len(), self.sessions.capacity()) {
            self.sessions.shrink_to(to);
        }
        if let Some(to) = target(self.keepalive_timers.len(), self.keepalive_timers.capacity()) {
            self.keepalive_timers.shrink_to(to);
        }
        if let Some(to) = target(self.timers.len(), self.timers.capacity()) {
            self.timers.shrink_to(to);
        }
    }

    /// When the next timer is due, for the engine's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        let keepalive = self.keepalive_timers.peek().map(|Reverse((due, _))| *due);
        let session = self.timers.peek().map(|Reverse((due, _))| *due);
        let throttle = self.throttle.as_ref().and_then(Throttle::next_deadline);
        let stall = self.backpressure.next_deadline();
        keepalive.into_iter().chain(session).chain(throttle).chain(stall).min()
    }

    fn check_keepalive(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get(&conn) else { return };
        let (Some(grace), false) = (c.keepalive_grace(), c.closing) else { return };
        let due = c.last_seen + grace;
        if due > now {
            self.keepalive_timers.push(Reverse((due, conn)));
            return;
        }
        self.disconnect_with(conn, ReasonCode::KEEP_ALIVE_TIMEOUT);
        self.detach(conn, WillRule::Publish, Departure::KeepaliveTimeout, now);
    }

    /// The current disconnected period of a session, if `epoch` is it.
    fn offline_session(&mut self, client_id: &ByteString, epoch: u64) -> Option<&mut Session> {
        self.sessions.get_mut(client_id).filter(|s| s.epoch == epoch && s.conn.is_none())
    }

    fn will_due(&mut self, client_id: &ByteString, epoch: u64, now: Instant) {
        let Some(session) = self.offline_session(client_id, epoch) else { return };
        let will = session.take_pending_will();
        session.release_if_empty();
        if let Some((will, _)) = will {
            self.persist_will(client_id, None);
            self.route(will, None, now);
        }
    }

    fn session_due(&mut self, client_id: &ByteString, epoch: u64, now: Instant) {
        if self.offline_session(client_id, epoch).is_some() {
            self.end_session(client_id, now);
            self.effects.push(Effect::SessionEnded(client_id.clone()));
        }
    }
}

/// What happens to a connection's will when it detaches from its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WillRule {
    Publish,
    Discard,
    Takeover { session_resumes: bool },
}

// -------------------------------------------------------------------------------------------
// Output
// -------------------------------------------------------------------------------------------

impl Shard {
    /// Encodes a packet into the connection's output buffer and asks for a flush.
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closing && !matches!(packet, Packet::Disconnect(_)) {
            return;
        }
        if packet.encode(c.version, &mut c.out).is_err() {
            // Only broker-built packets reach here; one that cannot be encoded is a bug, but the
            // client must not pay for it with a panic in the shard.
            tracing::error!(?packet, "could not encode a broker-built packet");
            return;
        }
        if !c.flush_requested {
            c.flush_requested = true;
            self.effects.push(Effect::Flush(conn));
        }
    }

    /// Writes one PUBLISH for a delivery: per-subscriber QoS, retain flag, subscription
    /// identifiers, remaining expiry and topic alias. Returns false if the client's Maximum
    /// Packet Size does not allow it (it is then dropped, as the spec requires).
    fn write_publish(
        &mut self,
        conn: ConnId,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        let message = &delivery.message;
        // Most messages carry no properties for this client (any 3.x client; a v5 client
        // without aliases, for a message without properties, expiry or subscription ids):
        // write them straight from the message's fields.
        let plain = !c.version.is_v5()
            || (c.alias_out_max == 0
                && delivery.subscription_ids.is_empty()
                && message.expires_at.is_none()
                && message.properties.is_empty());
        if plain {
            let publish = PlainPublish {
                dup,
                qos: delivery.qos,
                retain: delivery.retain,
                topic: message.topic.as_bytes(),
                packet_id,
                payload: &message.payload,
            };
            if publish.encoded_len(c.version) > c.packet_bytes_max as usize {
                self.stats.dropped_too_large += 1;
                return false;
            }
            if c.closing {
                return true;
            }
            if let Err(error) = publish.encode(c.version, &mut c.out) {
                tracing::error!(%error, "could not encode a forwarded PUBLISH");
                return false;
            }
            self.stats.messages_sent[delivery.qos as usize] += 1;
            self.stats.payload_bytes_sent[delivery.qos as usize] += message.payload.len() as u64;
            if !c.flush_requested {
                c.flush_requested = true;
                self.effects.push(Effect::Flush(conn));
            }
            return true;
        }
        let mut properties = message.properties.clone();
        properties.subscription_identifiers.clone_from(&delivery.subscription_ids);
        properties.message_expiry_interval = message.remaining_expiry_secs(now);
        let mut topic = message.topic.clone();
        // Aliases are assigned on first use and never replaced; a resent PUBLISH keeps its topic.
        // A new alias is recorded only once its PUBLISH is written (below): the client learns an
        // alias from the PUBLISH that carries it with the topic, so one dropped as too large
        // must not leave it assigned.
        let mut new_alias = None;
        if c.alias_out_max > 0 && !dup {
            let alias_out_max = usize::from(c.alias_out_max);
            let aliases = &mut c.aliases().outgoing;
            match aliases.get(&topic) {
                Some(&alias) => {
                    properties.topic_alias = Some(alias);
                    topic = ByteString::new();
                }
                None if aliases.len() < alias_out_max => {
                    let alias = aliases.len() as u16 + 1;
                    // A copy, so that the alias keeps no message's buffer alive.
                    new_alias = Some((ByteString::from(&*topic), alias));
                    properties.topic_alias = Some(alias);
                }
                None => {}
            }
        }
        let packet = Packet::Publish(Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            packet_id,
            properties,
            payload: message.payload.clone(),
        });
        match packet.encoded_len(c.version) {
            Ok(len) if len <= c.packet_bytes_max as usize => {}
            _ => {
                self.stats.dropped_too_large += 1;
                return false;
            }
        }
        if let Some((topic, alias)) = new_alias {
            if !c.closing {
                c.aliases().outgoing.insert(topic, alias);
            }
        }
        self.stats.messages_sent[delivery.qos as usize] += 1;
        self.stats.payload_bytes_sent[delivery.qos as usize] += message.payload.len() as u64;
        self.send(conn, &packet);
        true
    }
}

// -------------------------------------------------------------------------------------------
// Inbound publishes and acknowledgements
// -------------------------------------------------------------------------------------------

impl Shard {
    fn publish(&mut self, conn: ConnId, mut publish: Publish, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let v5 = c.version.is_v5();
        // Topic aliases (client to server).
        if let Some(alias) = publish.properties.topic_alias {
            if alias > self.limits.topic_alias_max {
                return self.protocol_violation(conn, ReasonCode::TOPIC_ALIAS_INVALID, now);
            }
            if publish.topic.is_empty() {
                match c.aliases.as_ref().and_then(|aliases| aliases.incoming.get(&alias)) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now),
                }
            } else {
                // A copy: the decoded topic is a slice of the PUBLISH frame, and kept for the
                // alias it would keep the whole frame (payload and all) alive.
                c.aliases().incoming.insert(alias, ByteString::from(&*publish.topic));
            }
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-6]: a client never sends subscription identifiers.
            return self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
        }
        if publish.topic.split('/').count() > self.limits.topic_levels_max {
            return self.protocol_violation(conn, ReasonCode::TOPIC_NAME_INVALID, now);
        }
        let client_id = c.client_id.clone();
        let packet_id = publish.packet_id;
        self.stats.messages_received[publish.qos as usize] += 1;
        self.stats.payload_bytes_received[publish.qos as usize] += publish.payload.len() as u64;
        if is_system_topic(&publish.topic) || !self.may_publish(&client_id, &publish.topic) {
            return self.refuse_publish(conn, v5, publish.qos, packet_id);
        }

        if self.over_receive_maximum(conn, &client_id, publish.qos, packet_id, v5) {
            return self.protocol_violation(conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, now);
        }
        if publish.qos == QoS::ExactlyOnce {
            let Some(packet_id) = packet_id else { return };
            let Some(session) = self.sessions.get_mut(&client_id) else { return };
            if session.held().incoming_qos2.contains(&packet_id.get()) {
                // A resend before PUBREL: acknowledge again, deliver nothing twice. If the first
                // PUBREC is still held for its commit, it goes to this connection when the
                // commit ends (success or refusal), not now.
                if !self.hold_qos2_resend(&client_id, packet_id, conn) {
                    self.send(conn, &Packet::PubRec(Ack::success(packet_id)));
                }
                return;
            }
            session.held_mut().incoming_qos2.insert(packet_id.get());
        }
        let writes_before = self.queued_ops();
        if publish.qos == QoS::ExactlyOnce {
            if let Some(packet_id) = packet_id {
                self.persist_incoming_qos2(&client_id, packet_id.get(), true);
            }
        }

        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        let message = Arc::new(
            Message {
                topic: publish.topic,
                payload: publish.payload,
                qos: publish.qos,
                retain: publish.retain,
                properties: forwarded_properties(&publish.properties),
                expires_at,
                publisher: client_id,
            }
            .compacted(),
        );
        let qos = publish.qos;
        // Copies sent to other shards ask for receipts when the acknowledgement may have to wait
        // for their writes.
        let token =
            (self.durable.is_some() && qos != QoS::AtMostOnce).then(|| self.new_ack_token());
        let (matched, receipts) = self.route(message, token, now);
        let Some(packet_id) = packet_id else { return };
        let reason = match (v5, matched) {
            (true, Matched::None) => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            _ => ReasonCode::SUCCESS,
        };
        let wrote = self.queued_ops() > writes_before;
        let peers_only = matched == Matched::PeersOnly;
        let ack = durable::InboundAck { conn, packet_id, qos, reason, peers_only };
        self.acknowledge(AckTo::Client(ack), token.unwrap_or(0), wrote, receipts, now);
    }

    /// Whether a PUBLISH would exceed the Receive Maximum the CONNACK gave [MQTT-3.3.4-9]: QoS 1
    /// and 2 PUBLISHes not yet answered count against it (a resend of an unreleased QoS 2 id is
    /// not a new one). A 3.1.1 client is told no Receive Maximum: only its unreleased QoS 2 ids
    /// are bounded there, and its QoS 1 publishes waiting for a commit are not held against it.
    fn over_receive_maximum(
        &self,
        conn: ConnId,
        client_id: &ByteString,
        qos: QoS,
        packet_id: Option<PacketId>,
        v5: bool,
    ) -> bool {
        if !(qos == QoS::ExactlyOnce || (v5 && qos == QoS::AtLeastOnce)) {
            return false;
        }
        let (unreleased, resend) = self.sessions.get(client_id).map_or((0, false), |s| {
            let qos2 = &s.held().incoming_qos2;
            let resend =
                qos == QoS::ExactlyOnce && packet_id.is_some_and(|id| qos2.contains(&id.get()));
            (qos2.len(), resend)
        });
        let held =
            if v5 { usize::from(self.held_qos1.get(&conn).copied().unwrap_or(0)) } else { 0 };
        !resend && held + unreleased >= usize::from(self.limits.inflight_max)
    }

    /// Answers a PUBLISH the ACL refuses, which is dropped: MQTT 5 says 0x87 in its PUBACK or
    /// PUBREC; 3.1.1 has no way to say no, so its flow completes as if it were delivered
    /// (as Mosquitto does).
    fn refuse_publish(&mut self, conn: ConnId, v5: bool, qos: QoS, packet_id: Option<PacketId>) {
        self.stats.dropped_not_authorized += 1;
        let Some(packet_id) = packet_id else { return };
        let reason = if v5 { ReasonCode::NOT_AUTHORIZED } else { ReasonCode::SUCCESS };
        let ack = Ack { packet_id, reason, properties: Properties::default() };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(conn, &Packet::PubAck(ack)),
            // Its PUBREL gets PUBCOMP all the same (3.1.1 carries no reason code).
            QoS::ExactlyOnce => self.send(conn, &Packet::PubRec(ack)),
        }
    }

    /// The user name and client id of the session `conn` is attached to: the engine asks an
    /// ACL service about a client's packets before it feeds them here.
    pub fn client_of(&self, conn: ConnId) -> Option<(Option<&str>, &str)> {
        let client_id = &self.conns.get(&conn)?.client_id;
        Some((self.username_of(client_id), client_id))
    }

    /// The topic `conn`'s client-to-server Topic Alias `alias` stands for, if the client set it
    /// (the engine asks an ACL service about a PUBLISH that names its topic by alias only).
    pub fn alias_topic(&self, conn: ConnId, alias: u16) -> Option<&str> {
        let aliases = self.conns.get(&conn)?.aliases.as_ref()?;
        aliases.incoming.get(&alias).map(|topic| &**topic)
    }

    fn username_of(&self, client_id: &str) -> Option<&str> {
        self.sessions.get(client_id).and_then(|session| session.username.as_deref())
    }

    fn may_publish(&self, client_id: &str, topic: &str) -> bool {
        let Some(authorizer) = &self.authorizer else { return true };
        authorizer.can_publish(self.username_of(client_id), client_id, topic)
    }

    /// Bytes of topic filters `client_id`'s subscriptions hold.
    fn subscription_bytes(&mut self, client_id: &str) -> usize {
        let held = self.sessions.get_mut(client_id).and_then(|session| session.held_if_any());
        held.map_or(0, |held| held.subscriptions.keys().map(|filter| filter.len()).sum())
    }

    /// Why `filter` (`plain` without its shared-group prefix) may not join `client_id`'s
    /// subscriptions, which hold `filter_bytes` bytes of filters: the MQTT 5 reason, if any.
    fn subscribe_refusal(
        &mut self,
        client_id: &str,
        filter: &ByteString,
        plain: &str,
        filter_bytes: usize,
    ) -> Option<ReasonCode> {
        if !self.may_subscribe(client_id, plain) {
            return Some(ReasonCode::NOT_AUTHORIZED);
        }
        if plain.split('/').count() > self.limits.topic_levels_max {
            return Some(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let limits = &self.limits;
        let subscriptions = &self.sessions.get_mut(client_id)?.held().subscriptions;
        let over = !subscriptions.contains_key(filter)
            && (subscriptions.len() >= limits.subscriptions_per_client_max
                || filter_bytes + filter.len() > limits.subscription_bytes_per_client_max);
        if !over {
            return None;
        }
        self.stats.subscriptions_refused += 1;
        let refused = self.stats.subscriptions_refused;
        if refused.is_power_of_two() {
            tracing::warn!(
                shard = %self.id,
                client = %client_id,
                refused,
                "subscription refused (quota exceeded): max_subscriptions {}, \
                 max_subscription_bytes {}",
                self.limits.subscriptions_per_client_max,
                self.limits.subscription_bytes_per_client_max,
            );
        }
        Some(ReasonCode::QUOTA_EXCEEDED)
    }

    fn may_subscribe(&self, client_id: &str, filter: &str) -> bool {
        let Some(authorizer) = &self.authorizer else { return true };
        authorizer.can_subscribe(self.username_of(client_id), client_id, filter)
    }

    fn may_read(&self, client_id: &str, topic: &str) -> bool {
        let Some(authorizer) = &self.authorizer else { return true };
        authorizer.can_read(self.username_of(client_id), client_id, topic)
    }

    fn pubrel(&mut self, conn: ConnId, ack: Ack) {
        let Some(client_id) = self.conns.get(&conn).map(|c| c.client_id.clone()) else { return };
        let known = self
            .sessions
            .get_mut(&client_id)
            .and_then(Session::held_if_any)
            .is_some_and(|held| held.incoming_qos2.remove(&ack.packet_id.get()));
        if known {
            self.persist_incoming_qos2(&client_id, ack.packet_id.get(), false);
        }
        let reason =
            if known { ReasonCode::SUCCESS } else { ReasonCode::PACKET_IDENTIFIER_NOT_FOUND };
        let packet = Packet::PubComp(Ack {
            packet_id: ack.packet_id,
            reason,
            properties: Properties::default(),
        });
        self.send(conn, &packet);
    }

    /// Ends an outbound exchange: forgets the message (in memory and in the store) and refills
    /// the window from the queue.
    fn complete_inflight(&mut self, client_id: &ByteString, packet_id: PacketId, now: Instant) {
        let Some(session) = self.sessions.get_mut(client_id) else { return };
        if let Some(out) = session.take_inflight(packet_id) {
            self.unpersist_delivery(client_id, &out.delivery);
        }
        self.pump(client_id, now);
    }

    fn puback(&mut self, conn: ConnId, ack: Ack, now: Instant) {
        let Some(client_id) = self.conns.get(&conn).map(|c| c.client_id.clone()) else { return };
        let Some(session) = self.sessions.get(&client_id) else { return };
        let is_qos1 = session
            .held()
            .inflight
            .iter()
            .any(|o| o.packet_id == ack.packet_id && o.delivery.qos == QoS::AtLeastOnce);
        if is_qos1 {
            self.complete_inflight(&client_id, ack.packet_id, now);
        }
    }

    fn pubrec(&mut self, conn: ConnId, ack: Ack, now: Instant) {
        let Some(client_id) = self.conns.get(&conn).map(|c| c.client_id.clone()) else { return };
        let Some(session) = self.sessions.get_mut(&client_id) else { return };
        let Some(out) = session.inflight_mut(ack.packet_id) else {
            // Unknown identifier: answer so the client can finish its side.
            let packet = Packet::PubRel(Ack {
                packet_id: ack.packet_id,
                reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                properties: Properties::default(),
            });
            return self.send(conn, &packet);
        };
        if out.delivery.qos != QoS::ExactlyOnce || out.stage == OutgoingStage::Released {
            return;
        }
        if ack.reason.is_error() {
            // The client refused the message: the exchange ends here ([MQTT-4.3.3]).
            return self.complete_inflight(&client_id, ack.packet_id, now);
        }
        out.stage = OutgoingStage::Released;
        let mut delivery = out.delivery.clone();
        self.persist_delivery(
            &client_id,
            &mut delivery,
            MessageStage::Released,
            ack.packet_id.get(),
        );
        self.send(conn, &Packet::PubRel(Ack::success(ack.packet_id)));
    }

    fn pubcomp(&mut self, conn: ConnId, ack: Ack, now: Instant) {
        let Some(client_id) = self.conns.get(&conn).map(|c| c.client_id.clone()) else { return };
        let Some(session) = self.sessions.get(&client_id) else { return };
        let released = session
            .held()
            .inflight
            .iter()
            .any(|o| o.packet_id == ack.packet_id && o.stage == OutgoingStage::Released);
        if released {
            self.complete_inflight(&client_id, ack.packet_id, now);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Subscriptions
// -------------------------------------------------------------------------------------------

impl Shard {
    fn subscribe(&mut self, conn: ConnId, subscribe: Subscribe, now: Instant) {
        let Some(c) = self.conns.get(&conn) else { return };
        let client_id = c.client_id.clone();
        let v5 = c.version.is_v5();
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_for = Vec::new();
        let mut new_routes = Vec::new();
        let mut filter_bytes = self.subscription_bytes(&client_id);
        // The filters granted, kept for the subscribed event only while client events are on.
        let mut granted = self.client_events.as_ref().map(|_| Vec::new());
        for entry in subscribe.filters {
            // Kept by the session: copied out of the SUBSCRIBE's read buffer (see
            // `COMPACT_BYTES_MAX`).
            let filter = ByteString::from(&*entry.filter);
            let (group, plain) = match split_shared(&filter) {
                Some(Ok((group, plain))) => (Some(ByteString::from(group)), plain),
                _ => (None, &*filter),
            };
            if let Some(refusal) = self.subscribe_refusal(&client_id, &filter, plain, filter_bytes)
            {
                let v3 = ReasonCode::UNSPECIFIED_ERROR;
                reasons.push(if v5 { refusal } else { v3 });
                continue;
            }
            let Some(session) = self.sessions.get_mut(&client_id) else { return };
            let existed = session.held().subscriptions.contains_key(&filter);
            if !existed {
                filter_bytes += filter.len();
            }
            let subscription = Subscription { options: entry.options, identifier };
            session.held_mut().subscriptions.insert(filter.clone(), subscription);
            let plain = ByteString::from(plain);
            if let Some(route) = self.add_subscriber(&client_id, &filter, subscription, false) {
                new_routes.push(route);
            }
            // Retained messages are not sent on shared subscriptions (spec 4.8.2).
            let wants_retained = group.is_none()
                && match entry.options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if wants_retained {
                retained_for.push((plain, subscription));
            }
            if let Some(granted) = &mut granted {
                granted.push((filter, entry.options.qos));
            }
            reasons.push(ReasonCode(entry.options.qos as u8));
        }
        if let Some(granted) = granted {
            self.subscribed_event(&client_id, &granted, now);
        }

        self.persist_session(&client_id);
        let suback =
            SubAck { packet_id: subscribe.packet_id, properties: Properties::default(), reasons };
        let mut retained = Vec::new();
        let mut elsewhere = Vec::new();
        for (filter, _) in &retained_for {
            self.collect_retained(filter, now, &mut retained);
            self.collect_retained_elsewhere(filter, now, &mut elsewhere);
        }
        let others = usize::from(self.shards) - 1;
        if others == 0 || (new_routes.is_empty() && retained_for.is_empty()) {
            self.send(conn, &Packet::SubAck(suback));
            self.fetch_retained(&client_id, &retained_for, elsewhere);
            return self.deliver_retained(&client_id, &retained_for, retained, now);
        }
        // Tell every other shard about the new routes, then wait until each has applied them
        // (and sent its retained messages) before the SUBACK: the subscription is visible on
        // the whole node before the client is told it exists.
        let token = SyncToken(self.next_token);
        self.next_token += 1;
        let filters: Vec<ByteString> = retained_for.iter().map(|(f, _)| f.clone()).collect();
        for shard in self.other_shards() {
            for (filter, group) in &new_routes {
                let msg = ShardMsg::RouteAdd { filter: filter.clone(), group: group.clone() };
                self.effects.push(Effect::Mesh(shard, msg));
            }
            let msg = ShardMsg::SubscribeSync { token, filters: filters.clone() };
            self.effects.push(Effect::Mesh(shard, msg));
        }
        self.pending_subscribes.insert(
            token,
            PendingSubscribe {
                conn,
                client_id,
                suback,
                waiting: others,
                retained_for,
                retained,
                elsewhere,
            },
        );
    }

    /// Adds a client's subscriber entry for `filter` (as the client wrote it). Returns the route
    /// (plain filter, shared group) when it is this shard's first subscriber for it; with
    /// `announce`, also tells every other shard at once (recovery does; SUBSCRIBE sends its own
    /// RouteAdds ahead of its barrier).
    fn add_subscriber(
        &mut self,
        client_id: &ByteString,
        filter: &ByteString,
        subscription: Subscription,
        announce: bool,
    ) -> Option<(ByteString, Option<ByteString>)> {
        let (group, plain) = match split_shared(filter) {
            Some(Ok((group, plain))) => (Some(ByteString::from(group)), ByteString::from(plain)),
            _ => (None, filter.clone()),
        };
        let key = SubscriberKey { client_id: client_id.clone(), group: group.clone() };
        if self.subscribers.insert(&plain, key, subscription).is_some() {
            return None;
        }
        let count = self.local_routes.entry((plain.clone(), group.clone())).or_insert(0);
        *count += 1;
        if *count > 1 {
            return None;
        }
        self.announce_to_peers(PeerRoute { filter: plain.clone(), group: group.clone() }, true);
        if announce {
            for shard in self.other_shards() {
                let msg = ShardMsg::RouteAdd { filter: plain.clone(), group: group.clone() };
                self.effects.push(Effect::Mesh(shard, msg));
            }
        }
        Some((plain, group))
    }

    fn unsubscribe(&mut self, conn: ConnId, unsubscribe: Unsubscribe, now: Instant) {
        let Some(c) = self.conns.get(&conn) else { return };
        let client_id = c.client_id.clone();
        let v5 = c.version.is_v5();
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        // The filters removed, kept for the unsubscribed event only while client events are on.
        let mut removed = self.client_events.as_ref().map(|_| Vec::new());
        for filter in unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(&client_id)
                .and_then(Session::held_if_any)
                .and_then(|held| held.subscriptions.remove(&filter))
                .is_some();
            if existed {
                self.remove_subscriber(&client_id, &filter);
                reasons.push(ReasonCode::SUCCESS);
                if let Some(removed) = &mut removed {
                    removed.push(filter);
                }
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        if let Some(removed) = removed {
            self.unsubscribed_event(&client_id, &removed, now);
        }
        self.persist_session(&client_id);
        let reasons = if v5 { reasons } else { Vec::new() };
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reasons,
        });
        self.send(conn, &packet);
    }

    /// Removes a client's subscriber entry for `filter` (as the client wrote it) and the route
    /// when it was this shard's last subscriber for it.
    fn remove_subscriber(&mut self, client_id: &ByteString, filter: &ByteString) {
        let (group, plain) = match split_shared(filter) {
            Some(Ok((group, plain))) => (Some(ByteString::from(group)), ByteString::from(plain)),
            _ => (None, filter.clone()),
        };
        let key = SubscriberKey { client_id: client_id.clone(), group: group.clone() };
        if self.subscribers.remove(&plain, &key).is_none() {
            return;
        }
        let route = (plain, group);
        let Entry::Occupied(mut count) = self.local_routes.entry(route) else { return };
        *count.get_mut() -= 1;
        if *count.get() > 0 {
            return;
        }
        let ((filter, group), _) = count.remove_entry();
        self.announce_to_peers(PeerRoute { filter: filter.clone(), group: group.clone() }, false);
        for shard in self.other_shards() {
            let msg = ShardMsg::RouteRemove { filter: filter.clone(), group: group.clone() };
            self.effects.push(Effect::Mesh(shard, msg));
        }
    }

    fn other_shards(&self) -> impl Iterator<Item = ShardId> {
        let me = self.id;
        (0..self.shards).map(ShardId).filter(move |&s| s != me)
    }

    /// This shard's retained messages matching `filter`, unexpired.
    fn collect_retained(&self, filter: &str, now: Instant, into: &mut Vec<SharedMessage>) {
        self.retained.for_each_match(filter, |_, message| {
            if !message.is_expired(now) {
                into.push(message.clone());
            }
        });
    }

    /// Delivers retained messages after a SUBACK, each to every new subscription it matches.
    fn deliver_retained(
        &mut self,
        client_id: &ByteString,
        subscriptions: &[(ByteString, Subscription)],
        retained: Vec<SharedMessage>,
        now: Instant,
    ) {
        for message in retained {
            for (filter, subscription) in subscriptions {
                if !topic_matches(filter, &message.topic) {
                    continue;
                }
                let delivery = Delivery {
                    qos: message.qos.min(subscription.options.qos),
                    retain: true,
                    subscription_ids: subscription.identifier.into_iter().collect(),
                    message: message.clone(),
                    seq: 0,
                };
                // Retained messages bypass the queue limit: their number is bounded by the
                // retained store, and the client's window paces them; none is dropped.
                self.deliver(client_id, delivery, Admission::Always, now);
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// Routing and delivery
// -------------------------------------------------------------------------------------------

/// Whether a delivery may be refused when the session's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    WithinLimits,
    Always,
    /// Paced by a peer node's publisher: queued rather than dropped as slow, but within the
    /// queue's limits.
    Paced,
}

impl Shard {
    /// Routes a message published on this shard (by a client or as a will): stores it if
    /// retained, delivers to local subscribers, and sends one copy to every other shard with a
    /// matching route.
    ///
    /// With a `receipt` token, every copy sent to another shard asks for a receipt; the result
    /// counts them, so the caller can hold the publisher's acknowledgement until they arrive.
    fn route(
        &mut self,
        message: SharedMessage,
        receipt: Option<u64>,
        now: Instant,
    ) -> (Matched, usize) {
        let mut receipts = 0;
        let holders = self.retained_holders(&message);
        let mut version = 0;
        if message.retain {
            version = self.retained_version(&message.topic, now);
            receipts += self.retain_on_node(&message, holders.as_deref(), receipt, version);
        }
        // Shared groups with members on this shard compete with the other shards' members; the
        // local walk of the subscriber index collects them.
        let mut local_groups: Vec<(ByteString, ByteString)> = Vec::new();
        let mut matched = self.deliver_local(&message, Some(&mut local_groups), now);

        let mut shards: Vec<ShardId> = Vec::new();
        let mut groups: Vec<(ByteString, ByteString, Vec<Target>)> = Vec::new();
        self.routes.for_each_match(&message.topic, |filter, key, _| match &key.group {
            None => {
                if !shards.contains(&key.shard) {
                    shards.push(key.shard);
                }
            }
            Some(group) => add_member(&mut groups, filter, group, Target::Shard(key.shard)),
        });
        for (filter, group) in local_groups {
            add_member(&mut groups, &filter, &group, Target::Shard(self.id));
        }
        let peers = self.peers.matching(&message.topic, &mut groups);

        if !shards.is_empty() || !groups.is_empty() {
            matched = Matched::Some;
        } else if matched == Matched::None && !peers.is_empty() {
            matched = Matched::PeersOnly;
        }
        // The local connection this publish came from, for the receiving shards and nodes to
        // pace.
        let publisher =
            self.backpressure.ingress.filter(|w| w.node.is_none() && w.shard == self.id);
        for shard in shards {
            let msg = ShardMsg::Publish { message: message.clone(), receipt, publisher };
            self.effects.push(Effect::Mesh(shard, msg));
            receipts += usize::from(receipt.is_some());
        }
        let conn = publisher.map(|w| w.conn);
        receipts +=
            self.forward_to_peers(&message, &peers, holders.as_deref(), receipt, conn, version);
        for (filter, group, mut members) in groups {
            members.sort();
            let cursor = self.shard_cursor.entry((filter.clone(), group.clone())).or_insert(0);
            let chosen = members[*cursor % members.len()];
            *cursor = cursor.wrapping_add(1);
            match chosen {
                Target::Shard(shard) if shard == self.id => {
                    self.deliver_shared(&message, &filter, &group, now);
                }
                Target::Shard(shard) => {
                    let msg = ShardMsg::SharedPublish {
                        message: message.clone(),
                        filter,
                        group,
                        receipt,
                        publisher,
                    };
                    self.effects.push(Effect::Mesh(shard, msg));
                    receipts += usize::from(receipt.is_some());
                }
                Target::Peer(node) => {
                    let forward = Forward::Publish {
                        message: message.clone(),
                        receipt,
                        deliver: true,
                        shared: Some((filter, group)),
                        holders: None,
                        publisher: conn,
                        version: 0,
                    };
                    self.effects.push(Effect::Forward(node, forward));
                    receipts += usize::from(receipt.is_some());
                }
            }
        }
        (matched, receipts)
    }

    /// Delivers to this shard's non-shared subscribers: one delivery per client, at the highest
    /// QoS of its matching subscriptions, with all their subscription identifiers. With
    /// `shared_groups`, also lists the (filter, group) pairs of shared subscriptions that match.
    fn deliver_local(
        &mut self,
        message: &SharedMessage,
        mut shared_groups: Option<&mut Vec<(ByteString, ByteString)>>,
        now: Instant,
    ) -> Matched {
        let mut targets = std::mem::take(&mut self.scratch_targets);
        self.subscribers.for_each_match(&message.topic, |filter, key, subscription| {
            if let Some(group) = &key.group {
                if let Some(groups) = shared_groups.as_deref_mut() {
                    if !groups.iter().any(|(f, g)| &**f == filter && g == group) {
                        groups.push((ByteString::from(filter), group.clone()));
                    }
                }
                return;
            }
            let options = subscription.options;
            if options.no_local && key.client_id == message.publisher {
                return;
            }
            let qos = message.qos.min(options.qos);
            let retain = message.retain && options.retain_as_published;
            let delivery = targets.entry(key.client_id.clone()).or_insert_with(|| Delivery {
                message: message.clone(),
                qos,
                retain,
                subscription_ids: Vec::new(),
                seq: 0,
            });
            delivery.qos = delivery.qos.max(qos);
            delivery.retain |= retain;
            if let Some(id) = subscription.identifier {
                delivery.subscription_ids.push(id);
            }
        });
        let matched = if targets.is_empty() { Matched::None } else { Matched::Some };
        for (client_id, delivery) in targets.drain() {
            self.deliver(&client_id, delivery, Admission::WithinLimits, now);
        }
        self.scratch_targets = targets;
        matched
    }

    /// Delivers to one member of a shared group on this shard, round robin.
    fn deliver_shared(
        &mut self,
        message: &SharedMessage,
        filter: &ByteString,
        group: &ByteString,
        now: Instant,
    ) {
        let mut members: Vec<(ByteString, Subscription)> = Vec::new();
        self.subscribers.for_each_match(&message.topic, |f, key, subscription| {
            if f == &**filter && key.group.as_ref() == Some(group) {
                members.push((key.client_id.clone(), *subscription));
            }
        });
        if members.is_empty() {
            return;
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        // Prefer connected members: an offline member would only queue the message.
        let connected: Vec<usize> = (0..members.len())
            .filter(|&i| self.sessions.get(&members[i].0).is_some_and(|s| s.conn.is_some()))
            .collect();
        let cursor = self.member_cursor.entry((filter.clone(), group.clone())).or_insert(0);
        let index = if connected.is_empty() {
            *cursor % members.len()
        } else {
            connected[*cursor % connected.len()]
        };
        *cursor = cursor.wrapping_add(1);
        let (client_id, subscription) = &members[index];
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(subscription.options.qos),
            retain: message.retain && subscription.options.retain_as_published,
            subscription_ids: subscription.identifier.into_iter().collect(),
            seq: 0,
        };
        let client_id = client_id.clone();
        self.deliver(&client_id, delivery, Admission::WithinLimits, now);
    }

    /// Hands one delivery to a session: straight to its connection when the window allows, else
    /// into its queue (QoS 1/2, or QoS 0 for a connected client), within the session's limits.
    fn deliver(
        &mut self,
        client_id: &ByteString,
        delivery: Delivery,
        admission: Admission,
        now: Instant,
    ) {
        if !self.may_read(client_id, &delivery.message.topic) {
            return;
        }
        let Some(session) = self.sessions.get_mut(client_id) else { return };
        if delivery.message.is_expired(now) {
            self.stats.dropped_expired += 1;
            return;
        }
        let Some(conn) = session.conn else {
            // QoS 0 messages are not kept for an offline session.
            if delivery.qos != QoS::AtMostOnce {
                self.enqueue(client_id, delivery, admission);
            }
            return;
        };
        // Paced (see `backpressure`): a publisher of this node caused this delivery and is
        // paused while the subscriber is over its high-water mark. The message is then kept
        // even past the queue's limits, which each paused publisher overshoots by at most the
        // one message that paused it. A peer node's publisher has more on the link by the time
        // its pause arrives: those are kept within the limits only.
        // A bridge's session never pauses local publishers: past its own bound its messages are
        // dropped and counted instead (docs/bridges.md).
        let paced = self.backpressure.applies(conn) && !self.bridge_queues.contains_key(client_id);
        let admission = match paced {
            true if self.backpressure.ingress_is_peer() => Admission::Paced,
            true => Admission::Always,
            false => admission,
        };
        if !session.held().queue.is_empty() {
            // Others are waiting: keep the order.
            self.enqueue(client_id, delivery, admission);
            return self.pace(client_id, conn, paced, now);
        }
        if delivery.qos == QoS::AtMostOnce {
            let full = self
                .conns
                .get(&conn)
                .is_none_or(|c| c.out.len() >= self.limits.out_buffer_bytes_max);
            match (full, admission) {
                (false, _) => {
                    self.write_publish(conn, &delivery, None, false, now);
                }
                // Retained messages are never dropped, nor messages whose publisher is being
                // paused: they wait for the socket to drain.
                (true, Admission::Always | Admission::Paced) => {
                    self.enqueue(client_id, delivery, admission);
                    if paced {
                        self.congested(conn, now);
                    }
                }
                (true, Admission::WithinLimits) => self.stats.dropped_qos0_slow += 1,
            }
            return;
        }
        let window = self.conns.get(&conn).map_or(1, |c| usize::from(c.window));
        if session.held().inflight.len() < window {
            self.send_inflight(client_id, conn, delivery, now);
        } else {
            self.enqueue(client_id, delivery, admission);
            self.pace(client_id, conn, paced, now);
        }
    }

    /// After queueing a paced delivery: pause its publisher if the subscriber is now over its
    /// high-water mark.
    fn pace(&mut self, client_id: &ByteString, conn: ConnId, paced: bool, now: Instant) {
        if paced && self.over_high_water(client_id, conn) {
            self.congested(conn, now);
        }
    }

    fn enqueue(&mut self, client_id: &ByteString, mut delivery: Delivery, admission: Admission) {
        let Some(session) = self.sessions.get_mut(client_id) else { return };
        let cost = delivery.message.cost_bytes();
        let held = session.held();
        let full = match self.bridge_queues.get(client_id) {
            // A bridge's queue is bounded by its own message count only (`queue_max_messages`).
            Some(bridge) => held.queue.len() + held.inflight.len() >= bridge.messages_max,
            None => {
                held.queue.len() >= self.limits.queued_messages_max
                    || held.queued_bytes + cost > self.limits.queued_bytes_max
            }
        };
        if full && admission != Admission::Always {
            // Make room by dropping a queued QoS 0 message first; otherwise drop this one.
            match held.queue.iter().position(|d| d.qos == QoS::AtMostOnce) {
                Some(index) if delivery.qos != QoS::AtMostOnce => {
                    let held = session.held_mut();
                    if let Some(dropped) = held.queue.remove(index) {
                        held.queued_bytes -= dropped.message.cost_bytes();
                    }
                    self.count_queue_drop(client_id);
                }
                _ => return self.count_queue_drop(client_id),
            }
        }
        if delivery.seq == 0 {
            self.persist_delivery(client_id, &mut delivery, MessageStage::Queued, 0);
        }
        let Some(session) = self.sessions.get_mut(client_id) else { return };
        let held = session.held_mut();
        held.queued_bytes += cost;
        held.queue.push_back(delivery);
    }

    /// Counts a message dropped because a session's queue was full, and says so in the log at
    /// the 1st, 2nd, 4th, 8th... drop on this shard: visible without flooding the log.
    fn count_queue_drop(&mut self, client_id: &ByteString) {
        self.stats.dropped_queue_full += 1;
        if let Some(bridge) = self.bridge_queues.get_mut(client_id) {
            bridge.dropped += 1;
        }
        let dropped = self.stats.dropped_queue_full;
        if dropped.is_power_of_two() {
            tracing::warn!(
                shard = %self.id,
                client = %client_id,
                dropped,
                "session queue full (max_queued_messages {}, max_queued_bytes {}): messages dropped",
                self.limits.queued_messages_max,
                self.limits.queued_bytes_max,
            );
        }
    }

    /// Sends a QoS 1/2 delivery under a new packet identifier and records it in flight.
    fn send_inflight(
        &mut self,
        client_id: &ByteString,
        conn: ConnId,
        mut delivery: Delivery,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get_mut(client_id) else { return };
        let packet_id = match session.allocate_packet_id() {
            Some(packet_id) if self.conns.contains_key(&conn) => packet_id,
            _ => return self.enqueue(client_id, delivery, Admission::Always),
        };
        if self.write_publish(conn, &delivery, Some(packet_id), false, now) {
            self.persist_delivery(
                client_id,
                &mut delivery,
                MessageStage::Published,
                packet_id.get(),
            );
            if let Some(session) = self.sessions.get_mut(client_id) {
                session.held_mut().inflight.push_back(Outgoing {
                    packet_id,
                    delivery,
                    stage: OutgoingStage::Published,
                });
            }
        } else {
            // Larger than the client accepts: dropped, as the spec requires.
            self.unpersist_delivery(client_id, &delivery);
        }
    }

    /// Moves queued messages into the connection while the window and output buffer allow.
    fn pump(&mut self, client_id: &ByteString, now: Instant) {
        loop {
            let Some(session) = self.sessions.get_mut(client_id) else { return };
            let Some(conn) = session.conn else { return };
            let Some(c) = self.conns.get(&conn) else { return };
            if c.closing || c.out.len() >= self.limits.out_buffer_bytes_max {
                return;
            }
            let window = usize::from(c.window);
            let held = session.held();
            let Some(front) = held.queue.front() else { return };
            if front.qos != QoS::AtMostOnce && held.inflight.len() >= window {
                return;
            }
            let Some(delivery) = session.pop_queued() else { return };
            if delivery.message.is_expired(now) {
                self.stats.dropped_expired += 1;
                self.unpersist_delivery(client_id, &delivery);
                continue;
            }
            // Checked again on the way out: the ACL may have changed (a reload) while it
            // waited, and a queued message goes only to a user who may still read it.
            if !self.may_read(client_id, &delivery.message.topic) {
                self.stats.dropped_not_authorized += 1;
                self.unpersist_delivery(client_id, &delivery);
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                self.write_publish(conn, &delivery, None, false, now);
            } else {
                self.send_inflight(client_id, conn, delivery, now);
            }
        }
    }

    /// Stores, replaces or (empty payload) deletes a retained message of this shard's partition.
    fn store_retained(&mut self, message: SharedMessage) {
        if message.payload.is_empty() {
            return self.forget_retained(&message);
        }
        if message.payload.len() > self.limits.retained_payload_bytes_max {
            tracing::warn!(shard = %self.id, topic = %message.topic, "retained payload over the limit; message not retained");
            return;
        }
        // The broker's own `$SYS` topics (a fixed handful, rewritten every few seconds) neither
        // count against the limit nor go to disk: a restart publishes them afresh.
        let system = is_system_topic(&message.topic);
        if !system && self.retained_store_full(&message) {
            // The older message on the topic must not outlive the newer one that was refused:
            // subscribers would get a stale value (and other nodes keep the new one).
            self.forget_retained(&message);
            self.stats.retained_refused += 1;
            let refused = self.stats.retained_refused;
            if refused.is_power_of_two() {
                tracing::warn!(
                    shard = %self.id,
                    topic = %message.topic,
                    refused,
                    "retained store full (max_retained_messages {}, max_retained_bytes {}); \
                     message delivered, not retained",
                    self.limits.retained_messages_max,
                    self.limits.retained_bytes_max,
                );
            }
            return;
        }
        if !system {
            self.persist_retained(&message, true);
        }
        self.insert_retained(message);
    }

    /// Whether keeping `message` would take this shard's partition past its share of the
    /// node's retained count or bytes (replacing a message frees what it held).
    fn retained_store_full(&self, message: &SharedMessage) -> bool {
        let shards = usize::from(self.shards);
        let old = self.retained.get(&message.topic).map(|old| old.cost_bytes());
        let count_full = old.is_none()
            && self.retained.len() >= self.limits.retained_messages_max.div_ceil(shards);
        let bytes = self.retained_bytes - old.unwrap_or(0) + message.cost_bytes();
        count_full || bytes > self.limits.retained_bytes_max.div_ceil(shards)
    }

    /// Deletes the retained message on `message`'s topic kept here, if any.
    fn forget_retained(&mut self, message: &SharedMessage) {
        if let Some(old) = self.retained.remove(&message.topic) {
            self.retained_bytes -= old.cost_bytes();
            self.persist_retained(message, false);
        }
    }

    fn insert_retained(&mut self, message: SharedMessage) {
        let cost = message.cost_bytes();
        if let Some(old) = self.retained.insert(&message.topic.clone(), message) {
            self.retained_bytes -= old.cost_bytes();
        }
        self.retained_bytes += cost;
    }

    // ---------------------------------------------------------------------------------------
    // Mesh
    // ---------------------------------------------------------------------------------------

    /// A message from another shard.
    pub fn mesh(&mut self, from: ShardId, msg: ShardMsg, now: Instant) {
        match msg {
            ShardMsg::RouteAdd { filter, group } => {
                self.routes.insert(&filter, RouteKey { shard: from, group }, ());
            }
            ShardMsg::RouteRemove { filter, group } => {
                self.routes.remove(&filter, &RouteKey { shard: from, group });
            }
            ShardMsg::SubscribeSync { token, filters } => {
                let mut retained = Vec::new();
                let mut elsewhere = Vec::new();
                for filter in &filters {
                    self.collect_retained(filter, now, &mut retained);
                    self.collect_retained_elsewhere(filter, now, &mut elsewhere);
                }
                let msg = ShardMsg::SubscribeReady { token, retained, elsewhere };
                self.effects.push(Effect::Mesh(from, msg));
            }
            ShardMsg::SubscribeReady { token, retained, elsewhere } => {
                self.subscribe_ready(token, retained, elsewhere, now)
            }
            ShardMsg::Publish { message, receipt, publisher } => {
                self.paced_by(publisher, |shard| {
                    shard.with_receipt(from, receipt, |shard| {
                        shard.deliver_local(&message, None, now) == Matched::Some
                    })
                });
            }
            ShardMsg::SharedPublish { message, filter, group, receipt, publisher } => {
                self.paced_by(publisher, |shard| {
                    shard.with_receipt(from, receipt, |shard| {
                        shard.deliver_shared(&message, &filter, &group, now);
                        true
                    })
                });
            }
            ShardMsg::Pause { conn } => {
                if self.conns.contains_key(&conn) {
                    self.backpressure.hold(conn);
                }
            }
            ShardMsg::Resume { conn } => {
                if self.backpressure.unhold(conn) {
                    self.effects.push(Effect::Resume(conn));
                }
            }
            ShardMsg::Retain { message, receipt, elsewhere, version } => {
                self.with_receipt(from, receipt, |shard| {
                    shard.keep_retained(message, elsewhere, version);
                    true
                })
            }
            ShardMsg::RetainedHeld { node, topics } => self.retained_held(node, topics),
            ShardMsg::Stored { token, ok, matched } => self.receipt(token, ok, matched, now),
            ShardMsg::PeerRoutes { node, origin, epoch, frame } => {
                self.peer_routes(node, origin, epoch, frame)
            }
            ShardMsg::PeerGone { node, lease } => self.peer_gone(node, lease),
        }
    }

    /// Runs `handle` with `publisher` as the ingress that congested subscribers pause.
    fn paced_by(&mut self, publisher: Option<Waiter>, handle: impl FnOnce(&mut Shard)) {
        self.backpressure.ingress = publisher;
        handle(self);
        self.backpressure.ingress = None;
    }

    /// Handles a message another shard may want a receipt for: answered once the writes it
    /// caused here are durable (at once if it caused none).
    fn with_receipt(
        &mut self,
        from: ShardId,
        receipt: Option<u64>,
        handle: impl FnOnce(&mut Shard) -> bool,
    ) {
        let before = self.queued_ops();
        let matched = handle(self);
        if let Some(token) = receipt {
            let wrote = self.queued_ops() > before;
            self.answer_receipt(from, token, wrote, matched);
        }
    }

    fn subscribe_ready(
        &mut self,
        token: SyncToken,
        mut retained: Vec<SharedMessage>,
        mut elsewhere: Vec<(ByteString, Vec<PeerNode>)>,
        now: Instant,
    ) {
        let Some(pending) = self.pending_subscribes.get_mut(&token) else { return };
        pending.retained.append(&mut retained);
        pending.elsewhere.append(&mut elsewhere);
        pending.waiting -= 1;
        if pending.waiting > 0 {
            return;
        }
        let Some(pending) = self.pending_subscribes.remove(&token) else { return };
        // The connection may have gone meanwhile; the subscription stays with the session.
        let still_connected =
            self.sessions.get(&pending.client_id).is_some_and(|s| s.conn == Some(pending.conn));
        if still_connected {
            self.send(pending.conn, &Packet::SubAck(pending.suback));
        }
        self.fetch_retained(&pending.client_id, &pending.retained_for, pending.elsewhere);
        self.deliver_retained(&pending.client_id, &pending.retained_for, pending.retained, now);
    }
}

/// Whether `topic` is one of the broker's own (`$SYS/...`): clients may read them, never
/// publish there (their retained copies are exempt from the retained limit and kept off disk).
fn is_system_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Adds `target` to the members of shared group (`filter`, `group`) among a publish's targets.
fn add_member(
    groups: &mut Vec<(ByteString, ByteString, Vec<Target>)>,
    filter: &str,
    group: &ByteString,
    target: Target,
) {
    match groups.iter_mut().find(|(f, g, _)| &**f == filter && g == group) {
        Some((_, _, members)) => members.push(target),
        None => groups.push((ByteString::from(filter), group.clone(), vec![target])),
    }
}

/// What a CONNECT is granted ([`Shard::connect`]).
struct ConnectTerms {
    auth_method: Option<ByteString>,
    keepalive_secs: u16,
    expiry_secs: u32,
    /// What the CONNACK says about them.
    connack_properties: Properties,
}

/// A CONNECT's will as the message it becomes (copied out of the CONNECT's read buffer).
fn will_message(will: shardmq_codec::Will, client_id: &ByteString, now: Instant) -> Arc<Message> {
    let expires_at = will
        .properties
        .message_expiry_interval
        .map(|secs| now + Duration::from_secs(u64::from(secs)));
    Arc::new(
        Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: forwarded_properties(&will.properties),
            expires_at,
            publisher: client_id.clone(),
        }
        .compacted(),
    )
}

//! What a shard's tasks share: [`ShardContext`] (the state machine and the engine-side
//! bookkeeping around it, on each shard), how the shard reaches a connection's task
//! ([`ConnHandle`]), and what travels between shards ([`MeshItem`]).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq_io::codec::{Connect, Packet};
use shardmq_io::runtime::{Connection, StreamHandoff};
use shardmq_io::transport::{AllowedOrigins, Layer};
use shardmq_shard::{ConnId, Effect, Shard, ShardId, ShardMsg};

use crate::cluster::{ClusterItem, ShardCluster};
use crate::listeners::TlsCertificates;
use crate::metrics::NodeCounters;
use crate::overload::MemoryWatch;
use crate::reload::LiveConfig;
use crate::security::NodeSecurity;

use crate::signal::Signal;
/// What travels between shards: state-machine messages, connections being handed over, and the
/// start-up barrier.
pub(crate) enum MeshItem {
    Shard(ShardMsg),
    Adopt(Adoption),
    /// A node-link message for this shard, read by another.
    Cluster(ClusterItem),
    /// The sender has restored its state and sent its routes: everything it sent before this
    /// is applied once this arrives.
    Ready,
}

/// A connection moving to its client's home shard, with everything already read from it.
pub(crate) struct Adoption {
    pub(crate) stream: StreamHandoff,
    /// Its TLS / WebSocket state, if it has layers.
    pub(crate) layer: Option<Box<Layer>>,
    pub(crate) connect: Box<Connect>,
    pub(crate) leftover: Bytes,
    /// The client's address from a PROXY header (listeners with `proxy_protocol`).
    pub(crate) source: Option<SocketAddr>,
}

/// How the shard reaches a connection's task: the key of the connection's slot in the shard's
/// epoll set ([`Connection::notify_key`]), where the signals below wait for the task with the
/// waker the slot keeps anyway; and its socket's [`Connection::peer_key`], for the admin API's
/// peer addresses. Kept by value in [`ShardContext::conns`], 24 bytes an entry with its key (a
/// waker and flags of its own made that 40).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnHandle {
    pub(crate) notify: u64,
    pub(crate) peer: i32,
}

/// A packet held back for the HTTP ACL service, and the receiver that closes once its answers
/// are in (`None` once they are: the packet is fed next, after the checks every feed makes).
pub(crate) type AclHeld = (Packet, Option<std::pin::Pin<Box<async_channel::Receiver<()>>>>);

/// The shard asked for something since the task last looked (set with every signal below, and
/// alone by a resume).
pub(crate) const SIGNAL_WAKE: u8 = 1;
/// The shard has output for the connection.
pub(crate) const SIGNAL_FLUSH: u8 = 2;
/// The shard closes the connection (after writing its output).
pub(crate) const SIGNAL_CLOSE: u8 = 4;

impl ConnHandle {
    pub(crate) fn notify(self, signals: u8) {
        Connection::notify(self.notify, signals | SIGNAL_WAKE);
    }
}

impl ShardContext {
    /// The address of the client on `conn`, while it is connected to this shard.
    pub(crate) fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        // The entry goes before its connection closes (`ConnectionTask::poll`): the key is
        // still that connection's socket.
        if let Some(&source) = self.proxied.borrow().get(&conn) {
            return Some(source);
        }
        let handle = *self.conns.borrow().get(&conn)?;
        Connection::peer_addr_of(handle.peer).ok()
    }
}

/// A connection without a socket: a bridge's local session (`bridge.rs`), whose task the shard
/// reaches through this rather than through an epoll slot.
#[derive(Debug, Default)]
pub(crate) struct VirtualConn {
    /// The shard has output for it, or closed it.
    pub(crate) signal: Signal,
    pub(crate) closed: Cell<bool>,
}

/// Lives on each shard: the state machine and the engine-side bookkeeping around it.
pub(crate) struct ShardContext {
    pub(crate) id: ShardId,
    pub(crate) shards: u16,
    pub(crate) state: RefCell<Shard>,
    pub(crate) conns: RefCell<HashMap<ConnId, ConnHandle>>,
    pub(crate) mesh_out: Vec<RefCell<Vec<MeshItem>>>,
    pub(crate) mesh_signals: Vec<Signal>,
    pub(crate) next_conn: Cell<u64>,
    pub(crate) stopping: Cell<bool>,
    pub(crate) stop_signal: Signal,
    /// Set when the node is part of a cluster.
    pub(crate) cluster: Option<Rc<ShardCluster>>,
    /// Authentication on CONNECT, and the ACL this shard's state holds (of `acl_generation`).
    pub(crate) security: Arc<NodeSecurity>,
    pub(crate) acl_generation: Cell<u64>,
    /// This shard's share of `max_connect_rate` (per listener), and the node's memory
    /// high-water mark.
    pub(crate) connect_rate_share: Cell<Option<f64>>,
    /// The configuration in force (SIGHUP replaces it), and the generation this shard applied.
    pub(crate) live: Arc<LiveConfig>,
    pub(crate) live_generation: Cell<u64>,
    pub(crate) memory: Arc<MemoryWatch>,
    /// This shard's slot of the counters `/metrics` reads.
    pub(crate) counters: Arc<NodeCounters>,
    /// The TLS configuration TLS listeners hand new connections.
    pub(crate) tls: Option<Arc<TlsCertificates>>,
    /// Connections on the whole node (incremented at CONNECT, decremented at close).
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) connections_max: Cell<usize>,
    pub(crate) packet_bytes_max: Cell<u32>,
    /// The web pages WebSocket listeners accept, and `use_username_as_clientid` (both from the
    /// configuration in force, read here rather than from `live` at every accept or CONNECT).
    pub(crate) ws_origins: RefCell<Arc<AllowedOrigins>>,
    pub(crate) username_as_client_id: Cell<bool>,
    pub(crate) connect_timeout: Cell<Duration>,
    pub(crate) effects: RefCell<Vec<Effect>>,
    /// Connections the shard has closed that are draining what their client still sends
    /// (`connection.rs`, [`crate::connection::CLOSE_LINGER`]): when each must stop, and the key
    /// that reaches its task. In deadline order; at most [`crate::connection::CLOSING_MAX`].
    pub(crate) closing: RefCell<VecDeque<(Instant, u64)>>,
    /// The client addresses PROXY headers gave, of this shard's connections that had one (the
    /// socket's own peer is the load balancer's).
    pub(crate) proxied: RefCell<HashMap<ConnId, SocketAddr>>,
    /// Output of connections whose socket was full, until it is written: kept here rather than
    /// in each [`ConnectionTask`], which every idle connection has.
    pub(crate) blocked_out: RefCell<HashMap<ConnId, BytesMut>>,
    /// The packet each connection holds back until the HTTP ACL service answered about it
    /// (`connection.rs`), with the receiver that closes when it has: kept here, like
    /// `blocked_out`, rather than in every connection's task.
    pub(crate) acl_held: RefCell<HashMap<ConnId, AclHeld>>,
    /// Wakes the group committer.
    pub(crate) commit_signal: Signal,
    /// When the ticker wakes next, and what wakes it sooner ([`ShardContext::apply_effects`]
    /// when the state machine's next deadline became earlier).
    pub(crate) ticker_due: Cell<Instant>,
    pub(crate) ticker_wake: Signal,
    /// Set when a commit of this shard failed (so start-up keeps the files it moved data from).
    pub(crate) commit_failed: Cell<bool>,
    /// Peers whose [`MeshItem::Ready`] has arrived.
    pub(crate) ready_peers: Cell<usize>,
    pub(crate) ready_signal: Signal,
    /// The bridges' local sessions attached to this shard, by connection.
    pub(crate) virtual_conns: RefCell<HashMap<ConnId, Rc<VirtualConn>>>,
}

impl ShardContext {
    pub(crate) fn new_conn_id(&self) -> ConnId {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        // Unique per shard; the shard index in the high bits keeps ids unique per node in logs.
        ConnId((u64::from(self.id.0) << 48) | id)
    }

    /// Carries out what the state machine asked for.
    pub(crate) fn apply_effects(&self) {
        let mut effects = self.effects.take();
        self.state.borrow_mut().drain_effects(&mut effects);
        // Receipts of forwards that could not be sent, answered once the loop is done.
        let mut answered: Vec<(u64, bool)> = Vec::new();
        // Retained fetches with no cluster to fetch from (none is asked for then).
        let mut answered_fetches: Vec<u64> = Vec::new();
        {
            let conns = self.conns.borrow();
            for effect in effects.drain(..) {
                match effect {
                    Effect::Flush(conn) => match conns.get(&conn) {
                        Some(handle) => handle.notify(SIGNAL_FLUSH),
                        None => {
                            self.notify_virtual(conn, false);
                        }
                    },
                    Effect::Close(conn) => match conns.get(&conn) {
                        Some(handle) => handle.notify(SIGNAL_CLOSE),
                        None if self.notify_virtual(conn, true) => {}
                        None => self.state.borrow_mut().connection_closed(conn),
                    },
                    Effect::Mesh(to, msg) => self.to_peer(to, MeshItem::Shard(msg)),
                    Effect::Commit => self.commit_signal.notify(),
                    Effect::Resume(conn) => {
                        if let Some(handle) = conns.get(&conn) {
                            handle.notify(0);
                        }
                    }
                    Effect::Forward(peer, forward) => {
                        if let Some(cluster) = &self.cluster {
                            answered.extend(cluster.forward(self.id, peer, forward));
                        }
                    }
                    Effect::RoutesChanged { added, removed } => {
                        if let Some(cluster) = &self.cluster {
                            cluster.routes_changed(&added, &removed);
                        }
                    }
                    Effect::SessionEnded(client_id) => {
                        if let Some(cluster) = &self.cluster {
                            cluster.node.control.release(&client_id);
                        }
                    }
                    Effect::FetchRetained { token, topic, holders } => match &self.cluster {
                        Some(cluster) => cluster.fetch_retained(token, topic, holders),
                        None => answered_fetches.push(token),
                    },
                    Effect::PullRetained { topic, holders } => {
                        if let Some(cluster) = &self.cluster {
                            cluster.pull_retained(topic, holders);
                        }
                    }
                }
            }
        }
        // Give the (now empty) vector back to keep its capacity.
        *self.effects.borrow_mut() = effects;
        if self.state.borrow().next_deadline().is_some_and(|due| due < self.ticker_due.get()) {
            // Sooner than the ticker means to look (a connection throttled until then).
            self.ticker_due.set(Instant::now());
            self.ticker_wake.notify();
        }
        if !answered.is_empty() || !answered_fetches.is_empty() {
            {
                let mut state = self.state.borrow_mut();
                // Forwards dropped for a down or full link: no subscriber there got them.
                for (token, ok) in answered {
                    state.peer_receipt(token, ok, false, Instant::now());
                }
                for token in answered_fetches {
                    state.retained_fetched(token, None, Instant::now());
                }
            }
            self.apply_effects();
        }
    }

    /// Wakes the bridge task of a virtual connection (marking it closed when `close`); false
    /// when `conn` is none.
    fn notify_virtual(&self, conn: ConnId, close: bool) -> bool {
        let virtuals = self.virtual_conns.borrow();
        let Some(handle) = virtuals.get(&conn) else { return false };
        if close {
            handle.closed.set(true);
        }
        handle.signal.notify();
        true
    }

    pub(crate) fn to_peer(&self, to: ShardId, item: MeshItem) {
        self.mesh_out[to.index()].borrow_mut().push(item);
        self.mesh_signals[to.index()].notify();
    }
}

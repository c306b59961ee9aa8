//! `shardmq serve`: boots one shard per core and wires each shard's state machine
//! ([`shardmq_shard::Shard`]) to its listener, its connections, its timers and the mesh.
//!
//! Every shard runs the same tasks on its own executor: an accept loop on its SO_REUSEPORT
//! listener, one task per connection (read, decode, feed the shard, write what the shard
//! produced), one sender and one receiver per peer shard, and a ticker for keepalive, will delay
//! and session expiry. The state machine is only borrowed between awaits, never across one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::future;
use shardmq_io::codec::{
    ConnAck, Connect, DecodeError, Decoded, Decoder, Packet, Properties, ProtocolVersion,
    ReasonCode,
};
use shardmq_io::runtime::{
    self, bind_listener_sockets, build_mesh, needs_accept_backoff, Connection, ListenerSocket,
    MeshEnds, MeshReceiver, MeshSender, ShardPlacement, StreamHandoff, TcpListener,
};
use shardmq_io::transport::{AllowedOrigins, Layer, Layered, MqttStream};
use shardmq_shard::persist::{decode_snapshot, rehome, ShardPlan, WallClock, UPGRADES};
use shardmq_shard::{home_shard, ConnId, ConnectRefusal, Effect, Shard, ShardId, ShardMsg};
use shardmq_storage::{shard_file, shard_files, Durability, ShardStore, FORMAT_VERSION};

use crate::admin::NodeCounters;
use crate::cluster::{self, ClusterItem, NodeCluster, ShardCluster};
use crate::config::Config;
use crate::enhanced_auth::{self, ConnectionWire};
use crate::link_security::LinkCertificates;
use crate::listeners::{ListenerKind, ShardListener, TlsCertificates};
use crate::overload::{ConnectBudget, MemoryWatch};
use crate::reload::{LiveConfig, Reloader};
use crate::security::NodeSecurity;

/// Pending connections the kernel queues per listener (capped by `net.core.somaxconn`).
pub(crate) const LISTEN_BACKLOG: i32 = 4096;
/// What a WebSocket frame or message may carry beyond the largest MQTT packet: several small
/// packets beside it (clients coalesce).
const WS_FRAME_SLACK_BYTES: usize = 64 << 10;
/// Packets one connection decodes and hands to its shard before yielding to other tasks.
const PACKETS_PER_TURN_MAX: usize = 256;
/// How often a shard runs its timers (keepalive, will delay, session expiry) at the latest.
const TICK_INTERVAL: Duration = Duration::from_millis(250);
/// How long an accept loop backs off when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often "out of file descriptors" is logged at most.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often every shard's executor wakes even when nothing happens. glommio 0.9.0 can lose the
/// wake-up of a parked executor when another shard sends on a mesh channel (seen here under CPU
/// contention as a CONNACK delayed by seconds, or a shard stuck connecting its mesh); the reactor
/// checks every shared channel each time it wakes, so a heartbeat bounds such a delay to this.
const HEARTBEAT: Duration = Duration::from_millis(5);
/// How long shutdown waits for connections to flush their DISCONNECT before exiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often commits that keep failing (a full disk) are logged again after the first failure.
const COMMIT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

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
    stream: StreamHandoff,
    /// Its TLS / WebSocket state, if it has layers.
    layer: Option<Box<Layer>>,
    connect: Box<Connect>,
    leftover: Bytes,
}

/// A client connection's stream as a shard runs it: plain TCP ([`Connection`]) or with layers
/// ([`Layered`]). The connection code is generic over it, so a plain connection pays nothing
/// for the layers others have.
pub(crate) trait ClientStream: MqttStream + Unpin + 'static {
    /// The socket and the layer state, to move the connection to another shard.
    fn into_parts(self) -> (Connection, Option<Box<Layer>>);
}

impl ClientStream for Connection {
    fn into_parts(self) -> (Connection, Option<Box<Layer>>) {
        (self, None)
    }
}

impl ClientStream for Layered {
    fn into_parts(self) -> (Connection, Option<Box<Layer>>) {
        let (connection, layer) = Layered::into_parts(self);
        (connection, Some(layer))
    }
}

/// Runs the broker until SIGINT or SIGTERM. `args` (the command line) and `set_log_filter` are
/// for SIGHUP, which reads the configuration again.
pub fn serve(
    config: Config,
    args: crate::config::ServeArgs,
    set_log_filter: crate::reload::SetLogFilter,
) -> anyhow::Result<()> {
    let shards = usize::from(config.shards);
    let clock = WallClock::new(Instant::now());
    // Signals are handled from here on: a SIGTERM during start-up stops the node cleanly once
    // its shards run, instead of killing it.
    let security = Arc::new(NodeSecurity::load(&config.security)?);
    let tls = config.tls.as_ref().map(TlsCertificates::load).transpose()?.map(Arc::new);
    let link_tls = config.cluster.as_ref().and_then(|cluster| cluster.link_tls.as_ref());
    let link_tls = link_tls.map(LinkCertificates::load).transpose()?.map(Arc::new);
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicUsize::new(0));
    let memory = MemoryWatch::start(config.memory_max, connections.clone())
        .context("cannot start the memory watch")?;
    let live = Arc::new(LiveConfig::new(config.clone()));
    let reloader = Reloader::new(args, set_log_filter, live.clone(), memory.clone());
    spawn_signal_thread(
        stop.clone(),
        Reloads {
            security: security.clone(),
            tls: tls.clone(),
            link_tls: link_tls.clone(),
            reloader,
        },
    )?;
    let Stores { stores, plans, obsolete } = open_stores(&config, clock)?;
    let listeners = crate::listeners::bind(&config, shards)?;
    tracing::info!("data dir {}", config.data_dir.display());
    tracing::info!("security: {}", config.security.describe());

    let mut clusters: Vec<Option<ShardJoin>> = (0..shards).map(|_| None).collect();
    let mut node_cluster = None;
    if let Some(cluster_config) = &config.cluster {
        let (node, joins) = join_cluster(cluster_config, shards, link_tls)?;
        clusters = joins.into_iter().map(Some).collect();
        node_cluster = Some(node);
    }

    let counters = Arc::new(NodeCounters::new(shards));
    let logins = security.clone();
    counters.set_logins(Box::new(move || logins.login_figures()));
    if let Some(node) = &node_cluster {
        count_cluster(&counters, node);
    }
    // Each shard answers the admin API's questions from a channel of its own.
    let (admin_shards, admin_requests) = crate::admin::Shards::new(shards);
    if let Some(address) = config.admin_listen {
        let fence = node_cluster.as_ref().map(|node| node.fence.clone());
        // Ready once every shard accepts, and (in a cluster) while the node may serve.
        let ready = move || fence.as_ref().is_none_or(|fence| fence.may_serve(Instant::now()));
        let hosts = config.admin_hosts.clone();
        let bound = crate::admin::start(address, hosts, counters.clone(), admin_shards, ready)?;
        tracing::info!("admin endpoint on http://{bound} (/metrics, /health, /ready, /api/v1)");
    }
    let stops: Vec<Arc<AtomicBool>> = (0..shards).map(|_| stop.clone()).collect();
    let mesh = build_mesh::<Vec<MeshItem>>(shards);
    let started = Arc::new(AtomicUsize::new(0));
    let obsolete = Arc::new(obsolete);
    let per_shard: Vec<_> = listeners
        .into_iter()
        .zip(mesh)
        .zip(stops)
        .zip(stores.into_iter().zip(plans))
        .zip(clusters)
        .zip(admin_requests)
        .map(|(((((listeners, mesh), stop), (store, plan)), cluster), admin)| Boot {
            listeners,
            tls: tls.clone(),
            mesh,
            stop,
            store,
            plan,
            cluster,
            security: security.clone(),
            live: live.clone(),
            memory: memory.clone(),
            counters: counters.clone(),
            admin,
        })
        .collect();
    let handles = runtime::start_shards(ShardPlacement::PinnedToCpus, per_shard, {
        let config = config.clone();
        move |index, boot| {
            let id = ShardId(index.get() as u16);
            shard_main(id, config, clock, boot, connections, started, obsolete)
        }
    })
    .context("cannot start the shards")?;
    let mut failed = None;
    for handle in handles {
        if let Err(panicked) = handle.join() {
            tracing::error!("{panicked}");
            failed = Some(panicked);
        }
    }
    if let Some(node) = node_cluster {
        leave_cluster(&node);
    }
    match failed {
        Some(panicked) => Err(anyhow::anyhow!("{panicked}")),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// 128 bits from the OS's CSPRNG (`getrandom`), for assigned client ids; `None` if it failed
/// (the kernel's source does not, once seeded at boot), and the connect is refused.
fn os_random_u128() -> Option<u128> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(u128::from_le_bytes(bytes))
}

/// The cluster's figures on `/metrics`: etcd ownership and node links.
fn count_cluster(counters: &NodeCounters, node: &Arc<NodeCluster>) {
    let etcd = node.clone();
    counters.set_etcd(Box::new(move || etcd.control.stats()));
    let links = node.clone();
    counters.set_links(Box::new(move || crate::admin::LinkFigures {
        tls: links.link_tls.is_some(),
        refused: links.link_stats.refused(),
        handshakes_failed: links.link_stats.handshakes_failed(),
    }));
}

/// Logs what the node asked of etcd, and revokes its lease: peers may claim this node's
/// clients at once.
fn leave_cluster(node: &NodeCluster) {
    let stats = node.control.stats();
    tracing::info!(
        "etcd ownership: {} claims, {} operations in {} transactions ({} committed, {} lost a \
         compare, {} failed)",
        stats.claims,
        stats.txn_ops,
        stats.txns,
        stats.txns_committed,
        stats.txns_compare_failed,
        stats.txns_failed
    );
    node.control.shutdown();
}

/// Reads the files for etcd's TLS and user: one line naming a file that cannot be read.
fn etcd_access(
    files: &crate::config::EtcdAccessFiles,
) -> anyhow::Result<shardmq_cluster::control::EtcdAccess> {
    use shardmq_cluster::control::{EtcdAccess, EtcdTls};
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read `{key}` {}", path.display()))
    };
    let tls = match &files.ca {
        None => None,
        Some(ca) => {
            let identity = match &files.identity {
                Some((cert, key)) => Some((read("etcd_cert", cert)?, read("etcd_key", key)?)),
                None => None,
            };
            Some(EtcdTls { ca: read("etcd_ca", ca)?, identity })
        }
    };
    let user = match &files.user {
        None => None,
        Some((user, file)) => {
            let text = String::from_utf8(read("etcd_password_file", file)?)
                .with_context(|| format!("`etcd_password_file` {}: not UTF-8", file.display()))?;
            let password = text.lines().next().unwrap_or_default().to_string();
            anyhow::ensure!(
                !password.is_empty(),
                "`etcd_password_file` {}: empty first line",
                file.display()
            );
            Some((user.clone(), password))
        }
    };
    Ok(EtcdAccess { tls, user })
}

/// What one shard needs to take part in the cluster.
struct ShardJoin {
    node: Arc<NodeCluster>,
    events: async_channel::Receiver<shardmq_cluster::control::ControlEvent>,
    link_socket: ListenerSocket,
}

/// Joins the cluster before any shard starts: binds the link listener, then connects to etcd,
/// takes a lease and registers (one line and a non-zero exit when etcd cannot be reached).
fn join_cluster(
    config: &crate::config::ClusterConfig,
    shards: usize,
    link_tls: Option<Arc<LinkCertificates>>,
) -> anyhow::Result<(Arc<NodeCluster>, Vec<ShardJoin>)> {
    use shardmq_cluster::control::{ControlConfig, ControlError};
    use shardmq_cluster::ownership::OwnershipConfig;
    use shardmq_cluster::NodeId;

    let link_sockets = bind_listener_sockets(config.link_listen, LISTEN_BACKLOG, shards)
        .with_context(|| format!("cannot listen for node links on {}", config.link_listen))?;
    // Port 0 (tests) advertises the port the kernel picked.
    let mut link_advertise = config.link_advertise;
    if link_advertise.port() == 0 {
        let bound = link_sockets[0].local_addr().context("node-link listener address")?;
        link_advertise.set_port(bound.port());
    }
    let node = NodeId::new(&config.node_id);
    let mut ownership = OwnershipConfig::new(node.clone());
    ownership.lease_ttl = config.lease_ttl;
    ownership.batch_delay = config.claim_batch_delay;
    ownership.batch_ops_max = config.claim_batch_max;
    ownership.claim_timeout = config.claim_timeout;
    let control_config = ControlConfig {
        cluster: config.name.clone(),
        node,
        endpoints: config.etcd.clone(),
        link_advertise,
        ownership,
        connect_timeout: ETCD_CONNECT_TIMEOUT,
        access: etcd_access(&config.etcd_access)?,
    };
    // A node restarted right after a crash finds its previous run still registered until that
    // run's lease expires (at most one TTL): it waits for that rather than failing.
    let patience = Instant::now() + config.lease_ttl + Duration::from_secs(1);
    let (control, events) = loop {
        match shardmq_cluster::control::ControlPlane::start(control_config.clone(), shards) {
            Ok(started) => break started,
            Err(ControlError::NodeIdTaken { ttl, .. }) if Instant::now() < patience => {
                tracing::warn!(
                    "node id {:?} is still registered (a previous run's lease, {ttl:?} left); \
                     waiting for it to expire",
                    config.node_id
                );
                std::thread::sleep(ttl.clamp(Duration::from_millis(200), Duration::from_secs(1)));
            }
            Err(error) => {
                return Err(anyhow::anyhow!("cannot join cluster {:?}: {error}", config.name))
            }
        }
    };
    tracing::info!(
        "joined cluster {:?} as node {:?} (etcd {}; node links on {link_advertise})",
        config.name,
        config.node_id,
        config.etcd.join(",")
    );
    match &config.link_tls {
        Some(files) => tracing::info!(
            "node links: TLS, peers authenticated by the cluster CA {}",
            files.ca.display()
        ),
        None => tracing::warn!(
            "node links: plaintext (`link_plaintext`): anyone who reaches {} can act as a node",
            config.link_listen
        ),
    }
    let node = Arc::new(NodeCluster::new(
        control,
        config.name.clone(),
        config.claim_timeout,
        config.retained_replicate_bytes_max,
        link_tls,
    ));
    let joins = events
        .into_iter()
        .zip(link_sockets)
        .map(|(events, link_socket)| ShardJoin { node: node.clone(), events, link_socket })
        .collect();
    Ok((node, joins))
}

/// How long start-up waits for etcd before giving up.
const ETCD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything one shard starts with.
struct Boot {
    listeners: Vec<ShardListener>,
    tls: Option<Arc<TlsCertificates>>,
    mesh: MeshEnds<Vec<MeshItem>>,
    stop: Arc<AtomicBool>,
    cluster: Option<ShardJoin>,
    store: Arc<ShardStore>,
    plan: ShardPlan,
    security: Arc<NodeSecurity>,
    live: Arc<LiveConfig>,
    memory: Arc<MemoryWatch>,
    counters: Arc<NodeCounters>,
    /// The admin API's questions for this shard.
    admin: crate::admin::ShardRequests,
}

/// The node's stores at start-up.
struct Stores {
    /// One per shard.
    stores: Vec<Arc<ShardStore>>,
    /// What each shard restores.
    plans: Vec<ShardPlan>,
    /// Files of shards that no longer exist, deleted once their contents moved.
    obsolete: Vec<std::path::PathBuf>,
}

/// Reads every shard file in the data directory, sorts its contents onto the shards of this run
/// (re-homing sessions when the shard count changed), and opens one store per shard.
fn open_stores(config: &Config, clock: WallClock) -> anyhow::Result<Stores> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mut files = Vec::new();
    let mut sessions = 0;
    for (index, path) in shard_files(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?
    {
        let store = ShardStore::open(&path, config.durability, UPGRADES)?;
        if let Some(from) = store.migrated_from() {
            tracing::info!(
                "migrated {} from storage format {from} to {FORMAT_VERSION}",
                path.display()
            );
        }
        let snapshot = store.load()?;
        let restored = decode_snapshot(snapshot, &clock)
            .with_context(|| format!("cannot restore {}", path.display()))?;
        sessions += restored.sessions.len();
        files.push((index, restored));
    }
    let found = files.len();
    let plan = rehome(files, config.shards);
    let moved: usize = plan.shards.iter().map(|p| p.moved.sessions.len()).sum();
    tracing::info!(
        "restored {sessions} stored sessions from {found} shard files in {}{}",
        dir.display(),
        if moved > 0 { format!(" ({moved} moved to a new home shard)") } else { String::new() }
    );
    let obsolete = plan.obsolete_files.iter().map(|&i| shard_file(dir, i)).collect();
    let stores = (0..config.shards)
        .map(|i| ShardStore::open(&shard_file(dir, i), config.durability, UPGRADES).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    if config.durability == Durability::None {
        tracing::warn!("durability = none: a crash can lose messages already acknowledged");
    }
    Ok(Stores { stores, plans: plan.shards, obsolete })
}

/// What SIGHUP reads again.
struct Reloads {
    security: Arc<NodeSecurity>,
    tls: Option<Arc<TlsCertificates>>,
    link_tls: Option<Arc<LinkCertificates>>,
    reloader: Reloader,
}

/// Waits for signals on a plain thread: SIGINT/SIGTERM raise the stop flag every shard's
/// heartbeat reads (a flag, not a cross-thread wake-up: see [`HEARTBEAT`]); SIGHUP reads the
/// configuration, the password file, the ACL and the TLS files again (shards pick the new ACL
/// and limits up on their next tick; new TLS connections take the new certificate).
fn spawn_signal_thread(stop: Arc<AtomicBool>, reloads: Reloads) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!(
                        "SIGHUP: reloading the configuration, the password file, the ACL and \
                         the TLS files"
                    );
                    reloads.reloader.reload();
                    reloads.security.reload();
                    if let Some(tls) = &reloads.tls {
                        tls.reload();
                    }
                    if let Some(link_tls) = &reloads.link_tls {
                        link_tls.reload();
                    }
                    continue;
                }
                tracing::info!(signal, "shutting down");
                stop.store(true, Ordering::Relaxed);
                return;
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// A one-waiter wake-up flag for a task on this shard.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// How the shard reaches a connection's task: the key of the connection's slot in the shard's
/// epoll set ([`Connection::notify_key`]), where the signals below wait for the task with the
/// waker the slot keeps anyway; and its socket's [`Connection::peer_key`], for the admin API's
/// peer addresses. Kept by value in [`ShardContext::conns`], 24 bytes an entry with its key (a
/// waker and flags of its own made that 40).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnHandle {
    notify: u64,
    peer: i32,
}

/// The shard asked for something since the task last looked (set with every signal below, and
/// alone by a resume).
const SIGNAL_WAKE: u8 = 1;
/// The shard has output for the connection.
const SIGNAL_FLUSH: u8 = 2;
/// The shard closes the connection (after writing its output).
const SIGNAL_CLOSE: u8 = 4;

impl ConnHandle {
    fn notify(self, signals: u8) {
        Connection::notify(self.notify, signals | SIGNAL_WAKE);
    }
}

impl ShardContext {
    /// The address of the client on `conn`, while it is connected to this shard.
    pub(crate) fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        // The entry goes before its connection closes (`ConnectionTask::poll`): the key is
        // still that connection's socket.
        let handle = *self.conns.borrow().get(&conn)?;
        Connection::peer_addr_of(handle.peer).ok()
    }
}

/// Lives on each shard: the state machine and the engine-side bookkeeping around it.
pub(crate) struct ShardContext {
    pub(crate) id: ShardId,
    pub(crate) shards: u16,
    pub(crate) state: RefCell<Shard>,
    conns: RefCell<HashMap<ConnId, ConnHandle>>,
    mesh_out: Vec<RefCell<Vec<MeshItem>>>,
    mesh_signals: Vec<Signal>,
    next_conn: Cell<u64>,
    pub(crate) stopping: Cell<bool>,
    pub(crate) stop_signal: Signal,
    /// Set when the node is part of a cluster.
    pub(crate) cluster: Option<Rc<ShardCluster>>,
    /// Authentication on CONNECT, and the ACL this shard's state holds (of `acl_generation`).
    security: Arc<NodeSecurity>,
    acl_generation: Cell<u64>,
    /// This shard's share of `max_connect_rate` (per listener), and the node's memory
    /// high-water mark.
    connect_rate_share: Cell<Option<f64>>,
    /// The configuration in force (SIGHUP replaces it), and the generation this shard applied.
    live: Arc<LiveConfig>,
    live_generation: Cell<u64>,
    memory: Arc<MemoryWatch>,
    /// This shard's slot of the counters `/metrics` reads.
    counters: Arc<NodeCounters>,
    /// The TLS configuration TLS listeners hand new connections.
    tls: Option<Arc<TlsCertificates>>,
    /// Connections on the whole node (incremented at CONNECT, decremented at close).
    connections: Arc<AtomicUsize>,
    connections_max: Cell<usize>,
    packet_bytes_max: Cell<u32>,
    /// The web pages WebSocket listeners accept, and `use_username_as_clientid` (both from the
    /// configuration in force, read here rather than from `live` at every accept or CONNECT).
    ws_origins: RefCell<Arc<AllowedOrigins>>,
    username_as_client_id: Cell<bool>,
    connect_timeout: Cell<Duration>,
    effects: RefCell<Vec<Effect>>,
    /// Output of connections whose socket was full, until it is written: kept here rather than
    /// in each [`ConnectionTask`], which every idle connection has.
    blocked_out: RefCell<HashMap<ConnId, BytesMut>>,
    /// Wakes the group committer.
    commit_signal: Signal,
    /// When the ticker wakes next, and what wakes it sooner ([`ShardContext::apply_effects`]
    /// when the state machine's next deadline became earlier).
    ticker_due: Cell<Instant>,
    ticker_wake: Signal,
    /// Set when a commit of this shard failed (so start-up keeps the files it moved data from).
    commit_failed: Cell<bool>,
    /// Peers whose [`MeshItem::Ready`] has arrived.
    ready_peers: Cell<usize>,
    ready_signal: Signal,
}

impl ShardContext {
    fn new_conn_id(&self) -> ConnId {
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
                    Effect::Flush(conn) => {
                        if let Some(handle) = conns.get(&conn) {
                            handle.notify(SIGNAL_FLUSH);
                        }
                    }
                    Effect::Close(conn) => match conns.get(&conn) {
                        Some(handle) => handle.notify(SIGNAL_CLOSE),
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
                for (token, ok) in answered {
                    state.peer_receipt(token, ok, Instant::now());
                }
                for token in answered_fetches {
                    state.retained_fetched(token, None, Instant::now());
                }
            }
            self.apply_effects();
        }
    }

    pub(crate) fn to_peer(&self, to: ShardId, item: MeshItem) {
        self.mesh_out[to.index()].borrow_mut().push(item);
        self.mesh_signals[to.index()].notify();
    }
}

async fn shard_main(
    id: ShardId,
    config: Config,
    clock: WallClock,
    boot: Boot,
    connections: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    obsolete: Arc<Vec<std::path::PathBuf>>,
) {
    let Boot {
        listeners,
        tls,
        mesh,
        stop,
        store,
        plan,
        cluster,
        security,
        live,
        memory,
        counters,
        admin,
    } = boot;
    let live_generation = live.generation();
    let stopping = Rc::new(Signal::default());
    runtime::spawn_local(heartbeat(stop, stopping.clone()));
    let mesh = mesh.connect().await;
    // Fails only when the shard cannot make its epoll set (out of descriptors or memory at
    // start-up); the shard's panic stops the broker with the reason.
    let listeners: Vec<(ListenerKind, TcpListener)> = listeners
        .into_iter()
        .map(|ShardListener { kind, socket }| {
            let listener = socket
                .into_listener()
                .unwrap_or_else(|error| panic!("shard {id} cannot register its listener: {error}"));
            (kind, listener)
        })
        .collect();
    let shards = config.shards;
    let mut state = Shard::with_storage(id, shards, config.limits.clone(), clock);
    let (acl_generation, authorizer) = security.authorizer();
    state.set_authorizer(authorizer);
    state.set_assigned_id_source(Box::new(os_random_u128));
    let (cluster, cluster_tasks) = match cluster {
        Some(ShardJoin { node, events, link_socket }) => {
            let link_listener = link_socket.into_listener().unwrap_or_else(|error| {
                panic!("shard {id} cannot register its node-link listener: {error}")
            });
            let shard_cluster = ShardCluster::new(node, clock);
            let replicate_bytes_max = shard_cluster.node.retained_replicate_bytes_max;
            state.set_retained_placement(shard_cluster.placement(), replicate_bytes_max);
            let versions = shard_cluster.node.retained_clock.clone();
            state.enable_retained_versions(
                clock,
                os_random_u128().map_or(0, |r| r as u64),
                versions,
            );
            (Some(Rc::new(shard_cluster)), Some((events, link_listener)))
        }
        None => (None, None),
    };
    let context = Rc::new(ShardContext {
        id,
        shards,
        state: RefCell::new(state),
        conns: RefCell::new(HashMap::new()),
        mesh_out: (0..shards).map(|_| RefCell::new(Vec::new())).collect(),
        mesh_signals: (0..shards).map(|_| Signal::default()).collect(),
        next_conn: Cell::new(1),
        stopping: Cell::new(false),
        stop_signal: Signal::default(),
        connections,
        connections_max: Cell::new(config.limits.connections_max),
        packet_bytes_max: Cell::new(config.limits.packet_bytes_max),
        ws_origins: RefCell::new(config.ws_origins.clone()),
        username_as_client_id: Cell::new(config.security.username_as_client_id),
        connect_timeout: Cell::new(config.limits.connect_timeout),
        effects: RefCell::new(Vec::new()),
        blocked_out: RefCell::new(HashMap::new()),
        commit_signal: Signal::default(),
        ticker_due: Cell::new(Instant::now()),
        ticker_wake: Signal::default(),
        commit_failed: Cell::new(false),
        ready_peers: Cell::new(0),
        ready_signal: Signal::default(),
        cluster,
        security,
        acl_generation: Cell::new(acl_generation),
        connect_rate_share: Cell::new(connect_rate_share(&config)),
        live,
        live_generation: Cell::new(live_generation),
        tls,
        memory,
        counters,
    });
    for sender in mesh.senders.into_iter().flatten() {
        runtime::spawn_local(mesh_sender(context.clone(), sender));
    }
    for receiver in mesh.receivers.into_iter().flatten() {
        runtime::spawn_local(mesh_receiver(context.clone(), receiver));
    }
    runtime::spawn_local(committer(context.clone(), store, config.durability));

    // Restore before any client connects: sessions homed here, then what moved here from
    // another shard's file (written to ours), then forget what moved away.
    {
        let now = Instant::now();
        let mut state = context.state.borrow_mut();
        state.restore(plan.own, false, now);
        state.restore(plan.moved, true, now);
        state.forget_moved(&plan.forget_sessions, &plan.forget_retained);
    }
    context.apply_effects();
    // The barrier: every peer has applied our routes when it sees our Ready (the mesh is FIFO),
    // and we have applied theirs when we have seen all of theirs.
    for peer in (0..shards).map(ShardId).filter(|&peer| peer != id) {
        context.to_peer(peer, MeshItem::Ready);
    }
    while context.ready_peers.get() + 1 < usize::from(shards) {
        context.ready_signal.wait().await;
    }
    // Files of shards that no longer exist go once every shard has written what moved from them.
    while !context.state.borrow().commit_idle() {
        runtime::sleep(Duration::from_millis(1)).await;
    }
    // A shard whose first commits failed counts as not done: the files stay, and the next start
    // moves their data again (rehome prefers the copy in a session's home file).
    let done = !context.commit_failed.get();
    if done && started.fetch_add(1, Ordering::AcqRel) + 1 == usize::from(shards) {
        for path in obsolete.iter() {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!(
                    "removed {} (its sessions moved to other shards)",
                    path.display()
                ),
                Err(error) => tracing::warn!("cannot remove {}: {error}", path.display()),
            }
        }
    }

    runtime::spawn_local(ticker(context.clone()));
    runtime::spawn_local(crate::admin::answer_requests(context.clone(), admin));
    if let (Some(interval), 0) = (config.sys_interval, id.0) {
        runtime::spawn_local(sys_publisher(context.clone(), interval));
    }
    if let Some((events, link_listener)) = cluster_tasks {
        runtime::spawn_local(cluster::control_events(context.clone(), events));
        runtime::spawn_local(cluster::link_accept_loop(context.clone(), link_listener));
        runtime::spawn_local(cluster::retained_fetcher(context.clone()));
        runtime::spawn_local(cluster::retained_puller(context.clone()));
    }
    for (kind, listener) in listeners {
        runtime::spawn_local(accept_loop(context.clone(), listener, kind));
    }

    // Runs until the signal thread raises the stop flag.
    stopping.wait().await;
    context.stopping.set(true);
    context.stop_signal.notify();
    context.state.borrow_mut().shutdown();
    context.apply_effects();
    // Connections flush their DISCONNECT and close; queued writes reach the store.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while (!context.conns.borrow().is_empty() || !context.state.borrow().commit_idle())
        && Instant::now() < deadline
    {
        runtime::sleep(Duration::from_millis(10)).await;
    }
}

/// Wakes the executor every [`HEARTBEAT`] and signals `stopping` once the stop flag is up.
async fn heartbeat(stop: Arc<AtomicBool>, stopping: Rc<Signal>) {
    loop {
        runtime::sleep(HEARTBEAT).await;
        if stop.load(Ordering::Relaxed) {
            stopping.notify();
        }
    }
}

/// The shard's group committer: takes everything queued since the last commit and commits it
/// as one transaction on the blocking seam, then releases what waited for it.
async fn committer(context: Rc<ShardContext>, store: Arc<ShardStore>, durability: Durability) {
    let path = store.path().to_path_buf();
    let mut store = Some(store);
    // Since when commits fail, how many did, and when that was last logged: an operator sees
    // the start, a reminder per COMMIT_ERROR_LOG_INTERVAL and the end, not a line per message.
    let mut failing: Option<(Instant, u64, Instant)> = None;
    loop {
        context.commit_signal.wait().await;
        loop {
            let Some(batch) = context.state.borrow_mut().take_commit_batch() else { break };
            let ops = batch.ops;
            let started = Instant::now();
            let outcome = match store.clone() {
                Some(open) => runtime::spawn_blocking(move || open.commit(&ops))
                    .await
                    .map_err(|panicked| anyhow::anyhow!("commit panicked: {panicked}"))
                    .and_then(|result| result.map_err(anyhow::Error::from)),
                None => Err(anyhow::anyhow!("the store is closed after an earlier failure")),
            };
            let ok = outcome.is_ok();
            if ok {
                context.counters.commit_took(usize::from(context.id.0), started.elapsed());
                if let Some((since, failed, _)) = failing.take() {
                    tracing::warn!(shard = %context.id, path = %path.display(), "storage commits succeed again, after {failed} failed over {:.1} s", since.elapsed().as_secs_f64());
                }
            }
            if let Err(error) = outcome {
                context.commit_failed.set(true);
                let now = Instant::now();
                // redb refuses further commits after a failed one: reopen the file (which also
                // recovers it) before the next batch.
                let reopened = reopen(store.take(), &path, durability).await;
                let reopen_error = reopened
                    .as_ref()
                    .err()
                    .map(|error| format!("; reopening the file failed too: {error}"))
                    .unwrap_or_default();
                store = reopened.ok();
                match &mut failing {
                    None => {
                        tracing::error!(shard = %context.id, path = %path.display(), "storage commit failed: {error:#}{reopen_error}; refusing QoS 1/2 messages that need the store until a commit succeeds");
                        failing = Some((now, 1, now));
                    }
                    Some((since, failed, logged_at)) => {
                        *failed += 1;
                        if now - *logged_at >= COMMIT_ERROR_LOG_INTERVAL {
                            tracing::error!(shard = %context.id, path = %path.display(), "storage commits still failing ({failed} over {:.0} s): {error:#}{reopen_error}", (now - *since).as_secs_f64());
                            *logged_at = now;
                        }
                    }
                }
            }
            context.state.borrow_mut().commit_finished(batch.tickets, ok, Instant::now());
            context.apply_effects();
        }
    }
}

/// Closes a store that failed and opens its file again; an error if it cannot be opened now
/// (the committer logs it with the failure; the next commit reports that and tries again).
async fn reopen(
    store: Option<Arc<ShardStore>>,
    path: &std::path::Path,
    durability: Durability,
) -> anyhow::Result<Arc<ShardStore>> {
    // The blocking thread of the failed commit has dropped its reference by now.
    drop(store);
    let path = path.to_path_buf();
    match runtime::spawn_blocking(move || ShardStore::open(&path, durability, UPGRADES)).await {
        Ok(Ok(store)) => Ok(Arc::new(store)),
        Ok(Err(error)) => Err(anyhow::Error::from(error)),
        Err(panicked) => Err(anyhow::anyhow!("reopening panicked: {panicked}")),
    }
}

/// A shard's share of the node's connect rate, per listener.
fn connect_rate_share(config: &Config) -> Option<f64> {
    config.connect_rate_max.map(|rate| f64::from(rate) / f64::from(config.shards))
}

async fn ticker(context: Rc<ShardContext>) {
    loop {
        if context.live.generation() != context.live_generation.get() {
            // SIGHUP brought a new configuration: what may change while running.
            let (generation, config) = context.live.current();
            context.state.borrow_mut().set_limits(config.limits.clone());
            context.connections_max.set(config.limits.connections_max);
            context.packet_bytes_max.set(config.limits.packet_bytes_max);
            context.ws_origins.replace(config.ws_origins.clone());
            context.username_as_client_id.set(config.security.username_as_client_id);
            context.connect_timeout.set(config.limits.connect_timeout);
            context.connect_rate_share.set(connect_rate_share(&config));
            context.live_generation.set(generation);
        }
        if context.security.generation() != context.acl_generation.get() {
            // SIGHUP brought a new ACL.
            let (generation, authorizer) = context.security.authorizer();
            context.state.borrow_mut().set_authorizer(authorizer);
            context.acl_generation.set(generation);
        }
        let now = Instant::now();
        let wait = context
            .state
            .borrow()
            .next_deadline()
            .map_or(TICK_INTERVAL, |due| due.saturating_duration_since(now).min(TICK_INTERVAL))
            .max(Duration::from_millis(1));
        context.ticker_due.set(now + wait);
        // An earlier deadline set meanwhile (a throttled connection's resume) wakes it early.
        future::or(runtime::sleep(wait), context.ticker_wake.wait()).await;
        context.state.borrow_mut().tick(Instant::now());
        context.apply_effects();
        context.counters.publish(usize::from(context.id.0), &context.state.borrow().stats());
    }
}

/// Publishes the `$SYS/broker/...` topics (Mosquitto's names) every `interval`, retained, on
/// this node only; runs on shard 0 from the node's counters.
async fn sys_publisher(context: Rc<ShardContext>, interval: Duration) {
    let version = format!("shardmq {}", env!("CARGO_PKG_VERSION"));
    // Mosquitto's clients/maximum: the most clients connected at once, as seen at each update.
    let mut connected_max = 0;
    loop {
        // The first update once every shard has published its counters (a tick).
        runtime::sleep(TICK_INTERVAL * 2).await;
        if context.stopping.get() {
            return;
        }
        let (total, uptime) = context.counters.totals();
        let dropped = total.dropped_qos0_slow
            + total.dropped_queue_full
            + total.dropped_expired
            + total.dropped_too_large
            + total.dropped_not_authorized;
        connected_max = connected_max.max(total.connections);
        let topics = [
            ("$SYS/broker/version", version.clone()),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            ("$SYS/broker/clients/connected", total.connections.to_string()),
            ("$SYS/broker/clients/total", total.sessions.to_string()),
            ("$SYS/broker/clients/maximum", connected_max.to_string()),
            (
                "$SYS/broker/clients/disconnected",
                total.sessions.saturating_sub(total.connections).to_string(),
            ),
            (
                "$SYS/broker/publish/messages/received",
                total.messages_received.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                total.messages_sent.iter().sum::<u64>().to_string(),
            ),
            ("$SYS/broker/publish/messages/dropped", dropped.to_string()),
            ("$SYS/broker/bytes/received", total.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", total.bytes_sent.to_string()),
            ("$SYS/broker/retained messages/count", total.retained.to_string()),
        ];
        {
            let mut state = context.state.borrow_mut();
            let now = Instant::now();
            for (topic, value) in topics {
                state.publish_system(topic, value, now);
            }
        }
        context.apply_effects();
        runtime::sleep(interval.saturating_sub(TICK_INTERVAL * 2)).await;
    }
}

async fn mesh_sender(context: Rc<ShardContext>, mut sender: MeshSender<Vec<MeshItem>>) {
    let peer = sender.peer().get();
    loop {
        context.mesh_signals[peer].wait().await;
        // Everything queued for this peer since the last send goes as one batch.
        let batch = std::mem::take(&mut *context.mesh_out[peer].borrow_mut());
        if batch.is_empty() {
            continue;
        }
        if sender.send(batch).await.is_err() {
            return;
        }
    }
}

async fn mesh_receiver(context: Rc<ShardContext>, mut receiver: MeshReceiver<Vec<MeshItem>>) {
    let from = ShardId(receiver.peer().get() as u16);
    while let Some(batch) = receiver.recv().await {
        let now = Instant::now();
        for item in batch {
            match item {
                MeshItem::Shard(msg) => context.state.borrow_mut().mesh(from, msg, now),
                MeshItem::Ready => {
                    context.ready_peers.set(context.ready_peers.get() + 1);
                    context.ready_signal.notify();
                }
                MeshItem::Cluster(item) => cluster::cluster_item(&context, item),
                MeshItem::Adopt(adoption) => {
                    let stream = match adoption.stream.into_connection() {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::warn!(shard = %context.id, "cannot adopt a connection: {error}");
                            continue;
                        }
                    };
                    let buf = BytesMut::from(&adoption.leftover[..]);
                    let decoder =
                        Decoder::client(adoption.connect.protocol, context.packet_bytes_max.get());
                    match adoption.layer {
                        None => start_connection(
                            context.clone(),
                            stream,
                            decoder,
                            buf,
                            adoption.connect,
                        ),
                        Some(layer) => start_connection(
                            context.clone(),
                            Layered::new(stream, layer),
                            decoder,
                            buf,
                            adoption.connect,
                        ),
                    }
                }
            }
        }
        context.apply_effects();
        runtime::yield_if_needed().await;
    }
}

async fn accept_loop(context: Rc<ShardContext>, listener: TcpListener, kind: ListenerKind) {
    let mut last_error_log: Option<Instant> = None;
    // Each listener has its own connect budget: a storm on one leaves the others' alone.
    let mut share = context.connect_rate_share.get();
    let mut budget = share.map(|share| ConnectBudget::new(share, Instant::now()));
    let shard = usize::from(context.id.0);
    context.counters.set_ready(shard, true);
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            context.stop_signal.wait().await;
            None
        })
        .await;
        let Some(accepted) = accepted else {
            context.counters.set_ready(shard, false);
            return;
        };
        match accepted {
            Ok(stream) => {
                // TCP_NODELAY comes from the listener (`bind_listener_socket`): Linux copies it
                // to every accepted socket, one setsockopt per connection saved.
                // Over the connect rate, the connection is refused as soon as its CONNECT is
                // read (CONNACK 0x9F, 3.1.1 code 3): a storm costs a read and a write per
                // attempt, and the clients' own back-off, rather than a backlog that keeps
                // growing while connected clients wait behind it.
                if context.connect_rate_share.get() != share {
                    // A reload changed the rate.
                    share = context.connect_rate_share.get();
                    budget = share.map(|share| ConnectBudget::new(share, Instant::now()));
                }
                let over_rate =
                    budget.as_mut().is_some_and(|budget| !budget.take(Instant::now()).is_zero());
                if over_rate && kind.is_tls() {
                    // A CONNACK 0x9F would cost a TLS handshake first (hundreds of µs of CPU,
                    // what the rate limit is there to save): closed at once instead.
                    stream.close();
                    continue;
                }
                let origins = || context.ws_origins.borrow().clone();
                match kind.layer(context.tls.as_deref(), origins) {
                    None => runtime::spawn_local(handshake(context.clone(), stream, over_rate)),
                    Some(layer) => {
                        let frame_bytes_max =
                            context.packet_bytes_max.get() as usize + WS_FRAME_SLACK_BYTES;
                        let stream = Layered::new(stream, Layer::new(&layer, frame_bytes_max));
                        runtime::spawn_local(handshake(context.clone(), stream, over_rate));
                    }
                }
            }
            Err(error) => {
                let now = Instant::now();
                if last_error_log.is_none_or(|at| now - at >= ACCEPT_ERROR_LOG_INTERVAL) {
                    tracing::warn!(shard = %context.id, "accept failed: {error}; backing off");
                    last_error_log = Some(now);
                }
                // Out of descriptors or memory: wait for connections to close. Anything else
                // (a connection reset before accept) is transient, but still never a busy loop.
                let pause = if needs_accept_backoff(&error) {
                    ACCEPT_BACKOFF
                } else {
                    Duration::from_millis(1)
                };
                runtime::sleep(pause).await;
            }
        }
    }
}

/// A WebSocket upgrade from a web page the broker does not serve (`ws_allowed_origins`): counted,
/// and logged at the 1st, 2nd, 4th, 8th... on this shard (a page can retry in a loop).
fn origin_refused<S: ClientStream>(context: &ShardContext, stream: &S, origin: &str) {
    let mut state = context.state.borrow_mut();
    state.connect_refused(ConnectRefusal::WebSocketOrigin);
    let refused = state.stats().connects_refused[ConnectRefusal::WebSocketOrigin as usize];
    if refused.is_power_of_two() {
        let peer = stream.connection().peer_addr().map_or("?".to_string(), |a| a.to_string());
        tracing::warn!(
            shard = %context.id,
            refused,
            "refused a WebSocket upgrade from {peer}: a page of origin {origin:?} may not use \
             the broker (`ws_allowed_origins`)"
        );
    }
}

/// Reads CONNECT on the accepting shard, then runs the connection here or hands it to the
/// client's home shard.
async fn handshake<S: ClientStream>(context: Rc<ShardContext>, mut stream: S, over_rate: bool) {
    let mut decoder = Decoder::server(context.packet_bytes_max.get());
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + context.connect_timeout.get();
    let mut connect = loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Packet(Packet::Connect(connect))) => break connect,
            // The server decoder refuses anything else as the first packet.
            Ok(Decoded::Packet(_)) => return,
            Ok(Decoded::NeedMore(_)) => {
                // No CONNECT in time, EOF or an error: close.
                if !read_more(&mut stream, &mut buf, deadline).await {
                    if let Some(origin) = stream.refused_origin() {
                        origin_refused(&context, &stream, origin);
                    }
                    return;
                }
            }
            Err(error) => return refuse_connect(stream, decoder.version(), &error).await,
        }
    };
    if over_rate {
        context.state.borrow_mut().connect_refused(ConnectRefusal::ConnectionRate);
        return send_refusal(&mut stream, connect.protocol, ReasonCode::CONNECTION_RATE_EXCEEDED)
            .await;
    }
    if context.memory.is_over() {
        // Over the memory high-water mark: new clients wait, connected ones keep working.
        context.state.borrow_mut().connect_refused(ConnectRefusal::Memory);
        return send_refusal(&mut stream, connect.protocol, ReasonCode::SERVER_BUSY).await;
    }
    let certified = match &context.tls {
        Some(tls) if tls.certificate_as_username() && stream.is_tls() => {
            match stream.peer_common_name() {
                Some(name) => Some(name),
                // A certificate without a usable common name names nobody: no falling back
                // to a user name the client picks.
                None => {
                    return send_refusal(&mut stream, connect.protocol, ReasonCode::NOT_AUTHORIZED)
                        .await
                }
            }
        }
        _ => None,
    };
    let mut connect = match certified {
        // The certificate names the user; an Authentication Method's exchange would be
        // another identity, and is refused.
        Some(_) if connect.properties.authentication_method.is_some() => {
            let reason = ReasonCode::BAD_AUTHENTICATION_METHOD;
            return send_refusal(&mut stream, connect.protocol, reason).await;
        }
        // The client's certificate, checked against the client CA in the TLS handshake, is
        // its credential: its common name is the user name, and no password is asked for.
        Some(name) => {
            connect.username = Some(name.into());
            connect.password = None;
            connect
        }
        None => {
            // The password, or the Authentication Method's exchange (which may read AUTH
            // packets).
            let mut wire = ConnectionWire {
                stream: &mut stream,
                decoder: &mut decoder,
                buf: &mut buf,
                deadline,
            };
            let peer = wire.stream.connection().peer_addr().ok().map(|address| address.ip());
            match enhanced_auth::authenticate(&context.security, connect, peer, &mut wire).await {
                Ok(connect) => connect,
                Err(refused) => {
                    // Refused (the CONNACK is out) or gone.
                    let cause = match refused {
                        Some(ReasonCode::SERVER_BUSY) => Some(ConnectRefusal::PasswordChecksBusy),
                        Some(ReasonCode::CONNECTION_RATE_EXCEEDED) => {
                            Some(ConnectRefusal::LoginBackoff)
                        }
                        Some(ReasonCode::BANNED) => Some(ConnectRefusal::LoginBanned),
                        Some(_) => Some(ConnectRefusal::NotAuthenticated),
                        None => None,
                    };
                    if let Some(cause) = cause {
                        context.state.borrow_mut().connect_refused(cause);
                    }
                    stream.close_gracefully();
                    return;
                }
            }
        }
    };
    if context.username_as_client_id.get() {
        // `use_username_as_clientid`: the user name is the client id, so no client of another
        // user can name this one's session.
        match connect.username.clone() {
            Some(username) => connect.client_id = username,
            None => {
                let cause = ConnectRefusal::NotAuthenticated;
                context.state.borrow_mut().connect_refused(cause);
                let reason = ReasonCode::NOT_AUTHORIZED;
                return send_refusal(&mut stream, connect.protocol, reason).await;
            }
        }
    }
    let home = if connect.client_id.is_empty() {
        // The state machine assigns an id homed on this shard.
        context.id
    } else {
        home_shard(&connect.client_id, context.shards)
    };
    if home == context.id {
        // A task of its own rather than awaited here: this handshake's state (its read and
        // timeout futures) would otherwise stay allocated beside the connection for its life.
        return start_connection(context, stream, decoder, buf, connect);
    }
    let (connection, layer) = stream.into_parts();
    match connection.into_handoff() {
        Ok(handoff) => {
            let adoption = Adoption { stream: handoff, layer, connect, leftover: buf.freeze() };
            context.to_peer(home, MeshItem::Adopt(adoption));
        }
        Err(error) => tracing::warn!(shard = %context.id, "cannot hand a connection over: {error}"),
    }
}

/// Waits until `deadline` for more bytes and appends them to `buf` (maybe none: a spurious
/// wake-up, or bytes a layer kept). False on EOF, an error, or the deadline. An empty `buf` is
/// given up while it waits.
pub(crate) async fn read_more<S: ClientStream>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let readable = future::or(
        async {
            poll_fn(|cx| stream.poll_readable(cx)).await;
            true
        },
        async {
            runtime::sleep(left).await;
            false
        },
    )
    .await;
    if !readable {
        return false;
    }
    match stream.try_read_buf(buf) {
        Ok(Some(n)) if n > 0 => true,
        Ok(None) => {
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            true
        }
        _ => false,
    }
}

/// Answers a CONNECT that could not be decoded: a v5 CONNACK with the reason code, a 3.1.1
/// CONNACK "unacceptable protocol version" for an unknown level, or just a close.
async fn refuse_connect<S: ClientStream>(
    mut stream: S,
    version: Option<ProtocolVersion>,
    error: &DecodeError,
) {
    let (version, reason) = match (version, error) {
        (Some(ProtocolVersion::V5), error) => (ProtocolVersion::V5, error.reason_code()),
        (_, DecodeError::UnsupportedProtocol { .. }) => {
            (ProtocolVersion::V3_1_1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)
        }
        _ => return,
    };
    send_refusal(&mut stream, version, reason).await;
}

/// Writes a CONNACK refusing the connection (best effort: the connection closes next anyway).
async fn send_refusal<S: ClientStream>(
    stream: &mut S,
    version: ProtocolVersion,
    reason: ReasonCode,
) {
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    if connack.encode(version, &mut out).is_ok() {
        let _ = poll_fn(|cx| poll_write_all(stream, &mut out, cx)).await;
        stream.close_gracefully();
    }
}

/// Admits a connection whose CONNECT has been read on its client's home shard: registers it
/// with the shard and starts its task ([`ConnectionTask`]), or refuses it (too many
/// connections, or the broker is stopping).
fn start_connection<S: ClientStream>(
    context: Rc<ShardContext>,
    mut stream: S,
    decoder: Decoder,
    buf: BytesMut,
    connect: Box<Connect>,
) {
    if context.connections.fetch_add(1, Ordering::Relaxed) >= context.connections_max.get()
        || context.stopping.get()
    {
        context.connections.fetch_sub(1, Ordering::Relaxed);
        let (reason, cause) = if context.stopping.get() {
            (ReasonCode::SERVER_UNAVAILABLE, ConnectRefusal::Stopping)
        } else {
            (ReasonCode::QUOTA_EXCEEDED, ConnectRefusal::ConnectionLimit)
        };
        context.state.borrow_mut().connect_refused(cause);
        let version = connect.protocol;
        drop(connect);
        return runtime::spawn_local(async move {
            send_refusal(&mut stream, version, reason).await;
        });
    }
    if context.cluster.is_some() && !connect.client_id.is_empty() {
        // The client id must be this node's in etcd before CONNACK (ids the shard assigns are
        // unique to this node and need no claim).
        return runtime::spawn_local(async move {
            let client_id = connect.client_id.to_string();
            let username = connect.username.as_deref();
            let claimed = cluster::claim(&context, &client_id, connect.clean_start, username).await;
            let serving = context
                .cluster
                .as_ref()
                .is_some_and(|cluster| cluster.node.fence.may_serve(Instant::now()));
            let refused = match claimed {
                Err(cause) => Some(cause),
                Ok(()) if context.stopping.get() => Some(ConnectRefusal::Stopping),
                Ok(()) if !serving => Some(ConnectRefusal::Fenced),
                Ok(()) => None,
            };
            if let Some(cause) = refused {
                context.connections.fetch_sub(1, Ordering::Relaxed);
                context.state.borrow_mut().connect_refused(cause);
                let version = connect.protocol;
                drop(connect);
                // "Busy" asks the client to come back later; "unavailable" to try elsewhere.
                let reason = match cause {
                    ConnectRefusal::EtcdBusy => ReasonCode::SERVER_BUSY,
                    ConnectRefusal::SessionOfAnotherUser => ReasonCode::NOT_AUTHORIZED,
                    _ => ReasonCode::SERVER_UNAVAILABLE,
                };
                return send_refusal(&mut stream, version, reason).await;
            }
            register_connection(context, stream, decoder, buf, connect);
        });
    }
    register_connection(context, stream, decoder, buf, connect);
}

/// Hands an admitted connection's CONNECT to the shard and starts its task.
fn register_connection<S: ClientStream>(
    context: Rc<ShardContext>,
    stream: S,
    decoder: Decoder,
    buf: BytesMut,
    connect: Box<Connect>,
) {
    let conn = context.new_conn_id();
    let handle = ConnHandle { notify: stream.notify_key(), peer: stream.peer_key() };
    context.conns.borrow_mut().insert(conn, handle);
    context.state.borrow_mut().connect(conn, unbox(connect), Instant::now());
    context.apply_effects();
    runtime::spawn_local(ConnectionTask { context, conn, buf, decoder, stream, step: Step::Feed });
}

/// Moves a value out of its box and frees the box at once. `*boxed` in an async block frees the
/// box only when the block's state is dropped: for the CONNECT (~1 KB of fields, all moved out
/// by then) that was the end of the connection.
// Taking the box is the point: it is freed when this returns.
#[allow(clippy::boxed_local)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// One connection on its client's home shard: feeds its packets to the shard and writes what the
/// shard produces for it, until either side closes; then tells the shard.
///
/// A hand-written future rather than an `async` block: this state lives as long as the
/// connection, and a compiler-laid-out coroutine kept 240 bytes (the arguments, the output being
/// written and each await's future side by side, `-Zprint-type-sizes`) where these fields take
/// 72 (output that finds the socket full waits in [`ShardContext::blocked_out`]).
struct ConnectionTask<S> {
    context: Rc<ShardContext>,
    conn: ConnId,
    /// Bytes read and not yet decoded; no allocation while empty.
    buf: BytesMut,
    decoder: Decoder,
    stream: S,
    step: Step,
}

// Every plain connection's task holds one: its size is part of the memory per idle connection
// (a TLS or WebSocket one adds a pointer to its layer).
const _: () = assert!(std::mem::size_of::<ConnectionTask<Connection>>() == 72);

/// Where a [`ConnectionTask`] goes on when polled.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Decode what has arrived, then write, wait or yield.
    Feed,
    /// Take the shard's output for the connection and write it, then feed.
    Write,
    /// The socket was full: write the rest of the output (kept in
    /// [`ShardContext::blocked_out`]), then feed.
    Blocked,
    /// Paused (its subscribers are draining): wait for a signal (a resume, flush or close).
    Paused,
    /// Wait for data or a signal.
    Wait,
}

impl<S: ClientStream> Future for ConnectionTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let task = self.get_mut();
        let Poll::Ready(lost) = task.serve(cx) else { return Poll::Pending };
        let context = &task.context;
        let now = Instant::now();
        if let Step::Blocked = task.step {
            context.blocked_out.borrow_mut().remove(&task.conn);
        }
        context.conns.borrow_mut().remove(&task.conn);
        if lost {
            context.state.borrow_mut().connection_lost(task.conn, now);
        } else {
            context.state.borrow_mut().connection_closed(task.conn);
        }
        context.apply_effects();
        context.connections.fetch_sub(1, Ordering::Relaxed);
        Poll::Ready(())
    }
}

impl<S: ClientStream> ConnectionTask<S> {
    /// The connection's loop. Ready with true if the connection was lost (EOF or an error)
    /// rather than closed by the shard.
    fn serve(&mut self, cx: &mut TaskContext<'_>) -> Poll<bool> {
        let conn = self.conn;
        loop {
            match self.step {
                Step::Feed => {}
                Step::Write | Step::Blocked => {
                    let written = if let Step::Write = self.step {
                        let mut out = self.context.state.borrow_mut().take_output(conn);
                        let taken = out.len();
                        let written = poll_write_all(&mut self.stream, &mut out, cx);
                        if written.is_pending() {
                            if out.len() < taken {
                                self.partly_written();
                            }
                            // The socket is full: the rest waits beside the task rather than in
                            // it (rarely needed, and the task's state is every idle
                            // connection's).
                            self.context.blocked_out.borrow_mut().insert(conn, out);
                            self.step = Step::Blocked;
                        }
                        written
                    } else {
                        let mut blocked = self.context.blocked_out.borrow_mut();
                        let (written, moved) = match blocked.get_mut(&conn) {
                            Some(out) => {
                                let before = out.len();
                                let written = poll_write_all(&mut self.stream, out, cx);
                                (written, out.len() < before)
                            }
                            None => (Poll::Ready(Ok(())), false),
                        };
                        if let Poll::Ready(Ok(())) = written {
                            blocked.remove(&conn);
                        }
                        drop(blocked);
                        if written.is_pending() && moved {
                            self.partly_written();
                        }
                        written
                    };
                    match written {
                        // A close (keepalive timeout, takeover, protocol error) does not wait
                        // for a peer that stopped reading: what it has not taken is dropped.
                        Poll::Pending => {
                            return match self.stream.poll_signals(SIGNAL_CLOSE, cx) {
                                Poll::Ready(signals) if signals & SIGNAL_CLOSE != 0 => {
                                    self.stream.close_gracefully();
                                    Poll::Ready(false)
                                }
                                _ => Poll::Pending,
                            };
                        }
                        // What is left blocked, if anything, goes when the task ends.
                        Poll::Ready(Err(_)) => return Poll::Ready(true),
                        Poll::Ready(Ok(())) => {}
                    }
                    self.context.state.borrow_mut().output_written(conn, Instant::now());
                    self.context.apply_effects();
                    let signals = self.stream.signals();
                    if signals & SIGNAL_CLOSE != 0 && signals & SIGNAL_FLUSH == 0 {
                        self.stream.close_gracefully();
                        return Poll::Ready(false);
                    }
                    self.step = Step::Feed;
                    if poll_yield(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Step::Paused => {
                    // Resumed by a signal (Effect::Resume), or woken to flush or close.
                    // Meanwhile what is not a PUBLISH is still read and fed (acknowledgements,
                    // PINGREQ, DISCONNECT): a paused client that also subscribes must be able to
                    // acknowledge its own deliveries, or its pause would spread to everyone
                    // feeding it. Reading stops at the first PUBLISH.
                    if self.stream.poll_signals(SIGNAL_WAKE, cx).is_ready() {
                        self.step = Step::Feed;
                    } else if !front_is_publish(&self.buf)
                        && self.stream.poll_readable(cx).is_ready()
                    {
                        self.step = Step::Feed;
                        match self.stream.try_read_buf(&mut self.buf) {
                            Ok(Some(0)) | Err(_) => return Poll::Ready(true),
                            Ok(Some(_) | None) => {}
                        }
                    } else {
                        return Poll::Pending;
                    }
                }
                Step::Wait => {
                    if self.stream.poll_readable(cx).is_pending() {
                        if self.stream.poll_signals(SIGNAL_WAKE, cx).is_pending() {
                            return Poll::Pending;
                        }
                        self.step = Step::Feed;
                        continue;
                    }
                    self.step = Step::Feed;
                    // Nothing read (a spurious wake-up) goes round again: an empty buffer is
                    // given up before the next wait.
                    match self.stream.try_read_buf(&mut self.buf) {
                        Ok(Some(0)) | Err(_) => return Poll::Ready(true),
                        Ok(Some(_) | None) => {}
                    }
                }
            }
            self.step = self.feed();
            if let Step::Feed = self.step {
                // The batch limit stopped decoding: let other tasks run, then go on.
                if poll_yield(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    }

    /// The socket took part of this connection's output and is full again: tells the shard
    /// the subscriber still drains (a congested one that does is not stalled).
    fn partly_written(&self) {
        self.context.state.borrow_mut().output_progress(self.conn, Instant::now());
    }

    /// Feeds what has arrived to the shard, a bounded batch per turn, and says what comes
    /// next: [`Step::Write`] with the shard's output taken, [`Step::Paused`], [`Step::Feed`]
    /// when the batch limit stopped decoding, or [`Step::Wait`].
    fn feed(&mut self) -> Step {
        let context = &*self.context;
        let conn = self.conn;
        if context.cluster.as_ref().is_some_and(|c| !c.node.fence.may_serve(Instant::now())) {
            // This node's lease may have lapsed (a long pause, a partition): it must not serve
            // anyone a peer may have claimed. Every connection here closes.
            context.state.borrow_mut().fence(Instant::now());
            context.apply_effects();
            return Step::Write;
        }
        // A paused connection (its subscribers are draining) feeds no PUBLISH until resumed.
        let mut fed = 0;
        let mut more = true;
        let mut paused = context.state.borrow().is_paused(conn);
        while more && fed < PACKETS_PER_TURN_MAX {
            if paused && front_is_publish(&self.buf) {
                break;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Decoded::Packet(packet)) => {
                    let mut state = context.state.borrow_mut();
                    state.packet(conn, packet, Instant::now());
                    paused = state.is_paused(conn);
                    fed += 1;
                }
                Ok(Decoded::NeedMore(_)) => more = false,
                Err(error) => {
                    context.state.borrow_mut().decode_error(conn, &error, Instant::now());
                    self.buf.clear();
                    more = false;
                }
            }
        }
        if fed > 0 {
            context.apply_effects();
        }
        if self.buf.is_empty() {
            // An idle connection keeps no read buffer.
            self.buf = BytesMut::new();
        }
        if self.stream.signals() & (SIGNAL_FLUSH | SIGNAL_CLOSE) != 0 {
            self.stream.clear_signals(SIGNAL_FLUSH);
            Step::Write
        } else if paused {
            Step::Paused
        } else if more {
            Step::Feed
        } else {
            Step::Wait
        }
    }
}

/// Whether the next packet in `buf` is a PUBLISH (what a paused connection must not feed).
fn front_is_publish(buf: &BytesMut) -> bool {
    buf.first().is_some_and(|first| first >> 4 == 3)
}

/// Writes `out` until it is empty, or until the socket is full (pending; `out` keeps the rest),
/// or the write fails.
pub(crate) fn poll_write_all<S: MqttStream>(
    stream: &mut S,
    out: &mut BytesMut,
    cx: &mut TaskContext<'_>,
) -> Poll<std::io::Result<()>> {
    while !out.is_empty() {
        match stream.poll_write(cx, out) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(sent)) => out.advance(sent),
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
        }
    }
    // What a layer (TLS, WebSocket) holds goes out too.
    stream.poll_flush(cx)
}

/// Polls [`runtime::yield_if_needed`] once: pending when the task has run long enough and
/// should let others run (it is woken at once). Its future holds nothing worth keeping: a
/// second poll would only return ready, so the caller goes on when polled again.
fn poll_yield(cx: &mut TaskContext<'_>) -> Poll<()> {
    std::pin::pin!(runtime::yield_if_needed()).poll(cx)
}

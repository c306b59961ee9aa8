//! `shardmq serve`: boots one shard per core and wires each shard's state machine
//! ([`shardmq_shard::Shard`]) to its listener, its connections, its timers and the mesh.
//!
//! Every shard runs the same tasks on its own executor: an accept loop on its SO_REUSEPORT
//! listener, one task per connection (read, decode, feed the shard, write what the shard
//! produced), one sender and one receiver per peer shard, and a ticker for keepalive, will delay
//! and session expiry. The state machine is only borrowed between awaits, never across one.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::BytesMut;
use futures_lite::future;
use shardmq_io::codec::Decoder;
use shardmq_io::runtime::{
    self, bind_listener_sockets, build_mesh, ListenerSocket, MeshEnds, MeshReceiver, MeshSender,
    ShardPlacement, TcpListener,
};
use shardmq_io::transport::Layered;
use shardmq_shard::persist::{decode_snapshot, rehome, ShardPlan, WallClock, UPGRADES};
use shardmq_shard::{ClientEvents, Shard, ShardId};
use shardmq_storage::{
    shard_file, shard_files, sync_data_dir, Durability, ShardStore, FORMAT_VERSION,
};

use crate::admin_token::AdminToken;
use crate::cluster::{self, NodeCluster, ShardCluster};
use crate::config::Config;
use crate::link_security::LinkCertificates;
use crate::listeners::{ListenerKind, ShardListener, TlsCertificates, LISTEN_BACKLOG};
use crate::metrics::{BridgeCounters, NodeCounters};
use crate::overload::MemoryWatch;
use crate::reload::{LiveConfig, Reloader};
use crate::security::NodeSecurity;

use crate::connection::{accept_loop, start_connection};
use crate::context::{MeshItem, ShardContext};
use crate::signal::Signal;
/// How often a shard runs its timers (keepalive, will delay, session expiry) at the latest.
const TICK_INTERVAL: Duration = Duration::from_millis(250);
/// How often every shard's executor wakes even when nothing happens. glommio 0.9.0 can lose the
/// wake-up of a parked executor when another shard sends on a mesh channel (seen here under CPU
/// contention as a CONNACK delayed by seconds, or a shard stuck connecting its mesh); the reactor
/// checks every shared channel each time it wakes, so a heartbeat bounds such a delay to this.
const HEARTBEAT: Duration = Duration::from_millis(5);
/// How long shutdown waits for connections to flush their DISCONNECT before exiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often commits that keep failing (a full disk) are logged again after the first failure.
const COMMIT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

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
    let admin_token = config.admin_token_file.as_deref().map(AdminToken::load).transpose()?;
    let admin_token = admin_token.map(Arc::new);
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
            admin_token: admin_token.clone(),
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
    counters.set_bridges(
        config.bridges.iter().map(|bridge| Arc::new(BridgeCounters::new(&bridge.name))).collect(),
    );
    let logins = security.clone();
    counters.set_logins(Box::new(move || logins.login_figures()));
    if let Some(node) = &node_cluster {
        count_cluster(&counters, node);
    }
    let webhook = start_webhook(&config, &counters)?;
    let admin_requests = start_admin(&config, admin_token, &counters, node_cluster.as_ref())?;
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
            webhook: webhook.clone(),
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
    wait_for_shards(handles, node_cluster)
}

/// Starts the event webhook's thread if `event_webhook_url` is set: the queue the shards' sinks
/// hand events to. Its figures go to `/metrics`.
fn start_webhook(
    config: &Config,
    counters: &NodeCounters,
) -> anyhow::Result<Option<crate::event_webhook::WebhookQueue>> {
    let Some(webhook) = &config.event_webhook else { return Ok(None) };
    let (queue, figures) =
        crate::event_webhook::start(webhook).context("cannot start the event webhook")?;
    counters.set_webhook(figures);
    Ok(Some(queue))
}

/// The client events a shard has: published on `$SYS` with `client_events`, handed to the
/// webhook's queue with `event_webhook_url`; `None` with neither (then they cost one branch).
fn client_events(
    config: &Config,
    clock: WallClock,
    webhook: Option<crate::event_webhook::WebhookQueue>,
) -> Option<ClientEvents> {
    let events = match &config.client_events {
        Some(node) => ClientEvents::new(node, clock),
        None if webhook.is_some() => ClientEvents::unpublished(clock),
        None => return None,
    };
    Some(match webhook {
        Some(queue) => events.with_sink(queue.sink()),
        None => events,
    })
}

/// Starts the admin endpoint if one is configured (its client API behind `token` when there is
/// one); the channels each shard answers its questions from.
fn start_admin(
    config: &Config,
    token: Option<Arc<AdminToken>>,
    counters: &Arc<NodeCounters>,
    node_cluster: Option<&Arc<NodeCluster>>,
) -> anyhow::Result<Vec<crate::admin::ShardRequests>> {
    // Each shard answers the admin API's questions from a channel of its own.
    let (mut admin_shards, admin_requests) = crate::admin::Shards::new(usize::from(config.shards));
    if let Some(node) = node_cluster {
        admin_shards.set_drain(node.draining.clone(), node.drain_reference.clone());
    }
    if let Some(address) = config.admin_listen {
        let fence = node_cluster.map(|node| node.fence.clone());
        // Ready once every shard accepts, and (in a cluster) while the node may serve.
        let ready = move || fence.as_ref().is_none_or(|fence| fence.may_serve(Instant::now()));
        let hosts = config.admin_hosts.clone();
        let guarded = token.is_some();
        let cluster = node_cluster.map(|node| {
            let node = node.clone();
            let id = node.node.to_string();
            let status = Box::new(move || cluster_status(&node));
            crate::admin::ClusterView { node: id, status }
        });
        let reach = (counters.clone(), admin_shards);
        let bound = crate::admin::start(address, hosts, token, reach, ready, cluster)?;
        let api = if guarded { "/api/v1 with the admin token" } else { "/api/v1" };
        tracing::info!("admin endpoint on http://{bound} (/metrics, /health, /ready, {api})");
        if let Some(warning) = crate::admin::open_api_warning(address, guarded) {
            tracing::warn!("{warning}");
        }
    }
    Ok(admin_requests)
}

/// `GET /api/v1/cluster`: the members as this node last read them from etcd, whether it reaches
/// etcd now, and whether it may serve (holds its lease).
fn cluster_status(node: &NodeCluster) -> serde_json::Value {
    let members: Vec<serde_json::Value> = node
        .control
        .members()
        .iter()
        .map(|member| {
            serde_json::json!({
                "node": member.node.to_string(),
                "link": member.link.to_string(),
                "lease": member.lease.0,
                "this_node": member.node == node.node,
            })
        })
        .collect();
    serde_json::json!({
        "cluster": node.cluster,
        "node": node.node.to_string(),
        "etcd_ok": node.control.etcd_ok(),
        "serving": node.fence.may_serve(Instant::now()),
        "members": members,
        "answer_timeout_secs": crate::admin::CLUSTER_ANSWER_TIMEOUT.as_secs(),
    })
}

/// Waits for every shard to stop, then leaves the cluster; a shard's panic is the error.
fn wait_for_shards(
    handles: Vec<runtime::ShardHandle<()>>,
    node_cluster: Option<Arc<NodeCluster>>,
) -> anyhow::Result<()> {
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
    counters.set_links(Box::new(move || crate::metrics::LinkFigures {
        tls: links.link_tls.is_some(),
        refused: links.link_stats.refused(),
        handshakes_failed: links.link_stats.handshakes_failed(),
        members: links.control.members().len(),
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
    /// The event webhook's queue, when `event_webhook_url` is set.
    webhook: Option<crate::event_webhook::WebhookQueue>,
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
    let created = !dir.exists();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    if let (true, Some(parent)) = (created, dir.parent()) {
        // The new directory's own name, for a filesystem that needs its parent synced for it.
        let parent = if parent.as_os_str().is_empty() { std::path::Path::new(".") } else { parent };
        warn_unsynced(sync_data_dir(parent));
    }
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
    // The names of shard files this start created (see `sync_data_dir`).
    warn_unsynced(sync_data_dir(dir));
    if config.durability == Durability::None {
        tracing::warn!("durability = none: a crash can lose messages already acknowledged");
    }
    Ok(Stores { stores, plans: plan.shards, obsolete })
}

/// Logs a failed directory fsync. Not fatal: the files themselves are synced, and ext4 and XFS
/// commit their names with them; only a filesystem that needs the directory's own fsync can
/// lose a name (or bring a removed file back) at a power cut.
fn warn_unsynced(result: std::io::Result<()>) {
    if let Err(error) = result {
        tracing::warn!("{error}: a power cut may lose a shard file's creation or removal");
    }
}

/// What SIGHUP reads again.
struct Reloads {
    security: Arc<NodeSecurity>,
    tls: Option<Arc<TlsCertificates>>,
    link_tls: Option<Arc<LinkCertificates>>,
    admin_token: Option<Arc<AdminToken>>,
    reloader: Reloader,
}

impl Reloads {
    /// Reads the configuration and every file again, each keeping what it had if its new
    /// version cannot be used.
    fn reload(&self) {
        self.reloader.reload();
        self.security.reload();
        if let Some(tls) = &self.tls {
            tls.reload();
        }
        if let Some(link_tls) = &self.link_tls {
            link_tls.reload();
        }
        if let Some(admin_token) = &self.admin_token {
            admin_token.reload();
        }
    }
}

/// Waits for signals on a plain thread: SIGINT/SIGTERM raise the stop flag every shard's
/// heartbeat reads (a flag, not a cross-thread wake-up: see [`HEARTBEAT`]); SIGHUP reads the
/// configuration, the password file, the ACL, the TLS files and the admin token again (shards pick the new ACL
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
                        "SIGHUP: reloading the configuration, the password file, the ACL, the \
                         TLS files and the admin token"
                    );
                    reloads.reload();
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
        webhook,
    } = boot;
    // Read before anything awaits: a reload from here on is applied by the ticker.
    let live_generation = live.generation();
    let stopping = Rc::new(Signal::default());
    runtime::spawn_local(heartbeat(stop, stopping.clone()));
    let mesh = mesh.connect().await;
    // Fails only when the shard cannot make its epoll set (out of descriptors or memory at
    // start-up); the shard's panic stops the broker with the reason.
    let listeners: Vec<(ListenerKind, TcpListener, bool)> = listeners
        .into_iter()
        .map(|ShardListener { kind, socket, proxy_protocol }| {
            let listener = socket
                .into_listener()
                .unwrap_or_else(|error| panic!("shard {id} cannot register its listener: {error}"));
            (kind, listener, proxy_protocol)
        })
        .collect();
    let mut state = Shard::with_storage(id, config.shards, config.limits.clone(), clock);
    let (acl_generation, authorizer) = security.authorizer();
    state.set_authorizer(authorizer);
    state.set_assigned_id_source(Box::new(os_random_u128));
    state.set_client_events(client_events(&config, clock, webhook));
    let (cluster, cluster_tasks) = match cluster {
        Some(join) => {
            let (cluster, tasks) = join_shard_cluster(id, clock, &mut state, join);
            (Some(cluster), Some(tasks))
        }
        None => (None, None),
    };
    let parts = ContextParts {
        cluster,
        security,
        acl_generation,
        live,
        live_generation,
        tls,
        memory,
        counters,
        connections,
    };
    let context = Rc::new(new_context(id, &config, state, parts));
    for sender in mesh.senders.into_iter().flatten() {
        runtime::spawn_local(mesh_sender(context.clone(), sender));
    }
    for receiver in mesh.receivers.into_iter().flatten() {
        runtime::spawn_local(mesh_receiver(context.clone(), receiver));
    }
    runtime::spawn_local(committer(context.clone(), store, config.durability));
    restore(&context, plan, &started, &obsolete).await;
    runtime::spawn_local(ticker(context.clone()));
    let ask_peers = crate::cluster::ask_peers;
    runtime::spawn_local(crate::admin::answer_requests(context.clone(), admin, ask_peers));
    crate::bridge::start_bridges(&context, &config.bridges, context.counters.bridges());
    if let (Some(interval), 0) = (config.sys_interval, id.0) {
        runtime::spawn_local(sys_publisher(context.clone(), interval));
    }
    if let Some((events, link_listener)) = cluster_tasks {
        runtime::spawn_local(cluster::control_events(context.clone(), events));
        runtime::spawn_local(cluster::link_accept_loop(context.clone(), link_listener));
        runtime::spawn_local(cluster::retained_fetcher(context.clone()));
        runtime::spawn_local(cluster::retained_puller(context.clone()));
        runtime::spawn_local(cluster::handover_timer(context.clone()));
        runtime::spawn_local(crate::drain::drain_watch(context.clone()));
    }
    for (kind, listener, proxy_protocol) in listeners {
        runtime::spawn_local(accept_loop(context.clone(), listener, kind, proxy_protocol));
    }
    // Runs until the signal thread raises the stop flag.
    stopping.wait().await;
    shut_down(&context).await;
}

/// This shard's part of the cluster: its node-link listener, and retained messages placed and
/// versioned as the cluster's are.
fn join_shard_cluster(
    id: ShardId,
    clock: WallClock,
    state: &mut Shard,
    join: ShardJoin,
) -> (
    Rc<ShardCluster>,
    (async_channel::Receiver<shardmq_cluster::control::ControlEvent>, TcpListener),
) {
    let ShardJoin { node, events, link_socket } = join;
    let link_listener = link_socket.into_listener().unwrap_or_else(|error| {
        panic!("shard {id} cannot register its node-link listener: {error}")
    });
    let shard_cluster = ShardCluster::new(id, node, clock);
    let replicate_bytes_max = shard_cluster.node.retained_replicate_bytes_max;
    state.set_retained_placement(shard_cluster.placement(), replicate_bytes_max);
    let versions = shard_cluster.node.retained_clock.clone();
    state.enable_retained_versions(clock, os_random_u128().map_or(0, |r| r as u64), versions);
    (Rc::new(shard_cluster), (events, link_listener))
}

/// What a shard's context is made of besides its state machine and configuration.
struct ContextParts {
    cluster: Option<Rc<ShardCluster>>,
    security: Arc<NodeSecurity>,
    acl_generation: u64,
    live: Arc<LiveConfig>,
    live_generation: u64,
    tls: Option<Arc<TlsCertificates>>,
    memory: Arc<MemoryWatch>,
    counters: Arc<NodeCounters>,
    connections: Arc<AtomicUsize>,
}

fn new_context(id: ShardId, config: &Config, state: Shard, parts: ContextParts) -> ShardContext {
    let shards = config.shards;
    ShardContext {
        id,
        shards,
        state: RefCell::new(state),
        conns: RefCell::new(HashMap::new()),
        mesh_out: (0..shards).map(|_| RefCell::new(Vec::new())).collect(),
        mesh_signals: (0..shards).map(|_| Signal::default()).collect(),
        next_conn: Cell::new(1),
        stopping: Cell::new(false),
        stop_signal: Signal::default(),
        connections: parts.connections,
        connections_max: Cell::new(config.limits.connections_max),
        packet_bytes_max: Cell::new(config.limits.packet_bytes_max),
        ws_origins: RefCell::new(config.ws_origins.clone()),
        username_as_client_id: Cell::new(config.security.username_as_client_id),
        connect_timeout: Cell::new(config.limits.connect_timeout),
        effects: RefCell::new(Vec::new()),
        blocked_out: RefCell::new(HashMap::new()),
        acl_held: RefCell::new(HashMap::new()),
        closing: RefCell::new(VecDeque::new()),
        proxied: RefCell::new(HashMap::new()),
        commit_signal: Signal::default(),
        ticker_due: Cell::new(Instant::now()),
        ticker_wake: Signal::default(),
        commit_failed: Cell::new(false),
        ready_peers: Cell::new(0),
        ready_signal: Signal::default(),
        virtual_conns: RefCell::new(HashMap::new()),
        cluster: parts.cluster,
        security: parts.security,
        acl_generation: Cell::new(parts.acl_generation),
        connect_rate_share: Cell::new(connect_rate_share(config)),
        live: parts.live,
        live_generation: Cell::new(parts.live_generation),
        tls: parts.tls,
        memory: parts.memory,
        counters: parts.counters,
    }
}

/// Restores the shard's state before any client connects, waits until every shard has done the
/// same, and (the last shard to finish) removes the files of shards that no longer exist.
async fn restore(
    context: &ShardContext,
    plan: ShardPlan,
    started: &AtomicUsize,
    obsolete: &[std::path::PathBuf],
) {
    let shards = context.shards;
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
    for peer in (0..shards).map(ShardId).filter(|&peer| peer != context.id) {
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
        for path in obsolete {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!(
                    "removed {} (its sessions moved to other shards)",
                    path.display()
                ),
                Err(error) => tracing::warn!("cannot remove {}: {error}", path.display()),
            }
        }
        // Until the directory is synced, a power cut can bring a removed file back, and the
        // next start would read its sessions again (see `sync_data_dir`).
        if let Some(dir) = obsolete.first().and_then(|path| path.parent()) {
            warn_unsynced(sync_data_dir(dir));
        }
    }
}

/// Stops the shard: DISCONNECT to clients, then waits (a bounded grace) for connections to
/// flush and close and for queued writes to reach the store.
async fn shut_down(context: &ShardContext) {
    context.stopping.set(true);
    context.stop_signal.notify();
    context.state.borrow_mut().shutdown(Instant::now());
    context.apply_effects();
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
        let now = Instant::now();
        context.state.borrow_mut().tick(now);
        context.apply_effects();
        crate::connection::end_lingering(&context, now);
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
                            adoption.source,
                        ),
                        Some(layer) => start_connection(
                            context.clone(),
                            Layered::new(stream, layer),
                            decoder,
                            buf,
                            adoption.connect,
                            adoption.source,
                        ),
                    }
                }
            }
        }
        context.apply_effects();
        runtime::yield_if_needed().await;
    }
}

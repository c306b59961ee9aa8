//! The control-plane thread: drives the sans-IO [`Ownership`](crate::ownership::Ownership) core
//! against a real etcd.
//!
//! etcd-client needs tokio (inside glommio it panics), so everything etcd-related runs on one
//! OS thread of its own with a current-thread tokio runtime. The shards talk to it only through
//! [`ControlPlane`], whose async methods await nothing but async-channel receivers, so they run
//! on any executor; the thread talks back through per-shard [`ControlEvent`] channels and two
//! atomics ([`Fence`] and `etcd_ok`).
//!
//! **Invariant:** the [`Fence`] deadline is written only by the control thread, from the core's
//! `serving_until()` after every step; a shard serves a client only while `may_serve(now)`.

mod driver;
mod etcd;
mod lease;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::ownership::{OwnershipConfig, OwnershipStats, Priority};
use crate::types::{ClaimOutcome, Member, NodeId, Revision};

pub use driver::{
    EVENTS_RETRY_INTERVAL, LEASE_COMMANDS_QUEUED_MAX, LEASE_EVENTS_QUEUED_MAX,
    MEMBER_UPDATES_QUEUED_MAX, REQUESTS_PER_TURN_MAX, TXN_ANSWERS_QUEUED_MAX,
};
pub use etcd::{
    ERROR_LOG_INTERVAL, ETCD_REQUEST_TIMEOUT, HTTP2_KEEPALIVE_INTERVAL, HTTP2_KEEPALIVE_TIMEOUT,
    RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN,
};
pub use lease::{ABANDONED_LEASES_MAX, KEEPALIVES_OUTSTANDING_MAX};

/// Requests (claims, releases, reports) queued from the shards to the control thread. Claims
/// wait for room; fire-and-forget requests block their caller briefly only when it is full.
pub const REQUESTS_QUEUED_MAX: usize = 16 * 1024;
/// Events queued per shard. When a shard falls behind, newer member snapshots replace older
/// ones and fence changes collapse to the latest state (a `Fenced` is never skipped).
pub const EVENTS_QUEUED_MAX: usize = 64;
/// Default for [`ControlConfig::connect_timeout`].
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long [`ControlPlane::shutdown`] waits for etcd to revoke the lease.
pub const SHUTDOWN_REVOKE_TIMEOUT: Duration = Duration::from_secs(2);

/// How to reach etcd and who this node is.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The cluster's name: every key lives under `/shardmq/<cluster>/`.
    pub cluster: String,
    pub node: NodeId,
    /// etcd client URLs (`http://host:2379` or `host:2379`).
    pub endpoints: Vec<String>,
    /// Where peers reach this node's links; registered in the member key.
    pub link_advertise: SocketAddr,
    /// The core's settings; `ownership.node` must equal `node`.
    pub ownership: OwnershipConfig,
    /// Start-up fails if etcd does not answer (grant a lease) within this long.
    pub connect_timeout: Duration,
    /// TLS and a user for an etcd that requires them.
    pub access: EtcdAccess,
}

/// How this node proves itself to etcd and checks it is talking to etcd: TLS (the CA that
/// signed etcd's certificate, and this node's client certificate when etcd asks for one) and
/// an etcd user. Empty by default: plain HTTP, no user.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    pub tls: Option<EtcdTls>,
    /// User name and password (etcd's `auth enable`).
    pub user: Option<(String, String)>,
}

/// PEM contents, read by the caller (`Debug` shows neither).
#[derive(Clone)]
pub struct EtcdTls {
    pub ca: Vec<u8>,
    /// Certificate and key, for etcd's `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls").field("client_certificate", &self.identity.is_some()).finish()
    }
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("EtcdAccess")
            .field("tls", &self.tls.is_some())
            .field("client_certificate", &self.tls.as_ref().is_some_and(|t| t.identity.is_some()))
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl ControlConfig {
    /// A configuration with the core's defaults and [`CONNECT_TIMEOUT_DEFAULT`].
    pub fn new(
        cluster: &str,
        node: NodeId,
        endpoints: Vec<String>,
        link_advertise: SocketAddr,
    ) -> ControlConfig {
        ControlConfig {
            cluster: cluster.to_owned(),
            ownership: OwnershipConfig::new(node.clone()),
            node,
            endpoints,
            link_advertise,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            access: EtcdAccess::default(),
        }
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("etcd at {endpoints} is unreachable (no lease granted within {timeout:?}): {reason}")]
    Unreachable { endpoints: String, timeout: Duration, reason: String },
    #[error("node id {node} is already registered in etcd at {endpoints} by a live node (lease {lease:x}); if that was this node's previous run, its lease expires within {ttl:?}")]
    NodeIdTaken { node: NodeId, endpoints: String, lease: i64, ttl: Duration },
    #[error("invalid control-plane configuration: {0}")]
    Config(String),
    #[error("cannot start the control-plane thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the control-plane thread stopped during start-up")]
    ThreadExited,
}

/// The node's serving deadline, shared by every shard. Written only by the control thread.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` until which this node may serve; 0 = fenced.
    serving_until_nanos: AtomicU64,
}

impl Fence {
    fn new() -> Fence {
        Fence { base: Instant::now(), serving_until_nanos: AtomicU64::new(0) }
    }

    /// Whether this node may serve its clients at `now`: one atomic load.
    pub fn may_serve(&self, now: Instant) -> bool {
        let until = self.serving_until_nanos.load(Ordering::Acquire);
        until != 0 && (now.saturating_duration_since(self.base).as_nanos() as u64) < until
    }

    /// The deadline, or `None` while fenced.
    pub fn serving_until(&self) -> Option<Instant> {
        match self.serving_until_nanos.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.base + Duration::from_nanos(nanos)),
        }
    }

    fn set(&self, until: Option<Instant>) {
        let nanos = match until {
            None => 0,
            // A deadline at or before `base` has passed: 1 ns after base keeps it "not fenced
            // but expired", which `may_serve` reads as false just the same.
            Some(until) => (until.saturating_duration_since(self.base).as_nanos() as u64).max(1),
        };
        self.serving_until_nanos.store(nanos, Ordering::Release);
    }
}

/// What the control thread tells every shard.
#[derive(Debug, Clone)]
pub enum ControlEvent {
    /// The live members changed (sorted by node id; includes this node while registered).
    Members(Arc<[Member]>),
    /// This node may no longer serve (its lease could not be shown alive in time): stop
    /// serving every client.
    Fenced,
    /// This node serves (again). `new_lease`: under a new lease, whose grant dropped the
    /// ownerships of the previous one (the node's stored sessions must be claimed again);
    /// otherwise under the same lease, every ownership intact.
    Serving { new_lease: bool },
}

/// Counters of the control thread's etcd work, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ControlStats {
    /// Claims received (including claims after release).
    pub claims: u64,
    /// Ownership transactions sent to etcd.
    pub txns: u64,
    /// Operations in those transactions.
    pub txn_ops: u64,
    pub txns_committed: u64,
    pub txns_compare_failed: u64,
    /// Timed out or errored (etcd unreachable).
    pub txns_failed: u64,
    /// Transactions by duration (sent to answered, failures included): counts per bucket of
    /// [`TXN_LATENCY_BUCKETS_SECS`], the last one past them all.
    pub txn_latency_buckets: [u64; TXN_LATENCY_BUCKETS_SECS.len() + 1],
    /// The sum of those durations, in microseconds.
    pub txn_latency_micros: u64,
    /// Transactions by operations (the batch size): counts per bucket of
    /// [`TXN_OPS_BUCKETS`], the last one past them all.
    pub txn_ops_buckets: [u64; TXN_OPS_BUCKETS.len() + 1],
    /// Keepalive round trips (sent to answered): counts per bucket of
    /// [`TXN_LATENCY_BUCKETS_SECS`], the last one past them all.
    pub keepalive_latency_buckets: [u64; TXN_LATENCY_BUCKETS_SECS.len() + 1],
    pub keepalive_latency_micros: u64,
    /// Keepalive streams opened (the first at start, one after each stream etcd or the
    /// connection ended) and keepalives dropped because the lease task was stuck.
    pub keepalive_streams: u64,
    pub keepalives_dropped: u64,
    /// What the ownership core counts and estimates (window, latency, refusals, fences).
    pub core: OwnershipStats,
}

/// Upper bounds (seconds) of the transaction latency histogram's buckets.
/// (Seconds as well: a slow etcd answers in seconds, and that is what these show.)
pub const TXN_LATENCY_BUCKETS_SECS: [f64; 14] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0];
/// Upper bounds of the batch-size histogram's buckets (etcd takes 128 operations at most).
pub const TXN_OPS_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// The counters behind [`ControlStats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) claims: AtomicU64,
    pub(crate) txns: AtomicU64,
    pub(crate) txn_ops: AtomicU64,
    pub(crate) txns_committed: AtomicU64,
    pub(crate) txns_compare_failed: AtomicU64,
    pub(crate) txns_failed: AtomicU64,
    pub(crate) txn_latency_buckets: [AtomicU64; TXN_LATENCY_BUCKETS_SECS.len() + 1],
    pub(crate) txn_latency_micros: AtomicU64,
    pub(crate) txn_ops_buckets: [AtomicU64; TXN_OPS_BUCKETS.len() + 1],
    pub(crate) keepalive_latency_buckets: [AtomicU64; TXN_LATENCY_BUCKETS_SECS.len() + 1],
    pub(crate) keepalive_latency_micros: AtomicU64,
    pub(crate) keepalive_streams: AtomicU64,
    pub(crate) keepalives_dropped: AtomicU64,
    /// The core's own figures as of the driver's last step.
    pub(crate) core: Mutex<OwnershipStats>,
}

impl Stats {
    /// Counts a transaction of `ops` operations sent.
    pub(crate) fn txn_sent(&self, ops: usize) {
        self.txns.fetch_add(1, Ordering::Relaxed);
        self.txn_ops.fetch_add(ops as u64, Ordering::Relaxed);
        let bucket = TXN_OPS_BUCKETS.iter().position(|&bound| ops as u64 <= bound);
        let bucket = bucket.unwrap_or(TXN_OPS_BUCKETS.len());
        self.txn_ops_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a transaction answered (or failed) after `took`.
    pub(crate) fn txn_answered(&self, took: Duration) {
        latency_bucket(&self.txn_latency_buckets, &self.txn_latency_micros, took);
    }

    /// Counts a keepalive answered after `took`.
    pub(crate) fn keepalive_answered(&self, took: Duration) {
        latency_bucket(&self.keepalive_latency_buckets, &self.keepalive_latency_micros, took);
    }
}

/// Adds `took` to a latency histogram over [`TXN_LATENCY_BUCKETS_SECS`].
fn latency_bucket(buckets: &[AtomicU64], micros: &AtomicU64, took: Duration) {
    let secs = took.as_secs_f64();
    let bucket = TXN_LATENCY_BUCKETS_SECS.iter().position(|&bound| secs <= bound);
    buckets[bucket.unwrap_or(TXN_LATENCY_BUCKETS_SECS.len())].fetch_add(1, Ordering::Relaxed);
    micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
}

/// A request from a shard to the control thread.
#[derive(Debug)]
pub(crate) enum Request {
    Claim {
        client: String,
        /// `Some` for `claim_after_release`: the revision of the released ownership.
        after_release: Option<Revision>,
        priority: Priority,
        reply: async_channel::Sender<ClaimOutcome>,
    },
    Release {
        client: String,
    },
    HandedOver {
        client: String,
    },
    PeerReport {
        node: NodeId,
        etcd_ok: bool,
    },
    Shutdown,
}

/// State shared between the handles and the control thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: NodeId,
    pub(crate) fence: Arc<Fence>,
    pub(crate) etcd_ok: AtomicBool,
    pub(crate) members: Mutex<Arc<[Member]>>,
    pub(crate) stats: Arc<Stats>,
}

impl Shared {
    pub(crate) fn set_members(&self, members: Arc<[Member]>) {
        *self.members.lock().unwrap_or_else(PoisonError::into_inner) = members;
    }
}

/// The handle the engine and its shards hold. `Send + Sync`, cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    shared: Arc<Shared>,
    requests: async_channel::Sender<Request>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl ControlPlane {
    /// Connects to etcd, grants the lease, registers this node, reads the member list and
    /// starts the control thread. Returns one event receiver per shard.
    ///
    /// Fails (one line naming the endpoints) if etcd cannot be reached within
    /// `connect_timeout`, or if another live node has registered this node id.
    pub fn start(
        config: ControlConfig,
        shards: usize,
    ) -> Result<(ControlPlane, Vec<async_channel::Receiver<ControlEvent>>), ControlError> {
        if config.ownership.node != config.node {
            return Err(ControlError::Config(format!(
                "ownership.node {} differs from node {}",
                config.ownership.node, config.node
            )));
        }
        if config.endpoints.is_empty() {
            return Err(ControlError::Config("no etcd endpoints".to_owned()));
        }
        let (requests, requests_rx) = async_channel::bounded(REQUESTS_QUEUED_MAX);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| async_channel::bounded(EVENTS_QUEUED_MAX)).unzip();
        let shared = Arc::new(Shared {
            node: config.node.clone(),
            fence: Arc::new(Fence::new()),
            etcd_ok: AtomicBool::new(false),
            members: Mutex::new(Arc::from(Vec::new())),
            stats: Arc::new(Stats::default()),
        });
        let (ready, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("shardmq-control".to_owned())
            .spawn(move || driver::run_thread(config, thread_shared, requests_rx, senders, ready))
            .map_err(ControlError::Thread)?;
        let started = ready_rx.recv();
        match started {
            Ok(Ok(())) => Ok((
                ControlPlane { shared, requests, thread: Arc::new(Mutex::new(Some(thread))) },
                receivers,
            )),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ControlError::ThreadExited)
            }
        }
    }

    /// Claims `client_id` for a connecting client (see [`ClaimOutcome`]): served first,
    /// refused with `Busy` when etcd cannot take it within the claim timeout.
    pub async fn claim(&self, client_id: &str) -> ClaimOutcome {
        self.request_claim(client_id, None, Priority::Connect).await
    }

    /// Claims `client_id` for a session stored here whose client is not connected (after a
    /// new lease): yields to connects, never refused for load.
    pub async fn reclaim(&self, client_id: &str) -> ClaimOutcome {
        self.request_claim(client_id, None, Priority::Background).await
    }

    /// Claims `client_id` after its previous owner handed it over; `revision` is the one
    /// `HeldBy` reported.
    pub async fn claim_after_release(&self, client_id: &str, revision: Revision) -> ClaimOutcome {
        self.request_claim(client_id, Some(revision), Priority::Connect).await
    }

    async fn request_claim(
        &self,
        client_id: &str,
        after_release: Option<Revision>,
        priority: Priority,
    ) -> ClaimOutcome {
        let (reply, answer) = async_channel::bounded(1);
        let client = client_id.to_owned();
        let request = Request::Claim { client, after_release, priority, reply };
        if self.requests.send(request).await.is_err() {
            // The control thread has stopped (shutdown): nothing can be claimed.
            return ClaimOutcome::Unavailable;
        }
        answer.recv().await.unwrap_or(ClaimOutcome::Unavailable)
    }

    /// This node stopped serving `client_id` (clean disconnect, session over): frees the key.
    pub fn release(&self, client_id: &str) {
        self.send(Request::Release { client: client_id.to_owned() });
    }

    /// This node handed `client_id` over to the peer that claimed it.
    pub fn handed_over(&self, client_id: &str) {
        self.send(Request::HandedOver { client: client_id.to_owned() });
    }

    /// A peer's heartbeat says whether it reaches etcd.
    pub fn peer_report(&self, node: &NodeId, etcd_ok: bool) {
        self.send(Request::PeerReport { node: node.clone(), etcd_ok });
    }

    /// Whether this node currently reaches etcd (for link heartbeats): one atomic load.
    pub fn etcd_ok(&self) -> bool {
        self.shared.etcd_ok.load(Ordering::Acquire)
    }

    /// The serving deadline every shard checks.
    pub fn fence(&self) -> Arc<Fence> {
        Arc::clone(&self.shared.fence)
    }

    /// The latest member view (sorted by node id).
    pub fn members(&self) -> Arc<[Member]> {
        Arc::clone(&self.shared.members.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn node(&self) -> &NodeId {
        &self.shared.node
    }

    /// Counters of the etcd work done so far.
    pub fn stats(&self) -> ControlStats {
        let stats = &self.shared.stats;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ControlStats {
            claims: load(&stats.claims),
            txns: load(&stats.txns),
            txn_ops: load(&stats.txn_ops),
            txns_committed: load(&stats.txns_committed),
            txns_compare_failed: load(&stats.txns_compare_failed),
            txns_failed: load(&stats.txns_failed),
            txn_latency_buckets: std::array::from_fn(|i| load(&stats.txn_latency_buckets[i])),
            txn_latency_micros: load(&stats.txn_latency_micros),
            txn_ops_buckets: std::array::from_fn(|i| load(&stats.txn_ops_buckets[i])),
            keepalive_latency_buckets: std::array::from_fn(|i| {
                load(&stats.keepalive_latency_buckets[i])
            }),
            keepalive_latency_micros: load(&stats.keepalive_latency_micros),
            keepalive_streams: load(&stats.keepalive_streams),
            keepalives_dropped: load(&stats.keepalives_dropped),
            core: *stats.core.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Revokes the lease (peers can claim this node's clients at once; the member key goes
    /// too), stops the control thread and joins it. Pending claims answer `Unavailable`.
    /// Idempotent; blocks for at most about [`SHUTDOWN_REVOKE_TIMEOUT`].
    pub fn shutdown(&self) {
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(thread) = thread else { return };
        self.send(Request::Shutdown);
        if thread.join().is_err() {
            warn!("the control-plane thread panicked");
        }
    }

    /// Sends a fire-and-forget request. When the queue is full (the control thread is behind
    /// by [`REQUESTS_QUEUED_MAX`] requests) this blocks until there is room: dropping a
    /// release or handover would leave the core believing the wrong owner.
    fn send(&self, request: Request) {
        match self.requests.try_send(request) {
            Ok(()) | Err(async_channel::TrySendError::Closed(_)) => {}
            Err(async_channel::TrySendError::Full(request)) => {
                warn!("control-plane request queue full; waiting for room");
                let _ = self.requests.send_blocking(request);
            }
        }
    }
}

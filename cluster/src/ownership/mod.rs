//! Session ownership, fencing and takeover decisions (sans-IO).
//!
//! [`Ownership`] decides which etcd transactions claim and release client ids, what each
//! connecting client is answered, when this node keeps its lease alive, and when it must stop
//! serving. It does no I/O and reads no clock: every input carries `now`, outputs are drained
//! with [`Ownership::poll_action`], and [`Ownership::next_wakeup`] says when to call
//! [`Ownership::tick`]. The etcd driver (`control/`) and the deterministic simulation
//! (`node/tests/simulation.rs`) drive the same code.
//!
//! **Invariant:** at no moment do two nodes serve the same client id. It rests on four rules:
//!
//! - *Fencing.* A node serves only while [`Ownership::serving_until`] is in the future. etcd
//!   cannot expire a lease before `s + ttl` once a keepalive *sent* at `s` was answered with a
//!   TTL above zero, however late the answer, so the deadline counts from the send time of the
//!   newest answered keepalive, minus a stated margin (`lease.rs`). Nothing but a later answered
//!   keepalive (or the peer rule of `serving_until`) moves it; a process that was paused past it
//!   finds it in the past on resuming and fences.
//! - *Takeover order.* A claim that finds a live peer's key answers
//!   [`ClaimOutcome::HeldBy`]; the engine asks that peer to stop serving and ship the session,
//!   then calls [`Ownership::claim_after_release`], whose put compares on the revision the peer
//!   held. The previous owner has stopped before the new owner's claim commits.
//! - *Compare on every write.* A put requires the key absent or at the revision seen; a delete
//!   requires our revision. Races resolve in etcd, one winner.
//! - *Quarantine.* A node that told its peers "etcd is unreachable" serves no client on an
//!   ownership etcd confirms until [`CLAIM_QUARANTINE`] after it last said so (`lease.rs`,
//!   `Reachability`): peers may have been serving past their deadlines on those reports.
//!
//! And the liveness the design asks for: while etcd answers every request within half the
//! lease TTL, no node fences (keepalives go out every `ttl / 16` whatever is outstanding, and
//! each answer renews from its own send time), no node says "unreachable" (so nothing is
//! quarantined), and every claim is answered within the claim timeout, a connect beyond what
//! etcd takes now with a fast [`ClaimOutcome::Busy`] (`flow.rs`). The simulation checks both.
//!
//! What the driver and the engine must do for these rules to hold (the simulation's engine
//! model does each, and fails without it; `engine/src/cluster.rs` does each too: it installs a
//! shipped session as the frame arrives, before its claim is sent, keeps a handed-over copy
//! until `TransferInstalled`, and answers `busy` while one is kept for another node):
//!
//! - Answer every `Txn` exactly once (a timeout is `Failed`), and report a request that failed
//!   without an answer from etcd (a refused or broken connection) with
//!   [`Ownership::etcd_unreachable`]. Send every `KeepAlive` when asked and report its answer
//!   with [`Ownership::keepalive_answered`]; send `etcd_ok` as [`Ownership::report_etcd_ok`]
//!   gives it to every peer every few hundred milliseconds, and pass each peer's report on with
//!   the time it was received.
//! - Refuse to serve when `now >= serving_until`, and on `Fence` drop every client.
//! - Asked by a peer to hand a client over: stop serving it, call
//!   [`Ownership::handed_over`] — also when there is no session here, and even while a claim of
//!   it is in flight — and ship the session, keeping a copy until the new owner says it
//!   installed it. Answer "busy, retry" instead while a copy shipped *to* this node is being
//!   claimed: it may be newer than anything here.
//! - Where takeovers leave several copies of a session, install the newest; the key's
//!   revision ([`Ownership::revision`]) when each copy was last served orders them. A
//!   `claim_after_release` answered `Unavailable` or `Fenced` may still have committed (a fenced
//!   node keeps its lease and serves again under it): keep the shipped copy where a peer's ask
//!   will find it.

mod flow;
mod lease;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::types::{ClaimOutcome, LeaseId, Member, NodeId, Revision};
use flow::Flow;
pub use flow::{
    LATENCY_EPOCH, LATENCY_TARGET_FACTOR, LATENCY_TARGET_MAX, LATENCY_TARGET_MIN,
    TXNS_IN_FLIGHT_MAX, WINDOW_MIN,
};
pub use lease::{KeepaliveId, KEEPALIVES_PER_TTL, SERVING_MARGIN_DIVISOR};
use lease::{Lease, Reachability, Renewal};

/// Claims and releases per transaction at most. Each is a transaction of its own nested in the
/// one sent (`If(compare) Then(write) Else(read)`), so that each succeeds or fails on its own
/// compare; etcd allows a nested transaction `--max-txn-ops` (128 by default) less the number
/// of operations of the transaction around it, so 127 of them fit in one.
pub const TXN_OPS_MAX: usize = 127;
/// A peer's report counts for this long after it was received. Peers send one every few hundred
/// milliseconds.
pub const PEER_REPORT_FRESH: Duration = Duration::from_secs(1);
/// The age a peer report may have when it is processed (link delay plus queueing on the
/// control thread), assumed, not measured. It sizes [`CLAIM_QUARANTINE`].
pub const PEER_REPORT_DELAY_MAX: Duration = Duration::from_millis(250);
/// After a spell in which this node told peers "etcd is unreachable", it serves no client on an
/// ownership etcd confirms for this long once it says "etcd answers me" again: a peer that kept
/// serving on the strength of those reports must have stopped first. A report is used for
/// [`PEER_REPORT_FRESH`] after it is processed, processed at most [`PEER_REPORT_DELAY_MAX`] after
/// it was sent, or — when the receiver itself was paused — up to another [`PEER_REPORT_FRESH`]
/// late (a longer pause would have fenced it), hence twice the freshness plus the delay.
pub const CLAIM_QUARANTINE: Duration = Duration::from_millis(
    2 * PEER_REPORT_FRESH.as_millis() as u64 + PEER_REPORT_DELAY_MAX.as_millis() as u64,
);
/// The first retry after a failed transaction waits this long, doubling per failure...
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ...up to this.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// A release that keeps failing is abandoned after this many attempts; the key then lives until
/// the lease ends, and a claimer finds this node holding nothing (an empty handover).
pub const RELEASE_ATTEMPTS_MAX: u32 = 8;
/// How often a claim blocked by a key on an unknown lease (a dead node's, or a member the watch
/// has not shown yet) looks again; etcd deletes a dead lease's keys when it expires.
pub const HELD_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Claims and releases queued or in flight; a claim past it is answered `Busy` at once.
pub const OPS_PENDING_MAX: usize = 65_536;
/// A transaction unanswered for half a TTL plus this has failed (see
/// [`Ownership::txn_timeout`]).
pub const TXN_TIMEOUT_SLACK: Duration = Duration::from_millis(500);
/// A connect's claim leaves at least this much of the claim timeout to waiting in this node's
/// queue (the rest is for etcd to answer: see `Ownership::send_margin`).
pub const CLAIM_QUEUE_MIN: Duration = Duration::from_secs(1);
/// How long a background claim (the re-claim of a stored session) may wait: it yields to
/// connects, so it may wait for a long storm to pass.
pub const BACKGROUND_CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

/// How one node's ownership core behaves. [`OwnershipConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct OwnershipConfig {
    pub node: NodeId,
    /// The TTL this node's lease is granted with.
    pub lease_ttl: Duration,
    /// A batch is flushed when full or this long after its first operation was queued.
    pub batch_delay: Duration,
    /// Operations per transaction, at most [`TXN_OPS_MAX`]. 1 with a zero delay turns batching
    /// off.
    pub batch_ops_max: usize,
    /// A connect's claim not answered by then is answered `Unavailable`.
    pub claim_timeout: Duration,
    /// See [`CLAIM_QUARANTINE`]. Lowering it breaks the invariant when every node loses etcd
    /// and etcd expires their leases; only tests that never cut etcd may do so.
    pub claim_quarantine: Duration,
}

impl OwnershipConfig {
    pub fn new(node: NodeId) -> OwnershipConfig {
        OwnershipConfig {
            node,
            lease_ttl: Duration::from_secs(6),
            batch_delay: Duration::from_millis(2),
            batch_ops_max: TXN_OPS_MAX,
            claim_timeout: Duration::from_secs(5),
            claim_quarantine: CLAIM_QUARANTINE,
        }
    }
}

/// One claim, numbered by the caller; its answer carries the same ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// One transaction this core asked for; the driver answers it with
/// [`Ownership::txn_answered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(pub u64);

/// Who waits for a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A client waits for its CONNACK: served first, refused (`Busy`) when etcd cannot take it
    /// within the claim timeout.
    Connect,
    /// Nobody waits (the re-claim of a stored session under a new lease): fills transactions
    /// after connects, never refused for load, and may wait [`BACKGROUND_CLAIM_TIMEOUT`].
    Background,
}

/// The value of `/shardmq/<cluster>/sessions/<client>`: who owns the client, under which lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: NodeId,
    pub lease: LeaseId,
}

impl Owner {
    /// `<lease as 16 hex digits> <node>`: fixed-width first so decoding needs no escaping.
    pub fn encode(&self) -> Vec<u8> {
        format!("{:016x} {}", self.lease.0 as u64, self.node).into_bytes()
    }

    /// `None` for anything [`Owner::encode`] did not write: the bytes come from etcd.
    pub fn decode(bytes: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(bytes).ok()?;
        let lease = text.get(..16)?;
        let node = text.get(16..)?.strip_prefix(' ')?;
        if node.is_empty() || !lease.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let lease = u64::from_str_radix(lease, 16).ok()? as i64;
        Some(Owner { node: NodeId::new(node), lease: LeaseId(lease) })
    }
}

/// The condition one operation of a transaction puts on its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key must not exist.
    Absent,
    /// The key must still be at this `mod_revision`.
    ModRevision(Revision),
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Put `Owner { this node, the action's lease }`, attached to that lease.
    Put {
        client: String,
        compare: Compare,
    },
    Delete {
        client: String,
        compare: Compare,
    },
}

impl TxnOp {
    pub fn client(&self) -> &str {
        match self {
            TxnOp::Put { client, .. } | TxnOp::Delete { client, .. } => client,
        }
    }

    pub fn compare(&self) -> &Compare {
        match self {
            TxnOp::Put { compare, .. } | TxnOp::Delete { compare, .. } => compare,
        }
    }
}

/// What etcd answered to a transaction of one nested `If(op's compare) Then(op) Else(get op's
/// key)` per operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnAnswer {
    /// etcd applied it: per op, in op order, what its own compare gave; `revision` is the
    /// header revision, the new `mod_revision` of every key put.
    Applied { revision: Revision, results: Vec<OpResult> },
    /// etcd unreachable, timed out, or an error: nothing is known, the transaction may or may
    /// not have been applied.
    Failed,
}

/// One operation's outcome in an applied transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Its compare held: the write was made.
    Written,
    /// Its compare failed: the key's owner and `mod_revision` now (`None`: absent). A value
    /// that does not decode may be passed as an `Owner` with an empty node: it is treated as an
    /// unknown holder.
    CompareFailed { current: Option<(Owner, Revision)> },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run one etcd transaction; answer it exactly once with [`Ownership::txn_answered`] (a
    /// timeout is `Failed`).
    Txn {
        id: TxnId,
        lease: LeaseId,
        ops: Vec<TxnOp>,
    },
    Answer {
        ticket: Ticket,
        outcome: ClaimOutcome,
    },
    /// Stop serving every client now (disconnect them all).
    Fence,
    /// Serving (again). `new_lease`: under a lease this node has not served under before, so
    /// the ownerships of the previous one are gone (the engine re-claims its stored sessions);
    /// otherwise every key this node wrote still stands.
    Serve {
        new_lease: bool,
    },
    /// Ask etcd for a new lease (retrying until it is granted); answer with
    /// [`Ownership::lease_granted`].
    GrantLease,
    /// Send a keepalive for `lease` now, on the lease's keepalive stream (opening one if there
    /// is none), without waiting for earlier ones; answer with
    /// [`Ownership::keepalive_answered`] when etcd answers it.
    KeepAlive {
        lease: LeaseId,
        id: KeepaliveId,
    },
}

/// What the core counts and estimates, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OwnershipStats {
    /// Transactions allowed in flight now.
    pub window: f64,
    /// The mean transaction latency, if any was answered.
    pub latency_mean: Option<Duration>,
    /// The latency above which the window shrinks.
    pub latency_target: Duration,
    /// Transactions in flight now.
    pub txns_in_flight: usize,
    /// Connects' claims waiting to be sent, and background operations.
    pub claims_queued: usize,
    pub background_queued: usize,
    /// Claims refused because etcd could not take them in time: at admission, and later
    /// (shed from the queue before their deadline).
    pub claims_busy: u64,
    pub claims_shed: u64,
    /// Claims of a connection answered `Busy` because a newer connect of the same client id
    /// reached this node first.
    pub claims_superseded: u64,
    /// Claims answered `Unavailable` at their deadline.
    pub claims_timed_out: u64,
    /// Claim answers waiting for the quarantine to end.
    pub answers_held: usize,
    pub keepalives_sent: u64,
    pub keepalives_answered: u64,
    /// Times etcd said it was falling behind (see [`Ownership::etcd_congested`]), or a renewal
    /// became overdue (transactions then wait for it, see `Ownership::renewals_first`).
    pub congestion_signals: u64,
    /// Times this node stopped serving at its deadline, resumed under the same lease, and
    /// lost its lease (etcd said it was gone).
    pub fences: u64,
    pub resumes: u64,
    pub leases_lost: u64,
}

/// A peer's last heartbeat.
#[derive(Debug, Clone, Copy)]
struct PeerReport {
    etcd_ok: bool,
    received_at: Instant,
}

#[derive(Debug)]
enum OpKind {
    /// `ticket` is `None` once the claim was answered (timed out) while its put was in flight.
    /// `handed_over`: the engine handed the client to a peer while this put was in flight.
    Claim {
        ticket: Option<Ticket>,
        compare: Compare,
        after_release: bool,
        handed_over: bool,
        priority: Priority,
        deadline: Instant,
    },
    /// The revision to delete at; `None` while a claim ahead of it decides what we hold.
    Release { revision: Option<Revision> },
}

impl OpKind {
    /// Which batch queue the operation waits in: takeovers under way first (the session has
    /// left its previous owner and the client has waited one round already), then connects.
    fn class(&self) -> usize {
        match self {
            OpKind::Claim { after_release: true, .. } => TAKEOVER,
            OpKind::Claim { priority: Priority::Connect, .. } => LIVE,
            _ => BACKGROUND,
        }
    }
}

/// Indexes of the batch queues and deadline queues, in the order transactions take them.
const TAKEOVER: usize = 0;
const LIVE: usize = 1;
const BACKGROUND: usize = 2;
const CLASSES: [usize; 3] = [TAKEOVER, LIVE, BACKGROUND];

#[derive(Debug)]
struct Op {
    kind: OpKind,
    failures: u32,
}

/// The deadline of a claim that may be refused as busy while it waits to be sent: a
/// connect's (or its takeover's) whose transaction has not failed yet.
fn sheddable(op: &Op) -> Option<Instant> {
    match op {
        Op {
            kind: OpKind::Claim { ticket: Some(_), priority: Priority::Connect, deadline, .. },
            failures: 0,
        } => Some(*deadline),
        _ => None,
    }
}

/// Where the first queued operation of a key stands.
#[derive(Debug)]
enum Head {
    /// Not dispatched yet (transient inside a call).
    Idle,
    /// In the batch queue of that class, waiting to be sent.
    Batched(usize),
    InFlight(TxnId),
    /// Waiting for its retry timer after a failure (`timer` names the valid timer).
    Backoff {
        timer: u64,
    },
    /// A claim blocked by a key (at `revision`) on a lease that is no live member's.
    Held {
        timer: u64,
        owner: Owner,
        revision: Revision,
    },
}

/// The operations queued for one client id. Only the head is ever in a transaction, so no
/// transaction holds two operations on one key and no two transactions in flight touch it.
#[derive(Debug)]
struct KeyQueue {
    ops: VecDeque<Op>,
    head: Head,
}

#[derive(Debug)]
struct InFlight {
    clients: Vec<String>,
    sent_at: Instant,
}

/// A positive answer held back by the quarantine, for the ownership at `revision`.
#[derive(Debug)]
struct HeldAnswer {
    client: String,
    outcome: ClaimOutcome,
    revision: Option<Revision>,
}

/// The sans-IO ownership, fencing and takeover core of one node. Lives on the control-plane
/// thread.
#[derive(Debug)]
pub struct Ownership {
    config: OwnershipConfig,
    lease: Lease,
    /// Serving under `lease.id` (false while fenced, or before the first grant).
    serving: bool,
    /// The lease the last `Serve` named, to tell a resumption from a new lease.
    served_lease: Option<LeaseId>,
    reach: Reachability,
    flow: Flow,
    /// Transactions wait for an overdue renewal (see `renewals_first`): the window halved when
    /// this turned true.
    renewal_held: bool,
    members: Vec<Member>,
    reports: HashMap<NodeId, PeerReport>,
    /// What `members`, `reports` and the lease allow past the lease deadline (see
    /// [`Ownership::serving_until`]); recomputed whenever one of them changes, because
    /// `serving_until` is read on every event.
    extension: Option<Instant>,
    /// Client ids whose key this node wrote under `lease`, with the key's `mod_revision`.
    owned: HashMap<String, Revision>,
    /// Owned keys etcd confirmed during a quarantine: not served on until it ends.
    unconfirmed: HashSet<String>,
    /// By ticket: claims arrive in ticket order, so this releases them in arrival order.
    held_answers: BTreeMap<Ticket, HeldAnswer>,
    /// Ordered so that fencing answers tickets in a reproducible order.
    keys: BTreeMap<String, KeyQueue>,
    /// Keys whose head is `Batched`, per class, in order (may hold stale entries, skipped when
    /// sending).
    batch: [VecDeque<String>; CLASSES.len()],
    batched: [usize; CLASSES.len()],
    batch_since: Option<Instant>,
    in_flight: HashMap<TxnId, InFlight>,
    /// When the last transaction was sent (a window below one paces the next from it).
    last_sent_at: Option<Instant>,
    next_txn: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_timer: u64,
    /// Connects' claims waiting to be sent, by deadline (entries for claims sent or answered
    /// since are skipped when they come up): what `shed` refuses in time.
    waiting: BinaryHeap<Reverse<(Instant, Ticket, String)>>,
    /// Claim deadlines per class in the order claims arrived, hence in deadline order.
    deadlines: [VecDeque<(Instant, Ticket, String)>; CLASSES.len()],
    held: BTreeSet<String>,
    ops_pending: usize,
    actions: VecDeque<Action>,
    stats: OwnershipStats,
    /// The newest `now` any call gave, for `next_wakeup` (which takes none).
    latest: Option<Instant>,
}

impl Ownership {
    /// Starts without a lease: the first action is `GrantLease`, unless the driver calls
    /// [`Ownership::lease_granted`] first.
    pub fn new(config: OwnershipConfig) -> Ownership {
        assert!((1..=TXN_OPS_MAX).contains(&config.batch_ops_max), "batch_ops_max out of range");
        assert!(!config.lease_ttl.is_zero(), "lease_ttl is zero");
        let mut ownership = Ownership {
            lease: Lease::new(config.lease_ttl),
            reach: Reachability::new(config.claim_quarantine),
            config,
            serving: false,
            served_lease: None,
            flow: Flow::new(),
            renewal_held: false,
            members: Vec::new(),
            reports: HashMap::new(),
            extension: None,
            owned: HashMap::new(),
            unconfirmed: HashSet::new(),
            held_answers: BTreeMap::new(),
            keys: BTreeMap::new(),
            batch: Default::default(),
            batched: [0; CLASSES.len()],
            batch_since: None,
            in_flight: HashMap::new(),
            last_sent_at: None,
            next_txn: 0,
            timers: BinaryHeap::new(),
            waiting: BinaryHeap::new(),
            next_timer: 0,
            deadlines: Default::default(),
            held: BTreeSet::new(),
            ops_pending: 0,
            actions: VecDeque::new(),
            stats: OwnershipStats::default(),
            latest: None,
        };
        ownership.request_lease();
        ownership
    }

    pub fn config(&self) -> &OwnershipConfig {
        &self.config
    }

    /// The lease this node serves under (`None` while fenced or without a lease).
    pub fn lease(&self) -> Option<LeaseId> {
        self.lease.id.filter(|_| self.serving)
    }

    /// The lease this node keeps alive, serving or not.
    pub fn held_lease(&self) -> Option<LeaseId> {
        self.lease.id
    }

    /// The interval between two keepalives.
    pub fn keepalive_interval(&self) -> Duration {
        self.lease.keepalive_interval()
    }

    /// How long the driver waits for a transaction's answer before answering it `Failed`: half
    /// a TTL (the slowest answer a healthy etcd may give) plus [`TXN_TIMEOUT_SLACK`]. Sooner
    /// would fail transactions of a slow etcd that will still be answered; much later would
    /// keep a claim waiting on an etcd member that lost its leader (its proposal is dropped
    /// and never answered) when another member would answer at once.
    pub fn txn_timeout(&self) -> Duration {
        self.config.lease_ttl / 2 + TXN_TIMEOUT_SLACK
    }

    // --- the lease -------------------------------------------------------------------------

    /// etcd granted `lease` with `ttl` to a request sent at `requested_at`.
    pub fn lease_granted(
        &mut self,
        lease: LeaseId,
        ttl: Duration,
        requested_at: Instant,
        now: Instant,
    ) {
        self.advance(now);
        self.reach.answered(requested_at);
        if self.lease.id == Some(lease) {
            return;
        }
        if self.lease.id.is_some() {
            // Granted without being asked: whatever the old lease held is no longer provably
            // ours.
            self.lose_lease(now);
        }
        self.actions.retain(|action| *action != Action::GrantLease);
        self.lease.granted(lease, ttl, requested_at);
        self.send_due_keepalive(now);
        self.resume(now);
        self.flush(now);
    }

    /// Keepalive `id` of `lease` was answered with `ttl` (zero: etcd no longer has the lease).
    pub fn keepalive_answered(
        &mut self,
        lease: LeaseId,
        id: KeepaliveId,
        ttl: Duration,
        now: Instant,
    ) {
        self.advance(now);
        if self.lease.id != Some(lease) {
            self.flush(now);
            return;
        }
        let (renewal, sent_at) = self.lease.answered(id, ttl);
        if let Some(sent_at) = sent_at {
            self.reach.answered(sent_at);
            self.stats.keepalives_answered += 1;
        }
        match renewal {
            Renewal::Renewed => {
                // Reports older than this renewal no longer extend anything new, but an
                // extension already granted stands until it runs out (see `peer_report`).
                self.extension = self.extension_until().or(self.extension);
                self.resume(now);
            }
            Renewal::Lost => self.lease_lost(lease, now),
            Renewal::Unknown => {}
        }
        self.flush(now);
    }

    /// etcd says `lease` is gone (a keepalive stream refused to open for it).
    pub fn lease_lost(&mut self, lease: LeaseId, now: Instant) {
        self.advance(now);
        if self.lease.id == Some(lease) {
            self.stats.leases_lost += 1;
            self.lose_lease(now);
        }
        self.flush(now);
    }

    /// A request failed without an answer from etcd (connection refused, reset, timed out):
    /// unless etcd answers a request sent after this within a short grace, this node says "etcd
    /// is unreachable" until it does.
    pub fn etcd_unreachable(&mut self, now: Instant) {
        self.reach.failed(now);
    }

    /// etcd says it is falling behind: it refused a renewal after waiting for its apply loop
    /// ("waiting for the applied index took too long"), or a request as too many. The
    /// transaction window halves (see `flow.rs`).
    pub fn etcd_congested(&mut self, now: Instant) {
        self.advance(now);
        self.flow.congested(now);
        self.stats.congestion_signals += 1;
    }

    // --- membership and peers ----------------------------------------------------------------

    /// The live members from the watch (this node included).
    pub fn members(&mut self, members: &[Member], now: Instant) {
        self.advance(now);
        self.members = members.to_vec();
        self.extension = self.extension_until();
        // Fewer or different peers may end an extension.
        self.check_deadline(now);
        let held: Vec<String> = self.held.iter().cloned().collect();
        for client in held {
            let Some(queue) = self.keys.get(&client) else { continue };
            let Head::Held { owner, revision, .. } = &queue.head else { continue };
            if self.is_live_peer(owner) {
                let (owner, revision) = (owner.node.clone(), *revision);
                self.held.remove(&client);
                self.finish_head(&client, Some(ClaimOutcome::HeldBy { owner, revision }), now);
            }
        }
        self.flush(now);
    }

    /// A peer's heartbeat over the node link, received at `now`.
    pub fn peer_report(&mut self, node: &NodeId, etcd_ok: bool, now: Instant) {
        // Fence on the reports we had before this one: a late report must not revive a
        // deadline that has passed.
        self.advance(now);
        if *node != self.config.node {
            self.reports.insert(node.clone(), PeerReport { etcd_ok, received_at: now });
            // A report only makes the reports fresher, so an extension it ends was ended by a
            // peer that reaches etcd again (or by a report stamped before our last renewal): it
            // grows no more, but lasts until the reports it was built on run out, as if this one
            // had come that much later (which CLAIM_QUARANTINE covers). When etcd restarts every
            // node reconnects within a few hundred milliseconds, and this node's own renewal
            // lands in that time instead of it fencing (and dropping its clients) for having
            // come second.
            self.extension = self.extension_until().or(self.extension);
        }
        self.check_deadline(now);
        self.flush(now);
    }

    // --- claims ------------------------------------------------------------------------------

    /// A client connected (or, `Background`, a stored session is re-claimed): answer whether
    /// this node may serve it.
    pub fn claim(&mut self, ticket: Ticket, client: &str, priority: Priority, now: Instant) {
        self.advance(now);
        self.enqueue_claim(ticket, client, Compare::Absent, priority, now);
        self.flush(now);
    }

    /// The owner named by `HeldBy` stopped serving the client and shipped its session: take the
    /// key over if it is still at `revision`. Never refused for load: the session is on its
    /// way here.
    pub fn claim_after_release(
        &mut self,
        ticket: Ticket,
        client: &str,
        revision: Revision,
        now: Instant,
    ) {
        self.advance(now);
        let compare = Compare::ModRevision(revision);
        self.enqueue_claim(ticket, client, compare, Priority::Connect, now);
        self.flush(now);
    }

    /// The session ended here: delete the key, after any claim of it still in flight.
    pub fn release(&mut self, client: &str, now: Instant) {
        self.advance(now);
        self.unconfirmed.remove(client);
        if self.lease.id.is_none() {
            // The keys die with the lease.
        } else if self.keys.contains_key(client) {
            self.enqueue(client, OpKind::Release { revision: None }, now);
        } else if let Some(revision) = self.owned.remove(client) {
            self.enqueue(client, OpKind::Release { revision: Some(revision) }, now);
        }
        self.flush(now);
    }

    /// A peer took the client over: this node no longer owns it. Nothing is written; the
    /// peer's claim replaces the key. Until it does, the key still names this node, and a claim
    /// here must win it back with a write (see `resolve_claim`), never read it as ours.
    pub fn handed_over(&mut self, client: &str) {
        self.owned.remove(client);
        self.unconfirmed.remove(client);
        // The peer was told "etcd names you" about a put of ours that is in flight: when its
        // answer comes, the revision it reports is the peer's to take, no longer ours.
        if let Some(queue) = self.keys.get_mut(client) {
            if let (Head::InFlight(_), Some(Op { kind: OpKind::Claim { handed_over, .. }, .. })) =
                (&queue.head, queue.ops.front_mut())
            {
                *handed_over = true;
            }
        }
    }

    pub fn txn_answered(&mut self, id: TxnId, answer: TxnAnswer, now: Instant) {
        self.advance(now);
        // Unknown ids: answered already, or sent under a lease etcd has since dropped.
        let Some(InFlight { clients, sent_at }) = self.in_flight.remove(&id) else {
            self.flush(now);
            return;
        };
        let ok = answer != TxnAnswer::Failed;
        if ok {
            self.reach.answered(sent_at);
        }
        self.flow.answered(sent_at, now, ok);
        match answer {
            TxnAnswer::Applied { revision, results } if results.len() == clients.len() => {
                for (client, result) in clients.iter().zip(results) {
                    match result {
                        OpResult::Written => self.committed(client, id, revision, now),
                        OpResult::CompareFailed { current } => {
                            self.compare_failed(client, id, current, now)
                        }
                    }
                }
            }
            // Failed, or a malformed answer.
            _ => {
                for client in &clients {
                    self.failed(client, id, now);
                }
            }
        }
        self.shed(now);
        self.flush(now);
    }

    pub fn tick(&mut self, now: Instant) {
        self.advance(now);
        self.shed(now);
        self.flush(now);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Ownership::tick`] must be called next (`None`: only when something arrives).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut wakeup = self.serving_until();
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                wakeup = Some(wakeup.map_or(at, |w: Instant| w.min(at)));
            }
        };
        // Held for a renewal, the batch waits for a keepalive's answer (which flushes it), not
        // for a time.
        let held = self.latest.is_some_and(|now| self.renewals_first(now));
        if self.lease.id.is_some() && self.in_flight.len() < self.flow.limit() && !held {
            consider(self.send_at());
        }
        consider(self.lease.next_wakeup());
        consider(self.timers.peek().map(|Reverse((at, _, _))| *at));
        for class in CLASSES {
            consider(self.deadlines[class].front().map(|(at, _, _)| *at));
        }
        if !self.held_answers.is_empty() {
            consider(self.reach.quarantine_ends());
        }
        // When the oldest connect's claim waiting to be sent must be shed.
        consider(self.shed_at());
        // The moment "etcd answers me" turns false by itself, so the report goes out on time.
        if let Some(latest) = self.latest {
            let (window, grace) = (self.lease.etcd_ok_window(), self.lease.failure_grace());
            consider(self.reach.ok_until(window, grace, latest));
        }
        wakeup
    }

    /// Until when this node may serve clients (`None`: fenced, or no lease yet). The engine's
    /// shards refuse to serve when `now >= serving_until`, whether or not `Fence` has been
    /// processed yet.
    ///
    /// Normally this is the lease deadline ([`Ownership::lease_deadline`]). Past it, the node
    /// keeps serving while *every* other member of the last known member set (at least one)
    /// has reported within [`PEER_REPORT_FRESH`], after our newest answered keepalive was sent,
    /// that it cannot reach etcd either; the extension ends [`PEER_REPORT_FRESH`] after the
    /// oldest of those reports, and grows no more once any peer reports that etcd answers it.
    /// Why this is safe:
    ///
    /// - While etcd is down, nobody can claim: every claim is an etcd transaction.
    /// - When etcd comes back, its new leader re-grants every lease a full TTL (a leader
    ///   promotion refreshes leases), so this node's keys cannot expire before `return + ttl`.
    ///   The peers reach etcd within a keepalive interval and report `etcd_ok` within a
    ///   heartbeat; the extension built on their earlier reports then runs out (at most
    ///   [`PEER_REPORT_FRESH`] later) well inside that TTL, and this node fences then if it still
    ///   cannot renew.
    /// - If instead etcd stayed up (slow, or cut off from every node) and expired the leases,
    ///   a peer's claim may commit while this node serves on that peer's reports — the peer's
    ///   transaction may have been sent long before, and reach etcd late. The peer serves on
    ///   it only [`CLAIM_QUARANTINE`] after it last said "unreachable", by which time every
    ///   extension built on those reports has run out. The simulation shows a node that skips
    ///   the quarantine breaking the invariant.
    /// - A node with no peers, or missing a fresh report from any of them, cannot tell "etcd is
    ///   down" from "I am cut off": it fences.
    ///
    /// The limit: a node that none of the extended nodes knows (it registered after their watch
    /// broke) can claim their clients once etcd expired their leases. That takes every member
    /// cut off from a live etcd for longer than a TTL while a node joins; the simulation keeps
    /// out of it.
    pub fn serving_until(&self) -> Option<Instant> {
        if !self.serving {
            return None;
        }
        let deadline = self.lease.deadline()?;
        Some(match self.extension {
            Some(extension) if extension > deadline => extension,
            _ => deadline,
        })
    }

    /// The deadline the lease alone allows: the send time of the newest answered keepalive
    /// plus the TTL, minus the margin (whether or not this node serves now).
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.lease.deadline()
    }

    /// Whether etcd answers this node (see `Reachability`): etcd answered a request sent within
    /// the last half TTL plus a keepalive interval, and none failed outright since.
    pub fn etcd_ok(&self, now: Instant) -> bool {
        self.reach.etcd_ok(self.lease.etcd_ok_window(), self.lease.failure_grace(), now)
    }

    /// What to tell peers now: [`Ownership::etcd_ok`], recorded as said. Call it for every
    /// value published (the quarantine counts from the last "unreachable" said).
    pub fn report_etcd_ok(&mut self, now: Instant) -> bool {
        let ok = self.etcd_ok(now);
        self.reach.publish(ok, now);
        ok
    }

    /// Whether this node owns `client` under the lease it serves under.
    pub fn owns(&self, client: &str) -> bool {
        self.serving && self.owned.contains_key(client)
    }

    /// The `mod_revision` of `client`'s key while this node owns it. Revisions only grow, so it
    /// orders the copies of a session that takeovers leave on several nodes: a copy served
    /// under a later revision is newer.
    pub fn revision(&self, client: &str) -> Option<Revision> {
        self.lease.id?;
        self.owned.get(client).copied()
    }

    /// Counters and estimates for metrics.
    pub fn stats(&self) -> OwnershipStats {
        OwnershipStats {
            window: self.flow.window(),
            latency_mean: self.flow.mean(),
            latency_target: self.flow.target(),
            txns_in_flight: self.in_flight.len(),
            claims_queued: self.batched[TAKEOVER] + self.batched[LIVE],
            background_queued: self.batched[BACKGROUND],
            answers_held: self.held_answers.len(),
            ..self.stats
        }
    }

    // --- internals: the lease ----------------------------------------------------------------

    fn extension_until(&self) -> Option<Instant> {
        let renewed_at = self.lease.renewed_at?;
        let mut until: Option<Instant> = None;
        for member in self.members.iter().filter(|member| member.node != self.config.node) {
            let report = self.reports.get(&member.node)?;
            if report.etcd_ok || report.received_at <= renewed_at {
                return None;
            }
            let expires = report.received_at + PEER_REPORT_FRESH;
            until = Some(until.map_or(expires, |until| until.min(expires)));
        }
        until
    }

    /// What every call with a `now` does first.
    fn advance(&mut self, now: Instant) {
        self.latest = self.latest.max(Some(now));
        self.check_deadline(now);
        self.expire_claims(now);
        self.fire_timers(now);
        self.release_held(now);
        self.send_due_keepalive(now);
    }

    fn send_due_keepalive(&mut self, now: Instant) {
        if let Some((lease, id)) = self.lease.keepalive_due(now) {
            self.stats.keepalives_sent += 1;
            self.actions.push_back(Action::KeepAlive { lease, id });
        }
    }

    fn check_deadline(&mut self, now: Instant) {
        if self.serving && self.serving_until().is_none_or(|until| now >= until) {
            self.fence(now);
        }
    }

    /// Serves under the held lease if its deadline allows (a grant, or a keepalive answered
    /// in time after a fence).
    fn resume(&mut self, now: Instant) {
        let Some(lease) = self.lease.id else { return };
        if self.serving || self.lease.deadline().is_none_or(|deadline| now >= deadline) {
            return;
        }
        self.serving = true;
        self.extension = self.extension_until();
        let new_lease = self.served_lease != Some(lease);
        if !new_lease {
            self.stats.resumes += 1;
        }
        self.served_lease = Some(lease);
        self.actions.push_back(Action::Serve { new_lease });
    }

    /// Stop serving at the deadline: answer every waiting claim `Fenced`. The lease, the keys
    /// it holds and what this node owns stay: etcd has not said the lease is gone, and a
    /// keepalive answered in time resumes serving under it. Releases still go out.
    fn fence(&mut self, now: Instant) {
        if self.serving {
            self.stats.fences += 1;
            self.actions.push_back(Action::Fence);
        }
        self.serving = false;
        self.extension = None;
        for ticket in std::mem::take(&mut self.held_answers).into_keys() {
            self.answer(ticket, ClaimOutcome::Fenced);
        }
        let clients: Vec<String> = self.keys.keys().cloned().collect();
        for client in clients {
            self.drop_claims(&client, now);
        }
        self.deadlines = Default::default();
    }

    /// Answers every claim queued for `client` `Fenced`; one in flight stays (without a ticket)
    /// so that its answer still tells what etcd holds.
    fn drop_claims(&mut self, client: &str, now: Instant) {
        let Some(queue) = self.keys.get_mut(client) else { return };
        let in_flight = matches!(queue.head, Head::InFlight(_));
        let mut tickets = Vec::new();
        let mut index = 0;
        let mut head_removed = false;
        queue.ops.retain_mut(|op| {
            let keep = match &mut op.kind {
                OpKind::Claim { ticket, .. } if index == 0 && in_flight => {
                    tickets.extend(ticket.take());
                    true
                }
                OpKind::Claim { ticket, .. } => {
                    tickets.extend(ticket.take());
                    head_removed |= index == 0;
                    false
                }
                OpKind::Release { .. } => true,
            };
            index += 1;
            keep
        });
        let removed = index - queue.ops.len();
        let old_head = std::mem::replace(&mut queue.head, Head::Idle);
        if head_removed {
            match old_head {
                Head::Batched(class) => self.batched[class] -= 1,
                Head::Held { .. } => {
                    self.held.remove(client);
                }
                _ => {}
            }
        } else if let Some(queue) = self.keys.get_mut(client) {
            queue.head = old_head;
        }
        self.ops_pending -= removed;
        for ticket in tickets {
            self.answer(ticket, ClaimOutcome::Fenced);
        }
        if head_removed {
            self.dispatch(client, now);
        }
    }

    /// etcd no longer has the lease: fence, and forget every ownership and operation under it.
    fn lose_lease(&mut self, now: Instant) {
        self.fence(now);
        self.owned.clear();
        self.unconfirmed.clear();
        self.keys.clear();
        self.batch = Default::default();
        self.batched = [0; CLASSES.len()];
        self.batch_since = None;
        self.in_flight.clear();
        self.timers.clear();
        self.held.clear();
        self.ops_pending = 0;
        self.lease.forget();
        self.request_lease();
    }

    fn request_lease(&mut self) {
        if !self.lease.requested {
            self.lease.requested = true;
            self.actions.push_back(Action::GrantLease);
        }
    }

    // --- internals: answers ------------------------------------------------------------------

    fn answer(&mut self, ticket: Ticket, outcome: ClaimOutcome) {
        self.actions.push_back(Action::Answer { ticket, outcome });
    }

    /// Answers a claim this node may serve on, unless the quarantine holds it back.
    fn answer_owned(&mut self, ticket: Ticket, client: &str, outcome: ClaimOutcome) {
        if self.unconfirmed.contains(client) {
            let revision = self.owned.get(client).copied();
            let client = client.to_owned();
            self.held_answers.insert(ticket, HeldAnswer { client, outcome, revision });
        } else {
            self.answer(ticket, outcome);
        }
    }

    /// Once the quarantine is over, the held answers go out, each only if this node still owns
    /// the client by the same write: one handed to a peer meanwhile is the peer's, and one won
    /// back since by another claim answers that claim, not this one.
    fn release_held(&mut self, now: Instant) {
        if self.unconfirmed.is_empty() && self.held_answers.is_empty() {
            return;
        }
        if self.reach.quarantined(now) {
            return;
        }
        self.unconfirmed.clear();
        for (ticket, held) in std::mem::take(&mut self.held_answers) {
            let same =
                held.revision.is_some() && self.owned.get(&held.client) == held.revision.as_ref();
            let outcome = match same && self.serving {
                true => held.outcome,
                false => ClaimOutcome::Unavailable,
            };
            self.answer(ticket, outcome);
        }
    }

    fn is_live_peer(&self, owner: &Owner) -> bool {
        owner.node != self.config.node
            && self.members.iter().any(|m| m.lease == owner.lease && m.node == owner.node)
    }

    // --- internals: queues and transactions ---------------------------------------------------

    fn enqueue_claim(
        &mut self,
        ticket: Ticket,
        client: &str,
        compare: Compare,
        priority: Priority,
        now: Instant,
    ) {
        let after_release = matches!(compare, Compare::ModRevision(_));
        if !self.serving {
            self.answer(ticket, ClaimOutcome::Fenced);
        } else if self.owned.contains_key(client) && !self.keys.contains_key(client) {
            // Ours under the current lease: nothing to write. Held back by a quarantine, the
            // answer still has its deadline.
            if self.unconfirmed.contains(client) {
                let class = if priority == Priority::Connect { LIVE } else { BACKGROUND };
                let timeout = match priority {
                    Priority::Connect => self.config.claim_timeout,
                    Priority::Background => BACKGROUND_CLAIM_TIMEOUT,
                };
                self.deadlines[class].push_back((now + timeout, ticket, client.to_owned()));
            }
            self.answer_owned(ticket, client, ClaimOutcome::AlreadyOwned);
        } else if self.ops_pending >= OPS_PENDING_MAX
            || (priority == Priority::Connect && !after_release && self.too_busy(now))
        {
            self.stats.claims_busy += 1;
            let refusal = self.refusal(now);
            self.answer(ticket, refusal);
        } else {
            if priority == Priority::Connect && !after_release {
                self.supersede(client, now);
            }
            let (class, timeout) = match priority {
                Priority::Connect if after_release => (TAKEOVER, self.config.claim_timeout),
                Priority::Connect => (LIVE, self.config.claim_timeout),
                Priority::Background => (BACKGROUND, BACKGROUND_CLAIM_TIMEOUT),
            };
            let deadline = now + timeout;
            self.deadlines[class].push_back((deadline, ticket, client.to_owned()));
            let claim = OpKind::Claim {
                ticket: Some(ticket),
                compare,
                after_release,
                handed_over: false,
                priority,
                deadline,
            };
            self.enqueue(client, claim, now);
        }
    }

    /// A newer connect of `client` arrived here: the older connection is replaced by it (an MQTT
    /// takeover on this node), so connects' claims of it still waiting to be sent are answered
    /// `Busy` at once rather than each costing a round trip (and holding up the ones behind,
    /// a takeover's among them). So is a background re-claim waiting for room: the connect's
    /// claim does its work, first. One in flight stays: its answer tells what etcd holds.
    fn supersede(&mut self, client: &str, now: Instant) {
        let Some(queue) = self.keys.get_mut(client) else { return };
        let waiting = |op: &Op| {
            matches!(op.kind, OpKind::Claim { ticket: Some(_), after_release: false, .. })
        };
        let head_waiting =
            !matches!(queue.head, Head::InFlight(_)) && queue.ops.front().is_some_and(waiting);
        let mut tickets = Vec::new();
        let mut index = 0;
        queue.ops.retain(|op| {
            let keep = index == 0 && !head_waiting || !waiting(op);
            if !keep {
                if let OpKind::Claim { ticket: Some(ticket), .. } = op.kind {
                    tickets.push(ticket);
                }
            }
            index += 1;
            keep
        });
        let removed = tickets.len();
        if head_waiting {
            let old_head = std::mem::replace(&mut queue.head, Head::Idle);
            match old_head {
                Head::Batched(class) => self.batched[class] -= 1,
                Head::Held { .. } => {
                    self.held.remove(client);
                }
                _ => {}
            }
        }
        self.ops_pending -= removed;
        self.stats.claims_superseded += removed as u64;
        for ticket in tickets {
            self.answer(ticket, ClaimOutcome::Busy);
        }
        if head_waiting {
            self.dispatch(client, now);
        }
    }

    /// How long before its deadline a connect's claim must be sent: half the lease TTL (less
    /// if the claim timeout leaves no [`CLAIM_QUEUE_MIN`] of queueing before that). While
    /// etcd answers within half a TTL — what the design asks of a healthy etcd — a claim sent
    /// in time is answered in time, so no connect is left to time out: one that could not be
    /// sent in time is refused as busy instead ([`Ownership::shed`]).
    fn send_margin(&self) -> Duration {
        let queue_min = self.config.claim_timeout.saturating_sub(CLAIM_QUEUE_MIN);
        (self.config.lease_ttl / 2).min(queue_min)
    }

    /// How long a connect's claim queued now is expected to wait before it is sent: etcd's
    /// expected latency now for every round of transactions ahead of it, a round being the
    /// window's worth of full batches.
    fn expected_wait(&self, now: Instant) -> Duration {
        let oldest = self.in_flight.values().map(|txn| txn.sent_at).min();
        let latency = self.flow.latency_expected(oldest, now);
        let per_round = self.config.batch_ops_max * self.flow.limit();
        let queued = self.batched[TAKEOVER] + self.batched[LIVE];
        // With the window full, the first round waits for a transaction to come back.
        let full = usize::from(self.in_flight.len() >= self.flow.limit());
        let rounds = (full + queued / per_round) as f64 * self.flow.round_trips_per_send();
        latency.mul_f64(rounds)
    }

    /// Whether a new connect's claim would not be sent in time (see `send_margin`).
    fn too_busy(&self, now: Instant) -> bool {
        self.expected_wait(now) > self.config.claim_timeout.saturating_sub(self.send_margin())
    }

    /// When [`Ownership::shed`] has work: the first waiting connect's claim reaches the send
    /// margin (or an entry for one sent since comes up, which it skips).
    fn shed_at(&self) -> Option<Instant> {
        let Reverse((deadline, _, _)) = self.waiting.peek()?;
        Some(deadline.checked_sub(self.send_margin()).unwrap_or(*deadline))
    }

    /// Refuses (`Busy`) the connects' claims still waiting to be sent with less than the send
    /// margin left before their deadline, oldest first: they might time out, after costing
    /// etcd a write. Takeovers are shed as well (the engine keeps the session shipped here
    /// where the next attempt finds it, as after any refusal). A claim whose transaction failed
    /// is not: etcd was slower than half a TTL, or unreachable, and it may answer the retry (on
    /// another member) in time all the same.
    fn shed(&mut self, now: Instant) {
        let limit = now + self.send_margin();
        while self.waiting.peek().is_some_and(|Reverse((deadline, _, _))| *deadline <= limit) {
            let Some(Reverse((_, ticket, client))) = self.waiting.pop() else { break };
            self.shed_claim(&client, ticket, now);
        }
    }

    /// Answers claim `ticket` of `client` `Busy` and drops it, if it still waits to be sent:
    /// in the batch, or behind the operation there.
    fn shed_claim(&mut self, client: &str, ticket: Ticket, now: Instant) {
        let refusal = self.refusal(now);
        let Some(queue) = self.keys.get_mut(client) else { return };
        if !matches!(queue.head, Head::Batched(_)) {
            return;
        }
        let found = queue.ops.iter().position(|op| {
            sheddable(op).is_some()
                && matches!(op.kind, OpKind::Claim { ticket: Some(t), .. } if t == ticket)
        });
        let Some(index) = found else { return };
        self.stats.claims_shed += 1;
        if index == 0 {
            // Its batch entry goes stale; `send_txn` skips it.
            self.finish_head(client, Some(refusal), now);
            return;
        }
        if queue.ops.remove(index).is_some() {
            self.ops_pending -= 1;
            self.answer(ticket, refusal);
        }
    }

    /// How a connect's claim that etcd cannot take now is refused: `Busy` while etcd answers
    /// (slowly), `Unavailable` while it does not answer at all (see [`Ownership::etcd_ok`]), so
    /// that a client and the operator can tell "try again soon" from "the cluster's etcd is
    /// down".
    fn refusal(&self, now: Instant) -> ClaimOutcome {
        if self.etcd_ok(now) {
            ClaimOutcome::Busy
        } else {
            ClaimOutcome::Unavailable
        }
    }

    fn enqueue(&mut self, client: &str, kind: OpKind, now: Instant) {
        if self.ops_pending >= OPS_PENDING_MAX {
            // Only releases get here (claims are refused before): the key then lives until the
            // lease ends.
            return;
        }
        self.ops_pending += 1;
        let op = Op { kind, failures: 0 };
        let wanted = op.kind.class();
        let shed_by = sheddable(&op).zip(match op.kind {
            OpKind::Claim { ticket, .. } => ticket,
            OpKind::Release { .. } => None,
        });
        let queue = self
            .keys
            .entry(client.to_owned())
            .or_insert_with(|| KeyQueue { ops: VecDeque::new(), head: Head::Idle });
        queue.ops.push_back(op);
        if queue.ops.len() == 1 {
            self.dispatch(client, now);
        } else if let Head::Batched(class) = queue.head {
            // What waits ahead of a connect's claim goes in the claim's class: the connect must
            // not wait for a background release's turn (its entry in the old class goes stale).
            if wanted < class {
                queue.head = Head::Batched(wanted);
                self.batched[class] -= 1;
                self.batched[wanted] += 1;
                self.batch[wanted].push_back(client.to_owned());
            }
            if let Some((deadline, ticket)) = shed_by {
                self.waiting.push(Reverse((deadline, ticket, client.to_owned())));
            }
        }
    }

    /// Pops the head of `client`'s queue (answering it with `outcome` if it is a claim still
    /// waiting for one) and dispatches the next operation.
    fn finish_head(&mut self, client: &str, outcome: Option<ClaimOutcome>, now: Instant) {
        let Some(queue) = self.keys.get_mut(client) else { return };
        match queue.head {
            Head::Batched(class) => self.batched[class] -= 1,
            Head::Held { .. } => {
                self.held.remove(client);
            }
            _ => {}
        }
        queue.head = Head::Idle;
        let Some(op) = queue.ops.pop_front() else { return };
        self.ops_pending -= 1;
        if let (OpKind::Claim { ticket: Some(ticket), .. }, Some(outcome)) = (op.kind, outcome) {
            match outcome {
                ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned => {
                    self.answer_owned(ticket, client, outcome)
                }
                outcome => self.answer(ticket, outcome),
            }
        }
        self.dispatch(client, now);
    }

    /// Puts `client`'s head operation in the batch, or answers it without etcd when this node's
    /// state already decides it.
    fn dispatch(&mut self, client: &str, now: Instant) {
        loop {
            let Some(queue) = self.keys.get_mut(client) else { return };
            debug_assert!(matches!(queue.head, Head::Idle));
            let Some(op) = queue.ops.front_mut() else {
                self.keys.remove(client);
                return;
            };
            match &mut op.kind {
                OpKind::Claim { ticket, .. } => {
                    if self.owned.contains_key(client) {
                        let ticket = *ticket;
                        queue.ops.pop_front();
                        self.ops_pending -= 1;
                        if let Some(ticket) = ticket {
                            self.answer_owned(ticket, client, ClaimOutcome::AlreadyOwned);
                        }
                        continue;
                    }
                }
                OpKind::Release { revision } => {
                    match revision.or_else(|| self.owned.remove(client)) {
                        Some(known) => *revision = Some(known),
                        None => {
                            // The claim ahead of it lost: nothing of ours to delete.
                            queue.ops.pop_front();
                            self.ops_pending -= 1;
                            continue;
                        }
                    }
                }
            }
            let class = op.kind.class();
            let shed_by = sheddable(op);
            queue.head = Head::Batched(class);
            self.batched[class] += 1;
            self.batch[class].push_back(client.to_owned());
            self.batch_since.get_or_insert(now);
            if let (Some(deadline), OpKind::Claim { ticket: Some(ticket), .. }) =
                (shed_by, &op.kind)
            {
                self.waiting.push(Reverse((deadline, *ticket, client.to_owned())));
            }
            return;
        }
    }

    fn batched_total(&self) -> usize {
        self.batched.iter().sum()
    }

    /// When a window below one lets the next transaction go.
    fn next_send_at(&self) -> Option<Instant> {
        let interval = self.flow.send_interval();
        self.last_sent_at.filter(|_| !interval.is_zero()).map(|sent| sent + interval)
    }

    /// When the next transaction goes (window permitting): once a batch is full or its oldest
    /// operation has waited the batch delay, and a window below one has let the send interval
    /// pass — unless takeovers wait. Those are not held back by pacing: a takeover is the
    /// second round of a connect whose first round was paced already (so takeovers at most
    /// double the transactions pacing lets through, and go together in one). Retries are
    /// paced: they come when etcd fails or is too slow, when it needs the load least.
    fn send_at(&self) -> Option<Instant> {
        let batched = self.batched_total();
        if batched == 0 {
            return None;
        }
        let since = self.batch_since?;
        let ready = if batched >= self.config.batch_ops_max {
            since
        } else {
            since + self.config.batch_delay
        };
        if self.batched[TAKEOVER] > 0 {
            return Some(ready);
        }
        Some(self.next_send_at().map_or(ready, |at| ready.max(at)))
    }

    /// Whether transactions wait for a renewal now: renewals first, since etcd renews a lease
    /// only once it has applied every transaction committed before (see
    /// `Lease::renewal_overdue_at`). Measured with 20 nodes: after etcd thawed from a 4 s
    /// SIGSTOP, the transactions queued meanwhile kept every renewal waiting until the leases
    /// expired.
    fn renewals_first(&self, now: Instant) -> bool {
        self.lease.renewal_overdue_at().is_some_and(|at| now >= at)
    }

    /// Sends every batch that is due (see `send_at`), within the window, unless renewals come
    /// first.
    fn flush(&mut self, now: Instant) {
        let Some(lease) = self.lease.id else { return };
        let held = self.renewals_first(now);
        if held && !self.renewal_held {
            // etcd's apply loop is behind: as good a congestion signal as etcd's own.
            self.flow.congested(now);
            self.stats.congestion_signals += 1;
        }
        self.renewal_held = held;
        if held {
            return;
        }
        while self.in_flight.len() < self.flow.limit() {
            if self.send_at().is_none_or(|at| at > now) {
                break;
            }
            self.send_txn(lease, now);
        }
        for class in CLASSES {
            if self.batched[class] == 0 {
                self.batch[class].clear();
            }
        }
        if self.batched_total() == 0 {
            self.batch_since = None;
        }
    }

    fn send_txn(&mut self, lease: LeaseId, now: Instant) {
        let id = TxnId(self.next_txn);
        self.next_txn += 1;
        let size = self.batched_total().min(self.config.batch_ops_max);
        let mut ops = Vec::with_capacity(size);
        let mut clients = Vec::with_capacity(size);
        for class in CLASSES {
            while ops.len() < self.config.batch_ops_max {
                let Some(client) = self.batch[class].pop_front() else { break };
                let Some(queue) = self.keys.get_mut(&client) else { continue };
                // Stale entries (the head moved on) and duplicates (already taken) are skipped.
                if !matches!(queue.head, Head::Batched(batched) if batched == class) {
                    continue;
                }
                let Some(op) = queue.ops.front() else { continue };
                let txn_op = match &op.kind {
                    OpKind::Claim { compare, .. } => {
                        TxnOp::Put { client: client.clone(), compare: compare.clone() }
                    }
                    OpKind::Release { revision: Some(revision) } => TxnOp::Delete {
                        client: client.clone(),
                        compare: Compare::ModRevision(*revision),
                    },
                    OpKind::Release { revision: None } => {
                        unreachable!("dispatch resolves releases")
                    }
                };
                queue.head = Head::InFlight(id);
                self.batched[class] -= 1;
                ops.push(txn_op);
                clients.push(client);
            }
        }
        assert!(!ops.is_empty(), "batched count out of step with the batch");
        assert!(ops.len() <= TXN_OPS_MAX);
        self.in_flight.insert(id, InFlight { clients, sent_at: now });
        self.last_sent_at = Some(now);
        self.actions.push_back(Action::Txn { id, lease, ops });
    }

    /// The head of `client`'s queue, if it is in transaction `id`.
    fn in_flight_head(&mut self, client: &str, id: TxnId) -> Option<&mut Op> {
        let queue = self.keys.get_mut(client)?;
        if !matches!(queue.head, Head::InFlight(head) if head == id) {
            return None;
        }
        queue.ops.front_mut()
    }

    fn committed(&mut self, client: &str, id: TxnId, revision: Revision, now: Instant) {
        let serving = self.serving;
        let claim_ticket = match self.in_flight_head(client, id) {
            None => return,
            Some(Op { kind: OpKind::Claim { handed_over: true, ticket, compare, .. }, .. }) => {
                if ticket.is_none() || !serving {
                    // Nobody here wants the client any more: the peer's claim may take it.
                    self.finish_head(client, None, now);
                    return;
                }
                // Win it back with a write on that revision, racing the peer's claim.
                *compare = Compare::ModRevision(revision);
                if let Some(Op { kind: OpKind::Claim { handed_over, .. }, .. }) =
                    self.in_flight_head(client, id)
                {
                    *handed_over = false;
                }
                self.requeue(client, now);
                return;
            }
            Some(Op { kind: OpKind::Claim { ticket, .. }, .. }) => Some(*ticket),
            Some(Op { kind: OpKind::Release { .. }, .. }) => None,
        };
        let Some(ticket) = claim_ticket else {
            self.finish_head(client, None, now);
            return;
        };
        // Even when the claimer was told `Unavailable` already, the key is ours now. It is not
        // given back: after a takeover the session may have been shipped here, and a peer must
        // find it by asking this node. The engine answers such an ask with what it has (or
        // releases the client itself).
        self.owned.insert(client.to_owned(), revision);
        if self.reach.quarantined(now) {
            self.unconfirmed.insert(client.to_owned());
        }
        self.finish_head(client, ticket.map(|_| ClaimOutcome::Claimed), now);
    }

    fn failed(&mut self, client: &str, id: TxnId, now: Instant) {
        let Some(op) = self.in_flight_head(client, id) else { return };
        op.failures += 1;
        let failures = op.failures;
        let give_up = match op.kind {
            OpKind::Claim { ticket, .. } => ticket.is_none(),
            OpKind::Release { .. } => failures >= RELEASE_ATTEMPTS_MAX,
        };
        if give_up {
            self.finish_head(client, None, now);
            return;
        }
        let backoff =
            RETRY_BACKOFF_MIN.saturating_mul(1 << (failures - 1).min(16)).min(RETRY_BACKOFF_MAX);
        let timer = self.start_timer(client, now + backoff);
        if let Some(queue) = self.keys.get_mut(client) {
            queue.head = Head::Backoff { timer };
        }
    }

    /// One operation whose compare failed.
    fn compare_failed(
        &mut self,
        client: &str,
        id: TxnId,
        current: Option<(Owner, Revision)>,
        now: Instant,
    ) {
        let Some(op) = self.in_flight_head(client, id) else { return };
        match &mut op.kind {
            OpKind::Release { revision } => {
                if revision.is_some_and(|revision| holds(&Compare::ModRevision(revision), &current))
                {
                    // etcd says it failed and shows it holding: a confused answer, try again.
                    self.requeue(client, now);
                } else {
                    // The key moved on: no longer ours to delete.
                    self.finish_head(client, None, now);
                }
            }
            OpKind::Claim { ticket: None, .. } => self.finish_head(client, None, now),
            OpKind::Claim { compare, after_release, .. } => {
                if holds(compare, &current) {
                    self.requeue(client, now);
                    return;
                }
                let after_release = *after_release;
                match self.resolve_claim(client, current, after_release) {
                    Resolution::Answer(outcome) => self.finish_head(client, Some(outcome), now),
                    Resolution::Retry(new_compare) => {
                        if let Some(Op { kind: OpKind::Claim { compare, .. }, .. }) =
                            self.in_flight_head(client, id)
                        {
                            *compare = new_compare;
                        }
                        self.requeue(client, now);
                    }
                    Resolution::Wait(owner, revision) => {
                        let timer = self.start_timer(client, now + HELD_RETRY_INTERVAL);
                        if let Some(queue) = self.keys.get_mut(client) {
                            queue.head = Head::Held { timer, owner, revision };
                        }
                        self.held.insert(client.to_owned());
                    }
                }
            }
        }
    }

    /// What a claim whose own compare failed does, given the key's current holder.
    fn resolve_claim(
        &self,
        client: &str,
        current: Option<(Owner, Revision)>,
        after_release: bool,
    ) -> Resolution {
        match current {
            Some((owner, revision))
                if owner.node == self.config.node && Some(owner.lease) == self.lease.id =>
            {
                if self.owned.get(client) == Some(&revision) {
                    Resolution::Answer(ClaimOutcome::AlreadyOwned)
                } else {
                    // Ours in etcd but not in `owned`: an answer we never saw committed it, or
                    // we handed the client over and the peer's claim (comparing on this
                    // revision) may still come. Reading it as ours could make two owners; a
                    // write on the same revision lets etcd pick one.
                    Resolution::Retry(Compare::ModRevision(revision))
                }
            }
            // The previous owner released at a revision that has moved on: a race lost.
            _ if after_release => Resolution::Answer(ClaimOutcome::Unavailable),
            None => Resolution::Retry(Compare::Absent),
            // A previous incarnation of this node (an earlier run, or before a fence): it
            // serves nobody, so take the key over.
            Some((owner, revision)) if owner.node == self.config.node => {
                Resolution::Retry(Compare::ModRevision(revision))
            }
            Some((owner, revision)) if self.is_live_peer(&owner) => {
                Resolution::Answer(ClaimOutcome::HeldBy { owner: owner.node, revision })
            }
            Some((owner, revision)) => Resolution::Wait(owner, revision),
        }
    }

    fn requeue(&mut self, client: &str, now: Instant) {
        if let Some(queue) = self.keys.get_mut(client) {
            queue.head = Head::Idle;
        }
        self.dispatch(client, now);
    }

    fn start_timer(&mut self, client: &str, at: Instant) -> u64 {
        let timer = self.next_timer;
        self.next_timer += 1;
        self.timers.push(Reverse((at, timer, client.to_owned())));
        timer
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, timer, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let timer = *timer;
            let Some(Reverse((_, _, client))) = self.timers.pop() else { break };
            let Some(queue) = self.keys.get_mut(&client) else { continue };
            match &queue.head {
                Head::Backoff { timer: valid } if *valid == timer => {}
                Head::Held { timer: valid, .. } if *valid == timer => {
                    // Look again: etcd deletes the key when the dead lease expires.
                    if let Some(Op { kind: OpKind::Claim { compare, .. }, .. }) =
                        queue.ops.front_mut()
                    {
                        *compare = Compare::Absent;
                    }
                    self.held.remove(&client);
                }
                _ => continue,
            }
            self.requeue(&client, now);
        }
    }

    fn expire_claims(&mut self, now: Instant) {
        for class in CLASSES {
            while let Some((deadline, _, _)) = self.deadlines[class].front() {
                if *deadline > now {
                    break;
                }
                let Some((_, ticket, client)) = self.deadlines[class].pop_front() else { break };
                self.expire_claim(ticket, &client, now);
            }
        }
    }

    /// Claim `ticket` of `client` reached its deadline: `Unavailable`, unless answered already.
    fn expire_claim(&mut self, ticket: Ticket, client: &str, now: Instant) {
        if self.held_answers.remove(&ticket).is_some() {
            self.stats.claims_timed_out += 1;
            self.answer(ticket, ClaimOutcome::Unavailable);
            return;
        }
        let Some(queue) = self.keys.get_mut(client) else { return };
        let Some(index) = queue
            .ops
            .iter()
            .position(|op| matches!(op.kind, OpKind::Claim { ticket: Some(t), .. } if t == ticket))
        else {
            return;
        };
        self.stats.claims_timed_out += 1;
        self.answer(ticket, ClaimOutcome::Unavailable);
        let Some(queue) = self.keys.get_mut(client) else { return };
        if index > 0 {
            queue.ops.remove(index);
            self.ops_pending -= 1;
        } else if let Head::InFlight(_) = queue.head {
            // The put may still commit; the key is then ours (see `committed`).
            if let Some(Op { kind: OpKind::Claim { ticket, .. }, .. }) = queue.ops.front_mut() {
                *ticket = None;
            }
        } else {
            self.finish_head(client, None, now);
        }
    }
}

enum Resolution {
    Answer(ClaimOutcome),
    Retry(Compare),
    Wait(Owner, Revision),
}

fn holds(compare: &Compare, current: &Option<(Owner, Revision)>) -> bool {
    match (compare, current) {
        (Compare::Absent, None) => true,
        (Compare::ModRevision(expected), Some((_, revision))) => expected == revision,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

//! Session ownership, fencing and takeover decisions (sans-IO).
//!
//! [`Ownership`] decides which etcd transactions claim and release client ids, what each
//! connecting client is answered, and when this node must stop serving. It does no I/O and
//! reads no clock: every input carries `now`, outputs are drained with
//! [`Ownership::poll_action`], and [`Ownership::next_wakeup`] says when to call
//! [`Ownership::tick`]. The etcd driver (`control/`) and the deterministic simulation
//! (`tests/simulation.rs`) drive the same code.
//!
//! **Invariant:** at no moment do two nodes serve the same client id. It rests on three rules:
//!
//! - *Fencing.* A node serves only while [`Ownership::serving_until`] is in the future. etcd
//!   cannot expire a lease before `t + ttl` once a keepalive *sent* at `t` was answered, so the
//!   deadline counts from the send time of the latest answered keepalive, minus a margin for
//!   clock-rate differences and the engine's reaction time. Nothing but a renewal requested
//!   later (or the peer rule below) moves it; a process that was paused past it finds it in the
//!   past on resuming and fences.
//! - *Takeover order.* A claim that finds a live peer's key answers
//!   [`ClaimOutcome::HeldBy`]; the engine asks that peer to stop serving and ship the session,
//!   then calls [`Ownership::claim_after_release`], whose put compares on the revision the peer
//!   held. The previous owner has stopped before the new owner's claim commits.
//! - *Compare on every write.* A put requires the key absent or at the revision seen; a delete
//!   requires our revision. Races resolve in etcd, one winner.
//!
//! See [`Ownership::serving_until`] for why a node may keep serving while etcd is down for
//! every node.
//!
//! What the driver and the engine must do for these rules to hold (the simulation's engine
//! model does each, and fails without it; `engine/src/cluster.rs` does each too: it installs a
//! shipped session as the frame arrives, before its claim is sent, keeps a handed-over copy
//! until `TransferInstalled`, and answers `busy` while one is kept for another node):
//!
//! - Answer every `Txn` exactly once (a timeout is `Failed`); keep the lease alive at least
//!   every `ttl / 6`; send `etcd_ok` to every peer every few hundred milliseconds and pass
//!   each report on with the time it was received.
//! - Refuse to serve when `now >= serving_until`, and on `Fence` drop every client.
//! - Asked by a peer to hand a client over: stop serving it, call
//!   [`Ownership::handed_over`] — also when there is no session here, and even while a claim of
//!   it is in flight — and ship the session, keeping a copy until the new owner says it
//!   installed it. Answer "busy, retry" instead while a copy shipped *to* this node is being
//!   claimed: it may be newer than anything here.
//! - Where takeovers leave several copies of a session, install the newest; the key's
//!   revision ([`Ownership::revision`]) when each copy was last served orders them. A
//!   `claim_after_release` answered `Unavailable` may still have committed: keep the shipped
//!   copy where a peer's ask will find it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::types::{ClaimOutcome, LeaseId, Member, NodeId, Revision};

/// etcd refuses a transaction with more operations than this (`--max-txn-ops`, default 128).
pub const TXN_OPS_MAX: usize = 128;
/// The serving deadline stops `ttl / SERVING_MARGIN_DIVISOR` short of the earliest moment etcd
/// could expire the lease: room for clock-rate differences between this node and etcd, and for
/// the engine to notice the deadline and close connections.
pub const SERVING_MARGIN_DIVISOR: u32 = 4;
/// This node tells peers etcd is fine ([`Ownership::etcd_ok`]) while it heard from etcd within
/// `ttl / ETCD_OK_WINDOW_DIVISOR`. The window must exceed the driver's keepalive interval
/// (`ttl / 6`) plus a round trip: a healthy node that reported "unreachable" between two
/// keepalives would let a partitioned peer extend its serving past its lease. It must also be
/// short enough that, when etcd goes down, every peer's "unreachable" report arrives before a
/// node's own deadline: window + keepalive interval + a heartbeat (250 ms) < ¾ ttl, i.e.
/// ttl/3 + ttl/6 + 0.25 s < 0.75 ttl, which holds for every allowed ttl (2 s and up).
pub const ETCD_OK_WINDOW_DIVISOR: u32 = 3;
/// A peer's report counts for this long after it was received. Peers send one every few hundred
/// milliseconds.
pub const PEER_REPORT_FRESH: Duration = Duration::from_secs(1);
/// The age a peer report may have when it is processed (link delay plus queueing on the
/// control thread), assumed, not measured. It sizes [`CLAIM_QUARANTINE`].
pub const PEER_REPORT_DELAY_MAX: Duration = Duration::from_millis(250);
/// After a spell in which this node could have told peers "etcd is unreachable", it sends no
/// transaction for this long once etcd answers again: a peer that kept serving on the strength
/// of those reports must have stopped first. A report is used for [`PEER_REPORT_FRESH`] after it
/// is processed, processed at most [`PEER_REPORT_DELAY_MAX`] after it was sent, or — when the
/// receiver itself was paused — up to another [`PEER_REPORT_FRESH`] late (a longer pause would
/// have fenced it), hence twice the freshness plus the delay.
pub const CLAIM_QUARANTINE: Duration = Duration::from_millis(
    2 * PEER_REPORT_FRESH.as_millis() as u64 + PEER_REPORT_DELAY_MAX.as_millis() as u64,
);
/// A transaction is sent only while etcd has answered within the `etcd_ok` window less this:
/// one sent later could be applied after this node's reports turned to "unreachable" and a peer
/// began serving on them. It bounds how long a request may take to reach etcd (assumed; etcd
/// answers in under a millisecond on a LAN). A node cut off from etcd therefore queues its
/// claims instead of sending them, and etcd's first answer afterwards (a keepalive, a grant)
/// starts the quarantine.
pub const TXN_DELAY_MAX: Duration = Duration::from_millis(500);
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
/// Transactions in flight at once; later batches wait for answers.
pub const TXNS_IN_FLIGHT_MAX: usize = 16;
/// Claims and releases queued or in flight; a claim past it is answered `Unavailable` at once.
pub const OPS_PENDING_MAX: usize = 65_536;

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
    /// A claim not answered by then is answered `Unavailable`.
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

/// What etcd answered to `If(every op's compare) Then(every op) Else(get every op's key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnAnswer {
    /// The header revision: the new `mod_revision` of every key put.
    Committed { revision: Revision },
    /// Per op, in op order: the key's owner and `mod_revision` now (`None`: absent). A value
    /// that does not decode may be passed as an `Owner` with an empty node: it is treated as an
    /// unknown holder.
    CompareFailed { current: Vec<Option<(Owner, Revision)>> },
    /// etcd unreachable, timed out, or an error: nothing is known, the transaction may or may
    /// not have been applied.
    Failed,
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
    /// Serving again, under a new lease. Emitted once per transition.
    Serve,
    /// Ask etcd for a new lease (retrying until it is granted); answer with
    /// [`Ownership::lease_granted`].
    GrantLease,
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
    Claim { ticket: Option<Ticket>, compare: Compare, after_release: bool, handed_over: bool },
    /// The revision to delete at; `None` while a claim ahead of it decides what we hold.
    Release { revision: Option<Revision> },
}

#[derive(Debug)]
struct Op {
    kind: OpKind,
    failures: u32,
}

/// Where the first queued operation of a key stands.
#[derive(Debug)]
enum Head {
    /// Not dispatched yet (transient inside a call).
    Idle,
    /// In the batch, waiting to be sent.
    Batched,
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

/// The sans-IO ownership, fencing and takeover core of one node. Lives on the control-plane
/// thread.
#[derive(Debug)]
pub struct Ownership {
    config: OwnershipConfig,
    /// `Some` while serving.
    lease: Option<LeaseId>,
    /// When the latest answered grant or keepalive of `lease` was sent.
    renewed_at: Option<Instant>,
    lease_requested: bool,
    /// When etcd last answered anything (for [`Ownership::etcd_ok`]).
    contact_at: Option<Instant>,
    /// etcd answered in a call that carried no `now` (grant, renewal): stamped by the next one.
    contact_unstamped: bool,
    /// No transaction is sent before this (see [`CLAIM_QUARANTINE`]).
    txns_open_at: Option<Instant>,
    /// etcd has been silent for too long to send transactions (see [`TXN_DELAY_MAX`]) as of the
    /// last flush; cleared when it answers. Keeps `next_wakeup` from asking for ticks that could
    /// not send anything.
    txns_closed: bool,
    members: Vec<Member>,
    reports: HashMap<NodeId, PeerReport>,
    /// What `members`, `reports` and `renewed_at` allow past the lease deadline (see
    /// [`Ownership::serving_until`]); recomputed whenever one of them changes, because
    /// `serving_until` is read on every event.
    extension: Option<Instant>,
    /// Client ids whose key this node wrote under `lease`, with the key's `mod_revision`.
    owned: HashMap<String, Revision>,
    /// Ordered so that fencing answers tickets in a reproducible order.
    keys: BTreeMap<String, KeyQueue>,
    /// Keys whose head is `Batched`, in order (may hold stale entries, skipped when sending).
    batch: VecDeque<String>,
    batched: usize,
    batch_since: Option<Instant>,
    in_flight: HashMap<TxnId, Vec<String>>,
    next_txn: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_timer: u64,
    /// Claim deadlines in the order claims arrived, hence in deadline order.
    deadlines: VecDeque<(Instant, Ticket, String)>,
    held: BTreeSet<String>,
    ops_pending: usize,
    actions: VecDeque<Action>,
}

impl Ownership {
    /// Starts without a lease: the first action is `GrantLease`, unless the driver calls
    /// [`Ownership::lease_granted`] first.
    pub fn new(config: OwnershipConfig) -> Ownership {
        assert!((1..=TXN_OPS_MAX).contains(&config.batch_ops_max), "batch_ops_max out of range");
        assert!(!config.lease_ttl.is_zero(), "lease_ttl is zero");
        let mut ownership = Ownership {
            config,
            lease: None,
            renewed_at: None,
            lease_requested: false,
            contact_at: None,
            contact_unstamped: false,
            txns_open_at: None,
            txns_closed: false,
            members: Vec::new(),
            reports: HashMap::new(),
            extension: None,
            owned: HashMap::new(),
            keys: BTreeMap::new(),
            batch: VecDeque::new(),
            batched: 0,
            batch_since: None,
            in_flight: HashMap::new(),
            next_txn: 0,
            timers: BinaryHeap::new(),
            next_timer: 0,
            deadlines: VecDeque::new(),
            held: BTreeSet::new(),
            ops_pending: 0,
            actions: VecDeque::new(),
        };
        ownership.request_lease();
        ownership
    }

    pub fn config(&self) -> &OwnershipConfig {
        &self.config
    }

    pub fn lease(&self) -> Option<LeaseId> {
        self.lease
    }

    /// etcd granted `lease` to a request sent at `requested_at`.
    pub fn lease_granted(&mut self, lease: LeaseId, requested_at: Instant) {
        self.contact_unstamped = true;
        if self.lease == Some(lease) {
            self.lease_renewed(requested_at);
            return;
        }
        if self.lease.is_some() {
            // Our keys hang on the old lease: what we owned is no longer provably ours.
            self.fence();
        }
        self.actions.retain(|action| *action != Action::GrantLease);
        self.lease_requested = false;
        self.lease = Some(lease);
        self.renewed_at = Some(requested_at);
        self.extension = self.extension_until();
        self.actions.push_back(Action::Serve);
    }

    /// A keepalive sent at `requested_at` was answered with a TTL above zero.
    pub fn lease_renewed(&mut self, requested_at: Instant) {
        self.contact_unstamped = true;
        if self.lease.is_some() {
            // Answers can arrive out of order; only a later request extends the deadline.
            self.renewed_at = self.renewed_at.max(Some(requested_at));
            // Reports older than this renewal no longer extend anything new, but an extension
            // already granted stands until it runs out (see `peer_report`).
            self.extension = self.extension_until().or(self.extension);
        }
    }

    /// A keepalive of the current lease was answered with TTL 0 (or "lease not found").
    pub fn lease_lost(&mut self, now: Instant) {
        self.advance(now);
        self.contact(now);
        if self.lease.is_some() {
            self.fence();
        }
    }

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
            // grows no more, but lasts until the reports it was built on run out, as if this one had come that much later (which CLAIM_QUARANTINE
            // covers). When etcd restarts every node reconnects within a few hundred
            // milliseconds, and this node's own renewal lands in that time instead of it
            // fencing (and dropping its clients) for having come second.
            self.extension = self.extension_until().or(self.extension);
        }
        self.check_deadline(now);
        self.flush(now);
    }

    /// A client connected: answer whether this node may serve it.
    pub fn claim(&mut self, ticket: Ticket, client: &str, now: Instant) {
        self.advance(now);
        self.enqueue_claim(ticket, client, Compare::Absent, false, now);
        self.flush(now);
    }

    /// The owner named by `HeldBy` stopped serving the client and shipped its session: take the
    /// key over if it is still at `revision`.
    pub fn claim_after_release(
        &mut self,
        ticket: Ticket,
        client: &str,
        revision: Revision,
        now: Instant,
    ) {
        self.advance(now);
        self.enqueue_claim(ticket, client, Compare::ModRevision(revision), true, now);
        self.flush(now);
    }

    /// The session ended here: delete the key, after any claim of it still in flight.
    pub fn release(&mut self, client: &str, now: Instant) {
        self.advance(now);
        if self.lease.is_none() {
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
        if answer != TxnAnswer::Failed {
            self.contact(now);
        }
        // Unknown ids: answered already, or sent under a lease we fenced.
        let Some(clients) = self.in_flight.remove(&id) else {
            self.flush(now);
            return;
        };
        match answer {
            TxnAnswer::Committed { revision } => {
                for client in &clients {
                    self.committed(client, id, revision, now);
                }
            }
            TxnAnswer::CompareFailed { current }
                if current.len() == clients.len()
                    && !self.every_compare_holds(&clients, &current) =>
            {
                for (client, current) in clients.iter().zip(current) {
                    self.compare_failed(client, id, current, now);
                }
            }
            // Failed, a malformed answer, or a failure etcd does not explain.
            _ => {
                for client in &clients {
                    self.failed(client, id, now);
                }
            }
        }
        self.flush(now);
    }

    pub fn tick(&mut self, now: Instant) {
        self.advance(now);
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
        if self.lease.is_some() && self.batched > 0 && self.in_flight.len() < TXNS_IN_FLIGHT_MAX {
            let due = self.batch_since.map(|since| since + self.config.batch_delay);
            // Closed, only etcd's next answer (a call, which flushes) reopens: no point waking.
            if !self.txns_closed || self.contact_unstamped {
                consider(due.max(self.txns_open_at));
            }
        }
        consider(self.timers.peek().map(|Reverse((at, _, _))| *at));
        consider(self.deadlines.front().map(|(at, _, _)| *at));
        wakeup
    }

    /// Until when this node may serve clients (`None`: fenced, or no lease yet). The engine's
    /// shards refuse to serve when `now >= serving_until`, whether or not `Fence` has been
    /// processed yet.
    ///
    /// Normally this is the lease deadline ([`Ownership::lease_deadline`]). Past it, the node
    /// keeps serving while *every* other member of the last known member set (at least one)
    /// has reported within [`PEER_REPORT_FRESH`], after our last renewal was sent, that it
    /// cannot reach etcd either; the extension ends [`PEER_REPORT_FRESH`] after the oldest of
    /// those reports, and grows no more once any peer reports that etcd answers it. Why this is
    /// safe:
    ///
    /// - While etcd is down, nobody can claim: every claim is an etcd transaction.
    /// - When etcd comes back, its new leader re-grants every lease a full TTL (a leader
    ///   promotion refreshes leases), so this node's keys cannot expire before `return + ttl`.
    ///   The peers reach etcd within a keepalive interval and report `etcd_ok` within a
    ///   heartbeat; the extension built on their earlier reports then runs out (at most
    ///   [`PEER_REPORT_FRESH`] later) well inside that TTL, and this node fences then if it still
    ///   cannot renew.
    /// - If instead etcd stayed up and every node was cut off from it, the leases did expire.
    ///   A node sends no transaction once etcd has been silent for close to its `etcd_ok`
    ///   window ([`TXN_DELAY_MAX`]), and the first peer to reach etcd again sends none for
    ///   [`CLAIM_QUARANTINE`], by which time every extension built on its "unreachable"
    ///   reports has run out. The simulation shows a claim that skips the quarantine breaking
    ///   the invariant.
    /// - A node with no peers, or missing a fresh report from any of them, cannot tell "etcd is
    ///   down" from "I am cut off": it fences.
    ///
    /// The limit: a node that none of the extended nodes knows (it registered after their watch
    /// broke) can claim their clients once etcd expired their leases. That takes every member
    /// cut off from a live etcd for longer than a TTL while a node joins; the simulation keeps
    /// out of it.
    pub fn serving_until(&self) -> Option<Instant> {
        let deadline = self.lease_deadline()?;
        Some(match self.extension {
            Some(extension) if extension > deadline => extension,
            _ => deadline,
        })
    }

    /// The deadline the lease alone allows: the send time of the latest answered keepalive
    /// plus the TTL, minus the margin.
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.lease?;
        let ttl = self.config.lease_ttl;
        Some(self.renewed_at? + ttl - ttl / SERVING_MARGIN_DIVISOR)
    }

    /// What this node tells its peers: etcd answered it within `ttl / ETCD_OK_WINDOW_DIVISOR`.
    /// `false` too before etcd ever answered: the previous run of this node may have reported
    /// it unreachable. "Unreachable" is the claim peers may act on, so it must never be said of
    /// an etcd this node can still write to: see [`TXN_DELAY_MAX`].
    pub fn etcd_ok(&self, now: Instant) -> bool {
        self.contact_unstamped || self.contact_at.is_some_and(|at| now < at + self.etcd_ok_window())
    }

    /// Whether this node owns `client` under its current lease.
    pub fn owns(&self, client: &str) -> bool {
        self.lease.is_some() && self.owned.contains_key(client)
    }

    /// The `mod_revision` of `client`'s key while this node owns it. Revisions only grow, so it
    /// orders the copies of a session that takeovers leave on several nodes: a copy served
    /// under a later revision is newer.
    pub fn revision(&self, client: &str) -> Option<Revision> {
        self.lease?;
        self.owned.get(client).copied()
    }

    fn etcd_ok_window(&self) -> Duration {
        self.config.lease_ttl / ETCD_OK_WINDOW_DIVISOR
    }

    /// No transaction is sent from then on until etcd answers again (see [`TXN_DELAY_MAX`]).
    /// `None`: etcd never answered.
    fn txns_close_at(&self) -> Option<Instant> {
        let window = self.etcd_ok_window().saturating_sub(TXN_DELAY_MAX);
        self.contact_at.map(|at| at + window)
    }

    fn extension_until(&self) -> Option<Instant> {
        let renewed_at = self.renewed_at?;
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
        if self.contact_unstamped {
            self.contact_unstamped = false;
            self.contact(now);
        }
        self.check_deadline(now);
        self.expire_claims(now);
        self.fire_timers(now);
    }

    /// etcd answered. If it had not for a while, peers may be serving on our reports that it
    /// was unreachable: hold transactions back until those reports have run out.
    fn contact(&mut self, now: Instant) {
        let was_ok = self.contact_at.is_some_and(|at| now < at + self.etcd_ok_window());
        if !was_ok {
            let open_at = now + self.config.claim_quarantine;
            self.txns_open_at = Some(self.txns_open_at.map_or(open_at, |t| t.max(open_at)));
        }
        self.contact_at = Some(now);
    }

    fn check_deadline(&mut self, now: Instant) {
        if self.lease.is_some() && self.serving_until().is_none_or(|until| now >= until) {
            self.fence();
        }
    }

    /// Stop serving: forget every owned client, answer every queued claim `Fenced`, ask for a
    /// new lease. Answers to transactions already sent are ignored from now on.
    fn fence(&mut self) {
        if self.lease.take().is_some() {
            self.actions.push_back(Action::Fence);
        }
        self.renewed_at = None;
        self.extension = None;
        self.owned.clear();
        for (_, queue) in std::mem::take(&mut self.keys) {
            for op in queue.ops {
                if let OpKind::Claim { ticket: Some(ticket), .. } = op.kind {
                    self.answer(ticket, ClaimOutcome::Fenced);
                }
            }
        }
        self.batch.clear();
        self.batched = 0;
        self.batch_since = None;
        self.in_flight.clear();
        self.timers.clear();
        self.deadlines.clear();
        self.held.clear();
        self.ops_pending = 0;
        self.request_lease();
    }

    fn request_lease(&mut self) {
        if !self.lease_requested {
            self.lease_requested = true;
            self.actions.push_back(Action::GrantLease);
        }
    }

    fn answer(&mut self, ticket: Ticket, outcome: ClaimOutcome) {
        self.actions.push_back(Action::Answer { ticket, outcome });
    }

    fn is_live_peer(&self, owner: &Owner) -> bool {
        owner.node != self.config.node
            && self.members.iter().any(|m| m.lease == owner.lease && m.node == owner.node)
    }

    fn enqueue_claim(
        &mut self,
        ticket: Ticket,
        client: &str,
        compare: Compare,
        after_release: bool,
        now: Instant,
    ) {
        if self.lease.is_none() {
            self.answer(ticket, ClaimOutcome::Fenced);
        } else if self.owned.contains_key(client) && !self.keys.contains_key(client) {
            // Ours under the current lease: nothing to write.
            self.answer(ticket, ClaimOutcome::AlreadyOwned);
        } else if self.ops_pending >= OPS_PENDING_MAX {
            self.answer(ticket, ClaimOutcome::Unavailable);
        } else {
            self.deadlines.push_back((now + self.config.claim_timeout, ticket, client.to_owned()));
            let claim =
                OpKind::Claim { ticket: Some(ticket), compare, after_release, handed_over: false };
            self.enqueue(client, claim, now);
        }
    }

    fn enqueue(&mut self, client: &str, kind: OpKind, now: Instant) {
        if self.ops_pending >= OPS_PENDING_MAX {
            // Only releases get here (claims are refused before): the key then lives until the
            // lease ends.
            return;
        }
        self.ops_pending += 1;
        let queue = self
            .keys
            .entry(client.to_owned())
            .or_insert_with(|| KeyQueue { ops: VecDeque::new(), head: Head::Idle });
        queue.ops.push_back(Op { kind, failures: 0 });
        if queue.ops.len() == 1 {
            self.dispatch(client, now);
        }
    }

    /// Pops the head of `client`'s queue (answering it with `outcome` if it is a claim still
    /// waiting for one) and dispatches the next operation.
    fn finish_head(&mut self, client: &str, outcome: Option<ClaimOutcome>, now: Instant) {
        let Some(queue) = self.keys.get_mut(client) else { return };
        match queue.head {
            Head::Batched => self.batched -= 1,
            Head::Held { .. } => {
                self.held.remove(client);
            }
            _ => {}
        }
        queue.head = Head::Idle;
        let Some(op) = queue.ops.pop_front() else { return };
        self.ops_pending -= 1;
        if let (OpKind::Claim { ticket: Some(ticket), .. }, Some(outcome)) = (op.kind, outcome) {
            self.answer(ticket, outcome);
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
                            self.answer(ticket, ClaimOutcome::AlreadyOwned);
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
            queue.head = Head::Batched;
            self.batched += 1;
            self.batch.push_back(client.to_owned());
            self.batch_since.get_or_insert(now);
            return;
        }
    }

    /// Sends every batch that is full or due, within the in-flight bound.
    fn flush(&mut self, now: Instant) {
        let Some(lease) = self.lease else { return };
        self.txns_closed = self.txns_close_at().is_none_or(|close_at| now >= close_at);
        if self.txns_closed || self.txns_open_at.is_some_and(|open_at| now < open_at) {
            return;
        }
        while self.batched > 0 && self.in_flight.len() < TXNS_IN_FLIGHT_MAX {
            let due = self.batch_since.is_some_and(|since| now >= since + self.config.batch_delay);
            if !due && self.batched < self.config.batch_ops_max {
                break;
            }
            self.send_txn(lease);
        }
        if self.batched == 0 {
            self.batch.clear();
            self.batch_since = None;
        }
    }

    fn send_txn(&mut self, lease: LeaseId) {
        let id = TxnId(self.next_txn);
        self.next_txn += 1;
        let mut ops = Vec::with_capacity(self.batched.min(self.config.batch_ops_max));
        let mut clients = Vec::with_capacity(ops.capacity());
        while ops.len() < self.config.batch_ops_max {
            let Some(client) = self.batch.pop_front() else { break };
            let Some(queue) = self.keys.get_mut(&client) else { continue };
            // Stale entries (the head moved on) and duplicates (already taken) are skipped.
            if !matches!(queue.head, Head::Batched) {
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
                OpKind::Release { revision: None } => unreachable!("dispatch resolves releases"),
            };
            queue.head = Head::InFlight(id);
            self.batched -= 1;
            ops.push(txn_op);
            clients.push(client);
        }
        assert!(!ops.is_empty(), "batched count out of step with the batch");
        assert!(ops.len() <= TXN_OPS_MAX);
        self.in_flight.insert(id, clients);
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
        let claim_ticket = match self.in_flight_head(client, id) {
            None => return,
            Some(Op { kind: OpKind::Claim { handed_over: true, compare, .. }, .. }) => {
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

    fn every_compare_holds(
        &self,
        clients: &[String],
        current: &[Option<(Owner, Revision)>],
    ) -> bool {
        clients.iter().zip(current).all(|(client, current)| {
            match self.keys.get(client).and_then(|queue| queue.ops.front()) {
                Some(Op { kind: OpKind::Claim { compare, .. }, .. }) => holds(compare, current),
                Some(Op { kind: OpKind::Release { revision: Some(revision) }, .. }) => {
                    holds(&Compare::ModRevision(*revision), current)
                }
                _ => false,
            }
        })
    }

    /// One operation of a transaction whose compares (ANDed) did not all hold.
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
                    // Another op of the batch failed it; this one would have passed.
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
                if owner.node == self.config.node && Some(owner.lease) == self.lease =>
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
        while let Some((deadline, _, _)) = self.deadlines.front() {
            if *deadline > now {
                break;
            }
            let Some((_, ticket, client)) = self.deadlines.pop_front() else { break };
            let Some(queue) = self.keys.get_mut(&client) else { continue };
            let Some(index) = queue.ops.iter().position(
                |op| matches!(op.kind, OpKind::Claim { ticket: Some(t), .. } if t == ticket),
            ) else {
                continue;
            };
            self.answer(ticket, ClaimOutcome::Unavailable);
            let Some(queue) = self.keys.get_mut(&client) else { continue };
            if index > 0 {
                queue.ops.remove(index);
                self.ops_pending -= 1;
            } else if let Head::InFlight(_) = queue.head {
                // The put may still commit; the key is then ours (see `committed`).
                if let Some(Op { kind: OpKind::Claim { ticket, .. }, .. }) = queue.ops.front_mut() {
                    *ticket = None;
                }
            } else {
                self.held.remove(&client);
                self.finish_head(&client, None, now);
            }
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
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;

    const TTL: Duration = Duration::from_secs(6);
    const LEASE: LeaseId = LeaseId(0x10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn member(name: &str, lease: i64) -> Member {
        Member {
            node: NodeId::new(name),
            link: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
            lease: LeaseId(lease),
        }
    }

    fn owner(name: &str, lease: i64) -> Owner {
        Owner { node: NodeId::new(name), lease: LeaseId(lease) }
    }

    fn put(client: &str, compare: Compare) -> TxnOp {
        TxnOp::Put { client: client.to_owned(), compare }
    }

    fn answer(ticket: u64, outcome: ClaimOutcome) -> Action {
        Action::Answer { ticket: Ticket(ticket), outcome }
    }

    /// Node "a" holding lease 0x10 from `start`, with peers "b" (lease 0x20) and "c" (0x30).
    struct Harness {
        own: Ownership,
        start: Instant,
    }

    impl Harness {
        fn new() -> Harness {
            Harness::with(|_| {})
        }

        fn with(configure: impl FnOnce(&mut OwnershipConfig)) -> Harness {
            let mut config = OwnershipConfig::new(NodeId::new("a"));
            config.claim_quarantine = Duration::ZERO;
            configure(&mut config);
            let start = Instant::now();
            let mut own = Ownership::new(config);
            assert_eq!(own.poll_action(), Some(Action::GrantLease));
            own.lease_granted(LEASE, start);
            own.members(&[member("a", 0x10), member("b", 0x20), member("c", 0x30)], start);
            let mut harness = Harness { own, start };
            assert_eq!(harness.actions(), [Action::Serve]);
            harness
        }

        fn at(&self, elapsed: Duration) -> Instant {
            self.start + elapsed
        }

        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.own.poll_action()).collect()
        }

        /// The one transaction sent since the last drain, with every other action.
        fn txn(&mut self) -> (TxnId, Vec<TxnOp>, Vec<Action>) {
            let mut txns = Vec::new();
            let mut others = Vec::new();
            for action in self.actions() {
                match action {
                    Action::Txn { id, lease, ops } => {
                        assert_eq!(lease, LEASE);
                        txns.push((id, ops));
                    }
                    other => others.push(other),
                }
            }
            assert_eq!(txns.len(), 1, "expected one transaction, others: {others:?}");
            let (id, ops) = txns.remove(0);
            (id, ops, others)
        }

        /// Claims `client` at `elapsed` and commits its put at revision `revision`.
        fn own_client(&mut self, ticket: u64, client: &str, elapsed: Duration, revision: i64) {
            self.own.claim(Ticket(ticket), client, self.at(elapsed));
            self.own.tick(self.at(elapsed + ms(2)));
            let (id, ops, _) = self.txn();
            assert_eq!(ops, [put(client, Compare::Absent)]);
            let committed = TxnAnswer::Committed { revision: Revision(revision) };
            self.own.txn_answered(id, committed, self.at(elapsed + ms(3)));
            assert_eq!(self.actions(), [answer(ticket, ClaimOutcome::Claimed)]);
            assert!(self.own.owns(client));
        }
    }

    #[test]
    fn owner_value_round_trips_and_rejects_garbage() {
        fn check(bytes: &[u8], expected: Option<Owner>) {
            assert_eq!(Owner::decode(bytes), expected, "{:?}", String::from_utf8_lossy(bytes));
        }
        let value = owner("node-1", 0x694d_7b3a_11c2_0f05);
        assert_eq!(value.encode(), b"694d7b3a11c20f05 node-1");
        check(&value.encode(), Some(value));
        check(&owner("n", -1).encode(), Some(owner("n", -1)));
        check(b"", None);
        check(b"694d7b3a11c20f05", None);
        check(b"694d7b3a11c20f05 ", None);
        check(b"694d7b3a11c20f05-node", None);
        check(b"+94d7b3a11c20f05 node", None);
        check(b"zz4d7b3a11c20f05 node", None);
        check(b"\xff94d7b3a11c20f05 node", None);
    }

    #[test]
    fn the_driver_may_grant_before_polling() {
        let mut own = Ownership::new(OwnershipConfig::new(NodeId::new("a")));
        let now = Instant::now();
        own.lease_granted(LEASE, now);
        assert_eq!(own.poll_action(), Some(Action::Serve));
        assert_eq!(own.poll_action(), None);
        assert!(own.serving_until().is_some());
    }

    #[test]
    fn already_owned_writes_nothing() {
        let mut h = Harness::new();
        h.own_client(1, "c1", ms(0), 7);
        h.own.claim(Ticket(2), "c1", h.at(ms(10)));
        h.own.tick(h.at(ms(100)));
        assert_eq!(h.actions(), [answer(2, ClaimOutcome::AlreadyOwned)]);
        assert_eq!(h.own.next_wakeup(), h.own.serving_until());
    }

    #[test]
    fn batches_hold_at_most_128_ops_and_never_a_key_twice() {
        let mut h = Harness::new();
        for i in 0..300 {
            h.own.claim(Ticket(i), &format!("c{i}"), h.at(ms(0)));
        }
        // A second claim of a key already queued waits behind the first one.
        h.own.claim(Ticket(1000), "c0", h.at(ms(0)));
        let sizes: Vec<usize> = h
            .actions()
            .into_iter()
            .map(|action| match action {
                Action::Txn { ops, .. } => ops.len(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(sizes, [128, 128], "full batches go at once");
        assert_eq!(h.own.next_wakeup(), Some(h.at(ms(2))));
        h.own.tick(h.at(ms(1)));
        assert!(h.actions().is_empty());
        h.own.tick(h.at(ms(2)));
        let (_, ops, _) = h.txn();
        assert_eq!(ops.len(), 44, "the rest goes batch_delay after the first op");
        assert!(ops.iter().all(|op| op.client() != "c0"));
    }

    #[test]
    fn batching_off_sends_each_claim_alone() {
        let mut h = Harness::with(|config| {
            config.batch_ops_max = 1;
            config.batch_delay = Duration::ZERO;
        });
        h.own.claim(Ticket(1), "c1", h.at(ms(0)));
        h.own.claim(Ticket(2), "c2", h.at(ms(0)));
        let txns = h.actions().into_iter().filter(|a| matches!(a, Action::Txn { .. })).count();
        assert_eq!(txns, 2);
    }

    #[test]
    fn compare_failed_splits_the_batch_by_holder() {
        let mut h = Harness::new();
        let clients = ["free", "mine", "peer", "old-run", "stranger"];
        for (i, client) in clients.iter().enumerate() {
            h.own.claim(Ticket(i as u64), client, h.at(ms(0)));
        }
        h.own.tick(h.at(ms(2)));
        let (id, ops, _) = h.txn();
        assert_eq!(ops.len(), 5);
        let current = vec![
            None,                                   // free: would have passed
            Some((owner("a", 0x10), Revision(11))), // ours, but not known as ours
            Some((owner("b", 0x20), Revision(12))), // a live peer
            Some((owner("a", 0x05), Revision(13))), // this node's previous run
            Some((owner("d", 0x40), Revision(14))), // a lease no member has (yet)
        ];
        h.own.txn_answered(id, TxnAnswer::CompareFailed { current }, h.at(ms(3)));
        let held_by = ClaimOutcome::HeldBy { owner: NodeId::new("b"), revision: Revision(12) };
        assert_eq!(h.actions(), [answer(2, held_by)]);
        h.own.tick(h.at(ms(5)));
        let (id, ops, _) = h.txn();
        assert_eq!(
            ops,
            [
                put("free", Compare::Absent),
                put("mine", Compare::ModRevision(Revision(11))),
                put("old-run", Compare::ModRevision(Revision(13))),
            ]
        );
        h.own.txn_answered(id, TxnAnswer::Committed { revision: Revision(20) }, h.at(ms(6)));
        let claimed = |t| answer(t, ClaimOutcome::Claimed);
        assert_eq!(h.actions(), [claimed(0), claimed(1), claimed(3)]);

        // The stranger turns out to be a member whose registration the watch had not shown.
        let members = [member("a", 0x10), member("b", 0x20), member("d", 0x40)];
        h.own.members(&members, h.at(ms(100)));
        let held_by = ClaimOutcome::HeldBy { owner: NodeId::new("d"), revision: Revision(14) };
        assert_eq!(h.actions(), [answer(4, held_by)]);
    }

    #[test]
    fn a_claim_on_a_dead_lease_retries_then_times_out() {
        let mut h = Harness::new();
        h.own.claim(Ticket(1), "c1", h.at(ms(0)));
        h.own.tick(h.at(ms(2)));
        let (id, _, _) = h.txn();
        let current = vec![Some((owner("d", 0x40), Revision(9)))];
        h.own.txn_answered(id, TxnAnswer::CompareFailed { current }, h.at(ms(3)));
        assert!(h.actions().is_empty());
        // Re-queued, it goes out with the next batch.
        h.own.tick(h.at(ms(3) + HELD_RETRY_INTERVAL));
        assert_eq!(h.actions(), []);
        h.own.tick(h.at(ms(5) + HELD_RETRY_INTERVAL));
        let (id, ops, _) = h.txn();
        assert_eq!(ops, [put("c1", Compare::Absent)]);
        h.own.txn_answered(id, TxnAnswer::Failed, h.at(ms(300)));
        h.own.lease_renewed(h.at(ms(2000)));
        h.own.tick(h.at(Duration::from_secs(5)));
        let outcomes: Vec<Action> =
            h.actions().into_iter().filter(|a| matches!(a, Action::Answer { .. })).collect();
        assert_eq!(outcomes, [answer(1, ClaimOutcome::Unavailable)]);
    }

    #[test]
    fn claim_after_release_loses_a_race_as_unavailable() {
        let mut h = Harness::new();
        h.own.claim_after_release(Ticket(1), "c1", Revision(5), h.at(ms(0)));
        h.own.tick(h.at(ms(2)));
        let (id, ops, _) = h.txn();
        assert_eq!(ops, [put("c1", Compare::ModRevision(Revision(5)))]);
        let current = vec![Some((owner("c", 0x30), Revision(6)))];
        h.own.txn_answered(id, TxnAnswer::CompareFailed { current }, h.at(ms(3)));
        assert_eq!(h.actions(), [answer(1, ClaimOutcome::Unavailable)]);
    }

    #[test]
    fn a_handed_over_key_is_won_back_with_a_write() {
        let mut h = Harness::new();
        h.own_client(1, "c1", ms(0), 7);
        h.own.handed_over("c1");
        assert!(!h.own.owns("c1"));
        h.own.claim(Ticket(2), "c1", h.at(ms(10)));
        h.own.tick(h.at(ms(12)));
        let (id, ops, _) = h.txn();
        assert_eq!(ops, [put("c1", Compare::Absent)]);
        // The peer has not claimed yet: the key still names us at revision 7.
        let current = vec![Some((owner("a", 0x10), Revision(7)))];
        h.own.txn_answered(id, TxnAnswer::CompareFailed { current }, h.at(ms(13)));
        h.own.tick(h.at(ms(15)));
        let (_, ops, _) = h.txn();
        assert_eq!(ops, [put("c1", Compare::ModRevision(Revision(7)))]);
    }

    #[test]
    fn failures_back_off_and_claims_time_out() {
        let mut h = Harness::new();
        h.own.claim(Ticket(1), "c1", h.at(ms(0)));
        h.own.lease_renewed(h.at(ms(2000)));
        let mut now = ms(2);
        let mut sent = Vec::new();
        loop {
            h.own.tick(h.at(now));
            match h.actions().as_slice() {
                [] => {}
                [Action::Txn { id, .. }] => {
                    sent.push(now);
                    h.own.txn_answered(*id, TxnAnswer::Failed, h.at(now));
                }
                [Action::Answer { outcome: ClaimOutcome::Unavailable, .. }] => break,
                other => panic!("{other:?}"),
            }
            now = h.own.next_wakeup().expect("a retry is due") - h.start;
        }
        // Each retry waits its backoff, then the batch delay.
        let gaps: Vec<Duration> = sent.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert_eq!(&gaps[..3], [ms(12), ms(22), ms(42)]);
        assert!(gaps.iter().all(|gap| *gap <= RETRY_BACKOFF_MAX + ms(2)));
        assert_eq!(now, Duration::from_secs(5));
    }

    #[test]
    fn a_release_waits_for_the_claim_in_flight() {
        let mut h = Harness::new();
        h.own.claim(Ticket(1), "c1", h.at(ms(0)));
        h.own.tick(h.at(ms(2)));
        let (id, _, _) = h.txn();
        h.own.release("c1", h.at(ms(3)));
        h.own.tick(h.at(ms(10)));
        assert!(h.actions().is_empty(), "nothing else touches c1 while its put is in flight");
        h.own.txn_answered(id, TxnAnswer::Committed { revision: Revision(8) }, h.at(ms(11)));
        h.own.tick(h.at(ms(13)));
        let (_, ops, others) = h.txn();
        assert_eq!(others, [answer(1, ClaimOutcome::Claimed)]);
        let delete =
            TxnOp::Delete { client: "c1".to_owned(), compare: Compare::ModRevision(Revision(8)) };
        assert_eq!(ops, [delete]);
        assert!(!h.own.owns("c1"));
    }

    #[test]
    fn fences_at_the_lease_deadline() {
        let mut h = Harness::new();
        h.own_client(1, "c1", ms(0), 7);
        // A keepalive sent at 1 s extends the deadline to 1 s + ttl - ttl/4.
        h.own.lease_renewed(h.at(ms(1000)));
        let deadline = h.at(ms(1000) + TTL - TTL / 4);
        assert_eq!(h.own.serving_until(), Some(deadline));
        // An answer to an older keepalive does not move it back.
        h.own.lease_renewed(h.at(ms(500)));
        assert_eq!(h.own.serving_until(), Some(deadline));
        h.own.claim(Ticket(2), "c2", deadline - ms(5));
        h.own.tick(deadline - Duration::from_micros(1));
        let (_, _, _) = h.txn();
        h.own.tick(deadline);
        assert_eq!(
            h.actions(),
            [Action::Fence, answer(2, ClaimOutcome::Fenced), Action::GrantLease]
        );
        assert_eq!(h.own.serving_until(), None);
        assert!(!h.own.owns("c1"));
        h.own.claim(Ticket(3), "c1", deadline + ms(1));
        assert_eq!(h.actions(), [answer(3, ClaimOutcome::Fenced)]);
        // Fenced, it ignores renewals of the old lease and serves again under a new one.
        h.own.lease_renewed(deadline);
        assert_eq!(h.own.serving_until(), None);
        h.own.lease_granted(LeaseId(0x11), deadline + ms(5));
        assert_eq!(h.actions(), [Action::Serve]);
        assert!(h.own.serving_until().is_some());
    }

    #[test]
    fn lease_lost_fences_at_once() {
        let mut h = Harness::new();
        h.own_client(1, "c1", ms(0), 7);
        h.own.lease_lost(h.at(ms(100)));
        assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);
        assert!(!h.own.owns("c1"));
    }

    #[test]
    fn peer_reports_extend_serving_until_a_peer_reaches_etcd() {
        let mut h = Harness::new();
        let deadline = h.at(TTL - TTL / 4);
        assert!(!h.own.etcd_ok(deadline), "silent etcd past the etcd_ok window means unreachable");
        let mut now = deadline - ms(500);
        // Both peers keep saying etcd is unreachable for them too: serve past the deadline.
        while now < deadline + Duration::from_secs(30) {
            h.own.peer_report(&NodeId::new("b"), false, now);
            h.own.peer_report(&NodeId::new("c"), false, now + ms(10));
            h.own.tick(now + ms(250));
            assert!(h.actions().is_empty(), "fenced at {:?}", now - h.start);
            assert_eq!(h.own.serving_until(), Some(now + PEER_REPORT_FRESH));
            now += ms(250);
        }
        // One of them reaches etcd: the extension grows no more. This node cannot renew, so it
        // fences when the reports it had run out.
        let until = h.own.serving_until().expect("serving");
        h.own.peer_report(&NodeId::new("c"), true, now);
        assert!(h.actions().is_empty(), "fenced before the reports ran out");
        h.own.peer_report(&NodeId::new("b"), false, now + ms(100));
        assert_eq!(h.own.serving_until(), Some(until), "extended after a peer reached etcd");
        h.own.tick(until - ms(1));
        assert!(h.actions().is_empty());
        h.own.tick(until);
        assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);
    }

    #[test]
    fn a_renewal_after_etcd_returns_keeps_serving_though_a_peer_reached_etcd_first() {
        let mut h = Harness::new();
        let deadline = h.at(TTL - TTL / 4);
        let mut now = deadline - ms(500);
        while now < deadline + Duration::from_secs(5) {
            h.own.peer_report(&NodeId::new("b"), false, now);
            h.own.peer_report(&NodeId::new("c"), false, now);
            now += ms(250);
        }
        // etcd is back: "c" renewed first and says so; this node's own keepalive is answered
        // 30 ms later, within the extension.
        h.own.peer_report(&NodeId::new("c"), true, now);
        h.own.lease_renewed(now + ms(30));
        h.own.tick(now + PEER_REPORT_FRESH + ms(10));
        assert!(h.actions().is_empty(), "fenced though its lease was renewed");
        assert_eq!(h.own.serving_until(), Some(now + ms(30) + TTL - TTL / 4));
    }

    #[test]
    fn an_extension_needs_a_fresh_report_from_every_peer() {
        // "c" is silent.
        let mut h = Harness::new();
        let deadline = h.at(TTL - TTL / 4);
        h.own.peer_report(&NodeId::new("b"), false, deadline - ms(100));
        h.own.tick(deadline);
        assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);

        // Both reported, but "c" before our last renewal started counting.
        let mut h = Harness::new();
        h.own.peer_report(&NodeId::new("c"), false, h.at(ms(100)));
        h.own.lease_renewed(h.at(ms(200)));
        let deadline = h.at(ms(200) + TTL - TTL / 4);
        h.own.peer_report(&NodeId::new("b"), false, deadline - ms(100));
        h.own.tick(deadline);
        assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);

        // Stale reports: a process paused past its extension fences on resuming, even if the
        // first thing it reads is a report.
        let mut h = Harness::new();
        let deadline = h.at(TTL - TTL / 4);
        h.own.peer_report(&NodeId::new("b"), false, deadline - ms(100));
        h.own.peer_report(&NodeId::new("c"), false, deadline - ms(100));
        assert_eq!(h.own.serving_until(), Some(deadline - ms(100) + PEER_REPORT_FRESH));
        let resumed = deadline + Duration::from_secs(5);
        h.own.peer_report(&NodeId::new("b"), false, resumed);
        assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);

        // No peers at all.
        let mut h = Harness::new();
        h.own.members(&[member("a", 0x10)], h.at(ms(10)));
        h.own.tick(h.at(TTL - TTL / 4));
        assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);
    }

    #[test]
    fn a_node_etcd_has_not_answered_lately_holds_its_transactions() {
        let mut h = Harness::new();
        // Heard from etcd at 0; past the etcd_ok window - TXN_DELAY_MAX a put could land after this node's
        // reports turned to "unreachable".
        let closed = TTL / 2 - TXN_DELAY_MAX;
        h.own.claim(Ticket(1), "c1", h.at(closed));
        h.own.tick(h.at(closed + ms(2)));
        assert_eq!(h.actions(), []);
        assert!(h.own.next_wakeup() > Some(h.at(closed + ms(2))), "no busy wake-ups");
        // A keepalive answered within the etcd_ok window reopens at once (no quarantine).
        h.own.lease_renewed(h.at(closed + ms(10)));
        h.own.tick(h.at(closed + ms(20)));
        let (_, ops, _) = h.txn();
        assert_eq!(ops, [put("c1", Compare::Absent)]);
    }

    #[test]
    fn transactions_wait_out_the_quarantine_after_etcd_was_unreachable() {
        let mut h = Harness::with(|config| config.claim_quarantine = CLAIM_QUARANTINE);
        // The first contact counts as the end of a silence (a previous run may have reported
        // etcd unreachable): nothing is sent before the quarantine ends.
        h.own.claim(Ticket(1), "c1", h.at(ms(0)));
        h.own.tick(h.at(ms(100)));
        assert_eq!(h.actions(), []);
        assert_eq!(h.own.next_wakeup(), Some(h.at(CLAIM_QUARANTINE)));
        // A keepalive answered meanwhile (every ttl/6) keeps etcd counted as reachable.
        h.own.lease_renewed(h.at(ms(1500)));
        h.own.tick(h.at(ms(1501)));
        assert_eq!(h.actions(), []);
        h.own.tick(h.at(CLAIM_QUARANTINE));
        let (id, _, _) = h.txn();
        h.own.txn_answered(id, TxnAnswer::Committed { revision: Revision(3) }, h.at(ms(2300)));
        h.actions();
        // Regular renewals: no quarantine.
        h.own.lease_renewed(h.at(ms(2400)));
        h.own.claim(Ticket(2), "c2", h.at(ms(2500)));
        h.own.tick(h.at(ms(2502)));
        let (id, _, _) = h.txn();
        h.own.txn_answered(id, TxnAnswer::Committed { revision: Revision(4) }, h.at(ms(2503)));
        h.actions();
        // Silent for longer than the etcd_ok window, then a renewal: quarantine again.
        let late = ms(2503) + TTL / ETCD_OK_WINDOW_DIVISOR + ms(10);
        assert!(!h.own.etcd_ok(h.at(late - ms(6))));
        h.own.lease_renewed(h.at(late - ms(5)));
        assert!(h.own.etcd_ok(h.at(late - ms(4))));
        h.own.claim(Ticket(3), "c3", h.at(late));
        h.own.tick(h.at(late + ms(100)));
        assert_eq!(h.actions(), []);
        h.own.lease_renewed(h.at(late + ms(1000)));
        h.own.tick(h.at(late + ms(1001)));
        assert_eq!(h.actions(), []);
        h.own.tick(h.at(late + CLAIM_QUARANTINE));
        let (_, ops, _) = h.txn();
        assert_eq!(ops, [put("c3", Compare::Absent)]);
    }
}

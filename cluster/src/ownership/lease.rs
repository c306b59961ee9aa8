//! The lease this node keeps alive, what etcd's answers prove about it, and what this node may
//! tell its peers about etcd.
//!
//! Two facts of etcd carry everything here (etcd 3.4, `lease/lessor.go`):
//!
//! - A keepalive processed at `p` sets the lease's expiry to `p + ttl`, and the answer carries
//!   the lease's granted TTL. A keepalive for a lease that has expired is answered TTL 0 (not
//!   found), never renewed. So a keepalive *sent* at `s` and answered with a TTL above zero
//!   proves the lease lives until at least `s + ttl`, however late the answer arrives.
//! - Keepalives of one stream are answered in order, one by one; a slow answer does not stop
//!   the next one from being sent. [`Lease`] therefore sends one every
//!   [`Lease::keepalive_interval`] whatever is outstanding, and credits each answer with its
//!   own send time.
//!
//! A late answer is not a lost lease: the node stops serving only at its serving deadline
//! (the newest answered send time plus the TTL, less [`SERVING_MARGIN_DIVISOR`]), and gives
//! the lease up only when etcd says it is gone. Past the deadline it keeps the lease alive and
//! serves again under it as soon as a keepalive is answered in time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::types::LeaseId;

/// The serving deadline stops `ttl / SERVING_MARGIN_DIVISOR` short of the earliest moment etcd
/// could expire the lease. The margin is the stated allowance for two things: clock-rate
/// differences between this node and etcd (assumed under 1%, which NTP-disciplined clocks keep
/// by two orders of magnitude, so 60 ms of a 6 s lease), and the time between a shard's last
/// check of the deadline and its last byte to a client (a thread descheduled on a busy host:
/// hundreds of milliseconds, the bulk of the margin).
pub const SERVING_MARGIN_DIVISOR: u32 = 4;
/// Keepalives per TTL: one every `ttl / KEEPALIVES_PER_TTL` (375 ms of a 6 s lease). Frequent,
/// because the extension (see `Ownership::serving_until`) needs every peer's "etcd is
/// unreachable" report before a node's deadline: a report turns at the newest answered send
/// time plus [`ETCD_OK_WINDOW`](Lease::etcd_ok_window) (half a TTL plus one interval), the
/// nodes' keepalives are up to one interval out of phase, and a report takes a heartbeat and
/// its delay to arrive: `ttl/2 + 2·ttl/16 + 0.25 s + 0.25 s ≤ 3/4·ttl` holds from a 4 s lease
/// up. Cheap: etcd answers a keepalive without a raft round, and 20 nodes send 53 a second.
pub const KEEPALIVES_PER_TTL: u32 = 16;

/// Transactions wait while no keepalive sent in the last `ttl / RENEWAL_OVERDUE_DIVISOR` has
/// been answered (see [`Lease::renewal_overdue_at`]).
pub const RENEWAL_OVERDUE_DIVISOR: u32 = 4;

/// One keepalive, numbered in the order this node sent them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeepaliveId(pub u64);

/// The lease held and the keepalives sent for it. Lives inside `Ownership`.
#[derive(Debug)]
pub(super) struct Lease {
    /// The TTL asked for (`lease_ttl`).
    ttl: Duration,
    /// The lease this node holds, serving or not, from its grant until etcd says it is gone.
    pub(super) id: Option<LeaseId>,
    /// The TTL etcd granted (and repeats in every keepalive answer).
    granted_ttl: Duration,
    /// The send time of the newest grant or keepalive of `id` etcd answered.
    pub(super) renewed_at: Option<Instant>,
    /// A grant was asked for and not answered yet.
    pub(super) requested: bool,
    next_keepalive_at: Option<Instant>,
    next_id: u64,
    /// Keepalives sent for `id` and not answered, oldest first. Pruned once older than the TTL:
    /// an answer to such a keepalive could not move the deadline into the future.
    pub(super) outstanding: VecDeque<(KeepaliveId, Instant)>,
}

/// What a keepalive answer means for the lease.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Renewal {
    /// The lease lives until at least the answered keepalive's send time plus the TTL.
    Renewed,
    /// etcd no longer knows the lease.
    Lost,
    /// An answer for another lease, or for a keepalive pruned or never sent: nothing follows.
    Unknown,
}

impl Lease {
    pub(super) fn new(ttl: Duration) -> Lease {
        Lease {
            ttl,
            id: None,
            granted_ttl: ttl,
            renewed_at: None,
            requested: false,
            next_keepalive_at: None,
            next_id: 0,
            outstanding: VecDeque::new(),
        }
    }

    pub(super) fn keepalive_interval(&self) -> Duration {
        self.ttl / KEEPALIVES_PER_TTL
    }

    /// `lease` was granted with `ttl` to a request sent at `requested_at`.
    pub(super) fn granted(&mut self, lease: LeaseId, ttl: Duration, requested_at: Instant) {
        self.id = Some(lease);
        self.granted_ttl = if ttl.is_zero() { self.ttl } else { ttl };
        self.renewed_at = Some(requested_at);
        self.requested = false;
        self.next_keepalive_at = Some(requested_at + self.keepalive_interval());
        self.outstanding.clear();
    }

    /// etcd no longer has the lease: nothing of it is kept.
    pub(super) fn forget(&mut self) {
        self.id = None;
        self.renewed_at = None;
        self.next_keepalive_at = None;
        self.outstanding.clear();
    }

    /// The keepalive to send now, if one is due.
    pub(super) fn keepalive_due(&mut self, now: Instant) -> Option<(LeaseId, KeepaliveId)> {
        let lease = self.id?;
        if self.next_keepalive_at.is_some_and(|at| now < at) {
            return None;
        }
        // Sent every interval from now on, whatever is still outstanding: a slow answer must not
        // hold back the next keepalive.
        self.next_keepalive_at = Some(now + self.keepalive_interval());
        let id = KeepaliveId(self.next_id);
        self.next_id += 1;
        while self.outstanding.front().is_some_and(|(_, sent)| now >= *sent + self.granted_ttl) {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((id, now));
        Some((lease, id))
    }

    /// Keepalive `id` was answered with `ttl` (zero: the lease is gone). Returns its send time
    /// with what it means.
    pub(super) fn answered(
        &mut self,
        id: KeepaliveId,
        ttl: Duration,
    ) -> (Renewal, Option<Instant>) {
        let index = self.outstanding.iter().position(|(sent, _)| *sent == id);
        let sent_at = index.and_then(|index| self.outstanding.remove(index)).map(|(_, at)| at);
        if ttl.is_zero() {
            // Gone is gone, however old the keepalive that says so.
            return (Renewal::Lost, sent_at);
        }
        let Some(sent_at) = sent_at else { return (Renewal::Unknown, None) };
        self.granted_ttl = ttl;
        // Answers may arrive out of order across streams: only a later send extends.
        self.renewed_at = self.renewed_at.max(Some(sent_at));
        (Renewal::Renewed, Some(sent_at))
    }

    /// The send time plus the TTL, less the margin: until then etcd cannot have expired the
    /// lease, with room to spare (see [`SERVING_MARGIN_DIVISOR`]).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.id?;
        let ttl = self.granted_ttl;
        Some(self.renewed_at? + ttl - ttl / SERVING_MARGIN_DIVISOR)
    }

    /// From when transactions wait for a renewal: etcd has answered no keepalive sent in the
    /// last quarter of a TTL, and renews only once it has applied every transaction committed
    /// before the renewal, so a transaction more would only push the renewals back (see
    /// `Ownership::flush`). `None`: no lease.
    pub(super) fn renewal_overdue_at(&self) -> Option<Instant> {
        self.id?;
        Some(self.renewed_at? + self.ttl / RENEWAL_OVERDUE_DIVISOR)
    }

    /// How long after the newest answered send time this node still tells peers "etcd answers
    /// me": half a TTL (the slowest answer a healthy-but-slow etcd is allowed, see
    /// `Reachability`) plus one keepalive interval (the gap between two sends).
    pub(super) fn etcd_ok_window(&self) -> Duration {
        self.ttl / 2 + self.keepalive_interval()
    }

    /// How long a failed request counts for nothing if etcd answers a later one meanwhile.
    pub(super) fn failure_grace(&self) -> Duration {
        self.keepalive_interval() * 2
    }

    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        self.id.and(self.next_keepalive_at)
    }
}

/// What this node may tell its peers about etcd, and the quarantine that follows saying
/// "unreachable". Lives inside `Ownership`.
///
/// "etcd answers me" (`etcd_ok`) holds while etcd answered a request sent within the last
/// `etcd_ok_window` and no request failed outright (connection refused or reset, timed out)
/// since the newest one it answered was sent, unless etcd answers a later request within a short
/// grace (two keepalive intervals: with several members, the next request goes to another). A
/// healthy but slow etcd — every answer within half a TTL — therefore never reads as
/// unreachable; a dead one reads so a grace after its first refused connection; a silent one (a
/// partition) after the window.
///
/// Saying "unreachable" lets peers serve past their own deadlines (the extension), and a peer
/// may be doing so while etcd, slow rather than gone, still applies a transaction this node
/// sent: a claim of one of that peer's clients, if the peer's lease has meanwhile expired. So a
/// node serves no client on an ownership etcd confirmed to it until
/// [`CLAIM_QUARANTINE`](super::CLAIM_QUARANTINE) has passed since it last said "unreachable":
/// by then every extension resting on its reports has run out. Requests may take any time to
/// reach etcd; nothing here assumes a bound on it.
#[derive(Debug)]
pub(super) struct Reachability {
    /// The newest send time of a request etcd answered with a result (a keepalive, a grant, a
    /// transaction; its errors are not counted: they prove it reachable, not working).
    evidence_at: Option<Instant>,
    /// When a request last failed without an answer from etcd (a transport error).
    failed_at: Option<Instant>,
    /// The last value published to peers was "unreachable" (true before anything was
    /// published: this node's previous run may have said so).
    saying_unreachable: bool,
    /// When the last stretch of "unreachable" ended (the first "ok" published after it).
    unreachable_ended_at: Option<Instant>,
    quarantine: Duration,
}

impl Reachability {
    pub(super) fn new(quarantine: Duration) -> Reachability {
        Reachability {
            evidence_at: None,
            failed_at: None,
            saying_unreachable: true,
            unreachable_ended_at: None,
            quarantine,
        }
    }

    /// etcd answered a request sent at `sent_at`.
    pub(super) fn answered(&mut self, sent_at: Instant) {
        self.evidence_at = self.evidence_at.max(Some(sent_at));
    }

    /// A request failed without an answer from etcd at `now`.
    pub(super) fn failed(&mut self, now: Instant) {
        self.failed_at = self.failed_at.max(Some(now));
    }

    /// `grace`: how long a failure may go without a later request answered before it counts
    /// (with several etcd members the next request goes to another, and is answered at once).
    pub(super) fn etcd_ok(&self, window: Duration, grace: Duration, now: Instant) -> bool {
        let Some(evidence) = self.evidence_at else { return false };
        let failing =
            self.failed_at.is_some_and(|failed| evidence <= failed && now >= failed + grace);
        now < evidence + window && !failing
    }

    /// When `etcd_ok` turns false by itself (no new evidence), if it is true now.
    pub(super) fn ok_until(
        &self,
        window: Duration,
        grace: Duration,
        now: Instant,
    ) -> Option<Instant> {
        if !self.etcd_ok(window, grace, now) {
            return None;
        }
        let evidence = self.evidence_at?;
        let silent = evidence + window;
        match self.failed_at {
            Some(failed) if evidence <= failed => Some(silent.min(failed + grace)),
            _ => Some(silent),
        }
    }

    /// The value published to peers now (the driver publishes after every step, the simulation
    /// at every heartbeat): records it for the quarantine.
    pub(super) fn publish(&mut self, ok: bool, now: Instant) {
        if !ok {
            self.saying_unreachable = true;
        } else if self.saying_unreachable {
            self.saying_unreachable = false;
            self.unreachable_ended_at = Some(now);
        }
    }

    /// Whether an ownership etcd confirms now must wait before this node serves on it.
    pub(super) fn quarantined(&self, now: Instant) -> bool {
        self.saying_unreachable || self.quarantine_ends().is_some_and(|end| now < end)
    }

    /// When the current quarantine ends, if "ok" is being said.
    pub(super) fn quarantine_ends(&self) -> Option<Instant> {
        if self.saying_unreachable {
            return None;
        }
        self.unreachable_ended_at.map(|at| at + self.quarantine)
    }
}

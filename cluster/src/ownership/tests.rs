//! Unit tests of the ownership core: batching, compares, takeover, fencing, the lease and its
//! keepalives, reachability reports and the quarantine, flow control and admission.

use std::net::{Ipv4Addr, SocketAddr};

use super::*;

const TTL: Duration = Duration::from_secs(6);
const LEASE: LeaseId = LeaseId(0x10);
/// The keepalive interval at `TTL`.
const INTERVAL: Duration = Duration::from_millis(375);

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

/// Each operation's own compare failed, the keys being at `current`.
fn compares_failed(current: Vec<Option<(Owner, Revision)>>) -> TxnAnswer {
    let results = current.into_iter().map(|current| OpResult::CompareFailed { current }).collect();
    TxnAnswer::Applied { revision: Revision(0), results }
}

fn answer(ticket: u64, outcome: ClaimOutcome) -> Action {
    Action::Answer { ticket: Ticket(ticket), outcome }
}

const SERVE_NEW: Action = Action::Serve { new_lease: true };
const SERVE_AGAIN: Action = Action::Serve { new_lease: false };

/// Node "a" holding lease 0x10 from `start`, with peers "b" (lease 0x20) and "c" (0x30). It has
/// said "etcd answers me" once at `start`, so with the default zero quarantine of the harness
/// nothing is held back.
struct Harness {
    own: Ownership,
    start: Instant,
    /// Keepalives asked for and not yet answered or dropped by the test, with their send time.
    keepalives: Vec<(KeepaliveId, Instant)>,
    /// The operations of each transaction sent.
    sizes: HashMap<TxnId, usize>,
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
        own.lease_granted(LEASE, TTL, start, start);
        own.members(&[member("a", 0x10), member("b", 0x20), member("c", 0x30)], start);
        assert!(own.report_etcd_ok(start));
        let mut harness = Harness { own, start, keepalives: Vec::new(), sizes: HashMap::new() };
        assert_eq!(harness.actions(), [SERVE_NEW]);
        harness
    }

    fn at(&self, elapsed: Duration) -> Instant {
        self.start + elapsed
    }

    /// Every action since the last drain but keepalives, which are kept for `renew`.
    fn actions(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(action) = self.own.poll_action() {
            match action {
                Action::KeepAlive { lease, id } => {
                    assert_eq!(lease, LEASE);
                    let outstanding = &self.own.lease.outstanding;
                    let sent = outstanding.iter().find(|(sent, _)| *sent == id).map(|(_, at)| *at);
                    self.keepalives.push((id, sent.expect("an outstanding keepalive")));
                }
                other => actions.push(other),
            }
        }
        actions
    }

    /// Answers the newest keepalive sent at or before `sent_by` at `answered` (with the TTL),
    /// so that the lease counts as renewed from its send time.
    fn renew(&mut self, sent_by: Duration, answered: Duration) -> Instant {
        self.own.tick(self.at(sent_by));
        self.actions();
        let &(id, sent) = self
            .keepalives
            .iter()
            .rev()
            .find(|(_, sent)| *sent <= self.at(sent_by))
            .expect("a keepalive was sent by then");
        self.own.keepalive_answered(LEASE, id, TTL, self.at(answered));
        sent
    }

    /// Ticks at each wake-up, answering every keepalive at once, until a transaction goes:
    /// its id and when (panics after a thousand wake-ups).
    fn next_txn(&mut self) -> (TxnId, Duration) {
        for _ in 0..1000 {
            let at = self.own.next_wakeup().expect("a wake-up is due") - self.start;
            self.own.tick(self.at(at));
            let (mut txns, _) = self.txns();
            for (id, _) in std::mem::take(&mut self.keepalives) {
                self.own.keepalive_answered(LEASE, id, TTL, self.at(at));
            }
            if let Some((id, _)) = txns.pop() {
                return (id, at);
            }
        }
        panic!("no transaction in a thousand wake-ups");
    }

    /// The one transaction sent since the last drain, with every other action.
    fn txn(&mut self) -> (TxnId, Vec<TxnOp>, Vec<Action>) {
        let mut txns = self.txns();
        assert_eq!(txns.0.len(), 1, "expected one transaction, others: {:?}", txns.1);
        let (id, ops) = txns.0.remove(0);
        (id, ops, txns.1)
    }

    /// The transactions sent since the last drain, and every other action.
    fn txns(&mut self) -> (Vec<(TxnId, Vec<TxnOp>)>, Vec<Action>) {
        let mut txns = Vec::new();
        let mut others = Vec::new();
        for action in self.actions() {
            match action {
                Action::Txn { id, lease, ops } => {
                    assert_eq!(lease, LEASE);
                    self.sizes.insert(id, ops.len());
                    txns.push((id, ops));
                }
                other => others.push(other),
            }
        }
        (txns, others)
    }

    /// etcd writes every operation of transaction `id` at `revision`, answering at `at`.
    fn write(&mut self, id: TxnId, revision: i64, at: Instant) {
        let results = vec![OpResult::Written; self.sizes[&id]];
        let answer = TxnAnswer::Applied { revision: Revision(revision), results };
        self.own.txn_answered(id, answer, at);
    }

    fn claim(&mut self, ticket: u64, client: &str, elapsed: Duration) {
        self.own.claim(Ticket(ticket), client, Priority::Connect, self.at(elapsed));
    }

    /// Claims `client` at `elapsed` and commits its put at revision `revision`.
    fn own_client(&mut self, ticket: u64, client: &str, elapsed: Duration, revision: i64) {
        self.claim(ticket, client, elapsed);
        self.own.tick(self.at(elapsed + ms(2)));
        let (id, ops, _) = self.txn();
        assert_eq!(ops, [put(client, Compare::Absent)]);
        self.write(id, revision, self.at(elapsed + ms(3)));
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
    own.lease_granted(LEASE, TTL, now, now);
    assert_eq!(own.poll_action(), Some(SERVE_NEW));
    assert_eq!(own.poll_action(), None);
    assert!(own.serving_until().is_some());
}

#[test]
fn already_owned_writes_nothing() {
    let mut h = Harness::new();
    h.own_client(1, "c1", ms(0), 7);
    h.claim(2, "c1", ms(10));
    h.own.tick(h.at(ms(100)));
    assert_eq!(h.actions(), [answer(2, ClaimOutcome::AlreadyOwned)]);
}

#[test]
fn batches_hold_at_most_127_ops_and_never_a_key_twice() {
    let mut h = Harness::new();
    for i in 0..300 {
        h.claim(i, &format!("c{i}"), ms(0));
    }
    // A second claim of a key already queued waits behind the first one.
    h.claim(1000, "c0", ms(0));
    // The window starts at one transaction: the first full batch goes at once, the next waits
    // for its answer.
    let (id, ops, _) = h.txn();
    assert_eq!(ops.len(), TXN_OPS_MAX, "a full batch goes at once");
    h.own.tick(h.at(ms(5)));
    assert_eq!(h.txns().0.len(), 0, "the window is one transaction");
    h.write(id, 2, h.at(ms(6)));
    let (txns, _) = h.txns();
    let sizes: Vec<usize> = txns.iter().map(|(_, ops)| ops.len()).collect();
    // A fast answer grew the window to two: both remaining batches go (the second is not full
    // but due).
    assert_eq!(sizes, [127, 46]);
    assert!(txns.iter().flat_map(|(_, ops)| ops).all(|op| op.client() != "c0"));
}

#[test]
fn batching_off_sends_each_claim_alone() {
    let mut h = Harness::with(|config| {
        config.batch_ops_max = 1;
        config.batch_delay = Duration::ZERO;
    });
    h.claim(1, "c1", ms(0));
    h.claim(2, "c2", ms(0));
    let (txns, _) = h.txns();
    assert_eq!(txns.len(), 1, "one in flight");
    let (id, ops) = &txns[0];
    assert_eq!(ops.len(), 1);
    h.write(*id, 3, h.at(ms(1)));
    let (txns, _) = h.txns();
    assert_eq!(txns.len(), 1);
    assert_eq!(txns[0].1, [put("c2", Compare::Absent)]);
}

#[test]
fn each_operation_stands_or_falls_on_its_own_compare() {
    let mut h = Harness::new();
    let clients = ["free", "mine", "peer", "old-run", "stranger"];
    for (i, client) in clients.iter().enumerate() {
        h.claim(i as u64, client, ms(0));
    }
    h.own.tick(h.at(ms(2)));
    let (id, ops, _) = h.txn();
    assert_eq!(ops.len(), 5);
    let results = vec![
        OpResult::Written, // free: written though others failed
        OpResult::CompareFailed { current: Some((owner("a", 0x10), Revision(11))) }, // ours, not known as ours
        OpResult::CompareFailed { current: Some((owner("b", 0x20), Revision(12))) }, // a live peer
        OpResult::CompareFailed { current: Some((owner("a", 0x05), Revision(13))) }, // this node's previous run
        OpResult::CompareFailed { current: Some((owner("d", 0x40), Revision(14))) }, // a lease no member has (yet)
    ];
    h.own.txn_answered(id, TxnAnswer::Applied { revision: Revision(15), results }, h.at(ms(3)));
    let held_by = ClaimOutcome::HeldBy { owner: NodeId::new("b"), revision: Revision(12) };
    assert_eq!(h.actions(), [answer(0, ClaimOutcome::Claimed), answer(2, held_by)]);
    assert_eq!(h.own.revision("free"), Some(Revision(15)));
    h.own.tick(h.at(ms(5)));
    let (id, ops, _) = h.txn();
    assert_eq!(
        ops,
        [
            put("mine", Compare::ModRevision(Revision(11))),
            put("old-run", Compare::ModRevision(Revision(13))),
        ]
    );
    h.write(id, 20, h.at(ms(6)));
    let claimed = |t| answer(t, ClaimOutcome::Claimed);
    assert_eq!(h.actions(), [claimed(1), claimed(3)]);

    // The stranger turns out to be a member whose registration the watch had not shown.
    let members = [member("a", 0x10), member("b", 0x20), member("d", 0x40)];
    h.own.members(&members, h.at(ms(100)));
    let held_by = ClaimOutcome::HeldBy { owner: NodeId::new("d"), revision: Revision(14) };
    assert_eq!(h.actions(), [answer(4, held_by)]);
}

#[test]
fn a_claim_on_a_dead_lease_retries_then_times_out() {
    let mut h = Harness::new();
    h.claim(1, "c1", ms(0));
    h.own.tick(h.at(ms(2)));
    let (id, _, _) = h.txn();
    let current = vec![Some((owner("d", 0x40), Revision(9)))];
    h.own.txn_answered(id, compares_failed(current), h.at(ms(3)));
    assert!(h.actions().is_empty());
    // Re-queued, it goes out with the next batch.
    h.own.tick(h.at(ms(3) + HELD_RETRY_INTERVAL));
    assert_eq!(h.actions(), []);
    h.own.tick(h.at(ms(5) + HELD_RETRY_INTERVAL));
    let (id, ops, _) = h.txn();
    assert_eq!(ops, [put("c1", Compare::Absent)]);
    // Its transaction failed (etcd did not answer): it is retried until its deadline, not
    // refused for lack of time (etcd may answer the retry at once).
    h.own.txn_answered(id, TxnAnswer::Failed, h.at(ms(300)));
    h.renew(ms(2000), ms(2001));
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
    h.own.txn_answered(id, compares_failed(current), h.at(ms(3)));
    assert_eq!(h.actions(), [answer(1, ClaimOutcome::Unavailable)]);
}

#[test]
fn a_handed_over_key_is_won_back_with_a_write() {
    let mut h = Harness::new();
    h.own_client(1, "c1", ms(0), 7);
    h.own.handed_over("c1");
    assert!(!h.own.owns("c1"));
    h.claim(2, "c1", ms(10));
    h.own.tick(h.at(ms(12)));
    let (id, ops, _) = h.txn();
    assert_eq!(ops, [put("c1", Compare::Absent)]);
    // The peer has not claimed yet: the key still names us at revision 7.
    let current = vec![Some((owner("a", 0x10), Revision(7)))];
    h.own.txn_answered(id, compares_failed(current), h.at(ms(13)));
    h.own.tick(h.at(ms(15)));
    let (_, ops, _) = h.txn();
    assert_eq!(ops, [put("c1", Compare::ModRevision(Revision(7)))]);
}

#[test]
fn failures_back_off_and_claims_time_out() {
    let mut h = Harness::new();
    h.claim(1, "c1", ms(0));
    let mut now = ms(2);
    let mut sent = Vec::new();
    loop {
        h.own.tick(h.at(now));
        // Keep the lease renewed: the claim, not the lease, is under test.
        while let Some((id, _)) = h.keepalives.pop() {
            h.own.keepalive_answered(LEASE, id, TTL, h.at(now));
        }
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
    // Each retry waits its backoff, and each failure halves the window, down to one
    // transaction per 16 round trips (of 50 ms while etcd has answered none): the retries
    // spread out, up to the larger of the two (retries are paced: they come when etcd needs the
    // load least).
    let gaps: Vec<Duration> = sent.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(gaps.len() > 3, "{gaps:?}");
    assert!(gaps.windows(2).all(|pair| pair[1] >= pair[0]), "{gaps:?}");
    let paced_max = LATENCY_TARGET_MIN.div_f64(WINDOW_MIN);
    assert!(gaps.iter().all(|gap| *gap <= RETRY_BACKOFF_MAX.max(paced_max) + ms(2)), "{gaps:?}");
    assert_eq!(now, Duration::from_secs(5));
}

#[test]
fn a_release_waits_for_the_claim_in_flight() {
    let mut h = Harness::new();
    h.claim(1, "c1", ms(0));
    h.own.tick(h.at(ms(2)));
    let (id, _, _) = h.txn();
    h.own.release("c1", h.at(ms(3)));
    h.own.tick(h.at(ms(10)));
    assert!(h.actions().is_empty(), "nothing else touches c1 while its put is in flight");
    h.write(id, 8, h.at(ms(11)));
    h.own.tick(h.at(ms(13)));
    let (_, ops, others) = h.txn();
    assert_eq!(others, [answer(1, ClaimOutcome::Claimed)]);
    let delete =
        TxnOp::Delete { client: "c1".to_owned(), compare: Compare::ModRevision(Revision(8)) };
    assert_eq!(ops, [delete]);
    assert!(!h.own.owns("c1"));
}

// --- the lease and its keepalives ----------------------------------------------------------

#[test]
fn keepalives_go_out_every_interval_whatever_is_outstanding() {
    let mut h = Harness::new();
    let mut now = Duration::ZERO;
    while now < Duration::from_secs(3) {
        now = h.own.next_wakeup().expect("a keepalive is due") - h.start;
        h.own.tick(h.at(now));
        h.actions();
    }
    // None answered, yet one every interval: a slow answer holds back no later keepalive.
    let sent: Vec<Duration> = h.keepalives.iter().map(|(_, at)| *at - h.start).collect();
    assert_eq!(sent.len(), 8);
    assert!(sent.windows(2).all(|pair| pair[1] - pair[0] == INTERVAL), "{sent:?}");
}

#[test]
fn a_late_answer_renews_from_its_send_time() {
    let mut h = Harness::new();
    // Sent at 1.5 s, answered 2.9 s later (slow etcd, within half the TTL).
    let sent = h.renew(ms(1500), ms(4400));
    assert_eq!(sent, h.at(ms(1500)));
    let deadline = sent + TTL - TTL / 4;
    assert_eq!(h.own.serving_until(), Some(deadline));
    // An answer to an older keepalive, arriving later still, does not move it back.
    let (older, _) = h.keepalives[0];
    h.own.keepalive_answered(LEASE, older, TTL, h.at(ms(4500)));
    assert_eq!(h.own.serving_until(), Some(deadline));
    assert!(h.actions().is_empty(), "no fence: {:?}", h.own.serving_until());
    // The TTL is the one etcd answers with.
    let (id, sent) = *h.keepalives.last().expect("sent");
    h.own.keepalive_answered(LEASE, id, Duration::from_secs(10), h.at(ms(4600)));
    let ten = Duration::from_secs(10);
    assert_eq!(h.own.serving_until(), Some(sent + ten - ten / 4));
}

#[test]
fn while_etcd_answers_within_half_a_ttl_the_node_never_fences() {
    // Every keepalive answered exactly half a TTL after it was sent, for a minute.
    let mut h = Harness::new();
    let mut pending: VecDeque<(KeepaliveId, Instant)> = VecDeque::new();
    let mut now = h.start;
    while now < h.at(Duration::from_secs(60)) {
        let next_send = h.own.next_wakeup().expect("wakes");
        let next_answer = pending.front().map(|(_, sent)| *sent + TTL / 2);
        now = next_answer.map_or(next_send, |answer| answer.min(next_send));
        if next_answer == Some(now) {
            let (id, _) = pending.pop_front().expect("pending");
            h.own.keepalive_answered(LEASE, id, TTL, now);
        } else {
            h.own.tick(now);
        }
        assert!(h.actions().is_empty(), "fenced at {:?}", now - h.start);
        pending.extend(h.keepalives.drain(..));
        assert!(h.own.etcd_ok(now), "said unreachable at {:?}", now - h.start);
    }
}

#[test]
fn fences_at_the_deadline_and_resumes_under_the_same_lease() {
    let mut h = Harness::new();
    h.own_client(1, "c1", ms(0), 7);
    let sent = h.renew(ms(1000), ms(1001));
    let deadline = sent + TTL - TTL / 4;
    assert_eq!(h.own.serving_until(), Some(deadline));
    // A claim sent before renewals are overdue (no transaction goes after) is in flight when
    // the node fences.
    let before_overdue = sent - h.start + TTL / 4 - ms(5);
    h.claim(2, "c2", before_overdue);
    h.own.tick(h.at(before_overdue + ms(3)));
    let (_, _, _) = h.txn();
    h.own.tick(deadline - Duration::from_micros(1));
    assert!(h.actions().is_empty());
    h.own.tick(deadline);
    assert_eq!(h.actions(), [Action::Fence, answer(2, ClaimOutcome::Fenced)]);
    assert_eq!(h.own.serving_until(), None);
    assert!(!h.own.owns("c1"));
    h.claim(3, "c1", deadline - h.start + ms(1));
    assert_eq!(h.actions(), [answer(3, ClaimOutcome::Fenced)]);
    // No new lease is asked for: etcd has not said this one is gone. A keepalive sent after the
    // fence and answered (late) brings the node back under it, its ownerships intact.
    let after = deadline - h.start + ms(400);
    h.renew(after, after + ms(2500));
    assert_eq!(h.actions(), [SERVE_AGAIN]);
    assert!(h.own.owns("c1"), "the key under the same lease is still ours");
    h.claim(4, "c1", after + ms(2600));
    assert_eq!(h.actions(), [answer(4, ClaimOutcome::AlreadyOwned)]);
    assert_eq!(h.own.stats().fences, 1);
    assert_eq!(h.own.stats().resumes, 1);
}

#[test]
fn a_lost_lease_fences_and_asks_for_a_new_one() {
    let mut h = Harness::new();
    h.own_client(1, "c1", ms(0), 7);
    h.own.tick(h.at(INTERVAL));
    h.actions();
    let (id, _) = h.keepalives[0];
    h.own.keepalive_answered(LEASE, id, Duration::ZERO, h.at(ms(400)));
    assert_eq!(h.actions(), [Action::Fence, Action::GrantLease]);
    assert!(!h.own.owns("c1"));
    h.own.lease_granted(LeaseId(0x11), TTL, h.at(ms(500)), h.at(ms(501)));
    assert_eq!(h.actions(), [SERVE_NEW]);
    assert!(!h.own.owns("c1"), "ownerships died with the old lease");
}

#[test]
fn a_grant_answered_too_late_to_serve_waits_for_a_keepalive() {
    let mut own = Ownership::new(OwnershipConfig::new(NodeId::new("a")));
    let start = Instant::now();
    assert_eq!(own.poll_action(), Some(Action::GrantLease));
    own.lease_granted(LEASE, TTL, start, start + TTL);
    assert_eq!(own.poll_action(), Some(Action::KeepAlive { lease: LEASE, id: KeepaliveId(0) }));
    assert_eq!(own.poll_action(), None, "not serving on a grant older than its deadline");
    own.keepalive_answered(LEASE, KeepaliveId(0), TTL, start + TTL + ms(1));
    assert_eq!(own.poll_action(), Some(SERVE_NEW));
}

#[test]
fn peer_reports_extend_serving_until_a_peer_reaches_etcd() {
    let mut h = Harness::new();
    let deadline = h.at(TTL - TTL / 4);
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
    assert_eq!(h.actions(), [Action::Fence]);
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
    h.actions();
    // etcd is back: "c" renewed first and says so; this node's own keepalive, sent just now,
    // is answered 30 ms later, within the extension.
    h.own.peer_report(&NodeId::new("c"), true, now);
    let sent = h.renew(now - h.start, now - h.start + ms(30));
    h.own.tick(now + PEER_REPORT_FRESH + ms(10));
    assert!(h.actions().is_empty(), "fenced though its lease was renewed");
    assert_eq!(h.own.serving_until(), Some(sent + TTL - TTL / 4));
}

#[test]
fn an_extension_needs_a_fresh_report_from_every_peer() {
    // "c" is silent.
    let mut h = Harness::new();
    let deadline = h.at(TTL - TTL / 4);
    h.own.peer_report(&NodeId::new("b"), false, deadline - ms(100));
    h.own.tick(deadline);
    assert_eq!(h.actions(), [Action::Fence]);

    // Both reported, but "c" before our last renewal started counting.
    let mut h = Harness::new();
    h.own.peer_report(&NodeId::new("c"), false, h.at(ms(100)));
    let sent = h.renew(ms(400), ms(401));
    let deadline = sent + TTL - TTL / 4;
    h.own.peer_report(&NodeId::new("b"), false, deadline - ms(100));
    h.own.tick(deadline);
    assert_eq!(h.actions(), [Action::Fence]);

    // Stale reports: a process paused past its extension fences on resuming, even if the
    // first thing it reads is a report.
    let mut h = Harness::new();
    let deadline = h.at(TTL - TTL / 4);
    h.own.peer_report(&NodeId::new("b"), false, deadline - ms(100));
    h.own.peer_report(&NodeId::new("c"), false, deadline - ms(100));
    assert_eq!(h.own.serving_until(), Some(deadline - ms(100) + PEER_REPORT_FRESH));
    let resumed = deadline + Duration::from_secs(5);
    h.own.peer_report(&NodeId::new("b"), false, resumed);
    assert_eq!(h.actions(), [Action::Fence]);

    // No peers at all.
    let mut h = Harness::new();
    h.own.members(&[member("a", 0x10)], h.at(ms(10)));
    h.own.tick(h.at(TTL - TTL / 4));
    assert_eq!(h.actions(), [Action::Fence]);
}

// --- what this node tells its peers, and the quarantine ------------------------------------

#[test]
fn etcd_answers_me_while_a_request_sent_lately_was_answered() {
    let mut h = Harness::new();
    let window = TTL / 2 + INTERVAL;
    assert!(h.own.etcd_ok(h.at(window - ms(1))), "the grant's send time counts");
    assert!(!h.own.etcd_ok(h.at(window)), "silent past half a TTL plus an interval");
    // A slow answer renews the evidence from its send time.
    let sent = h.renew(ms(2000), ms(4900));
    assert!(h.own.etcd_ok(sent + window - ms(1)));
    assert!(!h.own.etcd_ok(sent + window));
    // A refused connection says "unreachable" once no later request was answered within the
    // grace (two keepalive intervals: another etcd member would have answered by then)...
    h.actions();
    let (id, sent) = *h.keepalives.last().expect("sent at 4.9 s");
    h.own.keepalive_answered(LEASE, id, TTL, sent + ms(50));
    h.own.tick(sent + INTERVAL);
    h.actions();
    let failed = sent + INTERVAL + ms(25);
    h.own.etcd_unreachable(failed);
    assert!(h.own.etcd_ok(failed + INTERVAL * 2 - ms(1)));
    assert!(!h.own.etcd_ok(failed + INTERVAL * 2));
    // ...until etcd answers a request sent after it (not one sent before).
    let (id, before) = *h.keepalives.last().expect("sent");
    assert!(before < failed);
    h.own.keepalive_answered(LEASE, id, TTL, failed + ms(100));
    assert!(!h.own.etcd_ok(failed + INTERVAL * 2), "an answer to a request older than the failure");
    h.renew(failed + INTERVAL * 2 - h.start, failed + INTERVAL * 2 + ms(100) - h.start);
    assert!(h.own.etcd_ok(failed + INTERVAL * 2 + ms(101)));
}

#[test]
fn claims_confirmed_after_saying_unreachable_wait_out_the_quarantine() {
    let mut h = Harness::with(|config| config.claim_quarantine = CLAIM_QUARANTINE);
    // Past the quarantine of the start (the previous run may have said "unreachable").
    h.renew(CLAIM_QUARANTINE - ms(5), CLAIM_QUARANTINE - ms(4));
    h.own_client(1, "before", CLAIM_QUARANTINE, 5);
    // A request fails outright (a refused connection), just after a renewal: this node tells
    // its peers etcd is unreachable...
    let failed = CLAIM_QUARANTINE + ms(100);
    h.renew(failed - ms(10), failed - ms(5));
    h.own.etcd_unreachable(h.at(failed));
    let silent = failed + INTERVAL * 2;
    assert!(!h.own.report_etcd_ok(h.at(silent)));
    // ...a claim sent meanwhile is committed (a slow etcd), and the node says "ok" again.
    h.claim(2, "during", silent + ms(10));
    h.own.tick(h.at(silent + ms(12)));
    let (id, _, _) = h.txn();
    let back = silent + ms(500);
    h.renew(back - ms(50), back);
    assert!(h.own.report_etcd_ok(h.at(back)));
    h.write(id, 9, h.at(back + ms(1)));
    assert!(h.actions().is_empty(), "served during the quarantine");
    assert_eq!(h.own.stats().answers_held, 1);
    // A client owned before is answered at once; the one confirmed now waits too.
    h.claim(3, "before", back + ms(2));
    h.claim(4, "during", back + ms(3));
    assert_eq!(h.actions(), [answer(3, ClaimOutcome::AlreadyOwned)]);
    h.own.tick(h.at(back) + CLAIM_QUARANTINE - ms(1));
    assert!(h.actions().is_empty());
    assert_eq!(h.own.next_wakeup(), Some(h.at(back) + CLAIM_QUARANTINE));
    h.own.tick(h.at(back) + CLAIM_QUARANTINE);
    assert_eq!(
        h.actions(),
        [answer(2, ClaimOutcome::Claimed), answer(4, ClaimOutcome::AlreadyOwned)]
    );
}

#[test]
fn a_held_answer_for_a_client_handed_over_meanwhile_is_unavailable() {
    let mut h = Harness::with(|config| config.claim_quarantine = CLAIM_QUARANTINE);
    h.own.etcd_unreachable(h.at(ms(100)));
    assert!(!h.own.report_etcd_ok(h.at(TTL / 2 + INTERVAL)));
    let at = TTL / 2 + INTERVAL + ms(10);
    h.renew(at, at);
    assert!(h.own.report_etcd_ok(h.at(at)));
    h.claim(1, "c1", at);
    h.own.tick(h.at(at + ms(2)));
    let (id, _, _) = h.txn();
    h.write(id, 4, h.at(at + ms(3)));
    h.own.handed_over("c1");
    h.own.tick(h.at(at) + CLAIM_QUARANTINE);
    assert_eq!(h.actions(), [answer(1, ClaimOutcome::Unavailable)]);
}

// --- flow control and admission -------------------------------------------------------------

#[test]
fn the_window_grows_while_etcd_is_fast_and_halves_when_it_is_slow() {
    let mut h = Harness::with(|config| config.batch_ops_max = 1);
    let mut now = ms(0);
    let mut next = 0;
    // Fast answers (1 ms): the window grows to its bound.
    for _ in 0..400 {
        h.claim(next, &format!("f{next}"), now);
        next += 1;
        now += ms(2);
        h.own.tick(h.at(now));
        for (id, _) in h.txns().0 {
            h.write(id, 1, h.at(now + ms(1)));
        }
    }
    assert_eq!(h.own.stats().window, TXNS_IN_FLIGHT_MAX as f64);
    // One answer far over the target halves it; another from the same round does not again.
    h.claim(next, "s1", now);
    h.claim(next + 1, "s2", now);
    h.own.tick(h.at(now + ms(2)));
    let (txns, _) = h.txns();
    assert_eq!(txns.len(), 2);
    for (id, _) in txns {
        h.write(id, 2, h.at(now + ms(500)));
    }
    assert_eq!(h.own.stats().window, TXNS_IN_FLIGHT_MAX as f64 / 2.0);
    assert!(h.own.stats().latency_target >= LATENCY_TARGET_MIN);
}

#[test]
fn a_far_but_steady_etcd_is_not_taken_for_a_congested_one() {
    let mut h = Harness::new();
    // Every answer takes 400 ms (a WAN round trip, or a proxy): lone connects one after the
    // other are each sent at once and claimed; the window stays at one transaction at least.
    let mut now = ms(0);
    for i in 0..40 {
        h.claim(i, &format!("far{i}"), now);
        let (id, sent) = h.next_txn();
        assert!(sent <= now + ms(2), "claim {i} waited for its turn until {sent:?}");
        now = sent + ms(400);
        h.write(id, 2 + i as i64, h.at(now));
        assert!(h.actions().contains(&answer(i, ClaimOutcome::Claimed)), "claim {i}");
        assert!(h.own.stats().window >= 1.0);
    }
    // Once the fastest seen lately is the far network's, its answers are on target.
    let target = h.own.stats().latency_target;
    assert!(target >= ms(400) + LATENCY_TARGET_MIN && target <= ms(400) + LATENCY_TARGET_MAX);
}

#[test]
fn a_window_below_one_spaces_transactions_but_not_takeovers() {
    let mut h = Harness::new();
    // Answers far over the target shrink the window to one transaction, not below: etcd may
    // be far rather than loaded.
    let (mut now, mut sent) = (ms(0), ms(0));
    for i in 0..2 {
        h.claim(i, &format!("slow{i}"), now);
        let (id, at) = h.next_txn();
        sent = at;
        now = sent + ms(500);
        h.write(id, 2 + i as i64, h.at(now));
    }
    assert!(h.own.stats().window >= 1.0);
    // etcd says it is behind, until the window is about a third: a transaction may go every
    // three round trips or so (of the mean latency, 500 ms).
    while h.own.stats().window >= 0.35 {
        h.own.etcd_congested(h.at(now));
    }
    let pace = ms(500).div_f64(h.own.stats().window);
    h.actions();
    // A connect's claim waits for its turn, that long after the last send...
    h.claim(10, "paced", now);
    let (id, turn) = h.next_txn();
    assert!(
        turn + ms(10) >= sent + pace && turn <= sent + pace + ms(10),
        "{turn:?} after {sent:?}"
    );
    h.write(id, 4, h.at(turn + ms(1)));
    h.actions();
    // ...but a takeover does not wait: its connect was paced in its first round already.
    h.claim(12, "paced2", turn + ms(1));
    h.own.claim_after_release(Ticket(11), "moved", Revision(3), h.at(turn + ms(1)));
    h.own.tick(h.at(turn + ms(5)));
    let (_, ops, _) = h.txn();
    let clients: Vec<&str> = ops.iter().map(TxnOp::client).collect();
    assert_eq!(clients, ["moved", "paced2"]);
}

#[test]
fn transactions_wait_while_a_renewal_is_overdue() {
    let mut h = Harness::new();
    // No keepalive answered for a quarter of a TTL: a connect's claim waits...
    let overdue = TTL / 4;
    h.own.tick(h.at(overdue));
    h.actions();
    h.claim(1, "c1", overdue + ms(1));
    h.own.tick(h.at(overdue + ms(10)));
    assert!(h.txns().0.is_empty());
    // ...for an answer, not for a time (a wake-up due now would spin)...
    let wake = h.own.next_wakeup().expect("keepalives go on");
    assert!(wake > h.at(overdue + ms(10)), "{:?}", wake - h.start);
    // ...and goes as soon as a keepalive is answered.
    h.renew(overdue + ms(400), overdue + ms(420));
    let (txns, _) = h.txns();
    assert_eq!(txns.len(), 1);
}

#[test]
fn connects_beyond_what_etcd_takes_now_are_refused_at_once() {
    let mut h = Harness::new();
    // etcd answers in 1 s (a steady latency: the window grows to two transactions): two
    // rounds of two full batches fit in the claim timeout less the send margin, more do not.
    h.claim(0, "c0", ms(0));
    h.own.tick(h.at(ms(2)));
    let (id, _, _) = h.txn();
    h.write(id, 2, h.at(ms(1002)));
    h.actions();
    for i in 1..=1000 {
        h.claim(i, &format!("c{i}"), ms(1001));
    }
    let actions = h.actions();
    let busy = actions
        .iter()
        .filter(|a| matches!(a, Action::Answer { outcome: ClaimOutcome::Busy, .. }))
        .count();
    assert!(busy > 0 && busy < 1000, "{busy} refused");
    assert_eq!(h.own.stats().claims_busy as usize, busy);
    // Background claims are never refused for load.
    h.own.claim(Ticket(1000), "stored", Priority::Background, h.at(ms(1002)));
    assert!(h.actions().iter().all(|a| !matches!(a, Action::Answer { .. })));
}

#[test]
fn claims_that_cannot_be_answered_in_time_are_shed_as_busy() {
    let mut h = Harness::new();
    h.claim(0, "c0", ms(0));
    h.own.tick(h.at(ms(0)) + OwnershipConfig::new(NodeId::new("a")).batch_delay);
    let (_stuck, _, _) = h.txn();
    // etcd does not answer the first transaction; a claim queued behind it is shed once less
    // than half a TTL (what a slow etcd may take) is left before its deadline.
    h.claim(1, "c1", ms(1));
    let mut now = ms(2);
    let shed_at = loop {
        h.own.tick(h.at(now));
        if h.actions().contains(&answer(1, ClaimOutcome::Busy)) {
            break now;
        }
        now += ms(100);
        assert!(now < Duration::from_secs(5), "never shed");
    };
    let deadline = ms(1) + Duration::from_secs(5);
    assert!(shed_at >= deadline - TTL / 2 && shed_at < deadline - TTL / 2 + ms(100), "{shed_at:?}");
    assert_eq!(h.own.stats().claims_shed, 1);
}

#[test]
fn connects_fill_a_transaction_before_background_claims() {
    let mut h = Harness::new();
    h.claim(0, "first", ms(0));
    h.own.tick(h.at(ms(2)));
    let (id, _, _) = h.txn();
    for i in 0..100 {
        h.own.claim(Ticket(100 + i), &format!("stored{i}"), Priority::Background, h.at(ms(1)));
    }
    for i in 0..50 {
        h.claim(200 + i, &format!("live{i}"), ms(2));
    }
    h.write(id, 3, h.at(ms(3)));
    let (txns, _) = h.txns();
    let ops: Vec<&str> = txns[0].1.iter().map(TxnOp::client).collect();
    assert_eq!(ops.len(), TXN_OPS_MAX);
    assert!(ops[..50].iter().all(|client| client.starts_with("live")), "{ops:?}");
    assert!(ops[50..].iter().all(|client| client.starts_with("stored")));
}

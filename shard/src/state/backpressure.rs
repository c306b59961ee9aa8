//! Backpressure from subscribers to the publishers that feed them, within a shard.
//!
//! When a delivery leaves a subscriber's connection over its high-water mark (output buffer
//! full, or session queue half full), the connection whose PUBLISH caused it is paused: the
//! engine stops reading it until the subscriber drains below its low-water mark. Publishers are
//! slowed to what their subscribers take instead of the broker dropping what it cannot deliver.
//!
//! A subscriber that makes no progress must not stop everyone who publishes to it: once its
//! socket has taken nothing for [`STALL_QUIET`] (the engine reports every write that moved
//! bytes, whole or partial), or it has been congested for [`PAUSE_MAX`] however it drains, it
//! is *stalled*, releases the publishers it holds and pauses nobody until it drains; what does
//! not fit its limits meanwhile is dropped and counted, as a slow consumer's messages are. A
//! subscriber that stopped reading holds its publishers for about a tenth of a second, not for
//! `PAUSE_MAX`.
//!
//! A publish forwarded to another shard names its publisher: when it congests a subscriber
//! there, that shard sends [`ShardMsg::Pause`](crate::ShardMsg::Pause) to the publisher's shard,
//! and [`ShardMsg::Resume`](crate::ShardMsg::Resume) when it drains or stalls; a connection is
//! read again when neither its own shard nor any other holds it. Wills and retained messages
//! have no publishing connection and are not paced.
//!
//! A publish forwarded to another *node* names its publisher too, and the peer's shard answers
//! with [`Forward::Pace`](crate::Forward::Pace) frames on the node link. A pause from a peer is
//! held at most [`PEER_HOLD_MAX`] after it arrived: its resume may be lost with the link, and
//! the peer stalls its subscriber after [`PAUSE_MAX`] anyway. The publishes already on the link
//! when the pause arrives are not kept past the subscriber's limits (see `Admission::Paced`):
//! what a peer's publisher sends cannot grow this node's memory beyond them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ConnId;
use crate::ids::ShardId;

/// The longest a congested subscriber holds its publishers before it counts as stalled.
pub const PAUSE_MAX: Duration = Duration::from_millis(500);
/// How long a congested subscriber's socket may take nothing before it counts as stalled: long
/// enough for a busy client's scheduling hiccup, short against the latency of everyone its
/// publishers also feed.
pub const STALL_QUIET: Duration = Duration::from_millis(100);

/// How long a pause from a peer node holds a local connection without a resume: twice the
/// peer's own [`PAUSE_MAX`], after which the peer has stalled its subscriber and resumed.
pub const PEER_HOLD_MAX: Duration = Duration::from_millis(1000);

/// A publishing connection, on this shard, another of this node (whose publishes arrive over
/// the mesh), or a peer node's.
pub(super) type Waiter = crate::mesh::Publisher;

/// Pauses from peer nodes that hold one local connection.
#[derive(Debug)]
struct PeerHold {
    count: u32,
    until: Instant,
}

#[derive(Debug)]
pub(super) struct Backpressure {
    own: ShardId,
    /// The connection whose packet the shard is handling (or whose publish arrived over the
    /// mesh): the one a congestion pauses.
    pub(super) ingress: Option<Waiter>,
    /// Subscriber connections over their high-water mark.
    congested: HashMap<ConnId, Congestion>,
    /// Paused publishers, with how many congested subscribers of this shard hold each.
    paused: HashMap<Waiter, u32>,
    /// This shard's connections that other shards hold, with how many holds each.
    remote_holds: HashMap<ConnId, u32>,
    /// This shard's connections that subscribers on peer nodes hold.
    peer_holds: HashMap<ConnId, PeerHold>,
    /// When [`Backpressure::stall_overdue`] may next stall someone (no later than that; it may
    /// find nothing to do).
    check_due: Option<Instant>,
}

#[derive(Debug)]
struct Congestion {
    since: Instant,
    /// When its socket last took bytes (or it congested).
    progress: Instant,
    stalled: bool,
    waiters: Vec<Waiter>,
}

impl Congestion {
    /// When it stalls unless its socket takes something first.
    fn stall_due(&self) -> Instant {
        (self.since + PAUSE_MAX).min(self.progress + STALL_QUIET)
    }
}

impl Backpressure {
    pub(super) fn new(own: ShardId) -> Backpressure {
        Backpressure {
            own,
            ingress: None,
            congested: HashMap::new(),
            paused: HashMap::new(),
            remote_holds: HashMap::new(),
            peer_holds: HashMap::new(),
            check_due: None,
        }
    }

    /// The local connection `conn` as a waiter.
    pub(super) fn local(&self, conn: ConnId) -> Waiter {
        Waiter { node: None, shard: self.own, conn }
    }

    /// Whether the ingress is a peer node's connection.
    pub(super) fn ingress_is_peer(&self) -> bool {
        self.ingress.is_some_and(|ingress| ingress.node.is_some())
    }

    /// Whether a delivery to `target` may be held back by pausing its publisher (rather than
    /// dropped): there is an ingress connection, it is not the target, and the target is not
    /// stalled.
    pub(super) fn applies(&self, target: ConnId) -> bool {
        match self.ingress {
            Some(ingress) if ingress != self.local(target) => {
                self.congested.is_empty()
                    || !self.congested.get(&target).is_some_and(|congestion| congestion.stalled)
            }
            _ => false,
        }
    }

    /// `target` is over its high-water mark after a delivery: the ingress connection waits for
    /// it (unless [`Backpressure::applies`] says otherwise). Returns the ingress when it was
    /// not paused by this shard before (a remote one must be told).
    pub(super) fn congested(&mut self, target: ConnId, now: Instant) -> Option<Waiter> {
        let ingress = self.ingress.filter(|_| self.applies(target))?;
        let check_due = &mut self.check_due;
        let congestion = self.congested.entry(target).or_insert_with(|| {
            let congestion =
                Congestion { since: now, progress: now, stalled: false, waiters: Vec::new() };
            *check_due = Some(
                check_due.map_or(congestion.stall_due(), |due| due.min(congestion.stall_due())),
            );
            congestion
        });
        // A publisher usually congests a subscriber with several messages in a row; one held
        // twice is released twice, so a rarer repeat further back costs only a list entry
        // (and a search of a thousand waiters per message would not).
        if congestion.waiters.last() == Some(&ingress) {
            return None;
        }
        congestion.waiters.push(ingress);
        let holds = self.paused.entry(ingress).or_insert(0);
        *holds += 1;
        (*holds == 1).then_some(ingress)
    }

    pub(super) fn is_congested(&self, target: ConnId) -> bool {
        self.congested.contains_key(&target)
    }

    /// `target` drained below its low-water mark (or is gone): it holds nobody any more.
    /// Waiters this shard no longer holds are pushed to `released`.
    pub(super) fn relieved(&mut self, target: ConnId, released: &mut Vec<Waiter>) {
        if let Some(congestion) = self.congested.remove(&target) {
            self.release(congestion.waiters, released);
        }
    }

    /// `target`'s socket took bytes: a congested subscriber that drains, however slowly, is
    /// not stalled (until [`PAUSE_MAX`]).
    pub(super) fn progressed(&mut self, target: ConnId, now: Instant) {
        if let Some(congestion) = self.congested.get_mut(&target) {
            congestion.progress = now;
        }
    }

    /// Subscribers whose socket took nothing for [`STALL_QUIET`], or congested for
    /// [`PAUSE_MAX`], stall and let their publishers go.
    pub(super) fn stall_overdue(&mut self, now: Instant, released: &mut Vec<Waiter>) {
        if self.check_due.is_none_or(|due| due > now) {
            return;
        }
        let mut waiters = Vec::new();
        let mut check_due: Option<Instant> = None;
        for congestion in self.congested.values_mut() {
            if congestion.stalled {
                continue;
            }
            let due = congestion.stall_due();
            if due <= now {
                congestion.stalled = true;
                waiters.append(&mut congestion.waiters);
            } else {
                check_due = Some(check_due.map_or(due, |earliest| earliest.min(due)));
            }
        }
        self.check_due = check_due;
        self.release(waiters, released);
    }

    /// When [`Backpressure::stall_overdue`] or [`Backpressure::expire_peer_holds`] has
    /// something to look at.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let peer = self.peer_holds.values().map(|hold| hold.until).min();
        match (self.check_due, peer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The local connection `conn` is gone: it neither waits nor holds anyone.
    pub(super) fn forget(&mut self, conn: ConnId, released: &mut Vec<Waiter>) {
        self.paused.remove(&self.local(conn));
        self.remote_holds.remove(&conn);
        self.peer_holds.remove(&conn);
        self.relieved(conn, released);
    }

    /// A subscriber on a peer node paused the local connection `conn`.
    pub(super) fn hold_for_peer(&mut self, conn: ConnId, now: Instant) {
        let hold = self.peer_holds.entry(conn).or_insert(PeerHold { count: 0, until: now });
        hold.count += 1;
        hold.until = now + PEER_HOLD_MAX;
    }

    /// A peer node's subscriber released the local connection `conn`; true when nothing holds
    /// it now.
    pub(super) fn unhold_for_peer(&mut self, conn: ConnId) -> bool {
        match self.peer_holds.get_mut(&conn) {
            Some(hold) if hold.count > 1 => {
                hold.count -= 1;
                false
            }
            Some(_) => {
                self.peer_holds.remove(&conn);
                !self.is_paused(conn)
            }
            None => false,
        }
    }

    /// Peer holds older than [`PEER_HOLD_MAX`] lapse; the connections nothing holds now are
    /// pushed to `released`.
    pub(super) fn expire_peer_holds(&mut self, now: Instant, released: &mut Vec<ConnId>) {
        if self.peer_holds.is_empty() {
            return;
        }
        let lapsed: Vec<ConnId> = self
            .peer_holds
            .iter()
            .filter(|(_, hold)| hold.until <= now)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in lapsed {
            self.peer_holds.remove(&conn);
            if !self.is_paused(conn) {
                released.push(conn);
            }
        }
    }

    /// Another shard paused the local connection `conn`.
    pub(super) fn hold(&mut self, conn: ConnId) {
        *self.remote_holds.entry(conn).or_insert(0) += 1;
    }

    /// Another shard released the local connection `conn`; true when nothing holds it now.
    pub(super) fn unhold(&mut self, conn: ConnId) -> bool {
        match self.remote_holds.get_mut(&conn) {
            Some(holds) if *holds > 1 => {
                *holds -= 1;
                false
            }
            Some(_) => {
                self.remote_holds.remove(&conn);
                !self.is_paused(conn)
            }
            None => false,
        }
    }

    pub(super) fn is_paused(&self, conn: ConnId) -> bool {
        (!self.paused.is_empty() && self.paused.contains_key(&self.local(conn)))
            || (!self.remote_holds.is_empty() && self.remote_holds.contains_key(&conn))
            || (!self.peer_holds.is_empty() && self.peer_holds.contains_key(&conn))
    }

    fn release(&mut self, waiters: Vec<Waiter>, released: &mut Vec<Waiter>) {
        for waiter in waiters {
            if let Some(holds) = self.paused.get_mut(&waiter) {
                *holds -= 1;
                if *holds == 0 {
                    self.paused.remove(&waiter);
                    released.push(waiter);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: ShardId = ShardId(0);

    fn pressure(ingress: ConnId) -> Backpressure {
        let mut pressure = Backpressure::new(OWN);
        pressure.ingress = Some(pressure.local(ingress));
        pressure
    }

    #[test]
    fn a_publisher_waits_for_every_subscriber_that_holds_it() {
        let now = Instant::now();
        let (publisher, first, second) = (ConnId(1), ConnId(2), ConnId(3));
        let mut pressure = pressure(publisher);
        let waiter = pressure.local(publisher);
        assert_eq!(pressure.congested(first, now), Some(waiter), "newly paused");
        assert_eq!(pressure.congested(second, now), None, "already paused");
        pressure.congested(second, now);
        assert!(pressure.is_paused(publisher));
        let mut released = Vec::new();
        pressure.relieved(first, &mut released);
        assert!(released.is_empty() && pressure.is_paused(publisher));
        pressure.relieved(second, &mut released);
        assert_eq!(released, vec![waiter]);
        assert!(!pressure.is_paused(publisher));
    }

    #[test]
    fn a_stalled_subscriber_releases_its_publishers_and_pauses_nobody() {
        let now = Instant::now();
        let (publisher, stuck) = (ConnId(1), ConnId(2));
        let mut pressure = pressure(publisher);
        pressure.congested(stuck, now);
        let mut released = Vec::new();
        pressure.stall_overdue(now + STALL_QUIET / 2, &mut released);
        assert!(released.is_empty());
        pressure.stall_overdue(now + STALL_QUIET, &mut released);
        assert_eq!(released, vec![pressure.local(publisher)]);
        assert!(!pressure.applies(stuck));
        pressure.congested(stuck, now + PAUSE_MAX);
        assert!(!pressure.is_paused(publisher));
        // Drained: it may pace its publishers again.
        pressure.relieved(stuck, &mut released);
        assert!(pressure.applies(stuck));
    }

    #[test]
    fn a_subscriber_whose_socket_takes_nothing_stalls_after_the_quiet_time() {
        let now = Instant::now();
        let (publisher, stuck, slow) = (ConnId(1), ConnId(2), ConnId(3));
        let mut pressure = pressure(publisher);
        let waiter = pressure.local(publisher);
        pressure.congested(stuck, now);
        assert_eq!(pressure.next_deadline(), Some(now + STALL_QUIET));
        let mut released = Vec::new();
        pressure.stall_overdue(now + STALL_QUIET / 2, &mut released);
        assert!(released.is_empty() && pressure.is_paused(publisher));
        pressure.stall_overdue(now + STALL_QUIET, &mut released);
        assert_eq!(released, vec![waiter], "released once its socket took nothing");
        assert_eq!(pressure.next_deadline(), None);

        // A slow subscriber whose socket keeps taking bytes holds its publisher until
        // PAUSE_MAX.
        released.clear();
        pressure.congested(slow, now);
        let mut at = now;
        while at < now + PAUSE_MAX {
            at += STALL_QUIET / 2;
            pressure.progressed(slow, at);
            pressure
                .stall_overdue(at.min(now + PAUSE_MAX - Duration::from_millis(1)), &mut released);
        }
        assert!(released.is_empty() && pressure.is_paused(publisher));
        pressure.stall_overdue(now + PAUSE_MAX, &mut released);
        assert_eq!(released, vec![waiter], "released at PAUSE_MAX");
    }

    #[test]
    fn a_connection_never_waits_for_itself_or_for_a_gone_subscriber() {
        let now = Instant::now();
        let (publisher, subscriber) = (ConnId(1), ConnId(2));
        let mut pressure = pressure(publisher);
        pressure.congested(publisher, now);
        assert!(!pressure.is_paused(publisher));
        pressure.congested(subscriber, now);
        let mut released = Vec::new();
        pressure.forget(subscriber, &mut released);
        assert_eq!(released, vec![pressure.local(publisher)]);
        pressure.ingress = None;
        pressure.congested(subscriber, now);
        assert!(!pressure.is_congested(subscriber));
    }

    #[test]
    fn publishers_on_other_shards_are_held_and_released_by_count() {
        let now = Instant::now();
        // Shard 0's subscriber congested by a publisher on shard 1 (same conn number as a
        // local connection: waiters are told apart by shard).
        let mut pressure = Backpressure::new(OWN);
        let remote = Waiter { node: None, shard: ShardId(1), conn: ConnId(7) };
        pressure.ingress = Some(remote);
        assert_eq!(pressure.congested(ConnId(2), now), Some(remote));
        assert!(!pressure.is_paused(ConnId(7)), "a remote waiter pauses nothing here");
        // Shard 0's own connection 7, held by two other shards.
        pressure.hold(ConnId(7));
        pressure.hold(ConnId(7));
        assert!(pressure.is_paused(ConnId(7)));
        assert!(!pressure.unhold(ConnId(7)));
        assert!(pressure.unhold(ConnId(7)), "the last hold released");
        assert!(!pressure.is_paused(ConnId(7)));
        assert!(!pressure.unhold(ConnId(7)), "a stale release is ignored");
    }

    #[test]
    fn a_pause_from_a_peer_node_lapses_without_its_resume() {
        let now = Instant::now();
        let mut pressure = Backpressure::new(OWN);
        let publisher = ConnId(7);
        pressure.hold_for_peer(publisher, now);
        pressure.hold_for_peer(publisher, now + Duration::from_millis(10));
        assert!(pressure.is_paused(publisher));
        assert!(!pressure.unhold_for_peer(publisher), "two subscribers held it");
        assert_eq!(pressure.next_deadline(), Some(now + Duration::from_millis(10) + PEER_HOLD_MAX));
        // The other's resume is lost (its link went down): the hold lapses.
        let mut released = Vec::new();
        pressure.expire_peer_holds(now + PEER_HOLD_MAX, &mut released);
        assert!(released.is_empty() && pressure.is_paused(publisher));
        pressure.expire_peer_holds(now + Duration::from_millis(10) + PEER_HOLD_MAX, &mut released);
        assert_eq!(released, vec![publisher]);
        assert!(!pressure.is_paused(publisher));
        assert_eq!(pressure.next_deadline(), None);
        assert!(!pressure.unhold_for_peer(publisher), "a late resume is ignored");
    }
}

//! Backpressure from subscribers to the publishers that feed them, within a shard.
//!
//! When a delivery leaves a subscriber's connection over its high-water mark (output buffer
//! full, or session queue half full), the connection whose PUBLISH caused it is paused: the
//! engine stops reading it until the subscriber drains below its low-water mark. Publishers are
//! slowed to what their subscribers take instead of the broker dropping what it cannot deliver.
//!
//! A subscriber that makes no progress must not stop everyone who publishes to it: once it has
//! been congested for [`PAUSE_MAX`] it is *stalled*, releases the publishers it holds and pauses
//! nobody until it drains; what does not fit its limits meanwhile is dropped and counted, as a
//! slow consumer's messages are.
//!
//! Deliveries that arrive over the mesh from other shards, wills and retained messages have no
//! ingress connection here and are not paced (a cross-shard credit scheme is future work).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ConnId;

/// The longest a congested subscriber holds its publishers before it counts as stalled.
pub const PAUSE_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(super) struct Backpressure {
    /// The connection whose packet the shard is handling: the one a congestion pauses.
    pub(super) ingress: Option<ConnId>,
    /// Subscriber connections over their high-water mark.
    congested: HashMap<ConnId, Congestion>,
    /// Paused connections, with how many congested subscribers hold each.
    paused: HashMap<ConnId, u32>,
}

#[derive(Debug)]
struct Congestion {
    since: Instant,
    stalled: bool,
    waiters: Vec<ConnId>,
}

impl Backpressure {
    /// Whether a delivery to `target` may be held back by pausing its publisher (rather than
    /// dropped): there is an ingress connection, it is not the target, and the target is not
    /// stalled.
    pub(super) fn applies(&self, target: ConnId) -> bool {
        match self.ingress {
            Some(ingress) if ingress != target => {
                self.congested.is_empty()
                    || !self.congested.get(&target).is_some_and(|congestion| congestion.stalled)
            }
            _ => false,
        }
    }

    /// `target` is over its high-water mark after a delivery: the ingress connection waits for
    /// it (unless [`Backpressure::applies`] says otherwise).
    pub(super) fn congested(&mut self, target: ConnId, now: Instant) {
        let Some(ingress) = self.ingress.filter(|_| self.applies(target)) else { return };
        let congestion = self.congested.entry(target).or_insert_with(|| Congestion {
            since: now,
            stalled: false,
            waiters: Vec::new(),
        });
        if !congestion.waiters.contains(&ingress) {
            congestion.waiters.push(ingress);
            *self.paused.entry(ingress).or_insert(0) += 1;
        }
    }

    pub(super) fn is_congested(&self, target: ConnId) -> bool {
        self.congested.contains_key(&target)
    }

    /// `target` drained below its low-water mark (or is gone): it holds nobody any more.
    /// Connections no longer paused are pushed to `resumed`.
    pub(super) fn relieved(&mut self, target: ConnId, resumed: &mut Vec<ConnId>) {
        if let Some(congestion) = self.congested.remove(&target) {
            self.release(congestion.waiters, resumed);
        }
    }

    /// Subscribers congested for [`PAUSE_MAX`] stall and let their publishers go.
    pub(super) fn stall_overdue(&mut self, now: Instant, resumed: &mut Vec<ConnId>) {
        let mut released = Vec::new();
        for congestion in self.congested.values_mut() {
            if !congestion.stalled && now.saturating_duration_since(congestion.since) >= PAUSE_MAX {
                congestion.stalled = true;
                released.append(&mut congestion.waiters);
            }
        }
        self.release(released, resumed);
    }

    /// `conn` is gone: it neither waits nor holds anyone.
    pub(super) fn forget(&mut self, conn: ConnId, resumed: &mut Vec<ConnId>) {
        self.paused.remove(&conn);
        self.relieved(conn, resumed);
    }

    pub(super) fn is_paused(&self, conn: ConnId) -> bool {
        self.paused.contains_key(&conn)
    }

    fn release(&mut self, waiters: Vec<ConnId>, resumed: &mut Vec<ConnId>) {
        for waiter in waiters {
            if let Some(holds) = self.paused.get_mut(&waiter) {
                *holds -= 1;
                if *holds == 0 {
                    self.paused.remove(&waiter);
                    resumed.push(waiter);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publisher_waits_for_every_subscriber_that_holds_it() {
        let now = Instant::now();
        let (publisher, first, second) = (ConnId(1), ConnId(2), ConnId(3));
        let mut pressure = Backpressure { ingress: Some(publisher), ..Backpressure::default() };
        pressure.congested(first, now);
        pressure.congested(second, now);
        pressure.congested(second, now);
        assert!(pressure.is_paused(publisher));
        let mut resumed = Vec::new();
        pressure.relieved(first, &mut resumed);
        assert!(resumed.is_empty() && pressure.is_paused(publisher));
        pressure.relieved(second, &mut resumed);
        assert_eq!(resumed, vec![publisher]);
        assert!(!pressure.is_paused(publisher));
    }

    #[test]
    fn a_stalled_subscriber_releases_its_publishers_and_pauses_nobody() {
        let now = Instant::now();
        let (publisher, stuck) = (ConnId(1), ConnId(2));
        let mut pressure = Backpressure { ingress: Some(publisher), ..Backpressure::default() };
        pressure.congested(stuck, now);
        let mut resumed = Vec::new();
        pressure.stall_overdue(now + PAUSE_MAX / 2, &mut resumed);
        assert!(resumed.is_empty());
        pressure.stall_overdue(now + PAUSE_MAX, &mut resumed);
        assert_eq!(resumed, vec![publisher]);
        assert!(!pressure.applies(stuck));
        pressure.congested(stuck, now + PAUSE_MAX);
        assert!(!pressure.is_paused(publisher));
        // Drained: it may pace its publishers again.
        pressure.relieved(stuck, &mut resumed);
        assert!(pressure.applies(stuck));
    }

    #[test]
    fn a_connection_never_waits_for_itself_or_for_a_gone_subscriber() {
        let now = Instant::now();
        let (publisher, subscriber) = (ConnId(1), ConnId(2));
        let mut pressure = Backpressure { ingress: Some(publisher), ..Backpressure::default() };
        pressure.congested(publisher, now);
        assert!(!pressure.is_paused(publisher));
        pressure.congested(subscriber, now);
        let mut resumed = Vec::new();
        pressure.forget(subscriber, &mut resumed);
        assert_eq!(resumed, vec![publisher]);
        pressure.ingress = None;
        pressure.congested(subscriber, now);
        assert!(!pressure.is_congested(subscriber));
    }
}

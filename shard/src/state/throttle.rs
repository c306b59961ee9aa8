//! Per-connection inbound rate limits (`max_client_message_rate`, `max_client_byte_rate`): a
//! token bucket per connection, refilled with time (a parameter, as everywhere in the shard).
//!
//! A connection over its budget is *throttled*: [`Shard::is_paused`](super::Shard::is_paused)
//! turns true, so the engine feeds it no PUBLISH and stops reading it once a PUBLISH is next in
//! its buffer; TCP then slows the client down. Nothing is dropped or refused. The shard's timer
//! resumes it ([`Effect::Resume`](super::Effect::Resume)) when its budget has refilled.
//!
//! Memory: nothing at all unless a limit is configured; then one [`Budget`] (40 bytes plus its
//! map entry) per connection that has sent a packet, gone with the connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::ids::ConnId;
use crate::FastMap;

/// The configured rates of a shard's connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rates {
    /// PUBLISH packets per second (`f64::INFINITY`: unlimited).
    messages_per_sec: f64,
    /// Inbound bytes per second (`f64::INFINITY`: unlimited).
    bytes_per_sec: f64,
}

impl Rates {
    /// `None` when neither limit is set: the shard then keeps no budget at all.
    pub(super) fn new(messages_per_sec: Option<u32>, bytes_per_sec: Option<u64>) -> Option<Rates> {
        if messages_per_sec.is_none() && bytes_per_sec.is_none() {
            return None;
        }
        Some(Rates {
            messages_per_sec: messages_per_sec.map_or(f64::INFINITY, f64::from),
            bytes_per_sec: bytes_per_sec.map_or(f64::INFINITY, |rate| rate as f64),
        })
    }

    /// The burst: one second's worth, and at least one packet of any size.
    fn messages_burst(&self) -> f64 {
        self.messages_per_sec.max(1.0)
    }

    fn bytes_burst(&self) -> f64 {
        self.bytes_per_sec.max(1.0)
    }
}

/// One connection's token bucket. Tokens may go below zero: a packet already read is always
/// taken, and its cost is paid by waiting afterwards.
#[derive(Debug, Clone, Copy)]
struct Budget {
    messages: f64,
    bytes: f64,
    /// When the tokens were last refilled.
    at: Instant,
    throttled: bool,
}

impl Budget {
    fn full(rates: &Rates, now: Instant) -> Budget {
        Budget {
            messages: rates.messages_burst(),
            bytes: rates.bytes_burst(),
            at: now,
            throttled: false,
        }
    }

    fn refill(&mut self, rates: &Rates, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now.max(self.at);
        self.messages =
            (self.messages + elapsed * rates.messages_per_sec).min(rates.messages_burst());
        self.bytes = (self.bytes + elapsed * rates.bytes_per_sec).min(rates.bytes_burst());
    }

    /// How long until the next PUBLISH may be read: until a whole message token and a
    /// non-negative byte balance are back. Zero when it may be read now.
    fn wait(&self, rates: &Rates) -> Duration {
        let messages =
            if self.messages < 1.0 { (1.0 - self.messages) / rates.messages_per_sec } else { 0.0 };
        let bytes = if self.bytes < 0.0 { -self.bytes / rates.bytes_per_sec } else { 0.0 };
        // Rounded up to the millisecond, so the timer does not fire a hair early and go round
        // again.
        let secs = messages.max(bytes);
        if secs <= 0.0 || !secs.is_finite() {
            return Duration::ZERO;
        }
        Duration::from_micros((secs * 1e6).ceil() as u64).max(Duration::from_millis(1))
    }
}

/// The budgets of a shard's connections and the timers that resume throttled ones.
#[derive(Debug)]
pub(super) struct Throttle {
    rates: Rates,
    budgets: FastMap<ConnId, Budget>,
    /// When each throttled connection is looked at again.
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
}

impl Throttle {
    pub(super) fn new(rates: Rates) -> Throttle {
        Throttle { rates, budgets: FastMap::default(), timers: BinaryHeap::new() }
    }

    /// `conn` sent a packet of `bytes` (a PUBLISH when `messages` is 1). True when this
    /// throttles it (it was not throttled before).
    pub(super) fn charge(
        &mut self,
        conn: ConnId,
        messages: u32,
        bytes: usize,
        now: Instant,
    ) -> bool {
        let rates = self.rates;
        let budget = self.budgets.entry(conn).or_insert_with(|| Budget::full(&rates, now));
        budget.refill(&rates, now);
        budget.messages -= f64::from(messages);
        budget.bytes -= bytes as f64;
        if budget.throttled {
            return false;
        }
        let wait = budget.wait(&rates);
        if wait.is_zero() {
            return false;
        }
        budget.throttled = true;
        self.timers.push(Reverse((now + wait, conn)));
        true
    }

    pub(super) fn is_throttled(&self, conn: ConnId) -> bool {
        self.budgets.get(&conn).is_some_and(|budget| budget.throttled)
    }

    /// The earliest resume check, for the engine's timer.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// Connections whose budget has refilled by `now` stop being throttled; they are pushed to
    /// `resumed`.
    pub(super) fn tick(&mut self, now: Instant, resumed: &mut Vec<ConnId>) {
        while let Some(&Reverse((due, conn))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(budget) = self.budgets.get_mut(&conn) else { continue };
            if !budget.throttled {
                continue;
            }
            budget.refill(&self.rates, now);
            let wait = budget.wait(&self.rates);
            if wait.is_zero() {
                budget.throttled = false;
                resumed.push(conn);
            } else {
                self.timers.push(Reverse((now + wait, conn)));
            }
        }
    }

    /// New rates (a configuration reload): budgets are kept, and refill at the new rates up
    /// to the new bursts from their next refill on.
    pub(super) fn set_rates(&mut self, rates: Rates) {
        self.rates = rates;
    }

    /// The connections throttled now (for resuming them all when the limits go away).
    pub(super) fn throttled_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.budgets.iter().filter(|(_, budget)| budget.throttled).map(|(&conn, _)| conn)
    }

    /// `conn` is gone. (Its timer, if any, finds no budget and is dropped.)
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.budgets.remove(&conn);
    }

    /// Connections currently throttled.
    pub(super) fn throttled(&self) -> usize {
        self.budgets.values().filter(|budget| budget.throttled).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(messages: Option<u32>, bytes: Option<u64>) -> Throttle {
        Throttle::new(Rates::new(messages, bytes).expect("a limit"))
    }

    #[test]
    fn no_limit_keeps_no_budget() {
        assert!(Rates::new(None, None).is_none());
    }

    #[test]
    fn a_burst_of_one_seconds_worth_then_the_rate() {
        let start = Instant::now();
        let conn = ConnId(1);
        let mut throttle = throttle(Some(10), None);
        // Ten PUBLISHes go at once; the tenth leaves no whole token: throttled.
        for i in 0..9 {
            assert!(!throttle.charge(conn, 1, 100, start), "message {i}");
        }
        assert!(throttle.charge(conn, 1, 100, start));
        assert!(throttle.is_throttled(conn));
        // Resumed after a tenth of a second (one token), not before.
        let due = throttle.next_deadline().expect("a timer");
        assert_eq!(due - start, Duration::from_millis(100));
        let mut resumed = Vec::new();
        throttle.tick(start + Duration::from_millis(99), &mut resumed);
        assert!(resumed.is_empty());
        throttle.tick(due, &mut resumed);
        assert_eq!(resumed, vec![conn]);
        assert!(!throttle.is_throttled(conn));
        // One message later it is throttled again.
        assert!(throttle.charge(conn, 1, 100, due));
    }

    #[test]
    fn non_publish_packets_cost_bytes_only() {
        let now = Instant::now();
        let conn = ConnId(1);
        let mut throttle = throttle(Some(1), None);
        for _ in 0..100 {
            assert!(!throttle.charge(conn, 0, 2, now), "PINGREQs and acks are not messages");
        }
        assert!(throttle.charge(conn, 1, 10, now));
    }

    #[test]
    fn bytes_over_the_rate_wait_until_the_debt_is_paid() {
        let start = Instant::now();
        let conn = ConnId(1);
        let mut throttle = throttle(None, Some(1000));
        assert!(!throttle.charge(conn, 1, 1000, start), "exactly the burst leaves zero");
        // 500 bytes over: half a second.
        assert!(throttle.charge(conn, 1, 500, start));
        assert_eq!(throttle.next_deadline(), Some(start + Duration::from_millis(500)));
        // Packets still fed meanwhile (acknowledgements) add to the debt: the check goes round.
        assert!(!throttle.charge(conn, 0, 250, start));
        let mut resumed = Vec::new();
        throttle.tick(start + Duration::from_millis(500), &mut resumed);
        assert!(resumed.is_empty() && throttle.is_throttled(conn));
        throttle.tick(start + Duration::from_millis(750), &mut resumed);
        assert_eq!(resumed, vec![conn]);
    }

    #[test]
    fn the_sustained_rate_is_the_configured_one() {
        // A client that sends whenever it may, for ten simulated seconds, at 50 messages/s.
        let start = Instant::now();
        let conn = ConnId(1);
        let mut throttle = throttle(Some(50), None);
        let mut now = start;
        let mut sent = 0u32;
        let mut resumed = Vec::new();
        while now < start + Duration::from_secs(10) {
            if throttle.is_throttled(conn) {
                now = throttle.next_deadline().expect("a timer while throttled");
                throttle.tick(now, &mut resumed);
            } else {
                throttle.charge(conn, 1, 10, now);
                sent += 1;
            }
        }
        // The burst (50) and then 50 per second.
        assert!((540..=551).contains(&sent), "{sent}");
    }

    #[test]
    fn connections_are_independent_and_forgotten() {
        let now = Instant::now();
        let mut throttle = throttle(Some(1), None);
        assert!(throttle.charge(ConnId(1), 1, 1, now));
        assert!(!throttle.is_throttled(ConnId(2)));
        throttle.forget(ConnId(1));
        assert!(!throttle.is_throttled(ConnId(1)));
        let mut resumed = Vec::new();
        throttle.tick(now + Duration::from_secs(5), &mut resumed);
        assert!(resumed.is_empty(), "a gone connection is not resumed");
        assert_eq!(throttle.throttled(), 0);
    }
}

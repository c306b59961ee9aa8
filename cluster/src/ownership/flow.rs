//! How much this node asks of etcd at once: a window of transactions in flight that adapts to
//! etcd's latency, and the estimate behind admitting or refusing a connect's claim.
//!
//! A node alone cannot see etcd's load, but it sees what the load does to latency. The window
//! grows by one transaction per round trip while transactions come back within the target
//! latency, and halves (at most once per round trip) when one takes longer or fails: the
//! additive-increase, multiplicative-decrease rule of TCP, driven by delay as in TCP Vegas.
//! With the window small, claims wait for the transaction in flight and go out together: the
//! busier etcd is, the larger and fewer the transactions every node sends, which is the cheap
//! way for etcd to take them (one transaction of 100 puts costs about as much as three single
//! puts here). Twenty nodes at a window of one put at most twenty transactions of 128
//! operations before etcd at once.
//!
//! Why it matters beyond speed: etcd 3.4 answers a lease keepalive only once it has applied
//! everything committed before it, and ends the keepalive stream after waiting 1 s
//! (`waitAppliedIndex`). A node that keeps etcd's apply loop busy for a second thereby stops
//! every node's lease renewals. The target latency is kept far below that.

use std::time::{Duration, Instant};

/// The window's upper bound: transactions in flight at once.
pub const TXNS_IN_FLIGHT_MAX: usize = 16;
/// A transaction answered within [`LATENCY_TARGET_FACTOR`] times the fastest seen lately, but
/// at least [`LATENCY_TARGET_MIN`] and at most [`LATENCY_TARGET_MAX`], lets the window grow; a
/// slower one halves it. The floor keeps a fast etcd's small jitter from shrinking the window;
/// the ceiling keeps etcd's apply loop far from the 1 s after which it ends keepalive streams,
/// whatever the network's own latency.
pub const LATENCY_TARGET_MIN: Duration = Duration::from_millis(50);
pub const LATENCY_TARGET_MAX: Duration = Duration::from_millis(250);
pub const LATENCY_TARGET_FACTOR: u32 = 4;
/// The fastest transaction "lately" is the fastest of the current and the previous epoch of
/// this length, so the target follows a network change within two epochs.
pub const LATENCY_EPOCH: Duration = Duration::from_secs(10);

/// The adaptive window and latency estimate. Lives inside `Ownership`.
#[derive(Debug)]
pub(super) struct Flow {
    /// Transactions allowed in flight, fractional so that it grows by `1/window` per answer
    /// (one per window's worth of answers: one per round trip).
    window: f64,
    /// Exponentially weighted mean latency and mean deviation (weights 1/8 and 1/4, as TCP's
    /// SRTT and RTTVAR, RFC 6298).
    mean: Option<Duration>,
    deviation: Duration,
    fastest_now: Option<Duration>,
    fastest_before: Option<Duration>,
    epoch_started: Option<Instant>,
    /// Transactions sent before this do not halve the window again: one decrease per round
    /// trip.
    decreased_at: Option<Instant>,
}

impl Flow {
    pub(super) fn new() -> Flow {
        Flow {
            window: 1.0,
            mean: None,
            deviation: Duration::ZERO,
            fastest_now: None,
            fastest_before: None,
            epoch_started: None,
            decreased_at: None,
        }
    }

    /// Transactions that may be in flight now.
    pub(super) fn limit(&self) -> usize {
        (self.window as usize).clamp(1, TXNS_IN_FLIGHT_MAX)
    }

    pub(super) fn window(&self) -> f64 {
        self.window
    }

    pub(super) fn mean(&self) -> Option<Duration> {
        self.mean
    }

    /// The latency a transaction may take before the window shrinks.
    pub(super) fn target(&self) -> Duration {
        let fastest = match (self.fastest_now, self.fastest_before) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        fastest.map_or(LATENCY_TARGET_MIN, |fastest| {
            (fastest * LATENCY_TARGET_FACTOR).clamp(LATENCY_TARGET_MIN, LATENCY_TARGET_MAX)
        })
    }

    /// A transaction sent at `sent_at` was answered at `now` (`ok`), or failed.
    pub(super) fn answered(&mut self, sent_at: Instant, now: Instant, ok: bool) {
        let took = now.saturating_duration_since(sent_at);
        if ok {
            self.sample(took, now);
        }
        if ok && took <= self.target() {
            self.window = (self.window + 1.0 / self.window).min(TXNS_IN_FLIGHT_MAX as f64);
        } else if self.decreased_at.is_none_or(|at| sent_at >= at) {
            self.window = (self.window / 2.0).max(1.0);
            self.decreased_at = Some(now);
        }
    }

    fn sample(&mut self, took: Duration, now: Instant) {
        match self.mean {
            None => {
                self.mean = Some(took);
                self.deviation = took / 2;
            }
            Some(mean) => {
                let error = took.abs_diff(mean);
                self.deviation = (self.deviation * 3 + error) / 4;
                self.mean = Some((mean * 7 + took) / 8);
            }
        }
        if self.epoch_started.is_none_or(|at| now >= at + LATENCY_EPOCH) {
            self.fastest_before = self.fastest_now.take();
            self.epoch_started = Some(now);
        }
        self.fastest_now = Some(self.fastest_now.map_or(took, |fastest| fastest.min(took)));
    }

    /// What a transaction sent now may take, conservatively: the mean plus four deviations
    /// (TCP's retransmission timeout), or longer if the oldest transaction in flight (sent at
    /// `oldest`) has already waited longer.
    pub(super) fn latency_bound(&self, oldest: Option<Instant>, now: Instant) -> Duration {
        let bound = self.mean.map_or(LATENCY_TARGET_MIN, |mean| mean + self.deviation * 4);
        let waited = oldest.map_or(Duration::ZERO, |sent| now.saturating_duration_since(sent));
        bound.max(waited)
    }
}

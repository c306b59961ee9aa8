//! How much this node asks of etcd at once: a window of transactions that adapts to etcd's
//! latency, and the estimates behind admitting or refusing a connect's claim.
//!
//! A node alone cannot see etcd's load, but it sees what the load does to latency. The window
//! grows while transactions come back within the target latency and halves (at most once per
//! round trip) when one takes longer, fails, or etcd says it is falling behind: the
//! additive-increase, multiplicative-decrease rule of TCP, driven by delay as in TCP Vegas.
//! With the window small, claims wait for the transaction in flight and go out together: the
//! busier etcd is, the larger and fewer the transactions every node sends, which is the cheap
//! way for etcd to take them (one transaction of 100 puts costs about as much as three single
//! puts on an idle host).
//!
//! The window goes below one transaction: then one is in flight at most, and the next waits
//! `latency / window` after the previous one was sent, down to one per 16 round trips. That
//! matters because etcd applies transactions one at a time: measured here with 20 nodes, the
//! load generator and etcd sharing two cores, a transaction of 127 claims took a median 135 ms
//! to apply (0.92 s at worst), so twenty nodes with one each in flight made a backlog of seconds.
//!
//! Why the backlog matters beyond speed: etcd 3.4 renews a lease only once it has applied
//! everything committed before the renewal, and answers "waiting for the applied index took too
//! long" after 1 s of waiting. Claims that keep etcd's apply loop a second behind stop every
//! node's lease renewals; the target latency keeps it far below that, and such an answer to a
//! renewal, or a renewal overdue ([`Flow::congested`]), halves the window at once.
//!
//! Latency alone shrinks the window to one transaction, not below: a slow answer does not say
//! whether etcd is loaded or merely far (a WAN round trip, a proxy), and below one a lone
//! connect on an idle node would wait several round trips for its turn. Only what says etcd's
//! apply loop is behind (the congestion signals above) or a failed transaction takes it below
//! one. For the same reason the target is the fastest latency seen lately *plus* the allowance,
//! so a network that is slow but steady is not taken for congestion.

use std::time::{Duration, Instant};

/// The window's upper bound: transactions in flight at once.
pub const TXNS_IN_FLIGHT_MAX: usize = 16;
/// The window's lower bound: one transaction per this many round trips.
pub const WINDOW_MIN: f64 = 1.0 / 16.0;
/// A transaction answered within the fastest latency seen lately plus an allowance lets the
/// window grow; a slower one halves it. The allowance is [`LATENCY_TARGET_FACTOR`] − 1 times
/// the fastest, but at least [`LATENCY_TARGET_MIN`] and at most [`LATENCY_TARGET_MAX`]: the
/// floor keeps a fast etcd's small jitter from shrinking the window; the ceiling keeps the
/// queueing this node adds far from the 1 s after which etcd refuses renewals, whatever the
/// network's own latency.
pub const LATENCY_TARGET_MIN: Duration = Duration::from_millis(50);
pub const LATENCY_TARGET_MAX: Duration = Duration::from_millis(250);
pub const LATENCY_TARGET_FACTOR: u32 = 4;
/// The fastest transaction "lately" is the fastest of the current and the previous epoch of
/// this length, so the target follows a network change within two epochs.
pub const LATENCY_EPOCH: Duration = Duration::from_secs(10);

/// The adaptive window and latency estimate. Lives inside `Ownership`.
#[derive(Debug)]
pub(super) struct Flow {
    /// Transactions per round trip: above one, how many may be in flight (fractional so that
    /// it grows by `1/window` per answer, one per round trip); below one, the share of round
    /// trips that send one.
    window: f64,
    /// Exponentially weighted mean latency (weight 1/8, as TCP's SRTT, RFC 6298).
    mean: Option<Duration>,
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

    /// How long after sending a transaction the next may go: nothing while the window is one
    /// or more, `latency / window` below one.
    pub(super) fn send_interval(&self) -> Duration {
        if self.window >= 1.0 {
            return Duration::ZERO;
        }
        self.mean.unwrap_or(LATENCY_TARGET_MIN).div_f64(self.window)
    }

    /// Round trips a transaction waits for its turn to be sent, at most one window's worth
    /// ahead of it: `1 / window` below one, else one.
    pub(super) fn round_trips_per_send(&self) -> f64 {
        (1.0 / self.window).max(1.0)
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
            let allowance = fastest * (LATENCY_TARGET_FACTOR - 1);
            fastest + allowance.clamp(LATENCY_TARGET_MIN, LATENCY_TARGET_MAX)
        })
    }

    /// A transaction sent at `sent_at` was answered at `now` (`ok`), or failed.
    pub(super) fn answered(&mut self, sent_at: Instant, now: Instant, ok: bool) {
        let took = now.saturating_duration_since(sent_at);
        if ok {
            self.sample(took, now);
        }
        if ok && took <= self.target() {
            self.grow();
        } else if ok {
            self.shrink(sent_at, now, 1.0);
        } else {
            self.shrink(sent_at, now, WINDOW_MIN);
        }
    }

    /// etcd said it is falling behind (a renewal waited too long for its apply loop, or it
    /// refused a request as too many): halve the window, as for a slow answer to a transaction
    /// sent just now.
    pub(super) fn congested(&mut self, now: Instant) {
        self.shrink(now, now, WINDOW_MIN);
    }

    /// One round trip's growth: one more transaction in flight above one (`1/window` per
    /// answer), a quarter more below.
    fn grow(&mut self) {
        self.window = if self.window >= 1.0 {
            (self.window + 1.0 / self.window).min(TXNS_IN_FLIGHT_MAX as f64)
        } else {
            (self.window * 1.25).min(1.0)
        };
    }

    /// Halves the window, not below `floor` (nor raising it to that), unless it was halved for
    /// a transaction sent after `sent_at` already.
    fn shrink(&mut self, sent_at: Instant, now: Instant, floor: f64) {
        if self.decreased_at.is_none_or(|at| sent_at >= at) {
            if self.window > floor {
                self.window = (self.window / 2.0).max(floor).max(WINDOW_MIN);
            }
            self.decreased_at = Some(now);
        }
    }

    fn sample(&mut self, took: Duration, now: Instant) {
        self.mean = Some(self.mean.map_or(took, |mean| (mean * 7 + took) / 8));
        if self.epoch_started.is_none_or(|at| now >= at + LATENCY_EPOCH) {
            // An epoch that ended long ago says nothing about the network now.
            let recent = self.epoch_started.is_some_and(|at| now < at + LATENCY_EPOCH * 2);
            self.fastest_before = self.fastest_now.take().filter(|_| recent);
            self.epoch_started = Some(now);
        }
        self.fastest_now = Some(self.fastest_now.map_or(took, |fastest| fastest.min(took)));
    }

    /// What a transaction sent now is expected to take: the mean, or longer if the oldest
    /// transaction in flight (sent at `oldest`) has already waited longer. An expectation, not
    /// a bound: a connect refused on it is refused for sure, while one admitted that then waits
    /// too long is still refused before it costs etcd a write (`Ownership::shed`). Seen in a
    /// test: with a bound (the mean plus four mean deviations, TCP's retransmission timeout)
    /// the deviation after etcd's latency stepped from 2 ms to 400 ms refused lone connects on
    /// idle nodes.
    pub(super) fn latency_expected(&self, oldest: Option<Instant>, now: Instant) -> Duration {
        let mean = self.mean.unwrap_or(LATENCY_TARGET_MIN);
        let waited = oldest.map_or(Duration::ZERO, |sent| now.saturating_duration_since(sent));
        mean.max(waited)
    }
}

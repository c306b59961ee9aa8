//! The one clock of the load generator: CLOCK_MONOTONIC in nanoseconds.
//!
//! Payloads carry their intended send time read from this clock and receivers subtract it from
//! their own reading, so both must read the same clock. CLOCK_MONOTONIC is one clock for every
//! process of a host (unlike `std::time::Instant`, whose raw value is not exposed), which keeps
//! latencies right when publisher and subscriber live in different worker processes. It is not
//! shared between hosts: run publishers and subscribers of one stream on the same host.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds since an arbitrary, fixed point (boot on Linux).
pub fn now_ns() -> u64 {
    // clock_gettime(CLOCK_MONOTONIC) fails only for an invalid clock id or pointer, neither of
    // which a safe call can produce; 0 keeps the function total without a panic path.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |time| {
        let secs = u64::try_from(time.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(time.tv_nsec()).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    })
}

/// The `Duration` from now until `deadline_ns`, zero if it has passed.
pub fn until(deadline_ns: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(deadline_ns.saturating_sub(now_ns()))
}

/// A `Duration` as whole nanoseconds, saturating.
pub fn duration_ns(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

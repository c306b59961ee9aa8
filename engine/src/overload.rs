//! Overload protection at the node's door: a connect-rate budget per shard and a resident-memory
//! high-water mark. Both act on new connections only, so clients already connected keep their
//! service while a reconnect storm or a memory squeeze lasts.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardmq_io::runtime;

/// How often the memory watch reads the process's resident size.
const MEMORY_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// After the node's connections fall this far below their peak (at least
/// [`TRIM_DROP_MIN`]), the memory watch has the allocator give back what they used...
const TRIM_DROP_FRACTION: usize = 4;
const TRIM_DROP_MIN: usize = 1024;
/// ... every this long for [`TRIM_WINDOW`]: the shards shrink their tables over the next
/// minute (stale keepalive entries last 1.5 keepalives), and each shrink frees more.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);
const TRIM_WINDOW: Duration = Duration::from_secs(120);

/// When to return freed memory to the system: after the node's connection count falls well
/// below its peak (a reconnect storm ending), for a while.
#[derive(Debug)]
struct TrimPolicy {
    peak: usize,
    trim_until: Option<Instant>,
    last_trim: Option<Instant>,
}

impl TrimPolicy {
    fn new() -> TrimPolicy {
        TrimPolicy { peak: 0, trim_until: None, last_trim: None }
    }

    /// Whether to trim now, with `connections` up.
    fn due(&mut self, connections: usize, now: Instant) -> bool {
        self.peak = self.peak.max(connections);
        let drop = self.peak - connections;
        if drop >= TRIM_DROP_MIN && drop >= self.peak / TRIM_DROP_FRACTION {
            self.peak = connections;
            self.trim_until = Some(now + TRIM_WINDOW);
        }
        let in_window = self.trim_until.is_some_and(|until| now < until);
        let spaced = self.last_trim.is_none_or(|at| now >= at + TRIM_INTERVAL);
        if in_window && spaced {
            self.last_trim = Some(now);
            return true;
        }
        false
    }
}

/// New connections one shard may admit: refilled at `rate` per second, holding at most one
/// second's worth, so a storm is let in at the configured rate after a burst of that size; the
/// connections past it are refused (CONNACK 0x9F) once their CONNECT is read.
#[derive(Debug)]
pub(crate) struct ConnectBudget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl ConnectBudget {
    pub(crate) fn new(rate_per_sec: f64, now: Instant) -> ConnectBudget {
        let rate = rate_per_sec.max(f64::MIN_POSITIVE);
        ConnectBudget { rate, tokens: rate.max(1.0), at: now }
    }

    /// Counts one connection and returns zero when it may be admitted now; otherwise (nothing
    /// counted) how long until one may.
    pub(crate) fn take(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// Whether the process is over its memory high-water mark, kept up to date by a thread of its
/// own (one read of /proc/self/status every [`MEMORY_CHECK_INTERVAL`]) and read by a handshake
/// with one relaxed load.
#[derive(Debug, Default)]
pub(crate) struct MemoryWatch {
    over: AtomicBool,
    /// The high-water mark in bytes; 0 for none (a reload may set or clear it).
    max: AtomicU64,
}

impl MemoryWatch {
    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// A new high-water mark (`None`: none), from the next check on.
    pub(crate) fn set_max(&self, max: Option<u64>) {
        self.max.store(max.unwrap_or(0), Ordering::Relaxed);
    }

    /// Starts watching the resident size against `max` bytes (nothing is read while there is
    /// none), and the node's `connections` for when to give freed memory back ([`TrimPolicy`]).
    pub(crate) fn start(
        max: Option<u64>,
        connections: Arc<AtomicUsize>,
    ) -> anyhow::Result<Arc<MemoryWatch>> {
        let watch = Arc::new(MemoryWatch::default());
        watch.set_max(max);
        let shared = watch.clone();
        let mut trim = TrimPolicy::new();
        std::thread::Builder::new().name("memory-watch".into()).spawn(move || loop {
            if trim.due(connections.load(Ordering::Relaxed), Instant::now()) {
                runtime::release_free_memory();
            }
            let max = shared.max.load(Ordering::Relaxed);
            if max == 0 {
                shared.over.store(false, Ordering::Relaxed);
                std::thread::sleep(MEMORY_CHECK_INTERVAL);
                continue;
            }
            let Some(resident) = resident_bytes() else {
                // Keep giving freed memory back; only the mark goes unenforced.
                tracing::warn!("cannot read /proc/self/status: max_memory is not enforced");
                shared.max.store(0, Ordering::Relaxed);
                continue;
            };
            let over = resident > max;
            if shared.over.swap(over, Ordering::Relaxed) != over {
                if over {
                    tracing::warn!(
                        "resident memory {} MiB is over max_memory ({} MiB): refusing new \
                         connections until it is back under",
                        resident >> 20,
                        max >> 20
                    );
                } else {
                    tracing::info!(
                        "resident memory {} MiB: accepting connections again",
                        resident >> 20
                    );
                }
            }
            std::thread::sleep(MEMORY_CHECK_INTERVAL);
        })?;
        Ok(watch)
    }
}

/// The process's resident set size, from the `VmRSS:` line of /proc/self/status (in kB).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_is_given_back_for_a_while_after_a_storm_ends() {
        let start = std::time::Instant::now();
        let at = |secs: u64| start + std::time::Duration::from_secs(secs);
        let mut policy = super::TrimPolicy::new();
        // Steady, then growing: nothing to give back.
        assert!(!policy.due(500, at(0)));
        assert!(!policy.due(19_500, at(1)));
        // A small dip is not a storm ending.
        assert!(!policy.due(19_000, at(2)));
        // The storm ends: trim now and every 10 s for two minutes, then stop.
        assert!(policy.due(500, at(3)));
        assert!(!policy.due(500, at(4)));
        assert!(policy.due(500, at(13)));
        let trims = (14..=200).filter(|&s| policy.due(500, at(s))).count();
        assert_eq!(trims, 10, "one every 10 s until 2 minutes after the drop");
    }

    use super::*;

    #[test]
    fn the_budget_lets_a_burst_in_then_paces() {
        let start = Instant::now();
        let mut budget = ConnectBudget::new(10.0, start);
        for _ in 0..10 {
            assert_eq!(budget.take(start), Duration::ZERO);
        }
        let wait = budget.take(start);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(budget.take(start + Duration::from_millis(100)), Duration::ZERO);
        // Idle time refills at most one second's worth.
        let later = start + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(budget.take(later), Duration::ZERO);
        }
        assert!(budget.take(later) > Duration::ZERO);
    }

    #[test]
    fn resident_size_is_readable() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 1 << 20));
    }
}

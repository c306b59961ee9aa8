//! Latency histograms (hdrhistogram) in nanoseconds, and their machine-readable forms: a sparse
//! `(value, count)` list that merges exactly across workers and processes, and the percentile
//! summary the report prints.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency recorded as itself (100 s); anything slower is recorded as this, so a
/// stuck message still counts in the max instead of being dropped.
pub const LATENCY_NS_MAX: u64 = 100_000_000_000;
/// Significant decimal digits kept: 3 gives 0.1% resolution at every magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The percentiles of [`Latency::spectrum`].
const SPECTRUM_PERCENTILES: &[f64] = &[
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9,
    99.95, 99.99, 99.995, 99.999, 100.0,
];

/// A latency histogram in nanoseconds, 1 ns to [`LATENCY_NS_MAX`].
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // digits <= 5), so construction cannot fail; a failure here is a programming error.
        let histogram = Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
            .unwrap_or_else(|error| panic!("latency histogram bounds are invalid: {error}"));
        Latency { histogram }
    }

    /// Records one latency; values outside the range are clamped to it.
    pub fn record_ns(&mut self, latency_ns: u64) {
        self.histogram.saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, which is all `add` checks.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn reset(&mut self) {
        self.histogram.reset();
    }

    /// The value at `quantile` (0..=1) in nanoseconds, 0 when empty.
    pub fn quantile_ns(&self, quantile: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_quantile(quantile)
        }
    }

    /// p50, p90, p99, p99.9, max and mean, in microseconds.
    pub fn summary(&self) -> LatencySummary {
        let micros = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            count: self.count(),
            p50_us: micros(self.quantile_ns(0.50)),
            p90_us: micros(self.quantile_ns(0.90)),
            p99_us: micros(self.quantile_ns(0.99)),
            p99_9_us: micros(self.quantile_ns(0.999)),
            max_us: micros(if self.histogram.is_empty() { 0 } else { self.histogram.max() }),
            mean_us: if self.histogram.is_empty() { 0.0 } else { self.histogram.mean() / 1_000.0 },
        }
    }

    /// `(percentile, microseconds)` points from the minimum to the maximum, dense in the tail
    /// (90, 99, 99.9, 99.99 …): the data of a latency-distribution plot. Empty when empty.
    pub fn spectrum(&self) -> Vec<(f64, f64)> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        let mut points = Vec::with_capacity(SPECTRUM_PERCENTILES.len());
        for &percentile in SPECTRUM_PERCENTILES {
            let ns = if percentile >= 100.0 {
                self.histogram.max()
            } else {
                self.histogram.value_at_quantile(percentile / 100.0)
            };
            points.push((percentile, ns as f64 / 1_000.0));
        }
        points
    }

    /// Every recorded bucket as `(value, count)`, for a report another process merges.
    pub fn to_sparse(&self) -> SparseHistogram {
        SparseHistogram {
            buckets: self
                .histogram
                .iter_recorded()
                .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
                .collect(),
        }
    }

    /// Rebuilds a histogram from [`Latency::to_sparse`]: each value lands in the same bucket.
    pub fn from_sparse(sparse: &SparseHistogram) -> Latency {
        let mut latency = Latency::new();
        for &(value, count) in &sparse.buckets {
            let _ = latency.histogram.record_n(value.clamp(1, LATENCY_NS_MAX), count);
        }
        latency
    }
}

/// Serialised as its sparse form, so reports of worker processes merge exactly.
impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_sparse().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Latency, D::Error> {
        SparseHistogram::deserialize(deserializer).map(|sparse| Latency::from_sparse(&sparse))
    }
}

/// A histogram as the `(value_ns, count)` pairs of its non-empty buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseHistogram {
    pub buckets: Vec<(u64, u64)>,
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_form_round_trips_and_merges() {
        let mut first = Latency::new();
        for value in [1, 999, 1_000, 1_500_000, 3_000_000_000, LATENCY_NS_MAX * 2] {
            first.record_ns(value);
        }
        let rebuilt = Latency::from_sparse(&first.to_sparse());
        assert_eq!(rebuilt.to_sparse(), first.to_sparse());
        assert_eq!(rebuilt.summary(), first.summary());
        let mut merged = Latency::new();
        merged.merge(&first);
        merged.merge(&rebuilt);
        assert_eq!(merged.count(), 12);
        assert!(merged.summary().max_us >= LATENCY_NS_MAX as f64 / 1_000.0 * 0.999);
    }
}

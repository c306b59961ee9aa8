//! What the coordinating thread and the workers share: phase flags the coordinator raises and
//! per-worker live counters each worker publishes.
//!
//! This is control traffic, not the data path: each worker writes only its own [`WorkerLive`]
//! (a few relaxed stores every [`crate::worker::CONTROL_INTERVAL`]), and the coordinator reads
//! them to print progress and to decide when a phase is over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Phase flags (written by the coordinator) and every worker's counters.
#[derive(Debug)]
pub struct Shared {
    /// When publishers start (CLOCK_MONOTONIC ns); 0 until every subscriber is ready.
    pub publish_start_ns: AtomicU64,
    /// Publishers stop sending new messages and wait for their acknowledgements.
    pub stop_publishing: AtomicBool,
    /// Every client disconnects and the workers return their reports.
    pub finish: AtomicBool,
    pub workers: Vec<WorkerLive>,
}

impl Shared {
    pub fn new(workers: usize) -> Shared {
        Shared {
            publish_start_ns: AtomicU64::new(0),
            stop_publishing: AtomicBool::new(false),
            finish: AtomicBool::new(false),
            workers: (0..workers).map(|_| WorkerLive::default()).collect(),
        }
    }

    /// The sum of every worker's counters.
    pub fn totals(&self) -> LiveCounts {
        let mut totals = LiveCounts::default();
        for worker in &self.workers {
            totals.add(&worker.load());
        }
        totals
    }

    pub fn raise_finish(&self) {
        self.finish.store(true, Ordering::Release);
    }
}

/// One worker's counters as last published. Written by that worker only.
#[derive(Debug, Default)]
pub struct WorkerLive {
    counts: [AtomicU64; LiveCounts::FIELDS],
}

impl WorkerLive {
    pub fn store(&self, counts: &LiveCounts) {
        for (slot, value) in self.counts.iter().zip(counts.as_array()) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    pub fn load(&self) -> LiveCounts {
        let mut values = [0; LiveCounts::FIELDS];
        for (value, slot) in values.iter_mut().zip(&self.counts) {
            *value = slot.load(Ordering::Relaxed);
        }
        LiveCounts::from_array(values)
    }
}

/// Counters of a worker (or a sum of workers) at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveCounts {
    /// Clients whose set-up ended, successfully or not (conn: CONNACK; subscribers: SUBACK).
    pub setups_done: u64,
    pub setups_failed: u64,
    /// Connections up right now.
    pub up: u64,
    /// Publishers that stopped and settled their acknowledgements (or failed).
    pub publishers_done: u64,
    pub sent: u64,
    pub acknowledged: u64,
    pub received: u64,
    /// Deliveries expected from the publishers that are done: sent times subscribers.
    pub expected: u64,
    /// When the last message was received (CLOCK_MONOTONIC ns).
    pub last_received_ns: u64,
}

impl LiveCounts {
    const FIELDS: usize = 9;

    fn as_array(&self) -> [u64; LiveCounts::FIELDS] {
        [
            self.setups_done,
            self.setups_failed,
            self.up,
            self.publishers_done,
            self.sent,
            self.acknowledged,
            self.received,
            self.expected,
            self.last_received_ns,
        ]
    }

    fn from_array(values: [u64; LiveCounts::FIELDS]) -> LiveCounts {
        let [setups_done, setups_failed, up, publishers_done, sent, acknowledged, received, expected, last_received_ns] =
            values;
        LiveCounts {
            setups_done,
            setups_failed,
            up,
            publishers_done,
            sent,
            acknowledged,
            received,
            expected,
            last_received_ns,
        }
    }

    /// Adds `other`'s counts; the latest receive time is the later of the two.
    pub fn add(&mut self, other: &LiveCounts) {
        let mut values = self.as_array();
        for (value, other) in values.iter_mut().zip(other.as_array()) {
            *value = value.saturating_add(other);
        }
        values[LiveCounts::FIELDS - 1] = self.last_received_ns.max(other.last_received_ns);
        *self = LiveCounts::from_array(values);
    }
}

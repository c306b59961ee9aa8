//! The admin endpoint (`--admin-listen`): Prometheus `/metrics`, `/health` and `/ready`, served by
//! a small blocking HTTP server on a thread of its own, never on a shard.
//!
//! Counters are gathered without locks on the data path: each shard copies its own counters
//! ([`ShardStats`]) into its slot of [`NodeCounters`] on every tick (250 ms), with relaxed
//! stores, and the admin thread sums the slots when it is asked. A scrape therefore sees each
//! shard as of its last tick.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use shardmq_shard::ShardStats;

/// One shard's counters as of its last tick.
#[derive(Debug, Default)]
struct ShardSlot {
    ready: AtomicBool,
    connections: AtomicU64,
    sessions: AtomicU64,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    dropped_qos0_slow: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_expired: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_not_authorized: AtomicU64,
    retained: AtomicU64,
    /// Storage group commits by duration: counts per bucket of [`COMMIT_BUCKETS_SECS`] (and
    /// one past the last), and their total duration in microseconds.
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_SECS.len() + 1],
    commit_micros: AtomicU64,
}

/// Upper bounds (seconds) of the storage commit latency histogram's buckets: an fsync'd group
/// commit takes from tens of microseconds (no fsync) to tens of milliseconds (a slow disk).
const COMMIT_BUCKETS_SECS: [f64; 10] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// What the node's control plane counted (etcd ownership transactions), read when scraped.
pub type EtcdStats = Box<dyn Fn() -> shardmq_cluster::control::ControlStats + Send + Sync>;

/// Reads one counter of a shard's slot.
type Field = fn(&ShardSlot) -> &AtomicU64;

/// Every shard's counters, shared with the admin thread.
pub struct NodeCounters {
    shards: Vec<ShardSlot>,
    started: Instant,
    etcd: std::sync::OnceLock<EtcdStats>,
}

impl std::fmt::Debug for NodeCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCounters").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

impl NodeCounters {
    pub fn new(shards: usize) -> NodeCounters {
        NodeCounters {
            shards: (0..shards).map(|_| ShardSlot::default()).collect(),
            started: Instant::now(),
            etcd: std::sync::OnceLock::new(),
        }
    }

    /// In a cluster: where `/metrics` reads the etcd ownership counters from.
    pub fn set_etcd(&self, stats: EtcdStats) {
        let _ = self.etcd.set(stats);
    }

    /// Shard `shard` finished a storage group commit that took `took`.
    pub fn commit_took(&self, shard: usize, took: std::time::Duration) {
        let Some(slot) = self.shards.get(shard) else { return };
        let secs = took.as_secs_f64();
        let bucket = COMMIT_BUCKETS_SECS.iter().position(|&bound| secs <= bound);
        let bucket = bucket.unwrap_or(COMMIT_BUCKETS_SECS.len());
        slot.commit_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        slot.commit_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Shard `shard` publishes its counters (called by that shard only).
    pub fn publish(&self, shard: usize, stats: &ShardStats) {
        let Some(slot) = self.shards.get(shard) else { return };
        let store = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        store(&slot.connections, stats.connections);
        store(&slot.sessions, stats.sessions);
        store(&slot.messages_received, stats.messages_received);
        store(&slot.messages_sent, stats.messages_sent);
        store(&slot.dropped_qos0_slow, stats.dropped_qos0_slow);
        store(&slot.dropped_queue_full, stats.dropped_queue_full);
        store(&slot.dropped_expired, stats.dropped_expired);
        store(&slot.dropped_too_large, stats.dropped_too_large);
        store(&slot.dropped_not_authorized, stats.dropped_not_authorized);
        store(&slot.retained, stats.retained);
    }

    /// Shard `shard` accepts clients (or stopped doing so).
    pub fn set_ready(&self, shard: usize, ready: bool) {
        if let Some(slot) = self.shards.get(shard) {
            slot.ready.store(ready, Ordering::Relaxed);
        }
    }

    /// The node's totals (every shard as of its last tick), and its uptime in seconds.
    pub fn totals(&self) -> (ShardStats, u64) {
        let mut total = ShardStats::default();
        for slot in &self.shards {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            total.connections += load(&slot.connections);
            total.sessions += load(&slot.sessions);
            total.messages_received += load(&slot.messages_received);
            total.messages_sent += load(&slot.messages_sent);
            total.dropped_qos0_slow += load(&slot.dropped_qos0_slow);
            total.dropped_queue_full += load(&slot.dropped_queue_full);
            total.dropped_expired += load(&slot.dropped_expired);
            total.dropped_too_large += load(&slot.dropped_too_large);
            total.dropped_not_authorized += load(&slot.dropped_not_authorized);
        }
        (total, self.started.elapsed().as_secs())
    }

    fn ready(&self) -> bool {
        self.shards.iter().all(|slot| slot.ready.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition of every counter, per shard.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let per_shard: [(&str, &str, &str, Field); 5] = [
            (
                "shardmq_retained_messages",
                "gauge",
                "Retained messages kept in full, by partition.",
                |s| &s.retained,
            ),
            ("shardmq_connections", "gauge", "Client connections.", |s| &s.connections),
            ("shardmq_sessions", "gauge", "Sessions, connected or not.", |s| &s.sessions),
            (
                "shardmq_messages_received_total",
                "counter",
                "PUBLISH packets received from clients.",
                |s| &s.messages_received,
            ),
            ("shardmq_messages_sent_total", "counter", "PUBLISH packets sent to clients.", |s| {
                &s.messages_sent
            }),
        ];
        for (name, kind, help, field) in per_shard {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, slot) in self.shards.iter().enumerate() {
                let value = field(slot).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
            }
        }
        let name = "shardmq_messages_dropped_total";
        let _ =
            writeln!(out, "# HELP {name} Messages not delivered, by cause.\n# TYPE {name} counter");
        let causes: [(&str, Field); 5] = [
            ("qos0_slow_consumer", |s| &s.dropped_qos0_slow),
            ("queue_full", |s| &s.dropped_queue_full),
            ("expired", |s| &s.dropped_expired),
            ("too_large_for_client", |s| &s.dropped_too_large),
            ("not_authorized", |s| &s.dropped_not_authorized),
        ];
        for (shard, slot) in self.shards.iter().enumerate() {
            for (cause, field) in causes {
                let value = field(slot).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{shard=\"{shard}\",cause=\"{cause}\"}} {value}");
            }
        }
        let name = "shardmq_storage_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Storage group commits (fsync included) by duration.\n# TYPE {name} histogram"
        );
        for (shard, slot) in self.shards.iter().enumerate() {
            let mut cumulative = 0;
            for (index, bound) in COMMIT_BUCKETS_SECS.iter().enumerate() {
                cumulative += slot.commit_buckets[index].load(Ordering::Relaxed);
                let _ =
                    writeln!(out, "{name}_bucket{{shard=\"{shard}\",le=\"{bound}\"}} {cumulative}");
            }
            // From the buckets (the overflow one included), so that the exposition is
            // consistent however the relaxed counters interleave with a commit.
            let count =
                cumulative + slot.commit_buckets[COMMIT_BUCKETS_SECS.len()].load(Ordering::Relaxed);
            let sum = slot.commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{shard=\"{shard}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {count}");
        }
        if let Some(etcd) = self.etcd.get() {
            let stats = etcd();
            let counters = [
                ("shardmq_etcd_claims_total", "Ownership claims received.", stats.claims),
                ("shardmq_etcd_txns_total", "Ownership transactions sent to etcd.", stats.txns),
                (
                    "shardmq_etcd_txn_ops_total",
                    "Operations in those transactions (ops/txns is the batch size).",
                    stats.txn_ops,
                ),
                (
                    "shardmq_etcd_txns_committed_total",
                    "Transactions committed.",
                    stats.txns_committed,
                ),
                (
                    "shardmq_etcd_txns_compare_failed_total",
                    "Transactions that lost a compare.",
                    stats.txns_compare_failed,
                ),
                (
                    "shardmq_etcd_txns_failed_total",
                    "Transactions that timed out or failed (etcd unreachable).",
                    stats.txns_failed,
                ),
            ];
            for (name, help, value) in counters {
                let _ =
                    writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
            }
        }
        let name = "shardmq_uptime_seconds";
        let uptime = self.started.elapsed().as_secs();
        let _ = writeln!(
            out,
            "# HELP {name} Seconds since the broker started.\n# TYPE {name} gauge\n{name} {uptime}"
        );
        out
    }
}

/// Serves `/metrics`, `/health` and `/ready` on `address` from a thread of its own. `ready`
/// adds what the node knows beyond its shards (in a cluster: whether it may serve).
pub fn start(
    address: SocketAddr,
    counters: Arc<NodeCounters>,
    ready: impl Fn() -> bool + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let server = tiny_http::Server::http(address)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("cannot listen for the admin endpoint on {address}"))?;
    let bound =
        server.server_addr().to_ip().context("the admin endpoint is not on an IP address")?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for request in server.incoming_requests() {
            let (status, body, kind) = match (request.method(), request.url()) {
                (tiny_http::Method::Get, "/metrics") => {
                    (200, counters.render(), "text/plain; version=0.0.4; charset=utf-8")
                }
                (tiny_http::Method::Get, "/health") => (200, "ok\n".to_owned(), "text/plain"),
                (tiny_http::Method::Get, "/ready") if counters.ready() && ready() => {
                    (200, "ready\n".to_owned(), "text/plain")
                }
                (tiny_http::Method::Get, "/ready") => (503, "not ready\n".to_owned(), "text/plain"),
                _ => (404, "not found\n".to_owned(), "text/plain"),
            };
            let mut response = tiny_http::Response::from_string(body).with_status_code(status);
            if let Ok(header) = tiny_http::Header::from_bytes(&b"Content-Type"[..], kind.as_bytes())
            {
                response = response.with_header(header);
            }
            // A client that went away is its own problem.
            let _ = request.respond(response);
        }
    })?;
    Ok(bound)
}

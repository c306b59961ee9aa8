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
}

/// Reads one counter of a shard's slot.
type Field = fn(&ShardSlot) -> &AtomicU64;

/// Every shard's counters, shared with the admin thread.
#[derive(Debug)]
pub struct NodeCounters {
    shards: Vec<ShardSlot>,
    started: Instant,
}

impl NodeCounters {
    pub fn new(shards: usize) -> NodeCounters {
        NodeCounters {
            shards: (0..shards).map(|_| ShardSlot::default()).collect(),
            started: Instant::now(),
        }
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
        let per_shard: [(&str, &str, &str, Field); 4] = [
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

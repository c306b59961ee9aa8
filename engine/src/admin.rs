//! The admin endpoint (`--admin-listen`): Prometheus `/metrics`, `/health`, `/ready` and the
//! client API (`/api/v1/clients`: list, inspect, kick), served by a small blocking HTTP server
//! on a thread of its own, never on a shard.
//!
//! The admin thread reaches a shard through a bounded channel per shard ([`Shards`]), which a
//! task on that shard ([`answer_requests`]) drains, answering from the shard's state on a
//! one-slot channel the admin thread waits on with a timeout (503 past it). A client's
//! questions go to its home shard only; a listing asks every shard for one bounded page.
//!
//! Counters are gathered without locks on the data path: each shard copies its own counters
//! ([`ShardStats`]) into its slot of [`NodeCounters`] on every tick (250 ms), with relaxed
//! stores, and the admin thread sums the slots when it is asked. A scrape therefore sees each
//! shard as of its last tick.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use shardmq_cluster::control::ControlStats;
use shardmq_io::codec::ProtocolVersion;
use shardmq_io::runtime;
use shardmq_shard::{
    home_shard, ClientDetail, ClientSummary, KickSession, Kicked, Presence, QueueGauges, ShardId,
    ShardStats, WillState,
};

use crate::server::ShardContext;

/// One number a shard publishes every tick (a field of [`ShardStats`]) and how `/metrics`
/// shows it. Adding a shard counter is a field of `ShardStats` and an entry of
/// [`SHARD_METRICS`]: the slots, the publishing, the totals and the exposition follow.
struct ShardMetric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// The label (name, value) that tells this series from the others of the same metric.
    label: Option<(&'static str, &'static str)>,
    read: fn(&ShardStats) -> u64,
    add: fn(&mut ShardStats, u64),
}

/// A [`ShardMetric`] of a field of [`ShardStats`] (an array element for labelled series).
macro_rules! metric {
    ($name:literal, $kind:literal, $help:literal, $label:expr, $($field:tt)+) => {
        ShardMetric {
            name: $name,
            kind: $kind,
            help: $help,
            label: $label,
            read: |stats| stats.$($field)+,
            add: |stats, value| stats.$($field)+ += value,
        }
    };
}

/// Every shard counter `/metrics` shows; series of one metric are adjacent.
const SHARD_METRICS: [ShardMetric; 38] = [
    metric!("shardmq_connections", "gauge", "Client connections.", None, connections),
    metric!("shardmq_sessions", "gauge", "Sessions, connected or not.", None, sessions),
    metric!(
        "shardmq_retained_messages",
        "gauge",
        "Retained messages kept in full, by partition.",
        None,
        retained
    ),
    metric!(
        "shardmq_retained_refused_total",
        "counter",
        "Retained messages delivered but not retained: the partition's share of \
         max_retained_messages or max_retained_bytes was full.",
        None,
        retained_refused
    ),
    metric!(
        "shardmq_subscriptions_refused_total",
        "counter",
        "Subscriptions refused with 0x97 (3.1.1: 0x80): the client was at max_subscriptions or \
         max_subscription_bytes.",
        None,
        subscriptions_refused
    ),
    metric!(
        "shardmq_messages_received_total",
        "counter",
        "PUBLISH packets received from clients, by QoS.",
        Some(("qos", "0")),
        messages_received[0]
    ),
    metric!("shardmq_messages_received_total", "", "", Some(("qos", "1")), messages_received[1]),
    metric!("shardmq_messages_received_total", "", "", Some(("qos", "2")), messages_received[2]),
    metric!(
        "shardmq_messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients, by QoS.",
        Some(("qos", "0")),
        messages_sent[0]
    ),
    metric!("shardmq_messages_sent_total", "", "", Some(("qos", "1")), messages_sent[1]),
    metric!("shardmq_messages_sent_total", "", "", Some(("qos", "2")), messages_sent[2]),
    metric!(
        "shardmq_payload_bytes_received_total",
        "counter",
        "Payload bytes of the PUBLISH packets received from clients, by QoS.",
        Some(("qos", "0")),
        payload_bytes_received[0]
    ),
    metric!(
        "shardmq_payload_bytes_received_total",
        "",
        "",
        Some(("qos", "1")),
        payload_bytes_received[1]
    ),
    metric!(
        "shardmq_payload_bytes_received_total",
        "",
        "",
        Some(("qos", "2")),
        payload_bytes_received[2]
    ),
    metric!(
        "shardmq_payload_bytes_sent_total",
        "counter",
        "Payload bytes of the PUBLISH packets sent to clients, by QoS.",
        Some(("qos", "0")),
        payload_bytes_sent[0]
    ),
    metric!("shardmq_payload_bytes_sent_total", "", "", Some(("qos", "1")), payload_bytes_sent[1]),
    metric!("shardmq_payload_bytes_sent_total", "", "", Some(("qos", "2")), payload_bytes_sent[2]),
    metric!(
        "shardmq_bytes_received_total",
        "counter",
        "Bytes of the packets clients sent after CONNECT.",
        None,
        bytes_received
    ),
    metric!(
        "shardmq_bytes_sent_total",
        "counter",
        "Bytes handed to clients' sockets.",
        None,
        bytes_sent
    ),
    metric!(
        "shardmq_messages_dropped_total",
        "counter",
        "Messages not delivered, by cause.",
        Some(("cause", "qos0_slow_consumer")),
        dropped_qos0_slow
    ),
    metric!(
        "shardmq_messages_dropped_total",
        "",
        "",
        Some(("cause", "queue_full")),
        dropped_queue_full
    ),
    metric!("shardmq_messages_dropped_total", "", "", Some(("cause", "expired")), dropped_expired),
    metric!(
        "shardmq_messages_dropped_total",
        "",
        "",
        Some(("cause", "too_large_for_client")),
        dropped_too_large
    ),
    metric!(
        "shardmq_messages_dropped_total",
        "",
        "",
        Some(("cause", "not_authorized")),
        dropped_not_authorized
    ),
    metric!(
        "shardmq_connects_refused_total",
        "counter",
        "CONNECTs refused before reaching a session, by cause (etcd_busy: etcd cannot take the \
         claim in time, CONNACK 0x89; etcd_unavailable: etcd does not answer, or the claim timed out, \
         lost a race or its takeover failed, 0x88; fenced: the node may not serve, 0x88; ws_origin: \
         a WebSocket upgrade from a web page that may not use the broker, HTTP 403; \
         session_of_another_user: the client id has a session of another user, 0x87; \
         login_backoff: its source address used up its failed-login budget, 0x9F; login_banned: \
         its source address is banned for failed logins, 0x8A).",
        Some(("cause", "etcd_busy")),
        connects_refused[0]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "etcd_unavailable")),
        connects_refused[1]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "fenced")),
        connects_refused[2]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "connect_rate")),
        connects_refused[3]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "memory")),
        connects_refused[4]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "max_connections")),
        connects_refused[5]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "stopping")),
        connects_refused[6]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "password_checks_busy")),
        connects_refused[7]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "not_authenticated")),
        connects_refused[8]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "ws_origin")),
        connects_refused[9]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "session_of_another_user")),
        connects_refused[10]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "login_backoff")),
        connects_refused[11]
    ),
    metric!(
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "login_banned")),
        connects_refused[12]
    ),
    metric!(
        "shardmq_client_throttled_total",
        "counter",
        "Times a connection went over max_client_message_rate or max_client_byte_rate and was \
         not read until its budget refilled.",
        None,
        throttled
    ),
];

/// One shard's counters as of its last tick.
#[derive(Debug)]
struct ShardSlot {
    ready: AtomicBool,
    /// The values of [`SHARD_METRICS`], in order.
    values: [AtomicU64; SHARD_METRICS.len()],
    /// Storage group commits by duration: counts per bucket of [`COMMIT_BUCKETS_SECS`] (and
    /// one past the last), and their total duration in microseconds.
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_SECS.len() + 1],
    commit_micros: AtomicU64,
}

impl Default for ShardSlot {
    fn default() -> ShardSlot {
        ShardSlot {
            ready: AtomicBool::new(false),
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            commit_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            commit_micros: AtomicU64::new(0),
        }
    }
}

/// Upper bounds (seconds) of the storage commit latency histogram's buckets: an fsync'd group
/// commit takes from tens of microseconds (no fsync) to tens of milliseconds (a slow disk).
const COMMIT_BUCKETS_SECS: [f64; 10] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// What the node's control plane counted (etcd ownership transactions), read when scraped.
pub type EtcdStats = Box<dyn Fn() -> shardmq_cluster::control::ControlStats + Send + Sync>;

/// What the node's links counted, read when scraped.
#[derive(Debug, Default)]
pub struct LinkFigures {
    /// Whether node links use TLS.
    pub tls: bool,
    /// Accepted links refused before they were let in, by reason.
    pub refused: Vec<(&'static str, u64)>,
    /// Links this node opened whose TLS handshake failed.
    pub handshakes_failed: u64,
}

pub type LinkStatsFn = Box<dyn Fn() -> LinkFigures + Send + Sync>;

/// What the node's password logins counted, read when scraped (see `login_guard`).
#[derive(Debug, Default)]
pub struct LoginFigures {
    /// Password checks that failed.
    pub failures: u64,
    /// Sources banned now.
    pub banned_sources: usize,
    /// Password checks waiting for a check thread now.
    pub checks_queued: usize,
}

pub type LoginStatsFn = Box<dyn Fn() -> LoginFigures + Send + Sync>;

/// Every shard's counters, shared with the admin thread.
pub struct NodeCounters {
    shards: Vec<ShardSlot>,
    started: Instant,
    etcd: std::sync::OnceLock<EtcdStats>,
    links: std::sync::OnceLock<LinkStatsFn>,
    logins: std::sync::OnceLock<LoginStatsFn>,
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
            links: std::sync::OnceLock::new(),
            logins: std::sync::OnceLock::new(),
        }
    }

    /// Where `/metrics` reads the password logins' counters from.
    pub fn set_logins(&self, stats: LoginStatsFn) {
        let _ = self.logins.set(stats);
    }

    /// In a cluster: where `/metrics` reads the node links' counters from.
    pub fn set_links(&self, stats: LinkStatsFn) {
        let _ = self.links.set(stats);
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
        for (metric, value) in SHARD_METRICS.iter().zip(&slot.values) {
            value.store((metric.read)(stats), Ordering::Relaxed);
        }
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
            for (metric, value) in SHARD_METRICS.iter().zip(&slot.values) {
                (metric.add)(&mut total, value.load(Ordering::Relaxed));
            }
        }
        (total, self.started.elapsed().as_secs())
    }

    fn ready(&self) -> bool {
        self.shards.iter().all(|slot| slot.ready.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition of every counter, per shard, with the queue gauges the
    /// shards answered (`None` for a shard that did not answer in time: left out).
    pub fn render(&self, gauges: &[Option<QueueGauges>]) -> String {
        let mut out = String::new();
        for (index, metric) in SHARD_METRICS.iter().enumerate() {
            let name = metric.name;
            let first = index == 0 || SHARD_METRICS[index - 1].name != name;
            if !first {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", metric.help, metric.kind);
            // Every series of the metric, shard by shard.
            let series = SHARD_METRICS.iter().enumerate().skip(index);
            let series: Vec<_> = series.take_while(|(_, m)| m.name == name).collect();
            for (shard, slot) in self.shards.iter().enumerate() {
                for &(at, metric) in &series {
                    let value = slot.values[at].load(Ordering::Relaxed);
                    let label = match metric.label {
                        Some((key, value)) => format!(",{key}=\"{value}\""),
                        None => String::new(),
                    };
                    let _ = writeln!(out, "{name}{{shard=\"{shard}\"{label}}} {value}");
                }
            }
        }
        render_queue_gauges(&mut out, gauges);
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
            render_etcd(&mut out, &etcd());
        }
        if let Some(links) = self.links.get() {
            render_links(&mut out, &links());
        }
        if let Some(logins) = self.logins.get() {
            render_logins(&mut out, &logins());
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

/// Writes the password logins' figures.
fn render_logins(out: &mut String, logins: &LoginFigures) {
    let figures = [
        (
            "shardmq_login_failures_total",
            "counter",
            "Password checks that failed (refusals without a check are counted in \
             shardmq_connects_refused_total, causes login_backoff and login_banned).",
            logins.failures as f64,
        ),
        (
            "shardmq_login_sources_banned",
            "gauge",
            "Source addresses banned now for failed logins (login_ban_secs).",
            logins.banned_sources as f64,
        ),
        (
            "shardmq_password_checks_queued",
            "gauge",
            "Password checks waiting for a check thread now.",
            logins.checks_queued as f64,
        ),
    ];
    for (name, kind, help, value) in figures {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// Writes the node links' figures: whether they use TLS, refusals by reason, failed handshakes.
fn render_links(out: &mut String, links: &LinkFigures) {
    let name = "shardmq_link_tls";
    let _ = writeln!(
        out,
        "# HELP {name} 1 when node links use TLS with the cluster CA, 0 when plaintext.\n\
         # TYPE {name} gauge\n{name} {}",
        u8::from(links.tls)
    );
    let name = "shardmq_link_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Accepted node links closed before they were let in, by reason (tls: the \
         handshake failed, another CA or plaintext; timeout: no handshake and hello in time; \
         too_many_unauthenticated; identity: certificate and hello name different nodes; \
         cluster: another cluster; frame: no hello first).\n# TYPE {name} counter"
    );
    for (reason, count) in &links.refused {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {count}");
    }
    let name = "shardmq_link_handshakes_failed_total";
    let _ = writeln!(
        out,
        "# HELP {name} Node links this node opened whose TLS handshake failed.\n\
         # TYPE {name} counter\n{name} {}",
        links.handshakes_failed
    );
}

/// Writes the control plane's figures: etcd transactions, keepalives, flow control and
/// admission, fencing.
fn render_etcd(out: &mut String, stats: &ControlStats) {
    for (name, help, value) in etcd_counters(stats) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    for (name, help, value) in etcd_gauges(stats) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    render_etcd_histograms(out, stats);
}

fn etcd_counters(stats: &ControlStats) -> Vec<(&'static str, &'static str, u64)> {
    let core = &stats.core;
    vec![
        ("shardmq_etcd_claims_total", "Ownership claims received.", stats.claims),
        ("shardmq_etcd_txns_total", "Ownership transactions sent to etcd.", stats.txns),
        (
            "shardmq_etcd_txn_ops_total",
            "Operations in those transactions (ops/txns is the batch size).",
            stats.txn_ops,
        ),
        (
            "shardmq_etcd_txns_committed_total",
            "Transactions that wrote at least one operation.",
            stats.txns_committed,
        ),
        (
            "shardmq_etcd_txns_compare_failed_total",
            "Transactions whose every operation lost its compare.",
            stats.txns_compare_failed,
        ),
        (
            "shardmq_etcd_txns_failed_total",
            "Transactions that timed out or failed (etcd unreachable or refusing).",
            stats.txns_failed,
        ),
        (
            "shardmq_etcd_claims_busy_total",
            "Connects' claims refused at once: etcd could not take them in time.",
            core.claims_busy,
        ),
        (
            "shardmq_etcd_claims_shed_total",
            "Connects' claims refused before they were sent: too little time left.",
            core.claims_shed,
        ),
        (
            "shardmq_etcd_claims_superseded_total",
            "Claims refused because a newer connect of the same client id arrived.",
            core.claims_superseded,
        ),
        (
            "shardmq_etcd_claims_timed_out_total",
            "Claims not answered within the claim timeout.",
            core.claims_timed_out,
        ),
        ("shardmq_etcd_keepalives_sent_total", "Lease keepalives sent.", core.keepalives_sent),
        (
            "shardmq_etcd_keepalives_answered_total",
            "Lease keepalives etcd answered.",
            core.keepalives_answered,
        ),
        (
            "shardmq_etcd_keepalive_streams_total",
            "Keepalive streams opened (one more each time etcd or the connection ended one).",
            stats.keepalive_streams,
        ),
        (
            "shardmq_etcd_keepalives_dropped_total",
            "Keepalives not sent: as many stream opens as allowed were under way.",
            stats.keepalives_dropped,
        ),
        (
            "shardmq_etcd_fences_total",
            "Times this node stopped serving: its lease not shown alive in time.",
            core.fences,
        ),
        (
            "shardmq_etcd_resumes_total",
            "Times it served again under the same lease after a fence.",
            core.resumes,
        ),
        (
            "shardmq_etcd_leases_lost_total",
            "Times etcd said this node's lease was gone.",
            core.leases_lost,
        ),
        (
            "shardmq_etcd_congestion_signals_total",
            "Times etcd said it was falling behind (a renewal refused while its apply loop \
             caught up, or too many requests): each halves the window.",
            core.congestion_signals,
        ),
    ]
}

fn etcd_gauges(stats: &ControlStats) -> Vec<(&'static str, &'static str, f64)> {
    let core = &stats.core;
    let seconds = |duration: Option<Duration>| duration.map_or(0.0, |d| d.as_secs_f64());
    vec![
        (
            "shardmq_etcd_txn_window",
            "Transactions per round trip allowed now, adapting to etcd's latency (below 1, \
             one every 1/window round trips).",
            core.window,
        ),
        (
            "shardmq_etcd_txn_latency_mean_seconds",
            "The transactions' mean latency lately.",
            seconds(core.latency_mean),
        ),
        (
            "shardmq_etcd_txn_latency_target_seconds",
            "The latency above which the window shrinks.",
            core.latency_target.as_secs_f64(),
        ),
        ("shardmq_etcd_txns_in_flight", "Transactions in flight now.", core.txns_in_flight as f64),
        (
            "shardmq_etcd_claims_queued",
            "Connects' claims waiting to be sent.",
            core.claims_queued as f64,
        ),
        (
            "shardmq_etcd_background_queued",
            "Re-claims of stored sessions and releases waiting to be sent.",
            core.background_queued as f64,
        ),
        (
            "shardmq_etcd_answers_held",
            "Claim answers held until the quarantine after saying etcd was unreachable ends.",
            core.answers_held as f64,
        ),
    ]
}

fn render_etcd_histograms(out: &mut String, stats: &ControlStats) {
    use shardmq_cluster::control::{TXN_LATENCY_BUCKETS_SECS, TXN_OPS_BUCKETS};
    let latency_bounds: Vec<String> = TXN_LATENCY_BUCKETS_SECS.iter().map(f64::to_string).collect();
    render_histogram(
        out,
        "shardmq_etcd_txn_seconds",
        "Ownership transactions by duration, sent to answered (failures included).",
        &latency_bounds,
        &stats.txn_latency_buckets,
        stats.txn_latency_micros as f64 / 1e6,
    );
    render_histogram(
        out,
        "shardmq_etcd_keepalive_seconds",
        "Lease keepalives by round trip, sent to answered.",
        &latency_bounds,
        &stats.keepalive_latency_buckets,
        stats.keepalive_latency_micros as f64 / 1e6,
    );
    let ops_bounds: Vec<String> = TXN_OPS_BUCKETS.iter().map(u64::to_string).collect();
    render_histogram(
        out,
        "shardmq_etcd_txn_ops",
        "Ownership transactions by operations (the batch size).",
        &ops_bounds,
        &stats.txn_ops_buckets,
        stats.txn_ops as f64,
    );
}

/// Writes a node-wide histogram: `buckets` counts per bound of `bounds`, the last one past them
/// all.
fn render_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[String],
    buckets: &[u64],
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = cumulative + buckets.get(bounds.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

/// Writes the queue gauges each shard answered with.
fn render_queue_gauges(out: &mut String, gauges: &[Option<QueueGauges>]) {
    type Gauge = fn(&QueueGauges) -> u64;
    type Label = Option<(&'static str, &'static str)>;
    let families: [(&str, &str, Label, Gauge); 7] = [
        (
            "shardmq_queued_messages",
            "Messages queued in sessions (offline, or waiting for the in-flight window).",
            None,
            |g| g.queued_messages,
        ),
        (
            "shardmq_queued_messages_offline",
            "Messages queued for sessions without a connection.",
            None,
            |g| g.queued_messages_offline,
        ),
        ("shardmq_queued_bytes", "Bytes of the queued messages.", None, |g| g.queued_bytes),
        (
            "shardmq_inflight_messages",
            "QoS 1/2 messages in flight, out (to clients) and in (QoS 2 from clients).",
            Some(("direction", "out")),
            |g| g.inflight_out,
        ),
        ("shardmq_inflight_messages", "", Some(("direction", "in")), |g| g.inflight_in),
        (
            "shardmq_session_queue_largest",
            "Messages in the longest queue of one session.",
            None,
            |g| g.largest_queue,
        ),
        (
            "shardmq_throttled_connections",
            "Connections not read right now because they are over their rate limit.",
            None,
            |g| g.throttled_connections,
        ),
    ];
    for (name, help, label, read) in families {
        if !help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        }
        for (shard, gauges) in gauges.iter().enumerate() {
            let Some(gauges) = gauges else { continue };
            let label = label.map_or(String::new(), |(key, value)| format!(",{key}=\"{value}\""));
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"{label}}} {}", read(gauges));
        }
    }
}

// -------------------------------------------------------------------------------------------
// Reaching the shards
// -------------------------------------------------------------------------------------------

/// Requests waiting for one shard at most; past it the API answers 503 (busy).
const SHARD_REQUESTS_MAX: usize = 64;
/// How long the admin thread waits for a shard's answer before answering 503.
const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a scrape waits for the queue gauges of a shard before leaving them out.
const GAUGES_TIMEOUT: Duration = Duration::from_secs(1);
/// Clients per page of `/api/v1/clients` when `limit` is not given, and at most.
const CLIENTS_PAGE_DEFAULT: usize = 100;
const CLIENTS_PAGE_MAX: usize = 10_000;

/// What the admin thread asks a shard.
#[derive(Debug)]
pub(crate) enum Query {
    Page { after: Option<String>, limit: usize, presence: Presence },
    Detail(String),
    Kick { client_id: String, session: KickSession },
    Gauges,
}

/// What a shard answers.
#[derive(Debug)]
pub(crate) enum Answer {
    Page(Vec<ClientSummary>),
    Detail(Option<Box<ClientDetail>>),
    Kicked(Option<Kicked>),
    Gauges(QueueGauges),
}

/// A question for a shard, with where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    query: Query,
    reply: std::sync::mpsc::SyncSender<Answer>,
}

/// Lives on the admin thread: a bounded channel to each shard, which a task of that shard
/// ([`answer_requests`]) drains. The answer comes back on a one-slot channel of its own.
#[derive(Debug, Clone)]
pub struct Shards {
    senders: Vec<async_channel::Sender<Request>>,
}

/// The receiving end for each shard, in shard order.
pub(crate) type ShardRequests = async_channel::Receiver<Request>;

/// Why a shard gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    /// Its request queue is full.
    Busy,
    /// No answer within the timeout (or the shard is gone).
    TimedOut,
}

impl Shards {
    /// The channels of a node of `shards` shards.
    pub(crate) fn new(shards: usize) -> (Shards, Vec<ShardRequests>) {
        let (senders, receivers) =
            (0..shards).map(|_| async_channel::bounded(SHARD_REQUESTS_MAX)).unzip();
        (Shards { senders }, receivers)
    }

    fn count(&self) -> u16 {
        self.senders.len() as u16
    }

    /// Sends `query` to every shard in `shards` and waits for each answer (up to `timeout`
    /// overall, so a node of many shards does not wait shard after shard).
    fn ask_each(
        &self,
        shards: impl Iterator<Item = ShardId>,
        mut query: impl FnMut() -> Query,
        timeout: Duration,
    ) -> Vec<Result<Answer, Unanswered>> {
        let deadline = Instant::now() + timeout;
        let waiting: Vec<_> = shards
            .map(|shard| {
                let (reply, answer) = std::sync::mpsc::sync_channel(1);
                let request = Request { query: query(), reply };
                match self.senders.get(shard.index()).map(|s| s.try_send(request)) {
                    Some(Ok(())) => Ok(answer),
                    Some(Err(async_channel::TrySendError::Full(_))) => Err(Unanswered::Busy),
                    _ => Err(Unanswered::TimedOut),
                }
            })
            .collect();
        waiting
            .into_iter()
            .map(|answer| {
                let left = deadline.saturating_duration_since(Instant::now());
                answer?.recv_timeout(left).map_err(|_| Unanswered::TimedOut)
            })
            .collect()
    }

    fn ask(&self, shard: ShardId, query: Query) -> Result<Answer, Unanswered> {
        let mut query = Some(query);
        let answer = self.ask_each(
            std::iter::once(shard),
            || query.take().unwrap_or(Query::Gauges),
            SHARD_ANSWER_TIMEOUT,
        );
        answer.into_iter().next().unwrap_or(Err(Unanswered::TimedOut))
    }

    /// Every shard's queue gauges, `None` for those that did not answer in time.
    fn gauges(&self) -> Vec<Option<QueueGauges>> {
        let all = (0..self.count()).map(ShardId);
        self.ask_each(all, || Query::Gauges, GAUGES_TIMEOUT)
            .into_iter()
            .map(|answer| match answer {
                Ok(Answer::Gauges(gauges)) => Some(gauges),
                _ => None,
            })
            .collect()
    }
}

/// Lives on each shard: answers the admin thread's questions from the shard's state, one per
/// turn, between the shard's other events.
pub(crate) async fn answer_requests(context: Rc<ShardContext>, requests: ShardRequests) {
    while let Ok(Request { query, reply }) = requests.recv().await {
        let now = Instant::now();
        let answer = match query {
            Query::Page { after, limit, presence } => {
                let state = context.state.borrow();
                let mut page = state.client_page(after.as_deref(), limit, presence, now);
                for client in &mut page {
                    client.peer = client.conn.and_then(|conn| context.peer_addr(conn));
                }
                Answer::Page(page)
            }
            Query::Detail(client_id) => {
                let state = context.state.borrow();
                let mut detail = state.client_detail(&client_id, now);
                if let Some(detail) = &mut detail {
                    let conn = detail.summary.conn;
                    detail.summary.peer = conn.and_then(|conn| context.peer_addr(conn));
                }
                Answer::Detail(detail.map(Box::new))
            }
            Query::Kick { client_id, session } => {
                let kicked = context.state.borrow_mut().kick(&client_id, session, now);
                context.apply_effects();
                Answer::Kicked(kicked)
            }
            Query::Gauges => Answer::Gauges(context.state.borrow().queue_gauges()),
        };
        // The admin thread may have given up waiting; then nobody wants the answer.
        let _ = reply.try_send(answer);
        runtime::yield_if_needed().await;
    }
}

// -------------------------------------------------------------------------------------------
// HTTP
// -------------------------------------------------------------------------------------------

/// Serves `/metrics`, `/health`, `/ready` and the client API (`/api/v1/...`) on `address`
/// from threads of its own (`admin_http`: bounded, and only for `Host` names a web page cannot
/// rebind: IP addresses, `localhost` and `hosts`). `ready` adds what the node knows beyond its
/// shards (in a cluster: whether it may serve).
pub fn start(
    address: SocketAddr,
    hosts: Vec<String>,
    counters: Arc<NodeCounters>,
    shards: Shards,
    ready: impl Fn() -> bool + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen for the admin endpoint on {address}"))?;
    let bound = listener.local_addr().context("the admin endpoint has no address")?;
    let refusals = Arc::new(crate::admin_http::AdminRefusals::default());
    // One request at a time reaches the shards, as with one thread before: the bound on
    // threads is the HTTP server's, not a licence to ask every shard four times at once.
    let served = std::sync::Mutex::new((counters, shards, ready, refusals.clone()));
    let handle = move |request: &crate::admin_http::Request| {
        use crate::admin_http::{Method, Response};
        if request.method == Method::Get && request.path == "/health" {
            // Never behind a slow question to the shards: a liveness probe must not fail
            // because another request waits for a busy shard.
            return Response { status: 200, body: "ok\n".into(), content_type: "text/plain" };
        }
        let served = served.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (counters, shards, ready, refusals) = &*served;
        answer(counters, shards, ready, refusals, request)
    };
    crate::admin_http::serve(listener, hosts, refusals, Arc::new(handle))
        .context("cannot start the admin endpoint's threads")?;
    Ok(bound)
}

/// The answer to one admin request.
fn answer(
    counters: &NodeCounters,
    shards: &Shards,
    ready: &impl Fn() -> bool,
    refusals: &crate::admin_http::AdminRefusals,
    request: &crate::admin_http::Request,
) -> crate::admin_http::Response {
    use crate::admin_http::{Method, Response};
    let (status, body, content_type) = match (request.method, request.path.as_str()) {
        (Method::Get, "/metrics") => (
            200,
            counters.render(&shards.gauges()) + &refusals.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (Method::Get, "/health") => (200, "ok\n".to_owned(), "text/plain"),
        (Method::Get, "/ready") if counters.ready() && ready() => {
            (200, "ready\n".to_owned(), "text/plain")
        }
        (Method::Get, "/ready") => (503, "not ready\n".to_owned(), "text/plain"),
        (method, path) if path.starts_with("/api/") => {
            let (status, body) = api(shards, method, path, &request.query);
            (status, format!("{body}\n"), "application/json")
        }
        _ => (404, "not found\n".to_owned(), "text/plain"),
    };
    Response { status, body, content_type }
}

/// A JSON error body.
fn error(status: u16, message: impl Into<String>) -> (u16, Value) {
    (status, json!({ "error": message.into() }))
}

fn unanswered(shard: ShardId, why: Unanswered) -> (u16, Value) {
    match why {
        Unanswered::Busy => error(503, format!("shard {shard} is busy with other requests")),
        Unanswered::TimedOut => error(
            503,
            format!("shard {shard} did not answer within {}s", SHARD_ANSWER_TIMEOUT.as_secs()),
        ),
    }
}

/// The client API: `GET /api/v1/clients` (and `/api/v1/sessions`), `GET` and `DELETE`
/// `/api/v1/clients/{client_id}`.
fn api(
    shards: &Shards,
    method: crate::admin_http::Method,
    path: &str,
    query: &str,
) -> (u16, Value) {
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    let param = |name: &str| params.iter().find(|(key, _)| key == name).map(|(_, v)| v.as_str());
    let rest = path.strip_prefix("/api/v1/");
    match (method, rest) {
        (crate::admin_http::Method::Get, Some("clients" | "sessions")) => {
            let limit = match param("limit").map(str::parse::<usize>) {
                None => CLIENTS_PAGE_DEFAULT,
                Some(Ok(limit)) if (1..=CLIENTS_PAGE_MAX).contains(&limit) => limit,
                Some(_) => {
                    return error(400, format!("limit must be from 1 to {CLIENTS_PAGE_MAX}"))
                }
            };
            let presence = match param("connected") {
                None => Presence::Any,
                Some("true") => Presence::Connected,
                Some("false") => Presence::Offline,
                Some(_) => return error(400, "connected must be true or false"),
            };
            list(shards, param("after"), limit, presence)
        }
        (method, Some(rest)) if rest.starts_with("clients/") => {
            let client_id = percent_decode(&rest["clients/".len()..]);
            let home = home_shard(&client_id, shards.count());
            let not_here =
                || error(404, format!("no session for client id {client_id:?} on this node"));
            match method {
                crate::admin_http::Method::Get => {
                    match shards.ask(home, Query::Detail(client_id.clone())) {
                        Ok(Answer::Detail(Some(detail))) => (200, detail_json(&detail, home)),
                        Ok(_) => not_here(),
                        Err(why) => unanswered(home, why),
                    }
                }
                crate::admin_http::Method::Delete => {
                    let session = match param("clean") {
                        None | Some("false") => KickSession::Keep,
                        Some("true") => KickSession::Discard,
                        Some(_) => return error(400, "clean must be true or false"),
                    };
                    let query = Query::Kick { client_id: client_id.clone(), session };
                    match shards.ask(home, query) {
                        Ok(Answer::Kicked(Some(kicked))) => (
                            200,
                            json!({
                                "client_id": client_id,
                                "disconnected": kicked.disconnected,
                                "session_discarded": kicked.session_ended,
                            }),
                        ),
                        Ok(_) => not_here(),
                        Err(why) => unanswered(home, why),
                    }
                }
                _ => error(405, "use GET or DELETE"),
            }
        }
        (_, Some("clients" | "sessions")) => error(405, "use GET"),
        _ => error(404, "no such API path"),
    }
}

/// One page of the node's sessions in client id order: each shard's page past the cursor,
/// merged and cut to `limit`. `next_after` is the cursor of the next page (absent on the
/// last one).
fn list(shards: &Shards, after: Option<&str>, limit: usize, presence: Presence) -> (u16, Value) {
    let all = (0..shards.count()).map(ShardId);
    // One more than the page from each shard: when the rest are all on one shard, its extra
    // one says there is a next page.
    let query = || Query::Page { after: after.map(str::to_owned), limit: limit + 1, presence };
    let mut page: Vec<(ClientSummary, ShardId)> = Vec::new();
    for (index, answer) in shards.ask_each(all, query, SHARD_ANSWER_TIMEOUT).into_iter().enumerate()
    {
        let shard = ShardId(index as u16);
        match answer {
            Ok(Answer::Page(clients)) => page.extend(clients.into_iter().map(|c| (c, shard))),
            Ok(_) => return error(500, "unexpected answer"),
            Err(why) => return unanswered(shard, why),
        }
    }
    page.sort_by(|(a, _), (b, _)| a.client_id.cmp(&b.client_id));
    let more = page.len() > limit;
    page.truncate(limit);
    let next_after = page.last().filter(|_| more).map(|(last, _)| last.client_id.to_string());
    let clients: Vec<Value> =
        page.iter().map(|(client, shard)| summary_json(client, *shard)).collect();
    (200, json!({ "clients": clients, "next_after": next_after }))
}

fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

/// Unix time (seconds) `ago` before now.
fn unix_secs_ago(ago: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    now.saturating_sub(ago).as_secs()
}

fn summary_json(client: &ClientSummary, shard: ShardId) -> Value {
    json!({
        "client_id": client.client_id.to_string(),
        "connected": client.conn.is_some(),
        "peer_address": client.peer.map(|peer| peer.to_string()),
        "shard": shard.0,
        "protocol": client.protocol.map(protocol_name),
        "username": client.username,
        "keepalive_secs": client.keepalive_secs,
        "session_expiry_secs": client.session_expiry_secs,
        "connected_at": client.connected_for.map(unix_secs_ago),
        "disconnected_at": client.offline_for.map(unix_secs_ago),
        "subscriptions": client.subscriptions,
        "inflight": client.inflight_out,
        "queued": client.queued_messages,
    })
}

fn detail_json(detail: &ClientDetail, shard: ShardId) -> Value {
    let mut value = summary_json(&detail.summary, shard);
    let subscriptions: Vec<Value> = detail
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "filter": s.filter.to_string(),
                "qos": s.qos as u8,
                "no_local": s.no_local,
                "retain_as_published": s.retain_as_published,
                "retain_handling": s.retain_handling as u8,
                "subscription_identifier": s.identifier,
            })
        })
        .collect();
    let will = match detail.will {
        WillState::None => "none",
        WillState::Connected => "set",
        WillState::Delayed => "delayed",
    };
    if let Value::Object(map) = &mut value {
        map.insert("subscription_count".into(), json!(detail.summary.subscriptions));
        map.insert("subscriptions".into(), json!(subscriptions));
        map.insert("queued_bytes".into(), json!(detail.queued_bytes));
        map.insert("inflight_in".into(), json!(detail.inflight_in));
        map.insert("inflight_out".into(), json!(detail.summary.inflight_out));
        map.insert("output_buffer_bytes".into(), json!(detail.output_bytes));
        map.insert("will".into(), json!(will));
        map.insert("paused".into(), json!(detail.paused));
        map.insert("throttled".into(), json!(detail.throttled));
    }
    value
}

/// Decodes `%XX` escapes (and `+` as a space in query strings is not assumed: client ids may
/// contain `+`). Invalid escapes stay as they are; invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use shardmq_shard::ConnectRefusal;

    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("plain+id"), "plain+id");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn every_counter_is_shown_and_summed() {
        let counters = NodeCounters::new(2);
        let stats = ShardStats {
            messages_received: [1, 2, 3],
            bytes_sent: 10,
            throttled: 4,
            dropped_expired: 5,
            ..ShardStats::default()
        };
        counters.publish(0, &stats);
        counters.publish(1, &stats);
        let (total, _) = counters.totals();
        assert_eq!(total.messages_received, [2, 4, 6]);
        assert_eq!(total.bytes_sent, 20);
        assert_eq!(total.throttled, 8);
        let gauges = [Some(QueueGauges { largest_queue: 7, ..QueueGauges::default() }), None];
        let text = counters.render(&gauges);
        assert!(
            text.contains("shardmq_messages_received_total{shard=\"1\",qos=\"2\"} 3"),
            "{text}"
        );
        assert!(text.contains("shardmq_messages_dropped_total{shard=\"0\",cause=\"expired\"} 5"));
        assert!(text.contains("shardmq_session_queue_largest{shard=\"0\"} 7"), "{text}");
        assert!(!text.contains("shardmq_session_queue_largest{shard=\"1\"}"), "{text}");
        assert_eq!(text.matches("# TYPE shardmq_messages_sent_total counter").count(), 1);
        assert_eq!(text.matches("# TYPE shardmq_inflight_messages gauge").count(), 1);
    }

    #[test]
    fn connect_refusals_are_shown_by_cause_in_order() {
        let rows = SHARD_METRICS.iter().filter(|m| m.name == "shardmq_connects_refused_total");
        let labels: Vec<&str> = rows.map(|m| m.label.map_or("", |(_, value)| value)).collect();
        let causes: Vec<&str> = ConnectRefusal::ALL.iter().map(|cause| cause.label()).collect();
        assert_eq!(labels, causes);
        let counters = NodeCounters::new(1);
        let mut stats = ShardStats::default();
        stats.connects_refused[ConnectRefusal::EtcdBusy as usize] = 3;
        counters.publish(0, &stats);
        let text = counters.render(&[None]);
        assert!(
            text.contains("shardmq_connects_refused_total{shard=\"0\",cause=\"etcd_busy\"} 3"),
            "{text}"
        );
    }
}

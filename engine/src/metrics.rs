//! The counters `/metrics` shows and their Prometheus exposition.
//!
//! Counters are gathered without locks on the data path: each shard copies its own counters
//! ([`ShardStats`]) into its slot of [`NodeCounters`] on every tick (250 ms), with relaxed
//! stores, and the admin thread sums the slots when it is asked. A scrape therefore sees each
//! shard as of its last tick.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardmq_cluster::control::ControlStats;
use shardmq_shard::{QueueGauges, ShardStats};

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
const SHARD_METRICS: [ShardMetric; 39] = [
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
         its source address is banned for failed logins, 0x8A; proxy_header: no valid PROXY \
         protocol header on a `proxy_protocol` listener, closed).",
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
        "shardmq_connects_refused_total",
        "",
        "",
        Some(("cause", "proxy_header")),
        connects_refused[13]
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
    /// Nodes in the membership this node last saw in etcd, itself included.
    pub members: usize,
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
    /// Requests to the HTTP authentication service by result (allow, deny, ignore, error), when
    /// one is configured.
    pub http: Option<[u64; 4]>,
    /// Requests to the HTTP ACL service by result, when one is configured.
    pub acl_http: Option<[u64; 4]>,
    /// JWT logins by result (`shardmq_auth::jwt::RESULTS`), when JWT keys are configured.
    pub jwt: Option<[u64; 5]>,
}

pub type LoginStatsFn = Box<dyn Fn() -> LoginFigures + Send + Sync>;

/// One bridge's figures (docs/bridges.md), written by its task and read when scraped.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    pub name: String,
    /// 1 while the link to the remote broker is up.
    pub connected: AtomicU64,
    /// Messages the remote broker took (acknowledged, or sent at QoS 0).
    pub sent: AtomicU64,
    /// Messages from the remote broker published locally.
    pub received: AtomicU64,
    /// Messages waiting for the remote broker (queued and in flight).
    pub queued: AtomicU64,
    /// Messages dropped because the bridge's queue was full.
    pub dropped: AtomicU64,
    /// Connection attempts after the first.
    pub reconnects: AtomicU64,
}

impl BridgeCounters {
    pub fn new(name: &str) -> BridgeCounters {
        BridgeCounters { name: name.to_string(), ..BridgeCounters::default() }
    }
}

/// The per-bridge series, in exposition order: name, type, help, and the figure.
type BridgeSeries = (&'static str, &'static str, &'static str, fn(&BridgeCounters) -> u64);

const BRIDGE_SERIES: [BridgeSeries; 6] = [
    ("shardmq_bridge_connected", "gauge", "1 while the bridge's link is up.", |b| {
        b.connected.load(Ordering::Relaxed)
    }),
    ("shardmq_bridge_sent_total", "counter", "Messages the remote broker took.", |b| {
        b.sent.load(Ordering::Relaxed)
    }),
    ("shardmq_bridge_received_total", "counter", "Messages from the remote broker.", |b| {
        b.received.load(Ordering::Relaxed)
    }),
    ("shardmq_bridge_queued", "gauge", "Messages waiting for the remote broker.", |b| {
        b.queued.load(Ordering::Relaxed)
    }),
    (
        "shardmq_bridge_dropped_total",
        "counter",
        "Messages dropped: the bridge's queue was full.",
        |b| b.dropped.load(Ordering::Relaxed),
    ),
    ("shardmq_bridge_reconnects_total", "counter", "Connection attempts after the first.", |b| {
        b.reconnects.load(Ordering::Relaxed)
    }),
];

fn render_bridges(out: &mut String, bridges: &[Arc<BridgeCounters>]) {
    for (name, kind, help, value) in BRIDGE_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for bridge in bridges {
            let _ = writeln!(out, "{name}{{bridge=\"{}\"}} {}", bridge.name, value(bridge));
        }
    }
}

/// The event webhook's figures (`event_webhook_url`), in events: written by the shards (drops)
/// and its sender thread, read when scraped.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Events the service took (in a 2xx answer to their POST).
    pub sent: AtomicU64,
    /// Events given up on: their POST failed past the retries, or was refused (4xx).
    pub failed: AtomicU64,
    /// Events dropped before any POST: the queue was full.
    pub dropped: AtomicU64,
    /// POSTs sent again after a 5xx, a 429 or a connection error.
    pub retries: AtomicU64,
}

fn render_webhook(out: &mut String, webhook: &WebhookCounters) {
    let series = [
        ("sent", "Client events the event webhook took.", &webhook.sent),
        ("failed", "Client events given up on: POST failed past its retries.", &webhook.failed),
        ("dropped", "Client events dropped: the event webhook's queue was full.", &webhook.dropped),
        ("retries", "POSTs to the event webhook sent again.", &webhook.retries),
    ];
    for (what, help, value) in series {
        let name = format!("shardmq_event_webhook_{what}_total");
        let value = value.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
}

/// Every shard's counters, shared with the admin thread.
pub struct NodeCounters {
    shards: Vec<ShardSlot>,
    started: Instant,
    etcd: std::sync::OnceLock<EtcdStats>,
    links: std::sync::OnceLock<LinkStatsFn>,
    logins: std::sync::OnceLock<LoginStatsFn>,
    bridges: std::sync::OnceLock<Vec<Arc<BridgeCounters>>>,
    webhook: std::sync::OnceLock<Arc<WebhookCounters>>,
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
            bridges: std::sync::OnceLock::new(),
            webhook: std::sync::OnceLock::new(),
        }
    }

    /// Where `/metrics` reads the password logins' counters from.
    pub fn set_logins(&self, stats: LoginStatsFn) {
        let _ = self.logins.set(stats);
    }

    /// The bridges' figures (one entry per configured bridge).
    pub fn set_bridges(&self, bridges: Vec<Arc<BridgeCounters>>) {
        let _ = self.bridges.set(bridges);
    }

    /// The bridges' figures, as [`NodeCounters::set_bridges`] gave them.
    pub fn bridges(&self) -> &[Arc<BridgeCounters>] {
        self.bridges.get().map_or(&[], Vec::as_slice)
    }

    /// The event webhook's figures, when one is configured.
    pub fn set_webhook(&self, webhook: Arc<WebhookCounters>) {
        let _ = self.webhook.set(webhook);
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

    pub(crate) fn ready(&self) -> bool {
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
        if let Some(bridges) = self.bridges.get().filter(|bridges| !bridges.is_empty()) {
            render_bridges(&mut out, bridges);
        }
        if let Some(webhook) = self.webhook.get() {
            render_webhook(&mut out, webhook);
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
    let by_result = [
        (
            "shardmq_auth_http_requests_total",
            "Requests to auth_http_url by result (error: the service failed).",
            &crate::auth_http::RESULTS[..],
            logins.http.as_ref().map(|counts| &counts[..]),
        ),
        (
            "shardmq_acl_http_requests_total",
            "Requests to acl_http_url by result (error: the service failed).",
            &crate::auth_http::RESULTS[..],
            logins.acl_http.as_ref().map(|counts| &counts[..]),
        ),
        (
            "shardmq_auth_jwt_total",
            "CONNECTs with a JWT as password, by result.",
            &shardmq_auth::jwt::RESULTS[..],
            logins.jwt.as_ref().map(|counts| &counts[..]),
        ),
    ];
    for (name, help, results, counts) in by_result {
        let Some(counts) = counts else { continue };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (result, value) in results.iter().zip(counts) {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {value}");
        }
    }
}

/// Writes the cluster's figures: the members this node sees, whether node links use TLS, link
/// refusals by reason, failed handshakes.
fn render_links(out: &mut String, links: &LinkFigures) {
    let name = "shardmq_cluster_members";
    let _ = writeln!(
        out,
        "# HELP {name} Nodes in the cluster's membership as this node last saw it in etcd, \
         itself included.\n# TYPE {name} gauge\n{name} {}",
        links.members
    );
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

#[cfg(test)]
mod tests {
    use shardmq_shard::ConnectRefusal;

    use super::*;

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

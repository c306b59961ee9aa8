//! What a run measured: the raw per-worker report (mergeable across workers and processes), the
//! final report built from it (printed as a table and written as JSON), and the verdict.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::{RunConfig, Scenario, Shape};
use crate::histogram::{Latency, LatencySummary};
use crate::integrity::{PublisherEnd, StreamCheck, StreamEnd};

/// Everything one worker (or, merged, one process or the whole run) measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Connection attempts started.
    pub attempts: u64,
    /// Attempts that got a successful CONNACK.
    pub connected: u64,
    /// Connections still up when the run finished.
    pub stayed_up: u64,
    /// The first attempt's start and the last CONNACK (CLOCK_MONOTONIC ns; 0 when none).
    pub first_attempt_ns: u64,
    pub last_connected_ns: u64,
    /// Failed attempts (set-up: connect, CONNACK, SUBACK) by reason.
    pub failures: BTreeMap<String, u64>,
    /// Connections lost after they were up, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Failed attempts that were retried (`conn --retry`), by reason.
    #[serde(default)]
    pub retries: BTreeMap<String, u64>,
    /// TCP connect start to CONNACK.
    pub connect_latency: Latency,
    /// Intended send time to receipt, one sample per message received (duplicates excluded).
    pub latency: Latency,
    pub publish_start_ns: u64,
    pub sent: u64,
    pub acknowledged: u64,
    pub received: u64,
    /// Messages that did not carry this run's payload header.
    pub foreign: u64,
    /// Messages of this run delivered to a subscriber whose filter does not match them.
    pub unexpected: u64,
    pub last_received_ns: u64,
    pub publishers: Vec<PublisherEnd>,
    pub subscribers: Vec<SubscriberEnd>,
    /// Client tasks still running [`FINISH_GRACE`](crate::worker::FINISH_GRACE) after the run
    /// finished (stuck on a broker that stopped reading or answering): abandoned, not awaited.
    #[serde(default)]
    pub stuck: u64,
}

/// A subscriber's side of the end-of-run check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscriberEnd {
    pub subscriber: u32,
    /// The QoS its SUBACK granted: deliveries come at the lower of this and the publish QoS.
    pub granted_qos: u8,
    /// Its connection was lost before the run finished: its streams' losses are its own.
    pub dropped: bool,
    /// One check per publisher heard from, sorted by publisher.
    pub streams: Vec<(u32, StreamCheck)>,
}

fn min_nonzero(first: u64, second: u64) -> u64 {
    match (first, second) {
        (0, other) | (other, 0) => other,
        (first, second) => first.min(second),
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

impl WorkerReport {
    /// Adds another worker's (or process's) report into this one.
    pub fn merge(&mut self, other: WorkerReport) {
        self.attempts += other.attempts;
        self.connected += other.connected;
        self.stayed_up += other.stayed_up;
        self.first_attempt_ns = min_nonzero(self.first_attempt_ns, other.first_attempt_ns);
        self.last_connected_ns = self.last_connected_ns.max(other.last_connected_ns);
        add_counts(&mut self.failures, &other.failures);
        add_counts(&mut self.dropped, &other.dropped);
        add_counts(&mut self.retries, &other.retries);
        self.connect_latency.merge(&other.connect_latency);
        self.latency.merge(&other.latency);
        self.publish_start_ns = self.publish_start_ns.max(other.publish_start_ns);
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.received += other.received;
        self.foreign += other.foreign;
        self.unexpected += other.unexpected;
        self.last_received_ns = self.last_received_ns.max(other.last_received_ns);
        self.publishers.extend(other.publishers);
        self.subscribers.extend(other.subscribers);
        self.stuck += other.stuck;
    }
}

/// The final, machine-readable report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub config: RunConfig,
    /// True when nothing in `problems`: every client set up, nothing dropped, no QoS 1/2 loss.
    pub passed: bool,
    pub problems: Vec<String>,
    /// Ctrl-C or SIGTERM ended the run early; the numbers cover what ran.
    pub stopped_early: bool,
    pub elapsed_secs: f64,
    pub connections: ConnectionsReport,
    pub messages: Option<MessagesReport>,
    /// The `retained` scenario's delivery check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<crate::retained::RetainedReport>,
    /// The `churn` scenario's reconnect and queued-delivery check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<crate::churn::ChurnReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    /// Failed attempts by reason: `refused`, `timeout`, `reset`, `closed_by_broker`,
    /// `connack_0xNN`, `suback_0xNN`, `ports_exhausted`, `out_of_descriptors`, ...
    pub failures: BTreeMap<String, u64>,
    /// Connections lost after they were up, by reason (same names, plus `keepalive_timeout`,
    /// `write_stalled` and `disconnect_0xNN`).
    pub dropped: BTreeMap<String, u64>,
    /// Failed attempts retried after a backoff (`conn --retry`), by reason (the same names):
    /// `attempted` counts them too.
    pub retries: BTreeMap<String, u64>,
    pub stayed_up: u64,
    /// From the first attempt to the last CONNACK.
    pub open_secs: f64,
    /// Established connections per second over `open_secs`.
    pub connect_rate_per_sec: f64,
    /// TCP connect start to CONNACK, microseconds.
    pub connect_latency: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessagesReport {
    /// From the publish start to the stop.
    pub publish_secs: f64,
    pub sent: u64,
    pub acknowledged: u64,
    pub received: u64,
    /// Deliveries the subscribers should have received: each sent message times its
    /// subscribers.
    pub expected: u64,
    pub sent_per_sec: f64,
    /// Received over the time from the publish start to the last receipt.
    pub received_per_sec: f64,
    pub foreign: u64,
    pub unexpected: u64,
    /// Intended send time to receipt, microseconds.
    pub latency: LatencySummary,
    /// `(percentile, microseconds)` from the minimum to the maximum, for plotting.
    pub latency_spectrum: Vec<(f64, f64)>,
    pub integrity: Vec<IntegrityReport>,
}

/// Stream verdicts summed per delivery QoS (and apart for subscribers that were dropped, whose
/// losses are their own connection's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IntegrityReport {
    pub qos: u8,
    pub dropped_subscribers: bool,
    pub streams: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    /// Lost although acknowledged to the publisher: a broken QoS 1/2 promise.
    pub lost_acknowledged: u64,
    pub lost_unacknowledged: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// When the coordinator saw each phase (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeline {
    pub started_ns: u64,
    pub publish_start_ns: u64,
    pub publish_stop_ns: u64,
    pub finished_ns: u64,
    /// Ctrl-C or SIGTERM ended the run early.
    pub stopped_early: bool,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn per_sec(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Report {
    /// Builds the final report from the merged worker reports.
    pub fn build(config: &RunConfig, raw: &WorkerReport, timeline: Timeline) -> Report {
        let mut problems = Vec::new();
        let failed: u64 = raw.failures.values().sum();
        let dropped: u64 = raw.dropped.values().sum();
        if failed > 0 {
            problems.push(format!(
                "{failed} of {} clients failed to set up: {}",
                config.client_count(),
                describe_counts(&raw.failures)
            ));
        }
        if dropped > 0 {
            problems.push(format!(
                "{dropped} connections were lost during the run: {}",
                describe_counts(&raw.dropped)
            ));
        }
        if raw.stuck > 0 {
            problems.push(format!(
                "{} clients had not ended {} s after the run finished (the broker stopped reading \
                 or answering them): abandoned",
                raw.stuck,
                crate::worker::FINISH_GRACE.as_secs()
            ));
        }
        let open_ns = raw.last_connected_ns.saturating_sub(raw.first_attempt_ns);
        let connections = ConnectionsReport {
            attempted: raw.attempts,
            established: raw.connected,
            failed,
            failures: raw.failures.clone(),
            dropped: raw.dropped.clone(),
            retries: raw.retries.clone(),
            stayed_up: raw.stayed_up,
            open_secs: secs(open_ns),
            connect_rate_per_sec: per_sec(raw.connected, secs(open_ns)),
            connect_latency: raw.connect_latency.summary(),
        };
        let (scenario, messages) = match &config.scenario {
            Scenario::Conn(_) => ("conn", None),
            // `retained::run` adds its own part and verdict.
            Scenario::Retained(_) => ("retained", None),
            Scenario::Churn(_) => ("churn", None),
            Scenario::Messaging(messaging) => {
                let scenario = match messaging.shape {
                    Shape::Pairs => "pairs",
                    Shape::FanIn => "fanin",
                    Shape::FanOut => "fanout",
                };
                let integrity = judge_streams(config, raw);
                let publish_ns = timeline.publish_stop_ns.saturating_sub(timeline.publish_start_ns);
                let receive_ns = raw.last_received_ns.saturating_sub(timeline.publish_start_ns);
                let expected = integrity
                    .iter()
                    .filter(|group| !group.dropped_subscribers)
                    .map(|group| group.expected)
                    .sum();
                let report = MessagesReport {
                    publish_secs: secs(publish_ns),
                    sent: raw.sent,
                    acknowledged: raw.acknowledged,
                    received: raw.received,
                    expected,
                    sent_per_sec: per_sec(raw.sent, secs(publish_ns)),
                    received_per_sec: per_sec(raw.received, secs(receive_ns)),
                    foreign: raw.foreign,
                    unexpected: raw.unexpected,
                    latency: raw.latency.summary(),
                    latency_spectrum: raw.latency.spectrum(),
                    integrity,
                };
                messaging_problems(&report, &mut problems);
                (scenario, Some(report))
            }
        };
        Report {
            scenario,
            config: config.clone(),
            passed: problems.is_empty(),
            problems,
            stopped_early: timeline.stopped_early,
            elapsed_secs: secs(timeline.finished_ns.saturating_sub(timeline.started_ns)),
            connections,
            messages,
            retained: None,
            churn: None,
        }
    }

    /// The summary table printed on stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let config = &self.config;
        let version = match config.version {
            shardmq_io::codec::ProtocolVersion::V5 => "5",
            _ => "3.1.1",
        };
        let targets: Vec<String> = config.targets.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "shardmq loadgen {}: MQTT {version}, QoS {}, targets {}",
            self.scenario,
            config.qos as u8,
            targets.join(" ")
        );
        if self.stopped_early {
            let _ = writeln!(
                out,
                "  stopped      early (Ctrl-C / SIGTERM) after {:.2} s",
                self.elapsed_secs
            );
        }
        let connections = &self.connections;
        let _ = writeln!(
            out,
            "  connections  attempted {}  established {}  failed {}  dropped {}  stayed up {}",
            connections.attempted,
            connections.established,
            connections.failed,
            connections.dropped.values().sum::<u64>(),
            connections.stayed_up
        );
        let _ = writeln!(
            out,
            "  connect      {:.0}/s over {:.2} s   latency {}",
            connections.connect_rate_per_sec,
            connections.open_secs,
            latency_line(&connections.connect_latency)
        );
        for (title, counts) in [
            ("failures", &connections.failures),
            ("retries", &connections.retries),
            ("drops", &connections.dropped),
        ] {
            if !counts.is_empty() {
                let _ = writeln!(out, "  {title:<12} {}", describe_counts(counts));
            }
        }
        if let Some(messages) = &self.messages {
            let _ = writeln!(
                out,
                "  messages     sent {} ({:.0}/s over {:.2} s)  acknowledged {}  received {} \
                 ({:.0}/s)  expected {}",
                messages.sent,
                messages.sent_per_sec,
                messages.publish_secs,
                messages.acknowledged,
                messages.received,
                messages.received_per_sec,
                messages.expected
            );
            let _ = writeln!(out, "  latency      {}", latency_line(&messages.latency));
            for group in &messages.integrity {
                let _ = writeln!(
                    out,
                    "  integrity    QoS {}{}: {} streams, lost {} (acknowledged {}, not \
                     acknowledged {}), duplicated {}, out of order {}",
                    group.qos,
                    if group.dropped_subscribers { " (dropped subscribers)" } else { "" },
                    group.streams,
                    group.lost,
                    group.lost_acknowledged,
                    group.lost_unacknowledged,
                    group.duplicates,
                    group.out_of_order
                );
            }
            if messages.foreign > 0 || messages.unexpected > 0 {
                let _ = writeln!(
                    out,
                    "  stray        foreign {}  unexpected {}",
                    messages.foreign, messages.unexpected
                );
            }
        }
        if let Some(retained) = &self.retained {
            retained_lines(retained, &mut out);
        }
        if let Some(churn) = &self.churn {
            churn.lines(&mut out);
        }
        if self.passed {
            let _ = writeln!(out, "  result       ok");
        } else {
            for problem in &self.problems {
                let _ = writeln!(out, "  PROBLEM      {problem}");
            }
        }
        out
    }
}

fn retained_lines(retained: &crate::retained::RetainedReport, out: &mut String) {
    let _ = writeln!(
        out,
        "  retained     published {} of {}  acknowledged {}  in {:.3} s",
        retained.published, retained.retained, retained.acknowledged, retained.publish_secs
    );
    let _ = writeln!(
        out,
        "  delivery     {} of {} subscribers subscribed to {}, {} got all {}; received {} of {} \
         expected, missing {}, duplicated {}, without RETAIN {}, foreign {}",
        retained.subscribed,
        retained.subscribers,
        retained.filter,
        retained.complete,
        retained.retained,
        retained.received,
        retained.expected,
        retained.missing,
        retained.duplicates,
        retained.without_retain_flag,
        retained.foreign
    );
    let _ = writeln!(
        out,
        "  rate         {:.0} msg/s   SUBSCRIBE to last {}",
        retained.delivered_per_sec,
        latency_line(&retained.subscribe_to_last)
    );
    if let Some(cleared) = retained.cleared {
        let _ = writeln!(out, "  cleared      {cleared}");
    }
}

/// `p50 0.123 ms  p90 ...`, or `-` when nothing was measured.
pub fn latency_line(summary: &LatencySummary) -> String {
    if summary.count == 0 {
        return "-".into();
    }
    format!(
        "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        summary.p50_us / 1e3,
        summary.p90_us / 1e3,
        summary.p99_us / 1e3,
        summary.p99_9_us / 1e3,
        summary.max_us / 1e3
    )
}

fn describe_counts(counts: &BTreeMap<String, u64>) -> String {
    counts.iter().map(|(key, count)| format!("{key} {count}")).collect::<Vec<_>>().join(", ")
}

/// Judges every (publisher, subscriber) stream and sums the verdicts per delivery QoS.
fn judge_streams(config: &RunConfig, raw: &WorkerReport) -> Vec<IntegrityReport> {
    let Scenario::Messaging(messaging) = &config.scenario else { return Vec::new() };
    let publishers: HashMap<u32, &PublisherEnd> =
        raw.publishers.iter().map(|end| (end.publisher, end)).collect();
    let mut groups: BTreeMap<(u8, bool), IntegrityReport> = BTreeMap::new();
    for subscriber in &raw.subscribers {
        let qos = subscriber.granted_qos.min(config.qos as u8);
        let group = groups.entry((qos, subscriber.dropped)).or_insert_with(|| IntegrityReport {
            qos,
            dropped_subscribers: subscriber.dropped,
            ..IntegrityReport::default()
        });
        for publisher in messaging.publishers_of(subscriber.subscriber) {
            // A publisher that never connected sent nothing, so its streams expect nothing.
            let Some(publisher_end) = publishers.get(&publisher) else { continue };
            let check = subscriber
                .streams
                .binary_search_by_key(&publisher, |(publisher, _)| *publisher)
                .ok()
                .and_then(|index| subscriber.streams.get(index))
                .map(|(_, check)| check);
            let mut end = StreamEnd::judge(check, publisher_end);
            if qos == 0 {
                // QoS 0 promises nothing: all of its losses are simply losses.
                end.lost_acknowledged = 0;
            }
            group.streams += 1;
            group.expected += end.expected;
            group.received += end.received;
            group.lost += end.lost;
            group.lost_acknowledged += end.lost_acknowledged;
            group.lost_unacknowledged += end.lost - end.lost_acknowledged;
            group.duplicates += end.duplicates;
            group.out_of_order += end.out_of_order;
        }
    }
    groups.into_values().collect()
}

fn messaging_problems(messages: &MessagesReport, problems: &mut Vec<String>) {
    for group in messages.integrity.iter().filter(|group| !group.dropped_subscribers) {
        if group.qos > 0 && group.lost_acknowledged > 0 {
            problems.push(format!(
                "LOSS: {} QoS {} messages acknowledged by the broker were never delivered",
                group.lost_acknowledged, group.qos
            ));
        }
        if group.qos > 0 && group.lost_unacknowledged > 0 {
            problems.push(format!(
                "{} QoS {} messages were never acknowledged nor delivered",
                group.lost_unacknowledged, group.qos
            ));
        }
        if group.qos == 2 && group.duplicates > 0 {
            problems.push(format!(
                "DUPLICATES: {} QoS 2 messages were delivered more than once",
                group.duplicates
            ));
        }
    }
    if messages.unexpected > 0 {
        problems.push(format!(
            "{} messages were delivered to subscribers whose filter does not match them",
            messages.unexpected
        ));
    }
    if messages.sent == 0 {
        problems.push("no message was sent".into());
    }
}

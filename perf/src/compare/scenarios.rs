//! The seven scenarios of the comparison, each as a `shardmq loadgen` command line, and what one
//! run of a scenario against one broker measured.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;

use super::brokers::{pinned, BrokerKind, RunningBroker};
use super::procfs;

/// A scenario of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// (1) 100 1:1 pairs, QoS 0, 64 B, closed loop: maximum throughput.
    Pairs,
    /// (2) 1 publisher → 1,000 subscribers, QoS 0, closed loop.
    Fanout,
    /// (3) 1,000 publishers → 1 subscriber, QoS 1, closed loop.
    Fanin,
    /// (4) 100 pairs at a fixed 20,000 msg/s in all, QoS 1, 64 B: latency.
    Latency,
    /// (5) 19,000 idle connections: broker memory per connection.
    Idle,
    /// (6) Connections opened as fast as the broker takes them.
    Connect,
    /// (7) 100 pairs, QoS 1, persistent MQTT 5 sessions, the broker storing them durably.
    Durable,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Pairs,
        Scenario::Fanout,
        Scenario::Fanin,
        Scenario::Latency,
        Scenario::Idle,
        Scenario::Connect,
        Scenario::Durable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pairs => "pairs",
            Scenario::Fanout => "fanout",
            Scenario::Fanin => "fanin",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
            Scenario::Connect => "connect",
            Scenario::Durable => "durable",
        }
    }

    pub fn parse(name: &str) -> anyhow::Result<Scenario> {
        Scenario::ALL.into_iter().find(|scenario| scenario.name() == name).with_context(|| {
            format!("--scenarios: unknown scenario {name:?} (pairs, fanout, fanin, latency, idle, connect, durable)")
        })
    }

    pub fn title(self) -> &'static str {
        match self {
            Scenario::Pairs => "1. 100 pairs, QoS 0, 64 B, max throughput",
            Scenario::Fanout => "2. fan-out 1 → 1,000, QoS 0, 64 B",
            Scenario::Fanin => "3. fan-in 1,000 → 1, QoS 1, 64 B",
            Scenario::Latency => "4. latency at 20K msg/s, QoS 1, 64 B",
            Scenario::Idle => "5. idle connections: memory",
            Scenario::Connect => "6. connect rate",
            Scenario::Durable => "7. durable QoS 1, persistent sessions",
        }
    }

    /// Whether `broker` can run this scenario at all (rumqttd stores nothing).
    pub fn supports(self, broker: BrokerKind) -> bool {
        !(self == Scenario::Durable && broker == BrokerKind::Rumqttd)
    }

    /// Whether the broker should store persistent sessions durably for this scenario.
    pub fn durable(self) -> bool {
        self == Scenario::Durable
    }

    /// The load generator's arguments after `shardmq loadgen`.
    pub fn loadgen_args(self, size: Size) -> Vec<String> {
        let duration = size.duration_secs.to_string();
        let mut args: Vec<String> = match self {
            Scenario::Pairs => {
                vec!["pairs", "--publishers", "100", "--qos", "0", "--duration", &duration]
            }
            Scenario::Fanout => {
                vec![
                    "fanout",
                    "--publishers",
                    "1",
                    "--subscribers",
                    "1000",
                    "--qos",
                    "0",
                    "--duration",
                    &duration,
                ]
            }
            Scenario::Fanin => vec![
                "fanin",
                "--publishers",
                "1000",
                "--subscribers",
                "1",
                "--topics",
                "1000",
                "--qos",
                "1",
                "--duration",
                &duration,
            ],
            Scenario::Latency => {
                vec![
                    "pairs",
                    "--publishers",
                    "100",
                    "--qos",
                    "1",
                    "--rate",
                    "20000",
                    "--duration",
                    &duration,
                ]
            }
            Scenario::Idle => {
                let connections = size.idle_connections.to_string();
                return owned(&[
                    "conn",
                    "--connections",
                    &connections,
                    "--rate",
                    "10000",
                    "--hold",
                    "3",
                    "--keepalive",
                    "60",
                ]);
            }
            Scenario::Connect => {
                let connections = size.connect_connections.to_string();
                return owned(&[
                    "conn",
                    "--connections",
                    &connections,
                    "--rate",
                    "1000000",
                    "--hold",
                    "1",
                    "--keepalive",
                    "60",
                ]);
            }
            Scenario::Durable => vec![
                "pairs",
                "--publishers",
                "100",
                "--qos",
                "1",
                "--mqtt",
                "5",
                "--session-expiry",
                "60",
                "--duration",
                &duration,
            ],
        }
        .into_iter()
        .map(String::from)
        .collect();
        let drain = size.drain_timeout_secs.to_string();
        args.extend(owned(&["--payload", "64", "--drain-timeout", &drain]));
        args
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

/// How big each run is: the full comparison or the `--quick` smoke run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Size {
    pub duration_secs: u64,
    /// After publishing, the longest wait for a broker's backlog of deliveries.
    pub drain_timeout_secs: u64,
    pub idle_connections: u64,
    pub connect_connections: u64,
}

impl Size {
    pub const FULL: Size = Size {
        duration_secs: 10,
        drain_timeout_secs: 10,
        idle_connections: 19_000,
        connect_connections: 19_000,
    };
    pub const QUICK: Size = Size {
        duration_secs: 2,
        drain_timeout_secs: 3,
        idle_connections: 2_000,
        connect_connections: 3_000,
    };
}

/// What one run measured. Messaging scenarios fill the message fields, `idle` and `connect` the
/// connection fields.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurement {
    /// Deliveries to subscribers per second.
    pub msgs_per_sec: Option<f64>,
    pub sent_per_sec: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p99_9_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Broker user+sys CPU seconds per million deliveries.
    pub cpu_secs_per_million: Option<f64>,
    /// Deliveries lost (QoS 0: dropped under overload; QoS 1: a broken promise).
    pub lost: Option<u64>,
    pub lost_acknowledged: Option<u64>,
    pub connects_per_sec: Option<f64>,
    pub connect_p99_us: Option<f64>,
    /// Broker CPU microseconds per connection over the whole run (set-up, hold, disconnect).
    pub cpu_us_per_connect: Option<f64>,
    /// Broker CPU microseconds per connection while the connections were being set up.
    pub cpu_us_per_connect_phase: Option<f64>,
    /// What one broker core could take at that cost: 1 s / `cpu_us_per_connect_phase`.
    pub connect_capacity_per_sec: Option<f64>,
    /// Broker resident memory added per established connection.
    pub rss_bytes_per_connection: Option<f64>,
    pub established: Option<u64>,
    /// Broker CPU seconds over the whole load-generator run (set-up and drain included).
    pub broker_cpu_secs: f64,
    pub broker_rss_before: u64,
    pub broker_rss_peak: u64,
    /// The load generator's verdict: `problems` empty when it passed.
    pub problems: Vec<String>,
    /// `(percentile, microseconds)` of the delivery latency.
    pub latency_spectrum: Vec<(f64, f64)>,
}

/// The load generator did not end within its run's time and a margin: killed.
#[derive(Debug)]
pub struct LoadgenHung {
    pub secs: u64,
    /// Each thread's kernel wait channel when it was killed.
    pub waits: String,
}

impl std::fmt::Display for LoadgenHung {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "the load generator ran past {} s (its threads waited in: {})",
            self.secs, self.waits
        )
    }
}

impl std::error::Error for LoadgenHung {}

/// `name:wchan` of each thread of `pid`, comma-separated.
fn thread_waits(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return "?".into() };
    let mut waits: Vec<String> = tasks
        .filter_map(Result::ok)
        .map(|task| {
            let read = |file: &str| {
                std::fs::read_to_string(task.path().join(file))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            format!("{}:{}", read("comm"), read("wchan"))
        })
        .collect();
    waits.sort();
    waits.join(", ")
}

/// Runs `scenario` against the running `broker` with the load generator pinned to `cpu`.
pub fn run(
    scenario: Scenario,
    size: Size,
    broker: &RunningBroker,
    loadgen: &Path,
    cpu: usize,
    json_path: &Path,
) -> anyhow::Result<Measurement> {
    let pid = broker.pid();
    let mut command = pinned(cpu);
    command
        .arg(loadgen)
        .arg("loadgen")
        .args(scenario.loadgen_args(size))
        .args(["--target", &broker.addr.to_string()])
        .args(["--workers", "1", "--quiet", "--source", "127.0.0.2-127.0.0.9", "--json"])
        .arg(json_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let _ = std::fs::remove_file(json_path);
    // Let the broker settle after start: its baseline memory and CPU.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = procfs::rss_bytes(pid)?;
    let cpu_before = procfs::cpu_seconds(pid)?;
    let mut child = command.spawn().context("starting the load generator")?;
    let watched = watch(&mut child, pid, rss_before, cpu_before, size)?;
    let status = watched.status;
    let broker_cpu_secs = procfs::cpu_seconds(pid)? - cpu_before;
    let stderr = child.stderr.take().map(std::io::read_to_string).transpose()?.unwrap_or_default();
    // Exit 1 is a run with problems (it still reports); 2 means it could not run.
    if status.code() != Some(0) && status.code() != Some(1) {
        bail!("the load generator failed ({status}): {}", stderr.trim());
    }
    let report: Value = serde_json::from_slice(
        &std::fs::read(json_path).with_context(|| format!("reading {}", json_path.display()))?,
    )
    .context("parsing the load generator's JSON report")?;
    let mut measurement = Measurement {
        broker_cpu_secs,
        broker_rss_before: rss_before,
        broker_rss_peak: watched.rss_peak,
        problems: report["problems"]
            .as_array()
            .map(|problems| {
                problems.iter().filter_map(|problem| problem.as_str().map(String::from)).collect()
            })
            .unwrap_or_default(),
        ..Measurement::default()
    };
    match scenario {
        Scenario::Idle | Scenario::Connect => {
            connection_figures(&mut measurement, &report["connections"], &watched.cpu_samples);
        }
        _ => message_figures(&mut measurement, &report["messages"]),
    }
    Ok(measurement)
}

/// What the broker did while the load generator ran.
struct Watched {
    status: ExitStatus,
    rss_peak: u64,
    /// (time since the spawn, broker CPU seconds): to tell the connect phase's CPU from the rest.
    cpu_samples: Vec<(Duration, f64)>,
}

/// Samples the broker's memory and CPU every 50 ms until the load generator exits; kills it
/// and fails with [`LoadgenHung`] if it runs 120 s past its run's time.
fn watch(
    child: &mut Child,
    pid: u32,
    rss_before: u64,
    cpu_before: f64,
    size: Size,
) -> anyhow::Result<Watched> {
    let spawned = Instant::now();
    let mut rss_peak = rss_before;
    let mut cpu_samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(size.duration_secs + 120);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(rss) = procfs::rss_bytes(pid) {
            rss_peak = rss_peak.max(rss);
        }
        if let Ok(cpu) = procfs::cpu_seconds(pid) {
            cpu_samples.push((spawned.elapsed(), cpu - cpu_before));
        }
        if Instant::now() > deadline {
            // Where its threads wait, for the record (a worker parked in io_uring with work
            // left has been seen: docs/reliability.md, "Soak").
            let waits = thread_waits(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Err(LoadgenHung { secs: size.duration_secs + 120, waits }.into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Watched { status, rss_peak, cpu_samples })
}

/// The `idle` and `connect` figures, from the report's `connections` and the broker's CPU
/// samples.
fn connection_figures(
    measurement: &mut Measurement,
    connections: &Value,
    cpu_samples: &[(Duration, f64)],
) {
    let established = connections["established"].as_u64().unwrap_or(0);
    measurement.established = Some(established);
    measurement.connects_per_sec = connections["connect_rate_per_sec"].as_f64();
    measurement.connect_p99_us = connections["connect_latency"]["p99_us"].as_f64();
    // The broker's CPU until the connections were up (the first sample 150 ms after the
    // last CONNACK: the load generator starts at once, and the hold costs nothing).
    let open = connections["open_secs"].as_f64().map(Duration::from_secs_f64);
    let phase_cpu = open.and_then(|open| {
        let end = open + Duration::from_millis(150);
        cpu_samples.iter().find(|(at, _)| *at >= end).map(|&(_, cpu)| cpu)
    });
    if let (Some(cpu), true) = (phase_cpu, established > 0) {
        let micros = cpu * 1e6 / established as f64;
        measurement.cpu_us_per_connect_phase = Some(micros);
        if micros > 0.0 {
            measurement.connect_capacity_per_sec = Some(1e6 / micros);
        }
    }
    if established > 0 {
        measurement.cpu_us_per_connect =
            Some(measurement.broker_cpu_secs * 1e6 / established as f64);
        measurement.rss_bytes_per_connection = Some(
            measurement.broker_rss_peak.saturating_sub(measurement.broker_rss_before) as f64
                / established as f64,
        );
    }
}

/// The messaging scenarios' figures, from the report's `messages`.
fn message_figures(measurement: &mut Measurement, messages: &Value) {
    let received = messages["received"].as_u64().unwrap_or(0);
    measurement.msgs_per_sec = messages["received_per_sec"].as_f64();
    measurement.sent_per_sec = messages["sent_per_sec"].as_f64();
    let latency = &messages["latency"];
    measurement.p50_us = latency["p50_us"].as_f64();
    measurement.p99_us = latency["p99_us"].as_f64();
    measurement.p99_9_us = latency["p99_9_us"].as_f64();
    measurement.max_us = latency["max_us"].as_f64();
    if received > 0 {
        measurement.cpu_secs_per_million =
            Some(measurement.broker_cpu_secs * 1e6 / received as f64);
    }
    let integrity = messages["integrity"].as_array().cloned().unwrap_or_default();
    let sum = |field: &str| integrity.iter().filter_map(|entry| entry[field].as_u64()).sum::<u64>();
    measurement.lost = Some(sum("lost"));
    measurement.lost_acknowledged = Some(sum("lost_acknowledged"));
    measurement.latency_spectrum = messages["latency_spectrum"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|point| Some((point[0].as_f64()?, point[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
}

//! The `shardmq loadgen` flags (clap derive) and their translation into a [`RunConfig`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use shardmq_io::codec::{ProtocolVersion, QoS};

use crate::config::{
    invalid, parse_sources, parse_target, ChurnConfig, ConfigError, ConnConfig, MessagingConfig,
    ProcessShare, RetainedConfig, RetryPolicy, RunConfig, Scenario, Shape,
};

/// Default `--payload`: small messages, as most MQTT traffic is.
pub const DEFAULT_PAYLOAD_BYTES: usize = 64;
/// Default `--duration`, seconds.
pub const DEFAULT_DURATION_SECS: u64 = 10;
/// Default `--keepalive`, seconds: short enough that a held connection shows keepalive traffic
/// within a minute, long enough that PINGREQs cost nothing at 500K connections (~17K/s).
pub const DEFAULT_KEEPALIVE_SECS: u16 = 30;
/// Default `--connect-timeout`, seconds: longer than the 1 s and 3 s SYN retransmits, so an
/// overflowing accept backlog shows as slow connects before it shows as failures.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Default `--window`: shardmq's own Receive Maximum (64), and a moderate pipeline for others.
pub const DEFAULT_WINDOW: u16 = 64;
/// Default `--retry-backoff-ms` and `--retry-backoff-max-ms`: a second, doubling to two
/// minutes, as the automatic reconnect of Eclipse Paho's Java client (1 s to 128 s) and of the
/// HiveMQ client (1 s to 120 s).
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_RETRY_BACKOFF_MAX_MS: u64 = 120_000;
/// Default `--retry-max`: no limit, as those clients (the run's `--hold` ends it).
pub const DEFAULT_RETRY_MAX: u32 = 0;

/// `shardmq loadgen`: MQTT load against one or more brokers.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    #[command(subcommand)]
    pub scenario: ScenarioArgs,
}

#[derive(Debug, Subcommand)]
pub enum ScenarioArgs {
    /// Open N connections at a paced rate and hold them with keepalive.
    Conn(ConnArgs),
    /// One publisher per subscriber, each pair on its own topic.
    Pairs(MessagingArgs),
    /// Many publishers, few subscribers: every subscriber subscribes to every topic.
    Fanin(MessagingArgs),
    /// Few publishers, many subscribers: publisher p and subscriber s meet on topic (p or s)
    /// modulo --topics.
    Fanout(MessagingArgs),
    /// Publish R retained messages on distinct topics, then S subscribers subscribe with a
    /// wildcard covering them; every subscriber must receive all R.
    Retained(RetainedArgs),
    /// Persistent-session clients disconnecting and reconnecting at a rate while a publisher
    /// sends QoS 1 messages to them; every message queued while a client was offline must
    /// arrive when it comes back.
    Churn(ChurnArgs),
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Broker address; repeat it to spread clients round-robin over several brokers.
    #[arg(long = "target", value_name = "HOST:PORT", required = true)]
    pub targets: Vec<String>,
    /// MQTT version: 3 (3.1.1) or 5.
    #[arg(long, value_name = "3|5", default_value = "3")]
    pub mqtt: String,
    /// QoS of every publish and subscription.
    #[arg(long, value_name = "0|1|2", default_value_t = 0)]
    pub qos: u8,
    /// Payload size in bytes (at least 24: the header every payload carries).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_PAYLOAD_BYTES)]
    pub payload: usize,
    /// How long publishers publish (conn: the default for --hold).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_DURATION_SECS)]
    pub duration: u64,
    /// Also write the full report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Local addresses to connect from: A.B.C.D-A.B.C.E ranges or comma-separated lists,
    /// repeatable. Each (source, target) pair gives ~28K connections.
    #[arg(long = "source", value_name = "ADDR-RANGE|LIST")]
    pub sources: Vec<String>,
    /// Executor threads in this process [default: online cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Pin worker i to the i-th online CPU.
    #[arg(long)]
    pub pin: bool,
    /// Keepalive in CONNECT; an idle client sends PINGREQ this often (0: none).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_KEEPALIVE_SECS)]
    pub keepalive: u16,
    /// Seconds from TCP connect to CONNACK (or SUBSCRIBE to SUBACK) before a client counts as
    /// timed out.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_CONNECT_TIMEOUT_SECS)]
    pub connect_timeout: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Worker processes: re-execute this program N times, each running every N-th client with
    /// its own open-file limit; --workers applies to each.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub processes: u32,
    /// Internal: run as worker process I of N (set by the parent).
    #[arg(long, hide = true, value_name = "I/N")]
    pub process_share: Option<String>,
    /// Internal: the parent's run tag, shared by every worker process.
    #[arg(long, hide = true)]
    pub run_tag: Option<String>,
    /// Internal: the parent's payload run id.
    #[arg(long, hide = true)]
    pub run_id: Option<u32>,
    /// Internal: when conn clients start (CLOCK_MONOTONIC ns), common to every process.
    #[arg(long, hide = true)]
    pub start_ns: Option<u64>,
}

/// `conn` flags.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub connections: u64,
    /// Connections opened per second (paced over all workers).
    #[arg(long, value_name = "PER_SEC", default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds to hold the connections once every attempt has ended [default: --duration].
    #[arg(long, value_name = "SECS")]
    pub hold: Option<u64>,
    /// Retry a connect that failed (refused, timed out, or a CONNACK error such as 0x89
    /// "server busy") after a jittered exponential backoff, as real clients do; the report
    /// counts the retries by cause.
    #[arg(long)]
    pub retry: bool,
    /// With --retry: the first backoff, doubling per failure.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_RETRY_BACKOFF_MS, requires = "retry")]
    pub retry_backoff_ms: u64,
    /// With --retry: the longest backoff.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_RETRY_BACKOFF_MAX_MS, requires = "retry")]
    pub retry_backoff_max_ms: u64,
    /// With --retry: attempts per client at most, the first included (0: no limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETRY_MAX, requires = "retry")]
    pub retry_max: u32,
}

/// `pairs`, `fanin` and `fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct MessagingArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publishing clients [default: pairs 10, fanin 10, fanout 1].
    #[arg(long, value_name = "N")]
    pub publishers: Option<u32>,
    /// Subscribing clients [default: pairs 10, fanin 1, fanout 10].
    #[arg(long, value_name = "N")]
    pub subscribers: Option<u32>,
    /// Topics [default: pairs: one per pair; fanin and fanout: 1].
    #[arg(long, value_name = "N")]
    pub topics: Option<u32>,
    /// Total messages per second over all publishers (open loop; latency counts from each
    /// message's scheduled time). Without it: closed loop, as fast as the window allows.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Unacknowledged QoS 1/2 messages per publisher (capped by the broker's Receive Maximum);
    /// at QoS 0, messages per write.
    #[arg(long, value_name = "W", default_value_t = DEFAULT_WINDOW)]
    pub window: u16,
    /// Persistent sessions (MQTT 5 only): every client connects with Clean Start 0 and this
    /// Session Expiry Interval, so the broker keeps (and, if it is durable, stores) what it
    /// queues for them. The sessions expire this long after the run.
    #[arg(long, value_name = "SECS")]
    pub session_expiry: Option<u32>,
    /// After publishing stops, the longest wait for the last deliveries (an overloaded broker
    /// may still be working through a backlog).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,
}

/// `retained` flags.
#[derive(Debug, Clone, Args)]
pub struct RetainedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Retained messages to publish, each on its own topic (lg/RUN/0 ... lg/RUN/R-1).
    #[arg(long, value_name = "R", default_value_t = 1000)]
    pub retained: u32,
    /// Clients that subscribe once every retained message is acknowledged.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub subscribers: u32,
    /// The filter subscribers use [default: lg/RUN/+]; it must cover every retained topic.
    #[arg(long, value_name = "FILTER")]
    pub wildcard: Option<String>,
    /// Leave the retained messages on the broker (by default they are cleared at the end).
    #[arg(long)]
    pub keep: bool,
}

/// `churn` flags.
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Persistent-session clients, each subscribed to its own topic.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub clients: u32,
    /// Reconnects per second over all clients: each client goes offline and comes back once
    /// every N / RATE seconds.
    #[arg(long, value_name = "PER_SEC", default_value_t = 10.0)]
    pub rate: f64,
    /// Messages per second the publisher sends, round-robin over the clients' topics.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 100.0)]
    pub publish_rate: f64,
}

impl LoadgenArgs {
    /// The flags every scenario shares.
    pub fn common(&self) -> &CommonArgs {
        match &self.scenario {
            ScenarioArgs::Conn(conn) => &conn.common,
            ScenarioArgs::Pairs(args) | ScenarioArgs::Fanin(args) | ScenarioArgs::Fanout(args) => {
                &args.common
            }
            ScenarioArgs::Retained(args) => &args.common,
            ScenarioArgs::Churn(args) => &args.common,
        }
    }

    /// Checks the flags and builds the run's configuration.
    pub fn resolve(&self) -> Result<RunConfig, ConfigError> {
        let common = self.common();
        let scenario = match &self.scenario {
            ScenarioArgs::Conn(conn) => Scenario::Conn(ConnConfig {
                connections: conn.connections,
                rate_per_sec: conn.rate,
                hold: Duration::from_secs(conn.hold.unwrap_or(common.duration)),
                retry: conn.retry.then(|| RetryPolicy {
                    backoff_min: Duration::from_millis(conn.retry_backoff_ms),
                    backoff_max: Duration::from_millis(conn.retry_backoff_max_ms),
                    attempts_max: conn.retry_max,
                }),
            }),
            ScenarioArgs::Pairs(args) => messaging(args, Shape::Pairs, (10, 10)),
            ScenarioArgs::Fanin(args) => messaging(args, Shape::FanIn, (10, 1)),
            ScenarioArgs::Fanout(args) => messaging(args, Shape::FanOut, (1, 10)),
            ScenarioArgs::Retained(args) => {
                if common.processes > 1 {
                    return Err(invalid("--processes", "retained runs in one process"));
                }
                Scenario::Retained(RetainedConfig {
                    retained: args.retained,
                    subscribers: args.subscribers,
                    filter: args.wildcard.clone(),
                    keep: args.keep,
                })
            }
            ScenarioArgs::Churn(args) => {
                if common.processes > 1 {
                    return Err(invalid("--processes", "churn runs in one process"));
                }
                Scenario::Churn(ChurnConfig {
                    clients: args.clients,
                    rate_per_sec: args.rate,
                    publish_rate_per_sec: args.publish_rate,
                })
            }
        };
        let targets =
            common.targets.iter().map(|target| parse_target(target)).collect::<Result<_, _>>()?;
        let version = match common.mqtt.as_str() {
            "3" | "3.1.1" | "4" => ProtocolVersion::V3_1_1,
            "5" | "5.0" => ProtocolVersion::V5,
            other => return Err(invalid("--mqtt", format!("{other:?}: expected 3 or 5"))),
        };
        let mut qos =
            QoS::from_bits(common.qos).ok_or_else(|| invalid("--qos", "expected 0, 1 or 2"))?;
        if matches!(self.scenario, ScenarioArgs::Churn(_)) && qos == QoS::AtMostOnce {
            // QoS 0 is never queued for an offline client, so churn runs at QoS 1 at least
            // (`--qos 2` for QoS 2).
            qos = QoS::AtLeastOnce;
        }
        let workers = match common.workers {
            Some(workers) => workers,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let (run_tag, run_id) = match (&common.run_tag, common.run_id) {
            (Some(tag), Some(id)) => (tag.clone(), id),
            _ => run_identity(),
        };
        let share = match &common.process_share {
            None => ProcessShare::WHOLE,
            Some(share) => parse_share(share)?,
        };
        let config = RunConfig {
            scenario,
            targets,
            version,
            qos,
            payload_bytes: common.payload,
            duration: Duration::from_secs(common.duration),
            sources: parse_sources(&common.sources)?,
            workers,
            pin_workers: common.pin,
            keepalive_secs: common.keepalive,
            connect_timeout: Duration::from_secs(common.connect_timeout),
            run_tag,
            run_id,
            share,
        };
        config.check()?;
        Ok(config)
    }
}

/// Parses `I/N`.
fn parse_share(text: &str) -> Result<ProcessShare, ConfigError> {
    let parsed = text
        .split_once('/')
        .and_then(|(index, count)| Some((index.parse().ok()?, count.parse().ok()?)));
    match parsed {
        Some((index, count)) => Ok(ProcessShare { index, count }),
        None => Err(invalid("--process-share", format!("{text:?}: expected I/N"))),
    }
}

fn messaging(args: &MessagingArgs, shape: Shape, defaults: (u32, u32)) -> Scenario {
    let (publishers, subscribers) = match shape {
        // Pairs need equal counts: one flag sets both.
        Shape::Pairs => {
            let publishers = args.publishers.or(args.subscribers).unwrap_or(defaults.0);
            (publishers, args.subscribers.unwrap_or(publishers))
        }
        Shape::FanIn | Shape::FanOut => {
            (args.publishers.unwrap_or(defaults.0), args.subscribers.unwrap_or(defaults.1))
        }
    };
    let topics = args.topics.unwrap_or(match shape {
        Shape::Pairs => publishers,
        Shape::FanIn | Shape::FanOut => 1,
    });
    Scenario::Messaging(MessagingConfig {
        shape,
        publishers,
        subscribers,
        topics,
        rate_per_sec: args.rate,
        window: args.window,
        session_expiry_secs: args.session_expiry,
        drain_timeout: Duration::from_secs(args.drain_timeout),
    })
}

/// A fresh run tag (client id and topic prefix) and payload run id. Random, so that two runs
/// against one broker never share client ids or topics.
pub fn run_identity() -> (String, u32) {
    // std's RandomState is seeded from the OS's randomness per process and per instance.
    let mut hasher = RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(since_epoch.map_or(0, |elapsed| elapsed.as_nanos()));
    hasher.write_u32(std::process::id());
    let random = hasher.finish();
    let run_id = (random >> 32) as u32;
    (format!("lg{:06x}", random & 0xFF_FFFF), run_id)
}

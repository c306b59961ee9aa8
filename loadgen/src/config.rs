//! A run's resolved configuration: what the flags mean once checked, and the fixed mapping of
//! clients to targets, source addresses, workers and topics that every worker computes the same
//! way (so no worker needs to ask another which client is whose).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use shardmq_io::codec::{ProtocolVersion, QoS};
use shardmq_io::runtime::ShardPlacement;

use crate::payload::PAYLOAD_HEADER_BYTES;

/// The largest payload `--payload` accepts. MQTT allows 256 MiB, but a load generator holding
/// one in every in-flight message would measure its own memory, not the broker.
pub const PAYLOAD_BYTES_MAX: usize = 16 << 20;
/// The most source addresses one `A-B` range may expand to: a typo such as `10.0.0.1-10.9.0.1`
/// must not allocate millions of entries.
pub const SOURCE_RANGE_ADDRESSES_MAX: u32 = 1 << 16;
/// The most (publisher, subscriber) streams one run may check. Each costs a few dozen bytes of
/// receiver state; past this a run measures the load generator's memory.
pub const STREAMS_MAX: u64 = 4_000_000;
/// The most in-flight QoS 1/2 messages per publisher: the packet identifier space.
pub const WINDOW_MAX: u16 = u16::MAX;
/// The most workers (executor threads) in one process.
pub const WORKERS_MAX: usize = 1024;
/// The most clients of one run: client indexes are `u32` in payloads and reports.
pub const CLIENTS_MAX: u64 = u32::MAX as u64;

/// The most retained messages one `retained` run publishes.
pub const RETAINED_MAX: u32 = 1_000_000;

/// Why a configuration was refused; each message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
}

pub(crate) fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { flag, message: message.into() }
}

/// One run of the load generator, checked.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub scenario: Scenario,
    /// Brokers to connect to; client `i` goes to `targets[i % targets.len()]`.
    pub targets: Vec<SocketAddr>,
    #[serde(serialize_with = "serialize_version")]
    pub version: ProtocolVersion,
    #[serde(serialize_with = "serialize_qos")]
    pub qos: QoS,
    pub payload_bytes: usize,
    /// How long publishers publish (messaging scenarios).
    pub duration: Duration,
    /// Local addresses to connect from; empty lets the kernel choose.
    pub sources: Vec<IpAddr>,
    /// Executor threads in this process.
    pub workers: usize,
    /// Pin worker `i` to the `i`-th online CPU.
    pub pin_workers: bool,
    /// Keepalive announced in CONNECT; a client sends PINGREQ when it has sent nothing for this
    /// long. 0 disables keepalive.
    pub keepalive_secs: u16,
    /// Time from starting the TCP connect to CONNACK (and from SUBSCRIBE to SUBACK) before the
    /// attempt counts as timed out.
    pub connect_timeout: Duration,
    /// Prefix of every client id and topic of this run, unique per run so that runs against the
    /// same broker do not take over each other's sessions or read each other's messages.
    pub run_tag: String,
    /// Written into every payload; messages carrying another run's id are counted as foreign.
    pub run_id: u32,
    /// Which share of the clients this process runs (1 of 1 unless it is a worker process).
    pub share: ProcessShare,
}

/// The share of a run's clients one process runs: client `i` belongs to process
/// `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessShare {
    pub index: u32,
    pub count: u32,
}

impl ProcessShare {
    /// The whole run in one process.
    pub const WHOLE: ProcessShare = ProcessShare { index: 0, count: 1 };
}

fn serialize_version<S: serde::Serializer>(
    version: &ProtocolVersion,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(match version {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5",
    })
}

fn serialize_qos<S: serde::Serializer>(qos: &QoS, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u8(*qos as u8)
}

/// What a run does.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// Open connections at a paced rate and hold them.
    Conn(ConnConfig),
    /// Publishers and subscribers over topics.
    Messaging(MessagingConfig),
    /// Retained messages on distinct topics, then wildcard subscribers that must get them all.
    Retained(RetainedConfig),
    /// Persistent-session clients that disconnect and reconnect while a publisher queues
    /// messages for them.
    Churn(ChurnConfig),
}

/// `churn`: `clients` persistent-session clients, each disconnecting and reconnecting once per
/// `clients / rate_per_sec` seconds (offline for half of it), while one publisher sends
/// `publish_rate_per_sec` messages round-robin over their topics. Clients are `0..clients`; the
/// publisher has its own id.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnConfig {
    pub clients: u32,
    /// Reconnects per second over all clients.
    pub rate_per_sec: f64,
    /// Messages per second over all topics.
    pub publish_rate_per_sec: f64,
}

/// `retained`: publish `retained` retained messages, then `subscribers` subscribe to a filter
/// covering them. Client 0 publishes (and cleans up); clients `1..=subscribers` subscribe.
#[derive(Debug, Clone, Serialize)]
pub struct RetainedConfig {
    pub retained: u32,
    pub subscribers: u32,
    /// The filter subscribers use; `None`: the run's `lg/<tag>/+`.
    pub filter: Option<String>,
    /// Leave the retained messages on the broker instead of clearing them at the end.
    pub keep: bool,
}

/// `conn`: open `connections` at `rate_per_sec`, hold them for `hold`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnConfig {
    pub connections: u64,
    pub rate_per_sec: f64,
    pub hold: Duration,
    /// Retry a failed connect (`--retry`), as real clients do; `None`: one attempt each.
    pub retry: Option<RetryPolicy>,
}

/// How a `conn` client retries a connect that failed (refused, timed out, or answered with a
/// CONNACK error such as 0x89 "server busy"): after a backoff that doubles from `backoff_min`
/// up to `backoff_max`, each wait drawn at random between half and all of it (jitter, so that
/// clients refused together do not come back together), at most `attempts_max` attempts (0:
/// no limit).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RetryPolicy {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub attempts_max: u32,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (after `attempt` failures), jittered by `random`.
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let doubled = self.backoff_min.saturating_mul(1 << attempt.saturating_sub(1).min(20));
        let full = doubled.min(self.backoff_max);
        // Between half and all of it.
        let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
        full.mul_f64(fraction)
    }
}

/// How publishers' topics meet subscribers' filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Publisher `p` publishes on topic `p % topics`; subscriber `s` subscribes to topic
    /// `s % topics`. With equal counts: one publisher per subscriber.
    Pairs,
    /// Many publishers over `topics` topics; every subscriber subscribes to all of them with a
    /// `+` wildcard.
    FanIn,
    /// Few publishers, many subscribers: the same mapping as pairs.
    FanOut,
}

/// `pairs`, `fanin`, `fanout`.
#[derive(Debug, Clone, Serialize)]
pub struct MessagingConfig {
    pub shape: Shape,
    pub publishers: u32,
    pub subscribers: u32,
    pub topics: u32,
    /// Total messages per second over all publishers (open loop), or `None` for closed loop.
    pub rate_per_sec: Option<f64>,
    /// Unacknowledged QoS 1/2 messages per publisher (closed loop); QoS 0 messages per write.
    pub window: u16,
    /// `Some`: persistent MQTT 5 sessions with this Session Expiry Interval; `None`: clean.
    pub session_expiry_secs: Option<u32>,
    /// The longest wait for the last deliveries once publishing stops.
    pub drain_timeout: Duration,
}

/// What a client is, by global index: conn clients are `0..connections`; in messaging runs
/// subscribers come first (`0..S`), then publishers (`S..S+P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Conn,
    Subscriber(u32),
    Publisher(u32),
}

impl MessagingConfig {
    /// The topic index publisher `publisher` publishes on.
    pub fn publisher_topic(&self, publisher: u32) -> u32 {
        publisher % self.topics
    }

    /// Whether subscriber `subscriber` receives what `publisher` publishes.
    pub fn delivers(&self, publisher: u32, subscriber: u32) -> bool {
        match self.shape {
            Shape::FanIn => true,
            Shape::Pairs | Shape::FanOut => {
                self.publisher_topic(publisher) == subscriber % self.topics
            }
        }
    }

    /// How many subscribers receive each message of `publisher`.
    pub fn subscribers_of(&self, publisher: u32) -> u64 {
        match self.shape {
            Shape::FanIn => u64::from(self.subscribers),
            Shape::Pairs | Shape::FanOut => {
                count_congruent(self.subscribers, self.topics, self.publisher_topic(publisher))
            }
        }
    }

    /// The publishers whose messages `subscriber` receives, in ascending order.
    pub fn publishers_of(&self, subscriber: u32) -> impl Iterator<Item = u32> + '_ {
        let (first, step) = match self.shape {
            Shape::FanIn => (0, 1),
            Shape::Pairs | Shape::FanOut => (subscriber % self.topics, self.topics),
        };
        (first..self.publishers).step_by(step as usize)
    }

    /// Every (publisher, subscriber) pair that carries messages.
    pub fn stream_count(&self) -> u64 {
        (0..self.topics.min(self.publishers))
            .map(|topic| match self.shape {
                Shape::FanIn => {
                    count_congruent(self.publishers, self.topics, topic)
                        * u64::from(self.subscribers)
                }
                Shape::Pairs | Shape::FanOut => {
                    count_congruent(self.publishers, self.topics, topic)
                        * count_congruent(self.subscribers, self.topics, topic)
                }
            })
            .sum()
    }
}

/// How many `i` in `0..count` have `i % modulus == residue`.
fn count_congruent(count: u32, modulus: u32, residue: u32) -> u64 {
    let (count, modulus, residue) = (u64::from(count), u64::from(modulus), u64::from(residue));
    if residue >= count {
        0
    } else {
        (count - residue).div_ceil(modulus)
    }
}

impl RunConfig {
    /// Where the worker executors run.
    pub fn placement(&self) -> ShardPlacement {
        if self.pin_workers {
            ShardPlacement::PinnedToCpus
        } else {
            ShardPlacement::Unbound
        }
    }

    /// Clients in the whole run (over every process).
    pub fn client_count(&self) -> u64 {
        match &self.scenario {
            Scenario::Conn(conn) => conn.connections,
            Scenario::Messaging(messaging) => {
                u64::from(messaging.subscribers) + u64::from(messaging.publishers)
            }
            Scenario::Retained(retained) => u64::from(retained.subscribers) + 1,
            Scenario::Churn(churn) => u64::from(churn.clients) + 1,
        }
    }

    /// What client `index` is.
    pub fn role(&self, index: u64) -> Role {
        match &self.scenario {
            // Retained runs name their clients themselves (`retained.rs`).
            Scenario::Conn(_) | Scenario::Retained(_) | Scenario::Churn(_) => Role::Conn,
            Scenario::Messaging(messaging) => {
                let subscribers = u64::from(messaging.subscribers);
                // Indexes are below `client_count`, which `check` keeps within u32.
                if index < subscribers {
                    Role::Subscriber(index as u32)
                } else {
                    Role::Publisher((index - subscribers) as u32)
                }
            }
        }
    }

    /// Whether client `index` runs in this process.
    pub fn in_this_process(&self, index: u64) -> bool {
        index % u64::from(self.share.count) == u64::from(self.share.index)
    }

    /// The worker (executor) of this process that runs client `index`.
    pub fn worker_of(&self, index: u64) -> usize {
        ((index / u64::from(self.share.count)) % self.workers as u64) as usize
    }

    /// The broker client `index` connects to.
    pub fn target_of(&self, index: u64) -> SocketAddr {
        self.targets[(index % self.targets.len() as u64) as usize]
    }

    /// The local address client `index` connects from. Clients walk the targets first and the
    /// sources second, so every (source, target) pair is used, each with its own ~28K ports.
    pub fn source_of(&self, index: u64) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let round = index / self.targets.len() as u64;
        Some(self.sources[(round % self.sources.len() as u64) as usize])
    }

    /// The MQTT client id of client `index`.
    pub fn client_id(&self, index: u64) -> String {
        match self.role(index) {
            Role::Conn => format!("{}c{index}", self.run_tag),
            Role::Subscriber(subscriber) => format!("{}s{subscriber}", self.run_tag),
            Role::Publisher(publisher) => format!("{}p{publisher}", self.run_tag),
        }
    }

    /// The topic name of topic `topic`.
    pub fn topic(&self, topic: u32) -> String {
        format!("lg/{}/{topic}", self.run_tag)
    }

    /// Matches every topic of this run.
    pub fn all_topics_filter(&self) -> String {
        format!("lg/{}/+", self.run_tag)
    }

    /// Checks the values no flag parser can check alone.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.targets.is_empty() {
            return Err(invalid("--target", "give at least one broker address"));
        }
        if self.workers == 0 || self.workers > WORKERS_MAX {
            return Err(invalid("--workers", format!("must be 1..={WORKERS_MAX}")));
        }
        if self.share.count == 0 || self.share.index >= self.share.count {
            return Err(invalid("--processes", "the share index must be below the count"));
        }
        if self.client_count() > CLIENTS_MAX {
            return Err(invalid("--connections", format!("at most {CLIENTS_MAX} clients")));
        }
        if !(PAYLOAD_HEADER_BYTES..=PAYLOAD_BYTES_MAX).contains(&self.payload_bytes) {
            return Err(invalid(
                "--payload",
                format!(
                    "must be {PAYLOAD_HEADER_BYTES}..={PAYLOAD_BYTES_MAX} bytes (every payload \
                     carries a {PAYLOAD_HEADER_BYTES}-byte header: publisher, sequence, send time)"
                ),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("--connect-timeout", "must be above 0"));
        }
        match &self.scenario {
            Scenario::Conn(conn) => {
                if conn.connections == 0 {
                    return Err(invalid("--connections", "must be at least 1"));
                }
                if !(conn.rate_per_sec.is_finite() && conn.rate_per_sec > 0.0) {
                    return Err(invalid("--rate", "must be a positive number"));
                }
                if let Some(retry) = conn.retry {
                    if retry.attempts_max == 1 {
                        return Err(invalid("--retry-max", "must be 0 (no limit) or at least 2"));
                    }
                    if retry.backoff_min.is_zero() || retry.backoff_max < retry.backoff_min {
                        return Err(invalid(
                            "--retry-backoff-ms",
                            "must be above 0 and at most --retry-backoff-max-ms",
                        ));
                    }
                }
            }
            Scenario::Messaging(messaging) => {
                check_messaging(messaging)?;
                if messaging.session_expiry_secs.is_some() && self.version != ProtocolVersion::V5 {
                    return Err(invalid(
                        "--session-expiry",
                        "needs --mqtt 5 (a 3.1.1 session never expires: it would outlive the run)",
                    ));
                }
            }
            Scenario::Retained(retained) => check_retained(retained, self.share)?,
            Scenario::Churn(churn) => {
                if churn.clients == 0 {
                    return Err(invalid("--clients", "must be at least 1"));
                }
                for (flag, rate) in
                    [("--rate", churn.rate_per_sec), ("--publish-rate", churn.publish_rate_per_sec)]
                {
                    if !(rate.is_finite() && rate > 0.0) {
                        return Err(invalid(flag, "must be a positive number"));
                    }
                }
                if self.qos == QoS::AtMostOnce {
                    return Err(invalid("--qos", "churn needs QoS 1 or 2: QoS 0 is not queued"));
                }
                if self.share != ProcessShare::WHOLE {
                    return Err(invalid("--processes", "churn runs in one process"));
                }
            }
        }
        Ok(())
    }
}

fn check_retained(retained: &RetainedConfig, share: ProcessShare) -> Result<(), ConfigError> {
    if retained.retained == 0 || retained.retained > RETAINED_MAX {
        return Err(invalid("--retained", format!("must be 1..={RETAINED_MAX}")));
    }
    if retained.subscribers == 0 {
        return Err(invalid("--subscribers", "must be at least 1"));
    }
    let tracked = u64::from(retained.retained) * u64::from(retained.subscribers);
    if tracked > STREAMS_MAX * 64 {
        return Err(invalid(
            "--subscribers",
            format!("{tracked} deliveries to track; at most {}", STREAMS_MAX * 64),
        ));
    }
    if share != ProcessShare::WHOLE {
        return Err(invalid("--processes", "retained runs in one process"));
    }
    Ok(())
}

fn check_messaging(messaging: &MessagingConfig) -> Result<(), ConfigError> {
    if messaging.publishers == 0 {
        return Err(invalid("--publishers", "must be at least 1"));
    }
    if messaging.subscribers == 0 {
        return Err(invalid("--subscribers", "must be at least 1"));
    }
    if messaging.topics == 0 {
        return Err(invalid("--topics", "must be at least 1"));
    }
    if messaging.window == 0 {
        return Err(invalid("--window", "must be at least 1"));
    }
    if let Some(rate) = messaging.rate_per_sec {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid("--rate", "must be a positive number"));
        }
    }
    if messaging.shape == Shape::Pairs && messaging.publishers != messaging.subscribers {
        return Err(invalid(
            "--publishers",
            "pairs needs as many publishers as subscribers (use fanin or fanout otherwise)",
        ));
    }
    let streams = messaging.stream_count();
    if streams > STREAMS_MAX {
        return Err(invalid(
            "--topics",
            format!(
                "{streams} (publisher, subscriber) streams to check; at most {STREAMS_MAX}: use \
                 more topics or fewer clients"
            ),
        ));
    }
    Ok(())
}

/// Parses `--source` values: addresses, `A-B` IPv4 ranges (inclusive), comma-separated lists.
pub fn parse_sources(values: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    let mut sources = Vec::new();
    for item in values.iter().flat_map(|value| value.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('-') {
            None => sources.push(parse_ip(item)?),
            Some((first, last)) => {
                let (first, last) = (parse_ipv4(first)?, parse_ipv4(last)?);
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first {
                    return Err(invalid("--source", format!("{item}: the range runs backwards")));
                }
                if last - first >= SOURCE_RANGE_ADDRESSES_MAX {
                    return Err(invalid(
                        "--source",
                        format!("{item}: more than {SOURCE_RANGE_ADDRESSES_MAX} addresses"),
                    ));
                }
                sources.extend((first..=last).map(|raw| IpAddr::V4(Ipv4Addr::from(raw))));
            }
        }
    }
    Ok(sources)
}

fn parse_ip(text: &str) -> Result<IpAddr, ConfigError> {
    text.trim().parse().map_err(|_| invalid("--source", format!("{text:?} is not an IP address")))
}

fn parse_ipv4(text: &str) -> Result<Ipv4Addr, ConfigError> {
    match parse_ip(text)? {
        IpAddr::V4(address) => Ok(address),
        IpAddr::V6(_) => Err(invalid("--source", "ranges are IPv4 only; list IPv6 addresses")),
    }
}

/// Resolves `--target HOST:PORT` (a host name resolves to its first address).
pub fn parse_target(text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|error| invalid("--target", format!("{text}: {error}")))?
        .next()
        .ok_or_else(|| invalid("--target", format!("{text}: resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_to_its_bound_with_jitter() {
        let policy = RetryPolicy {
            backoff_min: Duration::from_millis(1000),
            backoff_max: Duration::from_millis(16_000),
            attempts_max: 30,
        };
        let ms = |attempt, random| policy.backoff(attempt, random).as_millis();
        // No jitter draw (random 0) gives half the backoff, the largest draw nearly all of it.
        assert_eq!(
            [ms(1, 0), ms(2, 0), ms(3, 0), ms(5, 0), ms(6, 0), ms(29, 0)],
            [500, 1000, 2000, 8000, 8000, 8000]
        );
        assert_eq!(ms(1, 999), 999);
        assert_eq!(ms(9, 999), 15_992);
        assert!((0..5_000).all(|random| (500..=1000).contains(&ms(1, random))));
    }

    fn messaging(shape: Shape, publishers: u32, subscribers: u32, topics: u32) -> MessagingConfig {
        MessagingConfig {
            shape,
            publishers,
            subscribers,
            topics,
            rate_per_sec: None,
            window: 1,
            session_expiry_secs: None,
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// The closed forms agree with counting every pair.
    #[test]
    fn mapping_counts_match_enumeration() {
        for shape in [Shape::Pairs, Shape::FanIn, Shape::FanOut] {
            for (publishers, subscribers, topics) in [(3, 3, 3), (1, 7, 1), (7, 2, 3), (2, 9, 4)] {
                let config = messaging(shape, publishers, subscribers, topics);
                let mut streams = 0;
                for publisher in 0..publishers {
                    let receivers =
                        (0..subscribers).filter(|&s| config.delivers(publisher, s)).count();
                    assert_eq!(config.subscribers_of(publisher), receivers as u64);
                    streams += receivers as u64;
                }
                for subscriber in 0..subscribers {
                    let expected: Vec<u32> =
                        (0..publishers).filter(|&p| config.delivers(p, subscriber)).collect();
                    assert_eq!(config.publishers_of(subscriber).collect::<Vec<_>>(), expected);
                }
                assert_eq!(config.stream_count(), streams, "{shape:?} {publishers} {subscribers}");
            }
        }
    }

    #[test]
    fn sources_parse_ranges_and_lists() {
        let check = |input: &[&str], expected: &[&str]| {
            let input: Vec<String> = input.iter().map(|s| s.to_string()).collect();
            let parsed = parse_sources(&input).expect("valid");
            let expected: Vec<IpAddr> = expected.iter().map(|s| s.parse().unwrap()).collect();
            assert_eq!(parsed, expected);
        };
        check(&["127.0.0.2-127.0.0.4"], &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        check(&["10.0.0.1,10.0.0.9", "::1"], &["10.0.0.1", "10.0.0.9", "::1"]);
        check(&["127.0.0.255-127.0.1.0"], &["127.0.0.255", "127.0.1.0"]);
        assert!(parse_sources(&["127.0.0.5-127.0.0.4".into()]).is_err());
        assert!(parse_sources(&["10.0.0.0-10.255.0.0".into()]).is_err());
        assert!(parse_sources(&["nope".into()]).is_err());
    }
}

//! The `retained` scenario: one client publishes R retained messages on distinct topics and
//! waits for every acknowledgement; then S subscribers subscribe to a wildcard covering them and
//! each must receive all R; then (unless `--keep`) the publisher clears them with empty retained
//! payloads.
//!
//! The three phases run one after the other, each on its own executors (`start_shards`), so no
//! phase needs a coordinator: the publisher's phase ends before any subscriber connects.
//! Everything inside a phase lives on one worker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;
use shardmq_io::codec::{
    Ack, ByteString, Bytes, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_io::runtime::{self, start_shards, ShardPlacement};

use crate::clock::{duration_ns, now_ns};
use crate::config::{RetainedConfig, RunConfig, Scenario};
use crate::histogram::{Latency, LatencySummary};
use crate::mqtt::{BufferPool, ConnectOptions, Connection, Failure, Session};
use crate::payload::PayloadHeader;
use crate::report::{Report, Timeline, WorkerReport};
use crate::run::{Progress, RunError};
use crate::worker::{acknowledge, with_timeout, SETUPS_IN_FLIGHT_MAX};

/// Unacknowledged retained publishes in flight (shardmq's own Receive Maximum; capped by the
/// broker's).
const PUBLISH_WINDOW: u16 = 64;
/// How long the publisher waits for the next acknowledgement before giving up on the rest.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A subscriber that got nothing new for this long stops waiting for the missing messages.
const DELIVERY_QUIET: Duration = Duration::from_secs(5);
/// The longest a subscriber waits for its retained messages, whatever still trickles in.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a worker waiting for a set-up slot looks again.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// The packet identifier of every subscriber's one SUBSCRIBE.
const SUBSCRIBE_PACKET_ID: u16 = 1;

/// What the `retained` scenario measured (`retained` in the JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetainedReport {
    /// Retained messages to publish (R).
    pub retained: u32,
    /// The filter the subscribers used.
    pub filter: String,
    /// Retained messages written, and of those the ones the broker acknowledged (QoS 1/2; at
    /// QoS 0, those sent before a PINGREQ round trip completed).
    pub published: u64,
    pub acknowledged: u64,
    pub publish_secs: f64,
    pub subscribers: u32,
    /// Subscribers whose SUBACK arrived.
    pub subscribed: u32,
    /// Subscribers that received every one of the R messages.
    pub complete: u32,
    /// Deliveries over every subscriber, duplicates included.
    pub received: u64,
    /// Deliveries expected: R for every subscriber that subscribed.
    pub expected: u64,
    /// Of those, never received.
    pub missing: u64,
    pub duplicates: u64,
    /// Deliveries of this run without the RETAIN flag (a retained message sent because of a
    /// new subscription must carry it).
    pub without_retain_flag: u64,
    /// Messages without this run's payload header (other retained messages the filter matches).
    pub foreign: u64,
    /// Per subscriber: from sending SUBSCRIBE to its last retained message.
    pub subscribe_to_last: LatencySummary,
    /// Distinct deliveries over all subscribers, per second from the first SUBSCRIBE to the
    /// last delivery.
    pub delivered_per_sec: f64,
    /// Retained messages cleared at the end (acknowledged), or `None` with `--keep`.
    pub cleared: Option<u64>,
}

/// Runs the `retained` scenario in this process.
pub fn run(config: &RunConfig, progress: Progress) -> Result<Report, RunError> {
    let Scenario::Retained(retained) = &config.scenario else {
        return Err(RunError::Process("not a retained run".into()));
    };
    let config = Arc::new(config.clone());
    let filter = retained.filter.clone().unwrap_or_else(|| config.all_topics_filter());
    let say = |line: String| {
        if progress == Progress::Stderr {
            eprintln!("{line}");
        }
    };
    let started_ns = now_ns();
    say(format!("publishing {} retained messages at QoS {}", retained.retained, config.qos as u8));
    let published = on_one_worker(&config, |config| publish_phase(config, PublishKind::Retained))?;
    let mut raw = published.tally;
    let mut report = RetainedReport {
        retained: retained.retained,
        filter: filter.clone(),
        published: published.written,
        acknowledged: published.acknowledged,
        publish_secs: published.elapsed_ns as f64 / 1e9,
        subscribers: retained.subscribers,
        ..RetainedReport::default()
    };
    let mut problems = Vec::new();
    if let Some(failure) = &published.failure {
        problems.push(format!("the retained publisher failed: {failure}"));
    }
    if published.acknowledged < published.written
        || (published.written < u64::from(retained.retained) && !crate::stop::requested())
    {
        problems.push(format!(
            "only {} of {} retained messages were acknowledged",
            published.acknowledged, retained.retained
        ));
    }
    if published.failure.is_none() && !crate::stop::requested() {
        say(format!(
            "published in {:.3} s; {} subscribers subscribe to {filter}",
            report.publish_secs, retained.subscribers
        ));
        subscribe_phase(&config, &filter, &mut raw, &mut report)?;
    }
    if !retained.keep {
        // Clears every topic a retained message was written to, stop or not.
        let written = published.written;
        let cleared = on_one_worker(&config, move |config| {
            publish_phase(config, PublishKind::Clear(written))
        })?;
        if let Some(failure) = &cleared.failure {
            problems.push(format!("clearing the retained messages failed: {failure}"));
        }
        report.cleared = Some(cleared.acknowledged);
        raw.merge(cleared.tally);
    }
    retained_problems(&report, &mut problems);
    let timeline = Timeline {
        started_ns,
        finished_ns: now_ns(),
        stopped_early: crate::stop::requested(),
        ..Timeline::default()
    };
    let mut built = Report::build(&config, &raw, timeline);
    built.problems.extend(problems);
    built.passed = built.problems.is_empty();
    built.retained = Some(report);
    Ok(built)
}

fn retained_problems(report: &RetainedReport, problems: &mut Vec<String>) {
    if report.subscribed > 0 && report.missing > 0 {
        problems.push(format!(
            "MISSING: {} of {} retained deliveries never arrived ({} of {} subscribers got all {})",
            report.missing, report.expected, report.complete, report.subscribed, report.retained
        ));
    }
    if report.without_retain_flag > 0 {
        problems.push(format!(
            "{} retained messages were delivered without the RETAIN flag",
            report.without_retain_flag
        ));
    }
}

/// Runs `phase` on one executor and returns its output.
fn on_one_worker<T, F>(
    config: &Arc<RunConfig>,
    phase: impl FnOnce(Arc<RunConfig>) -> F + Send + Clone + 'static,
) -> Result<T, RunError>
where
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handles =
        start_shards(ShardPlacement::Unbound, vec![config.clone()], move |_, config| phase(config))
            .map_err(RunError::Start)?;
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.join()?);
    }
    outputs.pop().ok_or_else(|| RunError::Process("no worker ran".into()))
}

/// Which publishing pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublishKind {
    /// The R retained messages, each with a payload header naming its topic index.
    Retained,
    /// Empty retained payloads on the first this many topics: the broker deletes them.
    Clear(u64),
}

/// What a publishing pass did.
#[derive(Debug, Default)]
struct Published {
    tally: WorkerReport,
    written: u64,
    acknowledged: u64,
    elapsed_ns: u64,
    failure: Option<Failure>,
}

fn retained_of(config: &RunConfig) -> &RetainedConfig {
    match &config.scenario {
        Scenario::Retained(retained) => retained,
        // `run` checked the scenario before starting any worker.
        Scenario::Conn(_) | Scenario::Messaging(_) | Scenario::Churn(_) => {
            unreachable!("a retained run")
        }
    }
}

/// Connects client 0 (`<tag>rp`, or `<tag>rc` to clear) and publishes on every topic.
async fn publish_phase(config: Arc<RunConfig>, kind: PublishKind) -> Published {
    let pool = BufferPool::default();
    let mut published = Published::default();
    let suffix = match kind {
        PublishKind::Retained => "rp",
        PublishKind::Clear(_) => "rc",
    };
    let options = ConnectOptions {
        version: config.version,
        client_id: format!("{}{suffix}", config.run_tag),
        keepalive_secs: config.keepalive_secs,
        session: Session::Clean,
    };
    let attempt_ns = attempt(&mut published.tally);
    let opened = with_timeout(
        config.connect_timeout,
        Connection::open(config.target_of(0), config.source_of(0), &options, &pool),
    )
    .await;
    let mut connection = match opened {
        Ok(connection) => connection,
        Err(failure) => {
            *published.tally.failures.entry(failure.key()).or_default() += 1;
            published.failure = Some(failure);
            return published;
        }
    };
    connected(&mut published.tally, attempt_ns);
    let started_ns = now_ns();
    let outcome = publish_all(&config, kind, &mut connection, &pool, &mut published).await;
    published.elapsed_ns = now_ns().saturating_sub(started_ns);
    match outcome {
        Ok(()) => {
            published.tally.stayed_up += 1;
            connection.disconnect(&pool).await;
        }
        Err(failure) => {
            *published.tally.dropped.entry(failure.key()).or_default() += 1;
            published.failure = Some(failure);
        }
    }
    published
}

fn attempt(tally: &mut WorkerReport) -> u64 {
    let attempt_ns = now_ns();
    tally.attempts += 1;
    if tally.first_attempt_ns == 0 {
        tally.first_attempt_ns = attempt_ns;
    }
    attempt_ns
}

fn connected(tally: &mut WorkerReport, attempt_ns: u64) {
    let connected_ns = now_ns();
    tally.connected += 1;
    tally.connect_latency.record_ns(connected_ns.saturating_sub(attempt_ns));
    tally.last_connected_ns = tally.last_connected_ns.max(connected_ns);
}

/// Publishes on topics `0..R` with at most a window of them unacknowledged, then waits for the
/// rest (QoS 1/2) or for a PINGREQ round trip (QoS 0).
async fn publish_all(
    config: &RunConfig,
    kind: PublishKind,
    connection: &mut Connection,
    pool: &BufferPool,
    published: &mut Published,
) -> Result<(), Failure> {
    let mut pass = PublishPass::new(config, kind, connection);
    loop {
        if kind == PublishKind::Retained && crate::stop::requested() {
            // Cut short: publish no more, but settle what is in flight.
            pass.next = pass.count;
        }
        pass.encode_window(published)?;
        if !pass.out.is_empty() {
            connection.write(&pass.out).await?;
            pass.out.clear();
        }
        if config.qos == QoS::AtMostOnce {
            if pass.next < pass.count {
                runtime::yield_if_needed().await;
                continue;
            }
            connection.round_trip(pool, |_| Ok(())).await?;
            published.acknowledged = published.written;
            return Ok(());
        }
        if pass.next >= pass.count && pass.in_flight.is_empty() {
            return Ok(());
        }
        if !connection.has_buffered() {
            with_timeout(ACK_TIMEOUT, connection.fill(pool)).await?;
        }
        pass.take_acknowledgements(connection, pool, published)?;
        connection.release_buffer(pool);
    }
}

/// Where a publishing pass stands: the next topic, the packet identifiers free and in flight,
/// and the bytes encoded but not yet written.
struct PublishPass<'a> {
    config: &'a RunConfig,
    kind: PublishKind,
    /// Topics to publish on: `0..count`.
    count: u32,
    next: u32,
    /// Packet identifiers 1..=window, reused as acknowledgements free them.
    free: Vec<u16>,
    /// Packet identifier → topic index.
    in_flight: HashMap<u16, u32>,
    version: ProtocolVersion,
    out: BytesMut,
    payload: BytesMut,
}

impl<'a> PublishPass<'a> {
    fn new(config: &'a RunConfig, kind: PublishKind, connection: &Connection) -> PublishPass<'a> {
        let count = match kind {
            PublishKind::Retained => retained_of(config).retained,
            // At most R: written counts topics below R.
            PublishKind::Clear(written) => {
                written.min(u64::from(retained_of(config).retained)) as u32
            }
        };
        let window = PUBLISH_WINDOW.min(connection.receive_maximum).max(1);
        PublishPass {
            config,
            kind,
            count,
            next: 0,
            free: (1..=window).rev().collect(),
            in_flight: HashMap::new(),
            version: connection.version(),
            out: BytesMut::new(),
            payload: BytesMut::new(),
        }
    }

    /// Encodes the next topics' PUBLISHes into `out` until the window is full, every topic is
    /// sent, or `out` holds a read's worth.
    fn encode_window(&mut self, published: &mut Published) -> Result<(), Failure> {
        let config = self.config;
        while self.next < self.count {
            let packet_id = match config.qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce | QoS::ExactlyOnce => {
                    let Some(id) = self.free.pop() else { break };
                    self.in_flight.insert(id, self.next);
                    PacketId::new(id)
                }
            };
            let body = self.body();
            Packet::Publish(Publish {
                dup: false,
                qos: config.qos,
                retain: true,
                topic: ByteString::from(config.topic(self.next)),
                packet_id,
                properties: Properties::default(),
                payload: body,
            })
            .encode(self.version, &mut self.out)?;
            self.next += 1;
            published.written += 1;
            if self.out.len() >= runtime::READ_BYTES_MAX {
                break;
            }
        }
        Ok(())
    }

    /// The next topic's payload: a header naming it, or empty to clear it.
    fn body(&mut self) -> Bytes {
        match self.kind {
            PublishKind::Retained => {
                let header = PayloadHeader {
                    run_id: self.config.run_id,
                    publisher: 0,
                    sequence: u64::from(self.next),
                    intended_ns: now_ns(),
                };
                header.write(self.config.payload_bytes, &mut self.payload);
                Bytes::from(self.payload.split())
            }
            PublishKind::Clear(_) => Bytes::new(),
        }
    }

    /// Takes the acknowledgements in the connection's buffer: frees their identifiers, counts
    /// the successes, and answers PUBREC with PUBREL (into `out`).
    fn take_acknowledgements(
        &mut self,
        connection: &mut Connection,
        pool: &BufferPool,
        published: &mut Published,
    ) -> Result<(), Failure> {
        while let Some(packet) = connection.next_packet(pool)? {
            match packet {
                Packet::PubAck(ack) | Packet::PubComp(ack) => {
                    let id = ack.packet_id.get();
                    if self.in_flight.remove(&id).is_none() {
                        return Err(Failure::Protocol("acknowledgement of nothing sent".into()));
                    }
                    self.free.push(id);
                    if !ack.reason.is_error() {
                        published.acknowledged += 1;
                    }
                }
                Packet::PubRec(ack) => {
                    let id = ack.packet_id.get();
                    if !self.in_flight.contains_key(&id) {
                        return Err(Failure::Protocol("PUBREC of nothing sent".into()));
                    }
                    if ack.reason.is_error() {
                        self.in_flight.remove(&id);
                        self.free.push(id);
                    } else {
                        Packet::PubRel(Ack::success(ack.packet_id))
                            .encode(self.version, &mut self.out)?;
                    }
                }
                // Nothing else is expected; a stray packet is harmless.
                _ => {}
            }
        }
        Ok(())
    }
}

/// One subscriber's outcome.
#[derive(Debug, Default)]
struct Delivery {
    subscribed: bool,
    /// Which of the R topics arrived (a bit per topic).
    seen: Vec<u64>,
    distinct: u64,
    received: u64,
    duplicates: u64,
    without_retain_flag: u64,
    foreign: u64,
    subscribe_ns: u64,
    last_ns: u64,
}

impl Delivery {
    fn new(retained: u32) -> Delivery {
        Delivery { seen: vec![0; (retained as usize).div_ceil(64)], ..Delivery::default() }
    }

    /// Records one PUBLISH; returns whether it was new.
    fn record(&mut self, run_id: u32, retained: u32, publish: &Publish) -> bool {
        let header = PayloadHeader::read(&publish.payload).filter(|header| {
            header.run_id == run_id && header.publisher == 0 && header.sequence < retained.into()
        });
        let Some(header) = header else {
            self.foreign += 1;
            return false;
        };
        self.received += 1;
        if !publish.retain {
            self.without_retain_flag += 1;
        }
        let (word, bit) = ((header.sequence / 64) as usize, header.sequence % 64);
        let Some(slot) = self.seen.get_mut(word) else { return false };
        if *slot & (1 << bit) != 0 {
            self.duplicates += 1;
            return false;
        }
        *slot |= 1 << bit;
        self.distinct += 1;
        true
    }
}

/// What one subscriber worker measured.
#[derive(Debug, Default)]
struct SubscriberTally {
    tally: WorkerReport,
    deliveries: Vec<Delivery>,
}

/// Runs every subscriber over `config.workers` executors and folds what they got into
/// `report` (and their connections into `raw`).
fn subscribe_phase(
    config: &Arc<RunConfig>,
    filter: &str,
    raw: &mut WorkerReport,
    report: &mut RetainedReport,
) -> Result<(), RunError> {
    let inputs: Vec<(usize, Arc<RunConfig>, String)> =
        (0..config.workers).map(|worker| (worker, config.clone(), filter.to_owned())).collect();
    let placement = config.placement();
    let handles = start_shards(placement, inputs, |_, (worker, config, filter)| {
        subscriber_worker(worker, config, filter)
    })
    .map_err(RunError::Start)?;
    let mut subscribe_to_last = Latency::new();
    let (mut first_subscribe_ns, mut last_delivery_ns) = (u64::MAX, 0);
    let mut distinct = 0;
    for handle in handles {
        let tally = handle.join()?;
        raw.merge(tally.tally);
        for delivery in tally.deliveries {
            report.foreign += delivery.foreign;
            if !delivery.subscribed {
                continue;
            }
            report.subscribed += 1;
            report.expected += u64::from(report.retained);
            report.received += delivery.received;
            report.missing += u64::from(report.retained) - delivery.distinct;
            report.duplicates += delivery.duplicates;
            report.without_retain_flag += delivery.without_retain_flag;
            if delivery.distinct == u64::from(report.retained) {
                report.complete += 1;
            }
            first_subscribe_ns = first_subscribe_ns.min(delivery.subscribe_ns);
            if delivery.distinct > 0 {
                subscribe_to_last.record_ns(delivery.last_ns.saturating_sub(delivery.subscribe_ns));
                last_delivery_ns = last_delivery_ns.max(delivery.last_ns);
                distinct += delivery.distinct;
            }
        }
    }
    report.subscribe_to_last = subscribe_to_last.summary();
    let span_ns = last_delivery_ns.saturating_sub(first_subscribe_ns);
    if span_ns > 0 && first_subscribe_ns != u64::MAX {
        report.delivered_per_sec = distinct as f64 / (span_ns as f64 / 1e9);
    }
    Ok(())
}

/// One executor's subscribers: clients `1..=S` with `(i - 1) % workers == worker`, at most
/// [`SETUPS_IN_FLIGHT_MAX`] connecting at once.
async fn subscriber_worker(
    worker: usize,
    config: Arc<RunConfig>,
    filter: String,
) -> SubscriberTally {
    let retained = retained_of(&config);
    let shared = Rc::new(SubscriberShared {
        config: config.clone(),
        filter,
        pool: BufferPool::default(),
        setups: Cell::new(0),
        running: Cell::new(0),
        tally: RefCell::new(SubscriberTally::default()),
    });
    for subscriber in (worker as u32..retained.subscribers).step_by(config.workers) {
        while shared.setups.get() >= SETUPS_IN_FLIGHT_MAX {
            runtime::sleep(WAIT_POLL).await;
        }
        shared.setups.set(shared.setups.get() + 1);
        shared.running.set(shared.running.get() + 1);
        let task_shared = shared.clone();
        runtime::spawn_local(async move {
            subscriber_client(task_shared.clone(), subscriber).await;
            task_shared.running.set(task_shared.running.get() - 1);
        });
    }
    while shared.running.get() > 0 {
        runtime::sleep(WAIT_POLL).await;
    }
    shared.tally.replace(SubscriberTally::default())
}

/// What a worker's subscriber tasks share. Lives on one worker.
#[derive(Debug)]
struct SubscriberShared {
    config: Arc<RunConfig>,
    filter: String,
    pool: BufferPool,
    /// Subscribers connecting and not yet subscribed.
    setups: Cell<u64>,
    /// Subscriber tasks not yet ended.
    running: Cell<u64>,
    tally: RefCell<SubscriberTally>,
}

/// One subscriber: connect, subscribe, collect the retained messages until it has all R (or
/// nothing new comes for [`DELIVERY_QUIET`]), disconnect.
async fn subscriber_client(shared: Rc<SubscriberShared>, subscriber: u32) {
    let config = &shared.config;
    let retained = retained_of(config).retained;
    let index = u64::from(subscriber) + 1;
    let mut delivery = Delivery::new(retained);
    let options = ConnectOptions {
        version: config.version,
        client_id: format!("{}rs{subscriber}", config.run_tag),
        keepalive_secs: config.keepalive_secs,
        session: Session::Clean,
    };
    let attempt_ns = attempt(&mut shared.tally.borrow_mut().tally);
    let opened = with_timeout(
        config.connect_timeout,
        Connection::open(config.target_of(index), config.source_of(index), &options, &shared.pool),
    )
    .await;
    let mut connection = match opened {
        Ok(connection) => connection,
        Err(failure) => {
            shared.setups.set(shared.setups.get() - 1);
            *shared.tally.borrow_mut().tally.failures.entry(failure.key()).or_default() += 1;
            shared.tally.borrow_mut().deliveries.push(delivery);
            return;
        }
    };
    let outcome = collect(&shared, &mut connection, attempt_ns, &mut delivery).await;
    if !delivery.subscribed {
        shared.setups.set(shared.setups.get() - 1);
    }
    let dropped = match outcome {
        Ok(()) => {
            connection.disconnect(&shared.pool).await;
            None
        }
        Err(failure) => Some(failure),
    };
    let mut tally = shared.tally.borrow_mut();
    match dropped {
        None => tally.tally.stayed_up += 1,
        Some(failure) if delivery.subscribed => {
            *tally.tally.dropped.entry(failure.key()).or_default() += 1;
        }
        Some(failure) => {
            *tally.tally.failures.entry(failure.key()).or_default() += 1;
        }
    }
    tally.deliveries.push(delivery);
}

/// Subscribes and reads until every retained message came, or none came for a while. Retained
/// messages may arrive before the SUBACK, so both are taken in one loop.
async fn collect(
    shared: &SubscriberShared,
    connection: &mut Connection,
    attempt_ns: u64,
    delivery: &mut Delivery,
) -> Result<(), Failure> {
    let config = &shared.config;
    let retained = retained_of(config).retained;
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(SUBSCRIBE_PACKET_ID)
            .ok_or_else(|| Failure::Protocol("packet id 0".into()))?,
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(shared.filter.as_str()),
            options: SubscriptionOptions::with_qos(config.qos),
        }],
    });
    delivery.subscribe_ns = now_ns();
    connection.send_packet(&subscribe, &shared.pool).await?;
    let started_ns = delivery.subscribe_ns;
    let mut last_progress_ns = started_ns;
    let version = connection.version();
    let mut out = BytesMut::new();
    loop {
        if delivery.subscribed && delivery.distinct == u64::from(retained) {
            return Ok(());
        }
        if crate::stop::requested() {
            // Cut short: what arrived so far is the measurement; the rest counts as missing.
            return if delivery.subscribed { Ok(()) } else { Err(Failure::Timeout) };
        }
        let now = now_ns();
        let quiet_deadline = last_progress_ns + duration_ns(DELIVERY_QUIET);
        let deadline = quiet_deadline.min(started_ns + duration_ns(DELIVERY_TIMEOUT));
        if now >= deadline {
            // Before SUBACK this is a set-up timeout; after it, missing messages (reported).
            return if delivery.subscribed { Ok(()) } else { Err(Failure::Timeout) };
        }
        if !connection.has_buffered() {
            // At most 50 ms, to notice a stop.
            let wait = Duration::from_nanos(deadline - now).min(Duration::from_millis(50));
            match with_timeout(wait, connection.fill(&shared.pool)).await {
                Err(Failure::Timeout) => continue,
                other => other?,
            }
        }
        let received_ns = now_ns();
        while let Some(packet) = connection.next_packet(&shared.pool)? {
            match packet {
                Packet::Publish(publish) => {
                    acknowledge(&publish, version, &mut out)?;
                    if delivery.record(config.run_id, retained, &publish) {
                        delivery.last_ns = received_ns;
                        last_progress_ns = received_ns;
                    }
                }
                Packet::PubRel(ack) => {
                    Packet::PubComp(Ack::success(ack.packet_id)).encode(version, &mut out)?;
                }
                Packet::SubAck(suback) if !delivery.subscribed => {
                    let reason =
                        suback.reasons.first().copied().unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
                    if reason.is_error() {
                        return Err(Failure::SubAck(reason));
                    }
                    delivery.subscribed = true;
                    last_progress_ns = received_ns;
                    shared.setups.set(shared.setups.get() - 1);
                    connected(&mut shared.tally.borrow_mut().tally, attempt_ns);
                }
                _ => {}
            }
        }
        connection.release_buffer(&shared.pool);
        if !out.is_empty() {
            connection.write(&out).await?;
            out.clear();
        }
    }
}

//! One worker: a glommio executor (on its own thread) running its share of the simulated
//! clients as tasks, and a control task that turns the coordinator's phase flags into local
//! signals and publishes this worker's counters.
//!
//! Everything here lives on one worker: the tasks share a [`Worker`] through `Rc`, borrow its
//! `RefCell`s only between awaits, and never touch another worker's state.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future;
use shardmq_io::codec::{
    Ack, ByteString, Bytes, Packet, PacketId, Properties, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilterEntry,
};
use shardmq_io::runtime;

use crate::clock::{duration_ns, now_ns, until};
use crate::config::{MessagingConfig, Role, RunConfig, Scenario};
use crate::histogram::Latency;
use crate::integrity::{PublisherEnd, StreamCheck};
use crate::keepalive::KeepaliveClock;
use crate::mqtt::{BufferPool, ConnectOptions, Connection, Failure, Session};
use crate::payload::PayloadHeader;
use crate::report::{SubscriberEnd, WorkerReport};
use crate::shared::{LiveCounts, Shared};
use crate::signal::{Listener, Signal};

/// How often a worker's control task publishes its counters and checks the phase flags while
/// publishers wait to start. Short, because they start on the next check after the coordinator
/// says go.
pub const CONTROL_INTERVAL: Duration = Duration::from_millis(2);
/// The same once nothing waits for a start (a `conn` run, or publishers under way): a
/// worker holding idle connections then wakes 40 times a second, not 500. Measured with 20
/// processes holding 18,000 connections each beside 20 brokers on two cores: at 2 ms they took
/// 6–8 % of a core each, most of it in the kernel, CPU etcd needed.
pub const CONTROL_INTERVAL_IDLE: Duration = Duration::from_millis(25);
/// How often the coordinator prints a progress line.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a worker sends its latency histograms of the last interval to the coordinator:
/// several times per progress line, so every line has fresh samples from every worker.
pub const PROGRESS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// Messaging scenarios: client set-ups (connect, subscribe) one worker runs at once. Opening
/// every client at once would overflow the broker's accept backlog and turn set-up into SYN
/// retransmits; a few hundred keeps the backlog busy without overflowing it.
pub const SETUPS_IN_FLIGHT_MAX: u64 = 256;
/// How often a worker waiting for a bound (set-ups in flight, tasks left) looks again.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// The most messages a publisher encodes into one write: bounds its write buffer and the time
/// it runs before yielding to the worker's other tasks.
pub const PUBLISH_BATCH_MAX: usize = 256;
/// How long a publisher that has stopped waits for its outstanding acknowledgements, and for
/// a write the broker is not reading.
pub const ACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker waits for its client tasks once the run has finished. Every wait of a
/// client is bounded by its own timeout; this bounds the run even if one is not (a bug), so a
/// run always ends with a report rather than hanging.
pub const FINISH_GRACE: Duration = Duration::from_secs(20);

/// What the coordinator gives a worker.
#[derive(Debug)]
pub struct WorkerInput {
    pub index: usize,
    pub config: Arc<RunConfig>,
    pub shared: Arc<Shared>,
    /// Where the control task sends each interval's histograms.
    pub progress: mpsc::Sender<ProgressSample>,
    /// When `conn` starts opening connections (CLOCK_MONOTONIC ns).
    pub start_ns: u64,
}

/// One worker's latency histograms over the last [`PROGRESS_SAMPLE_INTERVAL`].
#[derive(Debug)]
pub struct ProgressSample {
    pub latency: Latency,
    pub connect_latency: Latency,
}

/// The state a worker's tasks share. Lives on one worker.
#[derive(Debug)]
struct Worker {
    index: usize,
    config: Arc<RunConfig>,
    shared: Arc<Shared>,
    pool: BufferPool,
    counts: Cell<LiveCounts>,
    /// Set-ups started and not yet ended (messaging scenarios).
    setups_in_flight: Cell<u64>,
    /// Client tasks still running.
    tasks: Cell<u64>,
    report: RefCell<WorkerReport>,
    interval_latency: RefCell<Latency>,
    interval_connect_latency: RefCell<Latency>,
    publish_start: Rc<Signal>,
    stop_publishing: Rc<Signal>,
    finish: Rc<Signal>,
    /// Wakes idle clients when their PINGREQ is due: one walk for all, no timer per client.
    keepalive: Rc<KeepaliveClock>,
}

impl Worker {
    fn count(&self, change: impl FnOnce(&mut LiveCounts)) {
        let mut counts = self.counts.get();
        change(&mut counts);
        self.counts.set(counts);
    }

    fn record_failure(&self, failure: &Failure) {
        *self.report.borrow_mut().failures.entry(failure.key()).or_default() += 1;
        self.count(|counts| {
            counts.setups_done += 1;
            counts.setups_failed += 1;
        });
    }

    fn record_drop(&self, failure: &Failure) {
        *self.report.borrow_mut().dropped.entry(failure.key()).or_default() += 1;
        self.count(|counts| counts.up = counts.up.saturating_sub(1));
    }

    fn record_connected(&self, attempt_ns: u64) {
        let connected_ns = now_ns();
        let latency_ns = connected_ns.saturating_sub(attempt_ns);
        let mut report = self.report.borrow_mut();
        report.connected += 1;
        report.connect_latency.record_ns(latency_ns);
        report.last_connected_ns = report.last_connected_ns.max(connected_ns);
        drop(report);
        self.interval_connect_latency.borrow_mut().record_ns(latency_ns);
        self.count(|counts| counts.up += 1);
    }

    fn record_attempt(&self) -> u64 {
        let attempt_ns = now_ns();
        let mut report = self.report.borrow_mut();
        report.attempts += 1;
        if report.first_attempt_ns == 0 || attempt_ns < report.first_attempt_ns {
            report.first_attempt_ns = attempt_ns;
        }
        attempt_ns
    }

    fn connect_options(&self, index: u64) -> ConnectOptions {
        ConnectOptions {
            version: self.config.version,
            client_id: self.config.client_id(index),
            keepalive_secs: self.config.keepalive_secs,
            session: match self.messaging().and_then(|messaging| messaging.session_expiry_secs) {
                Some(expiry_secs) => Session::Persistent { expiry_secs },
                None => Session::Clean,
            },
        }
    }

    /// Connects client `index`, with the run's connect timeout.
    ///
    /// Boxed: the handshake's state is large and lives only until CONNACK, so it must not
    /// stay part of the client task's future, which is what an idle client costs.
    async fn open(&self, index: u64) -> Result<Connection, Failure> {
        Box::pin(self.open_inline(index)).await
    }

    async fn open_inline(&self, index: u64) -> Result<Connection, Failure> {
        let options = self.connect_options(index);
        let open = Connection::open(
            self.config.target_of(index),
            self.config.source_of(index),
            &options,
            &self.pool,
        );
        with_timeout(self.config.connect_timeout, open).await
    }

    /// Pushes this worker's counters to the coordinator.
    fn publish_counts(&self) {
        self.shared.workers[self.index].store(&self.counts.get());
    }

    fn messaging(&self) -> Option<&MessagingConfig> {
        match &self.config.scenario {
            Scenario::Messaging(messaging) => Some(messaging),
            Scenario::Conn(_) | Scenario::Retained(_) | Scenario::Churn(_) => None,
        }
    }
}

/// Runs `operation`, or fails with [`Failure::Timeout`] after `timeout`.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    operation: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    future::or(operation, async {
        runtime::sleep(timeout).await;
        Err(Failure::Timeout)
    })
    .await
}

/// Sleeps until `deadline_ns`, or forever when there is none.
async fn sleep_until(deadline_ns: Option<u64>) {
    match deadline_ns {
        Some(deadline_ns) => runtime::sleep(until(deadline_ns)).await,
        None => future::pending().await,
    }
}

impl Worker {
    fn new(index: usize, config: Arc<RunConfig>, shared: Arc<Shared>) -> Worker {
        Worker {
            index,
            config,
            shared,
            pool: BufferPool::default(),
            counts: Cell::new(LiveCounts::default()),
            setups_in_flight: Cell::new(0),
            tasks: Cell::new(0),
            report: RefCell::new(WorkerReport::default()),
            interval_latency: RefCell::new(Latency::new()),
            interval_connect_latency: RefCell::new(Latency::new()),
            publish_start: Signal::new(),
            stop_publishing: Signal::new(),
            finish: Signal::new(),
            keepalive: KeepaliveClock::new(),
        }
    }
}

/// A worker's whole life: open its clients, run them until the coordinator says finish, and
/// return what they measured.
pub async fn run_worker(input: WorkerInput) -> WorkerReport {
    let worker = Rc::new(Worker::new(input.index, input.config, input.shared));
    runtime::spawn_local(control(worker.clone(), input.progress));
    open_clients(&worker, input.start_ns).await;
    // Every client task ends after `finish` (or on its own failure); wait for the last, but
    // not past FINISH_GRACE.
    while !worker.finish.is_raised() {
        runtime::sleep(WAIT_POLL).await;
    }
    let give_up_ns = now_ns() + duration_ns(FINISH_GRACE);
    while worker.tasks.get() > 0 && now_ns() < give_up_ns {
        runtime::sleep(WAIT_POLL).await;
    }
    worker.publish_counts();
    let mut report = worker.report.replace(WorkerReport::default());
    report.stuck = worker.tasks.get();
    let counts = worker.counts.get();
    report.sent = counts.sent;
    report.acknowledged = counts.acknowledged;
    report.received = counts.received;
    report.last_received_ns = counts.last_received_ns;
    report
}

/// The control task: mirrors the coordinator's flags into local signals, publishes counters,
/// and ships interval histograms, until the run finishes.
async fn control(worker: Rc<Worker>, progress: mpsc::Sender<ProgressSample>) {
    let mut next_progress_ns = now_ns() + duration_ns(PROGRESS_SAMPLE_INTERVAL);
    loop {
        worker.publish_counts();
        let shared = &worker.shared;
        let publish_start_ns = shared.publish_start_ns.load(Ordering::Acquire);
        if publish_start_ns != 0 && !worker.publish_start.is_raised() {
            worker.report.borrow_mut().publish_start_ns = publish_start_ns;
            worker.publish_start.raise();
            worker.keepalive.wake_all();
        }
        if shared.stop_publishing.load(Ordering::Acquire) {
            worker.stop_publishing.raise();
        }
        if shared.finish.load(Ordering::Acquire) {
            // Raising stop too lets a publisher still sending (a run cut short) wind down.
            worker.stop_publishing.raise();
            worker.finish.raise();
            worker.keepalive.wake_all();
            return;
        }
        worker.keepalive.tick(now_ns());
        let waiting_for_start = matches!(worker.config.scenario, Scenario::Messaging(_))
            && !worker.publish_start.is_raised();
        let interval = if waiting_for_start { CONTROL_INTERVAL } else { CONTROL_INTERVAL_IDLE };
        if now_ns() >= next_progress_ns {
            next_progress_ns += duration_ns(PROGRESS_SAMPLE_INTERVAL);
            let sample = ProgressSample {
                latency: worker.interval_latency.replace(Latency::new()),
                connect_latency: worker.interval_connect_latency.replace(Latency::new()),
            };
            // The coordinator stops listening only once the run is over.
            let _ = progress.send(sample);
        }
        runtime::sleep(interval).await;
    }
}

/// This worker's client indexes: process `k` of `K` owns `k, k+K, ...`, and worker `w` of `W`
/// every `W`-th of those starting at its own.
fn my_clients(worker: &Worker) -> impl Iterator<Item = u64> {
    let config = &worker.config;
    let processes = u64::from(config.share.count);
    let first = u64::from(config.share.index) + processes * worker.index as u64;
    let step = processes * config.workers as u64;
    let count = config.client_count();
    (first..count).step_by(step as usize)
}

fn spawn_client(worker: &Rc<Worker>, client: impl Future<Output = ()> + 'static) {
    worker.tasks.set(worker.tasks.get() + 1);
    let worker = worker.clone();
    runtime::spawn_local(async move {
        client.await;
        worker.tasks.set(worker.tasks.get() - 1);
    });
}

/// Starts every client task of this worker: `conn` clients at their scheduled times, messaging
/// clients with at most [`SETUPS_IN_FLIGHT_MAX`] set-ups at once.
async fn open_clients(worker: &Rc<Worker>, start_ns: u64) {
    let rate = match &worker.config.scenario {
        Scenario::Conn(conn) => Some(conn.rate_per_sec),
        Scenario::Messaging(_) | Scenario::Retained(_) | Scenario::Churn(_) => None,
    };
    for index in my_clients(worker) {
        if worker.finish.is_raised() {
            return;
        }
        match rate {
            Some(rate) => {
                // Client i of the whole run is due at start + i / rate: the rate holds over all
                // workers and processes without any of them talking to another.
                let due_ns = start_ns + (index as f64 * 1e9 / rate) as u64;
                let wait = until(due_ns);
                if wait.is_zero() {
                    // Behind schedule: open at once, but let the opened clients run too.
                    runtime::yield_if_needed().await;
                } else {
                    runtime::sleep(wait).await;
                }
            }
            None => {
                while worker.setups_in_flight.get() >= SETUPS_IN_FLIGHT_MAX {
                    runtime::sleep(WAIT_POLL).await;
                }
            }
        }
        match worker.config.role(index) {
            Role::Conn => spawn_client(worker, conn_client(worker.clone(), index)),
            Role::Subscriber(subscriber) => {
                worker.setups_in_flight.set(worker.setups_in_flight.get() + 1);
                spawn_client(worker, subscriber_client(worker.clone(), index, subscriber));
            }
            Role::Publisher(publisher) => {
                worker.setups_in_flight.set(worker.setups_in_flight.get() + 1);
                spawn_client(worker, publisher_client(worker.clone(), index, publisher));
            }
        }
    }
}

/// Waits until `signal` is raised, keeping the connection alive and answering nothing but
/// PINGRESP meanwhile. Holds no read buffer while it waits, and no listener: the worker's
/// keepalive clock wakes every idle client when a signal is raised.
async fn idle_until(
    worker: &Worker,
    connection: &mut Connection,
    signal: &Signal,
) -> Result<(), Failure> {
    let keepalive = worker.keepalive.slot();
    loop {
        if signal.is_raised() {
            return Ok(());
        }
        if !connection.has_buffered() {
            let ping_due = connection.ping_due_ns();
            let readable =
                future::or(async { connection.readable().await.map(|()| true) }, async {
                    keepalive.wait(ping_due).await;
                    Ok(false)
                })
                .await?;
            if !readable {
                connection.keepalive_tick().await?;
                continue;
            }
            connection.fill(&worker.pool).await?;
        }
        // Nothing is expected on an idle connection but PINGRESP, which `next_packet` takes;
        // anything else is dropped.
        while connection.next_packet(&worker.pool)?.is_some() {}
        connection.release_buffer(&worker.pool);
    }
}

/// A `conn` client: connect (retrying with `--retry`), hold until the run finishes,
/// disconnect.
async fn conn_client(worker: Rc<Worker>, index: u64) {
    // Boxed, like `open`: the retries' state is not an idle client's.
    let Some(mut connection) = Box::pin(connect_retrying(&worker, index)).await else { return };
    worker.count(|counts| counts.setups_done += 1);
    match idle_until(&worker, &mut connection, &worker.finish).await {
        Ok(()) => {
            worker.report.borrow_mut().stayed_up += 1;
            connection.disconnect(&worker.pool).await;
            worker.count(|counts| counts.up = counts.up.saturating_sub(1));
        }
        Err(failure) => worker.record_drop(&failure),
    }
}

/// Connects client `index`, retrying a failure after a backoff with `--retry`; records the
/// outcome. `None` when it gave up.
async fn connect_retrying(worker: &Worker, index: u64) -> Option<Connection> {
    let retry = match &worker.config.scenario {
        Scenario::Conn(conn) => conn.retry,
        _ => None,
    };
    let mut random = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(worker.config.run_id);
    let mut attempt = 1;
    loop {
        let attempt_ns = worker.record_attempt();
        let failure = match worker.open(index).await {
            Ok(connection) => {
                worker.record_connected(attempt_ns);
                return Some(connection);
            }
            Err(failure) => failure,
        };
        let retried = retry.filter(|policy| {
            (policy.attempts_max == 0 || attempt < policy.attempts_max) && retryable(&failure)
        });
        let Some(policy) = retried else {
            worker.record_failure(&failure);
            return None;
        };
        *worker.report.borrow_mut().retries.entry(failure.key()).or_default() += 1;
        // A linear congruential step (Knuth's MMIX constants): jitter needs no better.
        random =
            random.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        runtime::sleep(policy.backoff(attempt, random >> 33)).await;
        if worker.finish.is_raised() {
            worker.record_failure(&failure);
            return None;
        }
        attempt += 1;
    }
}

/// Whether a client would try a failed connect again: anything but a broker that speaks
/// something other than MQTT.
fn retryable(failure: &Failure) -> bool {
    !matches!(failure, Failure::Protocol(_))
}

/// Ends a set-up: success or failure, the opener may start another.
fn setup_ended(worker: &Worker) {
    worker.setups_in_flight.set(worker.setups_in_flight.get().saturating_sub(1));
}

/// A subscriber: connect, subscribe, then check and acknowledge every message until the run
/// finishes.
async fn subscriber_client(worker: Rc<Worker>, index: u64, subscriber: u32) {
    let Some(messaging) = worker.messaging().cloned() else { return };
    let attempt_ns = worker.record_attempt();
    // Boxed, like `open`: set-up state must not size the long-lived receive loop.
    let subscribed = Box::pin(async {
        let mut connection = worker.open(index).await?;
        let granted = with_timeout(
            worker.config.connect_timeout,
            subscribe(&worker, &mut connection, &messaging, subscriber),
        )
        .await?;
        Ok::<_, Failure>((connection, granted))
    })
    .await;
    setup_ended(&worker);
    let (mut connection, granted) = match subscribed {
        Ok(subscribed) => subscribed,
        Err(failure) => return worker.record_failure(&failure),
    };
    worker.record_connected(attempt_ns);
    worker.count(|counts| counts.setups_done += 1);

    let mut end = SubscriberEnd { subscriber, granted_qos: granted as u8, ..Default::default() };
    let mut streams: HashMap<u32, StreamCheck> = HashMap::new();
    let finish = worker.finish.listen();
    let outcome =
        receive(&worker, &mut connection, &messaging, subscriber, &mut streams, &finish).await;
    let mut streams: Vec<(u32, StreamCheck)> = streams.into_iter().collect();
    streams.sort_unstable_by_key(|(publisher, _)| *publisher);
    end.streams = streams;
    match outcome {
        Ok(()) => {
            worker.report.borrow_mut().stayed_up += 1;
            connection.disconnect(&worker.pool).await;
            worker.count(|counts| counts.up = counts.up.saturating_sub(1));
        }
        Err(failure) => {
            end.dropped = true;
            worker.record_drop(&failure);
        }
    }
    worker.report.borrow_mut().subscribers.push(end);
}

/// Subscribes to this subscriber's filter at the run's QoS; returns the QoS the broker granted.
async fn subscribe(
    worker: &Worker,
    connection: &mut Connection,
    messaging: &MessagingConfig,
    subscriber: u32,
) -> Result<QoS, Failure> {
    let config = &worker.config;
    let filter = match messaging.shape {
        crate::config::Shape::FanIn => config.all_topics_filter(),
        crate::config::Shape::Pairs | crate::config::Shape::FanOut => {
            config.topic(subscriber % messaging.topics)
        }
    };
    const SUBSCRIBE_PACKET_ID: u16 = 1;
    let packet_id = PacketId::new(SUBSCRIBE_PACKET_ID)
        .ok_or_else(|| Failure::Protocol("packet id 0".into()))?;
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::with_qos(config.qos),
        }],
    });
    connection.send_packet(&subscribe, &worker.pool).await?;
    loop {
        connection.fill(&worker.pool).await?;
        if let Some(packet) = connection.next_packet(&worker.pool)? {
            let Packet::SubAck(suback) = packet else {
                return Err(Failure::Protocol("expected SUBACK".into()));
            };
            connection.release_buffer(&worker.pool);
            let reason = suback.reasons.first().copied().unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
            return match QoS::from_bits(reason.0) {
                Some(granted) if !reason.is_error() => Ok(granted),
                _ => Err(Failure::SubAck(reason)),
            };
        }
    }
}

/// The subscriber's receive loop: every PUBLISH is checked against its stream, timed from its
/// intended send time, and acknowledged; ends when `finish` is raised.
async fn receive(
    worker: &Worker,
    connection: &mut Connection,
    messaging: &MessagingConfig,
    subscriber: u32,
    streams: &mut HashMap<u32, StreamCheck>,
    finish: &Listener,
) -> Result<(), Failure> {
    enum Wake {
        Data,
        Ping,
        Finish,
    }
    let mut deliveries =
        Deliveries { run_id: worker.config.run_id, messaging, subscriber, streams };
    let keepalive = worker.keepalive.slot();
    loop {
        let ping_due = connection.ping_due_ns();
        // Packets that came in the same read as SUBACK are decoded before waiting for more.
        let wake = if connection.has_buffered() {
            Wake::Data
        } else {
            future::or(
                async { connection.fill(&worker.pool).await.map(|()| Wake::Data) },
                future::or(
                    async {
                        keepalive.wait(ping_due).await;
                        Ok(Wake::Ping)
                    },
                    async {
                        finish.raised().await;
                        Ok(Wake::Finish)
                    },
                ),
            )
            .await?
        };
        // A read cut short by the other wake-ups may have left an empty buffer attached.
        connection.release_buffer(&worker.pool);
        match wake {
            Wake::Finish => return Ok(()),
            Wake::Ping => connection.keepalive_tick().await?,
            Wake::Data => {
                // Everything in one read arrived at once: one clock reading times all of it.
                let received_ns = now_ns();
                let mut out = worker.pool.take();
                let received = deliveries.read(worker, connection, received_ns, &mut out)?;
                if received > 0 {
                    worker.count(|counts| {
                        counts.received += received;
                        counts.last_received_ns = received_ns;
                    });
                }
                let written = if out.is_empty() { Ok(()) } else { connection.write(&out).await };
                out.clear();
                worker.pool.give(out);
                written?;
            }
        }
    }
}

/// What a subscriber checks its deliveries against: this run's messages, from the publishers
/// it hears from, each in its publisher's stream.
struct Deliveries<'a> {
    run_id: u32,
    messaging: &'a MessagingConfig,
    subscriber: u32,
    streams: &'a mut HashMap<u32, StreamCheck>,
}

/// How one read's PUBLISHes were counted.
#[derive(Default)]
struct ReadCounts {
    received: u64,
    foreign: u64,
    unexpected: u64,
}

impl Deliveries<'_> {
    /// Decodes everything the connection has buffered: every PUBLISH is checked, timed and
    /// acknowledged, every PUBREL answered (into `out`). Returns how many PUBLISHes were this
    /// run's and meant for this subscriber.
    #[inline]
    fn read(
        &mut self,
        worker: &Worker,
        connection: &mut Connection,
        received_ns: u64,
        out: &mut BytesMut,
    ) -> Result<u64, Failure> {
        let mut counts = ReadCounts::default();
        let mut report = worker.report.borrow_mut();
        let mut interval = worker.interval_latency.borrow_mut();
        while let Some(packet) = connection.next_packet(&worker.pool)? {
            match packet {
                Packet::Publish(publish) => {
                    acknowledge(&publish, connection.version(), out)?;
                    if let Some(latency_ns) = self.check(&publish, received_ns, &mut counts) {
                        report.latency.record_ns(latency_ns);
                        interval.record_ns(latency_ns);
                    }
                }
                Packet::PubRel(ack) => {
                    Packet::PubComp(Ack::success(ack.packet_id))
                        .encode(connection.version(), out)?;
                }
                // Nothing else is expected; a stray acknowledgement is harmless.
                _ => {}
            }
        }
        report.foreign += counts.foreign;
        report.unexpected += counts.unexpected;
        Ok(counts.received)
    }

    /// Counts one PUBLISH as foreign, unexpected or received, and records it in its
    /// publisher's stream. Returns its latency when it is to be timed: received and not a
    /// duplicate.
    #[inline]
    fn check(
        &mut self,
        publish: &Publish,
        received_ns: u64,
        counts: &mut ReadCounts,
    ) -> Option<u64> {
        let header =
            PayloadHeader::read(&publish.payload).filter(|header| header.run_id == self.run_id);
        let Some(header) = header else {
            counts.foreign += 1;
            return None;
        };
        if !self.messaging.delivers(header.publisher, self.subscriber)
            || header.publisher >= self.messaging.publishers
        {
            counts.unexpected += 1;
            return None;
        }
        counts.received += 1;
        let stream = self.streams.entry(header.publisher).or_default();
        let arrival = stream.record(header.sequence);
        if arrival == crate::integrity::Arrival::Duplicate {
            return None;
        }
        Some(received_ns.saturating_sub(header.intended_ns))
    }
}

/// Appends the acknowledgement a received PUBLISH needs (PUBACK for QoS 1, PUBREC for QoS 2).
pub(crate) fn acknowledge(
    publish: &Publish,
    version: shardmq_io::codec::ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), Failure> {
    let Some(packet_id) = publish.packet_id else { return Ok(()) };
    let ack = Ack::success(packet_id);
    match publish.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            Packet::PubAck(ack).encode(version, out)?;
        }
        QoS::ExactlyOnce => {
            Packet::PubRec(ack).encode(version, out)?;
        }
    }
    Ok(())
}

/// Where a QoS 1/2 message of a publisher stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    /// Waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published { sequence: u64 },
    /// QoS 2: PUBREC came, PUBREL sent, waiting for PUBCOMP.
    Released { sequence: u64 },
}

/// A publisher's state between writes.
#[derive(Debug)]
struct Publisher {
    publisher: u32,
    qos: QoS,
    topic: ByteString,
    payload_bytes: usize,
    run_id: u32,
    /// How many QoS 1/2 messages may be unacknowledged; QoS 0 messages per write.
    window: usize,
    /// Open loop: nanoseconds between this publisher's messages, and its first slot's offset.
    schedule: Option<Schedule>,
    next_sequence: u64,
    next_packet_id: u16,
    in_flight: HashMap<u16, InFlight>,
    acknowledged: u64,
    /// Messages the broker refused (an error reason code) or never acknowledged.
    unacknowledged: Vec<u64>,
}

/// An open-loop publisher's timetable: message `k` is due at `start + offset + k * interval`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start_ns: u64,
    offset_ns: f64,
    interval_ns: f64,
}

impl Schedule {
    fn due_ns(&self, sequence: u64) -> u64 {
        self.start_ns + (self.offset_ns + sequence as f64 * self.interval_ns) as u64
    }
}

impl Publisher {
    /// Room for more messages now: the window minus what is in flight (QoS 1/2).
    fn room(&self) -> usize {
        match self.qos {
            QoS::AtMostOnce => self.window,
            QoS::AtLeastOnce | QoS::ExactlyOnce => self.window.saturating_sub(self.in_flight.len()),
        }
    }

    /// The next free packet identifier (the window keeps at least one free).
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Some(packet_id) = PacketId::new(candidate) {
                if !self.in_flight.contains_key(&candidate) {
                    return Some(packet_id);
                }
            }
        }
        None
    }

    /// Encodes every message that is due and fits the window, up to [`PUBLISH_BATCH_MAX`];
    /// returns how many.
    fn encode_due(
        &mut self,
        version: shardmq_io::codec::ProtocolVersion,
        out: &mut BytesMut,
        payload: &mut BytesMut,
    ) -> Result<u64, Failure> {
        let now = now_ns();
        let mut encoded = 0;
        let batch = self.room().min(PUBLISH_BATCH_MAX);
        for _ in 0..batch {
            let sequence = self.next_sequence;
            let intended_ns = match self.schedule {
                Some(schedule) => {
                    let due = schedule.due_ns(sequence);
                    if due > now {
                        break;
                    }
                    due
                }
                // Closed loop: the message is meant to go now.
                None => now,
            };
            let packet_id = match self.qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce | QoS::ExactlyOnce => {
                    let packet_id = self
                        .allocate_packet_id()
                        .ok_or_else(|| Failure::Protocol("no free packet identifier".into()))?;
                    self.in_flight.insert(packet_id.get(), InFlight::Published { sequence });
                    Some(packet_id)
                }
            };
            PayloadHeader { run_id: self.run_id, publisher: self.publisher, sequence, intended_ns }
                .write(self.payload_bytes, payload);
            let publish = Packet::Publish(Publish {
                dup: false,
                qos: self.qos,
                retain: false,
                topic: self.topic.clone(),
                packet_id,
                properties: Properties::default(),
                payload: Bytes::from(payload.split()),
            });
            publish.encode(version, out)?;
            self.next_sequence += 1;
            encoded += 1;
        }
        Ok(encoded)
    }

    /// Handles the broker's acknowledgements; appends PUBREL where QoS 2 needs one. Returns how
    /// many messages completed.
    fn acknowledgement(
        &mut self,
        packet: Packet,
        version: shardmq_io::codec::ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<u64, Failure> {
        match packet {
            Packet::PubAck(ack) | Packet::PubComp(ack) => {
                let Some(state) = self.in_flight.remove(&ack.packet_id.get()) else {
                    return Err(Failure::Protocol(
                        "acknowledgement of no message in flight".into(),
                    ));
                };
                let (InFlight::Published { sequence } | InFlight::Released { sequence }) = state;
                if ack.reason.is_error() {
                    self.unacknowledged.push(sequence);
                    return Ok(0);
                }
                self.acknowledged += 1;
                Ok(1)
            }
            Packet::PubRec(ack) => {
                let id = ack.packet_id.get();
                let Some(InFlight::Published { sequence }) = self.in_flight.get(&id).copied()
                else {
                    return Err(Failure::Protocol("PUBREC of no message in flight".into()));
                };
                if ack.reason.is_error() {
                    // A refused QoS 2 message ends here: no PUBREL follows.
                    self.in_flight.remove(&id);
                    self.unacknowledged.push(sequence);
                    return Ok(0);
                }
                self.in_flight.insert(id, InFlight::Released { sequence });
                Packet::PubRel(Ack::success(ack.packet_id)).encode(version, out)?;
                Ok(0)
            }
            _ => Ok(0),
        }
    }

    fn end(mut self) -> PublisherEnd {
        self.unacknowledged.extend(self.in_flight.values().map(|state| match state {
            InFlight::Published { sequence } | InFlight::Released { sequence } => *sequence,
        }));
        self.unacknowledged.sort_unstable();
        PublisherEnd {
            publisher: self.publisher,
            sent: self.next_sequence,
            acknowledged: self.acknowledged,
            unacknowledged: self.unacknowledged,
        }
    }
}

/// A publisher: connect, wait for the start, publish until stopped, settle acknowledgements,
/// then hold the connection until the run finishes.
async fn publisher_client(worker: Rc<Worker>, index: u64, publisher: u32) {
    let Some(messaging) = worker.messaging().cloned() else { return };
    let attempt_ns = worker.record_attempt();
    let opened = worker.open(index).await;
    setup_ended(&worker);
    let mut connection = match opened {
        Ok(connection) => connection,
        Err(failure) => {
            worker.record_failure(&failure);
            worker.count(|counts| counts.publishers_done += 1);
            return;
        }
    };
    worker.record_connected(attempt_ns);
    worker.count(|counts| counts.setups_done += 1);

    let config = &worker.config;
    let window = match config.qos {
        QoS::AtMostOnce => usize::from(messaging.window),
        // Never more than the broker's Receive Maximum: exceeding it is a protocol error.
        QoS::AtLeastOnce | QoS::ExactlyOnce => {
            usize::from(messaging.window.min(connection.receive_maximum).max(1))
        }
    };
    let mut state = Publisher {
        publisher,
        qos: config.qos,
        topic: ByteString::from(config.topic(messaging.publisher_topic(publisher))),
        payload_bytes: config.payload_bytes,
        run_id: config.run_id,
        window,
        schedule: None,
        next_sequence: 0,
        next_packet_id: 1,
        in_flight: HashMap::new(),
        acknowledged: 0,
        unacknowledged: Vec::new(),
    };
    let mut outcome = idle_until(&worker, &mut connection, &worker.publish_start).await;
    if outcome.is_ok() && !worker.finish.is_raised() {
        let start_ns = worker.shared.publish_start_ns.load(Ordering::Acquire);
        state.schedule = messaging.rate_per_sec.map(|rate| {
            // Message k of publisher p takes global slot p + k * P: the publishers interleave
            // evenly and together keep the total rate.
            let slot_ns = 1e9 / rate;
            Schedule {
                start_ns,
                offset_ns: f64::from(publisher) * slot_ns,
                interval_ns: f64::from(messaging.publishers) * slot_ns,
            }
        });
        runtime::sleep(until(start_ns)).await;
        outcome = publish(&worker, &mut connection, &mut state).await;
    }
    let sent = state.next_sequence;
    let end = state.end();
    worker.count(|counts| {
        counts.publishers_done += 1;
        counts.expected += sent * messaging.subscribers_of(publisher);
    });
    worker.report.borrow_mut().publishers.push(end);
    let outcome = match outcome {
        Ok(()) => idle_until(&worker, &mut connection, &worker.finish).await,
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(()) => {
            worker.report.borrow_mut().stayed_up += 1;
            connection.disconnect(&worker.pool).await;
            worker.count(|counts| counts.up = counts.up.saturating_sub(1));
        }
        Err(failure) => worker.record_drop(&failure),
    }
}

/// The publishing loop: write what is due, then wait for acknowledgements, the next due time or
/// the stop; after the stop, wait (bounded) for what is still in flight.
async fn publish(
    worker: &Worker,
    connection: &mut Connection,
    state: &mut Publisher,
) -> Result<(), Failure> {
    enum Wake {
        Data,
        Timer,
        Stop,
    }
    let stop = worker.stop_publishing.listen();
    let version = connection.version();
    let mut out = BytesMut::new();
    let mut payload = BytesMut::new();
    let mut drain_deadline_ns = None;
    loop {
        let stopping = stop.is_raised();
        if stopping && drain_deadline_ns.is_none() {
            drain_deadline_ns = Some(now_ns() + duration_ns(ACK_DRAIN_TIMEOUT));
        }
        if !stopping {
            let encoded = state.encode_due(version, &mut out, &mut payload)?;
            worker.count(|counts| counts.sent += encoded);
        }
        if !out.is_empty() {
            // A write waits for the broker to read; once stopped, no longer than the drain.
            let stalled = async {
                if !stopping {
                    stop.raised().await;
                }
                let deadline_ns =
                    drain_deadline_ns.unwrap_or(now_ns() + duration_ns(ACK_DRAIN_TIMEOUT));
                runtime::sleep(until(deadline_ns)).await;
                Err(Failure::WriteStalled)
            };
            future::or(connection.write(&out), stalled).await?;
            out.clear();
        }
        if stopping && state.in_flight.is_empty() {
            return Ok(());
        }
        if drain_deadline_ns.is_some_and(|deadline| now_ns() >= deadline) {
            // What is still in flight stays unacknowledged in the report.
            return Ok(());
        }
        // Closed-loop QoS 0 has nothing to wait for: it is paced by its writes alone. Yield so
        // the worker's other clients (subscribers reading these messages) get their turn.
        if state.qos == QoS::AtMostOnce && state.schedule.is_none() && !stopping {
            future::yield_now().await;
            continue;
        }
        // The next moment something can be sent without an acknowledgement first.
        let next_due = match state.schedule {
            Some(schedule) if !stopping && state.room() > 0 => {
                Some(schedule.due_ns(state.next_sequence))
            }
            _ => None,
        };
        let timer = next_due.or(drain_deadline_ns).or(connection.ping_due_ns());
        let wake = if connection.has_buffered() {
            Wake::Data
        } else {
            future::or(
                async { connection.fill(&worker.pool).await.map(|()| Wake::Data) },
                future::or(
                    async {
                        sleep_until(timer).await;
                        Ok(Wake::Timer)
                    },
                    async {
                        if stopping {
                            future::pending::<()>().await;
                        }
                        stop.raised().await;
                        Ok(Wake::Stop)
                    },
                ),
            )
            .await?
        };
        connection.release_buffer(&worker.pool);
        match wake {
            Wake::Data => {
                let mut completed = 0;
                while let Some(packet) = connection.next_packet(&worker.pool)? {
                    completed += state.acknowledgement(packet, version, &mut out)?;
                }
                worker.count(|counts| counts.acknowledged += completed);
            }
            Wake::Timer => connection.keepalive_tick().await?,
            Wake::Stop => {}
        }
        runtime::yield_if_needed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnConfig, ProcessShare};

    /// What an idle simulated client costs in user space is mostly its task's future: the
    /// handshake and the disconnect are boxed, and the idle wait races only readability with a
    /// keepalive-clock slot (no timer, no listener), so that it stays small. This guards that:
    /// the conn client is what `docs/loadgen.md` measures at ~1.7 KB per idle client, 488 bytes
    /// of it this future; subscribers and publishers are few and may be larger.
    #[test]
    fn idle_client_futures_stay_small() {
        const CONN_FUTURE_BYTES_MAX: usize = 512;
        const CLIENT_FUTURE_BYTES_MAX: usize = 1280;
        let config = RunConfig {
            scenario: Scenario::Conn(ConnConfig {
                connections: 1,
                rate_per_sec: 1.0,
                hold: Duration::from_secs(1),
                retry: None,
            }),
            targets: vec![([127, 0, 0, 1], 1).into()],
            version: shardmq_io::codec::ProtocolVersion::V3_1_1,
            qos: QoS::AtMostOnce,
            payload_bytes: 64,
            duration: Duration::from_secs(1),
            sources: vec![],
            workers: 1,
            pin_workers: false,
            keepalive_secs: 1,
            connect_timeout: Duration::from_secs(1),
            run_tag: "x".into(),
            run_id: 1,
            share: ProcessShare::WHOLE,
        };
        let worker = Rc::new(Worker::new(0, Arc::new(config), Arc::new(Shared::new(1))));
        let sizes = [
            ("conn", std::mem::size_of_val(&conn_client(worker.clone(), 0))),
            ("subscriber", std::mem::size_of_val(&subscriber_client(worker.clone(), 0, 0))),
            ("publisher", std::mem::size_of_val(&publisher_client(worker.clone(), 0, 0))),
        ];
        let conn = sizes[0].1;
        assert!(conn <= CONN_FUTURE_BYTES_MAX, "an idle conn client's future is {conn} bytes");
        for (client, size) in sizes {
            assert!(size <= CLIENT_FUTURE_BYTES_MAX, "a {client} client's future is {size} bytes");
        }
    }
}

//! The `churn` scenario: persistent-session clients that go offline and come back at a paced
//! rate while one publisher sends QoS 1/2 messages to their topics; a client that comes back
//! must get what was queued for it meanwhile.
//!
//! Client `i` of N subscribes once to its own topic `lg/<run>/<i>` (Clean Start 0, and on MQTT
//! 5 a Session Expiry Interval), then, from the churn start, disconnects at start + i/R + k·N/R
//! and reconnects half a period later, so the reconnects of all clients come at R per second.
//! The publisher sends message k to topic k mod N at start + k/M, numbering each topic's
//! messages, so each client checks its stream with [`StreamCheck`]. After `--duration` the
//! publisher stops and settles its acknowledgements; every client comes back (if offline),
//! collects the rest, disconnects, and drops its session with a clean connect.
//!
//! Workers share only `ChurnShared`'s atomics; everything else lives on one worker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future;
use serde::Serialize;
use shardmq_io::codec::{
    Ack, ByteString, Bytes, Packet, PacketId, Properties, Publish, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilterEntry,
};
use shardmq_io::runtime::{self, start_shards};

use crate::clock::{duration_ns, now_ns, until};
use crate::config::{ChurnConfig, RunConfig, Scenario};
use crate::histogram::{Latency, LatencySummary};
use crate::integrity::{PublisherEnd, StreamCheck, StreamEnd};
use crate::mqtt::{BufferPool, ConnectOptions, Connection, Failure, Session};
use crate::payload::PayloadHeader;
use crate::report::{latency_line, Report, Timeline, WorkerReport};
use crate::run::{Progress, RunError};
use crate::worker::{acknowledge, with_timeout, ACK_DRAIN_TIMEOUT, SETUPS_IN_FLIGHT_MAX};

/// MQTT 5 Session Expiry Interval of the churning clients: far longer than any offline spell
/// of a run; the sessions are dropped explicitly at the end.
pub const SESSION_EXPIRY_SECS: u32 = 600;
/// Unacknowledged messages the publisher keeps in flight (capped by the Receive Maximum).
const PUBLISH_WINDOW: u16 = 64;
/// How far ahead of "now" the churn start is set, so every worker sees it before it passes.
const START_LEAD: Duration = Duration::from_millis(50);
/// How often a waiting task (set-up slots, the churn start, the publisher's end) looks again.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// The final collection: a step between checks whether everything arrived.
const COLLECT_STEP: Duration = Duration::from_millis(20);
/// The final collection ends after this long without a new message...
const COLLECT_QUIET: Duration = Duration::from_secs(2);
/// ... or after this long in all.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the `churn` scenario measured (`churn` in the JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnReport {
    pub clients: u32,
    /// From the churn start to the publisher's stop.
    pub churn_secs: f64,
    /// Reconnects that got CONNACK, and per second of churn.
    pub reconnects: u64,
    pub reconnect_rate_per_sec: f64,
    /// TCP connect start to CONNACK, reconnects only.
    pub reconnect_latency: LatencySummary,
    /// CONNACKs whose Session Present was checked (false on a client's first connect, true
    /// after), and those where it was wrong.
    pub session_present_checked: u64,
    pub session_present_wrong: u64,
    pub sent: u64,
    pub acknowledged: u64,
    /// Deliveries, duplicates included; deliveries expected (one per message sent).
    pub received: u64,
    pub expected: u64,
    /// Deliveries of messages published while their client was offline: the queued ones.
    pub queued_delivered: u64,
    pub lost: u64,
    /// Lost although the broker acknowledged them to the publisher: a broken QoS promise.
    pub lost_acknowledged: u64,
    pub lost_unacknowledged: u64,
    /// Allowed by MQTT for QoS 1 after a reconnect (a PUBLISH whose PUBACK the broker never
    /// saw is sent again), but counted.
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Messages without this run's header, or for another client's topic.
    pub foreign: u64,
}

impl ChurnReport {
    /// The summary table's churn lines.
    pub fn lines(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  churn        {} clients, {} reconnects ({:.1}/s over {:.2} s)  reconnect {}",
            self.clients,
            self.reconnects,
            self.reconnect_rate_per_sec,
            self.churn_secs,
            latency_line(&self.reconnect_latency)
        );
        let _ = writeln!(
            out,
            "  sessions     session present checked {}, wrong {}",
            self.session_present_checked, self.session_present_wrong
        );
        let _ = writeln!(
            out,
            "  messages     sent {}  acknowledged {}  received {}  expected {}  queued while \
             offline and delivered {}",
            self.sent, self.acknowledged, self.received, self.expected, self.queued_delivered
        );
        let _ = writeln!(
            out,
            "  integrity    lost {} (acknowledged {}, not acknowledged {}), duplicated {}, out of \
             order {}, foreign {}",
            self.lost,
            self.lost_acknowledged,
            self.lost_unacknowledged,
            self.duplicates,
            self.out_of_order,
            self.foreign
        );
    }

    fn problems(&self, problems: &mut Vec<String>) {
        if self.lost_acknowledged > 0 {
            problems.push(format!(
                "LOSS: {} messages acknowledged by the broker were never delivered",
                self.lost_acknowledged
            ));
        }
        if self.lost_unacknowledged > 0 {
            problems.push(format!(
                "{} messages were never acknowledged nor delivered",
                self.lost_unacknowledged
            ));
        }
        if self.session_present_wrong > 0 {
            problems.push(format!(
                "SESSION: {} of {} CONNACKs had the wrong Session Present flag",
                self.session_present_wrong, self.session_present_checked
            ));
        }
        if self.sent == 0 {
            problems.push("no message was sent".into());
        }
    }
}

/// What the workers share. Written with atomics only.
#[derive(Debug)]
struct ChurnShared {
    /// Clients whose first connect and subscribe ended, successfully or not.
    set_up: AtomicU64,
    /// When churning starts (CLOCK_MONOTONIC ns); 0 until every client is set up.
    start_ns: AtomicU64,
    /// The publisher stopped and settled; `sent` is final.
    publisher_done: AtomicBool,
    /// Messages sent per topic (client).
    sent: Vec<AtomicU64>,
    /// The run is being cut short (Ctrl-C): churning ends now.
    stop: Arc<AtomicBool>,
}

/// What one worker measured.
#[derive(Debug, Default)]
struct ChurnTally {
    connections: WorkerReport,
    reconnect_latency: Latency,
    reconnects: u64,
    session_present_checked: u64,
    session_present_wrong: u64,
    queued_delivered: u64,
    foreign: u64,
    /// Per client index, what it saw of its topic.
    streams: Vec<(u32, StreamCheck)>,
    /// Per topic, what the publisher sent (worker 0 only).
    topics: Vec<PublisherEnd>,
    sent: u64,
    acknowledged: u64,
    churn_start_ns: u64,
    churn_stop_ns: u64,
}

/// Runs the `churn` scenario in this process; `stop` cuts the churn short.
pub fn run(config: &RunConfig, progress: Progress) -> Result<Report, RunError> {
    run_until(config, progress, Arc::new(AtomicBool::new(false)))
}

/// [`run`], ending the churn early once `stop` is set.
pub fn run_until(
    config: &RunConfig,
    progress: Progress,
    stop: Arc<AtomicBool>,
) -> Result<Report, RunError> {
    let Scenario::Churn(churn) = &config.scenario else {
        return Err(RunError::Process("not a churn run".into()));
    };
    let started_ns = now_ns();
    let config = Arc::new(config.clone());
    let shared = Arc::new(ChurnShared {
        set_up: AtomicU64::new(0),
        start_ns: AtomicU64::new(0),
        publisher_done: AtomicBool::new(false),
        sent: (0..churn.clients).map(|_| AtomicU64::new(0)).collect(),
        stop,
    });
    if progress == Progress::Stderr {
        eprintln!(
            "churn: {} clients, {} reconnects/s, {} msg/s for {} s",
            churn.clients,
            churn.rate_per_sec,
            churn.publish_rate_per_sec,
            config.duration.as_secs()
        );
    }
    let inputs: Vec<(usize, Arc<RunConfig>, Arc<ChurnShared>)> =
        (0..config.workers).map(|worker| (worker, config.clone(), shared.clone())).collect();
    let placement = config.placement();
    let handles = start_shards(placement, inputs, |_, (worker, config, shared)| {
        churn_worker(worker, config, shared)
    })
    .map_err(RunError::Start)?;
    let mut total = ChurnTally::default();
    for handle in handles {
        let tally = handle.join()?;
        total.connections.merge(tally.connections);
        total.reconnect_latency.merge(&tally.reconnect_latency);
        total.reconnects += tally.reconnects;
        total.session_present_checked += tally.session_present_checked;
        total.session_present_wrong += tally.session_present_wrong;
        total.queued_delivered += tally.queued_delivered;
        total.foreign += tally.foreign;
        total.streams.extend(tally.streams);
        total.topics.extend(tally.topics);
        total.sent += tally.sent;
        total.acknowledged += tally.acknowledged;
        total.churn_start_ns = total.churn_start_ns.max(tally.churn_start_ns);
        total.churn_stop_ns = total.churn_stop_ns.max(tally.churn_stop_ns);
    }
    let report = judge(churn, &total);
    let timeline = Timeline {
        started_ns,
        finished_ns: now_ns(),
        stopped_early: shared.stop.load(Ordering::Acquire),
        ..Timeline::default()
    };
    let mut built = Report::build(&config, &total.connections, timeline);
    report.problems(&mut built.problems);
    built.passed = built.problems.is_empty();
    built.churn = Some(report);
    Ok(built)
}

/// Sums the streams' verdicts against what the publisher sent to each topic.
fn judge(churn: &ChurnConfig, total: &ChurnTally) -> ChurnReport {
    let churn_ns = total.churn_stop_ns.saturating_sub(total.churn_start_ns);
    let mut report = ChurnReport {
        clients: churn.clients,
        churn_secs: churn_ns as f64 / 1e9,
        reconnects: total.reconnects,
        reconnect_rate_per_sec: if churn_ns > 0 {
            total.reconnects as f64 / (churn_ns as f64 / 1e9)
        } else {
            0.0
        },
        reconnect_latency: total.reconnect_latency.summary(),
        session_present_checked: total.session_present_checked,
        session_present_wrong: total.session_present_wrong,
        sent: total.sent,
        acknowledged: total.acknowledged,
        queued_delivered: total.queued_delivered,
        foreign: total.foreign,
        ..ChurnReport::default()
    };
    let topics: HashMap<u32, &PublisherEnd> =
        total.topics.iter().map(|end| (end.publisher, end)).collect();
    let streams: HashMap<u32, &StreamCheck> =
        total.streams.iter().map(|(client, check)| (*client, check)).collect();
    for (topic, sent) in topics {
        let end = StreamEnd::judge(streams.get(&topic).copied(), sent);
        report.expected += end.expected;
        report.received += end.received;
        report.lost += end.lost;
        report.lost_acknowledged += end.lost_acknowledged;
        report.lost_unacknowledged += end.lost - end.lost_acknowledged;
        report.duplicates += end.duplicates;
        report.out_of_order += end.out_of_order;
    }
    report
}

/// What a worker's tasks share. Lives on one worker.
#[derive(Debug)]
struct Local {
    worker: usize,
    config: Arc<RunConfig>,
    churn: ChurnConfig,
    shared: Arc<ChurnShared>,
    pool: BufferPool,
    /// First connects in progress, bounded by [`SETUPS_IN_FLIGHT_MAX`].
    setups: Cell<u64>,
    /// Tasks not yet ended.
    running: Cell<u64>,
    tally: RefCell<ChurnTally>,
}

impl Local {
    fn options(&self, client_id: String, session: Session) -> ConnectOptions {
        ConnectOptions {
            version: self.config.version,
            client_id,
            keepalive_secs: self.config.keepalive_secs,
            session,
        }
    }

    fn client_id(&self, client: u32) -> String {
        format!("{}k{client}", self.config.run_tag)
    }

    /// Connects with the run's timeout, counting the attempt; returns the connection and its
    /// connect latency.
    async fn connect(
        &self,
        index: u64,
        options: &ConnectOptions,
    ) -> Result<(Connection, u64), Failure> {
        let attempt_ns = now_ns();
        {
            let mut tally = self.tally.borrow_mut();
            tally.connections.attempts += 1;
            if tally.connections.first_attempt_ns == 0 {
                tally.connections.first_attempt_ns = attempt_ns;
            }
        }
        let opened = with_timeout(
            self.config.connect_timeout,
            Box::pin(Connection::open(
                self.config.target_of(index),
                self.config.source_of(index),
                options,
                &self.pool,
            )),
        )
        .await;
        let mut tally = self.tally.borrow_mut();
        match opened {
            Ok(connection) => {
                let connected_ns = now_ns();
                let latency_ns = connected_ns.saturating_sub(attempt_ns);
                tally.connections.connected += 1;
                tally.connections.connect_latency.record_ns(latency_ns);
                tally.connections.last_connected_ns = connected_ns;
                Ok((connection, latency_ns))
            }
            Err(failure) => {
                *tally.connections.failures.entry(failure.key()).or_default() += 1;
                Err(failure)
            }
        }
    }

    fn check_session_present(&self, connection: &Connection, expected: bool) {
        let mut tally = self.tally.borrow_mut();
        tally.session_present_checked += 1;
        if connection.session_present != expected {
            tally.session_present_wrong += 1;
        }
    }

    fn record_drop(&self, failure: &Failure) {
        *self.tally.borrow_mut().connections.dropped.entry(failure.key()).or_default() += 1;
    }

    /// Waits for the churn start (set by whichever worker sees every client set up).
    async fn churn_start(&self) -> u64 {
        loop {
            let start_ns = self.shared.start_ns.load(Ordering::Acquire);
            if start_ns != 0 {
                return start_ns;
            }
            if self.shared.set_up.load(Ordering::Acquire) >= u64::from(self.churn.clients) {
                let proposed = now_ns() + duration_ns(START_LEAD);
                let _ = self.shared.start_ns.compare_exchange(
                    0,
                    proposed,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                continue;
            }
            runtime::sleep(WAIT_POLL).await;
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }
}

fn spawn(local: &Rc<Local>, task: impl std::future::Future<Output = ()> + 'static) {
    local.running.set(local.running.get() + 1);
    let local = local.clone();
    runtime::spawn_local(async move {
        task.await;
        local.running.set(local.running.get() - 1);
    });
}

/// One worker: the publisher (worker 0) and the clients `i` with `i % workers == worker`.
async fn churn_worker(
    worker: usize,
    config: Arc<RunConfig>,
    shared: Arc<ChurnShared>,
) -> ChurnTally {
    let Scenario::Churn(churn) = config.scenario.clone() else { return ChurnTally::default() };
    let local = Rc::new(Local {
        worker,
        config: config.clone(),
        churn: churn.clone(),
        shared,
        pool: BufferPool::default(),
        setups: Cell::new(0),
        running: Cell::new(0),
        tally: RefCell::new(ChurnTally::default()),
    });
    if worker == 0 {
        spawn(&local, publisher(local.clone()));
    }
    for client in (worker as u32..churn.clients).step_by(config.workers) {
        while local.setups.get() >= SETUPS_IN_FLIGHT_MAX {
            runtime::sleep(WAIT_POLL).await;
        }
        local.setups.set(local.setups.get() + 1);
        spawn(&local, churn_client(local.clone(), client));
    }
    while local.running.get() > 0 {
        runtime::sleep(WAIT_POLL).await;
    }
    let tally = local.tally.replace(ChurnTally::default());
    debug_assert_eq!(local.worker, worker);
    tally
}

/// What a client keeps between connections.
#[derive(Debug, Default)]
struct ClientState {
    check: StreamCheck,
    /// When it last went offline and came back: messages meant to go in between were queued.
    offline_since_ns: u64,
    back_ns: u64,
    last_receipt_ns: u64,
    out: BytesMut,
}

/// One churning client; see the module documentation for its timetable.
async fn churn_client(local: Rc<Local>, client: u32) {
    let index = u64::from(client);
    let persistent = Session::Persistent { expiry_secs: SESSION_EXPIRY_SECS };
    let options = local.options(local.client_id(client), persistent);
    let mut state = ClientState::default();
    let first = Box::pin(async {
        // `connect` counts its own failures; a refused subscription is counted here.
        let (mut connection, _) = local.connect(index, &options).await.ok()?;
        // A fresh client id: nothing to resume.
        local.check_session_present(&connection, false);
        match subscribe(&local, &mut connection, client).await {
            Ok(()) => Some(connection),
            Err(failure) => {
                let mut tally = local.tally.borrow_mut();
                *tally.connections.failures.entry(failure.key()).or_default() += 1;
                None
            }
        }
    })
    .await;
    local.setups.set(local.setups.get() - 1);
    local.shared.set_up.fetch_add(1, Ordering::AcqRel);
    let Some(first) = first else {
        local.tally.borrow_mut().streams.push((client, state.check));
        return;
    };
    let mut connection = Some(first);
    let start_ns = local.churn_start().await;
    let end_ns = start_ns + duration_ns(local.config.duration);
    let period_ns = f64::from(local.churn.clients) / local.churn.rate_per_sec * 1e9;
    let mut slot = 0_u64;
    let disconnect_ns = |slot: u64| {
        start_ns
            + ((f64::from(client) / local.churn.rate_per_sec * 1e9) + slot as f64 * period_ns)
                as u64
    };
    loop {
        let deadline_ns = disconnect_ns(slot).min(end_ns);
        if let Some(open) = connection.as_mut() {
            if let Err(failure) =
                receive_until(&local, open, client, &mut state, deadline_ns, OnStop::Return).await
            {
                local.record_drop(&failure);
                connection = None;
            }
        } else {
            runtime::sleep(until(deadline_ns)).await;
        }
        if now_ns() >= end_ns || local.stopping() {
            break;
        }
        if let Some(open) = connection.take() {
            open.disconnect(&local.pool).await;
        }
        state.offline_since_ns = now_ns();
        let back_ns = disconnect_ns(slot) + (period_ns / 2.0) as u64;
        sleep_or_stop(&local, back_ns.min(end_ns)).await;
        connection = reconnect(&local, index, &options, &mut state).await;
        slot += 1;
    }
    // The end: come back if offline, then collect everything the publisher sent.
    if connection.is_none() {
        state.offline_since_ns = now_ns();
        connection = reconnect(&local, index, &options, &mut state).await;
    }
    if let Some(mut open) = connection {
        match collect_rest(&local, &mut open, client, &mut state).await {
            Ok(()) => {
                local.tally.borrow_mut().connections.stayed_up += 1;
                open.disconnect(&local.pool).await;
            }
            Err(failure) => local.record_drop(&failure),
        }
    }
    local.tally.borrow_mut().streams.push((client, std::mem::take(&mut state.check)));
    // Drop the session: a clean connect discards it (3.1.1 and 5 alike).
    let clean = local.options(local.client_id(client), Session::Clean);
    if let Ok((open, _)) = local.connect(index, &clean).await {
        open.disconnect(&local.pool).await;
    }
}

/// Sleeps until `deadline_ns`, waking early when the run is cut short.
/// What ended a client's wait.
enum Wake {
    Data,
    Timer,
}

/// How often a waiting client looks at the stop flag at the latest.
const STOP_CHECK_NS: u64 = 50_000_000;

/// Waits until the connection has data, its next PINGREQ is due or `timer_ns` passes; the read
/// buffer goes back to the pool afterwards, so a waiting client holds none.
async fn wait_for_data(
    local: &Local,
    connection: &mut Connection,
    mut timer_ns: u64,
) -> Result<Wake, Failure> {
    if let Some(ping_ns) = connection.ping_due_ns() {
        timer_ns = timer_ns.min(ping_ns);
    }
    let wake = if connection.has_buffered() {
        Wake::Data
    } else {
        future::or(async { connection.fill(&local.pool).await.map(|()| Wake::Data) }, async {
            runtime::sleep(until(timer_ns)).await;
            Ok(Wake::Timer)
        })
        .await?
    };
    connection.release_buffer(&local.pool);
    Ok(wake)
}

async fn sleep_or_stop(local: &Local, deadline_ns: u64) {
    while now_ns() < deadline_ns && !local.stopping() {
        runtime::sleep(until(deadline_ns).min(Duration::from_millis(50))).await;
    }
}

/// Reconnects to the stored session; counts the latency and checks Session Present.
async fn reconnect(
    local: &Local,
    index: u64,
    options: &ConnectOptions,
    state: &mut ClientState,
) -> Option<Connection> {
    let (connection, latency_ns) = local.connect(index, options).await.ok()?;
    {
        let mut tally = local.tally.borrow_mut();
        tally.reconnects += 1;
        tally.reconnect_latency.record_ns(latency_ns);
    }
    local.check_session_present(&connection, true);
    state.back_ns = now_ns();
    Some(connection)
}

/// Subscribes client `client` to its topic at the run's QoS and waits for SUBACK.
async fn subscribe(local: &Local, connection: &mut Connection, client: u32) -> Result<(), Failure> {
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).ok_or_else(|| Failure::Protocol("packet id 0".into()))?,
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(local.config.topic(client)),
            options: SubscriptionOptions::with_qos(local.config.qos),
        }],
    });
    connection.send_packet(&subscribe, &local.pool).await?;
    let suback = with_timeout(local.config.connect_timeout, async {
        loop {
            connection.fill(&local.pool).await?;
            if let Some(packet) = connection.next_packet(&local.pool)? {
                return Ok(packet);
            }
        }
    })
    .await?;
    connection.release_buffer(&local.pool);
    let Packet::SubAck(suback) = suback else {
        return Err(Failure::Protocol("expected SUBACK".into()));
    };
    let reason = suback.reasons.first().copied().unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
    if reason.is_error() {
        return Err(Failure::SubAck(reason));
    }
    Ok(())
}

/// Whether a stop (Ctrl-C) ends a wait early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnStop {
    /// Churning: return at once.
    Return,
    /// Collecting the last messages: a stop changes nothing.
    Continue,
}

/// Receives (and acknowledges) until `deadline_ns`, keeping the connection alive.
async fn receive_until(
    local: &Local,
    connection: &mut Connection,
    client: u32,
    state: &mut ClientState,
    deadline_ns: u64,
    on_stop: OnStop,
) -> Result<(), Failure> {
    loop {
        let now = now_ns();
        if now >= deadline_ns || (on_stop == OnStop::Return && local.stopping()) {
            return Ok(());
        }
        match wait_for_data(local, connection, deadline_ns.min(now + STOP_CHECK_NS)).await? {
            Wake::Timer => connection.keepalive_tick().await?,
            Wake::Data => take_packets(local, connection, client, state).await?,
        }
    }
}

/// Decodes what was read: checks and acknowledges every PUBLISH.
async fn take_packets(
    local: &Local,
    connection: &mut Connection,
    client: u32,
    state: &mut ClientState,
) -> Result<(), Failure> {
    let version = connection.version();
    let received_ns = now_ns();
    let (mut foreign, mut queued) = (0, 0);
    while let Some(packet) = connection.next_packet(&local.pool)? {
        match packet {
            Packet::Publish(publish) => {
                acknowledge(&publish, version, &mut state.out)?;
                let header = PayloadHeader::read(&publish.payload).filter(|header| {
                    header.run_id == local.config.run_id && header.publisher == client
                });
                let Some(header) = header else {
                    foreign += 1;
                    continue;
                };
                state.check.record(header.sequence);
                state.last_receipt_ns = received_ns;
                if header.intended_ns >= state.offline_since_ns
                    && header.intended_ns < state.back_ns
                {
                    queued += 1;
                }
            }
            Packet::PubRel(ack) => {
                Packet::PubComp(Ack::success(ack.packet_id)).encode(version, &mut state.out)?;
            }
            _ => {}
        }
    }
    if foreign + queued > 0 {
        let mut tally = local.tally.borrow_mut();
        tally.foreign += foreign;
        tally.queued_delivered += queued;
    }
    if !state.out.is_empty() {
        let written = connection.write(&state.out).await;
        state.out.clear();
        written?;
    }
    Ok(())
}

/// After the churn: receive until every message the publisher sent to this client's topic
/// arrived, or nothing new came for [`COLLECT_QUIET`].
async fn collect_rest(
    local: &Local,
    connection: &mut Connection,
    client: u32,
    state: &mut ClientState,
) -> Result<(), Failure> {
    let started_ns = now_ns();
    state.last_receipt_ns = state.last_receipt_ns.max(started_ns);
    loop {
        let now = now_ns();
        if local.shared.publisher_done.load(Ordering::Acquire) {
            let sent = local.shared.sent[client as usize].load(Ordering::Acquire);
            let complete = state.check.next >= sent && state.check.gaps.is_empty();
            let quiet = now.saturating_sub(state.last_receipt_ns) >= duration_ns(COLLECT_QUIET);
            if complete || quiet {
                return Ok(());
            }
        }
        if now - started_ns >= duration_ns(COLLECT_TIMEOUT) {
            return Ok(());
        }
        let step_ns = now + duration_ns(COLLECT_STEP);
        receive_until(local, connection, client, state, step_ns, OnStop::Continue).await?;
    }
}

/// The publisher's per-topic accounts.
#[derive(Debug)]
struct Topics {
    sent: Vec<u64>,
    acknowledged: Vec<u64>,
    unacknowledged: Vec<Vec<u64>>,
}

/// The publisher: from the churn start to its end, message k goes to topic k mod N at
/// start + k/M, at most a window unacknowledged; then it settles and publishes its counts.
async fn publisher(local: Rc<Local>) {
    let clients = local.churn.clients as usize;
    let mut topics = Topics {
        sent: vec![0; clients],
        acknowledged: vec![0; clients],
        unacknowledged: vec![Vec::new(); clients],
    };
    let options = local.options(format!("{}kp", local.config.run_tag), Session::Clean);
    // The publisher is the run's client N: its own target and source.
    let index = u64::from(local.churn.clients);
    let opened = local.connect(index, &options).await;
    let start_ns = local.churn_start().await;
    let end_ns = start_ns + duration_ns(local.config.duration);
    let mut in_flight: HashMap<u16, (u32, u64)> = HashMap::new();
    let outcome = match opened {
        Ok((mut connection, _)) => {
            let outcome =
                publish(&local, &mut connection, start_ns, end_ns, &mut topics, &mut in_flight)
                    .await;
            if outcome.is_ok() {
                local.tally.borrow_mut().connections.stayed_up += 1;
                connection.disconnect(&local.pool).await;
            }
            outcome
        }
        Err(failure) => Err(failure),
    };
    let stop_ns = now_ns();
    if let Err(failure) = &outcome {
        local.record_drop(failure);
    }
    for (_, (topic, sequence)) in in_flight {
        topics.unacknowledged[topic as usize].push(sequence);
    }
    let mut tally = local.tally.borrow_mut();
    tally.churn_start_ns = start_ns;
    tally.churn_stop_ns = stop_ns.clamp(start_ns, end_ns.max(start_ns));
    for topic in 0..clients {
        local.shared.sent[topic].store(topics.sent[topic], Ordering::Release);
        let mut unacknowledged = std::mem::take(&mut topics.unacknowledged[topic]);
        unacknowledged.sort_unstable();
        tally.sent += topics.sent[topic];
        tally.acknowledged += topics.acknowledged[topic];
        tally.topics.push(PublisherEnd {
            publisher: topic as u32,
            sent: topics.sent[topic],
            acknowledged: topics.acknowledged[topic],
            unacknowledged,
        });
    }
    local.shared.publisher_done.store(true, Ordering::Release);
}

async fn publish(
    local: &Local,
    connection: &mut Connection,
    start_ns: u64,
    end_ns: u64,
    topics: &mut Topics,
    in_flight: &mut HashMap<u16, (u32, u64)>,
) -> Result<(), Failure> {
    let config = &local.config;
    let clients = u64::from(local.churn.clients);
    let interval_ns = 1e9 / local.churn.publish_rate_per_sec;
    let window = PUBLISH_WINDOW.min(connection.receive_maximum).max(1);
    let mut free: Vec<u16> = (1..=window).rev().collect();
    let version = connection.version();
    let (mut out, mut payload) = (BytesMut::new(), BytesMut::new());
    let mut next = 0_u64;
    let mut drain_deadline_ns = None;
    loop {
        let now = now_ns();
        let stopping = now >= end_ns || local.stopping();
        if stopping && drain_deadline_ns.is_none() {
            drain_deadline_ns = Some(now + duration_ns(ACK_DRAIN_TIMEOUT));
        }
        while !stopping && !free.is_empty() {
            let due_ns = start_ns + (next as f64 * interval_ns) as u64;
            if due_ns > now || due_ns >= end_ns {
                break;
            }
            let Some(id) = free.pop() else { break };
            let topic = (next % clients) as u32;
            let sequence = topics.sent[topic as usize];
            PayloadHeader {
                run_id: config.run_id,
                publisher: topic,
                sequence,
                intended_ns: due_ns,
            }
            .write(config.payload_bytes, &mut payload);
            Packet::Publish(Publish {
                dup: false,
                qos: config.qos,
                retain: false,
                topic: ByteString::from(config.topic(topic)),
                packet_id: PacketId::new(id),
                properties: Properties::default(),
                payload: Bytes::from(payload.split()),
            })
            .encode(version, &mut out)?;
            in_flight.insert(id, (topic, sequence));
            topics.sent[topic as usize] += 1;
            next += 1;
        }
        if !out.is_empty() {
            connection.write(&out).await?;
            out.clear();
        }
        if stopping
            && (in_flight.is_empty() || drain_deadline_ns.is_some_and(|deadline| now >= deadline))
        {
            return Ok(());
        }
        let next_due_ns = start_ns + (next as f64 * interval_ns) as u64;
        let mut timer_ns = match drain_deadline_ns {
            Some(deadline) => deadline,
            None if free.is_empty() => end_ns,
            None => next_due_ns.min(end_ns),
        };
        timer_ns = timer_ns.min(now + STOP_CHECK_NS);
        match wait_for_data(local, connection, timer_ns).await? {
            Wake::Timer => connection.keepalive_tick().await?,
            Wake::Data => {
                while let Some(packet) = connection.next_packet(&local.pool)? {
                    let (Packet::PubAck(ack) | Packet::PubComp(ack) | Packet::PubRec(ack)) =
                        &packet
                    else {
                        continue;
                    };
                    let id = ack.packet_id.get();
                    let Some(&(topic, sequence)) = in_flight.get(&id) else {
                        return Err(Failure::Protocol("acknowledgement of nothing sent".into()));
                    };
                    if let Packet::PubRec(ack) = &packet {
                        if !ack.reason.is_error() {
                            Packet::PubRel(Ack::success(ack.packet_id))
                                .encode(version, &mut out)?;
                            continue;
                        }
                    }
                    in_flight.remove(&id);
                    free.push(id);
                    if ack.reason.is_error() {
                        topics.unacknowledged[topic as usize].push(sequence);
                    } else {
                        topics.acknowledged[topic as usize] += 1;
                    }
                }
            }
        }
    }
}

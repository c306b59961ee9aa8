//! The control thread's loop: feeds requests, etcd answers, lease news, member snapshots and
//! time into the [`Ownership`] core, carries out the actions it asks for, and publishes the
//! results (fence deadline, `etcd_ok`, per-shard events).
//!
//! The loop never waits on etcd itself: transactions run as tasks whose answers come back on a
//! channel, and the lease and member watch are tasks of their own. While etcd is down the loop
//! keeps answering from the core (claims wait there until their timeout).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::etcd::{self, Answered, Backoff, CallError, Etcd, Keys, Registration, TxnOutcome};
use super::lease::{LeaseCommand, LeaseEvent, LeaseSettings, LeaseTask};
use super::{ControlConfig, ControlError, ControlEvent, Request, Shared, SHUTDOWN_REVOKE_TIMEOUT};
use crate::ownership::{Action, KeepaliveId, Ownership, Ticket, TxnId, TxnOp};
use crate::types::{ClaimOutcome, LeaseId, Member};

/// Requests taken from the queue in one turn before the core acts, so a burst of claims reaches
/// the core together (and is batched into few transactions) yet one turn stays bounded.
pub const REQUESTS_PER_TURN_MAX: usize = 1024;
/// Transaction answers queued from the transaction tasks to the loop.
pub const TXN_ANSWERS_QUEUED_MAX: usize = 1024;
/// Member snapshots queued from the watch task to the loop.
pub const MEMBER_UPDATES_QUEUED_MAX: usize = 16;
/// Lease news queued from the lease task to the loop.
pub const LEASE_EVENTS_QUEUED_MAX: usize = 16;
/// Lease commands queued from the loop to the lease task: keepalives wait here while the task
/// opens a stream (one round trip to a slow etcd, several keepalive intervals).
pub const LEASE_COMMANDS_QUEUED_MAX: usize = 64;
/// How soon the loop retries delivering events to a shard whose channel was full.
pub const EVENTS_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// The control thread's body: builds the runtime, starts up (reporting success or the error
/// through `ready`), then runs the loop until shutdown.
pub(crate) fn run_thread(
    config: ControlConfig,
    shared: Arc<Shared>,
    requests: async_channel::Receiver<Request>,
    shards: Vec<async_channel::Sender<ControlEvent>>,
    ready: SyncSender<Result<(), ControlError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(ControlError::Thread(error)));
            return;
        }
    };
    runtime.block_on(async move {
        match Driver::start(config, shared, requests, shards).await {
            Ok(driver) => {
                let _ = ready.send(Ok(()));
                driver.run().await;
            }
            Err(error) => {
                let _ = ready.send(Err(error));
            }
        }
    });
}

struct Driver {
    core: Ownership,
    shared: Arc<Shared>,
    etcd: Etcd,
    keys: Keys,
    requests: async_channel::Receiver<Request>,
    /// Who waits for which claim.
    replies: HashMap<u64, async_channel::Sender<ClaimOutcome>>,
    next_ticket: u64,
    txn_answers_tx: mpsc::Sender<(TxnId, TxnOutcome)>,
    txn_answers: mpsc::Receiver<(TxnId, TxnOutcome)>,
    lease_events: mpsc::Receiver<LeaseEvent>,
    lease_commands: mpsc::Sender<LeaseCommand>,
    member_updates: mpsc::Receiver<Arc<[Member]>>,
    /// Keepalives handed to the lease task and not answered, with when (for the latency
    /// histogram; at most [`KEEPALIVES_OUTSTANDING_MAX`](super::KEEPALIVES_OUTSTANDING_MAX)).
    keepalives: VecDeque<(KeepaliveId, Instant)>,
    broadcaster: Broadcaster,
}

/// What start-up got from etcd: the first lease (granted with `ttl` to a request sent at
/// `requested_at`), and the members with the revision they were read at.
struct Joined {
    etcd: Etcd,
    keys: Keys,
    lease: LeaseId,
    ttl: Duration,
    requested_at: Instant,
    members: std::collections::BTreeMap<crate::types::NodeId, Member>,
    revision: i64,
}

impl Driver {
    /// Connects, grants the first lease, registers this node and reads the members, all within
    /// `connect_timeout`; then starts the lease and watch tasks.
    async fn start(
        config: ControlConfig,
        shared: Arc<Shared>,
        requests: async_channel::Receiver<Request>,
        shards: Vec<async_channel::Sender<ControlEvent>>,
    ) -> Result<Driver, ControlError> {
        let joined = join(&config).await?;
        let Joined { etcd, keys, lease, ttl, requested_at, members, revision } = joined;
        let (lease_events_tx, lease_events) = mpsc::channel(LEASE_EVENTS_QUEUED_MAX);
        let (lease_commands, lease_commands_rx) = mpsc::channel(LEASE_COMMANDS_QUEUED_MAX);
        let (member_updates_tx, member_updates) = mpsc::channel(MEMBER_UPDATES_QUEUED_MAX);
        let (txn_answers_tx, txn_answers) = mpsc::channel(TXN_ANSWERS_QUEUED_MAX);
        let settings = LeaseSettings {
            keys: keys.clone(),
            node: config.node.clone(),
            link: config.link_advertise,
            ttl: config.ownership.lease_ttl,
            granted: Some(ttl),
            stall: config.ownership.lease_ttl * 3 / 4,
        };
        let lease_task = LeaseTask::new(etcd.clone(), settings, lease_commands_rx, lease_events_tx);
        tokio::spawn(lease_task.run());
        let list = etcd::member_list(&members);
        let watch =
            etcd::watch_members(etcd.clone(), keys.clone(), members, revision, member_updates_tx);
        tokio::spawn(watch);

        let mut core = Ownership::new(config.ownership);
        let now = Instant::now();
        core.lease_granted(lease, ttl, requested_at, now);
        core.members(&list, now);
        shared.set_members(Arc::clone(&list));
        let mut broadcaster = Broadcaster::new(shards);
        broadcaster.members(list);
        let mut driver = Driver {
            core,
            shared,
            etcd,
            keys,
            requests,
            replies: HashMap::new(),
            next_ticket: 0,
            txn_answers_tx,
            txn_answers,
            lease_events,
            lease_commands,
            member_updates,
            keepalives: VecDeque::new(),
            broadcaster,
        };
        driver.step();
        Ok(driver)
    }

    /// The loop: one input per wake-up (plus a bounded batch of queued requests), then the
    /// core's actions and the published state.
    async fn run(mut self) {
        loop {
            let wakeup = self.next_wakeup();
            let sleep = async move {
                match wakeup {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                request = self.requests.recv() => {
                    let Ok(request) = request else {
                        // Every handle is gone: stop as on shutdown.
                        break;
                    };
                    if self.handle_requests(request) == Flow::Stop {
                        break;
                    }
                }
                Some((id, outcome)) = self.txn_answers.recv() => {
                    let now = Instant::now();
                    match outcome.failure {
                        Some(Answered::Not) => self.core.etcd_unreachable(now),
                        Some(Answered::Congested) => self.core.etcd_congested(now),
                        Some(Answered::Otherwise) | None => {}
                    }
                    self.core.txn_answered(id, outcome.answer, now);
                }
                Some(event) = self.lease_events.recv() => self.lease_event(event),
                Some(members) = self.member_updates.recv() => {
                    self.core.members(&members, Instant::now());
                    self.shared.set_members(Arc::clone(&members));
                    self.broadcaster.members(members);
                }
                () = sleep => self.core.tick(Instant::now()),
            }
            self.step();
        }
        self.stop().await;
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let core = self.core.next_wakeup();
        let retry = self.broadcaster.has_pending().then(|| Instant::now() + EVENTS_RETRY_INTERVAL);
        match (core, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles `first` and up to [`REQUESTS_PER_TURN_MAX`] more requests already queued.
    fn handle_requests(&mut self, first: Request) -> Flow {
        if self.handle_request(first) == Flow::Stop {
            return Flow::Stop;
        }
        for _ in 1..REQUESTS_PER_TURN_MAX {
            let Ok(request) = self.requests.try_recv() else {
                break;
            };
            if self.handle_request(request) == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn handle_request(&mut self, request: Request) -> Flow {
        let now = Instant::now();
        match request {
            Request::Claim { client, after_release, priority, reply } => {
                self.shared.stats.claims.fetch_add(1, Ordering::Relaxed);
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.replies.insert(ticket, reply);
                match after_release {
                    None => self.core.claim(Ticket(ticket), &client, priority, now),
                    Some(revision) => {
                        self.core.claim_after_release(Ticket(ticket), &client, revision, now)
                    }
                }
            }
            Request::Release { client } => self.core.release(&client, now),
            Request::HandedOver { client } => self.core.handed_over(&client),
            Request::PeerReport { node, etcd_ok } => self.core.peer_report(&node, etcd_ok, now),
            Request::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    fn lease_event(&mut self, event: LeaseEvent) {
        let now = Instant::now();
        match event {
            LeaseEvent::Granted { lease, ttl, requested_at } => {
                self.keepalives.clear();
                self.core.lease_granted(lease, ttl, requested_at, now);
            }
            LeaseEvent::Answered { lease, id, ttl } => {
                if let Some(index) = self.keepalives.iter().position(|(sent, _)| *sent == id) {
                    let (_, sent_at) = self.keepalives.remove(index).unwrap_or((id, now));
                    self.shared.stats.keepalive_answered(now.saturating_duration_since(sent_at));
                }
                self.core.keepalive_answered(lease, id, ttl, now);
            }
            LeaseEvent::Lost { lease } => self.core.lease_lost(lease, now),
            LeaseEvent::Unreachable => self.core.etcd_unreachable(now),
            LeaseEvent::Congested => self.core.etcd_congested(now),
            LeaseEvent::StreamOpened => {
                self.shared.stats.keepalive_streams.fetch_add(1, Ordering::Relaxed);
            }
            LeaseEvent::Dropped => {
                self.shared.stats.keepalives_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Carries out every action the core has queued, then publishes its state.
    fn step(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Txn { id, lease, ops } => self.spawn_txn(id, lease, ops),
                Action::Answer { ticket, outcome } => {
                    if let Some(reply) = self.replies.remove(&ticket.0) {
                        // The claimer may have given up (its task dropped): nothing to do.
                        let _ = reply.try_send(outcome);
                    }
                }
                Action::Fence => {
                    warn!(
                        "this node could not show its etcd lease alive in time: it stops serving"
                    );
                    self.broadcaster.fenced();
                }
                Action::Serve { new_lease } => self.broadcaster.serving(new_lease),
                Action::GrantLease => {
                    self.keepalives.clear();
                    // A full queue (keepalives waiting for a stream that does not open) must
                    // not lose the grant: the keepalives are for a lease that is gone.
                    if let Err(mpsc::error::TrySendError::Full(command)) =
                        self.lease_commands.try_send(LeaseCommand::Grant)
                    {
                        let commands = self.lease_commands.clone();
                        tokio::spawn(async move { commands.send(command).await });
                    }
                }
                Action::KeepAlive { lease, id } => self.keep_alive(lease, id),
            }
        }
        let now = Instant::now();
        self.shared.fence.set(self.core.serving_until());
        self.shared.etcd_ok.store(self.core.report_etcd_ok(now), Ordering::Release);
        *self.shared.stats.core.lock().unwrap_or_else(PoisonError::into_inner) = self.core.stats();
        self.broadcaster.flush();
    }

    /// Hands keepalive `id` to the lease task. When its queue is full (it is stuck granting a
    /// lease) the keepalive is dropped and counted, as the task drops and counts one when as
    /// many stream opens as allowed are under way: the core credits only answered keepalives,
    /// so a dropped one costs nothing but its renewal.
    fn keep_alive(&mut self, lease: LeaseId, id: KeepaliveId) {
        match self.lease_commands.try_send(LeaseCommand::KeepAlive { lease, id }) {
            Ok(()) => {
                if self.keepalives.len() == super::KEEPALIVES_OUTSTANDING_MAX {
                    self.keepalives.pop_front();
                }
                self.keepalives.push_back((id, Instant::now()));
            }
            Err(_) => {
                self.shared.stats.keepalives_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn spawn_txn(&mut self, id: TxnId, lease: LeaseId, ops: Vec<TxnOp>) {
        let stats = Arc::clone(&self.shared.stats);
        let stats_for_latency = Arc::clone(&stats);
        stats.txn_sent(ops.len());
        let answers = self.txn_answers_tx.clone();
        let txn = etcd::run_txn(
            self.etcd.clone(),
            self.keys.clone(),
            self.shared.node.clone(),
            lease,
            (ops, self.core.txn_timeout()),
            stats,
        );
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = txn.await;
            stats_for_latency.txn_answered(sent.elapsed());
            // The loop is gone only at shutdown, when no answer matters.
            let _ = answers.send((id, outcome)).await;
        });
    }

    /// Shutdown: revoke the lease so peers may claim this node's clients at once (and its
    /// member key disappears), then let pending claims fail.
    async fn stop(mut self) {
        // Pick up a lease granted just before the shutdown request.
        let mut held = self.core.held_lease();
        while let Ok(event) = self.lease_events.try_recv() {
            if let LeaseEvent::Granted { lease, .. } = event {
                held = Some(lease);
            }
        }
        if let Some(lease) = held {
            let revoked = self
                .etcd
                .call(SHUTDOWN_REVOKE_TIMEOUT, |mut client| async move {
                    client.lease_revoke(lease.0).await
                })
                .await;
            match revoked {
                Ok(_) => info!(lease = lease.0, "revoked the etcd lease"),
                Err(error) => warn!(lease = lease.0, "could not revoke the etcd lease: {error}"),
            }
        }
        self.shared.fence.set(None);
        self.shared.etcd_ok.store(false, Ordering::Release);
        self.broadcaster.fenced();
        self.broadcaster.flush();
        // Dropping `replies` answers every waiting claim `Unavailable`.
        self.replies.clear();
    }
}

/// Connects to etcd, grants the first lease, registers this node and reads the members, all
/// within `connect_timeout` (retrying until then: a node started together with etcd waits for
/// it instead of failing at once).
async fn join(config: &ControlConfig) -> Result<Joined, ControlError> {
    let endpoints = config.endpoints.join(",");
    let keys = Keys::new(&config.cluster);
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let unreachable = |error: CallError| ControlError::Unreachable {
        endpoints: endpoints.clone(),
        timeout: config.connect_timeout,
        reason: error.to_string(),
    };
    let etcd = Etcd::connect(&config.endpoints, config.connect_timeout, &config.access)
        .await
        .map_err(unreachable)?;
    let (lease, ttl, requested_at) =
        grant_first(&etcd, config, deadline).await.map_err(unreachable)?;
    let registered = until_deadline(deadline, |timeout| {
        etcd::register(&etcd, &keys, &config.node, config.link_advertise, lease, timeout)
    })
    .await;
    match registered {
        Ok(Registration::Registered) => {}
        Ok(Registration::Taken { lease: holder }) => {
            let _ = etcd::revoke(&etcd, lease).await;
            return Err(ControlError::NodeIdTaken {
                node: config.node.clone(),
                endpoints,
                lease: holder.0,
                ttl: config.ownership.lease_ttl,
            });
        }
        Err(error) => {
            let _ = etcd::revoke(&etcd, lease).await;
            return Err(unreachable(error));
        }
    }
    let read = until_deadline(deadline, |timeout| etcd::read_members(&etcd, &keys, timeout)).await;
    let (members, revision) = match read {
        Ok(read) => read,
        Err(error) => {
            let _ = etcd::revoke(&etcd, lease).await;
            return Err(unreachable(error));
        }
    };
    info!(
        node = %config.node,
        lease = lease.0,
        members = members.len(),
        "registered in etcd at {endpoints}"
    );
    Ok(Joined { etcd, keys, lease, ttl, requested_at, members, revision })
}

/// Grants the first lease: its id, the TTL etcd granted, and when it was asked for.
async fn grant_first(
    etcd: &Etcd,
    config: &ControlConfig,
    deadline: tokio::time::Instant,
) -> Result<(LeaseId, Duration, Instant), CallError> {
    let ttl = etcd::ttl_seconds(config.ownership.lease_ttl);
    let (granted, requested_at) = until_deadline(deadline, |timeout| {
        let etcd = etcd.clone();
        async move {
            let requested_at = Instant::now();
            let granted = etcd
                .call(timeout, |mut client| async move { client.lease_grant(ttl, None).await })
                .await?;
            Ok((granted, requested_at))
        }
    })
    .await?;
    if granted.ttl() != ttl {
        info!(
            requested = ttl,
            granted = granted.ttl(),
            "etcd granted another lease TTL than asked"
        );
    }
    let granted_ttl = Duration::from_secs(granted.ttl().max(1) as u64);
    Ok((LeaseId(granted.id()), granted_ttl, requested_at))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// One shard's undelivered events.
#[derive(Debug)]
struct Outbox {
    sender: async_channel::Sender<ControlEvent>,
    /// Fence changes not yet delivered: at most `[Fenced, Serving]` (a shard that missed a
    /// fencing must still see it, even if serving resumed since).
    fence: Vec<ControlEvent>,
    /// The newest undelivered member snapshot (older ones are superseded).
    members: Option<Arc<[Member]>>,
    /// A `Serving { new_lease: true }` was dropped undelivered by a later fence: the next
    /// `Serving` carries it, or the shard would never claim its stored sessions again.
    new_lease_owed: bool,
}

/// Delivers [`ControlEvent`]s to every shard without ever blocking the loop.
#[derive(Debug)]
struct Broadcaster {
    outboxes: Vec<Outbox>,
}

impl Broadcaster {
    fn new(shards: Vec<async_channel::Sender<ControlEvent>>) -> Broadcaster {
        Broadcaster {
            outboxes: shards
                .into_iter()
                .map(|sender| Outbox {
                    sender,
                    fence: Vec::with_capacity(2),
                    members: None,
                    new_lease_owed: false,
                })
                .collect(),
        }
    }

    fn members(&mut self, members: Arc<[Member]>) {
        for outbox in &mut self.outboxes {
            outbox.members = Some(Arc::clone(&members));
        }
    }

    fn fenced(&mut self) {
        for outbox in &mut self.outboxes {
            let dropped_new_lease = outbox
                .fence
                .iter()
                .any(|event| matches!(event, ControlEvent::Serving { new_lease: true }));
            outbox.new_lease_owed |= dropped_new_lease;
            outbox.fence.clear();
            outbox.fence.push(ControlEvent::Fenced);
        }
    }

    fn serving(&mut self, new_lease: bool) {
        for outbox in &mut self.outboxes {
            let new_lease = new_lease || std::mem::take(&mut outbox.new_lease_owed);
            match outbox.fence.last_mut() {
                // Serving twice in a row without a fence between: one event, a new lease if
                // either was.
                Some(ControlEvent::Serving { new_lease: earlier }) => *earlier |= new_lease,
                _ => outbox.fence.push(ControlEvent::Serving { new_lease }),
            }
        }
    }

    fn has_pending(&self) -> bool {
        self.outboxes.iter().any(|outbox| !outbox.fence.is_empty() || outbox.members.is_some())
    }

    /// Sends what each shard's channel has room for; the rest waits for the next flush.
    fn flush(&mut self) {
        for outbox in &mut self.outboxes {
            if outbox.sender.is_closed() {
                outbox.fence.clear();
                outbox.members = None;
                continue;
            }
            while !outbox.fence.is_empty() {
                let event = outbox.fence[0].clone();
                if outbox.sender.try_send(event).is_err() {
                    break;
                }
                outbox.fence.remove(0);
            }
            if !outbox.fence.is_empty() {
                continue;
            }
            if let Some(members) = outbox.members.take() {
                if let Err(error) = outbox.sender.try_send(ControlEvent::Members(members)) {
                    if let ControlEvent::Members(members) = error.into_inner() {
                        outbox.members = Some(members);
                    }
                }
            }
        }
    }
}

/// Runs `attempt` (given the time left) until it succeeds or `deadline` passes, backing off
/// between failures; the last failure is the error.
async fn until_deadline<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut attempt: F,
) -> Result<T, CallError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut backoff = Backoff::new();
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match attempt(remaining).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        debug!("etcd not reachable yet: {error}");
        tokio::select! {
            () = backoff.wait() => {}
            () = tokio::time::sleep_until(deadline) => return Err(error),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(error);
        }
    }
}

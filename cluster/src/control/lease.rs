//! The lease task: carries out the core's `GrantLease` and `KeepAlive` actions against etcd and
//! reports what etcd answered. Runs on the control thread's tokio runtime and reports to the
//! driver through [`LeaseEvent`]s.
//!
//! The core decides when a keepalive goes out (every `ttl / 16`, whatever is still outstanding)
//! and what an answer proves (`ownership/lease.rs`); this task only keeps one keepalive stream
//! open and matches answers to keepalives. etcd answers the keepalives of one stream in order
//! (etcd 3.4 `v3rpc/lease.go`: receive, renew, send, one at a time), so the answers are matched
//! first in, first out.
//!
//! Two ways etcd ends a stream without the lease being lost, both seen under load: etcd 3.4.20+
//! renews a lease only once its apply loop has caught up with everything committed, and after
//! waiting 1 s it answers the keepalive with "waiting for the applied index took too long" and
//! closes the stream; and a connection dropped under the stream (an HTTP/2 ping unanswered)
//! ends it too. Either way the next keepalive opens a new stream at once: the keepalives still
//! outstanding on the old one are simply never credited, which costs nothing but a renewal.
//! Opens run side by side (the next keepalive does not wait for the open before it), so that
//! renewals keep going out every interval while etcd keeps ending streams: measured with 20
//! nodes, one open at a time sent a renewal every 1.3 s against every 0.375 s asked for, and
//! every renewal was refused for 30 s until etcd expired every lease at once.
//! Only an error that did not come from etcd counts as "unreachable" (`Ownership::etcd_unreachable`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use etcd_client as api;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::etcd::{
    classify, register, revoke, timed, ttl_seconds, Answered, Backoff, CallError, ErrorLog, Etcd,
    Keys, Registration, ETCD_REQUEST_TIMEOUT,
};
use crate::ownership::KeepaliveId;
use crate::types::{LeaseId, NodeId};

/// Given-up leases remembered for revocation while etcd is unreachable; beyond this the oldest
/// is left to expire by itself.
pub const ABANDONED_LEASES_MAX: usize = 8;
/// Keepalives sent on one stream and not yet answered at most; past it the stream is taken for
/// stuck and a new one opened. A healthy-but-slow etcd (answers within half a TTL) keeps at most
/// eight outstanding at sixteen keepalives per TTL.
pub const KEEPALIVES_OUTSTANDING_MAX: usize = 64;
/// Stream opens under way at once at most. While etcd ends every stream it refuses a renewal
/// on (its apply loop behind), each keepalive opens one of its own: opening them one after
/// another instead would send one renewal per round trip, a few times fewer than the interval
/// asks for, just when each renewal has the least chance. Eight covers half a TTL of
/// keepalives (the open timeout) at sixteen per TTL.
pub const OPENS_IN_FLIGHT_MAX: usize = 8;

/// What the lease task tells the driver.
#[derive(Debug)]
pub(crate) enum LeaseEvent {
    /// A new lease is granted (with `ttl`) and this node's member key is registered under it.
    Granted { lease: LeaseId, ttl: Duration, requested_at: Instant },
    /// Keepalive `id` of `lease` was answered with `ttl` (zero: the lease is gone).
    Answered { lease: LeaseId, id: KeepaliveId, ttl: Duration },
    /// etcd says the lease is gone (a stream refused to open for it).
    Lost { lease: LeaseId },
    /// A request failed without an answer from etcd.
    Unreachable,
    /// etcd answered a keepalive with "falling behind" (see `etcd::congestion`).
    Congested,
    /// A keepalive stream opened (for the count of streams).
    StreamOpened,
    /// A keepalive not sent: no stream was open and as many opens as allowed were under way.
    Dropped,
}

/// What the driver asks of the lease task.
#[derive(Debug)]
pub(crate) enum LeaseCommand {
    /// Grant a new lease (the current one, if any, is gone) and register under it.
    Grant,
    /// Send keepalive `id` for `lease` now.
    KeepAlive { lease: LeaseId, id: KeepaliveId },
}

/// The lease task's fixed inputs.
#[derive(Debug, Clone)]
pub(crate) struct LeaseSettings {
    pub(crate) keys: Keys,
    pub(crate) node: NodeId,
    pub(crate) link: SocketAddr,
    pub(crate) ttl: Duration,
    /// The TTL etcd granted the current lease, once known.
    pub(crate) granted: Option<Duration>,
    /// A stream whose oldest keepalive has waited this long is given up (and the next endpoint
    /// tried); an open that takes this long too. Three quarters of a TTL: an answer later than
    /// that renews nothing the node can still use, while anything sooner is worth waiting for
    /// (dropping a slow-but-alive stream drops every renewal under way on it).
    pub(crate) stall: Duration,
}

/// One open keepalive stream and what is outstanding on it, with when each was sent.
struct Stream {
    lease: LeaseId,
    endpoint: usize,
    keeper: api::LeaseKeeper,
    answers: api::LeaseKeepAliveStream,
    outstanding: VecDeque<(KeepaliveId, Instant)>,
}

/// What opening a stream for keepalive `id` of `lease` (on `endpoint`) came to.
struct Opened {
    lease: LeaseId,
    id: KeepaliveId,
    endpoint: usize,
    result: Result<(api::LeaseKeeper, api::LeaseKeepAliveStream), CallError>,
}

/// The lease task's state.
pub(crate) struct LeaseTask {
    etcd: Etcd,
    settings: LeaseSettings,
    commands: mpsc::Receiver<LeaseCommand>,
    events: mpsc::Sender<LeaseEvent>,
    stream: Option<Stream>,
    /// Stream opens under way, each carrying its first keepalive (at most
    /// [`OPENS_IN_FLIGHT_MAX`]).
    opens: JoinSet<Opened>,
    /// The lease etcd said is gone: keepalives for it still queued are skipped, so the grant
    /// the core asks for next is not held up behind them.
    lost: Option<LeaseId>,
    /// Leases given up but not yet revoked (etcd was unreachable), oldest first.
    abandoned: Vec<LeaseId>,
    keepalive_errors: ErrorLog,
    grant_errors: ErrorLog,
}

impl LeaseTask {
    pub(crate) fn new(
        etcd: Etcd,
        settings: LeaseSettings,
        commands: mpsc::Receiver<LeaseCommand>,
        events: mpsc::Sender<LeaseEvent>,
    ) -> LeaseTask {
        LeaseTask {
            etcd,
            settings,
            commands,
            events,
            stream: None,
            opens: JoinSet::new(),
            lost: None,
            abandoned: Vec::with_capacity(ABANDONED_LEASES_MAX),
            keepalive_errors: ErrorLog::new("lease keepalive"),
            grant_errors: ErrorLog::new("lease grant"),
        }
    }

    /// Carries out commands and reads answers until the driver goes away.
    pub(crate) async fn run(mut self) {
        loop {
            // The oldest keepalive still waiting decides when the stream counts as stalled.
            let stalled_at = self.stream.as_ref().and_then(|stream| stream.outstanding.front());
            let stalled_at = stalled_at.map(|(_, sent)| *sent + self.settings.stall);
            let answer = async {
                match self.stream.as_mut() {
                    Some(stream) => stream.answers.message().await,
                    None => std::future::pending().await,
                }
            };
            let stall = async {
                match stalled_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                command = self.commands.recv() => match command {
                    None => return,
                    Some(LeaseCommand::Grant) => self.grant().await,
                    Some(LeaseCommand::KeepAlive { lease, id }) => self.keep_alive(lease, id).await,
                },
                answer = answer => self.answered(answer).await,
                Some(opened) = self.opens.join_next(), if !self.opens.is_empty() => {
                    match opened {
                        Ok(opened) => self.opened(opened).await,
                        // Only a panic or an abort (a new grant) ends an open otherwise.
                        Err(_) => true,
                    }
                }
                () = stall => self.stalled().await,
            };
            if !flow {
                return;
            }
        }
    }

    /// The stream's oldest keepalive waited longer than a healthy etcd takes (its member is
    /// cut off, or stopped): the next keepalive opens a stream on the next endpoint.
    async fn stalled(&mut self) -> bool {
        let Some(stream) = self.stream.take() else { return true };
        self.keepalive_errors.failed(&format_args!(
            "no answer within {:?}; trying the next endpoint",
            self.settings.stall
        ));
        self.etcd.failed(stream.endpoint);
        self.events.send(LeaseEvent::Unreachable).await.is_ok()
    }

    /// Sends keepalive `id`, opening a stream first if none is open for `lease`. False when the
    /// driver went away.
    async fn keep_alive(&mut self, lease: LeaseId, id: KeepaliveId) -> bool {
        if self.lost == Some(lease) {
            return true;
        }
        if let Some(stream) = self.stream.as_mut().filter(|stream| stream.lease == lease) {
            if stream.outstanding.len() < KEEPALIVES_OUTSTANDING_MAX
                && stream.keeper.keep_alive().await.is_ok()
            {
                stream.outstanding.push_back((id, Instant::now()));
                return true;
            }
            debug!(lease = lease.0, "keepalive stream stuck or closed; opening another");
        }
        self.stream = None;
        if self.opens.len() >= OPENS_IN_FLIGHT_MAX {
            return self.events.send(LeaseEvent::Dropped).await.is_ok();
        }
        // etcd-client sends the first keepalive (this one) and reads its answer before it
        // returns the stream. A slow etcd answers late, and a late answer still renews from
        // this send time: bounded by what a healthy etcd may take, past which another endpoint
        // may do better.
        let (endpoint, mut client) = self.etcd.pick();
        let stall = self.settings.stall;
        self.opens.spawn(async move {
            let result = timed(stall, client.lease_keep_alive(lease.0)).await;
            Opened { lease, id, endpoint, result }
        });
        true
    }

    /// An open finished: its keepalive answered (the first stream to open is kept, later ones
    /// only renew), the lease gone, or an error.
    async fn opened(&mut self, opened: Opened) -> bool {
        let Opened { lease, id, endpoint, result } = opened;
        let event = match result {
            Ok((keeper, answers)) => {
                self.keepalive_errors.recovered();
                if self.stream.is_none() && self.lost != Some(lease) {
                    let outstanding = VecDeque::with_capacity(KEEPALIVES_OUTSTANDING_MAX);
                    self.stream = Some(Stream { lease, endpoint, keeper, answers, outstanding });
                    if self.events.send(LeaseEvent::StreamOpened).await.is_err() {
                        return false;
                    }
                }
                let ttl = self.settings.ttl_granted();
                LeaseEvent::Answered { lease, id, ttl }
            }
            Err(CallError::Etcd(api::Error::LeaseKeepAliveError(message)))
                if message.contains(LEASE_NOT_FOUND) =>
            {
                self.lost = Some(lease);
                LeaseEvent::Lost { lease }
            }
            Err(error) => {
                self.keepalive_errors.failed(&error);
                // Another member may answer (one without a leader refuses everything).
                self.etcd.failed(endpoint);
                match classify(&error) {
                    Answered::Congested => LeaseEvent::Congested,
                    Answered::Otherwise => return true,
                    Answered::Not => LeaseEvent::Unreachable,
                }
            }
        };
        self.events.send(event).await.is_ok()
    }

    /// The open stream gave `answer`. False when the driver went away.
    async fn answered(
        &mut self,
        answer: Result<Option<api::LeaseKeepAliveResponse>, api::Error>,
    ) -> bool {
        let Some(stream) = self.stream.as_mut() else { return true };
        let lease = stream.lease;
        let error = match answer {
            Ok(Some(response)) => {
                let Some((id, _)) = stream.outstanding.pop_front() else {
                    // An answer nothing was sent for: this stream cannot be trusted to match.
                    self.stream = None;
                    return true;
                };
                let ttl = Duration::from_secs(response.ttl().max(0) as u64);
                if ttl.is_zero() {
                    self.lost = Some(lease);
                }
                return self.events.send(LeaseEvent::Answered { lease, id, ttl }).await.is_ok();
            }
            Ok(None) => CallError::Protocol("keepalive stream ended"),
            Err(error) => CallError::Etcd(error),
        };
        let endpoint = stream.endpoint;
        self.stream = None;
        self.keepalive_errors.failed(&error);
        self.etcd.failed(endpoint);
        let event = match classify(&error) {
            // etcd ended the stream refusing a renewal: it is falling behind.
            Answered::Congested => LeaseEvent::Congested,
            Answered::Otherwise => return true,
            Answered::Not => LeaseEvent::Unreachable,
        };
        self.events.send(event).await.is_ok()
    }

    /// Remembers `lease` for revocation (done before the next grant, see `revoke_abandoned`).
    fn abandon(&mut self, lease: LeaseId) {
        if self.abandoned.len() == ABANDONED_LEASES_MAX {
            let dropped = self.abandoned.remove(0);
            warn!(lease = dropped.0, "too many unrevoked leases; leaving this one to expire");
        }
        self.abandoned.push(lease);
    }

    /// Revokes every abandoned lease etcd will revoke now; true when none is left.
    async fn revoke_abandoned(&mut self) -> bool {
        while let Some(&lease) = self.abandoned.first() {
            match revoke(&self.etcd, lease).await {
                Ok(()) => {
                    debug!(lease = lease.0, "revoked a given-up lease");
                    self.abandoned.remove(0);
                }
                Err(error) => {
                    self.grant_errors
                        .failed(&format_args!("revoking given-up lease {:x}: {error}", lease.0));
                    return false;
                }
            }
        }
        true
    }

    /// Grants a lease and registers this node under it, retrying with backoff until both
    /// work, then reports it. False when the driver went away meanwhile.
    async fn grant(&mut self) -> bool {
        // The lease the stream kept alive is gone (etcd said so): nothing to revoke, and its
        // opens under way renew nothing.
        self.stream = None;
        self.opens.abort_all();
        let mut backoff = Backoff::new();
        loop {
            // Commands that came meanwhile are for the lease that is gone, or a repeated Grant.
            while self.commands.try_recv().is_ok() {}
            if self.commands.is_closed() {
                return false;
            }
            // Given-up leases go first: one may still hold this node's member key.
            if self.revoke_abandoned().await {
                if let Some((lease, ttl, requested_at)) = self.try_grant().await {
                    self.grant_errors.recovered();
                    info!(lease = lease.0, "granted a new etcd lease and re-registered");
                    let event = LeaseEvent::Granted { lease, ttl, requested_at };
                    return self.events.send(event).await.is_ok();
                }
            }
            backoff.wait().await;
        }
    }

    /// One attempt at granting and registering.
    async fn try_grant(&mut self) -> Option<(LeaseId, Duration, Instant)> {
        let requested_at = Instant::now();
        let ttl = ttl_seconds(self.settings.ttl);
        let granted =
            self.etcd
                .call(ETCD_REQUEST_TIMEOUT, |mut client| async move {
                    client.lease_grant(ttl, None).await
                })
                .await;
        let (lease, granted_ttl) = match granted {
            Ok(response) => (LeaseId(response.id()), response.ttl()),
            Err(error) => {
                self.grant_errors.failed(&error);
                return None;
            }
        };
        let settings = &self.settings;
        let registered = register(
            &self.etcd,
            &settings.keys,
            &settings.node,
            settings.link,
            lease,
            ETCD_REQUEST_TIMEOUT,
        )
        .await;
        match registered {
            Ok(Registration::Registered) => {
                let ttl = Duration::from_secs(granted_ttl.max(1) as u64);
                self.settings.granted = Some(ttl);
                return Some((lease, ttl, requested_at));
            }
            Ok(Registration::Taken { lease: holder }) => {
                self.grant_errors.failed(&format_args!(
                    "node id {} is registered by another live node (lease {:x})",
                    settings.node, holder.0
                ));
            }
            Err(error) => self.grant_errors.failed(&error),
        }
        // Unregistered, the new lease is of no use: give it up too.
        self.abandon(lease);
        None
    }
}

impl LeaseSettings {
    /// The TTL etcd granted the current lease (etcd repeats it in every keepalive answer).
    fn ttl_granted(&self) -> Duration {
        self.granted.unwrap_or(self.ttl)
    }
}

/// The text of etcd's `ErrLeaseNotFound` ("etcdserver: requested lease not found"), and of
/// etcd-client's error when a keepalive stream opens on an unknown lease.
pub(crate) const LEASE_NOT_FOUND: &str = "lease not found";

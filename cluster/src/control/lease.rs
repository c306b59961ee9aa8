//! The lease task: keeps this node's etcd lease alive, and when the core asks for one, grants
//! a new lease and re-registers the member key under it. Runs on the control thread's tokio
//! runtime and reports to the driver through [`LeaseEvent`]s.
//!
//! A lease the core gave up is revoked, so the session keys still attached to it disappear at
//! once. If etcd is down at that moment the lease is remembered and revoked when etcd answers
//! again: etcd extends every lease when it restarts, so an unrevoked old lease would otherwise
//! keep stale ownerships (and this node's member key) alive for another TTL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::etcd::{
    register, revoke, timed, ttl_seconds, Backoff, ErrorLog, Etcd, Keys, Registration,
    ETCD_REQUEST_TIMEOUT, KEEPALIVES_PER_TTL, RETRY_BACKOFF_MIN,
};
use crate::types::{LeaseId, NodeId};

/// Given-up leases remembered for revocation while etcd is unreachable; beyond this the oldest
/// is left to expire by itself.
pub const ABANDONED_LEASES_MAX: usize = 8;

/// What the lease task tells the driver.
#[derive(Debug)]
pub(crate) enum LeaseEvent {
    /// A new lease is granted and this node's member key is registered under it.
    Granted { lease: LeaseId, requested_at: Instant },
    /// A keepalive sent at `requested_at` was acknowledged.
    Renewed { lease: LeaseId, requested_at: Instant },
    /// etcd says the lease is gone (TTL 0 or not found).
    Lost { lease: LeaseId },
}

/// What the driver asks of the lease task.
#[derive(Debug)]
pub(crate) enum LeaseCommand {
    /// Give up the current lease (if any) and grant a new one.
    Grant,
}

/// The lease task's fixed inputs.
#[derive(Debug, Clone)]
pub(crate) struct LeaseSettings {
    pub(crate) keys: Keys,
    pub(crate) node: NodeId,
    pub(crate) link: SocketAddr,
    pub(crate) ttl: Duration,
}

/// How keeping a lease alive ended.
enum KeepaliveEnd {
    /// etcd said the lease is gone.
    Lost,
    /// The core asked for a new lease.
    Regrant,
    /// The driver went away.
    Closed,
}

/// The lease task's state.
pub(crate) struct LeaseTask {
    etcd: Etcd,
    settings: LeaseSettings,
    commands: mpsc::Receiver<LeaseCommand>,
    events: mpsc::Sender<LeaseEvent>,
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
            abandoned: Vec::with_capacity(ABANDONED_LEASES_MAX),
            keepalive_errors: ErrorLog::new("lease keepalive"),
            grant_errors: ErrorLog::new("lease grant"),
        }
    }

    /// Keeps `lease` (the one granted at start-up) alive, then whatever lease follows it.
    /// Ends when the driver goes away.
    pub(crate) async fn run(mut self, mut lease: Option<LeaseId>) {
        loop {
            let Some(current) = lease.take() else {
                // No lease: wait until the core asks for one.
                match self.commands.recv().await {
                    Some(LeaseCommand::Grant) => {}
                    None => return,
                }
                let Some(granted) = self.grant().await else {
                    return;
                };
                lease = Some(granted);
                continue;
            };
            match self.keep_alive(current).await {
                KeepaliveEnd::Closed => return,
                KeepaliveEnd::Lost => {
                    warn!(lease = current.0, "etcd lease lost (expired or revoked)");
                    if self.events.send(LeaseEvent::Lost { lease: current }).await.is_err() {
                        return;
                    }
                }
                KeepaliveEnd::Regrant => {
                    self.abandon(current);
                    let Some(granted) = self.grant().await else {
                        return;
                    };
                    lease = Some(granted);
                }
            }
        }
    }

    /// Renews `lease` every `ttl / KEEPALIVES_PER_TTL` (sooner after a failure), reporting each
    /// acknowledged renewal with the time its request was sent.
    async fn keep_alive(&mut self, lease: LeaseId) -> KeepaliveEnd {
        let interval = self.settings.ttl / KEEPALIVES_PER_TTL;
        // Failed renewals are retried sooner than the interval (one that lands before the serving
        // deadline keeps this node serving), backing off from RETRY_BACKOFF_MIN to half of it.
        let retry_max = (interval / 2).max(RETRY_BACKOFF_MIN);
        let mut retry = RETRY_BACKOFF_MIN.min(interval);
        let mut stream = None;
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(LeaseCommand::Grant) => return KeepaliveEnd::Regrant,
                    None => return KeepaliveEnd::Closed,
                },
                () = tokio::time::sleep_until(next) => {}
            }
            next = tokio::time::Instant::now() + interval;
            if stream.is_none() {
                let (endpoint, mut client) = self.etcd.pick();
                let open = client.lease_keep_alive(lease.0);
                match timed(ETCD_REQUEST_TIMEOUT.min(interval), open).await {
                    Ok((keeper, responses)) => stream = Some((endpoint, keeper, responses)),
                    Err(error) => {
                        self.etcd.failed(endpoint);
                        self.keepalive_errors.failed(&error);
                        next = tokio::time::Instant::now() + retry;
                        retry = (retry * 2).min(retry_max);
                        continue;
                    }
                }
            }
            let Some((endpoint, keeper, responses)) = stream.as_mut() else {
                continue;
            };
            let endpoint = *endpoint;
            let requested_at = Instant::now();
            let answer = timed(interval, async {
                keeper.keep_alive().await?;
                responses.message().await
            })
            .await;
            let error = match answer {
                Ok(Some(response)) if response.ttl() > 0 => {
                    self.keepalive_errors.recovered();
                    retry = RETRY_BACKOFF_MIN.min(interval);
                    let event = LeaseEvent::Renewed { lease, requested_at };
                    if self.events.send(event).await.is_err() {
                        return KeepaliveEnd::Closed;
                    }
                    continue;
                }
                Ok(Some(_)) => return KeepaliveEnd::Lost,
                Ok(None) => "keepalive stream ended".to_owned(),
                Err(error) => error.to_string(),
            };
            self.etcd.failed(endpoint);
            self.keepalive_errors.failed(&error);
            stream = None;
            next = tokio::time::Instant::now() + retry;
            retry = (retry * 2).min(retry_max);
        }
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
    /// work, then reports it. `None` when the driver went away meanwhile.
    async fn grant(&mut self) -> Option<LeaseId> {
        let mut backoff = Backoff::new();
        loop {
            // A repeated Grant while granting asks for what is already under way.
            while let Ok(LeaseCommand::Grant) = self.commands.try_recv() {}
            if self.commands.is_closed() {
                return None;
            }
            // Old leases go first: one may still hold this node's member key.
            if self.revoke_abandoned().await {
                if let Some((lease, requested_at)) = self.try_grant().await {
                    self.grant_errors.recovered();
                    info!(lease = lease.0, "granted a new etcd lease and re-registered");
                    let event = LeaseEvent::Granted { lease, requested_at };
                    if self.events.send(event).await.is_err() {
                        return None;
                    }
                    return Some(lease);
                }
            }
            backoff.wait().await;
        }
    }

    /// One attempt at granting and registering.
    async fn try_grant(&mut self) -> Option<(LeaseId, Instant)> {
        let requested_at = Instant::now();
        let ttl = ttl_seconds(self.settings.ttl);
        let granted =
            self.etcd
                .call(ETCD_REQUEST_TIMEOUT, |mut client| async move {
                    client.lease_grant(ttl, None).await
                })
                .await;
        let lease = match granted {
            Ok(response) => LeaseId(response.id()),
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
            Ok(Registration::Registered) => return Some((lease, requested_at)),
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

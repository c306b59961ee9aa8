//! The etcd side of the control plane: key layout, value encodings, and the tokio tasks that
//! talk to etcd (connection, lease grant and keepalive, member registration and watch,
//! ownership transactions). Runs only on the control-plane thread's tokio runtime.
//!
//! Every etcd call has a timeout, so an unreachable etcd never hangs a task; retries back off
//! and errors are logged at most once per [`ERROR_LOG_INTERVAL`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client as api;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Stats;
use crate::ownership::{Compare, OpResult, Owner, TxnAnswer, TxnOp};
use crate::types::{LeaseId, Member, NodeId, Revision};

/// Timeout of one unary etcd call (grant, revoke, get, put) outside the start-up.
pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on the etcd connections (sent when nothing was read for this long), so a
/// silently dead peer (a partition, not a crash) breaks the watch and keepalive streams instead
/// of leaving them waiting forever. Above etcd's `--grpc-keepalive-min-time` (5 s by default):
/// etcd answers pings closer together than that with GOAWAY "too_many_pings" once it has written
/// nothing for a while, which is exactly when etcd is slow, and the GOAWAY drops every stream
/// and transaction on the connection.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);
/// How long an HTTP/2 ping may go unanswered before the connection is dropped. Generous: a
/// dropped connection drops every keepalive and transaction under way on it, whose late answers
/// would still renew the lease. Measured with 20 nodes sharing two cores with etcd: after a 4 s
/// SIGSTOP, the CPU-starved etcd left pings unanswered for over 3 s (the timeout then), every
/// node dropped its connection and the renewals on it, and every lease expired. A member that
/// is really gone is left sooner by the lease task, which moves to the next endpoint when a
/// keepalive goes unanswered for three quarters of a TTL.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// First pause before retrying a failed etcd operation; doubles up to [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between two retries of a failed etcd operation.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A failing operation logs at most once per interval (with how many failures it skipped).
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The keys of one cluster: `/shardmq/<cluster>/nodes/<id>` and `/shardmq/<cluster>/sessions/<id>`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    nodes: String,
    sessions: String,
}

impl Keys {
    pub(crate) fn new(cluster: &str) -> Keys {
        Keys {
            nodes: format!("/shardmq/{cluster}/nodes/"),
            sessions: format!("/shardmq/{cluster}/sessions/"),
        }
    }

    /// The prefix every member key starts with.
    pub(crate) fn nodes_prefix(&self) -> &str {
        &self.nodes
    }

    pub(crate) fn node(&self, node: &NodeId) -> String {
        format!("{}{}", self.nodes, node)
    }

    pub(crate) fn session(&self, client_id: &str) -> String {
        format!("{}{client_id}", self.sessions)
    }
}

/// A member key's value: `<link address> <lease as 16 hex digits>`, e.g. `10.0.0.7:1884
/// 694d9b7c1a2e0f31`. Text, so `etcdctl get --prefix /shardmq/` is readable.
pub(crate) fn encode_member(link: SocketAddr, lease: LeaseId) -> String {
    // Leases are positive i64s; the cast keeps the hex form fixed-width and sign-free.
    format!("{link} {:016x}", lease.0 as u64)
}

/// Decodes a member key and value; `None` for a key outside the prefix or a malformed value.
pub(crate) fn decode_member(keys: &Keys, key: &[u8], value: &[u8]) -> Option<Member> {
    let key = std::str::from_utf8(key).ok()?;
    let node = key.strip_prefix(keys.nodes_prefix())?;
    if node.is_empty() {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    let (link, lease) = value.split_once(' ')?;
    Some(Member {
        node: NodeId::new(node),
        link: link.parse().ok()?,
        lease: LeaseId(u64::from_str_radix(lease, 16).ok()? as i64),
    })
}

/// Runs `future` with a timeout, turning both failures into one displayable error.
pub(crate) async fn timed<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, api::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::Etcd(error)),
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

/// What an error says about etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// etcd answered that it is falling behind: "etcdserver: request timed out, waiting for
    /// the applied index took too long" (a lease renewal waited 1 s for etcd's apply loop) or
    /// "etcdserver: too many requests" (its apply loop is 5,000 entries behind).
    Congested,
    /// etcd answered with another error of its own (no leader, a leader change, ...).
    Otherwise,
    /// No answer from etcd: connection refused or reset, a timeout, a broken stream.
    Not,
}

/// Whether `error` is an answer from etcd itself rather than a failure to reach it.
pub(crate) fn classify(error: &CallError) -> Answered {
    let CallError::Etcd(api::Error::GRpcStatus(status)) = error else { return Answered::Not };
    let message = status.message();
    if !message.starts_with("etcdserver:") {
        return Answered::Not;
    }
    if message.contains("applied index") || message.contains("too many requests") {
        Answered::Congested
    } else {
        Answered::Otherwise
    }
}

/// Why one etcd call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    Etcd(api::Error),
    Timeout(Duration),
    /// etcd answered, but not as expected (a stream that ended, a missing header).
    Protocol(&'static str),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // etcd-client's messages can span lines (a gRPC status with details); keep one.
            CallError::Etcd(error) => {
                let text = error.to_string();
                f.write_str(text.lines().next().unwrap_or("unknown etcd error"))
            }
            CallError::Timeout(timeout) => write!(f, "no answer within {timeout:?}"),
            CallError::Protocol(what) => f.write_str(what),
        }
    }
}

/// Logs a repeating failure at most once per [`ERROR_LOG_INTERVAL`].
#[derive(Debug)]
pub(crate) struct ErrorLog {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    pub(crate) fn new(what: &'static str) -> ErrorLog {
        ErrorLog { what, last: None, suppressed: 0 }
    }

    pub(crate) fn failed(&mut self, error: &dyn fmt::Display) {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < ERROR_LOG_INTERVAL => self.suppressed += 1,
            _ => {
                if self.suppressed == 0 {
                    warn!("etcd {}: {error}", self.what);
                } else {
                    warn!(
                        "etcd {}: {error} ({} more failures since the last report)",
                        self.what, self.suppressed
                    );
                }
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }

    /// The operation works again: log that once if a failure was reported.
    pub(crate) fn recovered(&mut self) {
        if self.last.take().is_some() {
            info!("etcd {}: working again", self.what);
        }
        self.suppressed = 0;
    }
}

/// Exponential backoff between retries.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: RETRY_BACKOFF_MIN }
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(RETRY_BACKOFF_MAX);
    }

    pub(crate) fn reset(&mut self) {
        self.next = RETRY_BACKOFF_MIN;
    }
}

/// The connection options every client of the control plane uses.
pub(crate) fn connect_options(
    connect_timeout: Duration,
    access: &super::EtcdAccess,
) -> api::ConnectOptions {
    // No per-request `with_timeout`: tonic applies it to streams too, which would cut the
    // watch and keepalive streams. Each call is wrapped in `timed` instead. No pings on an idle
    // connection (one to another endpoint, unused): etcd refuses pings without a stream open
    // (`PermitWithoutStream: false`) and would close it; the one in use always has the keepalive
    // stream open.
    let mut options = api::ConnectOptions::new()
        .with_connect_timeout(connect_timeout)
        .with_keep_alive(HTTP2_KEEPALIVE_INTERVAL, HTTP2_KEEPALIVE_TIMEOUT)
        .with_keep_alive_while_idle(false)
        // A member cut off from its quorum refuses at once instead of serving stale reads or
        // holding a watch that never fires; the call then moves to another endpoint.
        .with_require_leader(true);
    if let Some(tls) = &access.tls {
        let mut config = api::TlsOptions::new().ca_certificate(api::Certificate::from_pem(&tls.ca));
        if let Some((certificate, key)) = &tls.identity {
            config = config.identity(api::Identity::from_pem(certificate, key));
        }
        options = options.with_tls(config);
    }
    if let Some((user, password)) = &access.user {
        options = options.with_user(user.clone(), password.clone());
    }
    options
}

/// One etcd client per endpoint, used one at a time: every call goes to the current endpoint,
/// and a failed call moves on to the next. (etcd-client's own balancing keeps routing a share of
/// the calls to a dead member: its lazy reconnect makes that member look ready.)
#[derive(Clone)]
pub(crate) struct Etcd {
    clients: Arc<[api::Client]>,
    endpoints: Arc<[String]>,
    current: Arc<AtomicUsize>,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish()
    }
}

impl Etcd {
    /// Makes the clients; they connect lazily, on their first call.
    pub(crate) async fn connect(
        endpoints: &[String],
        connect_timeout: Duration,
        access: &super::EtcdAccess,
    ) -> Result<Etcd, CallError> {
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let options = connect_options(connect_timeout, access);
            let client =
                api::Client::connect([endpoint], Some(options)).await.map_err(CallError::Etcd)?;
            clients.push(client);
        }
        if clients.is_empty() {
            return Err(CallError::Protocol("no etcd endpoints"));
        }
        Ok(Etcd {
            clients: clients.into(),
            endpoints: endpoints.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The current endpoint's index and client.
    pub(crate) fn pick(&self) -> (usize, api::Client) {
        let index = self.current.load(Ordering::Relaxed) % self.clients.len();
        (index, self.clients[index].clone())
    }

    /// A call through endpoint `index` failed: move on to the next endpoint (unless another
    /// failure already did).
    pub(crate) fn failed(&self, index: usize) {
        let next = (index + 1) % self.clients.len();
        if self.current.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            && next != index
        {
            debug!(endpoint = %self.endpoints[next], "switching etcd endpoint");
        }
    }

    /// Runs one call on the current endpoint with a timeout; on failure the next call goes to
    /// the next endpoint.
    pub(crate) async fn call<T, F, Fut>(&self, timeout: Duration, call: F) -> Result<T, CallError>
    where
        F: FnOnce(api::Client) -> Fut,
        Fut: Future<Output = Result<T, api::Error>>,
    {
        let (index, client) = self.pick();
        let result = timed(timeout, call(client)).await;
        if result.is_err() {
            self.failed(index);
        }
        result
    }
}

/// etcd lease TTLs are whole seconds: round up, at least one.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(seconds.max(1)).unwrap_or(i64::MAX)
}

/// What registering this node's member key found.
#[derive(Debug)]
pub(crate) enum Registration {
    Registered,
    /// The key exists under another lease: another live node uses this node id (or this
    /// node's previous run, until its lease expires).
    Taken {
        lease: LeaseId,
    },
}

/// Writes this node's member key under `lease` unless the key already exists.
pub(crate) async fn register(
    etcd: &Etcd,
    keys: &Keys,
    node: &NodeId,
    link: SocketAddr,
    lease: LeaseId,
    timeout: Duration,
) -> Result<Registration, CallError> {
    let key = keys.node(node);
    let txn = api::Txn::new()
        .when([api::Compare::create_revision(key.clone(), api::CompareOp::Equal, 0)])
        .and_then([api::TxnOp::put(
            key.clone(),
            encode_member(link, lease),
            Some(api::PutOptions::new().with_lease(lease.0)),
        )])
        .or_else([api::TxnOp::get(key, None)]);
    let response = etcd.call(timeout, |mut client| async move { client.txn(txn).await }).await?;
    if response.succeeded() {
        return Ok(Registration::Registered);
    }
    let holder = response
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            api::TxnOpResponse::Get(get) => get.kvs().first().map(|kv| LeaseId(kv.lease())),
            _ => None,
        })
        .unwrap_or(LeaseId(0));
    if holder == lease {
        return Ok(Registration::Registered);
    }
    Ok(Registration::Taken { lease: holder })
}

/// Reads every member: the sorted list and the revision it was read at.
pub(crate) async fn read_members(
    etcd: &Etcd,
    keys: &Keys,
    timeout: Duration,
) -> Result<(BTreeMap<NodeId, Member>, i64), CallError> {
    let prefix = keys.nodes_prefix().to_owned();
    let response = etcd
        .call(timeout, |mut client| async move {
            client.get(prefix, Some(api::GetOptions::new().with_prefix())).await
        })
        .await?;
    let revision = response
        .header()
        .map(|header| header.revision())
        .ok_or(CallError::Protocol("range response without a header"))?;
    let mut members = BTreeMap::new();
    for kv in response.kvs() {
        match decode_member(keys, kv.key(), kv.value()) {
            Some(member) => {
                members.insert(member.node.clone(), member);
            }
            None => {
                warn!(key = %String::from_utf8_lossy(kv.key()), "ignoring a malformed member key")
            }
        }
    }
    Ok((members, revision))
}

/// A sorted snapshot of the member map.
pub(crate) fn member_list(members: &BTreeMap<NodeId, Member>) -> Arc<[Member]> {
    members.values().cloned().collect()
}

/// Watches the member prefix for ever, sending a full sorted snapshot after every change.
/// After any error it re-reads the whole list (so nothing missed while the watch was down
/// stays missed) and watches again from there. Ends when `updates` closes.
pub(crate) async fn watch_members(
    etcd: Etcd,
    keys: Keys,
    mut members: BTreeMap<NodeId, Member>,
    mut start_revision: i64,
    updates: mpsc::Sender<Arc<[Member]>>,
) {
    let mut errors = ErrorLog::new("member watch");
    let mut backoff = Backoff::new();
    // The caller has just read `members` at `start_revision`; later rounds re-read the list.
    let mut need_read = false;
    loop {
        if need_read {
            match read_members(&etcd, &keys, ETCD_REQUEST_TIMEOUT).await {
                Ok((read, revision)) => {
                    members = read;
                    start_revision = revision;
                    if updates.send(member_list(&members)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    errors.failed(&error);
                    backoff.wait().await;
                    continue;
                }
            }
        }
        need_read = true;
        let options =
            api::WatchOptions::new().with_prefix().with_start_revision(start_revision + 1);
        let (endpoint, mut client) = etcd.pick();
        let watch = client.watch(keys.nodes_prefix(), Some(options));
        let mut stream = match timed(ETCD_REQUEST_TIMEOUT, watch).await {
            Ok(stream) => stream,
            Err(error) => {
                etcd.failed(endpoint);
                errors.failed(&error);
                backoff.wait().await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(response)) => {
                    if response.canceled() {
                        errors.failed(&format_args!(
                            "watch canceled by etcd: {} (compacted at {})",
                            response.cancel_reason(),
                            response.compact_revision()
                        ));
                        break;
                    }
                    errors.recovered();
                    backoff.reset();
                    if response.events().is_empty() {
                        continue;
                    }
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        match event.event_type() {
                            api::EventType::Put => {
                                match decode_member(&keys, kv.key(), kv.value()) {
                                    Some(member) => {
                                        members.insert(member.node.clone(), member);
                                    }
                                    None => warn!(
                                        key = %String::from_utf8_lossy(kv.key()),
                                        "ignoring a malformed member key"
                                    ),
                                }
                            }
                            api::EventType::Delete => {
                                let key = String::from_utf8_lossy(kv.key());
                                if let Some(node) = key.strip_prefix(keys.nodes_prefix()) {
                                    members.remove(&NodeId::new(node));
                                }
                            }
                        }
                    }
                    if updates.send(member_list(&members)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    etcd.failed(endpoint);
                    errors.failed(&"watch stream ended");
                    break;
                }
                Err(error) => {
                    etcd.failed(endpoint);
                    errors.failed(&CallError::Etcd(error));
                    break;
                }
            }
        }
        backoff.wait().await;
    }
}

/// What one transaction came to: etcd's answer, and what a failure (if it failed) says about
/// etcd (see [`classify`]).
pub(crate) struct TxnOutcome {
    pub(crate) answer: TxnAnswer,
    pub(crate) failure: Option<Answered>,
}

/// Runs one ownership transaction: one nested `If(compare) Then(op) Else(get key)` per
/// operation, so that each succeeds or fails on its own compare.
///
/// A transaction not answered within `timeout` (`Ownership::txn_timeout`) is answered
/// `Failed`; it may still have committed, which the core resolves by comparing revisions on its
/// retry.
pub(crate) async fn run_txn(
    etcd: Etcd,
    keys: Keys,
    node: NodeId,
    lease: LeaseId,
    (ops, timeout): (Vec<TxnOp>, Duration),
    stats: Arc<Stats>,
) -> TxnOutcome {
    let value = Owner { node: node.clone(), lease }.encode();
    let nested: Vec<api::TxnOp> =
        ops.iter().map(|op| api::TxnOp::txn(nested_txn(&keys, op, &value, lease))).collect();
    let txn = api::Txn::new().and_then(nested);
    let response = match etcd.call(timeout, |mut client| async move { client.txn(txn).await }).await
    {
        Ok(response) => response,
        Err(error) => {
            stats.txns_failed.fetch_add(1, Ordering::Relaxed);
            debug!(ops = ops.len(), "ownership transaction failed: {error}");
            return TxnOutcome { answer: TxnAnswer::Failed, failure: Some(classify(&error)) };
        }
    };
    let answer = read_txn_answer(&response, ops.len());
    match &answer {
        TxnAnswer::Failed => stats.txns_failed.fetch_add(1, Ordering::Relaxed),
        TxnAnswer::Applied { results, .. } if results.contains(&OpResult::Written) => {
            stats.txns_committed.fetch_add(1, Ordering::Relaxed)
        }
        TxnAnswer::Applied { .. } => stats.txns_compare_failed.fetch_add(1, Ordering::Relaxed),
    };
    TxnOutcome { answer, failure: None }
}

/// `If(op's compare) Then(op) Else(get op's key)`.
fn nested_txn(keys: &Keys, op: &TxnOp, value: &[u8], lease: LeaseId) -> api::Txn {
    let key = keys.session(op.client());
    let compare = match op.compare() {
        Compare::Absent => api::Compare::create_revision(key.clone(), api::CompareOp::Equal, 0),
        Compare::ModRevision(revision) => {
            api::Compare::mod_revision(key.clone(), api::CompareOp::Equal, revision.0)
        }
    };
    let write = match op {
        TxnOp::Put { .. } => api::TxnOp::put(
            key.clone(),
            value.to_vec(),
            Some(api::PutOptions::new().with_lease(lease.0)),
        ),
        TxnOp::Delete { .. } => api::TxnOp::delete(key.clone(), None),
    };
    api::Txn::new().when([compare]).and_then([write]).or_else([api::TxnOp::get(key, None)])
}

/// The per-operation outcome of an applied transaction of `ops` nested ones; `Failed` for an
/// answer not shaped as asked (not one to trust).
fn read_txn_answer(response: &api::TxnResponse, ops: usize) -> TxnAnswer {
    let Some(header) = response.header() else { return TxnAnswer::Failed };
    let mut results = Vec::with_capacity(ops);
    for op in response.op_responses() {
        let api::TxnOpResponse::Txn(nested) = op else { return TxnAnswer::Failed };
        if nested.succeeded() {
            results.push(OpResult::Written);
            continue;
        }
        let current = match nested.op_responses().into_iter().next() {
            Some(api::TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| {
                let owner = Owner::decode(kv.value()).unwrap_or_else(|| {
                    // The core treats an owner with an empty node as an unknown holder.
                    warn!(
                        key = %String::from_utf8_lossy(kv.key()),
                        "session key with an undecodable owner"
                    );
                    Owner { node: NodeId::new(""), lease: LeaseId(kv.lease()) }
                });
                (owner, Revision(kv.mod_revision()))
            }),
            _ => return TxnAnswer::Failed,
        };
        results.push(OpResult::CompareFailed { current });
    }
    if results.len() != ops {
        return TxnAnswer::Failed;
    }
    TxnAnswer::Applied { revision: Revision(header.revision()), results }
}

/// Revokes `lease`, deleting every key attached to it. `Ok` also when etcd no longer knows
/// the lease (it expired or was revoked already).
pub(crate) async fn revoke(etcd: &Etcd, lease: LeaseId) -> Result<(), CallError> {
    let revoked = etcd
        .call(ETCD_REQUEST_TIMEOUT, |mut client| async move { client.lease_revoke(lease.0).await })
        .await;
    match revoked {
        Ok(_) => Ok(()),
        Err(CallError::Etcd(api::Error::GRpcStatus(status)))
            if status.message().contains(super::lease::LEASE_NOT_FOUND) =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_value_round_trips() {
        let keys = Keys::new("c1");
        let check = |node: &str, link: &str, lease: i64| {
            let link: SocketAddr = link.parse().unwrap();
            let key = keys.node(&NodeId::new(node));
            let value = encode_member(link, LeaseId(lease));
            let member = decode_member(&keys, key.as_bytes(), value.as_bytes()).unwrap();
            assert_eq!(member.node, NodeId::new(node));
            assert_eq!(member.link, link);
            assert_eq!(member.lease, LeaseId(lease));
        };
        check("a", "127.0.0.1:1884", 1);
        check("node-7", "[::1]:9000", 0x694d_9b7c_1a2e_0f31);
        check("x", "10.0.0.1:1", i64::MAX);
    }

    #[test]
    fn malformed_members_are_rejected() {
        let keys = Keys::new("c1");
        let check = |key: &str, value: &str| {
            assert_eq!(decode_member(&keys, key.as_bytes(), value.as_bytes()), None);
        };
        check("/shardmq/c1/nodes/", "127.0.0.1:1 1");
        check("/shardmq/c2/nodes/a", "127.0.0.1:1 1");
        check("/shardmq/c1/nodes/a", "127.0.0.1:1");
        check("/shardmq/c1/nodes/a", "nonsense 1");
        check("/shardmq/c1/nodes/a", "127.0.0.1:1 xyz");
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
    }
}

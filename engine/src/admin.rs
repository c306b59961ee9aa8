//! The admin endpoint (`--admin-listen`): Prometheus `/metrics`, `/health`, `/ready` and the
//! client API (`/api/v1/clients`: list, inspect, kick), served by a small blocking HTTP server
//! on a thread of its own, never on a shard.
//!
//! The admin thread reaches a shard through a bounded channel per shard ([`Shards`]), which a
//! task on that shard ([`answer_requests`]) drains, answering from the shard's state on a
//! one-slot channel the admin thread waits on with a timeout (503 past it). A client's
//! questions go to its home shard only; a listing asks every shard for one bounded page.
//!
//! In a cluster, a client id this node has no session of is asked of every other node over
//! the node links (`cluster/admin_links.rs`), and `?cluster=true` lists every node's sessions:
//! the admin thread hands such a question to a shard, which asks its peers at once and answers
//! with what came within [`CLUSTER_ANSWER_TIMEOUT`] (and which nodes did not answer), so that a
//! node down or slow never holds the API up.
//!
//! The counters it shows are gathered by [`crate::metrics`].

use std::net::SocketAddr;
use std::rc::Rc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use shardmq_io::codec::ProtocolVersion;
use shardmq_io::runtime;
use shardmq_shard::{
    home_shard, ClientDetail, ClientSummary, KickSession, Kicked, Presence, QueueGauges, ShardId,
    WillState,
};

use crate::admin_token::{AdminToken, Credential};
use crate::context::ShardContext;
use crate::metrics::NodeCounters;

// -------------------------------------------------------------------------------------------
// Reaching the shards
// -------------------------------------------------------------------------------------------

/// Requests waiting for one shard at most; past it the API answers 503 (busy).
const SHARD_REQUESTS_MAX: usize = 64;
/// How long the admin thread waits for a shard's answer before answering 503.
const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a scrape waits for the queue gauges of a shard before leaving them out.
const GAUGES_TIMEOUT: Duration = Duration::from_secs(1);
/// Clients per page of `/api/v1/clients` when `limit` is not given, and at most.
const CLIENTS_PAGE_DEFAULT: usize = 100;
const CLIENTS_PAGE_MAX: usize = 10_000;
/// How long a question to the other nodes of a cluster waits for their answers: past it, the
/// API answers with what came, naming the nodes that did not answer.
pub(crate) const CLUSTER_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients per page of the cluster-wide list at most: every node sends its page over a link,
/// and the asking node holds them all.
pub(crate) const CLUSTER_PAGE_MAX: usize = 1_000;

/// A question for the other nodes of the cluster (asked by a shard over its node links).
#[derive(Debug, Clone)]
pub(crate) enum RemoteQuery {
    Detail(String),
    Kick { client_id: String, session: KickSession },
    Page { after: Option<String>, limit: usize, presence: Presence },
}

/// The other nodes' answers to a [`RemoteQuery`].
#[derive(Debug, Default)]
pub(crate) struct RemoteAnswer {
    /// (node id, the API's JSON): for a client, the first node that has it; for a page, each
    /// node's sessions (a JSON array).
    pub(crate) found: Vec<(String, Value)>,
    /// The nodes that did not answer within [`CLUSTER_ANSWER_TIMEOUT`] (link down, or slow).
    pub(crate) unanswered: Vec<String>,
}

/// Starts asking the other nodes (on the shard's own task, so the shard keeps answering its
/// other requests meanwhile); the answer goes to the sender. Given by the wiring
/// (`crate::cluster::ask_peers`), so that this file does not import the cluster's, which
/// imports this one for the JSON the peers answer with.
pub(crate) type AskPeers = fn(Rc<ShardContext>, RemoteQuery, std::sync::mpsc::SyncSender<Answer>);

/// What the admin endpoint knows of the cluster the node is in.
pub struct ClusterView {
    /// This node's id, which the API's answers name.
    pub node: String,
    /// `GET /api/v1/cluster`: the members, this node's view, whether etcd answers.
    pub status: Box<dyn Fn() -> Value + Send>,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView").field("node", &self.node).finish_non_exhaustive()
    }
}

/// What the admin thread asks a shard.
#[derive(Debug)]
pub(crate) enum Query {
    Page {
        after: Option<String>,
        limit: usize,
        presence: Presence,
    },
    Detail(String),
    Kick {
        client_id: String,
        session: KickSession,
    },
    Gauges,
    /// Ask the other nodes of the cluster.
    Remote(RemoteQuery),
}

/// What a shard answers.
#[derive(Debug)]
pub(crate) enum Answer {
    Page(Vec<ClientSummary>),
    Detail(Option<Box<ClientDetail>>),
    Kicked(Option<Kicked>),
    Gauges(QueueGauges),
    Remote(RemoteAnswer),
}

/// A question for a shard, with where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    query: Query,
    reply: std::sync::mpsc::SyncSender<Answer>,
}

/// Lives on the admin thread: a bounded channel to each shard, which a task of that shard
/// ([`answer_requests`]) drains. The answer comes back on a one-slot channel of its own.
#[derive(Debug, Clone)]
pub struct Shards {
    senders: Vec<async_channel::Sender<Request>>,
    /// In a cluster, the node's drain flag (`crate::drain`), raised by `POST /api/v1/drain`,
    /// and the Server Reference its clients are given.
    drain: Option<(Arc<AtomicBool>, ServerReference)>,
}

/// The Server Reference a drain gives its clients, if one was asked for.
type ServerReference = Arc<std::sync::Mutex<Option<String>>>;

/// The receiving end for each shard, in shard order.
pub(crate) type ShardRequests = async_channel::Receiver<Request>;

/// Why a shard gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    /// Its request queue is full.
    Busy,
    /// No answer within the timeout (or the shard is gone).
    TimedOut,
}

impl Shards {
    /// The channels of a node of `shards` shards.
    pub(crate) fn new(shards: usize) -> (Shards, Vec<ShardRequests>) {
        let (senders, receivers) =
            (0..shards).map(|_| async_channel::bounded(SHARD_REQUESTS_MAX)).unzip();
        (Shards { senders, drain: None }, receivers)
    }

    /// In a cluster: the flag `POST /api/v1/drain` raises.
    pub(crate) fn set_drain(
        &mut self,
        flag: Arc<AtomicBool>,
        reference: Arc<std::sync::Mutex<Option<String>>>,
    ) {
        self.drain = Some((flag, reference));
    }

    fn count(&self) -> u16 {
        self.senders.len() as u16
    }

    /// Sends `query` to every shard in `shards` and waits for each answer (up to `timeout`
    /// overall, so a node of many shards does not wait shard after shard).
    fn ask_each(
        &self,
        shards: impl Iterator<Item = ShardId>,
        mut query: impl FnMut() -> Query,
        timeout: Duration,
    ) -> Vec<Result<Answer, Unanswered>> {
        let deadline = Instant::now() + timeout;
        let waiting: Vec<_> = shards
            .map(|shard| {
                let (reply, answer) = std::sync::mpsc::sync_channel(1);
                let request = Request { query: query(), reply };
                match self.senders.get(shard.index()).map(|s| s.try_send(request)) {
                    Some(Ok(())) => Ok(answer),
                    Some(Err(async_channel::TrySendError::Full(_))) => Err(Unanswered::Busy),
                    _ => Err(Unanswered::TimedOut),
                }
            })
            .collect();
        waiting
            .into_iter()
            .map(|answer| {
                let left = deadline.saturating_duration_since(Instant::now());
                answer?.recv_timeout(left).map_err(|_| Unanswered::TimedOut)
            })
            .collect()
    }

    fn ask(&self, shard: ShardId, query: Query) -> Result<Answer, Unanswered> {
        self.ask_within(shard, query, SHARD_ANSWER_TIMEOUT)
    }

    fn ask_within(
        &self,
        shard: ShardId,
        query: Query,
        timeout: Duration,
    ) -> Result<Answer, Unanswered> {
        let mut query = Some(query);
        let answer = self.ask_each(
            std::iter::once(shard),
            || query.take().unwrap_or(Query::Gauges),
            timeout,
        );
        answer.into_iter().next().unwrap_or(Err(Unanswered::TimedOut))
    }

    /// Every shard's queue gauges, `None` for those that did not answer in time.
    fn gauges(&self) -> Vec<Option<QueueGauges>> {
        let all = (0..self.count()).map(ShardId);
        self.ask_each(all, || Query::Gauges, GAUGES_TIMEOUT)
            .into_iter()
            .map(|answer| match answer {
                Ok(Answer::Gauges(gauges)) => Some(gauges),
                _ => None,
            })
            .collect()
    }
}

/// Lives on each shard: answers the admin thread's questions from the shard's state, one per
/// turn, between the shard's other events; a question for the other nodes goes to `ask_peers`.
pub(crate) async fn answer_requests(
    context: Rc<ShardContext>,
    requests: ShardRequests,
    ask_peers: AskPeers,
) {
    while let Ok(Request { query, reply }) = requests.recv().await {
        let now = Instant::now();
        let answer = match query {
            Query::Page { after, limit, presence } => {
                Answer::Page(page_here(&context, after.as_deref(), limit, presence, now))
            }
            Query::Detail(client_id) => {
                Answer::Detail(detail_here(&context, &client_id, now).map(Box::new))
            }
            Query::Kick { client_id, session } => {
                Answer::Kicked(kick_here(&context, &client_id, session, now))
            }
            Query::Gauges => Answer::Gauges(context.state.borrow().queue_gauges()),
            Query::Remote(query) => {
                ask_peers(context.clone(), query, reply);
                continue;
            }
        };
        // The admin thread may have given up waiting; then nobody wants the answer.
        let _ = reply.try_send(answer);
        runtime::yield_if_needed().await;
    }
}

fn page_here(
    context: &ShardContext,
    after: Option<&str>,
    limit: usize,
    presence: Presence,
    now: Instant,
) -> Vec<ClientSummary> {
    let state = context.state.borrow();
    let mut page = state.client_page(after, limit, presence, now);
    for client in &mut page {
        client.peer = client.conn.and_then(|conn| context.peer_addr(conn));
    }
    page
}

fn detail_here(context: &ShardContext, client_id: &str, now: Instant) -> Option<ClientDetail> {
    let state = context.state.borrow();
    let mut detail = state.client_detail(client_id, now);
    if let Some(detail) = &mut detail {
        let conn = detail.summary.conn;
        detail.summary.peer = conn.and_then(|conn| context.peer_addr(conn));
    }
    detail
}

fn kick_here(
    context: &ShardContext,
    client_id: &str,
    session: KickSession,
    now: Instant,
) -> Option<Kicked> {
    let kicked = context.state.borrow_mut().kick(client_id, session, now);
    context.apply_effects();
    kicked
}

/// A peer's question, answered from this shard's state (its home shard for a client, the shard
/// it names for a page) as the API's JSON: `None` when the shard has no session of the client.
pub(crate) fn answer_peer(context: &ShardContext, query: RemoteQuery) -> Option<Value> {
    let now = Instant::now();
    match query {
        RemoteQuery::Detail(client_id) => {
            detail_here(context, &client_id, now).map(|detail| detail_json(&detail, context.id))
        }
        RemoteQuery::Kick { client_id, session } => kick_here(context, &client_id, session, now)
            .map(|kicked| kicked_json(&client_id, &kicked)),
        RemoteQuery::Page { after, limit, presence } => {
            let limit = limit.clamp(1, CLUSTER_PAGE_MAX + 1);
            let page = page_here(context, after.as_deref(), limit, presence, now);
            Some(page.iter().map(|client| summary_json(client, context.id)).collect())
        }
    }
}

// -------------------------------------------------------------------------------------------
// HTTP
// -------------------------------------------------------------------------------------------

/// Whether `path` is the client API's, which the admin token guards (everything under
/// `/api/`, so that a path the API does not know does not answer differently without it).
fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Serves `/metrics`, `/health`, `/ready` and the client API (`/api/v1/...`) on `address`
/// from threads of its own (`admin_http`: bounded, and only for `Host` names a web page cannot
/// rebind: IP addresses, `localhost` and `hosts`). `ready` adds what the node knows beyond its
/// shards (in a cluster: whether it may serve). With `token`, the client API answers only
/// requests that carry it. With `cluster`, the client API answers for every node's clients.
pub fn start(
    address: SocketAddr,
    hosts: Vec<String>,
    token: Option<Arc<AdminToken>>,
    (counters, shards): (Arc<NodeCounters>, Shards),
    ready: impl Fn() -> bool + Send + 'static,
    cluster: Option<ClusterView>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen for the admin endpoint on {address}"))?;
    let bound = listener.local_addr().context("the admin endpoint has no address")?;
    let refusals = Arc::new(crate::admin_http::AdminRefusals::default());
    // One request at a time reaches the shards, as with one thread before: the bound on
    // threads is the HTTP server's, not a licence to ask every shard four times at once.
    let served = std::sync::Mutex::new((counters, shards, ready, refusals.clone(), cluster));
    let refused = refusals.clone();
    let handle = move |request: &crate::admin_http::Request| {
        use crate::admin_http::{Method, Response};
        if request.method == Method::Get && request.path == "/health" {
            // Never behind a slow question to the shards: a liveness probe must not fail
            // because another request waits for a busy shard.
            return Response::text(200, "ok\n");
        }
        // Checked before the shards' lock: a request without the token never waits behind
        // one that has it, and never reaches a shard.
        if let Some(token) = token.as_deref().filter(|_| is_api(&request.path)) {
            if let Some(refusal) = refuse_unauthorized(token, request) {
                refused.unauthorized.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return refusal;
            }
        }
        let served = served.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (counters, shards, ready, refusals, cluster) = &*served;
        let node = Node { shards, cluster: cluster.as_ref() };
        answer(counters, &node, ready, refusals, request)
    };
    crate::admin_http::serve(listener, hosts, refusals, Arc::new(handle))
        .context("cannot start the admin endpoint's threads")?;
    Ok(bound)
}

/// The start-up warning for a client API that anyone who reaches `address` can use: no admin
/// token, and an address that is not loopback (so other hosts may reach it). `None` when there
/// is nothing to warn of.
pub(crate) fn open_api_warning(address: SocketAddr, token: bool) -> Option<String> {
    (!token && !address.ip().is_loopback()).then(|| {
        format!(
            "the admin endpoint listens on {address} without `admin_token_file`: anyone who \
             can reach it can list and disconnect clients through /api/v1 (set \
             `admin_token_file`, or bind `admin_listen` to loopback)"
        )
    })
}

/// The challenge of a 401 to a request that sent no bearer token.
const CHALLENGE: &[(&str, &str)] = &[("WWW-Authenticate", "Bearer realm=\"shardmq admin\"")];
/// The challenge of a 401 to a request whose bearer token is wrong (RFC 6750's error code).
const CHALLENGE_INVALID: &[(&str, &str)] =
    &[("WWW-Authenticate", "Bearer realm=\"shardmq admin\", error=\"invalid_token\"")];

/// The 401 for a client API request without the node's token (`None`: it has it). The
/// `WWW-Authenticate` challenge says which scheme to use, and whether the token sent was wrong
/// or none was sent, as the JSON error does for a person reading it.
fn refuse_unauthorized(
    token: &AdminToken,
    request: &crate::admin_http::Request,
) -> Option<crate::admin_http::Response> {
    let (headers, message) = match token.check(request.authorization.as_deref()) {
        Credential::Valid => return None,
        Credential::Missing => (
            CHALLENGE,
            "this API needs the admin token: send `Authorization: Bearer <token>` with the \
             token in the node's admin_token_file",
        ),
        Credential::Wrong => (
            CHALLENGE_INVALID,
            "the bearer token is not this node's admin token (admin_token_file)",
        ),
    };
    Some(crate::admin_http::Response {
        status: 401,
        body: format!("{}\n", json!({ "error": message })),
        content_type: "application/json",
        headers,
    })
}

/// What the client API asks: this node's shards, and the cluster it may be in.
struct Node<'a> {
    shards: &'a Shards,
    cluster: Option<&'a ClusterView>,
}

/// The answer to one admin request.
fn answer(
    counters: &NodeCounters,
    node: &Node,
    ready: &impl Fn() -> bool,
    refusals: &crate::admin_http::AdminRefusals,
    request: &crate::admin_http::Request,
) -> crate::admin_http::Response {
    use crate::admin_http::{Method, Response};
    let (status, body, content_type) = match (request.method, request.path.as_str()) {
        (Method::Get, "/metrics") => (
            200,
            counters.render(&node.shards.gauges()) + &refusals.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (Method::Get, "/health") => (200, "ok\n".to_owned(), "text/plain"),
        (Method::Get, "/ready") if counters.ready() && ready() => {
            (200, "ready\n".to_owned(), "text/plain")
        }
        (Method::Get, "/ready") => (503, "not ready\n".to_owned(), "text/plain"),
        (method, path) if is_api(path) => {
            let (status, body) = api(node, method, path, &request.query);
            (status, format!("{body}\n"), "application/json")
        }
        _ => (404, "not found\n".to_owned(), "text/plain"),
    };
    Response { status, body, content_type, headers: &[] }
}

/// A JSON error body.
fn error(status: u16, message: impl Into<String>) -> (u16, Value) {
    (status, json!({ "error": message.into() }))
}

fn unanswered(shard: ShardId, why: Unanswered) -> (u16, Value) {
    match why {
        Unanswered::Busy => error(503, format!("shard {shard} is busy with other requests")),
        Unanswered::TimedOut => error(
            503,
            format!("shard {shard} did not answer within {}s", SHARD_ANSWER_TIMEOUT.as_secs()),
        ),
    }
}

/// The query string's parameters, decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Params {
        let pairs = query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        });
        Params(pairs.collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// The client API: `GET /api/v1/clients` (and `/api/v1/sessions`; `?cluster=true`: every
/// node's), `GET` and `DELETE` `/api/v1/clients/{client_id}` (any node's client), and `GET
/// /api/v1/cluster`.
fn api(node: &Node, method: crate::admin_http::Method, path: &str, query: &str) -> (u16, Value) {
    use crate::admin_http::Method;
    let params = Params::parse(query);
    let rest = path.strip_prefix("/api/v1/");
    match (method, rest) {
        (Method::Get, Some("clients" | "sessions")) => list_api(node, &params),
        (method, Some(rest)) if rest.starts_with("clients/") => {
            let client_id = percent_decode(&rest["clients/".len()..]);
            client_api(node, method, client_id, &params)
        }
        (Method::Get, Some("cluster")) => match node.cluster {
            Some(cluster) => (200, (cluster.status)()),
            None => error(404, "this node is not in a cluster (no `cluster` configured)"),
        },
        (_, Some("clients" | "sessions" | "cluster")) => error(405, "use GET"),
        (method, Some("drain")) => drain(node.shards, method, params.get("server_reference")),
        _ => error(404, "no such API path"),
    }
}

/// `POST /api/v1/drain` starts handing every session of the node to the other nodes of its
/// cluster, after which the node stops (`crate::drain`); `GET` says whether it is draining.
fn drain(
    shards: &Shards,
    method: crate::admin_http::Method,
    server_reference: Option<&str>,
) -> (u16, Value) {
    let Some((flag, reference)) = &shards.drain else {
        let why = "this node is not in a cluster: there is no other node to hand its sessions \
                   to (stop it with SIGTERM; its sessions stay on its disk)";
        return error(409, why);
    };
    match method {
        crate::admin_http::Method::Post => {
            if let (Some(given), Ok(mut kept)) = (server_reference, reference.lock()) {
                if given.is_empty() || given.len() > 1024 {
                    return error(400, "server_reference must be 1 to 1024 bytes");
                }
                *kept = Some(given.to_string());
            }
            let already = flag.swap(true, Ordering::Relaxed);
            tracing::warn!("drain asked for through the admin API: handing every session to the other nodes, then stopping");
            (200, json!({ "draining": true, "already": already }))
        }
        crate::admin_http::Method::Get => {
            (200, json!({ "draining": flag.load(Ordering::Relaxed) }))
        }
        _ => error(405, "use POST (or GET)"),
    }
}

/// `GET /api/v1/clients`: this node's page, or with `cluster=true` the cluster's.
fn list_api(node: &Node, params: &Params) -> (u16, Value) {
    let cluster = match params.get("cluster") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error(400, "cluster must be true or false"),
    };
    let max = if cluster { CLUSTER_PAGE_MAX } else { CLIENTS_PAGE_MAX };
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => CLIENTS_PAGE_DEFAULT,
        Some(Ok(limit)) if (1..=max).contains(&limit) => limit,
        Some(_) if cluster => {
            return error(400, format!("limit must be from 1 to {max} with cluster=true"))
        }
        Some(_) => return error(400, format!("limit must be from 1 to {max}")),
    };
    let presence = match params.get("connected") {
        None => Presence::Any,
        Some("true") => Presence::Connected,
        Some("false") => Presence::Offline,
        Some(_) => return error(400, "connected must be true or false"),
    };
    let after = params.get("after");
    let here = match local_page(node.shards, after, limit, presence) {
        Ok(page) => page,
        Err(refusal) => return refusal,
    };
    let me = node.cluster.map(|cluster| cluster.node.as_str());
    let mut page: Vec<(Option<&str>, Value)> = here.into_iter().map(|c| (me, c)).collect();
    if !cluster {
        return (200, cut_page(page, limit, false));
    }
    let query = RemoteQuery::Page { after: after.map(str::to_owned), limit: limit + 1, presence };
    let remote = match ask_remote(node, ShardId(0), query) {
        Ok(remote) => remote,
        Err(refusal) => return refusal,
    };
    for (peer, clients) in &remote.found {
        let clients = clients.as_array().map(Vec::as_slice).unwrap_or_default();
        page.extend(clients.iter().map(|client| (Some(peer.as_str()), client.clone())));
    }
    let mut body = cut_page(page, limit, true);
    body["not_answered"] = json!(remote.unanswered);
    (200, body)
}

/// Asks the other nodes through shard `shard` (none when the node is not in a cluster).
fn ask_remote(
    node: &Node,
    shard: ShardId,
    query: RemoteQuery,
) -> Result<RemoteAnswer, (u16, Value)> {
    if node.cluster.is_none() {
        return Ok(RemoteAnswer::default());
    }
    let timeout = CLUSTER_ANSWER_TIMEOUT + SHARD_ANSWER_TIMEOUT;
    match node.shards.ask_within(shard, Query::Remote(query), timeout) {
        Ok(Answer::Remote(answer)) => Ok(answer),
        Ok(_) => Err(error(500, "unexpected answer")),
        Err(why) => Err(unanswered(shard, why)),
    }
}

/// `GET` or `DELETE` `/api/v1/clients/{client_id}`: this node's session of it, else the first
/// other node's that has one.
fn client_api(
    node: &Node,
    method: crate::admin_http::Method,
    client_id: String,
    params: &Params,
) -> (u16, Value) {
    let shards = node.shards;
    let home = home_shard(&client_id, shards.count());
    let (local, remote) = match method {
        crate::admin_http::Method::Get => {
            match shards.ask(home, Query::Detail(client_id.clone())) {
                Ok(Answer::Detail(detail)) => (
                    detail.map(|detail| detail_json(&detail, home)),
                    RemoteQuery::Detail(client_id.clone()),
                ),
                Ok(_) => return error(500, "unexpected answer"),
                Err(why) => return unanswered(home, why),
            }
        }
        crate::admin_http::Method::Delete => {
            let session = match params.get("clean") {
                None | Some("false") => KickSession::Keep,
                Some("true") => KickSession::Discard,
                Some(_) => return error(400, "clean must be true or false"),
            };
            let query = Query::Kick { client_id: client_id.clone(), session };
            match shards.ask(home, query) {
                Ok(Answer::Kicked(kicked)) => (
                    kicked.map(|kicked| kicked_json(&client_id, &kicked)),
                    RemoteQuery::Kick { client_id: client_id.clone(), session },
                ),
                Ok(_) => return error(500, "unexpected answer"),
                Err(why) => return unanswered(home, why),
            }
        }
        _ => return error(405, "use GET or DELETE"),
    };
    let me = node.cluster.map(|cluster| cluster.node.clone());
    if let Some(mut found) = local {
        found["node"] = json!(me);
        return (200, found);
    }
    let remote = match ask_remote(node, home, remote) {
        Ok(remote) => remote,
        Err(refusal) => return refusal,
    };
    match remote.found.into_iter().next() {
        Some((peer, mut found)) => {
            found["node"] = json!(peer);
            found["not_answered"] = json!(remote.unanswered);
            (200, found)
        }
        None if me.is_none() => {
            error(404, format!("no session for client id {client_id:?} on this node"))
        }
        None => {
            let (status, mut body) = error(
                404,
                format!("no session for client id {client_id:?} on any node that answered"),
            );
            body["not_answered"] = json!(remote.unanswered);
            (status, body)
        }
    }
}

fn kicked_json(client_id: &str, kicked: &Kicked) -> Value {
    json!({
        "client_id": client_id,
        "disconnected": kicked.disconnected,
        "session_discarded": kicked.session_ended,
    })
}

/// This node's sessions past `after` in client id order (the API's JSON, one more than `limit`
/// when there are more): each shard's page, merged.
fn local_page(
    shards: &Shards,
    after: Option<&str>,
    limit: usize,
    presence: Presence,
) -> Result<Vec<Value>, (u16, Value)> {
    let all = (0..shards.count()).map(ShardId);
    // One more than the page from each shard: when the rest are all on one shard, its extra
    // one says there is a next page.
    let query = || Query::Page { after: after.map(str::to_owned), limit: limit + 1, presence };
    let mut page: Vec<(ClientSummary, ShardId)> = Vec::new();
    for (index, answer) in shards.ask_each(all, query, SHARD_ANSWER_TIMEOUT).into_iter().enumerate()
    {
        let shard = ShardId(index as u16);
        match answer {
            Ok(Answer::Page(clients)) => page.extend(clients.into_iter().map(|c| (c, shard))),
            Ok(_) => return Err(error(500, "unexpected answer")),
            Err(why) => return Err(unanswered(shard, why)),
        }
    }
    page.sort_by(|(a, _), (b, _)| a.client_id.cmp(&b.client_id));
    page.truncate(limit + 1);
    Ok(page.iter().map(|(client, shard)| summary_json(client, *shard)).collect())
}

/// One page of sessions (each with the node it is on, when in a cluster) in client id order,
/// cut to `limit`; `next_after` is the cursor of the next page (absent on the last one).
/// `with_node`: each entry names its node (the cluster-wide list).
fn cut_page(mut page: Vec<(Option<&str>, Value)>, limit: usize, with_node: bool) -> Value {
    let id = |client: &Value| client["client_id"].as_str().unwrap_or_default().to_owned();
    page.sort_by_key(|(_, client)| id(client));
    let more = page.len() > limit;
    page.truncate(limit);
    let next_after = page.last().filter(|_| more).map(|(_, last)| id(last));
    let clients: Vec<Value> = page
        .into_iter()
        .map(|(node, mut client)| {
            if with_node || node.is_some() {
                client["node"] = json!(node);
            }
            client
        })
        .collect();
    json!({ "clients": clients, "next_after": next_after })
}

fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

/// Unix time (seconds) `ago` before now.
fn unix_secs_ago(ago: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    now.saturating_sub(ago).as_secs()
}

fn summary_json(client: &ClientSummary, shard: ShardId) -> Value {
    json!({
        "client_id": client.client_id.to_string(),
        "connected": client.conn.is_some(),
        "peer_address": client.peer.map(|peer| peer.to_string()),
        "shard": shard.0,
        "protocol": client.protocol.map(protocol_name),
        "username": client.username,
        "keepalive_secs": client.keepalive_secs,
        "session_expiry_secs": client.session_expiry_secs,
        "connected_at": client.connected_for.map(unix_secs_ago),
        "disconnected_at": client.offline_for.map(unix_secs_ago),
        "subscriptions": client.subscriptions,
        "inflight": client.inflight_out,
        "queued": client.queued_messages,
    })
}

fn detail_json(detail: &ClientDetail, shard: ShardId) -> Value {
    let mut value = summary_json(&detail.summary, shard);
    let subscriptions: Vec<Value> = detail
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "filter": s.filter.to_string(),
                "qos": s.qos as u8,
                "no_local": s.no_local,
                "retain_as_published": s.retain_as_published,
                "retain_handling": s.retain_handling as u8,
                "subscription_identifier": s.identifier,
            })
        })
        .collect();
    let will = match detail.will {
        WillState::None => "none",
        WillState::Connected => "set",
        WillState::Delayed => "delayed",
    };
    if let Value::Object(map) = &mut value {
        map.insert("subscription_count".into(), json!(detail.summary.subscriptions));
        map.insert("subscriptions".into(), json!(subscriptions));
        map.insert("queued_bytes".into(), json!(detail.queued_bytes));
        map.insert("inflight_in".into(), json!(detail.inflight_in));
        map.insert("inflight_out".into(), json!(detail.summary.inflight_out));
        map.insert("output_buffer_bytes".into(), json!(detail.output_bytes));
        map.insert("will".into(), json!(will));
        map.insert("paused".into(), json!(detail.paused));
        map.insert("throttled".into(), json!(detail.throttled));
    }
    value
}

/// Decodes `%XX` escapes (and `+` as a space in query strings is not assumed: client ids may
/// contain `+`). Invalid escapes stay as they are; invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_client_api_is_warned_of_only_off_loopback() {
        let address = |text: &str| text.parse::<SocketAddr>().expect("an address");
        assert!(open_api_warning(address("127.0.0.1:9883"), false).is_none());
        assert!(open_api_warning(address("[::1]:9883"), false).is_none());
        assert!(open_api_warning(address("10.0.0.5:9883"), true).is_none());
        let warning = open_api_warning(address("0.0.0.0:9883"), false).expect("a warning");
        assert!(warning.contains("0.0.0.0:9883") && warning.contains("admin_token_file"));
        assert!(open_api_warning(address("10.0.0.5:9883"), false).is_some());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("plain+id"), "plain+id");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}

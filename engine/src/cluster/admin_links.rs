//! The admin API across the cluster: a node asked about a client it has no session of asks
//! every peer at once over the node links (`AdminQuery`, to the home shard of the client id
//! there), and takes the first that has it; a cluster-wide list asks each shard of each peer for
//! its page. Whatever has not come within [`CLUSTER_ANSWER_TIMEOUT`] is reported as not
//! answered rather than waited for: a node down or slow must not hold the operator's API up.
//! Answers are the admin API's JSON as the owner renders it, so every node shows any client
//! the same way.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use futures_lite::future;
use serde_json::{json, Value};
use shardmq_cluster::frame::{AdminAnswer, AdminQuery, Body};
use shardmq_io::runtime;
use shardmq_shard::{KickSession, PeerNode, Presence};

use super::state::{AdminAsk, ShardCluster};
use crate::admin::{
    answer_peer, Answer, RemoteAnswer, RemoteQuery, CLUSTER_ANSWER_TIMEOUT, CLUSTER_PAGE_MAX,
};
use crate::context::ShardContext;

/// The largest answer a node sends or takes (its JSON): a page of [`CLUSTER_PAGE_MAX`] sessions
/// is well under it; a client with so many subscriptions that its detail is not is answered
/// with an error in its place, rather than a frame that fills the link.
const ADMIN_DETAIL_BYTES_MAX: usize = 4 << 20;

/// Asks the other nodes `query` from this shard, in a task of its own; the answer goes to
/// `reply` (the admin thread, which waits a little longer than [`CLUSTER_ANSWER_TIMEOUT`]).
pub(crate) fn ask_peers(context: Rc<ShardContext>, query: RemoteQuery, reply: SyncSender<Answer>) {
    runtime::spawn_local(async move {
        let answer = match context.cluster.clone() {
            Some(cluster) => gather(&context, &cluster, query).await,
            None => RemoteAnswer::default(),
        };
        // The admin thread may have given up waiting.
        let _ = reply.try_send(Answer::Remote(answer));
    });
}

/// Sends `query` to every peer (every shard of each for a page), waits for the answers until
/// the first that has the client (or all, for a page) or [`CLUSTER_ANSWER_TIMEOUT`].
async fn gather(
    context: &ShardContext,
    cluster: &ShardCluster,
    query: RemoteQuery,
) -> RemoteAnswer {
    let ask = Rc::new(AdminAsk::default());
    let list = matches!(query, RemoteQuery::Page { .. });
    let peers: Vec<PeerNode> = cluster.links.borrow().keys().copied().collect();
    let mut asked: Vec<(PeerNode, Vec<u64>)> = Vec::new();
    let mut down = Vec::new();
    for peer in peers {
        // One page per shard of the peer: its count is known once a link of it said hello.
        let shards = if list { cluster.node.peer_shards(peer).unwrap_or(0) } else { 1 };
        let mut requests = Vec::new();
        for shard in 0..shards {
            let request = cluster.next_request();
            cluster.admin_asks.borrow_mut().insert(request, ask.clone());
            requests.push(request);
            let frame = query_frame(&query, request, context.id.0, shard);
            if !cluster.send(peer, Body::AdminQuery(Box::new(frame))) {
                break;
            }
        }
        let sent = shards > 0 && requests.len() == usize::from(shards);
        if sent {
            asked.push((peer, requests));
        } else {
            down.push(peer);
            for request in requests {
                cluster.admin_asks.borrow_mut().remove(&request);
            }
        }
    }
    let expected: usize = asked.iter().map(|(_, requests)| requests.len()).sum();
    let deadline = Instant::now() + CLUSTER_ANSWER_TIMEOUT;
    loop {
        let done = {
            let answers = ask.answers.borrow();
            answers.len() >= expected || (!list && answers.values().any(|a| a.found))
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if done || left.is_zero() {
            break;
        }
        future::or(ask.signal.wait(), runtime::sleep(left)).await;
    }
    for request in asked.iter().flat_map(|(_, requests)| requests) {
        cluster.admin_asks.borrow_mut().remove(request);
    }
    let answers = std::mem::take(&mut *ask.answers.borrow_mut());
    collect(cluster, asked, &down, &answers, list)
}

/// The answers by node: a peer counts as answered only when every request to it was.
fn collect(
    cluster: &ShardCluster,
    asked: Vec<(PeerNode, Vec<u64>)>,
    down: &[PeerNode],
    answers: &HashMap<u64, AdminAnswer>,
    list: bool,
) -> RemoteAnswer {
    let name = |peer: &PeerNode| {
        cluster.node.name(*peer).map_or_else(|| format!("peer {}", peer.0), |node| node.to_string())
    };
    let mut result =
        RemoteAnswer { found: Vec::new(), unanswered: down.iter().map(name).collect() };
    for (peer, requests) in asked {
        let node = name(&peer);
        let mut values = Vec::new();
        let mut whole = true;
        for request in &requests {
            match answers.get(request).map(|answer| answer_value(answer, &node)) {
                Some(Ok(Some(value))) => values.push(value),
                Some(Ok(None)) => {}
                Some(Err(())) | None => whole = false,
            }
        }
        if !whole {
            result.unanswered.push(node.clone());
        }
        if list && whole {
            let all = values.into_iter().flat_map(|page| match page {
                Value::Array(clients) => clients,
                _ => Vec::new(),
            });
            result.found.push((node, Value::Array(all.collect())));
        } else if let Some(value) = values.into_iter().next().filter(|_| !list) {
            result.found.push((node, value));
        }
    }
    result
}

/// A peer's answer as JSON (`None`: it has no such client); `Err` for one too large or not
/// JSON, which is logged and counted as no answer.
fn answer_value(answer: &AdminAnswer, node: &str) -> Result<Option<Value>, ()> {
    if !answer.found {
        return Ok(None);
    }
    let detail = answer.detail.as_deref().unwrap_or_default();
    if detail.len() > ADMIN_DETAIL_BYTES_MAX {
        tracing::warn!(peer = %node, bytes = detail.len(), "ignoring an admin answer over {ADMIN_DETAIL_BYTES_MAX} bytes");
        return Err(());
    }
    serde_json::from_str(detail).map(Some).map_err(|error| {
        tracing::warn!(peer = %node, "ignoring an admin answer that is not JSON: {error}");
    })
}

fn query_frame(query: &RemoteQuery, request: u64, reply_shard: u16, shard: u16) -> AdminQuery {
    let mut frame = AdminQuery {
        request,
        reply_shard,
        client_id: None,
        kick: false,
        clean: false,
        list: false,
        shard,
        limit: 0,
        presence: 0,
    };
    match query {
        RemoteQuery::Detail(client_id) => frame.client_id = Some(client_id.clone()),
        RemoteQuery::Kick { client_id, session } => {
            frame.client_id = Some(client_id.clone());
            frame.kick = true;
            frame.clean = matches!(session, KickSession::Discard);
        }
        RemoteQuery::Page { after, limit, presence } => {
            frame.client_id = after.clone();
            frame.list = true;
            frame.limit = u32::try_from(*limit).unwrap_or(u32::MAX);
            frame.presence = match presence {
                Presence::Any => 0,
                Presence::Connected => 1,
                Presence::Offline => 2,
            };
        }
    }
    frame
}

/// What a peer's query asks (`None` for a client query without a client id, a malformed one).
fn remote_query(query: AdminQuery) -> Option<RemoteQuery> {
    if query.list {
        let presence = match query.presence {
            1 => Presence::Connected,
            2 => Presence::Offline,
            _ => Presence::Any,
        };
        let limit =
            usize::try_from(query.limit).unwrap_or(usize::MAX).clamp(1, CLUSTER_PAGE_MAX + 1);
        let after = query.client_id.filter(|id| !id.is_empty());
        return Some(RemoteQuery::Page { after, limit, presence });
    }
    let client_id = query.client_id?;
    Some(match (query.kick, query.clean) {
        (false, _) => RemoteQuery::Detail(client_id),
        (true, clean) => {
            let session = if clean { KickSession::Discard } else { KickSession::Keep };
            RemoteQuery::Kick { client_id, session }
        }
    })
}

/// A peer's admin API asks this shard (the client's home shard, or the shard of the page):
/// answered from the shard's state on this shard's link to it.
pub(super) fn query_arrived(
    context: &ShardContext,
    cluster: &ShardCluster,
    peer: PeerNode,
    query: AdminQuery,
) {
    let (request, reply_shard) = (query.request, query.reply_shard);
    let detail = match remote_query(query) {
        Some(remote) => answer_peer(context, remote).map(|value| value.to_string()),
        None => {
            tracing::warn!(shard = %context.id, "ignoring an admin query without a client id");
            None
        }
    };
    let detail = detail.map(|text| {
        if text.len() <= ADMIN_DETAIL_BYTES_MAX {
            return text;
        }
        tracing::warn!(shard = %context.id, bytes = text.len(), "an admin answer is too large to send");
        json!({ "error": format!("the answer is over {ADMIN_DETAIL_BYTES_MAX} bytes") }).to_string()
    });
    let answer = AdminAnswer { request, shard: reply_shard, found: detail.is_some(), detail };
    // Lost with the link: the asking node reports this one as not answering.
    cluster.send(peer, Body::AdminAnswer(Box::new(answer)));
}

/// A peer answered one of this shard's admin questions.
pub(super) fn answer_arrived(cluster: &ShardCluster, answer: AdminAnswer) {
    let Some(ask) = cluster.admin_asks.borrow().get(&answer.request).cloned() else { return };
    ask.answers.borrow_mut().insert(answer.request, answer);
    ask.signal.notify();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(client_id: Option<&str>, list: bool, limit: u32, presence: u8) -> AdminQuery {
        AdminQuery {
            request: 1,
            reply_shard: 0,
            client_id: client_id.map(str::to_owned),
            kick: false,
            clean: false,
            list,
            shard: 0,
            limit,
            presence,
        }
    }

    #[test]
    fn a_malformed_query_is_bounded_or_refused() {
        // No client id: nothing to answer about.
        assert!(remote_query(query(None, false, 0, 0)).is_none());
        // A page's limit is kept within the cluster page, its presence read as "any".
        let page = |limit, presence| match remote_query(query(Some(""), true, limit, presence)) {
            Some(RemoteQuery::Page { after, limit, presence }) => (after, limit, presence),
            other => panic!("not a page: {other:?}"),
        };
        assert_eq!(page(0, 9), (None, 1, Presence::Any));
        assert_eq!(page(u32::MAX, 2), (None, CLUSTER_PAGE_MAX + 1, Presence::Offline));
        let mut kick = query(Some("c"), false, 0, 0);
        (kick.kick, kick.clean) = (true, true);
        assert!(matches!(
            remote_query(kick),
            Some(RemoteQuery::Kick { session: KickSession::Discard, .. })
        ));
    }

    #[test]
    fn an_answer_too_large_or_not_json_counts_as_none() {
        let answer = |found, detail: String| AdminAnswer {
            request: 1,
            shard: 0,
            found,
            detail: Some(detail),
        };
        assert_eq!(answer_value(&answer(false, "x".into()), "n1"), Ok(None));
        assert_eq!(
            answer_value(&answer(true, "{\"a\":1}".into()), "n1"),
            Ok(Some(json!({"a": 1})))
        );
        assert_eq!(answer_value(&answer(true, "{".into()), "n1"), Err(()));
        let huge = format!("\"{}\"", "x".repeat(ADMIN_DETAIL_BYTES_MAX));
        assert_eq!(answer_value(&answer(true, huge), "n1"), Err(()));
    }
}

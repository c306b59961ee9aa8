//! Retained messages over node links: fetches of large messages for subscribes, pulls of the
//! ones this node now holds, and the catch-up of retained writes when a link comes up (see
//! `shardmq_shard`'s `retained_sync` module for the protocol and its invariants).

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use shardmq_cluster::frame::{Body, RetainedDigest, RetainedFetch, RetainedFetched, RetainedIndex};
use shardmq_io::codec::ByteString;
use shardmq_io::runtime;
use shardmq_node::retained;
use shardmq_shard::{retained_shard, PeerNode, ShardId, SharedMessage};

use super::state::{Awaited, ClusterItem, LinkPeer, OutLink, ShardCluster, RETAINED_FETCH_TIMEOUT};
use crate::context::{MeshItem, ShardContext};

/// A link to `peer` is up: the retained catch-up due on it (`shardmq_node::retained`).
pub(super) fn sync_out(
    context: &ShardContext,
    cluster: &ShardCluster,
    link: &OutLink,
    peer: PeerNode,
) {
    let state = context.state.borrow();
    let peer_shards = cluster.node.peer_shards(peer);
    let names = |node| cluster.node.node_id(node);
    let mut encoder = cluster.encoder.borrow_mut();
    let mut out = link.out.borrow_mut();
    let clock = &cluster.clock;
    let now = Instant::now();
    let mut retained = link.retained.borrow_mut();
    retained.sync(&state, peer, peer_shards, clock, names, &mut encoder, &mut out, now);
}

/// A retained frame from a link: index, fetch, fetched, digest or versions.
pub(super) fn frame_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: &LinkPeer,
    body: Body,
) {
    match body {
        Body::RetainedIndex(index) => {
            let topics = index.topics.unwrap_or_default().into_iter().map(ByteString::from);
            let versions =
                index.versions.unwrap_or_default().into_iter().chain(std::iter::repeat(0));
            context.state.borrow_mut().retained_held_by(from.peer, topics.zip(versions).collect());
        }
        Body::RetainedFetch(fetch) => {
            let partition = retained_shard(&fetch.topic, context.shards);
            if partition == context.id {
                answer_fetch(context, cluster, from.peer, &fetch);
            } else {
                let item = ClusterItem::Fetch { peer: from.peer, fetch };
                context.to_peer(partition, MeshItem::Cluster(item));
            }
        }
        Body::RetainedFetched(fetched) => {
            let shard = ShardId(fetched.shard);
            if shard == context.id {
                fetched_arrived(cluster, *fetched);
            } else if shard.0 < context.shards {
                context.to_peer(shard, MeshItem::Cluster(ClusterItem::Fetched(fetched)));
            }
        }
        Body::RetainedDigest(digest) => digest_arrived(context, cluster, from, &digest),
        Body::RetainedVersions(versions) => {
            let shard = ShardId(versions.shard);
            let listed = retained::listed_versions(*versions);
            let Some((buckets, entries)) = listed.filter(|_| shard.0 < context.shards) else {
                tracing::warn!(shard = %context.id, peer = %from.node, "ignoring a malformed retained version list");
                return;
            };
            let item = ClusterItem::RetainedVersions {
                peer: from.peer,
                peer_shards: from.shards,
                peer_shard: from.origin,
                buckets,
                entries,
            };
            if shard == context.id {
                versions_arrived(context, cluster, item);
            } else {
                context.to_peer(shard, MeshItem::Cluster(item));
            }
        }
        _ => {}
    }
}

/// A peer shard's digest: each of this node's shards compares its part.
fn digest_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: &LinkPeer,
    digest: &RetainedDigest,
) {
    let digest_asks_back = digest.ask_back;
    let Some(parts) = retained::split_digest(digest, context.shards) else {
        // Cut for another shard count (this node restarted with another): the peer's next
        // digest (within a minute) is cut for the count its registry has now.
        tracing::debug!(shard = %context.id, peer = %from.node, "ignoring a retained digest for another shard count");
        return;
    };
    for (shard, digest) in parts {
        let item = ClusterItem::RetainedDigest {
            peer: from.peer,
            peer_shards: from.shards,
            peer_shard: from.origin,
            digest,
            ask_back: digest_asks_back,
        };
        if shard == context.id {
            compare_digest(context, cluster, item);
        } else {
            context.to_peer(shard, MeshItem::Cluster(item));
        }
    }
}

/// Compares a peer shard's digest with this shard's marks and sends the peer this shard's
/// versions of the buckets that differ, on this shard's own link to it.
pub(super) fn compare_digest(context: &ShardContext, cluster: &ShardCluster, item: ClusterItem) {
    let ClusterItem::RetainedDigest { peer, peer_shards, peer_shard, digest, ask_back } = item
    else {
        return;
    };
    if ask_back {
        // The peer's link just came up: this shard's digest goes again, so that the peer
        // answers it now that its links are up (an earlier answer may have been lost).
        if let Some(link) = cluster.links.borrow().get(&peer) {
            link.retained.borrow_mut().send_digest_again();
            link.signal.notify();
        }
    }
    let frames =
        retained::versions_frames(&context.state.borrow(), peer_shards, peer_shard, &digest);
    if !frames.is_empty() {
        tracing::debug!(shard = %context.id, frames = frames.len(), "retained versions differ from a peer's");
    }
    for frame in frames {
        cluster.send(peer, Body::RetainedVersions(Box::new(frame)));
    }
}

/// A peer listed its versions of some buckets: what this shard has newer is queued to push.
pub(super) fn versions_arrived(context: &ShardContext, cluster: &ShardCluster, item: ClusterItem) {
    let ClusterItem::RetainedVersions { peer, peer_shards, peer_shard, buckets, entries } = item
    else {
        return;
    };
    let push = context.state.borrow().retained_to_push(peer_shards, peer_shard, &buckets, &entries);
    if push.is_empty() {
        return;
    }
    tracing::debug!(shard = %context.id, topics = push.len(), "pushing retained writes a peer missed");
    let links = cluster.links.borrow();
    let Some(link) = links.get(&peer).filter(|link| link.state.borrow().is_up()) else { return };
    link.retained.borrow_mut().push(push);
    link.signal.notify();
}

/// Fetches the large retained messages this shard's subscribes need from the nodes that keep
/// them, each in a task of its own.
pub async fn retained_fetcher(context: Rc<ShardContext>) {
    let Some(cluster) = context.cluster.clone() else { return };
    while !context.stopping.get() {
        let queued = std::mem::take(&mut *cluster.fetch_queue.borrow_mut());
        if queued.is_empty() {
            future::or(cluster.fetch_signal.wait(), context.stop_signal.wait()).await;
            continue;
        }
        for (token, topic, holders) in queued {
            runtime::spawn_local(fetch_one(
                context.clone(),
                cluster.clone(),
                token,
                topic,
                holders,
            ));
        }
    }
}

/// Pulls, one at a time, the large retained messages this node became a holder of, and tells
/// the peers it keeps each one it got.
pub async fn retained_puller(context: Rc<ShardContext>) {
    let Some(cluster) = context.cluster.clone() else { return };
    while !context.stopping.get() {
        let next = cluster.pull_queue.borrow_mut().pop_front();
        let Some((topic, holders)) = next else {
            future::or(cluster.pull_signal.wait(), context.stop_signal.wait()).await;
            continue;
        };
        let pulled = fetch_from(&context, &cluster, &topic, &holders).await;
        if pulled.is_none() {
            retry_pull(&context, &cluster, topic.clone(), holders);
        } else {
            cluster.pull_attempts.borrow_mut().remove(&topic);
        }
        let kept = context.state.borrow_mut().retained_pulled(&topic, pulled, Instant::now());
        context.apply_effects();
        if let Some(version) = kept {
            let index = RetainedIndex {
                topics: Some(vec![topic.to_string()]),
                versions: Some(vec![version]),
            };
            let peers: Vec<PeerNode> = cluster.links.borrow().keys().copied().collect();
            for peer in peers {
                cluster.send(peer, Body::RetainedIndex(Box::new(index.clone())));
            }
        }
    }
}

/// Pulls of one topic that no holder answered, tried again after 1, 2, 4, 8 s (a holder slow
/// to answer under load, or a link still coming up); past them the pull waits for the next
/// change of the membership or of the message's holders, which asks for it again.
const PULL_ATTEMPTS_MAX: u32 = 5;
const PULL_RETRY_FIRST: Duration = Duration::from_secs(1);

/// A pull no holder answered: queued again after a pause, at most [`PULL_ATTEMPTS_MAX`] times.
fn retry_pull(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    topic: ByteString,
    holders: Vec<PeerNode>,
) {
    let attempt = {
        let mut attempts = cluster.pull_attempts.borrow_mut();
        let attempt = attempts.entry(topic.clone()).or_insert(0);
        *attempt += 1;
        *attempt
    };
    if attempt >= PULL_ATTEMPTS_MAX {
        cluster.pull_attempts.borrow_mut().remove(&topic);
        tracing::warn!(
            shard = %context.id,
            %topic,
            "no holder answered {PULL_ATTEMPTS_MAX} pulls of a large retained message; asked \
             again when the membership or its holders change"
        );
        return;
    }
    let (context, cluster) = (context.clone(), cluster.clone());
    runtime::spawn_local(async move {
        runtime::sleep(PULL_RETRY_FIRST * 2u32.pow(attempt - 1)).await;
        if !context.stopping.get() {
            cluster.pull_retained(topic, holders);
        }
    });
}

/// Asks each holder in turn for the retained message on `topic` until one has it, then hands
/// it (or nothing) to the shard.
async fn fetch_one(
    context: Rc<ShardContext>,
    cluster: Rc<ShardCluster>,
    token: u64,
    topic: ByteString,
    holders: Vec<PeerNode>,
) {
    let found = fetch_from(&context, &cluster, &topic, &holders).await.map(|(message, _)| message);
    if found.is_none() {
        tracing::debug!(shard = %context.id, %topic, "no holder answered with the retained message");
    }
    context.state.borrow_mut().retained_fetched(token, found, Instant::now());
    context.apply_effects();
}

/// The retained message on `topic` and its version from the first of `holders` that has it.
async fn fetch_from(
    context: &ShardContext,
    cluster: &ShardCluster,
    topic: &ByteString,
    holders: &[PeerNode],
) -> Option<(SharedMessage, u64)> {
    for &holder in holders {
        let request = cluster.next_request();
        let answer = Rc::new(Awaited::new());
        cluster.fetches.borrow_mut().insert(request, answer.clone());
        let fetch = RetainedFetch { topic: topic.to_string(), request, reply_shard: context.id.0 };
        let answered = match cluster.send(holder, Body::RetainedFetch(Box::new(fetch))) {
            true => answer.until(Instant::now() + RETAINED_FETCH_TIMEOUT).await,
            false => None,
        };
        cluster.fetches.borrow_mut().remove(&request);
        if let Some(Some(found)) = answered {
            return Some(found);
        }
    }
    None
}

/// A peer fetches the retained message on a topic of this shard's partition.
pub(super) fn answer_fetch(
    context: &ShardContext,
    cluster: &ShardCluster,
    peer: PeerNode,
    fetch: &RetainedFetch,
) {
    let now = Instant::now();
    let fetched = retained::answer_fetch(&context.state.borrow(), fetch, &cluster.clock, now);
    // Lost with the link: the fetching node asks the next holder after its timeout.
    cluster.send(peer, Body::RetainedFetched(Box::new(fetched)));
}

/// A peer answered one of this shard's retained fetches.
pub(super) fn fetched_arrived(cluster: &ShardCluster, fetched: RetainedFetched) {
    let Some(answer) = cluster.fetches.borrow().get(&fetched.request).cloned() else { return };
    let found = retained::fetched_message(fetched, &cluster.clock).unwrap_or_else(|error| {
        tracing::warn!("bad retained message from a peer: {error}");
        None
    });
    answer.set(found);
}

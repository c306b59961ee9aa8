//! Retained messages over node links, without I/O: the catch-up of retained writes when a
//! link comes up (digest, versions of the buckets that differ, pushes of what the peer lacks)
//! and the answers to fetches of large messages. The shard decides what differs and what to
//! push (`shardmq_shard`'s `retained_sync` module); this decides when and in which frames. The
//! engine (engine/src/cluster/retained.rs) runs the fetch and pull tasks, their timeouts and
//! retries.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shardmq_cluster::frame::{
    Body, Encoder, Publish, RetainedDigest, RetainedFetch, RetainedFetched, RetainedVersions,
};
use shardmq_cluster::NodeId;
use shardmq_codec::ByteString;
use shardmq_shard::persist::{decode_stored_message, encode_stored_message, WallClock};
use shardmq_shard::{Node, PeerNode, Shard, ShardId, SharedMessage, RETAINED_BUCKETS};

/// Retained pushes are queued on a link while its queue is under this many bytes: the catch-up
/// goes at the pace the peer reads, behind what the link carries anyway.
pub const PUSH_QUEUE_BYTES: usize = 256 << 10;
/// (topic, version) entries per `RetainedVersions` frame, about (whole buckets go in one frame).
pub const VERSIONS_PER_FRAME: usize = 4096;
/// How often a link sends its retained digest again while it stays up: what a full link
/// dropped, what a fenced peer refused, or a digest cut for a shard count the peer no longer
/// has, is caught up within this (a digest that matches costs 2 KiB per shard pair).
pub const DIGEST_INTERVAL: Duration = Duration::from_secs(60);

/// One outgoing link's side of the catch-up.
#[derive(Debug, Default)]
pub struct RetainedOut {
    /// When this connection last sent its digest (`None`: not yet, or asked again).
    digest_sent: Option<Instant>,
    /// This connection's first digest went (it asks the peer's shards for theirs back).
    asked_back: bool,
    /// Retained topics whose last write the peer lacks, to send as the link drains.
    pushes: VecDeque<ByteString>,
}

impl RetainedOut {
    /// A new connection: the catch-up starts afresh.
    pub fn restart(&mut self) {
        *self = RetainedOut::default();
    }

    /// The peer asked for this shard's digest again (its link just came up).
    pub fn send_digest_again(&mut self) {
        self.digest_sent = None;
    }

    /// Topics whose last write the peer lacks, to push as the link drains.
    pub fn push(&mut self, topics: impl IntoIterator<Item = ByteString>) {
        self.pushes.extend(topics);
    }

    pub fn has_pushes(&self) -> bool {
        !self.pushes.is_empty()
    }

    /// Writes into `out` what is due on the link to `peer` at `now`: the shard's digest once
    /// this node knows the peer's shard count, then every [`DIGEST_INTERVAL`]; and pushes of the
    /// writes the peer lacks while `out` is under [`PUSH_QUEUE_BYTES`]. `names` names the holders
    /// of large messages.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        shard: &Shard,
        peer: PeerNode,
        peer_shards: Option<u16>,
        clock: &WallClock,
        names: impl Fn(Node) -> Option<NodeId>,
        encoder: &mut Encoder,
        out: &mut BytesMut,
        now: Instant,
    ) {
        let due = self.digest_sent.is_none_or(|at| now.duration_since(at) >= DIGEST_INTERVAL);
        if let (true, Some(shards)) = (due, peer_shards) {
            let digests = shard.retained_digest(shards);
            let buckets = RETAINED_BUCKETS as u16;
            // Only the first of a connection asks back: the answers to it do not.
            let ask_back = !std::mem::replace(&mut self.asked_back, true);
            let digest = RetainedDigest { shards, buckets, digests: Some(digests), ask_back };
            encoder.encode(Body::RetainedDigest(Box::new(digest)), out);
            self.digest_sent = Some(now);
        }
        while out.len() < PUSH_QUEUE_BYTES {
            let Some(topic) = self.pushes.pop_front() else { return };
            let Some(push) = shard.retained_push(&topic, peer) else { continue };
            let retained_holders = push.holders.map(|holders| {
                holders.into_iter().filter_map(&names).map(|node| node.to_string()).collect()
            });
            let publish = Publish {
                message: encode_stored_message(&push.message, clock),
                receipt: 0,
                reply_shard: shard.id().0,
                deliver: false,
                shared_filter: None,
                shared_group: None,
                retained_holders,
                publisher: None,
                retained_version: push.version,
            };
            encoder.encode(Body::Publish(Box::new(publish)), out);
        }
    }
}

/// A peer shard's digest, cut into the part each shard of this node (with `shards` shards)
/// compares; `None` when it was cut for another shard count or bucket count (this node
/// restarted with another: the peer's next digest is cut for the count it has learnt since).
pub fn split_digest(digest: &RetainedDigest, shards: u16) -> Option<Vec<(ShardId, Vec<u64>)>> {
    let digests = digest.digests.as_deref().unwrap_or_default();
    let buckets = usize::from(digest.buckets);
    if digest.shards != shards
        || buckets != RETAINED_BUCKETS
        || digests.len() != buckets * usize::from(shards)
    {
        return None;
    }
    let parts = digests.chunks(buckets).enumerate();
    Some(parts.map(|(index, part)| (ShardId(index as u16), part.to_vec())).collect())
}

/// This shard's versions of the buckets its marks differ in from peer shard `peer_shard`'s
/// digest, in frames of about [`VERSIONS_PER_FRAME`] entries (a bucket never split); none when
/// nothing differs.
pub fn versions_frames(
    shard: &Shard,
    peer_shards: u16,
    peer_shard: ShardId,
    digest: &[u64],
) -> Vec<RetainedVersions> {
    let buckets = shard.retained_mismatch(peer_shards, peer_shard, digest);
    if buckets.is_empty() {
        return Vec::new();
    }
    let listed = shard.retained_versions(peer_shards, peer_shard, &buckets);
    let empty = || RetainedVersions {
        shard: peer_shard.0,
        buckets: Some(Vec::new()),
        topics: Some(Vec::new()),
        versions: Some(Vec::new()),
    };
    let mut frames = Vec::new();
    let mut frame = empty();
    let mut listed = listed.into_iter().peekable();
    for bucket in buckets {
        while let Some((_, topic, version)) = listed.next_if(|(b, _, _)| *b == bucket) {
            frame.topics.get_or_insert_default().push(topic.to_string());
            frame.versions.get_or_insert_default().push(version);
        }
        frame.buckets.get_or_insert_default().push(bucket);
        if frame.topics.as_ref().map_or(0, Vec::len) >= VERSIONS_PER_FRAME {
            frames.push(std::mem::replace(&mut frame, empty()));
        }
    }
    if frame.buckets.as_ref().is_some_and(|b| !b.is_empty()) {
        frames.push(frame);
    }
    frames
}

/// The buckets a peer's version list covers, and its (topic, version) pairs.
pub type ListedVersions = (Vec<u16>, Vec<(ByteString, u64)>);

/// A peer's version list, checked; `None` when its topics and versions do not pair up.
pub fn listed_versions(versions: RetainedVersions) -> Option<ListedVersions> {
    let topics = versions.topics.unwrap_or_default();
    let numbers = versions.versions.unwrap_or_default();
    if topics.len() != numbers.len() {
        return None;
    }
    let entries = topics.into_iter().map(ByteString::from).zip(numbers).collect();
    Some((versions.buckets.unwrap_or_default(), entries))
}

/// This shard's answer to a peer's fetch of the retained message on a topic of its partition:
/// the message and its version, or none.
pub fn answer_fetch(
    shard: &Shard,
    fetch: &RetainedFetch,
    clock: &WallClock,
    now: Instant,
) -> RetainedFetched {
    let message = shard.retained_message(&fetch.topic, now);
    RetainedFetched {
        request: fetch.request,
        shard: fetch.reply_shard,
        message: message.map(|message| encode_stored_message(&message, clock)),
        version: shard.retained_mark_version(&fetch.topic),
    }
}

/// What a holder answered to a fetch: the message and its version, if it had one that decodes.
pub fn fetched_message(
    fetched: RetainedFetched,
    clock: &WallClock,
) -> Result<Option<(SharedMessage, u64)>, String> {
    let Some(bytes) = fetched.message else { return Ok(None) };
    let message = decode_stored_message(&bytes, clock).map_err(|error| error.to_string())?;
    Ok(Some((Arc::new(message), fetched.version)))
}

//! Retained messages across membership changes: versions, tombstones, catch-up and holders.
//!
//! In a cluster every retained write (a message or a deletion) carries a **version**: a hybrid
//! clock value of the shard that took the publish — wall-clock milliseconds, then a counter for
//! writes within one millisecond, then a tag drawn per shard and run, so that two writes never
//! compare equal. Every node keeps, per topic, the version of the last write it applied (its
//! **mark**, durable in the `retained_marks` table) and applies a write only if it is newer: the
//! last writer wins on every node, whatever order the writes arrive in. A deletion leaves a
//! **tombstone** mark for [`TOMBSTONE_TTL_MS`], so that a node that was away when it happened
//! learns it rather than bringing the message back.
//!
//! **Catch-up.** When a shard's link to a peer comes up (and it knows the peer's shard count), it
//! sends a digest of its marks: for each of the peer's shards, [`RETAINED_BUCKETS`] XORs of
//! (topic, version) hashes. Each peer shard compares the digest with its own marks over the same
//! topics; for the buckets that differ it sends back its list of (topic, version), and the first
//! shard pushes every write of those buckets the peer lacks or has older. Both ends do this, so
//! each side pushes what it has newer, and a bucket costs one list only when it differs. Pushes
//! carry small messages and deletions in full and large messages as notes (where they are
//! held); the engine paces them by the link's queue.
//!
//! **Holders.** A large retained message is kept in full by the first nodes of its topic on the
//! ring of live nodes. A node that holds only a note of one when the ring makes it a holder (a
//! node joined or left, or it learnt of the message late) pulls the message from a node that
//! keeps it, one at a time per shard, and then announces that it keeps it. A former holder keeps
//! its copy (and answers fetches from it) until the message is replaced or deleted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shardmq_codec::{ByteString, QoS};

use super::cluster::{Node, RetainedElsewhere};
use super::{is_system_topic, Effect, Shard};
use crate::ids::{stable_hash, PeerNode, ShardId};
use crate::message::{Message, SharedMessage};
use crate::persist::{RetainedMark, WallClock};

/// Buckets of a retained digest, per shard of the peer it is for.
pub const RETAINED_BUCKETS: usize = 256;
/// How long a deletion's tombstone is kept, from the deletion: a node away for longer may bring
/// back a message deleted meanwhile (as in any store that forgets its tombstones).
pub const TOMBSTONE_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Version layout: milliseconds since the Unix epoch, then [`COUNTER_BITS`] of counter, then
/// [`TAG_BITS`] of tag.
const COUNTER_BITS: u32 = 10;
const TAG_BITS: u32 = 12;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// How far ahead of this node's clock a version seen from a peer may move the clock that
/// versions this node's writes: a peer's clock set wrong by more does not pin this node's.
const OBSERVE_AHEAD_MS_MAX: u64 = 60 * 60 * 1000;

/// The hybrid clock that versions a node's retained writes, shared by its shards: every shard
/// draws from it and advances it with the versions it sees, so that a write taken on one shard
/// is newer than every write another shard of the node has seen. One per node.
#[derive(Debug, Clone, Default)]
pub struct RetainedClock(Arc<AtomicU64>);

impl RetainedClock {
    pub fn new() -> RetainedClock {
        RetainedClock::default()
    }

    /// A version after every one given or seen, at wall-clock time `unix_ms`, tagged `tag`.
    fn next(&self, unix_ms: u64, tag: u64) -> u64 {
        let physical = unix_ms.saturating_mul(1 << (COUNTER_BITS + TAG_BITS));
        let mut drawn = physical;
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            let logical = last.saturating_add(1 << TAG_BITS);
            drawn = physical.max(logical);
            Some(drawn)
        });
        drawn | tag
    }

    /// `version` was seen: later writes here are newer, unless it is more than
    /// [`OBSERVE_AHEAD_MS_MAX`] ahead of `unix_ms` (a peer's clock gone wrong).
    fn observe(&self, version: u64, unix_ms: u64) {
        if version_ms(version) <= unix_ms.saturating_add(OBSERVE_AHEAD_MS_MAX) {
            self.0.fetch_max(version & !TAG_MASK, Ordering::Relaxed);
        }
    }
}

/// A retained write another node is to receive: the message (without its payload for a note,
/// empty for a deletion), its version, and for a note the nodes that keep it in full.
#[derive(Debug, Clone)]
pub struct RetainedPush {
    pub message: SharedMessage,
    pub version: u64,
    pub holders: Option<Vec<Node>>,
}

/// What to do with a retained write of a given version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    /// Newer than what is here (or the full copy of what is here only as a note): apply it.
    Apply,
    /// The same write, as a note of where it is kept: only learn its holders.
    SameNote,
    /// Older than, or the same as, what is here.
    Ignore,
}

/// The versions, tombstones and pulls of one shard's retained partition.
#[derive(Debug, Default)]
pub(super) struct RetainedSync {
    /// `None`: not in a cluster; retained writes carry no version.
    clock: Option<WallClock>,
    tag: u64,
    versions: RetainedClock,
    marks: HashMap<ByteString, RetainedMark>,
    /// Tombstones by version, oldest first; entries a newer write replaced stay until they
    /// reach the top (or the heap is rebuilt), and are skipped.
    tombstones: BinaryHeap<Reverse<(u64, ByteString)>>,
    /// The marks that are tombstones now (the heap's live entries).
    live_tombstones: usize,
    /// Large retained messages being pulled to this node (it became one of their holders).
    pulling: HashSet<ByteString>,
}

impl RetainedSync {
    pub(super) fn restore(&mut self, topic: ByteString, mark: RetainedMark) {
        self.versions.0.fetch_max(mark.version & !TAG_MASK, Ordering::Relaxed);
        self.set(topic, mark);
    }

    /// Sets `topic`'s mark, keeping the tombstone count and heap.
    fn set(&mut self, topic: ByteString, mark: RetainedMark) {
        if mark.deleted {
            self.live_tombstones += 1;
            self.tombstones.push(Reverse((mark.version, topic.clone())));
        }
        if self.marks.insert(topic, mark).is_some_and(|old| old.deleted) {
            self.live_tombstones -= 1;
        }
        // Replaced tombstones linger in the heap: rebuilt when they outnumber the live ones.
        if self.tombstones.len() > 2 * self.live_tombstones + 1024 {
            self.tombstones = self
                .marks
                .iter()
                .filter(|(_, mark)| mark.deleted)
                .map(|(topic, mark)| Reverse((mark.version, topic.clone())))
                .collect();
        }
    }

    /// Whether the heap's entry (`version`, `topic`) is `topic`'s mark still.
    fn is_live(&self, version: u64, topic: &ByteString) -> bool {
        self.marks.get(topic) == Some(&RetainedMark { version, deleted: true })
    }
}

/// The wall-clock milliseconds of a version.
fn version_ms(version: u64) -> u64 {
    version >> (COUNTER_BITS + TAG_BITS)
}

/// The digest bucket of a topic's hash (bits the shard partitions do not use).
fn bucket(hash: u64) -> usize {
    (hash >> 40) as usize % RETAINED_BUCKETS
}

/// One topic's contribution to its bucket.
fn entry_hash(hash: u64, version: u64) -> u64 {
    hash ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// Whether a topic of hash `hash` is in partition `shard` of a node of `shards` shards.
fn in_partition(hash: u64, shards: u16, shard: ShardId) -> bool {
    hash % u64::from(shards.max(1)) == u64::from(shard.0)
}

impl Shard {
    /// Retained writes carry versions from now on (the node is in a cluster). `tag` tells this
    /// shard's writes apart from others' in the same millisecond: draw it at random per run.
    /// `versions` is the node's (one for all its shards).
    pub fn enable_retained_versions(
        &mut self,
        clock: WallClock,
        tag: u64,
        versions: RetainedClock,
    ) {
        self.retained_sync.clock = Some(clock);
        self.retained_sync.tag = tag & TAG_MASK;
        self.retained_sync.versions = versions;
    }

    /// The version of a retained write taken on this shard now (0: not versioned).
    pub(super) fn retained_version(&mut self, topic: &str, now: Instant) -> u64 {
        let Some(clock) = self.retained_sync.clock else { return 0 };
        if is_system_topic(topic) {
            return 0;
        }
        self.retained_sync.versions.next(clock.unix_ms(now), self.retained_sync.tag)
    }

    /// How a write of `version` on `topic` compares with what this shard has (`full`: it
    /// carries the whole message, not a note or a deletion).
    pub(super) fn retained_write(&mut self, topic: &str, version: u64, full: bool) -> Write {
        if let Some(clock) = self.retained_sync.clock {
            let now_ms = clock.unix_ms(Instant::now());
            self.retained_sync.versions.observe(version, now_ms);
        }
        let Some(mark) = self.retained_sync.marks.get(topic) else { return Write::Apply };
        if version > mark.version {
            return Write::Apply;
        }
        if version < mark.version || mark.deleted {
            return Write::Ignore;
        }
        let kept_in_full = self.retained.get(topic).is_some();
        let noted = self.peers.retained_elsewhere.get(topic).is_some();
        match (full, kept_in_full, noted) {
            (true, false, _) => Write::Apply,
            (false, false, true) => Write::SameNote,
            _ => Write::Ignore,
        }
    }

    /// Records that the write of `version` on `topic` was applied here.
    pub(super) fn mark_retained(&mut self, topic: &ByteString, version: u64, deleted: bool) {
        let mark = RetainedMark { version, deleted };
        self.retained_sync.set(topic.clone(), mark);
        self.persist_retained_mark(topic, Some(mark));
        self.trim_tombstones(None);
    }

    /// Forgets tombstones older than [`TOMBSTONE_TTL_MS`] at `now`, and the oldest ones past
    /// this shard's share of `max_retained_messages`.
    pub(super) fn expire_tombstones(&mut self, now: Instant) {
        if let Some(clock) = self.retained_sync.clock {
            self.trim_tombstones(Some(clock.unix_ms(now)));
        }
    }

    fn trim_tombstones(&mut self, now_ms: Option<u64>) {
        let most = self.limits.retained_messages_max.div_ceil(usize::from(self.shards));
        loop {
            let sync = &mut self.retained_sync;
            let Some(Reverse((version, topic))) = sync.tombstones.peek() else { return };
            let live = sync.is_live(*version, topic);
            let expired = now_ms
                .is_some_and(|now| version_ms(*version).saturating_add(TOMBSTONE_TTL_MS) < now);
            if live && !expired && sync.live_tombstones <= most {
                return;
            }
            let Some(Reverse((_, topic))) = sync.tombstones.pop() else { return };
            if live {
                sync.marks.remove(&topic);
                sync.live_tombstones -= 1;
                self.persist_retained_mark(&topic, None);
            }
        }
    }

    /// The retained digest of this shard's partition for a peer of `peer_shards` shards: for
    /// each of its shards, [`RETAINED_BUCKETS`] hashes, at `shard * RETAINED_BUCKETS + bucket`.
    pub fn retained_digest(&self, peer_shards: u16) -> Vec<u64> {
        if peer_shards == 0 {
            return Vec::new();
        }
        let mut digest = vec![0u64; usize::from(peer_shards) * RETAINED_BUCKETS];
        for (topic, mark) in &self.retained_sync.marks {
            let hash = stable_hash(topic.as_bytes());
            let shard = (hash % u64::from(peer_shards.max(1))) as usize;
            digest[shard * RETAINED_BUCKETS + bucket(hash)] ^= entry_hash(hash, mark.version);
        }
        digest
    }

    /// The buckets where `digest` (a peer's, from its shard `peer_shard` of `peer_shards`, cut
    /// for this shard) differs from this shard's marks over the same topics.
    pub fn retained_mismatch(
        &self,
        peer_shards: u16,
        peer_shard: ShardId,
        digest: &[u64],
    ) -> Vec<u16> {
        let mut own = [0u64; RETAINED_BUCKETS];
        for (topic, mark) in &self.retained_sync.marks {
            let hash = stable_hash(topic.as_bytes());
            if in_partition(hash, peer_shards, peer_shard) {
                own[bucket(hash)] ^= entry_hash(hash, mark.version);
            }
        }
        (0..RETAINED_BUCKETS)
            .filter(|&b| digest.get(b).copied().unwrap_or(0) != own[b])
            .map(|b| b as u16)
            .collect()
    }

    /// This shard's (topic, version) marks in `buckets`, over the topics of shard `peer_shard`
    /// of a peer of `peer_shards` shards, by bucket.
    pub fn retained_versions(
        &self,
        peer_shards: u16,
        peer_shard: ShardId,
        buckets: &[u16],
    ) -> Vec<(u16, ByteString, u64)> {
        let mut listed = Vec::new();
        for (topic, mark) in &self.retained_sync.marks {
            let hash = stable_hash(topic.as_bytes());
            let b = bucket(hash) as u16;
            if in_partition(hash, peer_shards, peer_shard) && buckets.contains(&b) {
                listed.push((b, topic.clone(), mark.version));
            }
        }
        listed.sort_unstable_by_key(|(b, _, _)| *b);
        listed
    }

    /// A peer's shard `peer_shard` (of `peer_shards`) listed its marks in `buckets`: the topics
    /// of those buckets it lacks or has older than this shard, to push to it.
    pub fn retained_to_push(
        &self,
        peer_shards: u16,
        peer_shard: ShardId,
        buckets: &[u16],
        theirs: &[(ByteString, u64)],
    ) -> Vec<ByteString> {
        let theirs: HashMap<&str, u64> = theirs.iter().map(|(t, v)| (&**t, *v)).collect();
        let mut push = Vec::new();
        for (topic, mark) in &self.retained_sync.marks {
            let hash = stable_hash(topic.as_bytes());
            let listed = buckets.contains(&(bucket(hash) as u16));
            if !listed || !in_partition(hash, peer_shards, peer_shard) {
                continue;
            }
            if theirs.get(&**topic).is_none_or(|&version| version < mark.version) {
                push.push(topic.clone());
            }
        }
        push
    }

    /// The write on `topic` to push to peer `to` (it lacks it or has an older one): small
    /// messages and deletions in full, large ones as a note of the nodes that keep them. `None`
    /// when there is nothing to send (the topic changed meanwhile to something `to` is sent
    /// anyway, or only `to` is known to keep it).
    pub fn retained_push(&self, topic: &str, to: PeerNode) -> Option<RetainedPush> {
        let mark = *self.retained_sync.marks.get(topic)?;
        let bare = |expires_at| {
            SharedMessage::new(Message {
                topic: ByteString::from(topic),
                payload: Default::default(),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                expires_at,
                publisher: ByteString::from_static(""),
            })
        };
        if mark.deleted {
            return Some(RetainedPush {
                message: bare(None),
                version: mark.version,
                holders: None,
            });
        }
        if let Some(message) = self.retained.get(topic) {
            let large = message.payload.len() > self.peers.replicate_bytes_max
                && self.peers.placement.is_some();
            let (message, holders) = match large {
                true => (SharedMessage::new(message.without_payload()), Some(vec![Node::Here])),
                false => (message.clone(), None),
            };
            return Some(RetainedPush { message, version: mark.version, holders });
        }
        let note = self.peers.retained_elsewhere.get(topic)?;
        let holders: Vec<Node> =
            note.holders.iter().filter(|&&holder| holder != to).map(|&h| Node::Peer(h)).collect();
        (!holders.is_empty()).then(|| RetainedPush {
            message: bare(note.expires_at),
            version: mark.version,
            holders: Some(holders),
        })
    }

    /// The version of the retained message kept here on `topic` (0: none, or not versioned).
    pub fn retained_mark_version(&self, topic: &str) -> u64 {
        self.retained_sync.marks.get(topic).map_or(0, |mark| mark.version)
    }

    /// Pulls the large retained message on `topic` to this node if the ring makes it one of its
    /// holders and it keeps only a note of it.
    pub(super) fn pull_if_holder(&mut self, topic: &ByteString) {
        let Some(placement) = &self.peers.placement else { return };
        if self.retained.get(topic).is_some() || self.retained_sync.pulling.contains(topic) {
            return;
        }
        let Some(note) = self.peers.retained_elsewhere.get(topic) else { return };
        if !placement.holders(topic).contains(&Node::Here) {
            return;
        }
        let holders = note.holders.clone();
        self.retained_sync.pulling.insert(topic.clone());
        self.effects.push(Effect::PullRetained { topic: topic.clone(), holders });
    }

    /// The live nodes changed: pulls the large retained messages this node now holds.
    pub(super) fn pull_new_holdings(&mut self) {
        let mut noted = Vec::new();
        self.peers.retained_elsewhere.for_each_match("#", |topic, _| {
            noted.push(ByteString::from(topic));
        });
        for topic in noted {
            self.pull_if_holder(&topic);
        }
    }

    /// A pull of a large retained message ended: with the message and its version from a node
    /// that keeps it, or with nothing. Returns the version kept here in full now, for the
    /// engine to tell the peers that this node keeps it.
    pub fn retained_pulled(
        &mut self,
        topic: &ByteString,
        pulled: Option<(SharedMessage, u64)>,
        now: Instant,
    ) -> Option<u64> {
        self.retained_sync.pulling.remove(topic);
        let (message, version) = pulled?;
        if message.topic != *topic || !message.retain || message.is_expired(now) || version == 0 {
            return None;
        }
        self.keep_retained(message, None, version);
        let kept = self.retained.get(topic).is_some();
        (kept && self.retained_mark_version(topic) == version).then_some(version)
    }

    /// A note that `node` keeps the retained message on `topic` in full at `version` (0: an
    /// unversioned peer), from its link's index or a pulled copy's announcement.
    pub(super) fn note_holder(&mut self, node: PeerNode, topic: ByteString, version: u64) {
        if version != 0 {
            match self.retained_write(&topic, version, false) {
                Write::Ignore if self.retained.get(&topic).is_some() => return,
                Write::Ignore => {
                    // The same version kept in full there, known here as a note or not at all.
                    if self.retained_mark_version(&topic) != version {
                        return;
                    }
                }
                Write::SameNote => {}
                Write::Apply => {
                    // Newer than the copy kept here, if any.
                    if let Some(old) = self.retained.get(&topic).cloned() {
                        self.forget_retained(&old);
                    }
                    self.peers.retained_elsewhere.remove(&topic);
                    self.mark_retained(&topic, version, false);
                }
            }
        } else if self.retained.get(&topic).is_some()
            || self.retained_sync.marks.get(&topic).is_some_and(|mark| mark.deleted)
        {
            // Kept in full already, or deleted since (an unversioned peer's index is older).
            return;
        }
        let mut note = self
            .peers
            .retained_elsewhere
            .remove(&topic)
            .unwrap_or(RetainedElsewhere { holders: Vec::new(), expires_at: None });
        if !note.holders.contains(&node) {
            note.holders.push(node);
        }
        self.peers.retained_elsewhere.insert(&topic, note);
        self.pull_if_holder(&topic);
    }
}

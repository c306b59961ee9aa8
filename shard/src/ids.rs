//! Identifiers used across shards, and the stable hash that places client ids and topics.

use std::fmt;

/// A shard: one core's executor and its state. Index into the node's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// Another node of the cluster, numbered by the engine (the same number on every shard of this
/// node, for the life of the process). The shard only routes by it; names live in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerNode(pub u16);

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer-{}", self.0)
    }
}

/// A peer node's etcd lease, as the hello of its link named it: one incarnation of the node
/// (a restart, or a re-registration after it fenced itself, brings a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerLease(pub i64);

/// The number a peer gave one connection of its link (in the link's hello). A node numbers its
/// link connections from a counter seeded from the wall clock at start-up, so a later connection
/// from the same peer shard (a reconnect, or a restart of the node) has a larger number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkNumber(pub u64);

/// A connection on one shard. Unique for the shard's lifetime (never reused), so a late event
/// for a closed connection cannot reach its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The fixed seed of the placement hash: changing it re-homes every session.
const PLACEMENT_SEED: u64 = 0x5348_4152_444d_5121;

/// A stable 64-bit hash of bytes: the same on every node, build and run (unlike std's Hash).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, PLACEMENT_SEED)
}

/// The shard that owns a client's session: `hash(client_id) mod shards`.
pub fn home_shard(client_id: &str, shards: u16) -> ShardId {
    assert!(shards > 0, "a node has at least one shard");
    ShardId((stable_hash(client_id.as_bytes()) % u64::from(shards)) as u16)
}

/// The shard that holds the retained message of a topic: `hash(topic) mod shards`.
pub fn retained_shard(topic: &str, shards: u16) -> ShardId {
    home_shard(topic, shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spread() {
        // Fixed values: a change here re-homes every stored session and must be deliberate.
        assert_eq!(home_shard("client-1", 1), ShardId(0));
        let a = home_shard("client-1", 8);
        assert_eq!(a, home_shard("client-1", 8));
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[home_shard(&format!("c{i}"), 4).index()] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}

//! The rendezvous (highest random weight) hash ring over live nodes.
//!
//! Every node scores every key; the key belongs to the node with the highest score, and its
//! replicas to the next ones. Nodes agree on placement only if they hash the same way, so the
//! score is xxh3 with fixed seeds — never `std::hash::Hash`, whose output may change between
//! builds. Rendezvous hashing moves only the keys the joining node wins (1/n of them) and
//! balances without the virtual nodes a consistent-hash ring needs (within 5% over 100,000
//! keys on five nodes: `balances_within_five_percent`).

use std::cmp::Reverse;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::types::{Member, NodeId};

/// The seed of a node's own hash ("shardmq!" in ASCII). Changing it moves every key: it is part
/// of the cluster's wire contract, like a file format.
pub const RING_SEED: u64 = 0x7368_6172_646d_7121;

/// The live nodes, each with its hash precomputed (a lookup then costs one xxh3 of the key per
/// node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring {
    /// Sorted by node id, without duplicates, so two rings of the same set are equal.
    nodes: Vec<(NodeId, u64)>,
}

impl Ring {
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> Ring {
        let mut nodes: Vec<(NodeId, u64)> =
            nodes.into_iter().map(|node| (node.clone(), node_seed(&node))).collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        nodes.dedup_by(|a, b| a.0 == b.0);
        Ring { nodes }
    }

    /// The ring of the members the watch reports as live.
    pub fn from_members(members: &[Member]) -> Ring {
        Ring::new(members.iter().map(|member| member.node.clone()))
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes.iter().map(|(node, _)| node)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.binary_search_by(|(n, _)| n.cmp(node)).is_ok()
    }

    /// The node that owns `key`: the highest score, ties to the smallest node id.
    pub fn owner(&self, key: &[u8]) -> Option<&NodeId> {
        self.nodes
            .iter()
            .max_by_key(|(node, seed)| (xxh3_64_with_seed(key, *seed), Reverse(node)))
            .map(|(node, _)| node)
    }

    /// The `n` nodes with the highest scores for `key`, best first (the owner, then its
    /// replicas). Fewer when the ring has fewer nodes.
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<&NodeId> {
        let mut scored: Vec<(u64, &NodeId)> =
            self.nodes.iter().map(|(node, seed)| (xxh3_64_with_seed(key, *seed), node)).collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().take(n).map(|(_, node)| node).collect()
    }
}

/// `node`'s score for `key`: what every node computes identically.
pub fn score(node: &NodeId, key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, node_seed(node))
}

/// The key hash is seeded with the node's own hash, so each node draws an independent
/// pseudo-random score per key (xxh3 mixes its seed into every input length).
fn node_seed(node: &NodeId) -> u64 {
    xxh3_64_with_seed(node.as_str().as_bytes(), RING_SEED)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn ring(names: &[&str]) -> Ring {
        Ring::new(names.iter().map(|name| NodeId::new(name)))
    }

    fn key(i: usize) -> Vec<u8> {
        format!("client-{i}").into_bytes()
    }

    #[test]
    fn scores_are_stable_across_builds() {
        // Pinned values: if this fails, placement changed and mixed-version clusters disagree.
        assert_eq!(score(&NodeId::new("node-a"), b"client-1"), 0xbab1_1307_befd_dd3e);
        assert_eq!(score(&NodeId::new("node-b"), b""), 0xdec1_e1d9_aa32_84a2);
        let ring = ring(&["node-a", "node-b", "node-c"]);
        let owners: Vec<&str> =
            ring.owners(b"client-1", 3).into_iter().map(NodeId::as_str).collect();
        assert_eq!(owners, ["node-a", "node-b", "node-c"]);
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let ring = Ring::default();
        assert_eq!(ring.owner(b"x"), None);
        assert!(ring.owners(b"x", 3).is_empty());
    }

    #[test]
    fn duplicates_and_order_do_not_matter() {
        assert_eq!(ring(&["b", "a", "c", "a"]), ring(&["a", "b", "c"]));
        assert_eq!(ring(&["b", "a"]).len(), 2);
    }

    #[test]
    fn owners_start_with_the_owner_and_are_distinct() {
        let ring = ring(&["n1", "n2", "n3", "n4", "n5"]);
        for i in 0..1000 {
            let owners = ring.owners(&key(i), 3);
            assert_eq!(owners.len(), 3);
            assert_eq!(Some(owners[0]), ring.owner(&key(i)));
            assert!(owners[0] != owners[1] && owners[1] != owners[2] && owners[0] != owners[2]);
            let scores: Vec<u64> = owners.iter().map(|node| score(node, &key(i))).collect();
            assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]), "not best first");
        }
        assert_eq!(ring.owners(b"k", 9).len(), 5);
    }

    #[test]
    fn balances_within_five_percent() {
        let ring = ring(&["n1", "n2", "n3", "n4", "n5"]);
        let mut counts: HashMap<&NodeId, usize> = HashMap::new();
        for i in 0..100_000 {
            *counts.entry(ring.owner(&key(i)).expect("ring is not empty")).or_default() += 1;
        }
        assert_eq!(counts.len(), 5);
        let max = *counts.values().max().expect("five nodes");
        let min = *counts.values().min().expect("five nodes");
        assert!((max as f64) / (min as f64) < 1.05, "max {max} min {min}");
    }

    #[test]
    fn a_joining_node_takes_a_sixth_and_nothing_else_moves() {
        let five = ring(&["n1", "n2", "n3", "n4", "n5"]);
        let six = ring(&["n1", "n2", "n3", "n4", "n5", "n6"]);
        let keys = 100_000;
        let mut moved = 0;
        for i in 0..keys {
            let before = five.owner(&key(i));
            let after = six.owner(&key(i));
            if before != after {
                assert_eq!(after.map(NodeId::as_str), Some("n6"), "a key moved between old nodes");
                moved += 1;
            }
        }
        let fraction = moved as f64 / keys as f64;
        assert!((0.15..0.183).contains(&fraction), "moved {fraction}");
    }
}

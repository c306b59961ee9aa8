//! The names the cluster's parts share: nodes, leases, revisions, members and claim outcomes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A node's name in its cluster (`--node-id`): unique among the live members, stable across
/// restarts of the same machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub Arc<str>);

impl NodeId {
    pub fn new(name: &str) -> NodeId {
        NodeId(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An etcd lease id. Each run of a node (and each re-grant after the node fenced itself) holds
/// its own lease, so the lease also names the node's incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// An etcd revision (a key's `mod_revision`, or a response header's revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(pub i64);

/// A live node as registered under `/shardmq/<cluster>/nodes/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: NodeId,
    /// Where its node links accept (`--link-advertise`, else `--link-listen`).
    pub link: SocketAddr,
    /// The lease its keys hang on: changes when the node restarts or re-registers.
    pub lease: LeaseId,
}

/// The answer to a connecting client's claim of its client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This node already owned the client under its current lease: nothing was written.
    AlreadyOwned,
    /// The claim is committed in etcd: this node now owns the client.
    Claimed,
    /// A live peer owns the client. The connecting shard asks `owner` over the node link to stop
    /// serving it and hand its session over, then calls `claim_after_release` with `revision`.
    HeldBy { owner: NodeId, revision: Revision },
    /// etcd could not be reached (or the claim raced another node's) within the claim timeout:
    /// CONNACK "server unavailable".
    Unavailable,
    /// etcd cannot take this claim in time now (it answers slowly, or too many claims wait
    /// before this one): refused at once, CONNACK "server busy" (5.0: 0x89, 3.1.1: return code
    /// 3). The client should retry after a backoff.
    Busy,
    /// This node has fenced itself (its lease could not be renewed): it serves no one until it
    /// holds a new lease.
    Fenced,
}

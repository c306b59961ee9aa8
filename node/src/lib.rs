//! The node protocol without I/O.
//!
//! [`Handover`] is the part of a shard's cluster protocol that moves a client between nodes: the
//! claim of a connecting client's id in etcd, the takeover of its session from the node that
//! serves it (ask, transfer, claim after the release, confirm), and the owner's side (stop
//! serving, hand the session over, keep a parked copy until the new owner confirms). Like
//! `shardmq_shard::Shard` and `shardmq_cluster::ownership::Ownership`, it takes events (a
//! connect, a claim answered, a frame arrived, the time) and leaves effects for its driver to
//! carry out (claims to ask the control plane, frames to send, connects answered); it changes a
//! real [`Shard`](shardmq_shard::Shard) directly, as the engine's tasks did.
//!
//! The engine drives one per shard over real links and the real control plane
//! (engine/src/cluster.rs); the cluster simulation (node/tests/simulation.rs) drives the same code,
//! with real `Ownership` cores and real shards, over a simulated etcd, network and clock.
//!
//! [`link`] holds what a shard decides about its node links: the first frames of a connection,
//! route delta numbering, receipts waited for and given up, heartbeats, which hellos let a link
//! in, which shard a frame is for, and what a forwarded publish does to the shard.
//!
//! [`retained`] holds when and in which frames a link catches its peer up on retained writes,
//! and how a fetch of a large retained message is answered.
//!
//! This crate sits above both `shardmq-shard` and `shardmq-cluster`: the shard crate must stay
//! free of the runtime, and the cluster crate links tokio for its etcd client, so neither can
//! depend on the other.

pub mod handover;
pub mod link;
pub mod retained;

pub use handover::{Effect, Handover, HandoverConfig, HandoverStats, Links, Ticket};

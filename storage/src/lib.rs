//! One redb database per shard: the durable half of a shard's sessions, their queued and
//! in-flight messages, incoming QoS 2 packet ids, retained messages and wills.
//!
//! The store keeps *opaque* records: the shard crate encodes and decodes them
//! (`shard/src/persist.rs`); this crate knows tables and keys, not MQTT. The tables, their keys and
//! their invariants are described in `docs/storage-format.md`.
//!
//! Lives on each shard, one [`ShardStore`] per shard file. [`ShardStore::commit`] does blocking
//! I/O (an fsync with [`Durability::Immediate`]): the shard's group committer calls it from the
//! blocking seam, never from the reactor. [`ShardStore::load`] is called once at start-up.

#![forbid(unsafe_code)]

mod error;
mod files;
mod store;

#[cfg(test)]
mod fault_tests;
/// Fault injection for tests (`fault-injection` feature): a store whose disk fills up on demand.
#[cfg(any(test, feature = "fault-injection"))]
pub mod faults;

pub use error::StorageError;
pub use files::{shard_file, shard_files, sync_data_dir};
pub use store::{
    Durability, Op, RewriteRecord, SessionSnapshot, ShardStore, Snapshot, Upgrade, FORMAT_VERSION,
};

//! One core's broker: sessions, the QoS 0/1/2 state machines, the subscription trie replica,
//! the retained partition, wills, keepalive and limits, and the SPSC mesh to the other shards.
//!
//! Not built yet: issue 3 (the thread-per-core broker) fills this crate. Its contract is in
//! ARCHITECTURE.md: a shard owns its state, does no I/O in its state machines and reads no clock.

#![forbid(unsafe_code)]

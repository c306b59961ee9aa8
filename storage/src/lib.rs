//! One redb database per shard: sessions, subscriptions, inflight state, offline queues,
//! retained messages and wills, written by one group committer off the reactor.
//!
//! Not built yet: issue 4 (durable shards) fills this crate.

#![forbid(unsafe_code)]

//! One core's broker: sessions, the QoS 0/1/2 state machines, the subscription trie replica,
//! the retained partition, wills, keepalive and limits, and the messages of the SPSC mesh to the
//! other shards.
//!
//! Everything here is sans-IO: the engine feeds a [`Shard`] events with the current time and
//! carries out the [`Effect`]s it returns. A shard owns its state; other shards reach it only
//! through [`ShardMsg`]s.

#![forbid(unsafe_code)]

pub mod authorize;
pub mod ids;
pub mod limits;
pub mod mesh;
pub mod message;
pub mod persist;
pub mod session;
mod state;
pub mod topic_tree;

/// The hash map of the per-message paths (sessions, connections, the subscriber trie): seeded
/// per process like std's, several times faster on short keys (foldhash).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The checks of the fuzz targets under `shard/fuzz`, replayed over their corpus by
/// `tests/fuzz_corpus.rs`.
#[cfg(feature = "fuzzing")]
pub use state::fuzzing;

pub use ids::{
    home_shard, retained_shard, stable_hash, ConnId, LinkNumber, PeerLease, PeerNode, ShardId,
};
pub use limits::Limits;
pub use mesh::{Publisher, ShardMsg, SyncToken};
pub use message::{Delivery, Message, SharedMessage};
pub use state::{
    BridgeQueue, ClientDetail, ClientEvent, ClientEvents, ClientSummary, CommitBatch,
    ConnectRefusal, Effect, EventKind, EventSink, Forward, KickSession, Kicked, LinkEpoch, Node,
    PeerRoute, Presence, QueueGauges, RetainedClock, RetainedPlacement, RetainedPush, RouteFrame,
    Shard, ShardStats, SubscriptionInfo, Ticket, WillState, PEER_PAUSE_MAX, PUBLISHER_PAUSE_MAX,
    RETAINED_BUCKETS, SUBSCRIBER_STALL_QUIET, TOMBSTONE_TTL_MS,
};

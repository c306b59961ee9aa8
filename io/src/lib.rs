//! shardmq's wire layer: everything that touches the sockets a client or a peer node uses.
//!
//! [`runtime`] keeps glommio behind a small API (shards, sockets, the cross-shard mesh, timers,
//! the blocking seam); [`transport`] adds TLS and WebSocket to client connections, [`link_tls`]
//! TLS to node links. The MQTT codec lives in its own crate, `shardmq-codec`, which needs no
//! runtime (so the shard state machine links it without glommio); it is re-exported here as
//! [`codec`] for the code that reads and writes sockets.

// Denied rather than forbidden: the runtime module adopts raw fds into glommio, which only
// `FromRawFd` allows; those few items opt in with `#[allow(unsafe_code)]` and a SAFETY comment.
#![deny(unsafe_code)]

pub use shardmq_codec as codec;
pub mod link_tls;
pub mod proxy;
pub mod runtime;
pub mod transport;

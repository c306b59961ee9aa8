//! shardmq's wire layer: everything that touches the bytes a client sends or receives.
//!
//! It holds the MQTT 3.1, 3.1.1 and 5.0 codec ([`codec`]), which is sans-IO: it reads no socket
//! and no clock, so it can be unit-tested and fuzzed without a network. [`runtime`] keeps glommio
//! behind a small API (shards, sockets, the cross-shard mesh, timers, the blocking seam); the
//! connection read/write loops join them with the broker (see ARCHITECTURE.md).

// Denied rather than forbidden: the runtime module adopts raw fds into glommio, which only
// `FromRawFd` allows; those few items opt in with `#[allow(unsafe_code)]` and a SAFETY comment.
#![deny(unsafe_code)]

pub mod codec;
pub mod link_tls;
pub mod runtime;
pub mod transport;

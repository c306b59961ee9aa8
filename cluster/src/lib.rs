//! The cluster control plane: membership and batched session ownership in etcd, the rendezvous
//! hash ring, node-to-node link frames, and the ownership / fencing / takeover logic.
//!
//! The logic is sans-IO ([`ownership::Ownership`]: time is a parameter, etcd is described by
//! the transactions it asks for and the answers it is fed), so the same code runs under the
//! etcd driver ([`control`]) and under the deterministic simulation (`node/tests/simulation.rs`).

// No unsafe code of ours; the FlatBuffers code planus-cli generates (`frame::link_generated`)
// uses planus's unsafe writer API and is the one module allowed it.
#![deny(unsafe_code)]

pub mod control;
pub mod frame;
pub mod ownership;
pub mod ring;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use types::{ClaimOutcome, LeaseId, Member, NodeId, Revision};

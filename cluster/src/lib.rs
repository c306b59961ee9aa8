//! The cluster control plane: membership and batched session ownership in etcd, the rendezvous
//! hash ring, node-to-node links, cross-node routing and takeover.
//!
//! Not built yet: issue 7 (the cluster) fills this crate.

#![forbid(unsafe_code)]

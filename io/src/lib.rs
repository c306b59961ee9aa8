//! shardmq's wire layer: everything that touches the bytes a client sends or receives.
//!
//! Today this crate holds the MQTT 3.1, 3.1.1 and 5.0 codec ([`codec`]). It is sans-IO: it reads
//! no socket and no clock, so it can be unit-tested and fuzzed without a network. Socket setup and
//! the glommio connection loops join it with the broker (see ARCHITECTURE.md).

#![forbid(unsafe_code)]

pub mod codec;

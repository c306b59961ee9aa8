//! The bundled load generator behind `shardmq loadgen`: thread-per-core MQTT clients that hold
//! hundreds of thousands of connections and measure throughput and latency exactly.
//!
//! Not built yet: issue 5 (the load generator) fills this crate. It will speak MQTT through
//! `shardmq-io`'s codec.

#![forbid(unsafe_code)]

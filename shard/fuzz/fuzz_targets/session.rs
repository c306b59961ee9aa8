//! Fuzz target: A node of shards driven by a script of client packets, connections, clock ticks,
//! mesh deliveries and commit outcomes. The checks themselves live in `shardmq_shard::fuzzing`
//! so CI replays the corpus with them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardmq_shard::fuzzing::check_session(data);
});

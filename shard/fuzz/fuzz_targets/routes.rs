//! Fuzz target: A shard's route replicas fed peer route frames of several link connections in
//! any interleaving, restarts, gone incarnations and the local mesh's route messages. The checks
//! themselves live in `shardmq_shard::fuzzing` so CI replays the corpus with them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardmq_shard::fuzzing::check_routes(data);
});

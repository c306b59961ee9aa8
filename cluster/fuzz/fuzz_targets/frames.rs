//! Fuzz target: A node link's byte stream through the frame decoder, whole and in chunks.
//! The checks themselves live in `shardmq_cluster::frame::fuzzing` so CI replays the corpus with
//! them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardmq_cluster::frame::fuzzing::check_frames(data);
});

//! Fuzz target: A connection's byte stream through the server or client decoder, whole and in chunks.
//! The checks themselves live in `shardmq_codec::fuzzing` so CI replays the corpus with them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardmq_codec::fuzzing::check_stream(data);
});

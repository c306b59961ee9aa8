//! Fuzz target: One packet body of a known protocol version, by its fixed header's first byte.
//! The checks themselves live in `shardmq_codec::fuzzing` so CI replays the corpus with them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardmq_codec::fuzzing::check_body(data);
});

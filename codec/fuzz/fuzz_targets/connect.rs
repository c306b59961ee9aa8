//! Fuzz target: The first packet on a server connection (CONNECT, or anything else that must be refused).
//! The checks themselves live in `shardmq_codec::fuzzing` so CI replays the corpus with them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardmq_codec::fuzzing::check_connect(data);
});

//! Replays the committed fuzz corpora (`shard/fuzz/corpus/<target>/`) through the same checks the
//! fuzz targets run, so CI exercises every input the fuzzer found interesting on stable Rust.
//! Crashes the fuzzer finds are minimised into `shard/fuzz/regressions/<target>/` and replayed too.

use std::path::Path;

use shardmq_codec::fuzzing::replay_corpus;
use shardmq_shard::fuzzing::{check_routes, check_session};

fn replay(target: &str, check: fn(&[u8])) -> usize {
    replay_corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz"), target, check)
}

#[test]
fn session_corpus() {
    assert!(replay("session", check_session) > 100, "the session corpus is missing");
}

#[test]
fn routes_corpus() {
    assert!(replay("routes", check_routes) > 100, "the routes corpus is missing");
}

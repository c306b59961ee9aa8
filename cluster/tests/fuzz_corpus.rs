//! Replays the committed fuzz corpus (`cluster/fuzz/corpus/frames/`) through the same check the
//! fuzz target runs, so CI exercises every input the fuzzer found interesting on stable Rust.
//! Crashes the fuzzer finds are minimised into `cluster/fuzz/regressions/frames/` and replayed
//! too.

use std::path::Path;

use shardmq_cluster::frame::fuzzing::check_frames;
use shardmq_io::codec::fuzzing::replay_corpus;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    replay_corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz"), target, check)
}

#[test]
fn frames_corpus() {
    assert!(replay("frames", check_frames) > 100, "the frames corpus is missing");
}

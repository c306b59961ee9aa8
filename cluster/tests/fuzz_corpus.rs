//! Replays the committed fuzz corpus (`cluster/fuzz/corpus/frames/`) through the same check the
//! fuzz target runs, so CI exercises every input the fuzzer found interesting on stable Rust.
//! Crashes the fuzzer finds are minimised into `cluster/fuzz/regressions/frames/` and replayed
//! too.

use std::fs;
use std::path::Path;

use shardmq_cluster::frame::fuzzing::check_frames;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("readable corpus directory").path();
            let data = fs::read(&path).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn frames_corpus() {
    assert!(replay("frames", check_frames) > 100, "the frames corpus is missing");
}

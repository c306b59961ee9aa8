//! Replays the committed fuzz corpora (`shard/fuzz/corpus/<target>/`) through the same checks the
//! fuzz targets run, so CI exercises every input the fuzzer found interesting on stable Rust.
//! Crashes the fuzzer finds are minimised into `shard/fuzz/regressions/<target>/` and replayed too.

use std::fs;
use std::path::Path;

use shardmq_shard::fuzzing::{check_routes, check_session};

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
fn session_corpus() {
    assert!(replay("session", check_session) > 100, "the session corpus is missing");
}

#[test]
fn routes_corpus() {
    assert!(replay("routes", check_routes) > 100, "the routes corpus is missing");
}

//! Replays the committed fuzz corpora (`codec/fuzz/corpus/<target>/`) through the same checks the
//! fuzz targets run, so CI exercises every input the fuzzer found interesting on stable Rust.
//! Crashes the fuzzer finds are minimised into `codec/fuzz/regressions/<target>/` and replayed too.

use std::path::Path;

use shardmq_codec::fuzzing::{check_body, check_connect, check_stream, replay_corpus};

fn replay(target: &str, check: fn(&[u8])) -> usize {
    replay_corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz"), target, check)
}

#[test]
fn stream_corpus() {
    assert!(replay("stream", check_stream) > 100, "the stream corpus is missing");
}

#[test]
fn body_corpus() {
    assert!(replay("body", check_body) > 100, "the body corpus is missing");
}

#[test]
fn connect_corpus() {
    assert!(replay("connect", check_connect) > 20, "the connect corpus is missing");
}

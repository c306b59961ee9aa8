//! Benchmark scenarios and the side-by-side comparison with other brokers. Recorded results
//! live beside this crate in `perf/results/`; the codec micro-benchmark lives in
//! `codec/benches/codec.rs` and its figures in `perf/results/codec.md`.

#![forbid(unsafe_code)]

pub mod compare;

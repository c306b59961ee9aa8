//! `perf/compare`: shardmq side by side with Mosquitto and rumqttd (see `perf/README.md`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match shardmq_perf::compare::main(shardmq_perf::compare::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare: {error:#}");
            ExitCode::FAILURE
        }
    }
}

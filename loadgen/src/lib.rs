//! The bundled load generator behind `shardmq loadgen`: thread-per-core MQTT clients that hold
//! many thousands of connections and measure throughput, latency and delivery exactly.
//!
//! - [`cli`] holds the flags and turns them into a [`config::RunConfig`];
//! - [`run::run`] starts one worker (a glommio executor, through `shardmq_io::runtime`) per
//!   core, walks the run through its phases and returns a [`report::Report`];
//! - each worker runs its clients as tasks ([`worker`]) over [`mqtt::Connection`]s that hold no
//!   read buffer while idle;
//! - every payload carries its publisher, sequence number and intended send time
//!   ([`payload`]), so subscribers time each message from when it was meant to be sent (no
//!   coordinated omission) and check each (publisher, subscriber) stream for loss, duplicates
//!   and reordering ([`integrity`]);
//! - idle clients hold no timer of their own: each worker's keepalive clock (`keepalive`) wakes
//!   those whose PINGREQ is due;
//! - [`retained`] and [`churn`] run their scenarios on their own executors, without the phase
//!   coordinator;
//! - [`stop`] turns Ctrl-C and SIGTERM into an early end that still reports.
//!
//! The user guide is `docs/loadgen.md`.

#![forbid(unsafe_code)]

pub mod churn;
pub mod cli;
pub mod clock;
pub mod config;
pub mod histogram;
pub mod integrity;
mod keepalive;
pub mod mqtt;
pub mod payload;
pub mod process;
pub mod report;
pub mod retained;
pub mod run;
mod shared;
mod signal;
pub mod stop;
mod worker;

use std::io::Write as _;
use std::process::ExitCode;

pub use cli::LoadgenArgs;
pub use config::RunConfig;
pub use report::Report;
pub use run::{run, Progress, RunError};

/// Exit status of a run that measured problems (failed or dropped clients, QoS 1/2 loss).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status of a run that could not be carried out (bad flags, workers not started).
pub const EXIT_UNUSABLE: u8 = 2;

/// `shardmq loadgen ...`: runs the scenario, prints the summary on stdout (and any problem
/// loudly on stderr), writes `--json`, and exits non-zero when the run found problems.
pub fn main(args: LoadgenArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("shardmq loadgen: {error}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let common = args.common();
    if let Err(error) = stop::install() {
        eprintln!("shardmq loadgen: cannot handle Ctrl-C and SIGTERM: {error}");
        return ExitCode::from(EXIT_UNUSABLE);
    }
    if config.share != config::ProcessShare::WHOLE {
        // A worker process: its parent reads its stdout and prints everything.
        let start_ns = common.start_ns.unwrap_or_else(clock::now_ns);
        return match process::run_child(&config, start_ns) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shardmq loadgen (worker process {}): {error}", config.share.index);
                ExitCode::from(EXIT_UNUSABLE)
            }
        };
    }
    let progress = if common.quiet { Progress::Silent } else { Progress::Stderr };
    let outcome = if common.processes > 1 {
        match std::env::current_exe() {
            Ok(program) => {
                let args = process::child_args(std::env::args_os().skip(1));
                process::run_processes(&config, common.processes, &program, &args, progress)
            }
            Err(error) => Err(RunError::Process(format!("cannot find this program: {error}"))),
        }
    } else {
        run(config, progress)
    };
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("shardmq loadgen: {error}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    // A closed stdout (a pipe into `head`) must not turn a finished run into a failure.
    let _ = std::io::stdout().write_all(report.table().as_bytes());
    if !report.passed {
        let banner = "!".repeat(78);
        eprintln!("{banner}");
        for problem in &report.problems {
            eprintln!("!!! {problem}");
        }
        eprintln!("{banner}");
    }
    if let Some(path) = &common.json {
        if let Err(error) = write_json(&report, path) {
            eprintln!("shardmq loadgen: {error}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS)
    }
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json(report: &Report, path: &std::path::Path) -> Result<(), RunError> {
    let failed = |error: String| RunError::Json { path: path.display().to_string(), error };
    let json = serde_json::to_vec_pretty(report).map_err(|error| failed(error.to_string()))?;
    std::fs::write(path, json).map_err(|error| failed(error.to_string()))
}

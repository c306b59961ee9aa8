//! The `shardmq` binary: `serve` runs the broker, `loadgen` the bundled load generator,
//! `check-system` reads this host's limits for a target connection count.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check_system;
mod cluster;
mod config;
mod server;

/// shardmq: a thread-per-core MQTT 3.1.1 / 5.0 broker for bare-metal Linux.
#[derive(Debug, Parser)]
#[command(name = "shardmq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(Box<config::ServeArgs>),
    /// Run the bundled load generator against one or more brokers (see docs/loadgen.md).
    Loadgen(Box<shardmq_loadgen::LoadgenArgs>),
    /// Read this host's file limits, kernel settings and memory, and say what to change to hold
    /// a target number of connections (see docs/tuning.md). Exits 1 when something must change.
    CheckSystem(check_system::CheckSystemArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match (*args).resolve() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("shardmq: {error}");
                    return ExitCode::from(2);
                }
            };
            if let Err(error) = init_logging(&config.log) {
                eprintln!("shardmq: invalid value for `log`: {error}");
                return ExitCode::from(2);
            }
            match server::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("shardmq: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Loadgen(args) => shardmq_loadgen::main(*args),
        Command::CheckSystem(args) => check_system::main(args),
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    // Logs go to stderr, coloured only on a terminal, so scripts and tests can read them.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

//! `perf/compare`: shardmq side by side with Mosquitto and rumqttd. Every scenario runs against
//! every broker in turn, round after round, each broker pinned to one core and the bundled load
//! generator to the other; the figures are medians of the rounds with their min and max, written
//! as JSON, a markdown table with shardmq/peer ratios, and SVG latency plots.

mod brokers;
mod plot;
pub mod procfs;
mod report;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

pub use brokers::{pinned, BrokerKind, RUMQTTD_VERSION};
pub use scenarios::{LoadgenHung, Measurement, Scenario, Size};

use brokers::{BrokerSetup, Programs, RunningBroker};
use report::{Comparison, Run};

/// First port a broker listens on; each run takes the next two (rumqttd's v5 listener is +1),
/// so no run meets the previous one's TIME_WAIT sockets.
const PORT_BASE: u16 = 21_000;

#[derive(Debug, Parser)]
#[command(name = "compare", about = "shardmq side by side with Mosquitto and rumqttd")]
pub struct Args {
    /// Short runs (2 s of traffic, 2,000/3,000 connections, one round): a smoke run in under
    /// 3 minutes. Its figures are not for comparison.
    #[arg(long)]
    pub quick: bool,
    /// Rounds: every scenario runs once per broker per round [default: 3, --quick 1].
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// Brokers to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "shardmq,mosquitto,rumqttd")]
    pub brokers: Vec<String>,
    /// Scenarios to run, comma-separated: pairs, fanout, fanin, latency, idle, connect, durable.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pairs,fanout,fanin,latency,idle,connect,durable"
    )]
    pub scenarios: Vec<String>,
    /// Where the results go [default: perf/results/compare for a complete comparison (every
    /// scenario and broker, 3 rounds or more, not --quick), else target/compare].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The shardmq binary (it also runs the load generator).
    #[arg(long, value_name = "PATH")]
    pub shardmq: Option<PathBuf>,
    /// The core the broker is pinned to.
    #[arg(long, default_value_t = 0)]
    pub broker_cpu: usize,
    /// The core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    pub loadgen_cpu: usize,
    /// Fail instead of installing Mosquitto or building rumqttd when missing.
    #[arg(long)]
    pub no_install: bool,
}

/// Runs the comparison; the process exit status is non-zero only when the harness itself could
/// not run (a broker did not start, the load generator could not run).
pub fn main(args: Args) -> anyhow::Result<()> {
    let workspace =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    let brokers: Vec<BrokerKind> =
        args.brokers.iter().map(|name| BrokerKind::parse(name)).collect::<Result<_, _>>()?;
    let scenarios: Vec<Scenario> =
        args.scenarios.iter().map(|name| Scenario::parse(name)).collect::<Result<_, _>>()?;
    let size = if args.quick { Size::QUICK } else { Size::FULL };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let shardmq = args.shardmq.clone().unwrap_or_else(|| workspace.join("target/release/shardmq"));
    let programs = Programs::find_or_install(&workspace, shardmq, &brokers, !args.no_install)?;
    // Only a complete comparison replaces the recorded results (and their LATEST.md).
    let complete = !args.quick
        && rounds >= 3
        && Scenario::ALL.iter().all(|scenario| scenarios.contains(scenario))
        && BrokerKind::ALL.iter().all(|broker| brokers.contains(broker));
    let out = args.out.clone().unwrap_or_else(|| {
        workspace.join(if complete { "perf/results/compare" } else { "target/compare" })
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scratch = workspace.join("target/compare-scratch");
    std::fs::create_dir_all(&scratch)?;

    let started = Instant::now();
    let mut comparison =
        Comparison::new(&workspace, args.quick, rounds, size, &brokers, &scenarios);
    let mut port = PORT_BASE;
    for round in 0..rounds {
        for &scenario in &scenarios {
            // Alternate which broker goes first, so none always runs on a cooler machine.
            let order: Vec<BrokerKind> =
                (0..brokers.len()).map(|index| brokers[(index + round) % brokers.len()]).collect();
            for broker in order {
                if !scenario.supports(broker) {
                    continue;
                }
                port = port.wrapping_add(2).max(PORT_BASE);
                let setup = BrokerSetup { port, cpu: args.broker_cpu, durable: scenario.durable() };
                eprintln!(
                    "[{:6.1}s] round {}/{rounds}  {:<8} {}",
                    started.elapsed().as_secs_f64(),
                    round + 1,
                    scenario.name(),
                    broker.name()
                );
                let mut result =
                    run_one(&programs, broker, scenario, size, setup, &scratch, args.loadgen_cpu);
                if let Some(hung) =
                    result.as_ref().err().and_then(|error| error.downcast_ref::<LoadgenHung>())
                {
                    // A known load-generator stall (docs/reliability.md, "Soak"): said, then the
                    // run is made once more on a fresh broker.
                    eprintln!("          LOAD GENERATOR HUNG, running again: {hung}");
                    port = port.wrapping_add(2).max(PORT_BASE);
                    let setup = BrokerSetup { port, ..setup };
                    result = run_one(
                        &programs,
                        broker,
                        scenario,
                        size,
                        setup,
                        &scratch,
                        args.loadgen_cpu,
                    );
                }
                match &result {
                    Ok(measurement) => {
                        eprintln!("          {}", report::one_line(scenario, measurement))
                    }
                    Err(error) => eprintln!("          FAILED: {error:#}"),
                }
                comparison.runs.push(Run {
                    round,
                    scenario,
                    broker,
                    measurement: result.as_ref().ok().cloned(),
                    error: result.err().map(|error| format!("{error:#}")),
                });
            }
        }
    }
    comparison.elapsed_secs = started.elapsed().as_secs_f64();
    let written = report::write(&comparison, &out)?;
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    let failed = comparison.runs.iter().filter(|run| run.error.is_some()).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} runs failed (see above)", comparison.runs.len());
    }
    Ok(())
}

fn run_one(
    programs: &Programs,
    broker: BrokerKind,
    scenario: Scenario,
    size: Size,
    setup: BrokerSetup,
    scratch: &Path,
    loadgen_cpu: usize,
) -> anyhow::Result<Measurement> {
    let running = RunningBroker::start(broker, programs, setup, scratch)?;
    let json = scratch.join(format!("loadgen-{}-{}.json", broker.name(), scenario.name()));
    let result = scenarios::run(scenario, size, &running, &programs.shardmq, loadgen_cpu, &json);
    running.stop();
    result
}

/// `git describe`-like identity of the tree measured: the short commit, `-dirty` when changed.
pub fn commit(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
        _ => commit,
    }
}

//! Worker processes (`--processes N`): the load generator re-executes itself N times, each child
//! running every N-th client, so one run is not capped by one process's open-file limit.
//!
//! The parent coordinates exactly as a single process does, from the sum of its children's
//! counts: children report on stdout (one JSON [`ChildMessage`] per line) and take the
//! parent's [`Command`]s on stdin (one JSON line each). At the end each child sends its raw
//! report, sparse histograms included, and the parent merges them as it merges workers. All
//! processes read the same CLOCK_MONOTONIC, so latencies across processes stay exact.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{duration_ns, now_ns};
use crate::config::{ProcessShare, RunConfig, Scenario};
use crate::histogram::Latency;
use crate::report::{Report, WorkerReport};
use crate::run::{
    Command, Coordinator, Progress, ProgressPrinter, RunError, Workers, COORDINATOR_TICK,
};
use crate::shared::LiveCounts;

/// How often a child sends its counts: the parent's phase decisions are this much late at most.
const CHILD_REPORT_INTERVAL: Duration = Duration::from_millis(50);
/// How far ahead the parent sets the common start: time for every child to exec and start its
/// executors before the first connection is due.
const PROCESS_START_LEAD: Duration = Duration::from_millis(500);
/// The most worker processes of one run.
pub const PROCESSES_MAX: u32 = 256;

/// What a child tells the parent, one JSON object per stdout line.
// A few messages per second, each moved once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChildMessage {
    /// The child's current counts and the latencies measured since its previous message.
    Progress { counts: LiveCounts, latency: Latency, connect_latency: Latency },
    /// Everything the child measured; its last message.
    Report { report: WorkerReport },
}

/// Runs this process as child `config.share` of a multi-process run: works its share of the
/// clients, follows the parent's commands from stdin, reports on stdout.
pub fn run_child(config: &RunConfig, start_ns: u64) -> Result<(), RunError> {
    let workers = Workers::start(config, start_ns)?;
    let (command_sender, commands) = mpsc::channel::<Option<Command>>();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let command = line.ok().and_then(|line| serde_json::from_str(&line).ok());
            let ended = command.is_none();
            if command_sender.send(command).is_err() || ended {
                return;
            }
        }
        // The parent closed our stdin: it is gone, so finish.
        let _ = command_sender.send(None);
    });
    let mut latency = Latency::new();
    let mut connect_latency = Latency::new();
    let mut next_report_ns = now_ns();
    let mut finishing = false;
    loop {
        thread::sleep(COORDINATOR_TICK);
        for sample in workers.progress.try_iter() {
            latency.merge(&sample.latency);
            connect_latency.merge(&sample.connect_latency);
        }
        for command in commands.try_iter() {
            // An unreadable line or a closed stdin means the parent is gone or broken: finish.
            let command = command.unwrap_or(Command::Finish);
            finishing |= command == Command::Finish;
            workers.apply(command);
        }
        if workers.any_ended() && !finishing {
            finishing = true;
            workers.apply(Command::Finish);
        }
        if now_ns() >= next_report_ns || (finishing && workers.all_ended()) {
            next_report_ns = now_ns() + duration_ns(CHILD_REPORT_INTERVAL);
            let message = ChildMessage::Progress {
                counts: workers.shared.totals(),
                latency: std::mem::take(&mut latency),
                connect_latency: std::mem::take(&mut connect_latency),
            };
            send_to_parent(&message)?;
        }
        if finishing && workers.all_ended() {
            break;
        }
    }
    let report = workers.join()?;
    send_to_parent(&ChildMessage::Report { report })
}

fn send_to_parent(message: &ChildMessage) -> Result<(), RunError> {
    let line =
        serde_json::to_string(message).map_err(|error| RunError::Process(error.to_string()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|error| RunError::Process(format!("cannot report to the parent: {error}")))
}

/// What the parent hears from one child.
// Moved once per line read, like `ChildMessage`.
#[allow(clippy::large_enum_variant)]
enum Heard {
    Message(ChildMessage),
    /// A stdout line that is not a [`ChildMessage`].
    Garbage(String),
    /// The child's stdout closed: it exited.
    Ended,
}

/// What the parent hears, and from which child (its index).
type HeardFrom = (usize, Heard);

/// One running child.
struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    counts: LiveCounts,
    report: Option<WorkerReport>,
}

impl ChildProcess {
    fn send(&mut self, command: Command) {
        let Some(stdin) = &mut self.stdin else { return };
        let sent = serde_json::to_string(&command)
            .map_err(std::io::Error::other)
            .and_then(|line| writeln!(stdin, "{line}"))
            .and_then(|()| stdin.flush());
        if sent.is_err() {
            // The child is gone; its stdout's end tells the parent why.
            self.stdin = None;
        }
    }
}

/// Kills every child still running (the run failed).
fn kill_all(children: &mut [ChildProcess]) {
    for child in children {
        let _ = child.child.kill();
        let _ = child.child.wait();
    }
}

/// Runs `config` over `processes` child processes of `program` invoked with `args` (the
/// loadgen flags, without `--processes`), and returns the merged report.
pub fn run_processes(
    config: &RunConfig,
    processes: u32,
    program: &Path,
    args: &[OsString],
    progress: Progress,
) -> Result<Report, RunError> {
    config.check()?;
    if processes == 0 || processes > PROCESSES_MAX {
        return Err(
            crate::config::invalid("--processes", format!("must be 1..={PROCESSES_MAX}")).into()
        );
    }
    let started_ns = now_ns();
    let start_ns = started_ns + duration_ns(PROCESS_START_LEAD);
    let (mut children, heard) = spawn_children(config, processes, program, args, start_ns)?;

    let whole = RunConfig { share: ProcessShare::WHOLE, ..config.clone() };
    let mut coordinator = Coordinator::new(&whole, started_ns);
    let messaging = matches!(config.scenario, Scenario::Messaging(_));
    let mut printer = ProgressPrinter::new(progress, messaging, started_ns);
    coordinate(&mut children, &heard, &mut coordinator, &mut printer)?;
    let mut timeline = coordinator.timeline;
    timeline.finished_ns = now_ns();
    let merged = merge_reports(children);
    Ok(Report::build(&whole, &merged, timeline))
}

/// Starts the `processes` children, each told its share, the run's identity and the common
/// start; returns them and the channel their stdout lines arrive on. If one cannot start, the
/// ones already started are killed.
fn spawn_children(
    config: &RunConfig,
    processes: u32,
    program: &Path,
    args: &[OsString],
    start_ns: u64,
) -> Result<(Vec<ChildProcess>, mpsc::Receiver<HeardFrom>), RunError> {
    let (sender, heard) = mpsc::channel::<HeardFrom>();
    let mut children = Vec::new();
    for index in 0..processes {
        let spawned = Process::new(program)
            .args(args)
            .arg("--process-share")
            .arg(format!("{index}/{processes}"))
            .args(["--run-tag", &config.run_tag, "--run-id", &config.run_id.to_string()])
            .args(["--start-ns", &start_ns.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                kill_all(&mut children);
                return Err(RunError::Process(format!(
                    "cannot start {}: {error}",
                    program.display()
                )));
            }
        };
        listen_to(child.stdout.take(), sender.clone(), children.len());
        let stdin = child.stdin.take();
        children.push(ChildProcess { child, stdin, counts: LiveCounts::default(), report: None });
    }
    drop(sender);
    Ok((children, heard))
}

/// Reads child `child_index`'s stdout on a thread of its own and passes on what it said, then
/// [`Heard::Ended`] when it closes.
fn listen_to(stdout: Option<ChildStdout>, sender: mpsc::Sender<HeardFrom>, child_index: usize) {
    thread::spawn(move || {
        if let Some(stdout) = stdout {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let heard = match serde_json::from_str(&line) {
                    Ok(message) => Heard::Message(message),
                    Err(_) => Heard::Garbage(line),
                };
                if sender.send((child_index, heard)).is_err() {
                    return;
                }
            }
        }
        let _ = sender.send((child_index, Heard::Ended));
    });
}

/// Coordinates the children from the sum of their counts until each has sent its report;
/// kills them all and fails if one misbehaves or exits without a report.
fn coordinate(
    children: &mut [ChildProcess],
    heard: &mpsc::Receiver<HeardFrom>,
    coordinator: &mut Coordinator<'_>,
    printer: &mut ProgressPrinter,
) -> Result<(), RunError> {
    while children.iter().any(|child| child.report.is_none()) {
        thread::sleep(COORDINATOR_TICK);
        if let Some(failure) = take_heard(children, heard, printer) {
            kill_all(children);
            return Err(RunError::Process(failure));
        }
        let mut totals = LiveCounts::default();
        for child in children.iter() {
            totals.add(&child.counts);
        }
        if let Some(command) = coordinator.step(&totals) {
            for child in children.iter_mut() {
                child.send(command);
            }
        }
        printer.maybe_print(coordinator.phase_name(), &totals, coordinator.clients);
    }
    Ok(())
}

/// Takes in everything the children said since the last tick; returns the first failure
/// among it.
fn take_heard(
    children: &mut [ChildProcess],
    heard: &mpsc::Receiver<HeardFrom>,
    printer: &mut ProgressPrinter,
) -> Option<String> {
    let mut failure = None;
    for (index, heard) in heard.try_iter() {
        match heard {
            Heard::Message(ChildMessage::Progress { counts, latency, connect_latency }) => {
                children[index].counts = counts;
                printer.sample(&latency, &connect_latency);
            }
            Heard::Message(ChildMessage::Report { report }) => {
                children[index].report = Some(report);
            }
            Heard::Garbage(line) => {
                failure.get_or_insert(format!("worker process {index} said {line:?}"));
            }
            Heard::Ended if children[index].report.is_none() => {
                let status = children[index].child.wait();
                failure.get_or_insert(format!(
                    "worker process {index} exited without a report ({status:?})"
                ));
            }
            Heard::Ended => {}
        }
    }
    failure
}

/// Closes each child's stdin, waits for it to exit, and merges the reports they sent.
fn merge_reports(children: Vec<ChildProcess>) -> WorkerReport {
    let mut merged = WorkerReport::default();
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.child.wait();
        if let Some(report) = child.report {
            merged.merge(report);
        }
    }
    merged
}

/// The loadgen flags of this process without `--processes N`, for its children.
pub fn child_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        if arg == "--processes" {
            skip_value = true;
            continue;
        }
        if arg.to_str().is_some_and(|text| text.starts_with("--processes=")) {
            continue;
        }
        kept.push(arg);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_args_drop_only_processes() {
        let args = ["loadgen", "conn", "--processes", "3", "--target", "x:1", "--processes=2"];
        let kept = child_args(args.iter().map(OsString::from));
        assert_eq!(kept, ["loadgen", "conn", "--target", "x:1"].map(OsString::from));
    }
}

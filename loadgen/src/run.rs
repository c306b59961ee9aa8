//! The coordinator: starts the workers, walks the run through its phases, prints live progress,
//! and merges the workers' reports.
//!
//! It runs on the calling thread (not an executor) and talks to the workers only through
//! [`Shared`]'s flags and counters and the progress channel.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use shardmq_io::runtime::{start_shards, ShardHandle, ShardPanicked};

use crate::clock::{duration_ns, now_ns};
use crate::config::{RunConfig, Scenario};
use crate::histogram::Latency;
use crate::report::{Report, Timeline, WorkerReport};
use crate::shared::{LiveCounts, Shared};
use crate::worker::{run_worker, ProgressSample, WorkerInput, PROGRESS_INTERVAL};

/// How often the coordinator looks at the counters.
pub(crate) const COORDINATOR_TICK: Duration = Duration::from_millis(10);
/// How far ahead of "now" a start time is set, so every worker sees it before it passes.
pub(crate) const START_LEAD: Duration = Duration::from_millis(50);
/// After the stop: once every expected delivery arrived, how long nothing more must arrive
/// (duplicates can make the count reach the expectation while a message is still on its way).
const DRAIN_SETTLE: Duration = Duration::from_millis(100);
/// After the stop: how long without any receipt ends the wait for missing deliveries (QoS 0
/// losses mean the expectation is never reached).
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// After the stop: the longest wait for deliveries, whatever still trickles in (default of
/// `--drain-timeout`). Longer than a publisher's own acknowledgement drain, so publishers always
/// settle first.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a run could not be carried out (as opposed to what it measured).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start the workers: {0}")]
    Start(std::io::Error),
    #[error(transparent)]
    WorkerPanicked(#[from] ShardPanicked),
    #[error("cannot write {path}: {error}")]
    Json { path: String, error: String },
    #[error("worker process: {0}")]
    Process(String),
}

/// How a run reports while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A line on stderr every second.
    Stderr,
    /// Nothing until the end (tests, worker processes).
    Silent,
}

/// Where the run stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Clients are being opened (conn) or set up (messaging).
    SettingUp,
    /// conn: every attempt ended; holding until this time.
    Holding { until_ns: u64 },
    /// Publishers publish until this time.
    Publishing { stop_ns: u64 },
    /// Publishers stopped; waiting for the last deliveries.
    Draining { since_ns: u64, last_received: u64, last_change_ns: u64 },
    /// Every client was told to finish.
    Finishing,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::SettingUp => "setting up",
            Phase::Holding { .. } => "holding",
            Phase::Publishing { .. } => "publishing",
            Phase::Draining { .. } => "draining",
            Phase::Finishing => "finishing",
        }
    }
}

/// Runs one load-generator run in this process and returns its report.
pub fn run(config: RunConfig, progress: Progress) -> Result<Report, RunError> {
    config.check()?;
    if let Scenario::Retained(_) = config.scenario {
        return crate::retained::run(&config, progress);
    }
    if let Scenario::Churn(_) = config.scenario {
        return crate::churn::run_until(&config, progress, crate::stop::flag().clone());
    }
    let (raw, timeline) = run_raw(&config, progress)?;
    Ok(Report::build(&config, &raw, timeline))
}

/// How many of the run's clients this process runs.
fn clients_here(config: &RunConfig) -> u64 {
    let count = config.client_count();
    let processes = u64::from(config.share.count);
    let index = u64::from(config.share.index);
    if index >= count {
        0
    } else {
        (count - index).div_ceil(processes)
    }
}

/// How many publishers this process runs.
fn publishers_here(config: &RunConfig) -> u64 {
    (0..config.client_count())
        .filter(|&index| {
            config.in_this_process(index)
                && matches!(config.role(index), crate::config::Role::Publisher(_))
        })
        .count() as u64
}

/// Workers started in this process, with the channel their progress samples come on.
pub(crate) struct Workers {
    pub shared: Arc<Shared>,
    pub handles: Vec<ShardHandle<WorkerReport>>,
    pub progress: mpsc::Receiver<ProgressSample>,
}

impl Workers {
    /// Starts `config.workers` workers; `conn` clients are paced from `start_ns`.
    pub fn start(config: &RunConfig, start_ns: u64) -> Result<Workers, RunError> {
        let config = Arc::new(config.clone());
        let shared = Arc::new(Shared::new(config.workers));
        let (progress_sender, progress) = mpsc::channel::<ProgressSample>();
        let inputs: Vec<WorkerInput> = (0..config.workers)
            .map(|index| WorkerInput {
                index,
                config: config.clone(),
                shared: shared.clone(),
                progress: progress_sender.clone(),
                start_ns,
            })
            .collect();
        drop(progress_sender);
        let placement = config.placement();
        let handles = start_shards(placement, inputs, |_, input| run_worker(input))
            .map_err(RunError::Start)?;
        Ok(Workers { shared, handles, progress })
    }

    /// Carries out a coordinator's order.
    pub fn apply(&self, command: Command) {
        match command {
            Command::StartPublishing { at_ns } => {
                self.shared.publish_start_ns.store(at_ns, Ordering::Release);
            }
            Command::StopPublishing => self.shared.stop_publishing.store(true, Ordering::Release),
            Command::Finish => self.shared.raise_finish(),
        }
    }

    /// True once a worker has ended: before `finish` that means it panicked.
    pub fn any_ended(&self) -> bool {
        self.handles.iter().any(ShardHandle::is_finished)
    }

    pub fn all_ended(&self) -> bool {
        self.handles.iter().all(ShardHandle::is_finished)
    }

    /// Joins every worker and merges their reports.
    pub fn join(self) -> Result<WorkerReport, RunError> {
        let mut merged = WorkerReport::default();
        for handle in self.handles {
            merged.merge(handle.join()?);
        }
        Ok(merged)
    }
}

/// Runs the workers through every phase; returns their merged report and the phase times.
pub fn run_raw(
    config: &RunConfig,
    progress: Progress,
) -> Result<(WorkerReport, Timeline), RunError> {
    let started_ns = now_ns();
    let workers = Workers::start(config, started_ns + duration_ns(START_LEAD))?;
    let mut coordinator = Coordinator::new(config, started_ns);
    let messaging = matches!(config.scenario, Scenario::Messaging(_));
    let mut printer = ProgressPrinter::new(progress, messaging, started_ns);
    loop {
        thread::sleep(COORDINATOR_TICK);
        for sample in workers.progress.try_iter() {
            printer.sample(&sample.latency, &sample.connect_latency);
        }
        let totals = workers.shared.totals();
        if workers.any_ended() && !coordinator.finishing() {
            // A worker ended before being told to: it panicked. Stop the others; the join below
            // reports the panic.
            workers.apply(coordinator.abort());
        }
        if let Some(command) = coordinator.step(&totals) {
            workers.apply(command);
        }
        printer.maybe_print(coordinator.phase_name(), &totals, coordinator.clients);
        if coordinator.finishing() && workers.all_ended() {
            break;
        }
    }
    let mut timeline = coordinator.timeline;
    timeline.finished_ns = now_ns();
    Ok((workers.join()?, timeline))
}

/// An order from the coordinator to every worker (of every process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    StartPublishing { at_ns: u64 },
    StopPublishing,
    Finish,
}

/// Decides when each phase ends from the live counts of the clients it coordinates (those of
/// this process, or of every worker process).
pub(crate) struct Coordinator<'run> {
    config: &'run RunConfig,
    /// Clients and publishers whose counts this coordinator sees.
    pub clients: u64,
    publishers: u64,
    phase: Phase,
    pub timeline: Timeline,
}

impl<'run> Coordinator<'run> {
    fn drain_timeout(&self) -> Duration {
        match &self.config.scenario {
            Scenario::Messaging(messaging) => messaging.drain_timeout,
            _ => DRAIN_TIMEOUT,
        }
    }

    pub fn new(config: &'run RunConfig, started_ns: u64) -> Coordinator<'run> {
        Coordinator {
            config,
            clients: clients_here(config),
            publishers: publishers_here(config),
            phase: Phase::SettingUp,
            timeline: Timeline { started_ns, ..Timeline::default() },
        }
    }

    pub fn finishing(&self) -> bool {
        self.phase == Phase::Finishing
    }

    pub fn phase_name(&self) -> &'static str {
        self.phase.name()
    }

    /// Ends the run at once (a worker died).
    pub fn abort(&mut self) -> Command {
        self.phase = Phase::Finishing;
        Command::Finish
    }

    /// Publishing ends now: drain.
    fn stop_publishing(&mut self, now: u64, totals: &LiveCounts) -> Command {
        self.timeline.publish_stop_ns = now;
        self.phase =
            Phase::Draining { since_ns: now, last_received: totals.received, last_change_ns: now };
        Command::StopPublishing
    }

    /// Moves to the next phase when the current one is over; returns the order that starts it.
    pub fn step(&mut self, totals: &LiveCounts) -> Option<Command> {
        let now = now_ns();
        if crate::stop::requested() && !self.timeline.stopped_early {
            // Ctrl-C / SIGTERM: publishers stop and their messages get the usual short drain;
            // any other phase ends at once.
            self.timeline.stopped_early = true;
            match self.phase {
                Phase::Publishing { .. } => return Some(self.stop_publishing(now, totals)),
                Phase::Draining { .. } | Phase::Finishing => {}
                Phase::SettingUp | Phase::Holding { .. } => {
                    self.phase = Phase::Finishing;
                    return Some(Command::Finish);
                }
            }
        }
        let set_up = totals.setups_done >= self.clients;
        let (phase, command) = match (self.phase, &self.config.scenario) {
            (Phase::SettingUp, Scenario::Conn(conn)) if set_up => {
                (Phase::Holding { until_ns: now + duration_ns(conn.hold) }, None)
            }
            (Phase::SettingUp, Scenario::Messaging(_)) if set_up => {
                let at_ns = now + duration_ns(START_LEAD);
                self.timeline.publish_start_ns = at_ns;
                let stop_ns = at_ns + duration_ns(self.config.duration);
                (Phase::Publishing { stop_ns }, Some(Command::StartPublishing { at_ns }))
            }
            (Phase::Holding { until_ns }, _) if now >= until_ns => {
                (Phase::Finishing, Some(Command::Finish))
            }
            (Phase::Publishing { stop_ns }, _) if now >= stop_ns => {
                let command = self.stop_publishing(now, totals);
                (self.phase, Some(command))
            }
            (Phase::Draining { since_ns, last_received, last_change_ns }, _) => {
                let last_change_ns =
                    if totals.received != last_received { now } else { last_change_ns };
                let quiet_ns = now - last_change_ns;
                let publishers_done = totals.publishers_done >= self.publishers;
                let settled = publishers_done
                    && totals.received >= totals.expected
                    && quiet_ns >= duration_ns(DRAIN_SETTLE);
                // Cut short, the run waits for the last deliveries as briefly as when they stop
                // coming: DRAIN_QUIET from the stop.
                let hurried =
                    self.timeline.stopped_early && now - since_ns >= duration_ns(DRAIN_QUIET);
                let gave_up = (publishers_done && quiet_ns >= duration_ns(DRAIN_QUIET))
                    || now - since_ns >= duration_ns(self.drain_timeout())
                    || hurried;
                if settled || gave_up {
                    (Phase::Finishing, Some(Command::Finish))
                } else {
                    let draining = Phase::Draining {
                        since_ns,
                        last_received: totals.received,
                        last_change_ns,
                    };
                    (draining, None)
                }
            }
            (phase, _) => (phase, None),
        };
        self.phase = phase;
        command
    }
}

/// Prints one progress line per [`PROGRESS_INTERVAL`] on stderr.
pub(crate) struct ProgressPrinter {
    progress: Progress,
    /// Messaging lines show message rates and latency; conn lines show connects.
    messaging: bool,
    started_ns: u64,
    next_ns: u64,
    previous: LiveCounts,
    previous_ns: u64,
    latency: Latency,
    connect_latency: Latency,
}

impl ProgressPrinter {
    pub fn new(progress: Progress, messaging: bool, started_ns: u64) -> ProgressPrinter {
        ProgressPrinter {
            progress,
            messaging,
            started_ns,
            next_ns: started_ns + duration_ns(PROGRESS_INTERVAL),
            previous: LiveCounts::default(),
            previous_ns: started_ns,
            latency: Latency::new(),
            connect_latency: Latency::new(),
        }
    }

    pub fn sample(&mut self, latency: &Latency, connect_latency: &Latency) {
        self.latency.merge(latency);
        self.connect_latency.merge(connect_latency);
    }

    pub fn maybe_print(&mut self, phase: &str, totals: &LiveCounts, clients: u64) {
        let now = now_ns();
        if self.progress == Progress::Silent || now < self.next_ns {
            return;
        }
        self.next_ns += duration_ns(PROGRESS_INTERVAL);
        let seconds = (now - self.previous_ns) as f64 / 1e9;
        let rate = |current: u64, previous: u64| current.saturating_sub(previous) as f64 / seconds;
        let p99 = |latency: &Latency| {
            if latency.count() == 0 {
                "-".to_owned()
            } else {
                format!("{:.3} ms", latency.quantile_ns(0.99) as f64 / 1e6)
            }
        };
        let elapsed = (now - self.started_ns) as f64 / 1e9;
        let line = if self.messaging {
            format!(
                "[{elapsed:>6.1}s] {:<10} up {}/{}  failed {}  out {:.0} msg/s  in {:.0} msg/s  \
                 p99 {}",
                phase,
                totals.up,
                clients,
                totals.setups_failed,
                rate(totals.sent, self.previous.sent),
                rate(totals.received, self.previous.received),
                p99(&self.latency),
            )
        } else {
            format!(
                "[{elapsed:>6.1}s] {:<10} up {}/{}  failed {}  connects {:.0}/s  connect p99 {}",
                phase,
                totals.up,
                clients,
                totals.setups_failed,
                rate(totals.setups_done, self.previous.setups_done),
                p99(&self.connect_latency),
            )
        };
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = writeln!(std::io::stderr(), "{line}");
        self.previous = *totals;
        self.previous_ns = now;
        self.latency.reset();
        self.connect_latency.reset();
    }
}

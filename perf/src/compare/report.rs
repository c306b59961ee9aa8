//! The comparison's results: every run, the per-broker medians (with min and max) of each figure,
//! the shardmq/peer ratios, the issue's targets, and the files they are written to.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use super::brokers::{BrokerKind, RUMQTTD_VERSION};
use super::plot;
use super::scenarios::{Measurement, Scenario, Size};

/// One scenario run against one broker in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub scenario: Scenario,
    #[serde(serialize_with = "broker_name")]
    pub broker: BrokerKind,
    pub measurement: Option<Measurement>,
    pub error: Option<String>,
}

fn broker_name<S: serde::Serializer>(
    broker: &BrokerKind,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(broker.name())
}

/// The whole comparison, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub date: String,
    pub commit: String,
    pub machine: Machine,
    pub quick: bool,
    pub rounds: usize,
    pub size: Size,
    pub brokers: Vec<String>,
    pub peers: BTreeMap<String, String>,
    pub scenarios: Vec<Scenario>,
    pub elapsed_secs: f64,
    pub runs: Vec<Run>,
    /// scenario → broker → figure → spread over the rounds.
    pub summary: BTreeMap<String, BTreeMap<String, BTreeMap<String, Spread>>>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

/// Median, min and max of one figure over the rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.retain(|value| value.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[middle]
        } else {
            (values[middle - 1] + values[middle]) / 2.0
        };
        Some(Spread { median, min: values[0], max: values[values.len() - 1], rounds: values.len() })
    }
}

/// One of the issue's targets, judged on this run's medians.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub scenario: Scenario,
    pub target: String,
    pub shardmq: Option<f64>,
    pub reference: Option<f64>,
    pub met: Option<bool>,
}

/// A figure of the tables: its JSON name, its heading, and whether more is better.
struct Figure {
    key: &'static str,
    label: &'static str,
    higher_is_better: bool,
    get: fn(&Measurement) -> Option<f64>,
}

const MESSAGE_FIGURES: &[Figure] = &[
    Figure {
        key: "msgs_per_sec",
        label: "deliveries/s",
        higher_is_better: true,
        get: |m| m.msgs_per_sec,
    },
    Figure {
        key: "sent_per_sec",
        label: "published/s",
        higher_is_better: true,
        get: |m| m.sent_per_sec,
    },
    Figure {
        key: "cpu_secs_per_million",
        label: "broker CPU s / M deliveries",
        higher_is_better: false,
        get: |m| m.cpu_secs_per_million,
    },
    Figure { key: "p50_us", label: "latency p50 µs", higher_is_better: false, get: |m| m.p50_us },
    Figure { key: "p99_us", label: "latency p99 µs", higher_is_better: false, get: |m| m.p99_us },
    Figure {
        key: "p99_9_us",
        label: "latency p99.9 µs",
        higher_is_better: false,
        get: |m| m.p99_9_us,
    },
    Figure {
        key: "lost",
        label: "deliveries lost",
        higher_is_better: false,
        get: |m| m.lost.map(|n| n as f64),
    },
];

const IDLE_FIGURES: &[Figure] = &[
    Figure {
        key: "rss_bytes_per_connection",
        label: "broker RSS bytes / connection",
        higher_is_better: false,
        get: |m| m.rss_bytes_per_connection,
    },
    Figure {
        key: "established",
        label: "connections held",
        higher_is_better: true,
        get: |m| m.established.map(|n| n as f64),
    },
];

const CONNECT_FIGURES: &[Figure] = &[
    Figure {
        key: "connects_per_sec",
        label: "connects/s",
        higher_is_better: true,
        get: |m| m.connects_per_sec,
    },
    Figure {
        key: "connect_p99_us",
        label: "connect p99 µs",
        higher_is_better: false,
        get: |m| m.connect_p99_us,
    },
    Figure {
        key: "cpu_us_per_connect_phase",
        label: "broker CPU µs / connect (set-up phase)",
        higher_is_better: false,
        get: |m| m.cpu_us_per_connect_phase,
    },
    Figure {
        key: "connect_capacity_per_sec",
        label: "broker core's capacity, connects/s (1 s / CPU per connect)",
        higher_is_better: true,
        get: |m| m.connect_capacity_per_sec,
    },
    Figure {
        key: "cpu_us_per_connect",
        label: "broker CPU µs / connection, whole run (with disconnect)",
        higher_is_better: false,
        get: |m| m.cpu_us_per_connect,
    },
    Figure {
        key: "established",
        label: "connections made",
        higher_is_better: true,
        get: |m| m.established.map(|n| n as f64),
    },
];

fn figures(scenario: Scenario) -> &'static [Figure] {
    match scenario {
        Scenario::Idle => IDLE_FIGURES,
        Scenario::Connect => CONNECT_FIGURES,
        _ => MESSAGE_FIGURES,
    }
}

/// What a target compares shardmq's median with.
#[derive(Debug, Clone, Copy)]
enum Reference {
    /// A peer's median, times `factor`.
    Peer { peer: BrokerKind, factor: f64 },
    /// A fixed bound.
    Bound(f64),
}

/// One of the issue's targets, before it is judged.
struct Goal {
    scenario: Scenario,
    text: &'static str,
    get: fn(&Measurement) -> Option<f64>,
    reference: Reference,
    /// Met when shardmq's median is at least the reference; otherwise when it is at most.
    at_least: bool,
}

impl Goal {
    fn compare(&self, ours: f64, reference: f64) -> bool {
        if self.at_least {
            ours >= reference
        } else {
            ours <= reference
        }
    }
}

/// The pairs' and the fan-out's targets: the same three for each.
fn throughput_goals(scenario: Scenario) -> [Goal; 3] {
    [
        Goal {
            scenario,
            text: "deliveries/s ≥ 2 × Mosquitto",
            get: |m| m.msgs_per_sec,
            reference: Reference::Peer { peer: BrokerKind::Mosquitto, factor: 2.0 },
            at_least: true,
        },
        Goal {
            scenario,
            text: "deliveries/s > rumqttd",
            get: |m| m.msgs_per_sec,
            reference: Reference::Peer { peer: BrokerKind::Rumqttd, factor: 1.0 },
            at_least: true,
        },
        Goal {
            scenario,
            text: "CPU per delivery ≤ ½ Mosquitto",
            get: |m| m.cpu_secs_per_million,
            reference: Reference::Peer { peer: BrokerKind::Mosquitto, factor: 0.5 },
            at_least: false,
        },
    ]
}

/// The latency, idle and connect scenarios' targets, in the order they are reported.
const OTHER_GOALS: [Goal; 6] = [
    Goal {
        scenario: Scenario::Latency,
        text: "p99 ≤ Mosquitto's",
        get: |m| m.p99_us,
        reference: Reference::Peer { peer: BrokerKind::Mosquitto, factor: 1.0 },
        at_least: false,
    },
    Goal {
        scenario: Scenario::Latency,
        text: "p99 < 1 ms (µs)",
        get: |m| m.p99_us,
        reference: Reference::Bound(1000.0),
        at_least: false,
    },
    Goal {
        scenario: Scenario::Idle,
        text: "RSS/connection ≤ Mosquitto's",
        get: |m| m.rss_bytes_per_connection,
        reference: Reference::Peer { peer: BrokerKind::Mosquitto, factor: 1.0 },
        at_least: false,
    },
    Goal {
        scenario: Scenario::Idle,
        text: "RSS/connection ≤ 1 KB",
        get: |m| m.rss_bytes_per_connection,
        reference: Reference::Bound(1024.0),
        at_least: false,
    },
    Goal {
        scenario: Scenario::Connect,
        text: "≥ 20,000 connects/s on one shard",
        get: |m| m.connects_per_sec,
        reference: Reference::Bound(20_000.0),
        at_least: true,
    },
    Goal {
        scenario: Scenario::Connect,
        text: "broker core's capacity ≥ 20,000 connects/s (its CPU per connect)",
        get: |m| m.connect_capacity_per_sec,
        reference: Reference::Bound(20_000.0),
        at_least: true,
    },
];

impl Comparison {
    pub fn new(
        workspace: &Path,
        quick: bool,
        rounds: usize,
        size: Size,
        brokers: &[BrokerKind],
        scenarios: &[Scenario],
    ) -> Comparison {
        let mut peers = BTreeMap::new();
        peers.insert(
            "mosquitto".to_string(),
            command_line(&["/usr/sbin/mosquitto", "-h"], "mosquitto version"),
        );
        peers.insert(
            "rumqttd".to_string(),
            format!("rumqttd {RUMQTTD_VERSION} (crates.io, --no-default-features)"),
        );
        Comparison {
            date: command_line(&["date", "-u", "+%Y-%m-%d"], ""),
            commit: super::commit(workspace),
            machine: Machine {
                cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
                cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                    .ok()
                    .and_then(|info| {
                        info.lines()
                            .find(|line| line.starts_with("model name"))
                            .and_then(|line| line.split_once(':'))
                            .map(|(_, model)| model.trim().to_string())
                    })
                    .unwrap_or_default(),
                kernel: command_line(&["uname", "-r"], ""),
            },
            quick,
            rounds,
            size,
            brokers: brokers.iter().map(|broker| broker.name().to_string()).collect(),
            peers,
            scenarios: scenarios.to_vec(),
            elapsed_secs: 0.0,
            runs: Vec::new(),
            summary: BTreeMap::new(),
            targets: Vec::new(),
        }
    }

    fn measurements(
        &self,
        scenario: Scenario,
        broker: BrokerKind,
    ) -> impl Iterator<Item = &Measurement> {
        self.runs
            .iter()
            .filter(move |run| run.scenario == scenario && run.broker == broker)
            .filter_map(|run| run.measurement.as_ref())
    }

    fn spread(
        &self,
        scenario: Scenario,
        broker: BrokerKind,
        get: fn(&Measurement) -> Option<f64>,
    ) -> Option<Spread> {
        Spread::of(self.measurements(scenario, broker).filter_map(get).collect())
    }

    fn median(
        &self,
        scenario: Scenario,
        broker: BrokerKind,
        get: fn(&Measurement) -> Option<f64>,
    ) -> Option<f64> {
        self.spread(scenario, broker, get).map(|spread| spread.median)
    }

    fn brokers(&self) -> Vec<BrokerKind> {
        self.brokers.iter().filter_map(|name| BrokerKind::parse(name).ok()).collect()
    }

    fn summarise(&mut self) {
        let mut summary = BTreeMap::new();
        for &scenario in &self.scenarios {
            let mut per_broker = BTreeMap::new();
            for broker in self.brokers() {
                let mut per_figure = BTreeMap::new();
                for figure in figures(scenario) {
                    if let Some(spread) = self.spread(scenario, broker, figure.get) {
                        per_figure.insert(figure.key.to_string(), spread);
                    }
                }
                if !per_figure.is_empty() {
                    per_broker.insert(broker.name().to_string(), per_figure);
                }
            }
            summary.insert(scenario.name().to_string(), per_broker);
        }
        self.summary = summary;
        self.targets = self.judge_targets();
    }

    /// The issue's targets on this run's medians (recorded, never asserted).
    fn judge_targets(&self) -> Vec<Target> {
        let mut goals = Vec::new();
        for scenario in [Scenario::Pairs, Scenario::Fanout] {
            goals.extend(throughput_goals(scenario));
        }
        goals.extend(OTHER_GOALS);
        goals
            .iter()
            .filter(|goal| self.scenarios.contains(&goal.scenario))
            .map(|goal| self.judge(goal))
            .collect()
    }

    /// Judges one target on shardmq's median and its reference.
    fn judge(&self, goal: &Goal) -> Target {
        let ours = self.median(goal.scenario, BrokerKind::Shardmq, goal.get);
        let (reference, met) = match goal.reference {
            Reference::Peer { peer, factor } => {
                let theirs = self.median(goal.scenario, peer, goal.get).map(|value| value * factor);
                let met = match (ours, theirs) {
                    (Some(ours), Some(theirs)) => Some(goal.compare(ours, theirs)),
                    _ => None,
                };
                (theirs, met)
            }
            Reference::Bound(bound) => (Some(bound), ours.map(|ours| goal.compare(ours, bound))),
        };
        Target {
            scenario: goal.scenario,
            target: goal.text.to_string(),
            shardmq: ours,
            reference,
            met,
        }
    }
}

/// The progress line printed after each run.
pub fn one_line(scenario: Scenario, m: &Measurement) -> String {
    let problems = if m.problems.is_empty() {
        String::new()
    } else {
        format!("  [{}]", m.problems.join("; "))
    };
    match scenario {
        Scenario::Idle => format!(
            "{} connections, {:.0} B/connection (RSS {} → {} KiB){problems}",
            m.established.unwrap_or(0),
            m.rss_bytes_per_connection.unwrap_or(f64::NAN),
            m.broker_rss_before / 1024,
            m.broker_rss_peak / 1024
        ),
        Scenario::Connect => format!(
            "{} connections, {:.0}/s, p99 {:.0} µs, {:.1} µs CPU each{problems}",
            m.established.unwrap_or(0),
            m.connects_per_sec.unwrap_or(f64::NAN),
            m.connect_p99_us.unwrap_or(f64::NAN),
            m.cpu_us_per_connect.unwrap_or(f64::NAN)
        ),
        _ => format!(
            "{:.0} deliveries/s, {:.2} CPU s/M, p50 {:.0} µs, p99 {:.0} µs, lost {}{problems}",
            m.msgs_per_sec.unwrap_or(f64::NAN),
            m.cpu_secs_per_million.unwrap_or(f64::NAN),
            m.p50_us.unwrap_or(f64::NAN),
            m.p99_us.unwrap_or(f64::NAN),
            m.lost.unwrap_or(0)
        ),
    }
}

/// Writes `<date>-<commit>.json`, `.md` and the SVG plots into `out`, and the markdown again as
/// `LATEST.md`. Returns the paths written.
pub fn write(comparison: &Comparison, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut comparison = comparison.clone();
    comparison.summarise();
    let stem = format!("{}-{}", comparison.date, comparison.commit);
    let mut written = Vec::new();
    let mut plots = Vec::new();
    for scenario in [Scenario::Pairs, Scenario::Latency, Scenario::Durable] {
        if !comparison.scenarios.contains(&scenario) {
            continue;
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = comparison
            .brokers()
            .into_iter()
            .filter_map(|broker| {
                median_spectrum(&comparison, scenario, broker)
                    .map(|points| (broker.name().to_string(), points))
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let file = format!("{stem}-{}.svg", scenario.name());
        plot::latency_svg(&out.join(&file), scenario.title(), &series)?;
        written.push(out.join(&file));
        plots.push((scenario, file));
    }
    let json = out.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_vec_pretty(&comparison)?)
        .with_context(|| format!("writing {}", json.display()))?;
    written.push(json);
    let markdown = markdown(&comparison, &stem, &plots);
    let md = out.join(format!("{stem}.md"));
    std::fs::write(&md, &markdown)?;
    written.push(md);
    let latest = out.join("LATEST.md");
    std::fs::write(&latest, &markdown)?;
    written.push(latest);
    Ok(written)
}

/// The latency spectrum of the round whose p99 is the median one.
fn median_spectrum(
    comparison: &Comparison,
    scenario: Scenario,
    broker: BrokerKind,
) -> Option<Vec<(f64, f64)>> {
    let mut runs: Vec<&Measurement> = comparison
        .measurements(scenario, broker)
        .filter(|m| !m.latency_spectrum.is_empty() && m.p99_us.is_some())
        .collect();
    runs.sort_by(|a, b| a.p99_us.unwrap_or(0.0).total_cmp(&b.p99_us.unwrap_or(0.0)));
    runs.get(runs.len() / 2).map(|m| m.latency_spectrum.clone())
}

fn markdown(comparison: &Comparison, stem: &str, plots: &[(Scenario, String)]) -> String {
    let mut md = String::new();
    let page = Page::new(comparison);
    page.write_header(&mut md, stem);
    page.write_targets(&mut md);
    for &scenario in &comparison.scenarios {
        page.write_scenario(&mut md, scenario, plots);
    }
    md
}

/// The markdown page of a comparison: shardmq and its peers, as the tables show them.
struct Page<'a> {
    comparison: &'a Comparison,
    brokers: Vec<BrokerKind>,
    /// The brokers other than shardmq.
    peers: Vec<BrokerKind>,
}

impl<'a> Page<'a> {
    fn new(comparison: &'a Comparison) -> Page<'a> {
        let brokers = comparison.brokers();
        let peers: Vec<BrokerKind> =
            brokers.iter().copied().filter(|&broker| broker != BrokerKind::Shardmq).collect();
        Page { comparison, brokers, peers }
    }

    /// The title, how and where the comparison ran, and how to read its tables.
    fn write_header(&self, md: &mut String, stem: &str) {
        let comparison = self.comparison;
        let _ = writeln!(
            md,
            "# shardmq compared with {}\n",
            self.peers.iter().map(|p| p.name()).collect::<Vec<_>>().join(" and ")
        );
        let _ = writeln!(
            md,
            "- Run: `perf/compare{}` on {}, commit `{}`, {} round(s), {:.0} s in all. Raw data: [`{stem}.json`]({stem}.json).",
            if comparison.quick { " --quick" } else { "" },
            comparison.date,
            comparison.commit,
            comparison.rounds,
            comparison.elapsed_secs
        );
        let _ = writeln!(
            md,
            "- Machine: {} CPUs ({}), Linux {}. Each broker pinned to core 0 (`taskset`), the bundled load \
             generator (`shardmq loadgen`, one worker) to core 1.",
            comparison.machine.cpus, comparison.machine.cpu_model, comparison.machine.kernel
        );
        let _ = writeln!(
            md,
            "- Peers: {}. shardmq runs one shard.",
            comparison
                .peers
                .iter()
                .map(|(name, version)| format!("{name} = {version}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let _ = writeln!(
            md,
            "- Each cell: the median of the rounds, [min – max]. Ratios are shardmq / peer on the medians. \
             CPU is the broker's user+sys time over the whole load-generator run (set-up and drain included) \
             divided by the deliveries. Scenarios 1 and 2 publish QoS 0 in closed loop, i.e. as fast as \
             the sockets take it: they measure a broker under overload, so their latencies are queueing \
             in socket buffers and their `lost` counts drops plus the backlog left when the load \
             generator stopped waiting (`--drain-timeout`).\n"
        );
        if comparison.quick {
            md.push_str("> **--quick run**: 2-second runs for a smoke test; these figures are not for comparison.\n\n");
        }
    }

    /// The table of the issue's targets, when any was judged.
    fn write_targets(&self, md: &mut String) {
        let targets = &self.comparison.targets;
        if targets.is_empty() {
            return;
        }
        md.push_str("## Targets (issue 6)\n\n| scenario | target | shardmq | reference | met |\n|---|---|---|---|---|\n");
        for target in targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                target.scenario.name(),
                target.target,
                number(target.shardmq),
                number(target.reference),
                match target.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a",
                }
            );
        }
        md.push('\n');
    }

    /// One scenario's section: its command line, its table of figures, what the load generator
    /// reported and its latency plot.
    fn write_scenario(&self, md: &mut String, scenario: Scenario, plots: &[(Scenario, String)]) {
        let comparison = self.comparison;
        let _ = writeln!(md, "## {}\n", scenario.title());
        let _ = writeln!(
            md,
            "`shardmq loadgen {}`\n",
            scenario.loadgen_args(comparison.size).join(" ")
        );
        let table = Table {
            comparison,
            scenario,
            columns: self
                .brokers
                .iter()
                .copied()
                .filter(|&broker| scenario.supports(broker))
                .collect(),
            ratio_peers: self
                .peers
                .iter()
                .copied()
                .filter(|&peer| scenario.supports(peer))
                .collect(),
        };
        table.write_heading(md);
        for figure in figures(scenario) {
            table.write_row(md, figure);
        }
        let problems = scenario_problems(comparison, scenario);
        if !problems.is_empty() {
            md.push_str("\nThe load generator reported:\n\n");
            for problem in problems {
                let _ = writeln!(md, "- {problem}");
            }
        }
        if let Some((_, file)) = plots.iter().find(|(plotted, _)| *plotted == scenario) {
            let _ = writeln!(md, "\n![latency distribution]({file})");
        }
        md.push('\n');
    }
}

/// A scenario's table: a column per broker that ran it, then a ratio column per peer.
struct Table<'a> {
    comparison: &'a Comparison,
    scenario: Scenario,
    columns: Vec<BrokerKind>,
    ratio_peers: Vec<BrokerKind>,
}

impl Table<'_> {
    fn write_heading(&self, md: &mut String) {
        md.push_str("| figure |");
        for broker in &self.columns {
            let _ = write!(md, " {} |", broker.name());
        }
        for peer in &self.ratio_peers {
            let _ = write!(md, " shardmq/{} |", peer.name());
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(self.columns.len() + self.ratio_peers.len()));
        md.push('\n');
    }

    /// A figure's row: each broker's spread, then shardmq's ratio to each peer. No row for a
    /// figure no broker has.
    fn write_row(&self, md: &mut String, figure: &Figure) {
        let (comparison, scenario) = (self.comparison, self.scenario);
        let spreads: Vec<Option<Spread>> = self
            .columns
            .iter()
            .map(|&broker| comparison.spread(scenario, broker, figure.get))
            .collect();
        if spreads.iter().all(Option::is_none) {
            return;
        }
        let arrow = if figure.higher_is_better { "↑" } else { "↓" };
        let _ = write!(md, "| {} {arrow} |", figure.label);
        for spread in &spreads {
            match spread {
                Some(spread) if spread.rounds > 1 => {
                    let _ = write!(
                        md,
                        " {} [{} – {}] |",
                        number(Some(spread.median)),
                        number(Some(spread.min)),
                        number(Some(spread.max))
                    );
                }
                Some(spread) => {
                    let _ = write!(md, " {} |", number(Some(spread.median)));
                }
                None => md.push_str(" – |"),
            }
        }
        for &peer in &self.ratio_peers {
            let ours = comparison.median(scenario, BrokerKind::Shardmq, figure.get);
            let theirs = comparison.median(scenario, peer, figure.get);
            match (ours, theirs) {
                (Some(ours), Some(theirs)) if theirs != 0.0 => {
                    let _ = write!(md, " {} |", ratio(ours / theirs));
                }
                _ => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
}

/// What went wrong in `scenario`'s runs: failed runs, and the problems the load generator
/// named.
fn scenario_problems(comparison: &Comparison, scenario: Scenario) -> Vec<String> {
    comparison
        .runs
        .iter()
        .filter(|run| run.scenario == scenario)
        .flat_map(|run| {
            let mut lines = Vec::new();
            if let Some(error) = &run.error {
                lines.push(format!(
                    "{} round {}: run failed: {error}",
                    run.broker.name(),
                    run.round + 1
                ));
            }
            if let Some(m) = &run.measurement {
                for problem in &m.problems {
                    lines.push(format!("{} round {}: {problem}", run.broker.name(), run.round + 1));
                }
            }
            lines
        })
        .collect()
}

/// A ratio with three significant digits (0.00253×, 0.0410×, 1.45×, 18.3×).
fn ratio(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}×");
    }
    let decimals = (2 - value.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{value:.decimals$}×")
}

/// A figure as the tables print it: integers with thousands separators, small values with two
/// decimals.
fn number(value: Option<f64>) -> String {
    let Some(value) = value else { return "–".to_string() };
    if !value.is_finite() {
        return "–".to_string();
    }
    if value.abs() >= 100.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else {
        format!("{value:.2}")
    }
}

/// The first line of a command's output (stdout or stderr) that contains `marker`, or the first
/// line when `marker` is empty; "unknown" when the command fails.
fn command_line(command: &[&str], marker: &str) -> String {
    let Some((program, args)) = command.split_first() else { return "unknown".into() };
    let Ok(output) = Command::new(program).args(args).output() else { return "unknown".into() };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find(|line| line.contains(marker))
        .map(|line| line.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_readably() {
        assert_eq!(number(Some(1_337_851.4)), "1,337,851");
        assert_eq!(number(Some(-1234.0)), "-1,234");
        assert_eq!(number(Some(47.716)), "47.72");
        assert_eq!(number(None), "–");
        assert_eq!(ratio(18.33), "18.3×");
        assert_eq!(ratio(1.45), "1.45×");
        assert_eq!(ratio(0.0025), "0.00250×");
        assert_eq!(ratio(0.0), "0×");
    }

    #[test]
    fn spreads_are_medians_with_their_range() {
        let spread = Spread::of(vec![3.0, 1.0, 2.0, f64::NAN]).expect("values");
        assert_eq!((spread.median, spread.min, spread.max, spread.rounds), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(vec![4.0, 1.0]).map(|s| s.median), Some(2.5));
        assert!(Spread::of(Vec::new()).is_none());
    }
}

//! The one-hour soak: 19,000 connections, 1,000 reconnects a second and steady QoS 1 traffic
//! against one broker; resident memory, open descriptors and delivery p99 must stay flat, and no
//! QoS 1 message may be lost.
//!
//! One broker (release build, 2 shards, the default `durability`), and three runs of the
//! bundled load generator side by side:
//! - `conn`: 13,600 idle MQTT 5 connections held for the whole run (keepalive 30 s), opened once
//!   the churn has settled;
//! - `churn`: 10,000 persistent-session clients, each subscribed to its own topic, reconnecting
//!   1,000 times a second in all (each is online 5 s, offline 5 s: ~5,000 up at a time) while a
//!   publisher sends 1,100 QoS 1 msg/s round-robin over their topics; every message queued
//!   while a client was offline must arrive when it is back;
//! - `pairs`: 100 QoS 1 publisher/subscriber pairs at 2,000 msg/s in all, whose per-second
//!   delivery p99 is the latency curve.
//!
//! About 19,000 connections in all.
//!
//! Every `--sample` seconds the broker's VmRSS and open descriptors are read and the worst
//! per-second p99 of the interval is kept. The results: a CSV of the samples, an SVG plot and a
//! markdown summary comparing the first and the last tenth of the run.
//!
//! Run: `perf/soak` (60 minutes, writes perf/results/soak/), `perf/soak --minutes 5` for a short
//! look (writes target/soak/).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use plotters::prelude::*;
use serde_json::Value;
use shardmq_perf::compare::procfs;

#[derive(Debug, Parser)]
#[command(name = "soak", about = "One broker under churn and QoS 1 traffic for an hour")]
struct Args {
    /// How long the load runs.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Idle connections held for the whole run.
    #[arg(long, default_value_t = 13_600)]
    idle: u64,
    /// Persistent-session clients that reconnect (the churn): half of them are up at a time.
    #[arg(long, default_value_t = 10_000)]
    churn_clients: u64,
    /// Reconnects per second over all churn clients.
    #[arg(long, default_value_t = 1_000)]
    churn_rate: u64,
    /// QoS 1 messages per second to the churn clients' topics. Not a multiple of the reconnect
    /// rate: at 1,000 msg/s over 10,000 topics each client's message came exactly as it went
    /// offline, every period, and none was ever queued while it was offline.
    #[arg(long, default_value_t = 1_100)]
    churn_publish_rate: u64,
    /// QoS 1 publisher/subscriber pairs whose latency is measured.
    #[arg(long, default_value_t = 100)]
    pairs: u64,
    /// Messages per second over all pairs.
    #[arg(long, default_value_t = 2_000)]
    pairs_rate: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample: u64,
    /// The shardmq binary (it also runs the load generator) [default: target/release/shardmq].
    #[arg(long)]
    shardmq: Option<PathBuf>,
    /// Where the results go [default: perf/results/soak for 60 minutes or more, else
    /// target/soak].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One sample of the broker and of the latency clients.
#[derive(Debug, Clone, Copy)]
struct Sample {
    minutes: f64,
    rss_mib: f64,
    descriptors: u64,
    /// The worst per-second delivery p99 of the pairs over the interval (ms).
    p99_ms: Option<f64>,
    cpu_percent: f64,
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let setup = Setup::prepare(&args)?;
    let (broker, baseline) = start_broker(&setup)?;
    let pid = broker.0.id();
    let started = Instant::now();
    let mut load = start_load(&args, &setup)?;
    let samples = sample_until_done(&args, pid, &mut load, started)?;
    drop(broker);
    write_results(&args, &setup, &samples, baseline)
}

/// Where the soak's binary, results and scratch files are, and the broker's address.
struct Setup {
    shardmq: PathBuf,
    out: PathBuf,
    scratch: PathBuf,
    target: String,
}

impl Setup {
    /// Checks the binary, makes the results and a fresh scratch directory, and picks a free port.
    fn prepare(args: &Args) -> anyhow::Result<Setup> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let shardmq = args.shardmq.clone().unwrap_or_else(|| root.join("target/release/shardmq"));
        if !shardmq.exists() {
            bail!("{} is missing: build it with cargo build --release", shardmq.display());
        }
        let out = args.out.clone().unwrap_or_else(|| {
            if args.minutes >= 60 {
                root.join("perf/results/soak")
            } else {
                root.join("target/soak")
            }
        });
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let scratch = root.join("target/soak-run");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let target = format!("127.0.0.1:{port}");
        Ok(Setup { shardmq, out, scratch, target })
    }

    /// The JSON report a load generator named `name` writes into the scratch directory.
    fn report(&self, name: &str) -> PathBuf {
        self.scratch.join(format!("{name}.json"))
    }

    /// The shardmq binary under a raised open-file limit, for the broker and the load
    /// generators alike.
    fn shardmq_command(&self) -> Command {
        let mut command = with_open_files_raised();
        command.arg(&self.shardmq);
        command
    }
}

/// The broker before any load: what the summary's "idle" figures are.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    rss_bytes: u64,
    descriptors: u64,
}

/// Starts the broker, waits for it to listen and settle, and measures its baseline.
fn start_broker(setup: &Setup) -> anyhow::Result<(Process, Baseline)> {
    let target = &setup.target;
    let broker_log = std::fs::File::create(setup.scratch.join("broker.log"))?;
    let broker = Process(
        setup
            .shardmq_command()
            .args(["serve", "--shards", "2", "--log", "warn", "--listen", target])
            .arg("--data-dir")
            .arg(setup.scratch.join("data"))
            .stdin(Stdio::null())
            .stdout(broker_log.try_clone()?)
            .stderr(broker_log)
            .spawn()
            .context("starting the broker")?,
    );
    let pid = broker.0.id();
    wait_listening(target)?;
    std::thread::sleep(Duration::from_secs(1));
    let baseline_rss = procfs::rss_bytes(pid)?;
    let baseline_fds = descriptors(pid)?;
    eprintln!(
        "soak: broker pid {pid} on {target}, {:.1} MiB, {baseline_fds} descriptors",
        baseline_rss as f64 / 1048576.0
    );
    Ok((broker, Baseline { rss_bytes: baseline_rss, descriptors: baseline_fds }))
}

/// The three load generators, and the worst per-second p99 the pairs reported since the last
/// sample.
struct Load {
    idle: Process,
    churn: Process,
    pairs: Process,
    worst_p99: Arc<Mutex<Option<f64>>>,
}

/// Starts the churn and the pairs at once, then the idle connections once the churn has
/// settled, and follows the pairs' progress lines.
fn start_load(args: &Args, setup: &Setup) -> anyhow::Result<Load> {
    let seconds = (args.minutes * 60).to_string();
    let churn = start_churn(args, setup, &seconds)?;
    let mut pairs = start_pairs(args, setup, &seconds)?;
    // The churn clients all connect at first and settle to half of them up within one
    // period: the idle connections come after, so that the peak stays under the broker's
    // open-file limit.
    let period = args.churn_clients / args.churn_rate.max(1);
    let idle_delay = period + 5;
    std::thread::sleep(Duration::from_secs(idle_delay));
    let idle = start_idle(args, setup, idle_delay)?;
    let progress = pairs.0.stderr.take().context("the pairs' stderr")?;
    let worst_p99 = follow_pairs(progress, setup.scratch.join("pairs.log"));
    Ok(Load { idle, churn, pairs, worst_p99 })
}

/// `loadgen churn`: the persistent sessions that reconnect, and the QoS 1 traffic to them.
fn start_churn(args: &Args, setup: &Setup, seconds: &str) -> anyhow::Result<Process> {
    Ok(Process(
        setup
            .shardmq_command()
            .args(["loadgen", "churn", "--target", &setup.target, "--qos", "1", "--quiet"])
            .args(["--clients", &args.churn_clients.to_string()])
            .args(["--rate", &args.churn_rate.to_string()])
            .args(["--publish-rate", &args.churn_publish_rate.to_string()])
            .args(["--duration", seconds, "--workers", "1"])
            .args(["--source", "127.0.0.30-127.0.0.33", "--json"])
            .arg(setup.report("churn"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(setup.scratch.join("churn.log"))?)
            .spawn()
            .context("starting the churn load generator")?,
    ))
}

/// `loadgen pairs`: the QoS 1 pairs whose latency is measured; their stderr is piped to
/// [`follow_pairs`].
fn start_pairs(args: &Args, setup: &Setup, seconds: &str) -> anyhow::Result<Process> {
    Ok(Process(
        setup
            .shardmq_command()
            .args(["loadgen", "pairs", "--target", &setup.target, "--qos", "1"])
            .args(["--publishers", &args.pairs.to_string()])
            .args(["--rate", &args.pairs_rate.to_string()])
            .args(["--duration", seconds, "--workers", "1"])
            .args(["--source", "127.0.0.40-127.0.0.41", "--json"])
            .arg(setup.report("pairs"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the pairs load generator")?,
    ))
}

/// `loadgen conn`: the idle connections, held from `idle_delay` seconds in to the soak's end.
fn start_idle(args: &Args, setup: &Setup, idle_delay: u64) -> anyhow::Result<Process> {
    let idle_hold = (args.minutes * 60).saturating_sub(idle_delay).max(1).to_string();
    Ok(Process(
        setup
            .shardmq_command()
            .args(["loadgen", "conn", "--target", &setup.target, "--workers", "1"])
            // MQTT 5, so that a connection the broker closes says why (its DISCONNECT's reason
            // code is counted as `disconnect_0xNN`).
            .args(["--mqtt", "5"])
            .args(["--connections", &args.idle.to_string(), "--rate", "2000"])
            .args(["--hold", &idle_hold, "--source", "127.0.0.20-127.0.0.23", "--json"])
            .arg(setup.report("idle"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(setup.scratch.join("idle.log"))?)
            .spawn()
            .context("starting the idle connections")?,
    ))
}

/// Copies the pairs' progress lines to `log` on a thread of its own, and keeps the worst
/// per-second p99 they report until a sample takes it.
fn follow_pairs(progress: ChildStderr, log: PathBuf) -> Arc<Mutex<Option<f64>>> {
    let worst_p99 = Arc::new(Mutex::new(None::<f64>));
    let shared = worst_p99.clone();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(log).ok();
        for line in BufReader::new(progress).lines().map_while(Result::ok) {
            if let Some(log) = &mut log {
                use std::io::Write as _;
                let _ = writeln!(log, "{line}");
            }
            if !line.contains("publishing") {
                continue;
            }
            let p99 = line
                .split("p99 ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches(" ms").trim().parse::<f64>().ok());
            if let Some(p99) = p99 {
                let mut worst = shared.lock().unwrap_or_else(|poison| poison.into_inner());
                *worst = Some(worst.map_or(p99, |worst: f64| worst.max(p99)));
            }
        }
    });
    worst_p99
}

/// Samples the broker every `--sample` seconds until the three load generators have exited;
/// fails if the broker exits first or the load runs 5 minutes past its end.
fn sample_until_done(
    args: &Args,
    pid: u32,
    load: &mut Load,
    started: Instant,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let mut cpu_before = procfs::cpu_seconds(pid)?;
    let mut sampled_at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(args.sample));
        let churn_done = load.churn.0.try_wait()?.is_some();
        let pairs_done = load.pairs.0.try_wait()?.is_some();
        let idle_done = load.idle.0.try_wait()?.is_some();
        if let Ok(Some(status)) = broker_status(pid) {
            bail!("the broker exited during the soak ({status})");
        }
        let cpu = procfs::cpu_seconds(pid)?;
        let elapsed = sampled_at.elapsed().as_secs_f64();
        sampled_at = Instant::now();
        let sample = Sample {
            minutes: started.elapsed().as_secs_f64() / 60.0,
            rss_mib: procfs::rss_bytes(pid)? as f64 / 1048576.0,
            descriptors: descriptors(pid)?,
            p99_ms: load.worst_p99.lock().unwrap_or_else(|poison| poison.into_inner()).take(),
            cpu_percent: (cpu - cpu_before) / elapsed * 100.0,
        };
        cpu_before = cpu;
        eprintln!(
            "[{:>5.1} min] rss {:.1} MiB  descriptors {}  p99 {}  broker cpu {:.0}%",
            sample.minutes,
            sample.rss_mib,
            sample.descriptors,
            sample.p99_ms.map_or("-".to_string(), |p99| format!("{p99:.2} ms")),
            sample.cpu_percent
        );
        samples.push(sample);
        if churn_done && pairs_done && idle_done {
            break;
        }
        if started.elapsed() > Duration::from_secs(args.minutes * 60 + 300) {
            bail!("the load generators ran 5 minutes past the soak's end");
        }
    }
    Ok(samples)
}

/// Writes the plot, the CSV of every sample and the markdown summary into the results
/// directory, and prints the summary.
fn write_results(
    args: &Args,
    setup: &Setup,
    samples: &[Sample],
    baseline: Baseline,
) -> anyhow::Result<()> {
    let reports = Reports {
        churn: read_json(&setup.report("churn"))?,
        pairs: read_json(&setup.report("pairs"))?,
        idle: read_json(&setup.report("idle"))?,
    };
    let out = &setup.out;
    // Samples while the load ran (the last one may fall in the drain).
    let loaded: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|sample| sample.minutes * 60.0 <= (args.minutes * 60) as f64)
        .collect();
    let svg = out.join("soak.svg");
    plot(&svg, &loaded, args.minutes)?;
    let csv = out.join("soak.csv");
    std::fs::write(&csv, csv_rows(samples))?;
    let summary = summary(args, &loaded, &reports, baseline);
    std::fs::write(out.join("soak.md"), &summary)?;
    println!("{summary}");
    eprintln!("wrote {}, {} and soak.md in {}", svg.display(), csv.display(), out.display());
    Ok(())
}

/// The CSV of every sample, the drain's included.
fn csv_rows(samples: &[Sample]) -> String {
    let mut rows = String::from("minutes,rss_mib,descriptors,p99_ms,broker_cpu_percent\n");
    for sample in samples {
        let _ = writeln!(
            rows,
            "{:.2},{:.1},{},{},{:.1}",
            sample.minutes,
            sample.rss_mib,
            sample.descriptors,
            sample.p99_ms.map_or(String::new(), |p99| format!("{p99:.3}")),
            sample.cpu_percent
        );
    }
    rows
}

/// `sh -c 'ulimit -n <hard>; exec …'`: the broker and the churn clients hold 19K sockets.
fn with_open_files_raised() -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(r#"ulimit -n "$(ulimit -Hn)" && exec "$@""#).arg("sh");
    command
}

fn wait_listening(target: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(target).is_err() {
        if Instant::now() > deadline {
            bail!("the broker did not listen on {target} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `Some` once the process is gone (a zombie of ours counts as gone).
fn broker_status(pid: u32) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) if stat.contains(") Z ") => Ok(Some("exited".into())),
        Ok(_) => Ok(None),
        Err(_) => Ok(Some("gone".into())),
    }
}

fn descriptors(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Averages of RSS, descriptors and p99 over `samples`.
fn averages(samples: &[Sample]) -> (f64, f64, f64) {
    let count = samples.len().max(1) as f64;
    let rss = samples.iter().map(|sample| sample.rss_mib).sum::<f64>() / count;
    let fds = samples.iter().map(|sample| sample.descriptors as f64).sum::<f64>() / count;
    let p99s: Vec<f64> = samples.iter().filter_map(|sample| sample.p99_ms).collect();
    let p99 = p99s.iter().sum::<f64>() / p99s.len().max(1) as f64;
    (rss, fds, p99)
}

/// The load generators' JSON reports.
struct Reports {
    churn: Value,
    pairs: Value,
    idle: Value,
}

/// The markdown summary: what ran, the first and last tenth of the samples side by side, and
/// what each load generator reported.
fn summary(args: &Args, samples: &[Sample], reports: &Reports, baseline: Baseline) -> String {
    let mut text = String::new();
    write_setup(&mut text, args);
    write_table(&mut text, samples, baseline);
    write_reports(&mut text, reports);
    text
}

/// The summary's title, what ran, and the plot.
fn write_setup(text: &mut String, args: &Args) {
    let _ = writeln!(text, "# Soak: {} minutes of churn and QoS 1 traffic\n", args.minutes);
    let _ = writeln!(
        text,
        "`perf/soak --minutes {}`: one broker (2 shards, default durability); {} idle \
         connections (`loadgen conn`), {} persistent sessions reconnecting {}/s in all (half of \
         them up at a time) with {} QoS 1 msg/s to them (`loadgen churn`), and {} QoS 1 pairs \
         at {} msg/s (`loadgen pairs`) whose per-second p99 is plotted: about {} connections. \
         Samples every {} s.\n",
        args.minutes,
        args.idle,
        args.churn_clients,
        args.churn_rate,
        args.churn_publish_rate,
        args.pairs,
        args.pairs_rate,
        args.idle + args.churn_clients / 2 + 2 * args.pairs,
        args.sample
    );
    let _ = writeln!(text, "![RSS, descriptors and p99 over the run](soak.svg)\n");
}

/// The table of RSS, descriptors and p99: early in the run, late in it, and at their peak.
fn write_table(text: &mut String, samples: &[Sample], baseline: Baseline) {
    let baseline_fds = baseline.descriptors;
    let tenth = (samples.len() / 10).max(1);
    // The first tenth includes the set-up; the second tenth is the first at full load.
    let early = samples.get(tenth..tenth * 2).unwrap_or(samples);
    let late = &samples[samples.len().saturating_sub(tenth)..];
    let (early_rss, early_fds, early_p99) = averages(early);
    let (late_rss, late_fds, late_p99) = averages(late);
    let peak_rss = samples.iter().map(|sample| sample.rss_mib).fold(0.0, f64::max);
    let worst_p99 = samples.iter().filter_map(|sample| sample.p99_ms).fold(0.0, f64::max);
    let _ = writeln!(text, "| | second tenth of the run | last tenth | peak |");
    let _ = writeln!(text, "|---|---|---|---|");
    let _ = writeln!(
        text,
        "| broker RSS (MiB; {:.1} idle) | {early_rss:.1} | {late_rss:.1} | {peak_rss:.1} |",
        baseline.rss_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        text,
        "| broker descriptors ({baseline_fds} idle) | {early_fds:.0} | {late_fds:.0} | {} |",
        samples.iter().map(|sample| sample.descriptors).max().unwrap_or(0)
    );
    let _ = writeln!(
        text,
        "| pairs' delivery p99, worst second of each sample (ms) | {early_p99:.2} | \
         {late_p99:.2} | {worst_p99:.2} |\n"
    );
}

/// One line per load generator: its figures, its verdict and the problems it named.
fn write_reports(text: &mut String, reports: &Reports) {
    let Reports { churn, pairs, idle } = reports;
    let _ = writeln!(
        text,
        "- churn: {} reconnects ({:.0}/s), reconnect p99 {:.1} ms, Session Present wrong {}; \
         {} QoS 1 messages sent, {} acknowledged, {} received, {} of them queued while their \
         client was offline; lost {} ({} of them acknowledged), duplicated {}; passed: {}{}",
        number(churn, &["churn", "reconnects"]),
        number(churn, &["churn", "reconnect_rate_per_sec"]),
        number(churn, &["churn", "reconnect_latency", "p99_us"]) / 1000.0,
        number(churn, &["churn", "session_present_wrong"]),
        number(churn, &["churn", "sent"]),
        number(churn, &["churn", "acknowledged"]),
        number(churn, &["churn", "received"]),
        number(churn, &["churn", "queued_delivered"]),
        number(churn, &["churn", "lost"]),
        number(churn, &["churn", "lost_acknowledged"]),
        number(churn, &["churn", "duplicates"]),
        churn["passed"],
        problems_note(churn)
    );
    let _ = writeln!(
        text,
        "- idle: {} of {} connections established, {} stayed up to the end; passed: {}{}",
        number(idle, &["connections", "established"]),
        number(idle, &["connections", "attempted"]),
        number(idle, &["connections", "stayed_up"]),
        idle["passed"],
        problems_note(idle)
    );
    let _ = writeln!(
        text,
        "- pairs: {} QoS 1 messages sent, {} received, p99 over the run {:.2} ms; passed: {}{}",
        number(pairs, &["messages", "sent"]),
        number(pairs, &["messages", "received"]),
        number(pairs, &["messages", "latency", "p99_us"]) / 1000.0,
        pairs["passed"],
        problems_note(pairs)
    );
}

/// The number at `path` in a report, NaN when it is missing.
fn number(report: &Value, path: &[&str]) -> f64 {
    path.iter().fold(report, |value, key| &value[key]).as_f64().unwrap_or(f64::NAN)
}

/// The problems a report names, as " (first; second)", or nothing when it names none.
fn problems_note(report: &Value) -> String {
    let problems = report["problems"]
        .as_array()
        .map(|problems| problems.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        .unwrap_or_default();
    if problems.is_empty() {
        String::new()
    } else {
        format!(" ({problems})")
    }
}

/// A plot panel: its title, what it shows of a sample, its colour.
type Panel = (&'static str, fn(&Sample) -> Option<f64>, RGBColor);

/// Three panels over the run's minutes: RSS, descriptors, p99.
fn plot(path: &Path, samples: &[Sample], minutes: u64) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 780)).into_drawing_area();
    let draw =
        |error: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {error}", path.display());
    root.fill(&WHITE).map_err(|error| draw(&error))?;
    let panels = root.split_evenly((3, 1));
    let x_max = minutes as f64;
    let series: [Panel; 3] = [
        ("broker RSS (MiB)", |sample| Some(sample.rss_mib), RGBColor(0, 114, 178)),
        (
            "broker open descriptors",
            |sample| Some(sample.descriptors as f64),
            RGBColor(0, 158, 115),
        ),
        (
            "delivery p99 (ms), worst second per sample",
            |sample| sample.p99_ms,
            RGBColor(213, 94, 0),
        ),
    ];
    for (panel, (title, value, color)) in panels.iter().zip(series.iter()) {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|sample| value(sample).map(|y| (sample.minutes, y)))
            .collect();
        let y_max = points.iter().map(|&(_, y)| y).fold(0.0, f64::max) * 1.15 + 1e-9;
        let mut chart = ChartBuilder::on(panel)
            .caption(*title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|error| draw(&error))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .light_line_style(WHITE)
            .x_label_formatter(&|minutes| format!("{minutes:.0}"))
            .draw()
            .map_err(|error| draw(&error))?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|error| draw(&error))?;
    }
    root.present().map_err(|error| draw(&error))?;
    Ok(())
}

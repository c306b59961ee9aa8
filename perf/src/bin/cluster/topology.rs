//! `perf/cluster --scenarios topology`: the design's topology on this machine.
//!
//! Twenty nodes (one shard each), one etcd at normal priority sharing the two cores with them
//! and the load generator, and 18,000 clients per node (360,000) connecting at 8,000 a second
//! with `--retry` (a refused or timed-out connect is tried again after a backoff, as real
//! clients do). Once they are held: etcd frozen with SIGSTOP for 4 s and thawed, then a storm of
//! 20,000 more clients. Pass: at least 99.9% of the 360,000 established and still up after the
//! freeze and the storm, 99.9% of the storm established, every node ready (serving) at the end.
//!
//! The brokers' own count of held connections is taken independently of the load generator,
//! with `ss -Htn state established '( sport = :1883 )'` (the nodes' side of every client
//! connection). Each node's `/metrics` gives the refusals by cause and the control plane's
//! figures (transactions, their latency, fences); etcd's log gives its slow requests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shardmq_cluster::testing::EtcdProcess;

use super::{shardmq_command, start_nodes_with, stop_nodes, Env, Node};

/// The full run's shape (the design's 20-node topology, on one machine).
const NODES: usize = 20;
const PER_NODE: u64 = 18_000;
const RATE: u64 = 8_000;
const STORM: u64 = 20_000;
const FREEZE: Duration = Duration::from_secs(4);
/// What must be established and stay up.
const PASS_FRACTION: f64 = 0.999;
/// How long the held clients may take to connect, retries included.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(900);
/// How long the nodes are left after the freeze before the storm.
const AFTER_FREEZE: Duration = Duration::from_secs(10);
/// The load generator's processes: each holds its share under the 20,000 descriptors a process
/// may have here.
const HOLD_PROCESSES: &str = "20";
const STORM_PROCESSES: &str = "2";
/// Source addresses of the held clients and of the storm (59 and 20 addresses: 28,000 ports per
/// source and node, far more than needed).
const HOLD_SOURCES: &str = "127.0.0.21-127.0.0.79";
const STORM_SOURCES: &str = "127.0.0.80-127.0.0.99";

/// The run's counts (smaller with `--quick`).
struct Shape {
    nodes: usize,
    per_node: u64,
    rate: u64,
    storm: u64,
}

pub(crate) fn topology(env: &Env) -> anyhow::Result<(Value, String)> {
    let shape = match env.quick {
        true => Shape { nodes: 4, per_node: 1_000, rate: 2_000, storm: 1_000 },
        false => Shape { nodes: NODES, per_node: PER_NODE, rate: RATE, storm: STORM },
    };
    let total = shape.per_node * shape.nodes as u64;
    let etcd = EtcdProcess::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let etcd_pid = etcd.pid().context("etcd is not running")?;
    let mut nodes =
        start_nodes_with(env, shape.nodes, Some((&etcd.endpoint(), &[])), "topology", true)?;
    let mut sampler = Sampler::new(&nodes);

    // 1. The held clients.
    let held_json = env.scratch.join("topology-held.json");
    let mut held = spawn_held(env, &nodes, &shape, total, &held_json)?;
    let started = Instant::now();
    let established = loop {
        std::thread::sleep(Duration::from_secs(2));
        let count = sampler.sample();
        eprintln!("  {:>5.0} s: {count} of {total} held", started.elapsed().as_secs_f64());
        if count as f64 >= total as f64 * PASS_FRACTION && count >= total.saturating_sub(10) {
            break count;
        }
        if held.try_wait()?.is_some() {
            bail!("the load generator of the held clients ended early: {}", log_tail(&held_json));
        }
        if started.elapsed() > ESTABLISH_TIMEOUT {
            break count;
        }
    };
    let establish_secs = started.elapsed().as_secs_f64();
    // Held a little before the freeze, so what follows is measured on a quiet cluster.
    std::thread::sleep(Duration::from_secs(5));
    let before_freeze = sampler.sample();

    // 2. etcd frozen, then thawed.
    eprintln!("  freezing etcd (SIGSTOP) for {} s", FREEZE.as_secs());
    signal(etcd_pid, "STOP")?;
    std::thread::sleep(FREEZE);
    // Thawed before anything is sampled: a sample (`ss` over 380,000 sockets, every node's
    // /proc) takes seconds on this loaded machine, and taken before the thaw it made the
    // "4 s" freeze last 24 s (measured), longer than two lease TTLs.
    signal(etcd_pid, "CONT")?;
    let during_freeze = sampler.sample();
    std::thread::sleep(AFTER_FREEZE);
    let after_freeze = sampler.sample();

    // 3. The storm, while the others are held.
    eprintln!("  storm of {} clients", shape.storm);
    let storm = storm(env, &nodes, &shape)?;
    let after_storm = sampler.sample();
    let ready: Vec<u16> = nodes.iter().map(|node| http_status(node, "/ready")).collect();
    let metrics = NodeMetrics::scrape(&nodes);

    // 4. The held clients disconnect and report.
    signal(held.id(), "TERM")?;
    let held_report = wait_report(&mut held, &held_json)?;
    let (max_fds, max_rss_kb) = (sampler.max_fds.clone(), sampler.max_rss_kb.clone());
    let ownership = stop_nodes(&mut nodes);
    let slow = etcd_slow_requests(&etcd.log());
    // Kept beside the nodes' logs for a look afterwards (etcd's directory goes with it).
    let _ = std::fs::copy(etcd.log(), env.scratch.join("topology-etcd.log"));
    drop(etcd);

    let figures = Figures {
        shape: &shape,
        total,
        established,
        establish_secs,
        before_freeze,
        during_freeze,
        after_freeze,
        after_storm,
        ready: &ready,
        held: &held_report,
        storm: &storm,
        metrics: &metrics,
        slow: &slow,
        ownership,
        max_fds: &max_fds,
        max_rss_kb: &max_rss_kb,
    };
    Ok((figures.json(), figures.markdown()))
}

/// Starts the load generator of the held clients in the background.
fn spawn_held(
    env: &Env,
    nodes: &[Node],
    shape: &Shape,
    total: u64,
    json: &Path,
) -> anyhow::Result<Child> {
    let _ = std::fs::remove_file(json);
    let mut command = shardmq_command(env);
    command
        .arg("loadgen")
        .args(["conn", "--mqtt", "5", "--keepalive", "60", "--connect-timeout", "30", "--retry"])
        .args(["--connections", &total.to_string(), "--rate", &shape.rate.to_string()])
        // Held until told to stop (SIGTERM), then disconnected and reported.
        .args(["--hold", "36000", "--workers", "1", "--quiet"])
        .args(["--processes", if env.quick { "2" } else { HOLD_PROCESSES }])
        .args(["--source", HOLD_SOURCES, "--json"])
        .arg(json);
    for node in nodes {
        command.args(["--target", &node.addr]);
    }
    let log = std::fs::File::create(json.with_extension("log"))?;
    Ok(command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn()?)
}

/// The storm: `shape.storm` new clients as fast as the load generator goes, with `--retry`.
fn storm(env: &Env, nodes: &[Node], shape: &Shape) -> anyhow::Result<Value> {
    let json = env.scratch.join("topology-storm.json");
    let _ = std::fs::remove_file(&json);
    let mut command = shardmq_command(env);
    command
        .arg("loadgen")
        .args(["conn", "--mqtt", "5", "--keepalive", "60", "--connect-timeout", "30", "--retry"])
        .args(["--connections", &shape.storm.to_string(), "--rate", "20000", "--hold", "5"])
        .args(["--workers", "1", "--processes", STORM_PROCESSES, "--quiet"])
        .args(["--source", STORM_SOURCES, "--json"])
        .arg(&json);
    for node in nodes {
        command.args(["--target", &node.addr]);
    }
    let output = command.stdin(Stdio::null()).output().context("running the storm")?;
    let text = std::fs::read_to_string(&json).with_context(|| {
        format!("the storm wrote no report:\n{}", String::from_utf8_lossy(&output.stderr))
    })?;
    Ok(serde_json::from_str(&text)?)
}

/// Waits (up to 5 minutes) for a load generator told to stop, and reads its report.
fn wait_report(child: &mut Child, json: &Path) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the load generator did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(json).with_context(|| log_tail(json))?;
    Ok(serde_json::from_str(&text)?)
}

fn log_tail(json: &Path) -> String {
    let log = std::fs::read_to_string(json.with_extension("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// Samples what the nodes hold: connections (counted by the kernel), descriptors and memory.
struct Sampler {
    pids: Vec<u32>,
    max_fds: Vec<u64>,
    max_rss_kb: Vec<u64>,
}

impl Sampler {
    fn new(nodes: &[Node]) -> Sampler {
        let pids = nodes.iter().map(|node| node.child.id()).collect::<Vec<_>>();
        Sampler { max_fds: vec![0; pids.len()], max_rss_kb: vec![0; pids.len()], pids }
    }

    /// The client connections the nodes hold now; updates the per-node maxima.
    fn sample(&mut self) -> u64 {
        for (i, pid) in self.pids.iter().enumerate() {
            if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                self.max_fds[i] = self.max_fds[i].max(entries.count() as u64);
            }
            if let Ok(rss) = shardmq_perf::compare::procfs::rss_bytes(*pid) {
                self.max_rss_kb[i] = self.max_rss_kb[i].max(rss / 1024);
            }
        }
        established_on_1883()
    }
}

/// Established TCP connections whose local port is 1883: the nodes' side of every client
/// connection on this host (`ss`, from iproute2).
fn established_on_1883() -> u64 {
    let output =
        Command::new("ss").args(["-Htn", "state", "established", "( sport = :1883 )"]).output();
    output.map_or(0, |output| {
        output.stdout.split(|byte| *byte == b'\n').filter(|l| !l.is_empty()).count() as u64
    })
}

/// One `GET` on a node's admin endpoint: the status code (0 when it did not answer).
fn http_status(node: &Node, path: &str) -> u16 {
    http_get(node, path).map_or(0, |(status, _)| status)
}

fn http_get(node: &Node, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let address = node.admin.as_ref()?;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    Some((status, body))
}

/// Every node's `/metrics`, summed by series (name and labels, the shard label dropped).
struct NodeMetrics {
    sums: std::collections::BTreeMap<String, f64>,
    answered: usize,
}

impl NodeMetrics {
    fn scrape(nodes: &[Node]) -> NodeMetrics {
        let mut sums = std::collections::BTreeMap::new();
        let mut answered = 0;
        for node in nodes {
            let Some((200, body)) = http_get(node, "/metrics") else { continue };
            answered += 1;
            for line in body.lines().filter(|line| !line.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else { continue };
                let Ok(value) = value.parse::<f64>() else { continue };
                *sums.entry(without_shard(series)).or_insert(0.0) += value;
            }
        }
        NodeMetrics { sums, answered }
    }

    fn get(&self, series: &str) -> f64 {
        self.sums.get(series).copied().unwrap_or(0.0)
    }

    /// Every series of `name`, by its labels.
    fn family(&self, name: &str) -> Vec<(String, f64)> {
        let prefix = format!("{name}{{");
        self.sums
            .iter()
            .filter(|(series, _)| series.starts_with(&prefix))
            .map(|(series, value)| (series[prefix.len()..series.len() - 1].to_owned(), *value))
            .collect()
    }

    /// The upper bound of the bucket holding quantile `q` of histogram `name`.
    fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .family(&format!("{name}_bucket"))
            .into_iter()
            .filter_map(|(labels, count)| {
                let bound = labels.strip_prefix("le=\"")?.strip_suffix('"')?;
                let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? };
                Some((bound, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        buckets.into_iter().find(|(_, count)| *count >= total * q).map(|(bound, _)| bound)
    }
}

/// `name{shard="3",cause="x"}` → `name{cause="x"}` (`name` when no label is left).
fn without_shard(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else { return series.to_owned() };
    let labels = labels.trim_end_matches('}');
    let kept: Vec<&str> = labels.split(',').filter(|label| !label.starts_with("shard=")).collect();
    match kept.is_empty() {
        true => name.to_owned(),
        false => format!("{name}{{{}}}", kept.join(",")),
    }
}

/// etcd's "took too long" warnings: how many, their median and the slowest (seconds).
fn etcd_slow_requests(log: &Path) -> (usize, f64, f64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut took: Vec<f64> = text
        .lines()
        .filter(|line| line.contains("took too long"))
        .filter_map(|line| {
            let value = line.split("\"took\":\"").nth(1)?.split('"').next()?;
            parse_go_duration(value)
        })
        .collect();
    took.sort_by(f64::total_cmp);
    let median = took.get(took.len() / 2).copied().unwrap_or(0.0);
    (took.len(), median, took.last().copied().unwrap_or(0.0))
}

/// A Go duration as etcd logs it (`1.234567s`, `512.3ms`, `900µs`), in seconds.
fn parse_go_duration(text: &str) -> Option<f64> {
    for (suffix, scale) in [("ms", 1e-3), ("µs", 1e-6), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0)] {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|value| value * scale);
        }
    }
    None
}

/// What the run measured, for the JSON and the Markdown.
struct Figures<'a> {
    shape: &'a Shape,
    total: u64,
    established: u64,
    establish_secs: f64,
    before_freeze: u64,
    during_freeze: u64,
    after_freeze: u64,
    after_storm: u64,
    ready: &'a [u16],
    held: &'a Value,
    storm: &'a Value,
    metrics: &'a NodeMetrics,
    slow: &'a (usize, f64, f64),
    ownership: (u64, u64, u64),
    max_fds: &'a [u64],
    max_rss_kb: &'a [u64],
}

impl Figures<'_> {
    fn held_up(&self) -> u64 {
        self.held["connections"]["stayed_up"].as_u64().unwrap_or(0)
    }

    fn storm_established(&self) -> u64 {
        self.storm["connections"]["established"].as_u64().unwrap_or(0)
    }

    fn passed(&self) -> bool {
        let total = self.total as f64;
        self.established as f64 >= total * PASS_FRACTION
            && self.held_up() as f64 >= total * PASS_FRACTION
            && self.storm_established() as f64 >= self.shape.storm as f64 * PASS_FRACTION
            && self.ready.iter().all(|status| *status == 200)
    }

    fn json(&self) -> Value {
        let m = self.metrics;
        json!({
            "nodes": self.shape.nodes,
            "clients": self.total,
            "rate": self.shape.rate,
            "storm": self.shape.storm,
            "passed": self.passed(),
            "established_by_the_nodes": self.established,
            "establish_secs": self.establish_secs,
            "held_by_the_nodes": {
                "before_freeze": self.before_freeze,
                "end_of_freeze": self.during_freeze,
                "after_freeze": self.after_freeze,
                "after_storm": self.after_storm,
            },
            "nodes_ready_at_the_end": self.ready.iter().filter(|status| **status == 200).count(),
            "held_clients": self.held["connections"],
            "storm_clients": self.storm["connections"],
            "refused_by_cause": m.family("shardmq_connects_refused_total"),
            "etcd": {
                "claims": m.get("shardmq_etcd_claims_total"),
                "txns": m.get("shardmq_etcd_txns_total"),
                "txn_ops": m.get("shardmq_etcd_txn_ops_total"),
                "txns_failed": m.get("shardmq_etcd_txns_failed_total"),
                "txn_p50_s": m.quantile("shardmq_etcd_txn_seconds", 0.5),
                "txn_p99_s": m.quantile("shardmq_etcd_txn_seconds", 0.99),
                "keepalive_p99_s": m.quantile("shardmq_etcd_keepalive_seconds", 0.99),
                "claims_busy": m.get("shardmq_etcd_claims_busy_total"),
                "claims_shed": m.get("shardmq_etcd_claims_shed_total"),
                "claims_timed_out": m.get("shardmq_etcd_claims_timed_out_total"),
                "fences": m.get("shardmq_etcd_fences_total"),
                "resumes": m.get("shardmq_etcd_resumes_total"),
                "leases_lost": m.get("shardmq_etcd_leases_lost_total"),
                "keepalive_streams": m.get("shardmq_etcd_keepalive_streams_total"),
                "slow_requests_logged": self.slow.0,
                "slow_request_median_s": self.slow.1,
                "slow_request_max_s": self.slow.2,
            },
            "nodes_scraped": m.answered,
            "ownership_at_shutdown": { "claims": self.ownership.0, "txns": self.ownership.1, "ops": self.ownership.2 },
            "max_fds_per_node": self.max_fds,
            "max_rss_kb_per_node": self.max_rss_kb,
        })
    }

    fn markdown(&self) -> String {
        let held = &self.held["connections"];
        let storm = &self.storm["connections"];
        let counts = |value: &Value| {
            value.as_object().map_or(String::new(), |map| {
                map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            })
        };
        let refused: Vec<String> = self
            .metrics
            .family("shardmq_connects_refused_total")
            .into_iter()
            .filter(|(_, value)| *value > 0.0)
            .map(|(labels, value)| format!("{} {value:.0}", labels.trim_start_matches("cause=")))
            .collect();
        let rss_mib: Vec<f64> = self.max_rss_kb.iter().map(|kb| *kb as f64 / 1024.0).collect();
        let m = self.metrics;
        let seconds = |value: Option<f64>| value.map_or("—".to_owned(), |s| format!("{s} s"));
        format!(
            "## The design's topology: {nodes} nodes, {total} clients, etcd frozen, a storm\n\n\
             **{verdict}.** {nodes} nodes (one shard each) and one etcd at normal priority on \
             this machine's 2 cores with the load generator; {total} MQTT 5 clients connecting at \
             {rate}/s with `--retry` (backoff 1 s doubling to 120 s, jittered, no limit), held; etcd frozen \
             with SIGSTOP for {freeze} s and thawed; then {storm_n} more clients as fast as the \
             load generator goes. Connections held are the nodes' side counted by the kernel \
             (`ss`), independently of the load generator.\n\n\
             | | value |\n|---|---|\n\
             | established (nodes' count) | {established} of {total} in {secs:.0} s ({rate_seen:.0}/s) |\n\
             | held before / just after / 10 s after the freeze | {before} / {during} / {after} |\n\
             | held after the storm | {after_storm} |\n\
             | held clients: established, stayed up to the end, dropped | {h_est}, {h_up}, {h_drop} |\n\
             | held clients: retries by cause | {h_retries} |\n\
             | held clients: connect latency p50 / p99 (µs, last attempt) | {h_p50} / {h_p99} |\n\
             | storm: established, failed, retries | {s_est} of {storm_n}, {s_failed}, {s_retries} |\n\
             | nodes ready at the end | {ready} of {nodes} |\n\
             | connects refused by the nodes, by cause | {refused} |\n\
             | etcd: claims, transactions (ops), failed | {claims:.0}, {txns:.0} ({ops:.0}), {failed:.0} |\n\
             | etcd: transaction p50 / p99 (bucket bound); keepalive p99 | {t50} / {t99}; {k99} |\n\
             | etcd: claims refused busy / shed / timed out | {busy:.0} / {shed:.0} / {timed_out:.0} |\n\
             | fences, resumes under the same lease, leases lost | {fences:.0}, {resumes:.0}, {lost:.0} |\n\
             | etcd's \"took too long\" warnings: count, median, slowest | {slow_n}, {slow_med:.3} s, {slow_max:.3} s |\n\
             | max RSS per node (MiB) | {rss_min:.0} – {rss_max:.0} |\n\
             | max descriptors per node | {fds_min} – {fds_max} |\n\n",
            verdict = if self.passed() { "Passed" } else { "Failed" },
            nodes = self.shape.nodes,
            total = self.total,
            rate = self.shape.rate,
            freeze = FREEZE.as_secs(),
            storm_n = self.shape.storm,
            established = self.established,
            secs = self.establish_secs,
            rate_seen = self.established as f64 / self.establish_secs.max(1e-9),
            before = self.before_freeze,
            during = self.during_freeze,
            after = self.after_freeze,
            after_storm = self.after_storm,
            h_est = held["established"],
            h_up = held["stayed_up"],
            h_drop = counts(&held["dropped"]),
            h_retries = counts(&held["retries"]),
            h_p50 = held["connect_latency"]["p50_us"],
            h_p99 = held["connect_latency"]["p99_us"],
            s_est = storm["established"],
            s_failed = storm["failed"],
            s_retries = counts(&storm["retries"]),
            ready = self.ready.iter().filter(|status| **status == 200).count(),
            refused = refused.join(", "),
            claims = m.get("shardmq_etcd_claims_total"),
            txns = m.get("shardmq_etcd_txns_total"),
            ops = m.get("shardmq_etcd_txn_ops_total"),
            failed = m.get("shardmq_etcd_txns_failed_total"),
            t50 = seconds(m.quantile("shardmq_etcd_txn_seconds", 0.5)),
            t99 = seconds(m.quantile("shardmq_etcd_txn_seconds", 0.99)),
            k99 = seconds(m.quantile("shardmq_etcd_keepalive_seconds", 0.99)),
            busy = m.get("shardmq_etcd_claims_busy_total"),
            shed = m.get("shardmq_etcd_claims_shed_total"),
            timed_out = m.get("shardmq_etcd_claims_timed_out_total"),
            fences = m.get("shardmq_etcd_fences_total"),
            resumes = m.get("shardmq_etcd_resumes_total"),
            lost = m.get("shardmq_etcd_leases_lost_total"),
            slow_n = self.slow.0,
            slow_med = self.slow.1,
            slow_max = self.slow.2,
            rss_min = rss_mib.iter().copied().fold(f64::INFINITY, f64::min),
            rss_max = rss_mib.iter().copied().fold(0.0, f64::max),
            fds_min = self.max_fds.iter().min().copied().unwrap_or(0),
            fds_max = self.max_fds.iter().max().copied().unwrap_or(0),
        )
    }
}

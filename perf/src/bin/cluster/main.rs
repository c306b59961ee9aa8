//! `perf/cluster`: the cluster's figures on one machine (see `perf/README.md`, "Cluster").
//!
//! Starts a real etcd (Debian's `etcd-server`) and several `shardmq serve` nodes on 127.0.0.x
//! addresses, one shard each, and drives them with the bundled load generator:
//!
//! - `claims`: connects spread over 3 nodes as fast as the load generator goes, with claim
//!   batching on and off (`--claim-batch-max 1 --claim-batch-delay-ms 0`), and the same on 3
//!   nodes without etcd for the connect latency a claim adds. The nodes' shutdown lines give
//!   claims and transactions.
//! - `ownership`: the same claims without MQTT: 3 nodes' control planes in this process claim
//!   distinct client ids as fast as etcd commits them, batching on and off — what the ownership
//!   layer sustains when the connect path (TCP, CONNECT, the load generator) is not the limit.
//! - `cross`: 1:1 QoS 1 streams at a fixed rate and closed loop, publisher and subscriber on
//!   different nodes versus on the same node (same load on both nodes either way).
//! - `hold`: connections held across 5 nodes, each under this machine's 20,000-descriptor limit;
//!   the nodes' descriptors and memory sampled while they hold them.
//!
//! A complete run writes `perf/results/cluster/<date>-<commit>.{json,md}` and `LATEST.md`;
//! `--quick` (a smoke run with small counts) writes under `target/cluster/`.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use shardmq_cluster::testing::EtcdProcess;

mod topology;

#[derive(Debug, Parser)]
#[command(about = "shardmq cluster benchmarks on one machine")]
struct Args {
    /// Small counts and one round: checks the harness runs, writes under target/cluster.
    #[arg(long)]
    quick: bool,
    /// Rounds per configuration (medians are reported) [default: 3, 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Scenarios to run, comma-separated: claims, ownership, cross, hold, and topology (the
    /// design's 20 nodes and 360,000 clients with etcd frozen and a storm; about 5 GiB and 10
    /// minutes, so only when named).
    #[arg(long, default_value = "claims,ownership,cross,hold", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Where to write the results [default: perf/results/cluster, target/cluster with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How long a node may take to listen and join its cluster.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped node may take to exit.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections each node holds in the `hold` scenario: under the 20,000 descriptors a process
/// may have here, with room for links, etcd, storage and epoll.
const HOLD_PER_NODE: u64 = 19_000;
/// The admin endpoint's port on each node's address, where a scenario asks for one.
const ADMIN_PORT: u16 = 9090;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cluster: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct Env {
    shardmq: PathBuf,
    scratch: PathBuf,
    quick: bool,
    rounds: usize,
}

fn run(args: Args) -> anyhow::Result<()> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = workspace.canonicalize().context("workspace directory")?;
    let shardmq = workspace.join("target/release/shardmq");
    if !shardmq.is_file() {
        bail!("{} is missing: run perf/cluster (it builds it)", shardmq.display());
    }
    let scratch = workspace.join("target/cluster-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let env = Env {
        shardmq,
        scratch,
        quick: args.quick,
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
    };
    let started = Instant::now();
    let mut results = serde_json::Map::new();
    let mut report = String::new();
    for scenario in &args.scenarios {
        eprintln!("== {scenario}");
        let (value, text) = match scenario.as_str() {
            "claims" => claims(&env)?,
            "ownership" => ownership(&env)?,
            "cross" => cross(&env)?,
            "hold" => hold(&env)?,
            "topology" => topology::topology(&env)?,
            other => bail!("unknown scenario {other:?} (claims, ownership, cross, hold, topology)"),
        };
        results.insert(scenario.clone(), value);
        report.push_str(&text);
    }
    let commit = shardmq_perf::compare::commit(&workspace);
    let date = date();
    let standard = args.scenarios.len() == 4 && env.rounds >= 3;
    let topology_alone = args.scenarios == ["topology"];
    let complete = !args.quick && (standard || topology_alone);
    let out = args.out.unwrap_or_else(|| {
        workspace.join(if complete { "perf/results/cluster" } else { "target/cluster" })
    });
    std::fs::create_dir_all(&out)?;
    let header = format!(
        "# Cluster figures ({date}, commit {commit})\n\n\
         `perf/cluster{}` on this machine ({} CPUs): etcd 3.4 and every node on one host, one \
         shard per node, `--durability none`, the load generator beside them. {} round(s) per \
         configuration, medians [min – max]. Took {:.0} s.\n\n",
        if args.quick { " --quick" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        env.rounds,
        started.elapsed().as_secs_f64()
    );
    let markdown = format!("{header}{report}");
    let stem = match topology_alone {
        true => format!("topology-{date}-{commit}"),
        false => format!("{date}-{commit}"),
    };
    let json = json!({ "date": date, "commit": commit, "rounds": env.rounds, "quick": args.quick, "results": results });
    std::fs::write(out.join(format!("{stem}.json")), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(out.join(format!("{stem}.md")), &markdown)?;
    let latest = if topology_alone { "LATEST-topology.md" } else { "LATEST.md" };
    std::fs::write(out.join(latest), &markdown)?;
    println!("{markdown}");
    eprintln!("written to {}", out.join(format!("{stem}.md")).display());
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Scenarios
// -------------------------------------------------------------------------------------------

fn claims(env: &Env) -> anyhow::Result<(Value, String)> {
    let connections: u64 = if env.quick { 6_000 } else { 30_000 };
    let configurations: [(&str, Option<&[&str]>); 3] = [
        ("batching on (127 ops, 2 ms)", Some(&[])),
        (
            "batching off (1 op per txn)",
            Some(&["--claim-batch-max", "1", "--claim-batch-delay-ms", "0"]),
        ),
        ("no cluster (3 lone nodes)", None),
    ];
    let mut rows = Vec::new();
    let mut values = serde_json::Map::new();
    for (name, cluster_args) in configurations {
        let mut rounds = Vec::new();
        for round in 0..env.rounds {
            let etcd = match cluster_args {
                Some(_) => Some(EtcdProcess::start().map_err(|e| anyhow::anyhow!("{e}"))?),
                None => None,
            };
            let cluster = etcd.as_ref().map(|etcd| (etcd.endpoint(), cluster_args.unwrap_or(&[])));
            let mut nodes = start_nodes(
                env,
                3,
                cluster.as_ref().map(|(e, a)| (e.as_str(), *a)),
                &format!("claims{round}"),
            )?;
            let report = loadgen(
                env,
                &nodes,
                &[
                    "conn",
                    "--connections",
                    &connections.to_string(),
                    "--rate",
                    "100000",
                    "--hold",
                    "1",
                    "--processes",
                    "2",
                    "--workers",
                    "1",
                    "--source",
                    "127.0.0.10-127.0.0.40",
                ],
            )?;
            let stats = stop_nodes(&mut nodes);
            let c = &report["connections"];
            let sample = json!({
                "established": c["established"],
                "failed": c["failed"],
                "connects_per_sec": c["connect_rate_per_sec"],
                "p50_us": c["connect_latency"]["p50_us"],
                "p99_us": c["connect_latency"]["p99_us"],
                "claims": stats.0,
                "txns": stats.1,
                "txn_ops": stats.2,
            });
            eprintln!("  {name} round {round}: {sample}");
            rounds.push(sample);
        }
        let rate = summary(&rounds, "connects_per_sec");
        let p50 = summary(&rounds, "p50_us");
        let p99 = summary(&rounds, "p99_us");
        let claims = summary(&rounds, "claims");
        let txns = summary(&rounds, "txns");
        let ops_per_txn = if txns.0 > 0.0 { summary(&rounds, "txn_ops").0 / txns.0 } else { 0.0 };
        rows.push(format!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt_summary(rate, 0),
            fmt_summary(p50, 0),
            fmt_summary(p99, 0),
            if cluster_args.is_some() { format!("{:.0}", claims.0) } else { "—".into() },
            if cluster_args.is_some() { format!("{:.0}", txns.0) } else { "—".into() },
            if cluster_args.is_some() { format!("{ops_per_txn:.1}") } else { "—".into() },
        ));
        values.insert(name.to_string(), Value::Array(rounds));
    }
    let text = format!(
        "## Claims: {connections} connects over 3 nodes, as fast as the load generator goes\n\n\
         Each connect of a new client id is a claim committed in etcd before CONNACK. \
         `connects/s` is established connections over the time from the first attempt to the \
         last CONNACK (the load generator: 2 processes of 1 worker); latency is TCP connect to \
         CONNACK; claims and transactions are the nodes' own counts.\n\n\
         | configuration | connects/s | connect p50 µs | connect p99 µs | claims | etcd txns | ops per txn |\n\
         |---|---|---|---|---|---|---|\n{}\n\n",
        rows.join("\n")
    );
    Ok((Value::Object(values), text))
}

/// Claims each node keeps waiting at once in the `ownership` scenario: enough to fill
/// 127-operation transactions while earlier ones are in flight.
const OWNERSHIP_IN_FLIGHT: usize = 2048;

fn ownership(env: &Env) -> anyhow::Result<(Value, String)> {
    let per_node: u64 = if env.quick { 20_000 } else { 100_000 };
    let configurations =
        [("batching on (127 ops, 2 ms)", 127, 2), ("batching off (1 op per txn)", 1, 0)];
    let mut rows = Vec::new();
    let mut values = serde_json::Map::new();
    for (name, ops, delay_ms) in configurations {
        let mut rounds = Vec::new();
        for round in 0..env.rounds {
            let etcd = EtcdProcess::start().map_err(|e| anyhow::anyhow!("{e}"))?;
            let planes = (0..3)
                .map(|i| start_control(&etcd.endpoint(), &format!("own{round}"), i, ops, delay_ms))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let started = Instant::now();
            let workers: Vec<_> = planes
                .iter()
                .enumerate()
                .map(|(i, plane)| {
                    let plane = plane.clone();
                    std::thread::spawn(move || claim_ids(&plane, i, per_node))
                })
                .collect();
            let mut latency = hdrhistogram::Histogram::<u64>::new(3)?;
            let mut refused = 0;
            for worker in workers {
                let (histogram, failed) =
                    worker.join().map_err(|_| anyhow::anyhow!("a claim worker panicked"))??;
                latency.add(histogram)?;
                refused += failed;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let (mut txns, mut txn_ops) = (0, 0);
            for plane in &planes {
                let stats = plane.stats();
                txns += stats.txns;
                txn_ops += stats.txn_ops;
                plane.shutdown();
            }
            drop(etcd);
            let sample = json!({
                "claims": 3 * per_node - refused,
                "refused": refused,
                "claims_per_sec": (3 * per_node - refused) as f64 / elapsed,
                "p50_us": latency.value_at_quantile(0.5),
                "p99_us": latency.value_at_quantile(0.99),
                "txns": txns,
                "txn_ops": txn_ops,
            });
            eprintln!("  {name} round {round}: {sample}");
            rounds.push(sample);
        }
        let txns = summary(&rounds, "txns").0;
        let ops_per_txn = if txns > 0.0 { summary(&rounds, "txn_ops").0 / txns } else { 0.0 };
        rows.push(format!(
            "| {name} | {} | {} | {} | {} | {ops_per_txn:.1} |",
            fmt_summary(summary(&rounds, "claims_per_sec"), 0),
            fmt_summary(summary(&rounds, "p50_us"), 0),
            fmt_summary(summary(&rounds, "p99_us"), 0),
            fmt_summary(summary(&rounds, "refused"), 0),
        ));
        values.insert(name.to_string(), Value::Array(rounds));
    }
    let text = format!(
        "## Ownership: {} claims by 3 nodes' control planes, no MQTT\n\n\
         Each of 3 control planes (the code a node runs, in this process) claims {per_node} \
         distinct client ids with {OWNERSHIP_IN_FLIGHT} claims waiting at a time, against one \
         etcd. `claims/s` is all claims over the wall time; latency is one claim's wait for \
         its transaction.\n\n\
         | configuration | claims/s | claim p50 µs | claim p99 µs | refused | ops per txn |\n\
         |---|---|---|---|---|---|\n{}\n\n",
        3 * per_node,
        rows.join("\n")
    );
    Ok((Value::Object(values), text))
}

/// Starts node `index`'s control plane of cluster `cluster` and waits out its claim quarantine.
fn start_control(
    endpoint: &str,
    cluster: &str,
    index: usize,
    ops: usize,
    delay_ms: u64,
) -> anyhow::Result<shardmq_cluster::control::ControlPlane> {
    use shardmq_cluster::control::{ControlConfig, ControlPlane};
    use shardmq_cluster::ownership::OwnershipConfig;
    use shardmq_cluster::{ClaimOutcome, NodeId};

    let node = NodeId::new(&format!("node{index}"));
    let mut ownership = OwnershipConfig::new(node.clone());
    ownership.batch_ops_max = ops;
    ownership.batch_delay = Duration::from_millis(delay_ms);
    // Claims queue behind each other here by design; none should give up.
    ownership.claim_timeout = Duration::from_secs(60);
    let config = ControlConfig {
        cluster: cluster.to_string(),
        node,
        endpoints: vec![endpoint.to_string()],
        link_advertise: ([127, 0, 0, 1], 1884 + index as u16).into(),
        ownership,
        connect_timeout: Duration::from_secs(10),
        access: Default::default(),
    };
    let (plane, _events) = ControlPlane::start(config, 1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = format!("probe-{index}");
        match futures_lite::future::block_on(plane.claim(&probe)) {
            ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned => return Ok(plane),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => bail!("node{index} cannot claim: {other:?}"),
        }
    }
}

/// Claims `count` client ids of node `index`, [`OWNERSHIP_IN_FLIGHT`] at a time: their latency
/// and how many were refused.
fn claim_ids(
    plane: &shardmq_cluster::control::ControlPlane,
    index: usize,
    count: u64,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64)> {
    use shardmq_cluster::ClaimOutcome;
    use std::cell::{Cell, RefCell};

    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let local = tokio::task::LocalSet::new();
    let next = std::rc::Rc::new(Cell::new(0u64));
    let refused = std::rc::Rc::new(Cell::new(0u64));
    let latency = std::rc::Rc::new(RefCell::new(hdrhistogram::Histogram::<u64>::new(3)?));
    for _ in 0..OWNERSHIP_IN_FLIGHT {
        let (plane, next, refused, latency) =
            (plane.clone(), next.clone(), refused.clone(), latency.clone());
        local.spawn_local(async move {
            loop {
                let i = next.get();
                if i >= count {
                    return;
                }
                next.set(i + 1);
                let started = Instant::now();
                match plane.claim(&format!("node{index}-client-{i}")).await {
                    ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned => {
                        let micros = started.elapsed().as_micros() as u64;
                        let _ = latency.borrow_mut().record(micros.max(1));
                    }
                    _ => refused.set(refused.get() + 1),
                }
            }
        });
    }
    runtime.block_on(local);
    let histogram = latency.borrow().clone();
    Ok((histogram, refused.get()))
}

fn cross(env: &Env) -> anyhow::Result<(Value, String)> {
    let duration = if env.quick { "3" } else { "10" };
    // With two targets, client i goes to node i mod 2; subscribers are clients 0..S and
    // publishers S..2S. An odd count puts every publisher on the other node than its
    // subscriber, an even count on the same node.
    // Node links use TLS (as users run them) but where the name says plaintext.
    const TLS: &[&str] = &[];
    const PLAINTEXT: &[&str] = &["--link-plaintext", "true"];
    let configurations = [
        ("QoS 1 at 10K msg/s, same node", "100", Some("10000"), TLS),
        ("QoS 1 at 10K msg/s, across nodes", "101", Some("10000"), TLS),
        ("QoS 1 at 10K msg/s, across nodes, plaintext links", "101", Some("10000"), PLAINTEXT),
        ("QoS 1 closed loop, same node", "100", None, TLS),
        ("QoS 1 closed loop, across nodes", "101", None, TLS),
        ("QoS 1 closed loop, across nodes, plaintext links", "101", None, PLAINTEXT),
    ];
    let mut rows = Vec::new();
    let mut values = serde_json::Map::new();
    for (name, streams, rate, links) in configurations {
        let mut rounds = Vec::new();
        for round in 0..env.rounds {
            let etcd = EtcdProcess::start().map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut nodes =
                start_nodes(env, 2, Some((&etcd.endpoint(), links)), &format!("cross{round}"))?;
            let mut args = vec![
                "pairs",
                "--publishers",
                streams,
                "--subscribers",
                streams,
                "--qos",
                "1",
                "--duration",
                duration,
                "--workers",
                "1",
            ];
            if let Some(rate) = rate {
                args.extend(["--rate", rate]);
            }
            // Routes reach the other node within milliseconds of the SUBACKs; the publishers
            // start after every subscriber is set up, so the streams are all in place.
            let report = loadgen(env, &nodes, &args)?;
            stop_nodes(&mut nodes);
            let m = &report["messages"];
            let sample = json!({
                "received_per_sec": m["received_per_sec"],
                "p50_us": m["latency"]["p50_us"],
                "p99_us": m["latency"]["p99_us"],
                "sent": m["sent"],
                "received": m["received"],
                "passed": report["passed"],
            });
            eprintln!("  {name} round {round}: {sample}");
            rounds.push(sample);
        }
        rows.push(format!(
            "| {name} | {} | {} | {} |",
            fmt_summary(summary(&rounds, "received_per_sec"), 0),
            fmt_summary(summary(&rounds, "p50_us"), 0),
            fmt_summary(summary(&rounds, "p99_us"), 0),
        ));
        values.insert(name.to_string(), Value::Array(rounds));
    }
    let text = format!(
        "## Publishes across nodes versus on one node\n\n\
         Two nodes; 1:1 QoS 1 streams (100 or 101 of them), half the subscribers on each node. \
         Across nodes, each message crosses a node link and its PUBACK waits for the other \
         node's receipt. Node links use TLS 1.3 with the cluster CA, as configured by default, \
         except in the rows that say plaintext (`--link-plaintext true`). Latency is intended \
         send time to receipt (open loop) or send to receipt (closed loop).\n\n\
         | configuration | deliveries/s | p50 µs | p99 µs |\n|---|---|---|---|\n{}\n\n",
        rows.join("\n")
    );
    Ok((Value::Object(values), text))
}

fn hold(env: &Env) -> anyhow::Result<(Value, String)> {
    let nodes_count = 5;
    let per_node = if env.quick { 2_000 } else { HOLD_PER_NODE };
    let total = per_node * nodes_count as u64;
    let etcd = EtcdProcess::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut nodes = start_nodes(env, nodes_count, Some((&etcd.endpoint(), &[])), "hold")?;
    let hold_secs = if env.quick { 3 } else { 15 };
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    // Sample the nodes while the load generator runs.
    let sampler = std::thread::spawn(move || {
        let mut max_fds = vec![0u64; pids.len()];
        let mut max_rss_kb = vec![0u64; pids.len()];
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let mut alive = false;
            for (i, pid) in pids.iter().enumerate() {
                if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    alive = true;
                    max_fds[i] = max_fds[i].max(entries.count() as u64);
                }
                if let Ok(rss) = shardmq_perf::compare::procfs::rss_bytes(*pid) {
                    max_rss_kb[i] = max_rss_kb[i].max(rss / 1024);
                }
            }
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        (max_fds, max_rss_kb)
    });
    let report = loadgen(
        env,
        &nodes,
        &[
            "conn",
            "--connections",
            &total.to_string(),
            "--rate",
            "20000",
            "--hold",
            &hold_secs.to_string(),
            "--processes",
            "6",
            "--workers",
            "1",
            "--source",
            "127.0.0.10-127.0.0.90",
            "--connect-timeout",
            "30",
        ],
    )?;
    let stats = stop_nodes(&mut nodes);
    let (max_fds, max_rss_kb) = sampler.join().map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    let c = &report["connections"];
    let value = json!({
        "connections": total,
        "established": c["established"],
        "failed": c["failed"],
        "stayed_up": c["stayed_up"],
        "connects_per_sec": c["connect_rate_per_sec"],
        "max_fds_per_node": max_fds,
        "max_rss_kb_per_node": max_rss_kb,
        "claims": stats.0,
        "txns": stats.1,
    });
    let text = format!(
        "## {total} connections held across {nodes_count} nodes\n\n\
         The load generator (6 processes, sources 127.0.0.10-90) opens {per_node} connections per \
         node at 20K/s and holds them {hold_secs} s; each node's descriptors and RSS are sampled \
         every 0.5 s (the limit here is 20,000 descriptors per process).\n\n\
         | established | stayed up | failed | connects/s | max descriptors per node | max RSS per node (MiB) | claims / etcd txns |\n\
         |---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {:.0} | {} | {} | {} / {} |\n\n",
        c["established"],
        c["stayed_up"],
        c["failed"],
        c["connect_rate_per_sec"].as_f64().unwrap_or(0.0),
        max_fds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        max_rss_kb.iter().map(|kb| format!("{:.0}", *kb as f64 / 1024.0)).collect::<Vec<_>>().join(", "),
        stats.0,
        stats.1,
    );
    drop(etcd);
    Ok((value, text))
}

// -------------------------------------------------------------------------------------------
// Nodes and the load generator
// -------------------------------------------------------------------------------------------

struct Node {
    child: Child,
    addr: String,
    log: PathBuf,
    /// `--admin-listen` (`/metrics`, `/ready`), when started with one.
    admin: Option<String>,
}

/// Starts `count` nodes on 127.0.0.1.. (one shard each); with `cluster`, joined through etcd.
fn start_nodes(
    env: &Env,
    count: usize,
    cluster: Option<(&str, &[&str])>,
    name: &str,
) -> anyhow::Result<Vec<Node>> {
    start_nodes_with(env, count, cluster, name, false)
}

/// [`start_nodes`], each node with an admin endpoint on its address, port [`ADMIN_PORT`] when
/// `admin`.
/// Nodes `n0` … `n{LINK_CERT_NODES - 1}` share one cluster CA, made on first use by
/// `shardmq link-certs` in the scratch directory.
const LINK_CERT_NODES: usize = 20;

/// The flags giving node `n{index}` link TLS.
fn link_tls_args(env: &Env, index: usize) -> anyhow::Result<Vec<String>> {
    let dir = env.scratch.join("link-certs");
    if !dir.join("ca.pem").exists() {
        let nodes: Vec<String> = (0..LINK_CERT_NODES).map(|n| format!("n{n}")).collect();
        let output = shardmq_command(env)
            .arg("link-certs")
            .arg("--dir")
            .arg(&dir)
            .args(&nodes)
            .output()
            .context("running shardmq link-certs")?;
        if !output.status.success() {
            bail!("shardmq link-certs: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let file = |name: String| dir.join(name).display().to_string();
    Ok(vec![
        "--link-tls-cert".into(),
        file(format!("n{index}.pem")),
        "--link-tls-key".into(),
        file(format!("n{index}.key")),
        "--link-tls-ca".into(),
        file("ca.pem".into()),
    ])
}

fn start_nodes_with(
    env: &Env,
    count: usize,
    cluster: Option<(&str, &[&str])>,
    name: &str,
    admin: bool,
) -> anyhow::Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for index in 0..count {
        let ip = format!("127.0.0.{}", index + 1);
        let dir = env.scratch.join(format!("{name}-n{index}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("node.log");
        let mut command = shardmq_command(env);
        command
            .args(["serve", "--shards", "1", "--durability", "none", "--log", "info"])
            .args(["--listen", &format!("{ip}:1883")])
            .arg("--data-dir")
            .arg(dir.join("data"));
        let admin = admin.then(|| format!("{ip}:{ADMIN_PORT}"));
        if let Some(address) = &admin {
            command.args(["--admin-listen", address]);
        }
        if let Some((endpoint, extra)) = cluster {
            command
                .args(["--etcd", endpoint, "--cluster", name, "--node-id", &format!("n{index}")])
                .args(["--link-listen", &format!("{ip}:1884")])
                .args(extra);
            // Link TLS as users run it, unless the scenario asks for plaintext links.
            if !extra.contains(&"--link-plaintext") {
                command.args(link_tls_args(env, index)?);
            }
        }
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("starting shardmq")?;
        nodes.push(Node { child, addr: format!("{ip}:1883"), log, admin });
    }
    for node in &nodes {
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            if text.contains("listening for MQTT on")
                && (cluster.is_none() || text.contains("joined cluster"))
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {} did not start; its log:\n{text}", node.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Links between the nodes come up within milliseconds of the membership watch; a node
    // claims nothing for its first `CLAIM_QUARANTINE` (docs/cluster.md, "When etcd itself is
    // down"), which the figures should not include.
    let settle = match cluster {
        Some(_) => shardmq_cluster::ownership::CLAIM_QUARANTINE + Duration::from_millis(500),
        None => Duration::from_millis(500),
    };
    std::thread::sleep(settle);
    Ok(nodes)
}

/// Stops every node (SIGTERM) and returns the sum of their (claims, txns, txn ops).
fn stop_nodes(nodes: &mut [Node]) -> (u64, u64, u64) {
    for node in nodes.iter() {
        let _ = Command::new("kill").arg("-TERM").arg(node.child.id().to_string()).status();
    }
    let mut totals = (0, 0, 0);
    for node in nodes.iter_mut() {
        let deadline = Instant::now() + NODE_STOP_TIMEOUT;
        while node.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = node.child.kill();
        let _ = node.child.wait();
        let text = std::fs::read_to_string(&node.log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("etcd ownership:")) {
            let numbers: Vec<u64> = line
                .split("etcd ownership:")
                .nth(1)
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            if numbers.len() >= 3 {
                totals.0 += numbers[0];
                totals.2 += numbers[1];
                totals.1 += numbers[2];
            }
        }
    }
    totals
}

/// `shardmq` run through `sh` with the open-file limit raised to its hard value.
fn shardmq_command(env: &Env) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(r#"ulimit -n "$(ulimit -Hn)" && exec "$@""#).arg("sh").arg(&env.shardmq);
    command
}

/// Runs `shardmq loadgen <args> --target <every node> --json` and returns its report.
fn loadgen(env: &Env, nodes: &[Node], args: &[&str]) -> anyhow::Result<Value> {
    let json_path = env.scratch.join("loadgen.json");
    let _ = std::fs::remove_file(&json_path);
    let mut command = shardmq_command(env);
    command.arg("loadgen").args(args).arg("--quiet").arg("--json").arg(&json_path);
    for node in nodes {
        command.args(["--target", &node.addr]);
    }
    let output = command.stdin(Stdio::null()).output().context("running the load generator")?;
    let text = std::fs::read_to_string(&json_path).with_context(|| {
        format!(
            "the load generator wrote no report (exit {}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

// -------------------------------------------------------------------------------------------
// Figures
// -------------------------------------------------------------------------------------------

/// (median, min, max) of a numeric field over the rounds.
fn summary(rounds: &[Value], field: &str) -> (f64, f64, f64) {
    let mut values: Vec<f64> = rounds.iter().filter_map(|r| r[field].as_f64()).collect();
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(|a, b| a.total_cmp(b));
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn fmt_summary((median, min, max): (f64, f64, f64), decimals: usize) -> String {
    if (max - min).abs() < f64::EPSILON {
        return format!("{median:.decimals$}");
    }
    format!("{median:.decimals$} [{min:.decimals$} – {max:.decimals$}]")
}

fn date() -> String {
    let output = Command::new("date").arg("+%Y-%m-%d").output().ok();
    output
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

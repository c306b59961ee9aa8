//! The load generator against real brokers: the `shardmq` binary of this workspace and
//! Mosquitto (Debian's `mosquitto`), each started by the test on a free loopback port.
//!
//! Scenarios run through the library API with the same flags a user types, and the tests check
//! the report's counts exactly: what was sent, what arrived, what was lost.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use shardmq_loadgen::{run, LoadgenArgs, Progress, Report};

/// How long a broker may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The broker's log line that gives its address.
const LISTENING: &str = "listening for MQTT on ";
/// Where Debian installs the Mosquitto broker.
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Parses loadgen flags as `shardmq loadgen ...` would.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

/// A broker process, killed on drop.
struct Broker {
    child: Child,
    addr: SocketAddr,
    data_dir: Option<PathBuf>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `target/<profile>/shardmq`, next to this test's `deps/` directory.
fn shardmq_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps")
        .join("shardmq");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p shardmq-engine` (same profile) before these tests",
        binary.display()
    );
    binary
}

/// Starts `shardmq serve` on 127.0.0.1, an ephemeral port, two shards, plus `extra` flags.
fn start_shardmq(name: &str, extra: &[&str]) -> Broker {
    let data_dir =
        std::env::temp_dir().join(format!("shardmq-loadgen-{}-{name}", std::process::id()));
    let mut child = Command::new(shardmq_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2", "--log", "info", "--data-dir"])
        .arg(&data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the shardmq binary");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, receiver) = mpsc::channel();
    // Reads the log for the process's whole life: a full pipe would block the broker.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split(LISTENING).nth(1) {
                let addr = rest.split_whitespace().next().and_then(|addr| addr.parse().ok());
                let _ = sender.send(addr);
            }
        }
    });
    let addr =
        receiver.recv_timeout(START_TIMEOUT).ok().flatten().unwrap_or_else(|| {
            panic!("shardmq did not log {LISTENING:?} within {START_TIMEOUT:?}")
        });
    Broker { child, addr, data_dir: Some(data_dir) }
}

/// Starts Mosquitto on a free loopback port, with `settings` (mosquitto.conf lines).
fn start_mosquitto(settings: &[&str]) -> Broker {
    // Ask the kernel for a free port, then let Mosquitto bind it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    start_mosquitto_on(port, settings)
}

/// Starts Mosquitto on 127.0.0.1:`port`, with `settings` (mosquitto.conf lines).
fn start_mosquitto_on(port: u16, settings: &[&str]) -> Broker {
    assert!(
        std::path::Path::new(MOSQUITTO).is_file(),
        "{MOSQUITTO} is missing: install the broker with `apt-get install mosquitto`"
    );
    let config = std::env::temp_dir().join(format!("shardmq-loadgen-mosquitto-{port}.conf"));
    let text =
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n{}\n", settings.join("\n"));
    std::fs::write(&config, text).expect("write mosquitto.conf");
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker { child, addr, data_dir: None }
}

/// Runs `shardmq loadgen <flags>` through the library, with two workers and no progress lines.
fn loadgen(flags: &str) -> Report {
    let argv = std::iter::once("loadgen").chain(flags.split_whitespace());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|error| panic!("{flags}: {error}"));
    let config = cli.args.resolve().unwrap_or_else(|error| panic!("{flags}: {error}"));
    run(config, Progress::Silent).unwrap_or_else(|error| panic!("{flags}: {error}"))
}

/// Every message of every stream arrived exactly once, and the report says so.
fn assert_exact(report: &Report, qos: u8) {
    let messages = report.messages.as_ref().expect("a messaging report");
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert!(messages.sent > 0, "nothing sent:\n{}", report.table());
    assert_eq!(messages.received, messages.expected, "{}", report.table());
    if qos > 0 {
        assert_eq!(messages.acknowledged, messages.sent, "{}", report.table());
    }
    assert_eq!(messages.integrity.len(), 1, "{}", report.table());
    let integrity = &messages.integrity[0];
    assert_eq!(integrity.qos, qos);
    assert_eq!((integrity.lost, integrity.duplicates, integrity.out_of_order), (0, 0, 0));
    assert_eq!(integrity.expected, messages.expected);
    assert_eq!(messages.latency.count, messages.received);
}

#[test]
fn qos1_pairs_against_shardmq_count_exactly() {
    let broker = start_shardmq("pairs", &[]);
    let target = broker.addr;
    // An open-loop rate the broker sustains with room to spare, so no session queue fills.
    let report = loadgen(&format!(
        "pairs --target {target} --qos 1 --publishers 4 --duration 2 --rate 4000 --workers 2"
    ));
    assert_exact(&report, 1);
    let messages = report.messages.as_ref().expect("messages");
    assert_eq!(messages.integrity[0].streams, 4);
    assert_eq!(messages.expected, messages.sent, "pairs: one subscriber per message");
    assert_eq!(report.connections.stayed_up, 8);
}

#[test]
fn conn_holds_200_connections_from_several_source_addresses() {
    let broker = start_shardmq("conn", &[]);
    // A 1 s keepalive: the broker drops a client silent for 1.5 s, so holding for 3 s proves
    // that PINGREQs flow while the connections are idle.
    let report = loadgen(&format!(
        "conn --target {} --connections 200 --rate 1000 --hold 3 --keepalive 1 \
         --source 127.0.0.2-127.0.0.5 --workers 2",
        broker.addr
    ));
    let connections = &report.connections;
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert_eq!(connections.attempted, 200);
    assert_eq!(connections.established, 200);
    assert_eq!(connections.stayed_up, 200);
    assert!(connections.failures.is_empty() && connections.dropped.is_empty());
    assert_eq!(connections.connect_latency.count, 200);
    assert!(report.messages.is_none());
}

#[test]
fn conn_failures_are_named() {
    // Nothing listens on a port just released: every attempt is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let report =
        loadgen(&format!("conn --target 127.0.0.1:{port} --connections 20 --rate 1000 --hold 0"));
    assert!(!report.passed);
    assert_eq!(report.connections.failures.get("refused"), Some(&20));
    assert_eq!(report.connections.established, 0);
}

#[test]
fn conn_retry_waits_for_a_broker_that_comes_up_late() {
    // The port is free now; Mosquitto takes it 1.5 s into the run. Until then every attempt is
    // refused, and retried after its backoff.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        start_mosquitto_on(port, &[])
    });
    let report = loadgen(&format!(
        "conn --target 127.0.0.1:{port} --connections 40 --rate 200 --hold 1 --retry \
         --retry-backoff-ms 100 --retry-backoff-max-ms 400"
    ));
    let _broker = late.join().expect("mosquitto started");
    let connections = &report.connections;
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert_eq!(connections.established, 40, "{}", report.table());
    assert!(connections.failures.is_empty(), "{}", report.table());
    let refused = connections.retries.get("refused").copied().unwrap_or(0);
    assert!(refused > 0, "no attempt was refused and retried:\n{}", report.table());
    assert_eq!(connections.attempted, 40 + refused, "{}", report.table());
    assert!(report.table().contains("retries"), "{}", report.table());
}

#[test]
fn acknowledged_loss_is_reported_loudly() {
    // A session queue of 10 messages: closed-loop QoS 1 publishing outruns the subscriber's
    // delivery window, and the broker drops what overflows the queue although it acknowledged
    // it to the publisher. The load generator must call that out. (Mosquitto: shardmq pauses
    // the publishers instead, see shard/src/state/backpressure.rs.)
    let broker = start_mosquitto(&["max_queued_messages 10", "max_inflight_messages 4"]);
    let report = loadgen(&format!(
        "fanin --target {} --qos 1 --publishers 8 --subscribers 1 --duration 1 --workers 2",
        broker.addr
    ));
    let messages = report.messages.as_ref().expect("messages");
    let integrity = &messages.integrity[0];
    assert!(integrity.lost_acknowledged > 0, "{}", report.table());
    assert_eq!(integrity.lost, integrity.expected - integrity.received + integrity.duplicates);
    assert!(!report.passed);
    assert!(
        report.problems.iter().any(|problem| problem.starts_with("LOSS:")),
        "{:?}",
        report.problems
    );
}

#[test]
fn shardmq_paces_closed_loop_publishers_instead_of_dropping() {
    // The same overload as above against shardmq (two shards, so publishers and the subscriber
    // meet on different shards too): the publishers are paused while the subscriber drains,
    // and every acknowledged message arrives.
    let broker = start_shardmq("paced", &["--max-queued-messages", "10", "--max-inflight", "4"]);
    let report = loadgen(&format!(
        "fanin --target {} --qos 1 --publishers 8 --subscribers 1 --duration 1 --workers 2",
        broker.addr
    ));
    assert_exact(&report, 1);
}

#[test]
fn json_report_is_well_formed() {
    let broker = start_shardmq("json", &[]);
    let path = std::env::temp_dir().join(format!("shardmq-loadgen-{}.json", std::process::id()));
    let report = loadgen(&format!(
        "fanout --target {} --qos 0 --subscribers 5 --duration 1 --rate 2000 --mqtt 5",
        broker.addr
    ));
    shardmq_loadgen::write_json(&report, &path).expect("write the JSON report");
    let text = std::fs::read_to_string(&path).expect("read the JSON report");
    let _ = std::fs::remove_file(&path);
    let json: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    let messages = report.messages.as_ref().expect("messages");
    assert_eq!(json["scenario"], "fanout");
    assert_eq!(json["passed"], report.passed);
    assert_eq!(json["config"]["version"], "5");
    assert_eq!(json["config"]["scenario"]["kind"], "messaging");
    assert_eq!(json["messages"]["sent"], messages.sent);
    assert_eq!(json["messages"]["received"], messages.received);
    assert_eq!(json["connections"]["established"], 6);
    for percentile in ["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"] {
        assert!(json["messages"]["latency"][percentile].is_f64(), "{percentile}: {text}");
    }
    let integrity = &json["messages"]["integrity"][0];
    for field in ["lost", "lost_acknowledged", "duplicates", "out_of_order", "streams"] {
        assert!(integrity[field].is_u64(), "{field}: {text}");
    }
    assert_eq!(integrity["streams"], 5);
    // The plot data: percentiles rising from the minimum to the maximum, latencies with them.
    let spectrum = json["messages"]["latency_spectrum"].as_array().expect("a latency spectrum");
    let points: Vec<(f64, f64)> = spectrum
        .iter()
        .map(|point| (point[0].as_f64().expect("percentile"), point[1].as_f64().expect("µs")))
        .collect();
    assert_eq!(points.first().map(|point| point.0), Some(0.0), "{text}");
    assert_eq!(points.last().map(|point| point.0), Some(100.0), "{text}");
    assert!(
        points.windows(2).all(|pair| pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1),
        "{text}"
    );
    assert_eq!(points.last().map(|point| point.1), json["messages"]["latency"]["max_us"].as_f64());
}

#[test]
fn persistent_sessions_are_asked_for_with_session_expiry() {
    let broker = start_shardmq("persistent", &[]);
    let report = loadgen(&format!(
        "pairs --target {} --qos 1 --publishers 3 --duration 1 --rate 600 --mqtt 5 \
         --session-expiry 30",
        broker.addr
    ));
    assert_exact(&report, 1);
    // A 3.1.1 session never expires: the flag is refused rather than leaving sessions behind.
    let argv = "loadgen pairs --target 127.0.0.1:1 --mqtt 3 --session-expiry 30";
    let cli = Cli::try_parse_from(argv.split_whitespace()).expect("flags parse");
    let error = cli.args.resolve().expect_err("--session-expiry needs MQTT 5");
    assert!(error.to_string().contains("--session-expiry"), "{error}");
}

#[test]
fn qos2_and_qos1_against_mosquitto_count_exactly() {
    let broker = start_mosquitto(&[]);
    let target = broker.addr;
    let report = loadgen(&format!(
        "pairs --target {target} --qos 2 --publishers 3 --duration 1 --rate 1500 --mqtt 5"
    ));
    assert_exact(&report, 2);
    let report = loadgen(&format!(
        "fanout --target {target} --qos 1 --subscribers 4 --duration 1 --rate 1000"
    ));
    assert_exact(&report, 1);
    assert_eq!(report.messages.as_ref().map(|m| m.integrity[0].streams), Some(4));
}

#[test]
fn worker_processes_merge_into_one_exact_report() {
    let broker = start_shardmq("processes", &[]);
    let path =
        std::env::temp_dir().join(format!("shardmq-loadgen-processes-{}.json", std::process::id()));
    // Through the binary: worker processes re-execute it, which a test executable cannot stand
    // in for.
    let output = Command::new(shardmq_binary())
        .args(["loadgen", "pairs", "--target", &broker.addr.to_string()])
        .args(["--qos", "1", "--publishers", "4", "--duration", "1", "--rate", "2000"])
        .args(["--processes", "2", "--workers", "1", "--quiet", "--json"])
        .arg(&path)
        .output()
        .expect("run shardmq loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&path).expect("read the JSON report");
    let _ = std::fs::remove_file(&path);
    let json: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    assert_eq!(json["passed"], true, "{stdout}");
    assert_eq!(json["connections"]["established"], 8, "{stdout}");
    let messages = &json["messages"];
    let sent = messages["sent"].as_u64().expect("sent");
    assert!(sent > 0, "{stdout}");
    assert_eq!(messages["received"], sent, "{stdout}");
    assert_eq!(messages["acknowledged"], sent, "{stdout}");
    assert_eq!(messages["integrity"][0]["streams"], 4, "{stdout}");
    assert_eq!(messages["integrity"][0]["lost"], 0, "{stdout}");
    assert_eq!(messages["latency"]["count"], sent, "{stdout}");
}

#[test]
fn a_broker_killed_mid_run_is_reported_not_waited_for() {
    let mut broker = start_shardmq("killed", &[]);
    let flags = format!(
        "pairs --target {} --qos 1 --publishers 4 --duration 3 --rate 2000 --workers 2",
        broker.addr
    );
    let run = std::thread::spawn(move || loadgen(&flags));
    std::thread::sleep(Duration::from_millis(1500));
    broker.child.kill().expect("kill the broker");
    let report = run.join().expect("the run ends although its broker died");
    assert!(!report.passed);
    assert_eq!(report.connections.stayed_up, 0, "{}", report.table());
    let dropped: u64 = report.connections.dropped.values().sum();
    assert_eq!(dropped, 8, "{}", report.table());
    let messages = report.messages.as_ref().expect("messages");
    assert!(messages.sent > 0 && messages.received > 0, "{}", report.table());
    // Every subscriber lost its own connection: its streams are judged apart.
    assert!(messages.integrity.iter().all(|group| group.dropped_subscribers), "{}", report.table());
}

/// A broker that stops reading (SIGSTOP: its sockets fill up and nothing drains them) must not
/// hold the run up: a publisher's write waits at most the acknowledgement drain after the stop,
/// and the run ends with a report naming what happened. Large messages for five seconds after
/// the stop: the publishers' socket buffers (up to 36 MiB each here) fill at even 20 MB/s.
/// Established TCP connections to `addr` (the broker's side, counted by `ss`).
fn established_to(addr: SocketAddr) -> usize {
    let filter = format!("sport = :{}", addr.port());
    let output = Command::new("ss")
        .args(["-Htn", "state", "established", &filter])
        .output()
        .expect("run ss (Debian's iproute2)");
    String::from_utf8_lossy(&output.stdout).lines().count()
}

#[test]
fn a_broker_that_stops_reading_is_reported_not_waited_for() {
    let broker = start_shardmq("stopped", &[]);
    let flags = format!(
        "pairs --target {} --qos 0 --publishers 2 --payload 65536 --duration 6 --drain-timeout 1 \
         --workers 1",
        broker.addr
    );
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(loadgen(&flags));
    });
    // Stopped once the run's four connections are up (a fixed wait was too short on a loaded
    // machine: the broker stopped before they connected, and no write stalled).
    let deadline = Instant::now() + Duration::from_secs(30);
    while established_to(broker.addr) < 4 {
        assert!(Instant::now() < deadline, "the load generator did not connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = broker.child.id().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    let report = ended.recv_timeout(Duration::from_secs(60));
    signal("-CONT");
    let report = report.expect("the run ends although its broker stopped reading");
    assert!(!report.passed, "{}", report.table());
    let stalled = report.connections.dropped.get("write_stalled").copied().unwrap_or(0);
    assert!(stalled > 0, "{}", report.table());
}

#[test]
fn retained_500_reach_every_wildcard_subscriber() {
    let broker = start_shardmq("retained", &[]);
    let report = loadgen(&format!(
        "retained --target {} --qos 1 --retained 500 --subscribers 4 --workers 2",
        broker.addr
    ));
    let retained = report.retained.as_ref().expect("a retained report");
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert_eq!((retained.published, retained.acknowledged), (500, 500), "{}", report.table());
    assert_eq!((retained.subscribed, retained.complete), (4, 4), "{}", report.table());
    assert_eq!((retained.expected, retained.missing), (2000, 0), "{}", report.table());
    assert_eq!(retained.received, 2000 + retained.duplicates);
    assert_eq!(retained.without_retain_flag, 0);
    assert_eq!(retained.subscribe_to_last.count, 4);
    assert!(retained.delivered_per_sec > 0.0);
    assert_eq!(retained.cleared, Some(500));
    // The publisher, the four subscribers and the clearing client.
    assert_eq!(report.connections.stayed_up, 6);
}

#[test]
fn retained_messages_a_filter_misses_are_reported_missing() {
    let broker = start_shardmq("retained-missing", &[]);
    let report = loadgen(&format!(
        "retained --target {} --qos 1 --retained 20 --subscribers 1 --wildcard nothing/+",
        broker.addr
    ));
    let retained = report.retained.as_ref().expect("a retained report");
    assert!(!report.passed);
    assert_eq!((retained.subscribed, retained.missing), (1, 20), "{}", report.table());
    assert!(
        report.problems.iter().any(|problem| problem.starts_with("MISSING:")),
        "{:?}",
        report.problems
    );
}

#[test]
fn churning_persistent_sessions_get_what_was_queued_while_offline() {
    let broker = start_shardmq("churn", &[]);
    // 4 clients reconnecting 4 times a second in all: each is offline half of every second
    // while the publisher sends 200 msg/s over their topics.
    let report = loadgen(&format!(
        "churn --target {} --clients 4 --rate 4 --duration 3 --publish-rate 200 --workers 2",
        broker.addr
    ));
    let churn = report.churn.as_ref().expect("a churn report");
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert!(churn.reconnects >= 8, "{}", report.table());
    assert_eq!(churn.reconnect_latency.count, churn.reconnects);
    // Every CONNACK checked: the first connects and every reconnect.
    assert_eq!(churn.session_present_checked, 4 + churn.reconnects);
    assert_eq!(churn.session_present_wrong, 0);
    assert!(churn.sent > 0);
    assert_eq!(churn.acknowledged, churn.sent, "{}", report.table());
    assert_eq!(churn.expected, churn.sent);
    assert_eq!(churn.received, churn.sent + churn.duplicates, "{}", report.table());
    assert_eq!((churn.lost, churn.out_of_order, churn.foreign), (0, 0, 0), "{}", report.table());
    assert!(churn.queued_delivered > 0, "nothing was queued while offline:\n{}", report.table());
    assert!(report.connections.failures.is_empty() && report.connections.dropped.is_empty());
}

#[test]
fn sigterm_ends_the_run_early_with_a_report() {
    let broker = start_shardmq("stop", &[]);
    let json =
        std::env::temp_dir().join(format!("shardmq-loadgen-stop-{}.json", std::process::id()));
    // Held for 60 s unless stopped; the test stops it after the connections are up.
    let mut child = Command::new(shardmq_binary())
        .args(["loadgen", "conn", "--target", &broker.addr.to_string(), "--connections", "50"])
        .args(["--rate", "1000", "--hold", "60", "--quiet", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardmq loadgen");
    std::thread::sleep(Duration::from_millis(1500));
    let sent =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shardmq loadgen did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut stdout)
        .expect("read the summary");
    assert!(status.success(), "{status:?}\n{stdout}");
    assert!(stdout.contains("stopped      early"), "{stdout}");
    let text = std::fs::read_to_string(&json).expect("the JSON report was written");
    let _ = std::fs::remove_file(&json);
    let value: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    assert_eq!(value["stopped_early"], true);
    assert_eq!(value["connections"]["established"], 50);
    assert_eq!(value["connections"]["stayed_up"], 50);
}

#[test]
fn retained_and_churn_against_mosquitto() {
    let broker = start_mosquitto(&[]);
    // 500 retained at QoS 1: within Mosquitto's default queue of 1,000 per session, so all of
    // them must arrive (past it, Mosquitto drops them and the tool reports them missing).
    let report = loadgen(&format!(
        "retained --target {} --qos 1 --retained 500 --subscribers 3 --mqtt 5",
        broker.addr
    ));
    let retained = report.retained.as_ref().expect("a retained report");
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert_eq!((retained.complete, retained.missing), (3, 0), "{}", report.table());
    let report = loadgen(&format!(
        "churn --target {} --clients 4 --rate 4 --duration 2 --publish-rate 100 --mqtt 5",
        broker.addr
    ));
    let churn = report.churn.as_ref().expect("a churn report");
    assert!(report.passed, "problems: {:?}\n{}", report.problems, report.table());
    assert_eq!((churn.lost, churn.session_present_wrong), (0, 0), "{}", report.table());
    assert_eq!(churn.received, churn.sent + churn.duplicates, "{}", report.table());
    assert!(churn.queued_delivered > 0, "{}", report.table());
}

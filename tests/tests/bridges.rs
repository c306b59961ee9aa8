//! Bridges (`[[bridge]]`, docs/bridges.md) against Debian's Mosquitto broker, with
//! mosquitto_pub and mosquitto_sub on both sides: out and in with prefixes, `both` without
//! loops on MQTT 5 and 3.1.1, Mosquitto killed -9 while messages are published locally,
//! shardmq killed -9 with messages queued, the queue limit, mutual TLS to Mosquitto, a user name
//! and password file on Mosquitto with the local ACL applied to the user `$bridge/<name>`, and a
//! two-node cluster running the bridge on one node (then on the other once it is killed).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use shardmq_tests::{require_tool, run_tool, spawn_tool, tool_command, Broker, TestDir};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// How long a message may take to cross the bridge (reconnects back off up to a few seconds).
const WAIT: Duration = Duration::from_secs(20);

/// A Mosquitto broker on 127.0.0.1, killed when dropped.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto on a free port; with `persistence`, its database is saved every second
    /// in `dir` (so a session survives kill -9 once saved).
    fn start(dir: &Path, persistence: bool) -> Mosquitto {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let config = dir.join("mosquitto.conf");
        // Run as root, Mosquitto would switch to the user `mosquitto`, who cannot write the
        // test's directories; `user root` keeps it as it is (ignored when not root).
        let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n");
        if persistence {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.display()
            ));
        }
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let mut mosquitto = Mosquitto { child: None, port, config };
        mosquitto.run();
        mosquitto
    }

    /// Appends `lines` to the configuration and restarts Mosquitto with it.
    fn reconfigure(&mut self, lines: &str) {
        self.kill();
        let mut text = std::fs::read_to_string(&self.config).expect("read mosquitto.conf");
        text.push_str(lines);
        std::fs::write(&self.config, text).expect("write mosquitto.conf");
        self.run();
    }

    fn run(&mut self) {
        require_tool(MOSQUITTO);
        let mut command = Command::new(MOSQUITTO);
        command
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(spawn_tool(&mut command));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A mosquitto_sub printing `topic payload` per message, read line by line.
struct Sub {
    child: Child,
    lines: Receiver<String>,
    /// Messages that arrived before the SUBACK (a persistent session's queue).
    early: Vec<String>,
}

impl Sub {
    /// Subscribes at QoS 1 to `topic` on the broker at `port` and returns once subscribed.
    /// `session`: a persistent session of that client id.
    fn start(port: u16, version: &str, topic: &str, session: Option<&str>) -> Sub {
        require_tool("mosquitto_sub");
        let mut command = tool_command("stdbuf");
        command.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port.to_string()]).args([
            "-V",
            version,
            "-d",
            "-q",
            "1",
            "-t",
            topic,
            "-F",
            "MSG %t %p",
        ]);
        if let Some(id) = session {
            command.args(["-c", "-i", id]);
        }
        let mut child = spawn_tool(&mut command);
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = Sub { child, lines, early: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.lines.recv_timeout(left) {
                Ok(line) if line.contains("received SUBACK") => return sub,
                Ok(line) => sub.early.extend(line.strip_prefix("MSG ").map(String::from)),
                Err(_) => panic!("mosquitto_sub on {port} did not subscribe to {topic}"),
            }
        }
    }

    /// The messages (`topic payload`) received within `wait`, stopping early at `count`.
    fn messages(&mut self, count: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut messages = std::mem::take(&mut self.early);
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(message) = line.strip_prefix("MSG ") {
                        messages.push(message.to_string());
                    }
                }
                Err(_) => break,
            }
        }
        messages
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes each of `payloads` at QoS 1 on `topic` (one mosquitto_pub, `-l`), and returns once
/// the broker acknowledged them all.
fn publish(port: u16, version: &str, topic: &str, payloads: &[String]) {
    require_tool("mosquitto_pub");
    let mut command = tool_command("mosquitto_pub");
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            version,
            "-q",
            "1",
            "-t",
            topic,
            "-l",
        ])
        .stdin(Stdio::piped());
    let mut child = spawn_tool(&mut command);
    let mut stdin = child.stdin.take().expect("piped");
    for payload in payloads {
        writeln!(stdin, "{payload}").expect("write to mosquitto_pub");
    }
    drop(stdin);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "mosquitto_pub failed on {topic}");
            return;
        }
        assert!(Instant::now() < deadline, "mosquitto_pub did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn publish_one(port: u16, topic: &str, payload: &str) {
    let output = run_tool(
        tool_command("mosquitto_pub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ]),
        WAIT,
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Writes a config with one bridge `b` to Mosquitto at `port` with `extra` keys and `topics`.
fn bridge_config(dir: &Path, port: u16, extra: &str, topics: &str) -> PathBuf {
    let path = dir.join("shardmq.toml");
    let text = format!(
        "[[bridge]]\nname = \"b\"\naddress = \"127.0.0.1:{port}\"\nkeepalive_secs = 10\n{extra}topics = [{topics}]\n"
    );
    std::fs::write(&path, text).expect("write shardmq.toml");
    path
}

fn start_shardmq(data: &Path, config: &Path) -> Broker {
    Broker::start_in(
        data,
        &["--config", config.to_str().expect("UTF-8"), "--admin-listen", "127.0.0.1:0"],
    )
}

fn wait_connected(broker: &Broker, times: usize) {
    assert!(
        broker.wait_for_log_count("bridge connected", times, WAIT),
        "the bridge did not connect ({times}):\n{}",
        broker.log()
    );
}

/// Waits until the bridge's metric `name` reads `expected`.
fn wait_metric(broker: &Broker, name: &str, expected: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = broker.metric_total(name, "bridge=\"b\"");
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {value}, not {expected}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|n| format!("m{n}")).collect()
}

#[test]
fn out_and_in_with_prefixes() {
    let dir = TestDir::new("bridge-prefixes");
    let mosquitto = Mosquitto::start(dir.path(), false);
    let config = bridge_config(
        dir.path(),
        mosquitto.port,
        "",
        "{ pattern = \"sensors/#\", direction = \"out\", qos = 1, local_prefix = \"site/\", remote_prefix = \"fleet/a/\" }, \
         { pattern = \"cmd/#\", direction = \"in\", qos = 1, local_prefix = \"local/\", remote_prefix = \"remote/\" }",
    );
    let data = TestDir::new("bridge-prefixes-data");
    let broker = start_shardmq(data.path(), &config);
    wait_connected(&broker, 1);
    // Out: a local publish, seen on Mosquitto under the remote prefix.
    let mut remote = Sub::start(mosquitto.port, "mqttv5", "fleet/a/#", None);
    publish_one(broker.port(), "site/sensors/t1", "21.5");
    assert_eq!(remote.messages(1, WAIT), ["fleet/a/sensors/t1 21.5"]);
    // In: a publish on Mosquitto, seen locally under the local prefix.
    let mut local = Sub::start(broker.port(), "mqttv5", "local/#", None);
    publish_one(mosquitto.port, "remote/cmd/reboot", "now");
    assert_eq!(local.messages(1, WAIT), ["local/cmd/reboot now"]);
    // Outside the patterns: not bridged either way.
    publish_one(broker.port(), "other/t1", "x");
    publish_one(mosquitto.port, "other/t2", "y");
    assert!(remote.messages(1, Duration::from_secs(1)).is_empty());
    assert!(local.messages(1, Duration::from_secs(1)).is_empty());
    wait_metric(&broker, "shardmq_bridge_sent_total", 1);
    wait_metric(&broker, "shardmq_bridge_received_total", 1);
    wait_metric(&broker, "shardmq_bridge_connected", 1);
}

#[test]
fn both_directions_without_loops() {
    for protocol in ["5", "3.1.1"] {
        let dir = TestDir::new("bridge-both");
        let mosquitto = Mosquitto::start(dir.path(), false);
        let extra = format!("protocol = \"{protocol}\"\n");
        let config = bridge_config(
            dir.path(),
            mosquitto.port,
            &extra,
            "{ pattern = \"echo/#\", direction = \"both\", qos = 1 }",
        );
        let data = TestDir::new("bridge-both-data");
        let broker = start_shardmq(data.path(), &config);
        wait_connected(&broker, 1);
        let mut remote = Sub::start(mosquitto.port, "mqttv5", "echo/#", None);
        let mut local = Sub::start(broker.port(), "mqttv5", "echo/#", None);
        publish(broker.port(), "mqttv5", "echo/local", &numbered(0, 10));
        publish(mosquitto.port, "mqttv5", "echo/remote", &numbered(0, 10));
        // Each side sees each message exactly once: a loop would repeat them.
        let mut seen_remote = remote.messages(40, Duration::from_secs(4));
        let mut seen_local = local.messages(40, Duration::from_secs(4));
        seen_remote.sort();
        seen_local.sort();
        let mut expected: Vec<String> = numbered(0, 10)
            .iter()
            .flat_map(|m| [format!("echo/local {m}"), format!("echo/remote {m}")])
            .collect();
        expected.sort();
        assert_eq!(seen_remote, expected, "on Mosquitto, protocol {protocol}");
        assert_eq!(seen_local, expected, "on shardmq, protocol {protocol}");
    }
}

#[test]
fn mosquitto_killed_while_publishing_loses_nothing_acknowledged() {
    let dir = TestDir::new("bridge-remote-kill");
    let mut mosquitto = Mosquitto::start(dir.path(), true);
    let config = bridge_config(
        dir.path(),
        mosquitto.port,
        "",
        "{ pattern = \"data/#\", direction = \"out\", qos = 1 }",
    );
    let data = TestDir::new("bridge-remote-kill-data");
    let broker = start_shardmq(data.path(), &config);
    wait_connected(&broker, 1);
    // A persistent session on Mosquitto, saved to its database before the kill.
    let mut watcher = Sub::start(mosquitto.port, "mqttv311", "data/#", Some("watcher"));
    publish(broker.port(), "mqttv5", "data/x", &numbered(0, 50));
    let first = watcher.messages(50, WAIT);
    assert_eq!(first.len(), 50, "{first:?}");
    drop(watcher);
    std::thread::sleep(Duration::from_millis(2500));
    mosquitto.kill();
    // Acknowledged locally while Mosquitto is down: queued in the bridge's session.
    publish(broker.port(), "mqttv5", "data/x", &numbered(50, 200));
    wait_metric(&broker, "shardmq_bridge_queued", 150);
    mosquitto.run();
    wait_connected(&broker, 2);
    let mut watcher = Sub::start(mosquitto.port, "mqttv311", "data/#", Some("watcher"));
    let mut rest = watcher.messages(150, WAIT);
    rest.sort();
    rest.dedup();
    let mut expected: Vec<String> =
        numbered(50, 200).iter().map(|m| format!("data/x {m}")).collect();
    expected.sort();
    assert_eq!(rest, expected);
}

#[test]
fn shardmq_killed_with_messages_queued_delivers_them_after_restart() {
    let dir = TestDir::new("bridge-local-kill");
    let mut mosquitto = Mosquitto::start(dir.path(), false);
    let port = mosquitto.port;
    mosquitto.kill();
    let config =
        bridge_config(dir.path(), port, "", "{ pattern = \"q/#\", direction = \"out\", qos = 1 }");
    let data = TestDir::new("bridge-local-kill-data");
    let mut broker = start_shardmq(data.path(), &config);
    // Mosquitto is down: everything waits in the bridge's queue.
    publish(broker.port(), "mqttv5", "q/x", &numbered(0, 100));
    wait_metric(&broker, "shardmq_bridge_queued", 100);
    broker.kill();
    mosquitto.run();
    let mut remote = Sub::start(port, "mqttv5", "q/#", None);
    let broker = start_shardmq(data.path(), &config);
    wait_connected(&broker, 1);
    let mut got = remote.messages(100, WAIT);
    got.sort();
    got.dedup();
    let mut expected: Vec<String> = numbered(0, 100).iter().map(|m| format!("q/x {m}")).collect();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking_publishers() {
    let dir = TestDir::new("bridge-limit");
    let mut mosquitto = Mosquitto::start(dir.path(), true);
    let port = mosquitto.port;
    // A persistent session on Mosquitto, saved before it stops: what the bridge sends once it
    // is back waits there, however soon the bridge reconnects.
    drop(Sub::start(port, "mqttv311", "l/#", Some("watcher")));
    std::thread::sleep(Duration::from_millis(2500));
    mosquitto.kill();
    let config = bridge_config(
        dir.path(),
        port,
        "queue_max_messages = 5\n",
        "{ pattern = \"l/#\", direction = \"out\", qos = 1 }",
    );
    let data = TestDir::new("bridge-limit-data");
    let broker = start_shardmq(data.path(), &config);
    let started = Instant::now();
    publish(broker.port(), "mqttv5", "l/x", &numbered(0, 20));
    assert!(started.elapsed() < Duration::from_secs(10), "publishers were held up");
    wait_metric(&broker, "shardmq_bridge_dropped_total", 15);
    wait_metric(&broker, "shardmq_bridge_queued", 5);
    mosquitto.run();
    let mut remote = Sub::start(port, "mqttv311", "l/#", Some("watcher"));
    let got = remote.messages(20, Duration::from_secs(8));
    assert_eq!(got, numbered(0, 5).iter().map(|m| format!("l/x {m}")).collect::<Vec<_>>());
}

/// Writes a test CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`, `server.key`)
/// and a client certificate (`client.pem`, `client.key`) into `dir`.
fn write_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "bridge test CA");
    let issuer =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    std::fs::write(dir.join("ca.pem"), issuer.pem()).expect("write the CA");
    for (name, server) in [("server", true), ("client", false)] {
        let names = if server { vec!["127.0.0.1".to_string()] } else { Vec::new() };
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("key");
        let signed = params.signed_by(&key, &issuer).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), signed.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }
}

#[test]
fn mutual_tls_to_mosquitto() {
    let dir = TestDir::new("bridge-tls");
    write_pki(dir.path());
    let mut mosquitto = Mosquitto::start(dir.path(), false);
    // A second listener with TLS that requires a client certificate of the test CA.
    let tls_port =
        TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let path = |name: &str| dir.path().join(name).display().to_string();
    mosquitto.reconfigure(&format!(
        "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem"),
    ));
    let extra = format!(
        "tls = true\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        path("ca.pem"),
        path("client.pem"),
        path("client.key"),
    );
    let config = bridge_config(
        dir.path(),
        tls_port,
        &extra,
        "{ pattern = \"tls/#\", direction = \"both\", qos = 1 }",
    );
    let data = TestDir::new("bridge-tls-data");
    let broker = start_shardmq(data.path(), &config);
    wait_connected(&broker, 1);
    // Mosquitto's plain listener shows what crossed the TLS link.
    let mut remote = Sub::start(mosquitto.port, "mqttv5", "tls/#", None);
    publish_one(broker.port(), "tls/out", "sealed");
    assert_eq!(remote.messages(1, WAIT), ["tls/out sealed"]);
    let mut local = Sub::start(broker.port(), "mqttv5", "tls/#", None);
    publish_one(mosquitto.port, "tls/in", "opened");
    assert_eq!(local.messages(1, WAIT), ["tls/in opened"]);
}

/// Cluster node `n{index}` on 127.0.0.1 (where the mosquitto clients connect), with the
/// bridge's config file.
fn cluster_node(etcd: &str, index: usize, config: &Path) -> Broker {
    let address = "127.0.0.1:0".to_string();
    let node_id = format!("n{index}");
    let mut args: Vec<String> = [
        "--config",
        config.to_str().expect("UTF-8"),
        "--listen",
        &address,
        "--etcd",
        etcd,
        "--cluster",
        "bridges",
        "--node-id",
        &node_id,
        "--link-listen",
        &address,
        "--lease-ttl",
        "2",
        "--claim-timeout",
        "3",
        "--admin-listen",
        &address,
    ]
    .map(String::from)
    .to_vec();
    args.extend(shardmq_tests::link_tls_args(&node_id));
    Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_cluster_bridges_each_message_once_from_one_node() {
    let etcd =
        shardmq_cluster::testing::EtcdProcess::start().unwrap_or_else(|error| panic!("{error}"));
    let dir = TestDir::new("bridge-cluster");
    let mosquitto = Mosquitto::start(dir.path(), false);
    let config = bridge_config(
        dir.path(),
        mosquitto.port,
        "",
        "{ pattern = \"c/#\", direction = \"out\", qos = 1 }, { pattern = \"ci/#\", direction = \"in\", qos = 1 }",
    );
    let mut nodes: Vec<Broker> =
        (0..2).map(|index| cluster_node(&etcd.endpoint(), index, &config)).collect();
    // One node runs the bridge; the other never connects it.
    let deadline = Instant::now() + WAIT;
    let running = loop {
        let connected: Vec<usize> =
            (0..2).filter(|&i| nodes[i].log_contains("bridge connected")).collect();
        if connected.len() == 1 {
            break connected[0];
        }
        assert!(connected.len() < 2, "both nodes run the bridge");
        assert!(Instant::now() < deadline, "no node runs the bridge");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(!nodes[1 - running].log_contains("bridge connected"), "both nodes run the bridge");
    // Publishes on either node cross once, in the routes' time (one subscription, the
    // bridge's, on one node).
    let mut remote = Sub::start(mosquitto.port, "mqttv5", "c/#", None);
    let deadline = Instant::now() + WAIT;
    loop {
        publish_one(nodes[1 - running].port(), "c/probe", "p");
        if !remote.messages(1, Duration::from_millis(500)).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the bridge's route did not reach the other node");
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = remote.messages(100, Duration::from_millis(200));
    publish(nodes[0].port(), "mqttv5", "c/0", &numbered(0, 10));
    publish(nodes[1].port(), "mqttv5", "c/1", &numbered(0, 10));
    let got = remote.messages(40, Duration::from_secs(4));
    assert_eq!(got.len(), 20, "{got:?}");
    // In: one local publish, seen on both nodes once.
    let mut subs: Vec<Sub> =
        nodes.iter().map(|node| Sub::start(node.port(), "mqttv5", "ci/#", None)).collect();
    publish_one(mosquitto.port, "ci/x", "hello");
    for sub in &mut subs {
        assert_eq!(sub.messages(3, Duration::from_secs(3)), ["ci/x hello"]);
    }
    // The node running the bridge is killed: the other one takes the bridge over.
    nodes[running].kill();
    let survivor = &nodes[1 - running];
    wait_connected(survivor, 1);
    publish(survivor.port(), "mqttv5", "c/after", &numbered(0, 5));
    let mut got = remote.messages(5, WAIT);
    got.sort();
    assert_eq!(got, numbered(0, 5).iter().map(|m| format!("c/after {m}")).collect::<Vec<_>>());
}

#[test]
fn credentials_on_mosquitto_and_the_acl_as_the_bridge_user() {
    let dir = TestDir::new("bridge-acl");
    let passwd = shardmq_tests::mosquitto_password_file(&dir, &[("edge", "s3cret")]);
    let mut mosquitto = Mosquitto::start(dir.path(), false);
    // A user name with a wrong password is refused; the bridge's is right.
    mosquitto.reconfigure(&format!("password_file {}\n", passwd.display()));
    std::fs::write(dir.path().join("bridge.password"), "s3cret\n").expect("write the password");
    let extra = format!(
        "username = \"edge\"\npassword_file = \"{}\"\n",
        dir.path().join("bridge.password").display()
    );
    let config = bridge_config(
        dir.path(),
        mosquitto.port,
        &extra,
        "{ pattern = \"allowed/#\", qos = 1 }, { pattern = \"denied/#\", qos = 1 }, \
         { pattern = \"in/#\", direction = \"in\", qos = 1 }, { pattern = \"blocked/#\", direction = \"in\", qos = 1 }",
    );
    // Locally, the bridge is the user `$bridge/b`: it may read allowed/# and write in/# only.
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic readwrite #\n\nuser $bridge/b\ntopic read allowed/#\ntopic write in/#\n",
    )
    .expect("write the ACL");
    let data = TestDir::new("bridge-acl-data");
    let broker = Broker::start_in(
        data.path(),
        &["--config", config.to_str().expect("UTF-8"), "--acl-file", acl.to_str().expect("UTF-8")],
    );
    wait_connected(&broker, 1);
    let mut remote = Sub::start(mosquitto.port, "mqttv5", "#", None);
    publish_one(broker.port(), "denied/x", "no");
    publish_one(broker.port(), "allowed/x", "yes");
    assert_eq!(remote.messages(2, Duration::from_secs(3)), ["allowed/x yes"]);
    let mut local = Sub::start(broker.port(), "mqttv5", "#", None);
    publish_one(mosquitto.port, "blocked/y", "no");
    publish_one(mosquitto.port, "in/y", "yes");
    assert_eq!(local.messages(2, Duration::from_secs(3)), ["in/y yes"]);
}

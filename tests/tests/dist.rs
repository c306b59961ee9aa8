//! The files in `dist/`: the example configuration starts a broker as it is, names every key
//! `shardmq serve` accepts, and every value it shows commented out is accepted when uncommented;
//! systemd accepts every line of the unit.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardmq_io::codec::ProtocolVersion;
use shardmq_tests::{
    broker_binary, connect_packet, require_tool, run_tool, tool_command, Broker, RawClient,
};

/// How long the broker may take to fail with the fully uncommented file (etcd is unreachable:
/// the broker gives up after its 5 s connect timeout).
const UNCOMMENTED_TIMEOUT: Duration = Duration::from_secs(30);

fn example_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/shardmq.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_config()).expect("dist/shardmq.toml")
}

/// `key` if `line` is a commented-out setting, `# key = value`.
fn commented_key(line: &str) -> Option<&str> {
    let (key, _value) = line.strip_prefix("# ")?.split_once(" = ")?;
    key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_').then_some(key)
}

/// `key` if `line` is a setting, commented out or not.
fn setting_key(line: &str) -> Option<&str> {
    commented_key(line).or_else(|| {
        let (key, _value) = line.split_once(" = ")?;
        key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_').then_some(key)
    })
}

#[test]
fn example_config_starts_a_broker_as_it_is() {
    // The harness's flags (loopback port 0, a temporary data directory) override the file's
    // `listen` and `data_dir`; every other key comes from the file.
    let path = example_config();
    let mut broker = Broker::start(&["--config", path.to_str().expect("UTF-8 path")]);
    // A client served also means the shards run (and handle SIGTERM) before the stop.
    let (client, connack) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "dist-config"));
    assert!(!connack.reason.is_error(), "{connack:?}");
    drop(client);
    assert!(broker.stop().success(), "{}", broker.log());
}

#[test]
fn example_config_names_every_key() {
    // Every `shardmq serve` flag but --config and --help is a key of the file.
    let binary = broker_binary();
    let mut command = tool_command(binary.to_str().expect("UTF-8 path"));
    command.args(["serve", "--help"]);
    let help = run_tool(&mut command, Duration::from_secs(10));
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<String> = help
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .filter_map(|rest| rest.split([' ', '=', ',']).next())
        .filter(|flag| !["config", "help"].contains(flag))
        .map(|flag| flag.replace('-', "_"))
        .collect();
    assert!(flags.len() > 20, "flags read from `serve --help`: {flags:?}\n{help}");
    let text = example_text();
    let keys: Vec<&str> = text.lines().filter_map(setting_key).collect();
    for flag in &flags {
        assert!(keys.contains(&flag.as_str()), "dist/shardmq.toml lacks `{flag}`");
    }
    for key in &keys {
        assert!(flags.iter().any(|flag| flag == key), "`{key}` is not a `serve` flag");
    }
}

#[test]
fn every_commented_value_is_accepted() {
    let text = example_text();
    let uncommented: String = text
        .lines()
        .map(|line| match commented_key(line) {
            Some(_) => line.trim_start_matches("# "),
            None => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(uncommented.contains("\netcd = "), "the cluster keys are uncommented");
    let dir = std::env::temp_dir().join(format!("shardmq-dist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("uncommented.toml");
    std::fs::write(&config, &uncommented).expect("write the config");

    // Nothing may listen on the host's real ports, and etcd is a port that refuses: the broker
    // gets past its configuration and then fails to join the cluster.
    let mut child = Command::new(broker_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--link-listen", "127.0.0.1:0"])
        // https: the example sets `etcd_ca` too.
        .args(["--etcd", "https://127.0.0.1:9", "--shards", "1", "--data-dir"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the broker");
    let deadline = Instant::now() + UNCOMMENTED_TIMEOUT;
    while child.try_wait().expect("wait for the broker").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("the broker's output");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("unknown field"), "{stderr}");
    // A file that does not parse is reported as `config file PATH line N: ...`; a value that
    // is refused exits with status 2.
    assert!(!stderr.contains("config file"), "{stderr}");
    assert_ne!(output.status.code(), Some(2), "a value was refused:\n{stderr}");
}

#[test]
fn systemd_accepts_the_unit() {
    require_tool("systemd-analyze");
    let unit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/shardmq.service"),
    )
    .expect("dist/shardmq.service");
    let installed = "ExecStart=/usr/local/bin/shardmq ";
    assert!(unit.contains(installed), "{unit}");
    // `verify` checks that the program exists: point it at the binary under test.
    let binary = broker_binary();
    let unit = unit.replace(installed, &format!("ExecStart={} ", binary.display()));
    let dir = std::env::temp_dir().join(format!("shardmq-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("shardmq.service");
    std::fs::write(&path, unit).expect("write the unit");
    let mut command = tool_command("systemd-analyze");
    command.arg("verify").arg(&path);
    let output = run_tool(&mut command, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    // systemd ignores a line it cannot parse and says so on stderr, exiting 0 all the same.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn commented_key_reads_only_settings() {
    assert_eq!(commented_key("# max_inflight = 64"), Some("max_inflight"));
    assert_eq!(commented_key("# Address for MQTT clients. Without = this"), None);
    assert_eq!(commented_key("listen = \"0.0.0.0:1883\""), None);
    assert_eq!(setting_key("listen = \"0.0.0.0:1883\""), Some("listen"));
}

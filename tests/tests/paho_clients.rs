//! Eclipse paho-mqtt for Python (Debian's python3-paho-mqtt) against the broker: a QoS 1
//! publish/subscribe round trip in MQTT 3.1.1 and in 5.0. The client side lives in
//! `tests/python/paho_round_trip.py`.

use std::path::Path;
use std::time::Duration;

use shardmq_tests::{require_tool, run_tool, tool_command, Broker};

/// Debian's interpreter, where python3-paho-mqtt installs; not whatever `python3` is first on
/// `PATH` (a pyenv or virtualenv one would not see the Debian package).
const PYTHON: &str = "/usr/bin/python3";

fn check_round_trip(version: &str) {
    require_tool(PYTHON);
    let broker = Broker::start(&[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/paho_round_trip.py");
    let mut command = tool_command(PYTHON);
    command.arg(&script).args(["127.0.0.1", &broker.port().to_string(), version]);
    let output = run_tool(&mut command, Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "paho round trip ({version}) failed with {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
}

#[test]
fn paho_mqtt_311_round_trip_at_qos_1() {
    check_round_trip("311");
}

#[test]
fn paho_mqtt_5_round_trip_at_qos_1() {
    check_round_trip("5");
}

//! Debian's mosquitto_pub and mosquitto_sub against the broker: MQTT 3.1, 3.1.1 and 5.0,
//! QoS 2, retained messages set with `-r` and deleted with `-r -n`, and the client events
//! (`--client-events`) a `$SYS` subscriber sees.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use shardmq_tests::{require_tool, run_tool, spawn_tool, tool_command, Broker};

/// How long a test waits for a client to get something the broker should send at once.
const WAIT: Duration = Duration::from_secs(5);

/// What mosquitto_sub prints for each message (`-F`): a marker, topic, QoS, retain flag,
/// payload.
const FORMAT: &str = "MSG %t %q %r %p";

/// A running mosquitto_sub with debug output (`-d`), read line by line.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
    /// Everything read so far, for failure messages.
    seen: Vec<String>,
}

impl Subscriber {
    /// Starts `mosquitto_sub -V version -q qos -t topic -C count` and returns once the broker
    /// has acknowledged the subscription.
    fn start(broker: &Broker, version: &str, qos: u8, topic: &str, count: usize) -> Subscriber {
        Subscriber::start_on(broker, version, qos, &[topic], count)
    }

    /// [`Subscriber::start`] with a `-t` for each of `topics`.
    fn start_on(
        broker: &Broker,
        version: &str,
        qos: u8,
        topics: &[&str],
        count: usize,
    ) -> Subscriber {
        require_tool("mosquitto_sub");
        // mosquitto_sub's stdout is block-buffered on a pipe; line buffering lets the test see
        // the SUBACK as it happens.
        let mut command = tool_command("stdbuf");
        command
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-V", version, "-d"])
            .args(["-q", &qos.to_string(), "-F", FORMAT])
            .args(topics.iter().flat_map(|topic| ["-t", topic]))
            .args(["-C", &count.to_string(), "-W", &WAIT.as_secs().to_string()]);
        let mut child = spawn_tool(&mut command);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut subscriber = Subscriber { child, lines, seen: Vec::new() };
        subscriber.wait_for_line("received SUBACK");
        subscriber
    }

    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "mosquitto_sub printed no {needle:?} within {WAIT:?}; it printed:\n{}{}",
                    self.seen.join("\n"),
                    self.stop_and_read_stderr()
                ),
            }
        }
    }

    /// Waits for mosquitto_sub to exit after its `-C` messages; returns the message lines.
    fn messages(mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for mosquitto_sub") {
                // The reading thread may not have passed the last lines on yet: take them until
                // it ends at the end of the output (it sent only what it had read before).
                let deadline = Instant::now() + WAIT;
                while let Ok(line) =
                    self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    self.seen.push(line);
                }
                assert!(
                    status.success(),
                    "mosquitto_sub exited with {status}; it printed:\n{}{}",
                    self.seen.join("\n"),
                    self.stop_and_read_stderr()
                );
                return self.seen.iter().filter(|line| line.starts_with("MSG ")).cloned().collect();
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub did not exit within {WAIT:?}; it printed:\n{}{}",
                self.seen.join("\n"),
                self.stop_and_read_stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop_and_read_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        format!("\nstderr: {stderr}")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs mosquitto_pub with `args` after the connection flags and checks it succeeded.
fn publish(broker: &Broker, version: &str, args: &[&str]) {
    let mut command = tool_command("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-V", version]).args(args);
    let output = run_tool(&mut command, WAIT);
    assert!(
        output.status.success(),
        "mosquitto_pub {args:?} exited with {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A QoS 1 round trip with both clients speaking `version`.
fn check_round_trip(version: &str) {
    let broker = Broker::start(&[]);
    let topic = format!("e2e/{version}");
    let subscriber = Subscriber::start(&broker, version, 1, &topic, 1);
    publish(&broker, version, &["-q", "1", "-t", &topic, "-m", &format!("hello {version}")]);
    assert_eq!(subscriber.messages(), [format!("MSG {topic} 1 0 hello {version}")]);
}

#[test]
fn mqttv31_publishes_and_subscribes() {
    check_round_trip("mqttv31");
}

#[test]
fn mqttv311_publishes_and_subscribes() {
    check_round_trip("mqttv311");
}

#[test]
fn mqttv5_publishes_and_subscribes() {
    check_round_trip("mqttv5");
}

#[test]
fn qos2_between_mqttv311_and_mqttv5() {
    let broker = Broker::start(&[]);
    let v5 = Subscriber::start(&broker, "mqttv5", 2, "e2e/qos2/#", 2);
    let v311 = Subscriber::start(&broker, "mqttv311", 2, "e2e/qos2/#", 2);
    publish(&broker, "mqttv311", &["-q", "2", "-t", "e2e/qos2/a", "-m", "from 3.1.1"]);
    publish(&broker, "mqttv5", &["-q", "2", "-t", "e2e/qos2/b", "-m", "from 5"]);
    // The two publishers may sit on different shards, so the order of arrival is not fixed.
    let expected = ["MSG e2e/qos2/a 2 0 from 3.1.1", "MSG e2e/qos2/b 2 0 from 5"];
    for subscriber in [v5, v311] {
        let mut got = subscriber.messages();
        got.sort();
        assert_eq!(got, expected);
    }
}

#[test]
fn retained_message_set_with_r_and_deleted_with_r_n() {
    let broker = Broker::start(&[]);
    let topic = "e2e/retained";
    publish(&broker, "mqttv311", &["-q", "1", "-r", "-t", topic, "-m", "kept"]);
    for version in ["mqttv31", "mqttv311", "mqttv5"] {
        let subscriber = Subscriber::start(&broker, version, 1, topic, 1);
        assert_eq!(subscriber.messages(), [format!("MSG {topic} 1 1 kept")], "{version}");
    }

    publish(&broker, "mqttv5", &["-q", "1", "-r", "-n", "-t", topic]);
    // After the deletion, the first message a new subscriber gets is a live one.
    let subscriber = Subscriber::start(&broker, "mqttv5", 1, topic, 1);
    publish(&broker, "mqttv5", &["-q", "1", "-t", topic, "-m", "live"]);
    assert_eq!(subscriber.messages(), [format!("MSG {topic} 1 0 live")]);
}

/// Splits a mosquitto_sub line (`FORMAT`) of a client event into its topic's levels and its
/// parsed JSON payload, checking it came at QoS 0, not retained.
fn client_event(line: &str) -> (Vec<String>, serde_json::Value) {
    let fields: Vec<&str> = line.splitn(5, ' ').collect();
    assert!(matches!(fields.as_slice(), ["MSG", _, "0", "0", _]), "{line}");
    let payload = serde_json::from_str(fields[4]).unwrap_or_else(|error| {
        panic!("the payload of {line:?} is not JSON: {error}");
    });
    (fields[1].split('/').map(String::from).collect(), payload)
}

#[test]
fn client_events_tell_a_sys_subscriber_that_mosquitto_pub_came_and_went() {
    let broker = Broker::start(&["--client-events"]);
    // Its own SUBSCRIBE, then mosquitto_pub's connect and disconnect.
    let subscriber = Subscriber::start(&broker, "mqttv5", 0, "$SYS/brokers/+/clients/#", 3);
    publish(&broker, "mqttv5", &["-i", "e2e-events-pub", "-t", "e2e/events", "-m", "hi"]);
    let lines = subscriber.messages();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let events: Vec<(Vec<String>, serde_json::Value)> =
        lines.iter().map(|line| client_event(line)).collect();
    for (levels, _) in &events {
        // `$SYS/brokers/<node>/clients/<client id>/<event>`, the node one non-empty level.
        assert_eq!(levels.len(), 6, "{levels:?}");
        assert_eq!(
            (levels[0].as_str(), levels[1].as_str(), levels[3].as_str()),
            ("$SYS", "brokers", "clients")
        );
        assert!(!levels[2].is_empty(), "{levels:?}");
    }
    let (levels, subscribed) = &events[0];
    assert_eq!(levels[5], "subscribed");
    assert_eq!(
        subscribed["topics"],
        serde_json::json!([{"topic": "$SYS/brokers/+/clients/#", "qos": 0}])
    );

    let (levels, connected) = &events[1];
    assert_eq!((levels[4].as_str(), levels[5].as_str()), ("e2e-events-pub", "connected"));
    assert_eq!(connected["clientid"], "e2e-events-pub");
    assert_eq!(connected["username"], serde_json::Value::Null);
    assert_eq!(connected["ipaddress"], "127.0.0.1");
    assert_eq!(connected["proto_ver"], 5);
    assert_eq!(connected["keepalive"], 60);
    assert_eq!(connected["clean_start"], true);
    assert_eq!(connected["expiry_interval"], 0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let connected_at = connected["connected_at"].as_u64().expect("a number");
    assert!(now_ms.abs_diff(connected_at) < 60_000, "{connected_at} is not about {now_ms}");

    let (levels, disconnected) = &events[2];
    assert_eq!((levels[4].as_str(), levels[5].as_str()), ("e2e-events-pub", "disconnected"));
    assert_eq!(disconnected["reason"], "normal");
    assert_eq!(disconnected["reason_code"], 0);
    assert!(disconnected["disconnected_at"].as_u64().expect("a number") >= connected_at);
}

#[test]
fn without_client_events_a_sys_subscriber_hears_of_no_client() {
    let broker = Broker::start(&[]);
    let topics = ["$SYS/brokers/#", "e2e/quiet"];
    let subscriber = Subscriber::start_on(&broker, "mqttv5", 0, &topics, 1);
    // Had mosquitto_pub's connect been published, that event would have come before its
    // message (both go from its shard to the subscriber's, in order).
    publish(&broker, "mqttv5", &["-i", "e2e-quiet-pub", "-t", "e2e/quiet", "-m", "hi"]);
    assert_eq!(subscriber.messages(), ["MSG e2e/quiet 0 0 hi"]);
}

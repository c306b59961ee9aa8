//! The event webhook (`event_webhook_url`) end to end: the real broker binary POSTs client
//! events to a webhook written with Python's standard `http.server` (Debian's /usr/bin/python3,
//! started per test on a free loopback port) while real clients (raw sockets for exact packets,
//! Debian's `mosquitto_pub`) connect, subscribe, unsubscribe and leave. Checked: the events'
//! kinds, client ids and reasons, that they come batched, that 500s are retried until the
//! service takes them, and that with the service down the events are dropped and counted while
//! the broker goes on serving at full speed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shardmq_io::codec::{
    ByteString, Packet, Properties, ProtocolVersion, QoS, Subscribe, SubscriptionOptions,
    TopicFilterEntry, Unsubscribe,
};
use shardmq_tests::{
    connect_ok, connect_packet, disconnect, packet_id, publish_packet, receive_publish,
    require_tool, run_tool, subscribe_granted, tool_command, Broker, RawClient, TestDir,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const WAIT: Duration = Duration::from_secs(10);

/// The webhook: answers 500 to its first `argv[2]` POSTs, then 200. Every POST is appended to
/// the file named by `argv[1]` as one line `{"status": ..., "events": [the body's array]}`.
const WEBHOOK: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

posts = open(sys.argv[1], "a")
failures = [int(sys.argv[2])]

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 200
        if failures[0] > 0:
            failures[0] -= 1
            status = 500
        ctype = self.headers.get("Content-Type", "")
        posts.write(json.dumps({"status": status, "type": ctype, "events": json.loads(body)}) + "\n")
        posts.flush()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The running webhook; killed when dropped.
struct Webhook {
    child: Child,
    port: u16,
    posts: PathBuf,
}

impl Webhook {
    fn start(dir: &TestDir, failures: u32) -> Webhook {
        require_tool("/usr/bin/python3");
        let script = dir.path().join("webhook.py");
        std::fs::write(&script, WEBHOOK).expect("write the webhook");
        let posts = dir.path().join("posts.jsonl");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&posts)
            .arg(failures.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the webhook");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the webhook's port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("a port, not {line:?}"));
        Webhook { child, port, posts }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/mqtt", self.port)
    }

    /// Every POST so far, in order: (status answered, its events).
    fn posts(&self) -> Vec<(u64, Vec<Value>)> {
        let text = std::fs::read_to_string(&self.posts).unwrap_or_default();
        text.lines()
            .map(|line| {
                let post: Value = serde_json::from_str(line).expect("a JSON line");
                assert_eq!(post["type"], "application/json");
                let events = post["events"].as_array().expect("a JSON array").clone();
                (post["status"].as_u64().expect("a status"), events)
            })
            .collect()
    }

    /// The events of the POSTs answered 200, in order.
    fn delivered(&self) -> Vec<Value> {
        self.posts().into_iter().filter(|(status, _)| *status == 200).flat_map(|(_, e)| e).collect()
    }

    /// Waits until `done` holds for the delivered events; they are returned.
    fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.delivered();
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "no {what} within {WAIT:?}; got {events:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The delivered events of client `id`, as `event` names with their detail (`reason` or
/// `topic`/`qos`).
fn story(events: &[Value], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["clientid"] == id)
        .map(|event| {
            let kind = event["event"].as_str().expect("an event name");
            match kind {
                "client.disconnected" => format!("{kind} {}", event["reason"]),
                "session.subscribed" => format!("{kind} {} {}", event["topic"], event["qos"]),
                "session.unsubscribed" => format!("{kind} {}", event["topic"]),
                _ => kind.to_owned(),
            }
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

#[test]
fn client_events_reach_the_webhook_in_batches() {
    let dir = TestDir::new("event-webhook");
    let webhook = Webhook::start(&dir, 0);
    let url = webhook.url();
    let broker = Broker::start(&[
        "--event-webhook-url",
        &url,
        "--event-webhook-batch-delay-ms",
        "300",
        "--admin-listen",
        "127.0.0.1:0",
    ]);

    // One SUBSCRIBE of two filters, an UNSUBSCRIBE, a normal DISCONNECT.
    let mut client = connect_ok(&broker, connect_packet(V5, "hook-a"), false);
    let entry = |filter: &str, qos| TopicFilterEntry {
        filter: ByteString::from(filter),
        options: SubscriptionOptions::with_qos(qos),
    };
    let filters = vec![entry("hook/+/a", QoS::AtLeastOnce), entry("hook/b", QoS::AtMostOnce)];
    let subscribe =
        Subscribe { packet_id: packet_id(1), properties: Properties::default(), filters };
    client.send(&Packet::Subscribe(subscribe));
    assert!(matches!(client.expect_packet(WAIT), Packet::SubAck(_)));
    client.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: packet_id(2),
        properties: Properties::default(),
        filters: vec![ByteString::from("hook/+/a")],
    }));
    assert!(matches!(client.expect_packet(WAIT), Packet::UnsubAck(_)));
    disconnect(client);
    // mosquitto_pub comes and goes; a raw client's socket just closes.
    let mut command = tool_command("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-V", "mqttv311"]);
    command.args(["-i", "hook-pub", "-t", "hook/b", "-m", "hi"]);
    assert!(run_tool(&mut command, WAIT).status.success());
    drop(connect_ok(&broker, connect_packet(V5, "hook-lost"), false));

    let events = webhook.wait_for("disconnected events of all three", |events| {
        ["hook-a", "hook-pub", "hook-lost"].iter().all(|id| {
            events.iter().any(|e| e["clientid"] == *id && e["event"] == "client.disconnected")
        })
    });
    assert_eq!(
        story(&events, "hook-a"),
        [
            "client.connected",
            "session.subscribed \"hook/+/a\" 1",
            "session.subscribed \"hook/b\" 0",
            "session.unsubscribed \"hook/+/a\"",
            "client.disconnected \"normal\"",
        ]
    );
    let pub_story = ["client.connected", "client.disconnected \"normal\""];
    assert_eq!(story(&events, "hook-pub"), pub_story);
    let lost_story = ["client.connected", "client.disconnected \"connection_lost\""];
    assert_eq!(story(&events, "hook-lost"), lost_story);
    for event in &events {
        assert_eq!(event["peerhost"], "127.0.0.1", "{event}");
        assert!(event["username"].is_null(), "{event}");
        assert!(event["node"].as_str().is_some_and(|node| !node.is_empty()), "{event}");
        let at = event["timestamp"].as_u64().expect("a timestamp");
        assert!(now_ms().abs_diff(at) < 60_000, "{at} is not about now: {event}");
    }
    let connected = events.iter().find(|e| e["event"] == "client.connected").expect("one");
    assert_eq!(
        (connected["proto_ver"].as_u64(), connected["keepalive"].as_u64()),
        (Some(5), Some(60))
    );

    // Batched: hook-a's five events came within the batch delay, so fewer POSTs than events.
    let posts = webhook.posts();
    assert!(posts.len() < events.len(), "{} POSTs for {} events", posts.len(), events.len());
    assert!(posts.iter().any(|(_, batch)| batch.len() >= 2), "{posts:?}");
    let sent = events.len() as u64;
    assert_eq!(broker.metric_total("shardmq_event_webhook_sent_total", ""), sent);
    assert_eq!(broker.metric_total("shardmq_event_webhook_failed_total", ""), 0);
    assert_eq!(broker.metric_total("shardmq_event_webhook_dropped_total", ""), 0);
}

#[test]
fn server_errors_are_retried_until_the_webhook_takes_the_events() {
    let dir = TestDir::new("event-webhook-retry");
    // 500 twice: the second retry (after 0.5 s, then 1 s) delivers.
    let webhook = Webhook::start(&dir, 2);
    let url = webhook.url();
    let broker = Broker::start(&["--event-webhook-url", &url, "--admin-listen", "127.0.0.1:0"]);

    disconnect(connect_ok(&broker, connect_packet(V5, "retry-a"), false));
    let events = webhook.wait_for("retry-a's disconnected event", |events| {
        events.iter().any(|e| e["clientid"] == "retry-a" && e["event"] == "client.disconnected")
    });
    assert_eq!(story(&events, "retry-a"), ["client.connected", "client.disconnected \"normal\""]);
    let posts = webhook.posts();
    let statuses: Vec<u64> = posts.iter().map(|(status, _)| *status).collect();
    assert_eq!(&statuses[..3], [500, 500, 200], "{posts:?}");
    // The retries sent the same batch again.
    assert_eq!(posts[0].1, posts[2].1);
    assert!(broker.metric_total("shardmq_event_webhook_retries_total", "") >= 2);
    assert_eq!(broker.metric_total("shardmq_event_webhook_failed_total", ""), 0);
    assert!(broker.log_contains("HTTP status 500"), "{}", broker.log());
}

#[test]
fn with_the_webhook_down_events_are_dropped_and_counted_and_clients_are_served() {
    // A port nothing listens on: every POST is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("address"));
    drop(closed);
    let broker = Broker::start(&[
        "--event-webhook-url",
        &url,
        "--event-webhook-queue-max",
        "4",
        "--event-webhook-batch-max",
        "2",
        "--event-webhook-batch-delay-ms",
        "0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);

    // 40 clients come and go while the webhook's thread backs off: each CONNACK comes at once.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for index in 0..40 {
        let begun = Instant::now();
        let client = connect_ok(&broker, connect_packet(V5, &format!("down-{index}")), false);
        slowest = slowest.max(begun.elapsed());
        disconnect(client);
    }
    assert!(slowest < Duration::from_secs(1), "a connect took {slowest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "40 connects took {:?}",
        started.elapsed()
    );

    // 80 events, a queue of 4 and a batch of 2 taking 3.5 s to give up: most are dropped.
    assert!(broker.metric_total("shardmq_event_webhook_dropped_total", "") >= 60);
    let deadline = Instant::now() + WAIT;
    while broker.metric_total("shardmq_event_webhook_failed_total", "") < 2 {
        assert!(Instant::now() < deadline, "no batch given up:\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(broker.metric_total("shardmq_event_webhook_sent_total", ""), 0);
    // Warned, but not once per failure.
    assert!(broker.log_contains("event_webhook_url"), "{}", broker.log());
    assert!(broker.log_count("event_webhook_url http") <= 2, "{}", broker.log());

    // The broker still routes messages.
    let mut subscriber = connect_ok(&broker, connect_packet(V5, "down-sub"), false);
    subscribe_granted(&mut subscriber, "down/t", QoS::AtLeastOnce);
    let mut publisher = RawClient::connect(broker.addr(), connect_packet(V5, "down-pub")).0;
    publisher.send(&publish_packet("down/t", b"still here", QoS::AtMostOnce, false, 0));
    let got = receive_publish(&mut subscriber, WAIT).expect("the message");
    assert_eq!(&got.payload[..], b"still here");
}

#[test]
fn sighup_keeps_the_webhook_url_until_a_restart() {
    let dir = TestDir::new("event-webhook-reload");
    let webhook = Webhook::start(&dir, 0);
    let config = dir.path().join("shardmq.toml");
    let text =
        |url: &str| format!("event_webhook_url = \"{url}\"\nevent_webhook_batch_delay_ms = 0\n");
    std::fs::write(&config, text(&webhook.url())).expect("write config");
    let broker = Broker::start(&["--config", config.to_str().expect("UTF-8 path")]);

    std::fs::write(&config, text("http://127.0.0.1:9/elsewhere")).expect("rewrite config");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    let warning = "take effect only after a restart: event_webhook_*";
    assert!(broker.wait_for_log(warning, WAIT).is_some(), "{}", broker.log());
    // Events still go where the broker started sending them.
    disconnect(connect_ok(&broker, connect_packet(V5, "reload-a"), false));
    let events = webhook.wait_for("reload-a's events", |events| {
        events.iter().any(|e| e["clientid"] == "reload-a" && e["event"] == "client.disconnected")
    });
    assert_eq!(story(&events, "reload-a"), ["client.connected", "client.disconnected \"normal\""]);
}

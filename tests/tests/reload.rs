//! SIGHUP reads the configuration file again: limits and the log filter change while running,
//! a key that needs a restart is named in the log and left alone, and a bad file keeps what is
//! in force.

use std::time::{Duration, Instant};

use shardmq_io::codec::{ProtocolVersion, ReasonCode};
use shardmq_tests::{connect_packet, Broker, RawClient, TestDir};

const WAIT: Duration = Duration::from_secs(5);

fn count(broker: &Broker, needle: &str) -> usize {
    broker.log_count(needle)
}

/// Waits until `needle` has been logged `times` times.
fn wait_for_count(broker: &Broker, needle: &str, times: usize) {
    assert!(
        broker.wait_for_log_count(needle, times, WAIT),
        "{needle:?} not logged {times} times:\n{}",
        broker.log()
    );
}

fn connect(broker: &Broker, client_id: &str) -> (RawClient, ReasonCode) {
    let (client, connack) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, client_id));
    (client, connack.reason)
}

#[test]
fn sighup_applies_limits_and_log_filter_and_keeps_a_bad_file_out() {
    let dir = TestDir::new("reload");
    let config = dir.path().join("shardmq.toml");
    std::fs::write(&config, "log = \"info\"\nmax_connections = 1\n").expect("write config");
    let broker = Broker::start(&["--config", config.to_str().expect("UTF-8 path")]);

    let (_first, reason) = connect(&broker, "first");
    assert_eq!(reason, ReasonCode::SUCCESS);
    let (_, reason) = connect(&broker, "second");
    assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED, "max_connections = 1 is not in force");

    // A higher limit, a quieter log, and a key that needs a restart.
    std::fs::write(&config, "log = \"warn\"\nmax_connections = 100\nsys_interval = 5\n")
        .expect("rewrite config");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_count(&broker, "take effect only after a restart: sys_interval", 1);
    // Shards apply it on their next tick (every 250 ms at the latest).
    let deadline = Instant::now() + WAIT;
    let _second = loop {
        let (client, reason) = connect(&broker, "second");
        if reason == ReasonCode::SUCCESS {
            break client;
        }
        assert!(Instant::now() < deadline, "the new max_connections is not applied: {reason:?}");
        std::thread::sleep(Duration::from_millis(50));
    };

    // The next SIGHUP's info line is filtered out now; its warning is not.
    assert_eq!(count(&broker, "SIGHUP: reloading"), 1);
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_count(&broker, "take effect only after a restart: sys_interval", 2);
    assert_eq!(count(&broker, "SIGHUP: reloading"), 1, "the log filter was not reloaded");

    // A bad value keeps the configuration in force, naming the key.
    std::fs::write(&config, "log = \"warn\"\nmax_connections = 100\nmax_inflight = 0\n")
        .expect("rewrite config");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_count(&broker, "keeping the configuration in force", 1);
    let line = broker
        .log()
        .lines()
        .find(|line| line.contains("keeping the configuration in force"))
        .map(str::to_owned)
        .expect("the line");
    assert!(line.contains("`max_inflight`"), "{line}");
    let (_third, reason) = connect(&broker, "third");
    assert_eq!(reason, ReasonCode::SUCCESS, "a bad reload changed the limits");
}

/// `ws_allowed_origins` is read again on SIGHUP: an upgrade from a page the new list names is
/// accepted, one from a page it dropped gets 403.
#[test]
fn sighup_reads_the_websocket_origins_again() {
    use std::io::{Read, Write};
    let dir = TestDir::new("reload-origins");
    let config = dir.path().join("shardmq.toml");
    let write = |origin: &str| {
        let text = format!(
            "allow_anonymous = true\nws_listen = \"127.0.0.1:0\"\nws_allowed_origins = \"{origin}\"\n"
        );
        std::fs::write(&config, text).expect("write config");
    };
    write("https://a.example");
    let broker = Broker::start(&["--config", config.to_str().expect("UTF-8 path")]);
    let line = broker.wait_for_log("listening for MQTT over WebSocket on ", WAIT).expect("ws");
    let address = line.split("listening for MQTT over WebSocket on ").nth(1).expect("address");
    let address = address.split_whitespace().next().expect("address").to_owned();
    let status = |origin: &str| {
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        write!(
            stream,
            "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: mqtt\r\nOrigin: {origin}\r\n\r\n"
        )
        .expect("send the upgrade");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).expect("a status line");
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(status("https://a.example"), "101");
    assert_eq!(status("https://b.example"), "403");
    write("https://b.example");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_count(&broker, "reloaded the configuration", 1);
    // The shards take the new list at their next tick (every 250 ms at most).
    let deadline = Instant::now() + WAIT;
    while status("https://b.example") != "101" {
        assert!(Instant::now() < deadline, "the new origin list is not in force");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status("https://a.example"), "403");
}

//! The admin token (`admin_token_file`): the client API answers only requests that carry it,
//! `/metrics`, `/health` and `/ready` stay open, refusals are counted, SIGHUP takes a new token,
//! and a file without a token stops the start-up; and `shardmq ctl`, the command-line client of
//! the API, listing, inspecting and kicking real clients of a real node.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardmq_io::codec::{
    ByteString, Packet, PacketId, Properties, ProtocolVersion, QoS, Subscribe, SubscriptionOptions,
    TopicFilterEntry,
};
use shardmq_tests::{
    broker_binary, connect_packet, http_get, http_request_with, run_tool, tool_command, Broker,
    RawClient, Received, TestDir,
};

const WAIT: Duration = Duration::from_secs(5);
const TOKEN: &str = "first-token-0123456789abcdef";
const SECOND_TOKEN: &str = "second-token-fedcba9876543210";

/// Writes `content` to a file named `name` in `dir`.
fn write_file(dir: &TestDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write the file");
    path
}

/// A broker whose admin endpoint requires the token in `token_file`.
fn start(token_file: &Path) -> Broker {
    let path = token_file.to_str().expect("UTF-8 path");
    Broker::start(&["--admin-listen", "127.0.0.1:0", "--admin-token-file", path])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The status of a request to `path` with `authorization` (none when `None`).
fn status(admin: std::net::SocketAddr, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> =
        auth.map(|value| ("Authorization", value)).into_iter().collect();
    http_request_with(admin, method, path, &headers).status
}

#[test]
fn the_client_api_needs_the_token_and_the_rest_stays_open() {
    let dir = TestDir::new("admin-token");
    // Surrounding whitespace is not part of the token.
    let token_file = write_file(&dir, "token", &format!("  {TOKEN}\n\n"));
    let broker = start(&token_file);
    let admin = broker.admin_address();
    let (mut client, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "kept"));

    // No token: refused with a challenge and a JSON error, and the kick does not happen.
    let answer = http_request_with(admin, "GET", "/api/v1/clients", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.header("WWW-Authenticate"), Some("Bearer realm=\"shardmq admin\""));
    let error: Value = serde_json::from_str(&answer.body).expect("a JSON body");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("admin_token_file")), "{error}");
    assert_eq!(status(admin, "DELETE", "/api/v1/clients/kept", None), 401);
    assert!(matches!(client.next(Duration::from_millis(300)), Received::TimedOut));
    // A wrong token, another scheme, and a path the API does not know: refused the same way.
    let wrong = bearer("first-token-0123456789abcdeF");
    let answer = http_request_with(admin, "GET", "/api/v1/clients", &[("Authorization", &wrong)]);
    assert_eq!(answer.status, 401);
    let challenge = answer.header("WWW-Authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer ") && challenge.contains("invalid_token"), "{challenge}");
    assert_eq!(status(admin, "GET", "/api/v1/clients", Some("Basic YWRtaW46YWRtaW4=")), 401);
    assert_eq!(status(admin, "GET", "/api/v1/nowhere", None), 401);

    // The right token, the scheme's name in any case.
    let right = bearer(TOKEN);
    let answer = http_request_with(admin, "GET", "/api/v1/clients", &[("Authorization", &right)]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let page: Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(page["clients"][0]["client_id"], "kept", "{page}");
    let lower = format!("bearer {TOKEN}");
    assert_eq!(status(admin, "GET", "/api/v1/clients/kept", Some(&lower)), 200);

    // Scrapers and load balancers need no token.
    assert_eq!(http_get(admin, "/health").0, 200);
    let deadline = Instant::now() + WAIT;
    while http_get(admin, "/ready").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(broker.metric_total("shardmq_admin_unauthorized_total", ""), 5);
    // The token appears in no log line.
    assert!(!broker.log_contains(TOKEN), "{}", broker.log());
    assert!(broker.log_contains("/api/v1 with the admin token"), "{}", broker.log());
}

#[test]
fn sighup_takes_a_new_token_and_keeps_it_over_a_bad_file() {
    let dir = TestDir::new("admin-token-reload");
    let token_file = write_file(&dir, "token", TOKEN);
    let broker = start(&token_file);
    let admin = broker.admin_address();
    let (old, new) = (bearer(TOKEN), bearer(SECOND_TOKEN));
    assert_eq!(status(admin, "GET", "/api/v1/clients", Some(&old)), 200);

    write_file(&dir, "token", &format!("{SECOND_TOKEN}\n"));
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(broker.wait_for_log("reloaded the admin token", WAIT).is_some(), "{}", broker.log());
    assert_eq!(status(admin, "GET", "/api/v1/clients", Some(&old)), 401);
    assert_eq!(status(admin, "GET", "/api/v1/clients", Some(&new)), 200);

    // An emptied file is a mistake, not a way to open the API: the token in force stays.
    write_file(&dir, "token", "\n");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    let kept = broker.wait_for_log("keeping the admin token in force", WAIT);
    assert!(kept.is_some_and(|line| line.contains("`admin_token_file`")), "{}", broker.log());
    assert_eq!(status(admin, "GET", "/api/v1/clients", None), 401);
    assert_eq!(status(admin, "GET", "/api/v1/clients", Some(&new)), 200);
}

#[test]
fn a_token_file_without_a_token_stops_the_start_up() {
    let dir = TestDir::new("admin-token-start");
    let empty = write_file(&dir, "empty", " \n");
    let missing = dir.path().join("missing");
    for (file, why) in [(&empty, "is empty"), (&missing, "cannot read")] {
        let mut command = tool_command(broker_binary().to_str().expect("UTF-8 path"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--admin-listen", "127.0.0.1:0", "--admin-token-file"])
            .arg(file);
        let output = run_tool(&mut command, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let line = stderr.lines().find(|line| line.starts_with("shardmq: ")).expect("an error");
        assert!(line.contains("`admin_token_file`") && line.contains(why), "{stderr}");
    }
    // A token with no endpoint to guard is a configuration error, naming the key.
    let mut command = tool_command(broker_binary().to_str().expect("UTF-8 path"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--admin-token-file"]).arg(&empty);
    let output = run_tool(&mut command, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`admin_token_file`") && stderr.contains("`admin_listen`"), "{stderr}");
}

/// Runs `shardmq ctl --admin ADMIN [--token-file FILE] ARGS...`.
fn ctl(admin: std::net::SocketAddr, token_file: Option<&Path>, args: &[&str]) -> Output {
    let mut command = tool_command(broker_binary().to_str().expect("UTF-8 path"));
    command.args(["ctl", "--admin", &admin.to_string()]);
    if let Some(path) = token_file {
        command.arg("--token-file").arg(path);
    }
    command.args(args);
    run_tool(&mut command, Duration::from_secs(30))
}

/// `ctl`'s standard output, after checking that it exited 0.
fn ctl_ok(admin: std::net::SocketAddr, token_file: &Path, args: &[&str]) -> String {
    let output = ctl(admin, Some(token_file), args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ctl {args:?}: {:?}\n{stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A rumqttc (3.1.1) client whose event loop runs on a thread until its first error, so that
/// rumqttc does not reconnect after a kick; the receiver hears when that thread ends.
fn rumqttc_client(broker: &Broker, id: &str) -> (rumqttc::Client, std::sync::mpsc::Receiver<()>) {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::Client::new(options, 16);
    let (ended, end) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            if event.is_err() {
                break;
            }
        }
        let _ = ended.send(());
    });
    (client, end)
}

/// The line of `ctl clients` output whose first column is `id` (as ctl prints it).
fn row<'a>(listing: &'a str, id: &'a str) -> Option<Vec<&'a str>> {
    listing.lines().find(|line| line.starts_with(&format!("{id} "))).map(|line| {
        let rest = &line[id.len()..];
        std::iter::once(id).chain(rest.split_whitespace()).collect()
    })
}

#[test]
fn ctl_lists_inspects_and_kicks_clients_with_the_token() {
    let dir = TestDir::new("ctl");
    let token_file = write_file(&dir, "token", &format!("{TOKEN}\n"));
    let broker = start(&token_file);
    let admin = broker.admin_address();
    let (mut raw, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "raw client"));
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from("ctl/#"),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    }));
    assert!(matches!(raw.expect_packet(WAIT), Packet::SubAck(_)));
    let (_rumqttc, rumqttc_ended) = rumqttc_client(&broker, "rumqttc-1");

    // One line per client, once rumqttc's connection is in.
    let deadline = Instant::now() + WAIT;
    let listing = loop {
        let listing = ctl_ok(admin, &token_file, &["clients"]);
        if row(&listing, "rumqttc-1").is_some() {
            break listing;
        }
        assert!(Instant::now() < deadline, "rumqttc-1 never listed:\n{listing}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(listing.starts_with("CLIENT_ID "), "{listing}");
    let raw_row = row(&listing, "\"raw client\"").expect("the raw client, quoted");
    let raw_address = raw.local_addr().to_string();
    assert_eq!(raw_row[1..4], ["connected", "5.0", raw_address.as_str()], "{listing}");
    let rumqttc_row = row(&listing, "rumqttc-1").expect("listed");
    assert_eq!(rumqttc_row[1..3], ["connected", "3.1.1"], "{listing}");
    // A page at a time, the cursor of the next on standard error.
    let output = ctl(admin, Some(&token_file), &["clients", "--limit", "1"]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--after \"raw client\""), "{stderr}");
    let second = ctl_ok(admin, &token_file, &["clients", "--after", "raw client"]);
    assert!(row(&second, "rumqttc-1").is_some() && row(&second, "\"raw client\"").is_none());

    // Inspect: the API's JSON.
    let detail: Value =
        serde_json::from_str(&ctl_ok(admin, &token_file, &["client", "raw client"])).expect("JSON");
    assert_eq!(detail["client_id"], "raw client");
    assert_eq!(detail["subscriptions"][0]["filter"], "ctl/#", "{detail}");

    // Kick: the client's connection closes, and its clean session is gone.
    let kicked = ctl_ok(admin, &token_file, &["kick", "rumqttc-1"]);
    assert!(kicked.starts_with("rumqttc-1: disconnected"), "{kicked}");
    rumqttc_ended.recv_timeout(WAIT).expect("rumqttc's connection closed");
    let deadline = Instant::now() + WAIT;
    loop {
        let output = ctl(admin, Some(&token_file), &["client", "rumqttc-1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(1) && stderr.contains("404") {
            break;
        }
        assert!(Instant::now() < deadline, "{:?} {stderr}", output.status);
        std::thread::sleep(Duration::from_millis(50));
    }

    // Status: from /health, /ready and /metrics.
    let deadline = Instant::now() + WAIT;
    loop {
        let status = ctl_ok(admin, &token_file, &["status"]);
        let line = |label: &str| {
            status.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).unwrap_or("")
        };
        if line("ready") == "yes" && line("connections") == "1" {
            assert_eq!(line("health"), "ok", "{status}");
            assert_eq!(line("sessions"), "1", "{status}");
            // A node alone: no cluster members line.
            assert!(!status.contains("members"), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctl_says_when_the_token_is_missing_or_wrong_and_exits_1() {
    let dir = TestDir::new("ctl-refused");
    let token_file = write_file(&dir, "token", TOKEN);
    let wrong_file = write_file(&dir, "wrong", SECOND_TOKEN);
    let broker = start(&token_file);
    let admin = broker.admin_address();
    for (file, hint) in [(Some(wrong_file.as_path()), "wrong"), (None, "--token-file")] {
        for args in [&["clients"][..], &["client", "x"], &["kick", "x"]] {
            let output = ctl(admin, file, args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains("401") && stderr.contains("token"), "{stderr}");
            let hint = if hint == "wrong" { "is not the node's admin token" } else { hint };
            assert!(stderr.contains(hint), "{stderr}");
            assert!(output.stdout.is_empty());
        }
    }
    // `status` reads only what is open, so it needs no token.
    assert!(ctl(admin, None, &["status"]).status.success());
    // A command line that is wrong exits 2.
    assert_eq!(ctl(admin, Some(&token_file), &["clients", "--limit", "0"]).status.code(), Some(2));
    let mut command = tool_command(broker_binary().to_str().expect("UTF-8 path"));
    command.args(["ctl", "status"]);
    let output = run_tool(&mut command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--admin"));
}

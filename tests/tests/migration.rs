//! Moving from Mosquitto: `shardmq import-mosquitto-conf` on real Mosquitto configuration files
//! (the ones Debian's `mosquitto` package installs, and one that Debian's `mosquitto` runs), and
//! the imported configuration run by shardmq with the same password and ACL files, used by
//! Debian's `mosquitto_pub`.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use shardmq_tests::{
    broker_binary, mosquitto_password_file, require_tool, run_tool, spawn_tool, tool_command,
    Broker, TestDir,
};

const WAIT: Duration = Duration::from_secs(10);

fn import(file: &Path) -> Output {
    let mut command = tool_command(broker_binary().to_str().expect("utf-8 path"));
    command.arg("import-mosquitto-conf").arg(file);
    run_tool(&mut command, WAIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `mosquitto_pub` of one QoS 1 message to `port` as `user` (no user: anonymous): whether the
/// broker took it.
fn publish(port: u16, credentials: Option<(&str, &str)>, topic: &str) -> bool {
    require_tool("mosquitto_pub");
    let mut command = tool_command("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-m", "m", "-q", "1"]);
    if let Some((user, password)) = credentials {
        command.args(["-u", user, "-P", password]);
    }
    run_tool(&mut command, WAIT).status.success()
}

#[test]
fn the_configuration_files_debian_installs_import_and_run() {
    require_tool("mosquitto");
    for file in
        ["/etc/mosquitto/mosquitto.conf", "/usr/share/doc/mosquitto/examples/mosquitto.conf"]
    {
        let output = import(Path::new(file));
        assert!(output.status.success(), "{file}: {}", text(&output.stderr));
        let toml = text(&output.stdout);
        let dir = TestDir::new("imported");
        let config = dir.path().join("shardmq.toml");
        std::fs::write(&config, &toml).expect("write the imported configuration");
        // It loads (the test harness gives the data directory, not /var/lib/mosquitto).
        let broker = Broker::start(&["--config", config.to_str().expect("utf-8 path")]);
        assert!(broker.log_contains("listening for MQTT"), "{file}: {toml}");
        if file.starts_with("/etc") {
            assert!(toml.contains("data_dir = \"/var/lib/mosquitto/\""), "{toml}");
            let stderr = text(&output.stderr);
            for directive in ["`pid_file`", "`log_dest`"] {
                assert!(stderr.contains(directive), "{directive} not reported: {stderr}");
            }
        }
    }
}

#[test]
fn a_configuration_mosquitto_runs_admits_the_same_users_on_shardmq() {
    require_tool("mosquitto");
    let dir = TestDir::new("migration");
    let passwords = mosquitto_password_file(&dir, &[("alice", "a"), ("bob", "b")]);
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite alice/#\n").expect("write the ACL");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "per_listener_settings false\nlistener {port} 127.0.0.1\nallow_anonymous false\n\
             password_file {}\nacl_file {}\nmax_inflight_messages 20\nmax_keepalive 120\n\
             persistence false\nlog_dest stderr\n",
            passwords.display(),
            acl.display()
        ),
    )
    .expect("write the Mosquitto configuration");

    // Debian's mosquitto runs it: alice gets in, a wrong password and anonymous clients do not.
    let mut command = tool_command("mosquitto");
    command.arg("-c").arg(&conf);
    let mut mosquitto = spawn_tool(&mut command);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < WAIT, "mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let on_mosquitto = (
        publish(port, Some(("alice", "a")), "alice/x"),
        publish(port, Some(("alice", "wrong")), "alice/x"),
        publish(port, None, "alice/x"),
    );
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
    assert_eq!(on_mosquitto, (true, false, false), "mosquitto itself");

    // Imported, shardmq admits the same clients, on the same address.
    let output = import(&conf);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let toml = text(&output.stdout);
    assert!(toml.contains(&format!("listen = \"127.0.0.1:{port}\"")), "{toml}");
    assert!(toml.contains("max_inflight = 20") && toml.contains("max_keepalive = 120"), "{toml}");
    let config = dir.path().join("shardmq.toml");
    std::fs::write(&config, &toml).expect("write the imported configuration");
    let listen = format!("127.0.0.1:{port}");
    let broker =
        Broker::start(&["--config", config.to_str().expect("utf-8 path"), "--listen", &listen]);
    assert_eq!(broker.port(), port);
    assert!(publish(port, Some(("alice", "a")), "alice/x"), "alice refused by shardmq");
    assert!(!publish(port, Some(("alice", "wrong")), "alice/x"), "a wrong password got in");
    assert!(!publish(port, None, "alice/x"), "an anonymous client got in");
    assert!(publish(port, Some(("bob", "b")), "alice/x"), "bob refused by shardmq");
}

//! Authentication and the ACL end to end: password files made by Debian's `mosquitto_passwd`
//! and by `shardmq passwd`, Mosquitto-format ACL files, Debian's `mosquitto_pub`/`mosquitto_sub`
//! and raw clients for the exact reason codes, SIGHUP reloads, and the loopback-only default.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use shardmq_io::codec::{
    Ack, ByteString, Bytes, ConnAck, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_tests::{
    broker_binary, connect_packet, mosquitto_password_file, persistent_connect_packet,
    require_tool, run_tool, tool_command, Broker, RawClient, Received, TestDir,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const WAIT: Duration = Duration::from_secs(5);

fn login(
    broker: &Broker,
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> (RawClient, ConnAck) {
    let mut connect = connect_packet(version, client_id);
    connect.username = user.map(ByteString::from);
    connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    RawClient::connect(broker.addr(), connect)
}

fn mosquitto_pub(broker: &Broker, args: &[&str]) -> std::process::Output {
    require_tool("mosquitto_pub");
    let mut command = tool_command("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()]).args(args);
    run_tool(&mut command, WAIT)
}

fn pid(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero")
}

#[test]
fn mosquitto_passwd_files_log_clients_in_and_keep_others_out() {
    let dir = TestDir::new("passwd");
    let file = mosquitto_password_file(&dir, &[("alice", "wonderland"), ("bob", "builder")]);
    let broker = Broker::start(&["--password-file", file.to_str().expect("utf-8 path")]);
    let said = broker.wait_for_log("anonymous clients refused", WAIT);
    assert!(said.is_some(), "{}", broker.log());

    let (_alice, ok) = login(&broker, V5, "alice-1", Some("alice"), Some("wonderland"));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    let (_, bad) = login(&broker, V5, "alice-2", Some("alice"), Some("wrong"));
    assert_eq!(bad.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_, nobody) = login(&broker, V5, "nobody", Some("nobody"), Some("x"));
    assert_eq!(nobody.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_, anonymous) = login(&broker, V5, "anon", None, None);
    assert_eq!(anonymous.reason, ReasonCode::NOT_AUTHORIZED);
    // 3.1.1 return codes 4 and 5 (the codec reads them back as 0x86 and 0x87).
    let (_, bad) = login(&broker, V3, "bob-1", Some("bob"), Some("wrong"));
    assert_eq!(bad.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_, anonymous) = login(&broker, V3, "anon3", None, None);
    assert_eq!(anonymous.reason, ReasonCode::NOT_AUTHORIZED);

    // Debian's own client, with and without the right password.
    let good = mosquitto_pub(&broker, &["-u", "bob", "-P", "builder", "-t", "t", "-m", "hi"]);
    assert!(good.status.success(), "{good:?}");
    let wrong = mosquitto_pub(&broker, &["-u", "bob", "-P", "nope", "-t", "t", "-m", "hi"]);
    assert!(!wrong.status.success(), "a wrong password was accepted: {wrong:?}");
    // And mosquitto_sub: alice reads what bob retained; a wrong password reads nothing.
    let kept =
        mosquitto_pub(&broker, &["-u", "bob", "-P", "builder", "-t", "t/r", "-m", "kept", "-r"]);
    assert!(kept.status.success(), "{kept:?}");
    let mosquitto_sub = |password: &str| {
        require_tool("mosquitto_sub");
        let mut command = tool_command("mosquitto_sub");
        command
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-u", "alice", "-P", password, "-t", "t/r", "-C", "1", "-W", "5"]);
        run_tool(&mut command, Duration::from_secs(10))
    };
    let read = mosquitto_sub("wonderland");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "kept", "{read:?}");
    let refused = mosquitto_sub("looking-glass");
    assert!(!refused.status.success() && refused.stdout.is_empty(), "{refused:?}");
}

#[test]
fn shardmq_passwd_adds_a_user_that_sighup_lets_in() {
    let dir = TestDir::new("shardmq-passwd");
    let file = mosquitto_password_file(&dir, &[("alice", "wonderland")]);
    let broker = Broker::start(&["--password-file", file.to_str().expect("utf-8 path")]);
    let (_, before) = login(&broker, V5, "carol-1", Some("carol"), Some("s3cret"));
    assert_eq!(before.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    let mut passwd = Command::new(broker_binary())
        .args(["passwd"])
        .arg(&file)
        .arg("carol")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardmq passwd");
    passwd.stdin.take().expect("stdin").write_all(b"s3cret\n").expect("write the password");
    let output = passwd.wait_with_output().expect("shardmq passwd ends");
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&file).expect("read the password file");
    assert!(text.contains("alice:$7$") && text.contains("carol:$argon2id$"), "{text}");

    broker.signal(nix::sys::signal::Signal::SIGHUP);
    // The password file's own line ("reloaded the configuration" comes before it).
    let reloaded = format!("reloaded {}", file.display());
    assert!(broker.wait_for_log(&reloaded, WAIT).is_some(), "{}", broker.log());
    let (_, after) = login(&broker, V5, "carol-2", Some("carol"), Some("s3cret"));
    assert_eq!(after.reason, ReasonCode::SUCCESS);
    let (_, alice) = login(&broker, V5, "alice-1", Some("alice"), Some("wonderland"));
    assert_eq!(alice.reason, ReasonCode::SUCCESS, "the mosquitto_passwd entry still works");

    // A broken file on the next SIGHUP: the log says why, and the old users keep logging in.
    std::fs::write(&file, "carol\n").expect("break the password file");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    let kept = broker.wait_for_log("keeping the password file in force", WAIT);
    assert!(kept.is_some_and(|line| line.contains("username:hash")), "{}", broker.log());
    let (_, carol) = login(&broker, V5, "carol-3", Some("carol"), Some("s3cret"));
    assert_eq!(carol.reason, ReasonCode::SUCCESS, "the old passwords stay in force");
}

fn subscribe(client: &mut RawClient, filter: &str) -> ReasonCode {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    }));
    match client.expect_packet(WAIT) {
        Packet::SubAck(ack) => ack.reasons[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn publish(client: &mut RawClient, topic: &str, payload: &str, retain: bool) -> ReasonCode {
    client.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain,
        topic: ByteString::from(topic),
        packet_id: Some(pid(2)),
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }));
    match client.expect_packet(WAIT) {
        Packet::PubAck(ack) => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// A PUBACK that lets the message through (success, or 0x10 "no matching subscribers").
fn allowed(reason: ReasonCode) -> bool {
    !reason.is_error()
}

/// The next PUBLISH's payload (acknowledged), or `None` when none comes within a short wait.
fn next_payload(client: &mut RawClient) -> Option<Bytes> {
    match client.next(Duration::from_millis(500)) {
        Received::Packet(Packet::Publish(publish)) => {
            if let Some(packet_id) = publish.packet_id {
                client.send(&Packet::PubAck(Ack::success(packet_id)));
            }
            Some(publish.payload)
        }
        _ => None,
    }
}

const ACL: &str = "\
# Anonymous clients may read the public topics.
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/secret

user bob
topic read sensors/#

# Everyone may write their own status.
pattern write status/%u
";

#[test]
fn the_acl_file_rules_subscribes_publishes_retained_messages_and_reloads() {
    let dir = TestDir::new("acl");
    let passwords = mosquitto_password_file(&dir, &[("alice", "a"), ("bob", "b")]);
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).expect("write the ACL");
    let broker = Broker::start(&[
        "--password-file",
        passwords.to_str().expect("utf-8 path"),
        "--acl-file",
        acl.to_str().expect("utf-8 path"),
    ]);
    let (mut alice, _) = login(&broker, V5, "alice", Some("alice"), Some("a"));
    let (mut bob, _) = login(&broker, V5, "bob", Some("bob"), Some("b"));
    let (mut bob3, _) = login(&broker, V3, "bob3", Some("bob"), Some("b"));

    assert!(allowed(publish(&mut alice, "sensors/1", "retained reading", true)));
    assert_eq!(publish(&mut bob, "sensors/1", "not bob's", false), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(publish(&mut alice, "sensors/secret", "x", true), ReasonCode::NOT_AUTHORIZED);
    assert!(allowed(publish(&mut bob, "status/bob", "up", false)));
    assert_eq!(publish(&mut bob, "status/alice", "forged", false), ReasonCode::NOT_AUTHORIZED);

    // Bob reads sensors/# (and gets the retained reading), may not subscribe elsewhere.
    assert_eq!(subscribe(&mut bob, "sensors/#"), ReasonCode(1));
    assert_eq!(next_payload(&mut bob).as_deref(), Some(&b"retained reading"[..]));
    assert_eq!(subscribe(&mut bob, "#"), ReasonCode::NOT_AUTHORIZED);
    assert!(subscribe(&mut bob3, "status/#").is_error(), "3.1.1 SUBACK 0x80 expected");
    assert!(allowed(publish(&mut alice, "sensors/2", "live", false)));
    assert_eq!(next_payload(&mut bob).as_deref(), Some(&b"live"[..]));

    // A bad ACL on SIGHUP keeps the old one; a good one takes over.
    std::fs::write(&acl, "user bob\ntopic sideways sensors/#\n").expect("write a bad ACL");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(broker.wait_for_log("keeping the ACL in force", WAIT).is_some(), "{}", broker.log());
    assert!(allowed(publish(&mut alice, "sensors/3", "still", false)));
    assert_eq!(next_payload(&mut bob).as_deref(), Some(&b"still"[..]));
    std::fs::write(&acl, "user alice\ntopic readwrite sensors/#\n").expect("write a new ACL");
    let reloaded = format!("reloaded {}", acl.display());
    let before = broker.log_count(&reloaded);
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(broker.wait_for_log_count(&reloaded, before + 1, WAIT), "{}", broker.log());
    // Shards pick the new ACL up within a tick (250 ms): bob may no longer read sensors/.
    std::thread::sleep(Duration::from_millis(600));
    assert!(allowed(publish(&mut alice, "sensors/4", "bob no longer reads this", false)));
    assert_eq!(next_payload(&mut bob), None);
}

/// The user name is stored with the session: after a restart, the ACL still checks the
/// deliveries to alice's offline session as alice's (before storage format 2 they were checked
/// as an anonymous client's, and refused).
#[test]
fn an_offline_session_keeps_its_user_name_across_a_restart() {
    let dir = TestDir::new("acl-restart");
    let passwords = mosquitto_password_file(&dir, &[("alice", "a"), ("bob", "b")]);
    let acl = dir.path().join("acl");
    // Anonymous clients may read nothing.
    std::fs::write(&acl, "user alice\ntopic read alice/#\n\nuser bob\ntopic write alice/#\n")
        .expect("write the ACL");
    let data = dir.path().join("data");
    let args = [
        "--password-file",
        passwords.to_str().expect("utf-8 path"),
        "--acl-file",
        acl.to_str().expect("utf-8 path"),
    ];
    let alice_connect = || {
        let mut connect = persistent_connect_packet(V5, "alice-phone");
        connect.username = Some(ByteString::from("alice"));
        connect.password = Some(Bytes::from_static(b"a"));
        connect
    };

    let mut first = Broker::start_in(&data, &args);
    let (mut alice, connack) = RawClient::connect(first.addr(), alice_connect());
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe(&mut alice, "alice/#"), ReasonCode(1));
    alice.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
    drop(alice);
    assert!(first.stop().success(), "{}", first.log());

    let second = Broker::start_in(&data, &args);
    let (mut bob, _) = login(&second, V5, "bob", Some("bob"), Some("b"));
    assert!(allowed(publish(&mut bob, "alice/x", "for alice", false)));

    let (mut alice, connack) = RawClient::connect(second.addr(), alice_connect());
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(connack.session_present, "{}", second.log());
    assert_eq!(next_payload(&mut alice).as_deref(), Some(&b"for alice"[..]), "{}", second.log());
}

#[test]
fn without_authentication_the_listener_is_loopback_only() {
    let broker = Broker::start(&["--listen", "0.0.0.0:0"]);
    assert!(broker.addr().ip().is_loopback(), "listening on {}", broker.addr());
    let said = broker.wait_for_log("anonymous clients on loopback only", WAIT);
    assert!(said.is_some(), "{}", broker.log());

    let output = Command::new(broker_binary())
        .args(["serve", "--listen", "192.0.2.1:1883", "--data-dir"])
        .arg(TestDir::new("exposed").path())
        .output()
        .expect("run shardmq serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("allow_anonymous"), "{stderr}");

    let open = Broker::start(&["--listen", "0.0.0.0:0", "--allow-anonymous", "true"]);
    assert!(open.addr().ip().is_unspecified(), "listening on {}", open.addr());

    // `allow_anonymous = false` without a password file: nobody can log in, named or not.
    let closed = Broker::start(&["--allow-anonymous", "false"]);
    let (_, named) = login(&closed, V5, "named", Some("anyone"), Some("anything"));
    assert_eq!(named.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_, anonymous) = login(&closed, V5, "anonymous", None, None);
    assert_eq!(anonymous.reason, ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let broker = Broker::start(&["--log-format", "json"]);
    let said = broker.wait_for_log("anonymous clients on loopback only", WAIT);
    assert!(said.is_some(), "{}", broker.log());
    let log = broker.log();
    for line in log.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(object["timestamp"].is_string() && object["level"].is_string(), "{line}");
        assert!(object["message"].is_string(), "{line}");
    }
    assert!(log.lines().count() >= 2, "{log}");
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 enhanced authentication: SCRAM-SHA-256
// ---------------------------------------------------------------------------------------------

const SCRAM: &str = "SCRAM-SHA-256";

/// Runs `shardmq passwd [--scram] FILE USER` with `password` on standard input.
fn shardmq_passwd(file: &std::path::Path, user: &str, password: &str, scram: bool) {
    let mut command = Command::new(broker_binary());
    command.arg("passwd");
    if scram {
        command.args(["--scram", "--iterations", "4096"]);
    }
    let mut passwd = command
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardmq passwd");
    let line = format!("{password}\n");
    passwd.stdin.take().expect("stdin").write_all(line.as_bytes()).expect("write the password");
    let output = passwd.wait_with_output().expect("shardmq passwd ends");
    assert!(output.status.success(), "{output:?}");
}

fn auth_packet(reason: ReasonCode, method: &str, data: &[u8]) -> Packet {
    Packet::Auth(shardmq_io::codec::Auth {
        reason,
        properties: Properties {
            authentication_method: Some(ByteString::from(method)),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..Properties::default()
        },
    })
}

/// The AUTH the broker sent next, which must name SCRAM-SHA-256: its reason and data.
fn expect_auth(client: &mut RawClient) -> (ReasonCode, Bytes) {
    match client.next(WAIT) {
        Received::Packet(Packet::Auth(auth)) => {
            assert_eq!(auth.properties.authentication_method.as_deref(), Some(SCRAM));
            (auth.reason, auth.properties.authentication_data.unwrap_or_default())
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
}

/// A SCRAM-SHA-256 CONNECT exchange over a raw socket: CONNECT with the client-first message,
/// AUTH 0x18 server-first, AUTH 0x18 client-final, CONNACK. Returns the client and the CONNACK;
/// on success, the CONNACK's server-final message has been checked.
fn scram_login(
    broker: &Broker,
    client_id: &str,
    user: &str,
    password: &str,
    connect_username: Option<&str>,
) -> (RawClient, ConnAck) {
    let scram = shardmq_auth::scram::ScramClient::new(user, password.as_bytes(), "c1i3ntn0nce");
    let mut connect = connect_packet(V5, client_id);
    connect.username = connect_username.map(ByteString::from);
    connect.properties.authentication_method = Some(ByteString::from(SCRAM));
    connect.properties.authentication_data = Some(Bytes::from(scram.client_first()));
    let mut client = RawClient::open(broker.addr(), V5);
    client.send(&Packet::Connect(Box::new(connect)));
    let (reason, server_first) = expect_auth(&mut client);
    assert_eq!(reason, ReasonCode::CONTINUE_AUTHENTICATION);
    let last = scram.client_final(&server_first).expect("a valid server-first message");
    client.send(&auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, SCRAM, &last.message));
    let connack = match client.next(WAIT) {
        Received::Packet(Packet::ConnAck(connack)) => connack,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    if connack.reason == ReasonCode::SUCCESS {
        assert_eq!(connack.properties.authentication_method.as_deref(), Some(SCRAM));
        let server_final = connack.properties.authentication_data.as_deref().unwrap_or_default();
        assert!(last.verify_server_final(server_final), "a wrong server signature");
    }
    (client, connack)
}

/// Re-authenticates a connected client: `Ok` after AUTH 0x00 with a correct server signature,
/// `Err` with the DISCONNECT's reason.
fn scram_reauthenticate(
    client: &mut RawClient,
    user: &str,
    password: &str,
) -> Result<(), ReasonCode> {
    let scram = shardmq_auth::scram::ScramClient::new(user, password.as_bytes(), "r3auth");
    client.send(&auth_packet(ReasonCode::RE_AUTHENTICATE, SCRAM, &scram.client_first()));
    let (reason, server_first) = expect_auth(client);
    assert_eq!(reason, ReasonCode::CONTINUE_AUTHENTICATION);
    let last = scram.client_final(&server_first).expect("a valid server-first message");
    client.send(&auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, SCRAM, &last.message));
    match client.next(WAIT) {
        Received::Packet(Packet::Auth(auth)) => {
            assert_eq!(auth.reason, ReasonCode::SUCCESS);
            let server_final = auth.properties.authentication_data.unwrap_or_default();
            assert!(last.verify_server_final(&server_final), "a wrong server signature");
            Ok(())
        }
        Received::Packet(Packet::Disconnect(disconnect)) => {
            client.expect_closed(WAIT);
            Err(disconnect.reason)
        }
        other => panic!("expected AUTH or DISCONNECT, got {other:?}"),
    }
}

#[test]
fn scram_sha_256_logs_in_reauthenticates_and_names_the_acl_user() {
    let dir = TestDir::new("scram");
    let file = dir.path().join("passwd");
    shardmq_passwd(&file, "sam", "s3cret", true);
    shardmq_passwd(&file, "argon", "a", false);
    let text = std::fs::read_to_string(&file).expect("read the password file");
    assert!(
        text.contains("sam:$scram-sha-256$4096$") && text.contains("argon:$argon2id$"),
        "{text}"
    );
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user sam\ntopic readwrite sam/#\n").expect("write the ACL");
    let broker = Broker::start(&[
        "--password-file",
        file.to_str().expect("utf-8 path"),
        "--acl-file",
        acl.to_str().expect("utf-8 path"),
    ]);

    // On both shards: one handshake stays on the accepting shard, the other is handed over.
    for shard in 0..2 {
        let client_id = shardmq_tests::client_id_on_shard("scram", shard);
        let (mut client, connack) = scram_login(&broker, &client_id, "sam", "s3cret", None);
        assert_eq!(connack.reason, ReasonCode::SUCCESS, "{connack:?}");
        // The SCRAM user is the session's user: the ACL lets sam write sam/#, nothing else.
        assert!(allowed(publish(&mut client, "sam/1", "x", false)));
        assert_eq!(publish(&mut client, "other/1", "x", false), ReasonCode::NOT_AUTHORIZED);

        assert_eq!(scram_reauthenticate(&mut client, "sam", "s3cret"), Ok(()));
        assert!(allowed(publish(&mut client, "sam/2", "still connected", false)));
        assert_eq!(
            scram_reauthenticate(&mut client, "sam", "wrong"),
            Err(ReasonCode::NOT_AUTHORIZED)
        );
    }

    // A CONNECT User Name must be the SCRAM user.
    let (_, same) = scram_login(&broker, "named", "sam", "s3cret", Some("sam"));
    assert_eq!(same.reason, ReasonCode::SUCCESS);
    let (_, other) = scram_login(&broker, "misnamed", "sam", "s3cret", Some("argon"));
    assert_eq!(other.reason, ReasonCode::NOT_AUTHORIZED);

    // Wrong password, unknown user, a user whose entry is argon2id: all refused at the proof.
    for (user, password) in [("sam", "wrong"), ("nobody", "s3cret"), ("argon", "a")] {
        let (mut client, refused) = scram_login(&broker, "refused", user, password, None);
        assert_eq!(refused.reason, ReasonCode::NOT_AUTHORIZED, "{user}");
        client.expect_closed(WAIT);
    }

    // The SCRAM entry also serves a plain password: a raw CONNECT and Debian's mosquitto_pub.
    let (_, plain) = login(&broker, V5, "plain", Some("sam"), Some("s3cret"));
    assert_eq!(plain.reason, ReasonCode::SUCCESS);
    let (_, wrong) = login(&broker, V5, "plain", Some("sam"), Some("s3cret!"));
    assert_eq!(wrong.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let good = mosquitto_pub(&broker, &["-u", "sam", "-P", "s3cret", "-t", "sam/t", "-m", "hi"]);
    assert!(good.status.success(), "{good:?}");

    // A user added while the broker runs can use SCRAM after SIGHUP.
    shardmq_passwd(&file, "sue", "n3w", true);
    let (_, before) = scram_login(&broker, "sue-1", "sue", "n3w", None);
    assert_eq!(before.reason, ReasonCode::NOT_AUTHORIZED);
    let reloaded = format!("reloaded {}", file.display());
    let reloads = broker.log_count(&reloaded);
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(broker.wait_for_log_count(&reloaded, reloads + 1, WAIT), "{}", broker.log());
    let (_, after) = scram_login(&broker, "sue-2", "sue", "n3w", None);
    assert_eq!(after.reason, ReasonCode::SUCCESS);
}

#[test]
fn other_methods_and_brokers_without_a_password_file_get_0x8c() {
    let dir = TestDir::new("scram-methods");
    let file = dir.path().join("passwd");
    shardmq_passwd(&file, "sam", "s3cret", true);
    let with_file = Broker::start(&["--password-file", file.to_str().expect("utf-8 path")]);
    let without_file = Broker::start(&[]);
    for (broker, method) in
        [(&with_file, "SCRAM-SHA-1"), (&with_file, "scram-sha-256"), (&without_file, SCRAM)]
    {
        let mut connect = connect_packet(V5, "method");
        connect.properties.authentication_method = Some(ByteString::from(method));
        connect.properties.authentication_data = Some(Bytes::from_static(b"n,,n=sam,r=abc"));
        let (mut client, connack) = RawClient::connect(broker.addr(), connect);
        assert_eq!(connack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD, "{method}");
        client.expect_closed(WAIT);
    }

    // AUTH on a connection that logged in with a password is a protocol error.
    let (mut plain, _) = login(&with_file, V5, "plain", Some("sam"), Some("s3cret"));
    plain.send(&auth_packet(ReasonCode::RE_AUTHENTICATE, SCRAM, b"n,,n=sam,r=abc"));
    match plain.next(WAIT) {
        Received::Packet(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::PROTOCOL_ERROR)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[test]
fn the_scram_exchange_is_bound_by_the_connect_timeout_and_the_protocol() {
    let dir = TestDir::new("scram-timeout");
    let file = dir.path().join("passwd");
    shardmq_passwd(&file, "sam", "s3cret", true);
    let broker = Broker::start(&[
        "--password-file",
        file.to_str().expect("utf-8 path"),
        "--connect-timeout",
        "1",
    ]);
    let scram = shardmq_auth::scram::ScramClient::new("sam", b"s3cret", "abc");
    let scram_connect = || {
        let mut connect = connect_packet(V5, "slow");
        connect.properties.authentication_method = Some(ByteString::from(SCRAM));
        connect.properties.authentication_data = Some(Bytes::from(scram.client_first()));
        Packet::Connect(Box::new(connect))
    };

    // A client that never answers the server-first message is closed at the connect timeout.
    let mut silent = RawClient::open(broker.addr(), V5);
    silent.send(&scram_connect());
    assert_eq!(expect_auth(&mut silent).0, ReasonCode::CONTINUE_AUTHENTICATION);
    let took = silent.expect_closed(Duration::from_secs(3));
    assert!(took <= Duration::from_secs(2), "closed after {took:?}, expected about 1 s");

    // Anything but AUTH 0x18 with the same method is a protocol error.
    for answer in [
        Packet::PingReq,
        auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, "SCRAM-SHA-1", b"c=biws,r=abc,p=AAAA"),
        auth_packet(ReasonCode::RE_AUTHENTICATE, SCRAM, b"c=biws,r=abc,p=AAAA"),
    ] {
        let mut client = RawClient::open(broker.addr(), V5);
        client.send(&scram_connect());
        assert_eq!(expect_auth(&mut client).0, ReasonCode::CONTINUE_AUTHENTICATION);
        client.send(&answer);
        match client.next(WAIT) {
            Received::Packet(Packet::ConnAck(connack)) => {
                assert_eq!(connack.reason, ReasonCode::PROTOCOL_ERROR, "{answer:?}")
            }
            other => panic!("expected CONNACK, got {other:?} after {answer:?}"),
        }
        client.expect_closed(WAIT);
    }
}

/// A CONNECT of `client_id` as `user` (password = user name), persistent.
fn persistent_login(
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
) -> shardmq_io::codec::Connect {
    let mut connect = persistent_connect_packet(version, client_id);
    connect.username = Some(ByteString::from(user));
    connect.password = Some(Bytes::copy_from_slice(user.as_bytes()));
    connect
}

#[test]
fn a_session_belongs_to_its_user_and_another_user_cannot_take_it() {
    let dir = TestDir::new("session-owner");
    let passwords = mosquitto_password_file(&dir, &[("alice", "alice"), ("bob", "bob")]);
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite alice/#\n\nuser bob\ntopic write alice/#\n")
        .expect("write the ACL");
    let files = [passwords.to_str().expect("utf-8 path"), acl.to_str().expect("utf-8 path")];
    let broker = Broker::start(&["--password-file", files[0], "--acl-file", files[1]]);

    // alice's persistent session, with a message queued for it while she is away.
    let (mut alice, connack) =
        RawClient::connect(broker.addr(), persistent_login(V5, "alice-dev", "alice"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe(&mut alice, "alice/#"), ReasonCode(1));
    drop(alice);
    let (mut bob, _) = login(&broker, V5, "bob-pub", Some("bob"), Some("bob"));
    assert!(allowed(publish(&mut bob, "alice/inbox", "queued for alice", false)));

    // bob, with a valid password, names her client id: refused, over 5.0 and 3.1.1, with a
    // clean start too (which would have ended her session).
    for version in [V5, V3] {
        for clean in [false, true] {
            let mut connect = persistent_login(version, "alice-dev", "bob");
            connect.clean_start = clean;
            let (_, connack) = RawClient::connect(broker.addr(), connect);
            assert_eq!(connack.reason, ReasonCode::NOT_AUTHORIZED, "{version:?} clean {clean}");
            assert!(!connack.session_present);
        }
    }
    assert!(broker.log_contains("has a session of another user"), "{}", broker.log());

    // Online, she is not kicked either.
    let (mut alice, connack) =
        RawClient::connect(broker.addr(), persistent_login(V5, "alice-dev", "alice"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(connack.session_present, "her session is still hers");
    assert_eq!(next_payload(&mut alice).as_deref(), Some(&b"queued for alice"[..]));
    let (_, connack) = RawClient::connect(broker.addr(), persistent_login(V5, "alice-dev", "bob"));
    assert_eq!(connack.reason, ReasonCode::NOT_AUTHORIZED);
    alice.send(&Packet::PingReq);
    assert!(matches!(alice.expect_packet(WAIT), Packet::PingResp), "alice was disconnected");

    // Mosquitto's behaviour, when asked for: any user may take a client id over.
    let open = Broker::start(&[
        "--password-file",
        files[0],
        "--acl-file",
        files[1],
        "--session-takeover-any-user",
        "true",
    ]);
    let (_alice, _) = RawClient::connect(open.addr(), persistent_login(V5, "alice-dev", "alice"));
    let (_, connack) = RawClient::connect(open.addr(), persistent_login(V5, "alice-dev", "bob"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);

    // Or the user name as the client id: bob's "alice-dev" is his own session "bob".
    let named = Broker::start(&[
        "--password-file",
        files[0],
        "--acl-file",
        files[1],
        "--use-username-as-clientid",
        "true",
    ]);
    let (_alice, _) = RawClient::connect(named.addr(), persistent_login(V5, "alice-dev", "alice"));
    let (_, connack) = RawClient::connect(named.addr(), persistent_login(V5, "alice-dev", "bob"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    let (_, connack) = login(&named, V5, "whoever", None, None);
    assert!(connack.reason.is_error(), "no user name, no client id: {connack:?}");
}

#[test]
fn assigned_client_ids_carry_128_random_bits() {
    let broker = Broker::start(&[]);
    let assigned: Vec<String> = (0..2)
        .map(|_| {
            let (_client, connack) = RawClient::connect(broker.addr(), connect_packet(V5, ""));
            assert_eq!(connack.reason, ReasonCode::SUCCESS);
            connack.properties.assigned_client_identifier.expect("assigned").to_string()
        })
        .collect();
    // "<22 base-62 digits>-<n>": nothing of one says anything about the next.
    let random: Vec<&str> =
        assigned.iter().map(|id| id.split('-').next().unwrap_or_else(|| panic!("{id}"))).collect();
    for part in &random {
        assert!(
            part.len() == 22 && part.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{assigned:?}"
        );
    }
    let differing = random[0].bytes().zip(random[1].bytes()).filter(|(a, b)| a != b).count();
    assert!(differing > 12, "{assigned:?}");
}

/// A flood of wrong passwords from one address: its first failures are checked, then its
/// logins are refused without a check (even with a right password), then it is banned; logins
/// from other addresses are untouched, and an unknown user is checked like a known one.
#[test]
fn a_source_that_floods_wrong_passwords_backs_off_then_is_banned_and_others_log_in() {
    let dir = TestDir::new("login-flood");
    let file = dir.path().join("passwd");
    shardmq_passwd(&file, "alice", "a", false);
    shardmq_passwd(&file, "bob", "b", false);
    let file = file.display().to_string();
    let args = ["--password-file", &file, "--max-login-failures", "3", "--login-ban-secs", "60"];
    let broker = Broker::start(&[&args[..], &["--admin-listen", "127.0.0.1:0"]].concat());
    let attempt = |last: u8, version: ProtocolVersion, user: &str, password: &str| {
        let mut connect = connect_packet(version, "");
        connect.client_id = ByteString::from(format!("c-{last}-{user}"));
        connect.username = Some(ByteString::from(user));
        connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
        let source = std::net::IpAddr::from([127, 0, 0, last]);
        RawClient::connect_from(source, broker.addr(), connect).1.reason
    };
    for user in ["alice", "nobody", "alice"] {
        assert_eq!(attempt(2, V5, user, "wrong"), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    // Out of budget: refused at once, without a check, whatever the password.
    assert_eq!(attempt(2, V5, "alice", "a"), ReasonCode::CONNECTION_RATE_EXCEEDED);
    // 3.1.1 has no such code: 3, "server unavailable".
    assert_eq!(attempt(2, V3, "alice", "wrong"), ReasonCode::SERVER_UNAVAILABLE);
    assert!(broker.wait_for_log("failed logins from 127.0.0.2", WAIT).is_some());
    // Other addresses are not held to 127.0.0.2's budget.
    assert_eq!(attempt(3, V5, "bob", "b"), ReasonCode::SUCCESS);
    assert_eq!(attempt(4, V5, "alice", "a"), ReasonCode::SUCCESS);
    // It keeps trying: banned.
    let mut last = ReasonCode::SUCCESS;
    for _ in 0..100 {
        last = attempt(2, V5, "alice", "wrong");
        if last == ReasonCode::BANNED {
            break;
        }
        assert_eq!(last, ReasonCode::CONNECTION_RATE_EXCEEDED);
    }
    assert_eq!(last, ReasonCode::BANNED);
    assert_eq!(attempt(2, V5, "bob", "b"), ReasonCode::BANNED);
    let line = broker.wait_for_log("127.0.0.2 kept trying after failed logins", WAIT);
    assert!(line.is_some_and(|line| line.contains("banned for 60s")));
    assert_eq!(broker.log_count("failed logins from 127.0.0.2"), 1, "logged once");
    assert_eq!(attempt(3, V5, "bob", "b"), ReasonCode::SUCCESS);

    assert_eq!(broker.metric_total("shardmq_login_failures_total", ""), 3);
    assert_eq!(broker.metric_total("shardmq_login_sources_banned", ""), 1);
    let backoff = broker.metric_total("shardmq_connects_refused_total", "login_backoff");
    let banned = broker.metric_total("shardmq_connects_refused_total", "login_banned");
    assert!(backoff >= 2 && banned == 2, "backoff {backoff}, banned {banned}");
}

//! Full disk: the data directory on a small filesystem fills up while a persistent session
//! receives QoS 1/2 messages. What cannot be stored is refused (MQTT 5: PUBACK/PUBREC 0x80;
//! 3.1.1: the connection closes without an acknowledgement), QoS 0 keeps flowing, the broker
//! neither exits nor spins and says so once; once space is freed it stores and acknowledges
//! again without a restart, and a restart then finds every message that was acknowledged.
//!
//! The filesystem is a size-capped tmpfs in a mount namespace of its own, kept by a holder
//! process ([`SmallDisk`]): `unshare -rm` (a user namespace too, so that no real root is needed)
//! mounts the tmpfs on a [`TestDir`] and then sleeps; every broker start and every file
//! operation on the small disk enters that namespace with `nsenter -U -m`. The holder, not the
//! broker, keeps the namespace and so the tmpfs alive, which is what lets a second broker start
//! on the same data: a tmpfs mounted in the broker's own namespace would vanish with it, and a
//! loop-mounted image needs real root. `nsenter` execs the broker, so [`Broker`] tracks the
//! broker process itself. Space is taken and given back with a filler file on the tmpfs. The
//! same commands work as root and as any user where unprivileged user namespaces are allowed
//! (checked by hand as uid 65534); where they are not, the test fails saying so.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardmq_io::codec::{
    Ack, ByteString, Bytes, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_tests::{
    client_id_on_shard, connect_ok, connect_packet, disconnect, persistent_connect_packet,
    require_tool, Broker, RawClient, Received, TestDir,
};

use ProtocolVersion::{V3_1_1, V5};

/// How long a test waits for a reply the broker should send at once.
const REPLY: Duration = Duration::from_secs(3);
/// How long a subscriber waits for more after the last message before it decides it has all.
const IDLE: Duration = Duration::from_millis(700);
/// The most a subscriber spends collecting its messages.
const COLLECT: Duration = Duration::from_secs(10);
/// The small disk: room for the shard files and some messages, so it fills in a moment.
const DISK_SIZE: &str = "8m";
/// Payload bytes per stored message: big enough that the disk fills after a few hundred.
const PAYLOAD_BYTES: usize = 16 << 10;
/// The most messages the publisher sends before the disk must have refused one.
const PUBLISHES_MAX: u16 = 2000;
/// What the broker logs when the disk is full, and when commits work again.
const FULL_LOG: &str = "No space left on device";
const RECOVERED_LOG: &str = "storage commits succeed again";
/// The reason code of a PUBACK/PUBREC for a message the broker could not store.
const CANNOT_STORE: ReasonCode = ReasonCode::UNSPECIFIED_ERROR;

/// A size-capped tmpfs on a [`TestDir`], mounted in a user and mount namespace that a holder
/// process keeps alive (see the module comment). Dropping it ends the holder, and the tmpfs with it.
struct SmallDisk {
    holder: Child,
    dir: TestDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        require_tool("unshare");
        require_tool("nsenter");
        let dir = TestDir::new("full-disk");
        let mut holder = Command::new("unshare")
            .args(["-rm", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && echo mounted && exec sleep 3600"#)
            .args(["sh", size])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout is piped");
        BufReader::new(stdout).read_line(&mut line).expect("read the holder's output");
        assert_eq!(
            line.trim(),
            "mounted",
            "`unshare -rm` could not mount a tmpfs (are unprivileged user namespaces enabled?)"
        );
        SmallDisk { holder, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The command prefix that runs a program inside the holder's namespaces.
    fn enter(&self) -> Vec<String> {
        ["nsenter", "-t", &self.holder.id().to_string(), "-U", "-m", "--preserve-credentials"]
            .map(String::from)
            .to_vec()
    }

    /// Runs a shell script inside the namespaces, with the disk's path as `$1`; returns its
    /// exit status and its stderr.
    fn sh(&self, script: &str) -> (bool, String) {
        let enter = self.enter();
        let output = Command::new(&enter[0])
            .args(&enter[1..])
            .args(["sh", "-c", script, "sh"])
            .arg(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter");
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// Fills every free byte with `$1/filler`.
    fn fill(&self) {
        let (_, stderr) = self.sh(r#"dd if=/dev/zero of="$1/filler" bs=4k"#);
        assert!(stderr.contains("No space left"), "dd should stop at a full disk: {stderr}");
    }

    /// Deletes the filler.
    fn free(&self) {
        let (ok, stderr) = self.sh(r#"rm "$1/filler""#);
        assert!(ok, "cannot delete the filler: {stderr}");
    }

    /// Starts a broker on the disk, inside the namespaces.
    fn broker(&self, extra: &[&str]) -> Broker {
        let enter = self.enter();
        let wrapper: Vec<&str> = enter.iter().map(String::as_str).collect();
        Broker::start_wrapped_in(&wrapper, self.path(), extra)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn packet_id(id: u16) -> PacketId {
    PacketId::new(id).expect("packet ids start at 1")
}

fn publish(topic: &str, payload: &str, qos: QoS, id: Option<u16>) -> Packet {
    let mut bytes = payload.as_bytes().to_vec();
    if qos != QoS::AtMostOnce {
        bytes.resize(PAYLOAD_BYTES, b'.');
    }
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: id.map(packet_id),
        properties: Properties::default(),
        payload: Bytes::from(bytes),
    })
}

/// The message name at the start of a payload (its padding cut off).
fn name_of(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).trim_end_matches('.').to_string()
}

fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::with_qos(qos),
        }],
    }));
    match client.expect_packet(REPLY) {
        Packet::SubAck(suback) => assert_eq!(suback.reasons, [ReasonCode(qos as u8)]),
        other => panic!("expected SUBACK for {filter}, got {other:?}"),
    }
}

/// Publishes QoS 1 `name` and returns the PUBACK's reason code.
fn publish_qos1(client: &mut RawClient, name: &str, id: u16) -> ReasonCode {
    client.send(&publish("fd/q1", name, QoS::AtLeastOnce, Some(id)));
    match client.expect_packet(REPLY) {
        Packet::PubAck(ack) if ack.packet_id.get() == id => ack.reason,
        other => panic!("{name}: expected PUBACK {id}, got {other:?}"),
    }
}

/// Publishes QoS 2 `name` and returns the PUBREC's reason code, completing the flow (PUBREL,
/// PUBCOMP) when it succeeded.
fn publish_qos2(client: &mut RawClient, name: &str, id: u16) -> ReasonCode {
    client.send(&publish("fd/q2", name, QoS::ExactlyOnce, Some(id)));
    let reason = match client.expect_packet(REPLY) {
        Packet::PubRec(ack) if ack.packet_id.get() == id => ack.reason,
        other => panic!("{name}: expected PUBREC {id}, got {other:?}"),
    };
    if reason == ReasonCode::SUCCESS {
        client.send(&Packet::PubRel(Ack::success(packet_id(id))));
        match client.expect_packet(REPLY) {
            Packet::PubComp(ack) if ack.packet_id.get() == id => {}
            other => panic!("{name}: expected PUBCOMP {id}, got {other:?}"),
        }
    }
    reason
}

/// A QoS 0 message from `from` reaches `to`.
fn qos0_flows(from: &mut RawClient, to: &mut RawClient, name: &str) {
    from.send(&publish("live/x", name, QoS::AtMostOnce, None));
    match to.expect_packet(REPLY) {
        Packet::Publish(p) => assert_eq!(name_of(&p.payload), name),
        other => panic!("expected the QoS 0 message {name}, got {other:?}"),
    }
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which is in parentheses); utime and stime are the 14th
    // and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Reads and acknowledges PUBLISHes until nothing arrives for [`IDLE`]; returns the names.
fn collect(client: &mut RawClient) -> Vec<String> {
    let deadline = Instant::now() + COLLECT;
    let mut got = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "still receiving after {COLLECT:?}");
        match client.next(IDLE) {
            Received::Packet(Packet::Publish(p)) => {
                let id = p.packet_id.expect("stored messages are QoS 1/2");
                match p.qos {
                    QoS::ExactlyOnce => client.send(&Packet::PubRec(Ack::success(id))),
                    _ => client.send(&Packet::PubAck(Ack::success(id))),
                }
                got.push(name_of(&p.payload));
            }
            Received::Packet(Packet::PubRel(rel)) => {
                client.send(&Packet::PubComp(Ack::success(rel.packet_id)));
            }
            Received::Packet(other) => panic!("unexpected {other:?}"),
            Received::Closed => panic!("the broker closed the subscriber's connection"),
            Received::TimedOut => return got,
        }
    }
}

#[test]
fn a_full_disk_refuses_what_it_cannot_store_and_loses_nothing_acknowledged() {
    let disk = SmallDisk::new(DISK_SIZE);
    let mut broker = disk.broker(&[]);

    // The persistent session, offline; the publishers on the other shard, so that storing goes
    // through a receipt from the subscriber's shard.
    let subscriber_id = client_id_on_shard("fd-sub", 0);
    let mut subscriber = connect_ok(&broker, persistent_connect_packet(V5, &subscriber_id), false);
    subscribe(&mut subscriber, "fd/#", QoS::ExactlyOnce);
    disconnect(subscriber);
    let mut live_sub = connect_ok(&broker, connect_packet(V5, "fd-live-sub"), false);
    subscribe(&mut live_sub, "live/#", QoS::AtMostOnce);
    let mut live_pub = connect_ok(&broker, connect_packet(V5, "fd-live-pub"), false);
    let mut publisher =
        connect_ok(&broker, connect_packet(V5, &client_id_on_shard("fd-pub", 1)), false);

    let mut acknowledged = BTreeSet::new();
    for id in 1..=5 {
        let name = format!("before-{id}");
        assert_eq!(publish_qos1(&mut publisher, &name, id), ReasonCode::SUCCESS, "{name}");
        acknowledged.insert(name);
    }

    // Fill the disk, then publish until the broker refuses: what redb has written but not used
    // yet still takes a few messages.
    disk.fill();
    let mut refused_at = None;
    for id in 1..=PUBLISHES_MAX {
        let name = format!("filling-{id}");
        match publish_qos1(&mut publisher, &name, id) {
            ReasonCode::SUCCESS => {
                acknowledged.insert(name);
            }
            reason => {
                assert_eq!(reason, CANNOT_STORE, "{name}");
                refused_at = Some(id);
                break;
            }
        }
    }
    let refused_at = refused_at.expect("the broker acknowledged everything on a full disk");
    eprintln!("the disk refused message {refused_at} after the filler");

    // Everything that needs the disk is refused while it is full; QoS 0 keeps flowing.
    for id in 1..=5 {
        assert_eq!(publish_qos1(&mut publisher, &format!("full-{id}"), id), CANNOT_STORE);
    }
    assert_eq!(publish_qos2(&mut publisher, "full-qos2", 7), CANNOT_STORE);
    qos0_flows(&mut live_pub, &mut live_sub, "qos0-while-full");
    // 3.1.1 has no way to refuse: the connection closes without an acknowledgement.
    let mut old =
        connect_ok(&broker, connect_packet(V3_1_1, &client_id_on_shard("fd-311", 1)), false);
    old.send(&publish("fd/q1", "full-311", QoS::AtLeastOnce, Some(1)));
    old.expect_closed(REPLY);

    // The broker neither spins nor exits while the disk stays full, and says so once per shard.
    let ticks = cpu_ticks(broker.pid());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(broker.pid()) - ticks;
    // Ticks are USER_HZ, 100 a second on Linux: 40 in 2 s is a fifth of a core.
    assert!(spent < 40, "the broker used {spent} ticks of CPU in 2 s with a full disk");
    qos0_flows(&mut live_pub, &mut live_sub, "qos0-still-full");
    let log = broker.log();
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(
        (1..=2).contains(&errors.len()) && errors.iter().all(|line| line.contains(FULL_LOG)),
        "one error line per failing shard, saying {FULL_LOG:?}:\n{log}"
    );

    // Space comes back: the next message is stored and acknowledged, no restart.
    disk.free();
    assert_eq!(publish_qos1(&mut publisher, "after-1", 1), ReasonCode::SUCCESS);
    acknowledged.insert("after-1".into());
    // The QoS 2 packet id refused above is free again: a new message with it is stored.
    assert_eq!(publish_qos2(&mut publisher, "after-qos2", 7), ReasonCode::SUCCESS);
    acknowledged.insert("after-qos2".into());
    for id in 2..=5 {
        let name = format!("after-{id}");
        assert_eq!(publish_qos1(&mut publisher, &name, id), ReasonCode::SUCCESS, "{name}");
        acknowledged.insert(name);
    }
    qos0_flows(&mut live_pub, &mut live_sub, "qos0-after");
    assert!(broker.log_contains(RECOVERED_LOG), "no {RECOVERED_LOG:?} in:\n{}", broker.log());
    drop((publisher, live_pub, live_sub));
    assert!(broker.stop().success(), "the broker exits cleanly:\n{}", broker.log());

    // A restart on the same data finds every acknowledged message.
    let broker = disk.broker(&[]);
    let mut subscriber = connect_ok(&broker, persistent_connect_packet(V5, &subscriber_id), true);
    let got: BTreeSet<String> = collect(&mut subscriber).into_iter().collect();
    let missing: Vec<&String> = acknowledged.difference(&got).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

#[test]
fn a_broker_stops_and_starts_again_on_a_full_disk() {
    let disk = SmallDisk::new(DISK_SIZE);
    let mut broker = disk.broker(&[]);
    let subscriber_id = client_id_on_shard("fd-sub", 0);
    let mut subscriber = connect_ok(&broker, persistent_connect_packet(V5, &subscriber_id), false);
    subscribe(&mut subscriber, "fd/#", QoS::AtLeastOnce);
    disconnect(subscriber);
    let mut publisher = connect_ok(&broker, connect_packet(V5, "fd-pub"), false);
    assert_eq!(publish_qos1(&mut publisher, "before", 1), ReasonCode::SUCCESS);
    disk.fill();
    let refused = (1..=PUBLISHES_MAX).find(|&id| {
        publish_qos1(&mut publisher, &format!("filling-{id}"), id) != ReasonCode::SUCCESS
    });
    assert!(refused.is_some(), "the broker acknowledged everything on a full disk");
    drop(publisher);
    // Shutting down writes each session's disconnection time, which fails: it still exits.
    assert!(broker.stop().success(), "the broker exits cleanly:\n{}", broker.log());

    // It starts on the full disk and refuses what it cannot store; freeing space heals it.
    let broker = disk.broker(&[]);
    let mut publisher = connect_ok(&broker, connect_packet(V5, "fd-pub"), false);
    assert_eq!(publish_qos1(&mut publisher, "full", 1), CANNOT_STORE);
    disk.free();
    assert_eq!(publish_qos1(&mut publisher, "after", 2), ReasonCode::SUCCESS);
    let mut subscriber = connect_ok(&broker, persistent_connect_packet(V5, &subscriber_id), true);
    let got = collect(&mut subscriber);
    assert!(got.contains(&"before".to_string()) && got.contains(&"after".to_string()), "{got:?}");
}

#[test]
fn a_connected_subscriber_that_does_not_acknowledge_loses_nothing_acknowledged() {
    let disk = SmallDisk::new(DISK_SIZE);
    let mut broker = disk.broker(&[]);
    let subscriber_id = client_id_on_shard("fd-sub", 0);
    let mut subscriber = connect_ok(&broker, persistent_connect_packet(V5, &subscriber_id), false);
    subscribe(&mut subscriber, "fd/#", QoS::AtLeastOnce);
    // Stays connected and reads nothing: what it is sent stays in flight, the rest queues.
    let mut publisher =
        connect_ok(&broker, connect_packet(V5, &client_id_on_shard("fd-pub", 1)), false);
    let mut acknowledged = BTreeSet::new();
    let mut publish_all = |publisher: &mut RawClient, prefix: &str, ids: std::ops::Range<u16>| {
        let mut refused = 0;
        for id in ids {
            let name = format!("{prefix}-{id}");
            match publish_qos1(publisher, &name, id) {
                ReasonCode::SUCCESS => {
                    acknowledged.insert(name);
                }
                reason => {
                    assert_eq!(reason, CANNOT_STORE, "{name}");
                    refused += 1;
                }
            }
        }
        refused
    };
    assert_eq!(publish_all(&mut publisher, "before", 1..30), 0);
    disk.fill();
    assert!(publish_all(&mut publisher, "full", 1..30) > 0, "nothing refused on a full disk");
    disk.free();
    assert_eq!(publish_all(&mut publisher, "after", 1..30), 0);
    drop((publisher, subscriber));
    assert!(broker.stop().success(), "the broker exits cleanly:\n{}", broker.log());

    let broker = disk.broker(&[]);
    let mut subscriber = connect_ok(&broker, persistent_connect_packet(V5, &subscriber_id), true);
    let got: BTreeSet<String> = collect(&mut subscriber).into_iter().collect();
    let missing: Vec<&String> = acknowledged.difference(&got).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

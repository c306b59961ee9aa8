//! Durability across a power cut, on one node. `kill -9` (tests/crash.rs) leaves the kernel's
//! page cache in place, so a broker that forgot an fsync would pass it. Here the broker's data
//! directory is the power-cut filesystem (the `shardmq-powercut` crate): only what an fsync
//! made durable survives a cut, following a metadata rule at least as strict as ext4's.
//!
//! Persistent sessions subscribe at QoS 1 and QoS 2 and go offline; two publishers send QoS 1
//! and QoS 2 messages and record each acknowledgement (PUBACK 0x00, PUBREC 0x00: from then on
//! the broker owns the message); at a random moment the broker is killed with SIGKILL, then
//! the filesystem drops everything not fsynced (in that order: nothing can be written after
//! the drop); the broker restarts on what is left and the subscribers resume their sessions.
//! Every acknowledged message must arrive: at least once, and a QoS 2 message to the QoS 2
//! subscription exactly once. Variants: a cut that keeps a random part of the unsynced blocks,
//! and a filesystem on which only a directory's fsync makes a name durable.
//!
//! The negative controls run the same load with nothing made durable during it (a filesystem
//! whose fsync keeps nothing; the broker's `durability = "none"`) and require the loss to be
//! seen, so the main test cannot pass for want of looking.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use shardmq_io::codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq_powercut::{CutMode, CutReport, FsyncMode, NameRule, PowercutFs};
use shardmq_tests::{
    client_id_on_shard, connect_packet, disconnect, persistent_connect_packet, publish_packet,
    subscribe_granted, Broker, RawClient, Received, TestDir,
};

use ProtocolVersion::{V3_1_1, V5};

const TOPIC: &str = "powercut/stream";
/// PUBLISHes a publisher keeps unacknowledged (QoS 2: until PUBCOMP).
const WINDOW: usize = 32;
/// The most a publisher sends; the cut comes long before.
const MESSAGES_MAX: usize = 50_000;
/// The cut comes this long after the load started, plus a random part of [`CUT_SPREAD`].
const CUT_AFTER_MIN: Duration = Duration::from_millis(400);
const CUT_SPREAD: Duration = Duration::from_millis(1200);
/// How long an answer the broker should send at once may take.
const REPLY: Duration = Duration::from_secs(5);
/// A subscriber decides it has everything after this long without a message.
const IDLE: Duration = Duration::from_millis(1500);
/// The most a subscriber spends collecting.
const COLLECT: Duration = Duration::from_secs(30);

/// The subscriptions: client id prefix, protocol, granted QoS, home shard.
const SUBSCRIBERS: [(&str, ProtocolVersion, QoS, u16); 2] =
    [("pc-sub-q1", V5, QoS::AtLeastOnce, 1), ("pc-sub-q2", V3_1_1, QoS::ExactlyOnce, 0)];

/// What stands in for the durability under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    /// The real thing: the broker's default durability, a filesystem that keeps fsynced data.
    None,
    /// The filesystem's fsync keeps nothing from the start of the load (the sessions made
    /// before it are durable).
    LyingFsync,
    /// The broker runs with `durability = "none"`.
    BrokerDurabilityNone,
}

/// What one publisher saw: every message it sent, and those the broker acknowledged.
#[derive(Debug, Default)]
struct Published {
    sent: BTreeMap<String, QoS>,
    acknowledged: BTreeMap<String, QoS>,
    /// QoS 2 messages whose PUBCOMP arrived too.
    completed: usize,
    refused: Vec<(String, ReasonCode)>,
}

/// Publishes QoS 1 and 2 messages alternately (`<prefix><n>-q<qos>`) until the broker goes
/// away, counting acknowledgements in `acks` as they come.
fn publish_until_cut(
    addr: std::net::SocketAddr,
    id: &str,
    prefix: &str,
    acks: &AtomicUsize,
) -> Published {
    let (mut client, connack) = RawClient::connect(addr, connect_packet(V5, id));
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{id}: {connack:?}");
    let window = WINDOW.min(usize::from(connack.properties.receive_maximum.unwrap_or(u16::MAX)));
    let mut out = Published::default();
    // Packet id → (payload, QoS), until PUBACK or PUBCOMP.
    let mut outstanding: HashMap<u16, (String, QoS)> = HashMap::new();
    let mut next = 0usize;
    loop {
        while outstanding.len() < window && next < MESSAGES_MAX {
            let qos = if next % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
            let payload = format!("{prefix}{next:06}-q{}", qos as u8);
            let packet_id = u16::try_from(next % 65_535 + 1).expect("fits");
            let packet = publish_packet(TOPIC, payload.as_bytes(), qos, false, packet_id);
            if client.try_send(&packet).is_err() {
                return out;
            }
            out.sent.insert(payload.clone(), qos);
            outstanding.insert(packet_id, (payload, qos));
            next += 1;
        }
        let (packet_id, reason, completes) = match client.next(REPLY) {
            Received::Packet(Packet::PubAck(ack)) => (ack.packet_id.get(), ack.reason, true),
            Received::Packet(Packet::PubRec(rec)) => {
                // Released at once; if the broker is gone by now, the loop ends below.
                let _ = client.try_send(&Packet::PubRel(Ack::success(rec.packet_id)));
                (rec.packet_id.get(), rec.reason, false)
            }
            Received::Packet(Packet::PubComp(comp)) => {
                outstanding.remove(&comp.packet_id.get()).expect("PUBCOMP for a PUBREL");
                out.completed += 1;
                continue;
            }
            Received::Packet(other) => panic!("{id}: unexpected {other:?}"),
            Received::Closed => return out,
            Received::TimedOut => panic!("{id}: no acknowledgement within {REPLY:?}"),
        };
        let (payload, qos) = outstanding.get(&packet_id).cloned().expect("an ack for a PUBLISH");
        if reason.is_error() {
            out.refused.push((payload, reason));
            outstanding.remove(&packet_id);
            continue;
        }
        out.acknowledged.insert(payload, qos);
        acks.fetch_add(1, Ordering::Relaxed);
        if completes {
            outstanding.remove(&packet_id);
        }
    }
}

/// Reads PUBLISHes, acknowledging each as its QoS asks, until none comes for [`IDLE`]: the
/// payloads with how often each came.
fn collect(client: &mut RawClient, who: &str) -> HashMap<String, usize> {
    let deadline = Instant::now() + COLLECT;
    let mut got: HashMap<String, usize> = HashMap::new();
    loop {
        assert!(Instant::now() < deadline, "{who}: still receiving after {COLLECT:?}");
        match client.next(IDLE) {
            Received::Packet(Packet::Publish(publish)) => {
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => client.send(&Packet::PubAck(Ack::success(id))),
                    (QoS::ExactlyOnce, Some(id)) => client.send(&Packet::PubRec(Ack::success(id))),
                    _ => {}
                }
                let payload = String::from_utf8_lossy(&publish.payload).into_owned();
                *got.entry(payload).or_default() += 1;
            }
            Received::Packet(Packet::PubRel(rel)) => {
                client.send(&Packet::PubComp(Ack::success(rel.packet_id)))
            }
            Received::Packet(other) => panic!("{who}: unexpected {other:?}"),
            Received::Closed => panic!("{who}: the broker closed the connection"),
            Received::TimedOut => return got,
        }
    }
}

/// What one subscriber found after the restart.
#[derive(Debug)]
struct Found {
    who: String,
    session_present: bool,
    delivered: usize,
    /// Acknowledged messages that never came.
    missing: Vec<String>,
    /// QoS 2 messages that came more than once to a QoS 2 subscription.
    duplicated: Vec<String>,
    /// Payloads nobody sent.
    unknown: Vec<String>,
}

/// What one round saw.
#[derive(Debug, Default)]
struct Round {
    sent: usize,
    acknowledged: BTreeMap<String, QoS>,
    completed: usize,
    refused: usize,
    cut_after: Duration,
    cut: Option<CutReport>,
    found: Vec<Found>,
}

impl Round {
    fn summary(&self) -> String {
        let q1 = self.acknowledged.values().filter(|&&qos| qos == QoS::AtLeastOnce).count();
        let cut = self.cut.map_or("not cut".into(), |cut| {
            format!(
                "{:?} to unmount, drop and remount; {} fsyncs served; {} files dropped",
                cut.took, cut.fsyncs, cut.inodes_dropped
            )
        });
        let mut text = format!(
            "cut {:?} into the load ({cut}); sent {} (and a warm-up), acknowledged {} (QoS 1: \
             {q1}, QoS 2: {}; {} PUBCOMP), refused {}",
            self.cut_after,
            self.sent,
            self.acknowledged.len(),
            self.acknowledged.len() - q1,
            self.completed,
            self.refused
        );
        for found in &self.found {
            text += &format!(
                "\n  {}: session present {}, {} delivered, {} acknowledged missing, {} QoS 2 \
                 duplicated, {} unknown",
                found.who,
                found.session_present,
                found.delivered,
                found.missing.len(),
                found.duplicated.len(),
                found.unknown.len()
            );
        }
        text
    }
}

/// A seed from the clock, or from `POWERCUT_SEED` to replay a partial cut.
fn seed() -> u64 {
    std::env::var("POWERCUT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}

/// A pseudo-random delay in `[CUT_AFTER_MIN, CUT_AFTER_MIN + CUT_SPREAD)` from the clock, or
/// from `POWERCUT_CUT_MS` to replay one.
fn cut_delay() -> Duration {
    if let Some(ms) = std::env::var("POWERCUT_CUT_MS").ok().and_then(|v| v.parse().ok()) {
        return Duration::from_millis(ms);
    }
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    let spread = u64::try_from(CUT_SPREAD.as_millis()).expect("small");
    CUT_AFTER_MIN + Duration::from_millis(u64::from(nanos) % spread)
}

/// Publishes one QoS 1 message and waits for its PUBACK; returns its payload.
fn warm_up(addr: std::net::SocketAddr) -> String {
    const PAYLOAD: &str = "warm-up";
    let (mut client, connack) = RawClient::connect(addr, connect_packet(V5, "pc-warm-up"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "warm-up: {connack:?}");
    client.send(&publish_packet(TOPIC, PAYLOAD.as_bytes(), QoS::AtLeastOnce, false, 1));
    match client.expect_packet(REPLY) {
        Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "warm-up refused: {ack:?}"),
        other => panic!("warm-up: expected PUBACK, got {other:?}"),
    }
    disconnect(client);
    PAYLOAD.to_owned()
}

/// Starts the broker on the mounted data directory, with `durability = "none"` for that
/// control.
fn start_broker(data_dir: &Path, control: Control, scratch: &TestDir) -> Broker {
    // Offline sessions queue everything the load sends (the default keeps 1,000 per session
    // and drops the rest, which would read as loss here).
    let mut args = vec!["--shards", "2", "--log", "info", "--max-queued-messages", "1000000"];
    let config = scratch.path().join("shardmq.toml");
    if control == Control::BrokerDurabilityNone {
        std::fs::write(&config, "durability = \"none\"\n").expect("write the config");
        args.extend(["--config", config.to_str().expect("UTF-8")]);
    }
    Broker::start_in(data_dir, &args)
}

/// The persistent sessions of [`SUBSCRIBERS`]: client id, protocol, granted QoS.
fn subscribers() -> Vec<(String, ProtocolVersion, QoS)> {
    SUBSCRIBERS
        .iter()
        .map(|&(prefix, version, qos, shard)| (client_id_on_shard(prefix, shard), version, qos))
        .collect()
}

/// Creates the persistent sessions, subscribed, and leaves them offline.
fn make_sessions(broker: &Broker) {
    for (id, version, qos) in subscribers() {
        let (mut client, connack) =
            RawClient::connect(broker.addr(), persistent_connect_packet(version, &id));
        assert_eq!(connack.reason, ReasonCode::SUCCESS, "{id}: {connack:?}");
        subscribe_granted(&mut client, TOPIC, qos);
        disconnect(client);
    }
}

/// Runs the two publishers against `broker` and kills it after a random delay; then cuts the
/// power. Returns what the publishers sent and had acknowledged, in `round`, and all payloads
/// sent.
fn load_and_cut(
    broker: &mut Broker,
    fs: &mut PowercutFs,
    mode: CutMode,
    round: &mut Round,
) -> BTreeMap<String, QoS> {
    let acks = Arc::new(AtomicUsize::new(0));
    let addr = broker.addr();
    let publishers: Vec<_> = [("pc-pub-a", 0, "a"), ("pc-pub-b", 1, "b")]
        .into_iter()
        .map(|(prefix, shard, tag)| {
            let (id, acks) = (client_id_on_shard(prefix, shard), acks.clone());
            std::thread::spawn(move || publish_until_cut(addr, &id, tag, &acks))
        })
        .collect();
    // The random delay counts from the first acknowledgement, so the cut falls into the load
    // rather than into the publishers' connecting.
    let deadline = Instant::now() + REPLY;
    while acks.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no acknowledgement within {REPLY:?} of the load");
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    std::thread::sleep(cut_delay());
    // The cut: the broker dies first (SIGKILL, and its exit waited for), then what it had not
    // fsynced is dropped. The other way round, it could write after the drop.
    broker.kill();
    round.cut_after = started.elapsed();
    round.cut = Some(fs.cut(mode).expect("the cut"));
    let mut sent = round.acknowledged.clone();
    for publisher in publishers {
        let published = publisher.join().expect("a publisher panicked");
        round.sent += published.sent.len();
        round.completed += published.completed;
        round.refused += published.refused.len();
        sent.extend(published.sent);
        round.acknowledged.extend(published.acknowledged);
    }
    assert!(
        round.sent < 2 * MESSAGES_MAX,
        "the cut came after the whole load was sent; raise MESSAGES_MAX"
    );
    sent
}

/// One round: sessions, load, a cut (`mode`) at a random moment, restart, collection; the
/// filesystem makes names durable by `names`.
fn run_round(control: Control, mode: CutMode, names: NameRule) -> Round {
    let scratch = TestDir::new("powercut-scratch");
    let mountpoint = TestDir::new("powercut-mount");
    let mut fs = PowercutFs::mount(mountpoint.path())
        .unwrap_or_else(|error| panic!("the power-cut filesystem is needed: {error}"));
    fs.set_name_rule(names);
    let data_dir = mountpoint.path();
    let mut broker = start_broker(data_dir, control, &scratch);
    make_sessions(&broker);
    // CONNACK and SUBACK do not wait for the session to be durable (only PUBACK and PUBREC
    // wait for their commit), so one acknowledged message first: its commit follows the
    // sessions' and, once acknowledged, the sessions are on disk whatever comes next.
    let mut round = Round {
        acknowledged: BTreeMap::from([(warm_up(broker.addr()), QoS::AtLeastOnce)]),
        ..Round::default()
    };
    if control == Control::LyingFsync {
        fs.set_fsync_mode(FsyncMode::Lie);
    }
    let sent = load_and_cut(&mut broker, &mut fs, mode, &mut round);

    // After the power comes back: the same data directory, the same sessions.
    fs.set_fsync_mode(FsyncMode::Keep);
    let second = start_broker(data_dir, control, &scratch);
    for (id, version, qos) in subscribers() {
        let who = format!("{id} ({version:?}, QoS {})", qos as u8);
        let (mut client, connack) =
            RawClient::connect(second.addr(), persistent_connect_packet(version, &id));
        assert_eq!(connack.reason, ReasonCode::SUCCESS, "{who}: {connack:?}");
        let got = collect(&mut client, &who);
        let found = check(&who, connack.session_present, qos, &got, &round.acknowledged, &sent);
        round.found.push(found);
        disconnect(client);
    }
    drop(second);
    drop(fs);
    round
}

/// Compares what one subscriber got with what was acknowledged and sent.
fn check(
    who: &str,
    session_present: bool,
    granted: QoS,
    got: &HashMap<String, usize>,
    acknowledged: &BTreeMap<String, QoS>,
    sent: &BTreeMap<String, QoS>,
) -> Found {
    let missing = acknowledged.keys().filter(|p| !got.contains_key(*p)).cloned().collect();
    let duplicated = got
        .iter()
        .filter(|(payload, &count)| {
            count > 1
                && granted == QoS::ExactlyOnce
                && sent.get(*payload) == Some(&QoS::ExactlyOnce)
        })
        .map(|(payload, _)| payload.clone())
        .collect();
    let unknown = got.keys().filter(|p| !sent.contains_key(*p)).cloned().collect();
    Found {
        who: who.to_owned(),
        session_present,
        delivered: got.values().sum(),
        missing,
        duplicated,
        unknown,
    }
}

/// Every acknowledged message is there after the round, once, and each session was kept.
fn assert_nothing_lost(round: &Round) {
    assert!(
        round.acknowledged.len() >= 20,
        "too few messages were acknowledged before the cut to show anything: {}",
        round.summary()
    );
    assert_eq!(round.refused, 0, "the broker refused messages: {}", round.summary());
    for found in &round.found {
        assert!(found.session_present, "{}: the session was lost: {}", found.who, round.summary());
        let first = |list: &[String]| list.iter().take(20).cloned().collect::<Vec<_>>();
        assert!(
            found.missing.is_empty() && found.duplicated.is_empty() && found.unknown.is_empty(),
            "{}: missing (first 20) {:?}, duplicated {:?}, unknown {:?}\n{}",
            found.who,
            first(&found.missing),
            first(&found.duplicated),
            first(&found.unknown),
            round.summary()
        );
    }
}

#[test]
fn acknowledged_qos1_and_qos2_messages_survive_a_power_cut() {
    let round = run_round(Control::None, CutMode::DropAll, NameRule::DirectoryOrFile);
    eprintln!("power cut: {}", round.summary());
    assert_nothing_lost(&round);
}

/// The same under a strict reading of POSIX: a file's fsync keeps its data but not its name,
/// only the directory's fsync does (the broker syncs the data directory after creating its
/// shard files).
#[test]
fn acknowledged_messages_survive_a_power_cut_when_only_a_directory_fsync_keeps_a_name() {
    let round = run_round(Control::None, CutMode::DropAll, NameRule::DirectoryOnly);
    eprintln!("power cut, names durable with their directory only: {}", round.summary());
    assert_nothing_lost(&round);
}

/// A disk may have written back part of the page cache on its own before the power went: the
/// cut keeps a random half of the unsynced blocks, so redb recovers from a file that is
/// neither its last commit nor the one in progress.
#[test]
fn acknowledged_messages_survive_a_power_cut_that_kept_part_of_the_page_cache() {
    let seed = seed();
    let round = run_round(Control::None, CutMode::KeepSome { seed }, NameRule::DirectoryOrFile);
    eprintln!(
        "power cut keeping part of the page cache (POWERCUT_SEED={seed}): {}",
        round.summary()
    );
    assert_nothing_lost(&round);
}

/// The negative controls: with nothing made durable during the load, the same check must see
/// acknowledged messages missing.
#[test]
fn the_power_cut_test_sees_the_loss_when_nothing_is_made_durable() {
    for control in [Control::LyingFsync, Control::BrokerDurabilityNone] {
        let round = run_round(control, CutMode::DropAll, NameRule::DirectoryOrFile);
        eprintln!("power cut, control {control:?}: {}", round.summary());
        assert!(
            round.acknowledged.len() >= 20,
            "{control:?}: too few acknowledged: {}",
            round.summary()
        );
        for found in &round.found {
            assert!(
                !found.missing.is_empty(),
                "{control:?}, {}: no acknowledged message is missing, so the power-cut test \
                 cannot see a loss:\n{}",
                found.who,
                round.summary()
            );
        }
    }
}

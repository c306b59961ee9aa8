//! A power cut after a shard-count change (see tests/power_cut.rs for the power-cut
//! filesystem). A restart with fewer shards moves the sessions of the shards that no longer
//! exist into the remaining files and then deletes the old files. If that deletion is not
//! durable, a cut brings an old file back, and the next start reads it again: a session deleted
//! since would come back from it, with messages its client had discarded.
//!
//! Found by this test: the broker never synced the data directory, and under the power-cut
//! filesystem's rule (an entry is durable once its directory or its own file is fsynced; the
//! removed file is never synced again) the deleted session came back with its 5 discarded
//! messages. ext4 and XFS would have committed the removal with the next fsync of any file;
//! POSIX asks for the directory's own fsync, which the broker now does
//! (`shardmq_storage::sync_data_dir`).

use std::path::Path;
use std::time::Duration;

use shardmq_io::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq_powercut::{CutMode, PowercutFs};
use shardmq_tests::{
    connect_packet, disconnect, persistent_connect_packet, publish_packet, receive_publish,
    subscribe_granted, Broker, RawClient, TestDir,
};

const REPLY: Duration = Duration::from_secs(5);

/// A client id with the given prefix whose session lives on `shard` of a `shards`-shard node.
fn client_on(prefix: &str, shard: u16, shards: u16) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shardmq_shard::home_shard(id, shards).0 == shard)
        .expect("some id lands on every shard")
}

fn start(data_dir: &Path, shards: &str) -> Broker {
    Broker::start_in(data_dir, &["--shards", shards, "--log", "info"])
}

/// Publishes `count` QoS 1 messages on `topic` and waits for each PUBACK.
fn publish_acknowledged(broker: &Broker, topic: &str, count: u16) {
    let (mut client, connack) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "rehome-pub"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    for id in 1..=count {
        client.send(&publish_packet(
            topic,
            format!("m{id}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            id,
        ));
        match client.expect_packet(REPLY) {
            Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "refused: {ack:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    disconnect(client);
}

#[test]
fn a_session_deleted_after_a_shard_count_change_stays_deleted_across_a_power_cut() {
    let mountpoint = TestDir::new("powercut-rehome");
    let mut fs = PowercutFs::mount(mountpoint.path())
        .unwrap_or_else(|error| panic!("the power-cut filesystem is needed: {error}"));
    let data_dir = mountpoint.path();
    // The session lives on shard 2 of 3, so it moves when the node restarts with 2 shards.
    let client = client_on("rehome-sub", 2, 3);
    let home = shardmq_shard::home_shard(&client, 2).0;
    // A second session on the same shard afterwards, whose acknowledged message orders a
    // commit after the deletion.
    let anchor = client_on("rehome-anchor", home, 2);
    let mut three = start(data_dir, "3");
    for (id, topic) in [(&client, "rehome/old"), (&anchor, "rehome/anchor")] {
        let (mut session, connack) =
            RawClient::connect(three.addr(), persistent_connect_packet(ProtocolVersion::V5, id));
        assert_eq!(connack.reason, ReasonCode::SUCCESS);
        subscribe_granted(&mut session, topic, QoS::AtLeastOnce);
        disconnect(session);
    }
    publish_acknowledged(&three, "rehome/old", 5);
    three.stop();

    let mut two = start(data_dir, "2");
    assert!(
        two.wait_for_log("removed", REPLY).is_some(),
        "the old shard file was not removed:\n{}",
        two.log()
    );
    // The client starts clean with no session expiry: its session and queued messages go.
    let (fresh, connack) =
        RawClient::connect(two.addr(), connect_packet(ProtocolVersion::V5, &client));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    assert!(!connack.session_present);
    disconnect(fresh);
    std::thread::sleep(Duration::from_millis(200));
    publish_acknowledged(&two, "rehome/anchor", 1);

    two.kill();
    let cut = fs.cut(CutMode::DropAll).expect("the cut");
    let after = start(data_dir, "2");
    let names: Vec<String> = std::fs::read_dir(data_dir)
        .expect("list the data directory")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    let (mut resumed, connack) =
        RawClient::connect(after.addr(), persistent_connect_packet(ProtocolVersion::V5, &client));
    assert_eq!(connack.reason, ReasonCode::SUCCESS);
    // What a resurrected session would deliver: the messages discarded by the clean start.
    let mut stale = 0;
    while receive_publish(&mut resumed, Duration::from_millis(500)).is_some() {
        stale += 1;
    }
    eprintln!(
        "after the cut ({cut:?}): files {names:?}; {client}: session present {}, {stale} \
         messages delivered",
        connack.session_present
    );
    assert!(
        !connack.session_present && stale == 0,
        "{client}: the session deleted before the cut is back with {stale} of its discarded \
         messages (files after the cut: {names:?}): the removal of the old shard file was not \
         durable"
    );
    disconnect(resumed);
}

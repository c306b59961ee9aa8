//! Every released storage format opens in this build: the fixture of each one
//! (`tests/fixtures/format<N>/`, see its README) is migrated on open and loads with exactly the
//! contents it was written with (`docs/storage-format.md`, "Versions and migration").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardmq_codec::{ByteString, Properties, QoS, RetainHandling, SubscriptionOptions};
use shardmq_shard::persist::{
    decode_snapshot, MessageRecord, MessageStage, Restored, SessionRecord, WallClock,
    SESSION_RECORD_VERSION, UPGRADES,
};
use shardmq_shard::session::Subscription;
use shardmq_shard::{Delivery, Message};
use shardmq_storage::{shard_file, Durability, ShardStore};

/// The wall-clock time the fixtures' clock started at.
const BASE_UNIX_MS: u64 = 1_700_000_000_000;

/// A copy of fixture `name` in a fresh directory: the tests migrate it, never the original.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(shard_file(&fixture, 0), shard_file(dir.path(), 0)).unwrap();
    let path = shard_file(dir.path(), 0);
    (dir, path)
}

fn message(topic: &str, payload: &'static [u8], retain: bool) -> Message {
    Message {
        topic: ByteString::from(topic),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Properties {
            content_type: Some(ByteString::from("text/plain")),
            ..Properties::default()
        },
        expires_at: None,
        publisher: ByteString::from("fixture-publisher"),
    }
}

/// What `tests/fixtures/format1/README.md` says the format 1 fixture holds.
fn format1_contents(base: Instant) -> Restored {
    let client_id = ByteString::from("fixture-client");
    let subscription = Subscription {
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        },
        identifier: Some(7),
    };
    let session = SessionRecord {
        expiry_secs: u32::MAX,
        disconnected_at_unix_ms: BASE_UNIX_MS + 500,
        // Format 1 did not keep it.
        username: None,
        subscriptions: vec![(ByteString::from("fixture/#"), subscription)],
    };
    let queued = MessageRecord {
        stage: MessageStage::Queued,
        packet_id: 0,
        delivery: Delivery {
            message: Arc::new(message("fixture/queued", b"queued", false)),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![7],
            seq: 0,
        },
    };
    Restored {
        sessions: vec![(client_id.clone(), session)],
        messages: vec![(client_id.clone(), 1, queued)],
        incoming_qos2: vec![],
        retained: vec![Arc::new(message("fixture/retained", b"retained", true))],
        wills: vec![(
            client_id,
            Arc::new(message("fixture/will", b"gone", false)),
            base + Duration::from_secs(60),
        )],
        // Format 1 files predate the `retained_marks` table: read as none.
        retained_marks: vec![],
    }
}

fn check_contents(store: &ShardStore, expected: &Restored, clock: &WallClock) {
    let snapshot = store.load().unwrap();
    for session in &snapshot.sessions {
        assert_eq!(session.record[0], SESSION_RECORD_VERSION, "{}", session.client_id);
    }
    let restored = decode_snapshot(snapshot, clock).unwrap();
    assert_eq!(restored.sessions, expected.sessions);
    assert_eq!(restored.messages, expected.messages);
    assert_eq!(restored.incoming_qos2, expected.incoming_qos2);
    assert_eq!(restored.retained, expected.retained);
    assert_eq!(restored.wills, expected.wills);
    assert_eq!(restored.retained_marks, expected.retained_marks);
}

#[test]
fn the_format_1_fixture_is_migrated_on_open_with_its_contents_whole() {
    let (_dir, path) = copy_fixture("format1");
    let base = Instant::now();
    let clock = WallClock::fixed(base, BASE_UNIX_MS);
    let expected = format1_contents(base);

    let store = ShardStore::open(&path, Durability::Immediate, UPGRADES).unwrap();
    assert_eq!(store.migrated_from(), Some(1));
    check_contents(&store, &expected, &clock);
    drop(store);

    // Reopened, the file is of the current format: it opens without any upgrade, unchanged.
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    assert_eq!(store.migrated_from(), None);
    check_contents(&store, &expected, &clock);
}

#[test]
fn without_its_upgrades_the_format_1_fixture_is_refused_unchanged() {
    let (_dir, path) = copy_fixture("format1");
    let error = ShardStore::open(&path, Durability::Immediate, &[]).unwrap_err();
    assert!(
        error.to_string().contains("has storage format 1, but this build reads format 2"),
        "{error}"
    );
    let store = ShardStore::open(&path, Durability::Immediate, UPGRADES).unwrap();
    assert_eq!(store.migrated_from(), Some(1));
}

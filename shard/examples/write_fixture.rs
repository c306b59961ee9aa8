//! Writes a small shard file in the storage format of this build, for the fixtures the format
//! tests open (`docs/storage-format.md`: keep a fixture of every released format).
//!
//! `cargo run -p shardmq-shard --example write_fixture -- <dir>` writes `<dir>/shard-0.redb`
//! holding one persistent session (of the user `fixture-user`, since format 2) with a subscription, a queued QoS 1 message, a retained
//! message and a will, all through the same encoders the broker uses. Every time in it is a
//! fixed wall-clock time, so that two runs describe the same contents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardmq_codec::{ByteString, Properties, QoS, RetainHandling, SubscriptionOptions};
use shardmq_shard::persist::{
    encode_message_record, encode_session, encode_stored_message, encode_will, MessageRecord,
    MessageStage, SessionRecord, WallClock, UPGRADES,
};
use shardmq_shard::session::Subscription;
use shardmq_shard::{Delivery, Message};
use shardmq_storage::{shard_file, Durability, Op, ShardStore};

/// The wall-clock time the fixture's clock starts at (2023-11-14T22:13:20Z).
const BASE_UNIX_MS: u64 = 1_700_000_000_000;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: write_fixture <dir>")?;
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let path = shard_file(&dir, 0);
    if path.exists() {
        return Err(format!("{} exists already", path.display()).into());
    }
    let base = Instant::now();
    let clock = WallClock::fixed(base, BASE_UNIX_MS);
    let client_id = "fixture-client".to_owned();

    let session = SessionRecord {
        expiry_secs: u32::MAX,
        disconnected_at_unix_ms: BASE_UNIX_MS + 500,
        username: Some(ByteString::from("fixture-user")),
        subscriptions: vec![(
            ByteString::from("fixture/#"),
            Subscription {
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendAtSubscribe,
                },
                identifier: Some(7),
            },
        )],
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
    let retained = message("fixture/retained", b"retained", true);
    let will = message("fixture/will", b"gone", false);
    let will_due = base + Duration::from_secs(60);

    let store = ShardStore::open(&path, Durability::Immediate, UPGRADES)?;
    store.commit(&[
        Op::PutSession { client_id: client_id.clone(), record: encode_session(&session) },
        Op::PutMessage {
            client_id: client_id.clone(),
            seq: 1,
            record: encode_message_record(&queued, &clock),
        },
        Op::PutRetained {
            topic: retained.topic.to_string(),
            record: encode_stored_message(&retained, &clock),
        },
        Op::PutWill { client_id, record: encode_will(&will, will_due, &clock) },
    ])?;
    println!("wrote {}", path.display());
    Ok(())
}

//! The retained catch-up between two real shards of two nodes, through
//! `shardmq_node::retained` and the link codec: digest, versions of the buckets that differ,
//! pushes of what the peer lacks; and the answers to fetches.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq_cluster::frame::{self, Body, Encoder, RetainedDigest, RetainedFetch};
use shardmq_codec::{ByteString, Connect, Packet, Properties, ProtocolVersion, Publish, QoS};
use shardmq_node::retained::{
    answer_fetch, fetched_message, listed_versions, split_digest, versions_frames, RetainedOut,
    DIGEST_INTERVAL,
};
use shardmq_shard::persist::WallClock;
use shardmq_shard::{ConnId, Limits, PeerNode, RetainedClock, Shard, ShardId};

const UNIX_MS: u64 = 1_800_000_000_000;

fn shard(now: Instant, tag: u64) -> Shard {
    let mut shard = Shard::new(ShardId(0), 1, Limits::default());
    let clock = WallClock::fixed(now, UNIX_MS);
    shard.enable_retained_versions(clock, tag, RetainedClock::new());
    shard
}

/// A client publishes a retained message on `topic` to `shard`.
fn retain(shard: &mut Shard, topic: &str, payload: &str, now: Instant) {
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive_secs: 0,
        client_id: ByteString::from("writer"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    shard.connect(ConnId(1), connect, now);
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: ByteString::from(topic),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from(payload.to_string()),
    };
    shard.packet(ConnId(1), Packet::Publish(publish), now);
    shard.connection_lost(ConnId(1), now);
    let mut effects = Vec::new();
    shard.drain_effects(&mut effects);
}

/// What `sync` queued on the link, decoded as the peer reads it.
fn sync(out_state: &mut RetainedOut, shard: &Shard, now: Instant) -> Vec<Body> {
    let clock = WallClock::fixed(now, UNIX_MS);
    let mut out = BytesMut::new();
    let mut encoder = Encoder::new();
    out_state.sync(shard, PeerNode(2), Some(1), &clock, |_| None, &mut encoder, &mut out, now);
    let mut bodies = Vec::new();
    while let Some(body) = frame::decode(&mut out).expect("frames") {
        bodies.push(body);
    }
    bodies
}

#[test]
fn a_peer_that_missed_a_retained_write_gets_it_pushed_after_the_digest_exchange() {
    let now = Instant::now();
    let mut a = shard(now, 1);
    let b = shard(now, 2);
    retain(&mut a, "r/1", "hello", now);
    let mut a_out = RetainedOut::default();
    let bodies = sync(&mut a_out, &a, now);
    let [Body::RetainedDigest(digest)] = &bodies[..] else { panic!("{bodies:?}") };
    assert!(digest.ask_back, "a connection's first digest asks the peer for its own");
    assert!(
        sync(&mut a_out, &a, now + DIGEST_INTERVAL / 2).is_empty(),
        "not again before the interval"
    );
    // b compares: its marks differ in the bucket of r/1, so it lists its (empty) versions of it.
    let parts = split_digest(digest, 1).expect("cut for one shard");
    assert_eq!(parts.len(), 1);
    let frames = versions_frames(&b, 1, ShardId(0), &parts[0].1);
    assert_eq!(frames.len(), 1);
    let (buckets, entries) = listed_versions(frames[0].clone()).expect("pairs up");
    assert!(entries.is_empty() && buckets.len() == 1);
    // a pushes what b lacks.
    let push = a.retained_to_push(1, ShardId(0), &buckets, &entries);
    assert_eq!(push, vec![ByteString::from("r/1")]);
    a_out.push(push);
    assert!(a_out.has_pushes());
    let bodies = sync(&mut a_out, &a, now + Duration::from_millis(1));
    let [Body::Publish(publish)] = &bodies[..] else { panic!("{bodies:?}") };
    assert!(!publish.deliver && publish.retained_version != 0);
    assert!(!a_out.has_pushes());
    // The next connection starts afresh with a digest that asks back.
    a_out.restart();
    let bodies = sync(&mut a_out, &a, now + Duration::from_millis(2));
    assert!(matches!(&bodies[..], [Body::RetainedDigest(d)] if d.ask_back));
}

#[test]
fn a_digest_cut_for_another_shard_count_is_ignored_and_a_bad_version_list_refused() {
    let digest =
        RetainedDigest { shards: 2, buckets: 64, digests: Some(vec![0; 128]), ask_back: false };
    assert!(split_digest(&digest, 1).is_none());
    let short =
        RetainedDigest { shards: 1, buckets: 64, digests: Some(vec![0; 3]), ask_back: false };
    assert!(split_digest(&short, 1).is_none());
    let unpaired = shardmq_cluster::frame::RetainedVersions {
        shard: 0,
        buckets: Some(vec![1]),
        topics: Some(vec!["a".into(), "b".into()]),
        versions: Some(vec![1]),
    };
    assert!(listed_versions(unpaired).is_none());
}

#[test]
fn a_fetch_is_answered_with_the_message_and_its_version_or_nothing() {
    let now = Instant::now();
    let clock = WallClock::fixed(now, UNIX_MS);
    let mut a = shard(now, 1);
    retain(&mut a, "big/1", "payload", now);
    let fetch = RetainedFetch { topic: "big/1".into(), request: 5, reply_shard: 3 };
    let fetched = answer_fetch(&a, &fetch, &clock, now);
    assert_eq!((fetched.request, fetched.shard), (5, 3));
    let (message, version) = fetched_message(fetched, &clock).expect("decodes").expect("found");
    assert_eq!(&message.payload[..], b"payload");
    assert_eq!(version, a.retained_mark_version("big/1"));
    let missing = RetainedFetch { topic: "big/2".into(), request: 6, reply_shard: 0 };
    assert!(fetched_message(answer_fetch(&a, &missing, &clock, now), &clock)
        .expect("ok")
        .is_none());
}

//! The byte encodings of what a shard stores (sessions, queued and in-flight messages, retained
//! messages, delayed wills), and the wall clock that makes stored deadlines survive a restart.
//!
//! The storage crate keeps these records as opaque values (`docs/storage-format.md` lists the
//! tables); this module owns their layout. Every record starts with the version of its layout
//! ([`SESSION_RECORD_VERSION`], or [`RECORD_VERSION`] for the others); a change to a layout bumps
//! its version together with the store's format version, and adds an [`Upgrade`] to
//! [`UPGRADES`] if files of the old format are to be migrated rather than refused.
//!
//! Decoding never panics on a damaged record: it returns [`RecordError`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use shardmq_codec::{
    ByteString, Properties, PropertyContext, QoS, RetainHandling, SubscriptionOptions,
};

use shardmq_storage::{Snapshot, Upgrade};

use crate::message::{Delivery, Message, SharedMessage};
use crate::session::Subscription;

/// The layout version written first in message, retained and will records (unchanged since
/// storage format 1).
pub const RECORD_VERSION: u8 = 1;

/// The layout version written first in session records: 2 since storage format 2, which added
/// the user name. [`decode_session`] also reads version 1.
pub const SESSION_RECORD_VERSION: u8 = 2;

/// How `ShardStore::open` migrates a file of an older storage format: format 1 to 2 rewrites
/// every session record as version 2, with no user name (format 1 did not keep it). The other
/// records kept their layout and version, so they stay as they are.
pub const UPGRADES: &[Upgrade] = &[Upgrade { from: 1, sessions: upgrade_session_record }];

/// A session record of any version [`decode_session`] reads, re-encoded in the current one.
fn upgrade_session_record(record: &[u8]) -> Result<Vec<u8>, String> {
    decode_session(record)
        .map(|session| encode_session(&session))
        .map_err(|error| error.to_string())
}

/// A record that cannot be decoded: the store is damaged or was written by another version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged {what} record: {why}")]
pub struct RecordError {
    pub what: &'static str,
    pub why: &'static str,
}

/// Maps the monotonic clock the state machine runs on to wall-clock milliseconds, so deadlines
/// (session expiry, will delay, message expiry) are stored as absolute times and keep counting
/// while the broker is down.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base: Instant,
    base_unix_ms: u64,
}

impl WallClock {
    /// Pairs `base` with the current wall-clock time.
    pub fn new(base: Instant) -> WallClock {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        WallClock { base, base_unix_ms }
    }

    /// A clock with a fixed pairing, for tests.
    pub fn fixed(base: Instant, base_unix_ms: u64) -> WallClock {
        WallClock { base, base_unix_ms }
    }

    pub fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.base) {
            Some(after) => self.base_unix_ms.saturating_add(after.as_millis() as u64),
            None => {
                self.base_unix_ms.saturating_sub(self.base.duration_since(at).as_millis() as u64)
            }
        }
    }

    /// The instant of a stored wall-clock time; times before `base` come back as `base` (they
    /// are already due).
    pub fn instant(&self, unix_ms: u64) -> Instant {
        self.base + Duration::from_millis(unix_ms.saturating_sub(self.base_unix_ms))
    }
}

/// Everything a shard restores at start-up, decoded.
#[derive(Debug, Default)]
pub struct Restored {
    pub sessions: Vec<(ByteString, SessionRecord)>,
    /// Per client, in seq order.
    pub messages: Vec<(ByteString, u64, MessageRecord)>,
    pub incoming_qos2: Vec<(ByteString, u16)>,
    pub retained: Vec<SharedMessage>,
    pub wills: Vec<(ByteString, SharedMessage, Instant)>,
    /// The version of each retained topic's last write in a cluster (see `state::retained_sync`).
    pub retained_marks: Vec<(ByteString, RetainedMark)>,
}

/// The version of a retained topic's last write, and whether that write deleted it (a
/// tombstone, kept so that a node that missed the deletion learns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedMark {
    pub version: u64,
    pub deleted: bool,
}

/// A retained topic's mark (table `retained_marks`): the layout version, the version, 1 if
/// deleted.
pub fn encode_retained_mark(mark: RetainedMark) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_u8(RECORD_VERSION);
    buf.put_u64(mark.version);
    buf.put_u8(u8::from(mark.deleted));
    buf.to_vec()
}

pub fn decode_retained_mark(bytes: &[u8]) -> Result<RetainedMark, RecordError> {
    let mut fields = Fields::new(bytes, "retained mark")?;
    let version = fields.u64()?;
    let deleted = fields.u8()? != 0;
    fields.end()?;
    Ok(RetainedMark { version, deleted })
}

/// Decodes a store snapshot.
pub fn decode_snapshot(snapshot: Snapshot, clock: &WallClock) -> Result<Restored, RecordError> {
    let mut restored = Restored::default();
    for session in snapshot.sessions {
        let client_id = ByteString::from(session.client_id);
        for (seq, record) in &session.messages {
            restored.messages.push((
                client_id.clone(),
                *seq,
                decode_message_record(record, clock)?,
            ));
        }
        for packet_id in session.incoming_qos2 {
            restored.incoming_qos2.push((client_id.clone(), packet_id));
        }
        restored.sessions.push((client_id, decode_session(&session.record)?));
    }
    for (_, record) in snapshot.retained {
        restored.retained.push(Arc::new(decode_stored_message(&record, clock)?));
    }
    for (client_id, record) in snapshot.wills {
        let (message, due) = decode_will(&record, clock)?;
        restored.wills.push((ByteString::from(client_id), Arc::new(message), due));
    }
    for (topic, record) in snapshot.retained_marks {
        restored.retained_marks.push((ByteString::from(topic), decode_retained_mark(&record)?));
    }
    Ok(restored)
}

/// What one shard restores at start-up when the stores are read back.
#[derive(Debug, Default)]
pub struct ShardPlan {
    /// Found in this shard's own file.
    pub own: Restored,
    /// Found in another shard's file, homed here now (the shard count changed): to be written
    /// to this shard's file.
    pub moved: Restored,
    /// In this shard's file but homed elsewhere now: to be deleted from it.
    pub forget_sessions: Vec<ByteString>,
    /// Retained topics (messages and marks) in this shard's file but homed elsewhere now.
    pub forget_retained: Vec<ByteString>,
}

/// Where everything stored goes when the node starts with `shards` shards.
#[derive(Debug, Default)]
pub struct RehomePlan {
    /// Indexed by shard.
    pub shards: Vec<ShardPlan>,
    /// Files of shards that no longer exist; delete them once every shard committed its moved
    /// data.
    pub obsolete_files: Vec<u16>,
}

/// Sorts the contents of every shard file (`(file index, contents)`) into per-shard plans for a
/// node of `shards` shards: each session goes to `hash(client_id) mod shards` with its messages
/// and will, each retained message to `hash(topic) mod shards`. A session found in two files (a
/// restart that stopped halfway through an earlier move) is taken once, from its home file if
/// that has it.
pub fn rehome(files: Vec<(u16, Restored)>, shards: u16) -> RehomePlan {
    use std::collections::HashMap;

    use crate::ids::{home_shard, retained_shard};

    let mut plan = RehomePlan {
        shards: (0..shards).map(|_| ShardPlan::default()).collect(),
        obsolete_files: files.iter().map(|(i, _)| *i).filter(|&i| i >= shards).collect(),
    };
    // Which file's copy of each session and retained topic is used.
    let mut chosen: HashMap<ByteString, u16> = HashMap::new();
    let mut chosen_topic: HashMap<ByteString, u16> = HashMap::new();
    for (index, restored) in &files {
        for (client_id, _) in &restored.sessions {
            let home = home_shard(client_id, shards).0;
            let entry = chosen.entry(client_id.clone()).or_insert(*index);
            if *index == home {
                *entry = home;
            }
        }
        for message in &restored.retained {
            let home = retained_shard(&message.topic, shards).0;
            let entry = chosen_topic.entry(message.topic.clone()).or_insert(*index);
            if *index == home {
                *entry = home;
            }
        }
    }
    // Which file's mark of each retained topic is used: the newest.
    let mut newest_mark: HashMap<ByteString, (u16, u64)> = HashMap::new();
    for (index, restored) in &files {
        for (topic, mark) in &restored.retained_marks {
            let best = newest_mark.entry(topic.clone()).or_insert((*index, mark.version));
            if mark.version > best.1 {
                *best = (*index, mark.version);
            }
        }
    }
    // Where a record found in file `index` and homed on `home` goes.
    fn slot(plan: &mut RehomePlan, home: u16, index: u16) -> &mut Restored {
        let shard = &mut plan.shards[usize::from(home)];
        if home == index {
            &mut shard.own
        } else {
            &mut shard.moved
        }
    }
    for (index, restored) in files {
        let from_here = |client_id: &ByteString| chosen.get(client_id) == Some(&index);
        for (client_id, record) in restored.sessions {
            let home = home_shard(&client_id, shards).0;
            if index < shards && home != index {
                plan.shards[usize::from(index)].forget_sessions.push(client_id.clone());
            }
            if from_here(&client_id) {
                slot(&mut plan, home, index).sessions.push((client_id, record));
            }
        }
        for (client_id, seq, record) in restored.messages {
            if from_here(&client_id) {
                let home = home_shard(&client_id, shards).0;
                slot(&mut plan, home, index).messages.push((client_id, seq, record));
            }
        }
        for (client_id, packet_id) in restored.incoming_qos2 {
            if from_here(&client_id) {
                let home = home_shard(&client_id, shards).0;
                slot(&mut plan, home, index).incoming_qos2.push((client_id, packet_id));
            }
        }
        for (client_id, message, due) in restored.wills {
            if from_here(&client_id) {
                let home = home_shard(&client_id, shards).0;
                slot(&mut plan, home, index).wills.push((client_id, message, due));
            }
        }
        for message in restored.retained {
            let home = retained_shard(&message.topic, shards).0;
            if index < shards && home != index {
                plan.shards[usize::from(index)].forget_retained.push(message.topic.clone());
            }
            if chosen_topic.get(&message.topic) == Some(&index) {
                slot(&mut plan, home, index).retained.push(message);
            }
        }
        // A topic's newest mark is kept (a move cut short can leave an older one elsewhere).
        for (topic, mark) in restored.retained_marks {
            let home = retained_shard(&topic, shards).0;
            if index < shards && home != index {
                plan.shards[usize::from(index)].forget_retained.push(topic.clone());
            }
            if newest_mark.get(&topic) == Some(&(index, mark.version)) {
                slot(&mut plan, home, index).retained_marks.push((topic, mark));
            }
        }
    }
    plan
}

/// A stored session: what is needed to rebuild it, apart from its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub expiry_secs: u32,
    /// When it lost its connection (wall clock, ms); 0 while connected.
    pub disconnected_at_unix_ms: u64,
    /// The user name of its latest CONNECT, kept while an ACL is in force (the ACL checks the
    /// deliveries to the session against it, also while it is offline). `None` in a record of
    /// version 1.
    pub username: Option<ByteString>,
    /// Subscriptions by the filter as the client wrote it.
    pub subscriptions: Vec<(ByteString, Subscription)>,
}

/// Where a stored outbound message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStage {
    /// Waiting in the queue; no packet identifier yet.
    Queued,
    /// PUBLISH sent under `packet_id`; waiting for PUBACK or PUBREC.
    Published,
    /// PUBREL sent under `packet_id`; waiting for PUBCOMP.
    Released,
}

/// A stored outbound message of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub stage: MessageStage,
    /// 0 while queued.
    pub packet_id: u16,
    pub delivery: Delivery,
}

fn put_str(buf: &mut BytesMut, text: &str) {
    // Topics, filters and client ids are at most 65,535 bytes: the codec enforces it.
    buf.put_u16(text.len().min(usize::from(u16::MAX)) as u16);
    buf.put_slice(&text.as_bytes()[..text.len().min(usize::from(u16::MAX))]);
}

/// A checked reader over a record.
struct Fields {
    bytes: Bytes,
    what: &'static str,
}

impl Fields {
    /// A reader after the version byte, which must be [`RECORD_VERSION`].
    fn new(bytes: &[u8], what: &'static str) -> Result<Fields, RecordError> {
        let (fields, version) = Fields::versioned(bytes, what)?;
        if version != RECORD_VERSION {
            return Err(fields.error("written by another record version"));
        }
        Ok(fields)
    }

    /// A reader after the version byte, and that version.
    fn versioned(bytes: &[u8], what: &'static str) -> Result<(Fields, u8), RecordError> {
        let mut fields = Fields { bytes: Bytes::copy_from_slice(bytes), what };
        let version = fields.u8()?;
        Ok((fields, version))
    }

    fn error(&self, why: &'static str) -> RecordError {
        RecordError { what: self.what, why }
    }

    fn need(&self, len: usize) -> Result<(), RecordError> {
        if self.bytes.remaining() < len {
            return Err(self.error("truncated"));
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        self.need(1)?;
        Ok(self.bytes.get_u8())
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        self.need(2)?;
        Ok(self.bytes.get_u16())
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        self.need(4)?;
        Ok(self.bytes.get_u32())
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        self.need(8)?;
        Ok(self.bytes.get_u64())
    }

    fn take(&mut self, len: usize) -> Result<Bytes, RecordError> {
        self.need(len)?;
        Ok(self.bytes.split_to(len))
    }

    fn string(&mut self) -> Result<ByteString, RecordError> {
        let len = usize::from(self.u16()?);
        let raw = self.take(len)?;
        ByteString::try_from(raw).map_err(|_| self.error("invalid UTF-8"))
    }

    fn qos(&mut self) -> Result<QoS, RecordError> {
        QoS::from_bits(self.u8()?).ok_or_else(|| self.error("invalid QoS"))
    }

    fn end(&self) -> Result<(), RecordError> {
        if self.bytes.has_remaining() {
            return Err(self.error("unexpected bytes at the end"));
        }
        Ok(())
    }
}

fn options_byte(options: SubscriptionOptions) -> u8 {
    options.qos as u8
        | (u8::from(options.no_local) << 2)
        | (u8::from(options.retain_as_published) << 3)
        | ((options.retain_handling as u8) << 4)
}

fn options_from(byte: u8, fields: &Fields) -> Result<SubscriptionOptions, RecordError> {
    let qos = QoS::from_bits(byte & 0x03).ok_or_else(|| fields.error("invalid QoS"))?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(fields.error("invalid retain handling")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

/// A session record, version [`SESSION_RECORD_VERSION`]. Also what a takeover ships to the new
/// owner node (in the link frame's `session` bytes).
pub fn encode_session(record: &SessionRecord) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u8(SESSION_RECORD_VERSION);
    buf.put_u32(record.expiry_secs);
    buf.put_u64(record.disconnected_at_unix_ms);
    match &record.username {
        None => buf.put_u8(0),
        Some(username) => {
            buf.put_u8(1);
            // MQTT caps a user name at 65,535 bytes, as it does a topic.
            put_str(&mut buf, username);
        }
    }
    buf.put_u32(record.subscriptions.len() as u32);
    for (filter, subscription) in &record.subscriptions {
        put_str(&mut buf, filter);
        buf.put_u8(options_byte(subscription.options));
        buf.put_u32(subscription.identifier.unwrap_or(0));
    }
    buf.to_vec()
}

/// A session record of version [`SESSION_RECORD_VERSION`], or of version 1 (storage format 1,
/// or a takeover from a node still running it), which has no user name.
pub fn decode_session(bytes: &[u8]) -> Result<SessionRecord, RecordError> {
    let (mut fields, version) = Fields::versioned(bytes, "session")?;
    if version != 1 && version != SESSION_RECORD_VERSION {
        return Err(fields.error("written by another record version"));
    }
    let expiry_secs = fields.u32()?;
    let disconnected_at_unix_ms = fields.u64()?;
    let username = match version {
        1 => None,
        _ => match fields.u8()? {
            0 => None,
            1 => Some(fields.string()?),
            _ => return Err(fields.error("invalid user name flag")),
        },
    };
    let count = fields.u32()?;
    let mut subscriptions = Vec::new();
    for _ in 0..count {
        let filter = fields.string()?;
        let byte = fields.u8()?;
        let options = options_from(byte, &fields)?;
        let identifier = Some(fields.u32()?).filter(|&id| id != 0);
        subscriptions.push((filter, Subscription { options, identifier }));
    }
    fields.end()?;
    Ok(SessionRecord { expiry_secs, disconnected_at_unix_ms, username, subscriptions })
}

fn put_message(buf: &mut BytesMut, message: &Message, clock: &WallClock) {
    put_str(buf, &message.topic);
    put_str(buf, &message.publisher);
    buf.put_u8(message.qos as u8);
    buf.put_u8(u8::from(message.retain));
    buf.put_u64(message.expires_at.map_or(0, |at| clock.unix_ms(at).max(1)));
    // The forwarded properties always fit a property block: they came from one.
    if message.properties.encode_block(buf).is_err() {
        Properties::default().encode_block(buf).ok();
    }
    buf.put_u32(message.payload.len() as u32);
    buf.put_slice(&message.payload);
}

fn read_message(fields: &mut Fields, clock: &WallClock) -> Result<Message, RecordError> {
    let topic = fields.string()?;
    let publisher = fields.string()?;
    let qos = fields.qos()?;
    let retain = fields.u8()? != 0;
    let expires_at = Some(fields.u64()?).filter(|&ms| ms != 0).map(|ms| clock.instant(ms));
    let rest = std::mem::take(&mut fields.bytes);
    let (properties, rest) = Properties::decode_block(rest, PropertyContext::Publish)
        .map_err(|_| fields.error("invalid properties"))?;
    fields.bytes = rest;
    let len = fields.u32()? as usize;
    let payload = fields.take(len)?;
    Ok(Message { topic, payload, qos, retain, properties, expires_at, publisher })
}

/// A retained message, or a will's message.
pub fn encode_stored_message(message: &Message, clock: &WallClock) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u8(RECORD_VERSION);
    put_message(&mut buf, message, clock);
    buf.to_vec()
}

pub fn decode_stored_message(bytes: &[u8], clock: &WallClock) -> Result<Message, RecordError> {
    let mut fields = Fields::new(bytes, "message")?;
    let message = read_message(&mut fields, clock)?;
    fields.end()?;
    Ok(message)
}

/// A delayed will: its message and when it is due.
pub fn encode_will(message: &Message, due: Instant, clock: &WallClock) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u8(RECORD_VERSION);
    buf.put_u64(clock.unix_ms(due));
    put_message(&mut buf, message, clock);
    buf.to_vec()
}

pub fn decode_will(bytes: &[u8], clock: &WallClock) -> Result<(Message, Instant), RecordError> {
    let mut fields = Fields::new(bytes, "will")?;
    let due = clock.instant(fields.u64()?);
    let message = read_message(&mut fields, clock)?;
    fields.end()?;
    Ok((message, due))
}

pub fn encode_message_record(record: &MessageRecord, clock: &WallClock) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u8(RECORD_VERSION);
    buf.put_u8(match record.stage {
        MessageStage::Queued => 0,
        MessageStage::Published => 1,
        MessageStage::Released => 2,
    });
    buf.put_u16(record.packet_id);
    let delivery = &record.delivery;
    buf.put_u8(delivery.qos as u8);
    buf.put_u8(u8::from(delivery.retain));
    buf.put_u16(delivery.subscription_ids.len() as u16);
    for &id in &delivery.subscription_ids {
        buf.put_u32(id);
    }
    put_message(&mut buf, &delivery.message, clock);
    buf.to_vec()
}

pub fn decode_message_record(
    bytes: &[u8],
    clock: &WallClock,
) -> Result<MessageRecord, RecordError> {
    let mut fields = Fields::new(bytes, "queued message")?;
    let stage = match fields.u8()? {
        0 => MessageStage::Queued,
        1 => MessageStage::Published,
        2 => MessageStage::Released,
        _ => return Err(fields.error("invalid stage")),
    };
    let packet_id = fields.u16()?;
    let qos = fields.qos()?;
    let retain = fields.u8()? != 0;
    let count = fields.u16()?;
    let mut subscription_ids = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        subscription_ids.push(fields.u32()?);
    }
    let message: SharedMessage = std::sync::Arc::new(read_message(&mut fields, clock)?);
    fields.end()?;
    if stage != MessageStage::Queued && packet_id == 0 {
        return Err(fields.error("in flight without a packet identifier"));
    }
    // The key (seq) is not part of the value: the caller sets it.
    let delivery = Delivery { message, qos, retain, subscription_ids, seq: 0 };
    Ok(MessageRecord { stage, packet_id, delivery })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> (Instant, WallClock) {
        let base = Instant::now();
        (base, WallClock::fixed(base, 1_700_000_000_000))
    }

    fn message(clock_base: Instant) -> Message {
        Message {
            topic: ByteString::from("a/b"),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties {
                content_type: Some(ByteString::from("text/plain")),
                user_properties: vec![(ByteString::from("k"), ByteString::from("v"))],
                ..Properties::default()
            },
            expires_at: Some(clock_base + Duration::from_secs(30)),
            publisher: ByteString::from("pub"),
        }
    }

    #[test]
    fn records_round_trip() {
        let (base, clock) = clock();
        let session = SessionRecord {
            expiry_secs: 3600,
            disconnected_at_unix_ms: 1_700_000_000_500,
            username: Some(ByteString::from("alice")),
            subscriptions: vec![(
                ByteString::from("$share/g/a/+"),
                Subscription {
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                    identifier: Some(7),
                },
            )],
        };
        assert_eq!(decode_session(&encode_session(&session)), Ok(session.clone()));
        // No user name and an empty one are two things.
        for username in [None, Some(ByteString::from(""))] {
            let session = SessionRecord { username, ..session.clone() };
            assert_eq!(decode_session(&encode_session(&session)), Ok(session));
        }

        let stored = message(base);
        assert_eq!(
            decode_stored_message(&encode_stored_message(&stored, &clock), &clock),
            Ok(stored.clone())
        );

        let due = base + Duration::from_secs(5);
        assert_eq!(
            decode_will(&encode_will(&stored, due, &clock), &clock),
            Ok((stored.clone(), due))
        );

        let record = MessageRecord {
            stage: MessageStage::Released,
            packet_id: 9,
            delivery: Delivery {
                message: Arc::new(stored),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![1, 2],
                seq: 0,
            },
        };
        assert_eq!(
            decode_message_record(&encode_message_record(&record, &clock), &clock),
            Ok(record)
        );
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let (base, clock) = clock();
        let good = encode_message_record(
            &MessageRecord {
                stage: MessageStage::Queued,
                packet_id: 0,
                delivery: Delivery {
                    message: Arc::new(message(base)),
                    qos: QoS::AtMostOnce,
                    retain: false,
                    subscription_ids: vec![],
                    seq: 0,
                },
            },
            &clock,
        );
        for cut in 0..good.len() {
            assert!(decode_message_record(&good[..cut], &clock).is_err(), "cut at {cut}");
        }
        let mut other_version = good.clone();
        other_version[0] = 99;
        assert!(decode_message_record(&other_version, &clock).is_err());
        assert!(decode_session(&[SESSION_RECORD_VERSION, 1, 2]).is_err());
        let session = SessionRecord {
            expiry_secs: 1,
            disconnected_at_unix_ms: 2,
            username: Some(ByteString::from("bob")),
            subscriptions: vec![],
        };
        let good = encode_session(&session);
        for cut in 0..good.len() {
            assert!(decode_session(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_flag = good.clone();
        bad_flag[13] = 2;
        assert!(decode_session(&bad_flag).is_err());
        let mut other_version = good;
        other_version[0] = 3;
        assert!(decode_session(&other_version).is_err());
    }

    /// A version-1 session record, byte for byte as storage format 1 wrote it.
    fn session_record_v1() -> Vec<u8> {
        let mut record = vec![1];
        record.extend_from_slice(&3600u32.to_be_bytes());
        record.extend_from_slice(&1_700_000_000_500u64.to_be_bytes());
        record.extend_from_slice(&1u32.to_be_bytes());
        record.extend_from_slice(&3u16.to_be_bytes());
        record.extend_from_slice(b"a/#");
        record.push(0x01);
        record.extend_from_slice(&7u32.to_be_bytes());
        record
    }

    #[test]
    fn a_version_1_session_record_reads_as_one_without_a_user_name() {
        let expected = SessionRecord {
            expiry_secs: 3600,
            disconnected_at_unix_ms: 1_700_000_000_500,
            username: None,
            subscriptions: vec![(
                ByteString::from("a/#"),
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
        assert_eq!(decode_session(&session_record_v1()), Ok(expected.clone()));

        let upgraded = upgrade_session_record(&session_record_v1()).unwrap();
        assert_eq!(upgraded[0], SESSION_RECORD_VERSION);
        assert_eq!(upgraded, encode_session(&expected));
        // Upgrading a damaged record says why, for the store's error.
        let error = upgrade_session_record(&session_record_v1()[..5]).unwrap_err();
        assert_eq!(error, "damaged session record: truncated");
    }

    #[test]
    fn wall_clock_keeps_counting_across_a_restart() {
        let (base, clock) = clock();
        let deadline = base + Duration::from_secs(60);
        let stored = clock.unix_ms(deadline);
        // Restarted 20 s later: the deadline is 40 s away.
        let later = Instant::now();
        let restarted = WallClock::fixed(later, 1_700_000_000_000 + 20_000);
        let again = restarted.instant(stored);
        assert_eq!(again.duration_since(later), Duration::from_secs(40));
        // A deadline that passed while down comes back as due.
        assert!(restarted.instant(clock.unix_ms(base)) <= later);
    }
}

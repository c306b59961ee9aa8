//! Model-based test: random sequences of ops, committed in random batch sizes, must leave the
//! store holding exactly what a few `BTreeMap`s hold after the same ops, before and after the
//! file is reopened.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::select;
use shardmq_storage::{shard_file, Durability, Op, SessionSnapshot, ShardStore, Snapshot};

/// What the store should hold: the tables of `docs/storage-format.md` as plain maps.
#[derive(Default)]
struct Model {
    sessions: BTreeMap<String, Vec<u8>>,
    messages: BTreeMap<(String, u64), Vec<u8>>,
    incoming_qos2: BTreeSet<(String, u16)>,
    retained: BTreeMap<String, Vec<u8>>,
    wills: BTreeMap<String, Vec<u8>>,
    retained_marks: BTreeMap<String, Vec<u8>>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op.clone() {
            Op::PutSession { client_id, record } => {
                self.sessions.insert(client_id, record);
            }
            Op::DeleteSession { client_id } => {
                self.sessions.remove(&client_id);
                self.messages.retain(|(owner, _), _| *owner != client_id);
                self.incoming_qos2.retain(|(owner, _)| *owner != client_id);
                self.wills.remove(&client_id);
            }
            Op::PutMessage { client_id, seq, record } => {
                self.messages.insert((client_id, seq), record);
            }
            Op::DeleteMessage { client_id, seq } => {
                self.messages.remove(&(client_id, seq));
            }
            Op::PutIncomingQos2 { client_id, packet_id } => {
                self.incoming_qos2.insert((client_id, packet_id));
            }
            Op::DeleteIncomingQos2 { client_id, packet_id } => {
                self.incoming_qos2.remove(&(client_id, packet_id));
            }
            Op::PutRetained { topic, record } => {
                self.retained.insert(topic, record);
            }
            Op::DeleteRetained { topic } => {
                self.retained.remove(&topic);
            }
            Op::PutRetainedMark { topic, record } => {
                self.retained_marks.insert(topic, record);
            }
            Op::DeleteRetainedMark { topic } => {
                self.retained_marks.remove(&topic);
            }
            Op::PutWill { client_id, record } => {
                self.wills.insert(client_id, record);
            }
            Op::DeleteWill { client_id } => {
                self.wills.remove(&client_id);
            }
        }
    }

    /// The client whose session row `op` needs, if it needs one (see `Op::PutMessage`).
    fn missing_session<'o>(&self, op: &'o Op) -> Option<&'o str> {
        let client_id = match op {
            Op::PutMessage { client_id, .. } | Op::PutIncomingQos2 { client_id, .. } => client_id,
            _ => return None,
        };
        (!self.sessions.contains_key(client_id)).then_some(client_id.as_str())
    }

    fn snapshot(&self) -> Snapshot {
        let sessions = self
            .sessions
            .iter()
            .map(|(client_id, record)| SessionSnapshot {
                client_id: client_id.clone(),
                record: record.clone(),
                messages: self
                    .messages
                    .iter()
                    .filter(|((owner, _), _)| owner == client_id)
                    .map(|((_, seq), record)| (*seq, record.clone()))
                    .collect(),
                incoming_qos2: self
                    .incoming_qos2
                    .iter()
                    .filter(|(owner, _)| owner == client_id)
                    .map(|(_, packet_id)| *packet_id)
                    .collect(),
            })
            .collect();
        let pairs = |map: &BTreeMap<String, Vec<u8>>| {
            map.iter().map(|(key, record)| (key.clone(), record.clone())).collect()
        };
        Snapshot {
            sessions,
            retained: pairs(&self.retained),
            wills: pairs(&self.wills),
            retained_marks: pairs(&self.retained_marks),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    // "a" is a prefix of "ab" and "" of everything, so range deletes are tested at their edges.
    let client_id = || select(vec!["", "a", "ab", "b"]).prop_map(String::from);
    let seq = prop_oneof![0..6u64, Just(255), Just(256), Just(u64::MAX)];
    let packet_id = prop_oneof![0..4u16, Just(u16::MAX)];
    let topic = || select(vec!["t", "t/a", "a"]).prop_map(String::from);
    let record = || proptest::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        3 => (client_id(), record()).prop_map(|(client_id, record)| Op::PutSession { client_id, record }),
        1 => client_id().prop_map(|client_id| Op::DeleteSession { client_id }),
        4 => (client_id(), seq.clone(), record())
            .prop_map(|(client_id, seq, record)| Op::PutMessage { client_id, seq, record }),
        2 => (client_id(), seq).prop_map(|(client_id, seq)| Op::DeleteMessage { client_id, seq }),
        2 => (client_id(), packet_id.clone())
            .prop_map(|(client_id, packet_id)| Op::PutIncomingQos2 { client_id, packet_id }),
        1 => (client_id(), packet_id)
            .prop_map(|(client_id, packet_id)| Op::DeleteIncomingQos2 { client_id, packet_id }),
        2 => (topic(), record()).prop_map(|(topic, record)| Op::PutRetained { topic, record }),
        1 => topic().prop_map(|topic| Op::DeleteRetained { topic }),
        1 => (topic(), record()).prop_map(|(topic, record)| Op::PutRetainedMark { topic, record }),
        1 => topic().prop_map(|topic| Op::DeleteRetainedMark { topic }),
        2 => (client_id(), record()).prop_map(|(client_id, record)| Op::PutWill { client_id, record }),
        1 => client_id().prop_map(|client_id| Op::DeleteWill { client_id }),
    ]
}

/// Cuts `ops` into batches of the given sizes (cycled), putting a session first wherever an op
/// needs one, as the shard must.
fn batches(ops: Vec<Op>, sizes: &[usize]) -> Vec<Vec<Op>> {
    let mut model = Model::default();
    let mut batches = Vec::new();
    let mut ops = ops.into_iter().peekable();
    for size in sizes.iter().cycle() {
        if ops.peek().is_none() {
            break;
        }
        let mut batch = Vec::new();
        for op in ops.by_ref().take(*size) {
            if let Some(client_id) = model.missing_session(&op) {
                let session = Op::PutSession { client_id: client_id.into(), record: vec![] };
                model.apply(&session);
                batch.push(session);
            }
            model.apply(&op);
            batch.push(op);
        }
        batches.push(batch);
    }
    batches
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_btreemap_model(
        ops in proptest::collection::vec(op(), 0..120),
        sizes in proptest::collection::vec(1..12usize, 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = shard_file(dir.path(), 0);
        let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
        let mut model = Model::default();
        for batch in batches(ops, &sizes) {
            store.commit(&batch).unwrap();
            batch.iter().for_each(|op| model.apply(op));
            prop_assert_eq!(store.load().unwrap(), model.snapshot());
        }
        drop(store);
        let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
        prop_assert_eq!(store.load().unwrap(), model.snapshot());
    }
}

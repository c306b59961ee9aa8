//! The storage crate at its boundary: batches of `Op`s in, `Snapshot`s out, across reopening the
//! file. Each case goes through `check`, which commits batches to a fresh file and compares what
//! `load` returns before and after a reopen.

use std::path::Path;

use shardmq_storage::{
    shard_file, shard_files, Durability, Op, SessionSnapshot, ShardStore, Snapshot, StorageError,
    Upgrade, FORMAT_VERSION,
};

/// Commits `batches` in order to a fresh store, then checks that `load` returns `expected`, on
/// the same handle and after reopening the file.
fn check(batches: &[Vec<Op>], expected: &Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    for batch in batches {
        store.commit(batch).unwrap();
    }
    assert_eq!(&store.load().unwrap(), expected, "before reopening");
    drop(store);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    assert_eq!(&store.load().unwrap(), expected, "after reopening");
}

fn put_session(client_id: &str, record: &[u8]) -> Op {
    Op::PutSession { client_id: client_id.into(), record: record.into() }
}

fn put_message(client_id: &str, seq: u64, record: &[u8]) -> Op {
    Op::PutMessage { client_id: client_id.into(), seq, record: record.into() }
}

fn put_qos2(client_id: &str, packet_id: u16) -> Op {
    Op::PutIncomingQos2 { client_id: client_id.into(), packet_id }
}

fn put_will(client_id: &str, record: &[u8]) -> Op {
    Op::PutWill { client_id: client_id.into(), record: record.into() }
}

fn put_retained(topic: &str, record: &[u8]) -> Op {
    Op::PutRetained { topic: topic.into(), record: record.into() }
}

fn session(
    client_id: &str,
    record: &[u8],
    messages: &[(u64, &[u8])],
    incoming_qos2: &[u16],
) -> SessionSnapshot {
    SessionSnapshot {
        client_id: client_id.into(),
        record: record.into(),
        messages: messages.iter().map(|(seq, record)| (*seq, record.to_vec())).collect(),
        incoming_qos2: incoming_qos2.into(),
    }
}

fn pairs(rows: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    rows.iter().map(|(key, record)| (key.to_string(), record.to_vec())).collect()
}

#[test]
fn every_op_kind_round_trips() {
    check(
        &[
            vec![
                put_session("c1", b"s1"),
                put_message("c1", 1, b"m1"),
                put_message("c1", 2, b"m2"),
                put_qos2("c1", 7),
                put_qos2("c1", 9),
                put_will("c1", b"w1"),
                put_retained("a/b", b"r1"),
                put_retained("a/c", b"r2"),
                put_session("c2", b"s2"),
                put_will("c3", b"will without a session"),
                Op::PutRetainedMark { topic: "a/b".into(), record: b"k1".to_vec() },
                Op::PutRetainedMark { topic: "gone".into(), record: b"k2".to_vec() },
            ],
            vec![
                put_session("c1", b"s1 v2"),
                put_message("c1", 2, b"m2 v2"),
                Op::DeleteMessage { client_id: "c1".into(), seq: 1 },
                Op::DeleteIncomingQos2 { client_id: "c1".into(), packet_id: 7 },
                Op::DeleteRetained { topic: "a/c".into() },
                Op::DeleteWill { client_id: "c1".into() },
                put_message("c2", 5, b"m5"),
                Op::DeleteRetainedMark { topic: "gone".into() },
            ],
        ],
        &Snapshot {
            sessions: vec![
                session("c1", b"s1 v2", &[(2, b"m2 v2")], &[9]),
                session("c2", b"s2", &[(5, b"m5")], &[]),
            ],
            retained: pairs(&[("a/b", b"r1")]),
            wills: pairs(&[("c3", b"will without a session")]),
            retained_marks: pairs(&[("a/b", b"k1")]),
        },
    );
}

#[test]
fn delete_session_removes_its_messages_packet_ids_and_will_only() {
    // "a" is a prefix of "ab": the cascade must stop at the end of "a"'s rows.
    let populate = |client_id: &str| {
        vec![
            put_session(client_id, b"s"),
            put_message(client_id, 0, b"m0"),
            put_message(client_id, u64::MAX, b"last"),
            put_qos2(client_id, 0),
            put_qos2(client_id, u16::MAX),
            put_will(client_id, b"w"),
        ]
    };
    let mut first = populate("a");
    first.extend(populate("ab"));
    first.extend(populate(""));
    check(
        &[first, vec![Op::DeleteSession { client_id: "a".into() }]],
        &Snapshot {
            sessions: vec![
                session("", b"s", &[(0, b"m0"), (u64::MAX, b"last")], &[0, u16::MAX]),
                session("ab", b"s", &[(0, b"m0"), (u64::MAX, b"last")], &[0, u16::MAX]),
            ],
            retained: vec![],
            wills: pairs(&[("", b"w"), ("ab", b"w")]),
            retained_marks: vec![],
        },
    );
    // Deleting and recreating a session in one batch leaves only what came after.
    check(
        &[
            populate("a"),
            vec![
                Op::DeleteSession { client_id: "a".into() },
                put_session("a", b"new"),
                put_message("a", 3, b"m3"),
            ],
        ],
        &Snapshot {
            sessions: vec![session("a", b"new", &[(3, b"m3")], &[])],
            ..Snapshot::default()
        },
    );
}

#[test]
fn messages_load_in_seq_order() {
    // Seqs that sort differently as little-endian bytes or as decimal strings.
    let seqs = [256, 1, 1 << 40, 2, 255, 10, u64::MAX, 0];
    let mut batch = vec![put_session("c", b"s")];
    batch.extend(seqs.iter().map(|seq| put_message("c", *seq, &seq.to_be_bytes())));
    let mut sorted = seqs;
    sorted.sort_unstable();
    let expected: Vec<(u64, Vec<u8>)> =
        sorted.iter().map(|seq| (*seq, seq.to_be_bytes().to_vec())).collect();
    check(
        &[batch],
        &Snapshot {
            sessions: vec![SessionSnapshot {
                client_id: "c".into(),
                record: b"s".to_vec(),
                messages: expected,
                incoming_qos2: vec![],
            }],
            ..Snapshot::default()
        },
    );
}

#[test]
fn deleting_absent_rows_and_empty_batches_change_nothing() {
    check(
        &[
            vec![],
            vec![
                Op::DeleteSession { client_id: "x".into() },
                Op::DeleteMessage { client_id: "x".into(), seq: 1 },
                Op::DeleteIncomingQos2 { client_id: "x".into(), packet_id: 1 },
                Op::DeleteRetained { topic: "t".into() },
                Op::DeleteWill { client_id: "x".into() },
            ],
            vec![],
        ],
        &Snapshot::default(),
    );
}

#[test]
fn durability_none_commits_are_readable_and_survive_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    let store = ShardStore::open(&path, Durability::None, &[]).unwrap();
    for n in 0..100u64 {
        store.commit(&[put_session("c", b"s"), put_message("c", n, b"m")]).unwrap();
    }
    assert_eq!(store.load().unwrap().sessions[0].messages.len(), 100);
    drop(store);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    assert_eq!(store.load().unwrap().sessions[0].messages.len(), 100);
}

/// Rewrites the format version in `meta`, as a build of another format would have left it.
fn set_format_version(path: &Path, version: u32) {
    let db = redb::Database::open(path).unwrap();
    let write = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
        write.open_table(meta).unwrap().insert("format_version", version).unwrap();
    }
    write.commit().unwrap();
}

#[test]
fn another_format_version_is_refused_with_how_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 4);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    store.commit(&[put_session("c", b"s")]).unwrap();
    drop(store);

    // A newer format (whatever upgrades this build has), an older one it has no upgrade from,
    // and a version no build wrote.
    for (found, upgrades) in [(99, UPGRADES), (FORMAT_VERSION - 1, &[][..]), (0, UPGRADES)] {
        set_format_version(&path, found);
        let error = ShardStore::open(&path, Durability::Immediate, upgrades).unwrap_err();
        let StorageError::FormatVersion { path: error_path, found: error_found, supported } =
            &error
        else {
            panic!("expected FormatVersion, got {error:?}");
        };
        assert_eq!(
            (error_path.as_path(), *error_found, *supported),
            (path.as_path(), found, FORMAT_VERSION)
        );
        let message = error.to_string();
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
        assert!(
            message.contains(&format!(
                "has storage format {found}, but this build reads format {FORMAT_VERSION}; start \
                 with an empty data directory or use the shardmq version that wrote it"
            )),
            "{message}"
        );
    }

    // The refused opens left the tables as they were: the right build still reads them.
    set_format_version(&path, FORMAT_VERSION);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    assert_eq!(store.load().unwrap().sessions, vec![session("c", b"s", &[], &[])]);
}

/// A test's stand-in for the previous format's session records: the upgrade appends " new",
/// and refuses a record that says "damaged".
fn upgrade_session(record: &[u8]) -> Result<Vec<u8>, String> {
    if record == b"damaged" {
        return Err("truncated".into());
    }
    let mut rewritten = record.to_vec();
    rewritten.extend_from_slice(b" new");
    Ok(rewritten)
}

const UPGRADES: &[Upgrade] = &[Upgrade { from: FORMAT_VERSION - 1, sessions: upgrade_session }];

#[test]
fn an_older_format_is_migrated_on_open_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    let store = ShardStore::open(&path, Durability::None, &[]).unwrap();
    assert_eq!(store.migrated_from(), None, "a new file");
    store
        .commit(&[
            put_session("a", b"session a"),
            put_message("a", 1, b"m"),
            put_qos2("a", 9),
            put_session("b", b""),
            put_retained("t", b"r"),
            put_will("a", b"w"),
        ])
        .unwrap();
    drop(store);
    set_format_version(&path, FORMAT_VERSION - 1);

    let expected = Snapshot {
        sessions: vec![
            session("a", b"session a new", &[(1, b"m")], &[9]),
            session("b", b" new", &[], &[]),
        ],
        retained: vec![("t".into(), b"r".to_vec())],
        wills: vec![("a".into(), b"w".to_vec())],
        retained_marks: vec![],
    };
    // Migrated even with `Durability::None`: the migration is always durable.
    let store = ShardStore::open(&path, Durability::None, UPGRADES).unwrap();
    assert_eq!(store.migrated_from(), Some(FORMAT_VERSION - 1));
    assert_eq!(store.load().unwrap(), expected);
    drop(store);
    // Reopened, it is of the current format: nothing to migrate, even without upgrades.
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    assert_eq!(store.migrated_from(), None);
    assert_eq!(store.load().unwrap(), expected);
}

#[test]
fn a_record_the_upgrade_refuses_fails_the_open_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    store.commit(&[put_session("a", b"fine"), put_session("b", b"damaged")]).unwrap();
    drop(store);
    set_format_version(&path, FORMAT_VERSION - 1);

    let error = ShardStore::open(&path, Durability::Immediate, UPGRADES).unwrap_err();
    assert!(matches!(error, StorageError::Migrate { from, .. } if from == FORMAT_VERSION - 1));
    let message = error.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    assert!(message.contains("client id \"b\": truncated"), "{message}");
    assert!(message.contains("the file was left as it was"), "{message}");

    // Still the old format with the old records ("a" was not rewritten either).
    let error = ShardStore::open(&path, Durability::Immediate, &[]).unwrap_err();
    assert!(
        matches!(error, StorageError::FormatVersion { found, .. } if found == FORMAT_VERSION - 1),
        "{error:?}"
    );
    set_format_version(&path, FORMAT_VERSION);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    let sessions = store.load().unwrap().sessions;
    assert_eq!(sessions, vec![session("a", b"fine", &[], &[]), session("b", b"damaged", &[], &[])]);
}

#[test]
fn files_that_are_not_shard_stores_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let error = ShardStore::open(&garbage, Durability::Immediate, &[]).unwrap_err();
    assert!(matches!(error, StorageError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("garbage.redb"), "{error}");

    let foreign = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&foreign).unwrap();
        let write = db.begin_write().unwrap();
        let other: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("other");
        write.open_table(other).unwrap().insert(1, 1).unwrap();
        write.commit().unwrap();
    }
    let error = ShardStore::open(&foreign, Durability::Immediate, &[]).unwrap_err();
    assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("foreign.redb"), "{error}");

    let missing_dir = dir.path().join("no such dir").join("shard-0.redb");
    let error = ShardStore::open(&missing_dir, Durability::Immediate, &[]).unwrap_err();
    assert!(matches!(error, StorageError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("no such dir"), "{error}");
}

#[test]
fn a_file_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    let error = ShardStore::open(&path, Durability::Immediate, &[]).unwrap_err();
    assert!(matches!(error, StorageError::Open { .. }), "{error:?}");
    drop(store);
    ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
}

#[test]
fn a_message_row_without_its_session_is_reported_by_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    drop(ShardStore::open(&path, Durability::Immediate, &[]).unwrap());
    {
        // Only a foreign writer can leave such a row; this crate refuses to.
        let db = redb::Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        let messages: redb::TableDefinition<(&str, u64), &[u8]> =
            redb::TableDefinition::new("messages");
        write.open_table(messages).unwrap().insert(("ghost", 1), b"m".as_slice()).unwrap();
        write.commit().unwrap();
    }
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    let error = store.load().unwrap_err();
    assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("\"ghost\""), "{error}");
}

#[test]
fn a_put_for_a_client_without_a_session_panics_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_file(dir.path(), 0);
    let store = ShardStore::open(&path, Durability::Immediate, &[]).unwrap();
    store.commit(&[put_session("c", b"s")]).unwrap();
    for orphan in [put_message("ghost", 1, b"m"), put_qos2("ghost", 1)] {
        let batch = [put_retained("t", b"r"), orphan];
        let commit = std::panic::AssertUnwindSafe(|| store.commit(&batch));
        let panic = std::panic::catch_unwind(commit).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("has no session row"), "{message}");
    }
    // The batches were aborted whole, and the store still commits.
    store.commit(&[put_message("c", 1, b"m")]).unwrap();
    let expected =
        Snapshot { sessions: vec![session("c", b"s", &[(1, b"m")], &[])], ..Snapshot::default() };
    assert_eq!(store.load().unwrap(), expected);
}

#[test]
fn shard_files_lists_shard_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(shard_file(dir.path(), 12), dir.path().join("shard-12.redb"));
    for n in [10, 2, 0] {
        drop(ShardStore::open(&shard_file(dir.path(), n), Durability::Immediate, &[]).unwrap());
    }
    for stray in ["shard-02.redb", "shard-3.redb.bak", "notes.txt", "shard-x.redb"] {
        std::fs::write(dir.path().join(stray), b"").unwrap();
    }
    let expected: Vec<_> = [0, 2, 10].iter().map(|n| (*n, shard_file(dir.path(), *n))).collect();
    assert_eq!(shard_files(dir.path()).unwrap(), expected);

    let missing = dir.path().join("missing");
    let error = shard_files(&missing).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert!(error.to_string().contains("missing"), "{error}");
}

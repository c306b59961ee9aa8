//! Fault injection: the shard file behind a redb backend that starts failing its writes and
//! fsyncs on demand, as a full disk does. Checks that a failed commit is an `Err` naming the file,
//! never a panic; what the failed handle still does; and that reopening recovers every batch
//! committed before the failure.
//!
//! These tests live inside the crate because opening over a custom backend is not public API.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::backends::FileBackend;

use crate::faults::{Faults, FaultyBackend};
use crate::store::CACHE_BYTES_MAX;
use crate::{
    Durability, Op, SessionSnapshot, ShardStore, Snapshot, StorageError, Upgrade, FORMAT_VERSION,
};

fn open_faulty(path: &Path, faults: &Arc<Faults>) -> Result<ShardStore, StorageError> {
    open_faulty_with(path, faults, &[], CACHE_BYTES_MAX)
}

fn open_faulty_with_cache(
    path: &Path,
    faults: &Arc<Faults>,
    cache_bytes: usize,
) -> Result<ShardStore, StorageError> {
    open_faulty_with(path, faults, &[], cache_bytes)
}

fn open_faulty_with(
    path: &Path,
    faults: &Arc<Faults>,
    upgrades: &[Upgrade],
    cache_bytes: usize,
) -> Result<ShardStore, StorageError> {
    let file: File =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
    let backend = FaultyBackend { file: FileBackend::new(file).unwrap(), faults: faults.clone() };
    ShardStore::open_with_backend(path, backend, Durability::Immediate, upgrades, cache_bytes)
}

fn session(client_id: &str) -> Op {
    Op::PutSession { client_id: client_id.into(), record: format!("session {client_id}").into() }
}

fn message(client_id: &str, seq: u64) -> Op {
    Op::PutMessage { client_id: client_id.into(), seq, record: vec![seq as u8; 300] }
}

/// A batch big enough to write several pages, so that failure points land inside the data
/// writes as well as on the header and the fsyncs.
fn batch(client_id: &str) -> Vec<Op> {
    let mut ops = vec![session(client_id)];
    ops.extend((0..40).map(|seq| message(client_id, seq)));
    ops.push(Op::PutRetained { topic: format!("t/{client_id}"), record: b"r".to_vec() });
    ops
}

fn client_ids(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.sessions.iter().map(|session| session.client_id.as_str()).collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    faults: Arc<Faults>,
    store: ShardStore,
    before: Snapshot,
}

/// A store with two committed batches, and the snapshot they make.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0.redb");
    let faults = Faults::new();
    let store = open_faulty(&path, &faults).unwrap();
    store.commit(&batch("a")).unwrap();
    store.commit(&batch("b")).unwrap();
    let before = store.load().unwrap();
    assert_eq!(client_ids(&before), ["a", "b"]);
    Setup { _dir: dir, path, faults, store, before }
}

/// How many mutating backend calls one commit of `batch("c")` makes on a fresh setup.
fn calls_per_commit() -> u64 {
    let setup = setup();
    let start = setup.faults.calls();
    setup.store.commit(&batch("c")).unwrap();
    setup.faults.calls() - start
}

#[test]
fn enospc_during_commit_is_an_error_then_reopen_recovers() {
    let calls = calls_per_commit();
    assert!(calls >= 3, "a durable commit writes pages, the header and syncs; saw {calls} calls");
    let mut load_on_failed_handle = Vec::new();
    // Fail at every mutating call a commit makes, in turn.
    for fail_after in 0..calls {
        let Setup { _dir, path, faults, store, before } = setup();
        faults.fail_after(fail_after);

        let error = store.commit(&batch("c")).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, StorageError::Commit { .. }), "at call {fail_after}: {error:?}");
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
        assert!(message.contains("No space left on device"), "{message}");

        // The handle refuses to write again, even once the disk has recovered: redb latched it.
        faults.recover();
        let redb_says = store.database().begin_write().map(drop).unwrap_err();
        assert!(
            matches!(redb_says, redb::TransactionError::Storage(redb::StorageError::PreviousIo)),
            "at call {fail_after}: {redb_says:?}"
        );
        let error = store.commit(&[session("d")]).unwrap_err();
        assert!(matches!(error, StorageError::NeedsReopen { .. }), "{error:?}");
        assert!(error.to_string().contains("open the file again"), "{error}");

        // Reads: whatever the failed handle returns is the state before the failed batch.
        match store.load() {
            Ok(snapshot) => {
                assert_eq!(snapshot, before);
                load_on_failed_handle.push("ok");
            }
            Err(StorageError::NeedsReopen { .. }) => load_on_failed_handle.push("needs reopen"),
            Err(error) => panic!("load after a failed commit: {error:?}"),
        }
        drop(store);

        // Reopening repairs the file. The failed batch may or may not have reached the disk
        // (the failure may have hit the fsync after the header was written); everything
        // committed before it is there.
        let store = open_faulty(&path, &faults).unwrap();
        let after = store.load().unwrap();
        let kept_failed_batch = match client_ids(&after).as_slice() {
            ["a", "b"] => false,
            ["a", "b", "c"] => true,
            other => panic!("at call {fail_after}: sessions {other:?} after reopening"),
        };
        // Only a failure of the last call, the fsync after the new header was written, leaves
        // the batch in the file (this fake's write did land; on a real disk it may or may not).
        assert_eq!(kept_failed_batch, fail_after == calls - 1, "at call {fail_after}");
        assert_eq!(after.sessions[..2], before.sessions[..]);
        assert_eq!(after.retained.len(), 2 + usize::from(kept_failed_batch));

        store.commit(&[session("d")]).unwrap();
        drop(store);
        let store = open_faulty(&path, &faults).unwrap();
        let last = store.load().unwrap();
        assert_eq!(last.sessions[..2], before.sessions[..]);
        assert_eq!(client_ids(&last).last(), Some(&"d"));
    }
    // redb 4.6 keeps the pages it has read in its cache, and this file is small: the failed
    // handle still answers load() from memory. A large file would need the disk, which the
    // latch refuses with NeedsReopen; the ShardStore docs say so.
    assert!(
        load_on_failed_handle.iter().all(|outcome| *outcome == "ok"),
        "{load_on_failed_handle:?}"
    );
}

#[test]
fn a_failed_open_write_is_an_open_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-3.redb");
    let faults = Faults::new();
    faults.fail_after(0);
    let error = open_faulty(&path, &faults).unwrap_err();
    assert!(matches!(error, StorageError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("shard-3.redb"), "{error}");
    faults.recover();
    let store = open_faulty(&path, &faults).unwrap();
    store.commit(&[session("a")]).unwrap();
    assert_eq!(
        store.load().unwrap().sessions,
        [SessionSnapshot {
            client_id: "a".into(),
            record: b"session a".to_vec(),
            ..SessionSnapshot::default()
        }]
    );
}

#[test]
fn a_failed_handle_reads_only_what_redb_has_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0.redb");
    let faults = Faults::new();
    // No page cache: every read of the failed handle goes to the backend, which redb's latch
    // refuses.
    let store = open_faulty_with_cache(&path, &faults, 0).unwrap();
    store.commit(&batch("a")).unwrap();
    faults.fail_after(0);
    assert!(matches!(store.commit(&batch("b")), Err(StorageError::Commit { .. })));
    faults.recover();
    let error = store.load().unwrap_err();
    assert!(matches!(error, StorageError::NeedsReopen { .. }), "{error:?}");
    drop(store);
    let store = open_faulty_with_cache(&path, &faults, 0).unwrap();
    assert_eq!(client_ids(&store.load().unwrap()), ["a"]);
}

/// The previous format's sessions record, as a test stands it in: the upgrade to the current
/// format appends " v2".
fn upgrade_session(record: &[u8]) -> Result<Vec<u8>, String> {
    let mut rewritten = record.to_vec();
    rewritten.extend_from_slice(b" v2");
    Ok(rewritten)
}

const UPGRADES: &[Upgrade] = &[Upgrade { from: FORMAT_VERSION - 1, sessions: upgrade_session }];

/// The format version and the sessions of a file, read with plain redb (which repairs it).
fn raw_contents(path: &Path) -> (u32, Vec<(String, Vec<u8>)>) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let meta: TableDefinition<&str, u32> = TableDefinition::new("meta");
    let version = read.open_table(meta).unwrap().get("format_version").unwrap().unwrap().value();
    let sessions: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
    let rows = read
        .open_table(sessions)
        .unwrap()
        .iter()
        .unwrap()
        .map(|row| {
            let (key, value) = row.unwrap();
            (key.value().to_owned(), value.value().to_vec())
        })
        .collect();
    (version, rows)
}

/// The migration runs in one write transaction with the new version: whichever backend call
/// fails (the disk filling up at any point of it, which is also where a crash would stop it),
/// the file is afterwards wholly of the old format with the old records, or wholly migrated.
#[test]
fn a_migration_cut_short_leaves_the_file_wholly_old_or_wholly_new() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.redb");
    {
        let store = ShardStore::open(&old, Durability::Immediate, &[]).unwrap();
        // Enough sessions for the migration to write several pages.
        let batch: Vec<Op> = (0..200).map(|i| session(&format!("client-{i:03}"))).collect();
        store.commit(&batch).unwrap();
    }
    set_format_version(&old, FORMAT_VERSION - 1);
    let (_, before) = raw_contents(&old);
    let after: Vec<(String, Vec<u8>)> = before
        .iter()
        .map(|(client_id, record)| (client_id.clone(), upgrade_session(record).unwrap()))
        .collect();

    let (mut cut_short, mut migrated) = (0, false);
    for calls in 0..1_000 {
        let path = dir.path().join(format!("copy-{calls}.redb"));
        std::fs::copy(&old, &path).unwrap();
        let faults = Faults::new();
        faults.fail_after(calls);
        let opened = open_faulty_with(&path, &faults, UPGRADES, CACHE_BYTES_MAX);
        let succeeded = opened.is_ok();
        if let Ok(store) = &opened {
            assert_eq!(store.migrated_from(), Some(FORMAT_VERSION - 1));
        }
        drop(opened);
        let contents = raw_contents(&path);
        if contents.0 == FORMAT_VERSION {
            assert_eq!(contents.1, after, "fail after {calls} calls: migrated, but not whole");
        } else {
            assert!(!succeeded, "fail after {calls} calls: the open succeeded unmigrated");
            assert_eq!(contents, (FORMAT_VERSION - 1, before.clone()), "fail after {calls} calls");
            cut_short += 1;
        }
        std::fs::remove_file(&path).unwrap();
        if succeeded {
            migrated = true;
            break;
        }
    }
    assert!(migrated, "the migration never succeeded");
    assert!(cut_short > 3, "only {cut_short} failure points were tried");
}

/// Rewrites the format version in `meta`, as an older build would have left it.
fn set_format_version(path: &Path, version: u32) {
    let db = redb::Database::open(path).unwrap();
    let write = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
        write.open_table(meta).unwrap().insert("format_version", version).unwrap();
    }
    write.commit().unwrap();
}

//! [`ShardStore`]: one shard's redb file, written in batches of [`Op`]s and read back whole as a
//! [`Snapshot`] at start-up. The table layout is documented in `docs/storage-format.md`; keep the
//! two in step.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, TableHandle};

use crate::StorageError;

/// The storage format this build reads and writes, recorded in the `meta` table.
///
/// It covers the table layout *and* the record encodings the shard crate puts in the values
/// (`shard/src/persist.rs`): a change to either one bumps it. A build migrates an older file
/// when it is given an [`Upgrade`] for every step up to this version, and refuses any other
/// version (see `docs/storage-format.md`, "Versions and migration").
///
/// Format 2 added the user name to the session record.
pub const FORMAT_VERSION: u32 = 2;

/// redb's page cache for one shard file. redb's default is 1 GiB per database, which a shard
/// would fill while [`ShardStore::load`] reads every row at start-up and then keep for the life
/// of the process, once per core. A smaller cache still holds the B-tree's upper levels, which is
/// what a commit's lookups need.
pub(crate) const CACHE_BYTES_MAX: usize = 64 << 20;

/// The `meta` table. Its name and types must never change, so that every build can read the
/// version of any file.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const META_FORMAT_VERSION: &str = "format_version";
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const INCOMING_QOS2: TableDefinition<(&str, u16), ()> = TableDefinition::new("incoming_qos2");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const WILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("wills");
/// The version of each retained topic's last write (a deletion too) in a cluster: added within
/// format 2, absent from older files and read as empty (see docs/storage-format.md).
const RETAINED_MARKS: TableDefinition<&str, &[u8]> = TableDefinition::new("retained_marks");

/// Rewrites one record of an older format as a record of the next format, or says why it
/// cannot (a damaged record).
pub type RewriteRecord = fn(&[u8]) -> Result<Vec<u8>, String>;

/// One step of a migration: how the records of format `from` become records of format
/// `from + 1`.
///
/// This crate never looks inside a record, so the crate that owns the record layouts (the
/// shard crate, `shard/src/persist.rs`) provides the steps, and [`ShardStore::open`] applies
/// them: every step from the file's version up to [`FORMAT_VERSION`], all in one write
/// transaction together with the new `format_version`. A crash during the migration therefore
/// leaves a file that is wholly the old format or wholly the new one.
///
/// Only the tables whose records changed are named; a later step that changes another table's
/// records (or a key) adds a field here.
#[derive(Clone, Copy, Debug)]
pub struct Upgrade {
    /// The format this step reads; it writes `from + 1`.
    pub from: u32,
    /// Rewrites every `sessions` value.
    pub sessions: RewriteRecord,
}

/// How [`ShardStore::commit`] makes a batch durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `commit` returns once the batch is on disk (fsync). The default, and the only setting under
    /// which a PUBACK/PUBREC may be sent after a commit.
    Immediate,
    /// For benchmarks only: **a crash (kill -9, power loss) can lose messages that were already
    /// acknowledged to clients.** `commit` returns without an fsync; the batch reaches the disk at
    /// the next `Immediate` commit or when the store is dropped cleanly.
    None,
}

/// One change in a batch given to [`ShardStore::commit`]. Owned, so that a batch can be moved to
/// the blocking thread that commits it.
///
/// Deleting a row that does not exist is a no-op, so the shard need not track what is stored.
/// A `Put` on an existing key replaces the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace the session record of `client_id` (table `sessions`).
    PutSession {
        /// The client id, the session's key.
        client_id: String,
        /// The session record, encoded by the shard crate.
        record: Vec<u8>,
    },
    /// Delete the session of `client_id` and everything that belongs to it: its `messages`, its
    /// `incoming_qos2` packet ids and its `wills` row.
    DeleteSession {
        /// The client id.
        client_id: String,
    },
    /// Insert or replace message `seq` of `client_id`'s session (table `messages`): a queued or
    /// in-flight outbound message. The session row must exist when this op is applied (earlier
    /// in the same batch is fine); otherwise `commit` panics, since that is a bug in the caller.
    PutMessage {
        /// The client id of the session the message is queued for.
        client_id: String,
        /// The message's position in the session's queue, from a per-session counter that only
        /// grows.
        seq: u64,
        /// The message record, encoded by the shard crate.
        record: Vec<u8>,
    },
    /// Delete message `seq` of `client_id` (acknowledged, expired or dropped).
    DeleteMessage {
        /// The client id.
        client_id: String,
        /// The message's sequence number.
        seq: u64,
    },
    /// Record that a QoS 2 PUBLISH with `packet_id` from `client_id` was received and not yet
    /// released (table `incoming_qos2`). The session row must exist, as for
    /// [`Op::PutMessage`].
    PutIncomingQos2 {
        /// The client id.
        client_id: String,
        /// The PUBLISH's packet id.
        packet_id: u16,
    },
    /// Forget an incoming QoS 2 packet id (PUBREL received).
    DeleteIncomingQos2 {
        /// The client id.
        client_id: String,
        /// The packet id.
        packet_id: u16,
    },
    /// Insert or replace the retained message of `topic` (table `retained`).
    PutRetained {
        /// The topic name, the key.
        topic: String,
        /// The retained-message record, encoded by the shard crate.
        record: Vec<u8>,
    },
    /// Delete the retained message of `topic`.
    DeleteRetained {
        /// The topic name.
        topic: String,
    },
    /// Insert or replace the version mark of the retained topic `topic` (table
    /// `retained_marks`).
    PutRetainedMark {
        /// The topic name, the key.
        topic: String,
        /// The mark record, encoded by the shard crate.
        record: Vec<u8>,
    },
    /// Delete the version mark of `topic`.
    DeleteRetainedMark {
        /// The topic name.
        topic: String,
    },
    /// Insert or replace the will of `client_id` (table `wills`). A will may exist without a
    /// session row.
    PutWill {
        /// The client id.
        client_id: String,
        /// The will record, encoded by the shard crate.
        record: Vec<u8>,
    },
    /// Delete the will of `client_id`.
    DeleteWill {
        /// The client id.
        client_id: String,
    },
}

/// Everything a shard file holds, as [`ShardStore::load`] reads it back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every session, sorted by client id (byte order), with its messages and packet ids.
    pub sessions: Vec<SessionSnapshot>,
    /// Every retained message as `(topic, record)`, sorted by topic.
    pub retained: Vec<(String, Vec<u8>)>,
    /// Every will as `(client_id, record)`, sorted by client id.
    pub wills: Vec<(String, Vec<u8>)>,
    /// Every retained topic's version mark as `(topic, record)`, sorted by topic.
    pub retained_marks: Vec<(String, Vec<u8>)>,
}

/// One session and the rows that belong to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// The client id.
    pub client_id: String,
    /// The session record.
    pub record: Vec<u8>,
    /// The session's queued and in-flight outbound messages as `(seq, record)`, in seq order.
    pub messages: Vec<(u64, Vec<u8>)>,
    /// The packet ids of received, unreleased QoS 2 PUBLISHes, ascending.
    pub incoming_qos2: Vec<u16>,
}

/// One shard's durable store: a redb file holding opaque records.
///
/// Lives on each shard; written only by that shard's group committer, from the blocking seam.
///
/// # After a failed commit
///
/// redb 4.6 latches the first I/O error of its storage backend (a write, `set_len` or fsync
/// failing, e.g. with ENOSPC): from then on every operation of that `Database` that touches the
/// backend, including new write transactions, fails with redb's `PreviousIo`, even once the
/// disk has recovered. A commit that fails for any other reason discards redb's in-memory
/// allocator state, which also makes it refuse new write transactions. So after
/// [`commit`](Self::commit) returns an error, this handle returns
/// [`StorageError::NeedsReopen`] from every later `commit`, without asking redb. Drop it and
/// [`open`](Self::open) the file again: the open repairs the file from its last durable commit,
/// walking the whole file, so it takes time proportional to the file's size.
///
/// The batch of the failed commit may or may not be in the reopened file (the failure may have
/// been in the final fsync, after the new commit slot was written); every batch whose `commit`
/// returned `Ok` with [`Durability::Immediate`] is. [`load`](Self::load) on the failed handle
/// may still succeed from redb's cache, or fail with `NeedsReopen` when it has to read a page
/// from the disk: reload from a reopened handle.
#[derive(Debug)]
pub struct ShardStore {
    db: redb::Database,
    path: PathBuf,
    durability: redb::Durability,
    // Set by the first failed commit; redb refuses writes from then on (see the type's docs).
    // Atomic because `commit` takes `&self`.
    needs_reopen: AtomicBool,
    // The format this open migrated the file from, if it did.
    migrated_from: Option<u32>,
}

impl ShardStore {
    /// Opens the shard file at `path`, creating it and its tables if it does not exist. The
    /// parent directory must exist.
    ///
    /// A file of an older format version is migrated to [`FORMAT_VERSION`] with `upgrades` (one
    /// [`Upgrade`] per step; the shard crate's `persist::UPGRADES`), in one durable write
    /// transaction, before this returns; [`migrated_from`](Self::migrated_from) then says so.
    /// A record that an upgrade cannot rewrite fails the open with [`StorageError::Migrate`]
    /// and leaves the file as it was. A file of a newer version, or of an older one without
    /// the upgrades to reach this version, is refused with [`StorageError::FormatVersion`].
    ///
    /// A file left by a crash or a failed commit is repaired first (redb walks the whole file).
    /// The file stays locked while the store is open: a second open fails with
    /// [`StorageError::Open`] until this one is dropped.
    pub fn open(
        path: &Path,
        durability: Durability,
        upgrades: &[Upgrade],
    ) -> Result<ShardStore, StorageError> {
        let open_error = |source: redb::Error| StorageError::Open { path: path.into(), source };
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES_MAX)
            .create(path)
            .map_err(|error| open_error(error.into()))?;
        Self::from_database(db, path, durability, upgrades)
    }

    /// Like [`open`](Self::open), over a given redb backend and cache size; `path` only names
    /// the store in errors. For the fault-injection tests, which wrap the file in a backend that
    /// fails on demand.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn open_with_backend(
        path: &Path,
        backend: impl redb::StorageBackend,
        durability: Durability,
        upgrades: &[Upgrade],
        cache_bytes: usize,
    ) -> Result<ShardStore, StorageError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)
            .map_err(|error| StorageError::Open { path: path.into(), source: error.into() })?;
        Self::from_database(db, path, durability, upgrades)
    }

    /// The redb database, for tests that check what redb itself does after a failure.
    #[cfg(test)]
    pub(crate) fn database(&self) -> &redb::Database {
        &self.db
    }

    fn from_database(
        db: redb::Database,
        path: &Path,
        durability: Durability,
        upgrades: &[Upgrade],
    ) -> Result<ShardStore, StorageError> {
        let open_error = |source: redb::Error| match source {
            redb::Error::PreviousIo => StorageError::NeedsReopen { path: path.into() },
            source => StorageError::Open { path: path.into(), source },
        };
        let version = {
            let read = db.begin_read().map_err(|error| open_error(error.into()))?;
            match read.open_table(META) {
                Ok(meta) => Some(
                    meta.get(META_FORMAT_VERSION)
                        .map_err(|error| open_error(error.into()))?
                        .map(|version| version.value()),
                ),
                Err(TableError::TableDoesNotExist(_)) => {
                    // A file with tables but no `meta` was not written by shardmq; refuse it
                    // rather than add our tables beside someone else's.
                    let tables = read.list_tables().map_err(|error| open_error(error.into()))?;
                    let names: Vec<String> = tables.map(|table| table.name().to_owned()).collect();
                    if !names.is_empty() {
                        return Err(StorageError::Corrupt {
                            path: path.into(),
                            detail: format!(
                                "tables {names:?} but no `meta` table: not a shardmq shard file"
                            ),
                        });
                    }
                    None
                }
                Err(error) => return Err(open_error(error.into())),
            }
        };
        let mut migrated_from = None;
        match version {
            None => Self::initialize(&db).map_err(open_error)?,
            Some(None) => {
                return Err(StorageError::Corrupt {
                    path: path.into(),
                    detail: format!("the `meta` table has no `{META_FORMAT_VERSION}` row"),
                })
            }
            Some(Some(FORMAT_VERSION)) => {}
            Some(Some(found)) => {
                let refused = StorageError::FormatVersion {
                    path: path.into(),
                    found,
                    supported: FORMAT_VERSION,
                };
                let Some(steps) = upgrade_path(upgrades, found) else { return Err(refused) };
                Self::migrate(&db, &steps).map_err(|failure| match failure {
                    MigrateFailure::Redb(error) => open_error(error),
                    MigrateFailure::Record { client_id, detail } => StorageError::Migrate {
                        path: path.into(),
                        from: found,
                        detail: format!("the session of client id {client_id:?}: {detail}"),
                    },
                })?;
                migrated_from = Some(found);
            }
        }
        let durability = match durability {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::None => redb::Durability::None,
        };
        Ok(ShardStore {
            db,
            path: path.into(),
            durability,
            needs_reopen: AtomicBool::new(false),
            migrated_from,
        })
    }

    /// Applies `steps` (consecutive, from the file's version up to [`FORMAT_VERSION`]) and
    /// records the new version, in one write transaction with redb's default, immediate,
    /// durability: a crash leaves the file wholly as it was or wholly migrated. A failing step
    /// drops the transaction, which aborts it.
    ///
    /// Each rewritten table is read into memory first (redb cannot write a table while
    /// iterating it); `load` holds the same rows in memory at start-up anyway.
    fn migrate(db: &redb::Database, steps: &[Upgrade]) -> Result<(), MigrateFailure> {
        let write = db.begin_write()?;
        {
            let mut sessions = write.open_table(SESSIONS)?;
            for step in steps {
                let mut rows = Vec::new();
                for row in sessions.iter()? {
                    let (client_id, record) = row?;
                    rows.push((client_id.value().to_owned(), record.value().to_vec()));
                }
                for (client_id, record) in rows {
                    let rewritten = (step.sessions)(&record).map_err(|detail| {
                        MigrateFailure::Record { client_id: client_id.clone(), detail }
                    })?;
                    sessions.insert(client_id.as_str(), rewritten.as_slice())?;
                }
            }
            write.open_table(META)?.insert(META_FORMAT_VERSION, FORMAT_VERSION)?;
        }
        write.commit()?;
        Ok(())
    }

    /// The format version this open migrated the file from (`None`: the file was already of
    /// [`FORMAT_VERSION`], or new), for the caller's log.
    pub fn migrated_from(&self) -> Option<u32> {
        self.migrated_from
    }

    /// Creates every table and records the format version, durably whatever the configured
    /// durability, so that a new file is never left without its version.
    fn initialize(db: &redb::Database) -> Result<(), redb::Error> {
        let write = db.begin_write()?;
        {
            write.open_table(META)?.insert(META_FORMAT_VERSION, FORMAT_VERSION)?;
            write.open_table(SESSIONS)?;
            write.open_table(MESSAGES)?;
            write.open_table(INCOMING_QOS2)?;
            write.open_table(RETAINED)?;
            write.open_table(WILLS)?;
            write.open_table(RETAINED_MARKS)?;
        }
        write.commit()?;
        Ok(())
    }

    /// The shard file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops`, in order, in one write transaction, committed with the store's
    /// [`Durability`]. An empty batch commits nothing.
    ///
    /// On `Ok` with [`Durability::Immediate`] the whole batch is on disk; on `Err` none of it is
    /// visible through this handle, which then refuses every later commit with
    /// [`StorageError::NeedsReopen`] (see [`ShardStore`], "After a failed commit").
    ///
    /// # Panics
    ///
    /// If an [`Op::PutMessage`] or [`Op::PutIncomingQos2`] names a client without a session row
    /// at that point of the batch: the caller broke an invariant of the format. The transaction
    /// is aborted first, so the file and this handle stay as they were.
    pub fn commit(&self, ops: &[Op]) -> Result<(), StorageError> {
        if self.needs_reopen.load(Ordering::Acquire) {
            return Err(StorageError::NeedsReopen { path: self.path.clone() });
        }
        if ops.is_empty() {
            return Ok(());
        }
        match self.commit_batch(ops) {
            Ok(()) => Ok(()),
            Err(CommitFailure::Orphan(detail)) => {
                // commit_batch dropped its transaction, which aborted it, before returning.
                panic!("shard store {}: {detail}", self.path.display())
            }
            Err(CommitFailure::Redb(error)) => {
                self.needs_reopen.store(true, Ordering::Release);
                Err(match error {
                    // The latch was set by an earlier failed read (load); say what to do.
                    redb::Error::PreviousIo => {
                        StorageError::NeedsReopen { path: self.path.clone() }
                    }
                    source => StorageError::Commit { path: self.path.clone(), source },
                })
            }
        }
    }

    fn commit_batch(&self, ops: &[Op]) -> Result<(), CommitFailure> {
        let mut write = self.db.begin_write().map_err(redb::Error::from)?;
        write.set_durability(self.durability).map_err(redb::Error::from)?;
        {
            let mut sessions = write.open_table(SESSIONS).map_err(redb::Error::from)?;
            let mut messages = write.open_table(MESSAGES).map_err(redb::Error::from)?;
            let mut incoming_qos2 = write.open_table(INCOMING_QOS2).map_err(redb::Error::from)?;
            let mut retained = write.open_table(RETAINED).map_err(redb::Error::from)?;
            let mut wills = write.open_table(WILLS).map_err(redb::Error::from)?;
            let mut marks = write.open_table(RETAINED_MARKS).map_err(redb::Error::from)?;
            let has_session = |sessions: &redb::Table<&str, &[u8]>, client_id: &str| {
                sessions.get(client_id).map(|row| row.is_some())
            };
            for op in ops {
                match op {
                    Op::PutSession { client_id, record } => {
                        sessions.insert(client_id.as_str(), record.as_slice())?;
                    }
                    Op::DeleteSession { client_id } => {
                        let client_id = client_id.as_str();
                        sessions.remove(client_id)?;
                        // A session's rows are contiguous in key order, so one range covers them.
                        messages.retain_in((client_id, 0)..=(client_id, u64::MAX), |_, _| false)?;
                        incoming_qos2
                            .retain_in((client_id, 0)..=(client_id, u16::MAX), |_, _| false)?;
                        wills.remove(client_id)?;
                    }
                    Op::PutMessage { client_id, seq, record } => {
                        if !has_session(&sessions, client_id)? {
                            return Err(CommitFailure::orphan("PutMessage", client_id));
                        }
                        messages.insert((client_id.as_str(), *seq), record.as_slice())?;
                    }
                    Op::DeleteMessage { client_id, seq } => {
                        messages.remove((client_id.as_str(), *seq))?;
                    }
                    Op::PutIncomingQos2 { client_id, packet_id } => {
                        if !has_session(&sessions, client_id)? {
                            return Err(CommitFailure::orphan("PutIncomingQos2", client_id));
                        }
                        incoming_qos2.insert((client_id.as_str(), *packet_id), ())?;
                    }
                    Op::DeleteIncomingQos2 { client_id, packet_id } => {
                        incoming_qos2.remove((client_id.as_str(), *packet_id))?;
                    }
                    Op::PutRetained { topic, record } => {
                        retained.insert(topic.as_str(), record.as_slice())?;
                    }
                    Op::DeleteRetained { topic } => {
                        retained.remove(topic.as_str())?;
                    }
                    Op::PutRetainedMark { topic, record } => {
                        marks.insert(topic.as_str(), record.as_slice())?;
                    }
                    Op::DeleteRetainedMark { topic } => {
                        marks.remove(topic.as_str())?;
                    }
                    Op::PutWill { client_id, record } => {
                        wills.insert(client_id.as_str(), record.as_slice())?;
                    }
                    Op::DeleteWill { client_id } => {
                        wills.remove(client_id.as_str())?;
                    }
                }
            }
        }
        write.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Reads the whole store back, in one read transaction, for recovery at start-up.
    ///
    /// Fails with [`StorageError::Corrupt`] if a message or packet-id row has no session row,
    /// which this crate never writes.
    pub fn load(&self) -> Result<Snapshot, StorageError> {
        self.load_rows().map_err(|failure| match failure {
            LoadFailure::Redb(redb::Error::PreviousIo) => {
                StorageError::NeedsReopen { path: self.path.clone() }
            }
            LoadFailure::Redb(source) => StorageError::Read { path: self.path.clone(), source },
            LoadFailure::Orphan(detail) => {
                StorageError::Corrupt { path: self.path.clone(), detail }
            }
        })
    }

    fn load_rows(&self) -> Result<Snapshot, LoadFailure> {
        let read = self.db.begin_read().map_err(redb::Error::from)?;
        let mut snapshot = Snapshot::default();

        for row in read.open_table(SESSIONS).map_err(redb::Error::from)?.iter()? {
            let (client_id, record) = row?;
            snapshot.sessions.push(SessionSnapshot {
                client_id: client_id.value().to_owned(),
                record: record.value().to_vec(),
                messages: Vec::new(),
                incoming_qos2: Vec::new(),
            });
        }

        // Sessions, messages and packet ids are all sorted by client id first, so each row's
        // session is found by walking forward through `sessions`: one pass, no lookups.
        let mut owner = SessionCursor::default();
        for row in read.open_table(MESSAGES).map_err(redb::Error::from)?.iter()? {
            let (key, record) = row?;
            let (client_id, seq) = key.value();
            let session = owner.find(&mut snapshot.sessions, client_id, "message")?;
            session.messages.push((seq, record.value().to_vec()));
        }
        let mut owner = SessionCursor::default();
        for row in read.open_table(INCOMING_QOS2).map_err(redb::Error::from)?.iter()? {
            let (key, _unit) = row?;
            let (client_id, packet_id) = key.value();
            let session = owner.find(&mut snapshot.sessions, client_id, "incoming_qos2")?;
            session.incoming_qos2.push(packet_id);
        }

        for row in read.open_table(RETAINED).map_err(redb::Error::from)?.iter()? {
            let (topic, record) = row?;
            snapshot.retained.push((topic.value().to_owned(), record.value().to_vec()));
        }
        for row in read.open_table(WILLS).map_err(redb::Error::from)?.iter()? {
            let (client_id, record) = row?;
            snapshot.wills.push((client_id.value().to_owned(), record.value().to_vec()));
        }
        // Files written before the table existed have none: nothing is marked.
        match read.open_table(RETAINED_MARKS) {
            Ok(table) => {
                for row in table.iter()? {
                    let (topic, record) = row?;
                    snapshot
                        .retained_marks
                        .push((topic.value().to_owned(), record.value().to_vec()));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(redb::Error::from(error).into()),
        }
        Ok(snapshot)
    }
}

/// The upgrades that take a file of format `found` to [`FORMAT_VERSION`], in order, or `None`
/// if `found` is not older or a step is missing.
fn upgrade_path(upgrades: &[Upgrade], found: u32) -> Option<Vec<Upgrade>> {
    if found == 0 || found >= FORMAT_VERSION {
        return None;
    }
    (found..FORMAT_VERSION)
        .map(|from| upgrades.iter().find(|upgrade| upgrade.from == from).copied())
        .collect()
}

/// Why `migrate` failed: redb, or a record the upgrade could not rewrite.
enum MigrateFailure {
    Redb(redb::Error),
    Record { client_id: String, detail: String },
}

impl<E: Into<redb::Error>> From<E> for MigrateFailure {
    fn from(error: E) -> Self {
        MigrateFailure::Redb(error.into())
    }
}

/// Walks forward through sessions sorted by client id, to group rows sorted the same way.
#[derive(Default)]
struct SessionCursor {
    index: usize,
}

impl SessionCursor {
    fn find<'s>(
        &mut self,
        sessions: &'s mut [SessionSnapshot],
        client_id: &str,
        table: &str,
    ) -> Result<&'s mut SessionSnapshot, LoadFailure> {
        while sessions.get(self.index).is_some_and(|session| session.client_id.as_str() < client_id)
        {
            self.index += 1;
        }
        match sessions.get_mut(self.index) {
            Some(session) if session.client_id == client_id => Ok(session),
            _ => Err(LoadFailure::Orphan(format!(
                "a `{table}` row for client id {client_id:?}, which has no session row"
            ))),
        }
    }
}

/// Why `commit_batch` failed: redb, or a batch that breaks the format's invariants.
enum CommitFailure {
    Redb(redb::Error),
    Orphan(String),
}

impl CommitFailure {
    fn orphan(op: &str, client_id: &str) -> Self {
        CommitFailure::Orphan(format!(
            "{op} for client id {client_id:?}, which has no session row: \
             the batch must put the session first"
        ))
    }
}

impl<E: Into<redb::Error>> From<E> for CommitFailure {
    fn from(error: E) -> Self {
        CommitFailure::Redb(error.into())
    }
}

/// Why `load_rows` failed: redb, or a row without its session.
enum LoadFailure {
    Redb(redb::Error),
    Orphan(String),
}

impl<E: Into<redb::Error>> From<E> for LoadFailure {
    fn from(error: E) -> Self {
        LoadFailure::Redb(error.into())
    }
}

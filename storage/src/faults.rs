//! Fault injection for tests, in this crate and in the crates above it (feature
//! `fault-injection`): a redb backend over the shard file that starts failing its writes and
//! fsyncs on demand, as a full disk does, and recovers when told.

use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::store::CACHE_BYTES_MAX;
use crate::{Durability, ShardStore, StorageError, Upgrade};

/// The switch a test holds to make its backend fail and recover.
#[derive(Debug)]
pub struct Faults {
    /// Mutating calls (write, set_len, sync_data) still allowed before the backend starts
    /// failing; `u64::MAX` means never.
    calls_left: AtomicU64,
    /// While set, every mutating call fails with ENOSPC.
    failing: AtomicBool,
    /// Mutating calls seen, to size the sweep over failure points.
    calls: AtomicU64,
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults {
            calls_left: AtomicU64::new(u64::MAX),
            failing: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        })
    }

    /// Fail every mutating call after the next `calls` ones.
    pub fn fail_after(&self, calls: u64) {
        self.calls_left.store(calls, Ordering::SeqCst);
    }

    /// The disk has space again.
    pub fn recover(&self) {
        self.calls_left.store(u64::MAX, Ordering::SeqCst);
        self.failing.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.calls_left.load(Ordering::SeqCst);
        if left == 0 {
            self.failing.store(true, Ordering::SeqCst);
        } else if left != u64::MAX {
            self.calls_left.store(left - 1, Ordering::SeqCst);
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device"));
        }
        Ok(())
    }
}

/// redb's file backend, with every mutating call first checked against [`Faults`]. Reads and
/// locks pass through: a full disk still reads.
#[derive(Debug)]
pub struct FaultyBackend {
    pub(crate) file: FileBackend,
    pub(crate) faults: Arc<Faults>,
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.faults.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.faults.check()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.faults.check()?;
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

impl Faults {
    /// Mutating backend calls seen so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ShardStore {
    /// Opens (creating if needed, migrating with `upgrades` as [`ShardStore::open`] does) the
    /// shard file at `path` behind a backend that fails when `faults` says so.
    pub fn open_faulty(
        path: &Path,
        durability: Durability,
        upgrades: &[Upgrade],
        faults: Arc<Faults>,
    ) -> Result<ShardStore, StorageError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|error| StorageError::Open {
                path: path.into(),
                source: redb::Error::Io(error),
            })?;
        let backend = FileBackend::new(file)
            .map_err(|error| StorageError::Open { path: path.into(), source: error.into() })?;
        ShardStore::open_with_backend(
            path,
            FaultyBackend { file: backend, faults },
            durability,
            upgrades,
            CACHE_BYTES_MAX,
        )
    }
}

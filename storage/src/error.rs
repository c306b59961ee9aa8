//! The storage crate's one error type. Every message names the shard file and the step that
//! failed, because an operator reading a log line has nothing else to go on.

use std::path::PathBuf;

/// Why a [`ShardStore`](crate::ShardStore) operation failed.
///
/// I/O errors (a full disk, EIO) are never panics: they come back as [`StorageError::Open`],
/// [`StorageError::Commit`] or [`StorageError::Read`], with redb's error (and, through it, the
/// `std::io::Error`) as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The file could not be opened or created, or its tables could not be set up: a missing
    /// directory, permissions, the file already open (in this process or another), not a redb
    /// file, or an I/O error during the repair redb runs after a crash.
    #[error("cannot open shard store {}: {source}", path.display())]
    Open {
        /// The shard file.
        path: PathBuf,
        /// What redb reported.
        source: redb::Error,
    },

    /// The file was written in a storage format this build does not read.
    #[error(
        "shard store {} has storage format {found}, but this build reads format {supported}; \
         start with an empty data directory or use the shardmq version that wrote it",
        path.display()
    )]
    FormatVersion {
        /// The shard file.
        path: PathBuf,
        /// The format version recorded in the file's `meta` table.
        found: u32,
        /// The format version this build writes ([`crate::FORMAT_VERSION`]).
        supported: u32,
    },

    /// The file is of an older format, and one of its records could not be rewritten in the
    /// current one (a damaged record). The migration's transaction was aborted: the file is as
    /// it was.
    #[error(
        "cannot migrate shard store {} from storage format {from} to {}: {detail}; \
         the file was left as it was",
        path.display(),
        crate::FORMAT_VERSION
    )]
    Migrate {
        /// The shard file.
        path: PathBuf,
        /// The format version recorded in the file.
        from: u32,
        /// Which record failed, and why.
        detail: String,
    },

    /// A commit failed. Nothing of the batch is visible to this handle, but whether the batch
    /// reached the disk is unknown (the failure may have hit the final fsync). This handle now
    /// refuses further commits with [`StorageError::NeedsReopen`].
    #[error("commit to shard store {} failed: {source}", path.display())]
    Commit {
        /// The shard file.
        path: PathBuf,
        /// What redb reported; for a full disk, an `io::Error` of kind `StorageFull`.
        source: redb::Error,
    },

    /// An earlier commit (or an I/O error while reading) failed, and redb refuses to write
    /// through this handle until the file is reopened. Drop the [`ShardStore`](crate::ShardStore)
    /// and open the file again: the open repairs the file from its last durable commit.
    #[error(
        "shard store {} refuses writes after an earlier I/O or commit failure; \
         drop it and open the file again",
        path.display()
    )]
    NeedsReopen {
        /// The shard file.
        path: PathBuf,
    },

    /// Reading the store back failed.
    #[error("cannot read shard store {}: {source}", path.display())]
    Read {
        /// The shard file.
        path: PathBuf,
        /// What redb reported.
        source: redb::Error,
    },

    /// The file's contents break an invariant of `docs/storage-format.md` (for example a message
    /// row whose client has no session row). This build never writes such a file.
    #[error("shard store {} is inconsistent: {detail}", path.display())]
    Corrupt {
        /// The shard file.
        path: PathBuf,
        /// Which invariant failed, and for which key.
        detail: String,
    },
}

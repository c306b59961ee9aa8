//! Where shard files live in a data directory: `<data_dir>/shard-<n>.redb`, one per shard.
//!
//! The engine lists the files present at start-up because the shard count may have changed
//! between runs; it then re-homes the sessions of every file to `hash(client_id) mod shards`.

use std::io;
use std::path::{Path, PathBuf};

const PREFIX: &str = "shard-";
const SUFFIX: &str = ".redb";

/// The file of shard `n` in `data_dir`: `<data_dir>/shard-<n>.redb`.
pub fn shard_file(data_dir: &Path, n: u16) -> PathBuf {
    data_dir.join(format!("{PREFIX}{n}{SUFFIX}"))
}

/// The shard files present in `data_dir`, as `(n, path)` sorted by `n`.
///
/// Only names exactly as [`shard_file`] writes them count (`shard-7.redb`, not `shard-07.redb`
/// nor `shard-7.redb.bak`), so a stray copy cannot be mistaken for a second shard 7. Errors
/// (including a missing `data_dir`) name the directory.
pub fn shard_files(data_dir: &Path) -> io::Result<Vec<(u16, PathBuf)>> {
    let with_dir = |error: io::Error| {
        io::Error::new(
            error.kind(),
            format!("cannot list shard files in {}: {error}", data_dir.display()),
        )
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(with_dir)? {
        let entry = entry.map_err(with_dir)?;
        // A name that is not UTF-8 cannot be one this crate wrote.
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Some(n) = parse_shard_file_name(&name) else { continue };
        found.push((n, entry.path()));
    }
    found.sort_unstable_by_key(|(n, _)| *n);
    Ok(found)
}

/// Makes the entries of `data_dir` durable: the shard files created in it and the ones removed
/// from it since its last sync (an fsync of the directory itself).
///
/// A file's own fsync makes its contents durable, not its name. ext4 and XFS commit a create
/// or an unlink with the next fsync of any file, but POSIX asks for the directory's fsync, and a
/// filesystem whose fsync logs only the file synced (as btrfs's log tree can) may bring a
/// removed file back after a power cut. A shard file removed after a shard-count change that came back would be read again at
/// the next start, and the sessions deleted since would return from it with their messages
/// (`tests/tests/power_cut_rehome.rs` shows that on a filesystem with a strict rule).
pub fn sync_data_dir(data_dir: &Path) -> io::Result<()> {
    std::fs::File::open(data_dir).and_then(|dir| dir.sync_all()).map_err(|error| {
        io::Error::new(error.kind(), format!("cannot fsync {}: {error}", data_dir.display()))
    })
}

/// `Some(n)` when `name` is exactly the name [`shard_file`] gives shard `n`.
fn parse_shard_file_name(name: &str) -> Option<u16> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let n: u16 = digits.parse().ok()?;
    // Round-tripping rejects "+7", "07" and other spellings `parse` accepts.
    (n.to_string() == digits).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_names() {
        let check = |name: &str, expected: Option<u16>| {
            assert_eq!(parse_shard_file_name(name), expected, "{name}");
        };
        check("shard-0.redb", Some(0));
        check("shard-65535.redb", Some(65535));
        check("shard-07.redb", None);
        check("shard-+7.redb", None);
        check("shard-65536.redb", None);
        check("shard-7.redb.bak", None);
        check("shard-.redb", None);
        check("Shard-7.redb", None);
    }

    #[test]
    fn syncing_the_data_dir_works_and_a_missing_one_is_named() {
        sync_data_dir(&std::env::temp_dir()).unwrap();
        let missing = std::env::temp_dir().join("shardmq-no-such-data-dir");
        let error = sync_data_dir(&missing).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("shardmq-no-such-data-dir"), "{error}");
    }
}

//! A FUSE filesystem that simulates power cuts: it keeps written data only once an fsync made
//! it durable, and a cut drops everything else. `kill -9` leaves the kernel's page cache
//! intact, so it cannot show whether a program fsyncs the right things at the right time;
//! a cut on this filesystem can.
//!
//! # Semantics
//!
//! Every file and directory exists twice: as the running system sees it (the *live* state,
//! like the page cache: every write, truncate, create, unlink and rename changes it at once
//! and readers see it) and as the disk holds it (the *durable* state). All of it lives in this
//! process's memory.
//!
//! **Data.** `fsync` or `fdatasync` of a file makes its live bytes and size durable. Writes and
//! `set_len`/`ftruncate` after that are live only. `close` keeps nothing.
//!
//! **Metadata.** A directory entry (created, removed, or moved by a rename) becomes durable
//! when
//! - its directory is fsynced (`fsyncdir`: all of that directory's entries), or
//! - the inode it names is fsynced (`fsync`/`fdatasync` of the file, or `fsyncdir` of a
//!   directory): every entry naming that inode, in any directory, including the removal of
//!   its old name by a rename.
//!
//! Nothing else becomes durable with it: not the other entries of the same directory, not the
//! directory's own entry in its parent. This is stricter than ext4 (`data=ordered`), where an
//! fsync commits the whole journal, so every metadata change made before it (other files'
//! creations, the `mkdir` of the parent) becomes durable too, and where a rename over an
//! existing file also flushes the renamed file's data (`auto_da_alloc`). The second rule is
//! what ext4 gives at least: the journal transaction that an fsync (or an fdatasync, since a
//! new inode's creation counts as data-relevant metadata) commits holds the entry's change.
//! A test that passes here therefore passes on ext4; a failure here may be one that ext4 would
//! hide, and is worth a look either way.
//!
//! [`NameRule::DirectoryOnly`] drops the second way: only a directory's fsync makes its
//! entries durable, as a strict reading of POSIX has it.
//!
//! **A cut** ([`PowercutFs::cut`]) unmounts the filesystem (which drops the kernel's caches),
//! sets every inode back to its durable state, forgets the inodes no durable entry reaches,
//! and mounts it again: the directory then shows exactly the durable state. The program
//! using the filesystem must be dead first (the unmount fails while files are open), which
//! is also what makes the cut honest: nothing can be written after the data was dropped.
//! [`CutMode::KeepSome`] keeps a random part of the unsynced blocks instead of none, as a disk
//! that wrote back some of the page cache on its own would.
//!
//! **Not modelled:** permissions, owners and times (kept as they are); hard links, symlinks
//! and special files (refused); renaming a directory into another directory (refused);
//! torn writes within a 4 KiB block (a block is written whole or not at all); a lying disk
//! cache, except as [`FsyncMode::Lie`], which acknowledges fsync and keeps nothing, for
//! negative controls.
//!
//! File locks are left to the kernel's local lock handling (see [`fuse`]).
//!
//! # Use
//!
//! Tests mount it in-process with [`PowercutFs::mount`]; the `powercut-fs` binary mounts it
//! from the shell and cuts on a line `cut` on its standard input.

pub mod fuse;
pub mod model;
#[cfg(test)]
mod model_tests;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption};

pub use model::{CutMode, FsyncMode, Model, NameRule};

/// A mounted power-cut filesystem. Dropping it unmounts it.
#[derive(Debug)]
pub struct PowercutFs {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

/// What one [`PowercutFs::cut`] did, for reports.
#[derive(Debug, Clone, Copy)]
pub struct CutReport {
    /// From the start of the unmount to the filesystem being served again.
    pub took: Duration,
    /// Files and directories that existed only in the page cache and are gone.
    pub inodes_dropped: usize,
    /// fsync calls served before the cut, since the filesystem was made (over all its cuts).
    pub fsyncs: u64,
}

impl PowercutFs {
    /// Mounts an empty filesystem on the existing directory `mountpoint`, whose owner owns the
    /// filesystem's root. Fails (never skips) when `/dev/fuse` is missing.
    pub fn mount(mountpoint: &Path) -> io::Result<PowercutFs> {
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "/dev/fuse is missing: the power-cut filesystem needs FUSE (load the fuse \
                 module, or give the container the device)",
            ));
        }
        let metadata = std::fs::metadata(mountpoint)?;
        let model = Arc::new(Mutex::new(Model::new(metadata.uid(), metadata.gid())));
        let mut fs = PowercutFs { model, mountpoint: mountpoint.to_owned(), session: None };
        fs.session = Some(fs.start_session()?);
        Ok(fs)
    }

    fn start_session(&self) -> io::Result<BackgroundSession> {
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("powercut".into())];
        let filesystem = fuse::PowercutFuse::new(self.model.clone());
        fuser::spawn_mount(filesystem, &self.mountpoint, &config).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "cannot mount the power-cut filesystem on {}: {error}",
                    self.mountpoint.display()
                ),
            )
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The model, to set modes or read counters (tests only read files through the mount).
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets what fsync does from now on.
    pub fn set_fsync_mode(&self, mode: FsyncMode) {
        self.model().set_fsync_mode(mode);
    }

    /// Sets which fsync makes a name durable from now on.
    pub fn set_name_rule(&self, rule: NameRule) {
        self.model().set_name_rule(rule);
    }

    /// The power cut: unmounts (failing, with nothing dropped and the filesystem still
    /// mounted, if anything still has a file open or its working directory here; kill the
    /// program first), drops what no fsync made durable, and mounts the durable state again
    /// on the same directory.
    pub fn cut(&mut self, mode: CutMode) -> io::Result<CutReport> {
        let started = Instant::now();
        self.unmount_session()?;
        let (inodes_dropped, fsyncs) = {
            let mut model = self.model();
            let fsyncs = model.fsyncs();
            (model.cut(mode), fsyncs)
        };
        self.session = Some(self.start_session()?);
        Ok(CutReport { took: started.elapsed(), inodes_dropped, fsyncs })
    }

    /// Unmounts and waits until the last request was served. A busy mount (a file still open,
    /// a working directory inside) is an error that leaves the filesystem mounted and served,
    /// so the caller can close what is open and try again.
    fn unmount_session(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let failed = |error: io::Error| {
            io::Error::new(
                error.kind(),
                format!(
                    "cannot unmount {} (is a process still using it?): {error}",
                    self.mountpoint.display()
                ),
            )
        };
        match nix::mount::umount(&self.mountpoint) {
            // The session's loop ends once the kernel has let go; its own unmount then finds
            // nothing left to do.
            Ok(()) => session.join().map_err(failed),
            Err(nix::errno::Errno::EBUSY) => {
                self.session = Some(session);
                Err(failed(io::Error::from_raw_os_error(libc::EBUSY)))
            }
            // Not root: fusermount3 unmounts for us.
            Err(_) => session.umount_and_join().map_err(failed),
        }
    }

    /// Unmounts the filesystem; its contents are gone.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_session()
    }
}

impl Drop for PowercutFs {
    fn drop(&mut self) {
        if let Err(error) = self.unmount_session() {
            eprintln!("powercut: {error}");
        }
    }
}

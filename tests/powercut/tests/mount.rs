//! The power-cut filesystem through a real FUSE mount and real system calls (the ones redb and
//! the broker make: create, pwrite/pread, set_len, fsync/fdatasync, rename, locks). Needs
//! /dev/fuse: without it these tests fail, they do not skip.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use shardmq_powercut::{CutMode, FsyncMode, PowercutFs};

/// A fresh directory to mount on, removed (after the unmount) when dropped.
struct Mounted {
    fs: Option<PowercutFs>,
    dir: PathBuf,
}

impl Mounted {
    fn new() -> Mounted {
        static MOUNTS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "powercut-test-{}-{}",
            std::process::id(),
            MOUNTS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let fs = PowercutFs::mount(&dir).unwrap_or_else(|error| panic!("{error}"));
        Mounted { fs: Some(fs), dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn fs(&mut self) -> &mut PowercutFs {
        self.fs.as_mut().expect("mounted")
    }

    fn cut(&mut self) {
        self.fs().cut(CutMode::DropAll).expect("cut");
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        drop(self.fs.take());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_write_without_fsync_is_gone_after_a_cut() {
    let mut mount = Mounted::new();
    std::fs::write(mount.path("f"), b"page cache only").unwrap();
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"page cache only", "readers see it");
    mount.cut();
    assert_eq!(mount.names(), Vec::<String>::new());
}

#[test]
fn fsynced_data_is_kept_and_later_writes_are_not() {
    let mut mount = Mounted::new();
    {
        let mut file = File::create(mount.path("f")).unwrap();
        file.write_all(b"durable").unwrap();
        file.sync_all().unwrap();
        file.write_all(b" and lost").unwrap();
        file.write_at(b"D", 0).unwrap();
    }
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"Durable and lost");
    mount.cut();
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"durable");
}

#[test]
fn fdatasync_keeps_pwrites_and_set_len_as_redb_makes_them() {
    let mut mount = Mounted::new();
    {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(mount.path("db"))
            .unwrap();
        file.set_len(64 * 1024).unwrap();
        file.write_at(b"header", 0).unwrap();
        file.write_at(b"page", 40_000).unwrap();
        file.sync_data().unwrap();
        file.set_len(128 * 1024).unwrap();
        file.write_at(b"HEADER", 0).unwrap();
    }
    mount.cut();
    let file = File::open(mount.path("db")).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 64 * 1024);
    let mut buf = [0; 6];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"header");
    file.read_exact_at(&mut buf[..4], 40_000).unwrap();
    assert_eq!(&buf[..4], b"page");
}

#[test]
fn a_rename_needs_the_directory_or_the_file_synced() {
    let mut mount = Mounted::new();
    std::fs::write(mount.path("target"), b"old").unwrap();
    File::open(mount.path("target")).unwrap().sync_all().unwrap();
    std::fs::write(mount.path("target.tmp"), b"new").unwrap();
    File::open(mount.path("target.tmp")).unwrap().sync_all().unwrap();
    std::fs::rename(mount.path("target.tmp"), mount.path("target")).unwrap();
    mount.cut();
    assert_eq!(mount.names(), ["target", "target.tmp"], "the rename was undone");
    assert_eq!(std::fs::read(mount.path("target")).unwrap(), b"old");

    std::fs::rename(mount.path("target.tmp"), mount.path("target")).unwrap();
    File::open(&mount.dir).unwrap().sync_all().unwrap();
    mount.cut();
    assert_eq!(mount.names(), ["target"]);
    assert_eq!(std::fs::read(mount.path("target")).unwrap(), b"new");
}

#[test]
fn locks_work_between_open_files_as_redb_needs() {
    let mount = Mounted::new();
    let first = File::create(mount.path("locked")).unwrap();
    let second = File::open(mount.path("locked")).unwrap();
    first.try_lock().expect("the first lock");
    match second.try_lock() {
        Err(std::fs::TryLockError::WouldBlock) => {}
        other => panic!("a second exclusive lock must be refused, got {other:?}"),
    }
    first.unlock().unwrap();
    second.try_lock().expect("free again");
}

#[test]
fn a_lying_fsync_loses_everything_at_the_cut() {
    let mut mount = Mounted::new();
    mount.fs().set_fsync_mode(FsyncMode::Lie);
    let mut file = File::create(mount.path("f")).unwrap();
    file.write_all(b"acknowledged").unwrap();
    file.sync_all().unwrap();
    drop(file);
    File::open(&mount.dir).unwrap().sync_all().unwrap();
    mount.cut();
    assert_eq!(mount.names(), Vec::<String>::new());
}

/// The cut refuses while a file is open (a program still running could write after the drop),
/// and works once it is closed.
#[test]
fn a_cut_refuses_while_a_file_is_open() {
    let mut mount = Mounted::new();
    let mut open = File::create(mount.path("f")).unwrap();
    open.write_all(b"x").unwrap();
    let error = mount.fs().cut(CutMode::DropAll).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResourceBusy, "{error}");
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"x", "still mounted, nothing dropped");
    drop(open);
    mount.cut();
    assert_eq!(mount.names(), Vec::<String>::new());
}

#[test]
fn a_missing_mountpoint_is_an_error() {
    let error = PowercutFs::mount(&PathBuf::from("/nonexistent/powercut")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
}

//! The FUSE side: each kernel request becomes one call on the shared [`Model`]. Nothing here
//! decides what is durable; that is all in the model.
//!
//! File locks (`flock`, `fcntl` and OFD locks, which redb takes on its file) are not
//! implemented on purpose: a FUSE filesystem that does not ask for lock support in its init
//! reply gets the kernel's local lock handling, which is exact for processes on this machine.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno as FuseErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Errno, Inode, Kind, Model, BLOCK};

/// How long the kernel may cache names and attributes. Every change goes through this
/// process, and a cut happens only while the filesystem is unmounted (which drops the
/// kernel's caches), so caching cannot show state a cut removed.
const TTL: Duration = Duration::from_secs(1);

/// The filesystem as FUSE sees it: a handle on the model the mount shares with its owner.
#[derive(Debug)]
pub struct PowercutFuse {
    model: Arc<Mutex<Model>>,
}

impl PowercutFuse {
    pub fn new(model: Arc<Mutex<Model>>) -> PowercutFuse {
        PowercutFuse { model }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock is a bug in the model; keep serving what is there.
        self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn attr_of(&self, ino: u64) -> Result<FileAttr, Errno> {
        Ok(attr(ino, self.model().inode(ino)?))
    }

    /// Applies a setattr's size (truncate) and mode (chmod); owners and times are not kept.
    fn set_attrs(&self, ino: u64, size: Option<u64>, mode: Option<u32>) -> Result<FileAttr, Errno> {
        let mut model = self.model();
        if let Some(len) = size {
            model.set_len(ino, len)?;
        }
        if let Some(mode) = mode {
            model.set_perm(ino, mode as u16)?;
        }
        Ok(attr(ino, model.inode(ino)?))
    }

    fn reply_entry(&self, ino: Result<u64, Errno>, reply: ReplyEntry) {
        match ino.and_then(|ino| self.attr_of(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }
}

/// The attributes the kernel sees for inode `ino`.
fn attr(ino: u64, inode: &Inode) -> FileAttr {
    let size = inode.size();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: inode.mtime,
        mtime: inode.mtime,
        ctime: inode.mtime,
        crtime: inode.mtime,
        kind: file_type(inode.kind()),
        perm: inode.perm,
        nlink: if inode.kind() == Kind::Dir { 2 } else { 1 },
        uid: inode.uid,
        gid: inode.gid,
        rdev: 0,
        blksize: BLOCK as u32,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

/// Replies `ok` or the error.
fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(FuseErrno::from_i32(error)),
    }
}

impl Filesystem for PowercutFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = self.model().lookup(parent.0, name);
        self.reply_entry(ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.set_attrs(ino.0, size, mode) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(FuseErrno::from_i32(libc::EPERM));
        }
        let perm = (mode & !umask & 0o7777) as u16;
        let ino = self.model().create(parent.0, name, Kind::File, perm, (req.uid(), req.gid()));
        self.reply_entry(ino, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let ino = self.model().create(parent.0, name, Kind::Dir, perm, (req.uid(), req.gid()));
        self.reply_entry(ino, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.model().remove(parent.0, name, Kind::File), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.model().remove(parent.0, name, Kind::Dir), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(FuseErrno::from_i32(libc::EINVAL));
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let result = self.model().rename((parent.0, name), (newparent.0, newname), no_replace);
        empty(result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // O_TRUNC arrives as a setattr of size 0 (this filesystem does not ask for atomic
        // O_TRUNC), so opening only checks that the inode exists.
        match self.model().inode(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is not a sync: it keeps nothing.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.model().fsync(ino.0), reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().list(ino.0) {
            Ok(entries) => entries,
            Err(error) => return reply.error(FuseErrno::from_i32(error)),
        };
        // "." and ".." first; offsets are positions in this listing, so a listing read in
        // several calls may skip or repeat a name changed between them, as on ext4.
        let dots = [(".".into(), ino.0, Kind::Dir), ("..".into(), ino.0, Kind::Dir)];
        let all = dots.into_iter().chain(entries);
        for (position, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), position as u64 + 1, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.model().fsync(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the model lives in memory, and the broker should not think the disk
        // is full.
        let blocks = 1 << 24;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, BLOCK as u32, 255, BLOCK as u32);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let result = {
            let mut model = self.model();
            model
                .create(parent.0, name, Kind::File, perm, (req.uid(), req.gid()))
                .and_then(|ino| Ok(attr(ino, model.inode(ino)?)))
        };
        match result {
            Ok(attr) => {
                reply.created(&TTL, &attr, Generation(0), FileHandle(0), FopenFlags::empty())
            }
            Err(error) => reply.error(FuseErrno::from_i32(error)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Plain preallocation only: it grows the file, like set_len, and is durable the same
        // way. Hole punching and the like are not needed by shardmq.
        if mode != 0 {
            return reply.error(FuseErrno::from_i32(libc::EOPNOTSUPP));
        }
        let result = {
            let mut model = self.model();
            match model.inode(ino.0).map(Inode::size) {
                Ok(size) if offset + length > size => model.set_len(ino.0, offset + length),
                Ok(_) => Ok(()),
                Err(error) => Err(error),
            }
        };
        empty(result, reply);
    }
}

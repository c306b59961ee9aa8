//! The filesystem's state without FUSE: inodes whose contents exist twice, as the running
//! system sees them (`live`, the page cache) and as the disk holds them (`durable`). Every
//! operation changes `live`; only [`Model::fsync`] copies `live` to `durable`; [`Model::cut`]
//! throws `live` away. The FUSE layer ([`crate::fuse`]) only translates requests into these
//! calls, so the semantics are tested here without a mount.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

/// Bytes per block of file data. Copy-on-write happens per block, so an fsync that makes a
/// file durable costs one pointer per block, not a copy of the file.
pub const BLOCK: usize = 4096;

/// The inode number of the root directory (FUSE's fixed root).
pub const ROOT: u64 = 1;

/// An error as an errno value, which is what FUSE replies carry.
pub type Errno = i32;

/// One block of file data, shared between `live` and `durable` until written.
type Block = Arc<[u8; BLOCK]>;

/// A file's bytes: its size and the blocks that hold anything. A missing block reads as zeros
/// (a hole); bytes of a block past `size` are always zero, so growing a file shows zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Data {
    size: u64,
    blocks: BTreeMap<u64, Block>,
}

impl Data {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Up to `len` bytes from `offset`, fewer at the end of the file.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let (index, within) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let take = (BLOCK - within).min((end - at) as usize);
            match self.blocks.get(&index) {
                Some(block) => out.extend_from_slice(&block[within..within + take]),
                None => out.resize(out.len() + take, 0),
            }
            at += take as u64;
        }
        out
    }

    /// Writes `bytes` at `offset`, growing the file if they reach past its end.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let mut at = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let (index, within) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let take = (BLOCK - within).min(rest.len());
            let block = self.blocks.entry(index).or_insert_with(|| Arc::new([0; BLOCK]));
            Arc::make_mut(block)[within..within + take].copy_from_slice(&rest[..take]);
            at += take as u64;
            rest = &rest[take..];
        }
        self.size = self.size.max(at);
    }

    /// Truncates or extends the file to `len` bytes (`ftruncate`, `set_len`).
    pub fn set_len(&mut self, len: u64) {
        if len < self.size {
            let first_gone = len.div_ceil(BLOCK as u64);
            self.blocks.retain(|&index, _| index < first_gone);
            let within = (len % BLOCK as u64) as usize;
            if within != 0 {
                if let Some(block) = self.blocks.get_mut(&(len / BLOCK as u64)) {
                    Arc::make_mut(block)[within..].fill(0);
                }
            }
        }
        self.size = len;
    }

    /// Indexes of the blocks whose bytes differ between `self` and `other`.
    fn differing_blocks(&self, other: &Data) -> Vec<u64> {
        let indexes: BTreeSet<u64> =
            self.blocks.keys().chain(other.blocks.keys()).copied().collect();
        indexes
            .into_iter()
            .filter(|index| match (self.blocks.get(index), other.blocks.get(index)) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b) && a != b,
                (Some(block), None) | (None, Some(block)) => block.iter().any(|&byte| byte != 0),
                (None, None) => false,
            })
            .collect()
    }
}

/// A directory's entries: name → inode number.
pub type Entries = BTreeMap<OsString, u64>;

/// What an inode holds, in both versions.
#[derive(Clone, Debug)]
pub enum Node {
    File { live: Data, durable: Data },
    Dir { live: Entries, durable: Entries },
}

/// The kind of an inode, for attributes and directory listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// One file or directory. Permissions, owner and times are not part of the durability model:
/// they keep their latest value across a cut (nothing in shardmq depends on them).
#[derive(Clone, Debug)]
pub struct Inode {
    pub node: Node,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
}

impl Inode {
    pub fn kind(&self) -> Kind {
        match self.node {
            Node::File { .. } => Kind::File,
            Node::Dir { .. } => Kind::Dir,
        }
    }

    /// The size the running system sees (directories: their live entry count).
    pub fn size(&self) -> u64 {
        match &self.node {
            Node::File { live, .. } => live.size(),
            Node::Dir { live, .. } => live.len() as u64,
        }
    }
}

/// What an fsync does; [`FsyncMode::Lie`] exists for negative controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncMode {
    /// fsync and fdatasync make the inode durable (see the crate docs for the rule).
    #[default]
    Keep,
    /// fsync returns success and keeps nothing, as a disk with a lying write cache would: a
    /// test that passes in this mode is not testing durability.
    Lie,
}

/// Which fsync makes a directory entry (a create, an unlink, a rename) durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NameRule {
    /// Its directory's fsync, or the fsync of the inode it names: at least what ext4 gives
    /// (see the crate docs).
    #[default]
    DirectoryOrFile,
    /// Only its directory's fsync, as a strict reading of POSIX has it: a file's fsync keeps
    /// its data, not its name.
    DirectoryOnly,
}

/// What a power cut keeps of the writes no fsync covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing: every file is exactly as its last fsync left it.
    DropAll,
    /// Each block written since the last fsync survives or not by a coin toss (seeded), and
    /// the size is the old or the new one: a disk that wrote some of the page cache back on
    /// its own before the cut, in any order. Directory entries still follow the metadata rule.
    KeepSome { seed: u64 },
}

/// The whole filesystem. Inode numbers are never reused, so a mount after a cut cannot confuse
/// an old number with a new file.
#[derive(Clone, Debug)]
pub struct Model {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    fsync_mode: FsyncMode,
    name_rule: NameRule,
    /// fsync calls served, for tests that check the broker did sync.
    fsyncs: u64,
}

impl Model {
    /// An empty filesystem: a durable, empty root directory owned by `uid`/`gid`.
    pub fn new(uid: u32, gid: u32) -> Model {
        let root = Inode {
            node: Node::Dir { live: Entries::new(), durable: Entries::new() },
            perm: 0o755,
            uid,
            gid,
            mtime: SystemTime::now(),
        };
        Model {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            fsync_mode: FsyncMode::Keep,
            name_rule: NameRule::DirectoryOrFile,
            fsyncs: 0,
        }
    }

    pub fn set_fsync_mode(&mut self, mode: FsyncMode) {
        self.fsync_mode = mode;
    }

    pub fn set_name_rule(&mut self, rule: NameRule) {
        self.name_rule = rule;
    }

    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    pub fn inode(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn live_entries(&self, dir: u64) -> Result<&Entries, Errno> {
        match &self.inode(dir)?.node {
            Node::Dir { live, .. } => Ok(live),
            Node::File { .. } => Err(libc::ENOTDIR),
        }
    }

    fn live_entries_mut(&mut self, dir: u64) -> Result<&mut Entries, Errno> {
        let inode = self.inode_mut(dir)?;
        inode.mtime = SystemTime::now();
        match &mut inode.node {
            Node::Dir { live, .. } => Ok(live),
            Node::File { .. } => Err(libc::ENOTDIR),
        }
    }

    /// The inode `name` names in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.live_entries(parent)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// The live entries of `dir`, with their kinds.
    pub fn list(&self, dir: u64) -> Result<Vec<(OsString, u64, Kind)>, Errno> {
        let entries = self.live_entries(dir)?;
        Ok(entries
            .iter()
            .filter_map(|(name, &ino)| Some((name.clone(), ino, self.inodes.get(&ino)?.kind())))
            .collect())
    }

    /// Makes a new, empty file or directory named `name` in `parent`. The entry lives in the
    /// page cache only until the metadata rule makes it durable.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u16,
        (uid, gid): (u32, u32),
    ) -> Result<u64, Errno> {
        if self.live_entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = match kind {
            Kind::File => Node::File { live: Data::default(), durable: Data::default() },
            Kind::Dir => Node::Dir { live: Entries::new(), durable: Entries::new() },
        };
        self.inodes.insert(ino, Inode { node, perm, uid, gid, mtime: SystemTime::now() });
        self.live_entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Removes the entry `name` from `parent`: a file (`want` = File, unlink) or an empty
    /// directory (`want` = Dir, rmdir). The inode stays while the durable state names it.
    pub fn remove(&mut self, parent: u64, name: &OsStr, want: Kind) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.inode(ino)?.node, want) {
            (Node::File { .. }, Kind::Dir) => return Err(libc::ENOTDIR),
            (Node::Dir { .. }, Kind::File) => return Err(libc::EISDIR),
            (Node::Dir { live, .. }, Kind::Dir) if !live.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.live_entries_mut(parent)?.remove(name);
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file there. Directories
    /// are renamed only within their parent (no cycle to check); shardmq renames none.
    pub fn rename(
        &mut self,
        (parent, name): (u64, &OsStr),
        (new_parent, new_name): (u64, &OsStr),
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let kind = self.inode(ino)?.kind();
        if kind == Kind::Dir && parent != new_parent {
            return Err(libc::EXDEV);
        }
        self.live_entries(new_parent)?;
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if existing == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (kind, &self.inode(existing)?.node) {
                (Kind::File, Node::Dir { .. }) => return Err(libc::EISDIR),
                (Kind::Dir, Node::File { .. }) => return Err(libc::ENOTDIR),
                (Kind::Dir, Node::Dir { live, .. }) if !live.is_empty() => {
                    return Err(libc::ENOTEMPTY)
                }
                _ => {}
            }
        }
        self.live_entries_mut(parent)?.remove(name);
        self.live_entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        Ok(())
    }

    fn live_data_mut(&mut self, ino: u64) -> Result<&mut Data, Errno> {
        let inode = self.inode_mut(ino)?;
        inode.mtime = SystemTime::now();
        match &mut inode.node {
            Node::File { live, .. } => Ok(live),
            Node::Dir { .. } => Err(libc::EISDIR),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        match &self.inode(ino)?.node {
            Node::File { live, .. } => Ok(live.read(offset, len)),
            Node::Dir { .. } => Err(libc::EISDIR),
        }
    }

    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.live_data_mut(ino)?.write(offset, bytes);
        Ok(())
    }

    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        self.live_data_mut(ino)?.set_len(len);
        Ok(())
    }

    /// Sets permission bits (chmod); not part of the durability model.
    pub fn set_perm(&mut self, ino: u64, perm: u16) -> Result<(), Errno> {
        self.inode_mut(ino)?.perm = perm & 0o7777;
        Ok(())
    }

    /// fsync, fdatasync or fsyncdir of `ino`: its contents (a file's bytes and size, a
    /// directory's entries) become durable, and (under [`NameRule::DirectoryOrFile`]) so does
    /// every directory entry that names it, wherever that entry was created, renamed or removed
    /// since. Nothing else does: not its parent's other entries, not the parent's own entry in
    /// the grandparent.
    pub fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        self.inode(ino)?;
        self.fsyncs += 1;
        if self.fsync_mode == FsyncMode::Lie {
            return Ok(());
        }
        match &mut self.inode_mut(ino)?.node {
            Node::File { live, durable } => *durable = live.clone(),
            Node::Dir { live, durable } => *durable = live.clone(),
        }
        if self.name_rule == NameRule::DirectoryOrFile {
            self.commit_names_of(ino);
        }
        Ok(())
    }

    /// Makes durable every directory entry that names `ino` or named it (a removal).
    fn commit_names_of(&mut self, ino: u64) {
        for inode in self.inodes.values_mut() {
            if let Node::Dir { live, durable } = &mut inode.node {
                let names: Vec<OsString> = live
                    .iter()
                    .chain(durable.iter())
                    .filter(|(_, &named)| named == ino)
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in names {
                    match live.get(&name) {
                        Some(&now) => durable.insert(name, now),
                        None => durable.remove(&name),
                    };
                }
            }
        }
    }

    /// The power cut: every inode goes back to its durable contents (in `mode`, with some of
    /// a file's unsynced blocks kept), and inodes no durable entry reaches from the root are
    /// gone. Returns how many inodes were dropped.
    pub fn cut(&mut self, mode: CutMode) -> usize {
        let mut coin = Coin::new(match mode {
            CutMode::DropAll => 0,
            CutMode::KeepSome { seed } => seed,
        });
        // Sorted, so that a seed replays the same cut.
        let mut numbers: Vec<u64> = self.inodes.keys().copied().collect();
        numbers.sort_unstable();
        for ino in numbers {
            let Some(inode) = self.inodes.get_mut(&ino) else { continue };
            match &mut inode.node {
                Node::Dir { live, durable } => *live = durable.clone(),
                Node::File { live, durable } => {
                    if let CutMode::KeepSome { .. } = mode {
                        *durable = partly_written(durable, live, &mut coin);
                    }
                    *live = durable.clone();
                }
            }
        }
        let reachable = self.reachable();
        let before = self.inodes.len();
        self.inodes.retain(|ino, _| reachable.contains(ino));
        before - self.inodes.len()
    }

    /// The inodes the durable entries reach from the root.
    fn reachable(&self) -> HashSet<u64> {
        let mut seen = HashSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if let Some(Inode { node: Node::Dir { durable, .. }, .. }) = self.inodes.get(&ino) {
                for &child in durable.values() {
                    if seen.insert(child) {
                        todo.push(child);
                    }
                }
            }
        }
        seen
    }
}

/// The durable data of a file after a cut that kept a random part of the unsynced writes:
/// each differing block from `live` or `durable` by a coin toss, the size from either.
fn partly_written(durable: &Data, live: &Data, coin: &mut Coin) -> Data {
    let mut out = durable.clone();
    for index in live.differing_blocks(durable) {
        if coin.toss() {
            match live.blocks.get(&index) {
                Some(block) => out.blocks.insert(index, block.clone()),
                None => out.blocks.remove(&index),
            };
        }
    }
    let size = if coin.toss() { live.size } else { durable.size };
    // Shrinking from the larger size zeroes what lies past the chosen one, so that the file
    // reads zeros there if it grows again.
    out.size = out.size.max(size);
    out.set_len(size);
    out
}

/// A small deterministic coin (splitmix64): the cut must replay from its seed, and the crate
/// needs no random-number dependency for it.
#[derive(Debug)]
struct Coin(u64);

impl Coin {
    fn new(seed: u64) -> Coin {
        Coin(seed)
    }

    fn toss(&mut self) -> bool {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & 1 == 1
    }
}

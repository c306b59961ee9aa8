//! The durability rules on the model alone (no mount): what a cut keeps and what it drops.

use std::ffi::OsStr;

use crate::model::{CutMode, Data, FsyncMode, Kind, Model, NameRule, BLOCK, ROOT};

const OWNER: (u32, u32) = (0, 0);

fn file(model: &mut Model, dir: u64, name: &str) -> u64 {
    model.create(dir, OsStr::new(name), Kind::File, 0o644, OWNER).unwrap()
}

fn contents(model: &Model, dir: u64, name: &str) -> Option<Vec<u8>> {
    let ino = model.lookup(dir, OsStr::new(name)).ok()?;
    Some(model.read(ino, 0, usize::MAX).unwrap())
}

fn names(model: &Model, dir: u64) -> Vec<String> {
    model.list(dir).unwrap().into_iter().map(|(n, _, _)| n.to_string_lossy().into()).collect()
}

#[test]
fn data_reads_back_across_blocks_holes_and_truncation() {
    let mut data = Data::default();
    data.write(BLOCK as u64 - 2, b"abcd");
    assert_eq!(data.size(), BLOCK as u64 + 2);
    assert_eq!(data.read(BLOCK as u64 - 3, 10), b"\0abcd");
    data.write(3 * BLOCK as u64, b"z");
    assert_eq!(data.read(2 * BLOCK as u64, 2), [0, 0], "a hole reads as zeros");
    data.set_len(BLOCK as u64 - 1);
    data.set_len(BLOCK as u64 + 4);
    assert_eq!(
        data.read(BLOCK as u64 - 2, 10),
        b"a\0\0\0\0\0",
        "truncated bytes come back as zeros"
    );
}

#[test]
fn an_unsynced_file_is_gone_after_a_cut() {
    let mut model = Model::new(0, 0);
    let ino = file(&mut model, ROOT, "f");
    model.write(ino, 0, b"hello").unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, ROOT, "f"), None);
    assert!(model.inode(ino).is_err(), "the inode is forgotten");
}

#[test]
fn a_file_fsync_keeps_its_data_and_its_entry_and_nothing_written_after() {
    let mut model = Model::new(0, 0);
    let ino = file(&mut model, ROOT, "f");
    let other = file(&mut model, ROOT, "other");
    model.write(ino, 0, b"hello").unwrap();
    model.fsync(ino).unwrap();
    model.write(ino, 0, b"J").unwrap();
    model.write(ino, 5, b" world").unwrap();
    model.write(other, 0, b"x").unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, ROOT, "f").as_deref(), Some(&b"hello"[..]));
    assert_eq!(contents(&model, ROOT, "other"), None, "another file's entry is not committed");
}

#[test]
fn set_len_is_durable_only_with_an_fsync() {
    let mut model = Model::new(0, 0);
    let ino = file(&mut model, ROOT, "f");
    model.write(ino, 0, &[7; 3 * BLOCK]).unwrap();
    model.fsync(ino).unwrap();
    model.set_len(ino, 10).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, ROOT, "f").map(|c| c.len()), Some(3 * BLOCK));
    model.set_len(ino, 10).unwrap();
    model.fsync(ino).unwrap();
    model.set_len(ino, 20).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, ROOT, "f"), Some(vec![7; 10]));
}

#[test]
fn a_directory_fsync_keeps_its_entries_but_not_unsynced_data() {
    let mut model = Model::new(0, 0);
    let ino = file(&mut model, ROOT, "f");
    model.write(ino, 0, b"data").unwrap();
    model.fsync(ROOT).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, ROOT, "f"), Some(vec![]), "the name is kept, empty");
}

#[test]
fn a_rename_is_durable_with_a_directory_fsync_or_the_files_fsync() {
    for sync_file in [false, true] {
        let mut model = Model::new(0, 0);
        let old = file(&mut model, ROOT, "target");
        model.write(old, 0, b"old").unwrap();
        model.fsync(old).unwrap();
        let new = file(&mut model, ROOT, "target.tmp");
        model.write(new, 0, b"new").unwrap();
        model.fsync(new).unwrap();
        model
            .rename((ROOT, OsStr::new("target.tmp")), (ROOT, OsStr::new("target")), false)
            .unwrap();

        // Without a further sync the rename is undone.
        let mut undone = model.clone();
        undone.cut(CutMode::DropAll);
        assert_eq!(contents(&undone, ROOT, "target").as_deref(), Some(&b"old"[..]));
        assert_eq!(contents(&undone, ROOT, "target.tmp").as_deref(), Some(&b"new"[..]));

        model.fsync(if sync_file { new } else { ROOT }).unwrap();
        model.cut(CutMode::DropAll);
        assert_eq!(names(&model, ROOT), ["target"], "sync_file: {sync_file}");
        assert_eq!(contents(&model, ROOT, "target").as_deref(), Some(&b"new"[..]));
    }
}

#[test]
fn an_unlink_is_undone_unless_synced() {
    let mut model = Model::new(0, 0);
    let ino = file(&mut model, ROOT, "f");
    model.write(ino, 0, b"kept").unwrap();
    model.fsync(ino).unwrap();
    model.remove(ROOT, OsStr::new("f"), Kind::File).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, ROOT, "f").as_deref(), Some(&b"kept"[..]));
    model.remove(ROOT, OsStr::new("f"), Kind::File).unwrap();
    model.fsync(ROOT).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(names(&model, ROOT), Vec::<String>::new());
}

#[test]
fn a_file_in_a_new_directory_needs_the_directorys_entry_synced_too() {
    let mut model = Model::new(0, 0);
    let dir = model.create(ROOT, OsStr::new("d"), Kind::Dir, 0o755, OWNER).unwrap();
    let ino = file(&mut model, dir, "f");
    model.write(ino, 0, b"x").unwrap();
    model.fsync(ino).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(names(&model, ROOT), Vec::<String>::new(), "the mkdir was never synced");

    let dir = model.create(ROOT, OsStr::new("d"), Kind::Dir, 0o755, OWNER).unwrap();
    let ino = file(&mut model, dir, "f");
    model.write(ino, 0, b"x").unwrap();
    model.fsync(ino).unwrap();
    model.fsync(dir).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(contents(&model, dir, "f").as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_lying_fsync_keeps_nothing() {
    let mut model = Model::new(0, 0);
    model.set_fsync_mode(FsyncMode::Lie);
    let ino = file(&mut model, ROOT, "f");
    model.write(ino, 0, b"x").unwrap();
    model.fsync(ino).unwrap();
    model.fsync(ROOT).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(names(&model, ROOT), Vec::<String>::new());
    assert_eq!(model.fsyncs(), 2);
}

#[test]
fn a_partial_cut_keeps_each_unsynced_block_from_one_side_and_replays_from_its_seed() {
    let run = |seed| {
        let mut model = Model::new(0, 0);
        let ino = file(&mut model, ROOT, "f");
        model.write(ino, 0, &[1; 8 * BLOCK]).unwrap();
        model.fsync(ino).unwrap();
        model.write(ino, 0, &[2; 16 * BLOCK]).unwrap();
        model.cut(CutMode::KeepSome { seed });
        contents(&model, ROOT, "f").unwrap()
    };
    let mut sides = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let got = run(seed);
        assert_eq!(got, run(seed), "seed {seed} replays");
        assert!(got.len() == 8 * BLOCK || got.len() == 16 * BLOCK, "a size from either side");
        for block in got.chunks(BLOCK) {
            assert!(block.iter().all(|&b| b == block[0]), "blocks are whole");
            sides.insert(block[0]);
        }
    }
    assert!(sides.contains(&1) && sides.contains(&2), "both sides show up: {sides:?}");
}

#[test]
fn under_the_directory_only_rule_a_files_fsync_keeps_its_data_but_not_its_name() {
    let mut model = Model::new(0, 0);
    model.set_name_rule(NameRule::DirectoryOnly);
    let kept = file(&mut model, ROOT, "kept");
    model.fsync(ROOT).unwrap();
    model.write(kept, 0, b"data").unwrap();
    model.fsync(kept).unwrap();
    let lost = file(&mut model, ROOT, "lost");
    model.write(lost, 0, b"data").unwrap();
    model.fsync(lost).unwrap();
    model.rename((ROOT, OsStr::new("kept")), (ROOT, OsStr::new("renamed")), false).unwrap();
    model.fsync(kept).unwrap();
    model.cut(CutMode::DropAll);
    assert_eq!(names(&model, ROOT), ["kept"], "neither the new file nor the rename is kept");
    assert_eq!(contents(&model, ROOT, "kept").as_deref(), Some(&b"data"[..]));
}

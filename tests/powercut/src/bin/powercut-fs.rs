//! `powercut-fs MOUNTPOINT`: mounts the power-cut filesystem (see the `shardmq_powercut` crate
//! docs) on an existing directory and serves it until its standard input ends or says `quit`.
//! Commands, one per line on standard input, each answered on standard output:
//!
//! - `cut`: power cut (drop everything not fsynced), then mount again. Kill the programs using
//!   the mount first: the cut refuses while a file is open there.
//! - `cut-some SEED`: a cut that keeps a random part of the unsynced blocks, from `SEED`.
//! - `lie` / `keep`: from now on fsync keeps nothing / keeps as it should.
//! - `dir-only` / `dir-or-file`: from now on only a directory's fsync makes a name durable /
//!   a directory's or the named file's (the default; see the crate docs).
//! - `quit`: unmount and exit (the contents are gone).
//!
//! For example, from a shell: `mkfifo ctl; powercut-fs /mnt/cut < ctl & exec 3> ctl`, run the
//! program on /mnt/cut, kill it, `echo cut >&3`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use shardmq_powercut::{CutMode, FsyncMode, NameRule, PowercutFs};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(mountpoint), None) = (args.next(), args.next()) else {
        eprintln!("usage: powercut-fs MOUNTPOINT  (commands on stdin: cut, cut-some SEED, lie, keep, dir-only, dir-or-file, quit)");
        return ExitCode::from(2);
    };
    let mut fs = match PowercutFs::mount(&PathBuf::from(mountpoint)) {
        Ok(fs) => fs,
        Err(error) => {
            eprintln!("powercut-fs: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("mounted {}", fs.mountpoint().display());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["cut"] => cut(&mut fs, CutMode::DropAll),
            ["cut-some", seed] => match seed.parse() {
                Ok(seed) => cut(&mut fs, CutMode::KeepSome { seed }),
                Err(_) => format!("error: {seed:?} is not a number"),
            },
            ["lie"] => {
                fs.set_fsync_mode(FsyncMode::Lie);
                "fsync keeps nothing from now on".into()
            }
            ["keep"] => {
                fs.set_fsync_mode(FsyncMode::Keep);
                "fsync keeps data from now on".into()
            }
            ["dir-only"] => {
                fs.set_name_rule(NameRule::DirectoryOnly);
                "names are durable with their directory's fsync only".into()
            }
            ["dir-or-file"] => {
                fs.set_name_rule(NameRule::DirectoryOrFile);
                "names are durable with their directory's or their file's fsync".into()
            }
            ["quit"] => break,
            [] => continue,
            _ => format!("error: unknown command {line:?}"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    match fs.unmount() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("powercut-fs: {error}");
            ExitCode::FAILURE
        }
    }
}

fn cut(fs: &mut PowercutFs, mode: CutMode) -> String {
    match fs.cut(mode) {
        Ok(report) => format!(
            "cut in {:?}: {} files or directories dropped, {} fsyncs served before it",
            report.took, report.inodes_dropped, report.fsyncs
        ),
        Err(error) => format!("error: {error}"),
    }
}

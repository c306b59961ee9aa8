//! `shardmq check-system` on this machine: a line per item, the sysctl file and the systemd
//! drop-in, and an exit status that agrees with the lines (0 only when no item says CHANGE).

use std::process::Output;
use std::time::Duration;

use shardmq_tests::{broker_binary, run_tool, tool_command};

/// Every item the report checks, as its line names it.
const ITEMS: &[&str] = &[
    "RLIMIT_NOFILE soft",
    "RLIMIT_NOFILE hard",
    "fs.nr_open",
    "fs.file-max",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_mem",
    "net.netfilter.nf_conntrack_max",
    "RLIMIT_MEMLOCK",
    "vm.max_map_count",
    "MemTotal",
];

const SYSCTL_HEADER: &str = "--- /etc/sysctl.d/60-shardmq.conf ---";
const DROP_IN_HEADER: &str = "--- /etc/systemd/system/shardmq.service.d/limits.conf ---";

fn check_system(args: &[&str]) -> Output {
    let binary = broker_binary();
    let mut command = tool_command(binary.to_str().expect("UTF-8 path"));
    command.arg("check-system").args(args);
    run_tool(&mut command, Duration::from_secs(10))
}

/// The report's lines for `item`: `OK      <item> = ...` or `CHANGE  <item> = ...`.
fn item_lines<'a>(stdout: &'a str, item: &str) -> Vec<&'a str> {
    let ok = format!("OK      {item} = ");
    let change = format!("CHANGE  {item} = ");
    stdout.lines().filter(|line| line.starts_with(&ok) || line.starts_with(&change)).collect()
}

/// Checks the report's shape and that its exit status agrees with its lines; returns whether
/// any item said CHANGE.
fn check_report(output: &Output) -> bool {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for item in ITEMS {
        let lines = item_lines(&stdout, item);
        assert_eq!(lines.len(), 1, "one line for {item}:\n{stdout}\nstderr: {stderr}");
        assert!(lines[0].contains("(need "), "{}", lines[0]);
    }
    let changes: Vec<&str> = stdout.lines().filter(|line| line.starts_with("CHANGE  ")).collect();
    let sysctl = stdout
        .split_once(SYSCTL_HEADER)
        .unwrap_or_else(|| panic!("no {SYSCTL_HEADER:?}:\n{stdout}"))
        .1;
    let (sysctl, drop_in) = sysctl
        .split_once(DROP_IN_HEADER)
        .unwrap_or_else(|| panic!("no {DROP_IN_HEADER:?} after the sysctl file:\n{stdout}"));
    assert!(sysctl.contains("\n# shardmq: kernel settings for "), "{sysctl}");
    let drop_in_lines: Vec<&str> = drop_in.lines().collect();
    assert_eq!(drop_in_lines.first(), Some(&""), "{drop_in}");
    assert_eq!(drop_in_lines.get(1), Some(&"[Service]"), "{drop_in}");
    assert!(drop_in_lines.iter().any(|line| line.starts_with("LimitNOFILE=")), "{drop_in}");
    assert!(drop_in_lines.iter().any(|line| line.starts_with("LimitMEMLOCK=")), "{drop_in}");
    // Each sysctl that must change is set by the file, uncommented.
    for line in &changes {
        let name = line.strip_prefix("CHANGE  ").and_then(|rest| rest.split(" = ").next());
        let name = name.unwrap_or_default();
        if name.contains('.') {
            let set = format!("\n{name} = ");
            assert!(sysctl.contains(&set), "the sysctl file does not set {name}:\n{sysctl}");
        }
    }
    let code = output.status.code();
    if changes.is_empty() {
        assert_eq!(code, Some(0), "no CHANGE line, so exit 0:\n{stdout}");
        assert!(stdout.contains("Every item is OK"), "{stdout}");
    } else {
        assert_eq!(code, Some(1), "CHANGE lines {changes:?}, so exit 1:\n{stdout}");
        assert!(stdout.contains("item(s) to change"), "{stdout}");
    }
    !changes.is_empty()
}

#[test]
fn a_hundred_connections_on_this_machine() {
    let output = check_system(&["--connections", "100"]);
    check_report(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("shardmq check-system: 100 connections, "), "{stdout}");
}

#[test]
fn ten_million_connections_do_not_fit_here() {
    // This machine's hard limit is 20,000 files per process (`ulimit -Hn`), and no host has the
    // 63 GB of RAM ten million connections need without saying so.
    let output = check_system(&["--connections", "10000000", "--shards", "2"]);
    assert!(check_report(&output), "ten million connections need a change");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let nofile = item_lines(&stdout, "RLIMIT_NOFILE hard");
    let hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .expect("limits")
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(4))
        .and_then(|hard| hard.parse().ok())
        .expect("the hard open-files limit");
    if hard < 10_000_000 {
        assert!(nofile[0].starts_with("CHANGE  "), "{}", nofile[0]);
        assert!(nofile[0].contains(&format!(" = {hard}, set ")), "{}", nofile[0]);
    }
}

#[test]
fn reads_its_own_process_limits() {
    // Under `prlimit`, the limits the report reads are the ones the kernel applies to it.
    let binary = broker_binary();
    let mut command = tool_command("prlimit");
    command.args(["--nofile=64:64", "--memlock=65536:65536"]).arg(&binary).args([
        "check-system",
        "--connections",
        "100",
        "--shards",
        "2",
    ]);
    let output = run_tool(&mut command, Duration::from_secs(10));
    assert!(check_report(&output), "64 files and 64 KiB of memlock are too few");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for (item, now) in
        [("RLIMIT_NOFILE soft", "64"), ("RLIMIT_NOFILE hard", "64"), ("RLIMIT_MEMLOCK", "64.0 KiB")]
    {
        let line = item_lines(&stdout, item)[0];
        assert!(line.starts_with(&format!("CHANGE  {item} = {now}, set ")), "{line}");
    }
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &[][..],
        &["--connections", "0"][..],
        &["--connections", "100", "--shards", "0"][..],
        &["--connections", "100", "--format", "json"][..],
    ] {
        let output = check_system(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
    }
}

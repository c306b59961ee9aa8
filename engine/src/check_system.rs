//! `shardmq check-system --connections N`: reads this host's file limits, kernel settings and
//! memory, says item by item whether each is enough for N client connections (`OK`) or what to
//! set it to (`CHANGE`) and why, then prints a ready `/etc/sysctl.d/60-shardmq.conf` and a
//! systemd drop-in. Exits 0 when every item is OK, 1 otherwise.
//!
//! Reading the host ([`Readings::read`]) is kept apart from deciding ([`assess`]): the decision
//! is a pure function of the raw readings and the target, so its rules are unit-tested with
//! made-up hosts. Every figure a rule uses is a named constant that says where it was measured
//! (`perf/results/idle-memory.md`, `perf/results/socket-memory.md`, `perf/CAPACITY.md`, the
//! vendored glommio's source) or that it is guidance.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use shardmq_io::runtime::SHARD_IO_MEMORY_BYTES;

use crate::listeners::LISTEN_BACKLOG;

/// `shardmq check-system` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckSystemArgs {
    /// Concurrent client connections this node must hold.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Shards the broker will run (`shardmq serve --shards`) [default: online cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: Option<u16>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per item, then the sysctl file and the systemd drop-in.
    Text,
}

/// Where the printed sysctl file is meant to go.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/60-shardmq.conf";
/// Where the printed systemd drop-in is meant to go.
pub const DROP_IN_FILE: &str = "/etc/systemd/system/shardmq.service.d/limits.conf";

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Descriptors the broker process holds whatever its shard count: stdin/out/err, the signal
/// pipe, the control-plane thread's tokio runtime and its etcd connections, the password and
/// ACL files while they are read. A lone node holds 7 (measured: 15 with one shard, 23 with two).
const NOFILE_PROCESS_RESERVE: u64 = 64;
/// Descriptors per shard besides clients and node links: glommio's 3 io_uring rings and its
/// eventfd, 2 epoll sets, the redb file, the MQTT and node-link listeners. 8 measured on a lone
/// node; twice that for what a later version adds.
const NOFILE_SHARD_RESERVE: u64 = 16;
/// Peer nodes whose links are reserved for: each shard holds one link to every peer and accepts
/// the links of the peers' shards, about 2 descriptors per shard per peer (docs/cluster.md).
const NODE_LINK_PEERS_RESERVED: u64 = 31;
/// Connections that hold a descriptor beyond the target for a while: sockets still closing in a
/// reconnect storm, clients over `max_connections` being refused. 1 in this many of the target.
const NOFILE_CHURN_DIVISOR: u64 = 100;
/// The RLIMIT_NOFILE the drop-in sets at least: the kernel's default `fs.nr_open`, so it needs
/// no sysctl on most hosts and leaves room over 600K connections.
const LIMIT_NOFILE_MIN: u64 = 1 << 20;
/// LimitNOFILE above [`LIMIT_NOFILE_MIN`] is rounded up to a multiple of this.
const LIMIT_NOFILE_STEP: u64 = 1 << 16;

/// glommio 0.9.0 refuses to start an executor when the soft RLIMIT_MEMLOCK is below this
/// (`MIN_MEMLOCK_LIMIT` in its `sys/uring.rs`), whatever `io_memory` is.
const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 * KIB;
/// glommio registers each executor's `io_memory` with its 3 rings (main, poll, latency:
/// `register_buffers_by_ref` in vendor/glommio/src/sys/uring.rs), and the kernel counts each
/// registration against RLIMIT_MEMLOCK.
const IO_URING_RINGS_PER_SHARD: u64 = 3;
/// The drop-in's LimitMEMLOCK at least: the kernel's default RLIMIT_MEMLOCK since Linux 5.16.
const LIMIT_MEMLOCK_MIN_BYTES: u64 = 8 * MIB;

/// Broker user-space memory per idle connection: 577 B (RssAnon from 1K to 11K connections,
/// `perf/results/idle-memory.md`, last row; perf/CAPACITY.md M1).
const BROKER_BYTES_PER_CONNECTION: u64 = 577;
/// Kernel memory per idle TCP socket: ~3.9 KB (TCP slab 2.4 KB, inode, file, dentry; 3.6–3.7 KB
/// measured by `perf/socket-memory`, with a margin; perf/CAPACITY.md M3). Slab, not charged to
/// `tcp_mem`.
const KERNEL_SOCKET_BYTES: u64 = 3_900;
/// Kernel memory per epoll registration: `eventpoll_epi` 128 B plus its wait-queue entry
/// (perf/CAPACITY.md M4).
const EPOLL_BYTES_PER_CONNECTION: u64 = 200;
/// Socket buffer memory budgeted per connection for bursts: guidance, not a measurement — 10%
/// of clients with 16 KiB in flight at once (perf/CAPACITY.md, "Memory"). Idle sockets hold no
/// buffer pages: 8,000 idle loopback sockets left `/proc/net/sockstat` TCP `mem` unchanged here,
/// while 200 sockets with 16 KiB unread each added 776 pages.
const BURST_BYTES_PER_CONNECTION: u64 = 16 * KIB / 10;
/// The broker's memory besides connections: a fixed part (~20 MiB measured, perf/CAPACITY.md)…
const BROKER_FIXED_BYTES: u64 = 32 * MIB;
/// …and each shard's redb page cache, which fills up to this (`storage/src/store.rs`,
/// `CACHE_BYTES_MAX`).
const REDB_CACHE_BYTES_PER_SHARD: u64 = 64 * MIB;
/// The share of RAM the broker may plan to use (numerator, denominator): the rest is for the
/// page cache of the redb files, retained messages and the operating system.
const RAM_SHARE: (u64, u64) = (3, 4);

/// Memory mappings the broker process holds whatever its shard count (measured: 61 with one
/// shard, 79 with two; none per connection), with room for allocator arenas.
const MAPS_PROCESS_RESERVE: u64 = 1024;
/// Memory mappings per shard (18 measured: thread stack and guard, rings, arenas), with room.
const MAPS_SHARD_RESERVE: u64 = 64;

/// Ephemeral ports the broker's own outgoing connections use besides node links: etcd.
const PORTS_PROCESS_RESERVE: u64 = 64;
/// Ports in the widest `ip_local_port_range` (1024-65535), for the load-generator hint.
const PORTS_WIDEST: u64 = 64_512;
/// The Linux default `ip_local_port_range`, set when a host's range is too narrow.
const PORT_RANGE_DEFAULT: (u64, u64) = (32_768, 60_999);

/// Connection-tracking entries per target connection: each live connection is one, and a
/// closed one lingers for `nf_conntrack_tcp_timeout_time_wait` (120 s), so a full reconnect
/// storm needs two.
const CONNTRACK_ENTRIES_PER_CONNECTION: u64 = 2;
/// Slab bytes per conntrack entry (`nf_conntrack` object size in /proc/slabinfo here).
const CONNTRACK_ENTRY_BYTES: u64 = 256;

/// A value read from the host, or why it could not be read.
pub type Reading<T> = Result<T, String>;

/// A resource limit: `u64::MAX` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

/// The connection-tracking table, when the `nf_conntrack` module is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conntrack {
    pub max: u64,
    /// Entries tracked now (`nf_conntrack_count`).
    pub count: u64,
}

/// Everything the decision needs, read raw from the host (or made up by a test).
#[derive(Debug, Clone)]
pub struct Readings {
    pub nofile: Reading<Rlimit>,
    pub memlock: Reading<Rlimit>,
    /// `fs.nr_open`: the largest RLIMIT_NOFILE any process may have.
    pub nr_open: Reading<u64>,
    /// `fs.file-max`: open files on the whole host.
    pub file_max: Reading<u64>,
    /// Files open on the whole host now (`fs.file-nr`, first field).
    pub files_open: Reading<u64>,
    pub somaxconn: Reading<u64>,
    pub tcp_max_syn_backlog: Reading<u64>,
    /// `net.ipv4.ip_local_port_range`: first and last port.
    pub ip_local_port_range: Reading<(u64, u64)>,
    /// `net.ipv4.tcp_mem`: min, pressure, max, in pages.
    pub tcp_mem_pages: Reading<[u64; 3]>,
    pub page_bytes: Reading<u64>,
    /// `Ok(None)`: the `nf_conntrack` module is not loaded.
    pub conntrack: Reading<Option<Conntrack>>,
    pub max_map_count: Reading<u64>,
    /// `MemTotal` of /proc/meminfo.
    pub mem_total_bytes: Reading<u64>,
}

/// What the host must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub connections: u64,
    pub shards: u16,
}

/// Whether an item is enough as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Change,
}

/// One checked setting: one line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: &'static str,
    pub status: Status,
    /// The value now, as the setting writes it (or why it could not be read).
    pub current: String,
    /// What is enough.
    pub need: String,
    /// The value to set when the status is [`Status::Change`].
    pub set: String,
    pub why: String,
    /// The sysctl key, for items the sysctl file sets.
    pub sysctl: Option<&'static str>,
}

/// The decision for one host and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub target: Target,
    pub items: Vec<Item>,
    /// `LimitNOFILE=` of the systemd drop-in.
    pub limit_nofile: u64,
    /// `LimitMEMLOCK=` of the systemd drop-in, in bytes (a whole number of MiB).
    pub limit_memlock_bytes: u64,
}

impl Report {
    /// True when the host holds the target as it is.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|item| item.status == Status::Ok)
    }

    /// The text report: a line per item, a summary, the sysctl file and the drop-in.
    pub fn render_text(&self, host: &str) -> String {
        let Target { connections, shards } = self.target;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "shardmq check-system: {connections} connections, {shards} shards, on {host}"
        );
        let _ = writeln!(
            out,
            "(the limits are this process's, inherited from the shell that started it; the \
             service gets LimitNOFILE= and LimitMEMLOCK= from its systemd unit: check a running \
             broker with `cat /proc/$(pidof shardmq)/limits`)"
        );
        let _ = writeln!(out);
        for item in &self.items {
            let action = match item.status {
                Status::Ok => "keep".to_string(),
                Status::Change => format!("set {}", item.set),
            };
            let status = match item.status {
                Status::Ok => "OK",
                Status::Change => "CHANGE",
            };
            let _ = writeln!(
                out,
                "{status:<6}  {} = {}, {action} (need {}): {}",
                item.name, item.current, item.need, item.why
            );
        }
        let changes = self.items.iter().filter(|item| item.status == Status::Change).count();
        let _ = writeln!(out);
        if changes == 0 {
            let _ = writeln!(
                out,
                "Every item is OK: this host can hold {connections} connections as it is."
            );
        } else {
            let _ = writeln!(
                out,
                "{changes} item(s) to change: this host cannot hold {connections} connections as \
                 it is. The files below set what the sysctl and systemd items need."
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "--- {SYSCTL_FILE} ---");
        out.push_str(&self.sysctl_file(host));
        let _ = writeln!(out, "--- end of {SYSCTL_FILE} (apply with `sysctl --system`) ---");
        let _ = writeln!(out);
        let _ = writeln!(out, "--- {DROP_IN_FILE} ---");
        out.push_str(&self.drop_in());
        let _ = writeln!(
            out,
            "--- end of {DROP_IN_FILE} (apply with `systemctl daemon-reload && systemctl \
             restart shardmq`) ---"
        );
        out
    }

    /// `/etc/sysctl.d/60-shardmq.conf`: the items to change set, the others as comments.
    pub fn sysctl_file(&self, host: &str) -> String {
        let Target { connections, shards } = self.target;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# shardmq: kernel settings for {connections} connections with {shards} shards \
             (`shardmq check-system --connections {connections} --shards {shards}` on {host})."
        );
        let _ = writeln!(out, "# Lines that are comments were already enough on that host.");
        let _ = writeln!(out, "# See docs/tuning.md for what each costs.");
        for item in &self.items {
            let Some(key) = item.sysctl else { continue };
            match item.status {
                Status::Change => {
                    let _ = writeln!(out, "{key} = {}", item.set);
                }
                Status::Ok => {
                    let _ = writeln!(out, "# {key} = {}  (enough here)", item.current);
                }
            }
        }
        let _ = writeln!(
            out,
            "# On a load-generator host (not needed by the broker): \
             net.ipv4.ip_local_port_range = 1024 65535 and net.ipv4.tcp_tw_reuse = 1 \
             (docs/loadgen.md)."
        );
        out
    }

    /// The systemd drop-in with the process limits.
    pub fn drop_in(&self) -> String {
        format!(
            "[Service]\n\
             # {} connections + reserve; fs.nr_open must be at least this.\n\
             LimitNOFILE={}\n\
             # glommio's io_uring buffers: {} shards x {} rings x {} KiB, at least 512 KiB.\n\
             LimitMEMLOCK={}M\n",
            self.target.connections,
            self.limit_nofile,
            self.target.shards,
            IO_URING_RINGS_PER_SHARD,
            SHARD_IO_MEMORY_BYTES as u64 / KIB,
            self.limit_memlock_bytes / MIB,
        )
    }
}

/// Decides, item by item, whether `readings` hold `target`. Pure: the same inputs give the same
/// report.
pub fn assess(target: Target, readings: &Readings) -> Report {
    let n = target.connections;
    let (descriptors, limit_nofile) = descriptor_items(target, readings);
    let mut items = Vec::from(descriptors);
    items.extend(backlog_items(n, readings));
    items.push(port_range_item(target, &readings.ip_local_port_range));
    items.push(tcp_mem_item(n, &readings.tcp_mem_pages, &readings.page_bytes));
    items.push(conntrack_item(n, &readings.conntrack));
    let (memlock, limit_memlock_bytes) = memlock_item(target, &readings.memlock);
    items.push(memlock);
    items.push(max_map_count_item(target, &readings.max_map_count));
    items.push(ram_item(target, &readings.mem_total_bytes));
    Report { target, items, limit_nofile, limit_memlock_bytes }
}

/// The file descriptor items: the process's RLIMIT_NOFILE (soft and hard), `fs.nr_open` and
/// `fs.file-max`; with the LimitNOFILE the drop-in sets.
fn descriptor_items(target: Target, readings: &Readings) -> ([Item; 4], u64) {
    let n = target.connections;
    let shards = u64::from(target.shards);

    let nofile_reserve = NOFILE_PROCESS_RESERVE
        + shards * (NOFILE_SHARD_RESERVE + 2 * NODE_LINK_PEERS_RESERVED)
        + n / NOFILE_CHURN_DIVISOR;
    let nofile_need = n.saturating_add(nofile_reserve);
    let limit_nofile = LIMIT_NOFILE_MIN.max(round_up(nofile_need, LIMIT_NOFILE_STEP));
    let nofile_why = format!(
        "one descriptor per client socket plus {nofile_reserve} reserved: {NOFILE_PROCESS_RESERVE} \
         for the process (stdio, signal pipe, the control plane's etcd connections), \
         {NOFILE_SHARD_RESERVE} per shard (3 io_uring rings, epoll sets, eventfd, redb file, \
         listeners; 8 measured), {} per shard for node links to up to \
         {NODE_LINK_PEERS_RESERVED} peers, and 1% of the target for sockets closing or refused \
         in a reconnect storm; past it accepts fail with EMFILE",
        2 * NODE_LINK_PEERS_RESERVED
    );

    let soft = limit_item(
        "RLIMIT_NOFILE soft",
        readings.nofile.clone().map(|limit| limit.soft),
        nofile_need,
        limit_nofile,
        format!("{nofile_why}; the broker does not raise its soft limit itself"),
    );
    let hard = limit_item(
        "RLIMIT_NOFILE hard",
        readings.nofile.clone().map(|limit| limit.hard),
        nofile_need,
        limit_nofile,
        "the ceiling of the soft limit; only root (or systemd's LimitNOFILE=) raises it".into(),
    );
    let nr_open = at_least(
        "fs.nr_open",
        &readings.nr_open,
        limit_nofile,
        limit_nofile,
        format!(
            "the kernel refuses any RLIMIT_NOFILE above it, so the drop-in's \
             LimitNOFILE={limit_nofile} needs it (systemd would fail to start the service); \
             costs nothing until descriptors are opened"
        ),
    );

    let files_open = readings.files_open.as_ref().copied().unwrap_or(0);
    let file_max_need = files_open.saturating_add(nofile_need);
    let file_max = at_least(
        "fs.file-max",
        &readings.file_max,
        file_max_need,
        round_up(file_max_need.saturating_mul(2), MIB),
        format!(
            "open files on the whole host: {files_open} open now plus the broker's \
             {nofile_need}; set to twice that so a load generator or other services fit; past \
             it every process gets ENFILE"
        ),
    );
    ([soft, hard, nr_open, file_max], limit_nofile)
}

/// The listen queue items: `net.core.somaxconn` and `net.ipv4.tcp_max_syn_backlog`.
fn backlog_items(n: u64, readings: &Readings) -> [Item; 2] {
    // A connect storm of every client at once queues at most the listen backlog per listener,
    // and never more than the clients there are: a small target needs no more than itself.
    let backlog = u64::try_from(LISTEN_BACKLOG).unwrap_or(0);
    let somaxconn = at_least(
        "net.core.somaxconn",
        &readings.somaxconn,
        backlog.min(n),
        backlog,
        format!(
            "each shard's SO_REUSEPORT listener asks for a backlog of {backlog} connections \
             waiting for accept (the target's, if smaller) and the kernel caps it at somaxconn; \
             at ~20K accepts/s per shard (perf/CAPACITY.md C2) that queues ~0.2 s of a connect \
             storm per shard before handshakes are dropped (ListenOverflows in nstat); costs no \
             memory until used"
        ),
    );
    let syn_backlog = 2 * backlog;
    let tcp_max_syn_backlog = at_least(
        "net.ipv4.tcp_max_syn_backlog",
        &readings.tcp_max_syn_backlog,
        syn_backlog.min(n.saturating_mul(2)),
        syn_backlog,
        format!(
            "half-open connections of a connect storm queue up to each listener's {backlog} \
             backlog (the target's, if smaller); without syncookies the kernel keeps the last \
             quarter of tcp_max_syn_backlog for peers it already knows and drops other SYNs, \
             with them it answers with cookies and logs `possible SYN flooding`: twice the \
             backlog avoids both; ~0.3 KB per half-open connection"
        ),
    );
    [somaxconn, tcp_max_syn_backlog]
}

/// The process's RLIMIT_MEMLOCK, which glommio's io_uring buffers count against; with the
/// LimitMEMLOCK the drop-in sets, in bytes.
fn memlock_item(target: Target, memlock: &Reading<Rlimit>) -> (Item, u64) {
    let shards = u64::from(target.shards);
    let memlock_need = GLOMMIO_MEMLOCK_MIN_BYTES
        .max(shards * IO_URING_RINGS_PER_SHARD * SHARD_IO_MEMORY_BYTES as u64);
    let limit_memlock_bytes =
        LIMIT_MEMLOCK_MIN_BYTES.max(round_up(memlock_need.saturating_mul(2), MIB));
    let item = at_least_with(
        "RLIMIT_MEMLOCK",
        memlock.clone().map(|limit| limit.soft),
        memlock_need,
        limit_memlock_bytes,
        &|bytes| {
            if bytes == u64::MAX {
                "unlimited".into()
            } else {
                human_bytes(bytes)
            }
        },
        format!(
            "glommio refuses to start a shard below {} and registers each shard's {} KiB \
             io_memory with its {IO_URING_RINGS_PER_SHARD} io_uring rings, each counted \
             (vendor/glommio/src/sys/uring.rs); the kernel counts locked memory per user, so the drop-in sets twice \
             the need for another glommio process (the load generator) of the same user; \
             root is not limited by the kernel",
            human_bytes(GLOMMIO_MEMLOCK_MIN_BYTES),
            SHARD_IO_MEMORY_BYTES as u64 / KIB
        ),
    );
    (item, limit_memlock_bytes)
}

/// `vm.max_map_count`: the memory mappings of the process.
fn max_map_count_item(target: Target, max_map_count: &Reading<u64>) -> Item {
    let maps_need = MAPS_PROCESS_RESERVE + u64::from(target.shards) * MAPS_SHARD_RESERVE;
    at_least(
        "vm.max_map_count",
        max_map_count,
        maps_need,
        65_530.max(maps_need),
        "memory mappings per process; they do not grow with connections (measured: 61 with one \
         shard, 79 with two), so the default 65530 is plenty unless something lowered it"
            .into(),
    )
}

/// A process limit (set by the drop-in, not a sysctl): OK when at least `need`.
fn limit_item(name: &'static str, current: Reading<u64>, need: u64, set: u64, why: String) -> Item {
    let show = |value: u64| {
        if value == u64::MAX {
            "unlimited".to_string()
        } else {
            value.to_string()
        }
    };
    at_least_with(name, current, need, set, &show, why)
}

/// A sysctl holding a number, named by its key: OK when at least `need`, else set `set`.
fn at_least(name: &'static str, current: &Reading<u64>, need: u64, set: u64, why: String) -> Item {
    let show = |value: u64| value.to_string();
    Item { sysctl: Some(name), ..at_least_with(name, current.clone(), need, set, &show, why) }
}

/// OK when `current` is at least `need`; not a sysctl.
fn at_least_with(
    name: &'static str,
    current: Reading<u64>,
    need: u64,
    set: u64,
    show: &dyn Fn(u64) -> String,
    why: String,
) -> Item {
    let (status, current) = match current {
        Ok(value) if value >= need => (Status::Ok, show(value)),
        Ok(value) => (Status::Change, show(value)),
        Err(error) => (Status::Change, unreadable(&error)),
    };
    Item {
        name,
        status,
        current,
        need: format!(">= {}", show(need)),
        set: show(set),
        why,
        sysctl: None,
    }
}

fn unreadable(error: &str) -> String {
    format!("unreadable ({error})")
}

fn port_range_item(target: Target, range: &Reading<(u64, u64)>) -> Item {
    let name = "net.ipv4.ip_local_port_range";
    let need = u64::from(target.shards) * NODE_LINK_PEERS_RESERVED + PORTS_PROCESS_RESERVE;
    let (status, current, ports) = match range {
        Ok((first, last)) => {
            let ports = (last + 1).saturating_sub(*first);
            let status = if ports >= need { Status::Ok } else { Status::Change };
            (status, format!("{first} {last}"), ports)
        }
        Err(error) => (Status::Change, unreadable(error), 0),
    };
    let per_address = ports.max(1);
    let why = format!(
        "{ports} ephemeral ports; the broker takes none per client (accepted sockets share the \
         listening port), only its node links and etcd connections use them. A load generator \
         on this host needs one source address per {per_address} connections per target: {} \
         for {} connections (`shardmq loadgen --source`, docs/loadgen.md), or {} with the \
         widest range 1024 65535",
        target.connections.div_ceil(per_address),
        target.connections,
        target.connections.div_ceil(PORTS_WIDEST),
    );
    Item {
        name,
        status,
        current,
        need: format!(">= {need} ports"),
        set: format!("{} {}", PORT_RANGE_DEFAULT.0, PORT_RANGE_DEFAULT.1),
        why,
        sysctl: Some(name),
    }
}

fn tcp_mem_item(connections: u64, tcp_mem: &Reading<[u64; 3]>, page: &Reading<u64>) -> Item {
    let name = "net.ipv4.tcp_mem";
    let page_bytes = page.as_ref().copied().unwrap_or(4096).max(1);
    let need_pages = connections.saturating_mul(BURST_BYTES_PER_CONNECTION).div_ceil(page_bytes);
    let (status, current, set) = match tcp_mem {
        Ok(now) => {
            let status = if now[1] >= need_pages { Status::Ok } else { Status::Change };
            // Never lower a value: each of min, pressure and max is the larger of now and the
            // need's (half, pressure, one and a half).
            let set = [
                now[0].max(need_pages / 2),
                now[1].max(need_pages),
                now[2].max(need_pages.saturating_mul(3) / 2),
            ];
            let set = format!("{} {} {}", set[0], set[1], set[2]);
            (status, format!("{} {} {}", now[0], now[1], now[2]), set)
        }
        Err(error) => {
            let set =
                format!("{} {} {}", need_pages / 2, need_pages, need_pages.saturating_mul(3) / 2);
            (Status::Change, unreadable(error), set)
        }
    };
    let why = format!(
        "pages of {page_bytes} B (min, pressure, max) of TCP buffer memory on the host; idle \
         sockets charge none (measured: 8,000 idle loopback sockets, 0 pages; their ~3.9 KB of \
         slab each counts under MemTotal), buffered data does. Budget {BURST_BYTES_PER_CONNECTION} \
         B per connection (guidance: 10% of clients with 16 KiB in flight, perf/CAPACITY.md) = \
         {need_pages} pages ({}) at pressure; above pressure the kernel shrinks every socket's \
         buffers, at max it drops data; the max is memory the kernel may take, keep it under RAM",
        human_bytes(need_pages.saturating_mul(page_bytes))
    );
    Item {
        name,
        status,
        current,
        need: format!("pressure >= {need_pages}"),
        set,
        why,
        sysctl: Some(name),
    }
}

fn conntrack_item(connections: u64, conntrack: &Reading<Option<Conntrack>>) -> Item {
    let name = "net.netfilter.nf_conntrack_max";
    let need = connections.saturating_mul(CONNTRACK_ENTRIES_PER_CONNECTION);
    let set = round_up(need, 1 << 16);
    let why_full = format!(
        "every tracked connection is an entry ({CONNTRACK_ENTRY_BYTES} B of slab each, {} for \
         {set}) and a closed one lingers 120 s in TIME_WAIT, so twice the target for a full \
         reconnect storm; when the table is full the kernel drops new connections (`nf_conntrack: \
         table full, dropping packet`). Alternatively exempt the MQTT port with a notrack rule",
        human_bytes(set.saturating_mul(CONNTRACK_ENTRY_BYTES))
    );
    match conntrack {
        Ok(None) => Item {
            name,
            status: Status::Ok,
            current: "not loaded".into(),
            need: format!(">= {need} if loaded"),
            set: set.to_string(),
            why: format!(
                "the nf_conntrack module is not loaded, so nothing is tracked; if a firewall \
                 loads it: {why_full}"
            ),
            sysctl: None,
        },
        Ok(Some(table)) => Item {
            why: format!("{} tracked now; {why_full}", table.count),
            ..at_least(name, &Ok(table.max), need, set, String::new())
        },
        Err(error) => Item {
            name,
            status: Status::Change,
            current: unreadable(error),
            need: format!(">= {need}"),
            set: set.to_string(),
            why: why_full,
            sysctl: Some(name),
        },
    }
}

fn ram_item(target: Target, mem_total: &Reading<u64>) -> Item {
    let per_connection = BROKER_BYTES_PER_CONNECTION
        + KERNEL_SOCKET_BYTES
        + EPOLL_BYTES_PER_CONNECTION
        + BURST_BYTES_PER_CONNECTION;
    let use_bytes = target
        .connections
        .saturating_mul(per_connection)
        .saturating_add(BROKER_FIXED_BYTES)
        .saturating_add(u64::from(target.shards) * REDB_CACHE_BYTES_PER_SHARD);
    let need = use_bytes.saturating_mul(RAM_SHARE.1) / RAM_SHARE.0;
    let (status, current) = match mem_total {
        Ok(bytes) if *bytes >= need => (Status::Ok, human_bytes(*bytes)),
        Ok(bytes) => (Status::Change, human_bytes(*bytes)),
        Err(error) => (Status::Change, unreadable(error)),
    };
    Item {
        name: "MemTotal",
        status,
        current,
        need: format!(">= {}", human_bytes(need)),
        set: format!(
            "{} of RAM or more, or fewer connections per node",
            human_bytes(round_up(need, GIB))
        ),
        why: format!(
            "{per_connection} B per connection: {BROKER_BYTES_PER_CONNECTION} B broker \
             (measured RssAnon per idle connection, perf/results/idle-memory.md), \
             {KERNEL_SOCKET_BYTES} B kernel socket (perf/results/socket-memory.md), {EPOLL_BYTES_PER_CONNECTION} B \
             epoll entry, {BURST_BYTES_PER_CONNECTION} B burst buffers (guidance); plus {} fixed \
             and {} redb cache per shard = {} in use, planned as {}/{} of RAM",
            human_bytes(BROKER_FIXED_BYTES),
            human_bytes(REDB_CACHE_BYTES_PER_SHARD),
            human_bytes(use_bytes),
            RAM_SHARE.0,
            RAM_SHARE.1
        ),
        sysctl: None,
    }
}

/// `value` rounded up to a multiple of `step`.
fn round_up(value: u64, step: u64) -> u64 {
    value.div_ceil(step).saturating_mul(step)
}

/// Bytes in KiB, MiB or GiB with one decimal.
fn human_bytes(bytes: u64) -> String {
    let (unit, name) = match bytes {
        b if b >= GIB => (GIB, "GiB"),
        b if b >= MIB => (MIB, "MiB"),
        b if b >= KIB => (KIB, "KiB"),
        _ => return format!("{bytes} B"),
    };
    // One decimal without floating point: tenths of the unit, rounded to nearest.
    let tenths = (u128::from(bytes) * 10 + u128::from(unit) / 2) / u128::from(unit);
    format!("{}.{} {name}", tenths / 10, tenths % 10)
}

impl Readings {
    /// Reads this host: this process's limits, /proc/sys, /proc/meminfo.
    pub fn read() -> Readings {
        use nix::sys::resource::{getrlimit, Resource};
        let rlimit = |resource| {
            getrlimit(resource)
                .map(|(soft, hard)| Rlimit { soft, hard })
                .map_err(|error| format!("getrlimit: {error}"))
        };
        let page_bytes = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .map_err(|error| format!("sysconf: {error}"))
            .and_then(|size| {
                size.and_then(|size| u64::try_from(size).ok()).ok_or_else(|| "no page size".into())
            });
        let conntrack_max = Path::new("/proc/sys/net/netfilter/nf_conntrack_max");
        let conntrack = if conntrack_max.exists() {
            proc_number(conntrack_max).and_then(|max| {
                let count = proc_number(Path::new("/proc/sys/net/netfilter/nf_conntrack_count"))?;
                Ok(Some(Conntrack { max, count }))
            })
        } else {
            Ok(None)
        };
        Readings {
            nofile: rlimit(Resource::RLIMIT_NOFILE),
            memlock: rlimit(Resource::RLIMIT_MEMLOCK),
            nr_open: proc_number(Path::new("/proc/sys/fs/nr_open")),
            file_max: proc_number(Path::new("/proc/sys/fs/file-max")),
            files_open: proc_numbers::<3>(Path::new("/proc/sys/fs/file-nr")).map(|nr| nr[0]),
            somaxconn: proc_number(Path::new("/proc/sys/net/core/somaxconn")),
            tcp_max_syn_backlog: proc_number(Path::new("/proc/sys/net/ipv4/tcp_max_syn_backlog")),
            ip_local_port_range: proc_numbers::<2>(Path::new(
                "/proc/sys/net/ipv4/ip_local_port_range",
            ))
            .map(|range| (range[0], range[1])),
            tcp_mem_pages: proc_numbers::<3>(Path::new("/proc/sys/net/ipv4/tcp_mem")),
            page_bytes,
            conntrack,
            max_map_count: proc_number(Path::new("/proc/sys/vm/max_map_count")),
            mem_total_bytes: mem_total_bytes(Path::new("/proc/meminfo")),
        }
    }
}

fn read_proc(path: &Path) -> Reading<String> {
    std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))
}

fn proc_number(path: &Path) -> Reading<u64> {
    proc_numbers::<1>(path).map(|[value]| value)
}

/// The first `K` whitespace-separated numbers of a /proc file.
fn proc_numbers<const K: usize>(path: &Path) -> Reading<[u64; K]> {
    let text = read_proc(path)?;
    parse_numbers(&text).ok_or_else(|| format!("{}: not {K} numbers: {text:?}", path.display()))
}

fn parse_numbers<const K: usize>(text: &str) -> Option<[u64; K]> {
    let mut values = [0; K];
    let mut words = text.split_whitespace();
    for value in &mut values {
        *value = words.next()?.parse().ok()?;
    }
    Some(values)
}

fn mem_total_bytes(path: &Path) -> Reading<u64> {
    let text = read_proc(path)?;
    parse_mem_total(&text).ok_or_else(|| format!("{}: no MemTotal line", path.display()))
}

/// `MemTotal:       24683656 kB` → bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(KIB),
        _ => None,
    }
}

/// Runs `shardmq check-system`.
pub fn main(args: CheckSystemArgs) -> ExitCode {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.unwrap_or(u16::try_from(online).unwrap_or(u16::MAX));
    let target = Target { connections: args.connections, shards };
    let report = assess(target, &Readings::read());
    let host = read_proc(Path::new("/proc/sys/kernel/hostname"))
        .map(|host| host.trim().to_string())
        .unwrap_or_else(|_| "this host".into());
    match args.format {
        Format::Text => print!("{}", report.render_text(&host)),
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host tuned for 600K connections on 16 shards, with conntrack loaded.
    fn tuned_host() -> Readings {
        Readings {
            nofile: Ok(Rlimit { soft: 1 << 20, hard: 1 << 20 }),
            memlock: Ok(Rlimit { soft: 64 * MIB, hard: 64 * MIB }),
            nr_open: Ok(1 << 20),
            file_max: Ok(9_223_372_036_854_775_807),
            files_open: Ok(2_000),
            somaxconn: Ok(4096),
            tcp_max_syn_backlog: Ok(8192),
            ip_local_port_range: Ok((32_768, 60_999)),
            tcp_mem_pages: Ok([196_608, 262_144, 393_216]),
            page_bytes: Ok(4096),
            conntrack: Ok(Some(Conntrack { max: 2_097_152, count: 10 })),
            max_map_count: Ok(65_530),
            mem_total_bytes: Ok(32 * GIB),
        }
    }

    /// This project's VM: 20,000 files, 8 MiB memlock, 24 GiB (`ulimit -Hn`, `ulimit -Hl`,
    /// /proc/meminfo).
    fn test_vm() -> Readings {
        Readings {
            nofile: Ok(Rlimit { soft: 20_000, hard: 20_000 }),
            memlock: Ok(Rlimit { soft: 8 * MIB, hard: 8 * MIB }),
            nr_open: Ok(1_048_576),
            file_max: Ok(2_466_174),
            files_open: Ok(170),
            somaxconn: Ok(4096),
            tcp_max_syn_backlog: Ok(2048),
            ip_local_port_range: Ok((32_768, 60_999)),
            tcp_mem_pages: Ok([287_898, 383_866, 575_796]),
            page_bytes: Ok(4096),
            conntrack: Ok(Some(Conntrack { max: 262_144, count: 0 })),
            max_map_count: Ok(65_530),
            mem_total_bytes: Ok(24_683_656 * KIB),
        }
    }

    const BIG: Target = Target { connections: 600_000, shards: 16 };

    /// Asserts that exactly the items named in `changes` say CHANGE.
    fn check(target: Target, readings: Readings, changes: &[&str]) {
        let report = assess(target, &readings);
        let got: Vec<&str> = report
            .items
            .iter()
            .filter(|item| item.status == Status::Change)
            .map(|item| item.name)
            .collect();
        assert_eq!(got, changes, "{}", report.render_text("test"));
        assert_eq!(report.ok(), changes.is_empty());
    }

    #[test]
    fn fake_hosts() {
        check(BIG, tuned_host(), &[]);
        check(
            BIG,
            Readings { nofile: Ok(Rlimit { soft: 1024, hard: 524_288 }), ..tuned_host() },
            &["RLIMIT_NOFILE soft", "RLIMIT_NOFILE hard"],
        );
        check(
            BIG,
            Readings { nofile: Ok(Rlimit { soft: 1024, hard: 1 << 20 }), ..tuned_host() },
            &["RLIMIT_NOFILE soft"],
        );
        check(BIG, Readings { somaxconn: Ok(128), ..tuned_host() }, &["net.core.somaxconn"]);
        check(
            BIG,
            Readings {
                conntrack: Ok(Some(Conntrack { max: 65_536, count: 40_000 })),
                ..tuned_host()
            },
            &["net.netfilter.nf_conntrack_max"],
        );
        check(BIG, Readings { conntrack: Ok(None), ..tuned_host() }, &[]);
        check(BIG, Readings { mem_total_bytes: Ok(2 * GIB), ..tuned_host() }, &["MemTotal"]);
        check(
            BIG,
            Readings { tcp_mem_pages: Ok([23_000, 30_000, 46_000]), ..tuned_host() },
            &["net.ipv4.tcp_mem"],
        );
        check(BIG, Readings { nr_open: Ok(524_288), ..tuned_host() }, &["fs.nr_open"]);
        check(BIG, Readings { file_max: Ok(400_000), ..tuned_host() }, &["fs.file-max"]);
        check(
            BIG,
            Readings { memlock: Ok(Rlimit { soft: 64 * KIB, hard: 64 * KIB }), ..tuned_host() },
            &["RLIMIT_MEMLOCK"],
        );
        check(BIG, Readings { max_map_count: Ok(1000), ..tuned_host() }, &["vm.max_map_count"]);
        check(
            BIG,
            Readings { ip_local_port_range: Ok((60_000, 60_100)), ..tuned_host() },
            &["net.ipv4.ip_local_port_range"],
        );
        // A value that cannot be read cannot be shown to be enough.
        check(
            BIG,
            Readings { somaxconn: Err("permission denied".into()), ..tuned_host() },
            &["net.core.somaxconn"],
        );
    }

    #[test]
    fn this_vm() {
        let small = Target { connections: 19_000, shards: 2 };
        // 19,000 connections fit its 20,000 files (as docs/loadgen.md demonstrates); only the
        // SYN backlog is short of a storm's.
        check(small, test_vm(), &["net.ipv4.tcp_max_syn_backlog"]);
        // A hundred clients can never fill a 2,048 SYN queue.
        check(Target { connections: 100, shards: 2 }, test_vm(), &[]);
        check(
            Target { connections: 100, shards: 2 },
            Readings { somaxconn: Ok(64), ..test_vm() },
            &["net.core.somaxconn"],
        );
        check(
            Target { connections: 10_000_000, shards: 2 },
            test_vm(),
            &[
                "RLIMIT_NOFILE soft",
                "RLIMIT_NOFILE hard",
                "fs.nr_open",
                "fs.file-max",
                "net.ipv4.tcp_max_syn_backlog",
                "net.ipv4.tcp_mem",
                "net.netfilter.nf_conntrack_max",
                "MemTotal",
            ],
        );
    }

    #[test]
    fn limits_and_files() {
        let report = assess(BIG, &tuned_host());
        // 600,000 + 64 + 16 × 78 + 6,000 = 607,312 descriptors: the default 1,048,576 holds it.
        assert_eq!(report.limit_nofile, 1 << 20);
        // 16 shards × 3 rings × 64 KiB = 3 MiB, twice that, and at least systemd's 8 MiB.
        assert_eq!(report.limit_memlock_bytes, 8 * MIB);
        let huge = assess(Target { connections: 2_000_000, shards: 128 }, &tuned_host());
        assert_eq!(huge.limit_nofile, round_up(2_000_000 + 64 + 128 * 78 + 20_000, 1 << 16));
        assert_eq!(huge.limit_memlock_bytes, 48 * MIB);

        let low = Readings { somaxconn: Ok(128), ..tuned_host() };
        let report = assess(BIG, &low);
        let text = report.render_text("h");
        assert!(text.contains("\nCHANGE  net.core.somaxconn = 128, set 4096 (need >= 4096): "));
        assert!(text.contains("\nOK      fs.nr_open = 1048576, keep (need >= 1048576): "));
        let sysctl = report.sysctl_file("h");
        assert!(sysctl.contains("\nnet.core.somaxconn = 4096\n"), "{sysctl}");
        assert!(sysctl.contains("\n# fs.nr_open = 1048576  (enough here)\n"), "{sysctl}");
        // Process limits are the drop-in's, not sysctls.
        assert!(!sysctl.contains("RLIMIT") && !sysctl.contains("MemTotal"), "{sysctl}");
        let drop_in = report.drop_in();
        assert!(drop_in.starts_with("[Service]\n"), "{drop_in}");
        assert!(drop_in.contains("\nLimitNOFILE=1048576\n"), "{drop_in}");
        assert!(drop_in.contains("\nLimitMEMLOCK=8M\n"), "{drop_in}");
        // Every item is one line.
        for item in &report.items {
            assert!(!item.why.contains('\n') && !item.current.contains('\n'), "{item:?}");
        }
    }

    #[test]
    fn tcp_mem_never_lowers() {
        let report = assess(
            BIG,
            &Readings { tcp_mem_pages: Ok([100_000, 120_000, 10_000_000]), ..tuned_host() },
        );
        let item = report.items.iter().find(|item| item.name == "net.ipv4.tcp_mem").expect("item");
        // 600,000 × 1,638 B / 4,096 = 239,942 pages at pressure.
        assert_eq!(item.set, "119971 239942 10000000");
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_numbers::<3>("170\t0\t2466174\n"), Some([170, 0, 2_466_174]));
        assert_eq!(parse_numbers::<2>("32768\t60999\n"), Some([32_768, 60_999]));
        assert_eq!(parse_numbers::<2>("32768\n"), None);
        assert_eq!(parse_numbers::<1>("x\n"), None);
        assert_eq!(
            parse_mem_total("MemTotal:       24683656 kB\nMemFree: 1 kB\n"),
            Some(24_683_656 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(human_bytes(8 * MIB), "8.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100), "100 B");
    }
}

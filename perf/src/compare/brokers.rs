//! The brokers under comparison: finding or installing them, starting one pinned to its core,
//! and stopping it.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The rumqttd release the harness builds: pinned, so figures compare across runs.
pub const RUMQTTD_VERSION: &str = "0.20.0";

/// One broker of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BrokerKind {
    Shardmq,
    Mosquitto,
    Rumqttd,
}

impl BrokerKind {
    pub const ALL: [BrokerKind; 3] =
        [BrokerKind::Shardmq, BrokerKind::Mosquitto, BrokerKind::Rumqttd];

    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Shardmq => "shardmq",
            BrokerKind::Mosquitto => "mosquitto",
            BrokerKind::Rumqttd => "rumqttd",
        }
    }

    pub fn parse(name: &str) -> anyhow::Result<BrokerKind> {
        BrokerKind::ALL.into_iter().find(|kind| kind.name() == name).with_context(|| {
            format!("--brokers: unknown broker {name:?} (shardmq, mosquitto, rumqttd)")
        })
    }
}

/// Where each broker's program is.
#[derive(Debug, Clone)]
pub struct Programs {
    pub shardmq: PathBuf,
    pub mosquitto: PathBuf,
    pub rumqttd: PathBuf,
}

impl Programs {
    /// Finds each broker wanted, installing Mosquitto (apt) or building rumqttd (cargo install,
    /// pinned version, into `target/peers`) when it is missing and `install` allows it.
    pub fn find_or_install(
        workspace: &Path,
        shardmq: PathBuf,
        wanted: &[BrokerKind],
        install: bool,
    ) -> anyhow::Result<Programs> {
        if !shardmq.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p shardmq-engine`",
                shardmq.display()
            );
        }
        let mut programs = Programs {
            shardmq,
            mosquitto: PathBuf::from("/usr/sbin/mosquitto"),
            rumqttd: workspace.join("target/peers/bin/rumqttd"),
        };
        if wanted.contains(&BrokerKind::Mosquitto) {
            programs.mosquitto = find_mosquitto(install)?;
        }
        if wanted.contains(&BrokerKind::Rumqttd) && !programs.rumqttd.is_file() {
            if !install {
                bail!(
                    "{} not found (run without --no-install to build it)",
                    programs.rumqttd.display()
                );
            }
            build_rumqttd(workspace)?;
        }
        Ok(programs)
    }
}

fn find_mosquitto(install: bool) -> anyhow::Result<PathBuf> {
    let candidates = [PathBuf::from("/usr/sbin/mosquitto"), PathBuf::from("/usr/bin/mosquitto")];
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    if !install {
        bail!("mosquitto not found (apt-get install mosquitto, or run without --no-install)");
    }
    eprintln!("compare: installing mosquitto with apt-get");
    let installed =
        |command: &mut Command| command.status().map(|status| status.success()).unwrap_or(false);
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    if !installed(Command::new("apt-get").args(["install", "-y", "-q", "mosquitto"]).envs(env)) {
        // A fresh machine has no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        if !installed(Command::new("apt-get").args(["install", "-y", "-q", "mosquitto"]).envs(env))
        {
            bail!("apt-get install mosquitto failed");
        }
    }
    // The package enables a system service on port 1883; the harness runs its own.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "mosquitto"])
        .stderr(Stdio::null())
        .status();
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .context("mosquitto was installed but its program is not in /usr/sbin or /usr/bin")
}

fn build_rumqttd(workspace: &Path) -> anyhow::Result<()> {
    eprintln!("compare: building rumqttd {RUMQTTD_VERSION} (cargo install, once)");
    // Not `--locked`: the lock file published with 0.20.0 pins a `metrics` release that
    // current compilers reject; semver-compatible updates build.
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "rumqttd", "--version"])
        .arg(format!("={RUMQTTD_VERSION}"))
        .args(["--no-default-features", "--root"])
        .arg(workspace.join("target/peers"))
        .env("CARGO_TARGET_DIR", workspace.join("target/peers-build"))
        .status()
        .context("running cargo install rumqttd")?;
    if !status.success() {
        bail!("cargo install rumqttd {RUMQTTD_VERSION} failed ({status})");
    }
    Ok(())
}

/// How a broker is configured for one run.
#[derive(Debug, Clone, Copy)]
pub struct BrokerSetup {
    pub port: u16,
    pub cpu: usize,
    /// Store persistent sessions durably: shardmq `--durability immediate`, Mosquitto
    /// `persistence true`. rumqttd has no persistence.
    pub durable: bool,
}

/// A broker process the harness started.
#[derive(Debug)]
pub struct RunningBroker {
    child: Child,
    pub kind: BrokerKind,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl RunningBroker {
    pub fn start(
        kind: BrokerKind,
        programs: &Programs,
        setup: BrokerSetup,
        scratch: &Path,
    ) -> anyhow::Result<RunningBroker> {
        let dir = scratch.join(format!("{}-{}", kind.name(), setup.port));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], setup.port));
        let mut command = pinned(setup.cpu);
        match kind {
            BrokerKind::Shardmq => {
                command
                    .arg(&programs.shardmq)
                    .args(["serve", "--shards", "1", "--log", "warn", "--listen"])
                    .arg(addr.to_string())
                    .arg("--data-dir")
                    .arg(dir.join("data"))
                    .args(["--durability", if setup.durable { "immediate" } else { "none" }]);
            }
            BrokerKind::Mosquitto => {
                let config = dir.join("mosquitto.conf");
                std::fs::write(&config, mosquitto_config(setup, &dir))?;
                command.arg(&programs.mosquitto).arg("-c").arg(config);
            }
            BrokerKind::Rumqttd => {
                let config = dir.join("rumqttd.toml");
                std::fs::write(&config, rumqttd_config(setup))?;
                command.arg(&programs.rumqttd).arg("-c").arg(config);
            }
        }
        let log = std::fs::File::create(dir.join("broker.log"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let mut broker = RunningBroker { child, kind, addr, dir };
        broker.wait_listening()?;
        Ok(broker)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); its log: {}",
                    self.kind.name(),
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {} within 20 s; its log: {}",
                    self.kind.name(),
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_string()
    }

    /// SIGTERM, then SIGKILL if it is still running after 5 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `sh -c 'ulimit -n <hard>; exec taskset -c CPU …'`: the open-file limit at its hard value (the
/// brokers and the load generator hold 19K sockets) and the process pinned to its core.
pub fn pinned(cpu: usize) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" && exec "$@""#)
        .arg("sh")
        .args(["taskset", "-c"])
        .arg(cpu.to_string());
    command
}

/// Mosquitto 2 as an operator runs it for throughput: anonymous on loopback, Nagle off (its
/// default is on, which would add up to 40 ms of latency), queue limits at their defaults
/// (`max_queued_messages 1000`, `max_inflight_messages 20`); persistence as the Debian package
/// ships it when durable (a snapshot on `autosave_interval`, 1800 s by default).
fn mosquitto_config(setup: BrokerSetup, dir: &Path) -> String {
    let mut config = String::new();
    let _ = writeln!(config, "listener {} 127.0.0.1", setup.port);
    config.push_str("allow_anonymous true\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n");
    config.push_str("max_connections -1\n");
    if setup.durable {
        config.push_str("persistence true\n");
        let _ = writeln!(config, "persistence_location {}/", dir.display());
    } else {
        config.push_str("persistence false\n");
    }
    config
}

/// rumqttd's sample configuration with the connection throttle off (its sample waits 1 ms
/// between accepts, which would cap connects at 1,000/s) and room for 100K connections.
fn rumqttd_config(setup: BrokerSetup) -> String {
    format!(
        r#"id = 0

[router]
id = 0
max_connections = 100000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{port_v5}"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
"#,
        port = setup.port,
        port_v5 = setup.port + 1,
    )
}

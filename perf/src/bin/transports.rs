//! What each transport costs a broker: memory per idle connection and CPU per connect, over
//! plain TCP, TLS, WebSocket and secure WebSocket, for shardmq and (where it has the transport)
//! Mosquitto, side by side.
//!
//! One client thread opens `--connections` connections one after another (TCP connect, the TLS
//! handshake with rustls, the WebSocket upgrade, MQTT CONNECT, CONNACK), holds them all, and
//! closes them. The broker is pinned to core 0 and this client to core 1. Figures per run:
//! connects per second (sequential, so the client's own handshake cost is in it), the broker's
//! CPU per connect (user + system time over the opening, /proc/PID/stat) and its resident memory
//! per held connection (VmRSS with the connections held minus before, over their count).
//!
//! Run: `cargo build --release -p shardmq-engine -p shardmq-perf && taskset -c 1
//! target/release/transports` (writes perf/results/transports/LATEST.md with `--record`).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Parser;
use rustls::pki_types::ServerName;
use shardmq_io::codec::{ByteString, Connect, Packet, Properties, ProtocolVersion};
use shardmq_perf::compare::{pinned, procfs};

#[derive(Debug, Parser)]
struct Args {
    /// The shardmq binary.
    #[arg(long, default_value = "target/release/shardmq")]
    broker: PathBuf,
    /// Connections held per run.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Rounds (each cell is the median, with the range).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also write perf/results/transports/LATEST.md.
    #[arg(long)]
    record: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Tls,
    WebSocket,
    SecureWebSocket,
}

impl Transport {
    const ALL: [Transport; 4] =
        [Transport::Tcp, Transport::Tls, Transport::WebSocket, Transport::SecureWebSocket];

    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::WebSocket => "WebSocket",
            Transport::SecureWebSocket => "WebSocket over TLS",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::SecureWebSocket)
    }

    fn websocket(self) -> bool {
        matches!(self, Transport::WebSocket | Transport::SecureWebSocket)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    Shardmq,
    Mosquitto,
}

impl Broker {
    fn name(self) -> &'static str {
        match self {
            Broker::Shardmq => "shardmq",
            Broker::Mosquitto => "mosquitto",
        }
    }
}

/// The test certificate (ECDSA P-256, for 127.0.0.1) in a directory, and a client config
/// that trusts it.
struct Certificates {
    dir: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl Certificates {
    fn make() -> anyhow::Result<Certificates> {
        let dir = std::env::temp_dir().join(format!("shardmq-transports-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
        std::fs::write(dir.join("server.pem"), certified.cert.pem())?;
        std::fs::write(dir.join("server.key"), certified.signing_key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Certificates { dir, client: Arc::new(client) })
    }

    fn certificate(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// A running broker with one listener of the transport under test.
struct Running {
    child: Child,
    address: SocketAddr,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(
    broker: Broker,
    transport: Transport,
    binary: &Path,
    certificates: &Certificates,
) -> anyhow::Result<Option<Running>> {
    let port = free_port()?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = std::env::temp_dir().join(format!(
        "shardmq-transports-{}-{}-{port}",
        std::process::id(),
        broker.name()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut command = pinned(0);
    match broker {
        Broker::Shardmq => {
            let plain_port = if transport == Transport::Tcp { port } else { free_port()? };
            command
                .arg(binary)
                .args(["serve", "--shards", "1", "--log", "warn", "--durability", "none"])
                .args(["--listen", &format!("127.0.0.1:{plain_port}")])
                .arg("--data-dir")
                .arg(dir.join("data"));
            let flag = match transport {
                Transport::Tcp => None,
                Transport::Tls => Some("--tls-listen"),
                Transport::WebSocket => Some("--ws-listen"),
                Transport::SecureWebSocket => Some("--wss-listen"),
            };
            if let Some(flag) = flag {
                command.args([flag, &address.to_string()]);
            }
            if transport.tls() {
                command.arg("--tls-cert").arg(certificates.certificate());
                command.arg("--tls-key").arg(certificates.key());
            }
        }
        Broker::Mosquitto => {
            // Debian's Mosquitto is built without WebSocket support.
            if transport.websocket() {
                return Ok(None);
            }
            let mut config = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n\
                 log_dest stderr\nlog_type error\npersistence false\n"
            );
            if transport.tls() {
                let _ = writeln!(config, "certfile {}", certificates.certificate().display());
                let _ = writeln!(config, "keyfile {}", certificates.key().display());
            }
            let path = dir.join("mosquitto.conf");
            std::fs::write(&path, config)?;
            command.arg("mosquitto").arg("-c").arg(&path);
        }
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", broker.name()))?;
    let running = Running { child, address, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(address).is_err() {
        if Instant::now() > deadline {
            bail!("{} did not listen on {address}", broker.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(running))
}

/// The broker's own pid: `pinned` runs it through `sh -c ... exec`, so the child is the broker.
fn pid(running: &Running) -> u32 {
    running.child.id()
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Opens one connection through every layer and reads its CONNACK.
fn open(
    transport: Transport,
    address: SocketAddr,
    certificates: &Certificates,
    client_id: &str,
) -> anyhow::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(address)?;
    tcp.set_nodelay(true)?;
    let mut stream: Box<dyn Stream> = if transport.tls() {
        let name = ServerName::try_from("127.0.0.1")?.to_owned();
        let connection = rustls::ClientConnection::new(certificates.client.clone(), name)?;
        Box::new(rustls::StreamOwned::new(connection, tcp))
    } else {
        Box::new(tcp)
    };
    if transport.websocket() {
        stream.write_all(
            b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        )?;
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            response.push(byte[0]);
        }
        if !response.starts_with(b"HTTP/1.1 101") {
            bail!("upgrade refused: {}", String::from_utf8_lossy(&response));
        }
    }
    let connect = Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        // Held idle for seconds: no keepalive traffic meanwhile.
        keep_alive_secs: 600,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let mut packet = BytesMut::new();
    Packet::Connect(Box::new(connect)).encode(ProtocolVersion::V3_1_1, &mut packet)?;
    if transport.websocket() {
        // A masked binary frame (mask 0: the payload goes as it is).
        let mut frame = vec![0x82, 0x80 | packet.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(&packet);
        stream.write_all(&frame)?;
        let mut header = [0u8; 2];
        stream.read_exact(&mut header)?;
    } else {
        stream.write_all(&packet)?;
    }
    stream.flush()?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        bail!("refused: {connack:?}");
    }
    Ok(stream)
}

#[derive(Debug, Clone, Copy)]
struct Run {
    connects_per_sec: f64,
    cpu_micros_per_connect: f64,
    bytes_per_connection: f64,
}

fn run(
    broker: Broker,
    transport: Transport,
    args: &Args,
    certificates: &Certificates,
) -> anyhow::Result<Option<Run>> {
    let Some(running) = start(broker, transport, &args.broker, certificates)? else {
        return Ok(None);
    };
    let pid = pid(&running);
    // A few connections first: allocator arenas and TLS tables warm, as in a broker that runs.
    let warm: Vec<_> = (0..20)
        .map(|i| open(transport, running.address, certificates, &format!("warm-{i}")))
        .collect::<anyhow::Result<_>>()?;
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = procfs::rss_bytes(pid)?;
    let cpu_before = procfs::cpu_seconds(pid)?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        held.push(
            open(transport, running.address, certificates, &format!("c{i}"))
                .with_context(|| format!("connection {i} to {}", broker.name()))?,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(pid)? - cpu_before;
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = procfs::rss_bytes(pid)?;
    drop(held);
    let n = args.connections as f64;
    Ok(Some(Run {
        connects_per_sec: n / elapsed,
        cpu_micros_per_connect: cpu * 1e6 / n,
        bytes_per_connection: rss_after.saturating_sub(rss_before) as f64 / n,
    }))
}

fn median_range(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let certificates = Certificates::make()?;
    let brokers = [Broker::Shardmq, Broker::Mosquitto];
    let mut results: Vec<(Broker, Transport, Vec<Run>)> = Vec::new();
    for broker in brokers {
        for transport in Transport::ALL {
            results.push((broker, transport, Vec::new()));
        }
    }
    for round in 1..=args.rounds {
        // The order of the brokers alternates between rounds.
        let order: Vec<Broker> =
            if round % 2 == 1 { brokers.to_vec() } else { brokers.iter().rev().copied().collect() };
        for transport in Transport::ALL {
            for &broker in &order {
                let Some(measured) = run(broker, transport, &args, &certificates)? else {
                    continue;
                };
                eprintln!(
                    "round {round}/{}: {:9} {:18} {:8.0} connects/s {:7.0} µs CPU/connect \
                     {:7.0} B/connection",
                    args.rounds,
                    broker.name(),
                    transport.name(),
                    measured.connects_per_sec,
                    measured.cpu_micros_per_connect,
                    measured.bytes_per_connection
                );
                let slot = results
                    .iter_mut()
                    .find(|(b, t, _)| *b == broker && *t == transport)
                    .context("a result slot")?;
                slot.2.push(measured);
            }
        }
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| broker | transport | connects/s (sequential, one client) | broker CPU per connect | \
         broker memory per idle connection |\n|---|---|---|---|---|"
    );
    for (broker, transport, runs) in &results {
        if runs.is_empty() {
            let _ = writeln!(
                table,
                "| {} | {} | (not built with it) | | |",
                broker.name(),
                transport.name()
            );
            continue;
        }
        let pick = |f: fn(&Run) -> f64| median_range(&mut runs.iter().map(f).collect::<Vec<_>>());
        let (rate, rate_min, rate_max) = pick(|r| r.connects_per_sec);
        let (cpu, cpu_min, cpu_max) = pick(|r| r.cpu_micros_per_connect);
        let (bytes, bytes_min, bytes_max) = pick(|r| r.bytes_per_connection);
        let _ = writeln!(
            table,
            "| {} | {} | {rate:.0} [{rate_min:.0} – {rate_max:.0}] | {cpu:.0} µs [{cpu_min:.0} – \
             {cpu_max:.0}] | {bytes:.0} B [{bytes_min:.0} – {bytes_max:.0}] |",
            broker.name(),
            transport.name()
        );
    }
    println!("{table}");
    if args.record {
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default();
        let date = Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d")
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default();
        let text = format!(
            "# Transports: TCP, TLS, WebSocket and WebSocket over TLS\n\n\
             Commit {commit}, {date}; {} connections per run, {} rounds, each cell the median \
             [min – max]. Broker pinned to core 0 (one shard), the client (one thread, rustls, \
             connections opened one after another) to core 1, on the 2-vCPU machine described \
             in perf/README.md. ECDSA P-256 certificate, TLS 1.3, MQTT 3.1.1 CONNECT. Command: \
             `cargo build --release -p shardmq-engine -p shardmq-perf && taskset -c 1 \
             target/release/transports --record`.\n\n{table}",
            args.connections, args.rounds
        );
        let dir = Path::new("perf/results/transports");
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("LATEST.md"), text)?;
        eprintln!("wrote {}", dir.join("LATEST.md").display());
    }
    let _ = std::fs::remove_dir_all(&certificates.dir);
    Ok(())
}

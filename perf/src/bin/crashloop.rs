//! kill -9 at random moments under heavy commits, again and again: every restart must open
//! cleanly and lose no acknowledged message.
//!
//! One broker (release build, `durability = immediate`, 2 shards) and one persistent session,
//! `sink`, subscribed to `load/#` at QoS 1 and offline, so every message published is stored
//! before it is acknowledged. Each round: publishers send QoS 1 messages as fast as the broker
//! acknowledges them (32 in flight each), the broker is killed with SIGKILL after a random
//! 100–1500 ms, restarted on the same data directory, and `sink` reconnects and takes its
//! queue. Every message that was acknowledged (PUBACK 0x00) must arrive (duplicates are allowed
//! at QoS 1). The figures: rounds, messages acknowledged, messages lost (must be 0), restart
//! times.
//!
//! Run: `cargo build --release -p shardmq-engine -p shardmq-perf && target/release/crashloop
//! --rounds 50` (`--record` writes perf/results/crashloop.md).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Parser;
use shardmq_io::codec::{
    Ack, ByteString, Bytes, Connect, Decoded, Decoder, Disconnect, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry,
};

#[derive(Debug, Parser)]
struct Args {
    /// The shardmq binary.
    #[arg(long, default_value = "target/release/shardmq")]
    broker: PathBuf,
    /// Kill-and-restart rounds.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 512)]
    payload: usize,
    /// Seed of the kill delays.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write perf/results/crashloop.md.
    #[arg(long)]
    record: bool,
}

/// A blocking MQTT 5 client that reports a dead broker as an error instead of panicking.
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Client {
    fn connect(address: SocketAddr, connect: Connect) -> anyhow::Result<(Client, bool)> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            decoder: Decoder::client(ProtocolVersion::V5, 1 << 20),
            buf: BytesMut::new(),
        };
        client.send(&Packet::Connect(Box::new(connect)))?;
        match client.next(Duration::from_secs(10))? {
            Some(Packet::ConnAck(ack)) if ack.reason == ReasonCode::SUCCESS => {
                Ok((client, ack.session_present))
            }
            other => bail!("no CONNACK: {other:?}"),
        }
    }

    fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut out)?;
        self.stream.write_all(&out)?;
        Ok(())
    }

    /// The next packet, `None` when nothing came within `timeout`, an error when the broker is
    /// gone.
    fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<Packet>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Decoded::Packet(packet) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(packet));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn connect_packet(client_id: &str, persistent: bool) -> Connect {
    let mut properties = Properties::default();
    if persistent {
        properties.session_expiry_interval = Some(u32::MAX);
    }
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: !persistent,
        keep_alive_secs: 60,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties,
    }
}

fn packet_id(value: u16) -> PacketId {
    PacketId::new(value.max(1)).expect("non-zero")
}

struct Broker {
    child: Child,
    address: SocketAddr,
}

/// Starts the broker on `data_dir` and a fresh port; how long until it accepted.
fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<(Broker, Duration)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["serve", "--shards", "2", "--log", "warn", "--durability", "immediate"])
        .args(["--listen", &address.to_string()])
        .args(["--max-queued-messages", "10000000", "--max-queued-bytes", "100000000000"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut broker = Broker { child, address };
    loop {
        if TcpStream::connect(address).is_ok() {
            return Ok((broker, started.elapsed()));
        }
        if let Some(status) = broker.child.try_wait()? {
            bail!("the broker exited at start: {status}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the broker did not listen within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One publisher: QoS 1 messages `p<index>-<seq>` until the broker dies; acknowledged ones go
/// into `acked`.
fn publish_until_killed(
    address: SocketAddr,
    index: usize,
    round: usize,
    payload_bytes: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let Ok((mut client, _)) =
        Client::connect(address, connect_packet(&format!("pub-{round}-{index}"), false))
    else {
        return;
    };
    let mut in_flight: HashMap<u16, String> = HashMap::new();
    let mut next_id: u16 = 1;
    let mut seq = 0u64;
    let padding = "x".repeat(payload_bytes);
    while !stop.load(Ordering::Relaxed) {
        while in_flight.len() < 32 {
            let id = next_id;
            next_id = if next_id == u16::MAX { 1 } else { next_id + 1 };
            let name = format!("r{round}-p{index}-{seq}");
            seq += 1;
            let publish = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: ByteString::from(format!("load/{index}")),
                packet_id: Some(packet_id(id)),
                properties: Properties::default(),
                payload: Bytes::from(format!("{name} {padding}")),
            });
            if client.send(&publish).is_err() {
                return;
            }
            in_flight.insert(id, name);
        }
        match client.next(Duration::from_secs(5)) {
            Ok(Some(Packet::PubAck(ack))) => {
                if let Some(name) = in_flight.remove(&ack.packet_id.get()) {
                    if ack.reason == ReasonCode::SUCCESS {
                        acked.lock().expect("acked").push(name);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// `sink` takes its queue: every message until a second of silence, acknowledged.
fn drain(address: SocketAddr) -> anyhow::Result<(bool, HashSet<String>)> {
    let (mut sink, present) = Client::connect(address, connect_packet("sink", true))?;
    let mut got = HashSet::new();
    while let Some(packet) = sink.next(Duration::from_secs(1))? {
        if let Packet::Publish(publish) = packet {
            let text = String::from_utf8_lossy(&publish.payload);
            got.insert(text.split(' ').next().unwrap_or_default().to_owned());
            if let Some(id) = publish.packet_id {
                sink.send(&Packet::PubAck(Ack::success(id)))?;
            }
        }
    }
    sink.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))?;
    Ok((present, got))
}

/// A small deterministic generator for the kill delays (xorshift64).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data_dir = std::env::temp_dir().join(format!("shardmq-crashloop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let (broker, _) = start(&args.broker, &data_dir)?;
    subscribe_sink(broker.address)?;
    let mut crashloop = Crashloop {
        args: &args,
        data_dir,
        broker,
        random: args.seed.max(1),
        acked_total: 0,
        lost_total: 0,
        restarts: Vec::new(),
    };
    for round in 1..=args.rounds {
        crashloop.round(round)?;
    }
    let Crashloop { mut broker, data_dir, acked_total, lost_total, mut restarts, .. } = crashloop;
    broker.child.kill()?;
    broker.child.wait()?;
    let _ = std::fs::remove_dir_all(&data_dir);
    restarts.sort();
    let median = restarts[restarts.len() / 2];
    let max = restarts[restarts.len() - 1];
    let summary = format!(
        "{} rounds of kill -9 at a random 100–1500 ms into QoS 1 publishing ({} publishers, {} \
         B payloads, 32 in flight each, durability immediate, 2 shards): {acked_total} messages \
         acknowledged, **{lost_total} lost**; every restart opened its files (restart to \
         listening: median {median:?}, max {max:?}).",
        args.rounds, args.publishers, args.payload
    );
    println!("{summary}");
    if args.record {
        record(&args, &summary)?;
    }
    if lost_total > 0 {
        bail!("{lost_total} acknowledged messages were lost");
    }
    Ok(())
}

/// Creates the persistent session every message is stored for: `sink`, subscribed to `load/#`
/// at QoS 1, then offline.
fn subscribe_sink(address: SocketAddr) -> anyhow::Result<()> {
    let (mut sink, _) = Client::connect(address, connect_packet("sink", true))?;
    let filter = TopicFilterEntry {
        filter: ByteString::from("load/#"),
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
    };
    sink.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Properties::default(),
        filters: vec![filter],
    }))?;
    match sink.next(Duration::from_secs(5))? {
        Some(Packet::SubAck(_)) => {}
        other => bail!("no SUBACK: {other:?}"),
    }
    sink.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))?;
    Ok(())
}

/// The kill-and-restart rounds: the broker of the current round, the kill delays' generator,
/// and the totals so far.
struct Crashloop<'a> {
    args: &'a Args,
    data_dir: PathBuf,
    broker: Broker,
    random: u64,
    acked_total: usize,
    lost_total: usize,
    restarts: Vec<Duration>,
}

impl Crashloop<'_> {
    /// One round: publish, kill the broker after a random delay, restart it, and check that
    /// `sink` got every acknowledged message.
    fn round(&mut self, round: usize) -> anyhow::Result<()> {
        let args = self.args;
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let publishers: Vec<_> = (0..args.publishers)
            .map(|index| {
                let (acked, stop) = (acked.clone(), stop.clone());
                let (address, payload) = (self.broker.address, args.payload);
                std::thread::spawn(move || {
                    publish_until_killed(address, index, round, payload, acked, stop)
                })
            })
            .collect();
        let delay = Duration::from_millis(100 + next_random(&mut self.random) % 1400);
        std::thread::sleep(delay);
        self.broker.child.kill()?;
        self.broker.child.wait()?;
        stop.store(true, Ordering::Relaxed);
        for publisher in publishers {
            let _ = publisher.join();
        }
        let (restarted, took) = start(&args.broker, &self.data_dir)
            .with_context(|| format!("round {round}: the restart after kill -9 failed"))?;
        self.broker = restarted;
        self.restarts.push(took);
        let (present, got) = drain(self.broker.address)?;
        if !present {
            bail!("round {round}: the session did not survive the kill");
        }
        let acked = acked.lock().expect("acked");
        let lost: Vec<&String> = acked.iter().filter(|name| !got.contains(*name)).collect();
        eprintln!(
            "round {round}/{}: killed after {delay:?}; {} acknowledged, {} delivered after the \
             restart, {} lost; restart took {took:?}",
            args.rounds,
            acked.len(),
            got.len(),
            lost.len()
        );
        if let Some(first) = lost.first() {
            eprintln!("  lost, e.g. {first}");
        }
        self.acked_total += acked.len();
        self.lost_total += lost.len();
        Ok(())
    }
}

/// Writes perf/results/crashloop.md: the commit, the command and `summary`.
fn record(args: &Args, summary: &str) -> anyhow::Result<()> {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    let text = format!(
        "# kill -9 under heavy commits, repeated\n\nCommit {commit}. Command: `cargo build \
         --release -p shardmq-engine -p shardmq-perf && target/release/crashloop --rounds {} \
         --seed {} --record` on the 2-vCPU machine of perf/README.md.\n\n{summary}\n",
        args.rounds, args.seed
    );
    std::fs::write("perf/results/crashloop.md", text)?;
    eprintln!("wrote perf/results/crashloop.md");
    Ok(())
}

//! Durable QoS 1 benchmark: publishers in closed loop (PUBLISH, wait for PUBACK, repeat) to a
//! topic that a persistent, offline session subscribes to, so every message must be stored
//! before it is acknowledged. Reports messages/s and acknowledgement latency percentiles for each
//! publisher count, with `--durability immediate` and `none`.
//!
//! Run: `cargo run --release -p shardmq-perf --bin durable_qos1 -- --broker target/release/shardmq`
//! (it starts the broker itself, one shard, on a fresh data directory per run).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Parser;
use hdrhistogram::Histogram;
use shardmq_io::codec::{
    ByteString, Bytes, Connect, Decoded, Decoder, Packet, PacketId, Properties, ProtocolVersion,
    Publish, QoS, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
struct Args {
    /// The shardmq binary to benchmark.
    #[arg(long, default_value = "target/release/shardmq")]
    broker: PathBuf,
    /// Publisher counts to run, comma-separated.
    #[arg(long, default_value = "16,256,1024", value_delimiter = ',')]
    publishers: Vec<usize>,
    /// Durability settings to run, comma-separated.
    #[arg(long, default_value = "immediate,none", value_delimiter = ',')]
    durability: Vec<String>,
    /// Seconds measured per run (after a one-second warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

struct BrokerProcess {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start_broker(binary: &PathBuf, durability: &str) -> anyhow::Result<BrokerProcess> {
    let dir = std::env::temp_dir()
        .join(format!("shardmq-durable-bench-{}-{durability}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--log", "warn,shardmq=info"])
        .args(["--durability", durability, "--max-inflight", "1000"])
        // The offline subscriber's queue holds every message of the run.
        .args(["--max-queued-messages", "100000000", "--max-queued-bytes", "100000000000"])
        .arg("--data-dir")
        .arg(&dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let Some(line) = lines.next() else { bail!("the broker exited before listening") };
        let line = line?;
        if let Some(rest) = line.split("listening for MQTT on ").nth(1) {
            let addr = rest.split_whitespace().next().context("address")?;
            break addr.rsplit(':').next().context("port")?.parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(BrokerProcess { child, port, _dir: dir })
}

/// A minimal MQTT 5 client over tokio for the benchmark.
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    read: BytesMut,
    write: BytesMut,
}

impl Client {
    async fn connect(port: u16, id: &str, expiry: u32) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            decoder: Decoder::client(ProtocolVersion::V5, u32::MAX),
            read: BytesMut::with_capacity(4096),
            write: BytesMut::new(),
        };
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: expiry == 0,
            keep_alive_secs: 0,
            client_id: ByteString::from(id),
            will: None,
            username: None,
            password: None,
            properties: Properties {
                session_expiry_interval: Some(expiry),
                ..Properties::default()
            },
        };
        client.send(&Packet::Connect(Box::new(connect))).await?;
        match client.next().await? {
            Packet::ConnAck(ack) if !ack.reason.is_error() => Ok(client),
            other => bail!("connect refused: {other:?}"),
        }
    }

    async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        self.write.clear();
        packet.encode(ProtocolVersion::V5, &mut self.write)?;
        self.stream.write_all(&self.write).await?;
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Decoded::Packet(packet) = self.decoder.decode(&mut self.read)? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                bail!("connection closed");
            }
        }
    }
}

struct RunResult {
    messages: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

async fn run(
    port: u16,
    publishers: usize,
    seconds: u64,
    payload: usize,
) -> anyhow::Result<RunResult> {
    // The persistent subscriber: subscribes, then goes away so every message is queued for it.
    let mut subscriber = Client::connect(port, "durable-subscriber", 3600).await?;
    subscriber
        .send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).context("id")?,
            properties: Properties::default(),
            filters: vec![TopicFilterEntry {
                filter: ByteString::from("bench/#"),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        }))
        .await?;
    subscriber.next().await?;
    drop(subscriber);

    let payload = Bytes::from(vec![0x5A; payload]);
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for index in 0..publishers {
        let payload = payload.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut client = Client::connect(port, &format!("publisher-{index}"), 0).await?;
            let topic = ByteString::from(format!("bench/{index}"));
            let mut latency = Histogram::<u64>::new(3)?;
            let mut messages = 0u64;
            let mut id: u16 = 0;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                id = id.checked_add(1).unwrap_or(1);
                let publish = Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: topic.clone(),
                    packet_id: PacketId::new(id),
                    properties: Properties::default(),
                    payload: payload.clone(),
                };
                client.send(&Packet::Publish(publish)).await?;
                match client.next().await? {
                    Packet::PubAck(ack) if !ack.reason.is_error() => {}
                    other => bail!("unexpected {other:?}"),
                }
                if now >= warmup_end {
                    messages += 1;
                    latency.record(now.elapsed().as_micros() as u64)?;
                }
            }
            anyhow::Ok((messages, latency))
        }));
    }
    let mut total = RunResult { messages: 0, seconds: seconds as f64, latency: Histogram::new(3)? };
    for task in tasks {
        let (messages, latency) = task.await??;
        total.messages += messages;
        total.latency.add(latency)?;
    }
    Ok(total)
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    println!(
        "| durability | publishers | messages/s | ack p50 (µs) | ack p99 (µs) | ack max (µs) |"
    );
    println!("|---|---|---|---|---|---|");
    for durability in &args.durability {
        for &publishers in &args.publishers {
            let broker = start_broker(&args.broker, durability)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let local = tokio::task::LocalSet::new();
            let result = local
                .block_on(&runtime, run(broker.port, publishers, args.seconds, args.payload))?;
            let rate = result.messages as f64 / result.seconds;
            println!(
                "| {durability} | {publishers} | {rate:.0} | {} | {} | {} |",
                result.latency.value_at_quantile(0.5),
                result.latency.value_at_quantile(0.99),
                result.latency.max()
            );
            drop(broker);
        }
    }
    Ok(())
}

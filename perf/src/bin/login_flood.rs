//! Correct logins while others flood the broker with wrong passwords.
//!
//! One broker (release build, 1 shard, a password file of argon2id entries: each check takes
//! tens of milliseconds on purpose, and the node has two check threads). Attackers log in as
//! `alice` with a wrong password again and again (connect, CONNECT, read the CONNACK, close):
//! `--attackers` connections from one address (127.0.0.2), then as many spread over 50
//! addresses (127.0.0.2-51). Meanwhile `bob` logs in with his password `--legit-rate` times a
//! second, each from one of 127.0.0.100-149. The figures per run: the share of bob's logins
//! that succeeded and their connect time (TCP connect to CONNACK), and the attackers' attempts
//! by answer. Each flood runs with the login guard as configured by default and with it off
//! (`--max-login-failures 0`: only the fair per-source queue of checks is left), for
//! comparison. A last probe times wrong-password logins of a known and of an unknown user on
//! the idle broker: they should cost the same.
//!
//! Run: `cargo build --release -p shardmq-engine -p shardmq-perf && target/release/login_flood
//! --record` (writes perf/results/login-flood.md).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Parser;
use hdrhistogram::Histogram;
use shardmq_io::codec::{
    ByteString, Bytes, Connect, Decoded, Decoder, Packet, Properties, ProtocolVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Args {
    /// The shardmq binary.
    #[arg(long, default_value = "target/release/shardmq")]
    broker: PathBuf,
    /// Seconds each flood lasts.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Attacking connections (each logs in again as soon as it is answered).
    #[arg(long, default_value_t = 300)]
    attackers: usize,
    /// Correct logins a second from other addresses.
    #[arg(long, default_value_t = 20)]
    legit_rate: u32,
    /// Also write perf/results/login-flood.md.
    #[arg(long)]
    record: bool,
}

const ATTACKED: &str = "alice";
const LEGIT: (&str, &str) = ("bob", "bob's password");
const CONNACK_WAIT: Duration = Duration::from_secs(10);

/// How one login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Answer {
    Connack(u8),
    /// No CONNACK: refused before it, closed, or timed out.
    Nothing,
}

struct Broker {
    child: Child,
    address: SocketAddr,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Broker> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let data = dir.join(format!("data-{port}"));
    let child = Command::new(binary)
        .args(["serve", "--shards", "1", "--log", "warn", "--listen", &address.to_string()])
        .arg("--password-file")
        .arg(dir.join("passwd"))
        .arg("--data-dir")
        .arg(&data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut broker = Broker { child, address };
    let started = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        if let Some(status) = broker.child.try_wait()? {
            bail!("the broker exited at start: {status}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the broker did not listen within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(broker)
}

/// Writes `dir/passwd` with argon2id entries, through `shardmq passwd` as an operator would.
fn password_file(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    for (user, password) in [(ATTACKED, "alice's password"), LEGIT] {
        let mut child = Command::new(binary)
            .args(["passwd"])
            .arg(dir.join("passwd"))
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        use std::io::Write as _;
        child.stdin.take().context("stdin")?.write_all(format!("{password}\n").as_bytes())?;
        if !child.wait()?.success() {
            bail!("shardmq passwd failed");
        }
    }
    Ok(())
}

/// One login from `source`: how it was answered and how long it took.
async fn login(
    broker: SocketAddr,
    source: IpAddr,
    user: &str,
    password: &str,
) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(CONNACK_WAIT, attempt(broker, source, user, password))
        .await
        .unwrap_or(Answer::Nothing);
    (answer, started.elapsed())
}

async fn attempt(broker: SocketAddr, source: IpAddr, user: &str, password: &str) -> Answer {
    let Ok(socket) = TcpSocket::new_v4() else { return Answer::Nothing };
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return Answer::Nothing;
    }
    let Ok(mut stream) = socket.connect(broker).await else { return Answer::Nothing };
    // Closed with a reset, as a flooding client would: no TIME_WAIT to run a source address
    // out of ports.
    let _ = stream.set_zero_linger();
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive_secs: 60,
        client_id: ByteString::from(""),
        will: None,
        username: Some(ByteString::from(user)),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        properties: Properties::default(),
    };
    let mut out = BytesMut::new();
    if Packet::Connect(Box::new(connect)).encode(ProtocolVersion::V5, &mut out).is_err()
        || stream.write_all(&out).await.is_err()
    {
        return Answer::Nothing;
    }
    let mut decoder = Decoder::client(ProtocolVersion::V5, 1 << 16);
    let mut buf = BytesMut::new();
    loop {
        if let Ok(Decoded::Packet(Packet::ConnAck(ack))) = decoder.decode(&mut buf) {
            return Answer::Connack(ack.reason.0);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Answer::Nothing,
            Ok(_) => {}
        }
    }
}

/// What one flood measured.
struct Outcome {
    legit: Vec<(Answer, Duration)>,
    attacks: Vec<Answer>,
}

async fn flood(broker: SocketAddr, sources: &[IpAddr], args: &Args) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for index in 0..args.attackers {
        let source = sources[index % sources.len()];
        let (stop, attacks) = (stop.clone(), attacks.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (answer, _) = login(broker, source, ATTACKED, "wrong").await;
                attacks.lock().await.push(answer);
            }
        }));
    }
    // The legitimate clients are other machines: a thread and a runtime of their own, so that
    // the attackers' tasks do not delay them on this side.
    let (rate, seconds) = (args.legit_rate.max(1), args.seconds);
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let legit = runtime.map(|runtime| runtime.block_on(legit_logins(broker, rate, seconds)));
        let _ = done.send(legit);
    });
    let legit = finished.await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let attacks = std::mem::take(&mut *attacks.lock().await);
    let legit = match legit {
        Ok(Ok(legit)) => legit,
        Ok(Err(error)) => panic!("the legitimate clients' runtime: {error}"),
        Err(_) => panic!("the legitimate clients' thread ended early"),
    };
    Outcome { legit, attacks }
}

/// Bob's logins, `rate` a second for `seconds`, each from one of 127.0.0.100-149.
async fn legit_logins(broker: SocketAddr, rate: u32, seconds: u64) -> Vec<(Answer, Duration)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut index = 0u8;
    let mut logins = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let source = IpAddr::from([127, 0, 0, 100 + index % 50]);
        index = index.wrapping_add(1);
        logins.push(tokio::spawn(login(broker, source, LEGIT.0, LEGIT.1)));
    }
    let mut results = Vec::new();
    for login in logins {
        if let Ok(result) = login.await {
            results.push(result);
        }
    }
    results
}

fn describe(answer: Answer) -> String {
    match answer {
        Answer::Connack(0x00) => "0x00 success".into(),
        Answer::Connack(0x86) => "0x86 bad user name or password (checked)".into(),
        Answer::Connack(0x89) => "0x89 server busy".into(),
        Answer::Connack(0x8A) => "0x8A banned".into(),
        Answer::Connack(0x9F) => "0x9F backing off (no check)".into(),
        Answer::Connack(code) => format!("0x{code:02X}"),
        Answer::Nothing => "no CONNACK".into(),
    }
}

fn report(name: &str, outcome: &Outcome, args: &Args) -> String {
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let succeeded = outcome.legit.iter().filter(|(a, _)| *a == Answer::Connack(0)).count();
    for (_, took) in &outcome.legit {
        let _ = histogram.record(took.as_micros().max(1) as u64);
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let total = outcome.legit.len().max(1);
    let mut by_answer: std::collections::BTreeMap<Answer, usize> = Default::default();
    for &answer in &outcome.attacks {
        *by_answer.entry(answer).or_default() += 1;
    }
    let attacks: Vec<String> =
        by_answer.iter().map(|(a, n)| format!("{n} × {}", describe(*a))).collect();
    format!(
        "| {name} | {succeeded} of {} ({:.1}%) | {:.1} | {:.1} | {:.1} | {} attempts in {} s: {} |\n",
        outcome.legit.len(),
        100.0 * succeeded as f64 / total as f64,
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0,
        outcome.attacks.len(),
        args.seconds,
        attacks.join(", ")
    )
}

/// Median times of wrong-password logins of a known and an unknown user, interleaved, each
/// from its own address (so that no budget runs out), on an idle broker.
async fn probe(broker: SocketAddr) -> (f64, f64) {
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..40u8 {
        for (which, user) in [ATTACKED, "nobody"].into_iter().enumerate() {
            let source = IpAddr::from([127, 0, 1 + which as u8, round + 1]);
            let (answer, took) = login(broker, source, user, "wrong").await;
            if answer == Answer::Connack(0x86) {
                times[which].push(took.as_secs_f64() * 1000.0);
            }
        }
    }
    let [known, unknown] = times.map(|mut times| {
        times.sort_by(f64::total_cmp);
        times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
    });
    (known, unknown)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("shardmq-login-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    password_file(&args.broker, &dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let one: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 2])];
    let fifty: Vec<IpAddr> = (2..52).map(|last| IpAddr::from([127, 0, 0, last])).collect();
    let mut rows = String::new();
    for (flood_name, sources) in [("one address", &one), ("50 addresses", &fifty)] {
        for (guard_name, extra) in
            [("guard on (defaults)", &[][..]), ("guard off", &["--max-login-failures", "0"][..])]
        {
            let broker = start(&args.broker, &dir, extra)?;
            let outcome = runtime.block_on(flood(broker.address, sources, &args));
            let name = format!("{} from {flood_name}, {guard_name}", args.attackers);
            let row = report(&name, &outcome, &args);
            print!("{row}");
            rows.push_str(&row);
        }
    }
    let broker = start(&args.broker, &dir, &[])?;
    let (known, unknown) = runtime.block_on(probe(broker.address));
    drop(broker);
    let probe_line = format!(
        "Idle broker, a wrong password (median of 40 each, interleaved, each from its own address): known user \
         {known:.1} ms, unknown user {unknown:.1} ms.\n"
    );
    print!("{probe_line}");
    let _ = std::fs::remove_dir_all(&dir);
    if args.record {
        write_record(&args, &rows, &probe_line)?;
    }
    Ok(())
}

fn write_record(args: &Args, rows: &str, probe_line: &str) -> anyhow::Result<()> {
    let commit = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output()?;
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_owned();
    let text = format!(
        "# Logins under a flood of wrong passwords\n\n\
         Command: `cargo build --release -p shardmq-engine -p shardmq-perf && \
         target/release/login_flood --record` (commit {commit}; {} s per run; {} attacking \
         connections; {} correct logins a second from 127.0.0.100-149). One broker, 1 shard, \
         argon2id password file (`shardmq passwd`), 2 password-check threads; the attackers, \
         the legitimate clients and the broker share this machine's 2 cores. See \
         `perf/src/bin/login_flood.rs` for what each figure is.\n\n\
         | run | bob's logins that succeeded | p50 ms | p99 ms | max ms | attackers' answers |\n\
         |---|---|---|---|---|---|\n{rows}\n{probe_line}\n\
         What it does not show: attackers spread over more addresses than the check threads can \
         serve at their budget (each address may fail 10 checks, then one every 6 s: about \
         0.17 checks/s per address, so about 380 addresses saturate two threads at 31 ms a check), a \
         botnet of real hosts, or TLS handshakes in front of the logins.\n",
        args.seconds, args.attackers, args.legit_rate
    );
    std::fs::write("perf/results/login-flood.md", text)?;
    Ok(())
}

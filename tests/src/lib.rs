//! End-to-end tests over real sockets, real MQTT clients (rumqttc, mosquitto_pub/sub,
//! paho-mqtt) and a real etcd. The helpers that start those processes live here; the tests live
//! in `tests/tests/`.
//!
//! - [`Broker`] runs the `shardmq` binary built next to the test executable, one per test, on
//!   an ephemeral port with two shards, and keeps its log for assertions.
//! - [`RawClient`] speaks MQTT over a plain `TcpStream` with the project's own codec, for the
//!   tests that send what no well-behaved client would.
//! - [`run_tool`] and [`tool_command`] run the external clients with a deadline, and fail saying
//!   how to install a missing one.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq_io::codec::{
    Ack, ByteString, ConnAck, Connect, Decoded, Decoder, Disconnect, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilterEntry,
};

/// Shards every test broker runs: two, so that clients and retained topics land on different
/// shards and the mesh between them is exercised.
pub const SHARDS: u16 = 2;

/// How long [`Broker::start`] waits for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Broker::stop`] waits for the broker to exit after SIGTERM. The broker itself gives
/// connections 2 s to flush their DISCONNECT.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The log line that says the broker accepts connections, followed by the bound address.
const LISTENING: &str = "listening for MQTT on ";

/// Tells apart the data directories of the brokers one test process starts.
static BROKERS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// The broker's stderr, line by line, as the draining thread has read it so far.
#[derive(Debug, Default)]
struct Log {
    lines: Mutex<LogLines>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LogLines {
    lines: Vec<String>,
    /// Set when stderr reached end of file (the broker exited).
    ended: bool,
}

/// A `shardmq serve` process on 127.0.0.1 and an ephemeral port. Dropping it kills the process.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    addr: SocketAddr,
    log: Arc<Log>,
    /// The data directory the broker owns (removed on drop); `None` when the test owns it.
    owned_data_dir: Option<PathBuf>,
}

impl Broker {
    /// Starts `shardmq serve --listen 127.0.0.1:0 --shards 2 --log info` plus `extra` flags, and
    /// waits until it accepts connections.
    pub fn start(extra: &[&str]) -> Broker {
        Broker::start_wrapped(&[], extra)
    }

    /// Like [`Broker::start`], with the broker run under a wrapper command, e.g.
    /// `["prlimit", "--nofile=64:64"]` (the wrapper must exec the broker, so the process is the
    /// broker itself).
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Broker {
        let data_dir = std::env::temp_dir().join(format!(
            "shardmq-tests-{}-{}",
            std::process::id(),
            BROKERS_STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        Broker::launch(wrapper, &data_dir, extra, Some(data_dir.clone()))
    }

    /// Like [`Broker::start`], on the data directory `data_dir` the caller owns: the broker
    /// (and its drop) leaves the directory in place, so another broker can start on it.
    pub fn start_in(data_dir: &std::path::Path, extra: &[&str]) -> Broker {
        Broker::launch(&[], data_dir, extra, None)
    }

    /// Like [`Broker::start_in`], under a wrapper command as in [`Broker::start_wrapped`].
    pub fn start_wrapped_in(
        wrapper: &[&str],
        data_dir: &std::path::Path,
        extra: &[&str],
    ) -> Broker {
        Broker::launch(wrapper, data_dir, extra, None)
    }

    /// Like [`Broker::start`], listening on `listen` (e.g. `127.0.0.2:0`, for one of several
    /// nodes of a cluster on this machine).
    pub fn start_on(listen: &str, extra: &[&str]) -> Broker {
        let mut args = vec!["--listen", listen];
        args.extend_from_slice(extra);
        Broker::start(&args)
    }

    /// Sends `signal` (e.g. SIGSTOP, SIGCONT) to the broker process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).expect("signal the broker");
    }

    fn launch(
        wrapper: &[&str],
        data_dir: &std::path::Path,
        extra: &[&str],
        owned_data_dir: Option<PathBuf>,
    ) -> Broker {
        let binary = broker_binary();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .arg("serve")
            // 127.0.0.1 and an ephemeral port unless the test asks for another address.
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            // `--log info` unless the test sets the level or gives a config file that may.
            .args(if extra.contains(&"--log") || extra.contains(&"--config") {
                &[][..]
            } else {
                &["--log", "info"][..]
            })
            // Two shards unless the test asks for another count.
            .args(if extra.contains(&"--shards") { &[][..] } else { &["--shards", "2"][..] })
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        // The broker blocks once the pipe is full, so a thread reads it for the process's life.
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lines.lock().expect("log lock").lines.push(line);
                    log.changed.notify_all();
                }
                log.lines.lock().expect("log lock").ended = true;
                log.changed.notify_all();
            }
        });
        let mut broker =
            Broker { child: Some(child), addr: ([0, 0, 0, 0], 0).into(), log, owned_data_dir };
        let line = broker.wait_for_log(LISTENING, START_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "the broker did not report {LISTENING:?} within {START_TIMEOUT:?}; its log:\n{}",
                broker.log()
            )
        });
        let addr = line
            .split(LISTENING)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the log line {line:?}"));
        broker.addr = addr;
        broker
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// True if a line the broker has logged so far contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lines.lock().expect("log lock").lines.iter().any(|line| line.contains(needle))
    }

    /// Everything the broker has logged so far, for failure messages.
    pub fn log(&self) -> String {
        self.log.lines.lock().expect("log lock").lines.join("\n")
    }

    /// Waits until a logged line contains `needle` and returns that line; `None` if the timeout
    /// passes or the broker exits first.
    /// How many lines logged so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        let log = self.log.lines.lock().expect("log lock");
        log.lines.iter().filter(|line| line.contains(needle)).count()
    }

    /// Waits until `times` lines contain `needle` (for a line a second signal logs again);
    /// false if that does not happen within `timeout`.
    pub fn wait_for_log_count(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = self.log.lines.lock().expect("log lock");
        loop {
            if log.lines.iter().filter(|line| line.contains(needle)).count() >= times {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if log.ended || left.is_zero() {
                return false;
            }
            log = self.log.changed.wait_timeout(log, left).expect("log lock").0;
        }
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut log = self.log.lines.lock().expect("log lock");
        loop {
            if let Some(line) = log.lines.iter().find(|line| line.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if log.ended || left.is_zero() {
                return None;
            }
            log = self.log.changed.wait_timeout(log, left).expect("log lock").0;
        }
    }

    /// Sends SIGTERM and returns the exit status; panics if the broker has not exited within
    /// a few seconds. The log stays readable afterwards.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the broker is stopped only once");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the broker") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the broker did not exit within {STOP_TIMEOUT:?} of SIGTERM; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The command line of node `index` of a test cluster `cluster` on etcd `etcd`: node id
/// `n{index}`, its MQTT, node-link and admin listeners on 127.0.0.{index + 1} (ports the kernel
/// picks), link TLS, `lease_ttl` seconds and a 3 s claim timeout.
pub fn cluster_node_args(etcd: &str, cluster: &str, index: usize, lease_ttl: &str) -> Vec<String> {
    let address = format!("127.0.0.{}:0", index + 1);
    let node_id = format!("n{index}");
    let args = [
        "--listen",
        &address,
        "--etcd",
        etcd,
        "--cluster",
        cluster,
        "--node-id",
        &node_id,
        "--link-listen",
        &address,
        "--lease-ttl",
        lease_ttl,
        "--claim-timeout",
        "3",
        "--admin-listen",
        &address,
    ]
    .map(String::from);
    args.into_iter().chain(link_tls_args(&node_id)).collect()
}

impl Broker {
    /// Waits up to `timeout` for the broker to exit on its own (e.g. after a drain): its exit
    /// status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the broker") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // The test harness shows this only for the failing test.
            eprintln!("--- shardmq log ---\n{}\n--- end of shardmq log ---", self.log());
        }
        if let Some(dir) = &self.owned_data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `target/<profile>/shardmq`, found from the test executable in `target/<profile>/deps/`.
pub fn broker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let binary = profile_dir.join("shardmq");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p shardmq-engine` (with the same profile) before the \
         end-to-end tests; scripts/test does",
        binary.display()
    );
    binary
}

/// A client id with the given prefix whose session lives on `shard` of a [`SHARDS`]-shard node.
pub fn client_id_on_shard(prefix: &str, shard: u16) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shardmq_shard::home_shard(id, SHARDS).0 == shard)
        .expect("some id lands on every shard")
}

/// What a [`RawClient`] saw next on its socket.
// Unboxed so tests can match on the packet directly; one value lives briefly on a test's stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Received {
    Packet(Packet),
    /// The broker closed the connection (end of file or reset).
    Closed,
    /// Nothing arrived in time.
    TimedOut,
}

/// An MQTT connection over a plain `TcpStream`, encoding and decoding with the broker's codec.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

impl RawClient {
    /// Opens a TCP connection that will speak `version` (nothing is sent yet).
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|error| panic!("cannot connect to {addr}: {error}"));
        RawClient::over(stream, version)
    }

    fn over(stream: TcpStream, version: ProtocolVersion) -> RawClient {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        RawClient {
            stream,
            version,
            decoder: Decoder::client(version, u32::MAX),
            buf: BytesMut::new(),
        }
    }

    /// Like [`RawClient::open`], from the local address `source` (one of 127.0.0.x on loopback,
    /// as if from another host).
    pub fn open_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        version: ProtocolVersion,
    ) -> RawClient {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        socket.bind(&SocketAddr::new(source, 0).into()).expect("bind the source address");
        socket
            .connect_timeout(&addr.into(), Duration::from_secs(2))
            .unwrap_or_else(|error| panic!("cannot connect to {addr} from {source}: {error}"));
        RawClient::over(socket.into(), version)
    }

    /// Opens a connection from `source`, sends `connect` and returns the broker's CONNACK.
    pub fn connect_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        connect: Connect,
    ) -> (RawClient, ConnAck) {
        let client = RawClient::open_from(source, addr, connect.protocol);
        client.connack_for(connect, Duration::from_secs(3))
    }

    /// Like [`RawClient::connect_within`], for clients that move between nodes coming and
    /// going: `None` when the node cannot be reached or does not answer with a CONNACK.
    pub fn try_connect(
        addr: SocketAddr,
        connect: Connect,
        timeout: Duration,
    ) -> Option<(RawClient, ConnAck)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        let mut client = RawClient::over(stream, connect.protocol);
        client.try_send(&Packet::Connect(Box::new(connect))).ok()?;
        match client.next(timeout) {
            Received::Packet(Packet::ConnAck(connack)) => Some((client, connack)),
            _ => None,
        }
    }

    /// Opens a connection, sends `connect` and returns the broker's CONNACK.
    pub fn connect(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        RawClient::connect_within(addr, connect, Duration::from_secs(3))
    }

    /// Like [`RawClient::connect`], waiting up to `timeout` for the CONNACK (a cluster node may
    /// hold it while it claims the client id).
    pub fn connect_within(
        addr: SocketAddr,
        connect: Connect,
        timeout: Duration,
    ) -> (RawClient, ConnAck) {
        RawClient::open(addr, connect.protocol).connack_for(connect, timeout)
    }

    /// Sends `connect` and waits up to `timeout` for the CONNACK.
    fn connack_for(mut self, connect: Connect, timeout: Duration) -> (RawClient, ConnAck) {
        self.send(&Packet::Connect(Box::new(connect)));
        match self.next(timeout) {
            Received::Packet(Packet::ConnAck(connack)) => (self, connack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The client's own address (to find its connection in `ss`).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("a connected socket has a local address")
    }

    /// Encodes `packet` for this connection's version and writes it.
    pub fn send(&mut self, packet: &Packet) {
        self.try_send(packet).expect("write to the broker");
    }

    /// Like [`RawClient::send`], returning the write's error (a reset connection) instead of
    /// failing the test.
    pub fn try_send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("the test's packet encodes");
        self.stream.write_all(&out)
    }

    /// Writes `bytes` as they are, in one write.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// The next packet from the broker, or what happened instead within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Decoded::Packet(packet)) => return Received::Packet(packet),
                Ok(Decoded::NeedMore(_)) => {}
                Err(error) => panic!("the broker sent bytes that do not decode: {error}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Received::TimedOut;
            }
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Received::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error) if is_timeout(&error) => return Received::TimedOut,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Received::Closed,
            }
        }
    }

    /// The raw bytes the broker sends until it closes the connection, within `timeout`.
    pub fn bytes_until_closed(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut bytes = self.buf.split().to_vec();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "not closed within {timeout:?}; got {bytes:02x?}");
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return bytes,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(error) if is_timeout(&error) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return bytes,
            }
        }
    }

    /// Reads and counts whatever the broker sends until it closes the connection: `Some(bytes)`,
    /// or `None` if it is still open after `timeout`.
    pub fn count_until_closed(&mut self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut count = self.buf.split().len();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(count),
                Ok(n) => count += n,
                Err(error) if is_timeout(&error) || error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Some(count),
            }
        }
    }

    /// Panics unless the broker closes the connection within `timeout` without sending anything
    /// more; returns how long the close took.
    pub fn expect_closed(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        match self.next(timeout) {
            Received::Closed => start.elapsed(),
            other => panic!("expected the broker to close the connection, got {other:?}"),
        }
    }

    /// Panics unless the next packet arrives within `timeout`; returns it.
    pub fn expect_packet(&mut self, timeout: Duration) -> Packet {
        match self.next(timeout) {
            Received::Packet(packet) => packet,
            other => panic!("expected a packet, got {other:?}"),
        }
    }
}

/// A read timeout shows as `WouldBlock` on Linux and as `TimedOut` elsewhere.
fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Connects to `broker` with `connect` and expects a successful CONNACK with the given session
/// present flag.
pub fn connect_ok(broker: &Broker, connect: Connect, session_present: bool) -> RawClient {
    let id = connect.client_id.to_string();
    let (client, connack) = RawClient::connect(broker.addr(), connect);
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{id}: {connack:?}");
    assert_eq!(connack.session_present, session_present, "{id}: session present");
    client
}

/// Sends DISCONNECT (normal) and closes: a persistent session stays.
pub fn disconnect(mut client: RawClient) {
    client.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
    drop(client);
}

/// A CONNECT with a clean start, keepalive 60 s, no will and no credentials.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive_secs: 60,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A CONNECT that resumes (or creates) a persistent session: clean session 0 on 3.1.1, clean
/// start 0 and a one-hour Session Expiry Interval on v5.
pub fn persistent_connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut connect = connect_packet(version, client_id);
    connect.clean_start = false;
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(3600);
    }
    connect
}

/// Makes `dir/passwd` with Debian's `mosquitto_passwd`, as an operator migrating from Mosquitto
/// would have it: one `(user, password)` per line.
pub fn mosquitto_password_file(dir: &TestDir, users: &[(&str, &str)]) -> PathBuf {
    require_tool("mosquitto_passwd");
    let path = dir.path().join("passwd");
    for (index, (user, password)) in users.iter().enumerate() {
        let mut command = tool_command("mosquitto_passwd");
        if index == 0 {
            command.arg("-c");
        }
        command.args(["-b"]).arg(&path).args([user, password]);
        let output = run_tool(&mut command, REPLY_WAIT);
        assert!(output.status.success(), "mosquitto_passwd: {output:?}");
    }
    path
}

/// How long the packet helpers below wait for one answer from the broker.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);

/// A packet identifier; `value` must not be 0.
pub fn packet_id(value: u16) -> PacketId {
    PacketId::new(value).expect("a packet identifier is not 0")
}

/// A PUBLISH with no properties; `packet` is its identifier at QoS 1 and 2 (ignored at QoS 0).
pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, retain: bool, packet: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(packet)),
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Subscribes to `filter` at `qos` and expects the next packet to be a SUBACK that grants it
/// (at any QoS).
pub fn subscribe_granted(client: &mut RawClient, filter: &str, qos: QoS) {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Properties::default(),
        filters: vec![TopicFilterEntry {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::with_qos(qos),
        }],
    }));
    match client.expect_packet(REPLY_WAIT) {
        Packet::SubAck(ack) => assert!(!ack.reasons[0].is_error(), "{filter} refused: {ack:?}"),
        other => panic!("expected SUBACK for {filter}, got {other:?}"),
    }
}

/// The next PUBLISH, acknowledged as its QoS asks (QoS 2: PUBREC, the PUBREL, PUBCOMP); other
/// packets before it are skipped. `None` if the connection closed or nothing came within
/// `timeout`.
pub fn receive_publish(client: &mut RawClient, timeout: Duration) -> Option<Publish> {
    loop {
        match client.next(timeout) {
            Received::Packet(Packet::Publish(publish)) => {
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => client.send(&Packet::PubAck(Ack::success(id))),
                    (QoS::ExactlyOnce, Some(id)) => {
                        client.send(&Packet::PubRec(Ack::success(id)));
                        match client.expect_packet(REPLY_WAIT) {
                            Packet::PubRel(_) => {}
                            other => panic!("expected PUBREL, got {other:?}"),
                        }
                        client.send(&Packet::PubComp(Ack::success(id)));
                    }
                    _ => {}
                }
                return Some(publish);
            }
            Received::Packet(_) => {}
            Received::Closed | Received::TimedOut => return None,
        }
    }
}

/// Publishes QoS 0 probes on `topic` through `publisher` until `subscriber` gets one (in a
/// cluster: the subscriber's route has reached the publisher's node), then drains the probes
/// that follow. Panics after `timeout`.
pub fn await_route(
    publisher: &mut RawClient,
    subscriber: &mut RawClient,
    topic: &str,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        publisher.send(&publish_packet(topic, b"probe", QoS::AtMostOnce, false, 0));
        if receive_publish(subscriber, Duration::from_millis(100)).is_some() {
            while receive_publish(subscriber, Duration::from_millis(200)).is_some() {}
            return;
        }
        assert!(Instant::now() < deadline, "the route of {topic} never reached the publisher");
    }
}

/// How to install each external tool the tests run, for the failure message when one is missing.
fn install_hint(program: &str) -> &'static str {
    match program {
        "mosquitto_pub" | "mosquitto_sub" => "apt-get install mosquitto-clients",
        "/usr/bin/python3" => "apt-get install python3 python3-paho-mqtt",
        "stdbuf" => "apt-get install coreutils",
        "systemd-analyze" => "apt-get install systemd",
        "chromium" => "apt-get install chromium",
        "openssl" => "apt-get install openssl",
        _ => "install it (see scripts/test)",
    }
}

/// Fails the test, saying how to install it, unless `program` is an executable on `PATH` (or
/// an absolute path to one). For tools run through a wrapper such as `stdbuf`, whose own error
/// would not say what is missing.
pub fn require_tool(program: &str) {
    let found = if program.starts_with('/') {
        std::path::Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    assert!(
        found,
        "{program} is not installed: {} (scripts/test does this)",
        install_hint(program)
    );
}

/// Starts `command`, failing the test with how to install its program if it is missing.
pub fn spawn_tool(command: &mut Command) -> Child {
    let program = command.get_program().to_string_lossy().into_owned();
    command.spawn().unwrap_or_else(|error| {
        if error.kind() == ErrorKind::NotFound {
            panic!(
                "{program} is not installed: {} (scripts/test does this)",
                install_hint(&program)
            )
        }
        panic!("cannot run {program}: {error}")
    })
}

/// A `Command` for an external tool with its output captured.
pub fn tool_command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs `command` to completion, killing it and failing the test if it takes longer than
/// `timeout`.
pub fn run_tool(command: &mut Command, timeout: Duration) -> Output {
    let mut child = spawn_tool(command);
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait for the tool").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect the tool's output");
            panic!(
                "{command:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect the tool's output")
}

/// Tells apart the [`TestDir`]s one test process makes.
static TEST_DIRS_MADE: AtomicUsize = AtomicUsize::new(0);

/// A directory under the system's temporary directory that the test owns: a data directory that
/// outlives the brokers started on it ([`Broker::start_in`]). Removed when dropped.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates a new, empty directory whose name contains `name`.
    pub fn new(name: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "shardmq-tests-{}-{name}-{}",
            std::process::id(),
            TEST_DIRS_MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The names of the files directly in the directory, sorted.
    pub fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", self.path.display()))
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Broker {
    /// Kills the broker with SIGKILL (no chance to flush or close anything) and waits for it
    /// to be gone; returns its exit status. The data directory and the log stay.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the broker is stopped only once");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("send SIGKILL");
        child.wait().expect("wait for the killed broker")
    }
}

/// GET `path` from an HTTP server (the broker's admin endpoint): the status code and the body.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    http_request(address, "GET", path)
}

/// Sends one HTTP/1.1 request with `method` and no body; returns the status and the body.
pub fn http_request(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let answer = http_request_with(address, method, path, &[]);
    (answer.status, answer.body)
}

/// An HTTP answer: its status, its header lines and its body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Each header's name and value, as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The value of the first header named `name` (in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with `method`, the extra `headers` (e.g. `Authorization`) and no
/// body; returns the whole answer.
pub fn http_request_with(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the HTTP server");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
    let extra: String =
        headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header and a body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status =
        status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    HttpAnswer { status, headers, body: body.to_owned() }
}

impl Broker {
    /// The address of the admin endpoint (`--admin-listen`), from its start-up log line.
    pub fn admin_address(&self) -> SocketAddr {
        const LINE: &str = "admin endpoint on http://";
        let line = self
            .wait_for_log(LINE, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no admin endpoint in the log:\n{}", self.log()));
        let rest = line.split(LINE).nth(1).expect("an address");
        rest.split_whitespace().next().and_then(|a| a.parse().ok()).expect("a socket address")
    }

    /// The sum of metric `name` on `/metrics` over its series that carry `label` (`""`: all;
    /// a metric with one series per shard is summed over the node). Fails when there is none.
    pub fn metric_total(&self, name: &str, label: &str) -> u64 {
        let (status, metrics) = http_get(self.admin_address(), "/metrics");
        assert_eq!(status, 200);
        let series: Vec<u64> = metrics
            .lines()
            .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .filter(|line| line.contains(label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as u64)
            .collect();
        assert!(!series.is_empty(), "no {name} with {label:?} in:\n{metrics}");
        series.into_iter().sum()
    }
}

/// Node ids the shared link certificates are made for: `n0` … `n9`.
pub const LINK_CERT_NODES: usize = 10;

/// The flags that give test node `node_id` (`n0` … `n9`) link TLS: its certificate and key, and
/// the cluster CA, made once per test process by `shardmq link-certs` (the command users run)
/// in a directory of the system's temporary directory.
pub fn link_tls_args(node_id: &str) -> Vec<String> {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("shardmq-tests-{}-link-certs", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes: Vec<String> = (0..LINK_CERT_NODES).map(|n| format!("n{n}")).collect();
        let output = std::process::Command::new(broker_binary())
            .arg("link-certs")
            .arg("--dir")
            .arg(&dir)
            .args(&nodes)
            .output()
            .expect("run shardmq link-certs");
        assert!(output.status.success(), "link-certs: {}", String::from_utf8_lossy(&output.stderr));
        dir
    });
    let file = |name: String| dir.join(name).display().to_string();
    vec![
        "--link-tls-cert".into(),
        file(format!("{node_id}.pem")),
        "--link-tls-key".into(),
        file(format!("{node_id}.key")),
        "--link-tls-ca".into(),
        file("ca.pem".into()),
    ]
}

/// A stand-in for a load balancer that speaks the PROXY protocol (HAProxy's `send-proxy`): it
/// accepts on an address of its own, and for each connection opens one to `target`, writes the
/// header `header` makes for the client's address, then relays bytes both ways until either
/// side closes. Lives as long as the test keeps it.
#[derive(Debug)]
pub struct ProxyRelay {
    address: SocketAddr,
}

impl ProxyRelay {
    pub fn start(
        target: SocketAddr,
        header: impl Fn(SocketAddr) -> Vec<u8> + Send + 'static,
    ) -> ProxyRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let address = listener.local_addr().expect("relay address");
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(client_address) = client.peer_addr() else { continue };
                let Ok(mut upstream) = TcpStream::connect(target) else { continue };
                if upstream.write_all(&header(client_address)).is_err() {
                    continue;
                }
                let (Ok(client_reader), Ok(upstream_reader)) =
                    (client.try_clone(), upstream.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || relay(client_reader, upstream));
                std::thread::spawn(move || relay(upstream_reader, client));
            }
        });
        ProxyRelay { address }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// Copies `from` to `to` until `from` ends, then shuts `to`'s sending side.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A PROXY protocol v1 header naming `source` as the client (destination 127.0.0.1:1883).
pub fn proxy_v1_header(source: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    let destination = if source.is_ipv4() { "127.0.0.1" } else { "::1" };
    format!("PROXY {family} {} {destination} {} 1883\r\n", source.ip(), source.port()).into_bytes()
}

//! Faults across machines: every broker node and etcd run in their own network namespace, each
//! joined by a veth pair to a bridge that belongs to the test, so that node links, etcd traffic
//! and client connections cross real (virtual) network interfaces. Test clients connect from the
//! root namespace through the bridge's own address.
//!
//! A partition is a pair of nftables drop rules: the namespaces on both sides of a cut drop
//! whatever arrives from the other side, so neither side gets an error — packets vanish, as on
//! a cut cable. Clients in the root namespace are never cut. A slow etcd is a latency-adding TCP
//! proxy in front of it ([`SlowProxy`]): this kernel has no `netem` qdisc.
//!
//! Each test uses its own `10.<200 + test>.<n>.0/24` network and its own interface and namespace
//! names, so tests may run in parallel; [`Net`]'s drop removes namespaces and links even when
//! the test panics. These tests need root, `ip` (iproute2) and `nft` (nftables).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode, Packet as V5Packet};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
use shardmq_io::codec::{Bytes, ConnAck, Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq_tests::{
    await_route, connect_packet, disconnect, persistent_connect_packet, publish_packet,
    receive_publish, subscribe_granted, Broker, RawClient, Received, TestDir,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const WAIT: Duration = Duration::from_secs(5);
/// The nodes' `--lease-ttl`: the smallest allowed, so that fencing and expiry fit in a test.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// The nodes' `--claim-timeout`.
const CLAIM_TIMEOUT_SECS: &str = "3";
/// How long a CONNACK may take: the claim timeout plus slack.
const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// How long routes may take to reach another node (links reconnect with a backoff up to 2 s).
const PROPAGATION: Duration = Duration::from_secs(10);
/// The MQTT port every node listens on inside its namespace (each has its own address).
const MQTT_PORT: u16 = 1883;
const LINK_PORT: u16 = 1884;
const ADMIN_PORT: u16 = 8080;
const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
/// The nftables table and set each namespace drops the sources of.
const NFT_TABLE: &str = "shardmq_partition";
const NFT_SET: &str = "cut";
/// What each shard of a node logs when the node holds a new lease (at start-up too): after a
/// cut longer than the lease, etcd has expired the old one.
const SERVING_AGAIN: &str = "serving under a new etcd lease";
/// What each shard of a node logs when the node stops serving at its lease deadline.
const FENCED: &str = "could not show its etcd lease alive in time";
/// What each shard holding stored sessions logs once it has claimed them again under a new lease.
const RECLAIMED: &str = "stored sessions again under the new lease";

// -------------------------------------------------------------------------------------------
// The network
// -------------------------------------------------------------------------------------------

/// Runs `program args`, failing the test with its stderr (or how to install it) if it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|error| {
        panic!(
            "cannot run {program} ({error}): these tests need root, iproute2 and nftables \
             (scripts/test installs them)"
        )
    });
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Like [`run`], ignoring failure (for clean-up of what may not exist).
fn run_quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// One test's network: a bridge in the root namespace (address `.1`, where the test's clients
/// and the slow proxy live) and one namespace per host, each on a veth pair to the bridge.
struct Net {
    bridge: String,
    /// The first three octets of the test's /24.
    prefix: [u8; 3],
    hosts: Vec<Host>,
}

struct Host {
    name: String,
    namespace: String,
    /// The veth end on the bridge, in the root namespace.
    outside: String,
    ip: Ipv4Addr,
}

impl Net {
    /// Builds the network of test number `test` (1-based, unique per test in this file) with
    /// the named hosts; host `i` gets address `.10 + i`.
    fn new(test: u8, hosts: &[&str]) -> Net {
        let second = 200 + test;
        // Another run of this file (another engineer's) may hold a /24 already: take the next.
        let in_use = String::from_utf8_lossy(
            &Command::new("ip").args(["-o", "-4", "addr"]).output().expect("run ip addr").stdout,
        )
        .into_owned();
        let third = (0..250u32)
            .map(|i| ((std::process::id() + i) % 250 + 1) as u8)
            .find(|third| !in_use.contains(&format!("10.{second}.{third}.1/")))
            .expect("a free /24");
        // Interface names are at most 15 bytes: "smq" + 4 hex digits + a role letter + index.
        let tag = format!("smq{second:02x}{third:02x}");
        let mut net = Net { bridge: format!("{tag}b"), prefix: [10, second, third], hosts: vec![] };
        // What a killed earlier run with the same numbers left behind.
        run_quietly("ip", &["link", "del", &net.bridge]);
        for (index, name) in hosts.iter().enumerate() {
            run_quietly("ip", &["netns", "del", &format!("{tag}-{name}")]);
            run_quietly("ip", &["link", "del", &format!("{tag}h{index}")]);
        }
        run("ip", &["link", "add", &net.bridge, "type", "bridge"]);
        let bridge_ip = format!("{}/24", net.address(1));
        run("ip", &["addr", "add", &bridge_ip, "dev", &net.bridge]);
        run("ip", &["link", "set", &net.bridge, "up"]);
        for (index, name) in hosts.iter().enumerate() {
            let host = Host {
                name: name.to_string(),
                namespace: format!("{tag}-{name}"),
                outside: format!("{tag}h{index}"),
                ip: net.address(10 + index as u8),
            };
            // Pushed first, so that a failure below still removes the namespace.
            net.hosts.push(host);
            let host = net.hosts.last().expect("just pushed");
            let (outside, inside) = (host.outside.as_str(), format!("{tag}n{index}"));
            run("ip", &["netns", "add", &host.namespace]);
            run("ip", &["link", "add", outside, "type", "veth", "peer", "name", &inside]);
            run("ip", &["link", "set", &inside, "netns", &host.namespace]);
            run("ip", &["link", "set", outside, "master", &net.bridge, "up"]);
            let ns = host.namespace.as_str();
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "addr", "add", &format!("{}/24", host.ip), "dev", &inside]);
            run("ip", &["-n", ns, "link", "set", &inside, "up"]);
            // An empty drop set now; a cut adds the other side's address to it.
            let nft = |rule: &str| {
                let args = ["netns", "exec", ns, "nft", rule];
                run("ip", &args);
            };
            nft(&format!("add table inet {NFT_TABLE}"));
            nft(&format!(
                "add chain inet {NFT_TABLE} input \
                 {{ type filter hook input priority 0 ; policy accept ; }}"
            ));
            nft(&format!("add set inet {NFT_TABLE} {NFT_SET} {{ type ipv4_addr ; }}"));
            nft(&format!("add rule inet {NFT_TABLE} input ip saddr @{NFT_SET} drop"));
        }
        net
    }

    fn address(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], last)
    }

    /// The root namespace's address on the bridge (clients, the slow proxy).
    fn root_ip(&self) -> Ipv4Addr {
        self.address(1)
    }

    fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|host| host.name == name).expect("a host of this network")
    }

    /// `ip netns exec <namespace>`, to run a process on `host`.
    fn wrapper(&self, host: &str) -> [String; 4] {
        ["ip", "netns", "exec", &self.host(host).namespace].map(String::from)
    }

    fn set_element(&self, verb: &str, host: &str, peer: &str) {
        let element =
            format!("{verb} element inet {NFT_TABLE} {NFT_SET} {{ {} }}", self.host(peer).ip);
        run("ip", &["netns", "exec", &self.host(host).namespace, "nft", &element]);
    }

    /// Cuts `a` off from each of `others`, both ways (each side drops what the other sends).
    fn cut(&self, a: &str, others: &[&str]) {
        for other in others {
            self.set_element("add", a, other);
            self.set_element("add", other, a);
        }
    }

    /// Undoes [`Net::cut`].
    fn heal(&self, a: &str, others: &[&str]) {
        for other in others {
            self.set_element("delete", a, other);
            self.set_element("delete", other, a);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both. The namespace's end would go with the
        // namespace, but the kernel frees a namespace only once nothing refers to it any more
        // (closing sockets may hold it for a while), so the pair is deleted from outside.
        for host in &self.hosts {
            run_quietly("ip", &["link", "del", &host.outside]);
            run_quietly("ip", &["netns", "del", &host.namespace]);
        }
        run_quietly("ip", &["link", "del", &self.bridge]);
    }
}

// -------------------------------------------------------------------------------------------
// etcd, the nodes, the slow proxy
// -------------------------------------------------------------------------------------------

/// One etcd member in its own namespace. Killed, and its directory removed, on drop.
struct Etcd {
    child: Child,
    directory: TestDir,
    endpoint: String,
}

impl Etcd {
    fn start(net: &Net, host: &str) -> Etcd {
        let ip = net.host(host).ip;
        let directory = TestDir::new("etcd");
        let client_url = format!("http://{ip}:{ETCD_CLIENT_PORT}");
        let peer_url = format!("http://{ip}:{ETCD_PEER_PORT}");
        let log = std::fs::File::create(directory.path().join("etcd.log")).expect("etcd log");
        let wrapper = net.wrapper(host);
        let child = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .arg("etcd")
            .args(["--name", "member0", "--data-dir"])
            .arg(directory.path().join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("member0={peer_url}")])
            .args(["--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log)
            .spawn()
            .expect("run etcd under ip netns exec");
        let mut etcd = Etcd { child, directory, endpoint: client_url };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !etcd_healthy(SocketAddr::from((ip, ETCD_CLIENT_PORT))) {
            let exited = matches!(etcd.child.try_wait(), Ok(Some(_)));
            assert!(
                !exited && Instant::now() < deadline,
                "etcd in namespace {} did not become healthy (apt-get install etcd-server); \
                 its log:\n{}",
                net.host(host).namespace,
                std::fs::read_to_string(etcd.directory.path().join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether etcd answers `GET /health` with `"health":"true"`.
fn etcd_healthy(client: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&client, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {client}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// Starts node `n{index}` of cluster `cluster` in its namespace, on etcd `endpoint`.
fn start_node(net: &Net, index: usize, cluster: &str, endpoint: &str, ttl: Duration) -> Broker {
    let host = format!("n{index}");
    let ip = net.host(&host).ip;
    let listen = format!("{ip}:{MQTT_PORT}");
    let link = format!("{ip}:{LINK_PORT}");
    let admin = format!("{ip}:{ADMIN_PORT}");
    let ttl = ttl.as_secs().to_string();
    let wrapper = net.wrapper(&host);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let args = [
        "--listen",
        &listen,
        "--etcd",
        endpoint,
        "--cluster",
        cluster,
        "--node-id",
        &host,
        "--link-listen",
        &link,
        "--admin-listen",
        &admin,
        "--lease-ttl",
        &ttl,
        "--claim-timeout",
        CLAIM_TIMEOUT_SECS,
        // The listener is on the test's private bridge network, not loopback.
        "--allow-anonymous",
        "true",
    ];
    // `PARTITION_LOG=debug` for a closer look at a failing run.
    let level = std::env::var("PARTITION_LOG").unwrap_or_else(|_| "info".into());
    let mut args = args.to_vec();
    args.extend(["--log", level.as_str()]);
    let link_tls = shardmq_tests::link_tls_args(&host);
    args.extend(link_tls.iter().map(String::as_str));
    Broker::start_wrapped(&wrapper, &args)
}

/// Starts `count` nodes with `--lease-ttl ttl` and waits until each has joined.
fn start_nodes(
    net: &Net,
    count: usize,
    cluster: &str,
    endpoint: &str,
    ttl: Duration,
) -> Vec<Broker> {
    let nodes: Vec<Broker> =
        (0..count).map(|index| start_node(net, index, cluster, endpoint, ttl)).collect();
    for (index, node) in nodes.iter().enumerate() {
        assert!(
            node.wait_for_log("joined cluster", WAIT).is_some(),
            "node {index} did not join:\n{}",
            node.log()
        );
    }
    nodes
}

/// A TCP proxy that holds every chunk for `delay` in each direction before passing it on: a
/// slow network to etcd without `netem`. One reader and one writer thread per direction, so the
/// delay adds latency without capping throughput.
struct SlowProxy {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl SlowProxy {
    fn start(listen: Ipv4Addr, upstream: SocketAddr) -> SlowProxy {
        let listener = TcpListener::bind((listen, 0)).expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let proxy = SlowProxy {
            addr: listener.local_addr().expect("the proxy's address"),
            delay_ms: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            streams: Arc::new(Mutex::new(Vec::new())),
        };
        let (delay_ms, stop, streams) =
            (proxy.delay_ms.clone(), proxy.stop.clone(), proxy.streams.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                client.set_nonblocking(false).expect("blocking proxy socket");
                for stream in [&client, &server] {
                    let _ = stream.set_nodelay(true);
                    streams.lock().expect("streams").push(stream.try_clone().expect("clone"));
                }
                let (client2, server2) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                pipe(client, server, delay_ms.clone());
                pipe(server2, client2, delay_ms.clone());
            }
        });
        proxy
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for stream in self.streams.lock().expect("streams").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to`, each chunk written `delay_ms` after it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay_ms: Arc<AtomicU64>) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let at = Instant::now() + Duration::from_millis(delay_ms.load(Ordering::Relaxed));
            // An empty chunk says the reader reached the end.
            if chunks.send((at, buffer[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((at, chunk)) = due.recv() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if chunk.is_empty() || to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// CPU time (user + system) the process has used, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> =
        stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

// -------------------------------------------------------------------------------------------
// MQTT helpers (raw client)
// -------------------------------------------------------------------------------------------

fn mqtt_addr(net: &Net, node: usize) -> SocketAddr {
    SocketAddr::from((net.host(&format!("n{node}")).ip, MQTT_PORT))
}

/// Publishes at QoS 1 and waits for a successful PUBACK.
fn publish_acked(client: &mut RawClient, topic: &str, payload: &[u8], retain: bool, packet: u16) {
    client.send(&publish_packet(topic, payload, QoS::AtLeastOnce, retain, packet));
    match client.expect_packet(WAIT) {
        // v5 says 0x10 "no matching subscribers" for a retained message nobody reads yet.
        Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "{topic}: {ack:?}"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Connects, retrying while the node answers "server unavailable" (a node that just started or
/// just got a new lease holds claims back for a while: docs/cluster.md).
fn connect(addr: SocketAddr, connect: Connect) -> RawClient {
    connect_until_accepted(addr, &connect, PROPAGATION).0
}

/// One CONNECT: the client and CONNACK, or `None` when the node closed the connection or sent
/// nothing within [`CLAIM_WAIT`].
fn try_connect(addr: SocketAddr, connect: Connect) -> Option<(RawClient, ConnAck)> {
    let mut client = RawClient::open(addr, connect.protocol);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.next(CLAIM_WAIT) {
        Received::Packet(Packet::ConnAck(connack)) => Some((client, connack)),
        Received::Closed | Received::TimedOut => None,
        Received::Packet(other) => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Connects until CONNACK is a success: the client, its CONNACK and how long it took.
fn connect_until_accepted(
    addr: SocketAddr,
    connect: &Connect,
    timeout: Duration,
) -> (RawClient, ConnAck, Duration) {
    let start = Instant::now();
    loop {
        if let Some((client, connack)) = try_connect(addr, connect.clone()) {
            if connack.reason == ReasonCode::SUCCESS {
                return (client, connack, start.elapsed());
            }
            // "Try again": unavailable while etcd does not answer, busy while too slowly.
            let again = [ReasonCode::SERVER_UNAVAILABLE, ReasonCode::SERVER_BUSY];
            assert!(again.contains(&connack.reason), "{connack:?}");
        }
        assert!(
            start.elapsed() < timeout,
            "{:?} still refused on {addr} after {timeout:?}",
            connect.client_id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `node` refuses `connect`: a CONNACK that is no success, a close, or no answer.
fn refused(addr: SocketAddr, connect: Connect) -> bool {
    try_connect(addr, connect).is_none_or(|(_, connack)| connack.reason != ReasonCode::SUCCESS)
}

/// Waits until the node closes `client`'s connection (DISCONNECT 0x89 "server busy" first, or
/// a plain close); returns how long that took. Panics if the connection was served anything
/// else, or stays open past `timeout`.
fn expect_fenced(client: &mut RawClient, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match client.next(timeout.saturating_sub(start.elapsed())) {
            Received::Packet(Packet::Disconnect(disconnect)) => {
                assert_eq!(disconnect.reason, ReasonCode::SERVER_BUSY);
                return start.elapsed();
            }
            Received::Closed => return start.elapsed(),
            Received::TimedOut => panic!("the connection was still open after {timeout:?}"),
            Received::Packet(Packet::PingResp) => {}
            Received::Packet(other) => panic!("a fenced node served {other:?}"),
        }
    }
}

// -------------------------------------------------------------------------------------------
// rumqttc (a client nobody here wrote), driven from a plain thread
// -------------------------------------------------------------------------------------------

/// A rumqttc v5 client whose event loop runs on `runtime` until its first error; the test reads
/// the events from a channel.
struct Rumqtt {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, ConnectionError>>,
}

impl Rumqtt {
    /// Connects as `client_id` with clean start 0 and a one-hour session expiry; returns the
    /// client and its CONNACK's session present flag, or the refusal.
    fn connect(
        runtime: &tokio::runtime::Runtime,
        addr: SocketAddr,
        client_id: &str,
    ) -> Result<(Rumqtt, bool), String> {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3600));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (sender, events) = mpsc::channel();
        runtime.spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    return;
                }
            }
        });
        let client = Rumqtt { client, events };
        loop {
            match client.events.recv_timeout(CLAIM_WAIT) {
                Ok(Ok(Event::Incoming(V5Packet::ConnAck(connack)))) => {
                    assert_eq!(connack.code, ConnectReturnCode::Success);
                    return Ok((client, connack.session_present));
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => return Err("no CONNACK".to_owned()),
            }
        }
    }

    /// [`Rumqtt::connect`] again while refused ("server unavailable": the node is new, or the
    /// client's previous node may still serve it), for up to `timeout`.
    fn connect_until_accepted(
        runtime: &tokio::runtime::Runtime,
        addr: SocketAddr,
        client_id: &str,
        timeout: Duration,
    ) -> (Rumqtt, bool) {
        let start = Instant::now();
        loop {
            match Rumqtt::connect(runtime, addr, client_id) {
                Ok(connected) => return connected,
                Err(refusal) => {
                    assert!(start.elapsed() < timeout, "{client_id} refused on {addr}: {refusal}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The next PUBLISH's payload within `timeout`; panics if the connection ended.
    fn next_publish(&self, timeout: Duration) -> Option<Bytes> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(Event::Incoming(V5Packet::Publish(publish)))) => {
                    return Some(publish.payload)
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => panic!("the connection failed: {error}"),
                Err(_) => return None,
            }
        }
    }

    /// Waits until the connection ends; returns how long that took and whether the broker
    /// said DISCONNECT 0x89 "server busy" first. Panics if a PUBLISH arrives meanwhile.
    fn expect_ended(&self, timeout: Duration) -> (Duration, bool) {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            match self.events.recv_timeout(left) {
                // rumqttc reports the broker's DISCONNECT as the error that ends the loop.
                Ok(Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                    reason_code,
                    ..
                }))) => {
                    assert_eq!(reason_code, DisconnectReasonCode::ServerBusy);
                    return (start.elapsed(), true);
                }
                Ok(Ok(Event::Incoming(V5Packet::Publish(publish)))) => {
                    panic!("delivered to the old connection: {publish:?}")
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return (start.elapsed(), false)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the connection was still up after {timeout:?}")
                }
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

// -------------------------------------------------------------------------------------------
// The scenarios
// -------------------------------------------------------------------------------------------

/// One node cut off from both peers and etcd: it fences before its lease can expire, its
/// clients move to the majority, and when the cut heals it serves again with routes and
/// retained messages as before. No client id is served by two nodes at once.
#[test]
fn a_node_cut_off_from_peers_and_etcd_fences_and_rejoins_when_healed() {
    let net = Net::new(1, &["etcd", "n0", "n1", "n2"]);
    let etcd = Etcd::start(&net, "etcd");
    let nodes = start_nodes(&net, 3, "cut-all", &etcd.endpoint, LEASE_TTL);
    let runtime = runtime();

    // On n0: a rumqttc client, a raw client, and a persistent session that is offline with a
    // queued QoS 1 message. A retained message is on every node.
    let (mover, session_present) =
        Rumqtt::connect_until_accepted(&runtime, mqtt_addr(&net, 0), "mover", PROPAGATION);
    assert!(!session_present);
    mover.client.try_subscribe("m/#", V5QoS::AtLeastOnce).expect("queue SUBSCRIBE");
    let mut raw_old = connect(mqtt_addr(&net, 0), connect_packet(V5, "raw-mover"));
    let mut waiter = connect(mqtt_addr(&net, 0), persistent_connect_packet(V5, "waiter"));
    subscribe_granted(&mut waiter, "q/#", QoS::AtLeastOnce);
    disconnect(waiter);
    // A second one, whose client will come back on the majority after the heal.
    let mut waiter2 = connect(mqtt_addr(&net, 0), persistent_connect_packet(V5, "waiter2"));
    subscribe_granted(&mut waiter2, "q/#", QoS::AtLeastOnce);
    disconnect(waiter2);
    let mut publisher0 = connect(mqtt_addr(&net, 0), connect_packet(V5, "pub0"));
    publish_acked(&mut publisher0, "q/1", b"queued before the cut", false, 1);
    publish_acked(&mut publisher0, "r/before", b"retained before", true, 2);
    let mut watcher1 = connect(mqtt_addr(&net, 1), connect_packet(V5, "watch1"));
    subscribe_granted(&mut watcher1, "w/#", QoS::AtMostOnce);
    await_route(&mut publisher0, &mut watcher1, "w/probe", PROPAGATION);
    let mut publisher2 = connect(mqtt_addr(&net, 2), connect_packet(V5, "pub2"));
    // The rumqttc subscription is in place once a publish from n2 reaches it.
    let deadline = Instant::now() + PROPAGATION;
    loop {
        publisher2.send(&publish_packet("m/probe", b"probe", QoS::AtMostOnce, false, 0));
        if mover.next_publish(Duration::from_millis(200)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the route of m/# never reached n2");
    }
    while mover.next_publish(Duration::from_millis(200)).is_some() {}

    let cut_at = Instant::now();
    net.cut("n0", &["n1", "n2", "etcd"]);
    // n0 fences: it closes its clients' connections, at the latest ¾ of a lease after its last
    // renewal, so before etcd can expire the lease and another node can claim them.
    let fenced_raw = expect_fenced(&mut raw_old, LEASE_TTL);
    let (fenced_rumqtt, busy) = mover.expect_ended(LEASE_TTL);
    let fenced_at = cut_at + fenced_raw;
    eprintln!(
        "figure: cut-all: raw client disconnected {} after the cut, rumqttc client {} \
         (0x89 seen: {busy})",
        seconds(fenced_raw),
        seconds(fenced_rumqtt)
    );
    assert!(nodes[0].wait_for_log(FENCED, Duration::from_secs(1)).is_some(), "{}", nodes[0].log());
    // While cut off, n0 serves no one, not even a client id it owned.
    assert!(refused(mqtt_addr(&net, 0), connect_packet(V5, "raw-mover")));

    // The clients move to the majority: refused there ("server unavailable") until n0's lease
    // has expired in etcd, then accepted. rumqttc first.
    let (mover_new, session_present) =
        Rumqtt::connect_until_accepted(&runtime, mqtt_addr(&net, 1), "mover", PROPAGATION);
    let moved_at = Instant::now();
    // The session stayed on n0's disk, out of reach: a new one starts (docs/cluster.md).
    assert!(!session_present, "the session on the cut-off node cannot move");
    assert!(moved_at > fenced_at, "n1 took the client before n0 had fenced");
    eprintln!(
        "figure: cut-all: rumqttc client accepted on n1 {} after the cut ({} after n0 fenced)",
        seconds(moved_at - cut_at),
        seconds(moved_at - fenced_at)
    );
    let (mut raw_new, _, waited) =
        connect_until_accepted(mqtt_addr(&net, 1), &connect_packet(V5, "raw-mover"), PROPAGATION);
    eprintln!("figure: cut-all: raw client accepted on n1 after {} more", seconds(waited));
    // The new connection is served across the majority; the old ones got nothing after they
    // were closed (`expect_ended` and `expect_fenced` fail on any PUBLISH), and n0 still
    // refuses the moved client ids.
    mover_new.client.try_subscribe("m/#", V5QoS::AtLeastOnce).expect("queue SUBSCRIBE");
    subscribe_granted(&mut raw_new, "m/#", QoS::AtLeastOnce);
    let deadline = Instant::now() + PROPAGATION;
    loop {
        publisher2.send(&publish_packet("m/after", b"after the move", QoS::AtMostOnce, false, 0));
        if mover_new.next_publish(Duration::from_millis(200)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the moved client is not served on n1");
    }
    assert!(receive_publish(&mut raw_new, WAIT).is_some(), "the moved raw client is not served");
    assert!(refused(mqtt_addr(&net, 0), connect_packet(V5, "raw-mover")));
    // A retained message published on the majority while n0 is away.
    publish_acked(&mut publisher2, "r/during", b"retained during", true, 3);

    // Heal: n0 gets a new lease, its links come back, routes converge both ways.
    let serving = nodes[0].log_count(SERVING_AGAIN);
    let healed_at = Instant::now();
    net.heal("n0", &["n1", "n2", "etcd"]);
    assert!(
        nodes[0].wait_for_log_count(SERVING_AGAIN, serving + 1, PROPAGATION),
        "{}",
        nodes[0].log()
    );
    let (mut healed_sub, _, _) =
        connect_until_accepted(mqtt_addr(&net, 0), &connect_packet(V5, "healed-sub"), WAIT);
    eprintln!(
        "figure: cut-all: n0 accepts connects again {} after the heal",
        seconds(healed_at.elapsed())
    );
    subscribe_granted(&mut healed_sub, "h/#", QoS::AtLeastOnce);
    let mut publisher0 = connect(mqtt_addr(&net, 0), connect_packet(V5, "pub0-again"));
    await_route(&mut publisher2, &mut healed_sub, "h/from-n2", PROPAGATION);
    await_route(&mut publisher0, &mut watcher1, "w/from-n0", PROPAGATION);
    eprintln!(
        "figure: cut-all: routes converged both ways {} after the heal",
        seconds(healed_at.elapsed())
    );
    publish_acked(&mut publisher2, "h/1", b"qos1 across the healed cut", false, 4);
    assert_eq!(
        receive_publish(&mut healed_sub, WAIT).expect("delivered on n0").payload,
        Bytes::from_static(b"qos1 across the healed cut")
    );
    // Retained messages: the one from before the cut is served on n0 and on the majority.
    for node in [0, 1] {
        let mut reader = connect(mqtt_addr(&net, node), connect_packet(V5, &format!("rr{node}")));
        subscribe_granted(&mut reader, "r/before", QoS::AtMostOnce);
        let got = receive_publish(&mut reader, WAIT).expect("the retained message");
        assert!(got.retain && got.payload == Bytes::from_static(b"retained before"));
    }
    // The one published on the majority during the cut: caught up by the retained digest
    // exchange once n0's links are up (docs/cluster.md), which this short wait may not cover;
    // reported, not asserted (cluster::a_joining_or_rejoining_node_catches_up_on_retained_messages
    // asserts the catch-up).
    let mut reader = connect(mqtt_addr(&net, 0), connect_packet(V5, "rr-during"));
    subscribe_granted(&mut reader, "r/during", QoS::AtMostOnce);
    let during = receive_publish(&mut reader, Duration::from_millis(500)).is_some();
    eprintln!(
        "figure: cut-all: retained message published during the cut served on n0 \
         after the heal: {during}"
    );

    // The persistent session that stayed on n0 with its queued message: its client reconnects
    // to n0 after the heal and gets both back.
    let (mut waiter, connack, _) =
        connect_until_accepted(mqtt_addr(&net, 0), &persistent_connect_packet(V5, "waiter"), WAIT);
    assert!(connack.session_present, "the session on n0's disk is back");
    assert_eq!(
        receive_publish(&mut waiter, WAIT).expect("the queued message").payload,
        Bytes::from_static(b"queued before the cut")
    );
    // The other one's client comes back on n1 instead: n0 claimed its stored sessions again
    // under its new lease (each shard holding some logs when it is done), so n1 takes this one
    // over from n0, queued message and all. The rumqttc client's session, which started anew on
    // n1 during the cut, stays n1's.
    let shards: HashSet<u16> = ["waiter", "waiter2", "mover"]
        .iter()
        .map(|id| shardmq_shard::home_shard(id, shardmq_tests::SHARDS).0)
        .collect();
    assert!(
        nodes[0].wait_for_log_count(RECLAIMED, shards.len(), PROPAGATION),
        "n0 did not claim its stored sessions again:\n{}",
        nodes[0].log()
    );
    let (mut waiter2, connack, _) =
        connect_until_accepted(mqtt_addr(&net, 1), &persistent_connect_packet(V5, "waiter2"), WAIT);
    assert!(connack.session_present, "the session stayed behind on n0");
    assert_eq!(
        receive_publish(&mut waiter2, WAIT).expect("the queued message").payload,
        Bytes::from_static(b"queued before the cut")
    );
    // The moved clients stay where they are: served on n1 still.
    raw_new.send(&Packet::PingReq);
    assert!(matches!(raw_new.expect_packet(WAIT), Packet::PingResp));
}

/// One node cut off from etcd while its peers still reach it: it cannot renew its lease, its
/// peers report that etcd answers them, so it fences at its deadline (docs/cluster.md,
/// "Fencing") and refuses connects until the cut heals.
#[test]
fn a_node_cut_off_from_etcd_only_fences_while_its_peers_reach_etcd() {
    let net = Net::new(2, &["etcd", "n0", "n1"]);
    let etcd = Etcd::start(&net, "etcd");
    let nodes = start_nodes(&net, 2, "cut-etcd", &etcd.endpoint, LEASE_TTL);

    let mut stuck = connect(mqtt_addr(&net, 0), connect_packet(V5, "stuck"));
    // A persistent session on n0, offline, with a QoS 1 message queued from n1.
    let mut keeper = connect(mqtt_addr(&net, 0), persistent_connect_packet(V5, "keeper"));
    subscribe_granted(&mut keeper, "k/#", QoS::AtLeastOnce);
    let mut publisher1 = connect(mqtt_addr(&net, 1), connect_packet(V5, "pub1"));
    await_route(&mut publisher1, &mut keeper, "k/probe", PROPAGATION);
    disconnect(keeper);
    std::thread::sleep(Duration::from_millis(200));
    publish_acked(&mut publisher1, "k/1", b"queued before the cut", false, 1);

    // Each shard logs this when the node gets a lease, at start-up too.
    let serving = nodes[0].log_count(SERVING_AGAIN);
    let ready = |node: usize| shardmq_tests::http_get(nodes[node].admin_address(), "/ready").0;
    assert_eq!((ready(0), ready(1)), (200, 200));
    let cut_at = Instant::now();
    net.cut("n0", &["etcd"]);
    let fenced = expect_fenced(&mut stuck, LEASE_TTL);
    // A fenced node is not ready: a load balancer's health check takes it out.
    assert_eq!((ready(0), ready(1)), (503, 200));
    eprintln!("figure: cut-etcd: n0's client disconnected {} after the cut", seconds(fenced));
    // The line may be written just after the disconnect the client saw.
    let lapsed = nodes[0].wait_for_log(FENCED, WAIT);
    assert!(lapsed.is_some(), "{}", nodes[0].log());
    assert!(refused(mqtt_addr(&net, 0), connect_packet(V5, "newcomer")));
    assert!(refused(mqtt_addr(&net, 0), connect_packet(V5, "stuck")));

    // Its clients move to n1: the clean one, and the persistent one (which n0 can still hand
    // over while its link is up and its key is still in etcd).
    let (mut moved, _, _) =
        connect_until_accepted(mqtt_addr(&net, 1), &connect_packet(V5, "stuck"), PROPAGATION);
    eprintln!(
        "figure: cut-etcd: n0's clean client accepted on n1 {} after the cut",
        seconds(cut_at.elapsed())
    );
    moved.send(&Packet::PingReq);
    assert!(matches!(moved.expect_packet(WAIT), Packet::PingResp));
    let (mut keeper, connack, _) = connect_until_accepted(
        mqtt_addr(&net, 1),
        &persistent_connect_packet(V5, "keeper"),
        PROPAGATION,
    );
    eprintln!(
        "figure: cut-etcd: n0's persistent client accepted on n1 {} after the cut, \
         session present: {}",
        seconds(cut_at.elapsed()),
        connack.session_present
    );
    if connack.session_present {
        assert_eq!(
            receive_publish(&mut keeper, WAIT)
                .expect("the queued message came with the session")
                .payload,
            Bytes::from_static(b"queued before the cut")
        );
    }
    // Still fenced while the cut lasts, well past its lease.
    std::thread::sleep(LEASE_TTL);
    assert!(refused(mqtt_addr(&net, 0), connect_packet(V5, "newcomer")));

    assert_eq!(nodes[0].log_count(SERVING_AGAIN), serving, "{}", nodes[0].log());
    let healed_at = Instant::now();
    net.heal("n0", &["etcd"]);
    assert!(
        nodes[0].wait_for_log_count(SERVING_AGAIN, serving + 1, PROPAGATION),
        "{}",
        nodes[0].log()
    );
    let (mut newcomer, _, _) =
        connect_until_accepted(mqtt_addr(&net, 0), &connect_packet(V5, "newcomer"), WAIT);
    eprintln!(
        "figure: cut-etcd: n0 accepts connects again {} after the heal",
        seconds(healed_at.elapsed())
    );
    assert_eq!(ready(0), 200);
    subscribe_granted(&mut newcomer, "n/#", QoS::AtLeastOnce);
    await_route(&mut publisher1, &mut newcomer, "n/probe", PROPAGATION);
    let mut publisher0 = connect(mqtt_addr(&net, 0), connect_packet(V5, "pub0"));
    subscribe_granted(&mut keeper, "b/#", QoS::AtLeastOnce);
    await_route(&mut publisher0, &mut keeper, "b/probe", PROPAGATION);
}

/// One node cut off from its peers while it still reaches etcd: it keeps its lease and serves
/// its own clients; the links are down, so nothing crosses the cut; its clients cannot be taken
/// over elsewhere until it heals (the owner is alive but does not answer), and then they can,
/// with their sessions.
#[test]
fn a_node_cut_off_from_its_peers_only_keeps_serving_its_clients() {
    let net = Net::new(3, &["etcd", "n0", "n1"]);
    let etcd = Etcd::start(&net, "etcd");
    let nodes = start_nodes(&net, 2, "cut-peers", &etcd.endpoint, LEASE_TTL);

    let mut island = connect(mqtt_addr(&net, 0), persistent_connect_packet(V5, "island"));
    subscribe_granted(&mut island, "i/#", QoS::AtLeastOnce);
    let mut publisher0 = connect(mqtt_addr(&net, 0), connect_packet(V5, "pub0"));
    let mut watcher1 = connect(mqtt_addr(&net, 1), connect_packet(V5, "watch1"));
    subscribe_granted(&mut watcher1, "w/#", QoS::AtMostOnce);
    let mut publisher1 = connect(mqtt_addr(&net, 1), connect_packet(V5, "pub1"));
    await_route(&mut publisher1, &mut island, "i/probe", PROPAGATION);
    await_route(&mut publisher0, &mut watcher1, "w/probe", PROPAGATION);

    let cut_at = Instant::now();
    net.cut("n0", &["n1"]);
    // Three lease lifetimes: n0 renews its lease and keeps serving its clients locally.
    for round in 1..=6u16 {
        std::thread::sleep(LEASE_TTL / 2);
        publish_acked(&mut publisher0, "i/local", format!("{round}").as_bytes(), false, round);
        let got = receive_publish(&mut island, WAIT).unwrap_or_else(|| {
            panic!("round {round}: not served on n0; its log:\n{}", nodes[0].log())
        });
        assert_eq!(got.payload, format!("{round}").as_bytes());
    }
    assert!(!nodes[0].log_contains(FENCED), "{}", nodes[0].log());
    assert!(!nodes[1].log_contains(FENCED), "{}", nodes[1].log());
    // Publishes on n1 are acknowledged but do not cross the cut (docs/cluster.md: a peer whose
    // link is down misses what is published meanwhile); nor do n0's reach n1.
    publish_acked(&mut publisher1, "i/remote", b"published on n1 during the cut", false, 7);
    assert!(receive_publish(&mut island, Duration::from_secs(1)).is_none(), "crossed the cut");
    publisher0.send(&publish_packet("w/cut", b"from n0 during the cut", QoS::AtMostOnce, false, 0));
    assert!(receive_publish(&mut watcher1, Duration::from_secs(1)).is_none(), "crossed the cut");

    // The island's client cannot be taken over on n1 while n0 holds it and does not answer:
    // refused, and n0 keeps serving it (one owner).
    let attempt = Instant::now();
    assert!(refused(mqtt_addr(&net, 1), persistent_connect_packet(V5, "island")));
    eprintln!(
        "figure: cut-peers: a takeover on n1 of n0's client refused after {} ({} into the cut)",
        seconds(attempt.elapsed()),
        seconds(cut_at.elapsed())
    );
    island.send(&Packet::PingReq);
    assert!(matches!(island.expect_packet(WAIT), Packet::PingResp), "n0 stopped serving");
    // New clients connect on both sides.
    let _left = connect(mqtt_addr(&net, 0), connect_packet(V5, "new-on-n0"));
    let _right = connect(mqtt_addr(&net, 1), connect_packet(V5, "new-on-n1"));

    let healed_at = Instant::now();
    net.heal("n0", &["n1"]);
    await_route(&mut publisher1, &mut island, "i/probe-healed", PROPAGATION);
    await_route(&mut publisher0, &mut watcher1, "w/probe-healed", PROPAGATION);
    eprintln!(
        "figure: cut-peers: routes converged both ways {} after the heal",
        seconds(healed_at.elapsed())
    );
    // Now the client moves to n1 with its session; the old connection is told it was taken
    // over, and nothing more is delivered to it.
    let (mut moved, connack, _) = connect_until_accepted(
        mqtt_addr(&net, 1),
        &persistent_connect_packet(V5, "island"),
        PROPAGATION,
    );
    assert!(connack.session_present);
    match island.next(WAIT) {
        Received::Packet(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::SESSION_TAKEN_OVER)
        }
        Received::Closed => {}
        other => panic!("the old connection got {other:?}"),
    }
    publish_acked(&mut publisher0, "i/after", b"after the move", false, 8);
    assert_eq!(
        receive_publish(&mut moved, WAIT).expect("delivered to the moved client").payload,
        Bytes::from_static(b"after the move")
    );
    assert!(receive_publish(&mut island, Duration::from_millis(300)).is_none());
}

/// etcd behind a proxy that adds latency both ways: connects are slower but succeed, no
/// acknowledged QoS 1 message is lost across a takeover, no node fences, and idle nodes do not
/// spin.
#[test]
fn a_slow_etcd_slows_connects_but_loses_nothing_and_nothing_spins() {
    /// Added to every chunk in each direction: a round trip to etcd costs twice this more.
    const ETCD_DELAY: Duration = Duration::from_millis(200);
    /// How long the idle nodes' CPU time is measured.
    const IDLE: Duration = Duration::from_secs(5);
    /// Connects timed per phase.
    const CONNECTS: usize = 10;
    const MESSAGES: u16 = 100;

    let net = Net::new(4, &["etcd", "n0", "n1"]);
    let _etcd = Etcd::start(&net, "etcd");
    let proxy =
        SlowProxy::start(net.root_ip(), SocketAddr::from((net.host("etcd").ip, ETCD_CLIENT_PORT)));
    let endpoint = format!("http://{}", proxy.addr);
    // A 6 s lease, not the 2 s one of the other tests: with 2 s, a renewal answered later than
    // a quarter of it (500 ms, which the proxy's 400 ms round trip plus a loaded 2-core machine
    // reach now and then) holds transactions back until the next is answered.
    let nodes = start_nodes(&net, 2, "slow-etcd", &endpoint, Duration::from_secs(6));

    // Each connect of a new client id commits a claim in etcd before its CONNACK.
    let time_connects = |phase: &str| -> Vec<Duration> {
        let mut times: Vec<Duration> = (0..CONNECTS)
            .map(|i| {
                let start = Instant::now();
                let client_id = format!("{phase}-{i}");
                // One attempt: it must succeed, however slow etcd is.
                let (client, connack) =
                    try_connect(mqtt_addr(&net, i % 2), connect_packet(V5, &client_id))
                        .unwrap_or_else(|| panic!("{client_id}: no CONNACK"));
                let took = start.elapsed();
                if connack.reason != ReasonCode::SUCCESS {
                    let node = &nodes[i % 2];
                    let (_, metrics) = shardmq_tests::http_get(node.admin_address(), "/metrics");
                    let etcd: Vec<&str> =
                        metrics.lines().filter(|line| line.contains("etcd")).collect();
                    panic!("{client_id}: {connack:?}\n{}\n{}", etcd.join("\n"), node.log());
                }
                drop(client);
                took
            })
            .collect();
        times.sort();
        times
    };
    let idle_cpu = |phase: &str| -> Vec<Duration> {
        let before: Vec<Duration> = nodes.iter().map(|node| cpu_time(node.pid())).collect();
        std::thread::sleep(IDLE);
        let used: Vec<Duration> =
            nodes.iter().zip(before).map(|(node, before)| cpu_time(node.pid()) - before).collect();
        eprintln!("figure: slow-etcd: {phase}: idle CPU over {} per node: {used:?}", seconds(IDLE));
        used
    };
    let fast = time_connects("fast");
    let fast_cpu = idle_cpu("no delay");

    proxy.set_delay(ETCD_DELAY);
    // Let the requests already in flight at no delay drain.
    std::thread::sleep(Duration::from_secs(1));
    let slow = time_connects("slow");
    eprintln!(
        "figure: slow-etcd: connect latency median/max: {:?}/{:?} without delay, \
         {:?}/{:?} with {:?} each way",
        fast[CONNECTS / 2],
        fast[CONNECTS - 1],
        slow[CONNECTS / 2],
        slow[CONNECTS - 1],
        ETCD_DELAY
    );
    assert!(slow[CONNECTS / 2] >= ETCD_DELAY * 2, "the proxy added no latency: {slow:?}");

    // QoS 1 to a persistent session that is offline, then taken over by the other node: the
    // takeover's claim goes through the slow etcd.
    let mut durable = connect(mqtt_addr(&net, 0), persistent_connect_packet(V5, "durable"));
    subscribe_granted(&mut durable, "d/#", QoS::AtLeastOnce);
    let mut publisher = connect(mqtt_addr(&net, 1), connect_packet(V5, "slow-pub"));
    await_route(&mut publisher, &mut durable, "d/probe", PROPAGATION);
    disconnect(durable);
    std::thread::sleep(Duration::from_millis(200));
    for i in 1..=MESSAGES {
        publish_acked(&mut publisher, "d/m", format!("{i}").as_bytes(), false, i);
    }
    let start = Instant::now();
    let mut durable = connect(mqtt_addr(&net, 1), persistent_connect_packet(V5, "durable"));
    let takeover = start.elapsed();
    eprintln!("figure: slow-etcd: takeover connect (n0 to n1) took {}", seconds(takeover));
    for i in 1..=MESSAGES {
        let got = receive_publish(&mut durable, WAIT).unwrap_or_else(|| panic!("message {i} lost"));
        assert_eq!(got.payload, format!("{i}").as_bytes());
    }

    let slow_cpu = idle_cpu(&format!("{ETCD_DELAY:?} each way"));
    for (node, used) in slow_cpu.iter().enumerate() {
        assert!(
            *used < IDLE / 4,
            "node {node} used {used:?} of CPU over {IDLE:?} idle with a slow etcd \
             (without delay: {:?})",
            fast_cpu[node]
        );
    }
    for node in &nodes {
        assert!(!node.log_contains(FENCED), "{}", node.log());
    }
}

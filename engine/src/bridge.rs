//! Bridges to other MQTT brokers (docs/bridges.md): one task per bridge, on the shard that is
//! the home of the bridge's local session `$bridge/<name>`.
//!
//! The local side is a persistent session of that client id, attached to the shard as a
//! connection without a socket: the task feeds it packets (`Shard::connect`, `Shard::packet`)
//! and reads what the shard writes for it (`Shard::take_output`), as a connection task would.
//! Its subscriptions to the `out` patterns make the shard queue matching messages durably in the
//! same group commit as the publish, bounded by `queue_max_messages`; the task passes each on to
//! the remote broker and acknowledges it locally only once the remote acknowledged it, so the
//! session's in-flight and queued messages are exactly what the remote has not confirmed, and
//! the shard resends them (DUP) when the session is attached again. While the remote is
//! unreachable the session is detached, so messages wait in its queue and never pause a
//! publisher. What the remote sends for the `in` patterns is published locally by that same
//! session (ACL as the user `$bridge/<name>`); its local subscriptions have No Local, so nothing
//! that came in over the bridge goes back out over it.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use shardmq_io::codec::{
    Ack, ByteString, Connect, Decoded, Decoder, Disconnect, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions,
    TopicFilterEntry,
};
use shardmq_io::link_tls::{self, LinkTls};
use shardmq_io::runtime::{self, TcpStream};
use shardmq_shard::topic_tree::topic_matches;
use shardmq_shard::{home_shard, ConnId};

use crate::config::bridge::{
    BridgeConfig, BridgeTls, RECONNECT_MAX, RECONNECT_MIN, RESERVED_PREFIX,
};
use crate::context::{ShardContext, VirtualConn};
use crate::metrics::BridgeCounters;

/// How long connecting to the remote broker (TCP and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages sent to the remote broker and not yet acknowledged, at most: the local session's
/// Receive Maximum, so the shard keeps the rest queued (and durable) until there is room.
const INFLIGHT_MAX: u16 = 64;
/// How often the queue gauges are refreshed while the remote broker is away.
const GAUGES_REFRESH: Duration = Duration::from_secs(1);
/// The largest packet accepted from either side.
const PACKET_BYTES_MAX: u32 = 256 << 20;
/// Topics and payload hashes of messages recently sent out, kept to recognise a 3.1.1 remote
/// echoing them back (3.1.1 has no No Local).
const RECENTLY_SENT_MAX: usize = 4096;

/// The client id of a bridge's local session.
pub(crate) fn local_client_id(name: &str) -> String {
    format!("{RESERVED_PREFIX}{name}")
}

/// Starts the tasks of the bridges homed on this shard.
pub(crate) fn start_bridges(
    context: &Rc<ShardContext>,
    bridges: &[BridgeConfig],
    counters: &[Arc<BridgeCounters>],
) {
    for (bridge, counters) in bridges.iter().zip(counters) {
        let local_id = local_client_id(&bridge.name);
        if home_shard(&local_id, context.shards) != context.id {
            continue;
        }
        context.state.borrow_mut().set_bridge_queue(&local_id, bridge.queue_max_messages);
        runtime::spawn_local(run_bridge(context.clone(), bridge.clone(), counters.clone()));
    }
}

/// Connects, bridges until the link fails, and reconnects with a jittered backoff (1 s doubling
/// to 60 s, back to 1 s after a link that came up), until the node stops.
async fn run_bridge(
    context: Rc<ShardContext>,
    bridge: BridgeConfig,
    counters: Arc<BridgeCounters>,
) {
    let mut prepared = false;
    let mut backoff = RECONNECT_MIN;
    let mut attempts = 0_u64;
    while !context.stopping.get() {
        if !runs_here(&context, &bridge.name) {
            // Another node runs it (or this one may not serve now): wait for the ring to change.
            prepared = false;
            counters.connected.store(0, Ordering::Relaxed);
            runtime::sleep(GAUGES_REFRESH).await;
            continue;
        }
        if attempts > 0 {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        attempts += 1;
        match own_session(&context, &bridge, &mut prepared).await {
            Ok(()) => match bridge_once(&context, &bridge, &counters).await {
                Ok(()) => backoff = RECONNECT_MIN,
                Err(error) => {
                    tracing::warn!(bridge = %bridge.name, address = %bridge.address, %error, "bridge down");
                }
            },
            Err(error) => {
                tracing::warn!(bridge = %bridge.name, %error, "bridge session not claimed")
            }
        }
        counters.connected.store(0, Ordering::Relaxed);
        // The gauges stay current while the remote is away: refreshed every second.
        let until = Instant::now() + jittered(backoff);
        while !context.stopping.get() && Instant::now() < until {
            refresh_queue_gauges(&context, &bridge, &counters);
            let left = until.saturating_duration_since(Instant::now());
            runtime::sleep(left.min(GAUGES_REFRESH)).await;
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Whether this node runs the bridge now: always on a single node; in a cluster, when it is
/// the first node of the bridge's name on the rendezvous ring of live members, and may serve
/// (so each message is bridged by one node).
fn runs_here(context: &ShardContext, name: &str) -> bool {
    let Some(cluster) = &context.cluster else { return true };
    let first = cluster.ring.borrow().owner(name.as_bytes()).cloned();
    first.as_ref() == Some(&cluster.node.node) && cluster.node.fence.may_serve(Instant::now())
}

/// Makes the bridge's local session this node's: in a cluster, claimed in etcd like a client's
/// (taken over, queue included, from the node that ran the bridge before). The first time, it
/// is attached and detached again, so the session and its subscriptions exist (and queue)
/// before the remote broker is first reached.
async fn own_session(
    context: &Rc<ShardContext>,
    bridge: &BridgeConfig,
    prepared: &mut bool,
) -> Result<(), String> {
    let local_id = local_client_id(&bridge.name);
    crate::cluster::claim(context, &local_id, false, Some(&local_id))
        .await
        .map_err(|refusal| format!("claim of {local_id}: {}", refusal.label()))?;
    if !*prepared {
        let mut local = LocalSide::attach(context, bridge, INFLIGHT_MAX);
        local.detach(context);
        *prepared = true;
    }
    Ok(())
}

/// `wait` give or take a quarter, so that bridges of many nodes to one broker spread out.
fn jittered(wait: Duration) -> Duration {
    let mut bytes = [0_u8; 2];
    let _ = getrandom::getrandom(&mut bytes);
    let fraction = f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX);
    wait.mul_f64(0.75 + fraction / 2.0)
}

fn refresh_queue_gauges(context: &ShardContext, bridge: &BridgeConfig, counters: &BridgeCounters) {
    let local_id = local_client_id(&bridge.name);
    if let Some((queue, held)) = context.state.borrow().bridge_queue(&local_id) {
        counters.queued.store(held as u64, Ordering::Relaxed);
        counters.dropped.store(queue.dropped, Ordering::Relaxed);
    }
}

/// One life of the link: connects to the remote broker, attaches the local session, and moves
/// messages both ways until either side fails or the node stops. `Ok` once it had come up.
async fn bridge_once(
    context: &Rc<ShardContext>,
    bridge: &BridgeConfig,
    counters: &BridgeCounters,
) -> Result<(), String> {
    let remote = match future::or(async { Some(Remote::connect(bridge).await) }, async {
        runtime::sleep(CONNECT_TIMEOUT).await;
        None
    })
    .await
    {
        Some(result) => result?,
        None => return Err("no CONNACK within 10 s".into()),
    };
    tracing::info!(bridge = %bridge.name, address = %bridge.address, "bridge connected");
    counters.connected.store(1, Ordering::Relaxed);
    // No more in flight than the remote broker takes (its Receive Maximum; Mosquitto's is 20).
    let local = LocalSide::attach(context, bridge, remote.receive_max);
    let mut link = Link::new(bridge, remote, local);
    link.subscribe_remote();
    let result = link.run(context, counters).await;
    link.local.detach(context);
    if result.is_ok() {
        link.remote.disconnect().await;
    }
    // Having come up is what resets the backoff, whatever ended the link.
    result.or_else(|error| {
        tracing::warn!(bridge = %bridge.name, %error, "bridge link lost");
        Ok(())
    })
}

/// The bridge's local session, attached to the shard under a connection id of its own.
struct LocalSide {
    conn: ConnId,
    handle: Rc<VirtualConn>,
    decoder: Decoder,
    input: BytesMut,
    next_packet_id: u16,
}

impl LocalSide {
    /// Attaches the session (made on first use, kept across restarts) and subscribes it to the
    /// `out` patterns (No Local: never what the bridge itself published; retained messages
    /// only for a new subscription, not at every reconnect).
    fn attach(context: &ShardContext, bridge: &BridgeConfig, window: u16) -> LocalSide {
        let conn = context.new_conn_id();
        let handle = Rc::new(VirtualConn::default());
        context.virtual_conns.borrow_mut().insert(conn, handle.clone());
        let client_id = local_client_id(&bridge.name);
        let properties = Properties {
            session_expiry_interval: Some(u32::MAX),
            receive_maximum: Some(window.clamp(1, INFLIGHT_MAX)),
            ..Properties::default()
        };
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive_secs: 0,
            client_id: ByteString::from(client_id.as_str()),
            will: None,
            username: Some(ByteString::from(client_id.as_str())),
            password: None,
            properties,
        };
        let now = Instant::now();
        let filters: Vec<TopicFilterEntry> = bridge
            .topics
            .iter()
            .filter(|topic| topic.direction.outbound())
            .map(|topic| TopicFilterEntry {
                filter: ByteString::from(topic.local_filter()),
                options: SubscriptionOptions {
                    qos: bridge_qos(topic.qos),
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            })
            .collect();
        {
            let mut state = context.state.borrow_mut();
            state.connect(conn, connect, now);
            if !filters.is_empty() {
                let subscribe = Subscribe {
                    packet_id: PacketId::new(1).unwrap_or(PacketId(std::num::NonZeroU16::MIN)),
                    properties: Properties::default(),
                    filters,
                };
                state.packet(conn, Packet::Subscribe(subscribe), now);
            }
        }
        context.apply_effects();
        LocalSide {
            conn,
            handle,
            decoder: Decoder::client(ProtocolVersion::V5, PACKET_BYTES_MAX),
            input: BytesMut::new(),
            next_packet_id: 1,
        }
    }

    /// Detaches the session: it stays, with what it has not had acknowledged.
    fn detach(&mut self, context: &ShardContext) {
        context.virtual_conns.borrow_mut().remove(&self.conn);
        context.state.borrow_mut().connection_lost(self.conn, Instant::now());
        context.apply_effects();
    }

    /// Feeds one packet of the bridge's to the shard.
    fn send(&self, context: &ShardContext, packet: Packet) {
        context.state.borrow_mut().packet(self.conn, packet, Instant::now());
        context.apply_effects();
    }

    /// The packets the shard wrote for the session since the last call.
    fn received(&mut self, context: &ShardContext) -> Result<Vec<Packet>, String> {
        {
            let mut state = context.state.borrow_mut();
            let out = state.take_output(self.conn);
            self.input.extend_from_slice(&out);
            state.output_written(self.conn, Instant::now());
        }
        context.apply_effects();
        decode_all(&mut self.decoder, &mut self.input).map_err(|error| format!("local: {error}"))
    }

    fn packet_id(&mut self, in_use: &HashMap<u16, u16>) -> PacketId {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(id).filter(|id| !in_use.contains_key(&id.get())) {
                return id;
            }
        }
    }
}

/// The QoS a bridge delivers with: at most 1 (docs/bridges.md says why).
fn bridge_qos(qos: QoS) -> QoS {
    match qos {
        QoS::AtMostOnce => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

fn decode_all(decoder: &mut Decoder, input: &mut BytesMut) -> Result<Vec<Packet>, String> {
    let mut packets = Vec::new();
    loop {
        match decoder.decode(input).map_err(|error| error.to_string())? {
            Decoded::Packet(packet) => packets.push(packet),
            _ => return Ok(packets),
        }
    }
}

/// The connection to the remote broker.
struct Remote {
    stream: TcpStream,
    /// TLS state (`tls = true`): `output` is then plaintext, sealed when flushed, and what is
    /// read is opened into `input`.
    tls: Option<LinkTls>,
    version: ProtocolVersion,
    decoder: Decoder,
    input: BytesMut,
    output: BytesMut,
    /// What the remote broker's CONNACK allows: messages in flight, and the largest packet.
    receive_max: u16,
    packet_max: u32,
}

impl Remote {
    async fn connect(bridge: &BridgeConfig) -> Result<Remote, String> {
        let address = resolve(&bridge.address).await?;
        let mut stream = TcpStream::connect_with_user_timeout(address, Duration::from_secs(30))
            .await
            .map_err(|error| format!("connect {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let mut input = BytesMut::new();
        let tls = match &bridge.tls {
            Some(files) => {
                let mut tls = client_tls(bridge, files).await?;
                tls.handshake(&mut stream, &mut input)
                    .await
                    .map_err(|error| format!("TLS handshake with {address}: {error}"))?;
                Some(tls)
            }
            None => None,
        };
        let mut remote = Remote {
            stream,
            tls,
            version: bridge.protocol,
            decoder: Decoder::client(bridge.protocol, PACKET_BYTES_MAX),
            input,
            output: BytesMut::new(),
            receive_max: INFLIGHT_MAX,
            packet_max: PACKET_BYTES_MAX,
        };
        remote.send(&Packet::Connect(Box::new(remote_connect(bridge)?)))?;
        remote.flush().await?;
        loop {
            if let Some(packet) = remote.read().await?.into_iter().next() {
                return match packet {
                    Packet::ConnAck(connack) if !connack.reason.is_error() => {
                        let properties = &connack.properties;
                        remote.receive_max = properties.receive_maximum.unwrap_or(INFLIGHT_MAX);
                        remote.packet_max =
                            properties.maximum_packet_size.unwrap_or(PACKET_BYTES_MAX);
                        Ok(remote)
                    }
                    Packet::ConnAck(connack) => Err(format!("CONNACK {}", connack.reason)),
                    other => Err(format!("expected CONNACK, got {other:?}")),
                };
            }
        }
    }

    fn send(&mut self, packet: &Packet) -> Result<(), String> {
        packet.encode(self.version, &mut self.output).map(drop).map_err(|error| error.to_string())
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.output.is_empty() {
            return Ok(());
        }
        let output = self.output.split();
        let result = match &mut self.tls {
            Some(tls) => {
                let mut wire = Vec::with_capacity(output.len() + 64);
                tls.seal(&output, &mut wire).map_err(|error| format!("TLS: {error}"))?;
                self.stream.write_all(&wire).await
            }
            None => self.stream.write_all(&output).await,
        };
        result.map_err(|error| format!("write: {error}"))
    }

    /// Reads once (waiting for data) and returns the packets decoded.
    async fn read(&mut self) -> Result<Vec<Packet>, String> {
        let read = match &mut self.tls {
            Some(tls) => {
                let mut wire = BytesMut::new();
                let read = self.stream.read_buf(&mut wire).await;
                if let Ok(count) = read {
                    tls.open(&wire[..count], &mut self.input)
                        .map_err(|error| format!("TLS: {error}"))?;
                }
                read
            }
            None => self.stream.read_buf(&mut self.input).await,
        }
        .map_err(|error| format!("read: {error}"))?;
        if read == 0 {
            return Err("the remote broker closed the connection".into());
        }
        decode_all(&mut self.decoder, &mut self.input).map_err(|error| format!("remote: {error}"))
    }

    async fn disconnect(&mut self) {
        let _ = self.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
        let _ = self.flush().await;
    }
}

/// The CONNECT to the remote broker: a persistent session (a day in MQTT 5), so that what the
/// remote has for the `in` patterns waits for the bridge across a reconnect.
fn remote_connect(bridge: &BridgeConfig) -> Result<Connect, String> {
    let password = match &bridge.password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            Some(Bytes::from(text.lines().next().unwrap_or_default().to_string()))
        }
        None => None,
    };
    let mut properties = Properties::default();
    if bridge.protocol.is_v5() {
        properties.session_expiry_interval = Some(86_400);
        properties.receive_maximum = Some(INFLIGHT_MAX);
    }
    Ok(Connect {
        protocol: bridge.protocol,
        clean_start: false,
        keep_alive_secs: bridge.keepalive_secs,
        client_id: ByteString::from(bridge.client_id.as_str()),
        will: None,
        username: bridge.username.as_deref().map(ByteString::from),
        password,
        properties,
    })
}

/// The TLS state for a bridge, its files read on the blocking seam.
async fn client_tls(bridge: &BridgeConfig, files: &BridgeTls) -> Result<LinkTls, String> {
    let host = bridge.address.rsplit_once(':').map_or("", |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let files = files.clone();
    runtime::spawn_blocking(move || {
        let identity = files.identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
        link_tls::broker_client(&files.ca_file, identity, &host)
    })
    .await
    .map_err(|_| "reading the TLS files panicked".to_string())?
    .map_err(|error| error.to_string())
}

/// `host:port` to an address: an IP address at once, a name on the blocking seam (the
/// resolver may block).
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = address.parse::<SocketAddr>() {
        return Ok(address);
    }
    let name = address.to_string();
    runtime::spawn_blocking(move || name.to_socket_addrs().map(|mut all| all.next()))
        .await
        .map_err(|_| "the resolver panicked".to_string())?
        .map_err(|error| format!("resolve {address}: {error}"))?
        .ok_or_else(|| format!("resolve {address}: no address"))
}

/// Both sides of a bridge while the link is up.
struct Link<'a> {
    bridge: &'a BridgeConfig,
    remote: Remote,
    local: LocalSide,
    /// Messages sent out and not yet acknowledged by the remote: its packet id → the local one.
    outgoing: HashMap<u16, u16>,
    next_remote_id: u16,
    /// Messages brought in and not yet acknowledged by the shard (durable): local → remote id.
    incoming: HashMap<u16, u16>,
    recently_sent: VecDeque<u64>,
    last_heard: Instant,
    ping_due: Instant,
}

impl<'a> Link<'a> {
    fn new(bridge: &'a BridgeConfig, remote: Remote, local: LocalSide) -> Link<'a> {
        let now = Instant::now();
        Link {
            bridge,
            remote,
            local,
            outgoing: HashMap::new(),
            next_remote_id: 1,
            incoming: HashMap::new(),
            recently_sent: VecDeque::new(),
            last_heard: now,
            ping_due: now + keepalive_interval(bridge),
        }
    }

    /// Subscribes on the remote broker to the `in` patterns (No Local in MQTT 5: never what the
    /// bridge itself sent there).
    fn subscribe_remote(&mut self) {
        let filters: Vec<TopicFilterEntry> = self
            .bridge
            .topics
            .iter()
            .filter(|topic| topic.direction.inbound())
            .map(|topic| TopicFilterEntry {
                filter: ByteString::from(topic.remote_filter()),
                options: SubscriptionOptions {
                    qos: bridge_qos(topic.qos),
                    no_local: self.remote.version.is_v5(),
                    retain_as_published: self.remote.version.is_v5(),
                    retain_handling: RetainHandling::SendAtSubscribe,
                },
            })
            .collect();
        if !filters.is_empty() {
            let packet_id = self.remote_packet_id();
            let subscribe = Subscribe { packet_id, properties: Properties::default(), filters };
            let _ = self.remote.send(&Packet::Subscribe(subscribe));
        }
    }

    fn remote_packet_id(&mut self) -> PacketId {
        loop {
            let id = self.next_remote_id;
            self.next_remote_id = self.next_remote_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(id).filter(|id| !self.outgoing.contains_key(&id.get()))
            {
                return id;
            }
        }
    }

    /// Moves messages until a side fails (`Err`) or the node stops (`Ok`).
    async fn run(
        &mut self,
        context: &ShardContext,
        counters: &BridgeCounters,
    ) -> Result<(), String> {
        loop {
            if context.stopping.get() {
                return Ok(());
            }
            if self.local.handle.closed.get() {
                return Err("the local session was closed (taken over?)".into());
            }
            if !runs_here(context, &self.bridge.name) {
                // Another node runs the bridge now: it takes the session over.
                return Ok(());
            }
            for packet in self.local.received(context)? {
                self.on_local(context, packet, counters)?;
            }
            self.keepalive()?;
            self.remote.flush().await?;
            refresh_queue_gauges(context, self.bridge, counters);
            let due = self.ping_due.min(Instant::now() + GAUGES_REFRESH);
            let wake = Wake::wait(&mut self.remote.stream, &self.local.handle, due).await;
            if wake == Wake::Remote {
                for packet in self.remote.read().await? {
                    self.last_heard = Instant::now();
                    self.on_remote(context, packet, counters)?;
                }
            }
        }
    }

    fn keepalive(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let interval = keepalive_interval(self.bridge);
        if now.duration_since(self.last_heard) > interval * 3 {
            return Err("the remote broker stopped answering (keepalive)".into());
        }
        if now >= self.ping_due {
            self.remote.send(&Packet::PingReq)?;
            self.ping_due = now + interval;
        }
        Ok(())
    }

    /// A packet the shard wrote for the bridge's session.
    fn on_local(
        &mut self,
        context: &ShardContext,
        packet: Packet,
        counters: &BridgeCounters,
    ) -> Result<(), String> {
        match packet {
            Packet::Publish(publish) => self.send_out(context, publish, counters),
            // The shard has made a message from the remote durable: acknowledge it there.
            Packet::PubAck(ack) => {
                if let Some(remote_id) = self.incoming.remove(&ack.packet_id.get()) {
                    if let Some(id) = PacketId::new(remote_id) {
                        self.remote.send(&Packet::PubAck(Ack::success(id)))?;
                    }
                }
                Ok(())
            }
            Packet::ConnAck(connack) if connack.reason.is_error() => {
                Err(format!("the local session was refused: {}", connack.reason))
            }
            Packet::SubAck(suback) => {
                if let Some(refused) = suback.reasons.iter().find(|reason| reason.is_error()) {
                    tracing::warn!(bridge = %self.bridge.name, reason = %refused, "a local bridge subscription was refused (ACL?)");
                }
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                Err(format!("the local session was disconnected: {}", disconnect.reason))
            }
            _ => Ok(()),
        }
    }

    /// Sends a local message to the remote broker under its remote topic.
    fn send_out(
        &mut self,
        context: &ShardContext,
        publish: Publish,
        counters: &BridgeCounters,
    ) -> Result<(), String> {
        let remote_topic = self
            .bridge
            .topics
            .iter()
            .filter(|topic| {
                topic.direction.outbound() && topic_matches(&topic.local_filter(), &publish.topic)
            })
            .find_map(|topic| topic.to_remote(&publish.topic));
        let local_id = publish.packet_id;
        let Some(remote_topic) = remote_topic else {
            // Matched no pattern (cannot happen with the session's own subscriptions): settle it.
            if let Some(id) = local_id {
                self.local.send(context, Packet::PubAck(Ack::success(id)));
            }
            return Ok(());
        };
        let too_large = Packet::Publish(Publish {
            topic: ByteString::from(remote_topic.as_str()),
            packet_id: local_id,
            ..publish.clone()
        })
        .encoded_len(self.remote.version)
        .map_or(true, |len| len > self.remote.packet_max as usize);
        if too_large {
            // The remote broker would close the link for it, again at every resend: dropped.
            tracing::warn!(bridge = %self.bridge.name, topic = %publish.topic, "a message larger than the remote broker's Maximum Packet Size was dropped");
            if let Some(id) = local_id {
                self.local.send(context, Packet::PubAck(Ack::success(id)));
            }
            return Ok(());
        }
        self.remember_sent(&remote_topic, &publish.payload);
        let packet_id = match local_id {
            Some(local_id) => {
                let remote_id = self.remote_packet_id();
                self.outgoing.insert(remote_id.get(), local_id.get());
                Some(remote_id)
            }
            None => None,
        };
        let out = Publish {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            topic: ByteString::from(remote_topic),
            packet_id,
            properties: carried_properties(&publish.properties),
            payload: publish.payload,
        };
        self.remote.send(&Packet::Publish(out))?;
        if packet_id.is_none() {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A packet from the remote broker.
    fn on_remote(
        &mut self,
        context: &ShardContext,
        packet: Packet,
        counters: &BridgeCounters,
    ) -> Result<(), String> {
        match packet {
            Packet::PubAck(ack) => {
                // The remote has the message: only now does the local session let it go.
                if let Some(local_id) = self.outgoing.remove(&ack.packet_id.get()) {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    if let Some(id) = PacketId::new(local_id) {
                        self.local.send(context, Packet::PubAck(Ack::success(id)));
                    }
                }
                Ok(())
            }
            Packet::Publish(publish) => self.bring_in(context, publish, counters),
            Packet::SubAck(suback) => {
                if let Some(refused) = suback.reasons.iter().find(|reason| reason.is_error()) {
                    tracing::warn!(bridge = %self.bridge.name, reason = %refused, "the remote broker refused a bridge subscription");
                }
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                Err(format!("the remote broker disconnected the bridge: {}", disconnect.reason))
            }
            _ => Ok(()),
        }
    }

    /// Publishes a remote message locally, as the bridge's session, under its local topic.
    fn bring_in(
        &mut self,
        context: &ShardContext,
        publish: Publish,
        counters: &BridgeCounters,
    ) -> Result<(), String> {
        let local_topic = self
            .bridge
            .topics
            .iter()
            .filter(|topic| {
                topic.direction.inbound() && topic_matches(&topic.remote_filter(), &publish.topic)
            })
            .find_map(|topic| topic.to_local(&publish.topic));
        let echo = !self.remote.version.is_v5() && self.was_sent(&publish.topic, &publish.payload);
        let (Some(local_topic), false) = (local_topic, echo) else {
            // Not ours, or our own message coming back (3.1.1): acknowledged, not published.
            if let Some(id) = publish.packet_id {
                self.remote.send(&Packet::PubAck(Ack::success(id)))?;
            }
            return Ok(());
        };
        counters.received.fetch_add(1, Ordering::Relaxed);
        let packet_id = match publish.packet_id {
            Some(remote_id) => {
                let local_id = self.local.packet_id(&self.incoming);
                self.incoming.insert(local_id.get(), remote_id.get());
                Some(local_id)
            }
            None => None,
        };
        let local = Publish {
            dup: false,
            qos: if packet_id.is_some() { QoS::AtLeastOnce } else { QoS::AtMostOnce },
            retain: publish.retain,
            topic: ByteString::from(local_topic),
            packet_id,
            properties: carried_properties(&publish.properties),
            payload: publish.payload,
        };
        self.local.send(context, Packet::Publish(local));
        Ok(())
    }

    fn remember_sent(&mut self, topic: &str, payload: &[u8]) {
        if self.remote.version.is_v5() {
            return;
        }
        if self.recently_sent.len() >= RECENTLY_SENT_MAX {
            self.recently_sent.pop_front();
        }
        self.recently_sent.push_back(message_hash(topic, payload));
    }

    /// Whether a message just like this one was sent out recently (and forgets it: one echo).
    fn was_sent(&mut self, topic: &str, payload: &[u8]) -> bool {
        let hash = message_hash(topic, payload);
        match self.recently_sent.iter().position(|&sent| sent == hash) {
            Some(index) => {
                self.recently_sent.remove(index);
                true
            }
            None => false,
        }
    }
}

fn message_hash(topic: &str, payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    payload.hash(&mut hasher);
    hasher.finish()
}

/// The properties a bridged message keeps: what describes the payload and the application's
/// own; never what belongs to one connection (topic alias, subscription identifiers).
fn carried_properties(from: &Properties) -> Properties {
    Properties {
        payload_format_indicator: from.payload_format_indicator,
        message_expiry_interval: from.message_expiry_interval,
        content_type: from.content_type.clone(),
        response_topic: from.response_topic.clone(),
        correlation_data: from.correlation_data.clone(),
        user_properties: from.user_properties.clone(),
        ..Properties::default()
    }
}

fn keepalive_interval(bridge: &BridgeConfig) -> Duration {
    Duration::from_secs(u64::from(bridge.keepalive_secs).max(2) / 2)
}

/// What woke the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Remote,
    Local,
    Timer,
}

impl Wake {
    async fn wait(stream: &mut TcpStream, local: &VirtualConn, ping_due: Instant) -> Wake {
        let timer = async {
            runtime::sleep(ping_due.saturating_duration_since(Instant::now())).await;
            Wake::Timer
        };
        let remote = async {
            // An error shows again on the read that follows.
            let _ = stream.readable().await;
            Wake::Remote
        };
        let local = async {
            local.signal.wait().await;
            Wake::Local
        };
        future::or(remote, future::or(local, timer)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
    }

    #[test]
    fn bridged_qos_is_at_most_one() {
        assert_eq!(bridge_qos(QoS::ExactlyOnce), QoS::AtLeastOnce);
        assert_eq!(bridge_qos(QoS::AtMostOnce), QoS::AtMostOnce);
    }
}

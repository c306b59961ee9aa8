//! The checks the shard fuzz targets run (`shard/fuzz/fuzz_targets/*`), kept here so the corpus
//! replay test (`shard/tests/fuzz_corpus.rs`) runs exactly the same code on stable Rust in CI.
//!
//! Each check reads its input as a script of operations and drives shards through their public
//! API, as the engine does, with a fake clock; then it asserts invariants on what the shards
//! said and on their private state (this module lives inside `state` to see it):
//!
//! - [`check_session`]: a node of one to three shards and a few clients. Client packets are built
//!   from the script, encoded and decoded by the server decoder (so only what the network can
//!   deliver reaches a shard), and the shards' output is decoded by each client. No panic; every
//!   byte a client gets decodes as MQTT, within its Maximum Packet Size and topic aliases; no more
//!   QoS 1/2 messages in flight than its Receive Maximum and no packet identifier reused while in
//!   flight; sessions, subscriber index, route counts and the other shards' route replicas agree.
//! - [`check_routes`]: a shard's replica of the routes of peer nodes, fed route frames of several
//!   link connections in any interleaving (each connection's frames in order), with restarts and
//!   gone incarnations, plus the local mesh's RouteAdd/RouteRemove/SubscribeSync. Counts and the
//!   match index always agree with the routes held; once every frame has arrived, the shard holds
//!   each live peer shard's current routes (the invariant of `state/cluster.rs`).

// A checker reports a violated property by panicking; that is its job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq_codec::topic::split_shared;
use shardmq_codec::{
    Ack, Auth, ByteString, Connect, DecodeError, Decoded, Decoder, Disconnect, Packet, PacketId,
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    SubscriptionOptions, TopicFilterEntry, Unsubscribe, Will,
};

use super::cluster::{LinkEpoch, PeerRoute, RouteFrame};
use super::{Effect, Shard};
use crate::ids::{home_shard, ConnId, LinkNumber, PeerLease, PeerNode, ShardId};
use crate::limits::Limits;
use crate::mesh::{ShardMsg, SyncToken};
use crate::persist::WallClock;

/// The fuzz input, read front to back; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&byte, rest)) => {
                self.data = rest;
                byte
            }
            None => 0,
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()].clone()
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }
}

// -------------------------------------------------------------------------------------------
// Sessions: a node of shards and its clients
// -------------------------------------------------------------------------------------------

/// Client ids the script connects with; the empty one asks the shard to assign one.
const CLIENT_IDS: [&str; 5] = ["a", "b", "c", "d", ""];
const TOPICS: [&str; 7] = ["t", "t/a", "t/b", "s/x", "$SYS/x", "t/a/b", "u"];
const FILTERS: [&str; 10] =
    ["t", "t/+", "#", "t/#", "+/a", "$share/g/t/+", "$share/g/#", "$share/h/t", "$SYS/#", "u"];
const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

/// One connection as its client sees it.
#[derive(Debug)]
struct Client {
    shard: usize,
    version: ProtocolVersion,
    /// Decodes what the shard writes to the client.
    decoder: Decoder,
    /// The engine's decoder of the client's bytes.
    server_decoder: Decoder,
    /// Bytes the shard wrote that the client has not decoded yet (a partial packet).
    received: BytesMut,
    /// The CONNACK arrived (with success).
    connected: bool,
    /// A DISCONNECT arrived, or the connection closed or was lost.
    done: bool,
    closed: bool,
    /// The Receive Maximum the client announced (65,535 when none).
    receive_maximum: u16,
    packet_bytes_max: u32,
    alias_max: u16,
    /// Server-to-client QoS 1/2 messages not yet completed, by packet identifier: their QoS and
    /// whether PUBREL has been received.
    inflight: BTreeMap<u16, (QoS, bool)>,
    /// Server-to-client topic aliases received.
    aliases: HashMap<u16, ByteString>,
    /// Between CONNACK and the first packet that is not a resent PUBLISH or PUBREL: a PUBREL
    /// now resends one of the session's (rather than answering a stray PUBREC).
    resuming: bool,
}

/// A node of shards with the clients' view of their connections and a fake clock.
#[derive(Debug)]
struct Node {
    shards: Vec<Shard>,
    now: Instant,
    mesh: VecDeque<(ShardId, ShardId, ShardMsg)>,
    clients: BTreeMap<ConnId, Client>,
    next_conn: u64,
    /// Shards that asked for a group commit.
    commits: BTreeSet<usize>,
    durable: bool,
}

impl Node {
    fn new(input: &mut Input<'_>) -> Node {
        let config = input.byte();
        let shard_count = u16::from(config % 3) + 1;
        let durable = config & 0x04 != 0;
        let small = config & 0x08 != 0;
        let mut limits = Limits::default();
        if small {
            // Small limits so that windows, queues and output buffers fill up in a short script.
            limits.inflight_max = u16::from(input.byte() % 3) + 1;
            limits.queued_messages_max = usize::from(input.byte() % 6) + 1;
            limits.queued_bytes_max = 64 + usize::from(input.byte()) * 4;
            limits.out_buffer_bytes_max = 32 + usize::from(input.byte()) * 4;
            limits.topic_alias_max = u16::from(input.byte() % 3);
            limits.keepalive_secs_max = input.pick(&[u16::MAX, 10, 60]);
            limits.subscriptions_per_client_max = usize::from(input.byte() % 4) + 1;
            limits.retained_messages_max = usize::from(input.byte() % 4) + 1;
            limits.retained_payload_bytes_max = 64;
            limits.session_expiry_secs_max = input.pick(&[u32::MAX, 0, 30]);
            limits.topic_levels_max = input.pick(&[128, 2]);
        }
        if config & 0x10 != 0 {
            limits.client_messages_per_sec_max = Some(u32::from(input.byte() % 4) + 1);
        }
        if config & 0x20 != 0 {
            limits.client_bytes_per_sec_max = Some(u64::from(input.byte()) * 8 + 64);
        }
        let now = Instant::now();
        let clock = WallClock::fixed(now, 1_700_000_000_000);
        let shards = (0..shard_count)
            .map(|i| match durable {
                true => Shard::with_storage(ShardId(i), shard_count, limits.clone(), clock),
                false => Shard::new(ShardId(i), shard_count, limits.clone()),
            })
            .collect();
        Node {
            shards,
            now,
            mesh: VecDeque::new(),
            clients: BTreeMap::new(),
            next_conn: 1,
            commits: BTreeSet::new(),
            durable,
        }
    }

    fn limits(&self) -> &Limits {
        self.shards[0].limits()
    }

    /// A connection of the script's choosing that is still open, if any.
    fn pick_conn(&self, input: &mut Input<'_>) -> Option<ConnId> {
        let open: Vec<ConnId> =
            self.clients.iter().filter(|(_, c)| !c.closed).map(|(conn, _)| *conn).collect();
        (!open.is_empty()).then(|| open[input.below(open.len())])
    }

    fn connect(&mut self, input: &mut Input<'_>) {
        let client_id = input.pick(&CLIENT_IDS);
        let version =
            input.pick(&[ProtocolVersion::V5, ProtocolVersion::V3_1_1, ProtocolVersion::V3_1]);
        let v5 = version.is_v5();
        let mut properties = Properties::default();
        let mut receive_maximum = u16::MAX;
        let mut packet_bytes_max = u32::MAX;
        let mut alias_max = 0;
        if v5 {
            properties.session_expiry_interval =
                input.pick(&[None, Some(0), Some(5), Some(u32::MAX)]);
            properties.receive_maximum = input.pick(&[None, Some(1), Some(2), Some(3)]);
            properties.maximum_packet_size = input.pick(&[None, Some(64), Some(96), Some(512)]);
            properties.topic_alias_maximum = input.pick(&[None, Some(0), Some(1), Some(2)]);
            receive_maximum = properties.receive_maximum.unwrap_or(u16::MAX);
            packet_bytes_max = properties.maximum_packet_size.unwrap_or(u32::MAX);
            alias_max = properties.topic_alias_maximum.unwrap_or(0);
        }
        let will = input.flag().then(|| {
            let mut will_properties = Properties::default();
            if v5 {
                will_properties.will_delay_interval = input.pick(&[None, Some(0), Some(2)]);
                will_properties.message_expiry_interval = input.pick(&[None, Some(1)]);
            }
            Will {
                topic: ByteString::from(input.pick(&TOPICS)),
                payload: Bytes::from(vec![b'w'; input.below(4)]),
                qos: input.pick(&QOS),
                retain: input.flag(),
                properties: will_properties,
            }
        });
        let connect = Connect {
            protocol: version,
            clean_start: input.flag(),
            keep_alive_secs: input.pick(&[0, 1, 5, 60, u16::MAX]),
            client_id: ByteString::from(client_id),
            will,
            username: None,
            password: None,
            properties,
        };
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let shard = match client_id {
            "" => 0,
            id => home_shard(id, self.shards.len() as u16).index(),
        };
        let mut client = Client {
            shard,
            version,
            decoder: Decoder::client(version, u32::MAX),
            server_decoder: Decoder::server(self.limits().packet_bytes_max),
            received: BytesMut::new(),
            connected: false,
            done: false,
            closed: false,
            receive_maximum,
            packet_bytes_max,
            alias_max,
            inflight: BTreeMap::new(),
            aliases: HashMap::new(),
            resuming: false,
        };
        let Ok(Some(Packet::Connect(connect))) =
            wire(&mut client, Packet::Connect(Box::new(connect)))
        else {
            // Refused by the decoder: the engine closes the socket before any shard hears of it.
            return;
        };
        self.clients.insert(conn, client);
        let now = self.now;
        self.shards[shard].connect(conn, *connect, now);
    }

    /// A packet from the client of `conn`, built from the script.
    fn client_packet(&mut self, conn: ConnId, input: &mut Input<'_>) {
        let limits = self.limits().clone();
        let v5 = self.clients[&conn].version.is_v5();
        let packet_id = |input: &mut Input<'_>| {
            PacketId::new(u16::from(input.byte() % 4) + 1).expect("not zero")
        };
        let kind = input.byte() % 12;
        if (5..=7).contains(&kind) {
            // A client acknowledges what it has received: the shard's output reaches it first.
            self.write(conn, true);
        }
        let client = self.clients.get_mut(&conn).expect("picked among the clients");
        if client.closed {
            return;
        }
        let packet = match kind {
            0..=2 => {
                let qos = input.pick(&QOS);
                let mut properties = Properties::default();
                let mut topic = ByteString::from(input.pick(&TOPICS));
                if v5 {
                    properties.message_expiry_interval = input.pick(&[None, None, Some(1)]);
                    if limits.topic_alias_max > 0 && input.byte() % 4 == 0 {
                        properties.topic_alias = Some(u16::from(input.byte() % 3) + 1);
                        if input.flag() {
                            topic = ByteString::new();
                        }
                    }
                }
                if self.shards[client.shard].is_paused(conn) {
                    // The engine reads no PUBLISH from a paused connection.
                    return;
                }
                Packet::Publish(Publish {
                    dup: input.flag(),
                    qos,
                    retain: input.flag(),
                    topic,
                    packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(input)),
                    properties,
                    payload: Bytes::from(vec![b'p'; input.pick(&[0, 1, 8, 40, 100])]),
                })
            }
            3 => {
                let mut filters = Vec::new();
                for _ in 0..=input.byte() % 2 {
                    let filter = input.pick(&FILTERS);
                    let shared = filter.starts_with("$share/");
                    filters.push(TopicFilterEntry {
                        filter: ByteString::from(filter),
                        options: SubscriptionOptions {
                            qos: input.pick(&QOS),
                            // A shared subscription with No Local is a protocol error.
                            no_local: v5 && !shared && input.flag(),
                            retain_as_published: v5 && input.flag(),
                            retain_handling: match (v5, input.byte() % 3) {
                                (false, _) | (true, 0) => RetainHandling::SendAtSubscribe,
                                (true, 1) => RetainHandling::SendIfNew,
                                (true, _) => RetainHandling::DoNotSend,
                            },
                        },
                    });
                }
                let mut properties = Properties::default();
                if v5 && input.flag() {
                    properties.subscription_identifiers = vec![u32::from(input.byte() % 3) + 1];
                }
                Packet::Subscribe(Subscribe { packet_id: packet_id(input), properties, filters })
            }
            4 => Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(input),
                properties: Properties::default(),
                filters: vec![ByteString::from(input.pick(&FILTERS))],
            }),
            5..=7 => {
                // Mostly the identifier of a message the client has in flight.
                let ids: Vec<u16> = client.inflight.keys().copied().collect();
                let id = match (ids.is_empty(), input.byte() % 4) {
                    (false, 0..=2) => PacketId::new(ids[input.below(ids.len())]).expect("not zero"),
                    _ => packet_id(input),
                };
                client.resuming = false;
                let reason = match (v5, input.byte() % 8) {
                    (true, 0) => ReasonCode::UNSPECIFIED_ERROR,
                    _ => ReasonCode::SUCCESS,
                };
                let ack = Ack { packet_id: id, reason, properties: Properties::default() };
                let entry = client.inflight.get(&id.get()).copied();
                match input.byte() % 3 {
                    0 => {
                        if let Some((QoS::AtLeastOnce, _)) = entry {
                            client.inflight.remove(&id.get());
                        }
                        Packet::PubAck(ack)
                    }
                    1 => {
                        match (entry, reason.is_error()) {
                            (Some((QoS::ExactlyOnce, false)), true) => {
                                client.inflight.remove(&id.get());
                            }
                            (Some((QoS::ExactlyOnce, false)), false) => {
                                client.inflight.insert(id.get(), (QoS::ExactlyOnce, true));
                            }
                            _ => {}
                        }
                        Packet::PubRec(ack)
                    }
                    _ => {
                        if let Some((QoS::ExactlyOnce, true)) = entry {
                            client.inflight.remove(&id.get());
                        }
                        Packet::PubComp(ack)
                    }
                }
            }
            8 => Packet::PubRel(Ack::success(packet_id(input))),
            9 => Packet::PingReq,
            10 => {
                let mut properties = Properties::default();
                if v5 {
                    properties.session_expiry_interval = input.pick(&[None, Some(0), Some(5)]);
                }
                let reason = match v5 {
                    true => input.pick(&[
                        ReasonCode::SUCCESS,
                        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                        ReasonCode::UNSPECIFIED_ERROR,
                    ]),
                    false => ReasonCode::SUCCESS,
                };
                Packet::Disconnect(Disconnect { reason, properties })
            }
            _ => Packet::Auth(Auth {
                reason: ReasonCode::RE_AUTHENTICATE,
                properties: Properties {
                    authentication_method: Some(ByteString::from("SCRAM-SHA-256")),
                    ..Properties::default()
                },
            }),
        };
        let shard = client.shard;
        let now = self.now;
        match wire(client, packet) {
            Ok(Some(packet)) => self.shards[shard].packet(conn, packet, now),
            Ok(None) => {}
            Err(error) => self.shards[shard].decode_error(conn, &error, now),
        }
    }

    /// Carries out the shards' effects, delivering `mesh_budget` mesh messages at most.
    fn settle(&mut self, mesh_budget: usize) {
        let mut delivered = 0;
        loop {
            let mut effects = Vec::new();
            let mut any = false;
            for index in 0..self.shards.len() {
                self.shards[index].drain_effects(&mut effects);
                for effect in effects.drain(..) {
                    any = true;
                    self.effect(index, effect);
                }
            }
            if !any {
                if delivered >= mesh_budget {
                    return;
                }
                let Some((from, to, msg)) = self.mesh.pop_front() else { return };
                delivered += 1;
                let now = self.now;
                self.shards[to.index()].mesh(from, msg, now);
            }
        }
    }

    fn effect(&mut self, index: usize, effect: Effect) {
        let from = ShardId(index as u16);
        match effect {
            // Written when the script flushes the connection.
            Effect::Flush(_) | Effect::Resume(_) | Effect::SessionEnded(_) => {}
            Effect::Close(conn) => {
                self.write(conn, false);
                self.shards[index].connection_closed(conn);
                if let Some(client) = self.clients.get_mut(&conn) {
                    client.closed = true;
                    client.done = true;
                }
            }
            Effect::Mesh(to, msg) => {
                assert_ne!(to, from, "a shard sent a mesh message to itself");
                assert!(to.index() < self.shards.len(), "mesh message to a shard that is not");
                self.mesh.push_back((from, to, msg));
            }
            Effect::Commit => {
                assert!(self.durable, "a shard without storage asked for a commit");
                self.commits.insert(index);
            }
            Effect::Forward(..)
            | Effect::RoutesChanged { .. }
            | Effect::FetchRetained { .. }
            | Effect::PullRetained { .. } => {
                panic!("a node without peers was asked to reach one: {effect:?}");
            }
        }
    }

    /// Writes a connection's output to its client, who decodes it; with `written`, tells the
    /// shard (which refills the window).
    fn write(&mut self, conn: ConnId, written: bool) {
        let Some(client) = self.clients.get_mut(&conn) else { return };
        let shard = client.shard;
        let out = self.shards[shard].take_output(conn);
        receive(conn, client, &out);
        if written && !client.closed {
            let now = self.now;
            self.shards[shard].output_written(conn, now);
        }
    }

    fn commit(&mut self, index: usize, ok: bool) {
        self.commits.remove(&index);
        if let Some(batch) = self.shards[index].take_commit_batch() {
            let now = self.now;
            self.shards[index].commit_finished(batch.tickets, ok, now);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for shard in &mut self.shards {
            if shard.next_deadline().is_some_and(|due| due <= now) || by > Duration::ZERO {
                shard.tick(now);
            }
        }
    }

    /// What must hold after every step.
    fn audit(&self) {
        for shard in &self.shards {
            shard.audit_sessions();
        }
        for (conn, client) in &self.clients {
            if client.closed {
                continue;
            }
            let shard = &self.shards[client.shard];
            assert!(
                shard.conns.contains_key(conn) || client.done,
                "{conn:?} is open for its client but unknown to its shard"
            );
        }
        if self.mesh.is_empty() {
            for shard in &self.shards {
                assert!(
                    shard.pending_subscribes.is_empty(),
                    "a SUBSCRIBE still waits with the mesh empty"
                );
            }
            // Every shard's replica of the node's routes is every other shard's local routes.
            for shard in &self.shards {
                let mut replica: HashMap<ShardId, BTreeSet<(String, Option<String>)>> =
                    HashMap::new();
                for (filter, key, ()) in shard.routes.iter() {
                    let route = (filter.to_owned(), key.group.as_deref().map(str::to_owned));
                    replica.entry(key.shard).or_default().insert(route);
                }
                for other in &self.shards {
                    if other.id == shard.id {
                        continue;
                    }
                    let local: BTreeSet<(String, Option<String>)> = other
                        .local_routes
                        .keys()
                        .map(|(f, g)| (f.to_string(), g.as_deref().map(str::to_owned)))
                        .collect();
                    let held = replica.remove(&other.id).unwrap_or_default();
                    assert_eq!(held, local, "{} holds stale routes of {}", shard.id, other.id);
                }
                assert!(replica.is_empty(), "{} holds routes of no shard: {replica:?}", shard.id);
            }
        }
    }
}

/// Encodes a client's packet and decodes it as the engine does: `Ok(None)` if the packet does
/// not encode (the client could not send it), the error if the engine's decoder refuses it.
fn wire(client: &mut Client, packet: Packet) -> Result<Option<Packet>, DecodeError> {
    let mut bytes = BytesMut::new();
    if packet.encode(client.version, &mut bytes).is_err() {
        return Ok(None);
    }
    match client.server_decoder.decode(&mut bytes)? {
        Decoded::Packet(decoded) => {
            assert!(bytes.is_empty(), "one packet decoded with bytes left over");
            Ok(Some(decoded))
        }
        Decoded::NeedMore(_) => panic!("a whole packet needs more bytes: {packet:?}"),
    }
}

/// A client decodes what its shard wrote and checks it against what it announced.
fn receive(conn: ConnId, client: &mut Client, out: &[u8]) {
    client.received.extend_from_slice(out);
    loop {
        let before = client.received.len();
        let packet = match client.decoder.decode(&mut client.received) {
            Ok(Decoded::Packet(packet)) => packet,
            Ok(Decoded::NeedMore(_)) => return,
            Err(error) => panic!("{conn:?} got bytes that do not decode: {error}"),
        };
        let size = before - client.received.len();
        assert!(!client.done, "{conn:?} got {packet:?} after its DISCONNECT");
        assert!(
            size <= client.packet_bytes_max as usize,
            "{conn:?} got a {size}-byte packet over its Maximum Packet Size {}",
            client.packet_bytes_max
        );
        if !client.connected {
            let Packet::ConnAck(connack) = &packet else {
                panic!("{conn:?} got {packet:?} before CONNACK");
            };
            client.connected = true;
            client.resuming = true;
            if connack.reason.is_error() {
                client.done = true;
            }
            continue;
        }
        let resent =
            matches!(&packet, Packet::Publish(p) if p.dup) || matches!(packet, Packet::PubRel(_));
        client.resuming &= resent;
        match packet {
            Packet::Publish(publish) => {
                if let Some(alias) = publish.properties.topic_alias {
                    assert!(
                        (1..=client.alias_max).contains(&alias),
                        "{conn:?} got topic alias {alias} over its maximum {}",
                        client.alias_max
                    );
                    if publish.topic.is_empty() {
                        assert!(client.aliases.contains_key(&alias), "unknown alias {alias}");
                    } else {
                        client.aliases.insert(alias, publish.topic.clone());
                    }
                } else {
                    assert!(!publish.topic.is_empty(), "{conn:?} got a PUBLISH without topic");
                }
                let Some(packet_id) = publish.packet_id else { continue };
                let id = packet_id.get();
                if !publish.dup {
                    assert!(
                        !client.inflight.contains_key(&id),
                        "{conn:?} got packet identifier {id} while it is in flight"
                    );
                }
                client.inflight.insert(id, (publish.qos, false));
                if !publish.dup {
                    assert!(
                        client.inflight.len() <= usize::from(client.receive_maximum),
                        "{conn:?} has {} messages in flight over its Receive Maximum {}",
                        client.inflight.len(),
                        client.receive_maximum
                    );
                }
            }
            Packet::PubRel(ack) => {
                if let Some(entry) = client.inflight.get_mut(&ack.packet_id.get()) {
                    assert_eq!(entry.0, QoS::ExactlyOnce, "PUBREL for a QoS 1 message");
                    entry.1 = true;
                } else if client.resuming {
                    // A resent PUBREL after a reconnection.
                    client.inflight.insert(ack.packet_id.get(), (QoS::ExactlyOnce, true));
                }
            }
            Packet::Disconnect(_) => client.done = true,
            Packet::ConnAck(_) => panic!("{conn:?} got a second CONNACK"),
            _ => {}
        }
    }
}

impl Shard {
    /// Sessions, connections, the subscriber index and the route counts agree.
    fn audit_sessions(&self) {
        let limits = &self.limits;
        let mut written: BTreeSet<(String, String)> = BTreeSet::new();
        for (client_id, session) in &self.sessions {
            assert_eq!(
                home_shard(client_id, self.shards),
                self.id,
                "{client_id} is not homed here"
            );
            if let Some(conn) = session.conn {
                let c = self.conns.get(&conn).expect("a session's connection is known");
                assert_eq!(&c.client_id, client_id, "{conn:?} belongs to another session");
            }
            let held = session.held();
            let bytes: usize = held.queue.iter().map(|d| d.message.cost_bytes()).sum();
            assert_eq!(bytes, held.queued_bytes, "{client_id}: queued bytes miscounted");
            let ids: HashSet<u16> = held.inflight.iter().map(|out| out.packet_id.get()).collect();
            assert_eq!(ids.len(), held.inflight.len(), "{client_id}: packet identifier twice");
            assert!(
                held.inflight.iter().all(|out| out.delivery.qos != QoS::AtMostOnce),
                "{client_id}: a QoS 0 message in flight"
            );
            if session.conn.is_none() {
                assert!(
                    held.queue.iter().all(|d| d.qos != QoS::AtMostOnce),
                    "{client_id}: QoS 0 messages kept for an offline session"
                );
            }
            assert!(
                held.incoming_qos2.len() <= usize::from(limits.inflight_max),
                "{client_id}: more inbound QoS 2 messages than the Receive Maximum"
            );
            assert!(
                held.subscriptions.len() <= limits.subscriptions_per_client_max,
                "{client_id}: over the subscription limit"
            );
            for filter in held.subscriptions.keys() {
                written.insert((client_id.to_string(), filter.to_string()));
            }
        }
        for (conn, c) in &self.conns {
            if c.closing || c.client_id.is_empty() {
                continue;
            }
            let session = self.sessions.get(&c.client_id);
            assert!(
                session.is_some_and(|s| s.conn == Some(*conn)),
                "open {conn:?} of {} is not its session's connection",
                c.client_id
            );
        }
        // The subscriber index holds exactly the sessions' subscriptions.
        let mut indexed: BTreeSet<(String, String)> = BTreeSet::new();
        let mut counts: HashMap<(String, Option<String>), usize> = HashMap::new();
        for (plain, key, _) in self.subscribers.iter() {
            let filter = match &key.group {
                Some(group) => format!("$share/{group}/{plain}"),
                None => plain.to_owned(),
            };
            indexed.insert((key.client_id.to_string(), filter));
            let group = key.group.as_deref().map(str::to_owned);
            *counts.entry((plain.to_owned(), group)).or_default() += 1;
        }
        assert_eq!(written, indexed, "the subscriber index differs from the sessions");
        let local: HashMap<(String, Option<String>), usize> = self
            .local_routes
            .iter()
            .map(|((f, g), n)| ((f.to_string(), g.as_deref().map(str::to_owned)), *n))
            .collect();
        assert_eq!(local, counts, "local route counts differ from the subscriber index");
        let retained_bytes: usize = self.retained.iter().map(|(_, m)| m.cost_bytes()).sum();
        assert_eq!(retained_bytes, self.retained_bytes, "retained bytes miscounted");
        for (topic, _) in self.retained.iter() {
            assert!(split_shared(topic).is_none(), "retained message on a shared filter");
        }
    }
}

/// A node of shards and a few clients, driven by a script: see the module docs.
pub fn check_session(data: &[u8]) {
    let mut input = Input { data };
    let mut node = Node::new(&mut input);
    while !input.is_empty() {
        match input.byte() % 16 {
            0 | 1 => node.connect(&mut input),
            2..=7 => {
                if let Some(conn) = node.pick_conn(&mut input) {
                    node.client_packet(conn, &mut input);
                }
            }
            8 | 9 => {
                if let Some(conn) = node.pick_conn(&mut input) {
                    node.write(conn, true);
                }
            }
            10 => {
                if let Some(conn) = node.pick_conn(&mut input) {
                    let shard = node.clients[&conn].shard;
                    let now = node.now;
                    node.shards[shard].connection_lost(conn, now);
                    let client = node.clients.get_mut(&conn).expect("picked");
                    client.closed = true;
                    client.done = true;
                }
            }
            11 => {
                let by = input.pick(&[0, 500, 1_000, 3_000, 10_000, 100_000]);
                node.advance(Duration::from_millis(by));
            }
            12 => {
                let index = input.below(node.shards.len());
                let ok = input.byte() % 4 != 0;
                node.commit(index, ok);
            }
            13 => {
                let count = input.below(4);
                node.settle(count);
            }
            14 => {
                let client_id = input.pick(&CLIENT_IDS);
                let discard = input.flag();
                let index = home_shard(client_id, node.shards.len() as u16).index();
                let session =
                    if discard { super::KickSession::Discard } else { super::KickSession::Keep };
                let now = node.now;
                node.shards[index].kick(client_id, session, now);
            }
            _ => {
                // Everything written so far reaches its client.
                let conns: Vec<ConnId> = node.clients.keys().copied().collect();
                for conn in conns {
                    node.write(conn, true);
                }
            }
        }
        node.settle(0);
        node.audit();
    }
    // The end: every mesh message arrives, every commit succeeds, every byte is written.
    for _ in 0..4 {
        node.settle(usize::MAX);
        for index in 0..node.shards.len() {
            node.commit(index, true);
        }
        node.settle(usize::MAX);
        let conns: Vec<ConnId> = node.clients.keys().copied().collect();
        for conn in conns {
            node.write(conn, true);
        }
        node.settle(usize::MAX);
        node.audit();
    }
    for shard in &node.shards {
        assert!(shard.commit_idle(), "{} has writes left after its commits", shard.id);
    }
}

// -------------------------------------------------------------------------------------------
// Routes: the replica of peer nodes' routes, and the local mesh's
// -------------------------------------------------------------------------------------------

const PEERS: [PeerNode; 2] = [PeerNode(1), PeerNode(2)];
const ROUTES: [(&str, Option<&str>); 5] =
    [("t/+", None), ("#", None), ("t/a", None), ("t/+", Some("g")), ("x", Some("h"))];
/// Restarts per peer node the script makes at most: the shard remembers the last
/// `DEAD_LEASES_PER_PEER_MAX` (8) gone incarnations, enough for frames delayed by a read timeout.
const RESTARTS_MAX: i64 = 6;

fn peer_route(index: usize) -> PeerRoute {
    let (filter, group) = ROUTES[index % ROUTES.len()];
    PeerRoute { filter: ByteString::from(filter), group: group.map(ByteString::from) }
}

/// One link connection of a peer shard, with the frames it sent that have not arrived yet.
#[derive(Debug)]
struct Link {
    node: PeerNode,
    origin: ShardId,
    epoch: LinkEpoch,
    unsent: VecDeque<RouteFrame>,
}

/// A peer node as it really is.
#[derive(Debug)]
struct Peer {
    lease: i64,
    shards: u16,
    /// Whether it still belongs to the cluster (its current lease is not gone).
    member: bool,
    /// Each of its shards' routes, and the link connection it is sending on with the deltas
    /// sent there so far.
    origins: Vec<(BTreeSet<PeerRoute>, usize, u64)>,
    /// Leases of its earlier incarnations the shard has not been told are gone.
    superseded: Vec<i64>,
}

/// The peer nodes, their link connections, and what the shard was told.
#[derive(Debug)]
struct Cluster {
    peers: Vec<Peer>,
    links: Vec<Link>,
    next_link: u64,
    /// When false, the script also sent frames no well-behaved peer sends: only the shard's
    /// own consistency is checked, not that it converges on the peers' routes.
    honest: bool,
    /// Routes the other shard of this node announced over the mesh.
    local: BTreeSet<(String, Option<String>)>,
}

impl Cluster {
    /// A new link connection for shard `origin` of peer `p`, starting with its snapshot.
    fn open(&mut self, p: usize, origin: usize) {
        self.next_link += 1;
        let peer = &mut self.peers[p];
        let epoch = LinkEpoch { lease: PeerLease(peer.lease), link: LinkNumber(self.next_link) };
        let routes = peer.origins[origin].0.iter().cloned().collect();
        let frame = RouteFrame::Snapshot { shards: peer.shards, routes };
        self.links.push(Link {
            node: PEERS[p],
            origin: ShardId(origin as u16),
            epoch,
            unsent: VecDeque::from([frame]),
        });
        peer.origins[origin].1 = self.links.len() - 1;
        peer.origins[origin].2 = 0;
    }

    /// Peer `p` starts (again) with a new lease and `shards` shards, each opening its link.
    fn start(&mut self, p: usize, shards: u16) {
        let peer = &mut self.peers[p];
        if peer.member {
            peer.superseded.push(peer.lease);
        }
        peer.lease += 1;
        peer.member = true;
        peer.shards = shards;
        peer.origins = (0..shards).map(|_| (BTreeSet::new(), 0, 0)).collect();
        for origin in 0..usize::from(shards) {
            self.open(p, origin);
        }
    }

    /// Shard `origin` of peer `p` adds or removes a route and sends the delta on its link.
    fn change(&mut self, p: usize, origin: usize, route: PeerRoute) {
        let peer = &mut self.peers[p];
        let (routes, link, version) = &mut peer.origins[origin];
        let (added, removed) = if routes.remove(&route) {
            (vec![], vec![route])
        } else {
            routes.insert(route.clone());
            (vec![route], vec![])
        };
        *version += 1;
        let frame = RouteFrame::Delta { version: *version, added, removed };
        self.links[*link].unsent.push_back(frame);
    }
}

/// A shard's replica of the peers' and the node's routes, driven by a script: see the module
/// docs.
pub fn check_routes(data: &[u8]) {
    let mut input = Input { data };
    let mut shard = Shard::new(ShardId(0), 2, Limits::default());
    shard.set_peers(PEERS.to_vec());
    let now = Instant::now();
    let mut cluster = Cluster {
        peers: PEERS
            .iter()
            .map(|_| Peer {
                lease: 0,
                shards: 0,
                member: false,
                origins: Vec::new(),
                superseded: Vec::new(),
            })
            .collect(),
        links: Vec::new(),
        next_link: 1_790_000_000_000_000_000,
        honest: true,
        local: BTreeSet::new(),
    };
    for p in 0..PEERS.len() {
        let shards = u16::from(input.byte() % 3) + 1;
        cluster.start(p, shards);
    }
    let mut next_token = 0;
    while !input.is_empty() {
        match input.byte() % 12 {
            0..=2 => {
                // The next frame of one link connection arrives, read here or on another shard.
                let open: Vec<usize> = (0..cluster.links.len())
                    .filter(|&i| !cluster.links[i].unsent.is_empty())
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let link = &mut cluster.links[open[input.below(open.len())]];
                let frame = link.unsent.pop_front().expect("not empty");
                deliver_frame(&mut shard, link.node, link.origin, link.epoch, frame, &mut input);
            }
            3 | 4 => {
                let p = input.below(PEERS.len());
                let peer = &cluster.peers[p];
                if !peer.member {
                    continue;
                }
                let origin = input.below(usize::from(peer.shards));
                let route = peer_route(input.below(ROUTES.len()));
                cluster.change(p, origin, route);
            }
            5 => {
                // A link connection breaks and its peer shard opens another.
                let p = input.below(PEERS.len());
                let peer = &cluster.peers[p];
                if peer.member {
                    let origin = input.below(usize::from(peer.shards));
                    cluster.open(p, origin);
                }
            }
            6 => {
                let p = input.below(PEERS.len());
                let shards = u16::from(input.byte() % 3) + 1;
                if cluster.peers[p].lease <= RESTARTS_MAX {
                    cluster.start(p, shards);
                }
            }
            7 => {
                // The membership says an incarnation is gone: an earlier one, or the current one
                // (the node left).
                let p = input.below(PEERS.len());
                let peer = &mut cluster.peers[p];
                let lease = if peer.superseded.is_empty() || input.flag() {
                    if !peer.member {
                        continue;
                    }
                    peer.member = false;
                    peer.lease
                } else {
                    peer.superseded.remove(input.below(peer.superseded.len()))
                };
                tell_gone(&mut shard, PEERS[p], PeerLease(lease), &mut input);
            }
            8 => {
                // The other shard of this node gets its first subscriber for a route, or loses
                // its last.
                let route = peer_route(input.below(ROUTES.len()));
                let key = (route.filter.to_string(), route.group.as_deref().map(str::to_owned));
                let msg = if cluster.local.remove(&key) {
                    ShardMsg::RouteRemove { filter: route.filter, group: route.group }
                } else {
                    cluster.local.insert(key);
                    ShardMsg::RouteAdd { filter: route.filter, group: route.group }
                };
                shard.mesh(ShardId(1), msg, now);
            }
            9 => {
                next_token += 1;
                let token = SyncToken(next_token);
                let filters = vec![peer_route(input.below(ROUTES.len())).filter];
                shard.mesh(ShardId(1), ShardMsg::SubscribeSync { token, filters }, now);
                let mut effects = Vec::new();
                shard.drain_effects(&mut effects);
                let answered = effects.iter().any(|effect| {
                    matches!(effect, Effect::Mesh(ShardId(1), ShardMsg::SubscribeReady { token: t, .. }) if *t == token)
                });
                assert!(answered, "SubscribeSync without its SubscribeReady: {effects:?}");
            }
            10 => {
                // A frame no well-behaved peer sends: any connection, version, shard count.
                cluster.honest = false;
                let node = PEERS[input.below(PEERS.len())];
                let origin = ShardId(u16::from(input.byte() % 4));
                let epoch = LinkEpoch {
                    lease: PeerLease(i64::from(input.byte() % 8)),
                    link: LinkNumber(cluster.next_link - u64::from(input.byte() % 8)),
                };
                let frame = if input.flag() {
                    let routes = (0..input.below(3)).map(|_| peer_route(input.below(8))).collect();
                    RouteFrame::Snapshot { shards: u16::from(input.byte() % 4), routes }
                } else {
                    let version = u64::from(input.byte() % 4);
                    let added = (0..input.below(3)).map(|_| peer_route(input.below(8))).collect();
                    let removed = (0..input.below(3)).map(|_| peer_route(input.below(8))).collect();
                    RouteFrame::Delta { version, added, removed }
                };
                deliver_frame(&mut shard, node, origin, epoch, frame, &mut input);
            }
            _ => {
                cluster.honest = false;
                let node = PEERS[input.below(PEERS.len())];
                let lease = PeerLease(i64::from(input.byte() % 8));
                tell_gone(&mut shard, node, lease, &mut input);
            }
        }
        shard.audit_peer_routes();
        audit_local_routes(&shard, &cluster.local);
    }

    // The end: the membership catches up and every frame arrives, link by link.
    for (peer, node) in cluster.peers.iter_mut().zip(PEERS) {
        for lease in std::mem::take(&mut peer.superseded) {
            tell_gone(&mut shard, node, PeerLease(lease), &mut input);
        }
    }
    for link in &mut cluster.links {
        while let Some(frame) = link.unsent.pop_front() {
            deliver_frame(&mut shard, link.node, link.origin, link.epoch, frame, &mut input);
        }
    }
    shard.audit_peer_routes();
    if !cluster.honest {
        return;
    }
    let mut expected: BTreeMap<(PeerNode, ShardId), BTreeSet<PeerRoute>> = BTreeMap::new();
    for (p, peer) in cluster.peers.iter().enumerate() {
        if !peer.member {
            continue;
        }
        for (origin, (routes, _, _)) in peer.origins.iter().enumerate() {
            if !routes.is_empty() {
                expected.insert((PEERS[p], ShardId(origin as u16)), routes.clone());
            }
        }
    }
    let held = shard.peer_routes_held();
    assert_eq!(held, expected, "the shard did not converge on the peers' current routes");
}

/// A route frame arrives: read from the link by this shard, or passed on by the shard that read
/// it.
fn deliver_frame(
    shard: &mut Shard,
    node: PeerNode,
    origin: ShardId,
    epoch: LinkEpoch,
    frame: RouteFrame,
    input: &mut Input<'_>,
) {
    if input.flag() {
        shard.peer_routes_from_link(node, origin, epoch, frame.clone());
        let mut effects = Vec::new();
        shard.drain_effects(&mut effects);
        assert_eq!(effects.len(), 1, "a frame read here goes to the one other shard");
        let Effect::Mesh(ShardId(1), ShardMsg::PeerRoutes { frame: passed, .. }) = &effects[0]
        else {
            panic!("a frame read here is not passed on: {effects:?}");
        };
        assert_eq!(passed, &frame);
    } else {
        let msg = ShardMsg::PeerRoutes { node, origin, epoch, frame };
        shard.mesh(ShardId(1), msg, Instant::now());
    }
}

fn tell_gone(shard: &mut Shard, node: PeerNode, lease: PeerLease, input: &mut Input<'_>) {
    if input.flag() {
        shard.peer_gone(node, lease);
    } else {
        shard.mesh(ShardId(1), ShardMsg::PeerGone { node, lease }, Instant::now());
    }
    assert!(shard.is_peer_lease_gone(node, lease));
}

/// The replica of the other shard's routes is what it announced.
fn audit_local_routes(shard: &Shard, local: &BTreeSet<(String, Option<String>)>) {
    let held: BTreeSet<(String, Option<String>)> = shard
        .routes
        .iter()
        .map(|(filter, key, ())| {
            assert_eq!(key.shard, ShardId(1), "a route of a shard that announced none");
            (filter.to_owned(), key.group.as_deref().map(str::to_owned))
        })
        .collect();
    assert_eq!(&held, local, "the route replica differs from the routes announced");
}

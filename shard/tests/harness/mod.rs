//! A simulated node for testing shards at their boundary: several shards driven by packets and
//! a fake clock, the mesh carried in order between them, clients' bytes decoded, and (for
//! durable nodes) group commits run against real stores, or held back to stand for a crash.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use shardmq_codec::{
    ByteString, Connect, Decoded, Decoder, Packet, PacketId, Properties, ProtocolVersion, Publish,
    QoS, Subscribe, SubscriptionOptions, TopicFilterEntry,
};
use shardmq_shard::persist::{decode_snapshot, rehome, WallClock, UPGRADES};
use shardmq_shard::{
    home_shard, ClientEvents, ConnId, Effect, Forward, Limits, PeerNode, PeerRoute, Shard, ShardId,
    ShardMsg,
};
use shardmq_storage::faults::Faults;
use shardmq_storage::{shard_file, Durability, ShardStore};

/// A node of shards plus the clients' view of their connections.
pub struct Node {
    pub shards: Vec<Shard>,
    pub now: Instant,
    pub mesh: VecDeque<(ShardId, ShardId, ShardMsg)>,
    /// Which shard each connection lives on, and its decoder (client side).
    pub conns: HashMap<ConnId, (ShardId, Decoder)>,
    pub received: HashMap<ConnId, Vec<Packet>>,
    pub closed: Vec<ConnId>,
    /// Connections the shards resumed after pausing them (`Effect::Resume`).
    pub resumed: Vec<ConnId>,
    /// What the shards sent to peer nodes (`Effect::Forward`), for a test to carry over.
    pub forwarded: Vec<(ShardId, PeerNode, Forward)>,
    /// Route changes the shards announced to peer nodes (`Effect::RoutesChanged`).
    pub route_changes: Vec<(ShardId, Vec<PeerRoute>, Vec<PeerRoute>)>,
    /// Sessions that ended for good (`Effect::SessionEnded`).
    pub ended: Vec<ByteString>,
    /// Large retained messages a subscribe asked to fetch from peers: (shard, token, topic,
    /// holders).
    pub fetches: Vec<(ShardId, u64, ByteString, Vec<PeerNode>)>,
    /// Large retained messages a shard became a holder of and asked to pull: (shard, topic,
    /// holders).
    pub pulls: Vec<(ShardId, ByteString, Vec<PeerNode>)>,
    pub next_conn: u64,
    /// One store per shard, for durable nodes; `None` while a failed store awaits reopening.
    pub stores: Vec<Option<ShardStore>>,
    store_paths: Vec<PathBuf>,
    /// The disk the stores write through: fill it up (`fail_after`) and free it (`recover`).
    pub faults: Arc<Faults>,
    /// While true, group commits wait (as if the disk were slow); dropping the node loses them.
    pub hold_commits: bool,
    /// Connections whose client stopped reading: their output is not taken on a flush.
    pub stopped: std::collections::HashSet<ConnId>,
    pending_commits: Vec<ShardId>,
}

impl Node {
    pub fn new(shards: u16) -> Node {
        Node::with_limits(shards, Limits::default())
    }

    pub fn with_limits(shards: u16, limits: Limits) -> Node {
        Node {
            shards: (0..shards).map(|i| Shard::new(ShardId(i), shards, limits.clone())).collect(),
            now: Instant::now(),
            mesh: VecDeque::new(),
            conns: HashMap::new(),
            received: HashMap::new(),
            closed: Vec::new(),
            resumed: Vec::new(),
            forwarded: Vec::new(),
            route_changes: Vec::new(),
            ended: Vec::new(),
            fetches: Vec::new(),
            pulls: Vec::new(),
            next_conn: 1,
            stores: Vec::new(),
            store_paths: Vec::new(),
            faults: Faults::new(),
            hold_commits: false,
            stopped: Default::default(),
            pending_commits: Vec::new(),
        }
    }

    /// A node whose shards store their state in `dir` (one file per shard), restored from what
    /// is there, re-homed if the shard count changed; the clock says the wall time is `unix_ms`.
    pub fn durable(dir: &Path, shards: u16, unix_ms: u64) -> Node {
        let mut node = Node::new(shards);
        let clock = WallClock::fixed(node.now, unix_ms);
        node.shards = (0..shards)
            .map(|i| Shard::with_storage(ShardId(i), shards, Limits::default(), clock))
            .collect();
        let mut files = Vec::new();
        for (index, path) in shardmq_storage::shard_files(dir).expect("data dir") {
            let store =
                ShardStore::open(&path, Durability::Immediate, UPGRADES).expect("store opens");
            let restored = decode_snapshot(store.load().expect("loads"), &clock).expect("decodes");
            files.push((index, restored));
        }
        let plan = rehome(files, shards);
        for i in 0..shards {
            let path = shard_file(dir, i);
            let store = ShardStore::open_faulty(
                &path,
                Durability::Immediate,
                UPGRADES,
                node.faults.clone(),
            )
            .expect("store opens");
            node.stores.push(Some(store));
            node.store_paths.push(path);
        }
        let now = node.now;
        for (index, shard_plan) in plan.shards.into_iter().enumerate() {
            let shard = &mut node.shards[index];
            shard.restore(shard_plan.own, false, now);
            shard.restore(shard_plan.moved, true, now);
            shard.forget_moved(&shard_plan.forget_sessions, &shard_plan.forget_retained);
        }
        node.run();
        for index in plan.obsolete_files {
            std::fs::remove_file(shard_file(dir, index)).expect("obsolete file removed");
        }
        node
    }

    /// Runs the held group commits.
    pub fn flush_commits(&mut self) {
        self.hold_commits = false;
        let pending = std::mem::take(&mut self.pending_commits);
        for shard in pending {
            self.commit(shard);
        }
        self.run();
    }

    /// Runs a shard's group commits as the engine's committer does, reopening a store after a
    /// failed commit (redb refuses to write through it again).
    fn commit(&mut self, shard: ShardId) {
        let index = shard.index();
        while let Some(batch) = self.shards[index].take_commit_batch() {
            if self.stores[index].is_none() {
                self.stores[index] = ShardStore::open_faulty(
                    &self.store_paths[index],
                    Durability::Immediate,
                    UPGRADES,
                    self.faults.clone(),
                )
                .ok();
            }
            let ok =
                self.stores[index].as_ref().is_some_and(|store| store.commit(&batch.ops).is_ok());
            if !ok {
                self.stores[index] = None;
            }
            let now = self.now;
            self.shards[index].commit_finished(batch.tickets, ok, now);
        }
    }

    pub fn shard_count(&self) -> u16 {
        self.shards.len() as u16
    }

    /// A client id homed on `shard`.
    pub fn id_on(&self, prefix: &str, shard: u16) -> String {
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .find(|id| home_shard(id, self.shard_count()) == ShardId(shard))
            .expect("some id lands on every shard")
    }

    /// Client events on every shard from now on, published as node `name`, with the wall clock
    /// reading `unix_ms` at the node's current time.
    pub fn enable_client_events(&mut self, name: &str, unix_ms: u64) {
        let clock = WallClock::fixed(self.now, unix_ms);
        for shard in &mut self.shards {
            shard.set_client_events(Some(ClientEvents::new(name, clock)));
        }
    }

    pub fn connect_with(&mut self, connect: Connect) -> ConnId {
        self.connect_from(connect, None)
    }

    /// Connects a client the engine saw come from `peer`.
    pub fn connect_from(&mut self, connect: Connect, peer: Option<IpAddr>) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let shard = if connect.client_id.is_empty() {
            ShardId(0)
        } else {
            home_shard(&connect.client_id, self.shard_count())
        };
        self.conns.insert(conn, (shard, Decoder::client(connect.protocol, u32::MAX)));
        let now = self.now;
        self.shards[shard.index()].connect_from(conn, connect, peer, now);
        self.run();
        conn
    }

    pub fn connect(
        &mut self,
        client_id: &str,
        version: ProtocolVersion,
        clean_start: bool,
    ) -> ConnId {
        self.connect_with(connect(client_id, version, clean_start))
    }

    pub fn send(&mut self, conn: ConnId, packet: Packet) {
        let shard = self.conns[&conn].0;
        let now = self.now;
        self.shards[shard.index()].packet(conn, packet, now);
        self.run();
    }

    pub fn lose(&mut self, conn: ConnId) {
        let shard = self.conns[&conn].0;
        let now = self.now;
        self.shards[shard.index()].connection_lost(conn, now);
        self.run();
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for shard in &mut self.shards {
            shard.tick(now);
        }
        self.run();
    }

    /// Carries out effects and mesh messages until the node is quiet.
    pub fn run(&mut self) {
        let now = self.now;
        loop {
            let mut effects = Vec::new();
            for shard in &mut self.shards {
                let from = shard.id();
                let mut own = Vec::new();
                shard.drain_effects(&mut own);
                effects.extend(own.into_iter().map(|e| (from, e)));
            }
            if effects.is_empty() && self.mesh.is_empty() {
                return;
            }
            for (from, effect) in effects {
                match effect {
                    Effect::Flush(conn) if self.stopped.contains(&conn) => {}
                    Effect::Flush(conn) => self.collect(from, conn, now),
                    Effect::Close(conn) => {
                        self.collect(from, conn, now);
                        self.shards[from.index()].connection_closed(conn);
                        self.closed.push(conn);
                    }
                    Effect::Mesh(to, msg) => self.mesh.push_back((from, to, msg)),
                    Effect::Commit if self.hold_commits => self.pending_commits.push(from),
                    Effect::Commit => self.commit(from),
                    Effect::Resume(conn) => self.resumed.push(conn),
                    Effect::Forward(peer, forward) => self.forwarded.push((from, peer, forward)),
                    Effect::RoutesChanged { added, removed } => {
                        self.route_changes.push((from, added, removed))
                    }
                    Effect::SessionEnded(client_id) => self.ended.push(client_id),
                    Effect::FetchRetained { token, topic, holders } => {
                        self.fetches.push((from, token, topic, holders))
                    }
                    Effect::PullRetained { topic, holders } => {
                        self.pulls.push((from, topic, holders))
                    }
                }
            }
            if let Some((from, to, msg)) = self.mesh.pop_front() {
                self.shards[to.index()].mesh(from, msg, now);
            }
        }
    }

    pub fn collect(&mut self, shard: ShardId, conn: ConnId, now: Instant) {
        let mut bytes = self.shards[shard.index()].take_output(conn);
        let Some((_, decoder)) = self.conns.get_mut(&conn) else { return };
        while let Decoded::Packet(packet) =
            decoder.decode(&mut bytes).expect("the broker writes valid packets")
        {
            self.received.entry(conn).or_default().push(packet);
        }
        assert!(bytes.is_empty());
        self.shards[shard.index()].output_written(conn, now);
    }

    /// Everything the client of `conn` received since the last call.
    pub fn take(&mut self, conn: ConnId) -> Vec<Packet> {
        self.received.remove(&conn).unwrap_or_default()
    }

    pub fn publishes(&mut self, conn: ConnId) -> Vec<Publish> {
        self.take(conn)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect()
    }

    pub fn subscribe(&mut self, conn: ConnId, filter: &str, qos: QoS) {
        self.subscribe_with(conn, filter, SubscriptionOptions::with_qos(qos), None);
    }

    pub fn subscribe_with(
        &mut self,
        conn: ConnId,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) {
        let properties = Properties {
            subscription_identifiers: identifier.into_iter().collect(),
            ..Properties::default()
        };
        self.send(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties,
                filters: vec![TopicFilterEntry { filter: ByteString::from(filter), options }],
            }),
        );
        // Whatever came before (CONNACK) is dropped; the SUBACK must be there and granted.
        let packets: Vec<Packet> = self.take(conn);
        let at = packets
            .iter()
            .position(|p| matches!(p, Packet::SubAck(_)))
            .unwrap_or_else(|| panic!("no SUBACK: {packets:?}"));
        assert!(
            matches!(&packets[at], Packet::SubAck(ack) if !ack.reasons[0].is_error()),
            "refused: {packets:?}"
        );
        // Retained messages after the SUBACK stay for the test to read.
        let rest: Vec<Packet> = packets.into_iter().skip(at + 1).collect();
        if !rest.is_empty() {
            self.received.insert(conn, rest);
        }
    }

    pub fn publish(&mut self, conn: ConnId, topic: &str, payload: &str, qos: QoS, retain: bool) {
        let packet_id = (qos != QoS::AtMostOnce).then(|| pid(7));
        self.send(conn, Packet::Publish(publish(topic, payload, qos, retain, packet_id)));
    }
}

pub fn pid(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero")
}

pub fn connect(client_id: &str, version: ProtocolVersion, clean_start: bool) -> Connect {
    let properties = if version.is_v5() && !clean_start {
        Properties { session_expiry_interval: Some(3600), ..Properties::default() }
    } else {
        Properties::default()
    };
    Connect {
        protocol: version,
        clean_start,
        keep_alive_secs: 60,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties,
    }
}

pub fn publish(
    topic: &str,
    payload: &str,
    qos: QoS,
    retain: bool,
    packet_id: Option<PacketId>,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

pub fn payloads(publishes: &[Publish]) -> Vec<&str> {
    publishes.iter().map(|p| std::str::from_utf8(&p.payload).expect("utf-8")).collect()
}

pub fn connack(packets: &[Packet]) -> &shardmq_codec::ConnAck {
    match packets.first() {
        Some(Packet::ConnAck(connack)) => connack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

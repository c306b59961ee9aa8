//! The shard's side of durability: which changes become store operations, the group-commit
//! queue the engine's committer drains, acknowledgements held until their writes are durable (on
//! this shard and on every shard the message went to), and recovery from a store snapshot.
//!
//! **Invariant:** a PUBACK or PUBREC for a message that had to be stored is sent only after every
//! commit holding it (here and on the shards it was routed to) reported success.

use std::collections::HashMap;
use std::time::Instant;

use shardmq_codec::{Ack, ByteString, Packet, PacketId, Properties, QoS, ReasonCode};
use shardmq_storage::Op;

use super::{Effect, Forward, Shard, Timer, WillRule};
use crate::ids::{ConnId, PeerNode, ShardId};
use crate::mesh::ShardMsg;
use crate::message::{Delivery, SharedMessage};
use crate::persist::{
    encode_message_record, encode_retained_mark, encode_session, encode_stored_message,
    encode_will, MessageRecord, MessageStage, Restored, RetainedMark, SessionRecord, WallClock,
};
use crate::session::{Outgoing, OutgoingStage, Session};

/// What a commit's success or failure must release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticket {
    /// An acknowledgement held on this shard.
    Ack(u64),
    /// Another shard's acknowledgement waits for this shard's write (which a subscriber here
    /// took, or not: `matched`).
    Receipt { origin: ShardId, token: u64, matched: bool },
}

/// One group commit: the operations queued since the last one, and what they release.
#[derive(Debug, Default)]
pub struct CommitBatch {
    pub ops: Vec<Op>,
    pub tickets: Vec<Ticket>,
}

/// The durability state of a shard that stores its sessions.
#[derive(Debug)]
pub(super) struct Durable {
    pub(super) clock: WallClock,
    queued: CommitBatch,
    committing: bool,
    /// A commit failed: the store may lack session rows the shard believes are there, and a
    /// message row needs its session row. The next commit writes every stored session first.
    resync: bool,
}

impl Durable {
    pub(super) fn new(clock: WallClock) -> Durable {
        Durable { clock, queued: CommitBatch::default(), committing: false, resync: false }
    }
}

/// The PUBACK (QoS 1) or PUBREC (QoS 2) an inbound message gets.
#[derive(Debug, Clone, Copy)]
pub(super) struct InboundAck {
    pub(super) conn: ConnId,
    pub(super) packet_id: PacketId,
    pub(super) qos: QoS,
    pub(super) reason: ReasonCode,
    /// Only peer nodes' routes matched the message: unless a receipt says a subscriber there
    /// took it, the v5 publisher is told "no matching subscribers" (0x10), not success.
    pub(super) peers_only: bool,
}

/// Who waits for an inbound message to be stored: its publisher on this shard, or the shard of
/// a peer node that forwarded it (and holds its own publisher's acknowledgement until then).
#[derive(Debug, Clone, Copy)]
pub(super) enum AckTo {
    Client(InboundAck),
    Peer { node: PeerNode, shard: ShardId, token: u64, matched: bool },
}

/// An acknowledgement waiting for commits.
#[derive(Debug)]
pub(super) struct HeldAck {
    ack: AckTo,
    waiting: usize,
    failed: bool,
    /// The publisher of a QoS 2 message from a client, whose packet id must be released if
    /// storing fails (its connection may be gone by then).
    qos2_client: Option<ByteString>,
    /// A receipt said a subscriber took it.
    matched: bool,
}

impl Shard {
    /// Whether changes to this client's session are stored.
    pub(super) fn stores(&self, client_id: &ByteString) -> bool {
        self.durable.is_some() && self.sessions.get(client_id).is_some_and(|s| s.expiry_secs > 0)
    }

    fn queue_op(&mut self, op: Op) {
        self.queue(|batch| batch.ops.push(op));
    }

    fn queue_ticket(&mut self, ticket: Ticket) {
        self.queue(|batch| batch.tickets.push(ticket));
    }

    /// Adds to the next commit; the first addition while no commit runs asks for one.
    fn queue(&mut self, add: impl FnOnce(&mut CommitBatch)) {
        let Some(durable) = &mut self.durable else { return };
        let first = durable.queued.ops.is_empty() && durable.queued.tickets.is_empty();
        add(&mut durable.queued);
        if first && !durable.committing {
            self.effects.push(Effect::Commit);
        }
    }

    /// How many operations are queued: a caller compares before and after an event to know
    /// whether it wrote anything.
    pub(super) fn queued_ops(&self) -> usize {
        self.durable.as_ref().map_or(0, |d| d.queued.ops.len())
    }

    /// Writes the session's record (expiry, subscriptions, disconnection time).
    pub(super) fn persist_session(&mut self, client_id: &ByteString) {
        if !self.stores(client_id) {
            return;
        }
        let (Some(session), Some(durable)) = (self.sessions.get(client_id), &self.durable) else {
            return;
        };
        let op = session_op(client_id, session, &durable.clock);
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.stored = true;
        }
        self.queue_op(op);
    }

    /// Removes a stored session with everything stored under it.
    pub(super) fn unpersist_session(&mut self, client_id: &ByteString) {
        if self.durable.is_some() {
            if let Some(session) = self.sessions.get_mut(client_id) {
                session.stored = false;
            }
            self.queue_op(Op::DeleteSession { client_id: client_id.to_string() });
        }
    }

    /// Stores (or overwrites) one outbound message of a stored session, giving it a key first.
    pub(super) fn persist_delivery(
        &mut self,
        client_id: &ByteString,
        delivery: &mut Delivery,
        stage: MessageStage,
        packet_id: u16,
    ) {
        if delivery.qos == QoS::AtMostOnce || !self.stores(client_id) {
            return;
        }
        if delivery.seq == 0 {
            let Some(session) = self.sessions.get_mut(client_id) else { return };
            delivery.seq = session.take_seq();
        }
        let Some(durable) = &self.durable else { return };
        let record = MessageRecord { stage, packet_id, delivery: delivery.clone() };
        let op = Op::PutMessage {
            client_id: client_id.to_string(),
            seq: delivery.seq,
            record: encode_message_record(&record, &durable.clock),
        };
        self.queue_op(op);
    }

    /// Forgets a stored outbound message (completed, dropped or expired).
    pub(super) fn unpersist_delivery(&mut self, client_id: &ByteString, delivery: &Delivery) {
        if delivery.seq != 0 && self.durable.is_some() {
            self.queue_op(Op::DeleteMessage {
                client_id: client_id.to_string(),
                seq: delivery.seq,
            });
        }
    }

    pub(super) fn persist_incoming_qos2(
        &mut self,
        client_id: &ByteString,
        packet_id: u16,
        held: bool,
    ) {
        if !self.stores(client_id) {
            return;
        }
        let client_id = client_id.to_string();
        self.queue_op(if held {
            Op::PutIncomingQos2 { client_id, packet_id }
        } else {
            Op::DeleteIncomingQos2 { client_id, packet_id }
        });
    }

    pub(super) fn persist_retained(&mut self, message: &SharedMessage, stored: bool) {
        let Some(durable) = &self.durable else { return };
        let topic = message.topic.to_string();
        let op = if stored {
            Op::PutRetained { topic, record: encode_stored_message(message, &durable.clock) }
        } else {
            Op::DeleteRetained { topic }
        };
        self.queue_op(op);
    }

    /// Writes (`Some`) or deletes a retained topic's version mark.
    pub(super) fn persist_retained_mark(&mut self, topic: &str, mark: Option<RetainedMark>) {
        if self.durable.is_none() {
            return;
        }
        let topic = topic.to_string();
        self.queue_op(match mark {
            Some(mark) => Op::PutRetainedMark { topic, record: encode_retained_mark(mark) },
            None => Op::DeleteRetainedMark { topic },
        });
    }

    pub(super) fn persist_will(
        &mut self,
        client_id: &ByteString,
        will: Option<(&SharedMessage, Instant)>,
    ) {
        if !self.stores(client_id) {
            return;
        }
        let Some(durable) = &self.durable else { return };
        let client_id = client_id.to_string();
        let op = match will {
            Some((message, due)) => {
                Op::PutWill { client_id, record: encode_will(message, due, &durable.clock) }
            }
            None => Op::DeleteWill { client_id },
        };
        self.queue_op(op);
    }

    // ---------------------------------------------------------------------------------------
    // Held acknowledgements
    // ---------------------------------------------------------------------------------------

    /// A new token for an acknowledgement that may have to wait.
    pub(super) fn new_ack_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Sends the PUBACK/PUBREC for an inbound message now, or holds it until `local` (this
    /// shard's queued writes) and `remote` receipts are durable.
    pub(super) fn acknowledge(
        &mut self,
        ack: AckTo,
        token: u64,
        local: bool,
        remote: usize,
        now: Instant,
    ) {
        let waiting = remote + usize::from(local);
        if waiting == 0 {
            return self.answer(ack, true, false, now);
        }
        let mut qos2_client = None;
        if let AckTo::Client(ack) = ack {
            if ack.qos == QoS::AtLeastOnce {
                *self.held_qos1.entry(ack.conn).or_insert(0) += 1;
            }
            if ack.qos == QoS::ExactlyOnce {
                qos2_client = self.conns.get(&ack.conn).map(|c| c.client_id.clone());
                if let Some(client_id) = &qos2_client {
                    self.held_qos2.insert((client_id.clone(), ack.packet_id.get()), token);
                }
            }
        }
        let held = HeldAck { ack, waiting, failed: false, qos2_client, matched: false };
        self.held_acks.insert(token, held);
        if local {
            self.queue_ticket(Ticket::Ack(token));
        }
    }

    /// A QoS 2 PUBLISH resent (before PUBREL) by `client_id` on `conn`: if the PUBREC of its
    /// first copy is still held for its commit, it now goes to `conn` once the commit ends
    /// (the first copy's connection may be gone: a client that reconnects resends), and true;
    /// false when nothing is held (the first PUBREC may be sent again at once).
    pub(super) fn hold_qos2_resend(
        &mut self,
        client_id: &ByteString,
        packet_id: PacketId,
        conn: ConnId,
    ) -> bool {
        let Some(&token) = self.held_qos2.get(&(client_id.clone(), packet_id.get())) else {
            return false;
        };
        let Some(HeldAck { ack: AckTo::Client(ack), .. }) = self.held_acks.get_mut(&token) else {
            return false;
        };
        ack.conn = conn;
        true
    }

    fn send_ack(&mut self, ack: InboundAck) {
        let InboundAck { conn, packet_id, qos, reason, .. } = ack;
        let ack = Ack { packet_id, reason, properties: Properties::default() };
        let packet =
            if qos == QoS::ExactlyOnce { Packet::PubRec(ack) } else { Packet::PubAck(ack) };
        self.send(conn, &packet);
    }

    fn release(&mut self, token: u64, ok: bool, matched: bool, now: Instant) {
        let Some(held) = self.held_acks.get_mut(&token) else { return };
        held.failed |= !ok;
        held.matched |= matched;
        held.waiting -= 1;
        if held.waiting > 0 {
            return;
        }
        let Some(HeldAck { mut ack, failed, qos2_client, matched, .. }) =
            self.held_acks.remove(&token)
        else {
            return;
        };
        if let AckTo::Client(client) = &mut ack {
            if client.peers_only && !matched && client.reason == ReasonCode::SUCCESS {
                client.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
            }
        }
        if let AckTo::Client(InboundAck { conn, qos: QoS::AtLeastOnce, .. }) = ack {
            if let Some(held) = self.held_qos1.get_mut(&conn) {
                *held -= 1;
                if *held == 0 {
                    self.held_qos1.remove(&conn);
                }
            }
        }
        // Whether the client's packet id still belongs to this message: a new session of the
        // client (clean start) may have taken the same id for another message meanwhile.
        let owned = match (&qos2_client, &ack) {
            (Some(client_id), AckTo::Client(ack)) => {
                let key = (client_id.clone(), ack.packet_id.get());
                let owned = self.held_qos2.get(&key) == Some(&token);
                if owned {
                    self.held_qos2.remove(&key);
                }
                owned
            }
            _ => false,
        };
        if let (true, true, Some(client_id), AckTo::Client(ack)) = (failed, owned, qos2_client, ack)
        {
            // Not stored, so not received: forget the packet id, or the client's next PUBLISH
            // with it (a new message after a v5 refusal, or the resend after a 3.1.1 close)
            // would count as a duplicate and be acknowledged without being stored.
            let released = self
                .sessions
                .get_mut(&client_id)
                .and_then(Session::held_if_any)
                .is_some_and(|held| held.incoming_qos2.remove(&ack.packet_id.get()));
            if released {
                self.persist_incoming_qos2(&client_id, ack.packet_id.get(), false);
            }
        }
        self.answer(ack, !failed, matched, now);
    }

    /// Tells whoever waits for an inbound message that it is stored (`ok`) or not.
    /// `taken`: a receipt said a subscriber took the message (passed on to a peer's receipt).
    fn answer(&mut self, ack: AckTo, ok: bool, taken: bool, now: Instant) {
        let ack = match ack {
            AckTo::Client(ack) => ack,
            AckTo::Peer { node, shard, token, matched } => {
                let matched = matched || taken;
                let receipt = Forward::Receipt { token, shard, ok, matched };
                return self.effects.push(Effect::Forward(node, receipt));
            }
        };
        if ok {
            return self.send_ack(ack);
        }
        // Storing failed: refuse instead of acknowledging (v5), or close (3.1.1 cannot refuse).
        let v5 = self.conns.get(&ack.conn).is_some_and(|c| c.version.is_v5());
        if v5 {
            self.send_ack(InboundAck { reason: ReasonCode::UNSPECIFIED_ERROR, ..ack });
        } else {
            self.close_for_storage_failure(ack.conn, now);
        }
    }

    ///
    /// The session loses its connection as on any other close the server makes for an error:
    /// its will goes out and its expiry starts. (Only marking the connection closing left the
    /// session attached to a connection that was gone: never expiring, its will never sent, and
    /// its messages queued past the queue's limits until the client came back.)
    fn close_for_storage_failure(&mut self, conn: ConnId, now: Instant) {
        if self.conns.get(&conn).is_some_and(|c| !c.closing) {
            self.effects.push(Effect::Close(conn));
            self.detach(conn, WillRule::Publish, super::Departure::StorageFailure, now);
        }
    }

    /// Another shard finished (or failed) the writes an acknowledgement here waits for.
    /// A receipt for held acknowledgement `token`: stored (`ok`), and whether a subscriber took
    /// the message (`matched`; receipts from this node's shards always say so).
    pub(super) fn receipt(&mut self, token: u64, ok: bool, matched: bool, now: Instant) {
        self.release(token, ok, matched, now);
    }

    /// After handling a message another shard asked a receipt for: answer once the writes it
    /// caused are durable, or at once if it caused none.
    pub(super) fn answer_receipt(
        &mut self,
        origin: ShardId,
        token: u64,
        wrote: bool,
        matched: bool,
    ) {
        if wrote {
            self.queue_ticket(Ticket::Receipt { origin, token, matched });
        } else {
            let stored = ShardMsg::Stored { token, ok: true, matched };
            self.effects.push(Effect::Mesh(origin, stored));
        }
    }

    // ---------------------------------------------------------------------------------------
    // Group commit, driven by the engine
    // ---------------------------------------------------------------------------------------

    /// The operations to commit now, if any and if no commit is running. The engine commits them
    /// in one transaction off the reactor and then calls [`Shard::commit_finished`].
    pub fn take_commit_batch(&mut self) -> Option<CommitBatch> {
        let durable = self.durable.as_mut()?;
        if durable.committing
            || (durable.queued.ops.is_empty() && durable.queued.tickets.is_empty())
        {
            return None;
        }
        durable.committing = true;
        let mut batch = std::mem::take(&mut durable.queued);
        if durable.resync {
            let clock = durable.clock;
            let sessions = self.sessions.iter().filter(|(_, s)| s.stored);
            let mut ops: Vec<Op> = sessions
                .map(|(client_id, session)| session_op(client_id, session, &clock))
                .collect();
            ops.append(&mut batch.ops);
            batch.ops = ops;
        }
        Some(batch)
    }

    /// Whether nothing is queued for, or being written by, a commit.
    pub fn commit_idle(&self) -> bool {
        self.durable
            .as_ref()
            .is_none_or(|d| !d.committing && d.queued.ops.is_empty() && d.queued.tickets.is_empty())
    }

    /// A commit ended: release what waited for it (acknowledge, or refuse on failure).
    pub fn commit_finished(&mut self, tickets: Vec<Ticket>, ok: bool, now: Instant) {
        let Some(durable) = self.durable.as_mut() else { return };
        durable.committing = false;
        durable.resync = !ok;
        let more = !durable.queued.ops.is_empty() || !durable.queued.tickets.is_empty();
        for ticket in tickets {
            match ticket {
                Ticket::Ack(token) => self.release(token, ok, true, now),
                Ticket::Receipt { origin, token, matched } => {
                    let stored = ShardMsg::Stored { token, ok, matched };
                    self.effects.push(Effect::Mesh(origin, stored));
                }
            }
        }
        if more {
            self.effects.push(Effect::Commit);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Recovery
    // ---------------------------------------------------------------------------------------

    /// Rebuilds sessions, their queues and in-flight messages, retained messages and delayed
    /// wills from a store snapshot, before any client connects. With `rewrite`, everything
    /// restored is also written to this shard's store (sessions moved here from another shard's
    /// file when the shard count changed).
    pub fn restore(&mut self, restored: Restored, rewrite: bool, now: Instant) {
        let Some(clock) = self.durable.as_ref().map(|d| d.clock) else { return };
        for (client_id, record) in restored.sessions {
            let mut session = Session::new(record.expiry_secs);
            session.epoch = 1;
            session.stored = true;
            // The ACL checks deliveries to the offline session as this user, as before the
            // restart (or the takeover), not as an anonymous client.
            session.username = record.username.as_deref().map(Box::from);
            // A session connected when the broker stopped counts as disconnected from now.
            let disconnected_unix_ms = match record.disconnected_at_unix_ms {
                0 => clock.unix_ms(now),
                ms => ms,
            };
            let disconnected_at = clock.instant(disconnected_unix_ms).min(now);
            session.disconnected_at = Some(disconnected_at);
            for (filter, subscription) in &record.subscriptions {
                session.held_mut().subscriptions.insert(filter.clone(), *subscription);
            }
            self.sessions.insert(client_id.clone(), session);
            for (filter, subscription) in record.subscriptions {
                self.add_subscriber(&client_id, &filter, subscription, true);
            }
            if record.expiry_secs != u32::MAX {
                // Counted in wall-clock time, so the downtime counts too.
                let expiry_ms = u64::from(record.expiry_secs) * 1000;
                let due = clock.instant(disconnected_unix_ms.saturating_add(expiry_ms));
                self.timers.push(std::cmp::Reverse((
                    due,
                    Timer::Expiry { client_id: client_id.clone(), epoch: 1 },
                )));
            }
            if rewrite {
                self.persist_session(&client_id);
            }
        }
        for (client_id, seq, record) in restored.messages {
            let Some(session) = self.sessions.get_mut(&client_id) else { continue };
            let mut delivery = record.delivery;
            delivery.seq = seq;
            session.next_seq = session.next_seq.max(seq + 1);
            let stage = record.stage;
            match (stage, PacketId::new(record.packet_id)) {
                (MessageStage::Queued, _) | (_, None) => {
                    let held = session.held_mut();
                    held.queued_bytes += delivery.message.cost_bytes();
                    held.queue.push_back(delivery.clone());
                }
                (MessageStage::Published | MessageStage::Released, Some(packet_id)) => {
                    session.resume_packet_ids_after(packet_id.get());
                    let stage = if stage == MessageStage::Released {
                        OutgoingStage::Released
                    } else {
                        OutgoingStage::Published
                    };
                    session.held_mut().inflight.push_back(Outgoing {
                        packet_id,
                        delivery: delivery.clone(),
                        stage,
                    });
                }
            }
            if rewrite {
                let mut again = delivery;
                self.persist_delivery(&client_id, &mut again, stage, record.packet_id);
            }
        }
        for (client_id, packet_id) in restored.incoming_qos2 {
            if let Some(session) = self.sessions.get_mut(&client_id) {
                session.held_mut().incoming_qos2.insert(packet_id);
                if rewrite {
                    self.persist_incoming_qos2(&client_id, packet_id, true);
                }
            }
        }
        for (client_id, message, due) in restored.wills {
            let Some(session) = self.sessions.get_mut(&client_id) else { continue };
            session.held_mut().pending_will = Some((message.clone(), due));
            self.timers.push(std::cmp::Reverse((
                due,
                Timer::Will { client_id: client_id.clone(), epoch: 1 },
            )));
            if rewrite {
                self.persist_will(&client_id, Some((&message, due)));
            }
        }
        for message in restored.retained {
            if rewrite {
                self.persist_retained(&message, true);
            }
            self.insert_retained(message);
        }
        for (topic, mark) in restored.retained_marks {
            if rewrite {
                self.persist_retained_mark(&topic, Some(mark));
            }
            self.retained_sync.restore(topic, mark);
        }
    }

    /// Removes sessions and retained messages that moved to another shard from this shard's
    /// store (after a change of shard count).
    pub fn forget_moved(&mut self, sessions: &[ByteString], retained_topics: &[ByteString]) {
        for client_id in sessions {
            self.unpersist_session(client_id);
        }
        for topic in retained_topics {
            self.queue_op(Op::DeleteRetained { topic: topic.to_string() });
            self.queue_op(Op::DeleteRetainedMark { topic: topic.to_string() });
        }
    }
}

/// The store operation that writes a session's record.
fn session_op(client_id: &ByteString, session: &Session, clock: &WallClock) -> Op {
    let record = SessionRecord {
        expiry_secs: session.expiry_secs,
        disconnected_at_unix_ms: session.disconnected_at.map_or(0, |at| clock.unix_ms(at).max(1)),
        username: session.username.as_deref().map(ByteString::from),
        subscriptions: session.held().subscriptions.iter().map(|(f, s)| (f.clone(), *s)).collect(),
    };
    Op::PutSession { client_id: client_id.to_string(), record: encode_session(&record) }
}

/// The held-acknowledgement maps of a shard.
pub(super) type HeldAcks = HashMap<u64, HeldAck>;
/// The held QoS 2 acknowledgements by (client id, packet id): the message that owns that id
/// until its commit ends.
pub(super) type HeldQos2 = HashMap<(ByteString, u16), u64>;
/// QoS 1 PUBLISHes of each connection whose PUBACK is held (for a commit or receipts): with the
/// session's unreleased QoS 2 ids, what counts against the Receive Maximum the broker gave the
/// client. Only connections with some held are in it.
pub(super) type HeldQos1 = crate::FastMap<ConnId, u16>;

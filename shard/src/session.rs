//! A client's session as its home shard keeps it: subscriptions, the outbound in-flight window
//! and queue, inbound QoS 2 state, and the will waiting for its delay. Plain data, no I/O, so it
//! can be stored (issue 4) and moved between shards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use shardmq_io::codec::{ByteString, PacketId, SubscriptionOptions};

use crate::ids::ConnId;
use crate::message::{Delivery, SharedMessage};

/// Lives on the session's home shard. Survives its connections while its expiry allows.
#[derive(Debug)]
pub struct Session {
    pub client_id: ByteString,
    /// The live connection, if any.
    pub conn: Option<ConnId>,
    /// Subscriptions by the filter as the client wrote it (including any `$share/` prefix).
    pub subscriptions: HashMap<ByteString, Subscription>,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_secs: u32,
    /// Bumped each time the session loses its connection, so timers set for an earlier
    /// disconnection are recognised as stale.
    pub epoch: u64,
    /// Outbound QoS 1/2 messages sent and not yet completed, in the order they were sent.
    pub inflight: VecDeque<Outgoing>,
    /// Outbound messages waiting for the in-flight window or for the client to come back.
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    /// Inbound QoS 2 packet identifiers received and not yet released (PUBREL).
    pub incoming_qos2: HashSet<u16>,
    next_packet_id: u16,
    /// A will whose delay is running: published when it is due or when the session ends.
    pub pending_will: Option<(SharedMessage, Instant)>,
    /// When the session lost its connection (for its expiry, stored as wall-clock time).
    pub disconnected_at: Option<Instant>,
    /// The next key for a stored message of this session.
    pub next_seq: u64,
    /// Whether the store holds a record of this session (so ending it must delete it).
    pub stored: bool,
}

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// An outbound QoS 1/2 message in flight.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub packet_id: PacketId,
    pub delivery: Delivery,
    pub stage: OutgoingStage,
}

/// Where an outbound QoS 1/2 exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingStage {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent; waiting for PUBCOMP.
    Released,
}

impl Session {
    pub fn new(client_id: ByteString, expiry_secs: u32) -> Session {
        Session {
            client_id,
            conn: None,
            subscriptions: HashMap::new(),
            expiry_secs,
            epoch: 0,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: HashSet::new(),
            next_packet_id: 1,
            pending_will: None,
            disconnected_at: None,
            next_seq: 1,
            stored: false,
        }
    }

    /// The next free packet identifier, skipping those in flight. `None` if all 65,535 are in use
    /// (the in-flight window is far smaller, so this does not happen in practice).
    pub fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let in_use = self.inflight.iter().any(|out| out.packet_id.get() == candidate);
            if !in_use {
                return PacketId::new(candidate);
            }
        }
        None
    }

    /// Removes and returns the in-flight entry with this packet identifier.
    pub fn take_inflight(&mut self, packet_id: PacketId) -> Option<Outgoing> {
        let index = self.inflight.iter().position(|out| out.packet_id == packet_id)?;
        self.inflight.remove(index)
    }

    pub fn inflight_mut(&mut self, packet_id: PacketId) -> Option<&mut Outgoing> {
        self.inflight.iter_mut().find(|out| out.packet_id == packet_id)
    }

    /// A new key for a stored message.
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The packet identifier counter continues after restored in-flight messages.
    pub fn resume_packet_ids_after(&mut self, packet_id: u16) {
        self.next_packet_id = packet_id.checked_add(1).unwrap_or(1);
    }

    pub fn pop_queued(&mut self) -> Option<Delivery> {
        let delivery = self.queue.pop_front()?;
        self.queued_bytes -= delivery.message.cost_bytes();
        Some(delivery)
    }
}

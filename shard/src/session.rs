//! A client's session as its home shard keeps it: subscriptions, the outbound in-flight window
//! and queue, inbound QoS 2 state, and the will waiting for its delay. Plain data, no I/O, so it
//! can be stored (issue 4) and moved between shards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::LazyLock;
use std::time::Instant;

use shardmq_codec::{ByteString, PacketId, SubscriptionOptions};

use crate::ids::ConnId;
use crate::message::{Delivery, SharedMessage};

/// Lives on the session's home shard, in its map of sessions by client id (the key; the session
/// does not repeat it). Survives its connections while its expiry allows.
///
/// Kept small: a shard holds one per client, most of them idle. What only some sessions have
/// (subscriptions, messages, inbound QoS 2 state, a delayed will) is in [`Held`], boxed and
/// allocated only while the session holds any of it.
#[derive(Debug)]
pub struct Session {
    /// The live connection, if any.
    pub conn: Option<ConnId>,
    /// When the session lost its connection (for its expiry, stored as wall-clock time).
    pub disconnected_at: Option<Instant>,
    /// Bumped each time the session loses its connection, so timers set for an earlier
    /// disconnection are recognised as stale.
    pub epoch: u64,
    /// The next key for a stored message of this session.
    pub next_seq: u64,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_secs: u32,
    next_packet_id: u16,
    /// Whether the store holds a record of this session (so ending it must delete it).
    pub stored: bool,
    /// The user name of the latest CONNECT, kept while an ACL is in force (for its checks).
    pub username: Option<Box<str>>,
    held: Option<Box<Held>>,
}

/// What a session holds beyond its identity and expiry. Empty for most idle sessions, which
/// then have none allocated (see [`Session::held_mut`] and [`Session::release_if_empty`]).
#[derive(Debug, Default)]
pub struct Held {
    /// Subscriptions by the filter as the client wrote it (including any `$share/` prefix).
    pub subscriptions: HashMap<ByteString, Subscription>,
    /// Outbound QoS 1/2 messages sent and not yet completed, in the order they were sent.
    pub inflight: VecDeque<Outgoing>,
    /// Outbound messages waiting for the in-flight window or for the client to come back.
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    /// Inbound QoS 2 packet identifiers received and not yet released (PUBREL).
    pub incoming_qos2: HashSet<u16>,
    /// A will whose delay is running: published when it is due or when the session ends.
    pub pending_will: Option<(SharedMessage, Instant)>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
            && self.inflight.is_empty()
            && self.queue.is_empty()
            && self.incoming_qos2.is_empty()
            && self.pending_will.is_none()
    }
}

/// What [`Session::held`] shows for a session that holds nothing.
static NOTHING_HELD: LazyLock<Held> = LazyLock::new(Held::default);

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
    pub fn new(expiry_secs: u32) -> Session {
        Session {
            conn: None,
            disconnected_at: None,
            epoch: 0,
            next_seq: 1,
            expiry_secs,
            next_packet_id: 1,
            stored: false,
            username: None,
            held: None,
        }
    }

    /// What the session holds (an empty [`Held`] when it holds nothing). Allocates nothing.
    pub fn held(&self) -> &Held {
        self.held.as_deref().unwrap_or(&NOTHING_HELD)
    }

    /// What the session holds, for changing it: allocates the box when the session held nothing.
    /// Call it only to add something; to remove, use [`Session::held_if_any`].
    pub fn held_mut(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Box::default)
    }

    /// What the session holds, for removing from it: `None` when it holds nothing.
    pub fn held_if_any(&mut self) -> Option<&mut Held> {
        self.held.as_deref_mut()
    }

    /// Frees the box of held things once they are all gone (with the capacity their
    /// collections kept), so a session that goes idle costs only its own fields again.
    pub fn release_if_empty(&mut self) {
        if self.held.as_ref().is_some_and(|held| held.is_empty()) {
            self.held = None;
        }
    }

    /// Takes everything the session holds (when it ends).
    pub fn take_held(&mut self) -> Held {
        self.held.take().map(|held| *held).unwrap_or_default()
    }

    /// Takes the will waiting for its delay, if any.
    pub fn take_pending_will(&mut self) -> Option<(SharedMessage, Instant)> {
        self.held_if_any()?.pending_will.take()
    }

    /// The next free packet identifier, skipping those in flight. `None` if all 65,535 are in use
    /// (the in-flight window is far smaller, so this does not happen in practice).
    pub fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let in_use = self.held().inflight.iter().any(|out| out.packet_id.get() == candidate);
            if !in_use {
                return PacketId::new(candidate);
            }
        }
        None
    }

    /// Removes and returns the in-flight entry with this packet identifier.
    pub fn take_inflight(&mut self, packet_id: PacketId) -> Option<Outgoing> {
        let held = self.held_if_any()?;
        let index = held.inflight.iter().position(|out| out.packet_id == packet_id)?;
        held.inflight.remove(index)
    }

    pub fn inflight_mut(&mut self, packet_id: PacketId) -> Option<&mut Outgoing> {
        self.held_if_any()?.inflight.iter_mut().find(|out| out.packet_id == packet_id)
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
        let held = self.held_if_any()?;
        let delivery = held.queue.pop_front()?;
        held.queued_bytes -= delivery.message.cost_bytes();
        Some(delivery)
    }
}

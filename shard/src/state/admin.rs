//! What the admin API asks a shard: pages of its sessions, one session in detail, a kick, and
//! the queue gauges of `/metrics`. Pure reads of the state (the kick aside), answered between
//! two events; the engine carries the questions from the admin thread and the answers back.
//!
//! Each answer is bounded: a page holds at most the `limit` asked for, found without sorting
//! every session (one pass with a heap of `limit` entries), so a shard of 500K sessions answers
//! a page in one pass over its map and never builds a list of them all.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use shardmq_codec::{ByteString, ProtocolVersion, QoS, ReasonCode, RetainHandling};

use super::{Conn, Shard, WillRule};
use crate::ids::ConnId;
use crate::session::Session;

/// One session as the client list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    pub client_id: ByteString,
    /// The live connection, if any (the engine finds its peer address from it).
    pub conn: Option<ConnId>,
    /// The client's address: the shard knows no sockets, so it leaves this `None` for the
    /// engine to fill in from `conn`.
    pub peer: Option<std::net::SocketAddr>,
    /// The connection's protocol version (`None` while offline).
    pub protocol: Option<ProtocolVersion>,
    /// The user name, kept while an ACL is in force (`None` otherwise, or without one).
    pub username: Option<String>,
    /// Keepalive in force in seconds (`None` while offline; 0 is off).
    pub keepalive_secs: Option<u16>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never; 0: ends with the connection).
    pub session_expiry_secs: u32,
    /// How long the client has been connected, or the session offline (whole seconds).
    pub connected_for: Option<Duration>,
    pub offline_for: Option<Duration>,
    pub subscriptions: usize,
    /// Outbound QoS 1/2 messages in flight.
    pub inflight_out: usize,
    /// Messages queued (offline, or waiting for the in-flight window).
    pub queued_messages: usize,
}

/// One session in detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDetail {
    pub summary: ClientSummary,
    /// Subscriptions sorted by filter (as the client wrote it, `$share/` prefix included).
    pub subscriptions: Vec<SubscriptionInfo>,
    /// Payload bytes (and topic) of the queued messages, as the queue limit counts them.
    pub queued_bytes: usize,
    /// Inbound QoS 2 messages received and not yet released by PUBREL.
    pub inflight_in: usize,
    /// Bytes encoded for the connection and not yet written to its socket.
    pub output_bytes: usize,
    /// The connection's will (`Connected`), or a will waiting for its delay (`Delayed`).
    pub will: WillState,
    /// The engine does not read the connection: its subscribers are draining, or it is over
    /// its rate limit.
    pub paused: bool,
    pub throttled: bool,
}

/// A subscription as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub filter: ByteString,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
    pub identifier: Option<u32>,
}

/// Whether a session has a will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillState {
    None,
    /// Set by the live connection's CONNECT.
    Connected,
    /// The connection is gone and the will waits for its delay.
    Delayed,
}

/// What a kick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kicked {
    /// The client was connected and is being disconnected (v5: DISCONNECT 0x98).
    pub disconnected: bool,
    /// The session is gone (asked for, or it ended with its connection: expiry 0).
    pub session_ended: bool,
}

/// Whether a kick also discards the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickSession {
    Keep,
    Discard,
}

/// The queue gauges of one shard, walked from its sessions when `/metrics` is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueGauges {
    /// Messages queued, over every session of the shard.
    pub queued_messages: u64,
    /// Those of them queued for sessions without a connection.
    pub queued_messages_offline: u64,
    pub queued_bytes: u64,
    /// Outbound QoS 1/2 messages in flight.
    pub inflight_out: u64,
    /// Inbound QoS 2 messages not yet released.
    pub inflight_in: u64,
    /// The longest queue of one session.
    pub largest_queue: u64,
    /// Connections over their rate limit right now.
    pub throttled_connections: u64,
}

/// Which sessions a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Any,
    Connected,
    Offline,
}

impl Presence {
    fn admits(self, session: &Session) -> bool {
        match self {
            Presence::Any => true,
            Presence::Connected => session.conn.is_some(),
            Presence::Offline => session.conn.is_none(),
        }
    }
}

impl Shard {
    /// Up to `limit` sessions of this shard whose client ids sort (bytewise) after `after`,
    /// in that order.
    pub fn client_page(
        &self,
        after: Option<&str>,
        limit: usize,
        presence: Presence,
        now: Instant,
    ) -> Vec<ClientSummary> {
        if limit == 0 {
            return Vec::new();
        }
        // The `limit` smallest ids past the cursor: a max-heap whose top is the largest kept.
        let mut smallest: BinaryHeap<&ByteString> = BinaryHeap::with_capacity(limit + 1);
        for (client_id, session) in &self.sessions {
            if after.is_some_and(|after| client_id.as_bytes() <= after.as_bytes())
                || !presence.admits(session)
            {
                continue;
            }
            if smallest.len() < limit {
                smallest.push(client_id);
            } else if smallest.peek().is_some_and(|largest| client_id < *largest) {
                smallest.pop();
                smallest.push(client_id);
            }
        }
        smallest
            .into_sorted_vec()
            .into_iter()
            .filter_map(|client_id| self.client_summary(client_id, now))
            .collect()
    }

    /// One session in detail, if it lives on this shard.
    pub fn client_detail(&self, client_id: &str, now: Instant) -> Option<ClientDetail> {
        let (client_id, session) = self.sessions.get_key_value(client_id)?;
        let summary = self.client_summary(client_id, now)?;
        let conn = session.conn.and_then(|conn| self.conns.get(&conn).map(|c| (conn, c)));
        let held = session.held();
        let mut subscriptions: Vec<SubscriptionInfo> = held
            .subscriptions
            .iter()
            .map(|(filter, subscription)| SubscriptionInfo {
                filter: filter.clone(),
                qos: subscription.options.qos,
                no_local: subscription.options.no_local,
                retain_as_published: subscription.options.retain_as_published,
                retain_handling: subscription.options.retain_handling,
                identifier: subscription.identifier,
            })
            .collect();
        subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
        let will = match (conn, &held.pending_will) {
            (Some((_, c)), _) if c.will.is_some() => WillState::Connected,
            (_, Some(_)) => WillState::Delayed,
            _ => WillState::None,
        };
        Some(ClientDetail {
            summary,
            subscriptions,
            queued_bytes: held.queued_bytes,
            inflight_in: held.incoming_qos2.len(),
            output_bytes: conn.map_or(0, |(_, c)| c.out.len()),
            will,
            paused: conn.is_some_and(|(conn, _)| self.backpressure.is_paused(conn)),
            throttled: conn.is_some_and(|(conn, _)| self.is_throttled(conn)),
        })
    }

    fn client_summary(&self, client_id: &ByteString, now: Instant) -> Option<ClientSummary> {
        let session = self.sessions.get(client_id)?;
        let conn: Option<&Conn> = session.conn.and_then(|conn| self.conns.get(&conn));
        let held = session.held();
        Some(ClientSummary {
            client_id: client_id.clone(),
            conn: session.conn,
            peer: None,
            protocol: conn.map(|c| c.version),
            username: session.username.as_deref().map(str::to_owned),
            keepalive_secs: conn.map(|c| (c.keepalive_grace_ms / 1500) as u16),
            session_expiry_secs: session.expiry_secs,
            connected_for: conn.map(|c| {
                let since = Duration::from_secs(u64::from(c.connected_secs));
                self.since_start(now).saturating_sub(since)
            }),
            offline_for: session
                .disconnected_at
                .filter(|_| session.conn.is_none())
                .map(|at| Duration::from_secs(now.saturating_duration_since(at).as_secs())),
            subscriptions: held.subscriptions.len(),
            inflight_out: held.inflight.len(),
            queued_messages: held.queue.len(),
        })
    }

    /// Disconnects a client as the server does on its own initiative (v5: DISCONNECT 0x98
    /// "administrative action"; 3.1.1: the connection is closed), so its will is published;
    /// with [`KickSession::Discard`], its session goes too. `None` when the client has no
    /// session on this shard.
    pub fn kick(&mut self, client_id: &str, session: KickSession, now: Instant) -> Option<Kicked> {
        let (client_id, found) = self.sessions.get_key_value(client_id)?;
        let client_id = client_id.clone();
        let conn = found.conn;
        if let Some(conn) = conn {
            self.disconnect_with(conn, ReasonCode::ADMINISTRATIVE_ACTION);
            self.detach(conn, WillRule::Publish, super::Departure::Kicked, now);
        }
        if session == KickSession::Discard && self.sessions.contains_key(&client_id) {
            self.end_session(&client_id, now);
            self.effects.push(super::Effect::SessionEnded(client_id.clone()));
        }
        Some(Kicked {
            disconnected: conn.is_some(),
            session_ended: !self.sessions.contains_key(&client_id),
        })
    }

    /// The queue gauges, walking every session of the shard (for a scrape, not per message).
    pub fn queue_gauges(&self) -> QueueGauges {
        let mut gauges = QueueGauges {
            throttled_connections: self.throttle.as_ref().map_or(0, |t| t.throttled() as u64),
            ..QueueGauges::default()
        };
        for session in self.sessions.values() {
            let held = session.held();
            let queued = held.queue.len() as u64;
            gauges.queued_messages += queued;
            if session.conn.is_none() {
                gauges.queued_messages_offline += queued;
            }
            gauges.queued_bytes += held.queued_bytes as u64;
            gauges.inflight_out += held.inflight.len() as u64;
            gauges.inflight_in += held.incoming_qos2.len() as u64;
            gauges.largest_queue = gauges.largest_queue.max(queued);
        }
        gauges
    }
}

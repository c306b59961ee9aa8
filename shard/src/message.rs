//! An application message as the broker carries it between shards and sessions: received once,
//! shared by reference count with every shard and subscriber it goes to.

use std::sync::Arc;
use std::time::Instant;

use shardmq_io::codec::{ByteString, Bytes, Properties, QoS};

/// One published message. Immutable once routed: subscribers share it through [`SharedMessage`],
/// so a fan-out to many sessions copies neither topic nor payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The properties forwarded unchanged to subscribers: payload format indicator, content type,
    /// response topic, correlation data, user properties. Never a topic alias, a subscription
    /// identifier or the expiry interval (those are per delivery).
    pub properties: Properties,
    /// When the Message Expiry Interval runs out, counted from receipt.
    pub expires_at: Option<Instant>,
    /// The client that published it (for No Local).
    pub publisher: ByteString,
}

/// A message shared between shards and sessions.
pub type SharedMessage = Arc<Message>;

impl Message {
    /// Whether the message's expiry interval has passed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|deadline| deadline <= now)
    }

    /// The Message Expiry Interval to forward at `now`: the time left, rounded up to a second.
    pub fn remaining_expiry_secs(&self, now: Instant) -> Option<u32> {
        let left = self.expires_at?.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    /// The payload bytes a queue is charged for this message.
    pub fn cost_bytes(&self) -> usize {
        self.payload.len() + self.topic.len()
    }
}

/// Keeps only the properties a subscriber receives unchanged (spec 3.3.2.3).
pub fn forwarded_properties(properties: &Properties) -> Properties {
    Properties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
        ..Properties::default()
    }
}

/// One message on its way to one session: the QoS it is delivered at, the retain flag the
/// subscriber sees, and the subscription identifiers of the subscriptions it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Its key in the session's stored messages; 0 while it is not stored (clean sessions,
    /// QoS 0, or no storage).
    pub seq: u64,
}

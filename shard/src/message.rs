//! An application message as the broker carries it between shards and sessions: received once,
//! shared by reference count with every shard and subscriber it goes to.

use std::sync::Arc;
use std::time::Instant;

use shardmq_codec::{ByteString, Bytes, Properties, QoS};

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

    /// The message as a node that only notes where it is kept gets it: everything but the
    /// payload.
    pub fn without_payload(&self) -> Message {
        Message { payload: Default::default(), ..self.clone() }
    }

    /// The bytes a queue or the retained store is charged for this message: its topic, payload
    /// and properties' strings and data (a message with an empty payload and large user
    /// properties costs what it holds).
    pub fn cost_bytes(&self) -> usize {
        let properties = &self.properties;
        self.topic.len()
            + self.payload.len()
            + properties.content_type.as_ref().map_or(0, |t| t.len())
            + properties.response_topic.as_ref().map_or(0, |t| t.len())
            + properties.correlation_data.as_ref().map_or(0, |d| d.len())
            + properties.user_properties.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

/// Messages up to this size (topic, payload and properties' strings) are copied out of the read
/// buffer they were decoded from. A decoded message is a slice of a connection's read buffer (up
/// to 16 KiB, shared by every packet of that read): a small message kept in a queue or the
/// retained store would otherwise keep the whole buffer alive, and memory would outgrow the
/// queue limits, which count message bytes. Larger messages stay zero-copy: they are most of
/// their buffer.
pub const COMPACT_BYTES_MAX: usize = 4 << 10;

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

fn own(text: &ByteString) -> ByteString {
    ByteString::from(&**text)
}

impl Message {
    /// The message with its bytes in allocations of its own when it is small (see
    /// [`COMPACT_BYTES_MAX`]); as it is otherwise.
    pub fn compacted(mut self) -> Message {
        if self.cost_bytes() > COMPACT_BYTES_MAX {
            return self;
        }
        self.topic = own(&self.topic);
        self.payload = Bytes::copy_from_slice(&self.payload);
        let properties = &mut self.properties;
        properties.content_type = properties.content_type.as_ref().map(own);
        properties.response_topic = properties.response_topic.as_ref().map(own);
        properties.correlation_data =
            properties.correlation_data.as_ref().map(|d| Bytes::copy_from_slice(d));
        for (name, value) in &mut properties.user_properties {
            *name = own(name);
            *value = own(value);
        }
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_leave_the_read_buffer_large_ones_stay_in_it() {
        let buffer = Bytes::from(vec![b'x'; 16 << 10]);
        let message = |len: usize| Message {
            topic: ByteString::try_from(buffer.slice(0..3)).expect("utf-8"),
            payload: buffer.slice(3..3 + len),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
            publisher: ByteString::from("p"),
        };
        let inside = |bytes: &[u8]| {
            let start = buffer.as_ptr() as usize;
            (start..start + buffer.len()).contains(&(bytes.as_ptr() as usize))
        };
        let small = message(64).compacted();
        assert!(!inside(&small.payload) && !inside(small.topic.as_bytes()));
        assert_eq!(small.payload.len(), 64);
        let large = message(8 << 10).compacted();
        assert!(inside(&large.payload), "large payloads are not copied");
    }
}

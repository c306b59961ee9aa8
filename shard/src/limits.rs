//! The broker's limits: every bound a client can push against, each with a documented default.
//! The engine fills this from the config file and CLI flags; shards read it, never write it.

use std::time::Duration;

/// Limits shared by every shard (a copy per shard; replaced as a whole by a configuration
/// reload, [`crate::Shard::set_limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted from a client, fixed header included (CONNACK Maximum Packet Size).
    pub packet_bytes_max: u32,
    /// Outbound QoS 1/2 messages in flight per client, and the Receive Maximum advertised for
    /// inbound QoS 2 (the client's own Receive Maximum lowers the outbound figure further).
    pub inflight_max: u16,
    /// Messages queued per session beyond the in-flight window (offline, or window full).
    pub queued_messages_max: usize,
    /// Payload bytes queued per session.
    pub queued_bytes_max: usize,
    /// Encoded bytes waiting for a connection's socket; QoS 0 messages past it are dropped.
    pub out_buffer_bytes_max: usize,
    /// Largest keepalive granted; longer requests get Server Keep Alive (v5) or are refused (3.1.x).
    pub keepalive_secs_max: u16,
    /// Topic Alias Maximum advertised to v5 clients (0 disables client-to-server aliases).
    pub topic_alias_max: u16,
    /// Levels in a topic name or filter.
    pub topic_levels_max: usize,
    /// Subscriptions per client.
    pub subscriptions_per_client_max: usize,
    /// Bytes of topic filters one client's subscriptions may hold in all (beyond: SUBACK 0x97):
    /// a count alone let 1,000 filters of 16 KB each pin 16 MB per client.
    pub subscription_bytes_per_client_max: usize,
    /// Retained messages per node (each shard holds its partition of them).
    pub retained_messages_max: usize,
    /// Payload bytes of one retained message.
    pub retained_payload_bytes_max: usize,
    /// Bytes the retained messages of the node may hold in all (topics, payloads and
    /// properties), split evenly over the shards' partitions like the count; a retained
    /// message past it is delivered but not retained, counted and logged.
    pub retained_bytes_max: usize,
    /// Session Expiry Interval granted at most (3.1.1 persistent sessions get this value).
    pub session_expiry_secs_max: u32,
    /// Concurrent client connections per node.
    pub connections_max: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// PUBLISH packets per second one connection may send (`None`: unlimited). Past it, with a
    /// burst of one second's worth, the connection is not read until its budget refills.
    pub client_messages_per_sec_max: Option<u32>,
    /// Inbound bytes per second one connection may send (`None`: unlimited), as above.
    pub client_bytes_per_sec_max: Option<u64>,
    /// Whether a client may take over a session (online or stored) that another user's client
    /// holds, as Mosquitto allows. Off: such a CONNECT is refused (0x87, 3.1.1 code 5).
    pub session_takeover_any_user: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            packet_bytes_max: 1 << 20,
            inflight_max: 64,
            queued_messages_max: 1000,
            queued_bytes_max: 16 << 20,
            out_buffer_bytes_max: 1 << 20,
            keepalive_secs_max: u16::MAX,
            topic_alias_max: 64,
            topic_levels_max: 128,
            subscriptions_per_client_max: 1000,
            subscription_bytes_per_client_max: 256 << 10,
            retained_messages_max: 1_000_000,
            retained_payload_bytes_max: 1 << 20,
            retained_bytes_max: 1 << 30,
            session_expiry_secs_max: u32::MAX,
            connections_max: 1_000_000,
            connect_timeout: Duration::from_secs(10),
            client_messages_per_sec_max: None,
            client_bytes_per_sec_max: None,
            session_takeover_any_user: false,
        }
    }
}

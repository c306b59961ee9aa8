//! Client events, as EMQX publishes them: with `client_events` on, the shard a client is homed
//! on publishes a QoS 0 JSON message on `$SYS/brokers/<node>/clients/<client id>/connected`
//! when the client connects, `.../disconnected` when its connection ends (saying why), and
//! `.../subscribed` / `.../unsubscribed` for each SUBSCRIBE and UNSUBSCRIBE it sends.
//!
//! The messages go through the normal routing ([`Shard::route`]), so subscribers on every shard
//! of the node and, in a cluster, on other nodes get them. Clients still cannot publish on
//! `$SYS` topics, leading wildcards (`#`, `+/...`) still do not match them, and the ACL decides
//! who may subscribe to and read them, as for every `$SYS` topic.
//!
//! What it costs: with events off, one branch per connect, disconnect, subscribe and
//! unsubscribe, and nothing allocated. With events on, the event's topic is written into a
//! buffer the shard reuses and looked up in the subscription tries; the payload (written by
//! hand: the shard crate has no serde) and the message are built only when someone subscribes
//! to that topic, so a connect storm that nobody watches allocates nothing for its events.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use shardmq_codec::{ByteString, Bytes, Properties, ProtocolVersion, QoS, ReasonCode};

use super::Shard;
use crate::ids::ConnId;
use crate::message::Message;
use crate::persist::WallClock;

/// Where and when client events are published: set on a shard with
/// [`Shard::set_client_events`].
#[derive(Debug)]
pub struct ClientEvents {
    /// `$SYS/brokers/<node>/clients/`.
    prefix: String,
    /// Gives the events' timestamps (Unix milliseconds) from the shard's monotonic time.
    clock: WallClock,
    /// The topic of the event being published, kept between events so that an event nobody
    /// listens to allocates nothing.
    topic: String,
}

impl ClientEvents {
    /// Events of node `node` (one topic level: it must hold no `/`, `+` or `#`), stamped by
    /// `clock`.
    pub fn new(node: &str, clock: WallClock) -> ClientEvents {
        assert!(
            !node.is_empty() && !node.contains(['/', '+', '#']),
            "a node name must be one topic level: {node:?}"
        );
        ClientEvents {
            prefix: format!("$SYS/brokers/{node}/clients/"),
            clock,
            topic: String::new(),
        }
    }
}

/// Why a client's connection ended, as its disconnected event says it: a short name and the
/// MQTT 5 reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// The client sent DISCONNECT with this reason code.
    Normal(ReasonCode),
    /// The socket closed or failed without a DISCONNECT (no reason code).
    Lost,
    /// Another connection took the client id over (0x8E).
    Takeover,
    /// Nothing came from the client within 1.5 times its keepalive (0x8D).
    KeepaliveTimeout,
    /// What the client sent broke the protocol or a limit, or its re-authentication failed:
    /// the reason code the server closed it with.
    ProtocolError(ReasonCode),
    /// The admin API disconnected it (0x98).
    Kicked,
    /// The broker is shutting down (0x8B).
    ServerShutdown,
    /// The node could not show its cluster lease alive and stopped serving (0x89).
    Fenced,
    /// A message it sent could not be stored, and 3.1.x has no way to refuse one (0x80).
    StorageFailure,
}

impl Departure {
    /// The `reason` field.
    pub(super) fn name(self) -> &'static str {
        match self {
            Departure::Normal(_) => "normal",
            Departure::Lost => "connection_lost",
            Departure::Takeover => "takeover",
            Departure::KeepaliveTimeout => "keepalive_timeout",
            Departure::ProtocolError(_) => "protocol_error",
            Departure::Kicked => "kicked",
            Departure::ServerShutdown => "server_shutdown",
            Departure::Fenced => "fenced",
            Departure::StorageFailure => "storage_failure",
        }
    }

    /// The `reason_code` field: the DISCONNECT's reason code (sent by the client for a normal
    /// disconnection, by the server otherwise; a 3.1.x client is closed without one, but the
    /// code still says why). `None` for a lost connection.
    pub(super) fn reason_code(self) -> Option<ReasonCode> {
        match self {
            Departure::Normal(code) | Departure::ProtocolError(code) => Some(code),
            Departure::Lost => None,
            Departure::Takeover => Some(ReasonCode::SESSION_TAKEN_OVER),
            Departure::KeepaliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Departure::Kicked => Some(ReasonCode::ADMINISTRATIVE_ACTION),
            Departure::ServerShutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            Departure::Fenced => Some(ReasonCode::SERVER_BUSY),
            Departure::StorageFailure => Some(ReasonCode::UNSPECIFIED_ERROR),
        }
    }
}

/// What a connected event says about the connection besides its client id and user.
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival {
    pub(super) version: ProtocolVersion,
    /// The keepalive granted, in seconds.
    pub(super) keepalive_secs: u16,
    pub(super) clean_start: bool,
    /// The Session Expiry Interval granted, in seconds.
    pub(super) expiry_secs: u32,
    /// The client's address, when the engine gave it.
    pub(super) peer: Option<IpAddr>,
}

impl Shard {
    /// Publishes client events from now on (`None`: no more). Read at start by the engine.
    pub fn set_client_events(&mut self, events: Option<ClientEvents>) {
        self.client_events = events.map(Box::new);
    }

    /// Whether client events are on: the engine then passes each client's address to
    /// [`Shard::connect_from`] (finding it costs a system call).
    pub fn client_events_enabled(&self) -> bool {
        self.client_events.is_some()
    }

    /// The connected event of `client_id`, just attached to its session.
    pub(super) fn connected_event(&mut self, client_id: &str, arrival: Arrival, now: Instant) {
        let Some(unix_ms) = self.listened(client_id, "connected", now) else { return };
        // Writing to a `String` cannot fail: the `fmt::Result`s below are ignored.
        let mut json = String::with_capacity(192 + client_id.len());
        self.event_head(&mut json, client_id);
        json.push_str(",\"ipaddress\":");
        match arrival.peer {
            Some(ip) => {
                let _ = write!(json, "\"{ip}\"");
            }
            None => json.push_str("null"),
        }
        let _ = write!(
            json,
            ",\"proto_ver\":{},\"keepalive\":{},\"clean_start\":{},\"expiry_interval\":{},\
             \"connected_at\":{unix_ms}}}",
            arrival.version.level(),
            arrival.keepalive_secs,
            arrival.clean_start,
            arrival.expiry_secs,
        );
        self.publish_event(json, now);
    }

    /// The disconnected event of the client on `conn`, if `conn` is still its session's
    /// connection (a connection closed twice, or already replaced, has had its event). Marks
    /// the connection closing first, so it is not sent its own event.
    pub(super) fn disconnected_event(&mut self, conn: ConnId, departure: Departure, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.closing = true;
        let (client_id, version) = (c.client_id.clone(), c.version);
        let Some(unix_ms) = self.listened(&client_id, "disconnected", now) else { return };
        if self.sessions.get(&client_id).and_then(|session| session.conn) != Some(conn) {
            return;
        }
        let mut json = String::with_capacity(160 + client_id.len());
        self.event_head(&mut json, &client_id);
        let _ = write!(json, ",\"proto_ver\":{},\"reason\":", version.level());
        push_json_string(&mut json, departure.name());
        match departure.reason_code() {
            Some(code) => {
                let _ = write!(json, ",\"reason_code\":{}", code.0);
            }
            None => json.push_str(",\"reason_code\":null"),
        }
        let _ = write!(json, ",\"disconnected_at\":{unix_ms}}}");
        self.publish_event(json, now);
    }

    /// The subscribed event of a SUBSCRIBE: the filters granted (as the client wrote them,
    /// `$share/` prefix included) with the QoS granted.
    pub(super) fn subscribed_event(
        &mut self,
        client_id: &str,
        granted: &[(ByteString, QoS)],
        now: Instant,
    ) {
        if granted.is_empty() {
            return;
        }
        let Some(unix_ms) = self.listened(client_id, "subscribed", now) else { return };
        let mut json = String::with_capacity(128 + client_id.len() + 32 * granted.len());
        self.event_head(&mut json, client_id);
        json.push_str(",\"topics\":[");
        for (i, (filter, qos)) in granted.iter().enumerate() {
            json.push_str(if i == 0 { "{\"topic\":" } else { ",{\"topic\":" });
            push_json_string(&mut json, filter);
            let _ = write!(json, ",\"qos\":{}}}", *qos as u8);
        }
        let _ = write!(json, "],\"subscribed_at\":{unix_ms}}}");
        self.publish_event(json, now);
    }

    /// The unsubscribed event of an UNSUBSCRIBE: the filters it removed (those the client had).
    pub(super) fn unsubscribed_event(
        &mut self,
        client_id: &str,
        removed: &[ByteString],
        now: Instant,
    ) {
        if removed.is_empty() {
            return;
        }
        let Some(unix_ms) = self.listened(client_id, "unsubscribed", now) else { return };
        let mut json = String::with_capacity(128 + client_id.len() + 24 * removed.len());
        self.event_head(&mut json, client_id);
        json.push_str(",\"topics\":[");
        for (i, filter) in removed.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            push_json_string(&mut json, filter);
        }
        let _ = write!(json, "],\"unsubscribed_at\":{unix_ms}}}");
        self.publish_event(json, now);
    }

    /// Writes the event's topic into the reused buffer and says when it happened (Unix ms) if
    /// anybody may receive it: a subscriber on this shard, on another shard, or on a peer node.
    /// `None` when events are off, nobody subscribes, or the topic would be too long for MQTT
    /// (a client id near the 65,535-byte limit).
    fn listened(&mut self, client_id: &str, event: &str, now: Instant) -> Option<u64> {
        let events = self.client_events.as_deref_mut()?;
        events.topic.clear();
        events.topic.push_str(&events.prefix);
        push_topic_level(&mut events.topic, client_id);
        events.topic.push('/');
        events.topic.push_str(event);
        let topic = events.topic.as_str();
        if topic.len() > usize::from(u16::MAX) {
            return None;
        }
        let mut found = false;
        self.subscribers.for_each_match(topic, |_, _, _| found = true);
        if !found {
            self.routes.for_each_match(topic, |_, _, _| found = true);
        }
        (found || self.peers.any_match(topic)).then(|| events.clock.unix_ms(now))
    }

    /// `{"clientid":...,"username":...`: what every event starts with. The user name is the
    /// one the session is held to, known while users are told apart (a password file, an ACL
    /// or client certificates); `null` otherwise, as in the admin API.
    fn event_head(&self, json: &mut String, client_id: &str) {
        json.push_str("{\"clientid\":");
        push_json_string(json, client_id);
        json.push_str(",\"username\":");
        match self.username_of(client_id) {
            Some(username) => push_json_string(json, username),
            None => json.push_str("null"),
        }
    }

    /// Routes the event whose topic [`Shard::listened`] wrote, like a client's QoS 0 publish.
    fn publish_event(&mut self, payload: String, now: Instant) {
        let Some(events) = self.client_events.as_deref() else { return };
        let message = Arc::new(Message {
            topic: ByteString::from(events.topic.as_str()),
            payload: Bytes::from(payload),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                payload_format_indicator: Some(true),
                content_type: Some(ByteString::from_static("application/json")),
                ..Properties::default()
            },
            expires_at: None,
            publisher: ByteString::from_static("$SYS"),
        });
        // The client whose packet caused the event did not publish it: a slow subscriber of
        // events drops them (QoS 0) rather than pausing that client's reads.
        let ingress = self.backpressure.ingress.take();
        self.route(message, None, now);
        self.backpressure.ingress = ingress;
    }
}

/// Appends `text` as a JSON string (RFC 8259): quoted, with `"` and `\` escaped, and control
/// characters as `\n`, `\t`... or `\u00XX`. Anything else, non-ASCII included, is written as
/// is (the payload is UTF-8).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ch if ch < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(ch));
            }
            ch => out.push(ch),
        }
    }
    out.push('"');
}

/// Appends a client id as one topic level: `/`, `+` and `#` (which would split the level or
/// make the topic invalid) and `%` (so that the encoding can be undone) are percent-encoded;
/// every other character is kept. The payload's `clientid` is always the id as it is.
fn push_topic_level(out: &mut String, client_id: &str) {
    // Nearly every client id needs no encoding: copied whole.
    if !client_id.bytes().any(|b| matches!(b, b'/' | b'+' | b'#' | b'%')) {
        return out.push_str(client_id);
    }
    for ch in client_id.chars() {
        match ch {
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            ch => out.push(ch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, text);
        out
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json("plain-id_1"), "\"plain-id_1\"");
        assert_eq!(json(""), "\"\"");
        assert_eq!(json("a\"b"), "\"a\\\"b\"");
        assert_eq!(json("a\\b"), "\"a\\\\b\"");
        assert_eq!(json("\\\""), "\"\\\\\\\"\"");
        assert_eq!(json("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
        assert_eq!(json("\u{8}\u{c}"), "\"\\b\\f\"");
        assert_eq!(json("\u{1}x\u{1f}"), "\"\\u0001x\\u001f\"");
        // DEL and everything above the control characters are kept as they are.
        assert_eq!(json("\u{7f} "), "\"\u{7f} \"");
    }

    #[test]
    fn json_strings_keep_non_ascii_as_utf8() {
        assert_eq!(json("capteur-é"), "\"capteur-é\"");
        assert_eq!(json("датчик/温度"), "\"датчик/温度\"");
        assert_eq!(json("🚀\u{2028}"), "\"🚀\u{2028}\"");
    }

    #[test]
    fn client_ids_become_one_reversible_topic_level() {
        let level = |id: &str| {
            let mut out = String::new();
            push_topic_level(&mut out, id);
            out
        };
        assert_eq!(level("sensor-1"), "sensor-1");
        assert_eq!(level("a/b"), "a%2Fb");
        assert_eq!(level("+#"), "%2B%23");
        assert_eq!(level("100%"), "100%25");
        assert_eq!(level("$SYS"), "$SYS");
        assert_eq!(level("温度 é"), "温度 é");
    }

    #[test]
    fn every_departure_has_a_name_and_the_lost_connection_alone_no_code() {
        let all = [
            Departure::Normal(ReasonCode::NORMAL_DISCONNECTION),
            Departure::Lost,
            Departure::Takeover,
            Departure::KeepaliveTimeout,
            Departure::ProtocolError(ReasonCode::PROTOCOL_ERROR),
            Departure::Kicked,
            Departure::ServerShutdown,
            Departure::Fenced,
            Departure::StorageFailure,
        ];
        for departure in all {
            assert!(!departure.name().is_empty());
            assert_eq!(departure.reason_code().is_none(), departure == Departure::Lost);
        }
        assert_eq!(Departure::Takeover.reason_code(), Some(ReasonCode::SESSION_TAKEN_OVER));
    }
}

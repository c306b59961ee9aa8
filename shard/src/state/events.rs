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
//!
//! The engine can also take every event as it happens, whoever subscribes ([`EventSink`]: its
//! webhook, `event_webhook_url`), with or without the `$SYS` messages. The sink is called on
//! the shard, so it must only hand the event over (the engine's does a `try_send`).

use std::collections::HashMap;
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
pub struct ClientEvents {
    /// `$SYS/brokers/<node>/clients/`; `None` when events go to the sink only.
    prefix: Option<String>,
    /// Gives the events' timestamps (Unix milliseconds) from the shard's monotonic time.
    clock: WallClock,
    /// The topic of the event being published, kept between events so that an event nobody
    /// listens to allocates nothing.
    topic: String,
    /// Where every event is handed, whoever subscribes (the engine's webhook).
    sink: Option<EventSink>,
    /// With a sink: the address of each connection that gave one, so that the events after
    /// the connected one name it too (kept here, not in the connection, whose size is counted
    /// per idle client; dropped when the connection goes).
    peers: HashMap<ConnId, IpAddr>,
}

impl std::fmt::Debug for ClientEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEvents")
            .field("prefix", &self.prefix)
            .field("sink", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientEvents {
    /// Events of node `node` (one topic level: it must hold no `/`, `+` or `#`), stamped by
    /// `clock`, published on `$SYS`.
    pub fn new(node: &str, clock: WallClock) -> ClientEvents {
        assert!(
            !node.is_empty() && !node.contains(['/', '+', '#']),
            "a node name must be one topic level: {node:?}"
        );
        ClientEvents {
            prefix: Some(format!("$SYS/brokers/{node}/clients/")),
            ..Self::unpublished(clock)
        }
    }

    /// Events stamped by `clock` that are not published on `$SYS`: only a sink
    /// ([`ClientEvents::with_sink`]) gets them.
    pub fn unpublished(clock: WallClock) -> ClientEvents {
        ClientEvents {
            prefix: None,
            clock,
            topic: String::new(),
            sink: None,
            peers: HashMap::new(),
        }
    }

    /// Also hands every event to `sink`, whether anybody subscribes to it or not.
    pub fn with_sink(mut self, sink: EventSink) -> ClientEvents {
        self.sink = Some(sink);
        self
    }
}

/// Takes each client event on the shard that has it. It runs on the shard: it must not block
/// (hand the event over, or drop it).
pub type EventSink = Box<dyn FnMut(&ClientEvent<'_>)>;

/// One client event as an [`EventSink`] gets it: borrowed, for the sink to copy what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEvent<'a> {
    pub client_id: &'a str,
    /// The user the session is held to, when users are told apart (as in the `$SYS` events).
    pub username: Option<&'a str>,
    /// The client's address, when the engine gave it.
    pub peer: Option<IpAddr>,
    /// When it happened, in Unix milliseconds.
    pub unix_ms: u64,
    pub kind: EventKind<'a>,
}

/// What happened, with what the `$SYS` message of the event says about it. A SUBSCRIBE or an
/// UNSUBSCRIBE of several filters is one event per filter, as EMQX's webhook sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind<'a> {
    Connected {
        proto_ver: u8,
        keepalive_secs: u16,
        clean_start: bool,
        expiry_secs: u32,
    },
    Disconnected {
        /// The disconnected event's `reason` (`normal`, `connection_lost`, `takeover`, ...).
        reason: &'static str,
        reason_code: Option<u8>,
    },
    Subscribed {
        /// The filter as the client wrote it (`$share/` prefix included).
        topic: &'a str,
        qos: u8,
    },
    Unsubscribed {
        topic: &'a str,
    },
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
    /// The node is being drained: its client was told to use another server (0x9C).
    Drained,
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
            Departure::Drained => "use_another_server",
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
            Departure::Drained => Some(ReasonCode::USE_ANOTHER_SERVER),
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

    /// The connected event of `client_id` (on `conn`), just attached to its session.
    pub(super) fn connected_event(
        &mut self,
        conn: ConnId,
        client_id: &str,
        arrival: Arrival,
        now: Instant,
    ) {
        if let (Some(events), Some(ip)) = (self.client_events.as_deref_mut(), arrival.peer) {
            if events.sink.is_some() {
                events.peers.insert(conn, ip);
            }
        }
        let kind = EventKind::Connected {
            proto_ver: arrival.version.level(),
            keepalive_secs: arrival.keepalive_secs,
            clean_start: arrival.clean_start,
            expiry_secs: arrival.expiry_secs,
        };
        self.sink_event(client_id, Some(conn), kind, now);
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
        if self.sessions.get(&client_id).and_then(|session| session.conn) != Some(conn) {
            return;
        }
        let reason = departure.name();
        let reason_code = departure.reason_code().map(|code| code.0);
        self.sink_event(
            &client_id,
            Some(conn),
            EventKind::Disconnected { reason, reason_code },
            now,
        );
        let Some(unix_ms) = self.listened(&client_id, "disconnected", now) else { return };
        let mut json = String::with_capacity(160 + client_id.len());
        self.event_head(&mut json, &client_id);
        let _ = write!(json, ",\"proto_ver\":{},\"reason\":", version.level());
        push_json_string(&mut json, reason);
        match reason_code {
            Some(code) => {
                let _ = write!(json, ",\"reason_code\":{code}");
            }
            None => json.push_str(",\"reason_code\":null"),
        }
        let _ = write!(json, ",\"disconnected_at\":{unix_ms}}}");
        self.publish_event(json, now);
    }

    /// The connection `conn` is gone: its address, kept for its events, goes too.
    pub(super) fn forget_event_peer(&mut self, conn: ConnId) {
        if let Some(events) = self.client_events.as_deref_mut() {
            events.peers.remove(&conn);
        }
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
        for (filter, qos) in granted {
            let kind = EventKind::Subscribed { topic: filter, qos: *qos as u8 };
            self.sink_event(client_id, None, kind, now);
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
        for filter in removed {
            self.sink_event(client_id, None, EventKind::Unsubscribed { topic: filter }, now);
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

    /// Hands the event to the sink, if there is one. `conn` is the client's connection, or
    /// `None` for the session's current one; its address is the one its CONNECT came from.
    fn sink_event(
        &mut self,
        client_id: &str,
        conn: Option<ConnId>,
        kind: EventKind<'_>,
        now: Instant,
    ) {
        // Taken out while the sink runs: the event borrows the session's user name.
        let Some(mut events) = self.client_events.take() else { return };
        if let Some(sink) = events.sink.as_mut() {
            let conn = conn.or_else(|| self.sessions.get(client_id).and_then(|s| s.conn));
            let event = ClientEvent {
                client_id,
                username: self.username_of(client_id),
                peer: conn.and_then(|conn| events.peers.get(&conn).copied()),
                unix_ms: events.clock.unix_ms(now),
                kind,
            };
            sink(&event);
        }
        self.client_events = Some(events);
    }

    /// Writes the event's topic into the reused buffer and says when it happened (Unix ms) if
    /// anybody may receive it: a subscriber on this shard, on another shard, or on a peer node.
    /// `None` when events are off or not published on `$SYS`, nobody subscribes, or the topic would be too long for MQTT
    /// (a client id near the 65,535-byte limit).
    fn listened(&mut self, client_id: &str, event: &str, now: Instant) -> Option<u64> {
        let events = self.client_events.as_deref_mut()?;
        let prefix = events.prefix.as_deref()?;
        events.topic.clear();
        events.topic.push_str(prefix);
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
            Departure::Drained,
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

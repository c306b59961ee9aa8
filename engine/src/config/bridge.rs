//! The `[[bridge]]` tables of the config file: bridges to other MQTT brokers (docs/bridges.md).
//!
//! Each table is read by hand from its TOML value rather than through serde, so that an unknown
//! key or a bad value is one line naming `bridge.<name>.<key>`, the way an operator finds it.
//! Errors are plain strings that `config.rs` wraps, so this file imports nothing from it (the
//! engine's files are layers: ARCHITECTURE.md).

use std::path::PathBuf;
use std::time::Duration;

use shardmq_io::codec::{ProtocolVersion, QoS};
use toml::{Table, Value};

/// What the client id and user name of every bridge's local session start with
/// (`$bridge/<name>`); refused to clients (`connection.rs`).
pub const RESERVED_PREFIX: &str = "$bridge/";
/// The first wait before reconnecting to a remote broker, doubled after each failure.
pub const RECONNECT_MIN: Duration = Duration::from_secs(1);
/// The longest wait before reconnecting.
pub const RECONNECT_MAX: Duration = Duration::from_secs(60);
/// `queue_max_messages` by default.
pub const QUEUE_MAX_MESSAGES_DEFAULT: usize = 100_000;

/// One bridge to another broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub name: String,
    /// `host:port`, resolved at every connection attempt.
    pub address: String,
    pub protocol: ProtocolVersion,
    /// The client id on the remote broker (`<node>.<name>` by default).
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<BridgeTls>,
    pub topics: Vec<BridgeTopic>,
    pub keepalive_secs: u16,
    pub queue_max_messages: usize,
}

/// TLS to the remote broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    pub ca_file: PathBuf,
    /// A client certificate and its key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Which way a topic pattern's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local messages to the remote broker.
    Out,
    /// The remote broker's messages to local subscribers.
    In,
    Both,
}

impl Direction {
    pub fn outbound(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }
}

/// A topic pattern of a bridge, as Mosquitto's `topic PATTERN DIRECTION QOS LOCAL REMOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTopic {
    pub pattern: String,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl BridgeTopic {
    /// The filter of the local subscription (out) or the topic prefix messages get (in).
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The filter of the remote subscription (in).
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    /// The remote topic of a local message this pattern sends out: its local prefix replaced by
    /// the remote one. `None` when the topic does not start with the local prefix.
    pub fn to_remote(&self, local_topic: &str) -> Option<String> {
        let rest = local_topic.strip_prefix(self.local_prefix.as_str())?;
        Some(format!("{}{rest}", self.remote_prefix))
    }

    /// The local topic of a remote message this pattern brings in.
    pub fn to_local(&self, remote_topic: &str) -> Option<String> {
        let rest = remote_topic.strip_prefix(self.remote_prefix.as_str())?;
        Some(format!("{}{rest}", self.local_prefix))
    }
}

/// Reads every `[[bridge]]` table; `node` names the default client ids.
pub fn bridges(tables: &[Value], node: &str) -> Result<Vec<BridgeConfig>, String> {
    let mut bridges: Vec<BridgeConfig> = Vec::new();
    for (index, value) in tables.iter().enumerate() {
        let Some(table) = value.as_table() else {
            return Err(format!("bridge {index}: must be a table ([[bridge]])"));
        };
        let bridge = bridge(table, node)?;
        if bridges.iter().any(|other| other.name == bridge.name) {
            return Err(format!("bridge.{}: two bridges have this name", bridge.name));
        }
        bridges.push(bridge);
    }
    Ok(bridges)
}

const BRIDGE_KEYS: &[&str] = &[
    "name",
    "address",
    "protocol",
    "client_id",
    "username",
    "password_file",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "topics",
    "keepalive_secs",
    "queue_max_messages",
];

fn bridge(table: &Table, node: &str) -> Result<BridgeConfig, String> {
    let name = match table.get("name").and_then(Value::as_str) {
        Some(name) if valid_bridge_name(name) => name.to_string(),
        Some(name) => {
            return Err(format!(
                "bridge.{name}.name: use letters, digits, '-', '_' and '.' (at most 64)"
            ))
        }
        None => return Err("bridge: every [[bridge]] needs a `name` string".into()),
    };
    let keys = Keys { table, at: format!("bridge.{name}") };
    keys.only(BRIDGE_KEYS)?;
    let address = keys.string("address")?.ok_or_else(|| keys.error("address", "is required"))?;
    if address.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
        return Err(keys.error("address", &format!("{address:?} is not host:port")));
    }
    let protocol = match keys.string("protocol")?.as_deref() {
        None | Some("5") => ProtocolVersion::V5,
        Some("3.1.1") => ProtocolVersion::V3_1_1,
        Some(other) => {
            return Err(keys.error("protocol", &format!("{other:?}: use \"3.1.1\" or \"5\"")))
        }
    };
    let client_id = keys.string("client_id")?.unwrap_or_else(|| format!("{node}.{name}"));
    let username = keys.string("username")?;
    let password_file = keys.string("password_file")?.map(PathBuf::from);
    if password_file.is_some() && username.is_none() {
        return Err(keys.error("password_file", "needs `username`"));
    }
    let tls = tls(&keys)?;
    let topics = topics(&keys)?;
    let keepalive_secs = keys.integer("keepalive_secs", 60, 5, u64::from(u16::MAX))? as u16;
    let queue_max_messages =
        keys.integer("queue_max_messages", QUEUE_MAX_MESSAGES_DEFAULT as u64, 1, 1 << 32)? as usize;
    Ok(BridgeConfig {
        name,
        address,
        protocol,
        client_id,
        username,
        password_file,
        tls,
        topics,
        keepalive_secs,
        queue_max_messages,
    })
}

fn tls(keys: &Keys<'_>) -> Result<Option<BridgeTls>, String> {
    let on = match keys.table.get("tls") {
        None => false,
        Some(Value::Boolean(on)) => *on,
        Some(_) => return Err(keys.error("tls", "must be true or false")),
    };
    let ca_file = keys.string("ca_file")?.map(PathBuf::from);
    let cert_file = keys.string("cert_file")?.map(PathBuf::from);
    let key_file = keys.string("key_file")?.map(PathBuf::from);
    if !on {
        for (key, set) in [
            ("ca_file", ca_file.is_some()),
            ("cert_file", cert_file.is_some()),
            ("key_file", key_file.is_some()),
        ] {
            if set {
                return Err(keys.error(key, "is set but `tls` is not true"));
            }
        }
        return Ok(None);
    }
    let ca_file = ca_file.ok_or_else(|| keys.error("ca_file", "is required with `tls = true`"))?;
    let identity = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err(keys.error("cert_file", "needs `key_file`")),
        (None, Some(_)) => return Err(keys.error("key_file", "needs `cert_file`")),
    };
    Ok(Some(BridgeTls { ca_file, identity }))
}

const TOPIC_KEYS: &[&str] = &["pattern", "direction", "qos", "local_prefix", "remote_prefix"];

fn topics(keys: &Keys<'_>) -> Result<Vec<BridgeTopic>, String> {
    let Some(value) = keys.table.get("topics") else {
        return Err(keys.error("topics", "is required (at least one topic pattern)"));
    };
    let Some(list) = value.as_array().filter(|list| !list.is_empty()) else {
        return Err(keys.error("topics", "must be a non-empty list of { pattern = ... } tables"));
    };
    let mut topics = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let Some(table) = entry.as_table() else {
            return Err(keys.error("topics", &format!("entry {index} is not a table")));
        };
        let entry = Keys { table, at: format!("{}.topics[{index}]", keys.at) };
        entry.only(TOPIC_KEYS)?;
        topics.push(topic(&entry)?);
    }
    Ok(topics)
}

fn topic(keys: &Keys<'_>) -> Result<BridgeTopic, String> {
    let pattern = keys.string("pattern")?.ok_or_else(|| keys.error("pattern", "is required"))?;
    let direction = match keys.string("direction")?.as_deref() {
        None | Some("out") => Direction::Out,
        Some("in") => Direction::In,
        Some("both") => Direction::Both,
        Some(other) => {
            return Err(
                keys.error("direction", &format!("{other:?}: use \"out\", \"in\" or \"both\""))
            )
        }
    };
    let qos = match keys.integer("qos", 0, 0, 2)? {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let local_prefix = keys.string("local_prefix")?.unwrap_or_default();
    let remote_prefix = keys.string("remote_prefix")?.unwrap_or_default();
    let topic = BridgeTopic { pattern, direction, qos, local_prefix, remote_prefix };
    for (key, filter) in
        [("local_prefix", topic.local_filter()), ("remote_prefix", topic.remote_filter())]
    {
        if !valid_filter(&filter) {
            return Err(
                keys.error(key, &format!("makes the filter {filter:?}, which is not valid"))
            );
        }
    }
    Ok(topic)
}

/// A topic filter as MQTT allows it: `#` only as the last level, `+` only as a whole level.
fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(index, level)| match *level {
            "#" => index == levels.len() - 1,
            "+" => true,
            other => !other.contains(['#', '+']),
        })
}

/// A bridge name: part of the client id `$bridge/<name>` and of metric labels.
fn valid_bridge_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A table's keys, with the path errors name.
struct Keys<'a> {
    table: &'a Table,
    at: String,
}

impl Keys<'_> {
    fn error(&self, key: &str, what: &str) -> String {
        format!("{}.{key}: {what}", self.at)
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.table.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(self.error(key, "unknown key")),
            None => Ok(()),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.error(key, "must be a string")),
        }
    }

    fn integer(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
        match self.table.get(key) {
            None => Ok(default),
            Some(Value::Integer(n)) if (min as i128..=max as i128).contains(&i128::from(*n)) => {
                Ok(*n as u64)
            }
            Some(_) => Err(self.error(key, &format!("must be an integer from {min} to {max}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<BridgeConfig>, String> {
        let table: Table = toml::from_str(text).expect("TOML");
        let list = table.get("bridge").and_then(Value::as_array).cloned().unwrap_or_default();
        bridges(&list, "n1")
    }

    #[test]
    fn a_full_bridge() {
        let bridges = parse(
            "[[bridge]]\nname = \"up\"\naddress = \"broker.example:8883\"\nprotocol = \"3.1.1\"\n\
             username = \"u\"\npassword_file = \"pw\"\ntls = true\nca_file = \"ca.pem\"\n\
             keepalive_secs = 30\nqueue_max_messages = 10\n\
             topics = [{ pattern = \"sensors/#\", direction = \"both\", qos = 1, \
             local_prefix = \"site/\", remote_prefix = \"fleet/a/\" }, { pattern = \"cmd/+\", direction = \"in\" }]\n",
        )
        .expect("valid");
        let bridge = &bridges[0];
        assert_eq!(bridge.client_id, "n1.up");
        assert_eq!(bridge.protocol, ProtocolVersion::V3_1_1);
        assert_eq!(bridge.keepalive_secs, 30);
        assert_eq!(bridge.queue_max_messages, 10);
        assert_eq!(bridge.tls, Some(BridgeTls { ca_file: "ca.pem".into(), identity: None }));
        let topic = &bridge.topics[0];
        assert_eq!((topic.direction, topic.qos), (Direction::Both, QoS::AtLeastOnce));
        assert_eq!(topic.local_filter(), "site/sensors/#");
        assert_eq!(topic.remote_filter(), "fleet/a/sensors/#");
        assert_eq!(bridge.topics[1].direction, Direction::In);
        assert_eq!(bridge.topics[1].qos, QoS::AtMostOnce);
    }

    #[test]
    fn defaults() {
        let bridge = &parse(
            "[[bridge]]\nname = \"b\"\naddress = \"h:1883\"\ntopics = [{ pattern = \"#\" }]\n",
        )
        .expect("valid")[0];
        assert_eq!(bridge.protocol, ProtocolVersion::V5);
        assert_eq!(bridge.keepalive_secs, 60);
        assert_eq!(bridge.queue_max_messages, QUEUE_MAX_MESSAGES_DEFAULT);
        assert_eq!(bridge.topics[0].direction, Direction::Out);
    }

    #[test]
    fn errors_name_the_key() {
        let base =
            "[[bridge]]\nname = \"b\"\naddress = \"h:1883\"\ntopics = [{ pattern = \"#\" }]\n";
        for (extra, key) in [
            ("colour = 1\n", "bridge.b.colour: unknown key"),
            ("protocol = \"4\"\n", "bridge.b.protocol:"),
            ("keepalive_secs = -1\n", "bridge.b.keepalive_secs:"),
            ("queue_max_messages = 0\n", "bridge.b.queue_max_messages:"),
            ("ca_file = \"x\"\n", "bridge.b.ca_file:"),
            ("tls = true\n", "bridge.b.ca_file:"),
            ("password_file = \"x\"\n", "bridge.b.password_file:"),
        ] {
            let error = parse(&format!("{base}{extra}")).expect_err(extra).to_string();
            assert!(error.starts_with(key), "{extra}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        for (text, key) in [
            ("[[bridge]]\nname = \"b\"\naddress = \"h\"\ntopics = [{ pattern = \"#\" }]\n", "bridge.b.address:"),
            ("[[bridge]]\nname = \"b\"\naddress = \"h:1\"\n", "bridge.b.topics:"),
            ("[[bridge]]\nname = \"b\"\naddress = \"h:1\"\ntopics = [{ pattern = \"#\", qos = 3 }]\n", "bridge.b.topics[0].qos:"),
            ("[[bridge]]\nname = \"b\"\naddress = \"h:1\"\ntopics = [{ pattern = \"#\", direction = \"up\" }]\n", "bridge.b.topics[0].direction:"),
            ("[[bridge]]\nname = \"b\"\naddress = \"h:1\"\ntopics = [{ pattern = \"#\", local_prefix = \"a/#/\" }]\n", "bridge.b.topics[0].local_prefix:"),
            ("[[bridge]]\nname = \"b\"\naddress = \"h:1\"\ntopics = [{ pattern = \"#\", speed = 1 }]\n", "bridge.b.topics[0].speed:"),
            ("[[bridge]]\nname = \"a b\"\n", "bridge.a b.name:"),
        ] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.starts_with(key), "{text}: {error}");
        }
    }

    #[test]
    fn topic_mapping() {
        let topic = BridgeTopic {
            pattern: "sensors/#".into(),
            direction: Direction::Both,
            qos: QoS::AtLeastOnce,
            local_prefix: "site/".into(),
            remote_prefix: "fleet/a/".into(),
        };
        assert_eq!(topic.to_remote("site/sensors/t1").as_deref(), Some("fleet/a/sensors/t1"));
        assert_eq!(topic.to_local("fleet/a/sensors/t1").as_deref(), Some("site/sensors/t1"));
        assert_eq!(topic.to_remote("other/sensors/t1"), None);
        let plain =
            BridgeTopic { local_prefix: String::new(), remote_prefix: String::new(), ..topic };
        assert_eq!(plain.to_remote("sensors/t1").as_deref(), Some("sensors/t1"));
        assert!(valid_filter("a/+/b/#") && !valid_filter("a/#/b") && !valid_filter("a+/b"));
    }
}

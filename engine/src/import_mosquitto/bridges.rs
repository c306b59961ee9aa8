//! Mosquitto's bridge directives (`connection`, `address`, `topic`, `remote_*`, `bridge_*`) as
//! shardmq `[[bridge]]` tables (docs/bridges.md). Kept apart from the rest of the import, and
//! importing nothing from it, so the engine's files stay layered.

use toml::{Table, Value};

/// Directives of a Mosquitto bridge that have no `[[bridge]]` counterpart, and why.
const NOT_CARRIED: &[(&str, &str)] = &[
    ("bridge_attempt_unsubscribe", "shardmq never unsubscribes on the remote broker"),
    ("bridge_bind_address", "the kernel picks the source address"),
    ("bridge_capath", "give the CA certificates in one PEM file (`ca_file`)"),
    ("bridge_identity", "TLS-PSK is not supported"),
    ("bridge_psk", "TLS-PSK is not supported"),
    ("bridge_insecure", "the remote broker's certificate is always verified"),
    ("bridge_max_packet_size", "the remote broker's CONNACK says it"),
    ("bridge_outgoing_retain", "the retain flag is always carried"),
    ("bridge_require_ocsp", "not supported"),
    ("bridge_tls_version", "rustls' TLS 1.2 and 1.3"),
    ("bridge_alpn", "not supported"),
    ("cleansession", "the bridge always keeps its sessions on both sides (docs/bridges.md)"),
    ("local_cleansession", "the bridge's local session is always persistent"),
    ("idle_timeout", "bridges always run (`start_type automatic`)"),
    ("local_clientid", "the local session is always `$bridge/<name>`"),
    ("local_username", "the bridge acts locally as the user `$bridge/<name>`"),
    ("local_password", "the bridge does not log in locally"),
    ("notifications", "no notification topic: see the `shardmq_bridge_connected` metric"),
    ("notifications_local_only", "no notification topic"),
    ("notification_topic", "no notification topic: see the `shardmq_bridge_connected` metric"),
    ("restart_timeout", "the backoff is fixed: 1 s doubling to 60 s, jittered"),
    ("round_robin", "one address per bridge"),
    ("start_type", "bridges always run (`start_type automatic`)"),
    ("threshold", "not applicable"),
    ("try_private", "not needed: loops are prevented with No Local"),
];

/// Every directive this reader takes.
pub(super) fn is_bridge_directive(directive: &str) -> bool {
    matches!(
        directive,
        "connection"
            | "address"
            | "addresses"
            | "topic"
            | "bridge_protocol_version"
            | "remote_clientid"
            | "remote_username"
            | "remote_password"
            | "bridge_cafile"
            | "bridge_certfile"
            | "bridge_keyfile"
            | "keepalive_interval"
    ) || NOT_CARRIED.iter().any(|(name, _)| *name == directive)
}

/// The bridges read so far; the last is the one the lines belong to.
#[derive(Debug, Default)]
pub(super) struct Bridges {
    pub(super) tables: Vec<Table>,
}

impl Bridges {
    /// Takes one bridge directive; `Err(why)` when it does not carry over.
    pub(super) fn directive(&mut self, directive: &str, value: &str) -> Result<(), String> {
        if directive == "connection" {
            let mut table = Table::new();
            table.insert("name".into(), Value::String(value.to_owned()));
            self.tables.push(table);
            return Ok(());
        }
        if let Some((_, why)) = NOT_CARRIED.iter().find(|(name, _)| *name == directive) {
            return Err((*why).to_owned());
        }
        let Some(table) = self.tables.last_mut() else {
            return Err("outside a `connection` block".into());
        };
        let mut set = |key: &str, value: Value| {
            table.insert(key.to_owned(), value);
            Ok(())
        };
        match directive {
            "address" | "addresses" => {
                let mut all = value.split_whitespace();
                let first = all.next().unwrap_or_default();
                let address = match first.rsplit_once(':') {
                    Some((_, port)) if port.parse::<u16>().is_ok() => first.to_owned(),
                    _ => format!("{first}:1883"),
                };
                set("address", Value::String(address))?;
                match all.next() {
                    Some(_) => {
                        Err("only the first address is used (one address per bridge)".into())
                    }
                    None => Ok(()),
                }
            }
            "topic" => self.topic(value),
            "bridge_protocol_version" => match value {
                "mqttv50" => set("protocol", Value::String("5".into())),
                "mqttv311" => set("protocol", Value::String("3.1.1".into())),
                _ => Err("MQTT 3.1.1 and 5 only (`protocol`)".into()),
            },
            "remote_clientid" => set("client_id", Value::String(value.to_owned())),
            "remote_username" => set("username", Value::String(value.to_owned())),
            "remote_password" => {
                Err("write the password to a file readable by shardmq only and set `password_file`"
                    .into())
            }
            "bridge_cafile" => {
                set("tls", Value::Boolean(true))?;
                set("ca_file", Value::String(value.to_owned()))
            }
            "bridge_certfile" => set("cert_file", Value::String(value.to_owned())),
            "bridge_keyfile" => set("key_file", Value::String(value.to_owned())),
            "keepalive_interval" => match value.parse::<i64>() {
                Ok(secs) if (5..=65_535).contains(&secs) => {
                    set("keepalive_secs", Value::Integer(secs))
                }
                _ => Err("not a keepalive from 5 to 65535 seconds".into()),
            },
            _ => Err("not a bridge directive shardmq knows".into()),
        }
    }

    /// `topic PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`; `""` is an empty
    /// pattern or prefix, as in Mosquitto.
    fn topic(&mut self, value: &str) -> Result<(), String> {
        let words: Vec<&str> =
            value.split_whitespace().map(|word| if word == "\"\"" { "" } else { word }).collect();
        let Some(table) = self.tables.last_mut() else {
            return Err("outside a `connection` block".into());
        };
        let mut topic = Table::new();
        topic.insert(
            "pattern".into(),
            Value::String(words.first().copied().unwrap_or_default().into()),
        );
        if let Some(direction) = words.get(1) {
            if !["in", "out", "both"].contains(direction) {
                return Err(format!("direction {direction:?} is not in, out or both"));
            }
            topic.insert("direction".into(), Value::String((*direction).into()));
        }
        if let Some(qos) = words.get(2) {
            match qos.parse::<i64>() {
                Ok(qos @ 0..=2) => topic.insert("qos".into(), Value::Integer(qos)),
                _ => return Err(format!("QoS {qos:?} is not 0, 1 or 2")),
            };
        }
        if let (Some(local), Some(remote)) = (words.get(3), words.get(4)) {
            topic.insert("local_prefix".into(), Value::String((*local).into()));
            topic.insert("remote_prefix".into(), Value::String((*remote).into()));
        }
        let topics = table.entry("topics").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(topics) = topics {
            topics.push(Value::Table(topic));
        }
        Ok(())
    }

    /// The `[[bridge]]` tables as TOML, empty when there is none.
    pub(super) fn toml(&self) -> String {
        if self.tables.is_empty() {
            return String::new();
        }
        let mut root = Table::new();
        root.insert(
            "bridge".into(),
            Value::Array(self.tables.iter().cloned().map(Value::Table).collect()),
        );
        toml::to_string(&root).unwrap_or_default()
    }
}

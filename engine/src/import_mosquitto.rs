//! `shardmq import-mosquitto-conf FILE`: a Mosquitto 2.0 configuration file as shardmq TOML.
//!
//! Prints the TOML on standard output and, on standard error, each directive it cannot carry
//! over with why (docs/migrating-from-mosquitto.md maps every directive). Files named by
//! `include_dir` are read in order, as Mosquitto does. The password and ACL files stay as they
//! are: shardmq reads Mosquitto's formats.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bridges;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The Mosquitto configuration file (e.g. /etc/mosquitto/mosquitto.conf).
    file: PathBuf,
}

/// A directive that did not carry over: where, what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub place: String,
    pub directive: String,
    pub why: String,
}

/// The result of an import: TOML keys (sorted), notes for the TOML, and what was left out.
#[derive(Debug, Default)]
pub struct Imported {
    keys: BTreeMap<&'static str, toml::Value>,
    notes: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// The `[[bridge]]` tables, as TOML (they follow the top-level keys).
    bridges: String,
}

/// One Mosquitto listener as read so far.
#[derive(Debug, Default, Clone)]
struct Listener {
    port: u16,
    bind: Option<String>,
    websockets: bool,
    certfile: Option<String>,
    keyfile: Option<String>,
    cafile: Option<String>,
    require_certificate: bool,
    identity_as_username: bool,
    place: String,
}

#[derive(Debug, Default)]
struct Reader {
    imported: Imported,
    listeners: Vec<Listener>,
    /// The listener whose block the lines belong to (`None`: the default listener's).
    current: Option<usize>,
    default_listener: Listener,
    allow_anonymous_given: bool,
    bridges: bridges::Bridges,
}

/// Directives with no shardmq counterpart, and why.
const NOT_CARRIED: &[(&str, &str)] = &[
    ("pid_file", "shardmq writes no pid file (systemd tracks the process)"),
    ("user", "shardmq does not change user: start it as the user it should run as (dist/shardmq.service)"),
    ("log_dest", "shardmq logs to stderr (journald under systemd)"),
    ("log_type", "use `log` (error, warn, info, debug, trace)"),
    ("log_timestamp", "log lines always carry a timestamp"),
    ("log_timestamp_format", "log timestamps are RFC 3339"),
    ("log_facility", "shardmq logs to stderr"),
    ("connection_messages", "connects and disconnects are logged at `debug`"),
    ("websockets_log_level", "WebSocket events are logged with the rest"),
    ("websockets_headers_size", "the WebSocket upgrade request is bounded by the broker"),
    ("autosave_interval", "shardmq commits every state change to disk (group commits), not periodically"),
    ("autosave_on_changes", "shardmq commits every state change to disk (group commits)"),
    ("persistence_file", "shardmq keeps one database file per shard in `data_dir`"),
    ("persistent_client_expiration", "no equivalent for 3.1.1 sessions yet; MQTT 5 clients are capped by `max_session_expiry`"),
    ("allow_zero_length_clientid", "MQTT 5 clients without a client id always get one assigned (128 random bits); 3.1.1 clients need clean session"),
    ("auto_id_prefix", "assigned client ids are random, with no prefix"),
    ("clientid_prefixes", "not supported: restrict clients with the ACL or `use_username_as_clientid`"),
    ("check_retain_source", "retained messages are checked against the ACL when delivered"),
    ("upgrade_outgoing_qos", "not supported (deliveries use the subscription's QoS at most, as MQTT requires)"),
    ("allow_duplicate_messages", "not applicable: shardmq delivers one copy per matching subscription identifier set"),
    ("queue_qos0_messages", "QoS 0 messages are queued for connected clients only"),
    ("retain_available", "retained messages are always available"),
    ("set_tcp_nodelay", "TCP_NODELAY is always set"),
    ("memory_limit", "different semantics: `max_memory` refuses new connections above a resident size"),
    ("max_inflight_bytes", "not supported: use `max_inflight` and `max_queued_bytes`"),
    ("http_dir", "shardmq serves no files over HTTP"),
    ("socket_domain", "listen on an IPv4 or IPv6 address explicitly"),
    ("mount_point", "not supported"),
    ("accept_protocol_versions", "shardmq accepts MQTT 3.1.1 and 5 on every listener"),
    ("capath", "give the CA certificates in one PEM file (`tls_client_ca`)"),
    ("ciphers", "OpenSSL cipher names: set `tls_ciphers` to the IANA names of the suites (docs/configuration.md)"),
    ("ciphers_tls1.3", "OpenSSL cipher names: set `tls_ciphers` to the IANA names of the suites (docs/configuration.md)"),
    ("tls_engine", "not supported"),
    ("tls_engine_kpass_sha1", "not supported"),
    ("tls_keyform", "keys are PEM files"),
    ("dhparamfile", "not applicable (ECDHE only)"),
    ("ecdh_curve", "rustls's default curves"),
    ("require_certificate", "handled with `cafile` and `use_identity_as_username`"),
    ("use_subject_as_username", "only the certificate's common name can be the user name (`tls_cert_as_username`)"),
    ("psk_hint", "TLS-PSK is not supported"),
    ("psk_file", "TLS-PSK is not supported"),
    ("plugin", "plugins are not supported"),
    ("auth_plugin", "plugins are not supported"),
    ("global_plugin", "plugins are not supported"),
    ("auth_opt", "plugins are not supported"),
    ("plugin_opt", "plugins are not supported"),
    ("password_hash", "shardmq reads Mosquitto's hashes as they are"),
    ("enable_control_api", "the admin API is `admin_listen`"),
    ("sys_tree", "use `sys_interval` (0 turns $SYS off)"),
];

impl Reader {
    fn skip(&mut self, place: &str, directive: &str, why: impl Into<String>) {
        self.imported.skipped.push(Skipped {
            place: place.to_owned(),
            directive: directive.to_owned(),
            why: why.into(),
        });
    }

    fn set(&mut self, key: &'static str, value: impl Into<toml::Value>) {
        self.imported.keys.insert(key, value.into());
    }

    fn listener(&mut self) -> &mut Listener {
        match self.current {
            Some(index) => &mut self.listeners[index],
            None => &mut self.default_listener,
        }
    }

    /// Reads a file's lines (and the files its `include_dir` names).
    fn read_file(&mut self, path: &Path, depth: usize) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let place = format!("{}:{}", path.display(), index + 1);
            let (directive, value) = match line.split_once(char::is_whitespace) {
                Some((directive, value)) => (directive, value.trim()),
                None => (line, ""),
            };
            if directive == "include_dir" {
                self.include_dir(Path::new(value), depth, &place)?;
                continue;
            }
            self.directive(&place, directive, value);
        }
        Ok(())
    }

    fn include_dir(&mut self, dir: &Path, depth: usize, place: &str) -> Result<(), String> {
        if depth >= 8 {
            self.skip(place, "include_dir", "nested more than 8 levels");
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            self.skip(place, "include_dir", format!("cannot read {}", dir.display()));
            return Ok(());
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
            .collect();
        files.sort();
        for file in files {
            self.read_file(&file, depth + 1)?;
        }
        Ok(())
    }

    fn directive(&mut self, place: &str, directive: &str, value: &str) {
        let number = |value: &str| value.parse::<i64>().ok();
        let boolean = match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        if bridges::is_bridge_directive(directive) {
            if let Err(why) = self.bridges.directive(directive, value) {
                self.skip(place, directive, why);
            }
            return;
        }
        match directive {
            "listener" => self.open_listener(place, value),
            "port" => match value.parse::<u16>() {
                Ok(port) => self.default_listener.port = port,
                Err(_) => self.skip(place, directive, "not a port number"),
            },
            "bind_address" => self.default_listener.bind = Some(value.to_owned()),
            "bind_interface" => {
                self.skip(place, directive, "listen on the interface's address instead")
            }
            "protocol" => match value {
                "mqtt" => self.listener().websockets = false,
                "websockets" => self.listener().websockets = true,
                _ => self.skip(place, directive, "only mqtt and websockets listeners exist"),
            },
            "certfile" => self.listener().certfile = Some(value.to_owned()),
            "keyfile" => self.listener().keyfile = Some(value.to_owned()),
            "cafile" => self.listener().cafile = Some(value.to_owned()),
            // One revocation list and one lowest version for every TLS listener in shardmq.
            "crlfile" => self.set("tls_crl", value),
            "tls_version" => match value {
                "tlsv1.3" => self.set("tls_min_version", "1.3"),
                "tlsv1.2" => self.set("tls_min_version", "1.2"),
                _ => self.skip(place, directive, "TLS 1.2 and 1.3 only (`tls_min_version`)"),
            },
            "require_certificate" if boolean.is_some() => {
                self.listener().require_certificate = boolean == Some(true)
            }
            "use_identity_as_username" if boolean.is_some() => {
                self.listener().identity_as_username = boolean == Some(true)
            }
            "password_file" | "acl_file" => {
                let key = if directive == "password_file" { "password_file" } else { "acl_file" };
                self.set(key, value);
            }
            "allow_anonymous" if boolean.is_some() => {
                self.allow_anonymous_given = true;
                self.set("allow_anonymous", boolean == Some(true));
            }
            "use_username_as_clientid" if boolean.is_some() => {
                self.set("use_username_as_clientid", boolean == Some(true))
            }
            "per_listener_settings" if boolean == Some(true) => self.skip(
                place,
                directive,
                "settings are node-wide in shardmq: each listener's were applied to all",
            ),
            "per_listener_settings" => {}
            "persistence" if boolean == Some(false) => self.skip(
                place,
                directive,
                "shardmq always stores persistent sessions and retained messages",
            ),
            "persistence" => {}
            "persistence_location" => self.set("data_dir", value),
            _ => self.limit(place, directive, value, number(value)),
        }
    }

    /// Numeric limits, and everything else.
    fn limit(&mut self, place: &str, directive: &str, value: &str, number: Option<i64>) {
        let key = match directive {
            "max_inflight_messages" => Some(("max_inflight", 1, 65_535)),
            "max_queued_messages" => Some(("max_queued_messages", 1, i64::MAX)),
            "max_queued_bytes" => Some(("max_queued_bytes", 1, i64::MAX)),
            "max_packet_size" | "message_size_limit" => Some(("max_packet_size", 64, 268_435_455)),
            "max_keepalive" => Some(("max_keepalive", 1, 65_535)),
            "max_connections" => Some(("max_connections", 1, i64::MAX)),
            "max_topic_alias" => Some(("max_topic_alias", 0, 65_535)),
            "sys_interval" => Some(("sys_interval", 0, i64::MAX)),
            _ => None,
        };
        if let Some((key, low, high)) = key {
            match number {
                // Mosquitto's 0 (or -1) is "no limit": shardmq's default then applies.
                Some(n) if n <= 0 && low > 0 => self.skip(
                    place,
                    directive,
                    format!(
                        "{value} means no limit in Mosquitto; shardmq keeps its default `{key}`"
                    ),
                ),
                Some(n) if (low..=high).contains(&n) => self.set(key, n),
                _ => self.skip(place, directive, format!("{value:?} is not a valid `{key}`")),
            }
            return;
        }
        let why = if let Some((_, why)) = NOT_CARRIED.iter().find(|(name, _)| *name == directive) {
            (*why).to_owned()
        } else if directive.starts_with("plugin_opt_") || directive.starts_with("auth_opt_") {
            "plugins are not supported".to_owned()
        } else {
            "not a Mosquitto 2.0 directive shardmq knows".to_owned()
        };
        self.skip(place, directive, why);
    }

    fn open_listener(&mut self, place: &str, value: &str) {
        let mut parts = value.split_whitespace();
        let port = parts.next().and_then(|port| port.parse::<u16>().ok());
        match port {
            Some(0) => self.skip(place, "listener", "unix socket listeners are not supported"),
            Some(port) => {
                let bind = parts.next().map(str::to_owned);
                let listener =
                    Listener { port, bind, place: place.to_owned(), ..Listener::default() };
                self.listeners.push(listener);
                self.current = Some(self.listeners.len() - 1);
                return;
            }
            None => self.skip(place, "listener", "not a port number"),
        }
        // The lines of a listener that is not carried over must not change another's.
        self.listeners.push(Listener { place: place.to_owned(), ..Listener::default() });
        self.current = Some(self.listeners.len() - 1);
    }

    /// Turns the listeners read into shardmq's one listener of each kind.
    fn finish_listeners(&mut self) {
        let mut listeners = std::mem::take(&mut self.listeners);
        let default = std::mem::take(&mut self.default_listener);
        if default.port != 0 || default.bind.is_some() {
            let port = if default.port == 0 { 1883 } else { default.port };
            listeners.insert(0, Listener { port, place: "port".into(), ..default });
        }
        let mut tls: Option<Listener> = None;
        for listener in listeners.into_iter().filter(|listener| listener.port != 0) {
            let secure = listener.certfile.is_some() || listener.keyfile.is_some();
            let key = match (listener.websockets, secure) {
                (false, false) => "listen",
                (false, true) => "tls_listen",
                (true, false) => "ws_listen",
                (true, true) => "wss_listen",
            };
            if self.imported.keys.contains_key(key) {
                let why = format!("shardmq has one `{key}` listener; the first one was kept");
                self.skip(&listener.place.clone(), "listener", why);
                continue;
            }
            let host = listener.bind.clone().unwrap_or_else(|| "0.0.0.0".to_owned());
            let address = match host.contains(':') {
                true => format!("[{host}]:{}", listener.port),
                false => format!("{host}:{}", listener.port),
            };
            self.set(key, address);
            if secure && tls.is_none() {
                tls = Some(listener);
            }
        }
        if let Some(tls) = tls {
            self.tls(&tls);
        }
    }

    fn tls(&mut self, listener: &Listener) {
        if let Some(cert) = &listener.certfile {
            self.set("tls_cert", cert.as_str());
        }
        if let Some(key) = &listener.keyfile {
            self.set("tls_key", key.as_str());
        }
        match (&listener.cafile, listener.require_certificate) {
            (Some(ca), true) => {
                self.set("tls_client_ca", ca.as_str());
                if listener.identity_as_username {
                    self.set("tls_cert_as_username", true);
                }
            }
            (Some(_), false) => self.imported.notes.push(
                "# `cafile` without `require_certificate`: clients' certificates are not asked \
                 for, so it is not carried over."
                    .into(),
            ),
            (None, _) => {}
        }
    }

    fn finish(mut self) -> Imported {
        let any_listener = !self.listeners.is_empty() || self.default_listener.port != 0;
        self.finish_listeners();
        // Mosquitto 2.0 refuses anonymous clients on configured listeners unless told otherwise;
        // shardmq would accept them on loopback.
        if any_listener && !self.allow_anonymous_given {
            self.set("allow_anonymous", false);
        }
        if !any_listener {
            self.imported.notes.push(
                "# No listener configured: Mosquitto then listens on localhost:1883 only, and so \
                 does shardmq without authentication (its loopback-only default)."
                    .into(),
            );
        }
        let users_told_apart = ["password_file", "acl_file", "tls_cert_as_username"]
            .iter()
            .any(|key| self.imported.keys.contains_key(key));
        if users_told_apart {
            self.imported.notes.push(
                "# Mosquitto lets any user take over a client id; shardmq refuses a CONNECT of \
                 another user\n# naming a client id whose session is someone's (0x87). To keep \
                 Mosquitto's behaviour:\n# session_takeover_any_user = true"
                    .into(),
            );
        }
        self.imported.bridges = self.bridges.toml();
        self.imported
    }
}

/// Reads `path` (and what it includes) as Mosquitto would.
pub fn import(path: &Path) -> Result<Imported, String> {
    let mut reader = Reader::default();
    reader.read_file(path, 0)?;
    Ok(reader.finish())
}

impl Imported {
    /// The TOML for `shardmq serve --config`.
    pub fn toml(&self, source: &Path) -> String {
        let mut out = format!(
            "# shardmq configuration imported from {} by `shardmq import-mosquitto-conf`.\n\
             # Password and ACL files are used as they are (shardmq reads Mosquitto's formats).\n",
            source.display()
        );
        for (key, value) in &self.keys {
            out.push_str(&format!("{key} = {value}\n"));
        }
        for note in &self.notes {
            out.push('\n');
            out.push_str(note);
            out.push('\n');
        }
        if !self.bridges.is_empty() {
            out.push_str("\n# Bridges (docs/bridges.md).\n");
            out.push_str(&self.bridges);
        }
        out
    }
}

pub fn main(args: ImportArgs) -> ExitCode {
    match import(&args.file) {
        Ok(imported) => {
            print!("{}", imported.toml(&args.file));
            for skipped in &imported.skipped {
                eprintln!(
                    "not carried over: {} `{}`: {}",
                    skipped.place, skipped.directive, skipped.why
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("shardmq import-mosquitto-conf: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(text: &str) -> (String, Vec<Skipped>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, text).unwrap();
        let imported = import(&path).unwrap();
        (imported.toml(Path::new("mosquitto.conf")), imported.skipped)
    }

    fn skipped(skipped: &[Skipped]) -> Vec<&str> {
        skipped.iter().map(|s| s.directive.as_str()).collect()
    }

    #[test]
    fn listeners_tls_files_and_limits_carry_over() {
        let (toml, skipped_lines) = import_text(
            "# a typical broker\n\
             per_listener_settings false\n\
             listener 1883 10.0.0.5\n\
             listener 8883\n\
             certfile /etc/mosquitto/certs/server.pem\n\
             keyfile /etc/mosquitto/certs/server.key\n\
             cafile /etc/mosquitto/ca_certificates/ca.pem\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             listener 9001\n\
             protocol websockets\n\
             listener 1884\n\
             password_file /etc/mosquitto/passwd\n\
             acl_file /etc/mosquitto/acl\n\
             max_inflight_messages 40\n\
             max_queued_messages 0\n\
             message_size_limit 1048576\n\
             persistence true\n\
             persistence_location /var/lib/mosquitto/\n\
             log_dest file /var/log/mosquitto/mosquitto.log\n\
             connection upstream\n\
             address 10.0.0.9:1883\n\
             topic # out 1\n\
             topic sensors/# both 1 site/ fleet/a/\n\
             topic \"\" in 0 cmd/in remote/cmd\n\
             bridge_protocol_version mqttv311\n\
             remote_clientid edge-1\n\
             remote_username edge\n\
             remote_password secret\n\
             bridge_cafile /etc/mosquitto/ca.pem\n\
             try_private true\n",
        );
        let parsed: toml::Table = toml.parse().unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let get = |key: &str| parsed.get(key).map(ToString::to_string);
        assert_eq!(get("listen").as_deref(), Some("\"10.0.0.5:1883\""));
        assert_eq!(get("tls_listen").as_deref(), Some("\"0.0.0.0:8883\""));
        assert_eq!(get("ws_listen").as_deref(), Some("\"0.0.0.0:9001\""));
        assert_eq!(
            get("tls_client_ca").as_deref(),
            Some("\"/etc/mosquitto/ca_certificates/ca.pem\"")
        );
        assert_eq!(get("tls_cert_as_username").as_deref(), Some("true"));
        assert_eq!(get("max_inflight").as_deref(), Some("40"));
        assert_eq!(get("max_packet_size").as_deref(), Some("1048576"));
        assert_eq!(get("data_dir").as_deref(), Some("\"/var/lib/mosquitto/\""));
        assert_eq!(get("allow_anonymous").as_deref(), Some("false"), "Mosquitto 2's default");
        assert!(toml.contains("# session_takeover_any_user = true"), "{toml}");
        assert_eq!(get("max_queued_messages"), None, "0 is no limit in Mosquitto");
        let left = skipped(&skipped_lines);
        for directive in
            ["listener", "max_queued_messages", "log_dest", "remote_password", "try_private"]
        {
            assert!(left.contains(&directive), "{directive} not reported: {left:?}");
        }
        for directive in ["connection", "address", "topic", "remote_clientid", "bridge_cafile"] {
            assert!(!left.contains(&directive), "{directive} reported: {left:?}");
        }
        // The bridge, as `serve` reads it.
        let tables = parsed.get("bridge").and_then(toml::Value::as_array).expect("[[bridge]]");
        let bridges = crate::config::bridge::bridges(tables, "n1").expect("a valid bridge");
        let bridge = &bridges[0];
        assert_eq!((bridge.name.as_str(), bridge.address.as_str()), ("upstream", "10.0.0.9:1883"));
        assert_eq!(bridge.client_id, "edge-1");
        assert_eq!(bridge.username.as_deref(), Some("edge"));
        assert_eq!(bridge.protocol, shardmq_io::codec::ProtocolVersion::V3_1_1);
        assert!(bridge.tls.is_some());
        assert_eq!(bridge.topics.len(), 3);
        assert_eq!(bridge.topics[1].local_filter(), "site/sensors/#");
        assert_eq!(bridge.topics[1].remote_filter(), "fleet/a/sensors/#");
        assert_eq!(bridge.topics[2].local_filter(), "cmd/in");
        assert_eq!(bridge.topics[2].remote_filter(), "remote/cmd");
        // The second plain listener (1884) is reported, not merged.
        assert!(skipped_lines
            .iter()
            .any(|s| s.directive == "listener" && s.why.contains("one `listen`")));
    }

    #[test]
    fn no_listener_and_unknown_directives() {
        let (toml, skipped_lines) = import_text("allow_anonymous true\nfrobnicate 3\n");
        assert!(!toml.contains("listen ="), "{toml}");
        assert!(toml.contains("allow_anonymous = true"));
        assert_eq!(skipped(&skipped_lines), ["frobnicate"]);
        assert!(skipped_lines[0].place.ends_with(":2"), "{skipped_lines:?}");
    }

    #[test]
    fn include_dir_is_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        std::fs::write(conf_d.join("b.conf"), "max_keepalive 120\n").unwrap();
        std::fs::write(conf_d.join("a.conf"), "max_keepalive 60\nlistener 1883\n").unwrap();
        std::fs::write(conf_d.join("ignored.txt"), "max_keepalive 5\n").unwrap();
        let main = dir.path().join("mosquitto.conf");
        std::fs::write(&main, format!("include_dir {}\n", conf_d.display())).unwrap();
        let toml = import(&main).unwrap().toml(&main);
        assert!(toml.contains("max_keepalive = 120"), "{toml}");
        assert!(toml.contains("listen = \"0.0.0.0:1883\""), "{toml}");
    }
}

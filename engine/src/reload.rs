//! SIGHUP for the configuration: the file given with `--config` is read again (flags still win),
//! and what can change while running takes effect: the log filter at once, the limits and the
//! connect rate on every shard's next tick (for what happens from then on), the memory
//! high-water mark on the watch's next check. Limits a CONNACK advertises (maximum packet size,
//! receive maximum, topic alias maximum) stay until a restart: connected clients rely on them. A file that no
//! longer parses keeps everything as it is, and the log says why; keys that need a restart
//! (addresses, shards, the data directory, …) are named in the log and left alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{Config, ServeArgs};
use crate::overload::MemoryWatch;

/// Sets the log filter (`log`): made by `main` with the subscriber it installed.
pub type SetLogFilter = Box<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// The configuration in force, shared by every shard: each compares [`generation`] with the one
/// it applied, on its tick.
///
/// [`generation`]: LiveConfig::generation
#[derive(Debug)]
pub(crate) struct LiveConfig {
    generation: AtomicU64,
    current: RwLock<Arc<Config>>,
}

impl LiveConfig {
    pub(crate) fn new(config: Config) -> LiveConfig {
        LiveConfig { generation: AtomicU64::new(0), current: RwLock::new(Arc::new(config)) }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configuration in force and its generation.
    pub(crate) fn current(&self) -> (u64, Arc<Config>) {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        (self.generation(), current)
    }

    fn replace(&self, config: Config) {
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// What SIGHUP needs to read the configuration again and apply it.
pub(crate) struct Reloader {
    /// The command line's flags (with `--config`), resolved again over the file each time.
    args: Mutex<ServeArgs>,
    set_log_filter: SetLogFilter,
    live: Arc<LiveConfig>,
    memory: Arc<MemoryWatch>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").field("live", &self.live).finish_non_exhaustive()
    }
}

impl Reloader {
    pub(crate) fn new(
        args: ServeArgs,
        set_log_filter: SetLogFilter,
        live: Arc<LiveConfig>,
        memory: Arc<MemoryWatch>,
    ) -> Reloader {
        Reloader { args: Mutex::new(args), set_log_filter, live, memory }
    }

    /// Reads the configuration again and applies what may change while running.
    pub(crate) fn reload(&self) {
        let args = self.args.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let new = match args.resolve() {
            Ok(config) => config,
            Err(error) => {
                tracing::error!("{error}; keeping the configuration in force");
                return;
            }
        };
        let (_, old) = self.live.current();
        if let Err(error) = (self.set_log_filter)(&new.log) {
            tracing::error!("invalid value for `log`: {error}; keeping the log filter in force");
            return;
        }
        let restart = restart_only_changes(&old, &new);
        if !restart.is_empty() {
            tracing::warn!(
                "changed keys that take effect only after a restart: {}",
                restart.join(", ")
            );
        }
        self.memory.set_max(new.memory_max);
        // Keys that need a restart keep their running value, so shards never see them change.
        let mut applied = (*old).clone();
        applied.log = new.log;
        // What a CONNACK advertises stays as connected clients were told (restart-only).
        let mut limits = new.limits;
        limits.packet_bytes_max = old.limits.packet_bytes_max;
        limits.inflight_max = old.limits.inflight_max;
        limits.topic_alias_max = old.limits.topic_alias_max;
        applied.limits = limits;
        applied.connect_rate_max = new.connect_rate_max;
        applied.memory_max = new.memory_max;
        // Read by each new WebSocket upgrade (the shards take it at their next tick).
        applied.ws_origins = new.ws_origins;
        self.live.replace(applied);
        tracing::info!(
            "reloaded the configuration (log filter, limits, connect rate, memory, WebSocket origins)"
        );
    }
}

/// The keys whose new value differs from the running one but is read only at start.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key, differs: bool| {
        if differs {
            changed.push(key);
        }
    };
    check("listen", old.listen != new.listen);
    check("tls_listen", old.tls_listen != new.tls_listen);
    check("ws_listen", old.ws_listen != new.ws_listen);
    check("wss_listen", old.wss_listen != new.wss_listen);
    check("proxy_protocol/tls_/ws_/wss_proxy_protocol", old.proxy_protocol != new.proxy_protocol);
    check("tls_cert/tls_key/tls_client_ca", old.tls != new.tls);
    check("shards", old.shards != new.shards);
    check("data_dir", old.data_dir != new.data_dir);
    check("durability", old.durability != new.durability);
    check("log_format", old.log_format != new.log_format);
    check("admin_listen", old.admin_listen != new.admin_listen);
    // The file's content is reread on SIGHUP; which file it is, only at start.
    check("admin_token_file", old.admin_token_file != new.admin_token_file);
    check("sys_interval", old.sys_interval != new.sys_interval);
    check("client_events", old.client_events != new.client_events);
    // The webhook's thread and the shards' sinks are made at start.
    check("event_webhook_*", old.event_webhook != new.event_webhook);
    let services_differ = old.security.services != new.security.services;
    let without_services = |config: &Config| crate::config::Security {
        services: crate::config::AuthServices::default(),
        ..config.security.clone()
    };
    check("password_file/acl_file/allow_anonymous", without_services(old) != without_services(new));
    // The JWT files' content is reread; which files and services, only at start.
    check("auth_http_*/acl_http_*/jwt_*", services_differ);
    check("cluster keys", format!("{:?}", old.cluster) != format!("{:?}", new.cluster));
    // Each bridge's task keeps the configuration it started with.
    check("[[bridge]]", old.bridges != new.bridges);
    check("max_packet_size", old.limits.packet_bytes_max != new.limits.packet_bytes_max);
    check("max_inflight", old.limits.inflight_max != new.limits.inflight_max);
    check("max_topic_alias", old.limits.topic_alias_max != new.limits.topic_alias_max);
    changed
}

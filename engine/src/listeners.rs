//! The node's client listeners: plain MQTT, MQTT over TLS, MQTT over WebSocket and over secure
//! WebSocket. Each is bound once per shard (SO_REUSEPORT), so every shard accepts on every
//! listener; the layers under MQTT are `shardmq_io::transport`'s.
//!
//! The TLS certificate, key and client CA are read at start-up and again on SIGHUP: a new
//! connection takes the configuration in force when it is accepted, and a bad new file keeps
//! the old one in force (the log says why).

use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use shardmq_io::runtime::{bind_listener_sockets, ListenerSocket};
use shardmq_io::transport::{
    load_tls_config, AllowedOrigins, LayerKind, ServerConfig, TlsConfigError,
};

use crate::config::{Config, TlsFiles};

/// Pending connections the kernel queues per listener (capped by `net.core.somaxconn`).
pub(crate) const LISTEN_BACKLOG: i32 = 4096;

/// What a listener puts under MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Mqtt,
    Tls,
    WebSocket,
    SecureWebSocket,
}

impl ListenerKind {
    fn name(self) -> &'static str {
        match self {
            ListenerKind::Mqtt => "MQTT",
            ListenerKind::Tls => "MQTT over TLS",
            ListenerKind::WebSocket => "MQTT over WebSocket",
            ListenerKind::SecureWebSocket => "MQTT over secure WebSocket",
        }
    }

    /// Whether the listener's connections start with a TLS handshake.
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::SecureWebSocket)
    }

    /// The layers for a connection accepted now (`None` for plain MQTT); `origins` gives the
    /// web pages WebSocket listeners accept now.
    pub(crate) fn layer(
        self,
        tls: Option<&TlsCertificates>,
        origins: impl FnOnce() -> Arc<AllowedOrigins>,
    ) -> Option<LayerKind> {
        let tls = || tls.expect("TLS listeners are bound only with TLS configured");
        match self {
            ListenerKind::Mqtt => None,
            ListenerKind::Tls => Some(LayerKind::Tls(tls().current())),
            ListenerKind::WebSocket => Some(LayerKind::WebSocket(origins())),
            ListenerKind::SecureWebSocket => {
                Some(LayerKind::TlsWebSocket(tls().current_wss(), origins()))
            }
        }
    }
}

/// One listener's socket for one shard.
pub(crate) struct ShardListener {
    pub(crate) kind: ListenerKind,
    pub(crate) socket: ListenerSocket,
    /// Its connections start with a PROXY header naming the client (`proxy_protocol`).
    pub(crate) proxy_protocol: bool,
}

/// Binds every configured listener, one socket per shard each: the list for each shard.
pub(crate) fn bind(config: &Config, shards: usize) -> anyhow::Result<Vec<Vec<ShardListener>>> {
    let proxy = &config.proxy_protocol;
    let wanted = [
        (ListenerKind::Mqtt, Some(config.listen), "listen", proxy.mqtt),
        (ListenerKind::Tls, config.tls_listen, "tls_listen", proxy.tls),
        (ListenerKind::WebSocket, config.ws_listen, "ws_listen", proxy.ws),
        (ListenerKind::SecureWebSocket, config.wss_listen, "wss_listen", proxy.wss),
    ];
    let mut per_shard: Vec<Vec<ShardListener>> = (0..shards).map(|_| Vec::new()).collect();
    for (kind, address, key, proxy_protocol) in wanted {
        let Some(address) = address else { continue };
        let sockets = bind_listener_sockets(address, LISTEN_BACKLOG, shards)
            .with_context(|| format!("cannot listen on {address} (`{key}`)"))?;
        let bound = sockets[0].local_addr().context("listener address")?;
        let behind = if proxy_protocol { ", behind a load balancer (PROXY protocol)" } else { "" };
        tracing::info!("listening for {} on {bound} ({shards} shards){behind}", kind.name());
        for (shard, socket) in per_shard.iter_mut().zip(sockets) {
            shard.push(ShardListener { kind, socket, proxy_protocol });
        }
    }
    Ok(per_shard)
}

/// The TLS server configurations in force (the TLS listener's, and the secure WebSocket
/// listener's where it has a certificate of its own), shared by every shard; replaced by
/// [`reload`].
///
/// [`reload`]: TlsCertificates::reload
#[derive(Debug)]
pub(crate) struct TlsCertificates {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// `wss_cert`'s configuration; `None`: the secure WebSocket listener uses `current`.
    wss: RwLock<Option<Arc<ServerConfig>>>,
}

impl TlsCertificates {
    /// Reads the files; one line naming the bad file if they cannot be used.
    pub(crate) fn load(files: &TlsFiles) -> anyhow::Result<TlsCertificates> {
        let (config, wss) = load_all(files).context("cannot use the TLS files")?;
        Ok(TlsCertificates {
            files: files.clone(),
            current: RwLock::new(config),
            wss: RwLock::new(wss),
        })
    }

    /// The configuration for a connection accepted now on the TLS listener.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The configuration for a connection accepted now on the secure WebSocket listener.
    pub(crate) fn current_wss(&self) -> Arc<ServerConfig> {
        let wss = self.wss.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        wss.unwrap_or_else(|| self.current())
    }

    pub(crate) fn certificate_as_username(&self) -> bool {
        self.files.certificate_as_username
    }

    /// SIGHUP: reads the files again (certificates, keys, client CA, revocation lists);
    /// connections already open keep their session keys. A file that cannot be used keeps
    /// every configuration in force.
    pub(crate) fn reload(&self) {
        let files = &self.files;
        match load_all(files) {
            Ok((config, wss)) => {
                *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
                *self.wss.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = wss;
                tracing::info!("reloaded the TLS certificate {}", files.certificate.display());
            }
            Err(error) => tracing::error!(
                "cannot use the TLS files: {error}; keeping the certificate in force"
            ),
        }
    }
}

/// The TLS listener's configuration, and the secure WebSocket listener's own if it has one.
type Loaded = (Arc<ServerConfig>, Option<Arc<ServerConfig>>);

fn load_all(files: &TlsFiles) -> Result<Loaded, TlsConfigError> {
    let ca = files.client_ca.as_deref();
    let config = load_tls_config(&files.certificate, &files.key, ca, &files.policy)?;
    let wss = match &files.wss_certificate {
        Some((certificate, key)) => Some(load_tls_config(certificate, key, ca, &files.policy)?),
        None => None,
    };
    Ok((config, wss))
}

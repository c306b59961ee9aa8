//! Who may open a node link: TLS against the cluster CA (reloaded on SIGHUP), a bound on links
//! not yet authenticated and on how long they may take, and the refusals, each one log line
//! naming the peer's address and why, and a counter in `/metrics`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shardmq_io::link_tls::{load_link_tls, LinkTlsConfig, LinkTlsFiles};

/// How long an accepted link may take to finish its TLS handshake and send its hello; and a
/// link this node opens, its handshake.
pub(crate) const LINK_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Accepted links not yet authenticated (handshake or hello under way) per shard at once; one
/// more is closed at once (its peer retries). Each peer shard opens one link to each shard, so
/// when a node starts, every peer's link to it arrives at once: at 16, a 20-node cluster saw
/// a few refused at every start; 64 lets a cluster of that many nodes in at once.
pub(crate) const LINK_UNAUTHENTICATED_MAX: usize = 64;
/// The same refusal is logged at most once per this interval (with the count of the others).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The link TLS configuration in force, shared by every shard; replaced by [`reload`].
///
/// [`reload`]: LinkCertificates::reload
#[derive(Debug)]
pub(crate) struct LinkCertificates {
    files: LinkTlsFiles,
    current: RwLock<LinkTlsConfig>,
}

impl LinkCertificates {
    /// Reads the files; one line naming the bad file if they cannot be used.
    pub(crate) fn load(files: &LinkTlsFiles) -> anyhow::Result<LinkCertificates> {
        let config = load_link_tls(files).context("cannot use the link TLS files")?;
        Ok(LinkCertificates { files: files.clone(), current: RwLock::new(config) })
    }

    /// The configuration for a link opened or accepted now.
    pub(crate) fn current(&self) -> LinkTlsConfig {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// SIGHUP: reads the files again; links already up keep their session keys, new ones
    /// use the new certificate and CA.
    pub(crate) fn reload(&self) {
        match load_link_tls(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
                tracing::info!(
                    "reloaded the link TLS certificate {}",
                    self.files.certificate.display()
                );
            }
            Err(error) => tracing::error!(
                "cannot use the link TLS files: {error}; keeping the certificate in force"
            ),
        }
    }
}

/// Why an accepted link was closed before it was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The TLS handshake failed: no certificate, one of another CA, an expired one, or a
    /// plaintext peer.
    Tls,
    /// No handshake and hello within [`LINK_HANDSHAKE_TIMEOUT`].
    Timeout,
    /// [`LINK_UNAUTHENTICATED_MAX`] links were already being authenticated on the shard.
    Crowded,
    /// The certificate is another node's than the one the hello names.
    Identity,
    /// The hello names another cluster, or this node.
    Cluster,
    /// Something other than a hello came first, or bytes that are not a frame.
    Frame,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::Tls,
        Refusal::Timeout,
        Refusal::Crowded,
        Refusal::Identity,
        Refusal::Cluster,
        Refusal::Frame,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Tls => "tls",
            Refusal::Timeout => "timeout",
            Refusal::Crowded => "too_many_unauthenticated",
            Refusal::Identity => "identity",
            Refusal::Cluster => "cluster",
            Refusal::Frame => "frame",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|refusal| *refusal == self).unwrap_or(0)
    }
}

/// The node's link refusals and failed link handshakes, counted and logged.
#[derive(Debug, Default)]
pub(crate) struct LinkStats {
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Links this node opened whose TLS handshake failed (the peer refused us, or we it).
    handshakes_failed: AtomicU64,
    /// When each refusal was last logged, and how many went unlogged since.
    logged: Mutex<[(Option<Instant>, u64); Refusal::ALL.len()]>,
}

impl LinkStats {
    /// Counts a refusal of the link from `peer` and logs it (rate-limited per reason).
    pub(crate) fn refuse(&self, refusal: Refusal, peer: Option<SocketAddr>, why: impl Display) {
        self.refused[refusal.index()].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, unlogged) = &mut logged[refusal.index()];
        if last.is_some_and(|at| now - at < REFUSAL_LOG_INTERVAL) {
            *unlogged += 1;
            return;
        }
        let more = std::mem::take(unlogged);
        *last = Some(now);
        drop(logged);
        let peer = peer.map_or_else(|| "an unknown address".to_string(), |peer| peer.to_string());
        let more = match more {
            0 => String::new(),
            n => format!(" ({n} more such refusals since the last report)"),
        };
        tracing::warn!("refusing a node link from {peer}: {why}{more}");
    }

    pub(crate) fn handshake_failed(&self) {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals by label, for `/metrics`.
    pub(crate) fn refused(&self) -> Vec<(&'static str, u64)> {
        Refusal::ALL
            .iter()
            .map(|refusal| (refusal.label(), self.refused[refusal.index()].load(Ordering::Relaxed)))
            .collect()
    }

    pub(crate) fn handshakes_failed(&self) -> u64 {
        self.handshakes_failed.load(Ordering::Relaxed)
    }
}

//! Draining a node (`shardmq drain`, `POST /api/v1/drain`): before it stops for an upgrade or
//! for good, the node hands every session it holds to the other nodes, so that no client loses
//! its session or the messages queued for it.
//!
//! Each shard: refuses new connects (CONNACK "server unavailable"); tells its MQTT 5 clients to
//! use another server (DISCONNECT 0x9C, with the Server Reference the drain was given, e.g. the
//! cluster's load balancer, as EMQX's evacuation does) and closes every connection, keeping the sessions
//! without their wills; then invites, for every session left, the client's next node on the
//! rendezvous ring to take it over (`SessionInvite`: that node claims the client id and takes
//! the session over through the takeover protocol, as a reconnecting client's node would). A
//! client that reconnects meanwhile, anywhere, takes its session over itself. At most
//! [`INVITES_IN_FLIGHT`] invitations wait at once per shard, each asked again after
//! [`INVITE_RETRY`] while its session is still here. When every shard has handed over all its
//! sessions, or after [`DRAIN_TIMEOUT`], the node stops as on SIGTERM; what was not handed
//! over stays on its disk and is claimed again when it returns.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shardmq_cluster::frame::{Body, SessionInvite};
use shardmq_io::codec::ByteString;
use shardmq_io::runtime;

use crate::cluster::ShardCluster;
use crate::context::ShardContext;

/// Invitations a shard has waiting at once.
pub(crate) const INVITES_IN_FLIGHT: usize = 256;
/// An invitation whose session is still here after this is sent again (to the node that is
/// then the client's next).
pub(crate) const INVITE_RETRY: Duration = Duration::from_secs(5);
/// How long a drain may take before the node stops with what is left.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a shard looks whether a drain was asked for, and at its progress.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Waits for a drain of this node to be asked for, then drains this shard.
pub async fn drain_watch(context: Rc<ShardContext>) {
    let Some(cluster) = context.cluster.clone() else { return };
    while !context.stopping.get() {
        if cluster.node.draining.load(Ordering::Relaxed) {
            drain_shard(&context, &cluster).await;
            return;
        }
        runtime::sleep(DRAIN_POLL).await;
    }
}

async fn drain_shard(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>) {
    let started = Instant::now();
    let reference = cluster.node.drain_reference.lock().ok().and_then(|r| r.clone());
    let reference = reference.map(|reference| ByteString::from(reference.as_str()));
    let disconnected = context.state.borrow_mut().drain_connections(|_| reference.clone(), started);
    context.apply_effects();
    tracing::info!(shard = %context.id, disconnected, "draining: handing every session to the other nodes");
    let mut invited: HashMap<ByteString, Instant> = HashMap::new();
    let mut left = context.state.borrow().offline_session_ids();
    while !left.is_empty() && started.elapsed() < DRAIN_TIMEOUT && !context.stopping.get() {
        let now = Instant::now();
        // Invitations still waiting: recent, and their session still here (a lookup each, not
        // a scan of `left`, which holds every session of the shard).
        {
            let state = context.state.borrow();
            invited.retain(|client_id, at| {
                now.duration_since(*at) < INVITE_RETRY && state.has_session(client_id)
            });
        }
        for client_id in &left {
            if invited.len() >= INVITES_IN_FLIGHT {
                break;
            }
            if !invited.contains_key(client_id) && invite(context, cluster, client_id) {
                invited.insert(client_id.clone(), now);
            }
        }
        runtime::sleep(DRAIN_POLL).await;
        left = context.state.borrow().offline_session_ids();
    }
    let node = &cluster.node;
    node.drain_left.fetch_add(left.len(), Ordering::Relaxed);
    let done = node.drained_shards.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(
        shard = %context.id,
        left = left.len(),
        "drained in {:?}{}",
        started.elapsed(),
        if left.is_empty() { "" } else { ": sessions not handed over stay on this node's disk" }
    );
    if done == usize::from(context.shards) {
        tracing::info!(
            sessions_left = node.drain_left.load(Ordering::Relaxed),
            "every shard drained: stopping"
        );
        // Stops as SIGTERM does (the signal thread raises the stop flag every shard watches).
        if let Err(error) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
            tracing::warn!("cannot stop after the drain: {error}");
        }
    }
}

/// Asks the client's next node on the ring (other than this one) to take its session over.
/// False when there is no other node, or no link up to it.
fn invite(context: &ShardContext, cluster: &ShardCluster, client_id: &ByteString) -> bool {
    let ring = cluster.ring.borrow();
    let me = &cluster.node.node;
    let owners = ring.owners(client_id.as_bytes(), 2);
    let Some(target) = owners.into_iter().find(|node| *node != me) else { return false };
    let peer = cluster.node.peer(target);
    drop(ring);
    let username = context.state.borrow().session_username(client_id);
    let body =
        Body::SessionInvite(Box::new(SessionInvite { client_id: client_id.to_string(), username }));
    cluster.send(peer, body)
}

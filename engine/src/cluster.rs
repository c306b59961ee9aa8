//! The node's side of the cluster, on each shard: node links, the claim of a connecting
//! client's id, cross-node takeover and fencing.
//!
//! Node links: every shard keeps one outgoing TCP connection to every peer node, and sends on
//! it only (its route snapshot and deltas, forwarded publishes, receipts, takeover messages,
//! heartbeats), as length-prefixed FlatBuffers frames ([`shardmq_cluster::frame`]). What a
//! peer sends arrives on the connections this node accepts on its link listener (one
//! SO_REUSEPORT socket per shard, like the MQTT listener), on whichever shard the kernel picks:
//! that shard applies routes on every shard, delivers publishes, and passes receipts and
//! takeover messages to the shard they are for.
//!
//! Every connection a link makes is numbered in its hello, from a counter of the process seeded
//! from the wall clock, so a reconnect or a restart brings a larger number. Two connections of
//! one peer shard can be read at once (the old one not yet noticed dead, on another shard), so
//! the receiving shards tag route frames with (the hello's lease, that number) and keep only the
//! newest connection's routes ([`shardmq_shard::LinkEpoch`]). When the membership says an
//! incarnation of a peer is gone, its routes go and its links that are still open are closed.
//!
//! The etcd side (membership, batched ownership, the lease and its deadline) runs on the
//! control-plane thread ([`shardmq_cluster::control`]); shards reach it through
//! [`ControlPlane`], whose calls are runtime-agnostic futures.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use shardmq_cluster::control::ControlEvent;
use shardmq_cluster::frame::{
    self, Body, Heartbeat, Hello, Publish, SessionInvite, SessionTransfer, TakeoverRequest,
    TransferInstalled,
};
use shardmq_cluster::ring::Ring;
use shardmq_cluster::{ClaimOutcome, Member, NodeId, Revision};
use shardmq_io::link_tls::{LinkIo, LinkTls};
use shardmq_io::runtime::{self, Connection, TcpListener, TcpStream};
use shardmq_node::link::{
    self, Destination, HelloRefusal, HelloVerdict, LinkOrigin, LinkStart, OutLinkState,
};
use shardmq_node::retained::RetainedOut;
use shardmq_node::{Effect as HandoverEffect, Handover, Links, Ticket};
use shardmq_shard::{ConnId, ConnectRefusal, PeerLease, PeerNode, Shard};

use crate::context::{MeshItem, ShardContext};
use crate::link_security::{Refusal, LINK_HANDSHAKE_TIMEOUT, LINK_UNAUTHENTICATED_MAX};
use crate::signal::Signal;

mod admin_links;
mod retained;
mod state;

pub(crate) use admin_links::ask_peers;
pub use retained::{retained_fetcher, retained_puller};
pub(crate) use state::*;

// -------------------------------------------------------------------------------------------
// Membership
// -------------------------------------------------------------------------------------------

/// Follows the control plane's events on this shard: membership (links to start and stop) and
/// fencing.
pub async fn control_events(
    context: Rc<ShardContext>,
    events: async_channel::Receiver<ControlEvent>,
) {
    while let Ok(event) = events.recv().await {
        let Some(cluster) = context.cluster.clone() else { return };
        match event {
            ControlEvent::Members(members) => members_changed(&context, &cluster, &members),
            ControlEvent::Fenced => {
                tracing::warn!(
                    shard = %context.id,
                    "this node could not show its etcd lease alive in time: disconnecting its \
                     clients until a keepalive is answered (or a new lease granted)"
                );
                context.state.borrow_mut().fence(Instant::now());
                context.apply_effects();
            }
            ControlEvent::Serving { new_lease: false } => {
                tracing::info!(shard = %context.id, "serving again under the same etcd lease");
            }
            ControlEvent::Serving { new_lease: true } => {
                tracing::info!(shard = %context.id, "serving under a new etcd lease");
                runtime::spawn_local(reclaim_sessions(context.clone(), cluster));
            }
        }
    }
}

/// The node holds a new lease (at start, or after etcd dropped its lease): the etcd keys that named it owner of
/// its stored sessions went with the old lease. Claims every session stored offline on this
/// shard again, so that a client reconnecting to another node is taken over from here with its
/// session (and the messages queued for it) instead of starting anew there. A key another node
/// holds now means that node took the client meanwhile and has the newer session: it is left
/// alone, and the copy here is replaced if the client ever returns via a takeover.
async fn reclaim_sessions(context: Rc<ShardContext>, cluster: Rc<ShardCluster>) {
    let client_ids = context.state.borrow().offline_session_ids();
    if client_ids.is_empty() {
        return;
    }
    // A bounded number of claims in flight, as permits in a channel.
    let (permits, returned) = async_channel::bounded::<()>(RECLAIM_CLAIMS_IN_FLIGHT);
    let left = Rc::new(Cell::new(client_ids.len()));
    let elsewhere = Rc::new(Cell::new(0_usize));
    let total = client_ids.len();
    for client_id in client_ids {
        if permits.send(()).await.is_err() {
            return;
        }
        let (cluster, returned) = (cluster.clone(), returned.clone());
        let (left, elsewhere, shard) = (left.clone(), elsewhere.clone(), context.id);
        runtime::spawn_local(async move {
            // In the background: connects go first, and a slow etcd is waited for rather than
            // refused. A claim that timed out all the same is tried again: given up, its session
            // could not follow its client.
            let mut attempts = 1;
            let mut pause = RECLAIM_RETRY;
            let mut outcome = cluster.node.control.reclaim(&client_id).await;
            while matches!(outcome, ClaimOutcome::Unavailable | ClaimOutcome::Fenced)
                && attempts < RECLAIM_ATTEMPTS_MAX
            {
                runtime::sleep(pause).await;
                pause = (pause * 2).min(RECLAIM_RETRY_MAX);
                attempts += 1;
                outcome = cluster.node.control.reclaim(&client_id).await;
            }
            if !matches!(outcome, ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned) {
                elsewhere.set(elsewhere.get() + 1);
            }
            let _ = returned.recv().await;
            left.set(left.get() - 1);
            if left.get() == 0 {
                tracing::info!(
                    %shard,
                    "claimed {} of {total} stored sessions again under the new lease \
                     ({} held elsewhere or not claimable now)",
                    total - elsewhere.get(),
                    elsewhere.get()
                );
            }
        });
    }
}

fn members_changed(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>, members: &[Member]) {
    *cluster.ring.borrow_mut() = Ring::from_members(members);
    let linked: Vec<Member> =
        cluster.links.borrow().values().map(|link| link.member.borrow().clone()).collect();
    let change = link::membership_change(&cluster.node.node, &linked, members);
    for (node, lease) in &change.gone {
        // A peer restarted (a new lease) or left: its old incarnation is gone, with its
        // routes; those its new links already sent stay.
        let peer = cluster.node.peer(node);
        context.state.borrow_mut().peer_gone(peer, PeerLease(lease.0));
    }
    for node in &change.left {
        let peer = cluster.node.peer(node);
        let Some(link) = cluster.links.borrow_mut().remove(&peer) else { continue };
        retire(&link);
        context.state.borrow_mut().peer_left(peer);
        tracing::info!(shard = %context.id, peer = %node, "peer left the cluster");
    }
    for member in change.start {
        let peer = cluster.node.peer(&member.node);
        if let Some(link) = cluster.links.borrow_mut().remove(&peer) {
            retire(&link);
        }
        let link = Rc::new(OutLink {
            member: RefCell::new(member),
            out: RefCell::new(BytesMut::new()),
            signal: Signal::default(),
            state: RefCell::new(OutLinkState::default()),
            retired: Cell::new(false),
            retained: RefCell::new(RetainedOut::default()),
        });
        cluster.links.borrow_mut().insert(peer, link.clone());
        runtime::spawn_local(out_link(context.clone(), cluster.clone(), link));
    }
    let me = &cluster.node.node;
    let live = members.iter().filter(|member| member.node != *me);
    let live: Vec<PeerNode> = live.map(|member| cluster.node.peer(&member.node)).collect();
    context.state.borrow_mut().set_peers(live);
    context.apply_effects();
}

fn retire(link: &OutLink) {
    link.retired.set(true);
    link.state.borrow_mut().stop();
    link.signal.notify();
}

// -------------------------------------------------------------------------------------------
// Outgoing links
// -------------------------------------------------------------------------------------------

/// Keeps this shard's link to one peer up: connects (with backoff), sends the hello and the
/// route snapshot, then whatever the shard queues, and a heartbeat every [`LINK_HEARTBEAT`].
async fn out_link(context: Rc<ShardContext>, cluster: Rc<ShardCluster>, link: Rc<OutLink>) {
    let mut backoff = LINK_BACKOFF_MIN;
    let mut last_error_log: Option<Instant> = None;
    while !link.retired.get() && !context.stopping.get() {
        let address = link.member.borrow().link;
        let result = match connect_secured(&cluster, address).await {
            Ok((mut stream, mut tls)) => {
                backoff = LINK_BACKOFF_MIN;
                start_link(&context, &cluster, &link);
                let result = pump(&context, &cluster, &link, &mut stream, tls.as_mut()).await;
                stream.close();
                link.out.borrow_mut().clear();
                // What the peer did not answer is not waited for: those publishers are
                // answered now (see `ShardCluster::forward` for why not with a failure), and not
                // as delivered: a v5 publisher whose message only that peer matched hears
                // "no matching subscribers".
                let unanswered = link.state.borrow_mut().down();
                if !unanswered.is_empty() {
                    let mut state = context.state.borrow_mut();
                    for token in unanswered {
                        state.peer_receipt(token, true, false, Instant::now());
                    }
                }
                context.apply_effects();
                result
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            let now = Instant::now();
            if !link.retired.get()
                && last_error_log.is_none_or(|at| now - at >= LINK_ERROR_LOG_INTERVAL)
            {
                tracing::warn!(
                    shard = %context.id,
                    peer = %link.member.borrow().node,
                    "node link to {address}: {error}; retrying"
                );
                last_error_log = Some(now);
            }
        }
        if link.retired.get() {
            break;
        }
        runtime::sleep(backoff).await;
        backoff = (backoff * 2).min(LINK_BACKOFF_MAX);
    }
}

/// Connects to a peer's link listener and, with link TLS, completes the handshake (the peer's
/// certificate must chain to the cluster CA, as ours must for the peer).
async fn connect_secured(
    cluster: &ShardCluster,
    address: SocketAddr,
) -> std::io::Result<(TcpStream, Option<LinkTls>)> {
    let mut stream = connect(address).await?;
    let Some(certificates) = &cluster.node.link_tls else { return Ok((stream, None)) };
    let mut tls = certificates.current().connect()?;
    let mut ignored = BytesMut::new();
    let handshake = within(LINK_HANDSHAKE_TIMEOUT, tls.handshake(&mut stream, &mut ignored)).await;
    if let Err(error) = handshake {
        cluster.node.link_stats.handshake_failed();
        stream.close();
        return Err(std::io::Error::new(error.kind(), format!("TLS handshake: {error}")));
    }
    Ok((stream, Some(tls)))
}

/// `future`'s result, or a `TimedOut` error after `timeout`.
async fn within<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    future::or(future, async {
        runtime::sleep(timeout).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))
    })
    .await
}

async fn connect(address: SocketAddr) -> std::io::Result<TcpStream> {
    let connecting = TcpStream::connect_with_user_timeout(address, LINK_USER_TIMEOUT);
    let connected = future::or(async { Some(connecting.await) }, async {
        runtime::sleep(LINK_CONNECT_TIMEOUT).await;
        None
    })
    .await;
    let stream = connected.unwrap_or_else(|| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The link is connected: queue the hello (with a new connection number) and this shard's route
/// snapshot, and mark it up so deltas and publishes follow (all on this thread, so nothing falls
/// between them).
fn start_link(context: &ShardContext, cluster: &ShardCluster, link: &OutLink) {
    let routes = context.state.borrow().route_snapshot();
    let held = context.state.borrow().large_retained_topics();
    let lease = cluster
        .node
        .control
        .members()
        .iter()
        .find(|member| member.node == cluster.node.node)
        .map_or(0, |member| member.lease.0);
    let hello = Hello {
        cluster: cluster.node.cluster.clone(),
        node: cluster.node.node.to_string(),
        lease,
        shard: context.id.0,
        shards: context.shards,
        link: cluster.node.next_link().0,
    };
    let start = LinkStart { hello, routes: &routes, held: &held };
    let mut encoder = cluster.encoder.borrow_mut();
    link.state.borrow_mut().start(&mut encoder, &mut link.out.borrow_mut(), start);
    // The retained catch-up starts afresh on every connection.
    link.retained.borrow_mut().restart();
}

async fn pump(
    context: &ShardContext,
    cluster: &ShardCluster,
    link: &OutLink,
    stream: &mut TcpStream,
    mut tls: Option<&mut LinkTls>,
) -> std::io::Result<()> {
    let mut sealed = Vec::new();
    let peer = cluster.node.peer(&link.member.borrow().node);
    loop {
        retained::sync_out(context, cluster, link, peer);
        let batch = std::mem::take(&mut *link.out.borrow_mut());
        if !batch.is_empty() {
            let wire: &[u8] = match tls.as_deref_mut() {
                Some(tls) => {
                    sealed.clear();
                    tls.seal(&batch, &mut sealed)?;
                    &sealed
                }
                None => &batch,
            };
            // A peer that stops reading must not hold this link (and the receipts and
            // heartbeats behind it) forever: the link is closed and re-established.
            let written = future::or(async { Some(stream.write_all(wire).await) }, async {
                runtime::sleep(LINK_WRITE_TIMEOUT).await;
                None
            })
            .await;
            written.unwrap_or_else(|| {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "peer stopped reading"))
            })?;
            // Give the (now written) buffer back to keep its capacity.
            let mut out = link.out.borrow_mut();
            if out.is_empty() {
                let mut batch = batch;
                batch.clear();
                *out = batch;
            }
        }
        if link.retired.get() || context.stopping.get() {
            return Ok(());
        }
        let now = Instant::now();
        if link.state.borrow_mut().heartbeat_due(now) {
            let etcd_ok = cluster.node.control.etcd_ok();
            cluster.encoder.borrow_mut().encode(
                Body::Heartbeat(Box::new(Heartbeat { etcd_ok })),
                &mut link.out.borrow_mut(),
            );
            expire_receipts(context, link, now);
            continue;
        }
        if link.out.borrow().is_empty() && !link.retained.borrow().has_pushes() {
            let next_heartbeat = link.state.borrow().next_heartbeat().unwrap_or(now);
            let wait = next_heartbeat.saturating_duration_since(now);
            future::or(link.signal.wait(), runtime::sleep(wait)).await;
        }
    }
}

/// Publishers whose peer did not answer within `RECEIPT_TIMEOUT` (`shardmq_node::link`) are
/// answered with a failure.
fn expire_receipts(context: &ShardContext, link: &OutLink, now: Instant) {
    let expired = link.state.borrow_mut().expired(now);
    if expired.is_empty() {
        return;
    }
    let mut state = context.state.borrow_mut();
    for token in expired {
        state.peer_receipt(token, false, false, now);
    }
    drop(state);
    context.apply_effects();
}

// -------------------------------------------------------------------------------------------
// Incoming links
// -------------------------------------------------------------------------------------------

/// Accepts peers' links on this shard's link listener.
pub async fn link_accept_loop(context: Rc<ShardContext>, listener: TcpListener) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            context.stop_signal.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => runtime::spawn_local(in_link(context.clone(), stream)),
            Some(Err(error)) => {
                tracing::warn!(shard = %context.id, "link accept failed: {error}");
                runtime::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A hello larger than this is refused before it is decoded (a real one is under 200 bytes).
const HELLO_BYTES_MAX: usize = 64 << 10;

/// Admits an accepted link (within [`LINK_HANDSHAKE_TIMEOUT`], at most
/// [`LINK_UNAUTHENTICATED_MAX`] at once on this shard), then reads its frames until it closes
/// or sends something that is not a frame.
async fn in_link(context: Rc<ShardContext>, stream: Connection) {
    let Some(cluster) = context.cluster.clone() else { return };
    let peer = stream.peer_addr().ok();
    let stats = &cluster.node.link_stats;
    if cluster.unauthenticated.get() >= LINK_UNAUTHENTICATED_MAX {
        let why = format!("{LINK_UNAUTHENTICATED_MAX} links are being authenticated already");
        stats.refuse(Refusal::Crowded, peer, why);
        return;
    }
    cluster.unauthenticated.set(cluster.unauthenticated.get() + 1);
    let admitted = future::or(async { Some(admit(&context, &cluster, stream).await) }, async {
        runtime::sleep(LINK_HANDSHAKE_TIMEOUT).await;
        None
    })
    .await;
    cluster.unauthenticated.set(cluster.unauthenticated.get() - 1);
    match admitted {
        Some(Ok(Some(admitted))) => serve_link(&context, &cluster, admitted).await,
        Some(Ok(None)) => {}
        Some(Err((refusal, why))) => stats.refuse(refusal, peer, why),
        None => {
            let why = format!("no TLS handshake and hello within {LINK_HANDSHAKE_TIMEOUT:?}");
            stats.refuse(Refusal::Timeout, peer, why);
        }
    }
}

/// An accepted link let in: its stream and TLS, who it is, and what was read past the hello.
struct Admitted {
    stream: Connection,
    tls: Option<LinkTls>,
    from: LinkPeer,
    buf: BytesMut,
}

/// The TLS handshake (with link TLS) and the hello: a link is let in when its hello names a
/// live incarnation of a peer of this cluster and, with link TLS, its certificate names that
/// same node. `Ok(None)`: it closed, or names an incarnation this node has not heard of yet (it
/// retries).
async fn admit(
    context: &ShardContext,
    cluster: &ShardCluster,
    mut stream: Connection,
) -> Result<Option<Admitted>, (Refusal, String)> {
    let mut buf = BytesMut::new();
    let mut tls = match &cluster.node.link_tls {
        None => None,
        Some(certificates) => {
            let tls_refusal = |error: std::io::Error| (Refusal::Tls, error.to_string());
            let mut tls = certificates.current().accept().map_err(tls_refusal)?;
            tls.handshake(&mut stream, &mut buf).await.map_err(tls_refusal)?;
            Some(tls)
        }
    };
    let mut raw = BytesMut::new();
    loop {
        match frame::decode(&mut buf) {
            Ok(Some(Body::Hello(hello))) => {
                let Some(from) = check_hello(context, cluster, &hello, tls.as_ref())? else {
                    return Ok(None);
                };
                return Ok(Some(Admitted { stream, tls, from, buf }));
            }
            Ok(Some(_)) => {
                return Err((Refusal::Frame, "it sent something before its hello".into()))
            }
            Ok(None) if buf.len() > HELLO_BYTES_MAX => {
                return Err((Refusal::Frame, format!("its hello is over {HELLO_BYTES_MAX} bytes")))
            }
            Ok(None) => {}
            Err(error) => return Err((Refusal::Frame, error.to_string())),
        }
        match read_link(&mut stream, tls.as_mut(), &mut raw, &mut buf).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err((Refusal::Tls, error.to_string()))
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Whether a hello lets its link in (see [`admit`]).
fn check_hello(
    context: &ShardContext,
    cluster: &ShardCluster,
    hello: &Hello,
    tls: Option<&LinkTls>,
) -> Result<Option<LinkPeer>, (Refusal, String)> {
    let certificate = tls.map(LinkTls::peer_common_name);
    let lease_gone = |node: &NodeId, lease| {
        context.state.borrow().is_peer_lease_gone(cluster.node.peer(node), lease)
    };
    let certificate = certificate.as_ref().map(Option::as_deref);
    let ours = (&*cluster.node.cluster, &cluster.node.node);
    let origin = match link::check_hello(ours.0, ours.1, hello, certificate, lease_gone) {
        HelloVerdict::Admit(origin) => origin,
        HelloVerdict::Refuse(refusal, why) => {
            let refusal = match refusal {
                HelloRefusal::Cluster => Refusal::Cluster,
                HelloRefusal::Identity => Refusal::Identity,
                HelloRefusal::Frame => Refusal::Frame,
            };
            return Err((refusal, why));
        }
        HelloVerdict::NotYet => {
            // The peer has not learnt of its new lease yet: it retries, and is served once its
            // hello names it.
            tracing::debug!(
                shard = %context.id,
                peer = %hello.node,
                lease = hello.lease,
                "refusing a node link of a gone incarnation of its node"
            );
            return Ok(None);
        }
    };
    let peer = cluster.node.peer(&origin.node);
    cluster.node.learn_shards(peer, origin.shards);
    let LinkOrigin { node, origin, shards, epoch } = origin;
    Ok(Some(LinkPeer { peer, node, origin, shards, epoch }))
}

/// Reads what arrives on a link into `buf`, through its TLS if it has it (`raw` holds the
/// records): false at the end of the stream. A bad TLS record is an `InvalidData` error.
async fn read_link(
    stream: &mut Connection,
    tls: Option<&mut LinkTls>,
    raw: &mut BytesMut,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    let Some(tls) = tls else { return Ok(stream.read_some(buf).await? > 0) };
    raw.clear();
    if stream.read_some(raw).await? == 0 {
        return Ok(false);
    }
    tls.open(raw, buf)?;
    Ok(true)
}

/// Reads an admitted link's frames until it closes or sends something that is not a frame.
async fn serve_link(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>, admitted: Admitted) {
    let Admitted { mut stream, mut tls, from, mut buf } = admitted;
    let mut raw = BytesMut::new();
    loop {
        loop {
            let body = match frame::decode(&mut buf) {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(shard = %context.id, peer = %from.node, "closing a node link: {error}");
                    return;
                }
            };
            if let Body::Hello(_) = body {
                return;
            }
            handle_frame(context, cluster, &from, body);
        }
        context.apply_effects();
        if buf.is_empty() {
            buf = BytesMut::new();
        }
        runtime::yield_if_needed().await;
        let read = future::or(
            async { Some(read_link(&mut stream, tls.as_mut(), &mut raw, &mut buf).await) },
            async {
                runtime::sleep(LINK_READ_TIMEOUT).await;
                None
            },
        )
        .await;
        match read {
            Some(Ok(true)) => {}
            Some(Ok(false)) => return,
            Some(Err(error)) => {
                if error.kind() == std::io::ErrorKind::InvalidData {
                    tracing::warn!(shard = %context.id, peer = %from.node, "closing a node link: {error}");
                }
                return;
            }
            None => {
                tracing::warn!(shard = %context.id, "closing a node link silent for {LINK_READ_TIMEOUT:?}");
                return;
            }
        }
        // The membership says this incarnation of the peer is gone, yet its link is open (the
        // peer was paused, or fenced and registered again): its frames would be ignored from
        // now on, so the link is closed and the peer reconnects with a hello naming its current
        // lease, and a snapshot.
        if context.state.borrow().is_peer_lease_gone(from.peer, from.epoch.lease) {
            tracing::info!(
                shard = %context.id,
                peer = %from.node,
                lease = from.epoch.lease.0,
                "closing a node link of a gone incarnation of its node"
            );
            return;
        }
    }
}

fn handle_frame(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: &LinkPeer,
    body: Body,
) {
    let now = Instant::now();
    match link::destination(&body, context.id, context.shards) {
        Destination::Here => {}
        Destination::Shard(shard) => {
            if let Some(item) = cluster_item_for(from, body) {
                context.to_peer(shard, MeshItem::Cluster(item));
            }
            return;
        }
        Destination::Nowhere => return,
    }
    match body {
        Body::RouteSnapshot(_) | Body::RouteDelta(_) => {
            let Some(frame) = link::route_frame(body, from.shards) else { return };
            let mut state = context.state.borrow_mut();
            state.peer_routes_from_link(from.peer, from.origin, from.epoch, frame);
        }
        Body::Publish(publish) => publish_arrived(context, cluster, from, *publish, now),
        Body::Pace(pace) => {
            context.state.borrow_mut().peer_pace(ConnId(pace.conn), pace.pause, now);
        }
        Body::Receipt(receipt) => {
            let (token, ok, matched) = (receipt.token, receipt.ok, receipt.matched);
            receipt_arrived(cluster, context, from.peer, token, ok, matched)
        }
        Body::TakeoverRequest(request) => hand_over(context, cluster, from.peer, &request),
        Body::SessionTransfer(transfer) => transfer_arrived(context, cluster, from.peer, &transfer),
        Body::TransferInstalled(installed) => installed_arrived(context, cluster, &installed),
        Body::SessionInvite(invite) => invite_arrived(context, cluster, from.peer, &invite),
        Body::Heartbeat(heartbeat) => {
            cluster.node.control.peer_report(&from.node, heartbeat.etcd_ok);
        }
        Body::RetainedIndex(_)
        | Body::RetainedFetch(_)
        | Body::RetainedFetched(_)
        | Body::RetainedDigest(_)
        | Body::RetainedVersions(_) => retained::frame_arrived(context, cluster, from, body),
        Body::AdminQuery(query) => admin_links::query_arrived(context, cluster, from.peer, *query),
        Body::AdminAnswer(answer) => admin_links::answer_arrived(cluster, *answer),
        Body::Hello(_) => {}
    }
}

/// A frame for another shard of this node, as the mesh carries it.
fn cluster_item_for(from: &LinkPeer, body: Body) -> Option<ClusterItem> {
    Some(match body {
        Body::Pace(pace) => ClusterItem::Pace { conn: ConnId(pace.conn), pause: pace.pause },
        Body::Receipt(receipt) => {
            let (token, ok, matched) = (receipt.token, receipt.ok, receipt.matched);
            ClusterItem::Receipt { peer: from.peer, token, ok, matched }
        }
        Body::TakeoverRequest(request) => ClusterItem::Takeover { peer: from.peer, request },
        Body::SessionTransfer(transfer) => ClusterItem::Transfer { peer: from.peer, transfer },
        Body::TransferInstalled(installed) => ClusterItem::Installed(installed),
        Body::SessionInvite(invite) => ClusterItem::Invite { peer: from.peer, invite },
        Body::AdminQuery(query) => ClusterItem::AdminQuery { peer: from.peer, query },
        Body::AdminAnswer(answer) => ClusterItem::AdminAnswer(answer),
        _ => return None,
    })
}

/// A publish a peer forwarded: the shard takes it (`shardmq_node::link::publish_arrived`),
/// or a fenced node refuses it with a receipt.
fn publish_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: &LinkPeer,
    publish: Publish,
    now: Instant,
) {
    let may_serve = cluster.node.fence.may_serve(now);
    let node_of = |node: &NodeId| cluster.node.shard_node(node);
    let mut state = context.state.borrow_mut();
    let clock = &cluster.clock;
    let answer =
        link::publish_arrived(&mut state, from.peer, publish, may_serve, clock, node_of, now);
    drop(state);
    match answer {
        Ok(Some(refusal)) => drop(cluster.forward(context.id, from.peer, refusal)),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(shard = %context.id, peer = %from.node, "bad forwarded message: {error}")
        }
    }
}

/// A receipt for a publish this shard forwarded to `peer`.
fn receipt_arrived(
    cluster: &ShardCluster,
    context: &ShardContext,
    peer: PeerNode,
    token: u64,
    ok: bool,
    matched: bool,
) {
    let waited = cluster
        .links
        .borrow()
        .get(&peer)
        .is_some_and(|link| link.state.borrow_mut().answered(token));
    if waited {
        context.state.borrow_mut().peer_receipt(token, ok, matched, Instant::now());
        context.apply_effects();
    }
}

/// A link message another shard of this node passed here.
pub fn cluster_item(context: &Rc<ShardContext>, item: ClusterItem) {
    let Some(cluster) = context.cluster.clone() else { return };
    match item {
        ClusterItem::Receipt { peer, token, ok, matched } => {
            receipt_arrived(&cluster, context, peer, token, ok, matched)
        }
        ClusterItem::Takeover { peer, request } => hand_over(context, &cluster, peer, &request),
        ClusterItem::Transfer { peer, transfer } => {
            transfer_arrived(context, &cluster, peer, &transfer)
        }
        ClusterItem::Fetch { peer, fetch } => {
            retained::answer_fetch(context, &cluster, peer, &fetch)
        }
        ClusterItem::Fetched(fetched) => retained::fetched_arrived(&cluster, *fetched),
        ClusterItem::Installed(installed) => installed_arrived(context, &cluster, &installed),
        ClusterItem::Invite { peer, invite } => invite_arrived(context, &cluster, peer, &invite),
        ClusterItem::Pace { conn, pause } => {
            context.state.borrow_mut().peer_pace(conn, pause, Instant::now());
            context.apply_effects();
        }
        item @ ClusterItem::RetainedDigest { .. } => {
            retained::compare_digest(context, &cluster, item)
        }
        item @ ClusterItem::RetainedVersions { .. } => {
            retained::versions_arrived(context, &cluster, item)
        }
        ClusterItem::AdminQuery { peer, query } => {
            admin_links::query_arrived(context, &cluster, peer, *query)
        }
        ClusterItem::AdminAnswer(answer) => admin_links::answer_arrived(&cluster, *answer),
    }
}

// -------------------------------------------------------------------------------------------
// Claims and takeover
// -------------------------------------------------------------------------------------------

/// Claims `client_id` for this node before its CONNECT is answered: `Ok` when this node owns
/// it now (taking it over from the peer that served it, session included, if needed), else why
/// the connect is refused. The shard's [`Handover`](shardmq_node::Handover) decides; this
/// drives it.
pub async fn claim(
    context: &Rc<ShardContext>,
    client_id: &str,
    clean_start: bool,
    username: Option<&str>,
) -> Result<(), ConnectRefusal> {
    let Some(cluster) = context.cluster.clone() else { return Ok(()) };
    if cluster.node.draining.load(std::sync::atomic::Ordering::Relaxed) {
        // Clients go to the other nodes: this one is handing its sessions to them.
        return Err(ConnectRefusal::Stopping);
    }
    let now = Instant::now();
    let ticket = cluster.handover.borrow_mut().connect(client_id, clean_start, username, now);
    let answer = Rc::new(Awaited::new());
    cluster.answers.borrow_mut().insert(ticket, answer.clone());
    run_handover(context, &cluster);
    answer.wait().await
}

/// What the handover machine knows of this shard's links.
struct ShardLinks<'a>(&'a ShardCluster);

impl Links for ShardLinks<'_> {
    fn up(&self, peer: PeerNode) -> bool {
        self.0.links.borrow().get(&peer).is_some_and(|link| link.state.borrow().is_up())
    }

    fn peer(&self, node: &NodeId) -> PeerNode {
        self.0.node.peer(node)
    }
}

/// Carries out what the shard's handover machine left to do (see [`carry_out`]) after an event,
/// and wakes its timer: the event may have set an earlier deadline.
fn run_handover(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>) {
    carry_out(context, cluster);
    cluster.handover_signal.notify();
}

/// Carries out what the shard's handover machine left to do: claims to ask the control plane
/// (each a task feeding its answer back), frames to send, ids handed over, connects answered.
fn carry_out(context: &Rc<ShardContext>, cluster: &Rc<ShardCluster>) {
    let mut effects = Vec::new();
    cluster.handover.borrow_mut().drain_effects(&mut effects);
    for effect in effects {
        match effect {
            HandoverEffect::Claim { ticket, client_id } => {
                runtime::spawn_local(ask_control(context.clone(), ticket, client_id, None))
            }
            HandoverEffect::ClaimAfterRelease { ticket, client_id, revision } => {
                let claim = ask_control(context.clone(), ticket, client_id, Some(revision));
                runtime::spawn_local(claim)
            }
            HandoverEffect::Send { peer, body } => {
                cluster.send(peer, body);
            }
            HandoverEffect::HandedOver { client_id } => {
                cluster.node.control.handed_over(&client_id)
            }
            HandoverEffect::Answer { ticket, result } => {
                if let Some(answer) = cluster.answers.borrow_mut().remove(&ticket) {
                    answer.set(result);
                }
            }
        }
    }
    context.apply_effects();
}

/// One claim of a connect, asked of the control plane (after the owner's release at
/// `revision`, if given); its answer goes back to the handover machine.
async fn ask_control(
    context: Rc<ShardContext>,
    ticket: Ticket,
    client_id: String,
    revision: Option<Revision>,
) {
    let Some(cluster) = context.cluster.clone() else { return };
    let control = &cluster.node.control;
    let outcome = match revision {
        None => control.claim(&client_id).await,
        Some(revision) => control.claim_after_release(&client_id, revision).await,
    };
    with_handover(&context, &cluster, |handover, state, links, now| {
        handover.claim_answered(state, links, ticket, outcome, now)
    });
}

/// Runs the handover machine's timers: takeovers unanswered by their deadline, connects told
/// "busy" claiming again, parked sessions with no word from their new owner.
pub async fn handover_timer(context: Rc<ShardContext>) {
    let Some(cluster) = context.cluster.clone() else { return };
    while !context.stopping.get() {
        let due = cluster.handover.borrow().next_deadline();
        let wait = due.map_or(LINK_HEARTBEAT, |due| due.saturating_duration_since(Instant::now()));
        if !wait.is_zero() {
            // A deadline added meanwhile (a takeover asked) wakes it early.
            future::or(runtime::sleep(wait), cluster.handover_signal.wait()).await;
        }
        let now = Instant::now();
        let mut state = context.state.borrow_mut();
        cluster.handover.borrow_mut().tick(&mut state, now);
        drop(state);
        carry_out(&context, &cluster);
    }
}

/// Feeds one event to the shard's handover machine (with the shard, its links and the time),
/// then carries out what it left to do.
fn with_handover(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    event: impl FnOnce(&mut Handover, &mut Shard, &ShardLinks<'_>, Instant),
) {
    let links = ShardLinks(cluster);
    let mut state = context.state.borrow_mut();
    event(&mut cluster.handover.borrow_mut(), &mut state, &links, Instant::now());
    drop(state);
    run_handover(context, cluster);
}

/// A peer takes over a client homed on this shard.
fn hand_over(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    peer: PeerNode,
    request: &TakeoverRequest,
) {
    with_handover(context, cluster, |handover, state, links, now| {
        handover.request_arrived(state, links, peer, request, now)
    });
}

/// The node this shard handed a session to installed it (or its claim failed).
fn installed_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    installed: &TransferInstalled,
) {
    with_handover(context, cluster, |handover, state, _, now| {
        handover.installed_arrived(state, installed, now)
    });
}

/// A draining peer invites this node to take a client over (`crate::drain`).
fn invite_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    peer: PeerNode,
    invite: &SessionInvite,
) {
    let (client_id, username) = (&invite.client_id, invite.username.as_deref());
    with_handover(context, cluster, |handover, state, _, now| {
        handover.invite(state, client_id, username, peer, now);
    });
}

/// Peer `from` answered one of this shard's takeover requests.
fn transfer_arrived(
    context: &Rc<ShardContext>,
    cluster: &Rc<ShardCluster>,
    from: PeerNode,
    transfer: &SessionTransfer,
) {
    with_handover(context, cluster, |handover, state, links, now| {
        handover.transfer_arrived(state, links, from, transfer, now)
    });
}

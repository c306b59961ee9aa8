//! A client connection on a shard: the accept loop, the CONNECT handshake (read it, authenticate,
//! hand the socket to the client's home shard), and the connection's task ([`ConnectionTask`]),
//! which feeds the shard its packets and writes what the shard produces for it.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_lite::future;
use shardmq_auth::jwt::TopicClaim;
use shardmq_io::codec::{
    ConnAck, Connect, DecodeError, Decoded, Decoder, Packet, Properties, ProtocolVersion,
    ReasonCode,
};
use shardmq_io::proxy::{self, Parsed};
use shardmq_io::runtime::{self, needs_accept_backoff, Connection, TcpListener};
use shardmq_io::transport::{Layer, LayerKind, Layered};
use shardmq_shard::{home_shard, ConnId, ConnectRefusal};

use crate::acl_cache::{self, Action, Question};
use crate::cluster::{self};
use crate::connect_auth::{self, ConnectionWire};
use crate::listeners::ListenerKind;
use crate::overload::ConnectBudget;

use crate::client_stream::{poll_write_all, read_more, ClientStream};
use crate::context::{
    Adoption, ConnHandle, MeshItem, ShardContext, SIGNAL_CLOSE, SIGNAL_FLUSH, SIGNAL_WAKE,
};
/// What a WebSocket frame or message may carry beyond the largest MQTT packet: several small
/// packets beside it (clients coalesce).
const WS_FRAME_SLACK_BYTES: usize = 64 << 10;
/// Packets one connection decodes and hands to its shard before yielding to other tasks.
const PACKETS_PER_TURN_MAX: usize = 256;
/// How long an accept loop backs off when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often "out of file descriptors" is logged at most.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How long a connection the shard closed may drain what its client still sends before it is
/// closed anyway: enough for a client that was writing to read the DISCONNECT and close.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Connections draining at once per shard at most; past it a closed connection is closed at
/// once (its client may then miss the DISCONNECT). Bounds the descriptors and buffers a storm
/// of refusals can hold.
pub(crate) const CLOSING_MAX: usize = 1024;

/// Ends the draining of connections whose [`CLOSE_LINGER`] has passed (called by the ticker).
pub(crate) fn end_lingering(context: &ShardContext, now: Instant) {
    let mut closing = context.closing.borrow_mut();
    while closing.front().is_some_and(|&(due, _)| due <= now) {
        if let Some((_, key)) = closing.pop_front() {
            // A connection that finished draining early has gone: its key reaches nothing.
            Connection::notify(key, SIGNAL_CLOSE);
        }
    }
}

pub(crate) async fn accept_loop(
    context: Rc<ShardContext>,
    listener: TcpListener,
    kind: ListenerKind,
    proxy_protocol: bool,
) {
    let mut last_error_log: Option<Instant> = None;
    // Each listener has its own connect budget: a storm on one leaves the others' alone.
    let mut share = context.connect_rate_share.get();
    let mut budget = share.map(|share| ConnectBudget::new(share, Instant::now()));
    let shard = usize::from(context.id.0);
    context.counters.set_ready(shard, true);
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            context.stop_signal.wait().await;
            None
        })
        .await;
        let Some(accepted) = accepted else {
            context.counters.set_ready(shard, false);
            return;
        };
        match accepted {
            Ok(stream) => {
                // TCP_NODELAY comes from the listener (`bind_listener_socket`): Linux copies it
                // to every accepted socket, one setsockopt per connection saved.
                // Over the connect rate, the connection is refused as soon as its CONNECT is
                // read (CONNACK 0x9F, 3.1.1 code 3): a storm costs a read and a write per
                // attempt, and the clients' own back-off, rather than a backlog that keeps
                // growing while connected clients wait behind it.
                if context.connect_rate_share.get() != share {
                    // A reload changed the rate.
                    share = context.connect_rate_share.get();
                    budget = share.map(|share| ConnectBudget::new(share, Instant::now()));
                }
                let over_rate =
                    budget.as_mut().is_some_and(|budget| !budget.take(Instant::now()).is_zero());
                if over_rate && kind.is_tls() {
                    // A CONNACK 0x9F would cost a TLS handshake first (hundreds of µs of CPU,
                    // what the rate limit is there to save): closed at once instead.
                    stream.close();
                    continue;
                }
                if proxy_protocol {
                    runtime::spawn_local(proxied(context.clone(), stream, kind, over_rate));
                    continue;
                }
                let origins = || context.ws_origins.borrow().clone();
                match kind.layer(context.tls.as_deref(), origins) {
                    None => runtime::spawn_local(handshake(
                        context.clone(),
                        stream,
                        over_rate,
                        None,
                        BytesMut::new(),
                    )),
                    Some(layer) => {
                        let stream = Layered::new(stream, new_layer(&context, &layer));
                        runtime::spawn_local(handshake(
                            context.clone(),
                            stream,
                            over_rate,
                            None,
                            BytesMut::new(),
                        ));
                    }
                }
            }
            Err(error) => {
                let now = Instant::now();
                if last_error_log.is_none_or(|at| now - at >= ACCEPT_ERROR_LOG_INTERVAL) {
                    tracing::warn!(shard = %context.id, "accept failed: {error}; backing off");
                    last_error_log = Some(now);
                }
                // Out of descriptors or memory: wait for connections to close. Anything else
                // (a connection reset before accept) is transient, but still never a busy loop.
                let pause = if needs_accept_backoff(&error) {
                    ACCEPT_BACKOFF
                } else {
                    Duration::from_millis(1)
                };
                runtime::sleep(pause).await;
            }
        }
    }
}

/// The layers (TLS, WebSocket) of a connection accepted now on a listener of `kind`.
fn new_layer(context: &ShardContext, kind: &LayerKind) -> Box<Layer> {
    let frame_bytes_max = context.packet_bytes_max.get() as usize + WS_FRAME_SLACK_BYTES;
    Layer::new(kind, frame_bytes_max)
}

/// A connection on a `proxy_protocol` listener: its PROXY header (v1 or v2) comes first, within
/// the connect timeout, and names the client the load balancer forwards; then the connection
/// goes on as any other (TLS, WebSocket, CONNECT), with what followed the header. Without a
/// valid header it is closed, counted and logged (at the 1st, 2nd, 4th... on this shard).
async fn proxied(
    context: Rc<ShardContext>,
    mut stream: Connection,
    kind: ListenerKind,
    over_rate: bool,
) {
    let deadline = Instant::now() + context.connect_timeout.get();
    let mut buf = BytesMut::new();
    let source = loop {
        match proxy::parse(&buf) {
            Parsed::Header { len, source } => {
                buf.advance(len);
                break source;
            }
            Parsed::Incomplete => {
                if !read_more(&mut stream, &mut buf, deadline).await {
                    let why = if buf.is_empty() { "nothing" } else { "an unfinished header" };
                    return proxy_refused(
                        &context,
                        &stream,
                        &format!("{why} before it closed or the connect timeout"),
                    );
                }
            }
            Parsed::Invalid(why) => return proxy_refused(&context, &stream, &why),
        }
    };
    let origins = || context.ws_origins.borrow().clone();
    match kind.layer(context.tls.as_deref(), origins) {
        None => handshake(context, stream, over_rate, source, buf).await,
        Some(layer) => {
            let mut mqtt = BytesMut::new();
            let layer = new_layer(&context, &layer);
            // Bad TLS in the first bytes: the layer has queued its alert; the connection closes.
            if let Ok(stream) = Layered::with_input(stream, layer, &buf, &mut mqtt) {
                handshake(context, stream, over_rate, source, mqtt).await;
            }
        }
    }
}

/// A connection on a `proxy_protocol` listener without a valid PROXY header: closed.
fn proxy_refused(context: &ShardContext, stream: &Connection, why: &str) {
    let mut state = context.state.borrow_mut();
    state.connect_refused(ConnectRefusal::ProxyHeader);
    let refused = state.stats().connects_refused[ConnectRefusal::ProxyHeader as usize];
    if refused.is_power_of_two() {
        let peer = stream.peer_addr().map_or("?".to_string(), |a| a.to_string());
        tracing::warn!(
            shard = %context.id,
            refused,
            "closed a connection from {peer} on a `proxy_protocol` listener: {why} (a client \
             reaching the listener without the load balancer, or a load balancer not set to \
             send PROXY headers)"
        );
    }
}

/// A WebSocket upgrade from a web page the broker does not serve (`ws_allowed_origins`): counted,
/// and logged at the 1st, 2nd, 4th, 8th... on this shard (a page can retry in a loop).
fn origin_refused<S: ClientStream>(
    context: &ShardContext,
    stream: &S,
    source: Option<SocketAddr>,
    origin: &str,
) {
    let mut state = context.state.borrow_mut();
    state.connect_refused(ConnectRefusal::WebSocketOrigin);
    let refused = state.stats().connects_refused[ConnectRefusal::WebSocketOrigin as usize];
    if refused.is_power_of_two() {
        let peer = source.or_else(|| stream.connection().peer_addr().ok());
        let peer = peer.map_or("?".to_string(), |a| a.to_string());
        tracing::warn!(
            shard = %context.id,
            refused,
            "refused a WebSocket upgrade from {peer}: a page of origin {origin:?} may not use \
             the broker (`ws_allowed_origins`)"
        );
    }
}

/// Reads CONNECT on the accepting shard, then runs the connection here or hands it to the
/// client's home shard.
/// `source`: the client's address from a PROXY header, if the listener takes them; `buf`: the
/// MQTT bytes already read (what followed that header).
async fn handshake<S: ClientStream>(
    context: Rc<ShardContext>,
    mut stream: S,
    over_rate: bool,
    source: Option<SocketAddr>,
    mut buf: BytesMut,
) {
    let mut decoder = Decoder::server(context.packet_bytes_max.get());
    let deadline = Instant::now() + context.connect_timeout.get();
    let read = read_connect(&context, &mut stream, &mut decoder, &mut buf, source, deadline).await;
    let Some(connect) = read else { return };
    if over_rate {
        context.state.borrow_mut().connect_refused(ConnectRefusal::ConnectionRate);
        return send_refusal(&mut stream, connect.protocol, ReasonCode::CONNECTION_RATE_EXCEEDED)
            .await;
    }
    if context.memory.is_over() {
        // Over the memory high-water mark: new clients wait, connected ones keep working.
        context.state.borrow_mut().connect_refused(ConnectRefusal::Memory);
        return send_refusal(&mut stream, connect.protocol, ReasonCode::SERVER_BUSY).await;
    }
    let mut wire =
        ConnectionWire { stream: &mut stream, decoder: &mut decoder, buf: &mut buf, deadline };
    let Some((mut connect, claim)) = authenticated(&context, &mut wire, connect, source).await
    else {
        return;
    };
    if context.username_as_client_id.get() {
        // `use_username_as_clientid`: the user name is the client id, so no client of another
        // user can name this one's session.
        match connect.username.clone() {
            Some(username) => connect.client_id = username,
            None => {
                let cause = ConnectRefusal::NotAuthenticated;
                context.state.borrow_mut().connect_refused(cause);
                let reason = ReasonCode::NOT_AUTHORIZED;
                return send_refusal(&mut stream, connect.protocol, reason).await;
            }
        }
    }
    if let Err(reason) = connect_auth::settle(&context.security, &connect, claim).await {
        context.state.borrow_mut().connect_refused(refusal_cause(reason));
        return send_refusal(&mut stream, connect.protocol, reason).await;
    }
    let home = if connect.client_id.is_empty() {
        // The state machine assigns an id homed on this shard.
        context.id
    } else {
        home_shard(&connect.client_id, context.shards)
    };
    if home == context.id {
        // A task of its own rather than awaited here: this handshake's state (its read and
        // timeout futures) would otherwise stay allocated beside the connection for its life.
        return start_connection(context, stream, decoder, buf, connect, source);
    }
    let (connection, layer) = stream.into_parts();
    match connection.into_handoff() {
        Ok(handoff) => {
            let leftover = buf.freeze();
            let adoption = Adoption { stream: handoff, layer, connect, leftover, source };
            context.to_peer(home, MeshItem::Adopt(adoption));
        }
        Err(error) => tracing::warn!(shard = %context.id, "cannot hand a connection over: {error}"),
    }
}

/// Reads the connection's CONNECT until `deadline`; `None` when the connection was closed
/// (no CONNECT in time, EOF, an error, another packet first) or refused (it did not decode).
async fn read_connect<S: ClientStream>(
    context: &ShardContext,
    stream: &mut S,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    source: Option<SocketAddr>,
    deadline: Instant,
) -> Option<Box<Connect>> {
    loop {
        match decoder.decode(buf) {
            Ok(Decoded::Packet(Packet::Connect(connect))) => return Some(connect),
            // The server decoder refuses anything else as the first packet.
            Ok(Decoded::Packet(_)) => return None,
            Ok(Decoded::NeedMore(_)) => {
                // No CONNECT in time, EOF or an error: close.
                if !read_more(stream, buf, deadline).await {
                    if let Some(origin) = stream.refused_origin() {
                        origin_refused(context, stream, source, origin);
                    }
                    return None;
                }
            }
            Err(error) => {
                refuse_connect(stream, decoder.version(), &error).await;
                return None;
            }
        }
    }
}

/// The CONNECT with its user established: by the client certificate (TLS listeners with
/// `certificate_as_username`), or by its password or Authentication Method's exchange, which
/// may read AUTH packets. `None` when refused (the CONNACK is out) or gone.
async fn authenticated<S: ClientStream>(
    context: &ShardContext,
    wire: &mut ConnectionWire<'_, S>,
    mut connect: Box<Connect>,
    source: Option<SocketAddr>,
) -> Option<(Box<Connect>, Option<TopicClaim>)> {
    // `$bridge/<name>` is a bridge's own session and user (bridge.rs): no client may take
    // either, whatever the authentication configured.
    let reserved = |name: &str| name.starts_with(crate::config::bridge::RESERVED_PREFIX);
    if reserved(&connect.client_id) || connect.username.as_deref().is_some_and(reserved) {
        let reason = ReasonCode::CLIENT_IDENTIFIER_NOT_VALID;
        send_refusal(wire.stream, connect.protocol, reason).await;
        return None;
    }
    let certified = match &context.tls {
        Some(tls) if tls.certificate_as_username() && wire.stream.is_tls() => {
            match wire.stream.peer_common_name() {
                Some(name) => Some(name),
                // A certificate without a usable common name names nobody: no falling back
                // to a user name the client picks.
                None => {
                    let reason = ReasonCode::NOT_AUTHORIZED;
                    send_refusal(wire.stream, connect.protocol, reason).await;
                    return None;
                }
            }
        }
        _ => None,
    };
    match certified {
        // The certificate names the user; an Authentication Method's exchange would be
        // another identity, and is refused.
        Some(_) if connect.properties.authentication_method.is_some() => {
            let reason = ReasonCode::BAD_AUTHENTICATION_METHOD;
            send_refusal(wire.stream, connect.protocol, reason).await;
            None
        }
        // The client's certificate, checked against the client CA in the TLS handshake, is
        // its credential: its common name is the user name, and no password is asked for.
        Some(name) => {
            connect.username = Some(name.into());
            connect.password = None;
            Some((connect, None))
        }
        None => {
            // The client's own address: the PROXY header's, else the socket's.
            let peer = source.or_else(|| wire.stream.connection().peer_addr().ok());
            let peer = peer.map(|address| address.ip());
            match connect_auth::authenticate(&context.security, connect, peer, wire).await {
                Ok(admitted) => Some(admitted),
                Err(refused) => {
                    // Refused (the CONNACK is out) or gone.
                    if let Some(cause) = refused.map(refusal_cause) {
                        context.state.borrow_mut().connect_refused(cause);
                    }
                    wire.stream.close_gracefully();
                    None
                }
            }
        }
    }
}

/// Why a CONNECT was refused, for the counters, from the reason code its CONNACK carried.
fn refusal_cause(reason: ReasonCode) -> ConnectRefusal {
    match reason {
        ReasonCode::SERVER_BUSY => ConnectRefusal::PasswordChecksBusy,
        ReasonCode::CONNECTION_RATE_EXCEEDED => ConnectRefusal::LoginBackoff,
        ReasonCode::BANNED => ConnectRefusal::LoginBanned,
        _ => ConnectRefusal::NotAuthenticated,
    }
}

/// Answers a CONNECT that could not be decoded: a v5 CONNACK with the reason code, a 3.1.1
/// CONNACK "unacceptable protocol version" for an unknown level, or just a close.
async fn refuse_connect<S: ClientStream>(
    stream: &mut S,
    version: Option<ProtocolVersion>,
    error: &DecodeError,
) {
    let (version, reason) = match (version, error) {
        (Some(ProtocolVersion::V5), error) => (ProtocolVersion::V5, error.reason_code()),
        (_, DecodeError::UnsupportedProtocol { .. }) => {
            (ProtocolVersion::V3_1_1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)
        }
        _ => return,
    };
    send_refusal(stream, version, reason).await;
}

/// Writes a CONNACK refusing the connection (best effort: the connection closes next anyway).
async fn send_refusal<S: ClientStream>(
    stream: &mut S,
    version: ProtocolVersion,
    reason: ReasonCode,
) {
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    if connack.encode(version, &mut out).is_ok() {
        let _ = poll_fn(|cx| poll_write_all(stream, &mut out, cx)).await;
        stream.close_gracefully();
    }
}

/// Admits a connection whose CONNECT has been read on its client's home shard: registers it
/// with the shard and starts its task ([`ConnectionTask`]), or refuses it (too many
/// connections, or the broker is stopping).
pub(crate) fn start_connection<S: ClientStream>(
    context: Rc<ShardContext>,
    mut stream: S,
    decoder: Decoder,
    buf: BytesMut,
    connect: Box<Connect>,
    source: Option<SocketAddr>,
) {
    if context.connections.fetch_add(1, Ordering::Relaxed) >= context.connections_max.get()
        || context.stopping.get()
    {
        context.connections.fetch_sub(1, Ordering::Relaxed);
        let (reason, cause) = if context.stopping.get() {
            (ReasonCode::SERVER_UNAVAILABLE, ConnectRefusal::Stopping)
        } else {
            (ReasonCode::QUOTA_EXCEEDED, ConnectRefusal::ConnectionLimit)
        };
        context.state.borrow_mut().connect_refused(cause);
        let version = connect.protocol;
        drop(connect);
        return runtime::spawn_local(async move {
            send_refusal(&mut stream, version, reason).await;
        });
    }
    if context.cluster.is_some() && !connect.client_id.is_empty() {
        // The client id must be this node's in etcd before CONNACK (ids the shard assigns are
        // unique to this node and need no claim).
        return runtime::spawn_local(async move {
            let client_id = connect.client_id.to_string();
            let username = connect.username.as_deref();
            let claimed = cluster::claim(&context, &client_id, connect.clean_start, username).await;
            let serving = context
                .cluster
                .as_ref()
                .is_some_and(|cluster| cluster.node.fence.may_serve(Instant::now()));
            let refused = match claimed {
                Err(cause) => Some(cause),
                Ok(()) if context.stopping.get() => Some(ConnectRefusal::Stopping),
                Ok(()) if !serving => Some(ConnectRefusal::Fenced),
                Ok(()) => None,
            };
            if let Some(cause) = refused {
                context.connections.fetch_sub(1, Ordering::Relaxed);
                context.state.borrow_mut().connect_refused(cause);
                let version = connect.protocol;
                drop(connect);
                // "Busy" asks the client to come back later; "unavailable" to try elsewhere.
                let reason = match cause {
                    ConnectRefusal::EtcdBusy => ReasonCode::SERVER_BUSY,
                    ConnectRefusal::SessionOfAnotherUser => ReasonCode::NOT_AUTHORIZED,
                    _ => ReasonCode::SERVER_UNAVAILABLE,
                };
                return send_refusal(&mut stream, version, reason).await;
            }
            register_connection(context, stream, decoder, buf, connect, source);
        });
    }
    register_connection(context, stream, decoder, buf, connect, source);
}

/// Hands an admitted connection's CONNECT to the shard and starts its task.
fn register_connection<S: ClientStream>(
    context: Rc<ShardContext>,
    stream: S,
    decoder: Decoder,
    buf: BytesMut,
    connect: Box<Connect>,
    source: Option<SocketAddr>,
) {
    let conn = context.new_conn_id();
    let handle = ConnHandle { notify: stream.notify_key(), peer: stream.peer_key() };
    context.conns.borrow_mut().insert(conn, handle);
    if let Some(source) = source {
        context.proxied.borrow_mut().insert(conn, source);
    }
    // The address is asked of the socket (a system call) only for the connected event.
    let events = context.state.borrow().client_events_enabled();
    let peer = events
        .then(|| context.peer_addr(conn))
        .flatten()
        .map(|address| address.ip().to_canonical());
    context.state.borrow_mut().connect_from(conn, unbox(connect), peer, Instant::now());
    context.apply_effects();
    runtime::spawn_local(ConnectionTask { context, conn, buf, decoder, stream, step: Step::Feed });
}

/// Moves a value out of its box and frees the box at once. `*boxed` in an async block frees the
/// box only when the block's state is dropped: for the CONNECT (~1 KB of fields, all moved out
/// by then) that was the end of the connection.
// Taking the box is the point: it is freed when this returns.
#[allow(clippy::boxed_local)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// One connection on its client's home shard: feeds its packets to the shard and writes what the
/// shard produces for it, until either side closes; then tells the shard.
///
/// A hand-written future rather than an `async` block: this state lives as long as the
/// connection, and a compiler-laid-out coroutine kept 240 bytes (the arguments, the output being
/// written and each await's future side by side, `-Zprint-type-sizes`) where these fields take
/// 72 (output that finds the socket full waits in [`ShardContext::blocked_out`]).
struct ConnectionTask<S> {
    context: Rc<ShardContext>,
    conn: ConnId,
    /// Bytes read and not yet decoded; no allocation while empty.
    buf: BytesMut,
    decoder: Decoder,
    stream: S,
    step: Step,
}

// Every plain connection's task holds one: its size is part of the memory per idle connection
// (a TLS or WebSocket one adds a pointer to its layer).
const _: () = assert!(std::mem::size_of::<ConnectionTask<Connection>>() == 72);

/// Where a [`ConnectionTask`] goes on when polled.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Decode what has arrived, then write, wait or yield.
    Feed,
    /// Take the shard's output for the connection and write it, then feed.
    Write,
    /// The socket was full: write the rest of the output (kept in
    /// [`ShardContext::blocked_out`]), then feed.
    Blocked,
    /// Paused (its subscribers are draining): wait for a signal (a resume, flush or close).
    Paused,
    /// Wait for data or a signal.
    Wait,
    /// A PUBLISH or SUBSCRIBE is held back until the HTTP ACL service has answered about it
    /// (`acl_cache.rs`): wait for the answer, writing what the shard produces meanwhile; then
    /// feed it and go on.
    AclHold,
    /// Closed by the shard, its output written and the sending side shut: read and discard
    /// what the client still sends until it closes or [`CLOSE_LINGER`] passes. The shard has
    /// already forgotten the connection.
    Draining,
}

impl<S: ClientStream> Future for ConnectionTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let task = self.get_mut();
        let Poll::Ready(lost) = task.serve(cx) else { return Poll::Pending };
        if !matches!(task.step, Step::Draining) {
            task.release(lost);
        }
        Poll::Ready(())
    }
}

impl<S: ClientStream> ConnectionTask<S> {
    /// The connection's loop. Ready with true if the connection was lost (EOF or an error)
    /// rather than closed by the shard.
    fn serve(&mut self, cx: &mut TaskContext<'_>) -> Poll<bool> {
        let conn = self.conn;
        loop {
            match self.step {
                Step::Feed => {}
                Step::Write | Step::Blocked => {
                    let written = self.poll_write_output(cx);
                    match written {
                        // A close (keepalive timeout, takeover, protocol error) does not wait
                        // for a peer that stopped reading: what it has not taken is dropped.
                        Poll::Pending => {
                            return match self.stream.poll_signals(SIGNAL_CLOSE, cx) {
                                Poll::Ready(signals) if signals & SIGNAL_CLOSE != 0 => {
                                    self.stream.close_gracefully();
                                    Poll::Ready(false)
                                }
                                _ => Poll::Pending,
                            };
                        }
                        // What is left blocked, if anything, goes when the task ends.
                        Poll::Ready(Err(_)) => return Poll::Ready(true),
                        Poll::Ready(Ok(())) => {}
                    }
                    self.context.state.borrow_mut().output_written(conn, Instant::now());
                    self.context.apply_effects();
                    let signals = self.stream.signals();
                    if signals & SIGNAL_CLOSE != 0 && signals & SIGNAL_FLUSH == 0 {
                        return self.start_draining(cx);
                    }
                    self.step = Step::Feed;
                    if poll_yield(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Step::Draining => return self.poll_drain(cx),
                Step::AclHold => match self.poll_held(cx) {
                    None => return Poll::Pending,
                    Some(Step::Feed) => {}
                    Some(step) => {
                        self.step = step;
                        continue;
                    }
                },
                Step::Paused => {
                    // Resumed by a signal (Effect::Resume), or woken to flush or close.
                    // Meanwhile what is not a PUBLISH is still read and fed (acknowledgements,
                    // PINGREQ, DISCONNECT): a paused client that also subscribes must be able to
                    // acknowledge its own deliveries, or its pause would spread to everyone
                    // feeding it. Reading stops at the first PUBLISH.
                    if self.stream.poll_signals(SIGNAL_WAKE, cx).is_ready() {
                        self.step = Step::Feed;
                    } else if !front_is_publish(&self.buf)
                        && self.stream.poll_readable(cx).is_ready()
                    {
                        self.step = Step::Feed;
                        match self.stream.try_read_buf(&mut self.buf) {
                            Ok(Some(0)) | Err(_) => return Poll::Ready(true),
                            Ok(Some(_) | None) => {}
                        }
                    } else {
                        return Poll::Pending;
                    }
                }
                Step::Wait => {
                    if self.stream.poll_readable(cx).is_pending() {
                        if self.stream.poll_signals(SIGNAL_WAKE, cx).is_pending() {
                            return Poll::Pending;
                        }
                        self.step = Step::Feed;
                        continue;
                    }
                    self.step = Step::Feed;
                    // Nothing read (a spurious wake-up) goes round again: an empty buffer is
                    // given up before the next wait.
                    match self.stream.try_read_buf(&mut self.buf) {
                        Ok(Some(0)) | Err(_) => return Poll::Ready(true),
                        Ok(Some(_) | None) => {}
                    }
                }
            }
            self.step = self.feed();
            if let Step::Feed = self.step {
                // The batch limit stopped decoding: let other tasks run, then go on.
                if poll_yield(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    }

    /// Writes this connection's output (what the shard produced, or what found the socket full
    /// before); pending with the rest kept in [`ShardContext::blocked_out`] when the socket is
    /// full again.
    #[inline]
    fn poll_write_output(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let conn = self.conn;
        if let Step::Write = self.step {
            let mut out = self.context.state.borrow_mut().take_output(conn);
            let taken = out.len();
            let written = poll_write_all(&mut self.stream, &mut out, cx);
            if written.is_pending() {
                if out.len() < taken {
                    self.partly_written();
                }
                // The socket is full: the rest waits beside the task rather than in
                // it (rarely needed, and the task's state is every idle
                // connection's).
                self.context.blocked_out.borrow_mut().insert(conn, out);
                self.step = Step::Blocked;
            }
            written
        } else {
            let mut blocked = self.context.blocked_out.borrow_mut();
            let (written, moved) = match blocked.get_mut(&conn) {
                Some(out) => {
                    let before = out.len();
                    let written = poll_write_all(&mut self.stream, out, cx);
                    (written, out.len() < before)
                }
                None => (Poll::Ready(Ok(())), false),
            };
            if let Poll::Ready(Ok(())) = written {
                blocked.remove(&conn);
            }
            drop(blocked);
            if written.is_pending() && moved {
                self.partly_written();
            }
            written
        }
    }

    /// Tells the shard the connection is gone (lost: EOF or an error; else closed by the shard).
    fn release(&mut self, lost: bool) {
        let context = &self.context;
        if let Step::Blocked = self.step {
            context.blocked_out.borrow_mut().remove(&self.conn);
        }
        context.conns.borrow_mut().remove(&self.conn);
        context.proxied.borrow_mut().remove(&self.conn);
        context.acl_held.borrow_mut().remove(&self.conn);
        if lost {
            context.state.borrow_mut().connection_lost(self.conn, Instant::now());
        } else {
            context.state.borrow_mut().connection_closed(self.conn);
        }
        context.apply_effects();
        context.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// With an HTTP ACL service: holds `packet` back (`None`) when it raises a question the cache
    /// has no answer to, and has the service asked off the shard; [`Step::AclHold`] feeds it
    /// once the answers are in, and the shard's authorizer finds them cached. Only this
    /// client's packets wait, for at most the request's timeout (plus its wait for a thread).
    fn ask_acl_first(&self, packet: Packet) -> Option<Packet> {
        let Some(service) = self.context.security.acl_service() else { return Some(packet) };
        if !matches!(packet, Packet::Publish(_) | Packet::Subscribe(_)) {
            return Some(packet);
        }
        let questions = {
            let state = self.context.state.borrow();
            let Some((username, client_id)) = state.client_of(self.conn) else {
                return Some(packet);
            };
            let mut questions = acl_cache::questions(username, client_id, &packet);
            // A PUBLISH that names its topic by alias only: the topic the alias stands for.
            if let Packet::Publish(publish) = &packet {
                let alias = publish.properties.topic_alias.filter(|_| publish.topic.is_empty());
                if let Some(topic) = alias.and_then(|alias| state.alias_topic(self.conn, alias)) {
                    questions.push(Question::new(username, client_id, topic, Action::Publish));
                }
            }
            questions
        };
        let Some(waiting) = service.fetch(questions) else { return Some(packet) };
        self.context.acl_held.borrow_mut().insert(self.conn, (packet, Some(Box::pin(waiting))));
        None
    }

    /// Waits for the answers about the packet held back ([`Step::AclHold`]): `Some(Feed)` once
    /// they are in ([`Self::feed`] feeds it, after the fence check), `Some(Write)` when the
    /// shard has output meanwhile, `Some(AclHold)` to look again after a wake-up, `None` while
    /// waiting.
    fn poll_held(&mut self, cx: &mut TaskContext<'_>) -> Option<Step> {
        let conn = self.conn;
        let mut held = self.context.acl_held.borrow_mut();
        let answered = match held.get_mut(&conn) {
            Some((_, Some(receiver))) => {
                futures_lite::Stream::poll_next(receiver.as_mut(), cx).is_ready()
            }
            _ => true,
        };
        if answered {
            if let Some((_, waiting)) = held.get_mut(&conn) {
                *waiting = None;
            }
            return Some(Step::Feed);
        }
        drop(held);
        if self.stream.signals() & (SIGNAL_FLUSH | SIGNAL_CLOSE) != 0 {
            self.stream.clear_signals(SIGNAL_FLUSH);
            return Some(Step::Write);
        }
        match self.stream.poll_signals(SIGNAL_WAKE, cx) {
            Poll::Ready(_) => Some(Step::AclHold),
            Poll::Pending => None,
        }
    }

    /// The shard closed the connection and its output (the DISCONNECT saying why, for a v5
    /// client) is written: shuts the sending side and drains what the client still sends, so
    /// the close is a FIN the client can read up to, not a reset that loses the DISCONNECT
    /// ([`Step::Draining`]). Past [`CLOSING_MAX`] draining connections on this shard, closes
    /// at once.
    fn start_draining(&mut self, cx: &mut TaskContext<'_>) -> Poll<bool> {
        let mut closing = self.context.closing.borrow_mut();
        if closing.len() >= CLOSING_MAX {
            drop(closing);
            self.stream.close_gracefully();
            return Poll::Ready(false);
        }
        closing.push_back((Instant::now() + CLOSE_LINGER, self.stream.notify_key()));
        drop(closing);
        self.stream.finish();
        self.release(false);
        // Only the ticker signals from here on (at the deadline): what was set is spent.
        self.stream.clear_signals(SIGNAL_CLOSE | SIGNAL_FLUSH | SIGNAL_WAKE);
        self.step = Step::Draining;
        self.poll_drain(cx)
    }

    /// Reads and discards until the client closes, the read fails, or the deadline's signal.
    fn poll_drain(&mut self, cx: &mut TaskContext<'_>) -> Poll<bool> {
        loop {
            if self.stream.poll_signals(SIGNAL_CLOSE, cx).is_ready() {
                return Poll::Ready(false);
            }
            if self.stream.poll_readable(cx).is_pending() {
                // Nothing to read: what was read is not kept while waiting.
                self.buf = BytesMut::new();
                return Poll::Pending;
            }
            self.buf.clear();
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(Some(0)) | Err(_) => return Poll::Ready(false),
                Ok(Some(_) | None) => {}
            }
            if poll_yield(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// The socket took part of this connection's output and is full again: tells the shard
    /// the subscriber still drains (a congested one that does is not stalled).
    fn partly_written(&self) {
        self.context.state.borrow_mut().output_progress(self.conn, Instant::now());
    }

    /// Feeds what has arrived to the shard, a bounded batch per turn, and says what comes
    /// next: [`Step::Write`] with the shard's output taken, [`Step::Paused`], [`Step::Feed`]
    /// when the batch limit stopped decoding, or [`Step::Wait`].
    fn feed(&mut self) -> Step {
        let context = &*self.context;
        let conn = self.conn;
        if context.cluster.as_ref().is_some_and(|c| !c.node.fence.may_serve(Instant::now())) {
            // This node's lease may have lapsed (a long pause, a partition): it must not serve
            // anyone a peer may have claimed. Every connection here closes.
            context.state.borrow_mut().fence(Instant::now());
            context.apply_effects();
            return Step::Write;
        }
        // A packet held for the ACL service: still waiting, or answered and fed first. Without
        // the service nothing is ever held, and the map is not looked at.
        let mut answered = false;
        if context.security.acl_service().is_some() {
            match context.acl_held.borrow().get(&conn) {
                Some((_, Some(_))) => return Step::AclHold,
                Some((_, None)) => answered = true,
                None => {}
            }
        }
        let mut fed = 0;
        if answered {
            if let Some((packet, _)) = context.acl_held.borrow_mut().remove(&conn) {
                context.state.borrow_mut().packet(conn, packet, Instant::now());
                fed += 1;
            }
        }
        // A paused connection (its subscribers are draining) feeds no PUBLISH until resumed.
        let mut held = false;
        let mut more = true;
        let mut paused = context.state.borrow().is_paused(conn);
        while more && fed < PACKETS_PER_TURN_MAX {
            if paused && front_is_publish(&self.buf) {
                break;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Decoded::Packet(packet)) => {
                    let Some(packet) = self.ask_acl_first(packet) else {
                        held = true;
                        break;
                    };
                    let mut state = context.state.borrow_mut();
                    state.packet(conn, packet, Instant::now());
                    paused = state.is_paused(conn);
                    fed += 1;
                }
                Ok(Decoded::NeedMore(_)) => more = false,
                Err(error) => {
                    context.state.borrow_mut().decode_error(conn, &error, Instant::now());
                    self.buf.clear();
                    more = false;
                }
            }
        }
        if fed > 0 {
            context.apply_effects();
        }
        if self.buf.is_empty() {
            // An idle connection keeps no read buffer.
            self.buf = BytesMut::new();
        }
        if held {
            return Step::AclHold;
        }
        if self.stream.signals() & (SIGNAL_FLUSH | SIGNAL_CLOSE) != 0 {
            self.stream.clear_signals(SIGNAL_FLUSH);
            Step::Write
        } else if paused {
            Step::Paused
        } else if more {
            Step::Feed
        } else {
            Step::Wait
        }
    }
}

/// Whether the next packet in `buf` is a PUBLISH (what a paused connection must not feed).
fn front_is_publish(buf: &BytesMut) -> bool {
    buf.first().is_some_and(|first| first >> 4 == 3)
}

/// Polls [`runtime::yield_if_needed`] once: pending when the task has run long enough and
/// should let others run (it is woken at once). Its future holds nothing worth keeping: a
/// second poll would only return ready, so the caller goes on when polled again.
fn poll_yield(cx: &mut TaskContext<'_>) -> Poll<()> {
    std::pin::pin!(runtime::yield_if_needed()).poll(cx)
}

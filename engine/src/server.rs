//! `shardmq serve`: boots one shard per core and wires each shard's state machine
//! ([`shardmq_shard::Shard`]) to its listener, its connections, its timers and the mesh.
//!
//! Every shard runs the same tasks on its own executor: an accept loop on its SO_REUSEPORT
//! listener, one task per connection (read, decode, feed the shard, write what the shard
//! produced), one sender and one receiver per peer shard, and a ticker for keepalive, will delay
//! and session expiry. The state machine is only borrowed between awaits, never across one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_lite::future;
use shardmq_io::codec::{
    ConnAck, Connect, DecodeError, Decoded, Decoder, Packet, Properties, ProtocolVersion,
    ReasonCode,
};
use shardmq_io::runtime::{
    self, bind_listener_sockets, build_mesh, needs_accept_backoff, ListenerSocket, MeshEnds,
    MeshReceiver, MeshSender, ShardPlacement, StreamHandoff, TcpListener, TcpStream,
};
use shardmq_shard::{home_shard, ConnId, Effect, Shard, ShardId, ShardMsg};

use crate::config::Config;

/// Pending connections the kernel queues per listener (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;
/// Packets one connection decodes and hands to its shard before yielding to other tasks.
const PACKETS_PER_TURN_MAX: usize = 256;
/// How often a shard runs its timers (keepalive, will delay, session expiry) at the latest.
const TICK_INTERVAL: Duration = Duration::from_millis(250);
/// How long an accept loop backs off when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often "out of file descriptors" is logged at most.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often every shard's executor wakes even when nothing happens. glommio 0.9.0 can lose the
/// wake-up of a parked executor when another shard sends on a mesh channel (seen here under CPU
/// contention as a CONNACK delayed by seconds, or a shard stuck connecting its mesh); the reactor
/// checks every shared channel each time it wakes, so a heartbeat bounds such a delay to this.
const HEARTBEAT: Duration = Duration::from_millis(5);
/// How long shutdown waits for connections to flush their DISCONNECT before exiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What travels between shards: state-machine messages and connections being handed over.
enum MeshItem {
    Shard(ShardMsg),
    Adopt(Adoption),
}

/// A connection moving to its client's home shard, with everything already read from it.
struct Adoption {
    stream: StreamHandoff,
    connect: Box<Connect>,
    leftover: Bytes,
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let shards = usize::from(config.shards);
    let sockets = bind_listener_sockets(config.listen, LISTEN_BACKLOG, shards)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound: SocketAddr = sockets[0].local_addr().context("listener address")?;
    tracing::info!(
        "listening for MQTT on {bound} ({shards} shards; data dir {})",
        config.data_dir.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_thread(stop.clone())?;
    let stops: Vec<Arc<AtomicBool>> = (0..shards).map(|_| stop.clone()).collect();
    let mesh = build_mesh::<Vec<MeshItem>>(shards);
    let connections = Arc::new(AtomicUsize::new(0));
    let per_shard: Vec<_> =
        sockets.into_iter().zip(mesh).zip(stops).map(|((s, m), stop)| (s, m, stop)).collect();
    let handles = runtime::start_shards(ShardPlacement::PinnedToCpus, per_shard, {
        let config = config.clone();
        move |index, (socket, mesh, stop)| {
            shard_main(ShardId(index.get() as u16), config, socket, mesh, stop, connections)
        }
    })
    .context("cannot start the shards")?;
    let mut failed = None;
    for handle in handles {
        if let Err(panicked) = handle.join() {
            tracing::error!("{panicked}");
            failed = Some(panicked);
        }
    }
    match failed {
        Some(panicked) => Err(anyhow::anyhow!("{panicked}")),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Waits for SIGINT/SIGTERM on a plain thread and raises the stop flag every shard's heartbeat
/// reads (a flag, not a cross-thread wake-up: see [`HEARTBEAT`]).
fn spawn_signal_thread(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "shutting down");
                stop.store(true, Ordering::Relaxed);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// A one-waiter wake-up flag for a task on this shard.
#[derive(Debug, Default)]
struct Signal {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// What a connection task needs to hear from the shard.
#[derive(Debug, Default)]
struct ConnHandle {
    signal: Signal,
    flush: Cell<bool>,
    close: Cell<bool>,
}

/// Lives on each shard: the state machine and the engine-side bookkeeping around it.
struct ShardContext {
    id: ShardId,
    shards: u16,
    state: RefCell<Shard>,
    conns: RefCell<HashMap<ConnId, Rc<ConnHandle>>>,
    mesh_out: Vec<RefCell<Vec<MeshItem>>>,
    mesh_signals: Vec<Signal>,
    next_conn: Cell<u64>,
    stopping: Cell<bool>,
    stop_signal: Signal,
    /// Connections on the whole node (incremented at CONNECT, decremented at close).
    connections: Arc<AtomicUsize>,
    connections_max: usize,
    packet_bytes_max: u32,
    connect_timeout: Duration,
    effects: RefCell<Vec<Effect>>,
}

impl ShardContext {
    fn new_conn_id(&self) -> ConnId {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        // Unique per shard; the shard index in the high bits keeps ids unique per node in logs.
        ConnId((u64::from(self.id.0) << 48) | id)
    }

    /// Carries out what the state machine asked for.
    fn apply_effects(&self) {
        let mut effects = self.effects.take();
        self.state.borrow_mut().drain_effects(&mut effects);
        {
            let conns = self.conns.borrow();
            for effect in effects.drain(..) {
                match effect {
                    Effect::Flush(conn) => {
                        if let Some(handle) = conns.get(&conn) {
                            handle.flush.set(true);
                            handle.signal.notify();
                        }
                    }
                    Effect::Close(conn) => match conns.get(&conn) {
                        Some(handle) => {
                            handle.close.set(true);
                            handle.signal.notify();
                        }
                        None => self.state.borrow_mut().connection_closed(conn),
                    },
                    Effect::Mesh(to, msg) => self.to_peer(to, MeshItem::Shard(msg)),
                }
            }
        }
        // Give the (now empty) vector back to keep its capacity.
        *self.effects.borrow_mut() = effects;
    }

    fn to_peer(&self, to: ShardId, item: MeshItem) {
        self.mesh_out[to.index()].borrow_mut().push(item);
        self.mesh_signals[to.index()].notify();
    }
}

async fn shard_main(
    id: ShardId,
    config: Config,
    socket: ListenerSocket,
    mesh: MeshEnds<Vec<MeshItem>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
) {
    let stopping = Rc::new(Signal::default());
    runtime::spawn_local(heartbeat(stop, stopping.clone()));
    let mesh = mesh.connect().await;
    let listener = socket.into_listener();
    let shards = config.shards;
    let context = Rc::new(ShardContext {
        id,
        shards,
        state: RefCell::new(Shard::new(id, shards, config.limits.clone())),
        conns: RefCell::new(HashMap::new()),
        mesh_out: (0..shards).map(|_| RefCell::new(Vec::new())).collect(),
        mesh_signals: (0..shards).map(|_| Signal::default()).collect(),
        next_conn: Cell::new(1),
        stopping: Cell::new(false),
        stop_signal: Signal::default(),
        connections,
        connections_max: config.limits.connections_max,
        packet_bytes_max: config.limits.packet_bytes_max,
        connect_timeout: config.limits.connect_timeout,
        effects: RefCell::new(Vec::new()),
    });
    for sender in mesh.senders.into_iter().flatten() {
        runtime::spawn_local(mesh_sender(context.clone(), sender));
    }
    for receiver in mesh.receivers.into_iter().flatten() {
        runtime::spawn_local(mesh_receiver(context.clone(), receiver));
    }
    runtime::spawn_local(ticker(context.clone()));
    runtime::spawn_local(accept_loop(context.clone(), listener));

    // Runs until the signal thread raises the stop flag.
    stopping.wait().await;
    context.stopping.set(true);
    context.stop_signal.notify();
    context.state.borrow_mut().shutdown();
    context.apply_effects();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !context.conns.borrow().is_empty() && Instant::now() < deadline {
        runtime::sleep(Duration::from_millis(10)).await;
    }
}

/// Wakes the executor every [`HEARTBEAT`] and signals `stopping` once the stop flag is up.
async fn heartbeat(stop: Arc<AtomicBool>, stopping: Rc<Signal>) {
    loop {
        runtime::sleep(HEARTBEAT).await;
        if stop.load(Ordering::Relaxed) {
            stopping.notify();
        }
    }
}

async fn ticker(context: Rc<ShardContext>) {
    loop {
        let now = Instant::now();
        let wait = context
            .state
            .borrow()
            .next_deadline()
            .map_or(TICK_INTERVAL, |due| due.saturating_duration_since(now).min(TICK_INTERVAL));
        runtime::sleep(wait.max(Duration::from_millis(1))).await;
        context.state.borrow_mut().tick(Instant::now());
        context.apply_effects();
    }
}

async fn mesh_sender(context: Rc<ShardContext>, mut sender: MeshSender<Vec<MeshItem>>) {
    let peer = sender.peer().get();
    loop {
        context.mesh_signals[peer].wait().await;
        // Everything queued for this peer since the last send goes as one batch.
        let batch = std::mem::take(&mut *context.mesh_out[peer].borrow_mut());
        if batch.is_empty() {
            continue;
        }
        if sender.send(batch).await.is_err() {
            return;
        }
    }
}

async fn mesh_receiver(context: Rc<ShardContext>, mut receiver: MeshReceiver<Vec<MeshItem>>) {
    let from = ShardId(receiver.peer().get() as u16);
    while let Some(batch) = receiver.recv().await {
        let now = Instant::now();
        for item in batch {
            match item {
                MeshItem::Shard(msg) => context.state.borrow_mut().mesh(from, msg, now),
                MeshItem::Adopt(adoption) => {
                    let stream = adoption.stream.into_stream();
                    let buf = BytesMut::from(&adoption.leftover[..]);
                    let decoder =
                        Decoder::client(adoption.connect.protocol, context.packet_bytes_max);
                    runtime::spawn_local(run_connection(
                        context.clone(),
                        stream,
                        decoder,
                        buf,
                        adoption.connect,
                    ));
                }
            }
        }
        context.apply_effects();
        runtime::yield_if_needed().await;
    }
}

async fn accept_loop(context: Rc<ShardContext>, listener: TcpListener) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            context.stop_signal.wait().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { return };
        match accepted {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                runtime::spawn_local(handshake(context.clone(), stream));
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

/// Reads CONNECT on the accepting shard, then runs the connection here or hands it to the
/// client's home shard.
async fn handshake(context: Rc<ShardContext>, mut stream: TcpStream) {
    let mut decoder = Decoder::server(context.packet_bytes_max);
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + context.connect_timeout;
    let connect = loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Packet(Packet::Connect(connect))) => break connect,
            // The server decoder refuses anything else as the first packet.
            Ok(Decoded::Packet(_)) => return,
            Ok(Decoded::NeedMore(_)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let read = future::or(async { Some(stream.read_buf(&mut buf).await) }, async {
                    runtime::sleep(left).await;
                    None
                })
                .await;
                match read {
                    Some(Ok(n)) if n > 0 => {}
                    // EOF, an error, or no CONNECT in time: close.
                    _ => return,
                }
            }
            Err(error) => return refuse_connect(stream, decoder.version(), &error).await,
        }
    };
    let home = if connect.client_id.is_empty() {
        // The state machine assigns an id homed on this shard.
        context.id
    } else {
        home_shard(&connect.client_id, context.shards)
    };
    if home == context.id {
        return run_connection(context, stream, decoder, buf, connect).await;
    }
    match stream.into_handoff() {
        Ok(handoff) => {
            let adoption = Adoption { stream: handoff, connect, leftover: buf.freeze() };
            context.to_peer(home, MeshItem::Adopt(adoption));
        }
        Err(error) => tracing::warn!(shard = %context.id, "cannot hand a connection over: {error}"),
    }
}

/// Answers a CONNECT that could not be decoded: a v5 CONNACK with the reason code, a 3.1.1
/// CONNACK "unacceptable protocol version" for an unknown level, or just a close.
async fn refuse_connect(
    mut stream: TcpStream,
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
    send_refusal(&mut stream, version, reason).await;
}

/// Writes a CONNACK refusing the connection (best effort: the connection closes next anyway).
async fn send_refusal(stream: &mut TcpStream, version: ProtocolVersion, reason: ReasonCode) {
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    if connack.encode(version, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
    }
}

/// One connection on its client's home shard: feeds its packets to the shard and writes what the
/// shard produces for it, until either side closes.
async fn run_connection(
    context: Rc<ShardContext>,
    mut stream: TcpStream,
    mut decoder: Decoder,
    mut buf: BytesMut,
    connect: Box<Connect>,
) {
    let version = connect.protocol;
    if context.connections.fetch_add(1, Ordering::Relaxed) >= context.connections_max
        || context.stopping.get()
    {
        context.connections.fetch_sub(1, Ordering::Relaxed);
        let reason = if context.stopping.get() {
            ReasonCode::SERVER_UNAVAILABLE
        } else {
            ReasonCode::QUOTA_EXCEEDED
        };
        return send_refusal(&mut stream, version, reason).await;
    }
    let conn = context.new_conn_id();
    let handle = Rc::new(ConnHandle::default());
    context.conns.borrow_mut().insert(conn, handle.clone());
    context.state.borrow_mut().connect(conn, *connect, Instant::now());
    context.apply_effects();

    let lost = serve_connection(&context, conn, &handle, &mut stream, &mut decoder, &mut buf).await;
    let now = Instant::now();
    context.conns.borrow_mut().remove(&conn);
    if lost {
        context.state.borrow_mut().connection_lost(conn, now);
    } else {
        context.state.borrow_mut().connection_closed(conn);
    }
    context.apply_effects();
    context.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The connection's loop. Returns true if the connection was lost (EOF or an error) rather than
/// closed by the shard.
async fn serve_connection(
    context: &ShardContext,
    conn: ConnId,
    handle: &ConnHandle,
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> bool {
    enum Wake {
        Readable(std::io::Result<()>),
        Signal,
    }
    loop {
        // Feed what has arrived, a bounded batch per turn.
        let mut fed = 0;
        let mut more = true;
        while more && fed < PACKETS_PER_TURN_MAX {
            match decoder.decode(buf) {
                Ok(Decoded::Packet(packet)) => {
                    context.state.borrow_mut().packet(conn, packet, Instant::now());
                    fed += 1;
                }
                Ok(Decoded::NeedMore(_)) => more = false,
                Err(error) => {
                    context.state.borrow_mut().decode_error(conn, &error, Instant::now());
                    buf.clear();
                    more = false;
                }
            }
        }
        if fed > 0 {
            context.apply_effects();
        }
        if buf.is_empty() {
            // An idle connection keeps no read buffer.
            *buf = BytesMut::new();
        }
        if handle.flush.replace(false) || handle.close.get() {
            let out = context.state.borrow_mut().take_output(conn);
            if !out.is_empty() && stream.write_all(&out).await.is_err() {
                return true;
            }
            context.state.borrow_mut().output_written(conn, Instant::now());
            context.apply_effects();
            if handle.close.get() && !handle.flush.get() {
                let _ = stream.shutdown(std::net::Shutdown::Both).await;
                return false;
            }
            runtime::yield_if_needed().await;
            continue;
        }
        if more {
            // The batch limit stopped decoding: let other tasks run, then go on.
            runtime::yield_if_needed().await;
            continue;
        }
        let wake = future::or(async { Wake::Readable(stream.readable().await) }, async {
            handle.signal.wait().await;
            Wake::Signal
        })
        .await;
        match wake {
            Wake::Readable(Ok(())) => match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            Wake::Readable(Err(_)) => return true,
            Wake::Signal => {}
        }
    }
}

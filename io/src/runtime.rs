//! The runtime seam: the only place in shardmq that names glommio.
//!
//! The broker is thread-per-core on glommio 0.9.0 (the last crates.io release, pinned exactly,
//! built from `vendor/glommio` with one scheduler fix: vendor/README.md).
//! Everything the other crates need from the runtime goes through this small API, so a later move
//! to another io_uring runtime (compio, a published glommio fork) touches this module only:
//!
//! - shards: [`start_shards`] runs one pinned `LocalExecutor` per core, each on its own thread;
//! - sockets: [`bind_listener_sockets`] / [`bind_listener`] build SO_REUSEPORT listeners with
//!   socket2, [`TcpListener::accept`] accepts [`Connection`]s, which hold neither a buffer nor
//!   an armed poll while idle (readiness comes from one epoll set per shard), [`StreamHandoff`]
//!   moves a connection to another shard, and [`TcpStream::connect`] opens outgoing streams
//!   that read and write without a per-connection buffer;
//! - the mesh: [`build_mesh`] makes the N×(N−1) bounded SPSC channels between shards;
//! - time and tasks: [`sleep`], [`Instant`], [`spawn_local`], [`yield_if_needed`];
//! - the blocking seam: [`spawn_blocking`], which turns a panic into an error.
//!
//! Everything except [`start_shards`], [`build_mesh`] and [`bind_listener_sockets`] must run on a
//! shard (inside a glommio executor): glommio panics otherwise.

mod blocking;
mod mesh;
mod net;
mod poller;
mod shards;
#[cfg(test)]
mod tests;

pub use blocking::{spawn_blocking, Panicked};
pub use mesh::{
    build_mesh, Disconnected, Mesh, MeshEnds, MeshReceiver, MeshSender, TrySendError,
    MESH_CHANNEL_CAPACITY,
};
pub use net::{
    bind_listener, bind_listener_socket, bind_listener_sockets, needs_accept_backoff, Connection,
    ListenerSocket, StreamHandoff, TcpListener, TcpStream, READ_BYTES_MAX, READ_BYTES_MIN,
};
pub use poller::{DISPATCH_LATENCY, EPOLL_FALLBACK_INTERVAL, EVENTS_PER_BATCH_MAX};
pub use shards::{
    start_shards, ShardHandle, ShardIndex, ShardPanicked, ShardPlacement, SHARD_IO_MEMORY_BYTES,
    SHARD_PREEMPT_TIMER,
};

/// The clock type the state machines take as a parameter; read it with `Instant::now()` at the
/// edge (the connection loop), never inside a state machine.
pub use std::time::Instant;

/// Waits for `duration` on the current shard's timer wheel.
///
/// The first sleep on an executor takes ~7 ms whatever its duration (a glommio 0.9.0 bug, fixed
/// only upstream), so do not use a first sleep to measure anything.
pub async fn sleep(duration: std::time::Duration) {
    glommio::timer::sleep(duration).await;
}

/// Asks the allocator to give the memory it holds free back to the system (glibc's
/// `malloc_trim(0)`: the free pages of every arena); a no-op on other C libraries. It walks
/// every arena under its lock, so call it rarely, from a thread that is not a shard's: after a
/// reconnect storm, glibc otherwise keeps what the storm's connections used.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointer and only touches the allocator's own state, under
    // its locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `future` as a detached task on the current shard.
///
/// The task runs until it completes, even though nobody awaits it; it dies with the executor.
/// A panic inside it unwinds the shard's thread, which [`ShardHandle::join`] reports.
pub fn spawn_local<F>(future: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    // Dropping a glommio `Task` would cancel it; detaching keeps it running.
    drop(glommio::spawn_local(future).detach());
}

/// Yields to the shard's other tasks if this one has run for longer than the preempt timer
/// ([`SHARD_PREEMPT_TIMER`]); otherwise returns at once. Call it inside every bounded batch loop.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

//! Starting shards: one glommio `LocalExecutor` per OS thread, each pinned to a CPU.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorBuilder, Placement, PoolPlacement};

/// Memory each executor registers with io_uring (glommio's `io_memory`).
///
/// glommio registers it on 3 rings per executor and only warns when RLIMIT_MEMLOCK is short.
/// The broker does not use glommio's DMA files, so 64 KiB is plenty and keeps several shards well
/// under an 8 MiB memlock limit.
pub const SHARD_IO_MEMORY_BYTES: usize = 64 << 10;

/// How long a task may run before `yield_if_needed` actually yields.
///
/// glommio's default is 100 ms, far too long for a broker's tail latency; 5 ms keeps a busy
/// shard responsive without yielding on every small batch.
pub const SHARD_PREEMPT_TIMER: Duration = Duration::from_millis(5);

/// A shard's position among the node's shards: `0..shard_count`.
///
/// Also the index of the shard's entry in every per-shard `Vec` (mesh ends, listeners).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardIndex(usize);

impl ShardIndex {
    /// Wraps a shard's position.
    pub const fn new(index: usize) -> ShardIndex {
        ShardIndex(index)
    }

    /// The position, for indexing per-shard vectors.
    pub const fn get(self) -> usize {
        self.0
    }
}

impl fmt::Display for ShardIndex {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "shard-{}", self.0)
    }
}

/// Where shard threads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardPlacement {
    /// Shard `i` is pinned to the `i % n`-th online CPU (in ascending CPU id order), as
    /// thread-per-core wants. The shard's blocking-pool thread (the blocking seam) is not pinned.
    PinnedToCpus,
    /// The scheduler places shard threads freely (tests on busy machines, containers whose CPU
    /// ids do not match the online list).
    Unbound,
}

/// A running shard's thread. Join it to learn how the shard ended.
#[derive(Debug)]
pub struct ShardHandle<T> {
    shard: ShardIndex,
    // `None` means the shard was told not to run; a handle given to the caller never is.
    thread: thread::JoinHandle<Option<T>>,
}

/// A shard's thread panicked; the message is the panic's payload when it was a string.
#[derive(Debug, thiserror::Error)]
#[error("{shard} panicked: {message}")]
pub struct ShardPanicked {
    /// The shard that panicked.
    pub shard: ShardIndex,
    /// The panic message, or a placeholder when the payload was not a string.
    pub message: String,
}

impl<T> ShardHandle<T> {
    /// The shard this handle runs.
    pub fn shard(&self) -> ShardIndex {
        self.shard
    }

    /// Whether the shard's thread has ended (its future returned or it panicked), so `join` will
    /// not block.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the shard's future to finish and returns its output.
    ///
    /// A panic anywhere on the shard (its main future or any task it spawned) unwinds the
    /// shard's thread and comes back here as `Err`, never silently lost.
    pub fn join(self) -> Result<T, ShardPanicked> {
        match self.thread.join() {
            Ok(Some(output)) => Ok(output),
            // `start_shards` hands out handles only after every shard got the start signal, and
            // a shard that got it runs its future to completion or panics.
            Ok(None) => unreachable!("{} was handed out without being started", self.shard),
            Err(payload) => {
                Err(ShardPanicked { shard: self.shard, message: panic_message(payload.as_ref()) })
            }
        }
    }
}

/// Starts one shard per element of `per_shard`, each on its own OS thread named `shard-<i>` with
/// its own glommio executor, and runs `make_shard(index, per_shard[index])` on it.
///
/// `per_shard` carries what each shard owns from the start (its [`MeshEnds`](super::MeshEnds),
/// its [`ListenerSocket`](super::ListenerSocket)); pass `vec![(); n]` when there is nothing.
/// `make_shard` is cloned into every thread and called there, so the future and the state it
/// builds may be `!Send` (`Rc`, `RefCell`, glommio streams).
///
/// Every executor is built before any shard runs: if one cannot be built (pinning refused, out
/// of memory or threads), none runs `make_shard`, the threads already started are joined and the
/// error names the shard. An empty `per_shard` is refused as `InvalidInput`.
pub fn start_shards<S, G, F, T>(
    placement: ShardPlacement,
    per_shard: Vec<S>,
    make_shard: G,
) -> io::Result<Vec<ShardHandle<T>>>
where
    S: Send + 'static,
    G: FnOnce(ShardIndex, S) -> F + Send + Clone + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if per_shard.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "start_shards needs at least one shard",
        ));
    }
    let placements = shard_placements(placement, per_shard.len())?;

    let (ready_sender, ready_receiver) = mpsc::channel::<(ShardIndex, io::Result<()>)>();
    let mut starting = Vec::with_capacity(per_shard.len());
    let mut first_error = None;
    for (index, (input, placement)) in per_shard.into_iter().zip(placements).enumerate() {
        let shard = ShardIndex(index);
        let (start_sender, start_receiver) = mpsc::channel::<()>();
        let ready_sender = ready_sender.clone();
        let make_shard = make_shard.clone();
        let spawned = thread::Builder::new().name(shard.to_string()).spawn(move || {
            run_shard(shard, placement, ready_sender, start_receiver, make_shard, input)
        });
        match spawned {
            Ok(thread) => starting.push((shard, start_sender, thread)),
            Err(error) => {
                first_error = Some(with_shard(shard, error));
                break;
            }
        }
    }
    // Only the shard threads may hold senders now, so `recv` fails once all of them have
    // reported or died, instead of waiting forever for a thread that panicked before reporting.
    drop(ready_sender);
    for _ in 0..starting.len() {
        match ready_receiver.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(error))) => {
                first_error.get_or_insert(with_shard(shard, error));
            }
            Err(mpsc::RecvError) => {
                // A thread dropped its sender without reporting: it panicked while building its
                // executor. Joining it below names the shard and the message.
                first_error.get_or_insert(io::Error::other("a shard panicked while starting"));
                break;
            }
        }
    }

    if let Some(error) = first_error {
        // Dropping the start senders tells every waiting shard not to run; join them so no
        // executor outlives the failed start.
        let mut error = error;
        for (shard, start_sender, thread) in starting {
            drop(start_sender);
            if let Err(payload) = thread.join() {
                error = io::Error::other(format!(
                    "{shard} panicked while starting: {}",
                    panic_message(payload.as_ref())
                ));
            }
        }
        return Err(error);
    }

    let mut handles = Vec::with_capacity(starting.len());
    for (shard, start_sender, thread) in starting {
        // The shard is blocked in `recv` on the other end and only leaves it through this
        // message, so the send cannot fail.
        start_sender
            .send(())
            .map_err(|_| io::Error::other(format!("{shard} vanished before its start signal")))?;
        handles.push(ShardHandle { shard, thread });
    }
    Ok(handles)
}

/// The body of a shard's thread: build the executor, report, wait for the start signal, run.
fn run_shard<S, G, F, T>(
    shard: ShardIndex,
    placement: Placement,
    ready_sender: mpsc::Sender<(ShardIndex, io::Result<()>)>,
    start_receiver: mpsc::Receiver<()>,
    make_shard: G,
    input: S,
) -> Option<T>
where
    G: FnOnce(ShardIndex, S) -> F,
    F: Future<Output = T> + 'static,
{
    let built = LocalExecutorBuilder::new(placement)
        .name(&shard.to_string())
        .io_memory(SHARD_IO_MEMORY_BYTES)
        .preempt_timer(SHARD_PREEMPT_TIMER)
        // The blocking seam (redb commits, fsync) is not pinned to the shard's core: its CPU
        // work would otherwise compete with the reactor it exists to keep unblocked (measured
        // in perf/results/durable-qos1.md).
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .make()
        .map_err(io::Error::from);
    let (executor, report) = match built {
        Ok(executor) => (Some(executor), Ok(())),
        Err(error) => (None, Err(error)),
    };
    // The main thread may be gone if the start was abandoned; then there is no one to tell.
    let _ = ready_sender.send((shard, report));
    drop(ready_sender);
    let executor = executor?;
    // Disconnection without a message means another shard failed to start: do not run.
    start_receiver.recv().ok()?;
    Some(executor.run(make_shard(shard, input)))
}

/// glommio placements for `shard_count` shards.
fn shard_placements(placement: ShardPlacement, shard_count: usize) -> io::Result<Vec<Placement>> {
    match placement {
        ShardPlacement::Unbound => Ok((0..shard_count).map(|_| Placement::Unbound).collect()),
        ShardPlacement::PinnedToCpus => {
            let mut cpus: Vec<usize> = CpuSet::online()
                .map_err(io::Error::from)?
                .iter()
                .map(|location| location.cpu)
                .collect();
            // `CpuSet` iterates a hash set; sort so shard i always lands on the same CPU.
            cpus.sort_unstable();
            cpus.dedup();
            if cpus.is_empty() {
                return Err(io::Error::other("no online CPU found to pin shards to"));
            }
            Ok((0..shard_count).map(|index| Placement::Fixed(cpus[index % cpus.len()])).collect())
        }
    }
}

fn with_shard(shard: ShardIndex, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{shard} failed to start: {error}"))
}

/// The text of a panic payload: `panic!` with a literal gives `&str`, with arguments `String`.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

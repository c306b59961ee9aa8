//! The shard mesh: one bounded SPSC channel from every shard to every other, made at start-up.

use std::fmt;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{GlommioError, ResourceType};

use super::shards::ShardIndex;

/// Slots in each mesh channel.
///
/// Measured with glommio 0.9.0 on this machine: 19-29M msg/s at 1024 with batching, 1.8M msg/s
/// at 64. A slot is one message (send batches, `Vec<Event>`, not single events).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// One shard's unconnected ends of the mesh. `Send`: built on the main thread and moved into the
/// shard's thread (pass it in `start_shards`'s `per_shard`), then connected there.
pub struct MeshEnds<T: Send> {
    shard: ShardIndex,
    // Indexed by peer; `None` at `shard` itself.
    senders: Vec<Option<SharedSender<T>>>,
    receivers: Vec<Option<SharedReceiver<T>>>,
}

impl<T: Send> fmt::Debug for MeshEnds<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("MeshEnds")
            .field("shard", &self.shard)
            .field("shard_count", &self.senders.len())
            .finish()
    }
}

/// Builds the full mesh for `shard_count` shards: element `i` holds shard `i`'s senders to and
/// receivers from every other shard, each channel [`MESH_CHANNEL_CAPACITY`] deep.
pub fn build_mesh<T: Send>(shard_count: usize) -> Vec<MeshEnds<T>> {
    let mut ends: Vec<MeshEnds<T>> = (0..shard_count)
        .map(|index| MeshEnds {
            shard: ShardIndex::new(index),
            senders: (0..shard_count).map(|_| None).collect(),
            receivers: (0..shard_count).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from != to {
                let (sender, receiver) = shared_channel::new_bounded(MESH_CHANNEL_CAPACITY);
                ends[from].senders[to] = Some(sender);
                ends[to].receivers[from] = Some(receiver);
            }
        }
    }
    ends
}

impl<T: Send + 'static> MeshEnds<T> {
    /// The shard these ends belong to.
    pub fn shard(&self) -> ShardIndex {
        self.shard
    }

    /// Connects every end on the current shard; returns once every peer has connected its
    /// matching end too. Must be called on the shard the ends belong to.
    pub async fn connect(self) -> Mesh<T> {
        // A glommio end registers itself on its first poll, then waits until its peer end has
        // registered. Awaiting the ends one by one deadlocks (shard 0 waits on shard 1's
        // receiver while shard 1 waits on shard 0's), so every end is spawned, and so
        // registered, before any is awaited.
        let senders: Vec<_> = self
            .senders
            .into_iter()
            .map(|end| end.map(|end| glommio::spawn_local(end.connect())))
            .collect();
        let receivers: Vec<_> = self
            .receivers
            .into_iter()
            .map(|end| end.map(|end| glommio::spawn_local(end.connect())))
            .collect();
        let mut mesh = Mesh {
            shard: self.shard,
            senders: Vec::with_capacity(senders.len()),
            receivers: Vec::with_capacity(receivers.len()),
        };
        for (peer, task) in senders.into_iter().enumerate() {
            let sender = match task {
                Some(task) => Some(MeshSender { peer: ShardIndex::new(peer), inner: task.await }),
                None => None,
            };
            mesh.senders.push(sender);
        }
        for (peer, task) in receivers.into_iter().enumerate() {
            let receiver = match task {
                Some(task) => Some(MeshReceiver { peer: ShardIndex::new(peer), inner: task.await }),
                None => None,
            };
            mesh.receivers.push(receiver);
        }
        mesh
    }
}

/// One shard's connected mesh. Lives on its shard (`!Send`).
#[derive(Debug)]
pub struct Mesh<T: Send> {
    /// The shard this mesh belongs to.
    pub shard: ShardIndex,
    /// Senders indexed by peer; `None` at `shard` itself.
    pub senders: Vec<Option<MeshSender<T>>>,
    /// Receivers indexed by peer; `None` at `shard` itself.
    pub receivers: Vec<Option<MeshReceiver<T>>>,
}

/// The sending end of one mesh channel, to one peer shard.
#[derive(Debug)]
pub struct MeshSender<T: Send> {
    peer: ShardIndex,
    inner: ConnectedSender<T>,
}

/// The receiving end of one mesh channel, from one peer shard.
#[derive(Debug)]
pub struct MeshReceiver<T: Send> {
    peer: ShardIndex,
    inner: ConnectedReceiver<T>,
}

/// The peer shard's receiving end is gone; the message comes back.
#[derive(Debug, thiserror::Error)]
#[error("the peer shard's end of the mesh channel is gone")]
pub struct Disconnected<T>(pub T);

/// Why `try_send` did not send; the message comes back either way.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError<T> {
    /// The channel holds `MESH_CHANNEL_CAPACITY` messages the peer has not taken yet.
    #[error("the mesh channel is full")]
    Full(T),
    /// The peer shard's receiving end is gone.
    #[error("the peer shard's end of the mesh channel is gone")]
    Disconnected(T),
}

impl<T: Send> MeshSender<T> {
    /// The shard this sender sends to.
    pub fn peer(&self) -> ShardIndex {
        self.peer
    }

    /// Sends `message`, waiting while the channel is full.
    ///
    /// Takes `&mut self` on purpose: glommio 0.9.0's `send` panics ("operation would block") when
    /// two tasks wait for room on the same sender and both are woken for one free slot. One task
    /// per sender (the shard's outbound batcher) rules that out at compile time.
    pub async fn send(&mut self, message: T) -> Result<(), Disconnected<T>> {
        self.inner.send(message).await.map_err(|error| match error {
            GlommioError::Closed(ResourceType::Channel(message)) => Disconnected(message),
            // The error owns the message, which need not be `Debug`, so it is not printed.
            _ => unreachable!("glommio 0.9.0 send fails only with Closed"),
        })
    }

    /// Sends `message` if the channel has room, without waiting.
    pub fn try_send(&mut self, message: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(message).map_err(|error| match error {
            GlommioError::WouldBlock(ResourceType::Channel(message)) => TrySendError::Full(message),
            GlommioError::Closed(ResourceType::Channel(message)) => {
                TrySendError::Disconnected(message)
            }
            _ => unreachable!("glommio 0.9.0 try_send fails only with WouldBlock or Closed"),
        })
    }
}

impl<T: Send> MeshReceiver<T> {
    /// The shard this receiver receives from.
    pub fn peer(&self) -> ShardIndex {
        self.peer
    }

    /// Waits for the next message; `None` once the peer's sender is gone and the channel is
    /// drained.
    pub async fn recv(&mut self) -> Option<T> {
        self.inner.recv().await
    }
}

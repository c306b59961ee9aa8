//! The typed messages shards send each other over the SPSC mesh made at start-up. Messages from
//! one shard to another arrive in the order they were sent; nothing else is ordered.

use shardmq_codec::ByteString;

use crate::ids::{ConnId, PeerLease, PeerNode, ShardId};
use crate::message::SharedMessage;
use crate::state::{LinkEpoch, RouteFrame};

/// A publishing connection that a congested subscriber pauses: connection `conn` of shard
/// `shard` of this node (`node` is `None`) or of peer node `node` (whose publishes arrive over
/// a node link, and which is told with [`Forward::Pace`](crate::Forward::Pace)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Publisher {
    pub node: Option<PeerNode>,
    pub shard: ShardId,
    pub conn: ConnId,
}

/// A token that pairs a [`ShardMsg::SubscribeSync`] with its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncToken(pub u64);

/// What one shard tells another.
#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// The sender now has a subscriber for `filter` (of shared `group`, if any).
    RouteAdd { filter: ByteString, group: Option<ByteString> },
    /// The sender no longer has a subscriber for `filter` (of `group`).
    RouteRemove { filter: ByteString, group: Option<ByteString> },
    /// Barrier for a SUBSCRIBE: sent after the sender's RouteAdds, so when the receiver answers,
    /// it has applied them. Also asks for the receiver's retained messages matching `filters`.
    SubscribeSync { token: SyncToken, filters: Vec<ByteString> },
    /// The answer to [`ShardMsg::SubscribeSync`]: the receiver's retained messages, and its
    /// notes of large ones kept on other nodes (topic and holders).
    SubscribeReady {
        token: SyncToken,
        retained: Vec<SharedMessage>,
        elsewhere: Vec<(ByteString, Vec<PeerNode>)>,
    },
    /// Deliver to the receiver's own (non-shared) subscribers that match. With a `receipt`,
    /// the sender holds the publisher's acknowledgement until the receiver answers
    /// [`ShardMsg::Stored`] (after storing what it must).
    /// `publisher` is the connection that published it (on the sender, or on a peer node),
    /// paced when a subscriber here cannot keep up ([`ShardMsg::Pause`], `Forward::Pace`).
    Publish { message: SharedMessage, receipt: Option<u64>, publisher: Option<Publisher> },
    /// Deliver to one of the receiver's members of shared subscription `group` on `filter`.
    SharedPublish {
        message: SharedMessage,
        filter: ByteString,
        group: ByteString,
        receipt: Option<u64>,
        publisher: Option<Publisher>,
    },
    /// Store (or, with an empty payload, delete) a retained message in the receiver's partition;
    /// with `elsewhere`, only note that these peer nodes keep it (a large one).
    /// `version` orders retained writes (0: not versioned).
    Retain {
        message: SharedMessage,
        receipt: Option<u64>,
        elsewhere: Option<Vec<PeerNode>>,
        version: u64,
    },
    /// Peer node `node` keeps these large retained messages of the receiver's partition, at
    /// these versions.
    RetainedHeld { node: PeerNode, topics: Vec<(ByteString, u64)> },
    /// The writes a receipt was asked for are durable (`ok`) or failed; `matched`: a
    /// subscriber on the answering shard took the message (see `Forward::Receipt`).
    Stored { token: u64, ok: bool, matched: bool },
    /// Stop reading the receiver's connection `conn`: a subscriber on the sender, fed by its
    /// publishes, is over its limits. Counted: every `Pause` is answered by one `Resume`.
    Pause { conn: ConnId },
    /// The sender's subscriber drained (or stalled): it no longer holds `conn`.
    Resume { conn: ConnId },
    /// A route frame of shard `origin` of peer node `node`, read by the sender from link
    /// connection `epoch` and passed to every shard of this node.
    PeerRoutes { node: PeerNode, origin: ShardId, epoch: LinkEpoch, frame: RouteFrame },
    /// Incarnation `lease` of peer node `node` is gone: forget its routes.
    PeerGone { node: PeerNode, lease: PeerLease },
}

//! What the connection code reads and writes through: a client's stream as a shard runs it
//! (plain TCP or with TLS / WebSocket layers), and the two loops every exchange uses (read more
//! bytes until a deadline, write a buffer out).

use std::future::poll_fn;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures_lite::future;
use shardmq_io::runtime::{self, Connection};
use shardmq_io::transport::{Layer, Layered, MqttStream};

/// A client connection's stream as a shard runs it: plain TCP ([`Connection`]) or with layers
/// ([`Layered`]). The connection code is generic over it, so a plain connection pays nothing
/// for the layers others have.
pub(crate) trait ClientStream: MqttStream + Unpin + 'static {
    /// The socket and the layer state, to move the connection to another shard.
    fn into_parts(self) -> (Connection, Option<Box<Layer>>);
}

impl ClientStream for Connection {
    fn into_parts(self) -> (Connection, Option<Box<Layer>>) {
        (self, None)
    }
}

impl ClientStream for Layered {
    fn into_parts(self) -> (Connection, Option<Box<Layer>>) {
        let (connection, layer) = Layered::into_parts(self);
        (connection, Some(layer))
    }
}

/// Waits until `deadline` for more bytes and appends them to `buf` (maybe none: a spurious
/// wake-up, or bytes a layer kept). False on EOF, an error, or the deadline. An empty `buf` is
/// given up while it waits.
pub(crate) async fn read_more<S: ClientStream>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let readable = future::or(
        async {
            poll_fn(|cx| stream.poll_readable(cx)).await;
            true
        },
        async {
            runtime::sleep(left).await;
            false
        },
    )
    .await;
    if !readable {
        return false;
    }
    match stream.try_read_buf(buf) {
        Ok(Some(n)) if n > 0 => true,
        Ok(None) => {
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            true
        }
        _ => false,
    }
}

/// Writes `out` until it is empty, or until the socket is full (pending; `out` keeps the rest),
/// or the write fails.
pub(crate) fn poll_write_all<S: MqttStream>(
    stream: &mut S,
    out: &mut BytesMut,
    cx: &mut TaskContext<'_>,
) -> Poll<std::io::Result<()>> {
    while !out.is_empty() {
        match stream.poll_write(cx, out) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(sent)) => out.advance(sent),
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
        }
    }
    // What a layer (TLS, WebSocket) holds goes out too.
    stream.poll_flush(cx)
}

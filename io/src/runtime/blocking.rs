//! The one seam for blocking work (redb commits, fsync): a closure on glommio's blocking pool,
//! with its panic caught.

use std::panic::{self, AssertUnwindSafe};

use super::shards::panic_message;

/// The blocking closure panicked; the message is the panic's payload when it was a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blocking work panicked: {message}")]
pub struct Panicked {
    /// The panic message, or a placeholder when the payload was not a string.
    pub message: String,
}

/// Runs `work` on the current shard's blocking thread and waits for it without blocking the
/// shard's reactor.
///
/// A panic inside `work` comes back as `Err(Panicked)`. This is the reason the seam exists:
/// glommio 0.9.0's `spawn_blocking` never completes the awaiting future when its closure panics
/// (the result slot stays empty and the waiter hangs forever), so the panic is caught here, on
/// the blocking thread, before glommio sees it.
///
/// Must be called on a shard.
pub async fn spawn_blocking<F, R>(work: F) -> Result<R, Panicked>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // `AssertUnwindSafe` is fine here: on a panic, what `work` owns is dropped during the unwind
    // and only the payload comes back. State it shares through an `Arc` stays the caller's to
    // check, as on any thread (a std `Mutex` is poisoned).
    glommio::executor()
        .spawn_blocking(move || panic::catch_unwind(AssertUnwindSafe(work)))
        .await
        .map_err(|payload| Panicked { message: panic_message(payload.as_ref()) })
}

//! A one-shot, shard-local broadcast: many client tasks wait for one phase change (start
//! publishing, stop, finish) without polling.
//!
//! Each waiting task holds a [`Listener`] for its whole life, which owns one waker slot; polling
//! replaces the waker in that slot, so a task that waits again and again (a subscriber between
//! reads) never grows the signal's memory. Lives on one worker (`!Send`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A flag that is raised once and wakes every listener.
#[derive(Debug, Default)]
pub struct Signal {
    raised: Cell<bool>,
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Signal {
    pub fn new() -> Rc<Signal> {
        Rc::new(Signal::default())
    }

    /// Raises the flag and wakes every listener; raising again does nothing.
    pub fn raise(&self) {
        if self.raised.replace(true) {
            return;
        }
        // Take the wakers out first: waking never re-enters this signal, but the borrow must
        // not be held while foreign code runs.
        let wakers: Vec<Waker> =
            self.slots.borrow_mut().wakers.iter_mut().filter_map(Option::take).collect();
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// A listener with its own waker slot, freed when the listener is dropped.
    pub fn listen(self: &Rc<Signal>) -> Listener {
        let mut slots = self.slots.borrow_mut();
        let slot = match slots.free.pop() {
            Some(slot) => slot,
            None => {
                slots.wakers.push(None);
                slots.wakers.len() - 1
            }
        };
        Listener { signal: self.clone(), slot }
    }
}

/// One task's registration with a [`Signal`].
#[derive(Debug)]
pub struct Listener {
    signal: Rc<Signal>,
    slot: usize,
}

impl Listener {
    /// Waits until the signal is raised (returns at once if it already is). Cancel-safe.
    pub async fn raised(&self) {
        poll_fn(|context| {
            if self.signal.is_raised() {
                return Poll::Ready(());
            }
            if let Some(slot) = self.signal.slots.borrow_mut().wakers.get_mut(self.slot) {
                *slot = Some(context.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }

    pub fn is_raised(&self) -> bool {
        self.signal.is_raised()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut slots = self.signal.slots.borrow_mut();
        if let Some(slot) = slots.wakers.get_mut(self.slot) {
            *slot = None;
        }
        slots.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn listeners_wake_once_raised_and_reuse_slots() {
        let signal = Signal::new();
        let first = signal.listen();
        {
            let second = signal.listen();
            assert_eq!(future::block_on(future::poll_once(second.raised())), None);
        }
        let third = signal.listen();
        assert_eq!(signal.slots.borrow().wakers.len(), 2, "the dropped listener's slot is reused");
        signal.raise();
        future::block_on(first.raised());
        future::block_on(third.raised());
        assert!(third.is_raised());
    }
}

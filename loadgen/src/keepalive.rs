//! One keepalive clock per worker: idle clients wait on a slot of it instead of each arming a
//! timer of its own, and the worker's control task walks the slots a few times a second and
//! wakes the clients whose PINGREQ is due.
//!
//! A per-client timer costs an `Rc<RefCell<..>>` allocation each time it is armed and an entry
//! in the reactor's timer tree; a slot is 24 bytes in one vector, reused. The price is
//! precision: a PINGREQ goes out up to [`KEEPALIVE_WALK_INTERVAL`] late, which a keepalive
//! counted in seconds (and a broker that waits 1.5 keepalives) does not notice. Lives on one
//! worker (`!Send`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::clock::duration_ns;

/// How often the clock may walk its slots; a PINGREQ is at most this late.
pub const KEEPALIVE_WALK_INTERVAL: Duration = Duration::from_millis(250);

/// No deadline.
const NEVER_NS: u64 = u64::MAX;

/// The slots of one worker's idle clients.
#[derive(Debug, Default)]
pub struct KeepaliveClock {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// The earliest deadline of any waiting slot (a lower bound: it may have been woken).
    earliest_ns: Cell<u64>,
    last_walk_ns: Cell<u64>,
}

#[derive(Debug)]
struct Slot {
    due_ns: u64,
    waker: Option<Waker>,
}

impl KeepaliveClock {
    pub fn new() -> Rc<KeepaliveClock> {
        Rc::new(KeepaliveClock { earliest_ns: Cell::new(NEVER_NS), ..KeepaliveClock::default() })
    }

    /// A slot for one client, freed when dropped.
    pub fn slot(self: &Rc<KeepaliveClock>) -> ClockSlot {
        let index = match self.free.borrow_mut().pop() {
            Some(index) => index,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Slot { due_ns: NEVER_NS, waker: None });
                // Clients per worker stay far below u32::MAX (`CLIENTS_MAX` is u32::MAX over all).
                (slots.len() - 1) as u32
            }
        };
        ClockSlot { clock: self.clone(), index }
    }

    /// Wakes every slot due by `now_ns`, at most once per [`KEEPALIVE_WALK_INTERVAL`] and only
    /// when something is due. Called by the worker's control task.
    pub fn tick(&self, now_ns: u64) {
        if now_ns < self.earliest_ns.get()
            || now_ns < self.last_walk_ns.get() + duration_ns(KEEPALIVE_WALK_INTERVAL)
        {
            return;
        }
        self.last_walk_ns.set(now_ns);
        self.wake_where(|due_ns| due_ns <= now_ns);
    }

    /// Wakes every waiting slot (the run is finishing: idle clients must look at the flags).
    pub fn wake_all(&self) {
        self.wake_where(|_| true);
    }

    fn wake_where(&self, due: impl Fn(u64) -> bool) {
        let mut woken = Vec::new();
        let mut earliest_ns = NEVER_NS;
        for slot in self.slots.borrow_mut().iter_mut() {
            if slot.waker.is_none() {
                continue;
            }
            if due(slot.due_ns) {
                woken.extend(slot.waker.take());
            } else {
                earliest_ns = earliest_ns.min(slot.due_ns);
            }
        }
        self.earliest_ns.set(earliest_ns);
        // Woken outside the borrow: waking never re-enters the clock, but foreign code runs.
        for waker in woken {
            waker.wake();
        }
    }
}

/// One client's registration with its worker's [`KeepaliveClock`].
#[derive(Debug)]
pub struct ClockSlot {
    clock: Rc<KeepaliveClock>,
    index: u32,
}

impl ClockSlot {
    /// Waits until the clock's walk finds `due_ns` passed, or until [`KeepaliveClock::wake_all`];
    /// with `None`, only the latter. The caller checks which (both are cheap to recheck).
    /// Cancel-safe.
    pub async fn wait(&self, due_ns: Option<u64>) {
        let due_ns = due_ns.unwrap_or(NEVER_NS);
        let mut registered = false;
        poll_fn(|context| {
            let mut slots = self.clock.slots.borrow_mut();
            let Some(slot) = slots.get_mut(self.index as usize) else { return Poll::Ready(()) };
            if registered && slot.waker.is_none() {
                return Poll::Ready(());
            }
            registered = true;
            slot.due_ns = due_ns;
            slot.waker = Some(context.waker().clone());
            if due_ns < self.clock.earliest_ns.get() {
                self.clock.earliest_ns.set(due_ns);
            }
            Poll::Pending
        })
        .await;
    }
}

impl Drop for ClockSlot {
    fn drop(&mut self) {
        if let Some(slot) = self.clock.slots.borrow_mut().get_mut(self.index as usize) {
            *slot = Slot { due_ns: NEVER_NS, waker: None };
        }
        self.clock.free.borrow_mut().push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn walks_wake_due_slots_and_wake_all_wakes_the_rest() {
        let clock = KeepaliveClock::new();
        let (soon, late) = (clock.slot(), clock.slot());
        let mut soon_wait = Box::pin(soon.wait(Some(1_000)));
        let mut late_wait = Box::pin(late.wait(Some(1_000_000_000_000)));
        assert_eq!(future::block_on(future::poll_once(&mut soon_wait)), None);
        assert_eq!(future::block_on(future::poll_once(&mut late_wait)), None);
        clock.tick(500);
        assert_eq!(future::block_on(future::poll_once(&mut soon_wait)), None, "not due yet");
        // The walk waits for the interval since the last walk (none yet: 0).
        let walk_ns = duration_ns(KEEPALIVE_WALK_INTERVAL);
        clock.tick(walk_ns);
        assert_eq!(future::block_on(future::poll_once(&mut soon_wait)), Some(()));
        assert_eq!(future::block_on(future::poll_once(&mut late_wait)), None);
        clock.wake_all();
        assert_eq!(future::block_on(future::poll_once(&mut late_wait)), Some(()));
        drop(soon_wait);
        drop(late_wait);
        drop(soon);
        let reused = clock.slot();
        assert_eq!(clock.slots.borrow().len(), 2, "a freed slot is reused");
        drop(reused);
    }
}

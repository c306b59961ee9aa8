//! One epoll set per shard: readiness for the sockets a shard accepts, without an io_uring poll
//! (and its allocation) armed per socket while it waits.
//!
//! # Why not glommio's own readiness
//!
//! Waiting on a glommio stream arms an io_uring `POLL_ADD` whose state is a glommio `Source`: an
//! `Rc<RefCell<InnerSource>>` of 496 bytes (`src/sys/source.rs:110`, sized by its largest
//! `SourceType` variants), held for as long as the wait lasts. For an idle MQTT connection that
//! is its whole life; glommio also arms one as soon as a stream is made
//! (`NonBufferedStream::init`, `src/net/stream.rs:229`) and after every read that did not fill
//! the buffer (`stream.rs:276`). It was a third of the broker's memory per idle connection.
//!
//! Here each socket is registered once, edge-triggered, in its shard's epoll set, and keeps a
//! 24-byte [`Slot`]: its readiness and the waker of the task waiting on it. One task per shard,
//! the dispatcher, waits for the epoll set itself, takes its events in batches
//! ([`EVENTS_PER_BATCH_MAX`]) and wakes the tasks concerned. Reads and writes are plain
//! nonblocking `recv`/`send` calls, as glommio's own stream makes them (`yolo_recv`,
//! `src/net/mod.rs:55`); only the waiting moved.
//!
//! # Readiness
//!
//! A slot's readiness is sticky, as edge-triggered epoll needs: [`READABLE`] is set by an event
//! and cleared only by the reader, when a `recv` finds nothing or does not fill its buffer (the
//! socket is then drained, and data arriving later raises a new edge, as tokio also relies on).
//! [`WRITABLE`] is cleared by a `send` that finds the socket buffer full. [`CLOSED`] (the peer
//! closed, or the socket failed) is never cleared and keeps the socket readable, so EOF or the
//! error is always read. A new socket starts writable but not readable: `EPOLL_CTL_ADD` checks
//! the socket's state and queues an event for data (or a pending connection, or EOF) already
//! there, so nothing is missed, and a freshly accepted connection whose CONNECT has not arrived
//! yet costs no `recv` that finds nothing (one syscall less per connection in a connect storm).
//!
//! A waiting task says what it waits for (readiness bits, or signals, below), and only that
//! wakes it: a task waiting to read is not woken each time the peer acknowledges data (an
//! `EPOLLOUT` edge), nor one waiting only for signals each time data arrives. The bits are set
//! either way, for the next look.
//!
//! Clearing after a failed `recv` loses no edge: the dispatcher runs on the same thread, so an
//! event for data that arrived after that `recv` is still in the kernel's ready list and sets
//! the bit again when it is taken.
//!
//! # Signals
//!
//! A slot also holds a byte of signals for the socket's owner: bits set from elsewhere on the
//! shard with [`Poller::notify`], which wakes the slot's waker, and cleared by the owner. The
//! broker's connection task waits for its socket and for its shard's requests (flush, close,
//! resume) at once, so both share the one waker the slot keeps anyway, and a connection needs
//! no second waker and flags elsewhere (the slot's size is unchanged: the byte was padding).
//!
//! # How the dispatcher waits for the epoll set
//!
//! glommio 0.9.0 has no public way to wait for an arbitrary fd, but its stream arms a
//! `POLL_ADD` on whatever fd it wraps, at once (`stream.rs:229`). An epoll fd polls readable
//! when the set has events. So the dispatcher wraps a duplicate of the epoll fd in a
//! `glommio::net::TcpStream` and makes a zero-length read: it waits on that poll, and once the
//! poll fires the stream's `recv` fails with `ENOTSOCK`, which ends the wait. The stream cannot
//! be armed again, so every wait uses a fresh duplicate: one `fcntl` and one `close` per batch
//! of events per shard, not per connection. When no descriptor is left for the duplicate (the
//! process is at its limit), the dispatcher polls the set every [`EPOLL_FALLBACK_INTERVAL`]
//! until one frees.
//!
//! The dispatcher runs in a task queue of its own that declares latency matters
//! ([`DISPATCH_LATENCY`]): glommio then submits its poll to the latency ring, whose completion
//! preempts the tasks running, so a busy shard does not finish its whole run queue before it
//! learns which sockets are ready. (In the default queue the extra hop through the dispatcher
//! showed: at 360-390K QoS 1 messages/s on one shard, p99 latency 93-111 ms against 74-93 ms
//! with glommio's own per-socket polls; with this queue, 73-84 ms.)

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::io::AsyncRead;

/// The socket has (or may have) data, EOF or an error to read; for a listener, a connection.
pub(super) const READABLE: u8 = 1;
/// The socket has (or may have) room in its send buffer.
pub(super) const WRITABLE: u8 = 2;
/// The peer closed its side or the socket failed: there is EOF or an error to read. Never
/// cleared, so a reader always gets to see it; it says nothing about writing (a peer that
/// closed only its own side may still read).
pub(super) const CLOSED: u8 = 4;

/// The most events the dispatcher takes from the epoll set at once before it lets other tasks
/// run (and takes the next batch without waiting).
pub const EVENTS_PER_BATCH_MAX: usize = 256;

/// How often the dispatcher polls the epoll set while it has no descriptor to wait with.
pub const EPOLL_FALLBACK_INTERVAL: Duration = Duration::from_millis(1);

/// The latency the dispatcher's task queue asks glommio for (see the module docs).
pub const DISPATCH_LATENCY: Duration = Duration::from_millis(1);

/// Which socket a slot belongs to: its index, and the generation that tells a reused slot from
/// the one an old event was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token {
    index: u32,
    generation: u32,
}

impl Token {
    fn to_event_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    fn from_event_data(data: u64) -> Token {
        Token { index: data as u32, generation: (data >> 32) as u32 }
    }

    /// The token as the key a [`Connection`](super::Connection) hands out for notifying it.
    pub(super) fn to_key(self) -> u64 {
        self.to_event_data()
    }

    pub(super) fn from_key(key: u64) -> Token {
        Token::from_event_data(key)
    }
}

/// One registered socket's state: 24 bytes.
#[derive(Debug)]
struct Slot {
    /// The task waiting for the socket's readiness or for its signals (one task does both).
    waker: Option<Waker>,
    generation: u32,
    ready: u8,
    /// Bits the socket's owner sets from elsewhere on the shard ([`Poller::notify`]); their
    /// meaning is the owner's. Kept here, in the padding of the slot the socket has anyway,
    /// so that the owner's tasks need no waker and flags of their own per connection.
    signals: u8,
    /// What the waiting task waits for: readiness bits, and [`WAITS_FOR_SIGNALS`]. Only those
    /// wake it (an idle reader is not woken each time the peer acknowledges data, nor a paused
    /// one each time data arrives). Cleared when the waker is taken.
    waiting: u8,
}

// Every registered socket has one: its size is part of the memory per idle connection.
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

/// In [`Slot::waiting`]: the task waits for [`Poller::notify`].
const WAITS_FOR_SIGNALS: u8 = 0x80;

/// Lives on each shard: its epoll set and the slots of the sockets registered in it.
#[derive(Debug)]
pub(super) struct Poller {
    epoll: OwnedFd,
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Slot>,
    /// Indices of free entries, reused before the vector grows.
    vacant: Vec<u32>,
}

thread_local! {
    /// The poller of the executor running on this thread, with that executor's id (a thread
    /// could run another executor later; its poller would need its own dispatcher).
    static CURRENT: RefCell<Option<(usize, Rc<Poller>)>> = const { RefCell::new(None) };
}

impl Poller {
    /// The current shard's poller, made (with its dispatcher task) on first use. Must be called
    /// on a shard.
    fn current() -> io::Result<Rc<Poller>> {
        let executor = glommio::executor().id();
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some((owner, poller)) = current.as_ref() {
                if *owner == executor {
                    return Ok(poller.clone());
                }
            }
            let poller = Rc::new(Poller::new()?);
            let queue = glommio::executor().create_task_queue(
                glommio::Shares::default(),
                glommio::Latency::Matters(DISPATCH_LATENCY),
                "epoll-dispatch",
            );
            drop(
                glommio::spawn_local_into(dispatch(poller.clone()), queue)
                    .map_err(|error| io::Error::other(error.to_string()))?
                    .detach(),
            );
            *current = Some((executor, poller.clone()));
            Ok(poller)
        })
    }

    #[allow(unsafe_code)]
    fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { epoll, slots: RefCell::new(Slots::default()) })
    }

    /// Adds a socket to the current shard's epoll set (edge-triggered, for reading, writing and
    /// the peer's close). It starts writable, and readable once the set says so (see the module
    /// docs).
    pub(super) fn register(fd: BorrowedFd<'_>) -> io::Result<Token> {
        let poller = Poller::current()?;
        let token = poller.slots.borrow_mut().occupy(WRITABLE);
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token.to_event_data(),
        };
        if let Err(error) = poller.control(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), Some(&mut event)) {
            let waker = poller.slots.borrow_mut().vacate(token);
            drop(waker);
            return Err(error);
        }
        Ok(token)
    }

    /// Removes a socket that stays open (it moves to another shard) from the epoll set, and
    /// frees its slot.
    pub(super) fn deregister(fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        let poller = Poller::current()?;
        let waker = poller.slots.borrow_mut().vacate(token);
        drop(waker);
        poller.control(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), None)
    }

    /// Frees the slot of a socket about to be closed: closing its only fd takes it out of the
    /// epoll set. Does nothing once the thread is being torn down.
    pub(super) fn release(token: Token) {
        let waker = CURRENT
            .try_with(|current| {
                let current = current.try_borrow().ok()?;
                let (_, poller) = current.as_ref()?;
                let mut slots = poller.slots.try_borrow_mut().ok()?;
                slots.vacate(token)
            })
            .ok()
            .flatten();
        // Dropped with no borrow held: the last reference to a task drops its future, which may
        // release another socket.
        drop(waker);
    }

    /// Ready if the socket has any of `interest`; otherwise keeps the task's waker and waits.
    pub(super) fn poll_ready(token: Token, interest: u8, context: &Context<'_>) -> Poll<()> {
        let replaced = Poller::with_slot(token, |slot| {
            if slot.ready & interest != 0 {
                return (Poll::Ready(()), None);
            }
            slot.waiting |= interest;
            match &slot.waker {
                Some(waker) if waker.will_wake(context.waker()) => (Poll::Pending, None),
                _ => (Poll::Pending, slot.waker.replace(context.waker().clone())),
            }
        });
        // A slot that is gone (thread teardown) has nothing more to wait for.
        let (poll, old_waker) = replaced.unwrap_or((Poll::Ready(()), None));
        // Dropped with no borrow held (see `release`).
        drop(old_waker);
        poll
    }

    /// Records that the socket has none of `bits` now (a `recv` or `send` found it so).
    pub(super) fn clear(token: Token, bits: u8) {
        Poller::with_slot(token, |slot| slot.ready &= !bits);
    }

    /// Sets `signals` on the socket's slot and wakes the task waiting on it. Does nothing once
    /// the slot is gone or reused.
    pub(super) fn notify(token: Token, signals: u8) {
        let waker = Poller::with_slot(token, |slot| {
            slot.signals |= signals;
            slot.wake_for(WAITS_FOR_SIGNALS)
        });
        // Woken with no borrow held (see `release`).
        if let Some(waker) = waker.flatten() {
            waker.wake();
        }
    }

    /// The signals set on the socket's slot (none once it is gone).
    pub(super) fn signals(token: Token) -> u8 {
        Poller::with_slot(token, |slot| slot.signals).unwrap_or(0)
    }

    /// Clears `signals` on the socket's slot.
    pub(super) fn clear_signals(token: Token, signals: u8) {
        Poller::with_slot(token, |slot| slot.signals &= !signals);
    }

    /// Ready with those of `interest` that are set, clearing them, if any is; otherwise keeps
    /// the task's waker and waits for [`Poller::notify`] (or for readiness, which wakes the same
    /// waker if it also waits for that).
    pub(super) fn poll_signals(token: Token, interest: u8, context: &Context<'_>) -> Poll<u8> {
        let replaced = Poller::with_slot(token, |slot| {
            let set = slot.signals & interest;
            if set != 0 {
                slot.signals &= !interest;
                return (Poll::Ready(set), None);
            }
            slot.waiting |= WAITS_FOR_SIGNALS;
            match &slot.waker {
                Some(waker) if waker.will_wake(context.waker()) => (Poll::Pending, None),
                _ => (Poll::Pending, slot.waker.replace(context.waker().clone())),
            }
        });
        // A slot that is gone (thread teardown) has nothing more to wait for.
        let (poll, old_waker) = replaced.unwrap_or((Poll::Ready(0), None));
        // Dropped with no borrow held (see `release`).
        drop(old_waker);
        poll
    }

    fn with_slot<R>(token: Token, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        CURRENT
            .try_with(|current| {
                let current = current.borrow();
                let (_, poller) = current.as_ref()?;
                let mut slots = poller.slots.borrow_mut();
                let slot = slots.entries.get_mut(token.index as usize)?;
                (slot.generation == token.generation).then(|| f(slot))
            })
            .ok()
            .flatten()
    }

    #[allow(unsafe_code)]
    fn control(
        &self,
        operation: libc::c_int,
        fd: RawFd,
        event: Option<&mut libc::epoll_event>,
    ) -> io::Result<()> {
        let event = event.map_or(std::ptr::null_mut(), std::ptr::from_mut);
        // SAFETY: both fds are open for the call (the epoll fd is owned by `self`, the socket's
        // is borrowed by the caller); `event` is null (allowed for EPOLL_CTL_DEL) or points at a
        // live `epoll_event`.
        let result = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), operation, fd, event) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Takes up to `events.capacity()` pending events without waiting; returns how many.
    #[allow(unsafe_code)]
    fn take_events(&self, events: &mut Vec<libc::epoll_event>) -> io::Result<usize> {
        events.clear();
        let capacity = events.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: the kernel writes at most `capacity` events into the vector's spare capacity,
        // which is that large; the length is set to the count it reports, all of them written.
        let taken =
            unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), capacity, 0) };
        if taken < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(error) };
        }
        let taken = taken as usize;
        // SAFETY: see above: `taken <= capacity` events were written.
        unsafe { events.set_len(taken) };
        Ok(taken)
    }

    /// Marks the sockets of `events` ready and wakes their tasks; `wake` is scratch space.
    fn dispatch(&self, events: &[libc::epoll_event], wake: &mut Vec<Waker>) {
        {
            let mut slots = self.slots.borrow_mut();
            for event in events {
                let token = Token::from_event_data(event.u64);
                let Some(slot) = slots.entries.get_mut(token.index as usize) else { continue };
                if slot.generation != token.generation {
                    continue;
                }
                let ready = readiness(event.events);
                slot.ready |= ready;
                if let Some(waker) = slot.wake_for(ready) {
                    wake.push(waker);
                }
            }
        }
        // Woken with no borrow held: glommio only queues the task, but this need not rely on it.
        for waker in wake.drain(..) {
            waker.wake();
        }
    }

    /// Waits until the epoll set has events (see the module docs for how).
    #[allow(unsafe_code)]
    async fn wait_for_events(&self) -> io::Result<()> {
        // SAFETY: F_DUPFD_CLOEXEC takes an integer argument; a non-negative result is a new fd.
        let fd = unsafe { libc::fcntl(self.epoll.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new duplicate of the epoll fd that only this stream owns; it closes
        // it on drop. glommio arms its poll on it at once and makes no other call on it before
        // the read below.
        let mut doorbell = unsafe { glommio::net::TcpStream::from_raw_fd(fd) };
        let mut nothing = [0_u8; 0];
        // Ends with ENOTSOCK once the poll has fired (or with whatever else went wrong, after
        // which taking events finds out the truth).
        let _ = poll_fn(|context| Pin::new(&mut doorbell).poll_read(context, &mut nothing)).await;
        Ok(())
    }
}

impl Slot {
    /// The waker, taken, if the task waits for any of `what`.
    fn wake_for(&mut self, what: u8) -> Option<Waker> {
        if self.waiting & what == 0 {
            return None;
        }
        self.waiting = 0;
        self.waker.take()
    }
}

impl Slots {
    fn occupy(&mut self, ready: u8) -> Token {
        match self.vacant.pop() {
            Some(index) => {
                let slot = &mut self.entries[index as usize];
                slot.ready = ready;
                slot.signals = 0;
                slot.waiting = 0;
                Token { index, generation: slot.generation }
            }
            None => {
                let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 sockets");
                self.entries.push(Slot {
                    waker: None,
                    generation: 0,
                    ready,
                    signals: 0,
                    waiting: 0,
                });
                Token { index, generation: 0 }
            }
        }
    }

    /// Frees the token's slot; returns its waker for the caller to drop once no borrow is held.
    fn vacate(&mut self, token: Token) -> Option<Waker> {
        let slot = self.entries.get_mut(token.index as usize)?;
        if slot.generation != token.generation {
            return None;
        }
        slot.generation = slot.generation.wrapping_add(1);
        slot.ready = 0;
        slot.signals = 0;
        slot.waiting = 0;
        self.vacant.push(token.index);
        slot.waker.take()
    }
}

/// The readiness an epoll event reports.
fn readiness(events: u32) -> u8 {
    let events = events as libc::c_int;
    let mut ready = 0;
    if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
        ready |= READABLE;
    }
    if events & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
        ready |= WRITABLE;
    }
    if events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
        ready |= CLOSED;
    }
    ready
}

/// The dispatcher: the shard's one task that waits for its epoll set and wakes the tasks whose
/// sockets became ready.
async fn dispatch(poller: Rc<Poller>) {
    let mut events = Vec::with_capacity(EVENTS_PER_BATCH_MAX);
    let mut wake = Vec::new();
    loop {
        if poller.wait_for_events().await.is_err() {
            // No descriptor for the wait (or no memory): poll instead until there is one.
            super::sleep(EPOLL_FALLBACK_INTERVAL).await;
        }
        loop {
            let taken = match poller.take_events(&mut events) {
                Ok(taken) => taken,
                Err(error) => {
                    // Only a broken epoll fd fails here, which no retry mends; say so loudly
                    // rather than spin.
                    panic!("epoll_wait on the shard's epoll set failed: {error}");
                }
            };
            poller.dispatch(&events, &mut wake);
            if taken < EVENTS_PER_BATCH_MAX {
                break;
            }
            super::yield_if_needed().await;
        }
    }
}

//! Sockets: SO_REUSEPORT listeners built with socket2, accepted connections that hold neither a
//! buffer nor an armed poll while idle, handing a connection's fd to another shard, and outgoing
//! TCP streams (the load generator's clients).
//!
//! # Accepted connections
//!
//! A [`TcpListener`] accepts with `accept4` and gives [`Connection`]s: an fd and a slot in the
//! shard's epoll set (`poller.rs`), 12 bytes in all, with plain nonblocking `recv`/`send` and
//! readiness from the shard's one dispatcher task. An idle connection holds nothing else: no
//! read buffer (await [`Connection::readable`], then [`Connection::try_read_buf`]) and no
//! io_uring poll with its 496-byte glommio `Source` (see `poller.rs` for why not).
//!
//! # What an idle [`TcpStream`] holds (glommio 0.9.0, read from its source)
//!
//! glommio's non-buffered `TcpStream` owns no receive buffer. Its `poll_read`
//! (`src/net/stream.rs`, `NonBufferedStream::poll_read`, lines 256-299) first tries
//! `recv(MSG_DONTWAIT)` straight into the caller's slice (`yolo_recv`, `src/net/mod.rs:55`); on
//! `EAGAIN` it arms an io_uring `POLL_ADD` (`Reactor::poll_read_ready`, `src/reactor.rs:430`),
//! which carries no buffer, and returns `Pending`. So a task blocked in a glommio read holds
//! exactly the buffer it passed in (borrowed by the read future for as long as it waits), and
//! glommio adds none. A new stream arms that poll at once (`NonBufferedStream::init`,
//! `stream.rs:229`).
//!
//! Two things to avoid: the buffered stream (`TcpStream::buffered`) preallocates 8 KiB per stream
//! (`Preallocated::DEFAULT_BUFFER_SIZE`, `stream.rs:83`), and `TcpStream::peek` waits with an
//! io_uring `recv` into a `DmaBuffer` of the peeked length allocated with 4096-byte alignment
//! (`src/sys/uring.rs:391`, `src/sys/dma_buffer.rs:27`), so it is no free readiness probe.
//!
//! [`TcpStream::readable`] waits with a zero-length read instead: glommio arms the same
//! `POLL_ADD`, and once it fires a zero-length `recv(MSG_DONTWAIT)` returns 0 if data (or EOF)
//! is queued and `EAGAIN` if the wake-up was spurious (Linux `tcp_recvmsg` copies nothing and
//! does not block for `len == 0` when data is queued). An idle stream therefore holds no read
//! buffer: the loop awaits `readable()`, then takes a pooled buffer and calls
//! [`TcpStream::read_buf`], which completes on its first `recv`. It does hold the armed poll and
//! its 496-byte `Source`: fine for the load generator's clients, too much for a broker holding
//! hundreds of thousands of idle connections, which is why those are [`Connection`]s.

use std::future::poll_fn;
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::poller::{Poller, Token, CLOSED, READABLE, WRITABLE};

/// The least free space [`Connection::try_read_buf`] and [`TcpStream::read_buf`] offer the
/// kernel: they reserve this much when the buffer has less, so a full buffer never turns into a
/// zero-length read (taken for EOF).
pub const READ_BYTES_MIN: usize = 4 << 10;

/// The most one [`Connection::try_read_buf`] or [`TcpStream::read_buf`] reads.
///
/// Safe Rust can only hand glommio initialised bytes, so [`TcpStream::read_buf`] zeroes the
/// offered space before each `recv` ([`Connection`] reads into spare capacity). Capping it bounds
/// that cost per read (MQTT packets are mostly small) while a burst still drains in a few reads.
/// Not measured yet: revisit with a benchmark in `perf/`.
pub const READ_BYTES_MAX: usize = 16 << 10;

/// A bound, listening TCP socket not yet attached to any shard. `Send`: build it on the main
/// thread and move it into the shard that will accept on it.
#[derive(Debug)]
pub struct ListenerSocket {
    socket: Socket,
}

/// Binds a listening socket on `addr` with SO_REUSEADDR and SO_REUSEPORT, nonblocking, with
/// `backlog` (the kernel caps it at `net.core.somaxconn`).
///
/// Every shard listens on its own socket on the same address: SO_REUSEPORT makes the kernel
/// spread incoming connections across them.
pub fn bind_listener_socket(addr: SocketAddr, backlog: i32) -> io::Result<ListenerSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR lets a restarted broker bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // MQTT packets are small and latency matters: no Nagle. Accepted sockets inherit it on
    // Linux, so connections need no setsockopt of their own.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(ListenerSocket { socket })
}

/// Binds `count` listening sockets on the same address, one per shard.
///
/// With port 0 the first socket learns the port the kernel chose and the others bind that port,
/// so `--listen 127.0.0.1:0` gives every shard a listener on one real port.
pub fn bind_listener_sockets(
    addr: SocketAddr,
    backlog: i32,
    count: usize,
) -> io::Result<Vec<ListenerSocket>> {
    let mut sockets = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = bind_listener_socket(addr, backlog)?;
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Binds a listening socket (as [`bind_listener_socket`]) and attaches it to the current shard.
/// Must be called on a shard.
pub fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    bind_listener_socket(addr, backlog)?.into_listener()
}

impl ListenerSocket {
    /// The address the socket is bound to, with the real port when it was bound to port 0.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(&self.socket)
    }

    /// Attaches the socket to the current shard: registers it in the shard's epoll set. Must be
    /// called on a shard.
    pub fn into_listener(self) -> io::Result<TcpListener> {
        let registration = Registration::new(self.socket.as_fd())?;
        Ok(TcpListener { socket: self.socket, registration })
    }
}

fn socket_addr(socket: &Socket) -> io::Result<SocketAddr> {
    socket.local_addr()?.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "listener is not bound to an IP address")
    })
}

/// A listening socket attached to one shard, readable through the shard's epoll set. Lives on
/// its shard (`!Send`). Dropping it closes the socket.
#[derive(Debug)]
pub struct TcpListener {
    socket: Socket,
    registration: Registration,
}

impl TcpListener {
    /// Waits for the next connection and attaches it to the current shard. Cancel-safe.
    ///
    /// Errors are returned as they come, and none of them consumes the pending connection.
    /// When the process or system is out of file descriptors (`EMFILE`, `ENFILE`) or kernel
    /// memory, the connection stays queued and the next `accept` fails again at once, so a loop
    /// that just retries spins a core: check [`needs_accept_backoff`] and sleep before retrying.
    #[allow(unsafe_code)]
    pub async fn accept(&self) -> io::Result<Connection> {
        loop {
            let token = self.registration.token;
            poll_fn(|context| Poller::poll_ready(token, READABLE, context)).await;
            // SAFETY: the listener's fd is open for the call; null address pointers ask for no
            // peer address, as accept4(2) allows.
            let fd = unsafe {
                libc::accept4(
                    self.socket.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: accept4 returned a new fd that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                return Connection::register(fd);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => Poller::clear(token, READABLE),
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(&self.socket)
    }
}

/// Whether an `accept` error means "out of descriptors or kernel memory": retrying at once would
/// fail again, so the accept loop must sleep first (and may shed idle connections).
pub fn needs_accept_backoff(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// A TCP connection accepted by (or handed to) this shard: its fd and its slot in the shard's
/// epoll set, 12 bytes, and nothing else while it is idle (see the module docs). Lives on its
/// shard (`!Send`); move it to another shard with [`Connection::into_handoff`]. Dropping it
/// closes the connection.
#[derive(Debug)]
pub struct Connection {
    // Dropped in this order: closing the fd takes the socket out of the epoll set, then the
    // registration frees its slot.
    fd: OwnedFd,
    registration: Registration,
}

/// A socket's slot in the current shard's epoll set, freed on drop. Not `Send`: it belongs to
/// the thread of that epoll set.
#[derive(Debug)]
struct Registration {
    token: Token,
    _on_this_shard: PhantomData<*const ()>,
}

impl Registration {
    fn new(fd: BorrowedFd<'_>) -> io::Result<Registration> {
        Ok(Registration { token: Poller::register(fd)?, _on_this_shard: PhantomData })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        Poller::release(self.token);
    }
}

impl Connection {
    /// Registers a connected, nonblocking socket in the current shard's epoll set. The socket
    /// is closed if that fails.
    fn register(fd: OwnedFd) -> io::Result<Connection> {
        let registration = Registration::new(fd.as_fd())?;
        Ok(Connection { fd, registration })
    }

    fn token(&self) -> Token {
        self.registration.token
    }

    /// Waits until the connection may have data to read, EOF or an error, holding no buffer
    /// while it waits. Cancel-safe.
    ///
    /// A following [`try_read_buf`](Self::try_read_buf) then finds out which; rarely the
    /// wake-up is spurious and it reads nothing.
    pub async fn readable(&self) {
        poll_fn(|context| self.poll_readable(context)).await;
    }

    /// [`readable`](Self::readable) as a poll function, for a hand-written future: ready when
    /// the connection may have data, EOF or an error; otherwise keeps the task's waker.
    pub fn poll_readable(&self, context: &Context<'_>) -> Poll<()> {
        Poller::poll_ready(self.token(), READABLE | CLOSED, context)
    }

    /// The key with which [`Connection::notify`] reaches this connection's task from elsewhere
    /// on the shard: 8 bytes to keep instead of a waker and flags per connection. A key
    /// outlives its connection harmlessly (notifying it does nothing).
    pub fn notify_key(&self) -> u64 {
        self.token().to_key()
    }

    /// Sets `signals` on the connection that `key` is for and wakes the task waiting on it
    /// (for readiness or for signals). The bits' meaning is the caller's; they stay set until
    /// its task clears them. Does nothing if that connection is gone. Must be called on the
    /// connection's shard.
    pub fn notify(key: u64, signals: u8) {
        Poller::notify(Token::from_key(key), signals);
    }

    /// The signals set on this connection since they were last cleared.
    pub fn signals(&self) -> u8 {
        Poller::signals(self.token())
    }

    /// Clears `signals` on this connection.
    pub fn clear_signals(&self, signals: u8) {
        Poller::clear_signals(self.token(), signals);
    }

    /// Ready with those of `interest` that are set (clearing them) once any is; otherwise keeps
    /// the task's waker. Readiness of the socket wakes the same waker, so a task waiting only
    /// for signals may be polled when none is set.
    pub fn poll_signals(&self, interest: u8, context: &Context<'_>) -> Poll<u8> {
        Poller::poll_signals(self.token(), interest, context)
    }

    /// Reads what has arrived without waiting, appending it to `buf`: `Some(n)` bytes, `Some(0)`
    /// at EOF, `None` if nothing has (await [`readable`](Self::readable), then try again).
    ///
    /// Reserves [`READ_BYTES_MIN`] first when `buf` has less free capacity (also when nothing
    /// has arrived: give the buffer up then if it is empty), and reads at most
    /// [`READ_BYTES_MAX`], straight into the buffer's spare capacity.
    #[allow(unsafe_code)]
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        if buf.capacity() - buf.len() < READ_BYTES_MIN {
            buf.reserve(READ_BYTES_MIN);
        }
        let spare = buf.spare_capacity_mut();
        let offered = spare.len().min(READ_BYTES_MAX);
        loop {
            // SAFETY: the fd is open for the call, and the kernel writes at most `offered` bytes
            // into `spare`, which has at least that many.
            let read = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    offered,
                    libc::MSG_DONTWAIT,
                )
            };
            if read >= 0 {
                let read = read as usize;
                // A read that did not fill its space drained the socket (see `poller.rs`).
                if read < offered && read > 0 {
                    Poller::clear(self.token(), READABLE);
                }
                // SAFETY: the kernel initialised the first `read` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + read) };
                return Ok(Some(read));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => {
                    Poller::clear(self.token(), READABLE);
                    return Ok(None);
                }
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }

    /// Waits for data (or EOF), then reads it as [`try_read_buf`](Self::try_read_buf) does;
    /// returns how many bytes, 0 at EOF. Cancel-safe. While this waits for a spurious wake-up to
    /// turn into data, `buf` holds the capacity reserved for it.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.readable().await;
            if let Some(read) = self.try_read_buf(buf)? {
                return Ok(read);
            }
        }
    }

    /// Writes all of `bytes`, waiting while the socket's send buffer is full.
    ///
    /// Not cancel-safe: if the future is dropped, an unknown prefix of `bytes` has been sent.
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let sent = poll_fn(|context| self.poll_write(context, bytes)).await?;
            bytes = &bytes[sent..];
        }
        Ok(())
    }

    /// Writes a prefix of `bytes` (not empty) without blocking, once the socket has room for
    /// it: how many bytes were sent. Otherwise keeps the task's waker until it has room.
    #[allow(unsafe_code)]
    pub fn poll_write(&mut self, context: &Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if Poller::poll_ready(self.token(), WRITABLE, context).is_pending() {
                return Poll::Pending;
            }
            // SAFETY: the fd is open for the call and `bytes` is a live slice of its length.
            // MSG_NOSIGNAL: a closed peer is an EPIPE error here, not a SIGPIPE.
            let sent = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if sent >= 0 {
                return Poll::Ready(Ok(sent as usize));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                // Polled again at once: the slot, no longer writable, keeps the waker.
                io::ErrorKind::WouldBlock => Poller::clear(self.token(), WRITABLE),
                io::ErrorKind::Interrupted => {}
                _ => return Poll::Ready(Err(error)),
            }
        }
    }

    /// Sets TCP_NODELAY: send small segments at once instead of waiting to coalesce them (the
    /// broker coalesces its own writes).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_tcp_nodelay(nodelay)
    }

    /// Whether TCP_NODELAY is set (accepted connections inherit it from the listener).
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).tcp_nodelay()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).peer_addr()?)
    }

    /// A key for [`Connection::peer_addr_of`]: the socket's fd number, 4 bytes to keep where
    /// the connection itself is not at hand.
    pub fn peer_key(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The client's address, for the connection whose [`peer_key`](Self::peer_key) this is.
    /// The caller must know that connection is still open (a key outlives its connection, and
    /// its number is reused by the next socket opened); the answer is then exact, and at worst
    /// another socket's address or an error, never unsafe: the number is only passed to
    /// getpeername, not taken as an owned or borrowed fd.
    #[allow(unsafe_code)]
    pub fn peer_addr_of(key: i32) -> io::Result<SocketAddr> {
        // SAFETY: getpeername writes at most `len` bytes into the storage socket2 hands over
        // and sets `len` to what it wrote; any fd number is acceptable to it (a closed one or
        // one that is no socket fails with EBADF / ENOTSOCK).
        let ((), address) = unsafe {
            socket2::SockAddr::try_init(|storage, len| {
                if libc::getpeername(key, storage.cast(), len) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
        }?;
        sock_addr(address)
    }

    /// The broker's address of this connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).local_addr()?)
    }

    /// Shuts down the read half, the write half (sends FIN once queued data is out) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.fd).shutdown(how)
    }

    /// Closes the connection: the same as dropping it, named for call sites that mean it.
    /// Unread received data makes the kernel send RST instead of FIN.
    pub fn close(self) {
        drop(self);
    }

    /// Detaches the connection from this shard (takes it out of the shard's epoll set) so
    /// another shard can adopt it with [`StreamHandoff::into_connection`]. Bytes this shard
    /// already read are the caller's to send along. The connection is closed if this fails.
    pub fn into_handoff(self) -> io::Result<StreamHandoff> {
        let Connection { fd, registration } = self;
        Poller::deregister(fd.as_fd(), registration.token)?;
        Ok(StreamHandoff { fd })
    }
}

fn sock_addr(addr: socket2::SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the socket has no IP address"))
}

/// An outgoing TCP connection (the load generator's clients) attached to one shard, over
/// glommio's non-buffered stream: it holds no receive buffer of its own, but an armed io_uring
/// poll while it waits (see the module docs). Lives on its shard (`!Send`). Dropping it closes
/// the connection.
#[derive(Debug)]
pub struct TcpStream {
    inner: glommio::net::TcpStream,
}

impl TcpStream {
    /// Opens a TCP connection to `target` on the current shard, from the local address `source`
    /// when one is given, and returns once the handshake has completed.
    ///
    /// With a `source`, the socket is bound to it with `IP_BIND_ADDRESS_NO_PORT`: the kernel then
    /// picks the local port at connect time, per (source, target) pair, instead of at bind time
    /// from the source's single ephemeral range. So each source address gives up to ~28K
    /// connections per target rather than ~28K in all, which is what lets a load generator spread
    /// over 127.0.0.x addresses. Must be called on a shard.
    ///
    /// Errors come as the kernel reports them: `ECONNREFUSED`, `EADDRNOTAVAIL` when no local port
    /// is left for the pair, `EMFILE` when out of descriptors. No timeout: a SYN that is never
    /// answered is retried by the kernel for minutes, so callers race this with a timer.
    pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
        TcpStream::connect_with(target, source, None).await
    }

    /// Like [`connect`](TcpStream::connect) with `TCP_USER_TIMEOUT` set: the kernel aborts the
    /// connection (the next read or write fails with `ETIMEDOUT`) once data it sent has stayed
    /// unacknowledged for `user_timeout`. Without it, a peer cut off silently (no FIN, no RST:
    /// a partition, a dead machine) keeps a connection that writes succeed on for the ~15
    /// minutes the kernel retransmits (`tcp_retries2`).
    pub async fn connect_with_user_timeout(
        target: SocketAddr,
        user_timeout: Duration,
    ) -> io::Result<TcpStream> {
        TcpStream::connect_with(target, None, Some(user_timeout)).await
    }

    #[allow(unsafe_code)]
    async fn connect_with(
        target: SocketAddr,
        source: Option<IpAddr>,
        user_timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        if user_timeout.is_some() {
            socket.set_tcp_user_timeout(user_timeout)?;
        }
        if let Some(source) = source {
            set_bind_address_no_port(&socket)?;
            socket.bind(&SocketAddr::new(source, 0).into())?;
        }
        match socket.connect(&target.into()) {
            Ok(()) => {}
            // The usual answer on a nonblocking socket: the handshake goes on without us.
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => return Err(error),
        }
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is a TCP socket this function owns: it was taken out of the socket2
        // `Socket`, which no longer closes it. glommio's stream takes over that ownership and
        // closes it on drop (also when the handshake below fails).
        let inner = unsafe { glommio::net::TcpStream::from_raw_fd(fd) };
        let mut stream = TcpStream { inner };
        // A zero-length send waits for the handshake without sending anything: while the socket
        // is still in SYN_SENT, Linux's `tcp_sendmsg` answers a nonblocking send with EAGAIN, so
        // glommio arms an io_uring poll for writability; once the handshake is over the send
        // returns 0, and if it failed the send returns the socket's error (ECONNREFUSED...).
        let nothing = [0_u8; 0];
        poll_fn(|context| Pin::new(&mut stream.inner).poll_write(context, &nothing)).await?;
        Ok(stream)
    }

    /// Waits until the connection has data to read or has reached EOF, without holding any
    /// buffer while it waits; returns the error if the connection failed (e.g. reset).
    ///
    /// A following [`read_buf`](TcpStream::read_buf) then returns at once, with the data or 0 for
    /// EOF. Rarely the wake-up is spurious and `read_buf` waits again, holding its buffer.
    pub async fn readable(&mut self) -> io::Result<()> {
        // A zero-length read: glommio waits with an io_uring poll, which needs no buffer, then
        // returns Ok(0) from a zero-length recv once data or EOF is queued.
        let mut nothing = [0_u8; 0];
        poll_fn(|context| Pin::new(&mut self.inner).poll_read(context, &mut nothing))
            .await
            .map(drop)
    }

    /// Reads what has arrived, appending it to `buf`; returns how many bytes, 0 at EOF.
    ///
    /// Reserves [`READ_BYTES_MIN`] first when `buf` has less free capacity, and reads at most
    /// [`READ_BYTES_MAX`]. Cancel-safe: if the future is dropped, `buf` keeps exactly its
    /// previous content. While this waits, `buf` is held: await [`readable`](Self::readable)
    /// first so an idle connection holds no buffer.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_BYTES_MIN {
            buf.reserve(READ_BYTES_MIN);
        }
        let start = buf.len();
        let offered = (buf.capacity() - start).min(READ_BYTES_MAX);
        let mut filling = Filling { buf, keep: start };
        filling.buf.resize(start + offered, 0);
        let read = self.inner.read(&mut filling.buf[start..]).await?;
        filling.keep = start + read;
        Ok(read)
    }

    /// Writes all of `bytes`, waiting while the socket's send buffer is full.
    ///
    /// Not cancel-safe: if the future is dropped, an unknown prefix of `bytes` has been sent.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes).await
    }

    /// Sets TCP_NODELAY: send small segments at once instead of waiting to coalesce them (the
    /// broker coalesces its own writes).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay).map_err(io::Error::from)
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr().map_err(io::Error::from)
    }

    /// The broker's address of this connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr().map_err(io::Error::from)
    }

    /// Shuts down the read half, the write half (sends FIN once queued data is out) or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how).await.map_err(io::Error::from)
    }

    /// Closes the connection: the same as dropping it, named for call sites that mean it.
    /// Unread received data makes the kernel send RST instead of FIN.
    pub fn close(self) {
        drop(self);
    }
}

/// Truncates the buffer to `keep` bytes when dropped, so `read_buf` leaves no zeroed bytes behind
/// when the read fails or its future is dropped.
struct Filling<'buf> {
    buf: &'buf mut BytesMut,
    keep: usize,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        self.buf.truncate(self.keep);
    }
}

/// A connection on its way to another shard: an owned fd, `Send`, registered in no epoll set.
/// Send it over the mesh (with the bytes already read) and call
/// [`into_connection`](Self::into_connection) on the destination shard. Dropping it closes the
/// connection.
#[derive(Debug)]
pub struct StreamHandoff {
    fd: OwnedFd,
}

impl StreamHandoff {
    /// Attaches the connection to the current shard (registers it in the shard's epoll set).
    /// Must be called on a shard. The connection is closed if that fails.
    pub fn into_connection(self) -> io::Result<Connection> {
        Connection::register(self.fd)
    }
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2+): a later `bind` to port 0 reserves no port, and
/// `connect` picks one that is free for the whole 4-tuple. socket2 has no wrapper for it.
#[allow(unsafe_code)]
fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let enable: libc::c_int = 1;
    // SAFETY: the fd is open for the duration of the call (borrowed from `socket`), and the
    // option value points at a live `c_int` whose size is passed alongside it, as
    // setsockopt(2) requires.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&enable).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

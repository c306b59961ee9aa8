//! Tests of the runtime seam on real executors and real loopback sockets.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future;

use super::*;

const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";
const BACKLOG: i32 = 128;
/// Far longer than any of these tests takes; a hang fails the test instead of stalling the run.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    LOOPBACK_ANY_PORT.parse().expect("a valid socket address")
}

/// Joins every shard, failing the test if one panicked or if they outlive `TEST_DEADLINE`.
fn join_all<T>(handles: Vec<ShardHandle<T>>) -> Vec<T> {
    let deadline = Instant::now() + TEST_DEADLINE;
    while !handles.iter().all(ShardHandle::is_finished) {
        assert!(Instant::now() < deadline, "shards still running after {TEST_DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    handles.into_iter().map(|handle| handle.join().expect("shard panicked")).collect()
}

/// Reads until the peer has sent `expected` bytes in total, without buffering while idle.
async fn read_exactly(stream: &mut Connection, expected: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    while buf.len() < expected {
        stream.readable().await;
        if let Some(read) = stream.try_read_buf(&mut buf).expect("read") {
            assert_ne!(read, 0, "EOF after {:?}", buf);
        }
    }
    buf
}

#[test]
fn shards_exchange_messages_over_the_mesh() {
    const ROUNDS: u64 = 1000;
    let handles = start_shards(
        ShardPlacement::PinnedToCpus,
        build_mesh::<u64>(2),
        |shard, ends| async move {
            assert_eq!(ends.shard(), shard);
            let mut mesh = ends.connect().await;
            let peer = 1 - shard.get();
            let mut sender = mesh.senders[peer].take().expect("a sender to the peer");
            let mut receiver = mesh.receivers[peer].take().expect("a receiver from the peer");
            assert!(mesh.senders[shard.get()].is_none());
            assert_eq!(sender.peer().get(), peer);
            assert_eq!(receiver.peer().get(), peer);
            // Shard 0 serves: it answers each number with its double.
            let mut sum = 0;
            for round in 0..ROUNDS {
                if shard.get() == 0 {
                    let number = receiver.recv().await.expect("a request");
                    sender.send(number * 2).await.expect("peer alive");
                } else {
                    sender.send(round).await.expect("peer alive");
                    sum += receiver.recv().await.expect("an answer");
                }
            }
            sum
        },
    )
    .expect("shards start");
    assert_eq!(handles[1].shard(), ShardIndex::new(1));
    let sums = join_all(handles);
    assert_eq!(sums, vec![0, ROUNDS * (ROUNDS - 1)]);
}

#[test]
fn echo_over_a_listener_from_bind_listener() {
    let (addr_sender, addr_receiver) = mpsc::channel();
    let (go_sender, go_receiver) = mpsc::channel();
    let handles = start_shards(ShardPlacement::PinnedToCpus, vec![()], move |_, ()| {
        async move {
            let listener = bind_listener(loopback(), BACKLOG).expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            addr_sender.send(addr).expect("test thread alive");
            let mut stream = listener.accept().await.expect("accept");
            assert!(
                stream.nodelay().expect("nodelay"),
                "TCP_NODELAY is inherited from the listener"
            );
            assert_eq!(stream.local_addr().expect("local_addr"), addr);
            let peer = stream.peer_addr().expect("peer_addr");

            // Nothing has been sent yet, so `readable` must still be waiting when the timer
            // fires; only then does the client get to write.
            let idle = future::or(
                async {
                    // A new connection is readable only once the epoll set says so.
                    stream.readable().await;
                    false
                },
                async {
                    sleep(Duration::from_millis(20)).await;
                    true
                },
            )
            .await;
            assert!(idle, "readable returned before the client wrote");
            go_sender.send(()).expect("test thread alive");

            let mut echoed = 0;
            loop {
                stream.readable().await;
                let mut buf = BytesMut::new();
                let Some(read) = stream.try_read_buf(&mut buf).expect("read") else { continue };
                if read == 0 {
                    break;
                }
                assert_eq!(buf.len(), read);
                stream.write_all(&buf).await.expect("write");
                echoed += read;
            }
            stream.shutdown(Shutdown::Write).expect("shutdown");
            stream.close();
            (peer, echoed)
        }
    })
    .expect("shards start");

    let addr = addr_receiver.recv().expect("shard sends its address");
    assert_ne!(addr.port(), 0);
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(TEST_DEADLINE)).expect("read timeout");
    go_receiver.recv().expect("shard is waiting");
    let message = b"hello, shard";
    client.write_all(message).expect("client write");
    let mut answer = vec![0_u8; message.len()];
    client.read_exact(&mut answer).expect("client read");
    assert_eq!(&answer, message);
    client.shutdown(Shutdown::Write).expect("client shutdown");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty());

    let results = join_all(handles);
    assert_eq!(results, vec![(client.local_addr().expect("client addr"), message.len())]);
}

#[test]
fn a_stream_handed_to_another_shard_keeps_working() {
    let mut listeners =
        bind_listener_sockets(loopback(), BACKLOG, 1).expect("bind before the shards start");
    let addr = listeners[0].local_addr().expect("local_addr");
    // Only shard 0 listens: with a second SO_REUSEPORT socket the kernel could queue the
    // connection on a listener nobody accepts on.
    let per_shard = build_mesh::<(StreamHandoff, BytesMut)>(2)
        .into_iter()
        .map(|ends| (ends, listeners.pop()))
        .collect();
    let handles = start_shards(
        ShardPlacement::PinnedToCpus,
        per_shard,
        |shard, (ends, listener)| async move {
            let mut mesh = ends.connect().await;
            if let Some(listener) = listener {
                assert_eq!(shard.get(), 0);
                let listener = listener.into_listener().expect("register");
                let mut stream = listener.accept().await.expect("accept");
                let hello = read_exactly(&mut stream, b"hello".len()).await;
                stream.write_all(b"moving").await.expect("write");
                let handoff = stream.into_handoff().expect("deregister");
                let sender = mesh.senders[1].as_mut().expect("a sender to shard 1");
                sender.send((handoff, hello)).await.expect("shard 1 alive");
                Vec::new()
            } else {
                let receiver = mesh.receivers[0].as_mut().expect("a receiver from shard 0");
                let (handoff, hello) = receiver.recv().await.expect("a hand-off");
                let mut stream = handoff.into_connection().expect("register");
                let ping = read_exactly(&mut stream, b"ping".len()).await;
                stream.write_all(b"pong").await.expect("write");
                [hello, ping].concat()
            }
        },
    )
    .expect("shards start");

    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(TEST_DEADLINE)).expect("read timeout");
    client.write_all(b"hello").expect("client write");
    let mut moving = [0_u8; 6];
    client.read_exact(&mut moving).expect("read from shard 0");
    assert_eq!(&moving, b"moving");
    // Shard 0 has let go of its fd by now or soon; the socket must keep working either way.
    client.write_all(b"ping").expect("client write");
    let mut pong = [0_u8; 4];
    client.read_exact(&mut pong).expect("read from shard 1");
    assert_eq!(&pong, b"pong");

    let results = join_all(handles);
    assert_eq!(results, vec![Vec::new(), b"helloping".to_vec()]);
}

/// Starts one shard that accepts `connections` connections on a fresh listener and runs `serve`
/// on each in a task of its own; returns the listener's address and the shard.
fn serve_each<F, Fut>(connections: usize, serve: F) -> (SocketAddr, Vec<ShardHandle<()>>)
where
    F: Fn(Connection) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let sockets = bind_listener_sockets(loopback(), BACKLOG, 1).expect("bind");
    let addr = sockets[0].local_addr().expect("local_addr");
    let handles = start_shards(ShardPlacement::Unbound, sockets, move |_, socket| {
        let serve = serve.clone();
        async move {
            let listener = socket.into_listener().expect("register");
            let (done_sender, done_receiver) = mpsc::channel();
            for _ in 0..connections {
                let stream = listener.accept().await.expect("accept");
                let serve = serve.clone();
                let done = done_sender.clone();
                spawn_local(async move {
                    serve(stream).await;
                    done.send(()).expect("shard alive");
                });
            }
            for _ in 0..connections {
                while done_receiver.try_recv().is_err() {
                    sleep(Duration::from_millis(1)).await;
                }
            }
        }
    })
    .expect("shards start");
    (addr, handles)
}

#[test]
fn a_connection_waits_for_room_to_write() {
    // Far more than the socket buffers on both sides hold: the writer must wait for the
    // reader, and be woken when there is room again.
    const SENT: usize = 32 << 20;
    let (addr, handles) = serve_each(1, |mut stream| async move {
        let chunk = vec![7_u8; 1 << 20];
        for _ in 0..SENT / chunk.len() {
            stream.write_all(&chunk).await.expect("write");
        }
        stream.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(TEST_DEADLINE)).expect("read timeout");
    // Let the shard fill both buffers and wait before anything is read.
    std::thread::sleep(Duration::from_millis(50));
    let mut received = Vec::new();
    client.read_to_end(&mut received).expect("read to EOF");
    assert_eq!(received.len(), SENT);
    assert!(received.iter().all(|&byte| byte == 7));
    join_all(handles);
}

#[test]
fn signals_wake_a_waiting_connection_task_and_a_stale_key_does_nothing() {
    const FLUSH: u8 = 1;
    const CLOSE: u8 = 2;
    let (addr, handles) = serve_each(1, |stream| async move {
        let key = stream.notify_key();
        // Set before anyone waits: the first poll sees it, and clears only what it asked for.
        Connection::notify(key, FLUSH | CLOSE);
        let set = std::future::poll_fn(|context| stream.poll_signals(FLUSH, context)).await;
        assert_eq!(set, FLUSH);
        assert_eq!(stream.signals(), CLOSE);
        stream.clear_signals(CLOSE);
        assert_eq!(stream.signals(), 0);
        // Set by another task while this one waits (the client sends nothing meanwhile).
        spawn_local(async move {
            sleep(Duration::from_millis(5)).await;
            Connection::notify(key, FLUSH);
        });
        let set = std::future::poll_fn(|context| stream.poll_signals(FLUSH, context)).await;
        assert_eq!(set, FLUSH);
        drop(stream);
        // The slot is free (or someone else's now): its old key reaches nobody.
        Connection::notify(key, FLUSH);
    });
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(TEST_DEADLINE)).expect("read timeout");
    let mut received = Vec::new();
    client.read_to_end(&mut received).expect("read to EOF");
    assert!(received.is_empty());
    join_all(handles);
}

#[test]
fn data_and_eof_that_arrive_together_are_both_read() {
    let (read_sender, read_receiver) = mpsc::channel();
    let (addr, handles) = serve_each(1, move |mut stream| {
        let read_sender = read_sender.clone();
        async move {
            // The client has sent its bytes and closed by the time this looks.
            sleep(Duration::from_millis(50)).await;
            let mut buf = BytesMut::new();
            loop {
                stream.readable().await;
                if stream.try_read_buf(&mut buf).expect("read") == Some(0) {
                    break;
                }
            }
            read_sender.send(buf.to_vec()).expect("test thread alive");
        }
    });
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.write_all(b"last words").expect("client write");
    client.shutdown(Shutdown::Write).expect("client shutdown");
    let read = read_receiver.recv_timeout(TEST_DEADLINE).expect("the shard saw EOF");
    assert_eq!(read, b"last words");
    join_all(handles);
}

#[test]
fn more_ready_connections_than_one_batch_are_all_served() {
    let connections = EVENTS_PER_BATCH_MAX * 2 + 1;
    let (addr, handles) = serve_each(connections, |mut stream| async move {
        let ping = read_exactly(&mut stream, 1).await;
        stream.write_all(&ping).await.expect("write");
    });
    let mut clients: Vec<std::net::TcpStream> =
        (0..connections).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
    // Every connection becomes readable at about the same time.
    for (index, client) in clients.iter_mut().enumerate() {
        client.write_all(&[index as u8]).expect("client write");
    }
    for (index, client) in clients.iter_mut().enumerate() {
        client.set_read_timeout(Some(TEST_DEADLINE)).expect("read timeout");
        let mut pong = [0_u8; 1];
        client.read_exact(&mut pong).expect("client read");
        assert_eq!(pong[0], index as u8);
    }
    join_all(handles);
}

#[test]
fn listener_sockets_for_port_zero_share_one_real_port() {
    let sockets = bind_listener_sockets(loopback(), BACKLOG, 3).expect("bind");
    let addrs: Vec<SocketAddr> =
        sockets.iter().map(|socket| socket.local_addr().expect("local_addr")).collect();
    assert_ne!(addrs[0].port(), 0);
    assert!(addrs.iter().all(|addr| *addr == addrs[0]), "{addrs:?}");
}

#[test]
fn spawn_blocking_returns_a_panic_as_an_error() {
    let handles = start_shards(ShardPlacement::PinnedToCpus, vec![()], |_, ()| async {
        let value = spawn_blocking(|| 6 * 7).await;
        let panicked = spawn_blocking(|| -> u32 { panic!("disk on fire") }).await;
        (value, panicked)
    })
    .expect("shards start");
    let results = join_all(handles);
    assert_eq!(results, vec![(Ok(42), Err(Panicked { message: "disk on fire".to_owned() }))]);
}

#[test]
fn a_shard_panic_is_reported_when_joined() {
    let handles = start_shards(ShardPlacement::Unbound, vec![(); 2], |shard, ()| async move {
        spawn_local(async {});
        yield_if_needed().await;
        assert_ne!(shard.get(), 1, "shard one gives up");
    })
    .expect("shards start");
    let deadline = Instant::now() + TEST_DEADLINE;
    while !handles.iter().all(ShardHandle::is_finished) {
        assert!(Instant::now() < deadline, "shards still running");
        std::thread::sleep(Duration::from_millis(1));
    }
    let results: Vec<_> = handles.into_iter().map(ShardHandle::join).collect();
    assert!(results[0].is_ok());
    let panicked = results[1].as_ref().expect_err("shard 1 panicked");
    assert_eq!(panicked.shard, ShardIndex::new(1));
    assert!(panicked.message.contains("shard one gives up"), "{panicked}");
    assert_eq!(panicked.to_string().split(':').next(), Some("shard-1 panicked"));
}

#[test]
fn start_shards_refuses_zero_shards() {
    let error = start_shards(ShardPlacement::Unbound, Vec::<()>::new(), |_, ()| async {})
        .expect_err("no shards");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn out_of_descriptors_asks_for_backoff() {
    let check = |code: i32, expected: bool| {
        let error = std::io::Error::from_raw_os_error(code);
        assert_eq!(needs_accept_backoff(&error), expected, "{error}");
    };
    check(libc::EMFILE, true);
    check(libc::ENFILE, true);
    check(libc::ENOBUFS, true);
    check(libc::ENOMEM, true);
    check(libc::ECONNABORTED, false);
    check(libc::EAGAIN, false);
}

/// glommio 0.9.0 parked its thread when the preempt timer had fired before the first task queue
/// ran, with queues still runnable, and nothing was coming to wake it: with a 20 µs timer this
/// chain of local wake-ups (no I/O, no timer) hung within milliseconds every time. The vendored
/// copy (vendor/README.md) runs the queues instead of parking.
#[test]
fn an_executor_preempted_before_running_its_queues_does_not_park() {
    const ROUNDS: u32 = 100_000;
    let (done_sender, done_receiver) = mpsc::channel();
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(SHARD_IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_micros(20))
        .spawn(move || async move {
            for round in 0..ROUNDS {
                let task = glommio::spawn_local(async move {
                    let spin = (0..200u32).fold(round, |acc, step| acc.wrapping_mul(31) ^ step);
                    std::hint::black_box(spin);
                    glommio::yield_if_needed().await;
                });
                task.await;
            }
            done_sender.send(()).expect("the test is waiting");
        })
        .expect("an executor");
    let finished = done_receiver.recv_timeout(TEST_DEADLINE);
    assert!(
        finished.is_ok(),
        "{ROUNDS} local tasks not run within {TEST_DEADLINE:?}: the executor parked"
    );
    executor.join().expect("the executor's thread");
}

//! Running out of file descriptors: the broker logs it at most every few seconds, backs off
//! instead of spinning, keeps serving the clients it has, and accepts again once descriptors free.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use shardmq_io::codec::{Packet, ProtocolVersion};
use shardmq_tests::{connect_packet, Broker, RawClient};

/// CPU seconds (user + system) the process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the broker is running");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = stat.rsplit(')').next().expect("stat format");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

#[test]
fn out_of_descriptors_backs_off_and_existing_clients_keep_working() {
    // 64 descriptors: the broker's own (executors, rings, listeners, pipes) take about 30.
    let broker = Broker::start_wrapped(&["prlimit", "--nofile=64:64"], &[]);
    let (mut client, _) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "steady"));

    // Connections that never send CONNECT hold a descriptor each until the connect timeout.
    let mut hogs: Vec<TcpStream> = Vec::new();
    for _ in 0..80 {
        hogs.push(TcpStream::connect(broker.addr()).expect("the kernel accepts into the backlog"));
    }
    assert!(
        broker.wait_for_log("Too many open files", Duration::from_secs(5)).is_some(),
        "the broker must say it is out of descriptors; log:\n{}",
        broker.log()
    );

    let cpu_before = cpu_seconds(broker.pid());
    let started = Instant::now();
    // The existing client keeps working while the listener is starved.
    for _ in 0..10 {
        client.send(&Packet::PingReq);
        assert!(matches!(client.expect_packet(Duration::from_secs(2)), Packet::PingResp));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_seconds(broker.pid()) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    assert!(
        cpu < wall * 0.25,
        "the broker spins while out of descriptors: {cpu:.2} s CPU in {wall:.2} s"
    );
    let warnings = broker.log().matches("Too many open files").count();
    assert!(
        warnings <= 4,
        "logged {warnings} times in about a second; at most once per 5 s per shard"
    );

    // Once descriptors are free again, new clients get in.
    drop(hogs);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut fresh = RawClient::open(broker.addr(), ProtocolVersion::V5);
        fresh.send(&Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "late"))));
        if let shardmq_tests::Received::Packet(Packet::ConnAck(_)) =
            fresh.next(Duration::from_secs(1))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no CONNACK after descriptors were freed");
    }
}

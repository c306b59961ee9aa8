//! The PROXY protocol on client listeners (`proxy_protocol`): behind a load balancer, the
//! client's address is the one its header names (in the admin API, and for the failed-login
//! budget); a connection without a valid header is closed and counted. Raw headers of both
//! versions, sent whole or in pieces, and Debian's `mosquitto_pub`/`mosquitto_sub` through a
//! relay that adds the header the way HAProxy's `send-proxy` does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardmq_io::codec::{BytesMut, Packet, ProtocolVersion, ReasonCode};
use shardmq_tests::{
    connect_packet, http_get, proxy_v1_header, require_tool, run_tool, tool_command, Broker,
    ProxyRelay,
};

const REPLY: Duration = Duration::from_secs(3);

fn proxy_broker(extra: &[&str]) -> Broker {
    Broker::start(&[&["--proxy-protocol", "true", "--admin-listen", "127.0.0.1:0"], extra].concat())
}

/// A v2 header: PROXY command, TCP over IPv4, `source` → 127.0.0.1:1883.
fn v2_header(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(source) = source else { panic!("IPv4 only here") };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    header.extend_from_slice(&source.ip().octets());
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&1883u16.to_be_bytes());
    header
}

fn connect_bytes(client_id: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, client_id)))
        .encode(ProtocolVersion::V5, &mut out)
        .expect("encodes");
    out.to_vec()
}

/// Reads until a CONNACK's first bytes arrive; its reason code (v5: the fourth byte).
fn connack_reason(stream: &mut TcpStream) -> Option<u8> {
    stream.set_read_timeout(Some(REPLY)).expect("timeout");
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    while got.len() < 4 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    (got[0] == 0x20).then_some(got[3])
}

/// The `peer_address` the admin API shows for `client_id`.
fn peer_address(broker: &Broker, client_id: &str) -> String {
    let (status, body) = http_get(broker.admin_address(), &format!("/api/v1/clients/{client_id}"));
    assert_eq!(status, 200, "{body}");
    let client: Value = serde_json::from_str(&body).expect("JSON");
    client["peer_address"].as_str().unwrap_or_default().to_owned()
}

fn expect_closed(stream: &mut TcpStream, within: Duration) {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut chunk = [0u8; 64];
    let started = Instant::now();
    match stream.read(&mut chunk) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => {
            panic!("expected the broker to close, got {other:?} after {:?}", started.elapsed())
        }
    }
}

#[test]
fn the_header_names_the_client_in_either_version_whole_or_in_pieces() {
    let broker = proxy_broker(&[]);
    let source: SocketAddr = "203.0.113.7:40001".parse().unwrap();

    // Version 1, header and CONNECT in one write (as a load balancer forwards them).
    let mut client = TcpStream::connect(broker.addr()).expect("connect");
    client.write_all(&[proxy_v1_header(source), connect_bytes("pp-v1")].concat()).unwrap();
    assert_eq!(connack_reason(&mut client), Some(ReasonCode::SUCCESS.0));
    assert_eq!(peer_address(&broker, "pp-v1"), "203.0.113.7:40001");

    // Version 2, the header in two pieces, then the CONNECT.
    let source: SocketAddr = "198.51.100.20:5000".parse().unwrap();
    let header = v2_header(source);
    let mut client2 = TcpStream::connect(broker.addr()).expect("connect");
    client2.write_all(&header[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    client2.write_all(&header[10..]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    client2.write_all(&connect_bytes("pp-v2")).unwrap();
    assert_eq!(connack_reason(&mut client2), Some(ReasonCode::SUCCESS.0));
    assert_eq!(peer_address(&broker, "pp-v2"), "198.51.100.20:5000");

    // A LOCAL header (the balancer's own health check): the socket's peer stands.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let mut client3 = TcpStream::connect(broker.addr()).expect("connect");
    client3.write_all(&[local, connect_bytes("pp-local")].concat()).unwrap();
    assert_eq!(connack_reason(&mut client3), Some(ReasonCode::SUCCESS.0));
    assert_eq!(peer_address(&broker, "pp-local"), client3.local_addr().unwrap().to_string());
}

#[test]
fn a_connection_without_a_valid_header_is_closed_and_counted() {
    let broker = proxy_broker(&["--connect-timeout", "2"]);
    let refused = || broker.metric_total("shardmq_connects_refused_total", "proxy_header");
    assert_eq!(refused(), 0);

    // A client that reaches the listener directly: its CONNECT is not a header.
    let mut direct = TcpStream::connect(broker.addr()).expect("connect");
    direct.write_all(&connect_bytes("direct")).unwrap();
    expect_closed(&mut direct, REPLY);

    // A v2 header claiming 65,535 bytes of addresses: refused from its first 16 bytes.
    let mut liar = v2_header("192.0.2.1:1".parse().unwrap());
    liar[14] = 0xFF;
    liar[15] = 0xFF;
    let mut lying = TcpStream::connect(broker.addr()).expect("connect");
    lying.write_all(&liar[..16]).unwrap();
    expect_closed(&mut lying, REPLY);

    // Half a header, then silence: closed at the connect timeout.
    let mut silent = TcpStream::connect(broker.addr()).expect("connect");
    silent.write_all(b"PROXY TCP4 192.0.2.1").unwrap();
    expect_closed(&mut silent, Duration::from_secs(5));

    let deadline = Instant::now() + REPLY;
    while refused() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(refused(), 3);
    assert!(broker.log_contains("on a `proxy_protocol` listener"), "{}", broker.log());
}

/// Debian's mosquitto clients through a relay that adds the header, as HAProxy would: the
/// round trip works and the admin API shows the address the header named.
#[test]
fn mosquitto_clients_through_a_proxy_protocol_relay() {
    require_tool("mosquitto_sub");
    let broker = proxy_broker(&[]);
    let named: SocketAddr = "192.0.2.44:6000".parse().unwrap();
    let relay = ProxyRelay::start(broker.addr(), move |_| proxy_v1_header(named));
    let port = relay.address().port().to_string();
    let mut subscriber = tool_command("mosquitto_sub");
    subscriber.args(["-h", "127.0.0.1", "-p", &port, "-i", "pp-sub", "-t", "pp/t", "-C", "1"]);
    subscriber.args(["-W", "10"]);
    let subscriber = shardmq_tests::spawn_tool(&mut subscriber);
    // The subscription is in place once the admin API lists the subscriber.
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(broker.admin_address(), "/api/v1/clients/pp-sub").0 != 200 {
        assert!(Instant::now() < deadline, "mosquitto_sub never connected through the relay");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(peer_address(&broker, "pp-sub"), "192.0.2.44:6000");
    let mut publisher = tool_command("mosquitto_pub");
    publisher.args(["-h", "127.0.0.1", "-p", &port, "-t", "pp/t", "-m", "through", "-q", "1"]);
    let published = run_tool(&mut publisher, Duration::from_secs(10));
    assert!(published.status.success(), "{published:?}");
    let output = subscriber.wait_with_output().expect("mosquitto_sub ends");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "through");
}

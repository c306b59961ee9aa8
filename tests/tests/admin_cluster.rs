//! The admin API across a cluster, end to end: real nodes on one real etcd. Any node answers
//! for any client (asking its owner over the node links), lists every node's clients with
//! `?cluster=true`, and shows the members; a node that does not answer is named in the answer,
//! which still comes within the 2 s the nodes wait for each other. `shardmq ctl` drives it.

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardmq_cluster::testing::EtcdProcess;
use shardmq_io::codec::{Packet, ProtocolVersion, ReasonCode};
use shardmq_tests::{
    broker_binary, connect_packet, http_request, persistent_connect_packet, run_tool, tool_command,
    Broker, RawClient,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// How long the links of a new cluster may take to come up, in these tests.
const LINKS_UP: Duration = Duration::from_secs(15);
/// The nodes' wait for each other's answers (`CLUSTER_ANSWER_TIMEOUT`) and slack for a loaded
/// test machine.
const ANSWER_WITHIN: Duration = Duration::from_millis(4_500);

/// Node `index` (id `n{index}`, on 127.0.0.{index + 1}) with a lease long enough that a node
/// stopped or killed stays a member for the test's checks.
fn start_node(endpoints: &str, cluster: &str, index: usize) -> Broker {
    let args = shardmq_tests::cluster_node_args(endpoints, cluster, index, "30");
    Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A GET or DELETE whose answer is JSON.
fn api(admin: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_request(admin, method, path);
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

/// Runs `shardmq ctl --admin ADMIN ARGS...`; panics unless it exits 0; its standard output.
fn ctl(admin: SocketAddr, args: &[&str]) -> String {
    let mut command = tool_command(broker_binary().to_str().expect("UTF-8 path"));
    command.args(["ctl", "--admin", &admin.to_string()]).args(args);
    let output: Output = run_tool(&mut command, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ctl {args:?}: {:?}\n{stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// (client id, node) of each client of a cluster-wide page.
fn listed(page: &Value) -> Vec<(String, String)> {
    let clients = page["clients"].as_array().expect("a list of clients");
    let text = |client: &Value, key: &str| client[key].as_str().unwrap_or("-").to_owned();
    clients.iter().map(|c| (text(c, "client_id"), text(c, "node"))).collect()
}

fn connect(node: &Broker, client_id: &str, persistent: bool) -> RawClient {
    let packet = match persistent {
        true => persistent_connect_packet(V5, client_id),
        false => connect_packet(V5, client_id),
    };
    let (client, connack) = RawClient::connect(node.addr(), packet);
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{client_id}: {connack:?}");
    client
}

/// The cluster-wide list through `admin`, once it shows `expected` (client id, node) pairs
/// and every node answered (the links take a moment to come up).
fn wait_for_listing(admin: SocketAddr, expected: &[(&str, &str)]) -> Value {
    let deadline = Instant::now() + LINKS_UP;
    loop {
        let (status, page) = api(admin, "GET", "/api/v1/clients?cluster=true");
        assert_eq!(status, 200, "{page}");
        let clients = listed(&page);
        let all = expected
            .iter()
            .all(|(id, node)| clients.contains(&((*id).to_owned(), (*node).to_owned())));
        let answered = page["not_answered"].as_array().is_some_and(Vec::is_empty);
        if all && answered {
            return page;
        }
        assert!(Instant::now() < deadline, "the cluster list never showed {expected:?}: {page}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn any_node_inspects_kicks_and_lists_any_nodes_clients() {
    let etcd = EtcdProcess::start().unwrap_or_else(|error| panic!("{error}"));
    let nodes: Vec<Broker> =
        (0..3).map(|index| start_node(&etcd.endpoint(), "admin", index)).collect();
    let (a, b, c) = (nodes[0].admin_address(), nodes[1].admin_address(), nodes[2].admin_address());
    let mut on_a = connect(&nodes[0], "on-a", false);
    let _on_b = connect(&nodes[1], "on-b", true);
    let page = wait_for_listing(b, &[("on-a", "n0"), ("on-b", "n1")]);
    assert_eq!(page["next_after"], Value::Null, "{page}");

    // Inspected through a node it is not on: the owner's answer, which names it.
    let (status, detail) = api(b, "GET", "/api/v1/clients/on-a");
    assert_eq!(status, 200, "{detail}");
    assert_eq!((detail["node"].as_str(), detail["connected"].as_bool()), (Some("n0"), Some(true)));
    // Its own client, through the node it is on, names that node too.
    let (status, detail) = api(b, "GET", "/api/v1/clients/on-b");
    assert_eq!((status, detail["node"].as_str()), (200, Some("n1")), "{detail}");
    let printed = ctl(c, &["client", "on-a"]);
    assert!(printed.contains("\"node\": \"n0\""), "{printed}");

    // A page of the cluster, cut where the next one starts.
    let (status, first) = api(a, "GET", "/api/v1/clients?cluster=true&limit=1");
    assert_eq!(status, 200, "{first}");
    assert_eq!(listed(&first), [("on-a".to_owned(), "n0".to_owned())]);
    assert_eq!(first["next_after"].as_str(), Some("on-a"));
    let (_, rest) = api(a, "GET", "/api/v1/clients?cluster=true&limit=1&after=on-a");
    assert_eq!(listed(&rest), [("on-b".to_owned(), "n1".to_owned())], "{rest}");
    let (status, _) = api(a, "GET", "/api/v1/clients?cluster=true&limit=5000");
    assert_eq!(status, 400);
    let printed = ctl(c, &["clients", "--cluster"]);
    let rows: Vec<Vec<&str>> = printed.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0].last(), Some(&"NODE"), "{printed}");
    assert!(rows.iter().any(|row| row[0] == "on-a" && row.last() == Some(&"n0")), "{printed}");
    assert!(rows.iter().any(|row| row[0] == "on-b" && row.last() == Some(&"n1")), "{printed}");

    // The members, as etcd lists them.
    let (status, cluster) = api(b, "GET", "/api/v1/cluster");
    assert_eq!(status, 200, "{cluster}");
    let members = cluster["members"].as_array().expect("members");
    let ids: Vec<&str> = members.iter().filter_map(|m| m["node"].as_str()).collect();
    assert_eq!(ids, ["n0", "n1", "n2"], "{cluster}");
    assert_eq!((cluster["node"].as_str(), cluster["etcd_ok"].as_bool()), (Some("n1"), Some(true)));
    let printed = ctl(b, &["cluster", "status"]);
    assert!(printed.contains("etcd         yes") && printed.contains("n1 (this)"), "{printed}");

    // Unknown everywhere: 404, every node having answered.
    let (status, missing) = api(b, "GET", "/api/v1/clients/nobody");
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["not_answered"], serde_json::json!([]), "{missing}");
    let (status, _) = api(b, "DELETE", "/api/v1/clients/nobody");
    assert_eq!(status, 404);

    // Kicked through another node: the owner disconnects it.
    let printed = ctl(b, &["kick", "on-a"]);
    assert_eq!(printed.trim(), "on-a: disconnected, session discarded (on node n0)");
    match on_a.expect_packet(Duration::from_secs(5)) {
        Packet::Disconnect(disconnect) => {
            assert_eq!(disconnect.reason, ReasonCode::ADMINISTRATIVE_ACTION)
        }
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    on_a.expect_closed(Duration::from_secs(5));
    let (status, gone) = api(c, "GET", "/api/v1/clients/on-a");
    assert_eq!(status, 404, "{gone}");
}

#[test]
fn a_node_that_does_not_answer_is_named_and_not_waited_for() {
    let etcd = EtcdProcess::start().unwrap_or_else(|error| panic!("{error}"));
    let mut nodes: Vec<Broker> =
        (0..3).map(|index| start_node(&etcd.endpoint(), "silent", index)).collect();
    let b = nodes[1].admin_address();
    let _on_a = connect(&nodes[0], "on-a", false);
    let _on_c = connect(&nodes[2], "on-c", false);
    wait_for_listing(b, &[("on-a", "n0"), ("on-c", "n2")]);

    // Stopped: its links stay open, but it answers nothing. Still a member (its lease is
    // 30 s), so it is asked, and named once the wait is over.
    nodes[2].signal(nix::sys::signal::Signal::SIGSTOP);
    let started = Instant::now();
    let (status, page) = api(b, "GET", "/api/v1/clients?cluster=true");
    assert!(started.elapsed() < ANSWER_WITHIN, "took {:?}", started.elapsed());
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["not_answered"], serde_json::json!(["n2"]), "{page}");
    assert_eq!(listed(&page), [("on-a".to_owned(), "n0".to_owned())], "{page}");
    // A client of a node that answers is found all the same, without waiting for the silent one.
    let started = Instant::now();
    let (status, detail) = api(b, "GET", "/api/v1/clients/on-a");
    assert_eq!((status, detail["node"].as_str()), (200, Some("n0")), "{detail}");
    assert!(started.elapsed() < ANSWER_WITHIN, "took {:?}", started.elapsed());

    // Killed: its links are down, so it is named at once.
    nodes[2].kill();
    let started = Instant::now();
    let (status, missing) = api(b, "GET", "/api/v1/clients/on-c");
    assert!(started.elapsed() < ANSWER_WITHIN, "took {:?}", started.elapsed());
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["not_answered"], serde_json::json!(["n2"]), "{missing}");
    let (status, page) = api(b, "GET", "/api/v1/clients?cluster=true");
    assert_eq!((status, page["not_answered"].clone()), (200, serde_json::json!(["n2"])), "{page}");
}

//! The control plane against a real etcd (started by each test; fails, saying how to install
//! etcd, when it is missing): start-up errors, claims and handover between two nodes, the
//! member view, transaction batching, an etcd outage, and a 3-member etcd cluster losing one
//! member.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use shardmq_cluster::control::{ControlConfig, ControlEvent, ControlPlane, Fence};
use shardmq_cluster::ownership::{Owner, OwnershipConfig, CLAIM_QUARANTINE};
use shardmq_cluster::testing::{EtcdCluster, EtcdProcess};
use shardmq_cluster::{ClaimOutcome, NodeId};

/// A short lease so a lost node leaves the member view quickly.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// A lease (the default) that outlives a short etcd outage or an etcd leader election (~1-2 s),
/// so claims meanwhile wait or time out (`Unavailable`) instead of being fenced (`Fenced`).
const LONG_LEASE_TTL: Duration = Duration::from_secs(6);
/// A short claim timeout so the outage test answers `Unavailable` quickly.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a test waits for something that should happen within a lease TTL or two.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Claim timeout while an etcd member dies: covers a leader election (~1-2 s by default).
const ELECTION_CLAIM_TIMEOUT: Duration = Duration::from_secs(5);
/// Claims issued by the batching test, all at once.
const BATCH_CLAIMS: usize = 1000;

/// A node's configuration for these tests: short lease and claim timeout, and no claim
/// quarantine (which holds every transaction back for ~2 s after etcd first answers). Tests that
/// cut etcd off use [`outage_config`] instead.
fn config(node: &str, endpoints: Vec<String>, link_port: u16) -> ControlConfig {
    let node = NodeId::new(node);
    let mut ownership = OwnershipConfig::new(node.clone());
    ownership.lease_ttl = LEASE_TTL;
    ownership.claim_timeout = CLAIM_TIMEOUT;
    ownership.claim_quarantine = Duration::ZERO;
    ControlConfig {
        cluster: "test".to_owned(),
        ownership,
        node,
        endpoints,
        link_advertise: SocketAddr::from(([127, 0, 0, 1], link_port)),
        connect_timeout: Duration::from_secs(5),
        access: Default::default(),
    }
}

/// [`config`] with the claim quarantine the core requires when etcd can be cut off.
fn outage_config(node: &str, endpoints: Vec<String>, link_port: u16) -> ControlConfig {
    let mut config = config(node, endpoints, link_port);
    config.ownership.claim_quarantine = CLAIM_QUARANTINE;
    config
}

/// Claims `client_id` until this node owns it (claims wait out the quarantine after etcd
/// answers again, and each answers `Unavailable` after the short claim timeout meanwhile; the
/// write of one of them may commit, making the next `AlreadyOwned`).
async fn claim_until_claimed(control: &ControlPlane, client_id: &str) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let outcome = control.claim(client_id).await;
        if matches!(outcome, ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned) {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < CONVERGE_TIMEOUT,
            "claim of {client_id} still {outcome:?} after {CONVERGE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn start(
    node: &str,
    endpoints: Vec<String>,
    link_port: u16,
) -> Result<(ControlPlane, Vec<async_channel::Receiver<ControlEvent>>)> {
    ControlPlane::start(config(node, endpoints, link_port), 2)
        .with_context(|| format!("start node {node}"))
}

/// Waits until `condition` holds, or fails after [`CONVERGE_TIMEOUT`] naming `what`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) -> Result<Duration> {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > CONVERGE_TIMEOUT {
            bail!("{what}: not within {CONVERGE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Ok(started.elapsed())
}

fn member_names(control: &ControlPlane) -> Vec<String> {
    control.members().iter().map(|member| member.node.to_string()).collect()
}

/// The store's current revision and the owner recorded for `client_id`, read directly.
async fn read_session(endpoint: &str, client_id: &str) -> Result<(i64, Option<Owner>)> {
    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    let response = client.get(format!("/shardmq/test/sessions/{client_id}"), None).await?;
    let revision = response.header().ok_or_else(|| anyhow!("no header"))?.revision();
    let owner = response
        .kvs()
        .first()
        .map(|kv| Owner::decode(kv.value()).ok_or_else(|| anyhow!("undecodable owner")))
        .transpose()?;
    Ok((revision, owner))
}

#[test]
fn start_up_fails_in_one_line_when_etcd_is_unreachable() -> Result<()> {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut config = config("a", vec![endpoint.clone()], 1);
    config.connect_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let error = match ControlPlane::start(config, 1) {
        Ok((control, _)) => {
            control.shutdown();
            bail!("start-up succeeded without etcd");
        }
        Err(error) => error.to_string(),
    };
    let elapsed = started.elapsed();
    ensure!(!error.contains('\n'), "error spans lines: {error:?}");
    ensure!(error.contains(&endpoint), "error does not name {endpoint}: {error}");
    ensure!(elapsed < Duration::from_secs(3), "start-up took {elapsed:?} to fail");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_id_cannot_start_twice() -> Result<()> {
    let etcd = EtcdProcess::start()?;
    let (a, _events) = start("a", vec![etcd.endpoint()], 1)?;
    let error = match ControlPlane::start(config("a", vec![etcd.endpoint()], 2), 1) {
        Ok((second, _)) => {
            second.shutdown();
            bail!("a second node a started");
        }
        Err(error) => error.to_string(),
    };
    ensure!(!error.contains('\n'), "error spans lines: {error:?}");
    ensure!(error.contains("already registered"), "unexpected error: {error}");
    ensure!(member_names(&a) == ["a"], "the first a lost its registration");
    // After a clean shutdown the id is free at once.
    a.shutdown();
    let (again, _events) = start("a", vec![etcd.endpoint()], 1)?;
    again.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_handover_between_two_nodes() -> Result<()> {
    let etcd = EtcdProcess::start()?;
    let (a, _a_events) = start("a", vec![etcd.endpoint()], 1)?;
    let (b, _b_events) = start("b", vec![etcd.endpoint()], 2)?;
    ensure!(a.fence().may_serve(Instant::now()), "a is fenced after start");
    ensure!(a.etcd_ok(), "a does not report etcd ok");

    assert_eq!(a.claim("c1").await, ClaimOutcome::Claimed);
    let (revision, owner) = read_session(&etcd.endpoint(), "c1").await?;
    ensure!(owner.map(|owner| owner.node) == Some(NodeId::new("a")));

    // The owner claiming again writes nothing.
    let txns = a.stats().txns;
    assert_eq!(a.claim("c1").await, ClaimOutcome::AlreadyOwned);
    ensure!(a.stats().txns == txns, "an AlreadyOwned claim ran a transaction");
    let (revision_after, _) = read_session(&etcd.endpoint(), "c1").await?;
    ensure!(revision_after == revision, "etcd's revision moved: {revision} -> {revision_after}");

    // Another node finds the owner, which hands the client over.
    let ClaimOutcome::HeldBy { owner, revision } = b.claim("c1").await else {
        bail!("b's claim of a's client was not HeldBy");
    };
    ensure!(owner == NodeId::new("a"), "held by {owner}, not a");
    a.handed_over("c1");
    assert_eq!(b.claim_after_release("c1", revision).await, ClaimOutcome::Claimed);
    let (_, owner) = read_session(&etcd.endpoint(), "c1").await?;
    ensure!(owner.map(|owner| owner.node) == Some(NodeId::new("b")));

    a.shutdown();
    b.shutdown();
    ensure!(!a.fence().may_serve(Instant::now()), "a serves after shutdown");
    assert_eq!(a.claim("c2").await, ClaimOutcome::Unavailable);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_view_follows_nodes() -> Result<()> {
    let etcd = EtcdProcess::start()?;
    let (a, a_events) = start("a", vec![etcd.endpoint()], 1)?;
    let (b, _b_events) = start("b", vec![etcd.endpoint()], 2)?;
    eventually("a sees a and b", || member_names(&a) == ["a", "b"]).await?;
    eventually("b sees a and b", || member_names(&b) == ["a", "b"]).await?;
    let b_member = a.members().iter().find(|m| m.node.as_str() == "b").cloned();
    ensure!(
        b_member.map(|member| member.link) == Some(SocketAddr::from(([127, 0, 0, 1], 2))),
        "b's link address did not round-trip"
    );

    // Every shard's channel got the view as events.
    for events in &a_events {
        let mut latest = None;
        while let Ok(event) = events.try_recv() {
            if let ControlEvent::Members(members) = event {
                latest = Some(members);
            }
        }
        let names: Vec<String> = latest
            .ok_or_else(|| anyhow!("no Members event"))?
            .iter()
            .map(|member| member.node.to_string())
            .collect();
        ensure!(names == ["a", "b"], "latest Members event: {names:?}");
    }

    b.shutdown();
    let gone = eventually("a drops b", || member_names(&a) == ["a"]).await?;
    ensure!(gone < LEASE_TTL, "b left the view {gone:?} after its shutdown");
    a.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_are_batched() -> Result<()> {
    let etcd = EtcdProcess::start()?;
    let (a, _events) = start("a", vec![etcd.endpoint()], 1)?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..BATCH_CLAIMS)
        .map(|index| {
            let a = a.clone();
            tokio::spawn(async move { a.claim(&format!("client-{index}")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await?, ClaimOutcome::Claimed);
    }
    let elapsed = started.elapsed();
    let stats = a.stats();
    println!(
        "{BATCH_CLAIMS} concurrent claims in {elapsed:?} ({:.0} claims/s) in {} transactions \
         ({} ops)",
        BATCH_CLAIMS as f64 / elapsed.as_secs_f64(),
        stats.txns,
        stats.txn_ops
    );
    ensure!(stats.claims == BATCH_CLAIMS as u64);
    ensure!(
        stats.txns <= (BATCH_CLAIMS / 10) as u64,
        "{} transactions for {BATCH_CLAIMS} claims",
        stats.txns
    );
    a.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_makes_claims_unavailable_until_it_returns() -> Result<()> {
    let mut etcd = EtcdProcess::start()?;
    let mut config = outage_config("a", vec![etcd.endpoint()], 1);
    config.ownership.lease_ttl = LONG_LEASE_TTL;
    let (a, _events) = ControlPlane::start(config, 2)?;
    claim_until_claimed(&a, "before").await?;

    etcd.stop();
    let started = Instant::now();
    assert_eq!(a.claim("during").await, ClaimOutcome::Unavailable);
    let waited = started.elapsed();
    ensure!(
        waited >= CLAIM_TIMEOUT.mul_f32(0.9) && waited < CLAIM_TIMEOUT * 3,
        "Unavailable after {waited:?}, claim timeout {CLAIM_TIMEOUT:?}"
    );

    etcd.restart()?;
    let again = claim_until_claimed(&a, "after").await?;
    println!("claims work again {again:?} after etcd restarted");
    ensure!(a.etcd_ok(), "etcd_ok is false after etcd came back");
    a.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_lease_fences_then_serves_again() -> Result<()> {
    let mut etcd = EtcdProcess::start()?;
    let (a, events) = ControlPlane::start(outage_config("a", vec![etcd.endpoint()], 1), 2)?;
    claim_until_claimed(&a, "before").await?;
    let fence = a.fence();

    etcd.stop();
    let fenced = eventually("a fences itself", || !fence.may_serve(Instant::now())).await?;
    ensure!(fenced <= LEASE_TTL + POLL_INTERVAL * 5, "fenced {fenced:?} after etcd died");
    eventually("etcd_ok turns false", || !a.etcd_ok()).await?;

    etcd.restart()?;
    let serving = eventually("a serves again", || fence.may_serve(Instant::now())).await?;
    println!("serving again {serving:?} after etcd restarted");
    ensure!(a.etcd_ok(), "etcd_ok is false while serving");
    // etcd kept the lease through its restart (a new leader renews every lease): the node
    // serves again under it, and the claim made before still stands.
    claim_until_claimed(&a, "before").await?;
    eventually("a is a member again", || member_names(&a) == ["a"]).await?;
    let members = a.members();
    let (_, owner) = read_session(&etcd.endpoint(), "before").await?;
    ensure!(
        owner.map(|owner| owner.lease) == Some(members[0].lease),
        "the claim is not under the registered lease"
    );

    // Every shard saw the fencing and the return, in that order.
    for shard in &events {
        let mut fence_events = Vec::new();
        while let Ok(event) = shard.try_recv() {
            match event {
                ControlEvent::Fenced => fence_events.push("fenced"),
                ControlEvent::Serving { new_lease: false } => fence_events.push("serving"),
                ControlEvent::Serving { new_lease: true } => fence_events.push("new lease"),
                ControlEvent::Members(_) => {}
            }
        }
        let last_fenced = fence_events.iter().rposition(|event| *event == "fenced");
        let last_serving = fence_events.iter().rposition(|event| *event == "serving");
        ensure!(
            matches!((last_fenced, last_serving), (Some(f), Some(s)) if f < s),
            "fence events seen by a shard: {fence_events:?}"
        );
    }
    a.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_survive_losing_one_of_three_etcd_members() -> Result<()> {
    let mut etcd = EtcdCluster::start(3)?;
    let mut a_config = config("a", etcd.endpoints(), 1);
    a_config.ownership.claim_timeout = ELECTION_CLAIM_TIMEOUT;
    a_config.ownership.lease_ttl = LONG_LEASE_TTL;
    let (a, _events) = ControlPlane::start(a_config, 2)?;
    assert_eq!(a.claim("c0").await, ClaimOutcome::Claimed);
    etcd.kill(0);
    for index in 1..=5 {
        let client = format!("c{index}");
        let started = Instant::now();
        let outcome = a.claim(&client).await;
        println!("{client} after the kill: {outcome:?} in {:?}", started.elapsed());
        ensure!(outcome == ClaimOutcome::Claimed, "{client} after a member died: {outcome:?}");
    }
    // The member watch still works: a node that joins now shows up.
    let (b, _b_events) = start("b", etcd.endpoints(), 2)?;
    eventually("a sees b", || member_names(&a) == ["a", "b"]).await?;
    ensure!(a.fence().may_serve(Instant::now()), "a fenced itself");
    b.shutdown();
    a.shutdown();
    Ok(())
}

/// `ControlPlane` is shared by every shard.
#[test]
fn control_plane_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<ControlPlane>();
    check::<Arc<Fence>>();
}

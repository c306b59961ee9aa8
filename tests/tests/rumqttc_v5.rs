//! MQTT 5.0 through rumqttc (`rumqttc::v5::`): publish/subscribe at each QoS between shards,
//! persistent sessions with an expiry interval, session takeover, shared subscriptions,
//! subscription identifiers and No Local.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Filter, Packet, Publish, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use rumqttc::Outgoing;
use shardmq_io::codec::{Packet as RawPacket, ProtocolVersion, ReasonCode};
use shardmq_tests::{client_id_on_shard, connect_packet, Broker, RawClient, Received};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::{timeout_at, Instant};

/// How long a test waits for something the broker should do at once.
const WAIT: Duration = Duration::from_secs(5);
/// How long a test watches for a message that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// A rumqttc v5 client whose event loop runs in a task until its first connection error; the
/// test reads the events from a channel.
struct Client {
    client: AsyncClient,
    events: UnboundedReceiver<Result<Event, ConnectionError>>,
    /// PUBLISHes that arrived while the test waited for something else.
    publishes: VecDeque<Publish>,
}

impl Client {
    /// Connects with a clean start and returns once the CONNACK is in.
    async fn connect(broker: &Broker, id: &str) -> (Client, ConnAck) {
        Client::connect_with(broker, id, |_| {}).await
    }

    async fn connect_with(
        broker: &Broker,
        id: &str,
        configure: impl FnOnce(&mut MqttOptions),
    ) -> (Client, ConnAck) {
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
        options.set_keep_alive(Duration::from_secs(30));
        configure(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (sender, events) = unbounded_channel();
        // Stops at the first error rather than letting rumqttc reconnect behind the test's back.
        tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    return;
                }
            }
        });
        let mut client = Client { client, events, publishes: VecDeque::new() };
        let connack = client
            .wait_for("CONNACK", |event| match event {
                Event::Incoming(Packet::ConnAck(connack)) => Some(connack.clone()),
                _ => None,
            })
            .await;
        assert_eq!(connack.code, ConnectReturnCode::Success, "{connack:?}");
        (client, connack)
    }

    /// Reads events until `pick` returns something, keeping PUBLISHes it does not take.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = match timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("no {what} within {WAIT:?}"),
                Ok(None) => panic!("the event loop ended while waiting for {what}"),
                Ok(Some(Err(error))) => {
                    panic!("connection failed while waiting for {what}: {error}")
                }
                Ok(Some(Ok(event))) => event,
            };
            if let Some(found) = pick(&event) {
                return found;
            }
            if let Event::Incoming(Packet::Publish(publish)) = event {
                self.publishes.push_back(publish);
            }
        }
    }

    /// Subscribes to `filters` in one SUBSCRIBE, with a Subscription Identifier if `id` is
    /// given, and checks every filter was granted.
    async fn subscribe_with(&mut self, filters: Vec<Filter>, id: Option<usize>) {
        let expected: Vec<SubscribeReasonCode> =
            filters.iter().map(|filter| SubscribeReasonCode::Success(filter.qos)).collect();
        let queued = match id {
            Some(id) => {
                let properties = SubscribeProperties { id: Some(id), user_properties: Vec::new() };
                self.client.subscribe_many_with_properties(filters, properties).await
            }
            None => self.client.subscribe_many(filters).await,
        };
        queued.expect("queue SUBSCRIBE");
        let codes = self
            .wait_for("SUBACK", |event| match event {
                Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, expected);
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.subscribe_with(vec![Filter::new(filter, qos)], None).await;
    }

    /// Publishes and waits until the broker acknowledged it (QoS 1/2) or it was written (QoS 0).
    async fn publish(&mut self, topic: &str, qos: QoS, payload: &str) {
        self.client.publish(topic, qos, false, payload.to_string()).await.expect("queue PUBLISH");
        self.wait_for("the publish's acknowledgement", |event| match (qos, event) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
            | (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_)))
            | (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
            _ => None,
        })
        .await;
    }

    async fn next_publish(&mut self) -> Publish {
        if let Some(publish) = self.publishes.pop_front() {
            return publish;
        }
        self.wait_for("PUBLISH", |event| match event {
            Event::Incoming(Packet::Publish(publish)) => Some(publish.clone()),
            _ => None,
        })
        .await
    }

    /// Every PUBLISH that arrives until none has for [`QUIET`].
    async fn publishes_until_quiet(&mut self) -> Vec<Publish> {
        let mut got: Vec<Publish> = self.publishes.drain(..).collect();
        while let Ok(Some(event)) = timeout_at(Instant::now() + QUIET, self.events.recv()).await {
            if let Ok(Event::Incoming(Packet::Publish(publish))) = event {
                got.push(publish);
            }
        }
        got
    }

    /// Sends DISCONNECT and waits until the broker closed the connection.
    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("the connection stayed open {WAIT:?} after DISCONNECT"),
                Ok(None | Some(Err(_))) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

fn payload(publish: &Publish) -> &str {
    std::str::from_utf8(&publish.payload).expect("utf-8 payload")
}

fn topic(publish: &Publish) -> &str {
    std::str::from_utf8(&publish.topic).expect("utf-8 topic")
}

#[tokio::test]
async fn publish_and_subscribe_at_qos_0_1_2_across_shards() {
    let broker = Broker::start(&[]);
    let (mut subscriber, _) = Client::connect(&broker, &client_id_on_shard("sub", 1)).await;
    let (mut publisher, _) = Client::connect(&broker, &client_id_on_shard("pub", 0)).await;
    subscriber.subscribe("qos/+", QoS::ExactlyOnce).await;
    for (qos, name) in
        [(QoS::AtMostOnce, "qos/0"), (QoS::AtLeastOnce, "qos/1"), (QoS::ExactlyOnce, "qos/2")]
    {
        publisher.publish(name, qos, name).await;
        let got = subscriber.next_publish().await;
        assert_eq!((topic(&got), payload(&got), got.qos), (name, name, qos));
    }
    assert!(subscriber.publishes_until_quiet().await.is_empty());
}

#[tokio::test]
async fn persistent_session_with_expiry_gets_qos1_messages_published_while_offline() {
    let broker = Broker::start(&[]);
    let id = client_id_on_shard("persistent", 1);
    let persistent = |options: &mut MqttOptions| {
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(60));
    };
    let (mut subscriber, connack) = Client::connect_with(&broker, &id, persistent).await;
    assert!(!connack.session_present);
    subscriber.subscribe("offline/#", QoS::AtLeastOnce).await;
    subscriber.disconnect().await;

    let (mut publisher, _) = Client::connect(&broker, &client_id_on_shard("pub", 0)).await;
    publisher.publish("offline/1", QoS::AtLeastOnce, "one").await;
    publisher.publish("offline/2", QoS::AtLeastOnce, "two").await;

    let (mut subscriber, connack) = Client::connect_with(&broker, &id, persistent).await;
    assert!(connack.session_present, "{connack:?}");
    let first = subscriber.next_publish().await;
    let second = subscriber.next_publish().await;
    assert_eq!([payload(&first), payload(&second)], ["one", "two"]);
    assert_eq!((first.qos, second.qos), (QoS::AtLeastOnce, QoS::AtLeastOnce));
}

#[tokio::test]
async fn takeover_disconnects_the_first_client_with_0x8e() {
    let broker = Broker::start(&[]);
    // The first client is raw: the broker writes this DISCONNECT as `e0 01 8e` (no Property
    // Length, as MQTT-3.14.2.2.1 allows and mosquitto does), which rumqttc 0.25 cannot parse; it
    // reports the connection as aborted instead of the reason code.
    let (mut first, connack) =
        RawClient::connect(broker.addr(), connect_packet(ProtocolVersion::V5, "same-id"));
    assert_eq!(connack.reason, ReasonCode::SUCCESS, "{connack:?}");
    let (_second, _) = Client::connect(&broker, "same-id").await;
    let got = tokio::task::spawn_blocking(move || (first.next(WAIT), first.next(WAIT)))
        .await
        .expect("read the first connection");
    match got {
        (Received::Packet(RawPacket::Disconnect(disconnect)), Received::Closed) => {
            assert_eq!(disconnect.reason, ReasonCode::SESSION_TAKEN_OVER, "{disconnect:?}")
        }
        other => panic!("expected DISCONNECT 0x8E (Session taken over) then close, got {other:?}"),
    }
}

#[tokio::test]
async fn shared_subscription_delivers_each_message_to_exactly_one_member() {
    let broker = Broker::start(&[]);
    let mut members = Vec::new();
    for shard in 0..2 {
        let (mut member, _) = Client::connect(&broker, &client_id_on_shard("member", shard)).await;
        member.subscribe("$share/g/jobs", QoS::AtLeastOnce).await;
        members.push(member);
    }
    let (mut publisher, _) = Client::connect(&broker, "dispatcher").await;
    let sent: Vec<String> = (0..20).map(|i| format!("job-{i}")).collect();
    for job in &sent {
        publisher.publish("jobs", QoS::AtLeastOnce, job).await;
    }
    let mut received = Vec::new();
    let mut counts = Vec::new();
    for member in &mut members {
        let got = member.publishes_until_quiet().await;
        counts.push(got.len());
        received.extend(got.iter().map(|p| payload(p).to_string()));
    }
    received.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(received, expected, "each message exactly once across the group");
    assert!(counts.iter().all(|&count| count > 0), "spread over the members: {counts:?}");
}

#[tokio::test]
async fn subscription_identifiers_come_back_on_each_matching_delivery() {
    let broker = Broker::start(&[]);
    let (mut subscriber, _) = Client::connect(&broker, &client_id_on_shard("ids", 0)).await;
    subscriber.subscribe_with(vec![Filter::new("ids/#", QoS::AtMostOnce)], Some(7)).await;
    subscriber.subscribe_with(vec![Filter::new("ids/+/x", QoS::AtLeastOnce)], Some(42)).await;
    let (mut publisher, _) = Client::connect(&broker, &client_id_on_shard("pub", 1)).await;

    publisher.publish("ids/a/x", QoS::AtLeastOnce, "both").await;
    let got = subscriber.next_publish().await;
    let ids: BTreeSet<usize> =
        got.properties.iter().flat_map(|p| p.subscription_identifiers.clone()).collect();
    assert_eq!(ids, BTreeSet::from([7, 42]), "{got:?}");
    assert_eq!(got.qos, QoS::AtLeastOnce, "the highest QoS of the overlapping subscriptions");

    publisher.publish("ids/b", QoS::AtLeastOnce, "one").await;
    let got = subscriber.next_publish().await;
    let ids: Vec<usize> =
        got.properties.iter().flat_map(|p| p.subscription_identifiers.clone()).collect();
    assert_eq!(ids, [7], "{got:?}");
    assert!(subscriber.publishes_until_quiet().await.is_empty());
}

#[tokio::test]
async fn no_local_keeps_a_client_from_getting_its_own_messages() {
    let broker = Broker::start(&[]);
    let (mut me, _) = Client::connect(&broker, &client_id_on_shard("me", 0)).await;
    let (mut other, _) = Client::connect(&broker, &client_id_on_shard("other", 1)).await;
    let mut no_local = Filter::new("chat", QoS::AtLeastOnce);
    no_local.nolocal = true;
    me.subscribe_with(vec![no_local], None).await;
    other.subscribe("chat", QoS::AtLeastOnce).await;

    me.publish("chat", QoS::AtLeastOnce, "from me").await;
    other.publish("chat", QoS::AtLeastOnce, "from other").await;
    // The other client gets both (so both were routed); mine comes back to me only from it.
    let mut got: Vec<String> =
        other.publishes_until_quiet().await.iter().map(|p| payload(p).to_string()).collect();
    got.sort();
    assert_eq!(got, ["from me", "from other"]);
    let mine: Vec<String> =
        me.publishes_until_quiet().await.iter().map(|p| payload(p).to_string()).collect();
    assert_eq!(mine, ["from other"]);
}

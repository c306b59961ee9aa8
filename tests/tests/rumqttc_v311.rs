//! MQTT 3.1.1 through rumqttc (`rumqttc::`): publish/subscribe at each QoS between shards,
//! retained messages, wills, and persistent sessions.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions,
    Outgoing, Packet, Publish, QoS, SubscribeReasonCode,
};
use shardmq_tests::{client_id_on_shard, Broker};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

/// How long a test waits for something the broker should do at once.
const WAIT: Duration = Duration::from_secs(5);
/// How long a test watches for a message that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// A rumqttc client whose event loop runs in a task until its first connection error; the test
/// reads the events from a channel.
struct Client {
    client: AsyncClient,
    events: UnboundedReceiver<Result<Event, ConnectionError>>,
    poller: JoinHandle<()>,
    /// PUBLISHes that arrived while the test waited for something else.
    publishes: VecDeque<Publish>,
}

impl Client {
    /// Connects with a clean session and returns once the CONNACK is in.
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
        let poller = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    return;
                }
            }
        });
        let mut client = Client { client, events, poller, publishes: VecDeque::new() };
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

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.expect("queue SUBSCRIBE");
        let codes = self
            .wait_for("SUBACK", |event| match event {
                Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, [SubscribeReasonCode::Success(qos)], "SUBACK for {filter}");
    }

    /// Publishes and waits until the broker acknowledged it (QoS 1/2) or it was written (QoS 0).
    async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &str) {
        self.client.publish(topic, qos, retain, payload).await.expect("queue PUBLISH");
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

    /// Panics if a PUBLISH arrives within [`QUIET`].
    async fn expect_no_publish(&mut self) {
        assert!(self.publishes.is_empty(), "unexpected {:?}", self.publishes);
        let deadline = Instant::now() + QUIET;
        while let Ok(Some(event)) = timeout_at(deadline, self.events.recv()).await {
            if let Ok(Event::Incoming(Packet::Publish(publish))) = event {
                panic!("unexpected {publish:?}");
            }
        }
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

    /// Drops the TCP connection without DISCONNECT, as a crashed client would.
    async fn drop_connection(self) {
        self.poller.abort();
        let _ = self.poller.await;
    }
}

fn payload(publish: &Publish) -> &str {
    std::str::from_utf8(&publish.payload).expect("utf-8 payload")
}

#[tokio::test]
async fn publish_and_subscribe_at_qos_0_1_2_across_shards() {
    let broker = Broker::start(&[]);
    let (mut subscriber, _) = Client::connect(&broker, &client_id_on_shard("sub", 0)).await;
    let (mut publisher, _) = Client::connect(&broker, &client_id_on_shard("pub", 1)).await;
    subscriber.subscribe("qos/+", QoS::ExactlyOnce).await;
    for (qos, topic) in
        [(QoS::AtMostOnce, "qos/0"), (QoS::AtLeastOnce, "qos/1"), (QoS::ExactlyOnce, "qos/2")]
    {
        publisher.publish(topic, qos, false, topic).await;
        let got = subscriber.next_publish().await;
        assert_eq!((got.topic.as_str(), payload(&got), got.qos), (topic, topic, qos));
        assert!(!got.retain);
    }
    subscriber.expect_no_publish().await;
}

#[tokio::test]
async fn retained_message_reaches_a_later_subscriber_until_an_empty_one_deletes_it() {
    let broker = Broker::start(&[]);
    let (mut publisher, _) = Client::connect(&broker, "retainer").await;
    publisher.publish("retained/a", QoS::AtLeastOnce, true, "kept").await;

    let (mut first, _) = Client::connect(&broker, "first-reader").await;
    first.subscribe("retained/#", QoS::AtLeastOnce).await;
    let got = first.next_publish().await;
    assert_eq!((got.topic.as_str(), payload(&got)), ("retained/a", "kept"));
    assert!(got.retain, "a retained message sent at subscribe time has RETAIN set");

    publisher.publish("retained/a", QoS::AtLeastOnce, true, "").await;
    // A live subscriber still gets the empty message; later subscribers get nothing.
    let got = first.next_publish().await;
    assert_eq!(payload(&got), "");
    let (mut second, _) = Client::connect(&broker, "second-reader").await;
    second.subscribe("retained/#", QoS::AtLeastOnce).await;
    second.expect_no_publish().await;
}

#[tokio::test]
async fn will_is_published_when_the_connection_drops_not_after_disconnect() {
    let broker = Broker::start(&[]);
    let (mut watcher, _) = Client::connect(&broker, &client_id_on_shard("watcher", 0)).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    let with_will = |id: &str| {
        let will = LastWill::new(format!("will/{id}"), "gone", QoS::AtLeastOnce, false);
        move |options: &mut MqttOptions| {
            options.set_last_will(will);
        }
    };

    let polite = client_id_on_shard("polite", 1);
    let (client, _) = Client::connect_with(&broker, &polite, with_will(&polite)).await;
    client.disconnect().await;
    let crashed = client_id_on_shard("crashed", 1);
    let (client, _) = Client::connect_with(&broker, &crashed, with_will(&crashed)).await;
    client.drop_connection().await;

    let got = watcher.next_publish().await;
    assert_eq!((got.topic.as_str(), payload(&got)), (format!("will/{crashed}").as_str(), "gone"));
    watcher.expect_no_publish().await;
}

#[tokio::test]
async fn persistent_session_gets_qos1_messages_published_while_offline() {
    let broker = Broker::start(&[]);
    let id = client_id_on_shard("persistent", 0);
    let persistent = |options: &mut MqttOptions| {
        options.set_clean_session(false);
    };
    let (mut subscriber, connack) = Client::connect_with(&broker, &id, persistent).await;
    assert!(!connack.session_present);
    subscriber.subscribe("offline/#", QoS::AtLeastOnce).await;
    subscriber.disconnect().await;

    let (mut publisher, _) = Client::connect(&broker, &client_id_on_shard("pub", 1)).await;
    publisher.publish("offline/1", QoS::AtLeastOnce, false, "one").await;
    publisher.publish("offline/2", QoS::AtLeastOnce, false, "two").await;

    let (mut subscriber, connack) = Client::connect_with(&broker, &id, persistent).await;
    assert!(connack.session_present, "{connack:?}");
    let first = subscriber.next_publish().await;
    let second = subscriber.next_publish().await;
    assert_eq!([payload(&first), payload(&second)], ["one", "two"]);
    assert_eq!((first.qos, second.qos), (QoS::AtLeastOnce, QoS::AtLeastOnce));
}

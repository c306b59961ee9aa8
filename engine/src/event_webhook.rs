//! The event webhook (`event_webhook_url`): the client events the shards have (connected,
//! disconnected, subscribed, unsubscribed; `shardmq_shard::ClientEvent`) POSTed as JSON arrays
//! with EMQX's webhook field names, so that services written for EMQX's webhook read them.
//!
//! Shards never wait for it. Each shard's sink copies the event and hands it over with
//! `try_send` on one bounded channel per node (`event_webhook_queue_max` events); when the
//! channel is full the event is dropped and counted. One thread of the node takes the events
//! off, a batch at a time (`event_webhook_batch_max` events, or what came within
//! `event_webhook_batch_delay_ms` of the batch's first), and POSTs it with `ureq` (blocking,
//! rustls for https://, no redirects), one request in flight. A 5xx, a 429, a timeout or a
//! connection error is retried [`RETRIES`] times with a doubling backoff; past them, or on any
//! other status, the batch is given up and counted as failed. Failures are logged as warnings,
//! at most one line per [`crate::auth_http::ERROR_LOG_EVERY`].
//!
//! What it promises: at most once, in the order each shard had the events (a client's events
//! come from its home shard, so they are in order). Nothing is stored: what is queued when the
//! node stops is lost.

use std::io::Read;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardmq_shard::{ClientEvent, EventKind, EventSink};

use crate::auth_http::ErrorLog;
use crate::config::EventWebhookConfig;
use crate::metrics::WebhookCounters;

/// How long one POST may take (connecting included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// POSTs of a batch after its first, when the service answers 5xx or 429 or cannot be reached.
pub const RETRIES: u32 = 3;
/// The wait before the first retry; each next one waits twice as long (0.5 s, 1 s, 2 s).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Bytes of an answer read at most (it is read only so that the connection can be reused).
const ANSWER_BYTES_MAX: u64 = 64 * 1024;

/// One event as it waits for its POST: what the shard's borrowed event said, copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueuedEvent {
    client_id: String,
    username: Option<String>,
    peer: Option<IpAddr>,
    unix_ms: u64,
    kind: Kind,
}

/// [`EventKind`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Connected { proto_ver: u8, keepalive_secs: u16, clean_start: bool, expiry_secs: u32 },
    Disconnected { reason: &'static str, reason_code: Option<u8> },
    Subscribed { topic: String, qos: u8 },
    Unsubscribed { topic: String },
}

impl QueuedEvent {
    fn new(event: &ClientEvent<'_>) -> QueuedEvent {
        let kind = match event.kind {
            EventKind::Connected { proto_ver, keepalive_secs, clean_start, expiry_secs } => {
                Kind::Connected { proto_ver, keepalive_secs, clean_start, expiry_secs }
            }
            EventKind::Disconnected { reason, reason_code } => {
                Kind::Disconnected { reason, reason_code }
            }
            EventKind::Subscribed { topic, qos } => Kind::Subscribed { topic: topic.into(), qos },
            EventKind::Unsubscribed { topic } => Kind::Unsubscribed { topic: topic.into() },
        };
        QueuedEvent {
            client_id: event.client_id.to_owned(),
            username: event.username.map(str::to_owned),
            peer: event.peer,
            unix_ms: event.unix_ms,
            kind,
        }
    }

    /// The event's JSON object, as EMQX's webhook names its fields (`peerhost` and `username`
    /// are `null` when unknown).
    fn to_json(&self, node: &str) -> Value {
        let mut object = json!({
            "clientid": self.client_id,
            "username": self.username,
            "peerhost": self.peer.map(|ip| ip.to_string()),
            "timestamp": self.unix_ms,
            "node": node,
        });
        let extra = match &self.kind {
            Kind::Connected { proto_ver, keepalive_secs, clean_start, expiry_secs } => json!({
                "event": "client.connected",
                "proto_ver": proto_ver,
                "keepalive": keepalive_secs,
                "clean_start": clean_start,
                "expiry_interval": expiry_secs,
            }),
            Kind::Disconnected { reason, reason_code } => json!({
                "event": "client.disconnected",
                "reason": reason,
                "reason_code": reason_code,
            }),
            Kind::Subscribed { topic, qos } => {
                json!({ "event": "session.subscribed", "topic": topic, "qos": qos })
            }
            Kind::Unsubscribed { topic } => {
                json!({ "event": "session.unsubscribed", "topic": topic })
            }
        };
        if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
            object.extend(extra);
        }
        object
    }
}

/// The shards' end of the queue: cloned into each shard's sink.
#[derive(Debug, Clone)]
pub(crate) struct WebhookQueue {
    sender: SyncSender<QueuedEvent>,
    counters: Arc<WebhookCounters>,
}

impl WebhookQueue {
    /// A sink for a shard's client events: each is queued if there is room, else counted as
    /// dropped. Never blocks.
    pub(crate) fn sink(self) -> EventSink {
        Box::new(move |event| self.push(QueuedEvent::new(event)))
    }

    fn push(&self, event: QueuedEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            // Disconnected: the sender thread is gone (it panicked); the event is lost all the
            // same, and counted.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the webhook's thread: the queue the shards hand events to, and its counters.
pub(crate) fn start(
    config: &EventWebhookConfig,
) -> anyhow::Result<(WebhookQueue, Arc<WebhookCounters>)> {
    let (sender, receiver) = mpsc::sync_channel(config.queue_max);
    let counters = Arc::new(WebhookCounters::default());
    let poster = Poster::new(config, counters.clone());
    let batching = Batching { max: config.batch_max, delay: config.batch_delay };
    std::thread::Builder::new()
        .name("event-webhook".into())
        .spawn(move || run(&receiver, batching, poster))?;
    tracing::info!("client events POSTed to {}", config.url);
    Ok((WebhookQueue { sender, counters: counters.clone() }, counters))
}

/// How events are gathered into a POST.
#[derive(Debug, Clone, Copy)]
struct Batching {
    max: usize,
    delay: Duration,
}

/// The webhook thread: batches until every shard's sink is gone (the node stops).
fn run(receiver: &Receiver<QueuedEvent>, batching: Batching, mut poster: Poster) {
    let mut batch = Vec::with_capacity(batching.max);
    while let Some(open) = next_batch(receiver, batching, &mut batch) {
        poster.deliver(&batch);
        batch.clear();
        if !open {
            return;
        }
    }
}

/// Waits for an event, then gathers more until the batch is full or `batching.delay` has passed
/// since the first. `None` when no event will come again; `Some(false)` with a last batch.
fn next_batch(
    receiver: &Receiver<QueuedEvent>,
    batching: Batching,
    batch: &mut Vec<QueuedEvent>,
) -> Option<bool> {
    batch.push(receiver.recv().ok()?);
    let deadline = Instant::now() + batching.delay;
    while batch.len() < batching.max {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(event) => batch.push(event),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Some(false),
        }
    }
    Some(true)
}

/// Why a POST failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    why: String,
    retry: bool,
}

/// What sends the batches: the URL, a client, the counters and the failure log.
struct Poster {
    url: String,
    node: String,
    agent: ureq::Agent,
    counters: Arc<WebhookCounters>,
    errors: ErrorLog,
    /// Events dropped with the failures not logged since the last line.
    unlogged_events: u64,
}

impl Poster {
    fn new(config: &EventWebhookConfig, counters: Arc<WebhookCounters>) -> Poster {
        // No redirects: events name clients and users, and go only where the operator said.
        let agent = ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).redirects(0).build();
        Poster {
            url: config.url.clone(),
            node: config.node.clone(),
            agent,
            counters,
            errors: ErrorLog::default(),
            unlogged_events: 0,
        }
    }

    /// POSTs `batch`, retrying what may pass later, and counts how it went.
    fn deliver(&mut self, batch: &[QueuedEvent]) {
        let events: Vec<Value> = batch.iter().map(|event| event.to_json(&self.node)).collect();
        let body = Value::Array(events).to_string();
        let count = batch.len() as u64;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0..=RETRIES {
            let failure = match self.post(&body) {
                Ok(()) => {
                    self.counters.sent.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                Err(failure) => failure,
            };
            if failure.retry && attempt < RETRIES {
                self.warn(&format!("{}; retrying in {} ms", failure.why, backoff.as_millis()), 0);
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff);
                backoff *= 2;
                continue;
            }
            self.counters.failed.fetch_add(count, Ordering::Relaxed);
            self.warn(&format!("{}; {count} events dropped", failure.why), count);
            return;
        }
    }

    fn post(&self, body: &str) -> Result<(), Failure> {
        let response =
            self.agent.post(&self.url).set("Content-Type", "application/json").send_string(body);
        let response = match response {
            Ok(response) => response,
            Err(ureq::Error::Status(status, _)) => return Err(status_failure(status)),
            Err(ureq::Error::Transport(error)) => {
                return Err(Failure { why: error.to_string(), retry: true })
            }
        };
        let status = response.status();
        // Read (a bounded part of) the answer so that the connection is reused.
        let _ =
            std::io::copy(&mut response.into_reader().take(ANSWER_BYTES_MAX), &mut std::io::sink());
        match status {
            200..=299 => Ok(()),
            status => Err(status_failure(status)),
        }
    }

    /// A warning line, rate-limited; `dropped` events went with this failure.
    fn warn(&mut self, what: &str, dropped: u64) {
        let Some(more) = self.errors.note(Instant::now()) else {
            self.unlogged_events += dropped;
            return;
        };
        let events = std::mem::take(&mut self.unlogged_events);
        if more == 0 {
            tracing::warn!("event_webhook_url {} failed: {what}", self.url);
        } else {
            tracing::warn!(
                "event_webhook_url {} failed: {what} ({more} more failures since the last line, \
                 {events} events dropped with them)",
                self.url
            );
        }
    }
}

/// A status that is not 2xx: the service's trouble (5xx) and its asking to slow down (429) may
/// pass; anything else (a 4xx, a redirect) would be answered the same again.
fn status_failure(status: u16) -> Failure {
    Failure { why: format!("HTTP status {status}"), retry: status >= 500 || status == 429 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind<'_>) -> Value {
        let event = ClientEvent {
            client_id: "c1",
            username: Some("u"),
            peer: Some(IpAddr::from([10, 0, 0, 7])),
            unix_ms: 1_700_000_000_123,
            kind,
        };
        QueuedEvent::new(&event).to_json("n1")
    }

    #[test]
    fn events_carry_emqx_webhook_fields() {
        let connected = event(EventKind::Connected {
            proto_ver: 5,
            keepalive_secs: 30,
            clean_start: true,
            expiry_secs: 0,
        });
        assert_eq!(connected["event"], "client.connected");
        assert_eq!(connected["clientid"], "c1");
        assert_eq!(connected["username"], "u");
        assert_eq!(connected["peerhost"], "10.0.0.7");
        assert_eq!(connected["timestamp"], 1_700_000_000_123_u64);
        assert_eq!(connected["node"], "n1");
        assert_eq!(connected["keepalive"], 30);
        let gone = event(EventKind::Disconnected { reason: "normal", reason_code: Some(0) });
        assert_eq!(gone["event"], "client.disconnected");
        assert_eq!(gone["reason"], "normal");
        assert_eq!(gone["reason_code"], 0);
        let lost = event(EventKind::Disconnected { reason: "connection_lost", reason_code: None });
        assert!(lost["reason_code"].is_null());
        let subscribed = event(EventKind::Subscribed { topic: "a/+", qos: 1 });
        assert_eq!(subscribed["event"], "session.subscribed");
        assert_eq!(
            (subscribed["topic"].as_str(), subscribed["qos"].as_u64()),
            (Some("a/+"), Some(1))
        );
        let unsubscribed = event(EventKind::Unsubscribed { topic: "a/+" });
        assert_eq!(unsubscribed["event"], "session.unsubscribed");
        assert_eq!(unsubscribed["topic"], "a/+");
    }

    #[test]
    fn only_server_trouble_is_retried() {
        assert!(status_failure(500).retry);
        assert!(status_failure(503).retry);
        assert!(status_failure(429).retry);
        assert!(!status_failure(400).retry);
        assert!(!status_failure(404).retry);
        assert!(!status_failure(301).retry);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sender, receiver) = mpsc::sync_channel(2);
        let counters = Arc::new(WebhookCounters::default());
        let mut sink = WebhookQueue { sender, counters: counters.clone() }.sink();
        let kind = EventKind::Unsubscribed { topic: "t" };
        let event = ClientEvent { client_id: "c", username: None, peer: None, unix_ms: 1, kind };
        for _ in 0..5 {
            sink(&event);
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(receiver.try_iter().count(), 2);
    }

    #[test]
    fn batches_end_when_full_or_late() {
        let (sender, receiver) = mpsc::sync_channel(10);
        let kind = EventKind::Unsubscribed { topic: "t" };
        let event = ClientEvent { client_id: "c", username: None, peer: None, unix_ms: 1, kind };
        for _ in 0..5 {
            sender.send(QueuedEvent::new(&event)).expect("room");
        }
        let batching = Batching { max: 3, delay: Duration::from_millis(20) };
        let mut batch = Vec::new();
        assert_eq!(next_batch(&receiver, batching, &mut batch), Some(true));
        assert_eq!(batch.len(), 3);
        batch.clear();
        assert_eq!(next_batch(&receiver, batching, &mut batch), Some(true));
        assert_eq!(batch.len(), 2, "the delay ended it");
        batch.clear();
        sender.send(QueuedEvent::new(&event)).expect("room");
        drop(sender);
        assert_eq!(next_batch(&receiver, batching, &mut batch), Some(false));
        assert_eq!(batch.len(), 1);
        batch.clear();
        assert_eq!(next_batch(&receiver, batching, &mut batch), None);
    }
}

//! The HTTP authentication service (`auth_http_url`), as EMQX's HTTP authenticator speaks it, so
//! existing services work unchanged: on CONNECT the node POSTs
//! `{"username", "password", "clientid", "peerhost", "protocol"}` and acts on an HTTP 200 whose
//! JSON body is `{"result": "allow" | "deny" | "ignore"}`.
//!
//! Requests are blocking (`ureq`, rustls for https://) and run on the node's HTTP check threads
//! (`security.rs`), never on a shard; their number bounds the requests in flight. Anything but a
//! 200 with that body — another status, a timeout, a refused connection, garbage — is a failure
//! of the service, counted and logged at most once per [`ERROR_LOG_EVERY`].
//!
//! A leaf: it imports nothing from the engine.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// At most one error line per this long (the first error of a quiet spell is logged at once).
pub const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// Bytes of an answer read at most: an answer is a few bytes of JSON, and a service that sends
/// megabytes must not make the node buffer them.
const ANSWER_BYTES_MAX: u64 = 64 * 1024;

/// What the service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Deny,
    /// Not this service's call: the next check decides (the password file, or the anonymous
    /// rules when there is none).
    Ignore,
}

/// The `result` label values of `shardmq_auth_http_requests_total`, in its order.
pub const RESULTS: [&str; 4] = ["allow", "deny", "ignore", "error"];

/// One configured service: its URL, a client with its timeout, and its counters.
#[derive(Debug)]
pub struct HttpService {
    /// Which service this is in log lines (`auth_http_url`).
    key: &'static str,
    url: String,
    agent: ureq::Agent,
    /// Requests by outcome, in [`RESULTS`] order.
    outcomes: [AtomicU64; 4],
    errors: Mutex<ErrorLog>,
}

impl HttpService {
    pub fn new(key: &'static str, url: &str, timeout: Duration) -> HttpService {
        // No redirects: a POST carrying a password must go only where the operator said.
        let agent = ureq::AgentBuilder::new().timeout(timeout).redirects(0).build();
        HttpService {
            key,
            url: url.to_owned(),
            agent,
            outcomes: Default::default(),
            errors: Mutex::new(ErrorLog::default()),
        }
    }

    /// POSTs `body` and reads the answer: `Err` with why the service failed. Blocking: call it
    /// on an HTTP check thread. Counts the outcome and logs failures (rate-limited).
    pub fn ask(&self, body: &Value) -> Result<Answer, String> {
        let result = self.post(body);
        let index = match &result {
            Ok(Answer::Allow) => 0,
            Ok(Answer::Deny) => 1,
            Ok(Answer::Ignore) => 2,
            Err(_) => 3,
        };
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
        if let Err(why) = &result {
            let logged = self.errors.lock().unwrap_or_else(|p| p.into_inner()).note(Instant::now());
            match logged {
                Some(0) => tracing::error!("{} {} failed: {why}", self.key, self.url),
                Some(more) => tracing::error!(
                    "{} {} failed: {why} ({more} more failures since the last line)",
                    self.key,
                    self.url
                ),
                None => {}
            }
        }
        result
    }

    fn post(&self, body: &Value) -> Result<Answer, String> {
        let response = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let response = match response {
            Ok(response) => response,
            Err(ureq::Error::Status(status, _)) => return Err(format!("HTTP status {status}")),
            Err(ureq::Error::Transport(error)) => return Err(error.to_string()),
        };
        let status = response.status();
        let mut text = String::new();
        response
            .into_reader()
            .take(ANSWER_BYTES_MAX)
            .read_to_string(&mut text)
            .map_err(|error| format!("reading the answer: {error}"))?;
        parse_answer(status, &text)
    }

    /// Requests by outcome, in [`RESULTS`] order, for `/metrics`.
    pub fn outcomes(&self) -> [u64; 4] {
        std::array::from_fn(|index| self.outcomes[index].load(Ordering::Relaxed))
    }
}

/// Reads an answer: HTTP 200 with `{"result": "allow" | "deny" | "ignore"}` (other members, such
/// as EMQX's `is_superuser`, are ignored). Anything else is `Err` with why.
pub fn parse_answer(status: u16, body: &str) -> Result<Answer, String> {
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|_| "the answer is not JSON".to_owned())?;
    match value.get("result").and_then(Value::as_str) {
        Some("allow") => Ok(Answer::Allow),
        Some("deny") => Ok(Answer::Deny),
        Some("ignore") => Ok(Answer::Ignore),
        _ => Err("the answer has no \"result\" of allow, deny or ignore".to_owned()),
    }
}

/// The body of a CONNECT's request. A password that is not UTF-8 is sent in standard base64
/// (with padding); a missing user name or password is an empty string, as EMQX sends them.
pub fn connect_request(
    username: Option<&str>,
    password: Option<&[u8]>,
    client_id: &str,
    peer: Option<std::net::IpAddr>,
    protocol: &str,
) -> Value {
    let password = match password.map(std::str::from_utf8) {
        None => String::new(),
        Some(Ok(text)) => text.to_owned(),
        Some(Err(_)) => {
            base64::engine::general_purpose::STANDARD.encode(password.unwrap_or_default())
        }
    };
    json!({
        "username": username.unwrap_or(""),
        "password": password,
        "clientid": client_id,
        "peerhost": peer.map(|ip| ip.to_string()).unwrap_or_default(),
        "protocol": protocol,
    })
}

/// When failures were last logged, and how many since (also the event webhook's).
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ErrorLog {
    /// A failure at `now`: `Some(failures not logged since the last line)` when a line is due.
    pub(crate) fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < ERROR_LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(parse_answer(200, r#"{"result":"allow"}"#), Ok(Answer::Allow));
        let superuser = r#"{"result":"deny","is_superuser":true}"#;
        assert_eq!(parse_answer(200, superuser), Ok(Answer::Deny));
        assert_eq!(parse_answer(200, r#"{"result":"ignore"}"#), Ok(Answer::Ignore));
        assert!(parse_answer(500, r#"{"result":"allow"}"#).is_err());
        assert!(parse_answer(200, "allow").is_err());
        assert!(parse_answer(200, r#"{"result":"maybe"}"#).is_err());
        assert!(parse_answer(200, r#"{"result":true}"#).is_err());
    }

    #[test]
    fn a_request_carries_what_emqx_sends() {
        let peer = Some(std::net::IpAddr::from([10, 0, 0, 7]));
        let body = connect_request(Some("u"), Some(b"p\xff"), "c", peer, "5.0");
        assert_eq!(body["username"], "u");
        assert_eq!(body["password"], "cP8=");
        assert_eq!(body["clientid"], "c");
        assert_eq!(body["peerhost"], "10.0.0.7");
        assert_eq!(body["protocol"], "5.0");
        let anonymous = connect_request(None, None, "c", None, "3.1.1");
        assert_eq!(anonymous["username"], "");
        assert_eq!(anonymous["password"], "");
        assert_eq!(connect_request(None, Some(b"pw"), "c", None, "5.0")["password"], "pw");
    }

    #[test]
    fn errors_are_logged_once_per_spell() {
        let mut log = ErrorLog::default();
        let start = Instant::now();
        assert_eq!(log.note(start), Some(0));
        assert_eq!(log.note(start + Duration::from_secs(1)), None);
        assert_eq!(log.note(start + Duration::from_secs(2)), None);
        assert_eq!(log.note(start + ERROR_LOG_EVERY + Duration::from_secs(1)), Some(2));
    }
}

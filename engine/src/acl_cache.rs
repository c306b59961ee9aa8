//! The answers of the HTTP ACL service (`acl_http_url`), cached: (user, client id, topic,
//! action) → allow / deny / ignore, each for `acl_http_cache_secs`, at most `acl_http_cache_max`
//! of them (the oldest evicted first).
//!
//! The shards' `Authorizer` is synchronous and on the hot path, so it only ever reads this
//! cache; the engine fills it off the shards before it hands a PUBLISH or SUBSCRIBE to its shard
//! (`connection.rs` holds that client's packet until the answer, bounded by the request's
//! timeout). A leaf: it imports nothing from the engine but the answer type.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardmq_io::codec::Packet;

use crate::auth_http::Answer;

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    Subscribe,
}

impl Action {
    /// The `action` of the service's request.
    pub fn label(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        }
    }
}

/// One question: whose, and about what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    pub username: Option<Box<str>>,
    pub client_id: Box<str>,
    pub topic: Box<str>,
    pub action: Action,
}

impl Question {
    pub fn new(username: Option<&str>, client_id: &str, topic: &str, action: Action) -> Question {
        Question {
            username: username.map(Box::from),
            client_id: Box::from(client_id),
            topic: Box::from(topic),
            action,
        }
    }
}

impl Question {
    /// The body of the service's request, as EMQX's HTTP authorizer sends it (a client without a
    /// user name sends an empty one).
    pub fn request(&self) -> Value {
        json!({
            "username": self.username.as_deref().unwrap_or(""),
            "clientid": &*self.client_id,
            "topic": &*self.topic,
            "action": self.action.label(),
        })
    }
}

/// The questions a packet raises: a PUBLISH's topic, each SUBSCRIBE filter (without a
/// `$share/group/` prefix, as the shard's `Authorizer` is asked). A PUBLISH that names its
/// topic by alias only raises none here: the caller resolves the alias with the shard.
pub fn questions(username: Option<&str>, client_id: &str, packet: &Packet) -> Vec<Question> {
    match packet {
        Packet::Publish(publish) if !publish.topic.is_empty() => {
            vec![Question::new(username, client_id, &publish.topic, Action::Publish)]
        }
        Packet::Subscribe(subscribe) => subscribe
            .filters
            .iter()
            .map(|entry| {
                let filter = unshared(&entry.filter);
                Question::new(username, client_id, filter, Action::Subscribe)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `filter` without a `$share/group/` prefix.
fn unshared(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_group, filter)| filter)
}

/// The cache: answers with the time they were stored, and their order of arrival.
#[derive(Debug)]
pub struct AclCache {
    ttl: Duration,
    max: usize,
    /// Each answer, when it was stored, and its number in the order of arrival.
    answers: HashMap<Question, (Answer, Instant, u64)>,
    /// Questions in the order their answers arrived, with their numbers (an answer stored again
    /// is in it twice; the older copy is skipped when it comes up for eviction).
    order: VecDeque<(Question, u64)>,
    stored: u64,
}

impl AclCache {
    pub fn new(ttl: Duration, max: usize) -> AclCache {
        AclCache {
            ttl,
            max: max.max(1),
            answers: HashMap::new(),
            order: VecDeque::new(),
            stored: 0,
        }
    }

    /// The answer to `question` if one younger than the TTL is stored.
    pub fn get(&self, question: &Question, now: Instant) -> Option<Answer> {
        let (answer, stored, _) = self.answers.get(question)?;
        (now.duration_since(*stored) < self.ttl).then_some(*answer)
    }

    /// Stores an answer, evicting the oldest ones (and expired ones at the front) past the
    /// bound.
    pub fn insert(&mut self, question: Question, answer: Answer, now: Instant) {
        self.stored += 1;
        self.answers.insert(question.clone(), (answer, now, self.stored));
        self.order.push_back((question, self.stored));
        while let Some((front, number)) = self.order.front() {
            match self.answers.get(front) {
                Some((_, at, current)) if current == number => {
                    let expired = now.duration_since(*at) >= self.ttl;
                    if !expired && self.answers.len() <= self.max {
                        break;
                    }
                    self.answers.remove(front);
                }
                // Stored again since: the newer copy is further back.
                _ => {}
            }
            self.order.pop_front();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.answers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(topic: &str) -> Question {
        Question::new(Some("u"), "c", topic, Action::Publish)
    }

    #[test]
    fn requests_carry_what_emqx_sends() {
        let question = Question::new(None, "c", "a/b", Action::Subscribe);
        let body = question.request();
        assert_eq!(body["username"], "");
        assert_eq!(body["clientid"], "c");
        assert_eq!(body["topic"], "a/b");
        assert_eq!(body["action"], "subscribe");
        assert_eq!(unshared("$share/g/a/+"), "a/+");
        assert_eq!(unshared("a/+"), "a/+");
    }

    #[test]
    fn answers_expire_after_the_ttl() {
        let start = Instant::now();
        let mut cache = AclCache::new(Duration::from_secs(60), 10);
        cache.insert(question("a"), Answer::Allow, start);
        assert_eq!(cache.get(&question("a"), start + Duration::from_secs(59)), Some(Answer::Allow));
        assert_eq!(cache.get(&question("a"), start + Duration::from_secs(60)), None);
        let subscribe = Question::new(Some("u"), "c", "a", Action::Subscribe);
        assert_eq!(cache.get(&subscribe, start), None);
        // Stored again, it lives again.
        cache.insert(question("a"), Answer::Deny, start + Duration::from_secs(61));
        assert_eq!(cache.get(&question("a"), start + Duration::from_secs(62)), Some(Answer::Deny));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_oldest_answers_go_first_past_the_bound() {
        let start = Instant::now();
        let mut cache = AclCache::new(Duration::from_secs(60), 2);
        cache.insert(question("a"), Answer::Allow, start);
        cache.insert(question("b"), Answer::Allow, start);
        cache.insert(question("a"), Answer::Deny, start);
        cache.insert(question("c"), Answer::Ignore, start);
        assert_eq!(cache.len(), 2);
        // "b" was the oldest answer still stored ("a" was stored again after it).
        assert_eq!(cache.get(&question("b"), start), None);
        assert_eq!(cache.get(&question("a"), start), Some(Answer::Deny));
        assert_eq!(cache.get(&question("c"), start), Some(Answer::Ignore));
    }
}

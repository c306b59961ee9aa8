//! ACL files at the crate's boundary: a table of checks against one file, the errors for bad
//! lines, and property tests against a naive model (subscribing never grants a topic that reading
//! refuses; publish and read agree with a plain substitute-then-match evaluator).

use proptest::prelude::*;
use shardmq_auth::Acl;

#[derive(Debug, Clone, Copy)]
enum Op {
    Publish,
    Read,
    Subscribe,
}

use Op::{Publish, Read, Subscribe};

fn parse(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

fn ask(acl: &Acl, username: Option<&str>, client_id: &str, op: Op, topic: &str) -> bool {
    match op {
        Publish => acl.can_publish(username, client_id, topic),
        Read => acl.can_read(username, client_id, topic),
        Subscribe => acl.can_subscribe(username, client_id, topic),
    }
}

/// Runs every case against `acl_text` and reports all the wrong answers at once.
fn check(acl_text: &str, cases: &[(Option<&str>, &str, Op, &str, bool)]) {
    let acl = parse(acl_text);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|&&(username, client_id, op, topic, expected)| {
            ask(&acl, username, client_id, op, topic) != expected
        })
        .map(|(username, client_id, op, topic, expected)| {
            format!("{username:?} {client_id:?} {op:?} {topic:?}: expected {expected}")
        })
        .collect();
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}

const ACL: &str = "\
# Anonymous clients (no username).
topic read public/#
topic write anon/in
topic deny public/secret/#
topic read $SYS/broker/uptime

user alice
topic readwrite alice/#
topic read shared/+/status
  # An indented comment.
topic deny alice/private/#
topic read $SYS/#
topic read room/big room/chat

user bob
topic write bob/out
topic bob/inbox

# Every client.
pattern read clients/%c/#
pattern readwrite users/%u/#
pattern deny users/%u/locked
pattern read %c/#
pattern deny %u/frozen
";

#[test]
fn anonymous_section() {
    check(
        ACL,
        &[
            (None, "c1", Read, "public/news", true),
            (None, "c1", Publish, "public/news", false),
            (None, "c1", Publish, "anon/in", true),
            (None, "c1", Read, "anon/in", false),
            (None, "c1", Read, "public/secret", false),
            (None, "c1", Read, "public/secret/plans", false),
            (None, "c1", Read, "$SYS/broker/uptime", true),
            (None, "c1", Read, "$SYS/broker/load", false),
            (None, "c1", Read, "alice/x", false),
            (None, "c1", Read, "bob/inbox", false),
            (None, "c1", Subscribe, "public/news/#", true),
            (None, "c1", Subscribe, "public/news", true),
            // Both reach `public/secret`, which is denied.
            (None, "c1", Subscribe, "public/#", false),
            (None, "c1", Subscribe, "public/+", false),
            (None, "c1", Subscribe, "#", false),
            (None, "c1", Subscribe, "$SYS/#", false),
            (None, "c1", Subscribe, "$SYS/broker/uptime", true),
            // Invalid topics and filters are refused, whatever the ACL says.
            (None, "c1", Read, "public/+", false),
            (None, "c1", Publish, "", false),
            (None, "c1", Subscribe, "public/#/x", false),
        ],
    );
}

#[test]
fn user_sections() {
    check(
        ACL,
        &[
            (Some("alice"), "c2", Publish, "alice/x", true),
            (Some("alice"), "c2", Read, "alice/x", true),
            (Some("alice"), "c2", Publish, "alice", true),
            (Some("alice"), "c2", Publish, "alice/private/x", false),
            (Some("alice"), "c2", Subscribe, "alice/#", false),
            (Some("alice"), "c2", Subscribe, "alice/public/+", true),
            (Some("alice"), "c2", Subscribe, "alice/+/x", false),
            (Some("alice"), "c2", Read, "shared/x/status", true),
            (Some("alice"), "c2", Publish, "shared/x/status", false),
            (Some("alice"), "c2", Subscribe, "shared/+/status", true),
            (Some("alice"), "c2", Subscribe, "shared/#", false),
            (Some("alice"), "c2", Read, "room/big room/chat", true),
            // The anonymous section is not alice's.
            (Some("alice"), "c2", Read, "public/news", false),
            (Some("alice"), "c2", Read, "$SYS/broker/load", true),
            (Some("alice"), "c2", Subscribe, "$SYS/#", true),
            (Some("alice"), "c2", Subscribe, "#", false),
            (Some("bob"), "c3", Publish, "bob/out", true),
            (Some("bob"), "c3", Read, "bob/out", false),
            (Some("bob"), "c3", Subscribe, "bob/out", false),
            (Some("bob"), "c3", Publish, "bob/inbox", true),
            (Some("bob"), "c3", Read, "bob/inbox", true),
            (Some("bob"), "c3", Read, "alice/x", false),
            // A user without a section gets only the patterns.
            (Some("carol"), "c5", Read, "public/news", false),
            (Some("carol"), "c5", Read, "clients/c5/cmd", true),
        ],
    );
}

#[test]
fn patterns_substitute_username_and_client_id() {
    check(
        ACL,
        &[
            (None, "c1", Read, "clients/c1/cmd", true),
            (None, "c1", Subscribe, "clients/c1/#", true),
            (None, "c1", Read, "clients/c2/cmd", false),
            (None, "c1", Publish, "clients/c1/cmd", false),
            // `%u` never matches a client without a username.
            (None, "c1", Publish, "users/%u/x", false),
            (Some(""), "c1", Publish, "users//x", false),
            (Some("alice"), "c2", Publish, "users/alice/data", true),
            (Some("alice"), "c2", Subscribe, "users/alice/data/#", true),
            (Some("alice"), "c2", Publish, "users/bob/data", false),
            (Some("alice"), "c2", Publish, "users/alice/locked", false),
            (Some("alice"), "c2", Subscribe, "users/alice/#", false),
            // Names are text, never wildcards or several levels.
            (Some("+"), "c6", Subscribe, "users/+/x", false),
            (Some("#"), "c6", Subscribe, "users/#", false),
            (Some("a/b"), "c6", Read, "users/a/b/x", false),
            (Some("x"), "c/d", Read, "clients/c/d/x", false),
            // `%c` first: a client id never opens `$` topics.
            (None, "dev1", Read, "dev1/x", true),
            (None, "$SYS", Read, "$SYS/broker/load", false),
            (None, "$SYS", Subscribe, "$SYS/#", false),
        ],
    );
}

#[test]
fn deny_wins_over_any_grant() {
    check(
        ACL,
        &[
            // alice's own `topic readwrite alice/#` loses to `pattern deny %u/frozen`. (Mosquitto
            // 2.0 would let the user's topic grant win here: it checks patterns after them.)
            (Some("alice"), "c2", Publish, "alice/frozen", false),
            (Some("alice"), "c2", Read, "alice/frozen", false),
            (Some("alice"), "c2", Publish, "alice/thawed", true),
        ],
    );
    // Order in the file does not matter.
    check(
        "topic deny a/b\ntopic read a/#\n",
        &[(None, "c", Read, "a/b", false), (None, "c", Read, "a/c", true)],
    );
}

#[test]
fn subscriptions_must_fall_within_a_readable_entry() {
    check(
        "topic read a/#\ntopic write w/#\ntopic read x/+/y\n",
        &[
            (None, "c", Subscribe, "a/#", true),
            (None, "c", Subscribe, "a/b/+", true),
            (None, "c", Subscribe, "a", true),
            (None, "c", Subscribe, "#", false),
            (None, "c", Subscribe, "+/b", false),
            (None, "c", Subscribe, "w/#", false),
            (None, "c", Subscribe, "x/+/y", true),
            (None, "c", Subscribe, "x/1/y", true),
            (None, "c", Subscribe, "x/#", false),
            (None, "c", Subscribe, "x/+/+", false),
        ],
    );
}

#[test]
fn no_entry_means_no() {
    check("", &[(None, "c", Read, "a", false), (Some("u"), "c", Publish, "a", false)]);
    check("user u\n", &[(Some("u"), "c", Read, "a", false)]);
}

/// Checks that `text` is refused with exactly `expected` as its message.
fn check_error(text: &str, expected: &str) {
    match Acl::parse(text) {
        Ok(acl) => panic!("accepted {text:?}: {acl:?}"),
        Err(error) => assert_eq!(error.to_string(), expected, "for {text:?}"),
    }
}

#[test]
fn bad_lines_are_errors_naming_the_line() {
    check_error(
        "# ok\ntopic read a\nfrobnicate x\n",
        "line 3: unknown directive `frobnicate` (expected topic, pattern or user)",
    );
    check_error("topic\n", "line 1: `topic` needs a topic");
    check_error("\n\ntopic deny\n", "line 3: `topic deny` needs a topic");
    check_error("user\n", "line 1: `user` needs a username");
    check_error(
        "topic with spaces\n",
        "line 1: unknown access `with` (expected read, write, readwrite or deny; a topic with \
         spaces needs one)",
    );
    check_error(
        "topic read a/#/b\n",
        "line 1: invalid topic filter `a/#/b` (`+` and `#` must be whole levels, `#` the last)",
    );
    check_error(
        "pattern read dev/x%u\n",
        "line 1: `x%u` in `dev/x%u`: %u and %c must be a whole topic level",
    );
    check_error(
        "topic rw a\n",
        "line 1: unknown access `rw` (expected read, write, readwrite or deny; a topic with spaces \
         needs one)",
    );
}

#[test]
fn load_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = dir.path().join("acl");
    std::fs::write(&path, "user a\r\ntopic read x\r\nbogus\r\n").unwrap_or_else(|e| panic!("{e}"));
    let error = match Acl::load(&path) {
        Ok(acl) => panic!("accepted: {acl:?}"),
        Err(error) => error,
    };
    assert_eq!(
        error.to_string(),
        format!(
            "{}:3: unknown directive `bogus` (expected topic, pattern or user)",
            path.display()
        )
    );
    assert_eq!(error.line_number(), Some(3));
    // CRLF line ends and a one-word topic (read and write access).
    let acl = parse("user a\r\ntopic x/y\r\n");
    assert!(acl.can_publish(Some("a"), "c", "x/y") && acl.can_read(Some("a"), "c", "x/y"));
}

// ---- Property tests against a naive model. ----

/// Levels ACL entries and filters are made of; topics use the non-wildcard ones.
const ENTRY_LEVELS: &[&str] = &["a", "b", "$s", "", "+", "%u", "%c"];
const TOPIC_LEVELS: &[&str] = &["a", "b", "$s", ""];
const USERNAMES: &[Option<&str>] = &[None, Some("a"), Some("b"), Some("$s"), Some("")];
const CLIENT_IDS: &[&str] = &["a", "b", "$s"];

#[derive(Debug, Clone)]
struct Entry {
    /// 0: anonymous section, 1: `user a`, 2: `user b`, 3: `pattern`.
    section: usize,
    /// "read", "write", "readwrite", "deny", or "" (read and write).
    access: &'static str,
    levels: Vec<&'static str>,
}

fn filter_levels(levels: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    (prop::collection::vec(prop::sample::select(levels), 1..4), any::<bool>()).prop_map(
        |(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            levels
        },
    )
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0..4usize,
        prop::sample::select(&["read", "write", "readwrite", "deny", ""][..]),
        filter_levels(ENTRY_LEVELS),
    )
        .prop_map(|(section, access, levels)| Entry { section, access, levels })
        // A lone empty level is no topic at all.
        .prop_filter("an empty topic", |entry| entry.levels != [""])
}

fn acl_text(entries: &[Entry]) -> String {
    let mut text = String::new();
    for (section, header) in [(0, ""), (1, "user a\n"), (2, "user b\n"), (3, "")] {
        text.push_str(header);
        for entry in entries.iter().filter(|entry| entry.section == section) {
            let keyword = if section == 3 { "pattern" } else { "topic" };
            let topic = entry.levels.join("/");
            text.push_str(&format!("{keyword} {} {topic}\n", entry.access));
        }
    }
    text
}

/// All topics of one to three levels over [`TOPIC_LEVELS`] (the empty topic excluded).
fn all_topics() -> Vec<String> {
    let mut topics: Vec<Vec<&str>> = TOPIC_LEVELS.iter().map(|level| vec![*level]).collect();
    let mut layer = topics.clone();
    for _ in 0..2 {
        layer = layer
            .iter()
            .flat_map(|topic| {
                TOPIC_LEVELS.iter().map(move |level| {
                    let mut longer = topic.clone();
                    longer.push(level);
                    longer
                })
            })
            .collect();
        topics.extend(layer.iter().cloned());
    }
    topics.into_iter().map(|levels| levels.join("/")).filter(|topic| !topic.is_empty()).collect()
}

/// MQTT matching of one level list against a topic's levels, written plainly. `filled[i]` marks a
/// level filled in from `%u`/`%c`.
fn naive_matches(filter: &[&str], filled: &[bool], topic: &[&str]) -> bool {
    if topic.first().is_some_and(|level| level.starts_with('$')) {
        // `$` topics: only a literal first level the operator wrote.
        match (filter.first(), filled.first()) {
            (Some(&"+" | &"#"), _) | (_, Some(true)) => return false,
            _ => {}
        }
    }
    fn rest(filter: &[&str], topic: &[&str]) -> bool {
        match (filter.split_first(), topic.split_first()) {
            (Some((&"#", _)), _) => true,
            (None, None) => true,
            (Some((&"+", filter)), Some((_, topic))) => rest(filter, topic),
            (Some((level, filter)), Some((other, topic))) if level == other => rest(filter, topic),
            _ => false,
        }
    }
    rest(filter, topic)
}

/// The ACL's rules, evaluated the slow, obvious way.
fn naive_allows(
    entries: &[Entry],
    username: Option<&str>,
    client_id: &str,
    write: bool,
    topic: &str,
) -> bool {
    let topic: Vec<&str> = topic.split('/').collect();
    let applicable = entries.iter().filter_map(|entry| {
        let in_scope = match entry.section {
            0 => username.is_none(),
            1 => username == Some("a"),
            2 => username == Some("b"),
            _ => true,
        };
        if !in_scope {
            return None;
        }
        let mut levels = Vec::new();
        let mut filled = Vec::new();
        for &level in &entry.levels {
            let value = match level {
                "%u" if entry.section == 3 => Some(username.filter(|name| !name.is_empty())?),
                "%c" if entry.section == 3 => Some(Some(client_id).filter(|id| !id.is_empty())?),
                _ => None,
            };
            filled.push(value.is_some());
            levels.push(value.unwrap_or(level));
        }
        Some((entry.access, levels, filled))
    });
    let mut granted = false;
    for (access, levels, filled) in applicable {
        if !naive_matches(&levels, &filled, &topic) {
            continue;
        }
        match access {
            "deny" => return false,
            "read" => granted |= !write,
            "write" => granted |= write,
            _ => granted = true,
        }
    }
    granted
}

proptest! {
    #[test]
    fn subscribing_never_grants_an_unreadable_topic(
        entries in prop::collection::vec(entry(), 0..8),
        filter in filter_levels(&["a", "b", "$s", "", "+"]),
        username in prop::sample::select(USERNAMES),
        client_id in prop::sample::select(CLIENT_IDS),
    ) {
        let acl = Acl::parse(&acl_text(&entries)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let filter = filter.join("/");
        if acl.can_subscribe(username, client_id, &filter) {
            let filter_levels: Vec<&str> = filter.split('/').collect();
            for topic in all_topics() {
                let levels: Vec<&str> = topic.split('/').collect();
                let no_fill = vec![false; filter_levels.len()];
                if naive_matches(&filter_levels, &no_fill, &levels) {
                    prop_assert!(
                        acl.can_read(username, client_id, &topic),
                        "{filter} granted, {topic} unreadable"
                    );
                }
            }
        }
    }

    #[test]
    fn publish_and_read_agree_with_the_naive_model(
        entries in prop::collection::vec(entry(), 0..8),
        username in prop::sample::select(USERNAMES),
        client_id in prop::sample::select(CLIENT_IDS),
    ) {
        let acl = Acl::parse(&acl_text(&entries)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for topic in all_topics() {
            prop_assert_eq!(
                acl.can_publish(username, client_id, &topic),
                naive_allows(&entries, username, client_id, true, &topic),
                "publish {}", topic
            );
            let read = acl.can_read(username, client_id, &topic);
            let expected = naive_allows(&entries, username, client_id, false, &topic);
            prop_assert_eq!(read, expected, "read {}", topic);
            // A filter without wildcards is a topic: subscribing to it is reading it.
            let subscribe = acl.can_subscribe(username, client_id, &topic);
            prop_assert_eq!(subscribe, read, "subscribe {}", topic);
        }
    }
}

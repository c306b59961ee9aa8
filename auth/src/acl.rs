//! Mosquitto's `acl_file`: who may publish to, subscribe to and receive which topics.
//!
//! The format (Mosquitto 2, `man mosquitto.conf`, `acl_file`):
//!
//! ```text
//! # A comment: `#` first on the line. (No comments after a directive: they would be topic.)
//! topic [read|write|readwrite|deny] <topic>
//! user <username>
//! pattern [read|write|readwrite|deny] <topic>
//! ```
//!
//! `topic` lines before any `user` line apply to anonymous clients; after `user <username>`, to
//! that user. `pattern` lines apply to every client, with a level `%u` standing for its username
//! and `%c` for its client id. Blank lines are ignored.
//!
//! The access word is optional (read and write), and everything after it is the topic, spaces
//! included; a topic with a space therefore needs the access word.

use std::collections::HashMap;
use std::path::Path;

use crate::error::AuthFileError;
use crate::topic::{self, Level, Who};

/// A parsed ACL file; immutable, shared by every shard, replaced as a whole on reload.
///
/// What a client may do, given its username (`None` for an anonymous client) and client id:
///
/// - Its entries are its section's `topic` lines (the anonymous section's for an anonymous client,
///   its `user` section's otherwise, none if it has no section) and every `pattern` line. A
///   pattern naming `%u` never applies to a client without a username (nor one with an empty
///   username), one naming `%c` never to an empty client id. `%u` and `%c` are compared with a
///   topic level as text, never as wildcards, so a username `#` or `a/b` grants nothing.
/// - A `deny` entry that matches wins over every grant; otherwise a matching grant with the access
///   asked for allows; otherwise the answer is no (an ACL file denies by default).
/// - `$` topics follow the same rules; as in MQTT, `+` and `#` at the first level do not match
///   them, and neither does a `%u`/`%c` at the first level.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// `topic` lines before any `user` line.
    anonymous: Rules,
    /// `topic` lines after `user <name>`; sections with the same name merge, as in Mosquitto.
    users: HashMap<Box<str>, Rules>,
    /// `pattern` lines, wherever they are in the file.
    patterns: Rules,
}

#[derive(Debug, Clone, Default)]
struct Rules {
    denies: Vec<Box<[Level]>>,
    grants: Vec<Grant>,
}

#[derive(Debug, Clone)]
struct Grant {
    levels: Box<[Level]>,
    read: bool,
    write: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

/// The access a check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

impl Grant {
    fn allows(&self, want: Want) -> bool {
        match want {
            Want::Read => self.read,
            Want::Write => self.write,
        }
    }
}

impl Acl {
    /// Parses an ACL file's text. A line that is not `topic`, `pattern`, `user`, a comment or
    /// blank is an error naming its line; so is an unknown access word or an invalid topic filter.
    pub fn parse(text: &str) -> Result<Acl, AuthFileError> {
        let mut acl = Acl::default();
        // `None` until the first `user` line: the anonymous section.
        let mut user: Option<Box<str>> = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "user" => {
                    let name = rest.trim();
                    if name.is_empty() {
                        return Err(AuthFileError::line(number, "`user` needs a username"));
                    }
                    user = Some(name.into());
                }
                "topic" | "pattern" => {
                    let (access, topic) = access_and_topic(keyword, rest)
                        .map_err(|what| AuthFileError::line(number, what))?;
                    let substitute = keyword == "pattern";
                    let levels = topic::parse_entry(topic, substitute)
                        .map_err(|what| AuthFileError::line(number, what))?;
                    let rules = if substitute {
                        &mut acl.patterns
                    } else {
                        match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default(),
                            None => &mut acl.anonymous,
                        }
                    };
                    rules.add(access, levels);
                }
                _ => {
                    return Err(AuthFileError::line(
                        number,
                        format!("unknown directive `{keyword}` (expected topic, pattern or user)"),
                    ));
                }
            }
        }
        Ok(acl)
    }

    /// Reads and parses an ACL file; errors name the file.
    pub fn load(path: &Path) -> Result<Acl, AuthFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| AuthFileError::read(path, error))?;
        Acl::parse(&text).map_err(|error| error.in_file(path))
    }

    /// May this client publish on `topic`? (write access; `false` for an invalid topic)
    pub fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        topic::valid_topic(topic)
            && self.check(Who { username, client_id }, Want::Write, topic, topic::covers)
    }

    /// May this client receive a message published on `topic`? (read access; `false` for an
    /// invalid topic)
    pub fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        topic::valid_topic(topic)
            && self.check(Who { username, client_id }, Want::Read, topic, topic::covers)
    }

    /// May this client subscribe to `filter` (without any `$share/{group}/` prefix)?
    ///
    /// Yes exactly when one readable entry covers the whole filter (every topic the filter
    /// matches, that entry matches) and no `deny` entry matches any topic the filter matches. So
    /// `topic read a/#` allows `a/#`, `a/b/+` and `a`, not `#` or `+/b`; and with `topic deny
    /// a/secret` too, `a/#` and `a/+` are refused while `a/b/#` is allowed. Hence a granted
    /// subscription never asks for a topic [`Acl::can_read`] refuses.
    ///
    /// This is conservative: a filter that only several entries cover together (`a/#` by `a` and
    /// `a/+/#`) is refused; one entry must cover it alone. `false` for an invalid filter.
    pub fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        topic::valid_filter(filter)
            && self.check(Who { username, client_id }, Want::Read, filter, topic::overlaps)
    }

    /// Denies first, then grants, across the client's section and the patterns. A grant must
    /// cover `text`; a deny refuses when `deny_hits` says so (matches the topic, or overlaps the
    /// filter).
    fn check(
        &self,
        who: Who<'_>,
        want: Want,
        text: &str,
        deny_hits: fn(&[Level], &str, &Who<'_>) -> bool,
    ) -> bool {
        let section = match who.username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        let rules = || section.into_iter().chain(Some(&self.patterns));
        let denied =
            rules().flat_map(|rules| &rules.denies).any(|deny| deny_hits(deny, text, &who));
        !denied
            && rules()
                .flat_map(|rules| &rules.grants)
                .any(|grant| grant.allows(want) && topic::covers(&grant.levels, text, &who))
    }
}

impl Rules {
    fn add(&mut self, access: Access, levels: Box<[Level]>) {
        let (read, write) = match access {
            Access::Deny => {
                self.denies.push(levels);
                return;
            }
            Access::Read => (true, false),
            Access::Write => (false, true),
            Access::ReadWrite => (true, true),
        };
        self.grants.push(Grant { levels, read, write });
    }
}

/// `[access] <topic>` after `topic` or `pattern`.
fn access_and_topic<'a>(keyword: &str, rest: &'a str) -> Result<(Access, &'a str), String> {
    let (first, after) = split_word(rest.trim());
    if first.is_empty() {
        return Err(format!("`{keyword}` needs a topic"));
    }
    let after = after.trim();
    let access = match first {
        "read" => Access::Read,
        "write" => Access::Write,
        "readwrite" => Access::ReadWrite,
        "deny" => Access::Deny,
        // One word: the topic, with read and write access.
        _ if after.is_empty() => return Ok((Access::ReadWrite, first)),
        _ => {
            return Err(format!(
                "unknown access `{first}` (expected read, write, readwrite or deny; a topic with \
                 spaces needs one)"
            ))
        }
    };
    if after.is_empty() {
        // Mosquitto would read `topic deny` as read-write access to the topic `deny`; an access
        // word with nothing after it is far more likely a topic left out.
        return Err(format!("`{keyword} {first}` needs a topic"));
    }
    Ok((access, after))
}

/// The first word (up to a space or tab) and the rest after that separator.
fn split_word(text: &str) -> (&str, &str) {
    text.split_once([' ', '\t']).unwrap_or((text, ""))
}

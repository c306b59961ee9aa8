//! ACL entries as topic levels, and the two questions asked of them: does an entry cover every
//! topic a filter matches (a topic is a filter without wildcards, so this is also "does it match
//! this topic"), and could an entry match some topic a filter matches.
//!
//! Entries are split into levels once, when the file is parsed; a query splits its topic or filter
//! lazily with `split('/')` and allocates nothing.
//!
//! **Invariant:** `covers` never says yes to a topic the entry does not match, and `overlaps` never
//! says no when the entry matches some topic the filter matches. `Acl::can_subscribe` relies on
//! both to imply `can_read` for every topic a granted filter matches.

/// The longest topic or filter MQTT can carry (a UTF-8 string's two-byte length).
pub(crate) const TOPIC_BYTES_MAX: usize = 65_535;

/// One level of an ACL entry's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Level {
    /// Text that must equal the topic's level.
    Literal(Box<str>),
    /// `+`: any one level.
    SingleWildcard,
    /// `#`: this level and everything below it, or nothing (as in `a/#` matching `a`).
    MultiWildcard,
    /// `%u` in a `pattern` line: a level equal to the client's username.
    Username,
    /// `%c` in a `pattern` line: a level equal to the client's id.
    ClientId,
}

/// The client a check is made for; fills in `%u` and `%c`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) username: Option<&'a str>,
    pub(crate) client_id: &'a str,
}

/// What one level of an entry can match, for the client at hand.
enum EntryLevel<'a> {
    /// `+` or `#`.
    Wildcard,
    /// Exactly this text. `from_file` says whether the operator wrote it, or it is the client's
    /// username or id filled in.
    Text { text: &'a str, from_file: bool },
    /// Nothing: `%u` for a client without a username, or an empty username or id.
    Nothing,
}

impl Level {
    fn for_client<'a>(&'a self, who: &Who<'a>) -> EntryLevel<'a> {
        let filled = |value: Option<&'a str>| match value {
            // Mosquitto never substitutes an empty value; an empty level would be an odd grant.
            Some(text) if !text.is_empty() => EntryLevel::Text { text, from_file: false },
            _ => EntryLevel::Nothing,
        };
        match self {
            Level::SingleWildcard | Level::MultiWildcard => EntryLevel::Wildcard,
            Level::Literal(text) => EntryLevel::Text { text, from_file: true },
            Level::Username => filled(who.username),
            Level::ClientId => filled(Some(who.client_id)),
        }
    }
}

/// Whether every topic `filter` matches is matched by `entry`. `filter` must be valid
/// ([`valid_filter`]); a topic is a filter without wildcards.
///
/// Beyond MQTT's own rules, a `$` topic (first level starting with `$`) is matched only by a first
/// level the operator wrote: not by `+` or `#` (MQTT's rule), nor by a username or client id filled
/// in for `%u`/`%c`, which a client chooses (a client id `$SYS` must not open `pattern read
/// %c/#` onto `$SYS/#`).
pub(crate) fn covers(entry: &[Level], filter: &str, who: &Who<'_>) -> bool {
    let mut entry_levels = entry.iter();
    let mut filter_levels = filter.split('/');
    let mut first = true;
    loop {
        let (entry_level, level) = match (entry_levels.next(), filter_levels.next()) {
            (None, None) => return true,
            // `a/#` matches `a`.
            (Some(Level::MultiWildcard), None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some(entry_level), Some(level)) => (entry_level, level),
        };
        let dollar = first && level.starts_with('$');
        let covered = match (entry_level.for_client(who), level) {
            (EntryLevel::Nothing, _) => false,
            // Only `#` covers the filter's `#`, and `+` or `#` its `+`.
            (EntryLevel::Wildcard, "#") => *entry_level == Level::MultiWildcard,
            (EntryLevel::Wildcard, "+") => true,
            (EntryLevel::Wildcard, _) => !dollar,
            (EntryLevel::Text { .. }, "+" | "#") => false,
            (EntryLevel::Text { text, from_file }, _) => text == level && (from_file || !dollar),
        };
        if !covered {
            return false;
        }
        if *entry_level == Level::MultiWildcard {
            return true;
        }
        first = false;
    }
}

/// Whether some topic matched by `filter` is matched by `entry` (the two may overlap). `filter`
/// must be valid ([`valid_filter`]). The same `$` rule as [`covers`] applies.
pub(crate) fn overlaps(entry: &[Level], filter: &str, who: &Who<'_>) -> bool {
    let mut entry_levels = entry.iter();
    let mut filter_levels = filter.split('/');
    let mut first = true;
    loop {
        let (entry_level, level) = match (entry_levels.next(), filter_levels.next()) {
            (None, None) => return true,
            // `a/#` matches `a`, on either side.
            (Some(Level::MultiWildcard), None) | (None, Some("#")) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some(entry_level), Some(level)) => (entry_level, level),
        };
        let filter_wildcard = level == "+" || level == "#";
        let both = match entry_level.for_client(who) {
            EntryLevel::Nothing => false,
            // Two wildcards share every level but `$` ones at the top.
            EntryLevel::Wildcard if filter_wildcard => true,
            EntryLevel::Wildcard => !(first && level.starts_with('$')),
            EntryLevel::Text { text, from_file } => {
                let dollar = first && text.starts_with('$');
                if filter_wildcard {
                    !dollar
                } else {
                    text == level && (from_file || !dollar)
                }
            }
        };
        if !both {
            return false;
        }
        // Past a `#` on either side, any remainder of the other has a topic in common.
        if *entry_level == Level::MultiWildcard || level == "#" {
            return true;
        }
        first = false;
    }
}

/// Whether `topic` may be published to: not empty, no wildcard, not over MQTT's length.
pub(crate) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= TOPIC_BYTES_MAX && !topic.contains(['+', '#'])
}

/// Whether `filter` is a valid subscription filter: not empty, not over MQTT's length, `+` only
/// as a whole level, `#` only as the whole last level.
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > TOPIC_BYTES_MAX {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "+" => true,
            "#" => levels.peek().is_none(),
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Splits an ACL line's topic into levels. With `substitute` (a `pattern` line), a level that is
/// exactly `%u` or `%c` becomes the client's username or id.
///
/// Mosquitto 2's manual says "the substitution pattern must be the only text for that level of
/// hierarchy"; a level like `dev-%u` is refused here rather than read literally, so a file that
/// relied on Mosquitto 2.0's looser substitution fails loudly instead of granting less in silence.
pub(crate) fn parse_entry(topic: &str, substitute: bool) -> Result<Box<[Level]>, String> {
    if !valid_filter(topic) {
        return Err(format!(
            "invalid topic filter `{topic}` (`+` and `#` must be whole levels, `#` the last)"
        ));
    }
    topic
        .split('/')
        .map(|level| match level {
            "+" => Ok(Level::SingleWildcard),
            "#" => Ok(Level::MultiWildcard),
            "%u" if substitute => Ok(Level::Username),
            "%c" if substitute => Ok(Level::ClientId),
            _ if substitute && (level.contains("%u") || level.contains("%c")) => {
                Err(format!("`{level}` in `{topic}`: %u and %c must be a whole topic level"))
            }
            _ => Ok(Level::Literal(level.into())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(username: Option<&'a str>, client_id: &'a str) -> Who<'a> {
        Who { username, client_id }
    }

    fn check_covers(entry: &str, filter: &str, expected: bool) {
        let levels = parse_entry(entry, true).unwrap_or_else(|error| panic!("{error}"));
        let actual = covers(&levels, filter, &who(Some("u"), "c"));
        assert_eq!(actual, expected, "covers({entry}, {filter})");
    }

    fn check_overlaps(entry: &str, filter: &str, expected: bool) {
        let levels = parse_entry(entry, true).unwrap_or_else(|error| panic!("{error}"));
        let actual = overlaps(&levels, filter, &who(Some("u"), "c"));
        assert_eq!(actual, expected, "overlaps({entry}, {filter})");
    }

    #[test]
    fn covers_follows_mqtt_matching_and_containment() {
        for (entry, filter, expected) in [
            ("a/#", "a", true),
            ("a/#", "a/b/+", true),
            ("a/#", "a/#", true),
            ("a/#", "#", false),
            ("a/#", "+/b", false),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/+", "a", false),
            ("a/+/#", "a/#", false),
            ("a/+/#", "a/b", true),
            ("#", "#", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x/+", true),
            ("a/%u", "a/u", true),
            ("a/%u", "a/+", false),
            ("a/%c/#", "a/c/d", true),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
        ] {
            check_covers(entry, filter, expected);
        }
    }

    #[test]
    fn a_username_or_client_id_never_reaches_dollar_topics() {
        let levels = parse_entry("%c/#", true).unwrap_or_else(|error| panic!("{error}"));
        assert!(!covers(&levels, "$SYS/x", &who(None, "$SYS")));
        assert!(!overlaps(&levels, "$SYS/x", &who(None, "$SYS")));
        assert!(covers(&levels, "sys/x", &who(None, "sys")));
    }

    #[test]
    fn overlaps_finds_a_common_topic() {
        for (entry, filter, expected) in [
            ("a/secret", "a/#", true),
            ("a/secret", "a/+", true),
            ("a/secret", "a/b", false),
            ("a/#", "a", true),
            ("a", "a/#", true),
            ("a/+", "a", false),
            ("#", "$SYS/#", false),
            ("$SYS/#", "#", false),
            ("$SYS/#", "+/x", false),
            ("+/x", "a/+", true),
            ("a/%u", "a/+", true),
            ("a/%u", "a/v", false),
        ] {
            check_overlaps(entry, filter, expected);
        }
    }

    #[test]
    fn filters_and_topics_are_validated() {
        for filter in ["a", "+", "#", "a/+/b", "a/#", "/", "a//b", "$SYS/#"] {
            assert!(valid_filter(filter), "{filter}");
        }
        for filter in ["", "a+", "a/#/b", "#/a", "a/b#", "+a/b"] {
            assert!(!valid_filter(filter), "{filter}");
        }
        assert!(valid_topic("a/b"));
        assert!(!valid_topic("a/+"));
        assert!(!valid_topic(""));
    }

    #[test]
    fn substitution_must_be_a_whole_level() {
        assert!(parse_entry("dev/%u-x", true).is_err());
        assert_eq!(
            parse_entry("dev/%u-x", false).as_deref(),
            Ok(&[Level::Literal("dev".into()), Level::Literal("%u-x".into())][..])
        );
    }
}

//! Topic name and topic filter rules (spec section 4.7), shared by the decoder and the broker.

/// The prefix of a shared subscription filter: `$share/<group>/<filter>`.
pub const SHARED_PREFIX: &str = "$share/";

/// A topic name as PUBLISH, a will and Response Topic carry it: at least one character and no
/// wildcard ([MQTT-3.3.2-2], [MQTT-4.7.3-1]).
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.bytes().any(|b| b == b'+' || b == b'#')
}

/// A topic filter as SUBSCRIBE and UNSUBSCRIBE carry it, including the shared form
/// `$share/<group>/<filter>`.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    match split_shared(filter) {
        Some(Ok((_, inner))) => is_valid_plain_filter(inner),
        Some(Err(())) => false,
        None => is_valid_plain_filter(filter),
    }
}

/// Splits `$share/<group>/<filter>` into its group and filter: `None` if the filter is not
/// shared, `Some(Err(()))` if it starts with `$share/` but the group is empty, holds a wildcard,
/// or no filter follows it.
#[allow(clippy::result_unit_err)]
pub fn split_shared(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix(SHARED_PREFIX)?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Some(Err(()));
    }
    Some(Ok((group, inner)))
}

/// A filter without the shared prefix: `#` only as the whole last level, `+` only as a whole
/// level ([MQTT-4.7.1-1], [MQTT-4.7.1-2]).
fn is_valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let valid = match level {
            "#" => last,
            "+" => true,
            _ => !level.contains(['+', '#']),
        };
        if !valid {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "/", "a/b", "$SYS/x", " ", "a//b"] {
            assert!(is_valid_topic_name(good), "{good:?}");
        }
        for bad in ["", "+", "a/#", "a+", "#"] {
            assert!(!is_valid_topic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn filters() {
        for good in [
            "a",
            "#",
            "+",
            "a/#",
            "+/+",
            "/+",
            "a/+/b",
            "+/#",
            "$share/g/a",
            "$share/g/#",
            "a//b",
            "$SYS/#",
        ] {
            assert!(is_valid_topic_filter(good), "{good:?}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "#/a",
            "a+",
            "a/b+",
            "+a",
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
            "$share/#/a",
        ] {
            assert!(!is_valid_topic_filter(bad), "{bad:?}");
        }
    }
}

//! Topic matching for one shard: the MQTT filter rule (spec 4.7), the subscription trie that
//! finds every subscriber of a published topic, and the tree of retained topics that finds every
//! stored topic a new subscription matches.
//!
//! Both trees are walked with an explicit stack and dropped iteratively, never recursively: a
//! filter may hold tens of thousands of levels (`"+/+/+/…"` fits in a 64 KiB string), and one
//! stack frame per level would let a client overflow a reactor thread's stack.
//!
//! Filters arrive validated by the codec (`shardmq_codec::topic::is_valid_topic_filter`) and
//! without their `$share/<group>/` prefix. Should an invalid one get here anyway, a `#` that is not
//! the last level is taken as a literal level, which no valid topic name matches; every function
//! in this module agrees on that reading.

use crate::FastMap;
use std::fmt;
use std::hash::Hash;

/// How many pending branches a match walk keeps on the stack before it spills to the heap: a
/// walk with fewer live branches than this allocates nothing.
const PENDING_INLINE_CAPACITY: usize = 16;

/// Whether the topic filter `filter` matches the topic name `topic` (spec 4.7).
///
/// Levels are split on `/` and empty levels are real levels (`"a//b"`, `"/a"`). `+` matches
/// exactly one level, possibly empty; `#` as the last level matches its parent level and any
/// number of levels below, so `"a/#"` matches `"a"` and `"a/b/c"`. A topic that starts with `$`
/// is not matched by a filter whose first level is `+` or `#` ([MQTT-4.7.2-1]).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = filter.split('/').peekable();
    if topic.starts_with('$') && matches!(filter_levels.peek(), Some(&("+" | "#"))) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) if filter_levels.peek().is_none() => return true,
            (Some(filter_level), Some(topic_level)) => {
                if filter_level != "+" && filter_level != topic_level {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}

/// Splits the first level off `levels`: the level, and what follows its `/` or `None` when it
/// was the last level.
fn split_level(levels: &str) -> (&str, Option<&str>) {
    match levels.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (levels, None),
    }
}

/// A stack that keeps its first items inline, so that a match walk on the PUBLISH path does not
/// allocate unless the tree branches unusually often under one topic.
struct PendingStack<T> {
    inline: [Option<T>; PENDING_INLINE_CAPACITY],
    inline_len: usize,
    /// Holds the items pushed while `inline` is full; it is empty whenever `inline` has room,
    /// so its top is always the top of the whole stack.
    spilled: Vec<T>,
}

impl<T: Copy> PendingStack<T> {
    fn new() -> Self {
        Self { inline: [None; PENDING_INLINE_CAPACITY], inline_len: 0, spilled: Vec::new() }
    }

    fn push(&mut self, item: T) {
        match self.inline.get_mut(self.inline_len) {
            Some(free) => {
                *free = Some(item);
                self.inline_len += 1;
            }
            None => self.spilled.push(item),
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.spilled.pop() {
            return Some(item);
        }
        self.inline_len = self.inline_len.checked_sub(1)?;
        self.inline.get_mut(self.inline_len).and_then(Option::take)
    }
}

/// One step down the subscription trie.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Literal(&'a str),
    SingleLevel,
}

/// Where a filter's entries live in the node its path leads to.
#[derive(Clone, Copy)]
enum Slot {
    /// The filter ends at the node: `a/b`.
    Exact,
    /// The filter is the node's path followed by `#`: `a/b/#`.
    MultiLevel,
}

/// A filter split into the edges that lead to its node and the slot it takes there.
struct FilterPath<'a> {
    /// The levels before a final `#`, or `None` for the filter `#` itself.
    levels: Option<&'a str>,
    slot: Slot,
}

impl<'a> FilterPath<'a> {
    fn parse(filter: &'a str) -> Self {
        if filter == "#" {
            return Self { levels: None, slot: Slot::MultiLevel };
        }
        match filter.strip_suffix("/#") {
            Some(levels) => Self { levels: Some(levels), slot: Slot::MultiLevel },
            None => Self { levels: Some(filter), slot: Slot::Exact },
        }
    }

    fn edges(&self) -> impl Iterator<Item = Edge<'a>> + 'a {
        self.levels.into_iter().flat_map(|levels| levels.split('/')).map(|level| match level {
            "+" => Edge::SingleLevel,
            literal => Edge::Literal(literal),
        })
    }
}

/// The subscribers of one filter. Never empty: the slot holding it is cleared instead.
struct Entries<K, V> {
    /// The whole filter, kept so a match can name it without building it from the path.
    filter: Box<str>,
    by_key: FastMap<K, V>,
}

struct Node<K, V> {
    children: FastMap<Box<str>, Node<K, V>>,
    single_level: Option<Box<Node<K, V>>>,
    exact: Option<Box<Entries<K, V>>>,
    multi_level: Option<Box<Entries<K, V>>>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self { children: FastMap::default(), single_level: None, exact: None, multi_level: None }
    }

    fn child(&self, edge: Edge<'_>) -> Option<&Self> {
        match edge {
            Edge::Literal(level) => self.children.get(level),
            Edge::SingleLevel => self.single_level.as_deref(),
        }
    }

    fn child_mut(&mut self, edge: Edge<'_>) -> Option<&mut Self> {
        match edge {
            Edge::Literal(level) => self.children.get_mut(level),
            Edge::SingleLevel => self.single_level.as_deref_mut(),
        }
    }

    fn child_or_insert(&mut self, edge: Edge<'_>) -> &mut Self {
        match edge {
            Edge::Literal(level) => self.children.entry(Box::from(level)).or_insert_with(Node::new),
            Edge::SingleLevel => self.single_level.get_or_insert_with(|| Box::new(Node::new())),
        }
    }

    fn remove_child(&mut self, edge: Edge<'_>) {
        match edge {
            Edge::Literal(level) => drop(self.children.remove(level)),
            Edge::SingleLevel => self.single_level = None,
        }
    }

    fn slot(&self, slot: Slot) -> Option<&Entries<K, V>> {
        match slot {
            Slot::Exact => self.exact.as_deref(),
            Slot::MultiLevel => self.multi_level.as_deref(),
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Option<Box<Entries<K, V>>> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::MultiLevel => &mut self.multi_level,
        }
    }

    /// How many things the node holds: children and non-empty slots. A node other than the
    /// root that holds nothing is pruned.
    fn parts(&self) -> usize {
        self.children.len()
            + usize::from(self.single_level.is_some())
            + usize::from(self.exact.is_some())
            + usize::from(self.multi_level.is_some())
    }

    fn detach_children_into(&mut self, detached: &mut Vec<Self>) {
        detached.extend(self.children.drain().map(|(_, child)| child));
        if let Some(child) = self.single_level.take() {
            detached.push(*child);
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Drops the subtree breadth-first from a heap list rather than by recursion, so a filter
    /// with very many levels cannot overflow the stack when it is removed or the trie is dropped.
    fn drop(&mut self) {
        if self.children.is_empty() && self.single_level.is_none() {
            return;
        }
        let mut detached = Vec::new();
        self.detach_children_into(&mut detached);
        while let Some(mut node) = detached.pop() {
            node.detach_children_into(&mut detached);
        }
    }
}

/// Lives on each shard; the subscriber index: for each topic filter, its subscribers (key `K`,
/// for instance a session) and what each subscribed with (value `V`, for instance the options).
/// Answers "who receives this PUBLISH" by walking the topic's levels once.
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    entries_len: usize,
    filters_len: usize,
}

impl<K: Eq + Hash, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        Self { root: Node::new(), entries_len: 0, filters_len: 0 }
    }

    /// Adds `key` under `filter` with `value`; returns the value it replaces when `key` was
    /// already under `filter`.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let path = FilterPath::parse(filter);
        let mut node = &mut self.root;
        for edge in path.edges() {
            node = node.child_or_insert(edge);
        }
        let slot = node.slot_mut(path.slot);
        let entries = match slot {
            Some(entries) => entries,
            None => {
                self.filters_len += 1;
                slot.insert(Box::new(Entries {
                    filter: Box::from(filter),
                    by_key: FastMap::default(),
                }))
            }
        };
        let replaced = entries.by_key.insert(key, value);
        if replaced.is_none() {
            self.entries_len += 1;
        }
        replaced
    }

    /// Removes `key` from under `filter` and returns its value; the nodes left empty are freed.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let path = FilterPath::parse(filter);
        let mut node = &mut self.root;
        let mut depth = 0_usize;
        for edge in path.edges() {
            node = node.child_mut(edge)?;
            depth += 1;
        }
        let slot = node.slot_mut(path.slot);
        let entries = slot.as_mut()?;
        let value = entries.by_key.remove(key)?;
        self.entries_len -= 1;
        if entries.by_key.is_empty() {
            *slot = None;
            self.filters_len -= 1;
        }
        if depth > 0 && node.parts() == 0 {
            self.prune(&path);
        }
        Some(value)
    }

    /// Cuts the branch leading to the now empty node at the end of `path`, just below the
    /// deepest node on the path that still holds something else.
    fn prune(&mut self, path: &FilterPath<'_>) {
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, edge) in path.edges().enumerate() {
            // The root is always kept; another node is kept when it holds more than the edge
            // towards the emptied node.
            if depth > 0 && node.parts() > 1 {
                keep_depth = depth;
            }
            match node.child(edge) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut keeper = &mut self.root;
        let mut edges = path.edges();
        for edge in edges.by_ref().take(keep_depth) {
            match keeper.child_mut(edge) {
                Some(child) => keeper = child,
                None => return,
            }
        }
        if let Some(edge) = edges.next() {
            keeper.remove_child(edge);
        }
    }

    /// The value `key` subscribed to `filter` with.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let path = FilterPath::parse(filter);
        let mut node = &self.root;
        for edge in path.edges() {
            node = node.child(edge)?;
        }
        node.slot(path.slot)?.by_key.get(key)
    }

    /// Whether any key is subscribed to exactly `filter`.
    pub fn filter_has_entries(&self, filter: &str) -> bool {
        let path = FilterPath::parse(filter);
        let mut node = &self.root;
        for edge in path.edges() {
            match node.child(edge) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.slot(path.slot).is_some()
    }

    /// Calls `visit(filter, key, value)` once for every entry whose filter matches `topic`.
    pub fn for_each_match(&self, topic: &str, mut visit: impl FnMut(&str, &K, &V)) {
        let mut visit_entries = |entries: &Entries<K, V>| {
            for (key, value) in &entries.by_key {
                visit(&entries.filter, key, value);
            }
        };
        // Each pending branch is (node, the topic levels left, whether wildcards may match
        // here); wildcards are refused only at the root of a `$` topic ([MQTT-4.7.2-1]).
        let mut pending = PendingStack::new();
        pending.push((&self.root, Some(topic), !topic.starts_with('$')));
        while let Some((mut node, mut rest, mut wildcards_match)) = pending.pop() {
            // Follow the literal levels in this loop and leave only `+` branches for later.
            loop {
                if wildcards_match {
                    if let Some(entries) = node.multi_level.as_deref() {
                        visit_entries(entries);
                    }
                }
                let Some(levels) = rest else {
                    if let Some(entries) = node.exact.as_deref() {
                        visit_entries(entries);
                    }
                    break;
                };
                let (level, tail) = split_level(levels);
                if wildcards_match {
                    if let Some(child) = node.single_level.as_deref() {
                        pending.push((child, tail, true));
                    }
                }
                match node.children.get(level) {
                    Some(child) => {
                        node = child;
                        rest = tail;
                        wildcards_match = true;
                    }
                    None => break,
                }
            }
        }
    }

    /// The number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.entries_len
    }

    pub fn is_empty(&self) -> bool {
        self.entries_len == 0
    }

    /// The number of distinct filters with at least one key.
    pub fn filters_len(&self) -> usize {
        self.filters_len
    }

    /// Every (filter, key, value) entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &K, &V)> + '_ {
        let mut pending = vec![&self.root];
        let nodes = std::iter::from_fn(move || {
            let node = pending.pop()?;
            pending.extend(node.children.values());
            pending.extend(node.single_level.as_deref());
            Some(node)
        });
        nodes
            .flat_map(|node| [node.exact.as_deref(), node.multi_level.as_deref()].into_iter())
            .flatten()
            .flat_map(|entries| {
                entries.by_key.iter().map(move |(key, value)| (&*entries.filter, key, value))
            })
    }
}

impl<K: Eq + Hash, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + fmt::Debug, V: fmt::Debug> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_map()
            .entries(self.iter().map(|(filter, key, value)| ((filter, key), value)))
            .finish()
    }
}

/// A stored topic and its value.
struct TopicEntry<V> {
    topic: Box<str>,
    value: V,
}

struct TopicNode<V> {
    children: FastMap<Box<str>, TopicNode<V>>,
    entry: Option<Box<TopicEntry<V>>>,
}

impl<V> TopicNode<V> {
    fn new() -> Self {
        Self { children: FastMap::default(), entry: None }
    }

    fn parts(&self) -> usize {
        self.children.len() + usize::from(self.entry.is_some())
    }

    fn visit_entry(&self, visit: &mut impl FnMut(&str, &V)) {
        if let Some(entry) = self.entry.as_deref() {
            visit(&entry.topic, &entry.value);
        }
    }
}

impl<V> Drop for TopicNode<V> {
    /// Drops the subtree from a heap list rather than by recursion, so a topic with very many
    /// levels cannot overflow the stack.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut detached: Vec<Self> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut node) = detached.pop() {
            detached.extend(node.children.drain().map(|(_, child)| child));
        }
    }
}

/// One pending step of a match walk over a [`TopicTree`].
enum TopicWalk<'a, V> {
    /// Match the filter levels `rest` (`None`: all consumed) against the topics under `node`.
    Match { node: &'a TopicNode<V>, rest: Option<&'a str>, at_root: bool },
    /// Every topic under `node` matches (the filter's `#`).
    Subtree(&'a TopicNode<V>),
}

// Derived `Clone` and `Copy` would require `V: Copy`; the walk only holds references.
impl<V> Clone for TopicWalk<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for TopicWalk<'_, V> {}

/// Lives on each shard; its partition of the retained messages: one value per exact topic name,
/// found for a new subscription by walking the filter's levels.
pub struct TopicTree<V> {
    root: TopicNode<V>,
    len: usize,
}

impl<V> TopicTree<V> {
    pub fn new() -> Self {
        Self { root: TopicNode::new(), len: 0 }
    }

    /// Stores `value` under `topic`; returns the value it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(Box::from(level)).or_insert_with(TopicNode::new);
        }
        match node.entry.as_deref_mut() {
            Some(entry) => Some(std::mem::replace(&mut entry.value, value)),
            None => {
                node.entry = Some(Box::new(TopicEntry { topic: Box::from(topic), value }));
                self.len += 1;
                None
            }
        }
    }

    /// Removes the value stored under `topic`; the nodes left empty are freed.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        let entry = node.entry.take()?;
        self.len -= 1;
        if node.parts() == 0 {
            self.prune(topic);
        }
        Some(entry.value)
    }

    /// Cuts the branch leading to the now empty node of `topic`, just below the deepest node on
    /// the way that still holds something else.
    fn prune(&mut self, topic: &str) {
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, level) in topic.split('/').enumerate() {
            // The root is always kept; another node is kept when it holds more than the edge
            // towards the emptied node.
            if depth > 0 && node.parts() > 1 {
                keep_depth = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut keeper = &mut self.root;
        let mut levels = topic.split('/');
        for level in levels.by_ref().take(keep_depth) {
            match keeper.children.get_mut(level) {
                Some(child) => keeper = child,
                None => return,
            }
        }
        if let Some(level) = levels.next() {
            keeper.children.remove(level);
        }
    }

    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.entry.as_deref().map(|entry| &entry.value)
    }

    /// Calls `visit(topic, value)` once for every stored topic that `filter` matches, walking
    /// only the branches the filter can reach.
    pub fn for_each_match(&self, filter: &str, mut visit: impl FnMut(&str, &V)) {
        let mut pending = PendingStack::new();
        pending.push(TopicWalk::Match { node: &self.root, rest: Some(filter), at_root: true });
        while let Some(walk) = pending.pop() {
            let (node, levels, at_root) = match walk {
                TopicWalk::Subtree(node) => {
                    node.visit_entry(&mut visit);
                    for child in node.children.values() {
                        pending.push(TopicWalk::Subtree(child));
                    }
                    continue;
                }
                TopicWalk::Match { node, rest: None, .. } => {
                    node.visit_entry(&mut visit);
                    continue;
                }
                TopicWalk::Match { node, rest: Some(levels), at_root } => (node, levels, at_root),
            };
            // A wildcard first level does not match topics that start with `$` ([MQTT-4.7.2-1]).
            let wildcard_matches = |level: &str| !(at_root && level.starts_with('$'));
            match split_level(levels) {
                ("#", None) => {
                    node.visit_entry(&mut visit);
                    for (level, child) in &node.children {
                        if wildcard_matches(level) {
                            pending.push(TopicWalk::Subtree(child));
                        }
                    }
                }
                ("+", tail) => {
                    for (level, child) in &node.children {
                        if wildcard_matches(level) {
                            pending.push(TopicWalk::Match {
                                node: child,
                                rest: tail,
                                at_root: false,
                            });
                        }
                    }
                }
                (literal, tail) => {
                    if let Some(child) = node.children.get(literal) {
                        pending.push(TopicWalk::Match { node: child, rest: tail, at_root: false });
                    }
                }
            }
        }
    }

    /// The number of stored topics.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored (topic, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> + '_ {
        let mut pending = vec![&self.root];
        std::iter::from_fn(move || loop {
            let node = pending.pop()?;
            pending.extend(node.children.values());
            if let Some(entry) = node.entry.as_deref() {
                return Some((&*entry.topic, &entry.value));
            }
        })
    }
}

impl<V> Default for TopicTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: fmt::Debug> fmt::Debug for TopicTree<V> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    /// Checks `topic_matches`, and that both trees agree with it on the same pair.
    #[track_caller]
    fn check(filter: &str, topic: &str, expected: bool) {
        assert_eq!(topic_matches(filter, topic), expected, "topic_matches({filter:?}, {topic:?})");

        let mut trie = SubscriptionTrie::new();
        trie.insert(filter, 1_u8, ());
        let mut trie_matches = Vec::new();
        trie.for_each_match(topic, |matched, key, ()| {
            trie_matches.push((matched.to_owned(), *key))
        });
        let trie_expected = if expected { vec![(filter.to_owned(), 1)] } else { vec![] };
        assert_eq!(trie_matches, trie_expected, "trie: {filter:?} against {topic:?}");

        let mut tree = TopicTree::new();
        tree.insert(topic, ());
        let mut tree_matches = Vec::new();
        tree.for_each_match(filter, |matched, ()| tree_matches.push(matched.to_owned()));
        let tree_expected = if expected { vec![topic.to_owned()] } else { vec![] };
        assert_eq!(tree_matches, tree_expected, "tree: {filter:?} against {topic:?}");
    }

    #[test]
    fn spec_examples() {
        // 4.7.1.2: the multi-level wildcard, which also matches its parent level.
        check("sport/tennis/player1/#", "sport/tennis/player1", true);
        check("sport/tennis/player1/#", "sport/tennis/player1/ranking", true);
        check("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true);
        check("sport/tennis/player1/#", "sport/tennis/player2", false);
        check("sport/tennis/player1/#", "sport/tennis", false);
        check("sport/#", "sport", true);
        check("sport/tennis/#", "sport/tennisplayer1", false);
        check("#", "sport", true);
        check("#", "/", true);
        check("#", "a/b/c", true);
        // 4.7.1.3: the single-level wildcard matches exactly one level.
        check("sport/tennis/+", "sport/tennis/player1", true);
        check("sport/tennis/+", "sport/tennis/player2", true);
        check("sport/tennis/+", "sport/tennis/player1/ranking", false);
        check("sport/+", "sport", false);
        check("sport/+", "sport/", true);
        check("+", "sport", true);
        check("+/tennis/#", "sport/tennis", true);
        check("sport/+/player1", "sport/tennis/player1", true);
        check("+/+", "/finance", true);
        check("/+", "/finance", true);
        check("+", "/finance", false);
        // 4.7.2: topics starting with `$` are not matched by a leading wildcard.
        check("#", "$SYS/monitor/Clients", false);
        check("#", "$SYS", false);
        check("+/monitor/Clients", "$SYS/monitor/Clients", false);
        check("+/#", "$SYS/monitor", false);
        check("$SYS/#", "$SYS/monitor/Clients", true);
        check("$SYS/#", "$SYS", true);
        check("$SYS/monitor/+", "$SYS/monitor/Clients", true);
        check("a/+", "a/$b", true);
        check("a/#", "a/$b", true);
        // 4.7.3: case and spaces are significant, empty levels are levels.
        check("ACCOUNTS", "Accounts", false);
        check("Accounts payable", "Accounts payable", true);
        check("a/+/b", "a//b", true);
        check("a//b", "a/b", false);
        check("+/a", "/a", true);
        check("a/+", "a/", true);
        check("a/#", "a/", true);
        check("+/+/#", "a", false);
        check("+/#", "a", true);
        check("a/+/#", "a/x", true);
        check("a/b", "a/b/c", false);
        check("a/b/c", "a/b", false);
    }

    #[test]
    fn trie_replaces_gets_and_removes() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert("a/+", 1_u8, 'x'), None);
        assert_eq!(trie.insert("a/+", 1, 'y'), Some('x'));
        assert_eq!(trie.insert("a/+", 2, 'z'), None);
        assert_eq!(trie.insert("#", 1, 'w'), None);
        assert_eq!((trie.len(), trie.filters_len()), (3, 2));
        assert_eq!(trie.get("a/+", &1), Some(&'y'));
        assert_eq!(trie.get("a/b", &1), None);
        assert!(trie.filter_has_entries("a/+"));
        assert!(!trie.filter_has_entries("a"));
        assert!(!trie.filter_has_entries("a/#"));
        assert_eq!(trie.remove("a/+", &3), None);
        assert_eq!(trie.remove("a/+", &1), Some('y'));
        assert_eq!(trie.remove("a/+", &2), Some('z'));
        assert!(!trie.filter_has_entries("a/+"));
        assert_eq!((trie.len(), trie.filters_len()), (1, 1));
        assert_eq!(trie.iter().collect::<Vec<_>>(), vec![("#", &1, &'w')]);
        assert_eq!(format!("{trie:?}"), r##"{("#", 1): 'w'}"##);
    }

    #[test]
    fn tree_replaces_gets_and_removes() {
        let mut tree = TopicTree::new();
        assert_eq!(tree.insert("a/b", 1), None);
        assert_eq!(tree.insert("a/b", 2), Some(1));
        assert_eq!(tree.insert("a", 3), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.get("a/b"), Some(&2));
        assert_eq!(tree.get("a/c"), None);
        assert_eq!(tree.remove("a/c"), None);
        assert_eq!(tree.remove("a"), Some(3));
        assert_eq!(tree.remove("a"), None);
        assert_eq!(tree.iter().collect::<Vec<_>>(), vec![("a/b", &2)]);
        assert_eq!(format!("{tree:?}"), r#"{"a/b": 2}"#);
        assert_eq!(tree.remove("a/b"), Some(2));
        assert!(tree.is_empty());
        assert_eq!(tree_nodes_len(&tree), 0);
    }

    #[test]
    fn removing_everything_frees_every_node() {
        let filters = ["a/b/c", "a/b", "a/+/c/#", "+", "#", "/", "a//#", "$SYS/#", "a/b/c/d/e"];
        let mut trie = SubscriptionTrie::new();
        let mut tree = TopicTree::new();
        for (index, filter) in filters.iter().enumerate() {
            trie.insert(filter, 1_u8, index);
            trie.insert(filter, 2_u8, index);
            tree.insert(filter, index);
        }
        assert!(trie_nodes_len(&trie) > 0);
        // Remove in an order unrelated to insertion, so pruning meets shared prefixes.
        for filter in filters.iter().rev().chain(filters.iter()) {
            trie.remove(filter, &2);
        }
        for filter in filters {
            trie.remove(filter, &1);
            tree.remove(filter);
            assert_trie_pruned(&trie);
        }
        assert!(trie.is_empty() && tree.is_empty());
        assert_eq!(trie.filters_len(), 0);
        assert_eq!(trie_nodes_len(&trie), 0);
        assert_eq!(tree_nodes_len(&tree), 0);
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        // Far deeper than a test thread's stack could hold with one frame per level.
        const LEVELS: usize = 100_000;
        let filter = vec!["+"; LEVELS].join("/");
        let topic = vec!["a"; LEVELS].join("/");
        let literal = format!("{topic}/#");

        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter, 1_u8, ());
        trie.insert(&literal, 1_u8, ());
        let mut matched = 0;
        trie.for_each_match(&topic, |_, _, ()| matched += 1);
        assert_eq!(matched, 2);
        assert_eq!(trie.iter().count(), 2);
        assert_eq!(trie.remove(&filter, &1), Some(()));
        drop(trie);

        let mut tree = TopicTree::new();
        tree.insert(&topic, ());
        let mut matched = 0;
        tree.for_each_match(&filter, |_, ()| matched += 1);
        tree.for_each_match("#", |_, ()| matched += 1);
        assert_eq!(matched, 2);
        assert_eq!(tree.remove(&topic), Some(()));
        tree.insert(&topic, ());
        drop(tree);
    }

    #[test]
    fn pending_stack_keeps_order_when_it_spills() {
        let mut stack = PendingStack::new();
        let count = PENDING_INLINE_CAPACITY * 3;
        for item in 0..count {
            stack.push(item);
        }
        let popped: Vec<usize> = std::iter::from_fn(|| stack.pop()).collect();
        assert_eq!(popped, (0..count).rev().collect::<Vec<_>>());
    }

    /// The trie's nodes other than the root.
    fn trie_nodes_len<K, V>(trie: &SubscriptionTrie<K, V>) -> usize {
        let mut pending = vec![&trie.root];
        let mut count = 0;
        while let Some(node) = pending.pop() {
            count += 1;
            pending.extend(node.children.values());
            pending.extend(node.single_level.as_deref());
        }
        count - 1
    }

    /// The tree's nodes other than the root.
    fn tree_nodes_len<V>(tree: &TopicTree<V>) -> usize {
        let mut pending = vec![&tree.root];
        let mut count = 0;
        while let Some(node) = pending.pop() {
            count += 1;
            pending.extend(node.children.values());
        }
        count - 1
    }

    /// No node but the root is empty, no slot holds an empty set, and the counters are right.
    #[track_caller]
    fn assert_trie_pruned<K: Eq + Hash, V>(trie: &SubscriptionTrie<K, V>) {
        let mut pending = vec![(&trie.root, true)];
        let (mut entries_len, mut filters_len) = (0, 0);
        while let Some((node, is_root)) = pending.pop() {
            assert!(is_root || node.parts() > 0, "an empty node was left behind");
            for entries in
                [node.exact.as_deref(), node.multi_level.as_deref()].into_iter().flatten()
            {
                assert!(!entries.by_key.is_empty(), "an empty slot was left behind");
                filters_len += 1;
                entries_len += entries.by_key.len();
            }
            pending.extend(node.children.values().map(|child| (child, false)));
            pending.extend(node.single_level.as_deref().map(|child| (child, false)));
        }
        assert_eq!((trie.len(), trie.filters_len()), (entries_len, filters_len));
    }

    #[track_caller]
    fn assert_tree_pruned<V>(tree: &TopicTree<V>) {
        let mut pending = vec![(&tree.root, true)];
        let mut len = 0;
        while let Some((node, is_root)) = pending.pop() {
            assert!(is_root || node.parts() > 0, "an empty node was left behind");
            len += usize::from(node.entry.is_some());
            pending.extend(node.children.values().map(|child| (child, false)));
        }
        assert_eq!(tree.len(), len);
    }

    /// A small alphabet, so that generated filters and topics often meet; it has an empty level
    /// and `$` levels, which matter when they come first.
    fn level() -> impl Strategy<Value = &'static str> {
        select(&["a", "b", "", "$x", "$SYS"][..])
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        let filter_level = prop_oneof![3 => level(), 2 => Just("+")];
        (prop::collection::vec(filter_level, 0..5), any::<bool>()).prop_map(
            |(levels, hash)| match (levels.is_empty(), hash) {
                (true, _) => "#".to_owned(),
                (false, true) => format!("{}/#", levels.join("/")),
                (false, false) => levels.join("/"),
            },
        )
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Insert { pick: Index, key: u8 },
        Remove { pick: Index, key: u8 },
    }

    fn operations() -> impl Strategy<Value = Vec<Operation>> {
        let operation = prop_oneof![
            3 => (any::<Index>(), 0..3_u8).prop_map(|(pick, key)| Operation::Insert { pick, key }),
            2 => (any::<Index>(), 0..3_u8).prop_map(|(pick, key)| Operation::Remove { pick, key }),
        ];
        prop::collection::vec(operation, 0..48)
    }

    fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
        items.sort();
        items
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn trie_matches_the_model(
            filters in prop::collection::vec(filter(), 1..8),
            topics in prop::collection::vec(topic(), 1..6),
            operations in operations(),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut model: HashMap<(String, u8), usize> = HashMap::new();
            for (step, operation) in operations.iter().enumerate() {
                match operation {
                    Operation::Insert { pick, key } => {
                        let filter = pick.get(&filters);
                        prop_assert_eq!(
                            trie.insert(filter, *key, step),
                            model.insert((filter.clone(), *key), step)
                        );
                    }
                    Operation::Remove { pick, key } => {
                        let filter = pick.get(&filters);
                        prop_assert_eq!(
                            trie.remove(filter, key),
                            model.remove(&(filter.clone(), *key))
                        );
                    }
                }
                assert_trie_pruned(&trie);
                prop_assert_eq!(trie.len(), model.len());
                for filter in &filters {
                    let has_entries = model.keys().any(|(modelled, _)| modelled == filter);
                    prop_assert_eq!(trie.filter_has_entries(filter), has_entries);
                    for key in 0..3 {
                        let expected = model.get(&(filter.clone(), key));
                        prop_assert_eq!(trie.get(filter, &key), expected);
                    }
                }
                for topic in &topics {
                    let mut matched = Vec::new();
                    trie.for_each_match(topic, |filter, key, value| {
                        matched.push((filter.to_owned(), *key, *value));
                    });
                    let matched = sorted(matched);
                    let mut unique = matched.clone();
                    unique.dedup_by(|left, right| (&left.0, left.1) == (&right.0, right.1));
                    prop_assert_eq!(&unique, &matched, "a match was visited twice");
                    let expected = sorted(
                        model
                            .iter()
                            .filter(|((filter, _), _)| topic_matches(filter, topic))
                            .map(|((filter, key), value)| (filter.clone(), *key, *value))
                            .collect(),
                    );
                    prop_assert_eq!(matched, expected, "topic {:?}", topic);
                }
            }
            let all = sorted(trie.iter().map(|(filter, key, value)| (filter.to_owned(), *key, *value)).collect());
            let expected = sorted(model.iter().map(|((filter, key), value)| (filter.clone(), *key, *value)).collect());
            prop_assert_eq!(all, expected);
            for (filter, key) in model.keys() {
                trie.remove(filter, key);
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.filters_len(), 0);
            prop_assert_eq!(trie_nodes_len(&trie), 0);
        }

        #[test]
        fn tree_matches_the_model(
            topics in prop::collection::vec(topic(), 1..8),
            filters in prop::collection::vec(filter(), 1..6),
            operations in operations(),
        ) {
            let mut tree = TopicTree::new();
            let mut model: HashMap<String, usize> = HashMap::new();
            for (step, operation) in operations.iter().enumerate() {
                match operation {
                    Operation::Insert { pick, .. } => {
                        let topic = pick.get(&topics);
                        prop_assert_eq!(tree.insert(topic, step), model.insert(topic.clone(), step));
                    }
                    Operation::Remove { pick, .. } => {
                        let topic = pick.get(&topics);
                        prop_assert_eq!(tree.remove(topic), model.remove(topic));
                    }
                }
                assert_tree_pruned(&tree);
                prop_assert_eq!(tree.len(), model.len());
                for topic in &topics {
                    prop_assert_eq!(tree.get(topic), model.get(topic));
                }
                for filter in &filters {
                    let mut matched = Vec::new();
                    tree.for_each_match(filter, |topic, value| matched.push((topic.to_owned(), *value)));
                    let matched = sorted(matched);
                    let mut unique = matched.clone();
                    unique.dedup_by(|left, right| left.0 == right.0);
                    prop_assert_eq!(&unique, &matched, "a topic was visited twice");
                    let expected = sorted(
                        model
                            .iter()
                            .filter(|(topic, _)| topic_matches(filter, topic))
                            .map(|(topic, value)| (topic.clone(), *value))
                            .collect(),
                    );
                    prop_assert_eq!(matched, expected, "filter {:?}", filter);
                }
            }
            let all = sorted(tree.iter().map(|(topic, value)| (topic.to_owned(), *value)).collect());
            prop_assert_eq!(all, sorted(model.clone().into_iter().collect()));
            for topic in model.keys() {
                tree.remove(topic);
            }
            prop_assert!(tree.is_empty());
            prop_assert_eq!(tree_nodes_len(&tree), 0);
        }
    }
}

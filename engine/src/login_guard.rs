//! Logins that survive a flood of wrong passwords: a budget of failed logins per source address,
//! a ban for a source that keeps trying, and password checks shared fairly between sources.
//!
//! Password hashes are slow on purpose (argon2id: tens of milliseconds), so a node checks only
//! a few dozen a second. Without these, one address sending wrong passwords fills the check
//! queue and every other client's login waits or is refused "server busy".
//!
//! - **Budget** ([`LoginGuard`]): each source (an IPv4 address, or an IPv6 /64, which one
//!   holder usually has whole) may fail `max_login_failures` checks in a burst, refilled at that
//!   many per minute. A source with no budget left is refused at once, without a check (v5
//!   0x9F "connection rate exceeded", 3.1.1 code 3): its attempts cost the node nothing.
//! - **Ban**: a source refused [`BAN_AFTER`] times within [`STRIKE_WINDOW`] after it failed (it
//!   keeps trying while backed off, or while its share of the checks is full) is banned for
//!   `login_ban_secs` (v5 0x8A "banned", 3.1.1 code 5).
//! - **Fairness** ([`FairQueue`]): checks wait in one queue per source, served round-robin by
//!   the check threads, at most [`QUEUED_PER_SOURCE`] per source. Sources with failed logins
//!   within their budget's memory are *suspect* and served after the others (at least one
//!   suspect check in every [`SUSPECT_SHARE`], so that they are never starved): a login from an
//!   address that has not failed goes ahead of any flood, and waits at most for one check of
//!   each other clean source.
//!
//! A successful login does not reset its source's budget (a flooder with one valid account
//! could otherwise reset it at will). Sources are forgotten once idle with a full budget; at
//! most [`SOURCES_MAX`] are tracked (past that, new sources are not budgeted, only queued
//! fairly). Each source is logged once when it first backs off in a [`STRIKE_WINDOW`], and
//! once when banned.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A source that keeps trying while backed off is banned after this many refusals within
/// [`STRIKE_WINDOW`].
pub const BAN_AFTER: u32 = 100;
/// The window refusals are counted in, and how often a source's back-off is logged at most.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(600);
/// Sources tracked at most.
pub const SOURCES_MAX: usize = 65_536;
/// Password checks one source may have waiting at most.
pub const QUEUED_PER_SOURCE: usize = 4;
/// One check in this many is a suspect source's when both kinds wait.
pub const SUSPECT_SHARE: u32 = 4;

/// Where a login comes from, as budgeted: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(u128);

impl Source {
    pub fn of(address: IpAddr) -> Source {
        match address {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                None => Source((u128::from(v6) >> 64 << 64) | 1 << 32),
            },
        }
    }
}

/// What to do with a login from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check its password.
    Check,
    /// Refuse it without a check: the source used up its budget of failures.
    Backoff,
    /// Refuse it: the source is banned.
    Banned,
}

/// Something worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The source used up its budget (first time in a [`STRIKE_WINDOW`]).
    BackingOff { failures: u32 },
    /// The source is banned for this long.
    Banned { ban: Duration },
}

#[derive(Debug)]
struct Tracked {
    /// Failures the source may still have before it backs off (refills over time).
    budget: f64,
    refilled: Instant,
    /// Failures in all, for the log.
    failures: u32,
    /// Refusals since `window_start`.
    strikes: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
    logged_backoff: Option<Instant>,
}

/// The failure budgets and bans of a node's sources.
#[derive(Debug)]
pub struct LoginGuard {
    /// Failures in a burst, and refilled per minute (0: no budget, no ban).
    failures_max: u32,
    ban: Duration,
    sources: HashMap<Source, Tracked>,
    last_sweep: Option<Instant>,
    /// Failed checks in all.
    failures: u64,
}

impl LoginGuard {
    pub fn new(failures_max: u32, ban: Duration) -> LoginGuard {
        LoginGuard { failures_max, ban, sources: HashMap::new(), last_sweep: None, failures: 0 }
    }

    /// Failed checks in all.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Whether `source` failed logins lately (its budget is not full again): its checks wait
    /// behind other sources'.
    pub fn is_suspect(&mut self, source: Source, now: Instant) -> bool {
        let failures_max = self.failures_max;
        let Some(tracked) = self.sources.get_mut(&source) else { return false };
        refill(tracked, failures_max, now);
        tracked.budget < f64::from(failures_max)
    }

    /// Sources banned now.
    pub fn banned(&self, now: Instant) -> usize {
        self.sources.values().filter(|t| t.banned_until.is_some_and(|until| until > now)).count()
    }

    /// Whether a login from `source` is checked, and what to log about it.
    pub fn admit(&mut self, source: Source, now: Instant) -> (Verdict, Option<Event>) {
        if self.failures_max == 0 {
            return (Verdict::Check, None);
        }
        self.sweep(now);
        let (failures_max, ban) = (self.failures_max, self.ban);
        let Some(tracked) = self.sources.get_mut(&source) else { return (Verdict::Check, None) };
        refill(tracked, failures_max, now);
        if tracked.banned_until.is_some_and(|until| until > now) {
            return (Verdict::Banned, None);
        }
        tracked.banned_until = None;
        if tracked.budget >= 1.0 {
            return (Verdict::Check, None);
        }
        if let Some(banned) = strike(tracked, ban, now) {
            return (Verdict::Banned, Some(banned));
        }
        let log_due =
            tracked.logged_backoff.is_none_or(|at| now.duration_since(at) >= STRIKE_WINDOW);
        if log_due {
            tracked.logged_backoff = Some(now);
            return (Verdict::Backoff, Some(Event::BackingOff { failures: tracked.failures }));
        }
        (Verdict::Backoff, None)
    }

    /// A login from `source` found the source's password checks full (see [`FairQueue`]): a
    /// strike towards a ban if the source spent more than half its budget of failures lately (a
    /// busy NAT of legitimate clients, or one where someone mistyped once, is only refused
    /// "server busy"). The event to log when it is banned now.
    pub fn busy(&mut self, source: Source, now: Instant) -> Option<Event> {
        let (failures_max, ban) = (self.failures_max, self.ban);
        let tracked = self.sources.get_mut(&source)?;
        refill(tracked, failures_max, now);
        // Half its budget spent lately: a source that mistyped once is not struck.
        if tracked.budget * 2.0 >= f64::from(failures_max) {
            return None;
        }
        strike(tracked, ban, now)
    }

    /// A password check of a login from `source` failed.
    pub fn failed(&mut self, source: Source, now: Instant) {
        self.failures += 1;
        if self.failures_max == 0 {
            return;
        }
        self.sweep(now);
        let failures_max = self.failures_max;
        if !self.sources.contains_key(&source) && self.sources.len() >= SOURCES_MAX {
            return;
        }
        let tracked = self.sources.entry(source).or_insert_with(|| Tracked {
            budget: f64::from(failures_max),
            refilled: now,
            failures: 0,
            strikes: 0,
            window_start: now,
            banned_until: None,
            logged_backoff: None,
        });
        refill(tracked, failures_max, now);
        tracked.budget = (tracked.budget - 1.0).max(0.0);
        tracked.failures = tracked.failures.saturating_add(1);
    }

    /// Forgets sources with a full budget and no ban, at most once a minute.
    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|at| now.duration_since(at) < Duration::from_secs(60)) {
            return;
        }
        self.last_sweep = Some(now);
        let failures_max = self.failures_max;
        self.sources.retain(|_, tracked| {
            refill(tracked, failures_max, now);
            let banned = tracked.banned_until.is_some_and(|until| until > now);
            banned || tracked.budget < f64::from(failures_max)
        });
    }
}

/// Counts a refusal of a suspect source towards its ban: the ban event once it is banned.
fn strike(tracked: &mut Tracked, ban: Duration, now: Instant) -> Option<Event> {
    if now.duration_since(tracked.window_start) >= STRIKE_WINDOW {
        tracked.window_start = now;
        tracked.strikes = 0;
    }
    tracked.strikes += 1;
    if ban.is_zero() || tracked.strikes < BAN_AFTER {
        return None;
    }
    tracked.banned_until = Some(now + ban);
    tracked.strikes = 0;
    Some(Event::Banned { ban })
}

/// Adds what the budget earned since it was last refilled: `failures_max` a minute.
fn refill(tracked: &mut Tracked, failures_max: u32, now: Instant) {
    let earned =
        now.duration_since(tracked.refilled).as_secs_f64() * f64::from(failures_max) / 60.0;
    tracked.budget = (tracked.budget + earned).min(f64::from(failures_max));
    tracked.refilled = now;
}

/// Work waiting per source, served round-robin, clean sources before suspect ones.
pub struct FairQueue<T> {
    /// Per source: its class as of its last push (a source that keeps work waiting moves to
    /// the suspect class at its next turn once it failed), and its work.
    queues: HashMap<Source, (usize, VecDeque<T>)>,
    /// Sources with work, in the order they are served: clean ones, then suspect ones.
    turns: [VecDeque<Source>; 2],
    len: usize,
    total_max: usize,
    /// Clean checks served since the last suspect one.
    clean_run: u32,
}

impl<T> std::fmt::Debug for FairQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairQueue").field("len", &self.len).finish_non_exhaustive()
    }
}

const CLEAN: usize = 0;
const SUSPECT: usize = 1;

impl<T> FairQueue<T> {
    pub fn new(total_max: usize) -> FairQueue<T> {
        FairQueue {
            queues: HashMap::new(),
            turns: [VecDeque::new(), VecDeque::new()],
            len: 0,
            total_max,
            clean_run: 0,
        }
    }

    /// Queues `item` for `source` (`suspect`: see [`LoginGuard::is_suspect`]); gives it back
    /// when the source has [`QUEUED_PER_SOURCE`] waiting or the queue is full.
    pub fn push(&mut self, source: Source, suspect: bool, item: T) -> Result<(), T> {
        let class = if suspect { SUSPECT } else { CLEAN };
        let (queued_class, queue) = self.queues.entry(source).or_insert((class, VecDeque::new()));
        if queue.len() >= QUEUED_PER_SOURCE || self.len >= self.total_max {
            if queue.is_empty() {
                self.queues.remove(&source);
            }
            return Err(item);
        }
        *queued_class = class;
        if queue.is_empty() {
            self.turns[class].push_back(source);
        }
        queue.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// `source` failed a check: its waiting work goes behind the clean sources' now.
    pub fn demote(&mut self, source: Source) {
        let Some((class, _)) = self.queues.get_mut(&source) else { return };
        if *class == SUSPECT {
            return;
        }
        *class = SUSPECT;
        if let Some(at) = self.turns[CLEAN].iter().position(|&queued| queued == source) {
            self.turns[CLEAN].remove(at);
            self.turns[SUSPECT].push_back(source);
        }
    }

    /// The next item: the oldest of the source whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        let suspect_due = self.clean_run + 1 >= SUSPECT_SHARE;
        let class = match (self.turns[CLEAN].is_empty(), self.turns[SUSPECT].is_empty()) {
            (true, true) => return None,
            (false, false) if !suspect_due => CLEAN,
            (false, true) => CLEAN,
            _ => SUSPECT,
        };
        self.clean_run = if class == CLEAN { self.clean_run + 1 } else { 0 };
        let source = self.turns[class].pop_front()?;
        let (next_class, queue) = self.queues.get_mut(&source)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&source);
        } else {
            self.turns[*next_class].push_back(source);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(last: u8) -> Source {
        Source::of(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn a_source_backs_off_after_its_failures_and_earns_them_back_over_a_minute() {
        let mut guard = LoginGuard::new(10, Duration::from_secs(600));
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(guard.admit(source(2), now).0, Verdict::Check);
            guard.failed(source(2), now);
        }
        let (verdict, event) = guard.admit(source(2), now);
        assert_eq!(verdict, Verdict::Backoff);
        assert_eq!(event, Some(Event::BackingOff { failures: 10 }));
        // Logged once per window.
        assert_eq!(guard.admit(source(2), now), (Verdict::Backoff, None));
        // Another source is untouched.
        assert_eq!(guard.admit(source(3), now).0, Verdict::Check);
        // One failure is earned back every 6 s.
        assert_eq!(guard.admit(source(2), now + Duration::from_secs(5)).0, Verdict::Backoff);
        assert_eq!(guard.admit(source(2), now + Duration::from_secs(7)).0, Verdict::Check);
    }

    #[test]
    fn a_source_that_keeps_trying_is_banned_then_let_back() {
        let ban = Duration::from_secs(600);
        let mut guard = LoginGuard::new(2, ban);
        let now = Instant::now();
        guard.failed(source(9), now);
        guard.failed(source(9), now);
        let mut verdicts = Vec::new();
        for _ in 0..BAN_AFTER {
            verdicts.push(guard.admit(source(9), now));
        }
        assert!(verdicts[..BAN_AFTER as usize - 1].iter().all(|(v, _)| *v == Verdict::Backoff));
        assert_eq!(verdicts.last(), Some(&(Verdict::Banned, Some(Event::Banned { ban }))));
        assert_eq!(guard.banned(now), 1);
        let later = now + ban - Duration::from_secs(1);
        assert_eq!(guard.admit(source(9), later), (Verdict::Banned, None));
        assert_eq!(guard.admit(source(9), now + ban).0, Verdict::Check);
    }

    #[test]
    fn a_failing_source_that_keeps_its_checks_full_is_banned_and_a_clean_one_is_not() {
        let ban = Duration::from_secs(600);
        let mut guard = LoginGuard::new(10, ban);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(guard.busy(source(5), now), None, "a source that never failed");
        }
        guard.failed(source(7), now);
        for _ in 0..1000 {
            assert_eq!(guard.busy(source(7), now), None, "a source that mistyped once");
        }
        for _ in 0..6 {
            guard.failed(source(6), now);
        }
        let events: Vec<_> = (0..BAN_AFTER).filter_map(|_| guard.busy(source(6), now)).collect();
        assert_eq!(events, [Event::Banned { ban }]);
        assert_eq!(guard.admit(source(6), now).0, Verdict::Banned);
        assert_eq!(guard.admit(source(5), now).0, Verdict::Check);
    }

    #[test]
    fn zero_failures_turns_the_budget_off() {
        let mut guard = LoginGuard::new(0, Duration::from_secs(600));
        let now = Instant::now();
        for _ in 0..1000 {
            guard.failed(source(2), now);
        }
        assert_eq!(guard.admit(source(2), now).0, Verdict::Check);
    }

    #[test]
    fn ipv6_sources_are_budgeted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(Source::of(mapped), source(2));
    }

    #[test]
    fn sources_take_turns_and_one_cannot_fill_the_queue() {
        let mut queue = FairQueue::new(256);
        for i in 0..QUEUED_PER_SOURCE {
            queue.push(source(1), false, format!("flood {i}")).unwrap();
        }
        assert!(queue.push(source(1), false, "one too many".to_string()).is_err());
        queue.push(source(2), false, "legit".to_string()).unwrap();
        assert_eq!(queue.pop().as_deref(), Some("flood 0"));
        assert_eq!(queue.pop().as_deref(), Some("legit"), "waited for more than one flood check");
        assert_eq!(queue.len(), QUEUED_PER_SOURCE - 1);
        while queue.pop().is_some() {}
        assert_eq!(queue.len(), 0);
        let mut small = FairQueue::new(1);
        small.push(source(1), false, 1).unwrap();
        assert_eq!(small.push(source(2), false, 2), Err(2));
    }

    #[test]
    fn clean_sources_go_first_and_suspect_ones_still_get_a_share() {
        let mut queue = FairQueue::new(256);
        for last in 10..20 {
            queue.push(source(last), true, format!("suspect {last}")).unwrap();
        }
        for last in 30..40 {
            queue.push(source(last), false, format!("clean {last}")).unwrap();
        }
        // A clean source with work waiting that fails meanwhile is suspect from its next turn,
        // and one demoted (its check failed) at once.
        queue.push(source(30), false, "clean 30, second".to_string()).unwrap();
        queue.push(source(30), true, "clean 30, now suspect".to_string()).unwrap();
        queue.push(source(31), false, "clean 31, second".to_string()).unwrap();
        queue.demote(source(31));
        let order: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order[0], "clean 30", "{order:?}");
        for demoted in ["clean 30, second", "clean 31"] {
            let at = order.iter().position(|item| item == demoted).unwrap();
            assert!(at > 13, "{demoted} served as a clean source: {order:?}");
        }
        // One suspect check in every SUSPECT_SHARE while clean ones wait.
        let share = SUSPECT_SHARE as usize;
        let suspects = order[..share * 3].iter().filter(|item| item.starts_with("suspect")).count();
        assert_eq!(suspects, 3, "{order:?}");
        assert_eq!(order.len(), 23);
    }
}

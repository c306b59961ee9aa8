//! Who may connect, and what they may do: the password file (checked on CONNECT, before the
//! client reaches its home shard) and the ACL (handed to every shard as its
//! [`Authorizer`]). Both are Mosquitto's formats (`shardmq_auth`), so operators migrate their
//! files unchanged, and both are read again on SIGHUP: a bad new file keeps the old one in force
//! and the log says why.
//!
//! The password file also serves MQTT 5 enhanced authentication (SCRAM-SHA-256,
//! `enhanced_auth.rs`): on CONNECT in the handshake, and for re-authentication on the shards
//! through their [`Authorizer`], which reads the file in force when each exchange starts.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use shardmq_auth::{Acl, PasswordFile};
use shardmq_io::codec::{Connect, ReasonCode};
use shardmq_shard::authorize::{AuthStep, Authorizer};

use crate::config::Security;
use crate::enhanced_auth;
use crate::login_guard::{Event, FairQueue, LoginGuard, Source, Verdict};

/// Threads that check passwords for the whole node. Not the shards' blocking threads: those
/// run the storage commits, which a flood of logins (argon2id takes tens of milliseconds on
/// purpose) must not hold up.
const PASSWORD_CHECK_THREADS: usize = 2;
/// Password checks waiting at most; past it (or past a source's share, see `login_guard`) a
/// CONNECT is refused with 0x89 "server busy" (a login storm costs bounded memory and a bounded
/// wait).
const PASSWORD_CHECKS_QUEUED_MAX: usize = 256;

type Check = Box<dyn FnOnce() + Send>;

/// The password checks waiting, per source, and the signal for the check threads.
type Checks = Arc<(Mutex<FairQueue<Check>>, Condvar)>;

/// The password file in force, shared by the handshake and every shard's [`Authorizer`] (a
/// reload replaces what it holds, so the next exchange uses the new file).
type Passwords = Arc<RwLock<Option<Arc<PasswordFile>>>>;

/// The node's security state, shared by every shard; read on CONNECT and when a shard picks up
/// a reloaded ACL, never per message.
#[derive(Debug)]
pub struct NodeSecurity {
    checks: Checks,
    /// Failed-login budgets and bans per source address.
    guard: Mutex<LoginGuard>,
    config: Security,
    passwords: Passwords,
    acl: RwLock<Option<Arc<Acl>>>,
    /// Bumped by every reload that changed the ACL: shards compare it with the one they hold.
    generation: AtomicU64,
}

/// A shard's [`Authorizer`]: the ACL file (everything allowed without one) and the password
/// file's authentication methods.
#[derive(Debug)]
struct NodeAuthorizer {
    acl: Option<Arc<Acl>>,
    passwords: Passwords,
}

impl Authorizer for NodeAuthorizer {
    fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.can_publish(username, client_id, topic))
    }

    fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.can_subscribe(username, client_id, filter))
    }

    fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.can_read(username, client_id, topic))
    }

    fn supports_auth_method(&self, method: &str) -> bool {
        enhanced_auth::supports(read(&self.passwords).as_deref(), method)
    }

    fn start_authentication(&self, method: &str, data: Option<&[u8]>) -> AuthStep {
        let passwords = read(&self.passwords).clone();
        enhanced_auth::start(passwords.as_deref(), method, data)
    }
}

impl NodeSecurity {
    /// Reads the configured files; an unreadable or malformed one stops the start-up (one line
    /// naming the file and line).
    pub fn load(config: &Security) -> anyhow::Result<NodeSecurity> {
        let passwords = config.password_file.as_deref().map(read_passwords).transpose()?;
        let acl = config.acl_file.as_deref().map(read_acl).transpose()?;
        if let Some(passwords) = &passwords {
            tracing::info!("{} users in the password file", passwords.len());
        }
        let checks: Checks =
            Arc::new((Mutex::new(FairQueue::new(PASSWORD_CHECKS_QUEUED_MAX)), Condvar::new()));
        for index in 0..PASSWORD_CHECK_THREADS {
            let checks = checks.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{index}"))
                .spawn(move || run_checks(&checks))?;
        }
        let guard = LoginGuard::new(config.login_failures_max, config.login_ban);
        Ok(NodeSecurity {
            checks,
            guard: Mutex::new(guard),
            config: config.clone(),
            passwords: Arc::new(RwLock::new(passwords)),
            acl: RwLock::new(acl),
            generation: AtomicU64::new(0),
        })
    }

    /// SIGHUP: reads the files again. A file that cannot be read or parsed leaves the one in
    /// force as it is, and the log says why.
    pub fn reload(&self) {
        if let Some(path) = &self.config.password_file {
            match read_passwords(path) {
                Ok(passwords) => {
                    // In force before the log says so (tests and operators act on the line).
                    let users = passwords.len();
                    *write(&self.passwords) = Some(passwords);
                    tracing::info!("reloaded {} ({users} users)", path.display());
                }
                Err(error) => tracing::error!("{error:#}; keeping the password file in force"),
            }
        }
        if let Some(path) = &self.config.acl_file {
            match read_acl(path) {
                Ok(acl) => {
                    *write(&self.acl) = Some(acl);
                    self.generation.fetch_add(1, Ordering::Release);
                    tracing::info!("reloaded {}", path.display());
                }
                Err(error) => tracing::error!("{error:#}; keeping the ACL in force"),
            }
        }
    }

    /// The ACL shards hold themselves to (with the password file's authentication methods),
    /// and its generation. `None` when users are not told apart (no file configured, and no
    /// client certificates that name users): everything is allowed, no method is offered, and
    /// sessions belong to nobody.
    pub fn authorizer(&self) -> (u64, Option<Arc<dyn Authorizer>>) {
        let generation = self.generation.load(Ordering::Acquire);
        let acl = read(&self.acl).clone();
        let users = self.config.password_file.is_some() || self.config.users_from_certificates;
        if acl.is_none() && !users {
            return (generation, None);
        }
        let authorizer = NodeAuthorizer { acl, passwords: self.passwords.clone() };
        (generation, Some(Arc::new(authorizer)))
    }

    /// Starts an enhanced-authentication exchange of a CONNECT (`enhanced_auth.rs`), against the
    /// password file in force. Cheap for SCRAM (the client does the slow hashing), so it runs on
    /// the shard.
    pub fn start_authentication(&self, method: &str, data: Option<&[u8]>) -> AuthStep {
        let passwords = read(&self.passwords).clone();
        enhanced_auth::start(passwords.as_deref(), method, data)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The password logins' counters, for `/metrics`.
    pub fn login_figures(&self) -> crate::metrics::LoginFigures {
        let guard = lock(&self.guard);
        crate::metrics::LoginFigures {
            failures: guard.failures(),
            banned_sources: guard.banned(Instant::now()),
            checks_queued: lock(&self.checks.0).len(),
        }
    }

    /// Checks a CONNECT's credentials, from `peer`: `Err` with the CONNACK reason to refuse it
    /// with (0x86 "bad user name or password" / 3.1.1 code 4, 0x87 "not authorized" / code 5,
    /// 0x9F while its source backs off after failed logins, 0x8A while it is banned, 0x89 when
    /// the checks of its source or of the node are full: see `login_guard`).
    pub async fn authenticate(
        &self,
        connect: &Connect,
        peer: Option<IpAddr>,
    ) -> Result<(), ReasonCode> {
        let Some(username) = connect.username.as_deref() else {
            return match self.config.allow_anonymous {
                true => Ok(()),
                false => Err(ReasonCode::NOT_AUTHORIZED),
            };
        };
        let Some(passwords) = read(&self.passwords).clone() else {
            // No password file: a user name cannot be checked. It is taken as given only where
            // anonymous clients are welcome anyway (loopback-only default, `allow_anonymous =
            // true`); with `allow_anonymous = false` nobody can log in.
            return match self.config.allow_anonymous {
                true => Ok(()),
                false => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            };
        };
        let Some(password) = connect.password.clone() else {
            return Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        };
        let source = Source::of(peer.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let (verdict, event) = lock(&self.guard).admit(source, Instant::now());
        log_event(peer, event);
        match verdict {
            Verdict::Check => {}
            Verdict::Backoff => return Err(ReasonCode::CONNECTION_RATE_EXCEEDED),
            Verdict::Banned => return Err(ReasonCode::BANNED),
        }
        let username = username.to_owned();
        // Hashes are slow on purpose (argon2id): on the node's password threads, each source in
        // its turn.
        let (reply, verified) = async_channel::bounded(1);
        let check: Check = Box::new(move || {
            let _ = reply.try_send(passwords.verify(&username, &password));
        });
        let suspect = lock(&self.guard).is_suspect(source, Instant::now());
        let (queue, ready) = &*self.checks;
        if lock(queue).push(source, suspect, check).is_err() {
            let event = lock(&self.guard).busy(source, Instant::now());
            log_event(peer, event);
            return Err(ReasonCode::SERVER_BUSY);
        }
        ready.notify_one();
        match verified.recv().await {
            Ok(true) => Ok(()),
            Ok(false) => {
                lock(&self.guard).failed(source, Instant::now());
                lock(&self.checks.0).demote(source);
                Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
            Err(_) => {
                tracing::error!("a password check failed (it panicked)");
                Err(ReasonCode::SERVER_UNAVAILABLE)
            }
        }
    }
}

/// A password-check thread: runs the checks waiting, each source in its turn.
fn run_checks(checks: &Checks) {
    let (queue, ready) = &**checks;
    loop {
        let check = {
            let mut waiting = lock(queue);
            loop {
                if let Some(check) = waiting.pop() {
                    break check;
                }
                waiting = ready.wait(waiting).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        // A panicking check drops its reply (the CONNECT is refused); the thread goes on.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    }
}

/// One log line for a source that backs off or is banned.
fn log_event(peer: Option<IpAddr>, event: Option<Event>) {
    let source = peer.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
    match event {
        None => {}
        Some(Event::BackingOff { failures }) => tracing::warn!(
            "{failures} failed logins from {source}: refusing its logins without a check until \
             its budget refills (max_login_failures)"
        ),
        Some(Event::Banned { ban }) => tracing::warn!(
            "{source} kept trying after failed logins: banned for {}s (login_ban_secs)",
            ban.as_secs()
        ),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_passwords(path: &Path) -> anyhow::Result<Arc<PasswordFile>> {
    let passwords = PasswordFile::load(path)
        .with_context(|| format!("cannot use password_file {}", path.display()))?;
    Ok(Arc::new(passwords))
}

fn read_acl(path: &Path) -> anyhow::Result<Arc<Acl>> {
    let acl = Acl::load(path).with_context(|| format!("cannot use acl_file {}", path.display()))?;
    Ok(Arc::new(acl))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

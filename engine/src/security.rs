//! Who may connect, and what they may do: the password file (checked on CONNECT, before the
//! client reaches its home shard) and the ACL (handed to every shard as its
//! [`Authorizer`]). Both are Mosquitto's formats (`shardmq_auth`), so operators migrate their
//! files unchanged, and both are read again on SIGHUP: a bad new file keeps the old one in force
//! and the log says why.
//!
//! The password file also serves MQTT 5 enhanced authentication (SCRAM-SHA-256,
//! `enhanced_auth.rs`): on CONNECT in the handshake, and for re-authentication on the shards
//! through their [`Authorizer`], which reads the file in force when each exchange starts.
//!
//! Before the password file, a CONNECT may be decided by a JWT in its password (`jwt_*` keys,
//! verified on the accepting shard: a signature check costs tens of microseconds, less than the
//! TLS handshake the shard already runs) and by the HTTP authentication service
//! (`auth_http.rs`, on threads of its own like the password checks, queued fairly per source).
//! The order: a password shaped like a JWT, when JWT keys are configured, is decided by its
//! verification alone; otherwise the HTTP service's `allow` or `deny` decides, and its `ignore`
//! (or a failure, with `auth_http_failure = "ignore"`) falls through to the password file.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use shardmq_auth::jwt::{JwtKeys, JwtRefusal, TopicClaim, RESULTS};
use shardmq_auth::{Acl, PasswordFile};
use shardmq_io::codec::{Connect, ProtocolVersion, ReasonCode};
use shardmq_shard::authorize::{AuthStep, Authorizer};

use crate::acl_cache::{AclCache, Action, Question};
use crate::auth_http::{self, Answer, HttpService};
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
    /// The HTTP authentication service, and the requests waiting for its threads.
    http: Option<(Arc<HttpService>, Checks)>,
    /// The JWT keys in force (reread on SIGHUP).
    jwt: RwLock<Option<Arc<JwtKeys>>>,
    /// JWT logins by outcome, in [`RESULTS`] order.
    jwt_outcomes: [AtomicU64; 5],
    /// Topic claims of the clients that logged in with a JWT carrying one.
    claims: Arc<Claims>,
    /// The HTTP ACL service, when one is configured.
    acl_http: Option<Arc<AclService>>,
}

/// Requests to the ACL service waiting for a thread at most; past it a question goes unasked
/// (its packet is refused: a miss fails closed).
const ACL_REQUESTS_QUEUED_MAX: usize = 4096;

/// Work for the ACL service's threads, in arrival order (not per source: every question comes
/// from a client already logged in, and each client has at most one packet held at a time).
type Jobs = Arc<(Mutex<std::collections::VecDeque<Check>>, Condvar)>;

/// The HTTP ACL service (`acl_http_url`): its client, its threads, and its answers cached.
pub struct AclService {
    service: HttpService,
    jobs: Jobs,
    cache: Mutex<AclCache>,
}

impl std::fmt::Debug for AclService {
    // The queued requests are closures: only their number is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclService")
            .field("service", &self.service)
            .field("queued", &lock(&self.jobs.0).len())
            .finish_non_exhaustive()
    }
}

impl AclService {
    fn start(config: &crate::config::AuthServices, url: &str) -> anyhow::Result<AclService> {
        let jobs: Jobs = Arc::default();
        for index in 0..config.auth_http_in_flight {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("acl-http-{index}"))
                .spawn(move || run_jobs(&jobs))?;
        }
        let cache = AclCache::new(config.acl_http_cache_ttl, config.acl_http_cache_max);
        Ok(AclService {
            service: HttpService::new("acl_http_url", url, config.auth_http_timeout),
            jobs,
            cache: Mutex::new(cache),
        })
    }

    /// The cached answer to `question`, if any.
    fn cached(&self, question: &Question) -> Option<Answer> {
        lock(&self.cache).get(question, Instant::now())
    }

    /// Asks the service, off the shard, about each of `questions` that has no cached answer:
    /// `None` when every one has, else a receiver that closes once every request is done
    /// (answered and cached, or failed, which caches nothing).
    pub fn fetch(
        self: &Arc<Self>,
        questions: Vec<Question>,
    ) -> Option<async_channel::Receiver<()>> {
        let now = Instant::now();
        let missing: Vec<Question> = {
            let cache = lock(&self.cache);
            questions.into_iter().filter(|question| cache.get(question, now).is_none()).collect()
        };
        if missing.is_empty() {
            return None;
        }
        let (done, waiting) = async_channel::bounded::<()>(1);
        let (queue, ready) = &*self.jobs;
        let mut queue = lock(queue);
        for question in missing {
            if queue.len() >= ACL_REQUESTS_QUEUED_MAX {
                break;
            }
            let (acl, done) = (self.clone(), done.clone());
            queue.push_back(Box::new(move || {
                if let Ok(answer) = acl.service.ask(&question.request()) {
                    lock(&acl.cache).insert(question, answer, Instant::now());
                }
                drop(done);
            }));
            ready.notify_one();
        }
        Some(waiting)
    }

    /// Decides a check from the cache: `Some(allowed)` for `allow` and `deny`, `None` for
    /// `ignore` (the ACL file decides). A miss (the answer expired or was evicted since the
    /// engine asked, or a PUBLISH by topic alias) is refused, and asked about for next time.
    fn decide(self: &Arc<Self>, question: Question) -> Option<bool> {
        match self.cached(&question) {
            Some(Answer::Allow) => Some(true),
            Some(Answer::Deny) => Some(false),
            Some(Answer::Ignore) => None,
            None => {
                self.fetch(vec![question]);
                Some(false)
            }
        }
    }
}

/// An ACL service thread: runs the requests waiting, in order.
fn run_jobs(jobs: &Jobs) {
    let (queue, ready) = &**jobs;
    loop {
        let job = {
            let mut waiting = lock(queue);
            loop {
                if let Some(job) = waiting.pop_front() {
                    break job;
                }
                waiting = ready.wait(waiting).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// What a successful login says beyond "yes", from a JWT.
#[derive(Debug, Default)]
pub struct Login {
    /// The user the token names: the session's user.
    pub jwt_user: Option<Box<str>>,
    /// The token's topic claim, for [`NodeSecurity::settle_claim`].
    pub claim: Option<TopicClaim>,
}

/// Topic claims held at most (one per user and client id that logged in with a JWT carrying
/// one). A full table refuses such logins with 0x89 rather than forget a claim: a forgotten
/// claim would widen what its client may do to the whole ACL file.
const CLAIMS_MAX: usize = 100_000;

/// Claims by client id, of one user.
type ClientClaims = HashMap<Box<str>, Arc<TopicClaim>>;

/// The topic claims of JWT logins, by user and client id (two levels, so a check looks its
/// client up with the `&str`s it has, allocating nothing). Replaced by the next login of the
/// same user and client id (dropped when it carries none). Shards read it on every check, so an
/// empty table costs one atomic load.
#[derive(Debug, Default)]
struct Claims {
    /// Claims held, in all.
    len: std::sync::atomic::AtomicUsize,
    table: RwLock<HashMap<Box<str>, ClientClaims>>,
}

impl Claims {
    /// Checks `allowed` against the claim of this client, if it has one.
    fn allow(
        &self,
        username: Option<&str>,
        client_id: &str,
        allowed: impl FnOnce(&TopicClaim) -> bool,
    ) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return true;
        }
        let Some(username) = username else { return true };
        let table = read(&self.table);
        match table.get(username).and_then(|clients| clients.get(client_id)) {
            Some(claim) => allowed(claim),
            None => true,
        }
    }

    /// Records (or, with `None`, forgets) the claim of a login; false when the table is full.
    fn set(&self, username: &str, client_id: &str, claim: Option<TopicClaim>) -> bool {
        let mut table = write(&self.table);
        let held = table.get(username).is_some_and(|clients| clients.contains_key(client_id));
        let len = self.len.load(Ordering::Acquire);
        match claim {
            None => {
                let Some(clients) = table.get_mut(username) else { return true };
                if clients.remove(client_id).is_some() {
                    self.len.store(len - 1, Ordering::Release);
                }
                if clients.is_empty() {
                    table.remove(username);
                }
            }
            Some(_) if len >= CLAIMS_MAX && !held => return false,
            Some(claim) => {
                let clients = table.entry(Box::from(username)).or_default();
                clients.insert(Box::from(client_id), Arc::new(claim));
                self.len.store(if held { len } else { len + 1 }, Ordering::Release);
            }
        }
        true
    }
}

/// A shard's [`Authorizer`]: the ACL file (everything allowed without one) and the password
/// file's authentication methods.
#[derive(Debug)]
struct NodeAuthorizer {
    acl: Option<Arc<Acl>>,
    passwords: Passwords,
    /// JWT topic claims, which narrow the ACL further.
    claims: Arc<Claims>,
    /// The HTTP ACL service, asked before the ACL file about publishes and subscribes.
    acl_http: Option<Arc<AclService>>,
}

impl NodeAuthorizer {
    /// The HTTP ACL service's say, if one is configured and did not answer `ignore`.
    fn service(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        action: Action,
    ) -> Option<bool> {
        let service = self.acl_http.as_ref()?;
        service.decide(Question::new(username, client_id, topic, action))
    }
}

impl Authorizer for NodeAuthorizer {
    fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        let file =
            || self.acl.as_ref().is_none_or(|acl| acl.can_publish(username, client_id, topic));
        self.service(username, client_id, topic, Action::Publish).unwrap_or_else(file)
            && self.claims.allow(username, client_id, |claim| claim.can_publish(topic))
    }

    fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let file =
            || self.acl.as_ref().is_none_or(|acl| acl.can_subscribe(username, client_id, filter));
        self.service(username, client_id, filter, Action::Subscribe).unwrap_or_else(file)
            && self.claims.allow(username, client_id, |claim| claim.can_subscribe(filter))
    }

    fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.can_read(username, client_id, topic))
            && self.claims.allow(username, client_id, |claim| claim.can_read(topic))
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
        let jwt = match config.services.jwt() {
            true => Some(read_jwt(config)?),
            false => None,
        };
        let checks = spawn_checks("password-check", PASSWORD_CHECK_THREADS)?;
        // One thread per request in flight: a blocking client waits out a slow service on its
        // own thread, and the thread count is the bound.
        let http = match &config.services.auth_http_url {
            Some(url) => {
                let service =
                    HttpService::new("auth_http_url", url, config.services.auth_http_timeout);
                let threads = spawn_checks("auth-http", config.services.auth_http_in_flight)?;
                Some((Arc::new(service), threads))
            }
            None => None,
        };
        let acl_http = match &config.services.acl_http_url {
            Some(url) => Some(Arc::new(AclService::start(&config.services, url)?)),
            None => None,
        };
        let guard = LoginGuard::new(config.login_failures_max, config.login_ban);
        Ok(NodeSecurity {
            checks,
            guard: Mutex::new(guard),
            config: config.clone(),
            passwords: Arc::new(RwLock::new(passwords)),
            acl: RwLock::new(acl),
            generation: AtomicU64::new(0),
            http,
            jwt: RwLock::new(jwt),
            jwt_outcomes: Default::default(),
            claims: Arc::default(),
            acl_http,
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
        if self.config.services.jwt() {
            match read_jwt(&self.config) {
                Ok(keys) => {
                    *write(&self.jwt) = Some(keys);
                    tracing::info!("reloaded the JWT keys");
                }
                Err(error) => tracing::error!("{error:#}; keeping the JWT keys in force"),
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
        let users = self.config.password_file.is_some()
            || self.config.users_from_certificates
            || self.config.services.any();
        if acl.is_none() && !users && self.acl_http.is_none() {
            return (generation, None);
        }
        let authorizer = NodeAuthorizer {
            acl,
            passwords: self.passwords.clone(),
            claims: self.claims.clone(),
            acl_http: self.acl_http.clone(),
        };
        (generation, Some(Arc::new(authorizer)))
    }

    /// Starts an enhanced-authentication exchange of a CONNECT (`enhanced_auth.rs`), against the
    /// password file in force. Cheap for SCRAM (the client does the slow hashing), so it runs on
    /// the shard.
    pub fn start_authentication(&self, method: &str, data: Option<&[u8]>) -> AuthStep {
        let passwords = read(&self.passwords).clone();
        enhanced_auth::start(passwords.as_deref(), method, data)
    }

    /// The HTTP ACL service, for the connections to ask before they feed a packet to a shard.
    pub fn acl_service(&self) -> Option<&Arc<AclService>> {
        self.acl_http.as_ref()
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
            http: self.http.as_ref().map(|(service, _)| service.outcomes()),
            acl_http: self.acl_http.as_ref().map(|acl| acl.service.outcomes()),
            jwt: self
                .config
                .services
                .jwt()
                .then(|| std::array::from_fn(|i| self.jwt_outcomes[i].load(Ordering::Relaxed))),
        }
    }

    /// Checks a CONNECT's credentials, from `peer`: `Ok` with what a JWT said (see [`Login`]),
    /// `Err` with the CONNACK reason to refuse it with (0x86 "bad user
    /// name or password" / 3.1.1 code 4, 0x87 "not authorized" / code 5, 0x9F while its source
    /// backs off after failed logins, 0x8A while it is banned, 0x89 when the checks of its
    /// source or of the node are full: see `login_guard`).
    pub async fn authenticate(
        &self,
        connect: &Connect,
        peer: Option<IpAddr>,
    ) -> Result<Login, ReasonCode> {
        if let Some(decided) = self.check_jwt(connect, peer) {
            return decided;
        }
        if let Some((service, threads)) = &self.http {
            match self.ask_service(service, threads, connect, peer).await? {
                Answer::Allow => return Ok(Login::default()),
                Answer::Deny => return Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
                Answer::Ignore => {}
            }
        }
        self.check_password(connect, peer).await?;
        Ok(Login::default())
    }

    /// Records the topic claim of a login (or, without one, forgets the claim an earlier JWT
    /// login of this user and client id left), once the CONNECT's client id is final (after
    /// `use_username_as_clientid`): the shards look claims up by the session's client id, and a
    /// claim filed under another would widen its client's rights. Refuses a claim for a client
    /// id the broker has yet to assign (0x85: it cannot be filed) or past [`CLAIMS_MAX`] (0x89).
    pub fn settle_claim(
        &self,
        connect: &Connect,
        claim: Option<TopicClaim>,
    ) -> Result<(), ReasonCode> {
        let Some(username) = connect.username.as_deref() else { return Ok(()) };
        if claim.is_some() && connect.client_id.is_empty() {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if !self.claims.set(username, &connect.client_id, claim) {
            tracing::warn!("{CLAIMS_MAX} JWT topic claims held: refusing a JWT login (busy)");
            return Err(ReasonCode::SERVER_BUSY);
        }
        Ok(())
    }

    /// Decides a CONNECT whose password is a JWT, when JWT keys are configured (`None`
    /// otherwise): `Ok` with the user it names and its topic claim.
    fn check_jwt(
        &self,
        connect: &Connect,
        peer: Option<IpAddr>,
    ) -> Option<Result<Login, ReasonCode>> {
        let keys = read(&self.jwt).clone()?;
        let password = connect.password.as_deref()?;
        if !shardmq_auth::jwt::looks_like_jwt(password) {
            return None;
        }
        let source = match self.admit(peer) {
            Ok(source) => source,
            Err(reason) => return Some(Err(reason)),
        };
        // Checked by `looks_like_jwt`: ASCII.
        let token = std::str::from_utf8(password).unwrap_or_default();
        let services = &self.config.services;
        let verified =
            keys.verify(token, &services.jwt_username_claim).and_then(|jwt| {
                match connect.username.as_deref() {
                    Some(given) if given != jwt.username => Err(JwtRefusal::Invalid),
                    _ => Ok(jwt),
                }
            });
        let label = verified.as_ref().map_or_else(|refusal| refusal.label(), |_| "ok");
        let index = RESULTS.iter().position(|result| *result == label).unwrap_or(0);
        self.jwt_outcomes[index].fetch_add(1, Ordering::Relaxed);
        let jwt = match verified {
            Ok(jwt) => jwt,
            Err(_) => {
                lock(&self.guard).failed(source, Instant::now());
                return Some(Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD));
            }
        };
        let claim = services
            .jwt_acl_claim
            .as_deref()
            .and_then(|name| shardmq_auth::jwt::topic_claim(&jwt.claims, name));
        Some(Ok(Login { jwt_user: Some(jwt.username.into_boxed_str()), claim }))
    }

    /// Asks the HTTP authentication service about a CONNECT, on its threads, this source in its
    /// turn. A failure of the service is `Ignore` or 0x86, as `auth_http_failure` says.
    async fn ask_service(
        &self,
        service: &Arc<HttpService>,
        threads: &Checks,
        connect: &Connect,
        peer: Option<IpAddr>,
    ) -> Result<Answer, ReasonCode> {
        let source = self.admit(peer)?;
        let protocol = match connect.protocol {
            ProtocolVersion::V5 => "5.0",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V3_1 => "3.1",
        };
        let body = auth_http::connect_request(
            connect.username.as_deref(),
            connect.password.as_deref(),
            &connect.client_id,
            peer,
            protocol,
        );
        let (reply, answer) = async_channel::bounded(1);
        let service = service.clone();
        let check: Check = Box::new(move || {
            let _ = reply.try_send(service.ask(&body));
        });
        self.enqueue(threads, source, peer, check)?;
        match answer.recv().await {
            Ok(Ok(Answer::Deny)) => {
                lock(&self.guard).failed(source, Instant::now());
                lock(&threads.0).demote(source);
                Ok(Answer::Deny)
            }
            Ok(Ok(answer)) => Ok(answer),
            // The service failed (counted and logged by `ask`), or the request panicked.
            Ok(Err(_)) | Err(_) => match self.config.services.auth_http_failure_ignore {
                true => Ok(Answer::Ignore),
                false => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            },
        }
    }

    /// Whether a login from `peer` is checked at all (see `login_guard`): its source, or the
    /// refusal.
    fn admit(&self, peer: Option<IpAddr>) -> Result<Source, ReasonCode> {
        let source = Source::of(peer.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let (verdict, event) = lock(&self.guard).admit(source, Instant::now());
        log_event(peer, event);
        match verdict {
            Verdict::Check => Ok(source),
            Verdict::Backoff => Err(ReasonCode::CONNECTION_RATE_EXCEEDED),
            Verdict::Banned => Err(ReasonCode::BANNED),
        }
    }

    /// Queues `check` on `checks` for `source`; 0x89 when its share or the queue is full.
    fn enqueue(
        &self,
        checks: &Checks,
        source: Source,
        peer: Option<IpAddr>,
        check: Check,
    ) -> Result<(), ReasonCode> {
        let suspect = lock(&self.guard).is_suspect(source, Instant::now());
        let (queue, ready) = &**checks;
        if lock(queue).push(source, suspect, check).is_err() {
            let event = lock(&self.guard).busy(source, Instant::now());
            log_event(peer, event);
            return Err(ReasonCode::SERVER_BUSY);
        }
        ready.notify_one();
        Ok(())
    }

    /// Checks a CONNECT's user name and password against the password file (or the anonymous
    /// rules when there is none).
    async fn check_password(
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
        let source = self.admit(peer)?;
        let username = username.to_owned();
        // Hashes are slow on purpose (argon2id): on the node's password threads, each source in
        // its turn.
        let (reply, verified) = async_channel::bounded(1);
        let check: Check = Box::new(move || {
            let _ = reply.try_send(passwords.verify(&username, &password));
        });
        self.enqueue(&self.checks, source, peer, check)?;
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

/// Starts `threads` threads named `{name}-{index}` that run the checks queued on the returned
/// queue.
fn spawn_checks(name: &str, threads: usize) -> anyhow::Result<Checks> {
    let checks: Checks =
        Arc::new((Mutex::new(FairQueue::new(PASSWORD_CHECKS_QUEUED_MAX)), Condvar::new()));
    for index in 0..threads {
        let checks = checks.clone();
        std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || run_checks(&checks))?;
    }
    Ok(checks)
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

fn read_jwt(config: &Security) -> anyhow::Result<Arc<JwtKeys>> {
    let services = &config.services;
    let keys =
        JwtKeys::load(services.jwt_jwks_file.as_deref(), services.jwt_secret_file.as_deref())
            .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(keys))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(filter: &str) -> TopicClaim {
        let claims = serde_json::json!({"acl": {"pub": [filter], "sub": []}});
        shardmq_auth::jwt::topic_claim(&claims, "acl").expect("a claim")
    }

    #[test]
    fn claims_hold_per_user_and_client_until_replaced() {
        let claims = Claims::default();
        let publish = |client: &str, topic: &str| {
            claims.allow(Some("u"), client, |claim| claim.can_publish(topic))
        };
        assert!(publish("c", "anything"));
        assert!(claims.set("u", "c", Some(claim("a/#"))));
        assert!(publish("c", "a/b") && !publish("c", "b"));
        // Another client of the same user, and another user, are not narrowed.
        assert!(publish("d", "b"));
        assert!(claims.allow(Some("v"), "c", |claim| claim.can_publish("b")));
        assert!(claims.allow(None, "c", |claim| claim.can_publish("b")));
        // Replaced by the next login, dropped by one without a claim.
        assert!(claims.set("u", "c", Some(claim("b"))));
        assert!(publish("c", "b") && !publish("c", "a/b"));
        assert_eq!(claims.len.load(Ordering::Acquire), 1);
        assert!(claims.set("u", "c", None));
        assert!(publish("c", "a/b"));
        assert_eq!(claims.len.load(Ordering::Acquire), 0);
        assert!(read(&claims.table).is_empty());
    }
}

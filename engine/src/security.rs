//! Who may connect, and what they may do: the password file (checked on CONNECT, before the
//! client reaches its home shard) and the ACL (handed to every shard as its
//! [`Authorizer`]). Both are Mosquitto's formats (`shardmq_auth`), so operators migrate their
//! files unchanged, and both are read again on SIGHUP: a bad new file keeps the old one in force
//! and the log says why.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use anyhow::Context;
use shardmq_auth::{Acl, PasswordFile};
use shardmq_io::codec::{Connect, ReasonCode};
use shardmq_shard::authorize::Authorizer;

use crate::config::Security;

/// Threads that check passwords for the whole node. Not the shards' blocking threads: those
/// run the storage commits, which a flood of logins (argon2id takes tens of milliseconds on
/// purpose) must not hold up.
const PASSWORD_CHECK_THREADS: usize = 2;
/// Password checks waiting at most; past it a CONNECT is refused with 0x89 "server busy" (a
/// login storm costs bounded memory and a bounded wait).
const PASSWORD_CHECKS_QUEUED_MAX: usize = 256;

type Check = Box<dyn FnOnce() + Send>;

/// The node's security state, shared by every shard; read on CONNECT and when a shard picks up
/// a reloaded ACL, never per message.
#[derive(Debug)]
pub struct NodeSecurity {
    checks: mpsc::SyncSender<Check>,
    config: Security,
    passwords: RwLock<Option<Arc<PasswordFile>>>,
    acl: RwLock<Option<Arc<dyn Authorizer>>>,
    /// Bumped by every reload that changed the ACL: shards compare it with the one they hold.
    generation: AtomicU64,
}

/// The ACL file as a shard's [`Authorizer`].
#[derive(Debug)]
struct AclFile(Acl);

impl Authorizer for AclFile {
    fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.0.can_publish(username, client_id, topic)
    }

    fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.0.can_subscribe(username, client_id, filter)
    }

    fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.0.can_read(username, client_id, topic)
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
        let (checks, queue) = mpsc::sync_channel::<Check>(PASSWORD_CHECKS_QUEUED_MAX);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..PASSWORD_CHECK_THREADS {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("password-check-{index}")).spawn(
                move || {
                    loop {
                        let next =
                            queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                        let Ok(check) = next else { return };
                        // A panicking check drops its reply (the CONNECT is refused); the thread
                        // goes on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
                    }
                },
            )?;
        }
        Ok(NodeSecurity {
            checks,
            config: config.clone(),
            passwords: RwLock::new(passwords),
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
                    tracing::info!("reloaded {} ({} users)", path.display(), passwords.len());
                    *write(&self.passwords) = Some(passwords);
                }
                Err(error) => tracing::error!("{error:#}; keeping the password file in force"),
            }
        }
        if let Some(path) = &self.config.acl_file {
            match read_acl(path) {
                Ok(acl) => {
                    tracing::info!("reloaded {}", path.display());
                    *write(&self.acl) = Some(acl);
                    self.generation.fetch_add(1, Ordering::Release);
                }
                Err(error) => tracing::error!("{error:#}; keeping the ACL in force"),
            }
        }
    }

    /// The ACL shards hold themselves to, and its generation.
    pub fn authorizer(&self) -> (u64, Option<Arc<dyn Authorizer>>) {
        let generation = self.generation.load(Ordering::Acquire);
        (generation, read(&self.acl).clone())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Checks a CONNECT's credentials: `Err` with the CONNACK reason to refuse it with
    /// (0x86 "bad user name or password" / 3.1.1 code 4, 0x87 "not authorized" / code 5).
    pub async fn authenticate(&self, connect: &Connect) -> Result<(), ReasonCode> {
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
        let username = username.to_owned();
        // Hashes are slow on purpose (argon2id): on the node's password threads.
        let (reply, verified) = async_channel::bounded(1);
        let check: Check = Box::new(move || {
            let _ = reply.try_send(passwords.verify(&username, &password));
        });
        if self.checks.try_send(check).is_err() {
            return Err(ReasonCode::SERVER_BUSY);
        }
        match verified.recv().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            Err(_) => {
                tracing::error!("a password check failed (it panicked)");
                Err(ReasonCode::SERVER_UNAVAILABLE)
            }
        }
    }
}

fn read_passwords(path: &Path) -> anyhow::Result<Arc<PasswordFile>> {
    let passwords = PasswordFile::load(path)
        .with_context(|| format!("cannot use password_file {}", path.display()))?;
    Ok(Arc::new(passwords))
}

fn read_acl(path: &Path) -> anyhow::Result<Arc<dyn Authorizer>> {
    let acl = Acl::load(path).with_context(|| format!("cannot use acl_file {}", path.display()))?;
    Ok(Arc::new(AclFile(acl)))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

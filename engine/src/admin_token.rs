//! The admin API's bearer token (`admin_token_file`): the client API under `/api/` can list and
//! disconnect clients, so a node that sets a token answers it only to requests that carry
//! `Authorization: Bearer <token>`. `/metrics`, `/health` and `/ready` stay open, because
//! Prometheus and load balancers scrape them and they change nothing.
//!
//! The token is read from a file, never from the command line (where `ps` shows it to every
//! user of the host), and read again on SIGHUP like the other files: a file that cannot be read
//! or holds no token keeps the token in force, and the log says why. A presented token is
//! compared in constant time ([`shardmq_auth::secrets_equal`]) so that the time a refusal takes
//! does not tell an attacker how much of a guess was right.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;

/// A token shorter than this is accepted but logged: it can be guessed.
const TOKEN_BYTES_ADVISED: usize = 16;

/// The token in force and the file it comes from.
pub struct AdminToken {
    path: PathBuf,
    token: RwLock<Arc<[u8]>>,
}

impl std::fmt::Debug for AdminToken {
    /// Names the file only: a debug print must never put the token in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken").field("path", &self.path).finish_non_exhaustive()
    }
}

/// What a request's `Authorization` header holds, against the token in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// No `Authorization: Bearer ...` header.
    Missing,
    /// A bearer token, not the node's.
    Wrong,
    /// The node's token.
    Valid,
}

impl AdminToken {
    /// Reads the token from `path`; an unreadable file, or one that holds no usable token, stops
    /// the start-up with one line naming `admin_token_file`.
    pub fn load(path: &Path) -> anyhow::Result<AdminToken> {
        let token = read_token_file(path)?;
        Ok(AdminToken { path: path.to_owned(), token: RwLock::new(token) })
    }

    /// SIGHUP: reads the file again. A file that cannot be read, or holds no usable token,
    /// leaves the token in force as it is, and the log says why.
    pub fn reload(&self) {
        match read_token_file(&self.path) {
            Ok(token) => {
                // In force before the log says so (tests and operators act on the line).
                *self.token.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = token;
                tracing::info!("reloaded the admin token {}", self.path.display());
            }
            Err(error) => tracing::error!("{error:#}; keeping the admin token in force"),
        }
    }

    /// Checks the value of a request's `Authorization` header (`None`: there is none).
    pub fn check(&self, authorization: Option<&str>) -> Credential {
        let Some(presented) = authorization.and_then(bearer_token) else {
            return Credential::Missing;
        };
        let token = self.token.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if shardmq_auth::secrets_equal(presented.as_bytes(), &token) {
            Credential::Valid
        } else {
            Credential::Wrong
        }
    }
}

/// The token of an `Authorization` header value: `Bearer <token>`, the scheme's name in any
/// case (RFC 9110 makes it case-insensitive). `None` for another scheme or no token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The token a file holds: its content without surrounding whitespace. The error names
/// `admin_token_file` and says what is wrong.
fn read_token_file(path: &Path) -> anyhow::Result<Arc<[u8]>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read `admin_token_file` {}", path.display()))?;
    let token = parse_token(&bytes)
        .map_err(|why| anyhow::anyhow!("`admin_token_file` {} {why}", path.display()))?;
    if token.len() < TOKEN_BYTES_ADVISED {
        tracing::warn!(
            "`admin_token_file` {} holds a token of {} characters: one of at least 32 random \
             characters (`openssl rand -hex 32`) cannot be guessed",
            path.display(),
            token.len()
        );
    }
    Ok(Arc::from(token.as_bytes()))
}

/// The token in a token file's bytes (surrounding whitespace trimmed), or why there is none.
/// Only visible ASCII is accepted: the token travels in an HTTP header, which cannot carry a
/// line break, and other bytes would make `shardmq ctl` and curl send something else.
pub fn parse_token(bytes: &[u8]) -> Result<&str, &'static str> {
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err("is empty: write the token in it (`openssl rand -hex 32` makes one)");
    }
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err("holds spaces, line breaks or characters other than visible ASCII: the \
             token must be one word (`openssl rand -hex 32` makes one)");
    }
    // Visible ASCII only, checked just above: valid UTF-8.
    std::str::from_utf8(token).map_err(|_| "is not text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shardmq-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write the token file");
        path
    }

    #[test]
    fn the_bearer_scheme_in_any_case_and_nothing_else() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer_token("Basic YWRtaW46YWRtaW4="), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn token_files_are_trimmed_and_must_hold_one_word() {
        assert_eq!(parse_token(b"  s3cret\n"), Ok("s3cret"));
        assert_eq!(parse_token(b"\r\ns3cret\r\n\r\n"), Ok("s3cret"));
        assert!(parse_token(b" \n\t").expect_err("empty").contains("empty"));
        assert!(parse_token(b"two words").is_err());
        assert!(parse_token(b"line\nbreak").is_err());
        assert!(parse_token("caf\u{e9}".as_bytes()).is_err());
    }

    #[test]
    fn the_check_tells_missing_wrong_and_valid_apart() {
        let path = token_file("check", b"0123456789abcdef0123456789abcdef\n");
        let token = AdminToken::load(&path).expect("a token");
        assert_eq!(token.check(None), Credential::Missing);
        assert_eq!(token.check(Some("Basic eDp5")), Credential::Missing);
        assert_eq!(token.check(Some("Bearer 0123456789abcdef")), Credential::Wrong);
        assert_eq!(
            token.check(Some("Bearer 0123456789abcdef0123456789abcdef0")),
            Credential::Wrong
        );
        assert_eq!(token.check(Some("Bearer 0123456789abcdef0123456789abcdef")), Credential::Valid);
        // The debug print names the file, never the token.
        assert!(!format!("{token:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn a_reload_takes_a_new_token_and_keeps_the_old_one_over_a_bad_file() {
        let path = token_file("reload", b"first-token\n");
        let token = AdminToken::load(&path).expect("a token");
        std::fs::write(&path, b"second-token").expect("rewrite");
        token.reload();
        assert_eq!(token.check(Some("Bearer first-token")), Credential::Wrong);
        assert_eq!(token.check(Some("Bearer second-token")), Credential::Valid);
        std::fs::write(&path, b"\n").expect("empty it");
        token.reload();
        assert_eq!(token.check(Some("Bearer second-token")), Credential::Valid);
        std::fs::remove_file(&path).expect("remove it");
        token.reload();
        assert_eq!(token.check(Some("Bearer second-token")), Credential::Valid);
    }

    #[test]
    fn start_up_errors_name_the_key() {
        let missing = std::env::temp_dir().join("shardmq-no-such-admin-token");
        let error = format!("{:#}", AdminToken::load(&missing).expect_err("missing"));
        assert!(error.contains("`admin_token_file`") && !error.contains('\n'), "{error}");
        let empty = token_file("empty", b"  \n");
        let error = format!("{:#}", AdminToken::load(&empty).expect_err("empty"));
        assert!(error.contains("`admin_token_file`") && error.contains("empty"), "{error}");
    }
}

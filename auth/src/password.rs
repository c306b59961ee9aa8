//! Password files: `username:hash` lines, as Mosquitto's `password_file` and `mosquitto_passwd`.
//!
//! Hashes read:
//!
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 over the password bytes and the decoded
//!   salt, 64-byte output; what `mosquitto_passwd` 2.x writes (101 iterations, 12-byte salt).
//! - `$6$<salt>$<hash>`: SHA-512 of the password bytes followed by the decoded salt; what
//!   `mosquitto_passwd` 1.x wrote (and 2.x with `-H sha512`).
//! - `$argon2id$v=19$m=...`: a PHC string, as [`hash_password`] writes.
//! - `$scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>`: a SCRAM-SHA-256 verifier
//!   (RFC 5802 §3; the fields of RFC 5803's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
//!   with `$` between all of them), as [`scram_hash`] writes. It serves MQTT 5 enhanced
//!   authentication (`SCRAM-SHA-256`) and a plain CONNECT password alike: the password is run
//!   through PBKDF2-HMAC-SHA-256 and compared with StoredKey. Only these entries can use SCRAM.
//!
//! Salt and hash are standard base64 (`+/`, padded), as OpenSSL's base64 BIO writes them; padding
//! is optional when read.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore as _};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use crate::error::AuthFileError;
use crate::scram::{self, ScramCredentials, ScramVerifier};

/// The length of a SHA-512 output, the only hash length Mosquitto writes and accepts.
const MOSQUITTO_HASH_BYTES: usize = 64;

/// Mosquitto's base64: OpenSSL's, standard alphabet; padding optional on input.
pub(crate) const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A parsed password file; immutable, replaced as a whole on reload.
pub struct PasswordFile {
    users: HashMap<Box<str>, StoredHash>,
    /// Random per process: the salts of stand-in SCRAM verifiers for users without one are
    /// derived from it, so they stay the same across attempts and reloads (a salt that changed
    /// on reload while real users' stayed would tell who exists) but cannot be predicted.
    scram_secret: [u8; 32],
    /// The iteration count stand-in verifiers show: the one most of the file's SCRAM entries use,
    /// so an unknown user's server-first message looks like a real user's.
    scram_iterations: u32,
    /// The user whose entry an unknown user's password is hashed against (and always refused):
    /// one of the most common scheme and cost in the file, so that an unknown user costs what a
    /// known one does and login timing does not tell who exists.
    stand_in: Option<Box<str>>,
}

/// The secret of [`PasswordFile::scram_secret`], drawn once per process.
fn process_scram_secret() -> &'static [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        secret
    })
}

enum StoredHash {
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Box<[u8]>, hash: [u8; MOSQUITTO_HASH_BYTES] },
    /// `$7$`: PBKDF2-HMAC-SHA512(password, salt, iterations).
    Pbkdf2Sha512 { iterations: u32, salt: Box<[u8]>, hash: [u8; MOSQUITTO_HASH_BYTES] },
    /// A PHC string, checked to parse as argon2id when the file was read.
    Argon2id(Box<str>),
    /// `$scram-sha-256$`: a SCRAM-SHA-256 verifier.
    ScramSha256(ScramVerifier),
}

impl PasswordFile {
    /// Parses a password file's text: one `username:hash` a line; blank lines and lines starting
    /// with `#` are skipped; spaces and tabs around the username and the hash are ignored, as
    /// Mosquitto does. A line without `:`, with an empty username, with a hash in none of the
    /// schemes above, or repeating a username is an error naming the line.
    pub fn parse(text: &str) -> Result<PasswordFile, AuthFileError> {
        let mut users = HashMap::new();
        let mut first_lines: HashMap<&str, usize> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let Some((username, hash)) = split_line(line) else {
                continue;
            };
            let (username, hash) = match (username, hash) {
                (Some(username), hash) if !username.is_empty() => (username, hash),
                (Some(_), _) => return Err(AuthFileError::line(number, "empty username")),
                (None, _) => {
                    return Err(AuthFileError::line(number, "expected `username:hash`"));
                }
            };
            if let Some(first) = first_lines.insert(username, number) {
                return Err(AuthFileError::line(
                    number,
                    format!("user `{username}` is already on line {first}"),
                ));
            }
            let stored = StoredHash::parse(hash).map_err(|what| {
                AuthFileError::line(number, format!("user `{username}`: {what}"))
            })?;
            users.insert(username.into(), stored);
        }
        let mut iteration_counts: HashMap<u32, usize> = HashMap::new();
        for stored in users.values() {
            if let StoredHash::ScramSha256(verifier) = stored {
                *iteration_counts.entry(verifier.iterations()).or_default() += 1;
            }
        }
        let scram_iterations = iteration_counts
            .into_iter()
            .max_by_key(|&(iterations, count)| (count, iterations))
            .map_or(scram::ITERATIONS_DEFAULT, |(iterations, _)| iterations);
        let stand_in = stand_in(&users);
        Ok(PasswordFile {
            users,
            scram_secret: *process_scram_secret(),
            scram_iterations,
            stand_in,
        })
    }

    /// Reads and parses a password file; errors name the file.
    pub fn load(path: &Path) -> Result<PasswordFile, AuthFileError> {
        let text = fs::read_to_string(path).map_err(|error| AuthFileError::read(path, error))?;
        PasswordFile::parse(&text).map_err(|error| error.in_file(path))
    }

    /// Whether `password` is this user's. `false` for an unknown user. The hash comparison is
    /// constant-time; the hashing itself is slow on purpose (argon2id, PBKDF2), so call this off
    /// a shard's reactor.
    ///
    /// An unknown user's password is hashed as a known user's is (against a stand-in entry of
    /// the file's most common scheme and cost, then refused), so timing does not tell whether a
    /// username exists (Mosquitto answers unknown users at once).
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        if let Some(stored) = self.users.get(username) {
            return stored.verify(password);
        }
        let stand_in = self.stand_in.as_deref().and_then(|name| self.users.get(name));
        if let Some(stand_in) = stand_in {
            std::hint::black_box(stand_in.verify(password));
        }
        false
    }

    /// The SCRAM-SHA-256 verifier to run an exchange for `username` against: the user's own, or
    /// a stand-in that fails at the proof for a user who is not listed or whose entry is not a
    /// SCRAM one (its salt stable across attempts, its iteration count the file's usual one).
    pub fn scram_credentials(&self, username: &str) -> ScramCredentials {
        match self.users.get(username) {
            Some(StoredHash::ScramSha256(verifier)) => ScramCredentials::known(verifier.clone()),
            _ => ScramCredentials::unknown(username, &self.scram_secret, self.scram_iterations),
        }
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether the file lists `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }
}

/// Lists only how many users there are: hashes stay out of logs.
impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile").field("users", &self.users.len()).finish_non_exhaustive()
    }
}

/// The stand-in of [`PasswordFile::stand_in`]: the first user (by name) of the most common
/// (scheme, cost) in `users`.
fn stand_in(users: &HashMap<Box<str>, StoredHash>) -> Option<Box<str>> {
    let mut classes: HashMap<String, (usize, &str)> = HashMap::new();
    for (username, stored) in users {
        let class = classes.entry(stored.cost_class()).or_insert((0, username));
        class.0 += 1;
        if **username < *class.1 {
            class.1 = username;
        }
    }
    let most = classes.into_values().max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))?;
    Some(most.1.into())
}

impl StoredHash {
    /// The scheme and the cost parameters: entries of one class take as long to check.
    fn cost_class(&self) -> String {
        match self {
            StoredHash::Sha512 { .. } => "sha512".to_owned(),
            StoredHash::Pbkdf2Sha512 { iterations, .. } => format!("pbkdf2 {iterations}"),
            StoredHash::Argon2id(phc) => match PasswordHash::new(phc) {
                Ok(parsed) => format!("argon2id {:?} {}", parsed.version, parsed.params),
                Err(_) => "argon2id".to_owned(),
            },
            StoredHash::ScramSha256(verifier) => format!("scram {}", verifier.iterations()),
        }
    }

    /// Parses the part after `username:`. Errors never quote the hash (a plain-text password
    /// file would otherwise print its passwords).
    fn parse(text: &str) -> Result<StoredHash, String> {
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(iterations), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("a `$7$` hash must be `$7$iterations$salt$hash`".to_owned());
            };
            let iterations = match iterations.parse::<u32>() {
                Ok(iterations) if iterations >= 1 => iterations,
                _ => return Err("the `$7$` iteration count must be a number from 1".to_owned()),
            };
            let (salt, hash) = (decode_salt(salt)?, decode_hash(hash)?);
            Ok(StoredHash::Pbkdf2Sha512 { iterations, salt, hash })
        } else if let Some(rest) = text.strip_prefix("$6$") {
            let mut parts = rest.split('$');
            let (Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err("a `$6$` hash must be `$6$salt$hash`".to_owned());
            };
            let (salt, hash) = (decode_salt(salt)?, decode_hash(hash)?);
            Ok(StoredHash::Sha512 { salt, hash })
        } else if text.starts_with("$argon2id$") {
            let parsed = PasswordHash::new(text)
                .map_err(|error| format!("not a valid argon2id PHC string ({error})"))?;
            if parsed.algorithm != argon2::ARGON2ID_IDENT || parsed.hash.is_none() {
                return Err("not a complete argon2id PHC string".to_owned());
            }
            Params::try_from(&parsed)
                .map_err(|error| format!("invalid argon2id parameters ({error})"))?;
            Ok(StoredHash::Argon2id(text.into()))
        } else if let Some(rest) = text.strip_prefix("$scram-sha-256$") {
            ScramVerifier::parse(rest).map(StoredHash::ScramSha256)
        } else {
            Err("unknown hash scheme (expected `$7$` or `$6$` from mosquitto_passwd, or \
                 `$argon2id$` or `$scram-sha-256$`); hash a plain-text file with \
                 `mosquitto_passwd -U` first"
                .to_owned())
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                digest.finalize().as_slice().ct_eq(hash).into()
            }
            StoredHash::Pbkdf2Sha512 { iterations, salt, hash } => {
                let mut derived = [0u8; MOSQUITTO_HASH_BYTES];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                derived.ct_eq(hash).into()
            }
            // The PHC string parsed when the file was read; `verify_password` compares in
            // constant time with the parameters the string names.
            StoredHash::Argon2id(phc) => PasswordHash::new(phc)
                .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok()),
            StoredHash::ScramSha256(verifier) => verifier.verify_password(password),
        }
    }
}

fn decode_salt(text: &str) -> Result<Box<[u8]>, String> {
    match BASE64_LENIENT.decode(text) {
        Ok(salt) if !salt.is_empty() => Ok(salt.into()),
        _ => Err("the salt is not base64".to_owned()),
    }
}

fn decode_hash(text: &str) -> Result<[u8; MOSQUITTO_HASH_BYTES], String> {
    BASE64_LENIENT
        .decode(text)
        .ok()
        .and_then(|hash| <[u8; MOSQUITTO_HASH_BYTES]>::try_from(hash).ok())
        .ok_or_else(|| format!("the hash is not {MOSQUITTO_HASH_BYTES} bytes of base64"))
}

/// A line's username and hash, both trimmed of spaces and tabs: `None` for a blank line or a
/// comment, `Some((None, _))` for a line without `:`.
fn split_line(line: &str) -> Option<(Option<&str>, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(match line.split_once(':') {
        Some((username, hash)) => {
            (Some(username.trim_matches([' ', '\t'])), hash.trim_matches([' ', '\t']))
        }
        None => (None, line),
    })
}

/// Hashes a password for a password file line: argon2id with the `argon2` crate's defaults
/// (19 MiB, 2 passes, 1 lane: OWASP's recommended minimum for argon2id), a 16-byte salt from the
/// OS's random source, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
///
/// Mosquitto cannot read these lines; it skips them with an error in its log.
///
/// # Panics
///
/// If the OS random source fails, or the password is over 4 GiB (argon2's limit;
/// [`set_password`] refuses such a password instead).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    match Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(hash) => hash.to_string(),
        Err(error) => panic!("argon2id cannot hash a {}-byte password: {error}", password.len()),
    }
}

/// Sets a user's password in a password file (the `shardmq passwd FILE USER` command): creates
/// the file if it is missing, replaces the user's line (dropping any later duplicate of it) or
/// appends one, and keeps every other line as it was, comments and Mosquitto's hashes included.
///
/// The new file is written beside the old one with mode 0600, synced, and renamed over it, so a
/// broker reading the file sees the old one or the new one, never a mix. A username that is
/// empty, contains `:` or a control character, starts with `#` or has spaces around it is
/// refused (`InvalidInput`): the file could not hold it. Errors name the file.
pub fn set_password(path: &Path, username: &str, password: &str) -> io::Result<()> {
    check_password(username, password)?;
    set_line(path, username, &hash_password(password))
}

/// Hashes a password as a SCRAM-SHA-256 verifier for a password-file line
/// (`$scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>`), with a 16-byte salt from the
/// OS's random source.
///
/// # Panics
///
/// If `iterations` is under [`scram::ITERATIONS_MIN`] (4096), or the OS random source fails.
pub fn scram_hash(password: &str, iterations: u32) -> String {
    assert!(iterations >= scram::ITERATIONS_MIN, "SCRAM needs at least 4096 iterations");
    ScramVerifier::derive(password.as_bytes(), &scram::random_salt(), iterations).to_hash_string()
}

/// [`set_password`] writing a SCRAM-SHA-256 verifier ([`scram_hash`]) instead of argon2id (the
/// `shardmq passwd --scram FILE USER` command): the user can then log in with MQTT 5 enhanced
/// authentication `SCRAM-SHA-256` as well as with a plain password. Fewer than 4096 iterations
/// are refused (`InvalidInput`).
pub fn set_scram_password(
    path: &Path,
    username: &str,
    password: &str,
    iterations: u32,
) -> io::Result<()> {
    check_password(username, password)?;
    if iterations < scram::ITERATIONS_MIN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("SCRAM needs at least {} iterations", scram::ITERATIONS_MIN),
        ));
    }
    set_line(path, username, &scram_hash(password, iterations))
}

fn check_password(username: &str, password: &str) -> io::Result<()> {
    check_username(username).map_err(|what| io::Error::new(io::ErrorKind::InvalidInput, what))?;
    if u32::try_from(password.len()).is_err() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the password is over 4 GiB"));
    }
    Ok(())
}

/// Replaces `username`'s line with `username:hash` (or appends it), atomically.
fn set_line(path: &Path, username: &str, hash: &str) -> io::Result<()> {
    let existing = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(in_file(path, error)),
    };
    let new_line = format!("{username}:{hash}");
    let mut contents = String::with_capacity(existing.len() + new_line.len() + 1);
    let mut replaced = false;
    for line in existing.lines() {
        let line = match split_line(line) {
            Some((Some(name), _)) if name == username => {
                if replaced {
                    continue;
                }
                replaced = true;
                new_line.as_str()
            }
            _ => line,
        };
        contents.push_str(line);
        contents.push('\n');
    }
    if !replaced {
        contents.push_str(&new_line);
        contents.push('\n');
    }
    write_atomically(path, contents.as_bytes()).map_err(|error| in_file(path, error))
}

fn check_username(username: &str) -> Result<(), &'static str> {
    if username.is_empty() {
        Err("the username is empty")
    } else if username.contains(':') {
        Err("a username cannot contain `:` (it ends the username in a password file)")
    } else if username.contains(char::is_control) {
        Err("a username cannot contain control characters")
    } else if username.starts_with('#') {
        Err("a username cannot start with `#` (the line would be a comment)")
    } else if username != username.trim() {
        Err("a username cannot start or end with a space")
    } else {
        Ok(())
    }
}

/// Writes `contents` to a temporary file (mode 0600) in `path`'s directory, syncs it, renames it
/// over `path`, and syncs the directory so the rename survives a crash.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let directory = match path.parent() {
        Some(directory) if !directory.as_os_str().is_empty() => directory,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the password file path names no file")
    })?;
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(0o600));
    }
    // Dropped on any error below, which removes it.
    let mut file = builder.tempfile_in(directory)?;
    file.write_all(contents)?;
    #[cfg(unix)]
    if let Ok(existing) = fs::metadata(path) {
        // The file keeps its owner and group (the broker's user must still read it after
        // `sudo shardmq passwd ...`); changing the owner needs root, and is skipped without it
        // when the owner is already the caller.
        use std::os::unix::fs::MetadataExt as _;
        let ours = file.as_file().metadata()?;
        if (ours.uid(), ours.gid()) != (existing.uid(), existing.gid()) {
            std::os::unix::fs::fchown(file.as_file(), Some(existing.uid()), Some(existing.gid()))?;
        }
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    #[cfg(unix)]
    fs::File::open(directory)?.sync_all()?;
    Ok(())
}

fn in_file(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

//! Password files and ACL files in Mosquitto's formats, so operators bring the files they have.
//!
//! - [`PasswordFile`]: `username:hash` lines as `mosquitto_passwd` writes them (`$7$` PBKDF2 and
//!   `$6$` SHA-512), plus argon2id lines written by our own [`set_password`] and SCRAM-SHA-256
//!   verifiers written by [`set_scram_password`].
//! - [`scram`]: the server's side of a SCRAM-SHA-256 exchange (MQTT 5 enhanced authentication),
//!   sans-IO.
//! - [`Acl`]: Mosquitto's `acl_file` (`user`, `topic`, `pattern` lines) and the three questions a
//!   broker asks of it: may this client publish here, subscribe to this filter, receive this
//!   message.
//! - [`jwt`]: JSON Web Tokens as passwords (HS256, RS256, ES256; a JWKS file and/or a secret),
//!   the user they name and the topics their claim allows.
//! - [`secrets_equal`]: a presented secret (the admin API's bearer token) against the configured
//!   one, in constant time.
//!
//! The files are parsed once (at start-up and on reload) into immutable values that shards
//! share. ACL entries are split into levels when parsed; a check splits its topic lazily and
//! compares `%u`/`%c` levels in place, so it never allocates.
//!
//! **Invariant:** a malformed file is refused whole, with one line naming the file and line; it is
//! never half-applied.

#![forbid(unsafe_code)]

mod acl;
mod error;
pub mod jwt;
mod password;
pub mod scram;
mod secret;
mod topic;

pub use acl::Acl;
pub use error::AuthFileError;
pub use password::{hash_password, scram_hash, set_password, set_scram_password, PasswordFile};
pub use secret::secrets_equal;

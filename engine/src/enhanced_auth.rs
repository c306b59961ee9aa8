//! MQTT 5 enhanced authentication (docs/security.md): the SCRAM-SHA-256 method. The exchange of
//! a CONNECT that names it is in `connect_auth.rs`.
//!
//! ```text
//! CONNECT  method SCRAM-SHA-256, data client-first
//!                       AUTH 0x18  method, data server-first
//! AUTH 0x18 method, data client-final
//!                       CONNACK 0x00 (built by the home shard) method, data server-final
//! ```
//!
//! The same [`AuthExchange`] serves re-authentication, which the shard runs on a connected client
//! (`Authorizer::start_authentication`).

use bytes::Bytes;
use shardmq_auth::scram::{self, ServerFirst, SCRAM_SHA_256};
use shardmq_auth::PasswordFile;
use shardmq_io::codec::ReasonCode;
use shardmq_shard::authorize::{AuthExchange, AuthStep};

/// Whether clients may authenticate with `method` against `passwords`: SCRAM-SHA-256 (the name
/// compared exactly), only with a password file.
pub(crate) fn supports(passwords: Option<&PasswordFile>, method: &str) -> bool {
    method == SCRAM_SHA_256 && passwords.is_some()
}

/// Starts an exchange of `method` with the client's first data: for SCRAM-SHA-256, answers the
/// client-first message with a fresh random server nonce. A malformed message fails like a wrong
/// password, with 0x87.
pub(crate) fn start(
    passwords: Option<&PasswordFile>,
    method: &str,
    data: Option<&[u8]>,
) -> AuthStep {
    let Some(passwords) = passwords.filter(|_| method == SCRAM_SHA_256) else {
        return AuthStep::Failure(ReasonCode::BAD_AUTHENTICATION_METHOD);
    };
    let Some(client_first) = data else {
        return AuthStep::Failure(ReasonCode::NOT_AUTHORIZED);
    };
    let credentials = |username: &str| passwords.scram_credentials(username);
    match scram::server_first(client_first, credentials, &scram::random_nonce()) {
        Ok(first) => AuthStep::Continue {
            data: Bytes::copy_from_slice(first.message()),
            exchange: Box::new(ScramExchange(first)),
        },
        Err(error) => {
            tracing::debug!("SCRAM-SHA-256 refused: {error}");
            AuthStep::Failure(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

/// A SCRAM-SHA-256 exchange waiting for the client-final message.
#[derive(Debug)]
struct ScramExchange(ServerFirst);

impl AuthExchange for ScramExchange {
    fn step(self: Box<Self>, data: Option<&[u8]>) -> AuthStep {
        let Some(client_final) = data else {
            return AuthStep::Failure(ReasonCode::NOT_AUTHORIZED);
        };
        match self.0.finish(client_final) {
            Ok(success) => AuthStep::Success {
                username: success.username,
                data: Some(Bytes::from(success.server_final)),
            },
            Err(error) => {
                tracing::debug!("SCRAM-SHA-256 refused: {error}");
                AuthStep::Failure(ReasonCode::NOT_AUTHORIZED)
            }
        }
    }
}

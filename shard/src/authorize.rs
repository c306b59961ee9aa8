//! Who may publish, subscribe and receive what: the ACL the shard consults, supplied by the
//! engine (Mosquitto's ACL file format, `shardmq_auth`).
//!
//! Without an [`Authorizer`] everything is allowed. With one, a shard checks:
//!
//! - a PUBLISH's topic (write) before routing it: a refused one is dropped, answered with
//!   PUBACK/PUBREC 0x87 on MQTT 5 and acknowledged normally on 3.1.1 (which has no way to say
//!   no), as Mosquitto does; a refused message is never retained;
//! - a will's topic (write) at CONNECT: refused with CONNACK 0x87 / 3.1.1 return code 5;
//! - each SUBSCRIBE filter: refused with SUBACK 0x87 (MQTT 5) / 0x80 (3.1.1);
//! - every delivery's topic (read) for the receiving client, retained messages included, so
//!   `deny` rules narrower than a granted filter hold.
//!
//! It also vouches for MQTT 5 enhanced authentication (`Authentication Method`): the engine runs
//! the exchange of a CONNECT before the client reaches its home shard, and the shard accepts a
//! CONNECT naming a method only when its authorizer supports that method
//! ([`Authorizer::supports_auth_method`]). Re-authentication (AUTH 0x19 on a connected client)
//! runs on the shard, through [`Authorizer::start_authentication`] and the [`AuthExchange`] it
//! returns: the method's logic (SCRAM, its verifiers, its randomness) stays in the engine, and
//! the shard only carries its messages.
//!
//! **Invariant:** a CONNECT that reaches [`crate::Shard::connect`] with an Authentication Method
//! has completed that method's exchange on the accepting shard: its User Name is the
//! authenticated one and its Authentication Data is the server's last message, for the CONNACK.

use bytes::Bytes;
use shardmq_codec::ReasonCode;

/// An access policy, shared by every shard (immutable; replaced as a whole on reload).
pub trait Authorizer: std::fmt::Debug + Send + Sync {
    /// May this client publish on `topic`?
    fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool;
    /// May this client subscribe to `filter` (without any `$share/group/` prefix)?
    fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool;
    /// May this client receive a message published on `topic`?
    fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool;

    /// Whether clients may authenticate with this Authentication Method (and so a CONNECT naming
    /// it was authenticated by the engine). None by default: such a CONNECT gets 0x8C.
    fn supports_auth_method(&self, _method: &str) -> bool {
        false
    }

    /// Starts an exchange of `method` with the client's first Authentication Data (a
    /// re-authentication). Reads the credentials in force now, so a reload applies from the next
    /// exchange on.
    fn start_authentication(&self, _method: &str, _data: Option<&[u8]>) -> AuthStep {
        AuthStep::Failure(ReasonCode::BAD_AUTHENTICATION_METHOD)
    }
}

/// An enhanced-authentication exchange waiting for the client's next Authentication Data.
pub trait AuthExchange: std::fmt::Debug {
    /// Takes the client's next Authentication Data (from an AUTH 0x18).
    fn step(self: Box<Self>, data: Option<&[u8]>) -> AuthStep;
}

/// Where an exchange stands after a message from the client.
#[derive(Debug)]
pub enum AuthStep {
    /// Send `data` to the client (AUTH 0x18) and wait for its answer.
    Continue { exchange: Box<dyn AuthExchange>, data: Bytes },
    /// The client is `username`; send `data` with the success (CONNACK, or AUTH 0x00).
    Success { username: Box<str>, data: Option<Bytes> },
    /// Refuse with this reason code (CONNACK, or DISCONNECT on a re-authentication).
    Failure(ReasonCode),
}

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

/// An access policy, shared by every shard (immutable; replaced as a whole on reload).
pub trait Authorizer: std::fmt::Debug + Send + Sync {
    /// May this client publish on `topic`?
    fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool;
    /// May this client subscribe to `filter` (without any `$share/group/` prefix)?
    fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool;
    /// May this client receive a message published on `topic`?
    fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool;
}

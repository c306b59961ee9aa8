//! The authentication of a CONNECT: its password, or the MQTT 5 enhanced authentication
//! exchange it names (methods in `enhanced_auth.rs`), run on the accepting shard before the
//! client is routed to its home shard or claimed in the cluster.
//!
//! ```text
//! CONNECT  method SCRAM-SHA-256, data client-first
//!                       AUTH 0x18  method, data server-first
//! AUTH 0x18 method, data client-final
//!                       CONNACK 0x00 (built by the home shard) method, data server-final
//! ```
//!
//! The exchange reads and writes through [`AuthWire`], so it does not care what carries the
//! packets; [`ConnectionWire`] is the accepted socket's.

use std::time::Instant;

use bytes::BytesMut;
use shardmq_auth::jwt::TopicClaim;
use shardmq_io::codec::{
    Auth, ByteString, ConnAck, Connect, DecodeError, Decoded, Decoder, Packet, Properties,
    ReasonCode,
};
use shardmq_shard::authorize::AuthStep;

use crate::acl_cache::{Action, Question};
use crate::client_stream::{poll_write_all, read_more, ClientStream};
use crate::security::NodeSecurity;

/// AUTH round trips one CONNECT may take. SCRAM needs one; the bound stops a method that never
/// ends from holding a connection (the connect timeout bounds it too).
const AUTH_ROUNDS_MAX: usize = 4;

/// What the client sent next during an exchange.
// A transient return value, moved once: boxing the packet would cost an allocation per packet
// (as `Decoded`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Received {
    Packet(Packet),
    /// Bytes that do not decode: refused with the error's reason code.
    Invalid(DecodeError),
    /// The connection closed or failed, or the connect timeout passed: close without a word.
    Gone,
}

/// The connection as an exchange sees it: whole packets in, whole packets out.
pub(crate) trait AuthWire {
    /// Writes `packet`; false when the connection failed.
    async fn send(&mut self, packet: Packet) -> bool;
    /// The client's next packet, before the connect timeout.
    async fn receive(&mut self) -> Received;
}

/// Checks a CONNECT's credentials: its password ([`NodeSecurity::authenticate`]) or, when it
/// names an Authentication Method, that method's exchange over `wire`. `Ok` with the CONNECT
/// to admit (after an exchange: User Name the authenticated user, Authentication Data the
/// server's last message; after a JWT, User Name its user) and the JWT's topic claim for
/// [`settle`]; `Err(Some(reason))` when it was refused (the CONNACK with `reason` is sent),
/// `Err(None)` when the connection is gone.
pub(crate) async fn authenticate(
    security: &NodeSecurity,
    mut connect: Box<Connect>,
    peer: Option<std::net::IpAddr>,
    wire: &mut impl AuthWire,
) -> Result<(Box<Connect>, Option<TopicClaim>), Option<ReasonCode>> {
    let refused = match connect.properties.authentication_method.clone() {
        None => match security.authenticate(&connect, peer).await {
            Ok(login) => {
                // A JWT names its user: the session's user, whether or not the CONNECT gave one
                // (it gave the same one if it did: checked with the token).
                if let Some(username) = login.jwt_user {
                    connect.username = Some(ByteString::from(&*username));
                }
                return Ok((connect, login.claim));
            }
            Err(reason) => reason,
        },
        Some(method) => match exchange(security, &method, &mut connect, wire).await {
            Ok(()) => return Ok((connect, None)),
            Err(Some(reason)) => reason,
            Err(None) => return Err(None),
        },
    };
    let connack =
        ConnAck { session_present: false, reason: refused, properties: Properties::default() };
    // Best effort: the connection closes next anyway.
    wire.send(Packet::ConnAck(connack)).await;
    Err(Some(refused))
}

/// What follows an admitted CONNECT once its client id is final (after
/// `use_username_as_clientid`), before it reaches its home shard: its JWT topic claim is filed
/// under that id ([`NodeSecurity::settle_claim`]; `Err` with the CONNACK reason when it cannot
/// be), and with an HTTP ACL service the will's topic is asked about, so the home shard's
/// authorizer finds the answer cached (a miss there would refuse the CONNECT). Waits on this
/// connection's handshake only, off the shard thread.
pub(crate) async fn settle(
    security: &NodeSecurity,
    connect: &Connect,
    claim: Option<TopicClaim>,
) -> Result<(), ReasonCode> {
    security.settle_claim(connect, claim)?;
    let (Some(service), Some(will)) = (security.acl_service(), &connect.will) else {
        return Ok(());
    };
    let question = Question::new(
        connect.username.as_deref(),
        &connect.client_id,
        &will.topic,
        Action::Publish,
    );
    if let Some(waiting) = service.fetch(vec![question]) {
        // Closed (an error) once every request is done.
        let _ = waiting.recv().await;
    }
    Ok(())
}

/// Runs `method`'s exchange for `connect`: `Err(Some(reason))` to refuse with a CONNACK,
/// `Err(None)` when the connection is gone.
async fn exchange(
    security: &NodeSecurity,
    method: &ByteString,
    connect: &mut Connect,
    wire: &mut impl AuthWire,
) -> Result<(), Option<ReasonCode>> {
    let mut step =
        security.start_authentication(method, connect.properties.authentication_data.as_deref());
    for _ in 0..AUTH_ROUNDS_MAX {
        let (exchange, data) = match step {
            AuthStep::Continue { exchange, data } => (exchange, data),
            AuthStep::Success { username, data } => {
                // The authenticated user is the session's user (ACLs name it); a CONNECT that
                // also gave a User Name must have given that one.
                if connect.username.as_deref().is_some_and(|given| given != &*username) {
                    return Err(Some(ReasonCode::NOT_AUTHORIZED));
                }
                connect.username = Some(ByteString::from(&*username));
                connect.properties.authentication_data = data;
                return Ok(());
            }
            AuthStep::Failure(reason) => return Err(Some(reason)),
        };
        let properties = Properties {
            authentication_method: Some(method.clone()),
            authentication_data: Some(data),
            ..Properties::default()
        };
        let challenge = Auth { reason: ReasonCode::CONTINUE_AUTHENTICATION, properties };
        if !wire.send(Packet::Auth(challenge)).await {
            return Err(None);
        }
        let answer = match wire.receive().await {
            Received::Packet(Packet::Auth(answer)) => answer,
            // A client that named a method sends only AUTH or DISCONNECT before CONNACK
            // [MQTT-3.1.2-30].
            Received::Packet(Packet::Disconnect(_)) => return Err(None),
            Received::Packet(_) => return Err(Some(ReasonCode::PROTOCOL_ERROR)),
            Received::Invalid(error) => return Err(Some(error.reason_code())),
            Received::Gone => return Err(None),
        };
        if answer.reason != ReasonCode::CONTINUE_AUTHENTICATION
            || answer.properties.authentication_method.as_ref() != Some(method)
        {
            return Err(Some(ReasonCode::PROTOCOL_ERROR));
        }
        step = exchange.step(answer.properties.authentication_data.as_deref());
    }
    Err(Some(ReasonCode::NOT_AUTHORIZED))
}

/// An accepted connection during its handshake: the decoder that read its CONNECT, the bytes
/// read past it, and the connect timeout's deadline.
#[derive(Debug)]
pub(crate) struct ConnectionWire<'a, S> {
    pub stream: &'a mut S,
    pub decoder: &'a mut Decoder,
    pub buf: &'a mut BytesMut,
    pub deadline: Instant,
}

impl<S: ClientStream> AuthWire for ConnectionWire<'_, S> {
    async fn send(&mut self, packet: Packet) -> bool {
        let Some(version) = self.decoder.version() else { return false };
        let mut out = BytesMut::new();
        packet.encode(version, &mut out).is_ok()
            && std::future::poll_fn(|cx| poll_write_all(self.stream, &mut out, cx)).await.is_ok()
    }

    async fn receive(&mut self) -> Received {
        loop {
            match self.decoder.decode(self.buf) {
                Ok(Decoded::Packet(packet)) => return Received::Packet(packet),
                Ok(Decoded::NeedMore(_)) => {}
                Err(error) => return Received::Invalid(error),
            }
            // EOF, an error or the connect timeout.
            if !read_more(self.stream, self.buf, self.deadline).await {
                return Received::Gone;
            }
        }
    }
}

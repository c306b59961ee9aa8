//! MQTT 5 enhanced authentication at the shard: a CONNECT the engine authenticated is answered
//! with the method's last message, and a connected client re-authenticates through AUTH packets
//! (0x19, 0x18, 0x00) while its other packets keep flowing. The exchanges are real SCRAM-SHA-256
//! ones (`shardmq_auth::scram`) run by a small authorizer standing in for the engine's.

mod harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use harness::{connack, connect, payloads, Node};
use shardmq_auth::scram::{self, ScramClient, ServerFirst, SCRAM_SHA_256};
use shardmq_auth::PasswordFile;
use shardmq_codec::{
    Auth, ByteString, Bytes, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
};
use shardmq_shard::authorize::{AuthExchange, AuthStep, Authorizer};
use shardmq_shard::ConnId;

/// RFC 7677's user "user", password "pencil".
const PENCIL: &str = "user:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$\
                      WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$\
                      wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

/// Allows every topic; authenticates SCRAM-SHA-256 against a password file, with server nonces
/// from a counter so runs repeat.
#[derive(Debug)]
struct Scram {
    passwords: PasswordFile,
    nonces: AtomicU64,
}

#[derive(Debug)]
struct ScramStep(ServerFirst);

impl AuthExchange for ScramStep {
    fn step(self: Box<Self>, data: Option<&[u8]>) -> AuthStep {
        match data.map(|data| self.0.finish(data)) {
            Some(Ok(success)) => AuthStep::Success {
                username: success.username,
                data: Some(Bytes::from(success.server_final)),
            },
            _ => AuthStep::Failure(ReasonCode::NOT_AUTHORIZED),
        }
    }
}

impl Authorizer for Scram {
    fn can_publish(&self, _: Option<&str>, _: &str, _: &str) -> bool {
        true
    }
    fn can_subscribe(&self, _: Option<&str>, _: &str, _: &str) -> bool {
        true
    }
    fn can_read(&self, _: Option<&str>, _: &str, _: &str) -> bool {
        true
    }
    fn supports_auth_method(&self, method: &str) -> bool {
        method == SCRAM_SHA_256
    }
    fn start_authentication(&self, method: &str, data: Option<&[u8]>) -> AuthStep {
        if method != SCRAM_SHA_256 {
            return AuthStep::Failure(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        let nonce = format!("server{}", self.nonces.fetch_add(1, Ordering::Relaxed));
        let credentials = |name: &str| self.passwords.scram_credentials(name);
        match data.map(|data| scram::server_first(data, credentials, &nonce)) {
            Some(Ok(first)) => AuthStep::Continue {
                data: Bytes::copy_from_slice(first.message()),
                exchange: Box::new(ScramStep(first)),
            },
            _ => AuthStep::Failure(ReasonCode::NOT_AUTHORIZED),
        }
    }
}

fn authorizer(file: &str) -> Arc<dyn Authorizer> {
    let passwords = PasswordFile::parse(file).expect("a valid password file");
    Arc::new(Scram { passwords, nonces: AtomicU64::new(0) })
}

fn node_with(authorizer: Option<Arc<dyn Authorizer>>) -> Node {
    let mut node = Node::new(2);
    for shard in &mut node.shards {
        shard.set_authorizer(authorizer.clone());
    }
    node
}

fn two_users() -> String {
    let other = shardmq_auth::scram_hash("other-pw", 4096);
    format!("{PENCIL}\nother:{other}\n")
}

/// A CONNECT as the engine hands it over after a SCRAM exchange: the authenticated user name
/// and the server-final message.
fn authenticated_connect(client_id: &str, method: &str) -> shardmq_codec::Connect {
    let mut packet = connect(client_id, ProtocolVersion::V5, true);
    packet.username = Some(ByteString::from("user"));
    packet.properties.authentication_method = Some(ByteString::from(method));
    packet.properties.authentication_data = Some(Bytes::from_static(b"v=server-final"));
    packet
}

fn connected(node: &mut Node, client_id: &str) -> ConnId {
    let conn = node.connect_with(authenticated_connect(client_id, SCRAM_SHA_256));
    let packets = node.take(conn);
    assert_eq!(connack(&packets).reason, ReasonCode::SUCCESS, "{packets:?}");
    conn
}

fn auth(reason: ReasonCode, method: &str, data: &[u8]) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(ByteString::from(method)),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..Properties::default()
        },
    })
}

/// The one AUTH the client received: its reason and data.
fn auth_reply(node: &mut Node, conn: ConnId) -> (ReasonCode, Bytes) {
    let packets = node.take(conn);
    match packets.as_slice() {
        [Packet::Auth(auth)] => {
            assert_eq!(auth.properties.authentication_method.as_deref(), Some(SCRAM_SHA_256));
            (auth.reason, auth.properties.authentication_data.clone().unwrap_or_default())
        }
        other => panic!("expected one AUTH, got {other:?}"),
    }
}

/// The DISCONNECT the client received, and that its connection was closed.
fn disconnected(node: &mut Node, conn: ConnId) -> ReasonCode {
    let packets = node.take(conn);
    assert!(node.closed.contains(&conn), "still open after {packets:?}");
    match packets.as_slice() {
        [.., Packet::Disconnect(disconnect)] => disconnect.reason,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

/// Runs a re-authentication of `conn` as `username`/`password`: the server-first's data on the
/// way, then the final AUTH's reason, or `Err` with the DISCONNECT's reason.
fn reauthenticate(
    node: &mut Node,
    conn: ConnId,
    username: &str,
    password: &str,
) -> Result<(), ReasonCode> {
    let client = ScramClient::new(username, password.as_bytes(), "clientnonce");
    node.send(conn, auth(ReasonCode::RE_AUTHENTICATE, SCRAM_SHA_256, &client.client_first()));
    let (reason, server_first) = auth_reply(node, conn);
    assert_eq!(reason, ReasonCode::CONTINUE_AUTHENTICATION);
    let last = client.client_final(&server_first).expect("a valid server-first");
    node.send(conn, auth(ReasonCode::CONTINUE_AUTHENTICATION, SCRAM_SHA_256, &last.message));
    if node.closed.contains(&conn) {
        return Err(disconnected(node, conn));
    }
    let (reason, server_final) = auth_reply(node, conn);
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert!(last.verify_server_final(&server_final), "the server's signature is wrong");
    Ok(())
}

#[test]
fn connack_echoes_the_method_and_the_server_final_message() {
    let mut node = node_with(Some(authorizer(PENCIL)));
    let conn = node.connect_with(authenticated_connect("c", SCRAM_SHA_256));
    let packets = node.take(conn);
    let ack = connack(&packets);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.authentication_method.as_deref(), Some(SCRAM_SHA_256));
    assert_eq!(ack.properties.authentication_data.as_deref(), Some(&b"v=server-final"[..]));
}

#[test]
fn a_method_nobody_vouches_for_is_refused_with_0x8c() {
    for (authorizer, method) in [
        (None, SCRAM_SHA_256),
        (Some(authorizer(PENCIL)), "SCRAM-SHA-1"),
        (Some(authorizer(PENCIL)), "scram-sha-256"),
    ] {
        let mut node = node_with(authorizer);
        let conn = node.connect_with(authenticated_connect("c", method));
        let packets = node.take(conn);
        assert_eq!(connack(&packets).reason, ReasonCode::BAD_AUTHENTICATION_METHOD, "{method}");
        assert!(node.closed.contains(&conn));
    }
}

#[test]
fn reauthentication_succeeds_while_publishes_keep_flowing() {
    let mut node = node_with(Some(authorizer(&two_users())));
    let conn = connected(&mut node, "c");
    node.subscribe(conn, "t", QoS::AtMostOnce);
    node.take(conn);

    let client = ScramClient::new("user", b"pencil", "fyko+d2lbbFgONRv9qkxdawL");
    node.send(conn, auth(ReasonCode::RE_AUTHENTICATE, SCRAM_SHA_256, &client.client_first()));
    let (reason, server_first) = auth_reply(&mut node, conn);
    assert_eq!(reason, ReasonCode::CONTINUE_AUTHENTICATION);
    let text = std::str::from_utf8(&server_first).unwrap();
    assert!(
        text.starts_with("r=fyko+d2lbbFgONRv9qkxdawLserver0,s=W22ZaJ0SNY7soEsUEjb6gQ=="),
        "{text}"
    );

    // Mid-exchange, the connection still publishes and receives.
    node.publish(conn, "t", "during", QoS::AtMostOnce, false);
    assert_eq!(payloads(&node.publishes(conn)), ["during"]);

    let last = client.client_final(&server_first).unwrap();
    node.send(conn, auth(ReasonCode::CONTINUE_AUTHENTICATION, SCRAM_SHA_256, &last.message));
    let (reason, server_final) = auth_reply(&mut node, conn);
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert!(last.verify_server_final(&server_final));

    // And again: each re-authentication is a new exchange.
    assert_eq!(reauthenticate(&mut node, conn, "user", "pencil"), Ok(()));
    assert!(!node.closed.contains(&conn));
}

#[test]
fn a_wrong_proof_disconnects_with_0x87() {
    let mut node = node_with(Some(authorizer(PENCIL)));
    let conn = connected(&mut node, "c");
    assert_eq!(reauthenticate(&mut node, conn, "user", "pencil?"), Err(ReasonCode::NOT_AUTHORIZED));
}

#[test]
fn reauthenticating_as_another_user_disconnects_with_0x87() {
    let mut node = node_with(Some(authorizer(&two_users())));
    let conn = connected(&mut node, "c");
    assert_eq!(
        reauthenticate(&mut node, conn, "other", "other-pw"),
        Err(ReasonCode::NOT_AUTHORIZED)
    );
}

#[test]
fn malformed_client_first_disconnects_with_0x87() {
    let mut node = node_with(Some(authorizer(PENCIL)));
    let conn = connected(&mut node, "c");
    node.send(conn, auth(ReasonCode::RE_AUTHENTICATE, SCRAM_SHA_256, b"p=tls-unique,,n=user,r=x"));
    assert_eq!(disconnected(&mut node, conn), ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn auth_out_of_place_is_a_protocol_error() {
    let client_first = ScramClient::new("user", b"pencil", "n").client_first();
    // A connection that authenticated with a password.
    let mut node = node_with(Some(authorizer(PENCIL)));
    let plain = node.connect("plain", ProtocolVersion::V5, true);
    node.take(plain);
    node.send(plain, auth(ReasonCode::RE_AUTHENTICATE, SCRAM_SHA_256, &client_first));
    assert_eq!(disconnected(&mut node, plain), ReasonCode::PROTOCOL_ERROR);

    // Another method than the CONNECT's.
    let conn = connected(&mut node, "c1");
    node.send(conn, auth(ReasonCode::RE_AUTHENTICATE, "SCRAM-SHA-1", &client_first));
    assert_eq!(disconnected(&mut node, conn), ReasonCode::PROTOCOL_ERROR);

    // Continue without an exchange under way; success from the client.
    for reason in [ReasonCode::CONTINUE_AUTHENTICATION, ReasonCode::SUCCESS] {
        let conn = connected(&mut node, "c2");
        node.send(conn, auth(reason, SCRAM_SHA_256, b"c=biws,r=x,p=AAAA"));
        assert_eq!(disconnected(&mut node, conn), ReasonCode::PROTOCOL_ERROR, "{reason:?}");
    }

    // Re-authenticate again while an exchange is under way.
    let conn = connected(&mut node, "c3");
    node.send(conn, auth(ReasonCode::RE_AUTHENTICATE, SCRAM_SHA_256, &client_first));
    assert_eq!(auth_reply(&mut node, conn).0, ReasonCode::CONTINUE_AUTHENTICATION);
    node.send(conn, auth(ReasonCode::RE_AUTHENTICATE, SCRAM_SHA_256, &client_first));
    assert_eq!(disconnected(&mut node, conn), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn a_reloaded_password_file_applies_from_the_next_exchange() {
    let mut node = node_with(Some(authorizer(PENCIL)));
    let conn = connected(&mut node, "c");
    // The file now gives "user" another password (what a SIGHUP does: a new authorizer).
    let changed = format!("user:{}\n", shardmq_auth::scram_hash("eraser", 4096));
    let reloaded = authorizer(&changed);
    for shard in &mut node.shards {
        shard.set_authorizer(Some(reloaded.clone()));
    }
    assert_eq!(reauthenticate(&mut node, conn, "user", "eraser"), Ok(()));
    assert_eq!(reauthenticate(&mut node, conn, "user", "pencil"), Err(ReasonCode::NOT_AUTHORIZED));
}

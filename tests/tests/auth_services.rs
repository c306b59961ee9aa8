//! The HTTP authentication service and JWT passwords end to end: the real broker binary, an
//! auth service written with Python's standard `http.server` (Debian's /usr/bin/python3, started
//! per test on a free loopback port), raw clients for the exact reason codes, `mosquitto_pub`,
//! and JWTs signed with the `jsonwebtoken` crate (HS256; RS256 with an `openssl` key; ES256 with
//! an rcgen key) and verified against a secret file or a JWKS file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shardmq_io::codec::{
    ByteString, Bytes, ConnAck, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilterEntry,
};
use shardmq_tests::{
    connect_packet, mosquitto_password_file, publish_packet, require_tool, run_tool, tool_command,
    Broker, RawClient, Received, TestDir,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const WAIT: Duration = Duration::from_secs(5);

/// The auth and ACL service: its answer depends on the user name's first word (`allow-…`,
/// `deny-…`, `ignore-…`; `slow-…` answers allow after 3 s, `garbage-…` answers 200 with a body
/// that is not JSON, `status-…` answers 500), or for an ACL question (it has an `action`) on the
/// topic's first level in the same way (`allow/…`, `deny/…`, `ignore/…`). Every request body is appended to the file named by its first
/// argument, one JSON object per line. With a certificate and key file as second and third
/// arguments it speaks HTTPS.
const SERVICE: &str = r#"
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

requests = open(sys.argv[1], "a")

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = json.loads(body)
        requests.write(json.dumps(request) + "\n")
        requests.flush()
        if "action" in request:
            word = request["topic"].split("/")[0]
        else:
            word = request.get("username", "").split("-")[0]
        if word == "slow":
            time.sleep(3)
            word = "allow"
        if word == "status":
            self.send_response(500)
            self.end_headers()
            return
        if word == "garbage":
            answer = b"allow, probably"
        else:
            result = word if word in ("allow", "deny", "ignore") else "deny"
            answer = json.dumps({"result": result, "is_superuser": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 3:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The running auth service; killed when dropped.
struct AuthService {
    child: Child,
    port: u16,
    requests: PathBuf,
    scheme: &'static str,
}

impl AuthService {
    fn start(dir: &TestDir) -> AuthService {
        AuthService::start_with(dir, &[])
    }

    /// Starts the service with more arguments (a certificate and key: HTTPS).
    fn start_with(dir: &TestDir, tls: &[&Path]) -> AuthService {
        require_tool("/usr/bin/python3");
        let script = dir.path().join("auth_service.py");
        std::fs::write(&script, SERVICE).expect("write the service");
        let requests = dir.path().join("requests.jsonl");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&requests)
            .args(tls)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the auth service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the service's port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("a port, not {line:?}"));
        let scheme = if tls.is_empty() { "http" } else { "https" };
        AuthService { child, port, requests, scheme }
    }

    fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/mqtt/auth", self.scheme, self.port)
    }

    /// The requests the service got, in order.
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.requests).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login(
    broker: &Broker,
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&[u8]>,
) -> (RawClient, ConnAck) {
    let mut connect = connect_packet(version, client_id);
    connect.username = user.map(ByteString::from);
    connect.password = password.map(Bytes::copy_from_slice);
    RawClient::connect(broker.addr(), connect)
}

fn reason(broker: &Broker, client_id: &str, user: &str, password: &str) -> ReasonCode {
    login(broker, V5, client_id, Some(user), Some(password.as_bytes())).1.reason
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn the_http_service_allows_denies_and_falls_through_to_the_password_file() {
    let dir = TestDir::new("auth-http");
    let service = AuthService::start(&dir);
    let passwords = mosquitto_password_file(&dir, &[("ignore-alice", "wonderland")]);
    let url = service.url();
    let broker = Broker::start(&[
        "--auth-http-url",
        &url,
        "--password-file",
        path(&passwords),
        "--admin-listen",
        "127.0.0.1:0",
    ]);

    assert_eq!(reason(&broker, "a1", "allow-bob", "anything"), ReasonCode::SUCCESS);
    let request = service.requests().pop().expect("a request");
    let expected = json!({"username": "allow-bob", "password": "anything", "clientid": "a1",
                          "peerhost": "127.0.0.1", "protocol": "5.0"});
    assert_eq!(request, expected);
    assert_eq!(
        reason(&broker, "d1", "deny-bob", "anything"),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // 3.1.1: return code 4, which the codec reads back as 0x86; the protocol says "3.1.1".
    let (_, denied) = login(&broker, V3, "d3", Some("deny-carol"), Some(b"x"));
    assert_eq!(denied.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(service.requests().pop().expect("a request")["protocol"], "3.1.1");
    // A password that is not UTF-8 goes in base64.
    let (_, binary) = login(&broker, V5, "b1", Some("allow-bin"), Some(b"\xff\x00"));
    assert_eq!(binary.reason, ReasonCode::SUCCESS);
    assert_eq!(service.requests().pop().expect("a request")["password"], "/wA=");

    // `ignore`: the password file decides.
    assert_eq!(reason(&broker, "i1", "ignore-alice", "wonderland"), ReasonCode::SUCCESS);
    assert_eq!(
        reason(&broker, "i2", "ignore-alice", "looking-glass"),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );

    // Answers that are not answers fail closed.
    let garbage = reason(&broker, "g1", "garbage-dan", "x");
    assert_eq!(garbage, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let status = reason(&broker, "s1", "status-erin", "x");
    assert_eq!(status, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // Debian's own client is let in by the service.
    require_tool("mosquitto_pub");
    let mut command = tool_command("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()]).args([
        "-u",
        "allow-mosquitto",
        "-P",
        "pw",
        "-t",
        "t",
        "-m",
        "hi",
    ]);
    let published = run_tool(&mut command, WAIT);
    assert!(published.status.success(), "{published:?}");

    let count = |result: &str| {
        broker.metric_total("shardmq_auth_http_requests_total", &format!("result=\"{result}\""))
    };
    assert_eq!(count("allow"), 3);
    assert_eq!(count("deny"), 2);
    assert_eq!(count("ignore"), 2);
    assert_eq!(count("error"), 2);
}

#[test]
fn the_service_sees_the_client_address_a_proxy_header_names() {
    use std::io::{Read, Write};
    let dir = TestDir::new("auth-http-proxy");
    let service = AuthService::start(&dir);
    let url = service.url();
    let broker = Broker::start(&["--auth-http-url", &url, "--proxy-protocol", "true"]);
    let mut stream = std::net::TcpStream::connect(broker.addr()).expect("connect");
    let source: std::net::SocketAddr = "198.51.100.7:40000".parse().expect("an address");
    stream.write_all(&shardmq_tests::proxy_v1_header(source)).expect("the header");
    let mut connect = connect_packet(V5, "p1");
    connect.username = Some(ByteString::from("allow-proxied"));
    let mut bytes = shardmq_io::codec::BytesMut::new();
    Packet::Connect(Box::new(connect)).encode(V5, &mut bytes).expect("encodes");
    stream.write_all(&bytes).expect("the CONNECT");
    stream.set_read_timeout(Some(WAIT)).expect("a timeout");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("a CONNACK");
    assert_eq!((connack[0], connack[3]), (0x20, 0x00), "{connack:?}");
    let request = service.requests().pop().expect("a request");
    assert_eq!(request["peerhost"], "198.51.100.7");
}

#[test]
fn an_https_service_is_trusted_through_the_system_store() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = TestDir::new("auth-https");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let key = KeyPair::generate().expect("key");
    let signed = params.signed_by(&key, &ca).expect("sign");
    let (ca_file, cert, key_file) =
        (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca_file, ca.pem()).expect("write the CA");
    std::fs::write(&cert, signed.pem()).expect("write the certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
    let service = AuthService::start_with(&dir, &[&cert, &key_file]);
    let url = service.url();
    assert!(url.starts_with("https://"), "{url}");
    // The system's trust store, here replaced by the test CA as OpenSSL's SSL_CERT_FILE does.
    let trusting = format!("SSL_CERT_FILE={}", path(&ca_file));
    let broker = Broker::start_wrapped(&["env", &trusting], &["--auth-http-url", &url]);
    assert_eq!(reason(&broker, "h1", "allow-tls", "x"), ReasonCode::SUCCESS);
    assert_eq!(reason(&broker, "h2", "deny-tls", "x"), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // Without the CA, the certificate is not trusted: the service failed, fail closed.
    let distrusting = format!("SSL_CERT_FILE={}", path(&cert));
    let other = Broker::start_wrapped(&["env", &distrusting], &["--auth-http-url", &url]);
    let refused = reason(&other, "h3", "allow-tls", "x");
    assert_eq!(refused, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert!(other.wait_for_log("auth_http_url", WAIT).is_some(), "{}", other.log());
}

#[test]
fn a_slow_service_times_out_and_fails_closed() {
    let dir = TestDir::new("auth-http-slow");
    let service = AuthService::start(&dir);
    let url = service.url();
    let broker = Broker::start(&["--auth-http-url", &url, "--auth-http-timeout-ms", "500"]);
    let started = Instant::now();
    assert_eq!(reason(&broker, "s1", "slow-sam", "x"), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "refused after {took:?}");
    assert!(broker.wait_for_log("auth_http_url", WAIT).is_some(), "{}", broker.log());
}

/// A loopback URL where nothing listens.
fn nothing_listening() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/auth")
}

#[test]
fn a_service_that_is_down_fails_closed_unless_told_to_ignore_it() {
    let dir = TestDir::new("auth-http-down");
    let passwords = mosquitto_password_file(&dir, &[("alice", "wonderland")]);
    let url = nothing_listening();
    let closed = Broker::start(&["--auth-http-url", &url, "--password-file", path(&passwords)]);
    for index in 0..3 {
        let refused = reason(&closed, &format!("c{index}"), "alice", "wonderland");
        assert_eq!(refused, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    // The first failure is logged; the next ones within 10 s are only counted.
    assert!(closed.wait_for_log("auth_http_url", WAIT).is_some(), "{}", closed.log());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(closed.log_count("failed:"), 1, "{}", closed.log());

    let open = Broker::start(&[
        "--auth-http-url",
        &url,
        "--auth-http-failure",
        "ignore",
        "--password-file",
        path(&passwords),
    ]);
    assert_eq!(reason(&open, "o1", "alice", "wonderland"), ReasonCode::SUCCESS);
    assert_eq!(reason(&open, "o2", "alice", "nope"), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret);
    encode(&Header::new(Algorithm::HS256), claims, &key).expect("a token")
}

fn subscribe(client: &mut RawClient, filter: &str) -> ReasonCode {
    let entry = TopicFilterEntry {
        filter: ByteString::from(filter),
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
    };
    let subscribe = Subscribe {
        packet_id: shardmq_tests::packet_id(1),
        filters: vec![entry],
        properties: Properties::default(),
    };
    client.send(&Packet::Subscribe(subscribe));
    match client.next(WAIT) {
        Received::Packet(Packet::SubAck(ack)) => ack.reasons[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn publish(client: &mut RawClient, topic: &str) -> ReasonCode {
    publish_aliased(client, topic, None)
}

/// Publishes at QoS 1 with a Topic Alias (an empty `topic`: by alias only).
fn publish_aliased(client: &mut RawClient, topic: &str, alias: Option<u16>) -> ReasonCode {
    let mut packet = publish_packet(topic, b"x", QoS::AtLeastOnce, false, 2);
    if let Packet::Publish(publish) = &mut packet {
        publish.properties.topic_alias = alias;
    }
    client.send(&packet);
    match client.next(WAIT) {
        // "No matching subscribers" is a success too.
        Received::Packet(Packet::PubAck(ack))
            if ack.reason == ReasonCode::NO_MATCHING_SUBSCRIBERS =>
        {
            ReasonCode::SUCCESS
        }
        Received::Packet(Packet::PubAck(ack)) => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[test]
fn hs256_tokens_log_in_and_bad_ones_are_refused() {
    let dir = TestDir::new("jwt-hs256");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-key\n").expect("write the secret");
    let broker = Broker::start(&[
        "--jwt-secret-file",
        path(&secret),
        "--jwt-acl-claim",
        "acl",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let good = hs256(b"s3cret-key", &json!({"sub": "jwt-alice", "exp": now() + 600}));
    let (_, ok) = login(&broker, V5, "j1", None, Some(good.as_bytes()));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    let (_, named) = login(&broker, V5, "j2", Some("jwt-alice"), Some(good.as_bytes()));
    assert_eq!(named.reason, ReasonCode::SUCCESS);
    let (_, other) = login(&broker, V5, "j3", Some("mallory"), Some(good.as_bytes()));
    assert_eq!(other.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // Past `exp` and its 30 s leeway.
    let expired = hs256(b"s3cret-key", &json!({"sub": "jwt-alice", "exp": now() - 120}));
    let (_, refused) = login(&broker, V5, "j4", None, Some(expired.as_bytes()));
    assert_eq!(refused.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let forged = hs256(b"not-the-key", &json!({"sub": "jwt-alice", "exp": now() + 600}));
    let (_, refused) = login(&broker, V3, "j5", Some("jwt-alice"), Some(forged.as_bytes()));
    assert_eq!(refused.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let no_exp = hs256(b"s3cret-key", &json!({"sub": "jwt-alice"}));
    let (_, refused) = login(&broker, V5, "j6", None, Some(no_exp.as_bytes()));
    assert_eq!(refused.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // The topic claim narrows what the client may do.
    let acl = json!({"pub": ["a/#"], "sub": ["b/+"]});
    let claimed = hs256(b"s3cret-key", &json!({"sub": "jwt-bob", "exp": now() + 600, "acl": acl}));
    let (mut bob, ok) = login(&broker, V5, "j7", None, Some(claimed.as_bytes()));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    assert_eq!(publish(&mut bob, "a/x"), ReasonCode::SUCCESS);
    assert_eq!(publish(&mut bob, "c/x"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(subscribe(&mut bob, "b/x"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(subscribe(&mut bob, "c/#"), ReasonCode::NOT_AUTHORIZED);

    let count = |result: &str| {
        broker.metric_total("shardmq_auth_jwt_total", &format!("result=\"{result}\""))
    };
    assert_eq!(count("ok"), 3);
    assert_eq!(count("expired"), 2);

    // SIGHUP rereads the secret: tokens signed with the old one are refused from then on.
    std::fs::write(&secret, "new-key\n").expect("write the secret");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(broker.wait_for_log("reloaded the JWT keys", WAIT).is_some(), "{}", broker.log());
    let (_, old) = login(&broker, V5, "j8", None, Some(good.as_bytes()));
    assert_eq!(old.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let renewed = hs256(b"new-key", &json!({"sub": "jwt-alice", "exp": now() + 600}));
    let (_, ok) = login(&broker, V5, "j9", None, Some(renewed.as_bytes()));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    assert_eq!(count("ok"), 4);
    assert_eq!(count("bad_signature"), 2);
    assert_eq!(count("invalid"), 1);
}

#[test]
fn a_topic_claim_holds_under_the_client_id_the_session_gets() {
    let dir = TestDir::new("jwt-claim-id");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "k").expect("write the secret");
    let flags = ["--jwt-secret-file", path(&secret), "--jwt-acl-claim", "acl"];
    let acl = json!({"pub": ["a/#"], "sub": []});
    let token = hs256(b"k", &json!({"sub": "carol", "exp": now() + 600, "acl": acl}));
    // `use_username_as_clientid` renames the session after the login: the claim follows.
    let mut renaming = flags.to_vec();
    renaming.extend(["--use-username-as-clientid", "true"]);
    let broker = Broker::start(&renaming);
    let (mut carol, ok) = login(&broker, V5, "picked-by-carol", None, Some(token.as_bytes()));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    assert_eq!(publish(&mut carol, "a/x"), ReasonCode::SUCCESS);
    assert_eq!(publish(&mut carol, "c/x"), ReasonCode::NOT_AUTHORIZED);
    // An id the broker would assign cannot carry a claim: refused rather than unrestricted.
    let plain = Broker::start(&flags);
    let (_, refused) = login(&plain, V5, "", None, Some(token.as_bytes()));
    assert_eq!(refused.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
}

/// Unpadded base64url, as JWKs carry numbers.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An RSA key made by `openssl`: its PEM and its modulus.
fn rsa_key(dir: &TestDir) -> (Vec<u8>, Vec<u8>) {
    require_tool("openssl");
    let pem = dir.path().join("rsa.pem");
    let made = run_tool(
        tool_command("openssl").args(["genrsa", "-out", path(&pem), "2048"]),
        Duration::from_secs(30),
    );
    assert!(made.status.success(), "{made:?}");
    let modulus = run_tool(
        tool_command("openssl").args(["rsa", "-in", path(&pem), "-noout", "-modulus"]),
        WAIT,
    );
    let text = String::from_utf8(modulus.stdout).expect("UTF-8");
    let hex = text.trim().strip_prefix("Modulus=").expect("Modulus=...");
    let modulus = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    (std::fs::read(&pem).expect("the key"), modulus)
}

#[test]
fn rs256_and_es256_tokens_verify_against_a_jwks_file() {
    let dir = TestDir::new("jwt-jwks");
    let (rsa_pem, modulus) = rsa_key(&dir);
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("an EC key");
    let point = ec.public_key_raw();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "n": base64url(&modulus), "e": "AQAB"},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": base64url(&point[1..33]),
         "y": base64url(&point[33..65])},
    ]});
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).expect("write the JWKS");
    let broker = Broker::start(&[
        "--jwt-jwks-file",
        path(&jwks_file),
        "--jwt-username-claim",
        "user",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let claims = json!({"user": "device-7", "exp": now() + 600, "nbf": now() - 10});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let rsa = EncodingKey::from_rsa_pem(&rsa_pem).expect("the RSA key");
    let token = encode(&header, &claims, &rsa).expect("an RS256 token");
    let (_, ok) = login(&broker, V5, "r1", Some("device-7"), Some(token.as_bytes()));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);

    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let key = EncodingKey::from_ec_der(&ec.serialize_der());
    let token = encode(&header, &claims, &key).expect("an ES256 token");
    let (_, ok) = login(&broker, V5, "e1", None, Some(token.as_bytes()));
    assert_eq!(ok.reason, ReasonCode::SUCCESS);

    // Not valid yet (`nbf` beyond the leeway), and a token without the user-name claim.
    let early = json!({"user": "device-7", "exp": now() + 600, "nbf": now() + 300});
    let token = encode(&header, &early, &key).expect("an ES256 token");
    let (_, refused) = login(&broker, V5, "e2", None, Some(token.as_bytes()));
    assert_eq!(refused.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let nameless = json!({"sub": "device-7", "exp": now() + 600});
    let token = encode(&header, &nameless, &key).expect("an ES256 token");
    let (_, refused) = login(&broker, V5, "e3", None, Some(token.as_bytes()));
    assert_eq!(refused.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let ok = broker.metric_total("shardmq_auth_jwt_total", "result=\"ok\"");
    assert_eq!(ok, 2);
    let early = broker.metric_total("shardmq_auth_jwt_total", "result=\"not_yet_valid\"");
    assert_eq!(early, 1);
}

#[test]
fn the_acl_service_decides_publishes_and_subscribes_and_its_answers_are_cached() {
    let dir = TestDir::new("acl-http");
    let service = AuthService::start(&dir);
    let acl = dir.path().join("acl");
    // For anonymous clients: what the service leaves to the file (`ignore/…`).
    std::fs::write(&acl, "topic readwrite ignore/ok/#\n").expect("write the ACL");
    let url = service.url();
    let broker = Broker::start(&[
        "--acl-http-url",
        &url,
        "--acl-http-cache-secs",
        "2",
        "--acl-file",
        path(&acl),
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let (mut client, ok) = login(&broker, V5, "acl-1", None, None);
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe(&mut client, "allow/x"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(subscribe(&mut client, "deny/x"), ReasonCode::NOT_AUTHORIZED);
    let asked = service.requests().pop().expect("a request");
    let expected =
        json!({"username": "", "clientid": "acl-1", "topic": "deny/x", "action": "subscribe"});
    assert_eq!(asked, expected);
    assert_eq!(publish(&mut client, "deny/t"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(publish(&mut client, "ignore/ok/1"), ReasonCode::SUCCESS);
    assert_eq!(publish(&mut client, "ignore/no"), ReasonCode::NOT_AUTHORIZED);

    // Answers are cached for acl_http_cache_secs: one request for four publishes, then another.
    let asked_about =
        |topic: &str| service.requests().iter().filter(|request| request["topic"] == topic).count();
    for _ in 0..4 {
        assert_eq!(publish(&mut client, "allow/t"), ReasonCode::SUCCESS);
    }
    assert_eq!(asked_about("allow/t"), 1);
    assert_eq!(publish_aliased(&mut client, "allow/a", Some(1)), ReasonCode::SUCCESS);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(publish(&mut client, "allow/t"), ReasonCode::SUCCESS);
    assert_eq!(asked_about("allow/t"), 2);
    // By alias only, past the TTL: asked about again under the topic the alias stands for.
    assert_eq!(publish_aliased(&mut client, "", Some(1)), ReasonCode::SUCCESS);
    assert_eq!(asked_about("allow/a"), 2);
    // Left to the ACL file by the service, a subscription and a publish meet (deliveries are
    // checked against the ACL file alone).
    assert_eq!(subscribe(&mut client, "ignore/ok/#"), ReasonCode::GRANTED_QOS_1);
    client.send(&publish_packet("ignore/ok/2", b"hello", QoS::AtMostOnce, false, 3));
    let delivered = shardmq_tests::receive_publish(&mut client, WAIT).expect("a delivery");
    assert_eq!(&delivered.payload[..], b"hello");

    let allowed = broker.metric_total("shardmq_acl_http_requests_total", "result=\"allow\"");
    assert_eq!(allowed, 5);
}

#[test]
fn an_acl_service_that_is_down_refuses_publishes_and_subscribes() {
    let url = nothing_listening();
    let broker = Broker::start(&["--acl-http-url", &url]);
    let (mut client, ok) = login(&broker, V5, "acl-down", None, None);
    assert_eq!(ok.reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe(&mut client, "a/b"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(publish(&mut client, "a/b"), ReasonCode::NOT_AUTHORIZED);
    assert!(broker.wait_for_log("acl_http_url", WAIT).is_some(), "{}", broker.log());
}

//! MQTT over TLS, mutual TLS, WebSocket and secure WebSocket, end to end with clients nobody
//! here wrote: Debian's `mosquitto_pub`/`mosquitto_sub` over TLS with a test CA (and client
//! certificates), Python `paho-mqtt` over WebSocket and WSS, and MQTT.js (npm `mqtt`) in
//! headless Chromium on a page served locally, the way browser dashboards connect. Certificate
//! reloads on SIGHUP, good and bad.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use shardmq_tests::{
    proxy_v1_header, require_tool, run_tool, spawn_tool, tool_command, Broker, ProxyRelay, TestDir,
};

const WAIT: Duration = Duration::from_secs(10);
/// Debian's interpreter, where python3-paho-mqtt installs.
const PYTHON: &str = "/usr/bin/python3";

/// A test CA and certificates it signs, written as PEM files into a directory.
struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The serial number of the next certificate it signs.
    next_serial: std::cell::Cell<u64>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Pki { issuer, next_serial: std::cell::Cell::new(1) }
    }

    /// Writes the CA certificate to `path`.
    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).expect("write the CA");
    }

    /// Signs a certificate for `common_name` (a server for 127.0.0.1 and localhost, or a
    /// client; an empty name: a client certificate with no common name at all) and writes it
    /// and its key to `certificate` and `key`.
    /// Returns the certificate's serial number.
    fn issue(&self, common_name: &str, server: bool, certificate: &Path, key: &Path) -> u64 {
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        let names = if server {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !common_name.is_empty() {
            params.distinguished_name.push(DnType::CommonName, common_name);
        }
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key_pair = KeyPair::generate().expect("key");
        let signed = params.signed_by(&key_pair, &self.issuer).expect("sign");
        std::fs::write(certificate, signed.pem()).expect("write the certificate");
        std::fs::write(key, key_pair.serialize_pem()).expect("write the key");
        serial
    }

    /// Writes a revocation list (number `number`) that revokes `serials` to `path`.
    fn write_crl(&self, path: &Path, number: u64, serials: &[u64]) {
        let revoked = serials
            .iter()
            .map(|&serial| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial),
                revocation_time: rcgen::date_time_ymd(2026, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("sign the CRL");
        std::fs::write(path, crl.pem().expect("CRL PEM")).expect("write the CRL");
    }
}

/// A test directory with a CA (`ca.pem`) and the broker's certificate from it
/// (`server.pem`, `server.key`).
struct Fixture {
    dir: TestDir,
    pki: Pki,
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = TestDir::new(name);
        let ca = dir.path().join("ca.pem");
        let (certificate, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        let pki = Pki::new("shardmq test CA");
        pki.write_ca(&ca);
        pki.issue("broker", true, &certificate, &key);
        Fixture { dir, pki, ca, certificate, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A broker with `listeners` (e.g. `--tls-listen 127.0.0.1:0`), the certificate, and
    /// `extra` flags.
    fn broker(&self, listeners: &[&str], extra: &[&str]) -> Broker {
        let tls_files =
            ["--tls-cert", path_arg(&self.certificate), "--tls-key", path_arg(&self.key)];
        Broker::start(&[listeners, &tls_files[..], extra].concat())
    }
}

const TLS_LISTENER: [&str; 2] = ["--tls-listen", "127.0.0.1:0"];

/// Where a listener of the broker is, from its start-up log line ("listening for {what} on").
fn listener(broker: &Broker, what: &str) -> SocketAddr {
    let needle = format!("listening for {what} on ");
    let line = broker
        .wait_for_log(&needle, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no {what} listener in the log:\n{}", broker.log()));
    line.split(&needle)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.parse().ok())
        .expect("a socket address")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `mosquitto_sub` for one message on `topic` over TLS, running in the background.
fn tls_subscriber(
    address: SocketAddr,
    ca: &Path,
    extra: &[&str],
    topic: &str,
) -> std::process::Child {
    require_tool("mosquitto_sub");
    let mut command = Command::new("mosquitto_sub");
    command
        .args(["-h", "127.0.0.1", "-p", &address.port().to_string(), "--cafile", path_arg(ca)])
        .args(["-t", topic, "-q", "1", "-C", "1", "-W", "10", "-V", "mqttv5"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_tool(&mut command)
}

/// `mosquitto_pub` of one message over TLS: whether it succeeded, and its stderr.
fn tls_publish(
    address: SocketAddr,
    ca: &Path,
    extra: &[&str],
    topic: &str,
    message: &str,
) -> (bool, String) {
    require_tool("mosquitto_pub");
    let mut command = tool_command("mosquitto_pub");
    command
        .args(["-h", "127.0.0.1", "-p", &address.port().to_string(), "--cafile", path_arg(ca)])
        .args(["-t", topic, "-m", message, "-q", "1", "-V", "mqttv5"])
        .args(extra);
    let output = run_tool(&mut command, WAIT);
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Gives a subscriber started in the background time to connect and subscribe before the
/// message it waits for is published (a local broker needs milliseconds).
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

fn finish(child: std::process::Child) -> (bool, String) {
    let deadline = Instant::now() + WAIT + Duration::from_secs(2);
    let mut child = child;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn tls_with_mosquitto_clients_and_certificate_reload() {
    let fixture = Fixture::new("tls");
    let (ca1, ca2) = (fixture.ca.clone(), fixture.path("ca2.pem"));
    let (certificate, key) = (fixture.certificate.clone(), fixture.key.clone());
    let broker = fixture.broker(&TLS_LISTENER, &[]);
    let tls = listener(&broker, "MQTT over TLS");

    // A subscriber and a publisher over TLS, verifying the broker against the test CA.
    let subscriber = tls_subscriber(tls, &ca1, &[], "tls/test");
    settle();
    let (published, stderr) = tls_publish(tls, &ca1, &[], "tls/test", "over tls");
    assert!(published, "mosquitto_pub over TLS failed: {stderr}");
    let (received, output) = finish(subscriber);
    assert!(received && output.trim() == "over tls", "mosquitto_sub over TLS: {output}");
    // The plain listener still speaks plain MQTT.
    let mut plain = tool_command("mosquitto_pub");
    plain.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-t", "t", "-m", "x"]);
    assert!(run_tool(&mut plain, WAIT).status.success());

    // A new certificate from another CA, then SIGHUP: new connections get it.
    let second = Pki::new("shardmq test CA 2");
    second.write_ca(&ca2);
    second.issue("broker", true, &certificate, &key);
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    broker
        .wait_for_log("reloaded the TLS certificate", WAIT)
        .unwrap_or_else(|| panic!("no reload in the log:\n{}", broker.log()));
    let (published, stderr) = tls_publish(tls, &ca2, &[], "tls/test", "after reload");
    assert!(published, "the reloaded certificate is not served: {stderr}");
    let (published, _) = tls_publish(tls, &ca1, &[], "tls/test", "old CA");
    assert!(!published, "the old certificate is still served after a reload");

    // A broken file on the next SIGHUP keeps the certificate in force, and says why.
    std::fs::write(&certificate, "not a certificate\n").expect("break the certificate");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    let line = broker
        .wait_for_log("keeping the certificate in force", WAIT)
        .unwrap_or_else(|| panic!("no refusal in the log:\n{}", broker.log()));
    assert!(line.contains("server.pem"), "the log does not name the file: {line}");
    let (published, stderr) = tls_publish(tls, &ca2, &[], "tls/test", "still served");
    assert!(published, "a bad reload broke the listener: {stderr}");
}

/// TLS behind a load balancer that sends the PROXY protocol: the header comes before the TLS
/// handshake (often in the same segment as the ClientHello), and the handshake goes on with
/// what followed it. Debian's mosquitto clients through a relay that adds the header.
#[test]
fn tls_behind_a_proxy_protocol_relay() {
    let fixture = Fixture::new("tls-proxy");
    let broker = fixture.broker(&TLS_LISTENER, &["--tls-proxy-protocol", "true"]);
    let tls = listener(&broker, "MQTT over TLS");
    let named: SocketAddr = "192.0.2.55:7000".parse().expect("address");
    let relay = ProxyRelay::start(tls, move |_| proxy_v1_header(named));
    let subscriber = tls_subscriber(relay.address(), &fixture.ca, &[], "tls/proxied");
    settle();
    let (published, stderr) = tls_publish(relay.address(), &fixture.ca, &[], "tls/proxied", "hi");
    assert!(published, "mosquitto_pub over TLS through the relay failed: {stderr}");
    let (received, output) = finish(subscriber);
    assert!(received && output.trim() == "hi", "mosquitto_sub through the relay: {output}");
    // Straight to the listener, without a header: the TLS handshake never starts.
    let (published, _) = tls_publish(tls, &fixture.ca, &[], "tls/proxied", "direct");
    assert!(!published, "a connection without a PROXY header was served");
}

#[test]
fn connect_rate_is_per_listener_and_tls_refusals_skip_the_handshake() {
    let fixture = Fixture::new("tls-rate");
    let ca = fixture.ca.clone();
    // One connect a second per listener.
    let broker = fixture.broker(&TLS_LISTENER, &["--shards", "1", "--max-connect-rate", "1"]);
    let tls = listener(&broker, "MQTT over TLS");
    let (first, stderr) = tls_publish(tls, &ca, &[], "t", "first");
    assert!(first, "the first TLS connect is within the rate: {stderr}");
    // The next one at once is over it: closed before the TLS handshake, so the client sees a
    // TLS failure rather than a CONNACK.
    let (second, stderr) = tls_publish(tls, &ca, &[], "t", "second");
    assert!(!second, "a TLS connect over the rate got in");
    assert!(!stderr.contains("rate"), "it got a CONNACK, so the handshake ran: {stderr}");
    // The plain listener's budget is its own.
    let mut plain = tool_command("mosquitto_pub");
    plain.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-t", "t", "-m", "x"]);
    let output = run_tool(&mut plain, WAIT);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn mutual_tls_takes_the_certificate_name_as_the_user() {
    let fixture = Fixture::new("mtls");
    let ca = fixture.ca.clone();
    let (alice, alice_key) = (fixture.path("alice.pem"), fixture.path("alice.key"));
    let (mallory, mallory_key) = (fixture.path("mallory.pem"), fixture.path("mallory.key"));
    fixture.pki.issue("alice", false, &alice, &alice_key);
    // Signed by a CA the broker does not trust.
    Pki::new("someone else").issue("mallory", false, &mallory, &mallory_key);
    let acl = fixture.path("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite alice/#\n").expect("write the ACL");
    let broker = fixture.broker(
        &TLS_LISTENER,
        &[
            "--tls-client-ca",
            path_arg(&ca),
            "--tls-cert-as-username",
            "true",
            "--allow-anonymous",
            "false",
            "--acl-file",
            path_arg(&acl),
        ],
    );
    let tls = listener(&broker, "MQTT over TLS");
    let as_alice = ["--cert", path_arg(&alice), "--key", path_arg(&alice_key)];

    // alice's certificate is her credential (no password, anonymous refused), and the ACL
    // applies to her by that name: her own topics work.
    let subscriber = tls_subscriber(tls, &ca, &as_alice, "alice/inbox");
    settle();
    let (published, stderr) = tls_publish(tls, &ca, &as_alice, "alice/inbox", "hello alice");
    assert!(published, "alice cannot publish with her certificate: {stderr}");
    let (received, output) = finish(subscriber);
    assert!(received && output.trim() == "hello alice", "alice's subscriber: {output}");
    // Others' topics are refused to her: the SUBACK says so.
    let (received, output) =
        finish(tls_subscriber(tls, &ca, &[&as_alice[..], &["-W", "2"]].concat(), "bob/inbox"));
    assert!(output.contains("denied"), "alice subscribed to bob's topic ({received}): {output}");

    // No certificate, or one from another CA: the handshake fails.
    let (published, _) = tls_publish(tls, &ca, &[], "alice/inbox", "no certificate");
    assert!(!published, "a client without a certificate got in");
    let as_mallory = ["--cert", path_arg(&mallory), "--key", path_arg(&mallory_key)];
    let (published, _) = tls_publish(tls, &ca, &as_mallory, "alice/inbox", "forged");
    assert!(!published, "a certificate from an untrusted CA got in");
}

/// A revocation list for client certificates (`tls_crl`): a revoked certificate is refused in
/// the handshake, others get in; SIGHUP reads a new list; a list that cannot be used keeps the
/// one in force.
#[test]
fn client_certificates_a_revocation_list_revokes_are_refused() {
    let fixture = Fixture::new("crl");
    let ca = fixture.ca.clone();
    let (alice, alice_key) = (fixture.path("alice.pem"), fixture.path("alice.key"));
    let (bob, bob_key) = (fixture.path("bob.pem"), fixture.path("bob.key"));
    let alice_serial = fixture.pki.issue("alice", false, &alice, &alice_key);
    let bob_serial = fixture.pki.issue("bob", false, &bob, &bob_key);
    let crl = fixture.path("crl.pem");
    fixture.pki.write_crl(&crl, 1, &[bob_serial]);
    let flags = ["--tls-client-ca", path_arg(&ca), "--tls-crl", path_arg(&crl)];
    let broker = fixture.broker(&TLS_LISTENER, &flags);
    let tls = listener(&broker, "MQTT over TLS");
    let as_alice = ["--cert", path_arg(&alice), "--key", path_arg(&alice_key)];
    let as_bob = ["--cert", path_arg(&bob), "--key", path_arg(&bob_key)];
    let (published, stderr) = tls_publish(tls, &ca, &as_alice, "crl/t", "alice");
    assert!(published, "alice's valid certificate was refused: {stderr}");
    let (published, _) = tls_publish(tls, &ca, &as_bob, "crl/t", "bob");
    assert!(!published, "bob's revoked certificate got in");

    // A new list revoking alice too, then SIGHUP.
    fixture.pki.write_crl(&crl, 2, &[bob_serial, alice_serial]);
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    broker.wait_for_log("reloaded the TLS certificate", WAIT).expect("reloaded");
    let (published, _) = tls_publish(tls, &ca, &as_alice, "crl/t", "alice again");
    assert!(!published, "alice's certificate revoked by the new list got in");

    // A broken list on the next SIGHUP: the one in force stays, and the log says why.
    std::fs::write(&crl, "not a CRL\n").expect("break the list");
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    broker.wait_for_log("keeping the certificate in force", WAIT).expect("kept");
    let (published, _) = tls_publish(tls, &ca, &as_bob, "crl/t", "bob again");
    assert!(!published, "a broken list on reload let a revoked certificate in");
}

/// `tls_min_version` and `tls_ciphers` decide what the TLS listener negotiates, with
/// Debian's mosquitto clients (OpenSSL) asking for each.
#[test]
fn tls_min_version_and_cipher_suites_are_the_operators() {
    let fixture = Fixture::new("tls-policy");
    let ca = fixture.ca.clone();
    let only_13 = fixture.broker(&TLS_LISTENER, &["--tls-min-version", "1.3"]);
    let tls = listener(&only_13, "MQTT over TLS");
    let (published, stderr) = tls_publish(tls, &ca, &["--tls-version", "tlsv1.3"], "v/t", "13");
    assert!(published, "TLS 1.3 refused: {stderr}");
    // mosquitto's `--tls-version tlsv1.2` means "at least 1.2": openssl pins the version.
    require_tool("openssl");
    let handshake =
        |version: &str| {
            let mut command = tool_command("openssl");
            command
                .args(["s_client", "-connect", &tls.to_string(), "-CAfile", path_arg(&ca)])
                .args([version, "-verify_return_error", "-brief"]);
            command.stdin(Stdio::null());
            run_tool(&mut command, WAIT).status.success()
        };
    assert!(handshake("-tls1_3"), "a TLS 1.3 handshake failed");
    assert!(!handshake("-tls1_2"), "TLS 1.2 accepted with tls_min_version 1.3");
    drop(only_13);

    let suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";
    let one_suite = fixture.broker(&TLS_LISTENER, &["--tls-ciphers", suite]);
    let tls = listener(&one_suite, "MQTT over TLS");
    let with = |ciphers: &str| ["--tls-version", "tlsv1.2", "--ciphers", ciphers].map(String::from);
    let allowed = with("ECDHE-ECDSA-AES256-GCM-SHA384");
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let (published, stderr) = tls_publish(tls, &ca, &allowed, "c/t", "allowed suite");
    assert!(published, "the configured suite was refused: {stderr}");
    let refused = with("ECDHE-ECDSA-AES128-GCM-SHA256");
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let (published, _) = tls_publish(tls, &ca, &refused, "c/t", "other suite");
    assert!(!published, "a suite outside tls_ciphers was negotiated");
}

/// The secure WebSocket listener can have a certificate of its own (`wss_cert`, `wss_key`),
/// from another CA than the TLS listener's: each serves its own (checked with `openssl
/// s_client`, which verifies the chain it is given).
#[test]
fn the_secure_websocket_listener_serves_its_own_certificate() {
    require_tool("openssl");
    let fixture = Fixture::new("wss-cert");
    let other = Pki::new("shardmq WSS CA");
    let (other_ca, wss_cert, wss_key) =
        (fixture.path("wss-ca.pem"), fixture.path("wss.pem"), fixture.path("wss.key"));
    other.write_ca(&other_ca);
    other.issue("wss", true, &wss_cert, &wss_key);
    let broker = fixture.broker(
        &[&TLS_LISTENER[..], &["--wss-listen", "127.0.0.1:0"]].concat(),
        &["--wss-cert", path_arg(&wss_cert), "--wss-key", path_arg(&wss_key)],
    );
    let tls = listener(&broker, "MQTT over TLS");
    let wss = listener(&broker, "MQTT over secure WebSocket");
    let verifies = |address: SocketAddr, ca: &Path| {
        let mut command = tool_command("openssl");
        command
            .args(["s_client", "-connect", &address.to_string(), "-CAfile", path_arg(ca)])
            .args(["-verify_return_error", "-brief"]);
        command.stdin(Stdio::null());
        run_tool(&mut command, WAIT).status.success()
    };
    assert!(verifies(wss, &other_ca), "the WSS listener does not serve wss_cert");
    assert!(!verifies(wss, &fixture.ca), "the WSS listener serves tls_cert");
    assert!(verifies(tls, &fixture.ca), "the TLS listener does not serve tls_cert");
    assert!(!verifies(tls, &other_ca), "the TLS listener serves wss_cert");
}

/// With client certificates alone (no password file, no ACL), users are still told apart: a
/// client id's session belongs to the user whose certificate made it.
#[test]
fn with_client_certificates_alone_a_session_belongs_to_its_user() {
    let fixture = Fixture::new("mtls-owner");
    let ca = fixture.ca.clone();
    let (alice, alice_key) = (fixture.path("alice.pem"), fixture.path("alice.key"));
    let (bob, bob_key) = (fixture.path("bob.pem"), fixture.path("bob.key"));
    fixture.pki.issue("alice", false, &alice, &alice_key);
    fixture.pki.issue("bob", false, &bob, &bob_key);
    let ca_arg = path_arg(&ca);
    let broker = fixture.broker(
        &TLS_LISTENER,
        &[
            "--tls-client-ca",
            ca_arg,
            "--tls-cert-as-username",
            "true",
            "--allow-anonymous",
            "false",
        ],
    );
    let tls = listener(&broker, "MQTT over TLS");
    let persistent = ["-i", "alice-dev", "-c", "-x", "3600"];
    let as_alice = [&["--cert", path_arg(&alice), "--key", path_arg(&alice_key)][..], &persistent];
    let (published, stderr) = tls_publish(tls, &ca, &as_alice.concat(), "t/a", "from alice");
    assert!(published, "alice: {stderr}");
    let as_bob = [&["--cert", path_arg(&bob), "--key", path_arg(&bob_key)][..], &persistent];
    let (published, _) = tls_publish(tls, &ca, &as_bob.concat(), "t/a", "from bob");
    assert!(!published, "bob took over alice's client id");
    let refused = broker.wait_for_log("has a session of another user", WAIT);
    assert!(refused.is_some_and(|line| line.contains("alice-dev")));
    let (published, stderr) = tls_publish(tls, &ca, &as_alice.concat(), "t/a", "alice again");
    assert!(published, "alice after bob's attempt: {stderr}");
}

#[test]
fn a_certificate_without_a_name_is_refused_not_trusted_with_any_name() {
    let fixture = Fixture::new("nameless");
    let ca = fixture.ca.clone();
    let (nameless, nameless_key) = (fixture.path("nameless.pem"), fixture.path("n.key"));
    fixture.pki.issue("", false, &nameless, &nameless_key);
    // The loopback-only default: anonymous clients and claimed user names would be accepted
    // on a plain listener, so only the certificate rule keeps "alice" out.
    let ca_flags = ["--tls-client-ca", path_arg(&ca), "--tls-cert-as-username", "true"];
    let broker = fixture.broker(&TLS_LISTENER, &ca_flags);
    let tls = listener(&broker, "MQTT over TLS");
    let as_nobody =
        ["--cert", path_arg(&nameless), "--key", path_arg(&nameless_key), "-u", "alice"];
    let (published, stderr) = tls_publish(tls, &ca, &as_nobody, "alice/inbox", "who am I");
    assert!(!published, "a certificate without a common name got in as alice: {stderr}");
    assert!(stderr.to_lowercase().contains("not authori"), "{stderr}");
}

/// Runs a paho-mqtt round trip over WebSocket (`ca`: over WSS, verifying with it): subscribe,
/// publish QoS 1, receive. Fails the test with paho's output otherwise.
fn paho_websocket_round_trip(address: SocketAddr, path: &str, version: &str, ca: Option<&Path>) {
    require_tool(PYTHON);
    const SCRIPT: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port, path, version, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
client = mqtt.Client(client_id="ws-" + version + path.replace("/", "-"), protocol=protocol,
                     transport="websockets")
client.ws_set_options(path=path)
if ca:
    client.tls_set(ca_certs=ca)
subscribed, received = threading.Event(), threading.Event()
client.on_subscribe = lambda *args: subscribed.set()
client.on_message = lambda c, u, m: m.payload == b"over websocket" and received.set()
client.connect("127.0.0.1", port, 30)
client.loop_start()
client.subscribe("ws/test", qos=1)
if not subscribed.wait(5):
    print("no SUBACK"); sys.exit(1)
client.publish("ws/test", b"over websocket", qos=1)
ok = received.wait(5)
client.disconnect()
client.loop_stop()
print("ok" if ok else "no message")
"#;
    let mut command = tool_command(PYTHON);
    command
        .args(["-c", SCRIPT, &address.port().to_string(), path, version])
        .arg(ca.map_or(String::new(), |ca| path_arg(ca).to_string()));
    let output = run_tool(&mut command, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "paho over WebSocket (v{version}, path {path}, TLS {}) failed: {stdout}\n{}",
        ca.is_some(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn websocket_and_secure_websocket_with_paho() {
    let fixture = Fixture::new("ws");
    let ca = fixture.ca.clone();
    let broker =
        fixture.broker(&["--ws-listen", "127.0.0.1:0", "--wss-listen", "127.0.0.1:0"], &[]);
    let ws = listener(&broker, "MQTT over WebSocket");
    let wss = listener(&broker, "MQTT over secure WebSocket");
    // Clients' default path, any other path, both protocol versions, and WSS.
    paho_websocket_round_trip(ws, "/mqtt", "5", None);
    paho_websocket_round_trip(ws, "/some/other/path", "3", None);
    paho_websocket_round_trip(wss, "/mqtt", "5", Some(&ca));

    // A plain HTTP request on the WebSocket port is refused in HTTP, not left hanging.
    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(ws).expect("connect");
    http.set_read_timeout(Some(WAIT)).expect("timeout");
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut response = String::new();
    let _ = http.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 426"), "{response:?}");
}

/// MQTT.js's browser bundle, fetched by scripts/test from the npm registry (pinned version
/// and checksum) into the target directory.
fn mqtt_js() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let path = root.join("target/tools/mqtt-js-5.16.0/package/dist/mqtt.min.js");
    assert!(
        path.is_file(),
        "{} is missing: scripts/test fetches MQTT.js (npm `mqtt` 5.16.0) there",
        path.display()
    );
    path
}

/// What a page served from `http://{host}:PORT/` (mapped to 127.0.0.1) reports after running
/// MQTT.js in headless Chromium against the broker's WebSocket listener at `ws`: "ok ..." once
/// its QoS 1 message came back, else the error it saw.
fn mqtt_js_page_in_chromium(ws: SocketAddr, host: &str) -> (Option<String>, String) {
    let bundle = std::fs::read(mqtt_js()).expect("read mqtt.min.js");
    // The page a browser dashboard would be: MQTT.js over ws://.../mqtt, MQTT 5, a QoS 1
    // subscribe and publish; it reports back to the server that served it.
    let page = format!(
        r#"<!doctype html><html><body><script src="/mqtt.min.js"></script><script>
function report(text) {{ fetch("/result?" + encodeURIComponent(text)); }}
try {{
  const client = mqtt.connect("ws://127.0.0.1:{port}/mqtt",
    {{ clientId: "chromium", protocolVersion: 5, reconnectPeriod: 0 }});
  client.on("connect", () => client.subscribe("browser/test", {{ qos: 1 }}, (error) => {{
    if (error) report("subscribe failed: " + error);
    else client.publish("browser/test", "hello from chromium", {{ qos: 1 }});
  }}));
  client.on("message", (topic, payload) => report("ok " + topic + " " + payload.toString()));
  client.on("error", (error) => report("error " + error));
  client.on("close", () => report("closed"));
}} catch (error) {{ report("exception " + error); }}
</script></body></html>"#,
        port = ws.port()
    );
    let server = tiny_http::Server::http("127.0.0.1:0").expect("page server");
    let page_address = server.server_addr().to_ip().expect("an IP address");
    let dir = TestDir::new("chromium");
    let mut chromium = tool_command("chromium");
    chromium
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--host-resolver-rules=MAP {host} 127.0.0.1"))
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .arg(format!("http://{host}:{}/", page_address.port()));
    let mut chromium = spawn_tool(&mut chromium);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut result = None;
    while result.is_none() && Instant::now() < deadline {
        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else { continue };
        let url = request.url().to_string();
        let response = match url.as_str() {
            "/" => tiny_http::Response::from_data(page.clone().into_bytes()).with_header(
                "Content-Type: text/html".parse::<tiny_http::Header>().expect("header"),
            ),
            "/mqtt.min.js" => tiny_http::Response::from_data(bundle.clone()).with_header(
                "Content-Type: text/javascript".parse::<tiny_http::Header>().expect("header"),
            ),
            other => {
                if let Some(text) = other.strip_prefix("/result?") {
                    result = Some(percent_decode(text));
                }
                tiny_http::Response::from_data(Vec::new())
            }
        };
        let _ = request.respond(response);
    }
    let _ = chromium.kill();
    let output = chromium.wait_with_output().expect("chromium's output");
    (result, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn mqtt_js_in_headless_chromium() {
    require_tool("chromium");
    let broker = Broker::start(&["--ws-listen", "127.0.0.1:0"]);
    let ws = listener(&broker, "MQTT over WebSocket");
    let (result, stderr) = mqtt_js_page_in_chromium(ws, "127.0.0.1");
    assert_eq!(
        result.as_deref(),
        Some("ok browser/test hello from chromium"),
        "MQTT.js in Chromium did not get its message back; chromium said:\n{stderr}\nbroker \
         log:\n{}",
        broker.log()
    );
}

/// The WebSocket upgrade request a browser page of `origin` sends, on a raw socket: the
/// broker's status line.
fn upgrade_status(ws: SocketAddr, origin: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(ws).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\nOrigin: {origin}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = vec![0u8; 256];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or("").to_string()
}

/// `shardmq_connects_refused_total{cause="ws_origin"}` on the broker's `/metrics`, all shards.
fn metrics_count(broker: &Broker) -> u64 {
    broker.metric_total("shardmq_connects_refused_total", "cause=\"ws_origin\"")
}

#[test]
fn a_web_page_of_another_site_cannot_use_an_anonymous_loopback_broker() {
    // The default security: anonymous clients on loopback only. A page from elsewhere that a
    // browser on this host opens must not get their rights.
    let broker = Broker::start(&["--ws-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    let ws = listener(&broker, "MQTT over WebSocket");
    assert!(upgrade_status(ws, "http://evil.example.com").starts_with("HTTP/1.1 403"));
    assert!(upgrade_status(ws, "null").starts_with("HTTP/1.1 403"));
    assert!(upgrade_status(ws, "http://localhost:3000").starts_with("HTTP/1.1 101"));
    assert!(
        broker.wait_for_log("refused a WebSocket upgrade from 127.0.0.1:", WAIT).is_some(),
        "{}",
        broker.log()
    );
    // The shards publish their counters on their next tick.
    let deadline = Instant::now() + WAIT;
    while metrics_count(&broker) < 2 {
        assert!(Instant::now() < deadline, "ws_origin refusals not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metrics_count(&broker), 2);
    // A real browser on a page of another site: refused before any MQTT.
    require_tool("chromium");
    let (result, stderr) = mqtt_js_page_in_chromium(ws, "evil.example.com");
    let result = result.unwrap_or_default();
    assert!(!result.is_empty() && !result.starts_with("ok"), "{result}; chromium said:\n{stderr}");
    let deadline = Instant::now() + WAIT;
    while metrics_count(&broker) < 3 {
        assert!(Instant::now() < deadline, "the browser's upgrade was not the one refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    // An operator who lists the site lets its pages in.
    let listed = Broker::start(&[
        "--ws-listen",
        "127.0.0.1:0",
        "--ws-allowed-origins",
        "http://dash.example.com",
    ]);
    let ws = listener(&listed, "MQTT over WebSocket");
    assert!(upgrade_status(ws, "http://dash.example.com").starts_with("HTTP/1.1 101"));
    assert!(upgrade_status(ws, "http://localhost:3000").starts_with("HTTP/1.1 403"));
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

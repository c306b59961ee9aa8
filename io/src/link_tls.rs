//! TLS on node links: both ends authenticated by the cluster's own CA.
//!
//! Every node holds a certificate signed by the cluster CA whose subject common name is its node
//! id. Each end of a link verifies that the other's certificate chains to that CA, so a peer with
//! a certificate of another CA, or with none, fails the handshake; the accepting end then checks
//! that the common name is the node the peer's hello names, so one node's certificate cannot
//! speak for another. No host name is checked: the CA is the cluster's alone, and nodes connect
//! to whatever address etcd lists for a peer.
//!
//! The TLS state is sans-IO ([`LinkTls`] drives a `rustls::Connection` with in-memory buffers);
//! [`LinkTls::handshake`] runs the handshake over anything that reads and writes bytes
//! ([`LinkIo`]), and afterwards [`LinkTls::seal`] and [`LinkTls::open`] turn frames into records
//! and back. Links carry no client data before the handshake, and nothing in the clear after.

use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConfig,
    ServerConnection, SignatureScheme,
};

use crate::runtime::{Connection, TcpStream};
use crate::transport::TlsConfigError;

/// The name a connecting node asks for (TLS requires one). Not checked: see the module docs.
const LINK_SERVER_NAME: &str = "shardmq-node";
/// Plaintext encrypted at a time, under rustls' default 64 KiB of pending output.
const SEAL_CHUNK_BYTES: usize = 16 * 1024;

/// Where a node's link certificate, its key and the cluster CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Both sides of link TLS, built from [`LinkTlsFiles`]: what an accepted link and a link this
/// node opens each start from.
#[derive(Debug, Clone)]
pub struct LinkTlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// Reads the files into both configurations; one line naming the file that cannot be used.
pub fn load_link_tls(files: &LinkTlsFiles) -> Result<LinkTlsConfig, TlsConfigError> {
    let chain = read_certificates(&files.certificate)?;
    let key = read_key(&files.key)?;
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&files.ca)? {
        roots.add(certificate).map_err(|error| invalid(&files.ca, error))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|error| invalid(&files.ca, error))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TlsConfigError::Invalid(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|error| invalid(&files.certificate, error))?;
    // Links never resume sessions: no tickets to send after the handshake.
    server.send_tls13_tickets = 0;
    let algorithms = provider.signature_verification_algorithms;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TlsConfigError::Invalid(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClusterCa { roots, algorithms }))
        .with_client_auth_cert(chain, key)
        .map_err(|error| invalid(&files.certificate, error))?;
    Ok(LinkTlsConfig { server: Arc::new(server), client: Arc::new(client) })
}

impl LinkTlsConfig {
    /// The TLS side of a link a peer opened to this node.
    pub fn accept(&self) -> io::Result<LinkTls> {
        let connection = ServerConnection::new(self.server.clone()).map_err(tls_error)?;
        Ok(LinkTls { connection: connection.into() })
    }

    /// The TLS side of a link this node opens to a peer.
    pub fn connect(&self) -> io::Result<LinkTls> {
        let name = ServerName::try_from(LINK_SERVER_NAME).map_err(io::Error::other)?;
        let connection = ClientConnection::new(self.client.clone(), name).map_err(tls_error)?;
        Ok(LinkTls { connection: connection.into() })
    }
}

/// TLS to an MQTT broker, for a bridge (not a node link): as any TLS client, the broker's
/// certificate must chain to the CA in `ca` and name `host` (a DNS name or an IP address);
/// `identity` is a client certificate and its key. The returned state runs the same handshake,
/// [`LinkTls::seal`] and [`LinkTls::open`] as a link's.
pub fn broker_client(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    host: &str,
) -> Result<LinkTls, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca)? {
        roots.add(certificate).map_err(|error| invalid(ca, error))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsConfigError::Invalid(error.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((certificate, key)) => builder
            .with_client_auth_cert(read_certificates(certificate)?, read_key(key)?)
            .map_err(|error| invalid(certificate, error))?,
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|error| TlsConfigError::Invalid(format!("{host}: {error}")))?;
    let connection = ClientConnection::new(Arc::new(config), name)
        .map_err(|error| TlsConfigError::Invalid(error.to_string()))?;
    Ok(LinkTls { connection: connection.into() })
}

/// A peer's certificate is good when it chains to the cluster CA (its names are not checked).
#[derive(Debug)]
struct ClusterCa {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ClusterCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let certificate = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A byte stream a link runs on: the runtime's accepted [`Connection`] or its outgoing
/// [`TcpStream`].
pub trait LinkIo {
    /// Appends what arrived to `buf`: how many bytes (0 at the end of the stream).
    fn read_some(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>>;
    fn write_all_bytes(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>>;
}

impl LinkIo for Connection {
    fn read_some(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> {
        self.read_buf(buf)
    }

    fn write_all_bytes(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> {
        self.write_all(bytes)
    }
}

impl LinkIo for TcpStream {
    fn read_some(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> {
        self.read_buf(buf)
    }

    fn write_all_bytes(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> {
        self.write_all(bytes)
    }
}

/// One link's TLS state.
pub struct LinkTls {
    connection: rustls::Connection,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls").finish_non_exhaustive()
    }
}

impl LinkTls {
    /// Runs the handshake over `stream` (the caller bounds how long it may take). Plaintext
    /// that came with the handshake's last records is appended to `plain`. A failure (the
    /// peer's certificate refused, a plaintext peer, the stream ended) is the error; the alert
    /// telling the peer why has been sent when there was one.
    pub async fn handshake<S: LinkIo>(
        &mut self,
        stream: &mut S,
        plain: &mut BytesMut,
    ) -> io::Result<()> {
        let mut raw = BytesMut::new();
        let mut wire = Vec::new();
        loop {
            while self.connection.wants_write() {
                wire.clear();
                self.connection.write_tls(&mut wire)?;
                stream.write_all_bytes(&wire).await?;
            }
            if !self.connection.is_handshaking() {
                return Ok(());
            }
            raw.clear();
            if stream.read_some(&mut raw).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the TLS handshake",
                ));
            }
            if let Err(error) = self.open(&raw, plain) {
                // The alert rustls queued tells the peer why (best effort).
                wire.clear();
                if self.connection.write_tls(&mut wire).is_ok() && !wire.is_empty() {
                    let _ = stream.write_all_bytes(&wire).await;
                }
                return Err(error);
            }
        }
    }

    /// Takes records read from the peer and appends their plaintext to `plain`.
    pub fn open(&mut self, mut wire: &[u8], plain: &mut BytesMut) -> io::Result<()> {
        while !wire.is_empty() {
            self.connection.read_tls(&mut wire)?;
            let state = self.connection.process_new_packets().map_err(tls_error)?;
            let available = state.plaintext_bytes_to_read();
            if available > 0 {
                let start = plain.len();
                plain.resize(start + available, 0);
                self.connection.reader().read_exact(&mut plain[start..])?;
            }
        }
        Ok(())
    }

    /// Encrypts `plain` into records appended to `wire`.
    pub fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> io::Result<()> {
        for chunk in plain.chunks(SEAL_CHUNK_BYTES) {
            self.connection.writer().write_all(chunk)?;
            while self.connection.wants_write() {
                self.connection.write_tls(wire)?;
            }
        }
        Ok(())
    }

    /// The common name of the peer's certificate (its node id), once the handshake is done.
    pub fn peer_common_name(&self) -> Option<String> {
        let certificate = self.connection.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
        let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
        Some(name.to_string())
    }
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn invalid(path: &Path, error: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::Invalid(format!("{}: {error}", path.display()))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    crate::transport::read_certificates(path)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsConfigError::Empty { path: path.display().to_string(), what: "private key" }
        }
        error => {
            TlsConfigError::Read { path: path.display().to_string(), reason: error.to_string() }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };

    /// A CA and the node certificates it signs, as files in a temporary directory.
    struct Pki {
        issuer: CertifiedIssuer<'static, KeyPair>,
        dir: PathBuf,
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
                .expect("CA");
            let dir = std::env::temp_dir().join(format!(
                "shardmq-link-tls-{}-{name}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            std::fs::write(dir.join("ca.pem"), issuer.pem()).expect("CA file");
            Pki { issuer, dir }
        }

        fn node(&self, node: &str) -> LinkTlsConfig {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(DnType::CommonName, node);
            params.extended_key_usages =
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().expect("key");
            let signed = params.signed_by(&key, &self.issuer).expect("sign");
            let files = LinkTlsFiles {
                certificate: self.dir.join(format!("{node}.pem")),
                key: self.dir.join(format!("{node}.key")),
                ca: self.dir.join("ca.pem"),
            };
            std::fs::write(&files.certificate, signed.pem()).expect("write");
            std::fs::write(&files.key, key.serialize_pem()).expect("write");
            load_link_tls(&files).expect("usable files")
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Moves records between the two ends until neither has anything to send: the first error.
    fn pump(client: &mut LinkTls, server: &mut LinkTls) -> io::Result<()> {
        let mut plain = BytesMut::new();
        for _ in 0..16 {
            let mut wire = Vec::new();
            while client.connection.wants_write() {
                client.connection.write_tls(&mut wire)?;
            }
            server.open(&wire, &mut plain)?;
            let mut back = Vec::new();
            while server.connection.wants_write() {
                server.connection.write_tls(&mut back)?;
            }
            client.open(&back, &mut plain)?;
            if wire.is_empty() && back.is_empty() {
                return Ok(());
            }
        }
        Ok(())
    }

    #[test]
    fn nodes_of_one_ca_link_and_learn_each_others_names() {
        let pki = Pki::new("cluster");
        let (a, b) = (pki.node("n1"), pki.node("n2"));
        let (mut client, mut server) = (a.connect().expect("client"), b.accept().expect("server"));
        pump(&mut client, &mut server).expect("handshake");
        assert!(!client.connection.is_handshaking() && !server.connection.is_handshaking());
        assert_eq!(server.peer_common_name().as_deref(), Some("n1"));
        assert_eq!(client.peer_common_name().as_deref(), Some("n2"));
        // Frames go through, in both directions' records.
        let mut wire = Vec::new();
        let frame = vec![7u8; 100_000];
        client.seal(&frame, &mut wire).expect("seal");
        assert!(!wire.windows(64).any(|w| w.iter().all(|b| *b == 7)), "sent in the clear");
        let mut plain = BytesMut::new();
        server.open(&wire, &mut plain).expect("open");
        assert_eq!(&plain[..], &frame[..]);
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused_both_ways() {
        let (ours, theirs) = (Pki::new("ours"), Pki::new("theirs"));
        let (node, stranger) = (ours.node("n1"), theirs.node("intruder"));
        let (mut client, mut server) =
            (stranger.connect().expect("client"), node.accept().expect("server"));
        let error = pump(&mut client, &mut server).expect_err("refused");
        assert!(
            error.to_string().contains("UnknownIssuer") || error.to_string().contains("alert"),
            "{error}"
        );
        let (mut client, mut server) =
            (node.connect().expect("client"), stranger.accept().expect("server"));
        let error = pump(&mut client, &mut server).expect_err("refused");
        assert!(
            error.to_string().contains("UnknownIssuer") || error.to_string().contains("alert"),
            "{error}"
        );
    }

    #[test]
    fn a_plaintext_peer_is_refused() {
        let pki = Pki::new("plain");
        let mut server = pki.node("n1").accept().expect("server");
        // What a node without link TLS sends first: a length-prefixed frame.
        let mut plain = BytesMut::new();
        let error = server.open(&[0, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], &mut plain);
        assert!(error.is_err());
        assert!(plain.is_empty());
    }

    #[test]
    fn unusable_files_are_named() {
        let pki = Pki::new("files");
        let _ = pki.node("n1");
        let missing = LinkTlsFiles {
            certificate: pki.dir.join("n1.pem"),
            key: pki.dir.join("nothing.key"),
            ca: pki.dir.join("ca.pem"),
        };
        let error = load_link_tls(&missing).expect_err("no key").to_string();
        assert!(error.contains("nothing.key"), "{error}");
    }
}

//! `shardmq link-certs`: a cluster CA and the node certificates node links need.
//!
//! `shardmq link-certs --dir certs n1 n2 n3` writes `certs/ca.pem` and `certs/ca.key` (made
//! once: run it again with more node ids to add nodes under the same CA) and, for each node,
//! `certs/<node>.pem` and `certs/<node>.key`: a certificate the CA signs, with the node id as
//! its common name, good for both ends of a TLS link. Keys are written mode 0600. Give each
//! node its own two files and the CA certificate (never the CA key).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long a node certificate is good for by default (then renew it and SIGHUP the node).
const NODE_DAYS_DEFAULT: u32 = 825;
/// How long the CA is good for.
const CA_DAYS: u32 = 3650;

#[derive(Debug, clap::Args)]
pub struct LinkCertsArgs {
    /// Where the CA and the node certificates are (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Days each node certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = NODE_DAYS_DEFAULT)]
    days: u32,
    /// The node ids to make certificates for (each node's `node_id`).
    #[arg(value_name = "NODE_ID", required = true)]
    nodes: Vec<String>,
}

pub fn main(args: LinkCertsArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shardmq link-certs: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &LinkCertsArgs) -> anyhow::Result<()> {
    for node in &args.nodes {
        let valid = !node.is_empty()
            && node.len() <= 128
            && node.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            bail!("invalid node id {node:?}: use letters, digits, '-', '_' and '.'");
        }
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let issuer = ca(&args.dir)?;
    for node in &args.nodes {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, node.as_str());
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, args.days);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &issuer)?;
        let (cert_path, key_path) =
            (args.dir.join(format!("{node}.pem")), args.dir.join(format!("{node}.key")));
        write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write(&cert_path, certificate.pem().as_bytes(), 0o644)?;
        println!("{}: node {node:?} ({} days)", cert_path.display(), args.days);
    }
    Ok(())
}

/// The CA in `dir`: read if there, made (and written) if not.
fn ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let read = |path: &Path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            let key = KeyPair::from_pem(&read(&key_path)?)
                .with_context(|| format!("{}: not a private key", key_path.display()))?;
            Issuer::from_ca_cert_pem(&read(&cert_path)?, key)
                .with_context(|| format!("{}: not a CA certificate", cert_path.display()))
        }
        (false, false) => {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.distinguished_name.push(DnType::CommonName, "shardmq cluster CA");
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            validity(&mut params, CA_DAYS);
            let key = KeyPair::generate()?;
            let certificate = params.self_signed(&key)?;
            write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write(&cert_path, certificate.pem().as_bytes(), 0o644)?;
            println!("{}: a new cluster CA ({CA_DAYS} days)", cert_path.display());
            Ok(Issuer::new(params, key))
        }
        _ => bail!(
            "{} and {} go together: one of them is missing",
            cert_path.display(),
            key_path.display()
        ),
    }
}

/// Valid from a day ago (clocks differ) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Writes `bytes` to `path` with `mode` (a file already there is replaced).
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

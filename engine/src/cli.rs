//! The `shardmq` command line: `serve` runs the broker, `loadgen` the bundled load generator,
//! `passwd` edits password files, `check-system` reads this host's limits for a target
//! connection count, `link-certs` makes the certificates node links need,
//! `import-mosquitto-conf` turns a Mosquitto configuration into shardmq's, `ctl` is a client of
//! a running node's admin API. `main.rs` only calls [`main`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{check_system, config, ctl, import_mosquitto, link_certs, reload, server};

/// shardmq: a thread-per-core MQTT 3.1.1 / 5.0 broker for bare-metal Linux.
#[derive(Debug, Parser)]
#[command(
    name = "shardmq",
    version,
    about = "shardmq: a thread-per-core MQTT 3.1.1 / 5.0 broker for bare-metal Linux, alone or \
             as a cluster (docs in the source tree's README.md and docs/)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(Box<config::ServeArgs>),
    /// Run the bundled load generator against one or more brokers (see docs/loadgen.md).
    Loadgen(Box<shardmq_loadgen::LoadgenArgs>),
    /// Add a user to a password file, or change its password (argon2id, or a SCRAM-SHA-256
    /// verifier with --scram; the file keeps Mosquitto's format, so `mosquitto_passwd` entries
    /// stay valid). SIGHUP the broker after.
    Passwd(PasswdArgs),
    /// Read this host's file limits, kernel settings and memory, and say what to change to hold
    /// a target number of connections (see docs/tuning.md). Exits 1 when something must change.
    CheckSystem(check_system::CheckSystemArgs),
    /// Make a cluster CA and node certificates for node-link TLS (see docs/cluster.md): run it
    /// again with more node ids to add nodes under the same CA.
    LinkCerts(link_certs::LinkCertsArgs),
    /// Print a Mosquitto configuration file as shardmq TOML; what cannot carry over is listed on
    /// standard error with why (see docs/migrating-from-mosquitto.md).
    ImportMosquittoConf(import_mosquitto::ImportArgs),
    /// Ask a running node through its admin endpoint: list, inspect and disconnect clients, or
    /// read its status (see docs/operations.md). In a cluster any node answers for any client
    /// (waiting 2 s at most for the others). Exits 1 when a request fails or is refused.
    Ctl(Box<ctl::CtlArgs>),
    /// Drain a node of a cluster through its admin endpoint: it tells its clients to use
    /// another server, hands every session to the other nodes, then stops (see
    /// docs/cluster.md). Waits until it has stopped, unless --no-wait.
    Drain(Box<ctl::DrainArgs>),
}

/// Parses the command line and runs the command; what the process exits with.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let args = *args;
            let config = match args.clone().resolve() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("shardmq: {error}");
                    return ExitCode::from(2);
                }
            };
            let set_log_filter = match init_logging(&config.log, config.log_format) {
                Ok(set_log_filter) => set_log_filter,
                Err(error) => {
                    eprintln!("shardmq: invalid value for `log`: {error}");
                    return ExitCode::from(2);
                }
            };
            match server::serve(config, args, set_log_filter) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("shardmq: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Loadgen(args) => shardmq_loadgen::main(*args),
        Command::Passwd(args) => match passwd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shardmq passwd: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::CheckSystem(args) => check_system::main(args),
        Command::LinkCerts(args) => link_certs::main(args),
        Command::ImportMosquittoConf(args) => import_mosquitto::main(args),
        Command::Ctl(args) => ctl::main(*args),
        Command::Drain(args) => ctl::drain_main(*args),
    }
}

#[derive(Debug, clap::Args)]
struct PasswdArgs {
    /// The password file; created (mode 0600) if missing.
    file: std::path::PathBuf,
    /// The user to add, or whose password to change.
    user: String,
    /// Store a SCRAM-SHA-256 verifier instead of an argon2id hash: the user can then log in with
    /// MQTT 5 enhanced authentication (method `SCRAM-SHA-256`) as well as with a plain password.
    #[arg(long)]
    scram: bool,
    /// PBKDF2 iterations of the SCRAM verifier (at least 4096, RFC 7677). Every SCRAM login makes
    /// the client pay them; a plain-password login against the entry makes the broker pay them.
    #[arg(long, requires = "scram", default_value_t = shardmq_auth::scram::ITERATIONS_DEFAULT)]
    iterations: u32,
}

/// Asks for the password twice on a terminal, or reads one line from standard input (scripts).
fn passwd(args: &PasswdArgs) -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Reenter password: ")?;
        anyhow::ensure!(first == again, "the passwords do not match");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    if args.scram {
        shardmq_auth::set_scram_password(&args.file, &args.user, &password, args.iterations)?;
    } else {
        shardmq_auth::set_password(&args.file, &args.user, &password)?;
    }
    Ok(())
}

/// Installs the log subscriber; returns how to change its filter later (SIGHUP).
fn init_logging(filter: &str, format: config::LogFormat) -> anyhow::Result<reload::SetLogFilter> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter)?;
    // Logs go to stderr, coloured only on a terminal, so scripts and tests can read them.
    let builder = tracing_subscriber::fmt().with_target(false).with_writer(std::io::stderr);
    Ok(match format {
        config::LogFormat::Human => {
            let builder = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter: &str| Ok(handle.reload(EnvFilter::try_new(filter)?)?))
        }
        config::LogFormat::Json => {
            let builder =
                builder.json().flatten_event(true).with_env_filter(filter).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter: &str| Ok(handle.reload(EnvFilter::try_new(filter)?)?))
        }
    })
}

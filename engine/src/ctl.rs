//! `shardmq ctl`: a command-line client of a node's admin endpoint (`admin_listen`), so an
//! operator lists, inspects and disconnects clients and reads the node's state without writing
//! curl lines and JSON filters by hand. In a cluster any node answers for any client (it asks
//! the others over the node links, for at most 2 s): `client` and `kick` name the node the
//! client is on, `clients --cluster` lists every node's, `cluster status` shows the members.
//!
//! It speaks plain HTTP/1.1 over a `std::net::TcpStream`, one request per connection, as the
//! endpoint does (`admin_http.rs`: `Connection: close`, `Content-Length` answers, no TLS): a
//! general HTTP client would be a dependency for four requests. The bearer token comes from a
//! file (`--token-file`), never from the command line, where `ps` would show it.
//!
//! Exit status: 0 when the node did what was asked, 1 with one line on standard error when a
//! request failed or was refused (401 says the token is missing or wrong), 2 when the command
//! line is wrong.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

/// How long connecting to the endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer may take: the endpoint waits up to 2 s for a shard, and serves one
/// request at a time, so a few requests ahead of this one are allowed for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read (a page of 10,000 clients is a few MB).
const ANSWER_BYTES_MAX: usize = 64 << 20;

/// `shardmq ctl` options and command.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The node's admin endpoint (its `admin_listen`), HOST:PORT; required (the broker has no
    /// default admin address).
    #[arg(long, value_name = "HOST:PORT", global = true)]
    admin: Option<String>,
    /// File holding the admin token (the node's `admin_token_file`), sent as `Authorization:
    /// Bearer <token>`.
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// List the node's sessions, connected or not, one line each in client id order: id, state,
    /// protocol, address, user, shard, subscriptions, queued and in-flight messages (and with
    /// --cluster the node).
    Clients {
        /// Clients to list at most (the API's page, 1 to 10000; with --cluster 1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000))]
        limit: u16,
        /// List the sessions of every node of the cluster, each with its node; nodes that do
        /// not answer within 2 s are named on standard error.
        #[arg(long)]
        cluster: bool,
        /// List only client ids after this one (the previous page's last, which is printed on
        /// standard error when there are more).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// Show one client in detail: the API's JSON, pretty-printed. In a cluster, the client may
    /// be on any node (`node` says which).
    Client {
        /// The client id.
        id: String,
    },
    /// Disconnect a client as the server does on its own initiative (MQTT 5: DISCONNECT 0x98);
    /// a persistent session stays unless --clean. In a cluster, the client may be on any node.
    Kick {
        /// The client id.
        id: String,
        /// Also discard the client's session (subscriptions and queue).
        #[arg(long)]
        clean: bool,
    },
    /// The node's health and readiness, its connections and sessions, and in a cluster the
    /// members it sees (from /health, /ready and /metrics, which need no token).
    Status,
    /// The cluster as the node sees it.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The members (node id, link address, etcd lease) from etcd, whether the node reaches
    /// etcd, and whether it may serve.
    Status,
}

/// `shardmq drain` options.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node's admin endpoint (its `admin_listen`), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    admin: Option<String>,
    /// File holding the admin token (the node's `admin_token_file`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Return once the drain has started, instead of waiting for the node to stop.
    #[arg(long)]
    no_wait: bool,
    /// What MQTT 5 clients are told to connect to instead (the Server Reference of their
    /// DISCONNECT 0x9C), e.g. the cluster's load balancer; none by default.
    #[arg(long, value_name = "HOST[:PORT]")]
    server_reference: Option<String>,
}

/// How long `shardmq drain` waits for the node to stop: longer than a drain may take.
const DRAIN_WAIT: Duration = Duration::from_secs(150);

/// Runs `shardmq drain`: asks the node to hand every session to the other nodes of its cluster
/// and stop, and (unless `--no-wait`) waits until its admin endpoint is gone.
pub fn drain_main(args: DrainArgs) -> ExitCode {
    let outcome = endpoint(args.admin.clone(), args.token_file.as_deref()).and_then(|endpoint| {
        let path = match &args.server_reference {
            Some(reference) => {
                format!("/api/v1/drain?server_reference={}", percent_encode(reference))
            }
            None => "/api/v1/drain".to_string(),
        };
        endpoint.json("POST", &path)?;
        println!(
            "{}: draining (handing every session to the other nodes, then stopping)",
            endpoint.admin
        );
        if args.no_wait {
            return Ok(());
        }
        let started = std::time::Instant::now();
        while endpoint.connect().is_ok() {
            if started.elapsed() > DRAIN_WAIT {
                return Err(CtlError::Failed(format!("the node still runs after {DRAIN_WAIT:?}")));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        println!("{}: drained and stopped after {:.1?}", endpoint.admin, started.elapsed());
        Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(CtlError::Usage(message)) => {
            eprintln!("shardmq drain: {message}");
            ExitCode::from(2)
        }
        Err(CtlError::Failed(message)) => {
            eprintln!("shardmq drain: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why `ctl` stopped: the command line was wrong (exit 2), or a request failed (exit 1).
#[derive(Debug, PartialEq, Eq)]
enum CtlError {
    Usage(String),
    Failed(String),
}

/// Runs `shardmq ctl`; what the process exits with.
pub fn main(args: CtlArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CtlError::Usage(message)) => {
            eprintln!("shardmq ctl: {message}");
            ExitCode::from(2)
        }
        Err(CtlError::Failed(message)) => {
            eprintln!("shardmq ctl: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The endpoint `--admin` and `--token-file` name.
fn endpoint(
    admin: Option<String>,
    token_file: Option<&std::path::Path>,
) -> Result<Endpoint, CtlError> {
    let Some(admin) = admin else {
        return Err(CtlError::Usage(
            "--admin HOST:PORT is required: the node's admin endpoint (`admin_listen`)".into(),
        ));
    };
    let token = match token_file {
        None => None,
        Some(path) => Some(read_token(path).map_err(CtlError::Failed)?),
    };
    Ok(Endpoint { admin, token, token_file: token_file.map(std::path::Path::to_path_buf) })
}

fn run(args: &CtlArgs) -> Result<(), CtlError> {
    let endpoint = endpoint(args.admin.clone(), args.token_file.as_deref())?;
    match &args.command {
        CtlCommand::Clients { limit, after, cluster } => {
            clients(&endpoint, *limit, after.as_deref(), *cluster)
        }
        CtlCommand::Client { id } => {
            let detail =
                endpoint.json("GET", &format!("/api/v1/clients/{}", percent_encode(id)))?;
            let pretty = serde_json::to_string_pretty(&detail).unwrap_or_default();
            println!("{pretty}");
            warn_unanswered(&detail);
            Ok(())
        }
        CtlCommand::Kick { id, clean } => {
            let query = if *clean { "?clean=true" } else { "" };
            let path = format!("/api/v1/clients/{}{query}", percent_encode(id));
            let answer = endpoint.json("DELETE", &path)?;
            println!("{}", kicked_line(id, &answer));
            warn_unanswered(&answer);
            Ok(())
        }
        CtlCommand::Status => status(&endpoint),
        CtlCommand::Cluster { command: ClusterCommand::Status } => cluster_status(&endpoint),
    }
}

/// The token in `path`, as the node reads its own `admin_token_file`.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read --token-file {}: {error}", path.display()))?;
    let token = crate::admin_token::parse_token(&bytes)
        .map_err(|why| format!("--token-file {} {why}", path.display()))?;
    Ok(token.to_owned())
}

/// The nodes an answer says did not answer in time, on standard error: what is printed may
/// lack their clients.
fn warn_unanswered(answer: &Value) {
    let nodes: Vec<String> = answer["not_answered"]
        .as_array()
        .map(|nodes| nodes.iter().filter_map(Value::as_str).map(display_id).collect())
        .unwrap_or_default();
    if !nodes.is_empty() {
        eprintln!("not answered within 2 s (left out): {}", nodes.join(", "));
    }
}

/// `ctl clients`: one line per client under a header; the next page's cursor on standard error.
fn clients(
    endpoint: &Endpoint,
    limit: u16,
    after: Option<&str>,
    cluster: bool,
) -> Result<(), CtlError> {
    if cluster && limit > 1000 {
        return Err(CtlError::Usage("--limit is at most 1000 with --cluster".into()));
    }
    let mut path = format!("/api/v1/clients?limit={limit}");
    if cluster {
        path.push_str("&cluster=true");
    }
    if let Some(after) = after {
        path.push_str(&format!("&after={}", percent_encode(after)));
    }
    let page = endpoint.json("GET", &path)?;
    let clients = page["clients"].as_array().ok_or_else(|| {
        CtlError::Failed(format!("GET {path}: the answer has no list of clients: {page}"))
    })?;
    if cluster {
        let rows: Vec<[String; 10]> = clients.iter().map(cluster_row).collect();
        print!("{}", table(CLUSTER_CLIENT_COLUMNS, &rows));
        warn_unanswered(&page);
    } else {
        let rows: Vec<[String; 9]> = clients.iter().map(client_row).collect();
        print!("{}", table(CLIENT_COLUMNS, &rows));
    }
    if let Some(next) = page["next_after"].as_str() {
        let flag = if cluster { " --cluster" } else { "" };
        eprintln!("more clients: shardmq ctl clients{flag} --after {}", display_id(next));
    }
    Ok(())
}

/// The columns of `ctl clients --cluster`: those of `ctl clients`, then the node.
const CLUSTER_CLIENT_COLUMNS: [&str; 10] = [
    "CLIENT_ID",
    "STATE",
    "PROTOCOL",
    "ADDRESS",
    "USER",
    "SHARD",
    "SUBS",
    "QUEUED",
    "INFLIGHT",
    "NODE",
];

fn cluster_row(client: &Value) -> [String; 10] {
    let row = client_row(client);
    let node = client["node"].as_str().map_or_else(|| "-".to_owned(), display_id);
    std::array::from_fn(|column| row.get(column).cloned().unwrap_or_else(|| node.clone()))
}

/// `ctl cluster status`: the node's view of the cluster, then one line per member.
fn cluster_status(endpoint: &Endpoint) -> Result<(), CtlError> {
    let status = endpoint.json("GET", "/api/v1/cluster")?;
    let text = |key: &str| status[key].as_str().map_or_else(|| "-".to_owned(), display_id);
    let yes = |key: &str| if status[key].as_bool() == Some(true) { "yes" } else { "no" };
    println!("cluster      {}", text("cluster"));
    println!("node         {}", text("node"));
    println!("etcd         {}", yes("etcd_ok"));
    println!("serving      {}", yes("serving"));
    let members = status["members"].as_array().map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<[String; 3]> = members
        .iter()
        .map(|member| {
            let this = if member["this_node"].as_bool() == Some(true) { " (this)" } else { "" };
            let node = member["node"].as_str().map_or_else(|| "-".to_owned(), display_id);
            let link = member["link"].as_str().map_or_else(|| "-".to_owned(), display_id);
            [format!("{node}{this}"), link, member["lease"].to_string()]
        })
        .collect();
    print!("{}", table(["MEMBER", "LINK", "LEASE"], &rows));
    Ok(())
}

/// The columns of `ctl clients`.
const CLIENT_COLUMNS: [&str; 9] =
    ["CLIENT_ID", "STATE", "PROTOCOL", "ADDRESS", "USER", "SHARD", "SUBS", "QUEUED", "INFLIGHT"];

/// One client of the API's list as the columns of `ctl clients` (`-` for what it has not).
fn client_row(client: &Value) -> [String; 9] {
    let text = |key: &str| match &client[key] {
        Value::String(text) => display_id(text),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let state = match client["connected"].as_bool() {
        Some(true) => "connected",
        Some(false) => "offline",
        None => "-",
    };
    [
        text("client_id"),
        state.to_owned(),
        text("protocol"),
        text("peer_address"),
        text("username"),
        text("shard"),
        text("subscriptions"),
        text("queued"),
        text("inflight"),
    ]
}

/// `rows` under `columns`, each column as wide as its widest cell.
fn table<const N: usize>(columns: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = columns.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = columns.map(str::to_owned);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A client id (or a user name) as printed: as it is when it is plain visible ASCII, quoted and
/// escaped otherwise. Client ids are chosen by clients: one with spaces would break the columns,
/// and one with control characters could rewrite the operator's terminal.
fn display_id(id: &str) -> String {
    let plain = !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
    if plain {
        id.to_owned()
    } else {
        format!("{id:?}")
    }
}

/// The one line `ctl kick` prints for the API's answer.
fn kicked_line(id: &str, answer: &Value) -> String {
    let id = display_id(id);
    let disconnected = answer["disconnected"].as_bool().unwrap_or(false);
    let discarded = answer["session_discarded"].as_bool().unwrap_or(false);
    let connection = if disconnected { "disconnected" } else { "was not connected" };
    let session = if discarded { "session discarded" } else { "session kept" };
    match answer["node"].as_str() {
        Some(node) => format!("{id}: {connection}, {session} (on node {})", display_id(node)),
        None => format!("{id}: {connection}, {session}"),
    }
}

/// `ctl status`: health and readiness, then a few figures of `/metrics`.
fn status(endpoint: &Endpoint) -> Result<(), CtlError> {
    let health = endpoint.request("GET", "/health")?;
    if health.status != 200 {
        return Err(CtlError::Failed(format!("GET /health: {}", error_text(&health))));
    }
    let ready = endpoint.request("GET", "/ready")?;
    let ready = match ready.status {
        200 => "yes",
        503 => "no (starting, or in a cluster not holding its etcd lease)",
        _ => return Err(CtlError::Failed(format!("GET /ready: {}", error_text(&ready)))),
    };
    let metrics = endpoint.request("GET", "/metrics")?;
    if metrics.status != 200 {
        return Err(CtlError::Failed(format!("GET /metrics: {}", error_text(&metrics))));
    }
    println!("health       ok");
    println!("ready        {ready}");
    for (label, name) in [
        ("connections", "shardmq_connections"),
        ("sessions", "shardmq_sessions"),
        ("uptime (s)", "shardmq_uptime_seconds"),
        ("members", "shardmq_cluster_members"),
    ] {
        // A node alone has no membership: that line is left out.
        if let Some(value) = metric_sum(&metrics.body, name) {
            println!("{label:<12} {value}");
        }
    }
    Ok(())
}

/// The sum of every series of metric `name` in a Prometheus text exposition (the shards'
/// series of a per-shard gauge), `None` when it has none.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a client id may hold `/`,
/// `?`, `%`, spaces or anything else UTF-8 allows.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A node's admin endpoint, and the token to send it.
#[derive(Debug)]
struct Endpoint {
    /// HOST:PORT as given: also the `Host` header, which the endpoint checks (`admin_hosts`).
    admin: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

/// An HTTP answer: its status and its body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: String,
}

impl Endpoint {
    /// Sends one request and reads the whole answer; `Failed` when the endpoint cannot be
    /// reached or the answer is not HTTP.
    fn request(&self, method: &str, path: &str) -> Result<Answer, CtlError> {
        let failed = |error: String| {
            CtlError::Failed(format!("{method} http://{}{path}: {error}", self.admin))
        };
        let mut stream = self.connect().map_err(failed)?;
        let authorization = match &self.token {
            Some(token) => format!("Authorization: Bearer {token}\r\n"),
            None => String::new(),
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shardmq-ctl/{}\r\n\
             Accept: application/json\r\n{authorization}Connection: close\r\n\r\n",
            self.admin,
            env!("CARGO_PKG_VERSION"),
        );
        stream.write_all(request.as_bytes()).map_err(|error| failed(error.to_string()))?;
        read_answer(&mut stream).map_err(failed)
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let addresses = self
            .admin
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve the admin address: {error}"))?;
        let mut last = String::from("the admin address resolves to nothing");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| e.to_string())?;
                    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| e.to_string())?;
                    return Ok(stream);
                }
                Err(error) => last = format!("cannot connect to {address}: {error}"),
            }
        }
        Err(last)
    }

    /// A request to the client API whose answer is JSON: the JSON of a 200, else `Failed` with
    /// what went wrong in one line.
    fn json(&self, method: &str, path: &str) -> Result<Value, CtlError> {
        let answer = self.request(method, path)?;
        if answer.status == 401 {
            return Err(CtlError::Failed(self.unauthorized()));
        }
        if answer.status != 200 {
            return Err(CtlError::Failed(format!("{method} {path}: {}", error_text(&answer))));
        }
        serde_json::from_str(&answer.body).map_err(|error| {
            CtlError::Failed(format!("{method} {path}: the answer is not JSON ({error})"))
        })
    }

    /// What a 401 means for this invocation: no token sent, or the file's is not the node's.
    fn unauthorized(&self) -> String {
        match &self.token_file {
            None => "401 Unauthorized: the node requires an admin token; pass the node's \
                     admin_token_file with --token-file FILE"
                .to_owned(),
            Some(path) => format!(
                "401 Unauthorized: the token in {} is not the node's admin token (compare it \
                 with the node's admin_token_file; the node rereads that file on SIGHUP)",
                path.display()
            ),
        }
    }
}

/// One line for an answer other than 200: its status and the API's `error`, or the body's
/// first line when it is not JSON.
fn error_text(answer: &Answer) -> String {
    let error = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|value| value["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| answer.body.lines().next().unwrap_or("").trim().to_owned());
    format!("{} {error}", answer.status).trim_end().to_owned()
}

/// Reads an answer whole: up to its `Content-Length`, or to the end of the connection when it
/// has none.
fn read_answer(stream: &mut impl Read) -> Result<Answer, String> {
    let mut bytes = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(answer) = parse_answer(&bytes, false)? {
            return Ok(answer);
        }
        let read =
            stream.read(&mut chunk).map_err(|error| format!("reading the answer: {error}"))?;
        if read == 0 {
            return parse_answer(&bytes, true)?
                .ok_or_else(|| "the connection closed before a whole answer".to_owned());
        }
        bytes.extend_from_slice(&chunk[..read]);
        if bytes.len() > ANSWER_BYTES_MAX {
            return Err(format!("the answer is larger than {ANSWER_BYTES_MAX} bytes"));
        }
    }
}

/// The answer in `bytes` if it is whole (`closed`: the server has closed the connection, so
/// an answer without `Content-Length` ends here); `Ok(None)` while more bytes are needed.
fn parse_answer(bytes: &[u8], closed: bool) -> Result<Option<Answer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) if closed => {
            return Err("the connection closed before a whole answer".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(format!("not an HTTP answer ({error})")),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        let found = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
        found.map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|coding| coding.eq_ignore_ascii_case("chunked")) {
        // The admin endpoint never sends one; a proxy in between might.
        return Err("a chunked answer (not the admin endpoint's; a proxy in between?)".into());
    }
    let length = match header("content-length") {
        None => None,
        Some(text) => Some(text.parse::<usize>().map_err(|_| format!("Content-Length {text:?}"))?),
    };
    let body = &bytes[head..];
    let whole = match length {
        Some(length) if body.len() >= length => &body[..length],
        Some(_) if closed => return Err("the connection closed before the whole answer".into()),
        Some(_) => return Ok(None),
        None if closed => body,
        None => return Ok(None),
    };
    Ok(Some(Answer { status, body: String::from_utf8_lossy(whole).into_owned() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_end_at_their_length_or_at_the_close() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let answer = Answer { status: 200, body: "hello".into() };
        assert_eq!(parse_answer(whole, false), Ok(Some(answer)));
        // Part of the head, or of the body: more is needed.
        assert_eq!(parse_answer(&whole[..20], false), Ok(None));
        assert_eq!(parse_answer(&whole[..whole.len() - 1], false), Ok(None));
        // Cut short by the close.
        assert!(parse_answer(&whole[..whole.len() - 1], true).is_err());
        assert!(parse_answer(&whole[..20], true).is_err());
        // Without a length, the close ends the body.
        let open =
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\r\n{\"error\":\"x\"}";
        assert_eq!(parse_answer(open, false), Ok(None));
        let answer = parse_answer(open, true).expect("an answer").expect("whole");
        assert_eq!((answer.status, answer.body.as_str()), (401, "{\"error\":\"x\"}"));
        assert!(parse_answer(b"SSH-2.0-OpenSSH_9.2\r\n", true).is_err());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert!(parse_answer(chunked, true).is_err());
    }

    #[test]
    fn an_answer_is_read_from_a_stream_in_pieces() {
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(3).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut stream = Trickle(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n{\"error\":\"no such\"}".to_vec(),
        );
        let answer = read_answer(&mut stream).expect("an answer");
        assert_eq!(answer.status, 404);
        assert_eq!(error_text(&answer), "404 no such");
        let mut stream = Trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort".to_vec());
        assert!(read_answer(&mut stream).is_err());
    }

    #[test]
    fn metrics_are_summed_over_their_series() {
        let text = "# HELP shardmq_connections Client connections.\n\
                    # TYPE shardmq_connections gauge\n\
                    shardmq_connections{shard=\"0\"} 2\n\
                    shardmq_connections{shard=\"1\"} 3\n\
                    shardmq_connections_refused 9\n\
                    shardmq_uptime_seconds 12\n";
        assert_eq!(metric_sum(text, "shardmq_connections"), Some(5.0));
        assert_eq!(metric_sum(text, "shardmq_uptime_seconds"), Some(12.0));
        assert_eq!(metric_sum(text, "shardmq_cluster_members"), None);
    }

    #[test]
    fn client_ids_are_encoded_in_paths_and_quoted_when_printed() {
        assert_eq!(percent_encode("kick me/1"), "kick%20me%2F1");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("é?%"), "%C3%A9%3F%25");
        assert_eq!(display_id("sensor-1"), "sensor-1");
        assert_eq!(display_id("kick me/1"), "\"kick me/1\"");
        assert_eq!(display_id("\u{1b}[2J"), "\"\\u{1b}[2J\"");
        assert_eq!(display_id(""), "\"\"");
    }

    #[test]
    fn clients_are_printed_in_columns() {
        let page: Value = serde_json::json!([
            {"client_id": "sensor-1", "connected": true, "protocol": "5.0",
             "peer_address": "127.0.0.1:5000", "username": null, "shard": 1,
             "subscriptions": 2, "queued": 0, "inflight": 0},
            {"client_id": "a b", "connected": false, "protocol": null, "peer_address": null,
             "username": "alice", "shard": 0, "subscriptions": 1, "queued": 12, "inflight": 1},
        ]);
        let rows: Vec<_> = page.as_array().expect("a list").iter().map(client_row).collect();
        let printed = table(CLIENT_COLUMNS, &rows);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines.len(), 3, "{printed}");
        assert!(lines[0].starts_with("CLIENT_ID  STATE"), "{printed}");
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            first,
            ["sensor-1", "connected", "5.0", "127.0.0.1:5000", "-", "1", "2", "0", "0"]
        );
        assert!(lines[2].starts_with("\"a b\"      offline    -"), "{printed}");
        let kicked = serde_json::json!({"disconnected": true, "session_discarded": false});
        assert_eq!(kicked_line("sensor-1", &kicked), "sensor-1: disconnected, session kept");
        let kicked = serde_json::json!({"disconnected": true, "node": "n2"});
        assert_eq!(
            kicked_line("sensor-1", &kicked),
            "sensor-1: disconnected, session kept (on node n2)"
        );
        let row = cluster_row(&page[0]);
        assert_eq!((row[0].as_str(), row[9].as_str()), ("sensor-1", "-"));
    }
}

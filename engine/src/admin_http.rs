//! The admin endpoint's HTTP/1.1 server: one request per connection, on a fixed set of threads.
//!
//! What it guards against, beyond parsing: a client that opens connections and sends nothing
//! (each would otherwise hold a thread: 300 half-sent requests made 300 threads with the
//! general-purpose server used before), and a web page that reaches the endpoint through DNS
//! rebinding (its own name resolving to the node's address, so the browser treats the admin
//! API as the page's own site). Connections are served by [`ADMIN_WORKERS`] threads, at most
//! [`ADMIN_CONNECTIONS_MAX`] accepted at once (more are answered 503 at once and closed); a
//! request must arrive whole within [`ADMIN_READ_TIMEOUT`] and [`ADMIN_REQUEST_BYTES_MAX`]; and
//! its `Host` must be an IP address, `localhost`, or one of `admin_hosts` (else 421), since a
//! rebinding page can choose its name but not make it an IP literal.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Threads that serve admin requests.
pub const ADMIN_WORKERS: usize = 4;
/// Connections accepted and not yet answered, at most (being served or waiting for a thread).
pub const ADMIN_CONNECTIONS_MAX: usize = 32;
/// How long a request may take to arrive whole, and an answer to be written.
pub const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request (line and headers) read; the API has no request bodies.
pub const ADMIN_REQUEST_BYTES_MAX: usize = 16 << 10;

/// The request methods the API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Delete,
    Post,
    Other,
}

/// One request: its method, path, query (after `?`, undecoded) and `Authorization` header.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The `Authorization` header's value, if the request has one (the admin token).
    pub authorization: Option<String>,
}

impl std::fmt::Debug for Request {
    /// Says whether the request carries credentials, never what they are: a debug print must
    /// not put the admin token in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    /// Header lines beyond the usual ones (`WWW-Authenticate` on a 401).
    pub headers: &'static [(&'static str, &'static str)],
}

impl Response {
    /// A plain-text answer with no extra header.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, body: body.into(), content_type: "text/plain", headers: &[] }
    }
}

/// What the server refused, for `/metrics`.
#[derive(Debug, Default)]
pub struct AdminRefusals {
    /// Connections answered 503 because [`ADMIN_CONNECTIONS_MAX`] were being served.
    pub busy: AtomicU64,
    /// Requests not whole within [`ADMIN_READ_TIMEOUT`] or over [`ADMIN_REQUEST_BYTES_MAX`], or
    /// not HTTP.
    pub bad: AtomicU64,
    /// Requests whose `Host` names neither an IP address, `localhost`, nor an `admin_hosts` name.
    pub host: AtomicU64,
    /// Client API requests answered 401: no admin token, or the wrong one (`admin_token_file`).
    pub unauthorized: AtomicU64,
}

impl AdminRefusals {
    /// The refusals in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP shardmq_admin_refused_total Admin requests refused, by reason (busy: every \
             admin thread and queue slot taken, HTTP 503; bad: not a whole HTTP request within 5 s \
             and 16 KiB, 400; host: a Host header that is neither an IP address, localhost nor an \
             `admin_hosts` name, 421).\n# TYPE shardmq_admin_refused_total counter\n",
        );
        for (reason, count) in [("busy", &self.busy), ("bad", &self.bad), ("host", &self.host)] {
            let count = count.load(Ordering::Relaxed);
            out.push_str(&format!("shardmq_admin_refused_total{{reason=\"{reason}\"}} {count}\n"));
        }
        // A metric of its own rather than a reason above: a rising count is someone trying the
        // API without the token (or a tool left with an old one), worth an alert of its own.
        let name = "shardmq_admin_unauthorized_total";
        let count = self.unauthorized.load(Ordering::Relaxed);
        out.push_str(&format!(
            "# HELP {name} Client API requests answered 401 because they carried no admin token \
             or a wrong one (admin_token_file).\n# TYPE {name} counter\n{name} {count}\n"
        ));
        out
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Serves `listener` from threads of its own: `handle` answers each request.
pub fn serve(
    listener: TcpListener,
    hosts: Vec<String>,
    refusals: Arc<AdminRefusals>,
    handle: Arc<Handler>,
) -> std::io::Result<()> {
    let (queue, waiting) = sync_channel::<TcpStream>(ADMIN_CONNECTIONS_MAX - ADMIN_WORKERS);
    let waiting = Arc::new(Mutex::new(waiting));
    let hosts = Arc::new(hosts);
    for index in 0..ADMIN_WORKERS {
        let (waiting, hosts, refusals, handle) =
            (waiting.clone(), hosts.clone(), refusals.clone(), handle.clone());
        std::thread::Builder::new()
            .name(format!("admin-{index}"))
            .spawn(move || work(&waiting, &hosts, &refusals, &*handle))?;
    }
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || accept(&listener, &queue, &refusals))?;
    Ok(())
}

fn accept(listener: &TcpListener, queue: &SyncSender<TcpStream>, refusals: &AdminRefusals) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // Out of descriptors, or a connection reset before accept: never a busy loop.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match queue.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(mut stream)) => {
                refusals.busy.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nonblocking(true);
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
                      Connection: close\r\n\r\n",
                );
                // Closing with the request unread would send a reset that can overtake the
                // answer: end the write side and take what already arrived (without waiting).
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.read(&mut [0u8; 2048]);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

fn work(
    waiting: &Mutex<Receiver<TcpStream>>,
    hosts: &[String],
    refusals: &AdminRefusals,
    handle: &Handler,
) {
    loop {
        let next = waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        let Ok(mut stream) = next else { return };
        let response = match read_request(&mut stream) {
            Err(()) => {
                refusals.bad.fetch_add(1, Ordering::Relaxed);
                Response::text(400, "bad request\n")
            }
            Ok((_, Some(host))) if !host_allowed(&host, hosts) => {
                refusals.host.fetch_add(1, Ordering::Relaxed);
                Response::text(
                    421,
                    format!("host {host:?} is not this endpoint's (see `admin_hosts`)\n"),
                )
            }
            Ok((request, _)) => handle(&request),
        };
        let _ = write_response(&mut stream, &response);
    }
}

/// Reads one request whole, within the time and size bounds: it and its `Host` header.
fn read_request(stream: &mut TcpStream) -> Result<(Request, Option<String>), ()> {
    let deadline = Instant::now() + ADMIN_READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
        stream.set_read_timeout(Some(left.ok_or(())?)).map_err(drop)?;
        let n = stream.read(&mut chunk).map_err(drop)?;
        if n == 0 {
            return Err(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = match parsed.method {
                    Some("GET") => Method::Get,
                    Some("DELETE") => Method::Delete,
                    Some("POST") => Method::Post,
                    _ => Method::Other,
                };
                let target = parsed.path.ok_or(())?;
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let header = |name: &str| {
                    parsed
                        .headers
                        .iter()
                        .find(|header| header.name.eq_ignore_ascii_case(name))
                        .map(|header| String::from_utf8_lossy(header.value).trim().to_string())
                };
                let host = header("host");
                let authorization = header("authorization");
                let request =
                    Request { method, path: path.into(), query: query.into(), authorization };
                return Ok((request, host));
            }
            Ok(httparse::Status::Partial) if buf.len() < ADMIN_REQUEST_BYTES_MAX => {}
            _ => return Err(()),
        }
    }
}

/// Whether `host` (a `Host` header: name or address, maybe with a port) may be answered: an
/// IP address, `localhost`, or one of `hosts` (without regard to case).
fn host_allowed(host: &str, hosts: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(address, _)| address),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
}

fn write_response(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    stream.set_write_timeout(Some(ADMIN_READ_TIMEOUT))?;
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        421 => "Misdirected Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    for (name, value) in response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(response.body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_a_rebinding_page_cannot_name() {
        let hosts = vec!["broker1.internal".to_string()];
        for host in
            ["127.0.0.1:9090", "10.1.2.3", "[::1]:9090", "localhost:9090", "BROKER1.internal:1"]
        {
            assert!(host_allowed(host, &hosts), "{host}");
        }
        for host in ["evil.example.com:9090", "127.0.0.1.nip.io", "localhost.evil.com", ""] {
            assert!(!host_allowed(host, &hosts), "{host}");
        }
    }
}

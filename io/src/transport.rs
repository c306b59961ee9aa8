//! TLS and WebSocket under MQTT: the byte streams a connection task reads and writes.
//!
//! A plain TCP connection is a [`Connection`] and costs nothing more. A TLS, WebSocket or
//! WebSocket-over-TLS connection is a [`Layered`] one: the same [`Connection`] plus a boxed
//! [`Layer`] that turns wire bytes into MQTT bytes and back, sans-IO (rustls'
//! `ServerConnection` and tungstenite's `WebSocketContext` are driven with in-memory buffers,
//! never with the socket). Both implement [`MqttStream`], the interface the connection loops are
//! written against, so the broker's loops are the same code for every transport.
//!
//! The layer does the handshakes itself, as the first bytes arrive: the TLS handshake, then the
//! WebSocket upgrade (`GET` on any path, subprotocol `mqtt` or `mqttv3.1` when the client offers
//! a list). Whatever they must send goes into the layer's output, which is written whenever the
//! connection is polled: a handshake never waits for the MQTT side to write.
//!
//! A [`Layer`] is `Send`: it travels with its connection's fd when the connection moves to its
//! client's home shard.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConnection};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use crate::runtime::Connection;

/// The TLS server configuration a listener hands each new connection.
pub use rustls::ServerConfig;

/// The largest WebSocket upgrade request read (a browser's is well under 2 KiB).
const WS_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Wire bytes a layer holds for the socket past which it stops reading the client: replies
/// (pongs, handshakes) to a client that sends but never reads cost at most this.
const LAYER_OUT_BYTES_MAX: usize = 64 << 10;
/// Plaintext read from TLS at a time.
const TLS_READ_CHUNK_BYTES: usize = 16 * 1024;
/// What the WebSocket reader reads at a time (tungstenite's default is 128 KiB per connection).
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// A connection's byte stream as the connection loops see it: MQTT bytes in, MQTT bytes out,
/// and the shard's per-connection signals (which live on the underlying [`Connection`]).
pub trait MqttStream {
    /// The TCP connection underneath.
    fn connection(&self) -> &Connection;

    /// Ready when [`try_read_buf`](Self::try_read_buf) may find something; keeps the waker
    /// otherwise. Also moves output the layer has pending (handshake replies).
    fn poll_readable(&mut self, context: &Context<'_>) -> Poll<()>;

    /// Appends the MQTT bytes that have arrived to `buf` without waiting: `Some(n)` bytes,
    /// `Some(0)` at the end of the stream, `None` if nothing (yet).
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>>;

    /// Takes a prefix of `bytes` (not empty) once there is room: how many were taken. Bytes
    /// taken may still be in the layer: [`poll_flush`](Self::poll_flush) writes them.
    fn poll_write(&mut self, context: &Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>>;

    /// Ready once everything taken has been handed to the socket.
    fn poll_flush(&mut self, context: &Context<'_>) -> Poll<io::Result<()>>;

    /// Ends the stream: a TLS close_notify or a WebSocket close frame where there is a layer
    /// (best effort: never waits), then a TCP shutdown of both halves.
    fn close_gracefully(&mut self);

    /// Ends the sending side only: the close_notify or close frame as [`close_gracefully`]
    /// does, then a TCP shutdown of the write half (FIN). Reading goes on, so what the client
    /// still sends can be read and discarded: a socket closed with unread input sends RST,
    /// and a client's kernel then drops what it had not read yet (such as the DISCONNECT
    /// that said why).
    ///
    /// [`close_gracefully`]: Self::close_gracefully
    fn finish(&mut self);

    /// The user name the client's certificate carries (its subject's common name), if the
    /// stream is TLS and the client sent one.
    fn peer_common_name(&self) -> Option<String> {
        None
    }

    /// The `Origin` of a WebSocket upgrade refused because its page may not use the broker
    /// ([`AllowedOrigins`]), once the read that refused it has failed.
    fn refused_origin(&self) -> Option<&str> {
        None
    }

    /// Whether the stream is TLS (and so may carry a client certificate).
    fn is_tls(&self) -> bool {
        false
    }

    /// See [`Connection::peer_key`].
    fn peer_key(&self) -> i32 {
        self.connection().peer_key()
    }

    /// See [`Connection::notify_key`].
    fn notify_key(&self) -> u64 {
        self.connection().notify_key()
    }

    /// See [`Connection::signals`].
    fn signals(&self) -> u8 {
        self.connection().signals()
    }

    /// See [`Connection::clear_signals`].
    fn clear_signals(&self, signals: u8) {
        self.connection().clear_signals(signals);
    }

    /// See [`Connection::poll_signals`].
    fn poll_signals(&self, interest: u8, context: &Context<'_>) -> Poll<u8> {
        self.connection().poll_signals(interest, context)
    }
}

impl MqttStream for Connection {
    fn connection(&self) -> &Connection {
        self
    }

    fn poll_readable(&mut self, context: &Context<'_>) -> Poll<()> {
        Connection::poll_readable(self, context)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        Connection::try_read_buf(self, buf)
    }

    fn poll_write(&mut self, context: &Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Connection::poll_write(self, context, bytes)
    }

    fn poll_flush(&mut self, _context: &Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn close_gracefully(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }

    fn finish(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Which layers a listener puts under MQTT.
#[derive(Debug, Clone)]
pub enum LayerKind {
    Tls(Arc<ServerConfig>),
    WebSocket(Arc<AllowedOrigins>),
    TlsWebSocket(Arc<ServerConfig>, Arc<AllowedOrigins>),
}

/// Which web pages may open a WebSocket to the broker: the `Origin` a browser sends with every
/// upgrade names the page's site. Clients other than browsers send none and are not concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any page (the broker's own authentication is what protects it).
    Any,
    /// Pages served from this host only (`localhost`, `127.0.0.0/8`, `[::1]`): with anonymous
    /// access on loopback, a page from anywhere else that the host's browser opens would get
    /// the broker's anonymous rights.
    Loopback,
    /// These origins only (`scheme://host[:port]`, compared without regard to case).
    Only(Vec<String>),
}

impl AllowedOrigins {
    /// Whether an upgrade carrying `origin` is accepted.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::Loopback => is_loopback_origin(origin),
            AllowedOrigins::Only(list) => {
                list.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// Whether `origin` (`scheme://host[:port]`) names this host: `localhost`, an address in
/// `127.0.0.0/8`, or `[::1]`. `null` (a file or sandboxed page) does not.
fn is_loopback_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") || rest.contains('/') {
        return false;
    }
    let host = match rest.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, port)) if port.is_empty() || port.starts_with(':') => host,
            _ => return false,
        },
        None => rest.rsplit_once(':').map_or(rest, |(host, _)| host),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS and WebSocket state of one connection. Boxed: plain connections do without it.
pub struct Layer {
    tls: Option<ServerConnection>,
    ws: Option<WebSocket>,
    /// Wire bytes for the socket, not yet written.
    out: BytesMut,
    /// Wire bytes just read, before the layers take them (empty between reads).
    raw: BytesMut,
    /// The peer ended the stream inside a layer (close_notify, a close frame).
    ended: bool,
    /// The largest WebSocket frame or message accepted: what the MQTT packet limit allows
    /// (tungstenite hands a message over only when it is whole, so this bounds what one client
    /// can make the layer hold).
    ws_message_bytes_max: usize,
    /// The `Origin` of a WebSocket upgrade refused because the page may not use the broker.
    refused_origin: Option<String>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("tls", &self.tls.is_some())
            .field("websocket", &self.ws.is_some())
            .field("out", &self.out.len())
            .finish()
    }
}

/// The WebSocket layer: reading the upgrade request, then frames.
enum WebSocket {
    /// `scanned`: how much of the request has been searched for its end already.
    Upgrading {
        request: BytesMut,
        scanned: usize,
        origins: Arc<AllowedOrigins>,
    },
    Open {
        context: Box<WebSocketContext>,
        input: BytesMut,
    },
}

impl Layer {
    /// A layer for a new connection; `ws_message_bytes_max` bounds WebSocket frames and
    /// messages (the MQTT packet limit and some room for small packets beside it).
    pub fn new(kind: &LayerKind, ws_message_bytes_max: usize) -> Box<Layer> {
        let (tls, ws) = match kind {
            LayerKind::Tls(config) => (Some(config.clone()), None),
            LayerKind::WebSocket(origins) => (None, Some(origins.clone())),
            LayerKind::TlsWebSocket(config, origins) => {
                (Some(config.clone()), Some(origins.clone()))
            }
        };
        Box::new(Layer {
            // Fails only for a config without a usable protocol version, which
            // `load_tls_config` never builds.
            tls: tls.map(|config| {
                ServerConnection::new(config).expect("a TLS config from load_tls_config")
            }),
            ws: ws.map(|origins| WebSocket::Upgrading {
                request: BytesMut::new(),
                scanned: 0,
                origins,
            }),
            out: BytesMut::new(),
            raw: BytesMut::new(),
            ended: false,
            ws_message_bytes_max,
            refused_origin: None,
        })
    }

    /// Takes the wire bytes in `self.raw` through the layers, appending the MQTT bytes that
    /// come out to `buf`. Replies the layers owe (handshakes, pongs, alerts) go to `self.out`.
    fn ingest(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        let raw = std::mem::take(&mut self.raw);
        let mut plain = BytesMut::new();
        let plain: &[u8] = match &mut self.tls {
            None => &raw,
            Some(tls) => {
                let mut input: &[u8] = &raw;
                while !input.is_empty() {
                    tls.read_tls(&mut input)?;
                    let processed = tls.process_new_packets();
                    // An alert for the peer, if the records were bad, or handshake replies.
                    while tls.wants_write() {
                        tls.write_tls(&mut BytesWriter(&mut self.out))?;
                    }
                    if let Err(error) = processed {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                    }
                    let mut chunk = [0u8; TLS_READ_CHUNK_BYTES];
                    loop {
                        match tls.reader().read(&mut chunk) {
                            Ok(0) => {
                                self.ended = true;
                                break;
                            }
                            Ok(n) => plain.extend_from_slice(&chunk[..n]),
                            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                            Err(error) => return Err(error),
                        }
                    }
                }
                &plain
            }
        };
        let reply = match &mut self.ws {
            None => {
                buf.extend_from_slice(plain);
                None
            }
            Some(ws) => ws.ingest(
                plain,
                buf,
                &mut self.ended,
                self.ws_message_bytes_max,
                &mut self.refused_origin,
            )?,
        };
        if let Some(reply) = reply {
            self.seal(&reply)?;
        }
        if let Some(origin) = &self.refused_origin {
            // Answered (a browser shows the status); the read fails so the engine logs and
            // counts it.
            let refused = OriginRefused(origin.clone());
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, refused));
        }
        // The scratch buffer is kept only while it holds something (never, here).
        drop(raw);
        Ok(())
    }

    /// Puts bytes from the WebSocket layer (or MQTT bytes without one) on the wire: through
    /// TLS when there is TLS.
    fn seal(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.out.extend_from_slice(bytes),
            Some(tls) => {
                // rustls buffers at most 64 KiB of plaintext: seal it piece by piece, moving
                // the records out as they are made (`out` is bounded by the caller's writes).
                let mut rest = bytes;
                loop {
                    let taken = tls.writer().write(rest)?;
                    rest = &rest[taken..];
                    while tls.wants_write() {
                        tls.write_tls(&mut BytesWriter(&mut self.out))?;
                    }
                    if rest.is_empty() {
                        break;
                    }
                    if taken == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "TLS takes no more plaintext",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Frames MQTT bytes for the wire.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.ws {
            None => self.seal(bytes),
            Some(WebSocket::Open { context, .. }) => {
                let mut framed = Vec::with_capacity(bytes.len() + 10);
                let mut pipe = Pipe { input: &mut BytesMut::new(), output: &mut framed };
                context
                    .write(&mut pipe, Message::Binary(Bytes::copy_from_slice(bytes)))
                    .and_then(|()| context.flush(&mut pipe))
                    .map_err(ws_error)?;
                self.seal(&framed)
            }
            Some(WebSocket::Upgrading { .. }) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "MQTT output before the WebSocket upgrade",
            )),
        }
    }

    /// Queues the layers' goodbyes (best effort).
    fn close(&mut self) {
        let mut goodbye = Vec::new();
        if let Some(WebSocket::Open { context, .. }) = &mut self.ws {
            let mut pipe = Pipe { input: &mut BytesMut::new(), output: &mut goodbye };
            let _ = context.close(&mut pipe, None);
        }
        let _ = self.seal(&goodbye);
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            while tls.wants_write() {
                if tls.write_tls(&mut BytesWriter(&mut self.out)).is_err() {
                    break;
                }
            }
        }
    }
}

impl WebSocket {
    /// Takes bytes below the WebSocket layer; appends the MQTT bytes to `buf`. Returns what
    /// must be sent back (the upgrade response, pongs, a close reply).
    fn ingest(
        &mut self,
        bytes: &[u8],
        buf: &mut BytesMut,
        ended: &mut bool,
        message_bytes_max: usize,
        refused_origin: &mut Option<String>,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut reply = Vec::new();
        if let WebSocket::Upgrading { request, scanned, origins } = self {
            request.extend_from_slice(bytes);
            // Only the new bytes (and the three before them) can complete the blank line.
            let from = scanned.saturating_sub(3);
            let found = find_header_end(&request[from..]).map(|end| from + end);
            *scanned = request.len();
            let Some(end) = found else {
                if request.len() > WS_REQUEST_BYTES_MAX {
                    reply
                        .extend_from_slice(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n");
                    *ended = true;
                    return Ok(Some(reply));
                }
                return Ok(None);
            };
            match upgrade_response(&request[..end], origins) {
                Ok(response) => {
                    reply.extend_from_slice(response.as_bytes());
                    let input = request.split_off(end);
                    let config = WebSocketConfig::default()
                        .read_buffer_size(WS_READ_BUFFER_BYTES)
                        .write_buffer_size(0)
                        .max_frame_size(Some(message_bytes_max))
                        .max_message_size(Some(message_bytes_max));
                    *self = WebSocket::Open {
                        context: Box::new(WebSocketContext::new(Role::Server, Some(config))),
                        input,
                    };
                }
                Err(Refusal { response, origin }) => {
                    reply.extend_from_slice(response.as_bytes());
                    *ended = true;
                    *refused_origin = origin;
                    return Ok(Some(reply));
                }
            }
        } else if let WebSocket::Open { input, .. } = self {
            input.extend_from_slice(bytes);
        }
        let WebSocket::Open { context, input } = self else { return Ok(Some(reply)) };
        loop {
            let mut pipe = Pipe { input, output: &mut reply };
            match context.read(&mut pipe) {
                Ok(Message::Binary(data)) => buf.extend_from_slice(&data),
                // MQTT over WebSocket is binary frames only (MQTT 5.0 §6.0).
                Ok(Message::Text(_)) => {
                    let _ = context.close(&mut pipe, None);
                    *ended = true;
                    break;
                }
                Ok(Message::Close(_)) => {
                    // tungstenite queued the close reply; flush it into `reply`.
                    let _ = context.flush(&mut pipe);
                    *ended = true;
                    break;
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    break
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    *ended = true;
                    break;
                }
                Err(error) => return Err(ws_error(error)),
            }
        }
        if input.is_empty() {
            *input = BytesMut::new();
        }
        Ok(Some(reply))
    }
}

/// Where the HTTP request's header ends (past its blank line), if it has arrived.
fn find_header_end(request: &[u8]) -> Option<usize> {
    request.windows(4).position(|window| window == b"\r\n\r\n").map(|at| at + 4)
}

/// A WebSocket upgrade refused: the HTTP answer, and the `Origin` when that was the reason.
#[derive(Debug)]
struct Refusal {
    response: String,
    origin: Option<String>,
}

impl From<String> for Refusal {
    fn from(response: String) -> Refusal {
        Refusal { response, origin: None }
    }
}

/// The error a WebSocket layer reads after refusing an upgrade for its `Origin`.
#[derive(Debug)]
pub struct OriginRefused(pub String);

impl std::fmt::Display for OriginRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebSocket upgrade from a page of origin {:?}, which may not use the broker",
            self.0
        )
    }
}

impl std::error::Error for OriginRefused {}

/// The reply to a WebSocket upgrade request: `101 Switching Protocols`, or the HTTP error that
/// refuses it.
fn upgrade_response(request: &[u8], origins: &AllowedOrigins) -> Result<String, Refusal> {
    const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(BAD_REQUEST.to_string().into()),
    }
    if parsed.method != Some("GET") {
        return Err("HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\n\r\n"
            .to_string()
            .into());
    }
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .and_then(|header| std::str::from_utf8(header.value).ok())
    };
    // A list header may come as several lines: every line's values.
    let values = |name: &str| -> Vec<&str> {
        parsed
            .headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case(name))
            .filter_map(|header| std::str::from_utf8(header.value).ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect()
    };
    let has_token =
        |name: &str, token: &str| values(name).iter().any(|part| part.eq_ignore_ascii_case(token));
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err("HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"
            .to_string()
            .into());
    }
    if header("sec-websocket-version") != Some("13") {
        return Err("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
                    Connection: close\r\n\r\n"
            .to_string()
            .into());
    }
    // A browser names the page that opens the socket; other clients send no Origin.
    if let Some(origin) = header("origin").map(str::trim) {
        if !origins.allows(origin) {
            return Err(Refusal {
                response: "HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n".to_string(),
                origin: Some(origin.to_string()),
            });
        }
    }
    // The key is 16 random bytes in base64 (RFC 6455 §4.1): 24 characters ending in "==".
    let Some(key) = header("sec-websocket-key").map(str::trim).filter(|key| {
        key.len() == 24
            && key.ends_with("==")
            && key[..22].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    }) else {
        return Err(BAD_REQUEST.to_string().into());
    };
    // A client that names subprotocols must be offered one of MQTT's; one that names none gets
    // none (some embedded clients send no header).
    let offered = values("sec-websocket-protocol");
    let protocol = if offered.is_empty() {
        None
    } else {
        match ["mqtt", "mqttv3.1"].into_iter().find(|p| offered.contains(p)) {
            Some(protocol) => Some(protocol),
            None => return Err(BAD_REQUEST.to_string().into()),
        }
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let protocol = protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    ))
}

fn ws_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// tungstenite's view of the bytes below it: reads what arrived (then `WouldBlock`), writes
/// into a buffer.
struct Pipe<'a> {
    input: &'a mut BytesMut,
    output: &'a mut Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = into.len().min(self.input.len());
        into[..n].copy_from_slice(&self.input[..n]);
        self.input.advance(n);
        Ok(n)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `Write` into a `BytesMut` (rustls writes its records through `dyn Write`).
struct BytesWriter<'a>(&'a mut BytesMut);

impl Write for BytesWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection with TLS and/or WebSocket under MQTT.
#[derive(Debug)]
pub struct Layered {
    connection: Connection,
    layer: Box<Layer>,
}

impl Layered {
    pub fn new(connection: Connection, layer: Box<Layer>) -> Layered {
        Layered { connection, layer }
    }

    /// A layered connection whose first wire bytes were already read (after a PROXY header):
    /// takes `wire` through the layers at once, appending the MQTT bytes that come out to
    /// `buf`; the layers' replies (a TLS ServerHello) are written now as far as the socket
    /// takes them, and the rest when the connection is next polled.
    pub fn with_input(
        connection: Connection,
        mut layer: Box<Layer>,
        wire: &[u8],
        buf: &mut BytesMut,
    ) -> io::Result<Layered> {
        layer.raw.extend_from_slice(wire);
        let ingested = layer.ingest(buf);
        let mut layered = Layered { connection, layer };
        let flushed = layered.try_out();
        ingested?;
        flushed?;
        Ok(layered)
    }

    /// The connection and its layer, to move them to another shard.
    pub fn into_parts(self) -> (Connection, Box<Layer>) {
        (self.connection, self.layer)
    }

    /// Writes pending wire bytes until done or the socket is full.
    fn poll_out(&mut self, context: &Context<'_>) -> Poll<io::Result<()>> {
        while !self.layer.out.is_empty() {
            match self.connection.poll_write(context, &self.layer.out) {
                Poll::Ready(Ok(sent)) => self.layer.out.advance(sent),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // An idle connection keeps no output buffer.
        self.layer.out = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Writes what it can of the pending wire bytes without keeping any waker.
    fn try_out(&mut self) -> io::Result<()> {
        match self.poll_out(&Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => Ok(()),
        }
    }
}

impl MqttStream for Layered {
    fn connection(&self) -> &Connection {
        &self.connection
    }

    fn poll_readable(&mut self, context: &Context<'_>) -> Poll<()> {
        if !self.layer.out.is_empty() {
            // A reply the socket had no room for: its writability wakes us too.
            match self.poll_out(context) {
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                // A client that does not read what it asks for (pongs) is not read either.
                Poll::Pending if self.layer.out.len() > LAYER_OUT_BYTES_MAX => {
                    return Poll::Pending
                }
                _ => {}
            }
        }
        if self.layer.ended {
            return Poll::Ready(());
        }
        self.connection.poll_readable(context)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        if self.layer.ended {
            self.try_out()?;
            return Ok(Some(0));
        }
        let read = self.connection.try_read_buf(&mut self.layer.raw);
        let eof = match read {
            Ok(Some(0)) => true,
            Ok(Some(_)) => false,
            Ok(None) => {
                self.layer.raw = BytesMut::new();
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let before = buf.len();
        let ingested = self.layer.ingest(buf);
        // Replies (and a TLS alert for bad records) go out before anything else happens.
        let flushed = self.try_out();
        ingested?;
        flushed?;
        let n = buf.len() - before;
        if n > 0 {
            Ok(Some(n))
        } else if eof || self.layer.ended {
            Ok(Some(0))
        } else {
            Ok(None)
        }
    }

    fn poll_write(&mut self, context: &Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        // Earlier output first: the layer's buffer holds at most one write's worth.
        match self.poll_out(context) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
        if let Err(error) = self.layer.send(bytes) {
            return Poll::Ready(Err(error));
        }
        if let Poll::Ready(Err(error)) = self.poll_out(context) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(&mut self, context: &Context<'_>) -> Poll<io::Result<()>> {
        self.poll_out(context)
    }

    fn close_gracefully(&mut self) {
        self.layer.close();
        let _ = self.try_out();
        let _ = self.connection.shutdown(std::net::Shutdown::Both);
    }

    fn finish(&mut self) {
        self.layer.close();
        let _ = self.try_out();
        let _ = self.connection.shutdown(std::net::Shutdown::Write);
    }

    fn is_tls(&self) -> bool {
        self.layer.tls.is_some()
    }

    fn refused_origin(&self) -> Option<&str> {
        self.layer.refused_origin.as_deref()
    }

    fn peer_common_name(&self) -> Option<String> {
        let certificate = self.layer.tls.as_ref()?.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
        let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
        Some(name.to_string())
    }
}

/// Why a TLS certificate, key or CA file cannot be used: one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: no {what} found in it (PEM expected)")]
    Empty { path: String, what: &'static str },
    #[error("TLS setup: {0}")]
    Invalid(String),
}

/// The lowest TLS version a listener accepts (`tls_min_version`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (what rustls offers by default).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// What an operator tunes on the TLS listeners beyond the certificate: revoked client
/// certificates, the lowest version, and the cipher suites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Certificate revocation lists (PEM, one or more) for client certificates: a client whose
    /// certificate one of them revokes is refused in the handshake.
    pub crl: Option<std::path::PathBuf>,
    pub min_version: TlsVersion,
    /// The cipher suites offered, by their IANA names as rustls spells them
    /// (`TLS13_AES_256_GCM_SHA384`, `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`); empty: rustls'
    /// defaults.
    pub cipher_suites: Vec<String>,
}

/// The cipher suite names `tls_ciphers` may use (rustls' with the ring provider).
pub fn tls_cipher_suite_names() -> Vec<String> {
    rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .map(|suite| format!("{:?}", suite.suite()))
        .collect()
}

/// The crypto provider with only the policy's cipher suites, and the versions they allow.
fn policy_provider(
    policy: &TlsPolicy,
) -> Result<
    (rustls::crypto::CryptoProvider, Vec<&'static rustls::SupportedProtocolVersion>),
    TlsConfigError,
> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !policy.cipher_suites.is_empty() {
        let known = tls_cipher_suite_names();
        for name in &policy.cipher_suites {
            if !known.contains(name) {
                return Err(TlsConfigError::Invalid(format!(
                    "unknown cipher suite {name:?} (known: {})",
                    known.join(", ")
                )));
            }
        }
        provider
            .cipher_suites
            .retain(|suite| policy.cipher_suites.contains(&format!("{:?}", suite.suite())));
    }
    let wanted: &[&'static rustls::SupportedProtocolVersion] = match policy.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS12, &rustls::version::TLS13],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    // Only versions some remaining suite can serve: a TLS 1.2-only list turns TLS 1.3 off.
    let versions: Vec<_> = wanted
        .iter()
        .copied()
        .filter(|version| provider.cipher_suites.iter().any(|suite| suite.version() == *version))
        .collect();
    if versions.is_empty() {
        return Err(TlsConfigError::Invalid(
            "no cipher suite left for the TLS versions allowed (tls_ciphers, tls_min_version)"
                .into(),
        ));
    }
    Ok((provider, versions))
}

/// Builds the TLS server side from PEM files: the certificate chain and its key, and, for
/// mutual TLS, the CA that client certificates must chain to (clients without a valid
/// certificate, or with one a CRL of `policy` revokes, are then refused during the handshake).
pub fn load_tls_config(
    certificate: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    policy: &TlsPolicy,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let read_error = |path: &Path, error: &dyn std::fmt::Display| TlsConfigError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    let chain = read_certificates(certificate)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsConfigError::Empty { path: key.display().to_string(), what: "private key" }
        }
        error => read_error(key, &error),
    })?;
    let (provider, versions) = policy_provider(policy)?;
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|error| TlsConfigError::Invalid(error.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(path)? {
                roots.add(certificate).map_err(|error| {
                    TlsConfigError::Invalid(format!("{}: {error}", path.display()))
                })?;
            }
            let crls = match &policy.crl {
                Some(crl) => read_crls(crl)?,
                None => Vec::new(),
            };
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                .build()
                .map_err(|error| TlsConfigError::Invalid(format!("{}: {error}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsConfigError::Invalid(format!("{}: {error}", certificate.display())))?;
    Ok(Arc::new(config))
}

/// The certificate revocation lists in a PEM file (at least one).
fn read_crls(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, TlsConfigError> {
    use rustls::pki_types::pem::PemObject;
    let crls = rustls::pki_types::CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsConfigError::Read {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
    if crls.is_empty() {
        return Err(TlsConfigError::Empty {
            path: path.display().to_string(),
            what: "certificate revocation list",
        });
    }
    Ok(crls)
}

pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsConfigError::Read {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsConfigError::Empty {
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_policy_picks_suites_and_versions() {
        let policy = |min_version, suites: &[&str]| TlsPolicy {
            crl: None,
            min_version,
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
        };
        let (_, versions) = policy_provider(&TlsPolicy::default()).expect("defaults");
        assert_eq!(versions.len(), 2);
        let (_, versions) = policy_provider(&policy(TlsVersion::V1_3, &[])).expect("1.3");
        assert_eq!(versions, vec![&rustls::version::TLS13]);
        // A TLS 1.2-only list turns TLS 1.3 off; with 1.3 required, nothing is left.
        let only_12 = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"];
        let (provider, versions) =
            policy_provider(&policy(TlsVersion::V1_2, &only_12)).expect("1.2");
        assert_eq!(versions, vec![&rustls::version::TLS12]);
        assert_eq!(provider.cipher_suites.len(), 1);
        assert!(policy_provider(&policy(TlsVersion::V1_3, &only_12)).is_err());
        let Err(unknown) = policy_provider(&policy(TlsVersion::V1_2, &["RC4-MD5"])) else {
            panic!("an unknown suite was accepted")
        };
        assert!(unknown.to_string().contains("TLS13_AES_256_GCM_SHA384"), "{unknown}");
    }

    fn request(extra: &str) -> String {
        format!(
            "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, \
             Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn upgrade_accepts_any_path_and_picks_mqtt() {
        let response = upgrade_response(
            request("Sec-WebSocket-Protocol: foo, mqtt\r\n").as_bytes(),
            &AllowedOrigins::Any,
        )
        .expect("accepted");
        // RFC 6455's example key and accept value.
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{response}");
        assert!(response.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{response}");
        let other_path = request("").replace("/mqtt", "/anything/else");
        let response =
            upgrade_response(other_path.as_bytes(), &AllowedOrigins::Any).expect("any path");
        assert!(!response.contains("Sec-WebSocket-Protocol"), "{response}");
    }

    #[test]
    fn upgrade_refusals() {
        let refused = upgrade_response(
            request("Sec-WebSocket-Protocol: chat\r\n").as_bytes(),
            &AllowedOrigins::Any,
        );
        assert!(refused.expect_err("no mqtt").response.starts_with("HTTP/1.1 400"));
        let plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(upgrade_response(plain, &AllowedOrigins::Any)
            .expect_err("no upgrade")
            .response
            .starts_with("HTTP/1.1 426"));
        let post = request("").replace("GET", "POST");
        assert!(upgrade_response(post.as_bytes(), &AllowedOrigins::Any)
            .expect_err("post")
            .response
            .starts_with("HTTP/1.1 405"));
        assert!(upgrade_response(b"\x16\x03\x01garbage\r\n\r\n", &AllowedOrigins::Any).is_err());
        let bad_key = request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "not-a-key");
        assert!(upgrade_response(bad_key.as_bytes(), &AllowedOrigins::Any)
            .expect_err("key")
            .response
            .starts_with("HTTP/1.1 400"));
        // Subprotocols offered over several header lines count together.
        let split = request("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: mqtt\r\n");
        let response = upgrade_response(split.as_bytes(), &AllowedOrigins::Any)
            .expect("mqtt on the second line");
        assert!(response.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{response}");
    }

    #[test]
    fn pages_of_other_sites_are_refused_where_only_loopback_or_a_list_may_connect() {
        let from = |origin: &str| request(&format!("Origin: {origin}\r\n"));
        let loopback = AllowedOrigins::Loopback;
        for origin in
            ["http://localhost:8080", "https://127.0.0.1", "http://[::1]:3000", "HTTP://LOCALHOST"]
        {
            assert!(upgrade_response(from(origin).as_bytes(), &loopback).is_ok(), "{origin}");
        }
        for origin in [
            "http://evil.example.com",
            "null",
            "http://localhost.evil.com",
            "http://10.0.0.1",
            "http://127.0.0.1.nip.io",
            "file://",
        ] {
            let refused = upgrade_response(from(origin).as_bytes(), &loopback).expect_err(origin);
            assert!(refused.response.starts_with("HTTP/1.1 403"), "{origin}");
            assert_eq!(refused.origin.as_deref(), Some(origin));
        }
        // Clients other than browsers send no Origin: not concerned.
        assert!(upgrade_response(request("").as_bytes(), &loopback).is_ok());
        let listed = AllowedOrigins::Only(vec!["https://dash.example.com".into()]);
        assert!(upgrade_response(from("https://Dash.Example.com").as_bytes(), &listed).is_ok());
        assert!(upgrade_response(from("http://dash.example.com").as_bytes(), &listed).is_err());
        assert!(upgrade_response(from("http://anything").as_bytes(), &AllowedOrigins::Any).is_ok());
        // Through the layer: answered 403, then read as an error naming the origin.
        let mut layer = Layer::new(&LayerKind::WebSocket(Arc::new(loopback)), 1024);
        layer.raw.extend_from_slice(from("http://evil.example.com").as_bytes());
        let error = layer.ingest(&mut BytesMut::new()).expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(layer.refused_origin.as_deref(), Some("http://evil.example.com"));
        assert!(String::from_utf8_lossy(&layer.out).starts_with("HTTP/1.1 403"));
    }

    #[test]
    fn websocket_request_byte_by_byte_and_frames_over_the_limit() {
        let mut layer = Layer::new(&LayerKind::WebSocket(Arc::new(AllowedOrigins::Any)), 1024);
        let mut mqtt = BytesMut::new();
        for byte in request("").bytes() {
            layer.raw.extend_from_slice(&[byte]);
            layer.ingest(&mut mqtt).expect("a byte of the request");
        }
        assert!(String::from_utf8_lossy(&layer.out).starts_with("HTTP/1.1 101"));
        // A frame announcing more than the limit is refused from its header, before its
        // payload is buffered.
        layer.raw.extend_from_slice(&[0x82, 0x80 | 126, 0x08, 0x00, 1, 2, 3, 4]);
        assert!(layer.ingest(&mut mqtt).is_err());
        assert!(mqtt.is_empty());
    }

    #[test]
    fn websocket_layer_carries_binary_frames_both_ways() {
        let mut layer = Layer::new(&LayerKind::WebSocket(Arc::new(AllowedOrigins::Any)), 1 << 20);
        let mut mqtt = BytesMut::new();
        // The request arrives in two pieces, with the first frame right behind it.
        let request = request("Sec-WebSocket-Protocol: mqtt\r\n");
        let (first, second) = request.as_bytes().split_at(20);
        layer.raw.extend_from_slice(first);
        layer.ingest(&mut mqtt).expect("partial request");
        assert!(layer.out.is_empty() && mqtt.is_empty());
        layer.raw.extend_from_slice(second);
        // A masked binary frame "\x10\x00" (mask 1,2,3,4), then a ping.
        layer.raw.extend_from_slice(&[0x82, 0x82, 1, 2, 3, 4, 0x10 ^ 1, 2]);
        layer.raw.extend_from_slice(&[0x89, 0x80, 9, 9, 9, 9]);
        layer.ingest(&mut mqtt).expect("request and frames");
        assert_eq!(&mqtt[..], &[0x10, 0x00]);
        let out = String::from_utf8_lossy(&layer.out).to_string();
        assert!(out.starts_with("HTTP/1.1 101"), "{out}");
        // The pong follows the response.
        assert!(layer.out.ends_with(&[0x8A, 0x00]), "{:?}", &layer.out[..]);
        layer.out.clear();
        layer.send(&[0x20, 0x02, 0, 0]).expect("send");
        // Server frames are unmasked: FIN + binary, length 4.
        assert_eq!(&layer.out[..], &[0x82, 0x04, 0x20, 0x02, 0, 0]);
        // A text frame ends the stream.
        layer.raw.extend_from_slice(&[0x81, 0x81, 0, 0, 0, 0, b'x']);
        layer.ingest(&mut mqtt).expect("text");
        assert!(layer.ended);
    }

    /// A rustls client and the server layer, joined in memory.
    fn tls_pair() -> (rustls::ClientConnection, Box<Layer>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let dir = std::env::temp_dir().join(format!("shardmq-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).expect("cert file");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key file");
        let server =
            load_tls_config(&cert, &key, None, &TlsPolicy::default()).expect("server config");
        let mut roots = RootCertStore::empty();
        roots.add(certified.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let client = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
        (client, Layer::new(&LayerKind::Tls(server), 1 << 20))
    }

    /// Moves bytes both ways until neither side has anything to say; returns the MQTT bytes the
    /// layer produced and the plaintext the client read.
    fn pump(client: &mut rustls::ClientConnection, layer: &mut Layer) -> (BytesMut, Vec<u8>) {
        let (mut mqtt, mut plain) = (BytesMut::new(), Vec::new());
        loop {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).expect("client write");
            }
            layer.raw.extend_from_slice(&to_server);
            layer.ingest(&mut mqtt).expect("server ingest");
            let to_client = std::mem::take(&mut layer.out);
            let mut input: &[u8] = &to_client;
            while !input.is_empty() {
                client.read_tls(&mut input).expect("client read");
                client.process_new_packets().expect("client process");
                let mut chunk = [0u8; 65536];
                while let Ok(n) = client.reader().read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    plain.extend_from_slice(&chunk[..n]);
                }
            }
            if to_server.is_empty() && to_client.is_empty() {
                return (mqtt, plain);
            }
        }
    }

    #[test]
    fn tls_layer_carries_large_writes_both_ways() {
        let (mut client, mut layer) = tls_pair();
        let (mqtt, _) = pump(&mut client, &mut layer);
        assert!(mqtt.is_empty() && !client.is_handshaking());
        // Far more than rustls' 64 KiB plaintext buffer, each way.
        let big: Vec<u8> = (0..5_000_000u32).map(|i| i as u8).collect();
        layer.send(&big).expect("server send");
        // (The client buffers it all: rustls limits that only by default.)
        client.set_buffer_limit(None);
        client.writer().write_all(&big[..1_000_000]).expect("client send");
        let (mqtt, plain) = pump(&mut client, &mut layer);
        assert!(plain == big, "the client read {} of {} bytes", plain.len(), big.len());
        assert!(mqtt[..] == big[..1_000_000], "the server read {} bytes", mqtt.len());
    }
}

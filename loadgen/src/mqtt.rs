//! One simulated client's MQTT connection: the handshake, reading without holding a buffer while
//! idle, keepalive, and the names of the ways a connection fails.
//!
//! An idle connection owns its socket, a decoder and a few numbers; its read buffer is borrowed
//! from the worker's [`BufferPool`] only between readability and the end of decoding, the way
//! the broker reads (`TcpStream::readable`, then `read_buf`).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use shardmq_io::codec::{
    parse_fixed_header, ByteString, Connect, DecodeError, Decoded, Decoder, Disconnect,
    EncodeError, Packet, Properties, ProtocolVersion, ReasonCode,
};
use shardmq_io::runtime::{self, TcpStream};

use crate::clock::now_ns;

/// The largest packet a simulated client accepts: the largest payload plus generous room for
/// the topic and properties. Anything bigger is a broker bug worth failing the connection for.
pub const CLIENT_PACKET_BYTES_MAX: u32 = (crate::config::PAYLOAD_BYTES_MAX as u32) + (64 << 10);
/// Read buffers a worker keeps for reuse; past it, returned buffers are freed. A worker reads
/// one connection at a time, so a few suffice; the rest only absorb bursts.
pub const POOLED_BUFFERS_MAX: usize = 64;
/// The capacity a new pooled buffer starts with: one full read (`READ_BYTES_MAX`).
const POOLED_BUFFER_BYTES: usize = runtime::READ_BYTES_MAX;
/// How long a closing client waits for the broker to close first after DISCONNECT. The side that
/// closes first keeps the TIME_WAIT entry; letting the broker close keeps the load generator's
/// ports reusable for the next run.
pub const DISCONNECT_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// A worker's spare read and write buffers. Lives on one worker.
#[derive(Debug, Default)]
pub struct BufferPool {
    buffers: RefCell<Vec<BytesMut>>,
}

impl BufferPool {
    /// An empty buffer, reused when one is spare.
    pub fn take(&self) -> BytesMut {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(POOLED_BUFFER_BYTES))
    }

    /// Returns an empty buffer for reuse (a buffer still holding bytes is the caller's bug and is
    /// simply freed).
    pub fn give(&self, mut buffer: BytesMut) {
        let mut buffers = self.buffers.borrow_mut();
        if buffer.is_empty() && buffers.len() < POOLED_BUFFERS_MAX {
            buffer.clear();
            buffers.push(buffer);
        }
    }
}

/// Why a connection attempt failed or an established connection ended. [`Failure::key`] is the
/// name the report counts it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target refused the TCP connection (nothing listening, or its backlog overflowed with
    /// `tcp_abort_on_overflow`).
    Refused,
    /// No CONNACK (or SUBACK) within the connect timeout.
    Timeout,
    /// The connection was reset.
    Reset,
    /// The broker closed the connection.
    Closed,
    /// CONNACK refused the client with this reason code.
    ConnAck(ReasonCode),
    /// SUBACK refused the subscription with this reason code.
    SubAck(ReasonCode),
    /// The broker sent DISCONNECT with this reason code (MQTT 5).
    Disconnected(ReasonCode),
    /// No local port left for this (source, target) pair: add source addresses.
    PortsExhausted,
    /// This process is out of file descriptors: raise `ulimit -n` or use more processes.
    OutOfDescriptors,
    /// No PINGRESP within a keepalive period.
    KeepaliveTimeout,
    /// A write the broker did not take (it stopped reading) within the drain time.
    WriteStalled,
    /// The broker sent bytes that do not decode, or a packet out of place.
    Protocol(String),
    /// Any other socket error, by kind.
    Io(io::ErrorKind),
}

impl Failure {
    /// The stable name the report counts this failure under.
    pub fn key(&self) -> String {
        match self {
            Failure::Refused => "refused".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Reset => "reset".into(),
            Failure::Closed => "closed_by_broker".into(),
            Failure::ConnAck(code) => format!("connack_0x{:02x}", code.0),
            Failure::SubAck(code) => format!("suback_0x{:02x}", code.0),
            Failure::Disconnected(code) => format!("disconnect_0x{:02x}", code.0),
            Failure::PortsExhausted => "ports_exhausted".into(),
            Failure::OutOfDescriptors => "out_of_descriptors".into(),
            Failure::KeepaliveTimeout => "keepalive_timeout".into(),
            Failure::WriteStalled => "write_stalled".into(),
            Failure::Protocol(_) => "protocol_error".into(),
            Failure::Io(kind) => format!("io_{kind:?}").to_lowercase(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ConnAck(code) | Failure::SubAck(code) | Failure::Disconnected(code) => {
                write!(formatter, "{} ({code})", self.key())
            }
            Failure::Protocol(what) => write!(formatter, "protocol error: {what}"),
            _ => formatter.write_str(&self.key()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => return Failure::Refused,
            Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => return Failure::Reset,
            Some(libc::ETIMEDOUT) => return Failure::Timeout,
            Some(libc::EADDRNOTAVAIL) => return Failure::PortsExhausted,
            Some(libc::EMFILE | libc::ENFILE) => return Failure::OutOfDescriptors,
            _ => {}
        }
        Failure::Io(error.kind())
    }
}

impl From<DecodeError> for Failure {
    fn from(error: DecodeError) -> Failure {
        Failure::Protocol(error.to_string())
    }
}

impl From<EncodeError> for Failure {
    fn from(error: EncodeError) -> Failure {
        Failure::Protocol(format!("cannot encode: {error}"))
    }
}

/// What a client sends in CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub version: ProtocolVersion,
    pub client_id: String,
    pub keepalive_secs: u16,
    pub session: Session,
}

/// Which session a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Clean Start / Clean Session = 1: a fresh session that ends with the connection.
    Clean,
    /// Clean Start / Clean Session = 0: resume the stored session; MQTT 5 keeps it for
    /// `expiry_secs` after the connection ends (3.1.1 keeps it until a clean connect).
    Persistent { expiry_secs: u32 },
}

/// An open MQTT connection (CONNACK received). Lives on one worker.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    decoder: Decoder,
    version: ProtocolVersion,
    /// Bytes read but not decoded yet; holds no allocation while the connection is idle.
    read: BytesMut,
    /// When this client last wrote: keepalive counts the client's own sends.
    last_sent_ns: u64,
    keepalive_ns: u64,
    ping_outstanding: bool,
    /// How many QoS 1/2 messages the broker accepts in flight from us (MQTT 5 Receive Maximum;
    /// 65,535 when not given, as the specification says).
    pub receive_maximum: u16,
    /// CONNACK's Session Present flag.
    pub session_present: bool,
}

impl Connection {
    /// Connects to `target` from `source`, sends CONNECT and waits for a successful CONNACK.
    /// Has no timeout of its own: race it with one.
    pub async fn open(
        target: SocketAddr,
        source: Option<IpAddr>,
        options: &ConnectOptions,
        pool: &BufferPool,
    ) -> Result<Connection, Failure> {
        let stream = TcpStream::connect(target, source).await?;
        // Messages are small and latency is what is measured: never let Nagle hold one back.
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            stream,
            decoder: Decoder::client(options.version, CLIENT_PACKET_BYTES_MAX),
            version: options.version,
            read: BytesMut::new(),
            last_sent_ns: 0,
            keepalive_ns: u64::from(options.keepalive_secs) * 1_000_000_000,
            ping_outstanding: false,
            receive_maximum: u16::MAX,
            session_present: false,
        };
        let mut properties = Properties::default();
        if let (Session::Persistent { expiry_secs }, ProtocolVersion::V5) =
            (options.session, options.version)
        {
            properties.session_expiry_interval = Some(expiry_secs);
        }
        let connect = Packet::Connect(Box::new(Connect {
            protocol: options.version,
            clean_start: options.session == Session::Clean,
            keep_alive_secs: options.keepalive_secs,
            client_id: ByteString::from(options.client_id.as_str()),
            will: None,
            username: None,
            password: None,
            properties,
        }));
        connection.send_packet(&connect, pool).await?;
        loop {
            connection.fill(pool).await?;
            if let Some(packet) = connection.next_packet(pool)? {
                let Packet::ConnAck(connack) = packet else {
                    return Err(Failure::Protocol("the first packet is not CONNACK".into()));
                };
                if connack.reason.is_error() {
                    return Err(Failure::ConnAck(connack.reason));
                }
                connection.session_present = connack.session_present;
                if let Some(maximum) = connack.properties.receive_maximum {
                    connection.receive_maximum = maximum;
                }
                if let Some(keepalive) = connack.properties.server_keep_alive {
                    // MQTT 5: the client must use the broker's keepalive instead of its own.
                    connection.keepalive_ns = u64::from(keepalive) * 1_000_000_000;
                }
                connection.release_buffer(pool);
                return Ok(connection);
            }
        }
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Waits until bytes (or EOF) arrive, holding no buffer and reading nothing. Its future is
    /// a few words, which keeps an idle client's task small; follow it with
    /// [`Connection::fill`], which then reads at once. Cancel-safe.
    pub async fn readable(&mut self) -> Result<(), Failure> {
        self.stream.readable().await?;
        Ok(())
    }

    /// Waits until bytes (or EOF) arrive, holding no buffer meanwhile, then reads them.
    /// Cancel-safe: race it with timers and signals, then drain with [`Connection::next_packet`].
    pub async fn fill(&mut self, pool: &BufferPool) -> Result<(), Failure> {
        self.stream.readable().await?;
        if self.read.capacity() == 0 {
            self.read = pool.take();
        }
        let read = self.stream.read_buf(&mut self.read).await?;
        if read == 0 {
            return Err(Failure::Closed);
        }
        Ok(())
    }

    /// The next whole packet read so far, or `None` (and the read buffer back in the pool) when
    /// there is none. Answers PINGRESP and DISCONNECT itself.
    pub fn next_packet(&mut self, pool: &BufferPool) -> Result<Option<Packet>, Failure> {
        loop {
            if self.read.is_empty() {
                if self.read.capacity() != 0 {
                    pool.give(std::mem::take(&mut self.read));
                }
                return Ok(None);
            }
            match self.decoder.decode(&mut self.read)? {
                Decoded::NeedMore(_) => return Ok(None),
                Decoded::Packet(Packet::PingResp) => self.ping_outstanding = false,
                Decoded::Packet(Packet::Disconnect(disconnect)) => {
                    return Err(Failure::Disconnected(disconnect.reason))
                }
                Decoded::Packet(packet) => return Ok(Some(packet)),
            }
        }
    }

    /// Whether a whole packet already read waits to be decoded (which waiting for readability
    /// would not notice). A partial packet does not count: it needs more bytes first.
    pub fn has_buffered(&self) -> bool {
        match parse_fixed_header(&self.read, self.decoder.max_packet_size()) {
            Ok(Some(header)) => self.read.len() >= header.packet_len(),
            Ok(None) => false,
            // Let the decoder report the error.
            Err(_) => true,
        }
    }

    /// Gives the read buffer back to the pool if it holds no partial packet, so a connection
    /// that goes idle after this holds none. Call it after returning early from a
    /// [`Connection::next_packet`] loop (which otherwise releases the buffer itself).
    pub fn release_buffer(&mut self, pool: &BufferPool) {
        if self.read.is_empty() && self.read.capacity() != 0 {
            pool.give(std::mem::take(&mut self.read));
        }
    }

    /// Writes `bytes` (whole packets), waiting while the socket is full.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream.write_all(bytes).await?;
        self.last_sent_ns = now_ns();
        Ok(())
    }

    /// Encodes `packet` into a pooled buffer and writes it.
    pub async fn send_packet(&mut self, packet: &Packet, pool: &BufferPool) -> Result<(), Failure> {
        let mut out = pool.take();
        let encoded = packet.encode(self.version, &mut out);
        let written = match encoded {
            Ok(_) => self.write(&out).await,
            Err(error) => Err(error.into()),
        };
        out.clear();
        pool.give(out);
        written
    }

    /// When the next PINGREQ is due (CLOCK_MONOTONIC ns), `None` without keepalive.
    pub fn ping_due_ns(&self) -> Option<u64> {
        (self.keepalive_ns != 0).then(|| self.last_sent_ns.saturating_add(self.keepalive_ns))
    }

    /// Sends PINGREQ if one is due; fails if the previous one was never answered.
    pub async fn keepalive_tick(&mut self) -> Result<(), Failure> {
        let Some(due) = self.ping_due_ns() else { return Ok(()) };
        if now_ns() < due {
            return Ok(());
        }
        if self.ping_outstanding {
            return Err(Failure::KeepaliveTimeout);
        }
        const PINGREQ: [u8; 2] = [0xC0, 0x00];
        self.write(&PINGREQ).await?;
        self.ping_outstanding = true;
        Ok(())
    }

    /// Sends PINGREQ and waits for its PINGRESP, handing every other packet that comes first to
    /// `other`. A broker answers one connection's packets in order, so once PINGRESP arrives it
    /// has handled everything sent before it (the only barrier QoS 0 publishes have).
    pub async fn round_trip(
        &mut self,
        pool: &BufferPool,
        mut other: impl FnMut(Packet) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        const PINGREQ: [u8; 2] = [0xC0, 0x00];
        self.write(&PINGREQ).await?;
        self.ping_outstanding = true;
        while self.ping_outstanding {
            if !self.has_buffered() {
                self.fill(pool).await?;
            }
            while let Some(packet) = self.next_packet(pool)? {
                other(packet)?;
            }
        }
        self.release_buffer(pool);
        Ok(())
    }

    /// Sends DISCONNECT and waits up to [`DISCONNECT_LINGER`] for the broker to close, so the
    /// broker's side keeps the TIME_WAIT entry; errors are ignored (the connection is ending).
    ///
    /// Boxed, like the handshake: it runs once, and its state must not size every idle client.
    pub async fn disconnect(self, pool: &BufferPool) {
        Box::pin(self.disconnect_inline(pool)).await;
    }

    async fn disconnect_inline(mut self, pool: &BufferPool) {
        let disconnect = Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
        // A broker that does not read any more does not get to hold the run up.
        let sent = futures_lite::future::or(self.send_packet(&disconnect, pool), async {
            runtime::sleep(DISCONNECT_LINGER).await;
            Err(Failure::WriteStalled)
        });
        if sent.await.is_err() {
            return;
        }
        let wait_for_close = async {
            // Anything the broker still sends is dropped; EOF or an error ends the wait.
            while self.fill(pool).await.is_ok() {
                self.read.clear();
            }
        };
        futures_lite::future::or(wait_for_close, runtime::sleep(DISCONNECT_LINGER)).await;
        if self.read.capacity() != 0 {
            self.read.clear();
            pool.give(std::mem::take(&mut self.read));
        }
    }
}

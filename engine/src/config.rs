//! The node's configuration: a TOML file and CLI flags with the same names (a flag overrides the
//! file), every limit with a documented default. A bad file or value is one line naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use shardmq_cluster::ownership::TXN_OPS_MAX;
use shardmq_shard::Limits;
use shardmq_storage::Durability;

use shardmq_io::link_tls::LinkTlsFiles;
use shardmq_io::transport::{AllowedOrigins, TlsPolicy, TlsVersion};
use std::sync::Arc;

pub mod bridge;
pub use bridge::BridgeConfig;

/// `shardmq serve` flags. Each is also a key of the config file (dashes become underscores).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to accept MQTT clients on [default: 0.0.0.0:1883, narrowed to 127.0.0.1:1883
    /// when no authentication is configured and `allow_anonymous` is not set].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Number of shards (one executor per core) [default: online cores].
    #[arg(long, value_name = "N")]
    pub shards: Option<u16>,
    /// TOML config file; flags given on the command line override its keys.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the shards' data [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `immediate`: acknowledge a stored message only once it is on disk (fsync); `none`: for
    /// benchmarks only, a crash can lose acknowledged messages [default: immediate].
    #[arg(long, value_name = "MODE")]
    pub durability: Option<String>,
    /// Log filter, e.g. `info`, `debug`, `shardmq=debug` [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log: Option<String>,
    /// Log lines as `human` text or `json` (one object per line, for log shippers)
    /// [default: human].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Largest keepalive granted, in seconds [default: 65535].
    #[arg(long, value_name = "SECS")]
    pub max_keepalive: Option<u16>,
    /// Concurrent client connections per node [default: 1000000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest packet accepted from a client, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_packet_size: Option<u32>,
    /// QoS 1/2 messages in flight per client, each way [default: 64].
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<u16>,
    /// Messages queued per session [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_queued_messages: Option<usize>,
    /// Payload bytes queued per session [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_queued_bytes: Option<usize>,
    /// Bytes waiting for one client's socket before its QoS 0 messages are dropped
    /// [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_output_buffer: Option<usize>,
    /// Levels in a topic name or filter [default: 128].
    #[arg(long, value_name = "N")]
    pub max_topic_levels: Option<usize>,
    /// Subscriptions per client [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_subscriptions: Option<usize>,
    /// Bytes of topic filters one client's subscriptions may hold in all; beyond, SUBACK 0x97
    /// (3.1.1: 0x80) [default: 262144].
    #[arg(long, value_name = "BYTES")]
    pub max_subscription_bytes: Option<usize>,
    /// Retained messages per node [default: 1000000].
    #[arg(long, value_name = "N")]
    pub max_retained_messages: Option<usize>,
    /// Payload bytes of one retained message [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_retained_payload: Option<usize>,
    /// Bytes all retained messages of the node may hold [default: a sixteenth of the machine's
    /// memory, at least 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_retained_bytes: Option<usize>,
    /// Topic Alias Maximum offered to MQTT 5 clients [default: 64].
    #[arg(long, value_name = "N")]
    pub max_topic_alias: Option<u16>,
    /// Largest Session Expiry Interval granted, in seconds [default: 4294967295, never].
    #[arg(long, value_name = "SECS")]
    pub max_session_expiry: Option<u32>,
    /// New connections accepted per second on this node at most, on each listener (TCP, TLS,
    /// WebSocket, WSS) separately; past it, a connection is refused as soon as its CONNECT is
    /// read (CONNACK 0x9F "connection rate exceeded", 3.1.1 code 3) [default: unlimited].
    #[arg(long, value_name = "N")]
    pub max_connect_rate: Option<u32>,
    /// PUBLISH packets per second one client connection may send; past it (after a burst of
    /// one second's worth) the broker stops reading that connection until its budget refills,
    /// so TCP slows the client down and nothing is lost [default: unlimited].
    #[arg(long, value_name = "N")]
    pub max_client_message_rate: Option<u32>,
    /// Inbound bytes per second one client connection may send, throttled the same way
    /// [default: unlimited].
    #[arg(long, value_name = "BYTES")]
    pub max_client_byte_rate: Option<u64>,
    /// Resident memory (bytes) above which new CONNECTs are refused (v5 0x89 "server busy",
    /// 3.1.1 code 3) while existing clients keep working [default: none].
    #[arg(long, value_name = "BYTES")]
    pub max_memory: Option<u64>,
    /// Seconds a new connection has to send CONNECT [default: 10].
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    // Cluster (see docs/cluster.md). Without `etcd` the node runs alone.
    /// Name of the cluster this node joins (its keys live under /shardmq/NAME/) [default:
    /// shardmq].
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// This node's name in the cluster, unique among live nodes [default: the host name].
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// etcd endpoints, comma-separated (e.g. http://10.0.0.5:2379, or https:// with
    /// `etcd_ca`); turns clustering on.
    #[arg(long, value_name = "URL[,URL...]")]
    pub etcd: Option<String>,
    /// PEM certificate of the CA that signed etcd's certificate: TLS to etcd (https://
    /// endpoints).
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd's `--client-cert-auth` (with `etcd_key`).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of `etcd_cert`.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (etcd's `auth enable`), with `etcd_password_file`.
    #[arg(long, value_name = "NAME")]
    pub etcd_user: Option<String>,
    /// File holding `etcd_user`'s password (its first line), kept out of the command line.
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// Address the node links of peer nodes connect to [default: link_advertise; a wildcard
    /// address only when given].
    #[arg(long, value_name = "ADDR")]
    pub link_listen: Option<String>,
    /// Address peers are told to reach this node's links at [default: link_listen; one of the
    /// two is required, and this one when link_listen is a wildcard address].
    #[arg(long, value_name = "ADDR")]
    pub link_advertise: Option<String>,
    /// PEM certificate of this node for node links, signed by the cluster CA, with the node id
    /// as its common name (`shardmq link-certs` makes them).
    #[arg(long, value_name = "FILE")]
    pub link_tls_cert: Option<PathBuf>,
    /// PEM private key of `link_tls_cert`.
    #[arg(long, value_name = "FILE")]
    pub link_tls_key: Option<PathBuf>,
    /// PEM certificate of the cluster CA: peers must hold a certificate it signed.
    #[arg(long, value_name = "FILE")]
    pub link_tls_ca: Option<PathBuf>,
    /// Node links without TLS: anyone who reaches the link listener can act as a node. Only for
    /// a network nothing but the nodes can reach [default: false].
    #[arg(long, value_name = "BOOL")]
    pub link_plaintext: Option<bool>,
    /// Seconds of this node's etcd lease: a node that cannot show it alive in time stops serving
    /// its clients until it can, and its clients can be claimed by other nodes once etcd
    /// expires it [default: 10].
    #[arg(long, value_name = "SECS")]
    pub lease_ttl: Option<u64>,
    /// Milliseconds a claim waits for others to share its etcd transaction [default: 2].
    #[arg(long, value_name = "MS")]
    pub claim_batch_delay_ms: Option<u64>,
    /// Claims per etcd transaction at most, 1 to turn batching off [default: 127, the most
    /// etcd's --max-txn-ops default of 128 allows, each claim being a nested transaction].
    #[arg(long, value_name = "N")]
    pub claim_batch_max: Option<usize>,
    /// Seconds a connect waits for its claim (etcd unreachable, or a takeover) before CONNACK
    /// "server unavailable" [default: 5].
    #[arg(long, value_name = "SECS")]
    pub claim_timeout: Option<u64>,
    /// Seconds between updates of the `$SYS/broker/...` topics (Mosquitto's names), 0 for none
    /// [default: 10].
    #[arg(long, value_name = "SECS")]
    pub sys_interval: Option<u64>,
    /// Publish client events as EMQX does: QoS 0 JSON messages on
    /// `$SYS/brokers/NODE/clients/CLIENT_ID/connected`, `.../disconnected`, `.../subscribed` and
    /// `.../unsubscribed` (NODE: `node_id` in a cluster, else the host name). `--client-events`
    /// alone means true [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub client_events: Option<bool>,
    /// POST the same client events, batched as JSON arrays, to this http:// or https:// URL
    /// (EMQX webhook field names; docs/operations.md), whether or not `client_events` publishes
    /// them on `$SYS`. At most once: a full queue or a service down past the retries drops
    /// events, counted in `/metrics`. Read at start only [default: none].
    #[arg(long, value_name = "URL")]
    pub event_webhook_url: Option<String>,
    /// Events waiting for `event_webhook_url` at most; past it new events are dropped and
    /// counted [default: 4096].
    #[arg(long, value_name = "N")]
    pub event_webhook_queue_max: Option<usize>,
    /// Events per POST to `event_webhook_url` at most [default: 100].
    #[arg(long, value_name = "N")]
    pub event_webhook_batch_max: Option<usize>,
    /// Milliseconds a POST waits for more events after the first of its batch [default: 200].
    #[arg(long, value_name = "MS")]
    pub event_webhook_batch_delay_ms: Option<u64>,
    /// Address of the admin endpoint: Prometheus `/metrics`, `/health`, `/ready`, and the client
    /// API `/api/v1/clients` to list, inspect and disconnect clients (plain HTTP; the API is
    /// open to whoever reaches it unless `admin_token_file` is set: keep it on loopback or a
    /// private address). In a cluster it answers for any node's client (asking the others over
    /// the node links, 2 s at most), `?cluster=true` lists every node's, `/api/v1/cluster`
    /// shows the members [default: none].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// File holding the bearer token the client API (`/api/...`) requires, as `Authorization:
    /// Bearer <token>` (surrounding whitespace ignored; reread on SIGHUP). `/metrics`, `/health`
    /// and `/ready` stay open for scrapers and load balancers [default: none, the API is open].
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Host names the admin endpoint answers to besides IP addresses and `localhost`,
    /// comma-separated (a request naming another host gets 421: a web page rebinding its own
    /// name to this address cannot use the API) [default: none].
    #[arg(long, value_name = "NAMES")]
    pub admin_hosts: Option<String>,

    // Security (see docs/security.md).
    /// Mosquitto-format password file (`mosquitto_passwd`, or `shardmq passwd`): clients must
    /// log in with a user name and password from it.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Mosquitto-format ACL file: what each user (or anonymous client) may publish, subscribe
    /// to and receive. Without it, every client may do everything.
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// `true`: accept clients without a user name, from any address (without a password file,
    /// listen where `listen` says). `false`: refuse them. Unset: with a password file, refuse
    /// them; without one, accept them on loopback only [default: unset].
    #[arg(long, value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,
    /// `true`: a client may take over the session (online or stored) of a client id that
    /// another user's client holds, as Mosquitto allows. `false`: such a CONNECT is refused
    /// (0x87, 3.1.1 code 5) and the session left alone [default: false].
    #[arg(long, value_name = "BOOL")]
    pub session_takeover_any_user: Option<bool>,
    /// `true`: the client id is the client's user name, whatever it sent (Mosquitto's
    /// `use_username_as_clientid`); a client without one is refused (0x87) [default: false].
    #[arg(long, value_name = "BOOL")]
    pub use_username_as_clientid: Option<bool>,
    /// Failed password logins one source address (an IPv6 /64) may have in a burst, earned
    /// back at this many a minute; past them its logins are refused without a check (v5 0x9F,
    /// 3.1.1 code 3) until it earns one back. 0 turns the budget and bans off [default: 10].
    #[arg(long, value_name = "N")]
    pub max_login_failures: Option<u32>,
    /// How long a source that keeps trying while backed off (100 refused logins within 10
    /// minutes) is banned, in seconds (v5 0x8A, 3.1.1 code 5); 0 never bans [default: 600].
    #[arg(long, value_name = "SECS")]
    pub login_ban_secs: Option<u32>,
    /// An HTTP(S) authentication service, as EMQX's HTTP authenticator: each CONNECT is POSTed
    /// to it as JSON and its answer `{"result": "allow" | "deny" | "ignore"}` decides; `ignore`
    /// falls through to the password file (docs/security.md) [default: none].
    #[arg(long, value_name = "URL")]
    pub auth_http_url: Option<String>,
    /// How long one request to `auth_http_url` may take, in milliseconds [default: 2000].
    #[arg(long, value_name = "MS")]
    pub auth_http_timeout_ms: Option<u64>,
    /// Requests to `auth_http_url` in flight at most per node; more CONNECTs wait in the fair
    /// queue of checks or are refused with 0x89 "server busy" [default: 64].
    #[arg(long, value_name = "N")]
    pub auth_http_in_flight: Option<usize>,
    /// When `auth_http_url` fails (another status than 200, a timeout, no connection, garbage):
    /// `deny` refuses the CONNECT with 0x86 (3.1.1: code 4); `ignore` falls through to the
    /// password file as if it had answered `ignore` [default: deny].
    #[arg(long, value_name = "POLICY")]
    pub auth_http_failure: Option<String>,
    /// An HTTP(S) ACL service, as EMQX's HTTP authorizer: each PUBLISH topic and SUBSCRIBE
    /// filter is POSTed to it (cached) and `{"result": "allow" | "deny" | "ignore"}` decides;
    /// `ignore` falls through to the ACL file (docs/security.md) [default: none].
    #[arg(long, value_name = "URL")]
    pub acl_http_url: Option<String>,
    /// How long an answer of `acl_http_url` is cached, in seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    pub acl_http_cache_secs: Option<u64>,
    /// Answers of `acl_http_url` cached at most; the oldest go first [default: 100000].
    #[arg(long, value_name = "N")]
    pub acl_http_cache_max: Option<usize>,
    /// A JWKS file (RSA, EC P-256 and `oct` keys): a CONNECT whose password is a JWT signed by
    /// one of them (RS256, ES256, HS256) logs in as the user its claim names; reread on SIGHUP
    /// [default: none].
    #[arg(long, value_name = "FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// A file holding the HS256 secret JWTs may be signed with (one trailing newline ignored);
    /// reread on SIGHUP [default: none].
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// The JWT claim that names the user; a CONNECT that also gives a User Name must give that
    /// one [default: sub].
    #[arg(long, value_name = "CLAIM")]
    pub jwt_username_claim: Option<String>,
    /// A JWT claim `{"pub": [filters], "sub": [filters]}` that narrows what the client may
    /// publish and subscribe to, on top of the ACL file [default: none].
    #[arg(long, value_name = "CLAIM")]
    pub jwt_acl_claim: Option<String>,

    /// Retained payloads up to this many bytes are kept on every node; larger ones only on two
    /// nodes (chosen by rendezvous hashing of the topic), and fetched from there when a
    /// subscribe needs them. The same on every node of a cluster [default: 1024].
    #[arg(long, value_name = "BYTES")]
    pub retained_replicate_max: Option<usize>,

    /// Also listen for MQTT over TLS on this address (needs `tls_cert` and `tls_key`).
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<String>,

    /// The server certificate chain (PEM) for `tls_listen` and `wss_listen`; reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `tls_cert`; reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: clients must present a certificate signed by this CA (PEM); reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Take the client certificate's common name as the user name, with no password (needs
    /// `tls_client_ca`) [default: false].
    #[arg(long, value_name = "BOOL")]
    pub tls_cert_as_username: Option<bool>,

    /// Certificate revocation lists (PEM) for client certificates (needs `tls_client_ca`): a
    /// client whose certificate one revokes is refused in the handshake. Reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_crl: Option<PathBuf>,

    /// The lowest TLS version the TLS listeners accept: "1.2" or "1.3" [default: 1.2].
    #[arg(long, value_name = "VERSION")]
    pub tls_min_version: Option<String>,

    /// The cipher suites the TLS listeners offer, comma-separated, by their IANA names
    /// (TLS13_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, ...) [default:
    /// rustls' safe defaults].
    #[arg(long, value_name = "SUITES")]
    pub tls_ciphers: Option<String>,

    /// The secure WebSocket listener's own certificate chain (PEM), where it differs from
    /// `tls_cert`'s (with `wss_key`). Reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub wss_cert: Option<PathBuf>,

    /// The private key of `wss_cert`.
    #[arg(long, value_name = "FILE")]
    pub wss_key: Option<PathBuf>,

    /// Also listen for MQTT over WebSocket (subprotocol `mqtt`, any path) on this address.
    #[arg(long, value_name = "ADDR")]
    pub ws_listen: Option<String>,

    /// Also listen for MQTT over secure WebSocket (WSS; needs `tls_cert` and `tls_key`).
    #[arg(long, value_name = "ADDR")]
    pub wss_listen: Option<String>,

    /// Web pages that may open a WebSocket to the broker: their origins, comma-separated
    /// (`https://dash.example.com, http://localhost:8080`), or `*` for any. Default: pages of
    /// this host only while anonymous clients are accepted on loopback only (the default
    /// security), any page otherwise. Clients other than browsers send no origin.
    #[arg(long, value_name = "ORIGINS")]
    pub ws_allowed_origins: Option<String>,

    /// Connections to `listen` come through a load balancer that sends a PROXY protocol header
    /// (v1 or v2) first, naming the client: its address is then the client's for logs, the
    /// admin API and the failed-login budget. A connection without a valid header is closed.
    /// Only for a listener no one but the load balancer can reach [default: false].
    #[arg(long, value_name = "BOOL")]
    pub proxy_protocol: Option<bool>,

    /// `proxy_protocol` for `tls_listen` (the header comes before the TLS handshake).
    #[arg(long, value_name = "BOOL")]
    pub tls_proxy_protocol: Option<bool>,

    /// `proxy_protocol` for `ws_listen`.
    #[arg(long, value_name = "BOOL")]
    pub ws_proxy_protocol: Option<bool>,

    /// `proxy_protocol` for `wss_listen`.
    #[arg(long, value_name = "BOOL")]
    pub wss_proxy_protocol: Option<bool>,

    /// Bridges to other MQTT brokers: the config file's `[[bridge]]` tables (docs/bridges.md),
    /// read by `config/bridge.rs`. No flag sets them.
    #[arg(skip)]
    #[serde(default)]
    pub bridge: Option<Vec<toml::Value>>,
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// MQTT over TLS, WebSocket and secure WebSocket, where configured.
    pub tls_listen: Option<SocketAddr>,
    pub ws_listen: Option<SocketAddr>,
    pub wss_listen: Option<SocketAddr>,
    /// The web pages WebSocket listeners accept (`ws_allowed_origins`).
    pub ws_origins: Arc<AllowedOrigins>,
    /// Which listeners' connections start with a PROXY protocol header.
    pub proxy_protocol: ProxyProtocol,
    /// Set when a TLS listener is configured.
    pub tls: Option<TlsFiles>,
    pub shards: u16,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub log: String,
    pub log_format: LogFormat,
    /// New connections per second the node accepts at most (`None`: unlimited).
    pub connect_rate_max: Option<u32>,
    /// Resident memory above which new CONNECTs are refused.
    pub memory_max: Option<u64>,
    /// Where `/metrics`, `/health` and `/ready` are served.
    pub admin_listen: Option<SocketAddr>,
    /// `admin_hosts`: names the admin endpoint answers to beyond IP addresses and `localhost`.
    pub admin_hosts: Vec<String>,
    /// The file of the bearer token the client API requires (read at start and on SIGHUP).
    pub admin_token_file: Option<PathBuf>,
    /// How often `$SYS` topics are published (`None`: never).
    pub sys_interval: Option<Duration>,
    /// With `client_events` on: the node name its events are published under
    /// (`$SYS/brokers/<node>/clients/...`). `None`: no events.
    pub client_events: Option<String>,
    /// Where client events are POSTed (`event_webhook_url`), and how.
    pub event_webhook: Option<EventWebhookConfig>,
    pub limits: Limits,
    /// Set when the node joins a cluster (`etcd` given).
    pub cluster: Option<ClusterConfig>,
    pub security: Security,
    /// Bridges to other brokers (`[[bridge]]`).
    pub bridges: Vec<BridgeConfig>,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

/// Who may connect: the password file, the ACL, and whether anonymous clients are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// Clients without a user name are accepted (on loopback only when `loopback_only`).
    pub allow_anonymous: bool,
    /// No authentication and no explicit `allow_anonymous`: the MQTT listener is loopback only.
    pub loopback_only: bool,
    /// `use_username_as_clientid`.
    pub username_as_client_id: bool,
    /// `max_login_failures` (0: no budget).
    pub login_failures_max: u32,
    /// `login_ban_secs`.
    pub login_ban: std::time::Duration,
    /// Client certificates name their users (`tls_client_ca` with `tls_cert_as_username`): users
    /// are told apart even without a password file or an ACL.
    pub users_from_certificates: bool,
    /// The HTTP authentication service and JWT logins.
    pub services: AuthServices,
}

/// The authentication services besides the password file: an HTTP service and JWTs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthServices {
    pub auth_http_url: Option<String>,
    pub auth_http_timeout: Duration,
    pub auth_http_in_flight: usize,
    /// `auth_http_failure = "ignore"`: a failed service falls through instead of refusing.
    pub auth_http_failure_ignore: bool,
    pub acl_http_url: Option<String>,
    pub acl_http_cache_ttl: Duration,
    pub acl_http_cache_max: usize,
    pub jwt_jwks_file: Option<PathBuf>,
    pub jwt_secret_file: Option<PathBuf>,
    pub jwt_username_claim: String,
    pub jwt_acl_claim: Option<String>,
}

impl AuthServices {
    /// Whether anything besides the password file authenticates users.
    pub fn any(&self) -> bool {
        self.auth_http_url.is_some() || self.jwt()
    }

    /// Whether JWT logins are configured.
    pub fn jwt(&self) -> bool {
        self.jwt_jwks_file.is_some() || self.jwt_secret_file.is_some()
    }
}

impl Security {
    /// One line for the start-up log: who may connect.
    pub fn describe(&self) -> String {
        let anonymous = match (self.allow_anonymous, self.loopback_only) {
            (_, true) => {
                "no authentication configured: anonymous clients on loopback only \
                          (set `password_file`, or `allow_anonymous = true` to accept them from \
                          other hosts)"
            }
            (true, false) => "anonymous clients accepted (`allow_anonymous = true`)",
            (false, false) => "anonymous clients refused",
        };
        let passwords = match &self.password_file {
            Some(path) => format!("password file {}; ", path.display()),
            None => String::new(),
        };
        let acl = match &self.acl_file {
            Some(path) => format!("; ACL {}", path.display()),
            None => String::new(),
        };
        let mut services = String::new();
        if let Some(url) = &self.services.auth_http_url {
            services.push_str(&format!("; HTTP authentication {url}"));
        }
        if self.services.jwt() {
            services.push_str("; JWT logins");
        }
        format!("{passwords}{anonymous}{acl}{services}")
    }
}

/// How a node joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub node_id: String,
    pub etcd: Vec<String>,
    pub link_listen: SocketAddr,
    pub link_advertise: SocketAddr,
    /// TLS on node links (`None`: plaintext, configured so with `link_plaintext`).
    pub link_tls: Option<LinkTlsFiles>,
    /// TLS and a user for etcd.
    pub etcd_access: EtcdAccessFiles,
    pub lease_ttl: Duration,
    pub claim_batch_delay: Duration,
    pub claim_batch_max: usize,
    pub claim_timeout: Duration,
    pub retained_replicate_bytes_max: usize,
}

/// Where the files for etcd's TLS and user are (read when the node joins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdAccessFiles {
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// User name and the file holding its password.
    pub user: Option<(String, PathBuf)>,
}

/// A configuration error: one line, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ServeArgs {
    /// Resolves flags over the file over the defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ServeArgs::default(),
        };
        let merged = self.over(file);
        merged.into_config()
    }

    /// Each field of `self` if given, else the file's.
    fn over(self, file: ServeArgs) -> ServeArgs {
        macro_rules! pick {
            ($($field:ident),*) => { ServeArgs { config: self.config, $($field: self.$field.or(file.$field)),* } };
        }
        pick!(
            listen,
            shards,
            data_dir,
            durability,
            log,
            log_format,
            max_keepalive,
            max_connections,
            max_packet_size,
            max_inflight,
            max_queued_messages,
            max_queued_bytes,
            max_output_buffer,
            max_topic_levels,
            max_subscriptions,
            max_subscription_bytes,
            max_retained_messages,
            max_retained_payload,
            max_retained_bytes,
            max_topic_alias,
            max_session_expiry,
            connect_timeout,
            max_connect_rate,
            max_client_message_rate,
            max_client_byte_rate,
            max_memory,
            admin_listen,
            admin_hosts,
            admin_token_file,
            sys_interval,
            client_events,
            event_webhook_url,
            event_webhook_queue_max,
            event_webhook_batch_max,
            event_webhook_batch_delay_ms,
            cluster,
            node_id,
            etcd,
            etcd_ca,
            etcd_cert,
            etcd_key,
            etcd_user,
            etcd_password_file,
            link_listen,
            link_advertise,
            link_tls_cert,
            link_tls_key,
            link_tls_ca,
            link_plaintext,
            lease_ttl,
            claim_batch_delay_ms,
            claim_batch_max,
            claim_timeout,
            retained_replicate_max,
            password_file,
            acl_file,
            allow_anonymous,
            session_takeover_any_user,
            use_username_as_clientid,
            max_login_failures,
            login_ban_secs,
            auth_http_url,
            auth_http_timeout_ms,
            auth_http_in_flight,
            auth_http_failure,
            acl_http_url,
            acl_http_cache_secs,
            acl_http_cache_max,
            jwt_jwks_file,
            jwt_secret_file,
            jwt_username_claim,
            jwt_acl_claim,
            tls_listen,
            tls_cert,
            tls_key,
            tls_client_ca,
            tls_cert_as_username,
            tls_crl,
            tls_min_version,
            tls_ciphers,
            wss_cert,
            wss_key,
            ws_listen,
            wss_listen,
            ws_allowed_origins,
            proxy_protocol,
            tls_proxy_protocol,
            ws_proxy_protocol,
            wss_proxy_protocol,
            bridge
        )
    }

    /// Which listeners take PROXY headers; the key of a listener that is not configured is an
    /// error (it would silently do nothing).
    fn proxy_protocol(
        &self,
        tls_listen: Option<SocketAddr>,
        ws_listen: Option<SocketAddr>,
        wss_listen: Option<SocketAddr>,
    ) -> Result<ProxyProtocol, ConfigError> {
        let on = |key: &str,
                  value: Option<bool>,
                  listener: Option<SocketAddr>,
                  listen_key: &str| {
            match (value.unwrap_or(false), listener) {
                (true, None) => Err(ConfigError(format!(
                    "`{key}` is set but `{listen_key}` is not: there is no such listener"
                ))),
                (on, _) => Ok(on),
            }
        };
        Ok(ProxyProtocol {
            mqtt: self.proxy_protocol.unwrap_or(false),
            tls: on("tls_proxy_protocol", self.tls_proxy_protocol, tls_listen, "tls_listen")?,
            ws: on("ws_proxy_protocol", self.ws_proxy_protocol, ws_listen, "ws_listen")?,
            wss: on("wss_proxy_protocol", self.wss_proxy_protocol, wss_listen, "wss_listen")?,
        })
    }

    fn into_config(self) -> Result<Config, ConfigError> {
        let listen = self.listen_address()?;
        let shards = self.shard_count()?;
        let durability = self.storage_durability()?;
        let limits = self.limits()?;
        let cluster = self.cluster_config()?;
        let client_events = self.client_events_node(cluster.as_ref());
        let event_webhook = self.event_webhook(cluster.as_ref())?;
        let log_format = self.log_line_format()?;
        let mut security = self.security(self.auth_services()?);
        let Listeners { listen, tls_listen, ws_listen, wss_listen, tls } =
            self.listeners(listen, &mut security)?;
        let admin_listen = self.admin_address()?;
        self.check_rates_and_memory()?;
        let ws_origins = Arc::new(ws_origins(self.ws_allowed_origins.as_deref(), &security)?);
        let proxy_protocol = self.proxy_protocol(tls_listen, ws_listen, wss_listen)?;
        let admin_hosts = self.admin_host_names();
        let bridges = self.bridge_configs(cluster.as_ref())?;
        Ok(Config {
            listen,
            tls_listen,
            ws_listen,
            wss_listen,
            ws_origins,
            proxy_protocol,
            tls,
            shards,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            durability,
            log: self.log.unwrap_or_else(|| "info".to_string()),
            log_format,
            connect_rate_max: self.max_connect_rate,
            memory_max: self.max_memory,
            admin_listen,
            admin_hosts,
            admin_token_file: self.admin_token_file,
            sys_interval: Some(self.sys_interval.unwrap_or(10))
                .filter(|&secs| secs > 0)
                .map(Duration::from_secs),
            client_events,
            event_webhook,
            limits,
            cluster,
            security,
            bridges,
        })
    }

    /// The `[[bridge]]` tables. In a cluster each runs on one node (docs/bridges.md); the
    /// default client id names the node.
    fn bridge_configs(
        &self,
        cluster: Option<&ClusterConfig>,
    ) -> Result<Vec<BridgeConfig>, ConfigError> {
        let tables = self.bridge.as_deref().unwrap_or_default();
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let node = match cluster {
            Some(cluster) => cluster.node_id.clone(),
            None => self.node_id.clone().unwrap_or_else(host_name),
        };
        bridge::bridges(tables, &node).map_err(ConfigError)
    }

    /// The MQTT listener's address: `listen`, or the wildcard address. [`ServeArgs::listeners`]
    /// narrows it to loopback when no authentication is configured.
    fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        let listen = self.listen.as_deref().unwrap_or("0.0.0.0:1883");
        listen.parse().map_err(|error| {
            ConfigError(format!(
                "invalid value for `listen`: {listen:?} ({error}); expected IP:PORT"
            ))
        })
    }

    /// The shard count: `shards`, or one shard per online core.
    fn shard_count(&self) -> Result<u16, ConfigError> {
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = self.shards.unwrap_or(u16::try_from(online).unwrap_or(u16::MAX));
        at_least("shards", u64::from(shards), 1)?;
        Ok(shards)
    }

    /// The storage durability: `durability`, or `immediate`.
    fn storage_durability(&self) -> Result<Durability, ConfigError> {
        match self.durability.as_deref().unwrap_or("immediate") {
            "immediate" => Ok(Durability::Immediate),
            "none" => Ok(Durability::None),
            other => Err(ConfigError(format!(
                "invalid value for `durability`: {other:?}; expected \"immediate\" or \"none\""
            ))),
        }
    }

    /// The per-client and per-node limits: each key given, or the shard's default.
    fn limits(&self) -> Result<Limits, ConfigError> {
        let defaults = Limits::default();
        let limits = Limits {
            packet_bytes_max: self.max_packet_size.unwrap_or(defaults.packet_bytes_max),
            inflight_max: self.max_inflight.unwrap_or(defaults.inflight_max),
            queued_messages_max: self.max_queued_messages.unwrap_or(defaults.queued_messages_max),
            queued_bytes_max: self.max_queued_bytes.unwrap_or(defaults.queued_bytes_max),
            out_buffer_bytes_max: self.max_output_buffer.unwrap_or(defaults.out_buffer_bytes_max),
            keepalive_secs_max: self.max_keepalive.unwrap_or(defaults.keepalive_secs_max),
            topic_alias_max: self.max_topic_alias.unwrap_or(defaults.topic_alias_max),
            topic_levels_max: self.max_topic_levels.unwrap_or(defaults.topic_levels_max),
            subscriptions_per_client_max: self
                .max_subscriptions
                .unwrap_or(defaults.subscriptions_per_client_max),
            subscription_bytes_per_client_max: self
                .max_subscription_bytes
                .unwrap_or(defaults.subscription_bytes_per_client_max),
            retained_messages_max: self
                .max_retained_messages
                .unwrap_or(defaults.retained_messages_max),
            retained_payload_bytes_max: self
                .max_retained_payload
                .unwrap_or(defaults.retained_payload_bytes_max),
            retained_bytes_max: self.max_retained_bytes.unwrap_or_else(retained_bytes_default),
            session_expiry_secs_max: self
                .max_session_expiry
                .unwrap_or(defaults.session_expiry_secs_max),
            connections_max: self.max_connections.unwrap_or(defaults.connections_max),
            connect_timeout: self
                .connect_timeout
                .map_or(defaults.connect_timeout, Duration::from_secs),
            client_messages_per_sec_max: self.max_client_message_rate,
            client_bytes_per_sec_max: self.max_client_byte_rate,
            session_takeover_any_user: self.session_takeover_any_user.unwrap_or(false),
        };
        // The smallest packet that can carry a CONNACK with its properties, and a PUBLISH.
        at_least("max_packet_size", u64::from(limits.packet_bytes_max), 64)?;
        at_least("max_inflight", u64::from(limits.inflight_max), 1)?;
        at_least("max_keepalive", u64::from(limits.keepalive_secs_max), 1)?;
        at_least("max_topic_levels", limits.topic_levels_max as u64, 1)?;
        at_least("max_output_buffer", limits.out_buffer_bytes_max as u64, 1024)?;
        at_least("connect_timeout", limits.connect_timeout.as_secs(), 1)?;
        Ok(limits)
    }

    /// How log lines are written: `log_format`, or `human`.
    fn log_line_format(&self) -> Result<LogFormat, ConfigError> {
        match self.log_format.as_deref().unwrap_or("human") {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError(format!(
                "invalid value for `log_format`: {other:?}; expected \"human\" or \"json\""
            ))),
        }
    }

    /// Who may connect. `users_from_certificates` starts false: [`ServeArgs::listeners`] sets it
    /// once the TLS files are known.
    fn security(&self, services: AuthServices) -> Security {
        // Any authentication configured lifts the loopback-only default, as a password file does.
        let unauthenticated = self.password_file.is_none() && !services.any();
        Security {
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            allow_anonymous: self.allow_anonymous.unwrap_or(unauthenticated),
            loopback_only: unauthenticated && self.allow_anonymous.is_none(),
            username_as_client_id: self.use_username_as_clientid.unwrap_or(false),
            login_failures_max: self.max_login_failures.unwrap_or(10),
            login_ban: std::time::Duration::from_secs(u64::from(
                self.login_ban_secs.unwrap_or(600),
            )),
            users_from_certificates: false,
            services,
        }
    }

    /// The HTTP authentication service and JWT keys, checked: a URL must be http:// or
    /// https://, a timeout and an in-flight bound at least 1, the failure policy a known word.
    fn auth_services(&self) -> Result<AuthServices, ConfigError> {
        for (key, url) in
            [("auth_http_url", &self.auth_http_url), ("acl_http_url", &self.acl_http_url)]
        {
            let Some(url) = url else { continue };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "invalid value for `{key}`: {url:?}; expected an http:// or https:// URL"
                )));
            }
        }
        let cache_max = self.acl_http_cache_max.unwrap_or(100_000);
        at_least("acl_http_cache_max", cache_max as u64, 1)?;
        let timeout_ms = self.auth_http_timeout_ms.unwrap_or(2000);
        at_least("auth_http_timeout_ms", timeout_ms, 1)?;
        let in_flight = self.auth_http_in_flight.unwrap_or(64);
        at_least("auth_http_in_flight", in_flight as u64, 1)?;
        let failure_ignore = match self.auth_http_failure.as_deref().unwrap_or("deny") {
            "deny" => false,
            "ignore" => true,
            other => {
                return Err(ConfigError(format!(
                "invalid value for `auth_http_failure`: {other:?}; expected \"deny\" or \"ignore\""
            )))
            }
        };
        Ok(AuthServices {
            auth_http_url: self.auth_http_url.clone(),
            auth_http_timeout: Duration::from_millis(timeout_ms),
            auth_http_in_flight: in_flight,
            auth_http_failure_ignore: failure_ignore,
            acl_http_url: self.acl_http_url.clone(),
            acl_http_cache_ttl: Duration::from_secs(self.acl_http_cache_secs.unwrap_or(60)),
            acl_http_cache_max: cache_max,
            jwt_jwks_file: self.jwt_jwks_file.clone(),
            jwt_secret_file: self.jwt_secret_file.clone(),
            jwt_username_claim: self.jwt_username_claim.clone().unwrap_or_else(|| "sub".into()),
            jwt_acl_claim: self.jwt_acl_claim.clone(),
        })
    }

    /// The client listeners and their TLS files, checked against `security`: without
    /// authentication a listener takes loopback only, unless client certificates name the users.
    /// Sets `security.users_from_certificates`, which depends on the TLS files.
    fn listeners(
        &self,
        listen: SocketAddr,
        security: &mut Security,
    ) -> Result<Listeners, ConfigError> {
        let listen = secure_listen("listen", listen, security, self.listen.is_some())?;
        let tls = self.tls_files()?;
        // A client certificate that names its user authenticates: such mutual TLS listeners
        // may face other hosts. (A certificate alone, with user names the clients pick, does
        // not: the loopback-only rule stays.)
        let mutual =
            tls.as_ref().is_some_and(|tls| tls.client_ca.is_some() && tls.certificate_as_username);
        security.users_from_certificates = mutual;
        let security = &*security;
        let extra = |key: &str, text: &Option<String>, authenticated: bool| {
            let Some(text) = text else { return Ok(None) };
            let address = text.parse::<SocketAddr>().map_err(|error| {
                ConfigError(format!(
                    "invalid value for `{key}`: {text:?} ({error}); expected IP:PORT"
                ))
            })?;
            if authenticated {
                return Ok(Some(address));
            }
            secure_listen(key, address, security, true).map(Some)
        };
        let tls_listen = extra("tls_listen", &self.tls_listen, mutual)?;
        let ws_listen = extra("ws_listen", &self.ws_listen, false)?;
        let wss_listen = extra("wss_listen", &self.wss_listen, mutual)?;
        if tls.is_none() {
            for (key, given) in [("tls_listen", tls_listen), ("wss_listen", wss_listen)] {
                if given.is_some() {
                    return Err(ConfigError(format!(
                        "`{key}` is set but `tls_cert` and `tls_key` are not"
                    )));
                }
            }
        }
        Ok(Listeners { listen, tls_listen, ws_listen, wss_listen, tls })
    }

    /// The admin endpoint's address: `admin_listen`, or none (no admin endpoint). A token
    /// without an endpoint is an error: the operator would believe an API is guarded
    /// that is not served. (The token file itself is read by the server, at start and on SIGHUP.)
    fn admin_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let listen = match self.admin_listen.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|error| {
                ConfigError(format!(
                    "invalid value for `admin_listen`: {text:?} ({error}); expected IP:PORT"
                ))
            })?),
        };
        if listen.is_none() && self.admin_token_file.is_some() {
            return Err(ConfigError(
                "`admin_token_file` is set but `admin_listen` is not: there is no admin API to \
                 guard"
                    .into(),
            ));
        }
        Ok(listen)
    }

    /// Checks that the optional rate and memory limits, where given, are at least their minimum.
    fn check_rates_and_memory(&self) -> Result<(), ConfigError> {
        if let Some(rate) = self.max_connect_rate {
            at_least("max_connect_rate", u64::from(rate), 1)?;
        }
        if let Some(rate) = self.max_client_message_rate {
            at_least("max_client_message_rate", u64::from(rate), 1)?;
        }
        if let Some(rate) = self.max_client_byte_rate {
            at_least("max_client_byte_rate", rate, 1)?;
        }
        if let Some(bytes) = self.max_memory {
            at_least("max_memory", bytes, 1 << 20)?;
        }
        Ok(())
    }

    /// The `admin_hosts` list: comma-separated names, blanks dropped.
    fn admin_host_names(&self) -> Vec<String> {
        self.admin_hosts
            .as_deref()
            .map(|text| {
                text.split(',').map(str::trim).filter(|h| !h.is_empty()).map(String::from).collect()
            })
            .unwrap_or_default()
    }

    fn tls_files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let as_username = self.tls_cert_as_username.unwrap_or(false);
        let (certificate, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(certificate), Some(key)) => (certificate.clone(), key.clone()),
            (None, None) => {
                for (key, given) in [
                    ("tls_client_ca", self.tls_client_ca.is_some()),
                    ("tls_cert_as_username", as_username),
                    ("tls_crl", self.tls_crl.is_some()),
                    ("tls_min_version", self.tls_min_version.is_some()),
                    ("tls_ciphers", self.tls_ciphers.is_some()),
                    ("wss_cert", self.wss_cert.is_some()),
                ] {
                    if given {
                        return Err(ConfigError(format!(
                            "`{key}` is set but `tls_cert` and `tls_key` are not"
                        )));
                    }
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(ConfigError("`tls_cert` is set but `tls_key` is not".into()))
            }
            (None, Some(_)) => {
                return Err(ConfigError("`tls_key` is set but `tls_cert` is not".into()))
            }
        };
        if as_username && self.tls_client_ca.is_none() {
            return Err(ConfigError(
                "`tls_cert_as_username` needs `tls_client_ca` (client certificates are not \
                 asked for without it)"
                    .into(),
            ));
        }
        Ok(Some(TlsFiles {
            certificate,
            key,
            client_ca: self.tls_client_ca.clone(),
            certificate_as_username: as_username,
            policy: self.tls_policy()?,
            wss_certificate: self.wss_certificate()?,
        }))
    }

    /// `tls_crl`, `tls_min_version` and `tls_ciphers`.
    fn tls_policy(&self) -> Result<TlsPolicy, ConfigError> {
        if self.tls_crl.is_some() && self.tls_client_ca.is_none() {
            return Err(ConfigError(
                "`tls_crl` needs `tls_client_ca` (it revokes client certificates)".into(),
            ));
        }
        let min_version = match self.tls_min_version.as_deref().map(str::trim) {
            None | Some("1.2") => TlsVersion::V1_2,
            Some("1.3") => TlsVersion::V1_3,
            Some(other) => {
                return Err(ConfigError(format!(
                    "invalid value for `tls_min_version`: {other:?}; expected \"1.2\" or \"1.3\""
                )))
            }
        };
        let cipher_suites: Vec<String> = self
            .tls_ciphers
            .as_deref()
            .map(|text| {
                text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            })
            .unwrap_or_default();
        let known = shardmq_io::transport::tls_cipher_suite_names();
        if let Some(unknown) = cipher_suites.iter().find(|name| !known.contains(name)) {
            return Err(ConfigError(format!(
                "invalid value for `tls_ciphers`: unknown cipher suite {unknown:?} (known: {})",
                known.join(", ")
            )));
        }
        Ok(TlsPolicy { crl: self.tls_crl.clone(), min_version, cipher_suites })
    }

    /// `wss_cert` and `wss_key`: both or neither, and only with `wss_listen`.
    fn wss_certificate(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (&self.wss_cert, &self.wss_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError("`wss_cert` is set but `wss_key` is not".into())),
            (None, Some(_)) => Err(ConfigError("`wss_key` is set but `wss_cert` is not".into())),
            (Some(_), Some(_)) if self.wss_listen.is_none() => {
                Err(ConfigError("`wss_cert` is set but `wss_listen` is not".into()))
            }
            (Some(certificate), Some(key)) => Ok(Some((certificate.clone(), key.clone()))),
        }
    }

    fn cluster_config(&self) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(etcd) = &self.etcd else {
            for (key, given) in [
                ("cluster", self.cluster.is_some()),
                ("node_id", self.node_id.is_some()),
                ("link_listen", self.link_listen.is_some()),
                ("link_advertise", self.link_advertise.is_some()),
                ("link_tls_cert", self.link_tls_cert.is_some()),
                ("link_tls_key", self.link_tls_key.is_some()),
                ("link_tls_ca", self.link_tls_ca.is_some()),
                ("link_plaintext", self.link_plaintext.is_some()),
                ("etcd_ca", self.etcd_ca.is_some()),
                ("etcd_cert", self.etcd_cert.is_some()),
                ("etcd_key", self.etcd_key.is_some()),
                ("etcd_user", self.etcd_user.is_some()),
                ("etcd_password_file", self.etcd_password_file.is_some()),
            ] {
                if given {
                    return Err(ConfigError(format!(
                        "`{key}` is set but `etcd` is not: a cluster needs etcd endpoints"
                    )));
                }
            }
            return Ok(None);
        };
        let endpoints: Vec<String> =
            etcd.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
        if endpoints.is_empty() {
            return Err(ConfigError("invalid value for `etcd`: no endpoint given".into()));
        }
        let name = self.cluster.clone().unwrap_or_else(|| "shardmq".to_string());
        if !valid_name(&name) {
            return Err(ConfigError(format!(
                "invalid value for `cluster`: {name:?}; use letters, digits, '-', '_' and '.'"
            )));
        }
        let node_id = self.node_id.clone().unwrap_or_else(host_name);
        if !valid_name(&node_id) {
            return Err(ConfigError(format!(
                "invalid value for `node_id`: {node_id:?}; use letters, digits, '-', '_' and '.'"
            )));
        }
        let (link_listen, link_advertise) = self.link_addresses()?;
        let link_tls = self.link_tls()?;
        let etcd_access = self.etcd_access(&endpoints)?;
        let lease_ttl = self.lease_ttl.unwrap_or(10);
        at_least("lease_ttl", lease_ttl, 2)?;
        let claim_batch_max = self.claim_batch_max.unwrap_or(TXN_OPS_MAX);
        at_least("claim_batch_max", claim_batch_max as u64, 1)?;
        if claim_batch_max > TXN_OPS_MAX {
            return Err(ConfigError(format!(
                "invalid value for `claim_batch_max`: {claim_batch_max}; at most {TXN_OPS_MAX} \
                 (each claim is a transaction nested in the one sent, and etcd refuses more than \
                 128 operations in one by default)"
            )));
        }
        let claim_timeout = self.claim_timeout.unwrap_or(5);
        at_least("claim_timeout", claim_timeout, 1)?;
        Ok(Some(ClusterConfig {
            name,
            node_id,
            etcd: endpoints,
            link_listen,
            link_advertise,
            link_tls,
            etcd_access,
            lease_ttl: Duration::from_secs(lease_ttl),
            claim_batch_delay: Duration::from_millis(self.claim_batch_delay_ms.unwrap_or(2)),
            claim_batch_max,
            claim_timeout: Duration::from_secs(claim_timeout),
            retained_replicate_bytes_max: self.retained_replicate_max.unwrap_or(1024),
        }))
    }
}

impl ServeArgs {
    /// With `client_events` on, the node name its events are published under.
    fn client_events_node(&self, cluster: Option<&ClusterConfig>) -> Option<String> {
        self.client_events.unwrap_or(false).then(|| event_node(cluster))
    }

    /// `event_webhook_url` and its keys, checked: the URL http:// or https://, the bounds at
    /// least 1. A key without the URL is an error: it would silently do nothing.
    fn event_webhook(
        &self,
        cluster: Option<&ClusterConfig>,
    ) -> Result<Option<EventWebhookConfig>, ConfigError> {
        let Some(url) = &self.event_webhook_url else {
            for (key, given) in [
                ("event_webhook_queue_max", self.event_webhook_queue_max.is_some()),
                ("event_webhook_batch_max", self.event_webhook_batch_max.is_some()),
                ("event_webhook_batch_delay_ms", self.event_webhook_batch_delay_ms.is_some()),
            ] {
                if given {
                    return Err(ConfigError(format!(
                        "`{key}` is set but `event_webhook_url` is not"
                    )));
                }
            }
            return Ok(None);
        };
        let scheme = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        if scheme.is_none_or(str::is_empty) {
            return Err(ConfigError(format!(
                "invalid value for `event_webhook_url`: {url:?}; expected an http:// or https:// URL"
            )));
        }
        let queue_max = self.event_webhook_queue_max.unwrap_or(4096);
        at_least("event_webhook_queue_max", queue_max as u64, 1)?;
        let batch_max = self.event_webhook_batch_max.unwrap_or(100);
        at_least("event_webhook_batch_max", batch_max as u64, 1)?;
        Ok(Some(EventWebhookConfig {
            url: url.clone(),
            node: event_node(cluster),
            queue_max,
            batch_max,
            batch_delay: Duration::from_millis(self.event_webhook_batch_delay_ms.unwrap_or(200)),
        }))
    }

    /// Where the link listener binds and what peers are told: the advertised address by
    /// default (a wildcard only when given), and one of the two is needed.
    fn link_addresses(&self) -> Result<(SocketAddr, SocketAddr), ConfigError> {
        let address = |key: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|error| {
                ConfigError(format!(
                    "invalid value for `{key}`: {text:?} ({error}); expected IP:PORT"
                ))
            })
        };
        let listen = self.link_listen.as_deref().map(|text| address("link_listen", text));
        let advertise = self.link_advertise.as_deref().map(|text| address("link_advertise", text));
        match (listen.transpose()?, advertise.transpose()?) {
            (Some(listen), Some(advertise)) => Ok((listen, advertise)),
            (None, Some(advertise)) => Ok((advertise, advertise)),
            (Some(listen), None) if listen.ip().is_unspecified() => Err(ConfigError(format!(
                "`link_advertise` is needed: `link_listen` {listen} is a wildcard address peers \
                 cannot connect to"
            ))),
            (Some(listen), None) => Ok((listen, listen)),
            (None, None) => Err(ConfigError(
                "`link_advertise` is needed: the address peers reach this node's links at (the \
                 link listener binds it)"
                    .into(),
            )),
        }
    }

    /// etcd's TLS (its CA, with https:// endpoints; a client certificate with its key) and user.
    fn etcd_access(&self, endpoints: &[String]) -> Result<EtcdAccessFiles, ConfigError> {
        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        match (&self.etcd_ca, https) {
            (None, 0) => {}
            (None, _) => {
                return Err(ConfigError(
                    "`etcd` has https:// endpoints: `etcd_ca` is needed (the CA of etcd's \
                     certificate)"
                        .into(),
                ))
            }
            (Some(_), n) if n != endpoints.len() => {
                return Err(ConfigError(
                    "`etcd_ca` is set: every `etcd` endpoint must be https://".into(),
                ))
            }
            (Some(_), _) => {}
        }
        let identity = match (&self.etcd_cert, &self.etcd_key) {
            (Some(_), Some(_)) if self.etcd_ca.is_none() => {
                return Err(ConfigError("`etcd_cert` needs `etcd_ca` (TLS to etcd)".into()))
            }
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError("`etcd_cert` needs `etcd_key`".into())),
            (None, Some(_)) => return Err(ConfigError("`etcd_key` needs `etcd_cert`".into())),
        };
        let user = match (&self.etcd_user, &self.etcd_password_file) {
            (Some(user), Some(file)) => Some((user.clone(), file.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError("`etcd_user` needs `etcd_password_file`".into()))
            }
            (None, Some(_)) => {
                return Err(ConfigError("`etcd_password_file` needs `etcd_user`".into()))
            }
        };
        Ok(EtcdAccessFiles { ca: self.etcd_ca.clone(), identity, user })
    }

    /// Link TLS from its three files, or plaintext links when `link_plaintext` says so.
    fn link_tls(&self) -> Result<Option<LinkTlsFiles>, ConfigError> {
        let plaintext = self.link_plaintext.unwrap_or(false);
        match (&self.link_tls_cert, &self.link_tls_key, &self.link_tls_ca) {
            (Some(certificate), Some(key), Some(ca)) if !plaintext => Ok(Some(LinkTlsFiles {
                certificate: certificate.clone(),
                key: key.clone(),
                ca: ca.clone(),
            })),
            (None, None, None) if plaintext => Ok(None),
            (None, None, None) => Err(ConfigError(
                "node links need TLS: set `link_tls_cert`, `link_tls_key` and `link_tls_ca` \
                 (`shardmq link-certs` makes them), or `link_plaintext = true` on a network only \
                 the nodes can reach"
                    .into(),
            )),
            _ if plaintext => {
                Err(ConfigError("`link_plaintext` is set with link TLS files: choose one".into()))
            }
            _ => {
                let missing = [
                    ("link_tls_cert", self.link_tls_cert.is_none()),
                    ("link_tls_key", self.link_tls_key.is_none()),
                    ("link_tls_ca", self.link_tls_ca.is_none()),
                ];
                let missing: Vec<&str> =
                    missing.iter().filter(|(_, absent)| *absent).map(|(key, _)| *key).collect();
                Err(ConfigError(format!(
                    "link TLS needs `link_tls_cert`, `link_tls_key` and `link_tls_ca`: `{}` is \
                     missing",
                    missing.join("`, `")
                )))
            }
        }
    }
}

/// The node name client events carry: the node id in a cluster, the host name on a single node
/// (`shardmq` when the host name is not a valid name), so that it is one topic level.
fn event_node(cluster: Option<&ClusterConfig>) -> String {
    match cluster {
        Some(cluster) => cluster.node_id.clone(),
        None => {
            Some(host_name()).filter(|name| valid_name(name)).unwrap_or_else(|| "shardmq".into())
        }
    }
}

/// Where and how client events are POSTed (`event_webhook_*`; docs/operations.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWebhookConfig {
    pub url: String,
    /// The `node` field of every event.
    pub node: String,
    /// Events waiting at most (the batch being sent aside).
    pub queue_max: usize,
    /// Events per POST at most.
    pub batch_max: usize,
    /// How long a batch waits for more events after its first.
    pub batch_delay: Duration,
}

/// Whether `text` may name a cluster or a node: letters, digits, `-`, `_` and `.`, at most 128
/// bytes (it is part of etcd keys and of `$SYS` topics).
fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The host's name (empty when it cannot be read).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|host| host.trim().to_string())
        .unwrap_or_default()
}

/// `max_retained_bytes` by default: a sixteenth of the machine's memory (`MemTotal` in
/// /proc/meminfo), at least 64 MiB; 1 GiB where /proc cannot be read.
fn retained_bytes_default() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib.saturating_mul(1024))
    });
    total.map_or(1 << 30, |total| (total / 16).max(64 << 20))
}

/// `ws_allowed_origins`, or its default: pages of this host only while anonymous clients are
/// accepted on loopback only, any page otherwise (the broker's authentication protects it).
fn ws_origins(text: Option<&str>, security: &Security) -> Result<AllowedOrigins, ConfigError> {
    let Some(text) = text else {
        return Ok(if security.loopback_only {
            AllowedOrigins::Loopback
        } else {
            AllowedOrigins::Any
        });
    };
    let origins: Vec<&str> = text.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    if origins == ["*"] {
        return Ok(AllowedOrigins::Any);
    }
    for origin in &origins {
        let valid = origin.split_once("://").is_some_and(|(scheme, host)| {
            matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
        });
        if !valid {
            return Err(ConfigError(format!(
                "invalid value for `ws_allowed_origins`: {origin:?}; expected origins such as \
                 https://dash.example.com, comma-separated, or `*` alone"
            )));
        }
    }
    if origins.is_empty() {
        return Err(ConfigError("`ws_allowed_origins` is empty: name origins, or `*`".into()));
    }
    Ok(AllowedOrigins::Only(origins.into_iter().map(String::from).collect()))
}

/// Secure by default, like Mosquitto 2: without authentication, and without `allow_anonymous`
/// set, the MQTT listener takes loopback only. The default wildcard address is narrowed to
/// 127.0.0.1; an address given that is neither loopback nor a wildcard is refused.
fn secure_listen(
    key: &str,
    listen: SocketAddr,
    security: &Security,
    given: bool,
) -> Result<SocketAddr, ConfigError> {
    if !security.loopback_only || listen.ip().is_loopback() {
        return Ok(listen);
    }
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            return Ok(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, listen.port())))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            return Ok(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port())))
        }
        _ => {}
    }
    let origin = if given { "" } else { " (the default)" };
    Err(ConfigError(format!(
        "`{key}` {listen}{origin} is not a loopback address and no authentication is \
         configured: set `password_file`, or `allow_anonymous = true` to accept anonymous \
         clients from other hosts"
    )))
}

fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError(format!(
            "invalid value for `{key}`: {value}; it must be at least {min}"
        )));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError(format!("cannot read config file {}: {error}", path.display()))
    })?;
    toml::from_str(&text).map_err(|error| {
        let line =
            error.span().map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let at = line.map(|line| format!(" line {line}")).unwrap_or_default();
        ConfigError(format!("config file {}{at}: {}", path.display(), error.message().trim()))
    })
}

/// Which listeners' connections start with a PROXY protocol header (`proxy_protocol`,
/// `tls_proxy_protocol`, `ws_proxy_protocol`, `wss_proxy_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    pub mqtt: bool,
    pub tls: bool,
    pub ws: bool,
    pub wss: bool,
}

/// The client listeners of a [`Config`] and the TLS files they use, resolved together by
/// [`ServeArgs::listeners`] because whether a listener may face other hosts depends on TLS.
struct Listeners {
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
    ws_listen: Option<SocketAddr>,
    wss_listen: Option<SocketAddr>,
    tls: Option<TlsFiles>,
}

/// Where the TLS files are, and how client certificates are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// The client certificate's common name is the client's user name (no password needed).
    pub certificate_as_username: bool,
    /// Revocation lists, lowest version and cipher suites (`tls_crl`, `tls_min_version`,
    /// `tls_ciphers`).
    pub policy: TlsPolicy,
    /// The secure WebSocket listener's own certificate and key (`wss_cert`, `wss_key`).
    pub wss_certificate: Option<(PathBuf, PathBuf)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("shardmq-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Tests run in parallel: every call gets its own file.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, text).expect("write config");
        ServeArgs { config: Some(path), ..ServeArgs::default() }.resolve()
    }

    #[test]
    fn defaults() {
        let config = ServeArgs::default().resolve().expect("defaults are valid");
        // No authentication: loopback only.
        assert_eq!(config.listen, "127.0.0.1:1883".parse().expect("address"));
        assert!(config.security.loopback_only && config.security.allow_anonymous);
        assert!(config.shards >= 1);
        // The retained bytes default follows the machine's memory; the rest are the shard's.
        assert_eq!(config.limits.retained_bytes_max, retained_bytes_default());
        assert!(config.limits.retained_bytes_max >= 64 << 20);
        let machine =
            Limits { retained_bytes_max: config.limits.retained_bytes_max, ..Limits::default() };
        assert_eq!(config.limits, machine);
    }

    #[test]
    fn bridges_are_read_with_the_node_in_their_client_id() {
        let bridge = "[[bridge]]\nname = \"up\"\naddress = \"127.0.0.1:1883\"\n\
                      topics = [{ pattern = \"#\" }]\n";
        let config = file(bridge).expect("valid");
        assert_eq!(config.bridges.len(), 1);
        assert!(config.bridges[0].client_id.ends_with(".up"));
        let clustered = format!(
            "etcd = \"http://127.0.0.1:2379\"\nnode_id = \"n7\"\nlink_listen = \"127.0.0.1:1\"\n\
             link_plaintext = true\n{bridge}"
        );
        let config = file(&clustered).expect("bridges in a cluster");
        assert_eq!(config.bridges[0].client_id, "n7.up");
    }

    #[test]
    fn file_keys_and_flag_override() {
        let config =
            file("listen = \"127.0.0.1:1999\"\nshards = 3\nmax_inflight = 5\n").expect("valid");
        assert_eq!(config.listen.port(), 1999);
        assert_eq!(config.shards, 3);
        assert_eq!(config.limits.inflight_max, 5);
    }

    #[test]
    fn errors_are_one_line_naming_the_key() {
        let error = file("listne = \"x\"\n").expect_err("unknown key").to_string();
        assert!(error.contains("listne") && !error.contains('\n'), "{error}");
        let error = file("shards = \"two\"\n").expect_err("wrong type").to_string();
        assert!(error.contains("shards") || error.contains("line 1"), "{error}");
        let error = file("listen = \"nowhere\"\n").expect_err("bad address").to_string();
        assert!(error.contains("`listen`") && !error.contains('\n'), "{error}");
        let error = file("max_inflight = 0\n").expect_err("zero").to_string();
        assert!(error.contains("`max_inflight`"), "{error}");
    }

    #[test]
    fn cluster_keys() {
        assert!(ServeArgs::default().resolve().expect("valid").cluster.is_none());
        let base = "etcd = \"http://127.0.0.1:2379, http://127.0.0.2:2379\"\nnode_id = \"n1\"\n\
                    link_listen = \"127.0.0.1:1884\"\n";
        let tls =
            "link_tls_cert = \"n1.pem\"\nlink_tls_key = \"n1.key\"\nlink_tls_ca = \"ca.pem\"\n";
        let config = file(&format!("{base}{tls}")).expect("valid");
        let cluster = config.cluster.expect("clustered");
        assert_eq!(cluster.etcd.len(), 2);
        assert_eq!(cluster.link_advertise, cluster.link_listen);
        assert_eq!(cluster.claim_batch_max, 127);
        assert_eq!(cluster.link_tls.expect("link TLS").ca, PathBuf::from("ca.pem"));
        assert!(cluster.etcd_access.ca.is_none() && cluster.etcd_access.user.is_none());
        // Node links are TLS unless plaintext is asked for, and not both.
        let error = file(base).expect_err("no link TLS").to_string();
        assert!(
            error.contains("`link_plaintext = true`") && error.contains("`link_tls_cert`"),
            "{error}"
        );
        let plain = file(&format!("{base}link_plaintext = true\n")).expect("plaintext");
        assert!(plain.cluster.expect("clustered").link_tls.is_none());
        let error = file(&format!("{base}{tls}link_plaintext = true\n")).expect_err("both");
        assert!(error.to_string().contains("choose one"), "{error}");
        let error = file(&format!("{base}link_tls_cert = \"n1.pem\"\n")).expect_err("partial");
        assert!(error.to_string().contains("`link_tls_key`, `link_tls_ca`"), "{error}");
        // etcd over TLS needs its CA on https:// endpoints only; a user needs a password file.
        let secured = "etcd = \"https://e:2379\"\nlink_listen = \"127.0.0.1:1\"\n\
                       link_plaintext = true\n";
        let error = file(secured).expect_err("no etcd CA").to_string();
        assert!(error.contains("`etcd_ca`"), "{error}");
        let config = file(&format!(
            "{secured}etcd_ca = \"ca.pem\"\netcd_cert = \"c.pem\"\netcd_key = \"k.pem\"\n\
             etcd_user = \"shardmq\"\netcd_password_file = \"pw\"\n"
        ))
        .expect("valid");
        let access = config.cluster.expect("clustered").etcd_access;
        assert!(access.ca.is_some() && access.identity.is_some() && access.user.is_some());
        for (extra, key) in [
            ("etcd_ca = \"ca.pem\"\netcd_cert = \"c.pem\"\n", "`etcd_key`"),
            ("etcd_ca = \"ca.pem\"\netcd_user = \"u\"\n", "`etcd_password_file`"),
        ] {
            let error = file(&format!("{secured}{extra}")).expect_err(extra).to_string();
            assert!(error.contains(key) && !error.contains('\n'), "{extra}: {error}");
        }
        let error = file(
            "etcd = \"http://e:2379\"\nlink_listen = \"127.0.0.1:1\"\n\
                          link_plaintext = true\netcd_ca = \"ca.pem\"\n",
        )
        .expect_err("CA with http")
        .to_string();
        assert!(error.contains("https://"), "{error}");
        let error = file("node_id = \"n1\"\n").expect_err("no etcd").to_string();
        assert!(error.contains("`node_id`") && error.contains("etcd"), "{error}");
        let error = file("etcd = \"http://e:2379\"\nnode_id = \"n1\"\n")
            .expect_err("wildcard link address")
            .to_string();
        assert!(error.contains("`link_advertise`"), "{error}");
        let error =
            file("etcd = \"http://e:2379\"\nnode_id = \"n 1\"\nlink_listen = \"127.0.0.1:1\"\n")
                .expect_err("bad node id")
                .to_string();
        assert!(error.contains("`node_id`"), "{error}");
        let error = file(
            "etcd = \"http://e:2379\"\nlink_listen = \"127.0.0.1:1\"\nlink_plaintext = true\n\
             claim_batch_max = 500\n",
        )
        .expect_err("too many ops")
        .to_string();
        assert!(error.contains("`claim_batch_max`"), "{error}");
    }

    #[test]
    fn tls_and_websocket_keys() {
        let config = file(
            "tls_listen = \"127.0.0.1:8883\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n\
             ws_listen = \"127.0.0.1:8080\"\n",
        )
        .expect("valid");
        assert_eq!(config.tls_listen, Some("127.0.0.1:8883".parse().expect("address")));
        assert_eq!(config.ws_listen, Some("127.0.0.1:8080".parse().expect("address")));
        let tls = config.tls.expect("TLS files");
        assert!(tls.client_ca.is_none() && !tls.certificate_as_username);
        for (text, key) in [
            ("tls_listen = \"127.0.0.1:8883\"\n", "`tls_listen`"),
            ("wss_listen = \"127.0.0.1:8883\"\n", "`wss_listen`"),
            ("tls_cert = \"c.pem\"\n", "`tls_key`"),
            ("tls_client_ca = \"ca.pem\"\n", "`tls_client_ca`"),
            (
                "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_cert_as_username = true\n",
                "`tls_cert_as_username`",
            ),
            ("ws_listen = \"nowhere\"\n", "`ws_listen`"),
        ] {
            let error = file(text).expect_err(text).to_string();
            assert!(error.contains(key) && !error.contains('\n'), "{text}: {error}");
        }
        // Without authentication, WebSocket and TLS listeners are loopback only too; a mutual
        // TLS listener authenticates its clients and may face other hosts.
        let narrowed = file("ws_listen = \"0.0.0.0:8080\"\n").expect("narrowed");
        assert_eq!(narrowed.ws_listen, Some("127.0.0.1:8080".parse().expect("address")));
        let error = file("ws_listen = \"10.1.2.3:8080\"\n").expect_err("exposed").to_string();
        assert!(error.contains("`ws_listen`") && error.contains("allow_anonymous"), "{error}");
        let mutual = "tls_listen = \"10.1.2.3:8883\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n\
                      tls_client_ca = \"ca.pem\"\n";
        let error = file(mutual).expect_err("client-chosen user names").to_string();
        assert!(error.contains("`tls_listen`"), "{error}");
        let named = file(&format!("{mutual}tls_cert_as_username = true\n"))
            .expect("certificates that name their users may face other hosts");
        assert_eq!(named.tls_listen, Some("10.1.2.3:8883".parse().expect("address")));
    }

    #[test]
    fn tls_policy_keys_and_their_errors() {
        let base = "tls_listen = \"127.0.0.1:8883\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        let config = file(&format!(
            "{base}tls_client_ca = \"ca.pem\"\ntls_crl = \"crl.pem\"\ntls_min_version = \"1.3\"\n\
             tls_ciphers = \"TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256\"\n"
        ))
        .expect("valid");
        let policy = config.tls.expect("TLS files").policy;
        assert_eq!(policy.crl, Some(PathBuf::from("crl.pem")));
        assert_eq!(policy.min_version, TlsVersion::V1_3);
        assert_eq!(policy.cipher_suites.len(), 2);
        for (extra, key) in [
            ("tls_crl = \"crl.pem\"\n", "`tls_crl`"),
            ("tls_min_version = \"1.1\"\n", "`tls_min_version`"),
            ("tls_ciphers = \"RC4-MD5\"\n", "`tls_ciphers`"),
            ("wss_cert = \"w.pem\"\n", "`wss_key`"),
            ("wss_cert = \"w.pem\"\nwss_key = \"w.key\"\n", "`wss_listen`"),
        ] {
            let text = format!("{base}{extra}");
            let error = file(&text).expect_err(&text).to_string();
            assert!(error.contains(key) && !error.contains('\n'), "{text}: {error}");
        }
        let proxied = file(&format!("{base}tls_proxy_protocol = true\nproxy_protocol = true\n"))
            .expect("valid")
            .proxy_protocol;
        assert!(proxied.mqtt && proxied.tls && !proxied.ws && !proxied.wss);
        let error = file("ws_proxy_protocol = true\n").expect_err("no ws listener").to_string();
        assert!(error.contains("`ws_proxy_protocol`") && error.contains("`ws_listen`"), "{error}");
    }

    #[test]
    fn the_admin_token_needs_the_admin_endpoint() {
        let config =
            file("admin_listen = \"127.0.0.1:9883\"\nadmin_token_file = \"/t\"\n").expect("valid");
        assert_eq!(config.admin_token_file, Some(PathBuf::from("/t")));
        let error = file("admin_token_file = \"/t\"\n").expect_err("no endpoint").to_string();
        assert!(error.contains("`admin_token_file`") && !error.contains('\n'), "{error}");
    }

    #[test]
    fn client_events_key_and_flag() {
        assert!(ServeArgs::default().resolve().expect("valid").client_events.is_none());
        assert!(file("client_events = false\n").expect("valid").client_events.is_none());
        // A single node publishes under its host name: one topic level.
        let node = file("client_events = true\n").expect("valid").client_events.expect("on");
        assert!(valid_name(&node), "{node:?}");
        // A cluster's node under its node id.
        let clustered = file(
            "client_events = true\netcd = \"http://127.0.0.1:2379\"\nnode_id = \"n7\"\n\
             link_listen = \"127.0.0.1:1884\"\nlink_plaintext = true\n",
        )
        .expect("valid");
        assert_eq!(clustered.client_events.as_deref(), Some("n7"));
        let error = file("client_events = \"yes\"\n").expect_err("not a boolean").to_string();
        assert!(error.contains("line 1") && !error.contains('\n'), "{error}");

        // `--client-events` alone turns them on; a value may still be given.
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let parse = |flags: &[&str]| {
            let argv = std::iter::once("shardmq").chain(flags.iter().copied());
            <Flags as clap::Parser>::try_parse_from(argv).map(|flags| flags.serve.client_events)
        };
        assert_eq!(parse(&["--client-events"]).expect("valid"), Some(true));
        assert_eq!(parse(&["--client-events", "false"]).expect("valid"), Some(false));
        assert_eq!(parse(&["--client-events", "--shards", "2"]).expect("valid"), Some(true));
        assert_eq!(parse(&[]).expect("valid"), None);
        assert!(parse(&["--client-events", "maybe"]).is_err());
    }

    #[test]
    fn event_webhook_keys() {
        assert!(ServeArgs::default().resolve().expect("valid").event_webhook.is_none());
        let hook = file("event_webhook_url = \"https://hooks.example.com/mqtt\"\n")
            .expect("valid")
            .event_webhook
            .expect("on");
        assert_eq!(hook.url, "https://hooks.example.com/mqtt");
        assert_eq!((hook.queue_max, hook.batch_max), (4096, 100));
        assert_eq!(hook.batch_delay, Duration::from_millis(200));
        assert!(valid_name(&hook.node), "{:?}", hook.node);
        let tuned = file(
            "event_webhook_url = \"http://127.0.0.1:8080/\"\nevent_webhook_queue_max = 10\n\
             event_webhook_batch_max = 5\nevent_webhook_batch_delay_ms = 0\n",
        )
        .expect("valid")
        .event_webhook
        .expect("on");
        assert_eq!((tuned.queue_max, tuned.batch_max), (10, 5));
        assert_eq!(tuned.batch_delay, Duration::ZERO);
        // Errors: one line naming the key.
        for (text, key) in [
            ("event_webhook_url = \"ftp://x/\"\n", "`event_webhook_url`"),
            ("event_webhook_url = \"hooks.example.com\"\n", "`event_webhook_url`"),
            ("event_webhook_url = \"http://\"\n", "`event_webhook_url`"),
            (
                "event_webhook_url = \"http://x/\"\nevent_webhook_queue_max = 0\n",
                "`event_webhook_queue_max`",
            ),
            (
                "event_webhook_url = \"http://x/\"\nevent_webhook_batch_max = 0\n",
                "`event_webhook_batch_max`",
            ),
            (
                "event_webhook_batch_max = 5\n",
                "`event_webhook_batch_max` is set but `event_webhook_url`",
            ),
        ] {
            let error = file(text).expect_err(text).to_string();
            assert!(error.contains(key) && !error.contains('\n'), "{text}: {error}");
        }
    }

    #[test]
    fn secure_by_default() {
        let open = file("allow_anonymous = true\n").expect("valid");
        assert_eq!(open.listen, "0.0.0.0:1883".parse().expect("address"));
        assert!(open.security.allow_anonymous && !open.security.loopback_only);
        let error = file("listen = \"10.1.2.3:1883\"\n").expect_err("exposed").to_string();
        assert!(error.contains("`listen`") && error.contains("allow_anonymous"), "{error}");
        let local = file("listen = \"127.0.0.2:1883\"\n").expect("loopback is fine");
        assert_eq!(local.listen, "127.0.0.2:1883".parse().expect("address"));
        let with_passwords = file("password_file = \"/etc/shardmq/passwd\"\n").expect("valid");
        assert_eq!(with_passwords.listen, "0.0.0.0:1883".parse().expect("address"));
        assert!(!with_passwords.security.allow_anonymous);
        assert!(with_passwords.security.describe().contains("anonymous clients refused"));
    }
}

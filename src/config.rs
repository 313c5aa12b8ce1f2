//! Configuration: every limit and interval of the gateway, with the shipped
//! defaults of PROTOCOL.md section 5. Pure data; no I/O happens here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::net::{Cidr, OriginSet};

/// How a session is bound to the client that logged in (after Flask-Login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionProtection {
    /// The session is bound to a hash of the User-Agent (digit runs removed);
    /// a request with another User-Agent is unauthenticated and the session
    /// is revoked.
    Strong,
    /// No binding: the User-Agent hash is recorded but never enforced.
    Basic,
    /// No binding and nothing recorded.
    Off,
}

impl std::str::FromStr for SessionProtection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strong" => Ok(Self::Strong),
            "basic" => Ok(Self::Basic),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "session protection must be strong, basic or off, not {other:?}"
            )),
        }
    }
}

/// argon2id cost parameters used for new password hashes. Verification always
/// uses the parameters stored in each PHC string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP's recommendation for argon2id: m=19456 KiB, t=2, p=1.
    pub const OWASP: Self = Self {
        m_cost: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// A token bucket's shape: `burst` tokens, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens regained per minute.
    pub per_minute: f64,
    /// Bucket size.
    pub burst: f64,
}

/// Where the secret keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key file, created with mode 0600 and 32 random bytes when missing.
    File(PathBuf),
    /// Raw key bytes (tests and embedding).
    Bytes(Vec<u8>),
}

/// Authentication and session settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The key new cookies are signed with.
    pub key: KeySource,
    /// Keys that still verify cookies (rotation); never used to sign.
    pub previous_keys: Vec<KeySource>,
    /// Cookie name; `__Host-` is prefixed when the public origin is https.
    pub cookie_name: String,
    /// Absolute lifetime of a session without `remember`.
    pub session_lifetime: Duration,
    /// Idle limit of a session without `remember`.
    pub session_idle: Duration,
    /// Absolute lifetime (and cookie Max-Age) of a `remember` session.
    pub remember_lifetime: Duration,
    /// Last-seen updates are written at most this often per session.
    pub touch_interval: Duration,
    /// Session binding policy.
    pub protection: SessionProtection,
    /// argon2id parameters for new hashes (and the dummy hash).
    pub hash_params: HashParams,
    /// Hashing threads; one per core by default.
    pub hash_threads: usize,
    /// Login admission budget: expected wait in the hashing queue.
    pub login_queue_budget: Duration,
    /// Failed logins allowed per (client address, username).
    pub fail_rate_user: Rate,
    /// Failed logins allowed per client address.
    pub fail_rate_addr: Rate,
    /// Failures of one username (from any address) in a minute after which
    /// its checks are slowed down (never refused).
    pub username_slowdown_after: u32,
    /// Longest delay added to a slowed-down username's checks.
    pub username_slowdown_max: Duration,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file.
    pub db_path: PathBuf,
    /// Pooled connections.
    pub pool_size: u32,
    /// SQLite busy timeout: how long a statement waits for a lock.
    pub busy_timeout: Duration,
    /// How long a request waits for a pooled connection.
    pub checkout_timeout: Duration,
}

/// WebSocket gateway settings (PROTOCOL.md sections 2 and 5).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest inbound frame or message.
    pub max_message_size: usize,
    /// Largest `data` value a client may send (encoded).
    pub max_data_size: usize,
    /// Rooms one socket may be in.
    pub max_rooms_per_socket: usize,
    /// Requests per second per socket.
    pub rate_per_sec: f64,
    /// Request burst per socket.
    pub rate_burst: f64,
    /// Frames queued per socket before it is closed as a slow consumer.
    pub outbound_queue: usize,
    /// Sockets one user may hold.
    pub max_sockets_per_user: usize,
    /// Sockets in total.
    pub max_sockets: usize,
    /// Server ping interval.
    pub ping_interval: Duration,
    /// Close a socket that has not answered a ping for this long.
    pub pong_timeout: Duration,
    /// API key of `POST /publish`; the API is disabled without one.
    pub publish_key: Option<String>,
}

/// The gateway's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind; port 0 picks a free one.
    pub listen: SocketAddr,
    /// `--public-origin`: the origin the gateway is reached at.
    pub public_origin: Option<String>,
    /// `--allowed-origins`: replaces the public origin as the allowed set.
    pub allowed_origins: Option<OriginSet>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Body limit of `POST /auth`.
    pub auth_body_limit: usize,
    /// Body limit of `POST /publish`.
    pub publish_body_limit: usize,
    /// Time to read a request's headers.
    pub header_read_timeout: Duration,
    /// Time to read a request's body.
    pub body_read_timeout: Duration,
    /// Open TCP connections at most.
    pub max_connections: usize,
    /// Bounded wait for in-flight work on shutdown.
    pub drain_timeout: Duration,
    /// Expiry sweep and live-session re-check interval.
    pub sweep_interval: Duration,
    /// How often the database is checked (cheaply) for changes made by
    /// other processes that end live sessions.
    pub watch_interval: Duration,
    /// Authentication.
    pub auth: AuthConfig,
    /// Store.
    pub store: StoreConfig,
    /// WebSocket gateway.
    pub gateway: GatewayConfig,
}

impl Config {
    /// The shipped defaults with the database and key file in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let dir: PathBuf = data_dir.into();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_origin: None,
            allowed_origins: None,
            trusted_proxies: Vec::new(),
            auth_body_limit: 8 * 1024,
            publish_body_limit: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 110_000,
            drain_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(60),
            watch_interval: Duration::from_secs(1),
            auth: AuthConfig {
                key: KeySource::File(dir.join("secret.key")),
                previous_keys: Vec::new(),
                cookie_name: "wsgate_session".to_owned(),
                session_lifetime: Duration::from_secs(12 * 3600),
                session_idle: Duration::from_secs(2 * 3600),
                remember_lifetime: Duration::from_secs(30 * 24 * 3600),
                touch_interval: Duration::from_secs(60),
                protection: SessionProtection::Strong,
                hash_params: HashParams::OWASP,
                hash_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                login_queue_budget: Duration::from_secs(5),
                fail_rate_user: Rate {
                    per_minute: 5.0,
                    burst: 10.0,
                },
                fail_rate_addr: Rate {
                    per_minute: 30.0,
                    burst: 30.0,
                },
                username_slowdown_after: 20,
                username_slowdown_max: Duration::from_secs(2),
            },
            store: StoreConfig {
                db_path: dir.join("wsgate.db"),
                pool_size: 8,
                busy_timeout: Duration::from_secs(5),
                checkout_timeout: Duration::from_secs(1),
            },
            gateway: GatewayConfig {
                max_message_size: 64 * 1024,
                max_data_size: 60 * 1024,
                max_rooms_per_socket: 100,
                rate_per_sec: 100.0,
                rate_burst: 200.0,
                outbound_queue: 1024,
                max_sockets_per_user: 32,
                max_sockets: 100_000,
                ping_interval: Duration::from_secs(30),
                pong_timeout: Duration::from_secs(60),
                publish_key: None,
            },
        }
    }
}

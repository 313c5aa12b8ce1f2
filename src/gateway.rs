//! The WebSocket gateway: shared state of every live socket (registry, hub,
//! metrics) and its background duties: the heartbeat, the session watcher
//! that closes sockets whose session ended (also when another process
//! changed the database), and the sweep of empty rooms.

pub mod close;
pub mod connection;
pub mod frame;
pub mod hub;
pub mod registry;
pub mod upgrade;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, session};
use crate::config::GatewayConfig;
use crate::error::Result;
use crate::metrics::LabeledCounter;
use crate::store::{self, Store, now_ms};

use close::{CLOSE_LABELS, CloseReason};
use hub::Hub;
use registry::Registry;

/// tungstenite's read buffer per socket. Its default (128 KiB, allocated as
/// the socket opens) would dominate an idle socket's memory.
const READ_BUFFER: usize = 2048;
/// Bytes tungstenite gathers before writing to the socket (we flush per
/// batch anyway).
const WRITE_BUFFER: usize = 16 * 1024;
/// Hard cap on tungstenite's write buffer.
const MAX_WRITE_BUFFER: usize = 512 * 1024;
/// Rooms without members are dropped after this long.
const ROOM_LINGER: Duration = Duration::from_secs(60);
/// How often empty rooms are looked for.
const ROOM_SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Shortest heartbeat tick.
const MIN_HEARTBEAT_TICK: Duration = Duration::from_millis(10);

/// Upgrade outcomes, the labels of `wsgate_upgrades_total`.
pub const UPGRADE_OUTCOMES: &[&str] = &[
    "ok",
    "bad_request",
    "upgrade_required",
    "unauthenticated",
    "forbidden",
    "limited",
    "unavailable",
];

/// Socket metrics.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// Upgrade attempts by outcome.
    pub upgrades: LabeledCounter,
    /// Closes by code.
    pub closes: LabeledCounter,
    /// Frames read from clients.
    pub frames_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self {
            upgrades: LabeledCounter::new(UPGRADE_OUTCOMES),
            closes: LabeledCounter::new(CLOSE_LABELS),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
        }
    }
}

/// Everything the sockets share.
pub struct Gateway {
    /// Settings.
    pub config: GatewayConfig,
    /// Live sockets.
    pub registry: Registry,
    /// Rooms.
    pub hub: Hub,
    /// Counters.
    pub metrics: GatewayMetrics,
    store: Store,
    auth: Auth,
}

impl Gateway {
    /// A gateway with no sockets.
    pub fn new(config: GatewayConfig, store: Store, auth: Auth) -> Self {
        Self {
            registry: Registry::new(
                config.max_sockets_per_user,
                config.max_sockets,
                config.outbound_queue,
            ),
            hub: Hub::new(),
            metrics: GatewayMetrics::default(),
            config,
            store,
            auth,
        }
    }

    /// tungstenite settings: small buffers, frame and message limits at the
    /// protocol's frame limit.
    pub fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_write_buffer_size(MAX_WRITE_BUFFER.max(self.config.max_message_size * 2))
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size))
    }

    /// Whether a user of that name exists.
    ///
    /// # Errors
    /// The store does not answer.
    pub async fn user_exists(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        Ok(self
            .store
            .call(move |c| store::users::find_for_login(c, &name))
            .await?
            .is_some())
    }

    /// Closes the live sockets of sessions that ended.
    pub fn sessions_ended(&self, sessions: &[i64]) {
        if !sessions.is_empty() {
            let n = self
                .registry
                .close_sessions(sessions, CloseReason::SessionEnded);
            if n > 0 {
                tracing::info!(sockets = n, "sockets of ended sessions closed");
            }
        }
    }

    /// Runs the heartbeat until `token` is cancelled.
    pub async fn heartbeat(self: Arc<Self>, token: CancellationToken) {
        let ping = self.config.ping_interval;
        let timeout = self.config.pong_timeout;
        let tick = (ping.min(timeout) / 4).max(MIN_HEARTBEAT_TICK);
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (ping_ms, timeout_ms) = (millis(ping), millis(timeout));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = token.cancelled() => return,
            }
            let now = self.registry.clock_ms();
            self.registry
                .for_each(|c| c.heartbeat(now, ping_ms, timeout_ms));
        }
    }

    /// Drops empty rooms after their linger time, until `token` is cancelled.
    pub async fn sweep_rooms(self: Arc<Self>, token: CancellationToken) {
        let mut every = tokio::time::interval(ROOM_SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = token.cancelled() => return,
            }
            self.hub.sweep(ROOM_LINGER);
        }
    }

    /// Watches the database for ended sessions of live sockets: cheaply each
    /// `watch_every` (`PRAGMA data_version` on a connection of its own
    /// changes whenever another connection or process commits), and fully
    /// every `recheck_every`. Closes the sockets of sessions that are gone,
    /// expired or whose user is disabled, and refreshes last-seen of live
    /// sessions (at most once per touch interval).
    pub async fn watch_sessions(
        self: Arc<Self>,
        token: CancellationToken,
        watch_every: Duration,
        recheck_every: Duration,
    ) {
        let store = self.store.clone();
        let conn = match tokio::task::spawn_blocking(move || store.open_connection()).await {
            Ok(Ok(c)) => Arc::new(Mutex::new(c)),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "session watcher cannot open the database; revocations by other processes reach sockets at the next restart");
                return;
            }
            Err(_) => return,
        };
        let mut every = tokio::time::interval(watch_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_version: Option<i64> = None;
        let mut last_full = Instant::now();
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = token.cancelled() => return,
            }
            let live = self.registry.live_sessions();
            let full = last_full.elapsed() >= recheck_every;
            let c = conn.clone();
            let known = last_version;
            let auth_cfg = self.auth.config().clone();
            let r = tokio::task::spawn_blocking(
                move || -> rusqlite::Result<(i64, Option<Vec<i64>>)> {
                    let Ok(c) = c.lock() else {
                        return Err(rusqlite::Error::InvalidQuery);
                    };
                    let version = Store::data_version(&c)?;
                    if (Some(version) == known && !full) || live.is_empty() {
                        return Ok((version, None));
                    }
                    let rows = store::sessions::by_ids(&c, &live).map_err(|e| match e {
                        store::StoreError::Sql(e) => e,
                        store::StoreError::Domain(_) => rusqlite::Error::InvalidQuery,
                    })?;
                    let now = now_ms();
                    let mut ended: Vec<i64> = live
                        .iter()
                        .copied()
                        .filter(|id| !rows.iter().any(|r| r.id == *id))
                        .collect();
                    let mut touch = Vec::new();
                    for r in &rows {
                        if r.user_disabled || session::is_expired(&auth_cfg, r, now) {
                            ended.push(r.id);
                        } else if session::touch_due(&auth_cfg, r, now) {
                            touch.push(r.id);
                        }
                    }
                    if !touch.is_empty()
                        && let Err(e) = store::sessions::touch_many(&c, &touch, now)
                    {
                        tracing::debug!(error = ?e, "last-seen refresh of live sessions deferred");
                    }
                    // Our own write moved data_version; read it again so it does
                    // not trigger another check.
                    let version = Store::data_version(&c).unwrap_or(version);
                    Ok((version, Some(ended)))
                },
            )
            .await;
            match r {
                Ok(Ok((version, ended))) => {
                    last_version = Some(version);
                    if let Some(ended) = ended {
                        if full {
                            last_full = Instant::now();
                        }
                        self.sessions_ended(&ended);
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "session watcher: check deferred"),
                Err(_) => return,
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

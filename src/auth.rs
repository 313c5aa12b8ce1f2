//! Authentication: login, session lookup and logout.
//!
//! The cookie proves nothing alone: its signature is checked first (no I/O,
//! forgeries stop here), then the session row decides: it must exist, not
//! be expired, belong to an enabled user and, under `strong` protection,
//! match the User-Agent it logged in with.

pub mod cookie;
pub mod limiter;
pub mod password;
pub mod session;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use crate::config::{AuthConfig, SessionProtection};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::names::valid_username;
use crate::store::{self, NewSession, SessionRow, Store, now_ms};

use cookie::Keys;
use limiter::LoginLimiter;
use password::Hasher;

/// A login request, already parsed.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// As typed; matched ignoring ASCII case.
    pub username: String,
    /// Plain text; only ever handed to the hashing threads.
    pub password: String,
    /// 30-day session without idle limit.
    pub remember: bool,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// User id.
    pub user_id: i64,
    /// Username as stored.
    pub username: String,
    /// The new session's id.
    pub session_id: i64,
    /// The signed cookie value.
    pub cookie_value: String,
    /// Absolute end, ms.
    pub expires_at: i64,
    /// Whether `remember` was asked for.
    pub remember: bool,
}

/// Sessions that ended, for closing their live sockets.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    /// User the sessions belonged to, when known.
    pub user_id: Option<i64>,
    /// Session ids.
    pub sessions: Vec<i64>,
}

/// The authentication service. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AuthConfig,
    keys: Keys,
    hasher: Hasher,
    limiter: LoginLimiter,
    store: Store,
    metrics: Arc<Metrics>,
    /// PHC string checked for unknown users, so they cost one hash too.
    dummy_phc: String,
    /// Sessions whose last-seen write is in flight (no duplicate writes).
    touching: Mutex<HashSet<i64>>,
    /// Where background writes run, so a drain waits for them.
    tasks: TaskTracker,
}

impl Auth {
    /// Loads the keys, computes the dummy hash (which also calibrates the
    /// hashing queue) and starts the hashing threads.
    ///
    /// # Errors
    /// Key files that cannot be read or created; bad hash parameters.
    pub fn new(
        cfg: AuthConfig,
        store: Store,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
    ) -> Result<Self> {
        let keys = Keys::load(&cfg.key, &cfg.previous_keys)?;
        let started = Instant::now();
        let mut dummy_password = [0u8; 24];
        rand::fill(&mut dummy_password);
        let dummy_phc = password::hash_password(cfg.hash_params, &dummy_password)?;
        let calibration = started.elapsed();
        let hasher = Hasher::start(cfg.hash_threads, cfg.login_queue_budget, calibration);
        let limiter = LoginLimiter::new(
            cfg.fail_rate_user,
            cfg.fail_rate_addr,
            cfg.username_slowdown_after,
            cfg.username_slowdown_max,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                keys,
                hasher,
                limiter,
                store,
                metrics,
                dummy_phc,
                touching: Mutex::new(HashSet::new()),
                tasks,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.cfg
    }

    /// The hashing queue (metrics, first-user creation).
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The cookie keys.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Checks credentials and creates a fresh session.
    ///
    /// # Errors
    /// [`Error::InvalidCredentials`] for a wrong password, unknown or disabled
    /// user (indistinguishable); [`Error::RateLimited`] after too many
    /// failures; [`Error::Overloaded`] when the hashing queue is over budget;
    /// [`Error::StoreBusy`] when the database does not answer in time.
    pub async fn login(
        &self,
        creds: Credentials,
        client: IpAddr,
        user_agent: &str,
    ) -> Result<LoggedIn> {
        let r = self.try_login(creds, client, user_agent).await;
        let outcome = match &r {
            Ok(_) => "ok",
            Err(Error::InvalidCredentials) => "invalid_credentials",
            Err(Error::RateLimited(_)) => "rate_limited",
            Err(Error::Overloaded(_)) => "overloaded",
            Err(_) => "unavailable",
        };
        self.inner.metrics.logins.inc(outcome);
        r
    }

    async fn try_login(
        &self,
        creds: Credentials,
        client: IpAddr,
        user_agent: &str,
    ) -> Result<LoggedIn> {
        let inner = &self.inner;
        let limiter = &inner.limiter;
        if let Err(wait) = limiter.check(client, &creds.username, Instant::now()) {
            tracing::info!(%client, "login refused: too many failures");
            return Err(Error::RateLimited(wait));
        }
        if !valid_username(&creds.username) {
            // Cannot exist; nothing to hide about the format rule.
            limiter.failed(client, &creds.username, Instant::now());
            return Err(Error::InvalidCredentials);
        }
        let delay = limiter.slowdown(&creds.username, Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let name = creds.username.clone();
        let user = inner
            .store
            .call(move |c| store::users::find_for_login(c, &name))
            .await?;
        let phc = user
            .as_ref()
            .map_or_else(|| inner.dummy_phc.clone(), |u| u.password_hash.clone());
        let matches = inner.hasher.verify(creds.password, phc).await?;
        let user = match user {
            Some(u) if matches && !u.disabled => u,
            _ => {
                limiter.failed(client, &creds.username, Instant::now());
                tracing::info!(%client, "login failed");
                return Err(Error::InvalidCredentials);
            }
        };
        limiter.succeeded(client, &creds.username);

        let token = Keys::new_token();
        let now = now_ms();
        let expires_at = session::expires_at(&inner.cfg, now, creds.remember);
        let new = NewSession {
            token_hash: cookie::token_hash(&token),
            user_id: user.id,
            created_at: now,
            expires_at,
            remember: creds.remember,
            ua_hash: (inner.cfg.protection != SessionProtection::Off)
                .then(|| session::ua_hash(user_agent)),
        };
        let session_id = inner
            .store
            .call(move |c| store::sessions::create(c, &new))
            .await?;
        inner
            .metrics
            .sessions_created
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(user = %user.username, session = session_id, "login");
        Ok(LoggedIn {
            user_id: user.id,
            username: user.username,
            session_id,
            cookie_value: inner.keys.sign(&token),
            expires_at,
            remember: creds.remember,
        })
    }

    /// The live session named by a cookie value.
    ///
    /// `Ok(None)` means unauthenticated: no valid signature, no row, expired,
    /// user disabled, or (under `strong` protection) another User-Agent, in
    /// which case the session is also revoked and returned in `revoked`.
    ///
    /// # Errors
    /// [`Error::StoreBusy`] when the database does not answer in time.
    pub async fn authenticate(
        &self,
        cookie_value: &str,
        user_agent: &str,
        revoked: &mut Revoked,
    ) -> Result<Option<SessionRow>> {
        let inner = &self.inner;
        let Some(token) = inner.keys.verify(cookie_value) else {
            return Ok(None);
        };
        let hash = cookie::token_hash(&token);
        let Some(row) = inner
            .store
            .call(move |c| store::sessions::by_token(c, &hash))
            .await?
        else {
            return Ok(None);
        };
        let now = now_ms();
        if session::is_expired(&inner.cfg, &row, now) || row.user_disabled {
            return Ok(None);
        }
        if inner.cfg.protection == SessionProtection::Strong
            && row.ua_hash.as_deref() != Some(&session::ua_hash(user_agent)[..])
        {
            tracing::info!(user = %row.username, session = row.id, "session protection: User-Agent changed; session revoked");
            let id = row.id;
            inner
                .store
                .call(move |c| store::sessions::delete(c, id))
                .await?;
            inner
                .metrics
                .sessions_revoked
                .fetch_add(1, Ordering::Relaxed);
            revoked.user_id = Some(row.user_id);
            revoked.sessions.push(row.id);
            return Ok(None);
        }
        if session::touch_due(&inner.cfg, &row, now) {
            self.touch(row.id, now);
        }
        Ok(Some(row))
    }

    /// Records activity of a session in the background (coalesced; a busy
    /// database only delays it to the next chance).
    pub fn touch(&self, session_id: i64, now: i64) {
        {
            let Ok(mut set) = self.inner.touching.lock() else {
                return;
            };
            if !set.insert(session_id) {
                return;
            }
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let r = this
                .inner
                .store
                .call(move |c| store::sessions::touch(c, session_id, now))
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, session = session_id, "last-seen update deferred");
            }
            if let Ok(mut set) = this.inner.touching.lock() {
                set.remove(&session_id);
            }
        });
    }

    /// Revokes the session named by a cookie value, or with `all` every
    /// session of its user. A value that does not verify revokes nothing.
    ///
    /// # Errors
    /// [`Error::StoreBusy`] when the database does not answer in time.
    pub async fn logout(&self, cookie_value: Option<&str>, all: bool) -> Result<Revoked> {
        let inner = &self.inner;
        let Some(token) = cookie_value.and_then(|v| inner.keys.verify(v)) else {
            return Ok(Revoked::default());
        };
        let hash = cookie::token_hash(&token);
        let revoked = inner
            .store
            .call(move |c| {
                let Some(row) = store::sessions::by_token(c, &hash)? else {
                    return Ok(Revoked::default());
                };
                let sessions = if all {
                    store::sessions::revoke_user(c, row.user_id)?
                } else if store::sessions::delete(c, row.id)? {
                    vec![row.id]
                } else {
                    Vec::new()
                };
                Ok(Revoked {
                    user_id: Some(row.user_id),
                    sessions,
                })
            })
            .await?;
        inner
            .metrics
            .sessions_revoked
            .fetch_add(revoked.sessions.len() as u64, Ordering::Relaxed);
        Ok(revoked)
    }

    /// Deletes ended sessions; returns how many, and refreshes the stored
    /// sessions gauge.
    ///
    /// # Errors
    /// [`Error::StoreBusy`] when the database does not answer in time.
    pub async fn sweep(&self) -> Result<usize> {
        let now = now_ms();
        let idle = i64::try_from(self.inner.cfg.session_idle.as_millis()).unwrap_or(i64::MAX);
        let (n, left) = self
            .inner
            .store
            .call(move |c| {
                let n = store::sessions::sweep(c, now, now.saturating_sub(idle))?;
                Ok((n, store::sessions::count(c)?))
            })
            .await?;
        let m = &self.inner.metrics;
        m.sessions_expired.fetch_add(n as u64, Ordering::Relaxed);
        m.sessions_stored
            .store(u64::try_from(left).unwrap_or(0), Ordering::Relaxed);
        Ok(n)
    }

    /// Stops the hashing threads.
    pub fn stop(&self) {
        self.inner.hasher.stop();
    }

    /// How long until a check admitted now would start.
    pub fn login_queue_wait(&self) -> Duration {
        self.inner.hasher.expected_wait()
    }
}

//! The embedded store: one SQLite file in WAL mode behind an r2d2 pool.
//!
//! Every call borrows one pooled connection on tokio's blocking pool (never on
//! the reactor); a connection is used by one thread at a time and never
//! shared. Every write is a `BEGIN IMMEDIATE` transaction, so concurrent
//! writers queue on SQLite's busy handler instead of failing with "database
//! is locked". Contention past the busy timeout becomes [`Error::StoreBusy`]
//! (503 + `Retry-After`), never a hang or a 500.

mod pool;
mod schema;
pub mod sessions;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, ErrorCode};

use crate::config::StoreConfig;
use crate::error::{Error, Result};

pub use schema::SCHEMA_VERSION;
pub use sessions::{NewSession, SessionRow};
pub use users::{LoginUser, UserInfo};

/// A cheap-clone handle to the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Pooled connections; checkout waits at most the configured 1 s.
    pool: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    stats: StoreStats,
    config: StoreConfig,
}

/// Counters the metrics endpoint reads.
#[derive(Default, Debug)]
pub struct StoreStats {
    /// Calls that gave up on a lock or a pool checkout.
    pub busy: AtomicU64,
    /// Calls that failed otherwise.
    pub errors: AtomicU64,
}

/// What a store call can fail with before it is mapped to [`Error`].
#[derive(Debug)]
pub enum StoreError {
    /// An SQLite error.
    Sql(rusqlite::Error),
    /// A domain outcome decided inside the transaction.
    Domain(Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        Self::Domain(e)
    }
}

/// Whether an SQLite error is lock contention.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl Store {
    /// Opens (creating when missing) the database file, configures every
    /// pooled connection and applies `schema.sql`.
    ///
    /// # Errors
    /// The file cannot be created or opened, or its schema is newer than this
    /// build understands.
    pub fn open(config: &StoreConfig) -> Result<Self> {
        if let Some(dir) = config
            .db_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let pool = pool::build(config)?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                stats: StoreStats::default(),
                config: config.clone(),
            }),
        };
        store.blocking(schema::apply)?;
        Ok(store)
    }

    /// A connection of its own, outside the pool, with the same pragmas
    /// (for watchers that need one connection over time).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open_connection(&self) -> Result<Connection> {
        let cfg = &self.inner.config;
        let mut c = Connection::open(&cfg.db_path).map_err(|e| Error::Store(e.to_string()))?;
        pool::configure(&mut c, cfg.busy_timeout).map_err(|e| Error::Store(e.to_string()))?;
        Ok(c)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Runs `f` on a pooled connection on the calling thread. For the command
    /// line and for code already off the reactor.
    ///
    /// # Errors
    /// [`Error::StoreBusy`] on contention, [`Error::Store`] on other failures,
    /// or the domain error `f` returned.
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T> {
        let mut conn = self.inner.pool.get().map_err(|e| {
            self.inner.stats.busy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "store: no pooled connection within the checkout timeout");
            Error::StoreBusy
        })?;
        f(&mut conn).map_err(|e| self.map_error(e))
    }

    /// Runs `f` on a pooled connection on tokio's blocking pool.
    ///
    /// # Errors
    /// As [`Store::blocking`].
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.blocking(f)).await {
            Ok(r) => r,
            Err(e) => {
                self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "store: blocking task failed");
                Err(Error::Internal("store task failed".into()))
            }
        }
    }

    fn map_error(&self, e: StoreError) -> Error {
        match e {
            StoreError::Domain(e) => e,
            StoreError::Sql(e) if is_busy(&e) => {
                self.inner.stats.busy.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "store: database stayed locked past the busy timeout");
                Error::StoreBusy
            }
            StoreError::Sql(e) => {
                self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "store: query failed");
                Error::Store(e.to_string())
            }
        }
    }

    /// Whether the database answers a trivial query (readiness).
    pub async fn ping(&self) -> bool {
        self.call(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1)",
                [],
                |_| Ok(()),
            )?)
        })
        .await
        .is_ok()
    }

    /// Moves the WAL's content into the database file and truncates the WAL
    /// (on shutdown).
    ///
    /// # Errors
    /// As [`Store::blocking`].
    pub fn checkpoint(&self) -> Result<()> {
        self.blocking(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// `PRAGMA data_version` of one pooled connection: it changes when
    /// another connection or process commits.
    ///
    /// # Errors
    /// As [`Store::blocking`].
    pub fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

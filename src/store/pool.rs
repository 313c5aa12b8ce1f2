//! The r2d2 pool and the pragmas every connection gets in its init hook.

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::config::StoreConfig;
use crate::error::{Error, Result};

/// Builds the pool. Each connection: WAL journal, `synchronous=NORMAL` (a
/// committed transaction survives a process crash; only an OS crash can
/// lose the last ones), the busy timeout, foreign keys on.
pub(super) fn build(config: &StoreConfig) -> Result<r2d2::Pool<SqliteConnectionManager>> {
    let busy = config.busy_timeout;
    let manager = SqliteConnectionManager::file(&config.db_path)
        .with_init(move |c: &mut Connection| configure(c, busy));
    r2d2::Pool::builder()
        .max_size(config.pool_size.max(1))
        .min_idle(Some(1))
        .connection_timeout(config.checkout_timeout)
        .build(manager)
        .map_err(|e| {
            Error::Config(format!(
                "cannot open database {}: {e}",
                config.db_path.display()
            ))
        })
}

/// Applies the connection pragmas (also used by tools that open the file
/// directly).
///
/// # Errors
/// The pragmas cannot be set.
pub fn configure(c: &mut Connection, busy: std::time::Duration) -> rusqlite::Result<()> {
    c.busy_timeout(busy)?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "store: WAL journal mode not available");
    }
    c.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
    Ok(())
}

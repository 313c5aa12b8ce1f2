//! Applies `schema.sql`, versioned with `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;
use crate::error::Error;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = include_str!("../../schema.sql");

pub(super) fn apply(c: &mut Connection) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "database schema version {version} is newer than this wsgate ({SCHEMA_VERSION})"
        ))
        .into());
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

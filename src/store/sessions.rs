//! Sessions: create, look up by token hash, coalesced last-seen, revoke,
//! sweep. Expiry is decided by the caller from the row's times; the sweep
//! removes what can no longer be valid.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StoreError;

/// A session to insert.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the cookie token.
    pub token_hash: [u8; 32],
    /// Owner.
    pub user_id: i64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Absolute end, ms.
    pub expires_at: i64,
    /// No idle limit when true.
    pub remember: bool,
    /// Session protection binding.
    pub ua_hash: Option<[u8; 32]>,
}

/// A stored session joined with its user.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Session id.
    pub id: i64,
    /// Owner id.
    pub user_id: i64,
    /// Owner name.
    pub username: String,
    /// Owner disabled.
    pub user_disabled: bool,
    /// Creation time, ms.
    pub created_at: i64,
    /// Absolute end, ms.
    pub expires_at: i64,
    /// Last activity written, ms.
    pub last_seen: i64,
    /// No idle limit.
    pub remember: bool,
    /// Session protection binding.
    pub ua_hash: Option<Vec<u8>>,
}

/// Inserts a session in its own `BEGIN IMMEDIATE` transaction.
pub fn create(c: &mut Connection, s: &NewSession) -> Result<i64, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen, remember, ua_hash)
         VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6)",
    )?
    .execute(params![
        &s.token_hash[..],
        s.user_id,
        s.created_at,
        s.expires_at,
        s.remember,
        s.ua_hash.as_ref().map(|h| &h[..]),
    ])?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

const SELECT: &str = "SELECT s.id, s.user_id, u.username, u.disabled, s.created_at, s.expires_at,
            s.last_seen, s.remember, s.ua_hash
     FROM sessions s JOIN users u ON u.id = s.user_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        user_disabled: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        last_seen: r.get(6)?,
        remember: r.get(7)?,
        ua_hash: r.get(8)?,
    })
}

/// The session stored under `token_hash`, with its user.
pub fn by_token(c: &Connection, token_hash: &[u8; 32]) -> Result<Option<SessionRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("{SELECT} WHERE s.token_hash = ?1"))?;
    Ok(stmt.query_row([&token_hash[..]], row).optional()?)
}

/// Sessions by id (those that still exist), for re-checking live sockets.
pub fn by_ids(c: &Connection, ids: &[i64]) -> Result<Vec<SessionRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("{SELECT} WHERE s.id = ?1"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = stmt.query_row([id], row).optional()? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Records activity. Callers coalesce: at most once a minute per session.
pub fn touch(c: &mut Connection, id: i64, now: i64) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached("UPDATE sessions SET last_seen = ?1 WHERE id = ?2 AND last_seen < ?1")?
        .execute(params![now, id])?;
    tx.commit()?;
    Ok(())
}

/// Records activity of several sessions in one `BEGIN IMMEDIATE`
/// transaction (live sockets keep their sessions active).
pub fn touch_many(c: &Connection, ids: &[i64], now: i64) -> Result<(), StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE sessions SET last_seen = ?1 WHERE id = ?2 AND last_seen < ?1",
        )?;
        for id in ids {
            stmt.execute(params![now, id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Deletes one session by id.
pub fn delete(c: &mut Connection, id: i64) -> Result<bool, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(n > 0)
}

/// Deletes every session of a user inside the caller's transaction; returns
/// their ids.
pub fn delete_for_user(tx: &Connection, user_id: i64) -> Result<Vec<i64>, StoreError> {
    let mut stmt = tx.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 RETURNING id")?;
    let ids = stmt
        .query_map([user_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// Deletes every session of a user in its own transaction.
pub fn revoke_user(c: &mut Connection, user_id: i64) -> Result<Vec<i64>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids = delete_for_user(&tx, user_id)?;
    tx.commit()?;
    Ok(ids)
}

/// Deletes sessions past their absolute end, or (without `remember`) idle
/// since before `idle_cutoff`. Returns how many.
pub fn sweep(c: &mut Connection, now: i64, idle_cutoff: i64) -> Result<usize, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "DELETE FROM sessions WHERE expires_at <= ?1 OR (remember = 0 AND last_seen <= ?2)",
        params![now, idle_cutoff],
    )?;
    tx.commit()?;
    Ok(n)
}

/// Number of stored sessions.
pub fn count(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))?)
}

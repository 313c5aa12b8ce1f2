//! Users: create, look up for login, change password, enable/disable,
//! remove, list, seed. Changes that end a user's access delete the user's
//! sessions in the same transaction.

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::{StoreError, now_ms};
use crate::error::Error;

/// What a login needs of a user.
#[derive(Debug, Clone)]
pub struct LoginUser {
    /// Row id.
    pub id: i64,
    /// The name as created (case kept).
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Disabled users cannot log in.
    pub disabled: bool,
}

/// A row of `wsgate user list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Row id.
    pub id: i64,
    /// The name.
    pub username: String,
    /// Whether disabled.
    pub disabled: bool,
    /// Creation time, ms.
    pub created_at: i64,
    /// Sessions currently stored.
    pub sessions: i64,
}

fn immediate(c: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    c.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// Creates a user; [`Error::DuplicateUser`] when the name exists ignoring
/// ASCII case.
pub fn create(c: &mut Connection, username: &str, phc: &str) -> Result<i64, StoreError> {
    let now = now_ms();
    let tx = immediate(c)?;
    let res = tx.execute(
        "INSERT INTO users (username, password_hash, disabled, created_at, updated_at)
         VALUES (?1, ?2, 0, ?3, ?3)",
        params![username, phc, now],
    );
    match res {
        Ok(_) => {}
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
            return Err(Error::DuplicateUser(username.to_owned()).into());
        }
        Err(e) => return Err(e.into()),
    }
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

/// Looks a user up by name, ignoring ASCII case.
pub fn find_for_login(c: &Connection, username: &str) -> Result<Option<LoginUser>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, username, password_hash, disabled FROM users WHERE username = ?1",
    )?;
    Ok(stmt
        .query_row([username], |r| {
            Ok(LoginUser {
                id: r.get(0)?,
                username: r.get(1)?,
                password_hash: r.get(2)?,
                disabled: r.get(3)?,
            })
        })
        .optional()?)
}

fn user_id(tx: &Connection, username: &str) -> Result<i64, StoreError> {
    tx.query_row(
        "SELECT id FROM users WHERE username = ?1",
        [username],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::UnknownUser(username.to_owned()).into())
}

/// Sets a new password and revokes every session of the user. Returns the
/// user id and the revoked session ids.
pub fn set_password(
    c: &mut Connection,
    username: &str,
    phc: &str,
) -> Result<(i64, Vec<i64>), StoreError> {
    let tx = immediate(c)?;
    let id = user_id(&tx, username)?;
    tx.execute(
        "UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3",
        params![phc, now_ms(), id],
    )?;
    let revoked = super::sessions::delete_for_user(&tx, id)?;
    tx.commit()?;
    Ok((id, revoked))
}

/// Disables (revoking every session) or enables a user. Returns the user id
/// and the revoked session ids.
pub fn set_disabled(
    c: &mut Connection,
    username: &str,
    disabled: bool,
) -> Result<(i64, Vec<i64>), StoreError> {
    let tx = immediate(c)?;
    let id = user_id(&tx, username)?;
    tx.execute(
        "UPDATE users SET disabled = ?1, updated_at = ?2 WHERE id = ?3",
        params![disabled, now_ms(), id],
    )?;
    let revoked = if disabled {
        super::sessions::delete_for_user(&tx, id)?
    } else {
        Vec::new()
    };
    tx.commit()?;
    Ok((id, revoked))
}

/// Removes a user and every session of theirs. Returns the user id and the
/// revoked session ids.
pub fn remove(c: &mut Connection, username: &str) -> Result<(i64, Vec<i64>), StoreError> {
    let tx = immediate(c)?;
    let id = user_id(&tx, username)?;
    let revoked = super::sessions::delete_for_user(&tx, id)?;
    tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok((id, revoked))
}

/// Every user, by name.
pub fn list(c: &Connection) -> Result<Vec<UserInfo>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT u.id, u.username, u.disabled, u.created_at,
                (SELECT count(*) FROM sessions s WHERE s.user_id = u.id)
         FROM users u ORDER BY u.username COLLATE BINARY",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(UserInfo {
            id: r.get(0)?,
            username: r.get(1)?,
            disabled: r.get(2)?,
            created_at: r.get(3)?,
            sessions: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Number of users.
pub fn count(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// Creates `PREFIX0..PREFIX{count-1}` with one shared password hash, in one
/// transaction; existing ones get the password reset (and are enabled).
/// For load tests only. Returns (created, updated).
pub fn seed(
    c: &mut Connection,
    prefix: &str,
    count: u64,
    phc: &str,
) -> Result<(u64, u64), StoreError> {
    let now = now_ms();
    let tx = immediate(c)?;
    let (mut created, mut updated) = (0, 0);
    {
        let mut insert = tx.prepare(
            "INSERT INTO users (username, password_hash, disabled, created_at, updated_at)
             VALUES (?1, ?2, 0, ?3, ?3)
             ON CONFLICT(username) DO UPDATE SET
                password_hash = excluded.password_hash, disabled = 0, updated_at = excluded.updated_at
             RETURNING created_at = ?3 AND updated_at = ?3",
        )?;
        for i in 0..count {
            let name = format!("{prefix}{i}");
            let fresh: bool = insert.query_row(params![name, phc, now], |r| r.get(0))?;
            if fresh {
                created += 1;
            } else {
                updated += 1;
            }
        }
    }
    tx.commit()?;
    Ok((created, updated))
}

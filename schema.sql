-- wsgate SQLite schema, version 1 (PRAGMA user_version = 1).
-- Applied at start by src/store/schema.rs; every statement is idempotent.

-- Accounts. Usernames are unique ignoring ASCII case (NOCASE folds ASCII
-- only, exactly PROTOCOL.md's rule) and keep the case they were created with.
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,          -- argon2id PHC string
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,          -- ms since the Unix epoch
    updated_at    INTEGER NOT NULL
);

-- Login sessions, keyed by SHA-256 of the cookie's random token: the token
-- itself is never stored, so a copy of this file lets nobody log in.
CREATE TABLE IF NOT EXISTS sessions (
    id         INTEGER PRIMARY KEY,
    token_hash BLOB    NOT NULL UNIQUE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,             -- absolute end
    last_seen  INTEGER NOT NULL,             -- written at most once a minute
    remember   INTEGER NOT NULL,             -- 1: no idle limit
    ua_hash    BLOB                          -- session protection binding
);

CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions(user_id);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions(expires_at);
CREATE INDEX IF NOT EXISTS sessions_idle ON sessions(remember, last_seen);

//! Session policy: lifetimes, idle limits and the User-Agent binding of
//! session protection. Pure functions over a stored row and the clock.

use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::store::SessionRow;

/// SHA-256 of a User-Agent with every run of ASCII digits removed, so a
/// browser's version update does not end its sessions.
pub fn ua_hash(user_agent: &str) -> [u8; 32] {
    let stripped: String = user_agent.chars().filter(|c| !c.is_ascii_digit()).collect();
    Sha256::digest(stripped.as_bytes()).into()
}

/// Absolute end (ms) of a session created at `now`.
pub fn expires_at(cfg: &AuthConfig, now: i64, remember: bool) -> i64 {
    let life = if remember {
        cfg.remember_lifetime
    } else {
        cfg.session_lifetime
    };
    now.saturating_add(i64::try_from(life.as_millis()).unwrap_or(i64::MAX))
}

/// When the session ends given its last activity: the absolute end, or
/// sooner by the idle limit for sessions without `remember`.
pub fn effective_end(cfg: &AuthConfig, row: &SessionRow) -> i64 {
    if row.remember {
        row.expires_at
    } else {
        let idle = i64::try_from(cfg.session_idle.as_millis()).unwrap_or(i64::MAX);
        row.expires_at.min(row.last_seen.saturating_add(idle))
    }
}

/// Whether the session has ended at `now`.
pub fn is_expired(cfg: &AuthConfig, row: &SessionRow, now: i64) -> bool {
    effective_end(cfg, row) <= now
}

/// Whether last-seen is due for a write (coalesced to one per interval).
pub fn touch_due(cfg: &AuthConfig, row: &SessionRow, now: i64) -> bool {
    let every = i64::try_from(cfg.touch_interval.as_millis()).unwrap_or(i64::MAX);
    now.saturating_sub(row.last_seen) >= every
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn row(remember: bool, created: i64, last_seen: i64, cfg: &AuthConfig) -> SessionRow {
        SessionRow {
            id: 1,
            user_id: 1,
            username: "a".into(),
            user_disabled: false,
            created_at: created,
            expires_at: expires_at(cfg, created, remember),
            last_seen,
            remember,
            ua_hash: None,
        }
    }

    const H: i64 = 3_600_000;

    #[test]
    fn lifetimes() {
        let cfg = Config::new("/tmp").auth;
        // plain: 2 h idle
        let r = row(false, 0, 0, &cfg);
        assert!(!is_expired(&cfg, &r, 2 * H - 1));
        assert!(is_expired(&cfg, &r, 2 * H));
        // plain, active: 12 h absolute
        let r = row(false, 0, 11 * H, &cfg);
        assert!(!is_expired(&cfg, &r, 12 * H - 1));
        assert!(is_expired(&cfg, &r, 12 * H));
        // remember: 30 days, no idle limit
        let r = row(true, 0, 0, &cfg);
        assert!(!is_expired(&cfg, &r, 29 * 24 * H));
        assert!(is_expired(&cfg, &r, 30 * 24 * H));
    }

    #[test]
    fn touch_is_coalesced() {
        let cfg = Config::new("/tmp").auth;
        let r = row(false, 0, 0, &cfg);
        assert!(!touch_due(&cfg, &r, 59_999));
        assert!(touch_due(&cfg, &r, 60_000));
    }

    #[test]
    fn ua_hash_ignores_versions() {
        let a = ua_hash("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.6099.71 Safari/537.36");
        let b = ua_hash("Mozilla/5.0 (X11; Linux x86_64) Chrome/121.0.6167.85 Safari/537.36");
        let c = ua_hash("Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

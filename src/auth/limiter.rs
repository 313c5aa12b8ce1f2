//! Failed-login limits: token buckets per (client address, username) and per
//! client address that refuse with 429, and a per-username slowdown that
//! delays (never refuses) checks of a username attacked from many addresses.
//!
//! Only failures take tokens; a success clears its (address, username)
//! bucket. Time is passed in, so the arithmetic is tested without sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Rate;

/// Buckets kept before full (idle) ones are pruned.
const PRUNE_AT: usize = 50_000;
/// Delay added per failure beyond a username's slowdown threshold.
const SLOWDOWN_STEP: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by `K`, all of one shape.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    /// Lowest a bucket may go (negative: debt that takes longer to repay).
    floor: f64,
    /// The buckets; bounded by pruning full ones at [`PRUNE_AT`].
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    /// Buckets of `rate`, never below `floor` tokens.
    pub fn new(rate: Rate, floor: f64) -> Self {
        Self {
            rate,
            floor,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn per_sec(&self) -> f64 {
        self.rate.per_minute / 60.0
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + dt * self.per_sec()).min(self.rate.burst)
    }

    /// Tokens available for `key` now.
    pub fn tokens(&self, key: &K, now: Instant) -> f64 {
        let Ok(map) = self.map.lock() else {
            return self.rate.burst;
        };
        map.get(key)
            .map_or(self.rate.burst, |b| self.refilled(*b, now))
    }

    /// `Err(wait)` when `key` has less than one token: the time until it has.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let t = self.tokens(key, now);
        if t >= 1.0 {
            Ok(())
        } else if self.per_sec() > 0.0 {
            Err(Duration::from_secs_f64((1.0 - t) / self.per_sec()))
        } else {
            Err(Duration::from_secs(3600))
        }
    }

    /// Takes one token from `key` (down to the floor).
    pub fn take(&self, key: &K, now: Instant) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= PRUNE_AT {
            let burst = self.rate.burst;
            let per_sec = self.per_sec();
            map.retain(|_, b| {
                let dt = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + dt * per_sec < burst
            });
        }
        let t = map
            .get(key)
            .map_or(self.rate.burst, |b| self.refilled(*b, now));
        map.insert(
            key.clone(),
            Bucket {
                tokens: (t - 1.0).max(self.floor),
                at: now,
            },
        );
    }

    /// Forgets `key` (a full bucket).
    pub fn clear(&self, key: &K) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The login limiter.
#[derive(Debug)]
pub struct LoginLimiter {
    per_user_addr: Buckets<(IpAddr, String)>,
    per_addr: Buckets<IpAddr>,
    per_user: Buckets<String>,
    slowdown_max: Duration,
}

impl LoginLimiter {
    /// A limiter with these shapes. `slowdown_after` failures of a username
    /// per minute (from anywhere) are free; each one beyond adds
    /// [`SLOWDOWN_STEP`] to that username's checks, up to `slowdown_max`.
    pub fn new(user_addr: Rate, addr: Rate, slowdown_after: u32, slowdown_max: Duration) -> Self {
        let n = f64::from(slowdown_after.max(1));
        let max_steps = slowdown_max.as_secs_f64() / SLOWDOWN_STEP.as_secs_f64();
        Self {
            // Attempts are checked before their outcome is known, so
            // concurrent ones can overdraw a bucket; the debt is kept and
            // repaid at the bucket's rate, so concurrency cannot beat it.
            per_user_addr: Buckets::new(user_addr, f64::NEG_INFINITY),
            per_addr: Buckets::new(addr, f64::NEG_INFINITY),
            per_user: Buckets::new(
                Rate {
                    per_minute: n,
                    burst: n,
                },
                -max_steps,
            ),
            slowdown_max,
        }
    }

    fn key(addr: IpAddr, username: &str) -> (IpAddr, String) {
        (addr, username.to_ascii_lowercase())
    }

    /// `Err(retry_after)` when this address, or this address for this
    /// username, has failed too often.
    pub fn check(&self, addr: IpAddr, username: &str, now: Instant) -> Result<(), Duration> {
        let a = self.per_addr.check(&addr, now);
        let ua = self.per_user_addr.check(&Self::key(addr, username), now);
        match (a, ua) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(x), Ok(())) | (Ok(()), Err(x)) => Err(x),
            (Err(x), Err(y)) => Err(x.max(y)),
        }
    }

    /// Delay to add before checking `username`'s password: zero until the
    /// username has failed more than the threshold in the last minute.
    pub fn slowdown(&self, username: &str, now: Instant) -> Duration {
        let t = self.per_user.tokens(&username.to_ascii_lowercase(), now);
        if t >= 0.0 {
            Duration::ZERO
        } else {
            SLOWDOWN_STEP.mul_f64(-t).min(self.slowdown_max)
        }
    }

    /// Records a failed login.
    pub fn failed(&self, addr: IpAddr, username: &str, now: Instant) {
        self.per_addr.take(&addr, now);
        self.per_user_addr.take(&Self::key(addr, username), now);
        self.per_user.take(&username.to_ascii_lowercase(), now);
    }

    /// Records a successful login: the (address, username) slate is wiped.
    pub fn succeeded(&self, addr: IpAddr, username: &str) {
        self.per_user_addr.clear(&Self::key(addr, username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(
            Rate {
                per_minute: 5.0,
                burst: 10.0,
            },
            Rate {
                per_minute: 30.0,
                burst: 30.0,
            },
            20,
            Duration::from_secs(2),
        )
    }

    #[test]
    fn ten_failures_then_429_then_refill() {
        let l = limiter();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.check(a, "alice", t0).is_ok());
            l.failed(a, "alice", t0);
        }
        let wait = l.check(a, "alice", t0).unwrap_err();
        // 5 per minute: one token in 12 s
        assert!((11.9..=12.1).contains(&wait.as_secs_f64()), "{wait:?}");
        // case-insensitive key
        assert!(l.check(a, "ALICE", t0).is_err());
        // another username from the same address is still allowed
        assert!(l.check(a, "bob", t0).is_ok());
        // after 12 s one more try is allowed
        assert!(l.check(a, "alice", t0 + Duration::from_secs(12)).is_ok());
    }

    #[test]
    fn per_address_limit_spans_usernames() {
        let l = limiter();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..30 {
            let u = format!("user{}", i % 10);
            assert!(l.check(a, &u, t0).is_ok(), "attempt {i}");
            l.failed(a, &u, t0);
        }
        assert!(l.check(a, "fresh", t0).is_err());
        // other addresses are unaffected
        assert!(l.check("10.0.0.3".parse().unwrap(), "fresh", t0).is_ok());
    }

    #[test]
    fn success_clears_the_pair() {
        let l = limiter();
        let a: IpAddr = "10.0.0.4".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..9 {
            l.failed(a, "carol", t0);
        }
        l.succeeded(a, "carol");
        for _ in 0..9 {
            assert!(l.check(a, "carol", t0).is_ok());
            l.failed(a, "carol", t0);
        }
    }

    #[test]
    fn concurrent_failures_beyond_the_burst_are_owed() {
        let l = limiter();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let t0 = Instant::now();
        // 40 attempts all checked before any failed (in flight together).
        for _ in 0..40 {
            assert!(l.check(a, "frank", t0).is_ok());
        }
        for _ in 0..40 {
            l.failed(a, "frank", t0);
        }
        // 30 beyond the burst of 10, at 12 s each, and one more to try.
        let wait = l.check(a, "frank", t0).unwrap_err();
        assert!((371.9..=372.1).contains(&wait.as_secs_f64()), "{wait:?}");
        // The address owes 10 beyond its 30: 20 s, then 2 s for a token.
        let wait = l.check(a, "someone-else", t0).unwrap_err();
        assert!((21.9..=22.1).contains(&wait.as_secs_f64()), "{wait:?}");
    }

    #[test]
    fn distributed_attack_slows_but_never_refuses_a_clean_address() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..60u8 {
            let a = IpAddr::from([10, 1, 0, i]);
            l.failed(a, "dave", t0);
        }
        let clean: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.check(clean, "dave", t0).is_ok());
        let d = l.slowdown("dave", t0);
        assert!(d > Duration::ZERO && d <= Duration::from_secs(2), "{d:?}");
        assert_eq!(l.slowdown("erin", t0), Duration::ZERO);
        // the slowdown fades
        assert_eq!(
            l.slowdown("dave", t0 + Duration::from_secs(600)),
            Duration::ZERO
        );
    }
}

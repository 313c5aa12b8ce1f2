//! Live sockets: each connection's shared handle ([`Conn`]: its bounded
//! outbound queue and close signal) and the registry that finds them by
//! connection, user and session. Removal happens in one place,
//! [`Registry::unregister`], whichever way a socket ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::close::CloseReason;

/// What one live socket shares with the hub and the registry. The
/// connection task is the only reader of the queue.
pub struct Conn {
    /// Connection id, unique in this process.
    pub id: u64,
    /// Owner.
    pub user_id: i64,
    /// Owner's name as stored.
    pub username: Arc<str>,
    /// The session the socket was opened with.
    pub session_id: i64,
    /// Frames waiting for the writer; at most `capacity`, overflow closes
    /// the socket with 4002 (never blocks the producer).
    queue: Mutex<VecDeque<Utf8Bytes>>,
    capacity: usize,
    /// Wakes the connection task: frames queued, ping due, or closing.
    wake: Notify,
    /// Close code asked for (0: none). The first reason wins.
    close: AtomicU16,
    /// Milliseconds since the gateway's start of the last pong.
    last_pong: AtomicU64,
    /// Milliseconds since the gateway's start of the last ping asked for.
    last_ping: AtomicU64,
    /// A ping is due (set by the heartbeat, cleared by the writer).
    ping_due: std::sync::atomic::AtomicBool,
}

/// Queue capacity kept after a burst drains (the rest is released).
const QUEUE_KEEP: usize = 32;

impl Conn {
    fn new(
        id: u64,
        user_id: i64,
        username: Arc<str>,
        session_id: i64,
        capacity: usize,
        now: u64,
    ) -> Self {
        Self {
            id,
            user_id,
            username,
            session_id,
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: Notify::new(),
            close: AtomicU16::new(0),
            last_pong: AtomicU64::new(now),
            last_ping: AtomicU64::new(now),
            ping_due: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A connection outside any registry (tests and benches).
    pub fn detached(id: u64, username: &str, capacity: usize) -> Arc<Self> {
        Arc::new(Self::new(
            id,
            id as i64,
            username.into(),
            id as i64,
            capacity,
            0,
        ))
    }

    /// Queues a frame. `false` when the socket is closing or its queue is
    /// full; a full queue also closes it as a slow consumer.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        if self.close.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let Ok(mut q) = self.queue.lock() else {
            return false;
        };
        if q.len() >= self.capacity {
            drop(q);
            self.close(CloseReason::SlowConsumer);
            return false;
        }
        let was_empty = q.is_empty();
        q.push_back(frame);
        drop(q);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Moves every queued frame into `out`.
    pub fn drain_into(&self, out: &mut Vec<Utf8Bytes>) {
        if let Ok(mut q) = self.queue.lock() {
            out.extend(q.drain(..));
            if q.capacity() > QUEUE_KEEP {
                q.shrink_to(QUEUE_KEEP);
            }
        }
    }

    /// Frames queued now.
    pub fn queued(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.len())
    }

    /// Asks the connection to close with `reason` (the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        if self
            .close
            .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// The close asked for, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_code(self.close.load(Ordering::Acquire))
    }

    /// Resolves when something is queued, a ping is due or a close is asked.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Records a pong at `now_ms` (gateway clock).
    pub fn pong(&self, now_ms: u64) {
        self.last_pong.store(now_ms, Ordering::Relaxed);
    }

    /// Takes a due ping, if any.
    pub fn take_ping(&self) -> bool {
        self.ping_due.swap(false, Ordering::AcqRel)
    }

    /// Heartbeat step at `now`: closes after `timeout` without pong, asks
    /// for a ping every `interval`.
    pub fn heartbeat(&self, now: u64, interval: u64, timeout: u64) {
        if now.saturating_sub(self.last_pong.load(Ordering::Relaxed)) >= timeout {
            self.close(CloseReason::HeartbeatTimeout);
        } else if now.saturating_sub(self.last_ping.load(Ordering::Relaxed)) >= interval {
            self.last_ping.store(now, Ordering::Relaxed);
            self.ping_due.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }
}

/// Why a socket cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    /// The user holds the most sockets allowed.
    PerUser,
    /// The gateway holds the most sockets allowed.
    Global,
}

/// Every live socket, by connection id, by user and by session.
pub struct Registry {
    /// Connection id -> handle.
    conns: DashMap<u64, Arc<Conn>>,
    /// Lower-case username -> connection ids (also the per-user limit).
    by_user: DashMap<Box<str>, Vec<u64>>,
    /// Session id -> connection ids.
    by_session: DashMap<i64, Vec<u64>>,
    /// Sockets registered.
    total: AtomicUsize,
    next_id: AtomicU64,
    max_per_user: usize,
    max_total: usize,
    queue_capacity: usize,
    started: Instant,
}

impl Registry {
    /// An empty registry with these limits.
    pub fn new(max_per_user: usize, max_total: usize, queue_capacity: usize) -> Self {
        Self {
            conns: DashMap::new(),
            by_user: DashMap::new(),
            by_session: DashMap::new(),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            max_per_user,
            max_total,
            queue_capacity,
            started: Instant::now(),
        }
    }

    /// Milliseconds since the registry was made (the heartbeat clock).
    pub fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sockets registered.
    pub fn len(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether no socket is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a socket within the per-user and global limits.
    ///
    /// # Errors
    /// [`LimitError`] when a limit is reached.
    pub fn register(
        &self,
        user_id: i64,
        username: &str,
        session_id: i64,
    ) -> Result<Arc<Conn>, LimitError> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::Global);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut ids = self
                .by_user
                .entry(username.to_ascii_lowercase().into_boxed_str())
                .or_default();
            if ids.len() >= self.max_per_user {
                drop(ids);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitError::PerUser);
            }
            ids.push(id);
        }
        let conn = Arc::new(Conn::new(
            id,
            user_id,
            username.into(),
            session_id,
            self.queue_capacity,
            self.clock_ms(),
        ));
        self.by_session.entry(session_id).or_default().push(id);
        self.conns.insert(id, conn.clone());
        Ok(conn)
    }

    /// Removes a socket; the only place a socket leaves the registry.
    pub fn unregister(&self, conn: &Conn) {
        if self.conns.remove(&conn.id).is_none() {
            return;
        }
        let key = conn.username.to_ascii_lowercase();
        self.by_user.remove_if_mut(key.as_str(), |_, ids| {
            ids.retain(|i| *i != conn.id);
            ids.is_empty()
        });
        self.by_session.remove_if_mut(&conn.session_id, |_, ids| {
            ids.retain(|i| *i != conn.id);
            ids.is_empty()
        });
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    fn handles(&self, ids: &[u64]) -> Vec<Arc<Conn>> {
        ids.iter()
            .filter_map(|id| self.conns.get(id).map(|c| c.clone()))
            .collect()
    }

    /// Live sockets of a user, by name (ignoring ASCII case).
    pub fn sockets_of(&self, username: &str) -> Vec<Arc<Conn>> {
        let ids = self
            .by_user
            .get(username.to_ascii_lowercase().as_str())
            .map(|v| v.clone())
            .unwrap_or_default();
        self.handles(&ids)
    }

    /// Closes every socket of these sessions. Returns how many.
    pub fn close_sessions(&self, sessions: &[i64], reason: CloseReason) -> usize {
        let mut n = 0;
        for s in sessions {
            let ids = self
                .by_session
                .get(s)
                .map(|v| v.clone())
                .unwrap_or_default();
            for c in self.handles(&ids) {
                c.close(reason);
                n += 1;
            }
        }
        n
    }

    /// Closes every socket.
    pub fn close_all(&self, reason: CloseReason) {
        for c in &self.conns {
            c.close(reason);
        }
    }

    /// Session ids with at least one live socket.
    pub fn live_sessions(&self) -> Vec<i64> {
        self.by_session.iter().map(|e| *e.key()).collect()
    }

    /// Runs `f` on every live socket.
    pub fn for_each(&self, mut f: impl FnMut(&Conn)) {
        for c in &self.conns {
            f(c.value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_overflow_closes_as_slow_consumer() {
        let c = Conn::detached(1, "a", 2);
        assert!(c.push(Utf8Bytes::from_static("1")));
        assert!(c.push(Utf8Bytes::from_static("2")));
        assert!(!c.push(Utf8Bytes::from_static("3")));
        assert_eq!(c.close_reason(), Some(CloseReason::SlowConsumer));
        // the first reason wins
        c.close(CloseReason::GoingAway);
        assert_eq!(c.close_reason(), Some(CloseReason::SlowConsumer));
        let mut out = Vec::new();
        c.drain_into(&mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn limits_and_one_place_removal() {
        let r = Registry::new(2, 3, 8);
        let a1 = r.register(1, "Alice", 10).unwrap();
        let a2 = r.register(1, "alice", 11).unwrap();
        assert_eq!(r.register(1, "ALICE", 12).err(), Some(LimitError::PerUser));
        let b = r.register(2, "bob", 20).unwrap();
        assert_eq!(r.register(3, "carol", 30).err(), Some(LimitError::Global));
        assert_eq!(r.len(), 3);
        assert_eq!(r.sockets_of("ALICE").len(), 2);
        assert_eq!(r.close_sessions(&[11], CloseReason::SessionEnded), 1);
        assert_eq!(a2.close_reason(), Some(CloseReason::SessionEnded));
        assert_eq!(a1.close_reason(), None);
        r.unregister(&a2);
        r.unregister(&a2); // idempotent
        assert_eq!(r.len(), 2);
        assert_eq!(r.sockets_of("alice").len(), 1);
        let mut live = r.live_sessions();
        live.sort();
        assert_eq!(live, vec![10, 20]);
        r.unregister(&a1);
        r.unregister(&b);
        assert!(r.is_empty());
        assert!(r.live_sessions().is_empty());
        assert!(r.register(3, "carol", 30).is_ok());
    }

    #[test]
    fn heartbeat_pings_then_times_out() {
        let c = Conn::detached(1, "a", 2);
        c.heartbeat(1_000, 1_000, 3_000);
        assert!(c.take_ping());
        assert!(!c.take_ping());
        c.pong(2_500);
        c.heartbeat(4_000, 1_000, 3_000);
        assert_eq!(c.close_reason(), None);
        c.heartbeat(5_500, 1_000, 3_000);
        assert_eq!(c.close_reason(), Some(CloseReason::HeartbeatTimeout));
    }
}

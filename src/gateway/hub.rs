//! Rooms: membership, presence and ordered fan-out. The hub never touches a
//! socket: it pushes pre-encoded frames into connection handles.
//!
//! Each room has one short lock. A publish takes it, assigns the next `seq`,
//! encodes the frame once and queues the same bytes to every member, so all
//! members see one order. `epoch` names the life of a room's counter: a new
//! random value whenever a room is created, so a client that sees a new
//! epoch knows the counter restarted. Rooms without members are dropped
//! after a linger time (an idle sweep), which keeps `seq` continuous across
//! a quick rejoin.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frame::FrameBuf;
use super::registry::Conn;
use crate::store::now_ms;

/// Reply to a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The room's last sequence number (0 if none).
    pub seq: u64,
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// Usernames present after the join, sorted bytewise.
    pub users: Vec<Arc<str>>,
}

/// Result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Sockets the message was queued to.
    pub delivered: usize,
    /// The message's sequence number.
    pub seq: u64,
    /// The room's epoch.
    pub epoch: Arc<str>,
}

struct RoomState {
    seq: u64,
    epoch: Arc<str>,
    /// Member sockets by connection id.
    members: HashMap<u64, Arc<Conn>>,
    /// Sockets per username, sorted bytewise (presence).
    users: BTreeMap<Arc<str>, u32>,
    /// Since when the room has had no member.
    empty_since: Option<Instant>,
    /// Removed from the hub; a join that raced the removal retries.
    dead: bool,
}

struct Room {
    name: Arc<str>,
    state: Mutex<RoomState>,
}

/// Counters the hub keeps.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Messages published.
    pub published: AtomicU64,
    /// Message frames queued to sockets.
    pub delivered: AtomicU64,
}

/// All rooms of this node.
pub struct Hub {
    rooms: DashMap<Arc<str>, Arc<Room>>,
    /// Counters.
    pub stats: HubStats,
}

fn new_epoch() -> Arc<str> {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        .into()
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            rooms: DashMap::new(),
            stats: HubStats::default(),
        }
    }

    /// Rooms held.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room is held.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    fn room(&self, name: &str) -> Arc<Room> {
        if let Some(r) = self.rooms.get(name) {
            return r.clone();
        }
        self.rooms
            .entry(Arc::from(name))
            .or_insert_with(|| {
                Arc::new(Room {
                    name: Arc::from(name),
                    state: Mutex::new(RoomState {
                        seq: 0,
                        epoch: new_epoch(),
                        members: HashMap::new(),
                        users: BTreeMap::new(),
                        empty_since: Some(Instant::now()),
                        dead: false,
                    }),
                })
            })
            .clone()
    }

    /// Runs `f` on the live state of `name`, creating the room if needed.
    fn with_room<T>(&self, name: &str, mut f: impl FnMut(&Room, &mut RoomState) -> T) -> Option<T> {
        loop {
            let room = self.room(name);
            let Ok(mut st) = room.state.lock() else {
                return None;
            };
            if st.dead {
                continue; // lost a race with the sweep: take the new room
            }
            return Some(f(&room, &mut st));
        }
    }

    /// Adds `conn` to `room` (idempotent). The first socket of a user sends
    /// a `presence_diff` to the other members.
    pub fn join(&self, conn: &Arc<Conn>, room: &str) -> Joined {
        self.with_room(room, |r, st| {
            if let std::collections::hash_map::Entry::Vacant(slot) = st.members.entry(conn.id) {
                slot.insert(conn.clone());
                st.empty_since = None;
                let n = st.users.entry(conn.username.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    let diff = FrameBuf::new("presence_diff")
                        .str("room", &r.name)
                        .str_list("joins", [&*conn.username])
                        .str_list("leaves", [])
                        .finish();
                    fan_out(st, &diff, Some(conn.id));
                }
            }
            Joined {
                seq: st.seq,
                epoch: st.epoch.clone(),
                users: st.users.keys().cloned().collect(),
            }
        })
        .unwrap_or_else(|| Joined {
            seq: 0,
            epoch: new_epoch(),
            users: Vec::new(),
        })
    }

    /// Removes `conn` from `room`; `false` if it was not a member. The last
    /// socket of a user sends a `presence_diff` to the remaining members.
    pub fn leave(&self, conn: &Conn, room: &str) -> bool {
        let Some(r) = self.rooms.get(room).map(|r| r.clone()) else {
            return false;
        };
        let Ok(mut st) = r.state.lock() else {
            return false;
        };
        if st.members.remove(&conn.id).is_none() {
            return false;
        }
        let gone = match st.users.get_mut(&conn.username) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                st.users.remove(&conn.username);
                true
            }
        };
        if gone {
            let diff = FrameBuf::new("presence_diff")
                .str("room", &r.name)
                .str_list("joins", [])
                .str_list("leaves", [&*conn.username])
                .finish();
            fan_out(&st, &diff, None);
        }
        if st.members.is_empty() {
            st.empty_since = Some(Instant::now());
        }
        true
    }

    /// Usernames present in `room`, sorted.
    pub fn presence(&self, room: &str) -> Vec<Arc<str>> {
        self.rooms
            .get(room)
            .and_then(|r| {
                r.state
                    .lock()
                    .ok()
                    .map(|st| st.users.keys().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Publishes `data` (raw JSON) to `room` from `from` (None: the server).
    /// Members whose queue is full are closed as slow consumers and not
    /// counted in `delivered`.
    pub fn publish(&self, room: &str, from: Option<&str>, data: &str) -> Published {
        let ts = now_ms();
        let p = self
            .with_room(room, |r, st| {
                st.seq += 1;
                let frame = FrameBuf::new("message")
                    .str("room", &r.name)
                    .opt_str("from", from)
                    .raw("data", data)
                    .int("seq", st.seq)
                    .str("epoch", &st.epoch)
                    .int("ts", ts)
                    .finish();
                let delivered = fan_out(st, &frame, None);
                Published {
                    delivered,
                    seq: st.seq,
                    epoch: st.epoch.clone(),
                }
            })
            .unwrap_or_else(|| Published {
                delivered: 0,
                seq: 0,
                epoch: new_epoch(),
            });
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.stats
            .delivered
            .fetch_add(p.delivered as u64, Ordering::Relaxed);
        p
    }

    /// Drops rooms that have had no member for `linger`. Returns how many.
    pub fn sweep(&self, linger: Duration) -> usize {
        let now = Instant::now();
        let mut dropped = 0;
        self.rooms.retain(|_, room| {
            let Ok(mut st) = room.state.lock() else {
                return true;
            };
            let idle = st
                .empty_since
                .is_some_and(|t| st.members.is_empty() && now.duration_since(t) >= linger);
            if idle {
                st.dead = true;
                dropped += 1;
            }
            !idle
        });
        dropped
    }
}

/// Queues `frame` to every member but `except`; returns how many took it.
fn fan_out(st: &RoomState, frame: &Utf8Bytes, except: Option<u64>) -> usize {
    let mut n = 0;
    for (id, c) in &st.members {
        if Some(*id) != except && c.push(frame.clone()) {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::close::CloseReason;

    fn frames(c: &Conn) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        c.drain_into(&mut out);
        out.iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect()
    }

    #[test]
    fn join_publish_order_and_presence() {
        let hub = Hub::new();
        let a = Conn::detached(1, "alice", 64);
        let b = Conn::detached(2, "bob", 64);
        let j = hub.join(&a, "lobby");
        assert_eq!((j.seq, j.users.len()), (0, 1));
        let j2 = hub.join(&b, "lobby");
        assert_eq!(j2.epoch, j.epoch);
        assert_eq!(
            j2.users.iter().map(|u| &**u).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        // alice hears bob's arrival; bob hears nothing about his own join
        let fa = frames(&a);
        assert_eq!(fa.len(), 1);
        assert_eq!(fa[0]["type"], "presence_diff");
        assert_eq!(fa[0]["joins"][0], "bob");
        assert!(frames(&b).is_empty());
        // idempotent join: same ack, no diff
        assert_eq!(hub.join(&b, "lobby").users.len(), 2);
        assert!(frames(&a).is_empty());

        for i in 0..10 {
            let p = hub.publish("lobby", Some("alice"), &i.to_string());
            assert_eq!((p.seq, p.delivered), (i + 1, 2));
        }
        for c in [&a, &b] {
            let seqs: Vec<u64> = frames(c)
                .iter()
                .map(|f| f["seq"].as_u64().unwrap())
                .collect();
            assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        }
        // a second socket of alice: no diff; leaving it: no diff
        let a2 = Conn::detached(3, "alice", 64);
        hub.join(&a2, "lobby");
        assert!(frames(&b).is_empty());
        assert!(hub.leave(&a2, "lobby"));
        assert!(frames(&b).is_empty());
        // alice's last socket leaves: bob hears it
        assert!(hub.leave(&a, "lobby"));
        assert!(!hub.leave(&a, "lobby"));
        let fb = frames(&b);
        assert_eq!(fb[0]["leaves"][0], "alice");
        assert_eq!(hub.presence("lobby").len(), 1);
    }

    #[test]
    fn slow_member_is_closed_and_others_keep_receiving() {
        let hub = Hub::new();
        let slow = Conn::detached(1, "slow", 4);
        let fast = Conn::detached(2, "fast", 1000);
        hub.join(&slow, "r");
        hub.join(&fast, "r");
        frames(&slow);
        frames(&fast);
        for _ in 0..10 {
            hub.publish("r", None, "1");
        }
        assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(frames(&fast).len(), 10);
    }

    #[test]
    fn empty_rooms_linger_then_get_a_new_epoch() {
        let hub = Hub::new();
        let a = Conn::detached(1, "a", 16);
        let e1 = hub.join(&a, "r").epoch;
        hub.publish("r", None, "1");
        hub.leave(&a, "r");
        assert_eq!(hub.sweep(Duration::from_secs(60)), 0);
        let j = hub.join(&a, "r");
        assert_eq!((j.seq, &j.epoch), (1, &e1));
        hub.leave(&a, "r");
        assert_eq!(hub.sweep(Duration::ZERO), 1);
        let j = hub.join(&a, "r");
        assert_eq!(j.seq, 0);
        assert_ne!(j.epoch, e1);
    }
}

//! `fanout`: N subscribers over R rooms, K publishers sending M messages of
//! S bytes with a window of unacked publishes. Reports delivered
//! messages/s, publish-to-receive latency, per-subscriber order checks, and
//! the CPU each side spent (server CPU per delivered message).
//!
//! The receive path stays cheap: subscribers are raw sockets (see `raw.rs`)
//! that read many frames per syscall into a 64 KiB buffer, and each frame
//! is scanned for `seq`, `epoch` and the send time without building a JSON
//! tree.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Table;
use crate::client::{Conn, Socket, cpu_of_self, login_all, metric, open_socket, pct, proc_sample};
use crate::raw::{Frame, RawSub};

/// Sockets per user (the server allows 32).
const SOCKETS_PER_USER: usize = 30;

/// The shape of a fan-out run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Subscriber sockets.
    pub subscribers: usize,
    /// Rooms; subscriber i is in room i % rooms.
    pub rooms: usize,
    /// Publisher sockets.
    pub publishers: usize,
    /// Messages per publisher.
    pub messages: usize,
    /// Bytes of `data` per message.
    pub size: usize,
    /// Publishes in flight per publisher: sent but not yet acked by the
    /// server or not yet received by every subscriber (end to end, so a
    /// tester slower than the server does not overflow the server's
    /// per-socket queues and get its subscribers closed as slow consumers).
    pub window: usize,
    /// Offered publishes per second over all publishers (None: as fast as
    /// the window allows).
    pub rate: Option<f64>,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Plan {
    /// Users needed (sockets spread 30 per user).
    pub fn users(&self) -> usize {
        (self.subscribers + self.publishers)
            .div_ceil(SOCKETS_PER_USER)
            .max(1)
    }

    fn room_of_message(&self, publisher: usize, i: usize) -> usize {
        (publisher + i * self.publishers) % self.rooms
    }

    /// Messages each room receives.
    fn per_room(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.rooms];
        for p in 0..self.publishers {
            for i in 0..self.messages {
                v[self.room_of_message(p, i)] += 1;
            }
        }
        v
    }
}

fn room_name(r: usize) -> String {
    format!("bench{r}")
}

/// Finds the unsigned integer after `key` (searching from the end when
/// `last`), without parsing the JSON.
fn number_after(text: &str, key: &str, last: bool) -> Option<u64> {
    let at = if last {
        text.rfind(key)?
    } else {
        text.find(key)?
    } + key.len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

fn epoch_of(text: &str) -> Option<&str> {
    let at = text.rfind("\"epoch\":\"")? + 9;
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

#[derive(Default)]
struct SubResult {
    received: u64,
    gaps: u64,
    reorders: u64,
    epochs_changed: u64,
}

async fn join(ws: &mut Socket, room: &str) -> Result<(), String> {
    ws.send(Message::text(format!(
        r#"{{"type":"join","room":"{room}","ref":"j"}}"#
    )))
    .await
    .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with("{\"type\":\"ack\"") => return Ok(()),
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with("{\"type\":\"error\"") => {
                return Err(t.to_string());
            }
            Ok(Some(Ok(_))) => {}
            _ => return Err("no join ack".into()),
        }
    }
}

/// Runs the fan-out; prints the report and returns whether every message
/// arrived in order.
pub async fn fanout_phase(
    addr: SocketAddr,
    pid: Option<u32>,
    plan: Plan,
    prefix: String,
    password: String,
    as_json: bool,
) -> bool {
    let users = plan.users();
    let cookies = login_all(addr, &prefix, 0, users, &password).await;
    let cookie_of = |socket: usize| cookies[(socket / SOCKETS_PER_USER) % cookies.len()].clone();

    // Subscribers: open and join, a few hundred at a time.
    let mut subs: Vec<RawSub> = Vec::with_capacity(plan.subscribers);
    let mut opening = Vec::new();
    for i in 0..plan.subscribers {
        let cookie = cookie_of(i);
        let room = room_name(i % plan.rooms);
        opening.push(tokio::spawn(async move {
            RawSub::subscribe(addr, &cookie, &room).await
        }));
        if opening.len() == 200 || i + 1 == plan.subscribers {
            for t in opening.drain(..) {
                match t.await {
                    Ok(Ok(ws)) => subs.push(ws),
                    Ok(Err(e)) => {
                        eprintln!("subscriber failed: {e}");
                        return false;
                    }
                    Err(e) => {
                        eprintln!("subscriber task failed: {e}");
                        return false;
                    }
                }
            }
        }
    }
    let mut pubs: Vec<Socket> = Vec::with_capacity(plan.publishers);
    for p in 0..plan.publishers {
        let mut ws = match open_socket(addr, &cookie_of(plan.subscribers + p)).await {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("publisher failed: {e}");
                return false;
            }
        };
        let mut rooms: Vec<usize> = (0..plan.messages.min(plan.rooms))
            .map(|i| plan.room_of_message(p, i))
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        for r in rooms {
            if let Err(e) = join(&mut ws, &room_name(r)).await {
                eprintln!("publisher join failed: {e}");
                return false;
            }
        }
        pubs.push(ws);
    }

    let mut probe = Conn::new(addr);
    let metrics_before = probe
        .send("GET", "/metrics", None)
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    let server_before = pid.and_then(proc_sample);
    let tester_before = cpu_of_self();
    let base = Instant::now();
    let deadline = base + plan.timeout;
    let per_room = plan.per_room();

    // Subscriber readers.
    let received_all = Arc::new(AtomicU64::new(0));
    let sent_all = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(subs.len());
    for (i, mut ws) in subs.into_iter().enumerate() {
        let expect = per_room[i % plan.rooms];
        let received_all = received_all.clone();
        readers.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut r = SubResult::default();
            let mut last_seq = 0u64;
            let mut epoch: Option<String> = None;
            while r.received < expect {
                let left = deadline.saturating_duration_since(Instant::now());
                let t = match tokio::time::timeout(left, ws.next()).await {
                    Ok(Frame::Text(t)) => t,
                    Ok(Frame::Other) => continue,
                    Ok(Frame::End) | Err(_) => break,
                };
                if !t.starts_with("{\"type\":\"message\"") {
                    continue;
                }
                let now = base.elapsed().as_micros() as u64;
                r.received += 1;
                received_all.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = number_after(t, "\"data\":{\"t\":", false) {
                    let _ = h.record(now.saturating_sub(sent).max(1));
                }
                let seq = number_after(t, "\"seq\":", true).unwrap_or(0);
                let e = epoch_of(t).unwrap_or("");
                if epoch.as_deref() != Some(e) {
                    if epoch.is_some() {
                        r.epochs_changed += 1;
                    }
                    epoch = Some(e.to_owned());
                } else if seq <= last_seq {
                    r.reorders += 1;
                } else if seq != last_seq + 1 {
                    r.gaps += 1;
                }
                last_seq = seq;
            }
            // Kept open until every publisher is done: closing now would
            // send presence diffs to the members still measuring.
            (h, r, ws)
        }));
    }

    // Publishers: send with a window, pace to the offered rate if any.
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let pad = "x".repeat(plan.size.saturating_sub(24));
    for (p, ws) in pubs.into_iter().enumerate() {
        let (mut sink, mut stream) = ws.split();
        let window = Arc::new(Semaphore::new(plan.window.max(1)));
        let w2 = window.clone();
        let acked = acked.clone();
        let refused = refused.clone();
        let reader = tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) if t.starts_with("{\"type\":\"ack\"") => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        w2.add_permits(1);
                    }
                    Some(Ok(Message::Text(t))) if t.starts_with("{\"type\":\"error\"") => {
                        // a refused publish (e.g. rate_limited) frees its slot too
                        refused.fetch_add(1, Ordering::Relaxed);
                        w2.add_permits(1);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        eprintln!("publisher socket: {e}");
                        break;
                    }
                    None => break,
                }
            }
        });
        let plan = plan.clone();
        let pad = pad.clone();
        let (sent_all, received_all) = (sent_all.clone(), received_all.clone());
        senders.push(tokio::spawn(async move {
            // subscribers per publish, on average
            let fan = (plan.subscribers as f64 / plan.rooms as f64).max(1.0);
            let allowed = (plan.window.max(1) * plan.publishers) as f64;
            let mut pace = plan.rate.map(|r| {
                let every = Duration::from_secs_f64(plan.publishers as f64 / r.max(0.001));
                let mut t = tokio::time::interval(every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for i in 0..plan.messages {
                if let Some(t) = pace.as_mut() {
                    t.tick().await;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Ok(permit)) = tokio::time::timeout(left, window.acquire()).await else {
                    break;
                };
                permit.forget();
                // end to end: wait while too many publishes are not yet received everywhere
                while (sent_all.load(Ordering::Relaxed) as f64
                    - received_all.load(Ordering::Relaxed) as f64 / fan)
                    > allowed
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                sent_all.fetch_add(1, Ordering::Relaxed);
                let sent = base.elapsed().as_micros();
                let room = room_name(plan.room_of_message(p, i));
                let frame = format!(
                    r#"{{"type":"publish","room":"{room}","data":{{"t":{sent},"p":"{pad}"}}}}"#
                );
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
            // wait for the last acks, then let the reader go
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                window.acquire_many(plan.window.max(1) as u32),
            )
            .await;
            reader.abort();
        }));
    }

    let mut lat = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut total = SubResult::default();
    let mut expected_total = 0u64;
    let mut finished: Vec<RawSub> = Vec::with_capacity(plan.subscribers);
    for (i, rd) in readers.into_iter().enumerate() {
        expected_total += per_room[i % plan.rooms];
        if let Ok((h, r, ws)) = rd.await {
            finished.push(ws);
            let _ = lat.add(&h);
            total.received += r.received;
            total.gaps += r.gaps;
            total.reorders += r.reorders;
            total.epochs_changed += r.epochs_changed;
        }
    }
    let elapsed = base.elapsed().as_secs_f64();
    for s in senders {
        let _ = tokio::time::timeout(Duration::from_secs(15), s).await;
    }
    let server_after = pid.and_then(proc_sample);
    let tester_after = cpu_of_self();
    drop(finished);
    let metrics_after = probe
        .send("GET", "/metrics", None)
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    let delivered_server = metric(&metrics_after, "wsgate_messages_delivered_total").unwrap_or(0.0)
        - metric(&metrics_before, "wsgate_messages_delivered_total").unwrap_or(0.0);
    let rate = total.received as f64 / elapsed;
    let server_cpu = match (server_before, server_after) {
        (Some(a), Some(b)) => Some((b.utime - a.utime, b.stime - a.stime)),
        _ => None,
    };
    let tester_cpu = match (tester_before, tester_after) {
        (Some(a), Some(b)) => Some((b.0 - a.0, b.1 - a.1)),
        _ => None,
    };
    let per_delivery = server_cpu.map(|(u, s)| {
        let n = delivered_server.max(1.0);
        (u * 1e6 / n, s * 1e6 / n)
    });
    let tester_share = tester_cpu.map(|(u, s)| (u + s) / elapsed);
    let server_share = server_cpu.map(|(u, s)| (u + s) / elapsed);
    let tester_bound = tester_share.is_some_and(|s| s >= 0.9);
    let ok = total.received == expected_total && total.gaps == 0 && total.reorders == 0;
    let report = serde_json::json!({
        "phase": "fanout",
        "subscribers": plan.subscribers, "rooms": plan.rooms, "publishers": plan.publishers,
        "messages_per_publisher": plan.messages, "size": plan.size, "window": plan.window,
        "offered_publishes_per_s": plan.rate,
        "expected": expected_total, "received": total.received,
        "published": sent_all.load(Ordering::Relaxed), "acked": acked.load(Ordering::Relaxed),
        "refused": refused.load(Ordering::Relaxed),
        "gaps": total.gaps, "reorders": total.reorders, "epoch_changes": total.epochs_changed,
        "elapsed_s": elapsed, "delivered_per_s": rate,
        "server_deliveries": delivered_server,
        "latency_ms": {"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "p999": pct(&lat, 0.999), "max": lat.max() as f64 / 1000.0},
        "server_cpu_us_per_delivery": per_delivery.map(|(u, s)| serde_json::json!({"user": u, "sys": s, "total": u + s})),
        "server_core_share": server_share, "tester_core_share": tester_share, "tester_bound": tester_bound,
    });
    if as_json {
        println!("{report}");
    } else {
        let mut t = Table::new(format!(
            "fanout: {} subscribers in {} room(s), {} publisher(s) x {} messages of {} B, window {}{}",
            plan.subscribers,
            plan.rooms,
            plan.publishers,
            plan.messages,
            plan.size,
            plan.window,
            plan.rate
                .map(|r| format!(", offered {r:.0} publishes/s"))
                .unwrap_or_default()
        ));
        t.row(
            "received",
            format!("{}/{} in {elapsed:.2} s", total.received, expected_total),
        )
        .row("deliveries/s", format!("{rate:.0}"))
        .row(
            "gaps / reorders / epoch changes",
            format!(
                "{} / {} / {}",
                total.gaps, total.reorders, total.epochs_changed
            ),
        )
        .row(
            "latency p50/p99/p99.9/max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                pct(&lat, 0.999),
                lat.max() as f64 / 1000.0
            ),
        );
        if total.received != expected_total {
            t.row(
                "published / acked / refused",
                format!(
                    "{} / {} / {} (a refused publish is an error reply, e.g. rate_limited)",
                    sent_all.load(Ordering::Relaxed),
                    acked.load(Ordering::Relaxed),
                    refused.load(Ordering::Relaxed)
                ),
            );
        }
        if let Some((u, s)) = per_delivery {
            t.row(
                "server CPU per delivery",
                format!("{:.3} us (user {u:.3} + sys {s:.3})", u + s),
            );
        }
        if let (Some(ss), Some(ts)) = (server_share, tester_share) {
            t.row(
                "core share server/tester",
                format!(
                    "{:.0} % / {:.0} %{}",
                    ss * 100.0,
                    ts * 100.0,
                    if tester_bound {
                        "  TESTER-BOUND: the tester's core is saturated"
                    } else {
                        ""
                    }
                ),
            );
        }
        t.print();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_frames() {
        let t = r#"{"type":"message","room":"r","from":"a","data":{"t":1234,"p":"xx"},"seq":17,"epoch":"ab12","ts":99}"#;
        assert_eq!(number_after(t, "\"data\":{\"t\":", false), Some(1234));
        assert_eq!(number_after(t, "\"seq\":", true), Some(17));
        assert_eq!(epoch_of(t), Some("ab12"));
    }
}

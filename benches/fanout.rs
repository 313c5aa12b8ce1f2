//! Hub fan-out: what one publish costs per recipient as a room grows.
//!
//! Run: `cargo bench --bench fanout`
//!
//! Simulates a chat or dashboard room of 1, 100, 1,000 and 10,000 member
//! sockets receiving one small message (`Hub::publish`: take the room's
//! lock, assign the next `seq`, encode the `message` frame once, queue the
//! same bytes to every member). Members are `Conn::detached` handles, so no
//! socket or task is involved: this is the hub's share of a publish, not the
//! writers'.
//!
//! Throughput is reported per recipient (`Throughput::Elements(members)`):
//! if the frame is serialized once, the time per element stays flat as the
//! room grows instead of growing with it.
//!
//! Each member's queue (1,024 frames, the shipped default) is drained
//! between timed batches, outside the timing, so no member ever overflows
//! and is closed as a slow consumer. Batches are sized to keep about
//! `QUEUED_BUDGET` frames queued in total, so a large room does not measure
//! memory growth instead of fan-out.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wsgate::gateway::hub::Hub;
use wsgate::gateway::registry::Conn;

/// Room sizes measured.
const SIZES: [u64; 4] = [1, 100, 1_000, 10_000];
/// Outbound queue per member: PROTOCOL.md's default.
const QUEUE: usize = 1024;
/// Sockets per member user (the shipped per-user limit): joins send
/// presence diffs per user, not per socket, so setup stays well under the
/// queue size.
const SOCKETS_PER_USER: u64 = 32;
/// Frames left queued across all members before a drain (about 3 MiB of
/// queue entries; the frame bytes themselves are shared).
const QUEUED_BUDGET: u64 = 100_000;
/// A chat line's `data`, as a client would send it.
const DATA: &str = r#"{"text":"hello, everyone: the build is green again"}"#;

fn drain(members: &[Arc<Conn>], scratch: &mut Vec<Utf8Bytes>) {
    for m in members {
        m.drain_into(scratch);
        scratch.clear();
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout/publish");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for &n in &SIZES {
        let hub = Hub::new();
        let members: Vec<Arc<Conn>> = (0..n)
            .map(|i| Conn::detached(i + 1, &format!("user{}", i / SOCKETS_PER_USER), QUEUE))
            .collect();
        for m in &members {
            hub.join(m, "lobby");
        }
        let mut scratch = Vec::with_capacity(QUEUE);
        drain(&members, &mut scratch); // the joins' presence diffs
        let batch = (QUEUED_BUDGET / n).clamp(1, QUEUE as u64 / 2);

        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let k = left.min(batch);
                    let t = Instant::now();
                    for _ in 0..k {
                        black_box(hub.publish("lobby", Some("user0"), black_box(DATA)));
                    }
                    timed += t.elapsed();
                    drain(&members, &mut scratch);
                    left -= k;
                }
                timed
            })
        });
        assert!(
            members.iter().all(|m| m.close_reason().is_none()),
            "a member overflowed: the bench must drain more often"
        );
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);

//! Login-path benchmarks: the costs every login and every authenticated
//! request pays.
//!
//! Run: `cargo bench --bench auth`
//!
//! - `cookie/sign`, `cookie/verify`: HMAC-SHA256 over a session token, what
//!   every login (sign) and every authenticated request (verify) costs
//!   before any I/O.
//! - `argon2id/verify_owasp`: one password check with OWASP's parameters
//!   (m=19456 KiB, t=2, p=1), the bound on logins per core.
//! - `store/session_by_token`: one session lookup through the r2d2 pool on a
//!   WAL-mode SQLite file holding 10,000 sessions, as `/me` and `/ws` do.
//! - `store/session_create`: one `BEGIN IMMEDIATE; INSERT; COMMIT`, the
//!   write a login makes.
//! - `store/session_create_concurrent`: the same write from 8 threads at
//!   once against one store (8 pooled connections), what a login storm does
//!   to SQLite: writers queue on the database lock and its busy handler.
//!   Reported per create (wall time for all creates / creates), so it reads
//!   against `store/session_create` as the cost of contention.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wsgate::auth::cookie::{Keys, token_hash};
use wsgate::auth::password::{hash_password, verify_password};
use wsgate::config::{Config, HashParams};
use wsgate::store::{self, NewSession, Store, now_ms};

fn cookie(c: &mut Criterion) {
    let keys = Keys::new(vec![7; 32], vec![vec![8; 32]]).unwrap();
    let token = Keys::new_token();
    let value = keys.sign(&token);
    c.bench_function("cookie/sign", |b| b.iter(|| keys.sign(black_box(&token))));
    c.bench_function("cookie/verify", |b| {
        b.iter(|| keys.verify(black_box(&value)))
    });
}

fn argon2(c: &mut Criterion) {
    let phc = hash_password(HashParams::OWASP, b"correct horse battery").unwrap();
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(10);
    g.bench_function("verify_owasp", |b| {
        b.iter(|| verify_password(black_box(b"correct horse battery"), &phc))
    });
    g.finish();
}

fn store_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path());
    let store = Store::open(&cfg.store).unwrap();
    let phc = hash_password(
        HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        b"pw",
    )
    .unwrap();
    let uid = store
        .blocking(|c| store::users::create(c, "bench", &phc))
        .unwrap();
    let now = now_ms();
    let mut tokens = Vec::new();
    for _ in 0..10_000 {
        let t = Keys::new_token();
        let s = NewSession {
            token_hash: token_hash(&t),
            user_id: uid,
            created_at: now,
            expires_at: now + 3_600_000,
            remember: false,
            ua_hash: None,
        };
        store.blocking(|c| store::sessions::create(c, &s)).unwrap();
        tokens.push(t);
    }
    let probe = token_hash(&tokens[5_000]);
    c.bench_function("store/session_by_token", |b| {
        b.iter(|| {
            store
                .blocking(|c| store::sessions::by_token(c, black_box(&probe)))
                .unwrap()
        })
    });
    c.bench_function("store/session_create", |b| {
        b.iter(|| create_session(&store, uid, now))
    });
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("session_create_concurrent", |b| {
        b.iter_custom(|iters| concurrent_creates(&store, uid, now, iters))
    });
    g.finish();
}

/// Threads creating sessions at once: the default pool size, and the
/// number of logins a server with one hashing thread per core finishes
/// together on an 8-core machine.
const WRITERS: u64 = 8;

/// One login's session write.
fn create_session(store: &Store, uid: i64, now: i64) -> i64 {
    let s = NewSession {
        token_hash: token_hash(&Keys::new_token()),
        user_id: uid,
        created_at: now,
        expires_at: now + 3_600_000,
        remember: false,
        ua_hash: None,
    };
    store.blocking(|c| store::sessions::create(c, &s)).unwrap()
}

/// `iters` creates spread over [`WRITERS`] threads released together;
/// returns the wall time from release until the last one finished.
fn concurrent_creates(store: &Store, uid: i64, now: i64, iters: u64) -> Duration {
    let start = Barrier::new(WRITERS as usize + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let n = iters / WRITERS + u64::from(w < iters % WRITERS);
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for _ in 0..n {
                        create_session(store, uid, now);
                    }
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for w in workers {
            w.join().unwrap();
        }
        t.elapsed()
    })
}

criterion_group!(benches, cookie, argon2, store_benches);
criterion_main!(benches);

//! `login`: N users log in at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Conn, Table, cpu_of_self, metric, pct, proc_sample, progress};

#[allow(clippy::too_many_arguments)]
pub async fn login_phase(
    addr: SocketAddr,
    pid: Option<u32>,
    users: usize,
    first: usize,
    prefix: String,
    password: String,
    concurrency: usize,
    timeout: Duration,
    as_json: bool,
) -> bool {
    let mut probe = Conn::new(addr);
    let before_metrics = probe
        .send("GET", "/metrics", None)
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    let proc_before = pid.and_then(proc_sample);

    let done = Arc::new(AtomicBool::new(false));
    // /healthz latency throughout, on its own keep-alive connection.
    let health = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut c = Conn::new(addr);
            let mut failures = 0u64;
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.send("GET", "/healthz", None).await {
                    Ok(r) if r.status == 200 => {
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                    }
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (h, failures)
        })
    };
    // Peak RSS, sampled every 50 ms.
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = pid.map(|pid| {
        let (done, peak) = (done.clone(), peak_rss.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(s) = proc_sample(pid) {
                    peak.fetch_max(s.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tester_before = cpu_of_self();
    let bar = progress(users, "logins");
    let deadline = started + timeout;
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, users.max(1)) {
        let (next, retries, prefix, password, bar) = (
            next.clone(),
            retries.clone(),
            prefix.clone(),
            password.clone(),
            bar.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
            let mut failed: Vec<String> = Vec::new();
            let mut conn = Conn::new(addr);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    break;
                }
                let body =
                    serde_json::json!({"username": format!("{prefix}{}", first + i), "password": password})
                        .to_string();
                let t = Instant::now();
                loop {
                    if Instant::now() > deadline {
                        failed.push("timeout".into());
                        break;
                    }
                    match conn.send("POST", "/auth", Some(body.clone())).await {
                        Ok(r) if r.status == 200 => {
                            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                            bar.inc(1);
                            break;
                        }
                        Ok(r) if r.status == 503 || r.status == 429 => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            let wait = r.retry_after.unwrap_or(1).max(1);
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                        }
                        Ok(r) => {
                            failed.push(r.status.to_string());
                            break;
                        }
                        Err(e) => {
                            failed.push(format!("io: {e}"));
                            break;
                        }
                    }
                }
            }
            (h, failed)
        }));
    }
    let mut lat = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    for w in workers {
        if let Ok((h, f)) = w.await {
            let _ = lat.add(&h);
            for s in f {
                *failures.entry(s).or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let tester_share = match (tester_before, cpu_of_self()) {
        (Some(a), Some(b)) => Some(((b.0 - a.0) + (b.1 - a.1)) / elapsed),
        _ => None,
    };
    done.store(true, Ordering::Relaxed);
    let (hh, health_failures) = health
        .await
        .unwrap_or_else(|_| (Histogram::new(3).expect("histogram"), 0));
    if let Some(s) = sampler {
        let _ = s.await;
    }
    let proc_after = pid.and_then(proc_sample);
    let after_metrics = probe
        .send("GET", "/metrics", None)
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();

    let ok = lat.len();
    let rate = ok as f64 / elapsed;
    let hashes = metric(&after_metrics, "wsgate_password_hash_seconds_count").unwrap_or(0.0)
        - metric(&before_metrics, "wsgate_password_hash_seconds_count").unwrap_or(0.0);
    let hash_secs = metric(&after_metrics, "wsgate_password_hash_seconds_sum").unwrap_or(0.0)
        - metric(&before_metrics, "wsgate_password_hash_seconds_sum").unwrap_or(0.0);
    let threads = metric(&after_metrics, "wsgate_hash_threads").unwrap_or(1.0);
    let mean_hash = if hashes > 0.0 {
        hash_secs / hashes
    } else {
        0.0
    };
    let bound = if mean_hash > 0.0 {
        threads / mean_hash
    } else {
        0.0
    };
    let cpu = match (proc_before, proc_after) {
        (Some(a), Some(b)) => Some((b.utime - a.utime, b.stime - a.stime)),
        _ => None,
    };
    let report = serde_json::json!({
        "phase": "login",
        "users": users,
        "ok": ok,
        "failures": failures,
        "retried": retries.load(Ordering::Relaxed),
        "elapsed_s": elapsed,
        "logins_per_s": rate,
        "hash_threads": threads,
        "mean_hash_ms": mean_hash * 1000.0,
        "hashing_bound_per_s": bound,
        "efficiency": if bound > 0.0 { rate / bound } else { 0.0 },
        "latency_ms": {"p50": pct(&lat, 0.5), "p90": pct(&lat, 0.9), "p99": pct(&lat, 0.99), "max": lat.max() as f64 / 1000.0},
        "healthz_ms": {"samples": hh.len(), "failures": health_failures, "p50": pct(&hh, 0.5), "p99": pct(&hh, 0.99), "max": hh.max() as f64 / 1000.0},
        "tester_core_share": tester_share,
        "server_core_share": cpu.map(|c| (c.0 + c.1) / elapsed),
        "server": {
            "cpu_user_s": cpu.map(|c| c.0),
            "cpu_sys_s": cpu.map(|c| c.1),
            "cpu_ms_per_login": cpu.map(|c| (c.0 + c.1) * 1000.0 / ok.max(1) as f64),
            "cpu_ms_per_login_user": cpu.map(|c| c.0 * 1000.0 / ok.max(1) as f64),
            "cpu_ms_per_login_sys": cpu.map(|c| c.1 * 1000.0 / ok.max(1) as f64),
            "rss_before_kib": proc_before.map(|p| p.rss_kib),
            "rss_peak_kib": pid.map(|_| peak_rss.load(Ordering::Relaxed)),
            "rss_after_kib": proc_after.map(|p| p.rss_kib),
        },
    });
    if as_json {
        println!("{report}");
    } else {
        let mut t = Table::new(format!("login storm: {users} users at once"));
        t.row("logged in", format!("{ok}/{users} in {elapsed:.2} s"))
            .row("logins/s", format!("{rate:.1}"))
            .row(
                "retried after Retry-After",
                retries.load(Ordering::Relaxed).to_string(),
            );
        if !failures.is_empty() {
            t.row("failures by status", format!("{failures:?}"));
        }
        t.row("hashing threads", format!("{threads}"))
            .row("mean hash time", format!("{:.2} ms", mean_hash * 1000.0))
            .row("hashing bound", format!("{bound:.1} logins/s"))
            .row(
                "achieved share of the bound",
                format!(
                    "{:.1} %",
                    if bound > 0.0 {
                        100.0 * rate / bound
                    } else {
                        0.0
                    }
                ),
            )
            .row(
                "login latency p50/p90/p99/max",
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} ms",
                    pct(&lat, 0.5),
                    pct(&lat, 0.9),
                    pct(&lat, 0.99),
                    lat.max() as f64 / 1000.0
                ),
            )
            .row(
                "/healthz p50/p99/max",
                format!(
                    "{:.2} / {:.2} / {:.2} ms ({} samples, {health_failures} failed)",
                    pct(&hh, 0.5),
                    pct(&hh, 0.99),
                    hh.max() as f64 / 1000.0,
                    hh.len()
                ),
            );
        if let (Some((u, s)), Some(b), Some(a)) = (cpu, proc_before, proc_after) {
            let n = ok.max(1) as f64;
            t.row(
                "server CPU per login",
                format!(
                    "{:.2} ms (user {:.2} + sys {:.2})",
                    (u + s) * 1000.0 / n,
                    u * 1000.0 / n,
                    s * 1000.0 / n
                ),
            )
            .row(
                "server RSS before/peak/after",
                format!(
                    "{} / {} / {} KiB",
                    b.rss_kib,
                    peak_rss.load(Ordering::Relaxed),
                    a.rss_kib
                ),
            );
        }
        if let (Some((u, s)), Some(ts)) = (cpu, tester_share) {
            t.row(
                "core share server/tester",
                format!("{:.0} % / {:.0} %", (u + s) * 100.0 / elapsed, ts * 100.0),
            );
        }
        t.print();
    }
    failures.is_empty() && ok == users as u64
}

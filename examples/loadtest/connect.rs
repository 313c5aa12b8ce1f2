//! `connect`: log users in, open N authenticated sockets, hold them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::Table;
use crate::client::{Socket, cpu_of_self, login_all, open_socket, proc_sample, progress};

#[allow(clippy::too_many_arguments)]
pub async fn connect_phase(
    addr: SocketAddr,
    pid: Option<u32>,
    sockets: usize,
    users: usize,
    first: usize,
    prefix: String,
    password: String,
    concurrency: usize,
    hold: Duration,
    as_json: bool,
) -> bool {
    let cookies = Arc::new(login_all(addr, &prefix, first, users, &password).await);
    // let the server settle after the logins before the baseline
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pid.and_then(proc_sample);
    let tester_before = cpu_of_self();
    let bar = progress(sockets, "sockets");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, sockets.max(1)) {
        let (next, cookies, bar) = (next.clone(), cookies.clone(), bar.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut failed = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= sockets {
                    break;
                }
                match open_socket(addr, &cookies[i % cookies.len()]).await {
                    Ok(ws) => {
                        bar.inc(1);
                        mine.push(ws)
                    }
                    Err(e) => failed.push(e),
                }
            }
            (mine, failed)
        }));
    }
    let mut held: Vec<Socket> = Vec::with_capacity(sockets);
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    for w in workers {
        if let Ok((mine, failed)) = w.await {
            held.extend(mine);
            for f in failed {
                *failures.entry(f).or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let tester_after = cpu_of_self();
    let tester_share = match (tester_before, tester_after) {
        (Some(a), Some(b)) => Some(((b.0 - a.0) + (b.1 - a.1)) / elapsed),
        _ => None,
    };
    let opened = held.len();
    let after_open = pid.and_then(proc_sample);
    tokio::time::sleep(hold).await;
    let after_hold = pid.and_then(proc_sample);
    drop(held);
    // let the server see the closes, then see what memory it kept
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close = pid.and_then(proc_sample);
    let per_socket = match (before, after_hold) {
        (Some(b), Some(a)) if opened > 0 => {
            Some((a.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / opened as f64)
        }
        _ => None,
    };
    // (user, system) µs of server CPU per upgrade
    let cpu_split = match (before, after_open) {
        (Some(b), Some(a)) if opened > 0 => Some((
            (a.utime - b.utime) * 1e6 / opened as f64,
            (a.stime - b.stime) * 1e6 / opened as f64,
        )),
        _ => None,
    };
    let cpu_per_upgrade = cpu_split.map(|(u, s)| u + s);
    let report = serde_json::json!({
        "phase": "connect",
        "sockets": sockets,
        "opened": opened,
        "users": users,
        "failures": failures,
        "elapsed_s": elapsed,
        "upgrades_per_s": opened as f64 / elapsed,
        "server": {
            "rss_before_kib": before.map(|p| p.rss_kib),
            "rss_open_kib": after_open.map(|p| p.rss_kib),
            "rss_held_kib": after_hold.map(|p| p.rss_kib),
            "rss_after_close_kib": after_close.map(|p| p.rss_kib),
            "rss_bytes_per_socket": per_socket,
            "cpu_us_per_upgrade": cpu_per_upgrade,
            "cpu_us_per_upgrade_user": cpu_split.map(|c| c.0),
            "cpu_us_per_upgrade_sys": cpu_split.map(|c| c.1),
        },
        "tester_core_share": tester_share,
    });
    if as_json {
        println!("{report}");
    } else {
        let mut t = Table::new(format!("connect: {sockets} sockets over {users} users"));
        t.row("opened", format!("{opened}/{sockets} in {elapsed:.2} s"))
            .row("upgrades/s", format!("{:.0}", opened as f64 / elapsed));
        if !failures.is_empty() {
            t.row("failures", format!("{failures:?}"));
        }
        if let (Some(b), Some(o), Some(h)) = (before, after_open, after_hold) {
            t.row(
                "server RSS before/open/held",
                format!(
                    "{} / {} / {} KiB (held {} s)",
                    b.rss_kib,
                    o.rss_kib,
                    h.rss_kib,
                    hold.as_secs()
                ),
            );
        }
        if let Some(c) = after_close {
            t.row("server RSS 2 s after closing", format!("{} KiB", c.rss_kib));
        }
        if let Some(p) = per_socket {
            t.row(
                "RSS per idle socket",
                format!("{p:.0} bytes ({:.2} KiB)", p / 1024.0),
            );
        }
        if let Some((u, s)) = cpu_split {
            t.row(
                "server CPU per upgrade",
                format!("{:.1} us (user {u:.1} + sys {s:.1})", u + s),
            );
        }
        if let Some(ts) = tester_share {
            t.row("tester core share", format!("{:.0} %", ts * 100.0));
        }
        t.print();
    }
    failures.is_empty() && opened == sockets
}

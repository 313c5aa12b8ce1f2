//! wsgate load tester: measures a running gateway (or one it starts itself)
//! over loopback, phase by phase, each bounded in count and time.
//!
//! ```text
//! cargo build --release
//! # a gateway of its own (seeded temp database, server pinned to core 0):
//! taskset -c 1 cargo run --release --example loadtest -- --embedded login --users 1000
//! # or against a running gateway whose users PREFIX0.. exist:
//! cargo run --release --example loadtest -- --url http://127.0.0.1:8080 \
//!     --server-pid $(pidof wsgate) login --users 1000 --prefix load --password secret
//! ```
//!
//! Phases:
//! - `login`: N users log in at once (bounded concurrency; a `503` or `429`
//!   is retried after its `Retry-After`, so every login must end in `200`).
//!   Reports logins/s, the hashing bound read from the server's metrics,
//!   latency percentiles, `/healthz` latency measured throughout, and the
//!   server's CPU time and RSS (from `/proc`).
//!
//! - `connect`: logs users in, then opens N authenticated sockets and holds
//!   them; reports upgrades/s, the server's CPU per upgrade and its RSS per
//!   idle socket. Raises its own open-file limit (run as root or with a high
//!   hard limit for 10,000 sockets).
//!
//! Only loopback targets are accepted.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// wsgate load tester (loopback only).
#[derive(Parser, Debug)]
struct Args {
    /// Gateway base URL (http://127.0.0.1:PORT).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Start a gateway of our own: the built `wsgate` binary on a temp
    /// database seeded through its CLI, pinned to core 0 when possible.
    #[arg(long)]
    embedded: bool,
    /// PID of the server, to read its CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Subcommand, Debug)]
enum Phase {
    /// N users log in at once.
    Login {
        /// Users to log in (PREFIX0..PREFIX{N-1}).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Username prefix.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// The users' password.
        #[arg(long, default_value = "load-test-password")]
        password: String,
        /// Logins in flight at once.
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Log users in, then open N sockets and hold them (RSS per socket).
    Connect {
        /// Sockets to open.
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        /// Users the sockets are spread over [default: sockets / 30, so
        /// the per-user limit of 32 holds].
        #[arg(long)]
        users: Option<usize>,
        /// Username prefix.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// The users' password.
        #[arg(long, default_value = "load-test-password")]
        password: String,
        /// Upgrades in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold the sockets open before measuring again and closing.
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
}

/// A child gateway, killed on drop.
struct Embedded {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wsgate_binary() -> PathBuf {
    // target/<profile>/examples/loadtest -> target/<profile>/wsgate
    let exe = std::env::current_exe().expect("current exe path");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    dir.join("wsgate")
}

fn start_embedded(prefix: &str, users: usize, password: &str) -> Embedded {
    let bin = wsgate_binary();
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("wsgate.db");
    let mut seed = Command::new(&bin)
        .args(["user", "seed", prefix, &users.to_string(), "--db"])
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run wsgate user seed");
    seed.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    assert!(seed.wait().expect("seed").success(), "seeding failed");
    let pin = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
        && Command::new("taskset").arg("-V").output().is_ok();
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let mut child = cmd
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wsgate");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("wsgate exited before listening")
            .expect("read stdout");
        if let Some(a) = line.strip_prefix("wsgate listening on http://") {
            break a.parse().expect("listen address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Embedded {
        child,
        addr,
        _dir: dir,
    }
}

fn loopback_addr(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("http://")
        .expect("--url must start with http://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = hostport.parse().expect("--url must be http://IP:PORT");
    assert!(
        addr.ip().is_loopback(),
        "load runs target loopback addresses only"
    );
    addr
}

/// A keep-alive HTTP/1.1 connection that reconnects when it breaks.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: Bytes,
    /// Value of the session cookie set by the response.
    cookie: Option<String>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        json: Option<String>,
    ) -> Result<Reply, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            self.sender = Some(s);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("user-agent", "wsgate-loadtest/1");
        if json.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.to_string());
            }
        };
        let status = resp.status().as_u16();
        let cookie = resp.headers().get_all("set-cookie").iter().find_map(|v| {
            let v = v.to_str().ok()?;
            let (name, rest) = v.split_once('=')?;
            name.ends_with("wsgate_session")
                .then(|| rest.split(';').next().unwrap_or("").to_owned())
        });
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after,
            body,
            cookie,
        })
    }
}

/// CPU time (user, system) in seconds and RSS in KiB of a process.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    utime: f64,
    stime: f64,
    rss_kib: u64,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 of stat, counted from the state field (3)
    let tick = 100.0;
    let utime = f.get(11)?.parse::<f64>().ok()? / tick;
    let stime = f.get(12)?.parse::<f64>().ok()? / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    Some(ProcSample {
        utime,
        stime,
        rss_kib,
    })
}

/// Reads `name` (a plain sample without labels) from /metrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[allow(clippy::too_many_arguments)]
async fn login_phase(
    addr: SocketAddr,
    pid: Option<u32>,
    users: usize,
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
    let deadline = started + timeout;
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, users.max(1)) {
        let (next, retries, prefix, password) = (
            next.clone(),
            retries.clone(),
            prefix.clone(),
            password.clone(),
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
                    serde_json::json!({"username": format!("{prefix}{i}"), "password": password})
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
        "server": {
            "cpu_user_s": cpu.map(|c| c.0),
            "cpu_sys_s": cpu.map(|c| c.1),
            "cpu_ms_per_login": cpu.map(|c| (c.0 + c.1) * 1000.0 / ok.max(1) as f64),
            "rss_before_kib": proc_before.map(|p| p.rss_kib),
            "rss_peak_kib": pid.map(|_| peak_rss.load(Ordering::Relaxed)),
            "rss_after_kib": proc_after.map(|p| p.rss_kib),
        },
    });
    if as_json {
        println!("{report}");
    } else {
        println!(
            "login storm: {ok}/{users} logged in in {elapsed:.2} s ({rate:.1} logins/s), {} retried after Retry-After",
            retries.load(Ordering::Relaxed)
        );
        if !failures.is_empty() {
            println!("  failures by status: {failures:?}");
        }
        println!(
            "  hashing: {threads} thread(s), mean {:.2} ms per hash, bound {bound:.1}/s, achieved {:.1}% of it",
            mean_hash * 1000.0,
            if bound > 0.0 {
                100.0 * rate / bound
            } else {
                0.0
            }
        );
        println!(
            "  login latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            pct(&lat, 0.5),
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            lat.max() as f64 / 1000.0
        );
        println!(
            "  /healthz during the storm ms: p50 {:.2}  p99 {:.2}  max {:.2}  ({} samples, {health_failures} failed)",
            pct(&hh, 0.5),
            pct(&hh, 0.99),
            hh.max() as f64 / 1000.0,
            hh.len()
        );
        if let (Some((u, s)), Some(b), Some(a)) = (cpu, proc_before, proc_after) {
            println!(
                "  server: cpu user {u:.2} s + sys {s:.2} s = {:.2} ms per login; RSS {} KiB before, {} KiB peak, {} KiB after",
                (u + s) * 1000.0 / ok.max(1) as f64,
                b.rss_kib,
                peak_rss.load(Ordering::Relaxed),
                a.rss_kib
            );
        }
    }
    failures.is_empty() && ok == users as u64
}

/// Raises this process's open-file limit to its hard limit (children
/// inherit it), so thousands of sockets fit.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = lim.rlim_max.max(200_000);
            lim.rlim_cur = want;
            lim.rlim_max = want;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// Logs `users` users in (retrying after `Retry-After`); returns cookies.
async fn login_all(addr: SocketAddr, prefix: &str, users: usize, password: &str) -> Vec<String> {
    let mut tasks = Vec::new();
    let chunk = users.div_ceil(64).max(1);
    for start in (0..users).step_by(chunk) {
        let (prefix, password) = (prefix.to_owned(), password.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(addr);
            let mut out = Vec::new();
            for i in start..(start + chunk).min(users) {
                let body =
                    serde_json::json!({"username": format!("{prefix}{i}"), "password": password})
                        .to_string();
                loop {
                    match c.send("POST", "/auth", Some(body.clone())).await {
                        Ok(r) if r.status == 200 => {
                            out.push(r.cookie.unwrap_or_default());
                            break;
                        }
                        Ok(r) if r.status == 503 || r.status == 429 => {
                            tokio::time::sleep(Duration::from_secs(r.retry_after.unwrap_or(1)))
                                .await;
                        }
                        Ok(r) => panic!("login of {prefix}{i} failed: {}", r.status),
                        Err(e) => panic!("login of {prefix}{i} failed: {e}"),
                    }
                }
            }
            out
        }));
    }
    let mut cookies = Vec::new();
    for t in tasks {
        cookies.extend(t.await.expect("login task"));
    }
    cookies
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn open_socket(addr: SocketAddr, cookie: &str) -> Result<Socket, String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "cookie",
        format!("wsgate_session={cookie}")
            .parse()
            .map_err(|_| "cookie header")?,
    );
    // the same User-Agent as the login: sessions are bound to it
    req.headers_mut().insert(
        "user-agent",
        hyper::header::HeaderValue::from_static("wsgate-loadtest/1"),
    );
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| e.to_string())?;
    // the welcome frame
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(_))) => Ok(ws),
        _ => Err("no welcome".into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_phase(
    addr: SocketAddr,
    pid: Option<u32>,
    sockets: usize,
    users: usize,
    prefix: String,
    password: String,
    concurrency: usize,
    hold: Duration,
    as_json: bool,
) -> bool {
    let cookies = Arc::new(login_all(addr, &prefix, users, &password).await);
    // let the server settle after the logins before the baseline
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pid.and_then(proc_sample);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, sockets.max(1)) {
        let (next, cookies) = (next.clone(), cookies.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut failed = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= sockets {
                    break;
                }
                match open_socket(addr, &cookies[i % cookies.len()]).await {
                    Ok(ws) => mine.push(ws),
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
    let opened = held.len();
    let after_open = pid.and_then(proc_sample);
    tokio::time::sleep(hold).await;
    let after_hold = pid.and_then(proc_sample);
    drop(held);
    let per_socket = match (before, after_hold) {
        (Some(b), Some(a)) if opened > 0 => {
            Some((a.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / opened as f64)
        }
        _ => None,
    };
    let cpu_per_upgrade = match (before, after_open) {
        (Some(b), Some(a)) if opened > 0 => {
            Some(((a.utime - b.utime) + (a.stime - b.stime)) * 1e6 / opened as f64)
        }
        _ => None,
    };
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
            "rss_bytes_per_socket": per_socket,
            "cpu_us_per_upgrade": cpu_per_upgrade,
        },
    });
    if as_json {
        println!("{report}");
    } else {
        println!(
            "connect: {opened}/{sockets} sockets open in {elapsed:.2} s ({:.0} upgrades/s) over {users} users",
            opened as f64 / elapsed
        );
        if !failures.is_empty() {
            println!("  failures: {failures:?}");
        }
        if let (Some(b), Some(o), Some(h)) = (before, after_open, after_hold) {
            println!(
                "  server RSS: {} KiB before, {} KiB with all open, {} KiB after {}s held",
                b.rss_kib,
                o.rss_kib,
                h.rss_kib,
                hold.as_secs()
            );
        }
        if let Some(p) = per_socket {
            println!(
                "  RSS per idle authenticated socket: {:.0} bytes ({:.2} KiB)",
                p,
                p / 1024.0
            );
        }
        if let Some(c) = cpu_per_upgrade {
            println!("  server CPU per upgrade: {c:.1} us");
        }
    }
    failures.is_empty() && opened == sockets
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = match args.phase {
        Phase::Login {
            users,
            prefix,
            password,
            concurrency,
            timeout,
        } => {
            let embedded = args
                .embedded
                .then(|| start_embedded(&prefix, users, &password));
            let addr = embedded
                .as_ref()
                .map_or_else(|| loopback_addr(&args.url), |e| e.addr);
            let pid = args.server_pid.or(embedded.as_ref().map(|e| e.child.id()));
            rt.block_on(login_phase(
                addr,
                pid,
                users,
                prefix,
                password,
                concurrency,
                Duration::from_secs(timeout),
                args.json,
            ))
        }
        Phase::Connect {
            sockets,
            users,
            prefix,
            password,
            concurrency,
            hold,
        } => {
            let users = users.unwrap_or(sockets.div_ceil(30)).max(1);
            let embedded = args
                .embedded
                .then(|| start_embedded(&prefix, users, &password));
            let addr = embedded
                .as_ref()
                .map_or_else(|| loopback_addr(&args.url), |e| e.addr);
            let pid = args.server_pid.or(embedded.as_ref().map(|e| e.child.id()));
            rt.block_on(connect_phase(
                addr,
                pid,
                sockets,
                users,
                prefix,
                password,
                concurrency,
                Duration::from_secs(hold),
                args.json,
            ))
        }
    };
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

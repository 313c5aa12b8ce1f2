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
//! - `fanout`: N subscribers over R rooms, K publishers sending M messages
//!   of S bytes with a window of unacked publishes (optionally paced to an
//!   offered rate); delivered/s, publish-to-receive latency, gap and order
//!   checks per subscriber, server CPU per delivered message, and whether
//!   the tester itself was the bottleneck.
//!
//! - `storm`: a login storm and a burst of upgrades while a paced fan-out
//!   runs; each part reports as above, the login part with `/healthz`
//!   latency throughout.
//!
//! Only loopback targets are accepted.

mod client;
mod connect;
mod fanout;
mod login;
mod raw;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};

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

#[derive(Subcommand, Debug, Clone)]
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
    /// N subscribers over R rooms, K publishers, M messages of S bytes.
    Fanout {
        /// Subscriber sockets.
        #[arg(long, default_value_t = 500)]
        subscribers: usize,
        /// Rooms (subscriber i joins room i % R).
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Publisher sockets.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Messages per publisher.
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// Bytes of data per message.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Unacked publishes per publisher.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Offered publishes per second over all publishers [default: as fast as the window allows].
        #[arg(long)]
        rate: Option<f64>,
        /// Username prefix.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// The users' password.
        #[arg(long, default_value = "load-test-password")]
        password: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Logins and upgrades at once while a paced fan-out runs; /healthz
    /// latency is measured throughout (reported with the login phase).
    Storm {
        /// Users logging in at once.
        #[arg(long, default_value_t = 1000)]
        logins: usize,
        /// Sockets opened meanwhile.
        #[arg(long, default_value_t = 2000)]
        sockets: usize,
        /// Subscribers of the fan-out running underneath (one room).
        #[arg(long, default_value_t = 500)]
        subscribers: usize,
        /// Publishes per second of the fan-out.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds the fan-out runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Username prefix.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// The users' password.
        #[arg(long, default_value = "load-test-password")]
        password: String,
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
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "warn"])
        // publishers in a benchmark send far above a chat client's limit
        .args(["--socket-rate", "1000000", "--socket-burst", "1000000"])
        .arg("--data-dir")
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

/// The gateway to load: one of our own (`--embedded`, seeded with `users`
/// users) or `--url`; its address and, when known, its PID. The child, if
/// any, lives as long as the returned guard.
fn target(
    args: &Args,
    prefix: &str,
    users: usize,
    password: &str,
) -> (Option<Embedded>, SocketAddr, Option<u32>) {
    let embedded = args
        .embedded
        .then(|| start_embedded(prefix, users, password));
    let addr = embedded
        .as_ref()
        .map_or_else(|| loopback_addr(&args.url), |e| e.addr);
    let pid = args.server_pid.or(embedded.as_ref().map(|e| e.child.id()));
    (embedded, addr, pid)
}

/// Pins this process to `core` (the embedded server runs on core 0).
fn pin_to_core(core: usize) {
    // SAFETY: the cpu set is a plain bit mask on the stack, passed by
    // pointer with its size, and only read by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("could not pin the tester to core {core}");
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    raise_nofile_limit();
    if args.embedded && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        pin_to_core(1);
    }
    if args.json || matches!(args.phase, Phase::Storm { .. }) {
        client::PROGRESS.store(false, std::sync::atomic::Ordering::Relaxed);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = match args.phase.clone() {
        Phase::Login {
            users,
            prefix,
            password,
            concurrency,
            timeout,
        } => {
            let (_embedded, addr, pid) = target(&args, &prefix, users, &password);
            rt.block_on(login::login_phase(
                addr,
                pid,
                users,
                0,
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
            let (_embedded, addr, pid) = target(&args, &prefix, users, &password);
            rt.block_on(connect::connect_phase(
                addr,
                pid,
                sockets,
                users,
                0,
                prefix,
                password,
                concurrency,
                Duration::from_secs(hold),
                args.json,
            ))
        }
        Phase::Fanout {
            subscribers,
            rooms,
            publishers,
            messages,
            size,
            window,
            rate,
            prefix,
            password,
            timeout,
        } => {
            let plan = fanout::Plan {
                subscribers,
                rooms: rooms.max(1),
                publishers: publishers.max(1),
                messages,
                size,
                window,
                rate,
                timeout: Duration::from_secs(timeout),
            };
            let (_embedded, addr, pid) = target(&args, &prefix, plan.users(), &password);
            rt.block_on(fanout::fanout_phase(
                addr, pid, plan, prefix, password, args.json,
            ))
        }
        Phase::Storm {
            logins,
            sockets,
            subscribers,
            rate,
            seconds,
            prefix,
            password,
        } => {
            let plan = fanout::Plan {
                subscribers,
                rooms: 1,
                publishers: 1,
                messages: (rate * seconds as f64).ceil() as usize,
                size: 100,
                window: 32,
                rate: Some(rate),
                timeout: Duration::from_secs(seconds * 3 + 60),
            };
            let fan_users = plan.users();
            let socket_users = sockets.div_ceil(30).max(1);
            let total = fan_users + socket_users + logins;
            let (_embedded, addr, pid) = target(&args, &prefix, total, &password);
            let json = args.json;
            rt.block_on(async move {
                let fan =
                    fanout::fanout_phase(addr, pid, plan, prefix.clone(), password.clone(), json);
                let storm = async {
                    // let the fan-out's subscribers settle first
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    tokio::join!(
                        login::login_phase(
                            addr,
                            pid,
                            logins,
                            fan_users + socket_users,
                            prefix.clone(),
                            password.clone(),
                            logins,
                            Duration::from_secs(120),
                            json,
                        ),
                        connect::connect_phase(
                            addr,
                            pid,
                            sockets,
                            socket_users,
                            fan_users,
                            prefix.clone(),
                            password.clone(),
                            200,
                            Duration::from_secs(1),
                            json,
                        )
                    )
                };
                let (f, (l, c)) = tokio::join!(fan, storm);
                f && l && c
            })
        }
    };
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

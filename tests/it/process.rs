//! The real `wsgate` binary as a process: first start on an empty data
//! dir, sessions across graceful restarts and `kill -9`, SIGTERM/SIGINT exit
//! status, drain and the WAL checkpoint.
//!
//! Also the process harness `cli.rs` uses: [`wsgate`] (a command with a clean
//! environment), [`run`] (run to completion, bounded), [`Gateway`] (a running
//! server, killed on drop) and [`Site`] (a temp dir with a db and key file).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Req;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wsgate");
/// Upper bound for a process to get ready, finish a command or exit.
pub(crate) const PROC_TIMEOUT: Duration = Duration::from_secs(20);
/// The readiness line's prefix (src/main.rs).
const READY: &str = "wsgate listening on http://";
/// The first-user line's prefix (src/main.rs).
const FIRST_USER: &str = "created the first user ";

/// A `wsgate` command run in `cwd`, with no inherited `WSGATE_*` variable,
/// stdin closed and stdout/stderr piped.
pub(crate) fn wsgate(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WSGATE_") {
            c.env_remove(k);
        }
    }
    c.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A finished command.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Ran {
    /// Asserts exit status 0.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what}: expected success, got {self:#?}"
        );
        self
    }

    /// Asserts a non-zero exit (not a crash by signal) with something on
    /// stderr.
    pub fn assert_refused(&self, what: &str) -> &Self {
        assert!(
            matches!(self.status.code(), Some(c) if c != 0),
            "{what}: expected a non-zero exit, got {self:#?}"
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "{what}: no message on stderr: {self:#?}"
        );
        self
    }
}

/// Runs `cmd` to completion, feeding it `stdin` (then EOF), bounded by
/// [`PROC_TIMEOUT`] (the child is killed on timeout).
pub(crate) fn run(mut cmd: Command, stdin: Option<&str>) -> Ran {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawning wsgate");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        // The command may exit before reading (a refused name): ignore EPIPE.
        let _ = w.write_all(input.as_bytes());
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PROC_TIMEOUT) {
        Ok(out) => {
            let out = out.expect("waiting for wsgate");
            Ran {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            // Not reaped yet (the waiting thread still waits), so the pid is ours.
            send_signal(pid, libc::SIGKILL);
            panic!("timed out: wsgate {:?}", cmd.get_args().collect::<Vec<_>>());
        }
    }
}

fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child
    // of ours that has not been reaped.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Lines of a child's output, read on a thread as they arrive.
#[derive(Clone, Default)]
pub(crate) struct Lines(Arc<(Mutex<LinesState>, Condvar)>);

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    eof: bool,
}

impl Lines {
    fn read(r: impl Read + Send + 'static) -> Self {
        let lines = Self::default();
        let shared = lines.clone();
        std::thread::spawn(move || {
            let (m, cv) = &*shared.0;
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                m.lock().unwrap().lines.push(line);
                cv.notify_all();
            }
            m.lock().unwrap().eof = true;
            cv.notify_all();
        });
        lines
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().lines.clone()
    }

    /// Every line so far, joined.
    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// The first line matching `pred`, waiting for it at most `timeout`;
    /// `None` on timeout or when the stream ends without one.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut st = m.lock().unwrap();
        loop {
            if let Some(l) = st.lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if st.eof || now >= deadline {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Waits for the end of the stream (the process closed it, usually by
    /// exiting); false on timeout.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut st = m.lock().unwrap();
        while !st.eof {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
        true
    }
}

/// A running `wsgate serve`; SIGKILLed and reaped on drop.
pub(crate) struct Gateway {
    child: Child,
    /// The address from the readiness line.
    pub addr: SocketAddr,
    /// Its stdout.
    pub stdout: Lines,
    /// Its stderr (the log).
    pub stderr: Lines,
    /// (name, password) when it printed the first-user line.
    pub first_user: Option<(String, String)>,
}

impl Gateway {
    /// Spawns `cmd` and waits (bounded) for the readiness line.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawning wsgate serve");
        let stdout = Lines::read(child.stdout.take().expect("piped stdout"));
        let stderr = Lines::read(child.stderr.take().expect("piped stderr"));
        let mut gw = Self {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stdout,
            stderr,
            first_user: None,
        };
        let Some(ready) = gw.stdout.wait_for(|l| l.starts_with(READY), PROC_TIMEOUT) else {
            gw.stderr.wait_eof(Duration::from_secs(2));
            panic!(
                "wsgate did not get ready\nstdout:\n{}\nstderr:\n{}",
                gw.stdout.text(),
                gw.stderr.text()
            );
        };
        gw.addr = ready[READY.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("readiness line {ready:?}: {e}"));
        gw.first_user = gw
            .stdout
            .all()
            .iter()
            .find(|l| l.starts_with(FIRST_USER))
            .map(|l| {
                // created the first user "NAME" with password "PASSWORD"
                let parts: Vec<&str> = l.split('"').collect();
                assert_eq!(parts.len(), 5, "first-user line {l:?}");
                (parts[1].to_owned(), parts[3].to_owned())
            });
        gw
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A request to this gateway.
    pub fn req(&self, method: &str, path: &str) -> Req {
        Req::new(self.addr, method, path)
    }

    /// Status of a JSON login.
    pub async fn login_status(&self, user: &str, password: &str) -> u16 {
        self.req("POST", "/auth")
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .status
    }

    /// Logs in (asserting 200) and returns the session cookie value.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .req("POST", "/auth")
            .json(&json!({"username": user, "password": password}))
            .send()
            .await;
        assert_eq!(r.status, 200, "login of {user}: {}", r.text());
        r.session_cookie().expect("login sets the session cookie")
    }

    /// Status of `GET /me` with a session cookie.
    pub async fn me(&self, cookie: &str) -> u16 {
        self.req("GET", "/me").cookie(cookie).send().await.status
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: libc::c_int) {
        send_signal(self.pid(), sig);
    }

    /// Waits (bounded) for the process to exit and returns its status. The
    /// end of its output pipes marks the exit, so nothing polls.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let closed = self.stdout.wait_eof(timeout) && self.stderr.wait_eof(timeout);
        assert!(
            closed,
            "wsgate did not exit within {timeout:?}\nstderr:\n{}",
            self.stderr.text()
        );
        self.child.wait().expect("reaping wsgate")
    }

    /// Sends `sig`, waits for the exit and asserts status 0.
    pub fn stop_with(mut self, sig: libc::c_int) {
        self.signal(sig);
        let status = self.wait_exit(PROC_TIMEOUT);
        assert_exit_zero(status, &self.stderr);
    }

    /// `kill -9`, and reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reaping wsgate");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A reaped child is not signalled again (std tracks its status).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_exit_zero(status: ExitStatus, stderr: &Lines) {
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?} (signal {:?})\nstderr:\n{}",
        status.signal(),
        stderr.text()
    );
}

/// A temp dir with a database path and a key file path in it.
pub(crate) struct Site {
    /// The temp dir (also the working directory of every command).
    pub dir: tempfile::TempDir,
    /// `DIR/gate.db`
    pub db: PathBuf,
    /// `DIR/gate.key`
    pub key: PathBuf,
}

impl Site {
    /// A fresh temp dir.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gate.db");
        let key = dir.path().join("gate.key");
        Self { dir, db, key }
    }

    /// A `wsgate` command in this dir.
    pub fn cmd(&self) -> Command {
        wsgate(self.dir.path())
    }

    /// `wsgate user ARGS --db DB`, with `stdin`.
    pub fn user(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut c = self.cmd();
        c.arg("user").args(args).arg("--db").arg(&self.db);
        run(c, stdin)
    }

    /// `wsgate user add NAME` with the password on stdin, asserting success.
    pub fn add_user(&self, name: &str, password: &str) {
        self.user(&["add", name], Some(&format!("{password}\n")))
            .assert_ok(&format!("user add {name}"));
    }

    /// `wsgate serve --listen 127.0.0.1:0 --db DB --key-file KEY EXTRA…`
    pub fn serve(&self, extra: &[&str]) -> Gateway {
        let mut c = self.cmd();
        c.args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&self.db)
            .arg("--key-file")
            .arg(&self.key)
            .args(extra);
        Gateway::spawn(c)
    }

    /// Size of the `-wal` file, `None` when absent.
    pub fn wal_len(&self) -> Option<u64> {
        let mut wal = self.db.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(&wal).ok().map(|m| m.len())
    }

    /// Runs a query against the database file directly.
    pub fn count(&self, sql: &str) -> i64 {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

#[tokio::test]
async fn first_start_creates_admin_key_and_db_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let start = || {
        let mut c = wsgate(tmp.path());
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data);
        Gateway::spawn(c)
    };

    let gw = start();
    let lines = gw.stdout.all();
    let (name, password) = gw.first_user.clone().unwrap_or_else(|| {
        panic!("no first-user line on stdout: {lines:?}");
    });
    assert_eq!(name, "admin");
    assert!(
        password.len() >= 16,
        "short generated password {password:?}"
    );
    let first = lines
        .iter()
        .position(|l| l.starts_with(FIRST_USER))
        .unwrap();
    let ready = lines.iter().position(|l| l.starts_with(READY)).unwrap();
    assert!(
        first < ready,
        "first user printed after readiness: {lines:?}"
    );
    assert_ne!(gw.addr.port(), 0, "the bound port is printed, not 0");
    assert!(gw.addr.ip().is_loopback());

    let health = gw.req("GET", "/healthz").send().await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");

    let key = data.join("secret.key");
    let meta = std::fs::metadata(&key).expect("DIR/secret.key exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "key file mode");
    let key_bytes = std::fs::read(&key).unwrap();
    let db = data.join("wsgate.db");
    assert!(db.is_file(), "DIR/wsgate.db exists");
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM users WHERE username = 'admin'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(c);
    assert_eq!(n, 1, "admin is in DIR/wsgate.db");

    let cookie = gw.login(&name, &password).await;
    assert_eq!(gw.me(&cookie).await, 200);
    assert_eq!(gw.login_status(&name, "not-the-password").await, 401);
    gw.stop_with(libc::SIGTERM);

    let gw = start();
    assert!(
        gw.first_user.is_none(),
        "second start created a user again: {:?}",
        gw.stdout.all()
    );
    assert!(
        !gw.stdout.text().contains(&password),
        "password printed again"
    );
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes, "key file kept");
    assert_eq!(gw.me(&cookie).await, 200, "session kept across restart");
    let again = gw.login(&name, &password).await;
    assert_eq!(gw.me(&again).await, 200);
    gw.stop_with(libc::SIGTERM);
}

#[tokio::test]
async fn session_survives_a_graceful_restart() {
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    let gw = site.serve(&[]);
    assert!(gw.first_user.is_none(), "users exist: no first user");
    let cookie = gw.login("alice", "alice-pw").await;
    assert_eq!(gw.me(&cookie).await, 200);
    gw.stop_with(libc::SIGTERM);

    let gw = site.serve(&[]);
    let me = gw.req("GET", "/me").cookie(&cookie).send().await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["user"]["username"], "alice");
    gw.stop_with(libc::SIGTERM);
}

#[tokio::test]
async fn acknowledged_sessions_survive_kill_9() {
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    site.add_user("bob", "bob-pw");
    let gw = site.serve(&[]);
    let mut cookies = Vec::new();
    for i in 0..8 {
        let (u, p) = if i % 2 == 0 {
            ("alice", "alice-pw")
        } else {
            ("bob", "bob-pw")
        };
        cookies.push((u, gw.login(u, p).await));
    }
    // SIGKILL right after the last 200: no drain, no checkpoint.
    gw.kill9();

    let gw = site.serve(&[]);
    for (user, cookie) in &cookies {
        let me = gw.req("GET", "/me").cookie(cookie).send().await;
        assert_eq!(me.status, 200, "session of {user} lost: {}", me.text());
        assert_eq!(me.json()["user"]["username"], *user);
    }
    assert_eq!(gw.login_status("alice", "alice-pw").await, 200);
    gw.stop_with(libc::SIGTERM);
}

async fn signal_exits_zero_and_checkpoints(sig: libc::c_int) {
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    let gw = site.serve(&["--drain-timeout", "2"]);
    let mut cookies = Vec::new();
    for _ in 0..5 {
        cookies.push(gw.login("alice", "alice-pw").await);
    }
    assert!(
        site.wal_len().unwrap_or(0) > 0,
        "the writes went to the WAL while running"
    );
    gw.stop_with(sig);
    let wal = site.wal_len();
    assert!(
        wal.is_none() || wal == Some(0),
        "WAL not checkpointed on exit: {wal:?} bytes"
    );
    assert_eq!(site.count("SELECT count(*) FROM sessions"), 5);
}

#[tokio::test]
async fn sigterm_exits_zero_and_checkpoints_the_wal() {
    signal_exits_zero_and_checkpoints(libc::SIGTERM).await;
}

#[tokio::test]
async fn sigint_exits_zero_and_checkpoints_the_wal() {
    signal_exits_zero_and_checkpoints(libc::SIGINT).await;
}

#[test]
fn a_signal_right_after_the_readiness_line_is_a_graceful_stop() {
    // A supervisor may stop the gateway as soon as it says it listens: the
    // signal handlers must be in place by then.
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    for (i, sig) in [libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .cycle()
        .take(24)
        .enumerate()
    {
        let gw = site.serve(&["--drain-timeout", "2"]);
        gw.signal(sig);
        let mut gw = gw;
        let status = gw.wait_exit(PROC_TIMEOUT);
        assert!(
            status.code() == Some(0),
            "round {i}: signal {sig} right after readiness: {status:?} (signal {:?})\nstderr:\n{}",
            status.signal(),
            gw.stderr.text()
        );
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("reading a response");
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Reads until the peer closes; true for a clean EOF (a reset also counts
/// as closed by the peer).
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => rest,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => rest,
        Err(e) => panic!("waiting for the server to close the connection: {e}"),
    }
}

#[test]
fn sigterm_with_an_idle_keep_alive_connection_exits_zero() {
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    let gw = site.serve(&["--drain-timeout", "2"]);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(PROC_TIMEOUT)).unwrap();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).as_bytes())
        .unwrap();
    let resp = read_response(&mut s);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The connection is now idle and kept alive.
    let mut gw = gw;
    gw.signal(libc::SIGTERM);
    let rest = read_until_closed(&mut s);
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
    let status = gw.wait_exit(PROC_TIMEOUT);
    assert_exit_zero(status, &gw.stderr);
    assert!(
        !gw.stderr.text().contains("drain timeout"),
        "the idle connection was cut at the drain timeout instead of closed:\n{}",
        gw.stderr.text()
    );
}

#[test]
fn sigterm_lets_an_in_flight_login_finish_and_refuses_new_connections() {
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    let gw = site.serve(&["--drain-timeout", "10"]);
    let body = json!({"username": "alice", "password": "alice-pw"}).to_string();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(PROC_TIMEOUT)).unwrap();
    write!(
        s,
        "POST /auth HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        gw.addr,
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    // hyper answers `100 Continue` when the handler starts reading the
    // body: from here the login is in flight, waiting for its body.
    let cont = read_response(&mut s);
    assert!(cont.starts_with("HTTP/1.1 100"), "{cont}");
    let mut gw = gw;
    gw.signal(libc::SIGTERM);
    assert!(
        gw.stderr
            .wait_for(|l| l.contains("draining"), PROC_TIMEOUT)
            .is_some(),
        "no drain started:\n{}",
        gw.stderr.text()
    );
    // Draining: the listener is closed.
    assert!(
        TcpStream::connect(gw.addr).is_err(),
        "a new connection was accepted while draining"
    );
    s.write_all(body.as_bytes()).unwrap();
    let resp = read_response(&mut s);
    assert!(resp.starts_with("HTTP/1.1 200"), "in-flight login: {resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("set-cookie: wsgate_session="),
        "{resp}"
    );
    let status = gw.wait_exit(PROC_TIMEOUT);
    assert_exit_zero(status, &gw.stderr);
    assert_eq!(site.count("SELECT count(*) FROM sessions"), 1);
}

/// The real binary with a WebSocket open: what a supervisor's SIGTERM and
/// an operator's `wsgate user disable` do to it.
mod sockets {
    use std::time::Duration;

    use serde_json::json;

    use super::{PROC_TIMEOUT, Site, assert_exit_zero};
    use crate::ws::Ws;

    /// PROTOCOL.md: revocation reaches sockets within 2 s, also when the
    /// change was made by the command line in another process.
    const REVOCATION_BOUND: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn sigterm_closes_open_sockets_with_1001_and_exits_zero() {
        let site = Site::new();
        site.add_user("alice", "alice-pw");
        let gw = site.serve(&["--drain-timeout", "5"]);
        let cookie = gw.login("alice", "alice-pw").await;
        let mut ws = Ws::connect_addr(gw.addr, &cookie).await;
        assert_eq!(ws.recv().await["type"], "welcome");
        let ack = ws
            .call(json!({"type": "join", "room": "lobby", "ref": 1}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");

        let mut gw = gw;
        gw.signal(libc::SIGTERM);
        assert_eq!(ws.closed().await, 1001);
        let status = gw.wait_exit(PROC_TIMEOUT);
        assert_exit_zero(status, &gw.stderr);
        assert!(
            !gw.stderr.text().contains("drain timeout"),
            "the socket was cut at the drain timeout instead of closed:\n{}",
            gw.stderr.text()
        );
    }

    #[tokio::test]
    async fn user_disable_on_the_command_line_closes_the_users_sockets_with_4001() {
        let site = Site::new();
        site.add_user("alice", "alice-pw");
        site.add_user("bob", "bob-pw");
        let gw = site.serve(&[]);
        let alice = gw.login("alice", "alice-pw").await;
        let alice2 = gw.login("alice", "alice-pw").await;
        let bob = gw.login("bob", "bob-pw").await;
        let mut a1 = Ws::connect_addr(gw.addr, &alice).await;
        let mut a2 = Ws::connect_addr(gw.addr, &alice2).await;
        let mut b = Ws::connect_addr(gw.addr, &bob).await;
        for ws in [&mut a1, &mut a2, &mut b] {
            assert_eq!(ws.recv().await["type"], "welcome");
        }

        let r = site.user(&["disable", "alice"], None);
        r.assert_ok("user disable alice");
        for ws in [&mut a1, &mut a2] {
            let code = tokio::time::timeout(REVOCATION_BOUND, ws.closed())
                .await
                .expect("alice's socket closed within 2 s");
            assert_eq!(code, 4001);
        }
        b.alive().await;
        assert_eq!(gw.me(&alice).await, 401);
        assert_eq!(gw.me(&bob).await, 200);
        // An open socket nobody reads would hold the drain up.
        drop((a1, a2, b));
        gw.stop_with(libc::SIGTERM);
    }
}

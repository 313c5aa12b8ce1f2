//! Client side shared by the phases: a keep-alive HTTP/1.1 connection,
//! logins, authenticated sockets, and readings of /proc and /metrics.

use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The User-Agent of every request and socket: sessions are bound to it.
pub const USER_AGENT: &str = "wsgate-loadtest/1";

/// A keep-alive HTTP/1.1 connection that reconnects when it breaks.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Bytes,
    /// Value of the session cookie set by the response.
    pub cookie: Option<String>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    pub async fn send(
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
            .header("user-agent", USER_AGENT);
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
pub struct ProcSample {
    pub utime: f64,
    pub stime: f64,
    pub rss_kib: u64,
}

pub fn proc_sample(pid: u32) -> Option<ProcSample> {
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
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// This process's CPU time (user, system) in seconds.
pub fn cpu_of_self() -> Option<(f64, f64)> {
    let p = proc_sample(std::process::id())?;
    Some((p.utime, p.stime))
}

/// Whether phases draw progress bars (off for --json and for the storm).
pub static PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// A progress bar of `len` steps, hidden unless [`PROGRESS`] is on.
pub fn progress(len: usize, what: &str) -> indicatif::ProgressBar {
    if !PROGRESS.load(std::sync::atomic::Ordering::Relaxed) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

pub fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Logs users PREFIX{first}.. (`users` of them) in, retrying after
/// `Retry-After`; returns their cookies.
pub async fn login_all(
    addr: SocketAddr,
    prefix: &str,
    first: usize,
    users: usize,
    password: &str,
) -> Vec<String> {
    let mut tasks = Vec::new();
    let chunk = users.div_ceil(64).max(1);
    for start in (0..users).step_by(chunk) {
        let (prefix, password) = (prefix.to_owned(), password.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(addr);
            let mut out = Vec::new();
            for i in start..(start + chunk).min(users) {
                let body =
                    serde_json::json!({"username": format!("{prefix}{}", first + i), "password": password})
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

pub type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

pub async fn open_socket(addr: SocketAddr, cookie: &str) -> Result<Socket, String> {
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
        hyper::header::HeaderValue::from_static(USER_AGENT),
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

/// A two-column summary table for the text output.
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.rows.push((key.to_owned(), value.into()));
        self
    }

    /// Prints the table, keys aligned.
    pub fn print(&self) {
        let w = self
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        println!("{}", self.title);
        println!("{}", "-".repeat(self.title.chars().count().max(w + 20)));
        for (k, v) in &self.rows {
            println!("{k:<w$}  {v}");
        }
        println!();
    }
}

//! The test harness: [`TestGateway`] starts the real server in-process on
//! port 0 over a fresh temp dir; [`Req`] is a small real HTTP/1.1 client.
//! Every await is bounded by [`TIMEOUT`].

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wsgate::app::App;
use wsgate::config::{HashParams, KeySource};
use wsgate::{Config, Server};

/// Upper bound of any single await in a test.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Cheap argon2id parameters for tests (the shipped defaults stay OWASP's).
pub const TEST_HASH: HashParams = HashParams {
    m_cost: 1024,
    t_cost: 1,
    p_cost: 1,
};

/// Awaits `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A gateway running in-process.
pub struct TestGateway {
    /// Bound address.
    pub addr: SocketAddr,
    /// Shared state of the running server.
    pub app: Arc<App>,
    /// The temp dir holding the database and key file.
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<wsgate::Result<()>>>,
}

/// A test config: port 0, temp dir, fast hashing, fixed key.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.auth.hash_params = TEST_HASH;
    c.auth.key = KeySource::Bytes(vec![7; 32]);
    c
}

impl TestGateway {
    /// Starts with the test config.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test config changed by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = test_config(dir.path());
        f(&mut c);
        Self::start_in(dir, c).await
    }

    /// Starts on an existing dir and config (restarts).
    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> Self {
        let server = within("bind", Server::bind(config)).await.unwrap();
        let addr = server.local_addr().unwrap();
        let app = server.app().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            app,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.app.config.store.db_path.clone()
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a user directly in the store.
    pub async fn add_user(&self, name: &str, password: &str) -> i64 {
        let phc = wsgate::auth::password::hash_password(TEST_HASH, password.as_bytes()).unwrap();
        let name = name.to_owned();
        within(
            "add user",
            self.app
                .store
                .call(move |c| wsgate::store::users::create(c, &name, &phc)),
        )
        .await
        .unwrap()
    }

    /// A request to this gateway.
    pub fn req(&self, method: &str, path: &str) -> Req {
        Req::new(self.addr, method, path)
    }

    /// Logs in with JSON and returns the session cookie value.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .req("POST", "/auth")
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await;
        assert_eq!(r.status, 200, "login of {user}: {}", r.text());
        r.session_cookie().expect("login sets the session cookie")
    }

    /// Stops the server (graceful drain) and returns what `serve` returned;
    /// a server panic is re-raised here.
    pub async fn stop(mut self) -> wsgate::Result<()> {
        self.stop_inner().await
    }

    async fn stop_inner(&mut self) -> wsgate::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => match within("server stop", t).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("server task: {e}"),
            },
            None => Ok(()),
        }
    }

    /// Stops the server and gives back the temp dir (for a restart).
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        self.stop_inner().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the session cookie set by this response (any name
    /// ending in `wsgate_session`).
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (name, rest) = c.split_once('=')?;
            name.ends_with("wsgate_session")
                .then(|| rest.split(';').next().unwrap_or("").to_owned())
        })
    }

    /// Asserts the JSON error shape and returns the code.
    pub fn error_code(&self) -> String {
        let j = self.json();
        assert!(j["message"].is_string(), "error without message: {j}");
        j["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {j}"))
            .to_owned()
    }

    /// `Retry-After` as whole seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")?.parse().ok()
    }
}

/// A request builder over a fresh TCP connection.
pub struct Req {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    /// A request without body.
    pub fn new(addr: SocketAddr, method: &str, path: &str) -> Self {
        Self {
            addr,
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Sends the session cookie.
    pub fn cookie(self, value: &str) -> Self {
        self.header("cookie", &format!("wsgate_session={value}"))
    }

    /// A JSON body.
    pub fn json(self, v: &Value) -> Self {
        self.body("application/json", v.to_string().into_bytes())
    }

    /// A form body.
    pub fn form(self, s: &str) -> Self {
        self.body("application/x-www-form-urlencoded", s.as_bytes().to_vec())
    }

    /// A body with a content type.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.body = body;
        self
    }

    /// Sends it and reads the whole response.
    pub async fn send(self) -> Resp {
        within("http request", self.send_inner()).await
    }

    async fn send_inner(self) -> Resp {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(Method::from_bytes(self.method.as_bytes()).unwrap())
            .uri(&self.path)
            .header("host", self.addr.to_string());
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b.body(Full::new(Bytes::from(self.body))).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// A request body sent as `Transfer-Encoding: chunked`, one frame per chunk.
pub struct Chunked(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Sends a request whose body goes out chunked (no Content-Length).
pub async fn send_chunked(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
) -> Resp {
    let path = path.to_owned();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    within("chunked request", async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header("host", addr.to_string());
        for (k, v) in &headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = Chunked(chunks.into_iter().map(Bytes::from).collect());
        let resp = sender.send_request(b.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    })
    .await
}

/// The value of an unlabelled (or fully labelled) metric line `name value`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

impl TestGateway {
    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.req("GET", "/metrics").send().await;
        assert_eq!(r.status, 200);
        r.text()
    }

    /// SHA-256 of the token inside a cookie value (what the database keys
    /// sessions by); panics when the cookie does not verify.
    pub fn token_hash_of(&self, cookie: &str) -> [u8; 32] {
        let token = self
            .app
            .auth
            .keys()
            .verify(cookie)
            .expect("the cookie verifies under the gateway's keys");
        wsgate::auth::cookie::token_hash(&token)
    }

    /// Whether the session row of a cookie exists in the database.
    pub async fn session_exists(&self, cookie: &str) -> bool {
        let hash = self.token_hash_of(cookie);
        within(
            "session lookup",
            self.app.store.call(move |c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM sessions WHERE token_hash = ?1",
                    [&hash[..]],
                    |r| r.get::<_, i64>(0),
                )?)
            }),
        )
        .await
        .unwrap()
            == 1
    }

    /// Runs `UPDATE sessions SET <set> WHERE <the cookie's row>`.
    pub async fn update_session(&self, cookie: &str, set: &str) {
        let hash = self.token_hash_of(cookie);
        let sql = format!("UPDATE sessions SET {set} WHERE token_hash = ?1");
        let n = within(
            "session update",
            self.app
                .store
                .call(move |c| Ok(c.execute(&sql, [&hash[..]])?)),
        )
        .await
        .unwrap();
        assert_eq!(n, 1, "no session row for the cookie");
    }

    /// Rows in the sessions table.
    pub async fn count_sessions(&self) -> i64 {
        within(
            "count sessions",
            self.app
                .store
                .call(|c| Ok(c.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))?)),
        )
        .await
        .unwrap()
    }
}

impl Req {
    /// A body sent as is, without adding a `Content-Type`.
    pub fn raw_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

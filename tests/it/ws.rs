//! GET /ws and the frames of PROTOCOL.md section 2, over real sockets: the
//! upgrade checks answered as plain HTTP, every request and its reply,
//! ordering, presence, direct messages, every error code and close code a
//! client can provoke, sessions ruling sockets, slow consumers, the
//! heartbeat, POST /publish and the drain.
//!
//! Clients: [`Ws`] (tokio-tungstenite over a real TCP connection, either
//! through tungstenite's own client handshake or a hand-written one that
//! can send any header) and [`RawWs`] (bytes on a TcpStream, for frames no
//! WebSocket library would send).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use wsgate::store::now_ms;

use crate::common::*;

/// The password of every test user.
const PW: &str = "pw";
/// RFC 6455's sample key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// PROTOCOL.md: revocation reaches sockets within 2 s.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);

/// Awaits `f` at most `limit` (a bound the protocol states).
async fn within_bound<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("not within {limit:?}: {what}"),
    }
}

/// Stops the gateway (asserting a clean stop) after dropping the clients: a
/// client that is open but not read from would hold up its socket's closing
/// handshake until its timeout.
async fn stop<T>(gw: TestGateway, clients: T) {
    drop(clients);
    gw.stop().await.unwrap();
}

/// A value of a labelled counter or gauge on `/metrics`.
async fn metric_of(gw: &TestGateway, name: &str, label: &str, value: &str) -> u64 {
    let text = gw.metrics().await;
    let line = format!("{name}{{{label}=\"{value}\"}}");
    metric(&text, &line).unwrap_or_else(|| panic!("no {line} in /metrics:\n{text}")) as u64
}

/// `wsgate_upgrades_total{outcome="…"}`
async fn upgrades(gw: &TestGateway, outcome: &str) -> u64 {
    metric_of(gw, "wsgate_upgrades_total", "outcome", outcome).await
}

/// `wsgate_socket_closes_total{code="…"}`
async fn closes(gw: &TestGateway, code: &str) -> u64 {
    metric_of(gw, "wsgate_socket_closes_total", "code", code).await
}

/// `wsgate_sockets_open`
async fn sockets_open(gw: &TestGateway) -> u64 {
    let text = gw.metrics().await;
    metric(&text, "wsgate_sockets_open").expect("wsgate_sockets_open") as u64
}

/// Creates `name` (password [`PW`]) and logs in; returns the cookie value.
async fn user(gw: &TestGateway, name: &str) -> String {
    gw.add_user(name, PW).await;
    gw.login(name, PW).await
}

// ---------------------------------------------------------------------------
// Clients.

/// What a client reads next.
#[derive(Debug)]
pub enum Got {
    /// A text frame, as JSON.
    Json(Value),
    /// A close frame and its code (`None`: no code).
    Close(Option<u16>),
    /// The stream ended (or broke) without a close frame; why, for the
    /// panic messages that show it.
    End(#[allow(dead_code)] String),
}

/// A test WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<TcpStream>,
}

impl Ws {
    /// Connects with the session cookie through tungstenite's own client
    /// handshake (which also checks the server's side of it).
    pub async fn connect(gw: &TestGateway, cookie: &str) -> Ws {
        Self::connect_addr(gw.addr, cookie).await
    }

    /// [`Ws::connect`] to an address.
    pub async fn connect_addr(addr: SocketAddr, cookie: &str) -> Ws {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            "cookie",
            format!("wsgate_session={cookie}").parse().unwrap(),
        );
        let stream = within("tcp connect", TcpStream::connect(addr))
            .await
            .unwrap();
        let (ws, _) = within("ws handshake", tokio_tungstenite::client_async(req, stream))
            .await
            .unwrap();
        Ws { inner: ws }
    }

    /// Connects and reads the welcome frame.
    pub async fn open(gw: &TestGateway, cookie: &str) -> (Ws, Value) {
        let mut ws = Self::connect(gw, cookie).await;
        let w = ws.recv().await;
        assert_eq!(w["type"], "welcome", "first frame: {w}");
        (ws, w)
    }

    /// Upgrades with a hand-written request: the standard upgrade headers,
    /// the cookie if any, then `extra`. `Err` is the plain HTTP refusal.
    pub async fn upgrade(
        addr: SocketAddr,
        cookie: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<(Ws, RawResp), RawResp> {
        let (resp, stream, rest) = http_upgrade(addr, &ws_headers(cookie, extra)).await;
        if resp.status != 101 {
            return Err(resp);
        }
        assert_eq!(
            resp.header("sec-websocket-accept"),
            Some(ACCEPT),
            "{resp:?}"
        );
        let inner = within(
            "ws from raw",
            WebSocketStream::from_partially_read(stream, rest, Role::Client, None),
        )
        .await;
        Ok((Ws { inner }, resp))
    }

    /// [`Ws::upgrade`] that must be refused; returns the response.
    pub async fn refused(
        addr: SocketAddr,
        cookie: Option<&str>,
        extra: &[(&str, &str)],
    ) -> RawResp {
        match Self::upgrade(addr, cookie, extra).await {
            Ok((_, resp)) => panic!("upgrade accepted, expected a refusal: {resp:?}"),
            Err(resp) => resp,
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_msg(Message::text(v.to_string())).await;
    }

    pub async fn send_text(&mut self, s: impl Into<String>) {
        self.send_msg(Message::text(s.into())).await;
    }

    pub async fn send_msg(&mut self, m: Message) {
        within("ws send", self.inner.send(m)).await.unwrap();
    }

    /// The next text frame, close frame or end of stream (pings skipped).
    pub async fn next_got(&mut self) -> Got {
        loop {
            match within("ws recv", self.inner.next()).await {
                None => return Got::End("stream ended".into()),
                Some(Err(e)) => return Got::End(e.to_string()),
                Some(Ok(Message::Text(t))) => {
                    return Got::Json(
                        serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}")),
                    );
                }
                Some(Ok(Message::Close(f))) => {
                    // Answer like a browser: send the close reply tungstenite
                    // queued (the server may be gone already).
                    let _ = within("ws close reply", self.inner.flush()).await;
                    return Got::Close(f.map(|f| u16::from(f.code)));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Next text frame as JSON.
    pub async fn recv(&mut self) -> Value {
        match self.next_got().await {
            Got::Json(v) => v,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Sends `v` and returns the next text frame.
    pub async fn call(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.recv().await
    }

    /// Reads until the close frame; returns the text frames before it and
    /// the close code.
    pub async fn until_close(&mut self) -> (Vec<Value>, u16) {
        let mut before = Vec::new();
        loop {
            match self.next_got().await {
                Got::Json(v) => before.push(v),
                Got::Close(Some(code)) => return (before, code),
                other => panic!(
                    "expected a close frame with a code, got {other:?} after {} frames",
                    before.len()
                ),
            }
        }
    }

    /// The close code, asserting that no text frame came before it.
    pub async fn closed(&mut self) -> u16 {
        let (before, code) = self.until_close().await;
        assert!(before.is_empty(), "frames before close {code}: {before:?}");
        code
    }

    /// The socket still answers: a ping's pong is the next frame.
    pub async fn alive(&mut self) {
        let p = self.call(json!({"type": "ping", "ref": "alive"})).await;
        assert_eq!(p, json!({"type": "pong", "ref": "alive"}));
    }

    /// Closes from the client side and waits for the server's close reply
    /// (sent after the server forgot the socket).
    pub async fn close_and_wait(mut self) {
        within("ws close", self.inner.close(None)).await.unwrap();
        loop {
            match self.next_got().await {
                Got::Json(_) => {}
                Got::Close(_) | Got::End(_) => return,
            }
        }
    }
}

/// A response to a hand-written HTTP request.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON error code, asserting the error shape.
    pub fn error_code(&self) -> String {
        let j: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)));
        assert!(j["message"].is_string(), "error without message: {j}");
        j["error"].as_str().expect("error code").to_owned()
    }
}

/// The standard upgrade headers, the cookie, then `extra`.
fn ws_headers(cookie: Option<&str>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", KEY),
        ("sec-websocket-version", "13"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if let Some(c) = cookie {
        h.push(("cookie".into(), format!("wsgate_session={c}")));
    }
    h.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    h
}

/// Sends `GET /ws` with exactly these headers (plus Host) and reads the
/// response head; for a non-101 also its body. Returns the response, the
/// stream and any bytes read past the head (the first WebSocket frames).
async fn http_upgrade(
    addr: SocketAddr,
    headers: &[(String, String)],
) -> (RawResp, TcpStream, Vec<u8>) {
    within("raw upgrade", async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET /ws HTTP/1.1\r\nhost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = s.read_buf(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
        };
        let head = String::from_utf8(buf[..end].to_vec()).unwrap();
        let mut rest = buf[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        let mut resp = RawResp {
            status,
            headers,
            body: Vec::new(),
        };
        if status != 101 {
            let len: usize = resp
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while rest.len() < len {
                let n = s.read_buf(&mut rest).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
            }
            resp.body = std::mem::take(&mut rest);
        }
        (resp, s, rest)
    })
    .await
}

/// A WebSocket client speaking raw bytes.
pub struct RawWs {
    s: TcpStream,
    buf: Vec<u8>,
}

/// First byte of a frame: FIN and opcode.
const FIN: u8 = 0x80;
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encodes a frame: `first` is the FIN/RSV/opcode byte.
fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(m | n as u8);
    } else if n <= 0xffff {
        out.push(m | 126);
        out.extend((n as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend((n as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            out.extend(k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend(payload),
    }
    out
}

impl RawWs {
    /// Upgrades with the cookie; panics unless `101`.
    pub async fn open(addr: SocketAddr, cookie: &str) -> RawWs {
        let (resp, s, rest) = http_upgrade(addr, &ws_headers(Some(cookie), &[])).await;
        assert_eq!(resp.status, 101, "{resp:?}");
        let mut ws = RawWs { s, buf: rest };
        let (op, welcome) = ws.frame().await.expect("welcome frame");
        assert_eq!(op, FIN | OP_TEXT);
        let w: Value = serde_json::from_slice(&welcome).unwrap();
        assert_eq!(w["type"], "welcome");
        ws
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        within("raw write", self.s.write_all(bytes)).await.unwrap();
    }

    /// The next frame (first byte, payload); `None` when the connection ends.
    pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within("raw frame", async {
            loop {
                if let Some((len, first, payload)) = self.parse() {
                    self.buf.drain(..len);
                    return Some((first, payload));
                }
                match self.s.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    fn parse(&self) -> Option<(usize, u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        (b.len() >= at + len).then(|| (at + len, b[0], b[at..at + len].to_vec()))
    }

    /// Reads frames until a close frame: (first bytes of the frames before
    /// it, its code).
    pub async fn close_code(&mut self) -> (Vec<u8>, u16) {
        let mut before = Vec::new();
        loop {
            let (first, payload) = self
                .frame()
                .await
                .unwrap_or_else(|| panic!("ended without a close frame after {before:x?}"));
            if first & 0x0f == OP_CLOSE {
                assert!(payload.len() >= 2, "close frame without a code");
                // The closing handshake: echo the code (the server may be
                // gone already).
                let reply = encode(FIN | OP_CLOSE, &payload[..2], Some(MASK));
                let _ = within("raw close reply", self.s.write_all(&reply)).await;
                return (before, u16::from_be_bytes([payload[0], payload[1]]));
            }
            before.push(first);
        }
    }
}

/// A keep-alive HTTP/1.1 connection for many `POST /publish`.
struct Http {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        let stream = within("tcp connect", TcpStream::connect(addr))
            .await
            .unwrap();
        let (sender, conn) = within(
            "http handshake",
            hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        Http { sender, addr }
    }

    async fn publish(&mut self, key: &str, body: &Value) -> (u16, Value) {
        within("publish", async {
            let req = hyper::Request::post("/publish")
                .header("host", self.addr.to_string())
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let resp = self.sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice(&body).unwrap())
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// The smoke test.

#[tokio::test]
async fn welcome_join_publish_smoke() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "pw").await;
    let cookie = gw.login("alice", "pw").await;
    let mut ws = Ws::connect(&gw, &cookie).await;
    let w = ws.recv().await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["user"]["username"], "alice");
    assert_eq!(w["protocol"], 1);
    ws.send(json!({"type": "join", "room": "lobby", "ref": 1}))
        .await;
    let a = ws.recv().await;
    assert_eq!(
        a,
        json!({"type": "ack", "ref": 1, "seq": 0, "epoch": a["epoch"], "users": ["alice"]})
    );
    ws.send(json!({"type": "publish", "room": "lobby", "data": {"x": 1}, "ref": "p"}))
        .await;
    let a = ws.recv().await;
    assert_eq!(
        (a["type"].as_str(), a["ref"].as_str(), a["seq"].as_u64()),
        (Some("ack"), Some("p"), Some(1))
    );
    let m = ws.recv().await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["data"], json!({"x": 1}));
    assert_eq!(m["seq"], 1);
    stop(gw, ws).await;
}

// ---------------------------------------------------------------------------
// 1. The upgrade: refusals as plain HTTP, in the order of PROTOCOL.md.

#[tokio::test]
async fn plain_get_is_426_and_malformed_upgrades_are_400() {
    let gw = TestGateway::start().await;
    let cookie = user(&gw, "alice").await;

    let r = gw.req("GET", "/ws").cookie(&cookie).send().await;
    assert_eq!(r.status, 426, "{}", r.text());
    assert_eq!(r.error_code(), "upgrade_required");
    assert_eq!(r.header("upgrade"), Some("websocket"));

    let std = ws_headers(Some(&cookie), &[]);
    let without = |name: &str| -> Vec<(String, String)> {
        std.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut h = without(name);
        h.push((name.to_owned(), value.to_owned()));
        h
    };
    let cases = [
        ("no Sec-WebSocket-Key", without("sec-websocket-key")),
        ("key not base64", with("sec-websocket-key", "not base64!")),
        // 15 bytes, not 16
        (
            "short key",
            with("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA"),
        ),
        ("version 12", with("sec-websocket-version", "12")),
        ("no version", without("sec-websocket-version")),
        (
            "Connection without upgrade",
            with("connection", "keep-alive"),
        ),
        ("no Connection", without("connection")),
        ("Upgrade not websocket", with("upgrade", "h2c")),
    ];
    for (what, headers) in &cases {
        let (resp, _, _) = http_upgrade(gw.addr, headers).await;
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        assert_eq!(resp.error_code(), "bad_request", "{what}");
    }
    // A malformed upgrade is 400 before any session check.
    let no_cookie: Vec<(String, String)> = ws_headers(None, &[])
        .into_iter()
        .filter(|(k, _)| k != "sec-websocket-key")
        .collect();
    let (resp, _, _) = http_upgrade(gw.addr, &no_cookie).await;
    assert_eq!(resp.status, 400, "{resp:?}");

    // The socket opens with the same headers done right.
    let (mut ws, resp) = Ws::upgrade(gw.addr, Some(&cookie), &[]).await.unwrap();
    assert_eq!(
        resp.header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert_eq!(ws.recv().await["type"], "welcome");
    ws.alive().await;

    assert_eq!(upgrades(&gw, "upgrade_required").await, 1);
    assert_eq!(upgrades(&gw, "bad_request").await, cases.len() as u64 + 1);
    assert_eq!(upgrades(&gw, "ok").await, 1);
    stop(gw, ws).await;
}

#[tokio::test]
async fn upgrades_without_a_live_session_are_401() {
    let gw = TestGateway::start().await;
    let cookie = user(&gw, "alice").await;
    let unauthorized = |r: &RawResp| {
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.error_code(), "unauthenticated");
    };

    unauthorized(&Ws::refused(gw.addr, None, &[]).await);
    let mut tampered = cookie.clone().into_bytes();
    let i = tampered.len() - 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    unauthorized(&Ws::refused(gw.addr, Some(&tampered), &[]).await);
    unauthorized(&Ws::refused(gw.addr, Some("garbage"), &[]).await);
    // 401 comes before the Origin check.
    unauthorized(&Ws::refused(gw.addr, None, &[("origin", "http://evil.example")]).await);

    // Logged out.
    let out = user(&gw, "bob").await;
    let r = gw.req("POST", "/logout").cookie(&out).send().await;
    assert_eq!(r.status, 204);
    unauthorized(&Ws::refused(gw.addr, Some(&out), &[]).await);

    // Expired.
    let expired = gw.login("alice", PW).await;
    gw.update_session(&expired, &format!("expires_at = {}", now_ms() - 1))
        .await;
    unauthorized(&Ws::refused(gw.addr, Some(&expired), &[]).await);

    // Idle past the idle limit.
    let idle = gw.login("alice", PW).await;
    let long_ago = now_ms() - 3 * 3_600_000;
    gw.update_session(&idle, &format!("last_seen = {long_ago}"))
        .await;
    unauthorized(&Ws::refused(gw.addr, Some(&idle), &[]).await);

    // Disabled user (the session row is left in place on purpose).
    let dave = user(&gw, "dave").await;
    within(
        "disable dave",
        gw.app
            .store
            .call(|c| Ok(c.execute("UPDATE users SET disabled = 1 WHERE username = 'dave'", [])?)),
    )
    .await
    .unwrap();
    unauthorized(&Ws::refused(gw.addr, Some(&dave), &[]).await);

    // None of that hurt alice's first session.
    let (mut ws, _) = Ws::upgrade(gw.addr, Some(&cookie), &[]).await.unwrap();
    assert_eq!(ws.recv().await["type"], "welcome");
    assert_eq!(upgrades(&gw, "unauthenticated").await, 8);
    stop(gw, ws).await;
}

#[tokio::test]
async fn session_protection_binds_sockets_to_the_user_agent() {
    const UA: &str = "Mozilla/5.0 Foo/1.2";
    let gw = TestGateway::start().await;
    gw.add_user("alice", PW).await;
    let r = gw
        .req("POST", "/auth")
        .header("user-agent", UA)
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let cookie = r.session_cookie().unwrap();

    let (mut first, _) = Ws::upgrade(gw.addr, Some(&cookie), &[("user-agent", UA)])
        .await
        .unwrap();
    assert_eq!(first.recv().await["type"], "welcome");
    // A version update keeps the session.
    let (mut updated, _) = Ws::upgrade(
        gw.addr,
        Some(&cookie),
        &[("user-agent", "Mozilla/5.0 Foo/9.10")],
    )
    .await
    .unwrap();
    assert_eq!(updated.recv().await["type"], "welcome");
    updated.close_and_wait().await;

    // Another browser: 401, the session is revoked and its socket closed.
    let r = Ws::refused(
        gw.addr,
        Some(&cookie),
        &[("user-agent", "Mozilla/5.0 Bar/1.2")],
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.error_code(), "unauthenticated");
    assert_eq!(
        within_bound("revoked socket", REVOCATION_BOUND, first.closed()).await,
        4001
    );
    let r = Ws::refused(gw.addr, Some(&cookie), &[("user-agent", UA)]).await;
    assert_eq!(r.status, 401, "the revoked session stays revoked");
    stop(gw, first).await;
}

#[tokio::test]
async fn foreign_origins_are_403_even_with_a_valid_cookie() {
    let gw = TestGateway::start().await;
    let cookie = user(&gw, "alice").await;
    for origin in [
        "http://evil.example",
        "null",
        "https://127.0.0.1",
        &format!("http://{}.evil.example", gw.addr.ip()),
        &format!("https://{}", gw.addr),
    ] {
        let r = Ws::refused(gw.addr, Some(&cookie), &[("origin", origin)]).await;
        assert_eq!(r.status, 403, "{origin}: {r:?}");
        assert_eq!(r.error_code(), "forbidden_origin", "{origin}");
    }
    // Same origin (and no Origin) passes.
    let same = format!("http://{}", gw.addr);
    let (mut ws, _) = Ws::upgrade(gw.addr, Some(&cookie), &[("origin", &same)])
        .await
        .unwrap();
    assert_eq!(ws.recv().await["type"], "welcome");
    let (mut ws2, _) = Ws::upgrade(gw.addr, Some(&cookie), &[]).await.unwrap();
    assert_eq!(ws2.recv().await["type"], "welcome");
    assert_eq!(upgrades(&gw, "forbidden").await, 5);
    assert_eq!(upgrades(&gw, "ok").await, 2);
    stop(gw, (ws, ws2)).await;
}

#[tokio::test]
async fn per_user_socket_limit_is_503_with_retry_after_and_frees_on_close() {
    let gw = TestGateway::start_with(|c| c.gateway.max_sockets_per_user = 2).await;
    let alice = user(&gw, "alice").await;
    let alice2 = gw.login("alice", PW).await;
    let bob = user(&gw, "bob").await;
    let (a1, _) = Ws::open(&gw, &alice).await;
    // The limit is per user, across sessions.
    let (mut a2, _) = Ws::open(&gw, &alice2).await;

    for c in [&alice, &alice2] {
        let r = Ws::refused(gw.addr, Some(c), &[]).await;
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.error_code(), "too_many_connections");
        let retry: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in whole seconds");
        assert!(retry >= 1);
    }
    // 403 is checked before the limit.
    let r = Ws::refused(gw.addr, Some(&alice), &[("origin", "http://evil.example")]).await;
    assert_eq!(r.status, 403);
    // Another user is not limited by alice's sockets.
    let (mut b, _) = Ws::open(&gw, &bob).await;

    a1.close_and_wait().await;
    let (mut a3, _) = Ws::open(&gw, &alice).await;
    let r = Ws::refused(gw.addr, Some(&alice), &[]).await;
    assert_eq!(r.status, 503);
    for ws in [&mut a2, &mut a3, &mut b] {
        ws.alive().await;
    }
    assert_eq!(upgrades(&gw, "limited").await, 3);
    stop(gw, (a2, a3, b)).await;
}

#[tokio::test]
async fn global_socket_limit_is_503_and_frees_on_close() {
    let gw = TestGateway::start_with(|c| c.gateway.max_sockets = 2).await;
    let alice = user(&gw, "alice").await;
    let bob = user(&gw, "bob").await;
    let carol = user(&gw, "carol").await;
    let (mut a, _) = Ws::open(&gw, &alice).await;
    let (b, _) = Ws::open(&gw, &bob).await;
    let r = Ws::refused(gw.addr, Some(&carol), &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.error_code(), "too_many_connections");
    assert!(r.header("retry-after").is_some());
    b.close_and_wait().await;
    let (mut c, _) = Ws::open(&gw, &carol).await;
    assert_eq!(Ws::refused(gw.addr, Some(&bob), &[]).await.status, 503);
    a.alive().await;
    c.alive().await;
    assert_eq!(sockets_open(&gw).await, 2);
    assert_eq!(upgrades(&gw, "limited").await, 2);
    stop(gw, (a, c)).await;
}

#[tokio::test]
async fn subprotocol_wsgate_v1_is_selected_only_when_offered() {
    let gw = TestGateway::start().await;
    let cookie = user(&gw, "alice").await;
    for (offer, selected) in [
        (Some("wsgate.v1"), Some("wsgate.v1")),
        (Some("foo, wsgate.v1"), Some("wsgate.v1")),
        (Some("wsgate.v1 , bar"), Some("wsgate.v1")),
        (Some("foo"), None),
        (Some("wsgate.v10"), None),
        (None, None),
    ] {
        let extra: Vec<(&str, &str)> = offer
            .map(|o| ("sec-websocket-protocol", o))
            .into_iter()
            .collect();
        let (mut ws, resp) = Ws::upgrade(gw.addr, Some(&cookie), &extra)
            .await
            .unwrap_or_else(|r| panic!("{offer:?}: {r:?}"));
        assert_eq!(resp.header("sec-websocket-protocol"), selected, "{offer:?}");
        assert_eq!(ws.recv().await["type"], "welcome");
        ws.close_and_wait().await;
    }
    // Offered on two header lines.
    let (mut ws, resp) = Ws::upgrade(
        gw.addr,
        Some(&cookie),
        &[
            ("sec-websocket-protocol", "foo"),
            ("sec-websocket-protocol", "wsgate.v1"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.header("sec-websocket-protocol"), Some("wsgate.v1"));
    assert_eq!(ws.recv().await["type"], "welcome");
    ws.alive().await;
    stop(gw, ws).await;
}

// ---------------------------------------------------------------------------
// 2-3. welcome and the requests.

#[tokio::test]
async fn welcome_is_the_first_frame() {
    let gw = TestGateway::start().await;
    let id = gw.add_user("alice", PW).await;
    let cookie = gw.login("alice", PW).await;
    let (_a, w1) = Ws::open(&gw, &cookie).await;
    let (_b, w2) = Ws::open(&gw, &cookie).await;
    for w in [&w1, &w2] {
        assert_eq!(w["user"], json!({"id": id, "username": "alice"}), "{w}");
        assert_eq!(w["protocol"], 1);
        assert!(w["conn"].is_string() || w["conn"].is_u64(), "conn id: {w}");
    }
    assert_ne!(w1["conn"], w2["conn"], "each socket has its own conn id");
    stop(gw, (_a, _b)).await;
}

fn assert_ts(v: &Value) {
    let ts = v["ts"].as_i64().unwrap_or_else(|| panic!("ts: {v}"));
    assert!((ts - now_ms()).abs() < 60_000, "ts {ts} is not now: {v}");
}

/// Asserts an error frame and returns its code.
fn error_code(v: &Value, reference: Option<Value>) -> String {
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["message"].is_string(), "error without message: {v}");
    match reference {
        Some(r) => assert_eq!(v["ref"], r, "{v}"),
        None => assert!(v.get("ref").is_none(), "unexpected ref: {v}"),
    }
    v["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn join_leave_publish_presence_ping() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let bob = user(&gw, "bob").await;
    let (mut a, _) = Ws::open(&gw, &alice).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;

    let j = a
        .call(json!({"type": "join", "room": "lobby", "ref": 1}))
        .await;
    let epoch = j["epoch"].clone();
    assert!(epoch.as_str().is_some_and(|e| !e.is_empty()), "{j}");
    assert_eq!(
        j,
        json!({"type": "ack", "ref": 1, "seq": 0, "epoch": epoch, "users": ["alice"]})
    );
    // Joining again acks again.
    let j = a
        .call(json!({"type": "join", "room": "lobby", "ref": "again"}))
        .await;
    assert_eq!(
        j,
        json!({"type": "ack", "ref": "again", "seq": 0, "epoch": epoch, "users": ["alice"]})
    );
    let j = b
        .call(json!({"type": "join", "room": "lobby", "ref": "b"}))
        .await;
    assert_eq!(
        j,
        json!({"type": "ack", "ref": "b", "seq": 0, "epoch": epoch, "users": ["alice", "bob"]})
    );
    assert_eq!(
        a.recv().await,
        json!({"type": "presence_diff", "room": "lobby", "joins": ["bob"], "leaves": []})
    );

    // publish: the ack, then the sender's own message; everyone gets it.
    a.send(json!({"type": "publish", "room": "lobby", "data": {"n": [1, "x"]}, "ref": 10}))
        .await;
    assert_eq!(
        a.recv().await,
        json!({"type": "ack", "ref": 10, "seq": 1, "epoch": epoch})
    );
    for ws in [&mut a, &mut b] {
        let m = ws.recv().await;
        assert_ts(&m);
        assert_eq!(
            m,
            json!({"type": "message", "room": "lobby", "from": "alice", "data": {"n": [1, "x"]},
                   "seq": 1, "epoch": epoch, "ts": m["ts"]})
        );
    }
    b.send(json!({"type": "publish", "room": "lobby", "data": null, "ref": "p2"}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"type": "ack", "ref": "p2", "seq": 2, "epoch": epoch})
    );
    for ws in [&mut a, &mut b] {
        let m = ws.recv().await;
        assert_eq!(
            (&m["from"], &m["data"], &m["seq"]),
            (&json!("bob"), &Value::Null, &json!(2)),
            "{m}"
        );
    }
    // A re-join reports the room's last seq.
    let j = b
        .call(json!({"type": "join", "room": "lobby", "ref": 3}))
        .await;
    assert_eq!(j["seq"], 2, "{j}");
    assert_eq!(j["epoch"], epoch);

    // presence
    assert_eq!(
        a.call(json!({"type": "presence", "room": "lobby", "ref": 5}))
            .await,
        json!({"type": "presence", "ref": 5, "room": "lobby", "users": ["alice", "bob"]})
    );
    let e = a
        .call(json!({"type": "presence", "room": "elsewhere", "ref": 6}))
        .await;
    assert_eq!(error_code(&e, Some(json!(6))), "not_joined");

    // leave
    assert_eq!(
        a.call(json!({"type": "leave", "room": "lobby", "ref": 7}))
            .await,
        json!({"type": "ack", "ref": 7})
    );
    assert_eq!(
        b.recv().await,
        json!({"type": "presence_diff", "room": "lobby", "joins": [], "leaves": ["alice"]})
    );
    let e = a
        .call(json!({"type": "leave", "room": "lobby", "ref": "l"}))
        .await;
    assert_eq!(error_code(&e, Some(json!("l"))), "not_joined");
    let e = a
        .call(json!({"type": "publish", "room": "lobby", "data": 1, "ref": 8}))
        .await;
    assert_eq!(error_code(&e, Some(json!(8))), "not_joined");

    // ping, with every kind of ref
    for r in [
        json!("p"),
        json!(""),
        json!(42),
        json!(-7),
        json!(0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!("ü \" \\ 😀"),
    ] {
        assert_eq!(
            a.call(json!({"type": "ping", "ref": r})).await,
            json!({"type": "pong", "ref": r})
        );
    }
    assert_eq!(
        a.call(json!({"type": "ping"})).await,
        json!({"type": "pong"})
    );
    // b saw nothing more than what was checked.
    b.alive().await;
    stop(gw, (a, b)).await;
}

// ---------------------------------------------------------------------------
// 4. Ordering.

/// Publishes `n` messages as fast as it can write them, then reads its acks
/// and the room's messages; checks that each ack came before its own
/// message and carries that message's seq. Returns every message.
async fn publish_many(ws: &mut Ws, me: &str, n: u64, total: usize) -> Vec<Value> {
    within("publish many", async {
        for i in 0..n {
            let f =
                json!({"type": "publish", "room": "order", "data": {"by": me, "i": i}, "ref": i});
            ws.inner.feed(Message::text(f.to_string())).await.unwrap();
        }
        ws.inner.flush().await.unwrap();
    })
    .await;
    let mut acks: HashMap<u64, u64> = HashMap::new();
    let mut last_ack_seq = 0;
    let mut messages = Vec::new();
    while (acks.len() as u64) < n || messages.len() < total {
        let f = ws.recv().await;
        match f["type"].as_str() {
            Some("ack") => {
                let r = f["ref"].as_u64().unwrap();
                assert_eq!(r, acks.len() as u64, "acks in request order: {f}");
                let seq = f["seq"].as_u64().unwrap();
                assert!(seq > last_ack_seq, "ack seqs increase: {f}");
                last_ack_seq = seq;
                acks.insert(r, seq);
            }
            Some("message") => {
                if f["data"]["by"] == me {
                    let i = f["data"]["i"].as_u64().unwrap();
                    assert_eq!(
                        acks.get(&i),
                        f["seq"].as_u64().as_ref(),
                        "the ack of {i} comes before its message, with its seq: {f}"
                    );
                }
                messages.push(f);
            }
            _ => panic!("unexpected {f}"),
        }
    }
    messages
}

async fn read_messages(ws: &mut Ws, total: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < total {
        let f = ws.recv().await;
        assert_eq!(f["type"], "message", "{f}");
        out.push(f);
    }
    out
}

#[tokio::test]
async fn two_publishers_one_order_for_every_member() {
    const N: u64 = 300;
    let total = 2 * N as usize;
    let gw = TestGateway::start_with(|c| {
        c.gateway.rate_per_sec = 1e9;
        c.gateway.rate_burst = 1e9;
        c.gateway.outbound_queue = 4 * total;
    })
    .await;
    let mut socks = Vec::new();
    let mut epochs = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let cookie = user(&gw, name).await;
        let (mut ws, _) = Ws::open(&gw, &cookie).await;
        let j = ws
            .call(json!({"type": "join", "room": "order", "ref": 0}))
            .await;
        epochs.push(j["epoch"].clone());
        socks.push(ws);
    }
    // Everyone is in: drain the presence diffs (alice: bob, carol; bob: carol).
    for (i, n) in [(0, 2), (1, 1)] {
        for _ in 0..n {
            assert_eq!(socks[i].recv().await["type"], "presence_diff");
        }
    }
    let [a, b, c] = &mut socks[..] else {
        unreachable!()
    };
    let (ma, mb, mc) = tokio::join!(
        publish_many(a, "alice", N, total),
        publish_many(b, "bob", N, total),
        read_messages(c, total),
    );
    let order = |ms: &[Value]| -> Vec<(String, u64)> {
        ms.iter()
            .map(|m| {
                (
                    m["data"]["by"].as_str().unwrap().to_owned(),
                    m["data"]["i"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    for (ms, epoch) in [(&ma, &epochs[0]), (&mb, &epochs[1]), (&mc, &epochs[2])] {
        let seqs: Vec<u64> = ms.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "no gap");
        assert!(ms.iter().all(|m| m["epoch"] == *epoch), "one epoch");
        assert_eq!(epoch, &epochs[0]);
    }
    let o = order(&ma);
    assert_eq!(o, order(&mb), "alice and bob saw the same order");
    assert_eq!(o, order(&mc), "alice and carol saw the same order");
    for who in ["alice", "bob"] {
        let mine: Vec<u64> = o
            .iter()
            .filter(|(w, _)| w == who)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            mine,
            (0..N).collect::<Vec<_>>(),
            "{who}'s messages in send order"
        );
    }
    stop(gw, socks).await;
}

// ---------------------------------------------------------------------------
// 5. Presence.

/// A barrier: `z` sends a direct message to each user; each socket reads
/// up to it. Frames queued to a socket before the direct come before it, so
/// what each socket returns is everything it was sent since the last fence.
async fn fence(z: &mut Ws, n: u64, users: &[&str], socks: &mut [&mut Ws]) -> Vec<Vec<Value>> {
    for u in users {
        let a = z
            .call(json!({"type": "direct", "to": u, "data": {"fence": n}}))
            .await;
        assert_eq!(a["type"], "ack", "{a}");
    }
    let mut out = Vec::new();
    for ws in socks.iter_mut() {
        let mut before = Vec::new();
        loop {
            let f = ws.recv().await;
            if f["type"] == "direct" && f["data"] == json!({"fence": n}) {
                break;
            }
            before.push(f);
        }
        out.push(before);
    }
    out
}

fn diff(joins: &[&str], leaves: &[&str]) -> Value {
    json!({"type": "presence_diff", "room": "r", "joins": joins, "leaves": leaves})
}

#[tokio::test]
async fn presence_diffs_follow_users_not_sockets() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let bob = user(&gw, "bob").await;
    let zed = user(&gw, "zed").await;
    let (mut a1, _) = Ws::open(&gw, &alice).await;
    let (mut a2, _) = Ws::open(&gw, &alice).await;
    let (mut b1, _) = Ws::open(&gw, &bob).await;
    let (mut b2, _) = Ws::open(&gw, &bob).await;
    let (mut z, _) = Ws::open(&gw, &zed).await;
    let users = ["alice", "bob"];
    let none: Vec<Vec<Value>> = vec![vec![]; 4];
    let join = |r: &str| json!({"type": "join", "room": "r", "ref": r});
    let leave = |r: &str| json!({"type": "leave", "room": "r", "ref": r});

    let j = a1.call(join("a1")).await;
    assert_eq!(j["users"], json!(["alice"]));
    let got = fence(&mut z, 1, &users, &mut [&mut a1, &mut a2, &mut b1, &mut b2]).await;
    assert_eq!(got, none, "alone: nobody to tell");

    // bob's first socket: alice hears it, bob's sockets do not.
    let j = b1.call(join("b1")).await;
    assert_eq!(j["users"], json!(["alice", "bob"]));
    let got = fence(&mut z, 2, &users, &mut [&mut a1, &mut a2, &mut b1, &mut b2]).await;
    assert_eq!(got, vec![vec![diff(&["bob"], &[])], vec![], vec![], vec![]]);

    // Second sockets of present users: no diff anywhere.
    let j = a2.call(join("a2")).await;
    assert_eq!(j["users"], json!(["alice", "bob"]));
    let j = b2.call(join("b2")).await;
    assert_eq!(j["users"], json!(["alice", "bob"]));
    let got = fence(&mut z, 3, &users, &mut [&mut a1, &mut a2, &mut b1, &mut b2]).await;
    assert_eq!(got, none, "second sockets joining");

    // bob leaves with one socket: still present.
    assert_eq!(b1.call(leave("l1")).await["type"], "ack");
    let p = a1
        .call(json!({"type": "presence", "room": "r", "ref": "p"}))
        .await;
    assert_eq!(p["users"], json!(["alice", "bob"]));
    let got = fence(&mut z, 4, &users, &mut [&mut a1, &mut a2, &mut b1, &mut b2]).await;
    assert_eq!(got, none, "a first of two sockets leaving");

    // bob's last socket leaves: both of alice's sockets hear it.
    assert_eq!(b2.call(leave("l2")).await["type"], "ack");
    let got = fence(&mut z, 5, &users, &mut [&mut a1, &mut a2, &mut b1, &mut b2]).await;
    let left = diff(&[], &["bob"]);
    assert_eq!(got, vec![vec![left.clone()], vec![left], vec![], vec![]]);
    let p = a2
        .call(json!({"type": "presence", "room": "r", "ref": "p"}))
        .await;
    assert_eq!(p["users"], json!(["alice"]));

    // bob comes back.
    let j = b1.call(join("b1")).await;
    assert_eq!(j["users"], json!(["alice", "bob"]));
    let got = fence(&mut z, 6, &users, &mut [&mut a1, &mut a2, &mut b1, &mut b2]).await;
    let joined = diff(&["bob"], &[]);
    assert_eq!(
        got,
        vec![vec![joined.clone()], vec![joined], vec![], vec![]]
    );

    // A disconnect is a leave: alice's second-to-last socket, then her last.
    a2.close_and_wait().await;
    let got = fence(&mut z, 7, &users, &mut [&mut a1, &mut b1, &mut b2]).await;
    assert_eq!(
        got,
        vec![Vec::<Value>::new(); 3],
        "one of alice's sockets left"
    );
    a1.close_and_wait().await;
    let got = fence(&mut z, 8, &users, &mut [&mut b1, &mut b2]).await;
    assert_eq!(got, vec![vec![diff(&[], &["alice"])], vec![]]);
    let p = b1
        .call(json!({"type": "presence", "room": "r", "ref": "p"}))
        .await;
    assert_eq!(p["users"], json!(["bob"]));
    stop(gw, (b1, b2, z)).await;
}

// ---------------------------------------------------------------------------
// 6. direct.

#[tokio::test]
async fn direct_reaches_every_socket_of_the_user() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let bob = user(&gw, "bob").await;
    gw.add_user("carol", PW).await;
    let (mut a1, _) = Ws::open(&gw, &alice).await;
    let (mut a2, _) = Ws::open(&gw, &alice).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;

    let ack = b
        .call(json!({"type": "direct", "to": "alice", "data": {"hi": [1, 2]}, "ref": 7}))
        .await;
    assert_eq!(ack, json!({"type": "ack", "ref": 7, "delivered": 2}));
    for ws in [&mut a1, &mut a2] {
        let d = ws.recv().await;
        assert_ts(&d);
        assert_eq!(
            d,
            json!({"type": "direct", "from": "bob", "data": {"hi": [1, 2]}, "ts": d["ts"]})
        );
    }
    // A user with no socket: nothing delivered, not an error.
    let ack = b
        .call(json!({"type": "direct", "to": "carol", "data": 1, "ref": "c"}))
        .await;
    assert_eq!(ack, json!({"type": "ack", "ref": "c", "delivered": 0}));
    // Unknown users.
    for to in ["nobody", "bad name!", ""] {
        let e = b
            .call(json!({"type": "direct", "to": to, "data": 1, "ref": "u"}))
            .await;
        assert_eq!(error_code(&e, Some(json!("u"))), "unknown_user", "{to:?}");
    }
    // One socket gone: one delivered.
    a2.close_and_wait().await;
    let ack = b
        .call(json!({"type": "direct", "to": "alice", "data": "x", "ref": 8}))
        .await;
    assert_eq!(ack["delivered"], 1, "{ack}");
    assert_eq!(a1.recv().await["data"], "x");
    stop(gw, (a1, b)).await;
}

// ---------------------------------------------------------------------------
// 7. Errors a client can provoke; the socket stays open after each.

#[tokio::test]
async fn every_request_error_leaves_the_socket_open() {
    let gw = TestGateway::start_with(|c| c.gateway.max_rooms_per_socket = 2).await;
    let alice = user(&gw, "alice").await;
    let (mut ws, _) = Ws::open(&gw, &alice).await;

    let big = |n: usize| "x".repeat(n);
    // (frame, ref in the error, code)
    let cases: Vec<(String, Option<Value>, &str)> = vec![
        ("not json".into(), None, "bad_frame"),
        ("".into(), None, "bad_frame"),
        ("[1,2]".into(), None, "bad_frame"),
        ("\"ping\"".into(), None, "bad_frame"),
        ("null".into(), None, "bad_frame"),
        (r#"{"ref":1}"#.into(), Some(json!(1)), "bad_frame"),
        (
            r#"{"type":7,"ref":"t"}"#.into(),
            Some(json!("t")),
            "bad_frame",
        ),
        (
            r#"{"type":"join","ref":2}"#.into(),
            Some(json!(2)),
            "bad_frame",
        ),
        (
            r#"{"type":"join","room":5,"ref":3}"#.into(),
            Some(json!(3)),
            "bad_frame",
        ),
        (
            r#"{"type":"join","room":["a"],"ref":3}"#.into(),
            Some(json!(3)),
            "bad_frame",
        ),
        (
            r#"{"type":"publish","room":"r","ref":4}"#.into(),
            Some(json!(4)),
            "bad_frame",
        ),
        (
            r#"{"type":"direct","data":1,"ref":5}"#.into(),
            Some(json!(5)),
            "bad_frame",
        ),
        (
            r#"{"type":"direct","to":1,"data":1,"ref":5}"#.into(),
            Some(json!(5)),
            "bad_frame",
        ),
        (r#"{"type":"ping","ref":1.5}"#.into(), None, "bad_frame"),
        (r#"{"type":"ping","ref":{"a":1}}"#.into(), None, "bad_frame"),
        // data over 60 KiB in a frame under 64 KiB
        (
            json!({"type": "publish", "room": "r", "data": big(61 * 1024), "ref": 6}).to_string(),
            Some(json!(6)),
            "bad_frame",
        ),
        (
            json!({"type": "direct", "to": "alice", "data": big(61 * 1024), "ref": 6}).to_string(),
            Some(json!(6)),
            "bad_frame",
        ),
        (
            r#"{"type":"nope","ref":"n"}"#.into(),
            Some(json!("n")),
            "unknown_type",
        ),
        (r#"{"type":"JOIN","room":"r"}"#.into(), None, "unknown_type"),
        (
            r#"{"type":"join","room":"bad room","ref":8}"#.into(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            r#"{"type":"join","room":"","ref":8}"#.into(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            json!({"type": "join", "room": "a".repeat(65), "ref": 8}).to_string(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            r#"{"type":"join","room":"ü","ref":8}"#.into(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            r#"{"type":"publish","room":"a/b","data":1,"ref":8}"#.into(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            r#"{"type":"presence","room":"a b","ref":8}"#.into(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            r#"{"type":"leave","room":"","ref":8}"#.into(),
            Some(json!(8)),
            "invalid_room",
        ),
        (
            r#"{"type":"leave","room":"r","ref":9}"#.into(),
            Some(json!(9)),
            "not_joined",
        ),
        (
            r#"{"type":"presence","room":"r","ref":9}"#.into(),
            Some(json!(9)),
            "not_joined",
        ),
        (
            r#"{"type":"publish","room":"r","data":1,"ref":9}"#.into(),
            Some(json!(9)),
            "not_joined",
        ),
        (
            r#"{"type":"direct","to":"ghost","data":1,"ref":10}"#.into(),
            Some(json!(10)),
            "unknown_user",
        ),
    ];
    for (frame, reference, code) in &cases {
        ws.send_text(frame.clone()).await;
        let e = ws.recv().await;
        let shown = &frame[..frame.len().min(80)];
        assert_eq!(error_code(&e, reference.clone()), *code, "{shown}: {e}");
        ws.alive().await;
    }

    // The largest valid name and data are accepted.
    let room = "A-z_0.9:".repeat(8);
    assert_eq!(room.len(), 64);
    let j = ws
        .call(json!({"type": "join", "room": room, "ref": 1}))
        .await;
    assert_eq!(j["type"], "ack", "{j}");
    let data = big(60 * 1024 - 2); // encodes to exactly 60 KiB
    let a = ws
        .call(json!({"type": "publish", "room": room, "data": data, "ref": 2}))
        .await;
    assert_eq!(a["type"], "ack", "{a}");
    let m = ws.recv().await;
    assert_eq!(m["data"].as_str().map(str::len), Some(60 * 1024 - 2));

    // too_many_rooms (2 per socket here); re-joining a room is no new room.
    let j = ws
        .call(json!({"type": "join", "room": "two", "ref": 1}))
        .await;
    assert_eq!(j["type"], "ack", "{j}");
    let e = ws
        .call(json!({"type": "join", "room": "three", "ref": "t"}))
        .await;
    assert_eq!(error_code(&e, Some(json!("t"))), "too_many_rooms");
    ws.alive().await;
    let j = ws
        .call(json!({"type": "join", "room": "two", "ref": 2}))
        .await;
    assert_eq!(j["type"], "ack", "{j}");
    assert_eq!(
        ws.call(json!({"type": "leave", "room": "two", "ref": 3}))
            .await["type"],
        "ack"
    );

    // forbidden: a feed: room can be joined but not published to.
    let j = ws
        .call(json!({"type": "join", "room": "feed:x", "ref": 4}))
        .await;
    assert_eq!(j["type"], "ack", "{j}");
    let e = ws
        .call(json!({"type": "publish", "room": "feed:x", "data": 1, "ref": 5}))
        .await;
    assert_eq!(error_code(&e, Some(json!(5))), "forbidden");
    ws.alive().await;
    let e = ws
        .call(json!({"type": "join", "room": "three", "ref": "t"}))
        .await;
    assert_eq!(error_code(&e, Some(json!("t"))), "too_many_rooms");
    ws.alive().await;
    stop(gw, ws).await;
}

/// Sends pings with refs `refs` in one write.
async fn ping_burst(ws: &mut Ws, refs: std::ops::Range<u64>) {
    within("ping burst", async {
        for r in refs {
            ws.inner
                .feed(Message::text(json!({"type": "ping", "ref": r}).to_string()))
                .await
                .unwrap();
        }
        ws.inner.flush().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn over_the_rate_limit_requests_get_at_most_one_error_per_second() {
    let gw = TestGateway::start_with(|c| {
        c.gateway.rate_per_sec = 1.0;
        c.gateway.rate_burst = 3.0;
    })
    .await;
    let alice = user(&gw, "alice").await;
    let (mut ws, _) = Ws::open(&gw, &alice).await;

    // The burst passes, the next request gets one error, the rest nothing.
    ping_burst(&mut ws, 0..20).await;
    for r in 0..3 {
        assert_eq!(ws.recv().await, json!({"type": "pong", "ref": r}));
    }
    let e = ws.recv().await;
    assert_eq!(error_code(&e, Some(json!(3))), "rate_limited");

    // A second later: requests pass again as tokens come back, and the
    // next refusal is told again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ping_burst(&mut ws, 100..120).await;
    let mut next = 100;
    loop {
        let f = ws.recv().await;
        if f["type"] == "pong" {
            assert_eq!(f["ref"], next, "{f}");
            next += 1;
        } else {
            assert_eq!(error_code(&f, Some(json!(next))), "rate_limited");
            break;
        }
    }
    assert!(next > 100, "a token came back within a second");

    // And nothing else was sent for the refused requests: the next frame
    // after waiting for a token is this ping's pong.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.alive().await;
    stop(gw, ws).await;
}

// ---------------------------------------------------------------------------
// 8. Close codes a client can provoke.

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let (mut ws, _) = Ws::open(&gw, &alice).await;
    ws.send_msg(Message::binary(b"{\"type\":\"ping\"}".to_vec()))
        .await;
    assert_eq!(ws.closed().await, 1003);
    assert_eq!(closes(&gw, "1003").await, 1);
    stop(gw, ws).await;
}

#[tokio::test]
async fn a_frame_or_message_over_64_kib_closes_with_1009() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;

    // One frame just over the limit.
    let (mut ws, _) = Ws::open(&gw, &alice).await;
    let over = json!({"type": "publish", "room": "r", "data": "x".repeat(64 * 1024)});
    ws.send_text(over.to_string()).await;
    assert_eq!(ws.closed().await, 1009);

    // Exactly 64 KiB is within the limit.
    let (mut ws, _) = Ws::open(&gw, &alice).await;
    let head = r#"{"type":"ping","pad":""#;
    let frame = format!("{head}{}\"}}", "x".repeat(64 * 1024 - head.len() - 2));
    assert_eq!(frame.len(), 64 * 1024);
    ws.send_text(frame).await;
    assert_eq!(ws.recv().await["type"], "pong");

    // A message over the limit in frames under it.
    let mut raw = RawWs::open(gw.addr, &alice).await;
    let part = vec![b'x'; 40 * 1024];
    raw.write(&encode(OP_TEXT, &part, Some(MASK))).await;
    raw.write(&encode(OP_CONT, &part, Some(MASK))).await;
    let (_, code) = raw.close_code().await;
    assert_eq!(code, 1009);
    stop(gw, (ws, raw)).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let mut raw = RawWs::open(gw.addr, &alice).await;
    raw.write(&encode(
        FIN | OP_TEXT,
        b"{\"type\":\"\xff\xfe\"}",
        Some(MASK),
    ))
    .await;
    let (_, code) = raw.close_code().await;
    assert_eq!(code, 1007);
    stop(gw, raw).await;
}

#[tokio::test]
async fn protocol_errors_close_with_1002() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let ping = br#"{"type":"ping"}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", encode(FIN | OP_TEXT, ping, None)),
        ("RSV1 set", encode(FIN | 0x40 | OP_TEXT, ping, Some(MASK))),
        ("RSV3 set", encode(FIN | 0x10 | OP_TEXT, ping, Some(MASK))),
        ("reserved data opcode", encode(FIN | 0x3, ping, Some(MASK))),
        (
            "reserved control opcode",
            encode(FIN | 0xb, b"", Some(MASK)),
        ),
        ("fragmented ping", encode(OP_PING, b"x", Some(MASK))),
        (
            "ping over 125 bytes",
            encode(FIN | OP_PING, &[b'x'; 126], Some(MASK)),
        ),
        (
            "continuation first",
            encode(FIN | OP_CONT, ping, Some(MASK)),
        ),
    ];
    for (what, bytes) in &cases {
        let mut raw = RawWs::open(gw.addr, &alice).await;
        raw.write(bytes).await;
        let (_, code) = raw.close_code().await;
        assert_eq!(code, 1002, "{what}");
    }
    assert_eq!(closes(&gw, "1002").await, cases.len() as u64);
    stop(gw, ()).await;
}

#[tokio::test]
async fn sustained_rate_abuse_closes_with_1008() {
    // A client sending ten times its rate, for as long as it takes. Some of
    // its requests pass (a token comes back every 200 ms); it is still over
    // the limit the whole time.
    let gw = TestGateway::start_with(|c| {
        c.gateway.rate_per_sec = 5.0;
        c.gateway.rate_burst = 5.0;
    })
    .await;
    let alice = user(&gw, "alice").await;
    let (ws, _) = Ws::open(&gw, &alice).await;
    let (mut tx, mut rx) = ws.inner.split();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut pongs, mut errors, mut sending) = (0, 0, true);
    let code = within("1008", async {
        loop {
            tokio::select! {
                _ = tick.tick(), if sending => {
                    let m = Message::text(json!({"type": "ping"}).to_string());
                    sending = tx.send(m).await.is_ok();
                }
                m = rx.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        match v["type"].as_str() {
                            Some("pong") => pongs += 1,
                            Some("error") => {
                                assert_eq!(v["code"], "rate_limited", "{v}");
                                errors += 1;
                            }
                            _ => panic!("unexpected {v}"),
                        }
                    }
                    Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    other => panic!("ended without a close frame: {other:?}"),
                }
            }
        }
    })
    .await;
    let over_for = started.elapsed();
    let _ = within("close reply", tx.flush()).await;
    assert_eq!(code, Some(1008));
    assert!(
        over_for >= Duration::from_secs(10),
        "closed after {over_for:?}, before 10 s over the limit"
    );
    assert!(
        errors >= 5 && errors <= over_for.as_secs() + 1,
        "at most one rate_limited per second: {errors} in {over_for:?}"
    );
    assert!(pongs > 5, "requests within the rate kept passing: {pongs}");
    stop(gw, (tx, rx)).await;
}

// ---------------------------------------------------------------------------
// 9. Sessions rule sockets.

#[tokio::test]
async fn logout_closes_that_sessions_sockets_with_4001() {
    let gw = TestGateway::start().await;
    let s1 = user(&gw, "alice").await;
    let s2 = gw.login("alice", PW).await;
    let bob = user(&gw, "bob").await;
    let (mut a1, _) = Ws::open(&gw, &s1).await;
    let (mut a1b, _) = Ws::open(&gw, &s1).await;
    let (mut a2, _) = Ws::open(&gw, &s2).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;

    let r = gw.req("POST", "/logout").cookie(&s1).send().await;
    assert_eq!(r.status, 204);
    for ws in [&mut a1, &mut a1b] {
        assert_eq!(
            within_bound("logout close", REVOCATION_BOUND, ws.closed()).await,
            4001
        );
    }
    a2.alive().await;
    b.alive().await;

    // ?all=true: every session of the user.
    let s3 = gw.login("alice", PW).await;
    let (mut a3, _) = Ws::open(&gw, &s3).await;
    let r = gw.req("POST", "/logout?all=true").cookie(&s2).send().await;
    assert_eq!(r.status, 204);
    for ws in [&mut a2, &mut a3] {
        assert_eq!(
            within_bound("logout all close", REVOCATION_BOUND, ws.closed()).await,
            4001
        );
    }
    b.alive().await;
    assert_eq!(gw.req("GET", "/me").cookie(&s3).send().await.status, 401);
    assert_eq!(closes(&gw, "4001").await, 4);
    stop(gw, b).await;
}

#[tokio::test]
async fn an_expired_session_closes_its_sockets_with_4001() {
    let gw = TestGateway::start_with(|c| {
        c.watch_interval = Duration::from_millis(50);
        c.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let alice = user(&gw, "alice").await;
    let other = gw.login("alice", PW).await;
    let (mut ws, _) = Ws::open(&gw, &alice).await;
    let (mut stays, _) = Ws::open(&gw, &other).await;
    gw.update_session(&alice, &format!("expires_at = {}", now_ms() - 1))
        .await;
    assert_eq!(
        within_bound("expiry close", REVOCATION_BOUND, ws.closed()).await,
        4001
    );
    stays.alive().await;
    stop(gw, (ws, stays)).await;
}

#[tokio::test]
async fn a_session_reaching_its_end_closes_its_socket_with_4001() {
    // No write ends this session: its lifetime runs out while the socket
    // is open.
    let gw = TestGateway::start_with(|c| {
        c.auth.session_lifetime = Duration::from_secs(1);
        c.watch_interval = Duration::from_millis(50);
        c.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let alice = user(&gw, "alice").await;
    let (mut ws, _) = Ws::open(&gw, &alice).await;
    let (before, code) = ws.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(code, 4001);
    assert_eq!(gw.req("GET", "/me").cookie(&alice).send().await.status, 401);
    stop(gw, ws).await;
}

#[tokio::test]
async fn disabling_the_user_from_another_connection_closes_sockets_with_4001() {
    // The default watch interval (1 s): what a separate `wsgate user
    // disable` process relies on.
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let alice2 = gw.login("alice", PW).await;
    let bob = user(&gw, "bob").await;
    let (mut a1, _) = Ws::open(&gw, &alice).await;
    let (mut a2, _) = Ws::open(&gw, &alice2).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;

    // What `wsgate user disable alice` does, on a connection of its own.
    let mut c = rusqlite::Connection::open(gw.db_path()).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = c.transaction().unwrap();
    let id: i64 = tx
        .query_row("SELECT id FROM users WHERE username = 'alice'", [], |r| {
            r.get(0)
        })
        .unwrap();
    tx.execute("UPDATE users SET disabled = 1 WHERE id = ?1", [id])
        .unwrap();
    assert_eq!(
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])
            .unwrap(),
        2
    );
    tx.commit().unwrap();
    drop(c);

    for ws in [&mut a1, &mut a2] {
        assert_eq!(
            within_bound("disable close", REVOCATION_BOUND, ws.closed()).await,
            4001
        );
    }
    b.alive().await;
    stop(gw, (a1, a2, b)).await;
}

// ---------------------------------------------------------------------------
// 10. Slow consumers.

#[tokio::test]
async fn a_reader_that_never_reads_gets_4002_and_the_others_keep_receiving() {
    const API_KEY: &str = "k";
    let gw = TestGateway::start_with(|c| {
        c.gateway.outbound_queue = 16;
        c.gateway.publish_key = Some(API_KEY.into());
    })
    .await;
    let slow_cookie = user(&gw, "slow").await;
    let fast_cookie = user(&gw, "fast").await;
    let (mut slow, _) = Ws::open(&gw, &slow_cookie).await;
    assert_eq!(
        slow.call(json!({"type": "join", "room": "r"})).await["type"],
        "ack"
    );
    let (mut fast, _) = Ws::open(&gw, &fast_cookie).await;
    assert_eq!(
        fast.call(json!({"type": "join", "room": "r"})).await["type"],
        "ack"
    );
    // From here `slow` is not polled until the publishing is over.

    let pad = "p".repeat(8 * 1024);
    const MAX: u64 = 20_000;
    const AFTER: u64 = 100;
    let mut http = Http::connect(gw.addr).await;
    let publisher = async {
        // Publish until the slow socket stops counting as delivered, then
        // some more: the fast member still gets those.
        let mut dropped_at = None;
        let mut i = 0;
        loop {
            let (status, r) = http
                .publish(API_KEY, &json!({"room": "r", "data": {"i": i, "pad": pad}}))
                .await;
            assert_eq!(status, 200, "{r}");
            assert_eq!(r["seq"], i + 1, "{r}");
            i += 1;
            match (r["delivered"].as_u64(), dropped_at) {
                (Some(2), None) => {}
                (Some(1), None) => dropped_at = Some(i),
                (Some(1), Some(at)) if i >= at + AFTER => break,
                (Some(1), Some(_)) => {}
                _ => panic!("unexpected {r}"),
            }
            assert!(i < MAX, "the slow reader was never dropped");
        }
        let (status, _) = http
            .publish(API_KEY, &json!({"room": "r", "data": {"end": true}}))
            .await;
        assert_eq!(status, 200);
        (i, dropped_at.unwrap())
    };
    let reader = async {
        let mut seq = 0;
        loop {
            let m = fast.recv().await;
            if m["type"] == "presence_diff" {
                // the slow reader was dropped: it left the room
                assert_eq!(m["leaves"], json!(["slow"]), "{m}");
                continue;
            }
            assert_eq!(m["type"], "message", "{m}");
            seq += 1;
            assert_eq!(m["seq"], seq, "fast member: in order, no gap");
            if m["data"]["end"] == true {
                return seq;
            }
            assert_eq!(m["data"]["i"], seq - 1);
        }
    };
    let ((published, dropped_at), fast_got) = tokio::join!(publisher, reader);
    assert_eq!(fast_got, published + 1, "the fast member got every message");
    fast.alive().await;

    // Now the slow reader reads: a prefix of the messages, then 4002.
    let (frames, code) = slow.until_close().await;
    assert_eq!(code, 4002, "after {} frames", frames.len());
    let seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert!(
        !seqs.is_empty(),
        "the slow reader got messages before its close"
    );
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "a gapless prefix"
    );
    assert!(
        (seqs.len() as u64) < dropped_at,
        "{} of {dropped_at}",
        seqs.len()
    );
    assert_eq!(closes(&gw, "4002").await, 1);
    let text = gw.metrics().await;
    assert_eq!(metric(&text, "wsgate_queue_overflows_total"), Some(1.0));
    stop(gw, (fast, slow)).await;
}

// ---------------------------------------------------------------------------
// 11. Heartbeat.

#[tokio::test]
async fn heartbeat_keeps_answering_clients_and_closes_silent_ones_with_4003() {
    let gw = TestGateway::start_with(|c| {
        c.gateway.ping_interval = Duration::from_millis(100);
        c.gateway.pong_timeout = Duration::from_millis(300);
    })
    .await;
    let alice = user(&gw, "alice").await;

    // tungstenite answers pings as long as the stream is polled.
    let answering = async {
        let (mut ws, _) = Ws::open(&gw, &alice).await;
        let until = tokio::time::Instant::now() + Duration::from_millis(1200);
        let mut pings = 0;
        loop {
            match tokio::time::timeout_at(until, ws.inner.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 2, "the server pings: {pings}");
        ws.alive().await;
        ws
    };
    // A raw client that never answers.
    let silent = async {
        let mut raw = RawWs::open(gw.addr, &alice).await;
        let (before, code) = raw.close_code().await;
        assert!(
            before.contains(&(FIN | OP_PING)),
            "pinged first: {before:x?}"
        );
        code
    };
    // A tungstenite client that stops polling for a while.
    let stalled = async {
        let (mut ws, _) = Ws::open(&gw, &alice).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        ws.until_close().await.1
    };
    let (mut ws, silent_code, stalled_code) = tokio::join!(answering, silent, stalled);
    assert_eq!(silent_code, 4003);
    assert_eq!(stalled_code, 4003);
    ws.alive().await;
    assert_eq!(closes(&gw, "4003").await, 2);
    stop(gw, ws).await;
}

// ---------------------------------------------------------------------------
// 12. POST /publish.

#[tokio::test]
async fn publish_api_is_404_without_a_key() {
    let gw = TestGateway::start().await;
    let r = gw
        .req("POST", "/publish")
        .header("authorization", "Bearer k")
        .json(&json!({"room": "feed:x", "data": 1}))
        .send()
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_code(), "not_found");
    stop(gw, ()).await;
}

#[tokio::test]
async fn publish_api_delivers_to_feed_rooms() {
    let gw = TestGateway::start_with(|c| c.gateway.publish_key = Some("s3cret-key".into())).await;
    let post = |auth: Option<&str>, body: Vec<u8>| {
        let mut r = gw.req("POST", "/publish");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body("application/json", body)
    };
    let ok_body = || {
        json!({"room": "feed:metrics", "data": {"cpu": 0.5}})
            .to_string()
            .into_bytes()
    };

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer "),
        Some("Basic s3cret-key"),
        Some("s3cret-key"),
        Some("Bearer s3cret-key-and-more"),
    ] {
        let r = post(auth, ok_body()).send().await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
        assert_eq!(r.error_code(), "invalid_api_key");
    }

    let alice = user(&gw, "alice").await;
    let bob = user(&gw, "bob").await;
    let (mut a1, _) = Ws::open(&gw, &alice).await;
    let (mut a2, _) = Ws::open(&gw, &alice).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;
    let mut epoch = Value::Null;
    for ws in [&mut a1, &mut a2, &mut b] {
        let j = ws
            .call(json!({"type": "join", "room": "feed:metrics", "ref": 1}))
            .await;
        assert_eq!(j["type"], "ack", "{j}");
        epoch = j["epoch"].clone();
    }
    // Drain the presence diffs (a1: bob; a2: bob).
    for ws in [&mut a1, &mut a2] {
        assert_eq!(ws.recv().await["type"], "presence_diff");
    }

    let r = post(Some("Bearer s3cret-key"), ok_body()).send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"delivered": 3, "seq": 1, "epoch": epoch}));
    for ws in [&mut a1, &mut a2, &mut b] {
        let m = ws.recv().await;
        assert_ts(&m);
        assert_eq!(
            m,
            json!({"type": "message", "room": "feed:metrics", "from": null,
                   "data": {"cpu": 0.5}, "seq": 1, "epoch": epoch, "ts": m["ts"]})
        );
    }
    // Clients cannot publish there.
    let e = b
        .call(json!({"type": "publish", "room": "feed:metrics", "data": 1, "ref": 2}))
        .await;
    assert_eq!(error_code(&e, Some(json!(2))), "forbidden");
    // The next one is seq 2; a socket that left is no longer counted.
    a2.close_and_wait().await;
    let r = post(Some("Bearer s3cret-key"), ok_body()).send().await;
    assert_eq!(r.json(), json!({"delivered": 2, "seq": 2, "epoch": epoch}));
    assert_eq!(a1.recv().await["seq"], 2);
    assert_eq!(b.recv().await["seq"], 2);
    // Any room, members or not.
    let r = post(
        Some("Bearer s3cret-key"),
        json!({"room": "lobby", "data": null})
            .to_string()
            .into_bytes(),
    )
    .send()
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["delivered"], 0);

    // Bad bodies.
    let max = 60 * 1024;
    for (what, body) in [
        ("not JSON", b"not json".to_vec()),
        ("empty", Vec::new()),
        ("array", b"[1]".to_vec()),
        ("no room", br#"{"data":1}"#.to_vec()),
        ("no data", br#"{"room":"feed:x"}"#.to_vec()),
        ("room not a string", br#"{"room":5,"data":1}"#.to_vec()),
        ("invalid room", br#"{"room":"bad room","data":1}"#.to_vec()),
        ("empty room", br#"{"room":"","data":1}"#.to_vec()),
        (
            "data over 60 KiB",
            json!({"room": "feed:x", "data": "x".repeat(max)})
                .to_string()
                .into_bytes(),
        ),
    ] {
        let r = post(Some("Bearer s3cret-key"), body).send().await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.error_code(), "bad_request", "{what}");
    }
    // Over the 64 KiB body limit.
    let body = json!({"room": "feed:x", "data": "x".repeat(64 * 1024)})
        .to_string()
        .into_bytes();
    let r = post(Some("Bearer s3cret-key"), body).send().await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "payload_too_large");
    // Nothing of that reached the members.
    a1.alive().await;
    b.alive().await;
    stop(gw, (a1, b)).await;
}

// ---------------------------------------------------------------------------
// 13. Drain.

#[tokio::test]
async fn stop_closes_every_socket_with_1001() {
    let gw = TestGateway::start().await;
    let alice = user(&gw, "alice").await;
    let bob = user(&gw, "bob").await;
    let (mut a1, _) = Ws::open(&gw, &alice).await;
    let (mut a2, _) = Ws::open(&gw, &alice).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;
    assert_eq!(
        a1.call(json!({"type": "join", "room": "r"})).await["type"],
        "ack"
    );
    assert_eq!(
        b.call(json!({"type": "join", "room": "r"})).await["type"],
        "ack"
    );
    let closes = async {
        let mut codes = Vec::new();
        for ws in [&mut a1, &mut a2, &mut b] {
            // a1 may first get bob's presence_diff
            let (before, code) = ws.until_close().await;
            assert!(
                before.iter().all(|f| f["type"] == "presence_diff"),
                "{before:?}"
            );
            codes.push(code);
        }
        codes
    };
    let (stopped, codes) = tokio::join!(gw.stop(), closes);
    stopped.unwrap();
    assert_eq!(codes, [1001, 1001, 1001]);
}

#[tokio::test]
async fn a_client_close_is_echoed_and_counted_as_1000() {
    let gw = TestGateway::start().await;
    let cookie = user(&gw, "alice").await;
    let mut raw = RawWs::open(gw.addr, &cookie).await;
    raw.write(&encode(FIN | OP_CLOSE, &1000u16.to_be_bytes(), Some(MASK)))
        .await;
    // The server answers with its own close frame before ending the
    // connection (RFC 6455 closing handshake).
    let (first, payload) = raw.frame().await.expect("the server echoes the close");
    assert_eq!(first & 0x0f, OP_CLOSE);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1000);
    assert!(raw.frame().await.is_none(), "then the connection ends");
    within("close counted", async {
        while closes(&gw, "1000").await < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_fault_during_a_request_is_unavailable_and_the_socket_stays_open() {
    let gw = TestGateway::start().await;
    let bob = user(&gw, "bob").await;
    gw.add_user("carol", PW).await;
    let (mut b, _) = Ws::open(&gw, &bob).await;
    // Another process breaks the schema under the gateway: looking up an
    // offline user for `direct` now fails in the store.
    let db = rusqlite::Connection::open(gw.db_path()).unwrap();
    db.execute_batch("ALTER TABLE users RENAME TO users_away")
        .unwrap();
    let e = b
        .call(json!({"type": "direct", "to": "carol", "data": 1, "ref": "s"}))
        .await;
    assert_eq!(error_code(&e, Some(json!("s"))), "unavailable");
    b.alive().await;
    // Repaired, the same request works again on the same socket.
    db.execute_batch("ALTER TABLE users_away RENAME TO users")
        .unwrap();
    let ack = b
        .call(json!({"type": "direct", "to": "carol", "data": 1, "ref": "t"}))
        .await;
    assert_eq!(ack, json!({"type": "ack", "ref": "t", "delivered": 0}));
    stop(gw, b).await;
}

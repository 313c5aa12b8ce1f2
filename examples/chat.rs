//! wsgate chat client: a terminal chat over a running gateway.
//!
//! Logs in with `POST /auth`, opens `GET /ws` with the session cookie (and
//! the same User-Agent: sessions are bound to it), joins a room and prints
//! what arrives: the welcome, messages as `[room #seq] from: data`, presence
//! changes and direct messages. Each line typed is published to the current
//! room; `/dm NAME text` sends a direct message, `/who` asks who is present,
//! `/join ROOM` joins another room and makes it current, `/quit` (or EOF,
//! or Ctrl-C) closes the socket with 1000.
//!
//! ```text
//! cargo run --release -- --listen 127.0.0.1:8080      # the gateway
//! cargo run --example chat -- --url http://127.0.0.1:8080 --user alice
//! # password from a pipe instead of the prompt; the following lines are sent:
//! printf 'secret\nhello\n' | cargo run --example chat -- --user alice --room lobby
//! ```
//!
//! Exit status: 0 after a normal close (1000 or 1001), 1 otherwise (login
//! refused, upgrade refused, or closed by the gateway with another code,
//! such as 4001 after a logout elsewhere).

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Sent on the login and on the upgrade: a strong session is bound to it.
const USER_AGENT: &str = "wsgate-chat/1";
/// The subprotocol offered on the upgrade.
const SUBPROTOCOL: &str = "wsgate.v1";
/// Bound on connecting, logging in and the WebSocket handshake.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the gateway to answer our close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines typed ahead of the socket (the reader thread waits when full).
const INPUT_QUEUE: usize = 64;

/// Terminal chat client for wsgate.
///
/// Lines typed are published to the current room. Commands: /dm NAME TEXT,
/// /who, /join ROOM, /help, /quit.
#[derive(Parser, Debug)]
#[command(name = "chat")]
struct Args {
    /// Gateway base URL (http only; put TLS in front with a tunnel).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Username to log in as.
    #[arg(long)]
    user: String,
    /// Password [default: prompted on a terminal, else the first line of stdin].
    #[arg(long)]
    password: Option<String>,
    /// Room to join first.
    #[arg(long, default_value = "lobby")]
    room: String,
}

/// Where the gateway is: connect address, Host header, path prefix.
struct Target {
    host: String,
    port: u16,
    authority: String,
    base: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "https is not supported by this example; use http:// (or a local TLS tunnel)"
                        .into(),
                );
            }
            _ => return Err(format!("--url {url:?} must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let addr = (self.host.as_str(), self.port);
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {}: timed out", self.authority))?
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Logs in; returns the session cookie as `name=value`.
async fn login(target: &Target, user: &str, password: &str) -> Result<String, String> {
    let stream = target.connect().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    let body = json!({"username": user, "password": password}).to_string();
    let req = hyper::Request::post(format!("{}/auth", target.base))
        .header("host", &target.authority)
        .header("user-agent", USER_AGENT)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the login request: {e}"))?;
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, headers, body))
    };
    let (status, headers, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "login: no answer in time".to_owned())?
        .map_err(|e| format!("login: {e}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let retry = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|s| format!(" (retry after {s} s)"))
            .unwrap_or_default();
        return Err(format!("login refused: {status}: {message}{retry}"));
    }
    // The session cookie is the one Set-Cookie the login answers with; keep
    // its `name=value` whatever the configured name (or __Host- prefix).
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .find(|pair| pair.contains('='))
        .ok_or_else(|| "login answered 200 without a session cookie".to_owned())
}

type Socket = WebSocketStream<TcpStream>;

/// Opens `/ws` with the cookie and the login's User-Agent.
async fn open_socket(target: &Target, cookie: &str) -> Result<Socket, String> {
    let mut req = format!("ws://{}{}/ws", target.authority, target.base)
        .into_client_request()
        .map_err(|e| format!("building the upgrade request: {e}"))?;
    let h = req.headers_mut();
    h.insert(
        "cookie",
        HeaderValue::from_str(cookie).map_err(|_| "the session cookie is not a valid header")?,
    );
    h.insert("user-agent", HeaderValue::from_static(USER_AGENT));
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let stream = target.connect().await?;
    match tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio_tungstenite::client_async(req, stream),
    )
    .await
    {
        Err(_) => Err("WebSocket handshake: no answer in time".into()),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| {
                    serde_json::from_slice::<Value>(b)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| String::from_utf8_lossy(b).into_owned())
                })
                .unwrap_or_default();
            Err(format!("upgrade refused: {}: {body}", resp.status()))
        }
        Ok(Err(e)) => Err(format!("WebSocket handshake: {e}")),
    }
}

/// What a request with a `ref` was, to word its reply.
enum Pending {
    Join(String),
    Publish,
    Direct(String),
    Presence,
}

/// The client's state between frames.
struct Chat {
    room: String,
    next_ref: u64,
    pending: HashMap<u64, Pending>,
}

impl Chat {
    /// Builds a request frame with a fresh `ref`, remembering what it was.
    fn request(&mut self, mut frame: Value, what: Pending) -> Message {
        self.next_ref += 1;
        frame["ref"] = json!(self.next_ref);
        self.pending.insert(self.next_ref, what);
        Message::text(frame.to_string())
    }

    /// Turns a typed line into a request; `None` for local commands.
    fn command(&mut self, line: &str) -> Option<Message> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return None;
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "/dm" => {
                let Some((to, text)) = rest.trim_start().split_once(' ') else {
                    println!("usage: /dm NAME TEXT");
                    return None;
                };
                let frame = json!({"type": "direct", "to": to, "data": text});
                Some(self.request(frame, Pending::Direct(to.to_owned())))
            }
            "/who" => {
                let frame = json!({"type": "presence", "room": self.room});
                Some(self.request(frame, Pending::Presence))
            }
            "/join" if !rest.trim().is_empty() => {
                let room = rest.trim().to_owned();
                let frame = json!({"type": "join", "room": room});
                Some(self.request(frame, Pending::Join(room)))
            }
            "/help" | "/join" => {
                println!("type a line to publish it to #{}", self.room);
                println!("/dm NAME TEXT   direct message");
                println!("/who            who is in the current room");
                println!("/join ROOM      join ROOM and make it current");
                println!("/quit           leave (also EOF or Ctrl-C)");
                None
            }
            _ if cmd.starts_with('/') => {
                println!("unknown command {cmd}; /help lists them");
                None
            }
            _ => {
                let frame = json!({"type": "publish", "room": self.room, "data": line});
                Some(self.request(frame, Pending::Publish))
            }
        }
    }

    /// Prints one server frame.
    fn show(&mut self, text: &str) {
        let Ok(f) = serde_json::from_str::<Value>(text) else {
            println!("(unreadable frame: {text})");
            return;
        };
        let pending = f["ref"].as_u64().and_then(|r| self.pending.remove(&r));
        match f["type"].as_str().unwrap_or("") {
            "welcome" => println!(
                "connected as {} (connection {}, protocol {})",
                f["user"]["username"].as_str().unwrap_or("?"),
                data(&f["conn"]),
                f["protocol"]
            ),
            "ack" => match pending {
                Some(Pending::Join(room)) => {
                    println!(
                        "joined #{room} (seq {}, epoch {}); present: {}",
                        f["seq"],
                        f["epoch"].as_str().unwrap_or("?"),
                        names(&f["users"])
                    );
                    self.room = room;
                }
                Some(Pending::Direct(to)) => match f["delivered"].as_u64() {
                    Some(0) => println!("(dm to {to}: not connected, not delivered)"),
                    Some(n) => println!("(dm to {to}: delivered to {n} socket(s))"),
                    None => {}
                },
                _ => {}
            },
            "error" => {
                let about = match pending {
                    Some(Pending::Join(room)) => format!("join #{room}"),
                    Some(Pending::Direct(to)) => format!("dm to {to}"),
                    Some(Pending::Publish) => "publish".to_owned(),
                    Some(Pending::Presence) => "who".to_owned(),
                    None => "request".to_owned(),
                };
                println!(
                    "! {about}: {} ({})",
                    f["message"].as_str().unwrap_or(""),
                    f["code"].as_str().unwrap_or("?")
                );
            }
            "message" => println!(
                "[{} #{}] {}: {}",
                f["room"].as_str().unwrap_or("?"),
                f["seq"],
                f["from"].as_str().unwrap_or("(server)"),
                data(&f["data"])
            ),
            "direct" => println!(
                "[dm] {}: {}",
                f["from"].as_str().unwrap_or("?"),
                data(&f["data"])
            ),
            "presence" => println!(
                "[{}] present: {}",
                f["room"].as_str().unwrap_or("?"),
                names(&f["users"])
            ),
            "presence_diff" => {
                let room = f["room"].as_str().unwrap_or("?");
                for u in f["joins"].as_array().into_iter().flatten() {
                    println!("[{room}] + {} joined", u.as_str().unwrap_or("?"));
                }
                for u in f["leaves"].as_array().into_iter().flatten() {
                    println!("[{room}] - {} left", u.as_str().unwrap_or("?"));
                }
            }
            "pong" => {}
            other => println!("({other}: {text})"),
        }
    }
}

/// A `data` value for the terminal: strings as they are, the rest as JSON.
fn data(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn names(v: &Value) -> String {
    let list: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if list.is_empty() {
        "nobody".into()
    } else {
        list.join(", ")
    }
}

/// PROTOCOL.md's meaning of a close code.
fn close_meaning(code: u16) -> &'static str {
    match code {
        1000 => "normal close",
        1001 => "the gateway is shutting down",
        1002 => "protocol error",
        1003 => "binary frame refused",
        1007 => "invalid UTF-8",
        1008 => "over the rate limit for too long",
        1009 => "frame too large",
        1011 => "server error",
        4001 => "the session ended (logout, revocation, expiry or password change)",
        4002 => "slow consumer: too many frames queued",
        4003 => "heartbeat timeout",
        _ => "unknown",
    }
}

fn report_close(frame: Option<&CloseFrame>) -> ExitCode {
    let Some(f) = frame else {
        println!("socket closed without a close code");
        return ExitCode::FAILURE;
    };
    let code = u16::from(f.code);
    let reason = if f.reason.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", f.reason)
    };
    println!("closed: {code}{reason} ({})", close_meaning(code));
    if matches!(code, 1000 | 1001) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reads stdin lines on a thread of their own (blocking reads stay off the
/// runtime); the channel closes on EOF.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends our close (1000) and waits, bounded, for the gateway's answer.
async fn close(ws: &mut Socket, chat: &mut Chat) -> ExitCode {
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    if let Err(e) = ws.send(Message::Close(Some(bye))).await {
        println!("connection already gone: {e}");
        return ExitCode::SUCCESS;
    }
    let answer = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(f)) => return Some(report_close(f.as_ref())),
                // replies sent before the gateway saw our close
                Ok(Message::Text(t)) => chat.show(&t),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        None
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, answer).await {
        Ok(Some(code)) => code,
        _ => {
            println!("closed: 1000 by us (the gateway did not echo the close)");
            ExitCode::SUCCESS
        }
    }
}

async fn run(args: Args, password: String) -> Result<ExitCode, String> {
    let target = Target::parse(&args.url)?;
    let cookie = login(&target, &args.user, &password).await?;
    drop(password);
    let mut ws = open_socket(&target, &cookie).await?;
    let mut chat = Chat {
        room: args.room.clone(),
        next_ref: 0,
        pending: HashMap::new(),
    };
    let join = chat.request(
        json!({"type": "join", "room": args.room}),
        Pending::Join(args.room.clone()),
    );
    ws.send(join).await.map_err(|e| format!("sending: {e}"))?;
    let mut input = stdin_lines();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => chat.show(&t),
                Some(Ok(Message::Close(f))) => return Ok(report_close(f.as_ref())),
                Some(Ok(_)) => {} // pings are answered by tungstenite
                Some(Err(e)) => {
                    println!("connection lost: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                None => {
                    println!("connection lost");
                    return Ok(ExitCode::FAILURE);
                }
            },
            line = input.recv() => match line {
                Some(l) if l.split_whitespace().next() == Some("/quit") => break,
                Some(l) => {
                    if let Some(m) = chat.command(&l)
                        && let Err(e) = ws.send(m).await
                    {
                        println!("connection lost: {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
                None => break, // EOF
            },
            _ = &mut ctrl_c => break,
        }
    }
    Ok(close(&mut ws, &mut chat).await)
}

/// `--password`, else a prompt on a terminal, else the first stdin line.
fn read_password(given: Option<String>) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
            .map_err(|e| format!("reading the password: {e}"))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password from stdin: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if pw.is_empty() {
        return Err(
            "no password given (--password, the prompt, or the first line of stdin)".into(),
        );
    }
    Ok(pw)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let password = match read_password(args.password.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, password)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

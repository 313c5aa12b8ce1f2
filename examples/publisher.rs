//! wsgate publisher: a back end pushing dashboard data to a room through
//! `POST /publish` with `Authorization: Bearer KEY`.
//!
//! Every interval it publishes `{"cpu": <1-minute load average>, "n": <count>,
//! "t": <ms since the epoch>}` (the load average comes from /proc/loadavg;
//! where that is missing, `cpu` is the counter) and prints the answer:
//! sockets delivered to on that node, the room's `seq` and `epoch`.
//! Browsers and `chat` clients that joined the room see each message with
//! `"from": null`; `feed:` rooms are read-only for clients, so only back ends
//! like this one can write there.
//!
//! ```text
//! cargo run --release -- --listen 127.0.0.1:8080 --publish-key s3cret   # the gateway
//! WSGATE_PUBLISH_KEY=s3cret cargo run --example publisher -- --count 10
//! cargo run --example publisher -- --key s3cret --room feed:metrics --interval-ms 250
//! ```
//!
//! Exit status: 0 when every publish was accepted; 1 on a refusal that
//! retrying cannot fix (bad key, API disabled, bad room) or when any
//! publish failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Bound on connecting and on each publish.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Publish dashboard data to a wsgate room through POST /publish.
#[derive(Parser, Debug)]
#[command(name = "publisher")]
struct Args {
    /// Gateway base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The gateway's publish API key (its --publish-key).
    #[arg(long, env = "WSGATE_PUBLISH_KEY", hide_env_values = true)]
    key: String,
    /// Room to publish to.
    #[arg(long, default_value = "feed:metrics")]
    room: String,
    /// Milliseconds between publishes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Stop after this many publishes [default: run until Ctrl-C].
    #[arg(long)]
    count: Option<u64>,
}

/// A keep-alive connection to the gateway that reconnects when it breaks.
struct Client {
    host: String,
    port: u16,
    authority: String,
    path: String,
    auth: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// What one publish came to.
enum Outcome {
    /// `200`: the answer's body.
    Published(Value),
    /// Worth retrying at the next tick (I/O, timeout, 5xx).
    Transient(String),
    /// Retrying will not help.
    Fatal(String),
}

impl Client {
    fn new(url: &str, key: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "--url {url:?} must start with http:// (no TLS in this example)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        Ok(Self {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path: format!("{}/publish", uri.path().trim_end_matches('/')),
            auth: format!("Bearer {key}"),
            sender: None,
        })
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
            let _ = stream.set_nodelay(true);
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(conn);
            self.sender = Some(s);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".into())
    }

    async fn exchange(&mut self, body: String) -> Result<(StatusCode, Bytes), String> {
        let req = hyper::Request::post(&self.path)
            .header("host", &self.authority)
            .header("authorization", &self.auth)
            .header("content-type", "application/json")
            .header("user-agent", "wsgate-publisher/1")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let sender = self.sender().await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    async fn publish(&mut self, room: &str, data: Value) -> Outcome {
        let body = json!({"room": room, "data": data}).to_string();
        let (status, body) = match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(body)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.sender = None;
                return Outcome::Transient(e);
            }
            Err(_) => {
                self.sender = None;
                return Outcome::Transient("no answer in time".into());
            }
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status == StatusCode::OK {
            return Outcome::Published(v);
        }
        let why = format!(
            "{status}: {}",
            v["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&body).into_owned(),
                str::to_owned
            )
        );
        match status {
            StatusCode::UNAUTHORIZED => Outcome::Fatal(format!("{why} (check --key)")),
            StatusCode::NOT_FOUND => Outcome::Fatal(format!(
                "{why} (the publish API is disabled: start the gateway with --publish-key)"
            )),
            s if s.is_client_error() => Outcome::Fatal(why),
            _ => Outcome::Transient(why),
        }
    }
}

/// The 1-minute load average, if /proc/loadavg is readable.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let mut client = Client::new(&args.url, &args.key)?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut n = 0u64;
    while args.count.is_none_or(|c| n < c) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        n += 1;
        let cpu = load_average().unwrap_or(n as f64);
        let data = json!({"cpu": cpu, "n": n, "t": now_ms()});
        match client.publish(&args.room, data).await {
            Outcome::Published(v) => {
                ok += 1;
                println!(
                    "#{n} {} cpu={cpu}: delivered={} seq={} epoch={}",
                    args.room,
                    v["delivered"],
                    v["seq"],
                    v["epoch"].as_str().unwrap_or("?")
                );
            }
            Outcome::Transient(e) => {
                failed += 1;
                println!("#{n} not published: {e}; trying again at the next tick");
            }
            Outcome::Fatal(e) => return Err(format!("publish refused: {e}")),
        }
    }
    println!("{ok} published, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("publisher: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("publisher: {e}");
            ExitCode::FAILURE
        }
    }
}

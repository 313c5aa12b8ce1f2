//! One socket's task: reads requests, writes replies and queued frames,
//! answers the heartbeat and ends with the right close code.
//!
//! A single task owns the WebSocket and polls, in one `poll_fn`, the wake
//! signal of its [`Conn`], the writer (frames handed to tungstenite, one
//! flush per batch) and the reader. A peer that stops reading therefore
//! never blocks the task: its queue fills and it is closed with 4002 while
//! the rest of the gateway carries on.
//!
//! Replies (`ack`, `error`, `pong`, `presence`) go to the local `pending`
//! list, ahead of anything the request causes in the shared queue, which is
//! how "a request's ack comes before the frames it causes" holds.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::Gateway;
use super::close::CloseReason;
use super::frame::{self, FrameBuf, Kind};
use super::registry::Conn;
use crate::names::{valid_room, valid_username};

/// Longest wait for the closing handshake once a close is decided.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one `rate_limited` error per this interval.
const RATE_ERROR_EVERY: Duration = Duration::from_secs(1);
/// A socket over its rate limit this long is closed with 1008.
const RATE_ABUSE_AFTER: Duration = Duration::from_secs(10);
/// A socket is back within its limit once a request passes this long after
/// the last refusal (one passing now and then does not end a stretch over
/// the limit).
const RATE_CALM_AFTER: Duration = Duration::from_secs(1);
/// Prefix of `feed:` rooms, read-only for clients.
const FEED_PREFIX: &str = "feed:";
/// The message of an `invalid_room` error.
const INVALID_ROOM: &str = "room names match [A-Za-z0-9_.:-]{1,64}";

/// Per-socket request limit: a token bucket plus the abuse clock.
struct RateLimit {
    tokens: f64,
    at: Instant,
    per_sec: f64,
    burst: f64,
    over_since: Option<Instant>,
    last_refused: Option<Instant>,
    last_error: Option<Instant>,
}

enum Verdict {
    Allowed,
    /// Refused; send a `rate_limited` error this time.
    Refused {
        tell: bool,
    },
    Abusive,
}

impl RateLimit {
    fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
            per_sec,
            burst,
            over_since: None,
            last_refused: None,
            last_error: None,
        }
    }

    fn check(&mut self, now: Instant) -> Verdict {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            if self
                .last_refused
                .is_none_or(|t| now.saturating_duration_since(t) >= RATE_CALM_AFTER)
            {
                self.over_since = None;
            }
            return Verdict::Allowed;
        }
        self.last_refused = Some(now);
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= RATE_ABUSE_AFTER {
            return Verdict::Abusive;
        }
        let tell = self
            .last_error
            .is_none_or(|t| now.saturating_duration_since(t) >= RATE_ERROR_EVERY);
        if tell {
            self.last_error = Some(now);
        }
        Verdict::Refused { tell }
    }
}

enum Event {
    Woken,
    Inbound(Option<Result<Message, WsError>>),
    WriteFailed(WsError),
}

/// The socket's own state.
struct Session<'a> {
    gw: &'a Gateway,
    conn: &'a Arc<Conn>,
    /// Rooms joined, in join order.
    rooms: Vec<Arc<str>>,
    /// Frames for tungstenite, in order; replies are appended here.
    pending: VecDeque<Message>,
    /// Frames handed to tungstenite since the last flush.
    dirty: bool,
    limit: RateLimit,
}

/// Runs a socket until it ends; removes it from every room and from the
/// registry, then sends its close frame.
pub async fn run<S>(gw: Arc<Gateway>, mut ws: WebSocketStream<S>, conn: Arc<Conn>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = &gw.config;
    let mut s = Session {
        gw: &gw,
        conn: &conn,
        rooms: Vec::new(),
        pending: VecDeque::new(),
        dirty: false,
        limit: RateLimit::new(cfg.rate_per_sec, cfg.rate_burst),
    };
    let reason = s.serve(&mut ws).await;
    for room in std::mem::take(&mut s.rooms) {
        gw.hub.leave(&conn, &room);
    }
    gw.registry.unregister(&conn);
    gw.metrics.closes.inc(reason.label());
    tracing::debug!(conn = conn.id, user = %conn.username, code = reason.code(), "socket closed");
    if reason == CloseReason::Normal {
        // The peer closed: tungstenite queued the echo of its close frame;
        // flushing sends it and ends the connection.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, SinkExt::flush(&mut ws)).await;
    } else if reason != CloseReason::Gone {
        let frame = CloseFrame {
            code: CloseCode::from(reason.code()),
            reason: Utf8Bytes::from_static(reason.text()),
        };
        // The closing handshake: after our close frame, read (and drop)
        // until the peer's close or the end, so a peer still writing is not
        // reset before it could read the close code.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }
}

impl Session<'_> {
    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = self.conn;
        let welcome = FrameBuf::new("welcome")
            .raw("user", &FrameBuf::user_object(conn.user_id, &conn.username))
            .str("conn", &conn.id.to_string())
            .int("protocol", 1)
            .finish();
        self.pending.push_back(Message::Text(welcome));
        loop {
            if let Some(r) = conn.close_reason() {
                return r;
            }
            match self.next_event(ws).await {
                Event::Woken => {
                    if conn.take_ping() {
                        self.pending.push_back(Message::Ping(Default::default()));
                    }
                }
                Event::WriteFailed(e) => return map_error(&e),
                Event::Inbound(None) => return CloseReason::Gone,
                Event::Inbound(Some(Err(e))) => return map_error(&e),
                Event::Inbound(Some(Ok(msg))) => {
                    if let Some(r) = self.inbound(msg).await {
                        return r;
                    }
                }
            }
        }
    }

    /// Waits for the next thing to do, writing whatever can be written.
    async fn next_event<S>(&mut self, ws: &mut WebSocketStream<S>) -> Event
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = self.conn;
        let capacity = self.gw.config.outbound_queue;
        let metrics = &self.gw.metrics;
        let mut woken = pin!(conn.woken());
        let pending = &mut self.pending;
        let dirty = &mut self.dirty;
        poll_fn(|cx| {
            if woken.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Woken);
            }
            if pending.len() > capacity {
                conn.close(CloseReason::SlowConsumer);
                return Poll::Ready(Event::Woken);
            }
            // Writer: hand frames to tungstenite while it accepts them,
            // refilling from the shared queue, then flush once.
            loop {
                if pending.is_empty() {
                    let mut batch = Vec::new();
                    conn.drain_into(&mut batch);
                    if batch.is_empty() {
                        break;
                    }
                    pending.extend(batch.into_iter().map(Message::Text));
                }
                match Sink::<Message>::poll_ready(std::pin::Pin::new(&mut *ws), cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::WriteFailed(e)),
                    Poll::Pending => break,
                }
                let Some(frame) = pending.pop_front() else {
                    break;
                };
                if let Err(e) = std::pin::Pin::new(&mut *ws).start_send(frame) {
                    return Poll::Ready(Event::WriteFailed(e));
                }
                metrics.frames_out.fetch_add(1, Ordering::Relaxed);
                *dirty = true;
            }
            if *dirty && pending.is_empty() {
                match Sink::<Message>::poll_flush(std::pin::Pin::new(&mut *ws), cx) {
                    Poll::Ready(Ok(())) => *dirty = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::WriteFailed(e)),
                    Poll::Pending => {}
                }
            }
            match std::pin::Pin::new(&mut *ws).poll_next(cx) {
                Poll::Ready(m) => Poll::Ready(Event::Inbound(m)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Whether this socket has joined `room`.
    fn joined(&self, room: &str) -> bool {
        self.rooms.iter().any(|x| **x == *room)
    }

    fn reply(&mut self, frame: Utf8Bytes) {
        self.pending.push_back(Message::Text(frame));
    }

    /// Handles one inbound message; `Some` ends the socket.
    async fn inbound(&mut self, msg: Message) -> Option<CloseReason> {
        let gw = self.gw;
        gw.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
        let verdict = self.limit.check(Instant::now());
        match msg {
            Message::Binary(_) => return Some(CloseReason::Unsupported),
            Message::Close(_) => return Some(CloseReason::Normal),
            Message::Pong(_) => {
                self.conn.pong(gw.registry.clock_ms());
                return None;
            }
            Message::Ping(_) => {
                // tungstenite queued the pong; make sure it is flushed
                self.dirty = true;
                return match verdict {
                    Verdict::Abusive => Some(CloseReason::Policy),
                    _ => None,
                };
            }
            Message::Frame(_) => return None,
            Message::Text(text) => match verdict {
                Verdict::Allowed => self.request(&text).await,
                Verdict::Abusive => return Some(CloseReason::Policy),
                Verdict::Refused { tell } => {
                    if tell {
                        let r = frame::parse(&text, gw.config.max_data_size)
                            .map(|r| r.reference)
                            .unwrap_or_else(|e| e.reference);
                        self.reply(frame::error(
                            r,
                            "rate_limited",
                            "too many requests; slow down",
                        ));
                    }
                }
            },
        }
        None
    }

    async fn request(&mut self, text: &str) {
        let gw = self.gw;
        let req = match frame::parse(text, gw.config.max_data_size) {
            Ok(r) => r,
            Err(e) => {
                self.reply(frame::error(e.reference, e.code, &e.message));
                return;
            }
        };
        let r = req.reference;
        let err = |code: &str, message: &str| frame::error(r, code, message);
        let frame = match req.kind {
            Kind::Ping => FrameBuf::new("pong").reference(r).finish(),
            Kind::Join { room } => {
                if !valid_room(&room) {
                    err("invalid_room", INVALID_ROOM)
                } else if !self.joined(&room) && self.rooms.len() >= gw.config.max_rooms_per_socket
                {
                    err("too_many_rooms", "this socket is in too many rooms")
                } else {
                    let j = gw.hub.join(self.conn, &room);
                    if !self.joined(&room) {
                        self.rooms.push(room.as_str().into());
                    }
                    FrameBuf::new("ack")
                        .reference(r)
                        .int("seq", j.seq)
                        .str("epoch", &j.epoch)
                        .str_list("users", j.users.iter().map(|u| &**u))
                        .finish()
                }
            }
            Kind::Leave { room } => {
                if !valid_room(&room) {
                    err("invalid_room", INVALID_ROOM)
                } else if let Some(i) = self.rooms.iter().position(|x| **x == *room) {
                    self.rooms.swap_remove(i);
                    gw.hub.leave(self.conn, &room);
                    FrameBuf::new("ack").reference(r).finish()
                } else {
                    err("not_joined", "this socket has not joined that room")
                }
            }
            Kind::Presence { room } => {
                if !valid_room(&room) {
                    err("invalid_room", INVALID_ROOM)
                } else if self.joined(&room) {
                    let users = gw.hub.presence(&room);
                    FrameBuf::new("presence")
                        .reference(r)
                        .str("room", &room)
                        .str_list("users", users.iter().map(|u| &**u))
                        .finish()
                } else {
                    err("not_joined", "this socket has not joined that room")
                }
            }
            Kind::Publish { room, data } => {
                if !valid_room(&room) {
                    err("invalid_room", INVALID_ROOM)
                } else if !self.joined(&room) {
                    err("not_joined", "join the room before publishing to it")
                } else if room.starts_with(FEED_PREFIX) {
                    err(
                        "forbidden",
                        "feed: rooms are published to by the server only",
                    )
                } else {
                    // The ack is queued in `pending`, ahead of the message
                    // the hub queues to this socket's shared queue.
                    let p = gw.hub.publish(&room, Some(&self.conn.username), data);
                    FrameBuf::new("ack")
                        .reference(r)
                        .int("seq", p.seq)
                        .str("epoch", &p.epoch)
                        .finish()
                }
            }
            Kind::Direct { to, data } => self.direct(r, &to, data).await,
        };
        self.reply(frame);
    }

    async fn direct(&mut self, r: Option<&str>, to: &str, data: &str) -> Utf8Bytes {
        let gw = self.gw;
        if !valid_username(to) {
            return frame::error(r, "unknown_user", "no such user");
        }
        let targets = gw.registry.sockets_of(to);
        if targets.is_empty() {
            match gw.user_exists(to).await {
                Ok(true) => {}
                Ok(false) => return frame::error(r, "unknown_user", "no such user"),
                Err(_) => return frame::error(r, "unavailable", "the store is busy; retry later"),
            }
        }
        let msg = FrameBuf::new("direct")
            .str("from", &self.conn.username)
            .raw("data", data)
            .int("ts", crate::store::now_ms())
            .finish();
        let delivered = targets.iter().filter(|c| c.push(msg.clone())).count();
        FrameBuf::new("ack")
            .reference(r)
            .int("delivered", delivered)
            .finish()
    }
}

/// The close code for a read or write failure.
fn map_error(e: &WsError) -> CloseReason {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => CloseReason::Gone,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => CloseReason::Gone,
        WsError::Capacity(_) => CloseReason::TooBig,
        WsError::Utf8(_) => CloseReason::InvalidData,
        WsError::Protocol(_) => CloseReason::Protocol,
        _ => CloseReason::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Auth;
    use crate::config::{Config, HashParams, KeySource};
    use crate::store::Store;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::Role;

    const T: Duration = Duration::from_secs(10);

    /// A gateway over a temp store, and one socket's loop driven through an
    /// in-memory duplex pipe instead of TCP.
    async fn pipe(
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut Config),
    ) -> (Arc<Gateway>, WebSocketStream<tokio::io::DuplexStream>) {
        let mut cfg = Config::new(dir);
        cfg.auth.hash_params = HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        cfg.auth.key = KeySource::Bytes(vec![3; 32]);
        tweak(&mut cfg);
        let store = Store::open(&cfg.store).unwrap();
        let auth = Auth::new(
            cfg.auth.clone(),
            store.clone(),
            Default::default(),
            Default::default(),
        )
        .unwrap();
        let gw = Arc::new(Gateway::new(cfg.gateway.clone(), store, auth));
        let conn = gw.registry.register(7, "alice", 70).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, Some(gw.ws_config())).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        tokio::spawn(run(gw.clone(), server, conn));
        (gw, client)
    }

    async fn recv(ws: &mut WebSocketStream<tokio::io::DuplexStream>) -> Message {
        tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    async fn json(ws: &mut WebSocketStream<tokio::io::DuplexStream>) -> serde_json::Value {
        match recv(ws).await {
            Message::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    async fn send(ws: &mut WebSocketStream<tokio::io::DuplexStream>, v: serde_json::Value) {
        tokio::time::timeout(T, ws.send(Message::text(v.to_string())))
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn loop_replies_in_order_without_a_network() {
        let dir = tempfile::tempdir().unwrap();
        let (gw, mut ws) = pipe(dir.path(), |_| {}).await;
        let w = json(&mut ws).await;
        assert_eq!(
            (w["type"].as_str(), w["user"]["username"].as_str()),
            (Some("welcome"), Some("alice"))
        );
        send(
            &mut ws,
            serde_json::json!({"type": "join", "room": "r", "ref": 1}),
        )
        .await;
        let a = json(&mut ws).await;
        assert_eq!(
            (a["type"].as_str(), a["seq"].as_u64()),
            (Some("ack"), Some(0))
        );
        // the ack of a publish comes before the message it causes
        send(
            &mut ws,
            serde_json::json!({"type": "publish", "room": "r", "data": [1], "ref": 2}),
        )
        .await;
        let a = json(&mut ws).await;
        assert_eq!(
            (a["type"].as_str(), a["ref"].as_i64(), a["seq"].as_u64()),
            (Some("ack"), Some(2), Some(1))
        );
        let m = json(&mut ws).await;
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_u64()),
            (Some("message"), Some(1))
        );
        // a bad request gets an error and the loop goes on
        send(&mut ws, serde_json::json!({"type": "nope", "ref": 3})).await;
        assert_eq!(json(&mut ws).await["code"], "unknown_type");
        send(&mut ws, serde_json::json!({"type": "ping", "ref": 4})).await;
        assert_eq!(json(&mut ws).await["type"], "pong");
        // a frame queued by someone else reaches the socket
        gw.hub.publish("r", None, "\"server\"");
        assert_eq!(json(&mut ws).await["from"], serde_json::Value::Null);
        // a binary frame ends the loop with 1003, and the socket is gone
        tokio::time::timeout(T, ws.send(Message::Binary(vec![1, 2].into())))
            .await
            .unwrap()
            .unwrap();
        match recv(&mut ws).await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1003),
            other => panic!("expected close, got {other:?}"),
        }
        tokio::time::timeout(T, async {
            while !gw.registry.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(gw.hub.presence("r").is_empty());
    }

    #[tokio::test]
    async fn an_overflowing_queue_closes_with_4002() {
        let dir = tempfile::tempdir().unwrap();
        let (gw, mut ws) = pipe(dir.path(), |c| c.gateway.outbound_queue = 4).await;
        json(&mut ws).await; // welcome
        send(&mut ws, serde_json::json!({"type": "join", "room": "r"})).await;
        json(&mut ws).await; // ack
        // Stop reading; publish until the pipe and the queue are full.
        let big = format!("\"{}\"", "x".repeat(8 * 1024));
        let mut published = 0;
        while gw
            .registry
            .sockets_of("alice")
            .first()
            .is_some_and(|c| c.close_reason().is_none())
        {
            gw.hub.publish("r", None, &big);
            published += 1;
            assert!(published < 10_000, "never overflowed");
            tokio::task::yield_now().await;
        }
        // Reading now drains what was written, then the close code.
        loop {
            match recv(&mut ws).await {
                Message::Text(_) => {}
                Message::Close(Some(f)) => {
                    assert_eq!(u16::from(f.code), 4002);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn rate_limit_refuses_then_calls_it_abuse() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(10.0, 5.0);
        for _ in 0..5 {
            assert!(matches!(l.check(t0), Verdict::Allowed));
        }
        assert!(matches!(l.check(t0), Verdict::Refused { tell: true }));
        // at most one error per second
        assert!(matches!(
            l.check(t0 + Duration::from_millis(10)),
            Verdict::Refused { tell: false }
        ));
        // a token comes back after 100 ms
        assert!(matches!(
            l.check(t0 + Duration::from_millis(110)),
            Verdict::Allowed
        ));
        // staying over the limit for 10 s is abuse
        let mut l = RateLimit::new(0.0, 1.0);
        assert!(matches!(l.check(t0), Verdict::Allowed));
        assert!(matches!(l.check(t0), Verdict::Refused { .. }));
        assert!(matches!(
            l.check(t0 + Duration::from_secs(5)),
            Verdict::Refused { .. }
        ));
        assert!(matches!(
            l.check(t0 + Duration::from_secs(10)),
            Verdict::Abusive
        ));
        // far over the rate, with a request passing now and then: still
        // over the limit, so abuse after 10 s
        let mut l = RateLimit::new(1.0, 1.0);
        let abusive_at = (0..400u64)
            .map(|i| t0 + Duration::from_millis(50 * i))
            .find(|t| matches!(l.check(*t), Verdict::Abusive))
            .expect("abuse detected");
        assert!(abusive_at >= t0 + Duration::from_secs(10));
        assert!(abusive_at <= t0 + Duration::from_secs(11));
        // a calm second after a refusal ends the stretch over the limit
        let mut l = RateLimit::new(0.1, 1.0);
        assert!(matches!(l.check(t0), Verdict::Allowed));
        assert!(matches!(l.check(t0), Verdict::Refused { .. }));
        let t1 = t0 + Duration::from_secs(10);
        assert!(matches!(l.check(t1), Verdict::Allowed));
        assert!(matches!(l.check(t1), Verdict::Refused { .. }));
    }
}

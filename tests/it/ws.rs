//! GET /ws and the frames of PROTOCOL.md section 2, over real sockets.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::*;

/// A test WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<TcpStream>,
}

impl Ws {
    /// Connects with the session cookie.
    pub async fn connect(gw: &TestGateway, cookie: &str) -> Ws {
        let mut req = format!("ws://{}/ws", gw.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "cookie",
            format!("wsgate_session={cookie}").parse().unwrap(),
        );
        let stream = within("tcp connect", TcpStream::connect(gw.addr))
            .await
            .unwrap();
        let (ws, _) = within("ws handshake", tokio_tungstenite::client_async(req, stream))
            .await
            .unwrap();
        Ws { inner: ws }
    }

    pub async fn send(&mut self, v: Value) {
        within("ws send", self.inner.send(Message::text(v.to_string())))
            .await
            .unwrap();
    }

    /// Next text frame as JSON.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = within("ws recv", self.inner.next())
                .await
                .expect("stream ended")
                .unwrap();
            match m {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

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
    gw.stop().await.unwrap();
}

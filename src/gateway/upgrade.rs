//! `GET /ws`: the handshake checks of PROTOCOL.md in their order, answered
//! with plain HTTP before any `101`, then the hand-off of the upgraded
//! stream to a tracked connection task.
//!
//! 1. a valid RFC 6455 request (`400`; `426` for a plain GET),
//! 2. a live session (`401`),
//! 3. an allowed Origin (`403`),
//! 4. the per-user and global socket limits (`503`).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::registry::LimitError;
use crate::app::App;
use crate::error::Error;
use crate::http::{Body, origin_ok};

/// The subprotocol selected when the client offers it.
pub const SUBPROTOCOL: &str = "wsgate.v1";

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Checks step 1 and returns the `Sec-WebSocket-Accept` value.
fn check_handshake(req: &Request<Incoming>) -> Result<String, Error> {
    let h = req.headers();
    if !h.contains_key(header::UPGRADE) {
        return Err(Error::UpgradeRequired);
    }
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(Error::BadRequest("Upgrade must be websocket".into()));
    }
    if req.version() < Version::HTTP_11 {
        return Err(Error::BadRequest("WebSocket needs HTTP/1.1".into()));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Error::BadRequest("Connection must include Upgrade".into()));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Error::BadRequest("Sec-WebSocket-Version must be 13".into()));
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Error::BadRequest("missing Sec-WebSocket-Key".into()))?;
    match STANDARD.decode(key.as_bytes()) {
        Ok(k) if k.len() == 16 => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(Error::BadRequest("bad Sec-WebSocket-Key".into())),
    }
}

fn offers_subprotocol(headers: &HeaderMap) -> bool {
    has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL)
}

fn outcome(e: &Error) -> &'static str {
    match e {
        Error::UpgradeRequired => "upgrade_required",
        Error::BadRequest(_) => "bad_request",
        Error::Unauthenticated => "unauthenticated",
        Error::ForbiddenOrigin => "forbidden",
        Error::TooManySockets(_) => "limited",
        _ => "unavailable",
    }
}

/// Handles `GET /ws`.
///
/// # Errors
/// The refusal of the first failing check, mapped to its status.
pub async fn upgrade(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let r = try_upgrade(app, req).await;
    let label = match &r {
        Ok(_) => "ok",
        Err(e) => outcome(e),
    };
    app.gateway.metrics.upgrades.inc(label);
    r
}

async fn try_upgrade(app: &Arc<App>, mut req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let accept = check_handshake(&req)?;
    let session = crate::http::session_of(app, req.headers())
        .await?
        .ok_or(Error::Unauthenticated)?;
    if !origin_ok(app, req.headers()) {
        return Err(Error::ForbiddenOrigin);
    }
    let gw = app.gateway.clone();
    let conn = gw
        .registry
        .register(session.user_id, &session.username, session.id)
        .map_err(|e| match e {
            LimitError::PerUser => {
                Error::TooManySockets("this user holds the most sockets allowed")
            }
            LimitError::Global => {
                Error::TooManySockets("the gateway holds the most sockets allowed")
            }
        })?;

    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if offers_subprotocol(req.headers()) {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }

    let on_upgrade = hyper::upgrade::on(&mut req);
    let ws_config = gw.ws_config();
    app.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                tracing::debug!(conn = conn.id, user = %conn.username, "socket open");
                super::connection::run(gw, ws, conn).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                gw.registry.unregister(&conn);
            }
        }
    });
    Ok(resp)
}

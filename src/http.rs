//! The HTTP surface: routing, request facts (client address, cookie,
//! Origin), and the one place errors become responses.

pub mod body;
mod demo;
mod handlers;
mod publish;

pub(crate) use handlers::session_of;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::error::Error;
use crate::net;

/// Response body type of every route.
pub type Body = Full<Bytes>;

/// Serves one request. Never fails: every error becomes its response here.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let resp = match route(&app, req, peer).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    app.metrics.http_responses.inc(resp.status().as_str());
    resp
}

async fn route(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Error> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (path.as_str(), &method) {
        ("/auth", &Method::POST) => handlers::login(app, req, peer).await,
        ("/logout", &Method::POST) => handlers::logout(app, req).await,
        ("/me", &Method::GET) => handlers::me(app, req).await,
        ("/healthz", &Method::GET) => Ok(text(StatusCode::OK, "text/plain; charset=utf-8", "ok")),
        ("/readyz", &Method::GET) => handlers::readyz(app).await,
        ("/metrics", &Method::GET) => Ok(handlers::metrics(app)),
        ("/ws", &Method::GET) => crate::gateway::upgrade::upgrade(app, req).await,
        ("/publish", &Method::POST) => publish::publish(app, req).await,
        ("/auth" | "/logout" | "/publish", _) => Err(Error::MethodNotAllowed("POST")),
        ("/me" | "/healthz" | "/readyz" | "/metrics" | "/ws", _) => {
            Err(Error::MethodNotAllowed("GET"))
        }
        (p, &Method::GET) => demo::serve(p).ok_or(Error::NotFound),
        _ => Err(Error::NotFound),
    }
}

/// The JSON error response of PROTOCOL.md: `{"error", "message"}`, the
/// matching status, `Retry-After` on 429 and 503, `Allow` on 405.
pub fn error_response(e: &Error) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, "request failed");
    }
    let body = serde_json::json!({ "error": e.code(), "message": e.public_message() });
    let mut resp = json(status, &body);
    if let Some(secs) = e.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if matches!(e, Error::UpgradeRequired) {
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    if let Error::MethodNotAllowed(allow) = e {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A plain response with a static content type.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The client address: the peer, or behind a trusted proxy the last
/// untrusted `X-Forwarded-For` hop.
pub fn client_addr(app: &App, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    let xff = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    net::client_addr(peer.ip(), xff, &app.config.trusted_proxies)
}

/// Whether the request's Origin is allowed (absent Origin passes).
pub fn origin_ok(app: &App, headers: &HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    net::origin_allowed(
        origin,
        host,
        app.public_origin.as_ref(),
        app.config.allowed_origins.as_ref(),
    )
}

/// The User-Agent, or empty.
pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Values of the session cookie in the request (a browser may send several
/// with one name; each is tried).
pub fn session_cookies<'a>(app: &App, headers: &'a HeaderMap) -> Vec<&'a str> {
    let mut out = Vec::new();
    for h in headers.get_all(header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name.trim() == app.cookie_name
            {
                out.push(value.trim().trim_matches('"'));
            }
        }
    }
    out
}

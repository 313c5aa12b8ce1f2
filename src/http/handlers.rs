//! Handlers of the session routes (`/auth`, `/logout`, `/me`) and the
//! operator routes (`/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;

use cookie::{Cookie, SameSite};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::{Body, body, client_addr, json, origin_ok, session_cookies, text, user_agent};
use crate::app::App;
use crate::auth::Revoked;
use crate::error::Error;
use crate::metrics::{self, render_value};
use crate::store::SessionRow;

/// `POST /auth`
pub(super) async fn login(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Error> {
    let r = try_login(app, req, peer).await;
    match &r {
        Err(Error::ForbiddenOrigin) => app.metrics.logins.inc("forbidden"),
        Err(
            Error::BadRequest(_)
            | Error::PayloadTooLarge(_)
            | Error::UnsupportedMediaType(_)
            | Error::Timeout,
        ) => app.metrics.logins.inc("bad_request"),
        _ => {}
    }
    r
}

async fn try_login(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Error> {
    let (parts, incoming) = req.into_parts();
    if !origin_ok(app, &parts.headers) {
        return Err(Error::ForbiddenOrigin);
    }
    let encoding = body::encoding(&parts.headers).ok_or(Error::UnsupportedMediaType(
        "application/json or application/x-www-form-urlencoded",
    ))?;
    let bytes = body::read(
        &parts.headers,
        incoming,
        app.config.auth_body_limit,
        app.config.body_read_timeout,
    )
    .await?;
    let creds = body::parse_login(encoding, &bytes)?;
    let client = client_addr(app, &parts.headers, peer);
    let ua = user_agent(&parts.headers);
    let ok = app.auth.login(creds, client, ua).await?;

    let mut c = session_cookie(app, ok.cookie_value);
    if ok.remember {
        c.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(app.config.auth.remember_lifetime.as_secs()).unwrap_or(i64::MAX),
        ));
    }
    let mut resp = json(
        StatusCode::OK,
        &json!({
            "user": {"id": ok.user_id, "username": ok.username},
            "expires_at": ok.expires_at,
            "remember": ok.remember,
        }),
    );
    set_cookie(&mut resp, &c);
    Ok(resp)
}

fn session_cookie(app: &App, value: String) -> Cookie<'static> {
    Cookie::build((app.cookie_name.clone(), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(app.cookie_secure)
        .build()
}

fn set_cookie(resp: &mut Response<Body>, c: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `POST /logout` and `POST /logout?all=true`
pub(super) async fn logout(
    app: &Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    if !origin_ok(app, req.headers()) {
        return Err(Error::ForbiddenOrigin);
    }
    let all = req.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
            k == "all" && matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on")
        })
    });
    let mut revoked = Revoked::default();
    for value in session_cookies(app, req.headers()) {
        let r = app.auth.logout(Some(value), all).await?;
        revoked.user_id = revoked.user_id.or(r.user_id);
        revoked.sessions.extend(r.sessions);
    }
    if !revoked.sessions.is_empty() {
        tracing::info!(sessions = ?revoked.sessions, "logout");
        // Sockets of these sessions are told to close before we answer.
        app.gateway.sessions_ended(&revoked.sessions);
    }
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let mut c = session_cookie(app, String::new());
    c.make_removal();
    set_cookie(&mut resp, &c);
    Ok(resp)
}

/// Authenticates a request's session cookie.
///
/// # Errors
/// [`Error::StoreBusy`] when the database does not answer in time.
pub(crate) async fn session_of(
    app: &App,
    headers: &hyper::HeaderMap,
) -> Result<Option<SessionRow>, Error> {
    let ua = user_agent(headers);
    for value in session_cookies(app, headers) {
        let mut revoked = Revoked::default();
        let found = app.auth.authenticate(value, ua, &mut revoked).await;
        app.gateway.sessions_ended(&revoked.sessions);
        if let Some(row) = found? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// `GET /me`
pub(super) async fn me(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    let row = session_of(app, req.headers())
        .await?
        .ok_or(Error::Unauthenticated)?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "user": {"id": row.user_id, "username": row.username},
            "session": {
                "created_at": row.created_at,
                "expires_at": row.expires_at,
                "remember": row.remember,
            },
        }),
    ))
}

/// `GET /readyz`: 200 when the database answers.
pub(super) async fn readyz(app: &Arc<App>) -> Result<Response<Body>, Error> {
    if app.store.ping().await {
        Ok(text(StatusCode::OK, "text/plain; charset=utf-8", "ready"))
    } else {
        Err(Error::StoreBusy)
    }
}

/// `GET /metrics`: Prometheus text format.
pub(super) fn metrics(app: &Arc<App>) -> Response<Body> {
    let m = &app.metrics;
    let mut out = String::with_capacity(4096);
    m.logins.render(
        &mut out,
        "wsgate_logins_total",
        "outcome",
        "Login attempts by outcome.",
    );
    let hasher = app.auth.hasher();
    render_value(
        &mut out,
        "wsgate_hash_threads",
        "gauge",
        "Password hashing threads.",
        hasher.threads(),
    );
    render_value(
        &mut out,
        "wsgate_login_queue_depth",
        "gauge",
        "Password checks admitted and not yet answered.",
        hasher.depth(),
    );
    render_value(
        &mut out,
        "wsgate_login_queue_expected_wait_seconds",
        "gauge",
        "Expected wait of a password check admitted now.",
        hasher.expected_wait().as_secs_f64(),
    );
    let (wait, hash) = hasher.histograms();
    wait.render(
        &mut out,
        "wsgate_login_queue_wait_seconds",
        "Time from admission to the start of a password check.",
    );
    hash.render(
        &mut out,
        "wsgate_password_hash_seconds",
        "Time of one argon2id computation.",
    );
    let stats = app.store.stats();
    render_value(
        &mut out,
        "wsgate_store_busy_total",
        "counter",
        "Store calls that gave up on a lock or pool checkout.",
        metrics::load(&stats.busy),
    );
    render_value(
        &mut out,
        "wsgate_store_errors_total",
        "counter",
        "Store calls that failed otherwise.",
        metrics::load(&stats.errors),
    );
    render_value(
        &mut out,
        "wsgate_sessions_created_total",
        "counter",
        "Sessions created by logins.",
        metrics::load(&m.sessions_created),
    );
    render_value(
        &mut out,
        "wsgate_sessions_revoked_total",
        "counter",
        "Sessions ended by logout, revocation or session protection.",
        metrics::load(&m.sessions_revoked),
    );
    render_value(
        &mut out,
        "wsgate_sessions_expired_total",
        "counter",
        "Sessions removed by the expiry sweep.",
        metrics::load(&m.sessions_expired),
    );
    render_value(
        &mut out,
        "wsgate_sessions",
        "gauge",
        "Sessions stored, as of the last sweep.",
        metrics::load(&m.sessions_stored),
    );
    render_value(
        &mut out,
        "wsgate_connections_open",
        "gauge",
        "Open TCP connections.",
        metrics::load(&m.connections_open),
    );
    render_gateway(&mut out, &app.gateway);
    m.http_responses.render(
        &mut out,
        "wsgate_http_responses_total",
        "status",
        "HTTP responses by status.",
    );
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
}

fn render_gateway(out: &mut String, gw: &crate::gateway::Gateway) {
    let m = &gw.metrics;
    render_value(
        out,
        "wsgate_sockets_open",
        "gauge",
        "Open WebSockets.",
        gw.registry.len(),
    );
    m.upgrades.render(
        out,
        "wsgate_upgrades_total",
        "outcome",
        "WebSocket upgrade attempts by outcome.",
    );
    render_value(
        out,
        "wsgate_frames_in_total",
        "counter",
        "Frames read from clients.",
        metrics::load(&m.frames_in),
    );
    render_value(
        out,
        "wsgate_frames_out_total",
        "counter",
        "Frames written to clients.",
        metrics::load(&m.frames_out),
    );
    let hub = &gw.hub.stats;
    render_value(
        out,
        "wsgate_messages_published_total",
        "counter",
        "Messages published to rooms (clients and the API).",
        metrics::load(&hub.published),
    );
    render_value(
        out,
        "wsgate_messages_delivered_total",
        "counter",
        "Message frames queued to sockets.",
        metrics::load(&hub.delivered),
    );
    m.closes.render(
        out,
        "wsgate_socket_closes_total",
        "code",
        "Sockets closed, by close code (gone: no closing handshake).",
    );
    render_value(
        out,
        "wsgate_queue_overflows_total",
        "counter",
        "Sockets closed as slow consumers (outbound queue overflow).",
        m.closes.get("4002"),
    );
    render_value(out, "wsgate_rooms", "gauge", "Rooms held.", gw.hub.len());
}

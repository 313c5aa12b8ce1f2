//! `POST /publish`: back ends push to rooms (dashboards, notifications)
//! with `Authorization: Bearer KEY`. Delivered exactly like a client's
//! publish, with `"from": null`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Body, body, json};
use crate::app::App;
use crate::auth::password::constant_time_eq;
use crate::error::Error;
use crate::names::valid_room;

#[derive(Deserialize)]
struct PublishBody<'a> {
    room: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Handles `POST /publish`.
///
/// # Errors
/// `404` when no API key is configured, `401` for a missing or wrong key,
/// `413` for a body over the limit, `400` for a malformed body, an invalid
/// room or `data` over the limit.
pub(super) async fn publish(
    app: &Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let Some(key) = app.config.gateway.publish_key.as_deref() else {
        return Err(Error::NotFound);
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), key.as_bytes()) {
        return Err(Error::BadApiKey);
    }
    let (parts, incoming) = req.into_parts();
    let bytes = body::read(
        &parts.headers,
        incoming,
        app.config.publish_body_limit,
        app.config.body_read_timeout,
    )
    .await?;
    let b: PublishBody<'_> = serde_json::from_slice(&bytes).map_err(|_| {
        Error::BadRequest(
            "body must be a JSON object with a string \"room\" and a \"data\" value".into(),
        )
    })?;
    if !valid_room(&b.room) {
        return Err(Error::BadRequest(
            "room names match [A-Za-z0-9_.:-]{1,64}".into(),
        ));
    }
    let max = app.config.gateway.max_data_size;
    if b.data.get().len() > max {
        return Err(Error::BadRequest(format!(
            "\"data\" is larger than {max} bytes"
        )));
    }
    let p = app.gateway.hub.publish(&b.room, None, b.data.get());
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"delivered": p.delivered, "seq": p.seq, "epoch": &*p.epoch}),
    ))
}

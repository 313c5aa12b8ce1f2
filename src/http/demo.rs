//! The built-in demo page (`GET /`) and its static files (`GET /assets/…`),
//! compiled into the binary.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::{Body, text};

const INDEX: &str = include_str!("demo/index.html");
const APP_JS: &str = include_str!("demo/app.js");
const STYLE: &str = include_str!("demo/style.css");

/// The file at `path`, or `None` (404).
pub(super) fn serve(path: &str) -> Option<Response<Body>> {
    let (ct, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/assets/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/assets/style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    let mut resp = text(StatusCode::OK, ct, body);
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'",
        ),
    );
    Some(resp)
}

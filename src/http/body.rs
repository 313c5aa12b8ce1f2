//! Request bodies: size limit, read timeout, content type, and the login
//! body in JSON or form encoding.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use serde::Deserialize;

use crate::auth::Credentials;
use crate::error::{Error, Result};

/// Accepted body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`
    Json,
    /// `application/x-www-form-urlencoded`
    Form,
}

/// The media type of a request (parameters such as `charset` ignored).
pub fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(Encoding::Json),
        "application/x-www-form-urlencoded" => Some(Encoding::Form),
        _ => None,
    }
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
///
/// # Errors
/// [`Error::PayloadTooLarge`] (declared or actual size), [`Error::Timeout`],
/// [`Error::BadRequest`] when the body breaks off.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes> {
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| Error::BadRequest("bad Content-Length".into()))?;
        if len > limit as u64 {
            return Err(Error::PayloadTooLarge(limit));
        }
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(Error::Timeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Error::PayloadTooLarge(limit))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body broke off");
            Err(Error::BadRequest(
                "the request body could not be read".into(),
            ))
        }
    }
}

/// Unknown fields are ignored (clients may send more, e.g. a CSRF token).
#[derive(Deserialize)]
struct JsonLogin {
    username: String,
    password: String,
    #[serde(default)]
    remember: Option<bool>,
}

/// Parses a login body.
///
/// # Errors
/// [`Error::BadRequest`] for malformed bodies and missing or wrong-typed
/// fields.
pub fn parse_login(encoding: Encoding, body: &[u8]) -> Result<Credentials> {
    match encoding {
        Encoding::Json => {
            let j: JsonLogin = serde_json::from_slice(body).map_err(|e| {
                Error::BadRequest(format!(
                    "body must be a JSON object with string fields username and password: {}",
                    json_error_summary(&e)
                ))
            })?;
            Ok(Credentials {
                username: j.username,
                password: j.password,
                remember: j.remember.unwrap_or(false),
            })
        }
        Encoding::Form => {
            let (mut username, mut password, mut remember) = (None, None, false);
            if std::str::from_utf8(body).is_err() {
                return Err(Error::BadRequest("form body is not UTF-8".into()));
            }
            for (k, v) in form_urlencoded::parse(body) {
                match &*k {
                    "username" if username.is_none() => username = Some(v.into_owned()),
                    "password" if password.is_none() => password = Some(v.into_owned()),
                    "remember" => {
                        remember = matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "1");
                    }
                    _ => {}
                }
            }
            match (username, password) {
                (Some(username), Some(password)) => Ok(Credentials {
                    username,
                    password,
                    remember,
                }),
                _ => Err(Error::BadRequest(
                    "form fields username and password are required".into(),
                )),
            }
        }
    }
}

/// A short, non-echoing description of a JSON error (never repeats input).
fn json_error_summary(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io | Category::Eof => "unexpected end of input".into(),
        Category::Syntax => format!("syntax error at line {} column {}", e.line(), e.column()),
        Category::Data => "missing or wrong-typed field".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(encoding(&h), None);
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(encoding(&h), Some(Encoding::Json));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/X-WWW-Form-Urlencoded"),
        );
        assert_eq!(encoding(&h), Some(Encoding::Form));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(encoding(&h), None);
    }

    #[test]
    fn json_bodies() {
        let c = parse_login(Encoding::Json, br#"{"username":"a","password":"p"}"#).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str(), c.remember),
            ("a", "p", false)
        );
        let c = parse_login(
            Encoding::Json,
            br#"{"username":"a","password":"p","remember":true}"#,
        )
        .unwrap();
        assert!(c.remember);
        assert!(
            parse_login(
                Encoding::Json,
                br#"{"username":"a","password":"p","extra":1}"#
            )
            .is_ok()
        );
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"username":"a"}"#,
            br#"{"username":1,"password":"p"}"#,
            br#"{"username":"a","password":"p","remember":"yes"}"#,
            b"",
            br#"{"username":"a","password":"p""#,
        ] {
            assert!(
                matches!(parse_login(Encoding::Json, bad), Err(Error::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn form_bodies() {
        let c = parse_login(
            Encoding::Form,
            b"username=al%69ce&password=p%26q&remember=on",
        )
        .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str(), c.remember),
            ("alice", "p&q", true)
        );
        for (v, want) in [
            ("true", true),
            ("1", true),
            ("TRUE", true),
            ("off", false),
            ("0", false),
        ] {
            let body = format!("username=a&password=b&remember={v}");
            assert_eq!(
                parse_login(Encoding::Form, body.as_bytes())
                    .unwrap()
                    .remember,
                want,
                "{v}"
            );
        }
        assert!(parse_login(Encoding::Form, b"username=a").is_err());
        assert!(parse_login(Encoding::Form, b"").is_err());
        assert!(parse_login(Encoding::Form, b"username=a&password=\xff").is_err());
    }
}

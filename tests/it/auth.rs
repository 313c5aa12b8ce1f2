//! POST /auth, /logout, /me: the session contract of PROTOCOL.md.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn login_me_logout_round_trip() {
    let gw = TestGateway::start().await;
    let id = gw.add_user("alice", "s3cret").await;
    let r = gw
        .req("POST", "/auth")
        .json(&json!({"username": "alice", "password": "s3cret"}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["user"], json!({"id": id, "username": "alice"}));
    assert_eq!(j["remember"], json!(false));
    let cookie = r.session_cookie().unwrap();

    let me = gw.req("GET", "/me").cookie(&cookie).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["username"], "alice");
    assert_eq!(me.json()["session"]["expires_at"], j["expires_at"]);

    let out = gw.req("POST", "/logout").cookie(&cookie).send().await;
    assert_eq!(out.status, 204);
    let me = gw.req("GET", "/me").cookie(&cookie).send().await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "unauthenticated");
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Helpers of this file.

const DAY_MS: i64 = 24 * 3_600_000;

fn creds(user: &str, password: &str) -> serde_json::Value {
    json!({"username": user, "password": password})
}

/// The session cookie's `Set-Cookie` header, split into trimmed attributes
/// (the first being `name=value`).
fn cookie_attrs(r: &Resp) -> Vec<String> {
    let sc = r
        .set_cookies()
        .into_iter()
        .find(|c| {
            c.split('=')
                .next()
                .unwrap_or("")
                .ends_with("wsgate_session")
        })
        .unwrap_or_else(|| panic!("no session Set-Cookie in {:?}", r.headers));
    sc.split(';').map(|s| s.trim().to_owned()).collect()
}

fn has_attr(attrs: &[String], want: &str) -> bool {
    attrs[1..].iter().any(|a| a.eq_ignore_ascii_case(want))
}

fn attr_value<'a>(attrs: &'a [String], name: &str) -> Option<&'a str> {
    attrs[1..].iter().find_map(|a| {
        let (k, v) = a.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn now_ms() -> i64 {
    wsgate::store::now_ms()
}

/// Logs in with JSON from a forwarded client address (needs trusted proxies).
async fn login_from(gw: &TestGateway, xff: &str, user: &str, password: &str) -> Resp {
    gw.req("POST", "/auth")
        .header("x-forwarded-for", xff)
        .json(&creds(user, password))
        .send()
        .await
}

// ---------------------------------------------------------------------------
// POST /auth bodies and the cookie.

#[tokio::test]
async fn json_login_remember_false_and_true() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;

    // remember absent, and explicitly false: browser-session cookie, 12 h.
    for body in [
        json!({"username": "alice", "password": "s3cret"}),
        json!({"username": "alice", "password": "s3cret", "remember": false}),
    ] {
        let r = gw.req("POST", "/auth").json(&body).send().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["remember"], json!(false));
        let me = gw
            .req("GET", "/me")
            .cookie(&r.session_cookie().unwrap())
            .send()
            .await;
        assert_eq!(me.status, 200);
        let s = &me.json()["session"];
        assert_eq!(s["remember"], json!(false));
        assert_eq!(s["expires_at"], r.json()["expires_at"]);
        let life = s["expires_at"].as_i64().unwrap() - s["created_at"].as_i64().unwrap();
        assert_eq!(life, 12 * 3_600_000);
    }

    // remember true: 30 days.
    let r = gw
        .req("POST", "/auth")
        .json(&json!({"username": "alice", "password": "s3cret", "remember": true}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["remember"], json!(true));
    let me = gw
        .req("GET", "/me")
        .cookie(&r.session_cookie().unwrap())
        .send()
        .await;
    let s = &me.json()["session"];
    assert_eq!(s["remember"], json!(true));
    assert_eq!(s["expires_at"], r.json()["expires_at"]);
    let life = s["expires_at"].as_i64().unwrap() - s["created_at"].as_i64().unwrap();
    assert_eq!(life, 30 * DAY_MS);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn form_login_and_remember_values() {
    let gw = TestGateway::start().await;
    let id = gw.add_user("alice", "p&q s3cret").await;
    for (remember, want) in [
        (None, false),
        (Some("on"), true),
        (Some("true"), true),
        (Some("1"), true),
        (Some("off"), false),
        (Some("0"), false),
    ] {
        let mut body = "username=alice&password=p%26q+s3cret".to_owned();
        if let Some(v) = remember {
            body.push_str(&format!("&remember={v}"));
        }
        let r = gw.req("POST", "/auth").form(&body).send().await;
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        let j = r.json();
        assert_eq!(j["user"], json!({"id": id, "username": "alice"}));
        assert_eq!(j["remember"], json!(want), "{body}");
        let attrs = cookie_attrs(&r);
        assert_eq!(attr_value(&attrs, "Max-Age").is_some(), want, "{body}");
        let me = gw
            .req("GET", "/me")
            .cookie(&r.session_cookie().unwrap())
            .send()
            .await;
        assert_eq!(me.status, 200);
        assert_eq!(me.json()["session"]["remember"], json!(want), "{body}");
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn cookie_attributes_without_and_with_remember() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;

    let r = gw
        .req("POST", "/auth")
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let attrs = cookie_attrs(&r);
    assert!(attrs[0].starts_with("wsgate_session="), "{attrs:?}");
    assert!(attrs[0].len() > "wsgate_session=".len() + 20, "{attrs:?}");
    assert!(has_attr(&attrs, "HttpOnly"), "{attrs:?}");
    assert!(has_attr(&attrs, "SameSite=Lax"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Path"), Some("/"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Max-Age"), None, "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Expires"), None, "{attrs:?}");
    assert!(!has_attr(&attrs, "Secure"), "plain http: {attrs:?}");
    assert_eq!(attr_value(&attrs, "Domain"), None, "{attrs:?}");

    let r = gw
        .req("POST", "/auth")
        .json(&json!({"username": "alice", "password": "s3cret", "remember": true}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let attrs = cookie_attrs(&r);
    assert!(has_attr(&attrs, "HttpOnly"), "{attrs:?}");
    assert!(has_attr(&attrs, "SameSite=Lax"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Path"), Some("/"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Max-Age"), Some("2592000"), "{attrs:?}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn https_public_origin_uses_host_prefix_and_secure() {
    let gw = TestGateway::start_with(|c| {
        c.public_origin = Some("https://chat.example.com".into());
    })
    .await;
    gw.add_user("alice", "s3cret").await;
    let r = gw
        .req("POST", "/auth")
        .header("origin", "https://chat.example.com")
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let attrs = cookie_attrs(&r);
    assert!(attrs[0].starts_with("__Host-wsgate_session="), "{attrs:?}");
    assert!(has_attr(&attrs, "Secure"), "{attrs:?}");
    assert!(has_attr(&attrs, "HttpOnly"), "{attrs:?}");
    assert!(has_attr(&attrs, "SameSite=Lax"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Path"), Some("/"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Domain"), None, "__Host- forbids Domain");
    let value = r.session_cookie().unwrap();

    let me = gw
        .req("GET", "/me")
        .header("cookie", &format!("__Host-wsgate_session={value}"))
        .send()
        .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["user"]["username"], "alice");
    // The unprefixed name is not the session cookie here.
    let me = gw.req("GET", "/me").cookie(&value).send().await;
    assert_eq!(me.status, 401);

    // The request's own http origin is foreign once a public origin is set.
    let r = gw
        .req("POST", "/auth")
        .header("origin", &gw.url())
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "forbidden_origin");

    // Logout clears the prefixed cookie, Secure as well.
    let out = gw
        .req("POST", "/logout")
        .header("cookie", &format!("__Host-wsgate_session={value}"))
        .send()
        .await;
    assert_eq!(out.status, 204);
    let attrs = cookie_attrs(&out);
    assert!(attrs[0].starts_with("__Host-wsgate_session="), "{attrs:?}");
    assert!(has_attr(&attrs, "Secure"), "{attrs:?}");
    let me = gw
        .req("GET", "/me")
        .header("cookie", &format!("__Host-wsgate_session={value}"))
        .send()
        .await;
    assert_eq!(me.status, 401);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn every_login_creates_a_fresh_session() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let first = gw.login("alice", "s3cret").await;
    let second = gw.login("alice", "s3cret").await;
    assert_ne!(first, second);

    // A cookie sent along with the login is never reused.
    let r = gw
        .req("POST", "/auth")
        .cookie(&first)
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let third = r.session_cookie().unwrap();
    assert_ne!(third, first);
    assert_ne!(third, second);
    // Nor is a token smuggled in: the three tokens differ.
    let tokens: std::collections::HashSet<_> = [&first, &second, &third]
        .iter()
        .map(|c| gw.token_hash_of(c))
        .collect();
    assert_eq!(tokens.len(), 3);

    for c in [&first, &second, &third] {
        let me = gw.req("GET", "/me").cookie(c).send().await;
        assert_eq!(me.status, 200);
    }
    assert_eq!(gw.count_sessions().await, 3);
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Credentials.

#[tokio::test]
async fn wrong_password_unknown_and_disabled_user_look_the_same() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    gw.add_user("bob", "hunter2").await;
    let bob_cookie = gw.login("bob", "hunter2").await;

    let wrong = gw
        .req("POST", "/auth")
        .json(&creds("alice", "nope"))
        .send()
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error_code(), "invalid_credentials");
    assert!(wrong.session_cookie().is_none());

    let unknown = gw
        .req("POST", "/auth")
        .json(&creds("mallory", "s3cret"))
        .send()
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json(), wrong.json());
    assert!(unknown.session_cookie().is_none());

    let (_, revoked) = within(
        "disable bob",
        gw.app
            .store
            .call(|c| wsgate::store::users::set_disabled(c, "bob", true)),
    )
    .await
    .unwrap();
    assert_eq!(revoked.len(), 1);
    let disabled = gw
        .req("POST", "/auth")
        .json(&creds("bob", "hunter2"))
        .send()
        .await;
    assert_eq!(disabled.status, 401);
    assert_eq!(disabled.json(), wrong.json());
    assert!(disabled.session_cookie().is_none());
    // Disabling revoked bob's session.
    let me = gw.req("GET", "/me").cookie(&bob_cookie).send().await;
    assert_eq!(me.status, 401);

    // Enabled again, the right password works.
    within(
        "enable bob",
        gw.app
            .store
            .call(|c| wsgate::store::users::set_disabled(c, "bob", false)),
    )
    .await
    .unwrap();
    gw.login("bob", "hunter2").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn username_matches_ignoring_ascii_case() {
    let gw = TestGateway::start().await;
    let id = gw.add_user("Carol", "s3cret").await;
    for typed in ["Carol", "carol", "CAROL", "cArOl"] {
        let r = gw
            .req("POST", "/auth")
            .json(&creds(typed, "s3cret"))
            .send()
            .await;
        assert_eq!(r.status, 200, "{typed}: {}", r.text());
        // The stored spelling is reported.
        assert_eq!(r.json()["user"], json!({"id": id, "username": "Carol"}));
    }
    // The password is not case-insensitive.
    let r = gw
        .req("POST", "/auth")
        .json(&creds("carol", "S3CRET"))
        .send()
        .await;
    assert_eq!(r.status, 401);
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Malformed requests.

#[tokio::test]
async fn malformed_login_bodies_get_400() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let json_bodies: &[&[u8]] = &[
        b"not json",
        b"{",
        br#"{"username":"alice","password":"s3cret""#,
        b"",
        b"[]",
        b"\"alice\"",
        b"null",
        b"{}",
        br#"{"username":"alice"}"#,
        br#"{"password":"s3cret"}"#,
        br#"{"username":1,"password":"s3cret"}"#,
        br#"{"username":"alice","password":null}"#,
        br#"{"username":"alice","password":["s3cret"]}"#,
        br#"{"username":"alice","password":"s3cret","remember":"yes"}"#,
        br#"{"username":"alice","password":"s3cret","remember":1}"#,
        b"\xff\xfe",
    ];
    for body in json_bodies {
        let r = gw
            .req("POST", "/auth")
            .body("application/json", body.to_vec())
            .send()
            .await;
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert_eq!(r.error_code(), "bad_request");
        assert!(r.session_cookie().is_none());
    }
    let form_bodies: &[&[u8]] = &[
        b"",
        b"username=alice",
        b"password=s3cret",
        b"user=alice&pass=s3cret",
        b"username=alice&password=\xff",
    ];
    for body in form_bodies {
        let r = gw
            .req("POST", "/auth")
            .body("application/x-www-form-urlencoded", body.to_vec())
            .send()
            .await;
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert_eq!(r.error_code(), "bad_request");
    }
    // The 400s did not count as failed logins against alice.
    gw.login("alice", "s3cret").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_or_missing_content_type_gets_415() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let body = creds("alice", "s3cret").to_string().into_bytes();
    for ct in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/xml",
    ] {
        let r = gw.req("POST", "/auth").body(ct, body.clone()).send().await;
        assert_eq!(r.status, 415, "{ct}: {}", r.text());
        assert_eq!(r.error_code(), "unsupported_media_type");
        assert!(r.session_cookie().is_none());
    }
    // No Content-Type at all, with Content-Length or chunked.
    let r = gw.req("POST", "/auth").raw_body(body.clone()).send().await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_media_type");
    let r = send_chunked(gw.addr, "/auth", &[], vec![body.clone()]).await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_media_type");
    // Parameters and case do not matter.
    let r = gw
        .req("POST", "/auth")
        .body("Application/JSON; charset=utf-8", body)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn body_over_8_kib_gets_413() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;

    // Exactly at the limit is read (and judged on its content).
    let mut at_limit = creds("alice", "wrong").to_string().into_bytes();
    at_limit.resize(8192, b' ');
    let r = gw
        .req("POST", "/auth")
        .body("application/json", at_limit.clone())
        .send()
        .await;
    assert_eq!(r.status, 401, "{}", r.text());

    // One byte more, with Content-Length.
    let mut over = at_limit.clone();
    over.push(b' ');
    let r = gw
        .req("POST", "/auth")
        .body("application/json", over)
        .send()
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "payload_too_large");

    // A correct login padded far over the limit is refused too.
    let big = json!({"username": "alice", "password": "s3cret", "pad": "x".repeat(20_000)});
    let r = gw.req("POST", "/auth").json(&big).send().await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");
    assert!(r.session_cookie().is_none());

    // Form bodies share the limit.
    let form = format!("username=alice&password=s3cret&pad={}", "x".repeat(9000));
    let r = gw.req("POST", "/auth").form(&form).send().await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");

    // Chunked (no Content-Length): under the limit it works ...
    let ok = creds("alice", "s3cret").to_string().into_bytes();
    let (a, b) = ok.split_at(10);
    let r = send_chunked(
        gw.addr,
        "/auth",
        &[("content-type", "application/json")],
        vec![a.to_vec(), b.to_vec()],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // ... and over it the actual size is caught.
    let mut chunks = vec![br#"{"username":"alice","password":"s3cret","pad":""#.to_vec()];
    chunks.extend((0..9).map(|_| vec![b'x'; 1024]));
    chunks.push(br#""}"#.to_vec());
    let r = send_chunked(
        gw.addr,
        "/auth",
        &[("content-type", "application/json")],
        chunks,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "payload_too_large");
    assert!(r.session_cookie().is_none());

    // The server is fine afterwards.
    gw.login("alice", "s3cret").await;
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Origins.

#[tokio::test]
async fn origin_rule_on_auth_and_logout() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let cookie = gw.login("alice", "s3cret").await;
    let foreign = [
        "https://evil.example",
        "http://127.0.0.1:1",
        "null",
        "garbage",
    ];

    for origin in foreign {
        let r = gw
            .req("POST", "/auth")
            .header("origin", origin)
            .json(&creds("alice", "s3cret"))
            .send()
            .await;
        assert_eq!(r.status, 403, "{origin}: {}", r.text());
        assert_eq!(r.error_code(), "forbidden_origin");
        assert!(r.session_cookie().is_none());

        let r = gw
            .req("POST", "/logout")
            .header("origin", origin)
            .cookie(&cookie)
            .send()
            .await;
        assert_eq!(r.status, 403, "{origin}");
        assert_eq!(r.error_code(), "forbidden_origin");
        assert!(
            r.session_cookie().is_none(),
            "a refused logout clears nothing"
        );
    }
    // No forced logout happened.
    assert_eq!(
        gw.req("GET", "/me").cookie(&cookie).send().await.status,
        200
    );
    assert!(gw.session_exists(&cookie).await);

    // Same origin passes; case and the explicit form of the host do not matter.
    let same = gw.url();
    let r = gw
        .req("POST", "/auth")
        .header("origin", &same)
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = gw
        .req("POST", "/auth")
        .header("origin", &same.to_uppercase())
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // No Origin passes (command-line clients).
    let second = gw.login("alice", "s3cret").await;
    let r = gw
        .req("POST", "/logout")
        .header("origin", &same)
        .cookie(&cookie)
        .send()
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        gw.req("GET", "/me").cookie(&cookie).send().await.status,
        401
    );
    let r = gw.req("POST", "/logout").cookie(&second).send().await;
    assert_eq!(r.status, 204);
    assert_eq!(
        gw.req("GET", "/me").cookie(&second).send().await.status,
        401
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn allowed_origins_replace_the_own_origin() {
    let gw = TestGateway::start_with(|c| {
        c.allowed_origins = Some(
            "https://a.example"
                .parse::<wsgate::net::OriginSet>()
                .unwrap(),
        );
    })
    .await;
    gw.add_user("alice", "s3cret").await;
    for (origin, want) in [
        ("https://a.example", 200),
        ("HTTPS://A.EXAMPLE:443", 200),
        ("https://b.example", 403),
        ("http://a.example", 403),
        ("https://a.example:8443", 403),
        ("null", 403),
        (gw.url().as_str(), 403),
    ] {
        let r = gw
            .req("POST", "/auth")
            .header("origin", origin)
            .json(&creds("alice", "s3cret"))
            .send()
            .await;
        assert_eq!(r.status, want, "{origin}: {}", r.text());
        if want == 403 {
            assert_eq!(r.error_code(), "forbidden_origin");
        }
    }
    let cookie = gw.login("alice", "s3cret").await;
    let r = gw
        .req("POST", "/logout")
        .header("origin", &gw.url())
        .cookie(&cookie)
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert!(gw.session_exists(&cookie).await);
    let r = gw
        .req("POST", "/logout")
        .header("origin", "https://a.example")
        .cookie(&cookie)
        .send()
        .await;
    assert_eq!(r.status, 204);
    assert!(!gw.session_exists(&cookie).await);
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// POST /logout.

fn assert_clears_cookie(r: &Resp) {
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    let attrs = cookie_attrs(r);
    assert_eq!(attrs[0], "wsgate_session=", "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Max-Age"), Some("0"), "{attrs:?}");
    assert_eq!(attr_value(&attrs, "Path"), Some("/"), "{attrs:?}");
    assert!(has_attr(&attrs, "HttpOnly"), "{attrs:?}");
}

#[tokio::test]
async fn logout_clears_the_cookie_with_or_without_a_session() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let cookie = gw.login("alice", "s3cret").await;
    assert!(gw.session_exists(&cookie).await);

    let r = gw.req("POST", "/logout").cookie(&cookie).send().await;
    assert_clears_cookie(&r);
    assert!(!gw.session_exists(&cookie).await, "the row is deleted");
    assert_eq!(gw.count_sessions().await, 0);
    let me = gw.req("GET", "/me").cookie(&cookie).send().await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "unauthenticated");

    // Again with the now dead cookie, without any cookie, with garbage.
    let r = gw.req("POST", "/logout").cookie(&cookie).send().await;
    assert_clears_cookie(&r);
    let r = gw.req("POST", "/logout").send().await;
    assert_clears_cookie(&r);
    let r = gw.req("POST", "/logout").cookie("garbage").send().await;
    assert_clears_cookie(&r);
    let r = gw
        .req("POST", "/logout")
        .json(&json!({"whatever": true}))
        .send()
        .await;
    assert_clears_cookie(&r);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_that_user_only() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    gw.add_user("bob", "hunter2").await;
    let a1 = gw.login("alice", "s3cret").await;
    let a2 = gw.login("alice", "s3cret").await;
    let a3 = gw.login("alice", "s3cret").await;
    let b1 = gw.login("bob", "hunter2").await;

    // Plain logout ends only the named session.
    let r = gw.req("POST", "/logout").cookie(&a3).send().await;
    assert_clears_cookie(&r);
    assert_eq!(gw.req("GET", "/me").cookie(&a3).send().await.status, 401);
    assert_eq!(gw.req("GET", "/me").cookie(&a1).send().await.status, 200);

    let r = gw.req("POST", "/logout?all=true").cookie(&a1).send().await;
    assert_clears_cookie(&r);
    for c in [&a1, &a2] {
        assert_eq!(gw.req("GET", "/me").cookie(c).send().await.status, 401);
        assert!(!gw.session_exists(c).await);
    }
    let me = gw.req("GET", "/me").cookie(&b1).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["username"], "bob");
    assert_eq!(gw.count_sessions().await, 1);
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// GET /me.

#[tokio::test]
async fn me_shape() {
    let gw = TestGateway::start().await;
    let id = gw.add_user("alice", "s3cret").await;
    let before = now_ms();
    let r = gw
        .req("POST", "/auth")
        .json(&json!({"username": "alice", "password": "s3cret", "remember": true}))
        .send()
        .await;
    let after = now_ms();
    assert_eq!(r.status, 200);
    let me = gw
        .req("GET", "/me")
        .cookie(&r.session_cookie().unwrap())
        .send()
        .await;
    assert_eq!(me.status, 200);
    assert!(
        me.header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        me.headers
    );
    let j = me.json();
    assert_eq!(j["user"], json!({"id": id, "username": "alice"}));
    let s = j["session"].as_object().unwrap();
    let mut keys: Vec<_> = s.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "expires_at", "remember"]);
    let created = s["created_at"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&created),
        "{created} not in {before}..={after}"
    );
    assert_eq!(s["expires_at"].as_i64().unwrap(), created + 30 * DAY_MS);
    assert_eq!(s["remember"], json!(true));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn me_rejects_missing_and_bad_cookies() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let cookie = gw.login("alice", "s3cret").await;
    let parts: Vec<&str> = cookie.split('.').collect();
    assert_eq!(parts.len(), 3, "KID.TOKEN.MAC: {cookie}");

    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let kid_len = parts[0].len();
    let other_key = wsgate::auth::cookie::Keys::new(vec![9; 32], vec![])
        .unwrap()
        .sign(&wsgate::auth::cookie::Keys::new_token());
    let bad = [
        flip(&cookie, cookie.len() - 2),       // MAC tampered
        flip(&cookie, kid_len + 3),            // token tampered
        flip(&cookie, 0),                      // key id tampered
        cookie[..cookie.len() - 1].to_owned(), // truncated
        cookie[..cookie.len() / 2].to_owned(), // truncated harder
        format!("{}.{}", parts[0], parts[1]),  // unsigned
        parts[1].to_owned(),                   // bare token
        format!("{cookie}.x"),                 // extra part
        format!("{}.{}.", parts[0], parts[1]), // empty MAC
        other_key,                             // signed by another key
        String::new(),
        "...".into(),
    ];
    for value in &bad {
        let me = gw.req("GET", "/me").cookie(value).send().await;
        assert_eq!(me.status, 401, "{value:?} accepted");
        assert_eq!(me.error_code(), "unauthenticated");
    }
    let me = gw.req("GET", "/me").send().await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "unauthenticated");
    // A validly signed token without a row.
    let orphan = gw
        .app
        .auth
        .keys()
        .sign(&wsgate::auth::cookie::Keys::new_token());
    assert_eq!(
        gw.req("GET", "/me").cookie(&orphan).send().await.status,
        401
    );

    // None of that hurt the real session.
    assert_eq!(
        gw.req("GET", "/me").cookie(&cookie).send().await.status,
        200
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn expired_sessions_are_rejected() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;

    // Past its absolute end (remember or not).
    for remember in [false, true] {
        let r = gw
            .req("POST", "/auth")
            .json(&json!({"username": "alice", "password": "s3cret", "remember": remember}))
            .send()
            .await;
        let c = r.session_cookie().unwrap();
        assert_eq!(gw.req("GET", "/me").cookie(&c).send().await.status, 200);
        gw.update_session(&c, &format!("expires_at = {}", now_ms() - 1))
            .await;
        let me = gw.req("GET", "/me").cookie(&c).send().await;
        assert_eq!(me.status, 401, "remember={remember}");
        assert_eq!(me.error_code(), "unauthenticated");
    }

    // Idle past 2 h: a plain session ends, a remember session lives on.
    let plain = gw.login("alice", "s3cret").await;
    let r = gw
        .req("POST", "/auth")
        .json(&json!({"username": "alice", "password": "s3cret", "remember": true}))
        .send()
        .await;
    let remembered = r.session_cookie().unwrap();
    let idle_since = now_ms() - 2 * 3_600_000 - 60_000;
    for c in [&plain, &remembered] {
        gw.update_session(
            c,
            &format!("last_seen = {idle_since}, created_at = {idle_since}"),
        )
        .await;
    }
    let me = gw.req("GET", "/me").cookie(&plain).send().await;
    assert_eq!(me.status, 401);
    let me = gw.req("GET", "/me").cookie(&remembered).send().await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["session"]["remember"], json!(true));

    // Idle just under 2 h: still alive.
    let fresh = gw.login("alice", "s3cret").await;
    gw.update_session(
        &fresh,
        &format!("last_seen = {}", now_ms() - 2 * 3_600_000 + 60_000),
    )
    .await;
    assert_eq!(gw.req("GET", "/me").cookie(&fresh).send().await.status, 200);
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Session protection.

const UA: &str = "Mozilla/5.0 Foo/1.2";

async fn login_with_ua(gw: &TestGateway, ua: &str) -> String {
    let r = gw
        .req("POST", "/auth")
        .header("user-agent", ua)
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.session_cookie().unwrap()
}

async fn me_with_ua(gw: &TestGateway, cookie: &str, ua: &str) -> u16 {
    gw.req("GET", "/me")
        .header("user-agent", ua)
        .cookie(cookie)
        .send()
        .await
        .status
}

#[tokio::test]
async fn strong_protection_binds_the_user_agent() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let c = login_with_ua(&gw, UA).await;
    assert_eq!(me_with_ua(&gw, &c, UA).await, 200);
    // A version update (digit runs) keeps the session.
    assert_eq!(me_with_ua(&gw, &c, "Mozilla/5.0 Foo/9.9").await, 200);
    assert_eq!(me_with_ua(&gw, &c, "Mozilla/17.4 Foo/123.45").await, 200);
    assert!(gw.session_exists(&c).await);

    // Another browser: unauthenticated, and the session is revoked.
    let me = gw
        .req("GET", "/me")
        .header("user-agent", "Mozilla/5.0 Bar/1.2")
        .cookie(&c)
        .send()
        .await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "unauthenticated");
    assert!(
        !gw.session_exists(&c).await,
        "the stolen session is deleted"
    );
    assert_eq!(me_with_ua(&gw, &c, UA).await, 401);

    // A missing User-Agent is a different one too.
    let c = login_with_ua(&gw, UA).await;
    assert_eq!(gw.req("GET", "/me").cookie(&c).send().await.status, 401);
    assert!(!gw.session_exists(&c).await);
    assert_eq!(me_with_ua(&gw, &c, UA).await, 401);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn basic_and_off_protection_do_not_bind_the_user_agent() {
    for p in [
        wsgate::config::SessionProtection::Basic,
        wsgate::config::SessionProtection::Off,
    ] {
        let gw = TestGateway::start_with(|c| c.auth.protection = p).await;
        gw.add_user("alice", "s3cret").await;
        let c = login_with_ua(&gw, UA).await;
        assert_eq!(me_with_ua(&gw, &c, "curl/8.5.0").await, 200, "{p:?}");
        assert_eq!(gw.req("GET", "/me").cookie(&c).send().await.status, 200);
        assert_eq!(me_with_ua(&gw, &c, UA).await, 200, "{p:?}");
        assert!(gw.session_exists(&c).await);
        gw.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// Brute force.

fn assert_rate_limited(r: &Resp) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limited");
    assert!(r.retry_after().is_some_and(|s| s >= 1), "{:?}", r.headers);
    assert!(r.session_cookie().is_none());
}

#[tokio::test]
async fn failures_per_address_and_username_are_limited() {
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    gw.add_user("alice", "s3cret").await;
    gw.add_user("bob", "hunter2").await;
    let attacker = "203.0.113.1";

    let mut first_429 = None;
    for i in 1..=40 {
        let r = login_from(&gw, attacker, "alice", "wrong").await;
        if r.status == 429 {
            assert_rate_limited(&r);
            first_429 = Some(i);
            break;
        }
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    let n = first_429.expect("no 429 within 40 failures");
    assert!((2..=11).contains(&n), "first 429 at attempt {n}");
    // Also with the username spelled differently.
    assert_rate_limited(&login_from(&gw, attacker, "ALICE", "wrong").await);

    // The right password from that address waits for the bucket too ...
    assert_rate_limited(&login_from(&gw, attacker, "alice", "s3cret").await);
    // ... but from another address it works,
    let r = login_from(&gw, "203.0.113.2", "alice", "s3cret").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // and another username from the same address is not locked out.
    let r = login_from(&gw, attacker, "bob", "hunter2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_distributed_attack_never_locks_out_the_owner() {
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.auth.username_slowdown_after = 5;
        c.auth.username_slowdown_max = std::time::Duration::from_millis(10);
    })
    .await;
    gw.add_user("dave", "s3cret").await;
    // 12 addresses x 3 failures = 36: more than the per-pair burst and more
    // than the per-address burst, but no address over its own limits.
    for a in 1..=12 {
        let addr = format!("198.51.100.{a}");
        for _ in 0..3 {
            let r = login_from(&gw, &addr, "dave", "wrong").await;
            assert_eq!(r.status, 401, "{addr}: {}", r.text());
        }
    }
    let r = login_from(&gw, "192.0.2.77", "dave", "s3cret").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Even an address that failed a little still gets in with the password.
    let r = login_from(&gw, "198.51.100.1", "dave", "s3cret").await;
    assert_eq!(r.status, 200, "{}", r.text());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn failures_per_address_are_limited_across_usernames() {
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    gw.add_user("alice", "s3cret").await;
    let attacker = "203.0.113.50";
    let mut first_429 = None;
    for i in 1..=40 {
        // A fresh username each time: no (address, username) pair fills up.
        let r = login_from(&gw, attacker, &format!("ghost{i}"), "wrong").await;
        if r.status == 429 {
            assert_rate_limited(&r);
            first_429 = Some(i);
            break;
        }
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    let n = first_429.expect("no 429 within 40 failures across usernames");
    assert!((12..=32).contains(&n), "first 429 at attempt {n}");
    // The address is limited for every username, the right password too.
    assert_rate_limited(&login_from(&gw, attacker, "alice", "s3cret").await);
    // Other addresses are not.
    let r = login_from(&gw, "203.0.113.51", "alice", "s3cret").await;
    assert_eq!(r.status, 200, "{}", r.text());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    // No trusted proxies: the TCP peer is the client, whatever the header says.
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let mut first_429 = None;
    for i in 1..=40 {
        let r = login_from(&gw, &format!("203.0.113.{i}"), "alice", "wrong").await;
        if r.status == 429 {
            assert_rate_limited(&r);
            first_429 = Some(i);
            break;
        }
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    let n = first_429.expect("X-Forwarded-For escaped the limit");
    assert!((2..=11).contains(&n), "first 429 at attempt {n}");
    assert_rate_limited(&login_from(&gw, "198.51.100.200", "alice", "s3cret").await);
    assert_rate_limited(
        &gw.req("POST", "/auth")
            .json(&creds("alice", "s3cret"))
            .send()
            .await,
    );
    gw.stop().await.unwrap();
}

/// Fires `n` wrong-password logins at once from this test's address and
/// returns how many were evaluated (401); the others must be 429.
async fn concurrent_guesses(gw: &TestGateway, n: usize, user: impl Fn(usize) -> String) -> u64 {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let req = Req::new(gw.addr, "POST", "/auth").json(&creds(&user(i), &format!("guess{i}")));
        set.spawn(req.send());
    }
    let mut evaluated = 0;
    while let Some(r) = within("guesses", set.join_next()).await {
        let r = r.unwrap();
        match r.status {
            401 => evaluated += 1,
            429 => assert_rate_limited(&r),
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    evaluated
}

#[tokio::test]
async fn concurrent_guesses_cannot_beat_the_pair_limit() {
    // 5 per minute, burst 10: every guess evaluated beyond the burst costs
    // 12 s before the next one, however many were sent at once.
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let evaluated = concurrent_guesses(&gw, 60, |_| "alice".into()).await;
    assert!(evaluated >= 1);
    let r = gw
        .req("POST", "/auth")
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_rate_limited(&r);
    // One token of slack for the refill while the test runs.
    let owed = evaluated.saturating_sub(11) * 12;
    let retry = r.retry_after().unwrap();
    assert!(
        retry >= owed,
        "{evaluated} guesses evaluated, retry after only {retry} s"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_guesses_cannot_beat_the_address_limit() {
    // 30 per minute across usernames: 2 s per guess beyond the burst.
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let evaluated = concurrent_guesses(&gw, 80, |i| format!("ghost{i}")).await;
    assert!(evaluated >= 1);
    let r = gw
        .req("POST", "/auth")
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_rate_limited(&r);
    // Two tokens of slack for the refill while the test runs.
    let owed = evaluated.saturating_sub(32) * 2;
    let retry = r.retry_after().unwrap();
    assert!(
        retry >= owed,
        "{evaluated} guesses evaluated, retry after only {retry} s"
    );
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Login queue.

#[tokio::test]
async fn login_queue_overload_answers_503_and_health_stays_up() {
    let heavy = wsgate::config::HashParams {
        m_cost: 19456,
        t_cost: 2,
        p_cost: 1,
    };
    // One measured hash sets the budget: about three checks fit in the
    // queue, so thirty at once must overflow it.
    let measured = tokio::task::spawn_blocking(move || {
        wsgate::auth::password::hash_password(heavy, b"warm-up").unwrap();
        let t = std::time::Instant::now();
        wsgate::auth::password::hash_password(heavy, b"measure").unwrap();
        t.elapsed()
    });
    let measured = within("measure a hash", measured).await.unwrap();
    let budget = (measured * 3).max(std::time::Duration::from_millis(30));
    let gw = TestGateway::start_with(|c| {
        c.auth.hash_threads = 1;
        c.auth.hash_params = heavy;
        c.auth.login_queue_budget = budget;
    })
    .await;
    // The user's hash is heavy too, so every check costs the same.
    let phc = wsgate::auth::password::hash_password(heavy, b"s3cret").unwrap();
    within(
        "add user",
        gw.app
            .store
            .call(move |c| wsgate::store::users::create(c, "alice", &phc)),
    )
    .await
    .unwrap();

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let req = Req::new(gw.addr, "POST", "/auth").json(&creds("alice", "s3cret"));
        set.spawn(req.send());
    }
    // While checks are queued, health checks answer.
    within("a queued check", async {
        while gw.app.auth.hasher().depth() == 0 && set.len() == 30 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let h = gw.req("GET", "/healthz").send().await;
    assert_eq!(h.status, 200);
    assert_eq!(h.text(), "ok");

    let (mut ok, mut overloaded) = (0, 0);
    while let Some(r) = within("logins", set.join_next()).await {
        let r = r.unwrap();
        match r.status {
            200 => {
                assert!(r.session_cookie().is_some());
                ok += 1;
            }
            503 => {
                assert_eq!(r.error_code(), "overloaded");
                assert!(r.retry_after().is_some_and(|s| s >= 1), "{:?}", r.headers);
                assert!(r.session_cookie().is_none());
                overloaded += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert!(overloaded >= 1, "no login was refused ({ok} ok)");
    assert!(ok >= 1, "no login was admitted");
    // Every admitted check was answered, with a session.
    assert_eq!(gw.count_sessions().await, ok);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "wsgate_logins_total{outcome=\"ok\"}"),
        Some(ok as f64)
    );
    assert_eq!(
        metric(&m, "wsgate_logins_total{outcome=\"overloaded\"}"),
        Some(f64::from(overloaded))
    );
    assert!(metric(&m, "wsgate_login_queue_depth").is_some(), "{m}");
    // The queue drains completely (a thread lowers the depth just after it
    // sends its answer, so allow it that moment).
    within("the queue drains", async {
        while gw.app.auth.hasher().depth() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(gw.req("GET", "/healthz").send().await.status, 200);
    gw.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Other routes.

#[tokio::test]
async fn methods_paths_and_operator_routes() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;

    for (method, path, allow) in [
        ("GET", "/auth", "POST"),
        ("PUT", "/auth", "POST"),
        ("GET", "/logout", "POST"),
        ("DELETE", "/logout", "POST"),
        ("POST", "/me", "GET"),
        ("POST", "/healthz", "GET"),
        ("POST", "/readyz", "GET"),
        ("POST", "/metrics", "GET"),
    ] {
        let r = gw.req(method, path).send().await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(r.error_code(), "method_not_allowed");
    }
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/assets/nope.js"),
    ] {
        let r = gw.req(method, path).send().await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.error_code(), "not_found");
    }

    let h = gw.req("GET", "/healthz").send().await;
    assert_eq!(h.status, 200);
    assert_eq!(h.text(), "ok");
    assert_eq!(gw.req("GET", "/readyz").send().await.status, 200);

    let home = gw.req("GET", "/").send().await;
    assert_eq!(home.status, 200);
    assert!(
        home.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        home.text().to_ascii_lowercase().contains("<html"),
        "{}",
        home.text()
    );

    let before = gw.metrics().await;
    assert_eq!(
        metric(&before, "wsgate_logins_total{outcome=\"ok\"}"),
        Some(0.0)
    );
    gw.login("alice", "s3cret").await;
    let r = gw
        .req("POST", "/auth")
        .json(&creds("alice", "bad"))
        .send()
        .await;
    assert_eq!(r.status, 401);
    let r = gw.req("GET", "/metrics").send().await;
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = r.text();
    assert_eq!(
        metric(&m, "wsgate_logins_total{outcome=\"ok\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "wsgate_logins_total{outcome=\"invalid_credentials\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(metric(&m, "wsgate_login_queue_depth").is_some(), "{m}");
    assert!(
        metric(&m, "wsgate_password_hash_seconds_count").is_some(),
        "{m}"
    );
    // Both checks are observed (a hashing thread records its time just
    // after it sends the answer).
    within("hash times recorded", async {
        while gw.app.auth.hasher().histograms().1.count() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let m = gw.metrics().await;
    assert!(
        metric(&m, "wsgate_password_hash_seconds_count").unwrap() >= 2.0,
        "{m}"
    );
    assert!(
        m.contains("# TYPE wsgate_password_hash_seconds histogram"),
        "{m}"
    );
    assert!(metric(&m, "wsgate_store_busy_total").is_some(), "{m}");
    assert!(metric(&m, "wsgate_sessions").is_some(), "{m}");
    gw.stop().await.unwrap();
}

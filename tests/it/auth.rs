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

//! The SQLite store under load, contention and restarts: the session
//! contract of PROTOCOL.md section 3 on a real database file.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use wsgate::config::KeySource;

use crate::common::*;

fn creds(user: &str, password: &str) -> serde_json::Value {
    json!({"username": user, "password": password})
}

/// Opens the gateway's database file directly, as another process would.
fn open_direct(gw: &TestGateway) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(gw.db_path()).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

#[tokio::test]
async fn a_storm_of_200_logins_all_succeed() {
    const N: usize = 200;
    let gw = TestGateway::start().await;
    let phc = wsgate::auth::password::hash_password(TEST_HASH, b"storm-pass").unwrap();
    let (created, _) = within(
        "seed users",
        gw.app
            .store
            .call(move |c| wsgate::store::users::seed(c, "storm", N as u64, &phc)),
    )
    .await
    .unwrap();
    assert_eq!(created, N as u64);

    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let req =
            Req::new(gw.addr, "POST", "/auth").json(&creds(&format!("storm{i}"), "storm-pass"));
        set.spawn(async move { (i, req.send().await) });
    }
    let mut cookies = HashSet::new();
    let mut users = HashSet::new();
    while let Some(r) = within("storm", set.join_next()).await {
        let (i, r) = r.unwrap();
        assert_eq!(r.status, 200, "storm{i}: {}", r.text());
        assert_eq!(r.json()["user"]["username"], format!("storm{i}"));
        users.insert(r.json()["user"]["id"].as_i64().unwrap());
        cookies.insert(r.session_cookie().unwrap());
    }
    assert_eq!(users.len(), N);
    assert_eq!(cookies.len(), N, "every login got its own cookie");
    assert_eq!(gw.count_sessions().await, N as i64);
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "wsgate_store_busy_total"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "wsgate_store_errors_total"), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, "wsgate_logins_total{outcome=\"ok\"}"),
        Some(N as f64)
    );
    // Every one of those sessions works.
    let some: Vec<_> = cookies.iter().take(5).cloned().collect();
    for c in some {
        assert_eq!(gw.req("GET", "/me").cookie(&c).send().await.status, 200);
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_locked_database_gives_503_not_a_hang_and_recovers() {
    let gw = TestGateway::start_with(|c| {
        c.store.busy_timeout = Duration::from_millis(300);
    })
    .await;
    gw.add_user("alice", "s3cret").await;
    let before = gw.login("alice", "s3cret").await;
    let busy_before = metric(&gw.metrics().await, "wsgate_store_busy_total").unwrap();

    // Another connection takes the write lock and keeps it.
    let locker = open_direct(&gw);
    locker
        .execute_batch("BEGIN IMMEDIATE; UPDATE users SET updated_at = updated_at + 1;")
        .unwrap();

    let r = tokio::time::timeout(
        Duration::from_secs(10),
        gw.req("POST", "/auth")
            .json(&creds("alice", "s3cret"))
            .send(),
    )
    .await
    .expect("a login against a locked database answers within 10 s");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "unavailable");
    assert!(r.retry_after().is_some_and(|s| s >= 1), "{:?}", r.headers);
    assert!(r.session_cookie().is_none());
    assert!(
        !r.text().to_ascii_lowercase().contains("locked"),
        "{}",
        r.text()
    );

    // The process stays up, and readers are not blocked by a writer (WAL).
    let h = gw.req("GET", "/healthz").send().await;
    assert_eq!(h.status, 200);
    assert_eq!(gw.req("GET", "/readyz").send().await.status, 200);
    assert_eq!(
        gw.req("GET", "/me").cookie(&before).send().await.status,
        200
    );

    // A logout needs the write lock too: 503, never 500, nothing leaked.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        gw.req("POST", "/logout").cookie(&before).send(),
    )
    .await
    .expect("a logout against a locked database answers within 10 s");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "unavailable");
    assert!(r.retry_after().is_some_and(|s| s >= 1), "{:?}", r.headers);
    assert!(
        !r.text().to_ascii_lowercase().contains("locked"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().to_ascii_lowercase().contains("sqlite"),
        "{}",
        r.text()
    );

    let m = gw.metrics().await;
    let busy = metric(&m, "wsgate_store_busy_total").unwrap();
    assert!(busy >= busy_before + 2.0, "busy {busy_before} -> {busy}");
    assert_eq!(metric(&m, "wsgate_store_errors_total"), Some(0.0), "{m}");

    // The lock goes away: everything works again.
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    let r = gw
        .req("POST", "/auth")
        .json(&creds("alice", "s3cret"))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.session_cookie().unwrap();
    assert_eq!(gw.req("GET", "/me").cookie(&after).send().await.status, 200);
    // The refused logout left the old session in place; now it ends.
    assert_eq!(
        gw.req("GET", "/me").cookie(&before).send().await.status,
        200
    );
    assert_eq!(
        gw.req("POST", "/logout")
            .cookie(&before)
            .send()
            .await
            .status,
        204
    );
    assert_eq!(
        gw.req("GET", "/me").cookie(&before).send().await.status,
        401
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let plain = gw.login("alice", "s3cret").await;
    let r = gw
        .req("POST", "/auth")
        .json(&json!({"username": "alice", "password": "s3cret", "remember": true}))
        .send()
        .await;
    let remembered = r.session_cookie().unwrap();
    let me_before = gw.req("GET", "/me").cookie(&plain).send().await.json();

    let dir = gw.stop_keep_dir().await;
    let config = test_config(dir.path());
    let gw = TestGateway::start_in(dir, config).await;
    let me = gw.req("GET", "/me").cookie(&plain).send().await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json(), me_before);
    let me = gw.req("GET", "/me").cookie(&remembered).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["session"]["remember"], json!(true));
    // Logout still reaches the old session.
    assert_eq!(
        gw.req("POST", "/logout").cookie(&plain).send().await.status,
        204
    );
    assert_eq!(gw.req("GET", "/me").cookie(&plain).send().await.status, 401);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn sessions_survive_a_restart_with_the_key_file() {
    // The shipped default: the key lives in a file created on first start.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.key = KeySource::File(dir.path().join("secret.key"));
    let gw = TestGateway::start_in(dir, config.clone()).await;
    gw.add_user("alice", "s3cret").await;
    let cookie = gw.login("alice", "s3cret").await;
    let dir = gw.stop_keep_dir().await;
    assert!(dir.path().join("secret.key").exists());
    let gw = TestGateway::start_in(dir, config).await;
    assert_eq!(
        gw.req("GET", "/me").cookie(&cookie).send().await.status,
        200
    );
    gw.stop().await.unwrap();
}

fn key_id(cookie: &str) -> &str {
    cookie.split('.').next().unwrap()
}

#[tokio::test]
async fn key_rotation_keeps_old_cookies_until_the_old_key_is_dropped() {
    let key_a = vec![1u8; 32];
    let key_b = vec![2u8; 32];
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.key = KeySource::Bytes(key_a.clone());
    let gw = TestGateway::start_in(dir, config.clone()).await;
    gw.add_user("alice", "s3cret").await;
    let old = gw.login("alice", "s3cret").await;

    // B is current, A still verifies.
    let dir = gw.stop_keep_dir().await;
    config.auth.key = KeySource::Bytes(key_b.clone());
    config.auth.previous_keys = vec![KeySource::Bytes(key_a.clone())];
    let gw = TestGateway::start_in(dir, config.clone()).await;
    let me = gw.req("GET", "/me").cookie(&old).send().await;
    assert_eq!(me.status, 200, "{}", me.text());
    let new = gw.login("alice", "s3cret").await;
    assert_ne!(key_id(&new), key_id(&old), "new cookies are signed with B");
    assert_eq!(key_id(&new), gw.app.auth.keys().current_id());
    assert_eq!(gw.req("GET", "/me").cookie(&new).send().await.status, 200);

    // A dropped: its cookies stop working, B's keep working.
    let dir = gw.stop_keep_dir().await;
    config.auth.previous_keys = Vec::new();
    let gw = TestGateway::start_in(dir, config.clone()).await;
    let me = gw.req("GET", "/me").cookie(&old).send().await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "unauthenticated");
    assert_eq!(gw.req("GET", "/me").cookie(&new).send().await.status, 200);

    // A's cookie relabelled with B's key id does not pass either.
    let parts: Vec<&str> = old.split('.').collect();
    let relabelled = format!("{}.{}.{}", key_id(&new), parts[1], parts[2]);
    assert_eq!(
        gw.req("GET", "/me").cookie(&relabelled).send().await.status,
        401
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn wal_mode_schema_version_and_only_token_hashes_stored() {
    use base64::Engine;
    let gw = TestGateway::start().await;
    gw.add_user("alice", "s3cret").await;
    let cookie = gw.login("alice", "s3cret").await;
    let token_b64 = cookie.split('.').nth(1).unwrap().to_owned();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token_b64)
        .unwrap();
    assert!(token.len() >= 16, "at least 128 bits");

    let db = open_direct(&gw);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, wsgate::store::SCHEMA_VERSION);

    let hash: Vec<u8> = db
        .query_row("SELECT token_hash FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hash.len(), 32);
    assert_ne!(hash, token, "the token itself is not stored");
    assert_eq!(hash, gw.token_hash_of(&cookie).to_vec());

    // No column of any session row holds the cookie, its token or the token
    // bytes.
    let mut stmt = db.prepare("SELECT * FROM sessions").unwrap();
    let cols = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut seen = 0;
    while let Some(row) = rows.next().unwrap() {
        seen += 1;
        for i in 0..cols {
            let bytes: Vec<u8> = match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    t.to_vec()
                }
                _ => continue,
            };
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&cookie), "column {i} holds the cookie");
            assert!(!text.contains(&token_b64), "column {i} holds the token");
            assert!(
                !bytes.windows(token.len()).any(|w| w == &token[..]),
                "column {i} holds the raw token"
            );
        }
    }
    assert_eq!(seen, 1);
    drop(rows);
    drop(stmt);
    drop(db);

    // Nor does any byte of the database files.
    let mut files = vec![gw.db_path()];
    for ext in ["-wal", "-shm"] {
        let mut p = gw.db_path().into_os_string();
        p.push(ext);
        files.push(p.into());
    }
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        assert!(
            !bytes.windows(token.len()).any(|w| w == &token[..]),
            "{} holds the raw token",
            f.display()
        );
        assert!(
            !bytes
                .windows(token_b64.len())
                .any(|w| w == token_b64.as_bytes()),
            "{} holds the token text",
            f.display()
        );
    }
    // A value built from the stored hash does not log in.
    let from_db = gw.app.auth.keys().sign(&hash.clone().try_into().unwrap());
    assert_eq!(
        gw.req("GET", "/me").cookie(&from_db).send().await.status,
        401
    );
    gw.stop().await.unwrap();
}

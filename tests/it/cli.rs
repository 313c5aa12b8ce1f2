//! The `wsgate` command line, run as the real binary: `user …` against a
//! real SQLite file, alone and while a server runs on the same database;
//! `--help`; the environment variables.

use crate::process::{Gateway, Site, run, wsgate};

/// Lines of `user list` after the header.
fn listed(site: &Site) -> Vec<String> {
    let r = site.user(&["list"], None);
    r.assert_ok("user list");
    let mut lines = r.stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.contains("USERNAME"), "header: {:?}", r.stdout);
    lines.map(str::to_owned).collect()
}

/// The `user list` row of `name`.
fn row(site: &Site, name: &str) -> Option<String> {
    listed(site)
        .into_iter()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
}

#[tokio::test]
async fn user_add_then_login_on_a_server_over_the_same_db() {
    let site = Site::new();
    let r = site.user(&["add", "alice"], Some("correct horse\n"));
    r.assert_ok("user add alice");
    assert!(r.stdout.contains("alice"), "{r:#?}");

    let gw = site.serve(&[]);
    let cookie = gw.login("alice", "correct horse").await;
    let me = gw.req("GET", "/me").cookie(&cookie).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["username"], "alice");
    assert_eq!(gw.login_status("alice", "wrong horse").await, 401);
    gw.stop_with(libc::SIGTERM);
}

#[test]
fn global_db_flag_is_accepted_before_and_after_the_subcommand() {
    let site = Site::new();
    site.add_user("alice", "pw");
    let db = site.db.to_str().expect("utf-8 temp path");
    for args in [
        ["user", "list", "--db", db],
        ["user", "--db", db, "list"],
        ["--db", db, "user", "list"],
    ] {
        let mut c = site.cmd();
        c.args(args);
        let r = run(c, None);
        r.assert_ok(&format!("{args:?}"));
        assert!(r.stdout.contains("alice"), "{args:?}: {r:#?}");
    }
}

#[test]
fn duplicate_names_are_refused_ignoring_case() {
    let site = Site::new();
    site.add_user("alice", "pw1");
    for name in ["alice", "ALICE", "Alice"] {
        let r = site.user(&["add", name], Some("pw2\n"));
        r.assert_refused(&format!("user add {name}"));
        assert!(r.stderr.contains("exists"), "{name}: {r:#?}");
    }
    assert_eq!(listed(&site).len(), 1, "{:?}", listed(&site));
    assert!(row(&site, "alice").is_some());
}

#[test]
fn bad_names_are_refused() {
    let site = Site::new();
    let long = "a".repeat(33);
    for name in ["a b", "", long.as_str(), "ü", "al:ice", "a/b"] {
        site.user(&["add", name], Some("pw\n"))
            .assert_refused(&format!("user add {name:?}"));
    }
    // 32 characters is the longest accepted.
    site.add_user(&"a".repeat(32), "pw");
    assert_eq!(listed(&site).len(), 1, "{:?}", listed(&site));
    site.user(&["seed", "bad prefix", "3"], Some("pw\n"))
        .assert_refused("seed with a bad prefix");
    assert_eq!(listed(&site).len(), 1);
}

#[test]
fn unknown_users_are_refused() {
    let site = Site::new();
    site.add_user("alice", "pw");
    for cmd in ["passwd", "disable", "enable", "remove"] {
        let r = site.user(&[cmd, "nobody"], Some("new-pw\n"));
        r.assert_refused(&format!("user {cmd} nobody"));
        assert!(r.stderr.contains("nobody"), "{cmd}: {r:#?}");
    }
    let alice = row(&site, "alice").expect("alice untouched");
    assert!(alice.contains("active"), "{alice}");
}

#[tokio::test]
async fn empty_passwords_are_refused() {
    let site = Site::new();
    for stdin in ["\n", ""] {
        site.user(&["add", "alice"], Some(stdin))
            .assert_refused(&format!("user add with stdin {stdin:?}"));
    }
    assert!(listed(&site).is_empty(), "{:?}", listed(&site));
    site.user(&["seed", "load", "3"], Some("\n"))
        .assert_refused("seed with an empty password");
    assert!(listed(&site).is_empty());

    site.add_user("alice", "pw");
    site.user(&["passwd", "alice"], Some("\n"))
        .assert_refused("passwd with an empty password");
    let gw = site.serve(&[]);
    assert_eq!(gw.login_status("alice", "pw").await, 200, "password kept");
    gw.stop_with(libc::SIGTERM);
}

#[test]
fn user_list_shows_users_and_disabled_status() {
    let site = Site::new();
    site.add_user("alice", "pw");
    site.add_user("bob", "pw");
    site.user(&["disable", "bob"], None)
        .assert_ok("disable bob");
    let rows = listed(&site);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let alice = row(&site, "alice").unwrap();
    let bob = row(&site, "bob").unwrap();
    assert!(
        alice.contains("active") && !alice.contains("disabled"),
        "{alice}"
    );
    assert!(bob.contains("disabled"), "{bob}");
    site.user(&["enable", "bob"], None).assert_ok("enable bob");
    let bob = row(&site, "bob").unwrap();
    assert!(bob.contains("active") && !bob.contains("disabled"), "{bob}");
}

#[tokio::test]
async fn seed_creates_prefixed_users_and_resets_them_when_run_again() {
    let site = Site::new();
    site.user(&["seed", "load", "1000"], Some("load-pw\n"))
        .assert_ok("seed load 1000");
    assert_eq!(
        site.count("SELECT count(*) FROM users WHERE username LIKE 'load%'"),
        1000
    );
    assert_eq!(
        site.count("SELECT count(*) FROM users WHERE username IN ('load0', 'load999')"),
        2
    );
    assert_eq!(
        site.count("SELECT count(*) FROM users WHERE username = 'load1000'"),
        0
    );
    assert_eq!(listed(&site).len(), 1000);

    let gw = site.serve(&[]);
    assert!(gw.first_user.is_none());
    let cookie = gw.login("load999", "load-pw").await;
    assert_eq!(gw.me(&cookie).await, 200);
    assert_eq!(gw.login_status("load0", "load-pw").await, 200);

    // Seeding again (the server still running) resets, it does not fail.
    site.user(&["disable", "load5"], None)
        .assert_ok("disable load5");
    site.user(&["seed", "load", "1000"], Some("other-pw\n"))
        .assert_ok("seed again");
    assert_eq!(site.count("SELECT count(*) FROM users"), 1000);
    assert_eq!(gw.login_status("load999", "load-pw").await, 401);
    assert_eq!(gw.login_status("load999", "other-pw").await, 200);
    assert_eq!(
        gw.login_status("load5", "other-pw").await,
        200,
        "re-enabled"
    );
    gw.stop_with(libc::SIGTERM);
}

/// alice (two sessions) and bob (one) logged in on a running server.
async fn alice_and_bob() -> (Site, Gateway, [String; 2], String) {
    let site = Site::new();
    site.add_user("alice", "alice-pw");
    site.add_user("bob", "bob-pw");
    let gw = site.serve(&[]);
    let a1 = gw.login("alice", "alice-pw").await;
    let a2 = gw.login("alice", "alice-pw").await;
    let b = gw.login("bob", "bob-pw").await;
    for c in [&a1, &a2, &b] {
        assert_eq!(gw.me(c).await, 200);
    }
    (site, gw, [a1, a2], b)
}

#[tokio::test]
async fn passwd_on_the_command_line_revokes_a_running_servers_sessions() {
    let (site, gw, alice, bob) = alice_and_bob().await;
    site.user(&["passwd", "alice"], Some("new-pw\n"))
        .assert_ok("passwd alice");
    for c in &alice {
        assert_eq!(gw.me(c).await, 401, "alice's session outlived passwd");
    }
    assert_eq!(gw.me(&bob).await, 200, "bob's session is not alice's");
    assert_eq!(gw.login_status("alice", "alice-pw").await, 401);
    let fresh = gw.login("alice", "new-pw").await;
    assert_eq!(gw.me(&fresh).await, 200);
    gw.stop_with(libc::SIGTERM);
}

#[tokio::test]
async fn passwd_matches_the_name_ignoring_case() {
    let (site, gw, alice, _bob) = alice_and_bob().await;
    site.user(&["passwd", "ALICE"], Some("new-pw\n"))
        .assert_ok("passwd ALICE");
    assert_eq!(gw.me(&alice[0]).await, 401);
    assert_eq!(gw.login_status("alice", "new-pw").await, 200);
    gw.stop_with(libc::SIGTERM);
}

#[tokio::test]
async fn disable_and_enable_on_the_command_line_apply_to_a_running_server() {
    let (site, gw, alice, bob) = alice_and_bob().await;
    site.user(&["disable", "alice"], None)
        .assert_ok("disable alice");
    for c in &alice {
        assert_eq!(gw.me(c).await, 401, "alice's session outlived disable");
    }
    assert_eq!(gw.me(&bob).await, 200);
    assert_eq!(gw.login_status("alice", "alice-pw").await, 401);

    site.user(&["enable", "alice"], None)
        .assert_ok("enable alice");
    for c in &alice {
        assert_eq!(gw.me(c).await, 401, "enable does not revive sessions");
    }
    let fresh = gw.login("alice", "alice-pw").await;
    assert_eq!(gw.me(&fresh).await, 200);
    assert_eq!(gw.me(&bob).await, 200);
    gw.stop_with(libc::SIGTERM);
}

#[tokio::test]
async fn remove_on_the_command_line_revokes_and_refuses_login() {
    let (site, gw, alice, bob) = alice_and_bob().await;
    site.user(&["remove", "alice"], None)
        .assert_ok("remove alice");
    for c in &alice {
        assert_eq!(gw.me(c).await, 401, "alice's session outlived remove");
    }
    assert_eq!(gw.me(&bob).await, 200);
    assert_eq!(gw.login_status("alice", "alice-pw").await, 401);
    assert!(row(&site, "alice").is_none());
    assert_eq!(
        site.count("SELECT count(*) FROM sessions"),
        1,
        "only bob's session is left"
    );
    // The name is free again.
    site.add_user("alice", "second-pw");
    assert_eq!(gw.login_status("alice", "second-pw").await, 200);
    gw.stop_with(libc::SIGTERM);
}

#[test]
fn help_names_every_flag_and_env_var() {
    let site = Site::new();
    let flags = [
        "--listen",
        "--db",
        "--key-file",
        "--previous-key-file",
        "--public-origin",
        "--allowed-origins",
        "--trusted-proxies",
        "--data-dir",
        "--drain-timeout",
    ];
    let vars = ["WSGATE_LISTEN", "WSGATE_DB", "WSGATE_KEY_FILE"];
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let mut c = site.cmd();
        c.args(args);
        let r = run(c, None);
        r.assert_ok(&format!("{args:?}"));
        for want in flags.iter().chain(&vars) {
            assert!(
                r.stdout.contains(want),
                "{args:?} lacks {want}:\n{}",
                r.stdout
            );
        }
    }
}

#[tokio::test]
async fn environment_variables_replace_the_flags() {
    let site = Site::new();
    let mut add = site.cmd();
    add.args(["user", "add", "alice"])
        .env("WSGATE_DB", &site.db);
    run(add, Some("alice-pw\n")).assert_ok("user add with WSGATE_DB");
    assert!(site.db.is_file());

    let mut serve = site.cmd();
    serve
        .env("WSGATE_LISTEN", "127.0.0.1:0")
        .env("WSGATE_DB", &site.db)
        .env("WSGATE_KEY_FILE", &site.key);
    let gw = Gateway::spawn(serve);
    assert!(
        gw.first_user.is_none(),
        "WSGATE_DB was ignored: a fresh database got a first user"
    );
    assert_ne!(gw.addr.port(), 0);
    assert_ne!(gw.addr.port(), 8080, "WSGATE_LISTEN was ignored");
    assert!(site.key.is_file(), "WSGATE_KEY_FILE was used");
    assert!(
        !site.dir.path().join("wsgate-data").exists(),
        "the default data dir was used"
    );
    let cookie = gw.login("alice", "alice-pw").await;
    assert_eq!(gw.me(&cookie).await, 200);
    gw.stop_with(libc::SIGTERM);

    // The same with the `serve` subcommand spelled out.
    let mut serve = site.cmd();
    serve
        .arg("serve")
        .env("WSGATE_LISTEN", "127.0.0.1:0")
        .env("WSGATE_DB", &site.db)
        .env("WSGATE_KEY_FILE", &site.key);
    let gw = Gateway::spawn(serve);
    assert_eq!(gw.me(&cookie).await, 200);
    gw.stop_with(libc::SIGTERM);

    // And a `user` command while WSGATE_LISTEN (a serve setting) is set.
    let mut list = wsgate(site.dir.path());
    list.args(["user", "list"])
        .env("WSGATE_LISTEN", "127.0.0.1:0")
        .env("WSGATE_DB", &site.db);
    let r = run(list, None);
    r.assert_ok("user list with serve settings in the environment");
    assert!(r.stdout.contains("alice"), "{r:#?}");
}

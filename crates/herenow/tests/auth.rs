//! Identity end to end: real servers with AUTH set, tokens signed with HS256 and with the
//! test keys a local JWKS server publishes (rotation and outages included), origins,
//! per-address limits, admin endpoints and the development token route.

mod common;

use std::time::Duration;

use common::jwks::{at, claims, hs256, hs256_with, sign, sign_as, JwksServer, SECRET};
use common::{http_get, http_get_with, test_config_with, upgrade_status, TestClient, TestServer};
use herenow::auth::presence_id;
use herenow::protocol::ErrorCode;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

async fn server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--auth-secret", SECRET];
    args.extend_from_slice(extra);
    TestServer::start(test_config_with(&args)).await
}

/// Connect to `room`, send a protocol-2 hello with `token`, and fold until a roster or a
/// close.
async fn hello_with(s: &TestServer, room: &str, tab: &str, token: Option<&str>) -> TestClient {
    let mut c = TestClient::connect(&s.ws_url(room)).await;
    c.id = tab.into();
    let mut hello = json!({"type": "hello", "id": tab, "proto": 2, "user": {"name": "Hint"}});
    if let Some(t) = token {
        hello["token"] = json!(t);
    }
    c.send(hello).await;
    c.wait("a roster or a close", |c| {
        c.presence.is_some() || c.closed.is_some()
    })
    .await;
    c
}

/// The refusal a hello with `token` gets: (error code, close code).
async fn refusal(s: &TestServer, room: &str, token: Option<&str>) -> (ErrorCode, u16) {
    let mut c = hello_with(s, room, "tab-x", token).await;
    assert!(c.presence.is_none(), "refused hellos get no roster");
    let close = c.wait_closed().await;
    (c.errors[0], close)
}

#[tokio::test]
async fn required_mode_refuses_every_bad_token_with_its_code() {
    let s = server(&[
        "--auth",
        "required",
        "--auth-issuer",
        "https://id.test",
        "--auth-audience",
        "herenow",
    ])
    .await;
    let good = |extra: Value| {
        let mut c = claims("ada", json!({"iss": "https://id.test", "aud": "herenow"}));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let unauthorized = (ErrorCode::InvalidToken, 4401);
    assert_eq!(refusal(&s, "lobby", None).await, unauthorized);
    assert_eq!(
        refusal(&s, "lobby", Some("not.a.token")).await,
        unauthorized
    );
    let forged = hs256_with("some-other-secret-that-is-long-enough", &good(json!({})));
    assert_eq!(refusal(&s, "lobby", Some(&forged)).await, unauthorized);
    let wrong_iss = hs256(&good(json!({"iss": "https://evil.test"})));
    assert_eq!(refusal(&s, "lobby", Some(&wrong_iss)).await, unauthorized);
    let wrong_aud = hs256(&good(json!({"aud": "someone-else"})));
    assert_eq!(refusal(&s, "lobby", Some(&wrong_aud)).await, unauthorized);
    let expired = hs256(&good(json!({"exp": at(-120)})));
    assert_eq!(
        refusal(&s, "lobby", Some(&expired)).await,
        (ErrorCode::TokenExpired, 4401)
    );
    let design_only = hs256(&good(json!({"rooms": ["design-*"]})));
    assert_eq!(
        refusal(&s, "lobby", Some(&design_only)).await,
        (ErrorCode::Forbidden, 4403)
    );
    let huge = "a".repeat(3000) + "." + &"b".repeat(500) + ".c";
    assert_eq!(refusal(&s, "lobby", Some(&huge)).await, unauthorized);

    // And the good one gets in, into the rooms its patterns allow.
    let c = hello_with(&s, "design-review", "tab-1", Some(&design_only)).await;
    assert_eq!(
        c.presence.as_ref().unwrap().self_id.as_deref(),
        Some(&*presence_id("ada"))
    );
}

#[tokio::test]
async fn a_verified_user_is_one_member_across_devices_shown_as_the_token_says() {
    let s = server(&["--auth", "required"]).await;
    let token = hs256(&claims(
        "ada@example.com",
        json!({"name": "Ada L.", "color": "#aa3300"}),
    ));
    let id = presence_id("ada@example.com");
    let mut watcher = hello_with(
        &s,
        "room",
        "watcher-tab",
        Some(&hs256(&claims("w", json!({})))),
    )
    .await;
    let laptop = hello_with(&s, "room", "laptop-tab", Some(&token)).await;
    let mut phone = hello_with(&s, "room", "phone-tab", Some(&token)).await;
    watcher
        .wait("ada on two devices", |c| {
            c.user(&id).is_some_and(|u| u.tabs == 2)
        })
        .await;
    assert_eq!(watcher.view.users.len(), 2, "one member for two devices");
    let ada = watcher.user(&id).unwrap();
    assert_eq!(
        ada.hints.name.as_deref(),
        Some("Ada L."),
        "claims replace the hint"
    );
    assert_eq!(ada.hints.color.as_deref(), Some("#aa3300"));
    // A state update's hints do not override the verified display.
    phone
        .send(json!({"type": "state", "state": {"s": 1}, "user": {"name": "Impostor"}}))
        .await;
    watcher
        .wait("state", |c| {
            c.user(&id).is_some_and(|u| u.state.get() == r#"{"s":1}"#)
        })
        .await;
    assert_eq!(
        watcher.user(&id).unwrap().hints.name.as_deref(),
        Some("Ada L.")
    );
    drop(laptop);
    phone.close(1000).await;
    watcher.wait("ada gone", |c| c.user(&id).is_none()).await;
}

#[tokio::test]
async fn the_raw_sub_never_reaches_other_clients() {
    let s = server(&["--auth", "required"]).await;
    let sub = "auth0|secret-user-42";
    let mut watcher = hello_with(&s, "room", "w", Some(&hs256(&claims("w", json!({}))))).await;
    let _ada = hello_with(&s, "room", "t", Some(&hs256(&claims(sub, json!({}))))).await;
    watcher.wait("two", |c| c.view.users.len() == 2).await;
    let everything = format!("{:?} {:?}", watcher.presence, watcher.diffs);
    assert!(!everything.contains("secret-user-42"), "{everything}");
}

#[tokio::test]
async fn a_token_may_come_on_the_url() {
    let s = server(&["--auth", "required"]).await;
    let token = hs256(&claims("ada", json!({})));
    let mut c = TestClient::connect(&format!("{}?token={token}", s.ws_url("lobby"))).await;
    c.hello("tab-1", 2).await;
    c.wait("roster", |c| c.presence.is_some()).await;
    assert_eq!(
        c.presence.unwrap().self_id.as_deref(),
        Some(&*presence_id("ada"))
    );
    // The hello's own token wins over the URL's.
    let bob = hs256(&claims("bob", json!({})));
    let mut c = TestClient::connect(&format!("{}?token={token}", s.ws_url("lobby"))).await;
    c.send(json!({"type": "hello", "id": "tab-2", "proto": 2, "token": bob}))
        .await;
    c.wait("roster", |c| c.presence.is_some()).await;
    assert_eq!(
        c.presence.unwrap().self_id.as_deref(),
        Some(&*presence_id("bob"))
    );
}

#[tokio::test]
async fn optional_mode_has_verified_and_anonymous_users_side_by_side() {
    let s = server(&["--auth", "optional"]).await;
    let mut anon = hello_with(&s, "room", "anon-tab", None).await;
    let ada = hello_with(&s, "room", "t", Some(&hs256(&claims("ada", json!({}))))).await;
    anon.wait("both", |c| c.view.users.len() == 2).await;
    assert!(anon.user("anon-tab").is_some());
    assert!(ada.presence.is_some());
    // Nobody may pose as a verified user: u_ ids are refused (the socket stays open).
    let mut poser = TestClient::connect(&s.ws_url("room")).await;
    poser.hello(&presence_id("ada"), 2).await;
    poser.wait("refusal", |c| !c.errors.is_empty()).await;
    assert_eq!(poser.errors, [ErrorCode::InvalidId]);
    poser.hello("honest-tab", 2).await;
    poser.wait("roster", |c| c.presence.is_some()).await;
    // A bad token is refused, not downgraded to anonymous.
    assert_eq!(
        refusal(&s, "room", Some("x.y.z")).await,
        (ErrorCode::InvalidToken, 4401)
    );
}

#[tokio::test]
async fn off_mode_refuses_tokens_rather_than_trusting_them() {
    let s = TestServer::start(test_config_with(&[])).await;
    let mut c = TestClient::connect(&s.ws_url("lobby")).await;
    let token = hs256(&claims("ada", json!({})));
    c.send(json!({"type": "hello", "id": "plain-tab", "proto": 2, "token": token}))
        .await;
    c.wait("refusal", |c| !c.errors.is_empty()).await;
    assert_eq!(c.errors, [ErrorCode::InvalidToken]);
    // As before tokens existed: not fatal, the hello without it counts.
    c.hello("plain-tab", 2).await;
    c.wait("roster", |c| c.presence.is_some()).await;
    assert!(c.closed.is_none());
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_socket_and_an_expired_one_ends_it() {
    let s = server(&["--auth", "required", "--auth-leeway-secs", "0"]).await;
    let short = |sub: &str, secs: i64| hs256(&json!({"sub": sub, "exp": at(secs), "name": "Ada"}));
    let mut watcher = hello_with(&s, "room", "w", Some(&hs256(&claims("w", json!({}))))).await;
    let mut kept = hello_with(&s, "room", "t1", Some(&short("ada", 2))).await;
    let mut ended = hello_with(&s, "room", "t2", Some(&short("bob", 2))).await;
    // Refreshes that fail are answered and change nothing: another user, garbage.
    kept.send(json!({"type": "auth", "token": short("mallory", 60)}))
        .await;
    kept.send(json!({"type": "auth", "token": "garbage"})).await;
    kept.wait("two refusals", |c| c.errors.len() == 2).await;
    assert_eq!(
        kept.errors,
        [ErrorCode::InvalidToken, ErrorCode::InvalidToken]
    );
    // A good refresh, with a new display name that everyone sees.
    kept.send(json!({"type": "auth", "token": hs256(&json!({"sub": "ada", "exp": at(60), "name": "Ada 2"}))}))
        .await;
    let ada = presence_id("ada");
    watcher
        .wait("new name", |c| {
            c.user(&ada)
                .is_some_and(|u| u.hints.name.as_deref() == Some("Ada 2"))
        })
        .await;
    // Keep reading `kept` meanwhile: the client library answers the server's pings.
    let bob = presence_id("bob");
    let (code, (), ()) = tokio::join!(
        ended.wait_closed(),
        kept.settle(Duration::from_millis(3000)),
        watcher.wait("bob left at expiry", |c| c.user(&bob).is_none()),
    );
    assert_eq!(code, 4401);
    assert_eq!(ended.errors, [ErrorCode::TokenExpired]);
    assert!(
        kept.closed.is_none(),
        "the refreshed socket stays: {:?}",
        kept.closed
    );
    assert!(watcher.user(&ada).is_some());
}

#[tokio::test]
async fn a_refresh_that_drops_the_room_ends_the_socket_with_4403() {
    let s = server(&["--auth", "required"]).await;
    let mut c = hello_with(&s, "room", "t", Some(&hs256(&claims("ada", json!({}))))).await;
    c.send(json!({"type": "auth", "token": hs256(&claims("ada", json!({"rooms": ["other"]})))}))
        .await;
    assert_eq!(c.wait_closed().await, 4403);
    assert_eq!(c.errors, [ErrorCode::Forbidden]);
}

#[tokio::test]
async fn public_key_tokens_from_a_jwks_with_rotation_and_outages() {
    let jwks = JwksServer::start(&["rsa1", "ec1", "ed1"]).await;
    let s = TestServer::start(test_config_with(&[
        "--auth",
        "required",
        "--auth-jwks-url",
        &jwks.url(),
        "--auth-jwks-refresh-ms",
        "1000",
    ]))
    .await;
    for key in ["rsa1", "ec1", "ed1"] {
        let sub = format!("user-{key}");
        let c = hello_with(&s, "lobby", key, Some(&sign(key, &claims(&sub, json!({}))))).await;
        assert_eq!(
            c.presence.as_ref().map(|p| p.self_id.clone()),
            Some(Some(presence_id(&sub))),
            "{key}"
        );
    }
    // A key without kid in the token: every key of its algorithm is tried.
    let no_kid = sign_as("ec1", None, Algorithm::ES256, &claims("nokid", json!({})));
    assert!(hello_with(&s, "lobby", "nk", Some(&no_kid))
        .await
        .presence
        .is_some());
    // Algorithm confusion: HS256 "signed" with the RSA public key as the secret, and an
    // RS256 header on the EC key's kid, are refused.
    let confused = hs256_with(
        &common::jwks::jwk("rsa1")["n"].to_string(),
        &claims("x", json!({})),
    );
    assert_eq!(
        refusal(&s, "lobby", Some(&confused)).await,
        (ErrorCode::InvalidToken, 4401)
    );
    let wrong_alg = sign_as(
        "rsa1",
        Some("ec1"),
        Algorithm::RS256,
        &claims("x", json!({})),
    );
    assert_eq!(
        refusal(&s, "lobby", Some(&wrong_alg)).await,
        (ErrorCode::InvalidToken, 4401)
    );

    // Rotation: rsa2 appears; its first token makes the server refetch, and it is in.
    jwks.publish(&["rsa2", "ec1", "ed1"]);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let rotated = sign("rsa2", &claims("rotated", json!({})));
    assert!(hello_with(&s, "lobby", "r2", Some(&rotated))
        .await
        .presence
        .is_some());

    // Unknown kids refetch at most once per AUTH_JWKS_REFRESH_MS, however many arrive.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let before = jwks.fetches();
    let started = std::time::Instant::now();
    for i in 0..20 {
        let bogus = sign_as(
            "rsa1",
            Some(&format!("made-up-{i}")),
            Algorithm::RS256,
            &claims("x", json!({})),
        );
        assert_eq!(
            refusal(&s, "lobby", Some(&bogus)).await.0,
            ErrorCode::InvalidToken
        );
    }
    let during = jwks.fetches() - before;
    let intervals = started.elapsed().as_millis() as usize / 1000 + 1;
    assert!(
        (1..=intervals).contains(&during),
        "{during} fetches for 20 unknown kids in {:?}",
        started.elapsed()
    );

    // The JWKS endpoint goes down: the last good keys keep serving.
    jwks.set_down(true);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let bogus = sign_as(
        "rsa1",
        Some("made-up-again"),
        Algorithm::RS256,
        &claims("x", json!({})),
    );
    assert_eq!(
        refusal(&s, "lobby", Some(&bogus)).await.0,
        ErrorCode::InvalidToken
    );
    let still = sign("ed1", &claims("outage", json!({})));
    assert!(hello_with(&s, "lobby", "o", Some(&still))
        .await
        .presence
        .is_some());
    // The retired key rsa1 no longer verifies.
    let retired = sign("rsa1", &claims("old", json!({})));
    assert_eq!(
        refusal(&s, "lobby", Some(&retired)).await,
        (ErrorCode::InvalidToken, 4401)
    );
}

#[tokio::test]
async fn origins_are_checked_before_the_upgrade() {
    let s = server(&["--auth", "optional"]).await;
    let path = "/server/ws/lobby";
    let host = s.addr.to_string();
    assert_eq!(
        upgrade_status(s.addr, path, &[("Origin", "https://evil.example")]).await,
        403
    );
    let own = format!("http://{host}");
    assert_eq!(
        upgrade_status(s.addr, path, &[("Host", &host), ("Origin", &own)]).await,
        101
    );
    assert_eq!(
        upgrade_status(s.addr, path, &[]).await,
        101,
        "no Origin: not a browser"
    );
    let (_, metrics) = http_get(s.addr, "/server/metrics").await;
    assert!(
        metrics.contains("herenow_refused_upgrades_total{reason=\"origin\"} 1"),
        "{metrics}"
    );

    let listed = server(&[
        "--auth",
        "optional",
        "--allowed-origins",
        "https://app.example,https://*.preview.example",
    ])
    .await;
    for (origin, status) in [
        ("https://app.example", 101),
        ("https://pr-7.preview.example", 101),
        ("https://evil.example", 403),
        ("http://app.example", 403),
    ] {
        assert_eq!(
            upgrade_status(listed.addr, path, &[("Origin", origin)]).await,
            status,
            "{origin}"
        );
    }
    // AUTH=off: any origin, as before.
    let open = TestServer::start(test_config_with(&[])).await;
    assert_eq!(
        upgrade_status(open.addr, path, &[("Origin", "https://evil.example")]).await,
        101
    );
}

#[tokio::test]
async fn per_address_limits_answer_429_and_count() {
    let s = server(&[
        "--auth",
        "optional",
        "--max-sockets-per-ip",
        "2",
        "--handshakes-per-ip-per-sec",
        "1000",
    ])
    .await;
    let url = s.ws_url("lobby");
    let a = TestClient::connect_with(&url, &[]).await.unwrap();
    let b = TestClient::connect_with(&url, &[]).await.unwrap();
    assert_eq!(TestClient::connect_with(&url, &[]).await.err(), Some(429));
    drop(a);
    // The closed socket's place comes back once its task has ended.
    let mut again = None;
    for _ in 0..50 {
        match TestClient::connect_with(&url, &[]).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "a closed socket frees its place");
    drop(b);
    let (_, metrics) = http_get(s.addr, "/server/metrics").await;
    assert!(
        !metrics.contains("herenow_refused_upgrades_total{reason=\"sockets_per_ip\"} 0"),
        "{metrics}"
    );

    // Handshakes: a burst of twice the rate, then 429.
    let h = server(&["--auth", "optional", "--handshakes-per-ip-per-sec", "2"]).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(upgrade_status(h.addr, "/server/ws/lobby", &[]).await);
        }
        v
    };
    assert_eq!(&statuses[..4], [101; 4]);
    assert!(statuses[4..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let s = server(&[
        "--auth",
        "optional",
        "--max-sockets-per-ip",
        "1",
        "--trusted-proxies",
        "127.0.0.0/8",
    ])
    .await;
    let url = s.ws_url("lobby");
    let _a = TestClient::connect_with(&url, &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .unwrap();
    let _b = TestClient::connect_with(&url, &[("X-Forwarded-For", "203.0.113.2")])
        .await
        .unwrap();
    // A spoofed left-most hop does not make a new client: the proxy's hop counts.
    let spoof =
        TestClient::connect_with(&url, &[("X-Forwarded-For", "6.6.6.6, 203.0.113.1")]).await;
    assert_eq!(spoof.err(), Some(429));
    // Without a trusted proxy, X-Forwarded-For is ignored: everyone is 127.0.0.1.
    let direct = server(&["--auth", "optional", "--max-sockets-per-ip", "1"]).await;
    let url = direct.ws_url("lobby");
    let _c = TestClient::connect_with(&url, &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .unwrap();
    assert_eq!(
        TestClient::connect_with(&url, &[("X-Forwarded-For", "203.0.113.2")])
            .await
            .err(),
        Some(429)
    );
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let admin = "admin-token-0123456789";
    let s = server(&["--auth", "optional", "--admin-token", admin]).await;
    let bearer = format!("Bearer {admin}");
    for path in ["/server/metrics", "/server/rooms/lobby"] {
        assert_eq!(http_get(s.addr, path).await.0, 401, "{path}");
        assert_eq!(
            http_get_with(s.addr, path, &[("Authorization", "Bearer nope")])
                .await
                .0,
            401
        );
        assert_eq!(
            http_get_with(s.addr, path, &[("Authorization", &bearer)])
                .await
                .0,
            200,
            "{path}"
        );
    }
    // AUTH=required without ADMIN_TOKEN: closed to everyone.
    let closed = server(&["--auth", "required"]).await;
    assert_eq!(http_get(closed.addr, "/server/metrics").await.0, 401);
    assert_eq!(http_get(closed.addr, "/server/rooms/lobby").await.0, 401);
    // AUTH=off without ADMIN_TOKEN: open, as before.
    let open = TestServer::start(test_config_with(&[])).await;
    assert_eq!(http_get(open.addr, "/server/metrics").await.0, 200);
}

#[tokio::test]
async fn metrics_addr_moves_metrics_to_their_own_listener() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let s = server(&["--auth", "required", "--metrics-addr", &addr]).await;
    assert_eq!(http_get(s.addr, "/server/metrics").await.0, 404);
    let metrics_addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut got = (0, String::new());
    for _ in 0..50 {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(metrics_addr),
        )
        .await
        {
            got = http_get(metrics_addr, "/metrics").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.0, 200);
    assert!(got.1.contains("herenow_sockets"));
}

#[tokio::test]
async fn the_dev_token_route_signs_in_and_is_off_by_default() {
    let off = server(&["--auth", "optional"]).await;
    assert_eq!(
        http_get(off.addr, "/server/dev/token?name=Ada").await.0,
        404
    );
    let s = server(&["--auth", "optional", "--dev-tokens"]).await;
    let (status, body) = http_get(s.addr, "/server/dev/token?name=Ada%20Lovelace").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["id"], json!(&*presence_id("dev:ada-lovelace")));
    let c = hello_with(&s, "lobby", "t", Some(token)).await;
    let me = c.presence.as_ref().unwrap().self_id.clone().unwrap();
    assert_eq!(
        c.user(&me).unwrap().hints.name.as_deref(),
        Some("Ada Lovelace")
    );
    assert_eq!(http_get(s.addr, "/server/dev/token").await.0, 400);
    assert_eq!(
        http_get(s.addr, "/server/dev/token?name=A&role=admin")
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn herenow_token_prints_a_token_the_server_accepts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herenow"))
        .args([
            "token", "--sub", "ada", "--name", "Ada", "--rooms", "design-*", "--ttl", "1h",
        ])
        .env("AUTH_SECRET", SECRET)
        .env("HERENOW_DOTENV", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let s = server(&["--auth", "required"]).await;
    let c = hello_with(&s, "design-review", "t", Some(&token)).await;
    assert_eq!(
        c.presence.unwrap().self_id.as_deref(),
        Some(&*presence_id("ada"))
    );
    assert_eq!(
        refusal(&s, "lobby", Some(&token)).await,
        (ErrorCode::Forbidden, 4403)
    );
    // Without a secret it says what is missing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herenow"))
        .args(["token", "--sub", "ada"])
        .env_remove("AUTH_SECRET")
        .env("HERENOW_DOTENV", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTH_SECRET"));
}

#[tokio::test]
async fn a_viewer_sees_the_room_is_in_nobodys_roster_and_may_not_send() {
    let s = server(&["--auth", "required", "--max-room-members", "2"]).await;
    let member = |sub: &str| hs256(&claims(sub, json!({})));
    let mut ada = hello_with(&s, "room", "a", Some(&member("ada"))).await;
    let viewer_token = hs256(&claims("boss", json!({"role": "viewer"})));
    let mut viewer = hello_with(&s, "room", "v", Some(&viewer_token)).await;
    // The room is at its limit of 2 with ada and bob: the viewer did not count.
    let mut bob = hello_with(&s, "room", "b", Some(&member("bob"))).await;
    assert!(
        bob.presence.is_some(),
        "a viewer does not count toward MAX_ROOM_MEMBERS"
    );
    let (ada_id, bob_id, boss) = (presence_id("ada"), presence_id("bob"), presence_id("boss"));
    viewer.wait("sees both", |c| c.view.users.len() == 2).await;
    assert!(viewer.user(&ada_id).is_some() && viewer.user(&bob_id).is_some());
    // It receives what happens in the room, events included.
    ada.send(json!({"type": "state", "state": {"s": 1}})).await;
    ada.send(json!({"type": "event", "event": "wave", "data": {}}))
        .await;
    viewer
        .wait("state and event", |c| {
            c.user(&ada_id)
                .is_some_and(|u| u.state.get() == r#"{"s":1}"#)
                && !c.events.is_empty()
        })
        .await;
    // But it may not send state, events or typing; the socket stays open.
    viewer
        .send(json!({"type": "state", "state": {"s": 2}}))
        .await;
    viewer
        .send(json!({"type": "event", "event": "wave", "data": {}}))
        .await;
    viewer
        .send(json!({"type": "event", "event": "typing", "data": {"typing": true}}))
        .await;
    viewer.wait("three refusals", |c| c.errors.len() == 3).await;
    assert_eq!(viewer.errors, [ErrorCode::Forbidden; 3]);
    assert!(viewer.closed.is_none());
    bob.settle(Duration::from_millis(300)).await;
    assert!(
        bob.user(&boss).is_none() && bob.view.users.len() == 2,
        "nobody's roster shows the viewer"
    );
    assert!(bob.events.iter().all(|e| e.from != boss));
    ada.settle(Duration::from_millis(50)).await;
    assert!(ada.user(&boss).is_none());
    // A third member is refused: the room is full.
    assert_eq!(
        refusal(&s, "room", Some(&member("carol"))).await,
        (ErrorCode::RoomFull, 1013)
    );
}

#[tokio::test]
async fn users_carry_verified_with_auth_on_and_nothing_with_auth_off() {
    let s = server(&["--auth", "optional"]).await;
    let mut anon = hello_with(&s, "room", "anon-tab", None).await;
    let _ada = hello_with(&s, "room", "t", Some(&hs256(&claims("ada", json!({}))))).await;
    let ada = presence_id("ada");
    anon.wait("both", |c| c.user(&ada).is_some()).await;
    assert_eq!(anon.user(&ada).unwrap().verified, Some(true));
    assert_eq!(anon.user("anon-tab").unwrap().verified, Some(false));
    let off = TestServer::start(test_config_with(&[])).await;
    let c = hello_with(&off, "room", "plain", None).await;
    assert_eq!(c.user("plain").unwrap().verified, None);
}

#[tokio::test]
async fn a_verified_tab_that_reloads_within_grace_is_not_seen_leaving() {
    let s = server(&["--auth", "required"]).await;
    let token = hs256(&claims("ada", json!({})));
    let mut watcher = hello_with(&s, "room", "w", Some(&hs256(&claims("w", json!({}))))).await;
    let tab = hello_with(&s, "room", "laptop-tab", Some(&token)).await;
    let ada = presence_id("ada");
    watcher.wait("ada", |c| c.user(&ada).is_some()).await;
    let version = watcher.version();
    tab.drop_connection();
    let _back = hello_with(&s, "room", "laptop-tab", Some(&token)).await;
    watcher.settle(Duration::from_millis(600)).await;
    assert!(watcher.user(&ada).is_some_and(|u| u.tabs == 1));
    assert!(
        watcher
            .diffs
            .iter()
            .all(|d| !d.left.iter().any(|l| **l == *ada)),
        "no leave was shown (version {version} -> {})",
        watcher.version()
    );
}

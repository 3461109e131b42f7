//! The server end to end: real sockets against a server bound on port 0 (memory store).

mod common;

use std::time::Duration;

use common::{http_get, test_config, TestClient, TestServer};
use herenow::protocol::ErrorCode;
use serde_json::{json, Value};

async fn server() -> TestServer {
    TestServer::start(test_config()).await
}

#[tokio::test]
async fn rooms_are_isolated_and_joins_and_leaves_reach_everyone() {
    let s = server().await;
    let mut a = TestClient::join(&s.ws_url("alpha"), "a", 1).await;
    let mut b = TestClient::join(&s.ws_url("alpha"), "b", 2).await;
    let mut c = TestClient::join(&s.ws_url("beta"), "c", 1).await;
    a.wait("b joined", |x| x.has(&["a", "b"])).await;
    b.wait("both", |x| x.has(&["a", "b"])).await;
    assert_eq!(b.presence.as_ref().unwrap().self_id.as_deref(), Some("b"));
    c.settle(Duration::from_millis(200)).await;
    assert!(c.has(&["c"]), "beta sees only itself: {:?}", c.members());
    // A clean leave (1000) is seen at once, with no grace wait.
    let started = std::time::Instant::now();
    a.close(1000).await;
    b.wait("a left", |x| x.has(&["b"])).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "1000 leaves without the grace window"
    );
    assert!(c.has(&["c"]));
}

#[tokio::test]
async fn invalid_room_ids_fall_back_to_lobby_and_the_v1_template_client_works() {
    let s = server().await;
    // The reference template's exact frames (fixtures/protocol/v1).
    let hello = std::fs::read_to_string(fixture("v1/client.hello.json")).unwrap();
    let ping = std::fs::read_to_string(fixture("v1/client.ping.json")).unwrap();
    let mut t = TestClient::connect(&s.ws_url("Not_A_Room")).await;
    t.send_text(hello.trim().to_string()).await;
    t.wait("roster", |x| x.presence.is_some()).await;
    let p = t.presence.as_ref().unwrap();
    assert_eq!(p.room_id.as_str(), "lobby");
    assert_eq!((p.count, p.members.len()), (1, 1));
    assert!(
        p.users.is_none() && p.self_id.is_none(),
        "protocol 1 gets no users/self"
    );
    t.send_text(ping.trim().to_string()).await;
    // Another client in lobby (through the wildcard form) is seen by the template client.
    let _o = TestClient::join(&format!("ws://{}/server/ws/a/b/c", s.addr), "other", 1).await;
    t.wait("other", |x| x.has(&["k3f9a2", "other"])).await;
    t.settle(Duration::from_millis(200)).await;
    assert_eq!(t.pongs, 0, "protocol 1 never receives pong");
    assert!(t.diffs.is_empty() && t.errors.is_empty());
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/protocol")
        .join(name)
}

#[tokio::test]
async fn three_tabs_of_one_id_are_one_member() {
    let s = server().await;
    let url = s.ws_url("tabs");
    let mut watcher = TestClient::join(&url, "w", 2).await;
    let t1 = TestClient::join(&url, "ada", 2).await;
    let t2 = TestClient::join(&url, "ada", 2).await;
    let mut t3 = TestClient::join(&url, "ada", 2).await;
    watcher
        .wait("ada x3", |x| x.user("ada").is_some_and(|u| u.tabs == 3))
        .await;
    assert_eq!(watcher.view.users.len(), 2);
    t3.wait("tabs in own view", |x| {
        x.user("ada").is_some_and(|u| u.tabs == 3)
    })
    .await;
    t1.close(1000).await;
    t2.close(1000).await;
    watcher
        .wait("ada x1", |x| x.user("ada").is_some_and(|u| u.tabs == 1))
        .await;
    assert!(
        watcher.has(&["w", "ada"]),
        "still a member while one tab is open"
    );
    t3.close(1000).await;
    watcher.wait("ada gone", |x| x.has(&["w"])).await;
}

#[tokio::test]
async fn a_reconnect_inside_the_grace_window_is_invisible() {
    let s = server().await;
    let url = s.ws_url("grace");
    let mut w = TestClient::join(&url, "w", 2).await;
    let mut w1 = TestClient::join(&url, "w1", 1).await;
    let r = TestClient::join(&url, "reloader", 2).await;
    w.wait("reloader", |x| x.has(&["w", "w1", "reloader"]))
        .await;
    w1.wait("reloader", |x| x.has(&["w", "w1", "reloader"]))
        .await;
    let (version, diffs, v1_rosters) = (w.version(), w.diffs.len(), w1.snapshots);
    // A reload: the socket drops without a clean close and comes back at once.
    r.drop_connection();
    let r = TestClient::join(&url, "reloader", 2).await;
    assert!(r.has(&["w", "w1", "reloader"]));
    w.settle(Duration::from_millis(600)).await;
    w1.settle(Duration::from_millis(10)).await;
    assert_eq!(
        w.diffs.len(),
        diffs,
        "no leave/join diff: {:?}",
        &w.diffs[diffs..]
    );
    assert_eq!(w.version(), version, "no version change");
    assert_eq!(
        w1.snapshots, v1_rosters,
        "protocol 1 sees no roster change either"
    );
    // A socket that goes for good leaves once the window has passed.
    r.drop_connection();
    let started = std::time::Instant::now();
    w.wait("reloader left", |x| x.has(&["w", "w1"])).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "left only after the grace window"
    );
}

#[tokio::test]
async fn a_client_that_vanishes_without_a_close_is_pruned() {
    let s = server().await;
    let url = s.ws_url("stale");
    let mut w = TestClient::join(&url, "w", 1).await;
    let ghost = TestClient::join(&url, "ghost", 1).await;
    w.wait("ghost", |x| x.has(&["w", "ghost"])).await;
    // The ghost's TCP connection stays open but nothing comes from it, not even pongs.
    ghost.vanish();
    // The watcher keeps answering pings (its reads do), so only the ghost goes stale.
    w.wait("ghost pruned", |x| x.has(&["w"])).await;
}

#[tokio::test]
async fn diffs_reproduce_every_snapshot_under_churn() {
    let s = server().await;
    let url = s.ws_url("churn");
    let mut observer = TestClient::join(&url, "observer", 2).await;
    let mut clients = Vec::new();
    for round in 0..4 {
        for i in 0..12 {
            clients.push(
                TestClient::join(
                    &url,
                    &format!("c{round}-{i}"),
                    if i % 2 == 0 { 1 } else { 2 },
                )
                .await,
            );
        }
        for c in clients.iter_mut().step_by(3) {
            c.send(json!({"type": "state", "state": {"round": round}}))
                .await;
        }
        for _ in 0..5 {
            let c = clients.remove(0);
            c.close(1000).await;
        }
    }
    let expected: Vec<String> = std::iter::once("observer".to_string())
        .chain(clients.iter().map(|c| c.id.clone()))
        .collect();
    let want: Vec<&str> = expected.iter().map(String::as_str).collect();
    observer.wait("final roster", |x| x.has(&want)).await;
    observer.settle(Duration::from_millis(300)).await;
    // The view folded from diffs equals a fresh snapshot, user for user.
    let fresh = TestClient::join(&url, "fresh", 2).await;
    observer
        .wait("fresh joined", |x| x.user("fresh").is_some())
        .await;
    let mut folded = observer.view.users.clone();
    let mut snap = fresh.view.users.clone();
    folded.remove("fresh");
    snap.remove("fresh");
    assert_eq!(folded, snap);
    assert!(
        observer.diffs.len() > 10,
        "diffs were used: {}",
        observer.diffs.len()
    );
    assert_eq!(observer.gaps, 0, "no diff ever skipped a version");
}

#[tokio::test]
async fn state_and_events_reach_the_right_sockets_only() {
    let s = server().await;
    let url = s.ws_url("events");
    let mut ada = TestClient::join(&url, "ada", 2).await;
    let mut ada2 = TestClient::join(&url, "ada", 2).await;
    let mut bob = TestClient::join(&url, "bob", 2).await;
    let mut old = TestClient::join(&url, "old", 1).await;
    let mut other = TestClient::join(&s.ws_url("elsewhere"), "x", 2).await;
    ada.wait("all", |x| x.has(&["ada", "bob", "old"])).await;
    bob.wait("all", |x| x.has(&["ada", "bob", "old"])).await;

    ada.send(json!({"type": "state", "state": {"status": "away"}, "user": {"name": "Ada", "color": "#ff8800"}}))
        .await;
    bob.wait("ada's state", |x| {
        x.user("ada").is_some_and(|u| {
            u.state.get() == r#"{"status":"away"}"# && u.hints.name.as_deref() == Some("Ada")
        })
    })
    .await;
    let old_rosters = old.snapshots;

    ada.send(json!({"type": "event", "event": "cursor", "data": {"x": 1}}))
        .await;
    bob.wait("event", |x| !x.events.is_empty()).await;
    ada2.wait("event on the sender's other tab", |x| !x.events.is_empty())
        .await;
    let e = &bob.events[0];
    assert_eq!(
        (e.from.as_ref(), e.event.as_ref(), e.data.get()),
        ("ada", "cursor", r#"{"x":1}"#)
    );
    ada.settle(Duration::from_millis(200)).await;
    old.settle(Duration::from_millis(10)).await;
    other.settle(Duration::from_millis(10)).await;
    assert!(ada.events.is_empty(), "never to the sending socket");
    assert!(old.events.is_empty(), "protocol 1 gets no events");
    assert!(other.events.is_empty(), "never to another room");
    assert_eq!(
        old.snapshots, old_rosters,
        "protocol 1 gets no roster for a state change"
    );

    // Typing: on, then withdrawn by the server when it is not refreshed.
    ada.send(json!({"type": "event", "event": "typing", "data": {"typing": true}}))
        .await;
    bob.wait("typing false", |x| {
        x.events
            .iter()
            .filter(|e| &*e.event == "typing")
            .map(|e| e.data.get())
            .collect::<Vec<_>>()
            == [r#"{"typing":true}"#, r#"{"typing":false}"#]
    })
    .await;
    // Typing, then leaving: the leave withdraws it.
    ada.send(json!({"type": "event", "event": "typing", "data": {"typing": true}}))
        .await;
    bob.wait("typing again", |x| {
        x.events.iter().filter(|e| &*e.event == "typing").count() == 3
    })
    .await;
    ada.close(1000).await;
    bob.wait("withdrawn on leave", |x| {
        x.events.iter().filter(|e| &*e.event == "typing").count() == 4
            && x.events.last().unwrap().data.get() == r#"{"typing":false}"#
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_its_answer_and_disturbs_nobody() {
    let s = server().await;
    let mut bystander = TestClient::join(&s.ws_url("calm"), "calm", 2).await;
    let url = s.ws_url("rough");
    let mut c = TestClient::connect(&url).await;

    c.send(json!({"type": "state", "state": {}})).await;
    c.send_text("{not json".into()).await;
    c.send(json!({"type": "dance"})).await;
    c.send(json!({"type": "hello", "id": "no spaces"})).await;
    c.send(json!({"type": "hello", "id": "x", "proto": 7}))
        .await;
    c.send(json!({"type": "hello", "id": "x", "token": "t"}))
        .await;
    c.send(json!({"type": "hello", "id": "x", "user": {"avatar": "javascript:alert(1)"}}))
        .await;
    c.send(json!({"type": "hello", "id": "x", "state": {"s": "y".repeat(1100)}}))
        .await;
    c.send_binary(vec![1, 2, 3]).await;
    c.wait("nine errors", |x| x.errors.len() == 9).await;
    assert_eq!(
        c.errors,
        [
            ErrorCode::NotJoined,
            ErrorCode::BadJson,
            ErrorCode::UnknownType,
            ErrorCode::InvalidId,
            ErrorCode::InvalidProto,
            ErrorCode::InvalidToken,
            ErrorCode::InvalidUser,
            ErrorCode::StateTooLarge,
            ErrorCode::BadMessage,
        ]
    );
    // None of those counted as the first hello: this one does.
    c.hello("x", 2).await;
    c.wait("joined", |x| x.has(&["x"])).await;
    c.send(json!({"type": "hello", "id": "y"})).await;
    c.send(json!({"type": "state", "state": {"s": "y".repeat(1100)}}))
        .await;
    c.send(json!({"type": "event", "event": "e", "data": "z".repeat(1100)}))
        .await;
    c.send(json!({"type": "event", "event": "typing", "data": {"typing": "maybe"}}))
        .await;
    c.send(json!({"type": "ping"})).await;
    c.wait("four more errors and a pong", |x| {
        x.errors.len() == 13 && x.pongs == 1
    })
    .await;
    assert_eq!(
        &c.errors[9..],
        [
            ErrorCode::AlreadyJoined,
            ErrorCode::StateTooLarge,
            ErrorCode::EventTooLarge,
            ErrorCode::BadMessage
        ]
    );
    assert!(c.closed.is_none(), "errors keep the socket open");

    // An oversized frame closes with 1009.
    c.send_text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "p".repeat(5000)))
        .await;
    c.wait("1009", |x| x.closed.is_some()).await;
    assert_eq!(c.closed, Some(1009));

    // A frame far over every limit too.
    let mut huge = TestClient::connect(&url).await;
    huge.send_text("h".repeat(200_000)).await;
    huge.wait("closed", |x| x.closed.is_some()).await;
    assert_eq!(huge.closed, Some(1009));

    // A flood: told once, then closed with 1008.
    let mut flood = TestClient::join(&url, "flood", 2).await;
    for _ in 0..200 {
        flood.send(json!({"type": "ping"})).await;
    }
    flood.wait("closed", |x| x.closed.is_some()).await;
    assert_eq!(flood.closed, Some(1008));
    assert_eq!(
        flood
            .errors
            .iter()
            .filter(|e| **e == ErrorCode::RateLimited)
            .count(),
        1
    );

    // No hello at all: 1008 after the hello timeout.
    let mut silent = TestClient::connect(&url).await;
    silent.wait("closed", |x| x.closed.is_some()).await;
    assert_eq!(silent.closed, Some(1008));

    // Meanwhile the bystander's room works as ever.
    let mut friend = TestClient::join(&s.ws_url("calm"), "friend", 2).await;
    bystander
        .wait("friend", |x| x.has(&["calm", "friend"]))
        .await;
    friend
        .send(json!({"type": "event", "event": "wave", "data": null}))
        .await;
    bystander.wait("wave", |x| x.events.len() == 1).await;
}

#[tokio::test]
async fn a_join_storm_is_merged_not_squared() {
    let mut config = test_config();
    config.broadcast_interval_ms = 100;
    // The instance's budget, small enough for 60 joins to exceed it (the default lets a
    // meeting of a hundred start at once).
    config.broadcast_frames = Some(200);
    let s = TestServer::start(config).await;
    let url = s.ws_url("storm");
    let mut observer = TestClient::join(&url, "observer", 1).await;
    let n = 60;
    let joins = (0..n).map(|i| {
        let url = url.clone();
        async move {
            let mut c = TestClient::connect(&url).await;
            c.hello(&format!("s{i}"), 1).await;
            c
        }
    });
    let clients = futures_util::future::join_all(joins).await;
    observer
        .wait("everyone", |x| x.members().len() == n + 1)
        .await;
    observer.settle(Duration::from_millis(300)).await;
    assert!(
        observer.snapshots < n / 2,
        "{} rosters for {n} joins: storms must merge",
        observer.snapshots
    );
    drop(clients);
}

#[tokio::test]
async fn http_endpoints() {
    let s = server().await;
    let (status, body) = http_get(s.addr, "/server/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = http_get(s.addr, "/server/readyz").await;
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["store"]["kind"], "memory");

    let mut a = TestClient::join(&s.ws_url("rest"), "a", 2).await;
    a.send(json!({"type": "state", "state": {"k": 1}})).await;
    a.wait("state", |x| {
        x.user("a").is_some_and(|u| u.state.get() == r#"{"k":1}"#)
    })
    .await;
    let (status, body) = http_get(s.addr, "/server/rooms/rest").await;
    assert_eq!(status, 200);
    let snap: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snap["type"], "presence");
    assert_eq!(snap["members"], json!(["a"]));
    assert_eq!(snap["users"][0]["state"], json!({"k": 1}));
    assert!(snap.get("self").is_none());
    let (status, body) = http_get(s.addr, "/server/rooms/nobody-here").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 0);
    assert_eq!(http_get(s.addr, "/server/rooms/Bad_Id").await.0, 400);
    // A plain GET of the socket path is told to upgrade.
    assert_eq!(http_get(s.addr, "/server/ws/lobby").await.0, 426);

    let (status, body) = http_get(s.addr, "/server/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("herenow_sockets 1"), "{body}");
    assert!(body.contains("herenow_rooms 1"));
    assert!(body.contains("herenow_members 1"));
    assert!(body.contains("herenow_store_seconds_count"));

    assert_eq!(http_get(s.addr, "/server/nope").await.0, 404);
    let (status, body) = http_get(s.addr, "/rooms/lobby").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("herenow is running"),
        "placeholder page without a built demo"
    );
}

#[tokio::test]
async fn static_files_with_index_fallback() {
    let dir = std::env::temp_dir().join(format!("herenow-static-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>demo</h1>").unwrap();
    std::fs::write(dir.join("assets/app.js"), "console.log(1)").unwrap();
    let mut config = test_config();
    config.static_dir = Some(dir.clone());
    let s = TestServer::start(config).await;
    assert_eq!(http_get(s.addr, "/assets/app.js").await.1, "console.log(1)");
    assert_eq!(
        http_get(s.addr, "/rooms/design-review").await.1,
        "<h1>demo</h1>"
    );
    assert_eq!(http_get(s.addr, "/server/healthz").await.1, "ok");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1012_and_returns_quickly() {
    let s = server().await;
    let mut a = TestClient::join(&s.ws_url("bye"), "a", 2).await;
    let mut b = TestClient::join(&s.ws_url("bye"), "b", 1).await;
    let took = s.stop().await;
    a.wait("closed", |x| x.closed.is_some()).await;
    b.wait("closed", |x| x.closed.is_some()).await;
    assert_eq!((a.closed, b.closed), (Some(1012), Some(1012)));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_large_roster_arrives_whole_when_sent_in_fragments() {
    // The test reads one client at a time: the others must not go stale meanwhile.
    let mut config = test_config();
    config.stale_ms = 30_000;
    let s = TestServer::start(config).await;
    let url = s.ws_url("big");
    // Twelve members with nearly 1 KiB of state each: a snapshot over FRAGMENT_BYTES,
    // which goes out as a shared head in fragments and each socket's own `self` ending.
    let big = "é".repeat(450); // two bytes each: fragments must cut between characters
    let mut members = Vec::new();
    for k in 0..12 {
        let mut c = TestClient::connect(&url).await;
        c.send(json!({"type": "hello", "id": format!("m{k}"), "proto": 2, "state": {"s": big}}))
            .await;
        members.push(c);
    }
    let ids: Vec<String> = (0..12)
        .map(|k| format!("m{k}"))
        .chain(["late".to_string()])
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut late = TestClient::join(&url, "late", 2).await;
    late.wait("the whole room", |x| x.has(&ids)).await;
    let presence = late.presence.as_ref().expect("a snapshot");
    assert_eq!(presence.self_id.as_deref(), Some("late"));
    assert!(
        serde_json::to_string(presence).unwrap().len() > herenow::ws::FRAGMENT_BYTES,
        "the snapshot is large enough to be fragmented"
    );
    assert_eq!(
        late.user("m7").map(|u| u.state.get().to_string()),
        Some(format!(r#"{{"s":"{big}"}}"#))
    );
    // Everyone else gets the join as a diff, and a `sync` answer in fragments too.
    for c in &mut members {
        c.wait("late joined", |x| x.has(&ids)).await;
    }
    members[0].send(json!({"type": "sync"})).await;
    let before = members[0].snapshots;
    members[0]
        .wait("a second snapshot", |x| x.snapshots > before)
        .await;
    assert_eq!(
        members[0].presence.as_ref().unwrap().self_id.as_deref(),
        Some("m0")
    );
    assert!(late.errors.is_empty() && members[0].errors.is_empty());
}

#[tokio::test]
async fn a_socket_that_stops_reading_is_closed_as_slow_and_counted() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    // It answers nothing, pings included: only the slow close may end it here.
    let config = common::test_config_with(&[
        "--stale-ms",
        "60000",
        "--heartbeat-ms",
        "1000",
        "--ping-ms",
        "30000",
        "--outbox-bytes",
        "4096",
        "--rate-per-sec",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let s = TestServer::start(config).await;
    let url = s.ws_url("slow");
    // A reader that never reads, with a small receive window: the kernel's buffers fill
    // in kilobytes, then the server's outbox.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let (mut stuck, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .unwrap();
    let hello = json!({"type": "hello", "id": "stuck", "proto": 2}).to_string();
    stuck.send(Message::Text(hello.into())).await.unwrap();

    // Protocol 1: state changes send it nothing, so only the stuck socket falls behind.
    let mut busy = TestClient::join(&url, "busy", 1).await;
    let pad = "x".repeat(900);
    let slow_closes = || async {
        let (_, metrics) = http_get(s.addr, "/server/metrics").await;
        metrics.contains("herenow_server_closes_total{reason=\"slow\"} 1")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut counted = false;
    for i in 0..20_000u32 {
        busy.send(json!({"type": "state", "state": {"n": i, "pad": pad}}))
            .await;
        if i % 50 == 0 {
            busy.settle(Duration::from_millis(2)).await;
            if slow_closes().await {
                counted = true;
                break;
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
        }
    }
    assert!(counted, "the stuck socket was closed as slow and counted");
    // The room goes on for everyone else.
    busy.send(json!({"type": "state", "state": {"after": true}}))
        .await;
    let mut watcher = TestClient::join(&url, "watcher", 2).await;
    watcher
        .wait("busy's last state", |c| {
            c.user("busy")
                .is_some_and(|u| u.state.get().contains("after"))
        })
        .await;
    assert!(busy.closed.is_none());
    drop(stuck);
}

//! Status and location over real sockets: each tab says how and where it is, the server
//! folds a member's tabs (active > idle > away; a tab that said nothing is active) and
//! shows the location of the most recently active one, with `statusSince` by the store's
//! clock. Protocol-1 sockets see exactly what they saw before: nothing of it.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis::{unique_prefix, RedisServer};
use common::{test_config, TestClient, TestServer};
use futures_util::{SinkExt, StreamExt};
use herenow::protocol::{ErrorCode, Status, User};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

static REDIS: OnceLock<RedisServer> = OnceLock::new();

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn server() -> TestServer {
    TestServer::start(test_config()).await
}

/// A protocol-2 tab of presence id `id` that first says `extra` in its hello.
async fn tab(url: &str, id: &str, extra: Value) -> TestClient {
    let mut c = TestClient::connect(url).await;
    c.id = id.to_string();
    let mut hello = json!({"type": "hello", "id": id, "proto": 2});
    hello
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c.send(hello).await;
    c.wait("first roster", |c| c.presence.is_some()).await;
    c
}

async fn say(c: &mut TestClient, status: &str) {
    c.send(json!({"type": "status", "status": status})).await;
}

async fn wait_status(c: &mut TestClient, id: &str, status: Status) -> User {
    c.wait(&format!("{id} {status:?}"), |c| {
        c.user(id).is_some_and(|u| u.status == status)
    })
    .await;
    c.user(id).unwrap().clone()
}

#[tokio::test]
async fn two_sockets_of_one_id_fold_active_over_away() {
    let s = server().await;
    let url = s.ws_url("fold");
    let mut watcher = TestClient::join(&url, "w", 2).await;
    let mut t1 = tab(&url, "ada", json!({})).await;
    let mut t2 = tab(&url, "ada", json!({})).await;
    watcher
        .wait("ada x2", |c| c.user("ada").is_some_and(|u| u.tabs == 2))
        .await;
    let joined = watcher.user("ada").unwrap().clone();
    assert_eq!(
        joined.status,
        Status::Active,
        "tabs that said nothing are active"
    );

    // One tab away, the other active: active.
    let before = wall_ms();
    say(&mut t1, "away").await;
    t1.settle(Duration::from_millis(200)).await;
    watcher.settle(Duration::from_millis(200)).await;
    let u = watcher.user("ada").unwrap();
    assert_eq!(
        u.status,
        Status::Active,
        "one away and one active shows active"
    );
    assert_eq!(
        u.status_since, joined.status_since,
        "the member's status did not change"
    );

    // Both away: away, since the moment the second went (by the store's clock).
    say(&mut t2, "away").await;
    let u = wait_status(&mut watcher, "ada", Status::Away).await;
    let after = wall_ms();
    assert!(
        before <= u.status_since && u.status_since <= after,
        "{before} <= {} <= {after}",
        u.status_since
    );
    // The change came as an `updated` entry, not a leave and a join.
    let last = watcher.diffs.last().unwrap();
    assert!(last.joined.is_empty() && last.left.is_empty());
    assert_eq!(last.updated.len(), 1);

    // One idle: idle; that tab back: active.
    say(&mut t1, "idle").await;
    wait_status(&mut watcher, "ada", Status::Idle).await;
    say(&mut t1, "active").await;
    wait_status(&mut watcher, "ada", Status::Active).await;
    // The tabs see their member folded the same way.
    wait_status(&mut t2, "ada", Status::Active).await;

    // The active tab leaves for good: the other one's away shows.
    t1.close(1000).await;
    watcher
        .wait("ada away, one tab", |c| {
            c.user("ada")
                .is_some_and(|u| u.tabs == 1 && u.status == Status::Away)
        })
        .await;
    assert!(watcher.errors.is_empty() && t2.errors.is_empty());
}

#[tokio::test]
async fn a_status_that_changes_nothing_sends_nothing() {
    let s = server().await;
    let url = s.ws_url("quiet");
    let mut watcher = TestClient::join(&url, "w", 2).await;
    let mut t = tab(&url, "ada", json!({})).await;
    watcher.wait("ada", |c| c.user("ada").is_some()).await;
    watcher.settle(Duration::from_millis(100)).await;
    let (diffs, version) = (watcher.diffs.len(), watcher.version());
    say(&mut t, "active").await;
    t.send(json!({"type": "location", "location": null})).await;
    watcher.settle(Duration::from_millis(300)).await;
    assert_eq!((watcher.diffs.len(), watcher.version()), (diffs, version));
}

#[tokio::test]
async fn a_hello_may_say_status_and_location() {
    let s = server().await;
    let url = s.ws_url("hello-says");
    let mut watcher = TestClient::join(&url, "w", 2).await;
    let _t = tab(&url, "ada", json!({"status": "away", "location": "risks"})).await;
    watcher.wait("ada", |c| c.user("ada").is_some()).await;
    let u = watcher.user("ada").unwrap();
    assert_eq!(
        (u.status, u.location.as_deref()),
        (Status::Away, Some("risks"))
    );
    // A socket of the same id joining active makes the member active at once.
    let _t2 = tab(&url, "ada", json!({})).await;
    wait_status(&mut watcher, "ada", Status::Active).await;
}

#[tokio::test]
async fn a_member_shows_the_location_of_their_most_recently_active_tab() {
    let s = server().await;
    let url = s.ws_url("where");
    let mut watcher = TestClient::join(&url, "w", 2).await;
    let location = |c: &TestClient| {
        c.user("ada")
            .and_then(|u| u.location.as_deref().map(str::to_owned))
    };
    let mut laptop = tab(&url, "ada", json!({"location": "intro"})).await;
    watcher
        .wait("intro", |c| location(c).as_deref() == Some("intro"))
        .await;
    let mut phone = tab(&url, "ada", json!({})).await;
    phone
        .send(json!({"type": "location", "location": "risks"}))
        .await;
    watcher
        .wait("risks", |c| location(c).as_deref() == Some("risks"))
        .await;
    // The laptop moves: it is the most recently active tab now.
    laptop
        .send(json!({"type": "location", "location": "goals"}))
        .await;
    watcher
        .wait("goals", |c| location(c).as_deref() == Some("goals"))
        .await;
    // The laptop goes idle and the phone stays active: the phone's place shows.
    say(&mut laptop, "idle").await;
    watcher
        .wait("risks again", |c| location(c).as_deref() == Some("risks"))
        .await;
    // An idle tab moving does not take over from an active one.
    laptop
        .send(json!({"type": "location", "location": "timeline"}))
        .await;
    watcher.settle(Duration::from_millis(300)).await;
    assert_eq!(location(&watcher).as_deref(), Some("risks"));
    // null clears the phone's place.
    phone
        .send(json!({"type": "location", "location": null}))
        .await;
    watcher
        .wait("nowhere", |c| {
            c.user("ada").is_some_and(|u| u.location.is_none())
        })
        .await;
    assert!(laptop.errors.is_empty() && phone.errors.is_empty());
}

#[tokio::test]
async fn bad_status_and_location_get_an_error_and_change_nothing() {
    let s = server().await;
    let url = s.ws_url("bad-input");
    let mut watcher = TestClient::join(&url, "w", 2).await;
    let mut t = tab(&url, "ada", json!({"location": "intro"})).await;
    watcher.wait("ada", |c| c.user("ada").is_some()).await;

    t.send(json!({"type": "location", "location": "x".repeat(129)}))
        .await;
    t.wait("location_too_large", |c| {
        c.errors.contains(&ErrorCode::LocationTooLarge)
    })
    .await;
    t.send(json!({"type": "status", "status": "asleep"})).await;
    t.send(json!({"type": "location"})).await;
    t.wait("bad_message x2", |c| {
        c.errors
            .iter()
            .filter(|e| **e == ErrorCode::BadMessage)
            .count()
            == 2
    })
    .await;
    // The socket is still in the room and still heard.
    t.send(json!({"type": "location", "location": "é".repeat(64)}))
        .await;
    watcher
        .wait("128 bytes are fine", |c| {
            c.user("ada").and_then(|u| u.location.as_deref()) == Some(&*"é".repeat(64))
        })
        .await;

    // Before hello: not joined. A hello with too long a location does not count.
    let mut early = TestClient::connect(&url).await;
    early
        .send(json!({"type": "status", "status": "away"}))
        .await;
    early
        .wait("not_joined", |c| c.errors.contains(&ErrorCode::NotJoined))
        .await;
    early
        .send(json!({"type": "hello", "id": "bob", "proto": 2, "location": "y".repeat(200)}))
        .await;
    early
        .wait("refused hello", |c| {
            c.errors.contains(&ErrorCode::LocationTooLarge)
        })
        .await;
    early.hello("bob", 2).await;
    early
        .wait("joined after all", |c| c.presence.is_some())
        .await;
    watcher.wait("bob", |c| c.user("bob").is_some()).await;
}

/// Every text frame a raw protocol-1 socket receives within `window`.
async fn frames_within(ws: &mut RawWs, window: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = msg {
            out.push(serde_json::from_str(&t).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn protocol_1_sockets_see_exactly_what_they_saw_before() {
    let s = server().await;
    let url = s.ws_url("template");
    let (mut v1, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    v1.send(Message::Text(r#"{"type":"hello","id":"k3f9a2"}"#.into()))
        .await
        .unwrap();
    let first = frames_within(&mut v1, Duration::from_millis(300)).await;
    assert_eq!(first.len(), 1);

    let mut ada = tab(&url, "ada", json!({"status": "idle", "location": "intro"})).await;
    let joined = frames_within(&mut v1, Duration::from_millis(300)).await;
    // Status and location changes are no member-set change: protocol 1 hears nothing.
    say(&mut ada, "away").await;
    ada.send(json!({"type": "location", "location": "risks"}))
        .await;
    say(&mut ada, "active").await;
    let quiet = frames_within(&mut v1, Duration::from_millis(400)).await;
    ada.close(1000).await;
    let left = frames_within(&mut v1, Duration::from_millis(400)).await;

    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(quiet, Vec::<Value>::new());
    assert_eq!(left.len(), 1, "{left:?}");
    for frame in first.iter().chain(&joined).chain(&left) {
        let keys: Vec<&str> = frame
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["count", "members", "roomId", "type", "version"],
            "{frame}"
        );
    }
    assert_eq!(joined[0]["members"], json!(["k3f9a2", "ada"]));
    assert_eq!(left[0]["members"], json!(["k3f9a2"]));

    // And a protocol-1 socket of a member counts as active for the others.
    let mut watcher = TestClient::join(&url, "w", 2).await;
    watcher.wait("k3f9a2", |c| c.user("k3f9a2").is_some()).await;
    assert_eq!(watcher.user("k3f9a2").unwrap().status, Status::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_instances_on_redis_with_redis_time() {
    let redis = REDIS.get_or_init(RedisServer::start);
    let prefix = unique_prefix("status-across");
    let config = |instance: &str| {
        let mut c = test_config();
        c.redis_url = Some(redis.url());
        c.redis_prefix = prefix.clone();
        c.instance_id = Some(instance.into());
        c.stale_ms = 10_000;
        c.check().unwrap();
        c
    };
    let (a, b) = (
        TestServer::start(config("a")).await,
        TestServer::start(config("b")).await,
    );
    let mut watcher = TestClient::join(&a.ws_url("across"), "w", 2).await;
    let mut on_a = tab(&a.ws_url("across"), "ada", json!({"location": "intro"})).await;
    let mut on_b = tab(&b.ws_url("across"), "ada", json!({})).await;
    watcher
        .wait("ada on both", |c| {
            c.user("ada").is_some_and(|u| u.tabs == 2)
        })
        .await;
    // The tab on b moves last: its place shows, wherever the watcher is.
    on_b.send(json!({"type": "location", "location": "risks"}))
        .await;
    watcher
        .wait("risks", |c| {
            c.user("ada").and_then(|u| u.location.as_deref()) == Some("risks")
        })
        .await;

    let time = |redis: &RedisServer| -> u64 {
        let out = redis.cli(&["TIME"]);
        let mut parts = out.split_whitespace().map(|p| p.parse::<u64>().unwrap());
        parts.next().unwrap() * 1000 + parts.next().unwrap() / 1000
    };
    say(&mut on_a, "away").await;
    on_a.settle(Duration::from_millis(200)).await;
    assert_eq!(
        watcher.user("ada").unwrap().status,
        Status::Active,
        "b's tab is active"
    );
    let before = time(redis);
    say(&mut on_b, "away").await;
    let u = wait_status(&mut watcher, "ada", Status::Away).await;
    let after = time(redis);
    assert!(
        before <= u.status_since && u.status_since <= after,
        "statusSince {} is Redis's TIME ({before}..{after})",
        u.status_since
    );
    // Both away: the one active last (b's) still gives the place.
    assert_eq!(u.location.as_deref(), Some("risks"));
    // Seen through b the same.
    let mut other = TestClient::join(&b.ws_url("across"), "w2", 2).await;
    other.wait("ada", |c| c.user("ada").is_some()).await;
    assert_eq!(other.user("ada").unwrap(), &u);
}

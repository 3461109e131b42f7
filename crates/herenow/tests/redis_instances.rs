//! Several herenow instances on one Redis (on a Redis Cluster, and on a Redis reached
//! over TLS with a password and a private CA, as a managed one is): what a user sees
//! must not depend on which instance their socket landed on. In-process servers on
//! port 0, one real `herenow` process for the crash test, real `redis-server`s.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::redis::{unique_prefix, RedisCluster, RedisServer, Setup};
use common::{test_config, TestClient, TestServer, WAIT};
use herenow::config::Config;
use serde_json::json;
use tokio::time::{sleep, Instant};

static REDIS: OnceLock<RedisServer> = OnceLock::new();
static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
static TLS: OnceLock<RedisServer> = OnceLock::new();

/// Where the instances of one test keep their rooms.
#[derive(Clone)]
struct Target {
    url: String,
    cluster: bool,
    prefix: String,
    /// `REDIS_CA_FILE`: set for the TLS server (and only for it).
    ca_file: Option<PathBuf>,
}

impl Target {
    fn single(test: &str) -> Target {
        Target {
            url: REDIS.get_or_init(RedisServer::start).url(),
            cluster: false,
            prefix: unique_prefix(test),
            ca_file: None,
        }
    }

    fn cluster(test: &str) -> Target {
        Target {
            url: CLUSTER.get_or_init(RedisCluster::start).url(),
            cluster: true,
            prefix: unique_prefix(test),
            ca_file: None,
        }
    }

    /// `rediss://default:PASSWORD@127.0.0.1:PORT` with `REDIS_CA_FILE`.
    fn tls(test: &str) -> Target {
        let server = TLS.get_or_init(|| RedisServer::start_with(Setup::tls_with_password()));
        Target {
            url: server.url(),
            cluster: false,
            prefix: unique_prefix(test),
            ca_file: server.setup.ca_file(),
        }
    }

    /// The test settings (grace 300 ms, lease 1 s, reap 200 ms) on this Redis. Members
    /// go stale only after 10 s, so a test client that is not being read for a while (it
    /// then answers no pings) is not pruned for that.
    fn config(&self, instance: &str) -> Config {
        let mut c = test_config();
        c.redis_url = Some(self.url.clone());
        c.redis_cluster = self.cluster;
        c.redis_prefix = self.prefix.clone();
        c.redis_ca_file = self.ca_file.clone();
        c.instance_id = Some(instance.into());
        c.stale_ms = 10_000;
        c.check().unwrap();
        c
    }

    async fn server(&self, instance: &str) -> TestServer {
        TestServer::start(self.config(instance)).await
    }

    /// The same settings as flags of the `herenow` binary.
    fn args(&self, instance: &str) -> Vec<String> {
        let c = self.config(instance);
        let mut args: Vec<String> = [
            ("--host", "127.0.0.1".to_string()),
            ("--port", "0".into()),
            ("--redis-url", self.url.clone()),
            ("--redis-prefix", self.prefix.clone()),
            ("--instance-id", instance.into()),
            ("--grace-ms", c.grace_ms.to_string()),
            ("--stale-ms", c.stale_ms.to_string()),
            ("--heartbeat-ms", c.heartbeat_ms.to_string()),
            ("--lease-ms", c.lease_ms.to_string()),
            ("--reap-ms", c.reap_ms.to_string()),
            ("--ping-ms", c.ping().as_millis().to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect();
        if self.cluster {
            args.push("--redis-cluster".into());
        }
        if let Some(ca) = &self.ca_file {
            args.push("--redis-ca-file".into());
            args.push(ca.display().to_string());
        }
        args
    }
}

async fn expect_members(c: &mut TestClient, ids: &[&str]) {
    let what = format!("members {ids:?}");
    c.wait(&what, |c| c.has(ids)).await;
}

/// Every id that joined or left in the diffs `c` received since diff number `from`.
fn churn(c: &TestClient, from: usize, id: &str) -> Vec<String> {
    c.diffs[from..]
        .iter()
        .flat_map(|d| {
            let joined = d.joined.iter().filter(|u| &*u.id == id).map(|_| "joined");
            let left = d.left.iter().filter(|l| &***l == id).map(|_| "left");
            joined.chain(left).map(String::from).collect::<Vec<_>>()
        })
        .collect()
}

// ---- the suite -----------------------------------------------------------------------

async fn joins_and_leaves_cross_instances(t: Target) {
    let (s1, s2) = (t.server("one").await, t.server("two").await);
    let room = "crossing";
    let mut a = TestClient::join(&s1.ws_url(room), "a", 2).await;
    let mut b = TestClient::join(&s2.ws_url(room), "b", 2).await;
    let mut old = TestClient::join(&s2.ws_url(room), "old", 1).await;
    expect_members(&mut a, &["a", "b", "old"]).await;
    expect_members(&mut b, &["a", "b", "old"]).await;
    expect_members(&mut old, &["a", "b", "old"]).await;
    b.close(1000).await;
    expect_members(&mut a, &["a", "old"]).await;
    expect_members(&mut old, &["a", "old"]).await;
    a.close(1000).await;
    expect_members(&mut old, &["old"]).await;
    old.close(1000).await;
    // Everyone left: the room leaves no key behind.
    let deadline = Instant::now() + WAIT;
    while !room_keys(&t, room).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", room_keys(&t, room));
        sleep(Duration::from_millis(50)).await;
    }
}

fn room_keys(t: &Target, room: &str) -> Vec<String> {
    let pattern = format!("{}:{{{room}}}:*", t.prefix);
    if t.cluster {
        CLUSTER.get().unwrap().keys(&pattern)
    } else if t.ca_file.is_some() {
        TLS.get().unwrap().keys(&pattern)
    } else {
        REDIS.get().unwrap().keys(&pattern)
    }
}

async fn a_tab_moving_to_another_instance_in_its_grace_window_is_not_a_leave(t: Target) {
    let (s1, s2) = (t.server("one").await, t.server("two").await);
    let room = "moving";
    let mut watcher = TestClient::join(&s2.ws_url(room), "w", 2).await;
    let mut other = TestClient::join(&s1.ws_url(room), "o", 2).await;
    let tab = TestClient::join(&s1.ws_url(room), "tab", 2).await;
    expect_members(&mut watcher, &["o", "tab", "w"]).await;
    expect_members(&mut other, &["o", "tab", "w"]).await;
    let (seen_w, seen_o) = (watcher.diffs.len(), other.diffs.len());

    // A reload that lands on the other instance, well inside the 300 ms grace window.
    tab.drop_connection();
    let mut tab = TestClient::join(&s2.ws_url(room), "tab", 2).await;
    assert!(tab.has(&["o", "tab", "w"]), "{:?}", tab.members());
    // Past the grace window and a lease: the old entry is gone by now, in any case.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        watcher.settle(Duration::from_millis(100)).await;
        other.settle(Duration::from_millis(100)).await;
        tab.settle(Duration::from_millis(100)).await;
    }
    assert_eq!(churn(&watcher, seen_w, "tab"), Vec::<String>::new());
    assert_eq!(churn(&other, seen_o, "tab"), Vec::<String>::new());
    assert!(watcher.has(&["o", "tab", "w"]) && other.has(&["o", "tab", "w"]));
    assert_eq!(
        watcher.user("tab").map(|u| u.tabs),
        Some(1),
        "one tab again"
    );
}

async fn state_events_and_typing_cross_instances(t: Target) {
    let (s1, s2) = (t.server("one").await, t.server("two").await);
    let room = "talk";
    let mut a = TestClient::join(&s1.ws_url(room), "a", 2).await;
    let mut b = TestClient::join(&s2.ws_url(room), "b", 2).await;
    expect_members(&mut a, &["a", "b"]).await;
    expect_members(&mut b, &["a", "b"]).await;

    a.send(json!({"type": "state", "state": {"status": "busy"}}))
        .await;
    b.wait("a's state", |c| {
        c.user("a")
            .is_some_and(|u| u.state.get() == r#"{"status":"busy"}"#)
    })
    .await;

    a.send(json!({"type": "event", "event": "wave", "data": {"to": "b"}}))
        .await;
    b.wait("a's event", |c| {
        c.events.iter().any(|e| &*e.event == "wave")
    })
    .await;
    let wave = b.events.iter().find(|e| &*e.event == "wave").unwrap();
    assert_eq!((&*wave.from, wave.data.get()), ("a", r#"{"to":"b"}"#));

    a.send(json!({"type": "event", "event": "typing", "data": {"typing": true}}))
        .await;
    let typing = |c: &TestClient, on: bool| {
        c.events.iter().any(|e| {
            &*e.event == "typing"
                && &*e.from == "a"
                && e.data.get() == format!(r#"{{"typing":{on}}}"#)
        })
    };
    b.wait("a typing", |c| typing(c, true)).await;
    // Not refreshed: a's instance withdraws it after the typing timeout (400 ms here).
    b.wait("a stopped typing", |c| typing(c, false)).await;
    a.settle(Duration::from_millis(200)).await;
    assert!(a.events.is_empty(), "never to the sender: {:?}", a.events);
}

async fn a_crashed_instance_is_gone_from_the_others_within_the_lease(t: Target) {
    let survivor = t.server("survivor").await;
    let room = "crash";
    let mut child = Instance::spawn(&t, "doomed");
    let mut w = TestClient::join(&survivor.ws_url(room), "w", 2).await;
    let mut x = TestClient::join(&child.ws_url(room), "x", 2).await;
    let mut y = TestClient::join(&child.ws_url(room), "y", 1).await;
    expect_members(&mut w, &["w", "x", "y"]).await;
    expect_members(&mut x, &["w", "x", "y"]).await;
    expect_members(&mut y, &["w", "x", "y"]).await;

    child.kill();
    let killed = Instant::now();
    expect_members(&mut w, &["w"]).await;
    let took = killed.elapsed();
    let c = t.config("survivor");
    // Lease (1 s) + one reap sweep (200 ms), with room for a slow machine.
    assert!(
        took < Duration::from_millis(c.lease_ms + c.reap_ms + 2500),
        "took {took:?}"
    );
    w.close(1000).await;
    let deadline = Instant::now() + WAIT;
    while !room_keys(&t, room).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", room_keys(&t, room));
        sleep(Duration::from_millis(50)).await;
    }
}

/// One `herenow` process, killed with SIGKILL on drop.
struct Instance {
    child: Child,
    addr: String,
}

impl Instance {
    fn spawn(t: &Target, id: &str) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herenow"))
            .args(t.args(id))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn herenow");
        let addr = common::listening_address(&mut child);
        Instance { child, addr }
    }

    fn ws_url(&self, room: &str) -> String {
        format!("ws://{}/server/ws/{room}", self.addr)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- outages: each test has its own Redis ---------------------------------------------

/// Redis goes away for `outage` and comes back empty: rosters on every instance converge
/// to the sockets actually connected, with no client doing anything.
async fn rosters_converge_after_redis_comes_back(
    t: Target,
    stop: impl FnOnce(),
    start: impl FnOnce(),
    outage: Duration,
) {
    let (s1, s2) = (t.server("one").await, t.server("two").await);
    let room = "outage";
    let mut a = TestClient::join(&s1.ws_url(room), "a", 2).await;
    let mut b = TestClient::join(&s2.ws_url(room), "b", 2).await;
    let mut old = TestClient::join(&s2.ws_url(room), "old", 1).await;
    expect_members(&mut a, &["a", "b", "old"]).await;
    expect_members(&mut b, &["a", "b", "old"]).await;

    stop();
    // readyz says so, and stays ready.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = common::http_get(s1.addr, "/server/readyz").await;
        assert_eq!(status, 200, "an outage keeps the instance ready");
        if body.contains(r#""connected":false"#) {
            break;
        }
        assert!(Instant::now() < deadline, "readyz never told: {body}");
        sleep(Duration::from_millis(50)).await;
    }
    // Meanwhile: one joins on s1, one leaves on s2.
    let mut c = TestClient::join(&s1.ws_url(room), "c", 2).await;
    b.close(1000).await;
    sleep(outage).await;
    start();

    for client in [&mut a, &mut c, &mut old] {
        expect_members(client, &["a", "c", "old"]).await;
    }
    let (_, body) = common::http_get(s2.addr, "/server/readyz").await;
    assert!(body.contains(r#""connected":true"#), "{body}");
    // And the store holds the truth: a fresh client anywhere sees it.
    let fresh = TestClient::join(&s2.ws_url(room), "fresh", 2).await;
    assert!(
        fresh.has(&["a", "c", "fresh", "old"]),
        "{:?}",
        fresh.members()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rosters_converge_after_an_outage() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let t = Target {
        url: server.lock().unwrap().url(),
        cluster: false,
        prefix: unique_prefix("outage"),
        ca_file: None,
    };
    let (down, up) = (server.clone(), server.clone());
    rosters_converge_after_redis_comes_back(
        t,
        move || down.lock().unwrap().kill(),
        move || up.lock().unwrap().restart(),
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_rosters_converge_after_an_outage() {
    let cluster = std::sync::Arc::new(std::sync::Mutex::new(RedisCluster::start()));
    let t = Target {
        url: cluster.lock().unwrap().url(),
        cluster: true,
        prefix: unique_prefix("outage"),
        ca_file: None,
    };
    let (down, up) = (cluster.clone(), cluster.clone());
    rosters_converge_after_redis_comes_back(
        t,
        move || down.lock().unwrap().kill_all(),
        move || up.lock().unwrap().restart_all(),
        Duration::from_secs(2),
    )
    .await;
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Target::single(stringify!($test))).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Target::cluster(stringify!($test))).await;
                }
            )*
        }
        mod tls {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Target::tls(stringify!($test))).await;
                }
            )*
        }
    };
}

suite!(
    joins_and_leaves_cross_instances,
    a_tab_moving_to_another_instance_in_its_grace_window_is_not_a_leave,
    state_events_and_typing_cross_instances,
    a_crashed_instance_is_gone_from_the_others_within_the_lease,
);

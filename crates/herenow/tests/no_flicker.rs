//! No member flickers when the store loses its data or goes away for a while: two
//! instances on one real Redis (or a real three-node cluster), five protocol-1 clients
//! and one protocol-2 client on each, all in one room. Every frame every client receives
//! from the moment the fault starts is checked: none may ever lack a member whose socket
//! is open. Afterwards the store must hold the truth again (a fresh client sees everyone)
//! and the instances must still work (a join reaches everyone).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::redis::{unique_prefix, RedisCluster, RedisServer};
use common::{test_config, TestClient, TestServer, WAIT};
use herenow::config::Config;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

const ROOM: &str = "flicker";

/// The test timings (grace 300 ms, lease 1 s, reap 200 ms, heartbeat 200 ms) on `url`.
fn config(url: &str, cluster: bool, prefix: &str, instance: &str) -> Config {
    let mut c = test_config();
    c.redis_url = Some(url.into());
    c.redis_cluster = cluster;
    c.redis_prefix = prefix.into();
    c.instance_id = Some(instance.into());
    // Clients are read by watcher tasks throughout; staleness is not under test.
    c.stale_ms = 10_000;
    c.check().unwrap();
    c
}

/// Production timings (heartbeat 5 s, lease 6 s, reap 2 s) but a short grace window: a
/// room's keys then outlive a 10 s outage, while every lease in Redis runs out.
fn production_config(url: &str, prefix: &str, instance: &str) -> Config {
    let mut c = config(url, false, prefix, instance);
    c.heartbeat_ms = 5_000;
    c.lease_ms = 6_000;
    c.reap_ms = 2_000;
    c.stale_ms = 30_000;
    c.check().unwrap();
    c
}

/// A client read by its own task, which checks every frame against the live set.
struct Watched {
    task: JoinHandle<(TestClient, Vec<String>)>,
}

/// Everyone in the room: `a0..a4`, `av2` on the first instance, `b0..b4`, `bv2` on the
/// second.
fn everyone() -> BTreeSet<String> {
    ["a", "b"]
        .iter()
        .flat_map(|i| {
            (0..5)
                .map(move |n| format!("{i}{n}"))
                .chain([format!("{i}v2")])
        })
        .collect()
}

async fn join_all(s1: &TestServer, s2: &TestServer) -> Vec<TestClient> {
    let mut clients = Vec::new();
    for (server, name) in [(s1, "a"), (s2, "b")] {
        for n in 0..5 {
            clients.push(TestClient::join(&server.ws_url(ROOM), &format!("{name}{n}"), 1).await);
        }
        clients.push(TestClient::join(&server.ws_url(ROOM), &format!("{name}v2"), 2).await);
    }
    let all = everyone();
    for c in &mut clients {
        c.wait("everyone", |c| {
            c.members().iter().cloned().collect::<BTreeSet<_>>() == all
        })
        .await;
    }
    clients
}

/// Start checking every frame of every client until `stop` turns true: each must show
/// everyone in `live`.
fn watch_all(
    clients: Vec<TestClient>,
    live: &BTreeSet<String>,
    stop: &watch::Receiver<bool>,
) -> Vec<Watched> {
    clients
        .into_iter()
        .map(|mut c| {
            let mut stop = stop.clone();
            let live = live.clone();
            let task = tokio::spawn(async move {
                let mut violations = Vec::new();
                let mut frames = 0;
                while !*stop.borrow() {
                    tokio::select! {
                        got = c.recv_one(Duration::from_millis(100)) => {
                            if !got {
                                continue;
                            }
                            frames += 1;
                            let shown: BTreeSet<String> = c.members().into_iter().collect();
                            let missing: Vec<&String> = live.difference(&shown).collect();
                            if !missing.is_empty() {
                                violations.push(format!(
                                    "{} frame {frames} (version {}) lacks {missing:?}",
                                    c.id,
                                    c.version()
                                ));
                            }
                            assert!(c.closed.is_none(), "{} was closed: {:?}", c.id, c.closed);
                        }
                        _ = stop.changed() => {}
                    }
                }
                (c, violations)
            });
            Watched { task }
        })
        .collect()
}

async fn finish(watched: Vec<Watched>) -> Vec<TestClient> {
    let mut clients = Vec::new();
    let mut violations = Vec::new();
    for w in watched {
        let (c, v) = w.task.await.expect("watcher task");
        clients.push(c);
        violations.extend(v);
    }
    assert!(
        violations.is_empty(),
        "members flickered:\n{}",
        violations.join("\n")
    );
    clients
}

/// After the fault: the store holds everyone again, and both instances still carry a
/// join to every client.
async fn still_whole(s1: &TestServer, s2: &TestServer, mut clients: Vec<TestClient>) {
    let mut all = everyone();
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let fresh = TestClient::join(&s2.ws_url(ROOM), "fresh", 2).await;
        let mut want = all.clone();
        want.insert("fresh".into());
        let seen: BTreeSet<String> = fresh.members().into_iter().collect();
        if seen == want {
            fresh.close(1000).await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never held everyone again: {seen:?}"
        );
        fresh.close(1000).await;
        sleep(Duration::from_millis(200)).await;
    }
    let late = TestClient::join(&s1.ws_url(ROOM), "late", 1).await;
    all.insert("late".into());
    for c in &mut clients {
        c.wait("the late joiner", |c| {
            c.members().iter().cloned().collect::<BTreeSet<_>>() == all
        })
        .await;
    }
    drop(late);
}

/// Run a fault that blocks (it drives `redis-server` processes) off the runtime's
/// threads, so servers and watchers keep running meanwhile.
async fn blocking(fault: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(fault).await.expect("fault ran");
}

/// Join everyone, watch every frame while `fault` runs and for `after` more, then check
/// the room is whole.
async fn no_flicker_through<F, Fut>(s1: TestServer, s2: TestServer, fault: F, after: Duration)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let clients = join_all(&s1, &s2).await;
    let (stop_tx, stop) = watch::channel(false);
    let watched = watch_all(clients, &everyone(), &stop);
    fault().await;
    sleep(after).await;
    stop_tx.send_replace(true);
    let clients = finish(watched).await;
    still_whole(&s1, &s2, clients).await;
}

/// Redis restarts and lost everything: each instance writes its members again, one
/// after the other. Nobody sees the other instance's members go in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_without_data_shows_no_departure() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let url = redis.lock().unwrap().url();
    let prefix = unique_prefix("flicker-empty");
    let s1 = TestServer::start(config(&url, false, &prefix, "a")).await;
    let s2 = TestServer::start(config(&url, false, &prefix, "b")).await;
    let r = redis.clone();
    let fault = || {
        blocking(move || {
            let mut r = r.lock().unwrap();
            r.kill();
            r.restart();
        })
    };
    // Three leases: every instance has reconnected, repaired and ended its recovery.
    no_flicker_through(s1, s2, fault, Duration::from_secs(3)).await;
}

/// Redis restarts with its data (every lease in it has run out meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_data_shows_no_departure() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start_persistent()));
    let url = redis.lock().unwrap().url();
    let prefix = unique_prefix("flicker-kept");
    let s1 = TestServer::start(config(&url, false, &prefix, "a")).await;
    let s2 = TestServer::start(config(&url, false, &prefix, "b")).await;
    let r = redis.clone();
    let fault = || {
        blocking(move || {
            r.lock().unwrap().stop_saving();
            // Longer than a lease: every lease in the saved data has run out.
            std::thread::sleep(Duration::from_millis(1_500));
            r.lock().unwrap().restart();
        })
    };
    no_flicker_through(s1, s2, fault, Duration::from_secs(3)).await;
}

/// Redis is away for 10 s, with production timings, and comes back with its data: the
/// room's keys outlived the outage, every lease did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_outage_shows_no_departure() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start_persistent()));
    let url = redis.lock().unwrap().url();
    let prefix = unique_prefix("flicker-outage");
    let s1 = TestServer::start(production_config(&url, &prefix, "a")).await;
    let s2 = TestServer::start(production_config(&url, &prefix, "b")).await;
    let r = redis.clone();
    let fault = || {
        blocking(move || {
            r.lock().unwrap().stop_saving();
            std::thread::sleep(Duration::from_secs(10));
            r.lock().unwrap().restart();
        })
    };
    // A lease to settle, and a reap sweep after it: nobody live may be reaped then.
    no_flicker_through(s1, s2, fault, Duration::from_secs(9)).await;
}

/// The cluster node that holds the room restarts without its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_restart_shows_no_departure() {
    let cluster = Arc::new(std::sync::Mutex::new(RedisCluster::start()));
    let url = cluster.lock().unwrap().url();
    let prefix = unique_prefix("flicker-node");
    let s1 = TestServer::start(config(&url, true, &prefix, "a")).await;
    let s2 = TestServer::start(config(&url, true, &prefix, "b")).await;
    let c = cluster.clone();
    let pattern = format!("{prefix}:{{{ROOM}}}:*");
    let fault = || {
        blocking(move || {
            let mut c = c.lock().unwrap();
            let node = c
                .nodes
                .iter()
                .position(|n| !n.keys(&pattern).is_empty())
                .expect("a node holds the room");
            c.nodes[node].kill();
            c.nodes[node].restart();
            c.wait_ok();
        })
    };
    no_flicker_through(s1, s2, fault, Duration::from_secs(3)).await;
}

/// Redis restarts empty while the second instance is gone for good (stopped, its
/// clients not coming back): its members are kept for a lease, then leave everywhere,
/// and the first instance's members never flicker meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_instance_still_leaves_after_a_restart_without_data() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let prefix = unique_prefix("flicker-gone");
    let s1 = TestServer::start(config(&url, false, &prefix, "a")).await;
    let s2 = TestServer::start(config(&url, false, &prefix, "b")).await;
    let mut clients = join_all(&s1, &s2).await;
    let theirs = clients.split_off(6);
    let ours: BTreeSet<String> = everyone()
        .into_iter()
        .filter(|id| id.starts_with('a'))
        .collect();
    let (stop_tx, stop) = watch::channel(false);
    let watched = watch_all(clients, &ours, &stop);
    // The second instance stops: its entries run out their lease, as after a crash.
    s2.stop().await;
    drop(theirs);
    let started = Instant::now();
    let _redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis.restart();
        redis
    })
    .await
    .unwrap();
    sleep(Duration::from_secs(3)).await;
    stop_tx.send_replace(true);
    let mut clients = finish(watched).await;
    for c in &mut clients {
        c.wait("the gone instance's members to leave", |c| {
            c.members().iter().cloned().collect::<BTreeSet<_>>() == ours
        })
        .await;
    }
    // With the test's 1 s lease: well within the 10 s a crash may take by default.
    assert!(started.elapsed() < Duration::from_secs(8));
}

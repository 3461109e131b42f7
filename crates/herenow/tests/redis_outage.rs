//! The Redis store through outages, at the store level: Redis down at start, stopped and
//! restarted without its data and with it, connections dropped under a single node and
//! under one node of a cluster (and under a server that refuses `CLIENT`, as some
//! managed services do), a password changed after start. Real `redis-server`
//! processes, shortened timings.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::redis::{unique_prefix, RedisCluster, RedisServer, Setup};
use herenow::protocol::{Id, RawJson, RoomId, UserHints};
use herenow::room::{Change, Entry, Op};
use herenow::store::redis::{RedisOptions, RedisStore};
use herenow::store::{Feed, FeedReceiver, PresenceStore, StoreError};
use tokio::time::{sleep, timeout, Instant};

const LEASE: Duration = Duration::from_millis(1000);
const REAP: Duration = Duration::from_millis(200);
const HEARTBEAT: Duration = Duration::from_millis(300);
/// How long an outage lasts in these tests.
const OUTAGE: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(5);

fn store(urls: Vec<String>, cluster: bool, prefix: &str, instance: &str) -> Arc<dyn PresenceStore> {
    store_with(urls, cluster, prefix, instance, HEARTBEAT)
}

/// A store whose room keys live three `heartbeat`s.
fn store_with(
    urls: Vec<String>,
    cluster: bool,
    prefix: &str,
    instance: &str,
    heartbeat: Duration,
) -> Arc<dyn PresenceStore> {
    Arc::new(RedisStore::new(
        RedisOptions {
            urls,
            cluster,
            prefix: prefix.into(),
            lease: LEASE,
            reap: REAP,
            heartbeat,
            ca_file: None,
        },
        instance.into(),
    ))
}

fn room(name: &str) -> RoomId {
    RoomId::parse_or_lobby(name)
}

fn entry(name: &str) -> Entry {
    let user = UserHints {
        name: Some(name.into()),
        ..Default::default()
    };
    Entry {
        tabs: 1,
        verified: None,
        ..Entry::new(user, RawJson::empty_object(), 1_700_000_000_000).stamped(1_700_000_000_000)
    }
}

fn id(name: &str) -> Id {
    name.into()
}

/// Wait for the next feed item that `pick` accepts, skipping others.
async fn wait_for<T>(
    rx: &mut FeedReceiver,
    what: &str,
    mut pick: impl FnMut(Feed) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        {
            Ok(Some(item)) => {
                if let Some(found) = pick(item) {
                    return found;
                }
            }
            other => panic!("no {what} in time: {other:?}"),
        }
    }
}

async fn resynced(rx: &mut FeedReceiver, want: &RoomId) {
    wait_for(rx, "resync", |f| match f {
        Feed::Resync { room } if room == *want => Some(()),
        _ => None,
    })
    .await
}

async fn change(rx: &mut FeedReceiver) -> (RoomId, Change) {
    wait_for(rx, "change", |f| match f {
        Feed::Change { room, change } => Some((room, change)),
        _ => None,
    })
    .await
}

/// The first change newer than `version`. Pub/sub may hand over a message twice when the
/// connection is replaced under load (the hub drops such stale versions); skip those.
async fn change_after(rx: &mut FeedReceiver, version: u64) -> Change {
    wait_for(rx, "newer change", |f| match f {
        Feed::Change { change, .. } if change.version > version => Some(change),
        _ => None,
    })
    .await
}

/// `Reconnected`, then a `Resync` for each of `rooms` (in any order).
async fn recovered(rx: &mut FeedReceiver, rooms: &[RoomId]) {
    let mut pending: HashSet<RoomId> = rooms.iter().cloned().collect();
    wait_for(rx, "reconnected", |f| {
        matches!(f, Feed::Reconnected).then_some(())
    })
    .await;
    while !pending.is_empty() {
        let room = wait_for(rx, "resync after reconnect", |f| match f {
            Feed::Resync { room } => Some(room),
            _ => None,
        })
        .await;
        pending.remove(&room);
    }
}

async fn until_down(s: &Arc<dyn PresenceStore>) {
    let deadline = Instant::now() + WAIT;
    while s.health().connected {
        assert!(Instant::now() < deadline, "the outage was never noticed");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_without_redis_comes_up_when_redis_does() {
    let mut server = RedisServer::start();
    server.kill();
    let prefix = unique_prefix("down-at-start");
    let a = store(vec![server.url()], false, &prefix, "a");
    let mut feed = a.take_feed().unwrap();
    let r = room("late");
    a.watch(&r);

    let started = Instant::now();
    let err = a.upsert(&r, &id("x"), &entry("X")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "fails fast"
    );
    let started = Instant::now();
    assert!(a.snapshot(&r).await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "and faster once known down"
    );
    let health = a.health();
    assert!(!health.connected);
    assert!(health.detail.contains("unreachable"), "{}", health.detail);

    sleep(OUTAGE).await;
    server.restart();
    recovered(&mut feed, std::slice::from_ref(&r)).await;
    assert!(a.health().connected, "{}", a.health().detail);
    let c = a.upsert(&r, &id("x"), &entry("X")).await.unwrap();
    assert_eq!(c.version, 1);
    assert_eq!(change(&mut feed).await.1.version, 1, "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_loses_the_data_is_repaired_by_registering_again() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("restart-lost");
    let a = store(vec![server.url()], false, &prefix, "a");
    let c = store(vec![server.url()], false, &prefix, "c");
    let r = room("lost");
    let (mut feed_a, mut feed_c) = (a.take_feed().unwrap(), c.take_feed().unwrap());
    a.watch(&r);
    c.watch(&r);
    resynced(&mut feed_a, &r).await;
    resynced(&mut feed_c, &r).await;
    a.upsert(&r, &id("x"), &entry("X")).await.unwrap();
    c.upsert(&r, &id("y"), &entry("Y")).await.unwrap();
    for feed in [&mut feed_a, &mut feed_c] {
        assert_eq!(change(feed).await.1.version, 1);
        assert_eq!(change(feed).await.1.version, 2);
    }

    server.kill();
    until_down(&a).await;
    until_down(&c).await;
    assert!(a.upsert(&r, &id("z"), &entry("Z")).await.is_err());
    assert!(a.health().detail.contains("unreachable"));
    sleep(OUTAGE).await;
    server.restart();

    for feed in [&mut feed_a, &mut feed_c] {
        recovered(feed, std::slice::from_ref(&r)).await;
    }
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!(
        (state.version, state.entries.len()),
        (0, 0),
        "the data is gone"
    );
    // What the hub does on Reconnected.
    a.register(&r, &[(id("x"), Some(entry("X")))])
        .await
        .unwrap()
        .unwrap();
    c.register(&r, &[(id("y"), Some(entry("Y")))])
        .await
        .unwrap()
        .unwrap();
    let state = c.snapshot(&r).await.unwrap();
    assert_eq!((state.version, state.entries.len()), (2, 2));
    for feed in [&mut feed_a, &mut feed_c] {
        assert_eq!(change(feed).await.1.version, 1);
        assert_eq!(change(feed).await.1.version, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_keeps_the_data_reaps_no_live_instance() {
    let mut server = RedisServer::start_persistent();
    let prefix = unique_prefix("restart-kept");
    let urls = vec![server.url()];
    // Room keys outlive the outage (three of these heartbeats); the leases do not.
    let keys_live = Duration::from_secs(2);
    let a = store_with(urls.clone(), false, &prefix, "a", keys_live);
    let c = store_with(urls.clone(), false, &prefix, "c", keys_live);
    let r = room("kept");
    let mut feed_c = c.take_feed().unwrap();
    c.watch(&r);
    resynced(&mut feed_c, &r).await;
    a.upsert(&r, &id("x"), &entry("X")).await.unwrap();
    c.upsert(&r, &id("y"), &entry("Y")).await.unwrap();
    a.heartbeat(std::slice::from_ref(&r)).await.unwrap();

    server.stop_saving();
    // Every lease in the saved data runs out while Redis is away.
    sleep(LEASE + OUTAGE).await;
    // `a` comes back later than `c` (its process restarts, say): a fresh store, same name.
    drop(a);
    server.restart();
    recovered(&mut feed_c, std::slice::from_ref(&r)).await;
    assert_eq!(
        c.register(&r, &[(id("y"), Some(entry("Y")))])
            .await
            .unwrap(),
        None,
        "the data was kept"
    );
    sleep(LEASE / 2).await;
    let a = store(urls, false, &prefix, "a");
    assert_eq!(
        a.register(&r, &[(id("x"), Some(entry("X")))])
            .await
            .unwrap(),
        None
    );

    // Both refresh as their hubs do, for well past c's settling time.
    let until = Instant::now() + LEASE * 3;
    while Instant::now() < until {
        a.heartbeat(std::slice::from_ref(&r)).await.unwrap();
        c.heartbeat(std::slice::from_ref(&r)).await.unwrap();
        sleep(HEARTBEAT).await;
    }
    while let Ok(item) = feed_c.try_recv() {
        if let Feed::Change { change, .. } = item {
            let removals = change
                .ops
                .iter()
                .filter(|op| matches!(op, Op::Remove { .. }))
                .count();
            assert_eq!(removals, 0, "nobody live was reaped: {change:?}");
        }
    }
    let state = c.snapshot(&r).await.unwrap();
    assert_eq!(state.entries.len(), 2, "{state:?}");
}

/// Drop every connection `kill` names and check that each watched room's subscription
/// comes back: changes to every one of them reach the watcher again.
async fn every_room_resubscribes(
    urls: Vec<String>,
    cluster: bool,
    kill: impl FnOnce(),
    rooms: usize,
) {
    let prefix = unique_prefix("resubscribe");
    let watcher = store(urls.clone(), cluster, &prefix, "w");
    let writer = store(urls, cluster, &prefix, "v");
    let rooms: Vec<RoomId> = (0..rooms).map(|i| room(&format!("room-{i}"))).collect();
    let mut feed = watcher.take_feed().unwrap();
    for r in &rooms {
        watcher.watch(r);
    }
    let mut pending: HashSet<RoomId> = rooms.iter().cloned().collect();
    while !pending.is_empty() {
        let r = wait_for(&mut feed, "first resync", |f| match f {
            Feed::Resync { room } => Some(room),
            _ => None,
        })
        .await;
        pending.remove(&r);
    }

    kill();
    recovered(&mut feed, &rooms).await;

    // The writer may be recovering too: retry each write, bounded.
    for r in &rooms {
        let deadline = Instant::now() + WAIT;
        while writer.upsert(r, &id("x"), &entry("X")).await.is_err() {
            assert!(Instant::now() < deadline, "writes never came back");
            sleep(Duration::from_millis(50)).await;
        }
    }
    let mut pending: HashSet<RoomId> = rooms.iter().cloned().collect();
    while !pending.is_empty() {
        let (r, _) = change(&mut feed).await;
        pending.remove(&r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resubscribe_every_room() {
    let server = RedisServer::start();
    every_room_resubscribes(vec![server.url()], false, || server.kill_clients(), 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_client_id_is_supervised_all_the_same() {
    // As a managed Redis that renames or denies CLIENT: liveness and silent reconnects
    // must then be told another way (HELLO's connection id).
    let server = RedisServer::start_with(Setup {
        client_command: Some("herenow-test-client".into()),
        ..Setup::default()
    });
    let refused = server.cli(&["CLIENT", "ID"]);
    assert!(refused.contains("unknown command"), "{refused}");
    every_room_resubscribes(vec![server.url()], false, || server.kill_clients(), 10).await;
    let prefix = unique_prefix("no-client");
    let a = store(vec![server.url()], false, &prefix, "a");
    let r = room("no-client");
    a.heartbeat(std::slice::from_ref(&r)).await.unwrap();
    assert!(a.health().connected, "{}", a.health().detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_after_start_is_an_outage_that_says_so() {
    let mut server = RedisServer::start_with(Setup {
        password: Some("first-pw".into()),
        ..Setup::default()
    });
    let options = RedisOptions {
        urls: vec![server.url()],
        cluster: false,
        prefix: unique_prefix("rotated"),
        lease: LEASE,
        reap: REAP,
        heartbeat: HEARTBEAT,
        ca_file: None,
    };
    let a: Arc<dyn PresenceStore> = Arc::new(
        RedisStore::open(options, "a".into())
            .await
            .expect("the password is right at start"),
    );
    assert!(a.health().connected, "{}", a.health().detail);
    let mut feed = a.take_feed().unwrap();
    let r = room("rotated");
    a.watch(&r);
    resynced(&mut feed, &r).await;

    // The password is rotated and the connection drops: no exit, an outage that names
    // its cause.
    server.cli(&["CONFIG", "SET", "requirepass", "second-pw"]);
    server.setup.password = Some("second-pw".into());
    server.kill_clients();
    until_down(&a).await;
    let deadline = Instant::now() + WAIT;
    while !a.health().detail.contains("WRONGPASS") {
        assert!(Instant::now() < deadline, "{}", a.health().detail);
        sleep(Duration::from_millis(20)).await;
    }
    let detail = a.health().detail;
    assert!(
        detail.contains("check the user name and password in REDIS_URL"),
        "{detail}"
    );
    assert!(
        detail.contains("serving local rosters, reconnecting"),
        "{detail}"
    );
    assert!(!detail.contains("first-pw"), "{detail}");
    assert!(a.upsert(&r, &id("x"), &entry("X")).await.is_err());

    // Back to the password it knows: it recovers on its own.
    server.cli(&["CONFIG", "SET", "requirepass", "first-pw"]);
    server.setup.password = Some("first-pw".into());
    recovered(&mut feed, std::slice::from_ref(&r)).await;
    assert!(a.health().connected, "{}", a.health().detail);
    a.upsert(&r, &id("x"), &entry("X")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_dropping_its_connections_resubscribes_every_room() {
    let cluster = RedisCluster::start();
    // Many rooms, so every node holds a good share of the sharded channels.
    every_room_resubscribes(cluster.urls(), true, || cluster.nodes[0].kill_clients(), 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stalled_past_its_lease_writes_its_entries_again() {
    let server = RedisServer::start();
    let prefix = unique_prefix("stalled");
    let r = room("stalled");
    let c = store(vec![server.url()], false, &prefix, "c");
    let mut feed_c = c.take_feed().unwrap();
    c.watch(&r);
    resynced(&mut feed_c, &r).await;

    // `a` runs on a runtime of its own, which the test then freezes for two leases: its
    // link stays up but its lease lapses, and `c` reaps its entry.
    let (to_a, orders) = std::sync::mpsc::channel::<()>();
    let (url, prefix_a, room_a) = (server.url(), prefix.clone(), r.clone());
    let a = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let a = store(vec![url], false, &prefix_a, "a");
            let mut feed = a.take_feed().unwrap();
            // The first connection's own Reconnected.
            wait_for(&mut feed, "connected", |f| {
                matches!(f, Feed::Reconnected).then_some(())
            })
            .await;
            a.upsert(&room_a, &id("x"), &entry("X")).await.unwrap();
            orders.recv().unwrap();
            std::thread::sleep(LEASE * 2);
            // What the hub does on Reconnected.
            wait_for(&mut feed, "reconnected", |f| {
                matches!(f, Feed::Reconnected).then_some(())
            })
            .await;
            a.register(&room_a, &[(id("x"), Some(entry("X")))])
                .await
                .unwrap()
        })
    });
    assert_eq!(change(&mut feed_c).await.1.version, 1);
    c.upsert(&r, &id("y"), &entry("Y")).await.unwrap();
    assert_eq!(change(&mut feed_c).await.1.version, 2);
    to_a.send(()).unwrap();
    let reaped = change_after(&mut feed_c, 2).await;
    assert!(
        matches!(&reaped.ops[..], [Op::Remove { instance, .. }] if &**instance == "a"),
        "{reaped:?}"
    );
    let again = tokio::task::spawn_blocking(move || a.join().unwrap())
        .await
        .unwrap()
        .expect("x is written again");
    assert_eq!(again.version, 4);
    let back = change_after(&mut feed_c, 3).await;
    assert_eq!(back.version, 4);
    assert_eq!(c.snapshot(&r).await.unwrap().entries.len(), 2);
}

//! One contract, every store: the same tests run against the memory store, Redis, and a
//! Redis Cluster, each of the two also over TLS with a password (`rediss://` and a
//! private CA, as a managed Redis is reached; see the `PresenceStore` doc comment for
//! the contract itself). Each test plays two or three instances on one shared backend;
//! the Redis ones share one server (and one cluster) of each kind per test process,
//! each test under its own key prefix.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::redis::{unique_prefix, RedisCluster, RedisServer, Setup};
use herenow::protocol::{Id, RawJson, RoomId, Status, UserHints};
use herenow::room::{Change, Entry, Op, Stamp};
use herenow::store::memory::{MemoryBackend, MemoryStore};
use herenow::store::redis::{RedisOptions, RedisStore};
use herenow::store::{Feed, FeedReceiver, PresenceStore, StoreEvent};
use tokio::time::{timeout, Instant};

/// Shortened timings: leases of one second, so expiry tests take about that long.
const LEASE: Duration = Duration::from_millis(1000);
const REAP: Duration = Duration::from_millis(200);
const HEARTBEAT: Duration = Duration::from_millis(300);
/// Longest any expected feed item may take.
const WAIT: Duration = Duration::from_secs(5);

static REDIS: OnceLock<RedisServer> = OnceLock::new();
static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
static TLS: OnceLock<RedisServer> = OnceLock::new();
static TLS_CLUSTER: OnceLock<RedisCluster> = OnceLock::new();

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Memory,
    Redis,
    Cluster,
    /// One node, TLS only, with a password.
    Tls,
    /// A cluster, TLS only (the bus too), with a password.
    TlsCluster,
}

/// Instances of one store kind sharing one backend.
struct Backend {
    kind: Kind,
    memory: Arc<MemoryBackend>,
    prefix: String,
}

impl Backend {
    fn new(kind: Kind, test: &str) -> Backend {
        match kind {
            Kind::Redis => {
                REDIS.get_or_init(RedisServer::start);
            }
            Kind::Cluster => {
                CLUSTER.get_or_init(RedisCluster::start);
            }
            Kind::Tls => {
                TLS.get_or_init(|| RedisServer::start_with(Setup::tls_with_password()));
            }
            Kind::TlsCluster => {
                TLS_CLUSTER.get_or_init(|| RedisCluster::start_with(Setup::tls_with_password()));
            }
            Kind::Memory => {}
        }
        Backend {
            kind,
            memory: MemoryBackend::new(),
            prefix: unique_prefix(test),
        }
    }

    fn store(&self, instance: &str) -> Arc<dyn PresenceStore> {
        let redis = |urls: Vec<String>, cluster: bool, setup: &Setup| -> Arc<dyn PresenceStore> {
            Arc::new(RedisStore::new(
                RedisOptions {
                    urls,
                    cluster,
                    prefix: self.prefix.clone(),
                    lease: LEASE,
                    reap: REAP,
                    heartbeat: HEARTBEAT,
                    ca_file: setup.ca_file(),
                },
                instance.into(),
            ))
        };
        match self.kind {
            Kind::Memory => Arc::new(MemoryStore::with_backend(
                self.memory.clone(),
                instance.into(),
                LEASE,
            )),
            Kind::Redis => {
                let server = REDIS.get().unwrap();
                redis(vec![server.url()], false, &server.setup)
            }
            Kind::Cluster => {
                let cluster = CLUSTER.get().unwrap();
                redis(cluster.urls(), true, &cluster.nodes[0].setup)
            }
            Kind::Tls => {
                let server = TLS.get().unwrap();
                redis(vec![server.url()], false, &server.setup)
            }
            Kind::TlsCluster => {
                let cluster = TLS_CLUSTER.get().unwrap();
                redis(cluster.urls(), true, &cluster.nodes[0].setup)
            }
        }
    }

    /// What is left of rooms in the backend (Redis: room keys found by SCAN).
    fn leftovers(&self) -> Vec<String> {
        let pattern = format!("{}:{{*", self.prefix);
        match self.kind {
            Kind::Memory => (0..self.memory.room_count())
                .map(|i| format!("memory room {i}"))
                .collect(),
            Kind::Redis => REDIS.get().unwrap().keys(&pattern),
            Kind::Cluster => CLUSTER.get().unwrap().keys(&pattern),
            Kind::Tls => TLS.get().unwrap().keys(&pattern),
            Kind::TlsCluster => TLS_CLUSTER.get().unwrap().keys(&pattern),
        }
    }
}

fn room(name: &str) -> RoomId {
    assert!(RoomId::is_valid(name));
    RoomId::parse_or_lobby(name)
}

fn id(name: &str) -> Id {
    name.into()
}

/// An entry as a store keeps it: stamped already (see `stamps_are_the_stores_time`).
fn entry(name: &str, tabs: u32) -> Entry {
    let user = UserHints {
        name: Some(name.into()),
        ..Default::default()
    };
    let state = RawJson::from_value(&serde_json::json!({"status": name, "n": 1.5}));
    Entry {
        tabs,
        verified: None,
        ..Entry::new(user, state, 1_700_000_000_000).stamped(1_700_000_000_000)
    }
}

/// The next change or event (resyncs and reconnects are skipped), if one comes in time.
async fn next_item(rx: &mut FeedReceiver, within: Duration) -> Option<Feed> {
    let deadline = Instant::now() + within;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        {
            Ok(Some(Feed::Resync { .. } | Feed::Reconnected)) => continue,
            Ok(item) => return item,
            Err(_) => return None,
        }
    }
}

async fn next_change(rx: &mut FeedReceiver) -> Change {
    match next_item(rx, WAIT).await {
        Some(Feed::Change { change, .. }) => change,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// Wait until the watch of `room` is active.
async fn resynced(rx: &mut FeedReceiver, want: &RoomId) {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        {
            Ok(Some(Feed::Resync { room })) if room == *want => return,
            Ok(Some(_)) => continue,
            other => panic!("no resync of {want}: {other:?}"),
        }
    }
}

async fn watching(store: &Arc<dyn PresenceStore>, room: &RoomId) -> FeedReceiver {
    let mut rx = store.take_feed().expect("feed");
    store.watch(room);
    resynced(&mut rx, room).await;
    rx
}

fn upserted(change: &Change) -> Vec<(String, String)> {
    change
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Upsert { instance, id, .. } => Some((instance.to_string(), id.to_string())),
            Op::Remove { .. } => None,
        })
        .collect()
}

fn removed(change: &Change) -> Vec<(String, String)> {
    change
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Remove { instance, id } => Some((instance.to_string(), id.to_string())),
            Op::Upsert { .. } => None,
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---- the contract ----------------------------------------------------------------------

async fn unknown_room_is_empty_at_version_0(b: Backend) {
    let a = b.store("a");
    let r = room("nowhere");
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!((state.version, state.entries.len()), (0, 0));
    assert_eq!(a.remove(&r, &id("x")).await.unwrap(), None);
    assert_eq!(a.register(&r, &[]).await.unwrap(), None);
    assert_eq!(
        a.heartbeat(std::slice::from_ref(&r)).await.unwrap(),
        vec![(r, 0)]
    );
    assert!(b.leftovers().is_empty(), "reads leave nothing behind");
}

async fn upsert_and_remove_bump_the_version_by_one(b: Backend) {
    let a = b.store("a");
    let r = room("versions");
    let c1 = a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    assert_eq!(c1.version, 1);
    assert_eq!(
        c1.ops,
        vec![Op::Upsert {
            instance: "a".into(),
            id: id("x"),
            entry: entry("X", 1)
        }]
    );
    let c2 = a.upsert(&r, &id("x"), &entry("X2", 2)).await.unwrap();
    assert_eq!(c2.version, 2);
    let c3 = a.upsert(&r, &id("y"), &entry("Y", 1)).await.unwrap();
    assert_eq!(c3.version, 3);
    let c4 = a.remove(&r, &id("x")).await.unwrap().expect("x was there");
    assert_eq!((c4.version, removed(&c4)), (4, pairs(&[("a", "x")])));
    assert_eq!(a.remove(&r, &id("x")).await.unwrap(), None, "idempotent");
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!(state.version, 4);
    assert_eq!(state.entries.len(), 1);
    let y = &state.entries[0];
    assert_eq!(
        (&*y.instance, &*y.id, &y.entry, y.stamp),
        ("a", "y", &entry("Y", 1), 3)
    );
}

async fn a_batch_of_writes_is_one_change(b: Backend) {
    let a = b.store("a");
    let r = room("batch");
    // Removals alone in an unknown room: nothing, and no key.
    assert_eq!(a.write(&r, &[(id("ghost"), None)]).await.unwrap(), None);
    assert_eq!(a.snapshot(&r).await.unwrap().version, 0);
    a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    let batch = [
        (id("x"), None),
        (id("y"), Some(entry("Y", 1))),
        (id("absent"), None),
        (id("z"), Some(entry("Z", 2))),
    ];
    let c = a.write(&r, &batch).await.unwrap().expect("a change");
    assert_eq!(c.version, 2, "one version for the whole batch");
    assert_eq!(
        removed(&c),
        pairs(&[("a", "x")]),
        "an absent entry is no op"
    );
    assert_eq!(upserted(&c), pairs(&[("a", "y"), ("a", "z")]));
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!(state.version, 2);
    let mut ids: Vec<&str> = state.entries.iter().map(|s| &*s.id).collect();
    ids.sort();
    assert_eq!(ids, ["y", "z"]);
    assert!(state.entries.iter().all(|s| s.stamp == 2));
}

async fn entries_are_per_instance(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("two-instances");
    a.upsert(&r, &id("x"), &entry("on a", 1)).await.unwrap();
    c.upsert(&r, &id("x"), &entry("on c", 2)).await.unwrap();
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!(state.entries.len(), 2, "one entry per instance");
    let change = a.remove(&r, &id("x")).await.unwrap().unwrap();
    assert_eq!(removed(&change), pairs(&[("a", "x")]));
    let state = c.snapshot(&r).await.unwrap();
    assert_eq!(state.version, 3);
    assert_eq!(state.entries.len(), 1);
    assert_eq!(
        (&*state.entries[0].instance, state.entries[0].entry.tabs),
        ("c", 2)
    );
    assert_eq!(
        c.remove(&r, &id("nobody")).await.unwrap(),
        None,
        "removing an absent entry changes nothing"
    );
}

async fn register_makes_this_instances_entries_exact(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("register");
    a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    a.upsert(&r, &id("y"), &entry("Y", 1)).await.unwrap();
    c.upsert(&r, &id("x"), &entry("X on c", 1)).await.unwrap();
    let change = a
        .register(
            &r,
            &[
                (id("y"), Some(entry("Y", 1))),
                (id("z"), Some(entry("Z", 1))),
            ],
        )
        .await
        .unwrap()
        .expect("x goes, z comes");
    assert_eq!(change.version, 4, "one change, one version");
    assert_eq!(removed(&change), pairs(&[("a", "x")]));
    assert_eq!(upserted(&change), pairs(&[("a", "z")]), "y was equal");
    let again = a
        .register(
            &r,
            &[
                (id("y"), Some(entry("Y", 1))),
                (id("z"), Some(entry("Z", 1))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again, None, "nothing to change");
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!(state.version, 4);
    assert_eq!(state.entries.len(), 3, "c's entry is not a's to touch");
    let last = a.register(&r, &[]).await.unwrap().unwrap();
    assert_eq!(removed(&last).len(), 2);
    assert_eq!(c.snapshot(&r).await.unwrap().entries.len(), 1);
}

async fn a_register_names_what_this_instance_removed_and_marks_a_writer(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("writers");
    c.upsert(&r, &id("held"), &entry("H", 1)).await.unwrap();
    let state = c.snapshot(&r).await.unwrap();
    assert_eq!(state.writers, vec![herenow::room::InstanceId::from("c")]);
    // A heartbeat alone does not make a writer.
    a.heartbeat(std::slice::from_ref(&r)).await.unwrap();
    assert!(!c.snapshot(&r).await.unwrap().writers.contains(&"a".into()));
    // a removed "gone" while it could not write; the store never had it. The change
    // still names the removal, so instances that show it learn it is gone.
    let change = a
        .register(&r, &[(id("kept"), Some(entry("K", 1))), (id("gone"), None)])
        .await
        .unwrap()
        .expect("a change");
    assert_eq!(removed(&change), pairs(&[("a", "gone")]));
    assert_eq!(upserted(&change), pairs(&[("a", "kept")]));
    let state = c.snapshot(&r).await.unwrap();
    let mut writers: Vec<String> = state.writers.iter().map(|w| w.to_string()).collect();
    writers.sort();
    assert_eq!(writers, ["a", "c"]);
    assert_eq!(state.entries.len(), 2);
}

async fn an_empty_room_leaves_nothing_behind(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("empty-at-the-end");
    a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    c.upsert(&r, &id("y"), &entry("Y", 1)).await.unwrap();
    a.heartbeat(std::slice::from_ref(&r)).await.unwrap();
    assert!(!b.leftovers().is_empty());
    a.remove(&r, &id("x")).await.unwrap().unwrap();
    let last = c.remove(&r, &id("y")).await.unwrap().unwrap();
    assert_eq!(last.version, 4);
    assert!(b.leftovers().is_empty(), "left: {:?}", b.leftovers());
    let state = a.snapshot(&r).await.unwrap();
    assert_eq!((state.version, state.entries.len()), (0, 0));
    let fresh = a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    assert_eq!(fresh.version, 1, "the version starts again");
    a.register(&r, &[]).await.unwrap().unwrap();
    assert!(b.leftovers().is_empty(), "left: {:?}", b.leftovers());
}

async fn the_feed_echoes_every_change_in_version_order(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("order");
    let mut feed_a = watching(&a, &r).await;
    let mut feed_c = watching(&c, &r).await;
    let writer = |store: Arc<dyn PresenceStore>, r: RoomId, who: &'static str| async move {
        for i in 0..10 {
            let n = format!("{who}{i}");
            store.upsert(&r, &id(&n), &entry(&n, 1)).await.unwrap();
        }
    };
    tokio::join!(
        writer(a.clone(), r.clone(), "a"),
        writer(c.clone(), r.clone(), "c")
    );
    for feed in [&mut feed_a, &mut feed_c] {
        for version in 1..=20 {
            assert_eq!(next_change(feed).await.version, version);
        }
    }
    let state = c.snapshot(&r).await.unwrap();
    assert_eq!((state.version, state.entries.len()), (20, 20));
}

async fn events_reach_only_the_other_instances(b: Backend) {
    let (a, c, d) = (b.store("a"), b.store("c"), b.store("d"));
    let r = room("events");
    let mut feed_a = watching(&a, &r).await;
    let mut feed_c = watching(&c, &r).await;
    let mut feed_d = watching(&d, &r).await;
    let event = StoreEvent {
        from: id("x"),
        event: "typing".into(),
        data: RawJson::from_value(&serde_json::json!({"typing": true})),
    };
    a.publish(&r, &event).await.unwrap();
    for feed in [&mut feed_c, &mut feed_d] {
        match next_item(feed, WAIT).await {
            Some(Feed::Event { room, event: got }) => {
                assert_eq!((room, got), (r.clone(), event.clone()));
            }
            other => panic!("expected the event, got {other:?}"),
        }
    }
    assert!(
        next_item(&mut feed_a, Duration::from_millis(300))
            .await
            .is_none(),
        "never to its own instance"
    );
    assert!(b.leftovers().is_empty(), "events are not stored");
    d.unwatch(&r);
    // Unwatch takes effect in call order; a later event does not reach d.
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.publish(&r, &event).await.unwrap();
    assert!(next_item(&mut feed_c, WAIT).await.is_some());
    assert!(next_item(&mut feed_d, Duration::from_millis(300))
        .await
        .is_none());
}

async fn heartbeats_change_nothing_when_nothing_changed(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("quiet");
    let mut feed_a = watching(&a, &r).await;
    let mut feed_c = watching(&c, &r).await;
    a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    c.upsert(&r, &id("y"), &entry("Y", 1)).await.unwrap();
    for feed in [&mut feed_a, &mut feed_c] {
        assert_eq!(next_change(feed).await.version, 1);
        assert_eq!(next_change(feed).await.version, 2);
    }
    let other = room("quiet-elsewhere");
    for _ in 0..5 {
        let got = a.heartbeat(&[r.clone(), other.clone()]).await.unwrap();
        assert_eq!(got, vec![(r.clone(), 2), (other.clone(), 0)]);
        assert_eq!(
            c.heartbeat(std::slice::from_ref(&r)).await.unwrap(),
            vec![(r.clone(), 2)]
        );
        tokio::time::sleep(HEARTBEAT).await;
    }
    assert!(next_item(&mut feed_a, Duration::from_millis(200))
        .await
        .is_none());
    assert!(next_item(&mut feed_c, Duration::from_millis(10))
        .await
        .is_none());
    assert_eq!(a.snapshot(&r).await.unwrap().version, 2);
}

async fn an_expired_lease_prunes_that_instances_entries(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("lease");
    let mut feed_c = watching(&c, &r).await;
    a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    a.upsert(&r, &id("both"), &entry("B on a", 1))
        .await
        .unwrap();
    c.upsert(&r, &id("both"), &entry("B on c", 1))
        .await
        .unwrap();
    for v in 1..=3 {
        assert_eq!(next_change(&mut feed_c).await.version, v);
    }
    // `a` stops refreshing anything, as a crashed instance does.
    a.shutdown().await;
    drop(a);
    let started = Instant::now();
    let change = loop {
        assert!(
            started.elapsed() < LEASE + Duration::from_secs(4),
            "a's entries were never pruned"
        );
        c.heartbeat(std::slice::from_ref(&r)).await.unwrap();
        if let Some(Feed::Change { change, .. }) = next_item(&mut feed_c, REAP).await {
            break change;
        }
    };
    assert_eq!(change.version, 4, "one change for all of a's entries");
    let mut gone = removed(&change);
    gone.sort();
    assert_eq!(gone, pairs(&[("a", "both"), ("a", "x")]));
    let state = c.snapshot(&r).await.unwrap();
    assert_eq!(state.version, 4);
    assert_eq!(state.entries.len(), 1, "c kept refreshing: its entry stays");
    assert_eq!(&*state.entries[0].instance, "c");
    c.remove(&r, &id("both")).await.unwrap().unwrap();
    assert!(b.leftovers().is_empty(), "left: {:?}", b.leftovers());
}

async fn a_live_instance_is_never_pruned(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("alive");
    let mut feed_c = watching(&c, &r).await;
    a.upsert(&r, &id("x"), &entry("X", 1)).await.unwrap();
    assert_eq!(next_change(&mut feed_c).await.version, 1);
    // Both heartbeat, as their hubs do, for several leases.
    let until = Instant::now() + LEASE * 3;
    while Instant::now() < until {
        a.heartbeat(std::slice::from_ref(&r)).await.unwrap();
        c.heartbeat(std::slice::from_ref(&r)).await.unwrap();
        tokio::time::sleep(HEARTBEAT).await;
    }
    assert!(next_item(&mut feed_c, Duration::from_millis(10))
        .await
        .is_none());
    assert_eq!(c.snapshot(&r).await.unwrap().entries.len(), 1);
}

/// Ms since the Unix epoch by this machine's clock: the clock of the memory store, and
/// the one the test's Redis reads for `TIME`.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The entry a write carried in `change`.
fn written(change: &Change) -> Entry {
    match &change.ops[..] {
        [Op::Upsert { entry, .. }] => entry.clone(),
        other => panic!("one upsert expected: {other:?}"),
    }
}

async fn stamps_are_the_stores_time(b: Backend) {
    let (a, c) = (b.store("a"), b.store("c"));
    let r = room("stamps");
    let mut feed = watching(&c, &r).await;
    // A state and a location that look like the stamps must not be taken for them.
    let decoy = serde_json::json!({"statusSince": "now", "activeAt": "now"});
    let pending = Entry {
        status: Status::Away,
        location: Some(r#","statusSince":"now","activeAt":"now"}"#.into()),
        tabs: 1,
        ..Entry::new(
            UserHints::default(),
            RawJson::from_value(&decoy),
            1_700_000_000_000,
        )
    };
    let before = wall_ms();
    let change = a.upsert(&r, &id("x"), &pending).await.unwrap();
    let after = wall_ms();
    let stored = written(&change);
    let Stamp::At(t) = stored.status_since else {
        panic!("not stamped: {stored:?}");
    };
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    assert_eq!(stored.active_at, Stamp::At(t), "one time per write");
    assert_eq!(stored, pending.clone().stamped(t), "nothing else touched");
    // Every reader sees the same stamped entry: the snapshot, and the other instance.
    assert_eq!(a.snapshot(&r).await.unwrap().entries[0].entry, stored);
    assert_eq!(written(&next_change(&mut feed).await), stored);
    // A stamped entry is kept as it is; a half-pending one gets the time where it asks.
    let mut half = stored.clone();
    half.status_since = Stamp::Now(7);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = written(&a.upsert(&r, &id("x"), &half).await.unwrap());
    assert_eq!(again.active_at, Stamp::At(t));
    assert!(again.status_since.at().unwrap() >= t);
    // register stamps what is pending, and keeps what is stamped and equal.
    let change = a
        .register(
            &r,
            &[
                (id("x"), Some(again.clone())),
                (id("y"), Some(pending.clone())),
            ],
        )
        .await
        .unwrap()
        .expect("y is new");
    assert_eq!(upserted(&change), pairs(&[("a", "y")]));
    assert!(written(&change).status_since.at().is_some());
    assert_eq!(
        a.register(
            &r,
            &[(id("x"), Some(again)), (id("y"), Some(written(&change)))]
        )
        .await
        .unwrap(),
        None,
        "stamped and equal: nothing to change"
    );
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::new(super::Kind::Memory, stringify!($test))).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::new(super::Kind::Redis, stringify!($test))).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::new(super::Kind::Cluster, stringify!($test))).await;
                }
            )*
        }
        mod tls {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::new(super::Kind::Tls, stringify!($test))).await;
                }
            )*
        }
        mod tls_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::new(super::Kind::TlsCluster, stringify!($test))).await;
                }
            )*
        }
    };
}

suite!(
    unknown_room_is_empty_at_version_0,
    upsert_and_remove_bump_the_version_by_one,
    a_batch_of_writes_is_one_change,
    entries_are_per_instance,
    register_makes_this_instances_entries_exact,
    a_register_names_what_this_instance_removed_and_marks_a_writer,
    an_empty_room_leaves_nothing_behind,
    the_feed_echoes_every_change_in_version_order,
    events_reach_only_the_other_instances,
    heartbeats_change_nothing_when_nothing_changed,
    an_expired_lease_prunes_that_instances_entries,
    a_live_instance_is_never_pruned,
    stamps_are_the_stores_time,
);

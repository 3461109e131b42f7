//! The Redis store: every instance shows the same room.
//!
//! # Model
//! One room lives under one hash tag, so on a Redis Cluster it sits on one slot and a
//! script may touch all of its keys:
//! - `<prefix>:{room}:online`: sorted set, member `<instance>|<id>` (one entry per
//!   instance and presence id), score = server ms of the entry's last write;
//! - `<prefix>:{room}:meta`: hash, same member -> `{"stamp":<version>,"entry":<Entry>}`;
//! - `<prefix>:{room}:version`: the room version, bumped by exactly one per change;
//! - `<prefix>:{room}:seen`: sorted set, member `<instance>`, score = server ms when that
//!   instance last wrote or refreshed the room;
//! - channel `<prefix>:{room}:changed` (sharded pub/sub on a cluster), carrying each
//!   [`Change`] itself, and events with their origin instance.
//!
//! Every mutation is one Lua script (`lua/*.lua`, run by SHA): it updates the set and the
//! hash, bumps the version, refreshes the keys' expiry and publishes the change,
//! atomically. A room whose last entry goes is deleted whole. Times are Redis server
//! time (`TIME` in the scripts), so clock skew between instances prunes nobody.
//!
//! # Liveness
//! Each instance holds a lease in `<prefix>:leases` (a sorted set of lease expiries, one
//! key): renewed every `REAP_MS`, it runs out `LEASE_MS` after the last renewal. On
//! the same tick an instance reads the expired leases and reaps those instances' entries
//! in every room it holds, publishing the leaves: a crashed instance's members are gone
//! everywhere within lease + reap (8 s by default). The per-room `seen` score protects an
//! instance that came back: a room it refreshed after its lease expiry is not reaped. A
//! room nobody holds any more expires on its own (every key has a TTL of three
//! heartbeats), and an instance that has not refreshed a room for that long is pruned by
//! any other instance's heartbeat there (a safety net behind the leases).
//!
//! A heartbeat ([`PresenceStore::heartbeat`]) is one pipeline per Redis node (the rooms
//! grouped by the node that owns their slot): it refreshes `seen` and the expiry, and
//! bumps or publishes nothing unless it prunes someone.
//!
//! # Outages
//! The store never fails to construct: it connects in the background and reconnects
//! with a backoff capped at 500 ms, logs an outage once, reports it in
//! [`PresenceStore::health`], and fails calls fast meanwhile. Pub/sub delivers at most
//! once, so after any reconnect (a new connection, or a node's connection dropped on a
//! cluster) it renews its own lease, emits [`Feed::Reconnected`] (the hub re-registers
//! its entries), subscribes again to every watched room one by one (the crate's own
//! resubscription is not relied on) and emits [`Feed::Resync`] for each. For one lease
//! after a reconnect it reaps nobody: a Redis that restarted with its data has every
//! lease expired, and the other instances need that long to renew theirs.
//!
//! # Parts
//! - this file: [`RedisStore`], [`RedisOptions`] and the [`PresenceStore`] implementation;
//! - `link.rs`: the connection, its supervisor (connect, probe, recover, backoff) and
//!   `Inner::call`, the one time limit every Redis call runs under;
//! - `lease.rs`: this instance's lease, and reaping the members of expired instances;
//! - `pubsub.rs`: watched rooms' subscriptions, and pushes turned into the [`Feed`];
//! - `scripts.rs`: key names, the Lua scripts (`lua/*.lua`), their invocations and
//!   answers, and what travels on a room's channel;
//! - `cluster.rs`: slots, and one heartbeat pipeline per cluster node.

mod cluster;
mod lease;
mod link;
mod pubsub;
mod scripts;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use redis::PushInfo;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::{Feed, FeedReceiver, PresenceStore, StoreError, StoreEvent, StoreHealth};
use crate::protocol::{Id, RoomId};
use crate::room::{Change, Entry, InstanceId, RoomState};
use link::Link;
use pubsub::SubCmd;
use scripts::{Keys, Scripts};

/// Heartbeats a room may miss before its keys expire and before an instance that stopped
/// refreshing it is pruned there by the others.
const IDLE_HEARTBEATS: u32 = 3;

/// Where and how to reach Redis, and the liveness timings.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// One URL (`redis://[user:password@]host:port[/db]`), or a cluster's seed nodes.
    pub urls: Vec<String>,
    /// Talk to a Redis Cluster (sharded pub/sub, one pipeline per node).
    pub cluster: bool,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// An instance's lease: its members are reaped this long after its last renewal.
    pub lease: Duration,
    /// How often the lease is renewed and expired leases are reaped.
    pub reap: Duration,
    /// How often the hub calls [`PresenceStore::heartbeat`].
    pub heartbeat: Duration,
}

impl RedisOptions {
    /// The Redis settings of `config`, or `None` without `REDIS_URL`. Several
    /// comma-separated URLs mean a cluster's seed nodes.
    pub fn from_config(config: &crate::config::Config) -> Option<RedisOptions> {
        let urls: Vec<String> = config
            .redis_url
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        if urls.is_empty() {
            return None;
        }
        Some(RedisOptions {
            cluster: config.redis_cluster || urls.len() > 1,
            urls,
            prefix: config.redis_prefix.clone(),
            lease: config.lease(),
            reap: config.reap(),
            heartbeat: config.heartbeat(),
        })
    }

    /// Room key expiry, and how long an instance may leave a room unrefreshed before
    /// another prunes it there: three heartbeats, and never less than a lease and a reap
    /// (the safety net must not undercut the leases).
    fn idle(&self) -> Duration {
        (self.heartbeat * IDLE_HEARTBEATS).max(self.lease + self.reap)
    }

    /// `host:port` of every node, without credentials (for health and logs).
    fn target(&self) -> String {
        let hosts: Vec<String> = self
            .urls
            .iter()
            .map(|u| match redis::parse_redis_url(u) {
                Some(url) => format!(
                    "{}:{}",
                    url.host_str().unwrap_or("?"),
                    url.port().unwrap_or(6379)
                ),
                None => "(invalid REDIS_URL)".into(),
            })
            .collect();
        hosts.join(",")
    }
}

/// What the store's tasks and calls share.
struct Inner {
    instance: InstanceId,
    opts: RedisOptions,
    keys: Keys,
    scripts: Scripts,
    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    publish: &'static str,
    link: Mutex<Link>,
    /// Set once the first connection attempt is over, either way.
    first_attempt: watch::Sender<bool>,
    watched: Mutex<HashSet<RoomId>>,
    /// Rooms of the last heartbeat: with `watched`, the rooms this instance reaps in.
    held: Mutex<HashSet<RoomId>>,
    /// The current connection reported a disconnection.
    lost: AtomicBool,
    /// Wakes the supervisor to probe the link.
    wake: Notify,
    feed: mpsc::UnboundedSender<Feed>,
    subs: mpsc::UnboundedSender<SubCmd>,
    pushes: mpsc::UnboundedSender<(u64, PushInfo)>,
}

impl Inner {
    fn idle_ms(&self) -> u64 {
        self.opts.idle().as_millis() as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A room store in Redis shared by every instance (see the module doc).
pub struct RedisStore {
    inner: Arc<Inner>,
    feed_rx: Mutex<Option<FeedReceiver>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RedisStore {
    /// A store that connects in the background; never fails, whatever Redis is doing.
    /// Must be called inside a Tokio runtime.
    pub fn new(opts: RedisOptions, instance: InstanceId) -> RedisStore {
        let (feed, feed_rx) = mpsc::unbounded_channel();
        let (subs, subs_rx) = mpsc::unbounded_channel();
        let (pushes, pushes_rx) = mpsc::unbounded_channel();
        let publish = if opts.cluster { "SPUBLISH" } else { "PUBLISH" };
        let inner = Arc::new(Inner {
            instance,
            keys: Keys {
                prefix: opts.prefix.clone(),
            },
            opts,
            scripts: Scripts::new(),
            publish,
            link: Mutex::new(Link::new()),
            first_attempt: watch::Sender::new(false),
            watched: Mutex::default(),
            held: Mutex::default(),
            lost: AtomicBool::new(false),
            wake: Notify::new(),
            feed,
            subs,
            pushes,
        });
        let tasks = vec![
            tokio::spawn(Arc::clone(&inner).supervise()),
            tokio::spawn(Arc::clone(&inner).subscriber(subs_rx)),
            tokio::spawn(Arc::clone(&inner).receive(pushes_rx)),
        ];
        RedisStore {
            inner,
            feed_rx: Mutex::new(Some(feed_rx)),
            tasks: Mutex::new(tasks),
        }
    }

    fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let mut link = lock(&self.inner.link);
        link.conn = None;
        link.up = false;
        link.error = "shut down".into();
    }
}

impl Drop for RedisStore {
    /// Like a crash as far as Redis can tell: the entries stay until the lease runs out.
    fn drop(&mut self) {
        self.stop();
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    fn instance(&self) -> &InstanceId {
        &self.inner.instance
    }

    fn take_feed(&self) -> Option<FeedReceiver> {
        lock(&self.feed_rx).take()
    }

    async fn write(
        &self,
        room: &RoomId,
        entries: &[(Id, Option<Entry>)],
    ) -> Result<Option<Change>, StoreError> {
        let inv = self.inner.write_call(room, entries)?;
        self.inner.mutate(&inv).await
    }

    async fn register(
        &self,
        room: &RoomId,
        entries: &[(Id, Entry)],
    ) -> Result<Option<Change>, StoreError> {
        let inv = self.inner.register_call(room, entries)?;
        self.inner.mutate(&inv).await
    }

    async fn snapshot(&self, room: &RoomId) -> Result<RoomState, StoreError> {
        let inv = self.inner.snapshot_call(room);
        let mut conn = self.inner.conn().await?;
        let values = self.inner.call(inv.invoke_async(&mut conn)).await?;
        scripts::parse_snapshot(values)
    }

    async fn heartbeat(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, u64)>, StoreError> {
        *lock(&self.inner.held) = rooms.iter().cloned().collect();
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.inner.conn().await?;
        // Right after a reconnect, prune nobody: the others may not have renewed yet.
        let idle = if self.inner.settling() {
            0
        } else {
            self.inner.idle_ms()
        };
        let results = self.inner.touch(&mut conn, rooms, &[], idle).await?;
        rooms
            .iter()
            .zip(results)
            .map(|(room, r)| r.map(|(version, _)| (room.clone(), version)))
            .collect()
    }

    fn watch(&self, room: &RoomId) {
        lock(&self.inner.watched).insert(room.clone());
        let _ = self.inner.subs.send(SubCmd::Watch(room.clone()));
    }

    fn unwatch(&self, room: &RoomId) {
        lock(&self.inner.watched).remove(room);
        let _ = self.inner.subs.send(SubCmd::Unwatch(room.clone()));
    }

    async fn publish(&self, room: &RoomId, event: &StoreEvent) -> Result<(), StoreError> {
        let cmd = self.inner.publish_cmd(room, event)?;
        let mut conn = self.inner.conn().await?;
        Ok(self.inner.call(cmd.exec_async(&mut conn)).await?)
    }

    fn health(&self) -> StoreHealth {
        let link = lock(&self.inner.link);
        let mode = if self.inner.opts.cluster {
            "cluster"
        } else {
            "single node"
        };
        let target = self.inner.opts.target();
        let detail = if link.up {
            format!("connected to redis {target} ({mode})")
        } else {
            format!(
                "redis {target} ({mode}) unreachable for {:.1} s: {}; serving local rosters, reconnecting",
                link.since.elapsed().as_secs_f64(),
                link.error
            )
        };
        StoreHealth {
            kind: "redis",
            connected: link.up,
            detail,
        }
    }

    async fn shutdown(&self) {
        // No removal: the entries run out the lease, which covers the clients' grace
        // window while they reconnect to another instance.
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_config() {
        let c = crate::config::Config::parse_from_env_free(["herenow"]);
        assert!(RedisOptions::from_config(&c).is_none());
        let c = crate::config::Config::parse_from_env_free([
            "herenow",
            "--redis-url",
            "redis://a:1, redis://b:2",
        ]);
        let o = RedisOptions::from_config(&c).unwrap();
        assert!(o.cluster, "several seed nodes mean a cluster");
        assert_eq!(o.urls, ["redis://a:1", "redis://b:2"]);
        // Defaults: keys live three heartbeats (15 s); a crash is reaped within 8 s.
        assert_eq!(o.idle(), Duration::from_secs(15));
        assert!(o.lease + o.reap <= Duration::from_secs(10));
        let c = crate::config::Config::parse_from_env_free([
            "herenow",
            "--redis-url",
            "redis://user:secret@h:7000/0",
        ]);
        let o = RedisOptions::from_config(&c).unwrap();
        assert!(!o.cluster);
        assert_eq!(o.target(), "h:7000", "no credentials in health or logs");
    }
}

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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{
    FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Script,
    ScriptInvocation, Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::{Feed, FeedReceiver, PresenceStore, StoreError, StoreEvent, StoreHealth};
use crate::protocol::{Id, RoomId};
use crate::room::{Change, Entry, InstanceId, RoomState, Stamped};

/// First delay between reconnection attempts; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between reconnection attempts: an outage ends for this instance at most
/// this long after Redis is back.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one store call may wait for Redis before it fails (and the link is probed).
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long calls made right after construction wait for the first connection attempt,
/// so a server that starts with Redis up does not begin with failed writes.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(1);
/// Heartbeats a room may miss before its keys expire and before an instance that stopped
/// refreshing it is pruned there by the others.
const IDLE_HEARTBEATS: u32 = 3;
/// Rooms subscribed at once after a reconnect (each with its own command).
const RESUBSCRIBE_CONCURRENCY: usize = 32;

const ROOM_PRELUDE: &str = include_str!("lua/room.lua");

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

/// Key and channel names, all built here.
struct Keys {
    prefix: String,
}

impl Keys {
    /// online, meta, version, seen: the KEYS of every room script, in order.
    fn room(&self, room: &RoomId) -> [String; 4] {
        let p = &self.prefix;
        [
            format!("{p}:{{{room}}}:online"),
            format!("{p}:{{{room}}}:meta"),
            format!("{p}:{{{room}}}:version"),
            format!("{p}:{{{room}}}:seen"),
        ]
    }

    fn channel(&self, room: &RoomId) -> String {
        format!("{}:{{{room}}}:changed", self.prefix)
    }

    fn leases(&self) -> String {
        format!("{}:leases", self.prefix)
    }

    /// The room a channel name belongs to (only this store's own channels).
    fn room_of_channel(&self, channel: &[u8]) -> Option<RoomId> {
        let channel = std::str::from_utf8(channel).ok()?;
        let rest = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?;
        let room = rest.strip_suffix("}:changed")?;
        RoomId::is_valid(room).then(|| RoomId::parse_or_lobby(room))
    }
}

/// The scripts, each loaded by SHA (and loaded again after a Redis restart).
struct Scripts {
    upsert: Script,
    remove: Script,
    register: Script,
    touch: Script,
    snapshot: Script,
    lease: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let room = |body: &str| Script::new(&format!("{ROOM_PRELUDE}\n{body}"));
        Scripts {
            upsert: room(include_str!("lua/upsert.lua")),
            remove: room(include_str!("lua/remove.lua")),
            register: room(include_str!("lua/register.lua")),
            touch: room(include_str!("lua/touch.lua")),
            snapshot: Script::new(include_str!("lua/snapshot.lua")),
            lease: Script::new(include_str!("lua/lease.lua")),
        }
    }

    fn all(&self) -> [&Script; 6] {
        [
            &self.upsert,
            &self.remove,
            &self.register,
            &self.touch,
            &self.snapshot,
            &self.lease,
        ]
    }
}

/// What travels on a room's channel.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Wire {
    /// Written by the scripts, as text.
    Change { change: Change },
    Event {
        origin: InstanceId,
        event: StoreEvent,
    },
}

#[derive(Serialize)]
struct WireEvent<'a> {
    t: &'static str,
    origin: &'a str,
    event: &'a StoreEvent,
}

/// A `meta` value.
#[derive(Deserialize)]
struct StoredEntry {
    stamp: u64,
    entry: Entry,
}

/// One connection to Redis: a single node or a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// One room's heartbeat: its version, and the change its pruning made, if any.
type Touched = Result<(u64, Option<Change>), StoreError>;

/// The state of the link to Redis.
struct Link {
    conn: Option<Conn>,
    /// Bumped by every new connection; pushes of older ones are ignored.
    epoch: u64,
    up: bool,
    /// When `up` last changed.
    since: Instant,
    /// Why the link is down.
    error: String,
    /// The connection's `CLIENT ID` (single node): a new one means a silent reconnect.
    client_id: Option<i64>,
    /// No reaping before this: the other instances renew their leases meanwhile.
    settle_until: Instant,
    /// When the last lease renewal that succeeded was sent.
    renewed_at: Instant,
    /// Cluster: which node serves which slots, for one pipeline per node.
    slots: Option<Vec<(u16, u16, String, u16)>>,
}

/// Orders for the subscriber task, carried out in order.
enum SubCmd {
    Watch(RoomId),
    Unwatch(RoomId),
    /// A (new) connection is up: tell the hub, then subscribe every watched room again.
    Recover,
}

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
            link: Mutex::new(Link {
                conn: None,
                epoch: 0,
                up: false,
                since: Instant::now(),
                error: "connecting".into(),
                client_id: None,
                settle_until: Instant::now(),
                renewed_at: Instant::now(),
                slots: None,
            }),
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

impl Inner {
    // ---- the link --------------------------------------------------------------------

    /// The current connection, waiting for the first connection attempt if it is still
    /// under way; fails fast while Redis is unreachable.
    async fn conn(&self) -> Result<Conn, StoreError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let mut first = self.first_attempt.subscribe();
        let _ = timeout(FIRST_CONNECT_WAIT, first.wait_for(|done| *done)).await;
        self.current().ok_or_else(|| {
            let link = lock(&self.link);
            StoreError::Unavailable(format!("redis unreachable: {}", link.error))
        })
    }

    fn current(&self) -> Option<Conn> {
        let link = lock(&self.link);
        link.up.then(|| link.conn.clone()).flatten()
    }

    /// A call failed: say so, and have the supervisor probe the link.
    fn failed(&self, err: &RedisError) -> StoreError {
        self.wake.notify_one();
        StoreError::Unavailable(err.to_string())
    }

    /// Run one Redis call with the store's time limit.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(err)) => Err(self.failed(&err)),
            Err(_) => {
                self.wake.notify_one();
                Err(StoreError::Unavailable(
                    "redis did not answer in time".into(),
                ))
            }
        }
    }

    fn settling(&self) -> bool {
        Instant::now() < lock(&self.link).settle_until
    }

    fn idle_ms(&self) -> u64 {
        self.opts.idle().as_millis() as u64
    }

    /// Keep the link up: connect, probe when told to, renew the lease and reap on every
    /// tick. Runs until the store is dropped.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        let mut reaped: HashSet<(InstanceId, u64, RoomId)> = HashSet::new();
        // A fixed schedule: however often the supervisor is woken, the lease is renewed
        // every `reap`.
        let mut next_tick = Instant::now() + self.opts.reap;
        loop {
            if self.current().is_none() {
                match self.connect().await {
                    Ok(()) => {
                        backoff = MIN_BACKOFF;
                        next_tick = Instant::now() + self.opts.reap;
                    }
                    Err(err) => {
                        self.set_down(&err);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            // The connection's id, when the tick's own round trip brought it along.
            let mut probed = None;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick = Instant::now() + self.opts.reap;
                    match self.tick(&mut reaped).await {
                        Ok(id) => probed = id,
                        Err(err) => tracing::debug!(%err, "lease renewal failed; probing redis"),
                    }
                }
            }
            if let Err(err) = self.check(probed).await {
                self.set_down(&err);
            }
        }
    }

    fn set_down(&self, err: &dyn std::fmt::Display) {
        let mut link = lock(&self.link);
        link.conn = None;
        link.error = err.to_string();
        if link.up {
            link.up = false;
            link.since = Instant::now();
            tracing::warn!(
                redis = %self.opts.target(),
                error = %link.error,
                "redis unreachable: serving local rosters, reconnecting"
            );
        } else if !*self.first_attempt.borrow() {
            tracing::warn!(
                redis = %self.opts.target(),
                error = %link.error,
                "redis unreachable at start: serving local rosters, connecting"
            );
        }
        drop(link);
        self.first_attempt.send_replace(true);
    }

    async fn open(&self, epoch: u64) -> Result<Conn, RedisError> {
        let pushes = self.pushes.clone();
        let push = move |info: PushInfo| pushes.send((epoch, info));
        if self.opts.cluster {
            let client = ClusterClientBuilder::new(self.opts.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(OP_TIMEOUT)
                .retries(2)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let info = self.opts.urls[0].as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let config = ConnectionManagerConfig::new()
                .set_push_sender(push)
                .set_min_delay(MIN_BACKOFF)
                .set_max_delay(MAX_BACKOFF)
                .set_number_of_retries(2)
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(OP_TIMEOUT));
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
    }

    /// A new connection, then [`Inner::recover`] on it.
    async fn connect(&self) -> Result<(), RedisError> {
        let epoch = {
            let mut link = lock(&self.link);
            link.epoch += 1;
            link.epoch
        };
        let conn = match timeout(CONNECT_TIMEOUT * 2, self.open(epoch)).await {
            Ok(conn) => conn?,
            Err(_) => return Err(timeout_error("connecting")),
        };
        self.recover(conn).await
    }

    /// The connection is (again) usable but may have lost its subscriptions, and Redis
    /// its data: renew the lease before anything else, then hand over to the subscriber
    /// task (Reconnected, resubscribe, Resync).
    async fn recover(&self, mut conn: Conn) -> Result<(), RedisError> {
        self.lost.store(false, Ordering::SeqCst);
        let client_id = within(probe(&mut conn)).await?;
        match &mut conn {
            // Every primary needs them: SCRIPT LOAD goes to all nodes.
            Conn::Cluster(c) => {
                for script in self.scripts.all() {
                    within(script.load_async(c)).await?;
                }
            }
            Conn::Single(c) => {
                let mut load = redis::pipe();
                for script in self.scripts.all() {
                    load.load_script(script);
                }
                within(load.exec_async(c)).await?;
            }
        }
        let sent = Instant::now();
        within(self.renew_lease(&mut conn)).await?;
        let slots = match &mut conn {
            Conn::Cluster(c) => within(cluster_slots(c)).await.ok(),
            Conn::Single(_) => None,
        };
        {
            let mut link = lock(&self.link);
            link.conn = Some(conn);
            link.client_id = client_id;
            link.slots = slots;
            link.settle_until = Instant::now() + self.opts.lease;
            link.renewed_at = sent;
            if !link.up {
                let was_down = link.since.elapsed();
                link.up = true;
                link.since = Instant::now();
                if *self.first_attempt.borrow() {
                    tracing::info!(
                        redis = %self.opts.target(),
                        down_ms = was_down.as_millis() as u64,
                        "redis is back: re-registering and resynchronising rooms"
                    );
                } else {
                    tracing::info!(redis = %self.opts.target(), cluster = self.opts.cluster, "connected to redis");
                }
            }
        }
        self.first_attempt.send_replace(true);
        let _ = self.subs.send(SubCmd::Recover);
        Ok(())
    }

    /// Is the link still what we think it is? A failed probe means down; a reported
    /// disconnection or a new client id means the subscriptions are gone: recover.
    /// `probed` is the connection's id if it was just read, which saves a round trip.
    async fn check(&self, probed: Option<i64>) -> Result<(), RedisError> {
        let Some(mut conn) = self.current() else {
            return Ok(());
        };
        let id = match probed {
            Some(id) => Some(id),
            None => within(probe(&mut conn)).await?,
        };
        let replaced = {
            let link = lock(&self.link);
            link.client_id.is_some() && id != link.client_id
        };
        if self.lost.swap(false, Ordering::SeqCst) || replaced {
            tracing::info!(
                "redis connection replaced or lease lapsed: re-registering and resynchronising rooms"
            );
            self.recover(conn).await?;
        }
        Ok(())
    }

    /// Renew the lease; reap the instances whose lease ran out in every held room that
    /// was not reaped for them yet. The connection's id, if the renewal read it.
    async fn tick(
        &self,
        reaped: &mut HashSet<(InstanceId, u64, RoomId)>,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn().await?;
        let sent = Instant::now();
        let (dead, client_id) = self.call(self.renew_lease(&mut conn)).await?;
        let lapsed = {
            let mut link = lock(&self.link);
            let lapsed = sent.duration_since(link.renewed_at) >= self.opts.lease;
            link.renewed_at = sent;
            lapsed
        };
        if lapsed {
            // Stalled for a whole lease (an overloaded process, a slow Redis) with the
            // link up: others may have reaped this instance's entries. Recover as after
            // a reconnect, so the hub writes them again.
            tracing::warn!("lease renewal was late by a whole lease: re-registering");
            self.lost.store(true, Ordering::SeqCst);
            return Ok(client_id);
        }
        reaped.retain(|(inst, exp, _)| dead.iter().any(|(i, e)| i == inst && e == exp));
        if dead.is_empty() || self.settling() {
            return Ok(client_id);
        }
        let mut rooms: HashSet<RoomId> = lock(&self.held).clone();
        rooms.extend(lock(&self.watched).iter().cloned());
        let todo: Vec<RoomId> = rooms
            .into_iter()
            .filter(|room| {
                dead.iter()
                    .any(|(i, e)| !reaped.contains(&(i.clone(), *e, room.clone())))
            })
            .collect();
        if todo.is_empty() {
            return Ok(client_id);
        }
        let results = self.touch(&mut conn, &todo, &dead, self.idle_ms()).await?;
        for (room, result) in todo.into_iter().zip(results) {
            if let Ok((_, Some(change))) = &result {
                tracing::info!(%room, version = change.version, removed = change.ops.len(), "reaped entries of expired instances");
            }
            if result.is_ok() {
                for (i, e) in &dead {
                    reaped.insert((i.clone(), *e, room.clone()));
                }
            }
        }
        Ok(client_id)
    }

    /// Renew this instance's lease; the expired leases of others, with their expiry, and
    /// on a single node the connection's id (a new one means a silent reconnect), read
    /// in the same round trip.
    async fn renew_lease(
        &self,
        conn: &mut Conn,
    ) -> Result<(Vec<(InstanceId, u64)>, Option<i64>), RedisError> {
        let lease = self.opts.lease.as_millis() as u64;
        let mut inv = self.scripts.lease.prepare_invoke();
        inv.key(self.keys.leases())
            .arg(&*self.instance)
            .arg(lease)
            .arg(self.idle_ms());
        let (values, client_id): (Vec<Value>, Option<i64>) = match conn {
            Conn::Single(c) => {
                // SCRIPT LOAD first, so a Redis that restarted empty still knows it.
                let mut pipe = redis::pipe();
                pipe.load_script(&self.scripts.lease).ignore();
                pipe.cmd("CLIENT").arg("ID");
                pipe.invoke_script(&inv);
                let (id, values): (i64, Vec<Value>) = pipe.query_async(c).await?;
                (values, Some(id))
            }
            Conn::Cluster(c) => (inv.invoke_async(c).await?, None),
        };
        let mut dead = Vec::new();
        for pair in values.get(1..).unwrap_or_default().chunks(2) {
            if let [inst, expiry] = pair {
                let inst: String = redis::from_redis_value_ref(inst)?;
                let expiry: u64 = redis::from_redis_value_ref(expiry)?;
                if *inst != *self.instance {
                    dead.push((InstanceId::from(inst), expiry));
                }
            }
        }
        Ok((dead, client_id))
    }

    // ---- room scripts ----------------------------------------------------------------

    /// A room script's invocation with the keys and arguments every one of them takes.
    fn room_call<'a>(&self, script: &'a Script, room: &RoomId) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.room(room) {
            inv.key(key);
        }
        inv.arg(self.keys.channel(room))
            .arg(self.publish)
            .arg(&*self.instance)
            .arg(self.idle_ms());
        inv
    }

    /// Run a mutation script; the change it published, if any.
    async fn mutate(&self, inv: &ScriptInvocation<'_>) -> Result<Option<Change>, StoreError> {
        let mut conn = self.conn().await?;
        let payload: Option<String> = self.call(inv.invoke_async(&mut conn)).await?;
        payload.as_deref().map(parse_change).transpose()
    }

    fn touch_call(
        &self,
        room: &RoomId,
        dead: &[(InstanceId, u64)],
        idle_ms: u64,
    ) -> ScriptInvocation<'_> {
        let mut inv = self.room_call(&self.scripts.touch, room);
        inv.arg(idle_ms);
        for (inst, expiry) in dead {
            inv.arg(&**inst).arg(*expiry);
        }
        inv
    }

    /// Run touch.lua in every room: one pipeline on a single node, one per node on a
    /// cluster. Each room's version and the change its pruning made, if any.
    async fn touch(
        &self,
        conn: &mut Conn,
        rooms: &[RoomId],
        dead: &[(InstanceId, u64)],
        idle_ms: u64,
    ) -> Result<Vec<Touched>, StoreError> {
        let calls: Vec<ScriptInvocation<'_>> = rooms
            .iter()
            .map(|room| self.touch_call(room, dead, idle_ms))
            .collect();
        match conn {
            Conn::Single(c) => {
                let values = self
                    .call(c.req_packed_commands(
                        &pipeline(&self.scripts.touch, &calls),
                        0,
                        calls.len() + 1,
                    ))
                    .await?;
                Ok(values.into_iter().skip(1).map(parse_touch).collect())
            }
            Conn::Cluster(c) => self.touch_cluster(c, rooms, &calls).await,
        }
    }

    /// One pipeline per node, the nodes in parallel. A room whose pipeline failed (its
    /// slot moved, say) is run again on its own, which follows redirections.
    async fn touch_cluster(
        &self,
        conn: &mut ClusterConnection,
        rooms: &[RoomId],
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<Touched>, StoreError> {
        let slots = lock(&self.link).slots.clone();
        let mut by_node: HashMap<(String, u16), Vec<usize>> = HashMap::new();
        let mut unmapped = Vec::new();
        for (at, room) in rooms.iter().enumerate() {
            let slot = key_slot(self.keys.room(room)[0].as_bytes());
            match slots
                .as_ref()
                .and_then(|s| s.iter().find(|(lo, hi, _, _)| (*lo..=*hi).contains(&slot)))
            {
                Some((_, _, host, port)) => {
                    by_node.entry((host.clone(), *port)).or_default().push(at)
                }
                None => unmapped.push(at),
            }
        }
        let mut results: Vec<Option<Touched>> = (0..rooms.len()).map(|_| None).collect();
        let node_calls = by_node.into_iter().map(|((host, port), ats)| {
            let mut conn = conn.clone();
            let group: Vec<&ScriptInvocation<'_>> = ats.iter().map(|&at| &calls[at]).collect();
            let pipe = pipeline_refs(&self.scripts.touch, &group);
            async move {
                let route = SingleNodeRoutingInfo::ByAddress { host, port };
                let out = timeout(
                    OP_TIMEOUT,
                    conn.route_pipeline(pipe, 0, ats.len() + 1, route),
                )
                .await;
                (ats, out)
            }
        });
        let mut retry = unmapped;
        for (ats, out) in futures_util::future::join_all(node_calls).await {
            match out {
                Ok(Ok(values)) => {
                    for (at, value) in ats.into_iter().zip(values.into_iter().skip(1)) {
                        match parse_touch(value) {
                            Ok(r) => results[at] = Some(Ok(r)),
                            Err(_) => retry.push(at),
                        }
                    }
                }
                _ => retry.extend(ats),
            }
        }
        if !retry.is_empty() {
            // The slot map is stale (or a node is away): read it again for next time.
            if let Ok(Ok(fresh)) = timeout(OP_TIMEOUT, cluster_slots(conn)).await {
                lock(&self.link).slots = Some(fresh);
            }
            let singles = retry.iter().map(|&at| {
                let mut conn = conn.clone();
                let inv = &calls[at];
                async move {
                    let out: Result<Value, StoreError> =
                        self.call(inv.invoke_async(&mut conn)).await;
                    (at, out.and_then(parse_touch))
                }
            });
            for (at, out) in futures_util::future::join_all(singles).await {
                results[at] = Some(out);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Protocol("no answer".into()))))
            .collect())
    }

    // ---- pub/sub ---------------------------------------------------------------------

    fn is_watched(&self, room: &RoomId) -> bool {
        lock(&self.watched).contains(room)
    }

    async fn subscribe(&self, conn: &mut Conn, room: &RoomId) -> Result<(), RedisError> {
        let channel = self.keys.channel(room);
        match conn {
            Conn::Single(c) => c.subscribe(channel).await,
            Conn::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe(&self, conn: &mut Conn, room: &RoomId) -> Result<(), RedisError> {
        let channel = self.keys.channel(room);
        match conn {
            Conn::Single(c) => c.unsubscribe(channel).await,
            Conn::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// Carries out watch, unwatch and resubscription in call order.
    async fn subscriber(self: Arc<Self>, mut orders: mpsc::UnboundedReceiver<SubCmd>) {
        while let Some(order) = orders.recv().await {
            match order {
                SubCmd::Watch(room) => {
                    // Not watched any more: its Unwatch follows. No link: recovery
                    // subscribes every watched room.
                    let Some(mut conn) = self.current().filter(|_| self.is_watched(&room)) else {
                        continue;
                    };
                    match within(self.subscribe(&mut conn, &room)).await {
                        Ok(()) => {
                            let _ = self.feed.send(Feed::Resync { room });
                        }
                        Err(err) => {
                            tracing::debug!(%room, %err, "subscribe failed; probing redis");
                            self.wake.notify_one();
                        }
                    }
                }
                SubCmd::Unwatch(room) => {
                    if self.is_watched(&room) {
                        continue;
                    }
                    if let Some(mut conn) = self.current() {
                        let _ = within(self.unsubscribe(&mut conn, &room)).await;
                    }
                }
                SubCmd::Recover => {
                    let _ = self.feed.send(Feed::Reconnected);
                    let Some(conn) = self.current() else {
                        continue;
                    };
                    let rooms: Vec<RoomId> = lock(&self.watched).iter().cloned().collect();
                    let this = &self;
                    let mut done = stream::iter(rooms)
                        .map(|room| {
                            let mut conn = conn.clone();
                            async move {
                                let out = within(this.subscribe(&mut conn, &room)).await;
                                (room, out)
                            }
                        })
                        .buffer_unordered(RESUBSCRIBE_CONCURRENCY);
                    while let Some((room, out)) = done.next().await {
                        match out {
                            Ok(()) if self.is_watched(&room) => {
                                let _ = self.feed.send(Feed::Resync { room });
                            }
                            Ok(()) => {}
                            Err(err) => {
                                tracing::debug!(%room, %err, "resubscribe failed; probing redis");
                                self.wake.notify_one();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Turns pushes into the feed, and disconnections into a probe.
    async fn receive(self: Arc<Self>, mut pushes: mpsc::UnboundedReceiver<(u64, PushInfo)>) {
        while let Some((epoch, push)) = pushes.recv().await {
            match push.kind {
                PushKind::Disconnection if epoch == lock(&self.link).epoch => {
                    self.lost.store(true, Ordering::SeqCst);
                    self.wake.notify_one();
                }
                PushKind::Message | PushKind::SMessage => self.deliver(push.data),
                _ => {}
            }
        }
    }

    fn deliver(&self, data: Vec<Value>) {
        let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..] else {
            return;
        };
        let Some(room) = self.keys.room_of_channel(channel) else {
            return;
        };
        if !self.is_watched(&room) {
            return;
        }
        match serde_json::from_slice::<Wire>(payload) {
            Ok(Wire::Change { change }) => {
                let _ = self.feed.send(Feed::Change { room, change });
            }
            Ok(Wire::Event { origin, event }) => {
                if origin != self.instance {
                    let _ = self.feed.send(Feed::Event { room, event });
                }
            }
            Err(err) => tracing::warn!(%room, %err, "undecodable message on a room channel"),
        }
    }
}

/// A Redis call with the store's time limit, for the background tasks.
async fn within<T>(fut: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    timeout(OP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(timeout_error("waiting for redis")))
}

fn timeout_error(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// Is the link alive? On a single node, also which connection answers.
async fn probe(conn: &mut Conn) -> Result<Option<i64>, RedisError> {
    match conn {
        Conn::Single(c) => Ok(Some(redis::cmd("CLIENT").arg("ID").query_async(c).await?)),
        // PING goes to every primary.
        Conn::Cluster(c) => {
            redis::cmd("PING").exec_async(c).await?;
            Ok(None)
        }
    }
}

/// The cluster's slot ranges and the primary serving each.
async fn cluster_slots(
    conn: &mut ClusterConnection,
) -> Result<Vec<(u16, u16, String, u16)>, RedisError> {
    let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        if let [lo, hi, Value::Array(primary), ..] = &parts[..] {
            if let [host, port, ..] = &primary[..] {
                out.push((
                    redis::from_redis_value_ref(lo)?,
                    redis::from_redis_value_ref(hi)?,
                    redis::from_redis_value_ref(host)?,
                    redis::from_redis_value_ref(port)?,
                ));
            }
        }
    }
    Ok(out)
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// SCRIPT LOAD (so a Redis that restarted knows the script), then the calls.
fn pipeline(script: &Script, calls: &[ScriptInvocation<'_>]) -> redis::Pipeline {
    let refs: Vec<&ScriptInvocation<'_>> = calls.iter().collect();
    pipeline_refs(script, &refs)
}

fn pipeline_refs(script: &Script, calls: &[&ScriptInvocation<'_>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.load_script(script);
    for call in calls {
        pipe.invoke_script(call);
    }
    pipe
}

fn parse_change(payload: &str) -> Result<Change, StoreError> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(Wire::Change { change }) => Ok(change),
        Ok(Wire::Event { .. }) => Err(StoreError::Protocol("expected a change".into())),
        Err(err) => Err(StoreError::Protocol(format!(
            "bad change from redis: {err}"
        ))),
    }
}

fn parse_touch(value: Value) -> Touched {
    let (version, payload): (u64, String) = FromRedisValue::from_redis_value(value)
        .map_err(|e| StoreError::Protocol(format!("bad heartbeat answer: {e}")))?;
    let change = (!payload.is_empty())
        .then(|| parse_change(&payload))
        .transpose()?;
    Ok((version, change))
}

#[async_trait]
impl PresenceStore for RedisStore {
    fn instance(&self) -> &InstanceId {
        &self.inner.instance
    }

    fn take_feed(&self) -> Option<FeedReceiver> {
        lock(&self.feed_rx).take()
    }

    async fn upsert(&self, room: &RoomId, id: &Id, entry: &Entry) -> Result<Change, StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Protocol(e.to_string()))?;
        let mut inv = self.inner.room_call(&self.inner.scripts.upsert, room);
        inv.arg(&**id).arg(json);
        self.inner
            .mutate(&inv)
            .await?
            .ok_or_else(|| StoreError::Protocol("an upsert changed nothing".into()))
    }

    async fn remove(&self, room: &RoomId, id: &Id) -> Result<Option<Change>, StoreError> {
        let mut inv = self.inner.room_call(&self.inner.scripts.remove, room);
        inv.arg(&**id);
        self.inner.mutate(&inv).await
    }

    async fn register(
        &self,
        room: &RoomId,
        entries: &[(Id, Entry)],
    ) -> Result<Option<Change>, StoreError> {
        let mut inv = self.inner.room_call(&self.inner.scripts.register, room);
        for (id, entry) in entries {
            let json =
                serde_json::to_string(entry).map_err(|e| StoreError::Protocol(e.to_string()))?;
            inv.arg(&**id).arg(json);
        }
        self.inner.mutate(&inv).await
    }

    async fn snapshot(&self, room: &RoomId) -> Result<RoomState, StoreError> {
        let [_, meta, version, _] = self.inner.keys.room(room);
        let mut conn = self.inner.conn().await?;
        let inv = {
            let mut inv = self.inner.scripts.snapshot.prepare_invoke();
            inv.key(meta).key(version);
            inv
        };
        let values: Vec<Value> = self.inner.call(inv.invoke_async(&mut conn)).await?;
        let bad = |e: &dyn std::fmt::Display| StoreError::Protocol(format!("bad snapshot: {e}"));
        let mut values = values.into_iter();
        let version: u64 = match values.next() {
            Some(v) => FromRedisValue::from_redis_value(v).map_err(|e| bad(&e))?,
            None => 0,
        };
        let mut entries = Vec::new();
        while let (Some(field), Some(value)) = (values.next(), values.next()) {
            let field: String = FromRedisValue::from_redis_value(field).map_err(|e| bad(&e))?;
            let value: Vec<u8> = FromRedisValue::from_redis_value(value).map_err(|e| bad(&e))?;
            let Some((instance, id)) = field.rsplit_once('|') else {
                return Err(bad(&field));
            };
            let stored: StoredEntry = serde_json::from_slice(&value).map_err(|e| bad(&e))?;
            entries.push(Stamped {
                instance: instance.into(),
                id: id.into(),
                entry: stored.entry,
                stamp: stored.stamp,
            });
        }
        Ok(RoomState { version, entries })
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
        let payload = serde_json::to_string(&WireEvent {
            t: "event",
            origin: &self.inner.instance,
            event,
        })
        .map_err(|e| StoreError::Protocol(e.to_string()))?;
        let mut conn = self.inner.conn().await?;
        let cmd = redis::cmd(self.inner.publish)
            .arg(self.inner.keys.channel(room))
            .arg(payload)
            .to_owned();
        self.inner.call(cmd.exec_async(&mut conn)).await
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
    use redis::cluster_routing::Slot;

    #[test]
    fn keys_share_the_room_hash_tag() {
        let keys = Keys {
            prefix: "presence".into(),
        };
        let room = RoomId::parse_or_lobby("team-1");
        let names = keys.room(&room);
        assert_eq!(names[0], "presence:{team-1}:online");
        let slot = key_slot(names[0].as_bytes());
        for name in names.iter().chain([&keys.channel(&room)]) {
            assert_eq!(key_slot(name.as_bytes()), slot, "{name}");
            assert_eq!(
                Slot::new(slot),
                Some(Slot::for_key(name)),
                "as the crate computes it"
            );
        }
        // Redis's own examples.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            keys.room_of_channel(keys.channel(&room).as_bytes()),
            Some(room)
        );
        assert_eq!(keys.room_of_channel(b"other:{team-1}:changed"), None);
    }

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

//! The link to Redis: one connection (a single node or a cluster), kept up by one
//! supervisor task. It connects with a backoff, probes the link whenever a call failed
//! or a disconnection was pushed, renews the lease on its tick, and after any
//! reconnect recovers (scripts loaded, lease renewed, then the subscriber task
//! re-subscribes and the hub re-registers).
//!
//! Every Redis call runs through [`Inner::call`]: one time limit, and one place where a
//! failure wakes the supervisor.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, RedisError, Value};
use tokio::time::{timeout, Instant};

use super::cluster::{cluster_slots, SlotMap};
use super::lease::Reaped;
use super::pubsub::SubCmd;
use super::{lock, Inner};
use crate::store::StoreError;

/// First delay between reconnection attempts; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between reconnection attempts: an outage ends for this instance at most
/// this long after Redis is back.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one store call may wait for Redis before it fails (and the link is probed).
pub(super) const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long calls made right after construction wait for the first connection attempt,
/// so a server that starts with Redis up does not begin with failed writes.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(1);

/// One connection to Redis: a single node or a cluster.
#[derive(Clone)]
pub(super) enum Conn {
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

/// The state of the link to Redis.
pub(super) struct Link {
    pub(super) conn: Option<Conn>,
    /// Bumped by every new connection; pushes of older ones are ignored.
    pub(super) epoch: u64,
    pub(super) up: bool,
    /// When `up` last changed.
    pub(super) since: Instant,
    /// Why the link is down.
    pub(super) error: String,
    /// The connection's `CLIENT ID` (single node): a new one means a silent reconnect.
    pub(super) client_id: Option<i64>,
    /// No reaping before this: the other instances renew their leases meanwhile.
    pub(super) settle_until: Instant,
    /// When the last lease renewal that succeeded was sent.
    pub(super) renewed_at: Instant,
    /// Cluster: which node serves which slots, for one pipeline per node.
    pub(super) slots: Option<SlotMap>,
}

impl Link {
    /// Not connected yet.
    pub(super) fn new() -> Link {
        Link {
            conn: None,
            epoch: 0,
            up: false,
            since: Instant::now(),
            error: "connecting".into(),
            client_id: None,
            settle_until: Instant::now(),
            renewed_at: Instant::now(),
            slots: None,
        }
    }
}

/// A failed Redis call, as the hub sees it: the store is unavailable for now.
impl From<RedisError> for StoreError {
    fn from(err: RedisError) -> StoreError {
        StoreError::Unavailable(err.to_string())
    }
}

impl Inner {
    /// The current connection, waiting for the first connection attempt if it is still
    /// under way; fails fast while Redis is unreachable.
    pub(super) async fn conn(&self) -> Result<Conn, StoreError> {
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

    /// The connection, if the link is up.
    pub(super) fn current(&self) -> Option<Conn> {
        let link = lock(&self.link);
        link.up.then(|| link.conn.clone()).flatten()
    }

    /// Run one Redis call with the store's time limit. A failure, whatever it is, has the
    /// supervisor probe the link.
    pub(super) async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let out = timeout(OP_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| Err(timed_out("redis did not answer in time")));
        if out.is_err() {
            self.wake.notify_one();
        }
        out
    }

    /// Keep the link up: connect, probe when told to, renew the lease and reap on every
    /// tick. Runs until the store is dropped.
    pub(super) async fn supervise(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        let mut reaped = Reaped::new();
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
            Err(_) => return Err(timed_out("connecting")),
        };
        self.recover(conn).await
    }

    /// The connection is (again) usable but may have lost its subscriptions, and Redis
    /// its data: renew the lease before anything else, then hand over to the subscriber
    /// task (Reconnected, resubscribe, Resync).
    async fn recover(&self, mut conn: Conn) -> Result<(), RedisError> {
        self.lost.store(false, Ordering::SeqCst);
        let client_id = self.call(probe(&mut conn)).await?;
        match &mut conn {
            // Every primary needs them: SCRIPT LOAD goes to all nodes.
            Conn::Cluster(c) => {
                for script in self.scripts.all() {
                    self.call(script.load_async(c)).await?;
                }
            }
            Conn::Single(c) => {
                let mut load = redis::pipe();
                for script in self.scripts.all() {
                    load.load_script(script);
                }
                self.call(load.exec_async(c)).await?;
            }
        }
        let sent = Instant::now();
        self.call(self.renew_lease(&mut conn)).await?;
        let slots = match &mut conn {
            Conn::Cluster(c) => self.call(cluster_slots(c)).await.ok(),
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
            None => self.call(probe(&mut conn)).await?,
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
}

fn timed_out(what: &'static str) -> RedisError {
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
